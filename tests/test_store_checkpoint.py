"""Background WAL checkpoints (store/checkpoint.py): one per database, copies outside the
write lock, restarts the log, hands over when its holder stops."""

from __future__ import annotations

import fcntl
import os
import threading
import time

import pytest

from flagsvc.ingest.model import Call
from flagsvc.store import Store
from flagsvc.store import checkpoint as ck
from flagsvc.store.db import connect


def _fill(store, pid, batches, start=0):
    """Ingest `batches` batches of 50 group calls (distinct groups: many pages)."""
    for b in range(start, start + batches):
        store.ingest(pid, [Call("group", f"m{b}-{i}", 1000.0 + b, group_type="organization",
                                group_key=f"org-{b}-{i}", group_set={"pad": "x" * 200})
                           for i in range(50)])


def _log_frames(path):
    conn = connect(path)
    try:
        return conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()[1]
    finally:
        conn.close()


@pytest.fixture(autouse=True)
def small_thresholds(monkeypatch):
    """The logic at a small scale (the defaults are thousands of pages)."""
    monkeypatch.setattr(ck, "RESTART_FRAMES", 300)
    monkeypatch.setattr(ck, "TAIL_FRAMES", 50)


@pytest.fixture
def quiet_store(db_path):
    """A store whose own connections never checkpoint (so only the checkpointer does)."""
    store = Store(db_path)
    store.conn().execute("PRAGMA wal_autocheckpoint = 0")
    pid = store.create_project("p")["id"]
    yield store, pid
    store.close()


def _step_in_thread(cp, db_path):
    """Run one step on its own connection; returns (thread, done event, result list)."""
    done, out = threading.Event(), []

    def run():
        conn = connect(db_path)
        try:
            out.append(cp.step(conn))
        finally:
            conn.close()
            done.set()

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, done, out


def test_step_copies_the_log_and_lets_the_next_writer_start_it_over(quiet_store, db_path):
    store, pid = quiet_store
    _fill(store, pid, 40)
    cp = ck.Checkpointer(db_path)
    conn = connect(db_path)
    try:
        frames, copied = cp.step(conn)
        assert frames >= ck.RESTART_FRAMES and copied == frames
        assert cp.restarts == 0  # all copied without the lock: the writer restarts the log
    finally:
        conn.close()
    _fill(store, pid, 1, start=40)
    assert _log_frames(db_path) < 100  # the writer started at the beginning of the log
    assert store.count_events(pid) == 41 * 50
    assert store.conn().execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_copying_never_waits_for_writers_unless_only_a_tail_is_left(quiet_store, db_path):
    store, pid = quiet_store
    for batches in (2, 40):  # a short log, then a long one copied in full
        _fill(store, pid, batches, start=batches * 100)
        lock = os.open(db_path + ".writelock", os.O_RDWR | os.O_CREAT)
        fcntl.flock(lock, fcntl.LOCK_EX)  # a writer holds the lock meanwhile
        try:
            cp = ck.Checkpointer(db_path)
            t, done, out = _step_in_thread(cp, db_path)
            assert done.wait(10), "step waited for the writers' lock"
            frames, copied = out[0]
            assert copied == frames and cp.restarts == 0
        finally:
            os.close(lock)


def test_the_last_pages_are_copied_under_the_writers_lock(quiet_store, db_path):
    """A reader's snapshot holds the newest pages back, so only a tail is left uncopied:
    the checkpointer queues behind the writer holding the lock, then copies the tail with
    no writer running, and the next writer starts the log over."""
    store, pid = quiet_store
    _fill(store, pid, 40)
    reader = connect(db_path)
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM events").fetchone()  # snapshot here
    _fill(store, pid, 1, start=40)  # a tail the snapshot keeps from being copied
    cp = ck.Checkpointer(db_path)
    lock = os.open(db_path + ".writelock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(lock, fcntl.LOCK_EX)
    try:
        t, done, out = _step_in_thread(cp, db_path)
        assert not done.wait(0.5)  # copied what it could, now queued behind the writer
        reader.execute("COMMIT")  # the snapshot is gone
    finally:
        os.close(lock)
        reader.close()
    assert done.wait(10)
    frames, copied = out[0]
    assert copied == frames >= ck.RESTART_FRAMES and cp.restarts == 1
    _fill(store, pid, 1, start=41)
    assert _log_frames(db_path) < 100
    assert store.count_events(pid) == 42 * 50


def test_one_checkpointer_per_database_and_a_successor_takes_over(db_path, monkeypatch):
    Store(db_path).close()
    monkeypatch.setattr(ck, "INTERVAL", 0.01)
    first = ck.Checkpointer(db_path).start()
    assert first.active.wait(5)
    second = ck.Checkpointer(db_path).start()
    time.sleep(0.3)
    assert not second.active.is_set()
    first.stop()
    assert not first.active.is_set()
    assert second.active.wait(5)  # it retries the lock every second
    second.stop()


def test_background_checkpoints_bound_the_log_under_writes(quiet_store, db_path, monkeypatch):
    store, pid = quiet_store
    monkeypatch.setattr(ck, "INTERVAL", 0.005)
    cp = ck.Checkpointer(db_path).start()
    try:
        assert cp.active.wait(5)
        for b in range(0, 200, 5):
            _fill(store, pid, 5, start=b)
            time.sleep(0.02)
    finally:
        cp.stop()
    # Without it the log would hold every page written, ~5,800 (autocheckpoint is off here);
    # copied in time, the log is started over by the writers themselves or, when they keep
    # it from being fully copied, under the lock (`restarts`).
    pages = os.path.getsize(db_path + "-wal") / 4096
    assert pages < 4 * ck.RESTART_FRAMES
    assert store.count_events(pid) == 200 * 50
    assert store.conn().execute("PRAGMA integrity_check").fetchone()[0] == "ok"
