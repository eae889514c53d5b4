"""Shared fixtures: a fresh database per test (a SQLite file, or on PostgreSQL a schema of
its own), a project in it.

A test module that sets `pytestmark = pytest.mark.backends` runs each of its tests that use
`db_path` (or a fixture built on it) on both backends: `[sqlite]` and `[postgresql]`. A test
of such a module marked `sqlite_only` runs on SQLite alone (it reads the file itself). The
PostgreSQL server is FLAGSVC_TEST_POSTGRES_URL (default: the local one, trust auth); when it
is unreachable the PostgreSQL tests skip locally and fail in CI (capabilities.need).
"""

from __future__ import annotations

import itertools
import os

import pytest

from flagsvc.store import Store

PG_URL = os.environ.get("FLAGSVC_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
_schemas = itertools.count()


def pytest_configure(config):
    config.addinivalue_line("markers", "backends: run the module's tests on SQLite and PostgreSQL")
    config.addinivalue_line("markers", "sqlite_only: in a `backends` module, SQLite only")


def pytest_generate_tests(metafunc):
    if "backend" not in metafunc.fixturenames:
        return
    if metafunc.definition.get_closest_marker("backends") is None:
        return
    both = metafunc.definition.get_closest_marker("sqlite_only") is None
    cases = getattr(metafunc.module, "BACKEND_CASES", None)
    if cases is not None and all(n in metafunc.fixturenames for n in cases[0]):
        # the module pairs the backend with a parameter of its own
        names, values = cases
        if not both:
            values = [v for v in values if v[0] == "sqlite"]
        metafunc.parametrize(names, values, indirect=["backend"])
        return
    metafunc.parametrize("backend", ["sqlite", "postgresql"] if both else ["sqlite"],
                         indirect=True)


@pytest.fixture
def backend(request):
    """"sqlite" or "postgresql" (see the module docstring); "sqlite" unless parametrised."""
    return getattr(request, "param", "sqlite")


def pg_available() -> str | None:
    """None if the test server answers, else why not."""
    import psycopg

    try:
        with psycopg.connect(PG_URL, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as e:
        return str(e).strip().splitlines()[0]
    return None


def pg_schema_url(prefix: str = "ft") -> tuple[str, str]:
    """A new, empty schema on the test server, and the URL whose search_path is it."""
    import psycopg

    from tests.capabilities import need

    why = pg_available()
    need("postgresql", why is None,
         f"{why}: start it with `pg_ctlcluster 15 main start` (or set FLAGSVC_TEST_POSTGRES_URL)")
    schema = f"{prefix}_{os.getpid()}_{next(_schemas)}"
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        conn.execute(f"CREATE SCHEMA {schema}")
    sep = "&" if "?" in PG_URL else "?"
    return schema, f"{PG_URL}{sep}options=-csearch_path%3D{schema}"


def drop_pg_schema(schema: str) -> None:
    import psycopg

    try:
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            conn.execute("SET lock_timeout = '5s'")
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    except psycopg.Error:
        pass  # a connection still holds it; the next run of this pid's name drops it


@pytest.fixture
def db_path(tmp_path, backend):
    """The database of the test: a SQLite file path, or a PostgreSQL URL (own schema)."""
    if backend == "sqlite":
        yield str(tmp_path / "flagsvc.db")
        return
    schema, url = pg_schema_url()
    yield url
    drop_pg_schema(schema)


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
        self.service.close()


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

    app = create_app({"DATABASE": db_path, "LOG_LEVEL": "WARNING"})
    yield app
    app.extensions["flagsvc"].close()


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
