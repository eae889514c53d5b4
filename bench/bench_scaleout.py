"""Issue 19 — flagsvc on PostgreSQL, one node and two.

All in one run, on the reference data (20 flags, 20,000 organizations stored), servers as
users run them (`flagsvc serve`, default workers):

1. decide on PostgreSQL vs decide on SQLite (same data, same gunicorn configuration): wrk,
   alternating rounds; req/s ratio (target >= 0.9) and server CPU per request.
2. ingestion on PostgreSQL (POST /batch/, 100 PostHog events per request, bench_ingest's
   bodies) vs a raw psycopg `executemany` of the same rows on the same server (events insert
   + groups upsert, one transaction per 100 events); target >= 0.35x; events counted after.
3. scale-out cost: the same decide (and ingestion) load on one node, then split over two
   nodes: server CPU per request — every flagsvc process plus every PostgreSQL backend,
   from /proc — 2 nodes / 1 node (target <= 1.15), with errors, deadlocks and serialization
   failures counted (pg_stat_database and the answers).
4. cross-node freshness: a flag edit / a group property acknowledged by node A until node B
   serves it, and back (max over trials, target <= 1 s).

    python bench/bench_scaleout.py [--duration 5] [--rounds 2] [--trials 20] [--no-record]

PostgreSQL: FLAGSVC_BENCH_POSTGRES_URL (default the tests' server); the bench works in a
schema of its own, dropped at the end.
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))

import bench_ingest
import common
import psycopg
import requests

PG = os.environ.get("FLAGSVC_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
LUA = os.path.join(common.BENCH_DIR, "wrk_decide.lua")
WRK_ENV = {"BENCH_TOKEN": common.API_TOKEN, "BENCH_ORGS": str(common.N_ORGS)}


def pg_schema() -> tuple[str, str]:
    schema = f"bench_{os.getpid()}"
    with psycopg.connect(PG, autocommit=True) as c:
        c.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        c.execute(f"CREATE SCHEMA {schema}")
    sep = "&" if "?" in PG else "?"
    return schema, f"{PG}{sep}options=-csearch_path%3D{schema}"


def drop_schema(schema: str) -> None:
    with psycopg.connect(PG, autocommit=True) as c:
        c.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


def analyze_loaded(url: str) -> None:
    """Statistics of the tables the set-up filled, as autovacuum gathers them within a minute
    of a bulk load — and of those only: autovacuum never analyzes a table nobody wrote, and
    an empty table analyzed as empty has every node's PostgreSQL backends plan their
    foreign-key checks against it as scans of it (persons: 340 µs per membership row, 0.19×
    the raw baseline instead of 0.5×) until autovacuum's next look re-plans them."""
    with psycopg.connect(url, autocommit=True) as c:
        tables = [t for (t,) in c.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")]
        for t in tables:
            if c.execute(f"SELECT EXISTS (SELECT 1 FROM {t})").fetchone()[0]:
                c.execute(f"ANALYZE {t}")


def postgres_cpu() -> float:
    """user+system CPU seconds of every PostgreSQL process so far."""
    out = subprocess.run(["pgrep", "-x", "postgres"], capture_output=True, text=True).stdout
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in out.split():
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / tick
    return total


def pg_counters() -> tuple[int, int]:
    """(deadlocks, serialization conflicts) of the database so far."""
    with psycopg.connect(PG) as c:
        row = c.execute("SELECT deadlocks, conflicts FROM pg_stat_database "
                        "WHERE datname = current_database()").fetchone()
    return int(row[0]), int(row[1])


def cpu_of(nodes: list[common.Server]) -> float:
    return sum(n.cpu_seconds() for n in nodes) + postgres_cpu()


def wrk_parallel(nodes: list[common.Server], duration: float, connections: int) -> dict:
    """One wrk per node at the same time, the connections split between them."""
    results: list[dict] = [{} for _ in nodes]

    def run(i: int) -> None:
        results[i] = common.run_wrk(nodes[i].url, LUA, duration,
                                    max(1, connections // len(nodes)), WRK_ENV)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(nodes))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {"rps": sum(r["rps"] for r in results),
            "requests": sum(r["requests"] for r in results),
            "errors": sum(r["non2xx"] + r["socket_errors"] for r in results),
            "p99": max(r["p99"] for r in results)}


def measured(nodes: list[common.Server], fn) -> tuple[dict, float]:
    before = cpu_of(nodes)
    res = fn()
    return res, cpu_of(nodes) - before


def ingest_parallel(nodes: list[common.Server], bodies: list[bytes], clients: int,
                    duration: float) -> dict:
    share = len(bodies) // len(nodes)
    results: list[dict] = [{} for _ in nodes]

    def run(i: int) -> None:
        results[i] = bench_ingest.post_batches(nodes[i].port, bodies[i * share:(i + 1) * share],
                                               max(1, clients // len(nodes)), duration)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(nodes))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = max(r["elapsed"] for r in results)
    ok = sum(r["ok"] for r in results)
    failed: dict[str, int] = {}
    for r in results:
        for k, v in r["failed"].items():
            failed[k] = failed.get(k, 0) + v
    return {"ok": ok, "failed": failed, "elapsed": elapsed, "rate": ok * 100 / elapsed}


def raw_psycopg(batches: list[tuple[list[tuple], list[tuple]]], url: str) -> float:
    """events/s of psycopg executemany of the same rows, one transaction per batch."""
    with psycopg.connect(url, autocommit=True) as c:
        c.execute("DROP TABLE IF EXISTS raw_events, raw_groups")
        c.execute("CREATE TABLE raw_events (id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY "
                  "KEY, project_id BIGINT NOT NULL, message_id TEXT NOT NULL, type TEXT NOT "
                  "NULL, event TEXT, distinct_id TEXT, groups TEXT, properties TEXT NOT NULL, "
                  "timestamp DOUBLE PRECISION NOT NULL, received_at DOUBLE PRECISION NOT NULL, "
                  "day INTEGER GENERATED ALWAYS AS (floor(timestamp / 86400)::integer) STORED)")
        c.execute("CREATE UNIQUE INDEX ON raw_events(project_id, day, message_id)")
        c.execute("CREATE INDEX ON raw_events(project_id, received_at)")
        c.execute("CREATE TABLE raw_groups (id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY "
                  "KEY, project_id BIGINT NOT NULL, group_type TEXT NOT NULL, group_key TEXT "
                  "NOT NULL, properties JSONB NOT NULL DEFAULT '{}', last_seen DOUBLE "
                  "PRECISION, updated_at DOUBLE PRECISION NOT NULL, "
                  "UNIQUE (project_id, group_type, group_key))")
        n = 0
        start = time.perf_counter()
        for ev_rows, group_rows in batches:
            # one upsert per group per statement (PostgreSQL refuses a row twice in one)
            merged: dict[tuple, tuple] = {}
            for r in group_rows:
                merged[(r[0], r[1], r[2])] = r
            with c.transaction(), c.cursor() as cur:
                cur.executemany(
                    "INSERT INTO raw_events (project_id, message_id, type, event, distinct_id, "
                    "groups, properties, timestamp, received_at) VALUES "
                    "(%s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING", ev_rows)
                cur.executemany(
                    "INSERT INTO raw_groups AS g (project_id, group_type, group_key, properties, "
                    "last_seen, updated_at) VALUES (%s, %s, %s, %s, %s, %s) "
                    "ON CONFLICT (project_id, group_type, group_key) DO UPDATE SET "
                    "properties = g.properties || excluded.properties, "
                    "last_seen = GREATEST(g.last_seen, excluded.last_seen), "
                    "updated_at = excluded.updated_at", sorted(merged.values()))
            n += len(ev_rows)
        elapsed = time.perf_counter() - start
        got = c.execute("SELECT count(*) FROM raw_events").fetchone()[0]
        c.execute("DROP TABLE raw_events, raw_groups")
    assert got == n, (got, n)
    return n / elapsed


def pinned_decide(url: str, args) -> dict[str, dict[str, float]]:
    """Decide on one node pinned to CPU 0 vs two pinned to CPUs 0 and 1 (as two one-core
    machines would run them), alternating rounds, medians: req/s, server CPU per request
    and the load generator's CPU per request (wrk is pinned to the last CPU, beside the
    second node: its share is the second node's handicap)."""
    usable = sorted(os.sched_getaffinity(0))
    p0 = common.flagsvc_server(url, cpus=str(usable[0]))
    p1 = common.flagsvc_server(url, cpus=str(usable[-1]))
    out: dict[str, list[dict]] = {"1": [], "2": []}
    with common.running(p0, p1):
        for s in (p0, p1):
            common.run_wrk(s.url, LUA, 2, args.connections, WRK_ENV)  # warm-up
        for rnd in range(args.rounds):
            order = [("1", [p0]), ("2", [p0, p1])]
            for name, nodes in (order if rnd % 2 == 0 else order[::-1]):
                cpu0 = cpu_of(nodes)  # (its pgrep runs outside the window of wrk's rusage)
                before = resource.getrusage(resource.RUSAGE_CHILDREN)
                res = wrk_parallel(nodes, args.duration, args.connections)
                after = resource.getrusage(resource.RUSAGE_CHILDREN)
                cpu = cpu_of(nodes) - cpu0
                load = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
                n = max(1, res["requests"])
                out[name].append({"rps": res["rps"], "cpu_ms": cpu / n * 1000,
                                  "wrk_ms": load / n * 1000, "errors": res["errors"]})
                print(f"round {rnd + 1} pinned decide {name} node(s): {res['rps']:.0f} req/s, "
                      f"{cpu / n * 1000:.3f} ms CPU/req, errors {res['errors']}")
    return {k: {m: common.median([r[m] for r in v]) for m in ("rps", "cpu_ms", "wrk_ms")}
            | {"errors": sum(r["errors"] for r in v)} for k, v in out.items()}


def count_pg_events(url: str) -> int:
    with psycopg.connect(url) as c:
        return c.execute("SELECT count(*) FROM events").fetchone()[0]


def freshness(a: common.Server, b: common.Server, trials: int) -> dict[str, list[float]]:
    from stress import scaleout

    scaleout.TOKENS.update(api=common.API_TOKEN, secret=common.SECRET_KEY)
    s = requests.Session()
    scaleout.create_flag(a.url)
    out: dict[str, list[float]] = {"property": [], "edit": []}
    for i in range(trials):
        org = f"fresh-{i}-{uuid.uuid4().hex[:6]}"
        x, y = (a, b) if i % 2 == 0 else (b, a)
        out["property"].append(scaleout.property_trial(s, x.url, y.url, org, "enterprise"))
        out["edit"].append(scaleout.edit_trial(s, x.url, y.url, org, False))
        out["edit"].append(scaleout.edit_trial(s, y.url, x.url, org, True))
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=float, default=5)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--batches", type=int, default=1500)
    ap.add_argument("--raw-batches", type=int, default=300)
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--no-record", action="store_true")
    args = ap.parse_args()
    if not common.have_wrk():
        raise SystemExit("wrk is not installed (apt-get install -y wrk)")

    d = common.tmpdir("bench-scaleout")
    lite = os.path.join(d, "flagsvc.db")
    schema, url = pg_schema()
    try:
        t0 = time.time()
        flags, orgs = common.flag_variations(20), common.make_orgs()
        common.setup_database(lite, flags, orgs)
        common.setup_database(url, flags, orgs)
        analyze_loaded(url)
        print(f"set-up: SQLite and PostgreSQL, 20 flags, {common.N_ORGS} orgs, "
              f"{time.time() - t0:.1f} s")
        rng = random.Random(7)
        event_batches = [bench_ingest.make_events(rng) for _ in range(args.batches)]
        bodies = [bench_ingest.batch_body(b) for b in event_batches]
        raw_batches = [bench_ingest.raw_rows(b) for b in event_batches[:args.raw_batches]]
        return run(args, lite, url, bodies, raw_batches)
    finally:
        drop_schema(schema)


def run(args, lite: str, url: str, bodies: list[bytes], raw_batches: list) -> int:
    sq = common.flagsvc_server(lite)
    a = common.flagsvc_server(url)
    b = common.flagsvc_server(url)
    dead0 = pg_counters()
    with common.running(sq, a, b):
        for s in (sq, a, b):
            common.run_wrk(s.url, LUA, 2, args.connections, WRK_ENV)  # warm-up
        # 1. decide PostgreSQL vs SQLite, and 3. decide on one node vs two
        dec: dict[str, list] = {"sqlite": [], "pg1": [], "pg2": []}
        for rnd in range(args.rounds):
            order = [("sqlite", [sq]), ("pg1", [a]), ("pg2", [a, b])]
            if rnd % 2:
                order.reverse()
            for name, nodes in order:
                res, cpu = measured(nodes if name != "sqlite" else [],
                                    lambda n=nodes: wrk_parallel(n, args.duration,
                                                                 args.connections))
                if name == "sqlite":
                    cpu = 0.0  # measured below without PostgreSQL's share
                res["cpu_ms"] = cpu / max(1, res["requests"]) * 1000
                dec[name].append(res)
                print(f"round {rnd + 1} decide {name}: {res['rps']:.0f} req/s, "
                      f"{res['cpu_ms']:.3f} ms CPU/req, errors {res['errors']}")
        # SQLite node's CPU per request (its own processes only) for context
        before = sq.cpu_seconds()
        r = common.run_wrk(sq.url, LUA, args.duration, args.connections, WRK_ENV)
        sqlite_cpu = (sq.cpu_seconds() - before) / max(1, r["requests"]) * 1000

        # 2. ingestion vs raw psycopg, and 3. one node vs two
        # alternating rounds (1 node, 2 nodes, then 2, 1, ...), fresh bodies for each
        raw_before = raw_psycopg(raw_batches, url)
        stored0 = count_pg_events(url)
        share = len(bodies) // (2 * args.rounds)
        parts = [bodies[i * share:(i + 1) * share] for i in range(2 * args.rounds)]
        ing: dict[str, list] = {"1": [], "2": []}
        for rnd in range(args.rounds):
            order = [("1", [a]), ("2", [a, b])]
            if rnd % 2:
                order.reverse()
            for j, (name, nodes) in enumerate(order):
                part = parts[2 * rnd + j]
                res, cpu = measured(nodes, lambda n=nodes, p=part: ingest_parallel(
                    n, p, args.clients, args.duration))
                res["cpu_us"] = cpu / max(1, res["ok"] * 100) * 1e6
                ing[name].append(res)
                print(f"round {rnd + 1} ingest {name} node(s): {res['rate']:.0f} ev/s, "
                      f"{res['cpu_us']:.0f} µs CPU/event")
        stored = count_pg_events(url) - stored0
        ing1 = {"rate": common.median([r["rate"] for r in ing["1"]]),
                "ok": sum(r["ok"] for r in ing["1"]),
                "failed": {k: v for r in ing["1"] for k, v in r["failed"].items()}}
        ing2 = {"rate": common.median([r["rate"] for r in ing["2"]]),
                "ok": sum(r["ok"] for r in ing["2"]),
                "failed": {k: v for r in ing["2"] for k, v in r["failed"].items()}}
        raw_after = raw_psycopg(raw_batches, url)
        raw = (raw_before + raw_after) / 2
        print(f"ingest 1 node {ing1['rate']:.0f} ev/s, 2 nodes {ing2['rate']:.0f} ev/s, raw "
              f"{raw:.0f} ev/s")

        # 4. freshness
        fresh = freshness(a, b, args.trials)
    # 5. each node on a core of its own (taskset; default workers of one CPU each)
    pinned = pinned_decide(url, args)
    dead1 = pg_counters()

    med = {k: {m: common.median([r[m] for r in v]) for m in ("rps", "cpu_ms", "p99")}
           for k, v in dec.items()}
    errors = {k: sum(r["errors"] for r in v) for k, v in dec.items()}
    errors["pinned"] = pinned["1"]["errors"] + pinned["2"]["errors"]
    accepted = (ing1["ok"] + ing2["ok"]) * 100
    lost = accepted - stored
    ing_fail = {**ing1["failed"], **ing2["failed"]}
    ev_cpu1 = common.median([r["cpu_us"] for r in ing["1"]])
    ev_cpu2 = common.median([r["cpu_us"] for r in ing["2"]])
    deadlocks, conflicts = dead1[0] - dead0[0], dead1[1] - dead0[1]
    pg_vs_lite = med["pg1"]["rps"] / med["sqlite"]["rps"]
    dec_cost = med["pg2"]["cpu_ms"] / med["pg1"]["cpu_ms"]
    ing_cost = ev_cpu2 / ev_cpu1
    fmax = {k: max(v) for k, v in fresh.items()}
    body = [
        f"`flagsvc serve` nodes (default workers each) on one PostgreSQL 15 database and one "
        f"on SQLite, same data (20 flags, {common.N_ORGS} orgs); wrk 1 thread pinned to the last "
        f"CPU, {args.connections} connections (split over the nodes), {args.duration:g} s × "
        f"{args.rounds} alternating rounds; ingestion {args.clients} client threads, 100 PostHog "
        f"events per request (bench_ingest's bodies), {args.rounds} alternating rounds of "
        f"{args.duration:g} s each (1 node / 2 nodes), medians; PostgreSQL statistics taken "
        "after the set-up (ANALYZE of the tables it filled). CPU: every flagsvc process of "
        "the nodes + every PostgreSQL process, from /proc. 2 cores shared by the nodes, "
        "PostgreSQL and the load generators: a second node adds no CPU, so the 2-node rows "
        "measure its cost.",
        "",
        common.table([
            ["decide, SQLite node", med["sqlite"]["rps"], sqlite_cpu, med["sqlite"]["p99"],
             errors["sqlite"]],
            ["decide, PostgreSQL, 1 node", med["pg1"]["rps"], med["pg1"]["cpu_ms"],
             med["pg1"]["p99"], errors["pg1"]],
            ["decide, PostgreSQL, 2 nodes", med["pg2"]["rps"], med["pg2"]["cpu_ms"],
             med["pg2"]["p99"], errors["pg2"]],
        ], ["path", "req/s (median)", "server CPU ms/req", "p99 ms", "errors"]), "",
        common.table([
            ["ingest /batch/, PostgreSQL, 1 node", ing1["rate"], ev_cpu1, ing1["ok"]],
            ["ingest /batch/, PostgreSQL, 2 nodes", ing2["rate"], ev_cpu2, ing2["ok"]],
            ["raw psycopg executemany (mean)", raw, "", f"{raw_before:,.0f} / {raw_after:,.0f}"],
        ], ["path", "events/s", "server CPU µs/event", "requests / runs"]), "",
        "Each node on a core of its own (`taskset`, default workers of one CPU: 3 each); "
        "PostgreSQL unpinned; wrk pinned to the last CPU, beside the second node:",
        "",
        common.table([
            [f"decide, PostgreSQL, {n} pinned node{'s' * (n == '2')}", pinned[n]["rps"],
             pinned[n]["cpu_ms"], pinned[n]["wrk_ms"]] for n in ("1", "2")
        ] + [["2 nodes / 1", pinned["2"]["rps"] / pinned["1"]["rps"],
              pinned["2"]["cpu_ms"] / pinned["1"]["cpu_ms"],
              pinned["2"]["wrk_ms"] / pinned["1"]["wrk_ms"]]],
            ["path", "req/s (median)", "server CPU ms/req", "wrk CPU ms/req"]), "",
        common.table([
            ["decide PostgreSQL / SQLite req/s", pg_vs_lite, ">= 0.9",
             common.verdict(pg_vs_lite >= 0.9)],
            ["ingest PostgreSQL / raw psycopg", ing1["rate"] / raw, ">= 0.35",
             common.verdict(ing1["rate"] / raw >= 0.35)],
            ["decide CPU/request 2 nodes / 1", dec_cost, "<= 1.15",
             common.verdict(dec_cost <= 1.15)],
            ["ingest CPU/event 2 nodes / 1", ing_cost, "<= 1.15",
             common.verdict(ing_cost <= 1.15)],
            ["decide errors (all runs)", sum(errors.values()), "0",
             common.verdict(not any(errors.values()))],
            ["ingest failed requests / events lost", f"{sum(ing_fail.values())} / {lost}", "0 / 0",
             common.verdict(not ing_fail and lost == 0)],
            ["deadlocks / serialization conflicts", f"{deadlocks} / {conflicts}", "0 / 0",
             common.verdict(deadlocks == 0 and conflicts == 0)],
            [f"freshness, property A→B (max of {len(fresh['property'])})", fmax["property"],
             "<= 1 s", common.verdict(fmax["property"] <= 1)],
            [f"freshness, flag edit A→B (max of {len(fresh['edit'])})", fmax["edit"], "<= 1 s",
             common.verdict(fmax["edit"] <= 1)],
        ], ["measure", "value", "target", ""]),
    ]
    common.record("bench_scaleout (issue 19)", "\n".join(body))
    return 0 if lost == 0 and not ing_fail else 1


if __name__ == "__main__":
    sys.exit(main())
