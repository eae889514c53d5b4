"""Static checks run as tests, so CI keeps them: ruff (lint rules of pyproject.toml) over the
package, tests and benches, and mypy (types) over the whole package. The tools are pinned to
a minor version in the `test` extra: a newer release with new findings must not break CI."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

from tests.capabilities import need

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(module: str, *args: str) -> subprocess.CompletedProcess:
    need(module, importlib.util.find_spec(module) is not None,
         f"pip install -e '.[test]' (it pins {module})")
    return subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


def test_ruff_finds_nothing():
    r = _run("ruff", "check", "--no-cache", "flagsvc", "tests", "bench", "wsgi.py")
    assert r.returncode == 0, r.stdout + r.stderr


def test_mypy_finds_nothing_in_the_package(tmp_path):
    r = _run("mypy", "--cache-dir", str(tmp_path), "flagsvc")
    assert r.returncode == 0, r.stdout + r.stderr
