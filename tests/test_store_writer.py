"""The ingestion writer process (store/writer.py): requests waiting together are written in
one transaction with their own results; workers write directly when it is not there."""

from __future__ import annotations

import threading

import pytest

from flagsvc.ingest.model import Call
from flagsvc.store import Store, batch, db
from flagsvc.store.rowcache import RowCache
from flagsvc.store.writer import (
    WRITER_AUTOCHECKPOINT_PAGES,
    Writer,
    WriterClient,
    open_store,
    socket_path,
)


def _calls(prefix, n=20, **kw):
    return [Call("track", f"{prefix}-{i}", 1000.0 + i, distinct_id=f"u{i}", event="seen",
                 groups={"organization": f"org-{i % 5}"}, **kw) for i in range(n)]


def _fail_apply(monkeypatch, message_id):
    """Make applying the call with this message id raise (a request that cannot be written)."""
    apply = batch._Batch.apply

    def picky_apply(self, call):
        if call.message_id == message_id:
            raise ValueError("boom")
        return apply(self, call)

    monkeypatch.setattr(batch._Batch, "apply", picky_apply)


@pytest.fixture
def writer(db_path, tmp_path):
    store = open_store(db_path, "FULL")  # as writer.main() opens it
    w = Writer(store, str(tmp_path / "w.sock"))
    stop = threading.Event()
    t = threading.Thread(target=w.serve, args=(stop,), daemon=True)
    t.start()
    yield w
    stop.set()
    t.join(5)
    w.close()
    store.close()


@pytest.fixture
def client_store(db_path, writer):
    """A worker's store that sends its batches to `writer`."""
    store = Store(db_path)
    store.writer = WriterClient(writer.path)
    yield store
    store.writer.close()
    store.close()


def test_batches_go_through_the_writer_with_their_own_results(client_store, writer, project):
    pid = project["id"]
    r = client_store.ingest(pid, _calls("a"))
    assert (r.stored, r.duplicates) == (20, 0)
    r = client_store.ingest(pid, _calls("a") + _calls("b", 5))  # a retried batch + 5 new
    assert (r.stored, r.duplicates) == (5, 20)
    assert writer.requests == 2
    assert client_store.count_events(pid) == 25
    assert client_store.get_group(pid, "organization", "org-1")["last_seen"] is not None


def test_concurrent_requests_share_transactions_and_keep_separate_results(
        db_path, writer, project, monkeypatch):
    pid = project["id"]
    # Hold the writer inside its first transaction until every client has sent: the rest
    # then wait together and are written as one group.
    gate, first = threading.Event(), threading.Event()
    write = batch._Batch.write

    def slow_write(self, *a, **k):
        first.set()
        gate.wait(5)
        return write(self, *a, **k)

    monkeypatch.setattr(batch._Batch, "write", slow_write)
    results = {}

    def send(name, calls):
        store = Store(db_path, migrate_now=False)
        store.writer = WriterClient(writer.path)
        try:
            results[name] = store.ingest(pid, calls)
        finally:
            store.writer.close()
            store.close()

    threads = [threading.Thread(target=send, args=("first", _calls("f")))]
    threads[0].start()
    assert first.wait(5)
    # shared message ids across two waiting requests: one stores them, the other counts them
    # as duplicates; a sixth group type (organization + 5) is refused, with a warning in the
    # request using it only
    for name, calls in (("x", _calls("s")), ("y", _calls("s")),
                        ("z", [Call("track", f"t{i}", 1.0, distinct_id="u", event="e",
                                    groups={f"type{i}": "k"}) for i in range(5)])):
        threads.append(threading.Thread(target=send, args=(name, calls)))
        threads[-1].start()
    threading.Event().wait(0.5)  # all three connected and sent; the writer is still busy
    gate.set()
    for t in threads:
        t.join(10)
    assert results["first"].stored == 20
    assert sorted([results["x"].stored, results["y"].stored]) == [0, 20]
    assert results["x"].duplicates + results["y"].duplicates == 20
    assert results["z"].dropped == 1 and results["z"].warnings
    assert not results["x"].warnings and not results["y"].warnings
    assert writer.groups == 2 and writer.requests == 4  # the three waiting ones together


def test_a_failing_request_fails_alone(db_path, writer, project, monkeypatch):
    pid = project["id"]
    _fail_apply(monkeypatch, "bad-0")
    store = Store(db_path, migrate_now=False)
    store.writer = WriterClient(writer.path)
    with pytest.raises(RuntimeError, match="boom"):
        store.ingest(pid, _calls("bad"))
    assert store.ingest(pid, _calls("good")).stored == 20
    assert store.count_events(pid) == 20  # nothing of the failed batch
    store.writer.close()


def test_without_a_writer_workers_write_themselves(store, project, tmp_path):
    store.writer = WriterClient(str(tmp_path / "nobody.sock"))
    assert store.ingest(project["id"], _calls("d")).stored == 20
    assert store.count_events(project["id"]) == 20


def test_a_writer_that_goes_away_is_replaced_by_direct_writes(db_path, tmp_path, project):
    store = Store(db_path)
    w = Writer(Store(db_path), str(tmp_path / "w.sock"))
    stop = threading.Event()
    t = threading.Thread(target=w.serve, args=(stop,), daemon=True)
    t.start()
    store.writer = WriterClient(w.path)
    assert store.ingest(project["id"], _calls("one")).stored == 20
    stop.set()
    t.join(5)
    w.close()  # its connections drop mid-conversation
    assert store.ingest(project["id"], _calls("two")).stored == 20
    assert store.ingest(project["id"], _calls("two")).duplicates == 20
    assert store.count_events(project["id"]) == 40


def test_socket_paths_stay_short(tmp_path):
    assert socket_path(str(tmp_path / "f.db")).endswith("f.db.writer.sock")
    long = socket_path("/" + "d" * 150 + "/f.db")
    assert len(long) < 100 and long != socket_path("/" + "e" * 150 + "/f.db")


def test_a_group_retried_one_by_one_hashes_private_values_once(store, project, monkeypatch):
    from flagsvc.ingest.privacy import hash_value

    pid = project["id"]
    store.update_project(pid, private_properties={"email": "hash"})
    _fail_apply(monkeypatch, "bad")
    good = (pid, [Call("identify", "good", 1.0, distinct_id="ann",
                       person_set={"email": "ann@x.io"})], ["{}"])
    bad = (pid, [Call("identify", "bad", 1.0, distinct_id="bob",
                      person_set={"email": "bob@x.io"})], ["{}"])
    results = store.ingest_requests([good, bad])  # fails as a group, then one by one
    assert results[0].stored == 1 and isinstance(results[1], ValueError)
    assert store.person_properties(pid, "ann") == {
        "email": hash_value(store.hash_salt(pid), "ann@x.io")}  # not a hash of the hash
    assert store.person_properties(pid, "bob") is None


def test_a_commit_failing_in_the_retry_keeps_results_in_step(store, project, monkeypatch):
    import contextlib
    import sqlite3

    from flagsvc.store import ingest

    pid = project["id"]
    real = ingest.transaction
    entered = []

    @contextlib.contextmanager
    def flaky(conn, *a, **k):
        entered.append(1)
        with real(conn, *a, **k) as c:
            yield c
            if len(entered) in (1, 3):  # the group, then the second request alone
                raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(ingest, "transaction", flaky)
    requests = [(pid, _calls(name, 3), ["{}"] * 3) for name in ("a", "b", "c")]
    results = store.ingest_requests(requests)
    assert len(results) == 3
    assert results[0].stored == 3 and results[2].stored == 3
    assert isinstance(results[1], sqlite3.OperationalError)
    assert store.count_events(pid) == 6  # b rolled back with its COMMIT


def test_a_writer_from_another_version_is_bypassed(client_store, writer, project,
                                                   monkeypatch):
    from flagsvc.store import writer as w

    pack = w._pack
    monkeypatch.setattr(w, "_pack", lambda r: ("another",) + pack(r)[1:])  # a newer worker
    assert client_store.ingest(project["id"], _calls("v")).stored == 20  # written directly
    assert writer.requests == 0


def test_a_writer_that_does_not_answer_is_bypassed_in_time(store, project, tmp_path,
                                                           monkeypatch):
    import socket
    import time

    from flagsvc.store import writer as w

    path = str(tmp_path / "mute.sock")
    mute = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    mute.bind(path)
    mute.listen(1)
    monkeypatch.setattr(w, "TIMEOUT", 0.3)
    store.writer = WriterClient(path)
    started = time.monotonic()
    assert store.ingest(project["id"], _calls("m")).stored == 20
    assert time.monotonic() - started < 5
    mute.close()


def test_a_closing_writer_leaves_its_successors_socket(db_path, tmp_path):
    import os

    path = str(tmp_path / "w.sock")
    old = Writer(Store(db_path), path)
    new = Writer(Store(db_path), path)  # took the path over
    old.close()
    assert os.path.exists(path)
    new.close()
    assert not os.path.exists(path)


def test_the_writer_keeps_rows_and_leaves_checkpoints_to_the_background(db_path, project):
    store, other = open_store(db_path, "FULL"), Store(db_path)
    try:
        assert isinstance(store.row_cache, RowCache)
        on_thread = []  # Writer.serve may run on another thread than open_store's caller
        t = threading.Thread(target=lambda: on_thread.append(
            store.conn().execute("PRAGMA wal_autocheckpoint").fetchone()[0]))
        t.start()
        t.join()
        assert on_thread == [WRITER_AUTOCHECKPOINT_PAGES]
        assert store.conn().execute("PRAGMA wal_autocheckpoint").fetchone()[0] == (
            WRITER_AUTOCHECKPOINT_PAGES) > db.WAL_AUTOCHECKPOINT_PAGES
        assert other.conn().execute("PRAGMA wal_autocheckpoint").fetchone()[0] == (
            db.WAL_AUTOCHECKPOINT_PAGES)  # every other connection keeps the usual limit
        assert other.row_cache is None
    finally:
        store.close()
        other.close()
