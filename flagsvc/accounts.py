"""Console accounts: password hashing, sign-in with lockout, sessions and roles.

Passwords are hashed with argon2id through argon2-cffi (the reference implementation's
bindings, maintained by the PyCA-adjacent Hynek Schlawack; parameters of RFC 9106's second
recommended option, re-hashed on sign-in when the defaults move). Sessions are rows of the
database (a random cookie value, stored as its SHA-256), so every gunicorn worker sees them
and sign-out or a disabled user ends them at once; each carries its own CSRF token.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from .store import ROLES, Store

HASHER = PasswordHasher()  # argon2id, argon2-cffi's defaults (RFC 9106 low-memory profile)
# A hash to verify against when the email is unknown: the answer takes as long either way.
_DUMMY_HASH = HASHER.hash("not a password of anyone")
MIN_PASSWORD_LENGTH = 10
LOCK_AFTER = 5  # consecutive failures before the account is locked
LOCK_SECONDS = 30.0  # first lock; doubles with every further failure
MAX_LOCK_SECONDS = 3600.0
TOUCH_EVERY = 60.0  # a session's idle expiry moves on at most once a minute (no write per page)

# What each role may do: viewers read, editors also change flags, admins everything.
NEEDS = {"read": "viewer", "flags": "editor", "admin": "admin"}


class SignInRefused(Exception):
    """Wrong email or password, a disabled user, or a locked account (the message says)."""


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
    """A new password for a user (a one-time one, returned, when None): clears a lockout
    and ends the user's other sessions."""
    temporary = one_time_password() if password is None else None
    store.set_password(user_id, hash_password(password or temporary or ""),
                       must_change=temporary is not None, keep_session=keep_session,
                       actor=actor)
    return temporary


# Every refused sign-in says the same, after an argon2 check of the same cost: whether an
# email exists, is disabled or is locked cannot be told from the answer or its time.
REFUSED = (f"wrong email or password (after {LOCK_AFTER} failed sign-ins in a row an account "
           f"waits {int(LOCK_SECONDS)} s, then longer)")


def verify(store: Store, email: str, password: str, now: float | None = None) -> dict[str, Any]:
    """The user of a correct email and password; SignInRefused otherwise. A locked account
    is refused even with the right password until its lock ends (its password is then not
    even checked: the lock caps the guesses, concurrent ones included)."""
    now = time.time() if now is None else now
    user = store.user_by_email(email or "")
    if user is None or user["disabled"] or not store.reserve_sign_in(
            user["id"], LOCK_AFTER, LOCK_SECONDS, MAX_LOCK_SECONDS, now):
        _check(_DUMMY_HASH, password)  # as slow as a real check: no user enumeration by timing
        raise SignInRefused(REFUSED)
    if not _check(user["password_hash"], password):
        raise SignInRefused(REFUSED)
    store.record_sign_in(user["id"])
    if HASHER.check_needs_rehash(user["password_hash"]):
        store.set_password(user["id"], HASHER.hash(password), user["must_change_password"],
                           keep_session=None)
    return user


class AddressThrottle:
    """Failed sign-ins per client address (after the proxy's X-Forwarded-For when
    `--forwarded-allow-ips` trusts it): from `limit` failures with no pause of `window`
    seconds, that address is refused before any check, whatever email it tries. Kept in
    the worker's memory (bounded): a password spray from one address is slowed without a
    lock anyone could put on someone else's account."""

    def __init__(self, limit: int = 20, window: float = 600.0, size: int = 10_000) -> None:
        import threading

        from cachetools import TTLCache

        self.limit = limit
        self._failures: TTLCache[str, int] = TTLCache(maxsize=size, ttl=window)
        self._lock = threading.Lock()

    def blocked(self, address: str) -> bool:
        with self._lock:
            return self._failures.get(address, 0) >= self.limit

    def failed(self, address: str) -> None:
        with self._lock:
            self._failures[address] = self._failures.get(address, 0) + 1


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
