"""A public request evaluated (decide, OFREP): its fields checked against the documented limits
(limits.py), its context resolved by the project's policy (contexts.py: client_properties,
signed groups), then its flags. Explain shares `request_context`. Every HTTP surface that
answers flags for a public request calls `evaluate_request`, so they answer alike.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from .contexts import Resolved, resolve_context
from .engine import FlagResult
from .limits import check_context
from .service import FlagService, FlagSet, make_context


@dataclass(slots=True)
class Decision:
    """What `evaluate_request` answers: results, whether a lookup failed (the answers may
    miss stored properties), the flag set they come from, and why the request's groups were
    ignored (None if they were used)."""

    results: dict[str, FlagResult]
    degraded: bool
    flag_set: FlagSet
    groups_ignored: str | None = None
    person_ignored: str | None = None


def evaluate_request(service: FlagService, project_id: int, distinct_id: Any = None,
                     groups: Any = None, person_properties: Any = None,
                     group_properties: Any = None, signature: Any = None,
                     keys: Iterable[str] | None = None, now: float | None = None) -> Decision:
    """Evaluate a public request: limits (raises limits.LimitError), the project's context
    policy, then every flag (or `keys`). `signature`: the request's `$signature` (body or
    X-Flagsvc-Signature header)."""
    resolved = request_context(service, project_id, distinct_id, groups, person_properties,
                               group_properties, signature, now)
    results, degraded, flag_set = service.evaluate_checked(project_id, resolved.ctx, keys)
    return Decision(results, degraded, flag_set, resolved.groups_ignored,
                    resolved.person_ignored)


def request_context(service: FlagService, project_id: int, distinct_id: Any = None,
                    groups: Any = None, person_properties: Any = None,
                    group_properties: Any = None, signature: Any = None,
                    now: float | None = None) -> Resolved:
    """The context of a public request as the project lets it be used (not yet hashed for
    private keys: `evaluate_checked` does that)."""
    check_context(distinct_id, groups, person_properties, group_properties, signature)
    ctx = make_context(distinct_id, groups, person_properties, group_properties, now)
    return resolve_context(service.flag_set(project_id).policy, ctx, signature, now=ctx.now)
