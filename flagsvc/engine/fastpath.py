"""A specialised evaluator for the commonest flag shape, generated once at compile time.

Most flags are "bucket by one type, filter on that same group's (or person's) properties,
no dependencies". For those, evaluation needs one identifier and one property set, so
`build_fast` turns the whole flag into one Python function `(identifier, properties, now,
inferred_from) -> FlagResult` with every filter inlined: no per-call bookkeeping, no call
per filter for the common operators, the hash input encoded once and the variant hash
computed only inside the rollout.

The function's source is generated, but it contains only names the generator made up
(`k0`, `m0`, ...): every value that comes from a flag definition (property keys, value sets,
the namespace, payloads) is bound through the namespace dict, never written into the
source. The result is exactly the one the general loop in `evaluate.py` gives;
tests/test_engine_fastpath.py compares the two on random flags and contexts. Flags of any
other shape return None and take the general path.
"""

from __future__ import annotations

import operator
import sys
from collections.abc import Callable, Mapping
from typing import Any

from .compile import PERSON, CompiledFlag
from .context import FlagResult
from .hashing import VARIANT_SEED, _hash, hash_input

FastPath = Callable[[str, Mapping[str, Any], float, Any], FlagResult]
FastValue = Callable[[str, Mapping[str, Any], float], "bool | str"]

MAX_FILTERS = 32  # per condition; more than that is not a common shape
_SYMBOLS = {operator.gt: ">", operator.ge: ">=", operator.lt: "<", operator.le: "<="}


class _Source:
    """The generated function's lines and the namespace its names refer to."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.names: dict[str, Any] = {}

    def bind(self, prefix: str, value: Any) -> str:
        name = f"{prefix}{len(self.names)}"
        self.names[name] = value
        return name

    def emit(self, depth: int, line: str) -> None:
        self.lines.append("    " * depth + line)


def _filter_test(src: _Source, f: Any) -> str:
    """An expression that is the filter's result for `props` (mirrors compile._make_check)."""
    # interned, like the property names of cached property sets (propcache.py): a lookup
    # then matches by identity
    key = src.bind("k", sys.intern(f.key) if f.key.__class__ is str else f.key)
    if f.operator in ("is_set", "is_not_set"):
        want = (f.operator == "is_set") != f.negate
        return f"(props.get({key}) is not None) is {want}"
    matcher = src.bind("m", f.matcher)
    if f.negate:
        return f"((v := props.get({key})) is not None and not {matcher}(v, now))"
    texts = getattr(f.matcher, "fast_texts", None)
    if texts is not None:
        t = src.bind("t", frozenset(sys.intern(x) if x.__class__ is str else x for x in texts))
        if getattr(f.matcher, "fast_texts_complete", False):
            return (f"((v := props.get({key})) is not None and "
                    f"((v in {t}) if v.__class__ is str else {matcher}(v, now)))")
        return (f"((v := props.get({key})) is not None and "
                f"((v.__class__ is str and v in {t}) or {matcher}(v, now)))")
    compare = getattr(f.matcher, "fast_compare", None)
    if compare is not None and compare[0] in _SYMBOLS:
        target = src.bind("n", compare[1])
        return (f"((v := props.get({key})) is not None and "
                f"((v {_SYMBOLS[compare[0]]} {target}) if (v.__class__ is int or "
                f"v.__class__ is float) else {matcher}(v, now)))")
    return f"((v := props.get({key})) is not None and {matcher}(v, now))"


def build_fast(flag: CompiledFlag) -> tuple[FastPath, frozenset[str]] | None:
    """The fast evaluator of `flag` and the property keys it reads, or None if the flag's
    shape needs the general path."""
    if flag.error is not None or not flag.active or flag.depends_on or not flag.conditions:
        return None
    bucket_by = flag.bucket_by
    wanted = "person" if bucket_by == PERSON else "group"
    keys: set[str] = set()
    for cond in flag.conditions:
        if cond.bucket_by != bucket_by or len(cond.filters) > MAX_FILTERS:
            return None
        for f in cond.filters:
            if f.source != wanted or (wanted == "group" and f.group_type != bucket_by):
                return None
            if f.key in ("$group_key", "distinct_id"):  # pseudo-properties: general path
                return None
            keys.add(f.key)

    fast = _generate(flag, bucket_by, value_only=False)
    flag.fast_value = _generate(flag, bucket_by, value_only=True)
    return fast, frozenset(keys)


def _generate(flag: CompiledFlag, bucket_by: str, value_only: bool) -> Any:
    """The generated evaluator: `(ident, props, now, inferred) -> FlagResult`, or with
    `value_only` `(ident, props, now) -> False | True | variant` (FlagClient.get_flag:
    the same decisions without building a result)."""
    src = _Source()
    names = src.names
    names.update(_hash=_hash, _seed=VARIANT_SEED, _new=tuple.__new__, _FR=FlagResult,
                 _hash_input=hash_input, _prefix=flag.namespace + ":", _ns=flag.namespace,
                 _payloads=flag.payloads, _key=flag.key, _fid=flag.id, _version=flag.version,
                 _bucket_by=bucket_by)
    src.emit(0, "def fast(ident, props, now):" if value_only
             else "def fast(ident, props, now, inferred):")
    src.emit(1, "reason = 'no_condition_match'")
    src.emit(1, "data = None")
    for index, cond in enumerate(flag.conditions):
        depth = 1
        for f in cond.filters:
            src.emit(depth, f"if {_filter_test(src, f)}:")
            depth += 1
        src.emit(depth, "if data is None:")
        src.emit(depth + 1, "try:")
        src.emit(depth + 2, "data = (_prefix + ident).encode()")
        src.emit(depth + 1, "except UnicodeEncodeError:")
        src.emit(depth + 2, "data = _hash_input(_ns, ident)")
        if cond.rollout < 100:
            rollout = src.bind("r", cond.rollout)
            src.emit(depth, f"if _hash(data, 0, False) % 100 + 1 > {rollout}:")
            src.emit(depth + 1, "reason = 'out_of_rollout_bound'")
            src.emit(depth, "else:")
            depth += 1
        if cond.variant is not None:
            src.emit(depth, f"variant = {src.bind('v', cond.variant)}")
        elif flag.variants:
            total = src.bind("w", flag.total_weight)
            src.emit(depth, f"target = _hash(data, _seed, False) % {total} + 1")
            for i, (name, cumulative) in enumerate(flag.variants):
                word = "if" if i == 0 else "elif"
                src.emit(depth, f"{word} target <= {src.bind('c', cumulative)}:")
                src.emit(depth + 1, f"variant = {src.bind('v', name)}")
            src.emit(depth, "else:")
            src.emit(depth + 1, "variant = None")
        else:
            src.emit(depth, "variant = None")
        if value_only:
            src.emit(depth, "return True if variant is None else variant")
        else:
            src.emit(depth, "return _new(_FR, (_key, True, 'condition_match', variant, "
                            f"{src.bind('i', index)}, _payloads.get('true' if variant is None "
                            "else variant), _fid, _version, _bucket_by, ident, inferred, None))")
    if value_only:
        src.emit(1, "return False")
    else:
        src.emit(1, "return _new(_FR, (_key, False, reason, None, None, None, _fid, _version, "
                    "_bucket_by, ident, inferred, None))")
    code = compile("\n".join(src.lines), f"<flag {flag.key!r} fast path>", "exec")
    exec(code, names)  # noqa: S102 - generated from names only, see the module docstring
    return names["fast"]
