"""The decide endpoint (SPEC §5), driven by the stock `posthog` client against a real
server, plus the wire details the client does not exercise."""

from __future__ import annotations

import gzip
import json

import pytest
import requests
from posthog import Posthog

from flagsvc.engine import bucket
from flagsvc.ingest.model import Call

pytestmark = pytest.mark.backends

T0 = 1_760_000_000.0


def _seed(store, pid):
    store.ingest(pid, [
        Call("group", "a", T0, group_type="account", group_key="a1",
             group_set={"plan": "enterprise", "employees": 120}),
        Call("group", "w", T0, group_type="workspace", group_key="w1", parent_key="a1",
             parent_type="account"),
        Call("group", "p", T0, group_type="project", group_key="p1", parent_key="w1",
             parent_type="workspace"),
        Call("identify", "u", T0, distinct_id="alice", person_set={"email": "alice@acme.com"}),
    ])
    flags = [
        {"key": "enterprise-only", "bucket_by": "account",
         "conditions": [{"properties": [{"type": "group", "group_type": "account", "key": "plan",
                                         "operator": "exact", "value": ["enterprise"]}]}],
         "payloads": {"true": {"limit": 10}}},
        {"key": "ab-test", "bucket_by": "account", "conditions": [{}],
         "variants": [{"key": "control", "weight": 50}, {"key": "test", "weight": 50}],
         "payloads": {"control": {"color": "blue"}, "test": {"color": "green"}}},
        {"key": "acme-people", "conditions": [{"properties": [
            {"type": "person", "key": "email", "operator": "ends_with", "value": "@acme.com"}]}]},
        {"key": "off", "active": False},
        {"key": "broken", "conditions": [{"properties": [
            {"type": "person", "key": "x", "operator": "no_such_operator", "value": 1}]}]},
    ]
    for f in flags:
        store.create_flag(pid, f)


@pytest.fixture
def ph(live_server):
    _seed(live_server.store, live_server.project["id"])
    client = Posthog(live_server.project["api_token"], host=live_server.url, sync_mode=True,
                     feature_flags_request_timeout_seconds=10)
    yield client


def _expected_variant(identifier):
    from flagsvc.engine import variant_target

    return "control" if variant_target("ab-test", identifier, 100) <= 50 else "test"


def test_stock_posthog_client_get_feature_flag_with_inferred_account(ph):
    assert ph.get_feature_flag("enterprise-only", "bob", groups={"project": "p1"},
                               send_feature_flag_events=False) is True
    assert ph.feature_enabled("enterprise-only", "bob", groups={"project": "p1"},
                              send_feature_flag_events=False) is True
    # No group at all: off (never bucketed on the distinct id).
    assert ph.get_feature_flag("enterprise-only", "bob", send_feature_flag_events=False) is False
    assert ph.get_feature_flag("ab-test", "bob", groups={"project": "p1"},
                               send_feature_flag_events=False) == _expected_variant("a1")


def test_stock_posthog_client_payloads_and_all_flags(ph):
    assert ph.get_feature_flag_payload("enterprise-only", "bob", groups={"account": "a1"}) == {
        "limit": 10}
    variant = _expected_variant("a1")
    assert ph.get_feature_flag_payload("ab-test", "bob", groups={"account": "a1"}) == {
        "color": "blue" if variant == "control" else "green"}
    flags = ph.get_all_flags("alice", groups={"project": "p1"})
    assert flags == {"enterprise-only": True, "ab-test": variant, "acme-people": True,
                     "off": False, "broken": False}
    # Stored person properties are used; request properties override them per key.
    assert ph.get_feature_flag("acme-people", "alice", person_properties={"email": "a@b.c"},
                               send_feature_flag_events=False) is False


def test_stock_posthog_client_every_user_of_an_org_gets_the_same_variant(ph):
    answers = {ph.get_feature_flag("ab-test", f"user-{i}", groups={"account": "org-7"},
                                   send_feature_flag_events=False) for i in range(15)}
    assert answers == {_expected_variant("org-7")}


def test_v2_response_shape(live_server):
    _seed(live_server.store, live_server.project["id"])
    r = requests.post(f"{live_server.url}/flags/?v=2", json={
        "token": live_server.project["api_token"], "groups": {"project": "p1"}})
    assert r.status_code == 200
    body = r.json()
    assert set(body) >= {"flags", "errorsWhileComputingFlags", "requestId", "evaluatedAt"}
    assert body["errorsWhileComputingFlags"] is True  # the broken flag
    f = body["flags"]["enterprise-only"]
    assert f["enabled"] is True and f["variant"] is None
    assert f["reason"] == {"code": "condition_match", "condition_index": 0,
                           "description": "Matched condition set 1"}
    assert json.loads(f["metadata"]["payload"]) == {"limit": 10}
    assert isinstance(f["metadata"]["id"], int) and f["metadata"]["version"] == 1
    assert body["flags"]["broken"]["reason"]["code"] == "error"
    assert body["flags"]["off"]["reason"]["code"] == "flag_disabled"
    # distinct_id is optional when only group-bucketed flags are asked.
    assert body["flags"]["acme-people"]["enabled"] is False


@pytest.mark.parametrize("path", ["/flags", "/flags/?v=2", "/flags/?v=4", "/decide/?v=4"])
def test_all_paths_accept_gzip_and_flag_keys(live_server, path):
    _seed(live_server.store, live_server.project["id"])
    body = gzip.compress(json.dumps({"api_key": live_server.project["api_token"],
                                     "distinct_id": "x", "groups": {"account": "a1"},
                                     "flag_keys_to_evaluate": ["enterprise-only"]}).encode())
    r = requests.post(live_server.url + path, data=body,
                      headers={"Content-Encoding": "gzip", "Content-Type": "application/json"})
    assert r.status_code == 200, r.text
    assert list(r.json()["flags"]) == ["enterprise-only"]


def test_legacy_decide_v3_shape(live_server):
    _seed(live_server.store, live_server.project["id"])
    r = requests.post(f"{live_server.url}/decide/?v=3", json={
        "api_key": live_server.project["api_token"], "distinct_id": "alice",
        "groups": {"account": "a1"}})
    body = r.json()
    assert body["featureFlags"]["enterprise-only"] is True
    assert body["featureFlags"]["acme-people"] is True
    assert body["featureFlags"]["off"] is False
    assert json.loads(body["featureFlagPayloads"]["enterprise-only"]) == {"limit": 10}
    assert "off" not in body["featureFlagPayloads"]


def test_request_group_properties_override_stored(live_server):
    _seed(live_server.store, live_server.project["id"])
    r = requests.post(f"{live_server.url}/flags/?v=2", json={
        "api_key": live_server.project["api_token"], "groups": {"project": "p1"},
        "group_properties": {"account": {"plan": "free"}}})
    assert r.json()["flags"]["enterprise-only"]["enabled"] is False


@pytest.mark.parametrize("body,status,code", [
    ({"api_key": "phc_unknown"}, 401, "unauthorized"),
    ({}, 401, "unauthorized"),
    ({"api_key": "@", "groups": []}, 401, "unauthorized"),
])
def test_bad_tokens(live_server, body, status, code):
    r = requests.post(f"{live_server.url}/flags/?v=2", json=body)
    assert r.status_code == status and r.json()["code"] == code


def test_secret_key_is_not_accepted_on_decide(live_server):
    r = requests.post(f"{live_server.url}/flags/?v=2",
                      json={"api_key": live_server.project["secret_key"]})
    assert r.status_code == 401


@pytest.mark.parametrize("data,status", [
    (b"{not json", 400), (b"[1,2]", 400), (b"", 400), (b'{"a": NaN}', 400),
    (b"\xff\xfe{}", 400), (b"[" * 10000 + b"]" * 10000, 400),
])
def test_malformed_bodies_are_clear_4xx(live_server, data, status):
    r = requests.post(f"{live_server.url}/flags/?v=2", data=data,
                      headers={"Content-Type": "application/json"})
    assert r.status_code == status
    assert r.json()["message"]


def test_wrong_field_types_are_400(live_server):
    tok = live_server.project["api_token"]
    for body in ({"api_key": tok, "groups": ["a"]}, {"api_key": tok, "flag_keys_to_evaluate": "x"},
                 {"api_key": tok, "distinct_id": {"a": 1}}):
        r = requests.post(f"{live_server.url}/flags/?v=2", json=body)
        assert r.status_code == 400, body


def test_gzip_bomb_is_413(live_server):
    bomb = gzip.compress(b"{" + b" " * (50 * 1024 * 1024) + b"}")
    r = requests.post(f"{live_server.url}/flags/?v=2", data=bomb,
                      headers={"Content-Encoding": "gzip"})
    assert r.status_code == 413


def test_cors_on_decide_preflight(live_server):
    r = requests.options(f"{live_server.url}/flags/?v=2",
                         headers={"Origin": "https://app.example.com",
                                  "Access-Control-Request-Method": "POST"})
    assert r.status_code == 204
    assert r.headers["Access-Control-Allow-Origin"] == "https://app.example.com"


def test_bucket_matches_spec_hash(live_server):
    """Over many organizations, enabled ⇔ SPEC §4 bucket <= rollout."""
    pid = live_server.project["id"]
    live_server.store.create_flag(pid, {"key": "thirty", "bucket_by": "organization",
                                        "conditions": [{"rollout_percentage": 30}]})
    tok = live_server.project["api_token"]
    for i in range(60):
        org = f"org-{i}"
        r = requests.post(f"{live_server.url}/flags/?v=2",
                          json={"api_key": tok, "groups": {"organization": org}})
        assert r.json()["flags"]["thirty"]["enabled"] is (bucket("thirty", org) <= 30)


def test_stock_posthog_client_evaluate_flags_snapshot(ph):
    snap = ph.evaluate_flags("alice", groups={"project": "p1"})
    assert snap.is_enabled("enterprise-only") is True
    assert snap.get_flag("ab-test", send_feature_flag_events=False) == _expected_variant("a1")
    assert snap.get_flag_payload("enterprise-only") == {"limit": 10}
    assert snap.is_enabled("off") is False


# ---------------------------------------------------------------- the WSGI decide path
# app.py sends POST /flags and /decide to api/decide.py's `Decide` before Flask.

def _environ(path, body, query="", **extra):
    import io

    from werkzeug.test import EnvironBuilder

    env = EnvironBuilder(path=path, query_string=query, method="POST", data=body,
                         content_type="application/json").get_environ()
    env.update(extra)
    env["wsgi.input"] = io.BytesIO(body)
    return env


def _call(wsgi, env):
    got = {}

    def start_response(status, headers, exc_info=None):
        got["status"], got["headers"] = status, dict(headers)

    body = b"".join(wsgi(env, start_response))
    return got["status"], got["headers"], json.loads(body)


def _volatile(answer):
    return {k: v for k, v in answer.items() if k not in ("requestId", "evaluatedAt")}


@pytest.mark.parametrize("path,query", [("/flags/", "v=2"), ("/flags", ""), ("/decide/", "v=3"),
                                        ("/decide", "v=4"), ("/decide/", "")])
def test_decide_handler_answers_like_the_flask_route(app, app_project, path, query):
    _seed(app.extensions["flagsvc"].store, app_project["id"])
    body = json.dumps({"api_key": app_project["api_token"], "distinct_id": "alice",
                       "groups": {"project": "p1"}}).encode()
    routing = app.wsgi_app.wsgi_app
    flask_wsgi = routing.flask_wsgi

    def flask_must_not_see_posts(environ, start_response):
        raise AssertionError(f"{environ['REQUEST_METHOD']} {environ['PATH_INFO']} reached Flask")

    routing.flask_wsgi = flask_must_not_see_posts
    fast = _call(app, _environ(path, body, query))
    routing.flask_wsgi = flask_wsgi
    flask_only = _call(flask_wsgi, _environ(path, body, query))
    assert fast[0] == flask_only[0] == "200 OK"
    assert _volatile(fast[2]) == _volatile(flask_only[2])
    assert ("flags" in fast[2]) == (path.startswith("/flags") or query == "v=4")
    assert fast[1]["Content-Type"] == "application/json"


def test_decide_post_carries_cors_headers_for_browsers_only(client, app_project):
    body = {"api_key": app_project["api_token"], "distinct_id": "u1"}
    origin = {"Origin": "https://app.example.com"}
    for payload, status in ((body, 200), ({**body, "api_key": "nope"}, 401)):
        r = client.post("/flags/?v=2", json=payload, headers=origin)
        assert r.status_code == status
        assert r.headers["Access-Control-Allow-Origin"] == "https://app.example.com"
        assert r.headers["Vary"] == "Origin"
        assert "Access-Control-Allow-Origin" not in client.post("/flags/?v=2",
                                                                 json=payload).headers


def test_decide_with_an_empty_version_answers_the_flags_shape(client, app_project):
    body = {"api_key": app_project["api_token"], "distinct_id": "u1"}
    assert "flags" in client.post("/decide/?v=", json=body).get_json()
    assert "featureFlags" in client.post("/decide/", json=body).get_json()


def test_decide_handler_reads_a_chunked_body_and_refuses_a_bad_length(app, app_project):
    body = json.dumps({"api_key": app_project["api_token"], "distinct_id": "u1"}).encode()
    env = _environ("/flags/", body, HTTP_TRANSFER_ENCODING="chunked")
    env.pop("CONTENT_LENGTH")
    env["wsgi.input_terminated"] = True  # gunicorn decodes chunked bodies and ends the stream
    status, _, answer = _call(app, env)
    assert status == "200 OK" and answer["errorsWhileComputingFlags"] is False
    for bad in ("ten", "+5", "1_0", "²"):
        status, _, answer = _call(app, _environ("/flags/", body, CONTENT_LENGTH=bad))
        assert status.startswith("400") and answer["code"] == "invalid_body", bad
    # chunked wins over a Content-Length sent along with it (the server decodes the body)
    env = _environ("/flags/", body, HTTP_TRANSFER_ENCODING="chunked", CONTENT_LENGTH="1")
    env["wsgi.input_terminated"] = True
    assert _call(app, env)[0] == "200 OK"


def test_decide_handler_maps_failures_to_json_errors(app, app_project, monkeypatch, caplog):
    import sqlite3

    svc = app.extensions["flagsvc"]
    body = json.dumps({"api_key": app_project["api_token"], "distinct_id": "u1"}).encode()

    def fail(exc):
        def evaluate_checked(*a, **k):
            raise exc
        monkeypatch.setattr(svc, "evaluate_checked", evaluate_checked)

    fail(sqlite3.OperationalError("database is locked"))
    status, _, answer = _call(app, _environ("/flags/", body))
    assert status.startswith("503") and answer["code"] == "unavailable"
    fail(RuntimeError("secret internals"))
    status, _, answer = _call(app, _environ("/flags/", body))
    assert status.startswith("500") and answer["code"] == "internal_error"
    assert "secret internals" not in json.dumps(answer)
    assert "secret internals" in caplog.text  # logged for the operator


def test_other_methods_and_paths_still_go_through_flask(client, app_project):
    assert client.get("/flags/").status_code == 405
    assert client.options("/flags/").status_code == 204
    assert client.post("/flags//").status_code == 308  # werkzeug merges slashes, as before
