"""The session gate of every console page, sign-in (with its limits on failures), sign-out,
the one-time password change, and the project switcher."""

from __future__ import annotations

from urllib.parse import quote, urlparse

from flask import redirect, render_template, request
from werkzeug.wrappers import Response

from .. import accounts
from ..api.common import (
    SESSION_COOKIE,
    client_address,
    config,
    console_session,
    session_policy,
)
from ..writes import users as writes
from . import bp
from .views import SignInNeeded, back_to, check_csrf, render, session, store

OPEN_ENDPOINTS = {"console.signin", "console.static"}


@bp.before_request
def _gate() -> Response | None:
    """Every page but sign-in needs a session; a user with a one-time password changes it
    first. State-changing requests are checked for the CSRF token by the routes."""
    if request.endpoint in OPEN_ENDPOINTS:
        return None
    s = console_session()
    if s is None:
        return redirect("/ui/signin?next=" + quote(_return_to()), code=303)
    if s["user"]["must_change_password"] and request.endpoint != "console.password" and (
            request.endpoint != "console.signout"):
        return redirect("/ui/password", code=303)
    return None


@bp.errorhandler(SignInNeeded)
def _sign_in(_: SignInNeeded) -> Response:
    return redirect("/ui/signin", code=303)


@bp.after_request
def _headers(response: Response) -> Response:
    """No page is framed (clickjacking), none cached, and scripts only from this origin."""
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("Content-Security-Policy",
                                "default-src 'self'; img-src 'self' data:; object-src 'none'; "
                                "base-uri 'none'; frame-ancestors 'none'; form-action 'self'")
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    if request.endpoint != "console.static":
        response.headers["Cache-Control"] = "no-store"
    return response


def _safe_next(target: str | None) -> str:
    """Only a path of this console (never another site) is followed after sign-in."""
    target = (target or "").rstrip("?")
    parsed = urlparse(target)
    if parsed.scheme or parsed.netloc or not target.startswith("/ui/") or "\\" in target or (
            any(ord(c) < 32 or ord(c) == 127 for c in target)):  # CR/LF: a header injection
        return "/ui/"
    return target


def _return_to() -> str:
    """Where sign-in leads back to: the page asked for, when it was a GET (or HEAD); after a
    form post (which a GET of its address would not repeat, a 405 at best) the page the form
    was on, when the Referer is of this site, else the flags list."""
    if request.method in ("GET", "HEAD"):
        return _safe_next(request.full_path)
    referer = urlparse(request.headers.get("Referer", ""))
    if referer.netloc != request.host or referer.scheme not in ("http", "https"):
        return "/ui/"
    page = _safe_next(referer.path + ("?" + referer.query if referer.query else ""))
    return page if page != "/ui/signout" else "/ui/"


def _same_origin() -> bool:
    """A sign-in posted from this site (login CSRF: another site must not sign the browser
    in as its own user). Browsers say where a form came from (Sec-Fetch-Site, Origin);
    a request without either (curl, a script) is no cross-site form."""
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None and site not in ("same-origin", "none"):
        return False
    origin = request.headers.get("Origin")
    return origin is None or urlparse(origin).netloc == request.host


def _set_cookie(response: Response, value: str, max_age: float | None) -> None:
    response.set_cookie(SESSION_COOKIE, value, max_age=int(max_age) if max_age else None,
                        path="/", httponly=True, samesite="Lax", secure=request.is_secure)


@bp.route("/signin", methods=["GET", "POST"])
def signin() -> Response | str | tuple[str, int] | tuple[str, int, dict[str, str]]:
    no_users = store().count_users() == 0
    if request.method == "GET":
        return render_template("signin.html", next=_safe_next(request.args.get("next")),
                               no_users=no_users, error=None, email="")
    if not _same_origin():
        return render_template("signin.html", next="/ui/", no_users=no_users, email="",
                               error="this sign-in did not come from this site's page"), 403
    email = request.form.get("email", "")
    try:
        user = accounts.verify(store(), email, request.form.get("password", ""),
                               client_address())
    except accounts.SignInRefused as e:
        page = render_template("signin.html", next=_safe_next(request.form.get("next")),
                               no_users=no_users, error=str(e), email=email)
        if isinstance(e, accounts.SignInLimited):
            return page, 429, {"Retry-After": str(e.wait)}
        return page, 401
    token, _ = accounts.start_session(store(), user, session_policy())
    response = back_to("/ui/password" if user["must_change_password"]
                       else _safe_next(request.form.get("next")))
    _set_cookie(response, token, config("SESSION_MAX_SECONDS"))
    return response


@bp.post("/signout")
def signout() -> Response:
    check_csrf()
    store().delete_session(session()["id"])
    response = back_to("/ui/signin")
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@bp.route("/password", methods=["GET", "POST"])
def password() -> Response | str:
    error = None
    if request.method == "POST":
        check_csrf()
        s = session()
        new, again = request.form.get("password", ""), request.form.get("confirm", "")
        current = request.form.get("current", "")
        try:
            accounts.verify(store(), s["user"]["email"], current, client_address())
            if new != again:
                raise ValueError("the two new passwords differ")
            if new == current:
                raise ValueError("choose a new password, not the one you have now")
            writes.reset_password(store(), s["user"]["id"], new, keep_session=s["id"],
                                  actor=f"user {s['user']['email']}")  # audited as any change
            return back_to("/ui/")
        except (accounts.SignInRefused, ValueError) as e:
            error = str(e)
    return render("password.html", error=error)


@bp.post("/project")
def switch_project() -> Response:
    """The switcher: the session opens another of the user's projects."""
    check_csrf()
    s = session()
    wanted = request.form.get("project_id", "")
    if wanted.isdigit() and int(wanted) in store().user_project_ids(s["user"]):
        store().set_session_project(s["id"], int(wanted))
    return back_to("/ui/")
