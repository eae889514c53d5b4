"""Prometheus metrics (multiprocess-safe when PROMETHEUS_MULTIPROC_DIR is set, as
`flagsvc serve` does, so several gunicorn workers report one set of numbers)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

REQUESTS = Counter("flagsvc_http_requests_total", "HTTP requests", ["endpoint", "status"])
LATENCY = Histogram("flagsvc_http_request_seconds", "HTTP request latency", ["endpoint"],
                    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5))
EVENTS = Counter("flagsvc_ingested_events_total", "Events ingested", ["outcome"])
WORKER_HELD = Gauge("flagsvc_worker_held_bytes",
                    "Bytes `flagsvc serve` workers hold for requests still arriving and answers "
                    "not yet taken (FLAGSVC_WORKER_BUFFER_BYTES caps each worker's)",
                    multiprocess_mode="livesum")
