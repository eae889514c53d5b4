"""Console users (issue 17): argon2id hashes, one-time passwords, the `flagsvc user`
commands, and the actor every audited change records (the limits on failed sign-ins:
tests/test_signin_limits.py)."""

from __future__ import annotations

import io

import pytest

from flagsvc import accounts
from flagsvc.cli import main
from flagsvc.store import Conflict
from flagsvc.store.projects import fingerprint

pytestmark = pytest.mark.backends


def test_passwords_are_argon2id_hashes_and_verify(store):
    user, temporary = accounts.create_user(store, "Ann@Example.com", "admin",
                                           "correct horse battery")
    assert temporary is None and user["email"] == "ann@example.com"
    assert user["password_hash"].startswith("$argon2id$")
    assert "correct horse" not in user["password_hash"]
    assert accounts.verify(store, "ANN@example.com", "correct horse battery")["id"] == user["id"]
    with pytest.raises(accounts.SignInRefused, match="wrong email or password"):
        accounts.verify(store, "ann@example.com", "wrong password!")
    with pytest.raises(accounts.SignInRefused, match="wrong email or password"):
        accounts.verify(store, "nobody@example.com", "correct horse battery")
    with pytest.raises(Conflict):
        accounts.create_user(store, "ann@example.com", "viewer", "another password")
    with pytest.raises(ValueError, match="at least"):
        accounts.create_user(store, "short@example.com", "viewer", "short")


def test_one_time_password_must_be_changed(store):
    user, temporary = accounts.create_user(store, "bob@example.com", "viewer")
    assert temporary and user["must_change_password"]
    assert accounts.verify(store, "bob@example.com", temporary)["must_change_password"]


def test_cli_create_list_reset(db_path, monkeypatch, capsys):
    monkeypatch.setenv("FLAGSVC_DATABASE", db_path)
    assert main(["user", "create", "admin@example.com", "--role", "admin"]) == 0
    out = capsys.readouterr().out
    temporary = out.split("one-time password: ")[1].split()[0]
    monkeypatch.setattr("sys.stdin", io.StringIO("a long enough password\n"))
    assert main(["user", "create", "v@example.com", "--role", "viewer", "--password-stdin"]) == 0
    assert "one-time" not in capsys.readouterr().out
    assert main(["user", "list"]) == 0
    listed = capsys.readouterr().out
    assert "admin@example.com\tadmin\tprojects: all\tactive" in listed
    assert "v@example.com\tviewer" in listed
    assert main(["user", "create", "v@example.com", "--role", "viewer"]) == 1
    from flagsvc.store import Store

    store = Store(db_path)
    assert accounts.verify(store, "admin@example.com", temporary)
    assert main(["user", "reset", "v@example.com", "--role", "editor"]) == 0
    assert "one-time password" in capsys.readouterr().out
    assert store.user_by_email("v@example.com")["role"] == "editor"
    assert main(["user", "reset", "nobody@example.com"]) == 2


def test_first_start_tells_how_to_create_the_first_admin():
    from flagsvc.cli_users import FIRST_ADMIN_HINT

    assert "flagsvc user create" in FIRST_ADMIN_HINT and "--role admin" in FIRST_ADMIN_HINT


def test_api_writes_record_the_secret_key_prefix_as_actor(client, store):
    project = store.create_project("p")
    headers = {"Authorization": f"Bearer {project['secret_key']}"}
    r = client.post("/api/flags", headers=headers, json={"key": "f", "conditions": [{}]})
    assert r.status_code == 201, r.get_json()
    entries = client.get("/api/audit", headers=headers).get_json()["entries"]
    actor = entries[0]["actor"]  # a fingerprint: nothing of the key itself (review item 17)
    assert actor == f"secret key {fingerprint(project['secret_key'])}"
    assert project["secret_key"][:8] not in actor
    assert project["secret_key"] not in str(entries)
