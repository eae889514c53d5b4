"""Migrations: numbered, applied once each in a transaction, recorded; same end schema
whether a database is created fresh or migrated one step at a time."""

from __future__ import annotations

import os
import re
import sqlite3

import pytest

from flagsvc.store import Store, db, pg


def test_migration_files_are_numbered_and_in_order():
    names = [name for name, _ in db.migration_names()]
    assert names, "no migrations found in the package"
    numbers = [int(re.match(r"^(\d{4})_[a-z0-9_]+$", n).group(1)) for n in names]
    assert numbers == sorted(set(numbers)), names  # once each, in order
    # A number SQLite skips is PostgreSQL's alone (0009, 0011: its search indexes), or
    # 0008, never used.
    postgres_only = {int(n[:4]) for n, _ in pg.migration_names()} - set(numbers)
    assert set(range(1, numbers[-1] + 1)) - set(numbers) <= postgres_only | {8}, names


def test_fresh_database_applies_every_migration_once_and_records_it(db_path):
    store = Store(db_path, migrate_now=False)
    try:
        applied = store.migrate()
        assert applied == [name for name, _ in db.migration_names()]
        recorded = [r[0] for r in store.conn().execute(
            "SELECT name FROM schema_migrations ORDER BY name")]
        assert recorded == applied
        assert store.migrate() == []  # second run applies nothing
        assert store.conn().execute("SELECT count(*) FROM schema_migrations").fetchone()[0] == len(
            applied)
    finally:
        store.close()


def test_reopening_a_migrated_database_applies_nothing(db_path):
    Store(db_path).close()
    store = Store(db_path, migrate_now=False)
    try:
        assert store.migrate() == []
    finally:
        store.close()


def test_step_by_step_migration_ends_with_the_fresh_schema(tmp_path, monkeypatch):
    everything = db.migration_names()
    fresh = Store(str(tmp_path / "fresh.db"))
    try:
        fresh_schema = fresh.schema()
    finally:
        fresh.close()

    stepped_path = str(tmp_path / "stepped.db")
    for n in range(1, len(everything) + 1):
        monkeypatch.setattr(db, "migration_names", lambda n=n: everything[:n])
        s = Store(stepped_path, migrate_now=False)
        try:
            assert s.migrate() == [everything[n - 1][0]]
        finally:
            s.close()
    monkeypatch.undo()
    stepped = Store(stepped_path)
    try:
        assert stepped.schema() == fresh_schema
    finally:
        stepped.close()


def test_failed_migration_is_rolled_back_and_not_recorded(db_path, monkeypatch):
    everything = db.migration_names()
    broken = everything + [("9999_broken", "CREATE TABLE half_done (x INTEGER);\nNOT SQL AT ALL;")]
    monkeypatch.setattr(db, "migration_names", lambda: broken)
    store = Store(db_path, migrate_now=False)
    try:
        with pytest.raises(sqlite3.Error):
            store.migrate()
        conn = store.conn()
        assert not conn.in_transaction
        assert conn.execute(
            "SELECT 1 FROM sqlite_master WHERE name = 'half_done'").fetchone() is None
        assert conn.execute(
            "SELECT 1 FROM schema_migrations WHERE name = '9999_broken'").fetchone() is None
        # the good ones before it were committed
        assert conn.execute(
            "SELECT count(*) FROM schema_migrations").fetchone()[0] == len(everything)
    finally:
        store.close()


def test_statements_splitter_keeps_semicolons_in_strings_and_comments():
    sql = ("-- a comment; with a semicolon\n"
           "CREATE TABLE t (a TEXT DEFAULT 'x;y', -- trailing; comment\n b INTEGER);\n"
           "INSERT INTO t (a) VALUES ('1;2');\n")
    stmts = db._statements(sql)
    assert len(stmts) == 2
    conn = sqlite3.connect(":memory:")
    for s in stmts:
        conn.execute(s)
    assert conn.execute("SELECT a FROM t").fetchone() == ("1;2",)


def test_connections_use_wal_and_a_busy_timeout(store):
    conn = store.conn()
    assert conn.execute("PRAGMA journal_mode").fetchone()[0].lower() == "wal"
    assert conn.execute("PRAGMA busy_timeout").fetchone()[0] >= 5000
    assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1


def test_every_thread_gets_its_own_connection_with_the_same_settings(store):
    import threading

    seen = {}

    def work():
        c = store.conn()
        seen["conn"] = c
        seen["timeout"] = c.execute("PRAGMA busy_timeout").fetchone()[0]
        seen["mode"] = c.execute("PRAGMA journal_mode").fetchone()[0]

    t = threading.Thread(target=work)
    t.start()
    t.join()
    assert seen["conn"] is not store.conn()
    assert seen["timeout"] >= 5000 and seen["mode"].lower() == "wal"


def test_transaction_reraises_the_original_error_when_sqlite_already_rolled_back(store):
    conn = store.conn()
    with pytest.raises(ValueError, match="original"), db.transaction(conn):
        conn.execute("ROLLBACK")  # as SQLite does itself on SQLITE_FULL / IOERR
        raise ValueError("original")
    assert not conn.in_transaction
    with db.transaction(conn):  # the connection is still usable
        conn.execute("UPDATE projects SET name = name")


def test_connections_of_finished_threads_are_closed(store):
    import threading

    def work():
        store.conn().execute("SELECT 1").fetchone()

    for _ in range(50):
        t = threading.Thread(target=work)
        t.start()
        t.join()
    store.conn()
    # One per live thread (this one, plus at most the last finished one before pruning).
    assert store._pool.open_connections() <= 2


def test_0003_keeps_every_event_and_a_retry_of_one_is_still_a_duplicate(db_path, monkeypatch):
    """0003 rebuilds `events` (new de-duplication key): ids, rows and the retention index
    survive, and an event stored before it is still recognised when it is resent after."""
    from flagsvc.ingest.model import Call

    everything = db.migration_names()
    monkeypatch.setattr(db, "migration_names", lambda: everything[:2])
    old = Store(db_path)
    try:
        pid = _old_project(old)
        with db.transaction(old.conn()) as conn:  # as 0002's ingestion stored them
            conn.executemany(
                "INSERT INTO events (project_id, message_id, type, event, distinct_id, "
                "properties, timestamp, received_at) VALUES (?, ?, 'track', 'e', 'u1', ?, ?, ?)",
                [(pid, f"m{i}", f'{{"i": {i}}}', 1.7e9 + i * 3600, 1.7e9 + i * 3600)
                 for i in range(50)])
        before = old.conn().execute("SELECT id, message_id, timestamp, properties FROM events "
                                    "ORDER BY id").fetchall()
    finally:
        old.close()
    monkeypatch.undo()
    new = Store(db_path)
    try:
        conn = new.conn()
        assert conn.execute("SELECT id, message_id, timestamp, properties FROM events "
                            "ORDER BY id").fetchall() == before
        assert [r[0] for r in conn.execute("SELECT day FROM events ORDER BY id")] == [
            int(r[2] / 86400) for r in before]
        indexes = {r[0] for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'events'")}
        assert {"events_dedupe", "events_received"} <= indexes
        r = new.ingest(pid, [Call(kind="track", message_id="m7", timestamp=1.7e9 + 7 * 3600 + 2,
                                  distinct_id="u1", event="e")])
        assert (r.stored, r.duplicates) == (0, 1)
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        new.close()


def test_gunicorn_conf_migrates_in_the_master_before_workers_start(tmp_path, monkeypatch):
    """`flagsvc.gunicorn_conf` applies pending migrations in its `on_starting` hook (gunicorn
    runs it in the master before forking), so no worker runs a long one inside its boot
    timeout; importing it (`gunicorn --check-config`) touches no database."""
    import importlib
    import os
    import sys

    path = str(tmp_path / "conf.db")
    monkeypatch.setenv("FLAGSVC_DATABASE", path)
    monkeypatch.delitem(sys.modules, "flagsvc.gunicorn_conf", raising=False)
    conf = importlib.import_module("flagsvc.gunicorn_conf")
    try:
        assert not os.path.exists(path)
        assert conf.workers >= 1 and conf.worker_class  # still a gunicorn config
        conf.on_starting(None)
        conn = sqlite3.connect(path)
        assert [r[0] for r in conn.execute("SELECT name FROM schema_migrations ORDER BY name")
                ] == [name for name, _ in db.migration_names()]
        conn.close()
    finally:
        sys.modules.pop("flagsvc.gunicorn_conf", None)


def _store_at(path, migrations):
    """A Store migrated up to (and including) the first `migrations` migrations."""
    everything = db.migration_names()
    original = db.migration_names
    db.migration_names = lambda: everything[:migrations]
    try:
        return Store(path)
    finally:
        db.migration_names = original


def _old_project(store):
    """A project written as the code of that schema wrote it (today's Store writes columns
    later migrations add)."""
    with db.transaction(store.conn()) as conn:
        return conn.execute("INSERT INTO projects (name, api_token, hash_salt, created_at) "
                            "VALUES ('p', 'phc_old', 'salt', 1.7e9)").lastrowid


def _insert_orphaned_event(path):
    """An event of a project that does not exist, written as an outside tool would (with
    foreign keys off)."""
    raw = sqlite3.connect(path)
    raw.execute("INSERT INTO events (project_id, message_id, type, properties, timestamp, "
                "received_at) VALUES (999, 'orphan', 'track', '{}', 1.7e9, 1.7e9)")
    raw.commit()
    raw.close()


def test_rows_breaking_a_foreign_key_stop_a_migration_with_a_clear_error(db_path, capsys,
                                                                          monkeypatch):
    """Events of a project that no longer exists (only possible through edits outside
    flagsvc, with foreign keys off) would make 0003's copy fail halfway: the migration is
    refused up front with what to fix, and nothing is changed or lost."""
    from flagsvc import cli

    _store_at(db_path, 2).close()
    _insert_orphaned_event(db_path)
    with pytest.raises(db.MigrationError, match=r"cannot apply 0003_dedupe_window \(it copies "
                                                r"events\): 1 row\(s\) of events refer to "
                                                r"missing projects rows"):
        Store(db_path)
    monkeypatch.setenv("FLAGSVC_DATABASE", db_path)
    assert cli.main(["migrate"]) == 2
    assert "flagsvc migrate" in capsys.readouterr().err
    raw = sqlite3.connect(db_path)
    assert [r[0] for r in raw.execute("SELECT name FROM schema_migrations ORDER BY 1")] == [
        n for n, _ in db.migration_names()[:2]]
    assert raw.execute("SELECT message_id FROM events").fetchall() == [("orphan",)]
    raw.execute("DELETE FROM events WHERE project_id = 999")  # the fix the message names
    raw.commit()
    raw.close()
    Store(db_path).close()


def test_migrating_truncates_the_write_ahead_log(db_path):
    """A table rebuild (0003) writes the whole table to the WAL; it is truncated after the
    migrations, not left at that size until the next checkpoint."""
    old = _store_at(db_path, 2)
    pid = _old_project(old)
    with db.transaction(old.conn()) as conn:
        conn.executemany(
            "INSERT INTO events (project_id, message_id, type, properties, timestamp, "
            "received_at) VALUES (?, ?, 'track', ?, 1.7e9, 1.7e9)",
            [(pid, f"m{i}", "{" + '"x": 1, ' * 20 + '"y": 2}') for i in range(5000)])
    old.conn().execute("PRAGMA wal_checkpoint(TRUNCATE)")
    old.close()
    new = Store(db_path, autocheckpoint_pages=1_000_000)  # no inline checkpoint either
    try:
        assert os.path.getsize(db_path + "-wal") == 0
        assert new.count_events(pid) == 5000
    finally:
        new.close()


def test_0004_marks_stored_events_day_window_and_indexes_exact_ids(db_path):
    old = _store_at(db_path, 3)
    pid = _old_project(old)
    with db.transaction(old.conn()) as conn:
        conn.execute("INSERT INTO events (project_id, message_id, type, properties, timestamp, "
                     "received_at) VALUES (?, 'm1', 'track', '{}', 1.7e9, 1.7e9)", (pid,))
    old.close()
    new = Store(db_path)
    try:
        conn = new.conn()
        assert conn.execute("SELECT message_id, exact_id FROM events").fetchall() == [
            ("m1", 0)]
        sql = conn.execute("SELECT sql FROM sqlite_master WHERE name = 'events_exact_id'"
                           ).fetchone()[0]
        assert "(project_id, message_id) WHERE exact_id = 1" in sql
    finally:
        new.close()


def test_the_dedupe_key_is_unique_on_project_day_and_message_id(store):
    conn = store.conn()
    index = {r[1]: r[2] for r in conn.execute("PRAGMA index_list(events)")}
    assert index["events_dedupe"] == 1  # unique: INSERT OR IGNORE relies on it
    assert [r[2] for r in conn.execute("PRAGMA index_info(events_dedupe)")] == [
        "project_id", "day", "message_id"]


def test_the_day_column_is_the_day_python_probes(store):
    """store/ingest.py computes `dedupe_day` in Python to probe the `day` column SQLite
    computes: both must agree at every midnight, to the last representable second."""
    import math

    from flagsvc.store.ingest import dedupe_day

    pid = store.create_project("days")["id"]
    times = []
    for midnight in (10_957 * 86400.0, 20_000 * 86400.0, 24_837 * 86400.0):
        times += [math.nextafter(midnight, 0), midnight, math.nextafter(midnight, math.inf),
                  midnight - 0.5, midnight + 86399.999999]
    with db.transaction(store.conn()) as conn:
        conn.executemany("INSERT INTO events (project_id, message_id, type, properties, "
                         "timestamp, received_at) VALUES (?, ?, 'track', '{}', ?, 0)",
                         [(pid, f"t{i}", t) for i, t in enumerate(times)])
    got = store.conn().execute("SELECT timestamp, day FROM events WHERE project_id = ? "
                               "ORDER BY id", (pid,)).fetchall()
    assert got == [(t, dedupe_day(t)) for t in times]


def test_gunicorn_with_flagsvc_conf_refuses_to_start_on_a_migration_it_cannot_apply(
        tmp_path):
    """The real gunicorn runs the conf's `on_starting` migration in the master: a database
    needing a hand stops it before any worker, with the reason and no traceback."""
    import subprocess
    import sys
    from pathlib import Path

    path = str(tmp_path / "orphans.db")
    _store_at(path, 2).close()
    _insert_orphaned_event(path)
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run(
        [sys.executable, "-m", "gunicorn", "-c", "python:flagsvc.gunicorn_conf",
         "--bind", "127.0.0.1:0", "wsgi:app"], cwd=root, capture_output=True, text=True,
        timeout=60, env={**os.environ, "FLAGSVC_DATABASE": path})
    assert done.returncode != 0
    assert "error: cannot apply 0003_dedupe_window (it copies events)" in done.stderr
    assert "Traceback" not in done.stderr and "Booting worker" not in done.stderr


def test_a_migration_that_copies_no_table_is_not_stopped_by_orphaned_rows(db_path):
    """Only a migration that says `-- requires: foreign_key_check <table>` (a table copy)
    checks that table: an orphaned row left by an outside tool does not stop one that only
    adds a column and an index (0004), so a service that ran does not refuse to upgrade."""
    _store_at(db_path, 3).close()
    _insert_orphaned_event(db_path)
    store = Store(db_path)
    try:
        assert store.conn().execute("SELECT message_id, exact_id FROM events").fetchall() == [
            ("orphan", 0)]
    finally:
        store.close()


def test_the_wal_truncation_after_migrating_does_not_hold_writers_behind_a_reader(db_path):
    """A TRUNCATE checkpoint takes the write lock and waits for readers: with a reader open
    (a service still running) it gives up after CHECKPOINT_BUSY_MS instead of the 15 s busy
    timeout, and the connection keeps its own busy timeout afterwards."""
    import time

    _store_at(db_path, 3).close()
    reader = sqlite3.connect(db_path, isolation_level=None)
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM events").fetchone()  # holds a WAL snapshot
    try:
        start = time.monotonic()
        store = Store(db_path)
        elapsed = time.monotonic() - start
        try:
            assert elapsed < 2.0
            assert store.conn().execute("PRAGMA busy_timeout").fetchone()[0] == (
                db.BUSY_TIMEOUT_MS)
        finally:
            store.close()
    finally:
        reader.execute("COMMIT")
        reader.close()
