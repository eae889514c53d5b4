"""SQLite's writers' queue (`<database>.writelock`, store/db.py): a holder that stalls makes
other writers fail within their busy timeout (503), not wait without end, and decide does
not wait behind them (review of issue 19: a held lock made /batch/ wait 40 s, then 200)."""

from __future__ import annotations

import fcntl
import os
import threading
import time

import pytest

from flagsvc.app import create_app
from flagsvc.store import DatabaseUnavailable, Store


@pytest.fixture
def held_write_lock(db_path):
    Store(db_path).close()
    fd = os.open(db_path + ".writelock", os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)  # another open file description: conflicts in-process too
    yield
    os.close(fd)


def test_a_writer_gives_up_on_a_stalled_lock_after_its_busy_timeout(db_path, held_write_lock):
    store = Store(db_path, migrate_now=False, busy_timeout_ms=300)
    try:
        started = time.monotonic()
        with pytest.raises(DatabaseUnavailable, match="locked"):
            store.create_project("p")
        assert 0.25 < time.monotonic() - started < 5
    finally:
        store.close()


def test_ingestion_is_503_and_decide_answers_while_the_write_lock_is_stalled(db_path):
    app = create_app({"DATABASE": db_path, "LOG_LEVEL": "CRITICAL"})
    svc = app.extensions["flagsvc"]
    project = svc.store.create_project("p")
    svc.store.create_flag(project["id"], {"key": "everyone", "conditions": [{}]})
    client = app.test_client()
    fd = os.open(db_path + ".writelock", os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)
    svc.store._pool.busy_timeout_ms = 300  # the writer thread's new connection's
    batch = {"api_key": project["api_token"],
             "batch": [{"event": "e", "distinct_id": "u", "uuid": "u-1"}]}
    results: dict[str, object] = {}

    def write():
        results["batch"] = app.test_client().post("/batch/", json=batch).status_code

    try:
        writer = threading.Thread(target=write)
        writer.start()
        started = time.monotonic()
        r = client.post("/flags/?v=2", json={"api_key": project["api_token"],
                                             "distinct_id": "u"})
        assert r.status_code == 200 and r.get_json()["flags"]["everyone"]["enabled"]
        assert time.monotonic() - started < 1
        writer.join(10)
        assert results["batch"] == 503
    finally:
        os.close(fd)
        svc.close()
