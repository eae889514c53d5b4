"""Reading request bodies safely: size limits, gzip (bomb-proof), strict JSON.

Every surface reads its body through `read_json`, so the limits and error messages are
the same everywhere: oversize → 413, undecodable → 400 with a clear message.
"""

from __future__ import annotations

import base64
import zlib
from typing import Any
from urllib.parse import parse_qs

import orjson
from flask import Request
from gunicorn.http.errors import ParseException

from ..errors import BadRequest, PayloadTooLarge


def _gunzip(data: bytes, limit: int) -> bytes:
    """Decompress gzip/zlib with a hard output limit (a gzip bomb stops at `limit`)."""
    d = zlib.decompressobj(16 + zlib.MAX_WBITS if data[:2] == b"\x1f\x8b" else zlib.MAX_WBITS)
    try:
        out = d.decompress(data, limit + 1)
    except zlib.error as e:
        raise BadRequest(f"body is not valid gzip: {e}", code="invalid_body") from None
    if len(out) > limit or d.unconsumed_tail:
        raise PayloadTooLarge(f"decompressed body is over the {limit} byte limit")
    if not d.eof:
        raise BadRequest("body is truncated gzip", code="invalid_body")
    return out


def query_arg(environ: dict[str, Any], name: str) -> str | None:
    """One query-string argument (the first), read straight from the WSGI environ."""
    query = environ.get("QUERY_STRING")
    if not query or name not in query:
        return None
    values = parse_qs(query, keep_blank_values=True).get(name)
    return values[0] if values else None


def raw_body(environ: dict[str, Any], limit: int, form_data: bool = True) -> bytes:
    """The body bytes, decompressed if the client says so (header or PostHog's
    `compression=gzip-js` / `base64` query), within `limit` bytes. Works on the WSGI environ
    (no framework request object), so the decide path can skip Flask."""
    chunked = "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
    raw_length = "" if chunked else environ.get("CONTENT_LENGTH", "").strip()
    if raw_length and not (raw_length.isascii() and raw_length.isdigit()):  # digits only
        raise BadRequest("Content-Length is not a number", code="invalid_body")
    length = int(raw_length) if raw_length else None
    if length is not None and length > limit:
        raise PayloadTooLarge(f"request body is over the {limit} byte limit")
    stream = environ["wsgi.input"]
    try:
        if length is not None:
            data = stream.read(length) if length > 0 else b""
        elif environ.get("wsgi.input_terminated"):  # chunked, decoded by the server
            data = stream.read(limit + 1)
        else:  # no length and a server that does not end the stream: nothing safe to read
            data = b""
    except ParseException as e:  # gunicorn decodes chunks as they are read: a bad one
        raise BadRequest(f"the chunked body is malformed ({type(e).__name__})",
                         code="invalid_body") from None
    if len(data) > limit:
        raise PayloadTooLarge(f"request body is over the {limit} byte limit")
    encoding = environ.get("HTTP_CONTENT_ENCODING", "").lower().strip()
    compression = (query_arg(environ, "compression") or "").lower()
    if encoding in ("gzip", "x-gzip", "deflate") or compression in ("gzip", "gzip-js"):
        return _gunzip(data, limit)
    if encoding not in ("", "identity"):
        raise BadRequest(f"unsupported Content-Encoding {encoding!r}", code="invalid_body")
    if data[:2] == b"\x1f\x8b":  # gzip sent without saying so
        return _gunzip(data, limit)
    if form_data and (compression == "base64" or data[:5] == b"data="):
        form = parse_qs(data.decode("latin-1"))
        if "data" in form:
            try:
                return base64.b64decode(form["data"][0])
            except ValueError:
                raise BadRequest("data= is not valid base64", code="invalid_body") from None
    return data


def parse_json(data: bytes) -> Any:
    """Strict JSON: valid UTF-8, no NaN/Infinity, bounded nesting (orjson's limit)."""
    if not data.strip():
        raise BadRequest("request body is empty; a JSON object was expected", code="invalid_json")
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as e:
        raise BadRequest(f"request body is not valid JSON: {e}", code="invalid_json") from None


def read_json(request: Request | dict[str, Any], limit: int) -> Any:
    """The body as JSON (`request`: a Flask request or a WSGI environ)."""
    environ = request if isinstance(request, dict) else request.environ
    return parse_json(raw_body(environ, limit))


def read_object(request: Request | dict[str, Any], limit: int) -> dict[str, Any]:
    body = read_json(request, limit)
    if not isinstance(body, dict):
        raise BadRequest(f"request body must be a JSON object, not {type(body).__name__}",
                         code="invalid_json")
    return body
