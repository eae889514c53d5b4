"""Whether a flag can be stored in a project: what the admin API checks before it saves or
previews a flag, and `flagsvc flags import` before it writes anything. No Flask here: the
caller passes the store and turns the problems into its own errors."""

from __future__ import annotations

import re
from collections.abc import Container, Iterable, Mapping
from typing import Any

from .engine import compile_flags, validate_flag
from .engine.compile import PERSON
from .ingest import privacy
from .store.projects import MAX_GROUP_TYPES

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
    if defn.get("bucket_by") and defn["bucket_by"] != PERSON:
        found.setdefault(defn["bucket_by"], "bucket_by")
    for i, cond in enumerate(defn.get("conditions") or []):
        if cond.get("bucket_by") and cond["bucket_by"] != PERSON:
            found.setdefault(cond["bucket_by"], f"conditions[{i}].bucket_by")
        for j, f in enumerate(cond.get("properties") or []):
            if f.get("type") == "group" and f.get("group_type"):
                found.setdefault(f["group_type"], f"conditions[{i}].properties[{j}].group_type")
    return found


def flag_problems(store: Any, project_id: int, defn: Mapping[str, Any],
                  others: Iterable[Mapping[str, Any]] | None = None,
                  compiled: Mapping[str, Any] | None = None) -> dict[str, list[str]]:
    """Everything beyond the schema's shape that would make the flag unusable: engine problems,
    payload keys, unknown dependencies, dependency cycles, operators a private key's hash
    defeats, a 6th group type; field path -> messages (empty: it can be stored). `others`:
    the project's other live flags as they will be (default: as stored); `compiled`: those
    and this flag compiled together already, keyed by flag (an import checks many flags
    against one set; `others` is then not read)."""
    errors = _problem_errors(validate_flag(defn))
    variant_keys = {v["key"] for v in defn.get("variants") or []}
    for k in defn.get("payloads") or {}:
        if k != "true" and k not in variant_keys:
            errors.setdefault(f"payloads.{k}", []).append(
                f"payload key {k!r} is neither a variant of the flag nor \"true\"")
    rest: list[Mapping[str, Any]] = []
    if compiled is None:
        rest = [f for f in (store.list_flags(project_id) if others is None else others)
                if f["key"] != defn["key"]]
        known: Container[Any] = {f["key"] for f in rest}
    else:  # the flags compiled together are the project as it will be
        known = compiled
    project = store.get_project(project_id) or {}
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
        together = compiled if compiled is not None else compile_flags([*rest, defn])
        found = together.get(defn["key"])
        if found is not None and found.error:
            errors.setdefault("conditions", []).append(found.error)
    existing = {t["name"] for t in store.group_types(project_id)}
    new = {t: where for t, where in referenced_group_types(defn).items() if t not in existing}
    if len(existing) + len(new) > MAX_GROUP_TYPES:
        for t, where in new.items():
            errors.setdefault(where, []).append(
                f"group type {t!r} would be a new group type, but a project has at most "
                f"{MAX_GROUP_TYPES} and this one has {len(existing)} "
                f"({', '.join(sorted(existing))})")
    return errors


def dependency_problems(live: Iterable[Mapping[str, Any]], keys: Iterable[str]
                        ) -> dict[str, str]:
    """Of `keys`, the flags whose dependencies (a cycle, a chain too deep) make them unusable
    among the `live` flags: the check a write runs inside its transaction, so a concurrent
    edit of another flag cannot close a cycle unseen."""
    compiled = compile_flags(live)
    found = {k: compiled[k].error for k in keys if k in compiled}
    return {k: e for k, e in found.items() if e is not None and "dependency" in e}
