"""WSGI entry point: `gunicorn wsgi:app` (configuration from FLAGSVC_* variables)."""

from flagsvc.app import create_app, ensure_default_project

app = create_app()
ensure_default_project(app.extensions["flagsvc"].store, app.config["FLAGSVC"])
