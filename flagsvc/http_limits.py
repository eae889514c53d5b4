"""The largest request body each route takes, by path: what the buffering worker
(http_reading.py) refuses with 413 from a request's headers, before any thread sees it,
and what the app's body readers (api/body.py callers, Flask's MAX_CONTENT_LENGTH) check
again. One table, so that the worker and the app agree.

- ingestion (PostHog, Segment, Amplitude, Mixpanel routes): FLAGSVC_MAX_INGEST_BODY_BYTES
  (8 MiB): posthog-python fills a batch until it passes 5 MiB, and one event may be up to
  900 KiB, so a stock client's batch is always a little over 5 MiB;
- the console's pages (/ui): CONSOLE_FORM_BYTES (64 KiB), they only take small forms
  (sign-in, password, users; the console's JSON goes to /api), and Werkzeug's
  MAX_FORM_MEMORY_SIZE does not apply to url-encoded forms;
- decide and OFREP (/flags, /decide, /ofrep): limits.MAX_DECIDE_BODY_BYTES (256 KiB): an
  evaluation context is small, and a big one costs every string operator its length;
- every other route (admin): FLAGSVC_MAX_BODY_BYTES (5 MiB).

A route that wants its own limit adds a row to ROUTE_LIMITS: its path prefixes and a
setting name (or a number of bytes).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .limits import MAX_DECIDE_BODY_BYTES

INGEST_PATHS = ("/batch", "/capture", "/e", "/i/v0/e", "/track", "/engage", "/groups",
                "/import", "/identify", "/groupidentify", "/v1", "/v2", "/2/httpapi")

CONSOLE_FORM_BYTES = 64 * 1024

# (path prefixes, setting or bytes): the first row whose prefix is the path or a parent of
# it wins.
ROUTE_LIMITS: list[tuple[tuple[str, ...], str | int]] = [
    (INGEST_PATHS, "MAX_INGEST_BODY_BYTES"),
    (("/ui",), CONSOLE_FORM_BYTES),
    (("/flags", "/decide", "/ofrep"), MAX_DECIDE_BODY_BYTES),
]


class BodyLimits:
    """`for_path(path)`: the body limit of a request path (query and all)."""

    def __init__(self, settings: Mapping[str, Any]) -> None:
        self.default = int(settings["MAX_BODY_BYTES"])
        self.routes = [(prefixes, limit if isinstance(limit, int) else int(settings[limit]))
                       for prefixes, limit in ROUTE_LIMITS]
        self.largest = max([self.default, *(limit for _, limit in self.routes)])

    def for_path(self, path: str) -> int:
        path = path.split("?", 1)[0]
        if path.startswith(("http://", "https://")):  # absolute-form request target
            path = "/" + path.split("/", 3)[3] if path.count("/") >= 3 else "/"
        for prefixes, limit in self.routes:
            for prefix in prefixes:
                if path == prefix or path.startswith(prefix + "/"):
                    return limit
        return self.default
