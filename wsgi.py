"""WSGI entry point: `gunicorn wsgi:app` (configuration from FLAGSVC_* variables).

`flagsvc serve` is the usual way to run flagsvc; this module is for running it under any
WSGI server. Under gunicorn, `gunicorn -c python:flagsvc.gunicorn_conf wsgi:app` adds what
`flagsvc serve` runs around the app (migrations applied once in the master, the background
WAL checkpointer, the frozen GC generation); without it SQLite checkpoints inside commits —
correct, but slower. On a new database the first worker to start creates the default
project and prints its api token to stderr; a generated secret key goes to
`<database>.secret_key` (mode 0600), never into the log. A worker that starts while the
database is unreachable serves degraded (decide from its caches, writes 503) instead of
failing to boot (flagsvc/app.py: open_store).
"""

import logging

from flagsvc.app import create_app, ensure_default_project
from flagsvc.cli import announce_default_project
from flagsvc.store import DatabaseUnavailable

app = create_app()
try:
    _created = ensure_default_project(app.extensions["flagsvc"].store, app.config["FLAGSVC"])
except DatabaseUnavailable as e:  # see open_store: the worker boots degraded
    logging.getLogger("flagsvc").warning("default project not checked: %s", e)
    _created = None
finally:
    app.extensions["flagsvc"].store.release()
if _created is not None:
    announce_default_project(_created, app.config["FLAGSVC"])
