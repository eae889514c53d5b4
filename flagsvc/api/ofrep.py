"""OFREP, the OpenFeature Remote Evaluation Protocol (SPEC §5.2): single and bulk evaluation,
so any stock OFREP provider (Python, JS server and web, Go, Java ...) decides against flagsvc.

Auth: the public api token (`Authorization: Bearer <api_token>` or `X-API-Key`). Context
convention (one, documented in the README): `targetingKey` -> distinct id; attribute `groups`
{type: key}; attribute `group_properties` {type: {...}}; attribute `$signature` -> the signed
context (SPEC §5, flagsvc.sign_context); every other attribute -> a person property.
Requests go through `evaluate_request`, like decide, so both answer alike.
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson
from flask import Blueprint, Response, current_app, request

from ..engine import FlagResult
from ..engine.compile import PERSON
from ..errors import APIError, Unauthorized
from ..evaluation import evaluate_request
from ..limits import LimitError
from ..signing import SIGNATURE_FIELD, SIGNATURE_HEADER
from .body import read_json
from .common import add_cors, public_project, service
from .decide import payload_json

bp = Blueprint("ofrep", __name__, url_prefix="/ofrep/v1")


@bp.after_request
def _cors(response: Response) -> Response:
    add_cors(response)
    if "Access-Control-Allow-Origin" in response.headers:
        response.headers["Access-Control-Expose-Headers"] = "ETag"
    return response


class OfrepError(Exception):
    """An OFREP error answer: status, `errorCode`, `errorDetails`."""

    def __init__(self, status: int, code: str, details: str) -> None:
        super().__init__(details)
        self.status, self.code, self.details = status, code, details


# flagsvc reasons -> OFREP reasons. A miss of a rollout is the split's doing; a variant
# picked by hash is a split too; a plain condition match is targeting.
_REASONS = {
    "condition_match": "TARGETING_MATCH",
    "out_of_rollout_bound": "SPLIT",
    "no_condition_match": "DEFAULT",
    "no_group_type": "DEFAULT",
    "dependency_off": "DEFAULT",
    "flag_disabled": "DISABLED",
    "error": "ERROR",
}


def ofrep_reason(r: FlagResult) -> str:
    if r.reason == "condition_match" and r.variant is not None:
        return "SPLIT"
    return _REASONS.get(r.reason, "UNKNOWN")


def ofrep_metadata(r: FlagResult) -> dict[str, Any]:
    """Flag metadata (OFREP allows only string, number and boolean values): the flag's id and
    version, flagsvc's own reason code, what it bucketed by, and the payload as a JSON
    string (as PostHog sends it), when the flag is on and has one."""
    meta: dict[str, Any] = {"reasonCode": r.reason}
    if r.flag_id is not None:
        meta["flagId"] = r.flag_id
    if r.version is not None:
        meta["version"] = r.version
    if r.bucket_by is not None:
        meta["bucketBy"] = "person" if r.bucket_by == PERSON else r.bucket_by
    if r.condition_index is not None:
        meta["conditionIndex"] = r.condition_index
    if r.enabled and r.payload is not None:
        meta["payload"] = payload_json(r.payload)
    return meta


def evaluation_json(r: FlagResult, targeting_key: Any) -> dict[str, Any]:
    """One flag's OFREP answer: success, or the failure a person-bucketed flag gets without
    a targetingKey."""
    if r.reason == "no_group_type" and r.bucket_by == PERSON and targeting_key is None:
        return {"key": r.key, "errorCode": "TARGETING_KEY_MISSING",
                "errorDetails": "this flag is bucketed by person: the context needs a "
                                "targetingKey", "metadata": ofrep_metadata(r)}
    variant = r.variant if r.enabled and r.variant is not None else ("on" if r.enabled
                                                                      else "off")
    return {"key": r.key, "value": r.value, "reason": ofrep_reason(r), "variant": variant,
            "metadata": ofrep_metadata(r)}


def parse_context(body: Any) -> dict[str, Any]:
    """The request's OFREP context as evaluate_request's arguments (INVALID_CONTEXT if it
    does not follow the convention)."""
    if not isinstance(body, dict):
        raise OfrepError(400, "PARSE_ERROR", "the body must be a JSON object")
    context = body.get("context", {})
    if context is None:
        context = {}
    if not isinstance(context, dict):
        raise OfrepError(400, "INVALID_CONTEXT", "context must be an object")
    attrs = dict(context)
    targeting_key = attrs.pop("targetingKey", None)
    if targeting_key is not None and not isinstance(targeting_key, (str, int)):
        raise OfrepError(400, "INVALID_CONTEXT", "targetingKey must be a string")
    if targeting_key == "":
        targeting_key = None
    groups = attrs.pop("groups", None)
    if groups is not None and not (isinstance(groups, dict) and all(
            isinstance(v, (str, int)) for v in groups.values())):
        raise OfrepError(400, "INVALID_CONTEXT", "groups must be an object {type: key}")
    group_properties = attrs.pop("group_properties", None)
    if group_properties is not None and not (isinstance(group_properties, dict) and all(
            isinstance(v, dict) for v in group_properties.values())):
        raise OfrepError(400, "INVALID_CONTEXT",
                         "group_properties must be an object {type: {property: value}}")
    signature = attrs.pop(SIGNATURE_FIELD, None) or request.headers.get(SIGNATURE_HEADER)
    return {"distinct_id": targeting_key, "groups": groups,
            "group_properties": group_properties, "person_properties": attrs or None,
            "signature": signature}


def _token() -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return request.headers.get("X-API-Key") or None


def _evaluate(keys: list[str] | None) -> tuple[dict[str, FlagResult], Any]:
    svc = service()
    project = public_project(_token(), svc)
    try:
        body = read_json(request, current_app.config["FLAGSVC"]["MAX_BODY_BYTES"])
    except APIError as e:
        if e.status == 413:
            raise
        raise OfrepError(400, "PARSE_ERROR", e.message) from None
    args = parse_context(body)
    try:
        decision = evaluate_request(svc, project["id"], keys=keys, **args)
    except LimitError as e:
        raise OfrepError(400, "INVALID_CONTEXT", f"{e.field}: {e.message}") from None
    return decision.results, args["distinct_id"]


def _json(status: int, data: Any, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(data), status=status, mimetype="application/json",
                    headers=headers)


@bp.errorhandler(OfrepError)
def _ofrep_error(e: OfrepError) -> Response:
    data: dict[str, Any] = {"errorCode": e.code, "errorDetails": e.details}
    key = (request.view_args or {}).get("key")
    if key is not None:
        data = {"key": key, **data}
    return _json(e.status, data)


@bp.errorhandler(Unauthorized)
def _unauthorized(e: Unauthorized) -> Response:
    return _json(401, {"errorDetails": e.message})


@bp.route("/evaluate/flags/<path:key>", methods=["POST", "OPTIONS"])
def evaluate_flag(key: str) -> Response:
    if request.method == "OPTIONS":
        return Response(status=204)
    results, targeting_key = _evaluate([key])
    r = results.get(key)
    if r is None:
        raise OfrepError(404, "FLAG_NOT_FOUND", f"no flag {key!r} in this project")
    answer = evaluation_json(r, targeting_key)
    if "errorCode" in answer:
        return _json(400, answer)
    return _json(200, answer)


@bp.route("/evaluate/flags", methods=["POST", "OPTIONS"])
def evaluate_flags() -> Response:
    if request.method == "OPTIONS":
        return Response(status=204)
    results, targeting_key = _evaluate(None)
    body = orjson.dumps({"flags": [evaluation_json(r, targeting_key)
                                   for r in results.values()]})
    etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
    if etag in [t.strip() for t in request.headers.get("If-None-Match", "").split(",")]:
        return Response(status=304, headers={"ETag": etag})
    return Response(body, status=200, mimetype="application/json",
                    headers={"ETag": etag, "Cache-Control": "no-cache"})
