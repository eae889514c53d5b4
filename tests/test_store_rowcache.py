"""The writer's row cache (store/rowcache.py): rows kept between transactions are used only
while no other connection has written, never after a failed transaction, and a merged
person is never reached through a stale object. (Every ingestion semantics test also runs
with the cache: tests/test_ingest_semantics.py.)"""

from __future__ import annotations

import itertools

import pytest

from flagsvc.ingest.model import Call
from flagsvc.store import Store, batch
from flagsvc.store.rowcache import RowCache

_ids = itertools.count()


def call(kind, ts, **kw):
    return Call(kind=kind, message_id=f"rc{next(_ids)}", timestamp=ts, **kw)


def group(ts, **props):
    return call("group", ts, group_type="organization", group_key="acme", group_set=props)


def identify(did, ts, **props):
    return call("identify", ts, distinct_id=did, person_set=props)


@pytest.fixture
def writer(db_path):
    s = Store(db_path)
    s.row_cache = RowCache()
    yield s
    s.close()


@pytest.fixture
def other(db_path, writer):
    """Another process's store on the same database (a worker writing directly, the API)."""
    s = Store(db_path)
    yield s
    s.close()


@pytest.fixture
def pid(writer):
    return writer.create_project("p")["id"]


def test_the_cache_is_used_between_transactions(writer, pid, monkeypatch):
    writer.ingest(pid, [group(1000, plan="free"), identify("u1", 1000, role="admin")])
    queries = []
    real = batch._Batch.load_groups

    def counting(self, keys, create=True):
        queries.extend(k for k in keys if k not in self.cached_groups)
        return real(self, keys, create)

    monkeypatch.setattr(batch._Batch, "load_groups", counting)
    writer.ingest(pid, [group(2000, seats=5), identify("u1", 2000, plan="pro")])
    assert queries == []  # acme came from the cache
    assert writer.group_properties(pid, "organization", "acme") == {"plan": "free", "seats": 5}
    assert writer.person_properties(pid, "u1") == {"role": "admin", "plan": "pro"}
    assert writer.row_cache.resets == 0


def test_rows_another_connection_wrote_are_read_again(writer, other, pid):
    writer.ingest(pid, [group(1000, plan="free"), identify("u1", 1000, role="admin")])
    other.ingest(pid, [group(2000, plan="pro", employees=80), identify("u1", 2000, team="x")])
    writer.ingest(pid, [group(3000, seats=5), identify("u1", 3000, plan="pro")])
    assert writer.group_properties(pid, "organization", "acme") == {
        "plan": "pro", "employees": 80, "seats": 5}
    assert writer.person_properties(pid, "u1") == {"role": "admin", "team": "x", "plan": "pro"}
    assert writer.row_cache.resets >= 1


def test_a_privacy_rewrite_by_the_api_is_not_undone_by_cached_rows(writer, other, pid):
    writer.ingest(pid, [identify("u1", 1000, email="ann@example.com", role="admin")])
    other.update_project(pid, private_properties={"email": "drop"})
    writer.ingest(pid, [identify("u1", 2000, plan="pro")])
    assert writer.person_properties(pid, "u1") == {"role": "admin", "plan": "pro"}


def test_other_writes_through_the_same_connection_are_read_again(writer, pid):
    # data_version does not move for the connection's own commits: total_changes does
    writer.ingest(pid, [identify("u1", 1000, email="ann@example.com", role="admin")])
    writer.update_project(pid, private_properties={"email": "drop"})
    writer.ingest(pid, [identify("u1", 2000, plan="pro")])
    assert writer.person_properties(pid, "u1") == {"role": "admin", "plan": "pro"}


def test_a_failure_keeping_rows_after_commit_drops_the_cache_not_the_batch(writer, pid,
                                                                           monkeypatch):
    writer.ingest(pid, [group(1000, plan="free")])

    def broken(self, batch):
        raise MemoryError

    monkeypatch.setattr(RowCache, "keep", broken)
    r = writer.ingest(pid, [group(2000, seats=5)])
    assert (r.stored, r.duplicates) == (1, 0)  # committed once, answered as stored
    assert writer.row_cache.groups == {}
    monkeypatch.undo()
    writer.ingest(pid, [group(3000, users=9)])
    assert writer.group_properties(pid, "organization", "acme") == {
        "plan": "free", "seats": 5, "users": 9}


def test_a_failed_transaction_leaves_no_trace_in_the_cache(writer, pid, monkeypatch):
    writer.ingest(pid, [group(1000, plan="free"), identify("u1", 1000, role="admin")])

    def boom(self, calls, payloads=None):
        raise RuntimeError("disk full")

    with monkeypatch.context() as m:
        m.setattr(batch._Batch, "write", boom)
        with pytest.raises(RuntimeError):  # applied to the cached rows, then rolled back
            writer.ingest(pid, [group(2000, plan="pro"), identify("u1", 2000, role="viewer")])
    writer.ingest(pid, [group(3000, seats=5), identify("u1", 3000, team="x")])
    assert writer.group_properties(pid, "organization", "acme") == {"plan": "free", "seats": 5}
    assert writer.person_properties(pid, "u1") == {"role": "admin", "team": "x"}


def test_a_merged_person_is_reached_through_every_distinct_id(writer, pid):
    writer.ingest(pid, [identify("a", 1000, x=1), identify("b", 1000, y=1)])
    writer.ingest(pid, [call("alias", 1100, distinct_id="c", previous_id="b")])  # b, c: one
    writer.ingest(pid, [identify("c", 1200, z=1)])  # c cached
    # b's person merges into a's; this batch knows a and b, not c
    writer.ingest(pid, [call("alias", 1300, distinct_id="a", previous_id="b")])
    writer.ingest(pid, [identify("c", 1400, w=1)])
    expected = {"x": 1, "y": 1, "z": 1, "w": 1}
    assert writer.person_properties(pid, "c") == expected
    assert writer.person_properties(pid, "a") == expected
    assert writer.conn().execute("SELECT count(*) FROM persons").fetchone()[0] == 1


def test_one_person_is_one_object_whether_read_from_cache_or_database(writer, other, pid):
    writer.ingest(pid, [identify("a", 1000, x=1)])
    other.ingest(pid, [call("alias", 1100, distinct_id="a", previous_id="b")])  # not via writer
    writer.ingest(pid, [identify("a", 1200, y=1)])  # cache reset, then a cached again
    writer.ingest(pid, [identify("b", 1300, q=1)])  # b from the database: a's cached person
    writer.ingest(pid, [identify("a", 1400, p=1)])  # a from the cache: q must be there
    assert writer.person_properties(pid, "b") == {"x": 1, "y": 1, "q": 1, "p": 1}


def test_the_cache_starts_over_past_its_size(writer, pid):
    writer.row_cache.max_rows = 5
    writer.ingest(pid, [identify(f"u{i}", 1000, n=i) for i in range(10)])
    writer.ingest(pid, [identify("u0", 1100, m=1)])  # over the limit: cleared, then kept
    assert len(writer.row_cache.person_rows) == 1
    assert writer.person_properties(pid, "u0") == {"n": 0, "m": 1}
