"""Group and person rows kept between ingestion transactions by the writer process.

The writer (writer.py) is the only regular writer of its database, so the rows it committed
are still what the database holds at its next transaction — unless another connection
wrote in between (a worker writing directly, an admin edit, a privacy rewrite, a restore).
`PRAGMA data_version` tells exactly that: it changes when another connection commits and
not for this connection's own commits (its writes outside ingestion show in
`total_changes` instead). Each transaction checks both first and drops the cache if either
moved; a transaction that fails drops it too (its rows were changed in memory).

With the cache, a batch loads only the rows it has not seen recently: about a fifth of the
writer's time went to reading back the groups and persons it had just written.

A person reached through several distinct ids must stay one object: a batch that loads a
person from the database takes the cached object of that person id if there is one
(`person_rows`). A batch that merged persons (alias) drops the person part: the absorbed
person's other distinct ids are not known to the batch.
"""

from __future__ import annotations

import sqlite3
from typing import Any

# Groups, persons and distinct ids each; past that the cache starts over (a plain dict is
# the fast path). A row with 20 small properties takes ~3 KB: ~600 MB at worst.
MAX_ROWS = 100_000


class RowCache:
    def __init__(self, max_rows: int = MAX_ROWS) -> None:
        self.max_rows = max_rows
        self.groups: dict[int, dict[tuple[str, str], Any]] = {}  # project -> (type, key) -> row
        self.persons: dict[int, dict[str, Any]] = {}  # project -> distinct id -> row
        self.person_rows: dict[int, Any] = {}  # person id -> row (the one object of a person)
        self._conn: sqlite3.Connection | None = None
        self._version: int | None = None
        self._changes = -1  # the connection's total_changes after its last kept commit
        self.resets = 0  # for tests and profiling

    def clear(self) -> None:
        self.groups.clear()
        self.persons.clear()
        self.person_rows.clear()
        self.resets += 1

    def begin(self, conn: sqlite3.Connection) -> None:
        """Call inside each write transaction before reading: drops everything if another
        connection has committed since this one last did, if this connection wrote anything
        else meanwhile (data_version does not count its own commits: total_changes does),
        or if this is another connection."""
        version = conn.execute("PRAGMA data_version").fetchone()[0]
        if (conn is not self._conn or version != self._version
                or conn.total_changes != self._changes):
            if self.groups or self.persons or self.person_rows:
                self.clear()
            self._conn, self._version = conn, version

    def project(self, project_id: int) -> tuple[dict[tuple[str, str], Any], dict[str, Any]]:
        """The (groups, persons by distinct id) maps of a project, for a batch to read."""
        groups = self.groups.get(project_id)
        if groups is None:
            groups = self.groups[project_id] = {}
        persons = self.persons.get(project_id)
        if persons is None:
            persons = self.persons[project_id] = {}
        return groups, persons

    def committed(self, conn: sqlite3.Connection, batches: list[Any]) -> None:
        """After COMMIT of `conn`'s transaction: keep the rows of its batches."""
        for batch in batches:
            self.keep(batch)
        if (len(self.person_rows) > self.max_rows
                or sum(map(len, self.groups.values())) > self.max_rows
                or sum(map(len, self.persons.values())) > self.max_rows):
            self.clear()
        self._changes = conn.total_changes

    def keep(self, batch: Any) -> None:
        """Keep the rows `batch` (a batch.py `_Batch`) holds as committed."""
        groups, persons = self.project(batch.pid)
        if any(row.id is None for row in batch.groups.values()):  # (never: all were written)
            self.groups.pop(batch.pid, None)
        else:
            for row in batch.groups.values():
                if row.dirty:
                    row.dirty = row.changed = row.moved = False
            groups.update(batch.groups)
        rows = {id(r): r for r in batch.persons.values()}.values()
        if any(r.extra.get("absorbed") or r.id is None for r in rows):  # see the docstring
            self.persons.clear()
            self.person_rows.clear()
            return
        for row in rows:
            if row.dirty:
                row.dirty = row.changed = False
                row.extra.clear()
            self.person_rows[row.id] = row
        persons.update(batch.persons)
