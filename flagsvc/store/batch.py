"""One ingestion batch in memory: load what it touches, merge, write back.

Rows touched by the batch are loaded once (prefetch, in a few bulk queries: batch_load.py),
merged in memory (last write wins per key, see merge.py) and written back once with
executemany, so a 100-event batch costs about a dozen statements. Used by
`IngestMixin.ingest` (ingest.py), inside its write transaction.
"""


from __future__ import annotations

import itertools
import sqlite3
from collections.abc import Iterator
from typing import Any

from ..ingest import privacy
from ..ingest.model import Call, IngestResult
from .batch_load import _chunks, _Loading, _Row
from .bounds import admit
from .concurrent import CHANGES_LOCK, Exclusive
from .db import LimitExceeded, dumps, loads
from .group_types import GroupTypeNotAllowed, project_types
from .merge import apply_set, apply_set_once, apply_unset, merge_into

__all__ = ["CHANGES_KEPT", "LAST_SEEN_RESOLUTION", "_Batch", "_Row", "_chunks"]

CHANGES_KEPT = 200_000
# $last_seen (groups, persons, memberships) and a membership's first_seen are kept to this
# many seconds: finer activity is not worth a row rewrite per event.
LAST_SEEN_RESOLUTION = 60.0


class _Batch(_Loading):
    def __init__(self, store: Any, conn: sqlite3.Connection, project_id: int,
                 shared: bool = False) -> None:
        super().__init__(conn, project_id)
        self.store = store
        # PostgreSQL, batches in parallel (concurrent.py): stored rows are read FOR UPDATE,
        # a group type is not created here (Exclusive), the change log is appended in order
        self.shared = shared
        if shared:
            self.lock_rows = " ORDER BY id FOR UPDATE"
        # (id(person row), (group type, key)) -> [first seen, last seen, person row, node]
        self.memberships: dict[tuple[int, tuple[str, str]], list[Any]] = {}
        self.types: dict[str, str] = {}  # group type -> "" if usable, else why not
        self.known_types: dict[str, int] | None = None  # the project's (type_ok)
        self.inserted_persons: set[int] = set()  # ids of the persons write() inserted
        self.result = IngestResult()
        row = conn.execute("SELECT default_group_type, private_properties, hash_salt, "
                           "ingestion_creates_group_types, event_retention_days, "
                           "require_signed_groups FROM projects WHERE id = ?",
                           (project_id,)).fetchone()
        # Read here with the rest, not by retention after the writes: on PostgreSQL a read
        # among the pipelined writes waits for all of them (a round trip).
        self.retention_days: int | None = row[4] if row else None
        self.default_type = row[0] if row else "organization"
        # Whether this batch may create group types besides the default one (the setting).
        self.creates_types = bool(row[3]) if row else False
        # The privacy policy as of this transaction: a policy changed after the request was
        # parsed still applies to what this batch stores (Store.update_project rewrites the
        # stored data under the same write lock).
        self.policy = privacy.policy_of(loads(row[1])) if row else {}
        self.salt: str = row[2] if row else ""
        # Signed groups: a parent link is a claim about another tenant's group (a child
        # inherits its parent's flags), so only trusted writers set one (Call.public).
        self.signed_groups = bool(row[5]) if row else False

    # ------------------------------------------------------------ group types

    def type_ok(self, group_type: str) -> bool:
        """Whether the group type exists or could be created; a refused type is warned
        about once per batch and every reference to it is counted as dropped."""
        refused = self.types.get(group_type)
        if refused is None:
            create = self.creates_types or group_type == self.default_type
            if self.known_types is None:  # (no type is created or deleted under the batch's
                # lock but by the batch itself: read once, not once per name)
                self.known_types = project_types(self.conn, self.pid)
            try:
                self.store.ensure_group_type(self.conn, self.pid, group_type,
                                             create=create and not self.shared,
                                             known=self.known_types)
                refused = ""
            except GroupTypeNotAllowed as e:
                if create:  # a new type's index: under the exclusive lock
                    raise Exclusive(group_type) from None
                refused = f"dropped group type {group_type!r}: {e}"
            except (LimitExceeded, ValueError) as e:  # GroupTypeNotAllowed too
                refused = f"dropped group type {group_type!r}: {e}"
            self.types[group_type] = refused
        if refused:
            self.result.dropped += 1
            self.result.warn(refused)  # once per request of the batch
        return not refused

    # ------------------------------------------------------------ applying

    def _bare(self, call: Call) -> None:
        """A group key without a type becomes a typed group of the event (bare_type)."""
        key, call.bare_group = call.bare_group, None
        if key is not None:
            call.groups.setdefault(self.bare_type(key), key)

    def bare_type(self, key: str) -> str:
        """The type of a group key named without one (SPEC §3): the type of the group with
        that key (created earlier in this batch or stored); none → the default type; several
        → the default type, with a warning. A default-type group with neither properties nor
        a parent does not count when another type has the key: that is what an event with
        the bare id leaves when it arrives before the group() call that declares the id
        (out of order), and it must not make the declared group ambiguous for good."""
        if key not in self.key_types:
            self.load_key_types({key})
        types = sorted({*self.new_by_key.get(key, ()), *(t for t, _ in self.key_types[key])})
        if len(types) > 1 and self.default_type in types and self._placeholder(key):
            types.remove(self.default_type)
        if len(types) == 1:
            return types[0]
        if types:
            self.result.warn(f"group id {key!r} without a type names groups of several "
                             f"types ({', '.join(types)}); attributed to the default "
                             f"type {self.default_type!r}")
        return self.default_type

    def _placeholder(self, key: str) -> bool:
        row = self.group(self.default_type, key)
        return not row.properties and row.parent_key is None

    def apply(self, call: Call) -> None:
        ts = call.timestamp
        if call.bare_group is not None:
            self._bare(call)
        person = self.person(call.distinct_id) if call.distinct_id else None
        if person is not None:
            warn, who = self.result.warn, f"person {str(call.distinct_id)[:40]!r}"
            changed = apply_set(person.properties, person.stamps,
                                admit(person, call.person_set, who, warn), ts)
            changed |= apply_set_once(person.properties, person.stamps,
                                      admit(person, call.person_set_once, who, warn), ts)
            changed |= apply_unset(person.properties, person.stamps, call.person_unset, ts)
            person.changed |= changed
            if call.kind != "identify" or changed:
                person.dirty |= _advance_last_seen(person, ts)
            # Any property operation may move a key's stamp (a tombstone, a tie) even when no
            # value changed: the row is written then; plain activity only via last_seen.
            person.dirty |= bool(changed or person.id is None or call.person_set
                                 or call.person_set_once or call.person_unset)
        if call.kind == "alias" and call.previous_id and call.distinct_id:
            self.alias(call.distinct_id, call.previous_id, ts)
        touched: list[tuple[str, str]] = []
        if call.kind == "group" and call.group_type is None and call.group_key:
            call.group_type = self.bare_type(call.group_key)
        gtype = call.group_type or self.default_type
        if call.kind == "group" and call.group_key and self.type_ok(gtype):
            row = self.group(gtype, call.group_key)
            traits = admit(row, call.group_set, f"group {gtype}/{call.group_key[:40]}",
                           self.result.warn)
            row.changed |= apply_set(row.properties, row.stamps, traits, ts)
            row.changed |= apply_unset(row.properties, row.stamps, call.group_unset, ts)
            if call.parent_key is not None and call.public and self.signed_groups:
                self.result.warn(f"ignored parent of {gtype}/{call.group_key[:40]}: the project "
                                 "requires signed groups, so only the secret key sets parents")
            elif call.parent_key is not None and (row.parent_ts is None
                                                  or row.parent_ts <= ts):
                if call.parent_type and not self.type_ok(call.parent_type):
                    pass
                elif (call.parent_type or gtype, call.parent_key) == (gtype, call.group_key):
                    self.result.warn(
                        f"ignored parent of {gtype}/{call.group_key}: a group "
                        "cannot be its own parent")
                else:
                    row.changed |= (row.parent_key, row.parent_type) != (
                        call.parent_key or None, call.parent_type or None)
                    row.moved |= row.parent_key != (call.parent_key or None)
                    row.parent_key = call.parent_key or None
                    row.parent_type = call.parent_type or None
                    row.parent_ts = ts
            row.dirty = True
            if call.distinct_id:
                touched.append((gtype, call.group_key))
        for t, k in (*call.groups.items(), *call.more_groups):
            if self.type_ok(t):
                touched.append((t, k))
        for t, k in touched:
            for node in self.with_ancestors(t, k):
                row = self.group(*node)
                row.dirty |= _advance_last_seen(row, ts)
                if person is not None:
                    key = (id(person), node)
                    span = self.memberships.get(key)
                    if span is None:
                        self.memberships[key] = [ts, ts, person, node]
                    else:
                        span[0], span[1] = min(span[0], ts), max(span[1], ts)

    def alias(self, distinct_id: str, previous_id: str, ts: float) -> None:
        target = self.person(distinct_id)
        self.load_persons({previous_id})
        other = self.persons.get(previous_id)
        if other is None:
            target.extra.setdefault("new_ids", []).append(previous_id)
            self.persons[previous_id] = target
            target.changed = target.dirty = True  # a distinct id that had no person has one
            return
        if other is target:
            return
        # Merge the other person into the target: properties key by key (last write wins,
        # tombstones included), distinct ids, memberships (stored and from this batch).
        merge_into(target.properties, target.stamps, other.properties, other.stamps)
        target.extra.pop("bytes", None)  # measured again if written to (bounds.py)
        target.changed = True
        target.created_at = min(target.created_at, other.created_at)
        if other.last_seen is not None:
            target.last_seen = max(target.last_seen or other.last_seen, other.last_seen)
        target.dirty = True
        target.extra.setdefault("new_ids", []).extend(other.extra.pop("new_ids", []))
        if other.id is not None:
            target.extra.setdefault("absorbed", []).append(other)
        target.extra.setdefault("absorbed", []).extend(other.extra.pop("absorbed", []))
        for did, row in list(self.persons.items()):
            if row is other:
                self.persons[did] = target
        for key, span in list(self.memberships.items()):
            first, last, who, node = span
            if who is other:
                del self.memberships[key]
                mine = self.memberships.get((id(target), node))
                if mine is None:
                    self.memberships[(id(target), node)] = [first, last, target, node]
                else:
                    mine[0], mine[1] = min(mine[0], first), max(mine[1], last)

    # ------------------------------------------------------------ writing

    def _new_ids(self, table: str, count: int) -> Iterator[int]:
        """Ids for the `count` new rows of `table`, handed out here so new rows can be
        inserted with one executemany and referenced at once: on SQLite MAX(id) + 1 on (the
        write lock is held), on PostgreSQL from the table's sequence (batches of several
        nodes insert side by side: concurrent.py)."""
        if not count:
            return iter(())
        if self.postgres:
            return iter([i for (i,) in self.conn.execute(
                f"SELECT nextval(pg_get_serial_sequence('{table}', 'id')) "
                "FROM generate_series(1, ?)", (count,))])
        first = self.conn.execute(f"SELECT COALESCE(MAX(id), 0) + 1 FROM {table}").fetchone()[0]
        return itertools.count(first)

    def write(self, calls: list[Call], payloads: dict[int, str] | None = None) -> None:
        """Write what the batch changed, then the events (`payloads`: their properties
        already serialized, by `id(call)`)."""
        conn, pid, now = self.conn, self.pid, self.now
        inserts: list[tuple[Any, ...]] = []
        updates: list[tuple[Any, ...]] = []
        moves: list[tuple[Any, ...]] = []
        new_ids = self._new_ids("groups", sum(
            1 for row in self.groups.values() if row.dirty and row.id is None))
        for (t, k), row in self.groups.items():
            if not row.dirty:
                continue
            props, stamps = dumps(row.properties), dumps(row.stamps)
            if row.id is None:
                row.id = next(new_ids)
                inserts.append((row.id, pid, t, k, props, stamps, row.parent_key, row.parent_type,
                                row.parent_ts, row.created_at, row.last_seen, now))
            elif row.moved:
                moves.append((props, stamps, row.parent_key, row.parent_type, row.parent_ts,
                              row.last_seen, now, row.id))
            else:
                updates.append((props, stamps, row.parent_type, row.parent_ts, row.last_seen,
                                now, row.id))
        conn.executemany(
            "INSERT INTO groups (id, project_id, group_type, group_key, properties, property_ts, "
            "parent_key, parent_type, parent_ts, created_at, last_seen, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", inserts)
        conn.executemany(
            "UPDATE groups SET properties = ?, property_ts = ?, parent_key = ?, parent_type = ?, "
            "parent_ts = ?, last_seen = ?, updated_at = ? WHERE id = ?", moves)
        # Without parent_key when it is unchanged: SQLite rewrites the entry of every index
        # whose column is SET, even to the same value (one random page per row).
        conn.executemany(
            "UPDATE groups SET properties = ?, property_ts = ?, parent_type = ?, parent_ts = ?, "
            "last_seen = ?, updated_at = ? WHERE id = ?", updates)

        inserts, updates = [], []
        ids: list[tuple[int, str, int]] = []
        people = {id(r): r for r in self.persons.values()}
        new_ids = self._new_ids("persons", sum(
            1 for row in people.values() if row.dirty and row.id is None))
        self.inserted_persons = set()
        for row in people.values():
            if not row.dirty:
                continue
            props, stamps = dumps(row.properties), dumps(row.stamps)
            if row.id is None:
                row.id = next(new_ids)
                self.inserted_persons.add(row.id)
                inserts.append((row.id, pid, props, stamps, row.created_at, row.last_seen, now))
            else:
                updates.append((props, stamps, row.created_at, row.last_seen, now, row.id))
            ids.extend((pid, did, row.id) for did in row.extra.get("new_ids", ()))
        conn.executemany(
            "INSERT INTO persons (id, project_id, properties, property_ts, created_at, last_seen, "
            "updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)", inserts)
        conn.executemany(
            "UPDATE persons SET properties = ?, property_ts = ?, created_at = ?, last_seen = ?, "
            "updated_at = ? WHERE id = ?", updates)
        conn.executemany("INSERT OR IGNORE INTO person_distinct_ids (project_id, distinct_id, "
                         "person_id) VALUES (?, ?, ?)", ids)
        for row in people.values():
            for other in row.extra.get("absorbed", ()) if row.dirty else ():
                conn.execute("UPDATE person_distinct_ids SET person_id = ? WHERE person_id = ?",
                             (row.id, other.id))
                conn.execute(
                    "INSERT INTO memberships (person_id, group_id, first_seen, last_seen) "
                    "SELECT ?, group_id, first_seen, last_seen FROM memberships "
                    "WHERE person_id = ? "
                    "ON CONFLICT (person_id, group_id) DO UPDATE SET "
                    "first_seen = MIN(memberships.first_seen, excluded.first_seen), "
                    "last_seen = MAX(memberships.last_seen, excluded.last_seen)",
                    (row.id, other.id))
                conn.execute("DELETE FROM memberships WHERE person_id = ?", (other.id,))
                conn.execute("DELETE FROM persons WHERE id = ?", (other.id,))
        conn.executemany(
            "INSERT INTO memberships (person_id, group_id, first_seen, last_seen) "
            "VALUES (?, ?, ?, ?) "
            "ON CONFLICT (person_id, group_id) DO UPDATE SET "
            "first_seen = MIN(memberships.first_seen, excluded.first_seen), "
            "last_seen = MAX(memberships.last_seen, excluded.last_seen) "
            # Rewrite the row only for news (see LAST_SEEN_RESOLUTION), either way: no page
            # write else. Events arrive a few seconds out of order (client queues, several
            # devices): moving first_seen back by those rewrote a random page for about half
            # of the known memberships a batch touched (0.18 WAL pages per event in bench_ingest).
            f"WHERE excluded.first_seen < memberships.first_seen - {LAST_SEEN_RESOLUTION} "
            f"OR excluded.last_seen > memberships.last_seen + {LAST_SEEN_RESOLUTION}",
            [(person.id, self.groups[node].id, first, last)
             for first, last, person, node in self.memberships.values()])
        self.log_changes()
        conn.executemany(
            "INSERT OR IGNORE INTO events "
            "(project_id, message_id, type, event, distinct_id, groups, "
            "properties, timestamp, received_at, exact_id) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [(pid, c.message_id, c.kind, c.event, c.distinct_id,
              dumps(_event_groups(c, self.default_type)) if (c.groups or c.group_key) else None,
              payloads[id(c)] if payloads else dumps(c.properties), c.timestamp, now,
              int(c.exact_id))
             for c in calls])


    def log_changes(self) -> None:
        """Append what flag evaluation could see differently to the change log (0002)."""
        rows: list[tuple[int, str, str | None, str, float]] = [
            (self.pid, "group", t, k, self.now)
            for (t, k), row in self.groups.items() if row.changed]
        # Every distinct id of a changed person, not only those in this batch: a cache keyed
        # by another of its ids (an alias) must be evicted too. A person inserted by this
        # batch has exactly the distinct ids it was inserted with (unless it absorbed one).
        changed_ids = set()
        for row in {id(r): r for r in self.persons.values() if r.changed}.values():
            if row.id in self.inserted_persons and not row.extra.get("absorbed"):
                rows += [(self.pid, "person", None, did, self.now) for did in row.extra["new_ids"]]
            elif row.id is not None:
                changed_ids.add(row.id)
        for chunk in _chunks(sorted(changed_ids)):
            # By person_id alone (person ids are global), so SQLite uses the person_id index
            # rather than scanning the project's part of the primary key.
            rows += [(self.pid, "person", None, did, self.now) for (did,) in self.conn.execute(
                "SELECT distinct_id FROM person_distinct_ids WHERE person_id "
                f"IN ({','.join('?' * len(chunk))})", tuple(chunk))]
        if rows and self.shared:  # the change log's ids in commit order (concurrent.py)
            salt = getattr(self.conn, "lock_salt", 0)
            self.conn.execute("SELECT pg_advisory_xact_lock(?)", (CHANGES_LOCK ^ salt,))
        self.conn.executemany("INSERT INTO changes (project_id, kind, group_type, key, created_at) "
                              "VALUES (?, ?, ?, ?, ?)", rows)
        if rows:  # keep the newest CHANGES_KEPT rows (a reader further behind starts afresh)
            self.conn.execute("DELETE FROM changes WHERE id <= (SELECT MAX(id) FROM changes) - ?",
                              (CHANGES_KEPT,))


def _advance_last_seen(row: _Row, ts: float) -> bool:
    """Move `last_seen` to `ts` if that is news: a new row, or later by more than
    LAST_SEEN_RESOLUTION. Activity otherwise leaves the stored row alone, so steady traffic
    does not rewrite every group and person it touches (the page writes of an ingestion
    batch are its main cost)."""
    if row.last_seen is None or row.id is None or ts > row.last_seen + LAST_SEEN_RESOLUTION:
        row.last_seen = ts if row.last_seen is None else max(row.last_seen, ts)
        return True
    return False


def _event_groups(c: Call, default_type: str) -> dict[str, str | list[str]]:
    """The event's groups column: {type: key}, or {type: [keys]} for a list of keys."""
    groups: dict[str, str | list[str]] = dict(c.groups)
    if c.kind == "group" and c.group_key:
        groups.setdefault(c.group_type or default_type, c.group_key)
    for t, k in c.more_groups:
        first = groups[t]
        groups[t] = [*first, k] if isinstance(first, list) else [first, k]
    return groups
