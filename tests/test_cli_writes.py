"""The CLI writes through flagsvc.writes (SPEC §10): each command's change is audited with
actor "cli" and seen by a server that is already running (a real `flagsvc serve`)."""

from __future__ import annotations

import json
import time

import pytest
import requests
from stress.harness import API_TOKEN, SECRET_KEY, Server

from flagsvc.store import Store

pytestmark = pytest.mark.backends


def _until(check, timeout: float = 5.0) -> float:
    """Seconds until check() held (fails after `timeout`)."""
    start = time.monotonic()
    while not check():
        assert time.monotonic() - start < timeout, "not seen in time"
        time.sleep(0.05)
    return time.monotonic() - start


def _decide(url: str, token: str) -> int:
    return requests.post(url + "/flags/?v=2", timeout=5, json={
        "api_key": token, "distinct_id": "u1"}).status_code


def _admin(url: str, key: str, path: str = "/api/flags") -> requests.Response:
    return requests.get(url + path, headers={"Authorization": f"Bearer {key}"}, timeout=5)


@pytest.fixture
def running(db_path, tmp_path):
    srv = Server(db_path, workers=2, log_dir=str(tmp_path)).start()
    yield srv
    srv.stop()


def test_a_cli_rotation_is_audited_and_seen_by_a_running_server(running, cli):
    url = running.url
    assert _decide(url, API_TOKEN) == 200 and _admin(url, SECRET_KEY).status_code == 200
    code, out, _ = cli("project", "rotate-api-token", "1", "--grace", "0", "--json")
    assert code == 0
    new_api = json.loads(out)["api_token"]
    # the server's one-second token cache, then the old token is refused on every worker
    _until(lambda: all(_decide(url, API_TOKEN) == 401 for _ in range(6)))
    assert all(_decide(url, new_api) == 200 for _ in range(6))

    code, out, _ = cli("project", "rotate-secret-key", "1", "--grace", "0", "--json")
    assert code == 0
    new_secret = json.loads(out)["secret_key"]
    _until(lambda: all(_admin(url, SECRET_KEY).status_code == 401 for _ in range(6)))
    entries = _admin(url, new_secret, "/api/audit").json()["entries"]
    assert [(e["action"], e["actor"]) for e in entries[:2]] == [
        ("secret_key_rotated", "cli"), ("api_token_rotated", "cli")]
    assert new_secret not in json.dumps(entries) and new_api not in json.dumps(entries)


def test_a_cli_import_is_audited_and_served_by_a_running_server(running, cli, tmp_path):
    url = running.url
    path = tmp_path / "flags.json"
    path.write_text(json.dumps({"flags": [{"key": "from-cli", "bucket_by": "organization",
                                           "conditions": [{"rollout_percentage": 100}]}]}))
    code, out, _ = cli("flags", "import", "--project", "1", str(path))
    assert code == 0 and "1 created" in out

    def served() -> bool:
        r = requests.post(url + "/flags/?v=2", timeout=5, json={
            "api_key": API_TOKEN, "distinct_id": "u1", "groups": {"organization": "o1"}})
        return r.json()["flags"].get("from-cli", {}).get("enabled") is True

    _until(lambda: all(served() for _ in range(4)))
    entries = _admin(url, SECRET_KEY, "/api/audit").json()["entries"]
    assert (entries[0]["action"], entries[0]["flag_key"], entries[0]["actor"]) == (
        "created", "from-cli", "cli")


def test_project_create_is_audited_as_cli_and_rotation_of_a_missing_project_is_one_line(
        cli, db_path):
    created = json.loads(cli("project", "create", "acme", "--json")[1])
    entries = Store(db_path).audit_log(created["id"])
    assert [(e["action"], e["actor"]) for e in entries] == [("project_created", "cli")]
    assert created["secret_key"] not in json.dumps(entries)
    code, out, err = cli("project", "rotate-api-token", "999")
    assert code == 1 and err.startswith("error: project 999 does not exist")
    assert "Traceback" not in err
    code, _, err = cli("project", "create", "again", "--api-token", created["api_token"])
    assert code == 1 and "already in use" in err
