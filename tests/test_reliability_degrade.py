"""Degradation: decide keeps answering from the last good cached data while the database
errors (locked, unreadable, gone), quickly, and says so; a cold worker answers 503.

The fault is injected at the connections: while `broken`, every statement on the service's
connections raises the error SQLite gives (an exclusive lock held elsewhere, an unreadable
file), after the busy timeout of the connection it ran on — so the test also checks that
decide's reads wait `READ_BUSY_TIMEOUT_MS`, not the store's 15 s.
"""

from __future__ import annotations

import logging
import sqlite3
import time

import pytest

from flagsvc.app import create_app
from flagsvc.service import READ_BUSY_TIMEOUT_MS


class FlakyConnection:
    """A connection proxy: while `broken` is set, statements fail as on a locked database."""

    def __init__(self, conn: sqlite3.Connection, fault: Fault) -> None:
        self._conn = conn
        self._fault = fault

    def execute(self, sql, *args):
        if self._fault.broken:
            self._fault.failures += 1
            self._fault.waited_ms.append(
                self._conn.execute("PRAGMA busy_timeout").fetchone()[0])
            raise sqlite3.OperationalError(self._fault.message)
        return self._conn.execute(sql, *args)

    def __getattr__(self, name):
        return getattr(self._conn, name)


class Fault:
    def __init__(self, message: str) -> None:
        self.broken = False
        self.message = message
        self.failures = 0
        self.waited_ms: list[int] = []


@pytest.fixture(params=["database is locked", "unable to open database file",
                        "disk I/O error"])
def degraded(request, db_path, monkeypatch):
    app = create_app({"DATABASE": db_path, "LOG_LEVEL": "WARNING", "CACHE_SECONDS": 0.05})
    store = app.extensions["flagsvc"].store
    project = store.create_project("p")
    store.create_flag(project["id"], {
        "key": "enterprise", "bucket_by": "organization",
        "conditions": [{"properties": [{"type": "group", "group_type": "organization",
                                        "key": "plan", "operator": "exact",
                                        "value": ["enterprise"]}]}]})
    store.create_flag(project["id"], {"key": "everyone", "conditions": [{}]})
    from flagsvc.ingest.model import Call
    store.ingest(project["id"], [Call("group", "m1", time.time(), group_type="organization",
                                      group_key="acme", group_set={"plan": "enterprise"})])
    fault = Fault(request.param)
    for s in (store, app.extensions["flagsvc"].reader):
        monkeypatch.setattr(s, "conn", lambda real=s.conn: FlakyConnection(real(), fault))
    return app, project, fault


def decide(client, project, **body):
    r = client.post("/flags/?v=2", json={"api_key": project["api_token"], **body})
    return r.status_code, r.get_json()


def test_decide_serves_last_good_flags_and_properties_while_the_db_fails(degraded, caplog):
    app, project, fault = degraded
    client = app.test_client()
    ask = {"distinct_id": "u1", "groups": {"organization": "acme"}}
    status, body = decide(client, project, **ask)
    assert status == 200 and body["flags"]["enterprise"]["enabled"] is True

    fault.broken = True
    time.sleep(0.1)  # every TTL (flags, properties, tokens) has expired
    with caplog.at_level(logging.WARNING, logger="flagsvc"):
        started = time.perf_counter()
        for _ in range(20):
            status, body = decide(client, project, **ask)
            assert status == 200, body
            assert body["flags"]["enterprise"]["enabled"] is True  # stale group properties
            assert body["flags"]["everyone"]["enabled"] is True
            assert body["errorsWhileComputingFlags"] is False
        elapsed = time.perf_counter() - started
    assert fault.failures > 0
    assert set(fault.waited_ms) == {READ_BUSY_TIMEOUT_MS}  # never the store's 15 s
    assert elapsed < 5
    assert any("serving the last good" in r.getMessage() for r in caplog.records)

    fault.broken = False
    app.extensions["flagsvc"].store.update_flag(project["id"], "everyone", {"active": False}, None)
    deadline = time.monotonic() + 5
    while decide(client, project, **ask)[1]["flags"]["everyone"]["enabled"]:
        assert time.monotonic() < deadline, "the service did not recover"
        time.sleep(0.02)


def test_unknown_properties_during_an_outage_are_reported_as_errors(degraded):
    """A group never read before cannot be served stale: the flag answers from what it
    has, and errorsWhileComputingFlags tells the SDK the answer may be incomplete."""
    app, project, fault = degraded
    client = app.test_client()
    assert decide(client, project, distinct_id="u1")[0] == 200
    fault.broken = True
    time.sleep(0.1)
    status, body = decide(client, project, distinct_id="u2", groups={"organization": "other"})
    assert status == 200
    assert body["errorsWhileComputingFlags"] is True
    assert body["flags"]["everyone"]["enabled"] is True


def test_a_cold_worker_answers_503_not_500(degraded):
    """Nothing cached yet: there is nothing good to serve, so a clear, retryable 503."""
    app, project, fault = degraded
    fault.broken = True
    status, body = decide(app.test_client(), project, distinct_id="u1")
    assert status == 503 and body["code"]


def test_definitions_endpoint_is_a_clear_503_during_an_outage(degraded):
    """The definitions endpoint is not served stale (it also reads project settings and
    group types); remote FlagClients keep their own last good copy (test_client_remote)."""
    app, project, fault = degraded
    client = app.test_client()
    headers = {"Authorization": f"Bearer {project['secret_key']}"}
    assert client.get("/api/flags/definitions", headers=headers).status_code == 200
    fault.broken = True
    time.sleep(0.1)
    again = client.get("/api/flags/definitions", headers=headers)
    assert again.status_code == 503 and again.get_json()["code"]


def _batch(token, n=50):
    import uuid

    return {"api_key": token, "batch": [
        {"event": "e", "distinct_id": f"u{i}", "uuid": str(uuid.uuid4()),
         "properties": {"blob": "x" * 2000}} for i in range(n)]}


def test_readyz_fails_while_writes_hit_a_full_database_and_recovers(client, app, app_project,
                                                                     monkeypatch):
    """SQLITE_FULL, as a full disk gives it, produced with SQLite's max_page_count on the
    connection the app writes with (the test client runs in this thread)."""
    from flagsvc.store import disk

    monkeypatch.setattr(disk, "PROBE_EVERY", 0.0)
    conn = app.extensions["flagsvc"].store.conn()
    token = app_project["api_token"]
    assert client.post("/batch/", json=_batch(token)).status_code == 200
    assert client.get("/readyz").status_code == 200
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    conn.execute(f"PRAGMA max_page_count = {pages + 2}")

    r = client.post("/batch/", json=_batch(token))
    assert r.status_code == 503, r.get_json()
    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert ready.get_json()["code"] == "disk_full"
    assert "database or disk is full" in ready.get_json()["message"]
    assert client.post("/flags/?v=2", json={"api_key": token}).status_code == 200  # reads work

    conn.execute("PRAGMA max_page_count = 1073741823")  # space returns
    assert client.get("/readyz").status_code == 200  # the probe found room; no traffic needed
    assert client.post("/batch/", json=_batch(token)).status_code == 200
    # the probe left nothing behind
    assert conn.execute("SELECT count(*) FROM schema_migrations WHERE applied_at = 0"
                        ).fetchone()[0] == 0


def test_readyz_fails_when_the_filesystem_is_nearly_full(client, app, monkeypatch):
    import shutil as real_shutil

    from flagsvc.store import disk

    usage = real_shutil.disk_usage("/")
    free = {"bytes": usage.free}
    monkeypatch.setattr(disk.shutil, "disk_usage",
                        lambda path: usage._replace(free=free["bytes"]))
    assert client.get("/readyz").status_code == 200
    free["bytes"] = 4096
    ready = client.get("/readyz")
    assert ready.status_code == 503 and ready.get_json()["code"] == "disk_full"
    # public: the state, not how many bytes are free (that is logged)
    assert "4096" not in ready.get_data(as_text=True)
    assert "full" in ready.get_json()["message"]
    free["bytes"] = 10 * 1024 * 1024 * 1024
    assert client.get("/readyz").status_code == 200
    app.extensions["flagsvc"].disk.min_free = 0  # FLAGSVC_MIN_FREE_BYTES=0: not checked
    free["bytes"] = 0
    assert client.get("/readyz").status_code == 200


def test_a_full_disk_error_that_lost_its_code_counts_too():
    """SQLITE_FULL is told by its error code, or by its message when the code is gone (an
    error pickled across processes loses `sqlite_errorcode`)."""
    import pickle

    from flagsvc.store.disk import DiskWatch, is_disk_full

    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE t (x)")
    conn.execute("PRAGMA max_page_count = 2")
    with pytest.raises(sqlite3.OperationalError) as raised:
        conn.execute("INSERT INTO t VALUES (zeroblob(100000))")
    error = pickle.loads(pickle.dumps(raised.value))
    assert is_disk_full(error) and not is_disk_full(sqlite3.OperationalError("locked"))
    watch = DiskWatch()
    watch.saw(sqlite3.OperationalError("database is locked"))
    assert watch.full_since is None
    watch.saw(error)
    assert watch.full_since is not None


def test_readyz_sees_a_full_disk_by_real_io_with_the_free_space_check_off(client, app,
                                                                          db_path, monkeypatch):
    """FLAGSVC_MIN_FREE_BYTES=0 on a full disk: the database probe's rolled-back insert stays
    in SQLite's page cache and succeeds (review14 item 3: /readyz 200 while every ingestion
    answered 503); the file probe (posix_fallocate + fsync beside the database) does not."""
    import errno
    import os

    from flagsvc.store import disk

    watch = app.extensions["flagsvc"].disk
    watch.min_free = 0
    monkeypatch.setattr(disk, "PROBE_EVERY", 0.0)
    monkeypatch.setattr(disk, "IDLE_PROBE_EVERY", 0.0)
    real = os.posix_fallocate
    calls = {"n": 0}

    def full(fd, offset, length):
        calls["n"] += 1
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    assert client.get("/readyz").status_code == 200
    monkeypatch.setattr(disk.os, "posix_fallocate", full)
    ready = client.get("/readyz")
    assert ready.status_code == 503 and ready.get_json()["code"] == "disk_full"
    assert calls["n"] == 1
    # a failed ingestion marks the disk full too; the database probe alone would clear it
    watch.saw(sqlite3.OperationalError("database or disk is full"))
    for _ in range(3):
        ready = client.get("/readyz")
        assert ready.status_code == 503, ready.get_json()
        assert os.path.dirname(os.path.abspath(db_path)) not in ready.get_json()["message"]
    monkeypatch.setattr(disk.os, "posix_fallocate", real)  # space returns
    assert client.get("/readyz").status_code == 200
    assert client.get("/readyz").status_code == 200
    leftovers = [n for n in os.listdir(os.path.dirname(os.path.abspath(db_path)))
                 if n.endswith(".probe")]
    assert leftovers == []


def test_readyz_messages_name_no_path(client, app, db_path, monkeypatch):
    import shutil as real_shutil

    from flagsvc.store import disk

    usage = real_shutil.disk_usage("/")
    monkeypatch.setattr(disk.shutil, "disk_usage", lambda path: usage._replace(free=1))
    message = client.get("/readyz").get_json()["message"]
    assert "bytes free" not in message and str(db_path) not in message  # the state only
    assert "/" not in message.split(":")[0]
