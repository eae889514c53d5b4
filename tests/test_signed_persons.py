"""Issue 14, second attack run, item 4: with require_signed_groups and `fill` on, a decide
naming no groups needs no signature, so guessing distinct ids still read stored persons:
`user6@corp1.com` answered corp1-users=true, and under `fill` a claimed email was true for
an unknown id and false for a known one (which ids exist). `require_signed_persons` closes
it: the stored person of a distinct_id is read only with a valid signature of
{distinct_id, groups}; otherwise the answer comes from the request's claims alone, so every
guess answers alike. Decide, OFREP and explain apply it; a FlagClient is the app's backend
(trusted)."""

from __future__ import annotations

import json
import time

import pytest

from flagsvc import FlagClient, sign_context
from flagsvc.ingest.model import Call

pytestmark = pytest.mark.backends

KNOWN = ["user1@corp1.com", "user3@corp1.com", "user2@corp2.com", "user4@corp2.com"]


@pytest.fixture
def corp(app, client, app_project, h):
    store, pid = app.extensions["flagsvc"].store, app_project["id"]
    now = time.time() - 60
    store.ingest(pid, [Call("identify", f"m{i}", now, distinct_id=did,
                            person_set={"email": did}) for i, did in enumerate(KNOWN)])
    store.create_flag(pid, {"key": "corp1-users", "conditions": [{"properties": [
        {"type": "person", "key": "email", "operator": "icontains", "value": "@corp1.com"}]}]})
    key = client.post("/api/project/signing_keys", json={"grace_seconds": 0},
                      headers=h).get_json()["signing_key"]
    return store, pid, key


def patch(client, h, **settings):
    r = client.patch("/api/project", json=settings, headers=h)
    assert r.status_code == 200, r.get_json()
    time.sleep(0.6)  # settings reach evaluators within cache_seconds
    return r.get_json()


def decide(client, token, **body):
    r = client.post("/flags/?v=2", data=json.dumps({"api_key": token, **body}),
                    headers={"Content-Type": "application/json"})
    assert r.status_code == 200, r.get_json()
    return r.get_json()


def corp1(client, token, **body):
    return decide(client, token, **body)["flags"]["corp1-users"]["enabled"]


def test_guessed_ids_read_nothing_stored_with_require_signed_persons(client, app_project, h,
                                                                     corp):
    token = app_project["api_token"]
    patch(client, h, require_signed_groups=True, client_properties="fill")
    # the attack, with signed groups + fill only: open (documented in the README)
    assert corp1(client, token, distinct_id="user1@corp1.com") is True
    claim = {"person_properties": {"email": "x@corp1.com"}}
    assert corp1(client, token, distinct_id="nobody@x.com", **claim) is True
    assert corp1(client, token, distinct_id="user2@corp2.com", **claim) is False  # exists

    assert patch(client, h, require_signed_persons=True)["require_signed_persons"] is True
    guesses = ["user1@corp1.com", "user3@corp1.com", "user2@corp2.com", "nobody@x.com"]
    for claims in ({}, claim):
        answers = set()
        for did in guesses:
            out = decide(client, token, distinct_id=did, **claims)
            assert out["personIgnored"] == "unsigned_person"
            answers.add(out["flags"]["corp1-users"]["enabled"])
        assert len(answers) == 1, claims  # the same for every guess: nothing learned
    assert corp1(client, token, distinct_id="user1@corp1.com") is False
    # a bad signature is no better
    out = decide(client, token, distinct_id="user1@corp1.com",
                 **{"$signature": sign_context("fsg_wrong", "user1@corp1.com")})
    assert out["personIgnored"] == "bad_signature"
    assert out["flags"]["corp1-users"]["enabled"] is False


def test_a_signed_distinct_id_reads_its_stored_person_everywhere(client, app, app_project, h,
                                                                 corp, db_path):
    store, pid, key = corp
    token = app_project["api_token"]
    patch(client, h, require_signed_persons=True, client_properties="fill")
    did = "user1@corp1.com"
    signed = {"distinct_id": did, "$signature": sign_context(key, did)}
    out = decide(client, token, **signed)
    assert "personIgnored" not in out and out["flags"]["corp1-users"]["enabled"] is True
    # OFREP: the same rule
    ofrep = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    for sig, expected in ((None, False), (signed["$signature"], True)):
        ctx = {"targetingKey": did, **({"$signature": sig} if sig else {})}
        r = client.post("/ofrep/v1/evaluate/flags/corp1-users",
                        data=json.dumps({"context": ctx}), headers=ofrep)
        assert r.status_code == 200, r.get_data(as_text=True)
        assert r.get_json()["value"] is expected
    # explain says what decide would do
    unsigned = client.post("/api/flags/corp1-users/explain", json={"distinct_id": did},
                           headers=h).get_json()
    assert unsigned["person_ignored"] == "unsigned_person" and unsigned["enabled"] is False
    explained = client.post("/api/flags/corp1-users/explain", json=signed, headers=h).get_json()
    assert explained["person_ignored"] is None and explained["enabled"] is True
    # the FlagClient runs in the app's backend: its distinct ids count as signed
    with FlagClient.from_database(db_path, api_token=token) as fc:
        assert fc.get_flag("corp1-users", distinct_id=did) is True


def test_require_signed_persons_needs_a_signing_key(client, h):
    r = client.patch("/api/project", json={"require_signed_persons": True}, headers=h)
    assert r.status_code == 422
    assert "require_signed_persons" in r.get_json()["errors"]


# ------------------------------------------------------------ expiring signatures (item 5)

def test_an_expiring_signature_verifies_until_its_expiry_and_old_ones_still_verify():
    from flagsvc.signing import canonical_context, verify_context

    ctx = ("u1", {"organization": "acme"})
    forever = sign_context("fsg_k", *ctx)
    assert ";" not in forever  # the form issued so far is unchanged
    assert verify_context(["fsg_k"], *ctx, forever, now=4e9)
    sig = sign_context("fsg_k", *ctx, expires_at=1_000_000.5)
    assert sig.endswith(";exp=1000000")
    assert canonical_context(*ctx, 1_000_000) == (
        b"flagsvc-context-v1-exp\n1000000\nu1\norganization\nacme")
    assert verify_context(["fsg_k"], *ctx, sig, now=999_999)
    assert not verify_context(["fsg_k"], *ctx, sig, now=1_000_000)
    # the expiry is signed: moving it breaks the signature
    assert not verify_context(["fsg_k"], *ctx, sig.replace("1000000", "2000000"), now=0)
    assert not verify_context(["fsg_k"], *ctx, sig.split(";")[0], now=0)
    assert not verify_context(["fsg_k"], *ctx, sig + "x", now=0)


def test_decide_refuses_an_expired_signature(client, app_project, h, corp):
    token = app_project["api_token"]
    _, _, key = corp
    patch(client, h, require_signed_persons=True)
    did = "user1@corp1.com"
    live = sign_context(key, did, expires_at=time.time() + 3600)
    assert corp1(client, token, distinct_id=did, **{"$signature": live}) is True
    dead = sign_context(key, did, expires_at=time.time() - 1)
    out = decide(client, token, distinct_id=did, **{"$signature": dead})
    assert out["personIgnored"] == "bad_signature"
