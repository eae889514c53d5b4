"""Ingestion endpoints over HTTP (Flask test client): every route, auth variants, gzip,
partial batches, limits, bad input, idempotency, ordering, warnings, privacy, CORS, metrics."""

from __future__ import annotations

import base64
import gzip
import json
import sqlite3
import time
import uuid

import pytest
from prometheus_client import REGISTRY

from flagsvc.app import create_app

pytestmark = pytest.mark.backends


@pytest.fixture
def store(app):  # noqa: F811 - the app's own store (overrides conftest's separate one)
    return app.extensions["flagsvc"].store


@pytest.fixture
def pid(app_project):
    return app_project["id"]


@pytest.fixture
def token(app_project):
    return app_project["api_token"]


def basic(user: str, password: str = "") -> dict[str, str]:
    raw = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {raw}"}


def post(client, path, body, headers=None, raw=False, **kw):
    data = body if raw else json.dumps(body)
    return client.post(path, data=data, headers={"Content-Type": "application/json",
                                                  **(headers or {})}, **kw)


def iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts * 1000) % 1000:03d}Z"


def events(store, pid):
    return store.count_events(pid)


# ------------------------------------------------------------ Segment routes

SEGMENT_SINGLE = [
    ("/v1/identify", {"userId": "u1", "traits": {"plan": "pro"}}),
    ("/v1/group", {"userId": "u1", "groupId": "acme", "traits": {"plan": "pro"}}),
    ("/v1/track", {"userId": "u1", "event": "Clicked", "context": {"groupId": "acme"}}),
    ("/v1/page", {"userId": "u1", "name": "Home"}),
    ("/v1/screen", {"userId": "u1", "name": "Settings"}),
    ("/v1/alias", {"userId": "u1", "previousId": "anon-1"}),
]


@pytest.mark.parametrize("path, msg", SEGMENT_SINGLE, ids=[p for p, _ in SEGMENT_SINGLE])
@pytest.mark.parametrize("slash", ["", "/"])
def test_segment_single_message_routes(client, store, pid, token, path, msg, slash):
    r = post(client, path + slash, {**msg, "writeKey": token})
    assert (r.status_code, r.get_json()) == (200, {"success": True})
    assert events(store, pid) == 1
    assert store.get_person(pid, "u1")["distinct_ids"][0] == "u1"


def test_segment_identify_and_group_store_properties(client, store, pid, token):
    post(client, "/v1/identify", {"writeKey": token, "userId": "u1",
                                  "traits": {"email": "a@x.io", "plan": "pro"}})
    post(client, "/v1/identify", {"writeKey": token, "userId": "u1", "traits": {"plan": None}})
    assert store.person_properties(pid, "u1") == {"email": "a@x.io", "plan": None}
    post(client, "/v1/group", {"writeKey": token, "userId": "u1", "groupId": "w1", "traits": {
        "group_type": "workspace", "name": "Eng", "parent_group_id": "a1",
        "parent_group_type": "account"}})
    g = store.get_group(pid, "workspace", "w1")
    assert g["properties"] == {"name": "Eng"}
    assert g["parent"] == {"group_type": "account", "group_key": "a1"}
    assert [m["distinct_id"] for m in g["members"]] == ["u1"]


@pytest.mark.parametrize("path", ["/v1/batch", "/v1/import", "/v1/batch/"])
def test_segment_batch_and_import(client, store, pid, token, path):
    r = post(client, path, {"writeKey": token, "batch": [
        {"type": "identify", "userId": "u1", "traits": {"a": 1}},
        {"type": "track", "userId": "u1", "event": "E", "properties": {"x": 1}}]})
    assert (r.status_code, r.get_json()) == (200, {"success": True})
    assert events(store, pid) == 2


def test_segment_default_group_type_is_the_projects(client, store, pid, token):
    store.update_project(pid, default_group_type="account")
    post(client, "/v1/group", {"writeKey": token, "groupId": "a1", "traits": {"plan": "pro"}})
    assert store.group_properties(pid, "account", "a1") == {"plan": "pro"}


# ------------------------------------------------------------ auth

def test_segment_basic_auth_as_the_stock_client_sends_it(client, store, pid, token):
    r = post(client, "/v1/batch", {"batch": [{"type": "identify", "userId": "u1"}]},
             headers=basic(token))
    assert r.status_code == 200 and events(store, pid) == 1


def test_accoil_raw_basic_token(client, store, pid, token):
    r = post(client, "/v2/group", {"groupId": "acme_123", "traits": {"plan": "enterprise"}},
             headers={"Authorization": f"Basic {token}"})
    assert (r.status_code, r.get_json()) == (200, {"success": True})
    r = post(client, "/v2/identify", {"userId": "u1", "traits": {"role": "Admin"}},
             headers=basic(token))
    assert r.status_code == 200
    r = post(client, "/v2/track", {"userId": "u1", "event": "Task Completed",
                                   "context": {"groupId": "acme_123"}},
             headers={"Authorization": f"Basic {token}"})
    assert r.status_code == 200
    assert store.group_properties(pid, "organization", "acme_123") == {"plan": "enterprise"}
    assert store.person_properties(pid, "u1") == {"role": "Admin"}
    assert [g["group_key"] for g in store.get_person(pid, "u1")["groups"]] == ["acme_123"]


@pytest.mark.parametrize("where", ["api_key", "token", "event_token", "properties_token",
                                   "query"])
def test_posthog_token_places(client, store, pid, token, where):
    ev = {"event": "e", "distinct_id": "u1", "properties": {}}
    path, body = "/batch/", {"batch": [ev]}
    if where in ("api_key", "token"):
        body[where] = token
    elif where == "event_token":
        path, body = "/e/", {**ev, "token": token}
    elif where == "properties_token":  # posthog-js single event
        path, body = "/capture/", {**ev, "properties": {"token": token}}
    else:
        path = f"/i/v0/e/?token={token}"
    r = post(client, path, body)
    assert (r.status_code, r.get_json()) == (200, {"status": 1})
    assert events(store, pid) == 1


@pytest.mark.parametrize("path, body, headers", [
    ("/v1/identify", {"userId": "u1"}, {}),
    ("/v1/identify", {"userId": "u1", "writeKey": "wrong"}, {}),
    ("/v1/batch", {"batch": []}, basic("wrong")),
    ("/v2/identify", {"userId": "u1"}, {"Authorization": "Basic nope"}),
    ("/v2/identify", {"userId": "u1"}, {}),
    ("/batch/", {"batch": [{"event": "e", "distinct_id": "u"}]}, {}),
    ("/batch/", {"api_key": "phc_unknown", "batch": []}, {}),
    ("/e/", {"event": "e", "distinct_id": "u", "properties": {"token": "x"}}, {}),
])
def test_unknown_or_missing_token_is_401(client, store, pid, path, body, headers):
    r = post(client, path, body, headers=headers)
    assert r.status_code == 401
    assert r.get_json()["code"] == "unauthorized" and r.get_json()["message"]
    assert events(store, pid) == 0


def test_the_secret_key_is_not_an_ingestion_token(client, app_project):
    r = post(client, "/v1/identify", {"userId": "u1", "writeKey": app_project["secret_key"]})
    assert r.status_code == 401


# ------------------------------------------------------------ PostHog routes

@pytest.mark.parametrize("path", ["/batch", "/batch/", "/capture", "/capture/", "/e", "/e/",
                                  "/i/v0/e", "/i/v0/e/", "/track/"])
def test_posthog_routes(client, store, pid, token, path):
    r = post(client, path, {"api_key": token, "batch": [
        {"event": "$groupidentify", "distinct_id": "rnd", "properties": {
            "$group_type": "company", "$group_key": "acme", "$group_set": {"plan": "pro"}}},
        {"event": "clicked", "distinct_id": "u1", "properties": {"$groups": {"company": "acme"}}},
    ]})
    assert (r.status_code, r.get_json()) == (200, {"status": 1})
    assert store.group_properties(pid, "company", "acme") == {"plan": "pro"}
    assert [m["distinct_id"] for m in store.get_group(pid, "company", "acme")["members"]] == ["u1"]


def test_posthog_list_body_and_engage(client, store, pid, token):
    r = post(client, "/e/", [{"event": "$identify", "distinct_id": "u1", "properties": {
        "token": token, "$anon_distinct_id": "anon", "$set": {"email": "a@x.io"}}}])
    assert r.status_code == 200
    assert sorted(store.get_person(pid, "u1")["distinct_ids"]) == ["anon", "u1"]
    r = post(client, "/engage/", {"$token": token, "$distinct_id": "u1", "$set": {"plan": "pro"}})
    assert r.status_code == 200
    assert store.person_properties(pid, "anon") == {"email": "a@x.io", "plan": "pro"}


def test_posthog_set_once_unset_and_alias(client, store, pid, token):
    post(client, "/batch/", {"api_key": token, "batch": [
        {"event": "$set", "distinct_id": "u1", "$set": {"plan": "free", "tmp": 1},
         "timestamp": iso(time.time() - 30)},
        {"event": "$set_once", "distinct_id": "u1", "$set_once": {"plan": "x", "first": "web"},
         "timestamp": iso(time.time() - 20)},
        {"event": "e", "distinct_id": "u1", "properties": {"$unset": ["tmp"]},
         "timestamp": iso(time.time() - 10)},
        {"event": "$create_alias", "distinct_id": "old", "properties": {"alias": "u1"}}]})
    assert store.person_properties(pid, "u1") == {"plan": "free", "first": "web"}
    assert sorted(store.get_person(pid, "u1")["distinct_ids"]) == ["old", "u1"]


# ------------------------------------------------------------ encodings and bad bodies

@pytest.mark.parametrize("path, body", [
    ("/batch/", lambda t: {"api_key": t, "batch": [{"event": "e", "distinct_id": "u1"}]}),
    ("/v1/batch", lambda t: {"writeKey": t, "batch": [{"type": "identify", "userId": "u1"}]}),
])
def test_gzip_body(client, store, pid, token, path, body):
    data = gzip.compress(json.dumps(body(token)).encode())
    r = post(client, path, data, raw=True, headers={"Content-Encoding": "gzip"})
    assert r.status_code == 200 and events(store, pid) == 1


def test_posthog_js_gzip_query_and_base64_form(client, store, pid, token):
    data = gzip.compress(json.dumps({"event": "a", "distinct_id": "u1", "uuid": "1",
                                     "properties": {"token": token}}).encode())
    r = client.post("/e/?compression=gzip-js&ver=1.0", data=data,
                    headers={"Content-Type": "text/plain"})
    assert r.status_code == 200
    form = "data=" + base64.b64encode(json.dumps(
        [{"event": "b", "distinct_id": "u1", "uuid": "2", "properties": {"token": token}}]
    ).encode()).decode()
    r = client.post("/e/", data=form, headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 200
    assert events(store, pid) == 2


@pytest.mark.parametrize("data, code", [
    (b'{"writeKey": "k", "userId": "u1",', "invalid_json"),
    (b'{"writeKey": "\xff\xfe", "userId": "u1"}', "invalid_json"),
    (b'{"writeKey": "k", "userId": "u1", "traits": {"n": NaN}}', "invalid_json"),
    (b"[" * 5000 + b"]" * 5000, "invalid_json"),
    (b"", "invalid_json"),
    (b"\x1f\x8b\x08\x00garbage", "invalid_body"),
])
def test_malformed_bodies_are_400_with_a_clear_message(client, store, pid, data, code):
    r = client.post("/v1/identify", data=data, headers={"Content-Type": "application/json"})
    assert r.status_code == 400
    body = r.get_json()
    assert body["code"] == code and body["message"]
    assert events(store, pid) == 0


def test_deep_but_valid_json_rejects_the_event_not_the_server(client, store, pid, token):
    deep = "[" * 200 + "]" * 200
    body = ('{"writeKey": "' + token + '", "batch": [{"type": "identify", "userId": "u1", '
            '"traits": {"x": ' + deep + '}}, {"type": "identify", "userId": "u2"}]}')
    r = client.post("/v1/batch", data=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 200
    assert r.get_json()["rejected"] == [{"index": 0, "reason": "event is nested deeper than 64 "
                                                               "levels"}]
    assert events(store, pid) == 1


@pytest.fixture
def small(db_path):
    """An app with tiny limits."""
    app = create_app({"DATABASE": db_path, "LOG_LEVEL": "WARNING", "MAX_BODY_BYTES": 4000,
                      "MAX_INGEST_BODY_BYTES": 4000, "MAX_EVENT_BYTES": 500, "MAX_BATCH_EVENTS": 5})
    project = app.extensions["flagsvc"].store.create_project("small")
    return app.test_client(), project["api_token"], app.extensions["flagsvc"].store, project["id"]


def test_oversize_body_is_413(small):
    client, token, store, pid = small
    r = post(client, "/v1/identify", {"writeKey": token, "userId": "u1",
                                      "traits": {"x": "y" * 5000}})
    assert r.status_code == 413 and r.get_json()["code"] == "payload_too_large"


def test_gzip_bomb_is_413(small):
    client, token, store, pid = small
    bomb = gzip.compress(b'{"writeKey": "' + b" " * 3_000_000 + b'"}')
    assert len(bomb) < 4000
    r = post(client, "/v1/identify", bomb, raw=True, headers={"Content-Encoding": "gzip"})
    assert r.status_code == 413 and "decompressed" in r.get_json()["message"]


def test_too_many_events_is_413(small):
    client, token, store, pid = small
    r = post(client, "/batch/", {"api_key": token, "batch": [
        {"event": "e", "distinct_id": "u1"}] * 6})
    assert r.status_code == 413
    assert r.get_json()["code"] == "too_many_events" and "limit is 5" in r.get_json()["message"]
    assert store.count_events(pid) == 0


def test_oversize_event_is_rejected_alone(small):
    client, token, store, pid = small
    r = post(client, "/v1/batch", {"writeKey": token, "batch": [
        {"type": "identify", "userId": "u1", "traits": {"blob": "x" * 600}},
        {"type": "identify", "userId": "u2"}]})
    assert r.status_code == 200
    assert r.get_json()["rejected"][0]["index"] == 0
    assert "over the 500 byte limit" in r.get_json()["rejected"][0]["reason"]
    assert store.count_events(pid) == 1


# ------------------------------------------------------------ partial batches

def test_partial_batch_stores_the_good_and_reports_the_bad(client, store, pid, token):
    future = iso(time.time() + 3 * 86400)
    r = post(client, "/v1/batch", {"writeKey": token, "batch": [
        {"type": "identify", "userId": "u1", "traits": {"a": 1}},
        "not an object",
        {"type": "track", "userId": "u1"},
        {"type": "group", "userId": "u1", "traits": {}},
        {"type": "identify", "traits": {"a": 1}, "messageId": "m-noid"},
        {"type": "identify", "userId": "u1", "traits": [1]},
        {"type": "identify", "userId": "u2", "timestamp": future},
        {"type": "identify", "userId": "u2", "timestamp": "1999-01-01T00:00:00Z"},
        {"type": "identify", "userId": "u2", "timestamp": "tomorrow"},
        {"type": "group", "groupId": "acme", "traits": {"plan": "pro"}}]})
    assert r.status_code == 200
    body = r.get_json()
    assert body["success"] is True
    assert [x["index"] for x in body["rejected"]] == [1, 2, 3, 4, 5, 6, 7, 8]
    assert body["rejected"][3]["message_id"] == "m-noid"
    reasons = " | ".join(x["reason"] for x in body["rejected"])
    for words in ("JSON object", "event is required", "groupId", "userId or an anonymousId",
                  "traits must be an object", "in the future", "before 2000", "ISO-8601"):
        assert words in reasons
    assert store.count_events(pid) == 2
    assert store.person_properties(pid, "u2") is None


@pytest.mark.parametrize("path, body", [
    ("/v1/batch", lambda t: {"writeKey": t, "batch": [{"type": "track"}, 3]}),
    ("/batch/", lambda t: {"api_key": t, "batch": [{"event": "e"}, {"distinct_id": "u"}]}),
    ("/v1/track", lambda t: {"writeKey": t, "userId": "u1"}),
    ("/v2/group", lambda t: {"writeKey": t, "traits": {}}),
])
def test_all_events_bad_is_400_with_the_list(client, store, pid, token, path, body):
    r = post(client, path, body(token))
    assert r.status_code == 400
    err = r.get_json()
    assert err["code"] == "invalid_events" and "rejected" in err["message"]
    assert [e["index"] for e in err["errors"]] == list(range(len(err["errors"])))
    assert events(store, pid) == 0


@pytest.mark.parametrize("path, body", [
    ("/v1/batch", {"batch": {"type": "identify"}}),
    ("/batch/", {"batch": "x"}),
    ("/v1/identify", [1, 2]),
])
def test_wrong_body_shape_is_400(client, token, path, body):
    if isinstance(body, dict):
        body = {**body, "writeKey": token, "api_key": token}
    r = post(client, path, body, headers=basic(token))
    assert r.status_code == 400 and r.get_json()["code"] in ("invalid_body", "invalid_json")


def test_empty_batch_is_ok(client, token):
    r = post(client, "/v1/batch", {"writeKey": token, "batch": []})
    assert (r.status_code, r.get_json()) == (200, {"success": True})


# ------------------------------------------------------------ idempotency and order

def test_retried_batch_is_stored_once(client, store, pid, token):
    body = {"writeKey": token, "batch": [
        {"type": "track", "userId": "u1", "event": "E", "messageId": "m1",
         "context": {"groupId": "acme"}},
        {"type": "identify", "userId": "u1", "traits": {"n": 1}},  # no messageId: derived
    ]}
    assert post(client, "/v1/batch", body).status_code == 200
    body["sentAt"] = iso(time.time())  # a retry is re-stamped by the client
    assert post(client, "/v1/batch", body).status_code == 200
    assert store.count_events(pid) == 2
    ev = {"event": "e", "distinct_id": "u1", "uuid": str(uuid.uuid4())}
    for _ in range(2):
        assert post(client, "/batch/", {"api_key": token, "batch": [ev]}).status_code == 200
    assert store.count_events(pid) == 3


def test_older_event_arriving_later_does_not_overwrite(client, store, pid, token):
    now = time.time()
    post(client, "/v1/identify", {"writeKey": token, "userId": "u1", "traits": {"plan": "pro"},
                                  "timestamp": iso(now - 10)})
    post(client, "/v1/identify", {"writeKey": token, "userId": "u1", "traits": {"plan": "free"},
                                  "timestamp": iso(now - 60)})
    post(client, "/v1/group", {"writeKey": token, "groupId": "acme", "traits": {"plan": "ent"},
                               "timestamp": iso(now - 10)})
    post(client, "/batch/", {"api_key": token, "batch": [
        {"event": "$groupidentify", "distinct_id": "x", "timestamp": iso(now - 60),
         "properties": {"$group_type": "organization", "$group_key": "acme",
                        "$group_set": {"plan": "old"}}}]})
    assert store.person_properties(pid, "u1") == {"plan": "pro"}
    assert store.group_properties(pid, "organization", "acme") == {"plan": "ent"}


def test_skewed_client_clock_is_corrected(client, store, pid, token):
    """A client whose clock is a day fast: its event is still ordered by real time."""
    now = time.time()
    post(client, "/v1/identify", {"writeKey": token, "userId": "u1", "traits": {"plan": "pro"},
                                  "timestamp": iso(now - 5)})
    fast = now + 86400
    post(client, "/v1/batch", {"writeKey": token, "sentAt": iso(fast), "batch": [
        {"type": "identify", "userId": "u1", "traits": {"plan": "stale"},
         "timestamp": iso(fast - 30)}]})  # really 30 s ago: older than "pro"
    assert store.person_properties(pid, "u1") == {"plan": "pro"}


# ------------------------------------------------------------ warnings, privacy, durability

def test_sixth_group_type_is_dropped_with_a_warning(client, store, pid, token):
    for t in ("a", "b", "c", "d", "e"):
        store.create_group_type(pid, t)
    r = post(client, "/v1/batch", {"writeKey": token, "batch": [
        {"type": "group", "groupId": "x", "groupType": "f", "traits": {"p": 1}},
        {"type": "group", "groupId": "x", "groupType": "a", "traits": {"p": 2}}]})
    assert r.status_code == 200
    warnings = r.get_json()["warnings"]
    assert len(warnings) == 1 and "'f'" in warnings[0]
    assert store.group_properties(pid, "f", "x") is None
    assert store.group_properties(pid, "a", "x") == {"p": 2}
    r = post(client, "/batch/", {"api_key": token, "batch": [
        {"event": "e", "distinct_id": "u", "properties": {"$groups": {"g6": "k"}}}]})
    assert r.get_json()["status"] == 1 and "'g6'" in r.get_json()["warnings"][0]


def test_private_properties_are_dropped_or_hashed(client, store, pid, token):
    from flagsvc.ingest.privacy import hash_value

    store.update_project(pid, private_properties={"management_email": "drop",
                                                  "customer_id": "hash"})
    salt = store.hash_salt(pid)
    post(client, "/v1/group", {"writeKey": token, "groupId": "org1", "userId": "u1", "traits": {
        "name": "Acme", "management_email": "boss@acme.io", "customer_id": "cus_42"}})
    post(client, "/batch/", {"api_key": token, "batch": [
        {"event": "$groupidentify", "distinct_id": "x", "properties": {
            "$group_type": "organization", "$group_key": "org2",
            "$group_set": {"customer_id": "cus_7", "management_email": "a@b"}}},
        {"event": "paid", "distinct_id": "u1", "properties": {
            "customer_id": "cus_42", "management_email": "boss@acme.io",
            "$set": {"customer_id": "cus_42"}}}]})
    assert store.group_properties(pid, "organization", "org1") == {
        "name": "Acme", "customer_id": hash_value(salt, "cus_42")}
    assert store.group_properties(pid, "organization", "org2") == {
        "customer_id": hash_value(salt, "cus_7")}
    assert store.person_properties(pid, "u1") == {"customer_id": hash_value(salt, "cus_42")}
    dump = "".join(r[0] for r in store.conn().execute(
        "SELECT properties FROM events UNION ALL SELECT CAST(properties AS TEXT) FROM groups "
        "UNION ALL SELECT properties FROM persons"))
    assert "boss@acme.io" not in dump and "cus_42" not in dump and "cus_7" not in dump


def test_no_2xx_without_a_commit(app, client, store, pid, token, monkeypatch):
    def locked(*a, **kw):
        raise sqlite3.OperationalError("database is locked")

    monkeypatch.setattr(store, "ingest", locked)
    r = post(client, "/v1/identify", {"writeKey": token, "userId": "u1"})
    assert r.status_code == 503 and r.get_json()["code"] == "unavailable"
    monkeypatch.undo()
    assert store.count_events(pid) == 0


def test_metrics_count_stored_duplicate_rejected(client, token):
    def value(outcome):
        return REGISTRY.get_sample_value("flagsvc_ingested_events_total",
                                         {"outcome": outcome}) or 0.0

    before = {o: value(o) for o in ("stored", "duplicate", "rejected")}
    body = {"writeKey": token, "batch": [{"type": "identify", "userId": "u1", "messageId": "a"},
                                         {"type": "identify", "messageId": "b"}]}
    post(client, "/v1/batch", body)
    post(client, "/v1/batch", body)
    assert {o: value(o) - before[o] for o in before} == {"stored": 1, "duplicate": 1,
                                                         "rejected": 2}


# ------------------------------------------------------------ CORS

@pytest.mark.parametrize("path", ["/e/", "/batch/", "/v1/track", "/v2/track", "/i/v0/e/"])
def test_cors_preflight_and_response_headers(client, token, path):
    r = client.options(path, headers={"Origin": "https://app.example.com",
                                      "Access-Control-Request-Method": "POST",
                                      "Access-Control-Request-Headers": "content-type"})
    assert r.status_code == 204
    assert r.headers["Access-Control-Allow-Origin"] == "https://app.example.com"
    assert "POST" in r.headers["Access-Control-Allow-Methods"]
    r = post(client, "/e/", {"event": "e", "distinct_id": "u", "properties": {"token": token}},
             headers={"Origin": "https://app.example.com"})
    assert r.headers["Access-Control-Allow-Origin"] == "https://app.example.com"
