"""Console users, the projects they see, and their sessions (migration 0007).

Only SQL lives here: password hashing, sign-in limits and session policy are
`flagsvc.accounts` (failed sign-ins: store/signin.py).
Portable SQL (no SQLite-only functions), through the store's connections and transactions.
"""

from __future__ import annotations

import time
from typing import Any

from .db import Conflict, IntegrityError, NotFound, transaction

ROLES = ("viewer", "editor", "admin")  # each can do what the ones before it can

_UCOLS = ("id, email, password_hash, role, all_projects, must_change_password, disabled_at, "
          "created_at, updated_at")


def _user(row: tuple | None) -> dict[str, Any] | None:
    if row is None:
        return None
    uid, email, pw, role, all_projects, must_change, disabled, created, updated = row
    return {"id": uid, "email": email, "password_hash": pw, "role": role,
            "all_projects": bool(all_projects), "must_change_password": bool(must_change),
            "disabled": disabled is not None,
            "created_at": created, "updated_at": updated}


class UsersMixin:
    conn: Any
    _audit_project: Any  # ProjectsMixin

    def _audit_user(self, conn: Any, user_id: int, action: str, before: dict | None,
                    after: dict | None, actor: str | None, also: tuple | set = ()) -> None:
        """A user change, in the audit log of every project the user may open (and of
        `also`, the ones they may no longer), in the change's transaction. Never a hash."""
        row = conn.execute("SELECT all_projects FROM users WHERE id = ?", (user_id,)).fetchone()
        if row is not None and row[0]:
            pids = {r[0] for r in conn.execute("SELECT id FROM projects")}
        else:
            pids = {r[0] for r in conn.execute(
                "SELECT project_id FROM user_projects WHERE user_id = ?", (user_id,))}
        for pid in sorted(pids | set(also)):
            self._audit_project(conn, pid, action, before, after, actor)

    def _projects_text(self, conn: Any, user_id: int) -> str | list[int]:
        row = conn.execute("SELECT all_projects FROM users WHERE id = ?", (user_id,)).fetchone()
        if row is None or row[0]:
            return "all"
        return sorted(r[0] for r in conn.execute(
            "SELECT project_id FROM user_projects WHERE user_id = ?", (user_id,)))

    # ------------------------------------------------------------ users

    def create_user(self, email: str, password_hash: str, role: str,
                    projects: list[int] | None = None,
                    must_change_password: bool = False,
                    actor: str | None = None) -> dict[str, Any]:
        """A new user; `projects` None: every project. Conflict if the email is taken.
        Audited ("user_created") when an `actor` made it."""
        if role not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}, not {role!r}")
        now = time.time()
        conn = self.conn()
        try:
            with transaction(conn):
                cur = conn.execute(
                    "INSERT INTO users (email, password_hash, role, all_projects, "
                    "must_change_password, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (email.lower(), password_hash, role, int(projects is None),
                     int(must_change_password), now, now))
                uid = cur.lastrowid
                for pid in projects or []:
                    conn.execute("INSERT INTO user_projects (user_id, project_id) VALUES (?, ?)",
                                 (uid, pid))
                if actor is not None:
                    self._audit_user(conn, uid, "user_created", None, {
                        "email": email.lower(), "role": role,
                        "projects": self._projects_text(conn, uid)}, actor)
        except IntegrityError as e:  # (either backend's)
            if "FOREIGN KEY" in str(e).upper():
                raise NotFound("no such project") from None
            raise Conflict(f"a user with email {email.lower()!r} already exists") from None
        user = self.get_user(uid)  # type: ignore[arg-type]
        assert user is not None
        return user

    def get_user(self, user_id: int) -> dict[str, Any] | None:
        return _user(self.conn().execute(f"SELECT {_UCOLS} FROM users WHERE id = ?",
                                         (user_id,)).fetchone())

    def user_by_email(self, email: str) -> dict[str, Any] | None:
        return _user(self.conn().execute(f"SELECT {_UCOLS} FROM users WHERE email = ?",
                                         (email.strip().lower(),)).fetchone())

    def list_users(self) -> list[dict[str, Any]]:
        rows = self.conn().execute(f"SELECT {_UCOLS} FROM users ORDER BY email").fetchall()
        return [u for u in map(_user, rows) if u is not None]

    def count_users(self) -> int:
        return self.conn().execute("SELECT COUNT(*) FROM users").fetchone()[0]

    def user_project_ids(self, user: dict[str, Any]) -> list[int]:
        """The projects a user may open (all of them for `all_projects`)."""
        if user["all_projects"]:
            rows = self.conn().execute("SELECT id FROM projects ORDER BY id")
        else:
            rows = self.conn().execute(
                "SELECT project_id FROM user_projects WHERE user_id = ? ORDER BY project_id",
                (user["id"],))
        return [r[0] for r in rows]

    def update_user(self, user_id: int, role: str | None = None,
                    disabled: bool | None = None, actor: str | None = None) -> dict[str, Any]:
        """Change a user's role or disable / enable them (disabling ends their sessions);
        audited ("user_updated", the values before / after) when an `actor` made it."""
        if role is not None and role not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}, not {role!r}")
        conn = self.conn()
        now = time.time()
        with transaction(conn):
            old = conn.execute("SELECT email, role, disabled_at FROM users WHERE id = ?",
                               (user_id,)).fetchone()
            if old is None:
                raise NotFound(f"user {user_id} does not exist")
            before, after = {"email": old[0]}, {"email": old[0]}
            if role is not None and role != old[1]:
                before["role"], after["role"] = old[1], role
            if disabled is not None and disabled != (old[2] is not None):
                before["disabled"], after["disabled"] = not disabled, disabled
            if actor is not None and len(after) > 1:
                self._audit_user(conn, user_id, "user_updated", before, after, actor)
            if role is not None:
                conn.execute("UPDATE users SET role = ?, updated_at = ? WHERE id = ?",
                             (role, now, user_id))
            if disabled is not None:
                conn.execute("UPDATE users SET disabled_at = ?, updated_at = ? WHERE id = ?",
                             (now if disabled else None, now, user_id))
                if disabled:
                    conn.execute("DELETE FROM sessions WHERE user_id = ?", (user_id,))
        user = self.get_user(user_id)
        assert user is not None
        return user

    def set_user_projects(self, user_id: int, projects: list[int] | None,
                          actor: str | None = None) -> None:
        """The projects a user may open: None for every project (also later ones); audited
        ("user_updated") in the projects of before and after when an `actor` made it."""
        conn = self.conn()
        try:
            with transaction(conn):
                email = conn.execute("SELECT email FROM users WHERE id = ?",
                                     (user_id,)).fetchone()
                before = self._projects_text(conn, user_id)
                old_ids = {r[0] for r in conn.execute("SELECT id FROM projects")} if (
                    before == "all") else set(before)
                cur = conn.execute("UPDATE users SET all_projects = ?, updated_at = ? WHERE id = ?",
                                   (int(projects is None), time.time(), user_id))
                if cur.rowcount == 0:
                    raise NotFound(f"user {user_id} does not exist")
                conn.execute("DELETE FROM user_projects WHERE user_id = ?", (user_id,))
                for pid in projects or []:
                    conn.execute("INSERT INTO user_projects (user_id, project_id) VALUES (?, ?)",
                                 (user_id, pid))
                after = self._projects_text(conn, user_id)
                if actor is not None and before != after:
                    self._audit_user(conn, user_id, "user_updated", {
                        "email": email[0], "projects": before}, {
                        "email": email[0], "projects": after}, actor, also=old_ids)
        except IntegrityError:
            raise NotFound("no such project") from None

    def set_password(self, user_id: int, password_hash: str, must_change: bool,
                     keep_session: int | None = None, actor: str | None = None) -> None:
        """A new password: ends the email's sign-in counts and locks (store/signin.py) and
        the user's sessions (but `keep_session`, the one that changed it); audited
        ("user_password_reset", never the hash) when an `actor` (an admin, the cli) gave
        it."""
        conn = self.conn()
        with transaction(conn):
            cur = conn.execute(
                "UPDATE users SET password_hash = ?, must_change_password = ?, updated_at = ? "
                "WHERE id = ?", (password_hash, int(must_change), time.time(), user_id))
            if cur.rowcount == 0:
                raise NotFound(f"user {user_id} does not exist")
            conn.execute("UPDATE sign_in_attempts SET failures = 0, blocked_until = NULL "
                         "WHERE email = (SELECT email FROM users WHERE id = ?)", (user_id,))
            if actor is not None:
                email = conn.execute("SELECT email FROM users WHERE id = ?",
                                     (user_id,)).fetchone()[0]
                self._audit_user(conn, user_id, "user_password_reset", None, {
                    "email": email, "one_time": bool(must_change)}, actor)
            conn.execute("DELETE FROM sessions WHERE user_id = ? AND id <> ?",
                         (user_id, keep_session if keep_session is not None else -1))

    # ------------------------------------------------------------ sessions

    def create_session(self, user_id: int, token_hash: str, csrf_token: str,
                       project_id: int | None, expires_at: float) -> int:
        now = time.time()
        conn = self.conn()
        with transaction(conn):
            conn.execute("DELETE FROM sessions WHERE expires_at <= ?", (now,))  # tidy up
            cur = conn.execute(
                "INSERT INTO sessions (token_hash, user_id, csrf_token, project_id, created_at, "
                "last_seen_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (token_hash, user_id, csrf_token, project_id, now, now, expires_at))
        return cur.lastrowid  # type: ignore[return-value]

    def session_by_token(self, token_hash: str) -> dict[str, Any] | None:
        """The live session of a cookie, with its user (None once expired or disabled)."""
        row = self.conn().execute(
            "SELECT id, user_id, csrf_token, project_id, created_at, last_seen_at, expires_at "
            "FROM sessions WHERE token_hash = ?", (token_hash,)).fetchone()
        if row is None or row[6] <= time.time():
            return None
        user = self.get_user(row[1])
        if user is None or user["disabled"]:
            return None
        return {"id": row[0], "user": user, "csrf_token": row[2], "project_id": row[3],
                "created_at": row[4], "last_seen_at": row[5], "expires_at": row[6]}

    def touch_session(self, session_id: int, expires_at: float) -> None:
        conn = self.conn()
        with transaction(conn):
            conn.execute("UPDATE sessions SET last_seen_at = ?, expires_at = ? WHERE id = ?",
                         (time.time(), expires_at, session_id))

    def set_session_project(self, session_id: int, project_id: int) -> None:
        conn = self.conn()
        with transaction(conn):
            conn.execute("UPDATE sessions SET project_id = ? WHERE id = ?",
                         (project_id, session_id))

    def delete_session(self, session_id: int) -> None:
        conn = self.conn()
        with transaction(conn):
            conn.execute("DELETE FROM sessions WHERE id = ?", (session_id,))
