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
- `require_signed_persons`: a request's stored person (by `distinct_id`) is read only with a
  valid signature of the same `{distinct_id, groups}`; else the request is evaluated from
  what it claims alone (`Context.unsigned_person`; the distinct id still buckets rollouts)
  and `Resolved.person_ignored` says why. Without it, anyone may name a distinct id and
  read flags that depend on that person's stored properties.
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
UNSIGNED_PERSON = "unsigned_person"  # why a request's stored person was not read
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
    require_signed_persons: bool = False
    # (key, expires_at or None) of the keys that verify signatures
    signing_keys: tuple[tuple[str, float | None], ...] = ()

    @property
    def is_default(self) -> bool:
        return (self.client_properties == OVERRIDE and not self.require_signed_groups
                and not self.require_signed_persons)


DEFAULT_POLICY = ContextPolicy()


def context_policy(project: Mapping[str, Any] | None,
              keys: list[Mapping[str, Any]] | None = None) -> ContextPolicy:
    """The policy of a project row (store.get_project; the definitions document's `project`)
    and its signing keys (`store.signing_keys(with_secret=True)`)."""
    if not project:
        return DEFAULT_POLICY
    client = project.get("client_properties") or OVERRIDE
    signed = bool(project.get("require_signed_groups"))
    persons = bool(project.get("require_signed_persons"))
    if client == OVERRIDE and not signed and not persons:
        return DEFAULT_POLICY
    return ContextPolicy(client if client in (OVERRIDE, FILL, IGNORE) else OVERRIDE, signed,
                         persons, tuple((k["key"], k.get("expires_at")) for k in keys or ()))


class Resolved(NamedTuple):
    """The context evaluation uses, and why the request's groups / stored person were
    ignored (or None)."""

    ctx: Context
    groups_ignored: str | None = None
    person_ignored: str | None = None


def resolve_context(policy: ContextPolicy, ctx: Context, signature: Any = None,
                    trusted: bool = False, now: float | None = None) -> Resolved:
    """`ctx` as the project lets it be used (module docstring). `trusted`: the caller is the
    app's backend (a FlagClient), whose groups count as signed."""
    if policy is DEFAULT_POLICY or policy.is_default:
        return Resolved(ctx)
    ignored = person_ignored = None
    verdict: list[str | None] = []  # the signature checked once: [None] valid, [why] not

    def check() -> str | None:
        if not verdict:
            if signature is None or signature == "":
                verdict.append(UNSIGNED)
            else:
                at = time.time() if now is None else now
                live = [k for k, expires in policy.signing_keys
                        if expires is None or expires > at]
                verdict.append(None if verify_context(live, ctx.distinct_id, ctx.groups,
                                                      signature, at) else BAD_SIGNATURE)
        return verdict[0]

    if policy.require_signed_persons and not trusted and ctx.distinct_id:
        person_ignored = check()
        if person_ignored == UNSIGNED:
            person_ignored = UNSIGNED_PERSON
    if policy.require_signed_groups and not trusted and ctx.groups:
        ignored = check()
        if ignored is not None:
            ctx = ctx._replace(groups=EMPTY, group_properties=EMPTY)
    if person_ignored is not None:
        ctx = ctx._replace(unsigned_person=True)
    if policy.client_properties == IGNORE:
        ctx = ctx._replace(person_properties=EMPTY, group_properties=EMPTY)
    elif policy.client_properties == FILL:
        ctx = ctx._replace(fill=True)
    return Resolved(ctx, ignored, person_ignored)
