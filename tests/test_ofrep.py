"""OFREP (SPEC §5.2) against a real server: the stock Python `openfeature-sdk` with
`openfeature-provider-ofrep`, and the wire details (errors, ETag/304, CORS) it does not show."""

from __future__ import annotations

import pytest
import requests
from openfeature import api
from openfeature.contrib.provider.ofrep import OFREPProvider
from openfeature.evaluation_context import EvaluationContext
from openfeature.exception import ErrorCode
from openfeature.flag_evaluation import Reason

from tests.test_decide import _expected_variant, _seed

pytestmark = pytest.mark.backends


@pytest.fixture
def server(live_server):
    _seed(live_server.store, live_server.project["id"])
    return live_server


@pytest.fixture
def of_client(server):
    token = server.project["api_token"]
    api.set_provider_and_wait(OFREPProvider(server.url,
                                   headers_factory=lambda: {"Authorization": f"Bearer {token}"}))
    yield api.get_client()
    api.clear_providers()


def post(server, path, body, token=None, **headers):
    token = server.project["api_token"] if token is None else token
    return requests.post(f"{server.url}/ofrep/v1/evaluate/flags{path}", json=body,
                         headers={"X-API-Key": token, **headers}, timeout=10)


def test_stock_provider_account_bucket_from_project_only(of_client):
    """Only {project} known: hierarchy inference finds the account; its bucket, variant and
    payload come back as the stock provider reads them."""
    ctx = EvaluationContext(attributes={"groups": {"project": "p1"}})
    details = of_client.get_string_details("ab-test", "none", ctx)
    assert details.value == _expected_variant("a1")
    assert details.variant == details.value
    assert details.reason == Reason.SPLIT
    assert details.flag_metadata["bucketBy"] == "account"
    assert details.flag_metadata["payload"] in ('{"color":"blue"}', '{"color":"green"}')
    on = of_client.get_boolean_details("enterprise-only", False, ctx)
    assert on.value is True and on.reason == Reason.TARGETING_MATCH
    assert on.flag_metadata["payload"] == '{"limit":10}'
    assert on.flag_metadata["reasonCode"] == "condition_match"


def test_stock_provider_person_properties_and_errors(of_client):
    alice = EvaluationContext("alice")
    assert of_client.get_boolean_value("acme-people", False, alice) is True
    bob = EvaluationContext("bob", {"email": "bob@acme.com"})
    assert of_client.get_boolean_value("acme-people", False, bob) is True
    eve = EvaluationContext("eve", {"email": "eve@other.com"})
    d = of_client.get_boolean_details("acme-people", True, eve)
    assert d.value is False and d.reason == Reason.DEFAULT
    off = of_client.get_boolean_details("off", True, alice)
    assert off.value is False and off.reason == Reason.DISABLED
    missing = of_client.get_boolean_details("no-such-flag", True, alice)
    assert missing.value is True and missing.error_code == ErrorCode.FLAG_NOT_FOUND
    # (a float, as bool is an int in Python and the stock provider checks with isinstance)
    account = EvaluationContext(attributes={"groups": {"account": "a1"}})
    mismatch = of_client.get_float_details("enterprise-only", 7.0, account)
    assert mismatch.value == 7.0 and mismatch.error_code == ErrorCode.TYPE_MISMATCH
    nokey = of_client.get_boolean_details("acme-people", True, EvaluationContext())
    assert nokey.value is True and nokey.error_code == ErrorCode.TARGETING_KEY_MISSING


@pytest.mark.parametrize("body,code", [
    ({"context": []}, "INVALID_CONTEXT"),
    ({"context": {"groups": ["a"]}}, "INVALID_CONTEXT"),
    ({"context": {"group_properties": {"account": 1}}}, "INVALID_CONTEXT"),
    ({"context": {"targetingKey": {"x": 1}}}, "INVALID_CONTEXT"),
    ([1], "PARSE_ERROR"),
])
def test_bad_contexts_are_400_with_ofrep_codes(server, body, code):
    for path in ("/ab-test", ""):
        r = post(server, path, body)
        assert r.status_code == 400, r.text
        assert r.json()["errorCode"] == code
        assert r.json()["errorDetails"]
        if path:
            assert r.json()["key"] == "ab-test"


def test_unparseable_body_and_auth(server):
    r = requests.post(f"{server.url}/ofrep/v1/evaluate/flags/ab-test", data=b"{nope",
                      headers={"Authorization": f"Bearer {server.project['api_token']}",
                               "Content-Type": "application/json"}, timeout=10)
    assert r.status_code == 400 and r.json()["errorCode"] == "PARSE_ERROR"
    assert post(server, "/ab-test", {}, token="nope").status_code == 401
    assert post(server, "/ab-test", {}, token=server.project["secret_key"]).status_code == 401


def test_bulk_etag_304_and_cors(server):
    body = {"context": {"targetingKey": "alice", "groups": {"project": "p1"}}}
    r = post(server, "", body, Origin="http://app.example")
    assert r.status_code == 200
    flags = {f["key"]: f for f in r.json()["flags"]}
    assert flags["ab-test"]["value"] == _expected_variant("a1")
    assert flags["acme-people"]["value"] is True
    assert flags["off"]["reason"] == "DISABLED"
    assert flags["broken"]["reason"] == "ERROR"
    etag = r.headers["ETag"]
    assert r.headers["Access-Control-Allow-Origin"] == "http://app.example"
    assert "ETag" in r.headers["Access-Control-Expose-Headers"]
    again = post(server, "", body, **{"If-None-Match": etag})
    assert again.status_code == 304 and again.headers["ETag"] == etag
    other = post(server, "", {"context": {"targetingKey": "eve"}}, **{"If-None-Match": etag})
    assert other.status_code == 200 and other.headers["ETag"] != etag
    pre = requests.options(f"{server.url}/ofrep/v1/evaluate/flags", timeout=10, headers={
        "Origin": "http://app.example", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type,if-none-match"})
    assert pre.status_code == 204
    assert pre.headers["Access-Control-Allow-Origin"] == "http://app.example"
    assert "if-none-match" in pre.headers["Access-Control-Allow-Headers"].lower()


def test_signed_contexts_and_client_properties_apply_to_ofrep(server):
    """OFREP goes through decide's request path: with require_signed_groups an unsigned
    `groups` attribute is ignored, a `$signature` attribute (or header) restores it."""
    import time

    from flagsvc import sign_context

    auth = {"Authorization": f"Bearer {server.project['secret_key']}"}
    r = requests.post(f"{server.url}/api/project/signing_keys", json={}, headers=auth,
                      timeout=10)
    assert r.status_code == 201, r.text
    key = r.json()["signing_key"]
    r = requests.patch(f"{server.url}/api/project", json={"require_signed_groups": True},
                       headers=auth, timeout=10)
    assert r.status_code == 200, r.text
    time.sleep(0.6)  # settings reach evaluators within cache_seconds
    groups = {"account": "a1"}
    unsigned = post(server, "/enterprise-only", {"context": {"groups": groups}})
    assert unsigned.json()["value"] is False
    signed = {"context": {"groups": groups, "$signature": sign_context(key, None, groups)}}
    assert post(server, "/enterprise-only", signed).json()["value"] is True
    header = post(server, "/enterprise-only", {"context": {"groups": groups}},
                  **{"X-Flagsvc-Signature": sign_context(key, None, groups)})
    assert header.json()["value"] is True
    forged = {"context": {"groups": groups, "$signature": sign_context("nope", None, groups)}}
    assert post(server, "/enterprise-only", forged).json()["value"] is False
