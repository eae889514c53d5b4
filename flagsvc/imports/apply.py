"""Writing converted flags into a project: all checked first, then all written.

`flagsvc flags import` and `POST /api/flags/import` both end here. Every flag passes the
admin API's schema and `flagcheck.flag_problems` against the project as it will be after
the import (so imported flags may depend on each other), and the group types they need must
fit in the project's five; nothing is written unless every flag passes, and the writes are
one transaction. A flag whose key exists is updated (a deleted one restored first) unless
its rules are unchanged, others are created; each write is in the audit log as if made
through the admin API.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..engine import compile_flags
from ..flagcheck import flag_problems, referenced_group_types
from ..store import Conflict, LimitExceeded
from ..store.flags import same_rules
from ..store.projects import MAX_GROUP_TYPES
from . import Converted, dependencies_of, skip_dependants


@dataclass
class Applied:
    """What an import did (or, with dry_run, would do)."""

    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    restored: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)  # same rules as stored: not written
    group_types: list[str] = field(default_factory=list)  # created for the imported flags
    problems: dict[str, list[str]] = field(default_factory=dict)  # flag key -> messages
    conflict: str | None = None  # the project changed meanwhile: nothing was written


def _loaded(raw: Iterable[Any], problems: dict[str, list[str]]) -> list[dict[str, Any]]:
    from marshmallow import ValidationError

    from ..schemas import FlagInputSchema

    schema, flags = FlagInputSchema(), []
    for i, f in enumerate(raw):
        name = str(f.get("key", f"#{i}")) if isinstance(f, Mapping) else f"#{i}"
        try:
            flag = schema.load(f)
        except ValidationError as e:
            problems.setdefault(name, []).append(json.dumps(e.messages, sort_keys=True))
            continue
        flag.pop("version", None)
        flags.append(flag)
    return flags


def skip_unresolved(store: Any, project_id: int, converted: Converted) -> None:
    """With skip_unimportable: a flag depending on a flag neither in the file nor in the
    project is skipped too (and what depends on it), instead of failing the import."""
    keys = [f.get("key") if isinstance(f, Mapping) else None for f in converted.flags]
    present = {f["key"] for f in store.list_flags(project_id)}
    present |= {k for k in keys if isinstance(k, str)}
    for key, flag in zip(keys, converted.flags, strict=True):
        missing = sorted(dependencies_of(flag) - present)
        if missing and isinstance(key, str):
            converted.refuse(key, f"depends on {', '.join(missing)}, which is neither in the "
                                  "file nor in the project")
    skip_dependants(converted)


def import_flags(store: Any, project_id: int, raw: Iterable[Any],
                 dry_run: bool = False, actor: str | None = None) -> Applied:
    """Check every flag of `raw` (admin API input shape), then write them all or none
    (`Store.import_flags`: through `Store.write_flag`, as single-flag edits); `actor` is who
    the audit log names."""
    from ..writes.flags import live_checks  # writes imports this module's caller side
    done = Applied()
    flags = _loaded(raw, done.problems)
    keys = [f["key"] for f in flags]
    for key in [k for k, n in Counter(keys).items() if n > 1]:
        done.problems.setdefault(key, []).append("the same key appears more than once")
    existing = {f["key"]: f for f in store.list_flags(project_id, include_deleted=True)}
    after = {**{k: f for k, f in existing.items() if not f["deleted"]},
             **{f["key"]: f for f in flags}}
    compiled = compile_flags(after.values())  # once: each flag's check reads it
    for f in flags:
        for where, messages in flag_problems(store, project_id, f,
                                             compiled=compiled).items():
            done.problems.setdefault(f["key"], []).extend(f"{where}: {m}" for m in messages)
    known = [t["name"] for t in store.group_types(project_id)]
    for f in flags:
        for name in referenced_group_types(f):
            if name not in known and name not in done.group_types:
                done.group_types.append(name)
    if len(known) + len(done.group_types) > MAX_GROUP_TYPES:
        done.problems.setdefault("(group types)", []).append(
            f"the flags need group types {', '.join(done.group_types)} beside "
            f"{', '.join(known) or 'none'}: a project has at most {MAX_GROUP_TYPES}")
    if done.problems:
        return done
    if dry_run:  # what the store would do, read the same way
        for f in flags:
            current = existing.get(f["key"])
            if current is None:
                done.created.append(f["key"])
                continue
            if current["deleted"]:
                done.restored.append(f["key"])
            (done.unchanged if same_rules(current, f) else done.updated).append(f["key"])
        return done
    try:
        written = store.import_flags(project_id, flags, done.group_types,
                                     check=live_checks(store, project_id, flags, Conflict),
                                     actor=actor)
    except (Conflict, LimitExceeded) as e:  # a concurrent change: nothing was written
        done.conflict = f"{e} (changed while importing; nothing was written, try again)"
        return done
    done.created, done.updated = written["created"], written["updated"]
    done.restored, done.unchanged = written["restored"], written["unchanged"]
    return done
