"""Last-write-wins merging of properties, per key, by event timestamp.

Each stored object keeps `{key: timestamp of its last write}` beside its properties. A
write older than the stored one for that key is ignored, so a late, out-of-order event
never overwrites a newer value; equal timestamps go to the later-received write. `$unset`
leaves its timestamp behind (a tombstone) so an older `$set` cannot resurrect the key.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping


def apply_set(props: dict[str, Any], stamps: dict[str, float], values: Mapping[str, Any],
              ts: float) -> bool:
    changed = False
    for k, v in values.items():
        prev = stamps.get(k)
        if prev is not None and prev > ts:
            continue
        if props.get(k, _ABSENT) != v or k not in props:
            changed = True
        props[k] = v
        stamps[k] = ts
    return changed


def apply_set_once(props: dict[str, Any], stamps: dict[str, float], values: Mapping[str, Any],
                   ts: float) -> bool:
    changed = False
    for k, v in values.items():
        if k in props:
            continue
        props[k] = v
        stamps[k] = max(ts, stamps.get(k, ts))
        changed = True
    return changed


def apply_unset(props: dict[str, Any], stamps: dict[str, float], keys: Iterable[str],
                ts: float) -> bool:
    changed = False
    for k in keys:
        prev = stamps.get(k)
        if prev is not None and prev > ts:
            continue
        if k in props:
            del props[k]
            changed = True
        stamps[k] = ts
    return changed


_ABSENT = object()
