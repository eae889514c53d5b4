"""What the admin API's modules share: the `admin` blueprint, request parsing (schema loads
with field-path errors, query strings, bodies), JSON responses, flag lookup by id or key, and
`check_flag`, the validation a flag passes before it is stored or previewed.

The routes live in `admin` (flags, audit), `preview` (blast radius, flag groups, explain) and
`directory` (group types, groups, persons, project settings); `admin` imports the other two,
so registering `admin.bp` registers every admin route.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from flask import Blueprint, Response, jsonify, request
from marshmallow import EXCLUDE, Schema, ValidationError

from .. import schemas as s
from ..engine import compile_flags, validate_flag
from ..errors import NotFoundError, ValidationFailed
from ..ingest import privacy
from ..store import NotFound
from ..store.projects import MAX_GROUP_TYPES
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



_PROBLEM_PATH = re.compile(r"^([a-z_]+(?:\[\d+\]|\.[a-z_]+)*)[:\s]")


def _problem_errors(problems: list[str]) -> dict[str, list[str]]:
    """Engine problems ("conditions[0].properties[1]: unknown operator 'x'") keyed by field."""
    out: dict[str, list[str]] = {}
    for p in problems:
        m = _PROBLEM_PATH.match(p)
        if m is None:
            out.setdefault("_schema", []).append(p)
            continue
        rest = p[len(m.group(1)):]
        out.setdefault(m.group(1), []).append(rest[1:].strip() if rest.startswith(":") else p)
    return out


def referenced_group_types(defn: Mapping[str, Any]) -> dict[str, str]:
    """Group type -> the first field naming it (bucket_by, conditions' bucket_by, group filters)."""
    found: dict[str, str] = {}
    if defn.get("bucket_by") and defn["bucket_by"] != s.PERSON:
        found.setdefault(defn["bucket_by"], "bucket_by")
    for i, cond in enumerate(defn.get("conditions") or []):
        if cond.get("bucket_by") and cond["bucket_by"] != s.PERSON:
            found.setdefault(cond["bucket_by"], f"conditions[{i}].bucket_by")
        for j, f in enumerate(cond.get("properties") or []):
            if f.get("type") == "group" and f.get("group_type"):
                found.setdefault(f["group_type"], f"conditions[{i}].properties[{j}].group_type")
    return found


def check_flag(project_id: int, defn: dict[str, Any]) -> None:
    """Everything beyond the schema's shape that would make the flag unusable: engine problems,
    payload keys, unknown dependencies, dependency cycles, a 6th group type. 422 with all of
    them."""
    errors = _problem_errors(validate_flag(defn))
    variant_keys = {v["key"] for v in defn.get("variants") or []}
    for k in defn.get("payloads") or {}:
        if k != "true" and k not in variant_keys:
            errors.setdefault(f"payloads.{k}", []).append(
                f"payload key {k!r} is neither a variant of the flag nor \"true\"")
    others = [f for f in service().store.list_flags(project_id) if f["key"] != defn["key"]]
    known = {f["key"] for f in others}
    project = service().store.get_project(project_id) or {}
    hashed = privacy.hashed_keys(privacy.policy_of(project.get("private_properties")))
    for i, cond in enumerate(defn.get("conditions") or []):
        for j, f in enumerate(cond.get("properties") or []):
            where = f"conditions[{i}].properties[{j}]"
            if (f.get("type") == "flag" and f.get("key") not in known
                    and f.get("key") != defn["key"]):
                errors.setdefault(f"{where}.key", []).append(
                    f"depends on flag {f.get('key')!r}, which does not exist")
    for where, message in privacy.hashed_key_problems(defn, hashed).items():
        errors.setdefault(where, []).append(message)
    if not errors:
        compiled = compile_flags([*others, defn]).get(defn["key"])
        if compiled is not None and compiled.error:
            errors.setdefault("conditions", []).append(compiled.error)
    existing = {t["name"] for t in service().store.group_types(project_id)}
    new = {t: where for t, where in referenced_group_types(defn).items() if t not in existing}
    if len(existing) + len(new) > MAX_GROUP_TYPES:
        for t, where in new.items():
            errors.setdefault(where, []).append(
                f"group type {t!r} would be a new group type, but a project has at most "
                f"{MAX_GROUP_TYPES} and this one has {len(existing)} "
                f"({', '.join(sorted(existing))})")
    if errors:
        raise ValidationFailed("the flag is not valid", errors=errors)

