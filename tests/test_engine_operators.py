"""Property operators (SPEC §4), table-driven through a one-filter flag, so `negate`, missing
and null handling of the filter are exercised along with each matcher."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest

from flagsvc.engine import (
    ALIASES,
    OPERATORS,
    Context,
    FilterError,
    compile_flags,
    evaluate,
    validate_flag,
)
from flagsvc.engine.operators import build_matcher

NOW = 1_700_000_000.0  # 2023-11-14T22:13:20Z
DAY = 86400.0
MISSING = object()


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def flag_def(operator, value, **mods):
    prop = {"type": "person", "key": "p", "operator": operator, "value": value, **mods}
    return {"key": "f", "conditions": [{"properties": [prop]}]}


def matches(operator, value, actual, now=NOW, **mods) -> bool:
    definition = flag_def(operator, value, **mods)
    assert validate_flag(definition) == []
    flags = compile_flags([definition])
    props = {} if actual is MISSING else {"p": actual}
    result = evaluate(flags, "f", Context(distinct_id="u1", person_properties=props, now=now))
    assert result.reason in ("condition_match", "no_condition_match"), result
    return result.enabled


CI = {"case_insensitive": True}
NEG = {"negate": True}

CASES = [
    # exact: strings, lists, numbers vs numeric strings, bools
    ("exact", "pro", "pro", True, {}),
    ("exact", "pro", "Pro", False, {}),
    ("exact", "pro", "Pro", True, CI),
    ("exact", ["enterprise", "pro"], "pro", True, {}),
    ("exact", ["enterprise", "pro"], "free", False, {}),
    ("exact", 50, "50", True, {}),
    ("exact", "50", 50, True, {}),
    ("exact", "50", 50.0, True, {}),
    ("exact", "50", "50.0", True, {}),
    ("exact", "1e3", 1000, True, {}),
    ("exact", 1000, "1e3", True, {}),
    ("exact", 50, 51, False, {}),
    ("exact", 1000, "1_000", False, {}),  # Python's float() syntax is not a numeric string
    ("gt", 999, "1_000", False, {}),
    ("exact", 50, "fifty", False, {}),
    ("exact", True, True, True, {}),
    ("exact", True, "true", True, {}),
    ("exact", "true", True, True, {}),
    ("exact", True, False, False, {}),
    ("exact", 1, True, False, {}),
    ("exact", True, 1, False, {}),
    ("exact", "pro", "pro", False, NEG),
    ("exact", "pro", "free", True, NEG),
    # is_not: scalar or list
    ("is_not", "pro", "free", True, {}),
    ("is_not", "pro", "pro", False, {}),
    ("is_not", "pro", "PRO", False, CI),
    ("is_not", ["a", "b"], "b", False, {}),
    ("is_not", ["a", "b"], "c", True, {}),
    ("is_not", 50, "50", False, {}),
    ("is_not", "pro", "pro", True, NEG),
    # string operators
    ("contains", "acme", "bob@acme.com", True, {}),
    ("contains", "ACME", "bob@acme.com", False, {}),
    ("contains", "ACME", "bob@acme.com", True, CI),
    ("contains", "23", 1234, True, {}),
    ("contains", "acme", "bob@acme.com", False, NEG),
    ("starts_with", "bob", "bob@acme.com", True, {}),
    ("starts_with", "acme", "bob@acme.com", False, {}),
    ("starts_with", "BOB", "bob@acme.com", True, CI),
    ("ends_with", "@acme.com", "bob@acme.com", True, {}),
    ("ends_with", "@acme.com", "bob@acme.com.evil.io", False, {}),
    ("ends_with", "@ACME.COM", "bob@acme.com", True, CI),
    ("ends_with", "@acme.com", "bob@acme.com", False, NEG),
    # regex (RE2)
    ("regex", r"^\d+$", "123", True, {}),
    ("regex", r"^\d+$", "12a", False, {}),
    ("regex", r"acme", "bob@acme.com", True, {}),
    ("regex", r"^PRO", "pro-plan", False, {}),
    ("regex", r"^PRO", "pro-plan", True, CI),
    ("regex", r"^\d+$", 42, True, {}),
    ("regex", r"^\d+$", "123", False, NEG),
    # numeric comparisons: numbers and numeric strings compare as numbers
    ("gt", 10, 11, True, {}),
    ("gt", 10, 10, False, {}),
    ("gt", 10, "11", True, {}),
    ("gt", "10", 9, False, {}),
    ("gt", "1e3", 999, False, {}),
    ("gt", "1e3", 1001, True, {}),
    ("gt", 5, "abc", False, {}),
    ("gt", 5, True, False, {}),
    ("gte", 10, 10, True, {}),
    ("gte", 10, 9.99, False, {}),
    ("lt", "10", "9", True, {}),  # as text "9" > "10"; as numbers 9 < 10
    ("lt", 10, "9", True, {}),
    ("lt", 10, 10, False, {}),
    ("lte", 10, 10.0, True, {}),
    ("lte", 10, "10.5", False, {}),
    ("lte", 10, 11, True, NEG),
    # presence
    ("is_set", None, "x", True, {}),
    ("is_set", None, 0, True, {}),
    ("is_set", None, False, True, {}),
    ("is_set", None, MISSING, False, {}),
    ("is_set", None, None, False, {}),
    ("is_set", None, MISSING, True, NEG),
    ("is_set", None, "x", False, NEG),
    ("is_not_set", None, MISSING, True, {}),
    ("is_not_set", None, None, True, {}),
    ("is_not_set", None, "x", False, {}),
    ("is_not_set", None, "x", True, NEG),
    # absolute dates: with and without Z, date-only, offsets
    ("date_before", "2024-01-01", "2023-12-31", True, {}),
    ("date_before", "2024-01-01", "2024-01-02", False, {}),
    ("date_before", "2024-01-01T00:00:00Z", "2024-01-01T00:00:01Z", False, {}),
    ("date_before", "2024-01-01T00:00:00Z", "2023-12-31T23:59:59Z", True, {}),
    ("date_before", "2024-01-01T00:00:00Z", "2024-01-01T00:30:00+01:00", True, {}),
    ("date_after", "2024-01-01T00:00:00", "2024-01-01T00:00:01Z", True, {}),
    ("date_after", "2024-01-01", "2023-12-31T23:59:59+00:00", False, {}),
    ("date_after", "2024-01-01T12:00:00Z", "2024-01-01", False, {}),
    ("date_after", "2024-01-01", "not a date", False, {}),
    ("date_after", "2024-01-01", "2023-12-31", True, NEG),
    # epoch numbers (seconds, milliseconds)
    ("date_after", "2023-01-01", 1_700_000_000, True, {}),
    ("date_after", "2023-01-01", 1_700_000_000_000, True, {}),
    ("date_before", "2023-01-01", 1_600_000_000, True, {}),
    ("date_before", "2023-01-01", "1600000000", True, {}),
    ("date_before", 1_672_531_200, "2022-12-31T23:59:59Z", True, {}),
    # relative dates against ctx.now
    ("date_before", "-30d", iso(NOW - 31 * DAY), True, {}),
    ("date_before", "-30d", iso(NOW - 29 * DAY), False, {}),
    ("date_after", "-30d", iso(NOW - 29 * DAY), True, {}),
    ("date_after", "-30d", iso(NOW - 31 * DAY), False, {}),
    ("date_before", "-2w", iso(NOW - 15 * DAY), True, {}),
    ("date_before", "-2w", iso(NOW - 13 * DAY), False, {}),
    ("date_before", "-6m", iso(NOW - 200 * DAY), True, {}),
    ("date_before", "-6m", iso(NOW - 160 * DAY), False, {}),
    ("date_before", "-1y", iso(NOW - 400 * DAY), True, {}),
    ("date_before", "-1y", iso(NOW - 330 * DAY), False, {}),
    ("date_before", "-12h", iso(NOW - 13 * 3600), True, {}),
    ("date_after", "-12h", iso(NOW - 11 * 3600), True, {}),
    ("date_after", "-12h", NOW - 11 * 3600, True, {}),
    # semver: build metadata ignored, "v" prefix, numeric vs alphanumeric identifiers
    ("semver_eq", "1.0.0", "1.0.0+build.5", True, {}),
    ("semver_eq", "1.2.3", "v1.2.3", True, {}),
    ("semver_eq", "v1.2.3", "1.2.3", True, {}),
    ("semver_eq", "1.2.3", "1.2.4", False, {}),
    ("semver_eq", "1.0.0", "1.0.0-rc.1", False, {}),
    ("semver_gt", "1.9.0", "1.10.0", True, {}),
    ("semver_gt", "1.0.0-alpha", "1.0.0-1", False, {}),  # numeric ids sort before alphanumeric
    ("semver_lt", "1.0.0-10", "1.0.0-2", True, {}),  # numeric ids compare as numbers
    ("semver_lt", "1.0.0-beta.11", "1.0.0-beta.2", True, {}),
    ("semver_gte", "1.2.3", "1.2.3", True, {}),
    ("semver_gte", "1.2.3", "1.2.3-rc.1", False, {}),
    ("semver_lte", "1.2.3", "1.2.3", True, {}),
    ("semver_lte", "1.2.3", "1.2.4", False, {}),
    ("semver_gt", "1.0.0", "not-a-version", False, {}),
    ("semver_gt", "1.0.0", "2.0.0", False, NEG),
    # in_cidr v4 and v6
    ("in_cidr", "10.0.0.0/8", "10.1.2.3", True, {}),
    ("in_cidr", "10.0.0.0/8", "11.0.0.1", False, {}),
    ("in_cidr", ["192.168.0.0/16", "10.0.0.0/8"], "192.168.7.7", True, {}),
    ("in_cidr", "192.168.1.7/32", "192.168.1.7", True, {}),
    ("in_cidr", "2001:db8::/32", "2001:db8::1", True, {}),
    ("in_cidr", "2001:db8::/32", "2001:db9::1", False, {}),
    ("in_cidr", "::/0", "10.0.0.1", False, {}),  # v4 address, v6 network
    ("in_cidr", "0.0.0.0/0", "::1", False, {}),
    ("in_cidr", "10.0.0.0/8", "not an ip", False, {}),
    ("in_cidr", "10.0.0.0/8", "10.1.2.3", False, NEG),
    # aliases (PostHog / Unleash names)
    ("icontains", "ACME", "bob@acme.com", True, {}),
    ("icontains", "globex", "bob@acme.com", False, {}),
    ("not_icontains", "ACME", "bob@acme.com", False, {}),
    ("not_icontains", "globex", "bob@acme.com", True, {}),
    ("not_regex", r"^\d+$", "123", False, {}),
    ("not_regex", r"^\d+$", "abc", True, {}),
    ("is_date_before", "2024-01-01", "2023-06-01", True, {}),
    ("is_date_before", "-30d", iso(NOW - 10 * DAY), False, {}),
    ("is_date_after", "2024-01-01", "2024-06-01", True, {}),
    ("is_date_after", "2024-01-01", "2023-06-01", False, {}),
    ("in", ["a", "b"], "b", True, {}),
    ("in", ["a", "b"], "c", False, {}),
    ("not_in", ["a", "b"], "c", True, {}),
    ("not_in", ["a", "b"], "a", False, {}),
    ("str_contains", "cme", "acme", True, {}),
    ("str_contains", "CME", "acme", False, {}),
    ("str_starts_with", "ac", "acme", True, {}),
    ("str_starts_with", "me", "acme", False, {}),
    ("str_ends_with", "me", "acme", True, {}),
    ("str_ends_with", "ac", "acme", False, {}),
    ("num_eq", 5, "5.0", True, {}),
    ("num_eq", 5, 6, False, {}),
    ("num_gt", 5, 6, True, {}),
    ("num_gt", 5, 5, False, {}),
    ("num_gte", 5, 5, True, {}),
    ("num_gte", 5, 4, False, {}),
    ("num_lt", 5, "4", True, {}),
    ("num_lt", 5, 5, False, {}),
    ("num_lte", 5, 5, True, {}),
    ("num_lte", 5, 6, False, {}),
    ("flag_evaluates_to", True, True, True, {}),
    ("flag_evaluates_to", "test", "control", False, {}),
    # operator names are case-insensitive
    ("EXACT", "pro", "pro", True, {}),
]


@pytest.mark.parametrize(
    ("operator", "value", "actual", "expected", "mods"),
    CASES,
    ids=[f"{c[0]}-{c[1]!r}-{c[2] if c[2] is not MISSING else 'MISSING'!r}-{sorted(c[4])}"[:80]
         for c in CASES],
)
def test_operator(operator, value, actual, expected, mods):
    assert matches(operator, value, actual, **mods) is expected


def test_every_operator_and_alias_has_cases():
    covered = {c[0] for c in CASES}
    assert set(OPERATORS) <= covered
    assert set(ALIASES) <= covered


SAMPLE_VALUES = {
    "exact": "x", "is_not": "x", "contains": "x", "starts_with": "x", "ends_with": "x",
    "regex": "x", "gt": 1, "gte": 1, "lt": 1, "lte": 1, "is_set": None, "is_not_set": None,
    "date_before": "2024-01-01", "date_after": "2024-01-01", "semver_eq": "1.0.0",
    "semver_gt": "1.0.0", "semver_gte": "1.0.0", "semver_lt": "1.0.0", "semver_lte": "1.0.0",
    "in_cidr": "10.0.0.0/8",
}


@pytest.mark.parametrize("operator", sorted(OPERATORS))
@pytest.mark.parametrize("negate", [False, True])
@pytest.mark.parametrize("actual", [MISSING, None])
def test_missing_or_null_property_never_matches(operator, negate, actual):
    """Only is_not_set, and is_set negated, match a property the evaluator does not have."""
    expected = ((operator == "is_not_set") != negate
                if operator in ("is_set", "is_not_set") else False)
    assert matches(operator, SAMPLE_VALUES[operator], actual, negate=negate) is expected


def test_relative_dates_use_now_from_the_context():
    ts = iso(NOW - 20 * DAY)
    assert matches("date_before", "-30d", ts, now=NOW) is False
    assert matches("date_before", "-30d", ts, now=NOW + 20 * DAY) is True


SEMVER_ORDER = ["1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-alpha.beta", "1.0.0-beta", "1.0.0-beta.2",
                "1.0.0-beta.11", "1.0.0-rc.1", "1.0.0", "1.0.1", "1.1.0", "2.0.0"]


@pytest.mark.parametrize("i", range(len(SEMVER_ORDER) - 1))
def test_semver_precedence(i):
    """The SemVer 2.0 precedence example: each version is lower than the next."""
    lower, higher = SEMVER_ORDER[i], SEMVER_ORDER[i + 1]
    assert matches("semver_lt", higher, lower)
    assert matches("semver_lte", higher, lower)
    assert matches("semver_gt", lower, higher)
    assert matches("semver_gte", lower, higher)
    assert not matches("semver_gt", higher, lower)
    assert not matches("semver_eq", higher, lower)


@pytest.mark.parametrize(
    ("operator", "value"),
    [
        ("regex", "("),
        ("regex", r"(a)\1"),  # backreference: not linear-time, refused
        ("regex", r"foo(?=bar)"),  # lookahead
        ("regex", ["a", "b"]),
        ("exact", []),
        ("gt", None),
        ("gt", [1, 2]),
        ("date_before", "yesterday-ish"),
        ("date_after", None),
        ("semver_eq", "one.two"),
        ("in_cidr", "10.0.0.0/33"),
        ("in_cidr", "not-a-network"),
    ],
)
def test_unusable_values_are_refused_when_saved(operator, value):
    with pytest.raises(FilterError):
        build_matcher(operator, value)
    problems = validate_flag(flag_def(operator, value))
    assert len(problems) == 1 and "conditions[0].properties[0]" in problems[0]
    # and a flag that is loaded anyway evaluates to error, not an exception
    result = evaluate(compile_flags([flag_def(operator, value)]), "f", Context(distinct_id="u"))
    assert (result.enabled, result.reason) == (False, "error")


def test_unknown_operator_is_reported():
    problems = validate_flag(flag_def("almost_equal", 3))
    assert problems and "unknown operator 'almost_equal'" in problems[0]


def test_catastrophic_regex_evaluates_quickly():
    text = "a" * 50000 + "b"
    start = time.perf_counter()
    assert matches("regex", "(a+)+$", text) is False
    assert matches("regex", "^(a|aa)+$", text) is False
    assert time.perf_counter() - start < 1.0


@pytest.mark.parametrize(
    ("operator", "value", "actual"),
    [
        ("semver_gt", "1.0.0", "².0.0"),  # str.isdigit() is true for superscripts; int() refuses
        ("semver_gt", "1.0.0", "1.0.0-²"),
        ("semver_gt", "1.0.0", "1" * 5000),  # beyond int()'s digit limit
        ("date_before", "2024-01-01", 10**400),  # too large for a float
        ("date_after", "2024-01-01", -(10**400)),
        ("date_after", "-30d", 10**400),
        ("regex", "a", "\ud800a"),  # lone surrogate (valid in JSON, not in UTF-8)
        ("gt", 5, 10**400),
    ],
    ids=["semver-superscript", "semver-pre-superscript", "semver-5000-digits", "date-huge-int",
         "date-huge-negative-int", "relative-date-huge-int", "regex-lone-surrogate", "gt-huge-int"],
)
def test_bad_property_values_are_a_non_match_not_an_error(operator, value, actual):
    """SPEC §4: evaluation never raises on bad data; a value an operator cannot read is
    a non-match for that filter (and a match when negated), not an error for the flag."""
    expected = operator == "gt"  # 10**400 > 5 is a fine comparison
    assert matches(operator, value, actual) is expected
    assert matches(operator, value, actual, negate=True) is not expected
