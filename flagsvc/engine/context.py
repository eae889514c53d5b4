"""Plain data that goes into and comes out of an evaluation."""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from types import MappingProxyType
from typing import Any, NamedTuple, Protocol

EMPTY: Mapping[str, Any] = MappingProxyType({})  # shared, so it must never change


class Context(NamedTuple):
    """Who is asking. `now` is Unix seconds (for relative dates), given by the caller.
    `fill`: stored properties win over the request's, which only fill keys the store lacks
    (a project's `client_properties: fill`); else the request's win per key.
    `unsigned_person`: the stored person of `distinct_id` is not read (a project's
    `require_signed_persons` and no valid signature): only the request's properties count.
    (A named tuple: immutable and cheap to build, which matters per evaluation.)"""

    distinct_id: str | None = None
    groups: Mapping[str, str] = EMPTY
    person_properties: Mapping[str, Any] = EMPTY
    group_properties: Mapping[str, Mapping[str, Any]] = EMPTY
    now: float = 0.0
    fill: bool = False
    unsigned_person: bool = False


class Resolver(Protocol):
    """Stored data the engine may look up; every method returns None when it knows nothing."""

    def person_properties(self, distinct_id: str) -> Mapping[str, Any] | None: ...

    def group_properties(self, group_type: str, group_key: str) -> Mapping[str, Any] | None: ...

    def group_parent(self, group_type: str, group_key: str) -> tuple[str, str] | None: ...


class NullResolver:
    """A resolver with no stored data: only what the request carries is used."""

    def person_properties(self, distinct_id: str) -> None:
        return None

    def group_properties(self, group_type: str, group_key: str) -> None:
        return None

    def group_parent(self, group_type: str, group_key: str) -> None:
        return None


NULL_RESOLVER = NullResolver()


class FlagResult(NamedTuple):
    """The outcome of one flag for one context (a named tuple: cheap to build, immutable)."""

    key: str
    enabled: bool
    reason: str
    variant: str | None = None
    condition_index: int | None = None
    payload: Any = None
    flag_id: Any = None
    version: int | None = None
    bucket_by: str | None = None
    identifier: str | None = None  # the distinct id or group key that was hashed
    inferred_from: tuple[tuple[str, str], ...] | None = None  # hierarchy path, if inferred
    error: str | None = None

    @property
    def value(self) -> bool | str:
        """What SDKs call the flag value: the variant key, else the enabled boolean."""
        if self.enabled and self.variant is not None:
            return self.variant
        return self.enabled


# Building a result from all twelve fields without the keyword machinery (hot path).
new_result = partial(tuple.__new__, FlagResult)
