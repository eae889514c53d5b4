"""flagsvc filters as the importers build them: where a source field is read (`person`,
`distinct_id`, `group:<type>` a group's property, `group_key:<type>` its key), and exact
text equality, which flagsvc's `exact` is not for numbers ("12" equals "12.0" there)."""

from __future__ import annotations

from typing import Any

from ..engine.compile import DISTINCT_ID_PROPERTY, GROUP_KEY_PROPERTY
from ..engine.operators import to_number

_REGEX_SPECIAL = frozenset("\\.^$|?*+()[]{}-")


def make_filter(where: str, key: str, operator: str, value: Any, negate: bool = False,
                case_insensitive: bool = False) -> dict[str, Any]:
    """A flagsvc filter reading Unleash field `key` where `placement()` put it."""
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


def text_equals(where: str, key: str, values: list[Any], negate: bool = False,
                case_insensitive: bool = False) -> dict[str, Any]:
    """Exact text equality with any of `values`: flagsvc's `exact`, unless a value reads as a
    number (then `exact` would also take "12.0" for "12"): an anchored regex."""
    texts = [str(v) for v in values]
    if not any(to_number(t) is not None for t in texts):
        return make_filter(where, key, "exact", texts, negate, case_insensitive)
    pattern = "^(?:" + "|".join("".join("\\" + ch if ch in _REGEX_SPECIAL else ch for ch in t)
                                for t in texts) + ")$"
    return make_filter(where, key, "regex", pattern, negate, case_insensitive)
