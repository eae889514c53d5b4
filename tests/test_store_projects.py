"""Projects: tokens (secret stored only hashed, kinds never interchangeable, rotation with
grace) and group types (at most 5, stable indices, a clear error for the 6th)."""

from __future__ import annotations

import glob
import time

import pytest

from flagsvc.store import Conflict, LimitExceeded, NotFound, Store

pytestmark = pytest.mark.backends


def test_create_returns_both_tokens(project):
    assert project["api_token"].startswith("phc_")
    assert project["secret_key"].startswith("fsk_")
    assert project["api_token"] != project["secret_key"]
    assert len(project["secret_key"]) >= 32


@pytest.mark.sqlite_only
def test_secret_key_is_never_stored_in_clear(store, project, db_path):
    secret = project["secret_key"]
    conn = store.conn()
    for (table,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall():
        for row in conn.execute(f'SELECT * FROM "{table}"'):
            for value in row:
                assert secret not in str(value), f"secret key found in table {table}"
    # nor in any byte of the database files (main file, WAL, shared memory)
    store.conn().execute("PRAGMA wal_checkpoint(FULL)")
    for path in glob.glob(db_path + "*"):
        with open(path, "rb") as f:
            assert secret.encode() not in f.read(), path
    assert "secret_key" not in store.get_project(project["id"])


def test_tokens_resolve_to_their_project_by_kind(store, project):
    other = store.create_project("other")
    assert store.project_for_token(project["api_token"], "api")["id"] == project["id"]
    assert store.project_for_token(project["secret_key"], "secret")["id"] == project["id"]
    assert store.project_for_token(other["api_token"], "api")["id"] == other["id"]


@pytest.mark.parametrize("token", ["", "phc_nope", "x" * 500, None, 42])
def test_unknown_or_malformed_tokens_are_refused(store, project, token):
    assert store.project_for_token(token, "api") is None
    assert store.project_for_token(token, "secret") is None


def test_a_secret_is_not_an_api_token_and_vice_versa(store, project):
    assert store.project_for_token(project["secret_key"], "api") is None
    assert store.project_for_token(project["api_token"], "secret") is None


def test_explicit_tokens_and_collisions(store):
    p = store.create_project("fixed", api_token="phc_fixed_token_1",
                             secret_key="fsk_fixed_secret_1")
    assert store.project_for_token("phc_fixed_token_1", "api")["id"] == p["id"]
    with pytest.raises(Conflict):
        store.create_project("dup", api_token="phc_fixed_token_1")
    with pytest.raises(Conflict):
        store.create_project("dup", secret_key="fsk_fixed_secret_1")
    assert [q["name"] for q in store.list_projects()] == ["fixed"]


@pytest.mark.parametrize("kind", ["api", "secret"])
def test_rotation_with_grace_keeps_the_old_token_until_it_expires(store, project, kind,
                                                                  monkeypatch):
    old = project["api_token" if kind == "api" else "secret_key"]
    new = store.rotate_token(project["id"], kind, grace_seconds=60)
    assert new != old
    assert store.project_for_token(old, kind)["id"] == project["id"]
    assert store.project_for_token(new, kind)["id"] == project["id"]
    if kind == "api":
        assert store.get_project(project["id"])["api_token"] == new
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + 61)
    assert store.project_for_token(old, kind) is None
    assert store.project_for_token(new, kind)["id"] == project["id"]


@pytest.mark.parametrize("kind", ["api", "secret"])
def test_rotation_without_grace_revokes_the_old_token_now(store, project, kind):
    old = project["api_token" if kind == "api" else "secret_key"]
    new = store.rotate_token(project["id"], kind, grace_seconds=0)
    assert store.project_for_token(old, kind) is None
    assert store.project_for_token(new, kind)["id"] == project["id"]


def test_rotation_never_extends_an_earlier_expiry(store, project):
    old = project["secret_key"]
    store.rotate_token(project["id"], "secret", grace_seconds=0)
    store.rotate_token(project["id"], "secret", grace_seconds=3600)  # must not revive `old`
    assert store.project_for_token(old, "secret") is None


def test_rotation_refuses_unknown_project_and_kind(store, project):
    with pytest.raises(NotFound):
        store.rotate_token(9999, "api")
    with pytest.raises(ValueError):
        store.rotate_token(project["id"], "admin")
    assert store.project_for_token(project["api_token"], "api") is not None


@pytest.mark.sqlite_only
def test_rotated_secret_is_not_stored_in_clear(store, project, db_path):
    new = store.rotate_token(project["id"], "secret", grace_seconds=0)
    store.conn().execute("PRAGMA wal_checkpoint(FULL)")
    for path in glob.glob(db_path + "*"):
        with open(path, "rb") as f:
            assert new.encode() not in f.read()


def test_group_types_get_stable_indices_and_a_sixth_is_refused(store, project):
    pid = project["id"]
    names = ["organization", "account", "workspace", "project", "instance"]
    for i, name in enumerate(names):
        assert store.create_group_type(pid, name) == {"name": name, "index": i, "created": True}
    with pytest.raises(LimitExceeded, match=r"at most 5 group types.*'team'"):
        store.create_group_type(pid, "team")
    assert [(g["name"], g["index"]) for g in store.group_types(pid)] == list(
        zip(names, range(5), strict=True))
    # idempotent: an existing type keeps its index, even when the project is full
    for i, name in enumerate(names):
        assert store.create_group_type(pid, name)["index"] == i
    assert len(store.group_types(pid)) == 5


def test_group_type_limit_is_per_project(store, project):
    other = store.create_project("other")
    for name in ["a", "b", "c", "d", "e"]:
        store.create_group_type(project["id"], name)
    assert store.create_group_type(other["id"], "f") == {"name": "f", "index": 0, "created": True}


@pytest.mark.parametrize("name", ["", "   ", None])
def test_group_type_names_must_be_non_empty(store, project, name):
    with pytest.raises(ValueError):
        store.create_group_type(project["id"], name)
    assert store.group_types(project["id"]) == []


def test_update_project_settings(store, project):
    p = store.update_project(project["id"], default_group_type="account",
                             private_properties={"email": "hash"}, event_retention_days=7)
    assert (p["default_group_type"], p["private_properties"], p["event_retention_days"]) == (
        "account", {"email": "hash"}, 7)
    with pytest.raises(ValueError):
        store.update_project(project["id"], api_token="phc_x")
    with pytest.raises(NotFound):
        store.update_project(12345, name="x")


def test_projects_are_isolated_stores(tmp_path):
    a = Store(str(tmp_path / "a.db"))
    try:
        p = a.create_project("p")
        assert a.get_project(p["id"] + 1) is None
        assert a.hash_salt(p["id"]) and a.hash_salt(p["id"]) != a.hash_salt(
            a.create_project("q")["id"])
    finally:
        a.close()
