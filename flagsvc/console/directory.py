"""Console pages of the directory: groups (by type, search by key and property), a group's
profile (ancestors and children as a tree, members, recent events, the flags on for it),
persons and a person's page. Everything shown was ingested: the templates escape it."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from flask import abort, request
from werkzeug.wrappers import Response

from ..api.common import service
from ..service import make_context
from ..store import NotFound
from . import bp
from .views import back_to, project, render, store

PAGE = 50
MAX_DEPTH = 10  # hierarchy chains deeper than this are cut (SPEC §2)
TREE_DEPTH = 3  # levels of children shown under a group
TREE_WIDTH = 50  # children shown per group


def _page() -> int:
    raw = request.args.get("page", "1")
    return max(1, int(raw)) if raw.isdigit() and len(raw) < 7 else 1


@bp.get("/groups")
def groups_list() -> str:
    p = project()
    types = [t["name"] for t in store().group_types(p["id"])]
    group_type = request.args.get("type") or (types[0] if types else None)
    search = request.args.get("q", "").strip()
    prop_key, prop_value = request.args.get("prop", "").strip(), request.args.get("value", "")
    page = _page()
    rows, total = store().list_groups(
        p["id"], group_type=group_type, search=search or None,
        properties={prop_key: prop_value} if prop_key else None,
        limit=PAGE, offset=(page - 1) * PAGE)
    keys = store().group_property_keys(p["id"], group_type) if group_type else []
    return render("groups.html", types=types, group_type=group_type, rows=rows, total=total,
                  q=search, prop=prop_key, value=prop_value, page=page, pages=-(-total // PAGE),
                  keys=keys)


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


def children_tree(project_id: int, group: dict[str, Any], depth: int = TREE_DEPTH,
                  seen: set | None = None) -> list[dict[str, Any]]:
    seen = seen if seen is not None else {(group["group_type"], group["group_key"])}
    out = []
    for child in group["children"][:TREE_WIDTH]:
        ref = (child["group_type"], child["group_key"])
        if ref in seen:
            continue
        seen.add(ref)
        node = {**child, "children": [], "more": 0}
        if depth > 1:
            try:
                sub = store().get_group(project_id, *ref, events=0, members=0)
            except NotFound:
                sub = None
            if sub is not None:
                node["children"] = children_tree(project_id, sub, depth - 1, seen)
                node["more"] = max(0, len(sub["children"]) - TREE_WIDTH)
        out.append(node)
    return out


def flags_for(project_id: int, **context: Any) -> list[dict[str, Any]]:
    """Every live flag's answer for a context, as decide gives it."""
    results = service().evaluate(project_id, make_context(**context))
    return [{"key": k, "enabled": r.enabled, "variant": r.variant, "reason": r.reason}
            for k, r in sorted(results.items())]


@bp.get("/groups/<group_type>/<path:group_key>")
def group_profile(group_type: str, group_key: str) -> str:
    p = project()
    try:
        group = store().get_group(p["id"], group_type, group_key)
    except NotFound:
        abort(404, f"no group {group_type}/{group_key} in this project")
    return render("group.html", group=group,
                  ancestors=list(reversed(ancestors(p["id"], group_type, group_key))),
                  tree=children_tree(p["id"], group),
                  flags=flags_for(p["id"], groups={group_type: group_key}))


@bp.get("/persons")
def persons_list() -> Response | str:
    p = project()
    page = _page()
    wanted = request.args.get("q", "").strip()
    if wanted:  # a distinct id asked for: its page, if it exists
        try:
            store().get_person(p["id"], wanted)
            return back_to("/ui/persons/" + quote(wanted, safe=""))
        except NotFound:
            pass
    rows, total = store().list_persons(p["id"], limit=PAGE, offset=(page - 1) * PAGE)
    return render("persons.html", rows=rows, total=total, page=page, pages=-(-total // PAGE),
                  q=wanted, missing=bool(wanted))


@bp.get("/persons/<path:distinct_id>")
def person_page(distinct_id: str) -> str:
    p = project()
    try:
        person = store().get_person(p["id"], distinct_id)
    except NotFound:
        abort(404, f"no person {distinct_id!r} in this project")
    groups: dict[str, str] = {}
    for m in person.get("groups", []):
        groups.setdefault(m["group_type"], m["group_key"])
    return render("person.html", person=person, distinct_id=distinct_id,
                  flags=flags_for(p["id"], distinct_id=distinct_id, groups=groups))
