"""The rules every format keeps, on the Amplitude and Mixpanel paths, through their stock
Python clients and on the wire: a new project's ingestion creates no group type
(`ingestion_creates_group_types` off: an unknown type is dropped and reported, the rest of
the call stored); Mixpanel's and Amplitude's profile operations flagsvc does not apply
(`$add`, `$union`, `$append`, `$remove`, `$delete` ...) are reported in
`ignored_operations` and change nothing, the `$set` beside them applied; duplicates
(`$insert_id`, a retried profile record) and out-of-order deliveries change nothing."""

from __future__ import annotations

import json
import time

import pytest
import requests
from amplitude import Amplitude, BaseEvent, Config, EventOptions, Identify
from mixpanel import Consumer, Mixpanel

from tests.conftest import start_live_server


@pytest.fixture
def fresh(db_path):
    """A server with a project created as the product creates one (defaults: ingestion
    creates no group type but the default one), its `account` type declared."""
    srv = start_live_server(db_path)
    srv.project = srv.store.create_project("fresh")
    srv.store.create_group_type(srv.project["id"], "account")
    yield srv
    srv.stop()


def _types(srv):
    return [t["name"] for t in srv.store.group_types(srv.project["id"])]


def _mp(srv, path, record, verbose=True):
    r = requests.post(srv.url + path, data={"data": json.dumps(record),
                                            **({"verbose": "1"} if verbose else {})},
                      timeout=5)
    return r


def test_amplitude_does_not_create_group_types_in_a_new_project(fresh):
    pid, token = fresh.project["id"], fresh.project["api_token"]
    codes = []
    client = Amplitude(token, Config(server_url=fresh.url + "/2/httpapi",
                                     callback=lambda e, code, msg: codes.append(code)))
    client.group_identify("account", "a1", Identify().set("plan", "enterprise"))
    client.group_identify("team", "t1", Identify().set("size", 3))
    client.track(BaseEvent("Task Completed", user_id="u1",
                           groups={"account": "a1", "team": "t1"}))
    client.shutdown()
    assert codes and set(codes) == {200}, codes  # the good part of each call is stored
    assert _types(fresh) == ["account"]
    a1 = fresh.store.get_group(pid, "account", "a1")
    assert a1["properties"] == {"plan": "enterprise"}
    assert "Task Completed" in [e["event"] for e in a1["recent_events"]]
    # what the answer says (the SDK reads only code)
    r = requests.post(fresh.url + "/2/httpapi", timeout=5, json={"api_key": token, "events": [
        {"event_type": "$groupidentify", "groups": {"team": "t2"}, "insert_id": "g2",
         "group_properties": {"$set": {"size": 4}}}]})
    body = r.json()
    assert r.status_code == 200 and body["dropped"] == 1
    assert "ingestion_creates_group_types" in body["warnings"][0]
    assert _types(fresh) == ["account"]


def test_mixpanel_does_not_create_group_types_in_a_new_project(fresh):
    pid, token = fresh.project["id"], fresh.project["api_token"]
    url = fresh.url
    mp = Mixpanel(token, consumer=Consumer(events_url=url + "/track",
                                           people_url=url + "/engage",
                                           groups_url=url + "/groups"))
    mp.group_set("account", "a1", {"plan": "enterprise"})
    mp.group_set("team", "t1", {"size": 3})  # answered status 1: nothing to retry
    mp.track("u1", "Task Completed", {"$groups": {"team": "t1"}, "account": "a1"})
    assert _types(fresh) == ["account"]
    a1 = fresh.store.get_group(pid, "account", "a1")
    assert a1["properties"] == {"plan": "enterprise"}
    assert "Task Completed" in [e["event"] for e in a1["recent_events"]]
    r = _mp(fresh, "/groups", {"$token": token, "$group_key": "team", "$group_id": "t2",
                               "$set": {"size": 4}})
    assert r.status_code == 200 and r.json()["status"] == 1 and r.json()["dropped"] == 1
    assert "ingestion_creates_group_types" in r.json()["warnings"][0]
    # a mixpanel_group_keys entry naming an undeclared type is dropped the same way
    r = requests.patch(url + "/api/project", timeout=5,
                       json={"mixpanel_group_keys": {"company_id": "company"}},
                       headers={"Authorization": f"Bearer {fresh.project['secret_key']}"})
    assert r.status_code == 200, r.text
    time.sleep(0.6)  # project settings reach the routes within cache_seconds
    r = _mp(fresh, "/track", {"event": "e", "properties": {
        "token": token, "distinct_id": "u1", "company_id": "c1"}})
    assert r.status_code == 200 and r.json()["dropped"] == 1, r.json()
    assert _types(fresh) == ["account"]


# Every Mixpanel profile operation flagsvc does not apply, as the stock client sends it.
MIXPANEL_IGNORED = [
    ("$add", lambda mp: mp.people_increment("u1", {"logins": 1})),
    ("$append", lambda mp: mp.people_append("u1", {"tags": "a"})),
    ("$union", lambda mp: mp.people_union("u1", {"tags": ["a"]})),
    ("$remove", lambda mp: mp.people_remove("u1", {"tags": "a"})),
    ("$delete", lambda mp: mp.people_delete("u1")),
    ("$union", lambda mp: mp.group_union("account", "a1", {"tags": ["a"]})),
    ("$remove", lambda mp: mp.group_remove("account", "a1", {"tags": "a"})),
    ("$delete", lambda mp: mp.group_delete("account", "a1")),
]


@pytest.mark.parametrize("op,call", MIXPANEL_IGNORED, ids=[
    f"{op}-{i}" for i, (op, _) in enumerate(MIXPANEL_IGNORED)])
def test_mixpanel_operations_not_applied_are_reported_and_change_nothing(live_server, op,
                                                                         call):
    pid, token = live_server.project["id"], live_server.project["api_token"]
    url = live_server.url
    mp = Mixpanel(token, consumer=Consumer(events_url=url + "/track",
                                           people_url=url + "/engage",
                                           groups_url=url + "/groups"))
    mp.people_set("u1", {"email": "jane@acme.io", "tags": ["x"]})
    mp.group_set("account", "a1", {"plan": "enterprise", "tags": ["x"]})
    call(mp)  # the stock client raises on any answer but status 1
    assert live_server.store.get_person(pid, "u1")["properties"] == {
        "email": "jane@acme.io", "tags": ["x"]}
    assert live_server.store.get_group(pid, "account", "a1")["properties"] == {
        "plan": "enterprise", "tags": ["x"]}
    path = "/engage" if op != "$delete" else "/groups"
    record = ({"$token": token, "$distinct_id": "u1"} if path == "/engage" else
              {"$token": token, "$group_key": "account", "$group_id": "a1"})
    r = _mp(live_server, path, {**record, op: {"tags": ["y"]} if op != "$delete" else "",
                                "$set": {"seen": True}})
    assert r.status_code == 200 and r.json()["ignored_operations"] == [op], r.json()
    assert _mp(live_server, path, {**record, op: {"n": 1}}, verbose=False).text == "1"
    profile = (live_server.store.get_person(pid, "u1") if path == "/engage" else
               live_server.store.get_group(pid, "account", "a1"))
    assert profile["properties"]["seen"] is True and profile["properties"]["tags"] == ["x"]


def test_amplitude_operations_not_applied_are_reported_and_change_nothing(live_server):
    pid, token = live_server.project["id"], live_server.project["api_token"]
    codes = []
    client = Amplitude(token, Config(server_url=live_server.url + "/2/httpapi",
                                     callback=lambda e, code, msg: codes.append(code)))
    client.identify(Identify().set("email", "jane@acme.io"), EventOptions(user_id="u1"))
    client.flush()
    client.identify(Identify().add("logins", 1).append("tags", "a").prepend("tags", "b")
                    .pre_insert("tags", "c").post_insert("tags", "d").remove("tags", "e")
                    .set("plan", "pro"), EventOptions(user_id="u1"))
    client.shutdown()
    assert codes and set(codes) == {200}, codes
    assert live_server.store.get_person(pid, "u1")["properties"] == {
        "email": "jane@acme.io", "plan": "pro"}
    r = requests.post(live_server.url + "/2/httpapi", timeout=5, json={
        "api_key": token, "events": [{"event_type": "$identify", "user_id": "u1",
                                      "user_properties": {"$add": {"n": 1},
                                                          "$clearAll": "-"}}]})
    assert r.status_code == 200
    assert r.json()["ignored_operations"] == ["$add", "$clearAll"]
    assert "n" not in live_server.store.get_person(pid, "u1")["properties"]


def test_mixpanel_duplicates_and_out_of_order(live_server):
    pid, token = live_server.project["id"], live_server.project["api_token"]
    live_server.store.create_group_type(pid, "project")
    now = int(time.time())
    # a track re-sent by the client ($insert_id) is stored once
    ev = {"event": "Task Completed", "properties": {
        "token": token, "distinct_id": "u1", "time": now, "$insert_id": "ins-1",
        "project": "p1"}}
    for _ in range(3):
        assert _mp(live_server, "/track", [ev]).json()["status"] == 1
    assert live_server.store.count_events(pid) == 1
    seen = live_server.store.get_group(pid, "project", "p1")["last_seen"]
    # an older track delivered late does not move last_seen back
    old = {"event": "Older", "properties": {**ev["properties"], "$insert_id": "ins-0",
                                            "time": now - 3600}}
    _mp(live_server, "/track", old)
    assert live_server.store.get_group(pid, "project", "p1")["last_seen"] == seen
    # profiles: the newer $time wins whatever the order; an identical retry is stored once
    newer = {"$token": token, "$distinct_id": "u1", "$time": now * 1000,
             "$set": {"plan": "enterprise"}}
    older = {**newer, "$time": (now - 60) * 1000, "$set": {"plan": "free"}}
    before = live_server.store.count_events(pid)
    for rec in (newer, older, newer):
        assert _mp(live_server, "/engage", rec).json()["status"] == 1
    assert live_server.store.get_person(pid, "u1")["properties"]["plan"] == "enterprise"
    assert live_server.store.count_events(pid) == before + 2


def test_node_mixpanel_batch_alias_and_operations_not_applied(live_server):
    from urllib.parse import urlparse

    from tests.capabilities import run_node

    pid, token = live_server.project["id"], live_server.project["api_token"]
    u = urlparse(live_server.url)
    out = run_node("""
const mp = require('mixpanel').init(process.env.KEY, {host: process.env.HOST,
  port: +process.env.PORT, protocol: 'http'});
const p = (f) => new Promise((ok) => f((e) => ok(e ? String(e) : null)));
(async () => {
  const errors = [
    await p(cb => mp.people.set('u1', {email: 'jane@acme.io'}, cb)),
    await p(cb => mp.people.increment('u1', 'logins', 1, cb)),
    await p(cb => mp.people.union('u1', {tags: ['a']}, cb)),
    await p(cb => mp.people.append('u1', 'tags', 'b', cb)),
    await p(cb => mp.groups.union('account', 'a1', {tags: ['a']}, cb)),
    await p(cb => mp.alias('u1', 'anon-9', cb)),
    await p(cb => mp.track_batch([
      {event: 'One', properties: {distinct_id: 'u1', time: Date.now() - 1000}},
      {event: 'Two', properties: {distinct_id: 'u1'}}], cb)),
  ];
  console.log(JSON.stringify({errors}));
})();
""", env={"KEY": token, "HOST": u.hostname, "PORT": str(u.port)})
    assert out == {"errors": [None] * 7}, out
    assert live_server.store.get_person(pid, "u1")["properties"] == {"email": "jane@acme.io"}
    events = live_server.store.conn().execute(
        "SELECT event FROM events WHERE project_id = ?", [pid]).fetchall()
    assert {"One", "Two"} <= {e for (e,) in events}
