"""What a decide answer can reveal, and the settings that close it (issue 14 item 5, SPEC §11):
`client_properties` (override / fill / ignore) and signed contexts (`require_signed_groups`,
per-project signing keys rotated with a grace, `flagsvc.sign_context`, the canonical form
reproduced by a Node implementation), applied alike by decide, explain and both FlagClients.

The oracle: 148 organizations with stored `seats`; a flag on for `seats > 100` with a
payload. The attack of issue 14 read every organization's `seats > 100` by comparing
answers for guessed keys, with and without claimed properties."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import time
from pathlib import Path

import pytest
import requests
from hypothesis import given, settings
from hypothesis import strategies as st

from flagsvc import FlagClient, sign_context
from flagsvc.ingest.model import Call
from flagsvc.signing import canonical_context, verify_context
from tests.capabilities import run_node
from tests.conftest import auth

pytestmark = pytest.mark.backends

README = Path(__file__).resolve().parent.parent / "README.md"
ORGS = [f"org-{i:03d}" for i in range(148)]


def seats(key: str) -> int:
    return (int(key[-3:]) * 37) % 200  # a spread around 100


@pytest.fixture
def world(live_server):
    """The oracle's project: 148 organizations with stored seats, flags reading them."""
    store, pid = live_server.store, live_server.project["id"]
    now = time.time()
    store.ingest(pid, [Call("group", f"g{k}", now, group_type="organization", group_key=k,
                            group_set={"seats": seats(k), "plan": "free"}) for k in ORGS])
    store.create_flag(pid, {"key": "big", "bucket_by": "organization", "conditions": [{
        "properties": [{"type": "group", "group_type": "organization", "key": "seats",
                        "operator": "gt", "value": 100}]}], "payloads": {"true": {"big": 1}}})
    store.create_flag(pid, {"key": "enterprise", "bucket_by": "organization", "conditions": [{
        "properties": [{"type": "group", "group_type": "organization", "key": "plan",
                        "operator": "exact", "value": "enterprise"}]}],
        "payloads": {"true": {"secret": "enterprise-payload"}}})
    store.create_flag(pid, {"key": "everyone", "conditions": [{}]})
    return live_server


def decide(srv, headers=None, **body):
    r = requests.post(f"{srv.url}/flags/?v=2", json={"api_key": srv.project["api_token"], **body},
                      headers=headers or {}, timeout=10)
    assert r.status_code == 200, r.text
    return r.json()


def answer(srv, **body):
    """What the answer says, minus the per-request ids."""
    out = decide(srv, **body)
    return json.dumps({k: out[k] for k in ("flags", "groupsIgnored") if k in out},
                      sort_keys=True)


def patch(srv, **settings_):
    r = requests.patch(f"{srv.url}/api/project", json=settings_,
                       headers=auth(srv.project), timeout=10)
    assert r.status_code == 200, r.text
    time.sleep(0.6)  # settings reach evaluators within cache_seconds, as flag edits do
    return r.json()


def new_key(srv, grace=3600.0):
    r = requests.post(f"{srv.url}/api/project/signing_keys", json={"grace_seconds": grace},
                      headers=auth(srv.project), timeout=10)
    assert r.status_code == 201, r.text
    return r.json()["signing_key"]


# ------------------------------------------------------------ the canonical form

def test_the_signature_is_the_documented_hmac_of_the_documented_bytes():
    message = canonical_context("u1", {"workspace": "w1", "account": "a1"})
    assert message == b"flagsvc-context-v1\nu1\naccount\na1\nworkspace\nw1"
    expected = hmac.new(b"fsg_key", message, hashlib.sha256).hexdigest()
    assert sign_context("fsg_key", "u1", {"workspace": "w1", "account": "a1"}) == "v1=" + expected
    assert canonical_context(None, {}) == b"flagsvc-context-v1\n"
    with pytest.raises(ValueError):
        sign_context("k", "a\nb", {})


@settings(max_examples=200, deadline=None)
@given(did=st.one_of(st.none(), st.text(max_size=20)),
       groups=st.dictionaries(st.text(min_size=1, max_size=8), st.text(max_size=8), max_size=4))
def test_a_signature_verifies_for_its_context_only(did, groups):
    if any("\n" in p for p in [did or "", *groups, *groups.values()]):
        return
    sig = sign_context("key-1", did, groups)
    assert verify_context(["other", "key-1"], did, groups, sig)
    assert not verify_context(["other"], did, groups, sig)
    assert not verify_context(["key-1"], did, {**groups, "organization": "someone-else"}, sig) \
        or groups.get("organization") == "someone-else"


def _readme_js() -> str:
    text = README.read_text()
    return re.search(r"```js\n(const crypto.*?)```", text, re.S).group(1)


def test_the_readmes_node_implementation_signs_as_flagsvc_does():
    cases = [("fsg_k1", "user-42", {"organization": "acme"}),
             ("fsg_k2", None, {"project": "p1", "account": "a1", "workspace": "w1"}),
             # astral vs BMP types: code point order is not JavaScript's default sort
             ("fsg_k3", "ünïcødé", {"émoji😀": "ключ", "Zed": "1", "a": "", "😀": "x",
                                    "\uffff": "y"}),
             ("fsg_k4", "", {})]
    script = _readme_js() + f"""
const cases = {json.dumps(cases)};
console.log(JSON.stringify({{sigs: cases.map(([k, d, g]) => signContext(k, d, g))}}));
"""
    got = run_node(script)["sigs"]
    assert got == [sign_context(k, d, g) for k, d, g in cases]


# ------------------------------------------------------------ signing keys

def test_a_signing_key_is_shown_once_and_rotated_with_a_grace(world):
    srv = world
    first = new_key(srv)
    project = requests.get(f"{srv.url}/api/project", headers=auth(srv.project)).json()
    assert first not in json.dumps(project)
    assert [k["prefix"] for k in project["signing_keys"]] == [first[:8]]
    patch(srv, require_signed_groups=True)
    ctx = {"distinct_id": "u", "groups": {"organization": "org-003"}}
    assert "groupsIgnored" not in decide(srv, **ctx, **{"$signature": sign_context(first, **ctx)})
    second = new_key(srv, grace=3600)  # the first keeps verifying during the grace
    time.sleep(0.6)
    for key in (first, second):
        assert "groupsIgnored" not in decide(srv, **ctx, **{"$signature": sign_context(key, **ctx)})
    third = new_key(srv, grace=0)  # revokes the others now
    time.sleep(0.6)
    assert decide(srv, **ctx, **{"$signature": sign_context(second, **ctx)})[
        "groupsIgnored"] == "bad_signature"
    assert "groupsIgnored" not in decide(srv, **ctx, **{"$signature": sign_context(third, **ctx)})


def test_require_signed_groups_needs_a_key_first(world):
    r = requests.patch(f"{world.url}/api/project", json={"require_signed_groups": True},
                       headers=auth(world.project))
    assert r.status_code == 422 and "require_signed_groups" in r.json()["errors"]


# ------------------------------------------------------------ signed groups in decide

def test_unsigned_and_badly_signed_groups_are_answered_as_absent_with_a_reason(world):
    srv = world
    key = new_key(srv)
    patch(srv, require_signed_groups=True)
    mine = {"distinct_id": "u1", "groups": {"organization": "org-003"}}  # stored seats 111 > 100
    signed = decide(srv, **mine, **{"$signature": sign_context(key, **mine)})
    assert signed["flags"]["big"]["enabled"] is True and "groupsIgnored" not in signed
    by_header = decide(srv, headers={"X-Flagsvc-Signature": sign_context(key, **mine)}, **mine)
    assert by_header["flags"]["big"]["enabled"] is True
    unsigned = decide(srv, **mine)
    assert unsigned["groupsIgnored"] == "unsigned_groups"
    reason = unsigned["flags"]["big"]["reason"]
    assert reason["code"] == "no_group_type" and "signed" in reason["description"]
    assert unsigned["flags"]["everyone"]["enabled"] is True  # person flags still answer
    # a tenant's valid signature does not carry over to another tenant's group
    other = {"distinct_id": "u1", "groups": {"organization": "org-001"}}
    forged = decide(srv, **other, **{"$signature": sign_context(key, **mine)})
    assert forged["groupsIgnored"] == "bad_signature"
    assert forged["flags"]["big"]["enabled"] is False
    legacy = requests.post(f"{srv.url}/decide/?v=3", json={
        "api_key": srv.project["api_token"], **other}).json()
    assert legacy["groupsIgnored"] == "unsigned_groups" and legacy["featureFlags"]["big"] is False


def test_signed_groups_close_the_oracle_guesses_learn_nothing(world):
    """With require_signed_groups, a page signed into org-003 that names each of the 148
    organizations (unsigned, or with its own signature) gets the same answer for every one of
    them: nothing about their stored seats, nor which keys exist."""
    srv = world
    key = new_key(srv)
    patch(srv, require_signed_groups=True, client_properties="ignore")
    own = {"$signature": sign_context(key, "u1", {"organization": "org-003"})}
    nobody = answer(srv, distinct_id="u1", groups={"organization": "no-such-org"})
    nobody_signed = answer(srv, distinct_id="u1", groups={"organization": "no-such-org"}, **own)
    for org in ORGS:
        for claim in ({}, {"group_properties": {"organization": {"seats": 1000}}}):
            assert answer(srv, distinct_id="u1", groups={"organization": org}, **claim) == nobody
            if org != "org-003":  # its own group, which it may ask about
                assert answer(srv, distinct_id="u1", groups={"organization": org}, **own,
                              **claim) == nobody_signed


# ------------------------------------------------------------ client_properties

def _override_reads_stored_seats(srv) -> dict[str, bool]:
    """The attack as it worked under `override`: no claim gives rollout ∧ stored seats; a
    claim of 1000 seats gives the rollout alone; together: each org's stored seats > 100."""
    out = {}
    for org in ORGS:
        plain = decide(srv, groups={"organization": org})["flags"]["big"]["enabled"]
        claimed = decide(srv, groups={"organization": org}, group_properties={
            "organization": {"seats": 1000}})["flags"]["big"]["enabled"]
        assert claimed is True  # under override a claim beats the store
        out[org] = plain
    return out


def test_under_override_claims_win_and_the_comparison_reads_the_store(world):
    read = _override_reads_stored_seats(world)
    assert read == {org: seats(org) > 100 for org in ORGS}
    stolen = decide(world, groups={"organization": "org-001"},
                    group_properties={"organization": {"plan": "enterprise"}})
    assert stolen["flags"]["enterprise"]["metadata"]["payload"] is not None


@pytest.mark.parametrize("mode", ["fill", "ignore"])
def test_under_fill_and_ignore_claims_cannot_beat_the_store(world, mode):
    srv = world
    patch(srv, client_properties=mode)
    for org in ORGS:
        plain = answer(srv, groups={"organization": org})
        for claim in ({"seats": 1000}, {"seats": 0}, {"plan": "enterprise"}):
            assert answer(srv, groups={"organization": org},
                          group_properties={"organization": claim}) == plain, (mode, org, claim)
    stolen = decide(srv, groups={"organization": "org-001"},
                    group_properties={"organization": {"plan": "enterprise"}})
    assert stolen["flags"]["enterprise"]["enabled"] is False
    assert stolen["flags"]["enterprise"]["metadata"]["payload"] is None
    # a key the store lacks: fill lets the request fill it, ignore does not
    unknown = decide(srv, groups={"organization": "org-new"},
                     group_properties={"organization": {"seats": 500}})
    assert unknown["flags"]["big"]["enabled"] is (mode == "fill")


@pytest.mark.parametrize("mode", ["override", "fill", "ignore"])
def test_explain_and_both_flag_clients_apply_client_properties_as_decide(world, db_path, mode):
    srv = world
    patch(srv, client_properties=mode)
    cases = [("org-001", {"seats": 1000}), ("org-003", {"seats": 1}), ("org-new", {"seats": 500}),
             ("org-002", {})]
    embedded = FlagClient.from_database(db_path, api_token=srv.project["api_token"])
    remote = FlagClient.from_server(srv.url, secret_key=srv.project["secret_key"])
    try:
        for org, claim in cases:
            ctx = {"groups": {"organization": org}, "group_properties": {"organization": claim}}
            http = decide(srv, **ctx)["flags"]["big"]["enabled"]
            explained = requests.post(f"{srv.url}/api/flags/big/explain", json=ctx,
                                      headers=auth(srv.project)).json()
            assert explained["enabled"] is http, (mode, org)
            assert embedded.get_flag("big", **ctx) is http, (mode, org)
            assert remote.get_flag("big", **ctx) is http, (mode, org)
    finally:
        embedded.close()
        remote.close()


def test_explain_says_when_decide_would_ignore_the_groups(world):
    srv = world
    key = new_key(srv)
    patch(srv, require_signed_groups=True)
    ctx = {"distinct_id": "u1", "groups": {"organization": "org-003"}}
    url, h = f"{srv.url}/api/flags/big/explain", auth(srv.project)
    unsigned = requests.post(url, json=ctx, headers=h).json()
    assert unsigned["groups_ignored"] == "unsigned_groups" and unsigned["enabled"] is False
    signed = requests.post(url, json={**ctx, "$signature": sign_context(key, **ctx)},
                           headers=h).json()
    assert signed["groups_ignored"] is None and signed["enabled"] is True
    # the FlagClient is the app's backend: its groups count as signed
    with FlagClient.from_database(srv.store.path, api_token=srv.project["api_token"]) as fc:
        assert fc.get_flag("big", **ctx) is True
