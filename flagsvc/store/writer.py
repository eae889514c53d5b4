"""One ingestion writer process per database (`flagsvc serve`).

SQLite has one writer at a time, and that writer is the limit of ingestion throughput. When
every gunicorn worker writes its own batches, each transaction starts with a cold page
cache (SQLite drops a connection's cache whenever another process has committed) and
commits alone. Here the workers parse requests in parallel and hand the normalized calls to
this process over a Unix socket; it is the only regular writer, so its cache stays warm,
and it writes every request waiting at that moment in one transaction (each with its own
result), which costs ~25 % less per event than one transaction each. It answers each
request after the commit: a 2xx still means durable.

If the writer cannot be reached (not started, restarting, killed mid-batch), a worker
writes the batch itself (`IngestMixin.ingest`); a batch the writer did commit before dying
is then a duplicate, which the message ids absorb.

Frames: a 4-byte big-endian length, then a pickle — local IPC between flagsvc's own
processes through a socket only the service's user can open.

    python -m flagsvc.store.writer DATABASE SYNCHRONOUS    (started by flagsvc serve)
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import logging
import os
import pickle
import selectors
import socket
import sqlite3
import struct
import sys
import tempfile
import threading
import time
from typing import Any

from ..ingest.model import Call, IngestResult

log = logging.getLogger("flagsvc")

MAX_GROUP_CALLS = 5000  # one transaction stops growing past this many calls
RETRY_AFTER = 1.0  # seconds a worker writes directly after failing to reach the writer
_HEADER = struct.Struct(">I")
_FIELDS = Call.__dataclass_fields__  # calls travel as tuples: a third of the unpickling time


def _pack(request: Any) -> Any:
    project_id, calls, payloads = request
    return project_id, [tuple(getattr(c, f) for f in _FIELDS) for c in calls], payloads


def _unpack(frame: Any) -> Any:
    project_id, calls, payloads = frame
    return project_id, [Call(*c) for c in calls], payloads


def _result_frame(result: IngestResult | Exception) -> Any:
    if isinstance(result, Exception):
        return result
    return (result.stored, result.duplicates, result.dropped, result.warnings)


def socket_path(database: str) -> str:
    """Where the writer of `database` listens (a short path: Unix sockets allow ~100 bytes)."""
    path = os.path.abspath(database) + ".writer.sock"
    if len(path.encode()) < 100:
        return path
    digest = hashlib.sha256(path.encode()).hexdigest()[:24]
    return os.path.join(tempfile.gettempdir(), f"flagsvc-{digest}.sock")


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
                sock.connect(self.path)
                self._local.sock = sock
            _send(sock, _pack(request))
            (size,) = _HEADER.unpack(_recv_exact(sock, _HEADER.size))
            answer = pickle.loads(_recv_exact(sock, size))
        except OSError:
            if sock is not None:
                sock.close()
            self._local.sock = None
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
        self.selector = selectors.DefaultSelector()
        self.buffers: dict[socket.socket, bytearray] = {}
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)  # a previous writer's socket (that writer is gone)
        old_umask = os.umask(0o077)  # only the service's user may connect
        try:
            self.listener.bind(path)
        finally:
            os.umask(old_umask)
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
            os.unlink(self.path)

    def serve(self, stop: threading.Event | None = None, parent: int | None = None) -> None:
        """Loop until `stop` is set or (`parent`) the process that started this one is gone."""
        while stop is None or not stop.is_set():
            self.step(timeout=0.5)
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
        results = [r if not isinstance(r, Exception) or isinstance(r, sqlite3.OperationalError)
                   else RuntimeError(f"{type(r).__name__}: {r}")  # always unpicklable-safe
                   for r in self.store.ingest_requests([request for _, request in group])]
        self.groups += 1
        self.requests += len(group)
        for (sock, _), result in zip(group, results, strict=True):
            try:
                sock.setblocking(True)
                _send(sock, _result_frame(result))
                sock.setblocking(False)
            except OSError:  # that worker is gone; its batch is committed all the same
                self._drop(sock)

    def _accept(self) -> None:
        while True:  # every connection waiting (their requests are read at the next look)
            try:
                sock, _ = self.listener.accept()
            except BlockingIOError:
                return
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
            except Exception:  # noqa: BLE001 (not one of ours: hang up)
                log.warning("ingestion writer: dropped a connection sending an unreadable frame")
                self._drop(sock)
                return

    def _drop(self, sock: socket.socket) -> None:
        self.buffers.pop(sock, None)
        with contextlib.suppress(KeyError, ValueError):
            self.selector.unregister(sock)
        sock.close()


def main(argv: list[str] | None = None) -> int:
    from . import Store

    database, synchronous = (argv or sys.argv[1:])[:2]
    logging.basicConfig(level=logging.WARNING)
    store = Store(database, synchronous=synchronous)
    writer = Writer(store, socket_path(database))
    gc.collect()
    gc.freeze()  # as in the workers (server.py): each batch allocates thousands of objects
    gc.set_threshold(10_000, *gc.get_threshold()[1:])
    try:
        writer.serve(parent=os.getppid())
    except KeyboardInterrupt:
        pass
    finally:
        writer.close()
        store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
