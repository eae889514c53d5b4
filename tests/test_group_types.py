"""Group-type administration (issue 14 item 4, SPEC §11): the public token cannot take a
project's five group-type slots unless the project allows it; an admin renames or deletes an
unused type; a flag naming an unknown type is refused unless asked to create it."""

from __future__ import annotations

import json
import sqlite3
import time
import uuid

import pytest

from flagsvc.ingest.model import Call
from flagsvc.store import Store, db
from tests.conftest import auth

pytestmark = pytest.mark.backends


@pytest.fixture
def new(app):
    """A project created as the product creates one (defaults), with admin headers."""
    project = app.extensions["flagsvc"].store.create_project("fresh")
    return project, auth(project)


def _store(app):
    return app.extensions["flagsvc"].store


def group_call(token, group_type, key, **traits):
    return {"api_key": token, "batch": [{
        "event": "$groupidentify", "distinct_id": "x", "uuid": str(uuid.uuid4()),
        "properties": {"$group_type": group_type, "$group_key": key, "$group_set": traits}}]}


def post(client, path, body, headers=None):
    return client.post(path, data=json.dumps(body), headers={
        "Content-Type": "application/json", **(headers or {})})


def names(client, h):
    return [t["name"] for t in client.get("/api/group_types", headers=h).get_json()["group_types"]]


def test_a_new_projects_ingestion_creates_only_its_default_group_type(client, app, new):
    """Issue 14's attack: five junk types ingested through the public token, then the real
    `organization` dropped with a 200, for good. Now the junk is dropped (warned) and the
    default type is created."""
    project, h = new
    settings = client.get("/api/project", headers=h).get_json()
    assert settings["ingestion_creates_group_types"] is False
    for i in range(5):
        r = post(client, "/batch/", group_call(project["api_token"], f"junk{i}", "k"))
        assert r.status_code == 200
        assert "ingestion_creates_group_types" in r.get_json()["warnings"][0]
        assert r.get_json()["dropped"] == 1
    r = post(client, "/batch/", group_call(project["api_token"], "organization", "acme",
                                            plan="enterprise"))
    assert r.status_code == 200 and "warnings" not in r.get_json()
    assert names(client, h) == ["organization"]
    assert _store(app).group_properties(project["id"], "organization", "acme") == {
        "plan": "enterprise"}


def test_declared_group_types_are_ingested_and_the_setting_lets_ingestion_create_them(
        client, new):
    project, h = new
    assert post(client, "/api/group_types", {"name": "account"}, h).status_code == 201
    r = post(client, "/batch/", group_call(project["api_token"], "account", "a1"))
    assert "warnings" not in r.get_json()
    r = client.patch("/api/project", json={"ingestion_creates_group_types": True}, headers=h)
    assert r.status_code == 200 and r.get_json()["ingestion_creates_group_types"] is True
    post(client, "/batch/", group_call(project["api_token"], "workspace", "w1"))
    assert names(client, h) == ["account", "workspace"]
    bad = client.patch("/api/project", json={"ingestion_creates_group_types": "yes"}, headers=h)
    assert bad.status_code == 422


def test_projects_existing_before_0005_keep_creating_group_types(db_path):
    everything = db.migration_names()
    original = db.migration_names
    db.migration_names = lambda: everything[:4]
    try:
        old = Store(db_path)
    finally:
        db.migration_names = original
    with db.transaction(old.conn()) as conn:
        conn.execute("INSERT INTO projects (name, api_token, hash_salt, created_at) "
                     "VALUES ('old', 'phc_old', 'salt', 1.7e9)")
    old.close()
    store = Store(db_path)
    try:
        (old_project,) = store.list_projects()
        assert old_project["ingestion_creates_group_types"] is True
        assert old_project["client_properties"] == "override"
        assert old_project["require_signed_groups"] is False
        assert store.create_project("new")["ingestion_creates_group_types"] is False
    finally:
        store.close()


def _seed_types(store, pid):
    now = time.time()
    store.ingest(pid, [
        Call("group", "a", now, group_type="acount", group_key="a1", group_set={"plan": "pro"}),
        Call("group", "w", now, group_type="workspace", group_key="w1", parent_key="a1",
             parent_type="acount"),
        Call("track", "t", now, distinct_id="u1", event="e", groups={"acount": "a1"}),
    ])


def test_an_unused_group_type_is_renamed_with_its_groups_and_links(client, app, app_project, h):
    store = _store(app)
    _seed_types(store, app_project["id"])
    store.create_flag(app_project["id"], {"key": "by-account", "bucket_by": "account",
                                          "conditions": [{"properties": [
                                              {"type": "group", "group_type": "account",
                                               "key": "plan", "value": "pro"}]}]})
    # decide cached the typo'd name as absent; the rename evicts it
    before = post(client, "/flags/?v=2", {"api_key": app_project["api_token"],
                                          "groups": {"workspace": "w1"}}).get_json()
    assert before["flags"]["by-account"]["reason"]["code"] == "no_group_type"
    r = client.patch("/api/group_types/acount", json={"name": "account"}, headers=h)
    assert r.status_code == 200, r.get_json()
    assert r.get_json()["name"] == "account"
    assert "acount" not in names(client, h) and "account" in names(client, h)
    assert store.group_properties(app_project["id"], "account", "a1") == {"plan": "pro"}
    assert store.group_parent(app_project["id"], "workspace", "w1") == ("account", "a1")
    time.sleep(0.6)  # parent links are cached for cache_seconds (0.5 s), as after any change
    after = post(client, "/flags/?v=2", {"api_key": app_project["api_token"],
                                         "groups": {"workspace": "w1"}}).get_json()
    assert after["flags"]["by-account"]["reason"]["code"] == "condition_match"


def test_a_group_type_a_flag_names_cannot_be_renamed_or_deleted(client, app, app_project, h):
    store = _store(app)
    _seed_types(store, app_project["id"])
    store.create_flag(app_project["id"], {"key": "uses-it", "bucket_by": "acount"})
    store.set_flag_deleted(app_project["id"], "uses-it", True, None)  # deleted still counts
    for r in (client.patch("/api/group_types/acount", json={"name": "x"}, headers=h),
              client.delete("/api/group_types/acount", headers=h)):
        assert r.status_code == 409 and "uses-it" in r.get_json()["message"]
    assert "acount" in names(client, h)


def test_rename_and_delete_refusals(client, app, app_project, h):
    _seed_types(_store(app), app_project["id"])
    assert client.delete("/api/group_types/nope", headers=h).status_code == 404
    assert client.patch("/api/group_types/nope", json={"name": "x"}, headers=h).status_code == 404
    clash = client.patch("/api/group_types/acount", json={"name": "workspace"}, headers=h)
    assert clash.status_code == 409
    post(client, "/api/group_types", {"name": "organization"}, h)
    default = client.delete("/api/group_types/organization", headers=h)
    assert default.status_code == 409 and "default_group_type" in default.get_json()["message"]
    bad = client.patch("/api/group_types/acount", json={"name": "$bad"}, headers=h)
    assert bad.status_code == 422


def test_deleting_an_unused_group_type_deletes_its_groups_and_frees_its_slot(
        client, app, app_project, h):
    store = _store(app)
    _seed_types(store, app_project["id"])
    for t in ("c", "d", "e"):
        post(client, "/api/group_types", {"name": t}, h)
    assert post(client, "/api/group_types", {"name": "f"}, h).status_code == 422  # full
    r = client.delete("/api/group_types/acount", headers=h)
    assert r.status_code == 200 and r.get_json() == {"name": "acount", "groups_deleted": 1}
    conn = store.conn()
    left = conn.execute("SELECT count(*) FROM groups WHERE group_type = 'acount'").fetchone()
    assert left == (0,)
    assert conn.execute("SELECT count(*) FROM memberships m JOIN groups g ON g.id = m.group_id "
                        "WHERE g.group_type = 'acount'").fetchone() == (0,)
    assert store.count_events(app_project["id"]) == 3  # events are history: kept
    assert post(client, "/api/group_types", {"name": "organization"}, h).status_code == 201


def test_renaming_the_default_group_type_renames_the_setting(client, app, new):
    project, h = new
    post(client, "/batch/", group_call(project["api_token"], "organization", "o1"))
    r = client.patch("/api/group_types/organization", json={"name": "company"}, headers=h)
    assert r.status_code == 200
    assert client.get("/api/project", headers=h).get_json()["default_group_type"] == "company"
    assert _store(app).group_properties(project["id"], "company", "o1") == {}


@pytest.mark.sqlite_only
def test_group_type_changes_are_seen_by_a_running_service_within_its_cache(app, app_project):
    """The change log names every group of a renamed type under both names, so a worker's
    property cache does not keep serving the old name's rows."""
    store = _store(app)
    _seed_types(store, app_project["id"])
    conn = sqlite3.connect(store.path)
    before = conn.execute("SELECT count(*) FROM changes").fetchone()[0]
    store.rename_group_type(app_project["id"], "acount", "account")
    logged = conn.execute("SELECT group_type, key FROM changes ORDER BY id").fetchall()[before:]
    assert set(logged) == {("acount", "a1"), ("account", "a1")}
    conn.close()
