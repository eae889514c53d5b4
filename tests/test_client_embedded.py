"""The embedded FlagClient: the issue's acceptance scenario, freshness, and equality
with the HTTP decide endpoint."""

from __future__ import annotations

import time

import pytest

from flagsvc import FlagClient, FlagClientError
from flagsvc.engine import bucket
from flagsvc.ingest.model import Call

pytestmark = pytest.mark.backends

T0 = 1_760_000_000.0


def _hierarchy(store, project_id, plan="enterprise", ts=T0):
    """account a1 (plan) > workspace w1, w2 > projects p1, p2 (under w1), p3 (under w2)."""
    calls = [
        Call("group", "a1", ts, group_type="account", group_key="a1", group_set={"plan": plan}),
        Call("group", "w1", ts, distinct_id="u1", group_type="workspace", group_key="w1",
             parent_key="a1", parent_type="account"),
        Call("group", "w2", ts, group_type="workspace", group_key="w2", parent_key="a1"),
        Call("group", "p1", ts, group_type="project", group_key="p1", parent_key="w1",
             parent_type="workspace"),
        Call("group", "p2", ts, group_type="project", group_key="p2", parent_key="w1"),
        Call("group", "p3", ts, group_type="project", group_key="p3", parent_key="w2"),
    ]
    return store.ingest(project_id, calls)


FLAG = {
    "key": "new-billing",
    "bucket_by": "account",
    "conditions": [{
        "properties": [{"type": "group", "group_type": "account", "key": "plan",
                        "operator": "exact", "value": ["enterprise"]}],
        "rollout_percentage": 50,
    }],
    "payloads": {"true": {"color": "green"}},
}


def _accounts_in_rollout(n):
    """Account keys whose SPEC §4 bucket for this flag is within / outside 50 %."""
    inside = [f"acct-{i}" for i in range(200) if bucket("new-billing", f"acct-{i}") <= 50]
    outside = [f"acct-{i}" for i in range(200) if bucket("new-billing", f"acct-{i}") > 50]
    return inside[:n], outside[:n]


def test_project_only_request_uses_the_accounts_bucket(store, project, db_path):
    inside, outside = _accounts_in_rollout(1)
    for account in (inside[0], outside[0]):
        store.ingest(project["id"], [
            Call("group", f"g-{account}", T0, group_type="account", group_key=account,
                 group_set={"plan": "enterprise"}),
            Call("group", f"w-{account}", T0, group_type="workspace", group_key=f"w-{account}",
                 parent_key=account, parent_type="account"),
            Call("group", f"p-{account}", T0, group_type="project", group_key=f"p-{account}",
                 parent_key=f"w-{account}", parent_type="workspace"),
        ])
    store.create_flag(project["id"], FLAG)
    client = FlagClient.from_database(db_path, api_token=project["api_token"])
    for account, expected in ((inside[0], True), (outside[0], False)):
        for user in ("u1", "u2", "u3", None):
            result = client.evaluate("new-billing", distinct_id=user,
                                     groups={"project": f"p-{account}"})
            assert result.enabled is expected, (account, user)
            assert result.identifier == account
            assert result.inferred_from == (("project", f"p-{account}"),
                                            ("workspace", f"w-{account}"), ("account", account))
        assert client.get_flag_payload("new-billing", groups={"project": f"p-{account}"}) == (
            {"color": "green"} if expected else None)


def test_every_project_under_an_account_gets_the_same_answer(store, project, db_path):
    _hierarchy(store, project["id"])
    store.create_flag(project["id"], FLAG)
    client = FlagClient.from_database(db_path, api_token=project["api_token"])
    expected = bucket("new-billing", "a1") <= 50
    answers = {client.get_flag("new-billing", distinct_id=f"user{i}", groups={"project": p})
               for i in range(20) for p in ("p1", "p2", "p3")}
    assert answers == {expected}


def test_no_group_means_off_never_the_distinct_id(store, project, db_path):
    store.create_flag(project["id"], {**FLAG, "conditions": [{"rollout_percentage": 100}]})
    client = FlagClient.from_database(db_path, api_token=project["api_token"])
    result = client.evaluate("new-billing", distinct_id="someone")
    assert (result.enabled, result.reason) == (False, "no_group_type")


def test_out_of_order_traits_do_not_regress(store, project, db_path):
    _hierarchy(store, project["id"], plan="enterprise", ts=T0 + 100)
    # A late delivery of an older trait value must not win.
    store.ingest(project["id"], [Call("group", "late", T0, group_type="account", group_key="a1",
                                      group_set={"plan": "free"})])
    store.create_flag(project["id"], {**FLAG, "conditions": [{**FLAG["conditions"][0],
                                                                "rollout_percentage": 100}]})
    client = FlagClient.from_database(db_path, api_token=project["api_token"])
    assert client.get_flag("new-billing", groups={"project": "p1"}) is True
    assert store.get_group(project["id"], "account", "a1")["properties"]["plan"] == "enterprise"


def test_flag_edits_by_another_process_are_seen_within_a_second(store, project, db_path):
    _hierarchy(store, project["id"])
    created = store.create_flag(project["id"], {**FLAG, "active": False})
    client = FlagClient.from_database(db_path, api_token=project["api_token"], cache_seconds=0.5)
    assert client.get_flag("new-billing", groups={"account": "a1"}) is False
    # Another Store object = another connection, as another process would write.
    from flagsvc.store import Store

    other = Store(db_path)
    other.update_flag(project["id"], created["id"], {"active": True, "conditions": [{}]},
                      expected_version=created["version"])
    deadline = time.monotonic() + 1.0
    while client.get_flag("new-billing", groups={"account": "a1"}) is not True:
        assert time.monotonic() < deadline, "edit not seen within 1 s"
        time.sleep(0.05)


def test_request_properties_override_stored_ones(store, project, db_path):
    _hierarchy(store, project["id"], plan="free")
    store.create_flag(project["id"], {**FLAG, "conditions": [{**FLAG["conditions"][0],
                                                                "rollout_percentage": 100}]})
    client = FlagClient.from_database(db_path, api_token=project["api_token"])
    assert client.get_flag("new-billing", groups={"project": "p1"}) is False
    assert client.get_flag("new-billing", groups={"project": "p1"},
                           group_properties={"account": {"plan": "enterprise"}}) is True


def test_unknown_token_and_ambiguous_project_are_refused(store, project, db_path):
    store.create_project("second")
    with pytest.raises(FlagClientError):
        FlagClient.from_database(db_path, api_token="phc_nope")
    with pytest.raises(FlagClientError):
        FlagClient.from_database(db_path)
    assert FlagClient.from_database(db_path, project_id=project["id"]).get_all_flags() == {}


def test_golden_hash_values():
    # SPEC §4 contract values (Unleash-compatible).
    assert bucket("AB12A", "122") == 23
    assert bucket("AB12A", "155") == 100
    ns = "Feature.flexible.rollout.custom.stickiness_50"
    assert [bucket(ns, i) for i in ("402", "388", "39")] == [55, 10, 25]
