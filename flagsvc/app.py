"""The Flask application factory."""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

from flask import Flask, Request, Response, current_app, request
from werkzeug.exceptions import HTTPException
from werkzeug.http import HTTP_STATUS_CODES

from .config import load_config
from .errors import APIError, error_response
from .http_limits import BodyLimits
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
    returns it with its secret key, or None if projects already exist. Atomic: of several
    processes starting at once on a new database, exactly one creates it."""
    from .writes import Uncached, create_project

    if store.list_projects():
        return None
    return create_project(Uncached(store), "default", api_token=config.get("API_TOKEN"),
                          secret_key=config.get("SECRET_KEY"), only_if_none=True)


class _Flask(Flask):
    """Flask without the per-call coroutine check: flagsvc has no async views or hooks, and
    `ensure_sync` inspects every view and hook on every request (≈ 2 µs each)."""

    def ensure_sync(self, func: Any) -> Any:
        return func


class _Request(Request):
    """Flask's request, also leaving the matched URL rule in the WSGI environ, where the
    metrics middleware finds it after Flask has torn the request down."""

    @property  # type: ignore[override]
    def url_rule(self) -> Any:
        return self.environ.get("flagsvc.url_rule")

    @url_rule.setter
    def url_rule(self, rule: Any) -> None:
        self.environ["flagsvc.url_rule"] = rule

    @property
    def max_content_length(self) -> int | None:
        """The body limit of this route (http_limits.py), as Werkzeug's form and stream
        readers check it: a second line behind `flagsvc serve`'s worker, which refuses an
        over-limit Content-Length before any thread sees it."""
        limits = current_app.extensions.get("flagsvc.body_limits")
        return limits.for_path(self.path) if limits is not None else None

    @max_content_length.setter
    def max_content_length(self, value: int | None) -> None:
        pass  # the table decides


# Werkzeug writes reason phrases in capitals ("400 BAD REQUEST"): the standard ones instead.
_STANDARD_STATUS = {f"{code} {phrase.upper()}": f"{code} {phrase}"
                    for code, phrase in HTTP_STATUS_CODES.items()}


class _Instrumented:
    """WSGI middleware: request count and latency per route, and a log line for 5xx.
    (Middleware rather than Flask hooks: it runs once per request, outside Flask's hook
    dispatch, which matters on the decide path.)"""

    def __init__(self, app: Flask, wsgi_app: Any) -> None:
        from .metrics import LATENCY, REQUESTS

        self.app = app
        self.wsgi_app = wsgi_app
        self.requests, self.latency = REQUESTS, LATENCY
        self.children: dict[tuple[str, int], tuple[Any, Any]] = {}  # labelled, looked up once

    @staticmethod
    def _rule(environ: dict[str, Any]) -> str:
        rule = environ.get("flagsvc.url_rule")
        return rule.rule if rule is not None else "unmatched"

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        started = time.perf_counter()
        status_code = [500]

        def recording_start_response(status: str, headers: Any, exc_info: Any = None) -> Any:
            status_code[0] = int(status[:3])
            return start_response(_STANDARD_STATUS.get(status, status), headers, exc_info)

        try:
            return self.wsgi_app(environ, recording_start_response)
        finally:
            elapsed = time.perf_counter() - started
            endpoint = self._rule(environ)
            status = status_code[0]
            metric = self.children.get((endpoint, status))
            if metric is None:
                metric = self.children[(endpoint, status)] = (
                    self.requests.labels(endpoint, str(status)), self.latency.labels(endpoint))
            metric[0].inc()
            metric[1].observe(elapsed)
            if status >= 500:
                log.error("request failed", extra={
                    "method": environ.get("REQUEST_METHOD"), "path": environ.get("PATH_INFO"),
                    "status": status, "ms": round(elapsed * 1000, 2)})


class _Routing:
    """WSGI: POST /flags and /decide go straight to the decide handler (api/decide.py:
    `Decide`); everything else to Flask. The matched Flask rule is still left in the
    environ, so metrics label these requests as before."""

    def __init__(self, app: Flask, flask_wsgi: Any) -> None:
        from .api.decide import Decide

        self.flask_wsgi = flask_wsgi
        self.decide = Decide(app.extensions["flagsvc"], app.config["FLAGSVC"])
        self.rules = {r.rule: r for r in app.url_map.iter_rules() if r.rule in Decide.PATHS}

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        rule = self.rules.get(environ.get("PATH_INFO", ""))
        if rule is None or environ.get("REQUEST_METHOD") != "POST":
            return self.flask_wsgi(environ, start_response)
        environ["flagsvc.url_rule"] = rule
        status, headers, body = self.decide(environ)
        start_response(_STATUS_LINES[status], headers)
        return [body]


_STATUS_LINES = {s.value: f"{s.value} {s.phrase}" for s in HTTPStatus}


def open_store(settings: Mapping[str, Any], migrate: bool = True,
               threads: int | None = None) -> Store:
    """The app's store. A worker needs no database to boot: `flagsvc serve` (and
    gunicorn_conf's on_starting) migrated in the master before forking (`migrate=False`),
    and where the app migrates itself (tests, `gunicorn wsgi:app`), an unreachable or
    read-only database is logged and the worker starts degraded -- decide from its caches,
    writes 503, /readyz 503 -- and recovers by itself when the database is back. (A worker
    that exited at boot made gunicorn's master give up: "Worker failed to boot".)"""
    from .store import DatabaseUnavailable, is_postgres

    database = settings["DATABASE"]
    kwargs: dict[str, Any] = {}
    if is_postgres(database):
        kwargs = {"pool_size": settings["PG_POOL_SIZE"] or (threads + 1 if threads else 32),
                  "statement_timeout": settings["PG_WRITE_TIMEOUT"],
                  "read_statement_timeout": settings["PG_READ_TIMEOUT"]}
    store = Store(database, synchronous=settings["SYNCHRONOUS"], migrate_now=False, **kwargs)
    if migrate:
        try:
            store.migrate()
        except DatabaseUnavailable as e:
            log.warning("database unavailable at start (%s): serving degraded until it is "
                        "back", str(e).strip().splitlines()[0] if str(e).strip() else e)
        finally:
            store.release()  # the boot thread serves no request: no connection kept
    return store


def create_app(config: Mapping[str, Any] | None = None, migrate: bool = True,
               threads: int | None = None) -> Flask:
    settings = load_config(config)
    app = _Flask(__name__, static_folder=None)  # /static/ is posthog-js's (remote_config.py)
    app.request_class = _Request
    app.config["FLAGSVC"] = settings
    # Bodies are limited per route (http_limits.py; after gunzip in api/body.py), also for
    # Werkzeug's readers (_Request.max_content_length); console forms are a few fields.
    app.extensions["flagsvc.body_limits"] = BodyLimits(settings)
    app.config["MAX_CONTENT_LENGTH"] = app.extensions["flagsvc.body_limits"].largest
    app.config["MAX_FORM_MEMORY_SIZE"] = 64 * 1024  # one form field
    app.config["MAX_FORM_PARTS"] = 100
    app.json.sort_keys = False  # type: ignore[attr-defined]
    setup_logging(settings["LOG_LEVEL"])
    store = open_store(settings, migrate, threads)
    app.extensions["flagsvc"] = FlagService(store, settings["CACHE_SECONDS"],
                                            settings["CACHE_SIZE"], settings["MIN_FREE_BYTES"],
                                            cache_bytes=settings["CACHE_BYTES"],
                                            # PostgreSQL only: a cold group read there
                                            # is a round trip; on SQLite a local indexed
                                            # read, not worth a thread racing close()
                                            prefill=settings["CACHE_PREFILL"]
                                            if store.dialect == "postgresql" else 0)

    from .api import admin, capture, decide, definitions, health, ofrep, remote_config

    for bp in (health.bp, decide.bp, capture.bp, definitions.bp, remote_config.bp, ofrep.bp,
               admin.bp):
        app.register_blueprint(bp)

    from . import console

    console.register(app)

    app.wsgi_app = _Instrumented(app, _Routing(app, app.wsgi_app))  # type: ignore[method-assign]

    @app.errorhandler(APIError)
    @app.errorhandler(Exception)
    def _error(e: Exception) -> Response:
        app.extensions["flagsvc"].disk.saw(e)  # a write that failed on a full disk: /readyz
        status, body = error_response(e)
        return Response(body, status=status, mimetype="application/json")

    @app.errorhandler(HTTPException)
    def _http_error(e: HTTPException) -> Any:
        if request.path.startswith("/ui/"):  # a console address nothing answers: a page
            return console.error_page(e)
        code = (e.name or "error").lower().replace(" ", "_")
        body = {"code": code, "message": e.description, "detail": e.description}
        response = Response(json.dumps(body), mimetype="application/json")
        # keep what the exception says beyond its body: a 405's Allow, a 401's challenge
        for name, value in e.get_headers():
            if name.lower() != "content-type":
                response.headers[name] = value
        return response, e.code or 500

    return app
