"""Issue 19 — group search and the blast-radius preview at 1M groups on PostgreSQL.

Loads `--groups` organizations (default 1,000,000, with COPY) plus 10,000 groups of another
type into a fresh schema of the PostgreSQL server (migrated by flagsvc: the indexes of
migrations/postgresql/0009_search_indexes.sql), ANALYZEs, then times through the admin API
(the Flask app in this process, `FLAGSVC_DATABASE` = that schema):

- GET /api/groups?search=...: a key prefix typed into the search box (a substring match,
  `group_key LIKE '%...%'`, the trigram index), narrow (1 match) and broad (~1 %);
- GET /api/groups?properties.plan=... (`properties @>`, the GIN index): rare (~1 %) and
  common (~25 %), and a property filter together with a search;
- POST /api/flags/preview: a draft flag evaluated over every organization (the
  blast-radius preview), with PREVIEW_SECONDS raised so the scan completes.

Each request is timed `--repeat` times (median, max; psycopg prepares a statement after 5
runs, so the later runs use the prepared plan). The plan of every query, as the store sends
it, is EXPLAINed (ANALYZE): the scan nodes are recorded and a sequential scan on groups is
flagged. Not part of the test suite (a `--groups 2000` run is its smoke test).

    python bench/bench_pg_groups.py [--groups 1000000] [--repeat 7] [--keep] [--no-record]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common

PG_URL = os.environ.get("FLAGSVC_BENCH_POSTGRES_URL",
                        os.environ.get("FLAGSVC_TEST_POSTGRES_URL",
                                       "postgresql://postgres@127.0.0.1:5432/test"))
PLANS = (("free", 60), ("pro", 14), ("team", 25), ("enterprise", 1))
REGIONS = ("eu-west", "eu-north", "us-east", "us-west", "ap-south", "ap-east", "sa", "af")


def schema_url(schema: str) -> str:
    sep = "&" if "?" in PG_URL else "?"
    return f"{PG_URL}{sep}options=-csearch_path%3D{schema}"


def load(url: str, n: int, seed: int = 3) -> int:
    """Migrate, create the project, COPY the groups in; returns the project id."""
    import psycopg

    from flagsvc.store import Store

    store = Store(url)
    project = store.create_project("bench", api_token=common.API_TOKEN,
                                   secret_key=common.SECRET_KEY)
    pid = project["id"]
    store.create_group_type(pid, "organization")
    store.create_group_type(pid, "team")
    store.close()
    rng = random.Random(seed)
    weights = [w for _, w in PLANS]
    names = [p for p, _ in PLANS]
    now = time.time()
    t = time.perf_counter()
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        with cur.copy("COPY groups (project_id, group_type, group_key, properties, "
                      "created_at, last_seen, updated_at) FROM STDIN") as copy:
            for i in range(n):
                props = {"plan": rng.choices(names, weights)[0],
                         "employees": rng.randint(1, 5000),
                         "region": rng.choice(REGIONS), "name": f"Organization {i}"}
                copy.write_row((pid, "organization", f"org-{i:07d}", json.dumps(props),
                                now, now, now))
            for i in range(10_000):
                copy.write_row((pid, "team", f"team-{i:05d}", json.dumps({"size": i % 50}),
                                now, now, now))
        conn.commit()
        conn.autocommit = True
        conn.execute("ANALYZE groups")
    print(f"loaded {n:,} + 10,000 groups with COPY in {time.perf_counter() - t:.1f} s")
    return pid


def plan_of(url: str, sql: str, args: list[Any], generic: bool = False
            ) -> tuple[str, float, bool]:
    """(scan nodes of the plan, execution ms, whether groups is read by a Seq Scan) of one
    of the store's statements, as PostgreSQL runs it: planned for its values, or
    (`generic`) the generic plan a prepared statement may settle on after psycopg's fifth
    run (plan_cache_mode = force_generic_plan)."""
    import psycopg

    from flagsvc.store.pg import pack, translated

    text, runs = translated(sql)
    with psycopg.connect(url) as conn:
        if generic:
            conn.execute("SET plan_cache_mode = force_generic_plan")
        rows = conn.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + text,
                            pack(args, runs) or None).fetchone()[0]
    plan = rows[0]
    nodes: list[str] = []

    def walk(node: dict[str, Any]) -> None:
        kind = node["Node Type"]
        if "Scan" in kind:
            target = node.get("Index Name") or node.get("Relation Name") or ""
            nodes.append(f"{kind} {target}".strip())
        for child in node.get("Plans", []):
            walk(child)
    walk(plan["Plan"])
    seq = any(x.startswith("Seq Scan groups") for x in nodes)
    return ", ".join(dict.fromkeys(nodes)), plan["Execution Time"], seq


def statements(pid: int, search: str | None, properties: dict[str, Any] | None
               ) -> list[tuple[str, list[Any]]]:
    """The count and page statements list_groups sends (captured from the store)."""
    from flagsvc.store.pgstore import PgStore

    sent: list[tuple[str, list[Any]]] = []

    class Capture:
        def execute(self, sql: str, args: Any = ()) -> Any:
            sent.append((sql, list(args)))

            class Empty:
                def fetchone(self) -> tuple:
                    return (0,)

                def __iter__(self) -> Any:
                    return iter(())
            return Empty()

    fake = object.__new__(PgStore)
    fake.conn = lambda: Capture()  # type: ignore[method-assign]
    PgStore.list_groups(fake, pid, group_type="organization", properties=properties,
                        search=search)
    return sent


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--groups", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--keep", action="store_true", help="leave the schema in place")
    ap.add_argument("--no-record", action="store_true")
    args = ap.parse_args()
    import psycopg

    schema = f"bench_groups_{os.getpid()}"
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    url = schema_url(schema)
    try:
        return run(url, args)
    finally:
        if not args.keep:
            with psycopg.connect(PG_URL, autocommit=True) as conn:
                conn.execute(f"DROP SCHEMA {schema} CASCADE")


def run(url: str, args: argparse.Namespace) -> int:
    n = args.groups
    pid = load(url, n)
    os.environ.update({"FLAGSVC_DATABASE": url, "FLAGSVC_PREVIEW_SECONDS": "600",
                       "FLAGSVC_LOG_LEVEL": "WARNING"})
    from flagsvc.app import create_app

    client = create_app().test_client()
    auth = {"Authorization": f"Bearer {common.SECRET_KEY}"}
    narrow = f"org-{n // 2:07d}"
    broad = f"org-{n // 2:07d}"[:-2]  # 100 keys share it (1 % of 10,000 at --groups 10000)
    searches = [
        ("search: key prefix, 1 match", f"search={narrow}", narrow, None),
        (f"search: key prefix, {n // 10_000 if n >= 10_000 else 1}00-key block",
         f"search={broad}", broad, None),
        ("properties.plan=enterprise (~1 %)", "properties.plan=enterprise", None,
         {"plan": "enterprise"}),
        ("properties.plan=team (~25 %)", "properties.plan=team", None, {"plan": "team"}),
        ("plan=team and key prefix", f"properties.plan=team&search={broad}", broad,
         {"plan": "team"}),
    ]
    rows = []
    plans = []
    seq_any = False
    for label, qs, search, props in searches:
        times = []
        for _ in range(args.repeat):
            t = time.perf_counter()
            r = client.get(f"/api/groups?group_type=organization&limit=50&{qs}", headers=auth)
            times.append((time.perf_counter() - t) * 1000)
            assert r.status_code == 200, r.get_data(as_text=True)
        total = r.get_json()["total"]
        rows.append([label, total, statistics.median(times), max(times)])
        for sql, sargs in statements(pid, search, props):
            kind = "count" if sql.lstrip().upper().startswith("SELECT COUNT") else "page"
            for generic in (False, True):
                nodes, ms, seq = plan_of(url, sql, sargs, generic)
                seq_any |= seq
                plans.append([label, kind + (" (generic)" if generic else ""), nodes, ms,
                              "**SEQ SCAN**" if seq else "index"])
    flag = {"key": "big-rollout", "bucket_by": "organization", "conditions": [
        {"properties": [{"type": "group", "group_type": "organization", "key": "plan",
                         "operator": "exact", "value": ["team", "enterprise"]}],
         "rollout_percentage": 50}]}
    times, body = [], {}
    for _ in range(max(3, args.repeat // 2)):
        t = time.perf_counter()
        r = client.post("/api/flags/preview", json=flag, headers=auth)
        times.append(time.perf_counter() - t)
        assert r.status_code == 200, r.get_data(as_text=True)
        body = r.get_json()
    assert body["complete"] and body["total"] == n, body
    preview_s = statistics.median(times)
    page_sql = ("SELECT group_key, properties FROM groups WHERE project_id = ? AND "
                "group_type = ? AND group_key > ? ORDER BY group_key LIMIT ?")
    for generic in (False, True):  # a page of iter_groups' scan, from the middle
        nodes, ms, seq = plan_of(url, page_sql, [pid, "organization", narrow, 5000], generic)
        plans.append(["preview scan (iter_groups, a 5,000-row page)",
                      "page" + (" (generic)" if generic else ""), nodes, ms,
                      "**SEQ SCAN**" if seq else "index"])
        seq_any |= seq
    import resource

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    text = [
        f"{n:,} organizations (+10,000 teams) loaded with COPY into a fresh schema migrated by "
        f"flagsvc (indexes of migrations/postgresql/0009_search_indexes.sql), ANALYZEd. "
        f"Admin API through the Flask app in-process, {args.repeat} runs per request "
        "(median / max ms; limit=50 per page, count included).", "",
        common.table(rows, ["GET /api/groups", "total", "median ms", "max ms"]), "",
        common.table([["POST /api/flags/preview (plan in [team, enterprise], 50 %)",
                       body["total"], body["enabled"], preview_s,
                       body["total"] / preview_s, rss]],
                     ["preview", "groups scanned", "enabled", "median s", "groups/s",
                      "bench process max RSS MB"]), "",
        "Plans (EXPLAIN ANALYZE of the statements the store sends, scan nodes):", "",
        common.table(plans, ["query", "statement", "scan nodes", "exec ms", ""]),
    ]
    common.record("bench_pg_groups (issue 19: search and preview at "
                  f"{n:,} groups on PostgreSQL)", "\n".join(text))
    return 1 if seq_any else 0


if __name__ == "__main__":
    sys.exit(main())
