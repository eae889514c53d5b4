"""Failed console sign-ins (issue 17 review), counted in the database on both backends: a
client (email, address) locks only itself out of that email; one address spraying emails is
refused; a guesser spread over many addresses meets a pace on the email, never a lock its
rightful user cannot get past; every worker and a restart see the same counts; old rows
expire; the client's address is the trusted proxy's X-Forwarded-For."""

from __future__ import annotations

import re
import time

import pytest

from flagsvc import accounts
from flagsvc.app import create_app
from flagsvc.store import Store

pytestmark = pytest.mark.backends

PASSWORD = "correct horse battery"
LIMITS = accounts.LIMITS


@pytest.fixture
def ann(store):
    accounts.create_user(store, "ann@example.com", "editor", PASSWORD)
    return store


def attempt(store, password, address, now, email="ann@example.com"):
    """What one sign-in gets: "ok", "wrong", or the limit that held it up."""
    try:
        accounts.verify(store, email, password, address, now=now)
        return "ok"
    except accounts.SignInLimited as e:
        return e.why
    except accounts.SignInRefused:
        return "wrong"


def rows(store):
    return store.conn().execute("SELECT count(*) FROM sign_in_attempts").fetchone()[0]


def test_one_address_locks_only_itself_out_of_an_email(ann):
    now = time.time()
    for _ in range(LIMITS.lock_after):
        assert attempt(ann, "guess guess guess", "203.0.113.7", now) == "wrong"
    # the attacker's address is held up, even with the right password ...
    assert attempt(ann, PASSWORD, "203.0.113.7", now + 1) == "pair"
    # ... and the rightful user from any other address signs in at once
    assert attempt(ann, PASSWORD, "198.51.100.1", now + 1) == "ok"
    # the lock ends; then the right password works there too and the count starts again
    assert attempt(ann, PASSWORD, "203.0.113.7", now + LIMITS.lock_seconds + 1) == "ok"
    assert attempt(ann, "guess guess guess", "203.0.113.7", now + 40) == "wrong"
    assert attempt(ann, PASSWORD, "203.0.113.7", now + 41) == "ok"


def test_each_further_failure_doubles_the_clients_lock(ann):
    now, locks = time.time(), []
    for _ in range(LIMITS.lock_after + 2):
        assert attempt(ann, "guess guess guess", "203.0.113.7", now) == "wrong"
        until = ann.conn().execute(
            "SELECT blocked_until FROM sign_in_attempts WHERE email = 'ann@example.com' "
            "AND address = '203.0.113.7'").fetchone()[0]
        locks.append(until and round(until - now))
        if until:
            assert attempt(ann, PASSWORD, "203.0.113.7", until - 1) == "pair"
        now = max(now, until or now) + 1  # the next attempt once the lock is over
    assert locks == [None] * (LIMITS.lock_after - 1) + [30, 60, 120]


def test_a_locked_client_is_told_so_and_no_password_is_checked(ann, monkeypatch):
    checked = []
    real = accounts._check
    monkeypatch.setattr(accounts, "_check", lambda h, p: checked.append(h) or real(h, p))
    now = time.time()
    for email in ("ann@example.com", "nobody@example.com"):
        for _ in range(LIMITS.lock_after):
            attempt(ann, "guess guess guess", "203.0.113.7", now, email)
    assert len(checked) == 2 * LIMITS.lock_after  # a dummy check for the unknown email too
    checked.clear()
    messages = set()
    for email in ("ann@example.com", "nobody@example.com"):  # alike: no email told apart
        with pytest.raises(accounts.SignInLimited) as held:
            accounts.verify(ann, email, PASSWORD, "203.0.113.7", now=now + 1)
        messages.add(str(held.value))
    assert checked == [] and len(messages) == 1
    assert "from your address" in messages.pop()


def test_one_address_spraying_emails_is_refused_whatever_email(ann):
    now = time.time()
    for i in range(LIMITS.address_limit):
        assert attempt(ann, "guess guess guess", "203.0.113.9", now, f"u{i}@example.com") == (
            "wrong")
    before = rows(ann)
    for i in range(50):  # refused before anything is made of the new emails
        assert attempt(ann, PASSWORD, "203.0.113.9", now + 1, f"new{i}@example.com") == (
            "address")
    assert rows(ann) == before
    assert attempt(ann, PASSWORD, "203.0.113.9", now + 1) == "address"
    assert attempt(ann, PASSWORD, "198.51.100.1", now + 1) == "ok"
    assert attempt(ann, PASSWORD, "203.0.113.9", now + LIMITS.address_window + 1) == "ok"


def test_a_distributed_guesser_meets_a_pace_and_the_rightful_user_still_gets_in(ann):
    now = time.time()
    assert attempt(ann, PASSWORD, "192.0.2.10", now - 3600) == "ok"  # ann's usual address
    for i in range(LIMITS.email_slow_after):  # one guess from each of many addresses
        assert attempt(ann, "guess guess guess", f"10.0.{i}.1", now) == "wrong"
    # now one check per email_pace from addresses the email never signed in from
    assert attempt(ann, "guess guess guess", "10.1.0.1", now) == "wrong"
    assert attempt(ann, "guess guess guess", "10.1.0.2", now + 1) == "email"
    with pytest.raises(accounts.SignInLimited) as held:
        accounts.verify(ann, "ann@example.com", PASSWORD, "10.1.0.3", now=now + 1)
    assert held.value.wait <= LIMITS.email_pace and "wait" in str(held.value)
    assert attempt(ann, PASSWORD, "198.51.100.1", now + 1) == "email"  # ann, a new address:
    assert attempt(ann, PASSWORD, "192.0.2.10", now + 1) == "ok"  # her usual one: no wait
    assert attempt(ann, PASSWORD, "198.51.100.1", now + LIMITS.email_pace) == "ok"  # waits
    # the pace is no lock: it never grows past a few seconds, however many guesses
    for i in range(30):
        t = now + LIMITS.email_pace * (i + 2)
        assert attempt(ann, "guess guess guess", f"10.2.{i}.1", t) == "wrong"
        assert attempt(ann, "guess guess guess", f"10.3.{i}.1", t + 1) == "email"


def test_the_counts_are_shared_by_workers_and_survive_a_restart(ann, db_path):
    worker2 = Store(db_path)
    try:
        now = time.time()
        for store in [ann, worker2] * 3:
            attempt(store, "guess guess guess", "203.0.113.7", now)
        assert attempt(worker2, PASSWORD, "203.0.113.7", now + 1) == "pair"
    finally:
        worker2.close()
    restarted = Store(db_path)
    try:
        assert attempt(restarted, PASSWORD, "203.0.113.7", now + 1) == "pair"
    finally:
        restarted.close()


def test_old_rows_expire(ann):
    now = time.time()
    for i in range(3):
        attempt(ann, "guess guess guess", f"203.0.113.{i}", now, f"x{i}@example.com")
    assert attempt(ann, PASSWORD, "192.0.2.10", now) == "ok"  # remembered 30 days
    assert rows(ann) == 3 * 3 + 3
    attempt(ann, "guess guess guess", "198.51.100.1", now + LIMITS.keep_seconds + 1)
    # left: the newest attempt's 3 rows and the good sign-in's pair (familiar address)
    assert rows(ann) == 3 + 1
    attempt(ann, "guess guess guess", "198.51.100.1", now + LIMITS.trust_seconds + 1)
    assert rows(ann) == 3


def test_a_new_password_ends_the_locks_of_the_email(ann):
    now = time.time()
    for _ in range(LIMITS.lock_after):
        attempt(ann, "guess guess guess", "203.0.113.7", now)
    user = ann.user_by_email("ann@example.com")
    assert accounts.sign_in_state(ann, user, now + 1) == "active: held up at 1 address"
    accounts.reset_password(ann, user["id"], "a brand new password")
    assert attempt(ann, "a brand new password", "203.0.113.7", now + 1) == "ok"


def test_concurrent_guesses_from_one_client_check_at_most_lock_after(ann, monkeypatch):
    from concurrent.futures import ThreadPoolExecutor

    checked = []
    real = accounts._check
    monkeypatch.setattr(accounts, "_check", lambda h, p: checked.append(1) or real(h, p))
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda i: attempt(ann, f"guess {i} guess", "203.0.113.7",
                                                  time.time()), range(40)))
    assert sorted(set(results)) == ["pair", "wrong"]
    assert len(checked) == LIMITS.lock_after


# ---------------------------------------------------------------- through the console


@pytest.fixture
def app(db_path):
    app = create_app({"DATABASE": db_path, "LOG_LEVEL": "WARNING",
                      "FORWARDED_ALLOW_IPS": "127.0.0.1"})
    store = app.extensions["flagsvc"].store
    store.create_project("p1")
    accounts.create_user(store, "ann@example.com", "admin", PASSWORD)
    return app


def sign_in(app, password, peer, forwarded=None, email="ann@example.com"):
    headers = {"X-Forwarded-For": forwarded} if forwarded else {}
    return app.test_client().post("/ui/signin", data={"email": email, "password": password},
                                  headers=headers, environ_base={"REMOTE_ADDR": peer})


def error_of(r):
    return re.search(r'role="alert">([^<]*)<', r.get_data(as_text=True)).group(1)


def test_the_page_says_who_is_held_up_and_for_how_long(app):
    for _ in range(LIMITS.lock_after):
        assert sign_in(app, "guess guess guess", "203.0.113.7").status_code == 401
    r = sign_in(app, PASSWORD, "203.0.113.7")
    assert r.status_code == 429 and 25 <= int(r.headers["Retry-After"]) <= 30
    assert "from your address" in error_of(r)
    assert sign_in(app, PASSWORD, "203.0.113.8").status_code == 303
    answers = {(r.status_code, error_of(r)) for r in (
        sign_in(app, PASSWORD, "203.0.113.7", email=e)
        for e in ("ann@example.com", "ANN@example.com "))}
    assert len(answers) == 1  # the email as typed and as stored are one


def test_the_address_counted_is_the_trusted_proxys_forwarded_for(app):
    store = app.extensions["flagsvc"].store
    sign_in(app, "guess guess guess", "127.0.0.1", "198.51.100.250, 203.0.113.5")
    sign_in(app, "guess guess guess", "10.0.0.9", "203.0.113.6")  # not a trusted proxy
    addresses = {r[0] for r in store.conn().execute(
        "SELECT address FROM sign_in_attempts WHERE email = ''")}
    assert addresses == {"203.0.113.5", "10.0.0.9"}


def test_the_users_page_shows_who_is_held_up(app):
    client = app.test_client()
    client.post("/ui/signin", data={"email": "ann@example.com", "password": PASSWORD})
    for i in range(LIMITS.email_slow_after):
        sign_in(app, "guess guess guess", f"10.0.{i}.1")
    page = client.get("/ui/users").get_data(as_text=True)
    state = re.search(r'data-label="State">([^<]+)<', page).group(1)
    assert state == f"active: paced ({LIMITS.email_slow_after} failed sign-ins)"


@pytest.mark.parametrize("allowed, peer, forwarded, counted", [
    ("127.0.0.1", "127.0.0.1", "203.0.113.5", "203.0.113.5"),
    ("127.0.0.1", "10.0.0.9", "203.0.113.5", "10.0.0.9"),  # an untrusted peer's header
    # a chain of named proxies: the address the outermost one saw, not a client's own words
    ("127.0.0.1,10.0.0.0/8", "127.0.0.1", "1.2.3.4, 203.0.113.5, 10.0.0.7", "203.0.113.5"),
    ("127.0.0.1", "127.0.0.1", "1.2.3.4, 203.0.113.5, 10.0.0.7", "10.0.0.7"),
    ("*", "192.0.2.1", "1.2.3.4, 203.0.113.5", "203.0.113.5"),
])
def test_the_client_address_behind_proxies(db_path, allowed, peer, forwarded, counted):
    app = create_app({"DATABASE": db_path, "LOG_LEVEL": "WARNING",
                      "FORWARDED_ALLOW_IPS": allowed})
    sign_in(app, "guess guess guess", peer, forwarded)
    assert {r[0] for r in app.extensions["flagsvc"].store.conn().execute(
        "SELECT address FROM sign_in_attempts WHERE email = ''")} == {counted}
