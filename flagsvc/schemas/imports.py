"""`POST /api/flags/import`: flags from a flagsvc export, Unleash or PostHog, and what the
import did."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from ..imports import FORMATS
from .base import GroupTypeName

_PLACEMENT = validate.Regexp(r"^(person|distinct_id|group:.+|group_key:.+)$",
                             error="person, distinct_id, group:<type> or group_key:<type>")


class FlagImportSchema(Schema):
    format = fields.String(required=True, validate=validate.OneOf(FORMATS),
                           metadata={"description": "what `data` is"})
    data = fields.Raw(required=True, metadata={"description": (
        "the export: flagsvc {\"flags\": [...]}; Unleash client API state or admin export; "
        "PostHog local-evaluation definitions or flags API list")})
    environment = fields.String(validate=validate.Length(1, 200), metadata={"description": (
        "unleash: the environment to take; `environment` constraints are decided for it")})
    group_types = fields.List(GroupTypeName(), load_default=list, metadata={"description": (
        "unleash: context fields that name groups (stickiness fields always do)")})
    group_type_mapping = fields.Dict(
        keys=fields.String(validate=validate.Regexp(r"^\d$")), values=GroupTypeName(),
        metadata={"description": "posthog: group type index -> name, if `data` has none"})
    fields_ = fields.Dict(
        data_key="fields", keys=fields.String(validate=validate.Length(1, 400)),
        values=fields.String(validate=_PLACEMENT), load_default=dict,
        metadata={"description": "unleash: context field -> where flagsvc reads it"})
    skip_unimportable = fields.Boolean(load_default=False, metadata={"description": (
        "import the flags that convert; otherwise one that cannot makes the whole import a 422")})
    dry_run = fields.Boolean(load_default=False,
                             metadata={"description": "check and convert, write nothing"})


class FlagImportResultSchema(Schema):
    dry_run = fields.Boolean()
    created = fields.List(fields.String(), metadata={"description": "flag keys"})
    updated = fields.List(fields.String(), metadata={"description": "flag keys (restored too)"})
    restored = fields.List(fields.String(), metadata={"description": "deleted flags restored"})
    unchanged = fields.List(fields.String(),
                            metadata={"description": "same rules as stored: not written"})
    group_types = fields.List(fields.String(), metadata={"description": "created for the flags"})
    skipped = fields.Dict(keys=fields.String(), values=fields.String(),
                          metadata={"description": "source flag -> why it cannot be imported"})
    warnings = fields.Dict(keys=fields.String(), values=fields.List(fields.String()),
                           metadata={"description": "flag key -> what behaves differently"})
    context_fields = fields.Dict(
        keys=fields.String(), values=fields.Dict(keys=fields.String(), values=fields.String()),
        metadata={"description": "unleash: flag key -> {context field -> where it is read}"})
    flags = fields.List(fields.Dict(), metadata={"description": "the flags as converted "
                                                                "(FlagInput)"})
