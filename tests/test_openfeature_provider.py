"""flagsvc.openfeature.FlagsvcProvider with the stock `openfeature-sdk`: over the embedded and
the remote FlagClient, typed resolution, errors as the SDK reports them, change events, and
the same answers as decide over random contexts."""

from __future__ import annotations

import threading

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openfeature import api
from openfeature.evaluation_context import EvaluationContext
from openfeature.event import ProviderEvent
from openfeature.exception import ErrorCode
from openfeature.flag_evaluation import Reason

from flagsvc import FlagClient
from flagsvc.openfeature import FlagsvcProvider
from tests.test_decide import _expected_variant, _seed

pytestmark = pytest.mark.backends


@pytest.fixture(params=["embedded", "remote"])
def provider(request, live_server, db_path):
    _seed(live_server.store, live_server.project["id"])
    live_server.store.create_flag(live_server.project["id"], {
        "key": "limits", "bucket_by": "account", "conditions": [{}],
        "payloads": {"true": 25}})
    if request.param == "embedded":
        client = FlagClient.from_database(str(db_path), api_token=live_server.project["api_token"])
    else:
        client = FlagClient.from_server(live_server.url, live_server.project["secret_key"],
                                        poll_seconds=0.2)
    prov = FlagsvcProvider(client, watch_seconds=0.2)
    api.set_provider_and_wait(prov)
    yield prov, api.get_client(), live_server
    api.clear_providers()
    client.close()


PROJECT = EvaluationContext(attributes={"groups": {"project": "p1"}})


def test_account_bucket_variant_and_payload_from_project_only(provider):
    _, of, _ = provider
    d = of.get_string_details("ab-test", "none", PROJECT)
    assert d.value == _expected_variant("a1") and d.variant == d.value
    assert d.reason == Reason.SPLIT and d.flag_metadata["bucketBy"] == "account"
    assert d.flag_metadata["payload"] in ('{"color":"blue"}', '{"color":"green"}')
    obj = of.get_object_details("ab-test", {}, PROJECT)
    assert obj.value == {"color": "blue" if d.value == "control" else "green"}
    on = of.get_boolean_details("enterprise-only", False, PROJECT)
    assert on.value is True and on.reason == Reason.TARGETING_MATCH
    assert on.flag_metadata["reasonCode"] == "condition_match"
    assert isinstance(on.flag_metadata["version"], int)
    assert of.get_integer_value("limits", 0, PROJECT) == 25
    assert of.get_float_value("limits", 0.0, PROJECT) == 25.0


def test_errors_and_type_mismatches(provider):
    _, of, _ = provider
    assert of.get_boolean_details("nope", True, PROJECT).error_code == ErrorCode.FLAG_NOT_FOUND
    m = of.get_string_details("enterprise-only", "x", PROJECT)
    assert m.value == "x" and m.error_code == ErrorCode.TYPE_MISMATCH
    m = of.get_integer_details("ab-test", 3, PROJECT)
    assert m.value == 3 and m.error_code == ErrorCode.TYPE_MISMATCH
    m = of.get_object_details("limits", {"a": 1}, PROJECT)
    assert m.value == {"a": 1} and m.error_code == ErrorCode.TYPE_MISMATCH
    k = of.get_boolean_details("acme-people", True, EvaluationContext())
    assert k.value is True and k.error_code == ErrorCode.TARGETING_KEY_MISSING
    bad = of.get_boolean_details("acme-people", True,
                                 EvaluationContext("alice", {"groups": ["p1"]}))
    assert bad.error_code == ErrorCode.INVALID_CONTEXT
    off = of.get_boolean_details("off", True, EvaluationContext("alice"))
    assert off.value is False and off.reason == Reason.DISABLED
    assert of.get_boolean_value("acme-people", False, EvaluationContext("alice")) is True
    assert of.get_boolean_value("acme-people", False,
                                EvaluationContext("zed", {"email": "z@acme.com"})) is True


def test_definition_change_emits_configuration_changed(provider):
    _, _, server = provider
    seen: list[list[str]] = []
    got = threading.Event()

    def handler(details):
        seen.append(details.flags_changed)
        got.set()
    api.add_handler(ProviderEvent.PROVIDER_CONFIGURATION_CHANGED, handler)
    try:
        r = requests.post(f"{server.url}/api/flags", timeout=10, json={"key": "brand-new"},
                          headers={"Authorization": f"Bearer {server.project['secret_key']}"})
        assert r.status_code == 201, r.text
        assert got.wait(10)
        assert ["brand-new"] in seen
    finally:
        api.remove_handler(ProviderEvent.PROVIDER_CONFIGURATION_CHANGED, handler)


contexts = st.fixed_dictionaries({
    "key": st.one_of(st.none(), st.sampled_from(["alice", "bob", "carol"]), st.text(max_size=6)),
    "groups": st.dictionaries(st.sampled_from(["project", "workspace", "account"]),
                              st.sampled_from(["p1", "w1", "a1", "zz"]), max_size=3),
    "plan": st.one_of(st.none(), st.sampled_from(["enterprise", "free"])),
    "email": st.one_of(st.none(), st.sampled_from(["x@acme.com", "y@other.com"])),
})


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(c=contexts)
def test_same_answers_as_decide(provider, c):
    _, of, server = provider
    attrs = {"groups": c["groups"]}
    if c["plan"]:
        attrs["group_properties"] = {"account": {"plan": c["plan"]}}
    if c["email"]:
        attrs["email"] = c["email"]
    body = {"api_key": server.project["api_token"], "distinct_id": c["key"] or None,
            "groups": c["groups"], "group_properties": attrs.get("group_properties"),
            "person_properties": {"email": c["email"]} if c["email"] else None}
    flags = requests.post(f"{server.url}/flags/?v=2", json=body, timeout=10).json()["flags"]
    ctx = EvaluationContext(c["key"] or None, attrs)
    for key, f in flags.items():
        d = of.get_boolean_details(key, False, ctx)
        if d.error_code == ErrorCode.TARGETING_KEY_MISSING:
            assert not c["key"] and f["enabled"] is False
            continue
        assert d.value == f["enabled"], key
        assert d.flag_metadata["reasonCode"] == f["reason"]["code"], key
        if f["variant"] is not None:
            assert of.get_string_value(key, "", ctx) == f["variant"]
