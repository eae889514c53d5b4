"""The PostgreSQL dialect: connections, transactions and migrations over psycopg 3.

The store's SQL is written once, for SQLite (its default backend); this module runs the same
statements on PostgreSQL. `translate` rewrites the few SQLite-only forms (`?` parameters,
`INSERT OR IGNORE`, two-argument MIN/MAX, `instr`, `json_each`, `rowid`, `INDEXED BY`) once
per statement text and caches the result, and the places where the two engines really
differ (group search, privacy pre-filter, schema listing, backup) are methods that `PgStore`
overrides. Why not SQLAlchemy Core: the SQLite hot paths (ingestion's executemany, decide's
point reads) stay byte-for-byte what they were, with no layer between them and sqlite3
(bench/RESULTS.md, issue 19).

Concurrency: a write transaction first takes a transaction-level advisory lock
(`pg_advisory_xact_lock(WRITE_LOCK)`), the counterpart of SQLite's `BEGIN IMMEDIATE`. Every
check-then-write of the store (a flag's version check, the default project, a group type's
index, ...) is then atomic across every node of the database, by the same argument as on
SQLite; unique constraints stay underneath as the backstop. Ingestion batches take it in
shared mode and make their own check-then-writes atomic per key (concurrent.py), so
batches of several workers and nodes are written in parallel. Reads never take it (MVCC:
decide never waits for a writer).
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from importlib import resources
from typing import Any

import mmh3
import psycopg
from psycopg.adapt import Loader
from psycopg_pool import ConnectionPool

from .pgbulk import bulk_form, run_bulk

WRITE_LOCK = 0x666C6167  # "flag": the writers' advisory lock key
MIGRATE_LOCK = 0x666C6168  # held while migrating: nodes starting together migrate once
# Advisory locks are the database's, not a schema's: every key flagsvc takes is mixed with
# its search_path (`lock_salt`), so installations in two schemas of one database (tests,
# benches, staging beside production) never wait for each other.


def lock_salt(raw: psycopg.Connection) -> int:
    path = raw.execute("SELECT current_setting('search_path')").fetchone()
    return int(mmh3.hash64(str(path[0] if path else ""), signed=True)[0])
DOWN_SECONDS = 0.5  # while the server is unreachable, one connection attempt this often


class _JsonText(Loader):
    """jsonb read as its text: the store parses JSON itself (orjson), as on SQLite."""

    def load(self, data: Any) -> str:
        return bytes(data).decode()


_MINMAX = re.compile(r"\b(MIN|MAX)\(", re.IGNORECASE)
# INSERTs whose cursor's lastrowid the store reads
_RETURNING_ID = re.compile(r"^\s*INSERT INTO (flags|projects|users|sessions)\b", re.IGNORECASE)


def _two_arg_minmax(sql: str) -> str:
    """MIN(a, b) / MAX(a, b) (SQLite's scalar forms) -> LEAST / GREATEST; the one-argument
    aggregates stay."""
    out, pos = [], 0
    for m in _MINMAX.finditer(sql):
        if m.start() < pos:
            continue
        depth, i, comma = 1, m.end(), False
        while i < len(sql) and depth:
            ch = sql[i]
            if ch == "(":
                depth += 1
            elif ch == ")":
                depth -= 1
            elif ch == "," and depth == 1:
                comma = True
            i += 1
        if comma:
            out.append(sql[pos:m.start()])
            out.append("LEAST(" if m.group(1).upper() == "MIN" else "GREATEST(")
            pos = m.end()
    out.append(sql[pos:])
    return "".join(out)


_IN_LIST = re.compile(r"\bIN \(\s*%s(?:\s*,\s*%s)*\s*\)")
# (statement, [(first parameter, count)] of each IN list to pass as one array)
_cache: dict[str, tuple[str, list[tuple[int, int]]]] = {}


def _in_lists(text: str) -> tuple[str, list[tuple[int, int]]]:
    """`x IN (%s, %s, ...)` -> `x = ANY(%s)`: one statement text whatever the number of
    values, so PostgreSQL plans it once (a prepared statement) instead of parsing and
    planning each chunk length anew; the values then travel as one array parameter."""
    runs: list[tuple[int, int]] = []
    out, pos, shift = [], 0, 0
    for m in _IN_LIST.finditer(text):
        first = text.count("%s", 0, m.start()) - shift
        n = m.group(0).count("%s")
        runs.append((first, n))
        shift += n - 1
        out += [text[pos:m.start()], "= ANY(%s)"]
        pos = m.end()
    out.append(text[pos:])
    return "".join(out), runs


def pack(args: Sequence[Any], runs: list[tuple[int, int]]) -> tuple[Any, ...]:
    """The parameters with each IN list's values gathered into one list (see _in_lists)."""
    if not runs:
        return tuple(args)
    # runs are in order, each `first` counted in the packed numbering
    out: list[Any] = []
    i = 0
    for first, n in runs:
        while len(out) < first:
            out.append(args[i])
            i += 1
        out.append(list(args[i:i + n]))
        i += n
    out += args[i:]
    return tuple(out)


def translate(sql: str) -> str:
    """The PostgreSQL text of one of the store's SQLite statements."""
    return translated(sql)[0]


def translated(sql: str) -> tuple[str, list[tuple[int, int]]]:
    """The PostgreSQL text of a statement and its IN lists (cached)."""
    done = _cache.get(sql)
    if done is not None:
        return done
    out = sql.replace("%", "%%").replace("?", "%s")
    ignore = re.search(r"\bINSERT OR IGNORE INTO\b", out, re.IGNORECASE)
    if ignore:
        out = out.replace(ignore.group(0), "INSERT INTO") + " ON CONFLICT DO NOTHING"
    out = re.sub(r"\s*INDEXED BY \w+", "", out)
    out = re.sub(r"\binstr\((\w+),", r"strpos(\1::text,", out)
    out = re.sub(r"\bjson_each\((\w+)\)", r"jsonb_each_text(\1::jsonb)", out)
    out = re.sub(r"\browid\b", "seq", out)
    out = _two_arg_minmax(out)
    if _RETURNING_ID.match(out) and "RETURNING" not in out.upper():
        out += " RETURNING id"
    result = _cache[sql] = _in_lists(out)
    return result


class PgCursor:
    """The part of sqlite3.Cursor the store uses: fetchone/fetchall/iteration, rowcount and
    lastrowid (an INSERT into flags or projects returns its id)."""

    __slots__ = ("_cur", "lastrowid", "rowcount")

    def __init__(self, cur: psycopg.Cursor, returning: bool) -> None:
        self._cur = cur
        self.rowcount = cur.rowcount
        self.lastrowid = None
        if returning:
            row = cur.fetchone()
            self.lastrowid = row[0] if row else None

    def fetchone(self) -> Any:
        try:  # (in a pipeline, the answer is waited for here)
            return self._cur.fetchone()
        except psycopg.ProgrammingError:  # a statement that returns no rows
            return None

    def fetchmany(self, size: int) -> list[Any]:
        try:
            return self._cur.fetchmany(size)
        except psycopg.ProgrammingError:
            return []

    def fetchall(self) -> list[Any]:
        try:
            return self._cur.fetchall()
        except psycopg.ProgrammingError:
            return []

    def __iter__(self) -> Iterator[Any]:
        return iter(self.fetchall())


class PgConnection:
    """A psycopg connection (autocommit; transactions are opened explicitly, as the SQLite
    connections are) speaking the store's SQLite statements through `translate`."""

    dialect = "postgresql"

    def __init__(self, raw: psycopg.Connection, on_broken: Any = None,
                 salt: int = 0) -> None:
        self.raw = raw
        self.lock_salt = salt  # mixed into every advisory lock key (see lock_salt)
        self._tx: Any = None
        self._on_broken = on_broken  # told when the server goes away under this connection

    def _failed(self, e: psycopg.Error) -> None:
        if self.raw.broken and self._on_broken is not None:
            self._on_broken(str(e).strip().splitlines()[0] if str(e).strip() else repr(e))

    @property
    def in_transaction(self) -> bool:
        return self._tx is not None

    def execute(self, sql: str, args: Sequence[Any] = ()) -> PgCursor:
        text, runs = translated(sql)
        cur = self.raw.cursor()
        try:
            # A statement with an IN list runs unnamed, planned for its values: the generic
            # plan of a prepared `project_id = $1 AND day = ANY($2) AND message_id =
            # ANY($3)` reads every event of the project (one project holds them all). The
            # others (point reads of decide, mostly) are prepared after a few runs
            # (psycopg's default), which spares PostgreSQL parsing and planning them.
            cur.execute(text, pack(args, runs) or None, prepare=False if runs else None)
            return PgCursor(cur, text.endswith("RETURNING id"))
        except psycopg.OperationalError as e:
            self._failed(e)
            raise

    def executemany(self, sql: str, rows: Any) -> PgCursor:
        rows = list(rows)
        cur = self.raw.cursor()
        try:
            text = translate(sql)
            if len(rows) > 1 and (form := bulk_form(sql, text)) is not None:
                run_bulk(self.raw, cur, text, form, rows)
            elif rows:
                cur.executemany(text, rows)
        except psycopg.OperationalError as e:
            self._failed(e)
            raise
        return PgCursor(cur, False)

    @contextmanager
    def pipeline(self) -> Iterator[PgConnection]:
        """Statements sent without waiting for each answer (psycopg's pipeline mode): an
        ingestion batch's writes cost one round trip instead of one each; a statement whose
        rows are fetched still waits for them."""
        with self.raw.pipeline():
            yield self

    @contextmanager
    def transaction(self, write: bool = True, shared: bool = False) -> Iterator[PgConnection]:
        """`shared`: the writers' lock in shared mode (ingestion batches, concurrent.py)."""
        try:
            with self._transaction(write, shared) as conn:
                yield conn
        except psycopg.OperationalError as e:  # (COMMIT included)
            self._failed(e)
            raise

    @contextmanager
    def _transaction(self, write: bool, shared: bool) -> Iterator[PgConnection]:
        with self.raw.transaction() as tx:
            self._tx = tx
            try:
                if write:
                    self.raw.execute(f"SELECT pg_advisory_xact_lock{'_shared' if shared else ''}"
                                     "(%s)", (WRITE_LOCK ^ self.lock_salt,))
                yield self
            finally:
                self._tx = None


def _configure(raw: psycopg.Connection) -> None:
    raw.adapters.register_loader("jsonb", _JsonText)
    raw.adapters.register_loader("json", _JsonText)


class PgPool:
    """One connection per thread, checked out of a psycopg_pool (the store's methods call
    `conn()` repeatedly inside one transaction and must get the same connection, as with
    SQLite). A broken connection (server restarted) is handed back and replaced at the next
    `get`, so a node recovers by itself when the database is back."""

    def __init__(self, url: str, max_size: int = 32, timeout: float = 5.0,
                 connect_timeout: int = 3) -> None:
        self.url = url
        self.max_size, self.timeout = max_size, timeout
        self._kwargs = {"autocommit": True, "connect_timeout": connect_timeout,
                        "application_name": "flagsvc"}
        self._pool = self._open()
        self._local = threading.local()
        self._lock = threading.Lock()
        self._all: dict[threading.Thread, PgConnection] = {}
        self._down, self._down_reason, self._probed = False, "", 0.0
        self._salt: int | None = None  # lock_salt of this pool's search_path

    def _open(self) -> ConnectionPool:
        return ConnectionPool(self.url, min_size=0, max_size=self.max_size,
                              timeout=self.timeout, kwargs=self._kwargs, open=True,
                              configure=_configure, check=ConnectionPool.check_connection)

    def get(self) -> PgConnection:
        if self._pool.closed:  # used again after close(), as a SQLite store can be
            with self._lock:
                if self._pool.closed:
                    self._pool = self._open()
        conn: PgConnection | None = getattr(self._local, "conn", None)
        if conn is not None and (conn.raw.closed or conn.raw.broken) and not conn.in_transaction:
            self._release(conn)
            conn = None
        if conn is None:
            with self._lock:  # hand back the connections of threads that have ended first
                for thread in [t for t in self._all if not t.is_alive()]:
                    self._release(self._all.pop(thread), forget=False)
            raw = self._checkout()
            if self._salt is None:
                self._salt = lock_salt(raw)
            conn = PgConnection(raw, on_broken=self.mark_down, salt=self._salt)
            self._local.conn = conn
            with self._lock:
                self._all[threading.current_thread()] = conn
        return conn

    def mark_down(self, reason: str) -> None:
        with self._lock:
            self._down, self._down_reason = True, reason

    def _checkout(self) -> psycopg.Connection:
        """A connection from the pool. Once the server was seen unreachable (a failed
        checkout, a connection that broke), fail at once instead of every request waiting
        out the pool's timeout — decide then serves its caches without delay and writes
        answer 503 — while one direct connection attempt every DOWN_SECONDS tells when the
        server is back (then the pool is used again: recovery needs no restart)."""
        if self._down:
            with self._lock:
                probe = time.monotonic() - self._probed >= DOWN_SECONDS
                if probe:
                    self._probed = time.monotonic()
            if not probe:
                raise psycopg.OperationalError(f"database unreachable: {self._down_reason}")
            try:
                psycopg.connect(self.url, connect_timeout=2).close()
            except psycopg.Error as e:
                self.mark_down(str(e).strip().splitlines()[0])
                raise
            self._down = False
        try:
            return self._pool.getconn()
        except psycopg.OperationalError as e:  # PoolTimeout too
            self.mark_down(str(e))
            raise

    def _release(self, conn: PgConnection, forget: bool = True) -> None:
        if forget:
            self._local.conn = None
        with suppress(Exception):
            self._pool.putconn(conn.raw)

    def open_connections(self) -> int:
        with self._lock:
            return len(self._all)

    def close(self) -> None:
        with self._lock:
            for conn in self._all.values():
                with suppress(Exception):
                    self._pool.putconn(conn.raw)
            self._all.clear()
        self._local = threading.local()
        self._pool.close()


def migration_names() -> list[tuple[str, str]]:
    files = resources.files("flagsvc.migrations.postgresql")
    return sorted((e.name[:-4], e.read_text(encoding="utf-8"))
                  for e in files.iterdir() if e.name.endswith(".sql"))


def migrate(conn: PgConnection) -> list[str]:
    """Apply the PostgreSQL migrations not yet recorded, each in its own transaction, under
    an advisory lock (several nodes starting at once: one migrates, the others wait and
    find nothing left to do)."""
    raw = conn.raw
    applied: list[str] = []
    with raw.transaction():
        raw.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATE_LOCK ^ conn.lock_salt,))
        raw.execute("CREATE TABLE IF NOT EXISTS schema_migrations "
                    "(name TEXT PRIMARY KEY, applied_at DOUBLE PRECISION NOT NULL)")
        done = {r[0] for r in raw.execute("SELECT name FROM schema_migrations")}
        for name, sql in migration_names():
            if name in done:
                continue
            with raw.transaction():  # a savepoint: each migration whole or not at all
                raw.execute(sql)  # type: ignore[call-overload]  # no parameters: a script
                raw.execute("INSERT INTO schema_migrations (name, applied_at) VALUES (%s, %s)",
                            (name, time.time()))
            applied.append(name)
    return applied
