"""Admin API flags: auth, validation, versions (409/428), soft delete, audit, real concurrency."""

from __future__ import annotations

import threading
import uuid

import pytest
import requests
from conftest import auth
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flagsvc.store.projects import MAX_GROUP_TYPES

pytestmark = pytest.mark.backends

FLAG = {
    "key": "new-billing",
    "name": "New billing page",
    "bucket_by": "organization",
    "conditions": [{"properties": [{"type": "group", "group_type": "organization", "key": "plan",
                                    "operator": "exact", "value": ["enterprise", "pro"]}],
                    "rollout_percentage": 30}],
    "variants": [{"key": "control", "weight": 50}, {"key": "test", "weight": 50}],
    "payloads": {"control": {"color": "blue"}, "test": {"color": "green"}},
}


def create(client, h, **overrides):
    r = client.post("/api/flags", json={**FLAG, **overrides}, headers=h)
    assert r.status_code == 201, r.get_json()
    return r.get_json()


# ---------------------------------------------------------------- auth


@pytest.mark.parametrize("method,path", [
    ("get", "/api/flags"), ("post", "/api/flags"), ("get", "/api/flags/1"),
    ("patch", "/api/flags/1"), ("put", "/api/flags/1"), ("delete", "/api/flags/1"),
    ("post", "/api/flags/1/restore"), ("get", "/api/audit"), ("post", "/api/flags/preview"),
    ("get", "/api/flags/1/preview"), ("get", "/api/flags/1/groups"),
    ("post", "/api/flags/1/explain"), ("post", "/api/flags/explain"),
    ("get", "/api/group_types"), ("post", "/api/group_types"), ("get", "/api/groups"),
    ("get", "/api/groups/organization/acme"), ("get", "/api/persons"), ("get", "/api/persons/u1"),
    ("get", "/api/project"), ("patch", "/api/project"), ("get", "/api/flags/definitions"),
    ("get", "/api/groups/organization/acme/properties"), ("get", "/api/persons/u1/properties"),
])
def test_every_admin_route_needs_the_secret_key(client, app_project, method, path):
    call = getattr(client, method)
    kwargs = {"json": {}} if method in ("post", "put", "patch") else {}
    assert call(path, **kwargs).status_code == 401
    assert call(path, headers={"Authorization": "Bearer fsk_wrong"}, **kwargs).status_code == 401
    assert call(path, headers={"Authorization": f"Basic {app_project['secret_key']}"},
                **kwargs).status_code == 401
    r = call(path, headers={"Authorization": f"Bearer {app_project['api_token']}"}, **kwargs)
    assert r.status_code == 403
    assert r.get_json()["code"] == "forbidden"


def test_another_projects_secret_key_sees_nothing_of_this_project(client, app, h):
    flag = create(client, h)
    other = auth(app.extensions["flagsvc"].store.create_project("other"))
    for path in (f"/api/flags/{flag['id']}", "/api/flags/new-billing",
                 f"/api/flags/{flag['id']}/preview", f"/api/audit?flag_id={flag['id']}"):
        assert client.get(path, headers=other).status_code == 404, path
    assert client.patch(f"/api/flags/{flag['id']}", json={"active": False, "version": 1},
                        headers=other).status_code == 404
    assert client.delete(f"/api/flags/{flag['id']}", headers=other).status_code == 404
    assert client.get("/api/flags", headers=other).get_json() == {"flags": []}
    assert client.get("/api/audit", headers=other).get_json()["entries"] == []


def test_admin_routes_send_no_cors_headers(client, h):
    r = client.get("/api/flags", headers={**h, "Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in r.headers


# ---------------------------------------------------------------- create / get / list


def test_create_returns_the_flag_with_version_etag_and_iso_times(client, h):
    r = client.post("/api/flags", json=FLAG, headers=h)
    assert r.status_code == 201
    flag = r.get_json()
    assert flag["version"] == 1 and r.headers["ETag"] == '"1"'
    assert r.headers["Location"] == f"/api/flags/{flag['id']}"
    assert flag["created_at"].endswith("Z") and "T" in flag["created_at"]
    assert flag["conditions"][0]["rollout_percentage"] == 30
    assert flag["payloads"]["test"] == {"color": "green"}
    assert flag["deleted"] is False
    by_key = client.get("/api/flags/new-billing", headers=h)
    by_id = client.get(f"/api/flags/{flag['id']}", headers=h)
    assert by_key.get_json() == by_id.get_json() == flag
    assert by_id.headers["ETag"] == '"1"'
    listed = client.get("/api/flags", headers=h).get_json()["flags"]
    assert [f["key"] for f in listed] == ["new-billing"]


def test_defaults_of_a_minimal_flag(client, h):
    r = client.post("/api/flags", json={"key": "minimal"}, headers=h)
    assert r.status_code == 201
    flag = r.get_json()
    assert flag["active"] is True and flag["bucket_by"] == "$person"
    assert flag["variants"] == [] and flag["payloads"] == {}
    assert len(flag["conditions"]) == 1 and flag["conditions"][0]["properties"] == []


def test_creating_a_flag_creates_its_group_types_only_when_asked(client, h):
    """A flag naming a group type the project lacks is a 422 naming the field (a typo in
    bucket_by would take one of 5 slots for good), unless `create_group_types` is sent; the
    project's default group type counts as declared."""
    cond = [{"properties": [{"type": "group", "group_type": "account", "key": "plan",
                             "value": "pro"}]}]
    r = client.post("/api/flags", json={**FLAG, "conditions": cond}, headers=h)
    assert r.status_code == 422
    assert "conditions[0].properties[0].group_type" in r.get_json()["errors"]
    typo = client.post("/api/flags", json={**FLAG, "key": "t", "bucket_by": "acount"}, headers=h)
    assert typo.status_code == 422 and "acount" in typo.get_json()["errors"]["bucket_by"][0]
    assert client.get("/api/group_types", headers=h).get_json()["group_types"] == []
    create(client, h, conditions=cond, create_group_types=True)
    names = [t["name"] for t in client.get("/api/group_types", headers=h).get_json()["group_types"]]
    assert names == ["organization", "account"]
    assert "create_group_types" not in client.get("/api/flags/new-billing", headers=h).get_json()


def _group_types(client, h):
    return sorted(t["name"] for t in client.get("/api/group_types", headers=h).get_json()[
        "group_types"])


def test_a_refused_write_leaves_no_group_type_behind(client, h):
    """The group types a flag needs are created in the write's own transaction: a 409 (a
    stale version, a key that exists) creates none."""
    created = create(client, h, create_group_types=True)
    types = _group_types(client, h)
    stale = client.patch(f"/api/flags/{created['id']}", headers={**h, "If-Match": '"7"'},
                         json={"bucket_by": "workspace", "create_group_types": True})
    assert stale.status_code == 409, stale.get_json()
    dup = client.post("/api/flags", headers=h,
                      json={**FLAG, "bucket_by": "team", "create_group_types": True})
    assert dup.status_code == 409, dup.get_json()
    assert _group_types(client, h) == types
    ok = client.patch(f"/api/flags/{created['id']}", headers={**h, "If-Match": '"1"'},
                      json={"bucket_by": "workspace", "create_group_types": True})
    assert ok.status_code == 200, ok.get_json()
    assert _group_types(client, h) == sorted([*types, "workspace"])


def test_duplicate_key_is_409(client, h):
    create(client, h)
    r = client.post("/api/flags", json=FLAG, headers=h)
    assert r.status_code == 409
    assert r.get_json()["code"] == "conflict" and "key" in r.get_json()["errors"]


def test_unknown_flag_is_a_json_404(client, h):
    r = client.get("/api/flags/nope", headers=h)
    assert r.status_code == 404 and r.get_json()["code"] == "not_found"
    assert client.get("/api/flags/999", headers=h).status_code == 404


@pytest.mark.parametrize("body,field", [
    ({"name": "no key"}, "key"),
    ({"key": ""}, "key"),
    ({"key": "has space"}, "key"),
    ({"key": "x" * 201}, "key"),
    ({"key": "12345"}, "key"),
    ({"key": "definitions"}, "key"),
    ({"key": "k", "active": "maybe"}, "active"),
    ({"key": "k", "bucket_by": "$nope"}, "bucket_by"),
    ({"key": "k", "conditions": "all"}, "conditions"),
    ({"key": "k", "conditions": [{"rollout_percentage": 101}]}, "conditions[0].rollout_percentage"),
    ({"key": "k", "conditions": [{"rollout_percentage": -1}]}, "conditions[0].rollout_percentage"),
    ({"key": "k", "conditions": [{"rollout_percentage": "30"}]},
     "conditions[0].rollout_percentage"),
    ({"key": "k", "conditions": [{"properties": [{"key": "x", "operator": "resembles"}]}]},
     "conditions[0].properties[0].operator"),
    ({"key": "k", "conditions": [{"properties": [{"operator": "exact"}]}]},
     "conditions[0].properties[0].key"),
    ({"key": "k", "conditions": [{"properties": [{"type": "group", "key": "plan"}]}]},
     "conditions[0].properties[0].group_type"),
    ({"key": "k", "conditions": [{"properties": [{"type": "cohort", "key": "x"}]}]},
     "conditions[0].properties[0].type"),
    ({"key": "k", "variants": [{"key": "a", "weight": -5}]}, "variants[0].weight"),
    ({"key": "k", "variants": [{"key": "a"}]}, "variants[0].weight"),
    ({"key": "k", "unexpected": 1}, "unexpected"),
])
def test_shape_errors_are_422_with_field_errors(client, h, body, field):
    r = client.post("/api/flags", json=body, headers=h)
    assert r.status_code == 422, r.get_json()
    err = r.get_json()
    assert err["code"] == "validation_error" and err["message"]
    assert field in err["errors"], err["errors"]
    assert all(isinstance(m, list) and m for m in err["errors"].values())


def _filter(operator, value, **kw):
    return {"key": "k", "conditions": [{"properties": [
        {"key": "p", "operator": operator, "value": value, **kw}]}]}


@pytest.mark.parametrize("body,field,needle", [
    (_filter("regex", r"(a)\1"), "conditions[0].properties[0]", "regex"),
    (_filter("regex", "(?<=a)b"), "conditions[0].properties[0]", "regex"),
    (_filter("regex", "[unclosed"), "conditions[0].properties[0]", "regex"),
    (_filter("date_before", "not a date"), "conditions[0].properties[0]", ""),
    (_filter("semver_gt", "one.two"), "conditions[0].properties[0]", ""),
    (_filter("in_cidr", "10.0.0.0/33"), "conditions[0].properties[0]", ""),
    ({"key": "k", "variants": [{"key": "a", "weight": 1}],
      "conditions": [{"variant": "b"}]}, "conditions[0].variant", "variant"),
    ({"key": "k", "variants": [{"key": "a", "weight": 1}, {"key": "a", "weight": 1}]},
     "variants[1]", "duplicate"),
    ({"key": "k", "variants": [{"key": "a", "weight": 1}], "payloads": {"b": 1}},
     "payloads.b", "b"),
    ({"key": "k", "conditions": [{"properties": [{"type": "flag", "key": "ghost"}]}]},
     "conditions[0].properties[0].key", "ghost"),
])
def test_engine_problems_are_422_with_field_errors(client, h, body, field, needle):
    r = client.post("/api/flags", json=body, headers=h)
    assert r.status_code == 422, r.get_json()
    errors = r.get_json()["errors"]
    assert field in errors, errors
    assert needle in " ".join(errors[field])
    assert client.get("/api/flags/k", headers=h).status_code == 404


def test_catastrophic_regex_is_accepted_because_re2_is_linear(client, h):
    r = client.post("/api/flags", json=_filter("regex", "(a+)+$"), headers=h)
    assert r.status_code == 201


def test_dependency_cycle_across_flags_is_422(client, h):
    create(client, h, key="a", bucket_by="$person", conditions=[{}], variants=[], payloads={})
    b = create(client, h, key="b", bucket_by="$person", variants=[], payloads={},
               conditions=[{"properties": [{"type": "flag", "key": "a", "value": True}]}])
    assert b["version"] == 1
    r = client.patch("/api/flags/a", json={"version": 1, "conditions": [
        {"properties": [{"type": "flag", "key": "b", "value": True}]}]}, headers=h)
    assert r.status_code == 422
    assert "cycle" in " ".join(r.get_json()["errors"]["conditions"])
    r = client.patch("/api/flags/a", json={"version": 1, "conditions": [
        {"properties": [{"type": "flag", "key": "a"}]}]}, headers=h)
    assert r.status_code == 422


def test_a_sixth_group_type_is_refused_with_a_clear_message(client, h):
    for name in ("organization", "account", "workspace", "project", "instance"):
        assert client.post("/api/group_types", json={"name": name}, headers=h).status_code == 201
    r = client.post("/api/flags", json={**FLAG, "bucket_by": "team"}, headers=h)
    assert r.status_code == 422
    msg = " ".join(r.get_json()["errors"]["bucket_by"])
    assert "team" in msg and str(MAX_GROUP_TYPES) in msg
    r = client.post("/api/flags", json={"key": "k", "conditions": [{"properties": [
        {"type": "group", "group_type": "division", "key": "x", "value": 1}]}]}, headers=h)
    assert r.status_code == 422
    assert "conditions[0].properties[0].group_type" in r.get_json()["errors"]
    assert len(client.get("/api/group_types", headers=h).get_json()["group_types"]) == 5
    assert client.get("/api/flags", headers=h).get_json()["flags"] == []


@pytest.mark.parametrize("data,content_type", [
    (b"{not json", "application/json"), (b"[1, 2]", "application/json"), (b"", "application/json"),
    (b'{"key": NaN}', "application/json"), (b"\xff\xfe", "application/json"),
])
def test_malformed_bodies_are_400(client, h, data, content_type):
    r = client.post("/api/flags", data=data, headers={**h, "Content-Type": content_type})
    assert r.status_code == 400
    assert r.get_json()["code"] == "invalid_json"


# ---------------------------------------------------------------- updates and versions


def test_patch_with_version_in_body_changes_only_named_fields(client, h):
    flag = create(client, h)
    r = client.patch(f"/api/flags/{flag['id']}", json={"version": 1, "active": False}, headers=h)
    assert r.status_code == 200 and r.headers["ETag"] == '"2"'
    after = r.get_json()
    assert after["active"] is False and after["version"] == 2
    assert after["conditions"] == flag["conditions"] and after["name"] == flag["name"]


@pytest.mark.parametrize("if_match", ['"1"', "1", 'W/"1"'])
def test_if_match_header_quoted_or_not(client, h, if_match):
    create(client, h)
    r = client.patch("/api/flags/new-billing", json={"name": "renamed"},
                     headers={**h, "If-Match": if_match})
    assert r.status_code == 200 and r.get_json()["name"] == "renamed"


def test_put_replaces_rules_and_accepts_a_flag_read_by_get(client, h):
    flag = create(client, h)
    got = client.get(f"/api/flags/{flag['id']}", headers=h).get_json()
    got["conditions"] = [{"rollout_percentage": 5}]
    r = client.put(f"/api/flags/{flag['id']}", json=got, headers=h)
    assert r.status_code == 200, r.get_json()
    assert r.get_json()["conditions"][0]["rollout_percentage"] == 5
    r = client.put(f"/api/flags/{flag['id']}", json={"version": 2}, headers=h)
    replaced = r.get_json()
    assert r.status_code == 200
    assert replaced["variants"] == [] and replaced["bucket_by"] == "$person"
    assert replaced["name"] == ""


def test_stale_version_is_409_with_the_current_version(client, h):
    flag = create(client, h)
    assert client.patch(f"/api/flags/{flag['id']}", json={"version": 1, "name": "a"},
                        headers=h).status_code == 200
    r = client.patch(f"/api/flags/{flag['id']}", json={"version": 1, "name": "b"}, headers=h)
    assert r.status_code == 409
    assert r.get_json()["current_version"] == 2 and "version" in r.get_json()["errors"]
    r = client.put(f"/api/flags/{flag['id']}", json={**FLAG}, headers={**h, "If-Match": '"1"'})
    assert r.status_code == 409
    assert client.get(f"/api/flags/{flag['id']}", headers=h).get_json()["name"] == "a"


def test_missing_version_is_428(client, h):
    flag = create(client, h)
    for method in ("patch", "put"):
        r = getattr(client, method)(f"/api/flags/{flag['id']}", json={"name": "x"}, headers=h)
        assert r.status_code == 428
        assert r.get_json()["code"] == "precondition_required"


def test_bad_if_match_and_key_change_are_refused(client, h):
    flag = create(client, h)
    r = client.patch(f"/api/flags/{flag['id']}", json={"name": "x"}, headers={**h, "If-Match": "*"})
    assert r.status_code == 400
    r = client.patch(f"/api/flags/{flag['id']}", json={"version": 1, "key": "other"}, headers=h)
    assert r.status_code == 422 and "key" in r.get_json()["errors"]
    r = client.patch(f"/api/flags/{flag['id']}", json={"version": 2, "name": "x"},
                     headers={**h, "If-Match": "1"})
    assert r.status_code == 400


def test_update_validates_the_merged_flag(client, h):
    flag = create(client, h)
    r = client.patch(f"/api/flags/{flag['id']}", json={"version": 1, "variants": []}, headers=h)
    assert r.status_code == 422  # payloads name variants that would no longer exist
    assert "payloads.test" in r.get_json()["errors"]


def test_concurrent_updates_from_one_version_exactly_one_wins(live_server):
    base, h = live_server.url, auth(live_server.project)
    created = requests.post(f"{base}/api/flags", json=FLAG, headers=h, timeout=10)
    assert created.status_code == 201
    fid = created.json()["id"]
    barrier = threading.Barrier(8)
    statuses: list[int] = []
    lock = threading.Lock()

    def write(i: int) -> None:
        barrier.wait()
        r = requests.patch(f"{base}/api/flags/{fid}", json={"name": f"writer {i}"},
                           headers={**h, "If-Match": '"1"'}, timeout=30)
        with lock:
            statuses.append(r.status_code)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(statuses) == [200] + [409] * 7
    entries = requests.get(f"{base}/api/audit?flag_id={fid}", headers=h,
                           timeout=10).json()["entries"]
    assert [e["action"] for e in entries] == ["updated", "created"]
    final = requests.get(f"{base}/api/flags/{fid}", headers=h, timeout=10).json()
    assert final["version"] == 2 and final["name"] == entries[0]["after"]["name"]


# ---------------------------------------------------------------- delete / restore / audit


def test_soft_delete_and_restore(client, h):
    flag = create(client, h)
    r = client.delete(f"/api/flags/{flag['id']}", headers=h)
    assert r.status_code == 200 and r.get_json()["deleted"] is True and r.headers["ETag"] == '"2"'
    assert client.get("/api/flags", headers=h).get_json()["flags"] == []
    listed = client.get("/api/flags?include_deleted=true", headers=h).get_json()["flags"]
    assert [f["key"] for f in listed] == ["new-billing"] and listed[0]["deleted"] is True
    assert client.get("/api/flags/new-billing", headers=h).get_json()["deleted"] is True
    r = client.patch(f"/api/flags/{flag['id']}", json={"version": 2, "name": "x"}, headers=h)
    assert r.status_code == 409  # a deleted flag is restored before it is changed
    assert client.post("/api/flags", json=FLAG, headers=h).status_code == 409
    defs = client.get("/api/flags/definitions", headers=h).get_json()
    assert defs["flags"] == []
    r = client.post(f"/api/flags/{flag['id']}/restore", headers=h)
    assert r.status_code == 200
    assert r.get_json()["deleted"] is False and r.get_json()["version"] == 3
    listed = client.get("/api/flags", headers=h).get_json()["flags"]
    assert [f["key"] for f in listed] == ["new-billing"]


def test_delete_with_a_stale_if_match_is_409(client, h):
    flag = create(client, h)
    r = client.delete(f"/api/flags/{flag['id']}", headers={**h, "If-Match": '"7"'})
    assert r.status_code == 409 and r.get_json()["current_version"] == 1


def test_writes_are_seen_by_decide_at_once(client, app_project, h):
    create(client, h, key="everyone", bucket_by="$person", conditions=[{}], variants=[],
           payloads={})

    def decide():
        return client.post("/flags/?v=2", json={"api_key": app_project["api_token"],
                                                "distinct_id": "u1"}).get_json()["flags"]

    assert decide()["everyone"]["enabled"] is True
    client.patch("/api/flags/everyone", json={"active": False}, headers={**h, "If-Match": "1"})
    assert decide()["everyone"]["enabled"] is False
    client.delete("/api/flags/everyone", headers=h)
    assert "everyone" not in decide()


def test_audit_log_has_every_change_with_before_and_after(client, h):
    flag = create(client, h)
    client.patch(f"/api/flags/{flag['id']}", json={"version": 1, "active": False}, headers=h)
    client.delete(f"/api/flags/{flag['id']}", headers=h)
    client.post(f"/api/flags/{flag['id']}/restore", headers=h)
    create(client, h, key="other")
    page = client.get(f"/api/audit?flag_id={flag['id']}", headers=h).get_json()
    entries = page["entries"]
    assert [e["action"] for e in entries] == ["restored", "deleted", "updated", "created"]
    update = entries[2]
    assert update["before"]["active"] is True and update["after"]["active"] is False
    assert update["before"]["version"] == 1 and update["after"]["version"] == 2
    assert entries[3]["before"] is None and entries[3]["after"]["key"] == "new-billing"
    assert update["created_at"].endswith("Z")
    assert len(client.get("/api/audit?flag_id=new-billing", headers=h).get_json()["entries"]) == 4
    every = client.get("/api/audit", headers=h).get_json()["entries"]
    # the 5 flag changes, and the group type the first flag's create_group_types made
    assert [e["action"] for e in every if e["flag_id"] is None] == ["group_type_created"]
    assert len(every) == 6


def test_audit_pagination(client, h):
    flag = create(client, h)
    for v in range(1, 6):
        client.patch(f"/api/flags/{flag['id']}", json={"version": v, "name": str(v)}, headers=h)
    first = client.get("/api/audit?limit=4", headers=h).get_json()
    assert len(first["entries"]) == 4 and first["next_before_id"] == first["entries"][-1]["id"]
    second = client.get(f"/api/audit?limit=4&before_id={first['next_before_id']}",
                        headers=h).get_json()
    # 6 flag changes and the group type the flag's create_group_types made
    assert len(second["entries"]) == 3 and second["next_before_id"] is None
    ids = [e["id"] for e in first["entries"] + second["entries"]]
    assert ids == sorted(ids, reverse=True) and len(set(ids)) == 7
    assert client.get("/api/audit?limit=0", headers=h).status_code == 422
    assert client.get("/api/audit?limit=lots", headers=h).status_code == 422
    assert client.get("/api/audit?flag_id=ghost", headers=h).status_code == 404


# ---------------------------------------------------------------- robustness

_json = st.recursive(
    st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats(allow_nan=False,
                                                                       allow_infinity=False)
    | st.text(max_size=12),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8),
                                                                      children, max_size=4),
    max_leaves=20)
_field_names = st.sampled_from(["name", "description", "active", "bucket_by", "hash_namespace",
                                "conditions", "variants", "payloads", "version"])
_condition = st.fixed_dictionaries({}, optional={
    "properties": st.lists(st.fixed_dictionaries({}, optional={
        "type": st.sampled_from(["person", "group", "flag", "x"]) | _json,
        "group_type": st.sampled_from(["organization", "account"]) | _json,
        "key": st.sampled_from(["plan", "a", ""]) | _json,
        "operator": st.sampled_from(["exact", "regex", "semver_gt", "in_cidr", "date_before",
                                     "gt", "is_set", "nope"]) | _json,
        "value": _json, "negate": _json}), max_size=3),
    "rollout_percentage": _json, "variant": _json, "bucket_by": _json})


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(extra=st.dictionaries(_field_names, _json, max_size=4),
       conditions=st.none() | st.lists(_condition, max_size=3))
def test_any_flag_body_is_answered_without_a_server_error(client, h, extra, conditions):
    key = f"fuzz-{uuid.uuid4().hex[:12]}"
    body = {"key": key, **extra}
    if conditions is not None:
        body["conditions"] = conditions
    r = client.post("/api/flags", json=body, headers=h)
    assert r.status_code in (201, 409, 422), (r.status_code, r.get_json())
    if r.status_code == 201:
        assert client.get(f"/api/flags/{key}", headers=h).status_code == 200
        assert client.post(f"/api/flags/{key}/explain", json={"distinct_id": "u"},
                           headers=h).status_code == 200
        assert client.delete(f"/api/flags/{key}", headers=h).status_code == 200
    r = client.post("/api/flags/explain", json={"flag": body, "groups": extra}, headers=h)
    assert r.status_code in (200, 422), (r.status_code, r.get_json())
