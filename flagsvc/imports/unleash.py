"""Unleash toggles as flagsvc flags, evaluated as Unleash evaluates them.

Input: the client API state (`GET /api/client/features`: `{"features": [...], "segments":
[...]}`, one environment) or the admin export (`features-batch/export`: `features`,
`featureStrategies`, `featureEnvironments`, `segments`, `dependencies`), with
`environment=` naming which environment to take.

How Unleash concepts map (checked against Unleash's client specification and its yggdrasil
engine, tests/test_import_unleash.py):
- strategies are ORed conditions; `flexibleRollout` / `gradualRolloutUserId` keep their
  rollout: the hash is the same (`mmh3("<groupId>:<identifier>") % 100 + 1`), so every user
  and organization stays in its bucket and variant when `groupId` is the toggle's name
  (Unleash's default) -- flagsvc has one hash namespace per flag, so strategies that hash
  on different groupIds are refused;
- stickiness `default` / `userId` bucket on the distinct id; any other stickiness field is a
  group type of that name (`organization`: the organization's key); `sessionId` and
  `random` have no flagsvc equivalent (refused unless the rollout is 0 or 100 %);
- a constraint on `userId` tests the distinct id, on a group type's field its group key;
  other context fields are properties: of the strategy's group type when it buckets by a
  group, else person properties (`fields=` places them explicitly); `environment` is
  decided at import time when `environment=` is given;
- Unleash matches a constraint on an absent field for `NOT_IN` and for an `inverted`
  operator, flagsvc never matches an absent property: such a constraint becomes two
  conditions, one with the filter and one with `is_not_set`;
- feature variants hash on the toggle name with the first variant's stickiness, strategy
  variants on the strategy's groupId and stickiness; overrides become leading conditions;
  payloads become JSON values (`json` parsed, `number` a number, `string` / `csv` text);
- `dependencies` become flag filters on every condition; segments are inlined.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from itertools import product
from typing import Any

from ..engine import Context, compile_flag, evaluate, validate_flag
from ..engine.compile import DISTINCT_ID_PROPERTY, GROUP_KEY_PROPERTY, PERSON
from ..engine.operators import to_number
from . import Converted, Unimportable

# SemVer 2.0.0 as Unleash parses it (no leading "v", all three numbers).
_SEMVER = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
                     r"(?:-[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?(?:\+[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?$")
_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
# The most conditions one strategy may become (absent-field alternatives multiply).
MAX_EXPANSION = 64
# Context fields of Unleash itself that are no properties of a person or group.
_BUCKET_ONLY = ("sessionId", "random")
# (flagsvc operator, negate) per Unleash operator; the second set takes `values`.
_OPERATORS = {
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
_LIST_OPERATORS = frozenset({"IN", "NOT_IN", "STR_CONTAINS", "STR_STARTS_WITH",
                             "STR_ENDS_WITH", "IN_CIDR"})
# Unleash applies caseInsensitive to these only (IN / NOT_IN compare exactly).
_CASE_OPERATORS = frozenset({"STR_CONTAINS", "STR_STARTS_WITH", "STR_ENDS_WITH", "REGEX"})


class _Never(Exception):
    """The strategy can never match (an empty IN list, a missing segment, 0 %)."""


@dataclass
class _Rule:
    """One Unleash strategy, ready to become flagsvc conditions."""

    alternatives: list[list[dict[str, Any]]]  # ORed lists of ANDed filters
    rollout: int
    stickiness: str | None  # the strategy's stickiness as a bucket_by (None: no equivalent)
    namespace: str  # the strategy's groupId
    variants: list[dict[str, Any]] | None  # strategy variants, if it has any


def placement(field: str, group_types: Iterable[str], bucket: str | None,
              fields: Mapping[str, str]) -> str:
    """Where flagsvc reads Unleash context field `field`: `distinct_id`, `person`,
    `group:<type>` (a property of that group) or `group_key:<type>` (the group's key)."""
    if field in fields:
        return fields[field]
    if field == "userId":
        return "distinct_id"
    if field in group_types:
        return f"group_key:{field}"
    if bucket not in (None, PERSON):
        return f"group:{bucket}"
    return "person"


def _filter(where: str, key: str, operator: str, value: Any, negate: bool = False,
            case_insensitive: bool = False) -> dict[str, Any]:
    kind, _, group_type = where.partition(":")
    f: dict[str, Any] = {"type": "person", "key": key, "operator": operator, "value": value}
    if kind == "distinct_id":
        f["key"] = DISTINCT_ID_PROPERTY
    elif kind in ("group", "group_key"):
        f.update(type="group", group_type=group_type)
        if kind == "group_key":
            f["key"] = GROUP_KEY_PROPERTY
    if negate:
        f["negate"] = True
    if case_insensitive:
        f["case_insensitive"] = True
    return f


def payload_value(payload: Any) -> Any:
    """An Unleash variant payload ({"type", "value"}) as the JSON value apps get."""
    if not isinstance(payload, Mapping):
        return payload
    kind, value = payload.get("type"), payload.get("value")
    if kind == "json" and isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            raise Unimportable(f"variant payload is not valid JSON: {value[:80]!r}") from None
    if kind == "number":
        number = to_number(value)
        if number is None:
            raise Unimportable(f"variant payload is not a number: {value!r}")
        return number
    return value


class _Converter:
    def __init__(self, data: Any, environment: str | None, group_types: Iterable[str],
                 fields: Mapping[str, str] | None) -> None:
        self.features, self.segments = _normalise(data, environment)
        self.environment = environment
        self.fields = dict(fields or {})
        self.group_types = set(group_types) | self._stickiness_fields()
        self.result = Converted()
        self.name = ""  # the toggle being converted
        self.placed: dict[str, str] = {}  # its context fields -> placement()

    def _stickiness_fields(self) -> set[str]:
        found = set()
        for feature in self.features:
            sources = [s.get("parameters") or {} for s in feature.get("strategies") or []]
            sources += list(feature.get("variants") or [])
            for s in sources:
                stickiness = s.get("stickiness") if isinstance(s, Mapping) else None
                if isinstance(stickiness, str) and stickiness not in (
                        "default", "userId", *_BUCKET_ONLY, ""):
                    found.add(stickiness)
        return {g for g in found if g not in self.fields}

    def run(self) -> Converted:
        for feature in self.features:
            name = str(feature.get("name"))
            self.placed = {}
            try:
                flag = self._feature(feature)
            except Unimportable as e:
                self.result.skipped[name] = str(e)
                self.result.warnings.pop(name, None)
                continue
            self.result.flags.append(flag)
            if self.placed:
                self.result.fields[flag["key"]] = dict(sorted(self.placed.items()))
        return self.result

    # ------------------------------------------------------------ one toggle

    def _feature(self, feature: Mapping[str, Any]) -> dict[str, Any]:
        name = feature.get("name")
        if not isinstance(name, str) or not _KEY.match(name) or name.isdigit():
            raise Unimportable("the name is no flagsvc key (letters, digits, '-', '_', '.')")
        self.name = name
        rules = []
        for i, strategy in enumerate(feature.get("strategies") or []):
            if not isinstance(strategy, Mapping) or strategy.get("disabled"):
                continue
            placed = dict(self.placed)
            try:
                rules.append(self._strategy(name, strategy))
            except _Never as e:
                self.placed = placed  # what a left-out strategy reads is read by nothing
                self.result.warn(name, f"strategy {i + 1} ({strategy.get('name')}) never "
                                       f"matches ({e}): left out")
        if not feature.get("strategies"):  # Unleash: no strategy = on for everyone
            rules.append(_Rule([[]], 100, PERSON, name, None))
        dependencies = self._dependencies(feature)
        flag: dict[str, Any] = {"key": name, "name": name,
                                "description": str(feature.get("description") or ""),
                                "active": bool(feature.get("enabled", True))}
        conditions, namespace = self._conditions(name, feature, rules)
        for c in conditions:
            c["properties"] = dependencies + c["properties"]
        flag["conditions"] = conditions
        flag["hash_namespace"] = None if namespace in (None, name) else namespace
        # What previews count: the first group type a condition buckets by.
        flag["bucket_by"] = next((c["bucket_by"] for c in conditions
                                  if c["bucket_by"] != PERSON), PERSON)
        variants = self._variant_list(feature, rules)
        if variants:
            flag["variants"] = [{"key": v["name"], "weight": v["weight"]} for v in variants]
            flag["payloads"] = {v["name"]: payload_value(v["payload"]) for v in variants
                                if v.get("payload") is not None}
        problems = validate_flag(flag)
        if problems:
            raise Unimportable("; ".join(problems))
        return flag

    def _dependencies(self, feature: Mapping[str, Any]) -> list[dict[str, Any]]:
        out = []
        by_name = {f.get("name"): f for f in self.features}
        for dep in feature.get("dependencies") or []:
            parent = dep.get("feature")
            if not isinstance(parent, str):
                raise Unimportable("a dependency without a feature name")
            if by_name.get(parent, {}).get("dependencies"):
                raise Unimportable(f"its parent {parent!r} depends on another toggle: Unleash "
                                   "turns such a toggle off, flagsvc would follow the chain")
            if dep.get("enabled", True) is False:
                value: Any = False
            else:
                # Unleash names "no variant" `disabled`: flagsvc's value is then `true`.
                value = [True if v == "disabled" else v for v in dep.get("variants") or []]
                value = value or True
            out.append({"type": "flag", "key": parent, "operator": "exact", "value": value})
        return out

    def _strategy(self, name: str, s: Mapping[str, Any]) -> _Rule:
        kind = s.get("name")
        params = s.get("parameters") or {}
        rollout, stickiness, filters = 100, "default", []
        namespace = str(params.get("groupId") or name)
        if kind == "default":
            pass
        elif kind == "flexibleRollout":
            rollout = _percent(params.get("rollout"), kind)
            stickiness = params.get("stickiness") or "default"
        elif kind == "gradualRolloutUserId":
            rollout, stickiness = _percent(params.get("percentage"), kind), "userId"
            # Unleash turns it off without a userId, whatever the percentage.
            self.placed["userId"] = "distinct_id"
            filters.append(_filter("distinct_id", "userId", "is_set", None))
        elif kind == "gradualRolloutSessionId":
            rollout, stickiness = _percent(params.get("percentage"), kind), "sessionId"
        elif kind == "gradualRolloutRandom":
            rollout, stickiness = _percent(params.get("percentage"), kind), "random"
        elif kind == "userWithId":
            ids = [i.strip() for i in str(params.get("userIds") or "").split(",") if i.strip()]
            if not ids:
                raise _Never("no user ids")
            filters.append(_filter("distinct_id", "userId", "exact", ids))
        elif kind == "remoteAddress":
            ips = [i.strip() for i in str(params.get("IPs") or "").split(",") if i.strip()]
            bad = [i for i in ips if not _network(i)]
            if bad:  # Unleash skips them and matches the others
                self.result.warn(name, f"remoteAddress: left out what is no address or "
                                       f"network: {', '.join(bad)}")
                ips = [i for i in ips if i not in bad]
            if not ips:
                raise _Never("no addresses")
            where = placement("remoteAddress", self.group_types, None, self.fields)
            self.placed["remoteAddress"] = where
            filters.append(_filter(where, "remoteAddress", "in_cidr", ips))
        else:
            raise Unimportable(f"strategy {kind!r} has no flagsvc equivalent")
        if rollout == 0:
            raise _Never("0 %")
        bucket = _bucket(stickiness)
        if stickiness == "sessionId":  # off without a session, even at 100 %
            raise Unimportable(f"{kind} on sessionId: flagsvc has no sessions (bucket on the "
                               "distinct id or a group key)")
        if bucket is None and rollout < 100:
            raise Unimportable(f"{kind} on {stickiness}: flagsvc buckets on the distinct id or "
                               "a group key")
        alternatives = [filters]
        for c in self._constraints(s):
            alternatives = self._and(alternatives, self._constraint(c, bucket))
        if len(alternatives) > MAX_EXPANSION:
            raise Unimportable(f"more than {MAX_EXPANSION} conditions for one strategy (each "
                               "NOT_IN or inverted constraint doubles them, an inverted SEMVER "
                               "one triples them)")
        variants = [dict(v) for v in s.get("variants") or [] if isinstance(v, Mapping)] or None
        return _Rule(alternatives, rollout, bucket, namespace, variants)

    def _constraints(self, s: Mapping[str, Any]) -> list[Mapping[str, Any]]:
        found = list(s.get("constraints") or [])
        for seg in s.get("segments") or []:
            if seg not in self.segments:
                raise _Never(f"segment {seg} does not exist")
            found += self.segments[seg]
        return found

    @staticmethod
    def _and(alternatives: list[list[dict[str, Any]]],
             choices: list[list[dict[str, Any]]]) -> list[list[dict[str, Any]]]:
        return [a + c for a, c in product(alternatives, choices)]

    def _constraint(self, c: Mapping[str, Any], bucket: str | None) -> list[list[dict[str, Any]]]:
        """The constraint as ORed choices of filters ([[]]: always true)."""
        field, op = c.get("contextName"), c.get("operator")
        if not isinstance(field, str) or not field:
            raise Unimportable("a constraint without contextName")
        if op not in _OPERATORS:
            raise Unimportable(f"constraint operator {op!r} is unknown")
        if field == "currentTime":
            raise Unimportable("a constraint on currentTime: flagsvc compares dates of "
                               "properties, not the clock (use a date property instead)")
        if field in _BUCKET_ONLY:
            raise Unimportable(f"a constraint on {field}: flagsvc has no such field")
        inverted = bool(c.get("inverted"))
        operator, negate = _OPERATORS[op]
        negate = negate != inverted
        if op in _LIST_OPERATORS:
            values = c.get("values")
            value: Any = list(values) if isinstance(values, list) else (
                [c["value"]] if c.get("value") not in (None, "") else [])
            if op == "IN_CIDR":
                bad = [v for v in value if not _network(str(v).strip())]
                if bad:  # Unleash skips them and matches the others
                    self.result.warn(self.name, f"IN_CIDR on {field}: left out what is no "
                                                f"address or network: {', '.join(map(str, bad))}")
                    value = [v for v in value if v not in bad]
            if not value:  # IN nothing: false; NOT_IN nothing: true (inverted flips)
                if (op == "NOT_IN") != inverted:
                    return [[]]
                raise _Never(f"{op} an empty list")
        else:
            value = c.get("value")
            if value is None and isinstance(c.get("values"), list) and c["values"]:
                value = c["values"][0]
            if op.startswith("NUM_") and to_number(value) is None:
                raise Unimportable(f"{op} needs a number, not {value!r}")
            if op.startswith("SEMVER_") and not _SEMVER.match(str(value)):
                # Unleash compares strict SemVer only: such a constraint is never true.
                if inverted:
                    return [[]]
                raise _Never(f"{op} {value!r} is no semantic version")
        ci = op in _CASE_OPERATORS and bool(c.get("caseInsensitive"))
        if field == "environment" and self.environment is not None:
            probe = _filter("person", field, operator, value, negate, ci)
            if _static(probe, field, self.environment):
                return [[]]
            raise _Never(f"environment {self.environment!r} fails {op} {value}")
        where = placement(field, self.group_types, bucket, self.fields)
        self.placed[field] = where
        absent = [_filter(where, field, "is_not_set", None)]
        if op.startswith("SEMVER_"):
            # Unleash compares strict SemVer only ("12" or "v1.2.3" match nothing); flagsvc
            # reads such values leniently, so the filter is paired with the strict form.
            strict = _filter(where, field, "regex", _SEMVER.pattern)
            compare = _filter(where, field, operator, value)
            if not inverted:
                return [[compare, strict]]
            return [absent, [{**strict, "negate": True}], [{**compare, "negate": True}]]
        main = _filter(where, field, operator, value, negate, ci)
        if (op == "NOT_IN") != inverted:  # Unleash: true when the field is absent
            return [[main], absent]
        return [[main]]

    # ------------------------------------------------------------ variants

    def _variant_source(self, feature: Mapping[str, Any], rule: _Rule
                        ) -> tuple[list[dict[str, Any]], str, str | None]:
        """(variants, namespace, bucket) that decide the variant when `rule` matches."""
        if rule.variants:
            return rule.variants, rule.namespace, rule.stickiness
        variants = [dict(v) for v in feature.get("variants") or [] if isinstance(v, Mapping)]
        stickiness = variants[0].get("stickiness") if variants else None
        return variants, str(feature["name"]), _bucket(stickiness or "default")

    def _variant_list(self, feature: Mapping[str, Any], rules: list[_Rule]
                      ) -> list[dict[str, Any]]:
        sets = {_signature(self._variant_source(feature, r)[0]) for r in rules}
        if len(sets) > 1:
            raise Unimportable("its strategies give different variants: flagsvc has one "
                               "variant list per flag")
        variants = self._variant_source(feature, rules[0])[0] if rules else []
        for v in variants:
            if not isinstance(v.get("name"), str) or not _KEY.match(v["name"]):
                raise Unimportable(f"variant name {v.get('name')!r} is no flagsvc key")
            w = v.get("weight")
            if isinstance(w, bool) or not isinstance(w, int) or not 0 <= w <= 10_000:
                raise Unimportable(f"variant {v['name']!r}: weight {w!r} is not 0-10000")
        if variants and sum(v["weight"] for v in variants) == 0:
            raise Unimportable("every variant weighs 0")
        return variants

    def _conditions(self, name: str, feature: Mapping[str, Any], rules: list[_Rule]
                    ) -> tuple[list[dict[str, Any]], str | None]:
        """flagsvc conditions for the rules, and the one hash namespace they need."""
        namespaces: set[str] = set()
        plain, overridden = [], []
        for rule in rules:
            variants, v_ns, v_bucket = self._variant_source(feature, rule)
            hashes_variant = sum(1 for v in variants if v.get("weight")) > 1
            hashed = rule.stickiness if rule.rollout < 100 else None  # what the rollout hashes
            bucket = hashed
            if hashed is not None:
                namespaces.add(rule.namespace)
            if hashes_variant:
                if v_bucket is None:
                    raise Unimportable("its variants are sticky on a session or at random: "
                                       "flagsvc buckets on the distinct id or a group key")
                if hashed is not None and hashed != v_bucket:
                    raise Unimportable(f"its rollout buckets on {hashed} and its variants on "
                                       f"{v_bucket}: flagsvc uses one identifier per condition")
                bucket = v_bucket
                namespaces.add(v_ns)
            if bucket is None and rule.stickiness not in (None, PERSON):
                # A group-sticky strategy at 100 % stays about that group (previews count
                # its groups); without its key flagsvc answers no_group_type (SPEC §4).
                bucket = rule.stickiness
            bucket = bucket or PERSON
            if bucket != PERSON:
                self.placed.setdefault(bucket, f"group_key:{bucket}")
            base = {"rollout_percentage": rule.rollout, "bucket_by": bucket}
            for alt in rule.alternatives:
                plain.append({**base, "properties": alt, "variant": None})
            if not rule.variants:
                overridden += self._overrides(feature, rule, base)
        if len(namespaces) > 1:
            raise Unimportable(f"its rollouts and variants hash on different groupIds "
                               f"({', '.join(sorted(namespaces))}): flagsvc has one hash "
                               "namespace per flag")
        return overridden + plain, next(iter(namespaces), None)

    def _overrides(self, feature: Mapping[str, Any], rule: _Rule,
                   base: dict[str, Any]) -> list[dict[str, Any]]:
        """Variant overrides: the rule's conditions narrowed to the listed values, with a
        fixed variant (Unleash checks overrides, in variant order, once the toggle is on)."""
        out = []
        for v in feature.get("variants") or []:
            for o in v.get("overrides") or []:
                field, values = o.get("contextName"), o.get("values") or []
                if not isinstance(field, str) or not values:
                    continue
                if field in _BUCKET_ONLY or field == "currentTime":
                    raise Unimportable(f"a variant override on {field}")
                where = placement(field, self.group_types, rule.stickiness, self.fields)
                self.placed[field] = where
                match = _filter(where, field, "exact", [str(x) for x in values])
                for alt in rule.alternatives:
                    out.append({**base, "properties": [*alt, match], "variant": v["name"]})
        return out


def _network(text: str) -> bool:
    try:
        ipaddress.ip_network(text, strict=False)
    except ValueError:
        return False
    return True


def _percent(value: Any, kind: str) -> int:
    n = to_number(value if value is not None else "")
    if n is None or not 0 <= n <= 100 or n != int(n):
        raise Unimportable(f"{kind}: rollout {value!r} is not a whole percentage")
    return int(n)


def _bucket(stickiness: Any) -> str | None:
    """flagsvc's bucket_by for an Unleash stickiness (None: no flagsvc equivalent)."""
    if stickiness in (None, "", "default", "userId"):
        return PERSON
    if stickiness in _BUCKET_ONLY:
        return None
    return str(stickiness)


def _signature(variants: list[dict[str, Any]]) -> str:
    return json.dumps([(v.get("name"), v.get("weight"), v.get("payload")) for v in variants],
                      sort_keys=True, default=str)


def _static(f: dict[str, Any], field: str, value: str) -> bool:
    """Does filter `f` match a context whose `field` is `value` (decided at import)?"""
    flag = compile_flag({"key": "probe", "conditions": [{"properties": [f]}]})
    if flag.error:
        raise Unimportable(flag.error)
    result = evaluate({"probe": flag}, "probe",
                      Context(distinct_id="probe", person_properties={field: value}))
    return bool(result and result.enabled)


def _normalise(data: Any, environment: str | None
               ) -> tuple[list[dict[str, Any]], dict[Any, list[Any]]]:
    """(toggles in the client API shape, segment id -> constraints)."""
    if not isinstance(data, Mapping) or not isinstance(data.get("features"), list):
        raise Unimportable('expected an Unleash export: {"features": [...], ...}')
    segments = {s.get("id"): list(s.get("constraints") or [])
                for s in data.get("segments") or [] if isinstance(s, Mapping)}
    features = [f for f in data["features"] if isinstance(f, Mapping)]
    if "featureStrategies" not in data:
        return [dict(f) for f in features], segments
    # The admin export: strategies and on/off per environment, dependencies beside them.
    envs = {e.get("environment") for e in data.get("featureEnvironments") or []}
    envs |= {s.get("environment") for s in data.get("featureStrategies") or []}
    envs.discard(None)
    if environment is None:
        if len(envs) != 1:
            raise Unimportable(f"the export has environments {', '.join(sorted(envs))}: "
                               "name one (environment=)")
        environment = next(iter(envs))
    out = []
    for f in features:
        name = f.get("name")
        toggle = {k: v for k, v in f.items() if k not in ("strategies", "variants")}
        toggle["strategies"] = sorted(
            (s for s in data.get("featureStrategies") or []
             if s.get("featureName") == name and s.get("environment") == environment),
            key=lambda s: s.get("sortOrder") or 0)
        env: Mapping[str, Any] = next((e for e in data.get("featureEnvironments") or []
                    if e.get("name", e.get("featureName")) == name
                    and e.get("environment") == environment), {})
        toggle["enabled"] = bool(env.get("enabled", False))
        toggle["variants"] = env.get("variants") or f.get("variants") or []
        toggle["dependencies"] = [
            {"feature": d.get("parent"), "enabled": d.get("enabled", True),
             "variants": d.get("variants") or []}
            for d in data.get("dependencies") or [] if d.get("feature") == name]
        out.append(toggle)
    return out, segments


def convert_unleash(data: Any, environment: str | None = None,
                    group_types: Iterable[str] = (),
                    fields: Mapping[str, str] | None = None) -> Converted:
    """Unleash toggles as flagsvc flags (see the module docstring).

    `group_types`: context fields that name groups (stickiness fields always do);
    `fields`: context field -> `person`, `group:<type>`, `group_key:<type>` or
    `distinct_id`, overriding the default placement."""
    for name, where in (fields or {}).items():
        kind, _, group_type = where.partition(":")
        if kind not in ("person", "group", "group_key", "distinct_id") or (
                kind in ("group", "group_key")) != bool(group_type):
            raise Unimportable(f"field {name}: {where!r} is not person, group:<type>, "
                               "group_key:<type> or distinct_id")
    return _Converter(data, environment, group_types, fields).run()


def unleash_context(ctx: Mapping[str, Any], placed: Mapping[str, str]) -> Context:
    """The flagsvc request for an Unleash context, given where a flag reads each field
    (`Converted.fields[key]`): what an app sends instead of its Unleash context."""
    flat = {k: v for k, v in ctx.items() if k != "properties"}
    flat.update(ctx.get("properties") or {})
    groups: dict[str, str] = {}
    person: dict[str, Any] = {}
    group_props: dict[str, dict[str, Any]] = {}
    distinct_id = flat.get("userId")
    for field, value in flat.items():
        where = placed.get(field)
        if where is None and field not in ("userId", *_BUCKET_ONLY):
            where = "person"
        kind, _, group_type = (where or "").partition(":")
        if kind == "group_key":
            groups[group_type] = str(value)
        elif kind == "group":
            group_props.setdefault(group_type, {})[field] = value
        elif kind == "person":
            person[field] = value
    for g in {w.partition(":")[2] for w in placed.values() if w.startswith("group:")}:
        groups.setdefault(g, str(flat.get(g, "")) or "")
    groups = {g: k for g, k in groups.items() if k}
    return Context(distinct_id=distinct_id, groups=groups, person_properties=person,
                   group_properties=group_props)
