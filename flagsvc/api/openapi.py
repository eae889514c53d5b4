"""The OpenAPI 3 document of the whole service, built with apispec from `flagsvc.schemas`.

Operations are declared here as data (one `Op` per path and method). When the document is
built, every URL rule of the running app is checked against them: a rule that differs from
a documented path only by a trailing slash, or whose converters match a documented
concrete path (`/v1/<kind>` vs `/v1/identify`), is documented with that operation. A rule
matching nothing stays out, and the test that every rule is documented fails.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Any

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from flask import Flask, Response, current_app, jsonify
from werkzeug.exceptions import HTTPException
from werkzeug.routing import Map, RoutingException, Rule

from .. import schemas as s

TITLE = "flagsvc"
VERSION = "1.0"
JSON = "application/json"

ERRORS = {
    "400": ("BadRequest", "Malformed JSON, wrong body type, or a bad header value"),
    "401": ("Unauthorized", "No valid token (admin: `Authorization: Bearer <secret_key>`)"),
    "403": ("Forbidden", "A valid token of the wrong kind (the public api token on admin routes)"),
    "404": ("NotFound", "No such object in this project"),
    "409": ("Conflict", "Stale version (body has `current_version`) or duplicate key"),
    "413": ("PayloadTooLarge", "The body is over the documented limit"),
    "422": ("ValidationError", "Invalid fields; `errors` maps each field path to messages"),
    "428": ("PreconditionRequired", "A write without `version` or `If-Match`"),
    "503": ("Unavailable", "The database could not be reached in time; retry"),
}
ADMIN_ERRORS = ("401", "403", "503")
BODY_ERRORS = ("400", "413", "422")


@dataclass
class Op:
    summary: str
    tag: str
    ok: tuple[int, Any]  # (status, schema or None)
    body: Any = None
    query: Any = None
    errors: tuple[str, ...] = ()
    auth: str | None = "bearerAuth"
    description: str = ""
    headers: dict[str, str] = field(default_factory=dict)  # response headers -> description
    request_headers: tuple[str, ...] = ()
    also_ok: dict[int, str] = field(default_factory=dict)  # other success statuses -> meaning
    error_bodies: dict[str, Any] = field(default_factory=dict)  # status -> its own schema


def admin(summary: str, ok: tuple[int, Any], body: Any = None, query: Any = None,
          errors: tuple[str, ...] = (), **kw: Any) -> Op:
    errs = ADMIN_ERRORS + (BODY_ERRORS if body is not None else ()) + (
        ("422",) if query is not None else ()) + errors
    return Op(summary, kw.pop("tag", "flags"), ok, body, query, tuple(sorted(set(errs))), **kw)


ETAG = {"ETag": "the flag's version, quoted: \"3\""}
IF_MATCH = ("If-Match",)


def admin_ops() -> dict[tuple[str, str], Op]:
    f = "/api/flags"
    return {
        (f, "get"): admin("List flags", (200, s.FlagListSchema), query=s.FlagListQuerySchema),
        (f, "post"): admin("Create a flag", (201, s.FlagSchema), body=s.FlagWriteSchema,
                           errors=("409",), headers={**ETAG, "Location": "the new flag's URL"},
                           description="Engine problems (operators, regexes, dates, semver, CIDR, "
                                       "dependency cycles) and a 6th group type are 422s."),
        (f + "/{ref}", "get"): admin("Get a flag by id or key", (200, s.FlagSchema),
                                     errors=("404",), headers=ETAG),
        (f + "/{ref}", "put"): admin(
            "Replace a flag's rules", (200, s.FlagSchema), body=s.FlagWriteSchema,
            errors=("404", "409", "428"), headers=ETAG, request_headers=IF_MATCH,
            description="Needs the version read (`version` in the body or `If-Match`)."),
        (f + "/{ref}", "patch"): admin(
            "Change some fields of a flag", (200, s.FlagSchema), body=s.FlagWriteSchema,
            errors=("404", "409", "428"), headers=ETAG, request_headers=IF_MATCH,
            description="Needs the version read (`version` in the body or `If-Match`)."),
        (f + "/{ref}", "delete"): admin("Soft-delete a flag", (200, s.FlagSchema),
                                        errors=("400", "404", "409"), headers=ETAG,
                                        request_headers=IF_MATCH),
        (f + "/{ref}/restore", "post"): admin("Restore a deleted flag", (200, s.FlagSchema),
                                              errors=("400", "404", "409"), headers=ETAG,
                                              request_headers=IF_MATCH),
        (f + "/preview", "post"): admin(
            "Blast radius of a draft flag", (200, s.PreviewSchema), body=s.FlagInputSchema,
            description="Evaluates the draft against every stored group of its bucket_by type "
                        "(every stored person when it is bucketed by $person)."),
        (f + "/{ref}/preview", "get"): admin("Blast radius of a saved flag", (200, s.PreviewSchema),
                                             errors=("404", "422")),
        (f + "/{ref}/groups", "get"): admin("Groups a saved flag is on (or off) for",
                                            (200, s.FlagGroupsPageSchema),
                                            query=s.FlagGroupsQuerySchema, errors=("404",)),
        (f + "/import", "post"): admin(
            "Import flags from a flagsvc export, Unleash or PostHog",
            (200, s.FlagImportResultSchema), body=s.FlagImportSchema, errors=("409",),
            description="All or nothing: a flag that cannot be converted (unless "
                        "skip_unimportable) or fails the checks of create is a 422 listing "
                        "every problem, and nothing is written. Existing keys are updated; "
                        "409 if the project changed while importing (nothing written)."),
        (f + "/explain", "post"): admin("Explain a draft flag for a context",
                                        (200, s.ExplainSchema), body=s.ExplainRequestSchema),
        (f + "/{ref}/explain", "post"): admin(
            "Explain a flag for a context", (200, s.ExplainSchema), body=s.ExplainRequestSchema,
            errors=("404",), description="A `flag` in the body explains that draft instead."),
        ("/api/audit", "get"): admin("The audit log, newest first", (200, s.AuditPageSchema),
                                     query=s.AuditQuerySchema, errors=("404",), tag="audit"),
        ("/api/group_types", "get"): admin("List group types", (200, s.GroupTypeListSchema),
                                           tag="groups"),
        ("/api/group_types", "post"): admin(
            "Create a group type", (201, s.GroupTypeSchema), body=s.GroupTypeInputSchema,
            tag="groups", description="200 if it exists; a 6th group type is a 422.",
            also_ok={200: "The group type already existed"}),
        ("/api/group_types/{group_type}", "patch"): admin(
            "Rename an unused group type", (200, s.GroupTypeSchema), body=s.GroupTypeInputSchema,
            tag="groups", errors=("404", "409"),
            description="Its groups, parent links and the default group type follow; 409 if "
                        "a flag (deleted ones included) names it or the new name exists."),
        ("/api/group_types/{group_type}", "delete"): admin(
            "Delete an unused group type with its groups", (200, s.GroupTypeDeletedSchema),
            tag="groups", errors=("404", "409"),
            description="409 if a flag (deleted ones included) names it, or it is the "
                        "project's default_group_type. Its groups and their memberships are "
                        "deleted; stored events keep theirs."),
        ("/api/groups", "get"): admin(
            "List or search groups", (200, s.GroupPageSchema), query=s.GroupQuerySchema,
            tag="groups", description="Filter by property with `properties.<key>=<value>` "
                                      "(JSON numbers and booleans match as such)."),
        ("/api/groups/{group_type}/{group_key}", "get"): admin(
            "A group's profile", (200, s.GroupProfileSchema), errors=("404",), tag="groups"),
        ("/api/groups/{group_type}/{group_key}/properties", "get"): admin(
            "A group's stored properties and parent (for in-process evaluators)",
            (200, s.StoredPropertiesSchema), errors=("404",), tag="definitions"),
        ("/api/persons", "get"): admin("List persons", (200, s.PersonPageSchema),
                                       query=s.PageQuerySchema, tag="persons"),
        ("/api/persons/{distinct_id}", "get"): admin("A person with properties and groups",
                                                     (200, s.PersonSchema), errors=("404",),
                                                     tag="persons"),
        ("/api/persons/{distinct_id}/properties", "get"): admin(
            "A person's stored properties (for in-process evaluators)",
            (200, s.StoredPropertiesSchema), errors=("404",), tag="definitions"),
        ("/api/project", "get"): admin("Project settings", (200, s.ProjectSchema), tag="project"),
        ("/api/project", "patch"): admin("Change project settings", (200, s.ProjectSchema),
                                         body=s.ProjectPatchSchema, tag="project"),
        ("/api/project/signing_keys", "post"): admin(
            "Create (rotate) the project's signing key", (201, s.SigningKeyCreatedSchema),
            body=s.SigningKeyRotateSchema, tag="project",
            description="The key is in this answer only. Older keys keep verifying for "
                        "`grace_seconds` (default 3600; 0 revokes them now)."),
        ("/api/project/tokens", "post"): admin(
            "Rotate the project's api token or secret key", (201, s.TokenRotatedSchema),
            body=s.TokenRotateSchema, tag="project",
            description="The new token is in this answer only. The old one keeps working "
                        "for `grace_seconds` (default 3600; 0 revokes it now)."),
        (f + "/definitions", "get"): admin(
            "Flag definitions for in-process evaluators", (200, s.DefinitionsSchema),
            tag="definitions", headers={"ETag": "strong; send it back as If-None-Match"},
            request_headers=("If-None-Match",),
            description="304 with an empty body when If-None-Match is the current ETag."),
        ("/api/openapi.json", "get"): Op("This document", "meta", (200, None), auth=None),
    }


def public_ops() -> dict[tuple[str, str], Op]:
    ops: dict[tuple[str, str], Op] = {}
    decide = Op("Evaluate flags (PostHog /flags protocol, v2/v4 shape)", "decide",
                (200, s.DecideResponseSchema), body=s.DecideRequestSchema,
                errors=("400", "401", "413", "503"), auth=None,
                description="Authenticated by `api_key` / `token` in the body (public api token).")
    legacy = Op("Evaluate flags (PostHog /decide; v=3 legacy shape, v=4 like /flags)", "decide",
                (200, s.DecideResponseSchema), body=s.DecideRequestSchema,
                errors=("400", "401", "413", "503"), auth=None, description=decide.description)
    for path in ("/flags", "/flags/"):
        ops[(path, "post")] = decide
    for path in ("/decide", "/decide/"):
        ops[(path, "post")] = legacy
    ingest_errors = ("400", "401", "413", "503")
    for kind in ("identify", "group", "track", "page", "screen", "alias", "batch", "import"):
        ops[(f"/v1/{kind}", "post")] = Op(
            f"Segment {kind}", "ingestion", (200, s.IngestResponseSchema),
            body=s.SegmentRequestSchema, errors=ingest_errors, auth="basicAuth",
            description="`writeKey` in the body, or HTTP Basic with the api token as user name.")
    for path in ("/batch", "/capture", "/e", "/i/v0/e", "/track", "/engage"):
        for p in (path, path + "/"):
            ops[(p, "post")] = Op(
                "PostHog capture" + (" (or Amplitude Batch API: an `events` list)"
                                     if path == "/batch" else ""),
                "ingestion", (200, s.IngestResponseSchema),
                body=s.PostHogCaptureSchema, errors=ingest_errors, auth=None,
                description="`api_key` / `token` in the body; gzip accepted.",
                error_bodies=({c: s.SharedIngestErrorSchema for c in ingest_errors}
                              if path in ("/batch", "/track", "/engage") else {}))
    mixpanel = ("Mixpanel `data=` (JSON or base64 JSON; query, form or body) with the token "
                "inside; answers `1`/`0` or, with verbose=1, {status, error}. Records without "
                "a Mixpanel token are PostHog capture.")
    for path in ("/track", "/engage", "/groups", "/import"):
        for p in (path, path + "/"):
            for method in ("get", "post"):
                if method == "post" and path not in ("/groups", "/import"):
                    continue  # documented above as PostHog capture, same handler
                ops[(p, method)] = Op(f"Mixpanel {path[1:]}", "ingestion", (200, None),
                                      errors=ingest_errors, auth=None, description=mixpanel + (
                                          " /import is /track (old events too), with the "
                                          "project token in each event as on /track."
                                          if path == "/import" else ""),
                                      error_bodies={c: s.MixpanelErrorSchema
                                                    for c in ingest_errors})
    amplitude = ("Amplitude: `api_key` in the body (or form); answers {code, events_ingested} "
                 "or {code, error, events_with_invalid_fields}; an unknown api_key is "
                 "400 `Invalid API key: <key>` (as Amplitude answers: its SDKs then drop "
                 "the events), a missing one 400 with missing_field.")
    for path, what in (("/2/httpapi", "HTTP V2 API"), ("/identify", "Identify API"),
                       ("/groupidentify", "Group Identify API")):
        for p in (path, path + "/"):
            ops[(p, "post")] = Op(f"Amplitude {what}", "ingestion", (200, None),
                                  errors=ingest_errors, auth=None, description=amplitude,
                                  error_bodies={c: s.AmplitudeErrorSchema
                                                for c in ingest_errors})
    for kind in ("identify", "group", "track"):
        ops[(f"/v2/{kind}", "post")] = Op(
            f"Accoil {kind}", "ingestion", (200, s.IngestResponseSchema),
            body=s.AccoilRequestSchema, errors=ingest_errors, auth="basicAuth",
            description="`Authorization: Basic <token>` (the raw api token).")
    for path in ("/array/{token}/config", "/array/{token}/config.js"):
        ops[(path, "get")] = Op(
            "posthog-js remote config" + (" (script)" if path.endswith(".js") else ""),
            "decide", (200, s.RemoteConfigSchema), errors=("401",), auth=None,
            description="`token`: the public api token. Flags on, every PostHog product "
                        "flagsvc does not have off; the .js form sets "
                        "`window._POSTHOG_REMOTE_CONFIG[token]`.")
    ops[("/static/{name}", "get")] = Op(
        "posthog-js's build files (PostHog's snippet loads api_host/static/array.js)",
        "decide", (302, None), errors=("404",), auth=None,
        headers={"Location": "the file in FLAGSVC_POSTHOG_JS_ASSETS (a version folder dropped)"},
        description="flagsvc hosts no posthog-js files: a redirect to the operator's copy "
                    "(FLAGSVC_POSTHOG_JS_ASSETS), else 404 saying so.")
    ops[("/flags/definitions", "get")] = Op(
        "posthog-node local-evaluation poll: no definitions (every flag through /flags)",
        "decide", (200, None), errors=("401",), auth=None, request_headers=("If-None-Match",),
        description="`?token=<api_token>`. Answers `{flags: [], group_type_mapping: {}, "
                    "cohorts: {}}` with an ETag; flagsvc's own definitions are "
                    "/api/flags/definitions.")
    ofrep = ("OFREP (OpenFeature Remote Evaluation Protocol). Errors have `errorCode` and "
             "`errorDetails` (and `key` for one flag): 400 PARSE_ERROR, INVALID_CONTEXT or "
             "TARGETING_KEY_MISSING, 404 FLAG_NOT_FOUND; 401 (flagsvc's error body) for an "
             "unknown token. Auth: "
             "`X-API-Key` or `Authorization: Bearer` with the public api token.")
    ofrep_errors = {c: s.OfrepErrorSchema for c in ("400", "404")}
    ops[("/ofrep/v1/evaluate/flags/{key}", "post")] = Op(
        "OFREP: evaluate one flag", "openfeature", (200, s.OfrepEvaluationSchema),
        body=s.OfrepRequestSchema, errors=("400", "401", "404", "413", "503"),
        auth="ofrepAuth", description=ofrep, error_bodies=ofrep_errors)
    ops[("/ofrep/v1/evaluate/flags", "post")] = Op(
        "OFREP: evaluate every flag", "openfeature", (200, s.OfrepBulkSchema),
        body=s.OfrepRequestSchema, errors=("400", "401", "413", "503"), auth="ofrepAuth",
        description=ofrep + " 304 with an empty body when If-None-Match is the answer's ETag.",
        headers={"ETag": "Of this answer (context and flags)"},
        request_headers=("If-None-Match",), error_bodies=ofrep_errors)
    ops[("/healthz", "get")] = Op("Liveness", "operations", (200, s.HealthSchema), auth=None)
    ops[("/readyz", "get")] = Op("Readiness (the database answers)", "operations",
                                 (200, s.HealthSchema), errors=("503",), auth=None)
    ops[("/metrics", "get")] = Op("Prometheus metrics (text format)", "operations", (200, None),
                                  errors=("404",), auth=None)
    return ops


_CONVERTER = re.compile(r"<(?:[^:<>]+:)?([^<>]+)>")


def openapi_path(rule: str) -> str:
    return _CONVERTER.sub(r"{\1}", rule)


def _twin(rule: Rule, method: str, ops: dict[tuple[str, str], Op]) -> Op | None:
    """The documented operation this rule serves under another spelling, if any. A rule with
    converters (`/v1/<any(identify,group):kind>`) gets the operations of every documented
    path it serves, summarized together."""
    path = openapi_path(rule.rule)
    for (p, m), op in ops.items():
        if m == method and p.rstrip("/") == path.rstrip("/"):
            return op
    if not rule.arguments:
        return None
    probe = Map([Rule(rule.rule, methods=[method.upper()], endpoint="x")],
                strict_slashes=False).bind("localhost")
    served: list[Op] = []
    for (p, m), op in sorted(ops.items()):
        if m != method or "{" in p or op in served:
            continue
        for candidate in (p, p.rstrip("/"), p.rstrip("/") + "/"):
            try:
                probe.match(candidate, method=method.upper())
            except (HTTPException, RoutingException):
                continue
            served.append(op)
            break
    if not served:
        return None
    summaries = list(dict.fromkeys(op.summary for op in served))
    return replace(served[0], summary=", ".join(summaries))


def operations(app: Flask) -> dict[tuple[str, str], Op]:
    """The declared operations plus the app's rules that serve one under another spelling."""
    ops = {**public_ops(), **admin_ops()}
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        path = openapi_path(rule.rule)
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            m = method.lower()
            if (path, m) not in ops:
                twin = _twin(rule, m, ops)
                if twin is not None:
                    if rule.arguments:  # a value the converter does not accept is a 404
                        twin = replace(twin, errors=tuple(sorted(set(twin.errors) | {"404"})))
                    ops[(path, m)] = twin
    return ops


def _operation(path: str, method: str, op: Op) -> dict[str, Any]:
    status, schema = op.ok
    ok: dict[str, Any] = {"description": op.summary}
    if schema is not None:
        ok["content"] = {JSON: {"schema": schema}}
    elif path == "/metrics":
        ok["content"] = {"text/plain": {"schema": {"type": "string"}}}
    else:
        ok["content"] = {JSON: {"schema": {"type": "object"}}}
    if op.headers:
        ok["headers"] = {h: {"description": d, "schema": {"type": "string"}}
                         for h, d in op.headers.items()}
    responses: dict[str, Any] = {str(status): ok}
    for other, meaning in op.also_ok.items():
        responses[str(other)] = {**ok, "description": meaning}
    if "If-None-Match" in op.request_headers:
        responses["304"] = {"description": "Not modified (empty body)"}
    for code in op.errors:
        if code in op.error_bodies:
            responses[code] = {"description": ERRORS[code][1],
                               "content": {JSON: {"schema": op.error_bodies[code]}}}
        else:
            responses[code] = ERRORS[code][0]
    out: dict[str, Any] = {
        "summary": op.summary, "tags": [op.tag], "responses": responses,
        "operationId": method + re.sub(r"[^A-Za-z0-9]+", "_", path).rstrip("_"),
    }
    if op.description:
        out["description"] = op.description
    if op.auth:
        out["security"] = [{op.auth: []}]
    params: list[Any] = [
        {"in": "header", "name": h, "required": False, "schema": {"type": "string"}}
        for h in op.request_headers]
    if op.query is not None:
        params.append({"in": "query", "schema": op.query})
    if params:
        out["parameters"] = params
    if op.body is not None:
        out["requestBody"] = {"required": True, "content": {JSON: {"schema": op.body}}}
    return out


def build(app: Flask) -> dict[str, Any]:
    spec = APISpec(
        title=TITLE, version=VERSION, openapi_version="3.0.3", plugins=[MarshmallowPlugin()],
        info={"description": "Group-level feature flags: decide (PostHog-compatible), ingestion "
                             "(Segment, PostHog, Accoil) and the admin JSON API."})
    spec.components.security_scheme(
        "bearerAuth", {"type": "http", "scheme": "bearer",
                       "description": "The project's secret key (admin API and definitions)"})
    spec.components.security_scheme(
        "basicAuth", {"type": "http", "scheme": "basic",
                      "description": "The project's public api token as user name (or raw)"})
    spec.components.security_scheme(
        "ofrepAuth", {"type": "apiKey", "in": "header", "name": "X-API-Key",
                      "description": "The public api token (or `Authorization: Bearer` with it)"})
    spec.components.schema("Error", schema=s.ErrorSchema)
    spec.components.schema("FlagInput", schema=s.FlagInputSchema)
    spec.components.schema("Flag", schema=s.FlagSchema)
    for name, description in ERRORS.values():
        spec.components.response(name, {"description": description,
                                        "content": {JSON: {"schema": "Error"}}})
    by_path: dict[str, dict[str, Any]] = {}
    for (path, method), op in sorted(operations(app).items()):
        by_path.setdefault(path, {})[method] = _operation(path, method, op)
    # `<any(a,b):name>` converters accept only those values (anything else is a 404).
    choices: dict[tuple[str, str], list[str]] = {}
    for rule in app.url_map.iter_rules():
        for options, name in re.findall(r"<any\(([^)]*)\):(\w+)>", rule.rule):
            choices[(openapi_path(rule.rule), name)] = [o.strip() for o in options.split(",")]
    for path, ops in by_path.items():
        params = [{"in": "path", "name": n, "required": True,
                   "schema": {"type": "string", **({"enum": choices[(path, n)]}
                                                   if (path, n) in choices else {})}}
                  for n in re.findall(r"{([^}]+)}", path)]
        spec.path(path=path, operations=ops, parameters=params or None)
    return spec.to_dict()


def document() -> dict[str, Any]:
    """The document of the current app, built once per app."""
    doc = current_app.extensions.get("flagsvc.openapi")
    if doc is None:
        doc = current_app.extensions["flagsvc.openapi"] = build(current_app)  # type: ignore[arg-type]
    return doc


def serve() -> Response:
    """GET /api/openapi.json (no auth: the document holds no data)."""
    return jsonify(document())
