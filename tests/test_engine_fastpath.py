"""The generated fast path (and its value-only twin) gives exactly the general evaluator's
result (fastpath.py)."""

from __future__ import annotations

import copy

from hypothesis import given, settings
from hypothesis import strategies as st

from flagsvc.engine import Context, Evaluation, compile_flags, evaluate

OPERATORS = ["exact", "is_not", "contains", "starts_with", "ends_with", "regex", "gt", "gte",
             "lt", "lte", "is_set", "is_not_set", "semver_gt", "date_after", "in_cidr",
             "icontains", "not_in", "num_lte"]
KEYS = ["plan", "employees", "name", "version", "ip"]
scalars = st.one_of(st.none(), st.booleans(), st.integers(-100, 200),
                    st.floats(allow_nan=False, allow_infinity=False, width=32),
                    st.sampled_from(["enterprise", "pro", "free", "50", "1.2.3", "10.0.0.1",
                                     "2024-01-01", "-30d", "Ent", "", "a.b"]),
                    st.text(max_size=4))
values = st.one_of(scalars, st.lists(scalars, max_size=3))


def flags_of(bucket_by: str):
    source = "person" if bucket_by == "$person" else "group"
    prop = st.fixed_dictionaries(
        {"type": st.just(source), "key": st.sampled_from(KEYS),
         "operator": st.sampled_from(OPERATORS), "value": values},
        optional={"negate": st.booleans(), "case_insensitive": st.booleans()})
    if source == "group":
        prop = prop.map(lambda p: {**p, "group_type": bucket_by})
    condition = st.fixed_dictionaries(
        {"properties": st.lists(prop, max_size=3)},
        optional={"rollout_percentage": st.integers(0, 100),
                  "variant": st.sampled_from(["a", "b"])})
    return st.fixed_dictionaries({
        "key": st.sampled_from(["f", "new-billing", "ünï"]),
        "bucket_by": st.just(bucket_by),
        "conditions": st.lists(condition, min_size=1, max_size=3),
    }, optional={"variants": st.just([{"key": "a", "weight": 30}, {"key": "b", "weight": 70}]),
                 "payloads": st.just({"a": {"x": 1}, "true": "yes"}),
                 "hash_namespace": st.sampled_from(["ns", "AB12A"])})


props = st.dictionaries(st.sampled_from(KEYS), scalars, max_size=5)
idents = st.one_of(st.sampled_from(["org-1", "122", "acme", "\ud800x"]), st.text(min_size=1,
                                                                               max_size=6))


def _general(defn, ctx):
    flags = compile_flags([copy.deepcopy(defn)])
    flag = flags[defn["key"]]
    flag.fast = None  # force the general loop
    return Evaluation(flags, ctx).flag(defn["key"])


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(["organization", "$person"]).flatmap(flags_of), idents, props,
       st.floats(1.6e9, 1.9e9))
def test_fast_path_equals_general_path(defn, ident, properties, now):
    if defn["bucket_by"] == "$person":
        ctx = Context(distinct_id=ident, person_properties=properties, now=now)
    else:
        ctx = Context(groups={"organization": ident}, group_properties={"organization": properties},
                      now=now)
    flags = compile_flags([copy.deepcopy(defn)])
    flag = flags[defn["key"]]
    if flag.error is not None:
        assert flag.fast is None
        return
    assert flag.fast is not None, "an eligible flag must get a fast path"
    expected = _general(defn, ctx)
    assert evaluate(flags, defn["key"], ctx) == expected
    assert Evaluation(flags, ctx).flag(defn["key"]) == expected
    # the value-only twin FlagClient.get_flag calls decides alike
    assert flag.fast_value(ident, properties, now) == expected.value


def test_shapes_that_need_the_general_path_get_none():
    defs = [
        {"key": "dep", "conditions": [{"properties": [{"type": "flag", "key": "other"}]}]},
        {"key": "other"},
        {"key": "mixed", "bucket_by": "account", "conditions": [{"properties": [
            {"type": "person", "key": "email", "value": "x"}]}]},
        {"key": "per-cond", "bucket_by": "account", "conditions": [{"bucket_by": "project"}]},
        {"key": "pseudo", "bucket_by": "account", "conditions": [{"properties": [
            {"type": "group", "group_type": "account", "key": "$group_key", "value": "a"}]}]},
        {"key": "off", "active": False},
        {"key": "no-conditions", "conditions": []},
    ]
    flags = compile_flags(defs)
    assert {k for k, f in flags.items() if f.fast is not None} == {"other"}


def test_fast_path_source_holds_no_definition_text():
    """Keys and values reach the generated code as bound names only."""
    evil = "x')); import os; os._exit(1) #"
    flags = compile_flags([{"key": evil, "bucket_by": "organization", "conditions": [
        {"properties": [{"type": "group", "group_type": "organization", "key": evil,
                         "value": [evil]}]}], "payloads": {"true": evil}}])
    r = evaluate(flags, evil, Context(groups={"organization": "o"},
                                      group_properties={"organization": {evil: evil}}))
    assert r.enabled and r.payload == evil
