"""Flag definitions and stored group lookups for in-process evaluators (remote FlagClient, SPEC §6).

`GET /api/flags/definitions` is polled: it answers `304 Not Modified` with an empty body
when the client's `If-None-Match` is the current ETag, so an idle poll costs one cached
lookup. The property routes are the client's on-demand fallback for groups and persons it
has not been told about; they return only what the engine needs.
"""

from __future__ import annotations

import hashlib
import json

from flask import Blueprint, Response, jsonify, request

from .. import schemas as s
from ..errors import NotFoundError
from .common import admin_project, service

bp = Blueprint("definitions", __name__, url_prefix="/api")

DEFINITIONS = s.DefinitionsSchema()


def _matches(header: str | None, etag: str) -> bool:
    """If-None-Match uses the weak comparison: W/"x" matches "x"; * matches anything."""
    if not header:
        return False
    for candidate in header.split(","):
        c = candidate.strip()
        if c == "*" or c.removeprefix("W/") == etag:
            return True
    return False


@bp.get("/flags/definitions")
def flag_definitions() -> Response:
    """Every live flag as the admin API returns it, the group types and the project's
    default group type, with a strong ETag over all three."""
    pid = admin_project()["id"]
    project = service().store.get_project(pid) or {}
    flag_set = service().flag_set(pid)
    types = service().store.group_types(pid)
    # The flag set's ETag covers flags only; group types and the default group type change
    # what an evaluator does too, so they are folded in.
    basis = json.dumps([flag_set.etag, [(t["name"], t["index"]) for t in types],
                        project.get("default_group_type"), project.get("client_properties")])
    etag = '"' + hashlib.sha256(basis.encode()).hexdigest()[:32] + '"'
    if _matches(request.headers.get("If-None-Match"), etag):
        resp = Response(status=304)
        resp.headers["ETag"] = etag
        return resp
    resp = jsonify(DEFINITIONS.dump({
        "flags": flag_set.definitions, "group_types": types,
        "project": {"id": pid, "default_group_type": project.get("default_group_type"),
                    "client_properties": project.get("client_properties")},
        "privacy": {"hashed_keys": sorted(flag_set.private_keys), "salt": flag_set.salt}}))
    resp.headers["ETag"] = etag
    resp.headers["Cache-Control"] = "no-cache"
    return resp


@bp.get("/groups/<group_type>/<path:group_key>/properties")
def group_properties(group_type: str, group_key: str) -> Response:
    project = admin_project()
    store = service().store
    props = store.group_properties(project["id"], group_type, group_key)
    if props is None:
        raise NotFoundError(f"group {group_type}/{group_key} does not exist")
    parent = store.group_parent(project["id"], group_type, group_key)
    return jsonify(properties=props,
                   parent={"group_type": parent[0], "group_key": parent[1]} if parent else None)


@bp.get("/persons/<path:distinct_id>/properties")
def person_properties(distinct_id: str) -> Response:
    project = admin_project()
    props = service().store.person_properties(project["id"], distinct_id)
    if props is None:
        raise NotFoundError(f"person {distinct_id!r} does not exist")
    return jsonify(properties=props)
