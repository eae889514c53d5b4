"""Group types: at most 5 per project, each with a stable index; created, renamed and deleted.

"Unused", for a rename or a delete: no flag of the project names the type (bucket_by, a
condition's bucket_by, a group filter) — soft-deleted flags included, since a restore would
bring the reference back — and it is not the project's `default_group_type` (a delete;
a rename renames the default too). Groups of the type go with it: renamed, or deleted with
their memberships (events keep the groups they were stored with, as history).
"""

from __future__ import annotations

import sqlite3
import time
from typing import Any

from .db import Conflict, LimitExceeded, NotFound, transaction

MAX_GROUP_TYPES = 5


def too_many_types(name: str, used: int) -> LimitExceeded:
    return LimitExceeded(f"a project has at most {MAX_GROUP_TYPES} group types; {name!r} would "
                         f"be the {used + 1}th")


def project_types(conn: Any, project_id: int) -> dict[str, int]:
    """{name: index} of the project's group types."""
    return dict(conn.execute("SELECT name, idx FROM group_types WHERE project_id = ?",
                             (project_id,)).fetchall())


class GroupTypeNotAllowed(ValueError):
    """Ingestion named a group type the project does not have and may not create."""


class GroupTypesMixin:
    conn: Any  # provided by Store
    list_flags: Any  # FlagsMixin
    _audit_project: Any  # ProjectsMixin

    def group_types(self, project_id: int) -> list[dict[str, Any]]:
        rows = self.conn().execute(
            "SELECT name, idx, created_at FROM group_types WHERE project_id = ? ORDER BY idx",
            (project_id,)).fetchall()
        return [{"name": n, "index": i, "created_at": c} for n, i, c in rows]

    def ensure_group_type(self, conn: sqlite3.Connection, project_id: int, name: str,
                          create: bool = True, known: dict[str, int] | None = None) -> int:
        """The index of group type `name`, created if new (`create`; else
        GroupTypeNotAllowed); LimitExceeded past 5 types. Call inside a write transaction.
        `known`: the project's types ({name: index}, `project_types`) read earlier in the
        same transaction, used instead of asking again and kept up to date (an ingestion
        batch naming thousands of types made a round trip per name)."""
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"a group type name must be a non-empty string, not {name!r}")
        if known is not None:
            idx = known.get(name)
        else:
            row = conn.execute("SELECT idx FROM group_types WHERE project_id = ? AND name = ?",
                               (project_id, name)).fetchone()
            idx = row[0] if row else None
        if idx is not None:
            return idx
        if not create:
            raise GroupTypeNotAllowed(
                f"{name!r} is not a group type of the project, and ingestion may not create "
                "one (create it with POST /api/group_types, or set the project's "
                "ingestion_creates_group_types)")
        used = set((known if known is not None else project_types(conn, project_id)).values())
        free = [i for i in range(MAX_GROUP_TYPES) if i not in used]
        if not free:
            raise too_many_types(name, len(used))
        conn.execute("INSERT INTO group_types (project_id, name, idx, created_at) "
                     "VALUES (?, ?, ?, ?)", (project_id, name, free[0], time.time()))
        if known is not None:
            known[name] = free[0]
        return free[0]

    def create_group_type(self, project_id: int, name: str,
                          actor: str | None = None) -> dict[str, Any]:
        """The group type `name`, created and audited ("group_type_created", with its
        `actor`) unless it exists: `created` says which. The existence check is inside the
        write transaction, so of concurrent creates of one name exactly one creates and
        audits it."""
        conn = self.conn()
        with transaction(conn):
            existed = conn.execute("SELECT idx FROM group_types WHERE project_id = ? AND "
                                   "name = ?", (project_id, name)).fetchone()
            if existed:
                return {"name": name, "index": existed[0], "created": False}
            idx = self.ensure_group_type(conn, project_id, name)
            self._audit_project(conn, project_id, "group_type_created", None,
                                {"name": name}, actor)
        return {"name": name, "index": idx, "created": True}

    def _flags_naming(self, project_id: int, name: str) -> list[str]:
        from ..flagcheck import referenced_group_types  # flagcheck imports the store

        return [f["key"] for f in self.list_flags(project_id, include_deleted=True)
                if name in referenced_group_types(f)]

    def _check_unused(self, conn: sqlite3.Connection, project_id: int, name: str) -> None:
        if conn.execute("SELECT 1 FROM group_types WHERE project_id = ? AND name = ?",
                        (project_id, name)).fetchone() is None:
            raise NotFound(f"group type {name!r} does not exist")
        using = self._flags_naming(project_id, name)
        if using:
            shown = ", ".join(using[:20]) + (f" and {len(using) - 20} more" if len(using) > 20
                                             else "")
            raise Conflict(f"group type {name!r} is used by flags (deleted ones included): "
                           f"{shown}; change them first")

    def _log_groups(self, conn: sqlite3.Connection, project_id: int, group_type: str,
                    as_type: str | None = None) -> None:
        """Change-log rows for every group of a type, so evaluators evict what they cached
        under that name (and, for a rename, under the new one)."""
        for logged in {group_type, as_type or group_type}:
            conn.execute(
                "INSERT INTO changes (project_id, kind, group_type, key, created_at) "
                "SELECT project_id, 'group', ?, group_key, ? FROM groups "
                "WHERE project_id = ? AND group_type = ?",
                (logged, time.time(), project_id, group_type))

    def rename_group_type(self, project_id: int, name: str, new_name: str,
                          actor: str | None = None) -> dict[str, Any]:
        """Rename an unused group type; its groups, parent links naming it and the project's
        default group type follow. Conflict if a flag names it or `new_name` exists."""
        conn = self.conn()
        with transaction(conn):
            self._check_unused(conn, project_id, name)
            if conn.execute("SELECT 1 FROM group_types WHERE project_id = ? AND name = ?",
                            (project_id, new_name)).fetchone():
                raise Conflict(f"group type {new_name!r} exists already")
            self._log_groups(conn, project_id, name, new_name)
            conn.execute("UPDATE group_types SET name = ? WHERE project_id = ? AND name = ?",
                         (new_name, project_id, name))
            moved = conn.execute(
                "UPDATE groups SET group_type = ? WHERE project_id = ? AND group_type = ?",
                (new_name, project_id, name)).rowcount
            conn.execute(
                "UPDATE groups SET parent_type = ? WHERE project_id = ? AND parent_type = ?",
                (new_name, project_id, name))
            conn.execute("UPDATE projects SET default_group_type = CASE WHEN "
                         "default_group_type = ? THEN ? ELSE default_group_type END, "
                         "flags_rev = flags_rev + 1 WHERE id = ?", (name, new_name, project_id))
            idx = conn.execute("SELECT idx FROM group_types WHERE project_id = ? AND name = ?",
                               (project_id, new_name)).fetchone()[0]
            self._audit_project(conn, project_id, "group_type_renamed", {"name": name},
                                {"name": new_name}, actor)
        return {"name": new_name, "index": idx, "groups": moved}

    def delete_group_type(self, project_id: int, name: str,
                          actor: str | None = None) -> dict[str, Any]:
        """Delete an unused group type that is not the default one, with its groups and
        their memberships (its index is free again). Conflict if a flag names it."""
        conn = self.conn()
        with transaction(conn):
            self._check_unused(conn, project_id, name)
            default = conn.execute("SELECT default_group_type FROM projects WHERE id = ?",
                                   (project_id,)).fetchone()[0]
            if default == name:
                raise Conflict(f"{name!r} is the project's default_group_type; change that "
                               "first (PATCH /api/project)")
            self._log_groups(conn, project_id, name)
            conn.execute("DELETE FROM memberships WHERE group_id IN (SELECT id FROM groups "
                         "WHERE project_id = ? AND group_type = ?)", (project_id, name))
            deleted = conn.execute("DELETE FROM groups WHERE project_id = ? AND group_type = ?",
                                   (project_id, name)).rowcount
            conn.execute("DELETE FROM group_types WHERE project_id = ? AND name = ?",
                         (project_id, name))
            self._audit_project(conn, project_id, "group_type_deleted", {"name": name,
                                "groups": deleted}, None, actor)
            conn.execute("UPDATE projects SET flags_rev = flags_rev + 1 WHERE id = ?",
                         (project_id,))
        return {"name": name, "groups_deleted": deleted}
