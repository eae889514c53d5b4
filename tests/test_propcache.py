"""propcache.PropertyCache: the byte budget and the entry cap hold (oldest out first), ages
out in bulk, a read that raced an eviction is not stored, tables stay the same objects
(FlagClient holds them), and stored sets share their property names, short values, ints."""

from __future__ import annotations

import sys

from flagsvc.propcache import ENTRY_OVERHEAD, PropertyCache, size_of


def _props(i: int) -> dict:
    return {"plan": "pro", "employees": 1000 + i, "name": f"organization number {i}"}


def test_the_byte_budget_holds_and_the_oldest_leave_first():
    one = (ENTRY_OVERHEAD + size_of(("g", 1, "org", "o-000"))
           + size_of(PropertyCache().canonical(_props(0))))
    cache = PropertyCache(max_bytes=10 * one + one // 2)
    for i in range(50):
        cache.put(("g", 1, "org", f"o-{i:03d}"), _props(i))
        assert cache.bytes <= cache.max_bytes
    assert len(cache) == 10
    assert [k[-1] for k in cache._order] == [f"o-{i:03d}" for i in range(40, 50)]
    assert cache.table(("g", 1, "org"))["o-049"] == _props(49)
    assert cache.get(("g", 1, "org", "o-000")) is None
    assert abs(cache.stats()["bytes_per_entry"] - one) <= 8  # names one digit longer


def test_the_entry_cap_holds_too():
    cache = PropertyCache(max_entries=3)
    for i in range(5):
        cache.put(("p", None, f"u{i}"), {"i": i})
    assert sorted(cache.table(("p", None))) == ["u2", "u3", "u4"]


def test_entries_age_out_when_expire_runs():
    now = [100.0]
    cache = PropertyCache(max_age=10, clock=lambda: now[0])
    cache.put(("g", 1, "org", "a"), {"x": 1})
    now[0] = 105.0
    cache.put(("g", 1, "org", "b"), {"x": 2})
    now[0] = 110.5
    assert cache.expire() == 1
    assert ("g", 1, "org", "a") not in cache and ("g", 1, "org", "b") in cache
    assert cache.bytes == sum(size for _, size in cache._order.values())


def test_a_read_that_raced_an_eviction_is_not_stored():
    cache = PropertyCache()
    generation = cache.generation
    cache.evict([("g", 1, "org", "a")])  # ingestion changed it while we were reading
    assert cache.put(("g", 1, "org", "a"), {"plan": "old"}, generation) is False
    assert ("g", 1, "org", "a") not in cache
    assert cache.put(("g", 1, "org", "a"), {"plan": "new"}, cache.generation) is True


def test_tables_are_emptied_never_replaced():
    cache = PropertyCache()
    table = cache.table(("g", 1, "org"))
    cache.put(("g", 1, "org", "a"), {"x": 1})
    assert table == {"a": {"x": 1}}
    cache.clear()
    assert table == {} and cache.bytes == 0
    cache.put(("g", 1, "org", "b"), {"x": 2})
    assert cache.table(("g", 1, "org")) is table and table == {"b": {"x": 2}}


def test_stored_sets_share_interned_names_and_short_values():
    cache = PropertyCache()
    a, b = "".join(["pl", "an"]), "".join(["pl", "an"])
    assert a is not b
    n = int("12345")
    cache.put(("g", 1, "org", "x"), {a: "".join(["p", "ro"]), "blob": "z" * 500, "n": n})
    cache.put(("g", 1, "org", "y"), {b: "".join(["p", "ro"]), "n": int("12345")})
    x, y = cache.get(("g", 1, "org", "x")), cache.get(("g", 1, "org", "y"))
    (kx, *_), (ky, _) = x, y
    assert kx is ky is sys.intern("plan") and x["plan"] is y["plan"] and x["n"] is y["n"]
    assert x == {"plan": "pro", "blob": "z" * 500, "n": 12345}


def test_compact_waits_for_half_the_cache_then_keeps_every_value():
    cache = PropertyCache()
    table = cache.table(("g", 1, "org"))
    for i in range(1500):
        cache.put(("g", 1, "org", f"o{i}"), _props(i))
    before = dict(table)
    assert cache.compact() is True  # 1,500 stored since the start: at least half
    assert table == before and all(table[k] is not before[k] for k in table)
    cache.put(("g", 1, "org", "late"), _props(0))
    assert cache.compact() is False  # one new entry: not worth a pass
    assert cache.table(("g", 1, "org")) is table
