"""Wire-format parsers (flagsvc.ingest.formats): Segment, PostHog, Accoil → normalized Calls.

Pure functions, no server: each table row is one message and what it must become (or why it
must be rejected)."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flagsvc.ingest import formats, posthog_format, privacy
from flagsvc.ingest.formats import EventError, FormatError, Options, TooManyEvents

pytestmark = pytest.mark.backends

NOW = 1_800_000_000.0  # the receive time of every test request (2027-01-15T08:00:00Z)
ISO_NOW = "2027-01-15T08:00:00+00:00"


def opts(**kw) -> Options:
    return Options(received_at=NOW, **kw)


# ------------------------------------------------------------ time

@pytest.mark.parametrize("value, expected", [
    ("2027-01-15T08:00:00+00:00", NOW),
    ("2027-01-15T08:00:00Z", NOW),
    ("2027-01-15T10:00:00+02:00", NOW),
    ("2027-01-15T08:00:00", NOW),  # naive = UTC
    ("2027-01-15T08:00:00.250Z", NOW + 0.25),
    (NOW, NOW),
    (int(NOW), NOW),
    (NOW * 1000, NOW),  # milliseconds (Accoil, posthog-js `_`)
    (str(int(NOW * 1000)), NOW),
    (None, None),
])
def test_parse_time(value, expected):
    assert formats.parse_time(value) == pytest.approx(expected) if expected else (
        formats.parse_time(value) is None)


@pytest.mark.parametrize("value", ["yesterday", "2027-13-01T00:00:00Z", "", True, [1], {}])
def test_parse_time_rejects(value):
    with pytest.raises(EventError):
        formats.parse_time(value)


@pytest.mark.parametrize("timestamp, sent_at, offset, expected", [
    # client clock 1 h ahead: event stamped 10 s before sending → 10 s before receipt
    ("2027-01-15T08:59:50Z", "2027-01-15T09:00:00Z", None, NOW - 10),
    # client clock 1 day behind
    ("2027-01-14T07:59:00Z", "2027-01-14T08:00:00Z", None, NOW - 60),
    # no sentAt: the timestamp as given
    ("2027-01-15T07:00:00Z", None, None, NOW - 3600),
    # no timestamp: PostHog offset (ms before sending), else the receive time
    (None, "2027-01-15T09:00:00Z", 1500, NOW - 1.5),
    (None, None, None, NOW),
    # timestamp wins over offset
    ("2027-01-15T07:00:00Z", None, 5000, NOW - 3600),
])
def test_event_time_skew_correction(timestamp, sent_at, offset, expected):
    assert formats.event_time(timestamp, sent_at, NOW, offset) == pytest.approx(expected)


@pytest.mark.parametrize("ts, ok", [
    (NOW, True), (NOW + 86400, True), (NOW + 86401, False), (946684800.0, True),
    (946684799.0, False), (0.0, False)])
def test_time_bounds(ts, ok):
    if ok:
        assert formats.check_time(ts, opts()) == ts
    else:
        with pytest.raises(EventError):
            formats.check_time(ts, opts())


# ------------------------------------------------------------ message ids

def test_derived_message_id_is_deterministic_and_ignores_retry_fields():
    msg = {"type": "track", "userId": "u1", "event": "Clicked", "properties": {"a": 1, "b": 2}}
    a = formats.derived_message_id("segment:track", msg)
    assert a == formats.derived_message_id("segment:track", {
        "properties": {"b": 2, "a": 1}, "event": "Clicked", "userId": "u1", "type": "track",
        "sentAt": "2027-01-01T00:00:00Z", "writeKey": "k"})
    assert a.startswith("h:") and len(a) == 34
    assert a != formats.derived_message_id("segment:identify", msg)
    assert a != formats.derived_message_id("segment:track", {**msg, "properties": {"a": 2}})
    keyed = formats.derived_message_id("segment:track", msg, key="salt")
    assert keyed != a and keyed == formats.derived_message_id("segment:track", msg, key="salt")


def test_missing_message_id_is_derived_and_given_ids_are_kept():
    no_id = {"type": "track", "userId": "u1", "event": "E", "timestamp": ISO_NOW}
    first = formats.segment_call(no_id, opts())
    again = formats.segment_call({**no_id, "sentAt": ISO_NOW}, opts())
    assert first.message_id == again.message_id
    assert formats.segment_call({**no_id, "messageId": "m-1"}, opts()).message_id == "m-1"
    assert formats.segment_call({**no_id, "messageId": 42}, opts()).message_id == "42"
    ph = {"event": "e", "distinct_id": "u1"}
    derived = posthog_format.posthog_call(ph, opts()).message_id
    assert derived == posthog_format.posthog_call(ph, opts()).message_id
    assert posthog_format.posthog_call({**ph, "uuid": "abc"}, opts()).message_id == "abc"


# ------------------------------------------------------------ Segment

def fields(call):
    """The interesting fields of a Call (defaults left out)."""
    out = {"kind": call.kind}
    for k in ("distinct_id", "event", "properties", "person_set", "person_set_once",
              "person_unset", "group_type", "group_key", "group_set", "parent_key",
              "parent_type", "groups", "previous_id", "bare_group"):
        v = getattr(call, k)
        if v not in (None, {}, []):
            out[k] = v
    return out


SEGMENT_CASES = [
    ("identify traits → person $set, null kept",
     {"type": "identify", "userId": "u1", "traits": {"email": "a@x.io", "plan": None}},
     {"kind": "identify", "distinct_id": "u1", "person_set": {"email": "a@x.io", "plan": None}}),
    ("identify by anonymousId only",
     {"type": "identify", "anonymousId": "anon", "traits": {"a": 1}},
     {"kind": "identify", "distinct_id": "anon", "person_set": {"a": 1}}),
    ("identify with userId and anonymousId merges the anonymous person",
     {"type": "identify", "userId": "u1", "anonymousId": "anon", "traits": {}},
     {"kind": "alias", "distinct_id": "u1", "previous_id": "anon"}),
    ("numeric ids become strings",
     {"type": "identify", "userId": 7, "traits": None},
     {"kind": "identify", "distinct_id": "7"}),
    # (no type: resolved when stored, as a bare id — the stored group's type, else the
    # default type: tests/test_group_attribution.py)
    ("group: no type, membership, traits",
     {"type": "group", "userId": "u1", "groupId": "acme", "traits": {"plan": "pro"}},
     {"kind": "group", "distinct_id": "u1", "group_key": "acme",
      "group_set": {"plan": "pro"}}),
    ("group: trait group_type and parent are structure, not properties",
     {"type": "group", "groupId": "w1", "traits": {
         "group_type": "workspace", "name": "Eng", "parent_group_id": "a1",
         "parent_group_type": "account"}},
     {"kind": "group", "group_type": "workspace", "group_key": "w1", "group_set": {"name": "Eng"},
      "parent_key": "a1", "parent_type": "account"}),
    ("group: explicit groupType wins over the trait",
     {"type": "group", "groupId": 5, "groupType": "account", "traits": {"group_type": "x"}},
     {"kind": "group", "group_type": "account", "group_key": "5"}),
    ("group: parent_group_id null clears the parent",
     {"type": "group", "groupId": "w1", "traits": {"parent_group_id": None}},
     {"kind": "group", "group_key": "w1", "parent_key": ""}),
    ("track: properties and a bare context.groupId (typed by the store)",
     {"type": "track", "userId": "u1", "event": "Clicked", "properties": {"b": 1},
      "context": {"groupId": "acme", "library": {"name": "x"}}},
     {"kind": "track", "distinct_id": "u1", "event": "Clicked", "properties": {"b": 1},
      "bare_group": "acme"}),
    ("track: context.groupType and context.groups",
     {"type": "track", "userId": "u1", "event": "E",
      "context": {"groupId": "p1", "groupType": "project", "groups": {"account": "a1"}}},
     {"kind": "track", "distinct_id": "u1", "event": "E",
      "groups": {"account": "a1", "project": "p1"}}),
    ("page: $pageview with name and category",
     {"type": "page", "anonymousId": "a", "name": "Home", "category": None,
      "properties": {"path": "/"}},
     {"kind": "track", "distinct_id": "a", "event": "$pageview",
      "properties": {"path": "/", "name": "Home"}}),
    ("screen",
     {"type": "screen", "userId": "u1", "name": "Settings"},
     {"kind": "track", "distinct_id": "u1", "event": "$screen",
      "properties": {"name": "Settings"}}),
    ("alias: previousId merged into userId",
     {"type": "alias", "userId": "u1", "previousId": "anon"},
     {"kind": "alias", "distinct_id": "u1", "previous_id": "anon"}),
]


@pytest.mark.parametrize("msg, expected", [c[1:] for c in SEGMENT_CASES],
                         ids=[c[0] for c in SEGMENT_CASES])
def test_segment_message(msg, expected):
    assert fields(formats.segment_call(msg, opts())) == expected


def test_segment_group_without_a_type_is_typed_by_the_store():
    # the stored group with that key, else the project's default type: resolved once, at
    # write time in the transaction (tests/test_group_attribution.py), as for an event's
    # bare context.groupId — parsing does not know the default type
    call = formats.segment_call({"type": "group", "groupId": "a"}, opts())
    assert call.group_type is None and call.group_key == "a"
    assert "default_group_type" not in {f.name for f in dataclasses.fields(Options)}


def test_segment_path_type_overrides_the_message_type():
    call = formats.segment_call({"type": "track", "userId": "u1", "traits": {"a": 1}}, opts(),
                                kind="identify")
    assert (call.kind, call.person_set) == ("identify", {"a": 1})


SEGMENT_REJECTS = [
    ("not an object", ["x"], "JSON object"),
    ("unknown type", {"type": "flush", "userId": "u"}, "type must be one of"),
    ("identify without ids", {"type": "identify", "traits": {}}, "userId or an anonymousId"),
    ("track without event", {"type": "track", "userId": "u"}, "event is required"),
    ("track with empty event", {"type": "track", "userId": "u", "event": " "}, "event"),
    ("group without groupId", {"type": "group", "userId": "u", "traits": {}}, "groupId"),
    ("traits not an object", {"type": "identify", "userId": "u", "traits": [1]}, "traits must"),
    ("properties not an object",
     {"type": "track", "userId": "u", "event": "e", "properties": "x"}, "properties must"),
    ("context not an object", {"type": "track", "userId": "u", "event": "e", "context": 3},
     "context must"),
    ("userId an object", {"type": "identify", "userId": {"id": 1}}, "userId must be a string"),
    ("userId placeholder", {"type": "identify", "userId": "undefined"}, "placeholder"),
    ("userId too long", {"type": "identify", "userId": "u" * 201}, "longer than 200"),
    ("alias without previousId", {"type": "alias", "userId": "u"}, "previousId"),
    ("bad timestamp", {"type": "identify", "userId": "u", "timestamp": "soon"}, "ISO-8601"),
    ("future timestamp", {"type": "identify", "userId": "u", "timestamp": "2027-01-17T08:00:00Z"},
     "in the future"),
    ("before 2000", {"type": "identify", "userId": "u", "timestamp": "1999-12-31T23:59:59Z"},
     "before 2000"),
    ("bad sentAt", {"type": "identify", "userId": "u", "timestamp": ISO_NOW, "sentAt": "x"},
     "sentAt"),
    ("bad group type", {"type": "group", "groupId": "g", "traits": {"group_type": 3}},
     "group type"),
    ("bad context.groups", {"type": "track", "userId": "u", "event": "e",
                            "context": {"groups": ["a"]}}, "context.groups"),
]


@pytest.mark.parametrize("msg, reason", [c[1:] for c in SEGMENT_REJECTS],
                         ids=[c[0] for c in SEGMENT_REJECTS])
def test_segment_rejects(msg, reason):
    with pytest.raises(EventError, match=reason):
        formats.segment_call(msg, opts())


def test_segment_batch_sent_at_and_message_sent_at():
    body = {"sentAt": "2027-01-15T09:00:00Z", "batch": [
        {"type": "identify", "userId": "u1", "timestamp": "2027-01-15T08:59:00Z"},
        {"type": "identify", "userId": "u2", "timestamp": "2027-01-15T08:59:00Z",
         "sentAt": "2027-01-15T08:59:30Z"}]}
    calls = formats.parse_segment(body, "batch", opts()).calls
    assert [c.timestamp for c in calls] == [NOW - 60, NOW - 30]


def test_segment_batch_context_is_a_default_for_each_message():
    body = {"context": {"groupId": "acme"}, "batch": [
        {"type": "track", "userId": "u1", "event": "e"},
        {"type": "track", "userId": "u1", "event": "e", "context": {"groupId": "other"}}]}
    calls = formats.parse_segment(body, "import", opts()).calls
    assert [c.bare_group for c in calls] == ["acme", "other"]


def test_partial_batch_reports_index_reason_and_message_id():
    body = {"batch": [{"type": "identify", "userId": "u1"}, "junk",
                      {"type": "track", "userId": "u1", "messageId": "m2"},
                      {"type": "group", "groupId": "g"}]}
    parsed = formats.parse_segment(body, "batch", opts())
    assert [c.kind for c in parsed.calls] == ["identify", "group"]
    assert [(r["index"], r.get("message_id")) for r in parsed.rejected] == [(1, None), (2, "m2")]
    assert "event" in parsed.rejected[1]["reason"]


@pytest.mark.parametrize("body, kind", [
    ({"batch": {"type": "identify"}}, "batch"), ({}, "batch"), ([], "identify"), ("x", "batch")])
def test_segment_body_shape_errors(body, kind):
    with pytest.raises(FormatError):
        formats.parse_segment(body, kind, opts())


def test_too_many_events():
    body = {"batch": [{"type": "identify", "userId": "u"}] * 3}
    assert len(formats.parse_segment(body, "batch", opts(max_batch_events=3)).calls) == 3
    with pytest.raises(TooManyEvents, match="limit is 2"):
        formats.parse_segment(body, "batch", opts(max_batch_events=2))


def test_event_size_limit_measures_the_serialized_event():
    msg = {"type": "identify", "userId": "u", "traits": {"blob": "x" * 1000}}
    formats.segment_call(msg, opts(max_event_bytes=1100))
    with pytest.raises(EventError, match="over the 900 byte limit"):
        formats.segment_call(msg, opts(max_event_bytes=900))


def test_deep_nesting_is_rejected_not_a_crash():
    deep: dict = {}
    node = deep
    for _ in range(300):
        node["a"] = {}
        node = node["a"]
    with pytest.raises(EventError, match="nested deeper"):
        formats.segment_call({"type": "identify", "userId": "u", "traits": deep}, opts())
    shallow = {"a": {"b": {"c": {"d": {"e": {"f": {"g": 1}}}}}}}
    call = formats.segment_call({"type": "identify", "userId": "u", "traits": shallow}, opts())
    assert call.person_set == shallow


# ------------------------------------------------------------ Accoil

def test_accoil_messages_accept_camel_and_snake_case():
    a = formats.parse_accoil({"groupId": "w1", "userId": "u1", "traits": {
        "name": "Eng", "parent_group_id": "acme_123"}, "timestamp": int(NOW * 1000)},
        "group", opts()).calls[0]
    assert fields(a) == {"kind": "group", "distinct_id": "u1", "group_key": "w1",
                         "group_set": {"name": "Eng"}, "parent_key": "acme_123"}
    assert a.timestamp == NOW
    b = formats.parse_accoil({"user_id": "u1", "event": "Task Completed", "context": {
        "groupId": "proj"}}, "track", opts()).calls[0]
    assert fields(b) == {"kind": "track", "distinct_id": "u1", "event": "Task Completed",
                         "bare_group": "proj"}


# ------------------------------------------------------------ PostHog

def ph(event, **kw):
    kw.setdefault("distinct_id", "u1")
    return {"event": event, **kw}


POSTHOG_CASES = [
    ("plain event with $groups; structure and token stripped from properties",
     ph("clicked", properties={"a": 1, "$groups": {"company": "acme", "team": 7},
                               "token": "phc_x"}),
     {"kind": "track", "distinct_id": "u1", "event": "clicked", "properties": {"a": 1},
      "groups": {"company": "acme", "team": "7"}}),
    ("$set event, top-level $set (posthog-python set())",
     ph("$set", **{"$set": {"email": "a@x.io"}}),
     {"kind": "identify", "distinct_id": "u1", "event": "$set",
      "person_set": {"email": "a@x.io"}}),
    ("$set_once event", ph("$set_once", **{"$set_once": {"first": "web"}}),
     {"kind": "identify", "distinct_id": "u1", "event": "$set_once",
      "person_set_once": {"first": "web"}}),
    ("any event may carry $set / $set_once / $unset in properties",
     ph("upgraded", properties={"$set": {"plan": "pro"}, "$set_once": {"f": 1},
                                "$unset": ["trial"]}),
     {"kind": "track", "distinct_id": "u1", "event": "upgraded", "person_set": {"plan": "pro"},
      "person_set_once": {"f": 1}, "person_unset": ["trial"]}),
    ("top-level $set wins over properties.$set",
     ph("e", properties={"$set": {"a": 1, "b": 1}}, **{"$set": {"a": 2}}),
     {"kind": "track", "distinct_id": "u1", "event": "e", "person_set": {"a": 2, "b": 1}}),
    ("$identify with $anon_distinct_id merges the anonymous person",
     ph("$identify", properties={"$anon_distinct_id": "anon", "$set": {"e": 1}}),
     {"kind": "alias", "distinct_id": "u1", "event": "$identify", "previous_id": "anon",
      "person_set": {"e": 1}, "properties": {"$anon_distinct_id": "anon"}}),
    ("$identify without anon id", ph("$identify", **{"$set": {"e": 1}}),
     {"kind": "identify", "distinct_id": "u1", "event": "$identify", "person_set": {"e": 1}}),
    ("$groupidentify: group only, no person for posthog-python's random distinct id",
     ph("$groupidentify", distinct_id="8f0e-random", properties={
         "$group_type": "workspace", "$group_key": "w1",
         "$group_set": {"name": "Eng", "parent_group_id": "a1", "parent_group_type": "account"}}),
     {"kind": "group", "event": "$groupidentify", "group_type": "workspace", "group_key": "w1",
      "group_set": {"name": "Eng"}, "parent_key": "a1", "parent_type": "account",
      "properties": {"$group_type": "workspace", "$group_key": "w1"}}),
    ("$create_alias as posthog-python sends alias(previous_id='anon', distinct_id='u1')",
     ph("$create_alias", distinct_id="anon", properties={"distinct_id": "anon", "alias": "u1"}),
     {"kind": "alias", "distinct_id": "u1", "previous_id": "anon", "event": "$create_alias",
      "properties": {"distinct_id": "anon", "alias": "u1"}}),
    ("$feature_flag_called is an ordinary event",
     ph("$feature_flag_called", properties={"$feature_flag": "f", "$feature_flag_response": True}),
     {"kind": "track", "distinct_id": "u1", "event": "$feature_flag_called",
      "properties": {"$feature_flag": "f", "$feature_flag_response": True}}),
    ("$process_person_profile false: no person",
     ph("e", properties={"$process_person_profile": False, "$set": {"a": 1},
                         "$groups": {"company": "acme"}}),
     {"kind": "track", "event": "e", "properties": {"$process_person_profile": False},
      "groups": {"company": "acme"}}),
    ("posthog-js style: distinct id in properties",
     {"event": "$pageview", "properties": {"distinct_id": "u9", "token": "phc"}},
     {"kind": "track", "distinct_id": "u9", "event": "$pageview",
      "properties": {"distinct_id": "u9"}}),
]


@pytest.mark.parametrize("ev, expected", [c[1:] for c in POSTHOG_CASES],
                         ids=[c[0] for c in POSTHOG_CASES])
def test_posthog_event(ev, expected):
    assert fields(posthog_format.posthog_call(ev, opts())) == expected


POSTHOG_REJECTS = [
    ("no event name", {"distinct_id": "u"}, "event is required"),
    ("no distinct id", {"event": "e"}, "distinct_id is required"),
    ("properties a list", ph("e", properties=[1]), "properties must"),
    ("$set a string", ph("$set", **{"$set": "x"}), r"\$set must"),
    ("$unset not names", ph("e", properties={"$unset": [1]}), r"\$unset"),
    ("$groups a list", ph("e", properties={"$groups": ["a"]}), r"\$groups"),
    ("$groupidentify without key", ph("$groupidentify", properties={"$group_type": "t"}),
     r"\$group_key"),
    ("$groupidentify without type", ph("$groupidentify", properties={"$group_key": "k"}),
     r"\$group_type"),
    ("$create_alias without alias", ph("$create_alias"), "alias"),
    ("bad offset", ph("e", offset="soon"), "offset"),
]


@pytest.mark.parametrize("ev, reason", [c[1:] for c in POSTHOG_REJECTS],
                         ids=[c[0] for c in POSTHOG_REJECTS])
def test_posthog_rejects(ev, reason):
    with pytest.raises(EventError, match=reason):
        posthog_format.posthog_call(ev, opts())


@pytest.mark.parametrize("body, n, sent_at", [
    ({"batch": [ph("a"), ph("b")], "sent_at": ISO_NOW, "api_key": "k"}, 2, ISO_NOW),
    ([ph("a"), ph("b"), ph("c")], 3, None),
    (ph("a", sent_at="x"), 1, "x"),
])
def test_posthog_body_forms(body, n, sent_at):
    events, sent = posthog_format.posthog_events(body)
    assert (len(events), sent) == (n, sent_at)


@pytest.mark.parametrize("body, events, expected", [
    ({"api_key": "k1", "batch": []}, [], ("k1", False)),
    ({"token": "k2"}, [{"event": "e"}], ("k2", False)),
    ([{"event": "e", "properties": {"token": "k3"}}], None, ("k3", True)),
    ({"event": "e", "properties": {"token": "k4"}}, None, ("k4", True)),
    ({"$token": "k5", "$set": {}}, None, ("k5", False)),
    ([{"event": "e"}], None, (None, False)),
])
def test_posthog_token(body, events, expected):
    if events is None:
        events = posthog_format.posthog_events(body)[0]
    assert posthog_format.posthog_token(body, events) == expected


def test_posthog_skew_correction_and_offset():
    body = {"sent_at": "2027-01-15T09:00:00Z", "batch": [
        ph("a", timestamp="2027-01-15T08:59:50Z", uuid="id-a"), ph("b", offset=2000, uuid="id-b")]}
    calls = posthog_format.parse_posthog(body, opts()).calls
    assert [c.timestamp for c in calls] == [NOW - 10, NOW - 2]
    # a client id without client timestamp: the id is checked against all stored events
    assert [c.exact_id for c in calls] == [False, True]
    assert not posthog_format.parse_posthog([ph("c", offset=10)], opts()).calls[0].exact_id


def test_posthog_ignore_sent_at_keeps_the_client_timestamp():
    """PostHog's `$ignore_sent_at`: a sender replaying stored events (their `sent_at` days
    old) asks for no clock-skew correction, so they keep their own time instead of being
    moved forward by the delay (and then overwriting newer properties)."""
    body = {"sent_at": "2027-01-12T08:00:00Z", "batch": [
        ph("a", timestamp="2027-01-12T07:59:50Z", properties={"$ignore_sent_at": True}),
        ph("b", timestamp="2027-01-12T07:59:50Z"),
        ph("c", timestamp="2027-01-12T07:59:50Z", properties={"$ignore_sent_at": False})]}
    calls = posthog_format.parse_posthog(body, opts()).calls
    assert [c.timestamp for c in calls] == [NOW - 3 * 86400 - 10, NOW - 10, NOW - 10]


def test_posthog_query_sent_at_fallback_in_milliseconds():
    calls = posthog_format.parse_posthog([ph("a", timestamp="2027-01-15T08:59:50Z")], opts(),
                                  sent_at=str(int((NOW + 3600) * 1000))).calls
    assert calls[0].timestamp == NOW - 10  # stamped 10 s before the client's `_` send time


def test_posthog_event_with_another_token_is_refused_when_auth_came_from_an_event():
    body = [ph("a", properties={"token": "k1"}), ph("b", properties={"token": "k2"}), ph("c")]
    parsed = posthog_format.parse_posthog(body, opts(), event_token="k1")
    assert [c.event for c in parsed.calls] == ["a", "c"]
    assert parsed.rejected[0]["index"] == 1
    assert "different api token" in parsed.rejected[0]["reason"]


def test_engage_default_event_is_set():
    parsed = posthog_format.parse_posthog({"$distinct_id": "u1", "$set": {"a": 1}, "$token": "k"},
                                   opts(), default_event="$set")
    assert fields(parsed.calls[0]) == {"kind": "identify", "distinct_id": "u1", "event": "$set",
                                       "person_set": {"a": 1}}


@pytest.mark.parametrize("body", ["x", 3, {"batch": "x"}])
def test_posthog_body_shape_errors(body):
    with pytest.raises(FormatError):
        posthog_format.parse_posthog(body, opts())


# ------------------------------------------------------------ privacy

POLICY = {"management_email": "drop", "customer_id": "hash"}


def test_private_properties_are_dropped_or_hashed_everywhere():
    o = opts(private=POLICY, salt="s3cret")
    secret = privacy.hash_value("s3cret", "cus_42")
    group = formats.segment_call({"type": "group", "groupId": "org1", "traits": {
        "name": "Acme", "management_email": "boss@acme.io", "customer_id": "cus_42"}}, o)
    group = privacy.scrub_call(group, o.private, o.salt)
    assert group.group_set == {"name": "Acme", "customer_id": secret}
    parsed = posthog_format.parse_posthog([ph("e", properties={
        "customer_id": "cus_42", "nested": {"management_email": "x", "k": [{"customer_id": None}]},
        "$set": {"management_email": "x", "ok": 1}}, **{"$set_once": {"customer_id": "cus_42"}})],
        o)
    # Parsing keeps values as sent; Store.ingest scrubs them inside its transaction.
    call = privacy.scrub_call(parsed.calls[0], o.private, o.salt)
    assert call.properties == {"customer_id": secret, "nested": {"k": [{"customer_id": None}]}}
    assert call.person_set == {"ok": 1}
    assert call.person_set_once == {"customer_id": secret}


@pytest.mark.parametrize("raw, expected", [
    ({"a": "drop", "b": "hash"}, {"a": "drop", "b": "hash"}),
    ({"a": "encrypt"}, {"a": "drop"}),  # unknown action fails closed
    (["a", 3], {"a": "drop"}),
    (None, {}), ("a", {}),
])
def test_privacy_policy_of(raw, expected):
    assert privacy.policy_of(raw) == expected


def test_hash_value_is_keyed_and_typed():
    h = privacy.hash_value("salt", "cus_42")
    assert h == privacy.hash_value("salt", "cus_42")
    assert h.startswith("hmac:") and len(h) == 5 + 64
    assert h != privacy.hash_value("other", "cus_42")
    # numbers hash as their JSON text, so 5 and "5" match alike (numeric strings compare as
    # numbers in flag operators); other types stay distinct
    assert privacy.hash_value("salt", 5) == privacy.hash_value("salt", "5")
    assert privacy.hash_value("salt", True) != privacy.hash_value("salt", "true")
    assert privacy.hash_value("s", {"a": 1, "b": 2}) == privacy.hash_value("s", {"b": 2, "a": 1})


# ------------------------------------------------------------ open-ended input

_json = st.recursive(
    st.none() | st.booleans() | st.integers(-2**53, 2**53) | st.floats(allow_nan=False,
                                                                        allow_infinity=False)
    | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6),
                                                                       children, max_size=4),
    max_leaves=20)
_keys = st.sampled_from(["type", "userId", "anonymousId", "groupId", "event", "traits",
                         "properties", "context", "timestamp", "sentAt", "messageId",
                         "previousId", "groupType", "distinct_id", "uuid", "$set", "offset"])


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(_keys, _json, max_size=8) | _json)
def test_any_json_is_a_call_or_a_clean_rejection(msg):
    for parse in (lambda m: formats.segment_call(m, opts()),
                  lambda m: posthog_format.posthog_call(m, opts(private=POLICY, salt="s"))):
        try:
            call = parse(msg)
        except EventError:
            continue
        assert call.message_id and 946684800 <= call.timestamp <= NOW + 86400
        assert call.kind in ("identify", "group", "track", "alias")
