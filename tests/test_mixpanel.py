"""Mixpanel's stock clients (Python `mixpanel`, npm `mixpanel`) against a real server: the
account > workspace > project hierarchy through their group profile calls, a track with a
group-key property, then decide with only {project} gives the account's bucket; duplicates,
out-of-order records and bad input with Mixpanel's answers."""

from __future__ import annotations

import base64
import json
import time
from urllib.parse import urlparse

import pytest
import requests
from mixpanel import Consumer, Mixpanel, MixpanelException

from tests.capabilities import run_node
from tests.test_amplitude import _check_hierarchy, _flag


@pytest.fixture
def pid(live_server):
    return live_server.project["id"]


def test_python_mixpanel_client_hierarchy_and_decide(live_server, pid):
    _flag(live_server)
    url = live_server.url
    mp = Mixpanel(live_server.project["api_token"], consumer=Consumer(
        events_url=url + "/track", people_url=url + "/engage", groups_url=url + "/groups"))
    mp.people_set("u1", {"email": "jane@acme.io"})
    mp.group_set("account", "a1", {"name": "Acme", "plan": "enterprise"})
    mp.group_set("workspace", "w1", {"parent_group_id": "a1", "parent_group_type": "account"})
    mp.group_set("project", "p1", {"parent_group_id": "w1", "parent_group_type": "workspace"})
    mp.track("u1", "Task Completed", {"project": "p1", "task_id": "t1"})
    _check_hierarchy(live_server, pid)
    event = live_server.store.get_group(pid, "project", "p1")["recent_events"][0]
    assert "token" not in event["properties"] and event["properties"]["task_id"] == "t1"
    with pytest.raises(MixpanelException, match="distinct_id"):
        mp.track("", "x")


def test_node_mixpanel_client_hierarchy_and_decide(live_server, pid):
    _flag(live_server)
    u = urlparse(live_server.url)
    out = run_node("""
const Mixpanel = require('mixpanel');
const mp = Mixpanel.init(process.env.KEY, {host: process.env.HOST, port: +process.env.PORT,
                                           protocol: 'http'});
const p = (f) => new Promise((ok, ko) => f((e) => e ? ko(e) : ok()));
(async () => {
  await p(cb => mp.people.set('u1', {email: 'jane@acme.io'}, cb));
  await p(cb => mp.groups.set('account', 'a1', {name: 'Acme', plan: 'enterprise'}, cb));
  await p(cb => mp.groups.set('workspace', 'w1', {parent_group_id: 'a1',
                                                   parent_group_type: 'account'}, cb));
  await p(cb => mp.groups.set('project', 'p1', {parent_group_id: 'w1',
                                                 parent_group_type: 'workspace'}, cb));
  await p(cb => mp.track('Task Completed', {distinct_id: 'u1', project: 'p1'}, cb));
  console.log(JSON.stringify({ok: true}));
})().catch(e => { console.log(JSON.stringify({error: String(e)})); });
""", env={"KEY": live_server.project["api_token"], "HOST": u.hostname, "PORT": str(u.port)})
    assert out == {"ok": True}
    _check_hierarchy(live_server, pid)


def _send(live_server, path, data, verbose=True, how="form"):
    text = json.dumps(data)
    params = {"verbose": "1"} if verbose else {}
    if how == "get":
        params["data"] = base64.b64encode(text.encode()).decode()
        return requests.get(live_server.url + path, params=params, timeout=5)
    if how == "body":
        return requests.post(live_server.url + path, params=params, data=text, timeout=5)
    return requests.post(live_server.url + path, data={**params, "data": text}, timeout=5)


def test_get_body_base64_and_answers(live_server, pid):
    tok = live_server.project["api_token"]
    ev = {"event": "e", "properties": {"token": tok, "distinct_id": "d", "$insert_id": "i1",
                                        "time": int(time.time())}}
    r = _send(live_server, "/track", ev, verbose=False, how="get")
    assert r.status_code == 200 and r.text == "1"
    r = _send(live_server, "/track", [ev], how="body")  # a retry: stored once
    assert r.json() == {"status": 1, "error": None}
    assert live_server.store.count_events(pid) == 1


def test_out_of_order_profiles_and_ops(live_server, pid):
    tok = live_server.project["api_token"]
    now = int(time.time() * 1000)
    for t, plan in ((now, "enterprise"), (now - 60_000, "free")):
        r = _send(live_server, "/groups", {"$token": tok, "$group_key": "account",
                                           "$group_id": "a1", "$time": t, "$set": {"plan": plan}})
        assert r.status_code == 200, r.text
    assert live_server.store.get_group(pid, "account", "a1")["properties"] == {
        "plan": "enterprise"}
    r = _send(live_server, "/engage", {"$token": tok, "$distinct_id": "u1",
                                       "$set": {"a": 1}, "$add": {"n": 1}})
    assert r.json()["ignored_operations"] == ["$add"]
    r = _send(live_server, "/engage", {"$token": tok, "$distinct_id": "u1", "$unset": ["a"]})
    assert live_server.store.get_person(pid, "u1")["properties"] == {}


def test_mixpanel_group_keys_setting(live_server, pid):
    admin = {"Authorization": f"Bearer {live_server.project['secret_key']}"}
    r = requests.patch(live_server.url + "/api/project", headers=admin, timeout=5,
                       json={"mixpanel_group_keys": {"company_id": ""}})
    assert r.status_code in (400, 422), r.text  # a group type name is required
    r = requests.patch(live_server.url + "/api/project", headers=admin, timeout=5,
                       json={"mixpanel_group_keys": {"company_id": "account"}})
    assert r.status_code == 200 and r.json()["mixpanel_group_keys"] == {"company_id": "account"}
    tok = live_server.project["api_token"]
    _send(live_server, "/groups", {"$token": tok, "$group_key": "company_id",
                                   "$group_id": "c1", "$set": {"plan": "pro"}})
    _send(live_server, "/track", {"event": "e", "properties": {
        "token": tok, "distinct_id": "d", "company_id": "c1"}})
    c1 = live_server.store.get_group(pid, "account", "c1")
    assert c1["properties"] == {"plan": "pro"} and c1["recent_events"][0]["event"] == "e"


def test_bad_records_refused_with_field_and_nothing_stored(live_server, pid):
    tok = live_server.project["api_token"]
    r = _send(live_server, "/track", {"event": "e", "properties": {"token": tok}})
    assert r.status_code == 400 and r.json()["status"] == 0
    assert "distinct_id" in r.json()["error"]
    r = _send(live_server, "/groups", {"$token": tok, "$group_key": "account"})
    assert r.status_code == 400 and "$group_id" in r.json()["error"]
    r = _send(live_server, "/track", {"event": "e", "properties": {"token": "nope",
                                                                    "distinct_id": "d"}})
    assert r.status_code == 401 and r.json()["status"] == 0
    r = requests.post(live_server.url + "/track", data={"data": "%%%"}, timeout=5)
    # undecodable data: the verbose shape (the answer must say why)
    assert r.status_code == 400 and r.json() == {
        "status": 0, "error": "data is neither JSON nor base64 of JSON"}
    assert live_server.store.count_events(pid) == 0


def test_python_mixpanel_import_data_goes_in_like_track(live_server, pid):
    """`import_data` (Mixpanel's /import, for old events) against flagsvc: stored as a track,
    authenticated by the project token in the event (the secret Mixpanel wants is not
    flagsvc's); refused input answered in Mixpanel's shape, so the client raises its own
    exception (it raised KeyError: 'status' on flagsvc's generic 404 before)."""
    url = live_server.url
    live_server.store.create_group_type(pid, "project")
    mp = Mixpanel(live_server.project["api_token"], consumer=Consumer(import_url=url + "/import"))
    old = int(time.time()) - 30 * 86400
    mp.import_data("unused-key", "u1", "Signup", old, {"project": "p1"}, api_secret="s")
    event = live_server.store.get_group(pid, "project", "p1")["recent_events"][0]
    assert event["event"] == "Signup"
    with pytest.raises(MixpanelException, match="distinct_id"):
        mp.import_data("unused-key", "", "Signup", old, api_secret="s")
    bad = Mixpanel("nope", consumer=Consumer(import_url=url + "/import"))
    with pytest.raises(MixpanelException, match="token"):
        bad.import_data("unused-key", "u1", "Signup", old, api_secret="s")


def test_python_mixpanel_merge_is_an_alias(live_server, pid):
    mp = Mixpanel(live_server.project["api_token"], consumer=Consumer(
        people_url=live_server.url + "/engage", import_url=live_server.url + "/import"))
    mp.people_set("anon-1", {"plan": "free"})
    mp.merge("unused-key", "u1", "anon-1", api_secret="s")
    assert live_server.store.get_person(pid, "u1")["properties"] == {"plan": "free"}
