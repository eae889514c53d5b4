"""Flag evaluation (SPEC §4): conditions, rollout, variants, payloads, dependencies,
reasons, group bucketing, property sources and explain()."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from flagsvc.engine import Context, compile_flags, evaluate, evaluate_all, explain

ALLOWED_REASONS = {"condition_match", "no_condition_match", "out_of_rollout_bound",
                   "no_group_type", "flag_disabled", "dependency_off", "error"}


class DictResolver:
    """Stored person/group properties and parent links, from plain dicts."""

    def __init__(self, persons=None, groups=None, parents=None):
        self.persons = persons or {}
        self.groups = groups or {}
        self.parents = parents or {}

    def person_properties(self, distinct_id):
        return self.persons.get(distinct_id)

    def group_properties(self, group_type, group_key):
        return self.groups.get((group_type, group_key))

    def group_parent(self, group_type, group_key):
        return self.parents.get((group_type, group_key))


def prop(key: str, value: Any, operator: str = "exact", **extra: Any) -> dict[str, Any]:
    return {"type": "person", "key": key, "operator": operator, "value": value, **extra}


def gprop(group_type: str, key: str, value: Any, operator: str = "exact") -> dict[str, Any]:
    return {"type": "group", "group_type": group_type, "key": key, "operator": operator,
            "value": value}


def one(definition: dict[str, Any], ctx: Context, resolver=None, others=()):
    flags = compile_flags([definition, *others])
    return evaluate(flags, definition["key"], ctx, *(resolver,) if resolver else ())


# ------------------------------------------------------------------ conditions


def test_conditions_are_ored_first_match_wins():
    flag = {"key": "f", "variants": [{"key": "a", "weight": 50}, {"key": "b", "weight": 50}],
            "conditions": [
                {"properties": [prop("plan", "pro")], "variant": "a"},
                {"properties": [prop("country", "NZ")], "variant": "b"},
                {"properties": [prop("plan", "free")], "variant": "b"},
            ]}
    both = one(flag, Context(distinct_id="u", person_properties={"plan": "pro", "country": "NZ"}))
    assert (both.enabled, both.condition_index, both.variant) == (True, 0, "a")
    second = one(flag, Context(distinct_id="u", person_properties={"plan": "x", "country": "NZ"}))
    assert (second.enabled, second.condition_index, second.variant) == (True, 1, "b")
    third = one(flag, Context(distinct_id="u", person_properties={"plan": "free"}))
    assert (third.reason, third.condition_index) == ("condition_match", 2)
    none = one(flag, Context(distinct_id="u", person_properties={"plan": "x"}))
    assert (none.enabled, none.reason, none.condition_index) == (False, "no_condition_match", None)


def test_properties_of_a_condition_are_anded():
    flag = {"key": "f", "conditions": [{"properties": [prop("plan", "pro"), prop("country", "NZ")]}]}
    assert one(flag, Context(distinct_id="u", person_properties={"plan": "pro", "country": "NZ"})).enabled
    assert not one(flag, Context(distinct_id="u", person_properties={"plan": "pro", "country": "AU"})).enabled
    assert not one(flag, Context(distinct_id="u", person_properties={"country": "NZ"})).enabled


def test_no_conditions_field_means_everyone_and_empty_list_means_no_one():
    assert one({"key": "f"}, Context(distinct_id="u")).reason == "condition_match"
    assert one({"key": "f", "conditions": []}, Context(distinct_id="u")).reason == "no_condition_match"


# ------------------------------------------------------------------ rollout


def test_rollout_uses_the_spec_hash_vectors():
    # SPEC §4: "AB12A:122" -> bucket 23, "AB12A:155" -> bucket 100.
    def at(pct, did):
        flag = {"key": "f", "hash_namespace": "AB12A", "conditions": [{"rollout_percentage": pct}]}
        return one(flag, Context(distinct_id=did))

    assert at(23, "122").enabled and not at(22, "122").enabled
    assert at(22, "122").reason == "out_of_rollout_bound"
    assert at(100, "155").enabled and not at(99, "155").enabled
    assert at(None, "155").enabled  # omitted = 100
    assert not at(0, "122").enabled and at(0, "122").reason == "out_of_rollout_bound"


def test_namespace_defaults_to_the_flag_key():
    flag = {"key": "AB12A", "conditions": [{"rollout_percentage": 23}]}
    assert one(flag, Context(distinct_id="122")).enabled
    assert not one({**flag, "conditions": [{"rollout_percentage": 22}]}, Context(distinct_id="122")).enabled


def test_rollout_percentage_is_roughly_the_share_of_identifiers():
    flag = {"key": "f", "conditions": [{"rollout_percentage": 30}]}
    flags = compile_flags([flag])
    on = sum(evaluate(flags, "f", Context(distinct_id=f"user-{i}")).enabled for i in range(10000))
    assert 2800 < on < 3200


# ------------------------------------------------------------------ variants and payloads


def test_variant_distribution_follows_weights():
    flag = {"key": "exp", "variants": [{"key": "a", "weight": 20}, {"key": "b", "weight": 30},
                                       {"key": "c", "weight": 50}]}
    flags = compile_flags([flag])
    counts = Counter(evaluate(flags, "exp", Context(distinct_id=f"id-{i}")).variant
                     for i in range(10000))
    assert set(counts) == {"a", "b", "c"}
    for name, share in (("a", 0.2), ("b", 0.3), ("c", 0.5)):
        assert abs(counts[name] / 10000 - share) < 0.03, counts


def test_variant_matches_unleash_custom_stickiness_vectors():
    # Unleash spec 12: customField 616/503/438/44 -> blue/red/green/yellow (weights 25 each).
    flag = {"key": "k", "hash_namespace": "Feature.flexible.rollout.custom.stickiness_100",
            "bucket_by": "customField",
            "variants": [{"key": c, "weight": 25} for c in ("blue", "red", "green", "yellow")]}
    for value, expected in (("616", "blue"), ("503", "red"), ("438", "green"), ("44", "yellow")):
        assert one(flag, Context(groups={"customField": value})).variant == expected


def test_condition_variant_overrides_the_hash():
    flag = {"key": "f", "variants": [{"key": "control", "weight": 100}, {"key": "test", "weight": 0}],
            "conditions": [{"properties": [prop("beta", True)], "variant": "test"}, {}]}
    assert one(flag, Context(distinct_id="u", person_properties={"beta": True})).variant == "test"
    assert one(flag, Context(distinct_id="u")).variant == "control"


def test_payloads():
    multi = {"key": "f", "variants": [{"key": "control", "weight": 100}],
             "payloads": {"control": {"color": "blue"}, "true": "unused"}}
    r = one(multi, Context(distinct_id="u"))
    assert (r.value, r.payload) == ("control", {"color": "blue"})
    boolean = {"key": "g", "payloads": {"true": [1, 2]}}
    r = one(boolean, Context(distinct_id="u"))
    assert (r.value, r.payload) == (True, [1, 2])
    off = one({**boolean, "active": False}, Context(distinct_id="u"))
    assert (off.value, off.payload) == (False, None)


# ------------------------------------------------------------------ dependencies


BASE_ON = {"key": "base", "conditions": [{"properties": [prop("plan", "pro")]}]}
BASE_MULTI = {"key": "base", "variants": [{"key": "test", "weight": 1}]}


@pytest.mark.parametrize(
    ("base", "plan", "value", "expected"),
    [
        (BASE_ON, "pro", True, True),
        (BASE_ON, "free", True, False),
        (BASE_ON, "pro", False, False),
        (BASE_ON, "free", False, True),
        (BASE_MULTI, "pro", "test", True),
        (BASE_MULTI, "pro", "control", False),
        (BASE_MULTI, "pro", True, True),  # "on, whatever the variant"
        (BASE_MULTI, "pro", False, False),
        ({**BASE_ON, "active": False}, "pro", False, True),
    ],
)
def test_flag_dependency(base, plan, value, expected):
    child = {"key": "child", "conditions": [{"properties": [{"type": "flag", "key": "base",
                                                             "value": value}]}]}
    r = one(child, Context(distinct_id="u", person_properties={"plan": plan}), others=[base])
    assert r.enabled is expected
    assert r.reason == ("condition_match" if expected else "dependency_off")


def test_dependency_value_defaults_to_true():
    child = {"key": "child", "conditions": [{"properties": [{"type": "flag", "key": "base"}]}]}
    assert one(child, Context(distinct_id="u", person_properties={"plan": "pro"}), others=[BASE_ON]).enabled
    assert not one(child, Context(distinct_id="u"), others=[BASE_ON]).enabled


def test_missing_dependency_is_dependency_off():
    child = {"key": "child", "conditions": [{"properties": [{"type": "flag", "key": "ghost",
                                                             "value": True}]}]}
    r = one(child, Context(distinct_id="u"))
    assert (r.enabled, r.reason) == (False, "dependency_off")


def test_dependency_cycles_are_errors_with_a_message():
    a = {"key": "a", "conditions": [{"properties": [{"type": "flag", "key": "b", "value": True}]}]}
    b = {"key": "b", "conditions": [{"properties": [{"type": "flag", "key": "c", "value": True}]}]}
    c = {"key": "c", "conditions": [{"properties": [{"type": "flag", "key": "a", "value": True}]}]}
    selfish = {"key": "s", "conditions": [{"properties": [{"type": "flag", "key": "s"}]}]}
    fine = {"key": "fine"}
    results = evaluate_all(compile_flags([a, b, c, selfish, fine]), Context(distinct_id="u"))
    for key in ("a", "b", "c", "s"):
        assert (results[key].enabled, results[key].reason) == (False, "error")
        assert "cycle" in results[key].error
    assert "a -> b -> c -> a" in results["a"].error
    assert results["fine"].enabled


def test_dependency_on_a_broken_flag_is_off():
    broken = {"key": "base", "conditions": [{"properties": [prop("x", 1, operator="nope")]}]}
    child = {"key": "child", "conditions": [{"properties": [{"type": "flag", "key": "base"}]}]}
    assert one(child, Context(distinct_id="u"), others=[broken]).reason == "dependency_off"


# ------------------------------------------------------------------ reasons


def test_every_reason():
    flags = compile_flags([
        {"key": "match", "conditions": [{"properties": [prop("plan", "pro")]}]},
        {"key": "nomatch", "conditions": [{"properties": [prop("plan", "free")]}]},
        {"key": "rollout", "hash_namespace": "AB12A", "conditions": [{"rollout_percentage": 50}]},
        {"key": "grouped", "bucket_by": "organization"},
        {"key": "disabled", "active": False},
        {"key": "dependent", "conditions": [{"properties": [{"type": "flag", "key": "nomatch"}]}]},
        {"key": "broken", "conditions": [{"rollout_percentage": 150}]},
    ])
    # distinct id 155 has bucket 100 in namespace AB12A (SPEC §4)
    results = evaluate_all(flags, Context(distinct_id="155", person_properties={"plan": "pro"}))
    assert {k: r.reason for k, r in results.items()} == {
        "match": "condition_match", "nomatch": "no_condition_match",
        "rollout": "out_of_rollout_bound", "grouped": "no_group_type",
        "disabled": "flag_disabled", "dependent": "dependency_off", "broken": "error",
    }
    assert results["match"].condition_index == 0
    assert [k for k, r in results.items() if r.enabled] == ["match"]
    assert "rollout_percentage" in results["broken"].error
    assert set(r.reason for r in results.values()) == ALLOWED_REASONS


def test_broken_flag_yields_error_and_others_still_evaluate():
    flags = compile_flags([
        {"key": "bad-regex", "conditions": [{"properties": [prop("email", "(", operator="regex")]}]},
        {"key": "garbage", "conditions": "everyone"},
        "not even a flag",
        {"key": "good"},
    ])
    results = evaluate_all(flags, Context(distinct_id="u"))
    assert results["good"].enabled
    for key in ("bad-regex", "garbage"):
        assert (results[key].enabled, results[key].reason) == (False, "error")
        assert results[key].error


class ExplodingResolver(DictResolver):
    def person_properties(self, distinct_id):
        raise RuntimeError("database is down")


def test_a_failing_resolver_does_not_raise():
    flag = {"key": "f", "conditions": [{"properties": [prop("plan", "pro")]}]}
    r = one(flag, Context(distinct_id="u", person_properties={"plan": "pro"}), ExplodingResolver())
    assert r.enabled  # stored properties unavailable; the request's still count


# ------------------------------------------------------------------ group bucketing


def test_group_bucketed_flag_hashes_the_group_key():
    # SPEC §4 vector again, now on an organization key rather than a distinct id.
    flag = {"key": "f", "hash_namespace": "AB12A", "bucket_by": "organization",
            "conditions": [{"rollout_percentage": 50}]}
    inside = one(flag, Context(distinct_id="155", groups={"organization": "122"}))
    outside = one(flag, Context(distinct_id="122", groups={"organization": "155"}))
    assert (inside.enabled, inside.identifier, inside.bucket_by) == (True, "122", "organization")
    assert (outside.enabled, outside.reason) == (False, "out_of_rollout_bound")


def test_group_bucketed_flag_never_falls_back_to_the_distinct_id():
    flag = {"key": "f", "bucket_by": "organization"}
    r = one(flag, Context(distinct_id="u1", groups={"team": "t1"}))
    assert (r.enabled, r.reason, r.identifier) == (False, "no_group_type", None)
    assert one(flag, Context(distinct_id="u1", groups={"organization": ""})).reason == "no_group_type"


def test_every_user_of_an_org_gets_the_same_variant():
    flag = {"key": "f", "bucket_by": "organization",
            "variants": [{"key": k, "weight": 1} for k in "abcdefgh"]}
    flags = compile_flags([flag])
    for org in ("acme", "globex", "initech"):
        seen = {evaluate(flags, "f", Context(distinct_id=f"user-{i}", groups={"organization": org})).variant
                for i in range(200)}
        assert len(seen) == 1
    orgs = {evaluate(flags, "f", Context(distinct_id="same", groups={"organization": f"o{i}"})).variant
            for i in range(200)}
    assert len(orgs) == 8


def test_per_condition_bucket_by():
    # namespace AB12A: "122" -> bucket 23 (in at 50 %), "155" -> bucket 100 (out).
    flag = {"key": "f", "hash_namespace": "AB12A", "bucket_by": "organization", "conditions": [
        {"rollout_percentage": 50},
        {"rollout_percentage": 50, "bucket_by": "$person"},
    ]}
    r = one(flag, Context(distinct_id="122", groups={"organization": "155"}))
    assert (r.enabled, r.condition_index, r.bucket_by, r.identifier) == (True, 1, "$person", "122")
    r = one(flag, Context(distinct_id="155", groups={"organization": "155"}))
    assert (r.enabled, r.reason) == (False, "out_of_rollout_bound")


def test_person_bucketed_flag_without_distinct_id_is_no_group_type():
    assert one({"key": "f"}, Context(groups={"organization": "o"})).reason == "no_group_type"


# ------------------------------------------------------------------ property sources


def test_request_properties_override_stored_ones_per_key():
    resolver = DictResolver(
        persons={"u": {"plan": "free", "country": "NZ"}},
        groups={("organization", "acme"): {"tier": "gold", "seats": 10}},
    )
    flag = {"key": "f", "bucket_by": "organization", "conditions": [{"properties": [
        prop("plan", "pro"), prop("country", "NZ"),
        gprop("organization", "tier", "gold"), gprop("organization", "seats", 50, "gte"),
    ]}]}
    ctx = Context(distinct_id="u", groups={"organization": "acme"},
                  person_properties={"plan": "pro"}, group_properties={"organization": {"seats": 60}})
    assert one(flag, ctx, resolver).enabled
    # stored values alone do not match (plan free, seats 10)
    assert not one(flag, Context(distinct_id="u", groups={"organization": "acme"}), resolver).enabled


def test_group_properties_of_a_group_the_request_does_not_name_do_not_match():
    resolver = DictResolver(groups={("organization", "acme"): {"tier": "gold"}})
    flag = {"key": "f", "conditions": [{"properties": [gprop("organization", "tier", "gold")]}]}
    assert one(flag, Context(distinct_id="u", groups={"organization": "acme"}), resolver).enabled
    r = one(flag, Context(distinct_id="u"), resolver)
    assert (r.enabled, r.reason) == (False, "no_condition_match")


def test_group_key_and_distinct_id_pseudo_properties():
    flag = {"key": "f", "conditions": [{"properties": [
        gprop("organization", "$group_key", ["acme", "globex"]),
        prop("distinct_id", "@acme.com", "ends_with"),
    ]}]}
    assert one(flag, Context(distinct_id="bob@acme.com", groups={"organization": "acme"})).enabled
    assert not one(flag, Context(distinct_id="bob@acme.com", groups={"organization": "initech"})).enabled
    assert not one(flag, Context(distinct_id="bob@other.com", groups={"organization": "acme"})).enabled


def test_negated_filter_and_case_insensitive_in_a_flag():
    flag = {"key": "f", "conditions": [{"properties": [
        prop("email", "@ACME.COM", "ends_with", negate=True, case_insensitive=True)]}]}
    assert not one(flag, Context(distinct_id="u", person_properties={"email": "a@acme.com"})).enabled
    assert one(flag, Context(distinct_id="u", person_properties={"email": "a@b.com"})).enabled


def test_flag_id_and_version_are_reported():
    r = one({"key": "f", "id": 7, "version": 3}, Context(distinct_id="u"))
    assert (r.flag_id, r.version) == (7, 3)


def test_evaluate_unknown_flag_is_none_and_evaluate_all_keys():
    flags = compile_flags([{"key": "a"}, {"key": "b"}])
    assert evaluate(flags, "zzz", Context(distinct_id="u")) is None
    assert set(evaluate_all(flags, Context(distinct_id="u"), keys=["b", "zzz"])) == {"b"}


# ------------------------------------------------------------------ explain


def test_explain():
    flag = {"key": "f", "hash_namespace": "AB12A", "bucket_by": "organization", "conditions": [
        {"properties": [gprop("organization", "plan", "enterprise")]},
        {"properties": [gprop("organization", "plan", ["pro", "enterprise"])], "rollout_percentage": 30},
    ]}
    flags = compile_flags([flag])
    ctx = Context(distinct_id="u", groups={"organization": "122"},
                  group_properties={"organization": {"plan": "pro"}})
    out = explain(flags, "f", ctx)
    assert out["value"] is True and out["reason"] == "condition_match"
    assert out["condition_index"] == 1
    assert (out["bucket_by"], out["group_key"], out["bucket"]) == ("organization", "122", 23)
    first, second = out["conditions"]
    assert first["matched"] is False and first["properties"][0]["matched"] is False
    assert first["properties"][0]["actual"] == "pro"
    assert second["matched"] is True and second["in_rollout"] is True
    assert (second["bucket"], second["rollout_percentage"]) == (23, 30)
    assert explain(flags, "missing", ctx) is None
    off = explain(flags, "f", Context(distinct_id="u"))
    assert off["reason"] == "no_group_type" and off["group_key"] is None
    assert all(c["bucket"] is None for c in off["conditions"])


def dependency_chain(n: int) -> list[dict[str, Any]]:
    """f0 -> f1 -> ... -> f{n}: n dependency links, every flag on."""
    return [{"key": f"f{i}", "conditions": [{"properties": [{"type": "flag", "key": f"f{i + 1}"}]}]}
            for i in range(n)] + [{"key": f"f{n}"}]


def test_dependency_chains_of_ten_evaluate_and_deeper_ones_are_errors():
    ten = evaluate_all(compile_flags(dependency_chain(10)), Context(distinct_id="u"))
    assert all(r.reason == "condition_match" for r in ten.values())
    eleven = evaluate_all(compile_flags(dependency_chain(11)), Context(distinct_id="u"))
    assert (eleven["f0"].reason, eleven["f1"].reason) == ("error", "condition_match")
    assert "deeper than 10" in eleven["f0"].error


def test_very_long_dependency_chain_compiles_without_recursion_error():
    flags = compile_flags(dependency_chain(5000))  # beyond Python's recursion limit
    results = evaluate_all(flags, Context(distinct_id="u"))
    assert results["f4990"].enabled and results["f0"].reason == "error"


def test_identifiers_that_are_not_valid_unicode_are_hashed_not_crashed():
    # JSON can carry a lone surrogate ("\\ud800"); mmh3 segfaulted on such a str.
    flag = {"key": "f", "bucket_by": "organization", "conditions": [{"rollout_percentage": 50}],
            "variants": [{"key": "a", "weight": 1}, {"key": "b", "weight": 1}]}
    r = one(flag, Context(distinct_id="u\ud800", groups={"organization": "o\udfff"}))
    assert r.reason in ("condition_match", "out_of_rollout_bound")
    assert explain(compile_flags([flag]), "f", Context(groups={"organization": "\ud800"}))
