"""Mixpanel ingestion (`/track`, `/engage`, `/groups`) → normalized `Call`s.

Shared checks, times and ids are formats.py's. Mixpanel-specific decisions:
- The payload is `data`: JSON or base64 JSON, in the query (GET), in a form field (POST,
  what the stock Python and Node clients send), or as the whole body; gzip as everywhere.
  One record or a list of them.
- Track: `{event, properties: {token, distinct_id, time, $insert_id, …}}`; `time` in seconds
  or milliseconds. Mixpanel has no client send-time field, so no clock-skew correction.
  `$insert_id` is the message id (the stock clients set one; missing → derived from content).
  `token`, `distinct_id`, `time`, `$insert_id` are structure, not stored as properties.
  `$create_alias` (`properties.alias`) is an alias of that id into `distinct_id`; `$merge`
  (`properties.$distinct_ids` [a, b], the Python client's `merge`, sent to /import) merges b
  into a, as an alias.
- Groups of an event: `$groups` (`{group key: id}`) and every property named like a group
  key of the project: a group type of the project, or a key of the project setting
  `mixpanel_group_keys` (`{"company_id": "organization"}`). A list value takes its first id.
- `/engage`: `$distinct_id` with `$set`, `$set_once`, `$unset` (a list of names) applied;
  `/groups`: `$group_key` (mapped through `mixpanel_group_keys`, else used as the type) and
  `$group_id` with the same operations; `parent_group_id`/`parent_group_type` set the parent.
  `$time` (ms) orders the writes. `$add`, `$union`, `$append`, `$remove`, `$delete` are not
  applied: reported in `ignored_operations` of the answer, never silently lost.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
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
    group_pairs,
    ident,
    message_id_of,
    name,
    obj,
    parse_time,
    structure,
)
from .model import Call

UNSUPPORTED_OPS = ("$add", "$union", "$append", "$remove", "$delete")
_TRACK_STRUCTURE = ("token", "distinct_id", "time", "$insert_id", "$groups")


def decode_data(value: str | bytes) -> Any:
    """`data`: JSON, or base64 (standard or URL-safe) of JSON."""
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
    text = text.strip()
    if not text:
        raise FormatError("data is empty; a JSON object or list was expected")
    if text[0] not in "{[":
        try:
            text = base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_" if (
                "-" in text or "_" in text) else None, validate=True).decode("utf-8")
        except (binascii.Error, ValueError, UnicodeDecodeError):
            raise FormatError("data is neither JSON nor base64 of JSON") from None
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as e:
        raise FormatError(f"data is not valid JSON: {e}") from None


def records(payload: Any) -> list[Any]:
    if isinstance(payload, dict):
        return [payload]
    if not isinstance(payload, list):
        raise FormatError("data must be a JSON object or a list of them")
    return payload


def is_mixpanel(items: list[Any]) -> bool:
    """Mixpanel's records (told from PostHog's on the same /track and /engage paths): track
    records have only `event` and `properties` with the token inside; profile records carry
    `$token`. PostHog's carry `uuid`, `distinct_id`, `timestamp` or `api_key` at top level."""
    def one(r: Any) -> bool:
        if not isinstance(r, dict):
            return False
        if "$token" in r:
            return True
        props = r.get("properties")
        return set(r) <= {"event", "properties"} and isinstance(props, dict) \
            and "token" in props
    return bool(items) and all(one(r) for r in items)


def token_of(items: list[Any]) -> Any:
    for r in items:
        if isinstance(r, dict):
            props = r.get("properties")
            tok = r.get("$token") or (props.get("token") if isinstance(props, dict) else None)
            if tok:
                return tok
    return None


def _event_groups(props: dict[str, Any], group_keys: Mapping[str, str]) -> dict[str, str]:
    groups = group_pairs({group_keys.get(k, k): v for k, v in obj(props, "$groups").items()},
                         "$groups")
    for key, gtype in group_keys.items():
        value = props.get(key)
        if isinstance(value, list):
            value = value[0] if value else None
        if isinstance(value, (str, int)) and not isinstance(value, bool):
            gid = ident(value, key)
            if gid is not None:
                groups.setdefault(gtype, gid)
    return groups


def track_call(ev: Any, opts: Options, group_keys: Mapping[str, str]) -> Call:
    ev = check_event(ev, opts)
    event = name(ev.get("event"), "event")
    props = obj(ev, "properties")
    distinct = ident(props.get("distinct_id"), "properties.distinct_id")
    t = parse_time(props.get("time"), "properties.time")
    ts = check_time(opts.received_at if t is None else t, opts)
    mid = message_id_of(props.get("$insert_id"), f"mixpanel:{event}", ev, opts)
    call = Call(kind="track", message_id=mid, timestamp=ts, distinct_id=distinct,
                exact_id=t is None and ident(props.get("$insert_id"), "$insert_id") is not None)
    if event == "$merge":  # the Python client's merge(): two ids, the second merged in
        ids = props.get("$distinct_ids")
        if not isinstance(ids, list) or len(ids) != 2:
            raise EventError("$merge needs properties.$distinct_ids, a list of two ids")
        call.kind, call.distinct_id = "alias", ident(ids[0], "$distinct_ids[0]")
        call.previous_id = ident(ids[1], "$distinct_ids[1]")
        if call.distinct_id is None or call.previous_id is None:
            raise EventError("$merge needs properties.$distinct_ids, a list of two ids")
        return call
    if distinct is None:
        raise EventError("properties.distinct_id is required")
    if event == "$create_alias":
        alias = ident(props.get("alias"), "properties.alias")
        if alias is None:
            raise EventError("$create_alias needs properties.alias")
        call.kind, call.previous_id = "alias", alias
        return call
    call.event = event
    call.groups = _event_groups(props, group_keys)
    call.properties = {k: v for k, v in props.items() if k not in _TRACK_STRUCTURE}
    return call


def _ops(rec: dict[str, Any], ignored: set[str]) -> tuple[dict, dict, list[str]]:
    unset = rec.get("$unset") or []
    if isinstance(unset, dict):
        unset = list(unset)
    if not isinstance(unset, list) or not all(isinstance(u, str) for u in unset):
        raise EventError("$unset must be a list of property names")
    ignored.update(op for op in UNSUPPORTED_OPS if op in rec)
    return dict(obj(rec, "$set")), dict(obj(rec, "$set_once")), unset


def profile_call(rec: Any, opts: Options, group_keys: Mapping[str, str], group: bool,
                 ignored: set[str]) -> Call:
    rec = check_event(rec, opts)
    t = parse_time(rec.get("$time"), "$time")
    ts = check_time(opts.received_at if t is None else t, opts)
    kind = "group" if group else "identify"
    call = Call(kind=kind, message_id=message_id_of(None, f"mixpanel:{kind}", rec, opts),
                timestamp=ts)
    set_, once, unset = _ops(rec, ignored)
    if group:
        key = name(rec.get("$group_key"), "$group_key")
        call.group_key = ident(rec.get("$group_id"), "$group_id")
        if call.group_key is None:
            raise EventError("$group_id is required")
        structure(call, {**once, **set_}, group_keys.get(key, key), opts)
        call.group_unset = unset
    else:
        call.distinct_id = ident(rec.get("$distinct_id"), "$distinct_id")
        if call.distinct_id is None:
            raise EventError("$distinct_id is required")
        call.person_set, call.person_set_once, call.person_unset = set_, once, unset
    return call


def parse(items: list[Any], endpoint: str, opts: Options,
          group_keys: Mapping[str, str]) -> tuple[Parsed, list[str]]:
    """`endpoint`: track, engage or groups."""
    ignored: set[str] = set()
    if endpoint == "track":
        parsed = each(items, lambda e: track_call(e, opts, group_keys), "", opts)
    else:
        parsed = each(items, lambda r: profile_call(r, opts, group_keys, endpoint == "groups",
                                                    ignored), "", opts)
    return parsed, sorted(ignored)
