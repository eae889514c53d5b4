"""Unleash's client specification, run through the product's Unleash importer and engine.

SPEC §4 makes the hash Unleash-compatible so flags migrated from Unleash keep every
identifier in its bucket and variant. Every specification file with a toggle state is
converted by `flagsvc.imports.unleash` (what `flagsvc flags import --from unleash` runs); each
case's Unleash context becomes the flagsvc request an app would send
(`unleash_context`), and the expected results are the specification's own. Toggles the
importer refuses are skipped with its reason; `test_enough_unleash_cases_are_mapped` keeps
that list from growing quietly.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from flagsvc.engine import compile_flags, evaluate, validate_flag
from flagsvc.engine.compile import PERSON
from flagsvc.imports.unleash import convert_unleash, payload_value, unleash_context

# A copy of Unleash's client specification (Apache-2.0; LICENSE and SOURCE_COMMIT beside it),
# kept in the repository so that a lone clone runs these tests.
SPEC_DIR = (Path(__file__).resolve().parent / "data" / "unleash-client-specification"
            / "specifications")
# 19 and 20 are the delta API's event stream, not a toggle state.
FILES = sorted(p.name for p in SPEC_DIR.glob("[0-9][0-9]-*.json")
               if not p.name.startswith(("19-", "20-")))

_converted: dict[str, Any] = {}


def _convert(name: str):
    if name not in _converted:
        doc = json.loads((SPEC_DIR / name).read_text())
        result = convert_unleash(doc["state"])
        flags = {f["key"]: f for f in result.flags}
        _converted[name] = (result, flags, compile_flags(flags.values()))
    return _converted[name]


def _cases(section: str) -> list[Any]:
    out = []
    for name in FILES:
        doc = json.loads((SPEC_DIR / name).read_text())
        for case in doc.get(section, []):
            out.append(pytest.param(name, case, id=f"{name[:2]}:{case['description']}"))
    return out


TOGGLE_CASES = _cases("tests")
VARIANT_CASES = _cases("variantTests")


ANONYMOUS = "anonymous-device-1"  # PostHog SDKs always send a distinct id, if an anonymous one


def _hashes(flag: dict[str, Any], condition: dict[str, Any]) -> bool:
    """Does the condition's answer depend on its identifier's value?"""
    variants = sum(1 for v in flag.get("variants") or [] if v["weight"])
    return condition.get("rollout_percentage", 100) < 100 or (
        variants > 1 and condition.get("variant") is None)


def _known_difference(flag: dict[str, Any], ctx: dict[str, Any]) -> str | None:
    """A case whose answer differs by design: without the stickiness field Unleash falls back
    to a session id or a random number, while flagsvc never buckets on anything else than
    the condition's identifier (SPEC §4: no key -> off, `no_group_type`)."""
    flat = {**ctx, **(ctx.get("properties") or {})}
    for c in flag["conditions"]:
        bucket = c["bucket_by"]
        if bucket == PERSON:
            if not flat.get("userId") and _hashes(flag, c):
                return "no userId: Unleash hashes a session id or at random"
        elif not flat.get(bucket):
            return f"no {bucket}: Unleash falls back to a session id or random"
    return None


def _request(flag: dict[str, Any], ctx: dict[str, Any], placed: dict[str, str]):
    request = unleash_context(ctx, placed)
    if request.distinct_id is None and "userId" not in placed:
        # No condition hashes it or tests it (see _known_difference): any value answers alike.
        request = request._replace(distinct_id=ANONYMOUS)
    return request


def _run(name: str, case: dict[str, Any]):
    result, flags, compiled = _convert(name)
    key = case["toggleName"]
    if key in result.skipped:
        pytest.skip(f"importer refuses it: {result.skipped[key]}")
    if key not in flags:
        return None
    reason = _known_difference(flags[key], case["context"])
    if reason:
        pytest.skip(reason)
    return evaluate(compiled, key, _request(flags[key], case["context"],
                                            result.fields.get(key, {})))


@pytest.mark.parametrize("name", FILES)
def test_every_imported_toggle_is_valid(name):
    result, flags, compiled = _convert(name)
    for key, flag in flags.items():
        assert validate_flag(flag) == [], key
        assert compiled[key].error is None or "dependency cycle" in compiled[key].error, key


@pytest.mark.parametrize(("name", "case"), TOGGLE_CASES)
def test_unleash_toggle_case(name, case):
    result = _run(name, case)
    enabled = result is not None and result.enabled
    assert enabled is case["expectedResult"], result


@pytest.mark.parametrize(("name", "case"), VARIANT_CASES)
def test_unleash_variant_case(name, case):
    result = _run(name, case)
    expected = case["expectedResult"]
    enabled = expected.get("feature_enabled", expected.get("enabled"))
    if result is None:  # missing toggle
        assert expected["name"] == "disabled" and not enabled
        return
    assert result.enabled is enabled, result
    if expected["name"] == "disabled":
        assert result.variant is None
    else:
        assert result.variant == expected["name"], result
        assert result.payload == payload_value(expected.get("payload")), result


def _counted(cases: list[Any]) -> tuple[int, int]:
    ran = 0
    for p in cases:
        name, case = p.values
        result, flags, _ = _convert(name)
        key = case["toggleName"]
        if key in result.skipped:
            continue
        if key in flags and _known_difference(flags[key], case["context"]):
            continue
        ran += 1
    return ran, len(cases)


def test_enough_unleash_cases_are_mapped():
    """Guards against the importer quietly refusing more of the specification."""
    toggles, variants = _counted(TOGGLE_CASES), _counted(VARIANT_CASES)
    assert toggles[1] >= 200 and variants[1] >= 50, (toggles, variants)
    assert toggles[0] >= 0.8 * toggles[1], toggles
    assert variants[0] >= 0.8 * variants[1], variants
