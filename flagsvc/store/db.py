"""Connections, transactions and migrations for the SQLite file.

Several gunicorn workers share one file, so every connection uses WAL, a busy timeout,
and writes in short `BEGIN IMMEDIATE` transactions (the write lock is taken up front,
so two writers never deadlock upgrading read locks).

Writers also queue on an `flock` of `<database>.writelock` before `BEGIN IMMEDIATE`. SQLite's
own busy handler polls with sleeps of up to 100 ms, so under contention a writer waits far
longer than the transaction it waits for; a writer polling the `flock` every 0.5-5 ms
(`take_write_lock`) takes it soon after it is released, and gives up after the busy
timeout (a stalled holder makes writes 503, never an endless wait). The lock dies with its
process, so a crashed writer never blocks the
others; SQLite's locking stays underneath for any writer that does not use it. Measured with
every gunicorn worker writing its own ingestion batches (bench/bench_writer.py,
`direct-noflock`): without this queue p99 per request was 4-10x higher.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from importlib import resources
from typing import Any

import orjson

BUSY_TIMEOUT_MS = 15000
WAL_AUTOCHECKPOINT_PAGES = 4000


def dumps(value: Any) -> str:
    """JSON text for a column (orjson: several times faster than json on the write path;
    json for what orjson refuses, such as non-string keys or integers past 64 bits). Both
    write non-ASCII characters as they are: SQLite's JSON paths match a key only as
    written (`json_key_path`). Lone surrogates (not UTF-8) are escaped."""
    try:
        return orjson.dumps(value).decode()
    except TypeError:
        text = json.dumps(value, ensure_ascii=False)
        try:
            text.encode()
        except UnicodeEncodeError:
            return json.dumps(value)
        return text


loads = orjson.loads


def json_key_path(key: str) -> str | None:
    """A JSON path naming one top-level key, for json_extract (quoted, so dots and brackets
    are part of the name); None for a key SQLite's paths cannot name — one the JSON text
    stores escaped (a quote, a backslash, a control character): match those with json_each."""
    if any(ch in '"\\' or ch < " " for ch in key):
        return None
    return '$."' + key + '"'


def _driver_errors() -> tuple[tuple[type[Exception], ...], tuple[type[Exception], ...],
                               tuple[type[Exception], ...]]:
    """(any error, database unreachable, integrity) of the drivers installed: sqlite3, and
    psycopg when the postgresql extra is (imported only if installed)."""
    try:
        import psycopg
    except ImportError:
        return (sqlite3.Error,), (sqlite3.OperationalError,), (sqlite3.IntegrityError,)
    from psycopg import errors as pe

    # class 57 (operator intervention: admin / crash shutdown, cannot connect now) is an
    # OperationalError already; a read-only transaction (25006: a standby not yet promoted,
    # default_transaction_read_only) is not, but a retry elsewhere or later cures it too
    return ((sqlite3.Error, psycopg.Error),
            (sqlite3.OperationalError, psycopg.OperationalError, psycopg.InterfaceError,
             pe.ReadOnlySqlTransaction, pe.AdminShutdown, pe.CrashShutdown,
             pe.CannotConnectNow),
            (sqlite3.IntegrityError, psycopg.IntegrityError))


# `except DatabaseError` catches a failure of either backend; DatabaseUnavailable is one a
# retry may cure (locked, unreachable, restarted): the service answers 503 or serves stale.
DatabaseError, DatabaseUnavailable, IntegrityError = _driver_errors()


class StoreError(Exception):
    """Base class of the store's errors."""


class MigrationError(StoreError):
    """A migration cannot be applied to this database as it is (nothing was changed)."""


class NotFound(StoreError):
    """The row does not exist in this project."""


class Conflict(StoreError):
    """The write conflicts with the stored state (stale version, duplicate key)."""


class LimitExceeded(StoreError):
    """A per-project limit (such as 5 group types) would be exceeded."""


class Connection(sqlite3.Connection):
    """A connection that also holds the file descriptor of its database's write lock."""

    write_lock_fd: int | None = None
    busy_timeout_ms: int = BUSY_TIMEOUT_MS

    def close(self) -> None:
        fd, self.write_lock_fd = self.write_lock_fd, None
        if fd is not None:
            os.close(fd)
        super().close()


def connect(path: str, synchronous: str = "FULL", busy_timeout_ms: int = BUSY_TIMEOUT_MS,
            autocheckpoint_pages: int = WAL_AUTOCHECKPOINT_PAGES) -> sqlite3.Connection:
    """A connection in autocommit mode; transactions are opened explicitly."""
    conn = sqlite3.connect(path, timeout=busy_timeout_ms / 1000, isolation_level=None,
                           check_same_thread=False, factory=Connection)
    if path != ":memory:" and not path.startswith("file:"):
        conn.write_lock_fd = os.open(path + ".writelock", os.O_RDWR | os.O_CREAT, 0o600)
    conn.busy_timeout_ms = busy_timeout_ms  # type: ignore[attr-defined]
    conn.execute(f"PRAGMA busy_timeout = {busy_timeout_ms}")
    if path != ":memory:":
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if mode.lower() != "wal":  # another connection holds a lock; the mode is persistent
            conn.execute("PRAGMA journal_mode")
    conn.execute(f"PRAGMA synchronous = {synchronous}")
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("PRAGMA cache_size = -65536")
    # Checkpoint every ~16 MiB of WAL instead of SQLite's 4 MiB: pages that every batch
    # touches (index interiors, hot groups) are then copied back once instead of four times.
    conn.execute(f"PRAGMA wal_autocheckpoint = {autocheckpoint_pages}")
    return conn


@contextmanager
def transaction(conn: sqlite3.Connection, write: bool = True,
                shared: bool = False) -> Iterator[sqlite3.Connection]:
    """BEGIN IMMEDIATE (or DEFERRED for reads) ... COMMIT, rolled back on any error. On
    PostgreSQL, BEGIN and the writers' advisory lock (pg.py; `shared`: in shared mode, for
    ingestion batches that lock what they touch themselves, concurrent.py)."""
    if getattr(conn, "dialect", None) == "postgresql":
        with conn.transaction(write, shared):  # type: ignore[attr-defined]
            yield conn
        return
    fd = getattr(conn, "write_lock_fd", None) if write else None
    if fd is not None:
        take_write_lock(fd, getattr(conn, "busy_timeout_ms", BUSY_TIMEOUT_MS) / 1000)
    try:
        conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
        try:
            yield conn
        except BaseException:
            if conn.in_transaction:  # some errors (SQLITE_FULL, IOERR) already rolled it back
                conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
    finally:
        if fd is not None:
            fcntl.flock(fd, fcntl.LOCK_UN)


def take_write_lock(fd: int, timeout: float) -> None:
    """The writers' queue (`<database>.writelock`), waited for at most `timeout` (the
    connection's busy timeout): a writer that stalls holding it (a stopped process, a
    debugger) makes the others fail as on a locked database -- OperationalError, a 503 --
    instead of waiting without end. Polled without blocking: after a first try, every
    0.5 ms growing to 5 ms (SQLite's own busy handler sleeps up to 100 ms)."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return
    except BlockingIOError:
        pass
    deadline = time.monotonic() + timeout
    pause = 0.0005
    while True:
        time.sleep(pause)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise sqlite3.OperationalError(
                    f"database is locked: another writer held the write lock for "
                    f"{timeout:g} s") from None
        pause = min(pause * 2, 0.005)


def wait_for_lock(fd: int, give_up: Callable[[], bool],
                  pause: Callable[[float], Any], every: float = 1.0) -> bool:
    """Take an exclusive `flock` on `fd` that another process may hold for as long as it
    lives (one background checkpointer per database): try every `every` seconds until it
    is ours (True) or `give_up()` says to stop waiting (False)."""
    while not give_up():
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            pause(every)
    return False


def migration_names() -> list[tuple[str, str]]:
    """(name, sql) of every migration file, in order."""
    files = resources.files("flagsvc.migrations")
    out = []
    for entry in sorted(files.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".sql"):
            out.append((entry.name[:-4], entry.read_text(encoding="utf-8")))
    return out


_REQUIRES_FK_CHECK = re.compile(r"^-- requires: foreign_key_check (\w+)\s*$", re.MULTILINE)
CHECKPOINT_BUSY_MS = 100  # the WAL truncation after migrating waits no longer for readers


def migrate(conn: sqlite3.Connection) -> list[str]:
    """Apply the migrations not yet recorded, each in its own transaction; returns their names.
    A migration that rebuilds a table says `-- requires: foreign_key_check <table>`: rows of
    it that break a foreign key (possible only through edits outside flagsvc) would make
    the copy fail halfway, so they are reported first as a MigrationError. After the last
    migration the write-ahead log is truncated (a rebuild leaves it as large as the table
    it copied) if no reader holds it within CHECKPOINT_BUSY_MS."""
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations "
        "(name TEXT PRIMARY KEY, applied_at REAL NOT NULL)"
    )
    done = {r[0] for r in conn.execute("SELECT name FROM schema_migrations")}
    applied = []
    for name, sql in migration_names():
        if name in done:
            continue
        for table in _REQUIRES_FK_CHECK.findall(sql):
            _check_foreign_keys(conn, name, table)
        with transaction(conn):
            if conn.execute("SELECT 1 FROM schema_migrations WHERE name = ?",
                            (name,)).fetchone():
                continue  # another process applied it meanwhile
            for statement in _statements(sql):
                conn.execute(statement)
            conn.execute("INSERT INTO schema_migrations (name, applied_at) VALUES (?, ?)",
                         (name, time.time()))
            applied.append(name)
    if applied:
        # Briefly: a TRUNCATE checkpoint holds the write lock while it waits for readers
        # (a service still running, e.g. during a gunicorn binary upgrade); busy = later.
        timeout = conn.execute("PRAGMA busy_timeout").fetchone()[0]
        conn.execute(f"PRAGMA busy_timeout = {CHECKPOINT_BUSY_MS}")
        try:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        finally:
            conn.execute(f"PRAGMA busy_timeout = {int(timeout)}")
    return applied


def _check_foreign_keys(conn: sqlite3.Connection, migration: str, table: str) -> None:
    broken = conn.execute(f"PRAGMA foreign_key_check({table})").fetchall()
    if not broken:
        return
    counts: dict[str, list[int]] = {}
    for _, rowid, parent, _ in broken:
        counts.setdefault(parent, []).append(rowid)
    detail = "; ".join(f"{len(ids)} row(s) of {table} refer to missing {parent} rows "
                       f"(rowid {', '.join(map(str, ids[:5]))}{', ...' if len(ids) > 5 else ''})"
                       for parent, ids in counts.items())
    raise MigrationError(
        f"cannot apply {migration} (it copies {table}): {detail}. They were written outside "
        "flagsvc (its own writes keep foreign keys). Restore the missing rows or delete "
        f"these (`PRAGMA foreign_key_check({table})` lists them), then run `flagsvc migrate` "
        "again; nothing of this migration was applied.")


def _statements(sql: str) -> list[str]:
    """Split a migration into statements (executescript would commit our transaction)."""
    out, buf = [], []
    for line in sql.splitlines():
        if line.strip().startswith("--"):
            continue
        buf.append(line)
        candidate = "\n".join(buf)
        if sqlite3.complete_statement(candidate):
            if candidate.strip():
                out.append(candidate.strip())
            buf = []
    if "\n".join(buf).strip():
        out.append("\n".join(buf).strip())
    return out


class ConnectionPool:
    """One connection per thread for one database file. Connections of threads that have
    ended are closed when the next connection is opened, so a server that starts a thread
    per request (werkzeug's threaded mode) does not accumulate open connections."""

    def __init__(self, path: str, synchronous: str = "FULL",
                 busy_timeout_ms: int = BUSY_TIMEOUT_MS,
                 autocheckpoint_pages: int = WAL_AUTOCHECKPOINT_PAGES) -> None:
        self.path = path
        self.synchronous = synchronous
        self.busy_timeout_ms = busy_timeout_ms
        self.autocheckpoint_pages = autocheckpoint_pages
        self._local = threading.local()
        self._lock = threading.Lock()
        self._all: dict[threading.Thread, sqlite3.Connection] = {}

    def get(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = connect(self.path, self.synchronous, self.busy_timeout_ms,
                           self.autocheckpoint_pages)
            self._local.conn = conn
            with self._lock:
                for thread in [t for t in self._all if not t.is_alive()]:
                    _close(self._all.pop(thread))
                self._all[threading.current_thread()] = conn
        return conn

    def open_connections(self) -> int:
        with self._lock:
            return len(self._all)

    def close(self) -> None:
        with self._lock:
            for conn in self._all.values():
                _close(conn)
            self._all.clear()
        self._local = threading.local()


def _close(conn: sqlite3.Connection) -> None:
    with suppress(sqlite3.Error):
        conn.close()
