"""The stock clients against a real server: `segment-analytics-python` and `posthog` send
identify / group / track exactly as they do in production, and what they send must end up
stored (groups, parents, properties, memberships) and drive flags in decide."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import requests
from posthog import Posthog
from segment.analytics import Client
from segment.analytics.request import APIError

from flagsvc.store.ingest import LAST_SEEN_RESOLUTION


@pytest.fixture
def pid(live_server):
    return live_server.project["id"]


@pytest.fixture
def segment(live_server):
    # sync_mode: each call is one POST, errors raise; never shutdown()/join() in this mode
    return Client(live_server.project["api_token"], host=live_server.url, sync_mode=True)


@pytest.fixture
def posthog(live_server):
    return Posthog(live_server.project["api_token"], host=live_server.url, sync_mode=True)


def send_hierarchy(client: Client) -> None:
    """account a1 > workspace w1 > project p1, as the Accoil / Segment seeds describe it."""
    client.identify("u1", {"email": "jane@acme.io", "role": "Admin"})
    client.group("u1", "a1", {"group_type": "account", "name": "Acme", "plan": "enterprise"})
    client.group("u1", "w1", {"group_type": "workspace", "name": "Engineering",
                              "parent_group_id": "a1"})
    client.group("u2", "p1", {"group_type": "project", "name": "Q1 Release",
                              "parent_group_id": "w1", "parent_group_type": "workspace"})
    client.track("u2", "Task Completed", {"task_id": "t1"},
                 context={"groupId": "p1", "groupType": "project"})


def test_segment_client_identify_group_track(live_server, segment, pid):
    send_hierarchy(segment)
    store = live_server.store
    a1, w1, p1 = (store.get_group(pid, t, k) for t, k in
                  (("account", "a1"), ("workspace", "w1"), ("project", "p1")))
    assert a1["properties"] == {"name": "Acme", "plan": "enterprise"}
    assert w1["properties"] == {"name": "Engineering"}  # structure traits are not properties
    assert (a1["parent"], w1["parent"], p1["parent"]) == (
        None, {"group_type": "account", "group_key": "a1"},
        {"group_type": "workspace", "group_key": "w1"})
    assert a1["children"] == [{"group_type": "workspace", "group_key": "w1"}]
    assert [g["name"] for g in store.group_types(pid)] == ["account", "workspace", "project"]
    # the project-level track rolls activity up to workspace and account
    assert p1["recent_events"][0]["event"] == "Task Completed"
    assert p1["recent_events"][0]["properties"] == {"task_id": "t1"}
    # (to LAST_SEEN_RESOLUTION: the group calls just before already set the ancestors';
    # tests/test_ingest_semantics.py checks the roll-up with timestamps far apart)
    seen = [a1["last_seen"], w1["last_seen"], p1["last_seen"]]
    assert None not in seen and max(seen) - min(seen) <= LAST_SEEN_RESOLUTION
    u1 = store.get_person(pid, "u1")
    assert u1["properties"] == {"email": "jane@acme.io", "role": "Admin"}
    assert {g["group_key"] for g in u1["groups"]} == {"a1", "w1"}
    u2 = store.get_person(pid, "u2")
    assert {g["group_key"] for g in u2["groups"]} == {"a1", "w1", "p1"}
    assert store.count_events(pid) == 5


def test_segment_client_gzip_alias_and_page(live_server, pid):
    client = Client(live_server.project["api_token"], host=live_server.url, sync_mode=True,
                    gzip=True)
    client.identify(anonymous_id="anon-1", traits={"utm": "ads"})
    client.alias("anon-1", "u9")
    client.page("u9", name="Pricing", properties={"path": "/pricing"})
    person = live_server.store.get_person(pid, "u9")
    assert sorted(person["distinct_ids"]) == ["anon-1", "u9"]
    assert person["properties"] == {"utm": "ads"}


def test_segment_client_sees_the_error_code_and_message(live_server, segment):
    with pytest.raises(APIError) as e:
        segment.identify("u1", timestamp=datetime.now(UTC) + timedelta(days=30))
    assert (e.value.status, e.value.code) == (400, "invalid_events")
    assert "in the future" in e.value.message
    bad = Client("phc_not_a_token", host=live_server.url, sync_mode=True)
    with pytest.raises(APIError) as e:
        bad.identify("u1")
    assert (e.value.status, e.value.code) == (401, "unauthorized")


def test_flag_on_group_property_from_segment_is_on_in_decide(live_server, segment, pid):
    """plan=enterprise lands on account a1 via Segment; a request naming only project p1
    gets the account-bucketed flag through the inferred hierarchy p1 > w1 > a1."""
    send_hierarchy(segment)
    segment.group("u3", "a2", {"group_type": "account", "plan": "free"})
    segment.group("u3", "w2", {"group_type": "workspace", "parent_group_id": "a2"})
    segment.group("u3", "p2", {"group_type": "project", "parent_group_id": "w2"})
    live_server.store.create_flag(pid, {
        "key": "new-billing", "bucket_by": "account", "conditions": [{"properties": [
            {"type": "group", "group_type": "account", "key": "plan", "operator": "exact",
             "value": ["enterprise"]}]}]})

    def decide(project_key):
        r = requests.post(f"{live_server.url}/flags/?v=2", json={
            "api_key": live_server.project["api_token"], "distinct_id": "u2",
            "groups": {"project": project_key}}, timeout=5)
        assert r.status_code == 200
        return r.json()["flags"]["new-billing"]

    on = decide("p1")
    assert on["enabled"] is True and on["reason"]["code"] == "condition_match"
    off = decide("p2")
    assert off["enabled"] is False and off["reason"]["code"] == "no_condition_match"
    # the stock posthog client reads the same answer
    ph = Posthog(live_server.project["api_token"], host=live_server.url, sync_mode=True)
    assert ph.get_feature_flag("new-billing", "u2", groups={"project": "p1"},
                               send_feature_flag_events=False) is True


def test_posthog_client_group_identify_capture_set_alias(live_server, posthog, pid):
    store = live_server.store
    posthog.group_identify("account", "a1", {"name": "Acme", "plan": "enterprise"})
    posthog.group_identify("workspace", "w1", {"name": "Eng", "parent_group_id": "a1",
                                               "parent_group_type": "account"})
    posthog.capture("report_created", distinct_id="u1", properties={"report": "r1"},
                    groups={"workspace": "w1"})
    posthog.set(distinct_id="u1", properties={"email": "jane@acme.io", "plan": "pro"})
    posthog.set_once(distinct_id="u1", properties={"plan": "free", "first_seen_via": "api"})
    posthog.alias("anon-7", "u1")
    posthog.capture("$feature_flag_called", distinct_id="u1",
                    properties={"$feature_flag": "f", "$feature_flag_response": True})

    assert store.group_properties(pid, "account", "a1") == {"name": "Acme", "plan": "enterprise"}
    w1 = store.get_group(pid, "workspace", "w1")
    assert w1["properties"] == {"name": "Eng"}
    assert w1["parent"] == {"group_type": "account", "group_key": "a1"}
    assert [m["distinct_id"] for m in w1["members"]] == ["u1"]
    events = {e["event"]: e for e in w1["recent_events"]}
    assert events["report_created"]["properties"]["report"] == "r1"
    assert events["report_created"]["properties"]["$lib"] == "posthog-python"
    person = store.get_person(pid, "u1")
    assert person["properties"] == {"email": "jane@acme.io", "plan": "pro",
                                    "first_seen_via": "api"}
    assert sorted(person["distinct_ids"]) == ["anon-7", "u1"]
    assert {g["group_key"] for g in person["groups"]} == {"a1", "w1"}
    # group_identify's random distinct ids created no persons
    assert store.list_persons(pid)[1] == 1
    assert store.count_events(pid) == 7


def test_posthog_client_gzip_and_retry_is_idempotent(live_server, pid):
    client = Posthog(live_server.project["api_token"], host=live_server.url, sync_mode=True,
                     gzip=True)
    for _ in range(2):  # same uuid twice: a retry
        client.capture("signed_up", distinct_id="u1", uuid="7c71f0a4-0000-4000-8000-000000000001",
                       groups={"organization": "acme"})
    assert live_server.store.count_events(pid) == 1
    assert live_server.store.get_group(pid, "organization", "acme")["members"][0][
        "distinct_id"] == "u1"
