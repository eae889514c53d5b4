"""Flags as the admin API takes and returns them, the audit log, previews, flag groups and
explain."""

from __future__ import annotations

import re
from collections.abc import Mapping
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

from .. import limits as L
from ..engine import ALIASES, OPERATORS
from .base import MAX_SQL_INT, PERSON, BucketBy, GroupTypeName, MaxEntries, Timestamp

MAX_KEY_LENGTH = L.MAX_FLAG_KEY_LENGTH
# Keys a flag cannot take: they are routes under /api/flags/.
RESERVED_FLAG_KEYS = frozenset({"definitions", "preview", "explain", "import"})
# Output-only fields of a flag; accepted (and ignored) on input so a GET body can be PUT back.
FLAG_READ_ONLY = ("id", "created_at", "updated_at", "deleted", "deleted_at")

_SLUG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")

OPERATOR_NAMES = sorted(set(OPERATORS) | set(ALIASES))


def _flag_key(value: str) -> None:
    if not _SLUG.match(value):
        raise ValidationError("a key is letters, digits, '-', '_' and '.', starting with a letter "
                              "or digit")
    if value.isdigit():
        raise ValidationError("a key cannot be only digits (it would be read as a flag id)")
    if value in RESERVED_FLAG_KEYS:
        raise ValidationError(f"{value!r} is reserved (it is a route under /api/flags/)")


class PropertyFilterSchema(Schema):
    type = fields.String(
        load_default="person", validate=validate.OneOf(["person", "group", "flag"]),
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
    version = fields.Integer(strict=True, load_only=True, validate=validate.Range(1, MAX_SQL_INT),
                             metadata={"description": "the version being changed (updates)"})

    @pre_load
    def _drop_read_only(self, data: Any, **kwargs: Any) -> Any:
        if isinstance(data, Mapping):
            return {k: v for k, v in data.items() if k not in FLAG_READ_ONLY}
        return data


class FlagWriteSchema(FlagInputSchema):
    """A flag as create / replace / patch take it: the rules, and whether group types they
    name that the project lacks may be created (not part of the stored flag)."""

    create_group_types = fields.Boolean(load_default=False, load_only=True, metadata={
        "description": "create the group types the flag names that the project does not "
                       "have yet (else such a flag is a 422: a typo in bucket_by would "
                       "otherwise take one of the project's 5 group types for good)"})


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
    payloads = fields.Dict(keys=fields.String(), values=fields.Raw(allow_none=True),
                           dump_default=dict)
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
    before_id = fields.Integer(validate=validate.Range(1, MAX_SQL_INT),
                               metadata={"description": "page: entries older than this id"})


class AuditEntrySchema(Schema):
    id = fields.Integer()
    flag_id = fields.Integer(allow_none=True)
    flag_key = fields.String(allow_none=True)
    action = fields.String(metadata={"description": (
        "a flag's: created, updated, deleted or restored; the project's: project_created, "
        "settings_updated, "
        "api_token_rotated, secret_key_rotated, signing_key_rotated, group_type_created, "
        "group_type_renamed, group_type_deleted; a user's who may open the project: "
        "user_created, user_updated (role, disabled, projects), user_password_reset")})
    version = fields.Integer(allow_none=True)
    before = fields.Nested(FlagSchema, allow_none=True, metadata={
        "description": "the flag before (null for project changes: see `project`)"})
    after = fields.Nested(FlagSchema, allow_none=True)
    project = fields.Dict(allow_none=True, metadata={"description": (
        "a project change: {before, after} of the settings it changed, or after: the new "
        "token's fingerprint (the first 12 hex digits of its SHA-256, never the token) for "
        "a rotation; null for flag changes")})
    created_at = Timestamp()
    actor = fields.String(allow_none=True, metadata={"description": (
        "who made the change: \"user <email>\" (web console), \"secret key <fingerprint>\" "
        "(admin API: the first 12 hex digits of the key's SHA-256), \"cli\"; null for "
        "changes made before flagsvc recorded it")})


    @pre_dump
    def _project_change(self, entry: Any, **kwargs: Any) -> Any:
        if isinstance(entry, Mapping) and entry.get("flag_key") is None:
            return {**entry, "before": None, "after": None,
                    "project": {"before": entry.get("before"), "after": entry.get("after")}}
        return {**entry, "project": None} if isinstance(entry, Mapping) else entry


class AuditPageSchema(Schema):
    entries = fields.List(fields.Nested(AuditEntrySchema))
    next_before_id = fields.Integer(allow_none=True,
                                    metadata={"description": "pass as before_id for the next page"})


# ---------------------------------------------------------------- preview / explain


class PreviewSchema(Schema):
    key = fields.String()
    bucket_by = fields.String(metadata={"description": (
        "a group type: the figures count its stored groups; $person: they count stored "
        "persons, each hashed on their first distinct id, with the groups they were last "
        "seen with")})
    total = fields.Integer(metadata={"description": "groups (or persons) evaluated"})
    enabled = fields.Integer(metadata={"description": "groups (or persons) the flag is on for"})
    counts = fields.Dict(
        keys=fields.String(), values=fields.Integer(),
        metadata={"description": "\"false\" and \"true\" or each variant -> groups (persons)"})
    reasons = fields.Dict(keys=fields.String(), values=fields.Integer())
    sample = fields.Dict(keys=fields.String(), values=fields.List(fields.String()),
                         metadata={"description": "\"true\" or variant -> first 10 group keys "
                                                  "(distinct ids)"})
    complete = fields.Boolean(metadata={"description": (
        "false if the scan stopped after PREVIEW_SECONDS: the figures cover the groups "
        "(persons) scanned so far, in group key order (the order persons were stored)")})


class FlagGroupsQuerySchema(Schema):
    enabled = fields.Boolean(allow_none=True, load_default=None,
                             metadata={"description": "true: groups it is on for; false: off"})
    limit = fields.Integer(load_default=100, validate=validate.Range(1, 1000))
    offset = fields.Integer(load_default=0, validate=validate.Range(0, MAX_SQL_INT))


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
    complete = fields.Boolean(metadata={"description": (
        "false if the scan stopped after PREVIEW_SECONDS: total counts the groups scanned "
        "so far, in group key order")})


class ContextSchema(Schema):
    """Who is asking, as in a decide request."""

    class Meta:
        unknown = EXCLUDE  # decide bodies carry api_key etc.; explain ignores them

    distinct_id = fields.String(allow_none=True, load_default=None,
                                validate=validate.Length(max=L.MAX_ID_LENGTH))
    groups = fields.Dict(keys=GroupTypeName(),
                         values=fields.String(validate=validate.Length(1, L.MAX_ID_LENGTH)),
                         load_default=dict, validate=MaxEntries(L.MAX_REQUEST_GROUPS),
                         metadata={"maxProperties": L.MAX_REQUEST_GROUPS})
    person_properties = fields.Dict(
        keys=fields.String(validate=validate.Length(max=L.MAX_PROPERTY_KEY_LENGTH)),
        values=fields.Raw(allow_none=True), load_default=dict,
        validate=MaxEntries(L.MAX_PROPERTIES), metadata={"maxProperties": L.MAX_PROPERTIES})
    group_properties = fields.Dict(
        keys=GroupTypeName(),
        values=fields.Dict(
            keys=fields.String(validate=validate.Length(max=L.MAX_PROPERTY_KEY_LENGTH)),
            values=fields.Raw(allow_none=True), validate=MaxEntries(L.MAX_PROPERTIES),
            metadata={"maxProperties": L.MAX_PROPERTIES}),
        load_default=dict, validate=MaxEntries(L.MAX_REQUEST_GROUPS),
        metadata={"maxProperties": L.MAX_REQUEST_GROUPS})
    signature = fields.String(data_key="$signature", load_default=None, allow_none=True,
                              validate=validate.Length(max=L.MAX_SIGNATURE_LENGTH), metadata={
                                  "description": "signature of {distinct_id, groups} by the "
                                                 "project's signing key (or the "
                                                 "X-Flagsvc-Signature header)"})


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
    inferred_from = fields.List(
        fields.List(fields.String()), allow_none=True,
        metadata={"description": "[type, key] path walked up the hierarchy"})
    bucket = fields.Integer(allow_none=True)
    payload = fields.Raw(allow_none=True)
    conditions = fields.List(fields.Nested(ExplainConditionSchema))
    groups_ignored = fields.String(allow_none=True, metadata={
        "description": "why the request's groups were not used, as decide would not "
                       "(unsigned_groups, bad_signature with require_signed_groups), or null"})
    person_ignored = fields.String(allow_none=True, metadata={
        "description": "why the stored person was not read, as decide would not "
                       "(unsigned_person, bad_signature with require_signed_persons), or null"})
