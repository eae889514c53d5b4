"""Target 3 — ingestion through POST /batch/ (PostHog wire format) near the SQLite limit.

Each request carries 100 events as the stock posthog-python client sends them
(/tmp/notes/wire.md §2): 70 `capture`s with `properties.$groups` {organization}, 20
`$groupidentify` (plan / employees of an org), 10 `$set` (top-level "$set"), each with a
uuid and an ISO timestamp. Bodies are built before the clock starts; `--clients` threads
POST them to `flagsvc serve` (default workers) for `--duration` seconds.

Users: 50,000 distinct ids, none stored beforehand, each a member of one organization (user
u of org u mod 20,000), as in the B2B products flagsvc is for. `--membership random` draws
the user and the organization of each event independently instead (what this bench did until
2026-11-22 06:40): nearly every capture then makes a new membership row, a pattern no B2B
product has, which costs ≈ 10 % of the throughput.

Baseline in the same run: a raw sqlite3 `executemany` of the same rows — an insert into a
table shaped like `events` plus an upsert into a `groups`-like table for every group the
event touches — one transaction per 100-event batch, same journal (WAL) and synchronous
mode (FULL, flagsvc's default), single thread. Measured before and after the HTTP run.

Targets: ≥ 15,000 events/s sustained, ≥ 0.35 × raw; nothing lost (events counted in the
database afterwards = 100 × accepted requests).

    python bench/bench_ingest.py [--duration 10] [--clients 4] [--synchronous FULL|NORMAL]
                                 [--membership fixed|random] [--no-record]
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import json
import os
import random
import sqlite3
import sys
import threading
import time
import uuid
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common

LIB = {"$lib": "posthog-python", "$lib_version": "7.91.1", "$is_server": True,
       "$geoip_disable": True}


def make_events(rng: random.Random, n: int = 100, n_orgs: int = common.N_ORGS,
                n_users: int = 50_000, membership: str = "fixed") -> list[dict[str, Any]]:
    """One posthog batch: 70 % captures with $groups, 20 % $groupidentify, 10 % $set, by
    users who belong to one organization each (`membership="random"`: any user, any org)."""
    now = dt.datetime.now(dt.UTC)
    out = []
    for i in range(n):
        user = rng.randrange(n_users)
        did = f"user-{user}"
        org = common.org_key(user % n_orgs if membership == "fixed" else rng.randrange(n_orgs))
        ts = (now - dt.timedelta(milliseconds=rng.randrange(5000))).isoformat()
        kind = i % 10
        if kind < 7:
            ev = {"event": rng.choice(("page_viewed", "report_exported", "invoice_paid")),
                  "distinct_id": did,
                  "properties": {**LIB, "$groups": {common.GROUP_TYPE: org},
                                 "path": f"/app/{rng.randrange(100)}",
                                 "duration_ms": rng.randrange(5000)}}
        elif kind < 9:
            ev = {"event": "$groupidentify", "distinct_id": did,
                  "properties": {**LIB, "$group_type": common.GROUP_TYPE, "$group_key": org,
                                 "$group_set": {"plan": rng.choice(common.PLANS),
                                                "employees": rng.randint(1, 500)}}}
        else:
            ev = {"event": "$set", "distinct_id": did, "properties": {**LIB},
                  "$set": {"email": f"{did}@example.com", "role": rng.choice(("admin", "member"))}}
        ev["uuid"] = str(uuid.uuid4())
        ev["timestamp"] = ts
        out.append(ev)
    return out


def batch_body(events: list[dict[str, Any]], token: str = common.API_TOKEN) -> bytes:
    return json.dumps({"batch": events, "historical_migration": False,
                       "sent_at": dt.datetime.now(dt.UTC).isoformat(),
                       "api_key": token}).encode()


# ------------------------------------------------------------------ HTTP load


def post_batches(port: int, bodies: list[bytes], clients: int, duration: float
                 ) -> dict[str, Any]:
    """POST bodies from `clients` threads until they run out or `duration` passes.
    Returns accepted requests, failures (status -> count) and elapsed seconds."""
    lock = threading.Lock()
    it = iter(range(len(bodies)))
    ok = [0]
    failed: dict[str, int] = {}
    deadline = time.perf_counter() + duration
    latencies: list[float] = []

    def worker() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        while time.perf_counter() < deadline:
            with lock:
                i = next(it, None)
            if i is None:
                break
            t = time.perf_counter()
            try:
                conn.request("POST", "/batch/", bodies[i], {"Content-Type": "application/json"})
                r = conn.getresponse()
                r.read()
                status = r.status
                if r.getheader("Connection", "").lower() == "close":
                    conn.close()
            except (OSError, http.client.HTTPException) as e:
                status = type(e).__name__
                conn.close()
            with lock:
                latencies.append(time.perf_counter() - t)
                if status == 200:
                    ok[0] += 1
                else:
                    failed[str(status)] = failed.get(str(status), 0) + 1
        conn.close()

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    latencies.sort()
    return {"ok": ok[0], "failed": failed, "elapsed": time.perf_counter() - start,
            "p50": latencies[len(latencies) // 2] * 1000 if latencies else float("nan"),
            "p99": latencies[int(len(latencies) * 0.99)] * 1000 if latencies else float("nan")}


# ------------------------------------------------------------------ raw SQLite baseline

RAW_SCHEMA = """
CREATE TABLE events (id INTEGER PRIMARY KEY, project_id INTEGER NOT NULL, message_id TEXT NOT NULL,
  type TEXT NOT NULL, event TEXT, distinct_id TEXT, groups TEXT, properties TEXT NOT NULL,
  timestamp REAL NOT NULL, received_at REAL NOT NULL,
  day INTEGER GENERATED ALWAYS AS (CAST(timestamp / 86400 AS INTEGER)) VIRTUAL);
CREATE UNIQUE INDEX events_dedupe ON events(project_id, day, message_id);
CREATE INDEX events_received ON events(project_id, received_at);
CREATE TABLE groups (id INTEGER PRIMARY KEY, project_id INTEGER NOT NULL, group_type TEXT NOT NULL,
  group_key TEXT NOT NULL, properties TEXT NOT NULL DEFAULT '{}', last_seen REAL,
  updated_at REAL NOT NULL, UNIQUE (project_id, group_type, group_key));
"""


def raw_rows(events: list[dict[str, Any]]) -> tuple[list[tuple], list[tuple]]:
    """The rows the raw baseline writes for one batch (conversion done before timing)."""
    now = time.time()
    ev_rows, group_rows = [], []
    for e in events:
        props = e.get("properties") or {}
        ts = dt.datetime.fromisoformat(e["timestamp"]).timestamp()
        groups = props.get("$groups")
        if e["event"] == "$groupidentify":
            groups = {props["$group_type"]: props["$group_key"]}
            group_rows.append((1, props["$group_type"], props["$group_key"],
                               json.dumps(props["$group_set"]), ts, now))
        elif groups:
            for t, k in groups.items():
                group_rows.append((1, t, k, "{}", ts, now))
        kind = "group" if e["event"] == "$groupidentify" else (
            "identify" if e["event"] == "$set" else "track")
        ev_rows.append((1, e["uuid"], kind, e["event"], e["distinct_id"],
                        json.dumps(groups) if groups else None, json.dumps(props), ts, now))
    return ev_rows, group_rows


def raw_sqlite(batches: list[tuple[list[tuple], list[tuple]]], path: str,
               synchronous: str = "FULL") -> float:
    """events/s of executemany (events insert + groups upsert), one transaction per batch."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute(f"PRAGMA synchronous = {synchronous}")
    conn.execute("PRAGMA cache_size = -65536")
    conn.executescript(RAW_SCHEMA)
    n = 0
    start = time.perf_counter()
    for ev_rows, group_rows in batches:
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(
            "INSERT OR IGNORE INTO events (project_id, message_id, type, event, distinct_id, "
            "groups, properties, timestamp, received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            ev_rows)
        conn.executemany(
            "INSERT INTO groups (project_id, group_type, group_key, properties, last_seen, "
            "updated_at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (project_id, group_type, group_key) "
            "DO UPDATE SET properties = json_patch(groups.properties, excluded.properties), "
            "last_seen = max(coalesce(groups.last_seen, 0), excluded.last_seen), "
            "updated_at = excluded.updated_at", group_rows)
        conn.execute("COMMIT")
        n += len(ev_rows)
    elapsed = time.perf_counter() - start
    got = conn.execute("SELECT count(*) FROM events").fetchone()[0]
    conn.close()
    assert got == n, (got, n)
    return n / elapsed


def count_events(db: str) -> int:
    conn = sqlite3.connect(db)
    try:
        return conn.execute("SELECT count(*) FROM events").fetchone()[0]
    finally:
        conn.close()


def check_batch(url: str) -> None:
    rng = random.Random(1)
    status, body = common.post_json(url + "/batch/", json.loads(batch_body(make_events(rng, 3))))
    if status != 200:
        raise SystemExit(f"/batch/ is not accepting the PostHog format: {status} {body}")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=float, default=10)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--batches", type=int, default=2500, help="bodies built up front")
    ap.add_argument("--raw-batches", type=int, default=500)
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--synchronous", default="FULL", choices=("FULL", "NORMAL"),
                    help="SQLite synchronous mode of both the server and the raw baseline")
    ap.add_argument("--membership", default="fixed", choices=("fixed", "random"),
                    help="users belong to one organization each, or are drawn per event")
    ap.add_argument("--no-record", action="store_true")
    args = ap.parse_args()
    sync = args.synchronous

    rng = random.Random(7)
    t0 = time.time()
    event_batches = [make_events(rng, membership=args.membership) for _ in range(args.batches)]
    bodies = [batch_body(b) for b in event_batches]
    raw_batches = [raw_rows(b) for b in event_batches[:args.raw_batches]]
    print(f"built {len(bodies)} bodies of 100 events in {time.time() - t0:.1f} s")

    d = common.tmpdir("bench-ingest")
    raw_before = raw_sqlite(raw_batches, os.path.join(d, "raw1.db"), sync)
    print(f"raw sqlite (before): {raw_before:,.0f} events/s")

    db = os.path.join(d, "flagsvc.db")
    common.setup_database(db, common.flag_variations(20), common.make_orgs())
    before = count_events(db)
    svc = common.flagsvc_server(db, workers=args.workers,
                                extra_env={"FLAGSVC_SYNCHRONOUS": sync})
    with common.running(svc):
        check_batch(svc.url)
        warm = post_batches(svc.port, bodies[:20], args.clients, 30)
        res = post_batches(svc.port, bodies[20:], args.clients, args.duration)
        workers = len(svc.worker_pids())
    sent_ok = warm["ok"] + res["ok"]
    stored = count_events(db) - before - 3  # 3 = check_batch
    raw_after = raw_sqlite(raw_batches, os.path.join(d, "raw2.db"), sync)
    print(f"raw sqlite (after): {raw_after:,.0f} events/s")
    raw = (raw_before + raw_after) / 2

    rate = res["ok"] * 100 / res["elapsed"]
    lost = sent_ok * 100 - stored
    failures = {k: v for k, v in {**warm["failed"], **res["failed"]}.items()}
    ran_out = res["ok"] + sum(res["failed"].values()) >= len(bodies) - 20
    body = [
        f"`flagsvc serve` ({workers} workers, synchronous={sync}), {args.clients} client threads "
        f"(http.client, pre-built bodies), POST /batch/ with 100 PostHog events per request "
        f"(70 capture+$groups, 20 $groupidentify, 10 $set; 50,000 new users, membership "
        f"{args.membership}), {res['elapsed']:.1f} s"
        f"{' (ran out of pre-built bodies)' if ran_out else ''}. Raw baseline: sqlite3 "
        "executemany of the same rows (events insert + groups upsert), one transaction per "
        f"100 events, WAL + synchronous={sync}, measured before and after.", "",
        common.table([
            ["flagsvc /batch/", rate, res["p50"], res["p99"], res["ok"]],
            ["raw sqlite executemany (mean)", raw, "", "", f"{raw_before:,.0f} / {raw_after:,.0f}"],
        ], ["path", "events/s", "p50 ms/request", "p99 ms/request", "requests / runs"]), "",
        common.table([
            ["events/s sustained", rate, ">= 15,000", common.verdict(rate >= 15000)],
            ["flagsvc / raw", rate / raw, ">= 0.35", common.verdict(rate / raw >= 0.35)],
            ["events lost (accepted×100 − counted)", lost, "0", common.verdict(lost == 0)],
            ["failed requests", sum(failures.values()), "0",
             common.verdict(not failures) + (f" {failures}" if failures else "")],
        ], ["measure", "value", "target", ""]),
    ]
    common.record("bench_ingest (target 3)", "\n".join(body))
    return 0 if lost == 0 and not failures else 1


if __name__ == "__main__":
    sys.exit(main())
