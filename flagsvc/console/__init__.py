"""The web console (SPEC §9): server-rendered pages at /ui/ (Flask's Jinja2, autoescaped),
with small scripts of our own in static/ — no build step, no CDN.

Pages read through the store and the service; every change a page makes goes through the
admin JSON API (`flagsvc.api`), which accepts the console session and its CSRF token, so the
console has no write path of its own. The few form posts of the console itself (sign-in,
sign-out, password, project switch, users) check the session's CSRF token too.

Modules: `auth` (session gate, sign-in/out, switcher), `flags` (list, editor), `directory`
(groups, persons), `manage` (audit, settings, users); `views` holds what they share.
"""

from __future__ import annotations

from flask import Blueprint, Flask, redirect
from werkzeug.exceptions import HTTPException

bp = Blueprint("console", __name__, url_prefix="/ui", template_folder="templates",
               static_folder="static", static_url_path="/static")


def error_page(e: HTTPException) -> tuple[str, int]:
    """The console's error page (for /ui/ addresses no route answers)."""
    from .views import error_page as page

    return page(e)


def register(app: Flask) -> None:
    from . import auth, directory, flags, manage  # noqa: F401  (their routes join `bp`)

    app.register_blueprint(bp)
    app.add_url_rule("/", "console_root", lambda: redirect("/ui/"))
