"""Helpers shared by the blueprints: the service on the app, token checks, CORS."""

from __future__ import annotations

import base64
from typing import Any

from flask import Response, current_app, g, request

from ..errors import Unauthorized
from ..service import FlagService
from ..store.projects import fingerprint


def service() -> FlagService:
    return current_app.extensions["flagsvc"]


def config(name: str) -> Any:
    return current_app.config["FLAGSVC"][name]


def public_project(token: Any, svc: FlagService | None = None) -> dict[str, Any]:
    """The project of a public api token; 401 for anything else (a secret key included)."""
    svc = svc or service()
    project = svc.project_for_token(token, "api") if isinstance(token, str) else None
    if project is None:
        if not token:
            raise Unauthorized("an api token is required (api_key / token / writeKey)")
        raise Unauthorized("unknown or revoked api token")
    return project


def basic_auth_user() -> str | None:
    """The user name of HTTP Basic auth, or the raw token Accoil sends as `Basic <token>`."""
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic" or not value.strip():
        return None
    value = value.strip()
    try:
        decoded = base64.b64decode(value, validate=True).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        return value
    user, sep, _ = decoded.partition(":")
    return user if sep else value


def cors_headers(environ: dict[str, Any], origins: str) -> list[tuple[str, str]]:
    """CORS headers for browsers (requests that carry an allowed Origin); servers never
    send one, so they get none."""
    origin = environ.get("HTTP_ORIGIN")
    if not origin or (origins != "*" and origin not in [o.strip() for o in origins.split(",")]):
        return []
    return [("Access-Control-Allow-Origin", origin), ("Vary", "Origin"),
            ("Access-Control-Allow-Methods", "GET, POST, OPTIONS"),
            ("Access-Control-Allow-Headers", environ.get(
                "HTTP_ACCESS_CONTROL_REQUEST_HEADERS",
                "Content-Type, Authorization, Content-Encoding")),
            ("Access-Control-Max-Age", "86400")]


def add_cors(response: Response) -> Response:
    """Flask after-request hook: `cors_headers` on the response."""
    for name, value in cors_headers(request.environ, config("CORS_ORIGINS")):
        response.headers[name] = value
    return response


SESSION_COOKIE = "flagsvc_session"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


def client_address() -> str:
    """The client's address: the peer's; or, when the peer is a trusted proxy
    (FORWARDED_ALLOW_IPS), the nearest address its X-Forwarded-For names that is not
    itself a trusted proxy (a chain of named proxies is walked back; each appends the
    address it saw, so what a client wrote itself at the left is never reached while a
    proxy it did not pass stands right of it). With `*`, the proxy's own entry (the last)."""
    import ipaddress

    def trusted(address: str) -> bool:
        for allowed in config("FORWARDED_ALLOW_IPS").split(","):
            allowed = allowed.strip()
            try:
                if ipaddress.ip_address(address) in ipaddress.ip_network(allowed, strict=False):
                    return True
            except ValueError:
                continue
        return False

    peer = request.remote_addr or ""
    chain = [a.strip() for a in request.headers.get("X-Forwarded-For", "").split(",")]
    chain = [a for a in chain if a]
    if not chain:
        return peer
    anyone = "*" in [a.strip() for a in config("FORWARDED_ALLOW_IPS").split(",")]
    if not (anyone or trusted(peer)):
        return peer
    if anyone:
        return chain[-1]
    for address in reversed(chain):
        if not trusted(address):
            return address
    return chain[0]


def session_policy() -> Any:
    from ..accounts import SessionPolicy

    return SessionPolicy(config("SESSION_IDLE_SECONDS"), config("SESSION_MAX_SECONDS"))


def console_session() -> dict[str, Any] | None:
    """The signed-in console session of this request (its cookie), looked up once."""
    from ..accounts import current_session

    if "flagsvc_session" not in g:
        g.flagsvc_session = current_session(service().store,
                                            request.cookies.get(SESSION_COOKIE), session_policy())
    return g.flagsvc_session


def session_project(session: dict[str, Any]) -> dict[str, Any] | None:
    """The project the session has chosen, if its user may still open it (else their first)."""
    store = service().store
    allowed = store.user_project_ids(session["user"])
    pid = session["project_id"] if session["project_id"] in allowed else (
        allowed[0] if allowed else None)
    return store.get_project(pid) if pid is not None else None


def actor() -> str | None:
    """Who this request's changes are by, for the audit log: "user <email>" (console) or
    "secret key <fingerprint>" (admin API: 12 hex digits of the key's SHA-256)."""
    return g.get("flagsvc_actor")


def request_may(need: str) -> bool:
    """Whether the authority `admin_project` accepted for this request may also do `need`
    (the secret key may do anything in its project; a console user what their role allows)."""
    from ..accounts import may

    role = g.get("flagsvc_role")
    return role is None or may(role, need)


def admin_project(need: str = "admin") -> dict[str, Any]:
    """The project of the `Authorization: Bearer <secret_key>` (which may do anything in
    it), or of a signed-in console user whose role allows `need` ("read", "flags" or
    "admin"); 401 otherwise. The public api token is refused here (403) so a leaked browser
    token cannot change flags. A console user's change must carry the session's CSRF token
    in `X-CSRF-Token` (a cross-site page can send the cookie, never that header)."""
    from ..accounts import csrf_ok, may
    from ..errors import Forbidden

    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if not header and request.cookies.get(SESSION_COOKIE):
        session = console_session()
        if session is None:
            raise Unauthorized("your console session has expired: sign in again")
        if request.method not in SAFE_METHODS and not csrf_ok(
                session, request.headers.get(CSRF_HEADER)):
            raise Forbidden("missing or wrong CSRF token: this change did not come from a "
                            "flagsvc console page")
        user = session["user"]
        if user["must_change_password"]:
            raise Forbidden("choose your own password first (/ui/password)")
        if not may(user["role"], need):
            raise Forbidden(f"a {user['role']} cannot do this (it needs "
                            f"{'an admin' if need == 'admin' else 'an editor'})")
        project = session_project(session)
        if project is None:
            raise Forbidden("you have no project: ask an admin to give you one")
        g.flagsvc_actor = f"user {user['email']}"
        g.flagsvc_role = user["role"]
        return project
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized("admin routes need Authorization: Bearer <secret_key>")
    project = service().project_for_token(token, "secret")
    if project is None:
        if service().project_for_token(token, "api") is not None:
            raise Forbidden("that is the public api token; admin routes need the secret key")
        raise Unauthorized("unknown or revoked secret key")
    g.flagsvc_actor = f"secret key {fingerprint(token)}"
    return project
