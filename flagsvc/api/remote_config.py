"""What PostHog's SDKs fetch besides decide (SPEC §5.1). posthog-js: the remote config,
`GET /array/<api_token>/config` (JSON) and `/array/<api_token>/config.js` (a script that sets
`window._POSTHOG_REMOTE_CONFIG[token]`), in the shape PostHog's own server answers: feature
flags on, every PostHog product flagsvc does not have off, so the stock SDK loads nothing else
and logs no error. posthog-node with a personal API key: its local-evaluation poll,
`GET /flags/definitions?token=<api_token>`, answered with no definitions in PostHog's format
(flagsvc's own definitions are `GET /api/flags/definitions` for FlagClient), so the client
evaluates every flag through /flags and its poll neither fails nor logs. PostHog's snippet
loads posthog-js itself from `api_host/static/array.js`: flagsvc hosts no posthog-js files,
but redirects `/static/` to the operator's copy (the POSTHOG_JS_ASSETS setting).
"""

from __future__ import annotations

import re
from typing import Any

import orjson
from flask import Blueprint, Response, request

from ..errors import NotFoundError
from .common import add_cors, config, public_project

bp = Blueprint("remote_config", __name__)
bp.after_request(add_cors)

# Browsers and proxies may keep the answer briefly (it only changes with the token).
_CACHE = "public, max-age=300"


def remote_config(token: str) -> dict[str, Any]:
    """The config of one project: the fields posthog-js (1.4xx) reads, each explicitly off
    except flags. `hasFeatureFlags` true makes posthog-js load flags from /flags right away;
    no `analytics.endpoint`, so events keep going to the default capture path."""
    return {
        "token": token,
        "supportedCompression": ["gzip", "gzip-js"],
        "hasFeatureFlags": True,
        "captureDeadClicks": False,
        "capturePerformance": False,
        "autocapture_opt_out": True,
        "autocaptureExceptions": False,
        "errorTracking": {"autocaptureExceptions": False, "suppressionRules": []},
        "elementsChainAsString": True,
        "sessionRecording": False,
        "heatmaps": False,
        # Not false: posthog-js (1.449) loads its surveys bundle from api_host's
        # /static/ whenever the key is a boolean or a list, even false; only an absent
        # (null) key keeps it from asking flagsvc for a file it does not host.
        "surveys": None,
        "productTours": False,
        "conversations": False,
        "logs": False,
        "defaultIdentifiedOnly": True,
        "siteApps": [],
    }


@bp.route("/array/<token>/config", methods=["GET", "OPTIONS"])
def config_json(token: str) -> Response:
    if _preflight():
        return Response(status=204)
    public_project(token)
    return Response(orjson.dumps(remote_config(token)), mimetype="application/json",
                    headers={"Cache-Control": _CACHE})


@bp.route("/array/<token>/config.js", methods=["GET", "OPTIONS"])
def config_js(token: str) -> Response:
    if _preflight():
        return Response(status=204)
    public_project(token)
    entry = orjson.dumps({"config": remote_config(token), "siteApps": []}).decode()
    script = ("(function() {\n"
              "  window._POSTHOG_REMOTE_CONFIG = window._POSTHOG_REMOTE_CONFIG || {};\n"
              f"  window._POSTHOG_REMOTE_CONFIG[{orjson.dumps(token).decode()}] = {entry};\n"
              "})();\n")
    return Response(script, mimetype="application/javascript",
                    headers={"Cache-Control": _CACHE})


def _preflight() -> bool:
    return request.method == "OPTIONS"


# posthog-node's local-evaluation poll: nothing to evaluate locally, every flag goes to /flags.
_NO_DEFINITIONS = orjson.dumps({"flags": [], "group_type_mapping": {}, "cohorts": {}})
_NO_DEFINITIONS_ETAG = '"flagsvc-no-local-definitions"'


@bp.route("/flags/definitions", methods=["GET"])
def posthog_local_definitions() -> Response:
    public_project(request.args.get("token"))
    if _NO_DEFINITIONS_ETAG in request.headers.get("If-None-Match", ""):
        return Response(status=304, headers={"ETag": _NO_DEFINITIONS_ETAG})
    return Response(_NO_DEFINITIONS, mimetype="application/json",
                    headers={"ETag": _NO_DEFINITIONS_ETAG})


# posthog-js asks /static/<version>/<file> (strict script versioning) before /static/<file>.
_VERSIONED = re.compile(r"^\d+\.\d+\.\d+[^/]*/")


@bp.route("/static/<path:name>", methods=["GET", "OPTIONS"])
def posthog_js_file(name: str) -> Response:
    if _preflight():
        return Response(status=204)
    base = config("POSTHOG_JS_ASSETS")
    if not base:
        raise NotFoundError(
            f"flagsvc does not host posthog-js's files ({name}): load posthog-js from your "
            "own host, or set FLAGSVC_POSTHOG_JS_ASSETS to a copy of its dist/ folder")
    target = f"{base.rstrip('/')}/{_VERSIONED.sub('', name, count=1)}"
    if request.query_string:
        target += "?" + request.query_string.decode("latin-1")
    return Response(status=302, headers={"Location": target})
