"""Unleash client-specification cases run through a small Unleash -> flagsvc mapper.

SPEC §4 makes the hash Unleash-compatible so flags migrated from Unleash keep every
identifier in its bucket and variant. The mapper below turns an Unleash toggle into a flagsvc
flag definition (stickiness field -> bucket_by group type whose key is the stickiness value,
strategy groupId -> hash_namespace) and the Unleash context into a flagsvc Context; the
expected results are the specification's own. Cases that need something flagsvc does not
model (random stickiness, strategies without an identifier, constraints on context fields
we do not map) are skipped with a reason.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from flagsvc.engine import Context, compile_flags, evaluate, validate_flag

# ../shared beside the project root, as in every checkout (CI clones main next to it).
SPEC_DIR = (Path(__file__).resolve().parents[2] / "shared" / "conformance"
            / "unleash-client-specification" / "specifications")
TOGGLE_FILES = ["03-gradual-rollout-user-id-strategy.json", "10-flexible-rollout-strategy.json",
                "12-custom-stickiness.json"]
VARIANT_FILES = ["08-variants.json", "12-custom-stickiness.json", "16-strategy-variants.json"]


class Unmappable(Exception):
    """The case needs something flagsvc does not model."""


def _bucket_type(stickiness: str, ctx: dict[str, Any]) -> str:
    """The flagsvc bucket_by for an Unleash stickiness, given the context of the case."""
    if stickiness == "default":
        # Unleash: userId, else sessionId, else random -- only the deterministic ones map.
        if ctx.get("userId"):
            return "$person"
        if ctx.get("sessionId"):
            return "sessionId"
        raise Unmappable("default stickiness without userId/sessionId falls back to random")
    if stickiness == "userId":
        return "$person"
    return stickiness  # sessionId or a custom field: a group type of that name


def _variants(raw: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    variants = [{"key": v["name"], "weight": v["weight"]} for v in raw]
    payloads = {v["name"]: v["payload"] for v in raw if "payload" in v}
    return variants, payloads


def map_toggle(toggle: dict[str, Any], ctx: dict[str, Any]) -> dict[str, Any]:
    """An Unleash toggle as a flagsvc flag definition, for the given Unleash context."""
    strategies = toggle.get("strategies", [])
    flag: dict[str, Any] = {"key": toggle["name"], "active": toggle.get("enabled", True),
                            "bucket_by": "$person"}
    variants, payloads = _variants(toggle.get("variants") or [])
    conditions: list[dict[str, Any]] = []
    if not strategies:
        # No strategies: on for everyone; the (feature) variants hash on the stickiness.
        if not ctx.get("userId"):
            raise Unmappable("toggle without strategies needs no identifier in Unleash")
        conditions.append({})
    for s in strategies:
        params = s.get("parameters", {})
        if s.get("constraints"):
            raise Unmappable("strategy constraints on Unleash context fields are not mapped")
        if s["name"] == "default":
            if not ctx.get("userId"):
                raise Unmappable("default strategy needs no identifier; flagsvc conditions do")
            conditions.append({"bucket_by": "$person"})
        elif s["name"] == "gradualRolloutUserId":
            flag["hash_namespace"] = params["groupId"]
            conditions.append({"bucket_by": "$person",
                               "rollout_percentage": int(params["percentage"])})
        elif s["name"] == "flexibleRollout":
            flag["hash_namespace"] = params["groupId"]
            bucket_by = _bucket_type(params.get("stickiness", "default"), {
                **ctx, **ctx.get("properties", {})})
            flag["bucket_by"] = bucket_by
            conditions.append({"bucket_by": bucket_by,
                               "rollout_percentage": int(params["rollout"])})
            if s.get("variants"):
                # Strategy variants replace feature variants and hash on the strategy groupId.
                variants, payloads = _variants(s["variants"])
        else:
            raise Unmappable(f"strategy {s['name']!r} is not modelled")
    if variants:
        for v in toggle.get("variants") or []:
            if _bucket_type(v.get("stickiness", "default"), {**ctx, **ctx.get("properties", {})}) \
                    != flag["bucket_by"]:
                raise Unmappable("variant stickiness differs from the strategy's")
        if not any(s.get("variants") for s in strategies) and flag.get("hash_namespace") \
                and flag["hash_namespace"] != toggle["name"]:
            # Feature variants hash on the toggle name, not the strategy groupId: only usable
            # when the rollout's outcome does not depend on its hash (0 % or 100 %).
            if any(c.get("rollout_percentage", 100) not in (0, 100) for c in conditions):
                raise Unmappable("feature variants and rollout hash on different namespaces")
            flag["hash_namespace"] = toggle["name"]
        # Unleash variant overrides (userId only) become leading conditions with a variant.
        overrides = []
        for v in toggle.get("variants") or []:
            for o in v.get("overrides", []):
                if o["contextName"] != "userId":
                    raise Unmappable("override on a context field other than userId")
                overrides.append({"properties": [{"type": "person", "key": "distinct_id",
                                                  "operator": "exact", "value": o["values"]}],
                                  "bucket_by": flag["bucket_by"], "variant": v["name"]})
        conditions = overrides + conditions
        flag["variants"] = variants
        flag["payloads"] = payloads
    flag["conditions"] = conditions
    return flag


def map_context(ctx: dict[str, Any]) -> Context:
    groups = {}
    if ctx.get("sessionId"):
        groups["sessionId"] = ctx["sessionId"]
    for name, value in ctx.get("properties", {}).items():
        groups[name] = value
    return Context(distinct_id=ctx.get("userId"), groups=groups)


def _cases(files: list[str], section: str) -> list[Any]:
    out = []
    for name in files:
        doc = json.loads((SPEC_DIR / name).read_text())
        toggles = {t["name"]: t for t in doc["state"]["features"]}
        for case in doc.get(section, []):
            out.append(pytest.param(toggles.get(case["toggleName"]), case,
                                    id=f"{name[:2]}:{case['description']}"))
    return out


TOGGLE_CASES = _cases(TOGGLE_FILES, "tests")
VARIANT_CASES = _cases(VARIANT_FILES, "variantTests")


def _run(toggle: dict[str, Any] | None, case: dict[str, Any]):
    if toggle is None:
        return None
    try:
        definition = map_toggle(toggle, case["context"])
    except Unmappable as e:
        pytest.skip(str(e))
    assert validate_flag(definition) == []
    flags = compile_flags([definition])
    return evaluate(flags, definition["key"], map_context(case["context"]))


@pytest.mark.parametrize(("toggle", "case"), TOGGLE_CASES)
def test_unleash_toggle_case(toggle, case):
    result = _run(toggle, case)
    enabled = result is not None and result.enabled
    assert enabled is case["expectedResult"], result


@pytest.mark.parametrize(("toggle", "case"), VARIANT_CASES)
def test_unleash_variant_case(toggle, case):
    result = _run(toggle, case)
    expected = case["expectedResult"]
    if result is None:  # missing toggle
        assert expected["name"] == "disabled" and not expected["feature_enabled"]
    else:
        assert result.enabled is expected["feature_enabled"], result
        if expected["name"] == "disabled":
            assert result.variant is None
        else:
            assert result.variant == expected["name"], result
            assert result.payload == expected["payload"]


def _mappable(params: list[Any]) -> int:
    count = 0
    for p in params:
        toggle, case = p.values
        try:
            if toggle is not None:
                map_toggle(toggle, case["context"])
        except Unmappable:
            continue
        count += 1
    return count


def test_enough_unleash_cases_are_mapped():
    """Guards against the mapper quietly skipping most of the specification."""
    assert len(TOGGLE_CASES) == 21 and len(VARIANT_CASES) == 32
    assert _mappable(TOGGLE_CASES) >= 19
    assert _mappable(VARIANT_CASES) >= 27
