"""Helpers shared by the blueprints: the service on the app, token checks, CORS."""

from __future__ import annotations

import base64
from typing import Any

from flask import Response, current_app, request

from ..errors import Unauthorized
from ..service import FlagService


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


def admin_project() -> dict[str, Any]:
    """The project of the `Authorization: Bearer <secret_key>`; 401 otherwise. The public
    api token is refused here (403) so a leaked browser token cannot change flags."""
    from ..errors import Forbidden

    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized("admin routes need Authorization: Bearer <secret_key>")
    project = service().project_for_token(token, "secret")
    if project is None:
        if service().project_for_token(token, "api") is not None:
            raise Forbidden("that is the public api token; admin routes need the secret key")
        raise Unauthorized("unknown or revoked secret key")
    return project
