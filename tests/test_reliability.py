"""Reliability against a real `flagsvc serve --workers 4` on one SQLite file (issue #5):
concurrent load, kill -9 crash safety, no lost updates over HTTP, online backups. The tests
that only speak HTTP to the `server` fixture run on PostgreSQL too (`backends`); those that
read the SQLite file themselves are `sqlite_only`.

Short versions of tests/stress/*.py (which run the same loops for longer; figures in
bench/RELIABILITY.md). Every loop is bounded by a deadline and a request count, loopback only.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time

import pytest
import requests
from stress.harness import (
    API_TOKEN,
    FLAG_KEY,
    Server,
    Tally,
    admin,
    check_acknowledged,
    create_flag,
    flagsvc_bin,
    ingest_loop,
    integrity,
    mixed_load,
    open_readonly,
    run_threads,
    stored_message_ids,
)

pytestmark = pytest.mark.backends


def test_own_gunicorn_command_with_flagsvc_conf_gets_the_checkpointer(tmp_path):
    """`gunicorn -c python:flagsvc.gunicorn_conf wsgi:app`: what `flagsvc serve` adds."""
    srv = Server(str(tmp_path / "flagsvc.db"), workers=2, gunicorn_conf=True)
    srv.start()
    try:
        _assert_checkpointer_running(srv.db_path)
        tally = Tally()
        ingest_loop(srv.url, tally, threading.Event(), time.monotonic() + 2.0, 20)
        assert tally.errors == [] and tally.acked_events
    finally:
        srv.stop()
    assert stored_message_ids(srv.db_path) == tally.acked_events
    assert "wsgi:app" in " ".join(srv.proc.args)


@pytest.fixture
def server(tmp_path, db_path):
    srv = Server(db_path, workers=4, log_dir=str(tmp_path))
    srv.start()
    yield srv
    srv.stop()


def _assert_checkpointer_running(db_path):
    """One worker holds the background checkpointer's lock (store/checkpoint.py); the
    workers write their batches themselves (no ingestion writer process, no socket)."""
    import fcntl

    assert not os.path.exists(db_path + ".writer.sock")
    fd = os.open(db_path + ".checkpointer", os.O_RDWR | os.O_CREAT)
    deadline = time.monotonic() + 10  # its thread starts once the worker has booted
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return  # held by a worker's checkpointer
            fcntl.flock(fd, fcntl.LOCK_UN)
            assert time.monotonic() < deadline, "no worker runs the checkpointer"
            time.sleep(0.1)
    finally:
        os.close(fd)


@pytest.mark.sqlite_only
def test_concurrent_ingestion_edits_and_decide_on_one_file(server):
    """8 s of /batch/ + /v1/batch + If-Match PATCHes + decide on 4 workers: no 5xx, no
    'database is locked' anywhere, every acknowledged event stored (exact set)."""
    create_flag(server.url)
    _assert_checkpointer_running(server.db_path)
    tally = Tally()
    for t in mixed_load(server.url, 8.0, tally):
        t.join(timeout=60)
    server.stop()
    assert tally.server_errors() == 0, tally.errors[:5]
    assert tally.errors == []
    assert "database is locked" not in server.logs()
    assert tally.total("ingest") > 50 and tally.total("decide") > 50
    assert tally.status["admin_patch"].get(200, 0) > 5
    assert set(tally.status["admin_patch"]) <= {200, 409}
    result = check_acknowledged(server.db_path, tally)
    assert stored_message_ids(server.db_path) == tally.acked_events  # exact: nothing extra
    assert result["missing_flag_changes"] == [] and result["audit_chain_ok"]
    assert result["flag_version"] == len(tally.acked_flag_versions) + 1
    assert result["integrity"] == "ok"


def test_kill_9_mid_write_loses_nothing_acknowledged(tmp_path):
    """SIGKILL the arbiter and all workers during ingestion and flag edits, three times;
    after each restart every acknowledged event and flag change is there."""
    srv = Server(str(tmp_path / "flagsvc.db"), workers=4)
    srv.start()
    create_flag(srv.url)
    tally = Tally()
    try:
        for round_ in range(3):
            stop = threading.Event()
            threads = mixed_load(srv.url, 10.0, tally, stop, ingesters=3, editors=2, deciders=1)
            time.sleep(1.0 + 0.3 * round_)
            srv.kill()
            stop.set()
            for t in threads:
                t.join(timeout=60)
            result = check_acknowledged(srv.db_path, tally)
            assert result["missing_events"] == 0, result
            assert result["missing_flag_changes"] == [] and result["audit_chain_ok"], result
            assert result["integrity"] == "ok"
            srv.start()
            assert requests.get(srv.url + "/readyz", timeout=5).status_code == 200
        assert len(tally.acked_events) > 0 and len(tally.acked_flag_versions) > 0
        _assert_nothing_half_written(srv.db_path)
    finally:
        srv.stop()


def test_kill_9_of_single_workers_mid_ingestion_loses_nothing_acknowledged(tmp_path):
    """Every worker writes its own batches: SIGKILL one worker after another (the master
    replaces each) while ingestion runs; a worker killed inside its write transaction
    leaves neither the write lock held (an flock dies with its process) nor half a batch,
    and every acknowledged event is stored — exactly those, plus at most the batches of
    requests cut off before their answer."""
    import signal

    srv = Server(str(tmp_path / "flagsvc.db"), workers=3)
    srv.start()
    create_flag(srv.url)  # (check_acknowledged reads its audit chain)
    tally = Tally()
    killed = 0
    try:
        stop = threading.Event()
        threads = mixed_load(srv.url, 12.0, tally, stop, ingesters=4, editors=0, deciders=0)
        deadline = time.monotonic() + 8.0
        while time.monotonic() < deadline:
            time.sleep(0.7)
            workers = subprocess.run(["pgrep", "-P", str(srv.proc.pid)], capture_output=True,
                                     text=True).stdout.split()
            if workers:
                os.kill(int(workers[killed % len(workers)]), signal.SIGKILL)
                killed += 1
        stop.set()
        for t in threads:
            t.join(timeout=60)
        # still serving after its workers were replaced
        before = len(tally.acked_events)
        ingest_loop(srv.url, tally, threading.Event(), time.monotonic() + 1.0, 5)
        assert len(tally.acked_events) > before
    finally:
        srv.stop()
    assert killed >= 5
    assert tally.server_errors() == 0, tally.errors[:5]
    result = check_acknowledged(srv.db_path, tally)
    assert result["missing_events"] == 0, result
    assert result["integrity"] == "ok"
    assert "database is locked" not in srv.logs()


def _assert_nothing_half_written(db_path):
    """Each batch is one transaction: every stored event's group/person rows exist, and
    every audit entry's 'after' is exactly the flag at that version (no torn rows)."""
    with open_readonly(db_path) as conn:
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
        flag = conn.execute("SELECT id, version FROM flags WHERE key = ?", (FLAG_KEY,)).fetchone()
        last = conn.execute("SELECT version, after FROM audit_log WHERE flag_id = ? "
                            "ORDER BY id DESC LIMIT 1", (flag[0],)).fetchone()
        assert last[0] == flag[1] == json.loads(last[1])["version"]


def test_concurrent_updates_over_http_exactly_one_wins(server):
    """16 clients PATCH one flag from the same version through 4 gunicorn workers (separate
    processes): one 200, fifteen 409, and the audit log has exactly the winner's change."""
    create_flag(server.url)
    for round_ in range(3):
        current = requests.get(f"{server.url}/api/flags/{FLAG_KEY}", headers=admin(),
                               timeout=10).json()
        barrier = threading.Barrier(16)
        results: list[tuple[int, int]] = []
        lock = threading.Lock()

        # Bound now: the threads are joined within this iteration.
        def update(pct, current=current, barrier=barrier, lock=lock, results=results):
            s = requests.Session()
            conditions = json.loads(json.dumps(current["conditions"]))
            conditions[0]["rollout_percentage"] = pct
            barrier.wait(timeout=10)
            r = s.patch(f"{server.url}/api/flags/{FLAG_KEY}", json={"conditions": conditions},
                        headers={**admin(), "If-Match": str(current["version"])}, timeout=30)
            with lock:
                results.append((r.status_code, pct))

        for t in run_threads([(update, (pct,)) for pct in range(16)]):
            t.join(timeout=30)
        codes = sorted(code for code, _ in results)
        assert codes == [200] + [409] * 15, codes
        winner = next(pct for code, pct in results if code == 200)
        audit = requests.get(f"{server.url}/api/audit", headers=admin(), timeout=10).json()
        entries = audit["entries"] if isinstance(audit, dict) else audit
        updates = [e for e in entries if e["action"] == "updated"]
        assert len(updates) == round_ + 1
        assert updates[0]["version"] == current["version"] + 1
        assert updates[0]["after"]["conditions"][0]["rollout_percentage"] == winner


@pytest.mark.sqlite_only
def test_online_backup_during_ingestion_restores_to_a_working_service(server, tmp_path):
    """`flagsvc backup` while batches keep arriving: the copy passes integrity_check, holds
    every event acknowledged before the backup started, and serves decide with the flags."""
    create_flag(server.url)
    requests.post(server.url + "/batch/", timeout=10, json={"api_key": API_TOKEN, "batch": [
        {"event": "$groupidentify", "distinct_id": "u", "uuid": "seed-1",
         "properties": {"$group_type": "organization", "$group_key": "acme",
                        "$group_set": {"plan": "enterprise"}}}]}).raise_for_status()
    tally = Tally()
    stop = threading.Event()
    threads = run_threads([(ingest_loop, (server.url, tally, stop, time.monotonic() + 20, 10_000))
                           for _ in range(3)])
    time.sleep(1.0)
    with tally.lock:
        acked_before = set(tally.acked_events)
    copy = str(tmp_path / "backup" / "copy.db")
    (tmp_path / "backup").mkdir()
    env = {**server.env}
    started = time.monotonic()
    out = subprocess.run([flagsvc_bin(), "backup", copy], env=env, capture_output=True,
                         text=True, timeout=60)
    backup_seconds = time.monotonic() - started
    time.sleep(0.5)
    stop.set()
    for t in threads:
        t.join(timeout=60)
    assert out.returncode == 0, out.stderr
    assert "integrity: ok" in out.stdout
    assert tally.server_errors() == 0 and len(tally.acked_events) > len(acked_before)
    assert backup_seconds < 30
    assert integrity(copy) == "ok"
    in_copy = stored_message_ids(copy)
    assert acked_before | {"seed-1"} <= in_copy
    assert in_copy <= tally.acked_events | {"seed-1"}  # nothing unacknowledged or torn

    restored = Server(copy, workers=2, log_dir=str(tmp_path / "backup"))
    with restored:
        r = requests.post(restored.url + "/flags/?v=2", timeout=10, json={
            "api_key": API_TOKEN, "distinct_id": "u", "groups": {"organization": "acme"}})
        assert r.status_code == 200
        flag = r.json()["flags"][FLAG_KEY]
        assert flag["reason"]["code"] in ("condition_match", "out_of_rollout_bound")
        got = requests.get(f"{restored.url}/api/flags/{FLAG_KEY}", headers=admin(), timeout=10)
        assert got.status_code == 200
        more = requests.post(restored.url + "/batch/", timeout=10, json={
            "api_key": API_TOKEN, "batch": [{"event": "after-restore", "distinct_id": "u",
                                             "uuid": "after-restore-1"}]})
        assert more.status_code == 200
    assert "after-restore-1" in stored_message_ids(copy)


_WRITER = """
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=15)
end = time.time() + float(sys.argv[2])
while time.time() < end:
    conn.execute("INSERT INTO filler (blob) VALUES (randomblob(200))")
    time.sleep(0.001)
"""


def test_backup_of_a_large_file_finishes_while_another_process_writes(tmp_path):
    """A backup copied in steps restarts on every write by another process, so under steady
    ingestion it never ended (40 s and counting on a 40 MB file). It must finish promptly."""
    import sys

    from flagsvc.store import Store

    store = Store(str(tmp_path / "big.db"))
    conn = store.conn()
    conn.execute("CREATE TABLE filler (id INTEGER PRIMARY KEY, blob BLOB)")
    conn.execute("BEGIN")
    conn.executemany("INSERT INTO filler (blob) VALUES (randomblob(1000))", [()] * 40_000)
    conn.execute("COMMIT")
    writer = subprocess.Popen([sys.executable, "-c", _WRITER, store.path, "20"])
    try:
        time.sleep(0.3)
        started = time.monotonic()
        store.backup(str(tmp_path / "copy.db"))
        elapsed = time.monotonic() - started
    finally:
        writer.kill()
        writer.wait()
    assert elapsed < 5, elapsed
    copy = Store(str(tmp_path / "copy.db"), migrate_now=False)
    assert copy.integrity_check() == "ok"
    assert copy.conn().execute("SELECT COUNT(*) FROM filler").fetchone()[0] >= 40_000
