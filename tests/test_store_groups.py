"""Reading groups and persons (the group profile page), and online backups."""

from __future__ import annotations

import itertools
import sqlite3
import threading
import time

import pytest

from flagsvc.ingest.model import Call
from flagsvc.store import NotFound, Store

pytestmark = pytest.mark.backends

_ids = itertools.count()


def _call(kind, ts=1000.0, **kw):
    return Call(kind=kind, message_id=f"g{next(_ids)}", timestamp=ts, **kw)


@pytest.fixture
def hierarchy(store, project):
    """account a1 > workspaces w1, w2 > project p1 (parent given without type), two users."""
    pid = project["id"]
    store.ingest(pid, [
        _call("group", group_type="account", group_key="a1", group_set={"plan": "enterprise"}),
        _call("group", group_type="account", group_key="a2", group_set={"plan": "free"}),
        _call("group", group_type="workspace", group_key="w1", parent_key="a1",
              parent_type="account", group_set={"seats": 10}),
        _call("group", group_type="workspace", group_key="w2", parent_key="a1",
              parent_type="account", group_set={"seats": 3}),
        _call("group", group_type="project", group_key="p1", parent_key="w1"),
        _call("track", ts=1100, distinct_id="alice", event="opened", groups={"project": "p1"},
              properties={"n": 1}),
        _call("track", ts=1200, distinct_id="bob", event="opened", groups={"workspace": "w2"}),
        _call("identify", distinct_id="alice", person_set={"email": "alice@a1.io"}),
    ])
    return pid


def test_group_profile(store, hierarchy):
    g = store.get_group(hierarchy, "account", "a1")
    assert g["properties"] == {"plan": "enterprise"}
    assert g["parent"] is None
    assert g["children"] == [{"group_type": "workspace", "group_key": "w1"},
                             {"group_type": "workspace", "group_key": "w2"}]
    assert [m["distinct_id"] for m in g["members"]] == ["bob", "alice"]  # most recent first
    assert g["last_seen"] == 1200
    p = store.get_group(hierarchy, "project", "p1")
    assert p["parent"] == {"group_type": "workspace", "group_key": "w1"}
    assert [(e["type"], e["event"], e["distinct_id"], e["properties"])
            for e in p["recent_events"]] == [("track", "opened", "alice", {"n": 1}),
                                             ("group", None, None, {})]
    with pytest.raises(NotFound):
        store.get_group(hierarchy, "account", "nope")


def test_recent_events_are_looked_for_among_the_projects_last_events(store, project,
                                                                     monkeypatch):
    """Events have no per-group index: a group's recent events come from a bounded window of
    the project's newest events, newest first, at most `events` — another project's traffic
    does not push them out of it."""
    from flagsvc.store import groups

    monkeypatch.setattr(groups, "RECENT_EVENTS_SCANNED", 6)
    pid = project["id"]
    other = store.create_project("other")["id"]
    org = {"organization": "acme"}
    store.ingest(pid, [_call("track", ts=1000 + i, distinct_id="u", event=f"old{i}",
                             groups=org) for i in range(3)])
    store.ingest(other, [_call("track", ts=1100, distinct_id="u", event="elsewhere",
                               groups=org)])
    store.ingest(pid, [_call("track", ts=1200 + i, distinct_id="u", event=f"new{i}",
                             groups=org if i % 2 else {"organization": "beta"})
                       for i in range(5)])
    store.ingest(other, [_call("track", ts=1300 + i, distinct_id="u", event=f"busy{i}",
                               groups=org) for i in range(10)])
    recent = store.get_group(pid, "organization", "acme")["recent_events"]
    assert [e["event"] for e in recent] == ["new3", "new1", "old2"]  # old0-1: not in last 6
    assert [e["event"] for e in store.get_group(pid, "organization", "acme", events=1)[
        "recent_events"]] == ["new3"]
    monkeypatch.setattr(groups, "RECENT_EVENTS_SCANNED", 100)
    assert [e["event"] for e in store.get_group(pid, "organization", "acme")[
        "recent_events"]] == ["new3", "new1", "old2", "old1", "old0"]
    assert [e["event"] for e in store.get_group(other, "organization", "acme")[
        "recent_events"]][-2:] == ["busy0", "elsewhere"]


def test_children_without_parent_type_belong_to_the_resolved_parent_only(store, hierarchy):
    # a workspace and an account share key "x"; the child names "x" without a type
    store.ingest(hierarchy, [
        _call("group", group_type="account", group_key="x"),
        _call("group", group_type="workspace", group_key="x", parent_key="a1",
              parent_type="account"),
        _call("group", group_type="project", group_key="p9", parent_key="x"),
    ])
    parent = store.group_parent(hierarchy, "project", "p9")
    assert parent is not None
    listed = [(t, k) for t, k in (("account", "x"), ("workspace", "x"))
              if {"group_type": "project", "group_key": "p9"} in
              store.get_group(hierarchy, t, k)["children"]]
    assert listed == [parent]


def test_children_follow_a_parent_move_and_survive_updates_that_keep_the_parent(
        store, hierarchy):
    # Two write shapes (batch.py): a moved parent rewrites the parent index entry; a property
    # or type-only update leaves it alone. Both must keep children lookups right.
    def children(key):
        return [c["group_key"] for c in store.get_group(hierarchy, "account", key)["children"]]

    store.ingest(hierarchy, [_call("group", ts=2000, group_type="workspace", group_key="w2",
                                   group_set={"seats": 4}, parent_key="a1",
                                   parent_type="account")])
    assert children("a1") == ["w1", "w2"]
    store.ingest(hierarchy, [_call("group", ts=3000, group_type="workspace", group_key="w2",
                                   parent_key="a2", parent_type="account")])
    assert children("a1") == ["w1"] and children("a2") == ["w2"]
    store.ingest(hierarchy, [_call("group", ts=4000, group_type="workspace", group_key="w2",
                                   group_set={"seats": 5})])
    assert children("a2") == ["w2"]
    assert store.get_group(hierarchy, "workspace", "w2")["properties"] == {"seats": 5}
    assert store.integrity_check() == "ok"


def test_list_and_search_groups(store, hierarchy):
    groups, total = store.list_groups(hierarchy, group_type="account")
    assert total == 2 and [g["group_key"] for g in groups] == ["a1", "a2"]
    groups, total = store.list_groups(hierarchy, properties={"plan": "free"})
    assert total == 1 and groups[0]["group_key"] == "a2"
    groups, total = store.list_groups(hierarchy, properties={"seats": 10})
    assert [g["group_key"] for g in groups] == ["w1"]
    groups, total = store.list_groups(hierarchy, search="w")
    assert total == 2 and [g["group_key"] for g in groups] == ["w1", "w2"]
    page, total = store.list_groups(hierarchy, limit=2, offset=1)
    assert total == 5 and len(page) == 2
    assert dict(store.iter_groups(hierarchy, "workspace")) == {"w1": {"seats": 10},
                                                               "w2": {"seats": 3}}


def test_groups_and_persons_are_scoped_to_their_project(store, hierarchy):
    other = store.create_project("other")["id"]
    assert store.list_groups(other) == ([], 0)
    assert store.group_properties(other, "account", "a1") is None
    assert store.person_properties(other, "alice") is None
    with pytest.raises(NotFound):
        store.get_person(other, "alice")


def test_person_profile_and_listing(store, hierarchy):
    p = store.get_person(hierarchy, "alice")
    assert p["properties"] == {"email": "alice@a1.io"}
    assert p["distinct_ids"] == ["alice"]
    assert {(g["group_type"], g["group_key"]) for g in p["groups"]} == {
        ("project", "p1"), ("workspace", "w1"), ("account", "a1")}
    persons, total = store.list_persons(hierarchy)
    assert total == 2 and {x["distinct_id"] for x in persons} == {"alice", "bob"}


# ------------------------------------------------------------ backup

def _all_rows(conn: sqlite3.Connection) -> dict[str, list]:
    tables = [r[0] for r in conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")]
    return {t: conn.execute(f'SELECT * FROM "{t}" ORDER BY rowid').fetchall() for t in tables}


@pytest.mark.sqlite_only
def test_backup_is_a_consistent_copy(store, hierarchy, tmp_path):
    store.create_flag(hierarchy, {"key": "f", "active": True})
    dest = str(tmp_path / "backup.db")
    store.backup(dest)
    copy = Store(dest)
    try:
        assert copy.integrity_check() == "ok"
        assert copy.migrate() == []
        assert copy.schema() == store.schema()
        assert _all_rows(copy.conn()) == _all_rows(store.conn())
        assert copy.get_flag(hierarchy, "f")["key"] == "f"
    finally:
        copy.close()


@pytest.mark.sqlite_only
def test_backup_while_another_thread_writes(store, project, tmp_path):
    pid = project["id"]
    stop = threading.Event()
    errors: list[Exception] = []

    def writer():
        i = 0
        while not stop.is_set():
            try:
                store.ingest(pid, [_call("identify", ts=float(i), distinct_id=f"u{i}",
                                         person_set={"i": i})])
            except Exception as e:  # pragma: no cover - reported below
                errors.append(e)
                return
            i += 1

    t = threading.Thread(target=writer)
    t.start()
    try:
        for n in range(3):
            dest = str(tmp_path / f"b{n}.db")
            store.backup(dest)
            conn = sqlite3.connect(dest)
            try:
                assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
                persons = conn.execute("SELECT count(*) FROM persons").fetchone()[0]
                events = conn.execute("SELECT count(*) FROM events").fetchone()[0]
                assert persons == events  # one consistent snapshot: each batch whole or absent
            finally:
                conn.close()
    finally:
        stop.set()
        t.join()
    assert errors == []


@pytest.mark.sqlite_only
def test_backup_overwrites_an_existing_file(store, project, tmp_path):
    dest = tmp_path / "old.db"
    sqlite3.connect(dest).execute("CREATE TABLE junk (x)").connection.commit()
    store.backup(str(dest))
    conn = sqlite3.connect(dest)
    try:
        assert conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'junk'").fetchone() is None
        assert conn.execute("SELECT name FROM projects").fetchall() == [("test",)]
    finally:
        conn.close()


@pytest.mark.parametrize("key", ["plan", "a.b", "x[0]", "$", 'q"uote', "back\\slash",
                                 "line\nbreak", "ümlaut", "sp ace", ""])
def test_list_groups_filters_on_any_property_key(store, project, key):
    """JSON paths cannot name every key (SQLite compares a quoted path label with the key as
    the JSON text escapes it): keys with a quote, a backslash or a control character are
    matched through json_each instead."""
    pid = project["id"]
    store.ingest(pid, [_call("group", group_type="organization", group_key="hit",
                             group_set={key: "yes", "other": "no"}),
                       _call("group", group_type="organization", group_key="miss",
                             group_set={key: "no", "other": "yes"})])
    groups, total = store.list_groups(pid, properties={key: "yes"})
    assert total == 1 and [g["group_key"] for g in groups] == ["hit"]


def test_children_page_walks_every_child_once_a_page_at_a_time(store, project):
    """The console tree's paging (Store.children_page): keyset pages in get_group's order,
    each child marked when it has children, a typeless child only under the parent its
    key resolves to — also when such children fill whole pages of the walk."""
    pid = project["id"]
    store.ingest(pid, [_call("group", group_type="workspace", group_key="a")])  # same key
    time.sleep(0.01)  # the account is the newer of the two: typeless parents resolve to it
    calls = [_call("group", group_type="account", group_key="a")]
    calls += [_call("group", group_type="workspace", group_key=f"w{i:03}", parent_key="a",
                    parent_type="account") for i in range(25)]
    calls += [_call("group", group_type="team", group_key=f"t{i:03}", parent_key="a")
              for i in range(12)]  # typeless parent
    calls.append(_call("group", group_type="project", group_key="p", parent_key="w003",
                       parent_type="workspace"))
    store.ingest(pid, calls)
    everything = [(c["group_type"], c["group_key"])
                  for c in store.get_group(pid, "account", "a")["children"]]
    walked, after, pages = [], None, 0
    while True:
        page, more = store.children_page(pid, "account", "a", after, limit=10)
        pages += 1
        assert len(page) <= 10
        walked += [(c["group_type"], c["group_key"]) for c in page]
        assert [c["has_children"] for c in page] == [
            (c["group_type"], c["group_key"]) == ("workspace", "w003") for c in page]
        if not more:
            break
        after = (page[-1]["group_type"], page[-1]["group_key"])
    assert walked == everything and len(walked) == 37 and pages == 4
    assert store.children_count(pid, "account", "a") == 37
    assert store.children_count(pid, "account", "a", up_to=20) == 21  # "over 20"
    assert store.children_page(pid, "workspace", "a") == ([], False)
    assert store.children_count(pid, "workspace", "a") == 0


def test_previews_scan_every_group_and_person_a_page_at_a_time(store, project):
    """iter_groups / iter_persons read in pages (bounded memory, no read held open for the
    whole scan): every row once, in order, across page boundaries."""
    pid = project["id"]
    keys = [f"org-{i:02d}" for i in range(11)]
    store.ingest(pid, [_call("group", group_type="organization", group_key=k,
                             group_set={"n": i}) for i, k in enumerate(reversed(keys))])
    store.ingest(pid, [_call("identify", distinct_id=f"u{i}", person_set={"i": i})
                       for i in range(7)])
    for page in (1, 3, 11, 100):
        got = list(store.iter_groups(pid, "organization", page=page))
        assert [k for k, _ in got] == keys
        assert got[0][1] == {"n": 10}
        persons = list(store.iter_persons(pid, page=page))
        assert sorted(d for _, d, _ in persons) == [f"u{i}" for i in range(7)]
        assert len({p for p, _, _ in persons}) == 7
