"""Target 2 — decide over HTTP near the Flask limit.

Starts `flagsvc serve` (default workers, temp database with 20 flags — the reference flag and
19 variations — and the 20,000 orgs' properties stored) and the minimal Flask JSON endpoint of
bench/minimal_app.py under the same gunicorn configuration (flagsvc.server.run: same worker
count and class), then loads both with wrk, alternating, `--rounds` times each:
POST /flags/?v=2 with a different organization per request (bench/wrk_decide.lua), 32
connections. wrk runs with ONE thread pinned to the last CPU (taskset) so that on a 2-core
machine the load generator takes a slice of one core and the servers keep the rest; both
servers are measured under the same handicap.

Target: flagsvc req/s ≥ 0.75 × minimal Flask. Reports p50/p99 at 32 connections, and the
servers' CPU time per request (workers' user+sys from /proc), a steadier view of the same
ratio when other jobs share the machine.

    python bench/bench_decide.py [--duration 8] [--rounds 4] [--connections 32] [--no-record]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common

LUA = os.path.join(common.BENCH_DIR, "wrk_decide.lua")


def check_decide(url: str) -> None:
    """One real decide call: 20 flags answered, the reference flag right for a known org."""
    status, body = common.post_json(url + "/flags/?v=2", {
        "api_key": common.API_TOKEN, "distinct_id": "u1",
        "groups": {common.GROUP_TYPE: common.org_key(0)}})
    if status != 200 or len(body.get("flags", {})) != 20:
        raise SystemExit(f"decide is not answering as expected: {status} {str(body)[:300]}")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=float, default=8)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--workers", type=int, default=None, help="default: flagsvc's default")
    ap.add_argument("--no-record", action="store_true")
    args = ap.parse_args()
    if not common.have_wrk():
        raise SystemExit("wrk is not installed (apt-get install -y wrk)")

    d = common.tmpdir("bench-decide")
    db = os.path.join(d, "flagsvc.db")
    t0 = time.time()
    common.setup_database(db, common.flag_variations(20), common.make_orgs())
    print(f"set-up: 20 flags, {common.N_ORGS} orgs stored in {time.time() - t0:.1f} s")

    svc = common.flagsvc_server(db, workers=args.workers)
    base = common.minimal_server(workers=args.workers)
    with common.running(svc, base):
        check_decide(svc.url)
        env = {"BENCH_TOKEN": common.API_TOKEN, "BENCH_ORGS": str(common.N_ORGS)}
        # Warm-up: caches, imports, first connections.
        for s in (svc, base):
            common.run_wrk(s.url, LUA, 2, args.connections, env)
        workers = len(svc.worker_pids())
        base_workers = len(base.worker_pids())
        results: dict[str, list[dict]] = {"flagsvc": [], "minimal": []}
        for rnd in range(args.rounds):
            order = [("flagsvc", svc), ("minimal", base)]
            if rnd % 2:
                order.reverse()
            for name, s in order:
                cpu = s.cpu_seconds()
                r = common.run_wrk(s.url, LUA, args.duration, args.connections, env)
                # Server CPU per request: less sensitive than req/s to other load on a
                # shared machine (workers' user+sys time, from /proc).
                r["cpu_ms"] = (s.cpu_seconds() - cpu) / max(1, r["requests"]) * 1000
                print(f"round {rnd + 1} {name}: {r['rps']:.0f} req/s p50 {r['p50']:.2f} ms "
                      f"p99 {r['p99']:.2f} ms cpu {r['cpu_ms']:.3f} ms/req "
                      f"errors {r['non2xx'] + r['socket_errors']}")
                results[name].append(r)

    metrics = ("rps", "p50", "p90", "p99", "cpu_ms")
    med = {k: {m: common.median([r[m] for r in v]) for m in metrics} for k, v in results.items()}
    errors = {k: sum(r["non2xx"] + r["socket_errors"] for r in v) for k, v in results.items()}
    ratio = med["flagsvc"]["rps"] / med["minimal"]["rps"]
    cpu_ratio = med["minimal"]["cpu_ms"] / med["flagsvc"]["cpu_ms"]
    rows = [[k, med[k]["rps"], med[k]["p50"], med[k]["p90"], med[k]["p99"], med[k]["cpu_ms"],
             errors[k],
             " / ".join(f"{r['rps']:.0f}" for r in results[k])] for k in results]
    body = [
        f"`flagsvc serve` ({workers} workers) vs minimal Flask JSON endpoint ({base_workers} "
        f"workers, same gunicorn config); wrk 1 thread pinned to the last CPU, "
        f"{args.connections} connections, {args.duration:g} s × {args.rounds} alternating "
        "rounds; POST /flags/?v=2, 20 flags defined, a different org per request (properties "
        "stored, none in the request).", "",
        common.table(rows, ["server", "req/s (median)", "p50 ms", "p90 ms", "p99 ms",
                            "server CPU ms/req", "errors", "per round"]), "",
        common.table([["flagsvc / minimal req/s", ratio, ">= 0.75",
                       common.verdict(ratio >= 0.75)],
                      ["minimal / flagsvc server CPU per request", cpu_ratio, "(same, steadier)",
                       common.verdict(cpu_ratio >= 0.75)]], ["measure", "value", "target", ""]),
    ]
    common.record("bench_decide (target 2)", "\n".join(body))
    return 0 if not any(errors.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
