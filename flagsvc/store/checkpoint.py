"""WAL checkpoints in the background, outside the write lock.

In WAL mode SQLite copies the log back into the database file ("checkpoint") from inside the
commit of whichever writer crosses `wal_autocheckpoint` pages: that writer holds the write
lock while it copies thousands of pages and fsyncs the database file, and every other
writer waits. Under steady ingestion that was ~1.3 ms of every 100-event batch's 6-7 ms.

`Checkpointer` moves the copying out of the lock: a thread that runs PASSIVE checkpoints
(which never block writers) as the log grows, and, when the log is long and all but a few
pages are copied, takes the writer queue's lock for a moment to copy those, so the next
writer can start the log over from its beginning (SQLite restarts the log only when it is
fully copied and no reader still uses it).

One checkpointer runs per database: every `flagsvc serve` worker starts one, and all but
the first wait on an `flock` of `<database>.checkpointer`; if its process dies the kernel
releases the lock and a waiting worker takes over. Writers keep SQLite's automatic
checkpoint as a safety net (it only fires if the log reaches `wal_autocheckpoint` pages,
i.e. if this thread falls behind or is not running).
"""

from __future__ import annotations

import fcntl
import logging
import os
import sqlite3
import threading

from .db import WAL_AUTOCHECKPOINT_PAGES, connect, wait_for_lock

log = logging.getLogger("flagsvc")

INTERVAL = 0.05  # seconds between looks at the log
RESTART_FRAMES = WAL_AUTOCHECKPOINT_PAGES // 2  # finish the log (under the lock) past this
TAIL_FRAMES = 400  # ... once at most this many pages are left to copy
MAX_PASSES = 8  # PASSIVE passes chasing the writers per look


class Checkpointer:
    """A daemon thread checkpointing one database file (see the module docstring)."""

    def __init__(self, path: str, synchronous: str = "FULL") -> None:
        self.path = path
        self.synchronous = synchronous
        self.active = threading.Event()  # set while this one holds the checkpointer lock
        self.restarts = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="flagsvc-checkpointer",
                                        daemon=True)

    def start(self) -> Checkpointer:
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        fd = os.open(self.path + ".checkpointer", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            # wait to be the one checkpointer of this file
            if not wait_for_lock(fd, self._stop.is_set, self._stop.wait):
                return
            self.active.set()
            conn = None
            while not self._stop.wait(INTERVAL):
                try:
                    conn = conn or connect(self.path, self.synchronous)
                    self.step(conn)
                except (sqlite3.Error, OSError) as e:  # retried at the next look; meanwhile
                    log.warning("background checkpoint failed: %s", e)  # writers checkpoint
                    if conn is not None:
                        conn.close()
                    conn = None
                    self._stop.wait(1.0)
            if conn is not None:
                conn.close()
        finally:
            self.active.clear()
            os.close(fd)  # releases the flock: another worker's checkpointer takes over

    def step(self, conn: sqlite3.Connection) -> tuple[int, int]:
        """One look at the log: copy what writers appended, and when the log has grown,
        copy its last pages under the writers' lock so the next writer starts it over.
        Returns (pages in the log, pages copied) after the look."""
        frames, copied = self._passive(conn)
        for _ in range(MAX_PASSES):  # chase the writers without blocking them
            if frames < RESTART_FRAMES or frames - copied <= TAIL_FRAMES:
                break
            frames, copied = self._passive(conn)
        # Fully copied: the next writer starts the log over by itself. More than a tail left
        # (writers outran the copy, or a reader's snapshot holds pages back): try again at
        # the next look rather than make every writer wait.
        if frames < RESTART_FRAMES or copied == frames or frames - copied > TAIL_FRAMES:
            return frames, copied
        # Writers queue on this lock (db.transaction): the last pages are copied with no
        # writer running, so the next one starts the log over.
        fd = getattr(conn, "write_lock_fd", None)
        if fd is not None:
            fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            frames, copied = self._passive(conn)
        finally:
            if fd is not None:
                fcntl.flock(fd, fcntl.LOCK_UN)
        if copied == frames:
            self.restarts += 1
        return frames, copied

    @staticmethod
    def _passive(conn: sqlite3.Connection) -> tuple[int, int]:
        _, frames, copied = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        return max(frames, 0), max(copied, 0)
