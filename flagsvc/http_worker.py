"""The gunicorn worker of `flagsvc serve`: whole requests are read, and whole answers
written, by the main thread; an app thread only runs the app.

gunicorn's own workers give a slow client a worker (sync) or a thread (gthread: once the
first byte arrives, the thread reads the rest with blocking calls, and writes the answer
with blocking calls): five connections sending a header line every 5 s held all five sync
workers, and ten that pipelined requests and read no answer held every thread in
`sendall`. This worker is gunicorn's threaded worker with the reading and the writing moved
to its main thread, in the poller it already runs for idle keep-alive connections:

- http_reading.py: a request is read without blocking until it has arrived whole (headers,
  then a body of its `Content-Length` or a complete chunked body), within deadlines, and
  only then handed to a thread, which parses it from memory (gunicorn's parser, limits and
  checks) and runs the app;
- http_writing.py: the thread renders the answer into memory and is free; the main thread
  writes it as the client takes it, within a deadline, before it reads that connection's
  next request;
- http_accepting.py: connections per client address, room made by idle ones, running out
  of file descriptors;
- http_conn.py: the connection, the in-memory socket and the shared counters; the bytes
  held for requests and answers are capped per worker.

A slow client costs a socket and a buffer, never a thread; so do hundreds of them. Stopping
(SIGTERM, or SIGHUP's old workers) finishes the requests that have begun within gunicorn's
graceful timeout. TLS and HTTP/2 (which a buffering reader cannot frame) fall back to plain
gthread behaviour; terminate TLS in front.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from .http_accepting import Accepting, raise_fd_limit
from .http_conn import ResponseSink
from .http_reading import RequestReading
from .http_writing import AnswerWriting
from .metrics import WORKER_HELD


class BufferingWorker(Accepting, RequestReading, AnswerWriting):
    """gunicorn's gthread worker reading whole requests before a thread runs them, and
    writing their answers after it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._next_sweep = 0.0
        self._busy: dict[int, float] = {}  # app thread -> when its request started
        self._stuck = False
        if self.buffering:
            # The request line is bounded by the headers' MAX_HEADER_BYTES (64 KiB, read here
            # before gunicorn parses): gunicorn's own cap (8190 at most) refused, as an HTML
            # 400, the npm mixpanel client's people/groups profiles over ~6 KB, which it
            # always sends as a GET with the record in the query. (This process's copy.)
            self.cfg.set("limit_request_line", 0)

    def init_process(self) -> None:
        if not self.buffering:
            self.log.warning("TLS or HTTP/2 configured: requests are not buffered before "
                             "a thread reads them (slow clients can hold threads); "
                             "terminate TLS in front of flagsvc instead")
        raise_fd_limit(self.log, self.cfg.worker_connections + 64)
        super().init_process()

    # ---------------------------------------------------------------- main thread

    def murder_pending(self) -> None:
        """Each turn of gunicorn's loop: requests and answers past their deadlines, lingering
        closes past theirs; stopping, what has begun is finished within the graceful
        timeout."""
        super().murder_pending()
        now = time.monotonic()
        if not self.alive and not self.stopped_at:
            self.stopped_at = now
            self._next_sweep = 0.0
        if now < self._next_sweep:
            return  # gunicorn calls this after every turn of its loop: look twice a second
        self._next_sweep = now + (0.5 if self.alive else 0.2)
        self.sweep_reading(now)
        self.sweep_writing(now)
        self.sweep_lingering(now)
        self.prune_addresses(now)
        self.sweep_full()
        if self.buffering:
            WORKER_HELD.set(self.held + self.unsent)  # /metrics: 0 when idle

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
        self._stuck = False  # the request ended before the arbiter acted: log the next one
        super().notify()

    # ---------------------------------------------------------------- app threads

    def handle(self, conn: Any) -> Any:
        ident = threading.get_ident()
        self._busy[ident] = time.monotonic()  # read by notify(), in the main thread
        sink = None
        if self.buffering:  # the answer goes to memory; the main thread writes it
            sink = conn.sink = conn.sink or ResponseSink(conn.sock, self.answer_limit,
                                                         self.write_seconds)
            conn.sock = sink
        try:
            return super().handle(conn)
        finally:
            if sink is not None:
                conn.sock = sink.sock
                conn.out = sink.take()
            self._busy.pop(ident, None)

    def handle_request(self, req: Any, conn: Any) -> Any:
        if self.buffering:
            # gunicorn would send 100 Continue now, after the body it asks for has arrived;
            # the main thread sent it (or it was not wanted: a refused oversized body)
            req._expected_100_continue = False
            if getattr(conn, "partial", False):
                req.must_close = True  # its body was never read: say Connection: close
        return super().handle_request(req, conn)

    def _keepalive_after(self, conn: Any, keepalive: Any) -> Any:
        if getattr(conn, "partial", False):
            return False  # the rest of its body was never read: close, do not drain
        return super()._keepalive_after(conn, keepalive)
