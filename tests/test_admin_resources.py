"""Admin API: group types, groups, persons, project settings, and the definitions endpoints."""

from __future__ import annotations

import time

import pytest
import requests
from conftest import auth

from flagsvc.ingest.model import Call

pytestmark = pytest.mark.backends


@pytest.fixture
def seeded(app, app_project):
    """account a1 > workspace w1 > project p1; person u1 in p1 with an event."""
    t = time.time()
    app.extensions["flagsvc"].store.ingest(app_project["id"], [
        Call(kind="group", message_id="g1", timestamp=t, group_type="account", group_key="a1",
             group_set={"plan": "enterprise", "seats": 40}),
        Call(kind="group", message_id="g2", timestamp=t, group_type="account", group_key="a2",
             group_set={"plan": "free", "seats": 5}),
        Call(kind="group", message_id="g3", timestamp=t, group_type="workspace", group_key="w1",
             parent_key="a1", parent_type="account", group_set={"name": "Main"}),
        Call(kind="group", message_id="g4", timestamp=t, group_type="project", group_key="p1",
             parent_key="w1", parent_type="workspace"),
        Call(kind="identify", message_id="i1", timestamp=t, distinct_id="u1",
             person_set={"email": "ann@acme.com"}),
        Call(kind="track", message_id="t1", timestamp=t, distinct_id="u1", event="opened",
             groups={"project": "p1"}),
    ])


# ---------------------------------------------------------------- group types


def test_group_types_create_list_and_the_sixth_is_422(client, h):
    assert client.get("/api/group_types", headers=h).get_json() == {"group_types": []}
    r = client.post("/api/group_types", json={"name": "account"}, headers=h)
    assert r.status_code == 201 and r.get_json()["name"] == "account" and r.get_json()["index"] == 0
    assert client.post("/api/group_types", json={"name": "account"}, headers=h).status_code == 200
    for name in ("workspace", "project", "organization", "instance"):
        assert client.post("/api/group_types", json={"name": name}, headers=h).status_code == 201
    r = client.post("/api/group_types", json={"name": "team"}, headers=h)
    assert r.status_code == 422
    assert "at most 5" in r.get_json()["message"] and "name" in r.get_json()["errors"]
    listed = client.get("/api/group_types", headers=h).get_json()["group_types"]
    assert [t["index"] for t in listed] == [0, 1, 2, 3, 4]
    assert listed[0]["created_at"].endswith("Z")


@pytest.mark.parametrize("body", [{}, {"name": ""}, {"name": "$person"}, {"name": 5},
                                  {"name": "x" * 101}])
def test_group_type_bad_names_are_422(client, h, body):
    r = client.post("/api/group_types", json=body, headers=h)
    assert r.status_code == 422 and "name" in r.get_json()["errors"]


# ---------------------------------------------------------------- groups and persons


def test_group_list_search_and_property_filters(client, h, seeded):
    page = client.get("/api/groups", headers=h).get_json()
    assert page["total"] == 4 and len(page["groups"]) == 4
    accounts = client.get("/api/groups?group_type=account", headers=h).get_json()
    assert [g["group_key"] for g in accounts["groups"]] == ["a1", "a2"]
    pro = client.get("/api/groups?group_type=account&properties.plan=enterprise",
                     headers=h).get_json()
    assert [g["group_key"] for g in pro["groups"]] == ["a1"]
    assert pro["groups"][0]["properties"]["plan"] == "enterprise"
    by_number = client.get("/api/groups?properties.seats=5", headers=h).get_json()
    assert [g["group_key"] for g in by_number["groups"]] == ["a2"]
    assert client.get("/api/groups?search=w", headers=h).get_json()["total"] == 1
    paged = client.get("/api/groups?limit=1&offset=1", headers=h).get_json()
    assert paged["total"] == 4 and len(paged["groups"]) == 1 and paged["offset"] == 1
    assert client.get("/api/groups?limit=-1", headers=h).status_code == 422


def test_group_profile(client, h, seeded):
    r = client.get("/api/groups/workspace/w1", headers=h)
    assert r.status_code == 200
    g = r.get_json()
    assert g["properties"] == {"name": "Main"}
    assert g["parent"] == {"group_type": "account", "group_key": "a1"}
    assert g["children"] == [{"group_type": "project", "group_key": "p1"}]
    p1 = client.get("/api/groups/project/p1", headers=h).get_json()
    assert [m["distinct_id"] for m in p1["members"]] == ["u1"]
    assert any(e["event"] == "opened" for e in p1["recent_events"])
    assert p1["created_at"].endswith("Z") and p1["recent_events"][0]["timestamp"].endswith("Z")
    r = client.get("/api/groups/workspace/nope", headers=h)
    assert r.status_code == 404 and r.get_json()["code"] == "not_found"


def test_persons(client, h, seeded):
    page = client.get("/api/persons", headers=h).get_json()
    assert page["total"] == 1 and page["persons"][0]["distinct_id"] == "u1"
    p = client.get("/api/persons/u1", headers=h).get_json()
    assert p["properties"] == {"email": "ann@acme.com"}
    assert any(g["group_type"] == "project" and g["group_key"] == "p1" for g in p["groups"])
    assert client.get("/api/persons/ghost", headers=h).status_code == 404


# ---------------------------------------------------------------- project


def test_project_settings_never_show_the_secret(client, h, app_project):
    r = client.get("/api/project", headers=h)
    body = r.get_json()
    assert body["id"] == app_project["id"] and body["api_token"] == app_project["api_token"]
    assert app_project["secret_key"] not in r.get_data(as_text=True)
    assert "secret_key" not in body
    r = client.patch("/api/project", headers=h, json={
        "name": "renamed", "default_group_type": "account",
        "private_properties": {"management_email": "hash", "customer_id": "drop"},
        "event_retention_days": 7})
    assert r.status_code == 200, r.get_json()
    body = r.get_json()
    assert body["name"] == "renamed" and body["default_group_type"] == "account"
    assert body["private_properties"] == {"management_email": "hash", "customer_id": "drop"}
    assert body["event_retention_days"] == 7
    assert app_project["secret_key"] not in r.get_data(as_text=True)
    types = client.get("/api/group_types", headers=h).get_json()["group_types"]
    assert [t["name"] for t in types] == ["account"]
    assert client.get("/api/project", headers=h).get_json()["name"] == "renamed"


@pytest.mark.parametrize("body,field", [
    ({"private_properties": {"email": "encrypt"}}, "private_properties.email.value"),
    ({"event_retention_days": 0}, "event_retention_days"),
    ({"event_retention_days": "7"}, "event_retention_days"),
    ({"name": ""}, "name"),
    ({"secret_key": "x"}, "secret_key"),
    ({"default_group_type": "$x"}, "default_group_type"),
])
def test_project_patch_validation(client, h, body, field):
    r = client.patch("/api/project", json=body, headers=h)
    assert r.status_code == 422
    errors = r.get_json()["errors"]
    assert field in errors, errors


# -------------------------------------------------------- definitions for in-process evaluators


def test_definitions_etag_and_304(client, h):
    client.post("/api/flags", json={"key": "a", "bucket_by": "account", "create_group_types": True},
                headers=h)
    client.post("/api/flags", json={"key": "b"}, headers=h)
    client.delete("/api/flags/b", headers=h)
    r = client.get("/api/flags/definitions", headers=h)
    assert r.status_code == 200
    etag = r.headers["ETag"]
    assert etag.startswith('"') and etag.endswith('"') and not etag.startswith("W/")
    body = r.get_json()
    assert [f["key"] for f in body["flags"]] == ["a"]
    assert {"id", "key", "version"} <= set(body["flags"][0])
    assert body["flags"][0] == client.get("/api/flags/a", headers=h).get_json()
    assert body["group_types"][0]["name"] == "account"
    assert set(body["project"]) == {"id", "default_group_type", "client_properties"}
    not_modified = client.get("/api/flags/definitions", headers={**h, "If-None-Match": etag})
    assert not_modified.status_code == 304 and not_modified.get_data() == b""
    assert not_modified.headers["ETag"] == etag
    weak = client.get("/api/flags/definitions", headers={**h, "If-None-Match": f'"x", W/{etag}'})
    assert weak.status_code == 304
    client.patch("/api/flags/a", json={"active": False}, headers={**h, "If-Match": "1"})
    changed = client.get("/api/flags/definitions", headers={**h, "If-None-Match": etag})
    assert changed.status_code == 200 and changed.headers["ETag"] != etag
    assert changed.get_json()["flags"][0]["active"] is False


@pytest.mark.parametrize("stored", [
    {"key": "bare"},
    {"key": "bare", "active": False},
    {"key": "bare", "conditions": []},
    {"key": "bare", "variants": [{"key": "a", "rollout_percentage": 1}, {"key": "b", "weight": 3}]},
    {"key": "bare", "conditions": [{"properties": [{"key": "plan", "value": "pro",
                                                    "extra": "kept"}]}]},
])
def test_definitions_evaluate_exactly_like_the_stored_flags(app, client, h, app_project, stored):
    """A flag written outside the admin API (import, CLI) keeps its meaning in the definitions
    an in-process evaluator compiles: nothing is dropped or defaulted differently."""
    from flagsvc.engine import Context, compile_flags, evaluate

    store = app.extensions["flagsvc"].store
    saved = store.create_flag(app_project["id"], stored)
    served = client.get("/api/flags/definitions", headers=h).get_json()["flags"]
    for did in ("u1", "u2", "u3", "u4"):
        ctx = Context(distinct_id=did, person_properties={"plan": "pro"})
        want = evaluate(compile_flags([saved]), "bare", ctx)
        got = evaluate(compile_flags(served), "bare", ctx)
        assert (got.enabled, got.variant, got.reason) == (want.enabled, want.variant, want.reason)


def test_definitions_etag_changes_with_project_settings(client, h):
    etag = client.get("/api/flags/definitions", headers=h).headers["ETag"]
    client.patch("/api/project", json={"default_group_type": "account"}, headers=h)
    r = client.get("/api/flags/definitions", headers={**h, "If-None-Match": etag})
    assert r.status_code == 200 and r.get_json()["project"]["default_group_type"] == "account"


def test_definitions_route_is_not_a_flag_key(client, h):
    r = client.post("/api/flags", json={"key": "definitions"}, headers=h)
    assert r.status_code == 422


def test_stored_property_lookups(client, h, seeded):
    r = client.get("/api/groups/workspace/w1/properties", headers=h)
    assert r.status_code == 200
    assert r.get_json() == {"properties": {"name": "Main"},
                            "parent": {"group_type": "account", "group_key": "a1"}}
    assert client.get("/api/groups/account/a1/properties", headers=h).get_json()["parent"] is None
    r = client.get("/api/groups/account/zzz/properties", headers=h)
    assert r.status_code == 404 and r.get_json()["code"] == "not_found"
    r = client.get("/api/persons/u1/properties", headers=h)
    assert r.get_json() == {"properties": {"email": "ann@acme.com"}}
    assert client.get("/api/persons/ghost/properties", headers=h).status_code == 404


def test_definitions_over_http_with_requests(live_server):
    base, h = live_server.url, auth(live_server.project)
    requests.post(f"{base}/api/flags", json={"key": "x"}, headers=h, timeout=10)
    first = requests.get(f"{base}/api/flags/definitions", headers=h, timeout=10)
    second = requests.get(f"{base}/api/flags/definitions",
                          headers={**h, "If-None-Match": first.headers["ETag"]}, timeout=10)
    assert first.status_code == 200 and second.status_code == 304 and second.content == b""
    assert "Access-Control-Allow-Origin" not in first.headers


def test_group_keys_and_distinct_ids_with_slashes(app, client, h, app_project):
    """Keys are opaque strings: a URL-encoded slash reaches the right group and person."""
    app.extensions["flagsvc"].store.ingest(app_project["id"], [
        Call(kind="group", message_id="s1", timestamp=time.time(), group_type="repo",
             group_key="acme/web", group_set={"stars": 3}),
        Call(kind="identify", message_id="s2", timestamp=time.time(), distinct_id="team/ann",
             person_set={"role": "admin"})])
    group = client.get("/api/groups/repo/acme%2Fweb", headers=h).get_json()
    assert group["group_key"] == "acme/web"
    r = client.get("/api/groups/repo/acme%2Fweb/properties", headers=h)
    assert r.get_json()["properties"] == {"stars": 3}
    person = client.get("/api/persons/team%2Fann", headers=h).get_json()
    assert person["properties"] == {"role": "admin"}
    assert client.get("/api/persons/team%2Fann/properties", headers=h).get_json() == {
        "properties": {"role": "admin"}}
