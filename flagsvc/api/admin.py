"""Flag admin JSON API (SPEC §7): flags with optimistic concurrency and an audit log, previews
(blast radius), explain, group types, groups, persons and project settings.

Every route authenticates with `Authorization: Bearer <secret_key>` (`admin_project`) and
only ever reads or writes that project. Bodies are shaped by the marshmallow schemas of
`flagsvc.schemas`; what only the engine can judge (operators, regexes, dependency cycles)
is checked with `validate_flag` / `compile_flags` before anything is stored.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Iterator, Mapping
from typing import Any

from flask import Blueprint, Response, jsonify, request
from marshmallow import EXCLUDE, Schema, ValidationError

from .. import schemas as s
from ..engine import Context, Evaluation, FlagResult, compile_flags, explain, validate_flag
from ..errors import (
    BadRequest,
    ConflictError,
    NotFoundError,
    PreconditionRequired,
    ValidationFailed,
)
from ..service import make_context
from ..store import Conflict, LimitExceeded, NotFound
from ..ingest import privacy
from ..store.projects import MAX_GROUP_TYPES
from . import openapi
from .body import read_object
from .common import admin_project, config, service

bp = Blueprint("admin", __name__, url_prefix="/api")
bp.add_url_rule("/openapi.json", "openapi", openapi.serve, methods=["GET"])

SAMPLE_SIZE = 10
FLAG = s.FlagSchema()


class StaleVersion(ConflictError):
    """The flag changed since the client read it; the body carries the current version."""

    def __init__(self, message: str, current_version: int | None) -> None:
        super().__init__(message, errors={"version": [message]})
        self.current_version = current_version

    def body(self) -> dict[str, Any]:
        return {**super().body(), "current_version": self.current_version}


# ---------------------------------------------------------------- helpers


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
        raise ValidationFailed("the request has invalid fields", errors=flatten_errors(e.messages)) from None


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
    """A numeric path segment is a flag id, anything else a key (keys are never all digits)."""
    return int(ref) if ref.isdigit() else ref


def stored_flag(project_id: int, ref: str) -> dict[str, Any]:
    try:
        return service().store.get_flag(project_id, flag_ref(ref))
    except NotFound as e:
        raise NotFoundError(str(e)) from None


def definition(flag: Mapping[str, Any]) -> dict[str, Any]:
    """The rules of a stored flag, without its bookkeeping columns."""
    return {k: v for k, v in flag.items() if k not in s.FLAG_READ_ONLY and k != "version"}


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
    payload keys, unknown dependencies, dependency cycles, a 6th group type. 422 with all of them."""
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
            if f.get("type") == "flag" and f.get("key") not in known and f.get("key") != defn["key"]:
                errors.setdefault(f"{where}.key", []).append(
                    f"depends on flag {f.get('key')!r}, which does not exist")
            operator = str(f.get("operator") or "exact").lower()
            if (f.get("type", "person") != "flag" and f.get("key") in hashed
                    and operator not in privacy.EQUALITY_OPERATORS | {"is_set", "is_not_set"}):
                errors.setdefault(f"{where}.operator", []).append(
                    f"{f.get('key')!r} is a private property stored as a keyed hash: only "
                    "exact, is_not, is_set and is_not_set can target it")
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
                f"{MAX_GROUP_TYPES} and this one has {len(existing)} ({', '.join(sorted(existing))})")
    if errors:
        raise ValidationFailed("the flag is not valid", errors=errors)


def ensure_group_types(project_id: int, defn: Mapping[str, Any]) -> None:
    store = service().store
    existing = {t["name"] for t in store.group_types(project_id)}
    for name, where in referenced_group_types(defn).items():
        if name in existing:
            continue
        try:
            store.create_group_type(project_id, name)
        except (LimitExceeded, ValueError) as e:
            raise ValidationFailed(str(e), errors={where: [str(e)]}) from None


def expected_version(body_version: int | None) -> int:
    """The version the client read: `version` in the body or `If-Match` ("3", 3, W/"3")."""
    header = request.headers.get("If-Match")
    from_header = None
    if header is not None:
        raw = header.strip().removeprefix("W/").strip().strip('"')
        if not raw.isdigit():
            raise BadRequest(f"If-Match must be the flag's version number, not {header!r}",
                             code="invalid_if_match")
        from_header = int(raw)
    if body_version is None and from_header is None:
        raise PreconditionRequired(
            "send the version you read (\"version\" in the body or an If-Match header) so "
            "concurrent edits are not lost")
    if body_version is not None and from_header is not None and body_version != from_header:
        raise BadRequest(f"version {body_version} in the body and If-Match {from_header} disagree")
    return body_version if body_version is not None else from_header  # type: ignore[return-value]


def _conflict(project_id: int, flag_id: int, e: Conflict) -> StaleVersion:
    try:
        current = service().store.get_flag(project_id, flag_id)["version"]
    except NotFound:
        current = None
    return StaleVersion(str(e), current)


def _written(project_id: int, flag: dict[str, Any], status: int = 200) -> Response:
    service().invalidate(project_id)
    resp = json_response(FLAG.dump(flag), status, etag=flag["version"])
    if status == 201:
        resp.headers["Location"] = f"/api/flags/{flag['id']}"
    return resp


# ---------------------------------------------------------------- flags


@bp.get("/flags")
def list_flags() -> Response:
    project = admin_project()
    args = query(s.FlagListQuerySchema())
    flags = service().store.list_flags(project["id"], include_deleted=args["include_deleted"])
    return json_response({"flags": FLAG.dump(flags, many=True)})


@bp.post("/flags")
def create_flag() -> Response:
    project = admin_project()
    defn = load(s.FlagInputSchema(), body())
    defn.pop("version", None)
    check_flag(project["id"], defn)
    ensure_group_types(project["id"], defn)
    try:
        flag = service().store.create_flag(project["id"], defn)
    except Conflict as e:
        raise ConflictError(str(e), errors={"key": [str(e)]}) from None
    return _written(project["id"], flag, 201)


@bp.get("/flags/<ref>")
def get_flag(ref: str) -> Response:
    project = admin_project()
    flag = stored_flag(project["id"], ref)
    return json_response(FLAG.dump(flag), etag=flag["version"])


@bp.route("/flags/<ref>", methods=["PUT", "PATCH"])
def update_flag(ref: str) -> Response:
    """PUT replaces the rules (omitted fields take their defaults); PATCH changes the fields
    it names. Both need the version the client read; a stale one is a 409."""
    project = admin_project()
    data = body()
    current = stored_flag(project["id"], ref)
    schema = s.FlagInputSchema()
    if request.method == "PATCH":
        changes = load(schema, data, partial=tuple(f for f in schema.fields if f not in data))
    else:
        changes = load(schema, {"key": current["key"], **data})
    version = expected_version(changes.pop("version", None))
    if changes.get("key", current["key"]) != current["key"]:
        raise ValidationFailed("a flag's key cannot be changed",
                               errors={"key": ["a flag's key cannot be changed"]})
    merged = {**definition(current), **changes}
    check_flag(project["id"], merged)
    ensure_group_types(project["id"], merged)
    try:
        flag = service().store.update_flag(project["id"], current["id"], changes, version)
    except Conflict as e:
        raise _conflict(project["id"], current["id"], e) from None
    except NotFound as e:
        raise NotFoundError(str(e)) from None
    return _written(project["id"], flag)


def _set_deleted(ref: str, deleted: bool) -> Response:
    project = admin_project()
    current = stored_flag(project["id"], ref)
    version = None
    if request.headers.get("If-Match") is not None:
        version = expected_version(None)
    try:
        flag = service().store.set_flag_deleted(project["id"], current["id"], deleted, version)
    except Conflict as e:
        raise _conflict(project["id"], current["id"], e) from None
    return _written(project["id"], flag)


@bp.delete("/flags/<ref>")
def delete_flag(ref: str) -> Response:
    """Soft delete: the flag stops evaluating but keeps its key and history."""
    return _set_deleted(ref, True)


@bp.post("/flags/<ref>/restore")
def restore_flag(ref: str) -> Response:
    return _set_deleted(ref, False)


@bp.get("/audit")
def audit() -> Response:
    project = admin_project()
    args = query(s.AuditQuerySchema())
    flag_id = None
    if args.get("flag_id"):
        flag_id = stored_flag(project["id"], args["flag_id"])["id"]
    entries = service().store.audit_log(project["id"], flag_id=flag_id, limit=args["limit"],
                                        before_id=args.get("before_id"))
    more = len(entries) == args["limit"]
    return json_response(s.AuditPageSchema().dump({
        "entries": entries, "next_before_id": entries[-1]["id"] if entries and more else None}))


# ---------------------------------------------------------------- preview / blast radius


class ScanResolver:
    """Stored data for scanning every group of a type: the scanned group's properties come
    with the scan; other lookups (parents, ancestors' properties) go to the store through a
    small per-request cache, so a preview never floods the service's shared cache."""

    def __init__(self, project_id: int, max_entries: int = 50_000) -> None:
        self.store = service().store
        self.project_id = project_id
        self.current: tuple[str, str, dict] | None = None
        self._cache: dict[tuple, Any] = {}
        self._max = max_entries

    def _cached(self, key: tuple, fn: Any, *args: Any) -> Any:
        try:
            return self._cache[key]
        except KeyError:
            pass
        if len(self._cache) >= self._max:
            self._cache.clear()
        value = self._cache[key] = fn(self.project_id, *args)
        return value

    def person_properties(self, distinct_id: str) -> Mapping[str, Any] | None:
        return self._cached(("p", distinct_id), self.store.person_properties, distinct_id)

    def group_properties(self, group_type: str, group_key: str) -> Mapping[str, Any] | None:
        cur = self.current
        if cur is not None and cur[0] == group_type and cur[1] == group_key:
            return cur[2]
        return self._cached(("g", group_type, group_key), self.store.group_properties,
                            group_type, group_key)

    def group_parent(self, group_type: str, group_key: str) -> tuple[str, str] | None:
        cur = self.current
        if cur is not None and cur[0] == group_type and cur[1] == group_key:
            return self.store.group_parent(self.project_id, group_type, group_key)
        return self._cached(("up", group_type, group_key), self.store.group_parent,
                            group_type, group_key)


def compiled_with(project_id: int, defn: Mapping[str, Any]) -> dict[str, Any]:
    """The project's flags compiled with `defn` in place of the stored flag of its key."""
    others = [f for f in service().flag_set(project_id).definitions if f["key"] != defn["key"]]
    return compile_flags([*others, defn])


def scan(project_id: int, defn: Mapping[str, Any]) -> Iterator[tuple[str, FlagResult]]:
    """(group key, result) for every stored group of the flag's bucket_by type, streamed."""
    bucket_by = defn.get("bucket_by") or s.PERSON
    if bucket_by == s.PERSON:
        raise ValidationFailed(
            "preview evaluates a flag against every stored group of its bucket_by type; this "
            "flag is bucketed by $person, which preview does not support",
            errors={"bucket_by": ["preview needs a group type, not $person"]})
    flags = compiled_with(project_id, defn)
    resolver = ScanResolver(project_id)
    now = time.time()
    key = defn["key"]
    for group_key, props in service().store.iter_groups(project_id, bucket_by):
        resolver.current = (bucket_by, group_key, props)
        result = Evaluation(flags, Context(groups={bucket_by: group_key}, now=now), resolver).flag(key)
        if result is not None:
            yield group_key, result


def preview(project_id: int, defn: Mapping[str, Any]) -> dict[str, Any]:
    variants = [v["key"] for v in defn.get("variants") or []]
    counts = {"false": 0, **({v: 0 for v in variants} if variants else {"true": 0})}
    sample: dict[str, list[str]] = {k: [] for k in counts if k != "false"}
    reasons: dict[str, int] = {}
    total = 0
    for group_key, r in scan(project_id, defn):
        total += 1
        reasons[r.reason] = reasons.get(r.reason, 0) + 1
        label = "false" if not r.enabled else (r.variant if r.variant is not None else "true")
        counts[label] = counts.get(label, 0) + 1
        if label != "false":
            keys = sample.setdefault(label, [])
            if len(keys) < SAMPLE_SIZE:
                keys.append(group_key)
    return {"key": defn["key"], "bucket_by": defn.get("bucket_by"), "total": total,
            "enabled": total - counts["false"], "counts": counts, "reasons": reasons,
            "sample": sample}


def draft(project_id: int, data: Any) -> dict[str, Any]:
    """A draft flag validated as if it were saved (nothing is written)."""
    defn = load(s.FlagInputSchema(), data)
    defn.pop("version", None)
    check_flag(project_id, defn)
    return defn


@bp.post("/flags/preview")
def preview_draft() -> Response:
    project = admin_project()
    defn = draft(project["id"], body())
    return json_response(s.PreviewSchema().dump(preview(project["id"], defn)))


@bp.get("/flags/<ref>/preview")
def preview_saved(ref: str) -> Response:
    project = admin_project()
    flag = stored_flag(project["id"], ref)
    return json_response(s.PreviewSchema().dump(preview(project["id"], flag)))


@bp.get("/flags/<ref>/groups")
def flag_groups(ref: str) -> Response:
    """The groups a saved flag is on (or off) for, a page at a time, with their variant."""
    project = admin_project()
    args = query(s.FlagGroupsQuerySchema())
    flag = stored_flag(project["id"], ref)
    want, limit, offset = args["enabled"], args["limit"], args["offset"]
    page, total = [], 0
    for group_key, r in scan(project["id"], flag):
        if want is not None and r.enabled != want:
            continue
        if offset <= total < offset + limit:
            page.append({"group_key": group_key, "enabled": r.enabled, "variant": r.variant,
                         "value": r.value, "reason": r.reason})
        total += 1
    return json_response(s.FlagGroupsPageSchema().dump({
        "bucket_by": flag.get("bucket_by"), "total": total, "limit": limit, "offset": offset,
        "groups": page}))


# ---------------------------------------------------------------- explain


def _explain(project_id: int, defn: Mapping[str, Any], data: Mapping[str, Any]) -> Response:
    ctx = make_context(data.get("distinct_id"), data.get("groups"), data.get("person_properties"),
                       data.get("group_properties"))
    out = explain(compiled_with(project_id, defn), defn["key"], ctx, service().resolver(project_id))
    return json_response(s.ExplainSchema().dump(out))


@bp.post("/flags/explain")
def explain_draft() -> Response:
    project = admin_project()
    data = load(s.ExplainRequestSchema(), body())
    if "flag" not in data:
        raise ValidationFailed("a draft flag is required",
                               errors={"flag": ["a draft flag is required here"]})
    return _explain(project["id"], draft(project["id"], data["flag"]), data)


@bp.post("/flags/<ref>/explain")
def explain_saved(ref: str) -> Response:
    """Why the flag has its value for a context. A `flag` in the body explains that draft
    (with this flag's key) instead of the saved rules."""
    project = admin_project()
    data = load(s.ExplainRequestSchema(), body())
    saved = stored_flag(project["id"], ref)
    if "flag" in data:
        defn = draft(project["id"], {**data["flag"], "key": saved["key"]})
    else:
        defn = saved
    return _explain(project["id"], defn, data)


# ---------------------------------------------------------------- group types, groups, persons


@bp.get("/group_types")
def list_group_types() -> Response:
    project = admin_project()
    types = service().store.group_types(project["id"])
    return json_response(s.GroupTypeListSchema().dump({"group_types": types}))


@bp.post("/group_types")
def create_group_type() -> Response:
    project = admin_project()
    name = load(s.GroupTypeInputSchema(), body())["name"]
    store = service().store
    existing = {t["name"]: t for t in store.group_types(project["id"])}
    if name in existing:
        return json_response(s.GroupTypeSchema().dump(existing[name]))
    try:
        store.create_group_type(project["id"], name)
    except (LimitExceeded, ValueError) as e:
        raise ValidationFailed(str(e), errors={"name": [str(e)]}) from None
    created = next(t for t in store.group_types(project["id"]) if t["name"] == name)
    return json_response(s.GroupTypeSchema().dump(created), 201)


def _property_filters() -> dict[str, Any]:
    """`properties.<key>=<value>` query parameters. A value that reads as a JSON number or
    boolean matches that type; quote it ("5") to match the string."""
    out: dict[str, Any] = {}
    for name, raw in request.args.items():
        if not name.startswith("properties.") or len(name) == len("properties."):
            continue
        try:
            parsed = json.loads(raw)
        except ValueError:
            parsed = raw
        ok = isinstance(parsed, (bool, int, float, str)) and not (
            isinstance(parsed, float) and math.isnan(parsed))
        out[name[len("properties."):]] = parsed if ok else raw
    return out


@bp.get("/groups")
def list_groups() -> Response:
    project = admin_project()
    args = query(s.GroupQuerySchema())
    rows, total = service().store.list_groups(
        project["id"], group_type=args.get("group_type"), properties=_property_filters(),
        search=args.get("search"), limit=args["limit"], offset=args["offset"])
    return json_response(s.GroupPageSchema().dump({"groups": rows, "total": total,
                                                   "limit": args["limit"], "offset": args["offset"]}))


@bp.get("/groups/<group_type>/<path:group_key>")
def get_group(group_type: str, group_key: str) -> Response:
    """A group's profile: properties, parent, children, members, recent events."""
    project = admin_project()
    try:
        group = service().store.get_group(project["id"], group_type, group_key)
    except NotFound as e:
        raise NotFoundError(str(e)) from None
    return json_response(s.GroupProfileSchema().dump(group))


@bp.get("/persons")
def list_persons() -> Response:
    project = admin_project()
    args = query(s.PageQuerySchema())
    rows, total = service().store.list_persons(project["id"], limit=args["limit"],
                                               offset=args["offset"])
    return json_response(s.PersonPageSchema().dump({"persons": rows, "total": total,
                                                    "limit": args["limit"], "offset": args["offset"]}))


@bp.get("/persons/<path:distinct_id>")
def get_person(distinct_id: str) -> Response:
    project = admin_project()
    try:
        person = service().store.get_person(project["id"], distinct_id)
    except NotFound as e:
        raise NotFoundError(str(e)) from None
    person["distinct_id"] = distinct_id
    return json_response(s.PersonSchema().dump(person))


# ---------------------------------------------------------------- project


@bp.get("/project")
def get_project() -> Response:
    project = admin_project()
    fresh = service().store.get_project(project["id"])
    return json_response(s.ProjectSchema().dump(fresh))


@bp.patch("/project")
def update_project() -> Response:
    """Change settings. `private_properties` replaces the whole map."""
    project = admin_project()
    changes = load(s.ProjectPatchSchema(), body())
    store = service().store
    if "default_group_type" in changes:
        names = {t["name"] for t in store.group_types(project["id"])}
        if changes["default_group_type"] not in names:
            try:
                store.create_group_type(project["id"], changes["default_group_type"])
            except (LimitExceeded, ValueError) as e:
                raise ValidationFailed(str(e), errors={"default_group_type": [str(e)]}) from None
    updated = store.update_project(project["id"], **changes)
    return json_response(s.ProjectSchema().dump(updated))
