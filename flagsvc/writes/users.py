"""The write path of console users: one command per kind of change, shared by the web
console's user management and `flagsvc user ...` (SPEC §10). Each checks what it is given,
writes in one store transaction with its audit entry (`actor`: who made the change; the
entry goes to every project the user may open) and, for a password reset or a disabled
account, ends the user's sessions in that transaction. Users are not cached by any
process (sessions are read per request), so there is nothing to invalidate: the change is
seen by every node at once."""

from __future__ import annotations

from typing import Any

from .. import accounts
from ..errors import NotFoundError, ValidationFailed
from ..store import ROLES, NotFound


def _role(role: str) -> str:
    if role not in ROLES:
        raise ValidationFailed(f"role must be one of {', '.join(ROLES)}",
                               errors={"role": [f"one of {', '.join(ROLES)}"]})
    return role


def create_user(store: Any, email: str, role: str, password: str | None = None,
                projects: list[int] | None = None, actor: str | None = None
                ) -> tuple[dict[str, Any], str | None]:
    """A new user and, without `password`, the one-time password to hand over (it must be
    changed at the first sign-in). ValueError for an email that is not one; Conflict for one
    taken; NotFound for a project that does not exist."""
    return accounts.create_user(store, email, _role(role), password, projects=projects,
                                actor=actor)


def reset_password(store: Any, user_id: int, password: str | None = None,
                   keep_session: int | None = None, actor: str | None = None) -> str | None:
    """A new password (a one-time one, returned, when None): clears a lockout and ends the
    user's sessions but `keep_session`."""
    return accounts.reset_password(store, user_id, password, keep_session=keep_session,
                                   actor=actor)


def change_user(store: Any, user_id: int, role: str | None = None,
                disabled: bool | None = None, actor: str | None = None) -> dict[str, Any]:
    """A new role and/or disabled state (disabling ends the user's sessions)."""
    try:
        return store.update_user(user_id, role=None if role is None else _role(role),
                                 disabled=disabled, actor=actor)
    except NotFound as e:
        raise NotFoundError(str(e)) from None


def set_user_projects(store: Any, user_id: int, projects: list[int] | None,
                      actor: str | None = None) -> None:
    """The projects a user may open (None: every project, also later ones). NotFound for
    a project that does not exist."""
    store.set_user_projects(user_id, None if projects is None else sorted(set(projects)),
                            actor=actor)
