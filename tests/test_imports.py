"""Importing flags from Unleash and PostHog: the converters (table-driven cases, and
Hypothesis checks of the converted flag against each tool's own evaluator on random
contexts) and `flagsvc flags import --from ...` end to end on a real database."""

from __future__ import annotations

import json
import warnings

import pytest
import yggdrasil_engine.engine
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flagsvc.engine import Context, compile_flags, evaluate
from flagsvc.imports import Unimportable, convert
from flagsvc.imports.posthog import convert_posthog, semver_range
from flagsvc.imports.unleash import convert_unleash, unleash_context
from flagsvc.store import Conflict, LimitExceeded, Store

ORG = "organization"


def unleash_toggle(name="billing", constraints=(), rollout="30", stickiness=ORG, variants=(),
                   **extra):
    strategy = {"name": "flexibleRollout", "constraints": list(constraints),
                "parameters": {"rollout": rollout, "stickiness": stickiness, "groupId": name}}
    if variants:
        strategy["variants"] = list(variants)
    return {"name": name, "enabled": True, "strategies": [strategy], **extra}


def posthog_flag(key="billing", properties=(), rollout=100, index=0, flag_id=1, **filters):
    return {"id": flag_id, "key": key, "name": "", "active": True, "deleted": False,
            "filters": {"aggregation_group_type_index": index,
                        "groups": [{"properties": list(properties),
                                    "rollout_percentage": rollout}], **filters}}


# ------------------------------------------------------------------ Unleash


def test_unleash_reference_flag_keeps_buckets_and_variants_of_yggdrasil():
    """The B2B case: 30 % of organizations with two constraints and strategy variants;
    every one of 2,000 organizations gets yggdrasil's answer."""
    ygg = yggdrasil_engine.engine
    toggle = unleash_toggle(constraints=[
        {"contextName": "plan", "operator": "IN", "values": ["enterprise", "pro"]},
        {"contextName": "employees", "operator": "NUM_GT", "value": "50"}],
        variants=[{"name": "control", "weight": 500, "stickiness": ORG},
                  {"name": "test", "weight": 500, "stickiness": ORG}])
    state = {"version": 2, "features": [toggle]}
    result = convert_unleash(state)
    assert not result.skipped
    flag = result.flags[0]
    assert flag["bucket_by"] == ORG and flag["hash_namespace"] is None
    assert result.fields["billing"] == {"employees": f"group:{ORG}", "organization":
                                        f"group_key:{ORG}", "plan": f"group:{ORG}"}
    engine = ygg.UnleashEngine()
    engine.take_state(json.dumps(state))
    compiled = compile_flags(result.flags)
    enabled = 0
    for i in range(2000):
        props = {ORG: f"org-{i}", "plan": ("free", "pro", "enterprise")[i % 3],
                 "employees": str(i % 200)}
        ours = evaluate(compiled, "billing", unleash_context({"properties": props},
                                                            result.fields["billing"]))
        theirs = engine.get_variant("billing", {"properties": props}).variant
        assert ours.enabled == theirs.feature_enabled, props
        assert (ours.variant if ours.enabled else "disabled") == theirs.name, props
        enabled += ours.enabled
    assert 200 < enabled < 600  # about 30 % of the 2/3 x 3/4 that match


# Unleash constraints as generated cases: operator, values, and context values to try.
_FIELD_VALUES = st.one_of(st.none(), st.sampled_from(
    ["pro", "Pro", "enterprise", "free", "12", "12.0", "012", "7", "12.5", "abc", "1.2.3",
     "2.0.0", "1.10.0", "v1.2.3", "1.2", "10.0.0.1", "192.168.1.7", "me@acme.com", "",
     "2024-06-01T00:00:00Z", "2024-06-01", "2023-01-01T10:00:00+02:00", "2024-06-01 12:00:00Z"]))
_CONSTRAINTS = st.one_of(
    st.builds(lambda op, vals, inv, ci: {"contextName": "plan", "operator": op, "values": vals,
                                         "inverted": inv, "caseInsensitive": ci},
              st.sampled_from(["IN", "NOT_IN", "STR_CONTAINS", "STR_STARTS_WITH",
                               "STR_ENDS_WITH"]),
              st.lists(st.sampled_from(["pro", "PRO", "enter", "e", "12", "012", "acme.com"]),
                       min_size=1, max_size=3),
              st.booleans(), st.booleans()),
    st.builds(lambda op, v, inv: {"contextName": "plan", "operator": op, "value": v,
                                  "inverted": inv},
              st.sampled_from(["NUM_EQ", "NUM_GT", "NUM_GTE", "NUM_LT", "NUM_LTE"]),
              st.sampled_from(["7", "12", "12.5", "0"]), st.booleans()),
    st.builds(lambda op, v, inv: {"contextName": "plan", "operator": op, "value": v,
                                  "inverted": inv},
              st.sampled_from(["SEMVER_EQ", "SEMVER_GT", "SEMVER_LT", "SEMVER_GTE",
                               "SEMVER_LTE"]),
              st.sampled_from(["1.2.3", "2.0.0", "1.10.0"]), st.booleans()),
    st.builds(lambda inv: {"contextName": "plan", "operator": "IN_CIDR",
                           "values": ["192.168.0.0/16"], "inverted": inv}, st.booleans()),
    st.builds(lambda op, v, inv: {"contextName": "plan", "operator": op, "value": v,
                                  "inverted": inv},
              st.sampled_from(["DATE_AFTER", "DATE_BEFORE"]),
              st.sampled_from(["2024-01-01T00:00:00Z", "2024-06-01T00:00:00.000Z",
                               "2024-03-01T00:00:00+01:00"]), st.booleans()),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(constraints=st.lists(_CONSTRAINTS, min_size=1, max_size=3),
       rollout=st.sampled_from(["0", "25", "50", "100"]),
       stickiness=st.sampled_from(["default", ORG]),
       value=_FIELD_VALUES, org=st.integers(0, 10_000), user=st.integers(0, 10_000))
def test_unleash_import_answers_as_yggdrasil(constraints, rollout, stickiness, value, org,
                                             user):
    """Random constraints (absent, inverted, NOT_IN, numbers, versions, networks) and
    rollouts: the imported flag answers each context as Unleash's own engine does."""
    ygg = yggdrasil_engine.engine
    toggle = unleash_toggle(constraints=constraints, rollout=rollout, stickiness=stickiness)
    state = {"version": 2, "features": [toggle]}
    result = convert_unleash(state)
    assert not result.skipped, result.skipped
    engine = ygg.UnleashEngine()
    engine.take_state(json.dumps(state))
    props = {ORG: f"org-{org}"}
    if value is not None:
        props["plan"] = value
    unleash_ctx = {"userId": f"user-{user}", "properties": props}
    placed = result.fields.get("billing", {})
    ours = evaluate(compile_flags(result.flags), "billing", unleash_context(unleash_ctx, placed))
    theirs = engine.is_enabled("billing", unleash_ctx).is_enabled
    assert ours.enabled is theirs, json.dumps([toggle, result.flags[0], unleash_ctx])


@pytest.mark.parametrize(("toggle", "reason"), [
    (unleash_toggle(stickiness="sessionId"), "no sessions"),
    (unleash_toggle(stickiness="random"), "buckets on the distinct id"),
    (unleash_toggle(constraints=[{"contextName": "currentTime", "operator": "DATE_AFTER",
                                  "value": "2024-01-01T00:00:00Z"}]), "currentTime"),
    ({"name": "x", "strategies": [{"name": "applicationHostname"}]}, "no flagsvc equivalent"),
    ({"name": "has space", "strategies": []}, "no flagsvc key"),
    (unleash_toggle(constraints=[{"contextName": "plan", "operator": "NOT_IN",
                                  "values": [str(i)]} for i in range(7)]), "more than 64"),
    ({"name": "two", "strategies": [
        {"name": "flexibleRollout", "parameters": {"rollout": "30", "groupId": "a"}},
        {"name": "flexibleRollout", "parameters": {"rollout": "40", "groupId": "b"}}]},
     "different groupIds"),
    (unleash_toggle(variants=[{"name": "a", "weight": 1}, {"name": "b", "weight": 1}],
                    stickiness=ORG, rollout="30") | {"strategies": [
        {"name": "flexibleRollout", "parameters": {"rollout": "30", "stickiness": ORG,
                                                   "groupId": "billing"}},
        {"name": "default", "variants": [{"name": "c", "weight": 1}]}]},
     "different variants"),
])
def test_unleash_refuses_what_flagsvc_cannot_evaluate_alike(toggle, reason):
    result = convert_unleash({"features": [toggle]})
    assert not result.flags
    assert reason in result.skipped[toggle["name"]]


def test_unleash_environment_is_decided_at_import():
    toggle = {"name": "beta", "enabled": True, "strategies": [
        {"name": "default", "constraints": [
            {"contextName": "environment", "operator": "IN", "values": ["production"]}]},
        {"name": "userWithId", "parameters": {"userIds": "u1, u2"}, "constraints": [
            {"contextName": "environment", "operator": "IN", "values": ["dev"]}]}]}
    prod = convert_unleash({"features": [toggle]}, environment="production")
    assert prod.flags[0]["conditions"] == [
        {"rollout_percentage": 100, "bucket_by": "$person", "properties": [], "variant": None}]
    assert any("never matches" in w for w in prod.warnings["beta"])
    dev = convert_unleash({"features": [toggle]}, environment="dev")
    assert [c["properties"] for c in dev.flags[0]["conditions"]] == [
        [{"type": "person", "key": "distinct_id", "operator": "exact", "value": ["u1", "u2"]}]]
    # without --environment it is a property the app sends
    neither = convert_unleash({"features": [toggle]})
    assert neither.fields["beta"]["environment"] == "person"


def test_unleash_admin_export_takes_one_environment():
    export = {
        "features": [{"name": "beta", "description": "d"}],
        "featureStrategies": [
            {"featureName": "beta", "environment": "production", "name": "flexibleRollout",
             "parameters": {"rollout": "20", "stickiness": ORG, "groupId": "beta"},
             "constraints": [], "segments": [7]},
            {"featureName": "beta", "environment": "development", "name": "default",
             "parameters": {}, "constraints": []}],
        "featureEnvironments": [
            {"name": "beta", "environment": "production", "enabled": True},
            {"name": "beta", "environment": "development", "enabled": False}],
        "segments": [{"id": 7, "constraints": [
            {"contextName": "plan", "operator": "IN", "values": ["pro"]}]}],
    }
    with pytest.raises(Unimportable, match="name one"):
        convert_unleash(export)
    prod = convert_unleash(export, environment="production").flags[0]
    assert prod["active"] is True and prod["bucket_by"] == ORG
    assert prod["conditions"] == [{"rollout_percentage": 20, "bucket_by": ORG, "variant": None,
                                   "properties": [{"type": "group", "group_type": ORG,
                                                   "key": "plan", "operator": "exact",
                                                   "value": ["pro"]}]}]
    dev = convert_unleash(export, environment="development").flags[0]
    assert dev["active"] is False


def test_unleash_overrides_apply_only_where_a_strategy_matches():
    toggle = {"name": "ovr", "enabled": True,
              "strategies": [{"name": "userWithId", "parameters": {"userIds": "a,b"}}],
              "variants": [{"name": "red", "weight": 500, "stickiness": "default",
                            "overrides": [{"contextName": "userId", "values": ["b", "z"]}]},
                           {"name": "blue", "weight": 500, "stickiness": "default"}]}
    result = convert_unleash({"features": [toggle]})
    flags = compile_flags(result.flags)
    assert evaluate(flags, "ovr", Context(distinct_id="b")).variant == "red"
    assert not evaluate(flags, "ovr", Context(distinct_id="z")).enabled  # no strategy matches
    assert evaluate(flags, "ovr", Context(distinct_id="a")).enabled


def test_unleash_field_placement_can_be_given():
    toggle = unleash_toggle(stickiness="default", rollout="100", constraints=[
        {"contextName": "plan", "operator": "IN", "values": ["pro"]}])
    result = convert_unleash({"features": [toggle]}, fields={"plan": "group:account"})
    f = result.flags[0]["conditions"][0]["properties"][0]
    assert f["type"] == "group" and f["group_type"] == "account"
    with pytest.raises(Unimportable, match="field plan"):
        convert_unleash({"features": [toggle]}, fields={"plan": "grup:account"})


# ------------------------------------------------------------------ PostHog


def test_posthog_reference_flag():
    flag = posthog_flag(properties=[
        {"key": "plan", "type": "group", "group_type_index": 0, "operator": "exact",
         "value": ["enterprise", "pro"]},
        {"key": "employees", "type": "group", "group_type_index": 0, "operator": "gt",
         "value": 50}], rollout=30,
        multivariate={"variants": [{"key": "control", "rollout_percentage": 50},
                                   {"key": "test", "rollout_percentage": 50}]},
        payloads={"test": '{"color": "green"}'})
    result = convert_posthog({"flags": [flag], "group_type_mapping": {"0": ORG}})
    out = result.flags[0]
    assert out["bucket_by"] == ORG
    assert out["conditions"][0]["properties"][0] == {
        "type": "group", "group_type": ORG, "key": "plan", "operator": "exact",
        "value": ["enterprise", "pro"], "case_insensitive": True}
    assert out["variants"] == [{"key": "control", "weight": 50}, {"key": "test", "weight": 50}]
    assert out["payloads"] == {"test": {"color": "green"}}
    assert any("SHA-1" in w for w in result.warnings["billing"])


def test_posthog_needs_the_group_type_names():
    flag = posthog_flag()
    assert "group type index 0" in convert_posthog({"flags": [flag]}).skipped["billing"]
    assert convert_posthog([flag], group_types={0: "company"}).flags[0]["bucket_by"] == "company"


def test_posthog_dependencies_cohorts_and_refusals():
    parent = posthog_flag("parent", index=None, flag_id=7)
    child = posthog_flag("child", index=None, flag_id=8, properties=[
        {"key": "7", "type": "flag", "value": True, "operator": "flag_evaluates_to"},
        {"key": "3", "type": "cohort", "value": 3}])
    cohorts = {"3": {"type": "OR", "values": [
        {"type": "AND", "values": [{"key": "email", "type": "person", "operator": "icontains",
                                    "value": "@acme"}]},
        {"type": "AND", "values": [{"key": "beta", "type": "person", "operator": "exact",
                                    "value": ["true"]}]}]}}
    behavioural = posthog_flag("seen", index=None, flag_id=9, properties=[
        {"key": "4", "type": "cohort", "value": 4}])
    dated = posthog_flag("dated", index=None, flag_id=10, properties=[
        {"key": "signup", "type": "person", "operator": "is_date_exact", "value": "2024-01-01"}])
    early = posthog_flag("early", index=None, super_groups=[{"properties": []}])
    result = convert_posthog({"flags": [parent, child, behavioural, dated, early],
                              "cohorts": cohorts})
    by_key = {f["key"]: f for f in result.flags}
    assert set(by_key) == {"parent", "child"}
    conds = by_key["child"]["conditions"]
    assert len(conds) == 2 and all(c["properties"][0]["key"] == "parent" for c in conds)
    flags = compile_flags(result.flags)
    assert evaluate(flags, "child", Context("u", person_properties={"email": "x@ACME.io"})).enabled
    assert evaluate(flags, "child", Context("u", person_properties={"beta": "TRUE"})).enabled
    assert not evaluate(flags, "child", Context("u", person_properties={"beta": "no"})).enabled
    assert "only a cohort given as properties" in result.skipped["seen"]
    assert "is_date_exact" in result.skipped["dated"]
    assert "early-access" in result.skipped["early"]


@pytest.mark.parametrize(("op", "value", "lo", "hi"), [
    ("semver_tilde", "1.2.3", "1.2.3", "1.3.0"),
    ("semver_tilde", "1", "1.0.0", "2.0.0"),
    ("semver_caret", "1.2.3", "1.2.3", "2.0.0"),
    ("semver_caret", "0.2.3", "0.2.3", "0.3.0"),
    ("semver_caret", "0.0.3", "0.0.3", "0.0.4"),
    ("semver_wildcard", "1.2.*", "1.2.0", "1.3.0"),
    ("semver_wildcard", "1.*", "1.0.0", "2.0.0"),
])
def test_posthog_semver_ranges(op, value, lo, hi):
    assert semver_range(op, value) == (lo, hi)


_PH_VALUES = st.sampled_from(["pro", "Pro", "PRO", "enterprise", "free", "12", "12.0", "012",
                              "7", "abc", "1.2.3", "2.0.0", "1.10.0", "me@acme.com", "true",
                              "false"])
_PH_FILTERS = st.one_of(
    st.builds(lambda op, v: {"key": "plan", "type": "person", "operator": op, "value": v},
              st.sampled_from(["exact", "is_not"]),
              st.one_of(_PH_VALUES, st.lists(_PH_VALUES, min_size=1, max_size=3))),
    st.builds(lambda op, v: {"key": "plan", "type": "person", "operator": op, "value": v},
              st.sampled_from(["icontains", "not_icontains", "starts_with", "not_starts_with",
                               "ends_with", "not_ends_with", "regex", "not_regex"]),
              st.sampled_from(["pr", "PRO", "e", "acme", "^p.o$", "1"])),
    st.builds(lambda op, v: {"key": "plan", "type": "person", "operator": op, "value": v},
              st.sampled_from(["gt", "gte", "lt", "lte"]), st.sampled_from([7, 12, "10"])),
    st.builds(lambda op, v: {"key": "plan", "type": "person", "operator": op, "value": v},
              st.sampled_from(["semver_eq", "semver_neq", "semver_gt", "semver_gte",
                               "semver_lt", "semver_lte", "semver_tilde", "semver_caret"]),
              st.sampled_from(["1.2.3", "2.0.0", "1.10.0", "0.2.0"])),
    st.builds(lambda v: {"key": "plan", "type": "person", "operator": "semver_wildcard",
                         "value": v}, st.sampled_from(["1.*", "1.2.*", "2.*"])),
    st.just({"key": "plan", "type": "person", "operator": "is_set", "value": "is_set"}),
)


@settings(max_examples=400, deadline=None)
@given(filters=st.lists(_PH_FILTERS, min_size=1, max_size=2), value=_PH_VALUES)
def test_posthog_import_matches_as_posthog_local_evaluation(filters, value):
    """Random filters over one present property: the imported flag matches exactly when
    PostHog's own local evaluation does (where it decides locally at all)."""
    from posthog.feature_flags import InconclusiveMatchError, match_feature_flag_properties

    flag = posthog_flag(properties=filters, index=None)
    result = convert_posthog([flag])
    if result.skipped:
        pytest.fail(str(result.skipped))
    props = {"plan": value}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # version 2: "true" / "false" compare as text, as PostHog's server does now
            theirs = match_feature_flag_properties(flag, "user-1", props,
                                                   bucketing_value="user-1",
                                                   property_matching_version=2)
    except InconclusiveMatchError:
        return  # PostHog would ask its server
    ours = evaluate(compile_flags(result.flags), "billing",
                    Context("user-1", person_properties=props))
    assert ours.enabled is bool(theirs), (filters, props)


# ------------------------------------------------------------------ the command



def _write(tmp_path, name, data):
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return str(path)


def test_cli_imports_unleash_and_decide_answers_alike(cli, db_path, tmp_path):
    store = Store(db_path)
    pid = store.create_project("acme")["id"]
    toggle = unleash_toggle(constraints=[
        {"contextName": "plan", "operator": "IN", "values": ["enterprise"]}], rollout="100")
    path = _write(tmp_path, "unleash.json", {"version": 2, "features": [toggle]})
    code, out, err = cli("flags", "import", "--from", "unleash", "--dry-run",
                         "--project", str(pid), path)
    assert code == 0 and json.loads(out)["flags"][0]["key"] == "billing"
    assert "dry run: would import 1 flags (1 created, 0 updated, 0 unchanged); new group types: " \
           "organization" in err
    assert store.list_flags(pid) == []
    code, out, err = cli("flags", "import", "--from", "unleash", "--project", str(pid), path)
    assert code == 0, err
    assert "context field plan is read from a property of group type organization" in err
    assert [t["name"] for t in store.group_types(pid)] == [ORG]
    [saved] = store.list_flags(pid)
    assert saved["bucket_by"] == ORG
    assert sorted(e["action"] for e in store.audit_log(pid)) == ["created", "group_type_created"]
    again = cli("flags", "import", "--from", "unleash", "--project", str(pid), path)
    assert again[0] == 0 and "(0 created, 0 updated, 1 unchanged)" in again[1]
    assert len(store.audit_log(pid)) == 2  # nothing rewritten


def test_cli_import_is_all_or_nothing(cli, db_path, tmp_path):
    pid = Store(db_path).create_project("acme")["id"]
    good = unleash_toggle("good", rollout="100")
    bad = unleash_toggle("bad", stickiness="sessionId")
    path = _write(tmp_path, "u.json", {"features": [good, bad]})
    code, _, err = cli("flags", "import", "--from", "unleash", "--project", str(pid), path)
    assert code == 1 and "flag bad cannot be imported" in err and "nothing was imported" in err
    assert Store(db_path).list_flags(pid) == []
    code, out, err = cli("flags", "import", "--from", "unleash", "--skip-unimportable",
                         "--project", str(pid), path)
    assert code == 0 and "skipped: flag bad" in err
    assert [f["key"] for f in Store(db_path).list_flags(pid)] == ["good"]


def test_cli_import_runs_the_admin_checks(cli, db_path, tmp_path):
    """What the admin API refuses, the import refuses: here a sixth group type and an
    operator the project's hashed private key defeats."""
    store = Store(db_path)
    pid = store.create_project("acme")["id"]
    for t in ("a", "b", "c", "d", "e"):
        store.create_group_type(pid, t)
    path = _write(tmp_path, "u.json", {"features": [unleash_toggle(rollout="100")]})
    code, _, err = cli("flags", "import", "--from", "unleash", "--project", str(pid), path)
    assert code == 1 and "at most 5" in err
    pid2 = store.create_project("beta")["id"]
    store.update_project(pid2, private_properties={"email": "hash"})
    flag = posthog_flag(index=None, properties=[
        {"key": "email", "type": "person", "operator": "icontains", "value": "@acme"}])
    path = _write(tmp_path, "p.json", [flag])
    code, _, err = cli("flags", "import", "--from", "posthog", "--project", str(pid2), path)
    assert code == 1 and "email" in err and "nothing was imported" in err


def test_cli_import_posthog_with_group_type_option(cli, db_path, tmp_path):
    pid = Store(db_path).create_project("acme")["id"]
    path = _write(tmp_path, "p.json", {"results": [posthog_flag(rollout=40)]})
    code, _, err = cli("flags", "import", "--from", "posthog", "--project", str(pid), path)
    assert code == 1 and "group type index 0" in err
    code, out, err = cli("flags", "import", "--from", "posthog", "--group-type", "0=company",
                         "--project", str(pid), path)
    assert code == 0, err
    assert "SHA-1" in err and Store(db_path).list_flags(pid)[0]["bucket_by"] == "company"
    assert cli("flags", "import", "--group-type", "x", path)[0] == 1  # not for flagsvc files


def test_convert_rejects_unknown_formats():
    with pytest.raises(ValueError, match="unknown format"):
        convert("launchdarkly", {})


def test_store_import_is_one_transaction(db_path):
    """A failure at any point (a 6th group type taken meanwhile, a veto of the check) leaves
    the project exactly as it was: no flag, no group type, no audit entry."""
    store = Store(db_path)
    pid = store.create_project("acme")["id"]
    flags = [{"key": "a", "conditions": [{}]}, {"key": "b", "conditions": [{}]}]
    with pytest.raises(LimitExceeded):
        store.import_flags(pid, flags, ["t1", "t2", "t3", "t4", "t5", "t6"])

    def veto(live):
        assert {f["key"] for f in live} == {"a", "b"}  # sees the import's own writes
        raise Conflict("no")

    with pytest.raises(Conflict):
        store.import_flags(pid, flags, ["t1"], check=veto)
    assert store.list_flags(pid, include_deleted=True) == []
    assert store.group_types(pid) == [] and store.audit_log(pid) == []
    assert store.import_flags(pid, flags, ["t1"])["created"] == ["a", "b"]


# ------------------------------------------------------------------ review cases


def _answers(state, contexts):
    """(flagsvc, yggdrasil) answers per toggle and context: (enabled, variant or None)."""
    result = convert_unleash(state)
    engine = yggdrasil_engine.engine.UnleashEngine()
    engine.take_state(json.dumps(state))
    compiled = compile_flags(result.flags)
    ours, theirs = [], []
    for toggle in state["features"]:
        name = toggle["name"]
        for ctx in contexts:
            v = engine.get_variant(name, ctx).variant
            theirs.append((v.feature_enabled, None if v.name == "disabled" else v.name))
            r = evaluate(compiled, name, unleash_context(ctx, result.fields.get(name, {})))
            ours.append((r.enabled, r.variant))
    return ours, theirs


def _v(name, stickiness="default", **extra):
    return {"name": name, "weight": 500, "stickiness": stickiness, **extra}


USERS = [{"userId": f"user-{i}", "properties": {ORG: f"org-{i}"}} for i in range(8)]


@pytest.mark.parametrize(("toggle", "contexts"), [
    # text equality: "12" is not "12.0" or "012" for IN / NOT_IN / userWithId / overrides
    ({"strategies": [{"name": "default", "constraints": [
        {"contextName": "plan", "operator": "IN", "values": ["12"]}]}]},
     [{"userId": "u", "properties": {"plan": p}} for p in ("12", "12.0", "012")]),
    ({"strategies": [{"name": "default", "constraints": [
        {"contextName": "plan", "operator": "NOT_IN", "values": ["1.5", "a+b"]}]}]},
     [{"userId": "u", "properties": {"plan": p}} for p in ("1.5", "1x5", "1.50", "a+b", "aab")]),
    ({"strategies": [{"name": "userWithId", "parameters": {"userIds": "12, 13"}}]},
     [{"userId": u} for u in ("12", "12.0", "1.2e1", "13")]),
    # a regex neither engine compiles fails its strategy only
    ({"strategies": [{"name": "default", "constraints": [
        {"contextName": "c", "operator": "REGEX", "value": "(x"}]},
        {"name": "userWithId", "parameters": {"userIds": "u1"}}]},
     [{"userId": "u1", "properties": {"c": "x"}}, {"userId": "u2", "properties": {"c": "(x"}}]),
    # a missing segment, an unknown operator, a rollout Unleash does not read: off
    ({"strategies": [{"name": "default", "segments": [99]},
                     {"name": "userWithId", "parameters": {"userIds": "u1"}}]},
     [{"userId": "u1"}, {"userId": "u2"}]),
    ({"strategies": [{"name": "userWithId", "parameters": {"userIds": "u1"}, "constraints": [
        {"contextName": "x", "operator": "NOPE", "value": "1"}]}]}, [{"userId": "u1"}]),
    ({"strategies": [{"name": "flexibleRollout", "parameters": {
        "rollout": "100.0", "stickiness": "default", "groupId": "t"}}]}, USERS[:2]),
    # DATE values in the forms Unleash reads (and does not)
    ({"strategies": [{"name": "default", "constraints": [
        {"contextName": "d", "operator": "DATE_AFTER", "value": "2024-01-01T00:00:00Z"}]}]},
     [{"userId": "u", "properties": {"d": d}} for d in (
         "2025-06-01T00:00:00Z", "2025-06-01", "2025-06-01T00:00:00", "1800000000",
         "2025-06-01 00:00:00Z")]),
    ({"strategies": [{"name": "default", "constraints": [
        {"contextName": "d", "operator": "DATE_AFTER", "value": "2024-01-01"}]}]},
     [{"userId": "u", "properties": {"d": "2025-06-01T00:00:00Z"}}]),
    # a 100 % organization-sticky strategy still needs the organization, also when the
    # variants hash on the user
    ({"strategies": [{"name": "flexibleRollout", "parameters": {
        "rollout": "100", "stickiness": ORG, "groupId": "t"}}],
      "variants": [_v("a"), _v("b")]}, [*USERS, {"userId": "lone"}]),
    # an override fires without the identifier the variants hash on
    ({"strategies": [{"name": "default"}],
      "variants": [_v("red", ORG, overrides=[{"contextName": "userId", "values": ["alice"]}]),
                   _v("blue", ORG)]},
     [{"userId": "alice"}, *USERS[:3]]),
])
def test_unleash_review_cases_answer_as_yggdrasil(toggle, contexts):
    state = {"version": 2, "features": [{"name": "t", "enabled": True, **toggle}]}
    ours, theirs = _answers(state, contexts)
    assert ours == theirs


def test_unleash_dependency_on_variants_of_a_parent_without_any():
    state = {"version": 2, "features": [
        {"name": "p", "enabled": True, "strategies": [{"name": "default"}]},
        {"name": "c", "enabled": True, "strategies": [{"name": "default"}],
         "dependencies": [{"feature": "p", "variants": ["red"]}]}]}
    ours, theirs = _answers(state, [{"userId": "u"}])
    assert ours == theirs == [(True, None), (True, None)]


def test_skipped_parents_skip_their_dependants():
    parent = posthog_flag("parent", index=None, flag_id=1, properties=[
        {"key": "9", "type": "cohort", "value": 9}])
    child = posthog_flag("child", index=None, flag_id=2, properties=[
        {"key": "1", "type": "flag", "value": True}])
    grandchild = posthog_flag("grandchild", index=None, flag_id=3, properties=[
        {"key": "2", "type": "flag", "value": True}])
    other = posthog_flag("other", index=None, flag_id=4)
    result = convert("posthog", [parent, child, grandchild, other])
    assert [f["key"] for f in result.flags] == ["other"]
    assert result.skipped["child"] == "depends on parent, which cannot be imported"
    assert result.skipped["grandchild"] == "depends on child, which cannot be imported"


@pytest.mark.parametrize(("fmt", "data"), [
    ("unleash", {"features": [{"name": "x", "strategies": ["default"]}]}),
    ("unleash", {"features": [{"name": "x", "strategies": "default"}]}),
    ("unleash", {"features": [{"name": "x", "strategies": [
        {"name": "default", "parameters": ["a"]}]}]}),
    ("unleash", {"features": [{"name": "x", "strategies": [
        {"name": "default", "constraints": ["a"]}]}]}),
    ("unleash", {"features": [{"name": "x", "strategies": [{"name": "default"}],
                               "variants": ["a"]}]}),
    ("unleash", {"features": [{"name": "x", "strategies": [{"name": "default"}],
                               "variants": [{"weight": 1, "overrides": [
                                   {"contextName": "userId", "values": ["u"]}]}]}]}),
    ("unleash", {"features": [{"name": "x"}], "featureStrategies": ["s"]}),
    ("unleash", {"features": [{"name": "x", "strategies": [], "enabled": "false"}]}),
    ("posthog", {"flags": [{"key": "x", "filters": "f"}]}),
    ("posthog", {"flags": [{"key": "x", "filters": {"groups": [{"properties": {"a": 1}}]}}]}),
    ("posthog", {"flags": [{"key": "x", "filters": {"multivariate": []}}]}),
    ("posthog", {"flags": [{"key": "x", "filters": {}}], "group_type_mapping": [1]}),
    ("posthog", {"flags": [{"key": "x", "filters": {"groups": [{"properties": [
        {"key": "a", "operator": ["exact"], "value": 1}]}]}}]}),
    ("flagsvc", [1, "x"]),
])
def test_malformed_exports_are_refused_clearly(client, h, fmt, data):
    """Neither a traceback nor a 500: a 4xx (or a skipped flag) that says what is off."""
    r = client.post("/api/flags/import", json={"format": fmt, "data": data}, headers=h)
    assert r.status_code == 422, r.json
    assert r.json["errors"]


@pytest.mark.parametrize(("flag", "reason"), [
    (posthog_flag(index=None, early_exit=True) | {"filters": {
        "early_exit": True, "groups": [{"properties": [], "rollout_percentage": 0},
                                       {"properties": [], "rollout_percentage": 100}]}},
     "early_exit"),
    (posthog_flag(index=None, holdout={"id": 5, "exclusion_percentage": 10}), "holdout"),
    (posthog_flag(index=None, bucketing_identifier="device_id"), "device id"),
    (posthog_flag(index=None, multivariate={"variants": [
        {"key": "a", "rollout_percentage": 50}, {"key": "b", "rollout_percentage": 30}]}),
     "add up to 100"),
])
def test_posthog_refuses_what_it_would_answer_differently(flag, reason):
    assert reason in convert_posthog([flag]).skipped["billing"]


def test_posthog_conditions_of_their_own_aggregation_and_stale_parts():
    flag = posthog_flag(index=None, multivariate={"variants": [
        {"key": "a", "rollout_percentage": 100}]}, payloads={"b": "1", "a": "NaN"})
    flag["filters"]["groups"] = [
        {"properties": [], "rollout_percentage": 0.5, "aggregation_group_type_index": 1},
        {"properties": [], "rollout_percentage": 100, "variant": "gone"}]
    result = convert_posthog([flag], group_types={1: "account"})
    out = result.flags[0]
    assert [c.get("bucket_by") for c in out["conditions"]] == ["account", None]
    assert [c["rollout_percentage"] for c in out["conditions"]] == [1, 100]
    assert out["conditions"][1]["variant"] is None
    assert out["payloads"] == {"a": "NaN"}  # text: NaN is no JSON
    warned = " ".join(result.warnings["billing"])
    assert "0.5 % taken as 1 %" in warned and "'gone' left out" in warned
    assert "payload of 'b' left out" in warned


# ------------------------------------------------------------------ second review


REAL_EXPORT = {  # the shape of Unleash's admin export (features-batch/export), one environment
    "features": [{"name": "beta", "description": "the #1 feature", "type": "release"},
                 {"name": "second", "description": "", "type": "release"}],
    "featureStrategies": [
        {"name": "flexibleRollout", "featureName": "beta", "sortOrder": 0, "segments": [],
         "parameters": {"rollout": "20", "stickiness": ORG, "groupId": "beta"},
         "constraints": [{"contextName": "plan", "operator": "IN", "values": ["pro"]}],
         "disabled": False, "variants": []},
        {"name": "default", "featureName": "second", "parameters": {}, "constraints": [],
         "sortOrder": 0, "segments": [], "disabled": False, "variants": []}],
    "featureEnvironments": [
        {"enabled": True, "featureName": "beta", "environment": "production", "variants": []},
        {"enabled": True, "featureName": "second", "environment": "production",
         "variants": []}],
    "segments": [{"id": 1, "name": "my-segment"}],
    "dependencies": [{"feature": "beta", "dependencies": [{"feature": "second",
                                                           "enabled": True}]}],
}


def test_unleash_admin_export_as_unleash_writes_it():
    result = convert_unleash(REAL_EXPORT)  # its only environment
    beta = {f["key"]: f for f in result.flags}["beta"]
    assert [c["rollout_percentage"] for c in beta["conditions"]] == [20]
    props = beta["conditions"][0]["properties"]
    assert props[0] == {"type": "flag", "key": "second", "operator": "exact", "value": True}
    assert props[1]["key"] == "plan"
    with pytest.raises(Unimportable, match="not 'staging'"):
        convert_unleash(REAL_EXPORT, environment="staging")
    with_segment = json.loads(json.dumps(REAL_EXPORT))
    with_segment["featureStrategies"][0]["segments"] = [1]
    assert "names segments only" in convert_unleash(with_segment).skipped["beta"]


@pytest.mark.parametrize(("toggle", "contexts"), [
    # a strategy's own variants win over a later strategy's override
    ({"strategies": [
        {"name": "default", "constraints": [
            {"contextName": "plan", "operator": "IN", "values": ["pro"]}],
         "variants": [_v("x"), _v("y")]},
        {"name": "default"}],
      "variants": [_v("x", overrides=[{"contextName": "userId", "values": ["u6"]}]), _v("y")]},
     [{"userId": f"u{i}", "properties": {"plan": p}} for i in range(8) for p in ("pro", "free")]),
    # an invalid version fails its strategy only
    ({"strategies": [
        {"name": "default", "constraints": [
            {"contextName": "appVersion", "operator": "SEMVER_GTE", "value": "v2.0.0"}]},
        {"name": "default", "constraints": [
            {"contextName": "plan", "operator": "IN", "values": ["pro"]}]}]},
     [{"userId": "u", "properties": {"plan": "pro", "appVersion": "3.0.0"}},
      {"userId": "u", "properties": {"plan": "free", "appVersion": "3.0.0"}}]),
])
def test_unleash_second_review_cases_answer_as_yggdrasil(toggle, contexts):
    state = {"version": 2, "features": [{"name": "t", "enabled": True, **toggle}]}
    ours, theirs = _answers(state, contexts)
    assert ours == theirs


def test_unleash_field_is_read_from_one_place_per_flag():
    toggle = {"name": "t", "enabled": True, "strategies": [
        {"name": "default", "constraints": [
            {"contextName": "plan", "operator": "IN", "values": ["pro"]}]},
        {"name": "flexibleRollout", "parameters": {"rollout": "100", "stickiness": ORG,
                                                   "groupId": "t"},
         "constraints": [{"contextName": "plan", "operator": "IN", "values": ["pro"]}]}]}
    result = convert_unleash({"features": [toggle]})
    places = {(f["type"], f.get("group_type")) for c in result.flags[0]["conditions"]
              for f in c["properties"] if f["key"] == "plan"}
    assert places == {("person", None)} and result.fields["t"]["plan"] == "person"
    ours, theirs = _answers({"version": 2, "features": [toggle]},
                            [{"userId": "u1", "properties": {"plan": "pro"}}])
    assert ours == theirs


def test_unleash_edge_strategies():
    empty_group = unleash_toggle(rollout="50") | {"strategies": [
        {"name": "flexibleRollout", "parameters": {"rollout": "50", "groupId": ""}}]}
    assert "empty groupId" in convert_unleash({"features": [empty_group]}).skipped["billing"]
    all_disabled = {"name": "d", "enabled": True, "strategies": [
        {"name": "userWithId", "parameters": {"userIds": "u1"}, "disabled": True}]}
    flags = compile_flags(convert_unleash({"features": [all_disabled]}).flags)
    assert evaluate(flags, "d", Context("anyone")).enabled  # Unleash serves no strategy: on


def test_skip_unimportable_skips_flags_missing_their_parent(cli, db_path, tmp_path):
    pid = Store(db_path).create_project("acme")["id"]
    state = {"features": [
        {"name": "c", "strategies": [], "dependencies": [{"feature": "notexported"}]},
        {"name": "d", "strategies": []}]}
    path = _write(tmp_path, "u.json", state)
    code, _, err = cli("flags", "import", "--from", "unleash", "--project", str(pid), path)
    assert code == 1 and "notexported" in err
    code, out, err = cli("flags", "import", "--from", "unleash", "--skip-unimportable",
                         "--project", str(pid), path)
    assert code == 0, err
    assert "skipped: flag c cannot be imported: depends on notexported, which is neither" in err
    assert [f["key"] for f in Store(db_path).list_flags(pid)] == ["d"]
    assert cli("flags", "import", "--from", "posthog", "--environment", "x", path)[0] == 1


def test_api_refuses_options_of_another_format(client, h):
    r = client.post("/api/flags/import", headers=h, json={
        "format": "posthog", "data": [], "environment": "production"})
    assert r.status_code == 422 and "environment" in r.json["errors"]


# ------------------------------------------------------------------ third review


@pytest.mark.parametrize(("version", "outcome"), [
    ("v2.0.0", "strategy"),    # Unleash: false for that strategy only
    ("abc", "toggle"),         # Unleash cannot compile it: off for everyone
    ("1.2.3.4", "toggle"),
    (" 2.0.0", "compared"),    # trimmed
])
def test_unleash_invalid_versions_fail_as_in_unleash(version, outcome):
    toggle = {"name": "t", "enabled": True, "strategies": [
        {"name": "default", "constraints": [
            {"contextName": "appVersion", "operator": "SEMVER_GTE", "value": version}]},
        {"name": "default", "constraints": [
            {"contextName": "plan", "operator": "IN", "values": ["pro"]}]}]}
    contexts = [{"userId": "u", "properties": {"plan": p, "appVersion": "3.0.0"}}
                for p in ("pro", "free")]
    ours, theirs = _answers({"version": 2, "features": [toggle]}, contexts)
    assert ours == theirs
    expected = {"strategy": [(True, None), (False, None)], "toggle": [(False, None)] * 2,
                "compared": [(True, None), (True, None)]}[outcome]
    assert ours == expected
    numeric = json.loads(json.dumps(toggle))
    numeric["strategies"][0]["constraints"][0]["value"] = "1.2"
    assert "as a number" in convert_unleash({"features": [numeric]}).skipped["t"]


def test_unleash_field_read_under_two_buckets_is_a_person_property():
    toggle = {"name": "t", "enabled": True, "strategies": [
        {"name": "flexibleRollout", "parameters": {"rollout": "100", "stickiness": ORG,
                                                   "groupId": "t"},
         "constraints": [{"contextName": "plan", "operator": "IN", "values": ["enterprise"]}]},
        {"name": "default", "constraints": [
            {"contextName": "plan", "operator": "IN", "values": ["pro"]}]}]}
    result = convert_unleash({"features": [toggle]})
    assert result.fields["t"]["plan"] == "person"
    contexts = [{"userId": "u1", "properties": {"plan": "pro"}},
                {"userId": "u2", "properties": {"plan": "enterprise", ORG: "o1"}},
                {"userId": "u3", "properties": {"plan": "enterprise"}}]
    ours, theirs = _answers({"version": 2, "features": [toggle]}, contexts)
    assert ours == theirs


def test_unleash_empty_group_id_and_warnings():
    variants = [_v("a"), _v("b")]
    empty = {"name": "e", "enabled": True, "strategies": [
        {"name": "flexibleRollout", "parameters": {"rollout": "100", "groupId": ""},
         "variants": variants}]}
    assert "empty groupId" in convert_unleash({"features": [empty]}).skipped["e"]
    user = {"name": "g", "strategies": [
        {"name": "gradualRolloutUserId", "parameters": {"percentage": "50", "groupId": ""}}]}
    assert "empty groupId" in convert_unleash({"features": [user]}).skipped["g"]
    named = unleash_toggle("n", rollout="50")  # Unleash too is off without the organization
    assert "n" not in convert_unleash({"features": [named]}).warnings
    by_variants = {"name": "v", "enabled": True, "strategies": [{"name": "default"}],
                   "variants": [_v("a", ORG), _v("b", ORG)]}
    warned = convert_unleash({"features": [by_variants]}).warnings["v"]
    assert any("without a key of organization" in w for w in warned)
    disabled_first = {"name": "d", "enabled": True, "strategies": [
        {"name": "default", "disabled": True},
        {"name": "flexibleRollout", "parameters": {"rollout": "0"}}]}
    warned = convert_unleash({"features": [disabled_first]}).warnings["d"]
    assert any(w.startswith("strategy 2 (flexibleRollout) never matches") for w in warned)


def test_posthog_dependency_by_key_as_local_evaluation_writes_it():
    parent = posthog_flag("par", index=None, flag_id=1)
    child = posthog_flag("chi", index=None, flag_id=2, properties=[
        {"key": "par", "type": "flag", "value": True, "operator": "flag_evaluates_to",
         "dependency_chain": ["par"]}])
    result = convert_posthog({"flags": [parent, child]})
    assert not result.skipped
    dep = result.flags[1]["conditions"][0]["properties"][0]
    assert dep == {"type": "flag", "key": "par", "operator": "exact", "value": True}


def test_posthog_group_type_warning_follows_the_condition():
    flag = posthog_flag(index=0)
    flag["filters"]["groups"] = [{
        "aggregation_group_type_index": 1, "rollout_percentage": 100, "properties": [
            {"key": "tier", "type": "group", "group_type_index": 1, "operator": "exact",
             "value": "gold"}]}]
    result = convert_posthog([flag], group_types={0: ORG, 1: "workspace"})
    assert not any("PostHog's SDKs read" in w for w in result.warnings.get("billing", []))
    flag["filters"]["groups"][0]["properties"][0]["group_type_index"] = 0
    result = convert_posthog([flag], group_types={0: ORG, 1: "workspace"})
    assert any("PostHog's SDKs read workspace" in w for w in result.warnings["billing"])


@pytest.mark.parametrize("skip", [False, True])
def test_flagsvc_files_with_odd_keys_are_422s(client, h, skip):
    data = {"flags": [{"key": ["a"]}, {"key": {"a": 1}, "conditions": [
        {"properties": [{"type": "flag", "key": "x"}]}]}, {"conditions": [
        {"properties": [{"type": "flag", "key": "x"}]}]}]}
    r = client.post("/api/flags/import", headers=h,
                    json={"format": "flagsvc", "data": data, "skip_unimportable": skip})
    assert r.status_code == 422 and r.json["errors"]


# ------------------------------------------------------------------ fourth review


@pytest.mark.parametrize(("constraint", "contexts"), [
    ({"contextName": "v", "operator": "REGEX", "value": "(x", "inverted": True},
     [{"userId": "u", "properties": {"v": "x"}}, {"userId": "u"}]),
    ({"contextName": "v", "operator": "SEMVER_EQ", "value": " v1.2.3"},
     [{"userId": "u", "properties": {"x": "1", "v": "1.2.3"}}]),
    ({"contextName": "v", "operator": "SEMVER_EQ", "value": "\n1.2.3"},
     [{"userId": "u", "properties": {"x": "1", "v": "1.2.3"}}]),
    ({"contextName": "v", "operator": "SEMVER_EQ", "value": "\t1.2.3 "},
     [{"userId": "u", "properties": {"x": "1", "v": "1.2.3"}}]),
])
def test_unleash_fourth_review_constraints(constraint, contexts):
    toggle = {"name": "t", "enabled": True, "strategies": [
        {"name": "default", "constraints": [constraint]},
        {"name": "default", "constraints": [
            {"contextName": "x", "operator": "IN", "values": ["1"]}]}]}
    ours, theirs = _answers({"version": 2, "features": [toggle]}, contexts)
    assert ours == theirs


def test_unleash_regex_only_re2_refuses_is_refused():
    toggle = unleash_toggle(constraints=[
        {"contextName": "v", "operator": "REGEX", "value": "^\\p{Alphabetic}+$"}])
    assert "regex" in convert_unleash({"features": [toggle]}).skipped["billing"]


@pytest.mark.parametrize("via", ["segment", "override"])
def test_unleash_shared_fields_count_segments_and_overrides(via):
    first = {"name": "flexibleRollout", "parameters": {"rollout": "100", "stickiness": ORG,
                                                       "groupId": "t"},
             "constraints": [{"contextName": "plan", "operator": "IN",
                              "values": ["enterprise"]}]}
    toggle = {"name": "t", "enabled": True, "strategies": [first]}
    state = {"version": 2, "features": [toggle]}
    if via == "segment":
        toggle["strategies"].append({"name": "default", "segments": [1]})
        state["segments"] = [{"id": 1, "constraints": [
            {"contextName": "plan", "operator": "IN", "values": ["pro"]}]}]
    else:
        toggle["strategies"].append({"name": "default"})
        toggle["variants"] = [{"name": "a", "weight": 1000, "stickiness": "default"},
                              {"name": "b", "weight": 0, "stickiness": "default",
                               "overrides": [{"contextName": "plan", "values": ["pro"]}]}]
    ours, theirs = _answers(state, [{"userId": "u1", "properties": {"plan": "pro"}},
                                    {"userId": "u2", "properties": {"plan": "enterprise",
                                                                    ORG: "o"}}])
    assert ours == theirs


def test_posthog_file_shapes_are_checked_not_dropped():
    with pytest.raises(Unimportable, match="flags must be a list of objects"):
        convert_posthog({"flags": [posthog_flag(index=None), 1]})
    off = posthog_flag(index=None) | {"active": "false"}
    assert "active must be true or false" in convert_posthog([off]).skipped["billing"]


_PH_COHORT_FILTERS = st.builds(
    lambda key, op, v, neg: {"key": key, "type": "person", "operator": op, "value": v,
                             **({"negation": True} if neg else {})},
    st.sampled_from(["plan", "email"]), st.sampled_from(["exact", "icontains", "is_not"]),
    st.sampled_from(["pro", "acme", "free"]), st.booleans())


@settings(max_examples=300, deadline=None)
@given(inner=st.lists(_PH_COHORT_FILTERS, min_size=1, max_size=3),
       outer=st.lists(_PH_COHORT_FILTERS, max_size=2),
       inner_type=st.sampled_from(["AND", "OR"]), outer_type=st.sampled_from(["AND", "OR"]),
       nested_not=st.booleans(), top_not=st.booleans(),
       plan=st.sampled_from(["pro", "free", "PRO", "x"]),
       email=st.sampled_from(["me@acme.com", "you@free.fr", "x"]))
def test_posthog_cohorts_inlined_match_as_posthog(inner, outer, inner_type, outer_type,
                                                   nested_not, top_not, plan, email):
    """Cohorts given as properties, nested in each other and tested with in / not_in, match
    exactly when PostHog's local evaluation says they do."""
    from posthog.feature_flags import InconclusiveMatchError, match_feature_flag_properties

    cohorts = {
        "1": {"type": inner_type, "values": [{"type": "AND", "values": inner}]},
        "2": {"type": outer_type, "values": [
            *outer, {"key": "id", "type": "cohort", "value": 1,
                     **({"operator": "not_in"} if nested_not else {})}]},
    }
    flag = posthog_flag(index=None, properties=[
        {"key": "id", "type": "cohort", "value": 2,
         **({"operator": "not_in"} if top_not else {})}])
    result = convert_posthog({"flags": [flag], "cohorts": cohorts})
    assert not result.skipped, result.skipped
    props = {"plan": plan, "email": email}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            theirs = match_feature_flag_properties(
                flag, "user-1", props, cohort_properties=cohorts, bucketing_value="user-1",
                property_matching_version=2)
    except InconclusiveMatchError:
        return
    ours = evaluate(compile_flags(result.flags), "billing",
                    Context("user-1", person_properties=props))
    assert ours.enabled is bool(theirs), (cohorts, top_not, props)
