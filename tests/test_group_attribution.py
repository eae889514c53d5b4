"""Group attribution whatever the tool (SPEC §3): a bare group id (Segment/Accoil
`context.groupId` without a type) is the project's group with that key in any type; Segment
`context.groups` and `integrations.Amplitude.groups` are read; an ambiguous bare id goes to
the default type with a warning. Driven by the stock `@segment/analytics-node`."""

from __future__ import annotations

import pytest
import requests

from tests.capabilities import run_node
from tests.test_amplitude import _check_hierarchy, _flag

pytestmark = pytest.mark.backends


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
