"""Failed console sign-ins, counted in the database (migration 0010): per (email, client
address), per address and per email, shared by every worker and node and kept across
restarts. Only the SQL and the bookkeeping live here; what the counts allow is
`flagsvc.accounts.SignInLimits.decide`, a pure function of the three rows.

Portable SQL: `INSERT ... ON CONFLICT DO UPDATE` (SQLite >= 3.24, PostgreSQL) creates or
touches the three rows first, so on PostgreSQL they are row-locked until the commit and on
SQLite the transaction holds the write lock: concurrent attempts see each other's counts.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Protocol

from .db import transaction

ANY = ""  # the email or address of the per-address / per-email rows


@dataclass
class Attempts:
    """One row of sign_in_attempts."""

    failures: int = 0
    since: float = 0.0
    blocked_until: float | None = None
    succeeded_at: float | None = None


class Policy(Protocol):
    def decide(self, address: Attempts, pair: Attempts, email: Attempts, now: float
               ) -> tuple[str | None, float]: ...

    def expires_at(self, row: Attempts, now: float) -> float: ...


_COLS = "failures, since, blocked_until, succeeded_at"


class SignInMixin:
    conn: Any

    def _attempts(self, conn: Any, email: str, address: str, now: float) -> Attempts:
        conn.execute(
            "INSERT INTO sign_in_attempts (email, address, since, expires_at) "
            "VALUES (?, ?, ?, ?) ON CONFLICT (email, address) DO UPDATE SET "
            "expires_at = sign_in_attempts.expires_at",  # a no-op write: the row is locked
            (email, address, now, now + 86400.0))
        row = conn.execute(f"SELECT {_COLS} FROM sign_in_attempts WHERE email = ? AND "
                           "address = ?", (email, address)).fetchone()
        return Attempts(*row)

    def _save_attempts(self, conn: Any, email: str, address: str, row: Attempts,
                       expires_at: float) -> None:
        conn.execute("UPDATE sign_in_attempts SET failures = ?, since = ?, blocked_until = ?, "
                     "succeeded_at = ?, expires_at = ? WHERE email = ? AND address = ?",
                     (row.failures, row.since, row.blocked_until, row.succeeded_at,
                      expires_at, email, address))

    def reserve_sign_in(self, email: str, address: str, policy: Policy, now: float
                        ) -> tuple[str | None, float]:
        """Before a password is checked: (None, 0) when it may be, counted as a failure of
        the email from the address until `sign_in_succeeded` says otherwise (so concurrent
        guesses cannot all pass the limit); else (why, seconds to wait) — "address",
        "pair" or "email" — and nothing is counted. Expired rows are deleted on the way."""
        conn = self.conn()
        with transaction(conn):
            conn.execute("DELETE FROM sign_in_attempts WHERE expires_at < ?", (now,))
            by_address = self._attempts(conn, ANY, address, now)
            why, wait = policy.decide(replace(by_address), Attempts(), Attempts(), now)
            if why == "address":  # before any row of this email is made: a blocked
                return why, wait  # address spraying new emails adds no rows
            pair = self._attempts(conn, email, address, now)
            by_email = self._attempts(conn, email, ANY, now)
            why, wait = policy.decide(by_address, pair, by_email, now)
            if why is None:
                for key, row in (((ANY, address), by_address), ((email, address), pair),
                                 ((email, ANY), by_email)):
                    self._save_attempts(conn, *key, row, policy.expires_at(row, now))
            return why, wait

    def sign_in_succeeded(self, email: str, address: str, policy: Policy, now: float) -> None:
        """The reserved attempt was right: the client's own count starts again and its
        address is one this email signed in from; the address's and the email's counts
        take back the one reserved (earlier failures still count there)."""
        conn = self.conn()
        with transaction(conn):
            for key in ((ANY, address), (email, address), (email, ANY)):
                row = self._attempts(conn, *key, now)
                if key == (email, address):
                    row.failures, row.blocked_until, row.succeeded_at = 0, None, now
                else:
                    row.failures = max(0, row.failures - 1)
                self._save_attempts(conn, *key, row, policy.expires_at(row, now))

    def sign_in_state(self, email: str, now: float) -> dict[str, Any]:
        """For the users page: the email's failures from every address (and since when),
        and at how many addresses a client is locked out of it now."""
        rows = self.conn().execute(
            f"SELECT address, {_COLS} FROM sign_in_attempts WHERE email = ? AND "
            "expires_at >= ?", (email.strip().lower(), now)).fetchall()
        locked = sum(1 for r in rows if r[0] != ANY and r[3] is not None and r[3] > now)
        overall = next((Attempts(*r[1:]) for r in rows if r[0] == ANY), Attempts())
        return {"failures": overall.failures, "since": overall.since,
                "locked_addresses": locked}
