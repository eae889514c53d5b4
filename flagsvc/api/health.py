"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

import os

from flask import Blueprint, Response, jsonify

from ..store import DatabaseError
from .common import config, service

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> Response:
    """The process is up."""
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz() -> tuple[Response, int]:
    """The database answers and is migrated."""
    try:
        service().store.conn().execute("SELECT count(*) FROM schema_migrations").fetchone()
    except DatabaseError as e:
        return jsonify(status="unavailable", code="unavailable", message=str(e)), 503
    return jsonify(status="ok"), 200


@bp.get("/metrics")
def metrics() -> Response:
    from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest

    if not config("METRICS"):
        return Response("metrics are disabled\n", status=404, mimetype="text/plain")
    registry = REGISTRY
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    return Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST)
