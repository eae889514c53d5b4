"""Running the app under gunicorn, configured in code (no config file needed)."""

from __future__ import annotations

import gc
import logging
import os
import subprocess
import sys
import threading
import time
from typing import Any

from gunicorn.app.base import BaseApplication

from .store import is_postgres

# Gunicorn's default access log line with two fields left out: %(u)s (the HTTP Basic user,
# which is where Segment clients put the api token, and a secret key sent by mistake) and the
# query string (PostHog clients may send `?token=`). Tokens never reach the logs.
ACCESS_LOG_FORMAT = '%(h)s %(l)s - %(t)s "%(m)s %(U)s %(H)s" %(s)s %(b)s "%(f)s" "%(a)s"'


GC_THRESHOLD = 10_000  # allocations between young-generation collections (Python: 700)


log = logging.getLogger("flagsvc")


def default_workers() -> int:
    return min(2 * (os.cpu_count() or 1) + 1, 8)


def _post_worker_init(worker: Any) -> None:
    _init_worker(worker, writer=False)


def _with_writer(worker: Any) -> None:
    _init_worker(worker, writer=True)


def freeze_gc() -> None:
    """Once the process has loaded what it keeps (the app, the writer's store): move those
    objects out of the cyclic GC's sight and collect the young generation less often. A
    request that allocates thousands of objects (a 100-event batch) otherwise pays for full
    collections over the whole app, possibly while holding the database write lock."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_THRESHOLD, *gc.get_threshold()[1:])


def _init_worker(worker: Any, writer: bool) -> None:
    freeze_gc()
    service = getattr(getattr(worker, "wsgi", None), "extensions", {}).get("flagsvc")
    if (service is not None and service.store.path != ":memory:"
            and service.store.dialect == "sqlite"):
        # One of the workers copies the WAL back in the background (store/checkpoint.py);
        # the others stand by to take over if its process dies.
        from .store.checkpoint import Checkpointer

        Checkpointer(service.store.path, service.store.synchronous).start()
        # Ingestion batches go to the writer process the master runs (store/writer.py),
        # when there is one; otherwise (or while it restarts) workers write themselves.
        from .store.writer import WriterClient, socket_path

        if writer:
            service.store.writer = WriterClient(socket_path(service.store.path))


class _WriterProcess:
    """The ingestion writer (`python -m flagsvc.store.writer`), run by gunicorn's master
    and restarted if it exits; workers write directly while it is away."""

    def __init__(self, database: str, synchronous: str) -> None:
        self.argv = [sys.executable, "-m", "flagsvc.store.writer", database, synchronous]
        self.proc: subprocess.Popen[bytes] | None = None
        self.stopping = threading.Event()

    def start(self, server: Any = None) -> None:
        threading.Thread(target=self._supervise, name="flagsvc-writer", daemon=True).start()

    def _supervise(self) -> None:
        delay = 1.0
        while not self.stopping.is_set():
            started = time.monotonic()
            self.proc = subprocess.Popen(self.argv)
            self.proc.wait()  # (gunicorn's master may reap it first: the status is lost)
            if self.stopping.is_set():
                break
            delay = 1.0 if time.monotonic() - started > 60 else min(delay * 2, 30.0)
            log.warning("ingestion writer exited; restarting in %.0f s (workers write "
                        "directly meanwhile)", delay)
            self.stopping.wait(delay)

    def restart(self, server: Any = None) -> None:
        """After a reload (HUP) the workers run new code: so must the writer."""
        proc = self.proc
        if proc is not None and proc.poll() is None:
            proc.terminate()

    def stop(self, server: Any = None) -> None:
        self.stopping.set()
        proc = self.proc
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()


def _child_exit(server: Any, worker: Any) -> None:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)


class _Gunicorn(BaseApplication):
    def __init__(self, options: dict[str, Any]) -> None:
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        from .app import create_app

        return create_app()


def gunicorn_options(bind: str = "127.0.0.1:8000", workers: int | None = None,
                     threads: int = 1, timeout: int = 30, access_log: bool = True,
                     database: str | None = None,
                     forwarded_allow_ips: str | None = None,
                     worker_connections: int = 1000) -> dict[str, Any]:
    """gunicorn's settings for `flagsvc serve`; `database`: also run its ingestion writer
    (store/writer.py) from the master."""
    options: dict[str, Any] = {
        # gthread reading whole requests in its poller before a thread runs them: slow
        # clients cannot hold the threads (http_worker.py)
        "worker_class": "flagsvc.http_worker.BufferingWorker",
        "bind": bind,
        "workers": workers or default_workers(),
        "threads": threads,
        # connections each worker holds (reading, writing, kept alive); idle ones make room
        # for new ones when it is full (http_accepting.py)
        "worker_connections": worker_connections,
        "timeout": timeout,
        "graceful_timeout": 10,
        "keepalive": 5,
        "accesslog": "-" if access_log else None,
        "access_log_format": ACCESS_LOG_FORMAT,
        "errorlog": "-",
        "child_exit": _child_exit,
        "post_worker_init": _post_worker_init,
        # gunicorn >= 25.1 opens a control socket at one path per user ($HOME/.gunicorn):
        # every instance of the user shares it, and stopping one removed another's.
        "control_socket_disable": True,
        # The npm mixpanel client sends each track as a GET with the event base64 in the
        # query: gunicorn's default request-line limit (4094 bytes) refused events of ~3 KB
        # with an HTML 414. 8190 is gunicorn's largest bounded value (0 would be unbounded);
        # BufferingWorker lifts it where it bounds the headers itself (64 KiB), i.e. unless
        # TLS / HTTP/2 make it fall back to gthread's reading.
        "limit_request_line": 8190,
    }
    if forwarded_allow_ips is not None:  # gunicorn then sets https from X-Forwarded-Proto
        options["forwarded_allow_ips"] = forwarded_allow_ips
    if database and database != ":memory:" and not is_postgres(database):
        # (PostgreSQL takes writes from every worker of every node: no writer process)
        from .config import load_config

        writer = _WriterProcess(database, load_config()["SYNCHRONOUS"])
        options.update(when_ready=writer.start, on_exit=writer.stop, on_reload=writer.restart,
                       post_worker_init=_with_writer)
    return options


def run(bind: str = "127.0.0.1:8000", workers: int | None = None, threads: int = 1,
        timeout: int = 30, access_log: bool = True, database: str | None = None,
        forwarded_allow_ips: str | None = None, worker_connections: int = 1000) -> None:
    _Gunicorn(gunicorn_options(bind, workers, threads, timeout, access_log, database,
                               forwarded_allow_ips, worker_connections)).run()
