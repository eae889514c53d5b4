"""The `flagsvc` command: serve, migrate, project create/rotate, flags export/import, user,
backup."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import sys
import tempfile
import time
from collections.abc import Mapping
from typing import Any

from .config import load_config
from .errors import APIError
from .imports import FORMATS
from .store import DatabaseUnavailable, MigrationError, Store, StoreError, is_postgres

CLI_ACTOR = "cli"  # who the audit log names for a change made by this command
# what makes a command's database unusable as asked: one line, no traceback
_UNAVAILABLE: tuple[type[BaseException], ...] = (*DatabaseUnavailable, PermissionError)


class CommandError(Exception):
    """A command cannot run as asked; its message is the one line the operator sees."""


def _store(migrate_now: bool = True, must_exist: bool = False) -> Store:
    config = load_config()
    if must_exist and not is_postgres(config["DATABASE"]) and not os.path.exists(
            config["DATABASE"]):
        # a read command must not leave an empty database behind a typo in FLAGSVC_DATABASE
        raise CommandError(f"no database at {config['DATABASE']} (FLAGSVC_DATABASE); "
                           "`flagsvc serve` or `flagsvc migrate` creates one")
    return Store(config["DATABASE"], synchronous=config["SYNCHRONOUS"], migrate_now=migrate_now)


def _print_project(project: dict[str, Any], as_json: bool, out: Any = None) -> None:
    out = out or sys.stdout  # looked up now: tests and callers may have replaced it
    if as_json:
        keys = ("id", "name", "api_token", "secret_key")
        print(json.dumps({k: project[k] for k in keys if k in project}), file=out)
        return
    print(f"project {project['id']} ({project['name']})", file=out)
    print(f"  api_token:  {project['api_token']}   (public: apps use it for decide and ingestion)",
          file=out)
    if "secret_key" in project:
        print(f"  secret_key: {project['secret_key']}   (admin API; shown only now, keep it safe)",
              file=out)


def cmd_migrate(args: argparse.Namespace) -> int:
    applied = _store(migrate_now=False).migrate()
    print(f"applied: {', '.join(applied)}" if applied else "database is up to date")
    return 0


def _writes(store: Store | None = None) -> Any:
    """The write path's `service` for a command: every CLI write goes through the command
    of flagsvc.writes that the admin API uses (checks, audit with actor "cli"); running
    nodes see it as any other node's change."""
    from .writes import Uncached

    return Uncached(store or _store())


def cmd_project_create(args: argparse.Namespace) -> int:
    from .writes import create_project

    try:
        project = create_project(_writes(), args.name, api_token=args.api_token,
                                 secret_key=args.secret_key, actor=CLI_ACTOR)
    except APIError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    assert project is not None  # None only with only_if_none
    _print_project(project, args.json)
    return 0


def cmd_project_list(args: argparse.Namespace) -> int:
    for p in _store(must_exist=True).list_projects():
        print(f"{p['id']}\t{p['name']}\t{p['api_token']}")
    return 0


def cmd_project_rotate(args: argparse.Namespace) -> int:
    from .writes import rotate_token

    kind = "api" if args.what == "rotate-api-token" else "secret"
    try:
        value = rotate_token(_writes(), args.project, kind, args.grace, actor=CLI_ACTOR)
    except APIError as e:
        print(f"error: {e} (flagsvc project list)", file=sys.stderr)
        return 1
    name = "api_token" if kind == "api" else "secret_key"
    if args.json:
        print(json.dumps({name: value, "old_valid_for_seconds": args.grace}))
    else:
        print(f"new {name}: {value}\n(the old one keeps working for {args.grace:g} s)")
    return 0


def cmd_flags_export(args: argparse.Namespace) -> int:
    flags = _store(must_exist=True).list_flags(args.project)
    drop = ("id", "version", "created_at", "updated_at", "deleted")
    out = [{k: v for k, v in f.items() if k not in drop} for f in flags]
    text = json.dumps({"flags": out}, indent=2)
    if args.file in (None, "-"):
        print(text)
    else:
        with open(args.file, "w", encoding="utf-8") as fh:
            fh.write(text + "\n")
    return 0


def _import_options(args: argparse.Namespace) -> dict[str, Any]:
    """The converter's options from --environment, --group-type and --field."""
    if args.source == "unleash":
        fields = {}
        for spec in args.field or []:
            name, sep, where = spec.partition("=")
            if not sep or not name:
                raise ValueError(f"--field {spec!r}: NAME=person|group:TYPE|group_key:TYPE|"
                                 "distinct_id")
            fields[name] = where
        return {"environment": args.environment, "group_types": args.group_type or [],
                "fields": fields}
    if args.source == "posthog":
        if args.environment or args.field:
            raise ValueError("--environment and --field go with --from unleash")
        mapping = {}
        for spec in args.group_type or []:
            index, sep, name = spec.partition("=")
            if not sep or not index.isdigit() or not name:
                raise ValueError(f"--group-type {spec!r}: INDEX=NAME (PostHog's group type "
                                 "index, e.g. 0=organization)")
            mapping[index] = name
        return {"group_types": mapping or None}
    if args.environment or args.group_type or args.field:
        raise ValueError("--environment, --group-type and --field go with --from unleash or "
                         "--from posthog")
    return {}


def cmd_flags_import(args: argparse.Namespace) -> int:
    """Create or update flags from a flagsvc export, or convert them from Unleash or PostHog.
    Everything is checked first (the admin API's schema and checks, dependencies and cycles
    across the project's flags, the group types needed) and nothing is written unless every
    flag is valid; a deleted flag of the same key is restored."""
    from .imports import Unimportable, convert
    from .imports.apply import skip_unresolved
    from .writes import import_flags

    try:
        if args.file in (None, "-"):
            data = json.loads(sys.stdin.read())
        else:
            with open(args.file, encoding="utf-8") as fh:
                data = json.load(fh)
    except (OSError, ValueError) as e:
        print(f"error: cannot read flags: {e}", file=sys.stderr)
        return 1
    try:
        converted = convert(args.source, data, **_import_options(args))
    except (Unimportable, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    for key, messages in converted.warnings.items():
        for m in messages:
            print(f"warning: flag {key}: {m}", file=sys.stderr)
    for key, where in _field_summary(converted.fields).items():
        print(f"note: context field {key} is read from {where}", file=sys.stderr)
    store = _store()
    if store.get_project(args.project) is None:
        print(f"error: project {args.project} does not exist (flagsvc project list)",
              file=sys.stderr)
        return 1
    if args.skip_unimportable:
        skip_unresolved(store, args.project, converted)
    label = "skipped" if args.skip_unimportable else "error"
    for key, reason in converted.skipped.items():
        print(f"{label}: flag {key} cannot be imported: {reason}", file=sys.stderr)
    if converted.skipped and not args.skip_unimportable:
        print("nothing was imported (--skip-unimportable imports the others)", file=sys.stderr)
        return 1
    done = import_flags(_writes(store), args.project, converted.flags, dry_run=args.dry_run,
                        actor=CLI_ACTOR)
    if done.conflict:
        print(f"error: {done.conflict}", file=sys.stderr)
        return 1
    if done.problems:
        for key, errs in done.problems.items():
            print(f"error: flag {key}: {'; '.join(errs)}", file=sys.stderr)
        print("nothing was imported", file=sys.stderr)
        return 1
    summary = (f"{len(converted.flags)} flags ({len(done.created)} created, "
               f"{len(done.updated)} updated, {len(done.unchanged)} unchanged)")
    if done.restored:
        summary += f"; restored: {', '.join(done.restored)}"
    if done.group_types:
        summary += f"; new group types: {', '.join(done.group_types)}"
    if args.dry_run:
        print(json.dumps({"flags": converted.flags}, indent=2))
        print(f"dry run: would import {summary}", file=sys.stderr)
    else:
        print(f"imported {summary}")
    return 0


def _field_summary(fields: dict[str, dict[str, str]]) -> dict[str, str]:
    """Unleash context field -> where the imported flags read it, in words."""
    words = {"distinct_id": "the distinct id", "person": "a person property"}
    out: dict[str, set[str]] = {}
    for placed in fields.values():
        for name, where in placed.items():
            kind, _, group_type = where.partition(":")
            text = words.get(kind) or (f"the key of group type {group_type}"
                                       if kind == "group_key"
                                       else f"a property of group type {group_type}")
            out.setdefault(name, set()).add(text)
    return {k: " / ".join(sorted(v)) for k, v in sorted(out.items())}


def _with_store(fn: Any) -> Any:
    """A command function running `fn(store, args)`; a ValueError is its one-line error."""
    def command(args: argparse.Namespace) -> int:
        try:
            return fn(_store(), args)
        except ValueError as e:
            raise CommandError(str(e)) from None
    return command


def cmd_backup(args: argparse.Namespace) -> int:
    store = _store(must_exist=True)
    try:
        store.backup(args.path)
    except StoreError as e:  # PostgreSQL: pg_dump's job
        raise CommandError(str(e)) from None
    check = Store(args.path, migrate_now=False).integrity_check()
    print(f"backup written to {args.path} (integrity: {check})")
    return 0 if check == "ok" else 1


def cmd_migrate_data(args: argparse.Namespace) -> int:
    """Copy a whole installation into an empty database of either backend, verified."""
    from .store.copy import NOT_COPIED, copy_database

    if not is_postgres(args.source) and not os.path.exists(args.source):
        raise CommandError(f"no database at {args.source}")
    source = Store(args.source, migrate_now=False)
    target = Store(args.target)
    try:
        counts = copy_database(source, target)
    except StoreError as e:
        raise CommandError(str(e)) from None
    finally:
        source.close()
        target.close()
    bad = [t for t, a, b in counts if a != b]
    for table, a, b in counts:
        print(f"{table:22} {a:>10} -> {b:>10}{'' if a == b else '  MISMATCH'}")
    for table, why in NOT_COPIED.items():
        print(f"{table:22} not copied: {why}")
    print("copied and verified: every table has as many rows in the target as in the source"
          if not bad else f"counts differ for {', '.join(bad)}", file=sys.stderr)
    return 1 if bad else 0


def _check_bind_free(bind: str) -> None:
    host, _, port = bind.rpartition(":")
    if not port.isdigit():
        return  # a unix socket or gunicorn's own syntax: gunicorn checks it
    # As gunicorn binds: SO_REUSEADDR (connections in TIME_WAIT of a previous run do not
    # count) and a few tries (a killed predecessor's processes may hold it a moment longer).
    for attempt in range(5):
        try:
            with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                probe.bind((host.strip("[]") or "0.0.0.0", int(port)))
            return
        except OSError as e:
            if attempt == 4:
                raise CommandError(f"cannot listen on {bind}: {e.strerror or e}") from None
            time.sleep(0.5)


def _warn_unused_tokens(store: Store, config: Mapping[str, Any]) -> None:
    """FLAGSVC_API_TOKEN / FLAGSVC_SECRET_KEY choose the tokens of a *new* database only: on
    an existing one that has no such token, say so instead of letting every call get 401."""
    for setting, kind in (("API_TOKEN", "api"), ("SECRET_KEY", "secret")):
        token = config.get(setting)
        if token and store.project_for_token(token, kind) is None:
            print(f"warning: FLAGSVC_{setting} is set, but no project of the existing database "
                  f"{config['DATABASE']} has that token: the variable only chooses the tokens "
                  "of a new database. Use the tokens printed when this database was created, "
                  "or point FLAGSVC_DATABASE at a new file.", file=sys.stderr)


def secret_key_path(database: str, configured: str | None = None) -> str:
    """Where a new database's generated secret key is written: `configured`
    (FLAGSVC_SECRET_KEY_FILE) if set; else beside the database; for a PostgreSQL URL,
    `flagsvc-<database name>.secret_key` in the working directory (the URL itself may hold a
    password: it never becomes a file name)."""
    if configured:
        return os.path.abspath(configured)
    if is_postgres(database):
        from urllib.parse import urlsplit

        name = urlsplit(database).path.strip("/") or "postgres"
        return os.path.abspath(f"flagsvc-{os.path.basename(name)}.secret_key")
    return os.path.abspath(database) + ".secret_key"


def announce_default_project(project: dict[str, Any], config: Mapping[str, Any],
                             out: Any = None, show_secret_key: bool = False) -> None:
    """Say that the default project was created, without putting its secret key in the
    service's log: a generated key is written to `<database>.secret_key` (mode 0600, this
    user only) and only where it is is printed. A terminal is no proof that a person reads
    it (`docker run -t` gives the service one, and `docker logs` keeps it): the key itself
    is printed only when the operator asks (`flagsvc serve --print-secret-key`). A key
    taken from FLAGSVC_SECRET_KEY is never repeated."""
    out = out or sys.stderr  # looked up now: tests and callers may have replaced it
    print("created the default project on this new database:", file=out)
    _print_project({k: v for k, v in project.items() if k != "secret_key"}, False, out=out)
    if config.get("SECRET_KEY"):
        print("  secret_key: the one in FLAGSVC_SECRET_KEY", file=out)
        return
    path = secret_key_path(config["DATABASE"], config.get("SECRET_KEY_FILE"))
    try:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)  # a deleted database's key: no longer valid
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            os.fchmod(fh.fileno(), 0o600)
            fh.write(project["secret_key"] + "\n")
    except OSError as e:
        print(f"  secret_key: could not be written to {path} ({e.strerror or e}); set "
              "FLAGSVC_SECRET_KEY_FILE to a writable path (or FLAGSVC_SECRET_KEY), and "
              f"`flagsvc project rotate-secret-key {project['id']}` makes a new one",
              file=out)
        return
    print(f"  secret_key: in {path} (admin API; readable by this user only, never "
          "logged): store it somewhere safe, then delete the file", file=out)
    if show_secret_key:  # asked for on the command line
        print(f"  secret_key: {project['secret_key']}   (printed because of "
              "--print-secret-key)", file=out)


def cmd_serve(args: argparse.Namespace) -> int:
    from .app import ensure_default_project

    config = load_config()
    _check_bind_free(args.bind)  # before a new database's one-time secret key is made
    store = Store(config["DATABASE"], synchronous=config["SYNCHRONOUS"])
    project = ensure_default_project(store, config)
    if project is not None:
        announce_default_project(project, config, show_secret_key=args.print_secret_key)
    else:
        _warn_unused_tokens(store, config)
    if not store.count_users():
        from .cli_users import FIRST_ADMIN_HINT

        host, _, port = args.bind.rpartition(":")
        print(FIRST_ADMIN_HINT.format(url=f"http://{host or '127.0.0.1'}:{port}"),
              file=sys.stderr)
    store.close()
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="flagsvc-metrics-")
    # A preview scan must answer before gunicorn kills its worker (--timeout): unless set,
    # its budget is at most half the timeout.
    if not os.environ.get("FLAGSVC_PREVIEW_SECONDS"):
        os.environ["FLAGSVC_PREVIEW_SECONDS"] = str(min(config["PREVIEW_SECONDS"],
                                                        args.timeout / 2))
    if args.forwarded_allow_ips is not None:  # the workers' app believes the same proxies
        os.environ["FLAGSVC_FORWARDED_ALLOW_IPS"] = args.forwarded_allow_ips
    from .server import run

    run(bind=args.bind, workers=args.workers, threads=args.threads, timeout=args.timeout,
        access_log=not args.no_access_log,
        forwarded_allow_ips=args.forwarded_allow_ips or config["FORWARDED_ALLOW_IPS"],
        worker_connections=args.worker_connections)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="flagsvc", description=__doc__)
    parser.add_argument("--version", action="version", version=f"flagsvc {_version()}")
    sub = parser.add_subparsers(dest="command")

    p = sub.add_parser("serve", help="run the HTTP service (gunicorn)")
    p.add_argument("--bind", default=os.environ.get("FLAGSVC_BIND", "127.0.0.1:8000"),
                   help="HOST:PORT to listen on (default 127.0.0.1:8000, or FLAGSVC_BIND)")
    p.add_argument("--workers", type=int, default=None,
                   help="worker processes (default: 2 x CPUs + 1, at most 8)")
    p.add_argument("--threads", type=int, default=1, help="threads per worker (default 1)")
    p.add_argument("--timeout", type=int, default=30,
                   help="seconds before a busy worker is restarted (default 30)")
    p.add_argument("--no-access-log", action="store_true", help="do not log every request")
    p.add_argument("--forwarded-allow-ips", default=None, metavar="ADDRESSES",
                   help="proxies whose X-Forwarded-Proto/-For are trusted (comma-separated "
                   "addresses or networks, or *; default 127.0.0.1,::1, or "
                   "FLAGSVC_FORWARDED_ALLOW_IPS)")
    p.add_argument("--worker-connections", type=int, default=4000, metavar="N",
                   help="most connections a worker holds (default 4000)")
    p.add_argument("--print-secret-key", action="store_true",
                   help="on a new database, also print the generated secret key (by "
                   "default it is only written to <database>.secret_key, mode 0600)")
    p.set_defaults(func=cmd_serve)

    sub.add_parser("migrate", help="apply pending migrations").set_defaults(func=cmd_migrate)

    proj = sub.add_parser("project", help="manage projects").add_subparsers(dest="what",
                                                                            required=True)
    p = proj.add_parser("create", help="create a project and print its tokens")
    p.add_argument("name")
    p.add_argument("--json", action="store_true")
    p.add_argument("--api-token", default=None)
    p.add_argument("--secret-key", default=None)
    p.set_defaults(func=cmd_project_create)
    proj.add_parser("list", help="list projects").set_defaults(func=cmd_project_list)
    for what in ("rotate-api-token", "rotate-secret-key"):
        p = proj.add_parser(what, help=f"{what.replace('-', ' ')} (old one valid for --grace s)")
        p.add_argument("project", type=int)
        p.add_argument("--grace", type=float, default=3600.0)
        p.add_argument("--json", action="store_true")
        p.set_defaults(func=cmd_project_rotate)

    flags = sub.add_parser("flags", help="export/import flags").add_subparsers(dest="what",
                                                                              required=True)
    p = flags.add_parser("export", help="write a project's flags as JSON")
    p.add_argument("--project", type=int, default=1)
    p.add_argument("file", nargs="?")
    p.set_defaults(func=cmd_flags_export)
    p = flags.add_parser("import", help="create or update flags from JSON: a flagsvc export, "
                                        "or Unleash / PostHog flags to convert")
    p.add_argument("--project", type=int, default=1)
    p.add_argument("--from", dest="source", choices=FORMATS, default="flagsvc",
                   help="the file's format (default flagsvc)")
    p.add_argument("--environment", default=None,
                   help="unleash: the environment to take; constraints on `environment` are "
                        "decided for it at import")
    p.add_argument("--group-type", action="append", metavar="NAME | INDEX=NAME",
                   help="unleash: a context field naming a group (stickiness fields always "
                        "do); posthog: a group type index and its name, if the file has no "
                        "group_type_mapping (repeatable)")
    p.add_argument("--field", action="append", metavar="NAME=WHERE",
                   help="unleash: where a context field is read: person, group:TYPE, "
                        "group_key:TYPE or distinct_id (repeatable)")
    p.add_argument("--skip-unimportable", action="store_true",
                   help="import the flags that convert, list the others")
    p.add_argument("--dry-run", action="store_true",
                   help="check and print the converted flags; write nothing")
    p.add_argument("file", nargs="?")
    p.set_defaults(func=cmd_flags_import)

    from . import cli_users

    cli_users.add_parser(sub, _with_store)

    p = sub.add_parser("migrate-data", help="copy a whole installation into an empty "
                       "database (SQLite <-> PostgreSQL), verified by counts per table")
    p.add_argument("source", help="a SQLite path or a postgresql:// URL (read, not changed)")
    p.add_argument("target", help="an empty database (migrated first): path or URL")
    p.set_defaults(func=cmd_migrate_data)
    p = sub.add_parser("backup", help="write a consistent online copy of the database "
                       "(SQLite; on PostgreSQL it names the pg_dump command)")
    p.add_argument("path")
    p.set_defaults(func=cmd_backup)
    return parser


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("flagsvc")
    except PackageNotFoundError:
        return "unknown"


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:  # bare `flagsvc`: what it can do, not an error
        parser.print_help()
        return 0
    try:
        return args.func(args)
    except (MigrationError, CommandError) as e:  # say what, no traceback
        print(f"error: {e}", file=sys.stderr)
        return 2
    except _UNAVAILABLE as e:  # an unwritable file, no server
        print(f"error: database {_shown(load_config()['DATABASE'])}: {e}", file=sys.stderr)
        return 2


def _shown(database: str) -> str:
    """The database for a message: a PostgreSQL URL without its password."""
    if not is_postgres(database):
        return database
    from urllib.parse import urlsplit

    parts = urlsplit(database)
    host = parts.hostname or ""
    user = f"{parts.username}@" if parts.username else ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{user}{host}{port}{parts.path}"


if __name__ == "__main__":
    sys.exit(main())
