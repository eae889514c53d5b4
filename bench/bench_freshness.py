"""Target 5 — freshness without slowness.

Part 1 (delay, over HTTP): `flagsvc serve` with its default workers; `--pollers` threads
poll decide continuously, each request on a fresh connection (gunicorn's sync workers close
every connection, so requests spread over all workers; at several hundred requests/s each
worker answers many times a second). Then, `--trials` times each:
  * flag edit — PATCH /api/flags/fresh-flag with If-Match, rollout 0 ↔ 100;
  * property ingest — POST /batch/ with a `$groupidentify` moving an in-bucket org between
    plan "free" and "enterprise" (so the reference flag flips).
The delay of a trial is (send time of the LAST request answered with the old value) −
(time the write was acknowledged); the trial also fails if the new value never reached
every poller within 5 s. Target: max delay ≤ 1 s.

Part 2 (no per-request reload, in process): create_app on a copy of the same database, a
sqlite3 trace callback on the request thread's connection, and Flask's test client: SQL
statements per decide request — same org repeated, and a different org each time — over
more than one cache period, and which tables they read.

    python bench/bench_freshness.py [--trials 5] [--pollers 6] [--no-record]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import shutil
import sys
import threading
import time
from collections import Counter
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common
import mmh3

FRESH = "fresh-flag"


class Poller:
    """Threads polling decide for one (flag, org), recording (sent, received, value)."""

    def __init__(self, port: int, flag: str, org: str, threads: int) -> None:
        self.port, self.flag, self.org = port, flag, org
        self.samples: list[tuple[float, float, Any]] = []
        self.errors = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._body = json.dumps({"api_key": common.API_TOKEN, "groups": {"organization": org},
                                 "flag_keys_to_evaluate": [flag]}).encode()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]
        for t in self._threads:
            t.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
            sent = time.perf_counter()
            try:
                conn.request("POST", "/flags/?v=2", self._body,
                             {"Content-Type": "application/json"})
                r = conn.getresponse()
                data = json.loads(r.read())
                rec = data["flags"][self.flag]
                value = rec["variant"] or rec["enabled"]
            except Exception:
                with self._lock:
                    self.errors += 1
                continue
            finally:
                conn.close()
            with self._lock:
                self.samples.append((sent, time.perf_counter(), value))

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join()

    def since(self, t: float) -> list[tuple[float, float, Any]]:
        with self._lock:
            return [s for s in self.samples if s[0] >= t]


def enabled(v: Any) -> bool:
    return v is not False


def trial(poller: Poller, write: Any, want: bool, timeout: float = 5.0) -> dict[str, Any]:
    """Apply `write`, then wait until every answer sent since has the new value for 1 s."""
    time.sleep(0.3)
    before = poller.since(time.perf_counter() - 0.3)
    assert before and all(enabled(v) != want for _, _, v in before), "not in the old state"
    start = time.perf_counter()
    write()
    acked = time.perf_counter()
    deadline = acked + timeout
    while time.perf_counter() < deadline:
        time.sleep(0.1)
        after = poller.since(acked)
        stale = [s for s in after if enabled(s[2]) != want]
        last_stale = max((s[0] for s in stale), default=acked)
        if time.perf_counter() - last_stale > 1.0 and len(after) - len(stale) > 50:
            return {"delay": max(0.0, last_stale - acked), "write_s": acked - start,
                    "samples": len(after), "stale": len(stale), "ok": True}
    after = poller.since(acked)
    return {"delay": float("inf"), "write_s": acked - start, "samples": len(after),
            "stale": sum(enabled(s[2]) != want for s in after), "ok": False}


def statements_per_request(db: str, org_keys: list[str]) -> dict[str, Any]:
    """SQL statements per decide request, counted with a sqlite3 trace callback."""
    from flagsvc.app import create_app

    app = create_app({"DATABASE": db, "LOG_LEVEL": "WARNING", "METRICS": False})
    svc = app.extensions["flagsvc"]
    seen: list[str] = []
    svc.store.conn().set_trace_callback(seen.append)  # the test client runs in this thread
    client = app.test_client()
    cache_s = svc.cache_seconds

    def run(orgs: list[str], seconds: float) -> dict[str, Any]:
        seen.clear()
        n = 0
        end = time.perf_counter() + seconds
        start = time.perf_counter()
        while time.perf_counter() < end:
            r = client.post("/flags/?v=2", json={"api_key": common.API_TOKEN,
                                                 "groups": {"organization": orgs[n % len(orgs)]}})
            assert r.status_code == 200 and len(r.get_json()["flags"]) == 21
            n += 1
        elapsed = time.perf_counter() - start
        tables = Counter()
        for sql in seen:
            m = re.search(r"\bFROM\s+(\w+)", sql, re.IGNORECASE)
            tables[m.group(1) if m else sql.split()[0].upper()] += 1
        return {"requests": n, "statements": len(seen), "per_request": len(seen) / n,
                "tables": dict(tables), "ms": elapsed / n * 1000}

    client.post("/flags/?v=2", json={"api_key": common.API_TOKEN,
                                     "groups": {"organization": org_keys[0]}})
    window = max(3 * cache_s, 1.5)
    same = run(org_keys[:1], window)
    distinct = run(org_keys, window)
    svc.store.close()
    return {"cache_seconds": cache_s, "window": window, "same": same, "distinct": distinct}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=5)
    ap.add_argument("--pollers", type=int, default=6)
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--no-record", action="store_true")
    args = ap.parse_args()

    orgs = common.make_orgs()
    d = common.tmpdir("bench-fresh")
    db = os.path.join(d, "flagsvc.db")
    fresh = common.flagsvc_flag(FRESH, rollout=0)
    common.setup_database(db, common.flag_variations(20) + [fresh], orgs)
    snapshot = os.path.join(d, "snapshot.db")
    shutil.copy(db, snapshot)

    # An org matching the conditions (for the flag edit), and an in-bucket org that does not
    # match yet (for the property ingest).
    match = next(o for o, p in orgs if p["plan"] in ("pro", "enterprise") and p["employees"] > 50)

    def bucket(key: str, org: str) -> int:
        return mmh3.hash(f"{key}:{org}", 0, False) % 100 + 1

    flip = next(o for o, p in orgs if p["plan"] == "free" and p["employees"] > 50
                and bucket(common.FLAG_KEY, o) <= 30)

    srv = common.flagsvc_server(db, workers=args.workers)
    results: dict[str, list[dict]] = {"flag edit (PATCH /api/flags)": [],
                                      "group property (POST /batch/)": []}
    admin = {"Authorization": f"Bearer {common.SECRET_KEY}"}
    with common.running(srv):
        status, flag = common.post_json(f"{srv.url}/api/flags/{FRESH}", None, admin, "GET")
        if status != 200:
            raise SystemExit(f"admin API GET /api/flags/{FRESH}: {status} {flag}")
        version = flag["version"]
        workers = len(srv.worker_pids())

        poller = Poller(srv.port, FRESH, match, args.pollers)
        try:
            for i in range(args.trials):
                want = i % 2 == 0
                box: dict[str, Any] = {}

                # Bound now: trial() calls it within this iteration.
                def edit(want: bool = want, version: Any = version,
                         box: dict[str, Any] = box) -> None:
                    st, body = common.post_json(
                        f"{srv.url}/api/flags/{FRESH}",
                        {"conditions": [{**fresh["conditions"][0],
                                         "rollout_percentage": 100 if want else 0}]},
                        {**admin, "If-Match": f'"{version}"'}, "PATCH")
                    if st != 200:
                        raise SystemExit(f"PATCH failed: {st} {body}")
                    box["version"] = body["version"]

                r = trial(poller, edit, want)
                version = box["version"]
                results["flag edit (PATCH /api/flags)"].append(r)
                print(f"flag edit {i + 1}: {r}")
        finally:
            poller.stop()
        poll_errors = poller.errors

        poller = Poller(srv.port, common.FLAG_KEY, flip, args.pollers)
        try:
            for i in range(args.trials):
                want = i % 2 == 0

                def ingest(want: bool = want) -> None:
                    ev = {"event": "$groupidentify", "distinct_id": "bench-admin",
                          "uuid": f"00000000-0000-4000-8000-{int(time.time() * 1e6) % 10**12:012d}",
                          "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
                          + f".{int(time.time() * 1e6) % 10**6:06d}+00:00",
                          "properties": {"$group_type": "organization", "$group_key": flip,
                                         "$group_set": {"plan": "enterprise" if want else "free"}}}
                    st, body = common.post_json(f"{srv.url}/batch/", {
                        "api_key": common.API_TOKEN, "batch": [ev]})
                    if st != 200:
                        raise SystemExit(f"/batch/ failed: {st} {body}")

                r = trial(poller, ingest, want)
                results["group property (POST /batch/)"].append(r)
                print(f"property ingest {i + 1}: {r}")
        finally:
            poller.stop()
        poll_errors += poller.errors

    stmts = statements_per_request(snapshot, [o for o, _ in orgs])

    rows = []
    worst = 0.0
    for name, rs in results.items():
        delays = [r["delay"] for r in rs]
        worst = max(worst, *delays)
        rows.append([name, len(rs), common.median(delays), max(delays),
                     sum(r["samples"] for r in rs) // max(1, len(rs)),
                     sum(r["ok"] for r in rs)])
    same, distinct = stmts["same"], stmts["distinct"]
    body = [
        f"`flagsvc serve` with {workers} workers, {args.pollers} polling threads (a new "
        "connection per request), 21 flags, 20,000 orgs stored. Delay = send time of the last "
        "stale answer − write acknowledged.", "",
        common.table(rows, ["write", "trials", "median delay s", "max delay s",
                            "answers / trial", "trials converged"]), "",
        f"In process (test client, sqlite3 trace callback), CACHE_SECONDS = "
        f"{stmts['cache_seconds']:g}, {stmts['window']:g} s per case:", "",
        common.table([
            ["same org every request", same["requests"], same["per_request"], same["ms"],
             json.dumps(same["tables"])],
            ["a different org every request", distinct["requests"], distinct["per_request"],
             distinct["ms"], json.dumps(distinct["tables"])],
        ], ["decide requests", "requests", "SQL statements / request", "ms / request",
            "statements by table"]), "",
        common.table([
            ["max delay until every worker answers the new value (s)", worst, "<= 1",
             common.verdict(worst <= 1)],
            ["flag-table reads per request (same org)",
             same["tables"].get("flags", 0) / same["requests"], "≈ 0 (no full reload)",
             common.verdict(same["tables"].get("flags", 0) / same["requests"] < 0.05)],
            ["polling errors", poll_errors, "0", common.verdict(poll_errors == 0)],
        ], ["measure", "value", "target", ""]),
    ]
    common.record("bench_freshness (target 5)", "\n".join(body))
    return 0 if worst <= 1 and not poll_errors else 1


if __name__ == "__main__":
    sys.exit(main())
