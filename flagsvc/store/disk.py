"""Is there room to write? What `/readyz` asks besides "does the database answer".

On a full disk every write fails with SQLITE_FULL ("database or disk is full") and
ingestion answers 503, while reads (decide) keep working. Two signs, either one enough:

- the database's filesystem has less free space than `min_free` bytes (what a real full
  disk shows, to every process alike);
- a write of this process failed with SQLITE_FULL (also what statvfs cannot see: a quota,
  SQLite's `max_page_count`), or the file probe below failed with ENOSPC/EDQUOT. Until a
  probe succeeds, at most once per `PROBE_EVERY` seconds, so readiness comes back by itself
  when space returns, with no traffic needed to find out. The probe is two writes that
  leave nothing behind: `PROBE_BYTES` into the database, rolled back (SQLite's page cache
  can absorb that on a full disk), and `PROBE_BYTES` allocated for real (posix_fallocate,
  then fsync) in a temporary file beside the database, removed after. While all is well
  the file probe still runs every `IDLE_PROBE_EVERY` seconds (with FLAGSVC_MIN_FREE_BYTES=0
  nothing else would see a full disk before ingestion fails).
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import sqlite3
import threading
import time
from typing import Any

from .db import transaction

PROBE_BYTES = 1024 * 1024  # about the pages one large ingestion batch adds
PROBE_EVERY = 1.0  # seconds between probes while full (readyz is public)
IDLE_PROBE_EVERY = 10.0  # seconds between file probes while writes succeed
_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)


def is_disk_full(error: BaseException) -> bool:
    """SQLite's SQLITE_FULL: by its error code, or by its message when the code is gone
    (a pickled error has none)."""
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
        """Why writes fail now (for /readyz), or None. The messages name no path: /readyz
        is public."""
        on_disk = store.path != ":memory:" and store.dialect == "sqlite"
        if self.min_free and on_disk:
            directory = os.path.dirname(os.path.abspath(store.path))
            free = shutil.disk_usage(directory).free
            if free < self.min_free:
                return (f"{free} bytes free on the database's filesystem (less than "
                        f"FLAGSVC_MIN_FREE_BYTES, {self.min_free}): writes fail or soon will")
        with self._lock:
            now = time.monotonic()
            if self.full_since is None:
                if on_disk and now - self._probed >= IDLE_PROBE_EVERY:
                    self._probed = now
                    error = _file_probe(store.path)
                    if error:
                        self.full_since, self.last_error = now, error
                        return f"writes fail: {error}"
                return None
            if now - self._probed >= PROBE_EVERY:
                self._probed = now
                error = _file_probe(store.path) if on_disk else None
                if error:
                    self.last_error = error
                elif self._probe(store):
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


def _file_probe(db_path: str) -> str | None:
    """Allocate PROBE_BYTES for real beside the database (posix_fallocate + fsync: no cache
    can pretend), then remove the file. The error if the disk is full, else None (other
    errors, say a filesystem without fallocate, are not this probe's to report)."""
    directory = os.path.dirname(os.path.abspath(db_path))
    path = os.path.join(directory, f".flagsvc-readyz-{os.getpid()}.probe")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.posix_fallocate(fd, 0, PROBE_BYTES)
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as e:
        if e.errno in _FULL_ERRNOS:
            return f"no space left beside the database ({os.strerror(e.errno)})"
        return None
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)
    return None
