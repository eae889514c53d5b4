"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

import hmac
import logging
import os

from flask import Blueprint, Response, jsonify, request

from ..store import DatabaseError
from .common import config, service

bp = Blueprint("health", __name__)
log = logging.getLogger("flagsvc.health")

# /readyz is public: it tells the state, not the details (free bytes, a database error's
# text); those go to the log, once per change.
_PUBLIC_MESSAGES = {
    "read_only": "the database is read-only: writes fail",
    "unavailable": "the database is unavailable",
    "disk_full": "the database or disk is full or nearly full: writes fail or soon will",
}
_last_logged: dict[str, str] = {}


def _unavailable(code: str, detail: str) -> tuple[Response, int]:
    if _last_logged.get(code) != detail:
        _last_logged[code] = detail
        log.warning("/readyz: %s (%s)", code, detail)
    return jsonify(status="unavailable", code=code, message=_PUBLIC_MESSAGES[code]), 503


@bp.get("/healthz")
def healthz() -> Response:
    """The process is up."""
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz() -> tuple[Response, int]:
    """The database answers, is migrated, and can be written (store/disk.py): on a full
    disk decide still answers but every ingestion fails, so the service is not ready; nor
    on a read-only PostgreSQL (a standby not yet promoted). The answer names the state
    (`code`), not the details, which are logged."""
    svc = service()
    try:
        svc.store.conn().execute("SELECT count(*) FROM schema_migrations").fetchone()
        read_only = svc.store.read_only()
        if read_only:
            return _unavailable("read_only", str(read_only))
        problem = svc.disk.problem(svc.store)
    except DatabaseError as e:
        return _unavailable("unavailable", str(e))
    if problem:
        return _unavailable("disk_full", problem)
    _last_logged.clear()
    return jsonify(status="ok"), 200


@bp.get("/metrics")
def metrics() -> Response:
    from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest

    if not config("METRICS"):
        return Response("metrics are disabled\n", status=404, mimetype="text/plain")
    token = config("METRICS_TOKEN")
    if token and not _bearer_is(token):
        return Response("a bearer token is required (FLAGSVC_METRICS_TOKEN)\n", status=401,
                        mimetype="text/plain",
                        headers={"WWW-Authenticate": 'Bearer realm="metrics"'})
    registry = REGISTRY
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    return Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST)


def _bearer_is(token: str) -> bool:
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(),
                                                               token.encode())
