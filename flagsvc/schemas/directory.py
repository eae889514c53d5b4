"""Group types, groups, persons, project settings, and the definitions in-process
evaluators download."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from ..store.groups import RECENT_EVENTS_SCANNED
from ..store.projects import CLIENT_PROPERTIES
from .base import MAX_SQL_INT, GroupTypeName, StrictBoolean, Timestamp
from .flags import FlagSchema


class GroupTypeSchema(Schema):
    name = fields.String()
    index = fields.Integer()
    created_at = Timestamp(allow_none=True)


class GroupTypeListSchema(Schema):
    group_types = fields.List(fields.Nested(GroupTypeSchema))


class GroupTypeInputSchema(Schema):
    name = GroupTypeName(required=True)


class GroupTypeDeletedSchema(Schema):
    name = fields.String()
    groups_deleted = fields.Integer(metadata={"description": "groups of the type deleted"})


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
    recent_events = fields.List(fields.Nested(EventSchema), metadata={
        "description": f"the group's newest events (up to 20) among the last "
                       f"{RECENT_EVENTS_SCANNED:,} events the project stored"})


class PageQuerySchema(Schema):
    limit = fields.Integer(load_default=100, validate=validate.Range(1, 1000))
    offset = fields.Integer(load_default=0, validate=validate.Range(0, MAX_SQL_INT))


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
    ingestion_creates_group_types = fields.Boolean()
    client_properties = fields.String()
    require_signed_groups = fields.Boolean()
    require_signed_persons = fields.Boolean()
    mixpanel_group_keys = fields.Dict(keys=fields.String(), values=fields.String())
    signing_keys = fields.List(fields.Nested(lambda: SigningKeySchema()), metadata={
        "description": "the keys that verify signatures now (prefixes only)"})
    created_at = Timestamp(allow_none=True)


class SigningKeySchema(Schema):
    prefix = fields.String()
    created_at = Timestamp(allow_none=True)
    expires_at = Timestamp(allow_none=True, metadata={"description": "end of its grace"})


class SigningKeyRotateSchema(Schema):
    grace_seconds = fields.Float(load_default=3600.0, validate=validate.Range(0, 30 * 86400))


class SigningKeyCreatedSchema(Schema):
    signing_key = fields.String(metadata={"description": "shown only in this answer"})
    prefix = fields.String()
    created_at = Timestamp()
    previous_keys_expire_at = Timestamp()


class TokenRotateSchema(Schema):
    kind = fields.String(required=True, validate=validate.OneOf(["api", "secret"]), metadata={
        "description": "api: the public api token; secret: the secret key"})
    grace_seconds = fields.Float(load_default=3600.0, validate=validate.Range(0, 30 * 86400))


class TokenRotatedSchema(Schema):
    kind = fields.String()
    token = fields.String(metadata={"description": "shown only in this answer"})
    previous_expire_at = Timestamp()


class ProjectPatchSchema(Schema):
    name = fields.String(validate=validate.Length(1, 200))
    default_group_type = GroupTypeName()
    private_properties = fields.Dict(
        keys=fields.String(validate=validate.Length(1, 400)),
        values=fields.String(validate=validate.OneOf(["drop", "hash"])),
        metadata={"description": "property key -> \"drop\" or \"hash\""})
    event_retention_days = fields.Integer(strict=True, validate=validate.Range(1, 3650))
    ingestion_creates_group_types = StrictBoolean(metadata={
        "description": "whether ingestion (the public token) may create group types besides "
                       "the default one; off for new projects"})
    client_properties = fields.String(validate=validate.OneOf(CLIENT_PROPERTIES), metadata={
        "description": "how decide's person/group properties meet the stored ones: "
                       "override (request wins), fill (stored wins), ignore"})
    require_signed_groups = StrictBoolean(metadata={
        "description": "decide uses a request's groups only with a valid $signature"})
    require_signed_persons = StrictBoolean(metadata={
        "description": "decide reads a request's stored person (by distinct_id) only with a "
                       "valid $signature"})
    mixpanel_group_keys = fields.Dict(
        keys=fields.String(validate=validate.Length(1, 200)), values=GroupTypeName(),
        validate=validate.Length(max=50), metadata={
            "description": "Mixpanel group key (`$group_key`, an event property such as "
                           "company_id) -> group type of this project"})


# -------------------------------------------------------- definitions (in-process evaluators)


class DefinitionsProjectSchema(Schema):
    id = fields.Integer()
    default_group_type = fields.String()
    client_properties = fields.String(metadata={
        "description": "override / fill / ignore: evaluators merge given properties so"})


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
