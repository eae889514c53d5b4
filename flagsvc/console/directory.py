"""Console pages of the directory: groups (by type, search by key and property), a group's
profile (ancestors and children as a tree, members, recent events, the flags on for it),
persons and a person's page. Everything shown was ingested: the templates escape it."""

from __future__ import annotations

from typing import Any

from flask import abort, jsonify, request
from werkzeug.wrappers import Response

from ..api.directory import json_scalar
from ..store import NotFound
from . import bp
from .data import TREE_PAGE, ancestors, flags_for
from .views import back_to, group_url, person_url, project, render, store

PAGE = 50
COUNT_UP_TO = 10_000  # a group's children are counted up to this (then "over 10,000")


def _page() -> int:
    raw = request.args.get("page", "1")
    return max(1, int(raw)) if raw.isdigit() and len(raw) < 7 else 1


def _as_typed_too(value: str) -> list[Any]:
    """A searched property value matches as the text typed and as what it reads as in
    JSON (seats=5 finds the number 5 and the text "5"; vip=true the boolean)."""
    typed = json_scalar(value)
    return [value] if typed == value and type(typed) is str else [value, typed]


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
        properties={prop_key: _as_typed_too(prop_value)} if prop_key else None,
        limit=PAGE, offset=(page - 1) * PAGE)
    keys = store().group_property_keys(p["id"], group_type) if group_type else []
    return render("groups.html", types=types, group_type=group_type, rows=rows, total=total,
                  q=search, prop=prop_key, value=prop_value, page=page, pages=-(-total // PAGE),
                  keys=keys)


def _members_after() -> tuple[float, int] | None:
    """Where a page of members starts (`members_after`, "<last_seen>:<person id>")."""
    seen, _, person = request.args.get("members_after", "").partition(":")
    try:
        return (float(seen), int(person)) if person else None
    except ValueError:
        return None


def _after() -> tuple[str, str] | None:
    """The (type, key) a page of children starts after (`after_type`, `after_key`)."""
    if "after_key" not in request.args:
        return None
    return request.args.get("after_type", ""), request.args.get("after_key", "")


@bp.get("/group")
def group_profile_by_query() -> str:
    """A group's profile at /ui/group?type=&key= (the address of keys like '..')."""
    return group_profile(request.args.get("type", ""), request.args.get("key", ""))


@bp.get("/groups/<group_type>/<path:group_key>")
def group_profile(group_type: str, group_key: str) -> str:
    """A group's profile; its hierarchy shows one page of children, each with children of
    its own opened on demand (tree.js, through group_children), never the whole tree."""
    p = project()
    try:
        group = store().get_group(p["id"], group_type, group_key, members=0, children=0)
    except NotFound:
        abort(404, f"no group {group_type}/{group_key} in this project")
    children, more = store().children_page(p["id"], group_type, group_key, _after(), TREE_PAGE)
    members, more_members = store().members_page(group["id"], _members_after(), PAGE)
    members_total = store().members_count(group["id"], COUNT_UP_TO)
    count = store().children_count(p["id"], group_type, group_key, COUNT_UP_TO) if (
        more or _after()) else len(children)
    return render("group.html", group=group, children_count=count, tree_page=TREE_PAGE,
                  here=group_url(group_type, group_key), members=members,
                  more_members=more_members, members_total=members_total,
                  members_after=_members_after(), members_page=PAGE,
                  children_up_to=COUNT_UP_TO,
                  ancestors=list(reversed(ancestors(p["id"], group_type, group_key))),
                  children=children, more=more, after=_after(),
                  flags=flags_for(p["id"], groups={group_type: group_key}))


@bp.get("/tree")
def group_children() -> Response:
    """One page of a group's children as JSON (?type=&key=[&after_type=&after_key=]) for
    the profile's tree: each with its address and whether it has children; `next`, the
    arguments of the page after it, or null."""
    p = project()
    group_type, key = request.args.get("type", ""), request.args.get("key", "")
    children, more = store().children_page(p["id"], group_type, key, _after(), TREE_PAGE)
    for c in children:
        c["url"] = group_url(c["group_type"], c["group_key"])
    last = children[-1] if children else None
    return jsonify(children=children, next={
        "after_type": last["group_type"], "after_key": last["group_key"]} if (
        more and last) else None)


@bp.get("/persons")
def persons_list() -> Response | str:
    p = project()
    page = _page()
    wanted = request.args.get("q", "").strip()
    if wanted:  # a distinct id asked for: its page, if it exists
        try:
            store().get_person(p["id"], wanted)
            return back_to(person_url(wanted))
        except NotFound:
            pass
    rows, total = store().list_persons(p["id"], limit=PAGE, offset=(page - 1) * PAGE)
    return render("persons.html", rows=rows, total=total, page=page, pages=-(-total // PAGE),
                  q=wanted, missing=bool(wanted))


@bp.get("/person")
def person_page_by_query() -> str:
    """A person's page at /ui/person?id= (the address of distinct ids like '..')."""
    return person_page(request.args.get("id", ""))


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
