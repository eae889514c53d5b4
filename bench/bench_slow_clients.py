"""Slow clients against `flagsvc serve` (issue 14 item 1): does a normal client still get
its decide answers while N connections trickle their requests in?

For each level of `--slow` (default 0, 50, 500), half the slow connections send request
headers one line every `--interval` seconds (slowloris) and half send complete headers of a
`/batch/` request then its body one byte every `--interval` seconds. A slow connection the
server drops is opened again at once (the attacker keeps N open). Meanwhile one normal
client POSTs decide requests (`/flags/?v=2`, a new connection each, as browsers do) for
`--duration` seconds, ~20 per second, with a `--timeout` per request: a request not
answered in time counts as failed, at the timeout.

Reports per level: the normal client's p50 / p99 / max latency and failures, and how many
slow connections the server dropped (and after how long). Loopback only; every loop is
bounded by its duration. Not a timed test; nothing here runs under pytest.

    python bench/bench_slow_clients.py [--slow 0,50,500] [--duration 20] [--workers N]

`--checkout DIR` runs the server from another checkout (e.g. `git archive main | tar -x -C
DIR`), to measure before and after with the same script.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import selectors
import socket
import statistics
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common

BODY_LENGTH = 100_000  # announced by each slow-body connection (never reached)


class SlowClients:
    """`n` connections trickling requests in, one thread, kept at `n` open."""

    def __init__(self, port: int, n: int, interval: float) -> None:
        self.port, self.n, self.interval = port, n, interval
        self.selector = selectors.DefaultSelector()
        self.opened_at: dict[socket.socket, float] = {}
        self.kind: dict[socket.socket, str] = {}
        self.lifetimes: list[float] = []  # seconds until the server dropped one
        self.connect_failures = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _open(self, kind: str) -> None:
        try:
            sock = socket.create_connection(("127.0.0.1", self.port), timeout=2)
            if kind == "header":
                sock.sendall(b"POST /flags/?v=2 HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            else:
                sock.sendall(b"POST /batch/ HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                             b"Content-Type: application/json\r\n"
                             b"Content-Length: %d\r\n\r\n{" % BODY_LENGTH)
            sock.setblocking(False)
        except OSError:
            self.connect_failures += 1
            return
        self.opened_at[sock] = time.monotonic()
        self.kind[sock] = kind
        self.selector.register(sock, selectors.EVENT_READ)

    def _drop(self, sock: socket.socket, by_server: bool) -> str:
        self.selector.unregister(sock)
        if by_server:
            self.lifetimes.append(time.monotonic() - self.opened_at[sock])
        del self.opened_at[sock]
        sock.close()
        return self.kind.pop(sock)

    def start(self) -> SlowClients:
        for i in range(self.n):
            self._open("header" if i % 2 == 0 else "body")
        self.thread.start()
        return self

    def _run(self) -> None:
        next_send = time.monotonic() + self.interval
        line = 0
        while not self.stop.is_set():
            for key, _ in self.selector.select(timeout=0.1):
                sock = key.fileobj
                try:  # readable: an answer (a 408) or a close; either way, dropped
                    sock.recv(65536)  # type: ignore[union-attr]
                except BlockingIOError:
                    continue
                except OSError:
                    pass
                self._open(self._drop(sock, by_server=True))  # type: ignore[arg-type]
            if time.monotonic() >= next_send:
                next_send += self.interval
                line += 1
                for sock in list(self.opened_at):
                    piece = (b"X-Slow-%d: 1\r\n" % line if self.kind[sock] == "header"
                             else b" ")
                    try:
                        sock.send(piece)
                    except OSError:
                        self._open(self._drop(sock, by_server=True))

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)
        for sock in list(self.opened_at):
            self._drop(sock, by_server=False)
        self.selector.close()


def normal_client(port: int, duration: float, timeout: float) -> tuple[list[float], int]:
    """Decide requests on new connections for `duration` s: latencies (ms), failures."""
    body = json.dumps({"api_key": common.API_TOKEN, "distinct_id": "u-normal",
                       "groups": {common.GROUP_TYPE: common.org_key(1)}})
    latencies, failures = [], 0
    end = time.monotonic() + duration
    while time.monotonic() < end:
        started = time.perf_counter()
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
            conn.request("POST", "/flags/?v=2", body, {"Content-Type": "application/json"})
            response = conn.getresponse()
            response.read()
            conn.close()
            ok = response.status == 200
        except OSError:
            ok = False
        elapsed = (time.perf_counter() - started) * 1000
        if not ok:
            failures += 1
            elapsed = max(elapsed, timeout * 1000)
        latencies.append(elapsed)
        time.sleep(max(0.0, 0.05 - elapsed / 1000))
    return latencies, failures


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--slow", default="0,50,500", help="slow connections per level")
    ap.add_argument("--duration", type=float, default=20.0, help="normal client s per level")
    ap.add_argument("--interval", type=float, default=5.0, help="s between slow bytes")
    ap.add_argument("--timeout", type=float, default=5.0, help="normal request timeout (s)")
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--label", default="", help="a name for this run in the table")
    ap.add_argument("--checkout", default=None, help="serve another checkout's code")
    args = ap.parse_args()

    d = common.tmpdir("bench-slow")
    db = os.path.join(d, "flagsvc.db")
    common.setup_database(db, [common.flagsvc_flag()], common.make_orgs(1000))
    svc = common.flagsvc_server(db, workers=args.workers, checkout=args.checkout)
    rows = []
    with common.running(svc):
        workers = len(svc.worker_pids())  # the master's children are its workers only
        for n in [int(x) for x in args.slow.split(",")]:
            slow = SlowClients(svc.port, n, args.interval).start()
            time.sleep(2.0)  # every slow connection accepted and trickling
            latencies, failures = normal_client(svc.port, args.duration, args.timeout)
            slow.close()
            lifetimes = slow.lifetimes
            rows.append([args.label, n, len(latencies), failures,
                         round(statistics.median(latencies), 1), round(pct(latencies, 0.99), 1),
                         round(max(latencies), 1), len(lifetimes),
                         round(statistics.median(lifetimes), 1) if lifetimes else "-",
                         slow.connect_failures])
            time.sleep(1.0)
    print(f"\n`flagsvc serve` ({workers} workers), slow clients every {args.interval:g} s, "
          f"normal client {args.duration:g} s per level, timeout {args.timeout:g} s\n")
    print(common.table(rows, ["run", "slow conns", "requests", "failed", "p50 ms", "p99 ms",
                              "max ms", "slow dropped", "median s to drop",
                              "slow connect failures"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
