"""gunicorn configuration that gives `gunicorn wsgi:app` what `flagsvc serve` adds:

    gunicorn -c python:flagsvc.gunicorn_conf wsgi:app [--bind ... --workers ...]

the background WAL checkpointer in the workers, the frozen GC generation, Prometheus
multiprocess clean-up, and `flagsvc serve`'s defaults (the worker that reads whole
requests before a thread runs them, so slow clients cannot hold it —
flagsvc/http_worker.py; workers 2 x CPU + 1 up to 8, timeouts, access log without tokens).
Options given on gunicorn's command line still win.
The database is the one the app uses (FLAGSVC_DATABASE, see flagsvc/config.py); pending
migrations are applied by the `on_starting` hook, in the master, before any worker starts
(a long one would otherwise run inside a worker's boot timeout, and be killed and retried
by every new worker). Importing this module touches no database (`gunicorn
--check-config` creates nothing).
"""

from typing import Any

from .config import load_config
from .server import gunicorn_options
from .store import MigrationError, Store

_config = load_config()


def on_starting(server: Any) -> None:
    """gunicorn hook, in the master before it binds or forks: apply pending migrations."""
    if _config["DATABASE"] == ":memory:":
        return
    try:
        Store(_config["DATABASE"], synchronous=_config["SYNCHRONOUS"]).close()
    except MigrationError as e:  # what to fix, without a traceback; gunicorn does not start
        raise SystemExit(f"error: {e}") from None


_options = gunicorn_options(forwarded_allow_ips=_config["FORWARDED_ALLOW_IPS"])
globals().update(_options)  # gunicorn reads a config module's names as its settings
