"""Private properties stored as keyed hashes can still be targeted by equality (SPEC §3
Privacy): in HTTP decide, the embedded and the remote FlagClient alike."""

from __future__ import annotations

import time

import pytest
import requests

from flagsvc import FlagClient

pytestmark = pytest.mark.backends

FLAG = {"key": "acme-only", "bucket_by": "organization", "conditions": [{"properties": [
    {"type": "group", "group_type": "organization", "key": "customer_id", "operator": "exact",
     "value": ["cus_123", "cus_999"]}]}]}
NEGATED = {"key": "not-acme", "bucket_by": "organization", "conditions": [{"properties": [
    {"type": "group", "group_type": "organization", "key": "customer_id", "operator": "is_not",
     "value": "cus_123"}]}]}


@pytest.fixture
def private(live_server):
    store, pid = live_server.store, live_server.project["id"]
    store.update_project(pid, private_properties={"customer_id": "hash",
                                                  "management_email": "drop"})
    for f in (FLAG, NEGATED):
        store.create_flag(pid, f)
    r = requests.post(f"{live_server.url}/v1/batch", auth=(live_server.project["api_token"], ""),
                      json={"batch": [
                          {"type": "group", "groupId": "acme", "userId": "u1", "messageId": "m1",
                           "traits": {"customer_id": "cus_123", "management_email": "a@acme.com"}},
                          {"type": "group", "groupId": "globex", "userId": "u2", "messageId": "m2",
                           "traits": {"customer_id": "cus_555"}}]})
    assert r.status_code == 200, r.text
    return live_server


def _decide(srv, **body):
    r = requests.post(f"{srv.url}/flags/?v=2", json={"api_key": srv.project["api_token"], **body})
    return {k: f["enabled"] for k, f in r.json()["flags"].items()}


def test_values_are_stored_hashed_or_dropped(private):
    props = private.store.get_group(private.project["id"], "organization", "acme")["properties"]
    assert props["customer_id"].startswith("hmac:") and "cus_123" not in str(props)
    assert "management_email" not in props


def test_decide_matches_hashed_values_by_equality(private):
    assert _decide(private, groups={"organization": "acme"}) == {"acme-only": True,
                                                                  "not-acme": False}
    assert _decide(private, groups={"organization": "globex"}) == {"acme-only": False,
                                                                    "not-acme": True}
    # A value given in the request is hashed the same way before it is compared.
    assert _decide(private, groups={"organization": "new"},
                   group_properties={"organization": {"customer_id": "cus_999"}})["acme-only"]


def test_in_process_clients_agree(private, db_path):
    embedded = FlagClient.from_database(db_path, api_token=private.project["api_token"])
    remote = FlagClient.from_server(private.url, private.project["secret_key"])
    try:
        for client in (embedded, remote):
            assert client.get_flag("acme-only", groups={"organization": "acme"}) is True
            assert client.get_flag("acme-only", groups={"organization": "globex"}) is False
            assert client.get_flag("acme-only", groups={"organization": "x"}, group_properties={
                "organization": {"customer_id": "cus_123"}}) is True
    finally:
        embedded.close()
        remote.close()


def test_changing_the_policy_reloads_evaluators(private):
    pid = private.project["id"]
    assert _decide(private, groups={"organization": "acme"})["acme-only"] is True
    private.store.update_project(pid, private_properties={})
    deadline = time.monotonic() + 2
    # Stored values stay hashed, but flags now compare clear text: no longer a match.
    while _decide(private, groups={"organization": "acme"})["acme-only"]:
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_events_never_hold_private_values_in_clear(private):
    # The segment call's traits never reach the events table in clear either.
    rows = private.store.conn().execute("SELECT properties FROM events").fetchall()
    assert rows and not any("cus_123" in r[0] or "a@acme.com" in r[0] for r in rows)


def test_definitions_tell_remote_clients_what_is_hashed(private):
    r = requests.get(f"{private.url}/api/flags/definitions",
                     headers={"Authorization": f"Bearer {private.project['secret_key']}"})
    assert r.json()["privacy"]["hashed_keys"] == ["customer_id"]


def test_admin_refuses_operators_that_cannot_see_through_a_hash(private):
    r = requests.post(f"{private.url}/api/flags",
                      headers={"Authorization": f"Bearer {private.project['secret_key']}"},
                      json={"key": "bad", "bucket_by": "organization", "conditions": [
                          {"properties": [{"type": "group", "group_type": "organization",
                                           "key": "customer_id", "operator": "starts_with",
                                           "value": "cus_"}]}]})
    assert r.status_code == 422
    assert "keyed hash" in str(r.json()["errors"])
