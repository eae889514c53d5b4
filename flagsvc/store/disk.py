"""Is there room to write? What `/readyz` asks besides "does the database answer".

On a full disk every write fails with SQLITE_FULL ("database or disk is full") and
ingestion answers 503, while reads (decide) keep working. Two signs, either one enough:

- the database's filesystem has less free space than `min_free` bytes (what a real full
  disk shows, to every process alike);
- a write of this process failed with SQLITE_FULL (also what statvfs cannot see: a quota,
  SQLite's `max_page_count`). Until a probe succeeds: a write of `PROBE_BYTES` into the
  database, always rolled back, at most once per `PROBE_EVERY` seconds, so readiness
  comes back by itself when space returns, with no traffic needed to find out.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import threading
import time
from typing import Any

from .db import transaction

PROBE_BYTES = 1024 * 1024  # about the pages one large ingestion batch adds
PROBE_EVERY = 1.0  # seconds between probes while full (readyz is public)


def is_disk_full(error: BaseException) -> bool:
    """SQLite's SQLITE_FULL, also when it came back from the writer process (pickled)."""
    if not isinstance(error, sqlite3.Error):
        return False
    code = getattr(error, "sqlite_errorcode", None)
    if code is not None:
        return bool(code & 0xFF == sqlite3.SQLITE_FULL)
    return "database or disk is full" in str(error)


class DiskWatch:
    """One process's view of whether the database can be written (module docstring)."""

    def __init__(self, min_free: int = 0) -> None:
        self.min_free = min_free
        self.full_since: float | None = None
        self.last_error = ""
        self._probed = 0.0
        self._lock = threading.Lock()

    def saw(self, error: BaseException) -> None:
        """Note a failed write (called for any error; only SQLITE_FULL counts)."""
        if is_disk_full(error):
            with self._lock:
                self.full_since = self.full_since or time.monotonic()
                self.last_error = str(error)

    def problem(self, store: Any) -> str | None:
        """Why writes fail now (for /readyz), or None."""
        if self.min_free and store.path != ":memory:":
            directory = os.path.dirname(os.path.abspath(store.path))
            free = shutil.disk_usage(directory).free
            if free < self.min_free:
                return (f"{free} bytes free on the filesystem of {store.path} (less than "
                        f"FLAGSVC_MIN_FREE_BYTES, {self.min_free}): writes fail or soon will")
        with self._lock:
            if self.full_since is None:
                return None
            if time.monotonic() - self._probed >= PROBE_EVERY:
                self._probed = time.monotonic()
                if self._probe(store):
                    self.full_since = None
                    return None
            return f"writes fail: {self.last_error}"

    @staticmethod
    def _probe(store: Any) -> bool:
        """Can PROBE_BYTES more be written? (allocated, then rolled back: nothing stays)"""
        class _RolledBack(Exception):
            pass

        try:
            with transaction(store.conn()) as conn:
                conn.execute("INSERT INTO schema_migrations (name, applied_at) "
                             "VALUES (zeroblob(?), 0)", (PROBE_BYTES,))
                raise _RolledBack
        except _RolledBack:
            return True
        except sqlite3.Error as e:
            return not is_disk_full(e)
