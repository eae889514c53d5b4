"""Console pages of the project's history and administration: the audit log with
before/after diffs, project settings and token rotation (their script calls the admin API),
and users (admins)."""

from __future__ import annotations

from typing import Any

from flask import abort, request
from werkzeug.wrappers import Response

from .. import accounts
from ..store import ROLES, Conflict, NotFound
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


def _users_page(created: dict[str, Any] | None = None, error: str | None = None) -> str:
    users = store().list_users()
    for u in users:
        u["project_ids"] = None if u["all_projects"] else store().user_project_ids(u)
    return render("users.html", users=users, roles=ROLES, created=created, error=error,
                  all_projects=store().list_projects())


def _chosen_projects() -> list[int] | None:
    """The projects ticked in a users form; None for "every project"."""
    if request.form.get("all_projects"):
        return None
    known = {p["id"] for p in store().list_projects()}
    return sorted({int(v) for v in request.form.getlist("project") if v.isdigit()} & known)


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
        user, temporary = accounts.create_user(store(), email, role,
                                               projects=_chosen_projects())
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
    if target is None:
        abort(404, "no such user")
    action = request.form.get("action", "")
    if target["id"] == session()["user"]["id"] and action in ("role", "disable"):
        abort(409, "you cannot change your own role or disable yourself")
    created = None
    if action == "role" and request.form.get("role") in ROLES:
        store().update_user(user_id, role=request.form["role"])
    elif action in ("disable", "enable"):
        store().update_user(user_id, disabled=action == "disable")
    elif action == "projects":
        store().set_user_projects(user_id, _chosen_projects())
    elif action == "reset":
        created = {"email": target["email"],
                   "password": accounts.reset_password(store(), user_id)}
    else:
        abort(400, "unknown action")
    if created:
        return _users_page(created)
    return back_to("/ui/users")
