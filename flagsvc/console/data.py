"""What the console's pages show, computed from the store and the service: flag summaries,
the editor's pickers, a group's ancestors, the flags on for a context, and
the field-by-field diff of an audit entry. The route modules parse, call these, render."""

from __future__ import annotations

import difflib
import json
from typing import Any

from ..api.common import service
from ..engine import OPERATORS
from ..schemas import PERSON
from ..service import make_context
from .views import store

MAX_DEPTH = 10  # hierarchy chains deeper than this are cut (SPEC §2)
TREE_PAGE = 50  # children of a group shown (or fetched, tree.js) at a time
BOOKKEEPING = {"id", "version", "created_at", "updated_at", "deleted_at"}


def rollout_summary(flag: dict[str, Any]) -> str:
    conditions = flag.get("conditions")
    if conditions is None:
        return "100 %"
    if not conditions:
        return "no condition"
    values = [100 if c.get("rollout_percentage") is None else c["rollout_percentage"]
              for c in conditions]
    return ", ".join(f"{v} %" for v in values)


def editor_context(project_id: int) -> dict[str, Any]:
    """What the editor's pickers offer: group types, property keys seen per type and for
    persons, the hierarchy of types, operators, and the other flags (dependencies)."""
    s = store()
    types = [t["name"] for t in s.group_types(project_id)]
    return {
        "group_types": types,
        "group_keys": {t: s.group_property_keys(project_id, t) for t in types},
        "person_keys": s.person_property_keys(project_id),
        "hierarchy": s.type_links(project_id),
        "operators": sorted(OPERATORS),  # aliases are accepted, not offered (editor-form.js)
        "flags": [f["key"] for f in s.list_flags(project_id)],
        "person": PERSON,
    }


def ancestors(project_id: int, group_type: str, key: str) -> list[dict[str, str]]:
    """The chain of parents, nearest first (stops at a cycle or MAX_DEPTH)."""
    chain: list[dict[str, str]] = []
    seen = {(group_type, key)}
    current = (group_type, key)
    while len(chain) < MAX_DEPTH:
        parent = store().group_parent(project_id, *current)
        if parent is None or parent in seen:
            break
        seen.add(parent)
        chain.append({"group_type": parent[0], "group_key": parent[1]})
        current = parent
    return chain


def flags_for(project_id: int, **context: Any) -> list[dict[str, Any]]:
    """Every live flag's answer for a context, as decide gives it."""
    results = service().evaluate(project_id, make_context(**context))
    return [{"key": k, "enabled": r.enabled, "variant": r.variant, "reason": r.reason}
            for k, r in sorted(results.items())]


def diff(before: dict[str, Any] | None, after: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The fields an audited change changed: name, before and after as JSON text, and the
    lines of their JSON that changed ("del" / "add", with "same" lines around them)."""
    before, after = before or {}, after or {}
    out = []
    for name in sorted((set(before) | set(after)) - BOOKKEEPING):
        old, new = before.get(name), after.get(name)
        if old == new:
            continue
        old_text = None if name not in before else json.dumps(old, indent=1, sort_keys=True)
        new_text = None if name not in after else json.dumps(new, indent=1, sort_keys=True)
        out.append({"field": name, "before": old_text, "after": new_text,
                    "lines": _lines(old_text, new_text)})
    return out


def _lines(old: str | None, new: str | None) -> list[tuple[str, str]]:
    marks = {"-": "del", "+": "add", " ": "same"}
    lines = []
    for line in difflib.unified_diff((old or "").splitlines(), (new or "").splitlines(),
                                     lineterm="", n=2):
        if line.startswith(("---", "+++")):
            continue
        if line.startswith("@@"):
            lines.append(("gap", "…"))
            continue
        lines.append((marks[line[0]], line[1:]))
    return lines[1:] if lines and lines[0][0] == "gap" else lines
