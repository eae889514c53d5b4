"""Running the app under gunicorn, configured in code (no config file needed)."""

from __future__ import annotations

import gc
import os
from typing import Any

from gunicorn.app.base import BaseApplication

# Gunicorn's default access log line with two fields left out: %(u)s (the HTTP Basic user,
# which is where Segment clients put the api token, and a secret key sent by mistake) and the
# query string (PostHog clients may send `?token=`). Tokens never reach the logs.
ACCESS_LOG_FORMAT = '%(h)s %(l)s - %(t)s "%(m)s %(U)s %(H)s" %(s)s %(b)s "%(f)s" "%(a)s"'


GC_THRESHOLD = 10_000  # allocations between young-generation collections (Python: 700)


def default_workers() -> int:
    return min(2 * (os.cpu_count() or 1) + 1, 8)


def _post_worker_init(worker: Any) -> None:
    """The app is loaded: move its objects out of the cyclic GC's sight (they live as long as
    the worker) and collect the young generation less often. A request that allocates
    thousands of objects (a 100-event batch) otherwise pays for full collections over the
    whole app, possibly while holding the database write lock."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_THRESHOLD, *gc.get_threshold()[1:])
    service = getattr(getattr(worker, "wsgi", None), "extensions", {}).get("flagsvc")
    if service is not None and service.store.path != ":memory:":
        # One of the workers copies the WAL back in the background (store/checkpoint.py);
        # the others stand by to take over if its process dies.
        from .store.checkpoint import Checkpointer

        Checkpointer(service.store.path, service.store.synchronous).start()


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


def run(bind: str = "127.0.0.1:8000", workers: int | None = None, threads: int = 1,
        timeout: int = 30, access_log: bool = True) -> None:
    options = {
        "bind": bind,
        "workers": workers or default_workers(),
        "threads": threads,
        "timeout": timeout,
        "graceful_timeout": 10,
        "keepalive": 5,
        "accesslog": "-" if access_log else None,
        "access_log_format": ACCESS_LOG_FORMAT,
        "errorlog": "-",
        "child_exit": _child_exit,
        "post_worker_init": _post_worker_init,
    }
    _Gunicorn(options).run()
