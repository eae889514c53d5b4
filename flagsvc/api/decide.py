"""The decide endpoint, wire-compatible with PostHog's /flags and /decide (SPEC §5)."""

from __future__ import annotations

import os
import time
from typing import Any

import orjson
from flask import Blueprint, Response, current_app, request

from ..contexts import IGNORED_DESCRIPTIONS
from ..engine import FlagResult
from ..errors import BadRequest, error_response
from ..evaluation import Decision, evaluate_request
from ..limits import MAX_DECIDE_BODY_BYTES, LimitError, check_flag_keys
from ..service import FlagService
from ..signing import SIGNATURE_FIELD, SIGNATURE_HEADER
from .body import query_arg, read_object
from .common import add_cors, cors_headers, public_project, service

bp = Blueprint("decide", __name__)
bp.after_request(add_cors)

_DESCRIPTIONS = {
    "no_condition_match": "No matching condition set",
    "out_of_rollout_bound": "Out of rollout bound",
    "no_group_type": "No group key for the flag's bucket type",
    "flag_disabled": "Feature flag is disabled",
    "dependency_off": "A flag this flag depends on does not have the required value",
}

# Fields posthog-js reads from a /decide?v=3 answer besides the flags.
_LEGACY_CONFIG = {
    "config": {"enable_collect_everything": False},
    "toolbarParams": {},
    "isAuthenticated": False,
    "supportedCompression": ["gzip", "gzip-js"],
    "sessionRecording": False,
    "capturePerformance": False,
    "autocapture_opt_out": True,
    "siteApps": [],
}


def reason_json(r: FlagResult) -> dict[str, Any]:
    if r.reason == "condition_match":
        desc = f"Matched condition set {(r.condition_index or 0) + 1}"
    elif r.reason == "error":
        # The detail (a compile error, a dependency cycle) is for the admin API's explain,
        # not for every browser that asks for flags.
        desc = "This flag could not be evaluated; see the admin API's explain for why"
    else:
        desc = _DESCRIPTIONS.get(r.reason, r.reason)
    return {"code": r.reason, "condition_index": r.condition_index, "description": desc}


def payload_json(payload: Any) -> str | None:
    """PostHog sends payloads as JSON-encoded strings."""
    if payload is None:
        return None
    return orjson.dumps(payload).decode()


def flag_json(r: FlagResult) -> dict[str, Any]:
    return {
        "key": r.key,
        "enabled": r.enabled,
        "variant": r.variant if r.enabled else None,
        "reason": reason_json(r),
        "metadata": {"id": r.flag_id, "version": r.version,
                     "payload": payload_json(r.payload) if r.enabled else None},
    }


def request_id() -> str:
    """A random UUID-shaped id (uuid4's format; randomness from the os, formatted cheaply)."""
    h = os.urandom(16).hex()
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{h[16:20]}-{h[20:]}"


def limit_error(e: LimitError) -> BadRequest:
    """A request field over its documented limit (flagsvc/limits.py) as a 400 naming it."""
    return BadRequest(str(e), errors={e.field: [e.message]}, code="limit_exceeded")


def render(results: dict[str, FlagResult], wire: dict[tuple, Any],
           groups_ignored: str | None = None) -> dict[str, Any]:
    """The `flags` map. A flag's JSON depends only on its outcome, so each distinct outcome
    is rendered once per flag set (`wire`, dropped with the set when flags change). When the
    request's groups were ignored, `no_group_type` says so."""
    if groups_ignored is not None:
        return {key: _ignored_reason(flag_json(r), groups_ignored)
                if r.reason == "no_group_type" else flag_json(r) for key, r in results.items()}
    out = {}
    for key, r in results.items():
        # (key, enabled, reason, variant, condition_index): within one flag set that is all
        # the JSON depends on (version and payload follow from it; errors render generically).
        sig = r[:5]
        rendered = wire.get(sig)
        if rendered is None:
            rendered = flag_json(r)
            if len(wire) < _MAX_RENDERED:
                wire[sig] = rendered
        out[key] = rendered
    return out


_MAX_RENDERED = 50_000
_SIGNATURE_ENVIRON = "HTTP_" + SIGNATURE_HEADER.upper().replace("-", "_")


def _ignored_reason(rendered: dict[str, Any], why: str) -> dict[str, Any]:
    rendered["reason"]["description"] = (
        f"{rendered['reason']['description']} ({IGNORED_DESCRIPTIONS[why]})")
    return rendered


class Decide:
    """POST /flags and /decide as a plain WSGI handler. It is the hottest path of the
    service (every page view of every app asks it), so app.py routes these requests here
    before Flask: no request context, URL matching or Response object per call. The Flask
    routes below stay for everything else (OPTIONS preflights, 405s, the URL map)."""

    PATHS = ("/flags", "/flags/", "/decide", "/decide/")

    def __init__(self, svc: FlagService, settings: dict[str, Any]) -> None:
        self.svc = svc
        # (the decide limit, checked before the body is parsed; below the ingestion one)
        self.limit = min(settings["MAX_BODY_BYTES"], MAX_DECIDE_BODY_BYTES)
        self.origins = settings["CORS_ORIGINS"]

    def __call__(self, environ: dict[str, Any]) -> tuple[int, list[tuple[str, str]], bytes]:
        """(status, headers, body) of one POST."""
        try:
            status, body = 200, orjson.dumps(self.answer(environ))
        except Exception as e:  # noqa: BLE001 (every error becomes its JSON response)
            status, body = error_response(e)
        headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
        if "HTTP_ORIGIN" in environ:
            headers += cors_headers(environ, self.origins)
        return status, headers, body

    def answer(self, environ: dict[str, Any]) -> dict[str, Any]:
        body = read_object(environ, self.limit)
        decision = self.evaluate(body, environ)
        results, wire, ignored = decision.results, decision.flag_set.wire, decision.groups_ignored
        errors = decision.degraded or any(r.reason == "error" for r in results.values())
        flags_path = environ.get("PATH_INFO", "").startswith("/flags")
        version = query_arg(environ, "v")
        if flags_path or (version if version is not None else "3") not in ("1", "2", "3"):
            out = {
                "flags": render(results, wire, ignored),
                "errorsWhileComputingFlags": errors,
                "requestId": request_id(),
                "evaluatedAt": int(time.time() * 1000),
            }
            if ignored is not None:
                out["groupsIgnored"] = ignored
            if decision.person_ignored is not None:
                out["personIgnored"] = decision.person_ignored
            return out if flags_path else {**out, **_LEGACY_CONFIG}
        legacy = {
            "featureFlags": {k: r.value for k, r in results.items()},
            "featureFlagPayloads": {k: payload_json(r.payload) for k, r in results.items()
                                    if r.enabled and r.payload is not None},
            "errorsWhileComputingFlags": errors,
            "requestId": request_id(),
            **_LEGACY_CONFIG,
        }
        if ignored is not None:
            legacy["groupsIgnored"] = ignored
        if decision.person_ignored is not None:
            legacy["personIgnored"] = decision.person_ignored
        return legacy

    def evaluate(self, body: dict[str, Any], environ: dict[str, Any]) -> Decision:
        token = body.get("api_key") or body.get("token") or query_arg(environ, "token")
        project = public_project(token, self.svc)
        keys = body.get("flag_keys_to_evaluate")
        if keys is not None and (
                not isinstance(keys, list) or not all(isinstance(k, str) for k in keys)):
            raise BadRequest("flag_keys_to_evaluate must be a list of flag keys")
        for name in ("groups", "person_properties", "group_properties"):
            if body.get(name) is not None and not isinstance(body[name], dict):
                raise BadRequest(f"{name} must be an object")
        did = body.get("distinct_id")
        if did is not None and not isinstance(did, (str, int)):
            raise BadRequest("distinct_id must be a string")
        signature = body.get(SIGNATURE_FIELD) or environ.get(_SIGNATURE_ENVIRON)
        try:
            check_flag_keys(keys)
            return evaluate_request(self.svc, project["id"], did, body.get("groups"),
                                    body.get("person_properties"), body.get("group_properties"),
                                    signature, keys)
        except LimitError as e:
            raise limit_error(e) from None


def _post() -> Response:
    """The same answer when a POST reaches Flask (an app without app.py's routing)."""
    status, headers, body = Decide(service(), current_app.config["FLAGSVC"])(request.environ)
    return Response(body, status=status, headers=headers)


@bp.route("/flags", methods=["POST", "OPTIONS"], strict_slashes=False)
@bp.route("/flags/", methods=["POST", "OPTIONS"])
def flags() -> Response:
    return Response(status=204) if request.method == "OPTIONS" else _post()


@bp.route("/decide", methods=["POST", "OPTIONS"], strict_slashes=False)
@bp.route("/decide/", methods=["POST", "OPTIONS"])
def decide() -> Response:
    return Response(status=204) if request.method == "OPTIONS" else _post()
