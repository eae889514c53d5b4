"""Admin API, the project's directory and settings: group types, groups (list, search,
profile), persons, and project settings.
"""

from __future__ import annotations

import json
import math
from typing import Any

from flask import Response, request

from .. import schemas as s
from ..errors import NotFoundError, ValidationFailed
from ..ingest import privacy
from ..store import LimitExceeded, NotFound
from .adminlib import body, bp, json_response, load, query
from .common import admin_project, service

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
            isinstance(parsed, float) and math.isnan(parsed)) and not (
            isinstance(parsed, int) and not -2**63 <= parsed < 2**63)  # past SQLite: text
        out[name[len("properties."):]] = parsed if ok else raw
    return out


@bp.get("/groups")
def list_groups() -> Response:
    project = admin_project()
    args = query(s.GroupQuerySchema())
    rows, total = service().store.list_groups(
        project["id"], group_type=args.get("group_type"), properties=_property_filters(),
        search=args.get("search"), limit=args["limit"], offset=args["offset"])
    return json_response(s.GroupPageSchema().dump({
        "groups": rows, "total": total, "limit": args["limit"], "offset": args["offset"]}))


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
    return json_response(s.PersonPageSchema().dump({
        "persons": rows, "total": total, "limit": args["limit"], "offset": args["offset"]}))


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
    if "private_properties" in changes:
        keys = privacy.hashed_keys(privacy.policy_of(changes["private_properties"]))
        broken = {f"flags.{f['key']}.{where}": [message]
                  for f in store.list_flags(project["id"])
                  for where, message in privacy.hashed_key_problems(f, keys).items()}
        if broken:
            raise ValidationFailed(
                "these flags could no longer match once those properties are stored as keyed "
                "hashes; change them first", errors=broken)
    # A new policy also rewrites what is already stored (Store.update_project).
    updated = store.update_project(project["id"], **changes)
    return json_response(s.ProjectSchema().dump(updated))
