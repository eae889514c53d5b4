"""Flag admin JSON API (SPEC §7): flags with optimistic concurrency and an audit log.

Every route authenticates with `Authorization: Bearer <secret_key>` (`admin_project`) and
only ever reads or writes that project. Bodies are shaped by the marshmallow schemas of
`flagsvc.schemas`; what only the engine can judge (operators, regexes, dependency cycles)
is checked with `check_flag` (in `adminlib`) before anything is stored.

The other admin routes share this module's blueprint (`bp`, defined in `adminlib`):
previews, flag groups and explain in `preview`; group types, groups, persons and project
settings in `directory`. Both are imported at the end of this module, so registering
`admin.bp` registers all of them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import Response, request

from .. import schemas as s
from .. import writes
from ..errors import (
    BadRequest,
    ConflictError,
    PreconditionRequired,
    ValidationFailed,
)
from ..store import Conflict, NotFound
from . import openapi
from .adminlib import (
    body,
    bp,
    json_response,
    load,
    query,
    stored_flag,
)
from .common import actor, admin_project, request_may, service

bp.add_url_rule("/openapi.json", "openapi", openapi.serve, methods=["GET"])

FLAG = s.FlagSchema()


class StaleVersion(ConflictError):
    """The flag changed since the client read it; the body carries the current version."""

    def __init__(self, message: str, current_version: int | None) -> None:
        super().__init__(message, errors={"version": [message]})
        self.current_version = current_version

    def body(self) -> dict[str, Any]:
        return {**super().body(), "current_version": self.current_version}



def definition(flag: Mapping[str, Any]) -> dict[str, Any]:
    """The rules of a stored flag, without its bookkeeping columns."""
    return {k: v for k, v in flag.items() if k not in s.FLAG_READ_ONLY and k != "version"}



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


def _written(flag: dict[str, Any], status: int = 200) -> Response:
    resp = json_response(FLAG.dump(flag), status, etag=flag["version"])
    if status == 201:
        resp.headers["Location"] = f"/api/flags/{flag['id']}"
    return resp


# ---------------------------------------------------------------- flags


@bp.get("/flags")
def list_flags() -> Response:
    project = admin_project("read")
    args = query(s.FlagListQuerySchema())
    flags = service().store.list_flags(project["id"], include_deleted=args["include_deleted"])
    return json_response({"flags": FLAG.dump(flags, many=True)})


@bp.post("/flags")
def create_flag() -> Response:
    project = admin_project("flags")
    defn = load(s.FlagWriteSchema(), body())
    defn.pop("version", None)
    create = defn.pop("create_group_types")
    return _written(writes.create_flag(service(), project["id"], defn, create, actor(),
                                       may_create_types=request_may("admin")), 201)


@bp.get("/flags/<ref>")
def get_flag(ref: str) -> Response:
    project = admin_project("read")
    flag = stored_flag(project["id"], ref)
    return json_response(FLAG.dump(flag), etag=flag["version"])


@bp.route("/flags/<ref>", methods=["PUT", "PATCH"])
def update_flag(ref: str) -> Response:
    """PUT replaces the rules (omitted fields take their defaults); PATCH changes the fields
    it names. Both need the version the client read; a stale one is a 409."""
    project = admin_project("flags")
    data = body()
    current = stored_flag(project["id"], ref)
    schema = s.FlagWriteSchema()
    if request.method == "PATCH":
        changes = load(schema, data, partial=tuple(f for f in schema.fields if f not in data))
    else:
        changes = load(schema, {"key": current["key"], **data})
    create = changes.pop("create_group_types", False)
    version = expected_version(changes.pop("version", None))
    if changes.get("key", current["key"]) != current["key"]:
        raise ValidationFailed("a flag's key cannot be changed",
                               errors={"key": ["a flag's key cannot be changed"]})
    flag = writes.update_flag(service(), project["id"], current, changes, version, create,
                              on_conflict=lambda e: _conflict(project["id"], current["id"], e),
                              actor=actor(), may_create_types=request_may("admin"))
    return _written(flag)


def _set_deleted(ref: str, deleted: bool) -> Response:
    project = admin_project("flags")
    current = stored_flag(project["id"], ref)
    version = None
    if request.headers.get("If-Match") is not None:
        version = expected_version(None)
    flag = writes.set_flag_deleted(service(), project["id"], current["id"], deleted, version,
                                   on_conflict=lambda e: _conflict(project["id"],
                                                                   current["id"], e),
                                   actor=actor())
    return _written(flag)


@bp.delete("/flags/<ref>")
def delete_flag(ref: str) -> Response:
    """Soft delete: the flag stops evaluating but keeps its key and history."""
    return _set_deleted(ref, True)


@bp.post("/flags/<ref>/restore")
def restore_flag(ref: str) -> Response:
    return _set_deleted(ref, False)


@bp.get("/audit")
def audit() -> Response:
    project = admin_project("read")
    args = query(s.AuditQuerySchema())
    flag_id = None
    if args.get("flag_id"):
        flag_id = stored_flag(project["id"], args["flag_id"])["id"]
    entries = service().store.audit_log(project["id"], flag_id=flag_id, limit=args["limit"],
                                        before_id=args.get("before_id"))
    more = len(entries) == args["limit"]
    return json_response(s.AuditPageSchema().dump({
        "entries": entries, "next_before_id": entries[-1]["id"] if entries and more else None}))


# The rest of the admin API registers its routes on `bp` when imported. Importing it here,
# after the flag routes and in this order, keeps the URL map as it was before the split, and
# means whoever registers `admin.bp` gets every admin route.
from . import preview  # noqa: E402, F401

# isort: split
from . import directory  # noqa: E402, F401

# isort: split
from . import imports  # noqa: E402, F401
