"""The `flagsvc` command: migrate, project create/list/rotate, flags export/import, backup."""

from __future__ import annotations

import io
import json
import os
import signal
import time
from pathlib import Path

import pytest

from flagsvc.store import Store


def test_migrate_says_what_it_applied(cli, db_path):
    from flagsvc.store import db

    code, out, _ = cli("migrate")
    names = [n for n, _ in db.migration_names()]
    assert code == 0 and out.strip() == f"applied: {', '.join(names)}"
    assert cli("migrate")[1].strip() == "database is up to date"


def test_migrate_and_project_create_json(cli, db_path):
    assert cli("migrate")[0] == 0
    code, out, _ = cli("project", "create", "acme", "--json")
    created = json.loads(out)
    assert code == 0 and set(created) == {"id", "name", "api_token", "secret_key"}
    store = Store(db_path)
    assert store.project_for_token(created["secret_key"], "secret")["name"] == "acme"
    code, out, _ = cli("project", "list")
    assert "acme" in out and created["secret_key"] not in out


def test_rotate_keeps_the_old_key_for_the_grace_period(cli, db_path):
    created = json.loads(cli("project", "create", "acme", "--json")[1])
    code, out, _ = cli("project", "rotate-secret-key", str(created["id"]), "--grace", "60",
                       "--json")
    new = json.loads(out)["secret_key"]
    store = Store(db_path)
    assert store.project_for_token(new, "secret") and store.project_for_token(
        created["secret_key"], "secret")
    cli("project", "rotate-secret-key", str(created["id"]), "--grace", "0")
    assert store.project_for_token(new, "secret") is None


def test_export_then_import_round_trips(cli, db_path, tmp_path):
    pid = json.loads(cli("project", "create", "a", "--json")[1])["id"]
    store = Store(db_path)
    store.create_flag(pid, {"key": "f1", "bucket_by": "organization",
                            "conditions": [{"rollout_percentage": 30}]})
    path = tmp_path / "flags.json"
    assert cli("flags", "export", "--project", str(pid), str(path))[0] == 0
    other = json.loads(cli("project", "create", "b", "--json")[1])["id"]
    code, out, _ = cli("flags", "import", "--project", str(other), str(path))
    assert code == 0 and "1 created" in out
    imported = store.get_flag(other, "f1")
    assert [c["rollout_percentage"] for c in imported["conditions"]] == [30]
    assert imported["bucket_by"] == "organization"
    # Importing again restores a deleted flag of that key, and updates changed rules.
    store.set_flag_deleted(other, "f1", True)
    code, out, _ = cli("flags", "import", "--project", str(other), str(path))
    assert code == 0 and "1 unchanged); restored: f1" in out
    assert not store.get_flag(other, "f1")["deleted"]
    text = path.read_text()
    path.write_text(text.replace('"rollout_percentage": 30', '"rollout_percentage": 60'))
    code, out, _ = cli("flags", "import", "--project", str(other), str(path))
    assert code == 0 and "(0 created, 1 updated, 0 unchanged)" in out
    assert store.get_flag(other, "f1")["conditions"][0]["rollout_percentage"] == 60


@pytest.mark.parametrize("flags, message", [
    ([{"key": "a", "conditions": [{"properties": [{"type": "flag", "key": "b"}]}]},
      {"key": "b", "conditions": [{"properties": [{"type": "flag", "key": "a"}]}]}], "cycle"),
    ([{"key": "123"}], "key"),
    ([{"key": "x", "conditions": [{"properties": [{"key": "p", "operator": "nope"}]}]}],
     "operator"),
    ([{"key": "x"}, {"key": "x"}], "more than once"),
])
def test_import_refuses_invalid_flags_and_writes_nothing(cli, db_path, tmp_path, flags, message):
    pid = json.loads(cli("project", "create", "a", "--json")[1])["id"]
    path = tmp_path / "flags.json"
    path.write_text(json.dumps({"flags": flags}))
    code, _, err = cli("flags", "import", "--project", str(pid), str(path))
    assert code == 1 and message in err and "nothing was imported" in err
    assert Store(db_path).list_flags(pid, include_deleted=True) == []


def test_import_into_an_unknown_project_is_a_clear_error(cli, tmp_path):
    cli("migrate")
    path = tmp_path / "flags.json"
    path.write_text(json.dumps({"flags": [{"key": "x"}]}))
    code, _, err = cli("flags", "import", "--project", "999", str(path))
    assert code == 1 and "does not exist" in err


def test_backup_writes_a_checked_copy(cli, db_path, tmp_path):
    pid = json.loads(cli("project", "create", "a", "--json")[1])["id"]
    Store(db_path).create_flag(pid, {"key": "f"})
    dest = str(tmp_path / "copy.db")
    code, out, _ = cli("backup", dest)
    assert code == 0 and "integrity: ok" in out
    assert Store(dest).get_flag(pid, "f")["key"] == "f"


def test_gunicorn_workers_freeze_the_loaded_app_for_the_gc():
    import gc

    from flagsvc import server

    before = gc.get_threshold()
    try:
        server._post_worker_init(None)
        assert gc.get_freeze_count() > 0
        assert gc.get_threshold()[0] == server.GC_THRESHOLD
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


def test_gunicorn_accepts_the_serve_configuration():
    """Every option and hook passes gunicorn's own validation (hooks have fixed arities);
    the master runs no process of flagsvc's beside the workers (no ingestion writer)."""
    from flagsvc import server

    app = server._Gunicorn(server.gunicorn_options(forwarded_allow_ips="10.0.0.1"))
    assert callable(app.cfg.post_worker_init)
    assert app.cfg.when_ready.__qualname__ == "WhenReady.when_ready"  # gunicorn's own


def test_default_workers_follow_the_cpus_the_process_may_use(monkeypatch):
    """A container's cpuset or `taskset` leave os.cpu_count() at the host's count: the
    default was then sized for CPUs the workers could not run on."""
    from flagsvc import server

    monkeypatch.setattr(server, "_cpu_quota", lambda cgroup: None)  # (the machine's own)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0})
    assert server.default_workers() == 3
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
    assert server.default_workers() == 5
    monkeypatch.setattr(os, "cpu_count", lambda: 64)
    assert server.default_workers() == 5
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(64)))
    assert server.default_workers() == 8


@pytest.mark.parametrize("files, expected", [
    ({"cpu.max": "150000 100000\n"}, 2),  # cgroup v2, 1.5 CPUs: rounded up
    ({"cpu.max": "max 100000\n"}, 4),  # no quota
    ({"cpu/cpu.cfs_quota_us": "100000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 1),  # v1
    ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, 4),
    ({"cpu.max": "800000 100000\n"}, 4),  # a quota above the CPUs it may run on
    ({"cpu.max": "50000 100000\n"}, 1),  # half a CPU: one
    ({"cpu.max": "200000 100000\n", "cpu/cpu.cfs_quota_us": "100000\n",
      "cpu/cpu.cfs_period_us": "100000\n"}, 2),  # v2 first
    ({"cpu.max": ""}, 4), ({"cpu.max": "inf 100000"}, 4), ({"cpu.max": "x y"}, 4),
    ({}, 4)])
def test_usable_cpus_count_a_containers_cpu_quota(monkeypatch, tmp_path, files, expected):
    """Kubernetes' CPU limit and `docker --cpus` are a quota, not an affinity mask: a pod
    limited to one CPU on a 64-core node got 8 workers (and their caches' memory)."""
    from flagsvc import server

    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    assert server.usable_cpus(str(tmp_path)) == expected


@pytest.mark.parametrize("timeout, env, expected", [
    ("30", None, "15.0"), ("10", None, "5.0"), ("10", "8", "8")])
def test_serve_keeps_the_preview_budget_inside_the_worker_timeout(cli, monkeypatch, timeout,
                                                                  env, expected):
    from flagsvc import server

    # (set even when "unset": empty reads as unset, and monkeypatch then restores it)
    monkeypatch.setenv("FLAGSVC_PREVIEW_SECONDS", env or "")
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", "/tmp")
    seen = {}
    monkeypatch.setattr(server, "run", lambda **kw: seen.update(kw))
    import os

    assert cli("serve", "--timeout", timeout)[0] == 0
    assert seen["timeout"] == int(timeout)
    assert os.environ["FLAGSVC_PREVIEW_SECONDS"] == expected


def test_serve_warns_when_token_variables_are_not_the_existing_databases(store, capsys):
    """The walk-through trap: an existing database ignores FLAGSVC_API_TOKEN/SECRET_KEY;
    `serve` says so instead of leaving every call to get 401."""
    from flagsvc.cli import _warn_unused_tokens

    project = store.create_project("p")
    _warn_unused_tokens(store, {"DATABASE": "x.db", "API_TOKEN": project["api_token"],
                                "SECRET_KEY": project["secret_key"]})
    assert capsys.readouterr().err == ""
    _warn_unused_tokens(store, {"DATABASE": "x.db", "API_TOKEN": "phc_other",
                                "SECRET_KEY": "fsk_other"})
    err = capsys.readouterr().err
    assert "FLAGSVC_API_TOKEN is set, but no project" in err
    assert "FLAGSVC_SECRET_KEY is set, but no project" in err


def test_bare_command_prints_help_and_version_is_known(cli):
    code, out, _ = cli()
    assert code == 0 and "serve" in out and "project" in out
    with pytest.raises(SystemExit) as exit_:
        cli("--version")
    assert exit_.value.code == 0


def test_read_commands_do_not_create_a_database(cli, db_path):
    import os

    code, _, err = cli("project", "list")
    assert code == 2 and "no database at" in err
    assert not os.path.exists(db_path)


def test_unwritable_database_is_one_line(cli, monkeypatch, tmp_path):
    monkeypatch.setenv("FLAGSVC_DATABASE", str(tmp_path / "missing-dir" / "x.db"))
    code, _, err = cli("migrate")
    assert code == 2 and err.startswith("error: database") and "Traceback" not in err


def test_serve_refuses_a_port_in_use_before_printing_a_secret(cli, db_path):
    import os
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, out, err = cli("serve", "--bind", f"127.0.0.1:{port}")
    assert code == 2 and "cannot listen on" in err and "secret_key" not in out + err
    assert not os.path.exists(db_path)


def test_serve_opens_no_control_socket_shared_by_every_instance():
    """gunicorn >= 25.1's control socket lives at one path per user: two `flagsvc serve`
    of one user shared it, and stopping one removed the other's."""
    from flagsvc import server

    app = server._Gunicorn(server.gunicorn_options())
    assert app.cfg.control_socket_disable is True


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("terminal", [False, True], ids=["log", "terminal"])
def test_a_generated_secret_key_goes_to_a_private_file_never_to_the_log(db_path, terminal):
    """Not even to a terminal: `docker run -t` gives the service one, and docker logs keep
    what it prints."""
    from flagsvc.app import ensure_default_project
    from flagsvc.cli import announce_default_project, secret_key_path
    from flagsvc.store import Store

    store = Store(db_path)
    config = {"DATABASE": db_path}
    project = ensure_default_project(store, config)
    out = _Terminal() if terminal else io.StringIO()
    announce_default_project(project, config, out=out)
    path = secret_key_path(db_path)
    assert os.stat(path).st_mode & 0o777 == 0o600
    key = Path(path).read_text().strip()
    assert key == project["secret_key"] and store.project_for_token(key, "secret")
    printed = out.getvalue()
    assert project["api_token"] in printed and path in printed
    assert key not in printed


def test_the_secret_key_is_printed_only_when_the_operator_asks(db_path):
    from flagsvc.app import ensure_default_project
    from flagsvc.cli import announce_default_project
    from flagsvc.store import Store

    config = {"DATABASE": db_path}
    project = ensure_default_project(Store(db_path), config)
    out = io.StringIO()
    announce_default_project(project, config, out=out, show_secret_key=True)
    assert project["secret_key"] in out.getvalue()


def test_serve_under_a_tty_keeps_the_secret_key_out_of_its_output(tmp_path):
    """`docker run -t`: stdout and stderr are a terminal, read by docker logs."""
    import pty
    import select
    import subprocess
    import sys

    from flagsvc.cli import secret_key_path

    db = str(tmp_path / "tty.db")
    leader, follower = pty.openpty()
    env = {**os.environ, "FLAGSVC_DATABASE": db, "FLAGSVC_SECRET_KEY": "",
           "FLAGSVC_API_TOKEN": ""}
    flagsvc = str(Path(sys.executable).with_name("flagsvc"))
    from stress.harness import free_port

    proc = subprocess.Popen([flagsvc, "serve", "--bind", f"127.0.0.1:{free_port()}",
                             "--workers", "1"], stdin=follower, stdout=follower,
                            stderr=follower, env=env, start_new_session=True)
    os.close(follower)
    seen = b""
    try:
        deadline = time.monotonic() + 30
        while b"Booting worker" not in seen and time.monotonic() < deadline:
            if select.select([leader], [], [], 0.5)[0]:
                try:
                    seen += os.read(leader, 65536)
                except OSError:
                    break
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(20)
        os.close(leader)
    key = Path(secret_key_path(db)).read_text().strip()
    assert b"Booting worker" in seen, seen[-2000:]
    assert key.encode() not in seen and secret_key_path(db).encode() in seen


def test_a_chosen_secret_key_is_neither_printed_nor_written(db_path):
    from flagsvc.app import ensure_default_project
    from flagsvc.cli import announce_default_project, secret_key_path
    from flagsvc.store import Store

    config = {"DATABASE": db_path, "SECRET_KEY": "fsk_chosen_by_the_operator"}
    project = ensure_default_project(Store(db_path), config)
    out = _Terminal()
    announce_default_project(project, config, out=out)
    assert "fsk_chosen" not in out.getvalue() and "FLAGSVC_SECRET_KEY" in out.getvalue()
    assert not os.path.exists(secret_key_path(db_path))


@pytest.mark.parametrize("gunicorn_conf", [False, True], ids=["flagsvc-serve", "wsgi"])
def test_serve_on_a_new_database_logs_no_secret_key(tmp_path, gunicorn_conf):
    """The service's log (stdout and stderr to a file, as under Docker or systemd)."""
    import requests
    from stress.harness import Server

    from flagsvc.cli import secret_key_path

    srv = Server(str(tmp_path / "new.db"), workers=1, env={"FLAGSVC_SECRET_KEY": ""},
                 gunicorn_conf=gunicorn_conf)
    srv.start()
    try:
        key = Path(secret_key_path(srv.db_path)).read_text().strip()
        r = requests.get(srv.url + "/api/flags", headers={"Authorization": f"Bearer {key}"},
                         timeout=5)
        assert r.status_code == 200
    finally:
        srv.stop()
    log = srv.logs()
    assert key.startswith("fsk_") and key not in log and "fsk_" not in log
    assert secret_key_path(srv.db_path) in log


def test_the_generated_secret_key_goes_where_secret_key_file_says(tmp_path):
    """On PostgreSQL the default was the working directory, which the Docker image's user
    may not write (/app is root's): FLAGSVC_SECRET_KEY_FILE, set to /data there."""
    from flagsvc.cli import announce_default_project, secret_key_path

    target = tmp_path / "keys" / "flagsvc.secret_key"
    target.parent.mkdir()
    config = {"DATABASE": "postgresql://db.internal/flagsvc", "SECRET_KEY_FILE": str(target)}
    assert secret_key_path(config["DATABASE"], str(target)) == str(target)
    out = io.StringIO()
    announce_default_project({"id": 1, "name": "default", "api_token": "phc_x",
                              "secret_key": "phs_y"}, config, out=out)
    assert target.read_text().strip() == "phs_y" and str(target) in out.getvalue()
    dockerfile = (Path(__file__).resolve().parent.parent / "Dockerfile").read_text()
    assert "FLAGSVC_SECRET_KEY_FILE=/data/" in dockerfile  # the image's writable volume
