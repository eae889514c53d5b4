"""The `flagsvc` command: serve, migrate, project create/rotate, flags export/import, backup."""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from typing import Any

from .config import load_config
from .store import Conflict, MigrationError, Store


def _store(migrate_now: bool = True) -> Store:
    config = load_config()
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


def cmd_project_create(args: argparse.Namespace) -> int:
    try:
        project = _store().create_project(args.name, api_token=args.api_token,
                                          secret_key=args.secret_key)
    except Conflict as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    assert project is not None  # None only with only_if_none
    _print_project(project, args.json)
    return 0


def cmd_project_list(args: argparse.Namespace) -> int:
    for p in _store().list_projects():
        print(f"{p['id']}\t{p['name']}\t{p['api_token']}")
    return 0


def cmd_project_rotate(args: argparse.Namespace) -> int:
    kind = "api" if args.what == "rotate-api-token" else "secret"
    value = _store().rotate_token(args.project, kind, grace_seconds=args.grace)
    name = "api_token" if kind == "api" else "secret_key"
    if args.json:
        print(json.dumps({name: value, "old_valid_for_seconds": args.grace}))
    else:
        print(f"new {name}: {value}\n(the old one keeps working for {args.grace:g} s)")
    return 0


def cmd_flags_export(args: argparse.Namespace) -> int:
    flags = _store().list_flags(args.project)
    drop = ("id", "version", "created_at", "updated_at", "deleted")
    out = [{k: v for k, v in f.items() if k not in drop} for f in flags]
    text = json.dumps({"flags": out}, indent=2)
    if args.file in (None, "-"):
        print(text)
    else:
        with open(args.file, "w", encoding="utf-8") as fh:
            fh.write(text + "\n")
    return 0


def cmd_flags_import(args: argparse.Namespace) -> int:
    """Create or update flags from an export. Everything is checked first (the admin API's
    schema, the engine, dependencies and cycles across the project's flags) and nothing is
    written unless every flag is valid; a deleted flag of the same key is restored."""
    from marshmallow import ValidationError

    from .engine import compile_flags, validate_flag
    from .schemas import FlagInputSchema

    try:
        if args.file in (None, "-"):
            data = json.loads(sys.stdin.read())
        else:
            with open(args.file, encoding="utf-8") as fh:
                data = json.load(fh)
    except (OSError, ValueError) as e:
        print(f"error: cannot read flags: {e}", file=sys.stderr)
        return 1
    raw = data.get("flags") if isinstance(data, dict) else data
    if not isinstance(raw, list):
        print('error: expected {"flags": [...]} or a list of flags', file=sys.stderr)
        return 1
    store = _store()
    if store.get_project(args.project) is None:
        print(f"error: project {args.project} does not exist (flagsvc project list)",
              file=sys.stderr)
        return 1
    schema, flags, problems = FlagInputSchema(), [], {}
    for i, f in enumerate(raw):
        name = f.get("key", f"#{i}") if isinstance(f, dict) else f"#{i}"
        try:
            flag = schema.load(f)
        except ValidationError as e:
            problems[name] = [json.dumps(e.messages)]
            continue
        flag.pop("version", None)
        problems[name] = validate_flag(flag)
        flags.append(flag)
    keys = [f["key"] for f in flags]
    if len(set(keys)) != len(keys):
        problems["(file)"] = ["the same key appears more than once"]
    if not any(problems.values()):
        existing = {f["key"]: f for f in store.list_flags(args.project, include_deleted=True)}
        merged = {**{k: f for k, f in existing.items() if not f["deleted"]},
                  **{f["key"]: f for f in flags}}
        for key, compiled in compile_flags(merged.values()).items():
            if key in keys and compiled.error:
                problems[key] = [compiled.error]
    problems = {k: v for k, v in problems.items() if v}
    if problems:
        for key, errs in problems.items():
            print(f"error: flag {key}: {'; '.join(errs)}", file=sys.stderr)
        print("nothing was imported", file=sys.stderr)
        return 1
    created = updated = 0
    for f in flags:
        current = existing.get(f["key"])
        if current is None:
            store.create_flag(args.project, f)
            created += 1
            continue
        if current["deleted"]:
            store.set_flag_deleted(args.project, current["id"], False)
        store.update_flag(args.project, current["id"], f, expected_version=None)
        updated += 1
    print(f"imported {len(flags)} flags ({created} created, {updated} updated)")
    return 0


def cmd_backup(args: argparse.Namespace) -> int:
    store = _store()
    store.backup(args.path)
    check = Store(args.path, migrate_now=False).integrity_check()
    print(f"backup written to {args.path} (integrity: {check})")
    return 0 if check == "ok" else 1


def cmd_serve(args: argparse.Namespace) -> int:
    from .app import ensure_default_project

    config = load_config()
    store = Store(config["DATABASE"], synchronous=config["SYNCHRONOUS"])
    project = ensure_default_project(store, config)
    if project is not None:
        print("created the default project on this new database:", file=sys.stderr)
        if config.get("SECRET_KEY"):  # the operator chose it: never copy it into the logs
            project = {k: v for k, v in project.items() if k != "secret_key"}
        _print_project(project, False, out=sys.stderr)
        if config.get("SECRET_KEY"):
            print("  secret_key: the one in FLAGSVC_SECRET_KEY", file=sys.stderr)
    store.close()
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="flagsvc-metrics-")
    # A preview scan must answer before gunicorn kills its worker (--timeout): unless set,
    # its budget is at most half the timeout.
    if not os.environ.get("FLAGSVC_PREVIEW_SECONDS"):
        os.environ["FLAGSVC_PREVIEW_SECONDS"] = str(min(config["PREVIEW_SECONDS"],
                                                        args.timeout / 2))
    from .server import run

    run(bind=args.bind, workers=args.workers, threads=args.threads, timeout=args.timeout,
        access_log=not args.no_access_log, database=config["DATABASE"])
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="flagsvc", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("serve", help="run the HTTP service (gunicorn)")
    p.add_argument("--bind", default=os.environ.get("FLAGSVC_BIND", "127.0.0.1:8000"))
    p.add_argument("--workers", type=int, default=None, help="default: 2 x CPUs + 1 (max 8)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--timeout", type=int, default=30)
    p.add_argument("--no-access-log", action="store_true")
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
    p = flags.add_parser("import", help="create or update flags from JSON")
    p.add_argument("--project", type=int, default=1)
    p.add_argument("file", nargs="?")
    p.set_defaults(func=cmd_flags_import)

    p = sub.add_parser("backup", help="write a consistent online copy of the database")
    p.add_argument("path")
    p.set_defaults(func=cmd_backup)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except MigrationError as e:  # the database needs a hand first: say what, no traceback
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
