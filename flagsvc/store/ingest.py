"""Writing a batch of normalized calls: one short write transaction per batch.

Duplicate message ids (within the batch or already stored, with a timestamp less than a day
apart, or at any time for a client id sent without timestamp: see `_fresh`) are
skipped, which makes retried deliveries change nothing; private properties are scrubbed with
the policy current in the transaction; the rest is `_Batch` (batch.py): load once, merge in
memory, write back once.
Retention expires old events a chunk at a time as batches arrive.
"""

from __future__ import annotations

import copy
import logging
import sqlite3
import time
from contextlib import nullcontext
from typing import Any

from ..ingest import privacy
from ..ingest.model import Call, IngestResult
from .batch import CHANGES_KEPT, LAST_SEEN_RESOLUTION, _Batch, _chunks
from .concurrent import EXPIRE_LOCK, RETRIED, Exclusive, lock_keys, needs_exclusive, take_locks
from .db import dumps, transaction

# project id, calls, their event properties serialized (see IngestMixin.ingest; [] when
# that is left to the transaction)
Request = tuple[int, list[Call], list[str]]

__all__ = ["CHANGES_KEPT", "EXPIRE_CHUNK", "LAST_SEEN_RESOLUTION", "IngestMixin", "dedupe_day",
           "dedupe_days"]

log = logging.getLogger("flagsvc")

EXPIRE_CHUNK = 1000  # expired events a batch may delete, at least (twice its size if more)


# `_fresh` on PostgreSQL: one probe of the unique index per (day, message id) pair, each
# column compared by `=` (a lateral subquery, kept apart by OFFSET 0), whatever the
# statistics. Written as `day = ANY(...) AND message_id = ANY(...)`, a table without
# statistics yet (a new install, or a burst within autovacuum's first minute) was planned as
# a scan of every event of the project (14 ms per batch at 40,000 events, growing with the
# table); and with `day = ANY(...)` inside the probe, as a walk of the project's whole
# index per id, the day filtered afterwards (100 ms per batch at 31,000 events).
_PG_STORED = ("SELECT e.day, e.message_id FROM unnest(CAST(? AS integer[]), CAST(? AS text[])) "
              "AS u(d, m) CROSS JOIN LATERAL (SELECT day, message_id FROM events WHERE "
              "project_id = ? AND day = u.d AND message_id = u.m OFFSET 0) AS e")
_PG_STORED_EXACT = ("SELECT e.message_id FROM unnest(CAST(? AS text[])) AS u(m) CROSS JOIN "
                    "LATERAL (SELECT message_id FROM events WHERE project_id = ? AND "
                    "exact_id = 1 AND message_id = u.m OFFSET 0) AS e")


def _pristine(call: Call) -> Call:
    """A call the batch may resolve in place (a key without its type: `_Batch._bare`,
    `apply`) as a copy, so that a batch written again under the exclusive lock starts
    from what was sent."""
    if call.bare_group is None and not (call.kind == "group" and call.group_type is None):
        return call
    twin = copy.copy(call)
    twin.groups = dict(call.groups)
    return twin


def pipelined(conn: Any) -> Any:
    """PostgreSQL: the writes of a batch in one pipeline (pg.py); SQLite has no round trips."""
    return conn.pipeline() if getattr(conn, "dialect", None) == "postgresql" else nullcontext()


def dedupe_day(timestamp: float) -> int:
    """The UTC day (Unix days) of an event timestamp: the `day` column of events (migration
    0003 computes it the same way, by division then truncation)."""
    return int(timestamp / 86400)


def dedupe_days(day: int) -> tuple[int, int, int]:
    """The days whose events an event of `day` is checked against for its message id."""
    return (day - 1, day, day + 1)


class IngestMixin:
    conn: Any

    def ingest(self, project_id: int, calls: list[Call]) -> IngestResult:
        """Store a batch of normalized calls atomically; a committed return means durable.
        Every worker writes its own batches, one short write transaction each (on SQLite
        queued on the database's write lock, db.py): the one way ingestion writes, on both
        backends (a writer process that batched the workers' requests was measured against
        this and removed: bench/bench_writer.py, bench/RESULTS.md). On PostgreSQL, under the
        writers' lock in shared mode when the batch allows it: batches of every worker and
        node are written in parallel (concurrent.py)."""
        # SQLite: event properties serialized before the write lock (the lock is the limit
        # of ingestion throughput), redone inside it for a project with a privacy policy.
        # PostgreSQL has no such lock: serialized once, in the transaction, after scrubbing.
        pg = getattr(self, "dialect", "sqlite") == "postgresql"
        request: Request = (project_id, calls, [] if pg else [dumps(c.properties) for c in calls])
        conn = self.conn()
        if pg and not needs_exclusive([request]):
            try:
                with transaction(conn, shared=True):
                    return self._write_requests(
                        conn, [(project_id, [_pristine(c) for c in calls], [])], shared=True)[0]
            except Exclusive:
                pass
            except RETRIED:
                log.info("ingestion batch written again under the exclusive lock",
                         exc_info=True)
        with transaction(conn):
            return self._write_requests(conn, [request])[0]

    def _write_requests(self, conn: sqlite3.Connection, requests: list[Request],
                        shared: bool = False) -> list[IngestResult]:
        """Write requests in the current transaction, one `_Batch` per project; each gets
        its own result (duplicates, dropped group references, warnings). `shared`: under
        the writers' lock in shared mode, one project (concurrent.py): the batch's keys are
        locked first."""
        results = [IngestResult() for _ in requests]
        by_project: dict[int, list[int]] = {}
        for i, (pid, _, _) in enumerate(requests):
            by_project.setdefault(pid, []).append(i)
        for pid, indexes in by_project.items():
            if shared:
                take_locks(conn, lock_keys(pid, [c for i in indexes for c in requests[i][1]]))
            batch = _Batch(self, conn, pid, shared=shared)
            seen: set[tuple[int, str]] = set()
            payloads: dict[int, str] = {}
            fresh: list[list[Call]] = []
            for i in indexes:
                _, calls, serialized = requests[i]
                if batch.policy:  # scrubbed copies: a retry must not hash a hash
                    calls = [privacy.scrub_call(copy.copy(c), batch.policy, batch.salt)
                             for c in calls]
                if batch.policy or len(serialized) != len(calls):  # (PostgreSQL: not yet)
                    serialized = [dumps(c.properties) for c in calls]
                payloads.update(zip(map(id, calls), serialized, strict=True))
                fresh.append(self._fresh(conn, pid, calls, results[i], seen))
            every = [c for calls in fresh for c in calls]
            batch.prefetch(every)
            for i, calls in zip(indexes, fresh, strict=True):
                batch.result = results[i]
                for call in calls:
                    batch.apply(call)
                results[i].stored = len(calls)
            with pipelined(conn):
                batch.write(every, payloads)
                if every:
                    self._expire_events(conn, pid, batch.now, len(every),
                                        batch.retention_days, shared)
        return results

    @staticmethod
    def _expire_events(conn: sqlite3.Connection, project_id: int, now: float,
                       added: int, days: int | None, shared: bool = False) -> None:
        """Retention, a little at a time: each batch deletes up to twice as many expired
        events as it adds (at least `EXPIRE_CHUNK`; one index probe when there are none), so
        the events table stays bounded without a separate job and a backlog shrinks.
        `days`: the project's event_retention_days, as the batch read it. `shared`: batches
        in parallel (concurrent.py) — one of them at a time deletes, the others skip it
        (two deleting the same rows could deadlock on them)."""
        if days is None or days <= 0:
            return
        salt = getattr(conn, "lock_salt", 0)
        guard = f"(SELECT pg_try_advisory_xact_lock({EXPIRE_LOCK ^ salt})) AND " if shared else ""
        conn.execute(
            f"DELETE FROM events WHERE {guard}id IN (SELECT id FROM events WHERE project_id = ? "
            "AND received_at < ? ORDER BY received_at LIMIT ?)",
            (project_id, now - days * 86400, max(EXPIRE_CHUNK, 2 * added)))

    @staticmethod
    def _fresh(conn: sqlite3.Connection, project_id: int, calls: list[Call],
               result: IngestResult, seen: set[tuple[int, str]]) -> list[Call]:
        """The calls that are not duplicates: no event with the same message id is stored or
        in `seen` (earlier in the batch or group; extended here) with a timestamp on the same
        UTC day or an adjacent one (`dedupe_days`) — so a resend is caught whenever the two
        timestamps are less than 24 hours apart (clock-skew correction makes a resend's
        timestamp differ a little). A call with `Call.exact_id` (a client id, no timestamp: its
        time is the receive time, which moves with every retry) is also a duplicate of any
        stored event marked so with its id, however long ago (migration 0004)."""
        keys = [(dedupe_day(c.timestamp), c.message_id) for c in calls]
        by_day: dict[int, set[str]] = {}
        for day, mid in keys:
            by_day.setdefault(day, set()).add(mid)
        stored: set[tuple[int, str]] = set()
        postgres = getattr(conn, "dialect", None) == "postgresql"
        # One probe per event day (usually one or two per batch): SQLite seeks every pair of
        # the two IN lists, so a backfill spanning many days must not put all its days and
        # all its ids in one statement.
        for day, mids in by_day.items():
            for chunk in _chunks(list(mids)):
                if postgres:
                    days = dedupe_days(day)
                    stored.update(conn.execute(_PG_STORED, (
                        [d for _ in chunk for d in days], [m for m in chunk for _ in days],
                        project_id)))
                    continue
                stored.update(conn.execute(
                    f"SELECT day, message_id FROM events WHERE project_id = ? "
                    f"AND day IN (?, ?, ?) AND message_id IN ({','.join('?' * len(chunk))})",
                    (project_id, *dedupe_days(day), *chunk)))
        exact = {c.message_id for c in calls if c.exact_id}
        stored_exact: set[str] = set()
        for chunk in _chunks(list(exact)):  # the partial index events_exact_id
            stored_exact.update(mid for (mid,) in (
                conn.execute(_PG_STORED_EXACT, (chunk, project_id)) if postgres else
                conn.execute(f"SELECT message_id FROM events WHERE project_id = ? AND "
                             f"exact_id = 1 AND message_id IN ({','.join('?' * len(chunk))})",
                             (project_id, *chunk))))
        fresh = []
        for c, (day, mid) in zip(calls, keys, strict=True):
            if (any((d, mid) in stored or (d, mid) in seen for d in dedupe_days(day))
                    or (c.exact_id and mid in stored_exact)):
                result.duplicates += 1
                continue
            seen.add((day, mid))
            fresh.append(c)
        return fresh

    def purge_events(self, project_id: int, older_than_days: float) -> int:
        """Delete events received more than `older_than_days` ago (retention)."""
        conn = self.conn()
        with transaction(conn):
            cur = conn.execute("DELETE FROM events WHERE project_id = ? AND received_at < ?",
                               (project_id, time.time() - older_than_days * 86400))
        return cur.rowcount

    def count_events(self, project_id: int) -> int:
        return self.conn().execute("SELECT count(*) FROM events WHERE project_id = ?",
                                   (project_id,)).fetchone()[0]
