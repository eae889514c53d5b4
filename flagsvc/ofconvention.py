"""The OpenFeature convention of flagsvc (SPEC §5.2), shared by OFREP (api/ofrep.py) and the
in-process provider (flagsvc.openfeature): how an evaluation context maps to a flagsvc
context, and how a result maps to OpenFeature's reason, variant and flag metadata.

Context: `targetingKey` -> distinct id; attribute `groups` {type: key}; attribute
`group_properties` {type: {...}}; attribute `$signature` -> the signed context; every other
attribute -> a person property.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .engine import FlagResult
from .engine.compile import PERSON
from .signing import SIGNATURE_FIELD


class InvalidContext(ValueError):
    """The context does not follow the convention (OpenFeature's INVALID_CONTEXT)."""


def context_arguments(targeting_key: Any, attributes: Mapping[str, Any]) -> dict[str, Any]:
    """distinct_id, groups, person_properties, group_properties and signature of an
    OpenFeature context."""
    attrs = dict(attributes)
    if targeting_key is not None and not isinstance(targeting_key, (str, int)):
        raise InvalidContext("targetingKey must be a string")
    if targeting_key == "":
        targeting_key = None
    groups = attrs.pop("groups", None)
    if groups is not None and not (isinstance(groups, Mapping) and all(
            isinstance(v, (str, int)) for v in groups.values())):
        raise InvalidContext("groups must be an object {type: key}")
    group_properties = attrs.pop("group_properties", None)
    if group_properties is not None and not (isinstance(group_properties, Mapping) and all(
            isinstance(v, Mapping) for v in group_properties.values())):
        raise InvalidContext("group_properties must be an object {type: {property: value}}")
    signature = attrs.pop(SIGNATURE_FIELD, None)
    return {"distinct_id": targeting_key, "groups": dict(groups) if groups else None,
            "group_properties": ({k: dict(v) for k, v in group_properties.items()}
                                 if group_properties else None),
            "person_properties": attrs or None, "signature": signature}


# flagsvc reasons -> OpenFeature reasons. A miss of a rollout is the split's doing, and so is
# a variant picked by hash; a plain condition match is targeting.
_REASONS = {
    "condition_match": "TARGETING_MATCH",
    "out_of_rollout_bound": "SPLIT",
    "no_condition_match": "DEFAULT",
    "no_group_type": "DEFAULT",
    "dependency_off": "DEFAULT",
    "flag_disabled": "DISABLED",
    "error": "ERROR",
}


def reason(r: FlagResult) -> str:
    if r.reason == "condition_match" and r.variant is not None:
        return "SPLIT"
    return _REASONS.get(r.reason, "UNKNOWN")


def variant(r: FlagResult) -> str:
    """The variant key when one was picked, else "on" / "off"."""
    if r.enabled and r.variant is not None:
        return r.variant
    return "on" if r.enabled else "off"


def needs_targeting_key(r: FlagResult, distinct_id: Any) -> bool:
    """A person-bucketed flag asked without a targetingKey (TARGETING_KEY_MISSING)."""
    return r.reason == "no_group_type" and r.bucket_by == PERSON and distinct_id is None


def metadata(r: FlagResult, payload_json: Any) -> dict[str, Any]:
    """Flag metadata (OpenFeature allows string, number and boolean values): flagsvc's own
    reason code, the flag's id and version, what it bucketed by, the matched condition, and
    the payload as a JSON string (as PostHog sends it) when the flag is on and has one."""
    meta: dict[str, Any] = {"reasonCode": r.reason}
    if r.flag_id is not None:
        meta["flagId"] = r.flag_id
    if r.version is not None:
        meta["version"] = r.version
    if r.bucket_by is not None:
        meta["bucketBy"] = "person" if r.bucket_by == PERSON else r.bucket_by
    if r.condition_index is not None:
        meta["conditionIndex"] = r.condition_index
    if r.enabled and r.payload is not None:
        meta["payload"] = payload_json(r.payload)
    return meta
