"""Accepting connections in the buffering worker (http_worker.py): how many one client
address may hold, what happens when the worker is full or out of file descriptors.

- FLAGSVC_MAX_CONNECTIONS_PER_ADDRESS (per worker; an IPv6 client counts by its /64): a
  connection over it closes that address's oldest connection that has sent nothing yet,
  or else its oldest still reading a request after 2 s (408); if all of them are busy
  (in the app, taking answers, or just begun) it is answered 503 and closed at once.
  Behind a proxy every client has the proxy's address: the proxies of
  FLAGSVC_FORWARDED_ALLOW_IPS (default 127.0.0.1, ::1; `*`: every peer) are not capped,
  and the proxy limits its clients.
- A worker holding `worker_connections` connections makes room by closing the ones that
  have sent nothing yet (oldest first: new connections within their first-byte deadline,
  then idle kept-alive ones), then those still sending their headers after 2 s (408),
  rather than stop accepting: idle sockets and slowloris cannot fill it.
- Out of file descriptors (EMFILE): accepting pauses for a moment, the connections wait in
  the listen backlog (gunicorn re-raised and the worker exited with all it held).
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import resource
import socket
import time
from typing import Any

from gunicorn import util

from .http_conn import BufferedConn, WorkerState
from .http_writing import error_answer

ACCEPT_PAUSE = 0.5  # seconds without accepting after EMFILE/ENFILE (out of descriptors)
SLOW_HEADERS = 2.0  # a full worker closes connections still sending headers after this
IDLE_GRACE = 1.0  # a connection that has sent nothing is not closed to make room before this
#                   (a client's request follows its connect by a moment)
_SLOW_408 = error_answer(408, "request_timeout", "the server is full and the headers were slow")
_TOO_MANY = error_answer(503, "too_many_connections", "too many connections from this address",
                         "Retry-After: 5\r\n")


def trusted_networks(allowed: Any) -> list[Any] | None:
    """gunicorn's forwarded_allow_ips (FLAGSVC_FORWARDED_ALLOW_IPS) as networks; None for
    `*` (every peer is a trusted proxy)."""
    items = allowed.split(",") if isinstance(allowed, str) else list(allowed or [])
    networks = []
    for item in (i.strip() for i in items):
        if item == "*":
            return None
        with contextlib.suppress(ValueError):
            networks.append(ipaddress.ip_network(item, strict=False))
    return networks


def address_key(addr: Any, uncapped: list[Any] | None = None) -> str | None:
    """What a client's connections are counted under: its IPv4 address, its IPv6 /64 (one
    host gets a whole /64); None (not counted) for a Unix socket and for the trusted proxies
    of `uncapped` (None: all are) — behind a proxy every client has its address."""
    if not isinstance(addr, tuple) or not addr:
        return None
    try:
        ip = ipaddress.ip_address(addr[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if uncapped is None or any(ip in network for network in uncapped):
        return None
    if isinstance(ip, ipaddress.IPv6Address):
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


class Accepting(WorkerState):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.by_address: dict[str, set[BufferedConn]] = {}
        self.uncapped = trusted_networks(self.cfg.forwarded_allow_ips)
        self._accept_resume = 0.0  # out of descriptors: no accept before this
        self._next_prune = 0.0
        self._refused_logged = 0.0

    def accept(self, listener: socket.socket) -> None:
        if not self.buffering:
            return super().accept(listener)
        try:
            sock, addr = listener.accept()
        except OSError as e:
            if e.errno in (errno.EMFILE, errno.ENFILE):
                self._pause_accepting(e)
            elif e.errno not in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                raise
            return None
        key = address_key(addr, self.uncapped) if self.per_address > 0 else None
        if key is not None and not self._admit(key):
            self._send_quietly(sock, _TOO_MANY)
            util.close(sock)
            now = time.monotonic()
            if now >= self._refused_logged:
                self._refused_logged = now + 10
                self.log.warning("connection from %s refused: it holds %d connections to "
                                 "this worker (FLAGSVC_MAX_CONNECTIONS_PER_ADDRESS)", key,
                                 self.per_address)
            return None
        self.nr_conns += 1
        conn = BufferedConn(self.cfg, sock, addr, listener.getsockname(), self._linger, key)
        if key is not None:
            self.by_address.setdefault(key, set()).add(conn)
        self.enqueue_req(conn)
        return None

    def _admit(self, key: str) -> bool:
        """Under the cap, or at it with a connection of that address that has sent nothing
        (waiting for its first byte, or idle kept alive), or else one still reading its
        request after SLOW_HEADERS seconds (answered 408): the oldest such is closed to make
        way, so that a client sharing an address with a flood of idle or slow connections
        (a NAT, docker's port proxy) still gets in."""
        held = self.by_address.get(key)
        if held is None or len(held) < self.per_address:
            return True
        held.difference_update([c for c in held if c.sock.fileno() < 0])  # closed since
        if len(held) < self.per_address:
            return True
        now = time.monotonic()
        idle = [c for c in held if c in self.reading and not c.got_bytes
                and c.started < now - IDLE_GRACE]
        if idle:
            self._evict(min(idle, key=lambda c: c.started))
            return True
        kept = [c for c in self.keepalived_conns if c in held]
        if kept:
            self.keepalived_conns.remove(kept[0])
            self._evict_kept(kept[0])
            return True
        slow = [c for c in held if c in self.reading and c.started < now - SLOW_HEADERS]
        if slow:  # one client behind a NAT or docker's proxy trickling requests: its oldest
            victim = min(slow, key=lambda c: c.started)
            self._send_quietly(victim.sock, _SLOW_408)
            self._evict(victim)
            return True
        return False

    def _evict(self, conn: BufferedConn) -> None:
        """Close a connection reading its first byte."""
        self.reading.pop(conn, None)
        with contextlib.suppress(KeyError, ValueError, OSError):
            self.poller.unregister(conn.sock)
        self._close(conn)

    def _evict_kept(self, conn: Any) -> None:
        """Close an idle kept-alive connection (already taken off gunicorn's list)."""
        with contextlib.suppress(KeyError, ValueError, OSError):
            self.poller.unregister(conn.sock)
        self.nr_conns -= 1
        conn.close()

    def prune_addresses(self, now: float) -> None:
        """Forget closed connections of addresses that have not connected again since."""
        if now < self._next_prune:
            return
        self._next_prune = now + 10
        for key in list(self.by_address):
            held = self.by_address[key]
            held.difference_update([c for c in held if c.sock.fileno() < 0])
            if not held:
                del self.by_address[key]

    def _pause_accepting(self, error: OSError) -> None:
        """Out of file descriptors: new connections wait in the listen backlog while the
        ones held finish (gunicorn re-raises, the worker exits and takes them all along)."""
        self.log.warning("accept: %s; not accepting for %s s (%d connections held; raise "
                         "the open files limit, ulimit -n)", error.strerror, ACCEPT_PAUSE,
                         self.nr_conns)
        self._accept_resume = time.monotonic() + ACCEPT_PAUSE
        self.set_accept_enabled(False)

    def set_accept_enabled(self, enabled: bool) -> None:
        if enabled and time.monotonic() < self._accept_resume:
            return  # gunicorn's loop asks again every turn: resumes after the pause
        if not enabled and self.alive and self.buffering and \
                time.monotonic() >= self._accept_resume and self._make_room():
            return  # full, but idle connections made way: keep accepting
        super().set_accept_enabled(enabled)

    def sweep_full(self) -> None:
        """Full and not accepting: look again for connections to close (slowloris ones
        qualify once they have sent headers for SLOW_HEADERS seconds)."""
        if self.alive and self.buffering and self.nr_conns >= self.worker_connections \
                and time.monotonic() >= self._accept_resume:
            self._make_room()  # gunicorn's loop accepts again once under the limit

    def _make_room(self) -> bool:
        """Full (worker_connections): close up to a tenth of the connections that have
        sent nothing (reading their first byte, then idle kept-alive), oldest first; if
        there are not enough, those still sending their headers after SLOW_HEADERS seconds
        (a client sends its headers at once; slowloris does not), answered 408. True if
        that brought the worker under its limit."""
        wanted = max(1, self.worker_connections // 10)
        young = time.monotonic() - IDLE_GRACE
        idle = [c for c in self.reading if not c.got_bytes and c.started < young][:wanted]
        for conn in idle:
            self._evict(conn)
        closed = len(idle)
        for _ in range(min(wanted - closed, len(self.keepalived_conns))):
            self._evict_kept(self.keepalived_conns.popleft())
            closed += 1
        if closed < wanted:
            since = time.monotonic() - SLOW_HEADERS
            slow = [c for c in self.reading if c.started < since and c.framing is not None
                    and c.framing.header_end is None]  # all of them: the backlog is FIFO
            for conn in slow:
                self._send_quietly(conn.sock, _SLOW_408)
                self._evict(conn)
        return self.nr_conns < self.worker_connections


def raise_fd_limit(log: Any, wanted: int) -> None:
    """Each connection (reading, kept alive, lingering) holds a descriptor: raise the soft
    RLIMIT_NOFILE to the hard limit, and warn when it stays below `wanted`."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and (hard == resource.RLIM_INFINITY or soft < hard):
        with contextlib.suppress(ValueError, OSError):  # an unlimited hard limit: Linux's
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # nr_open may refuse
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft != resource.RLIM_INFINITY and soft < wanted:
        log.warning("the open files limit (%d) is below worker_connections + 64 (%d): past "
                    "it, accepting pauses (raise ulimit -n)", soft, wanted)
