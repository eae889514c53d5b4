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

from .. import ofconvention as ofc
from ..engine import FlagResult
from ..errors import APIError
from ..evaluation import evaluate_request
from ..limits import MAX_DECIDE_BODY_BYTES, LimitError
from ..signing import SIGNATURE_HEADER
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


def evaluation_json(r: FlagResult, distinct_id: Any) -> dict[str, Any]:
    """One flag's OFREP answer: success, or the failure a person-bucketed flag gets without
    a targetingKey."""
    meta = ofc.metadata(r, payload_json)
    if ofc.needs_targeting_key(r, distinct_id):
        return {"key": r.key, "errorCode": "TARGETING_KEY_MISSING",
                "errorDetails": "this flag is bucketed by person: the context needs a "
                                "targetingKey", "metadata": meta}
    return {"key": r.key, "value": r.value, "reason": ofc.reason(r),
            "variant": ofc.variant(r), "metadata": meta}


def parse_context(body: Any) -> dict[str, Any]:
    """The request's OFREP context as evaluate_request's arguments."""
    if not isinstance(body, dict):
        raise OfrepError(400, "PARSE_ERROR", "the body must be a JSON object")
    context = body.get("context")
    if context is None:
        context = {}
    if not isinstance(context, dict):
        raise OfrepError(400, "INVALID_CONTEXT", "context must be an object")
    attrs = dict(context)
    try:
        args = ofc.context_arguments(attrs.pop("targetingKey", None), attrs)
    except ofc.InvalidContext as e:
        raise OfrepError(400, "INVALID_CONTEXT", str(e)) from None
    args["signature"] = args["signature"] or request.headers.get(SIGNATURE_HEADER)
    return args


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
        body = read_json(request, min(current_app.config["FLAGSVC"]["MAX_BODY_BYTES"],
                                      MAX_DECIDE_BODY_BYTES))
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
