"""WSGI entry point: `gunicorn wsgi:app` (configuration from FLAGSVC_* variables).

`flagsvc serve` is the usual way to run flagsvc; this module is for running it under any
WSGI server. Under gunicorn, `gunicorn -c python:flagsvc.gunicorn_conf wsgi:app` adds what
`flagsvc serve` runs around the app (the ingestion writer process, the background WAL
checkpointer, the frozen GC generation); without it each worker writes its own batches and
SQLite checkpoints inside commits — correct, but slower. On a new database the first
worker to start creates the default project and prints its api token to stderr; a
generated secret key goes to `<database>.secret_key` (mode 0600), never into the log.
"""

from flagsvc.app import create_app, ensure_default_project
from flagsvc.cli import announce_default_project

app = create_app()
_created = ensure_default_project(app.extensions["flagsvc"].store, app.config["FLAGSVC"])
if _created is not None:
    announce_default_project(_created, app.config["FLAGSVC"])
