"""Group attribution whatever the tool (SPEC §3): a bare group id (Segment/Accoil
`context.groupId` without a type) is the project's group with that key in any type; Segment
`context.groups` and `integrations.Amplitude.groups` are read; an ambiguous bare id goes to
the default type with a warning. Driven by the stock `@segment/analytics-node`."""

from __future__ import annotations

import requests

from tests.capabilities import run_node
from tests.test_amplitude import _check_hierarchy, _flag


def test_segment_node_client_bare_group_id_is_the_declared_project(live_server):
    pid = live_server.project["id"]
    _flag(live_server)
    out = run_node("""
const { Analytics } = require('@segment/analytics-node');
const a = new Analytics({writeKey: process.env.KEY, host: process.env.URL, flushAt: 1,
                         maxRetries: 0});
const errors = [];
a.on('error', (e) => errors.push(String(e && (e.reason || e.code || e))));
a.identify({userId: 'u1', traits: {email: 'jane@acme.io'}});
a.group({userId: 'u1', groupId: 'a1', traits: {group_type: 'account', name: 'Acme',
                                               plan: 'enterprise'}});
a.group({userId: 'u1', groupId: 'w1', traits: {group_type: 'workspace',
                                               parent_group_id: 'a1'}});
a.group({userId: 'u1', groupId: 'p1', traits: {group_type: 'project', parent_group_id: 'w1'}});
(async () => {
  await a.closeAndFlush();
  const b = new Analytics({writeKey: process.env.KEY, host: process.env.URL, maxRetries: 0});
  b.on('error', (e) => errors.push(String(e && (e.reason || e.code || e))));
  b.track({userId: 'u1', event: 'Task Completed', properties: {task_id: 't1'},
           context: {groupId: 'p1'}});
  b.track({userId: 'u1', event: 'Amp Style', integrations: {Amplitude: {groups:
           {project: 'p1'}}}});
  await b.closeAndFlush();
  console.log(JSON.stringify({errors}));
})();
""", env={"KEY": live_server.project["api_token"], "URL": live_server.url})
    assert out == {"errors": []}
    _check_hierarchy(live_server, pid)
    store = live_server.store
    events = [e["event"] for e in store.get_group(pid, "project", "p1")["recent_events"]]
    assert {"Task Completed", "Amp Style"} <= set(events)
    # no organization/p1 group and no new group type
    assert {t["name"] for t in store.group_types(pid)} == {"account", "workspace", "project"}
    assert store.get_group(pid, "account", "a1")["last_seen"] is not None


def test_ambiguous_bare_id_goes_to_default_type_with_a_warning(live_server):
    pid = live_server.project["id"]
    key = live_server.project["api_token"]
    url = live_server.url + "/v1/batch"
    r = requests.post(url, json={"writeKey": key, "batch": [
        {"type": "group", "userId": "u", "groupId": "x", "traits": {"group_type": "account"}},
        {"type": "group", "userId": "u", "groupId": "x", "traits": {"group_type": "project"}},
    ]}, timeout=5)
    assert r.status_code == 200
    r = requests.post(url, json={"writeKey": key, "batch": [
        {"type": "track", "userId": "u", "event": "e", "context": {"groupId": "x"}}]},
        timeout=5)
    assert r.status_code == 200
    assert "several types" in r.json()["warnings"][0]
    org = live_server.store.get_group(pid, "organization", "x")
    assert org["recent_events"][0]["event"] == "e"
    # an unknown bare id: the default type, as before, without a warning
    r = requests.post(url, json={"writeKey": key, "batch": [
        {"type": "track", "userId": "u", "event": "e2", "context": {"groupId": "new"}}]},
        timeout=5)
    assert r.status_code == 200 and "warnings" not in r.json()
    assert live_server.store.get_group(pid, "organization", "new") is not None


def _segment(client, project, *messages):
    r = client.post("/v1/batch", json={"writeKey": project["api_token"],
                                        "batch": list(messages)})
    assert r.status_code == 200, r.get_json()
    return r.get_json()


def _hierarchy(client, project, t=None):
    stamp = {"timestamp": t} if t else {}
    return _segment(client, project,
                    {"type": "group", "userId": "u1", "groupId": "a1", **stamp,
                     "traits": {"group_type": "account", "plan": "enterprise"}},
                    {"type": "group", "userId": "u1", "groupId": "w1", **stamp,
                     "traits": {"group_type": "workspace", "parent_group_id": "a1"}},
                    {"type": "group", "userId": "u1", "groupId": "p1", **stamp,
                     "traits": {"group_type": "project", "parent_group_id": "w1"}})


def _bucket_account(client, project):
    r = client.post("/flags/?v=2", json={"api_key": project["api_token"],
                                         "distinct_id": "x", "groups": {"project": "p1"}})
    return r.get_json()["flags"]["ab"]


def test_group_call_without_a_type_updates_the_declared_group(app, client):
    """The seed's client-side form, `analytics.group('p1', {name})`, names the project group
    the app declared: its traits land there, and no default-type group (nor type) appears
    — in a new project, where ingestion may create no type but the default one."""
    store = app.extensions["flagsvc"].store
    project = store.create_project("fresh")
    for gtype in ("account", "workspace", "project"):
        store.create_group_type(project["id"], gtype)
    _hierarchy(client, project)
    out = _segment(client, project,
                   {"type": "group", "userId": "u2", "groupId": "p1", "traits": {"name": "API"}})
    assert "warnings" not in out
    p1 = store.get_group(project["id"], "project", "p1")
    assert p1["properties"] == {"name": "API"}
    assert p1["parent"] == {"group_type": "workspace", "group_key": "w1"}
    assert {t["name"] for t in store.group_types(project["id"])} == {
        "account", "workspace", "project"}
    # an id no group has yet: the default type, as before
    _segment(client, project, {"type": "group", "userId": "u2", "groupId": "acme",
                               "traits": {"name": "Acme"}})
    assert store.get_group(project["id"], "organization", "acme")["properties"] == {
        "name": "Acme"}


def test_bare_id_event_delivered_before_the_group_call_that_declares_it(app, client,
                                                                       app_project):
    """Out of order: the track with context.groupId 'p1' arrives before group('p1',
    {group_type: 'project'}). It can only be filed under the default type then; that
    placeholder (no properties, no parent) must not make 'p1' ambiguous afterwards."""
    store = app.extensions["flagsvc"].store
    pid = app_project["id"]
    store.create_flag(pid, {"key": "ab", "bucket_by": "account", "conditions": [{}]})
    _segment(client, app_project, {"type": "track", "userId": "u1", "event": "early",
                                   "messageId": "m-early", "context": {"groupId": "p1"},
                                   "timestamp": "2026-01-01T00:00:00Z"})
    _hierarchy(client, app_project)
    out = _segment(client, app_project, {"type": "track", "userId": "u1", "event": "late",
                                         "context": {"groupId": "p1"}})
    assert "warnings" not in out
    events = [e["event"] for e in store.get_group(pid, "project", "p1")["recent_events"]]
    assert "late" in events
    assert store.get_group(pid, "account", "a1")["last_seen"] is not None
    assert _bucket_account(client, app_project)["enabled"] is True
    # a group call without a type goes to the declared group too, not to the placeholder
    _segment(client, app_project, {"type": "group", "userId": "u1", "groupId": "p1",
                                   "traits": {"name": "API"}})
    assert store.get_group(pid, "project", "p1")["properties"] == {"name": "API"}
    assert store.get_group(pid, "organization", "p1")["properties"] == {}


def test_bare_group_id_duplicates_and_out_of_order_deliveries(app, client, app_project):
    """Segment's retries (same messageId) change nothing; an older delivery of a bare-id
    group call never overwrites a newer trait, nor moves the group's last_seen back."""
    store = app.extensions["flagsvc"].store
    pid = app_project["id"]
    _hierarchy(client, app_project, "2026-01-01T00:00:00Z")
    track = {"type": "track", "userId": "u1", "event": "Task Completed", "messageId": "m1",
             "context": {"groupId": "p1"}, "timestamp": "2026-01-02T00:00:00Z"}
    for _ in range(3):
        _segment(client, app_project, track)
    assert store.count_events(pid) == 4  # the three group calls and one track
    p1 = store.get_group(pid, "project", "p1")
    assert [e["event"] for e in p1["recent_events"]].count("Task Completed") == 1
    seen = p1["last_seen"]
    newer = {"type": "group", "userId": "u1", "groupId": "p1", "messageId": "g-new",
             "timestamp": "2026-01-03T00:00:00Z", "traits": {"stage": "ga"}}
    older = {**newer, "messageId": "g-old", "timestamp": "2026-01-01T12:00:00Z",
             "traits": {"stage": "beta"}}
    _segment(client, app_project, newer)
    _segment(client, app_project, older)
    _segment(client, app_project, newer)
    p1 = store.get_group(pid, "project", "p1")
    assert p1["properties"] == {"stage": "ga"}
    assert p1["last_seen"] >= seen
    late_track = {**track, "messageId": "m0", "timestamp": "2025-12-31T00:00:00Z"}
    _segment(client, app_project, late_track)
    assert store.get_group(pid, "project", "p1")["last_seen"] == p1["last_seen"]
    assert [t["name"] for t in store.group_types(pid)] == ["account", "workspace", "project"]


def test_accoil_seed_forms_hierarchy_and_bare_group_id(app, client, app_project):
    """The seed's recommended form (Accoil v2): a group call per level with group_type and
    parent_group_id, a track with context.groupId of the project; decide with only
    {project} buckets on the account."""
    store = app.extensions["flagsvc"].store
    pid = app_project["id"]
    store.create_flag(pid, {"key": "ab", "bucket_by": "account", "conditions": [{}]})
    auth = {"Authorization": f"Basic {app_project['api_token']}"}
    for group_id, traits in (("acc_456", {"group_type": "account", "name": "Acme Inc"}),
                             ("ws_789", {"group_type": "workspace", "name": "Engineering",
                                         "parent_group_id": "acc_456"}),
                             ("proj_123", {"group_type": "project", "name": "Q1 Release",
                                           "parent_group_id": "ws_789"})):
        r = client.post("/v2/group", json={"userId": "usr_123", "groupId": group_id,
                                           "traits": traits}, headers=auth)
        assert r.status_code == 200, r.get_json()
    r = client.post("/v2/track", headers=auth, json={
        "userId": "usr_123", "event": "Task Completed", "properties": {"task_id": "task_456"},
        "context": {"groupId": "proj_123"}})
    assert r.status_code == 200 and "warnings" not in r.get_json()
    proj = store.get_group(pid, "project", "proj_123")
    assert proj["parent"] == {"group_type": "workspace", "group_key": "ws_789"}
    assert "Task Completed" in [e["event"] for e in proj["recent_events"]]
    assert store.get_group(pid, "account", "acc_456")["last_seen"] is not None
    r = client.post("/flags/?v=2", json={"api_key": app_project["api_token"],
                                         "distinct_id": "usr_123",
                                         "groups": {"project": "proj_123"}})
    flag = r.get_json()["flags"]["ab"]
    assert flag["enabled"] is True
    assert [t["name"] for t in store.group_types(pid)] == ["account", "workspace", "project"]
