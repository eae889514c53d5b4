"""Admin API, the project's directory and settings: group types, groups (list, search,
profile), persons, and project settings.
"""

from __future__ import annotations

import json
import math
import time
from typing import Any

from flask import Response, request

from .. import schemas as s
from .. import writes
from ..errors import NotFoundError
from ..store import NotFound
from .adminlib import body, bp, json_response, load, query
from .common import actor, admin_project, service

# ---------------------------------------------------------------- group types, groups, persons


@bp.get("/group_types")
def list_group_types() -> Response:
    project = admin_project("read")
    types = service().store.group_types(project["id"])
    return json_response(s.GroupTypeListSchema().dump({"group_types": types}))


@bp.post("/group_types")
def create_group_type() -> Response:
    project = admin_project()
    name = load(s.GroupTypeInputSchema(), body())["name"]
    group_type, created = writes.create_group_type(service(), project["id"], name, actor())
    return json_response(s.GroupTypeSchema().dump(group_type), 201 if created else 200)


@bp.patch("/group_types/<group_type>")
def rename_group_type(group_type: str) -> Response:
    """Rename an unused group type (no flag names it); its groups follow."""
    project = admin_project()
    if group_type not in {t["name"] for t in service().store.group_types(project["id"])}:
        raise NotFoundError(f"group type {group_type!r} does not exist")
    new_name = load(s.GroupTypeInputSchema(), body())["name"]
    renamed = writes.rename_group_type(service(), project["id"], group_type, new_name,
                                     actor())
    return json_response(s.GroupTypeSchema().dump(renamed))


@bp.delete("/group_types/<group_type>")
def delete_group_type(group_type: str) -> Response:
    """Delete an unused group type and its groups (its slot is free again)."""
    project = admin_project()
    deleted = writes.delete_group_type(service(), project["id"], group_type, actor())
    return json_response(s.GroupTypeDeletedSchema().dump(deleted))


def json_scalar(raw: str) -> Any:
    """A filter value as what it reads as in JSON (number, boolean, quoted string), else
    the text itself."""
    try:
        parsed = json.loads(raw)
    except ValueError:
        return raw
    ok = isinstance(parsed, (bool, int, float, str)) and not (
        isinstance(parsed, float) and math.isnan(parsed)) and not (
        isinstance(parsed, int) and not -2**63 <= parsed < 2**63)  # past SQLite: text
    return parsed if ok else raw


def _property_filters() -> dict[str, Any]:
    """`properties.<key>=<value>` query parameters. A value that reads as a JSON number or
    boolean matches that type; quote it ("5") to match the string."""
    return {name[len("properties."):]: json_scalar(raw) for name, raw in request.args.items()
            if name.startswith("properties.") and len(name) > len("properties.")}


@bp.get("/groups")
def list_groups() -> Response:
    project = admin_project("read")
    args = query(s.GroupQuerySchema())
    rows, total = service().store.list_groups(
        project["id"], group_type=args.get("group_type"), properties=_property_filters(),
        search=args.get("search"), limit=args["limit"], offset=args["offset"])
    return json_response(s.GroupPageSchema().dump({
        "groups": rows, "total": total, "limit": args["limit"], "offset": args["offset"]}))


@bp.get("/groups/<group_type>/<path:group_key>")
def get_group(group_type: str, group_key: str) -> Response:
    """A group's profile: properties, parent, children, members, recent events."""
    project = admin_project("read")
    try:
        group = service().store.get_group(project["id"], group_type, group_key)
    except NotFound as e:
        raise NotFoundError(str(e)) from None
    return json_response(s.GroupProfileSchema().dump(group))


@bp.get("/persons")
def list_persons() -> Response:
    project = admin_project("read")
    args = query(s.PageQuerySchema())
    rows, total = service().store.list_persons(project["id"], limit=args["limit"],
                                               offset=args["offset"])
    return json_response(s.PersonPageSchema().dump({
        "persons": rows, "total": total, "limit": args["limit"], "offset": args["offset"]}))


@bp.get("/persons/<path:distinct_id>")
def get_person(distinct_id: str) -> Response:
    project = admin_project("read")
    try:
        person = service().store.get_person(project["id"], distinct_id)
    except NotFound as e:
        raise NotFoundError(str(e)) from None
    person["distinct_id"] = distinct_id
    return json_response(s.PersonSchema().dump(person))


# ---------------------------------------------------------------- project


@bp.get("/project")
def get_project() -> Response:
    project = admin_project("read")
    return json_response(s.ProjectSchema().dump(_project_view(project["id"])))


def _project_view(project_id: int) -> dict[str, Any]:
    """The project's settings with its live signing keys (prefixes only)."""
    store = service().store
    return {**(store.get_project(project_id) or {}),
            "signing_keys": store.signing_keys(project_id)}


@bp.post("/project/signing_keys")
def rotate_signing_key() -> Response:
    """A new signing key, shown in this answer only; older keys verify for the grace."""
    project = admin_project()
    grace = load(s.SigningKeyRotateSchema(), body())["grace_seconds"]
    created = writes.rotate_signing_key(service(), project["id"], grace, actor=actor())
    return json_response(s.SigningKeyCreatedSchema().dump(created), 201)


@bp.patch("/project")
def update_project() -> Response:
    """Change settings. `private_properties` replaces the whole map."""
    project = admin_project()
    changes = load(s.ProjectPatchSchema(), body())
    writes.update_settings(service(), project["id"], changes, actor=actor())
    return json_response(s.ProjectSchema().dump(_project_view(project["id"])))


@bp.post("/project/tokens")
def rotate_token() -> Response:
    """A new api token or secret key, shown in this answer only; the old one keeps working
    for the grace (0: revoked now), as `flagsvc project rotate-*` does."""
    project = admin_project()
    req = load(s.TokenRotateSchema(), body())
    value = writes.rotate_token(service(), project["id"], req["kind"], req["grace_seconds"],
                                actor=actor())
    return json_response(s.TokenRotatedSchema().dump({
        "kind": req["kind"], "token": value,
        "previous_expire_at": time.time() + req["grace_seconds"]}), 201)
