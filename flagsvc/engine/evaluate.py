"""Evaluate compiled flags for a context (SPEC §4).

One `Evaluation` serves one request: it looks up and merges stored and request
properties at most once per person/group type, and remembers each flag's result so
dependencies are computed once. Nothing here raises on bad data: an unexpected error in
one flag becomes `reason: error` for that flag only.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

from .compile import PERSON, CompiledFlag, Condition
from .context import EMPTY, NULL_RESOLVER, Context, FlagResult, Resolver
from .hashing import bucket, variant_target
from .hierarchy import Path, find_group_key

_MISSING = object()

# When no condition matched, the most telling reason wins.
_PRIORITY = {"out_of_rollout_bound": 3, "no_group_type": 2, "dependency_off": 1, "no_condition_match": 0}


class Evaluation:
    """The evaluation of a set of flags for one context."""

    __slots__ = ("flags", "ctx", "resolver", "_keys", "_props", "_results", "_active")

    def __init__(
        self, flags: Mapping[str, CompiledFlag], ctx: Context, resolver: Resolver = NULL_RESOLVER
    ) -> None:
        self.flags = flags
        self.ctx = ctx
        self.resolver = resolver
        self._keys: dict[str, tuple[str, Path | None] | None] = {}
        self._props: dict[str, Mapping[str, Any] | None] = {}
        self._results: dict[str, FlagResult] = {}
        self._active: set[str] = set()

    # ------------------------------------------------------------ lookups

    def group_key(self, group_type: str) -> tuple[str, Path | None] | None:
        """The identifier for a bucket type: the distinct id for $person, else a group key."""
        found = self._keys.get(group_type, _MISSING)
        if found is _MISSING:
            if group_type == PERSON:
                did = self.ctx.distinct_id
                found = (str(did), None) if did not in (None, "") else None
            else:
                try:
                    found = find_group_key(group_type, self.ctx.groups, self.resolver)
                except Exception:
                    found = None
            self._keys[group_type] = found
        return found  # type: ignore[return-value]

    def properties(self, source: str, group_type: str | None) -> Mapping[str, Any] | None:
        """Stored properties overlaid with the request's (request wins per key)."""
        slot = group_type if source == "group" else PERSON
        props = self._props.get(slot, _MISSING)
        if props is not _MISSING:
            return props  # type: ignore[return-value]
        ctx = self.ctx
        if source == "group":
            found = self.group_key(group_type)  # type: ignore[arg-type]
            if found is None:
                props = None
            else:
                key = found[0]
                stored = self._lookup(self.resolver.group_properties, group_type, key)
                given = ctx.group_properties.get(group_type) or EMPTY  # type: ignore[arg-type]
                props = {**stored, **given, "$group_key": key} if stored else {**given, "$group_key": key}
        else:
            did = ctx.distinct_id
            given = ctx.person_properties or EMPTY
            if did in (None, ""):
                props = dict(given)
            else:
                stored = self._lookup(self.resolver.person_properties, str(did))
                props = {**stored, **given, "distinct_id": did} if stored else {**given, "distinct_id": did}
        self._props[slot] = props
        return props

    @staticmethod
    def _lookup(fn: Any, *args: str) -> Mapping[str, Any]:
        try:
            found = fn(*args)
        except Exception:
            return EMPTY
        return found if isinstance(found, Mapping) else EMPTY

    # ------------------------------------------------------------ flags

    def flag(self, key: str) -> FlagResult | None:
        """The result of flag `key` (None if there is no such flag)."""
        done = self._results.get(key)
        if done is not None:
            return done
        flag = self.flags.get(key)
        if flag is None:
            return None
        if key in self._active:  # cycles are caught at compile time; this is a safety net
            return FlagResult(key, False, "error", error="dependency cycle")
        self._active.add(key)
        try:
            result = self._evaluate(flag)
        except Exception as e:
            result = FlagResult(key, False, "error", flag_id=flag.id, version=flag.version,
                                error=f"{type(e).__name__}: {e}")
        finally:
            self._active.discard(key)
        self._results[key] = result
        return result

    def all(self, keys: Iterable[str] | None = None) -> dict[str, FlagResult]:
        """Results for the given flag keys (default: every flag); unknown keys are skipped."""
        out: dict[str, FlagResult] = {}
        for key in self.flags if keys is None else keys:
            r = self.flag(key)
            if r is not None:
                out[key] = r
        return out

    def _evaluate(self, flag: CompiledFlag) -> FlagResult:
        if flag.error is not None:
            return FlagResult(flag.key, False, "error", flag_id=flag.id, version=flag.version,
                              error=flag.error)
        if not flag.active:
            return FlagResult(flag.key, False, "flag_disabled", flag_id=flag.id, version=flag.version)
        now = self.ctx.now
        miss = "no_condition_match"
        for index, cond in enumerate(flag.conditions):
            found = self.group_key(cond.bucket_by)
            if found is None:
                miss = _worse(miss, "no_group_type")
                continue
            failed = self._failed_filter(cond, now)
            if failed is not None:
                miss = _worse(miss, "dependency_off" if failed == "flag" else "no_condition_match")
                continue
            identifier = found[0]
            if cond.rollout < 100 and bucket(flag.namespace, identifier) > cond.rollout:
                miss = _worse(miss, "out_of_rollout_bound")
                continue
            variant = self._variant(flag, cond, identifier)
            payload = flag.payloads.get(variant if variant is not None else "true")
            return FlagResult(flag.key, True, "condition_match", variant, index, payload, flag.id,
                              flag.version, cond.bucket_by, identifier, found[1])
        found = self.group_key(flag.bucket_by)
        return FlagResult(flag.key, False, miss, flag_id=flag.id, version=flag.version,
                          bucket_by=flag.bucket_by,
                          identifier=found[0] if found else None,
                          inferred_from=found[1] if found else None)

    def _failed_filter(self, cond: Condition, now: float) -> str | None:
        """The source of the first filter that does not match ("person", "group", "flag")."""
        for f in cond.filters:
            if f.source == "flag":
                dep = self.flag(f.key)
                props = {f.key: dep.value} if dep is not None and dep.reason != "error" else EMPTY
                if not f.test(props, now):
                    return "flag"
            elif not f.test(self.properties(f.source, f.group_type), now):
                return f.source
        return None

    @staticmethod
    def _variant(flag: CompiledFlag, cond: Condition, identifier: str) -> str | None:
        if not flag.variants:
            return None
        if cond.variant is not None:
            return cond.variant
        target = variant_target(flag.namespace, identifier, flag.total_weight)
        for name, cumulative in flag.variants:
            if cumulative >= target:
                return name
        return None  # unreachable: the last cumulative weight is the total


def _worse(current: str, new: str) -> str:
    return new if _PRIORITY[new] > _PRIORITY[current] else current


def evaluate(
    flags: Mapping[str, CompiledFlag], key: str, ctx: Context, resolver: Resolver = NULL_RESOLVER
) -> FlagResult | None:
    """One flag's result (None if the flag does not exist)."""
    return Evaluation(flags, ctx, resolver).flag(key)


def evaluate_all(
    flags: Mapping[str, CompiledFlag],
    ctx: Context,
    resolver: Resolver = NULL_RESOLVER,
    keys: Iterable[str] | None = None,
) -> dict[str, FlagResult]:
    """Results of every flag (or of `keys`), sharing lookups across flags."""
    return Evaluation(flags, ctx, resolver).all(keys)
