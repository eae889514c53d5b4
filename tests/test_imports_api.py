"""`POST /api/flags/import`: all or nothing, the admin API's checks, and flags moved from
Unleash answering the stock PostHog client through a real server as Unleash's own engine
answers the same organizations."""

from __future__ import annotations

import json

import pytest
import requests
import yggdrasil_engine.engine
from conftest import auth
from posthog import Posthog

pytestmark = pytest.mark.backends

ORG = "organization"

REFERENCE = {"version": 2, "features": [{
    "name": "billing", "enabled": True, "strategies": [{
        "name": "flexibleRollout",
        "parameters": {"rollout": "30", "stickiness": ORG, "groupId": "billing"},
        "constraints": [{"contextName": "plan", "operator": "IN",
                         "values": ["enterprise", "pro"]}],
        "variants": [
            {"name": "control", "weight": 500, "stickiness": ORG,
             "payload": {"type": "json", "value": "{\"color\": \"blue\"}"}},
            {"name": "test", "weight": 500, "stickiness": ORG,
             "payload": {"type": "json", "value": "{\"color\": \"green\"}"}}]}]}]}


def _import(client, h, **body):
    return client.post("/api/flags/import", json=body, headers=h)


def test_dry_run_writes_nothing_then_import_creates(client, h, app_project, app):
    r = _import(client, h, format="unleash", data=REFERENCE, dry_run=True)
    assert r.status_code == 200, r.json
    assert r.json["dry_run"] is True and r.json["created"] == ["billing"]
    assert r.json["group_types"] == [ORG]
    assert r.json["context_fields"]["billing"]["plan"] == f"group:{ORG}"
    assert r.json["flags"][0]["payloads"]["test"] == {"color": "green"}
    assert client.get("/api/flags", headers=h).json["flags"] == []
    r = _import(client, h, format="unleash", data=REFERENCE)
    assert r.status_code == 200 and r.json["created"] == ["billing"]
    [flag] = client.get("/api/flags", headers=h).json["flags"]
    assert flag["key"] == "billing" and flag["bucket_by"] == ORG
    audit = client.get("/api/audit", headers=h).json["entries"]
    # the flag, and the group type the import created for it (every change is audited)
    assert sorted(e["action"] for e in audit) == ["created", "group_type_created"]
    r = _import(client, h, format="unleash", data=REFERENCE)  # again: nothing to write
    assert r.json["unchanged"] == ["billing"] and r.json["updated"] == []
    changed = json.loads(json.dumps(REFERENCE))
    changed["features"][0]["strategies"][0]["parameters"]["rollout"] = "40"
    r = _import(client, h, format="unleash", data=changed, dry_run=True)
    assert r.json["updated"] == ["billing"]
    assert client.get("/api/flags/billing", headers=h).json["version"] == 1
    r = _import(client, h, format="unleash", data=changed)
    assert r.json["updated"] == ["billing"]
    assert client.get("/api/flags/billing", headers=h).json["conditions"][0][
        "rollout_percentage"] == 40
    audit = client.get("/api/audit", headers=h).json["entries"]
    assert [e["action"] for e in audit if e["flag_id"] is not None] == ["updated", "created"]


def test_unimportable_flags_make_it_a_422_unless_skipped(client, h):
    data = {"features": [REFERENCE["features"][0],
                         {"name": "sess", "strategies": [{"name": "gradualRolloutSessionId",
                                                          "parameters": {"percentage": "5"}}]}]}
    r = _import(client, h, format="unleash", data=data)
    assert r.status_code == 422
    assert "no sessions" in r.json["errors"]["flags.sess"][0]
    assert client.get("/api/flags", headers=h).json["flags"] == []
    r = _import(client, h, format="unleash", data=data, skip_unimportable=True)
    assert r.status_code == 200 and r.json["created"] == ["billing"]
    assert "sess" in r.json["skipped"]


def test_bad_requests_are_422s(client, h, app_project):
    assert _import(client, h, format="unleash", data=[1, 2]).status_code == 422
    r = _import(client, h, format="launchdarkly", data={})
    assert r.status_code == 422 and "format" in r.json["errors"]
    r = _import(client, h, format="unleash", data=REFERENCE, fields={"plan": "nowhere"})
    assert r.status_code == 422 and "fields.plan" in json.dumps(r.json["errors"])
    public = {"Authorization": f"Bearer {app_project['api_token']}"}
    assert _import(client, public, format="unleash", data=REFERENCE).status_code == 403
    # an imported flag that fails create's checks: a dependency on a flag that does not exist
    flag = {"key": "child", "conditions": [{"properties": [
        {"type": "flag", "key": "nope", "operator": "exact", "value": True}]}]}
    r = _import(client, h, format="flagsvc", data={"flags": [flag]})
    assert r.status_code == 422 and "does not exist" in json.dumps(r.json["errors"])
    # dependencies among the imported flags are fine
    parent = {"key": "nope", "conditions": [{}]}
    assert _import(client, h, format="flagsvc", data=[flag, parent]).status_code == 200


def test_flags_from_unleash_answer_the_posthog_client_as_yggdrasil(live_server):
    """The move, end to end: export from Unleash, import over HTTP, ask with the stock
    posthog package; every organization gets the variant and payload Unleash gave it."""
    r = requests.post(f"{live_server.url}/api/flags/import", headers=auth(live_server.project),
                      json={"format": "unleash", "data": REFERENCE}, timeout=10)
    assert r.status_code == 200, r.text
    ph = Posthog(live_server.project["api_token"], host=live_server.url, sync_mode=True,
                 feature_flags_request_timeout_seconds=10)
    engine = yggdrasil_engine.engine.UnleashEngine()
    engine.take_state(json.dumps(REFERENCE))
    enabled = 0
    for i in range(120):
        org, plan = f"org-{i}", ("free", "pro", "enterprise")[i % 3]
        theirs = engine.get_variant("billing", {"properties": {ORG: org, "plan": plan}}).variant
        ours = ph.get_feature_flag("billing", f"user-{i}", groups={ORG: org},
                                   group_properties={ORG: {"plan": plan}},
                                   send_feature_flag_events=False)
        assert (ours or "disabled") == theirs.name, (org, plan)
        if ours:
            enabled += 1
            payload = ph.get_feature_flag_payload("billing", f"user-{i}", groups={ORG: org},
                                                  group_properties={ORG: {"plan": plan}},
                                                  send_feature_flag_events=False)
            assert payload == json.loads(theirs.payload["value"])
    assert 10 < enabled < 50
