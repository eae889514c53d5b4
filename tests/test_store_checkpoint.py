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
    monkeypatch.setattr(ck, "START_FRAMES", 50)
    monkeypatch.setattr(ck, "TAIL_FRAMES", 50)


@pytest.fixture
def quiet_store(db_path):
    """A store whose own connections never checkpoint (so only the checkpointer does)."""
    store = Store(db_path)
    store.conn().execute("PRAGMA wal_autocheckpoint = 0")
    pid = store.create_project("p")["id"]
    yield store, pid
    store.close()


def test_step_copies_the_log_and_lets_the_next_writer_start_it_over(quiet_store, db_path):
    store, pid = quiet_store
    _fill(store, pid, 40)
    cp = ck.Checkpointer(db_path)
    conn = connect(db_path)
    try:
        frames, copied = cp.step(conn)
        assert frames >= ck.RESTART_FRAMES and copied == frames and cp.restarts == 1
    finally:
        conn.close()
    _fill(store, pid, 1, start=40)
    assert _log_frames(db_path) < 100  # the writer started at the beginning of the log
    assert store.count_events(pid) == 41 * 50
    assert store.conn().execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_small_logs_are_copied_without_taking_the_write_lock(quiet_store, db_path):
    store, pid = quiet_store
    _fill(store, pid, 2)
    cp = ck.Checkpointer(db_path)
    conn = connect(db_path)
    lock = os.open(db_path + ".writelock", os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a writer holds the lock throughout
        frames, copied = cp.step(conn)
        assert 0 < frames < ck.RESTART_FRAMES and copied == frames and cp.restarts == 0
    finally:
        os.close(lock)
        conn.close()


def test_restart_waits_for_the_writer_holding_the_lock(quiet_store, db_path):
    store, pid = quiet_store
    _fill(store, pid, 40)
    cp = ck.Checkpointer(db_path)
    lock = os.open(db_path + ".writelock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(lock, fcntl.LOCK_EX)
    done = threading.Event()

    def run():
        conn = connect(db_path)
        try:
            cp.step(conn)
        finally:
            conn.close()
            done.set()

    t = threading.Thread(target=run)
    t.start()
    try:
        assert not done.wait(0.5)  # copied what it could, now queued behind the writer
        assert cp.restarts == 0
    finally:
        os.close(lock)
    assert done.wait(10) and cp.restarts == 1
    t.join()


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
