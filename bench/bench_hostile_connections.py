"""Hostile connections against `flagsvc serve` (issue 14, the attack run's second round):
does a normal client still get its decide answers, and what does the server hold?

Attacks (`--attacks`, all by default), each against a fresh server with default settings
and workers, attackers on their own loopback addresses (127.0.x.y), the normal client on
127.0.0.1 sending decide requests from `--probes` threads on new connections:

- `slow-readers`: 10 connections pipeline `--pipelined` x GET /api/openapi.json (110 KB)
  and read nothing (a 4 KB receive buffer);
- `bodies`: `--bodies` connections (from 20 addresses) announce a 900 KB body and send all
  of it but one byte; reported: the workers' RSS growth and how many were answered 503;
- `idle`: `--idle` connections that send nothing, from one address (127.0.0.7) and then
  from 40;
- `reload`: 20 uploads in progress when the master gets SIGHUP; their answers;
- `lf`: a request with LF-only line endings; its answer and how long it took;
- `forms` (third round): 8 console sign-ins announcing 6 MB (over the limit) with 7 body
  bytes sent; their answers and when;
- `chunks`: 6 parallel POST /batch/ of 45,000 one-byte chunks, and the time of one of
  100,000;
- `abandoned`: 1,000 uploads (100 KB announced, 20 KB sent) closed half-way, 100 at a
  time; then the answer to an ordinary 1 MB batch;
- `posthog`: the stock posthog-python client sending 505 events of 10 KB and 7 of 850 KB
  (its batches fill to just over 5 MiB); events stored of 512.

Loopback only; every loop is bounded. Not a timed test; nothing here runs under pytest.

    python bench/bench_hostile_connections.py [--attacks slow-readers,idle] [--checkout DIR]

`--checkout DIR` runs the server from another checkout (e.g. `git archive main | tar -x -C
DIR`), to measure before and after with the same script.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import signal
import socket
import sqlite3
import sys
import threading
import time
import uuid

import requests

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common

OPENAPI = b"GET /api/openapi.json HTTP/1.1\r\nHost: x\r\n\r\n"


def _from(address: str, port: int, timeout: float = 5.0,
          rcvbuf: int | None = None) -> socket.socket:
    sock = socket.socket()
    if rcvbuf:  # a client that reads nothing: its kernel takes little before it stalls
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.settimeout(timeout)
    sock.bind((address, 0))
    sock.connect(("127.0.0.1", port))
    return sock


class Probes:
    """Decide requests from 127.0.0.1 on new connections, until stopped."""

    def __init__(self, url: str, threads: int, timeout: float = 10.0) -> None:
        self.url, self.timeout = url, timeout
        self.results: list[tuple[bool, float]] = []
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def _run(self) -> None:
        body = {"api_key": common.API_TOKEN, "distinct_id": "u-normal",
                "groups": {common.GROUP_TYPE: common.org_key(1)}}
        while not self.stop.is_set():
            started = time.monotonic()
            try:
                ok = requests.post(f"{self.url}/flags/?v=2", json=body,
                                   timeout=self.timeout).status_code == 200
            except requests.RequestException:
                ok = False
            self.results.append((ok, time.monotonic() - started))
            time.sleep(0.05)

    def run_for(self, seconds: float) -> Probes:
        for t in self.threads:
            t.start()
        time.sleep(seconds)
        self.stop.set()
        for t in self.threads:
            t.join(self.timeout + 2)
        return self

    def summary(self) -> list:
        took = sorted(s for _, s in self.results)
        n = len(took)
        return [n, sum(1 for ok, _ in self.results if not ok), sum(1 for s in took if s > 5),
                round(took[n // 2] * 1000, 1) if n else "-",
                round(took[min(n - 1, int(n * 0.99))] * 1000, 1) if n else "-",
                round(took[-1] * 1000, 1) if n else "-"]


def _rss(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            for line in open(f"/proc/{pid}/status"):  # noqa: SIM115
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
    return total


def slow_readers(svc: common.Server, args: argparse.Namespace) -> list:
    socks = []
    for _ in range(10):
        sock = _from("127.0.0.2", svc.port, rcvbuf=4096)
        sock.sendall(OPENAPI * args.pipelined)
        socks.append(sock)
    time.sleep(0.5)
    row = Probes(svc.url, args.probes).run_for(args.seconds).summary()
    for sock in socks:
        sock.close()
    return [f"10 non-reading pipeliners x {args.pipelined}", *row, "-"]


def bodies(svc: common.Server, args: argparse.Namespace) -> list:
    pids = svc.worker_pids()
    before = _rss(pids)
    socks, busy = [], 0
    started = time.monotonic()
    for i in range(args.bodies):
        try:
            sock = _from(f"127.0.2.{10 + i % 20}", svc.port, timeout=2)
            sock.sendall(b"POST /batch/ HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
                         b"\r\nContent-Length: 900000\r\n\r\n" + b" " * 899_999)
        except OSError:
            pass
        else:
            socks.append(sock)
    sent_in = time.monotonic() - started
    time.sleep(1)
    grown = _rss(pids) - before
    row = Probes(svc.url, args.probes).run_for(args.seconds).summary()
    for sock in socks:
        sock.settimeout(0.01)
        with contextlib.suppress(OSError):
            busy += sock.recv(65536).startswith(b"HTTP/1.1 503 ")
        sock.close()
    return [f"{args.bodies} x 900 KB bodies ({sent_in:.0f} s to send)", *row,
            f"RSS +{grown / 1e6:,.0f} MB, {busy} answered 503"]


def idle(svc: common.Server, args: argparse.Namespace, addresses: int) -> list:
    socks, failed = [], 0
    for i in range(args.idle):
        try:
            address = "127.0.0.7" if addresses == 1 else f"127.0.3.{10 + i % addresses}"
            socks.append(_from(address, svc.port, timeout=2))
        except OSError:
            failed += 1
    row = Probes(svc.url, args.probes).run_for(args.seconds).summary()
    for sock in socks:
        sock.close()
    return [f"{args.idle} idle connections from {addresses} address(es)", *row,
            f"{failed} attacker connects failed"]


def reload(svc: common.Server, args: argparse.Namespace) -> list:
    uploads = []
    for n in range(20):
        events = [{"event": "uploaded", "distinct_id": f"u{n}", "uuid": str(uuid.uuid4()),
                   "properties": {"i": i}} for i in range(20)]
        body = json.dumps({"api_key": common.API_TOKEN, "batch": events}).encode()
        sock = _from("127.0.0.8", svc.port, timeout=15)
        sock.sendall(b"POST /batch/ HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\n\r\n" % len(body) + body[:len(body) // 2])
        uploads.append((sock, body[len(body) // 2:]))
    time.sleep(0.3)
    os.kill(svc.pid, signal.SIGHUP)
    time.sleep(1.5)
    statuses: dict[str, int] = {}
    for sock, rest in uploads:
        try:
            sock.sendall(rest)
            status = sock.recv(65536).split(b"\r\n")[0].decode()[9:] or "closed"
        except OSError as e:
            status = type(e).__name__
        statuses[status] = statuses.get(status, 0) + 1
        sock.close()
    return ["20 uploads in progress at SIGHUP", "-", "-", "-", "-", "-", "-",
            ", ".join(f"{n} x {s}" for s, n in sorted(statuses.items()))]


def lf(svc: common.Server, args: argparse.Namespace) -> list:
    started = time.monotonic()
    with _from("127.0.0.9", svc.port, timeout=30) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\nHost: x\n\n")
        try:
            status = sock.recv(65536).split(b"\r\n")[0].decode()
        except OSError as e:
            status = type(e).__name__
    return ["GET with LF-only line ends", "-", "-", "-", "-", "-", "-",
            f"{status!r} after {time.monotonic() - started:.1f} s"]


def forms(svc: common.Server, args: argparse.Namespace) -> list:
    socks, started = [], time.monotonic()
    for _ in range(8):
        sock = _from("127.0.3.1", svc.port, timeout=40)
        sock.sendall(b"POST /ui/signin HTTP/1.1\r\nHost: x\r\nContent-Type: application/"
                     b"x-www-form-urlencoded\r\nContent-Length: 6000000\r\n\r\nemail=a")
        socks.append(sock)
    answers: list[str] = []

    def wait(sock: socket.socket) -> None:
        try:
            head = sock.recv(64).split(b"\r\n")[0].decode()
        except OSError as e:
            head = type(e).__name__
        answers.append(f"{head[9:12] or 'closed'} after {time.monotonic() - started:.1f} s")
    waiters = [threading.Thread(target=wait, args=(s,), daemon=True) for s in socks]
    for t in waiters:
        t.start()
    row = Probes(svc.url, args.probes).run_for(args.seconds).summary()
    for t in waiters:
        t.join(40)
    for sock in socks:
        sock.close()
    return ["8 x POST /ui/signin, Content-Length 6 MB, 7 bytes sent", *row,
            ", ".join(sorted(set(answers)))]


def _chunked_batch(n: int) -> bytes:
    body = json.dumps({"api_key": common.API_TOKEN, "batch": [
        {"event": "chunky", "distinct_id": f"c{i}", "properties": {"pad": "x" * 960}}
        for i in range(n // 1000 + 1)]}).encode()
    return (b"POST /batch/ HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
            + b"".join(b"1\r\n%c\r\n" % byte for byte in body[:n]) + b"0\r\n\r\n")


def _exchange_timed(port: int, data: bytes, address: str, timeout: float) -> str:
    started = time.monotonic()
    try:
        sock = _from(address, port, timeout=timeout)
        sock.sendall(data)
        head = sock.recv(64).split(b"\r\n")[0].decode()[9:12] or "closed"
        sock.close()
    except OSError as e:
        head = type(e).__name__
    return f"{head} in {time.monotonic() - started:.1f} s"


def chunks(svc: common.Server, args: argparse.Namespace) -> list:
    one = _exchange_timed(svc.port, _chunked_batch(100_000), "127.0.3.2", 120)
    data = _chunked_batch(45_000)  # truncated JSON: 400, after the chunks are decoded
    answers: list[str] = []
    senders = [threading.Thread(target=lambda: answers.append(
        _exchange_timed(svc.port, data, "127.0.3.3", 120)), daemon=True) for _ in range(6)]
    for t in senders:
        t.start()
    row = Probes(svc.url, args.probes).run_for(args.seconds).summary()
    for t in senders:
        t.join(120)
    return ["6 x 45,000 one-byte chunks in parallel", *row,
            f"100,000 chunks alone: {one}; the 6: {', '.join(sorted(answers))}"]


def abandoned(svc: common.Server, args: argparse.Namespace) -> list:
    head = (b"POST /batch/ HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100000\r\n\r\n")
    for round_ in range(10):
        socks = []
        for _ in range(100):
            with contextlib.suppress(OSError):
                sock = _from(f"127.0.4.{round_ + 1}", svc.port, timeout=2)
                socks.append(sock)
                sock.sendall(head + b" " * 20_000)
        time.sleep(0.3)
        for sock in socks:
            sock.close()
    time.sleep(1)
    batch = {"api_key": common.API_TOKEN, "batch": [
        {"event": "big", "distinct_id": f"b{i}", "properties": {"pad": "y" * 100_000}}
        for i in range(10)]}
    statuses = [requests.post(f"{svc.url}/batch/", json=batch, timeout=30).status_code
                for _ in range(10)]
    row = Probes(svc.url, args.probes).run_for(args.seconds).summary()
    return ["1,000 uploads closed half-way, then 10 x 1 MB batches", *row,
            f"1 MB batches: {statuses.count(200)} x 200, {statuses.count(503)} x 503"]


def posthog_batches(svc: common.Server, args: argparse.Namespace) -> list:
    from posthog import Posthog

    errors: list[str] = []
    client = Posthog(common.API_TOKEN, host=svc.url, flush_at=1000, flush_interval=3.0,
                     max_queue_size=2000, on_error=lambda e, batch: errors.append(str(e)))
    for i in range(505):
        client.capture("small", distinct_id=f"s{i}", properties={"pad": "s" * 10_000})
    for i in range(7):
        client.capture("large", distinct_id=f"l{i}", properties={"pad": "L" * 850_000})
    client.flush()
    client.shutdown()
    time.sleep(2)
    with sqlite3.connect(f"file:{args.db}?mode=ro", uri=True, timeout=15) as conn:
        stored = conn.execute("SELECT count(*) FROM events WHERE event IN ('small', "
                              "'large')").fetchone()[0]
    return ["posthog-python: 505 x 10 KB + 7 x 850 KB events", "-", "-", "-", "-", "-", "-",
            f"{stored} of 512 stored; {len(errors)} batches refused {errors[:1]}"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--attacks", default="slow-readers,bodies,idle,reload,lf,forms,chunks,"
                                         "abandoned,posthog")
    ap.add_argument("--seconds", type=float, default=15.0, help="probing per attack (s)")
    ap.add_argument("--probes", type=int, default=6, help="normal client threads")
    ap.add_argument("--pipelined", type=int, default=100, help="requests per non-reader")
    ap.add_argument("--bodies", type=int, default=1000)
    ap.add_argument("--idle", type=int, default=5500)
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--checkout", default=None, help="serve another checkout's code")
    args = ap.parse_args()
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    d = common.tmpdir("bench-hostile")
    rows = []
    for attack in args.attacks.split(","):
        runs = [(attack, 1), (attack, 40)] if attack == "idle" else [(attack, 0)]
        for name, addresses in runs:
            db = os.path.join(d, f"{name}-{addresses}.db")
            common.setup_database(db, [common.flagsvc_flag()], common.make_orgs(100))
            svc = common.flagsvc_server(db, workers=args.workers, checkout=args.checkout)
            args.db = db
            with common.running(svc):
                if name == "idle":
                    rows.append(idle(svc, args, addresses))
                else:
                    rows.append({"slow-readers": slow_readers, "bodies": bodies,
                                 "reload": reload, "lf": lf, "forms": forms,
                                 "chunks": chunks, "abandoned": abandoned,
                                 "posthog": posthog_batches}[name](svc, args))
            print(rows[-1], flush=True)
    print(f"\n`flagsvc serve` ({args.checkout or 'this checkout'}), decide probes from "
          f"{args.probes} threads for {args.seconds:g} s per attack, 10 s timeout\n")
    print(common.table(rows, ["attack", "decide requests", "failed", "> 5 s", "p50 ms",
                              "p99 ms", "max ms", "server side"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
