"""The state the buffering worker of `flagsvc serve` keeps (http_worker.py): a connection
with the request it is reading and the answer it is writing, the in-memory socket an app
thread writes its answer to, and the worker's settings and counters that the reading
(http_reading.py), writing (http_writing.py) and accepting (http_accepting.py) parts share.
"""

from __future__ import annotations

import socket
import threading
from typing import Any

from gunicorn import util
from gunicorn.workers.gthread import TConn, ThreadWorker

from .config import load_config
from .http_framing import Framing
from .http_limits import BodyLimits


class ResponseSink:
    """What an app thread writes its answer to instead of the socket: memory, so that the
    thread is free as soon as the answer is rendered and the main thread writes it without
    blocking (a client that reads nothing costs a buffer, never a thread). An answer larger
    than `limit` is written by the thread itself as it is produced, each piece within
    `timeout` seconds (and the whole request within gunicorn's --timeout, see
    BufferingWorker.notify). Reading and everything else go to the socket."""

    def __init__(self, sock: socket.socket, limit: int, timeout: float) -> None:
        self.sock = sock
        self.limit = limit
        self.timeout = timeout
        self.out = bytearray()
        self.streamed = False  # over the limit: this answer went out from the thread

    def sendall(self, data: bytes) -> None:
        if not self.streamed and len(self.out) + len(data) <= self.limit:
            self.out += data
            return
        self.streamed = True
        self.sock.settimeout(self.timeout or None)
        if self.out:
            held, self.out = bytes(self.out), bytearray()
            self.sock.sendall(held)
        self.sock.sendall(data)

    def send(self, data: bytes) -> int:
        self.sendall(data)
        return len(data)

    def sendfile(self, file: Any, offset: int = 0, count: int | None = None) -> int:
        """gunicorn's sendfile path (a file answer): read into the answer."""
        file.seek(offset)
        sent = 0
        while count is None or sent < count:
            piece = file.read(65536 if count is None else min(65536, count - sent))
            if not piece:
                break
            self.sendall(piece)
            sent += len(piece)
        return sent

    def take(self) -> bytes:
        out, self.out, self.streamed = bytes(self.out), bytearray(), False
        return out

    def __getattr__(self, name: str) -> Any:
        return getattr(self.sock, name)


class BufferedConn(TConn):  # type: ignore[misc]
    """A connection and the request it is reading (or has read) in the main thread."""

    def __init__(self, cfg: Any, sock: socket.socket, client: Any, server: Any,
                 linger: Any, address: Any = None) -> None:
        super().__init__(cfg, sock, client, server)
        self.data_ready = True  # gthread's wait for a first byte: we already have the request
        self.linger = linger
        self.address = address  # the key its client's connections are counted under
        self.buf = bytearray()
        self.counted = 0  # bytes of buf in the worker's total (BufferingWorker.held)
        self.framing: Framing | None = None
        self.started = 0.0  # when it began waiting for this request
        self.got_bytes = False  # some of this request has arrived (first-byte deadline over)
        self.deadline = 0.0
        self.request: bytes | None = None  # the request read, for the thread's parser
        self.partial = False  # handed over before its body arrived: no keep-alive
        self.sent_continue = False
        self.eof = False  # the client closed its side
        self.sink: ResponseSink | None = None
        self.out: bytes = b""  # the answer an app thread rendered, for the main thread
        self.unsent: memoryview | None = None  # what of it the client has not taken yet
        self.result: Any = None  # the thread's future, for gunicorn once the answer is out

    def init(self) -> None:
        """In the thread, before gunicorn parses: the parser reads the request from memory."""
        super().init()
        if self.request is not None:
            # Reading the rest of a request handed over early (partial) and answers too
            # large to hold (ResponseSink): as long as a request may run (--timeout; past
            # it the worker is replaced anyway, see notify()).
            self.sock.settimeout(self.cfg.timeout or None)
            self.parser.unreader.unread(self.request)
            self.request = None

    def close(self, graceful: bool = False) -> None:
        if graceful and self.linger is not None and \
                threading.current_thread() is threading.main_thread():
            self.linger(self)  # the FIN and the drain without blocking the main loop
        else:
            util.close(self.sock)


class WorkerState(ThreadWorker):  # type: ignore[misc]
    """gunicorn's threaded worker with the settings and counters the parts share."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        settings = load_config()
        self.body_limits = BodyLimits(settings)  # per route (http_limits.py)
        self.header_seconds = float(settings["HEADER_TIMEOUT"])
        self.body_seconds = float(settings["BODY_TIMEOUT"])
        self.first_byte_seconds = float(settings["FIRST_BYTE_TIMEOUT"])
        self.write_seconds = float(settings["WRITE_TIMEOUT"])
        self.answer_limit = int(settings["WRITE_BUFFER_BYTES"])
        self.buffer_budget = int(settings["WORKER_BUFFER_BYTES"])
        self.per_address = int(settings["MAX_CONNECTIONS_PER_ADDRESS"])
        self.reading: dict[BufferedConn, None] = {}  # connections reading a request
        self.writing: dict[BufferedConn, None] = {}  # connections taking an answer
        self.lingering: dict[BufferedConn, None] = {}  # answered, closing
        self.held = 0  # bytes buffered for requests still arriving
        self.unsent = 0  # bytes of answers rendered, not yet taken by their clients
        self.stopped_at = 0.0  # when the worker began to stop (SIGTERM, SIGHUP's old ones)
        self.buffering = not self.cfg.is_ssl and "h2" not in self.cfg.http_protocols

    # What one part calls in another (defined there; the class order of BufferingWorker
    # puts the parts before this one).
    def _answer(self, conn: BufferedConn, status: int, code: str, message: str,
                headers: str = "") -> None:
        raise NotImplementedError

    def _linger(self, conn: BufferedConn) -> None:
        raise NotImplementedError

    def _close(self, conn: BufferedConn) -> None:
        """Close a connection none of gunicorn's lists hold, and forget the request bytes
        it held (every close path passes here or through _forget: a client that went away
        mid-request left its bytes counted in `held`, and after a few hundred of them every
        upload over 16 KiB got 503 for good)."""
        self._forget(conn)
        self.nr_conns -= 1
        util.close(conn.sock)

    def _account(self, conn: BufferedConn) -> None:
        """Keep the worker's total of buffered request bytes up to date with conn.buf."""
        self.held += len(conn.buf) - conn.counted
        conn.counted = len(conn.buf)

    def _forget(self, conn: BufferedConn) -> None:
        """The request bytes of conn are no longer held (handed over, answered, closed)."""
        conn.buf = bytearray()
        self._account(conn)

    @staticmethod
    def _send_quietly(sock: socket.socket, data: bytes) -> None:
        """Best effort, never blocking: a client that reads nothing loses the answer."""
        try:
            sock.setblocking(False)
            sock.send(data)
        except OSError:
            pass
