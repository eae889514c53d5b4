"""The README is the front door: its set-up commands match CI, and every walk-through
snippet runs, as pasted, against a real `flagsvc serve`."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from flagsvc.engine import bucket

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def _blocks(info: str) -> list[str]:
    return re.findall(rf"```{re.escape(info)}\n(.*?)```", README, flags=re.S)


def test_ci_runs_the_readme_test_command():
    commands = _blocks("bash")
    assert len(commands) >= 2, "README needs the two set-up commands"
    test_command = commands[1].strip()
    assert "pytest" in test_command
    assert test_command in (ROOT / ".ci" / "run").read_text()
    assert "flagsvc serve" in commands[0]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def served(tmp_path):
    """`flagsvc serve` as the walk-through starts it, on a free port."""
    port = _free_port()
    server_block = _blocks("bash walkthrough-server")[0]
    env = dict(os.environ, FLAGSVC_DATABASE=str(tmp_path / "walk.db"))
    for name, value in re.findall(r"(FLAGSVC_\w+)=(\S+)", server_block):
        env[name] = value
    serve_line = [line for line in server_block.splitlines() if "flagsvc serve" in line][0]
    argv = shlex.split(serve_line.replace("127.0.0.1:8000", f"127.0.0.1:{port}"))
    argv[0] = str(Path(sys.executable).parent / "flagsvc")
    proc = subprocess.Popen(argv + ["--workers", "2"], env=env, cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        # The walk-through's first request only once /healthz answers. Any failure before
        # then is a server still starting: a refused connection, and also a read timeout
        # (gunicorn's master accepts on the bound socket before a worker has booted; on a
        # loaded machine that takes over a second, and ReadTimeout is no ConnectionError).
        deadline = time.monotonic() + 60
        while True:
            try:
                if requests.get(url + "/healthz", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            assert proc.poll() is None, proc.stdout.read().decode()
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.2)
        yield port
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=15)


def test_walkthrough_runs_as_written(served, tmp_path):
    port = served
    outputs = []
    flagsvc = str(Path(sys.executable).parent / "flagsvc")
    for block in _blocks("bash walkthrough"):
        script = block.replace("127.0.0.1:8000", f"127.0.0.1:{port}").replace(
            # the server's database (it runs in tmp_path)
            "FLAGSVC_DATABASE=walkthrough.db", f"FLAGSVC_DATABASE={tmp_path / 'walkthrough.db'}"
        ).replace(".venv/bin/flagsvc", flagsvc)
        done = subprocess.run(["bash", "-euo", "pipefail", "-c", script], capture_output=True,
                              text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        outputs.append(done.stdout)
    # The group types were declared (a new project's ingestion creates none but its default).
    assert [json.loads(line)["name"] for line in outputs[0].splitlines()] == [
        "account", "workspace", "project"]
    # The Segment calls succeeded, the flag was created.
    assert outputs[1].count('"success": true') + outputs[1].count('"success":true') == 3, outputs[1]
    flag = json.loads(outputs[2])
    assert flag["key"] == "new-billing" and flag["version"] == 1
    # The preview counts the one account, and explain infers it from the project.
    preview = json.loads(outputs[3])
    assert preview["total"] == 1
    explained = json.loads(outputs[4])
    assert explained["group_key"] == "acme"
    expected = bucket("new-billing", "acme") <= 50
    assert explained["enabled"] is expected
    # The Unleash toggle was imported, its constraint read from the account's properties.
    imported = json.loads(outputs[5])
    assert imported["created"] == ["legacy-search"] and imported["group_types"] == []
    assert imported["context_fields"]["legacy-search"]["plan"] == "group:account"

    # The first admin was created in the served database, and can sign in to the console.
    assert "created admin you@example.com" in outputs[6]
    console = requests.Session()
    r = console.post(f"http://127.0.0.1:{port}/ui/signin", allow_redirects=False, timeout=10,
                     data={"email": "you@example.com", "password": "a long walkthrough password"})
    assert r.status_code == 303 and r.headers["Location"] == "/ui/", r.text[:300]
    assert "new-billing" in console.get(f"http://127.0.0.1:{port}/ui/", timeout=10).text

    python = _blocks("python walkthrough")[0].replace("127.0.0.1:8000", f"127.0.0.1:{port}")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(python, "README walkthrough", "exec"), {})
    assert f"new-billing for user-42: {expected}" in printed.getvalue()
    assert ("payload: {'color': 'green'}" if expected else "payload: None") in printed.getvalue()


def test_the_readme_screenshots_are_in_the_repository():
    """The images the README shows are committed (tests/test_browser_console.py renews them
    only with FLAGSVC_UPDATE_SCREENSHOTS=1)."""
    images = re.findall(r"\]\((docs/screenshots/[\w.-]+\.png)\)", README)
    assert len(images) >= 5  # the README shows five (more are in docs/screenshots/)
    for image in images:
        assert (ROOT / image).stat().st_size > 10_000, image
