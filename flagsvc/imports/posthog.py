"""PostHog feature flags as flagsvc flags.

Input: the local-evaluation definitions (`GET /api/feature_flag/local_evaluation`: `flags`,
`group_type_mapping`, `cohorts`) or the flags API list (`GET
/api/projects/<id>/feature_flags/`: `results`, or a plain list), with `group_types=`
(index -> name) where the file has no `group_type_mapping`.

flagsvc's property filters are PostHog's, so conditions, operators, variants and payloads
keep their meaning, with PostHog's matching rules made explicit: `exact`, `is_not` and the
text operators compare case-insensitively, `semver_neq` / `~` / `^` / `*` become flagsvc
comparisons, a cohort given as properties in the file is inlined, a flag dependency
names its flag by key. What differs is stated per flag (`warnings`):
- the hash: PostHog buckets on SHA-1 of `<flag key>.<identifier>`, flagsvc on mmh3 like
  Unleash, so a partial rollout or a variant split keeps its shares but not its members;
- a property the request does not have: PostHog's SDKs ask the server, flagsvc never
  matches it (except `is_not_set`), also for `is_not` and the other negated operators.
Refused (`skipped`): cohorts PostHog computes (static, behavioural, or absent from the
file), `is_date_exact`, early-access and holdout groups, device-id bucketing.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from itertools import product
from typing import Any

from ..engine import validate_flag
from ..engine.compile import PERSON
from . import KEY, Converted, Unimportable, no_constant, object_of, objects
from .filters import text_equals

MAX_EXPANSION = 64  # conditions one PostHog condition may become (cohorts multiply them)
MAX_COHORT_DEPTH = 10
# PostHog operator -> (flagsvc operator, negate, case_insensitive)
_OPERATORS: dict[str, tuple[str, bool, bool]] = {
    "exact": ("exact", False, True), "is_not": ("exact", True, True),
    "icontains": ("contains", False, True), "not_icontains": ("contains", True, True),
    "starts_with": ("starts_with", False, True), "not_starts_with": ("starts_with", True, True),
    "ends_with": ("ends_with", False, True), "not_ends_with": ("ends_with", True, True),
    "regex": ("regex", False, False), "not_regex": ("regex", True, False),
    "gt": ("gt", False, False), "gte": ("gte", False, False),
    "lt": ("lt", False, False), "lte": ("lte", False, False),
    "is_set": ("is_set", False, False), "is_not_set": ("is_not_set", False, False),
    "is_date_before": ("date_before", False, False),
    "is_date_after": ("date_after", False, False),
    "semver_eq": ("semver_eq", False, False), "semver_neq": ("semver_eq", True, False),
    "semver_gt": ("semver_gt", False, False), "semver_gte": ("semver_gte", False, False),
    "semver_lt": ("semver_lt", False, False), "semver_lte": ("semver_lte", False, False),
}
_VERSION = re.compile(r"^\s*v?(\d+)(?:\.(\d+|\*|x))?(?:\.(\d+|\*|x))?")


def semver_range(operator: str, value: Any) -> tuple[str, str]:
    """PostHog's `semver_tilde` / `semver_caret` / `semver_wildcard` as [lower, upper)."""
    m = _VERSION.match(str(value))
    if not m:
        raise Unimportable(f"{operator}: {value!r} is no version")
    parts = m.groups()
    major = int(parts[0])
    minor = int(parts[1]) if parts[1] and parts[1].isdigit() else None
    patch = int(parts[2]) if parts[2] and parts[2].isdigit() else None
    lo = (major, minor or 0, patch or 0)
    if operator == "semver_wildcard" or operator == "semver_tilde":
        hi = (major + 1, 0, 0) if minor is None else (major, minor + 1, 0)
    else:  # caret: the leftmost non-zero part may not change
        if major > 0 or minor is None:
            hi = (major + 1, 0, 0)
        elif minor > 0 or patch is None:
            hi = (0, minor + 1, 0)
        else:
            hi = (0, 0, patch + 1)
    return ".".join(map(str, lo)), ".".join(map(str, hi))


class _Converter:
    def __init__(self, data: Any, group_types: Mapping[Any, str] | None) -> None:
        if isinstance(data, Mapping):
            raw = data.get("flags", data.get("results"))
            mapping = group_types or data.get("group_type_mapping") or {}
            self.cohorts = data.get("cohorts") or {}
        else:
            raw, mapping, self.cohorts = data, group_types or {}, {}
        if not isinstance(raw, list):
            raise Unimportable('expected PostHog flags: {"flags": [...]}, {"results": [...]} '
                               'or a list')
        if not isinstance(mapping, Mapping):
            raise Unimportable("group_type_mapping must be an object: index -> name")
        if not isinstance(self.cohorts, Mapping):
            raise Unimportable("cohorts must be an object: id -> property group")
        self.flags = objects(raw, "flags")
        self.group_types = {str(k): str(v) for k, v in dict(mapping).items()}
        self.keys_by_id = {str(f.get("id")): f.get("key") for f in self.flags}
        self.keys = {str(f.get("key")) for f in self.flags}
        self.result = Converted()
        self.key = ""
        self.aggregation: str | None = None  # the flag's group type, if it has one

    def run(self) -> Converted:
        for flag in self.flags:
            name = str(flag.get("key"))
            if flag.get("deleted"):  # left out, not refused: it blocks nothing
                self.result.warn(name, "deleted in PostHog: left out")
                continue
            self.key = name
            try:
                converted = self._flag(flag)
            except Unimportable as e:
                self.result.refuse(name, str(e))
                continue
            except Exception as e:  # a malformed flag no check foresaw: this one only
                self.result.refuse(name, f"malformed flag ({type(e).__name__}: {e})")
                continue
            self.result.flags.append(converted)
        return self.result

    def _group_type(self, index: Any) -> str:
        name = self.group_types.get(str(index))
        if name is None:
            raise Unimportable(f"group type index {index} is not in the group type mapping "
                               "(group_types=, or the file's group_type_mapping)")
        return name

    def _flag(self, flag: Mapping[str, Any]) -> dict[str, Any]:
        key = flag.get("key")
        if not isinstance(key, str) or not KEY.match(key) or key.isdigit():
            raise Unimportable("the key is no flagsvc key (letters, digits, '-', '_', '.')")
        filters = object_of(flag.get("filters"), "filters")
        if filters.get("feature_enrollment") or filters.get("super_groups"):
            raise Unimportable("early-access enrolment (super_groups): flagsvc has none")
        if filters.get("holdout_groups") or filters.get("holdout"):
            raise Unimportable("a holdout: flagsvc has none")
        if "device_id" in (flag.get("bucketing_identifier"), filters.get("bucketing_identifier")):
            raise Unimportable("bucketed by device id: flagsvc buckets on the distinct id or a "
                               "group key")
        groups = objects(filters.get("groups"), "filters.groups")
        if filters.get("early_exit") and len(groups) > 1:
            raise Unimportable("early_exit: PostHog stops at the first condition whose "
                               "properties match even out of its rollout, flagsvc goes on")
        if flag.get("ensure_experience_continuity"):
            self.result.warn(key, "experience continuity (anonymous -> identified) is not "
                                  "kept: flagsvc buckets on the distinct id it is given")
        index = filters.get("aggregation_group_type_index")
        bucket_by = PERSON if index is None else self._group_type(index)
        self.aggregation = None if index is None else bucket_by
        multivariate = object_of(filters.get("multivariate"), "filters.multivariate")
        variants = [{"key": v.get("key"), "weight": v.get("rollout_percentage")}
                    for v in objects(multivariate.get("variants"), "variants")]
        for v in variants:
            w = v["weight"]
            if isinstance(w, float) and w.is_integer():
                v["weight"] = int(w)
            elif isinstance(w, bool) or not isinstance(w, int):
                raise Unimportable(f"variant {v['key']!r}: rollout {w!r} is no whole number")
        if variants and sum(int(v["weight"] or 0) for v in variants) != 100:
            raise Unimportable("its variants' rollouts do not add up to 100 (PostHog answers "
                               "`true` without a variant for the rest; flagsvc has no such "
                               "share)")
        keys = {str(v["key"]) for v in variants}
        conditions = []
        for group in groups:
            conditions += self._condition(key, group, keys)
        hashed = any(c["rollout_percentage"] not in (0, 100) for c in conditions)
        if hashed or sum(1 for v in variants if v["weight"]) > 1:
            self.result.warn(key, "PostHog's hash (SHA-1) differs from flagsvc's: a partial "
                                  "rollout or variant split keeps its shares, not its members")
        active = flag.get("active", True)
        if not isinstance(active, bool):
            raise Unimportable(f"active must be true or false, not {active!r}")
        out: dict[str, Any] = {"key": key, "name": str(flag.get("name") or ""),
                               "active": active, "bucket_by": bucket_by,
                               "conditions": conditions}
        if variants:
            out["variants"] = variants
        payloads = {str(k): _payload(v) for k, v in
                    object_of(filters.get("payloads"), "filters.payloads").items()
                    if v is not None}
        for k in [k for k in payloads if k != "true" and k not in keys]:
            del payloads[k]
            self.result.warn(key, f"payload of {k!r} left out: no such variant (PostHog "
                                  "ignores it too)")
        if payloads:
            out["payloads"] = payloads
        problems = validate_flag(out)
        if problems:
            raise Unimportable("; ".join(problems))
        return out

    def _condition(self, key: str, group: Mapping[str, Any],
                   variants: set[str]) -> list[dict[str, Any]]:
        rollout = group.get("rollout_percentage")
        if rollout is None:
            rollout = 100
        if isinstance(rollout, bool) or not isinstance(rollout, (int, float)) or not (
                0 <= rollout <= 100):
            raise Unimportable(f"rollout {rollout!r} is not 0-100")
        whole = _whole_percent(rollout)
        if whole != rollout:
            self.result.warn(key, f"rollout {rollout} % taken as {whole} % (flagsvc rolls "
                                  "out whole percentages)")
        variant = group.get("variant")
        if variant is not None and variant not in variants:
            self.result.warn(key, f"condition variant {variant!r} left out: no such variant "
                                  "(PostHog ignores it too)")
            variant = None
        index = group.get("aggregation_group_type_index")
        own = None if index is None else self._group_type(index)  # mixed targeting
        flag_aggregation = self.aggregation
        self.aggregation = own or flag_aggregation  # what this condition's filters are about
        alternatives: list[list[dict[str, Any]]] = [[]]
        for prop in objects(group.get("properties"), "condition properties"):
            choices = self._property(key, prop)
            alternatives = [a + c for a, c in product(alternatives, choices)]
            if len(alternatives) > MAX_EXPANSION:
                raise Unimportable(f"a condition would become more than {MAX_EXPANSION} "
                                   "(OR cohorts multiply them)")
        self.aggregation = flag_aggregation
        out = [{"properties": alt, "rollout_percentage": whole, "variant": variant}
               for alt in alternatives]
        if own is not None:
            for c in out:
                c["bucket_by"] = own
        return out

    def _property(self, key: str, prop: Any, in_cohort: bool = False
                  ) -> list[list[dict[str, Any]]]:
        """A PostHog filter as ORed choices of ANDed flagsvc filters."""
        if not isinstance(prop, Mapping):
            raise Unimportable("a property filter that is no object")
        kind = prop.get("type") or "person"
        if kind == "cohort":
            return self._cohort(key, prop)
        if kind == "flag":
            # local_evaluation names the flag by key, the flags API by id
            ref = str(prop.get("key"))
            target = self.keys_by_id.get(ref) or (ref if ref in self.keys else None)
            if target is None:
                raise Unimportable(f"depends on flag {prop.get('key')}, which is not in the "
                                   "file")
            value = prop.get("value", True)
            return [[{"type": "flag", "key": str(target), "operator": "exact", "value": value}]]
        if kind not in ("person", "group"):
            raise Unimportable(f"a {kind!r} property filter: flagsvc filters on person and "
                               "group properties")
        op = prop.get("operator") or "exact"
        base: dict[str, Any] = {"type": kind, "key": prop.get("key")}
        if kind == "group":
            base["group_type"] = self._group_type(prop.get("group_type_index"))
            if self.aggregation is not None and base["group_type"] != self.aggregation:
                self.result.warn(key, f"a filter on {base['group_type']}'s {prop.get('key')} in "
                                      f"a flag of {self.aggregation}: flagsvc reads the "
                                      f"{base['group_type']} of the request, PostHog's SDKs "
                                      f"read {self.aggregation}'s properties")
        value = prop.get("value")
        if op.startswith("semver_"):
            self.result.warn(key, f"{op} on {prop.get('key')}: PostHog ignores pre-release "
                                  "tags and parts past the third (1.2.3-beta = 1.2.3), flagsvc "
                                  "orders 1.2.3-beta before 1.2.3")
        if op in ("semver_tilde", "semver_caret", "semver_wildcard"):
            lo, hi = semver_range(op, value)
            return [[{**base, "operator": "semver_gte", "value": lo},
                     {**base, "operator": "semver_lt", "value": hi}]]
        if not isinstance(op, str) or op not in _OPERATORS:
            raise Unimportable(f"operator {op!r} has no flagsvc equivalent")
        operator, negate, ci = _OPERATORS[op]
        if in_cohort and prop.get("negation") is True:  # cohorts only: flags ignore it
            negate = not negate
        if negate or operator == "is_not_set":
            self.result.warn(key, f"{op} on {prop.get('key')}: a property that is absent or "
                                  "null never matches in flagsvc (except is_not_set); PostHog "
                                  "may match it")
        if operator == "exact":  # PostHog compares text: "12" is not "12.0"
            where = "person" if kind == "person" else f"group:{base['group_type']}"
            values = value if isinstance(value, list) else [value]
            if not values or not all(isinstance(v, (str, int, float, bool)) for v in values):
                raise Unimportable(f"{op} on {prop.get('key')}: {value!r} is no value list")
            texts = [("true" if v else "false") if isinstance(v, bool) else v for v in values]
            return [[text_equals(where, str(prop.get("key")), texts, negate, True)]]
        f = {**base, "operator": operator, "value": value}
        if negate:
            f["negate"] = True
        if ci:
            f["case_insensitive"] = True
        if operator in ("is_set", "is_not_set"):
            f["value"] = None
        return [[f]]

    def _cohort(self, key: str, prop: Mapping[str, Any], depth: int = 0
                ) -> list[list[dict[str, Any]]]:
        """A cohort given as properties in the file, inlined (`not_in`: its negation; inside a
        cohort `negation` flips it too, as PostHog's matcher reads it)."""
        cohort_id = prop.get("value")
        cohort = self.cohorts.get(str(cohort_id))
        if not isinstance(cohort, Mapping):
            raise Unimportable(f"cohort {cohort_id}: PostHog computes its members (only a "
                               "cohort given as properties in the file is inlined)")
        if depth > MAX_COHORT_DEPTH:
            raise Unimportable(f"cohort {cohort_id}: cohorts nested deeper than "
                               f"{MAX_COHORT_DEPTH} (or in a cycle)")
        if prop.get("operator") not in (None, "exact", "in", "not_in"):
            raise Unimportable(f"cohort {cohort_id}: operator {prop.get('operator')!r}")
        choices = self._group_of(key, cohort, cohort_id, depth)
        if (prop.get("operator") == "not_in") != (depth > 0 and prop.get("negation") is True):
            self.result.warn(key, f"not in cohort {cohort_id}: a property that is absent or "
                                  "null never matches in flagsvc; PostHog may match it")
            return _negated(choices)
        return choices

    def _group_of(self, key: str, group: Mapping[str, Any], cohort: Any, depth: int
                  ) -> list[list[dict[str, Any]]]:
        """A cohort's property group ({"type": AND|OR, "values": [...]}) as ORed choices."""
        parts = []
        for v in objects(group.get("values"), f"cohort {cohort} values"):
            if "values" in v or v.get("type") in ("AND", "OR"):
                parts.append(self._group_of(key, v, cohort, depth))
            elif v.get("type") == "cohort":
                parts.append(self._cohort(key, v, depth + 1))
            elif v.get("type") in ("person", "group"):
                parts.append(self._property(key, v, in_cohort=True))
            else:
                raise Unimportable(f"cohort {cohort}: a {v.get('type')!r} filter (behavioural "
                                   "cohorts are computed by PostHog)")
        if not parts:
            return [[]]
        if group.get("type") == "OR":
            return [alt for part in parts for alt in part]
        out: list[list[dict[str, Any]]] = [[]]
        for part in parts:
            out = [a + c for a, c in product(out, part)]
            if len(out) > MAX_EXPANSION:
                raise Unimportable(f"cohort {cohort} would become more than {MAX_EXPANSION} "
                                   "conditions")
        return out


def _negated(choices: list[list[dict[str, Any]]]) -> list[list[dict[str, Any]]]:
    """NOT (OR of ANDs) as an OR of ANDs: every alternative fails, each by one filter."""
    out: list[list[dict[str, Any]]] = [[]]
    for alternative in choices:  # NOT(a AND b) = NOT a OR NOT b
        out = [done + [_negated_filter(f)] for done in out for f in alternative]
        if len(out) > MAX_EXPANSION:
            raise Unimportable(f"a `not_in` cohort would become more than {MAX_EXPANSION} "
                               "conditions")
    return out


def _negated_filter(f: dict[str, Any]) -> dict[str, Any]:
    swap = {"is_set": "is_not_set", "is_not_set": "is_set"}
    if f.get("operator") in swap:
        return {**f, "operator": swap[f["operator"]]}
    flipped = {**f, "negate": not f.get("negate", False)}
    if not flipped["negate"]:
        del flipped["negate"]
    return flipped


def _payload(value: Any) -> Any:
    """PostHog stores payloads as JSON text; flagsvc as the JSON value (text that is no
    JSON, or only JavaScript's NaN / Infinity, stays text)."""
    if isinstance(value, str):
        try:
            return json.loads(value, parse_constant=no_constant)
        except ValueError:
            return value
    return value


def _whole_percent(rollout: float) -> int:
    """A rollout as a whole percentage: halves up, and never 0 or 100 unless it was."""
    whole = int(rollout + 0.5)
    if 0 < rollout < 1:
        return 1
    if 99 < rollout < 100:
        return 99
    return whole


def convert_posthog(data: Any, group_types: Mapping[Any, str] | None = None) -> Converted:
    """PostHog flags as flagsvc flags (see the module docstring)."""
    return _Converter(data, group_types).run()
