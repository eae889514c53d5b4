"""The bucket hash: the contract of SPEC §4, compatible with Unleash's normalizedHash.

`bucket(ns, identifier)` is in 1..100; a condition is in its rollout iff
`bucket <= rollout_percentage`. `variant_target(ns, identifier, total)` is in 1..total;
the first variant whose cumulative weight is >= the target wins.
"""

from __future__ import annotations

import mmh3

VARIANT_SEED = 86028157
_hash = mmh3.hash


def _utf8(text: str) -> bytes:
    # mmh3 hashes a str as its UTF-8 bytes, but segfaults on a str it cannot encode (a lone
    # surrogate, which JSON can carry in a distinct id or group key): encode it ourselves.
    try:
        return text.encode()
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass")


def bucket(namespace: str, identifier: str) -> int:
    """The rollout bucket (1..100) of `identifier` in `namespace`."""
    return _hash(_utf8(f"{namespace}:{identifier}"), 0, False) % 100 + 1


def variant_target(namespace: str, identifier: str, total_weight: int) -> int:
    """The variant target (1..total_weight) of `identifier` in `namespace`."""
    return _hash(_utf8(f"{namespace}:{identifier}"), VARIANT_SEED, False) % total_weight + 1


def hash_input(namespace: str, identifier: str) -> bytes:
    """The bytes both hashes are computed on (computed once per condition match)."""
    return _utf8(f"{namespace}:{identifier}")
