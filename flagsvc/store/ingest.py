"""Writing a batch of normalized calls: one short write transaction per batch.

Duplicate message ids (within the batch or already stored) are skipped, which makes retried
deliveries change nothing; private properties are scrubbed with the policy current in the
transaction; the rest is `_Batch` (batch.py): load once, merge in memory, write back once.
Retention expires old events a chunk at a time as batches arrive.
"""

from __future__ import annotations

import sqlite3
import time
from typing import Any

from ..ingest import privacy
from ..ingest.model import Call, IngestResult
from .batch import CHANGES_KEPT, LAST_SEEN_RESOLUTION, _Batch, _chunks
from .db import dumps, transaction

__all__ = ["CHANGES_KEPT", "EXPIRE_CHUNK", "LAST_SEEN_RESOLUTION", "IngestMixin"]

EXPIRE_CHUNK = 1000  # expired events a batch may delete, at least (twice its size if more)


class IngestMixin:
    conn: Any

    def ingest(self, project_id: int, calls: list[Call]) -> IngestResult:
        """Store a batch of normalized calls atomically; a committed return means durable."""
        conn = self.conn()
        # Event properties serialized before taking the write lock (the lock is the limit of
        # ingestion throughput); redone inside it for a project with a privacy policy.
        payloads = {id(c): dumps(c.properties) for c in calls}
        with transaction(conn):
            batch = _Batch(self, conn, project_id)
            fresh = self._fresh(conn, project_id, calls, batch.result)
            if batch.policy:
                for call in fresh:
                    privacy.scrub_call(call, batch.policy, batch.salt)
                payloads = {id(c): dumps(c.properties) for c in fresh}
            batch.prefetch(fresh)
            for call in fresh:
                batch.apply(call)
            batch.write(fresh, payloads)
            batch.result.stored = len(fresh)
            if fresh:
                self._expire_events(conn, project_id, batch.now, len(fresh))
        return batch.result

    @staticmethod
    def _expire_events(conn: sqlite3.Connection, project_id: int, now: float,
                       added: int) -> None:
        """Retention, a little at a time: each batch deletes up to twice as many expired
        events as it adds (at least `EXPIRE_CHUNK`; one index probe when there are none), so
        the events table stays bounded without a separate job and a backlog shrinks."""
        days = conn.execute("SELECT event_retention_days FROM projects WHERE id = ?",
                            (project_id,)).fetchone()
        if not days or days[0] is None or days[0] <= 0:
            return
        conn.execute(
            "DELETE FROM events WHERE id IN (SELECT id FROM events WHERE project_id = ? AND "
            "received_at < ? ORDER BY received_at LIMIT ?)",
            (project_id, now - days[0] * 86400, max(EXPIRE_CHUNK, 2 * added)))

    @staticmethod
    def _fresh(conn: sqlite3.Connection, project_id: int, calls: list[Call],
               result: IngestResult) -> list[Call]:
        ids = list({c.message_id for c in calls})
        stored: set[str] = set()
        for chunk in _chunks(ids):
            stored.update(r[0] for r in conn.execute(
                f"SELECT message_id FROM events WHERE project_id = ? AND message_id IN "
                f"({','.join('?' * len(chunk))})", (project_id, *chunk)))
        fresh, seen = [], set()
        for c in calls:
            if c.message_id in stored or c.message_id in seen:
                result.duplicates += 1
                continue
            seen.add(c.message_id)
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
