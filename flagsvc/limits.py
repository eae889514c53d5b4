"""The documented limits of every public request, in one place (SPEC §11).

Decide (`/flags`, `/decide`, and whatever else routes through `check_context`: explain,
OFREP) and ingestion (every wire format, checked on the normalized `Call` by
`call_problem`, so a new format gets them by parsing into Calls through `formats.each`)
refuse a request over a limit before doing any work with it: decide with a 400 naming the
field, ingestion by rejecting the event (listed in `rejected`; a request with no good event
is a 400). The README's limits table and the OpenAPI document (maxLength / maxItems /
maxProperties) are built from these names; tests/test_limits.py checks both.

Pure: no I/O, no Flask; the callers turn a problem into their own error.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from .engine.hierarchy import MAX_DEPTH as MAX_HIERARCHY_DEPTH
from .engine.hierarchy import MAX_STARTS as MAX_INFERENCE_STARTS

# ---------------------------------------------------------------- shared by every surface

MAX_ID_LENGTH = 200  # distinct ids, group keys, message ids (characters)
MAX_GROUP_TYPE_LENGTH = 100  # a group type name (characters)
MAX_NAME_LENGTH = 200  # an event name
MAX_PROPERTY_KEY_LENGTH = 400  # one property name
MAX_PROPERTIES = 1000  # properties in one object (person, one group, an event, a $set ...)
MAX_FLAG_KEY_LENGTH = 200  # a flag key
# One property value: a string's characters, or the JSON text of a list / object / number.
MAX_PROPERTY_VALUE_LENGTH = 8192

# ---------------------------------------------------------------- decide

# `groups` entries (and `group_properties` types): a project has at most 5 group types, so
# 10 leaves room for types an app sends that the project does not use.
MAX_REQUEST_GROUPS = 10
MAX_FLAG_KEYS = 1000  # `flag_keys_to_evaluate` entries
MAX_SIGNATURE_LENGTH = 200  # `$signature`
# A decide / OFREP request body (bytes, after decompression): a context is a few KiB.
MAX_DECIDE_BODY_BYTES = 256 * 1024

# ---------------------------------------------------------------- ingestion

MAX_EVENT_NESTING = 64  # levels of nesting of one event
MAX_EVENT_GROUPS = 10  # group types one event is attributed to ($groups, context.groups)
MAX_WARNINGS = 20  # warnings listed in one answer (the rest are counted)
MAX_WARNING_LENGTH = 300  # characters of one warning (and so of the log line listing them)
# What one stored group or person may hold: a write past these is refused key by key (the
# key is not stored, a warning says so; the event's other data is kept: store/batch.py).
MAX_STORED_PROPERTIES = 1000  # property keys of one stored group or person
MAX_STORED_PROFILE_BYTES = 256 * 1024  # JSON bytes of one stored group's / person's properties

__all__ = [
    "MAX_DECIDE_BODY_BYTES", "MAX_PROPERTY_VALUE_LENGTH", "MAX_STORED_PROFILE_BYTES",
    "MAX_STORED_PROPERTIES", "MAX_EVENT_GROUPS", "MAX_EVENT_NESTING", "MAX_FLAG_KEYS",
    "MAX_FLAG_KEY_LENGTH", "MAX_GROUP_TYPE_LENGTH",
    "MAX_HIERARCHY_DEPTH", "MAX_ID_LENGTH", "MAX_INFERENCE_STARTS", "MAX_NAME_LENGTH",
    "MAX_PROPERTIES", "MAX_PROPERTY_KEY_LENGTH", "MAX_REQUEST_GROUPS", "MAX_SIGNATURE_LENGTH",
    "MAX_WARNINGS", "MAX_WARNING_LENGTH", "LimitError", "call_problem", "check_context",
    "check_flag_keys", "properties_problem", "value_length", "values_problem",
]


class LimitError(ValueError):
    """A request field over its documented limit (`field` names it, as a path)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def _too_long(value: Any, limit: int) -> bool:
    return isinstance(value, str) and len(value) > limit


def properties_problem(props: Any, where: str) -> LimitError | None:
    """The first limit a properties object breaks (entries, key length), else None."""
    if not props or not (type(props) is dict or isinstance(props, Mapping)):
        return None
    if len(props) > MAX_PROPERTIES:
        return LimitError(where, f"{len(props)} properties; the limit is {MAX_PROPERTIES}")
    if any(len(key) > MAX_PROPERTY_KEY_LENGTH for key in props if key.__class__ is str):
        return LimitError(where, f"a property name is longer than "
                                 f"{MAX_PROPERTY_KEY_LENGTH} characters")
    return None


def value_length(value: Any) -> int:
    """The size a value counts for against MAX_PROPERTY_VALUE_LENGTH: a string's length, the
    JSON text's length for anything else (lists and objects, nested), 0 for null/booleans.
    O(size of the value)."""
    if value is None or value is True or value is False:
        return 0
    if isinstance(value, str):
        return len(value)
    if isinstance(value, (int, float)):
        return 24
    try:
        return len(orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS))
    except (TypeError, orjson.JSONEncodeError):
        return len(repr(value))


def values_problem(props: Any, where: str) -> LimitError | None:
    """The first property value of a claimed properties object over its length limit."""
    if not props or not (type(props) is dict or isinstance(props, Mapping)):
        return None
    for key, value in props.items():
        if value.__class__ is str:
            if len(value) <= MAX_PROPERTY_VALUE_LENGTH:
                continue
        elif value is None or value.__class__ in (bool, int, float):
            continue
        if value_length(value) > MAX_PROPERTY_VALUE_LENGTH:
            return LimitError(f"{where}.{str(key)[:40]}",
                              f"the value is longer than {MAX_PROPERTY_VALUE_LENGTH} "
                              "characters")
    return None


def check_context(distinct_id: Any = None, groups: Any = None, person_properties: Any = None,
                  group_properties: Any = None, signature: Any = None) -> None:
    """Raise LimitError for the first field of an evaluation context over its limit. Cheap
    (length checks; property names are looked at only when there are some), as it runs on
    every decide request."""
    if distinct_id is not None and len(str(distinct_id)) > MAX_ID_LENGTH:
        raise LimitError("distinct_id", f"longer than {MAX_ID_LENGTH} characters")
    # (`type(...) is dict` first: what JSON bodies hold, and cheaper than an ABC check.)
    if groups and (type(groups) is dict or isinstance(groups, Mapping)):
        if len(groups) > MAX_REQUEST_GROUPS or any(
                len(t) > MAX_GROUP_TYPE_LENGTH for t in groups if isinstance(t, str)):
            _check_types(groups, "groups", "entries")
        for gtype, key in groups.items():
            if _too_long(key, MAX_ID_LENGTH):
                raise LimitError(f"groups.{gtype}", f"longer than {MAX_ID_LENGTH} characters")
    if person_properties and (type(person_properties) is dict
                              or isinstance(person_properties, Mapping)):
        problem = (properties_problem(person_properties, "person_properties")
                   or values_problem(person_properties, "person_properties"))
        if problem is not None:
            raise problem
    if group_properties and (type(group_properties) is dict
                             or isinstance(group_properties, Mapping)):
        _check_types(group_properties, "group_properties", "group types")
        for gtype, props in group_properties.items():
            problem = (properties_problem(props, f"group_properties.{gtype}")
                       or values_problem(props, f"group_properties.{gtype}"))
            if problem is not None:
                raise problem
    if _too_long(signature, MAX_SIGNATURE_LENGTH):
        raise LimitError("$signature", f"longer than {MAX_SIGNATURE_LENGTH} characters")


def _check_types(by_type: Mapping[Any, Any], field: str, noun: str) -> None:
    """A map keyed by group type: at most MAX_REQUEST_GROUPS entries, names within bounds."""
    if len(by_type) > MAX_REQUEST_GROUPS:
        raise LimitError(field, f"{len(by_type)} {noun}; the limit is {MAX_REQUEST_GROUPS}")
    for gtype in by_type:
        if _too_long(gtype, MAX_GROUP_TYPE_LENGTH):
            raise LimitError(field, f"a group type is longer than {MAX_GROUP_TYPE_LENGTH} "
                                    "characters")


def check_flag_keys(keys: Any) -> None:
    """`flag_keys_to_evaluate`: at most MAX_FLAG_KEYS keys, each at most a flag key long."""
    if isinstance(keys, list):
        if len(keys) > MAX_FLAG_KEYS:
            raise LimitError("flag_keys_to_evaluate",
                             f"{len(keys)} keys; the limit is {MAX_FLAG_KEYS}")
        for k in keys:
            if _too_long(k, MAX_FLAG_KEY_LENGTH):
                raise LimitError("flag_keys_to_evaluate",
                                 f"a key is longer than {MAX_FLAG_KEY_LENGTH} characters")


def call_problem(call: Any) -> str | None:
    """Why a normalized ingestion call (ingest.model.Call) is over a limit, else None: the
    checks every wire format gets on the calls it produces (formats.each)."""
    for value, what in ((call.distinct_id, "distinct id"), (call.group_key, "group key"),
                        (call.parent_key, "parent_group_id"), (call.previous_id, "previous id"),
                        (call.message_id, "message id")):
        if _too_long(value, MAX_ID_LENGTH):
            return f"{what} is longer than {MAX_ID_LENGTH} characters"
    for value, what in ((call.group_type, "group type"), (call.parent_type, "parent_group_type")):
        if _too_long(value, MAX_GROUP_TYPE_LENGTH):
            return f"{what} is longer than {MAX_GROUP_TYPE_LENGTH} characters"
    if _too_long(call.event, MAX_NAME_LENGTH):
        return f"event name is longer than {MAX_NAME_LENGTH} characters"
    if len(call.groups) > MAX_EVENT_GROUPS:
        return (f"the event names {len(call.groups)} group types; the limit is "
                f"{MAX_EVENT_GROUPS}")
    if len(call.more_groups) > MAX_EVENT_GROUPS:
        return (f"the event names {len(call.groups) + len(call.more_groups)} groups in lists "
                f"of keys; the limit is {MAX_EVENT_GROUPS} more than one per type")
    for gtype, key in (*call.groups.items(), *call.more_groups):
        if _too_long(gtype, MAX_GROUP_TYPE_LENGTH):
            return f"group type {gtype[:40]!r}... is longer than {MAX_GROUP_TYPE_LENGTH} characters"
        if _too_long(key, MAX_ID_LENGTH):
            return f"the key of group type {gtype!r} is longer than {MAX_ID_LENGTH} characters"
    for props, what in ((call.properties, "properties"), (call.person_set, "$set"),
                        (call.person_set_once, "$set_once"), (call.group_set, "group traits")):
        problem = properties_problem(props, what)
        if problem is not None:
            return str(problem)
    for keys, what in ((call.person_unset, "$unset"), (call.group_unset, "group $unset")):
        if len(keys) > MAX_PROPERTIES:
            return f"{what}: {len(keys)} names; the limit is {MAX_PROPERTIES}"
    return None


def bounded_warning(message: str) -> str:
    """One warning cut to MAX_WARNING_LENGTH characters."""
    if len(message) <= MAX_WARNING_LENGTH:
        return message
    return message[:MAX_WARNING_LENGTH - 3] + "..."
