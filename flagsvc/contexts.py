"""What a request may claim: the one place a context meets its project's policy.

Decide (`/flags`, `/decide`), OFREP, explain and both FlagClients all pass the context they
built through `resolve_context` (`evaluation.evaluate_request` does it for the HTTP
surfaces), so they answer alike:

- `client_properties`: `override` (the request's person/group properties win per key),
  `fill` (stored values win, the request's only fill keys the store lacks), `ignore` (the
  request's properties are not used).
- `require_signed_groups`: a request's `groups` are used only with a valid signature of
  `{distinct_id, groups}` by a live signing key (signing.py); else they are ignored, as if
  absent, together with its `group_properties`, and `Resolved.groups_ignored` says why. A
  FlagClient runs in the app's backend (it holds the database or the secret key): what the
  app passes it is trusted as signed (`trusted=True`).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from .engine import Context
from .engine.context import EMPTY
from .signing import verify_context

OVERRIDE, FILL, IGNORE = "override", "fill", "ignore"

# Why a request's groups were not used (decide's `groupsIgnored`, explain's `groups_ignored`).
UNSIGNED = "unsigned_groups"
BAD_SIGNATURE = "bad_signature"
IGNORED_DESCRIPTIONS = {
    UNSIGNED: "the request's groups were ignored: the project requires signed groups and "
              "the request has no $signature",
    BAD_SIGNATURE: "the request's groups were ignored: its $signature is not valid for its "
                   "distinct_id and groups with any live signing key",
}


@dataclass(frozen=True, slots=True)
class ContextPolicy:
    """A project's settings for what requests may claim (from its row and signing keys)."""

    client_properties: str = OVERRIDE
    require_signed_groups: bool = False
    # (key, expires_at or None) of the keys that verify signatures
    signing_keys: tuple[tuple[str, float | None], ...] = ()

    @property
    def is_default(self) -> bool:
        return self.client_properties == OVERRIDE and not self.require_signed_groups


DEFAULT_POLICY = ContextPolicy()


def context_policy(project: Mapping[str, Any] | None,
              keys: list[Mapping[str, Any]] | None = None) -> ContextPolicy:
    """The policy of a project row (store.get_project; the definitions document's `project`)
    and its signing keys (`store.signing_keys(with_secret=True)`)."""
    if not project:
        return DEFAULT_POLICY
    client = project.get("client_properties") or OVERRIDE
    signed = bool(project.get("require_signed_groups"))
    if client == OVERRIDE and not signed:
        return DEFAULT_POLICY
    return ContextPolicy(client if client in (OVERRIDE, FILL, IGNORE) else OVERRIDE, signed,
                         tuple((k["key"], k.get("expires_at")) for k in keys or ()))


class Resolved(NamedTuple):
    """The context evaluation uses, and why the request's groups were ignored (or None)."""

    ctx: Context
    groups_ignored: str | None = None


def resolve_context(policy: ContextPolicy, ctx: Context, signature: Any = None,
                    trusted: bool = False, now: float | None = None) -> Resolved:
    """`ctx` as the project lets it be used (module docstring). `trusted`: the caller is the
    app's backend (a FlagClient), whose groups count as signed."""
    if policy is DEFAULT_POLICY or policy.is_default:
        return Resolved(ctx)
    ignored = None
    if policy.require_signed_groups and not trusted and ctx.groups:
        if signature is None or signature == "":
            ignored = UNSIGNED
        else:
            at = time.time() if now is None else now
            live = [k for k, expires in policy.signing_keys if expires is None or expires > at]
            if not verify_context(live, ctx.distinct_id, ctx.groups, signature):
                ignored = BAD_SIGNATURE
        if ignored is not None:
            ctx = ctx._replace(groups=EMPTY, group_properties=EMPTY)
    if policy.client_properties == IGNORE:
        ctx = ctx._replace(person_properties=EMPTY, group_properties=EMPTY)
    elif policy.client_properties == FILL:
        ctx = ctx._replace(fill=True)
    return Resolved(ctx, ignored)
