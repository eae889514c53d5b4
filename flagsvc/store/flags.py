"""Flags: versioned definitions with soft delete, and the audit log of every change."""

from __future__ import annotations

import json
import sqlite3
import time
from typing import Any

from .db import Conflict, NotFound, transaction

# Fields kept in the definition column; key/id/version/timestamps live in their own columns.
_META = ("id", "key", "version", "created_at", "updated_at", "deleted", "deleted_at")


def _flag_row(row: tuple) -> dict[str, Any]:
    fid, key, definition, version, deleted_at, created, updated = row
    flag = json.loads(definition)
    flag.update(id=fid, key=key, version=version, deleted=deleted_at is not None,
                created_at=created, updated_at=updated)
    return flag


_COLS = "id, key, definition, version, deleted_at, created_at, updated_at"


def _definition(flag: dict[str, Any]) -> str:
    return json.dumps({k: v for k, v in flag.items() if k not in _META}, sort_keys=True)


def same_rules(current: dict[str, Any], changes: dict[str, Any]) -> bool:
    """Would applying `changes` to the stored flag `current` leave its definition as it is?"""
    return _definition({**current, **changes}) == _definition(current)


class FlagsMixin:
    conn: Any

    def list_flags(self, project_id: int, include_deleted: bool = False) -> list[dict[str, Any]]:
        where = "" if include_deleted else " AND deleted_at IS NULL"
        rows = self.conn().execute(
            f"SELECT {_COLS} FROM flags WHERE project_id = ?{where} ORDER BY key", (project_id,))
        return [_flag_row(r) for r in rows]

    def get_flag(self, project_id: int, flag_id: int | str) -> dict[str, Any]:
        """A flag by numeric id or by key (deleted ones too); NotFound otherwise."""
        column = "id" if isinstance(flag_id, int) else "key"
        row = self.conn().execute(
            f"SELECT {_COLS} FROM flags WHERE project_id = ? AND {column} = ?",
            (project_id, flag_id)).fetchone()
        if row is None:
            raise NotFound(f"flag {flag_id!r} does not exist")
        return _flag_row(row)

    def _audit(self, conn: sqlite3.Connection, project_id: int, action: str,
               before: dict | None, after: dict | None, actor: str | None) -> None:
        """The audit entry of a flag change, in the change's transaction. `actor` says who:
        "user <email>" (console), "secret key <fingerprint>" (admin API), "cli"."""
        ref = after or before or {}
        conn.execute(
            "INSERT INTO audit_log (project_id, flag_id, flag_key, action, version, before, after, "
            "created_at, actor) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (project_id, ref.get("id"), ref.get("key"), action, ref.get("version"),
             json.dumps(before) if before is not None else None,
             json.dumps(after) if after is not None else None, time.time(), actor))
        conn.execute("UPDATE projects SET flags_rev = flags_rev + 1 WHERE id = ?", (project_id,))

    def _check_live(self, conn: sqlite3.Connection, project_id: int, check: Any) -> None:
        """Run `check` on the project's live flags as this transaction leaves them (its
        exception rolls the write back): checks that span flags, such as dependency cycles,
        then hold even against a concurrent edit of another flag."""
        if check is not None:
            check([_flag_row(r) for r in conn.execute(
                f"SELECT {_COLS} FROM flags WHERE project_id = ? AND deleted_at IS NULL",
                (project_id,))])

    def create_flag(self, project_id: int, flag: dict[str, Any],
                    check: Any = None, actor: str | None = None) -> dict[str, Any]:
        """Insert a new flag at version 1; Conflict if the key is taken (deleted flags too).
        `check(live_flags)` runs before the commit and may veto it by raising."""
        now = time.time()
        conn = self.conn()
        with transaction(conn):
            try:
                cur = conn.execute(
                    "INSERT INTO flags "
                    "(project_id, key, definition, version, created_at, updated_at) "
                    "VALUES (?, ?, ?, 1, ?, ?)",
                    (project_id, flag["key"], _definition(flag), now, now))
            except sqlite3.IntegrityError:
                deleted = conn.execute(
                    "SELECT deleted_at IS NOT NULL FROM flags WHERE project_id = ? AND key = ?",
                    (project_id, flag["key"])).fetchone()
                hint = (" (a deleted flag has it: restore it instead)"
                        if deleted and deleted[0] else "")
                raise Conflict(f"a flag with key {flag['key']!r} already exists{hint}") from None
            created = _flag_row(conn.execute(f"SELECT {_COLS} FROM flags WHERE id = ?",
                                             (cur.lastrowid,)).fetchone())
            self._check_live(conn, project_id, check)
            self._audit(conn, project_id, "created", None, created, actor)
        return created

    def update_flag(self, project_id: int, flag_id: int | str, changes: dict[str, Any],
                    expected_version: int | None, check: Any = None,
                    actor: str | None = None) -> dict[str, Any]:
        """Apply `changes` if the stored version is `expected_version` (None: any); the
        check and the write are one transaction, so concurrent writers cannot both win."""
        conn = self.conn()
        with transaction(conn):
            before = self._locked_flag(conn, project_id, flag_id)
            if before["deleted"]:
                raise Conflict(f"flag {before['key']!r} is deleted; restore it first")
            if expected_version is not None and expected_version != before["version"]:
                raise Conflict(
                    f"flag {before['key']!r} is at version {before['version']}, not "
                    f"{expected_version}: it was changed since you read it")
            if "key" in changes and changes["key"] != before["key"]:
                raise Conflict("a flag's key cannot be changed")
            merged = {**before, **changes}
            conn.execute(
                "UPDATE flags SET definition = ?, version = version + 1, updated_at = ? "
                "WHERE id = ?",
                (_definition(merged), time.time(), before["id"]))
            after = _flag_row(conn.execute(f"SELECT {_COLS} FROM flags WHERE id = ?",
                                           (before["id"],)).fetchone())
            self._check_live(conn, project_id, check)
            self._audit(conn, project_id, "updated", before, after, actor)
        return after

    def _locked_flag(self, conn: sqlite3.Connection, project_id: int,
                     flag_id: int | str) -> dict[str, Any]:
        column = "id" if isinstance(flag_id, int) else "key"
        row = conn.execute(f"SELECT {_COLS} FROM flags WHERE project_id = ? AND {column} = ?",
                           (project_id, flag_id)).fetchone()
        if row is None:
            raise NotFound(f"flag {flag_id!r} does not exist")
        return _flag_row(row)

    def set_flag_deleted(self, project_id: int, flag_id: int | str, deleted: bool,
                         expected_version: int | None = None,
                         actor: str | None = None) -> dict[str, Any]:
        conn = self.conn()
        with transaction(conn):
            before = self._locked_flag(conn, project_id, flag_id)
            if before["deleted"] == deleted:
                return before
            if expected_version is not None and expected_version != before["version"]:
                raise Conflict(f"flag {before['key']!r} is at version {before['version']}, "
                               f"not {expected_version}")
            conn.execute(
                "UPDATE flags SET deleted_at = ?, version = version + 1, updated_at = ? "
                "WHERE id = ?",
                (time.time() if deleted else None, time.time(), before["id"]))
            after = _flag_row(conn.execute(f"SELECT {_COLS} FROM flags WHERE id = ?",
                                           (before["id"],)).fetchone())
            self._audit(conn, project_id, "deleted" if deleted else "restored", before, after,
                        actor)
        return after

    def import_flags(self, project_id: int, flags: list[dict[str, Any]],
                     group_types: list[str], check: Any = None,
                     actor: str | None = None) -> dict[str, list[str]]:
        """Create, update or restore `flags` by key and create `group_types`, all in one
        transaction (each change audited as the single-flag methods do; a flag whose rules
        are unchanged is left at its version). `check(live_flags)` may veto the whole import
        by raising; LimitExceeded (a 6th group type) rolls everything back too."""
        done: dict[str, list[str]] = {"created": [], "updated": [], "restored": [],
                                      "unchanged": []}
        conn = self.conn()
        now = time.time()
        ensure = self.ensure_group_type  # type: ignore[attr-defined]  # ProjectsMixin
        with transaction(conn):
            for name in group_types:
                ensure(conn, project_id, name)
            for flag in flags:
                row = conn.execute(f"SELECT {_COLS} FROM flags WHERE project_id = ? AND key = ?",
                                   (project_id, flag["key"])).fetchone()
                if row is None:
                    cur = conn.execute(
                        "INSERT INTO flags (project_id, key, definition, version, created_at, "
                        "updated_at) VALUES (?, ?, ?, 1, ?, ?)",
                        (project_id, flag["key"], _definition(flag), now, now))
                    self._audit(conn, project_id, "created", None, self._row_by_id(
                        conn, cur.lastrowid), actor)
                    done["created"].append(flag["key"])
                    continue
                before = _flag_row(row)
                if before["deleted"]:
                    conn.execute("UPDATE flags SET deleted_at = NULL, version = version + 1, "
                                 "updated_at = ? WHERE id = ?", (now, before["id"]))
                    restored = self._row_by_id(conn, before["id"])
                    self._audit(conn, project_id, "restored", before, restored, actor)
                    done["restored"].append(flag["key"])
                    before = restored
                if same_rules(before, flag):
                    done["unchanged"].append(flag["key"])
                    continue
                conn.execute("UPDATE flags SET definition = ?, version = version + 1, "
                             "updated_at = ? WHERE id = ?",
                             (_definition({**before, **flag}), now, before["id"]))
                self._audit(conn, project_id, "updated", before,
                            self._row_by_id(conn, before["id"]), actor)
                done["updated"].append(flag["key"])
            self._check_live(conn, project_id, check)
        return done

    @staticmethod
    def _row_by_id(conn: sqlite3.Connection, flag_id: int | None) -> dict[str, Any]:
        return _flag_row(conn.execute(f"SELECT {_COLS} FROM flags WHERE id = ?",
                                      (flag_id,)).fetchone())

    def audit_log(self, project_id: int, flag_id: int | None = None, limit: int = 100,
                  before_id: int | None = None) -> list[dict[str, Any]]:
        sql = ("SELECT id, flag_id, flag_key, action, version, before, after, created_at, "
               "actor FROM audit_log WHERE project_id = ?")
        args: list[Any] = [project_id]
        if flag_id is not None:
            sql += " AND flag_id = ?"
            args.append(flag_id)
        if before_id is not None:
            sql += " AND id < ?"
            args.append(before_id)
        sql += " ORDER BY id DESC LIMIT ?"
        args.append(limit)
        out = []
        for r in self.conn().execute(sql, args):
            out.append({"id": r[0], "flag_id": r[1], "flag_key": r[2], "action": r[3],
                        "version": r[4], "before": json.loads(r[5]) if r[5] else None,
                        "after": json.loads(r[6]) if r[6] else None, "created_at": r[7],
                        "actor": r[8]})
        return out

    def last_changes(self, project_id: int) -> dict[int, dict[str, Any]]:
        """flag id -> its latest audit entry's action, actor and time (the flags list)."""
        rows = self.conn().execute(
            "SELECT flag_id, action, actor, created_at FROM audit_log WHERE id IN "
            "(SELECT MAX(id) FROM audit_log WHERE project_id = ? GROUP BY flag_id)",
            (project_id,)).fetchall()
        return {r[0]: {"action": r[1], "actor": r[2], "created_at": r[3]} for r in rows}
