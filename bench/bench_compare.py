"""Decide and ingestion of two checkouts, side by side: `--before DIR` (another checkout of
flagsvc, e.g. `git archive main | tar -x -C DIR`) against this one.

Both servers run at once (`flagsvc serve`, default workers, the bench databases of
bench_decide.py and bench_ingest.py, one copy each) and are loaded in alternating rounds,
the order swapped every round, so that other load on a shared machine falls on both alike:
decide with wrk (bench/wrk_decide.lua, 32 connections, one thread pinned to the last CPU),
ingestion with 4 client threads posting pre-built 100-event bodies. Reports medians per
server and the after/before ratios, with the servers' CPU per request / per event (the
steadier figure when the machine is busy). Figures only; nothing here runs under pytest.

    python bench/bench_compare.py --before /tmp/flagsvc-main [--rounds 4] [--duration 8]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import bench_ingest
import common

LUA = os.path.join(common.BENCH_DIR, "wrk_decide.lua")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--before", required=True, help="a checkout of the code to compare with")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--duration", type=float, default=8.0)
    ap.add_argument("--workers", type=int, default=None)
    args = ap.parse_args()
    if not common.have_wrk():
        raise SystemExit("wrk is not installed (apt-get install -y wrk)")

    d = common.tmpdir("bench-compare")
    seed = os.path.join(d, "seed.db")
    common.setup_database(seed, common.flag_variations(20), common.make_orgs())
    rng = random.Random(7)
    n_bodies = args.rounds * 2 * 400
    bodies = [bench_ingest.batch_body(bench_ingest.make_events(rng)) for _ in range(n_bodies)]
    servers = {}
    for name, checkout in (("before", args.before), ("after", None)):
        db = os.path.join(d, f"{name}.db")
        shutil.copy(seed, db)
        servers[name] = common.flagsvc_server(db, workers=args.workers, checkout=checkout)
    results: dict[str, dict[str, list[float]]] = {n: {} for n in servers}

    def note(name: str, key: str, value: float) -> None:
        results[name].setdefault(key, []).append(value)

    wrk_env = {"BENCH_TOKEN": common.API_TOKEN, "BENCH_ORGS": str(common.N_ORGS)}
    with common.running(*servers.values()):
        for s in servers.values():  # warm-up: caches, imports, first connections
            common.run_wrk(s.url, LUA, 2, 32, wrk_env)
            bench_ingest.post_batches(s.port, bodies[:20], 4, 30)
        next_body = 20
        for rnd in range(args.rounds):
            order = list(servers.items())
            if rnd % 2:
                order.reverse()
            for name, s in order:
                cpu = s.cpu_seconds()
                r = common.run_wrk(s.url, LUA, args.duration, 32, wrk_env)
                note(name, "decide req/s", r["rps"])
                note(name, "decide p50 ms", r["p50"])
                note(name, "decide p99 ms", r["p99"])
                note(name, "decide CPU ms/req",
                     (s.cpu_seconds() - cpu) / max(1, r["requests"]) * 1000)
                note(name, "decide errors", r["non2xx"] + r["socket_errors"])
            for name, s in order:
                cpu = s.cpu_seconds()
                chunk = bodies[next_body:next_body + 400]
                next_body += 400
                res = bench_ingest.post_batches(s.port, chunk, 4, args.duration)
                events = res["ok"] * 100
                note(name, "ingest events/s", events / res["elapsed"])
                note(name, "ingest p99 ms/request", res["p99"])
                note(name, "ingest CPU ms/1000 events",
                     (s.cpu_seconds() - cpu) / max(1, events) * 1e6)
                note(name, "ingest failed", sum(res["failed"].values()))
            print(f"round {rnd + 1}: " + "; ".join(
                f"{n} {results[n]['decide req/s'][-1]:.0f} req/s "
                f"{results[n]['ingest events/s'][-1]:.0f} ev/s" for n in servers))

    rows = []
    for key in results["after"]:
        before = common.median(results["before"][key])
        after = common.median(results["after"][key])
        ratio = after / before if before else float("nan")
        rows.append([key, before, after, ratio,
                     " / ".join(f"{v:.4g}" for v in results["before"][key]),
                     " / ".join(f"{v:.4g}" for v in results["after"][key])])
    print(f"\nbefore = {args.before}, after = this checkout; {args.rounds} alternating rounds "
          f"of {args.duration:g} s; medians\n")
    print(common.table(rows, ["measure", "before", "after", "after / before",
                              "before per round", "after per round"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
