"""Flags: versioned definitions with soft delete, and the audit log of every change."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable
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

    def create_flag(self, project_id: int, flag: dict[str, Any], check: Any = None,
                    group_types: Iterable[str] = (), actor: str | None = None
                    ) -> dict[str, Any]:
        """Insert a new flag at version 1; Conflict if the key is taken (deleted flags too).
        `group_types` are created in the same transaction; `check(live_flags)` runs before
        the commit and may veto it by raising (nothing is left behind: no group type)."""
        conn = self.conn()
        with transaction(conn):
            self._ensure_types(conn, project_id, group_types, actor)
            current = self._flag_by(conn, project_id, flag["key"])
            if current is not None:
                hint = (" (a deleted flag has it: restore it instead)" if current["deleted"]
                        else "")
                raise Conflict(f"a flag with key {flag['key']!r} already exists{hint}")
            _, created = self.write_flag(conn, project_id, None, flag, actor=actor)
            self._check_live(conn, project_id, check)
        return created

    def update_flag(self, project_id: int, flag_id: int | str, changes: dict[str, Any],
                    expected_version: int | None, check: Any = None,
                    group_types: Iterable[str] = (),
                    actor: str | None = None) -> dict[str, Any]:
        """Apply `changes` if the stored version is `expected_version` (None: any); the
        check and the write are one transaction, so concurrent writers cannot both win, and
        the `group_types` it creates go with it (a stale version leaves none behind)."""
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
            self._ensure_types(conn, project_id, group_types, actor)
            _, after = self.write_flag(conn, project_id, before, changes, always=True,
                                       actor=actor)
            self._check_live(conn, project_id, check)
        return after

    def write_flag(self, conn: Any, project_id: int, before: dict[str, Any] | None,
                   changes: dict[str, Any], always: bool = False, now: float | None = None,
                   actor: str | None = None) -> tuple[str, dict[str, Any]]:
        """The one place a flag's definition is written, inside the caller's transaction:
        create (`before` None), restore a deleted one, or apply `changes` (skipped when the
        rules stay the same, unless `always`); each change audited and `flags_rev` moved.
        Returns (what was done, the flag as stored): "created", "updated", "restored"
        (restored and maybe updated) or "unchanged". Single-flag edits and imports both
        write through here."""
        now = time.time() if now is None else now
        if before is None:
            cur = conn.execute(
                "INSERT INTO flags (project_id, key, definition, version, created_at, "
                "updated_at) VALUES (?, ?, ?, 1, ?, ?)",
                (project_id, changes["key"], _definition(changes), now, now))
            created = self._row_by_id(conn, cur.lastrowid)
            self._audit(conn, project_id, "created", None, created, actor)
            return "created", created
        action = "unchanged"
        if before["deleted"]:
            conn.execute("UPDATE flags SET deleted_at = NULL, version = version + 1, "
                         "updated_at = ? WHERE id = ?", (now, before["id"]))
            restored = self._row_by_id(conn, before["id"])
            self._audit(conn, project_id, "restored", before, restored, actor)
            action, before = "restored", restored
        if not always and same_rules(before, changes):
            return action, before
        conn.execute("UPDATE flags SET definition = ?, version = version + 1, updated_at = ? "
                     "WHERE id = ?", (_definition({**before, **changes}), now, before["id"]))
        after = self._row_by_id(conn, before["id"])
        self._audit(conn, project_id, "updated", before, after, actor)
        return ("restored" if action == "restored" else "updated"), after

    def _ensure_types(self, conn: Any, project_id: int, names: Iterable[str],
                      actor: str | None) -> None:
        """The group types a flag write creates, in its transaction, each audited
        ("group_type_created") as POST /api/group_types audits it."""
        ensure = self.ensure_group_type  # type: ignore[attr-defined]  # GroupTypesMixin
        for name in names:
            if conn.execute("SELECT 1 FROM group_types WHERE project_id = ? AND name = ?",
                            (project_id, name)).fetchone() is None:
                ensure(conn, project_id, name)
                self._audit_project(  # type: ignore[attr-defined]  # ProjectsMixin
                    conn, project_id, "group_type_created", None, {"name": name}, actor)

    def _flag_by(self, conn: Any, project_id: int, key: str) -> dict[str, Any] | None:
        row = conn.execute(f"SELECT {_COLS} FROM flags WHERE project_id = ? AND key = ?",
                           (project_id, key)).fetchone()
        return _flag_row(row) if row else None

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
        transaction, through `write_flag` as single-flag edits are (a flag whose rules are
        unchanged is left at its version). `check(live_flags)` may veto the whole import
        by raising; LimitExceeded (a 6th group type) rolls everything back too."""
        done: dict[str, list[str]] = {"created": [], "updated": [], "restored": [],
                                      "unchanged": []}
        conn = self.conn()
        now = time.time()
        with transaction(conn):
            self._ensure_types(conn, project_id, group_types, actor)
            for flag in flags:
                before = self._flag_by(conn, project_id, flag["key"])
                action, _ = self.write_flag(conn, project_id, before, flag, now=now, actor=actor)
                if action == "restored" and before is not None and not same_rules(
                        before, flag):
                    done["restored"].append(flag["key"])
                    done["updated"].append(flag["key"])
                    continue
                if action == "restored":
                    done["restored"].append(flag["key"])
                    done["unchanged"].append(flag["key"])
                    continue
                done[action].append(flag["key"])
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
