"""Admin API: preview (blast radius), the groups a flag is on for, and explain."""

from __future__ import annotations

import time

import pytest

from flagsvc.engine import Context, compile_flags, evaluate
from flagsvc.ingest.model import Call

pytestmark = pytest.mark.backends


@pytest.fixture
def store(app):
    return app.extensions["flagsvc"].store


def group_call(i, group_type, key, props=None, parent=None):
    return Call(kind="group", message_id=f"{group_type}-{key}-{i}", timestamp=time.time(),
                group_type=group_type, group_key=key, group_set=props or {},
                parent_key=parent[1] if parent else None, parent_type=parent[0] if parent else None)


@pytest.fixture
def thousand_orgs(store, app_project):
    calls = [group_call(i, "organization", f"org-{i:04d}",
                        {"plan": "enterprise" if i % 2 else "free", "seats": i})
             for i in range(1000)]
    store.ingest(app_project["id"], calls)
    return calls


ROLLOUT = {"key": "rollout-30", "bucket_by": "organization",
           "conditions": [{"rollout_percentage": 30}]}


def engine_enabled(definition, keys, group_type="organization"):
    flags = compile_flags([definition])
    return [k for k in keys
            if evaluate(flags, definition["key"], Context(groups={group_type: k})).enabled]


def test_preview_of_a_draft_counts_like_the_engine(client, h, thousand_orgs):
    r = client.post("/api/flags/preview", json=ROLLOUT, headers=h)
    assert r.status_code == 200, r.get_json()
    out = r.get_json()
    keys = [c.group_key for c in thousand_orgs]
    expected = engine_enabled(ROLLOUT, keys)
    assert out["total"] == 1000 and out["bucket_by"] == "organization"
    assert out["enabled"] == out["counts"]["true"] == len(expected)
    assert 250 <= out["enabled"] <= 350
    assert out["counts"]["false"] == 1000 - len(expected)
    assert out["sample"]["true"] == sorted(expected)[:10]
    assert out["reasons"]["out_of_rollout_bound"] == 1000 - len(expected)
    assert client.get("/api/flags", headers=h).get_json()["flags"] == []  # nothing saved


def test_preview_of_a_saved_flag_with_variants_and_a_group_filter(client, h, thousand_orgs):
    flag = {"key": "ab", "bucket_by": "organization",
            "conditions": [{"properties": [{"type": "group", "group_type": "organization",
                                            "key": "plan", "value": "enterprise"}]}],
            "variants": [{"key": "control", "weight": 50}, {"key": "test", "weight": 50}]}
    created = client.post("/api/flags", json=flag, headers=h).get_json()
    out = client.get(f"/api/flags/{created['id']}/preview", headers=h).get_json()
    assert out["total"] == 1000 and out["enabled"] == 500 and out["counts"]["false"] == 500
    assert out["counts"]["control"] + out["counts"]["test"] == 500
    assert 200 <= out["counts"]["control"] <= 300
    flags = compile_flags([flag])
    for variant, keys in out["sample"].items():
        assert len(keys) == 10
        for k in keys:
            ctx = Context(groups={"organization": k}, group_properties={
                "organization": {"plan": "enterprise"}})
            assert evaluate(flags, "ab", ctx).variant == variant


def test_preview_through_the_hierarchy(client, h, store, app_project):
    """A flag bucketed by workspace, targeting the parent account's plan."""
    store.ingest(app_project["id"], [
        group_call(0, "account", "a-pro", {"plan": "pro"}),
        group_call(0, "account", "a-free", {"plan": "free"}),
        *[group_call(0, "workspace", f"w{i}", parent=("account", "a-pro" if i < 3 else "a-free"))
          for i in range(5)],
    ])
    flag = {"key": "ws", "bucket_by": "workspace", "conditions": [{"properties": [
        {"type": "group", "group_type": "account", "key": "plan", "value": "pro"}]}]}
    out = client.post("/api/flags/preview", json=flag, headers=h).get_json()
    assert out["total"] == 5 and out["enabled"] == 3 and out["sample"]["true"] == ["w0", "w1", "w2"]


def person_call(i, distinct_id, props=None, groups=None):
    return Call(kind="track" if groups else "identify", message_id=f"p-{distinct_id}-{i}",
                timestamp=time.time() + i, distinct_id=distinct_id, event="seen",
                person_set=props or {}, groups=groups or {})


@pytest.fixture
def persons(store, app_project):
    """200 persons, every third in the beta cohort."""
    ids = [f"user-{i:03d}" for i in range(200)]
    store.ingest(app_project["id"], [
        person_call(0, d, {"cohort": "beta" if i % 3 == 0 else "none"}) for i, d in enumerate(ids)])
    return ids


PERSON_FLAG = {"key": "beta-search", "bucket_by": "$person", "conditions": [
    {"properties": [{"type": "person", "key": "cohort", "value": "beta"}],
     "rollout_percentage": 40}]}


def test_preview_of_a_person_bucketed_flag_counts_persons_like_the_engine(client, h, persons):
    r = client.post("/api/flags/preview", json=PERSON_FLAG, headers=h)
    assert r.status_code == 200, r.get_json()
    out = r.get_json()
    beta = [d for i, d in enumerate(persons) if i % 3 == 0]
    flags = compile_flags([PERSON_FLAG])
    expected = [d for d in beta if evaluate(flags, "beta-search", Context(
        distinct_id=d, person_properties={"cohort": "beta"})).enabled]
    assert 0 < len(expected) < len(beta)
    assert out["bucket_by"] == "$person" and out["total"] == 200 and out["complete"] is True
    assert out["enabled"] == out["counts"]["true"] == len(expected)
    assert out["sample"]["true"] == expected[:10]  # in the order persons were stored
    assert out["reasons"]["out_of_rollout_bound"] == len(beta) - len(expected)
    assert out["reasons"]["no_condition_match"] == 200 - len(beta)
    wider = client.post("/api/flags/preview", headers=h, json={
        **PERSON_FLAG, "conditions": [{**PERSON_FLAG["conditions"][0], "rollout_percentage": 100}]})
    assert wider.get_json()["enabled"] == len(beta)  # follows the rollout
    created = client.post("/api/flags", json={**PERSON_FLAG, "variants": [
        {"key": "a", "weight": 50}, {"key": "b", "weight": 50}]}, headers=h).get_json()
    saved = client.get(f"/api/flags/{created['id']}/preview", headers=h).get_json()
    assert saved["counts"]["a"] + saved["counts"]["b"] == len(expected)
    for variant, ids in saved["sample"].items():
        for d in ids:
            assert evaluate(compile_flags([created]), "beta-search", Context(
                distinct_id=d, person_properties={"cohort": "beta"})).variant == variant


def test_a_person_scan_past_its_time_budget_says_so(app, client, h, persons, monkeypatch):
    from flagsvc.api import preview

    monkeypatch.setitem(app.config["FLAGSVC"], "PREVIEW_SECONDS", 0.0)
    monkeypatch.setattr(preview.Scan, "CHECK_EVERY", 50)
    out = client.post("/api/flags/preview", json=PERSON_FLAG, headers=h).get_json()
    assert out["complete"] is False and out["total"] == 50
    flags = compile_flags([PERSON_FLAG])
    first = [d for i, d in enumerate(persons[:50]) if i % 3 == 0 and evaluate(
        flags, "beta-search", Context(distinct_id=d, person_properties={"cohort": "beta"})).enabled]
    assert out["enabled"] == len(first)  # the first 50 stored


def test_a_person_preview_uses_the_groups_each_person_was_last_seen_with(
        client, h, store, app_project):
    store.ingest(app_project["id"], [
        group_call(0, "account", "a-pro", {"plan": "pro"}),
        group_call(0, "account", "a-free", {"plan": "free"}),
        person_call(1, "ann", groups={"account": "a-free"}),
        person_call(2, "ann", groups={"account": "a-pro"}),  # ann's last account: pro
        person_call(3, "bob", groups={"account": "a-free"}),
        person_call(4, "cid", {"x": 1}),  # never seen with an account
    ])
    flag = {"key": "pro-users", "bucket_by": "$person", "conditions": [{"properties": [
        {"type": "group", "group_type": "account", "key": "plan", "value": "pro"}]}]}
    out = client.post("/api/flags/preview", json=flag, headers=h).get_json()
    assert out["total"] == 3 and out["enabled"] == 1 and out["sample"]["true"] == ["ann"]


def test_preview_refuses_invalid_drafts_and_listing_groups_of_a_person_flag(client, h):
    r = client.post("/api/flags/preview", json={"key": "p", "bucket_by": "$person"}, headers=h)
    assert r.status_code == 200 and r.get_json()["total"] == 0  # no person stored yet
    r = client.post("/api/flags/preview", json={"key": "p", "bucket_by": "organization",
                                                "conditions": [{"rollout_percentage": 300}]},
                    headers=h)
    assert r.status_code == 422
    assert client.get("/api/flags/ghost/preview", headers=h).status_code == 404
    client.post("/api/flags", json={"key": "by-person"}, headers=h)
    r = client.get("/api/flags/by-person/groups", headers=h)
    assert r.status_code == 422 and "bucket_by" in r.get_json()["errors"]


def test_groups_a_flag_is_on_for_paginated(client, h, thousand_orgs):
    client.post("/api/flags", json=ROLLOUT, headers=h)
    expected = sorted(engine_enabled(ROLLOUT, [c.group_key for c in thousand_orgs]))
    seen = []
    offset = 0
    while True:
        page = client.get(f"/api/flags/rollout-30/groups?enabled=true&limit=100&offset={offset}",
                          headers=h).get_json()
        assert page["total"] == len(expected)
        if not page["groups"]:
            break
        assert all(g["enabled"] and g["value"] is True for g in page["groups"])
        seen += [g["group_key"] for g in page["groups"]]
        offset += 100
    assert seen == expected
    off = client.get("/api/flags/rollout-30/groups?enabled=false&limit=5", headers=h).get_json()
    assert off["total"] == 1000 - len(expected) and len(off["groups"]) == 5
    assert all(g["reason"] == "out_of_rollout_bound" for g in off["groups"])
    everything = client.get("/api/flags/rollout-30/groups?limit=1000", headers=h).get_json()
    assert everything["total"] == 1000
    assert client.get("/api/flags/rollout-30/groups?limit=5000", headers=h).status_code == 422


def test_a_scan_past_its_time_budget_says_so(app, client, h, thousand_orgs, monkeypatch):
    """PREVIEW_SECONDS bounds a scan (a request outliving the worker timeout is killed with
    nothing said): past it, preview and the flag's groups answer with the groups scanned so
    far, in key order, and complete: false."""
    from flagsvc.api import preview

    client.post("/api/flags", json=ROLLOUT, headers=h)
    keys = sorted(c.group_key for c in thousand_orgs)
    full = client.get("/api/flags/rollout-30/preview", headers=h).get_json()
    assert full["complete"] is True and full["total"] == 1000
    listed = client.get("/api/flags/rollout-30/groups?limit=10", headers=h).get_json()
    assert listed["complete"] is True and listed["total"] == 1000

    monkeypatch.setitem(app.config["FLAGSVC"], "PREVIEW_SECONDS", 0.0)
    monkeypatch.setattr(preview.Scan, "CHECK_EVERY", 100)
    for r in (client.get("/api/flags/rollout-30/preview", headers=h),
              client.post("/api/flags/preview", json=ROLLOUT, headers=h)):
        out = r.get_json()
        assert r.status_code == 200 and out["complete"] is False, out
        assert out["total"] == 100
        assert out["enabled"] == len(engine_enabled(ROLLOUT, keys[:100]))
    page = client.get("/api/flags/rollout-30/groups?limit=500", headers=h).get_json()
    assert page["complete"] is False and page["total"] == 100
    assert [g["group_key"] for g in page["groups"]] == keys[:100]


# ---------------------------------------------------------------- explain


@pytest.fixture
def hierarchy(store, app_project):
    """account a1 (enterprise) > workspace w1 > project p1."""
    store.ingest(app_project["id"], [
        group_call(0, "account", "a1", {"plan": "enterprise"}),
        group_call(0, "workspace", "w1", parent=("account", "a1")),
        group_call(0, "project", "p1", parent=("workspace", "w1")),
    ])


BILLING = {"key": "new-billing", "bucket_by": "account",
           "conditions": [{"properties": [{"type": "group", "group_type": "account", "key": "plan",
                                           "operator": "exact", "value": ["enterprise", "pro"]}]}],
           "variants": [{"key": "control", "weight": 50}, {"key": "test", "weight": 50}],
           "payloads": {"control": {"color": "blue"}, "test": {"color": "green"}}}


def test_explain_infers_the_account_of_a_project_only_request(client, h, hierarchy):
    assert client.post("/api/flags", json=BILLING, headers=h).status_code == 201
    r = client.post("/api/flags/new-billing/explain", json={"groups": {"project": "p1"}}, headers=h)
    assert r.status_code == 200, r.get_json()
    out = r.get_json()
    assert out["enabled"] is True and out["reason"] == "condition_match"
    assert out["group_key"] == "a1" and out["bucket_by"] == "account"
    assert out["inferred_from"] == [["project", "p1"], ["workspace", "w1"], ["account", "a1"]]
    assert 1 <= out["bucket"] <= 100
    assert out["value"] == out["variant"] in ("control", "test")
    assert out["payload"] == BILLING["payloads"][out["variant"]]
    deciding = out["conditions"][0]["properties"][0]
    assert deciding["actual"] == "enterprise" and deciding["matched"] is True


def test_explain_reports_what_failed(client, h, hierarchy):
    created = client.post("/api/flags", json=BILLING, headers=h).get_json()
    out = client.post(f"/api/flags/{created['id']}/explain", headers=h, json={
        "groups": {"project": "p1"}, "group_properties": {"account": {"plan": "free"}}}).get_json()
    assert out["enabled"] is False and out["reason"] == "no_condition_match"
    assert out["conditions"][0]["properties"][0]["actual"] == "free"
    out = client.post("/api/flags/new-billing/explain", json={"distinct_id": "u1"},
                      headers=h).get_json()
    assert out["reason"] == "no_group_type" and out["group_key"] is None


def test_explain_a_draft(client, h, hierarchy):
    draft = {**BILLING, "key": "draft", "conditions": [{"rollout_percentage": 0}]}
    out = client.post("/api/flags/explain", json={"flag": draft, "groups": {"project": "p1"}},
                      headers=h).get_json()
    assert out["key"] == "draft" and out["reason"] == "out_of_rollout_bound"
    assert out["group_key"] == "a1"
    client.post("/api/flags", json=BILLING, headers=h)
    out = client.post("/api/flags/new-billing/explain", headers=h, json={
        "flag": {**BILLING, "active": False}, "groups": {"account": "a1"}}).get_json()
    assert out["reason"] == "flag_disabled"
    assert client.get("/api/flags/new-billing", headers=h).get_json()["active"] is True


@pytest.mark.parametrize("body,status", [
    ({"groups": {"project": "p1"}}, 422),  # /api/flags/explain needs a draft
    ({"flag": {"key": "x", "conditions": [{"rollout_percentage": 101}]}}, 422),
    ({"flag": {"key": "x"}, "groups": "p1"}, 422),
    ({"flag": {"key": "x"}, "person_properties": [1]}, 422),
])
def test_explain_bad_input_is_4xx(client, h, body, status):
    assert client.post("/api/flags/explain", json=body, headers=h).status_code == status


def test_explain_unknown_flag_is_404(client, h):
    assert client.post("/api/flags/ghost/explain", json={}, headers=h).status_code == 404
