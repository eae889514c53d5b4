"""Reading an Unleash export: the admin export in the client API's shape, variant payloads
as JSON values, where a converted flag reads each context field (`placement`), and the
flagsvc request that stands for an Unleash context (`unleash_context`)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from ..engine import Context
from ..engine.compile import PERSON
from ..engine.operators import to_number
from . import Unimportable, no_constant, objects
from .unleash_constraints import BUCKET_ONLY


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


def payload_value(payload: Any) -> Any:
    """An Unleash variant payload ({"type", "value"}) as the JSON value apps get."""
    if not isinstance(payload, Mapping):
        return payload
    kind, value = payload.get("type"), payload.get("value")
    if kind == "json" and isinstance(value, str):
        try:
            return json.loads(value, parse_constant=no_constant)
        except ValueError:
            raise Unimportable(f"variant payload is not valid JSON: {value[:80]!r}") from None
    if kind == "number":
        number = to_number(value)
        if number is None:
            raise Unimportable(f"variant payload is not a number: {value!r}")
        return number
    return value


def normalise(data: Any, environment: str | None
              ) -> tuple[list[dict[str, Any]], dict[Any, list[Any] | None], str | None]:
    """(toggles in the client API shape, segment id -> constraints (None: the export does
    not give them), the environment taken)."""
    if not isinstance(data, Mapping) or not isinstance(data.get("features"), list):
        raise Unimportable('expected an Unleash export: {"features": [...], ...}')
    segments: dict[Any, list[Any] | None] = {}
    for s in objects(data.get("segments"), "segments"):
        if isinstance(s.get("id"), (int, str)):
            # Unleash's admin export names segments without their constraints.
            segments[s["id"]] = (list(objects(s["constraints"], f"segment {s['id']}"))
                                 if "constraints" in s else None)
    features = objects(data["features"], "features")
    if "featureStrategies" not in data:
        return [dict(f) for f in features], segments, environment
    # The admin export (one environment's strategies; on/off per environment; dependencies
    # beside the toggles): made into the client API's shape.
    strategies = objects(data.get("featureStrategies"), "featureStrategies")
    environments = objects(data.get("featureEnvironments"), "featureEnvironments")
    envs: set[str] = {e["environment"] for e in [*environments, *strategies]
                      if isinstance(e.get("environment"), str)}
    if environment is None:
        if len(envs) > 1:
            raise Unimportable(f"the export has environments {', '.join(sorted(envs))}: "
                               "name one (environment=)")
        environment = next(iter(envs), None)
    elif envs and environment not in envs:
        raise Unimportable(f"the export has environment {', '.join(sorted(envs))}, "
                           f"not {environment!r}")
    parents = _dependencies(objects(data.get("dependencies"), "dependencies"))
    out = []
    for f in features:
        name = f.get("name")
        toggle = {k: v for k, v in f.items() if k not in ("strategies", "variants")}
        toggle["strategies"] = sorted(
            (s for s in strategies if s.get("featureName") == name
             and s.get("environment", environment) == environment),
            key=lambda s: to_number(s.get("sortOrder")) or 0)
        env: Mapping[str, Any] = next((e for e in environments
                                       if e.get("featureName", e.get("name")) == name
                                       and e.get("environment", environment) == environment),
                                      {})
        toggle["enabled"] = env.get("enabled", False) is True
        toggle["variants"] = env.get("variants") or f.get("variants") or []
        toggle["dependencies"] = parents.get(name, [])
        out.append(toggle)
    return out, segments, environment


def _dependencies(rows: list[Mapping[str, Any]]) -> dict[Any, list[dict[str, Any]]]:
    """Child toggle -> its parents, from the admin export's `dependencies`: nested
    ({feature: child, dependencies: [{feature: parent, enabled, variants}]}, as Unleash
    exports them) or one row a link ({feature: child, parent, enabled, variants})."""
    out: dict[Any, list[dict[str, Any]]] = {}
    for row in rows:
        child = row.get("feature")
        links = (objects(row["dependencies"], f"dependencies of {child}")
                 if "dependencies" in row else
                 [{"feature": row.get("parent"), "enabled": row.get("enabled", True),
                   "variants": row.get("variants") or []}])
        out.setdefault(child, []).extend(dict(link) for link in links)
    return out


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
        if where is None and field not in ("userId", *BUCKET_ONLY):
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
