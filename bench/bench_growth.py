"""Target 4 — flat growth. Three side-by-side comparisons, each alternating rounds between
a small and a large configuration served at the same time:

  groups   decide latency with 1,000,000 stored groups vs 1,000 (two databases, two
           `flagsvc serve`); wrk, 4 connections, each request a RANDOM stored org (so the big
           database really misses the per-worker cache).           target ≤ 1.5×
  flags    decide latency, 1,000 flags defined and 10 requested (flag_keys_to_evaluate) vs 10
           defined and the same 10 requested (two projects, one server).   target ≤ 1.3×
  events   /batch/ ingestion rate with 2,000,000 events stored vs none (two databases, two
           servers; bodies as in bench_ingest).                     target ≥ 0.8×

Bulk rows are written straight into the `groups` and `events` tables with sqlite3 (shape of
migrations/; the stored events' timestamps span `--event-days`, 20 by default) — fast, and
the service reads them as it would its own.

    python bench/bench_growth.py [--groups 1000000] [--events 2000000] [--duration 5]
                                 [--rounds 3] [--only groups,flags,events] [--no-record]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sqlite3
import sys
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import bench_ingest
import common

LUA = os.path.join(common.BENCH_DIR, "wrk_decide.lua")
SECOND_TOKEN = "phc_bench_api_token_second_project"
SECOND_SECRET = "phs_bench_secret_key_second_project"


def bulk_groups(db: str, project_id: int, start: int, stop: int) -> None:
    """Orgs org-<start>..org-<stop-1> straight into `groups` (deterministic properties)."""
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA synchronous = OFF")
    now = time.time()
    rng = random.Random(99)
    conn.execute("BEGIN")
    chunk = 50_000
    for lo in range(start, stop, chunk):
        rows = []
        for i in range(lo, min(stop, lo + chunk)):
            props = {"plan": rng.choice(common.PLANS), "employees": rng.randint(1, 500)}
            rows.append((project_id, common.GROUP_TYPE, common.org_key(i), json.dumps(props),
                         json.dumps({k: now for k in props}), now, now))
        conn.executemany(
            "INSERT INTO groups (project_id, group_type, group_key, properties, property_ts, "
            "created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
    conn.execute("COMMIT")
    conn.close()


def bulk_events(db: str, project_id: int, n: int, days: float = 20) -> None:
    """`n` stored events (uuid4 message ids, timestamps and receipt spread over the last
    `days` days; the default project keeps 30 days)."""
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA synchronous = OFF")
    conn.execute("PRAGMA cache_size = -262144")
    now = time.time()
    rng = random.Random(5)
    conn.execute("BEGIN")
    chunk = 100_000
    for lo in range(0, n, chunk):
        rows = []
        for i in range(lo, min(n, lo + chunk)):
            ts = now - rng.random() * days * 86400
            org = common.org_key(rng.randrange(common.N_ORGS))
            rows.append((project_id, str(uuid.uuid4()), "track", "page_viewed",
                         f"user-{rng.randrange(50_000)}", f'{{"organization": "{org}"}}',
                         f'{{"path": "/app/{i % 100}", "$lib": "posthog-python"}}', ts, ts))
        conn.executemany(
            "INSERT INTO events (project_id, message_id, type, event, distinct_id, groups, "
            "properties, timestamp, received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
    conn.execute("COMMIT")
    conn.close()


def alternate(rounds: int, runs: dict[str, callable]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {k: [] for k in runs}
    names = list(runs)
    for rnd in range(rounds):
        for name in (names if rnd % 2 == 0 else names[::-1]):
            r = runs[name]()
            out[name].append(r)
            brief = {k: round(v, 2) for k, v in r.items() if isinstance(v, float)}
            print(f"  round {rnd + 1} {name}: {brief}")
    return out


def wrk_latency(srv: common.Server, duration: float, env: dict[str, str]) -> dict:
    cpu = srv.cpu_seconds()
    r = common.run_wrk(srv.url, LUA, duration, 4, env)
    if r["non2xx"] or r["socket_errors"] or not r["requests"]:
        raise SystemExit(f"decide failed under load: {r.get('raw')} {r.get('stderr')}")
    r["mean_ms"] = 4 / r["rps"] * 1000  # closed loop: latency = connections / throughput
    # Server CPU per request: steadier than latency when other jobs share the machine.
    r["cpu_ms"] = (srv.cpu_seconds() - cpu) / r["requests"] * 1000
    return {k: r[k] for k in ("rps", "p50", "p99", "mean_ms", "cpu_ms")}


def med(rs: list[dict], key: str) -> float:
    return common.median([r[key] for r in rs])


def growth_groups(args: argparse.Namespace) -> tuple[list, list]:
    d = common.tmpdir("growth-groups")
    small, big = os.path.join(d, "small.db"), os.path.join(d, "big.db")
    t0 = time.time()
    orgs = common.make_orgs(1000)
    flags = common.flag_variations(20)
    common.setup_database(small, flags, orgs)
    common.setup_database(big, flags, orgs)
    bulk_groups(big, 1, 1000, args.groups)
    print(f"groups: set-up {time.time() - t0:.1f} s")
    s_small = common.flagsvc_server(small, workers=args.workers)
    s_big = common.flagsvc_server(big, workers=args.workers)
    env = {"BENCH_TOKEN": common.API_TOKEN, "BENCH_RANDOM": "1"}
    with common.running(s_small, s_big):
        for s, n in ((s_small, 1000), (s_big, args.groups)):
            common.run_wrk(s.url, LUA, 2, 4, {**env, "BENCH_ORGS": str(n)})
        res = alternate(args.rounds, {
            "1k groups": lambda: wrk_latency(s_small, args.duration, {**env, "BENCH_ORGS": "1000"}),
            f"{args.groups // 1000}k groups": lambda: wrk_latency(
                s_big, args.duration, {**env, "BENCH_ORGS": str(args.groups)}),
        })
    (a, ra), (b, rb) = res.items()
    ratio = med(rb, "mean_ms") / med(ra, "mean_ms")
    cpu = med(rb, "cpu_ms") / med(ra, "cpu_ms")
    rows = [[k, med(v, "rps"), med(v, "mean_ms"), med(v, "p50"), med(v, "p99"), med(v, "cpu_ms")]
            for k, v in res.items()]
    checks = [[f"decide latency {b} / {a} (mean)", ratio, "<= 1.5", common.verdict(ratio <= 1.5)],
              [f"decide server CPU/request {b} / {a}", cpu, "<= 1.5", common.verdict(cpu <= 1.5)],
              [f"decide p50 {b} / {a}", med(rb, "p50") / med(ra, "p50"), "(info)", ""]]
    return rows, checks


def growth_flags(args: argparse.Namespace) -> tuple[list, list]:
    from flagsvc.store import Store

    d = common.tmpdir("growth-flags")
    db = os.path.join(d, "flags.db")
    t0 = time.time()
    orgs = common.make_orgs()
    many = common.flag_variations(1000)
    p1 = common.setup_database(db, many, orgs)  # project 1: 1,000 flags
    store = Store(db, synchronous="OFF")
    p2 = store.create_project("ten", api_token=SECOND_TOKEN, secret_key=SECOND_SECRET)
    ten = many[:10]
    for f in ten:
        store.create_flag(p2["id"], f)
    calls = common.group_calls(orgs)
    for i in range(0, len(calls), 1000):
        store.ingest(p2["id"], calls[i:i + 1000])
    store.close()
    print(f"flags: set-up {time.time() - t0:.1f} s (projects {p1['id']}, {p2['id']})")
    keys = json.dumps([f["key"] for f in ten], separators=(",", ":"))
    srv = common.flagsvc_server(db, workers=args.workers)
    env = {"BENCH_KEYS": keys, "BENCH_ORGS": str(common.N_ORGS)}
    with common.running(srv):
        status, body = common.post_json(srv.url + "/flags/?v=2", {
            "api_key": common.API_TOKEN, "groups": {"organization": "org-00001"},
            "flag_keys_to_evaluate": json.loads(keys)})
        assert status == 200 and len(body["flags"]) == 10, (status, str(body)[:200])
        for tok in (common.API_TOKEN, SECOND_TOKEN):
            common.run_wrk(srv.url, LUA, 2, 4, {**env, "BENCH_TOKEN": tok})
        res = alternate(args.rounds, {
            "10 defined": lambda: wrk_latency(srv, args.duration,
                                              {**env, "BENCH_TOKEN": SECOND_TOKEN}),
            "1000 defined, 10 requested": lambda: wrk_latency(
                srv, args.duration, {**env, "BENCH_TOKEN": common.API_TOKEN}),
        })
    (a, ra), (b, rb) = res.items()
    ratio = med(rb, "mean_ms") / med(ra, "mean_ms")
    cpu = med(rb, "cpu_ms") / med(ra, "cpu_ms")
    rows = [[k, med(v, "rps"), med(v, "mean_ms"), med(v, "p50"), med(v, "p99"), med(v, "cpu_ms")]
            for k, v in res.items()]
    checks = [[f"decide latency {b} / {a} (mean)", ratio, "<= 1.3", common.verdict(ratio <= 1.3)],
              [f"decide server CPU/request {b} / {a}", cpu, "<= 1.3", common.verdict(cpu <= 1.3)]]
    return rows, checks


def growth_events(args: argparse.Namespace) -> tuple[list, list]:
    d = common.tmpdir("growth-events")
    empty, full = os.path.join(d, "empty.db"), os.path.join(d, "full.db")
    t0 = time.time()
    orgs = common.make_orgs()
    flags = common.flag_variations(20)
    common.setup_database(empty, flags, orgs)
    common.setup_database(full, flags, orgs)
    bulk_events(full, 1, args.events, args.event_days)
    os.sync()  # the bulk load wrote with synchronous=OFF: flush it now, not during the rounds
    rng = random.Random(11)
    n_bodies = int(args.duration * 300) * args.rounds + 40  # more than the servers can take
    bodies = [bench_ingest.batch_body(bench_ingest.make_events(rng)) for _ in range(n_bodies)]
    print(f"events: set-up {time.time() - t0:.1f} s")
    s_empty = common.flagsvc_server(empty, workers=args.workers)
    s_full = common.flagsvc_server(full, workers=args.workers)
    # Each server gets its own slice of bodies (fresh message ids, never duplicates).
    slices = {"empty": iter(bodies[: n_bodies // 2]), "full": iter(bodies[n_bodies // 2:])}

    def ingest(name: str, srv: common.Server) -> dict:
        # Each round takes its own share: post_batches sends what it can in the duration,
        # and bodies handed to one round are never reused by the next (fresh message ids).
        share = (n_bodies // 2 - 10) // args.rounds
        chunk = [b for _, b in zip(range(share), slices[name], strict=False)]
        r = bench_ingest.post_batches(srv.port, chunk, args.clients, args.duration)
        if r["failed"]:
            raise SystemExit(f"ingestion failed: {r['failed']}")
        return {"events_s": r["ok"] * 100 / r["elapsed"], "p50": r["p50"], "p99": r["p99"]}

    with common.running(s_empty, s_full):
        for name, s in (("empty", s_empty), ("full", s_full)):
            bench_ingest.post_batches(s.port, [next(slices[name]) for _ in range(10)],
                                      args.clients, 30)
        res = alternate(args.rounds, {
            "0 events stored": lambda: ingest("empty", s_empty),
            f"{args.events // 1_000_000}M events stored": lambda: ingest("full", s_full),
        })
    (a, ra), (b, rb) = res.items()
    ratio = med(rb, "events_s") / med(ra, "events_s")
    rows = [[k, med(v, "events_s"), med(v, "p50"), med(v, "p99")] for k, v in res.items()]
    checks = [[f"ingestion rate {b} / {a}", ratio, ">= 0.8", common.verdict(ratio >= 0.8)]]
    return rows, checks


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--groups", type=int, default=1_000_000)
    ap.add_argument("--events", type=int, default=2_000_000)
    ap.add_argument("--duration", type=float, default=5)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--event-days", type=float, default=20,
                    help="the stored events' timestamps span this many days up to now")
    ap.add_argument("--only", default="groups,flags,events")
    ap.add_argument("--no-record", action="store_true")
    args = ap.parse_args()
    parts = args.only.split(",")
    body = [f"Alternating {args.rounds} rounds of {args.duration:g} s; decide via wrk (1 pinned "
            "thread, 4 connections, mean latency = connections / throughput), ingestion via 4 "
            "client threads posting 100-event PostHog batches"
            + (f"; stored events spread over {args.event_days:g} days." if "events" in parts
               else "."), ""]
    all_checks: list = []
    if "groups" in parts:
        rows, checks = growth_groups(args)
        body += [common.table(rows, ["decide, random stored org", "req/s", "mean ms", "p50 ms",
                                     "p99 ms", "CPU ms/req"]), ""]
        all_checks += checks
    if "flags" in parts:
        rows, checks = growth_flags(args)
        body += [common.table(rows, ["decide, 10 flags requested", "req/s", "mean ms", "p50 ms",
                                     "p99 ms", "CPU ms/req"]), ""]
        all_checks += checks
    if "events" in parts:
        rows, checks = growth_events(args)
        body += [common.table(rows, ["/batch/ ingestion", "events/s", "p50 ms/req",
                                     "p99 ms/req"]), ""]
        all_checks += checks
    body.append(common.table(all_checks, ["measure", "value", "target", ""]))
    common.record("bench_growth (target 4)", "\n".join(body))
    return 0


if __name__ == "__main__":
    sys.exit(main())
