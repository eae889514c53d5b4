"""Last-write-wins merging of properties, per key, by event timestamp.

Each stored object keeps `{key: stamp}` beside its properties, so the result does not depend
on the order in which events arrive:

- a float stamp is the event time of the key's last `$set` or `$unset`. A write older than
  it is ignored, so a late, out-of-order event never overwrites a newer value; equal times
  go to the later-received write. `$unset` leaves its stamp behind (a tombstone) so an older
  `$set` cannot resurrect the key.
- a list stamp `[clock, once]` marks a value written by `$set_once` at time `once`; `clock`
  is the time of the last `$set`/`$unset` before it (or None). Any `$set` not older than
  `clock` replaces such a value (in event order the `$set` came first, or last), and an
  earlier `$set_once` replaces a later one (in event order the earliest one found the key
  absent).

`$set_once` stays order-independent against `$set`/`$unset` as long as only the earliest
`$set_once` after the last `$unset` matters; a `$set_once` discarded because an earlier one
held the key is not remembered (that would need unbounded history).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

Stamp = float | list


def clock(stamp: Stamp | None) -> float | None:
    """Time of the last `$set` / `$unset` of a key, None if it never had one."""
    if isinstance(stamp, list):
        return stamp[0]
    return stamp


def _once(stamp: Stamp | None) -> float | None:
    return stamp[1] if isinstance(stamp, list) else None


def apply_set(props: dict[str, Any], stamps: dict[str, Stamp], values: Mapping[str, Any],
              ts: float) -> bool:
    changed = False
    for k, v in values.items():
        prev = clock(stamps.get(k))
        if prev is not None and prev > ts:
            continue
        if k not in props or _differs(props[k], v):
            changed = True
        props[k] = v
        stamps[k] = ts
    return changed


def apply_set_once(props: dict[str, Any], stamps: dict[str, Stamp], values: Mapping[str, Any],
                   ts: float) -> bool:
    changed = False
    for k, v in values.items():
        stamp = stamps.get(k)
        prev, once = clock(stamp), _once(stamp)
        if prev is not None and prev > ts:
            continue  # a later $set or $unset decides the key
        if k in props and (once is None or once <= ts):
            # present from a $set, or from an earlier (or tied, earlier-received) $set_once
            continue
        if k not in props or _differs(props[k], v):
            changed = True
        props[k] = v
        stamps[k] = [prev, ts]
    return changed


def apply_unset(props: dict[str, Any], stamps: dict[str, Stamp], keys: Iterable[str],
                ts: float) -> bool:
    changed = False
    for k in keys:
        stamp = stamps.get(k)
        prev, once = clock(stamp), _once(stamp)
        if prev is not None and prev > ts:
            continue
        if once is not None and once > ts and k in props:
            stamps[k] = [ts, once]  # in event order the $set_once comes after this $unset
            continue
        if k in props:
            del props[k]
            changed = True
        stamps[k] = ts
    return changed


def merge_into(props: dict[str, Any], stamps: dict[str, Stamp], other_props: Mapping[str, Any],
               other_stamps: Mapping[str, Stamp]) -> bool:
    """Merge another object's properties (an aliased person) key by key, by the same rules:
    the later `$set`/`$unset` wins, tombstones included; between `$set_once` values the
    earlier wins; on a full tie the receiving object keeps its own."""
    changed = False
    for k in set(other_props) | set(other_stamps):
        mine, theirs = stamps.get(k), other_stamps.get(k)
        if k not in props and mine is None:
            take = True
        else:
            a, b = clock(mine), clock(theirs)
            a = float("-inf") if a is None else a
            b = float("-inf") if b is None else b
            if b != a:
                take = b > a
            else:
                o_mine, o_theirs = _once(mine), _once(theirs)
                take = (o_mine is not None and o_theirs is not None and o_theirs < o_mine
                        and k in other_props)
        if not take:
            continue
        if k in other_props:
            if k not in props or props[k] != other_props[k]:
                changed = True
            props[k] = other_props[k]
        elif k in props:
            del props[k]
            changed = True
        if theirs is not None:
            stamps[k] = list(theirs) if isinstance(theirs, list) else theirs
        else:
            stamps.pop(k, None)
    return changed


def _differs(old: Any, new: Any) -> bool:
    """A change, type included: 1 -> True or 1 -> 1.0 is a change (operators see it)."""
    return type(old) is not type(new) or old != new
