"""Marshmallow schemas of the admin JSON API (SPEC §4, §7), also the source of the OpenAPI document.

Input schemas check the *shape* of a request (types, lengths, ranges, slugs); what only the
engine can judge (operators, regexes, dates, cycles) is checked by `validate_flag` in the
admin blueprint. Output schemas turn store rows into the wire format: times become ISO 8601
UTC strings (the store keeps Unix seconds) and nothing secret is ever dumped.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from marshmallow import (
    EXCLUDE,
    Schema,
    ValidationError,
    fields,
    post_dump,
    pre_dump,
    pre_load,
    validate,
    validates_schema,
)

from .engine import ALIASES, OPERATORS

PERSON = "$person"
MAX_KEY_LENGTH = 200
# Keys a flag cannot take: they are routes under /api/flags/.
RESERVED_FLAG_KEYS = frozenset({"definitions", "preview", "explain"})
# Output-only fields of a flag; accepted (and ignored) on input so a GET body can be PUT back.
FLAG_READ_ONLY = ("id", "created_at", "updated_at", "deleted", "deleted_at")

_SLUG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
_GROUP_TYPE = re.compile(r"^[^\s$\x00-\x1f][^\x00-\x1f]*$")


def iso(ts: Any) -> str | None:
    """Unix seconds -> ISO 8601 UTC with milliseconds and a Z."""
    if ts is None or isinstance(ts, bool) or not isinstance(ts, (int, float)):
        return None
    dt = datetime.fromtimestamp(ts, UTC)
    return dt.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Timestamp(fields.DateTime):
    """A time stored as Unix seconds, written as an ISO 8601 UTC string (date-time in OpenAPI)."""

    def _serialize(self, value: Any, attr: Any, obj: Any, **kwargs: Any) -> str | None:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return iso(value)
        return super()._serialize(value, attr, obj, **kwargs)


def _flag_key(value: str) -> None:
    if not _SLUG.match(value):
        raise ValidationError("a key is letters, digits, '-', '_' and '.', starting with a letter "
                              "or digit")
    if value.isdigit():
        raise ValidationError("a key cannot be only digits (it would be read as a flag id)")
    if value in RESERVED_FLAG_KEYS:
        raise ValidationError(f"{value!r} is reserved (it is a route under /api/flags/)")


def _group_type_name(value: str) -> None:
    if not _GROUP_TYPE.match(value):
        raise ValidationError("a group type name is non-empty, has no control characters and "
                              "does not start with '$' or a space")


def _bucket_by(value: str) -> None:
    if value != PERSON:
        _group_type_name(value)


class GroupTypeName(fields.String):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(validate=[validate.Length(1, 100), _group_type_name], **kwargs)


class BucketBy(fields.String):
    """A group type name, or `$person` (bucket on the distinct id)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(validate=[validate.Length(1, 100), _bucket_by], **kwargs)


# ---------------------------------------------------------------- errors


class ErrorSchema(Schema):
    """The one error body of every endpoint."""

    code = fields.String(required=True, metadata={"description": "stable machine-readable code"})
    message = fields.String(required=True)
    detail = fields.String(required=True, metadata={"description": "same as message (PostHog SDKs)"})
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


# ---------------------------------------------------------------- flags

OPERATOR_NAMES = sorted(set(OPERATORS) | set(ALIASES))


class PropertyFilterSchema(Schema):
    type = fields.String(load_default="person", validate=validate.OneOf(["person", "group", "flag"]),
                         metadata={"description": "person / group property, or another flag's value"})
    group_type = GroupTypeName(allow_none=True, metadata={"description": "required for type group"})
    key = fields.String(required=True, validate=validate.Length(1, 400))
    operator = fields.String(load_default="exact", validate=validate.OneOf(OPERATOR_NAMES))
    value = fields.Raw(allow_none=True, load_default=None)
    negate = fields.Boolean(load_default=False)
    case_insensitive = fields.Boolean(load_default=False)

    @validates_schema
    def _group_type_needed(self, data: Mapping[str, Any], **kwargs: Any) -> None:
        if data.get("type") == "group" and not data.get("group_type"):
            raise ValidationError("required for a group property", "group_type")


class ConditionSchema(Schema):
    properties = fields.List(fields.Nested(PropertyFilterSchema), load_default=list,
                             validate=validate.Length(max=100))
    rollout_percentage = fields.Integer(strict=True, allow_none=True, load_default=None,
                                        validate=validate.Range(0, 100),
                                        metadata={"description": "0-100; null or omitted = 100"})
    variant = fields.String(allow_none=True, load_default=None)
    bucket_by = BucketBy(allow_none=True, load_default=None,
                         metadata={"description": "overrides the flag's bucket_by"})


class VariantSchema(Schema):
    key = fields.String(required=True, validate=[validate.Length(1, MAX_KEY_LENGTH),
                                                 validate.Regexp(_SLUG)])
    weight = fields.Integer(required=True, strict=True, validate=validate.Range(0, 10_000))


class FlagInputSchema(Schema):
    """A flag as the admin API takes it (create, replace, patch with partial=True, drafts)."""

    key = fields.String(required=True, validate=[validate.Length(1, MAX_KEY_LENGTH), _flag_key])
    name = fields.String(load_default="", validate=validate.Length(max=400))
    description = fields.String(load_default="", validate=validate.Length(max=10_000))
    active = fields.Boolean(load_default=True)
    bucket_by = BucketBy(load_default=PERSON)
    hash_namespace = fields.String(allow_none=True, load_default=None,
                                   validate=validate.Length(1, MAX_KEY_LENGTH))
    conditions = fields.List(fields.Nested(ConditionSchema), load_default=lambda: [{
        "properties": [], "rollout_percentage": None, "variant": None, "bucket_by": None}],
        validate=validate.Length(max=200))
    variants = fields.List(fields.Nested(VariantSchema), load_default=list,
                           validate=validate.Length(max=100))
    payloads = fields.Dict(keys=fields.String(validate=validate.Length(1, MAX_KEY_LENGTH)),
                           values=fields.Raw(allow_none=True), load_default=dict,
                           metadata={"description": "variant key (or \"true\") -> any JSON"})
    version = fields.Integer(strict=True, load_only=True, validate=validate.Range(min=1),
                             metadata={"description": "the version being changed (updates)"})

    @pre_load
    def _drop_read_only(self, data: Any, **kwargs: Any) -> Any:
        if isinstance(data, Mapping):
            return {k: v for k, v in data.items() if k not in FLAG_READ_ONLY}
        return data


class FlagSchema(Schema):
    """A flag as the admin API returns it."""

    id = fields.Integer(required=True)
    key = fields.String(required=True)
    name = fields.String(dump_default="")
    description = fields.String(dump_default="")
    active = fields.Boolean(dump_default=True)
    bucket_by = fields.String(dump_default=PERSON)
    hash_namespace = fields.String(allow_none=True, dump_default=None)
    # No default for conditions: absent means "one condition for everyone" to the engine,
    # while [] means "no condition ever matches".
    conditions = fields.List(fields.Nested(ConditionSchema))
    variants = fields.List(fields.Nested(VariantSchema), dump_default=list)
    payloads = fields.Dict(keys=fields.String(), values=fields.Raw(allow_none=True), dump_default=dict)
    version = fields.Integer(required=True)
    deleted = fields.Boolean(dump_default=False)
    created_at = Timestamp()
    updated_at = Timestamp()

    @pre_dump
    def _skip_rules(self, flag: Any, **kwargs: Any) -> Any:
        # The rules are copied as stored by _faithful; the nested schemas document them.
        if isinstance(flag, Mapping):
            return {k: v for k, v in flag.items() if k not in _FLAG_RULES}
        return flag

    @post_dump(pass_original=True)
    def _faithful(self, data: dict[str, Any], original: Any, **kwargs: Any) -> dict[str, Any]:
        """The rules exactly as stored: an in-process evaluator compiling this output must
        get what the server compiles, even for keys the schema does not list."""
        if isinstance(original, Mapping):
            for k, v in original.items():
                if k in _FLAG_RULES or (
                        k not in data and k not in _FLAG_HIDDEN):
                    data[k] = v
        return data


_FLAG_HIDDEN = frozenset({"deleted_at"})
_FLAG_RULES = frozenset({"conditions", "variants", "payloads"})


class FlagListSchema(Schema):
    flags = fields.List(fields.Nested(FlagSchema))


class FlagListQuerySchema(Schema):
    include_deleted = fields.Boolean(load_default=False)


# ---------------------------------------------------------------- audit


class AuditQuerySchema(Schema):
    flag_id = fields.String(metadata={"description": "a flag id or key"})
    limit = fields.Integer(load_default=100, validate=validate.Range(1, 1000))
    before_id = fields.Integer(validate=validate.Range(min=1),
                               metadata={"description": "page: entries older than this id"})


class AuditEntrySchema(Schema):
    id = fields.Integer()
    flag_id = fields.Integer(allow_none=True)
    flag_key = fields.String(allow_none=True)
    action = fields.String(metadata={"description": "created, updated, deleted or restored"})
    version = fields.Integer(allow_none=True)
    before = fields.Nested(FlagSchema, allow_none=True)
    after = fields.Nested(FlagSchema, allow_none=True)
    created_at = Timestamp()


class AuditPageSchema(Schema):
    entries = fields.List(fields.Nested(AuditEntrySchema))
    next_before_id = fields.Integer(allow_none=True,
                                    metadata={"description": "pass as before_id for the next page"})


# ---------------------------------------------------------------- preview / explain


class PreviewSchema(Schema):
    key = fields.String()
    bucket_by = fields.String()
    total = fields.Integer(metadata={"description": "groups of the bucket_by type evaluated"})
    enabled = fields.Integer(metadata={"description": "groups the flag is on for"})
    counts = fields.Dict(keys=fields.String(), values=fields.Integer(),
                         metadata={"description": "\"false\" and \"true\" or each variant -> groups"})
    reasons = fields.Dict(keys=fields.String(), values=fields.Integer())
    sample = fields.Dict(keys=fields.String(), values=fields.List(fields.String()),
                         metadata={"description": "\"true\" or variant -> first 10 group keys"})


class FlagGroupsQuerySchema(Schema):
    enabled = fields.Boolean(allow_none=True, load_default=None,
                             metadata={"description": "true: groups it is on for; false: off"})
    limit = fields.Integer(load_default=100, validate=validate.Range(1, 1000))
    offset = fields.Integer(load_default=0, validate=validate.Range(min=0))


class FlagGroupSchema(Schema):
    group_key = fields.String()
    enabled = fields.Boolean()
    variant = fields.String(allow_none=True)
    value = fields.Raw(metadata={"description": "the variant, else the enabled boolean"})
    reason = fields.String()


class FlagGroupsPageSchema(Schema):
    bucket_by = fields.String()
    total = fields.Integer(metadata={"description": "groups matching the enabled filter"})
    limit = fields.Integer()
    offset = fields.Integer()
    groups = fields.List(fields.Nested(FlagGroupSchema))


class ContextSchema(Schema):
    """Who is asking, as in a decide request."""

    class Meta:
        unknown = EXCLUDE  # decide bodies carry api_key etc.; explain ignores them

    distinct_id = fields.String(allow_none=True, load_default=None, validate=validate.Length(max=400))
    groups = fields.Dict(keys=GroupTypeName(), values=fields.String(validate=validate.Length(1, 400)),
                         load_default=dict)
    person_properties = fields.Dict(keys=fields.String(), values=fields.Raw(allow_none=True),
                                    load_default=dict)
    group_properties = fields.Dict(
        keys=fields.String(), values=fields.Dict(keys=fields.String(), values=fields.Raw(allow_none=True)),
        load_default=dict)


class ExplainRequestSchema(ContextSchema):
    flag = fields.Dict(metadata={"description": "a draft flag (FlagInput) to explain instead of "
                                                "the saved one"})


class ExplainFilterSchema(Schema):
    type = fields.String()
    group_type = fields.String(allow_none=True)
    key = fields.String()
    operator = fields.String()
    value = fields.Raw(allow_none=True)
    negate = fields.Boolean()
    actual = fields.Raw(allow_none=True, metadata={"description": "the value the evaluator had"})
    matched = fields.Boolean()


class ExplainConditionSchema(Schema):
    index = fields.Integer()
    bucket_by = fields.String()
    group_key = fields.String(allow_none=True)
    inferred_from = fields.List(fields.List(fields.String()), allow_none=True)
    bucket = fields.Integer(allow_none=True)
    rollout_percentage = fields.Integer()
    in_rollout = fields.Boolean()
    properties = fields.List(fields.Nested(ExplainFilterSchema))
    matched = fields.Boolean()


class ExplainSchema(Schema):
    key = fields.String()
    value = fields.Raw(metadata={"description": "variant key, else true/false"})
    enabled = fields.Boolean()
    variant = fields.String(allow_none=True)
    reason = fields.String()
    condition_index = fields.Integer(allow_none=True)
    error = fields.String(allow_none=True)
    bucket_by = fields.String()
    group_key = fields.String(allow_none=True, metadata={"description": "the identifier hashed"})
    inferred_from = fields.List(fields.List(fields.String()), allow_none=True,
                                metadata={"description": "[type, key] path walked up the hierarchy"})
    bucket = fields.Integer(allow_none=True)
    payload = fields.Raw(allow_none=True)
    conditions = fields.List(fields.Nested(ExplainConditionSchema))


# ---------------------------------------------------------------- group types, groups, persons


class GroupTypeSchema(Schema):
    name = fields.String()
    index = fields.Integer()
    created_at = Timestamp(allow_none=True)


class GroupTypeListSchema(Schema):
    group_types = fields.List(fields.Nested(GroupTypeSchema))


class GroupTypeInputSchema(Schema):
    name = GroupTypeName(required=True)


class GroupRefSchema(Schema):
    group_type = fields.String(allow_none=True)
    group_key = fields.String()


class GroupSchema(Schema):
    group_type = fields.String()
    group_key = fields.String()
    properties = fields.Dict(keys=fields.String(), values=fields.Raw(allow_none=True))
    parent = fields.Nested(GroupRefSchema, allow_none=True)
    created_at = Timestamp(allow_none=True)
    last_seen = Timestamp(allow_none=True)
    updated_at = Timestamp(allow_none=True)


class MemberSchema(Schema):
    distinct_id = fields.String(allow_none=True)
    first_seen = Timestamp(allow_none=True)
    last_seen = Timestamp(allow_none=True)


class EventSchema(Schema):
    event = fields.String(allow_none=True)
    type = fields.String()
    distinct_id = fields.String(allow_none=True)
    timestamp = Timestamp(allow_none=True)
    properties = fields.Dict(keys=fields.String(), values=fields.Raw(allow_none=True))


class GroupProfileSchema(GroupSchema):
    children = fields.List(fields.Nested(GroupRefSchema))
    members = fields.List(fields.Nested(MemberSchema))
    recent_events = fields.List(fields.Nested(EventSchema))


class PageQuerySchema(Schema):
    limit = fields.Integer(load_default=100, validate=validate.Range(1, 1000))
    offset = fields.Integer(load_default=0, validate=validate.Range(min=0))


class GroupQuerySchema(PageQuerySchema):
    group_type = fields.String(metadata={"description": "only groups of this type"})
    search = fields.String(metadata={"description": "group key contains this"})


class GroupPageSchema(Schema):
    groups = fields.List(fields.Nested(GroupSchema))
    total = fields.Integer()
    limit = fields.Integer()
    offset = fields.Integer()


class PersonGroupSchema(GroupRefSchema):
    first_seen = Timestamp(allow_none=True)
    last_seen = Timestamp(allow_none=True)


class PersonSchema(Schema):
    distinct_id = fields.String(allow_none=True)
    distinct_ids = fields.List(fields.String())
    properties = fields.Dict(keys=fields.String(), values=fields.Raw(allow_none=True))
    groups = fields.List(fields.Nested(PersonGroupSchema))
    created_at = Timestamp(allow_none=True)
    last_seen = Timestamp(allow_none=True)


class PersonSummarySchema(Schema):
    distinct_id = fields.String(allow_none=True)
    properties = fields.Dict(keys=fields.String(), values=fields.Raw(allow_none=True))
    created_at = Timestamp(allow_none=True)
    last_seen = Timestamp(allow_none=True)


class PersonPageSchema(Schema):
    persons = fields.List(fields.Nested(PersonSummarySchema))
    total = fields.Integer()
    limit = fields.Integer()
    offset = fields.Integer()


# ---------------------------------------------------------------- project


class ProjectSchema(Schema):
    """Project settings; the secret key is never part of it."""

    id = fields.Integer()
    name = fields.String()
    api_token = fields.String(metadata={"description": "the public token (apps, browsers)"})
    default_group_type = fields.String()
    private_properties = fields.Dict(keys=fields.String(), values=fields.String())
    event_retention_days = fields.Integer()
    created_at = Timestamp(allow_none=True)


class ProjectPatchSchema(Schema):
    name = fields.String(validate=validate.Length(1, 200))
    default_group_type = GroupTypeName()
    private_properties = fields.Dict(
        keys=fields.String(validate=validate.Length(1, 400)),
        values=fields.String(validate=validate.OneOf(["drop", "hash"])),
        metadata={"description": "property key -> \"drop\" or \"hash\""})
    event_retention_days = fields.Integer(strict=True, validate=validate.Range(1, 3650))


# ---------------------------------------------------------------- definitions (in-process evaluators)


class DefinitionsProjectSchema(Schema):
    id = fields.Integer()
    default_group_type = fields.String()


class DefinitionsPrivacySchema(Schema):
    hashed_keys = fields.List(fields.String(), metadata={
        "description": "Property keys stored as keyed hashes: evaluators hash the values "
                       "flags compare and requests give for them."})
    salt = fields.String(metadata={"description": "The project's key for those hashes."})


class DefinitionsSchema(Schema):
    flags = fields.List(fields.Nested(FlagSchema))
    group_types = fields.List(fields.Nested(GroupTypeSchema))
    project = fields.Nested(DefinitionsProjectSchema)
    privacy = fields.Nested(DefinitionsPrivacySchema)


class StoredPropertiesSchema(Schema):
    properties = fields.Dict(keys=fields.String(), values=fields.Raw(allow_none=True))
    parent = fields.Nested(GroupRefSchema, allow_none=True)


# ---------------------------------------------------------------- public surfaces (documented only)


class DecideRequestSchema(ContextSchema):
    api_key = fields.String(metadata={"description": "the project's public api token"})
    token = fields.String(metadata={"description": "same as api_key"})
    flag_keys_to_evaluate = fields.List(fields.String())


class DecideReasonSchema(Schema):
    code = fields.String()
    condition_index = fields.Integer(allow_none=True)
    description = fields.String()


class DecideFlagMetadataSchema(Schema):
    id = fields.Integer(allow_none=True)
    version = fields.Integer(allow_none=True)
    payload = fields.String(allow_none=True, metadata={"description": "JSON-encoded payload"})


class DecideFlagSchema(Schema):
    key = fields.String()
    enabled = fields.Boolean()
    variant = fields.String(allow_none=True)
    reason = fields.Nested(DecideReasonSchema)
    metadata = fields.Nested(DecideFlagMetadataSchema)


class DecideResponseSchema(Schema):
    flags = fields.Dict(keys=fields.String(), values=fields.Nested(DecideFlagSchema),
                        metadata={"description": "/flags and /decide?v=4"})
    featureFlags = fields.Dict(keys=fields.String(), values=fields.Raw(),
                               metadata={"description": "legacy /decide?v=3"})
    featureFlagPayloads = fields.Dict(keys=fields.String(), values=fields.String(),
                                      metadata={"description": "legacy /decide?v=3"})
    errorsWhileComputingFlags = fields.Boolean()
    requestId = fields.String()
    evaluatedAt = fields.Integer(metadata={"description": "Unix milliseconds"})
    # posthog-js reads these from /decide answers; constant, documented for completeness.
    config = fields.Dict(metadata={"description": "posthog-js config (/decide)"})
    toolbarParams = fields.Dict(metadata={"description": "posthog-js (/decide)"})
    isAuthenticated = fields.Boolean(metadata={"description": "posthog-js (/decide)"})
    supportedCompression = fields.List(fields.String(),
                                       metadata={"description": "posthog-js (/decide)"})
    sessionRecording = fields.Boolean(metadata={"description": "posthog-js (/decide)"})
    capturePerformance = fields.Boolean(metadata={"description": "posthog-js (/decide)"})
    autocapture_opt_out = fields.Boolean(metadata={"description": "posthog-js (/decide)"})
    siteApps = fields.List(fields.Raw(), metadata={"description": "posthog-js (/decide)"})


class SegmentMessageSchema(Schema):
    type = fields.String(metadata={"description": "identify, group, track, page, screen, alias"})
    userId = fields.String()
    anonymousId = fields.String()
    groupId = fields.String()
    previousId = fields.String()
    event = fields.String()
    traits = fields.Dict()
    properties = fields.Dict()
    context = fields.Dict(metadata={"description": "context.groupId attributes a track to a group"})
    timestamp = fields.String()
    sentAt = fields.String()
    messageId = fields.String()


class SegmentRequestSchema(SegmentMessageSchema):
    writeKey = fields.String(metadata={"description": "the api token (or HTTP Basic user)"})
    batch = fields.List(fields.Nested(SegmentMessageSchema),
                        metadata={"description": "/v1/batch and /v1/import"})


class PostHogEventSchema(Schema):
    event = fields.String(metadata={"description": "$identify, $groupidentify, $set, or any event"})
    distinct_id = fields.String()
    properties = fields.Dict(metadata={"description": "$set, $set_once, $unset, $groups, "
                                                      "$group_type, $group_key, $group_set"})
    timestamp = fields.String()
    uuid = fields.String()


class PostHogCaptureSchema(PostHogEventSchema):
    api_key = fields.String()
    token = fields.String()
    batch = fields.List(fields.Nested(PostHogEventSchema))


class AccoilRequestSchema(Schema):
    userId = fields.String()
    groupId = fields.String()
    event = fields.String()
    traits = fields.Dict()
    timestamp = fields.Raw()


class IngestResponseSchema(Schema):
    success = fields.Boolean()
    status = fields.Raw(metadata={"description": "PostHog paths"})
    rejected = fields.List(fields.Dict(), metadata={
        "description": "the events of a partly good batch that were refused: "
                       "[{index, reason, message_id}] (the good ones are stored)"})
    warnings = fields.List(fields.String())


class HealthSchema(Schema):
    status = fields.String()
