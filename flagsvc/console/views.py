"""What the console's route modules share: the signed-in user and project of a request,
role checks, CSRF on form posts, and rendering with the page's common context."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from flask import abort, redirect, render_template, request
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response

from ..accounts import csrf_ok, may
from ..api.common import console_session, service, session_project
from ..store import Store
from . import bp


class SignInNeeded(Exception):
    """The request has no live console session."""


def store() -> Store:
    return service().store


def session() -> dict[str, Any]:
    s = console_session()
    if s is None:
        raise SignInNeeded()
    return s


def user() -> dict[str, Any]:
    return session()["user"]


def project() -> dict[str, Any]:
    p = session_project(session())
    if p is None:
        abort(403, "you have no project: ask an admin to give you one")
    return p


def require(need: str) -> None:
    """403 unless the user's role allows `need` ("read", "flags", "admin")."""
    if not may(user()["role"], need):
        abort(403, f"a {user()['role']} cannot do this")


def check_csrf() -> None:
    """A console form post must carry the session's CSRF token (field or header)."""
    sent = request.form.get("csrf_token") or request.headers.get("X-CSRF-Token")
    if not csrf_ok(session(), sent):
        abort(403, "missing or wrong CSRF token: this form did not come from a flagsvc page")


def render(template: str, **context: Any) -> str:
    s = session()
    u = s["user"]
    ids = store().user_project_ids(u)
    projects = [p for p in store().list_projects() if p["id"] in ids]
    return render_template(template, me=u, csrf_token=s["csrf_token"], project=project(),
                           projects=projects, can_edit=may(u["role"], "flags"),
                           is_admin=may(u["role"], "admin"), **context)


def back_to(path: str) -> Response:
    return redirect(path, code=303)


@bp.app_template_filter("when")
def when(ts: float | None) -> str:
    """A stored time as UTC text (the same on every viewer's screen)."""
    if not ts:
        return "-"
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%d %H:%M UTC")


@bp.app_template_filter("value_text")
def value_text(value: Any) -> str:
    """A property value as plain text: a string as it is, anything else as JSON. Escaped by
    autoescape like any text, so markup in an ingested value is shown as its characters."""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


@bp.errorhandler(HTTPException)
def error_page(e: HTTPException) -> tuple[str, int]:
    """A console page's error as a page (the API's errors stay JSON)."""
    try:
        page = render("error.html", code=e.code, title=e.name, message=e.description)
    except SignInNeeded:
        page = render_template("error.html", me=None, code=e.code, title=e.name,
                               message=e.description)
    except HTTPException:  # signed in with no project: the page still offers sign-out
        s = session()
        page = render_template("error.html", me=s["user"], csrf_token=s["csrf_token"],
                               projects=[], code=e.code, title=e.name,
                               message=e.description)
    return page, e.code or 500
