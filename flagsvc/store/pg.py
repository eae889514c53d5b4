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

import os
import re
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from importlib import resources
from typing import Any

import mmh3
import psycopg
from psycopg.adapt import Loader
from psycopg_pool import ConnectionPool, PoolTimeout

from .pgbulk import bulk_form, run_bulk

WRITE_LOCK = 0x666C6167  # "flag": the writers' advisory lock key
MIGRATE_LOCK = 0x666C6168  # held while migrating: nodes starting together migrate once
DOWN_SECONDS = 0.5  # while the server is unreachable, one connection attempt this often
# Deadlines of a statement (statement_timeout, lock_timeout) on the write pool and on the
# decide path's reader pool (FLAGSVC_PG_WRITE_TIMEOUT / FLAGSVC_PG_READ_TIMEOUT, seconds);
# the same figure bounds how long sent data may stay unacknowledged (tcp_user_timeout), so an
# unresponsive server -- one that neither answers nor refuses -- fails requests as
# DatabaseUnavailable (decide from cache, writes 503) instead of hanging workers until
# gunicorn kills them.
WRITE_STATEMENT_SECONDS = 10.0
READ_STATEMENT_SECONDS = 2.0
WATCHDOG_MARGIN = 2.0  # s past statement_timeout before the client gives up on the server
# TCP keepalives: an idle connection to a vanished server is found dead within ~20 s
KEEPALIVES = {"keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 3,
              "keepalives_count": 3}


def connection_deadlines(url: str, connect_timeout: int, statement_timeout: float
                         ) -> dict[str, Any]:
    """Connection parameters that bound every wait on the server: connecting, statements,
    locks (the writers' advisory lock included), unacknowledged sends, idle connections.
    The URL's own `options` are kept (tests put their search_path there)."""
    from psycopg.conninfo import conninfo_to_dict

    ms = max(int(statement_timeout * 1000), 1)
    given = str(conninfo_to_dict(url).get("options") or "")
    options = f"{given} -c statement_timeout={ms} -c lock_timeout={ms}".strip()
    return {"connect_timeout": connect_timeout, "tcp_user_timeout": ms + 1000,
            "options": options, **KEEPALIVES}


# Advisory locks are the database's, not a schema's: every key flagsvc takes is mixed with
# its search_path (`lock_salt`), so installations in two schemas of one database (tests,
# benches, staging beside production) never wait for each other.
def lock_salt(raw: psycopg.Connection) -> int:
    path = raw.execute("SELECT current_setting('search_path')").fetchone()
    return int(mmh3.hash64(str(path[0] if path else ""), signed=True)[0])


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
                 renew: Any = None, salt: int = 0) -> None:
        self.raw = raw
        self.lock_salt = salt  # mixed into every advisory lock key (see lock_salt)
        self._tx: Any = None
        self._on_broken = on_broken  # told when the server goes away under this connection
        self._renew = renew  # (broken connection) -> a fresh one from the pool
        self._watch: Watchdog | None = None  # severs it if a wait outlives the deadline

    def _retry_on_fresh(self, e: psycopg.OperationalError) -> bool:
        """After a failure where nothing of the caller's work reached the server (BEGIN, a
        read outside a transaction): if the connection broke (the server restarted since
        it was last used), swap in a fresh one and say to try once more. Without this every
        thread's first request after a restart failed (a false 503)."""
        self._failed(e)
        if self._renew is None or not (self.raw.broken or self.raw.closed):
            return False
        self.raw = self._renew(self.raw)
        return True

    def _failed(self, e: psycopg.Error) -> None:
        if self.raw.broken and self._on_broken is not None:
            self._on_broken(str(e).strip().splitlines()[0] if str(e).strip() else repr(e))

    @property
    def in_transaction(self) -> bool:
        return self._tx is not None

    def execute(self, sql: str, args: Sequence[Any] = ()) -> PgCursor:
        text, runs = translated(sql)
        try:
            return self._execute(text, runs, args)
        except psycopg.OperationalError as e:
            # outside a transaction a read can be sent again; a write could have been done
            if (self._tx is not None or not text.lstrip()[:6].upper() == "SELECT"
                    or not self._retry_on_fresh(e)):
                raise
        return self._execute(text, runs, args)

    def _execute(self, text: str, runs: list[tuple[int, int]], args: Sequence[Any]) -> PgCursor:
        cur = self.raw.cursor()
        watch = self._watch
        mine = watch is not None and watch.start(self)
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
        finally:
            if mine:
                watch.stop(self)  # type: ignore[union-attr]

    def executemany(self, sql: str, rows: Any) -> PgCursor:
        rows = list(rows)
        cur = self.raw.cursor()
        with self.waiting():
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
    def waiting(self) -> Iterator[None]:
        """A stretch during which this thread may wait on the server (nested: the outer
        one counts): the watchdog severs the connection if it lasts past the deadline."""
        watch = self._watch
        mine = watch is not None and watch.start(self)
        try:
            yield
        finally:
            if mine:
                watch.stop(self)  # type: ignore[union-attr]

    @contextmanager
    def pipeline(self) -> Iterator[PgConnection]:
        """Statements sent without waiting for each answer (psycopg's pipeline mode): an
        ingestion batch's writes cost one round trip instead of one each; a statement whose
        rows are fetched still waits for them."""
        with self.waiting(), self.raw.pipeline():
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
        with self.waiting():  # BEGIN: nothing of the transaction sent yet
            try:
                tx_cm = self.raw.transaction()
                tx_cm.__enter__()
            except psycopg.OperationalError as e:
                if not self._retry_on_fresh(e):
                    raise
                tx_cm = self.raw.transaction()
                tx_cm.__enter__()
        with _entered(tx_cm, self.waiting) as tx:
            self._tx = tx
            try:
                if write:
                    with self.waiting():
                        self.raw.execute(
                            f"SELECT pg_advisory_xact_lock{'_shared' if shared else ''}(%s)",
                            (WRITE_LOCK ^ self.lock_salt,))
                yield self
            finally:
                self._tx = None


@contextmanager
def _entered(cm: Any, waiting: Any) -> Iterator[Any]:
    """The body and exit (COMMIT or ROLLBACK, under `waiting`) of a context manager already
    entered (psycopg's transaction)."""
    try:
        yield cm
    except BaseException as e:
        with waiting():
            if not cm.__exit__(type(e), e, e.__traceback__):
                raise
    else:
        with waiting():
            cm.__exit__(None, None, None)


def _configure(raw: psycopg.Connection) -> None:
    raw.adapters.register_loader("jsonb", _JsonText)
    raw.adapters.register_loader("json", _JsonText)


class Watchdog:
    """The client side of the statement deadline. statement_timeout is enforced by the
    server and tcp_user_timeout by the kernel when sent data goes unacknowledged; neither
    ends a wait on a server (or a proxy, or a NAT) that accepts the bytes and never answers.
    Every thread's stretch of waiting on the server is registered here (a dict insertion);
    one daemon thread per pool and process looks twice a second and shuts down the socket
    of a connection waiting past its deadline: the wait ends at once as a broken
    connection (DatabaseUnavailable), never as a worker hung until gunicorn kills it."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._since: dict[PgConnection, float] = {}
        self._pid = 0
        self._lock = threading.Lock()

    def start(self, conn: PgConnection) -> bool:
        if conn in self._since:
            return False  # nested: the outer stretch counts
        self._since[conn] = time.monotonic()
        if self._pid != os.getpid():  # first use in this process (after a fork too)
            with self._lock:
                if self._pid != os.getpid():
                    self._pid = os.getpid()
                    threading.Thread(target=self._run, name="flagsvc-pg-watchdog",
                                     daemon=True).start()
        return True

    def stop(self, conn: PgConnection) -> None:
        self._since.pop(conn, None)

    def _run(self) -> None:
        pid = os.getpid()
        while self._pid == pid:
            time.sleep(min(0.5, self.seconds / 4))
            limit = time.monotonic() - self.seconds
            for conn, since in list(self._since.items()):
                if since < limit and self._since.get(conn) == since:
                    self._since.pop(conn, None)
                    sever(conn.raw)


def sever(raw: psycopg.Connection) -> None:
    """Shut the connection's socket down under whoever waits on it."""
    with suppress(Exception):
        sock = socket.socket(fileno=os.dup(raw.fileno()))
        try:
            sock.shutdown(socket.SHUT_RDWR)
        finally:
            sock.close()


class PgPool:
    """One connection per thread, checked out of a psycopg_pool (the store's methods call
    `conn()` repeatedly inside one transaction and must get the same connection, as with
    SQLite). A broken connection (server restarted) is handed back and replaced at the next
    `get`, so a node recovers by itself when the database is back."""

    def __init__(self, url: str, max_size: int = 32, timeout: float = 5.0,
                 connect_timeout: int = 3, statement_timeout: float = WRITE_STATEMENT_SECONDS
                 ) -> None:
        self.url = url
        self.max_size, self.timeout = max_size, timeout
        self._kwargs = {"autocommit": True, "application_name": "flagsvc",
                        **connection_deadlines(url, connect_timeout, statement_timeout)}
        self._pool = self._open()
        self._local = threading.local()
        self._lock = threading.Lock()
        self._all: dict[threading.Thread, PgConnection] = {}
        self._down, self._down_reason, self._probing = False, "", 0
        self._salt: int | None = None  # lock_salt of this pool's search_path
        # past the server's own deadline (it answers first when it is alive)
        self._watchdog = Watchdog(statement_timeout + WATCHDOG_MARGIN)

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
            conn = PgConnection(raw, on_broken=self.mark_down, renew=self._renew,
                                salt=self._salt)
            conn._watch = self._watchdog
            self._local.conn = conn
            with self._lock:
                self._all[threading.current_thread()] = conn
        return conn

    def _renew(self, broken: psycopg.Connection) -> psycopg.Connection:
        """A fresh connection in place of a broken one (PgConnection._retry_on_fresh): the
        server may be back already, so probe it now rather than waiting DOWN_SECONDS."""
        self._putconn(broken)
        raw = self._getconn(min(self.timeout, 2.0))  # (pool connections are checked)
        self._down = False
        return raw

    def release_current(self) -> None:
        """Hand this thread's connection back to the pool (a thread done with the database,
        such as the one that booted the worker and migrated)."""
        conn: PgConnection | None = getattr(self._local, "conn", None)
        if conn is None or conn.in_transaction:
            return
        with self._lock:
            self._all.pop(threading.current_thread(), None)
        self._release(conn)

    def mark_down(self, reason: str) -> None:
        with self._lock:
            self._down, self._down_reason = True, reason

    def _checkout(self) -> psycopg.Connection:
        """A connection from the pool. Once the server was seen unreachable (a failed
        checkout, a connection that broke), fail at once instead of every request waiting
        out the pool's timeout — decide then serves its caches without delay and writes
        answer 503 — while a background thread tries one direct connection every
        DOWN_SECONDS and tells when the server is back (then the pool is used again:
        recovery needs no restart). The attempts are off the request path: through a
        server that accepts and never answers each would take its connect_timeout."""
        if self._down:
            self._start_probing()
            raise psycopg.OperationalError(f"database unreachable: {self._down_reason}")
        return self._getconn(self.timeout)

    def _getconn(self, timeout: float) -> psycopg.Connection:
        errors = self._pool.get_stats().get("connections_errors", 0)
        try:
            return self._pool.getconn(timeout=timeout)
        except PoolTimeout as e:
            # Every connection held by the other threads and none handed back in time: the
            # server answers, this process is busy (the request fails: 503, or decide's
            # caches) — not an outage, after which every request would fail at once until
            # the probe saw the server again. Fewer held (the pool's own count includes
            # connections it is still trying to open), or a connection attempt failed
            # meanwhile: the pool could not connect.
            me = threading.current_thread()
            with self._lock:
                held = sum(1 for t in self._all if t is not me)
            failed = self._pool.get_stats().get("connections_errors", 0) > errors
            if held >= self.max_size and not failed:
                raise psycopg.OperationalError(
                    f"every database connection of this process ({self.max_size}) is in use "
                    f"(waited {timeout:g} s): {e}") from None
            self.mark_down(str(e))
            raise
        except psycopg.OperationalError as e:
            self.mark_down(str(e))
            raise

    def _start_probing(self) -> None:
        with self._lock:
            if self._probing == os.getpid():
                return
            self._probing = os.getpid()
        threading.Thread(target=self._probe, name="flagsvc-pg-probe", daemon=True).start()

    def _probe(self) -> None:
        try:
            while self._down and not self._pool.closed:
                time.sleep(DOWN_SECONDS)
                try:
                    psycopg.connect(self.url, **{**self._kwargs, "connect_timeout": 2}).close()
                except psycopg.Error as e:
                    self._down_reason = str(e).strip().splitlines()[0] if str(e).strip() else ""
                    continue
                # psycopg_pool retries failed connections with growing back-offs, and a
                # checkout waits behind them: a new pool, so the first request after the
                # outage gets a connection at once
                with self._lock:
                    old, self._pool = self._pool, self._open()
                    self._down = False
                threading.Thread(target=old.close, daemon=True).start()
        finally:
            self._probing = 0

    def _release(self, conn: PgConnection, forget: bool = True) -> None:
        if forget:
            self._local.conn = None
        self._putconn(conn.raw)

    def _putconn(self, raw: psycopg.Connection) -> None:
        """Back to the pool, or closed if it came from one replaced since (see _probe)."""
        try:
            self._pool.putconn(raw)
        except Exception:
            with suppress(Exception):
                raw.close()

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
        # a migration may build an index over millions of rows, and nodes starting together
        # wait here for the one migrating: no statement or lock deadline in this transaction
        raw.execute("SET LOCAL statement_timeout = 0")
        raw.execute("SET LOCAL lock_timeout = 0")
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
