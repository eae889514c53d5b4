"""The default project on first start: created exactly once, even by racing workers."""

from __future__ import annotations

import threading

import pytest

from flagsvc.app import ensure_default_project
from flagsvc.store import Store

pytestmark = pytest.mark.backends


def test_racing_workers_create_exactly_one_default_project(db_path):
    Store(db_path).close()  # migrated, empty
    barrier = threading.Barrier(8)
    created = []

    def worker():
        store = Store(db_path)
        barrier.wait()
        created.append(ensure_default_project(store, {}))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len([c for c in created if c is not None]) == 1
    assert len(Store(db_path).list_projects()) == 1


def test_configured_tokens_are_used(db_path):
    project = ensure_default_project(Store(db_path), {"API_TOKEN": "phc_mine",
                                                      "SECRET_KEY": "fsk_mine"})
    assert project["api_token"] == "phc_mine"
    assert Store(db_path).project_for_token("fsk_mine", "secret")["id"] == project["id"]
    assert ensure_default_project(Store(db_path), {}) is None
