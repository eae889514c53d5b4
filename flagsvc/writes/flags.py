"""The write path of flags: one command per kind of change, shared by the admin API, the
CLI and imports (SPEC §10).

Each command owns the whole change: the checks (`flagcheck`), the group types the flag
needs (created inside the store's transaction, so a refused write — a stale version, a
dependency cycle closed by a concurrent edit — leaves none behind), the write with its audit
entry (`Store.write_flag`, the one place a flag is written, imports included) and the
invalidation of this process's cached flags (other processes and nodes see the new
`flags_rev` within CACHE_SECONDS). Routes parse, call one of these, and render; errors are
the API's own (`errors.py`), which the CLI prints as one line.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ..errors import ConflictError, Forbidden, NotFoundError, ValidationFailed
from ..flagcheck import dependency_problems, flag_problems, referenced_group_types
from ..store import Conflict, LimitExceeded, NotFound


def check_flag(store: Any, project_id: int, defn: Mapping[str, Any]) -> None:
    """`flagcheck.flag_problems` of the flag as a 422 (all of them at once)."""
    errors = flag_problems(store, project_id, defn)
    if errors:
        raise ValidationFailed("the flag is not valid", errors=errors)


def group_types_to_create(store: Any, project_id: int, defn: Mapping[str, Any],
                          create: bool, may_create: bool = True) -> list[str]:
    """The group types the flag names that the project lacks, which the write will create;
    without `create`, a 422 naming the field for any but the project's default group type
    (a typo in bucket_by must not take one of the project's 5 types for good); a 403 when
    the writer may not create types (`may_create`: a console editor, not an admin)."""
    existing = {t["name"] for t in store.group_types(project_id)}
    missing = {n: w for n, w in referenced_group_types(defn).items() if n not in existing}
    default = (store.get_project(project_id) or {}).get("default_group_type")
    if {n for n in missing if n != default} and not create:
        missing = {n: w for n, w in missing.items() if n != default}
        known = ", ".join(sorted(existing)) or "none yet"
        raise ValidationFailed("the flag names group types the project does not have", errors={
            where: [f"{name!r} is not a group type of this project (it has: {known}); send "
                    "\"create_group_types\": true to create it, or POST /api/group_types"]
            for name, where in missing.items()})
    if {n for n in missing if n != default} and not may_create:
        raise Forbidden("only an admin creates group types (the project has at most 5): ask "
                        "one to add it, or choose an existing type")
    for name, where in missing.items():
        if not isinstance(name, str) or not name.strip():
            raise ValidationFailed(f"a group type name must be a non-empty string, not {name!r}",
                                   errors={where: ["must be a non-empty string"]})
    return list(missing)


def no_cycle(keys: Iterable[str], error: type[Exception] = ValidationFailed) -> Any:
    """A check run inside the write transaction: refuses a write that, together with a
    concurrent edit of another flag, closes a dependency cycle."""
    keys = list(keys)

    def check(live: list[dict[str, Any]]) -> None:
        for key, problem in dependency_problems(live, keys).items():
            if error is ValidationFailed:
                raise ValidationFailed("the flag is not valid", errors={"conditions": [problem]})
            raise error(f"flag {key}: {problem}")
    return check


def live_checks(store: Any, project_id: int, defns: Iterable[Mapping[str, Any]],
                error: type[Exception] = ValidationFailed) -> Any:
    """The checks run inside the write transaction: `no_cycle`, and the project's privacy
    policy as it is then (read on the transaction's connection) — a policy that starts
    hashing a key the flag matches on, changed by a concurrent request after
    `check_flag`, refuses the write instead of saving a flag that can no longer match."""
    from ..ingest import privacy

    defns = list(defns)
    cycle = no_cycle([d["key"] for d in defns], error)

    def check(live: list[dict[str, Any]]) -> None:
        cycle(live)
        project = store.get_project(project_id) or {}
        keys = privacy.hashed_keys(privacy.policy_of(project.get("private_properties")))
        for defn in defns:
            problems = privacy.hashed_key_problems(defn, keys)
            if problems and error is ValidationFailed:
                raise ValidationFailed("the flag is not valid",
                                       errors={k: [m] for k, m in problems.items()})
            if problems:
                raise error(f"flag {defn['key']}: {next(iter(problems.values()))}")
    return check


def _limit(e: Exception, defn: Mapping[str, Any]) -> ValidationFailed:
    where = next(iter(referenced_group_types(defn).values()), "bucket_by")
    return ValidationFailed(str(e), errors={where: [str(e)]})


def create_flag(service: Any, project_id: int, defn: dict[str, Any],
                create_group_types: bool, actor: str | None = None,
                may_create_types: bool = True) -> dict[str, Any]:
    """`actor`, in this and every command: who the audit log names; `may_create_types`:
    whether this writer may create group types (console editors may not)."""
    store = service.store
    check_flag(store, project_id, defn)
    types = group_types_to_create(store, project_id, defn, create_group_types, may_create_types)
    try:
        flag = store.create_flag(project_id, defn, check=live_checks(store, project_id, [defn]),
                                 group_types=types, actor=actor)
    except Conflict as e:
        raise ConflictError(str(e), errors={"key": [str(e)]}) from None
    except LimitExceeded as e:
        raise _limit(e, defn) from None
    service.invalidate(project_id)
    return flag


def update_flag(service: Any, project_id: int, current: dict[str, Any],
                changes: dict[str, Any], expected_version: int | None,
                create_group_types: bool, on_conflict: Any,
                actor: str | None = None, may_create_types: bool = True) -> dict[str, Any]:
    """`changes` applied to the stored flag `current` if it is still at
    `expected_version`; `on_conflict(Conflict)` makes the error of a stale version."""
    from ..schemas import FLAG_READ_ONLY

    store = service.store
    merged = {**{k: v for k, v in current.items() if k not in FLAG_READ_ONLY
                 and k != "version"}, **changes}
    check_flag(store, project_id, merged)
    types = group_types_to_create(store, project_id, merged, create_group_types,
                                  may_create_types)
    try:
        flag = store.update_flag(project_id, current["id"], changes, expected_version,
                                 check=live_checks(store, project_id, [merged]),
                                 group_types=types,
                                 actor=actor)
    except Conflict as e:
        raise on_conflict(e) from None
    except NotFound as e:
        raise NotFoundError(str(e)) from None
    except LimitExceeded as e:
        raise _limit(e, merged) from None
    service.invalidate(project_id)
    return flag


def set_flag_deleted(service: Any, project_id: int, flag_id: int, deleted: bool,
                     expected_version: int | None, on_conflict: Any,
                     actor: str | None = None) -> dict[str, Any]:
    try:
        flag = service.store.set_flag_deleted(project_id, flag_id, deleted, expected_version,
                                              actor=actor)
    except Conflict as e:
        raise on_conflict(e) from None
    service.invalidate(project_id)
    return flag


def import_flags(service: Any, project_id: int, flags: list[Any], dry_run: bool,
                 actor: str | None = None) -> Any:
    """`flagsvc.imports.apply.import_flags` (every flag checked, then all written through
    `Store.write_flag` in one transaction), with this process's caches invalidated."""
    from ..imports.apply import import_flags as apply

    done = apply(service.store, project_id, flags, dry_run=dry_run, actor=actor)
    if not dry_run and not done.problems and not done.conflict:
        service.invalidate(project_id)
    return done
