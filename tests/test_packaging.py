"""The installed package is the whole package: `pip install .` (the Dockerfile) installs only
the packages pyproject.toml lists, while the editable install the tests run from sees every
directory, so a subpackage missing from the list would pass CI and break the image."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_every_subpackage_is_listed_in_pyproject():
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())
                 ["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(ROOT).parts)
             for p in (ROOT / "flagsvc").rglob("__init__.py")}
    assert found <= listed, f"add to [tool.setuptools] packages: {sorted(found - listed)}"
    assert "flagsvc.migrations" in listed  # mapped to migrations/ by package-dir


def test_the_console_files_are_package_data():
    """An installed wheel serves the console: every template and static file of
    flagsvc/console is matched by its package-data patterns."""
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())[
        "tool"]["setuptools"]["package-data"]["flagsvc.console"]
    console = ROOT / "flagsvc" / "console"
    shipped = {p for pattern in patterns for p in console.glob(pattern)}
    files = {p for folder in ("templates", "static") for p in (console / folder).rglob("*")
             if p.is_file()}
    assert files and files <= shipped, sorted(str(p) for p in files - shipped)
