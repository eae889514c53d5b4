"""Loading what an ingestion batch touches (the first half of `_Batch`, batch.py).

Every group, ancestor and person a batch touches is loaded once, in a few bulk queries
(`prefetch`); the lazy loaders then only run for what cannot be known in advance (a parent
named by a call of the same batch). One object per group and per person: everything that
changes a row in the batch changes that object.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ..ingest.model import Call
from .db import loads

MAX_ANCESTORS = 10
_CHUNK = 400


@dataclass(slots=True)
class _Row:
    """A group or person being merged in memory."""

    id: int | None
    properties: dict[str, Any]
    stamps: dict[str, Any]  # see merge.py
    created_at: float
    last_seen: float | None
    parent_key: str | None = None
    parent_type: str | None = None
    parent_ts: float | None = None
    dirty: bool = False
    changed: bool = False  # properties or parent changed (what flag evaluation reads)
    moved: bool = False  # parent_key changed: only then is the groups_parent entry rewritten
    extra: dict[str, Any] = field(default_factory=dict)


# The reads by key on PostgreSQL: one probe of an index by `=` on every column per key (a
# lateral subquery, kept apart by OFFSET 0), then the rows by id (ORDER BY id FOR UPDATE
# locks them in id order: concurrent.py). Written as `group_key = ANY(...)` after equal
# prefix columns, a table without statistics yet (a new install, a copy just made, a burst
# within autovacuum's first minute) was planned as a walk of every key of the prefix with
# the list as a filter: every group of the type, every distinct id of the project, per batch.
_BY_KEY = ("CAST(? AS text[])) AS u(k) CROSS JOIN LATERAL (SELECT {what} FROM {table} "
           "WHERE {where} = u.k OFFSET 0) AS f")
_PG_GROUPS = (
    "SELECT group_type, id, group_key, properties, property_ts, created_at, last_seen, "
    "parent_key, parent_type, parent_ts FROM groups WHERE id = ANY(ARRAY(SELECT f.id FROM "
    "unnest(CAST(? AS text[]), CAST(? AS text[])) AS u(t, k) CROSS JOIN LATERAL (SELECT id "
    "FROM groups WHERE project_id = ? AND group_type = u.t AND group_key = u.k OFFSET 0) "
    "AS f))")
_PG_KEY_TYPES = ("SELECT f.group_key, f.group_type, f.updated_at FROM unnest(" + _BY_KEY.format(
    what="group_key, group_type, updated_at", table="groups",
    where="project_id = ? AND group_key"))
_PG_PERSONS = (
    "SELECT f.distinct_id, p.id, p.properties, p.property_ts, p.created_at, p.last_seen FROM "
    "unnest(" + _BY_KEY.format(what="distinct_id, person_id", table="person_distinct_ids",
                               where="project_id = ? AND distinct_id")
    + " JOIN persons p ON p.id = f.person_id WHERE p.id = ANY(ARRAY(SELECT f.person_id FROM "
    "unnest(" + _BY_KEY.format(what="person_id", table="person_distinct_ids",
                               where="project_id = ? AND distinct_id") + "))")


def _chunks(items: list, size: int = _CHUNK) -> Iterable[list]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


class _Loading:
    def __init__(self, conn: sqlite3.Connection, project_id: int) -> None:
        self.conn = conn
        self.pid = project_id
        self.now = time.time()
        self.groups: dict[tuple[str, str], _Row] = {}
        self.persons: dict[str, _Row] = {}  # distinct id -> person row (shared objects)
        self.person_rows: dict[int, _Row] = {}
        self.absent: set[tuple[str, str]] = set()  # groups known not to be stored
        self.new_by_key: dict[str, list[str]] = {}  # key -> types of groups new in this batch
        self.key_types: dict[str, list[tuple[str, float]]] = {}  # stored types of a key
        self.no_person: set[str] = set()  # distinct ids known to have no stored person
        self.default_type = "organization"  # the project's (set by _Batch)
        self.lock_rows = ""  # appended to the reads of stored rows (_Batch: FOR UPDATE)
        self.postgres = getattr(conn, "dialect", None) == "postgresql"

    def prefetch(self, calls: list[Call]) -> None:
        """Load every group, ancestor and person the batch touches in a few bulk queries
        (the lazy loaders below then only run for what this cannot know in advance)."""
        gkeys: set[tuple[str, str]] = set()
        dids: set[str] = set()
        for c in calls:
            if c.distinct_id:
                dids.add(c.distinct_id)
            if c.previous_id:
                dids.add(c.previous_id)
            if c.kind == "group" and c.group_key:
                gkeys.add((c.group_type or self.default_type, c.group_key))
            gkeys.update(c.groups.items())
            gkeys.update(c.more_groups)
        self.load_key_types({c.bare_group for c in calls if c.bare_group is not None} | {
            c.group_key for c in calls
            if c.kind == "group" and c.group_type is None and c.group_key})
        self.load_persons(dids)
        frontier = self.load_groups(gkeys, create=False)
        for _ in range(MAX_ANCESTORS):
            parents: set[tuple[str, str]] = set()
            typeless = [(t, row.parent_key) for t, row in frontier
                        if row.parent_key is not None and row.parent_type is None]
            self.load_key_types({k for _, k in typeless})
            for t, row in frontier:
                parent = self.parent_of(t, row)
                if parent is not None:
                    parents.add(parent)
            todo = {p for p in parents if p not in self.groups and p not in self.absent}
            if not todo:
                break
            frontier = self.load_groups(todo, create=False)

    def load_groups(self, keys: set[tuple[str, str]],
                    create: bool = True) -> list[tuple[str, _Row]]:
        """Load stored groups; missing ones become new rows (`create`) or are remembered as
        absent. Returns the (type, row) pairs that were found."""
        missing = [k for k in keys if k not in self.groups]
        found: list[tuple[str, _Row]] = []
        for t, gid, key, props, stamps, created, seen, pkey, ptype, pts in self._stored(missing):
            row = _Row(gid, loads(props), loads(stamps), created, seen, pkey, ptype, pts)
            self.groups[(t, key)] = row
            found.append((t, row))
        for k in missing:
            if k not in self.groups:
                if create:
                    self.new_group(*k)
                else:
                    self.absent.add(k)
        return found

    def _stored(self, pairs: list[tuple[str, str]]) -> Iterable[tuple[Any, ...]]:
        """The stored rows of (type, key) `pairs`: on PostgreSQL a statement per chunk of
        pairs, whatever their types (a round trip per type made a batch naming 30,000
        types — each refused — take 28 s); on SQLite a statement per type and chunk."""
        if self.postgres:
            for chunk in _chunks(pairs):
                yield from self.conn.execute(_PG_GROUPS + self.lock_rows, (
                    [t for t, _ in chunk], [k for _, k in chunk], self.pid))
            return
        by_type: dict[str, list[str]] = {}
        for t, k in pairs:
            by_type.setdefault(t, []).append(k)
        for t, ks in by_type.items():
            for chunk in _chunks(ks):
                yield from self.conn.execute(
                    "SELECT group_type, id, group_key, properties, property_ts, created_at, "
                    "last_seen, parent_key, parent_type, parent_ts FROM groups WHERE "
                    f"project_id = ? AND group_type = ? AND group_key IN "
                    f"({','.join('?' * len(chunk))}){self.lock_rows}", (self.pid, t, *chunk))

    def new_group(self, t: str, k: str) -> _Row:
        row = self.groups[(t, k)] = _Row(None, {}, {}, self.now, None, dirty=True, changed=True)
        self.absent.discard((t, k))
        self.new_by_key.setdefault(k, []).append(t)
        return row

    def group(self, t: str, k: str) -> _Row:
        row = self.groups.get((t, k))
        if row is None:
            if (t, k) in self.absent:
                return self.new_group(t, k)
            self.load_groups({(t, k)})
            row = self.groups[(t, k)]
        return row

    def load_key_types(self, keys: set[str]) -> None:
        """The stored types of group keys (for parents named without a type)."""
        todo = [k for k in keys if k not in self.key_types]
        for chunk in _chunks(todo):
            for k in chunk:
                self.key_types[k] = []
            for key, gtype, updated in self.conn.execute(_PG_KEY_TYPES, (chunk, self.pid)) \
                    if self.postgres else self.conn.execute(
                    "SELECT group_key, group_type, updated_at FROM groups WHERE project_id = ? "
                    f"AND group_key IN ({','.join('?' * len(chunk))})", (self.pid, *chunk)):
                self.key_types[key].append((gtype, updated))

    def parent_of(self, t: str, row: _Row) -> tuple[str, str] | None:
        """The parent (type, key) of a group of type `t`. A parent named without a type is
        a group created earlier in this batch, else the stored group with that key (of
        another type by preference, the most recently updated first)."""
        pkey = row.parent_key
        if pkey is None:
            return None
        if row.parent_type is not None:
            return row.parent_type, pkey
        for gt in self.new_by_key.get(pkey, ()):
            if gt != t:
                return gt, pkey
        if pkey not in self.key_types:
            self.load_key_types({pkey})
        candidates = self.key_types[pkey]
        if not candidates:
            return None
        best = min(candidates, key=lambda c: (c[0] == t, -(c[1] or 0)))
        return best[0], pkey

    def with_ancestors(self, t: str, k: str) -> list[tuple[str, str]]:
        chain = [(t, k)]
        node, row = (t, k), self.group(t, k)
        for _ in range(MAX_ANCESTORS):
            parent = self.parent_of(node[0], row)
            if parent is None or parent in chain:
                break
            # Activity does not create a parent nobody has described.
            if parent not in self.groups and (
                    parent in self.absent or not self.load_groups({parent}, create=False)):
                break
            chain.append(parent)
            node, row = parent, self.group(*parent)
        return chain

    def load_persons(self, distinct_ids: set[str]) -> None:
        missing = [d for d in distinct_ids if d not in self.persons and d not in self.no_person]
        for chunk in _chunks(missing):
            locks = self.lock_rows.replace('id FOR UPDATE', 'p.id FOR UPDATE OF p')
            rows = self.conn.execute(_PG_PERSONS + locks, (chunk, self.pid, chunk, self.pid)) \
                if self.postgres else self.conn.execute(
                "SELECT d.distinct_id, p.id, p.properties, p.property_ts, p.created_at, "
                "p.last_seen FROM person_distinct_ids d JOIN persons p ON p.id = d.person_id WHERE "
                f"d.project_id = ? AND d.distinct_id IN ({','.join('?' * len(chunk))})"
                f"{locks}", (self.pid, *chunk))
            for did, pid, props, stamps, created, seen in rows:
                row = self.person_rows.get(pid)
                if row is None:  # one object per person, whichever distinct id reached it
                    row = _Row(pid, loads(props), loads(stamps), created, seen)
                    self.person_rows[pid] = row
                self.persons[did] = row
        self.no_person.update(d for d in missing if d not in self.persons)

    def person(self, distinct_id: str) -> _Row:
        row = self.persons.get(distinct_id)
        if row is None and distinct_id not in self.no_person:  # (prefetch knows most)
            self.load_persons({distinct_id})
            row = self.persons.get(distinct_id)
        if row is None:
            row = _Row(None, {}, {}, self.now, None, dirty=True, changed=True)
            row.extra["new_ids"] = [distinct_id]
            self.persons[distinct_id] = row
        return row
