"""One error hierarchy, mapped to one JSON body: {"code", "message", "detail", "errors"?}.

`detail` repeats `message` because the stock PostHog SDKs read that field; Segment's
clients read `code` and `message`.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from .store.db import DatabaseUnavailable

log = logging.getLogger("flagsvc")


class APIError(Exception):
    """An error with an HTTP status and a stable machine-readable code."""

    status = 400
    code = "bad_request"

    def __init__(self, message: str, errors: Any = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.errors = errors
        if code:
            self.code = code

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"code": self.code, "message": self.message, "detail": self.message}
        if self.errors is not None:
            out["errors"] = self.errors
        return out


class BadRequest(APIError):
    """The request cannot be understood (malformed JSON, wrong types)."""


class ValidationFailed(APIError):
    """The request is well-formed but its fields are invalid."""

    status = 422
    code = "validation_error"


class Unauthorized(APIError):
    """No valid token for this route."""

    status = 401
    code = "unauthorized"


class Forbidden(APIError):
    """The token is valid but not for this route."""

    status = 403
    code = "forbidden"


class NotFoundError(APIError):
    """No such object in this project."""

    status = 404
    code = "not_found"


class ConflictError(APIError):
    """The write conflicts with the stored state (stale version, duplicate key)."""

    status = 409
    code = "conflict"


class PreconditionRequired(APIError):
    """A version (or If-Match) is needed for this write."""

    status = 428
    code = "precondition_required"


class PayloadTooLarge(APIError):
    """The body (or an event in it) is over the documented limit."""

    status = 413
    code = "payload_too_large"


class UnsupportedMediaType(APIError):
    status = 415
    code = "unsupported_media_type"


class Unavailable(APIError):
    """The database could not be reached in time; retry."""

    status = 503
    code = "unavailable"


def error_body(e: Exception) -> tuple[int, dict[str, Any]]:
    """Status and JSON body (flagsvc's shape) for an exception raised while handling a
    request: an APIError as itself, a database that cannot be reached as 503 (retry),
    anything else as a 500 with a generic body (the details go to the log, not to the
    client). Routes of tools with an error shape of their own (Amplitude, Mixpanel) take
    the status and `message` from here."""
    if isinstance(e, APIError):
        return e.status, e.body()
    if isinstance(e, DatabaseUnavailable):
        log.warning("database unavailable: %s", e)
        err = Unavailable(f"the database is unavailable, retry: {e}")
        return err.status, err.body()
    log.exception("unexpected error", exc_info=e)
    return 500, {"code": "internal_error", "message": "internal error",
                 "detail": "internal error"}


def error_response(e: Exception) -> tuple[int, bytes]:
    """error_body, serialized."""
    status, body = error_body(e)
    return status, json.dumps(body).encode()
