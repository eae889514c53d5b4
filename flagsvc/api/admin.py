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
from ..errors import (
    BadRequest,
    ConflictError,
    Forbidden,
    NotFoundError,
    PreconditionRequired,
    ValidationFailed,
)
from ..flagcheck import dependency_problems, referenced_group_types
from ..store import Conflict, LimitExceeded, NotFound
from . import openapi
from .adminlib import (
    body,
    bp,
    check_flag,
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



def ensure_group_types(project_id: int, defn: Mapping[str, Any], create: bool) -> None:
    """The group types the flag names exist, or are created (`create`); else a 422 naming
    the field (a typo in bucket_by must not take one of the project's 5 types for good)."""
    store = service().store
    existing = {t["name"] for t in store.group_types(project_id)}
    missing = {n: w for n, w in referenced_group_types(defn).items() if n not in existing}
    # The project's default group type is declared by its settings: created when named.
    default = (store.get_project(project_id) or {}).get("default_group_type")
    if {n for n in missing if n != default} and not create:
        missing = {n: w for n, w in missing.items() if n != default}
        known = ", ".join(sorted(existing)) or "none yet"
        raise ValidationFailed("the flag names group types the project does not have", errors={
            where: [f"{name!r} is not a group type of this project (it has: {known}); send "
                    "\"create_group_types\": true to create it, or POST /api/group_types"]
            for name, where in missing.items()})
    if {n for n in missing if n != default} and not request_may("admin"):
        raise Forbidden("only an admin creates group types (the project has at most 5): ask "
                        "one to add it, or choose an existing type")
    for name, where in missing.items():  # all of them may be created now
        try:
            store.create_group_type(project_id, name, actor=actor())
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
    check_flag(project["id"], defn)
    ensure_group_types(project["id"], defn, create)
    try:
        flag = service().store.create_flag(project["id"], defn, check=no_cycle(defn["key"]),
                                           actor=actor())
    except Conflict as e:
        raise ConflictError(str(e), errors={"key": [str(e)]}) from None
    return _written(project["id"], flag, 201)


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
    merged = {**definition(current), **changes}
    check_flag(project["id"], merged)
    ensure_group_types(project["id"], merged, create)
    try:
        flag = service().store.update_flag(project["id"], current["id"], changes, version,
                                           check=no_cycle(current["key"]), actor=actor())
    except Conflict as e:
        raise _conflict(project["id"], current["id"], e) from None
    except NotFound as e:
        raise NotFoundError(str(e)) from None
    return _written(project["id"], flag)


def no_cycle(key: str) -> Any:
    """A check for Store.create_flag/update_flag: run inside the write transaction, it
    refuses a write that, together with a concurrent edit, closes a dependency cycle."""
    def check(live: list[dict[str, Any]]) -> None:
        for error in dependency_problems(live, [key]).values():
            raise ValidationFailed("the flag is not valid", errors={"conditions": [error]})
    return check


def _set_deleted(ref: str, deleted: bool) -> Response:
    project = admin_project("flags")
    current = stored_flag(project["id"], ref)
    version = None
    if request.headers.get("If-Match") is not None:
        version = expected_version(None)
    try:
        flag = service().store.set_flag_deleted(project["id"], current["id"], deleted, version,
                                                actor=actor())
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
