"""The write path of a project's settings, group types, tokens and signing keys: one command
per kind of change (see `flagsvc.writes`). Each checks, writes in one store transaction
(a group type the change needs is created inside it), and invalidates this process's cached
flags when the change affects evaluation; other processes and nodes follow `flags_rev`."""

from __future__ import annotations

from typing import Any

from ..errors import ConflictError, NotFoundError, ValidationFailed
from ..ingest import privacy
from ..store import Conflict, LimitExceeded, NotFound


def create_project(service: Any, name: str, api_token: str | None = None,
                   secret_key: str | None = None, actor: str | None = None,
                   only_if_none: bool = False) -> dict[str, Any] | None:
    """A new project, with its secret key in clear (the only time it is shown); audited as
    "project_created" in the project's own log when an `actor` made it. A token already in
    use is a 409. `only_if_none`: only on a database without any project, else None (the
    default project: of several nodes starting at once on a new database, one creates it)."""
    if not isinstance(name, str) or not name.strip():
        raise ValidationFailed("a project needs a name", errors={"name": ["must not be empty"]})
    try:
        project = service.store.create_project(name, api_token=api_token,
                                               secret_key=secret_key, actor=actor,
                                               only_if_none=only_if_none)
    except Conflict as e:
        raise ConflictError(str(e), errors={"api_token": [str(e)]}) from None
    return None if project is None else dict(project)


def create_group_type(service: Any, project_id: int, name: str, actor: str | None = None
                      ) -> tuple[dict[str, Any], bool]:
    """The group type `name` and whether it was created now: idempotent, an existing one
    is returned (200) and not audited again. Checked and created in one transaction: of
    concurrent creates of one name exactly one is a 201 with one audit entry."""
    store = service.store
    try:
        made = store.create_group_type(project_id, name, actor=actor)
    except (LimitExceeded, ValueError) as e:
        raise ValidationFailed(str(e), errors={"name": [str(e)]}) from None
    return (next(t for t in store.group_types(project_id) if t["name"] == name),
            bool(made["created"]))


def rename_group_type(service: Any, project_id: int, name: str, new_name: str,
                      actor: str | None = None) -> dict[str, Any]:
    store = service.store
    try:
        renamed = store.rename_group_type(project_id, name, new_name, actor=actor)
    except NotFound as e:
        raise NotFoundError(str(e)) from None
    except Conflict as e:
        raise ConflictError(str(e), errors={"name": [str(e)]}) from None
    service.invalidate(project_id)
    return next(t for t in store.group_types(project_id) if t["name"] == renamed["name"])


def delete_group_type(service: Any, project_id: int, name: str, actor: str | None = None
                      ) -> dict[str, Any]:
    try:
        deleted = service.store.delete_group_type(project_id, name, actor=actor)
    except NotFound as e:
        raise NotFoundError(str(e)) from None
    except Conflict as e:
        raise ConflictError(str(e), errors={"name": [str(e)]}) from None
    service.invalidate(project_id)
    return deleted


def update_settings(service: Any, project_id: int, changes: dict[str, Any],
                    actor: str | None = None) -> dict[str, Any]:
    """Change project settings (`private_properties` replaces the whole map and rewrites
    what is stored, in the same transaction; a new default_group_type is created in it)."""
    store = service.store
    create: list[str] = []
    if "default_group_type" in changes:
        name = changes["default_group_type"]
        names = {t["name"] for t in store.group_types(project_id)}
        if name not in names:
            if not isinstance(name, str) or not name.strip():
                raise ValidationFailed("a group type name must be a non-empty string",
                                       errors={"default_group_type": ["must not be empty"]})
            create.append(name)
    check = None
    if "private_properties" in changes:
        keys = privacy.hashed_keys(privacy.policy_of(changes["private_properties"]))

        def check(live: list[dict[str, Any]]) -> None:
            """In the write transaction, on the flags as they are then: a flag saved
            meanwhile by another request cannot slip past it."""
            broken = {f"flags.{f['key']}.{where}": [message] for f in live
                      for where, message in privacy.hashed_key_problems(f, keys).items()}
            if broken:
                raise ValidationFailed(
                    "these flags could no longer match once those properties are stored as "
                    "keyed hashes; change them first", errors=broken)
    for setting, what in (("require_signed_groups", "groups"),
                          ("require_signed_persons", "stored person")):
        if changes.get(setting) and not store.signing_keys(project_id):
            message = ("create a signing key first (POST /api/project/signing_keys): without "
                       f"one every request's {what} would be ignored")
            raise ValidationFailed(message, errors={setting: [message]})
    try:
        project = store.update_project(project_id, actor=actor, group_types=create,
                                       check=check, **changes)
    except LimitExceeded as e:
        raise ValidationFailed(str(e), errors={"default_group_type": [str(e)]}) from None
    service.invalidate(project_id)
    return project


def rotate_signing_key(service: Any, project_id: int, grace_seconds: float,
                       actor: str | None = None) -> dict[str, Any]:
    try:
        created = service.store.rotate_signing_key(project_id, grace_seconds, actor=actor)
    except NotFound as e:
        raise NotFoundError(str(e)) from None
    service.invalidate(project_id)
    return dict(created)


def rotate_token(service: Any, project_id: int, kind: str, grace_seconds: float,
                 actor: str | None = None) -> str:
    """A new token of `kind`; this process forgets the tokens it cached (others within
    their one-second token cache)."""
    try:
        value = service.store.rotate_token(project_id, kind, grace_seconds, actor=actor)
    except NotFound as e:
        raise NotFoundError(str(e)) from None
    service.forget_tokens()
    return str(value)
