"""What the console's route modules share: the signed-in user and project of a request,
role checks, CSRF on form posts, and rendering with the page's common context."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlencode

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


def _path_safe(part: str) -> bool:
    """Whether an ingested key can be one segment of an address: quoted with safe='' it
    keeps no '/', but a decoded '/' would split or merge segments, and '.' or '..' (even
    as %2E%2E) is resolved away by the browser."""
    return part not in (".", "..") and "/" not in part


@bp.app_template_global("group_url")
def group_url(group_type: str, key: str) -> str:
    """A group profile's address: /ui/groups/<type>/<key>, or /ui/group?type=&key= for a
    type or key no path segment can hold."""
    if _path_safe(group_type) and _path_safe(key):
        return f"/ui/groups/{quote(group_type, safe='')}/{quote(key, safe='')}"
    return "/ui/group?" + urlencode({"type": group_type, "key": key})


@bp.app_template_global("person_url")
def person_url(distinct_id: str) -> str:
    """A person's page: /ui/persons/<id>, or /ui/person?id= (as group_url)."""
    if _path_safe(distinct_id):
        return "/ui/persons/" + quote(distinct_id, safe="")
    return "/ui/person?" + urlencode({"id": distinct_id})


@bp.app_template_global("with_args")
def with_args(url: str, **args: str) -> str:
    """`url` with more query arguments."""
    return url + ("&" if "?" in url else "?") + urlencode(args)


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
