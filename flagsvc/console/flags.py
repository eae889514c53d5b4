"""Console pages of flags: the list (search, state, rollout, bucket type, variants, last
change and by whom) and the editor (its script saves, previews and explains through the
admin API)."""

from __future__ import annotations

from typing import Any

from flask import abort, request

from ..store import NotFound
from . import bp
from .data import editor_context, rollout_summary
from .views import project, render, require, store


def _matches(flag: dict[str, Any], q: str, state: str) -> bool:
    if flag["deleted"] != (state == "deleted"):
        return False
    if state == "active" and not flag.get("active", True):
        return False
    if state == "inactive" and flag.get("active", True):
        return False
    text = " ".join(str(flag.get(k) or "") for k in ("key", "name", "description")).lower()
    return q.lower() in text


@bp.get("/")
def flags_list() -> str:
    p = project()
    q, state = request.args.get("q", "").strip(), request.args.get("state", "all")
    changes = store().last_changes(p["id"])
    rows = [{"flag": f, "rollout": rollout_summary(f), "change": changes.get(f["id"])}
            for f in store().list_flags(p["id"], include_deleted=state == "deleted")
            if _matches(f, q, state)]
    return render("flags.html", rows=rows, q=q, state=state)


@bp.get("/new-flag")  # not under /flags/: a flag may be keyed "new"
def flag_new() -> str:
    require("flags")
    p = project()
    return render("flag_edit.html", flag=None, editor=editor_context(p["id"]), history=[])


@bp.get("/flags/<key>")
def flag_edit(key: str) -> str:
    p = project()
    try:
        flag = store().get_flag(p["id"], key)
    except NotFound:
        abort(404, f"no flag {key!r} in this project")
    history = store().audit_log(p["id"], flag_id=flag["id"], limit=5)
    return render("flag_edit.html", flag=flag, editor=editor_context(p["id"]), history=history)
