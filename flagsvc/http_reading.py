"""Reading requests whole in the buffering worker's main thread (http_worker.py), without
blocking, before a thread sees them; their deadlines and the bytes they may hold.

Deadlines, as a buffering reverse proxy has them: a new connection's first byte within
FLAGSVC_FIRST_BYTE_TIMEOUT, the headers within FLAGSVC_HEADER_TIMEOUT of its start, the
body within FLAGSVC_BODY_TIMEOUT after the headers; past one, 408 (or a plain close if
nothing arrived). A body announced larger than its route's limit (http_limits.py:
FLAGSVC_MAX_BODY_BYTES, FLAGSVC_MAX_INGEST_BODY_BYTES) is answered 413 from the headers,
here: neither waited for nor handed to a thread unread (a form route's thread read it
from the socket: 30 s each, and GBs of memory for a streamed one). The bytes all
unfinished requests of a worker hold are capped (FLAGSVC_WORKER_BUFFER_BYTES, with the
unsent answers): over it, a request that has grown past SMALL_REQUEST (16 KiB) is answered
503 with Retry-After instead of being read further, while small ones (decide) still are.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import time
from functools import partial
from typing import Any

from .http_conn import BufferedConn, WorkerState
from .http_framing import MAX_HEADER_BYTES, Framing

_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
SMALL_REQUEST = 16 * 1024  # read whatever the worker holds (decide): over the budget, the
#                          worker holds at most this much more per connection
READ_AT_ONCE = 4  # x 64 KiB read per readiness event: what a pipelining client sends past
#                   one request is held by the parser without being counted, so bounded
STOP_LINGER = 2.0  # stopping: how long a connection that sent nothing yet may still start


class RequestReading(WorkerState):
    """The main thread's side of a request: from its first byte to a thread's queue."""

    def enqueue_req(self, conn: Any) -> None:
        """Every way into a thread passes here: a connection with its request read goes to
        the pool; any other (new, kept alive and readable, answered with bytes left over)
        first reads its next request in the poller."""
        if not self.buffering or conn.request is not None:
            return super().enqueue_req(conn)
        conn.buf = bytearray(conn.parser.unreader.take_buffered() if conn.parser else b"")
        conn.framing = Framing(self.body_limits.default, self.body_limits.for_path)
        conn.partial = conn.sent_continue = conn.eof = False
        conn.started = time.monotonic()
        conn.got_bytes = bool(conn.buf)
        conn.deadline = conn.started + (self.header_seconds if conn.got_bytes else
                                        min(self.first_byte_seconds, self.header_seconds))
        if not self.alive:
            conn.deadline = min(conn.deadline, conn.started + STOP_LINGER)
        conn.sock.setblocking(False)
        self._account(conn)
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
            for _ in range(READ_AT_ONCE):  # the poller says again if more is waiting
                chunk = conn.sock.recv(65536)
                if not chunk:
                    conn.eof = True
                    break
                conn.buf += chunk
                if len(chunk) < 65536:
                    break
        except (BlockingIOError, InterruptedError):
            pass
        except OSError:  # reset: nobody to answer
            conn.eof, conn.buf = True, bytearray()
        self._account(conn)
        if conn.buf or not conn.eof:
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
        if not conn.got_bytes and conn.buf:  # its first byte: the headers' deadline follows
            conn.got_bytes = True
            conn.deadline = conn.started + self.header_seconds
        had_headers = framing.header_end is not None
        end = framing.step(conn.buf)
        if end is None:
            if not had_headers and framing.header_end is not None:
                conn.deadline = time.monotonic() + self.body_seconds  # the body's turn
            if len(conn.buf) > SMALL_REQUEST and \
                    self.held + self.unsent > self.buffer_budget:
                if registered:
                    self._stop_reading(conn)
                self._answer(conn, 503, "server_busy",
                             "the server holds too many request bytes at the moment; "
                             "retry shortly", "Retry-After: 1\r\n")
                return True
            if framing.wants_continue and not conn.sent_continue:
                conn.sent_continue = True
                self._send_quietly(conn.sock, _CONTINUE)
            return False
        if registered:
            self._stop_reading(conn)
        if end < 0 and end != Framing.HAND_OVER:
            status, code, message = {
                Framing.TOO_LARGE: (431, "request_header_fields_too_large",
                                    f"request headers are over {MAX_HEADER_BYTES} bytes"),
                Framing.BODY_TOO_LARGE: (413, "payload_too_large",
                                         f"request body is over the {framing.body_limit}"
                                         " byte limit of this route"),
                Framing.BAD: (400, "invalid_body", "the chunked body is malformed"),
                Framing.BARE_LF: (400, "invalid_request",
                                  "request lines must end with CRLF (a bare LF was sent)"),
                Framing.UNSUPPORTED: (501, "unsupported_transfer_coding",
                                      "only the chunked transfer coding is supported"),
            }[end]
            self._answer(conn, status, code, message)
            return True
        # The thread's parser takes this request from the bytes; any the client sent after
        # it stay in the parser's buffer, and gunicorn passes them back here (enqueue_req).
        conn.partial = end == Framing.HAND_OVER
        conn.request = bytes(conn.buf) if conn.partial else framing.decoded(conn.buf, end)
        self._forget(conn)
        conn.sock.setblocking(True)
        super().enqueue_req(conn)
        return True

    def _stop_reading(self, conn: BufferedConn) -> None:
        self.reading.pop(conn, None)
        with contextlib.suppress(KeyError, ValueError, OSError):
            self.poller.unregister(conn.sock)

    def sweep_reading(self, now: float) -> None:
        """Requests past their deadline: 408 (or closed if nothing of them came). Stopping,
        a request that has begun is still read, to its deadline or the end of the graceful
        timeout (then 503), and a connection that sent nothing may still start one for
        STOP_LINGER seconds."""
        stop_end = self.stopped_at + max(self.cfg.graceful_timeout - 1.0, 0.0)
        for conn in list(self.reading):
            if not self.alive and not conn.got_bytes:
                conn.deadline = min(conn.deadline, self.stopped_at + STOP_LINGER)
            late = conn.deadline <= now
            stop_late = not self.alive and now >= stop_end
            if not late and not stop_late:
                continue
            self._stop_reading(conn)
            if not conn.buf:
                self._close(conn)
            elif late:
                self._answer(conn, 408, "request_timeout",
                             "the request did not arrive in time (headers within "
                             f"{self.header_seconds:g} s, the body within "
                             f"{self.body_seconds:g} s after them)")
            else:
                self._answer(conn, 503, "shutting_down",
                             "the server stopped before the request arrived; retry",
                             "Retry-After: 1\r\n")
