"""Why a flag has its value for a context: the evaluation, condition by condition."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .compile import CompiledFlag, source_code
from .context import NULL_RESOLVER, Context, Resolver
from .evaluate import Evaluation
from .hashing import bucket


def explain(
    flags: Mapping[str, CompiledFlag], key: str, ctx: Context, resolver: Resolver = NULL_RESOLVER
) -> dict[str, Any] | None:
    """A JSON-ready account of one flag's evaluation (None if the flag does not exist)."""
    ev = Evaluation(flags, ctx, resolver)
    result = ev.flag(key)
    if result is None:
        return None
    flag = flags[key]
    conditions = []
    for index, cond in enumerate(flag.conditions):
        found = ev.group_key(cond.bucket_by)
        filters = []
        for f in cond.filters:
            props = ev.filter_properties(source_code(f), f.group_type, f.key)
            if f.source == "flag":
                dep = ev.flag(f.key)
                actual = dep.value if dep is not None else None
            else:
                actual = (props or {}).get(f.key)
            filters.append({
                "type": f.source, "group_type": f.group_type, "key": f.key,
                "operator": f.operator, "value": f.value, "negate": f.negate,
                "actual": actual, "matched": f.test(props, ctx.now),
            })
        b = bucket(flag.namespace, found[0]) if found else None
        conditions.append({
            "index": index,
            "bucket_by": cond.bucket_by,
            "group_key": found[0] if found else None,
            "inferred_from": [list(p) for p in found[1]] if found and found[1] else None,
            "bucket": b,
            "rollout_percentage": cond.rollout,
            "in_rollout": b is not None and b <= cond.rollout,
            "properties": filters,
            "matched": index == result.condition_index,
        })
    return {
        "key": key,
        "value": result.value,
        "enabled": result.enabled,
        "variant": result.variant,
        "reason": result.reason,
        "condition_index": result.condition_index,
        "error": result.error,
        "bucket_by": result.bucket_by or flag.bucket_by,
        "group_key": result.identifier,
        "inferred_from": [list(p) for p in result.inferred_from] if result.inferred_from else None,
        "bucket": bucket(flag.namespace, result.identifier) if result.identifier else None,
        "payload": result.payload,
        "conditions": conditions,
    }
