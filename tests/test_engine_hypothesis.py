"""Open-ended inputs (SPEC §4: evaluation never raises on bad data): random and garbage flag
definitions x random contexts must compile, validate and evaluate without an exception,
with one result per flag and a reason from the allowed set."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flagsvc.engine import (
    ALIASES,
    OPERATORS,
    Context,
    FlagResult,
    compile_flags,
    evaluate_all,
    explain,
    validate_flag,
)

ALLOWED_REASONS = {"condition_match", "no_condition_match", "out_of_rollout_bound",
                   "no_group_type", "flag_disabled", "dependency_off", "error"}

FLAG_KEYS = ["a", "b", "c", "d"]
GROUP_TYPES = ["organization", "account", "project", "$person"]
PROP_KEYS = ["plan", "email", "n", "ts", "version", "ip", "$group_key", "distinct_id"]

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12),
    st.sampled_from(["50", "1e3", "-30d", "2024-01-01", "2024-01-01T00:00:00Z", "1.0.0-rc.1",
                     "v2.0.0", "10.0.0.0/8", "::1", "(a+)+$", "(", r"(a)\1", "²", "", " ",
                     "\ud800", "1" * 5000]),
)
junk = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=5), inner, max_size=3)),
    max_leaves=8)
operators = st.one_of(st.sampled_from(sorted(OPERATORS) + sorted(ALIASES)),
                      st.sampled_from(["nope", "EXACT", ""]), junk)


def maybe(key: str, strategy) -> st.SearchStrategy:
    """A dict fragment that has `key` drawn from `strategy`, or lacks it."""
    return st.one_of(st.just({}), strategy.map(lambda v: {key: v}))


def merged(*parts) -> st.SearchStrategy:
    return st.tuples(*parts).map(lambda ds: {k: v for d in ds for k, v in d.items()})


property_filter = st.one_of(junk, merged(
    maybe("type", st.one_of(st.sampled_from(["person", "group", "flag", "cohort"]), junk)),
    maybe("key", st.one_of(st.sampled_from(PROP_KEYS + FLAG_KEYS), junk)),
    maybe("group_type", st.one_of(st.sampled_from(GROUP_TYPES), junk)),
    maybe("operator", operators),
    maybe("value", junk),
    maybe("negate", junk),
    maybe("case_insensitive", junk),
))
condition = st.one_of(junk, merged(
    maybe("properties", st.one_of(st.lists(property_filter, max_size=3), junk)),
    maybe("rollout_percentage", st.one_of(st.integers(-5, 105), junk)),
    maybe("variant", st.one_of(st.sampled_from(["control", "test"]), junk)),
    maybe("bucket_by", st.one_of(st.sampled_from(GROUP_TYPES), junk)),
))
variant = st.one_of(junk, merged(
    maybe("key", st.one_of(st.sampled_from(["control", "test"]), junk)),
    maybe("weight", st.one_of(st.integers(-1, 100), junk)),
))
flag_definition = st.one_of(junk, merged(
    st.sampled_from(FLAG_KEYS).map(lambda k: {"key": k}),
    maybe("key", junk),
    maybe("active", junk),
    maybe("bucket_by", st.one_of(st.sampled_from(GROUP_TYPES), junk)),
    maybe("hash_namespace", junk),
    maybe("conditions", st.one_of(st.lists(condition, max_size=3), junk)),
    maybe("variants", st.one_of(st.lists(variant, max_size=3), junk)),
    maybe("payloads", junk),
    maybe("version", junk),
))

property_values = st.dictionaries(st.sampled_from(PROP_KEYS), junk, max_size=4)
contexts = st.builds(
    Context,
    # "\ud800": a lone surrogate, valid in JSON, which once segfaulted the hash (mmh3)
    distinct_id=st.one_of(st.none(), st.text(max_size=8), st.integers(), st.just("u\ud800")),
    groups=st.dictionaries(st.sampled_from(GROUP_TYPES),
                           st.one_of(st.text(max_size=6), st.none(), st.just("\udfff")),
                           max_size=3),
    person_properties=property_values,
    group_properties=st.dictionaries(st.sampled_from(GROUP_TYPES), property_values, max_size=2),
    now=st.floats(min_value=0, max_value=4e9),
)


class RandomResolver:
    def __init__(self, data):
        self.data = data

    def person_properties(self, distinct_id):
        return self.data.draw(st.one_of(st.none(), property_values, junk))

    def group_properties(self, group_type, group_key):
        return self.data.draw(st.one_of(st.none(), property_values, junk))

    def group_parent(self, group_type, group_key):
        return self.data.draw(st.one_of(
            st.none(), st.tuples(st.sampled_from(GROUP_TYPES), st.text(max_size=3)), junk))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(definitions=st.lists(flag_definition, max_size=5), ctx=contexts, data=st.data())
def test_compile_and_evaluate_never_raise(definitions, ctx, data):
    flags = compile_flags(definitions)
    results = evaluate_all(flags, ctx, RandomResolver(data))
    assert set(results) == set(flags)
    for key, r in results.items():
        assert isinstance(r, FlagResult) and r.key == key
        assert r.reason in ALLOWED_REASONS
        assert r.enabled is (r.reason == "condition_match")
        assert (r.condition_index is not None) is r.enabled
        if r.reason == "error":
            assert r.error
    for key in flags:
        out = explain(flags, key, ctx)
        assert out is not None and out["reason"] in ALLOWED_REASONS


@settings(max_examples=400, deadline=None)
@given(definition=st.one_of(flag_definition, junk))
def test_validate_flag_never_raises_and_agrees_with_compile(definition):
    problems = validate_flag(definition)
    assert isinstance(problems, list) and all(isinstance(p, str) for p in problems)
    flags = compile_flags([definition])
    (flag,) = flags.values()
    if problems:
        assert flag.error
    # a usable flag may still be in error only through a dependency cycle (on itself)
    elif flag.error:
        assert "cycle" in flag.error
