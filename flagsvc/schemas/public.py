"""The public surfaces (decide, ingestion, health): documented in OpenAPI only; their
handlers parse bodies themselves, on the hot path."""

from __future__ import annotations

from marshmallow import Schema, fields

from .flags import ContextSchema


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
    dropped = fields.Integer(metadata={
        "description": "references to a refused group type (a project has at most 5), dropped"})


class HealthSchema(Schema):
    status = fields.String()
