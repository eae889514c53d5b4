"""Running the app under gunicorn, configured in code (no config file needed)."""

from __future__ import annotations

import gc
import logging
import math
import os
from typing import Any

from gunicorn.app.base import BaseApplication

# Gunicorn's default access log line with two fields left out: %(u)s (the HTTP Basic user,
# which is where Segment clients put the api token, and a secret key sent by mistake) and the
# query string (PostHog clients may send `?token=`). Tokens never reach the logs.
ACCESS_LOG_FORMAT = '%(h)s %(l)s - %(t)s "%(m)s %(U)s %(H)s" %(s)s %(b)s "%(f)s" "%(a)s"'


GC_THRESHOLD = 10_000  # allocations between young-generation collections (Python: 700)


log = logging.getLogger("flagsvc")


def usable_cpus(cgroup: str = "/sys/fs/cgroup") -> int:
    """The CPUs this process may use: a container's cpuset or `taskset` limit the ones it
    runs on, a CPU quota (Kubernetes' CPU limit, `docker --cpus`: cgroup v2 `cpu.max`, v1
    `cpu.cfs_quota_us`) how much of them, rounded up; os.cpu_count() counts the host's
    anyway (2 × 64 + 1 workers for a pod limited to one CPU)."""
    try:
        cpus = len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):  # (no affinity on this platform)
        cpus = os.cpu_count() or 1
    quota = _cpu_quota(cgroup)
    return max(1, min(cpus, math.ceil(quota))) if quota else cpus


def _cpu_quota(cgroup: str) -> float | None:
    """CPUs the cgroup's quota allows (None: no quota, or no cgroup to read)."""
    for path, split in ((f"{cgroup}/cpu.max", None),
                        (f"{cgroup}/cpu/cpu.cfs_quota_us", f"{cgroup}/cpu/cpu.cfs_period_us")):
        try:
            with open(path) as f:
                fields = f.read().split()
            if split is not None:
                with open(split) as f:
                    fields += f.read().split()
            quota, period = float(fields[0]), float(fields[1])
        except (OSError, ValueError, IndexError):  # absent, "max", unreadable
            continue
        ok = math.isfinite(quota) and math.isfinite(period) and quota > 0 and period > 0
        return quota / period if ok else None
    return None


def default_workers() -> int:
    return min(2 * usable_cpus() + 1, 8)


def _post_worker_init(worker: Any) -> None:
    freeze_gc()
    service = getattr(getattr(worker, "wsgi", None), "extensions", {}).get("flagsvc")
    if service is not None:
        service.start_warm_up()  # every project's flags and token: decide during an outage
    if (service is not None and service.store.path != ":memory:"
            and service.store.dialect == "sqlite"):
        # One of the workers copies the WAL back in the background (store/checkpoint.py);
        # the others stand by to take over if its process dies.
        from .store.checkpoint import Checkpointer

        Checkpointer(service.store.path, service.store.synchronous).start()


def freeze_gc() -> None:
    """Once the process has loaded what it keeps (the app): move those
    objects out of the cyclic GC's sight and collect the young generation less often. A
    request that allocates thousands of objects (a 100-event batch) otherwise pays for full
    collections over the whole app, possibly while holding the database write lock."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_THRESHOLD, *gc.get_threshold()[1:])


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

        # the master migrated (cmd_serve) before forking: a worker replaced while the
        # database is down must boot without it
        return create_app(migrate=False, threads=self.cfg.threads)


def gunicorn_options(bind: str = "127.0.0.1:8000", workers: int | None = None,
                     threads: int = 1, timeout: int = 30, access_log: bool = True,
                     forwarded_allow_ips: str | None = None,
                     worker_connections: int = 4000) -> dict[str, Any]:
    """gunicorn's settings for `flagsvc serve` (and flagsvc.gunicorn_conf)."""
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
    return options


def run(bind: str = "127.0.0.1:8000", workers: int | None = None, threads: int = 1,
        timeout: int = 30, access_log: bool = True,
        forwarded_allow_ips: str | None = None, worker_connections: int = 4000) -> None:
    _Gunicorn(gunicorn_options(bind, workers, threads, timeout, access_log,
                               forwarded_allow_ips, worker_connections)).run()
