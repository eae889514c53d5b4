"""`flagsvc migrate-data SOURCE TARGET`: a whole installation copied SQLite -> PostgreSQL
and back, verified by counts; what was copied answers as the original did."""

from __future__ import annotations

import pytest
from conftest import drop_pg_schema, pg_schema_url

from flagsvc.cli import main
from flagsvc.ingest.model import Call
from flagsvc.service import FlagService, make_context
from flagsvc.store import Store
from flagsvc.store.copy import TABLES, count_tables


@pytest.fixture
def pg_url():
    schema, url = pg_schema_url("md")
    yield url
    drop_pg_schema(schema)


def _fill(store):
    p = store.create_project("p", ingestion_creates_group_types=True)
    store.create_flag(p["id"], {"key": "ent", "bucket_by": "organization", "conditions": [
        {"properties": [{"type": "group", "group_type": "organization", "key": "plan",
                         "operator": "exact", "value": ["enterprise"]}]}]})
    store.update_flag(p["id"], "ent", {"name": "Enterprise"}, 1)
    calls = [Call("group", f"g{i}", 1000.0 + i, distinct_id=f"u{i}", group_type="organization",
                  group_key=f"org{i}", group_set={"plan": "enterprise" if i % 2 else "free"},
                  parent_key="root" if i else None) for i in range(30)]
    calls += [Call("track", f"t{i}", 2000.0 + i, distinct_id=f"u{i}", event="e",
                   groups={"organization": f"org{i}"}) for i in range(30)]
    calls += [Call("alias", "a1", 3000.0, distinct_id="u1", previous_id="u2")]
    store.ingest(p["id"], calls)
    store.rotate_token(p["id"], "api", grace_seconds=60)
    store.rotate_signing_key(p["id"])
    return p


def _answers(db, pid):
    store = Store(db, migrate_now=False)
    svc = FlagService(store)
    try:
        return [svc.evaluate(pid, make_context("u", {"organization": f"org{i}"}))["ent"].enabled
                for i in range(30)]
    finally:
        svc.close()


def test_sqlite_to_postgresql_and_back(tmp_path, pg_url, capsys):
    src = str(tmp_path / "src.db")
    store = Store(src)
    p = _fill(store)
    before = count_tables(store)
    store.close()
    assert all(before[t] for t in ("projects", "groups", "persons", "events", "audit_log"))

    assert main(["migrate-data", src, pg_url]) == 0
    out = capsys.readouterr()
    assert "verified" in out.err
    pg = Store(pg_url)
    assert count_tables(pg) == before
    # statistics of what was copied, at once (not at autovacuum's first look)
    conn = pg.conn()
    stats = dict(conn.execute("SELECT relname, reltuples FROM pg_class WHERE relkind = 'r' "
                              "AND relnamespace = current_schema()::regnamespace").fetchall())
    assert {t: stats[t] for t, n in before.items() if n} == {t: n for t, n in before.items() if n}
    # ids continue after the copied ones: new rows do not collide
    pg.create_flag(p["id"], {"key": "new", "conditions": []})
    q = pg.create_project("q")
    assert q["id"] > p["id"]
    pg.close()
    assert _answers(pg_url, p["id"]) == _answers(src, p["id"]) == [bool(i % 2)
                                                                   for i in range(30)]

    back = str(tmp_path / "back.db")
    assert main(["migrate-data", pg_url, back]) == 0
    capsys.readouterr()
    lite = Store(back)
    after = count_tables(lite)
    lite.close()
    assert after == {**before, "projects": 2, "flags": 2, "audit_log": before["audit_log"] + 1,
                     "tokens": before["tokens"] + 2}
    assert _answers(back, p["id"]) == _answers(src, p["id"])
    assert set(after) == set(TABLES)


def test_the_target_must_be_empty(tmp_path, pg_url, capsys):
    src = str(tmp_path / "src.db")
    s = Store(src)
    _fill(s)
    s.close()
    t = Store(pg_url)
    t.create_project("already here")
    t.close()
    assert main(["migrate-data", src, pg_url]) != 0
    assert "empty" in capsys.readouterr().err
    t = Store(pg_url)
    assert count_tables(t)["projects"] == 1 and count_tables(t)["groups"] == 0
    t.close()


def test_backup_on_postgresql_names_pg_dump(pg_url, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FLAGSVC_DATABASE", pg_url)
    Store(pg_url).close()
    assert main(["backup", str(tmp_path / "copy.db")]) != 0
    err = capsys.readouterr().err
    assert "pg_dump" in err and not (tmp_path / "copy.db").exists()


@pytest.mark.parametrize("direction", ["to_postgresql", "to_sqlite"])
def test_a_target_with_only_a_user_is_refused_in_one_line(tmp_path, pg_url, capsys, direction):
    """Only `projects` was checked: a target holding one user failed with an IntegrityError
    traceback halfway through."""
    src, dst = str(tmp_path / "src.db"), pg_url
    if direction == "to_sqlite":
        src, dst = pg_url, str(tmp_path / "dst.db")
    s = Store(src)
    _fill(s)
    s.close()
    t = Store(dst)
    t.create_user("ops@example.com", "x", "admin")
    t.close()
    assert main(["migrate-data", src, dst]) != 0
    err = capsys.readouterr().err.strip()
    assert "not empty" in err and "users: 1 row" in err and len(err.splitlines()) == 1
    assert "Traceback" not in err


def test_every_table_is_copied_or_named_as_left_behind(tmp_path, pg_url, capsys):
    from flagsvc.store.copy import NOT_COPIED, schema_tables

    for db in (str(tmp_path / "x.db"), pg_url):
        s = Store(db)
        assert schema_tables(s) == set(TABLES) | set(NOT_COPIED)
        s.close()
    src = str(tmp_path / "src.db")
    s = Store(src)
    _fill(s)
    s.conn().execute("INSERT INTO sign_in_attempts (email, address, failures, since, "
                     "expires_at) VALUES ('a@example.com', '10.0.0.1', 3, 0, 9e9)")
    s.close()
    assert main(["migrate-data", src, pg_url]) == 0
    out = capsys.readouterr().out
    assert "sign_in_attempts" in out and "not copied" in out
