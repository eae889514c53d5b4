"""What the admin API's modules share: the `admin` blueprint, request parsing (schema loads
with field-path errors, query strings, bodies), JSON responses, flag lookup by id or key, and
`check_flag`, the validation a flag passes before it is stored or previewed.

The routes live in `admin` (flags, audit), `preview` (blast radius, flag groups, explain) and
`directory` (group types, groups, persons, project settings); `admin` imports the other two,
so registering `admin.bp` registers every admin route.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import Blueprint, Response, jsonify, request
from marshmallow import EXCLUDE, Schema, ValidationError

from ..errors import NotFoundError, ValidationFailed
from ..store import NotFound
from .body import read_object
from .common import config, service

bp = Blueprint("admin", __name__, url_prefix="/api")


def _path(parent: str, key: Any) -> str:
    if isinstance(key, int):
        return f"{parent}[{key}]"
    if key == "_schema":
        return parent or "_schema"
    if key == "":
        return f'{parent}[""]'
    return f"{parent}.{key}" if parent else str(key)


def flatten_errors(messages: Any, parent: str = "", out: dict[str, list[str]] | None = None
                   ) -> dict[str, list[str]]:
    """marshmallow's nested messages -> {"conditions[0].properties[1].operator": [msgs]}."""
    out = {} if out is None else out
    if isinstance(messages, Mapping):
        for k, v in messages.items():
            flatten_errors(v, _path(parent, k), out)
    elif isinstance(messages, list) and all(isinstance(m, str) for m in messages):
        out.setdefault(parent or "_schema", []).extend(messages)
    elif isinstance(messages, list):
        for m in messages:
            flatten_errors(m, parent, out)
    else:
        out.setdefault(parent or "_schema", []).append(str(messages))
    return out


def load(schema: Schema, data: Any, **kwargs: Any) -> dict[str, Any]:
    try:
        return schema.load(data, **kwargs)
    except ValidationError as e:
        raise ValidationFailed("the request has invalid fields",
                               errors=flatten_errors(e.messages)) from None


def query(schema: Schema) -> dict[str, Any]:
    return load(schema, request.args.to_dict(), unknown=EXCLUDE)


def body() -> dict[str, Any]:
    return read_object(request, config("MAX_BODY_BYTES"))


def json_response(data: Any, status: int = 200, etag: int | str | None = None) -> Response:
    resp = jsonify(data)
    resp.status_code = status
    if etag is not None:
        resp.headers["ETag"] = f'"{etag}"'
    return resp


def flag_ref(ref: str) -> int | str:
    """A numeric path segment is a flag id, anything else a key (keys are never all digits;
    an id past SQLite's integers cannot exist, so it is looked up as a key and not found)."""
    return int(ref) if ref.isdigit() and int(ref) <= 2**63 - 1 else ref


def stored_flag(project_id: int, ref: str) -> dict[str, Any]:
    try:
        return service().store.get_flag(project_id, flag_ref(ref))
    except NotFound as e:
        raise NotFoundError(str(e)) from None



def check_flag(project_id: int, defn: dict[str, Any]) -> None:
    """`flagcheck.flag_problems` of the flag as the admin API's 422 (all of them at once)."""
    from ..writes import check_flag as check

    check(service().store, project_id, defn)
