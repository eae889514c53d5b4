"""Wire formats → normalized `Call`s: Segment HTTP Tracking API and Accoil v2 here, PostHog
capture in posthog_format.py; the checks and decisions below are shared by all three.

Pure functions: no I/O, no clock (the receive time comes in `Options`). A request-level
problem (the body is not a batch, too many events) raises `FormatError`; a bad event raises
`EventError` inside the per-event parser and is collected as a rejection, so the good events
of a batch are still stored.

Decisions (documented in the capture blueprint too):
- Event time: `timestamp` (ISO-8601, or Unix seconds / milliseconds) corrected for client
  clock skew with `sentAt` / `sent_at` (message-level first, then the batch's):
  ``corrected = timestamp + (received_at - sent_at)``. PostHog `offset` (ms before sending)
  is used when there is no `timestamp`. No timestamp at all → received time. The result must
  be after 2000-01-01 and at most `max_future_seconds` ahead of the receive time.
- Message ids: `messageId` (Segment, Accoil) / `uuid` (PostHog); missing → a deterministic
  ``"h:" + sha256`` of the format, the type and the canonical message (minus keys that change
  on retry, like `sentAt`), so a retried message without an id is still stored once. Two
  identical messages without id and without timestamp are therefore one when they arrive
  within the de-duplication window (a day either side of the event time, store/ingest.py
  `_fresh`). A message with an id but without timestamp (its time is the receive time,
  which moves with every retry) has its id checked against all stored events instead
  (`untimed_with_id`).
- Group type of a group call: explicit field (`groupType`, `$group_type`), else trait
  `group_type`, else the project's default. `group_type`, `parent_group_id` and
  `parent_group_type` are structure, not properties: they are removed from the stored traits
  (the parent is shown as the group's `parent`). `parent_group_id: null` clears the parent.
- Segment/Accoil events are attributed to `context.groupId` (type `context.groupType`), to
  every pair of `context.groups` and of `integrations.Amplitude.groups` (`{type: key}`). A
  `context.groupId` without a type is a bare key (`Call.bare_group`), resolved in the
  store's transaction: the project's group with that key in any type; none → the default
  type; several types → the default type, with a warning (store/batch.py `_bare`).
- Segment identify carrying both `userId` and `anonymousId` also merges the anonymous
  person into the user (an alias), as PostHog's `$identify` with `$anon_distinct_id` does.
"""

from __future__ import annotations

import hashlib
import hmac
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from ..limits import MAX_EVENT_NESTING, MAX_ID_LENGTH, MAX_NAME_LENGTH, call_problem
from .model import Call

MIN_TIMESTAMP = 946684800.0  # 2000-01-01T00:00:00Z
# The limits (flagsvc/limits.py); MAX_DEPTH: nesting of one event, deeper is refused.
MAX_DEPTH = MAX_EVENT_NESTING
ILLEGAL_IDS = frozenset({"undefined", "null", "None", "NaN", "[object Object]"})

SEGMENT_TYPES = {"identify": "identify", "group": "group", "track": "track", "page": "track",
                 "screen": "track", "alias": "alias"}
PAGE_EVENTS = {"page": "$pageview", "screen": "$screen"}
# Keys that change when the same message is retried; left out of derived message ids.
_VOLATILE = frozenset({"sentAt", "sent_at", "receivedAt", "writeKey", "api_key", "token"})
# PostHog event properties that are structure or credentials, not event data.
_STRUCTURE_TRAITS = ("group_type", "parent_group_id", "parent_group_type")
_ACCOIL_KEYS = {"user_id": "userId", "group_id": "groupId", "anonymous_id": "anonymousId",
                "message_id": "messageId", "previous_id": "previousId", "group_type": "groupType"}


class FormatError(ValueError):
    """The request body as a whole is not in the expected shape."""


class TooManyEvents(FormatError):
    """More events in one request than the documented limit."""


class EventError(ValueError):
    """One event is invalid; it is reported and skipped."""


@dataclass(frozen=True)
class Options:
    """What parsing needs besides the body: the receive time and the project's settings."""

    received_at: float
    max_future_seconds: float = 86400.0
    max_event_bytes: int = 1024 * 1024
    max_batch_events: int = 5000
    private: Mapping[str, str] = field(default_factory=dict)
    salt: str = ""


@dataclass
class Parsed:
    """The calls of the good events and one `{index, reason, message_id?}` per bad one."""

    calls: list[Call] = field(default_factory=list)
    rejected: list[dict[str, Any]] = field(default_factory=list)

    @property
    def total(self) -> int:
        return len(self.calls) + len(self.rejected)


# ------------------------------------------------------------ shared pieces

def parse_time(value: Any, what: str = "timestamp") -> float | None:
    """Unix seconds from ISO-8601 (naive = UTC) or a Unix number (seconds, or milliseconds
    when it is too large to be seconds); None for a missing value; EventError otherwise."""
    if value is None:
        return None
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        if len(value.strip()) > 20:
            raise EventError(f"{what} {value[:40]!r} is not a time")
        value = int(value.strip())
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            seconds = float(value)
        except OverflowError:
            raise EventError(f"{what} is out of range") from None
        if not math.isfinite(seconds):
            raise EventError(f"{what} is not a finite number")
        return seconds / 1000.0 if abs(seconds) >= 1e11 else seconds
    if isinstance(value, str):
        try:
            dt = datetime.fromisoformat(value.strip())
        except ValueError:
            raise EventError(f"{what} {value[:40]!r} is not an ISO-8601 time") from None
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=UTC)
        return dt.timestamp()
    raise EventError(f"{what} must be an ISO-8601 string, not {type(value).__name__}")


def event_time(timestamp: Any, sent_at: Any, received_at: float, offset_ms: Any = None,
               ) -> float:
    """The event time in server time: the client's timestamp shifted by the client's clock
    error (received_at - sent_at), else received_at - offset, else received_at."""
    ts = parse_time(timestamp, "timestamp")
    if ts is not None:
        sent = parse_time(sent_at, "sentAt")
        return ts if sent is None else ts + (received_at - sent)
    if offset_ms is not None:
        if isinstance(offset_ms, bool) or not isinstance(offset_ms, (int, float)):
            raise EventError("offset must be a number of milliseconds")
        return received_at - float(offset_ms) / 1000.0
    return received_at


def check_time(ts: float, opts: Options) -> float:
    if ts < MIN_TIMESTAMP:
        raise EventError("timestamp is before 2000-01-01 (after clock-skew correction)")
    if ts > opts.received_at + opts.max_future_seconds:
        raise EventError(f"timestamp is more than {opts.max_future_seconds:g} seconds in the "
                         "future (after clock-skew correction)")
    return ts


def derived_message_id(kind: str, msg: Mapping[str, Any], key: str = "") -> str:
    """A stable id for a message that has none: equal messages get equal ids. With a `key`
    (the project's hash salt, when it has private properties) the digest is an HMAC, so the
    id cannot be used to confirm a guessed private value."""
    stable = {k: v for k, v in msg.items() if k not in _VOLATILE}
    data = kind.encode() + b"\0" + orjson.dumps(stable, option=orjson.OPT_SORT_KEYS)
    digest = (hmac.new(key.encode(), data, hashlib.sha256) if key else hashlib.sha256(data))
    return "h:" + digest.hexdigest()[:32]


def untimed_with_id(msg: Mapping[str, Any], id_key: str) -> bool:
    """A message with its own id but no timestamp: its id is de-duplicated against every
    stored event (`Call.exact_id`). Without an id either, a later identical message is as
    likely a deliberate repeat as a retry (clients that retry days later are SDKs, which
    send both): its derived id is de-duplicated within the day window only."""
    return msg.get("timestamp") is None and ident(msg.get(id_key), "message id") is not None


def message_id_of(given: Any, kind: str, msg: Mapping[str, Any], opts: Options,
                  scope: list[Any] | None = None) -> str:
    """The client's id (None/"" → derived from the content). With a `scope` (the parts its
    tool de-duplicates the id within: Amplitude's device or user id, Mixpanel's event,
    distinct_id and time) the stored id is derived from the id and that scope, so two users
    sending the same id are two events, as they are in that tool."""
    mid = ident(given, "message id")
    if mid is None:
        return derived_message_id(kind, msg, opts.salt)
    if scope is None:
        return mid
    return derived_message_id(kind.split(":")[0] + ":id", {"id": mid, "scope": scope},
                              opts.salt)


def ident(value: Any, what: str) -> str | None:
    """A distinct id / group key / message id as a string; None if absent or empty."""
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise EventError(f"{what} must be a string, not {type(value).__name__}")
    value = str(value)
    if len(value) > MAX_ID_LENGTH:
        raise EventError(f"{what} is longer than {MAX_ID_LENGTH} characters")
    if value in ILLEGAL_IDS:
        raise EventError(f"{what} {value!r} is a placeholder, not an id")
    return value


def name(value: Any, what: str) -> str:
    """A required non-empty name (event name, group type)."""
    if not isinstance(value, str) or not value.strip():
        raise EventError(f"{what} is required (a non-empty string)")
    if len(value) > MAX_NAME_LENGTH:
        raise EventError(f"{what} is longer than {MAX_NAME_LENGTH} characters")
    return value


def obj(container: Mapping[str, Any], key: str, what: str | None = None) -> dict[str, Any]:
    """An optional object member (null/absent → {}); anything else is an EventError."""
    value = container.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise EventError(f"{what or key} must be an object, not {type(value).__name__}")
    return value


def _depth_ok(value: Any) -> bool:
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_DEPTH:
            return False
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
    return True


def check_event(msg: Any, opts: Options) -> dict[str, Any]:
    """The event as an object within the nesting and size limits."""
    if not isinstance(msg, dict):
        raise EventError(f"an event must be a JSON object, not {type(msg).__name__}")
    try:
        data = orjson.dumps(msg)
    except TypeError:  # orjson refuses nesting past 254 levels (and values JSON cannot hold)
        data = None
    # Depth never exceeds the number of opening brackets, so the walk is only needed for
    # the rare event with many of them (counting bytes is C-fast, walking is not).
    if data is None or data.count(b"{") + data.count(b"[") > MAX_DEPTH:
        if not _depth_ok(msg):
            raise EventError(f"event is nested deeper than {MAX_DEPTH} levels")
        if data is None:
            raise EventError("event cannot be encoded as JSON")
    size = len(data)
    if size > opts.max_event_bytes:
        raise EventError(f"event is {size} bytes, over the {opts.max_event_bytes} byte limit")
    return msg


def group_pairs(value: Any, what: str) -> dict[str, str]:
    """`{group type: key}` (keys may be numbers; null keys are skipped)."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise EventError(f"{what} must be an object of group type → key")
    out = {}
    for gtype, key in value.items():
        k = ident(key, f"{what}.{gtype}")
        if k is not None:
            out[name(gtype, f"group type in {what}")] = k
    return out


def group_lists(value: Any, what: str) -> tuple[dict[str, str], list[tuple[str, str]]]:
    """`{group type: key or [keys]}` (Amplitude's `groups`, Mixpanel's `$groups`): the first
    key of each type, and the further (type, key) pairs of the lists."""
    if isinstance(value, dict) and any(isinstance(v, list) for v in value.values()):
        first = {t: (v[0] if v else None) if isinstance(v, list) else v
                 for t, v in value.items()}
        more = [(t, k) for t, v in value.items() if isinstance(v, list) for k in v[1:]]
    else:
        first, more = value, []
    groups = group_pairs(first, what)
    extra: list[tuple[str, str]] = []
    for gtype, key in more:
        k = ident(key, f"{what}.{gtype}")
        if k is None or (gtype, k) in extra or groups.get(gtype) == k:
            continue
        if gtype in groups:
            extra.append((gtype, k))
        else:  # the list's first keys were null
            groups[name(gtype, f"group type in {what}")] = k
    return groups, extra


def structure(call: Call, traits: dict[str, Any], explicit_type: Any, opts: Options) -> None:
    """Fill the group type and parent of a group call from its fields and traits; the
    structure traits are not stored as properties."""
    gtype = explicit_type if explicit_type not in (None, "") else traits.get("group_type")
    # No type: resolved at write time as a bare id (the stored group with that key, else the
    # default type), like an event's context.groupId (SPEC §3).
    call.group_type = None if gtype in (None, "") else name(gtype, "group type")
    if "parent_group_id" in traits:
        parent = ident(traits["parent_group_id"], "parent_group_id")
        call.parent_key = parent if parent is not None else ""  # "" clears the parent
        ptype = traits.get("parent_group_type")
        call.parent_type = None if ptype in (None, "") else name(ptype, "parent_group_type")
    call.group_set = {k: v for k, v in traits.items() if k not in _STRUCTURE_TRAITS}


def each(items: list[Any], one: Callable[[Any], Call], id_key: str, opts: Options) -> Parsed:
    if len(items) > opts.max_batch_events:
        raise TooManyEvents(f"{len(items)} events in one request; the limit is "
                            f"{opts.max_batch_events}")
    parsed = Parsed()
    for i, item in enumerate(items):
        try:
            # Private properties are scrubbed by Store.ingest, inside its transaction, with
            # the policy current at commit time.
            call = one(item)
            problem = call_problem(call)  # the limits every format shares (limits.py)
            if problem is not None:
                raise EventError(problem)
            parsed.calls.append(call)
        except Exception as e:  # one malformed event never costs the batch its good events
            reason = str(e) if isinstance(e, EventError) else (
                f"malformed event ({type(e).__name__})")
            rejection: dict[str, Any] = {"index": i, "reason": reason}
            if isinstance(item, dict) and isinstance(item.get(id_key), str):
                rejection["message_id"] = item[id_key][:MAX_ID_LENGTH]
            parsed.rejected.append(rejection)
    return parsed


# ------------------------------------------------------------ Segment / Accoil

def segment_call(msg: Any, opts: Options, kind: str | None = None, sent_at: Any = None,
                 source: str = "segment") -> Call:
    """One Segment (or Accoil) message → a Call. `kind` (from the path) overrides `type`."""
    msg = check_event(msg, opts)
    mtype = kind or msg.get("type")
    if not isinstance(mtype, str) or mtype not in SEGMENT_TYPES:
        raise EventError(f"type must be one of {', '.join(SEGMENT_TYPES)}, not {mtype!r}")
    context = obj(msg, "context")
    user = ident(msg.get("userId"), "userId")
    anon = ident(msg.get("anonymousId"), "anonymousId")
    ts = check_time(event_time(msg.get("timestamp"), msg.get("sentAt", sent_at),
                               opts.received_at), opts)
    mid = message_id_of(msg.get("messageId"), f"{source}:{mtype}", msg, opts)
    call = Call(kind=SEGMENT_TYPES[mtype], message_id=mid, timestamp=ts, distinct_id=user or anon,
                exact_id=untimed_with_id(msg, "messageId"))
    if mtype in ("identify", "track", "page", "screen") and call.distinct_id is None:
        raise EventError(f"{mtype} needs a userId or an anonymousId")
    if mtype == "identify":
        call.person_set = dict(obj(msg, "traits"))
        if user and anon and user != anon:
            call.kind, call.previous_id = "alias", anon
    elif mtype == "group":
        call.group_key = ident(msg.get("groupId"), "groupId")
        if call.group_key is None:
            raise EventError("group needs a groupId")
        structure(call, obj(msg, "traits"), msg.get("groupType"), opts)
    elif mtype == "alias":
        call.previous_id = ident(msg.get("previousId"), "previousId")
        if call.previous_id is None or user is None:
            raise EventError("alias needs a previousId and a userId")
    else:
        call.properties = dict(obj(msg, "properties"))
        if mtype == "track":
            call.event = name(msg.get("event"), "event")
        else:
            call.event = PAGE_EVENTS[mtype]
            for key in ("name", "category"):
                if msg.get(key) is not None:
                    call.properties.setdefault(key, msg[key])
    if mtype != "group":
        amplitude = obj(obj(msg, "integrations"), "Amplitude", "integrations.Amplitude")
        call.groups = group_pairs(amplitude.get("groups"), "integrations.Amplitude.groups")
        call.groups.update(group_pairs(context.get("groups"), "context.groups"))
        gid = ident(context.get("groupId"), "context.groupId")
        gtype = context.get("groupType")
        if gid is not None and gtype in (None, ""):
            call.bare_group = gid  # resolved against the stored groups at write time
        elif gid is not None:
            call.groups[name(gtype, "context.groupType")] = gid
    return call


def parse_segment(body: Any, kind: str, opts: Options) -> Parsed:
    """A Segment request: `kind` is the path's last part (`batch` / `import` or a type)."""
    if not isinstance(body, dict):
        raise FormatError("body must be a JSON object")
    if kind not in ("batch", "import"):
        return each([body], lambda m: segment_call(m, opts, kind), "messageId", opts)
    batch = body.get("batch")
    if not isinstance(batch, list):
        raise FormatError("body must have a `batch` list of messages")
    sent_at, shared = body.get("sentAt"), body.get("context")
    if isinstance(shared, dict):  # batch-level context: defaults for every message's context
        batch = [{**m, "context": {**shared, **(m.get("context") or {})}}
                 if isinstance(m, dict) and isinstance(m.get("context") or {}, dict) else m
                 for m in batch]
    return each(batch, lambda m: segment_call(m, opts, sent_at=sent_at), "messageId", opts)


def parse_accoil(body: Any, kind: str, opts: Options) -> Parsed:
    """An Accoil v2 call: one Segment-like message; snake_case ids are accepted too."""
    if not isinstance(body, dict):
        raise FormatError("body must be a JSON object")
    msg = {_ACCOIL_KEYS.get(k, k): v for k, v in body.items()}
    return each([msg], lambda m: segment_call(m, opts, kind, source="accoil"), "messageId",
                 opts)
