"""Private properties (SPEC §3 Privacy): keys a project never stores as given.

A project's `private_properties` setting maps a property key to an action:

- ``"drop"``: the key is removed wherever it appears;
- ``"hash"``: its value is replaced by ``"hmac:" + HMAC-SHA256(hash_salt, value)`` (hex), so a
  flag can still match it by equality once the flag side hashes the compared value with the
  same `hash_value`.

The policy applies to person properties ($set / $set_once / identify traits), group
properties ($group_set / group traits) and event properties, at every nesting level (a
private key inside a nested object is handled too). Keys match exactly (case-sensitive).
`null` values stay null when hashed: a null carries nothing to hide and must keep meaning
"set to null". Pure functions; the salt is passed in.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from typing import Any

import orjson

from .model import Call

ACTIONS = ("drop", "hash")
HASH_PREFIX = "hmac:"

Policy = Mapping[str, str]


def policy_of(raw: Any) -> dict[str, str]:
    """The usable policy from a stored setting. A list of keys means "drop" each; an
    unknown action fails closed (drop) rather than storing the value in clear."""
    if isinstance(raw, (list, tuple)):
        return {k: "drop" for k in raw if isinstance(k, str)}
    if not isinstance(raw, Mapping):
        return {}
    return {k: (v if v in ACTIONS else "drop") for k, v in raw.items() if isinstance(k, str)}


def hash_value(salt: str, value: Any) -> str:
    """The keyed hash a private "hash" property is stored as. Strings and numbers hash their
    text (5 and "5" alike, as numeric strings compare as numbers in flag operators); other
    values hash their canonical JSON behind a marker, so `true` and "true" differ."""
    if isinstance(value, str):
        data = value.encode("utf-8", "surrogatepass")
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        data = orjson.dumps(value)
    else:
        data = b"\0json:" + orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    return HASH_PREFIX + hmac.new(salt.encode("utf-8"), data, hashlib.sha256).hexdigest()


def scrub(value: Any, policy: Policy, salt: str, skip_hashed: bool = False) -> Any:
    """`value` with every private key dropped or hashed, at any depth (a new object; the
    input is not changed). Callers bound the nesting depth beforehand. `skip_hashed`: leave
    values that already are keyed hashes alone (rewriting stored data twice is harmless)."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            action = policy.get(k)
            if action is None:
                out[k] = scrub(v, policy, salt, skip_hashed)
            elif action == "hash":
                already = skip_hashed and isinstance(v, str) and v.startswith(HASH_PREFIX)
                out[k] = v if v is None or already else hash_value(salt, v)
            # "drop": leave it out
        return out
    if isinstance(value, list):
        return [scrub(v, policy, salt, skip_hashed) for v in value]
    return value


def scrub_call(call: Call, policy: Policy, salt: str) -> Call:
    """Apply the policy to every property set a call writes (in place; returns the call)."""
    if not policy:
        return call
    call.properties = scrub(call.properties, policy, salt)
    call.person_set = scrub(call.person_set, policy, salt)
    call.person_set_once = scrub(call.person_set_once, policy, salt)
    call.group_set = scrub(call.group_set, policy, salt)
    return call


# ---------------------------------------------------------------- evaluation side
#
# A "hash" key is stored as its keyed hash, so flags compare hashes: the values a flag's
# `exact` / `is_not` filters on such a key list are hashed when the project's flags are
# compiled, and the values a request gives for such a key are hashed before evaluation.
# Other operators cannot see through a hash (the admin API refuses them on these keys).

EQUALITY_OPERATORS = frozenset({"exact", "is_not", "in", "not_in", "num_eq",
                                "flag_evaluates_to"})


def hashed_keys(policy: Policy) -> frozenset[str]:
    return frozenset(k for k, action in policy.items() if action == "hash")


def hash_flag(defn: Mapping[str, Any], keys: frozenset[str], salt: str) -> Any:
    """The flag definition with the compared values of hashed keys hashed (a copy; a
    definition without such filters is returned as it is)."""
    if not keys or not isinstance(defn, Mapping):
        return defn
    conditions = defn.get("conditions")
    if not isinstance(conditions, list):
        return defn
    out_conditions, touched = [], False
    for cond in conditions:
        props = cond.get("properties") if isinstance(cond, Mapping) else None
        if not isinstance(props, list):
            out_conditions.append(cond)
            continue
        new_props = []
        for p in props:
            if (isinstance(p, Mapping) and p.get("type", "person") in ("person", "group")
                    and p.get("key") in keys
                    and str(p.get("operator") or "exact").lower() in EQUALITY_OPERATORS):
                value = p.get("value")
                if isinstance(value, list):
                    value = [None if v is None else hash_value(salt, v) for v in value]
                elif value is not None:
                    value = hash_value(salt, value)
                p = {**p, "value": value}
                touched = True
            new_props.append(p)
        out_conditions.append({**cond, "properties": new_props})
    return {**defn, "conditions": out_conditions} if touched else defn


def hash_given(props: Any, keys: frozenset[str], salt: str) -> Any:
    """Request-given properties with the values of hashed keys hashed (as stored)."""
    if not keys or not isinstance(props, Mapping) or not keys & props.keys():
        return props
    return {k: (hash_value(salt, v) if k in keys and v is not None
                and not (isinstance(v, str) and v.startswith(HASH_PREFIX)) else v)
            for k, v in props.items()}


def hashed_key_problems(defn: Mapping[str, Any], keys: frozenset[str]) -> dict[str, str]:
    """Filters of a flag that a keyed hash defeats: {where: message}. Only equality
    (exact / is_not and aliases, without case_insensitive) and presence can target a
    hashed key."""
    problems: dict[str, str] = {}
    if not keys:
        return problems
    for i, cond in enumerate(defn.get("conditions") or []):
        if not isinstance(cond, Mapping):
            continue
        for j, f in enumerate(cond.get("properties") or []):
            if not isinstance(f, Mapping) or f.get("type", "person") == "flag" \
                    or f.get("key") not in keys:
                continue
            operator = str(f.get("operator") or "exact").lower()
            where = f"conditions[{i}].properties[{j}]"
            if operator not in EQUALITY_OPERATORS | {"is_set", "is_not_set"}:
                problems[f"{where}.operator"] = (
                    f"{f.get('key')!r} is a private property stored as a keyed hash: only "
                    "exact, is_not, is_set and is_not_set can target it")
            elif f.get("case_insensitive") and operator not in ("is_set", "is_not_set"):
                problems[f"{where}.case_insensitive"] = (
                    f"{f.get('key')!r} is stored as a keyed hash: it can only be compared "
                    "exactly (case_insensitive cannot apply)")
    return problems
