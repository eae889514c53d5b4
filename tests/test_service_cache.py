"""The property cache: hot groups are not re-read, ingested changes are seen within
`cache_seconds` by every service (worker), and a worker behind the change log forgets."""

from __future__ import annotations

import threading
import time

import pytest

from flagsvc.ingest.model import Call
from flagsvc.service import FlagService, make_context
from flagsvc.store import Store

pytestmark = pytest.mark.backends

FLAG = {"key": "ent", "bucket_by": "organization", "conditions": [{"properties": [
    {"type": "group", "group_type": "organization", "key": "plan", "operator": "exact",
     "value": ["enterprise"]}]}]}


def _plan(store, pid, org, plan, ts):
    store.ingest(pid, [Call("group", f"{org}-{plan}-{ts}", ts, group_type="organization",
                            group_key=org, group_set={"plan": plan})])


def _on(svc, pid, org):
    return svc.evaluate(pid, make_context("u", {"organization": org}))["ent"].enabled


def _count_reads(svc):
    calls = []
    real = svc.reader.group_properties
    svc.reader.group_properties = lambda *a: calls.append(a) or real(*a)
    return calls


def test_hot_groups_are_not_re_read_but_changes_are_seen(db_path):
    writer = Store(db_path)
    p = writer.create_project("p")
    writer.create_flag(p["id"], FLAG)
    _plan(writer, p["id"], "acme", "free", 1_700_000_000)
    workers = [FlagService(Store(db_path), cache_seconds=0.2) for _ in range(2)]
    reads = [_count_reads(w) for w in workers]
    assert [_on(w, p["id"], "acme") for w in workers] == [False, False]
    time.sleep(0.3)  # past cache_seconds: a TTL cache would re-read now
    assert [_on(w, p["id"], "acme") for w in workers] == [False, False]
    assert [len(r) for r in reads] == [1, 1]
    _plan(writer, p["id"], "acme", "enterprise", 1_700_000_100)
    deadline = time.monotonic() + 1.0
    while not all(_on(w, p["id"], "acme") for w in workers):
        assert time.monotonic() < deadline, "an ingested change was not seen within 1 s"
        time.sleep(0.02)
    # A group nobody changed stays cached.
    _plan(writer, p["id"], "other", "free", 1_700_000_200)
    before = [len(r) for r in reads]
    time.sleep(0.3)
    assert [_on(w, p["id"], "acme") for w in workers] == [True, True]
    assert [len(r) for r in reads] == before


def test_a_group_created_after_a_miss_is_seen(db_path):
    writer = Store(db_path)
    p = writer.create_project("p")
    writer.create_flag(p["id"], FLAG)
    svc = FlagService(Store(db_path), cache_seconds=0.1)
    assert _on(svc, p["id"], "new-org") is False  # cached as unknown
    _plan(writer, p["id"], "new-org", "enterprise", 1_700_000_000)
    time.sleep(0.15)
    assert _on(svc, p["id"], "new-org") is True


def test_a_worker_behind_the_kept_log_forgets_everything(db_path, monkeypatch):
    import flagsvc.store.batch as batch

    monkeypatch.setattr(batch, "CHANGES_KEPT", 2)
    writer = Store(db_path)
    p = writer.create_project("p")
    writer.create_flag(p["id"], FLAG)
    _plan(writer, p["id"], "acme", "free", 1_700_000_000)
    svc = FlagService(Store(db_path), cache_seconds=0.1)
    assert _on(svc, p["id"], "acme") is False
    _plan(writer, p["id"], "acme", "enterprise", 1_700_000_100)
    for i in range(5):  # pushes the acme change out of the kept log
        _plan(writer, p["id"], f"o{i}", "free", 1_700_000_200 + i)
    time.sleep(0.15)
    assert _on(svc, p["id"], "acme") is True


def _prefilled(svc):
    for t in threading.enumerate():
        if t.name == "flagsvc-prefill":
            t.join(10)


def test_a_worker_prefills_its_cache_with_the_newest_groups_and_still_sees_changes(db_path):
    writer = Store(db_path)
    p = writer.create_project("p")
    writer.create_flag(p["id"], FLAG)
    for j in range(30):
        _plan(writer, p["id"], f"g{j}", "free", 1_700_000_000 + j)
    svc = FlagService(Store(db_path), cache_seconds=0.1, prefill=10)
    reads = _count_reads(svc)
    svc.flag_set(p["id"])  # the first time a worker serves the project
    _prefilled(svc)
    assert [_on(svc, p["id"], f"g{j}") for j in range(20, 30)] == [False] * 10
    assert reads == []  # the 10 newest groups were in memory
    assert _on(svc, p["id"], "g0") is False and len(reads) == 1  # an older one is read
    _plan(writer, p["id"], "g29", "enterprise", 1_700_000_100)
    deadline = time.monotonic() + 1.0
    while not _on(svc, p["id"], "g29"):  # a prefilled set is evicted by the change log
        assert time.monotonic() < deadline, "an ingested change was not seen within 1 s"
        time.sleep(0.02)


def test_a_prefill_overtaken_by_the_change_log_stops(db_path, monkeypatch):
    writer = Store(db_path)
    p = writer.create_project("p")
    writer.create_flag(p["id"], FLAG)
    _plan(writer, p["id"], "acme", "free", 1_700_000_000)
    svc = FlagService(Store(db_path), cache_seconds=0.1, prefill=10)
    real = svc.reader.recent_group_properties

    def slow(*a):  # the set is read, then changed and the change seen, then filled in
        rows = real(*a)
        _plan(writer, p["id"], "acme", "enterprise", 1_700_000_100)
        svc._changes_checked = -float("inf")
        svc.sync_changes()
        return rows

    monkeypatch.setattr(svc.reader, "recent_group_properties", slow)
    svc._prefill(p["id"])
    assert ("g", p["id"], "organization", "acme") not in svc.property_cache
    assert _on(svc, p["id"], "acme") is True
