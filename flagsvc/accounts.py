"""Console accounts: password hashing, sign-in with limits on failures, sessions and roles.

Passwords are hashed with argon2id through argon2-cffi (the reference implementation's
bindings, maintained by the PyCA-adjacent Hynek Schlawack; parameters of RFC 9106's second
recommended option, re-hashed on sign-in when the defaults move). Sessions are rows of the
database (a random cookie value, stored as its SHA-256), so every gunicorn worker sees them
and sign-out or a disabled user ends them at once; each carries its own CSRF token.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets
import time
from dataclasses import dataclass
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from .store import ROLES, Store
from .store.signin import Attempts

HASHER = PasswordHasher()  # argon2id, argon2-cffi's defaults (RFC 9106 low-memory profile)
# A hash to verify against when the email is unknown: the answer takes as long either way.
_DUMMY_HASH = HASHER.hash("not a password of anyone")
MIN_PASSWORD_LENGTH = 10
TOUCH_EVERY = 60.0  # a session's idle expiry moves on at most once a minute (no write per page)

# What each role may do: viewers read, editors also change flags, admins everything.
NEEDS = {"read": "viewer", "flags": "editor", "admin": "admin"}


class SignInRefused(Exception):
    """Wrong email or password, a disabled user, or too many failures (SignInLimited)."""


class SignInLimited(SignInRefused):
    """Refused before the password was checked: `why` ("address", "pair", "email") and
    how long to wait (`wait`, seconds)."""

    def __init__(self, why: str, wait: float) -> None:
        self.why, self.wait = why, max(1, math.ceil(wait))
        text = {"address": "too many failed sign-ins from your address: try again in {}",
                "pair": "too many failed sign-ins with this email from your address: try "
                        "again in {} (sign-ins from other addresses are not held up)",
                "email": "this email has had many failed sign-ins lately, from elsewhere "
                         "too: wait {}, then sign in again"}[why]
        super().__init__(text.format(_duration(self.wait)))


def _duration(seconds: int) -> str:
    return f"{seconds} s" if seconds < 120 else f"{-(-seconds // 60)} minutes"


@dataclass(frozen=True)
class SignInLimits:
    """What failed sign-ins hold up, counted in the database (store/signin.py) so every
    worker and node sees them and a restart forgets nothing:

    - one client (email, address): `lock_after` failures in a row lock that client out of
      that email for `lock_seconds`, doubling with each further failure up to
      `max_lock_seconds`; the rightful user elsewhere is not held up by it;
    - one address, whatever emails it tries: `address_limit` failures within
      `address_window` seconds refuse it until the window ends (a password spray);
    - one email, from every address: from `email_slow_after` failures within
      `email_window`, its passwords are checked at most once per `email_pace` seconds
      from addresses it has not signed in from in `trust_seconds` (a distributed guesser
      meets a pace, not a lock; its rightful user's familiar address is not paced, and
      from a new one they wait a few seconds).
    Counts of a client expire `keep_seconds` after its first failure."""

    lock_after: int = 5
    lock_seconds: float = 30.0
    max_lock_seconds: float = 3600.0
    address_limit: int = 20
    address_window: float = 600.0
    email_slow_after: int = 10
    email_window: float = 900.0
    email_pace: float = 5.0
    trust_seconds: float = 30 * 86400.0
    keep_seconds: float = 86400.0

    def decide(self, by_address: Attempts, pair: Attempts, by_email: Attempts, now: float
               ) -> tuple[str | None, float]:
        """(None, 0) and the three rows counted as after a failure (until it succeeds);
        or why not and how long to wait, the rows then to be left as they were."""
        if by_address.failures and by_address.since <= now - self.address_window:
            by_address.failures = 0
        if by_address.failures >= self.address_limit:
            return "address", by_address.since + self.address_window - now
        if pair.blocked_until is not None and pair.blocked_until > now:
            return "pair", pair.blocked_until - now
        if pair.failures and pair.since <= now - self.keep_seconds:
            pair.failures = 0
        if by_email.failures and by_email.since <= now - self.email_window:
            by_email.failures = 0
        familiar = pair.succeeded_at is not None and pair.succeeded_at > now - self.trust_seconds
        if not familiar and by_email.failures >= self.email_slow_after:
            if by_email.blocked_until is not None and by_email.blocked_until > now:
                return "email", by_email.blocked_until - now
            by_email.blocked_until = now + self.email_pace
        for row in (by_address, pair, by_email):
            if row.failures == 0:
                row.since = now
            row.failures += 1
        if pair.failures >= self.lock_after:
            pair.blocked_until = now + min(self.max_lock_seconds,
                                           self.lock_seconds * 2 ** (pair.failures
                                                                     - self.lock_after))
        return None, 0.0

    def expires_at(self, row: Attempts, now: float) -> float:
        """When a row may be forgotten: its counts, lock and familiarity all over."""
        return max(now + self.keep_seconds, row.blocked_until or 0.0,
                   (row.succeeded_at or -self.trust_seconds) + self.trust_seconds)


LIMITS = SignInLimits()


def may(role: str, need: str) -> bool:
    """Whether `role` may do what `need` ("read", "flags", "admin") names."""
    return ROLES.index(role) >= ROLES.index(NEEDS[need])


def hash_password(password: str) -> str:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValueError(f"a password has at least {MIN_PASSWORD_LENGTH} characters")
    return HASHER.hash(password)


def one_time_password() -> str:
    return secrets.token_urlsafe(12)


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_user(store: Store, email: str, role: str, password: str | None = None,
                projects: list[int] | None = None,
                actor: str | None = None) -> tuple[dict[str, Any], str | None]:
    """A new user; without `password`, a one-time one (returned) that must be changed at
    the first sign-in. Audited when an `actor` made it."""
    email = email.strip()
    if "@" not in email or len(email) > 254 or any(c.isspace() for c in email):
        raise ValueError(f"{email!r} is not an email address")
    temporary = one_time_password() if password is None else None
    user = store.create_user(email, hash_password(password or temporary or ""), role, projects,
                             must_change_password=temporary is not None, actor=actor)
    return user, temporary


def reset_password(store: Store, user_id: int, password: str | None = None,
                   keep_session: int | None = None, actor: str | None = None) -> str | None:
    """A new password for a user (a one-time one, returned, when None): ends the locks
    failed sign-ins put on their email and the user's other sessions."""
    temporary = one_time_password() if password is None else None
    store.set_password(user_id, hash_password(password or temporary or ""),
                       must_change=temporary is not None, keep_session=keep_session,
                       actor=actor)
    return temporary


# A wrong password and an unknown or disabled email answer alike, after an argon2 check of
# the same cost; the limits count unknown emails as they count real ones (by the email
# typed), so no answer or time tells which emails exist.
REFUSED = (f"wrong email or password (after {LIMITS.lock_after} failed sign-ins in a row "
           f"with an email from one address, that address waits {int(LIMITS.lock_seconds)} s "
           "for it, then longer)")


def verify(store: Store, email: str, password: str, address: str = "local",
           now: float | None = None) -> dict[str, Any]:
    """The user of a correct email and password from a client `address`; SignInLimited
    when the limits (SignInLimits) hold this attempt up — its password is then not even
    checked — and SignInRefused otherwise."""
    now = time.time() if now is None else now
    key = (email or "").strip().lower()[:320]
    address = (address or "unknown")[:100]
    why, wait = store.reserve_sign_in(key, address, LIMITS, now)
    if why is not None:
        raise SignInLimited(why, wait)
    user = store.user_by_email(key) if key else None
    if user is None or user["disabled"]:
        _check(_DUMMY_HASH, password)  # as slow as a real check: no user enumeration by timing
        raise SignInRefused(REFUSED)
    if not _check(user["password_hash"], password):
        raise SignInRefused(REFUSED)
    store.sign_in_succeeded(key, address, LIMITS, now)
    if HASHER.check_needs_rehash(user["password_hash"]):
        store.set_password(user["id"], HASHER.hash(password), user["must_change_password"],
                           keep_session=None)
    return user


def sign_in_state(store: Store, user: dict[str, Any], now: float | None = None) -> str:
    """What the users page and `flagsvc user list` say of a user's sign-ins."""
    if user["disabled"]:
        return "disabled"
    now = time.time() if now is None else now
    state = store.sign_in_state(user["email"], now)
    parts = []
    if state["locked_addresses"]:
        n = state["locked_addresses"]
        parts.append(f"held up at {n} address{'es' if n > 1 else ''}")
    if state["failures"] >= LIMITS.email_slow_after and (
            state["since"] > now - LIMITS.email_window):
        parts.append(f"paced ({state['failures']} failed sign-ins)")
    return "active" + (": " + ", ".join(parts) if parts else "")


def _check(encoded: str, password: str) -> bool:
    try:
        return HASHER.verify(encoded, password or "")
    except (VerificationError, InvalidHashError):
        return False


@dataclass(frozen=True)
class SessionPolicy:
    idle_seconds: float
    max_seconds: float

    def expiry(self, created_at: float, now: float) -> float:
        return min(now + self.idle_seconds, created_at + self.max_seconds)


def start_session(store: Store, user: dict[str, Any], policy: SessionPolicy) -> tuple[str, str]:
    """A new session for `user`: (cookie value, CSRF token)."""
    token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    projects = store.user_project_ids(user)
    now = time.time()
    store.create_session(user["id"], token_digest(token), csrf, projects[0] if projects else None,
                         policy.expiry(now, now))
    return token, csrf


def current_session(store: Store, token: str | None, policy: SessionPolicy
                    ) -> dict[str, Any] | None:
    """The live session of a cookie value (its idle expiry moved on), or None."""
    if not token or len(token) > 200:
        return None
    session = store.session_by_token(token_digest(token))
    if session is None:
        return None
    now = time.time()
    if now - session["last_seen_at"] >= TOUCH_EVERY:
        store.touch_session(session["id"], policy.expiry(session["created_at"], now))
    return session


def csrf_ok(session: dict[str, Any], sent: str | None) -> bool:
    return bool(sent) and hmac.compare_digest(session["csrf_token"], sent or "")
