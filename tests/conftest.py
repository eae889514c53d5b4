"""Shared fixtures: a fresh SQLite file per test, a project in it."""

from __future__ import annotations

import pytest

from flagsvc.store import Store


@pytest.fixture
def db_path(tmp_path):
    return str(tmp_path / "flagsvc.db")


@pytest.fixture
def store(db_path):
    s = Store(db_path)
    yield s
    s.close()


# The fixtures' projects let ingestion create group types (new projects do not: see
# tests/test_group_types.py), since most tests are about what ingestion does with them.
@pytest.fixture
def project(store):
    return store.create_project("test", ingestion_creates_group_types=True)


class LiveServer:
    """A real HTTP server (werkzeug, threaded) on a free loopback port, in this process."""

    def __init__(self, app, server, thread):
        self.app = app
        self.server = server
        self.thread = thread
        self.url = f"http://127.0.0.1:{server.server_port}"
        self.service = app.extensions["flagsvc"]
        self.store = self.service.store

    def stop(self):
        self.server.shutdown()
        self.thread.join(timeout=5)


def start_live_server(db_path, port=0, **config):
    import threading

    from werkzeug.serving import make_server

    from flagsvc.app import create_app

    app = create_app({"DATABASE": db_path, "LOG_LEVEL": "WARNING", **config})
    server = make_server("127.0.0.1", port, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return LiveServer(app, server, thread)


@pytest.fixture
def live_server(db_path):
    """A running server with one project: `live_server.project` has api_token and secret_key."""
    srv = start_live_server(db_path)
    srv.project = srv.store.create_project("live", ingestion_creates_group_types=True)
    yield srv
    srv.stop()


@pytest.fixture
def app(db_path):
    from flagsvc.app import create_app

    return create_app({"DATABASE": db_path, "LOG_LEVEL": "WARNING"})


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def app_project(app):
    """A project in the `app` fixture's database (has api_token and secret_key)."""
    return app.extensions["flagsvc"].store.create_project(
        "app", ingestion_creates_group_types=True)


def auth(project):
    """The admin API's header for a project."""
    return {"Authorization": f"Bearer {project['secret_key']}"}


@pytest.fixture
def h(app_project):
    """Admin headers for `app_project`."""
    return auth(app_project)


@pytest.fixture
def cli(db_path, monkeypatch, capsys):
    """Runs the `flagsvc` command on `db_path`: cli("flags", "import", ...) -> (code, out, err)."""
    from flagsvc.cli import main

    monkeypatch.setenv("FLAGSVC_DATABASE", db_path)

    def run(*argv):
        code = main(list(argv))
        out = capsys.readouterr()
        return code, out.out, out.err

    return run
