"""Ingestion semantics through Store.ingest (SPEC §3): person and group properties,
hierarchy, activity roll-up, per-key last-write-wins by event time, idempotency, aliases,
limits and warnings, events and retention."""

from __future__ import annotations

import itertools
import json
import time

import pytest

from flagsvc.ingest.model import Call, IngestResult

pytestmark = pytest.mark.backends

_ids = itertools.count()


def call(kind="identify", ts=1000.0, **kw) -> Call:
    kw.setdefault("message_id", f"m{next(_ids)}")
    return Call(kind=kind, timestamp=ts, **kw)


def identify(did="u1", ts=1000.0, **kw) -> Call:
    return call("identify", ts, distinct_id=did, **kw)


def group(gtype="organization", key="acme", ts=1000.0, **kw) -> Call:
    return call("group", ts, group_type=gtype, group_key=key, **kw)


def track(did="u1", groups=None, ts=1000.0, **kw) -> Call:
    return call("track", ts, distinct_id=did, event="clicked", groups=groups or {}, **kw)


@pytest.fixture
def pid(project):
    return project["id"]


def person(store, pid, did="u1"):
    return store.person_properties(pid, did)


def gprops(store, pid, gtype="organization", key="acme"):
    return store.group_properties(pid, gtype, key)


# ------------------------------------------------------------ person properties

def test_identify_set_set_once_unset(store, pid):
    store.ingest(pid, [identify(person_set={"plan": "free", "email": "a@x.io"})])
    store.ingest(pid, [identify(ts=1001, person_set_once={"plan": "pro", "first": "web"})])
    assert person(store, pid) == {"plan": "free", "email": "a@x.io", "first": "web"}
    store.ingest(pid, [identify(ts=1002, person_unset=["email"])])
    assert person(store, pid) == {"plan": "free", "first": "web"}


def test_null_value_sets_null(store, pid):
    store.ingest(pid, [identify(person_set={"plan": "free"})])
    store.ingest(pid, [identify(ts=1001, person_set={"plan": None})])
    assert person(store, pid) == {"plan": None}
    store.ingest(pid, [identify(ts=1002, person_set_once={"plan": "pro"})])
    assert person(store, pid) == {"plan": None}  # present (as null): $set_once leaves it


def test_set_once_does_not_resurrect_a_newer_unset(store, pid):
    store.ingest(pid, [identify(ts=1000, person_set={"plan": "free"}),
                       identify(ts=2000, person_unset=["plan"])])
    store.ingest(pid, [identify(ts=1500, person_set_once={"plan": "late"})])
    assert person(store, pid) == {}


def test_set_once_order_independent_against_set(store, pid):
    # in event order: $set at 1000, then $set_once at 2000 finds the key present
    store.ingest(pid, [identify(ts=2000, person_set_once={"plan": "once"})])
    store.ingest(pid, [identify(ts=1000, person_set={"plan": "set"})])
    assert person(store, pid) == {"plan": "set"}


def test_earliest_set_once_wins_whatever_the_arrival_order(store, pid):
    store.ingest(pid, [identify(ts=2000, person_set_once={"source": "late"})])
    store.ingest(pid, [identify(ts=1000, person_set_once={"source": "early"})])
    assert person(store, pid) == {"source": "early"}


# ------------------------------------------------------------ groups and hierarchy

def test_group_call_sets_group_properties(store, pid):
    r = store.ingest(pid, [group(group_set={"plan": "enterprise", "seats": 40})])
    assert (r.stored, r.duplicates, r.warnings) == (1, 0, [])
    assert gprops(store, pid) == {"plan": "enterprise", "seats": 40}
    store.ingest(pid, [group(ts=1001, group_set={"seats": 41}, group_unset=["plan"])])
    assert gprops(store, pid) == {"seats": 41}
    assert [g["name"] for g in store.group_types(pid)] == ["organization"]


def test_group_call_without_type_uses_the_project_default(store, pid):
    store.update_project(pid, default_group_type="account")
    store.ingest(pid, [call("group", group_key="acme", group_set={"plan": "pro"})])
    assert gprops(store, pid, "account") == {"plan": "pro"}


def test_parent_with_type(store, pid):
    store.ingest(pid, [group("account", "a1", group_set={"plan": "pro"}),
                       group("workspace", "w1", parent_key="a1", parent_type="account")])
    assert store.group_parent(pid, "workspace", "w1") == ("account", "a1")
    g = store.get_group(pid, "account", "a1")
    assert g["children"] == [{"group_type": "workspace", "group_key": "w1"}]


def test_parent_without_type_is_resolved_by_key_even_when_it_arrives_later(store, pid):
    store.ingest(pid, [group("workspace", "w1", parent_key="a1")])
    assert store.group_parent(pid, "workspace", "w1") is None  # not known yet
    store.ingest(pid, [group("account", "a1", group_set={"plan": "pro"})])
    assert store.group_parent(pid, "workspace", "w1") == ("account", "a1")
    assert store.get_group(pid, "workspace", "w1")["parent"] == {
        "group_type": "account", "group_key": "a1"}


def test_parent_without_type_within_one_batch(store, pid):
    store.ingest(pid, [group("workspace", "w1", parent_key="a1"),
                       group("account", "a1"),
                       track("u1", {"workspace": "w1"}, ts=1005)])
    assert store.get_group(pid, "account", "a1")["last_seen"] == 1005


def test_parent_is_last_write_wins_too(store, pid):
    store.ingest(pid, [group("workspace", "w1", ts=2000, parent_key="a2", parent_type="account")])
    store.ingest(pid, [group("workspace", "w1", ts=1000, parent_key="a1", parent_type="account")])
    assert store.group_parent(pid, "workspace", "w1") == ("account", "a2")


def test_group_naming_itself_as_parent_warns_and_stores_no_cycle(store, pid):
    r = store.ingest(pid, [group("account", "a1", parent_key="a1", parent_type="account"),
                           group("workspace", "w1", group_set={"x": 1})])
    assert r.stored == 2
    assert any("own parent" in w for w in r.warnings), r.warnings
    assert store.group_parent(pid, "account", "a1") is None
    assert gprops(store, pid, "workspace", "w1") == {"x": 1}


def test_parent_cycles_do_not_hang_track(store, pid):
    store.ingest(pid, [group("account", "a", parent_key="b", parent_type="workspace"),
                       group("workspace", "b", parent_key="a", parent_type="account")])
    started = time.monotonic()
    r = store.ingest(pid, [track("u1", {"account": "a"}, ts=1500)])
    assert time.monotonic() - started < 5
    assert r.stored == 1
    for t, k in [("account", "a"), ("workspace", "b")]:
        assert store.get_group(pid, t, k)["last_seen"] == 1500


def test_deep_chains_are_walked_at_most_ten_levels(store, pid):
    # 15 levels alternating between two types: g0 -> g1 -> ... -> g14
    calls = [group("account" if i % 2 else "workspace", f"g{i}", parent_key=f"g{i + 1}",
                   parent_type="workspace" if i % 2 else "account") for i in range(14)]
    calls.append(group("account" if 14 % 2 else "workspace", "g14"))
    store.ingest(pid, calls)
    store.ingest(pid, [track("u1", {"workspace": "g0"}, ts=5000)])
    seen = [store.get_group(pid, "account" if i % 2 else "workspace", f"g{i}")["last_seen"]
            for i in range(15)]
    assert seen[:11] == [5000] * 11
    assert all(s != 5000 for s in seen[11:]), seen


# ------------------------------------------------------------ activity roll-up, memberships

def test_track_updates_last_seen_and_memberships_of_group_and_ancestors(store, pid):
    store.ingest(pid, [group("account", "a1", ts=100),
                       group("workspace", "w1", ts=100, parent_key="a1", parent_type="account"),
                       group("project", "p1", ts=100, parent_key="w1")])
    store.ingest(pid, [track("u1", {"project": "p1"}, ts=2000)])
    store.ingest(pid, [track("u1", {"project": "p1"}, ts=1500)])  # late: last_seen stays
    for t, k in [("project", "p1"), ("workspace", "w1"), ("account", "a1")]:
        assert store.get_group(pid, t, k)["last_seen"] == 2000, (t, k)
    groups = {(g["group_type"], g["group_key"]): (g["first_seen"], g["last_seen"])
              for g in store.get_person(pid, "u1")["groups"]}
    assert groups == {("project", "p1"): (1500, 2000), ("workspace", "w1"): (1500, 2000),
                      ("account", "a1"): (1500, 2000)}
    members = store.get_group(pid, "account", "a1")["members"]
    assert [m["distinct_id"] for m in members] == ["u1"]


def test_group_call_with_user_id_makes_a_membership(store, pid):
    store.ingest(pid, [group("organization", "acme", distinct_id="u9", group_set={"plan": "pro"})])
    assert [(g["group_type"], g["group_key"]) for g in store.get_person(pid, "u9")["groups"]] == [
        ("organization", "acme")]


def test_track_does_not_invent_a_parent_nobody_described(store, pid):
    store.ingest(pid, [group("workspace", "w1", parent_key="ghost", parent_type="account")])
    store.ingest(pid, [track("u1", {"workspace": "w1"})])
    assert gprops(store, pid, "account", "ghost") is None


# ------------------------------------------------------------ last-write-wins

def test_older_event_arriving_later_never_overwrites_across_batches(store, pid):
    store.ingest(pid, [identify(ts=2000, person_set={"plan": "pro"}),
                       group(ts=2000, group_set={"plan": "pro"})])
    store.ingest(pid, [identify(ts=1000, person_set={"plan": "free", "seats": 3}),
                       group(ts=1000, group_set={"plan": "free", "seats": 3})])
    assert person(store, pid) == {"plan": "pro", "seats": 3}
    assert gprops(store, pid) == {"plan": "pro", "seats": 3}


def test_older_event_later_in_the_same_batch_never_overwrites(store, pid):
    store.ingest(pid, [identify(ts=2000, person_set={"plan": "pro"}),
                       identify(ts=1000, person_set={"plan": "free"}),
                       group(ts=2000, group_set={"plan": "pro"}),
                       group(ts=1000, group_set={"plan": "free"})])
    assert person(store, pid) == {"plan": "pro"}
    assert gprops(store, pid) == {"plan": "pro"}


def test_equal_timestamps_go_to_receive_order(store, pid):
    store.ingest(pid, [identify(person_set={"plan": "a"}), identify(person_set={"plan": "b"})])
    assert person(store, pid) == {"plan": "b"}
    store.ingest(pid, [identify(person_set={"plan": "c"})])
    assert person(store, pid) == {"plan": "c"}


def test_unset_tombstone_stops_an_older_set(store, pid):
    store.ingest(pid, [identify(ts=1000, person_set={"plan": "pro"})])
    store.ingest(pid, [identify(ts=3000, person_unset=["plan"]),
                       group(ts=3000, group_unset=["plan"])])
    store.ingest(pid, [identify(ts=2000, person_set={"plan": "free"}),
                       group(ts=2000, group_set={"plan": "free"})])
    assert person(store, pid) == {}
    assert gprops(store, pid) == {}
    store.ingest(pid, [identify(ts=4000, person_set={"plan": "new"})])
    assert person(store, pid) == {"plan": "new"}


# ------------------------------------------------------------ idempotency

def test_same_message_id_within_a_batch_is_a_duplicate(store, pid):
    a = identify(ts=1000, message_id="dup", person_set={"plan": "a"})
    b = identify(ts=2000, message_id="dup", person_set={"plan": "b"})
    r = store.ingest(pid, [a, b])
    assert (r.stored, r.duplicates) == (1, 1)
    assert person(store, pid) == {"plan": "a"}
    assert store.count_events(pid) == 1


def test_a_retried_batch_changes_nothing(store, pid, db_path):
    batch = [identify(ts=1000, person_set={"plan": "a"}), group(group_set={"x": 1}),
             track("u1", {"organization": "acme"}, ts=1200)]
    assert store.ingest(pid, batch).stored == 3
    store.ingest(pid, [identify(ts=3000, person_unset=["plan"])])
    conn = store.conn()
    before = {t: conn.execute(f"SELECT * FROM {t} ORDER BY 1").fetchall()
              for t in ("persons", "groups", "memberships", "events", "person_distinct_ids")}
    r = store.ingest(pid, batch)
    assert (r.stored, r.duplicates) == (0, 3)
    after = {t: conn.execute(f"SELECT * FROM {t} ORDER BY 1").fetchall() for t in before}
    assert after == before


DAY = 86400.0
MIDNIGHT = 20_000 * DAY  # 2024-10-04 00:00 UTC


@pytest.mark.parametrize("first, resend", [
    (MIDNIGHT - 2, MIDNIGHT + 3),             # clock-skew correction moved it past midnight
    (MIDNIGHT + 5, MIDNIGHT - 1),             # ... or back before it
    (MIDNIGHT + 1, MIDNIGHT + DAY - 2),       # the same UTC day, almost a day later
    (MIDNIGHT + DAY - 1, MIDNIGHT + 2 * DAY - 2),  # 23:59:59 later, across midnight
    (MIDNIGHT + 2, MIDNIGHT - DAY + 3),       # 23:59:59 earlier, across midnight
])
def test_a_resend_less_than_a_day_apart_is_a_duplicate(store, pid, first, resend):
    """De-duplication looks at the event's UTC day and both adjacent ones (migration 0003):
    whatever its time, a resend whose timestamp moved by less than 24 hours is caught —
    stored earlier or earlier in the same batch."""
    store.ingest(pid, [identify(ts=first, message_id="m-day", person_set={"v": 1})])
    r = store.ingest(pid, [identify(ts=resend, message_id="m-day", person_set={"v": 2})])
    assert (r.stored, r.duplicates) == (0, 1)
    assert person(store, pid) == {"v": 1}
    r = store.ingest(pid, [identify(ts=first, message_id="m-both", person_set={"w": 1}),
                           identify(ts=resend, message_id="m-both", person_set={"w": 2})])
    assert (r.stored, r.duplicates) == (1, 1)
    assert store.count_events(pid) == 2


def test_the_same_message_id_two_days_apart_is_two_events(store, pid):
    """The window is bounded (like Segment's 24-hour de-duplication and PostHog's key that
    holds the event's date): an id reused with a timestamp two UTC days away is a new event,
    and a later resend of either is still a duplicate."""
    a = identify(ts=MIDNIGHT + 10, message_id="reused", person_set={"v": "a"})
    b = identify(ts=MIDNIGHT + 2 * DAY + 10, message_id="reused", person_set={"v": "b"})
    assert store.ingest(pid, [a]).stored == 1
    assert store.ingest(pid, [b]).stored == 1
    assert store.count_events(pid) == 2
    assert person(store, pid) == {"v": "b"}
    for again in (a, b):
        assert store.ingest(pid, [again]).duplicates == 1
    assert store.count_events(pid) == 2


def _segment(msg, at):
    from flagsvc.ingest import formats

    return formats.segment_call(msg, formats.Options(received_at=at))


@pytest.mark.parametrize("later", [2 * DAY, 29 * DAY])
def test_an_id_sent_without_timestamp_retried_days_later_is_a_duplicate(store, pid, later):
    """A message with a client id but no timestamp takes the receive time, so a retry days
    later carries a later time: it must still be a duplicate — stored again, it would
    overwrite the newer value (SPEC §3: a retried batch changes nothing). Such ids are
    checked against every stored event marked `exact_id`."""
    untimed = {"type": "identify", "userId": "u2", "traits": {"plan": "pro"}, "messageId": "m-a"}
    newer = {"type": "identify", "userId": "u2", "traits": {"plan": "free"}, "messageId": "m-b",
             "timestamp": MIDNIGHT + DAY + 100}
    first = _segment(untimed, MIDNIGHT + 100)
    assert first.exact_id and not _segment(newer, MIDNIGHT + DAY + 100).exact_id
    assert store.ingest(pid, [first]).stored == 1
    assert store.ingest(pid, [_segment(newer, MIDNIGHT + DAY + 100)]).stored == 1
    r = store.ingest(pid, [_segment(untimed, MIDNIGHT + later + 100)])
    assert (r.stored, r.duplicates) == (0, 1)
    assert person(store, pid, "u2") == {"plan": "free"}
    assert store.count_events(pid) == 2
    # Only events marked so are compared this way: the same id with a client timestamp two
    # days away is a different event, as for any client-timed id.
    assert store.ingest(pid, [identify(ts=MIDNIGHT + later + 100, message_id="m-a")]).stored == 1


def test_an_identical_message_without_id_or_timestamp_days_later_is_stored(store, pid):
    """Without id and timestamp a later identical message is as likely a deliberate repeat
    (a hand-written integration sending `plan: pro` again after it changed) as a retry, and
    clients that retry days later send both: its derived id is de-duplicated within the day
    window only, so the value sent again applies. Within a day it is still one message."""
    bare = {"type": "identify", "userId": "u3", "traits": {"plan": "pro"}}
    change = {"type": "identify", "userId": "u3", "traits": {"plan": "free"}}
    assert not _segment(bare, MIDNIGHT).exact_id
    assert store.ingest(pid, [_segment(bare, MIDNIGHT + 100)]).stored == 1
    assert store.ingest(pid, [_segment(bare, MIDNIGHT + 3600)]).duplicates == 1
    assert store.ingest(pid, [_segment(change, MIDNIGHT + DAY + 100)]).stored == 1
    assert store.ingest(pid, [_segment(bare, MIDNIGHT + 3 * DAY)]).stored == 1
    assert person(store, pid, "u3") == {"plan": "pro"}


@pytest.mark.sqlite_only
def test_exact_id_lookup_uses_its_partial_index(store, pid):
    """The statement `_fresh` runs for exact ids (captured, not copied) is answered from the
    partial index events_exact_id, not by scanning the project's events."""
    conn = store.conn()
    store.ingest(pid, [identify(message_id="s1", exact_id=True)])
    assert conn.execute("SELECT exact_id FROM events").fetchall() == [(1,)]
    statements: list[str] = []
    conn.set_trace_callback(statements.append)
    try:
        r = store.ingest(pid, [identify(message_id="s1", exact_id=True, ts=1000 + 9 * DAY)])
    finally:
        conn.set_trace_callback(None)
    assert r.duplicates == 1
    exact = [q for q in statements if "exact_id = 1" in q and q.lstrip().startswith("SELECT")]
    assert len(exact) == 1
    plan = conn.execute("EXPLAIN QUERY PLAN " + exact[0]).fetchall()
    assert "USING INDEX events_exact_id" in plan[0][3], plan


@pytest.mark.sqlite_only
def test_a_backfill_over_many_days_is_checked_day_by_day(store, pid):
    """Events of 300 different days in one batch: each id is compared with its own day and
    the two adjacent ones only (one probe per event day, three days each — not every day of
    the batch against every id), and duplicates are still found on the neighbouring days."""
    first = [identify(ts=MIDNIGHT + i * 2 * DAY + 60, message_id=f"bf{i}") for i in range(300)]
    assert store.ingest(pid, first).stored == 300
    conn = store.conn()
    probes: list[str] = []
    conn.set_trace_callback(probes.append)
    try:
        again = [identify(ts=MIDNIGHT + i * 2 * DAY + (DAY if i % 2 else -120),
                          message_id=f"bf{i}") for i in range(300)]   # next day / day before
        fresh = [identify(ts=MIDNIGHT + i * 2 * DAY + 60, message_id=f"new{i}")
                 for i in range(300)]
        r = store.ingest(pid, again + fresh)
    finally:
        conn.set_trace_callback(None)
    assert (r.stored, r.duplicates) == (300, 300)
    dedupe = [q for q in probes if "AND day IN" in q]
    assert dedupe and all(q.count("day IN (") == 1 and
                          len(q.split("day IN (")[1].split(")")[0].split(",")) == 3
                          for q in dedupe)
    assert len(dedupe) <= 600  # one per event day


def test_message_ids_are_per_project(store, pid):
    other = store.create_project("other")["id"]
    store.ingest(pid, [identify(message_id="same", person_set={"p": 1})])
    r = store.ingest(other, [identify(message_id="same", person_set={"p": 2})])
    assert r.stored == 1
    assert person(store, pid) == {"p": 1} and person(store, other) == {"p": 2}


# ------------------------------------------------------------ alias

def test_alias_merges_persons(store, pid):
    store.ingest(pid, [identify("anon", ts=1000, person_set={"ref": "ad", "plan": "free"}),
                       track("anon", {"organization": "acme"}, ts=1100),
                       identify("user", ts=2000, person_set={"plan": "pro", "email": "u@x.io"}),
                       track("user", {"organization": "beta"}, ts=2100)])
    store.ingest(pid, [call("alias", ts=3000, distinct_id="user", previous_id="anon")])
    p = store.get_person(pid, "user")
    assert store.get_person(pid, "anon")["id"] == p["id"]
    assert sorted(p["distinct_ids"]) == ["anon", "user"]
    assert p["properties"] == {"ref": "ad", "plan": "pro", "email": "u@x.io"}
    assert {g["group_key"] for g in p["groups"]} == {"acme", "beta"}
    assert store.conn().execute("SELECT count(*) FROM persons").fetchone()[0] == 1


def test_alias_within_one_batch_keeps_ids_and_memberships(store, pid):
    r = store.ingest(pid, [identify("anon", ts=1000, person_set={"ref": "ad"}),
                           track("anon", {"organization": "acme"}, ts=1100),
                           identify("user", ts=2000, person_set={"email": "u@x.io"}),
                           call("alias", ts=3000, distinct_id="user", previous_id="anon")])
    assert r.stored == 4
    p = store.get_person(pid, "user")
    assert sorted(p["distinct_ids"]) == ["anon", "user"]
    assert store.get_person(pid, "anon")["id"] == p["id"]
    assert p["properties"] == {"ref": "ad", "email": "u@x.io"}
    assert [g["group_key"] for g in p["groups"]] == ["acme"]


def test_alias_of_stored_person_after_activity_in_the_same_batch(store, pid):
    store.ingest(pid, [identify("anon", ts=1000), identify("user", ts=1000)])
    r = store.ingest(pid, [track("anon", {"organization": "acme"}, ts=1100),
                           call("alias", ts=3000, distinct_id="user", previous_id="anon")])
    assert r.stored == 2
    p = store.get_person(pid, "user")
    assert sorted(p["distinct_ids"]) == ["anon", "user"]
    assert [g["group_key"] for g in p["groups"]] == ["acme"]


def test_alias_merge_respects_tombstones(store, pid):
    store.ingest(pid, [identify("anon", ts=1000, person_set={"plan": "free"}),
                       identify("user", ts=2000, person_unset=["plan"])])
    store.ingest(pid, [call("alias", ts=3000, distinct_id="user", previous_id="anon")])
    assert person(store, pid, "user") == {}


def test_alias_to_unknown_previous_id_attaches_it(store, pid):
    store.ingest(pid, [identify("user", person_set={"a": 1}),
                       call("alias", ts=1001, distinct_id="user", previous_id="new-anon")])
    assert person(store, pid, "new-anon") == {"a": 1}


# ------------------------------------------------------------ limits and warnings

def test_sixth_group_type_is_dropped_with_a_warning_and_the_rest_stored(store, pid):
    for t in ["a", "b", "c", "d", "e"]:
        store.create_group_type(pid, t)
    r = store.ingest(pid, [group("f", "x", group_set={"p": 1}),
                           group("a", "x", group_set={"p": 2}),
                           track("u1", {"f": "x", "a": "x"}, ts=1500),
                           identify("u1", person_set={"q": 3})])
    assert r.stored == 4
    assert len(r.warnings) == 1 and "'f'" in r.warnings[0] and "5" in r.warnings[0]
    assert r.dropped == 2
    assert gprops(store, pid, "f", "x") is None
    assert gprops(store, pid, "a", "x") == {"p": 2}
    assert store.get_group(pid, "a", "x")["last_seen"] == 1500
    assert person(store, pid) == {"q": 3}
    assert [g["name"] for g in store.group_types(pid)] == ["a", "b", "c", "d", "e"]


def test_empty_group_type_is_a_warning_not_a_failure(store, pid):
    r = store.ingest(pid, [track("u1", {"": "x"}), identify("u1", person_set={"q": 1})])
    assert r.stored == 2 and r.warnings
    assert person(store, pid) == {"q": 1}


# ------------------------------------------------------------ events and retention

def test_events_are_stored_with_message_ids(store, pid):
    store.ingest(pid, [track("u1", {"organization": "acme"}, ts=1234, message_id="evt-1",
                             properties={"button": "buy"})])
    row = store.conn().execute(
        "SELECT message_id, type, event, distinct_id, groups, properties, timestamp FROM events"
    ).fetchone()
    assert row[:4] + row[6:] == ("evt-1", "track", "clicked", "u1", 1234)
    assert (json.loads(row[4]), json.loads(row[5])) == ({"organization": "acme"}, {"button": "buy"})
    ev = store.get_group(pid, "organization", "acme")["recent_events"]
    assert [e["properties"] for e in ev] == [{"button": "buy"}]


def test_purge_events_by_retention(store, pid, monkeypatch):
    store.update_project(pid, event_retention_days=0)  # 0: no automatic expiry
    store.ingest(pid, [track("u1", message_id="old")])
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + 40 * 86400)
    store.ingest(pid, [track("u1", message_id="new")])
    assert store.purge_events(pid, 30) == 1
    assert [r[0] for r in store.conn().execute("SELECT message_id FROM events")] == ["new"]
    assert store.purge_events(pid, 30) == 0


def test_ingest_result_defaults():
    r = IngestResult()
    assert (r.stored, r.duplicates, r.warnings) == (0, 0, [])


def test_group_call_without_type_is_recorded_under_the_default_type(store, pid):
    store.ingest(pid, [call("group", group_key="acme", message_id="g-1")])
    ev = store.get_group(pid, "organization", "acme")["recent_events"]
    assert [e["type"] for e in ev] == ["group"]


# ------------------------------------------------------------ order independence (Hypothesis)

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_KEYS = st.sampled_from(["plan", "seats", "region"])
_VALUES = st.one_of(st.none(), st.integers(-3, 3), st.sampled_from(["free", "pro"]))
_OP = st.one_of(st.tuples(st.just("set"), st.dictionaries(_KEYS, _VALUES, min_size=1)),
                st.tuples(st.just("unset"), st.lists(_KEYS, min_size=1, unique=True)))
_ONCE_OP = st.one_of(_OP, st.tuples(st.just("set_once"),
                                    st.dictionaries(_KEYS, _VALUES, min_size=1)))


def _reference(ops_in_event_order) -> dict:
    """Apply ops one by one in event order: what the properties must end as."""
    props: dict = {}
    for kind, arg in ops_in_event_order:
        if kind == "set":
            props.update(arg)
        elif kind == "set_once":
            for k, v in arg.items():
                props.setdefault(k, v)
        else:
            for k in arg:
                props.pop(k, None)
    return props


def _calls(op, ts, did, key):
    kind, arg = op
    person = {"set": "person_set", "set_once": "person_set_once", "unset": "person_unset"}[kind]
    grp = {"set": "group_set", "unset": "group_unset"}.get(kind)
    out = [identify(did, ts=ts, **{person: arg})]
    if grp:
        out.append(group("organization", key, ts=ts, **{grp: arg}))
    return out


def _deliver(store, pid, ops, timestamps, order, cuts, did, key):
    """Send ops[i] with timestamps[i], in `order`, cut into batches at `cuts`."""
    sequence = [c for i in order for c in _calls(ops[i], timestamps[i], did, key)]
    bounds = sorted({0, len(sequence), *[c % (len(sequence) + 1) for c in cuts]})
    for lo, hi in itertools.pairwise(bounds):
        store.ingest(pid, sequence[lo:hi])


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), ops=st.lists(_OP, min_size=1, max_size=12))
def test_lww_is_independent_of_arrival_order_and_batching(store, pid, data, ops):
    n = len(ops)
    timestamps = data.draw(st.lists(st.integers(0, 10_000), min_size=n, max_size=n, unique=True))
    order = data.draw(st.permutations(range(n)))
    cuts = data.draw(st.lists(st.integers(0, 50), max_size=5))
    did, key = f"u{next(_ids)}", f"g{next(_ids)}"
    _deliver(store, pid, ops, [float(t) for t in timestamps], order, cuts, did, key)
    expected = _reference([ops[i] for i in sorted(range(n), key=lambda i: timestamps[i])])
    assert (store.person_properties(pid, did) or {}) == expected
    assert (store.group_properties(pid, "organization", key) or {}) == expected


@settings(max_examples=100, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), ops=st.lists(_OP, min_size=1, max_size=12))
def test_lww_ties_go_to_receive_order(store, pid, data, ops):
    n = len(ops)
    timestamps = data.draw(st.lists(st.integers(0, 3), min_size=n, max_size=n))
    order = data.draw(st.permutations(range(n)))
    cuts = data.draw(st.lists(st.integers(0, 50), max_size=5))
    did, key = f"u{next(_ids)}", f"g{next(_ids)}"
    _deliver(store, pid, ops, [float(t) for t in timestamps], order, cuts, did, key)
    received = {i: pos for pos, i in enumerate(order)}
    event_order = sorted(range(n), key=lambda i: (timestamps[i], received[i]))
    expected = _reference([ops[i] for i in event_order])
    assert (store.person_properties(pid, did) or {}) == expected
    assert (store.group_properties(pid, "organization", key) or {}) == expected


@settings(max_examples=100, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), ops=st.lists(_ONCE_OP, min_size=1, max_size=10))
def test_set_once_in_event_order_matches_the_reference(store, pid, data, ops):
    """Delivered in event order (any batching), $set_once sets only absent keys."""
    n = len(ops)
    timestamps = sorted(data.draw(st.lists(st.integers(0, 10_000), min_size=n, max_size=n,
                                           unique=True)))
    cuts = data.draw(st.lists(st.integers(0, 50), max_size=5))
    did, key = f"u{next(_ids)}", f"g{next(_ids)}"
    _deliver(store, pid, ops, [float(t) for t in timestamps], range(n), cuts, did, key)
    assert (store.person_properties(pid, did) or {}) == _reference(ops)


@settings(max_examples=100, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), ops=st.lists(_ONCE_OP, min_size=1, max_size=10))
def test_set_once_and_set_are_order_independent_without_unsets(store, pid, data, ops):
    ops = [op for op in ops if op[0] != "unset"] or [("set", {"plan": 1})]
    n = len(ops)
    timestamps = data.draw(st.lists(st.integers(0, 10_000), min_size=n, max_size=n, unique=True))
    order = data.draw(st.permutations(range(n)))
    did, key = f"u{next(_ids)}", f"g{next(_ids)}"
    _deliver(store, pid, ops, [float(t) for t in timestamps], order, [], did, key)
    expected = _reference([ops[i] for i in sorted(range(n), key=lambda i: timestamps[i])])
    assert (store.person_properties(pid, did) or {}) == expected


def test_concurrent_ingestion_loses_nothing(store, pid):
    """Several threads (one connection each) write the same groups: no lock errors, no loss."""
    import threading

    errors: list[Exception] = []

    def worker(w: int) -> None:
        try:
            for b in range(10):
                store.ingest(pid, [
                    group("organization", "acme", ts=w * 100 + b, group_set={f"w{w}": b}),
                    track(f"u{w}", {"organization": "acme"}, ts=w * 100 + b,
                          message_id=f"t{w}-{b}")])
        except Exception as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert gprops(store, pid) == {f"w{w}": 9 for w in range(4)}
    assert store.count_events(pid) == 80
    assert len(store.get_group(pid, "organization", "acme")["members"]) == 4


def test_retention_expires_old_events_as_batches_arrive(store, pid, monkeypatch):
    import flagsvc.store.ingest as ingest_mod

    monkeypatch.setattr(ingest_mod, "EXPIRE_CHUNK", 3)
    store.update_project(pid, event_retention_days=1)
    store.ingest(pid, [track("u1", {}, ts=1000 + i, message_id=f"old-{i}") for i in range(5)])
    # Pretend those were received two days ago.
    store.conn().execute("UPDATE events SET received_at = received_at - 2 * 86400")
    store.ingest(pid, [track("u1", {}, ts=2000, message_id="new-1")])
    assert store.count_events(pid) == 3  # 5 old - 3 expired (one chunk) + 1 new
    store.ingest(pid, [track("u1", {}, ts=2001, message_id="new-2")])
    assert store.count_events(pid) == 2  # the remaining old ones are gone too
    ids = {r[0] for r in store.conn().execute("SELECT message_id FROM events")}
    assert ids == {"new-1", "new-2"}


def test_last_seen_moves_at_its_resolution_without_rewriting_rows(store, pid):
    from flagsvc.store.ingest import LAST_SEEN_RESOLUTION

    store.ingest(pid, [call("group", 1000, group_type="organization", group_key="acme",
                            distinct_id="u1", group_set={"plan": "pro"})])
    stamp = store.conn().execute("SELECT updated_at FROM groups").fetchone()[0]
    store.ingest(pid, [track("u1", {"organization": "acme"}, ts=1000 + LAST_SEEN_RESOLUTION / 2)])
    row = store.conn().execute("SELECT last_seen, updated_at FROM groups").fetchone()
    assert row == (1000, stamp)  # activity within the resolution: the row is not rewritten
    later = 1000 + 2 * LAST_SEEN_RESOLUTION
    store.ingest(pid, [track("u1", {"organization": "acme"}, ts=later)])
    assert store.get_group(pid, "organization", "acme")["last_seen"] == later
    assert store.get_person(pid, "u1")["groups"][0]["last_seen"] == later


def test_membership_first_seen_moves_back_at_the_resolution(store, pid):
    """A late event (client queues deliver a few seconds out of order) moves a stored
    membership's first_seen back only by more than LAST_SEEN_RESOLUTION; a new membership
    starts at the earliest event of its batch."""
    from flagsvc.store.ingest import LAST_SEEN_RESOLUTION

    def first_seen() -> float:
        return store.get_person(pid, "u1")["groups"][0]["first_seen"]

    store.ingest(pid, [track("u1", {"organization": "acme"}, ts=2000),
                       track("u1", {"organization": "acme"}, ts=1990)])
    assert first_seen() == 1990
    store.ingest(pid, [track("u1", {"organization": "acme"}, ts=1990 - LAST_SEEN_RESOLUTION / 2)])
    assert first_seen() == 1990  # within the resolution: the row is not rewritten
    earlier = 1990 - 2 * LAST_SEEN_RESOLUTION
    store.ingest(pid, [track("u1", {"organization": "acme"}, ts=earlier)])
    assert first_seen() == earlier
