"""The public surfaces (decide, ingestion, health): documented in OpenAPI only; their
handlers parse bodies themselves, on the hot path."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from ..limits import (
    MAX_FLAG_KEY_LENGTH,
    MAX_FLAG_KEYS,
    MAX_GROUP_TYPE_LENGTH,
    MAX_ID_LENGTH,
    MAX_NAME_LENGTH,
    MAX_PROPERTIES,
    MAX_WARNING_LENGTH,
    MAX_WARNINGS,
)
from .flags import ContextSchema


def _id(**kw):  # type: ignore[no-untyped-def]
    return fields.String(validate=validate.Length(max=MAX_ID_LENGTH), **kw)


def _props(**kw):  # type: ignore[no-untyped-def]
    meta = {"maxProperties": MAX_PROPERTIES, **kw.pop("metadata", {})}
    return fields.Dict(metadata=meta, **kw)



class DecideRequestSchema(ContextSchema):
    api_key = fields.String(metadata={"description": "the project's public api token"})
    token = fields.String(metadata={"description": "same as api_key"})
    flag_keys_to_evaluate = fields.List(
        fields.String(validate=validate.Length(max=MAX_FLAG_KEY_LENGTH)),
        validate=validate.Length(max=MAX_FLAG_KEYS))


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
    groupsIgnored = fields.String(metadata={
        "description": "present when the request's groups were not used (require_signed_groups): "
                       "unsigned_groups or bad_signature"})
    personIgnored = fields.String(metadata={
        "description": "present when the stored person of distinct_id was not read "
                       "(require_signed_persons): unsigned_person or bad_signature"})
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
    userId = _id()
    anonymousId = _id()
    groupId = _id()
    groupType = fields.String(validate=validate.Length(max=MAX_GROUP_TYPE_LENGTH))
    previousId = _id()
    event = fields.String(validate=validate.Length(max=MAX_NAME_LENGTH))
    traits = _props()
    properties = _props()
    context = fields.Dict(metadata={"description": "context.groupId attributes a track to a "
                                                   "group; context.groups {type: key}"})
    timestamp = fields.String()
    sentAt = fields.String()
    messageId = _id()


class SegmentRequestSchema(SegmentMessageSchema):
    writeKey = fields.String(metadata={"description": "the api token (or HTTP Basic user)"})
    batch = fields.List(fields.Nested(SegmentMessageSchema),
                        metadata={"description": "/v1/batch and /v1/import"})


class PostHogEventSchema(Schema):
    event = fields.String(validate=validate.Length(max=MAX_NAME_LENGTH), metadata={
        "description": "$identify, $groupidentify, $set, or any event"})
    distinct_id = _id()
    properties = _props(metadata={"description": "$set, $set_once, $unset, $groups, "
                                                 "$group_type, $group_key, $group_set"})
    timestamp = fields.String()
    uuid = _id()


class PostHogCaptureSchema(PostHogEventSchema):
    api_key = fields.String()
    token = fields.String()
    batch = fields.List(fields.Nested(PostHogEventSchema))


class AccoilRequestSchema(Schema):
    userId = _id()
    groupId = _id()
    event = fields.String(validate=validate.Length(max=MAX_NAME_LENGTH))
    traits = _props()
    timestamp = fields.Raw()


class IngestResponseSchema(Schema):
    success = fields.Boolean()
    status = fields.Raw(metadata={"description": "PostHog paths"})
    rejected = fields.List(fields.Dict(), metadata={
        "description": "the events of a partly good batch that were refused: "
                       "[{index, reason, message_id}] (the good ones are stored)"})
    warnings = fields.List(fields.String(validate=validate.Length(max=MAX_WARNING_LENGTH)),
                           validate=validate.Length(max=MAX_WARNINGS))
    more_warnings = fields.Integer(metadata={
        "description": "distinct warnings past the listed ones, counted only"})
    dropped = fields.Integer(metadata={
        "description": "references to a refused group type (a project has at most 5), dropped"})


class HealthSchema(Schema):
    status = fields.String()


class AmplitudeErrorSchema(Schema):
    """Amplitude's error answer, which its SDKs parse (`code` decides retry or drop)."""

    code = fields.Integer(required=True, metadata={"description": "the HTTP status"})
    error = fields.String(required=True)
    events_with_invalid_fields = fields.Dict(
        metadata={"description": "field -> indexes of the refused events (partial batches)"})
    missing_field = fields.String()


class MixpanelErrorSchema(Schema):
    """Mixpanel's refusal ({status: 0, error}), as its SDKs read it."""

    status = fields.Integer(required=True, metadata={"description": "0: refused"})
    error = fields.String(required=True)


class SharedIngestErrorSchema(Schema):
    """/track, /engage and /batch take PostHog and Mixpanel (or Amplitude) bodies: a refusal
    is in the shape of the tool whose body it was ({code, message} or {status, error}...)."""

    code = fields.Raw()
    message = fields.String()
    detail = fields.String()
    errors = fields.Raw()
    status = fields.Integer()
    error = fields.String()
    events_with_invalid_fields = fields.Dict()
    missing_field = fields.String()
