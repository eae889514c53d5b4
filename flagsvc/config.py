"""Settings as data: defaults, then FLAGSVC_* environment variables, then a test mapping."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Setting:
    name: str
    default: Any
    help: str
    parse: Callable[[str], Any] = str


def _bool(s: str) -> bool:
    return s.strip().lower() in ("1", "true", "yes", "on")


SETTINGS = [
    Setting("DATABASE", "./flagsvc.db", "Path of the SQLite database file."),
    Setting("API_TOKEN", None, "Public api token of the default project created on first start."),
    Setting("SECRET_KEY", None, "Secret key of the default project created on first start."),
    Setting("SECRET_KEY_FILE", None,
            "Where the default project's generated secret key is written (mode 0600): unset, "
            "beside the SQLite database, or flagsvc-<database>.secret_key in the working "
            "directory on PostgreSQL. The Docker image sets /data/flagsvc.secret_key."),
    Setting("SYNCHRONOUS", "FULL",
            "SQLite synchronous mode: FULL (durable on power loss) or NORMAL."),
    Setting("MAX_BODY_BYTES", 5 * 1024 * 1024,
            "Largest request body accepted, after gzip decompression (bytes), on every route "
            "but ingestion (see MAX_INGEST_BODY_BYTES); over it, 413 from the headers.", int),
    Setting("MAX_INGEST_BODY_BYTES", 8 * 1024 * 1024,
            "Largest request body of the ingestion routes (PostHog, Segment, Amplitude, "
            "Mixpanel), after gzip decompression (bytes): posthog-python fills a batch until "
            "it passes 5 MiB and an event may be 900 KiB, so its batches are a little over "
            "5 MiB.", int),
    Setting("HEADER_TIMEOUT", 10.0,
            "Seconds a client has to send a request's headers (`flagsvc serve`): slower "
            "connections are answered 408 and closed before any worker thread sees them.",
            float),
    Setting("BODY_TIMEOUT", 30.0,
            "Seconds a client has to send a request's body once its headers arrived "
            "(`flagsvc serve`; 408 past that).", float),
    Setting("FIRST_BYTE_TIMEOUT", 5.0,
            "Seconds a new connection has to send its first byte (`flagsvc serve`): closed "
            "past that, so idle connections do not hold the worker's connection slots.",
            float),
    Setting("WRITE_TIMEOUT", 30.0,
            "Seconds a client has to take a whole answer once it is rendered (`flagsvc "
            "serve`): the connection is closed past that. Answers are written by the "
            "worker's event loop, never by an app thread.", float),
    Setting("WRITE_BUFFER_BYTES", 8 * 1024 * 1024,
            "Largest answer an app thread renders into memory for the event loop to write "
            "(`flagsvc serve`); a larger one (a big export) is written by its thread, each "
            "piece within FLAGSVC_WRITE_TIMEOUT.", int),
    Setting("WORKER_BUFFER_BYTES", 32 * 1024 * 1024,
            "Most bytes a `flagsvc serve` worker holds for requests still arriving and "
            "answers not yet taken: over it, a request past 16 KiB is answered 503 "
            "(Retry-After: 1) instead of being read further, and an answer its client "
            "does not take at once is dropped with the connection.", int),
    Setting("MAX_CONNECTIONS_PER_ADDRESS", 100,
            "Most connections one client address (an IPv6 /64) may hold to one `flagsvc "
            "serve` worker: past it that address's oldest idle connection is closed (else "
            "its oldest still sending a request after 2 s, 408), or the new one gets 503. "
            "The proxies of FORWARDED_ALLOW_IPS are not capped (behind a proxy every "
            "client has its address); 0: no cap.", int),
    Setting("MAX_EVENT_BYTES", 1024 * 1024,
            "Largest single event in an ingestion batch (bytes).", int),
    Setting("MAX_BATCH_EVENTS", 5000, "Most events in one ingestion request.", int),
    Setting("CACHE_SECONDS", 0.5,
            "How long a worker reuses flag definitions and group properties before re-checking; "
            "edits reach every worker within this time.", float),
    Setting("CACHE_SIZE", 100_000, "Most group / person property sets cached per worker.", int),
    Setting("CACHE_PREFILL", 20_000,
            "PostgreSQL: group property sets a worker loads into its cache, in the "
            "background, when it first serves a project (its most recently created groups, "
            "one query): a node that just started then answers decide from memory instead "
            "of one round trip per group and worker; 0: off.", int),
    Setting("CACHE_BYTES", 64 * 1024 * 1024,
            "Most bytes (estimated) of property sets cached per worker (and per stale copy).",
            int),
    Setting("CORS_ORIGINS", "*", "Allowed origins for decide and ingestion (browsers)."),
    Setting("MAX_FUTURE_SECONDS", 86400.0,
            "Events stamped further in the future than this are refused.", float),
    Setting("PREVIEW_SECONDS", 15.0,
            "Longest a flag preview or flag-groups listing scans stored groups (≈ 5 µs each) "
            "before answering with what it scanned (complete: false); `flagsvc serve` lowers "
            "the default to half its --timeout (gunicorn kills a longer request).", float),
    Setting("POSTHOG_JS_ASSETS", None,
            "URL prefix of posthog-js's build files (e.g. "
            "https://cdn.jsdelivr.net/npm/posthog-js@1.449.2/dist): GET /static/<file> "
            "redirects there, so PostHog's copy-paste snippet (it loads "
            "api_host/static/array.js) works; unset, /static/ answers 404."),
    Setting("SESSION_IDLE_SECONDS", 8 * 3600.0,
            "A console session ends after this long without a request (s).", float),
    Setting("SESSION_MAX_SECONDS", 7 * 86400.0,
            "A console session ends this long after sign-in, however active (s).", float),
    Setting("FORWARDED_ALLOW_IPS", "127.0.0.1,::1",
            "Proxy addresses (comma-separated, networks or *) whose X-Forwarded-Proto and "
            "X-Forwarded-For are believed: HTTPS for the console's Secure cookie, the client's "
            "address for its sign-in limits (the nearest X-Forwarded-For address that is no "
            "trusted proxy). `flagsvc serve --forwarded-allow-ips` sets it."),
    Setting("PG_READ_TIMEOUT", 2.0,
            "PostgreSQL: longest a read of the decide path may take, waiting for locks or an "
            "unresponsive server included (statement_timeout, lock_timeout, "
            "tcp_user_timeout); past it decide answers from its caches (s).", float),
    Setting("PG_WRITE_TIMEOUT", 10.0,
            "PostgreSQL: the same deadline for every other statement (writes, admin reads); "
            "past it the request answers 503 (s).", float),
    Setting("PG_POOL_SIZE", 0,
            "PostgreSQL: most connections of each of a worker's two pools (writes, decide "
            "reads); 0: the worker's threads + 1 (`flagsvc serve --threads`; 32 under another "
            "WSGI server).", int),
    Setting("LOG_LEVEL", "INFO", "Log level of the service's JSON logs."),
    Setting("METRICS", True, "Serve Prometheus metrics at /metrics.", _bool),
    Setting("METRICS_TOKEN", None,
            "If set, /metrics answers only requests with `Authorization: Bearer <token>` "
            "(Prometheus: `authorization: {credentials: <token>}`); others get 401."),
    Setting("MIN_FREE_BYTES", 16 * 1024 * 1024,
            "/readyz fails (503 disk_full) when the database's filesystem has less free "
            "space than this; 0 turns the check off.", int),
]


def load_config(overrides: Mapping[str, Any] | None = None,
                environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    env = os.environ if environ is None else environ
    config: dict[str, Any] = {}
    for s in SETTINGS:
        raw = env.get(f"FLAGSVC_{s.name}")
        config[s.name] = s.parse(raw) if raw not in (None, "") else s.default
    if overrides:
        for k, v in overrides.items():
            config[k.removeprefix("FLAGSVC_")] = v
    return config
