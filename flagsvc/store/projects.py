"""Projects, their tokens and group types."""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import sqlite3
import time
from typing import Any

from .db import Conflict, IntegrityError, NotFound, dumps, transaction
from .group_types import MAX_GROUP_TYPES

__all__ = ["MAX_GROUP_TYPES", "ProjectsMixin"]
API_PREFIX = "phc_"
SECRET_PREFIX = "fsk_"
TOKEN_KINDS = ("api", "secret")


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def fingerprint(token: str) -> str:
    """What the audit log names a secret by: the first 12 hex digits of its SHA-256
    (`printf %s "$KEY" | sha256sum | cut -c1-12`), which tells nothing of the secret."""
    return token_hash(token)[:12]


def new_token(prefix: str) -> str:
    return prefix + secrets.token_urlsafe(32)


def _project_row(row: sqlite3.Row | tuple | None) -> dict[str, Any] | None:
    if row is None:
        return None
    (pid, name, api_token, dgt, private, retention, rev, created, creates, client,
     signed, mixpanel_keys, signed_persons) = row
    return {"id": pid, "name": name, "api_token": api_token, "default_group_type": dgt,
            "private_properties": json.loads(private), "event_retention_days": retention,
            "flags_rev": rev, "created_at": created,
            "ingestion_creates_group_types": bool(creates), "client_properties": client,
            "require_signed_groups": bool(signed),
            "mixpanel_group_keys": json.loads(mixpanel_keys),
            "require_signed_persons": bool(signed_persons)}


_PROJECT_COLS = ("id, name, api_token, default_group_type, private_properties, "
                 "event_retention_days, flags_rev, created_at, ingestion_creates_group_types, "
                 "client_properties, require_signed_groups, mixpanel_group_keys, "
                 "require_signed_persons")
# Settings that change how decide evaluates: evaluators reload as after a flag edit.
_EVALUATION_SETTINGS = {"private_properties", "default_group_type", "client_properties",
                        "require_signed_groups", "require_signed_persons"}
CLIENT_PROPERTIES = ("override", "fill", "ignore")
SIGNING_PREFIX = "fsg_"
_TOKEN_NAMES = {"api": "api_token", "secret": "secret_key"}


class ProjectsMixin:
    conn: Any  # provided by Store

    def create_project(self, name: str, api_token: str | None = None,
                       secret_key: str | None = None,
                       only_if_none: bool = False,
                       ingestion_creates_group_types: bool = False,
                       actor: str | None = None) -> dict[str, Any] | None:
        """A new project; the returned dict is the only place the secret key appears in clear.
        `only_if_none`: create it only if the database has no project yet (checked in the
        same transaction, so several starting workers create exactly one); else None.
        A new project's ingestion creates no group type but its default one (README).
        Audited ("project_created", the tokens by fingerprint) when an `actor` made it (the
        default project a new database starts with has none)."""
        api_token = api_token or new_token(API_PREFIX)
        secret_key = secret_key or new_token(SECRET_PREFIX)
        now = time.time()
        conn = self.conn()
        try:
            with transaction(conn):
                if only_if_none and conn.execute("SELECT 1 FROM projects LIMIT 1").fetchone():
                    return None
                cur = conn.execute(
                    "INSERT INTO projects (name, api_token, hash_salt, created_at, "
                    "ingestion_creates_group_types) VALUES (?, ?, ?, ?, ?)",
                    (name, api_token, secrets.token_hex(16), now,
                     int(ingestion_creates_group_types)))
                pid = cur.lastrowid
                for kind, tok in (("api", api_token), ("secret", secret_key)):
                    conn.execute(
                        "INSERT INTO tokens (project_id, kind, token_hash, prefix, created_at) "
                        "VALUES (?, ?, ?, ?, ?)", (pid, kind, token_hash(tok), tok[:8], now))
                if actor is not None:
                    self._audit_project(conn, pid, "project_created", None, {
                        "name": name, "api_token": fingerprint(api_token),
                        "secret_key": fingerprint(secret_key)}, actor)
        except IntegrityError:
            raise Conflict("that token is already in use by another project") from None
        project = self.get_project(pid)
        assert project is not None
        return {**project, "secret_key": secret_key}

    def get_project(self, project_id: int) -> dict[str, Any] | None:
        row = self.conn().execute(f"SELECT {_PROJECT_COLS} FROM projects WHERE id = ?",
                                  (project_id,)).fetchone()
        return _project_row(row)

    def list_projects(self) -> list[dict[str, Any]]:
        rows = self.conn().execute(f"SELECT {_PROJECT_COLS} FROM projects ORDER BY id").fetchall()
        return [_project_row(r) for r in rows]  # type: ignore[misc]

    def project_for_token(self, token: str, kind: str) -> dict[str, Any] | None:
        """The project whose live token of `kind` ('api' or 'secret') this is."""
        if not isinstance(token, str) or not token or len(token) > 200:
            return None
        digest = token_hash(token)
        row = self.conn().execute(
            "SELECT project_id, token_hash, expires_at FROM tokens "
            "WHERE token_hash = ? AND kind = ?",
            (digest, kind)).fetchone()
        if row is None or not hmac.compare_digest(row[1], digest):
            return None
        if row[2] is not None and row[2] <= time.time():
            return None
        return self.get_project(row[0])

    def _audit_project(self, conn: sqlite3.Connection, project_id: int, action: str,
                       before: dict | None, after: dict | None, actor: str | None) -> None:
        """The audit entry of a project change (settings, token rotation), in its
        transaction; `actor` as for flags (FlagsMixin._audit). Never holds a secret."""
        conn.execute(
            "INSERT INTO audit_log (project_id, flag_id, flag_key, action, version, before, "
            "after, created_at, actor) VALUES (?, NULL, NULL, ?, NULL, ?, ?, ?, ?)",
            (project_id, action, None if before is None else json.dumps(before),
             None if after is None else json.dumps(after), time.time(), actor))

    def rotate_token(self, project_id: int, kind: str, grace_seconds: float = 3600.0,
                     new_value: str | None = None, actor: str | None = None) -> str:
        """A new token of `kind`; the old ones keep working for `grace_seconds` (0: revoked now)."""
        if kind not in TOKEN_KINDS:
            raise ValueError(f"token kind must be one of {TOKEN_KINDS}, not {kind!r}")
        if self.get_project(project_id) is None:
            raise NotFound(f"project {project_id} does not exist")
        value = new_value or new_token(API_PREFIX if kind == "api" else SECRET_PREFIX)
        now = time.time()
        conn = self.conn()
        with transaction(conn):
            conn.execute(
                "UPDATE tokens SET expires_at = MIN(COALESCE(expires_at, ?), ?) "
                "WHERE project_id = ? AND kind = ?", (now + grace_seconds, now + grace_seconds,
                                                       project_id, kind))
            conn.execute(
                "INSERT INTO tokens (project_id, kind, token_hash, prefix, created_at) "
                "VALUES (?, ?, ?, ?, ?)", (project_id, kind, token_hash(value), value[:8], now))
            if kind == "api":
                conn.execute("UPDATE projects SET api_token = ? WHERE id = ?", (value, project_id))
            self._audit_project(conn, project_id, f"{_TOKEN_NAMES[kind]}_rotated", None,
                                {"fingerprint": fingerprint(value),
                                 "old_valid_for_seconds": grace_seconds}, actor)
        return value

    def update_project(self, project_id: int, actor: str | None = None, group_types: Any = (),
                       check: Any = None, **settings: Any) -> dict[str, Any]:
        """Change settings in one transaction (audited as "settings_updated" with the values
        before / after), creating `group_types` in it (a new default_group_type); a new
        privacy policy rewrites what is stored, in it too. `check(live_flags)` runs in it
        first (its exception rolls everything back)."""
        allowed = {"name", "default_group_type", "private_properties", "event_retention_days",
                   "ingestion_creates_group_types", "client_properties", "require_signed_groups",
                   "mixpanel_group_keys", "require_signed_persons"}
        sets, args = [], []
        for k, v in settings.items():
            if k not in allowed:
                raise ValueError(f"unknown project setting {k}")
            if k == "client_properties" and v not in CLIENT_PROPERTIES:
                raise ValueError(f"client_properties must be one of {CLIENT_PROPERTIES}")
            sets.append(f"{k} = ?")
            args.append(json.dumps(v) if k in ("private_properties", "mixpanel_group_keys") else (
                int(v) if isinstance(v, bool) else v))
        if _EVALUATION_SETTINGS & settings.keys():
            # These change how flags evaluate: evaluators reload as after a flag edit.
            sets.append("flags_rev = flags_rev + 1")
        if sets:
            conn = self.conn()
            with transaction(conn):
                self._check_live(conn, project_id, check)  # type: ignore[attr-defined]
                for name in group_types:
                    self.ensure_group_type(conn, project_id, name)  # type: ignore[attr-defined]
                old = _project_row(conn.execute(
                    f"SELECT {_PROJECT_COLS} FROM projects WHERE id = ?",
                    (project_id,)).fetchone()) or {}
                conn.execute(f"UPDATE projects SET {', '.join(sets)} WHERE id = ?",
                             (*args, project_id))
                if "private_properties" in settings:
                    self._apply_privacy(conn, project_id, settings["private_properties"])
                new = _project_row(conn.execute(
                    f"SELECT {_PROJECT_COLS} FROM projects WHERE id = ?",
                    (project_id,)).fetchone()) or {}
                changed = [k for k in settings if old.get(k) != new.get(k)]
                if changed:
                    self._audit_project(conn, project_id, "settings_updated",
                                        {k: old.get(k) for k in changed},
                                        {k: new.get(k) for k in changed}, actor)
        project = self.get_project(project_id)
        if project is None:
            raise NotFound(f"project {project_id} does not exist")
        return project

    def _apply_privacy(self, conn: sqlite3.Connection, project_id: int, raw_policy: Any) -> None:
        """Make what is already stored obey a new privacy policy: private keys dropped or
        replaced by their keyed hash in group, person and event properties, in the same
        transaction as the policy itself. (Hashing cannot be undone: removing a key from the
        policy leaves its stored values hashed.)"""
        from ..ingest import privacy

        policy = privacy.policy_of(raw_policy)
        if not policy:
            return
        salt = conn.execute("SELECT hash_salt FROM projects WHERE id = ?",
                            (project_id,)).fetchone()[0]
        now = time.time()
        # A cheap text prefilter: only rows whose JSON mentions one of the keys are parsed.
        # A key is looked for as written by `dumps` (UTF-8) and by json.dumps (\u escapes:
        # rows rewritten by earlier versions, values orjson refuses).
        needles = sorted({form for k in policy for form in (dumps(k), json.dumps(k))})
        like = " OR ".join("instr(properties, ?) > 0" for _ in needles)
        for table in ("groups", "persons", "events"):
            rows = conn.execute(f"SELECT id, properties FROM {table} WHERE project_id = ? "
                                f"AND ({like})", (project_id, *needles)).fetchall()
            updates = []
            for rid, props in rows:
                before = json.loads(props)
                after = privacy.scrub(before, policy, salt, skip_hashed=True)
                if after != before:
                    updates.append((dumps(after), rid))
            conn.executemany(f"UPDATE {table} SET properties = ? WHERE id = ?", updates)
            ids = [(rid,) for _, rid in updates]
            if table == "groups":
                conn.executemany(
                    "INSERT INTO changes (project_id, kind, group_type, key, created_at) "
                    "SELECT project_id, 'group', group_type, group_key, ? FROM groups "
                    "WHERE id = ?", [(now, *i) for i in ids])
            elif table == "persons":
                conn.executemany(
                    "INSERT INTO changes (project_id, kind, group_type, key, created_at) "
                    "SELECT project_id, 'person', NULL, distinct_id, ? FROM person_distinct_ids "
                    "WHERE person_id = ?", [(now, *i) for i in ids])

    def hash_salt(self, project_id: int) -> str:
        row = self.conn().execute("SELECT hash_salt FROM projects WHERE id = ?",
                                  (project_id,)).fetchone()
        return row[0] if row else ""

    def flags_rev(self, project_id: int) -> int:
        row = self.conn().execute("SELECT flags_rev FROM projects WHERE id = ?",
                                  (project_id,)).fetchone()
        return row[0] if row else -1

    # ------------------------------------------------------------ signing keys

    def rotate_signing_key(self, project_id: int, grace_seconds: float = 3600.0,
                           new_value: str | None = None,
                           actor: str | None = None) -> dict[str, Any]:
        """A new signing key (returned in clear: the only time it is shown); the project's
        other keys keep verifying for `grace_seconds` (0: at once), as token rotation does."""
        if self.get_project(project_id) is None:
            raise NotFound(f"project {project_id} does not exist")
        value = new_value or new_token(SIGNING_PREFIX)
        now = time.time()
        conn = self.conn()
        with transaction(conn):
            conn.execute(
                "UPDATE signing_keys SET expires_at = MIN(COALESCE(expires_at, ?), ?) "
                "WHERE project_id = ?", (now + grace_seconds, now + grace_seconds, project_id))
            conn.execute("INSERT INTO signing_keys (project_id, key, prefix, created_at) "
                         "VALUES (?, ?, ?, ?)", (project_id, value, value[:8], now))
            conn.execute("UPDATE projects SET flags_rev = flags_rev + 1 WHERE id = ?",
                         (project_id,))
            self._audit_project(conn, project_id, "signing_key_rotated", None,
                                {"fingerprint": fingerprint(value),
                                 "old_valid_for_seconds": grace_seconds}, actor)
        return {"signing_key": value, "prefix": value[:8], "created_at": now,
                "previous_keys_expire_at": now + grace_seconds}

    def signing_keys(self, project_id: int, with_secret: bool = False) -> list[dict[str, Any]]:
        """The project's keys still verifying (newest first): prefix, created_at, expires_at,
        and `key` itself only `with_secret` (for the evaluators)."""
        rows = self.conn().execute(
            "SELECT key, prefix, created_at, expires_at FROM signing_keys WHERE project_id = ? "
            "AND (expires_at IS NULL OR expires_at > ?) ORDER BY id DESC",
            (project_id, time.time())).fetchall()
        return [{**({"key": k} if with_secret else {}), "prefix": p, "created_at": c,
                 "expires_at": e} for k, p, c, e in rows]
