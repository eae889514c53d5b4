"""Admin API: `POST /api/flags/import`, flags from a flagsvc export, Unleash or PostHog
(converted by `flagsvc.imports`, written by `flagsvc.imports.apply`, as `flagsvc flags
import` does). All or nothing: any flag that cannot be imported, or fails the admin API's
checks, makes the import a 422 listing every problem, and nothing is written."""

from __future__ import annotations

from typing import Any

from flask import Response

from .. import schemas as s
from .. import writes
from ..errors import ConflictError, ValidationFailed
from ..imports import Unimportable, convert
from ..imports.apply import skip_unresolved
from .adminlib import body, bp, json_response, load
from .common import actor, admin_project, service

_OPTIONS = {"unleash": ("environment", "group_types", "fields_"),
            "posthog": ("group_type_mapping",), "flagsvc": ()}


def _options(req: dict[str, Any]) -> dict[str, Any]:
    foreign = [("fields" if k == "fields_" else k) for k in
               ("environment", "group_types", "fields_", "group_type_mapping")
               if req.get(k) and k not in _OPTIONS[req["format"]]]
    if foreign:
        raise ValidationFailed(f"not options of format {req['format']}",
                               errors={k: [f"not an option of format {req['format']}"]
                                       for k in foreign})
    if req["format"] == "unleash":
        return {"environment": req.get("environment"), "group_types": req["group_types"],
                "fields": req["fields_"]}
    if req["format"] == "posthog":
        return {"group_types": req.get("group_type_mapping")}
    return {}


@bp.post("/flags/import")
def import_flags_route() -> Response:
    project = admin_project("flags")
    req = load(s.FlagImportSchema(), body())
    try:
        converted = convert(req["format"], req["data"], **_options(req))
    except Unimportable as e:
        raise ValidationFailed(f"the data is not a {req['format']} export",
                               errors={"data": [str(e)]}) from None
    if req["skip_unimportable"]:
        skip_unresolved(service().store, project["id"], converted)
    if converted.skipped and not req["skip_unimportable"]:
        raise ValidationFailed(
            "some flags cannot be imported (skip_unimportable imports the others)",
            errors={f"flags.{k}": [v] for k, v in converted.skipped.items()})
    done = writes.import_flags(service(), project["id"], converted.flags, req["dry_run"],
                               actor=actor())
    if done.conflict:
        raise ConflictError(done.conflict)
    if done.problems:
        raise ValidationFailed("some flags are not valid: nothing was imported",
                               errors={f"flags.{k}": v for k, v in done.problems.items()})
    return json_response(s.FlagImportResultSchema().dump({
        "dry_run": req["dry_run"], "created": done.created, "updated": done.updated,
        "restored": done.restored, "unchanged": done.unchanged, "group_types": done.group_types,
        "skipped": converted.skipped, "warnings": converted.warnings,
        "context_fields": converted.fields, "flags": converted.flags}))
