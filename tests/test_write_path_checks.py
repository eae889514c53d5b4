"""Checks that must run inside the write transaction (issue 19 review, item 10): creating a
group type twice at once, a privacy policy and a flag saved at the same time, and changing
one's own password in the console (audited like any change). Both backends."""

from __future__ import annotations

import threading

import pytest

from flagsvc import accounts, writes
from flagsvc.app import create_app
from flagsvc.errors import ValidationFailed
from flagsvc.store import NotFound

pytestmark = pytest.mark.backends


@pytest.fixture
def world(db_path):
    app = create_app({"DATABASE": db_path, "LOG_LEVEL": "CRITICAL"})
    svc = app.extensions["flagsvc"]
    project = svc.store.create_project("p")
    yield app, svc, project
    svc.close()


def _actions(store, pid, action):
    return [e for e in store.audit_log(pid, limit=1000) if e["action"] == action]


def test_a_group_type_created_twice_is_one_201_and_one_audit_entry(world):
    app, svc, project = world
    headers = {"Authorization": f"Bearer {project['secret_key']}"}
    # the store itself: an existing type is returned, not audited again
    assert svc.store.create_group_type(project["id"], "team")["created"] is True
    assert svc.store.create_group_type(project["id"], "team")["created"] is False
    assert len(_actions(svc.store, project["id"], "group_type_created")) == 1
    # concurrent requests for one new name
    barrier, codes = threading.Barrier(6), []

    def create():
        client = app.test_client()
        barrier.wait()
        codes.append(client.post("/api/group_types", json={"name": "account"},
                                 headers=headers).status_code)

    threads = [threading.Thread(target=create) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(codes) == [200] * 5 + [201]
    created = [e for e in _actions(svc.store, project["id"], "group_type_created")
               if (e["after"] or {}).get("name") == "account"]
    assert len(created) == 1


def _hashing(key):
    return {key: "hash"}


def test_the_privacy_check_of_settings_sees_the_flags_of_its_transaction(world, monkeypatch):
    """A flag saved after update_settings looked at the flags (outside the transaction)
    slipped past the check: now it runs in the transaction, on the flags as they are."""
    app, svc, project = world
    pid = project["id"]
    flag = {"key": "f", "bucket_by": "organization", "conditions": [{"properties": [
        {"type": "group", "group_type": "organization", "key": "email",
         "operator": "ends_with", "value": "@acme.com"}]}]}
    real = svc.store.update_project

    def flag_saved_meanwhile(*args, **kwargs):
        writes.create_flag(svc, pid, flag, create_group_types=True)
        return real(*args, **kwargs)

    monkeypatch.setattr(svc.store, "update_project", flag_saved_meanwhile)
    with pytest.raises(ValidationFailed, match="keyed hashes"):
        writes.update_settings(svc, pid, {"private_properties": _hashing("email")})
    monkeypatch.undo()
    assert svc.store.get_project(pid)["private_properties"] in ({}, None)


def test_a_flag_write_checks_hashed_keys_against_the_policy_of_its_transaction(world,
                                                                               monkeypatch):
    app, svc, project = world
    pid = project["id"]
    flag = {"key": "f", "bucket_by": "organization", "conditions": [{"properties": [
        {"type": "group", "group_type": "organization", "key": "email",
         "operator": "ends_with", "value": "@acme.com"}]}]}
    real = svc.store.create_flag

    def policy_changed_meanwhile(*args, **kwargs):
        writes.update_settings(svc, pid, {"private_properties": _hashing("email")})
        return real(*args, **kwargs)

    monkeypatch.setattr(svc.store, "create_flag", policy_changed_meanwhile)
    with pytest.raises(ValidationFailed):
        writes.create_flag(svc, pid, flag, create_group_types=True)
    monkeypatch.undo()
    with pytest.raises(NotFound):
        svc.store.get_flag(pid, "f")


def test_changing_ones_own_password_in_the_console_is_audited(world):
    import re

    app, svc, project = world
    accounts.create_user(svc.store, "me@example.com", "admin", "correct horse battery")
    client = app.test_client()
    client.post("/ui/signin", data={"email": "me@example.com",
                                    "password": "correct horse battery"})
    page = client.get("/ui/password").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    r = client.post("/ui/password", data={"csrf_token": token,
                                          "current": "correct horse battery",
                                          "password": "another horse battery",
                                          "confirm": "another horse battery"})
    assert r.status_code in (302, 303)
    entries = _actions(svc.store, project["id"], "user_password_reset")
    assert [e["actor"] for e in entries] == ["user me@example.com"]
