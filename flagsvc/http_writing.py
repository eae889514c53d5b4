"""Writing answers from the buffering worker's main thread (http_worker.py), without
blocking, and closing connections after them.

An app thread renders its answer into memory (http_conn.ResponseSink) and is free at
once; the main thread writes it as the client takes it. The client has
FLAGSVC_WRITE_TIMEOUT seconds to take the whole answer, else the connection is closed; the
next request a client pipelined behind it is read only once the answer is out, so a client
that reads nothing holds one rendered answer at most. Answers waiting for their clients
count in the worker's FLAGSVC_WORKER_BUFFER_BYTES with the requests still arriving: over
it, an answer the client does not take at once is dropped with its connection.
"""

from __future__ import annotations

import contextlib
import http
import json
import selectors
import socket
import time
from functools import partial
from typing import Any

from gunicorn import util

from .http_conn import BufferedConn, WorkerState

LINGER_SECONDS = 2.0  # after an answer with Connection: close, how long its FIN may take


def error_answer(status: int, code: str, message: str, headers: str = "") -> bytes:
    """A short JSON error answer, closing its connection, as the event loop writes it."""
    body = json.dumps({"code": code, "message": message, "detail": message}).encode()
    head = (f"HTTP/1.1 {status} {http.HTTPStatus(status).phrase}\r\n"
            f"Connection: close\r\n{headers}"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n")
    return head.encode() + body


class AnswerWriting(WorkerState):
    """The main thread's side of an answer: from a thread's memory to the client."""

    def finish_request(self, conn: Any, fs: Any) -> None:
        """A thread is done with conn (in the main thread, gunicorn's callback): write the
        answer it rendered, then let gunicorn keep the connection alive or close it."""
        out = getattr(conn, "out", b"")
        if not self.buffering or not out:
            return super().finish_request(conn, fs)
        conn.out = b""
        conn.unsent, conn.result = memoryview(out), fs
        self.unsent += len(out)
        with contextlib.suppress(OSError):
            conn.sock.setblocking(False)
        if self._write_some(conn):
            return None
        if self.held + self.unsent > self.buffer_budget:
            self.log.warning("answers and requests held are over FLAGSVC_WORKER_BUFFER_BYTES "
                             "(%d bytes): dropping an answer its client does not take",
                             self.buffer_budget)
            self._drop_answer(conn)
            return None
        conn.deadline = time.monotonic() + self.write_seconds
        self.writing[conn] = None
        self.poller.register(conn.sock, selectors.EVENT_WRITE,
                             partial(self._on_writable, conn))
        return None

    def _on_writable(self, conn: BufferedConn, sock: socket.socket) -> None:
        self._write_some(conn)

    def _write_some(self, conn: BufferedConn) -> bool:
        """Send what the socket takes now; True once conn has left the writing state (all
        sent: gunicorn's turn; or the client is gone: closed)."""
        unsent = conn.unsent
        assert unsent is not None
        try:
            while unsent:
                n = conn.sock.send(unsent)
                self.unsent -= n
                unsent = conn.unsent = unsent[n:]
        except (BlockingIOError, InterruptedError):
            return False
        except OSError:  # reset, or closed by the thread: nobody to answer
            self._drop_answer(conn)
            return True
        self._stop_writing(conn)
        fs, conn.unsent, conn.result = conn.result, None, None
        super().finish_request(conn, fs)
        return True

    def _stop_writing(self, conn: BufferedConn) -> None:
        if self.writing.pop(conn, False) is None:
            with contextlib.suppress(KeyError, ValueError, OSError):
                self.poller.unregister(conn.sock)

    def _drop_answer(self, conn: BufferedConn) -> None:
        self._stop_writing(conn)
        if conn.unsent is not None:
            self.unsent -= len(conn.unsent)
        conn.unsent = conn.result = None
        self._close(conn)

    def sweep_writing(self, now: float) -> None:
        """Answers not taken within FLAGSVC_WRITE_TIMEOUT (or by the end of the graceful
        timeout, stopping): dropped with their connection."""
        stop_end = self.stopped_at + max(self.cfg.graceful_timeout - 1.0, 0.0)
        for conn in [c for c in self.writing
                     if c.deadline <= now or (not self.alive and now >= stop_end)]:
            self._drop_answer(conn)

    def _answer(self, conn: BufferedConn, status: int, code: str, message: str,
                headers: str = "") -> None:
        """A short JSON error written from the main thread, then the connection closed."""
        self._forget(conn)
        self._send_quietly(conn.sock, error_answer(status, code, message, headers))
        self.nr_conns -= 1
        self._linger(conn)

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
        self.nr_conns += 1  # its socket is held until the linger ends: it counts

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
        if self.lingering.pop(conn, False) is None:
            self.nr_conns -= 1
        with contextlib.suppress(KeyError, ValueError, OSError):
            self.poller.unregister(conn.sock)
        util.close(conn.sock)

    def sweep_lingering(self, now: float) -> None:
        for conn in [c for c in self.lingering if c.deadline <= now]:
            self._end_linger(conn)
