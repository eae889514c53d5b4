"""What the client tests need from the machine: Node with the stock JavaScript clients of
tests/js (npm ci), and Debian's Chromium. Locally a missing one skips its tests with the
command that brings it; in CI (FLAGSVC_CI=1) it fails them: a skipped capability there
would be a silent hole."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

JS_DIR = Path(__file__).resolve().parent / "js"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-quic", "--no-first-run",
                 "--disable-sync"]


def need(capability: str, available: bool, how: str) -> None:
    """Skip (locally) or fail (in CI) a test whose capability is missing."""
    if available:
        return
    message = f"{capability} is missing: {how}"
    if os.environ.get("FLAGSVC_CI"):
        pytest.fail(f"CI must run this test: {message}")
    pytest.skip(message)


def node_modules(*packages: str) -> Path:
    """The tests/js install, checked for `packages`; returns its node_modules folder."""
    need("node", shutil.which("node") is not None, "install Node.js 20")
    modules = JS_DIR / "node_modules"
    missing = [p for p in packages if not (modules / p / "package.json").exists()]
    need("npm packages " + ", ".join(missing or packages), not missing,
         "npm ci --prefix tests/js")
    return modules


def chromium() -> str:
    """The path of Debian's Chromium (tests never use a tool's own browser download)."""
    path = os.environ.get("FLAGSVC_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    need("chromium", os.path.exists(path), "apt-get install chromium")
    return path


@contextlib.contextmanager
def chromium_browser() -> Iterator[Any]:
    """Debian's Chromium, headless, driven by Python playwright (the browser tests' one way
    to launch it)."""
    path = chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def run_node(script: str, *, env: dict[str, str] | None = None, timeout: float = 60) -> dict:
    """Runs a Node script (CommonJS, with tests/js/node_modules resolvable) that prints one
    JSON object as its last line of output; returns it. Fails the test with the script's
    output when it exits non-zero."""
    node_modules()
    proc = subprocess.run(["node", "-e", script], cwd=JS_DIR, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})
    if proc.returncode != 0:
        pytest.fail(f"node exited {proc.returncode}\nstdout: {proc.stdout}\nstderr: {proc.stderr}")
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    assert lines, f"node printed nothing; stderr: {proc.stderr}"
    return json.loads(lines[-1])
