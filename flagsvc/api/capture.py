"""Ingestion endpoints (SPEC §3): Segment HTTP Tracking API, PostHog capture, Accoil v2.

Every request: read the body (size limit, gzip, strict JSON → 400/413), authenticate the
project's public api token (401), parse the events (`ingest.formats`; at most
MAX_BATCH_EVENTS → else 413, each at most MAX_EVENT_BYTES), then store the good ones in one
transaction (`Store.ingest`) and answer 200 only after the commit. Bad events are skipped and
listed in `rejected` ([{index, reason, message_id?}]); if every event is bad the answer is
400 with that list in `errors`. Warnings of the store (a 6th group type dropped) are listed
in `warnings`.

Formats, paths, auth, success body:
- Segment HTTP Tracking API: /v1/{identify,group,track,page,screen,alias,batch,import};
  `writeKey` in the body, else the HTTP Basic user name; `{"success": true}`.
- PostHog capture: /batch, /capture, /e, /i/v0/e, /track, /engage (with or without a trailing
  slash); `api_key` / `token` in the body, else in the first event (`token`, `$token`,
  `properties.token` as posthog-js sends it), else `?token=`; `{"status": 1}` (exactly 200:
  posthog treats anything else as a failure).
- Accoil v2: /v2/{identify,group,track}; `Authorization: Basic <token>` (raw or `token:`
  base64), else `writeKey` in the body; `{"success": true}` with 200 (the data is committed,
  so 200 rather than Accoil's 202).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import parse_qs

import orjson
from flask import Blueprint, Response, request
from werkzeug.exceptions import HTTPException

from ..errors import BadRequest, PayloadTooLarge, Unauthorized, error_body
from ..ingest import amplitude, formats, mixpanel, posthog_format, privacy
from ..ingest.model import IngestResult
from ..metrics import EVENTS
from ..store.projects import SECRET_PREFIX
from .body import parse_json, raw_body, read_json
from .common import add_cors, basic_auth_user, config, public_project, service

log = logging.getLogger("flagsvc.capture")

bp = Blueprint("capture", __name__)
bp.after_request(add_cors)

T = TypeVar("T")
_SEGMENT = "identify,group,track,page,screen,alias,batch,import"


@bp.before_request
def _preflight() -> Response | None:
    if request.method == "OPTIONS":
        return Response(status=204)
    return None


def _route(*paths: str, get: bool = False) -> Callable:
    """Register a view on each path with and without a trailing slash (no redirects:
    clients POST to either form)."""
    def register(view: Callable) -> Callable:
        methods = ["GET", "POST", "OPTIONS"] if get else ["POST", "OPTIONS"]
        for path in paths:
            for rule in (path, path + "/"):
                bp.add_url_rule(rule, view_func=view, methods=methods, strict_slashes=False)
        return view
    return register


def _options(project: dict[str, Any], received_at: float) -> formats.Options:
    policy = privacy.policy_of(project.get("private_properties"))
    return formats.Options(
        received_at=received_at,
        max_future_seconds=config("MAX_FUTURE_SECONDS"),
        max_event_bytes=config("MAX_EVENT_BYTES"),
        max_batch_events=config("MAX_BATCH_EVENTS"),
        private=policy,
        salt=service().store.hash_salt(project["id"]) if policy else "")


def _parse(parse: Callable[[], T]) -> T:
    """Run a parser, mapping request-level format errors to 400 / 413."""
    try:
        return parse()
    except formats.TooManyEvents as e:
        raise PayloadTooLarge(str(e), code="too_many_events") from None
    except formats.FormatError as e:
        raise BadRequest(str(e), code="invalid_body") from None


def _store(project: dict[str, Any], parsed: formats.Parsed) -> IngestResult:
    """Store the good calls (one transaction); 400 when there were events and all were bad."""
    if parsed.rejected:
        EVENTS.labels("rejected").inc(len(parsed.rejected))
        log.info("rejected %d of %d events", len(parsed.rejected), parsed.total,
                 extra={"project": project["id"]})
    if not parsed.calls:
        if parsed.rejected:
            n = len(parsed.rejected)
            first = parsed.rejected[0]["reason"]
            raise BadRequest(f"{'the event was' if n == 1 else f'all {n} events were'} "
                             f"rejected: {first}", errors=parsed.rejected, code="invalid_events")
        return IngestResult()
    if not _secret_key_of(project):
        for call in parsed.calls:
            call.public = True
    result = service().store.ingest(project["id"], parsed.calls)
    EVENTS.labels("stored").inc(result.stored)
    if result.duplicates:
        EVENTS.labels("duplicate").inc(result.duplicates)
    if result.dropped:
        EVENTS.labels("dropped_group_reference").inc(result.dropped)
    if result.warnings:
        more = f" (and {result.more_warnings} more)" if result.more_warnings else ""
        log.warning("ingestion warnings: %s%s", "; ".join(result.warnings), more,
                    extra={"project": project["id"]})
    return result


def _secret_key_of(project: dict[str, Any]) -> bool:
    """Whether the request also carries `Authorization: Bearer <the project's secret key>`:
    sent from the app's backend, so it may set parent links under signed groups."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token.startswith(SECRET_PREFIX):
        return False
    owner = service().project_for_token(token, "secret")
    return owner is not None and owner["id"] == project["id"]


def _failure(e: Exception) -> tuple[int, str]:
    """Status and message of any exception a request raised, for the routes that answer in a
    tool's own error shape (Amplitude, Mixpanel): their stock clients read that shape on
    every error — a 503 of a busy database or a 500 included — and fail on flagsvc's."""
    if isinstance(e, HTTPException):
        return e.code or 500, e.description or e.name
    status, body = error_body(e)
    return status, body["message"]


def _reply(base: dict[str, Any], parsed: formats.Parsed, result: IngestResult) -> dict:
    out = dict(base)
    if parsed.rejected:
        out["rejected"] = parsed.rejected
    if result.warnings:
        out["warnings"] = result.warnings
    if result.more_warnings:
        out["more_warnings"] = result.more_warnings  # past limits.MAX_WARNINGS, not listed
    if result.dropped:
        out["dropped"] = result.dropped  # references to a refused group type
    return out


# ------------------------------------------------------------ Segment

@_route(f"/v1/<any({_SEGMENT}):kind>")
def segment(kind: str) -> dict[str, Any]:
    received = time.time()
    body = read_json(request, config("MAX_INGEST_BODY_BYTES"))
    token = body.get("writeKey") if isinstance(body, dict) else None
    project = public_project(token or basic_auth_user())
    parsed = _parse(lambda: formats.parse_segment(body, kind, _options(project, received)))
    return _reply({"success": True}, parsed, _store(project, parsed))


# ------------------------------------------------------------ Accoil v2

@_route("/v2/<any(identify,group,track):kind>")
def accoil(kind: str) -> dict[str, Any]:
    received = time.time()
    body = read_json(request, config("MAX_INGEST_BODY_BYTES"))
    token = basic_auth_user()
    if not token and isinstance(body, dict):
        token = body.get("writeKey") or body.get("api_key")
    project = public_project(token)
    parsed = _parse(lambda: formats.parse_accoil(body, kind, _options(project, received)))
    return _reply({"success": True}, parsed, _store(project, parsed))


# ------------------------------------------------------------ PostHog

@_route("/batch", "/capture", "/e", "/i/v0/e")
def posthog() -> Any:
    received = time.time()
    try:
        body = read_json(request, config("MAX_INGEST_BODY_BYTES"))
    except Exception as e:
        if request.path.rstrip("/") != "/batch":
            raise
        # /batch is Amplitude's Batch API too, and an unread body does not tell whose: an
        # answer both read (Amplitude's numeric `code`, PostHog's `detail`).
        status, message = _failure(e)
        return _amplitude_error(status, message, message=message, detail=message)
    if request.path.rstrip("/") == "/batch" and amplitude.is_amplitude_batch(body):
        return _amplitude_answer(received, lambda: body, None)
    return _posthog_answer(received, body)


def _posthog_answer(received: float, body: Any) -> dict[str, Any]:
    events, _ = _parse(lambda: posthog_format.posthog_events(body))
    token, from_event = posthog_format.posthog_token(body, events)
    token = token or request.args.get("token") or request.args.get("api_key")
    project = public_project(token)
    engage = request.path.rstrip("/").endswith("/engage")
    parsed = _parse(lambda: posthog_format.parse_posthog(
        body, _options(project, received), event_token=token if from_event else None,
        sent_at=request.args.get("_"), default_event="$set" if engage else None))
    return _reply({"status": 1}, parsed, _store(project, parsed))


# ------------------------------------------------------------ Amplitude

def _amplitude_error(status: int, error: str, **extra: Any) -> Response:
    """Amplitude's error shape: the SDKs read `code` and the events_with_* index lists."""
    body = {"code": status, "error": error, **extra}
    return Response(orjson.dumps(body), status=status, mimetype="application/json")


def _amplitude_project(body: Any) -> dict[str, Any] | Response:
    """The project of the body's `api_key`, else Amplitude's own answer: 400
    `Invalid API key: <key>` (both stock SDKs drop the events on exactly that prefix instead
    of re-sending them until they give up) or 400 `missing_field: api_key`."""
    key = body.get("api_key") if isinstance(body, dict) else None
    try:
        return public_project(key)
    except Unauthorized:
        if key is None or key == "":
            return _amplitude_error(400, "Request missing required field",
                                    missing_field="api_key")
        shown = str(key)[:200]
        if shown.startswith(SECRET_PREFIX):  # a secret key sent by mistake is not echoed
            shown = SECRET_PREFIX + "…"
        return _amplitude_error(400, f"Invalid API key: {shown}")


def _amplitude_answer(received: float, body_of: Callable[[], Any],
                      identify: bool | None) -> Response:
    """Parse, store, answer as Amplitude: 200 `{code, events_ingested, ...}`; a batch with bad
    events stores the good ones and answers 400 listing the bad ones' indices, so the SDK
    drops them and re-sends the rest (stored once: `insert_id`)."""
    try:
        body = body_of()
        project = _amplitude_project(body)
        if isinstance(project, Response):
            return project
        opts = _options(project, received)
        if identify is None:
            parsed, ignored = _parse(lambda: amplitude.parse_events(body, opts))
        else:
            items = _parse(lambda: amplitude.identification(body.get("identification")))
            parsed, ignored = _parse(lambda: amplitude.parse_identify(items, identify, opts))
        try:
            result = _store(project, parsed)
        except BadRequest:  # every event bad: the same answer as a partial batch, nothing stored
            result = IngestResult()
    except Exception as e:  # every failure in Amplitude's shape
        return _amplitude_error(*_failure(e))
    extra = _reply({}, parsed, result)
    if ignored:
        extra["ignored_operations"] = ignored
    if parsed.rejected:
        first = parsed.rejected[0]["reason"]
        return _amplitude_error(400, f"{len(parsed.rejected)} of {parsed.total} events were "
                                f"rejected: {first}", events_ingested=result.stored,
                                events_with_invalid_fields={
                                    "event": [r["index"] for r in parsed.rejected]}, **extra)
    answer = {"code": 200, "events_ingested": result.stored + result.duplicates,
              "payload_size_bytes": request.content_length or 0,
              "server_upload_time": int(received * 1000), **extra}
    return Response(orjson.dumps(answer), status=200, mimetype="application/json")


def _amplitude_form() -> Any:
    """/identify and /groupidentify: a form (`api_key`, `identification`) or a JSON body."""
    data = raw_body(request.environ, config("MAX_INGEST_BODY_BYTES"))
    if request.mimetype == "application/x-www-form-urlencoded" or data[:8] == b"api_key=":
        form = parse_qs(data.decode("utf-8", "replace"))
        return {k: v[0] for k, v in form.items()}
    return parse_json(data)


@_route("/2/httpapi")
def amplitude_httpapi() -> Response:
    received = time.time()
    return _amplitude_answer(received, lambda: read_json(request, config("MAX_INGEST_BODY_BYTES")),
                             None)


@_route("/identify", "/groupidentify")
def amplitude_identify() -> Response:
    received = time.time()
    group = request.path.rstrip("/").endswith("groupidentify")
    return _amplitude_answer(received, _amplitude_form, group)


# ------------------------------------------------------------ Mixpanel (and PostHog /track)

def _mixpanel_payload() -> tuple[Any, dict[str, str]]:
    """The decoded `data` (query, form field or whole body) and the form's other fields."""
    fields = {k: v for k, v in request.args.items()}
    raw = raw_body(request.environ, config("MAX_INGEST_BODY_BYTES"), form_data=False)
    if "data" not in fields and raw.strip():
        if request.mimetype == "application/x-www-form-urlencoded" or raw[:5] == b"data=":
            fields.update({k: v[0] for k, v in parse_qs(raw.decode("latin-1")).items()})
            if "data" not in fields:
                raise BadRequest("the form has no data field", code="invalid_body")
        else:
            return _parse(lambda: mixpanel.decode_data(raw)), fields
    if "data" not in fields:
        raise BadRequest("data is required (a query argument, a form field or the body)",
                         code="invalid_body")
    data = fields["data"]
    if request.mimetype == "application/x-www-form-urlencoded" or raw[:5] == b"data=":
        data = data.encode("latin-1").decode("utf-8", "replace")
    return _parse(lambda: mixpanel.decode_data(data)), fields


def _mixpanel_reply(fields: dict[str, str], status: int, error: str | None,
                    **extra: Any) -> Response:
    """Mixpanel's answers: `1` / `0`, or with verbose=1 `{"status": 1, "error": null}`."""
    if fields.get("verbose") in ("1", "true"):
        body = orjson.dumps({"status": 0 if error else 1, "error": error, **extra})
        return Response(body, status=status, mimetype="application/json")
    return Response(b"0" if error else b"1", status=status, mimetype="text/plain")


def _group_keys(project: dict[str, Any]) -> dict[str, str]:
    keys = {t["name"]: t["name"] for t in service().store.group_types(project["id"])}
    keys.update(project.get("mixpanel_group_keys") or {})
    return keys


@_route("/track", "/engage", "/groups", "/import", get=True)
def mixpanel_or_posthog() -> Any:
    received = time.time()
    endpoint = request.path.strip("/").split("/")[-1]
    # Mixpanel's /import is /track for old events, authenticated by a project secret there;
    # here by the project token in each event, as /track (no other power than /track's).
    mixpanel_only = endpoint in ("groups", "import")
    endpoint = "track" if endpoint == "import" else endpoint
    # Until the form is read: the query's verbose, else verbose (the Python client sends it in
    # the form; a JSON answer with status 0 is what it and the verbose Node client read).
    fields: dict[str, str] = {"verbose": request.args.get("verbose", "1")}
    try:
        payload, fields = _mixpanel_payload()
    except Exception as e:  # every failure in Mixpanel's shape
        return _mixpanel_reply(fields, *_failure(e))
    items = payload if isinstance(payload, list) else [payload]
    if not mixpanel_only and not mixpanel.is_mixpanel(items):
        return _posthog_answer(received, payload)  # PostHog's /track, /engage: its errors
    try:
        return _mixpanel_answer(received, payload, endpoint, fields)
    except Exception as e:
        return _mixpanel_reply(fields, *_failure(e))


def _mixpanel_answer(received: float, payload: Any, endpoint: str,
                     fields: dict[str, str]) -> Response:
    items = payload if isinstance(payload, list) else [payload]
    project = public_project(mixpanel.token_of(items))
    opts = _options(project, received)
    parsed, ignored = _parse(lambda: mixpanel.parse(
        mixpanel.records(payload), endpoint, opts, _group_keys(project)))
    try:
        result = _store(project, parsed)
    except BadRequest:  # every record bad: answered below like a partial batch
        result = IngestResult()
    extra = _reply({}, parsed, result)
    if ignored:
        extra["ignored_operations"] = ignored
    if parsed.rejected:
        return _mixpanel_reply(fields, 400, f"{len(parsed.rejected)} of {parsed.total} records "
                               f"were rejected: {parsed.rejected[0]['reason']}", **extra)
    return _mixpanel_reply(fields, 200, None, **extra)
