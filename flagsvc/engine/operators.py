"""Property operators: one dispatch table from operator name to matcher factory.

A factory takes the filter's configured value (and `case_insensitive`) and returns a
matcher `(property_value, now) -> bool`. Matchers are only called with a present,
non-null property value; missing/null handling and `negate` live in the filter
(`compile.py`). `now` is Unix seconds, passed in by the caller: the engine never reads
the clock. Factories raise `FilterError` for a value they cannot use, so a bad flag is
refused when it is saved (and becomes reason `error` if one is ever loaded).
"""

from __future__ import annotations

import ipaddress
import math
import operator
import re
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any

import re2

Matcher = Callable[[Any, float], bool]


class FilterError(ValueError):
    """A property filter whose operator or value cannot be used."""


# ---------------------------------------------------------------- coercions

def to_number(x: Any) -> float | int | None:
    """A finite number from a number or a numeric string; None otherwise (bools too)."""
    if isinstance(x, bool):
        return None
    if isinstance(x, int):
        return x
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, str):
        s = x.strip()
        # "_" too: float() accepts "1_000", which is no number in JSON or any SDK.
        if not s or not (s[0].isdigit() or s[0] in "+-.") or "_" in s:
            return None
        try:
            f = float(s)
        except ValueError:
            return None
        if not math.isfinite(f):
            return None
        return int(f) if f.is_integer() and "." not in s and "e" not in s.lower() else f
    return None


def to_text(x: Any) -> str:
    """The string form used by string operators: JSON-like for bools, str() otherwise."""
    if x is True:
        return "true"
    if x is False:
        return "false"
    if isinstance(x, float) and x.is_integer():
        return str(int(x))
    return x if isinstance(x, str) else str(x)


def _as_list(value: Any) -> list[Any]:
    if isinstance(value, (list, tuple)):
        return list(value)
    return [value]


_RELATIVE = re.compile(r"^([+-]?)(\d+)([hdwmy])$")
_UNIT_SECONDS = {"h": 3600, "d": 86400, "w": 7 * 86400, "m": 30 * 86400, "y": 365 * 86400}


def to_timestamp(x: Any) -> float | None:
    """Unix seconds from an ISO 8601 date/datetime string or a number (s, or ms if huge)."""
    if isinstance(x, bool):
        return None
    if isinstance(x, (int, float)):
        try:
            if not math.isfinite(x):
                return None
            return x / 1000.0 if abs(x) > 1e11 else float(x)
        except OverflowError:  # an int too large for a float is no date
            return None
    if isinstance(x, datetime):
        dt = x
    elif isinstance(x, date):
        dt = datetime(x.year, x.month, x.day)
    elif isinstance(x, str):
        s = x.strip()
        if s.endswith(("Z", "z")):
            s = s[:-1] + "+00:00"
        try:
            dt = datetime.fromisoformat(s)
        except ValueError:
            n = to_number(s)
            return to_timestamp(n) if n is not None else None
    else:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    try:
        return dt.timestamp()
    except (OverflowError, OSError, ValueError):
        return None


def parse_semver(x: Any) -> tuple | None:
    """A sort key with SemVer 2.0 precedence (pre-releases before the release)."""
    if not isinstance(x, str):
        if isinstance(x, (int, float)) and not isinstance(x, bool):
            x = str(x)
        else:
            return None
    s = x.strip()
    if s[:1] in ("v", "V"):
        s = s[1:]
    s = s.split("+", 1)[0]
    core, _, pre = s.partition("-")
    parts = core.split(".")
    # isascii(): str.isdigit() accepts digits such as "²" that int() refuses.
    if not 1 <= len(parts) <= 3 or not all(p.isascii() and p.isdigit() for p in parts):
        return None
    try:  # int() also refuses more than sys.get_int_max_str_digits() digits
        nums = [int(p) for p in parts] + [0] * (3 - len(parts))
        if not pre:
            return (*nums, 1, ())
        ids: list[tuple[int, Any]] = []
        for ident in pre.split("."):
            if not ident:
                return None
            ids.append((0, int(ident)) if ident.isascii() and ident.isdigit() else (1, ident))
    except ValueError:
        return None
    return (*nums, 0, tuple(ids))


# ---------------------------------------------------------------- factories

def _exact(value: Any, ci: bool) -> Matcher:
    values = _as_list(value)
    if not values:
        raise FilterError("exact needs at least one value")
    texts = frozenset(to_text(v).lower() if ci else to_text(v) for v in values if v is not None)
    numbers = frozenset(n for n in (to_number(v) for v in values) if n is not None)

    def match(v: Any, now: float) -> bool:
        if isinstance(v, str):
            if (v.lower() if ci else v) in texts:
                return True
            if numbers:
                n = to_number(v)
                return n is not None and n in numbers
            return False
        if numbers and not isinstance(v, bool) and isinstance(v, (int, float)) and v in numbers:
            return True
        t = to_text(v)
        return (t.lower() if ci else t) in texts

    if not ci:
        match.fast_texts = texts  # type: ignore[attr-defined]  # see compile._make_check
        # With no numeric values, membership in `texts` is the whole answer for a string.
        match.fast_texts_complete = not numbers  # type: ignore[attr-defined]
    return match


def _is_not(value: Any, ci: bool) -> Matcher:
    exact = _exact(value, ci)
    return lambda v, now: not exact(v, now)


def _string_op(test: Callable[[str, str], bool]) -> Callable[[Any, bool], Matcher]:
    def factory(value: Any, ci: bool) -> Matcher:
        needles = [to_text(v) for v in _as_list(value) if v is not None]
        if not needles:
            raise FilterError("needs a string value")
        if ci:
            needles = [n.lower() for n in needles]

        def match(v: Any, now: float) -> bool:
            t = to_text(v)
            if ci:
                t = t.lower()
            return any(test(t, n) for n in needles)

        return match

    return factory


def _regex(value: Any, ci: bool) -> Matcher:
    if not isinstance(value, str):
        raise FilterError("regex needs a string pattern")
    options = re2.Options()
    options.case_sensitive = not ci
    options.log_errors = False
    try:
        pattern = re2.compile(value, options)
    except re2.error as e:
        raise FilterError(f"invalid or unsupported regex {value!r}: {e}") from None
    search = pattern.search

    def match(v: Any, now: float) -> bool:
        try:
            return search(to_text(v)) is not None
        except UnicodeEncodeError:  # a lone surrogate cannot be handed to RE2 as UTF-8
            return False

    return match


def _compare(test: Callable[[Any, Any], bool]) -> Callable[[Any, bool], Matcher]:
    def factory(value: Any, ci: bool) -> Matcher:
        target = to_number(value)
        if target is None:
            if not isinstance(value, str):
                raise FilterError("needs a number (or a string to compare as text)")
            text = value.lower() if ci else value

            def match_text(v: Any, now: float) -> bool:
                t = to_text(v)
                return test(t.lower() if ci else t, text)

            return match_text

        def match(v: Any, now: float) -> bool:
            if type(v) is int or type(v) is float:
                return test(v, target)
            n = to_number(v)
            return n is not None and test(n, target)

        match.fast_compare = (test, target)  # type: ignore[attr-defined]  # see compile._make_check
        return match

    return factory


def _date(before: bool) -> Callable[[Any, bool], Matcher]:
    def factory(value: Any, ci: bool) -> Matcher:
        rel = _RELATIVE.match(value.strip()) if isinstance(value, str) else None
        if rel:
            sign = 1 if rel.group(1) == "+" else -1
            offset = sign * int(rel.group(2)) * _UNIT_SECONDS[rel.group(3)]

            def threshold(now: float) -> float:
                return now + offset
        else:
            ts = to_timestamp(value)
            if ts is None:
                raise FilterError(
                    f"not a date or relative date (-30d, -2w, -6m, -1y, -12h): {value!r}")

            def threshold(now: float) -> float:
                return ts

        def match(v: Any, now: float) -> bool:
            t = to_timestamp(v)
            if t is None:
                return False
            return t < threshold(now) if before else t > threshold(now)

        return match

    return factory


def _semver(test: Callable[[tuple, tuple], bool]) -> Callable[[Any, bool], Matcher]:
    def factory(value: Any, ci: bool) -> Matcher:
        target = parse_semver(value)
        if target is None:
            raise FilterError(f"not a semantic version: {value!r}")

        def match(v: Any, now: float) -> bool:
            key = parse_semver(v)
            return key is not None and test(key, target)

        return match

    return factory


def _in_cidr(value: Any, ci: bool) -> Matcher:
    try:
        networks = [ipaddress.ip_network(str(v).strip(), strict=False) for v in _as_list(value)]
    except ValueError as e:
        raise FilterError(f"invalid CIDR: {e}") from None
    if not networks:
        raise FilterError("in_cidr needs at least one network")

    def match(v: Any, now: float) -> bool:
        try:
            ip = ipaddress.ip_address(to_text(v).strip())
        except ValueError:
            return False
        return any(ip.version == n.version and ip in n for n in networks)

    return match


def _presence(value: Any, ci: bool) -> Matcher:
    # is_set / is_not_set are decided by presence in the filter; the matcher is not called.
    return lambda v, now: True


OPERATORS: dict[str, Callable[[Any, bool], Matcher]] = {
    "exact": _exact,
    "is_not": _is_not,
    "contains": _string_op(lambda t, n: n in t),
    "starts_with": _string_op(lambda t, n: t.startswith(n)),
    "ends_with": _string_op(lambda t, n: t.endswith(n)),
    "regex": _regex,
    "gt": _compare(operator.gt),
    "gte": _compare(operator.ge),
    "lt": _compare(operator.lt),
    "lte": _compare(operator.le),
    "is_set": _presence,
    "is_not_set": _presence,
    "date_before": _date(before=True),
    "date_after": _date(before=False),
    "semver_eq": _semver(operator.eq),
    "semver_gt": _semver(operator.gt),
    "semver_gte": _semver(operator.ge),
    "semver_lt": _semver(operator.lt),
    "semver_lte": _semver(operator.le),
    "in_cidr": _in_cidr,
}

# Names PostHog and Unleash use for the same operators: (canonical, negate, case_insensitive).
ALIASES: dict[str, tuple[str, bool, bool]] = {
    "icontains": ("contains", False, True),
    "not_icontains": ("contains", True, True),
    "not_regex": ("regex", True, False),
    "is_date_before": ("date_before", False, False),
    "is_date_after": ("date_after", False, False),
    "in": ("exact", False, False),
    "not_in": ("exact", True, False),
    "str_contains": ("contains", False, False),
    "str_starts_with": ("starts_with", False, False),
    "str_ends_with": ("ends_with", False, False),
    "num_eq": ("exact", False, False),
    "num_gt": ("gt", False, False),
    "num_gte": ("gte", False, False),
    "num_lt": ("lt", False, False),
    "num_lte": ("lte", False, False),
    "flag_evaluates_to": ("exact", False, False),
}


def resolve_operator(name: str) -> tuple[str, bool, bool]:
    """(canonical operator, extra negate, extra case_insensitive) for an operator name."""
    if not isinstance(name, str):
        raise FilterError(f"operator must be a string, not {type(name).__name__}")
    lowered = name.lower()
    if lowered in OPERATORS:
        return lowered, False, False
    if lowered in ALIASES:
        return ALIASES[lowered]
    raise FilterError(f"unknown operator {name!r}")


def build_matcher(operator: str, value: Any, case_insensitive: bool = False) -> Matcher:
    """The matcher for a canonical operator and its value; raises FilterError."""
    return OPERATORS[operator](value, case_insensitive)
