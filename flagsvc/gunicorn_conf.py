"""gunicorn configuration that gives `gunicorn wsgi:app` what `flagsvc serve` adds:

    gunicorn -c python:flagsvc.gunicorn_conf wsgi:app [--bind ... --workers ...]

the ingestion writer process run (and restarted) by the master, the background WAL
checkpointer in the workers, the frozen GC generation, Prometheus multiprocess clean-up,
and `flagsvc serve`'s defaults (workers 2 x CPU + 1 up to 8, timeouts, access log without
tokens). Options given on gunicorn's command line still win. The database is the one the
app uses (FLAGSVC_DATABASE, see flagsvc/config.py); pending migrations are applied here, in
the master, before any worker starts (a long one would otherwise run inside a worker's boot
timeout, and be killed and retried by every new worker).
"""

from .config import load_config
from .server import gunicorn_options
from .store import Store

_config = load_config()
if _config["DATABASE"] != ":memory:":
    Store(_config["DATABASE"], synchronous=_config["SYNCHRONOUS"]).close()  # migrates
_options = gunicorn_options(database=_config["DATABASE"])
globals().update(_options)  # gunicorn reads a config module's names as its settings
