"""Evaluate compiled flags for a context (SPEC §4).

One `Evaluation` serves one request: it looks up and merges stored and request
properties at most once per person/group type, and remembers each flag's result so
dependencies are computed once. Nothing here raises on bad data: an unexpected error in
one flag becomes `reason: error` for that flag only.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from .compile import PERSON, CompiledFlag
from .context import EMPTY, NULL_RESOLVER, Context, FlagResult, Resolver, new_result
from .hashing import VARIANT_SEED, _hash, hash_input
from .hierarchy import Path, find_group_key

_MISSING = object()



class Evaluation:
    """The evaluation of a set of flags for one context."""

    __slots__ = ("flags", "ctx", "resolver", "now", "_keys", "_props", "_results", "_active")

    def __init__(
        self, flags: Mapping[str, CompiledFlag], ctx: Context, resolver: Resolver = NULL_RESOLVER
    ) -> None:
        self.flags = flags
        self.ctx = ctx
        self.resolver = resolver
        self.now = ctx.now
        self._keys: dict[str, tuple[str, Path | None] | None] = {}
        self._props: dict[str, Mapping[str, Any] | None] = {}
        self._results: dict[str, FlagResult] = {}
        self._active: set[str] | None = None  # flags being evaluated (dependencies only)

    # ------------------------------------------------------------ lookups

    def group_key(self, group_type: str) -> tuple[str, Path | None] | None:
        """The identifier for a bucket type: the distinct id for $person, else a group key."""
        found = self._keys.get(group_type, _MISSING)
        if found is _MISSING:
            direct = self.ctx.groups.get(group_type)
            if group_type == PERSON:
                did = self.ctx.distinct_id
                found = (str(did), None) if did not in (None, "") else None
            elif type(direct) is str and direct:  # the request names the type itself
                found = (direct, None)
            else:
                try:
                    found = find_group_key(group_type, self.ctx.groups, self.resolver)
                except Exception:
                    found = None
            self._keys[group_type] = found
        return found  # type: ignore[return-value]

    def properties(self, source: str, group_type: str | None) -> Mapping[str, Any] | None:
        """Stored properties merged with the request's (request wins per key, or the store
        with `ctx.fill`)."""
        slot = group_type if source == "group" else PERSON
        props = self._props.get(slot, _MISSING)  # type: ignore[arg-type]
        if props is _MISSING:
            props = self._group_props(group_type) if source == "group" else self._person_props()
            self._props[slot] = props  # type: ignore[index]
        return props  # type: ignore[return-value]

    def _group_props(self, group_type: str | None) -> Mapping[str, Any] | None:
        found = self.group_key(group_type)  # type: ignore[arg-type]
        if found is None:
            return None
        # group_key() found a group, so group_type is a name here
        stored = self._lookup(self.resolver.group_properties, group_type,  # type: ignore[arg-type]
                              found[0])
        given = self.ctx.group_properties.get(group_type)  # type: ignore[arg-type]
        if not given:
            return stored
        if not stored:
            return given
        return {**given, **stored} if self.ctx.fill else {**stored, **given}

    def _person_props(self) -> Mapping[str, Any]:
        did = self.ctx.distinct_id
        given = self.ctx.person_properties or EMPTY
        if did in (None, "") or self.ctx.unsigned_person:
            return given
        stored = self._lookup(self.resolver.person_properties, str(did))
        if not given:
            return stored
        if not stored:
            return given
        return {**given, **stored} if self.ctx.fill else {**stored, **given}

    def filter_properties(self, source: int, group_type: str | None,
                          key: str) -> Mapping[str, Any] | None:
        """What a filter of `source` (compile.source_code) is tested against."""
        if source == 1:
            return self.properties("group", group_type)
        if source == 0:
            return self.properties("person", None)
        if source == 2:
            dep = self.flag(key)
            return {key: dep.value} if dep is not None and dep.reason != "error" else EMPTY
        if source == 3:
            found = self.group_key(group_type)  # type: ignore[arg-type]
            return {key: found[0]} if found is not None else None
        did = self.ctx.distinct_id
        return {key: did} if did not in (None, "") else EMPTY

    @staticmethod
    def _lookup(fn: Any, *args: str) -> Mapping[str, Any]:
        try:
            found = fn(*args)
        except Exception:
            return EMPTY
        if found is None:
            return EMPTY
        return found if type(found) is dict or isinstance(found, Mapping) else EMPTY

    # ------------------------------------------------------------ flags

    def flag(self, key: str) -> FlagResult | None:
        """The result of flag `key` (None if there is no such flag)."""
        done = self._results.get(key)
        if done is not None:
            return done
        flag = self.flags.get(key)
        if flag is None:
            return None
        if flag.depends_on:
            result = self._evaluate_guarded(flag)
        else:
            try:
                result = self._evaluate(flag)
            except Exception as e:
                result = _error(flag, f"{type(e).__name__}: {e}")
        self._results[key] = result
        return result

    def _evaluate_guarded(self, flag: CompiledFlag) -> FlagResult:
        active = self._active
        if active is None:
            active = self._active = set()
        if flag.key in active:  # cycles are caught at compile time; this is a safety net
            return _error(flag, "dependency cycle")
        active.add(flag.key)
        try:
            return self._evaluate(flag)
        except Exception as e:
            return _error(flag, f"{type(e).__name__}: {e}")
        finally:
            active.discard(flag.key)

    def all(self, keys: Iterable[str] | None = None) -> dict[str, FlagResult]:
        """Results for the given flag keys (default: every flag); unknown keys are skipped."""
        out: dict[str, FlagResult] = {}
        flags, results = self.flags, self._results
        for key in flags if keys is None else keys:
            r = results.get(key)
            if r is None:
                flag = flags.get(key)
                if flag is None:
                    continue
                if flag.fast is None:
                    r = self.flag(key)
                else:  # the common shape, without flag()'s bookkeeping
                    try:
                        r = self._evaluate_fast(flag)
                    except Exception as e:
                        r = _error(flag, f"{type(e).__name__}: {e}")
                    results[key] = r
            out[key] = r  # type: ignore[assignment]
        return out

    def _evaluate(self, flag: CompiledFlag) -> FlagResult:
        if flag.error is not None:
            return _error(flag, flag.error)
        if not flag.active:
            return new_result((flag.key, False, "flag_disabled", None, None, None, flag.id,
                               flag.version, None, None, None, None))
        if flag.fast is not None:
            return self._evaluate_fast(flag)
        now = self.now
        keys = self._keys
        props_cache = self._props
        miss = 0  # _REASONS index of the most telling reason so far
        for index, cond in enumerate(flag.conditions):
            bucket_by = cond.bucket_by
            found = keys.get(bucket_by, _MISSING)
            if found is _MISSING:
                found = self.group_key(bucket_by)
            if found is None:
                if miss < 2:
                    miss = 2
                continue
            failed = -1
            for source, group_type, check, fkey in cond.checks:
                if source == 1:
                    props = props_cache.get(group_type, _MISSING)  # type: ignore[arg-type]
                    if props is _MISSING:
                        props = self.properties("group", group_type)
                else:
                    props = self.filter_properties(source, group_type, fkey)
                if not check(props, now):  # type: ignore[arg-type]
                    failed = source
                    break
            if failed >= 0:
                if failed == 2 and miss < 1:  # a dependency did not have the required value
                    miss = 1
                continue
            identifier = found[0]  # type: ignore[index]
            text = f"{flag.namespace}:{identifier}"
            try:  # inlined hash_input(): this is the hot path
                data = text.encode()
            except UnicodeEncodeError:
                data = hash_input(flag.namespace, identifier)
            if cond.rollout < 100 and _hash(data, 0, False) % 100 + 1 > cond.rollout:
                miss = 3
                continue
            variant = cond.variant
            if flag.variants and variant is None:
                target = _hash(data, VARIANT_SEED, False) % flag.total_weight + 1
                for name, cumulative in flag.variants:
                    if cumulative >= target:
                        variant = name
                        break
            payload = flag.payloads.get(variant if variant is not None else "true")
            return new_result((flag.key, True, "condition_match", variant, index, payload,
                               flag.id, flag.version, bucket_by, identifier,
                               found[1], None))  # type: ignore[index]
        found = self.group_key(flag.bucket_by)
        return new_result((flag.key, False, _REASONS[miss], None, None, None, flag.id,
                           flag.version, flag.bucket_by, found[0] if found else None,
                           found[1] if found else None, None))


    def _evaluate_fast(self, flag: CompiledFlag) -> FlagResult:
        """A flag of the common shape (fastpath.py): one identifier, one property set."""
        bucket_by = flag.bucket_by
        found = self._keys.get(bucket_by, _MISSING)
        if found is _MISSING:
            found = self.group_key(bucket_by)
        if found is None:
            return new_result((flag.key, False, "no_group_type", None, None, None, flag.id,
                               flag.version, bucket_by, None, None, None))
        props = self._props.get(bucket_by, _MISSING)
        if props is _MISSING:
            if bucket_by == PERSON:
                props = self.properties("person", None)
            else:
                given = self.ctx.group_properties.get(bucket_by)
                if given and flag.fast_keys <= given.keys() and not self.ctx.fill:
                    props = given  # the request gives every key the flag reads: no lookup
                else:
                    props = self.properties("group", bucket_by)
        return flag.fast(found[0], props or EMPTY, self.now, found[1])  # type: ignore[index]


# When no condition matched, the most telling reason wins (higher index).
_REASONS = ("no_condition_match", "dependency_off", "no_group_type", "out_of_rollout_bound")


def _error(flag: CompiledFlag, message: str) -> FlagResult:
    return FlagResult(flag.key, False, "error", flag_id=flag.id, version=flag.version,
                      error=message)


def evaluate(
    flags: Mapping[str, CompiledFlag], key: str, ctx: Context, resolver: Resolver = NULL_RESOLVER
) -> FlagResult | None:
    """One flag's result (None if the flag does not exist)."""
    flag = flags.get(key)
    if flag is None:
        return None
    fast = flag.fast
    if fast is not None:
        # The common case without any per-call set-up: the request names the bucket's
        # group (or person) and gives every property the flag reads (or there is no store).
        bucket_by = flag.bucket_by
        given: Mapping[str, Any] | None  # (a local annotation: no run-time cost)
        if bucket_by == PERSON:
            ident, given = ctx.distinct_id, ctx.person_properties
        else:
            ident, given = ctx.groups.get(bucket_by), ctx.group_properties.get(bucket_by)
        # (With `ctx.fill` stored values win, so they must be looked up.)
        if ident.__class__ is str and ident and (resolver is NULL_RESOLVER or (
                given and flag.fast_keys <= given.keys() and not ctx.fill)):
            try:
                return fast(ident, given or EMPTY, ctx.now, None)
            except Exception:  # never expected; the general path reports it properly
                pass
    return Evaluation(flags, ctx, resolver).flag(key)


def evaluate_all(
    flags: Mapping[str, CompiledFlag],
    ctx: Context,
    resolver: Resolver = NULL_RESOLVER,
    keys: Iterable[str] | None = None,
) -> dict[str, FlagResult]:
    """Results of every flag (or of `keys`), sharing lookups across flags."""
    return Evaluation(flags, ctx, resolver).all(keys)
