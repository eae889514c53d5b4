"""Issue 14, second attack run, item 3: with `require_signed_groups` and a signature for its
own groups only, an attacker set `parent_group_id=victim-acct` on its own `att-proj` through
public ingestion; a signed decide for `att-proj` then inferred the victim's account and
answered its flag (`condition_match`, the victim's payload). Now a parent link is set only
by a trusted writer when the project requires signed groups: the secret key (sent beside
the public token), a FlagClient, the CLI — public-token ingestion keeps the event and the
group's properties but not the link, with a warning."""

from __future__ import annotations

import json
import time
import uuid

import pytest

from flagsvc import sign_context
from flagsvc.ingest.model import Call

pytestmark = pytest.mark.backends


def _batch(client, token, events, headers=None):
    r = client.post("/batch/", data=json.dumps({"api_key": token, "batch": events}),
                    headers={"Content-Type": "application/json", **(headers or {})})
    assert r.status_code == 200, r.get_json()
    return r.get_json()


def _group_set(gtype, key, traits):
    return {"event": "$groupidentify", "distinct_id": "x", "uuid": str(uuid.uuid4()),
            "properties": {"$group_type": gtype, "$group_key": key, "$group_set": traits}}


@pytest.fixture
def tenants(app, client, app_project, h):
    """Two tenants; the victim's account is enterprise; signed groups + fill on."""
    store, pid = app.extensions["flagsvc"].store, app_project["id"]
    now = time.time() - 60
    store.ingest(pid, [
        Call("group", "a1", now, group_type="account", group_key="victim-acct",
             group_set={"plan": "enterprise"}),
        Call("group", "a2", now, group_type="account", group_key="att-acct",
             group_set={"plan": "free"}),
        Call("group", "p1", now, group_type="project", group_key="att-proj",
             parent_key="att-acct", parent_type="account")])
    store.create_flag(pid, {"key": "enterprise", "bucket_by": "account", "conditions": [{
        "properties": [{"type": "group", "group_type": "account", "key": "plan",
                        "operator": "exact", "value": "enterprise"}]}],
        "payloads": {"true": {"secret": "victim-payload"}}})
    r = client.post("/api/project/signing_keys", json={"grace_seconds": 0}, headers=h)
    key = r.get_json()["signing_key"]
    r = client.patch("/api/project", json={"require_signed_groups": True,
                                           "client_properties": "fill"}, headers=h)
    assert r.status_code == 200, r.get_json()
    time.sleep(0.6)  # settings reach evaluators within cache_seconds
    return store, pid, key


def _signed_decide(client, token, key, groups):
    body = {"api_key": token, "distinct_id": "att-user", "groups": groups,
            "$signature": sign_context(key, "att-user", groups)}
    r = client.post("/flags/?v=2", data=json.dumps(body),
                    headers={"Content-Type": "application/json"})
    assert r.status_code == 200, r.get_json()
    out = r.get_json()
    assert "groupsIgnored" not in out
    return out["flags"]["enterprise"]


def test_public_ingestion_cannot_link_its_group_under_another_tenant(client, app_project,
                                                                     tenants):
    store, pid, key = tenants
    token = app_project["api_token"]
    before = _signed_decide(client, token, key, {"project": "att-proj"})
    assert before["enabled"] is False and before["reason"]["code"] == "no_condition_match"

    # the attack: a parent link to the victim's account, with the public token
    out = _batch(client, token, [_group_set("project", "att-proj", {
        "parent_group_id": "victim-acct", "parent_group_type": "account", "note": "kept"})])
    assert any("requires signed groups" in w for w in out["warnings"])
    group = store.get_group(pid, "project", "att-proj")
    assert group["properties"]["note"] == "kept"  # the event's other data is kept
    assert store.group_parent(pid, "project", "att-proj") == ("account", "att-acct")
    after = _signed_decide(client, token, key, {"project": "att-proj"})
    assert after == before  # nothing learned about the victim
    assert after["metadata"]["payload"] is None
    # clearing the link is a change of hierarchy too
    _batch(client, token, [_group_set("project", "att-proj", {"parent_group_id": None})])
    assert store.group_parent(pid, "project", "att-proj") == ("account", "att-acct")


def test_the_secret_key_still_sets_parent_links(client, app_project, tenants):
    """The trusted writer (the app's backend, with the secret key beside the public token)
    may move the link: here to the victim's account, which then answers as its own."""
    store, pid, key = tenants
    token = app_project["api_token"]
    wrong = {"Authorization": "Bearer fsk_not-a-key"}
    _batch(client, token, [_group_set("project", "att-proj", {
        "parent_group_id": "victim-acct", "parent_group_type": "account"})], wrong)
    assert store.group_parent(pid, "project", "att-proj") == ("account", "att-acct")
    secret = {"Authorization": f"Bearer {app_project['secret_key']}"}
    out = _batch(client, token, [_group_set("project", "att-proj", {
        "parent_group_id": "victim-acct", "parent_group_type": "account"})], secret)
    assert not out.get("warnings")
    assert store.group_parent(pid, "project", "att-proj") == ("account", "victim-acct")
    time.sleep(0.6)
    moved = _signed_decide(client, token, key, {"project": "att-proj"})
    assert moved["reason"]["code"] == "condition_match"


def test_without_signed_groups_public_ingestion_sets_parents_as_before(client, app, app_project):
    store, pid = app.extensions["flagsvc"].store, app_project["id"]
    _batch(client, app_project["api_token"], [_group_set("project", "p", {
        "parent_group_id": "a", "parent_group_type": "account"})])
    assert store.group_parent(pid, "project", "p") == ("account", "a")
