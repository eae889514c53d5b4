"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

import hmac
import os

from flask import Blueprint, Response, jsonify, request

from ..store import DatabaseError
from .common import config, service

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> Response:
    """The process is up."""
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz() -> tuple[Response, int]:
    """The database answers, is migrated, and can be written (store/disk.py): on a full
    disk decide still answers but every ingestion fails, so the service is not ready; nor
    on a read-only PostgreSQL (a standby not yet promoted)."""
    svc = service()
    try:
        svc.store.conn().execute("SELECT count(*) FROM schema_migrations").fetchone()
        read_only = svc.store.read_only()
        if read_only:
            return jsonify(status="unavailable", code="read_only", message=read_only), 503
        problem = svc.disk.problem(svc.store)
    except DatabaseError as e:
        return jsonify(status="unavailable", code="unavailable", message=str(e)), 503
    if problem:
        return jsonify(status="unavailable", code="disk_full", message=problem), 503
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
