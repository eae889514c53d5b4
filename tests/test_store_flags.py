"""Flags: versions with optimistic concurrency (no lost updates, even across threads),
soft delete / restore, unique keys, an audit entry with before/after for every change."""

from __future__ import annotations

import threading

import pytest

from flagsvc.store import Conflict, NotFound, Store

pytestmark = pytest.mark.backends


def _flag(key="new-billing", **kw):
    return {"key": key, "name": "New billing", "active": True, "bucket_by": "organization",
            "conditions": [{"properties": [], "rollout_percentage": 30}], **kw}


def test_create_and_get_by_id_and_key(store, project):
    pid = project["id"]
    f = store.create_flag(pid, _flag())
    assert f["version"] == 1 and f["deleted"] is False
    assert f["conditions"] == [{"properties": [], "rollout_percentage": 30}]
    assert store.get_flag(pid, f["id"]) == f
    assert store.get_flag(pid, "new-billing") == f
    assert [x["key"] for x in store.list_flags(pid)] == ["new-billing"]
    with pytest.raises(NotFound):
        store.get_flag(pid, "nope")
    with pytest.raises(NotFound):
        store.get_flag(pid, f["id"] + 1)


def test_flags_are_scoped_to_their_project(store, project):
    other = store.create_project("other")
    f = store.create_flag(project["id"], _flag())
    with pytest.raises(NotFound):
        store.get_flag(other["id"], f["id"])
    with pytest.raises(NotFound):
        store.update_flag(other["id"], f["id"], {"active": False}, None)
    assert store.list_flags(other["id"]) == []
    # the same key may exist in another project
    assert store.create_flag(other["id"], _flag())["key"] == "new-billing"


def test_update_with_expected_version(store, project):
    pid = project["id"]
    f = store.create_flag(pid, _flag())
    g = store.update_flag(pid, f["id"], {"active": False}, expected_version=1)
    assert (g["version"], g["active"]) == (2, False)
    assert store.get_flag(pid, f["id"]) == g


def test_stale_update_conflicts_and_writes_nothing(store, project):
    pid = project["id"]
    f = store.create_flag(pid, _flag())
    store.update_flag(pid, f["id"], {"name": "first"}, expected_version=1)
    rev, audit = store.flags_rev(pid), store.audit_log(pid)
    with pytest.raises(Conflict, match="version 2"):
        store.update_flag(pid, f["id"], {"name": "stale"}, expected_version=1)
    stored = store.get_flag(pid, f["id"])
    assert (stored["name"], stored["version"]) == ("first", 2)
    assert store.flags_rev(pid) == rev and store.audit_log(pid) == audit


def test_key_cannot_change_and_metadata_in_changes_is_ignored(store, project):
    pid = project["id"]
    f = store.create_flag(pid, _flag())
    with pytest.raises(Conflict):
        store.update_flag(pid, f["id"], {"key": "other"}, None)
    g = store.update_flag(pid, f["id"], {"version": 99, "id": 5, "deleted": True, "name": "x"}, 1)
    assert (g["id"], g["version"], g["deleted"], g["name"]) == (f["id"], 2, False, "x")


def test_concurrent_updates_from_the_same_version_exactly_one_wins(store, project):
    pid = project["id"]
    f = store.create_flag(pid, _flag())
    n = 8
    barrier = threading.Barrier(n)
    outcomes: list[str] = []
    lock = threading.Lock()

    def writer(i: int) -> None:
        barrier.wait()
        try:
            store.update_flag(pid, f["id"], {"name": f"writer-{i}"}, expected_version=1)
            result = f"won:{i}"
        except Conflict:
            result = "conflict"
        except Exception as e:  # "database is locked" or anything else is a failure
            result = f"error:{e!r}"
        with lock:
            outcomes.append(result)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [o for o in outcomes if o.startswith("won")]
    assert len(winners) == 1, outcomes
    assert outcomes.count("conflict") == n - 1, outcomes
    stored = store.get_flag(pid, f["id"])
    assert stored["version"] == 2
    assert stored["name"] == f"writer-{winners[0].split(':')[1]}"
    assert [a["action"] for a in store.audit_log(pid)] == ["updated", "created"]


def test_concurrent_updates_from_separate_stores_on_one_file(db_path, store, project):
    """Two processes' worth of Store objects (as gunicorn workers would have)."""
    pid = project["id"]
    f = store.create_flag(pid, _flag())
    other = Store(db_path)
    try:
        a = store.update_flag(pid, f["id"], {"name": "a"}, 1)
        with pytest.raises(Conflict):
            other.update_flag(pid, f["id"], {"name": "b"}, 1)
        assert other.get_flag(pid, f["id"]) == a
    finally:
        other.close()


def test_soft_delete_and_restore(store, project):
    pid = project["id"]
    f = store.create_flag(pid, _flag())
    d = store.set_flag_deleted(pid, f["id"], True)
    assert d["deleted"] is True and d["version"] == 2
    assert store.list_flags(pid) == []
    assert [x["key"] for x in store.list_flags(pid, include_deleted=True)] == ["new-billing"]
    assert store.get_flag(pid, "new-billing")["deleted"] is True
    with pytest.raises(Conflict, match="deleted"):
        store.update_flag(pid, f["id"], {"active": False}, None)
    r = store.set_flag_deleted(pid, f["id"], False)
    assert r["deleted"] is False and r["version"] == 3
    assert r["conditions"] == f["conditions"]
    assert [x["key"] for x in store.list_flags(pid)] == ["new-billing"]


def test_delete_with_stale_version_conflicts(store, project):
    pid = project["id"]
    f = store.create_flag(pid, _flag())
    store.update_flag(pid, f["id"], {"active": False}, 1)
    with pytest.raises(Conflict):
        store.set_flag_deleted(pid, f["id"], True, expected_version=1)
    assert store.get_flag(pid, f["id"])["deleted"] is False


def test_key_collision_conflicts_also_with_a_deleted_flag(store, project):
    pid = project["id"]
    f = store.create_flag(pid, _flag())
    with pytest.raises(Conflict, match="already exists"):
        store.create_flag(pid, _flag(name="again"))
    store.set_flag_deleted(pid, f["id"], True)
    with pytest.raises(Conflict, match="restore"):
        store.create_flag(pid, _flag(name="again"))
    assert len(store.list_flags(pid, include_deleted=True)) == 1
    assert [a["action"] for a in store.audit_log(pid)] == ["deleted", "created"]


def test_audit_log_has_before_and_after_for_every_change(store, project):
    pid = project["id"]
    f = store.create_flag(pid, _flag())
    u = store.update_flag(pid, f["id"], {"active": False}, 1)
    d = store.set_flag_deleted(pid, f["id"], True)
    r = store.set_flag_deleted(pid, f["id"], False)
    log = list(reversed(store.audit_log(pid)))
    assert [e["action"] for e in log] == ["created", "updated", "deleted", "restored"]
    assert [(e["before"], e["after"]) for e in log] == [(None, f), (f, u), (u, d), (d, r)]
    assert [e["version"] for e in log] == [1, 2, 3, 4]
    assert all(e["flag_id"] == f["id"] and e["flag_key"] == "new-billing" for e in log)
    assert store.audit_log(pid, flag_id=f["id"], limit=2) == list(reversed(log))[:2]
    assert store.audit_log(pid, before_id=log[1]["id"]) == [log[0]]


def test_flags_rev_increments_on_every_change_only(store, project):
    pid = project["id"]
    revs = [store.flags_rev(pid)]
    f = store.create_flag(pid, _flag())
    revs.append(store.flags_rev(pid))
    store.update_flag(pid, f["id"], {"active": False}, None)
    revs.append(store.flags_rev(pid))
    store.set_flag_deleted(pid, f["id"], True)
    revs.append(store.flags_rev(pid))
    store.set_flag_deleted(pid, f["id"], True)  # already deleted: no change
    revs.append(store.flags_rev(pid))
    store.set_flag_deleted(pid, f["id"], False)
    revs.append(store.flags_rev(pid))
    assert revs == [0, 1, 2, 3, 3, 4]
    other = store.create_project("other")
    assert store.flags_rev(other["id"]) == 0
