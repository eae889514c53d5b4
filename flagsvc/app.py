"""The Flask application factory."""

from __future__ import annotations

import json
import logging
import sqlite3
import sys
import time
from typing import Any, Mapping

from flask import Flask, Response, g, request
from werkzeug.exceptions import HTTPException

from .config import load_config
from .errors import APIError, Unavailable
from .service import FlagService
from .store import Store

log = logging.getLogger("flagsvc")


class JsonFormatter(logging.Formatter):
    """One JSON object per log line."""

    def format(self, record: logging.LogRecord) -> str:
        out = {"ts": round(record.created, 3), "level": record.levelname, "logger": record.name,
               "message": record.getMessage()}
        for key in ("method", "path", "status", "ms", "project"):
            if hasattr(record, key):
                out[key] = getattr(record, key)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out)


def setup_logging(level: str) -> None:
    root = logging.getLogger("flagsvc")
    if not any(isinstance(h.formatter, JsonFormatter) for h in root.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonFormatter())
        root.addHandler(handler)
        root.propagate = False
    root.setLevel(level.upper())


def ensure_default_project(store: Store, config: Mapping[str, Any]) -> dict[str, Any] | None:
    """On an empty database, create the default project (tokens from config or new);
    returns it with its secret key, or None if projects already exist."""
    if store.list_projects():
        return None
    return store.create_project("default", api_token=config.get("API_TOKEN"),
                                secret_key=config.get("SECRET_KEY"))


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    settings = load_config(config)
    app = Flask(__name__)
    app.config["FLAGSVC"] = settings
    app.config["MAX_CONTENT_LENGTH"] = None  # bodies are limited (after gunzip) in api/body.py
    app.json.sort_keys = False  # type: ignore[attr-defined]
    setup_logging(settings["LOG_LEVEL"])
    store = Store(settings["DATABASE"], synchronous=settings["SYNCHRONOUS"])
    app.extensions["flagsvc"] = FlagService(store, settings["CACHE_SECONDS"], settings["CACHE_SIZE"])

    from .api import admin, capture, decide, definitions, health

    for bp in (health.bp, decide.bp, capture.bp, definitions.bp, admin.bp):
        app.register_blueprint(bp)

    from .metrics import LATENCY, REQUESTS

    @app.before_request
    def _start() -> None:
        g.started = time.perf_counter()

    children: dict[tuple[str, int], tuple[Any, Any]] = {}  # labelled metrics, looked up once

    @app.after_request
    def _record(response: Response) -> Response:
        endpoint = request.url_rule.rule if request.url_rule else "unmatched"
        elapsed = time.perf_counter() - g.get("started", time.perf_counter())
        status = response.status_code
        metric = children.get((endpoint, status))
        if metric is None:
            metric = children[(endpoint, status)] = (REQUESTS.labels(endpoint, str(status)),
                                                     LATENCY.labels(endpoint))
        metric[0].inc()
        metric[1].observe(elapsed)
        if response.status_code >= 500:
            log.error("request failed", extra={"method": request.method, "path": request.path,
                                               "status": response.status_code,
                                               "ms": round(elapsed * 1000, 2)})
        return response

    @app.errorhandler(APIError)
    def _api_error(e: APIError) -> tuple[Response, int]:
        return Response(json.dumps(e.body()), mimetype="application/json"), e.status

    @app.errorhandler(sqlite3.OperationalError)
    def _db_error(e: sqlite3.OperationalError) -> tuple[Response, int]:
        log.warning("database unavailable: %s", e)
        err = Unavailable(f"the database is unavailable, retry: {e}")
        resp = Response(json.dumps(err.body()), mimetype="application/json")
        return resp, err.status

    @app.errorhandler(HTTPException)
    def _http_error(e: HTTPException) -> tuple[Response, int]:
        code = (e.name or "error").lower().replace(" ", "_")
        body = {"code": code, "message": e.description, "detail": e.description}
        return Response(json.dumps(body), mimetype="application/json"), e.code or 500

    @app.errorhandler(Exception)
    def _unexpected(e: Exception) -> tuple[Response, int]:
        log.exception("unexpected error")
        body = {"code": "internal_error", "message": "internal error", "detail": "internal error"}
        return Response(json.dumps(body), mimetype="application/json"), 500

    return app
