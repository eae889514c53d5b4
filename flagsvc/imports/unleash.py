"""Unleash toggles as flagsvc flags, evaluated as Unleash evaluates them.

Input: the client API state (`GET /api/client/features`: `{"features": [...], "segments":
[...]}`, one environment) or the admin export (`features-batch/export`: `features`,
`featureStrategies`, `featureEnvironments`, `segments`, `dependencies`), with
`environment=` naming which environment to take.

How Unleash concepts map (checked against Unleash's client specification and its yggdrasil
engine: tests/test_engine_unleash_spec.py and tests/test_imports.py):
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
  decided at import for the environment taken (`environment=`, or the admin export's
  only one); constraints keep Unleash's matching rules (unleash_constraints.py);
- feature variants hash on the toggle name with the first variant's stickiness, strategy
  variants on the strategy's groupId and stickiness; overrides become leading conditions;
  payloads become JSON values (`json` parsed, `number` a number, `string` / `csv` text);
- `dependencies` become flag filters on every condition; segments are inlined;
- what Unleash cannot compile (an unknown operator, a missing segment) turns its toggle off
  for everyone: such a toggle is imported with no conditions, and a warning says why.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from itertools import product
from typing import Any

from ..engine import validate_flag
from ..engine.compile import PERSON
from . import KEY, Converted, Unimportable, object_of, objects
from .filters import make_filter, text_equals
from .unleash_constraints import BUCKET_ONLY, Never, ToggleOff, choices
from .unleash_export import normalise, payload_value, placement, unleash_context

__all__ = ["convert_unleash", "payload_value", "placement", "unleash_context"]

# The most conditions one strategy may become (absent-field alternatives multiply).
MAX_EXPANSION = 64
_PLACEMENTS = ("person", "group", "group_key", "distinct_id")


@dataclass
class _Rule:
    """One Unleash strategy, ready to become flagsvc conditions."""

    alternatives: list[list[dict[str, Any]]]  # ORed lists of ANDed filters
    rollout: int
    stickiness: str | None  # the strategy's stickiness as a bucket_by (None: no equivalent)
    namespace: str  # the strategy's groupId
    variants: list[dict[str, Any]] | None  # strategy variants, if it has any
    explicit: bool = False  # the stickiness was named (Unleash needs its value even at 100 %)


def _flag_bool(value: Any, what: str) -> bool:
    if isinstance(value, bool):
        return value
    raise Unimportable(f"{what} must be true or false, not {value!r}")


class _Converter:
    def __init__(self, data: Any, environment: str | None, group_types: Iterable[str],
                 fields: Mapping[str, str] | None) -> None:
        self.features, self.segments, self.environment = normalise(data, environment)
        self.fields = dict(fields or {})
        self.group_types = set(group_types) | self._stickiness_fields()
        self.result = Converted()
        self.name = ""  # the toggle being converted
        self.placed: dict[str, str] = {}  # its context fields -> placement()
        self.shared: set[str] = set()  # its fields read under different buckets
        self.by_name = {f.get("name"): f for f in self.features}

    def _stickiness_fields(self) -> set[str]:
        found = set()
        for feature in self.features:
            strategies = feature.get("strategies")
            sources = [s.get("parameters") for s in strategies
                       if isinstance(s, Mapping) and s.get("disabled") is not True] \
                if isinstance(strategies, list) else []
            variants = feature.get("variants")
            sources += variants if isinstance(variants, list) else []
            for s in sources:
                stickiness = s.get("stickiness") if isinstance(s, Mapping) else None
                if isinstance(stickiness, str) and stickiness not in (
                        "default", "userId", *BUCKET_ONLY, ""):
                    found.add(stickiness)
        return {g for g in found if g not in self.fields}

    def run(self) -> Converted:
        for feature in self.features:
            name = str(feature.get("name"))
            self.placed = {}
            try:
                flag = self._feature(feature)
            except Unimportable as e:
                self.result.refuse(name, str(e))
                continue
            except ToggleOff as e:
                flag = self._off(feature, str(e))
            except Exception as e:  # a malformed toggle no check foresaw: this one only
                self.result.refuse(name, f"malformed toggle ({type(e).__name__}: {e})")
                continue
            self.result.flags.append(flag)
            if self.placed:
                self.result.fields[flag["key"]] = dict(sorted(self.placed.items()))
        return self.result

    def _place(self, bucket: str | None) -> Any:
        def place(field: str) -> str:
            # One place per field and flag (the app sends each field once): a field that
            # strategies of different buckets read is a person property for all of them
            # (every condition can read those), else the strategy's default place.
            where = self.placed.get(field) or (
                "person" if field in self.shared and placement(
                    field, self.group_types, None, self.fields) == "person"
                else placement(field, self.group_types, bucket, self.fields))
            self.placed[field] = where
            return where
        return place

    def _shared_fields(self, feature: Mapping[str, Any],
                       strategies: list[Mapping[str, Any]]) -> set[str]:
        """Context fields that strategies bucketing on different identifiers read (in their
        constraints, their segments' or the feature variants' overrides)."""
        overrides = {o.get("contextName") for v in _listed(feature.get("variants"))
                     for o in _listed(v.get("overrides"))}
        seen: dict[str, set[Any]] = {}
        for s in strategies:
            params = s.get("parameters")
            stickiness = params.get("stickiness") if isinstance(params, Mapping) else None
            bucket = stickiness if isinstance(stickiness, str) and stickiness not in (
                "", "default", "userId") else PERSON
            read = set(overrides)
            constraints = list(_listed(s.get("constraints")))
            for seg in _listed(s.get("segments"), of=(int, str)):
                constraints += _listed(self.segments.get(seg))
            read |= {c.get("contextName") for c in constraints}
            for name in read:
                if isinstance(name, str):
                    seen.setdefault(name, set()).add(bucket)
        return {f for f, buckets in seen.items() if len(buckets) > 1}

    # ------------------------------------------------------------ one toggle

    def _off(self, feature: Mapping[str, Any], why: str) -> dict[str, Any]:
        """A toggle Unleash answers off for everyone: imported with no conditions."""
        self.placed = {}
        self.result.warnings.pop(self.name, None)
        self.result.warn(self.name, f"Unleash turns it off for everyone ({why}): imported "
                                    "with no conditions")
        return {"key": self.name, "name": self.name,
                "description": str(feature.get("description") or ""),
                "active": feature.get("enabled") is not False, "conditions": []}

    def _feature(self, feature: Mapping[str, Any]) -> dict[str, Any]:
        name = feature.get("name")
        if not isinstance(name, str) or not KEY.match(name) or name.isdigit():
            raise Unimportable("the name is no flagsvc key (letters, digits, '-', '_', '.')")
        self.name = name
        active = _flag_bool(feature.get("enabled", True), "enabled")
        # Unleash serves no disabled strategy: with none left the toggle is on for everyone.
        numbered = [(i, s) for i, s in enumerate(objects(feature.get("strategies"),
                                                         "strategies"))
                    if s.get("disabled") is not True]
        strategies = [s for _, s in numbered]
        self.shared = self._shared_fields(feature, strategies)
        rules = []
        for i, strategy in numbered:
            placed = dict(self.placed)
            try:
                rules.append(self._strategy(name, strategy))
            except Never as e:
                self.placed = placed  # what a left-out strategy reads is read by nothing
                self.result.warn(name, f"strategy {i + 1} ({strategy.get('name')}) never "
                                       f"matches ({e}): left out")
        if not strategies:  # Unleash: no strategy = on for everyone
            rules.append(_Rule([[]], 100, PERSON, name, None))
        dependencies = self._dependencies(feature)
        flag: dict[str, Any] = {"key": name, "name": name,
                                "description": str(feature.get("description") or ""),
                                "active": active}
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
        for dep in objects(feature.get("dependencies"), "dependencies"):
            parent = dep.get("feature")
            if not isinstance(parent, str):
                raise Unimportable("a dependency without a feature name")
            found = self.by_name.get(parent)
            if found is not None and found.get("dependencies"):
                raise Unimportable(f"its parent {parent!r} depends on another toggle: Unleash "
                                   "turns such a toggle off, flagsvc would follow the chain")
            wanted = dep.get("variants") or []
            if not isinstance(wanted, list):
                raise Unimportable(f"dependency on {parent}: variants must be a list")
            if dep.get("enabled", True) is False:
                value: Any = False
            elif wanted and found is not None and not _has_variants(found):
                # Unleash takes a parent without variants as satisfying any variant list
                self.result.warn(self.name, f"depends on variants {wanted} of {parent}, which "
                                            "has none: Unleash, and so flagsvc, only asks it "
                                            "to be on")
                value = True
            else:
                # Unleash names "no variant" `disabled`: flagsvc's value is then `true`.
                value = [True if v == "disabled" else v for v in wanted] or True
            out.append({"type": "flag", "key": parent, "operator": "exact", "value": value})
        return out

    def _strategy(self, name: str, s: Mapping[str, Any]) -> _Rule:
        kind = s.get("name")
        params = object_of(s.get("parameters"), f"strategy {kind} parameters")
        rollout, stickiness, filters = 100, "default", []
        namespace = params.get("groupId")
        if kind == "default":
            pass
        elif kind == "flexibleRollout":
            rollout = _percent(params.get("rollout"), kind)
            stickiness = params.get("stickiness") or "default"
        elif kind == "gradualRolloutUserId":
            rollout, stickiness = _percent(params.get("percentage"), kind), "userId"
            if not isinstance(namespace, str):
                raise Never("gradualRolloutUserId without groupId")
            # Unleash turns it off without a userId, whatever the percentage.
            self.placed["userId"] = "distinct_id"
            filters.append(make_filter("distinct_id", "userId", "is_set", None))
        elif kind == "gradualRolloutSessionId":
            rollout, stickiness = _percent(params.get("percentage"), kind), "sessionId"
        elif kind == "gradualRolloutRandom":
            rollout, stickiness = _percent(params.get("percentage"), kind), "random"
        elif kind == "userWithId":
            ids = [i.strip() for i in str(params.get("userIds") or "").split(",") if i.strip()]
            if not ids:
                raise Never("no user ids")
            self.placed["userId"] = "distinct_id"
            filters.append(text_equals("distinct_id", "userId", ids))
        elif kind == "remoteAddress":
            ips = [i.strip() for i in str(params.get("IPs") or "").split(",") if i.strip()]
            probe = choices({"contextName": "remoteAddress", "operator": "IN_CIDR",
                             "values": ips}, self._place(None), None,
                            lambda m: self.result.warn(name, f"remoteAddress strategy: {m}"))
            filters += probe[0]
        else:
            raise Unimportable(f"strategy {kind!r} has no flagsvc equivalent")
        if not isinstance(stickiness, str):
            raise Unimportable(f"{kind}: stickiness {stickiness!r} is no field name")
        if rollout == 0:
            raise Never("0 %")
        bucket = _bucket(stickiness)
        if stickiness == "sessionId":  # off without a session, even at 100 %
            raise Unimportable(f"{kind} on sessionId: flagsvc has no sessions (bucket on the "
                               "distinct id or a group key)")
        if bucket is None and rollout < 100:
            raise Unimportable(f"{kind} on {stickiness}: flagsvc buckets on the distinct id or "
                               "a group key")
        alternatives = [filters]
        for c in self._constraints(s):
            found = choices(c, self._place(bucket), self.environment,
                            lambda m: self.result.warn(name, m))
            alternatives = [a + b for a, b in product(alternatives, found)]
            if len(alternatives) > MAX_EXPANSION:
                raise Unimportable(f"more than {MAX_EXPANSION} conditions for one strategy "
                                   "(each NOT_IN or inverted constraint doubles them, an "
                                   "inverted SEMVER or DATE one triples them)")
        variants = [dict(v) for v in objects(s.get("variants"), "strategy variants")] or None
        return _Rule(alternatives, rollout, bucket,
                     namespace if isinstance(namespace, str) else name, variants,
                     explicit=stickiness not in ("default", ""))

    def _constraints(self, s: Mapping[str, Any]) -> list[Any]:
        found = list(objects(s.get("constraints"), "constraints"))
        segments = s.get("segments") or []
        if not isinstance(segments, list):
            raise Unimportable("segments must be a list of segment ids")
        for seg in segments:
            if not isinstance(seg, (int, str)) or seg not in self.segments:
                raise ToggleOff(f"segment {seg!r} does not exist")
            constraints = self.segments[seg]
            if constraints is None:
                raise Unimportable(f"segment {seg}'s constraints are not in the file (Unleash's "
                                   "admin export names segments only): import the client API "
                                   "state (/api/client/features) instead")
            found += constraints
        return found

    # ------------------------------------------------------------ variants

    def _variant_source(self, feature: Mapping[str, Any], rule: _Rule
                        ) -> tuple[list[dict[str, Any]], str, str | None]:
        """(variants, namespace, bucket) that decide the variant when `rule` matches."""
        if rule.variants:
            return rule.variants, rule.namespace, rule.stickiness
        variants = [dict(v) for v in objects(feature.get("variants"), "variants")]
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
            if not isinstance(v.get("name"), str) or not KEY.match(v["name"]):
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
        conditions: list[dict[str, Any]] = []
        for rule in rules:
            variants, v_ns, v_bucket = self._variant_source(feature, rule)
            hashes_variant = sum(1 for v in variants if v.get("weight")) > 1
            hashed = rule.stickiness if rule.rollout < 100 else None  # what the rollout hashes
            if hashed is not None:
                namespaces.add(rule.namespace)
            # A named stickiness needs its value even at 100 % (Unleash: off without it);
            # a group-sticky strategy stays about that group (previews count its groups).
            own = hashed or (rule.stickiness if rule.explicit else None)
            bucket = own
            required: list[dict[str, Any]] = []
            if hashes_variant:
                if v_bucket is None:
                    raise Unimportable("its variants are sticky on a session or at random: "
                                       "flagsvc buckets on the distinct id or a group key")
                if hashed is not None and hashed != v_bucket:
                    raise Unimportable(f"its rollout buckets on {hashed} and its variants on "
                                       f"{v_bucket}: flagsvc uses one identifier per condition")
                if own is not None and own != v_bucket:
                    required.append(_present(own))
                bucket = v_bucket
                namespaces.add(v_ns)
            bucket = bucket or PERSON
            for b in (bucket, own):
                if b not in (None, PERSON):
                    self.placed.setdefault(b, f"group_key:{b}")
            if not rule.variants:
                # Feature variants: their overrides first (in Unleash they fix the variant of
                # a user this strategy lets in), with no variant hash, only the rollout's
                # identifier; a strategy's own variants know no overrides.
                fixed = {"rollout_percentage": rule.rollout, "bucket_by": own or PERSON}
                conditions += self._overrides(feature, rule, fixed)
            base = {"rollout_percentage": rule.rollout, "bucket_by": bucket}
            conditions += [{**base, "properties": required + alt, "variant": None}
                           for alt in rule.alternatives]
            if bucket not in (PERSON, own):  # the variants' stickiness alone names it
                self.result.warn(name, f"a request without a key of {bucket} is off in "
                                       "flagsvc (no_group_type); Unleash picks its variant "
                                       "from a session id or a random number")
        if "" in namespaces:
            raise Unimportable("it hashes on an empty groupId: Unleash hashes ':<id>', "
                               "flagsvc needs a hash namespace")
        if len(namespaces) > 1:
            raise Unimportable(f"its rollouts and variants hash on different groupIds "
                               f"({', '.join(sorted(namespaces))}): flagsvc has one hash "
                               "namespace per flag")
        return conditions, next(iter(namespaces), None)

    def _overrides(self, feature: Mapping[str, Any], rule: _Rule,
                   base: dict[str, Any]) -> list[dict[str, Any]]:
        """Variant overrides: the rule's conditions narrowed to the listed values, with a
        fixed variant (Unleash checks overrides, in variant order, once the toggle is on)."""
        out = []
        for v in objects(feature.get("variants"), "variants"):
            for o in objects(v.get("overrides"), f"variant {v.get('name')} overrides"):
                field, values = o.get("contextName"), o.get("values") or []
                if not isinstance(field, str) or not isinstance(values, list) or not values:
                    continue
                if field in BUCKET_ONLY or field == "currentTime":
                    raise Unimportable(f"a variant override on {field}")
                match = text_equals(self._place(rule.stickiness)(field), field, values)
                for alt in rule.alternatives:
                    out.append({**base, "properties": [*alt, match], "variant": v.get("name")})
        return out


def _listed(value: Any, of: type | tuple[type, ...] = Mapping) -> list[Any]:
    """The entries of type `of` of a list from the export (anything else: none): for
    looking ahead, where the conversion itself reports what is malformed."""
    return [v for v in value if isinstance(v, of)] if isinstance(value, list) else []


def _present(bucket: str) -> dict[str, Any]:
    """A filter that the request has the identifier of `bucket`."""
    if bucket == PERSON:
        return make_filter("distinct_id", "userId", "is_set", None)
    return make_filter(f"group_key:{bucket}", bucket, "is_set", None)


def _has_variants(feature: Mapping[str, Any]) -> bool:
    if feature.get("variants"):
        return True
    strategies = feature.get("strategies")
    return isinstance(strategies, list) and any(
        isinstance(s, Mapping) and s.get("variants") and s.get("disabled") is not True
        for s in strategies)


def _percent(value: Any, kind: str) -> int:
    """Unleash reads a percentage as a whole number, in digits only ("100.0": no rollout)."""
    if isinstance(value, int) and not isinstance(value, bool):
        n = value
    elif isinstance(value, str) and value.isascii() and value.isdigit():
        n = int(value)
    else:
        raise Never(f"{kind}: rollout {value!r} is not a whole number")
    if not 0 <= n <= 100:
        raise Never(f"{kind}: rollout {value!r} is not 0-100")
    return n


def _bucket(stickiness: Any) -> str | None:
    """flagsvc's bucket_by for an Unleash stickiness (None: no flagsvc equivalent)."""
    if stickiness in (None, "", "default", "userId"):
        return PERSON
    if stickiness in BUCKET_ONLY:
        return None
    if not isinstance(stickiness, str):
        raise Unimportable(f"stickiness {stickiness!r} is no field name")
    return stickiness


def _signature(variants: list[dict[str, Any]]) -> str:
    return json.dumps([(v.get("name"), v.get("weight"), v.get("payload")) for v in variants],
                      sort_keys=True, default=str)


def convert_unleash(data: Any, environment: str | None = None,
                    group_types: Iterable[str] = (),
                    fields: Mapping[str, str] | None = None) -> Converted:
    """Unleash toggles as flagsvc flags (see the module docstring).

    `group_types`: context fields that name groups (stickiness fields always do);
    `fields`: context field -> `person`, `group:<type>`, `group_key:<type>` or
    `distinct_id`, overriding the default placement."""
    for name, where in (fields or {}).items():
        kind, _, group_type = str(where).partition(":")
        if kind not in _PLACEMENTS or (kind in ("group", "group_key")) != bool(group_type):
            raise Unimportable(f"field {name}: {where!r} is not person, group:<type>, "
                               "group_key:<type> or distinct_id")
    return _Converter(data, environment, group_types, fields).run()
