"""Signed contexts: the app's backend signs `{distinct_id, groups}` so a browser cannot claim
groups it is not in (SPEC §11; README "What a decide answer reveals").

The canonical form is meant to be rebuilt in any language from its description alone:

    message   = "flagsvc-context-v1" LF distinct_id ( LF group_type LF group_key )*
    signature = "v1=" + lowercase hex of HMAC-SHA256(key = the signing key as UTF-8,
                                                      data = message as UTF-8)

- LF is one "\\n" byte; `distinct_id` is "" when there is none; group keys are strings.
- The groups are sorted by group type in code point order (= the order of their UTF-8
  bytes; Python's `sorted`, in JavaScript compare `Buffer.from(a)` with `Buffer.from(b)`).
- A distinct id, group type or key containing LF cannot be signed (so the form is
  unambiguous: splitting the message on LF gives back every part).

An expiring signature (optional; the form above never expires, and keeps verifying):

    message   = "flagsvc-context-v1-exp" LF expires ( LF as above from distinct_id on )
    signature = "v1=" + lowercase hex HMAC-SHA256(...) + ";exp=" + expires

`expires` is the expiry as whole Unix seconds in decimal; such a signature verifies only
before that time. (Its own first line keeps the two forms apart.)

Pure: no I/O.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Iterable, Mapping
from typing import Any

CONTEXT_PREFIX = "flagsvc-context-v1"
EXPIRING_PREFIX = "flagsvc-context-v1-exp"
EXPIRY_SEPARATOR = ";exp="
SIGNATURE_PREFIX = "v1="
SIGNATURE_HEADER = "X-Flagsvc-Signature"  # or "$signature" in the body
SIGNATURE_FIELD = "$signature"


def canonical_context(distinct_id: Any = None, groups: Mapping[str, Any] | None = None,
                      expires: int | None = None) -> bytes:
    """The bytes a signature covers (see the module docstring); ValueError for a part with a
    line feed in it."""
    head = [CONTEXT_PREFIX] if expires is None else [EXPIRING_PREFIX, str(int(expires))]
    parts = [*head, "" if distinct_id is None else str(distinct_id)]
    for group_type in sorted(groups or {}):
        parts += [group_type, str((groups or {})[group_type])]
    for part in parts:
        if "\n" in part:
            raise ValueError("a distinct id, group type or group key with a line feed in it "
                             "cannot be signed")
    return "\n".join(parts).encode("utf-8", "surrogatepass")


def sign_context(key: str, distinct_id: Any = None,
                 groups: Mapping[str, Any] | None = None, expires_at: float | None = None) -> str:
    """The `$signature` of a context, computed on the app's backend with the project's signing
    key: `flagsvc.sign_context(key, "user-1", {"organization": "acme"})`; `expires_at` (Unix
    seconds, whole ones count) makes one that stops verifying then."""
    expires = None if expires_at is None else int(expires_at)
    digest = hmac.new(key.encode("utf-8"), canonical_context(distinct_id, groups, expires),
                      hashlib.sha256).hexdigest()
    return SIGNATURE_PREFIX + digest + ("" if expires is None else f"{EXPIRY_SEPARATOR}{expires}")


def verify_context(keys: Iterable[str], distinct_id: Any, groups: Mapping[str, Any],
                   signature: Any, now: float | None = None) -> bool:
    """Whether `signature` is the signature of this context by one of `keys` (and, if it
    carries an expiry, `now` is before it)."""
    if not isinstance(signature, str) or not signature.startswith(SIGNATURE_PREFIX):
        return False
    body, sep, stamp = signature[len(SIGNATURE_PREFIX):].partition(EXPIRY_SEPARATOR)
    expires = None
    if sep:
        stamp = stamp.strip()
        if not (stamp.isascii() and stamp.isdigit() and len(stamp) <= 12):
            return False
        expires = int(stamp)
        if expires <= (time.time() if now is None else now):
            return False
    try:
        message = canonical_context(distinct_id, groups, expires)
    except ValueError:
        return False
    given = body.strip().lower().encode("ascii", "replace")
    for key in keys:
        expected = hmac.new(key.encode("utf-8"), message, hashlib.sha256).hexdigest()
        if hmac.compare_digest(expected.encode(), given):
            return True
    return False
