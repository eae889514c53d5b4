"""Two real `flagsvc serve` processes started at the same moment on one empty database (a new
SQLite file; a new PostgreSQL schema): migrations are applied once, exactly one default
project is created, and both nodes serve (SPEC §10)."""

from __future__ import annotations

import threading
import time

import pytest
import requests
from stress.harness import API_TOKEN, Server

from flagsvc.store import Store, db, pg

pytestmark = pytest.mark.backends


def test_two_nodes_starting_at_once_on_an_empty_database(db_path, backend, tmp_path):
    nodes = [Server(db_path, workers=2, log_dir=str(tmp_path / d)) for d in ("a", "b")]
    for d in ("a", "b"):
        (tmp_path / d).mkdir()
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def start(node: Server) -> None:
        barrier.wait()
        try:
            node.start(timeout=60)
        except BaseException as e:  # noqa: BLE001 (reported below)
            errors.append(e)

    threads = [threading.Thread(target=start, args=(n,)) for n in nodes]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors
        for node in nodes:
            assert requests.get(node.url + "/readyz", timeout=5).status_code == 200
            r = requests.post(node.url + "/flags/?v=2", timeout=5,
                              json={"api_key": API_TOKEN, "distinct_id": "u1"})
            assert r.status_code == 200 and r.json()["errorsWhileComputingFlags"] is False
        # a flag made through one node is decided by the other
        made = requests.post(nodes[0].url + "/api/flags", timeout=5, json={
            "key": "both", "bucket_by": "organization",
            "conditions": [{"rollout_percentage": 100}]},
            headers={"Authorization": "Bearer " + nodes[0].env["FLAGSVC_SECRET_KEY"]})
        assert made.status_code == 201, made.text

        def served() -> bool:
            flags = requests.post(nodes[1].url + "/flags/?v=2", timeout=5, json={
                "api_key": API_TOKEN, "distinct_id": "u1", "groups": {"organization": "o1"}
            }).json()["flags"]
            return flags.get("both", {}).get("enabled") is True

        deadline = time.monotonic() + 5
        while not served():
            assert time.monotonic() < deadline, "node B never served node A's flag"
            time.sleep(0.05)
    finally:
        for node in nodes:
            node.stop()
    logs = [node.logs() for node in nodes]
    assert sum("created the default project" in log for log in logs) == 1, logs
    store = Store(db_path, migrate_now=False)
    try:
        assert [p["name"] for p in store.list_projects()] == ["default"]
        applied = [r[0] for r in store.conn().execute(
            "SELECT name FROM schema_migrations ORDER BY name").fetchall()]
        names = pg.migration_names() if backend == "postgresql" else db.migration_names()
        assert applied == [n for n, _ in names]
    finally:
        store.close()
