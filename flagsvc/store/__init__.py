"""The store: the only place with SQL. One `Store` per database file."""

from __future__ import annotations

import sqlite3
from typing import Any

from .catalog import CatalogMixin
from .db import (
    BUSY_TIMEOUT_MS,
    WAL_AUTOCHECKPOINT_PAGES,
    Conflict,
    ConnectionPool,
    DatabaseError,
    DatabaseUnavailable,
    LimitExceeded,
    MigrationError,
    NotFound,
    StoreError,
    migrate,
    transaction,
)
from .flags import FlagsMixin
from .group_types import GroupTypeNotAllowed, GroupTypesMixin
from .groups import GroupsMixin
from .ingest import IngestMixin
from .projects import ProjectsMixin
from .signin import SignInMixin
from .users import ROLES, UsersMixin


def is_postgres(database: str) -> bool:
    return database.startswith(("postgresql://", "postgres://"))

__all__ = ["ROLES", "Conflict", "DatabaseError", "DatabaseUnavailable", "GroupTypeNotAllowed",
           "LimitExceeded", "MigrationError", "NotFound", "Store", "StoreError", "is_postgres",
           "transaction"]


class Store(ProjectsMixin, GroupTypesMixin, FlagsMixin, GroupsMixin, IngestMixin, UsersMixin,
            SignInMixin, CatalogMixin):
    """All reads and writes of one SQLite file (one connection per thread). Given a
    `postgresql://` URL instead of a path, `Store(...)` is a `PgStore` (pgstore.py)."""

    dialect = "sqlite"

    def __new__(cls, path: str, *args: Any, **kwargs: Any) -> Store:
        if cls is Store and is_postgres(path):
            try:
                from .pgstore import PgStore
            except ImportError as e:  # psycopg is an extra
                raise StoreError(f"{e}: PostgreSQL needs pip install 'flagsvc[postgresql]'"
                                 ) from None
            return super().__new__(PgStore)
        return super().__new__(cls)

    def __init__(self, path: str, synchronous: str = "FULL", migrate_now: bool = True,
                 busy_timeout_ms: int = BUSY_TIMEOUT_MS,
                 autocheckpoint_pages: int = WAL_AUTOCHECKPOINT_PAGES) -> None:
        self.path = path
        self.synchronous = synchronous
        self._pool = ConnectionPool(path, synchronous, busy_timeout_ms, autocheckpoint_pages)
        if migrate_now:
            self.migrate()

    def reader(self, busy_timeout_ms: int) -> Store:
        """The same database through connections of their own with another busy timeout
        (the decide path reads with a short one; see service.py)."""
        return Store(self.path, self.synchronous, migrate_now=False,
                     busy_timeout_ms=busy_timeout_ms)

    def conn(self) -> sqlite3.Connection:
        return self._pool.get()

    def read_only(self) -> str | None:
        """Why the database refuses writes, if it does (PostgreSQL: a standby; /readyz)."""
        return None

    def release(self) -> None:
        """This thread is done with the database for now (PostgreSQL: its pooled connection
        goes back to the pool; SQLite keeps its per-thread connection, which costs nothing
        on the server)."""

    def migrate(self) -> list[str]:
        return migrate(self.conn())

    def close(self) -> None:
        self._pool.close()

    def schema(self) -> list[tuple[Any, ...]]:
        """(type, name, sql) of every schema object, for comparing databases."""
        return self.conn().execute(
            "SELECT type, name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' "
            "ORDER BY type, name").fetchall()

    def backup(self, dest: str) -> None:
        """A consistent online copy of the database (writers keep going meanwhile).

        One step (pages=-1): the copy reads one WAL snapshot, which never blocks writers. A
        stepped backup restarts whenever another connection writes between steps, so under
        steady ingestion it never finished (issue #5)."""
        target = sqlite3.connect(dest)
        try:
            self.conn().backup(target, pages=-1)
        finally:
            target.close()

    def integrity_check(self) -> str:
        return self.conn().execute("PRAGMA integrity_check").fetchone()[0]
