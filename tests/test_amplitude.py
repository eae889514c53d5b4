"""Amplitude's stock clients (Python `amplitude-analytics`, npm `@amplitude/analytics-node`)
against a real server: the account > workspace > project hierarchy through their own
group_identify / set_group / track, then decide with only {project} gives the account's
bucket; duplicates, out-of-order deliveries and bad input as Amplitude answers them."""

from __future__ import annotations

import json
import time

import pytest
import requests
from amplitude import Amplitude, BaseEvent, Config, EventOptions, Identify

from flagsvc.engine import variant_target
from tests.capabilities import run_node

pytestmark = pytest.mark.backends


@pytest.fixture
def pid(live_server):
    return live_server.project["id"]


def _flag(live_server):
    live_server.store.create_flag(live_server.project["id"], {
        "key": "ab", "bucket_by": "account", "conditions": [{"properties": [
            {"type": "group", "group_type": "account", "key": "plan", "operator": "exact",
             "value": ["enterprise"]}]}],
        "variants": [{"key": "control", "weight": 50}, {"key": "test", "weight": 50}]})


def _decide(live_server, groups):
    r = requests.post(f"{live_server.url}/flags/?v=2", json={
        "api_key": live_server.project["api_token"], "distinct_id": "someone",
        "groups": groups}, timeout=5)
    assert r.status_code == 200, r.text
    return r.json()["flags"]["ab"]


def _expected(identifier):
    return "control" if variant_target("ab", identifier, 100) <= 50 else "test"


def _check_hierarchy(live_server, pid):
    store = live_server.store
    a1 = store.get_group(pid, "account", "a1")
    w1 = store.get_group(pid, "workspace", "w1")
    p1 = store.get_group(pid, "project", "p1")
    assert a1["properties"] == {"name": "Acme", "plan": "enterprise"}
    assert w1["parent"] == {"group_type": "account", "group_key": "a1"}
    assert p1["parent"] == {"group_type": "workspace", "group_key": "w1"}
    assert "Task Completed" in [e["event"] for e in p1["recent_events"]]
    assert store.get_person(pid, "u1")["properties"]["email"] == "jane@acme.io"
    on = _decide(live_server, {"project": "p1"})
    assert on["enabled"] is True and on["variant"] == _expected("a1")


@pytest.mark.parametrize("use_batch", [False, True])
def test_python_amplitude_client_hierarchy_and_decide(live_server, pid, use_batch):
    _flag(live_server)
    results = []
    client = Amplitude(live_server.project["api_token"], Config(
        server_url=live_server.url + ("/batch" if use_batch else "/2/httpapi"),
        use_batch=use_batch, callback=lambda e, code, msg: results.append((code, msg))))
    client.identify(Identify().set("email", "jane@acme.io").set_once("first", 1),
                    EventOptions(user_id="u1"))
    client.group_identify("account", "a1", Identify().set("name", "Acme")
                          .set("plan", "enterprise"))
    client.group_identify("workspace", "w1", Identify().set("parent_group_id", "a1")
                          .set("parent_group_type", "account"))
    client.group_identify("project", "p1", Identify().set("parent_group_id", "w1")
                          .set("parent_group_type", "workspace"))
    client.set_group("project", "p1", EventOptions(user_id="u1"))
    client.track(BaseEvent("Task Completed", user_id="u1", groups={"project": "p1"},
                           event_properties={"task_id": "t1"}))
    client.shutdown()
    assert results and {code for code, _ in results} == {200}, results
    _check_hierarchy(live_server, pid)
    assert live_server.store.get_person(pid, "u1")["properties"]["first"] == 1


def test_node_amplitude_client_hierarchy_and_decide(live_server, pid):
    _flag(live_server)
    out = run_node("""
const amp = require('@amplitude/analytics-node');
(async () => {
  amp.init(process.env.KEY, {serverUrl: process.env.URL + '/2/httpapi', flushIntervalMillis: 50});
  const codes = [];
  const r = (p) => p.promise.then(x => codes.push(x.code));
  const g = (t, k, props) => { const i = new amp.Identify();
    for (const [a, b] of Object.entries(props)) i.set(a, b);
    return r(amp.groupIdentify(t, k, i)); };
  const id = new amp.Identify(); id.set('email', 'jane@acme.io');
  await Promise.all([
    r(amp.identify(id, {user_id: 'u1'})),
    g('account', 'a1', {name: 'Acme', plan: 'enterprise'}),
    g('workspace', 'w1', {parent_group_id: 'a1', parent_group_type: 'account'}),
    g('project', 'p1', {parent_group_id: 'w1', parent_group_type: 'workspace'}),
    r(amp.setGroup('project', 'p1', {user_id: 'u1'})),
    r(amp.track('Task Completed', {task_id: 't1'}, {user_id: 'u1', groups: {project: 'p1'}})),
  ]);
  await amp.flush().promise;
  console.log(JSON.stringify({codes}));
})();
""", env={"KEY": live_server.project["api_token"], "URL": live_server.url})
    assert out["codes"] and set(out["codes"]) == {200}, out
    _check_hierarchy(live_server, pid)


def _post(live_server, body, path="/2/httpapi"):
    return requests.post(live_server.url + path, json=body, timeout=5)


def test_duplicates_and_out_of_order(live_server, pid):
    key = live_server.project["api_token"]
    now = int(time.time() * 1000)
    newer = {"event_type": "$groupidentify", "groups": {"account": "a1"}, "insert_id": "n",
             "time": now, "group_properties": {"$set": {"plan": "enterprise"}}}
    older = {**newer, "insert_id": "o", "time": now - 60_000,
             "group_properties": {"$set": {"plan": "free"}}}
    for body in ({"api_key": key, "events": [newer]}, {"api_key": key, "events": [older]},
                 {"api_key": key, "events": [newer]}):
        r = _post(live_server, body)
        assert r.status_code == 200 and r.json()["code"] == 200
    assert live_server.store.get_group(pid, "account", "a1")["properties"] == {
        "plan": "enterprise"}
    assert live_server.store.count_events(pid) == 2  # the re-sent newer one is stored once


def test_form_identify_and_groupidentify(live_server, pid):
    key = live_server.project["api_token"]
    r = requests.post(live_server.url + "/groupidentify", data={
        "api_key": key, "identification": json.dumps({
            "group_type": "account", "group_value": "a9",
            "group_properties": {"$set": {"plan": "pro"}}})}, timeout=5)
    assert r.status_code == 200, r.text
    r = requests.post(live_server.url + "/identify", data={
        "api_key": key, "identification": json.dumps([{
            "user_id": "u9", "user_properties": {"$set": {"email": "x@y.z"}, "$add": {"n": 1}}}])},
        timeout=5)
    assert r.status_code == 200 and r.json()["ignored_operations"] == ["$add"]
    assert live_server.store.get_group(pid, "account", "a9")["properties"] == {"plan": "pro"}
    assert live_server.store.get_person(pid, "u9")["properties"] == {"email": "x@y.z"}


def test_partial_batch_and_errors_as_amplitude(live_server, pid):
    key = live_server.project["api_token"]
    good = {"event_type": "e", "user_id": "u1", "insert_id": "g"}
    r = _post(live_server, {"api_key": key, "events": [good, {"event_type": "e"}]})
    assert r.status_code == 400
    assert r.json()["code"] == 400 and r.json()["events_with_invalid_fields"] == {"event": [1]}
    assert live_server.store.count_events(pid) == 1
    r = _post(live_server, {"api_key": "nope", "events": [good]})
    assert r.status_code == 401 and r.json()["code"] == 401
    r = _post(live_server, {"api_key": key, "events": "x"})
    assert r.status_code == 400 and "events" in r.json()["error"]
    assert live_server.store.count_events(pid) == 1


def test_posthog_batch_still_works_on_batch(live_server, pid):
    r = _post(live_server, {"api_key": live_server.project["api_token"],
                            "batch": [{"event": "x", "distinct_id": "d", "properties": {}}]},
              path="/batch/")
    assert r.status_code == 200 and r.json() == {"status": 1}
    assert live_server.store.count_events(pid) == 1


def test_client_upload_time_corrects_clock_skew(live_server, pid):
    """A client clock an hour fast: its newer write (by its own clock) still wins over a
    write the server saw later only if it really was later once corrected."""
    key = live_server.project["api_token"]
    now = time.time()
    fast = now + 3600
    ev = {"event_type": "$groupidentify", "groups": {"account": "s1"}, "insert_id": "s",
          "time": int(fast * 1000), "group_properties": {"$set": {"plan": "fast"}}}
    from datetime import UTC, datetime
    upload = datetime.fromtimestamp(fast, UTC).isoformat()
    r = _post(live_server, {"api_key": key, "events": [ev], "client_upload_time": upload})
    assert r.status_code == 200, r.text  # without the correction: an hour ahead, but allowed
    later = {**ev, "insert_id": "t", "time": int((now + 60) * 1000),
             "group_properties": {"$set": {"plan": "later"}}}
    assert _post(live_server, {"api_key": key, "events": [later]}).status_code == 200
    assert live_server.store.get_group(pid, "account", "s1")["properties"] == {"plan": "later"}
    r = _post(live_server, {"api_key": key, "events": [ev], "client_upload_time": "soon"})
    assert r.status_code == 400 and "client_upload_time" in r.json()["error"]


def test_python_client_partial_batch_keeps_the_good_events_once(live_server, pid):
    """The stock SDK on Amplitude's 400 with events_with_invalid_fields: the bad event is
    dropped (callback 400) and the good ones queued for a retry (which the SDK may not get
    to before shutdown); flagsvc stored them on the first request, so they are kept exactly
    once either way."""
    results = []
    client = Amplitude(live_server.project["api_token"], Config(
        server_url=live_server.url + "/2/httpapi", flush_queue_size=10,
        callback=lambda e, code, msg: results.append((e.event_type, code))))
    client.track(BaseEvent("good-1", user_id="u1"))
    client.track(BaseEvent("bad", user_id="u1", time=1000))  # before 2000
    client.track(BaseEvent("good-2", user_id="u1"))
    client.flush()
    time.sleep(0.3)
    client.flush()
    client.shutdown()
    assert ("bad", 400) in results and all(code == 200 for t, code in results if t != "bad")
    assert live_server.store.count_events(pid) == 2
