"""One ingestion writer process per database (`flagsvc serve`).

SQLite has one writer at a time, and that writer is the limit of ingestion throughput. When
every gunicorn worker writes its own batches, each transaction starts with a cold page
cache (SQLite drops a connection's cache whenever another process has committed) and
commits alone. Here the workers parse requests in parallel and hand the normalized calls to
this process over a Unix socket; it is the only regular writer, so its cache stays warm,
and it writes every request waiting at that moment in one transaction (each with its own
result), which costs ~25 % less per event than one transaction each. It answers each
request after the commit: a 2xx still means durable. Being the one writer, it also keeps the
group and person rows it wrote for the next transactions (rowcache.py), checked against
`PRAGMA data_version` so a write by any other connection is never overwritten.

If the writer cannot be reached (not started, restarting, killed mid-batch), a worker
writes the batch itself (`IngestMixin.ingest`); a batch the writer did commit before dying
is then a duplicate, which the message ids absorb.

Frames: a 4-byte big-endian length, then a pickle — local IPC between flagsvc's own
processes through a socket only the service's user can open.

    python -m flagsvc.store.writer DATABASE SYNCHRONOUS    (started by flagsvc serve)
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import pickle
import selectors
import signal
import socket
import sqlite3
import stat
import struct
import sys
import tempfile
import threading
import time
from typing import Any

from ..ingest.model import Call, IngestResult
from .db import WAL_AUTOCHECKPOINT_PAGES, wait_for_lock
from .rowcache import RowCache

log = logging.getLogger("flagsvc")

MAX_GROUP_CALLS = 5000  # one transaction stops growing past this many calls
RETRY_AFTER = 1.0  # seconds a worker writes directly after failing to reach the writer
_HEADER = struct.Struct(">I")
_FIELDS = tuple(Call.__dataclass_fields__)  # calls travel as tuples (faster to unpickle)
# Both sides must agree on those fields: a writer started by older code (gunicorn reloads
# workers, not the writer) refuses the connection and workers write directly.
PROTOCOL = hashlib.sha256(repr(_FIELDS).encode()).hexdigest()[:16]
TIMEOUT = 20.0  # seconds a worker waits for an answer before writing the batch itself
SEND_TIMEOUT = 5.0  # seconds the writer waits on a worker that does not read its answer
WRITER_AUTOCHECKPOINT_PAGES = 4 * WAL_AUTOCHECKPOINT_PAGES  # see open_store()


def _pack(request: Any) -> Any:
    project_id, calls, payloads = request
    return PROTOCOL, project_id, [tuple(getattr(c, f) for f in _FIELDS) for c in calls], payloads


def _unpack(frame: Any) -> Any:
    protocol, project_id, calls, payloads = frame
    if protocol != PROTOCOL:
        raise ValueError("a worker speaking another protocol version")
    return project_id, [Call(*c) for c in calls], payloads


def _result_frame(result: IngestResult | Exception) -> Any:
    if isinstance(result, Exception):
        return result
    return (result.stored, result.duplicates, result.dropped, result.warnings,
            result.more_warnings)


def socket_path(database: str) -> str:
    """Where the writer of `database` listens: beside the database, or (Unix socket paths
    are limited to ~100 bytes) in a directory of the service's own user under the temporary
    directory (see `_private_dir`)."""
    path = os.path.abspath(database) + ".writer.sock"
    if len(path.encode()) < 100:
        return path
    digest = hashlib.sha256(path.encode()).hexdigest()[:24]
    return os.path.join(tempfile.gettempdir(), f"flagsvc-{os.getuid()}", f"{digest}.sock")


def _private_dir(path: str) -> bool:
    """Make sure the socket's directory is ours alone when it is not the database's own:
    created 0700, owned by this user (else nobody may listen or connect there)."""
    directory = os.path.dirname(path)
    if not os.path.basename(directory).startswith("flagsvc-"):
        return True
    with contextlib.suppress(FileExistsError):
        os.mkdir(directory, 0o700)
    st = os.lstat(directory)
    return stat.S_ISDIR(st.st_mode) and st.st_uid == os.getuid() and not st.st_mode & 0o077


def _same_user(sock: socket.socket) -> bool:
    """The process at the other end runs as this user (Linux; elsewhere the socket's
    directory permissions are the guard)."""
    if not hasattr(socket, "SO_PEERCRED"):
        return True
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return struct.unpack("3i", creds)[1] == os.getuid()


def _send(sock: socket.socket, value: Any) -> None:
    data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    sock.sendall(_HEADER.pack(len(data)) + data)


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("the writer closed the connection")
        buf += chunk
    return bytes(buf)


class WriterClient:
    """A worker's side: one connection per thread, re-made after a failure."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._local = threading.local()
        self._down_until = 0.0

    def ingest(self, request: Any) -> IngestResult | None:
        """The writer's result for `request`, or None if it could not be reached (write
        it yourself). Errors of the request itself are raised."""
        if time.monotonic() < self._down_until:
            return None
        sock = getattr(self._local, "sock", None)
        try:
            if sock is None:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.settimeout(TIMEOUT)
                sock.connect(self.path)
                if not _same_user(sock):
                    raise ConnectionRefusedError("the writer socket belongs to another user")
                self._local.sock = sock
            _send(sock, _pack(request))
            (size,) = _HEADER.unpack(_recv_exact(sock, _HEADER.size))
            answer = pickle.loads(_recv_exact(sock, size))
        except BaseException as e:
            if sock is not None:  # never reuse a connection left mid-conversation
                sock.close()
            self._local.sock = None
            if not isinstance(e, OSError):
                raise
            # Not reached, gone, or too slow: write it here. If the writer committed it
            # anyway, this write finds the message ids stored (duplicates, nothing twice).
            self._down_until = time.monotonic() + RETRY_AFTER
            return None
        if isinstance(answer, Exception):
            raise answer
        return IngestResult(*answer)

    def close(self) -> None:
        sock = getattr(self._local, "sock", None)
        if sock is not None:
            sock.close()
            self._local.sock = None


class Writer:
    """The writer process's loop: accept workers, read whole requests, write each round of
    waiting requests in one transaction, answer them."""

    def __init__(self, store: Any, path: str) -> None:
        self.store = store
        self.path = path
        if not _private_dir(path):
            raise PermissionError(f"{os.path.dirname(path)} is not this user's alone")
        self.selector = selectors.DefaultSelector()
        self.buffers: dict[socket.socket, bytearray] = {}
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)  # a previous writer's socket (main() holds the writer lock)
        old_umask = os.umask(0o077)  # only the service's user may connect
        try:
            self.listener.bind(path)
        finally:
            os.umask(old_umask)
        self.inode = os.stat(path).st_ino
        self.listener.listen(128)
        self.listener.setblocking(False)
        self.selector.register(self.listener, selectors.EVENT_READ)
        self.groups = 0  # transactions written (for tests and logs)
        self.requests = 0

    def close(self) -> None:
        for sock in list(self.buffers):
            self._drop(sock)
        self.selector.close()
        self.listener.close()
        with contextlib.suppress(FileNotFoundError):
            if os.stat(self.path).st_ino == self.inode:  # not a successor's socket
                os.unlink(self.path)

    def serve(self, stop: threading.Event | None = None, parent: int | None = None) -> None:
        """Loop until `stop` is set or (`parent`) the process that started this one is gone."""
        while stop is None or not stop.is_set():
            try:
                self.step(timeout=0.5)
            except Exception:  # noqa: BLE001 (keep serving; workers fall back meanwhile)
                log.exception("ingestion writer: unexpected error")
            if parent is not None and os.getppid() != parent:
                return

    def step(self, timeout: float | None = None) -> int:
        """Wait for requests, write the ones complete now; returns how many."""
        pending: list[tuple[socket.socket, Any]] = []
        for key, _ in self.selector.select(timeout):
            if key.fileobj is self.listener:
                self._accept()
            else:
                self._read(key.fileobj, pending)  # type: ignore[arg-type]
        if not pending:
            return 0
        calls = 0
        group: list[tuple[socket.socket, Any]] = []
        for item in pending:
            calls += len(item[1][1])
            group.append(item)
            if calls >= MAX_GROUP_CALLS:
                self._write(group)
                group, calls = [], 0
        if group:
            self._write(group)
        return len(pending)

    def _write(self, group: list[tuple[socket.socket, Any]]) -> None:
        results = self.store.ingest_requests([request for _, request in group])
        if len(results) != len(group):  # never answer a request with another's result
            raise RuntimeError(f"{len(results)} results for {len(group)} requests")
        self.groups += 1
        self.requests += len(group)
        for (sock, _), result in zip(group, results, strict=True):
            if isinstance(result, Exception) and not isinstance(result, sqlite3.OperationalError):
                log.error("ingestion writer: a batch failed", exc_info=result)
                result = RuntimeError(f"{type(result).__name__}: {result}")  # picklable
            try:
                sock.settimeout(SEND_TIMEOUT)
                _send(sock, _result_frame(result))
                sock.setblocking(False)
            except OSError:  # gone or not reading: it writes the batch itself (duplicates)
                self._drop(sock)

    def _accept(self) -> None:
        while True:  # every connection waiting (their requests are read at the next look)
            try:
                sock, _ = self.listener.accept()
            except (BlockingIOError, ConnectionAbortedError):
                return
            if not _same_user(sock):
                sock.close()
                continue
            sock.setblocking(False)
            self.buffers[sock] = bytearray()
            self.selector.register(sock, selectors.EVENT_READ)

    def _read(self, sock: socket.socket, pending: list[tuple[socket.socket, Any]]) -> None:
        buf = self.buffers[sock]
        try:
            while True:
                chunk = sock.recv(1 << 20)
                if not chunk:
                    self._drop(sock)
                    return
                buf += chunk
        except BlockingIOError:
            pass
        except OSError:
            self._drop(sock)
            return
        while len(buf) >= _HEADER.size:
            (size,) = _HEADER.unpack_from(buf)
            if len(buf) < _HEADER.size + size:
                break
            frame = bytes(buf[_HEADER.size:_HEADER.size + size])
            del buf[:_HEADER.size + size]
            try:
                pending.append((sock, _unpack(pickle.loads(frame))))
            except Exception as e:  # noqa: BLE001 (another version, or not one of ours)
                log.warning("ingestion writer: hung up on a worker: %s", e)
                self._drop(sock)
                return

    def _drop(self, sock: socket.socket) -> None:
        self.buffers.pop(sock, None)
        with contextlib.suppress(KeyError, ValueError):
            self.selector.unregister(sock)
        sock.close()


def open_store(database: str, synchronous: str) -> Any:
    """The writer's store: it keeps the rows it wrote between transactions (rowcache.py),
    and leaves WAL checkpoints to the workers' background checkpointer (checkpoint.py),
    stepping in only if the log reaches four times the usual limit (that thread stopped or
    fell far behind). With 2M events stored (a ~600 MB file) the background thread falls
    behind and checkpoints ran inside the writer's commits: 13 % of its CPU plus 10 % in the
    database fsync (perf). With this limit: +3 to +26 % events/s in three alternating pairs
    on that database, p99 per request ~25 % higher (bench/RESULTS.md, session 3)."""
    from . import Store

    store = Store(database, synchronous=synchronous,
                  autocheckpoint_pages=WRITER_AUTOCHECKPOINT_PAGES)  # every thread's connection
    store.row_cache = RowCache()  # this process is the database's one regular writer
    return store


def main(argv: list[str] | None = None) -> int:
    database, synchronous = (argv or sys.argv[1:])[:2]
    logging.basicConfig(level=logging.WARNING)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # clean up the socket on stop
    parent = os.getppid()
    # One writer per database: a second one (another server on the same file, a master
    # re-exec'd for an upgrade) waits here instead of taking the socket over.
    lock = os.open(database + ".writer.lock", os.O_RDWR | os.O_CREAT, 0o600)
    if not wait_for_lock(lock, lambda: os.getppid() != parent, time.sleep):
        return 0
    store = open_store(database, synchronous)
    writer = Writer(store, socket_path(database))
    from ..server import freeze_gc

    freeze_gc()  # as in the workers: each batch allocates thousands of objects
    try:
        writer.serve(parent=parent)
    except KeyboardInterrupt:
        pass
    finally:
        writer.close()
        store.close()
        os.close(lock)
    return 0


if __name__ == "__main__":
    sys.exit(main())
