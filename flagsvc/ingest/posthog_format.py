"""PostHog capture bodies (`/batch/`, `/capture/`, `/e/`, `/i/v0/e/`, `/track/`, `/engage/`)
→ normalized `Call`s.

Shared checks, times and ids are formats.py's. PostHog-specific decisions:
- `$set` / `$set_once` / `$unset` may sit on the event or in its properties (both are
  applied); `$identify` with `$anon_distinct_id` merges the anonymous person (an alias);
  `$create_alias` likewise.
- PostHog `$groupidentify` updates the group only: its `distinct_id` (random in
  posthog-python) creates no person and no membership. `$process_person_profile: false`
  likewise leaves persons alone.
"""

from __future__ import annotations

from typing import Any

from .formats import (
    EventError,
    FormatError,
    Options,
    Parsed,
    check_event,
    check_time,
    each,
    event_time,
    group_pairs,
    ident,
    message_id_of,
    name,
    obj,
    structure,
    untimed_with_id,
)
from .model import Call

# Event properties that are operations or credentials, not stored with the event.
_STRIP = frozenset({"$set", "$set_once", "$unset", "$group_set", "$groups", "token", "$token",
                    "api_key"})


def posthog_events(body: Any) -> tuple[list[Any], Any]:
    """The events of a capture body ({batch: [...]}, a list, or one event) and its sent_at."""
    if isinstance(body, list):
        return body, None
    if not isinstance(body, dict):
        raise FormatError("body must be an event object, a list of events or {\"batch\": [...]}")
    if "batch" in body:
        if not isinstance(body["batch"], list):
            raise FormatError("`batch` must be a list of events")
        return body["batch"], body.get("sent_at")
    return [body], body.get("sent_at")


def posthog_token(body: Any, events: list[Any]) -> tuple[Any, bool]:
    """(token, from_event): the request-level `api_key` / `token`, else the first event's
    (`api_key`, `token`, `$token` or `properties.token`, as posthog-js sends it)."""
    if isinstance(body, dict):
        for key in ("api_key", "token", "$token"):
            if body.get(key):
                return body[key], False
    for ev in events:
        token = _event_token(ev)
        if token:
            return token, True
    return None, False


def _event_token(ev: Any) -> Any:
    if not isinstance(ev, dict):
        return None
    props = ev.get("properties")
    if not isinstance(props, dict):
        props = {}
    return ev.get("api_key") or ev.get("token") or ev.get("$token") or props.get("token")


def _posthog_person(ev: dict[str, Any], props: dict[str, Any], call: Call) -> None:
    call.person_set = {**obj(props, "$set", "properties.$set"), **obj(ev, "$set")}
    call.person_set_once = {**obj(props, "$set_once", "properties.$set_once"),
                            **obj(ev, "$set_once")}
    unset: list[str] = []
    for value in (props.get("$unset"), ev.get("$unset")):
        if isinstance(value, dict):
            value = list(value)
        if value is None:
            continue
        if not isinstance(value, list) or not all(isinstance(k, str) for k in value):
            raise EventError("$unset must be a list of property names")
        unset += value
    call.person_unset = unset


def posthog_call(ev: Any, opts: Options, sent_at: Any = None, token: Any = None,
                 default_event: str | None = None) -> Call:
    """One PostHog event → a Call. `token`: the token the request was authenticated with
    when it came from an event, so an event naming another token is refused."""
    ev = check_event(ev, opts)
    props = obj(ev, "properties")
    if token is not None and _event_token(ev) not in (None, token):
        raise EventError("event carries a different api token than the request")
    event = name(ev.get("event", default_event), "event")
    did = ident(next((v for v in (ev.get("distinct_id"), ev.get("$distinct_id"),
                                  props.get("distinct_id")) if v not in (None, "")), None),
                "distinct_id")
    if did is None:
        raise EventError("distinct_id is required")
    # `$ignore_sent_at` (PostHog): no clock-skew correction, for events sent again later
    # with their original sent_at (a replay would otherwise move them forward by the delay).
    sent = None if props.get("$ignore_sent_at") else ev.get("sent_at", sent_at)
    ts = check_time(event_time(ev.get("timestamp"), sent, opts.received_at, ev.get("offset")),
                    opts)
    call = Call(kind="track", message_id=message_id_of(ev.get("uuid"), "posthog", ev, opts),
                timestamp=ts, distinct_id=did, event=event,
                properties={k: v for k, v in props.items() if k not in _STRIP},
                groups=group_pairs(props.get("$groups"), "properties.$groups"),
                exact_id=untimed_with_id(ev, "uuid"))
    _posthog_person(ev, props, call)
    if event == "$groupidentify":
        call.kind, call.distinct_id = "group", None
        call.person_set, call.person_set_once, call.person_unset = {}, {}, []
        call.group_key = ident(props.get("$group_key"), "$group_key")
        if call.group_key is None:
            raise EventError("$groupidentify needs $group_key")
        structure(call, obj(props, "$group_set", "$group_set"), name(
            props.get("$group_type"), "$group_type"), opts)
    elif event in ("$identify", "$set", "$set_once"):
        call.kind = "identify"
        anon = ident(props.get("$anon_distinct_id"), "$anon_distinct_id")
        if event == "$identify" and anon is not None and anon != did:
            call.kind, call.previous_id = "alias", anon
    elif event == "$create_alias":
        alias = ident(props.get("alias"), "properties.alias")
        if alias is None:
            raise EventError("$create_alias needs properties.alias")
        if alias != did:  # posthog-python: alias(previous_id, distinct_id) sends
            call.kind, call.distinct_id, call.previous_id = "alias", alias, did  # alias=new id
    if props.get("$process_person_profile") is False and call.kind != "group":
        call.kind = "track"
        call.distinct_id, call.previous_id = None, None
        call.person_set, call.person_set_once, call.person_unset = {}, {}, []
    return call


def parse_posthog(body: Any, opts: Options, event_token: Any = None, sent_at: Any = None,
                  default_event: str | None = None) -> Parsed:
    """A capture request. `sent_at`: fallback send time (posthog-js's `?_=` ms stamp)."""
    events, body_sent_at = posthog_events(body)
    sent = body_sent_at if body_sent_at is not None else sent_at
    return each(events, lambda ev: posthog_call(ev, opts, sent, event_token, default_event),
                 "uuid", opts)
