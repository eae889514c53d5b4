"""PostgreSQL faults a node must ride out by itself (issue 19, review): a worker booting while
the database is down, a server that stops answering without refusing, a read-only standby,
a restart that left every thread holding a dead connection, the connections a worker holds.

Outages are made with a TCP relay of the test's own (tests/pgproxy.py) in front of the
test server, or a lock on the test's own schema: the cluster is never stopped.
"""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager

import psycopg
import pytest

from flagsvc.app import create_app
from flagsvc.store import DatabaseUnavailable
from flagsvc.store.pg import PgPool
from tests.pgproxy import PgProxy

pytestmark = pytest.mark.parametrize("backend", ["postgresql"], indirect=True)


def _batch(project, n=1, prefix="e"):
    return {"api_key": project["api_token"],
            "batch": [{"event": "$identify", "distinct_id": f"{prefix}{i}",
                       "uuid": f"{prefix}-{time.time_ns()}-{i}",
                       "properties": {"$set": {"plan": "pro"}}} for i in range(n)]}


def _until(check, seconds=8.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.1)
    return False


@pytest.fixture
def proxy(db_path):
    p = PgProxy(db_path)
    yield p
    p.down()


def _app(url, **config):
    return create_app({"DATABASE": url, "LOG_LEVEL": "CRITICAL", "CACHE_SECONDS": 0.05,
                       **config})


@pytest.mark.parametrize("migrate", [True, False])
def test_a_worker_booted_while_the_database_is_down_serves_degraded_and_recovers(
        project, proxy, migrate):
    """Before: create_app -> Store -> migrate() raised PoolTimeout, the worker exited and
    gunicorn's master gave up ("Worker failed to boot")."""
    app = _app(proxy.url)  # the relay is not listening: nothing answers
    if not migrate:
        app.extensions["flagsvc"].close()
        app = create_app({"DATABASE": proxy.url, "LOG_LEVEL": "CRITICAL"}, migrate=False)
    client = app.test_client()
    try:
        assert client.get("/healthz").status_code == 200
        assert client.get("/readyz").status_code == 503
        assert client.post("/batch/", json=_batch(project)).status_code == 503
        proxy.up()
        assert _until(lambda: client.get("/readyz").status_code == 200)
        assert _until(lambda: client.post("/batch/", json=_batch(project)).status_code == 200,
                      3)
    finally:
        app.extensions["flagsvc"].close()


def test_boot_keeps_no_connection_and_pools_are_sized_from_threads(db_path):
    app = create_app({"DATABASE": db_path, "LOG_LEVEL": "CRITICAL"}, threads=4)
    svc = app.extensions["flagsvc"]
    try:
        assert svc.store._pool.max_size == 5
        assert svc.reader._pool.max_size == 5
        assert svc.store._pool.open_connections() == 0  # the migrating thread gave it back
    finally:
        svc.close()


def test_statements_have_deadlines_and_a_held_lock_is_a_quick_503(project, db_path):
    app = _app(db_path, PG_WRITE_TIMEOUT=1.0, PG_READ_TIMEOUT=0.5)
    svc = app.extensions["flagsvc"]
    client = app.test_client()
    headers = {"Authorization": f"Bearer {project['secret_key']}"}
    try:
        assert svc.store.conn().execute("SHOW statement_timeout").fetchone()[0] == "1s"
        assert svc.reader.conn().execute("SHOW statement_timeout").fetchone()[0] == "500ms"
        assert svc.reader.conn().execute("SHOW lock_timeout").fetchone()[0] == "500ms"
        started = time.monotonic()
        with pytest.raises(DatabaseUnavailable):
            svc.reader.conn().execute("SELECT pg_sleep(5)").fetchone()
        assert time.monotonic() - started < 3
        with psycopg.connect(db_path, autocommit=False) as other:
            other.execute("LOCK TABLE flags IN ACCESS EXCLUSIVE MODE")
            started = time.monotonic()
            r = client.post("/api/flags", json={"key": "f", "conditions": [{}]},
                            headers=headers)
            waited = time.monotonic() - started
        assert r.status_code == 503, r.get_data(as_text=True)
        assert waited < 5
    finally:
        svc.close()


def test_a_server_that_stops_answering_fails_requests_fast_and_recovers(project, proxy):
    """A relay that accepts bytes and answers nothing: no TCP error ever comes. Before: every
    request hung until gunicorn's WORKER TIMEOUT killed the worker."""
    proxy.up()
    app = _app(proxy.url, PG_WRITE_TIMEOUT=1.0, PG_READ_TIMEOUT=0.5)
    client = app.test_client()
    try:
        assert client.post("/batch/", json=_batch(project)).status_code == 200
        assert client.post("/flags/?v=2", json={"api_key": project["api_token"],
                                                "distinct_id": "u"}).status_code == 200
        proxy.freeze()
        started = time.monotonic()
        assert client.post("/batch/", json=_batch(project)).status_code == 503
        assert time.monotonic() - started < 8
        started = time.monotonic()
        r = client.post("/flags/?v=2", json={"api_key": project["api_token"],
                                             "distinct_id": "u"})
        assert r.status_code == 200  # from the cache
        assert time.monotonic() - started < 8
        proxy.down()
        proxy.up()
        assert _until(lambda: client.post("/batch/", json=_batch(project)).status_code == 200)
    finally:
        app.extensions["flagsvc"].close()


def test_the_first_requests_after_a_restart_are_not_503(project, proxy):
    """Every thread keeps its connection; after a restart it is dead. The first request of
    each thread used to fail on it (a false 503) once the database was back."""
    proxy.up()
    app = _app(proxy.url)
    client = app.test_client()
    try:
        assert client.post("/batch/", json=_batch(project, prefix="a")).status_code == 200
        proxy.down()  # every connection dropped, as by a restart ...
        proxy.up()  # ... and the server back
        assert client.post("/batch/", json=_batch(project, prefix="b")).status_code == 200
        assert client.get("/readyz").status_code == 200
    finally:
        app.extensions["flagsvc"].close()


def test_a_read_only_database_answers_503_on_writes_and_readyz(project, db_path):
    """A standby before promotion (default_transaction_read_only): writes were 500 and
    /readyz 200."""
    read_only = db_path + "%20-cdefault_transaction_read_only%3Don"
    app = _app(read_only)
    client = app.test_client()
    headers = {"Authorization": f"Bearer {project['secret_key']}"}
    try:
        r = client.get("/readyz")
        assert r.status_code == 503 and r.get_json()["code"] == "read_only"
        assert client.post("/batch/", json=_batch(project)).status_code == 503
        r = client.post("/api/flags", json={"key": "f", "conditions": [{}]}, headers=headers)
        assert r.status_code == 503, r.get_data(as_text=True)
    finally:
        app.extensions["flagsvc"].close()


def test_a_worker_that_served_nothing_answers_decide_from_its_warm_up_during_an_outage(
        store, project, proxy):
    """Degraded decide was per worker: one that had served nothing before the outage
    answered 503. A gunicorn worker's start now loads every project's flags and token."""
    from flagsvc.server import _post_worker_init

    store.create_flag(project["id"], {"key": "everyone", "conditions": [{}]})
    proxy.up()
    app = _app(proxy.url)

    class Worker:
        wsgi = app

    try:
        with pytest.MonkeyPatch.context() as mp:
            threads = []
            svc = app.extensions["flagsvc"]
            real = svc.start_warm_up
            mp.setattr(svc, "start_warm_up", lambda: threads.append(real()))
            _post_worker_init(Worker())
        threads[0].join(10)
        proxy.down()
        r = app.test_client().post("/flags/?v=2", json={"api_key": project["api_token"],
                                                        "distinct_id": "u"})
        assert r.status_code == 200 and r.get_json()["flags"]["everyone"]["enabled"]
    finally:
        app.extensions["flagsvc"].close()


@contextmanager
def _one_connection_held(pool):
    """Another thread holds one connection of `pool` (checked out, in use) meanwhile."""
    held, done = threading.Event(), threading.Event()

    def hold():
        pool.get().execute("SELECT 1")
        held.set()
        done.wait(10)
        pool.release_current()

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert held.wait(10)
        yield
    finally:
        done.set()
        holder.join(10)


def test_a_full_pool_is_not_an_outage(db_path):
    """Every connection checked out and none handed back in time fails that checkout, and
    only it: before, it marked the database down like an unreachable server, and every
    request of the process then failed at once until the probe saw the server again."""
    pool = PgPool(db_path, max_size=1, timeout=0.3)
    with _one_connection_held(pool):
        with pytest.raises(psycopg.OperationalError, match=r"connection of this process \(1\)"):
            pool.get()
        assert not pool._down
    started = time.monotonic()
    assert pool.get().execute("SELECT 1").fetchone()[0] == 1
    assert time.monotonic() - started < 1  # at once: no probe to wait for
    pool.close()


def test_a_pool_that_cannot_connect_is_an_outage_even_when_it_looks_full(db_path):
    """The pool counts a connection it is still trying to open as one of its own: with one
    connection held of two and the server refusing new ones, the pool looks full, yet the
    database is unreachable for this checkout — marked down, so the next ones fail at once
    instead of each waiting out the pool's timeout."""
    pool = PgPool(db_path, max_size=2, timeout=0.5)
    try:
        with _one_connection_held(pool):
            pool._pool.conninfo = "postgresql://postgres@127.0.0.1:1/test"  # refused from now
            with pytest.raises(psycopg.OperationalError):
                pool.get()
            assert pool._down
            started = time.monotonic()
            with pytest.raises(psycopg.OperationalError, match="unreachable"):
                pool.get()
            assert time.monotonic() - started < 0.2
    finally:
        pool.close()
