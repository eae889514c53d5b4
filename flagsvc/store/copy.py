"""Copying a whole installation between backends: `flagsvc migrate-data SOURCE TARGET`.

The source is read in one read transaction (one snapshot: SQLite's WAL snapshot, a
PostgreSQL REPEATABLE READ transaction), so the copy is consistent while the source keeps
serving; the target, which must be migrated to the same migrations and hold no project, is
written in one transaction (all or nothing). Ids are kept (flags, groups, persons are
referenced by id), generated columns are left to the target, and PostgreSQL's identity
sequences are moved past the copied ids. The copy is verified by counting every table on
both sides.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from .db import StoreError, migration_names, transaction

log = logging.getLogger("flagsvc")

# In the order foreign keys need (parents first).
TABLES = ("projects", "tokens", "group_types", "signing_keys", "groups", "persons",
          "person_distinct_ids", "memberships", "flags", "audit_log", "events", "changes",
          "users", "user_projects", "sessions")
# Tables left behind, and why (the counts name them too): every table of the schema is in
# TABLES or here (tests/test_migrate_data.py), so a new table cannot be forgotten silently.
NOT_COPIED = {"sign_in_attempts": "failed sign-in counters, transient: they expire by "
                                  "themselves and would only lock people out on the target"}
GENERATED = {"events": {"day"}, "person_distinct_ids": {"seq"}}
CHUNK = 5000


def _columns(store: Any, table: str) -> list[str]:
    conn = store.conn()
    if store.dialect == "postgresql":
        rows = conn.execute("SELECT column_name FROM information_schema.columns WHERE "
                            "table_schema = current_schema() AND table_name = ? "
                            "ORDER BY ordinal_position", (table,)).fetchall()
        return [r[0] for r in rows]
    return [r[1] for r in conn.execute(f"PRAGMA table_xinfo({table})").fetchall()]


def schema_tables(store: Any) -> set[str]:
    """The tables of the store's schema (its migrations' record aside)."""
    conn = store.conn()
    if store.dialect == "postgresql":
        rows = conn.execute("SELECT table_name FROM information_schema.tables WHERE "
                            "table_schema = current_schema() AND table_type = 'BASE TABLE'"
                            ).fetchall()
    else:
        rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name "
                            "NOT LIKE 'sqlite_%'").fetchall()
    return {r[0] for r in rows} - {"schema_migrations"}


def _migrations(store: Any) -> list[str]:
    return [r[0] for r in store.conn().execute(
        "SELECT name FROM schema_migrations ORDER BY name").fetchall()]


@contextmanager
def _snapshot(store: Any) -> Iterator[Any]:
    conn = store.conn()
    if store.dialect == "postgresql":
        with transaction(conn, write=False):
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            yield conn
        return
    with transaction(conn, write=False):
        yield conn


def count_tables(store: Any) -> dict[str, int]:
    conn = store.conn()
    return {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in TABLES}


def copy_database(source: Any, target: Any) -> list[tuple[str, int, int]]:
    """Copy every row of `source` into the empty `target`; returns (table, rows in source,
    rows in target) for each table. StoreError if the target is not empty or the two are
    not at the same migrations (nothing is written then)."""
    # by number, among the migrations both backends have (PostgreSQL's own indexes aside)
    shared = {n.split("_", 1)[0] for n, _ in migration_names()}
    src_done = {n.split("_", 1)[0] for n in _migrations(source)} & shared
    dst_done = {n.split("_", 1)[0] for n in _migrations(target)}
    if not src_done <= dst_done:
        raise StoreError(f"the target lacks migrations {sorted(src_done - dst_done)} of the "
                         "source: upgrade flagsvc (or run flagsvc migrate on it) first")
    unknown = schema_tables(source) - set(TABLES) - set(NOT_COPIED)
    if unknown:  # a table this version of flagsvc does not know how to copy
        raise StoreError(f"the source has tables migrate-data does not know: "
                         f"{', '.join(sorted(unknown))}")
    held = [(t, n) for t, n in count_tables(target).items() if n]
    if held:
        raise StoreError("the target is not empty (" + ", ".join(
            f"{t}: {n} row{'s' * (n != 1)}" for t, n in held) + "): migrate-data copies "
            "into an empty database only")
    with _snapshot(source) as src:
        expected = {t: src.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in TABLES}
        dst = target.conn()
        with transaction(dst):
            for table in TABLES:
                cols = [c for c in _columns(source, table)
                        if c in set(_columns(target, table)) - GENERATED.get(table, set())]
                names = ", ".join(cols)
                insert = (f"INSERT INTO {table} ({names}) VALUES "
                          f"({', '.join('?' * len(cols))})")
                cur = src.execute(f"SELECT {names} FROM {table}")
                while rows := cur.fetchmany(CHUNK):
                    dst.executemany(insert, rows)
            if target.dialect == "postgresql":
                for table in TABLES:
                    if "id" in _columns(target, table):
                        dst.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                                    f"GREATEST((SELECT MAX(id) FROM {table}), 1))")
    after = count_tables(target)
    if target.dialect == "postgresql":
        _analyze(target.path, [t for t in TABLES if after[t]])
    return [(t, expected[t], after[t]) for t in TABLES]


def _analyze(url: str, tables: list[str]) -> None:
    """Statistics now rather than at autovacuum's first look, as after a pg_restore: the
    planner's choices for group search and preview at a million groups depend on them. Only
    tables with rows: PostgreSQL would plan its foreign-key checks against an empty table
    analyzed as empty as scans of it, until autovacuum looks again. On a connection of its
    own, without the store's statement deadline; the copy is done and verified, so a failure
    here is a warning (autovacuum gathers them anyway)."""
    import psycopg

    try:
        with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
            for table in tables:
                conn.execute(f"ANALYZE {table}")
    except psycopg.Error as e:
        log.warning("copied; ANALYZE of the copy failed (%s): autovacuum will gather the "
                    "statistics, or run ANALYZE yourself", str(e).strip())
