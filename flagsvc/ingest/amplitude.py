"""Amplitude HTTP V2 / Batch API and Identify / Group Identify API bodies → normalized `Call`s.

Shared checks, times and ids are formats.py's. Amplitude-specific decisions:
- Body: `{"api_key", "events": [...], "options"?}` (HTTP V2 `/2/httpapi` and Batch `/batch`);
  `/identify` takes `identification` (one object or a list), `/groupidentify` takes
  `identification` of `{group_type, group_value, group_properties}`; both as a form
  (`api_key=…&identification=<JSON>`) or as a JSON body.
- Event time: `time` in milliseconds since the epoch (missing → receive time), corrected for
  client clock skew with the request's `client_upload_time` (ISO-8601, sent by the
  JavaScript SDKs, analytics-node included): ``time + (received_at - client_upload_time)``.
  The Python SDK sends no upload time: its `time` is taken as is.
- Message id: `insert_id` (the SDKs set one per event), scoped as Amplitude scopes it: to
  the event's `device_id`, else its `user_id`; missing → derived from the content.
- `$identify` events (and `/identify`): `user_properties` operations `$set`, `$setOnce`,
  `$unset` are applied; bare keys are `$set`. `$add`, `$append`, `$prepend`, `$preInsert`,
  `$postInsert`, `$remove`, `$clearAll` are not applied: they are reported as a warning-level
  rejection of that operation only (`ignored_operations` in the answer), never silently lost.
- `$groupidentify` events (and `/groupidentify`): one group per `groups` pair, with
  `group_properties` `$set` / `$setOnce` (set when absent is treated as set) / `$unset`;
  `parent_group_id` / `parent_group_type` there set the group's parent as in every format.
- `groups` on any event attribute it to those groups (`{type: key}`; a list of keys puts
  the event and its user in each of those groups, as Amplitude does). The set_group
  convention (`user_properties.$set {type: key}` with `groups`) needs nothing more: the
  groups attribute the call, the user properties are stored.
"""

from __future__ import annotations

from typing import Any

import orjson

from .formats import (
    EventError,
    FormatError,
    Options,
    Parsed,
    check_event,
    check_time,
    each,
    group_lists,
    ident,
    message_id_of,
    name,
    obj,
    parse_time,
    structure,
)
from .model import Call

APPLIED_OPS = ("$set", "$setOnce", "$unset")
UNSUPPORTED_OPS = ("$add", "$append", "$prepend", "$preInsert", "$postInsert", "$remove",
                   "$clearAll")


def _groups(value: Any) -> tuple[dict[str, str], list[tuple[str, str]]]:
    """`groups`: `{type: key}`, or a list of keys of a type (the event is in each group)."""
    return group_lists(value, "groups")


def _ops(props: dict[str, Any], what: str, ignored: set[str]) -> tuple[dict, dict, list]:
    """`$set`, `$setOnce`, `$unset` of a user/group property object (bare keys are $set)."""
    set_: dict[str, Any] = {}
    once: dict[str, Any] = {}
    unset: list[str] = []
    for key, value in props.items():
        if key == "$set":
            set_.update(obj(props, key, f"{what}.$set"))
        elif key == "$setOnce":
            once.update(obj(props, key, f"{what}.$setOnce"))
        elif key == "$unset":
            unset.extend(obj(props, key, f"{what}.$unset").keys())
        elif key in UNSUPPORTED_OPS:
            ignored.add(key)
        elif key.startswith("$"):
            raise EventError(f"{what} operation {key!r} is not an Amplitude operation")
        else:
            set_[key] = value
    return set_, once, unset


def amplitude_call(ev: Any, opts: Options, ignored: set[str], skew: float = 0.0) -> Call:
    ev = check_event(ev, opts)
    etype = name(ev.get("event_type"), "event_type")
    user = ident(ev.get("user_id"), "user_id")
    device = ident(ev.get("device_id"), "device_id")
    time_ms = ev.get("time")
    if time_ms is not None and (isinstance(time_ms, bool) or not isinstance(time_ms, int)):
        raise EventError("time must be an integer number of milliseconds")
    ts = check_time(opts.received_at if time_ms is None else time_ms / 1000.0 + skew, opts)
    # Amplitude de-duplicates insert_id per device (else user): the same id for another one
    # is another event
    mid = message_id_of(ev.get("insert_id"), f"amplitude:{etype}", ev, opts,
                        scope=[device or user])
    groups, more_groups = _groups(ev.get("groups"))
    call = Call(kind="track", message_id=mid, timestamp=ts, distinct_id=user or device,
                exact_id=time_ms is None and ident(ev.get("insert_id"), "insert_id") is not None)
    if etype == "$groupidentify":
        if len(groups) != 1 or more_groups:
            raise EventError("$groupidentify needs exactly one groups pair {type: key} "
                             "(on /groupidentify: group_type and group_value)")
        (gtype, key), = groups.items()
        call.kind, call.group_key = "group", key
        set_, once, unset = _ops(obj(ev, "group_properties"), "group_properties", ignored)
        structure(call, {**once, **set_}, gtype, opts)
        call.group_unset = unset
        return call
    if call.distinct_id is None:
        raise EventError("user_id or device_id is required")
    call.groups, call.more_groups = groups, more_groups
    set_, once, unset = _ops(obj(ev, "user_properties"), "user_properties", ignored)
    call.person_set, call.person_set_once, call.person_unset = set_, once, unset
    if etype == "$identify":
        call.kind = "identify"
    else:
        call.event = etype
        call.properties = dict(obj(ev, "event_properties"))
    return call


def is_amplitude_batch(body: Any) -> bool:
    """An Amplitude Batch body (`events`) rather than PostHog's (`batch` list); an `events`
    that is not a list is Amplitude's to refuse, naming the field."""
    return isinstance(body, dict) and "events" in body and "batch" not in body


def parse_events(body: Any, opts: Options) -> tuple[Parsed, list[str]]:
    if not isinstance(body, dict):
        raise FormatError("body must be a JSON object")
    events = body.get("events")
    if not isinstance(events, list):
        raise FormatError("body must have an `events` list")
    ignored: set[str] = set()
    try:
        sent = parse_time(body.get("client_upload_time"), "client_upload_time")
    except EventError as e:
        raise FormatError(str(e)) from None
    skew = 0.0 if sent is None else opts.received_at - sent
    parsed = each(events, lambda e: amplitude_call(e, opts, ignored, skew), "insert_id", opts)
    return parsed, sorted(ignored)


def identification(raw: Any) -> list[Any]:
    """`identification` of /identify or /groupidentify: JSON text (a form) or already JSON."""
    if isinstance(raw, (str, bytes)):
        try:
            raw = orjson.loads(raw)
        except orjson.JSONDecodeError as e:
            raise FormatError(f"identification is not valid JSON: {e}") from None
    if isinstance(raw, dict):
        return [raw]
    if not isinstance(raw, list):
        raise FormatError("identification must be a JSON object or a list of them")
    return raw


def parse_identify(items: list[Any], group: bool, opts: Options) -> tuple[Parsed, list[str]]:
    events = []
    for item in items:
        if not isinstance(item, dict):
            events.append(item)
        elif group:
            events.append({"event_type": "$groupidentify", "insert_id": item.get("insert_id"),
                           "groups": {item.get("group_type"): item.get("group_value")},
                           "group_properties": item.get("group_properties"),
                           "time": item.get("time")})
        else:
            events.append({**item, "event_type": "$identify"})
    return parse_events({"events": events}, opts)
