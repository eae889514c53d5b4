"""A cache of stored property sets bounded by bytes (and entries), aged out in bulk.

Why not `cachetools.TTLCache`: a hit there runs Python code (expiry check, LRU link
update) under a lock, about as long as evaluating a flag. Here a hit is one C-level
`dict.get` on a per-table dict (`table()`), safe without a lock (the GIL makes it atomic);
only writes take the lock.
Entries leave in insertion order: when the budget is exceeded (oldest first), when they are
older than `max_age` (checked by `expire()`, which the owner calls on its clock — every
`cache_seconds` — instead of on every read), or when evicted by name (ingestion changed them).

Sizes are estimates (`size_of`: `sys.getsizeof` over the JSON-like value, keys and strings
included, plus `ENTRY_OVERHEAD` for the key tuple and the bookkeeping), so a budget bounds
the memory the cached values hold; strings shared between entries are counted in each.
"""

from __future__ import annotations

import math
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable
from typing import Any

intern = sys.intern
_INTERN_MAX = 64  # longer strings are rarely shared
_MAX_INTS = 16_384  # distinct ints canonical() shares (≈ 1 MB)

# Per entry beside the value: the key tuple and its strings (counted separately), the
# OrderedDict node and slot, the bookkeeping tuple (measured with tracemalloc: ~190 bytes).
ENTRY_OVERHEAD = 200
DEFAULT_MAX_BYTES = 64 * 1024 * 1024


def size_of(value: Any, _depth: int = 0) -> int:
    """Bytes held by a JSON-like value (dicts, lists, strings, numbers), estimated."""
    size = sys.getsizeof(value)
    if _depth > 8:
        return size
    if value.__class__ is dict or isinstance(value, dict):
        for k, v in value.items():
            size += size_of(k, _depth + 1) + size_of(v, _depth + 1)
    elif isinstance(value, (list, tuple)):
        for v in value:
            size += size_of(v, _depth + 1)
    return size


class PropertyCache:
    """key -> value, at most `max_bytes` (estimated) and `max_entries`; see the module doc.

    Keys are tuples; the last item is the leaf (a group key, a distinct id) and the rest
    names a table (`("g", project, group type)`), so a hot reader can hold the plain dict
    of one table (`table()`) and look a leaf up with one string-keyed `dict.get`."""

    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES, max_entries: int | None = None,
                 max_age: float = math.inf, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_bytes = max_bytes
        self.max_entries = max_entries if max_entries is not None else sys.maxsize
        self.max_age = max_age
        self.bytes = 0
        # Bumped by every eviction by name or clear: a reader that started before one must
        # not store what it read (it may be the value just evicted).
        self.generation = 0
        self._clock = clock
        self._tables: dict[tuple, dict[Hashable, Any]] = {}
        self._order: OrderedDict[tuple, tuple[float, int]] = OrderedDict()  # (stored at, bytes)
        self._lock = threading.Lock()
        self._puts = 0  # since the last compact()
        self._ints: dict[int, int] = {}  # canonical() shares equal ints (at most _MAX_INTS)

    def canonical(self, value: Any) -> Any:
        """A property set as the cache keeps it: a dict is copied with its string keys and
        short string values interned and its ints shared — one object for `"plan"`,
        `"enterprise"` or `120` however many sets have it. The flags' interned names and
        values (fastpath.py) then match by identity, and a lookup touches the set's own
        dict and little else: sets fetched one by one (between HTTP requests, say) sit among
        those requests' garbage, and at 20,000 groups reading their scattered values made
        a warm stored-properties call 1.5x slower than one with the properties given."""
        if value.__class__ is not dict:
            return value
        ints = self._ints
        out = {}
        for k, v in value.items():
            if k.__class__ is str:
                k = intern(k)
            if v.__class__ is str:
                if len(v) <= _INTERN_MAX:
                    v = intern(v)
            elif v.__class__ is int:
                shared = ints.get(v)
                if shared is not None:
                    v = shared
                elif len(ints) < _MAX_INTS:
                    ints[v] = v
            out[k] = v
        return out

    def table(self, name: tuple) -> dict[Hashable, Any]:
        """The leaf -> value dict of the keys `name + (leaf,)`: always the same object
        (emptied, never replaced), to read without a lock and never to write."""
        found = self._tables.get(name)
        if found is None:
            with self._lock:
                found = self._tables.setdefault(name, {})
        return found

    def get(self, key: tuple, default: Any = None) -> Any:
        found = self._tables.get(key[:-1])
        return default if found is None else found.get(key[-1], default)

    def __len__(self) -> int:
        return len(self._order)

    def __contains__(self, key: tuple) -> bool:
        return key in self._order

    def __getitem__(self, key: tuple) -> Any:
        value = self.get(key, _ABSENT)
        if value is _ABSENT:
            raise KeyError(key)
        return value

    def __setitem__(self, key: tuple, value: Any) -> None:
        """Store `value` as it is (`put` makes the canonical copy)."""
        self.put(key, value, copy=False)

    def put(self, key: tuple, value: Any, generation: int | None = None,
            copy: bool = True) -> bool:
        """Store `value` (as `self.canonical(value)` unless `copy` is False: the caller
        passes one already); with `generation`, only if nothing was evicted since the caller read
        `self.generation` (False then). An entry larger than the budget is not kept."""
        if copy:
            value = self.canonical(value)
        size = ENTRY_OVERHEAD + size_of(key) + size_of(value)
        with self._lock:
            if generation is not None and generation != self.generation:
                return False
            self._drop(key)
            if size > self.max_bytes:
                return False
            table = self._tables.get(key[:-1])
            if table is None:
                table = self._tables[key[:-1]] = {}
            table[key[-1]] = value
            self._puts += 1
            self._order[key] = (self._clock(), size)
            self.bytes += size
            order = self._order
            while self.bytes > self.max_bytes or len(order) > self.max_entries:
                old, (_, old_size) = order.popitem(last=False)
                del self._tables[old[:-1]][old[-1]]
                self.bytes -= old_size
        return True

    def _drop(self, key: tuple) -> None:
        meta = self._order.pop(key, None)
        if meta is not None:
            del self._tables[key[:-1]][key[-1]]
            self.bytes -= meta[1]

    def pop(self, key: tuple, default: Any = None) -> Any:
        with self._lock:
            value = self.get(key, default)
            self._drop(key)
            self.generation += 1
        return value

    def evict(self, keys: Iterable[tuple]) -> None:
        """Forget these keys (ingestion changed them)."""
        with self._lock:
            for key in keys:
                self._drop(key)
            self.generation += 1

    def clear(self) -> None:
        with self._lock:
            for table in self._tables.values():
                table.clear()
            self._order.clear()
            self.bytes = 0
            self.generation += 1

    def expire(self, now: float | None = None) -> int:
        """Drop the entries older than `max_age` (the oldest are first); how many."""
        if self.max_age == math.inf or not self._order:
            return 0
        limit = (self._clock() if now is None else now) - self.max_age
        dropped = 0
        with self._lock:
            order = self._order
            while order:
                key = next(iter(order))
                born, size = order[key]
                if born > limit:
                    break
                del order[key]
                del self._tables[key[:-1]][key[-1]]
                self.bytes -= size
                dropped += 1
        return dropped

    def compact(self, force: bool = False) -> bool:
        """Lay the stored sets out again, one after another, once the entries stored since
        the last time are half the cache (amortized: about one more copy per entry).

        Sets stored one by one between network or database reads end up scattered among
        those reads' garbage; the hot reader then waits on memory more than it computes
        (at 20,000 groups, sets fetched over HTTP made a warm stored-properties call 1.5x
        slower than the same sets stored in one go)."""
        if not force and self._puts < max(1024, len(self._order) // 2):
            return False
        with self._lock:
            for table in self._tables.values():
                for leaf, value in table.items():  # same keys: iteration stays valid
                    if value.__class__ is dict:
                        table[leaf] = dict(value)
            self._puts = 0
        return True

    def stats(self) -> dict[str, Any]:
        """Entries, estimated bytes, the budget, and bytes per entry."""
        n = len(self._order)
        return {"entries": n, "bytes": self.bytes, "max_bytes": self.max_bytes,
                "bytes_per_entry": round(self.bytes / n) if n else 0}


_ABSENT = object()
