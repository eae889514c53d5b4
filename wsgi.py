"""WSGI entry point: `gunicorn wsgi:app` (configuration from FLAGSVC_* variables).

`flagsvc serve` is the usual way to run flagsvc; this module is for running it under any
WSGI server. Under gunicorn, `gunicorn -c python:flagsvc.gunicorn_conf wsgi:app` adds what
`flagsvc serve` runs around the app (the ingestion writer process, the background WAL
checkpointer, the frozen GC generation); without it each worker writes its own batches and
SQLite checkpoints inside commits — correct, but slower. On a new database the first
worker to start creates the default project and prints its tokens to stderr (the secret key
only when it was generated, never one taken from FLAGSVC_SECRET_KEY).
"""

import sys

from flagsvc.app import create_app, ensure_default_project

app = create_app()
_created = ensure_default_project(app.extensions["flagsvc"].store, app.config["FLAGSVC"])
if _created is not None:
    print(f"flagsvc: created the default project; api_token: {_created['api_token']}",
          file=sys.stderr)
    if not app.config["FLAGSVC"].get("SECRET_KEY"):
        print(f"flagsvc: secret_key (admin API, shown only now): {_created['secret_key']}",
              file=sys.stderr)
