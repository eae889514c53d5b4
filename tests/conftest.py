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


@pytest.fixture
def project(store):
    return store.create_project("test")
