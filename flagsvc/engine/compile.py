"""Compile flag definitions (plain JSON-like dicts, SPEC §4) into ready-made rules.

Compiling resolves every operator to a matcher, compiles regexes with RE2 and builds
value sets once, so evaluation is a walk over prepared objects. Compiling never raises:
a definition that cannot be used compiles to a flag carrying `error`, which evaluates to
`enabled: false, reason: error` while the other flags keep working. `validate_flag`
returns the same problems as a list, for refusing a bad flag when it is saved.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .operators import FilterError, Matcher, build_matcher, resolve_operator

PERSON = "$person"
SOURCES = ("person", "group", "flag")
MAX_DEPENDENCY_DEPTH = 10

Check = Callable[[Mapping[str, Any] | None, float], bool]


def _make_check(operator: str, key: str, matcher: Matcher, negate: bool) -> Check:
    """The filter as one closure `(props, now) -> bool`, specialised once at compile time
    (missing/null never matches, except for is_not_set and a negated is_set)."""
    if operator == "is_set" or operator == "is_not_set":
        want_present = (operator == "is_set") != negate

        def presence(props: Mapping[str, Any] | None, now: float) -> bool:
            present = props is not None and props.get(key) is not None
            return present == want_present

        return presence
    if negate:
        def negated(props: Mapping[str, Any] | None, now: float) -> bool:
            v = props.get(key) if props is not None else None
            return v is not None and not matcher(v, now)

        return negated
    # Fused fast paths for the commonest filters: one call instead of two.
    texts = getattr(matcher, "fast_texts", None)
    if texts is not None:
        def exact(props: Mapping[str, Any] | None, now: float) -> bool:
            if props is None:
                return False
            v = props.get(key)
            if v.__class__ is str and v in texts:
                return True
            return v is not None and matcher(v, now)

        return exact
    compare = getattr(matcher, "fast_compare", None)
    if compare is not None:
        test, target = compare

        def numeric(props: Mapping[str, Any] | None, now: float) -> bool:
            if props is None:
                return False
            v = props.get(key)
            if v.__class__ is int or v.__class__ is float:
                return test(v, target)
            return v is not None and matcher(v, now)

        return numeric

    def plain(props: Mapping[str, Any] | None, now: float) -> bool:
        v = props.get(key) if props is not None else None
        return v is not None and matcher(v, now)

    return plain


@dataclass(slots=True)
class Filter:
    """One compiled property filter of a condition."""

    source: str  # "person" | "group" | "flag"
    key: str
    operator: str
    group_type: str | None
    matcher: Matcher
    negate: bool
    value: Any
    check: Check = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.check = _make_check(self.operator, self.key, self.matcher, self.negate)

    def test(self, props: Mapping[str, Any] | None, now: float) -> bool:
        """Does the filter match these properties?"""
        return self.check(props, now)


SOURCE_CODES = {"person": 0, "group": 1, "flag": 2}
# Pseudo-properties answered from the request itself, not from a property set.
GROUP_KEY_PROPERTY = "$group_key"  # the key of the group (of the filter's group type)
DISTINCT_ID_PROPERTY = "distinct_id"  # the person's distinct id


@dataclass(slots=True)
class Condition:
    filters: tuple[Filter, ...]
    rollout: int  # 0..100
    variant: str | None
    bucket_by: str  # a group type name or "$person"
    # (source code, group type, check, key) per filter: what the evaluation loop walks.
    checks: tuple[tuple[int, str | None, Check, str], ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.checks = tuple((source_code(f), f.group_type, f.check, f.key) for f in self.filters)


def source_code(f: Filter) -> int:
    """0 person, 1 group, 2 flag, 3 the group's key, 4 the distinct id."""
    if f.source == "group" and f.key == GROUP_KEY_PROPERTY:
        return 3
    if f.source == "person" and f.key == DISTINCT_ID_PROPERTY:
        return 4
    return SOURCE_CODES[f.source]


@dataclass(slots=True)
class CompiledFlag:
    key: str
    id: Any = None
    version: int | None = None
    active: bool = True
    bucket_by: str = PERSON
    namespace: str = ""
    conditions: tuple[Condition, ...] = ()
    variants: tuple[tuple[str, int], ...] = ()  # (variant key, cumulative weight)
    total_weight: int = 0
    payloads: Mapping[str, Any] = field(default_factory=dict)
    depends_on: frozenset[str] = frozenset()
    error: str | None = None
    definition: Mapping[str, Any] = field(default_factory=dict)
    # fastpath.build_fast(): the specialised evaluator and the property keys it reads
    fast: Any = None
    fast_keys: frozenset[str] = frozenset()
    fast_value: Any = None  # the same, returning only the value (FlagClient.get_flag)


def _rollout(value: Any, where: str, errors: list[str]) -> int:
    if value is None:
        return 100
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        errors.append(f"{where}.rollout_percentage must be a number 0-100")
        return 0
    if not 0 <= value <= 100 or value != value:
        errors.append(f"{where}.rollout_percentage must be between 0 and 100")
        return 0
    return int(value) if float(value).is_integer() else value  # type: ignore[return-value]


def _flag_enabled_is(expected: bool) -> Matcher:
    return lambda v, now: (v is not False) == expected


def _filter(raw: Any, where: str, errors: list[str]) -> Filter | None:
    if not isinstance(raw, Mapping):
        errors.append(f"{where} must be an object")
        return None
    source = raw.get("type", "person")
    key = raw.get("key")
    if source not in SOURCES:
        errors.append(f"{where}.type must be one of {', '.join(SOURCES)}, not {source!r}")
        return None
    if not isinstance(key, str) or not key:
        errors.append(f"{where}.key must be a non-empty string")
        return None
    group_type = raw.get("group_type")
    if source == "group" and (not isinstance(group_type, str) or not group_type):
        errors.append(f"{where}.group_type is required for a group property")
        return None
    try:
        op, negate, ci = resolve_operator(raw.get("operator") or "exact")
        value = raw.get("value")
        if source == "flag" and op == "exact" and value is None:
            value = True
        if source == "flag" and op == "exact" and isinstance(value, bool):
            # A multivariate flag's value is its variant key: `true` means "on, any variant".
            matcher = _flag_enabled_is(value)
        else:
            matcher = build_matcher(op, value, bool(raw.get("case_insensitive")) or ci)
    except FilterError as e:
        errors.append(f"{where}: {e}")
        return None
    except Exception as e:  # a factory choking on a value shape it did not expect
        errors.append(f"{where}: unusable value ({type(e).__name__}: {e})")
        return None
    negate = bool(raw.get("negate")) != negate
    return Filter(source, key, op, group_type if source == "group" else None, matcher, negate,
                  value)


def _compile(defn: Mapping[str, Any], errors: list[str]) -> CompiledFlag:
    key = defn.get("key")
    if not isinstance(key, str) or not key:
        errors.append("key must be a non-empty string")
        key = str(key)
    flag = CompiledFlag(key=key, id=defn.get("id"), version=defn.get("version"), definition=defn)
    flag.active = bool(defn.get("active", True))
    bucket_by = defn.get("bucket_by") or PERSON
    if not isinstance(bucket_by, str):
        errors.append("bucket_by must be a group type name or $person")
        bucket_by = PERSON
    flag.bucket_by = bucket_by
    ns = defn.get("hash_namespace")
    flag.namespace = ns if isinstance(ns, str) and ns else key

    variants = defn.get("variants") or []
    cumulative = 0
    compiled_variants = []
    if not isinstance(variants, list):
        errors.append("variants must be a list")
        variants = []
    seen = set()
    for i, v in enumerate(variants):
        if not isinstance(v, Mapping) or not isinstance(v.get("key"), str) or not v.get("key"):
            errors.append(f"variants[{i}] needs a string key")
            continue
        w = v.get("weight", v.get("rollout_percentage", 0))
        if isinstance(w, bool) or not isinstance(w, int) or w < 0:
            errors.append(f"variants[{i}].weight must be a non-negative integer")
            continue
        if v["key"] in seen:
            errors.append(f"variants[{i}]: duplicate variant key {v['key']!r}")
        seen.add(v["key"])
        cumulative += w
        compiled_variants.append((v["key"], cumulative))
    if compiled_variants and cumulative == 0:
        errors.append("variant weights must not all be zero")
    flag.variants = tuple(compiled_variants)
    flag.total_weight = cumulative

    payloads = defn.get("payloads") or {}
    if not isinstance(payloads, Mapping):
        errors.append("payloads must be an object keyed by variant (or \"true\")")
        payloads = {}
    flag.payloads = payloads

    conditions = defn.get("conditions")
    if conditions is None:
        conditions = [{}]
    if not isinstance(conditions, list):
        errors.append("conditions must be a list")
        conditions = []
    compiled = []
    depends: set[str] = set()
    for i, c in enumerate(conditions):
        where = f"conditions[{i}]"
        if not isinstance(c, Mapping):
            errors.append(f"{where} must be an object")
            continue
        props = c.get("properties") or []
        if not isinstance(props, list):
            errors.append(f"{where}.properties must be a list")
            continue
        filters = []
        for j, raw in enumerate(props):
            f = _filter(raw, f"{where}.properties[{j}]", errors)
            if f is not None:
                filters.append(f)
                if f.source == "flag":
                    depends.add(f.key)
        variant = c.get("variant")
        if variant is not None and variant not in seen:
            errors.append(f"{where}.variant {variant!r} is not one of the flag's variants")
        cb = c.get("bucket_by") or bucket_by
        if not isinstance(cb, str):
            errors.append(f"{where}.bucket_by must be a group type name or $person")
            cb = bucket_by
        rollout = _rollout(c.get("rollout_percentage"), where, errors)
        compiled.append(Condition(tuple(filters), rollout, variant, cb))
    if key in depends:
        errors.append("a flag cannot depend on itself")
    flag.conditions = tuple(compiled)
    flag.depends_on = frozenset(depends)
    return flag


def validate_flag(defn: Any) -> list[str]:
    """The problems that would make this definition evaluate to `error` (empty: usable)."""
    if not isinstance(defn, Mapping):
        return ["a flag must be an object"]
    errors: list[str] = []
    try:
        _compile(defn, errors)
    except Exception as e:  # never let a definition crash the caller
        errors.append(f"cannot compile: {type(e).__name__}: {e}")
    return errors


def compile_flag(defn: Any) -> CompiledFlag:
    """A compiled flag; problems are recorded in `.error` instead of raised."""
    if not isinstance(defn, Mapping):
        return CompiledFlag(key=str(defn), error="a flag must be an object")
    errors: list[str] = []
    try:
        flag = _compile(defn, errors)
    except Exception as e:
        flag = CompiledFlag(key=str(defn.get("key")), definition=defn)
        errors.append(f"cannot compile: {type(e).__name__}: {e}")
    if errors:
        flag.error = "; ".join(errors)
    return _specialise(flag)


def dependency_cycles(flags: Mapping[str, CompiledFlag]) -> dict[str, str]:
    """Flags that depend (directly or not) on themselves, with the cycle as text.

    Iterative depth-first search: a long dependency chain must not hit the recursion limit."""
    found: dict[str, str] = {}
    state: dict[str, int] = {}  # 1 = on the path, 2 = done
    for root in flags:
        if root in state:
            continue
        state[root] = 1
        path = [root]
        stack = [iter(sorted(flags[root].depends_on))]
        while stack:
            for dep in stack[-1]:
                if dep not in flags:
                    continue
                if state.get(dep) == 1:
                    cycle = path[path.index(dep):] + [dep]
                    for k in cycle[:-1]:
                        found.setdefault(k, " -> ".join(cycle))
                elif dep not in state:
                    state[dep] = 1
                    path.append(dep)
                    stack.append(iter(sorted(flags[dep].depends_on)))
                    break
            else:
                stack.pop()
                state[path.pop()] = 2
    return found


def dependency_depths(flags: Mapping[str, CompiledFlag]) -> dict[str, int]:
    """How many dependency links lie below each flag (cycles and errored flags excluded)."""
    depth: dict[str, int] = {}
    for root in flags:
        stack = [root]
        while stack:
            key = stack[-1]
            if key in depth:
                stack.pop()
                continue
            deps = [d for d in flags[key].depends_on if d in flags and flags[d].error is None]
            pending = [d for d in deps if d not in depth and d not in stack]
            if pending:
                stack.extend(pending)
                continue
            depth[key] = 1 + max((depth.get(d, 0) for d in deps), default=-1)
            stack.pop()
    return depth


def compile_flags(definitions: Iterable[Any]) -> dict[str, CompiledFlag]:
    """Compile a project's flags; flags in a dependency cycle get an error."""
    flags: dict[str, CompiledFlag] = {}
    for d in definitions:
        f = compile_flag(d)
        flags[f.key] = f
    for key, cycle in dependency_cycles(flags).items():
        flags[key].error = f"dependency cycle: {cycle}"
    # Bounded chains keep evaluation (which follows dependencies recursively) shallow.
    for key, depth in dependency_depths(flags).items():
        if depth > MAX_DEPENDENCY_DEPTH and flags[key].error is None:
            flags[key].error = f"dependency chain deeper than {MAX_DEPENDENCY_DEPTH} flags"
    for f in flags.values():
        _specialise(f)
    return flags


def _specialise(flag: CompiledFlag) -> CompiledFlag:
    """Attach the fast evaluator when the flag's shape allows one (see fastpath.py)."""
    from .fastpath import build_fast  # fastpath builds on this module's types

    built = build_fast(flag)
    flag.fast, flag.fast_keys = built if built is not None else (None, frozenset())
    if built is None:
        flag.fast_value = None
    return flag
