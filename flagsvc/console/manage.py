"""Console pages of the project's history and administration: the audit log with
before/after diffs, project settings and token rotation (their script calls the admin API),
and users (admins)."""

from __future__ import annotations

from typing import Any

from flask import abort, request
from werkzeug.wrappers import Response

from .. import accounts
from ..store import ROLES, Conflict, NotFound
from ..writes import users as writes
from . import bp
from .data import diff
from .views import back_to, check_csrf, project, render, require, session, store


@bp.get("/audit")
def audit() -> str:
    p = project()
    flag_key = request.args.get("flag", "").strip()
    flag_id = None
    if flag_key:
        try:
            flag_id = store().get_flag(p["id"], flag_key)["id"]
        except NotFound:
            abort(404, f"no flag {flag_key!r} in this project")
    before = request.args.get("before", "")
    entries = store().audit_log(p["id"], flag_id=flag_id, limit=50,
                                before_id=int(before) if before.isdigit() and len(before) < 19
                                else None)
    for e in entries:
        e["changes"] = diff(e["before"], e["after"])
    more = entries[-1]["id"] if len(entries) == 50 else None
    return render("audit.html", entries=entries, flag_key=flag_key, more=more)


@bp.get("/settings")
def settings() -> str:
    require("admin")
    p = project()
    return render("settings.html", settings=store().get_project(p["id"]),
                  group_types=store().group_types(p["id"]),
                  signing_keys=store().signing_keys(p["id"]))


def _actor() -> str:
    """Who a users-page change is by, as the admin API names console users."""
    return f"user {session()['user']['email']}"


def _mine() -> set[int] | None:
    """The projects whose users the signed-in admin manages: None for an admin of every
    project, who manages every user."""
    me = session()["user"]
    return None if me["all_projects"] else set(store().user_project_ids(me))


def _manageable(target: dict[str, Any], mine: set[int] | None) -> bool:
    """An admin of some projects manages only the users who open nothing else (never an
    every-project user, so never the admins above them)."""
    if mine is None:
        return True
    return not target["all_projects"] and set(store().user_project_ids(target)) <= mine


def _users_page(created: dict[str, Any] | None = None, error: str | None = None) -> str:
    mine = _mine()
    users = [u for u in store().list_users() if _manageable(u, mine)]
    for u in users:
        u["project_ids"] = None if u["all_projects"] else store().user_project_ids(u)
        u["state"] = accounts.sign_in_state(store(), u)
    return render("users.html", users=users, roles=ROLES, created=created, error=error,
                  all_projects=_projects_of(mine), every_project=mine is None)


def _projects_of(mine: set[int] | None) -> list[dict[str, Any]]:
    return [p for p in store().list_projects() if mine is None or p["id"] in mine]


def _chosen_projects(mine: set[int] | None, default_mine: bool = False) -> list[int] | None:
    """The projects ticked in a users form; None for "every project", which only an admin
    of every project may give. An admin of some projects gives only theirs (a new user
    with none ticked gets all of the admin's, `default_mine`)."""
    if request.form.get("all_projects") and mine is None:
        return None
    known = {p["id"] for p in _projects_of(mine)}
    chosen = sorted({int(v) for v in request.form.getlist("project") if v.isdigit()} & known)
    return chosen or (sorted(known) if default_mine and mine is not None else chosen)


@bp.get("/users")
def users() -> str:
    require("admin")
    return _users_page()


@bp.post("/users")
def user_create() -> Response | str:
    require("admin")
    check_csrf()
    email, role = request.form.get("email", ""), request.form.get("role", "")
    error, created = None, None
    try:
        if role not in ROLES:
            raise ValueError("choose a role")
        user, temporary = writes.create_user(store(), email, role,
                                             projects=_chosen_projects(_mine(), True),
                                             actor=_actor())
        created = {"email": user["email"], "password": temporary}
    except (ValueError, Conflict) as e:
        error = str(e)
    return _users_page(created, error)


@bp.post("/users/<int:user_id>")
def user_change(user_id: int) -> Response | str:
    """Change a user's role or projects, disable / enable them, or give them a one-time
    password."""
    require("admin")
    check_csrf()
    target = store().get_user(user_id)
    mine = _mine()
    if target is None or not _manageable(target, mine):
        abort(404, "no such user")
    action = request.form.get("action", "")
    if target["id"] == session()["user"]["id"] and action in ("role", "disable"):
        abort(409, "you cannot change your own role or disable yourself")
    created = None
    if action == "role" and request.form.get("role") in ROLES:
        writes.change_user(store(), user_id, role=request.form["role"], actor=_actor())
    elif action in ("disable", "enable"):
        writes.change_user(store(), user_id, disabled=action == "disable", actor=_actor())
    elif action == "projects":
        writes.set_user_projects(store(), user_id, _chosen_projects(mine), actor=_actor())
    elif action == "reset":
        created = {"email": target["email"],
                   "password": writes.reset_password(store(), user_id, actor=_actor())}
    else:
        abort(400, "unknown action")
    if created:
        return _users_page(created)
    return back_to("/ui/users")
