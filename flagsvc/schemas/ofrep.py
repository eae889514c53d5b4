"""OFREP (SPEC §5.2) and posthog-js remote config bodies, for the OpenAPI document only."""

from __future__ import annotations

from marshmallow import Schema, fields


class OfrepRequestSchema(Schema):
    context = fields.Dict(metadata={"description": (
        "targetingKey -> distinct id; `groups` {type: key}; `group_properties` "
        "{type: {...}}; `$signature` -> signed context; any other attribute -> person property")})


class OfrepEvaluationSchema(Schema):
    key = fields.String()
    value = fields.Raw(metadata={"description": "the variant key, or true/false"})
    reason = fields.String(metadata={
        "description": "TARGETING_MATCH, SPLIT, DEFAULT, DISABLED or ERROR"})
    variant = fields.String(metadata={"description": "the variant key, or on/off"})
    metadata = fields.Dict(metadata={"description": (
        "reasonCode (flagsvc's reason), flagId, version, bucketBy, conditionIndex, payload "
        "(JSON text, when on)")})
    errorCode = fields.String(metadata={"description": (
        "failures only: FLAG_NOT_FOUND, PARSE_ERROR, TARGETING_KEY_MISSING, INVALID_CONTEXT")})
    errorDetails = fields.String(metadata={"description": "failures only"})


class OfrepErrorSchema(Schema):
    key = fields.String(metadata={"description": "single-flag errors"})
    errorCode = fields.String(metadata={"description": (
        "FLAG_NOT_FOUND, PARSE_ERROR, TARGETING_KEY_MISSING, INVALID_CONTEXT")})
    errorDetails = fields.String(required=True)
    metadata = fields.Dict()


class OfrepBulkSchema(Schema):
    flags = fields.List(fields.Nested(OfrepEvaluationSchema))


class RemoteConfigSchema(Schema):
    token = fields.String()
    hasFeatureFlags = fields.Boolean()
    supportedCompression = fields.List(fields.String())
    sessionRecording = fields.Boolean()
    surveys = fields.Boolean(allow_none=True, metadata={"description": (
        "always null: posthog-js loads its surveys bundle for any boolean, false included")})
    heatmaps = fields.Boolean()
    autocaptureExceptions = fields.Boolean()
    siteApps = fields.List(fields.Raw())
