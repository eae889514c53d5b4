"""Issue 19 — did the SQLite ingestion writer process earn its place? (It did not: removed.)

Side by side in one run, alternating rounds on fresh copies of the same database:

- `writer`: `flagsvc serve` of the last commit that had the ingestion writer process
  (WRITER_COMMIT, extracted with `git archive` unless `--writer-checkout` names a tree):
  gunicorn's master ran store/writer.py and the workers handed it their batches over a
  Unix socket; it wrote every request waiting at that moment in one transaction and kept
  the rows it wrote between transactions (rowcache.py).
- `direct`: this checkout's `flagsvc serve`: each worker writes its own batches (WAL,
  BEGIN IMMEDIATE, busy_timeout, the `.writelock` flock queue of store/db.py).
- `direct-noflock` (`--modes`): as `direct` with the flock queue left out (SQLite's own
  busy handler only), to see what that layer buys.

Load: bench_ingest's PostHog `/batch/` bodies (100 events each), `--clients` threads.
Reported per mode: events/s, p50/p99 per request, server CPU µs per event (master,
workers and the writer, from /proc), events lost (accepted×100 − counted), failures.

    python bench/bench_writer.py [--rounds 10] [--duration 6] [--clients 4] [--workers N]
                                 [--modes writer,direct] [--writer-checkout DIR] [--no-record]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import random

import bench_ingest
import common

HERE = Path(__file__).resolve().parent
WRITER_COMMIT = "ab831b4"  # the last commit with flagsvc/store/writer.py


def writer_checkout(given: str | None) -> str:
    if given:
        return given
    d = os.path.join(common.tmpdir("bench-writer-code"), "tree")
    os.mkdir(d)
    archive = subprocess.run(["git", "archive", WRITER_COMMIT], cwd=str(common.REPO),
                             capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", d], input=archive, check=True)
    return d


def serve_direct(bind: str, workers: int | None, flock: bool) -> None:
    """`flagsvc serve`, optionally without the flock queue (this file run as a script)."""
    import tempfile

    from flagsvc.app import ensure_default_project
    from flagsvc.config import load_config
    from flagsvc.server import run
    from flagsvc.store import Store, db

    if not flock:  # every connection without its write-lock file: SQLite's busy handler only
        connect = db.connect

        def connect_noflock(*a, **k):  # type: ignore[no-untyped-def]
            conn = connect(*a, **k)
            fd, conn.write_lock_fd = conn.write_lock_fd, None
            if fd is not None:
                os.close(fd)
            return conn
        db.connect = connect_noflock  # type: ignore[assignment]
    config = load_config()
    store = Store(config["DATABASE"], synchronous=config["SYNCHRONOUS"])
    ensure_default_project(store, config)
    store.close()
    os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="flagsvc-m-"))
    run(bind=bind, workers=workers, access_log=False)


def server(mode: str, db: str, workers: int | None, sync: str, old: str | None
           ) -> common.Server:
    env = {"FLAGSVC_SYNCHRONOUS": sync}
    if mode in ("writer", "direct"):
        return common.flagsvc_server(db, workers=workers, extra_env=env,
                                     checkout=old if mode == "writer" else None)
    port = common.free_port()
    argv = [common.PYTHON, str(HERE / "bench_writer.py"), "--serve", f"127.0.0.1:{port}",
            "--serve-flock", "0"]
    if workers:
        argv += ["--workers", str(workers)]
    env.update({"FLAGSVC_DATABASE": db, "FLAGSVC_API_TOKEN": common.API_TOKEN,
                "FLAGSVC_SECRET_KEY": common.SECRET_KEY, "FLAGSVC_LOG_LEVEL": "WARNING"})
    return common.Server(argv, port, env, workers=workers)


def descendants_cpu(pid: int) -> float:
    """user+system CPU seconds of `pid` and every process below it (the workers and the
    writer are children of the master)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    todo = [pid]
    while todo:
        p = todo.pop()
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
        except OSError:
            continue
        out = subprocess.run(["pgrep", "-P", str(p)], capture_output=True, text=True)
        todo += [int(x) for x in out.stdout.split()]
    return total


def one_round(mode: str, template: str, d: str, bodies: list[bytes], args: argparse.Namespace
              ) -> dict[str, float]:
    db = os.path.join(d, f"{mode}.db")
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(template + suffix):
            shutil.copy(template + suffix, db + suffix)
    before = bench_ingest.count_events(db)
    svc = server(mode, db, args.workers, args.synchronous, args.old)
    with common.running(svc):
        warm = bench_ingest.post_batches(svc.port, bodies[:20], args.clients, 30)
        cpu0 = descendants_cpu(svc.pid)
        res = bench_ingest.post_batches(svc.port, bodies[20:], args.clients, args.duration)
        cpu = descendants_cpu(svc.pid) - cpu0
    stored = bench_ingest.count_events(db) - before
    for suffix in ("", "-wal", "-shm", ".writelock", ".writer.lock", ".checkpointer"):
        with __import__("contextlib").suppress(FileNotFoundError):
            os.unlink(db + suffix)
    failed = sum(warm["failed"].values()) + sum(res["failed"].values())
    events = res["ok"] * 100
    return {"rate": events / res["elapsed"], "p50": res["p50"], "p99": res["p99"],
            "cpu_us": cpu / events * 1e6 if events else float("nan"),
            "lost": (warm["ok"] + res["ok"]) * 100 - stored, "failed": failed}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=10, help="alternating rounds per mode")
    ap.add_argument("--duration", type=float, default=6)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--batches", type=int, default=2500)
    ap.add_argument("--synchronous", default="FULL", choices=("FULL", "NORMAL"))
    ap.add_argument("--modes", default="writer,direct")
    ap.add_argument("--writer-checkout", default=None,
                    help=f"a tree of flagsvc with the writer (default: {WRITER_COMMIT})")
    ap.add_argument("--no-record", action="store_true")
    ap.add_argument("--serve", help=argparse.SUPPRESS)
    ap.add_argument("--serve-flock", default="1", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        serve_direct(args.serve, args.workers, args.serve_flock == "1")
        return 0
    modes = args.modes.split(",")
    args.old = writer_checkout(args.writer_checkout) if "writer" in modes else None
    rng = random.Random(7)
    bodies = [bench_ingest.batch_body(bench_ingest.make_events(rng))
              for _ in range(args.batches)]
    d = common.tmpdir("bench-writer")
    template = os.path.join(d, "template.db")
    common.setup_database(template, common.flag_variations(20), common.make_orgs())
    runs: dict[str, list[dict[str, float]]] = {m: [] for m in modes}
    for r in range(args.rounds):
        order = modes if r % 2 == 0 else modes[::-1]
        for mode in order:
            res = one_round(mode, template, d, bodies, args)
            runs[mode].append(res)
            print(f"round {r + 1} {mode:15} {res['rate']:>8,.0f} events/s  "
                  f"p99 {res['p99']:.1f} ms  cpu {res['cpu_us']:.0f} µs/event  "
                  f"lost {res['lost']:.0f}  failed {res['failed']:.0f}", flush=True)
        time.sleep(1)
    med = {m: {k: common.median([x[k] for x in runs[m]]) for k in runs[m][0]} for m in modes}
    # The load of a shared machine drifts: the ratio of each round's pair (run back to back)
    # is steadier than the ratio of the medians.
    def paired(m: str, k: str) -> float:
        return common.median([x[k] / b[k] for x, b in zip(runs[m], runs[modes[0]],
                                                          strict=True)])

    rows = [[m, med[m]["rate"], paired(m, "rate"), med[m]["p50"], med[m]["p99"],
             med[m]["cpu_us"], paired(m, "cpu_us"),
             sum(x["lost"] for x in runs[m]), sum(x["failed"] for x in runs[m]),
             " / ".join(f"{x['rate']:,.0f}" for x in runs[m])] for m in modes]
    workers = args.workers or __import__("flagsvc.server", fromlist=["x"]).default_workers()
    body = [
        f"{args.rounds} alternating rounds of {args.duration:g} s per mode, {workers} gunicorn "
        f"workers, {args.clients} client threads, POST /batch/ (100 PostHog events per "
        f"request, bench_ingest's bodies), synchronous={args.synchronous}; each round on a "
        "fresh copy of the same database (20 flags, 20,000 orgs). Medians; ratios against "
        f"`{modes[0]}`: the median of the rounds' own ratios (each round runs the modes "
        "back to back). CPU: master + workers + writer, from /proc.", "",
        common.table(rows, ["mode", "events/s", "ratio", "p50 ms", "p99 ms", "CPU µs/event",
                            "CPU ratio", "lost", "failed", "rounds (events/s)"]),
    ]
    common.record("bench_writer (issue 19: writer process vs direct writes)", "\n".join(body))
    lost = sum(x["lost"] for m in modes for x in runs[m])
    failed = sum(x["failed"] for m in modes for x in runs[m])
    return 0 if lost == 0 and failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
