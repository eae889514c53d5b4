"""`PgStore`: the store on PostgreSQL (`FLAGSVC_DATABASE=postgresql://...`).

The same contract and the same SQL as the SQLite `Store` (pg.py translates it); this class
overrides only what the engines do differently: connections (a pool, one connection per
thread), migrations (migrations/postgresql/), group search by properties (`@>`, GIN-indexed),
schema listing, backup (pg_dump) and the integrity check. There is no ingestion writer
process and no WAL checkpointer: PostgreSQL has many writers and its own checkpoints.
"""

from __future__ import annotations

from typing import Any

from . import Store
from .db import StoreError, dumps
from .pg import READ_STATEMENT_SECONDS, WRITE_STATEMENT_SECONDS, PgConnection, PgPool
from .pg import migrate as pg_migrate

# How long the decide path waits for a pooled connection before serving stale data (s).
READ_POOL_TIMEOUT = 1.0


class PgStore(Store):
    """All reads and writes of one PostgreSQL database (schema: the URL's search_path)."""

    dialect = "postgresql"

    def __init__(self, path: str, synchronous: str = "FULL", migrate_now: bool = True,
                 busy_timeout_ms: int | None = None, autocheckpoint_pages: int = 0,
                 pool_size: int = 32, statement_timeout: float | None = None,
                 read_statement_timeout: float | None = None) -> None:
        self.path = path
        self.synchronous = synchronous
        self.pool_size = pool_size
        self.statement_timeout = statement_timeout or WRITE_STATEMENT_SECONDS
        self.read_statement_timeout = read_statement_timeout or READ_STATEMENT_SECONDS
        # waiting for a pooled connection: at most 5 s (a write then answers 503)
        timeout = 5.0 if busy_timeout_ms is None else min(max(busy_timeout_ms / 1000, 0.1), 5.0)
        self._pool = PgPool(path, max_size=pool_size, timeout=timeout,  # type: ignore[assignment]
                            statement_timeout=self.statement_timeout)
        if migrate_now:
            self.migrate()

    def reader(self, busy_timeout_ms: int) -> Store:
        """The decide path's pool: short waits for a connection and short statement
        deadlines (READ_STATEMENT_SECONDS), so decide falls back on its caches quickly."""
        return PgStore(self.path, self.synchronous, migrate_now=False,
                       busy_timeout_ms=int(READ_POOL_TIMEOUT * 1000), pool_size=self.pool_size,
                       statement_timeout=self.read_statement_timeout)

    def read_only(self) -> str | None:
        in_recovery, read_only = self.conn().execute(
            "SELECT pg_is_in_recovery(), current_setting('transaction_read_only')").fetchone()
        if in_recovery:
            return "the database is a standby in recovery: writes are refused until promoted"
        if read_only == "on":
            return "the database is read-only (default_transaction_read_only): writes are refused"
        return None

    def release(self) -> None:
        self._pool.release_current()  # type: ignore[attr-defined]

    def conn(self) -> PgConnection:  # type: ignore[override]
        return self._pool.get()  # type: ignore[return-value]

    def migrate(self) -> list[str]:
        return pg_migrate(self.conn())

    def schema(self) -> list[tuple[Any, ...]]:
        """(kind, name, definition) of every table column, index and constraint of the
        schema, for comparing databases (fresh == migrated)."""
        conn = self.conn()
        cols = conn.execute(
            "SELECT 'column', table_name || '.' || column_name, data_type || ' ' || "
            "is_nullable || ' ' || COALESCE(column_default, '') || ' ' || "
            "COALESCE(generation_expression, '') FROM information_schema.columns "
            "WHERE table_schema = current_schema() ORDER BY table_name, column_name").fetchall()
        idx = conn.execute(
            "SELECT 'index', indexname, indexdef FROM pg_indexes "
            "WHERE schemaname = current_schema() ORDER BY indexname").fetchall()
        cons = conn.execute(
            "SELECT 'constraint', conrelid::regclass::text || '.' || conname, "
            "pg_get_constraintdef(c.oid) FROM pg_constraint c JOIN pg_namespace n "
            "ON n.oid = c.connamespace WHERE n.nspname = current_schema() "
            "ORDER BY 2").fetchall()
        schema = conn.execute("SELECT current_schema()").fetchone()[0]
        return [(kind, name, text.replace(f" {schema}.", " "))
                for kind, name, text in (*cols, *idx, *cons)]

    def backup(self, dest: str) -> None:
        raise StoreError(
            "flagsvc backup copies SQLite files; back a PostgreSQL database up with its own "
            f"tools: pg_dump --format=custom --file {dest} '<FLAGSVC_DATABASE URL>' "
            "(consistent while nodes keep writing; restore with pg_restore)")

    def integrity_check(self) -> str:
        self.conn().execute("SELECT count(*) FROM schema_migrations").fetchone()
        return "ok"

    # LIKE (with its wildcards escaped) rather than strpos, on the expression the trigram
    # index groups_key_search is built on (migration 0011: not on group_key itself)
    _search_filter = "(group_key || '') LIKE ?"

    @staticmethod
    def _search_pattern(search: str) -> str:
        escaped = search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        return f"%{escaped}%"

    @staticmethod
    def _event_in_group(group_type: str, key: str) -> tuple[str, list[Any]]:
        # {type: key} or {type: [..., key, ...]}, both as jsonb containment
        return ("(CAST(groups AS jsonb) @> CAST(? AS jsonb) "
                "OR CAST(groups AS jsonb) @> CAST(? AS jsonb))",
                [dumps({group_type: key}), dumps({group_type: [key]})])

    @staticmethod
    def _property_filter(key: str, value: Any) -> tuple[str, list[Any]]:
        # containment, served by the GIN index groups_properties (migration 0009)
        values = (value if isinstance(value, list) else [value]) or [None]
        clause = " OR ".join(["properties @> CAST(? AS jsonb)"] * len(values))
        return f"({clause})", [dumps({key: v}) for v in values]
