"""The PostgreSQL backend's own guarantees: its migrations (fresh == migrated, a twin of
every SQLite migration, the same tables and columns), and the rules that must hold across
nodes — several stores with pools of their own on one database, writing at once."""

from __future__ import annotations

import math
import re
import sqlite3
import threading

import pytest
from conftest import drop_pg_schema, pg_schema_url

from flagsvc.app import ensure_default_project
from flagsvc.ingest.model import Call
from flagsvc.store import Conflict, Store, db, pg
from flagsvc.store.ingest import dedupe_day


@pytest.fixture
def pg_url():
    schema, url = pg_schema_url()
    yield url
    drop_pg_schema(schema)


@pytest.fixture
def nodes(pg_url):
    """Four stores on one database, each with its own pool: what four nodes are."""
    first = Store(pg_url)
    stores = [first] + [Store(pg_url, migrate_now=False) for _ in range(3)]
    yield stores
    for s in stores:
        s.close()


def _all_at_once(n, fn):
    barrier = threading.Barrier(n)
    results, errors = [None] * n, []

    def run(i):
        barrier.wait()
        try:
            results[i] = fn(i)
        except Exception as e:  # noqa: BLE001 (collected and asserted on)
            results[i] = e

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    return results


def test_every_sqlite_migration_has_a_postgresql_twin():
    """Whoever adds a SQLite migration adds its PostgreSQL twin, with the same number."""
    sqlite_names = [n for n, _ in db.migration_names()]
    pg_names = [n for n, _ in pg.migration_names()]
    assert set(sqlite_names) <= set(pg_names)
    assert pg_names == sorted(pg_names)


def test_both_backends_have_the_same_tables_and_columns(pg_url, tmp_path):
    lite = Store(str(tmp_path / "f.db"))
    pgs = Store(pg_url)
    try:
        tables = [r[0] for r in lite.conn().execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")]
        lite_cols = {(t, r[1]) for t in tables
                     for r in lite.conn().execute(f"PRAGMA table_xinfo({t})")}
        pg_cols = {(t, c) for t, c in pgs.conn().execute(
            "SELECT table_name, column_name FROM information_schema.columns "
            "WHERE table_schema = current_schema()")}
        # seq: the insertion order SQLite's rowid gives person_distinct_ids
        assert pg_cols - {("person_distinct_ids", "seq")} == lite_cols
    finally:
        lite.close()
        pgs.close()


def test_step_by_step_migration_ends_with_the_fresh_schema(monkeypatch):
    everything = pg.migration_names()
    fresh_schema, fresh_url = pg_schema_url()
    stepped_schema, stepped_url = pg_schema_url()
    try:
        fresh = Store(fresh_url)
        expected = fresh.schema()
        fresh.close()
        for n in range(1, len(everything) + 1):
            monkeypatch.setattr(pg, "migration_names", lambda n=n: everything[:n])
            s = Store(stepped_url, migrate_now=False)
            try:
                assert s.migrate() == [everything[n - 1][0]]
                if n == 2:  # data present while the later ones run (0003 adds a column)
                    s.conn().execute("INSERT INTO projects (id, name, api_token, hash_salt, "
                                     "created_at) VALUES (1, 'p', 'phc_x', 's', 0)")
                    s.conn().execute("INSERT INTO events (project_id, message_id, type, "
                                     "timestamp, received_at) VALUES (1, 'm', 'track', 1e9, 0)")
            finally:
                s.close()
        monkeypatch.undo()
        stepped = Store(stepped_url)
        try:
            assert stepped.migrate() == []
            assert stepped.schema() == expected
            assert stepped.conn().execute("SELECT day FROM events").fetchone() == (
                dedupe_day(1e9),)
        finally:
            stepped.close()
    finally:
        drop_pg_schema(fresh_schema)
        drop_pg_schema(stepped_schema)


def test_the_day_column_is_the_day_python_probes(nodes):
    """PostgreSQL's CAST rounds where SQLite's truncates: the column uses floor()."""
    store = nodes[0]
    pid = store.create_project("days")["id"]
    times = []
    for midnight in (10_957 * 86400.0, 20_000 * 86400.0, 24_837 * 86400.0):
        times += [math.nextafter(midnight, 0), midnight, math.nextafter(midnight, math.inf),
                  midnight - 0.5, midnight + 86399.999999]
    with db.transaction(store.conn()) as conn:
        conn.executemany("INSERT INTO events (project_id, message_id, type, properties, "
                         "timestamp, received_at) VALUES (?, ?, 'track', '{}', ?, 0)",
                         [(pid, f"t{i}", t) for i, t in enumerate(times)])
    got = store.conn().execute("SELECT timestamp, day FROM events WHERE project_id = ? "
                               "ORDER BY id", (pid,)).fetchall()
    assert got == [(t, dedupe_day(t)) for t in times]


def test_nodes_starting_together_create_exactly_one_default_project(pg_url):
    stores = [Store(pg_url, migrate_now=False) for _ in range(6)]
    try:
        created = _all_at_once(6, lambda i: (stores[i].migrate(),
                                             ensure_default_project(stores[i], {}))[1])
        assert not [c for c in created if isinstance(c, Exception)], created
        assert len([c for c in created if c is not None]) == 1
        assert len(stores[0].list_projects()) == 1
    finally:
        for s in stores:
            s.close()


def test_same_version_edits_on_several_nodes_exactly_one_wins(nodes):
    pid = nodes[0].create_project("p")["id"]
    flag = nodes[0].create_flag(pid, {"key": "f", "conditions": []})
    for round_ in range(5):
        version = nodes[0].get_flag(pid, "f")["version"]
        results = _all_at_once(len(nodes), lambda i, v=version, r=round_: nodes[i].update_flag(
            pid, flag["id"], {"name": f"r{r}n{i}"}, v))
        wins = [r for r in results if isinstance(r, dict)]
        assert len(wins) == 1, results
        assert all(isinstance(r, Conflict) for r in results if not isinstance(r, dict))
        assert nodes[1].get_flag(pid, "f")["version"] == version + 1
    assert len(nodes[2].audit_log(pid, flag["id"])) == 6


def test_concurrent_ingestion_on_several_nodes_keeps_the_newest_write_of_each_key(nodes):
    """Every node writes every key of one group with its own event times: per key, the
    value of the newest event wins, whatever the commit order; nothing is lost."""
    pid = nodes[0].create_project("p", ingestion_creates_group_types=True)["id"]
    n, keys = len(nodes), 20

    def write(i):
        for k in range(keys):
            # node i's event for key k is at time 1000 + (i + k) % n: a different node has
            # the newest event of each key
            nodes[i].ingest(pid, [Call("group", f"n{i}k{k}", 1000.0 + (i + k) % n,
                                       group_type="organization", group_key="acme",
                                       group_set={f"k{k}": i})])
        return True

    assert _all_at_once(n, write) == [True] * n
    props = nodes[0].group_properties(pid, "organization", "acme")
    assert props == {f"k{k}": (n - 1 - k) % n for k in range(keys)}
    assert nodes[0].count_events(pid) == n * keys


def test_a_batch_retried_through_other_nodes_at_once_is_stored_once(nodes):
    pid = nodes[0].create_project("p", ingestion_creates_group_types=True)["id"]
    batch = [Call("identify", f"m{j}", 1000.0 + j, distinct_id=f"u{j}",
                  person_set={"n": j}) for j in range(50)]
    results = _all_at_once(len(nodes), lambda i: nodes[i].ingest(pid, list(batch)))
    assert sum(r.stored for r in results) == 50
    assert sum(r.duplicates for r in results) == 50 * (len(nodes) - 1)
    assert nodes[0].count_events(pid) == 50


def test_new_groups_and_persons_from_several_nodes_get_distinct_ids(nodes):
    pid = nodes[0].create_project("p", ingestion_creates_group_types=True)["id"]

    def write(i):
        for j in range(10):
            nodes[i].ingest(pid, [Call("track", f"n{i}m{j}", 1000.0, distinct_id=f"u{i}-{j}",
                                       event="e", groups={"organization": f"g{i}-{j}"})])
        return True

    assert _all_at_once(len(nodes), write) == [True] * len(nodes)
    _, total = nodes[0].list_groups(pid, limit=1)
    assert total == 10 * len(nodes)
    assert nodes[0].list_persons(pid, limit=1)[1] == 10 * len(nodes)


def test_group_search_is_served_by_indexes(nodes):
    """At a million groups a scan is seconds: the property filter (@>) and the key search
    (LIKE) each have an index the planner can use."""
    store = nodes[0]
    pid = store.create_project("p", ingestion_creates_group_types=True)["id"]
    store.ingest(pid, [Call("group", f"m{j}", 1000.0, group_type="organization",
                            group_key=f"acme-{j}", group_set={"plan": "ent" if j % 2 else "free"})
                       for j in range(200)])
    groups, total = store.list_groups(pid, properties={"plan": "ent"}, search="e-1")
    assert total == len([j for j in range(200) if j % 2 and "e-1" in f"acme-{j}"])
    assert all(g["properties"]["plan"] == "ent" for g in groups)
    assert store.list_groups(pid, search="100%")[1] == 0  # LIKE wildcards are escaped
    conn = store.conn()
    with db.transaction(conn, write=False):
        conn.execute("SET LOCAL enable_seqscan = off")
        for clause, arg in (("properties @> CAST(? AS jsonb)", '{"plan": "ent"}'),
                            ("(group_key || '') LIKE ?", "%acme-1%")):
            plan = " ".join(r[0] for r in conn.execute(
                f"EXPLAIN SELECT id FROM groups WHERE {clause}", (arg,)))
            assert "groups_properties" in plan or "groups_key_search" in plan, plan


def test_key_lookups_stay_on_the_btree(nodes):
    """pg_trgm's operator class serves `=` too: on group_key itself, the trigram index was
    the planner's choice for an ingestion batch's `group_key = ANY(...)` once the table had
    statistics (a GIN scan of every key sharing "acm", "cme", ...: 1 s per batch at 20,000
    groups). Migration 0011 builds it on an expression only the key search names."""
    store = nodes[0]
    pid = store.create_project("p", ingestion_creates_group_types=True)["id"]
    store.ingest(pid, [Call("group", f"m{j}", 1000.0, group_type="organization",
                            group_key=f"acme-{j}") for j in range(1000)])
    conn = store.conn()
    conn.execute("ANALYZE groups")
    for n in (6, 50):
        plan = " ".join(r[0] for r in conn.execute(
            "EXPLAIN SELECT id FROM groups WHERE project_id = ? AND group_type = ? AND "
            f"group_key IN ({', '.join('?' * n)})",
            (pid, "organization", *[f"acme-{j}" for j in range(n)])))
        assert "trgm" not in plan and "groups_key_search" not in plan, plan
    assert store.list_groups(pid, search="acme-99")[1] == 11  # the search still finds them


def test_backup_points_at_pg_dump(nodes, tmp_path):
    from flagsvc.store import StoreError

    with pytest.raises(StoreError, match="pg_dump"):
        nodes[0].backup(str(tmp_path / "b.db"))
    assert not (tmp_path / "b.db").exists()
    with pytest.raises(sqlite3.Error):  # nothing was written that SQLite could open
        sqlite3.connect(f"file:{tmp_path / 'b.db'}?mode=ro", uri=True).execute("SELECT 1")


_YOUNG = (  # a young project's tables, filled faster than through ingest
    "INSERT INTO persons (id, project_id, created_at, last_seen, updated_at) "
    "SELECT g, %(pid)s, 0, 0, 0 FROM generate_series(1, 20000) AS g",
    "INSERT INTO person_distinct_ids (project_id, distinct_id, person_id) "
    "SELECT %(pid)s, 'u' || g, g FROM generate_series(1, 20000) AS g",
    "INSERT INTO groups (id, project_id, group_type, group_key, created_at, last_seen, "
    "updated_at) SELECT g + 1, %(pid)s, 'organization', 'org-' || g, 0, 0, 0 "
    "FROM generate_series(1, 20000) AS g",
    "INSERT INTO events (project_id, message_id, type, timestamp, received_at) "
    "SELECT %(pid)s, 'old-' || g, 'track', %(ts)s, %(ts)s FROM generate_series(1, 40000) AS g",
)


def test_ingestion_statements_probe_indexes_on_young_tables(pg_url):
    """Until autovacuum first analyzes a table (a new install; a burst within its naptime)
    the planner has no statistics. Planned then, the dedupe probe read every event of the
    project (a bitmap scan of events_received: 14 ms per batch at 40,000 events, growing with
    them) and the UPDATEs of persons and groups hashed the batch against a scan of the whole
    table. Every statement a batch sends is planned with index access to what it reads."""
    import psycopg

    store = Store(pg_url)
    try:
        pid = store.create_project("p", ingestion_creates_group_types=True)["id"]
        ts = 1_700_000_000.0
        store.ingest(pid, [Call("group", "g0", ts, group_type="organization",
                                group_key="org-0")])  # creates the type
        with psycopg.connect(pg_url, autocommit=True) as c:
            for table in ("persons", "person_distinct_ids", "groups", "events", "memberships"):
                c.execute(f"ALTER TABLE {table} SET (autovacuum_enabled = false)")
            for sql in _YOUNG:
                c.execute(sql, {"pid": pid, "ts": ts})
            for table in ("persons", "groups"):
                c.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), 30000)")
            assert c.execute("SELECT reltuples FROM pg_class WHERE relname = 'events' AND "
                             "relnamespace = current_schema()::regnamespace").fetchone()[0] < 0
        batch = [Call("group", f"n{i}", ts + 1, distinct_id=f"u{i}", group_type="organization",
                      group_key=f"org-{i}", group_set={"plan": "ent"}) for i in range(1, 30)]
        batch += [Call("identify", f"i{i}", ts + 1, distinct_id=f"u{i}",
                       person_set={"role": "admin"}) for i in range(1, 30)]
        batch += [Call("track", f"t{i}", ts + 1, distinct_id=f"u{i}", event="x", exact_id=True,
                       groups={"organization": f"org-{i}"}) for i in range(1, 30)]
        sent: list[tuple[str, object]] = []
        execute = psycopg.Cursor.execute

        def recorded(self, query, params=None, **kw):
            sent.append((query, params))
            return execute(self, query, params, **kw)

        psycopg.Cursor.execute = recorded  # type: ignore[method-assign]
        try:
            assert store.ingest(pid, batch).stored == len(batch)
        finally:
            psycopg.Cursor.execute = execute  # type: ignore[method-assign]
        reads = [(q, p) for q, p in sent if q.lstrip().startswith("UPDATE")
                 or q.lstrip().startswith("SELECT") and any(
                     t in q for t in ("FROM events", "FROM groups", "JOIN persons"))]
        assert len(reads) >= 6, sent  # two dedupe probes, persons and groups read, 2 UPDATEs
        with psycopg.connect(pg_url) as c:
            for query, params in reads:
                plan = "\n".join(r[0] for r in c.execute("EXPLAIN " + query, params))
                assert "Seq Scan" not in plan and "events_received" not in plan, (query, plan)
                # a list as a filter after an index's prefix: a walk of the whole prefix
                assert not re.search(r"Filter: \(\w+ = ANY", plan), (query, plan)
    finally:
        store.close()
