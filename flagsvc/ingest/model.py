"""The normalized ingestion call: every wire format (Segment, PostHog, Accoil) becomes these."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..limits import MAX_WARNINGS, bounded_warning

KINDS = ("identify", "group", "track", "alias")


@dataclass(slots=True)
class Call:
    """One normalized identify / group / track / alias call.

    `timestamp` is the event time in Unix seconds, already corrected for client clock
    skew; it orders property writes (last write wins per key)."""

    kind: str
    message_id: str
    timestamp: float
    distinct_id: str | None = None
    event: str | None = None
    properties: dict[str, Any] = field(default_factory=dict)
    person_set: dict[str, Any] = field(default_factory=dict)
    person_set_once: dict[str, Any] = field(default_factory=dict)
    person_unset: list[str] = field(default_factory=list)
    group_type: str | None = None
    group_key: str | None = None
    group_set: dict[str, Any] = field(default_factory=dict)
    group_unset: list[str] = field(default_factory=list)
    parent_key: str | None = None
    parent_type: str | None = None
    groups: dict[str, str] = field(default_factory=dict)  # event attributed to these groups
    # Further keys of a type of `groups` (Amplitude / Mixpanel accept a list of keys per type:
    # the event belongs to each of those groups): [(type, key)], each also a membership.
    more_groups: list[tuple[str, str]] = field(default_factory=list)
    previous_id: str | None = None  # alias: the id being merged into distinct_id
    # A group key named without a type (Segment/Accoil `context.groupId` alone): attributed
    # to the project's group with that key whatever its type (store/batch.py `_bare`).
    bare_group: str | None = None
    # The client gave a message id but no timestamp (`timestamp` is then the receive time,
    # less a PostHog `offset`, which a retry does not repeat): the id is checked against
    # every stored event marked so, not only those of nearby days (store/ingest.py `_fresh`).
    exact_id: bool = False
    # Sent with the public token alone (api/capture.py): such a call may not set or change a
    # parent link when its project requires signed groups (store/batch.py; README "What a
    # decide answer reveals"); one with the secret key too, or Store.ingest in-process, may.
    public: bool = False


@dataclass(slots=True)
class IngestResult:
    """What a batch did: stored calls, duplicates skipped, group references dropped (a 6th
    group type, an empty type name), and warnings (nothing silent)."""

    stored: int = 0
    duplicates: int = 0
    dropped: int = 0
    warnings: list[str] = field(default_factory=list)
    more_warnings: int = 0  # distinct warnings past limits.MAX_WARNINGS, counted only
    _seen: set[str] = field(default_factory=set, repr=False, compare=False)

    def warn(self, message: str) -> None:
        """Add a warning once (a set, not a scan of the list: one request may repeat one
        thousands of times), listing at most MAX_WARNINGS, each cut to MAX_WARNING_LENGTH."""
        message = bounded_warning(message)
        if message in self._seen:
            return
        self._seen.add(message)
        if len(self.warnings) < MAX_WARNINGS:
            self.warnings.append(message)
        else:
            self.more_warnings += 1
