"""What one stored group or person may hold (SPEC §11; limits.py): the properties an
ingestion call writes are admitted key by key before they are merged (store/batch.py).

- a value longer than MAX_PROPERTY_VALUE_LENGTH (a string's characters, the JSON text of
  anything else) is not stored;
- a key the profile lacks is not stored once the profile holds MAX_STORED_PROPERTIES keys,
  or when it would take the profile's JSON past MAX_STORED_PROFILE_BYTES (a changed value
  counts by how much it grows).

What is refused is left out with one warning per profile and reason (IngestResult.warn); the
event and its other properties are kept. Cost: O(size of the call) per call, plus one
measure of the stored profile per batch (what writing it back costs anyway), never
O(stored profile) per key.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from ..limits import (
    MAX_PROPERTY_VALUE_LENGTH,
    MAX_STORED_PROFILE_BYTES,
    MAX_STORED_PROPERTIES,
    value_length,
)
from .batch_load import _Row
from .db import dumps

_ENTRY_OVERHEAD = 6  # quotes, colon, comma of one JSON entry


def _entry_bytes(key: str, value: Any) -> int:
    size = value_length(value)
    if isinstance(value, str):
        size = len(value.encode("utf-8", "surrogatepass")) + 2
    elif value is None or value is True or value is False:
        size = 5
    return len(key.encode("utf-8", "surrogatepass")) + size + _ENTRY_OVERHEAD


def _stored_bytes(row: _Row) -> int:
    size = row.extra.get("bytes")
    if size is None:
        size = row.extra["bytes"] = len(dumps(row.properties).encode("utf-8",
                                                                      "surrogatepass"))
    return size


def admit(row: _Row, values: Mapping[str, Any], where: str,
          warn: Callable[[str], None]) -> Mapping[str, Any]:
    """The part of `values` (a $set / $set_once / group traits) that `row` may store."""
    if not values:
        return values
    props = row.properties
    count = len(props)
    size = _stored_bytes(row)
    kept: dict[str, Any] = {}
    refused = {"long": 0, "keys": 0, "bytes": 0}
    for key, value in values.items():
        if ((value.__class__ is not str or len(value) > MAX_PROPERTY_VALUE_LENGTH)
                and value_length(value) > MAX_PROPERTY_VALUE_LENGTH):
            refused["long"] += 1
            continue
        new = key not in props and key not in kept
        if new and count >= MAX_STORED_PROPERTIES:
            refused["keys"] += 1
            continue
        grows = _entry_bytes(key, value) - (_entry_bytes(key, props[key]) if key in props
                                            else 0)
        if grows > 0 and size + grows > MAX_STORED_PROFILE_BYTES:
            refused["bytes"] += 1
            continue
        size += max(grows, 0)
        if new:
            count += 1
        kept[key] = value
    row.extra["bytes"] = size
    if refused["long"]:
        warn(f"{where}: {refused['long']} properties not stored: a value is longer than "
             f"{MAX_PROPERTY_VALUE_LENGTH} characters")
    if refused["keys"]:
        warn(f"{where}: {refused['keys']} properties not stored: it holds "
             f"{MAX_STORED_PROPERTIES} properties, the limit")
    if refused["bytes"]:
        warn(f"{where}: {refused['bytes']} properties not stored: its properties would "
             f"pass {MAX_STORED_PROFILE_BYTES} bytes, the limit")
    return kept if len(kept) != len(values) else values
