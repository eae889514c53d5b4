"""One Unleash constraint as flagsvc filters, with Unleash's matching rules made explicit.

Checked against yggdrasil (tests/test_imports.py): Unleash matches a constraint on an absent
field for `NOT_IN` and for any `inverted` operator; `IN` / `NOT_IN` compare exact text
(flagsvc's `exact` also equates "12" and "12.0"); SEMVER and DATE operators read strict
SemVer 2.0 and RFC 3339 only; a constraint Unleash cannot compile (an unknown operator, a
value of the wrong kind) turns the whole toggle off, except a version starting with "v",
which only fails its strategy.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable, Mapping
from typing import Any

from ..engine import Context, compile_flag, evaluate
from ..engine.operators import to_number
from . import Unimportable
from .filters import make_filter, text_equals


class Never(Exception):
    """The strategy can never match (an empty IN list, 0 %, a "v1.2.3" version)."""


class ToggleOff(Exception):
    """Unleash cannot compile something of the toggle and answers off for everyone."""


# SemVer 2.0.0 as Unleash parses it (no leading "v", all three numbers).
_IDENT = r"(?:0|[1-9]\d*|\d*[A-Za-z-][0-9A-Za-z-]*)"  # no leading zeros in numbers
SEMVER = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
                    rf"(?:-{_IDENT}(?:\.{_IDENT})*)?(?:\+[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?$")
# RFC 3339 date-times with a zone, as Unleash's DATE_ operators read them: the constraint's
# value strictly ("T", at most milliseconds), the context's value as RFC 3339 allows.
DATE_VALUE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,3})?(?:Z|[+-]\d{2}:\d{2})$")
RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:[Zz]|[+-]\d{2}:\d{2})$")
# (flagsvc operator, negate) per Unleash operator.
OPERATORS = {
    "IN": ("exact", False), "NOT_IN": ("exact", True),
    "STR_CONTAINS": ("contains", False), "STR_STARTS_WITH": ("starts_with", False),
    "STR_ENDS_WITH": ("ends_with", False), "IN_CIDR": ("in_cidr", False),
    "NUM_EQ": ("exact", False), "NUM_GT": ("gt", False), "NUM_GTE": ("gte", False),
    "NUM_LT": ("lt", False), "NUM_LTE": ("lte", False),
    "DATE_AFTER": ("date_after", False), "DATE_BEFORE": ("date_before", False),
    "SEMVER_EQ": ("semver_eq", False), "SEMVER_GT": ("semver_gt", False),
    "SEMVER_LT": ("semver_lt", False), "SEMVER_GTE": ("semver_gte", False),
    "SEMVER_LTE": ("semver_lte", False), "REGEX": ("regex", False),
}
LIST_OPERATORS = frozenset({"IN", "NOT_IN", "STR_CONTAINS", "STR_STARTS_WITH",
                            "STR_ENDS_WITH", "IN_CIDR"})
# Unleash applies caseInsensitive to these only (IN / NOT_IN compare exactly).
CASE_OPERATORS = frozenset({"STR_CONTAINS", "STR_STARTS_WITH", "STR_ENDS_WITH", "REGEX"})
# Context fields of Unleash itself that are no properties of a person or group.
BUCKET_ONLY = ("sessionId", "random")


def _static(f: dict[str, Any], field: str, value: str) -> bool:
    """Does filter `f` match a context whose `field` is `value` (decided at import)?"""
    flag = compile_flag({"key": "probe", "conditions": [{"properties": [f]}]})
    if flag.error:
        raise Unimportable(flag.error)
    result = evaluate({"probe": flag}, "probe",
                      Context(distinct_id="probe", person_properties={field: value}))
    return bool(result and result.enabled)


_NO_RUST_SUPPORT = re.compile(r"\(\?<?[=!]|\\[1-9]")  # lookaround, backreferences
_SYNTAX_ERRORS = ("missing )", "unbalanced parenthesis", "unterminated character set",
                  "nothing to repeat", "multiple repeat")


def _fails_everywhere(pattern: str) -> bool:
    r"""A regex that no engine compiles (Unleash's Rust one included): lookaround,
    backreferences, broken syntax. One that only RE2 refuses (`\p{Alphabetic}`) is not:
    its flag is refused instead, by the engine's check."""
    if _NO_RUST_SUPPORT.search(pattern):
        return True
    try:
        with warnings.catch_warnings():  # Python's own hints on patterns it still compiles
            warnings.simplefilter("ignore")
            re.compile(pattern)
    except re.error as e:
        return any(msg in str(e) for msg in _SYNTAX_ERRORS)
    return False


def _network(text: str) -> bool:
    import ipaddress

    try:
        ipaddress.ip_network(text, strict=False)
    except ValueError:
        return False
    return True


def choices(c: Any, place: Callable[[str], str], environment: str | None,
            warn: Callable[[str], None]) -> list[list[dict[str, Any]]]:
    """The constraint as ORed choices of ANDed filters ([[]]: always true). `place(field)`
    says (and records) where a field is read. Raises Never, ToggleOff or Unimportable."""
    if not isinstance(c, Mapping):
        raise Unimportable("a constraint that is no object")
    field, op = c.get("contextName"), c.get("operator")
    if not isinstance(field, str) or not field:
        raise Unimportable("a constraint without contextName")
    if not isinstance(op, str) or op not in OPERATORS:
        raise ToggleOff(f"constraint operator {op!r} is unknown")
    if field == "currentTime":
        raise Unimportable("a constraint on currentTime: flagsvc compares dates of "
                           "properties, not the clock (use a date property instead)")
    if field in BUCKET_ONLY:
        raise Unimportable(f"a constraint on {field}: flagsvc has no such field")
    inverted = c.get("inverted") is True
    operator, negate = OPERATORS[op]
    negate = negate != inverted
    ci = op in CASE_OPERATORS and c.get("caseInsensitive") is True
    values = c.get("values")
    if op in LIST_OPERATORS:
        if values is None:
            values = []  # a lone `value` is not read for these: Unleash sees an empty list
        if not isinstance(values, list) or not all(
                isinstance(v, (str, int, float)) and not isinstance(v, bool) for v in values):
            raise ToggleOff(f"{op} on {field}: values must be a list of strings")
        value: Any = [str(v) for v in values]
        if op == "IN_CIDR":
            bad = [v for v in value if not _network(v.strip())]
            if bad:  # Unleash skips them and matches the others
                warn(f"IN_CIDR on {field}: left out what is no address or network: "
                     f"{', '.join(bad)}")
                value = [v for v in value if v not in bad]
        if not value:  # IN nothing: false; NOT_IN nothing: true (inverted flips)
            if (op == "NOT_IN") != inverted:
                return [[]]
            raise Never(f"{op} an empty list")
    else:
        value = c.get("value")
        if not isinstance(value, str) or not value:
            raise ToggleOff(f"{op} on {field} needs a `value` string")
        if op.startswith("NUM_") and to_number(value) is None:
            raise ToggleOff(f"{op} on {field}: {value!r} is no number")
        if op.startswith("SEMVER_"):
            if value.startswith("v"):  # Unleash reads it as false for this strategy
                raise Never(f"{op} on {field}: {value!r} starts with v")
            value = value.strip(" \t")  # then trims spaces and tabs (only those)
            if to_number(value) is not None and not SEMVER.match(value):
                raise Unimportable(f"{op} on {field}: Unleash compares {value!r} as a number, "
                                   "flagsvc as a version")
            if not SEMVER.match(value):  # Unleash cannot compile it: the toggle is off
                raise ToggleOff(f"{op} on {field}: {value!r} is no semantic version")
        if op.startswith("DATE_") and not DATE_VALUE.match(value):
            raise ToggleOff(f"{op} on {field}: {value!r} is no RFC 3339 date-time")
        if op == "REGEX" and _fails_everywhere(value):
            # Unleash's (Rust) engine refuses it too and fails only this constraint: false,
            # or true when inverted
            if inverted:
                return [[]]
            raise Never(f"REGEX on {field}: {value!r} cannot be compiled")
    if field == "environment" and environment is not None:
        probe = make_filter("person", field, operator, value, negate, ci)
        if _static(probe, field, environment):
            return [[]]
        raise Never(f"environment {environment!r} fails {op} {value}")
    where = place(field)
    absent = [make_filter(where, field, "is_not_set", None)]
    strict = {"SEMVER": SEMVER, "DATE": RFC3339}.get(op.partition("_")[0])
    if strict is not None:
        # flagsvc reads versions and dates leniently ("12", "v1.2.3", "2024-01-01"), Unleash
        # only in the strict form: the comparison is paired with that form.
        form = make_filter(where, field, "regex", strict.pattern)
        compare = make_filter(where, field, operator, value)
        if not inverted:
            return [[compare, form]]
        return [absent, [{**form, "negate": True}], [{**compare, "negate": True}]]
    if op in ("IN", "NOT_IN"):
        main = text_equals(where, field, value, negate)
    else:
        main = make_filter(where, field, operator, value, negate, ci)
    if (op == "NOT_IN") != inverted:  # Unleash: true when the field is absent
        return [[main], absent]
    return [[main]]
