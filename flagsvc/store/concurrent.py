"""Ingestion on PostgreSQL without the writers' lock: batches of several nodes in parallel.

Every other write transaction takes the writers' advisory lock (pg.py) exclusively; an
ingestion batch takes it *shared*, so batches run side by side while a flag edit, a
privacy rewrite or a group-type change still sees no batch half-done. Among batches, what
the exclusive lock made atomic is made atomic per key:

- one transaction-level advisory lock per message id, group key (whatever its type) and
  distinct id the batch names, all taken at its start in one statement, in ascending order
  (two batches never wait for each other in a cycle): de-duplication by message id,
  creating a group or a person, and resolving a key named without a type are then
  check-then-write atomic, as under the one lock;
- the stored rows a batch merges are read `FOR UPDATE` (in id order): an ancestor whose
  last_seen the batch advances, or a person reached through another of its distinct ids,
  is read as committed by whoever wrote it last, and written back before anyone else
  reads it (per-key last-write-wins merged in memory, merge.py, exactly as on SQLite);
- new rows take their ids from the tables' sequences, not MAX(id) + 1;
- the change log is appended under one more lock held to COMMIT (`CHANGES_LOCK`), so its
  ids are committed in order (a reader polls `id > last`: a smaller id committed later
  would be skipped).

What a batch cannot do this way it does under the exclusive lock, as before (`Exclusive`):
an alias (it merges two persons and moves distinct ids nobody named), creating a group
type, a transaction of several projects; and a batch that met a deadlock or a unique
violation anyway (a cycle of parents) is written again under the exclusive lock.
"""

from __future__ import annotations

from typing import Any

import mmh3

from ..ingest.model import Call

try:  # (psycopg is the postgresql extra)
    from psycopg import errors as _errors
except ImportError:  # pragma: no cover
    RETRIED: tuple[type[Exception], ...] = ()
else:
    RETRIED = (_errors.DeadlockDetected, _errors.UniqueViolation)

CHANGES_LOCK = 0x666C6169  # held from a batch's change-log rows to its COMMIT
EXPIRE_LOCK = 0x666C616A  # retention: one batch at a time deletes expired events


class Exclusive(Exception):  # noqa: N818 (a signal, not an error)
    """The batch needs the exclusive writers' lock: rolled back and written again so."""


def needs_exclusive(requests: list[tuple[int, list[Call], list[str]]]) -> bool:
    if len({pid for pid, _, _ in requests}) > 1:
        return True
    return any(c.kind == "alias" for _, calls, _ in requests for c in calls)


def _key(kind: str, project_id: int, name: str) -> int:
    return mmh3.hash64(f"{kind}\0{project_id}\0{name}", signed=True)[0]


def lock_keys(project_id: int, calls: list[Call]) -> list[int]:
    """The advisory lock keys of a batch."""
    keys: set[int] = set()
    for c in calls:
        keys.add(_key("m", project_id, c.message_id))
        if c.distinct_id:
            keys.add(_key("d", project_id, c.distinct_id))
        if c.previous_id:
            keys.add(_key("d", project_id, c.previous_id))
        if c.group_key:
            keys.add(_key("g", project_id, c.group_key))
        if c.bare_group is not None:
            keys.add(_key("g", project_id, c.bare_group))
        for _, k in c.groups.items():
            keys.add(_key("g", project_id, k))
        for _, k in c.more_groups:
            keys.add(_key("g", project_id, k))
    return list(keys)


def take_locks(conn: Any, keys: list[int]) -> None:
    """Every key's lock (mixed with the connection's `lock_salt`, pg.py), in ascending
    order, in one statement."""
    if keys:
        conn.raw.execute("SELECT count(pg_advisory_xact_lock(k)) FROM "
                         "(SELECT unnest(%s::bigint[]) AS k ORDER BY 1) AS s",
                         (sorted({k ^ conn.lock_salt for k in keys}),))
