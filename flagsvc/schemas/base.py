"""What every schema module shares: the error body, times written as ISO 8601, and the
group type / bucket_by fields."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from marshmallow import Schema, ValidationError, fields, validate

from ..limits import MAX_GROUP_TYPE_LENGTH

PERSON = "$person"

_GROUP_TYPE = re.compile(r"^[^\s$\x00-\x1f][^\x00-\x1f]*$")

MAX_SQL_INT = 2**63 - 1  # the largest integer SQLite stores: larger ids cannot exist


def iso(ts: Any) -> str | None:
    """Unix seconds -> ISO 8601 UTC with milliseconds and a Z."""
    if ts is None or isinstance(ts, bool) or not isinstance(ts, (int, float)):
        return None
    dt = datetime.fromtimestamp(ts, UTC)
    return dt.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Timestamp(fields.DateTime):
    """A time stored as Unix seconds, written as an ISO 8601 UTC string (date-time in OpenAPI)."""

    def _serialize(self, value: Any, attr: Any, obj: Any, **kwargs: Any) -> Any:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return iso(value)
        return super()._serialize(value, attr, obj, **kwargs)


def _group_type_name(value: str) -> None:
    if not _GROUP_TYPE.match(value):
        raise ValidationError("a group type name is non-empty, has no control characters and "
                              "does not start with '$' or a space")


def _bucket_by(value: str) -> None:
    if value != PERSON:
        _group_type_name(value)


class GroupTypeName(fields.String):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(validate=[validate.Length(1, MAX_GROUP_TYPE_LENGTH), _group_type_name],
                         **kwargs)


class BucketBy(fields.String):
    """A group type name, or `$person` (bucket on the distinct id)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(validate=[validate.Length(1, MAX_GROUP_TYPE_LENGTH), _bucket_by],
                         **kwargs)


class MaxEntries:
    """A validator: at most `n` entries in a map (apispec does not read it: pair it with
    metadata {"maxProperties": n} for the OpenAPI document)."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __call__(self, value: Any) -> None:
        if len(value) > self.n:
            raise ValidationError(f"{len(value)} entries; the limit is {self.n}")


class StrictBoolean(fields.Boolean):
    """true or false, nothing else ("false" and 0 are not read as booleans)."""

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> Any:
        if type(value) is not bool:
            raise ValidationError("must be true or false")
        return value


class ErrorSchema(Schema):
    """The one error body of every endpoint."""

    code = fields.String(required=True, metadata={"description": "stable machine-readable code"})
    message = fields.String(required=True)
    detail = fields.String(required=True,
                           metadata={"description": "same as message (PostHog SDKs)"})
    errors = fields.Raw(metadata={
        "description": "admin: field -> messages (validation errors); ingestion: the rejected "
                       "events, [{index, reason, message_id}]",
        "oneOf": [
            {"type": "object", "additionalProperties": {"type": "array",
                                                        "items": {"type": "string"}}},
            {"type": "array", "items": {"type": "object", "properties": {
                "index": {"type": "integer"}, "reason": {"type": "string"},
                "message_id": {"type": "string", "nullable": True}}}},
        ]})
    current_version = fields.Integer(metadata={"description": "the flag's version (stale write)"})
