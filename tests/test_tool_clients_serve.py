"""Every tool's stock client against a real `flagsvc serve` (gunicorn's master and its
workers, each writing its own batches): Amplitude (Python and npm), Mixpanel (Python and
npm), Segment (npm, bare groupId) each describe account > workspace > project with their own
group keys; decide with only {project} gives the account's bucket (flagsvc.engine's
variant_target of the account key)."""

from __future__ import annotations

from urllib.parse import urlparse

import pytest
import requests
from amplitude import Amplitude, BaseEvent, Config, EventOptions, Identify
from mixpanel import Consumer, Mixpanel
from stress.harness import API_TOKEN, Server, admin

from flagsvc.engine import variant_target
from tests.capabilities import run_node


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The server's one project (FLAGSVC_API_TOKEN), its group types declared (ingestion may
    not create them), the account-bucketed flag; each test uses its own group keys."""
    srv = Server(str(tmp_path_factory.mktemp("serve") / "flagsvc.db"), workers=2)
    srv.start()
    try:
        for gtype in ("account", "workspace", "project"):
            r = requests.post(srv.url + "/api/group_types", headers=admin(),
                              json={"name": gtype}, timeout=10)
            assert r.status_code in (200, 201), r.text
        r = requests.post(srv.url + "/api/flags", headers=admin(), timeout=10, json={
            "key": "ab", "bucket_by": "account", "conditions": [{"properties": [
                {"type": "group", "group_type": "account", "key": "plan", "operator": "exact",
                 "value": ["enterprise"]}]}],
            "variants": [{"key": "control", "weight": 50}, {"key": "test", "weight": 50}]})
        assert r.status_code in (200, 201), r.text
        yield srv
    finally:
        srv.stop()


def _decided(server, tool):
    """decide with only {project: p-<tool>} → the bucket of account a-<tool>."""
    r = requests.post(server.url + "/flags/?v=2", json={
        "api_key": API_TOKEN, "distinct_id": "anyone", "groups": {"project": f"p-{tool}"}},
        timeout=10)
    assert r.status_code == 200, r.text
    flag = r.json()["flags"]["ab"]
    expected = "control" if variant_target("ab", f"a-{tool}", 100) <= 50 else "test"
    assert flag["enabled"] is True and flag["variant"] == expected, flag
    p1 = requests.get(f"{server.url}/api/groups/project/p-{tool}", headers=admin(),
                      timeout=10).json()
    assert p1["parent"] == {"group_type": "workspace", "group_key": f"w-{tool}"}, p1
    r = requests.get(server.url + "/api/groups/organization/p-" + tool, headers=admin(),
                     timeout=10)
    assert r.status_code == 404  # the bare id went to the declared project group


def test_amplitude_python_against_serve(server):
    codes = []
    client = Amplitude(API_TOKEN, Config(
        server_url=server.url + "/2/httpapi", callback=lambda e, c, m: codes.append(c)))
    client.group_identify("account", "a-amp", Identify().set("plan", "enterprise"))
    client.group_identify("workspace", "w-amp", Identify().set("parent_group_id", "a-amp"))
    client.group_identify("project", "p-amp", Identify().set("parent_group_id", "w-amp")
                          .set("parent_group_type", "workspace"))
    client.track(BaseEvent("Task Completed", user_id="u1", groups={"project": "p-amp"}))
    client.set_group("project", "p-amp", EventOptions(user_id="u1"))
    client.shutdown()
    assert codes and set(codes) == {200}
    _decided(server, "amp")


def test_mixpanel_python_and_node_against_serve(server):
    url = server.url
    mp = Mixpanel(API_TOKEN, consumer=Consumer(
        events_url=url + "/track", people_url=url + "/engage", groups_url=url + "/groups"))
    mp.group_set("account", "a-mp", {"plan": "enterprise"})
    mp.group_set("workspace", "w-mp", {"parent_group_id": "a-mp", "parent_group_type": "account"})
    u = urlparse(url)
    out = run_node("""
const mp = require('mixpanel').init(process.env.KEY, {host: process.env.HOST,
  port: +process.env.PORT, protocol: 'http'});
const p = (f) => new Promise((ok) => f((e) => ok(e ? String(e) : null)));
(async () => {
  // the seed's forms: a parent by its bare id, the event's group in $groups
  const errors = [await p(cb => mp.groups.set('project', 'p-mp', {parent_group_id: 'w-mp'}, cb)),
    await p(cb => mp.track('Task Completed', {distinct_id: 'u1', task_id: 't1',
                                              $groups: {project: 'p-mp'}}, cb)),
    // each track is a GET with the event in the query: ~5 KB of it passes gunicorn
    await p(cb => mp.track('Big', {distinct_id: 'u1', project: 'p-mp',
                                   notes: 'x'.repeat(4000)}, cb))];
  console.log(JSON.stringify({errors}));
})();
""", env={"KEY": API_TOKEN, "HOST": u.hostname, "PORT": str(u.port)})
    assert out == {"errors": [None, None, None]}
    _decided(server, "mp")
    events = requests.get(f"{server.url}/api/groups/project/p-mp", headers=admin(),
                          timeout=10).json()["recent_events"]
    assert {"Task Completed", "Big"} <= {e["event"] for e in events}


def test_mixpanel_node_profiles_and_tracks_over_8_kb_against_serve(server):
    """The npm client sends people/groups profiles (and single tracks) as GETs with the
    record base64 in the query: over gunicorn's request-line cap (8190) they got an HTML 400.
    The worker bounds the request line by its 64 KiB header limit instead (~45 KB of JSON):
    20 KB records pass; one of 80 KB is refused, and the client reports it."""
    u = urlparse(server.url)
    out = run_node("""
const mp = require('mixpanel').init(process.env.KEY, {host: process.env.HOST,
  port: +process.env.PORT, protocol: 'http'});
const p = (f) => new Promise((ok) => f((e) => ok(e ? String(e) : null)));
(async () => {
  const errors = [
    await p(cb => mp.groups.set('project', 'p-big', {desc: 'y'.repeat(8000)}, cb)),
    await p(cb => mp.people.set('u-big', {desc: 'y'.repeat(8000)}, cb)),
    await p(cb => mp.track('Big', {distinct_id: 'u-big', blob: 'x'.repeat(20000)}, cb)),
    await p(cb => mp.people.set('u-huge', {desc: 'y'.repeat(80000)}, cb))];
  console.log(JSON.stringify({errors}));
})();
""", env={"KEY": API_TOKEN, "HOST": u.hostname, "PORT": str(u.port)})
    assert out["errors"][:3] == [None, None, None], out
    assert out["errors"][3], out  # over the bound: an error the client reports
    group = requests.get(f"{server.url}/api/groups/project/p-big", headers=admin(),
                         timeout=10).json()
    assert len(group["properties"]["desc"]) == 8000, group
    person = requests.get(f"{server.url}/api/persons/u-big", headers=admin(), timeout=10).json()
    assert len(person["properties"]["desc"]) == 8000


def test_amplitude_node_against_serve(server):
    out = run_node("""
const amp = require('@amplitude/analytics-node');
(async () => {
  amp.init(process.env.KEY, {serverUrl: process.env.URL + '/2/httpapi', flushIntervalMillis: 50});
  const g = (t, k, props) => { const i = new amp.Identify();
    for (const [a, b] of Object.entries(props)) i.set(a, b);
    return amp.groupIdentify(t, k, i).promise; };
  const results = [];
  results.push(await g('account', 'a-ampn', {plan: 'enterprise'}));
  results.push(await g('workspace', 'w-ampn', {parent_group_id: 'a-ampn'}));
  results.push(await g('project', 'p-ampn', {parent_group_id: 'w-ampn'}));
  results.push(await amp.setGroup('project', 'p-ampn', {user_id: 'u1'}).promise);
  results.push(await amp.track('Task Completed', {task_id: 't1'},
                               {user_id: 'u1', groups: {project: 'p-ampn'}}).promise);
  await amp.flush().promise;
  console.log(JSON.stringify({codes: results.map(r => r.code)}));
})();
""", env={"KEY": API_TOKEN, "URL": server.url})
    assert out == {"codes": [200] * 5}, out
    _decided(server, "ampn")


def test_segment_node_bare_group_id_against_serve(server):
    out = run_node("""
const { Analytics } = require('@segment/analytics-node');
const errors = [];
(async () => {
  for (const [id, traits] of [['a-seg', {group_type: 'account', plan: 'enterprise'}],
      ['w-seg', {group_type: 'workspace', parent_group_id: 'a-seg'}],
      ['p-seg', {group_type: 'project', parent_group_id: 'w-seg'}]]) {
    const a = new Analytics({writeKey: process.env.KEY, host: process.env.URL, maxRetries: 0});
    a.on('error', (e) => errors.push(String(e && (e.reason || e.code || e))));
    a.group({userId: 'u1', groupId: id, traits});
    await a.closeAndFlush();
  }
  const b = new Analytics({writeKey: process.env.KEY, host: process.env.URL, maxRetries: 0});
  b.track({userId: 'u1', event: 'Task Completed', context: {groupId: 'p-seg'}});
  await b.closeAndFlush();
  console.log(JSON.stringify({errors}));
})();
""", env={"KEY": API_TOKEN, "URL": server.url})
    assert out == {"errors": []}
    _decided(server, "seg")
