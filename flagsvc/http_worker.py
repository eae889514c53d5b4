"""The gunicorn worker of `flagsvc serve`: whole requests are read before a thread sees them.

gunicorn's own workers give a slow client a worker (sync) or a thread (gthread: once the
first byte arrives, the thread reads the rest with blocking calls): five connections sending
a header line every 5 s held all five sync workers, and the service answered nobody. This
worker is gunicorn's threaded worker with one change of where requests are read: its main
thread reads every connection without blocking, in the poller it already runs for idle
keep-alive connections, until the request has arrived whole (headers, then a body of its
`Content-Length` or a complete chunked body), and only then hands it to a thread, which
parses it from memory (gunicorn's own parser, limits and checks) and runs the app. A slow
client costs a socket and a buffer, never a thread; so do hundreds of them. As a buffering
reverse proxy does, with deadlines: a request's headers must arrive within
FLAGSVC_HEADER_TIMEOUT seconds, its body within FLAGSVC_BODY_TIMEOUT seconds after them;
past that the connection is answered 408 and closed. A body announced larger than
FLAGSVC_MAX_BODY_BYTES is not waited for: the app refuses it (413) from the headers.

Left to gunicorn: connection limits (`worker_connections` per worker, then the listen
backlog), keep-alive, the app threads. TLS and HTTP/2 (which a buffering reader cannot
frame) fall back to plain gthread behaviour; terminate TLS in front.
"""

from __future__ import annotations

import contextlib
import errno
import json
import selectors
import socket
import threading
import time
from functools import partial
from typing import Any

from gunicorn import util
from gunicorn.workers.gthread import TConn, ThreadWorker

from .config import load_config
from .http_framing import MAX_HEADER_BYTES, Framing

LINGER_SECONDS = 2.0  # after an answer with Connection: close, how long its FIN may take
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


class BufferedConn(TConn):  # type: ignore[misc]
    """A connection and the request it is reading (or has read) in the main thread."""

    def __init__(self, cfg: Any, sock: socket.socket, client: Any, server: Any,
                 linger: Any) -> None:
        super().__init__(cfg, sock, client, server)
        self.data_ready = True  # gthread's wait for a first byte: we already have the request
        self.linger = linger
        self.buf = bytearray()
        self.framing: Framing | None = None
        self.deadline = 0.0
        self.request: bytes | None = None  # the request read, for the thread's parser
        self.partial = False  # handed over before its body arrived: no keep-alive
        self.sent_continue = False
        self.eof = False  # the client closed its side

    def init(self) -> None:
        """In the thread, before gunicorn parses: the parser reads the request from memory."""
        super().init()
        if self.request is not None:
            # Writing the answer to a client that reads none: as long as a request may run
            # (--timeout; past it the worker is replaced anyway, see notify()).
            self.sock.settimeout(self.cfg.timeout or None)
            self.parser.unreader.unread(self.request)
            self.request = None

    def close(self, graceful: bool = False) -> None:
        if graceful and self.linger is not None and \
                threading.current_thread() is threading.main_thread():
            self.linger(self)  # the FIN and the drain without blocking the main loop
        else:
            util.close(self.sock)


class BufferingWorker(ThreadWorker):  # type: ignore[misc]
    """gunicorn's gthread worker reading whole requests before a thread runs them."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        settings = load_config()
        self.body_limit = int(settings["MAX_BODY_BYTES"])
        self.header_seconds = float(settings["HEADER_TIMEOUT"])
        self.body_seconds = float(settings["BODY_TIMEOUT"])
        self.reading: dict[BufferedConn, None] = {}  # connections reading a request
        self.lingering: dict[BufferedConn, None] = {}  # answered, closing
        self._next_sweep = 0.0
        self._busy: dict[int, float] = {}  # app thread -> when its request started
        self._stuck = False
        self.buffering = not self.cfg.is_ssl and "h2" not in self.cfg.http_protocols

    def init_process(self) -> None:
        if not self.buffering:
            self.log.warning("TLS or HTTP/2 configured: requests are not buffered before "
                             "a thread reads them (slow clients can hold threads); "
                             "terminate TLS in front of flagsvc instead")
        super().init_process()

    # ---------------------------------------------------------------- main thread

    def accept(self, listener: socket.socket) -> None:
        if not self.buffering:
            return super().accept(listener)
        try:
            sock, addr = listener.accept()
        except OSError as e:
            if e.errno not in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                raise
            return None
        self.nr_conns += 1
        self.enqueue_req(BufferedConn(self.cfg, sock, addr, listener.getsockname(),
                                      self._linger))
        return None

    def enqueue_req(self, conn: Any) -> None:
        """Every way into a thread passes here: a connection with its request read goes to
        the pool; any other (new, kept alive and readable, answered with bytes left over)
        first reads its next request in the poller."""
        if not self.buffering or conn.request is not None:
            return super().enqueue_req(conn)
        conn.buf = bytearray(conn.parser.unreader.take_buffered() if conn.parser else b"")
        conn.framing = Framing(self.body_limit)
        conn.partial = conn.sent_continue = conn.eof = False
        conn.deadline = time.monotonic() + self.header_seconds
        conn.sock.setblocking(False)
        # Read at once: a kept-alive connection is here because it is readable, and a new
        # one often has its request waiting already (no extra turn of the poller for them).
        if self._receive(conn) and not self._advance(conn):
            if conn.eof:  # closed before its request was whole
                self._close(conn)
                return None
            self.reading[conn] = None
            self.poller.register(conn.sock, selectors.EVENT_READ,
                                 partial(self._on_readable, conn))
        return None

    def _on_readable(self, conn: BufferedConn, sock: socket.socket) -> None:
        if self._receive(conn, registered=True) and not self._advance(conn, registered=True) \
                and conn.eof:
            self._stop_reading(conn)
            self._close(conn)

    def _receive(self, conn: BufferedConn, registered: bool = False) -> bool:
        """Read what has arrived; False (and closed) if the client went away with nothing
        sent. A client that sends its request and then closes its side (`eof`) still gets
        the answer."""
        try:
            while True:
                chunk = conn.sock.recv(65536)
                if not chunk:
                    conn.eof = True
                    break
                conn.buf += chunk
                if len(chunk) < 65536:
                    return True
        except (BlockingIOError, InterruptedError):
            return True
        except OSError:  # reset: nobody to answer
            conn.eof, conn.buf = True, bytearray()
        if conn.buf:
            return True
        if registered:
            self._stop_reading(conn)
        self._close(conn)
        return False

    def _advance(self, conn: BufferedConn, registered: bool = False) -> bool:
        """Look at what arrived; True once the connection has left the reading state
        (handed to a thread, or answered and closed)."""
        framing = conn.framing
        assert framing is not None
        had_headers = framing.header_end is not None
        end = framing.step(conn.buf)
        if end is None:
            if not had_headers and framing.header_end is not None:
                conn.deadline = time.monotonic() + self.body_seconds  # the body's turn
            if framing.wants_continue and not conn.sent_continue:
                conn.sent_continue = True
                self._send_quietly(conn.sock, _CONTINUE)
            return False
        if registered:
            self._stop_reading(conn)
        if end == Framing.TOO_LARGE:
            self._answer(conn, 431, "request_header_fields_too_large",
                         f"request headers are over {MAX_HEADER_BYTES} bytes")
            return True
        if end == Framing.BAD:
            self._answer(conn, 400, "invalid_body", "the chunked body is malformed")
            return True
        # The thread's parser takes this request from the bytes; any the client sent after
        # it stay in the parser's buffer, and gunicorn passes them back here (enqueue_req).
        conn.request, conn.partial = bytes(conn.buf), end == Framing.HAND_OVER
        conn.buf = bytearray()
        conn.sock.setblocking(True)
        super().enqueue_req(conn)
        return True

    def _stop_reading(self, conn: BufferedConn) -> None:
        self.reading.pop(conn, None)
        with contextlib.suppress(KeyError, ValueError, OSError):
            self.poller.unregister(conn.sock)

    def _close(self, conn: BufferedConn) -> None:
        self.nr_conns -= 1
        util.close(conn.sock)

    def _answer(self, conn: BufferedConn, status: int, code: str, message: str) -> None:
        """A short JSON error written from the main thread, then the connection closed."""
        body = json.dumps({"code": code, "message": message, "detail": message}).encode()
        reason = {400: "Bad Request", 408: "Request Timeout",
                  431: "Request Header Fields Too Large"}[status]
        head = (f"HTTP/1.1 {status} {reason}\r\nConnection: close\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n")
        self._send_quietly(conn.sock, head.encode() + body)
        self.nr_conns -= 1
        self._linger(conn)

    @staticmethod
    def _send_quietly(sock: socket.socket, data: bytes) -> None:
        """Best effort, never blocking: a client that reads nothing loses the answer."""
        try:
            sock.setblocking(False)
            sock.send(data)
        except OSError:
            pass

    def _linger(self, conn: BufferedConn) -> None:
        """Close after an answer as RFC 9112 §9.6 asks (FIN, then read until the client
        closes, so unread bytes do not turn into a reset that loses the answer), in the
        poller: gunicorn does this with a blocking read of up to 2 s in the main loop."""
        try:
            conn.sock.shutdown(socket.SHUT_WR)
            conn.sock.setblocking(False)
            self.poller.register(conn.sock, selectors.EVENT_READ,
                                 partial(self._on_linger_readable, conn))
        except (OSError, ValueError, KeyError):
            util.close(conn.sock)
            return
        conn.deadline = time.monotonic() + LINGER_SECONDS
        self.lingering[conn] = None

    def _on_linger_readable(self, conn: BufferedConn, sock: socket.socket) -> None:
        try:
            if sock.recv(65536):
                return  # drained some; the client has not closed yet
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            pass
        self._end_linger(conn)

    def _end_linger(self, conn: BufferedConn) -> None:
        self.lingering.pop(conn, None)
        with contextlib.suppress(KeyError, ValueError, OSError):
            self.poller.unregister(conn.sock)
        util.close(conn.sock)

    def murder_pending(self) -> None:
        """Each turn of gunicorn's loop: drop requests past their deadline (408), finish
        lingering closes past theirs, and on shutdown stop waiting for any request."""
        super().murder_pending()
        now = time.monotonic()
        if now < self._next_sweep and self.alive:
            return  # gunicorn calls this after every turn of its loop: look twice a second
        self._next_sweep = now + 0.5
        for conn in [c for c in self.reading if c.deadline <= now or not self.alive]:
            self._stop_reading(conn)
            if conn.buf:  # a request had begun: say why it ends
                self._answer(conn, 408, "request_timeout",
                             "the request did not arrive in time (headers within "
                             f"{self.header_seconds:g} s, the body within "
                             f"{self.body_seconds:g} s after them)")
            else:
                self._close(conn)
        for conn in [c for c in self.lingering if c.deadline <= now]:
            self._end_linger(conn)

    def notify(self) -> None:
        """The heartbeat the arbiter watches. A sync worker running one request longer than
        --timeout is killed and replaced; threads are not, so a request stuck that long
        stops the heartbeat and the arbiter replaces this worker the same way (within
        another --timeout): a runaway request cannot keep an app thread for good."""
        timeout = self.cfg.timeout
        now = time.monotonic()
        if timeout and any(now - started > timeout for started in list(self._busy.values())):
            if not self._stuck:
                self._stuck = True
                self.log.error("a request has run for over %s s: stopping the heartbeat so "
                               "that gunicorn replaces this worker", timeout)
            return
        super().notify()

    # ---------------------------------------------------------------- app threads

    def handle(self, conn: Any) -> Any:
        ident = threading.get_ident()
        self._busy[ident] = time.monotonic()  # read by notify(), in the main thread
        try:
            return super().handle(conn)
        finally:
            self._busy.pop(ident, None)

    def handle_request(self, req: Any, conn: Any) -> Any:
        if self.buffering:
            # gunicorn would send 100 Continue now, after the body it asks for has arrived;
            # the main thread sent it (or it was not wanted: a refused oversized body)
            req._expected_100_continue = False
        return super().handle_request(req, conn)

    def _keepalive_after(self, conn: Any, keepalive: Any) -> Any:
        if getattr(conn, "partial", False):
            return False  # the rest of its body was never read: close, do not drain
        return super()._keepalive_after(conn, keepalive)
