"""`flagsvc user ...`: the people who sign in to the web console."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from . import accounts
from .store import ROLES, Conflict, NotFound, Store
from .writes import users as writes

ACTOR = "cli"  # as cli.CLI_ACTOR (which imports this module)

FIRST_ADMIN_HINT = ("no console user yet: create the first admin with\n"
                    "  flagsvc user create you@example.com --role admin\n"
                    "(it prints a one-time password; --password-stdin reads one instead), "
                    "then sign in at {url}/ui/")


def _password(args: argparse.Namespace) -> str | None:
    if not args.password_stdin:
        return None
    password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        raise ValueError("--password-stdin: no password on standard input")
    return password


def _user(store: Store, email: str) -> dict[str, Any]:
    user = store.user_by_email(email)
    if user is None:
        raise ValueError(f"no user {email!r} (flagsvc user list)")
    return user


def cmd_user_create(store: Store, args: argparse.Namespace) -> int:
    try:
        user, temporary = writes.create_user(store, args.email, args.role, _password(args),
                                             projects=args.project or None, actor=ACTOR)
    except Conflict as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except NotFound:
        print(f"error: no such project among {args.project} (flagsvc project list)",
              file=sys.stderr)
        return 1
    print(f"created {user['role']} {user['email']}")
    if temporary:
        print(f"one-time password: {temporary}\n(shown only now; it must be changed at the "
              "first sign-in)")
    return 0


def cmd_user_list(store: Store, args: argparse.Namespace) -> int:
    for u in store.list_users():
        projects = "all" if u["all_projects"] else ",".join(
            map(str, store.user_project_ids(u))) or "none"
        state = accounts.sign_in_state(store, u)
        print(f"{u['email']}\t{u['role']}\tprojects: {projects}\t{state}")
    return 0


def cmd_user_reset(store: Store, args: argparse.Namespace) -> int:
    user = _user(store, args.email)
    temporary = writes.reset_password(store, user["id"], _password(args), actor=ACTOR)
    if args.role:
        writes.change_user(store, user["id"], role=args.role, actor=ACTOR)
    print(f"password of {user['email']} reset; their sessions are ended, their failed "
          "sign-ins forgotten")
    if temporary:
        print(f"one-time password: {temporary}\n(shown only now; it must be changed at the "
              "next sign-in)")
    return 0


def cmd_user_projects(store: Store, args: argparse.Namespace) -> int:
    user = _user(store, args.email)
    try:
        writes.set_user_projects(store, user["id"], None if args.all else args.project,
                                 actor=ACTOR)
    except NotFound:
        print(f"error: no such project among {args.project} (flagsvc project list)",
              file=sys.stderr)
        return 1
    print(f"{user['email']} may open: {'every project' if args.all else args.project}")
    return 0


def cmd_user_disable(store: Store, args: argparse.Namespace) -> int:
    user = _user(store, args.email)
    writes.change_user(store, user["id"], disabled=args.what == "disable", actor=ACTOR)
    print(f"{user['email']} {args.what}d")
    return 0


def add_parser(sub: Any, run: Callable[[Callable[[Store, argparse.Namespace], int]],
                                       Callable[[argparse.Namespace], int]]) -> None:
    """The `user` subcommands; `run(fn)` wraps fn(store, args) as a command function."""
    users = sub.add_parser("user", help="manage web console users").add_subparsers(
        dest="what", required=True)
    p = users.add_parser("create", help="create a console user (prints a one-time password "
                                        "unless --password-stdin)")
    p.add_argument("email")
    p.add_argument("--role", choices=ROLES, required=True,
                   help="viewer: reads; editor: also changes flags; admin: also settings, "
                        "tokens and users")
    p.add_argument("--password-stdin", action="store_true",
                   help="read the password from the first line of standard input")
    p.add_argument("--project", type=int, action="append",
                   help="a project id the user may open (repeatable; default: every project)")
    p.set_defaults(func=run(cmd_user_create))
    users.add_parser("list", help="list console users").set_defaults(func=run(cmd_user_list))
    p = users.add_parser("reset", help="reset a user's password (one-time unless "
                                       "--password-stdin), clear a lockout, end sessions")
    p.add_argument("email")
    p.add_argument("--password-stdin", action="store_true")
    p.add_argument("--role", choices=ROLES, default=None, help="also change the role")
    p.set_defaults(func=run(cmd_user_reset))
    p = users.add_parser("projects", help="set the projects a user may open")
    p.add_argument("email")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--project", type=int, action="append",
                       help="a project id the user may open (repeatable)")
    which.add_argument("--all", action="store_true",
                       help="every project, also later ones")
    p.set_defaults(func=run(cmd_user_projects))
    for what in ("disable", "enable"):
        p = users.add_parser(what, help=f"{what} a user (disabling ends their sessions)")
        p.add_argument("email")
        p.set_defaults(func=run(cmd_user_disable))
