"""The web console with Flask's test client (issue 17): sign-in, its limits, session expiry,
sign-out, CSRF on every change (console forms and the admin API through the console's
session), roles enforced server-side, cookie flags, escaping of ingested data, and the
audit log's actor. Browser tests: tests/test_browser_console.py."""

from __future__ import annotations

import re
import time

import pytest

from flagsvc import accounts
from flagsvc.app import create_app
from flagsvc.console.data import diff
from flagsvc.ingest.model import Call
from flagsvc.store.projects import fingerprint

pytestmark = pytest.mark.backends

PASSWORD = "correct horse battery"


@pytest.fixture
def world(db_path):
    app = create_app({"DATABASE": db_path, "LOG_LEVEL": "WARNING"})
    store = app.extensions["flagsvc"].store
    project = store.create_project("p1", ingestion_creates_group_types=True)
    for role in ("admin", "editor", "viewer"):
        accounts.create_user(store, f"{role}@example.com", role, PASSWORD)
    store.ingest(project["id"], [Call("group", "m1", time.time(), group_type="account",
                                      group_key="a1", group_set={
                                          "plan": "enterprise",
                                          "name": "<img src=x onerror=alert(1)>"})])
    store.create_flag(project["id"], {"key": "f", "bucket_by": "account", "conditions": [{}]})
    return {"app": app, "store": store, "project": project}


def sign_in(app, email, password=PASSWORD):
    client = app.test_client()
    r = client.post("/ui/signin", data={"email": email, "password": password})
    return client, r


def csrf_of(client):
    page = client.get("/ui/").get_data(as_text=True)
    return re.search(r'name="csrf-token" content="([^"]+)"', page).group(1)


def test_pages_need_a_session(world):
    client = world["app"].test_client()
    r = client.get("/ui/flags/f")
    assert r.status_code == 303 and r.headers["Location"] == "/ui/signin?next=/ui/flags/f"
    assert client.get("/").headers["Location"] == "/ui/"
    assert client.get("/ui/signin").status_code == 200
    r = client.get("/ui/no/such/page")  # a console address: a page, not the API's JSON
    assert r.status_code == 404 and r.mimetype == "text/html"
    assert client.get("/api/nope").is_json


def test_sign_in_sets_a_hardened_cookie_and_sign_out_ends_the_session(world):
    client, r = sign_in(world["app"], "Admin@Example.com")
    assert r.status_code == 303
    cookie = r.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" not in cookie
    assert client.get("/ui/").status_code == 200
    token = csrf_of(client)
    assert client.post("/ui/signout").status_code == 403  # no CSRF token: refused
    assert client.post("/ui/signout", data={"csrf_token": token}).status_code == 303
    assert client.get("/ui/").status_code == 303
    assert world["store"].conn().execute("SELECT COUNT(*) FROM sessions").fetchone()[0] == 0


def test_cookie_is_secure_over_https(world):
    client = world["app"].test_client()
    r = client.post("/ui/signin", base_url="https://flags.example.com",
                    data={"email": "admin@example.com", "password": PASSWORD})
    assert "Secure" in r.headers["Set-Cookie"]


def test_wrong_password_then_held_up_from_that_address_only(world):
    app = world["app"]
    for _ in range(accounts.LIMITS.lock_after):
        _, r = sign_in(app, "editor@example.com", "wrong password!")
        assert r.status_code == 401 and b"wrong email or password" in r.data
    _, r = sign_in(app, "editor@example.com")  # the right password, from the same address
    assert r.status_code == 429 and b"from your address" in r.data
    client = app.test_client()  # the editor from elsewhere
    r = client.post("/ui/signin", data={"email": "editor@example.com", "password": PASSWORD},
                    environ_base={"REMOTE_ADDR": "192.0.2.44"})
    assert r.status_code == 303


def test_sessions_expire_when_idle_and_at_their_maximum(db_path):
    app = create_app({"DATABASE": db_path, "LOG_LEVEL": "WARNING",
                      "SESSION_IDLE_SECONDS": 0.5, "SESSION_MAX_SECONDS": 3600})
    store = app.extensions["flagsvc"].store
    store.create_project("p")
    accounts.create_user(store, "a@example.com", "admin", PASSWORD)
    client, _ = sign_in(app, "a@example.com")
    assert client.get("/ui/").status_code == 200
    time.sleep(0.7)
    assert client.get("/ui/").status_code == 303
    r = client.get("/api/flags")  # the API says so too
    assert r.status_code == 401 and "expired" in r.get_json()["message"]
    policy = accounts.SessionPolicy(idle_seconds=3600, max_seconds=10)
    assert policy.expiry(created_at=100, now=105) == 110  # never past created + max


def test_one_time_password_must_be_changed_first(world):
    store = world["store"]
    _, temporary = accounts.create_user(store, "new@example.com", "viewer")
    client, r = sign_in(world["app"], "new@example.com", temporary)
    assert r.headers["Location"] == "/ui/password"
    assert client.get("/ui/").headers["Location"] == "/ui/password"
    assert client.get("/api/flags").status_code == 403  # the API waits for it too
    page = client.get("/ui/password").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    r = client.post("/ui/password", data={"csrf_token": token, "current": temporary,
                                          "password": "my own password", "confirm":
                                          "my own password"})
    assert r.status_code == 303
    assert client.get("/ui/").status_code == 200
    assert accounts.verify(store, "new@example.com", "my own password")


@pytest.mark.parametrize("role, flags, settings", [
    ("viewer", 403, 403), ("editor", 201, 403), ("admin", 201, 200)])
def test_roles_are_enforced_by_the_server(world, role, flags, settings):
    client, _ = sign_in(world["app"], f"{role}@example.com")
    token = csrf_of(client)
    headers = {"X-CSRF-Token": token}
    assert client.get("/api/flags").status_code == 200  # everyone reads
    assert client.post("/api/flags/preview", headers=headers, json={
        "key": "d", "bucket_by": "account", "conditions": [{}]}).status_code == 200
    r = client.post("/api/flags", headers=headers, json={"key": "new", "conditions": [{}]})
    assert r.status_code == flags, r.get_json()
    r = client.put("/api/flags/f", headers=headers, json={"key": "f", "version": 1,
                                                          "active": False})
    assert r.status_code == (403 if role == "viewer" else 200)
    assert client.patch("/api/project", headers=headers,
                        json={"name": "renamed"}).status_code == settings
    assert client.post("/api/project/tokens", headers=headers,
                       json={"kind": "api"}).status_code == (201 if settings == 200 else 403)
    assert client.get("/ui/settings").status_code == settings
    assert client.get("/ui/users").status_code == settings
    r = client.post("/ui/users", data={"csrf_token": token, "email": "x@example.com",
                                       "role": "admin"})
    assert r.status_code == settings
    page = client.get("/ui/flags/f").get_data(as_text=True)
    assert ('id="save"' in page) is (role != "viewer")  # the UI hides what the server refuses
    assert ("New flag" in client.get("/ui/").get_data(as_text=True)) is (role != "viewer")


def test_api_changes_through_the_session_need_the_csrf_token(world):
    client, _ = sign_in(world["app"], "admin@example.com")
    before = world["store"].get_flag(world["project"]["id"], "f")["version"]
    r = client.put("/api/flags/f", json={"key": "f", "version": before, "active": False})
    assert r.status_code == 403 and "CSRF" in r.get_json()["message"]
    r = client.put("/api/flags/f", headers={"X-CSRF-Token": "forged"},
                   json={"key": "f", "version": before, "active": False})
    assert r.status_code == 403
    # a cross-site form (text/plain body, cookie sent) is refused the same way
    r = client.post("/api/flags", data='{"key": "evil", "conditions": [{}]}',
                    content_type="text/plain")
    assert r.status_code == 403
    assert world["store"].get_flag(world["project"]["id"], "f")["version"] == before
    r = client.post("/ui/project", data={"project_id": "1"})
    assert r.status_code == 403


def test_console_changes_are_audited_with_the_user(world):
    client, _ = sign_in(world["app"], "editor@example.com")
    r = client.put("/api/flags/f", headers={"X-CSRF-Token": csrf_of(client)},
                   json={"key": "f", "version": 1, "active": False})
    assert r.status_code == 200
    entry = client.get("/api/audit").get_json()["entries"][0]
    assert entry["actor"] == "user editor@example.com" and entry["action"] == "updated"
    page = client.get("/ui/audit").get_data(as_text=True)
    assert "user editor@example.com" in page
    assert '<span class="add">+ false</span>' in page  # the flag had no "active" before
    listing = client.get("/ui/").get_data(as_text=True)
    assert "by user editor@example.com" in listing


def test_ingested_markup_is_shown_as_text(world):
    client, _ = sign_in(world["app"], "viewer@example.com")
    for path in ("/ui/groups/account/a1", "/ui/groups?type=account"):
        page = client.get(path).get_data(as_text=True)
        assert "<img src=x" not in page
        assert "&lt;img src=x onerror=alert(1)&gt;" in page
    r = client.get("/ui/groups/account/a1")
    assert "default-src 'self'" in r.headers["Content-Security-Policy"]


def test_project_switcher_only_opens_the_users_projects(world):
    store = world["store"]
    other = store.create_project("p2")
    accounts.create_user(store, "solo@example.com", "editor", PASSWORD,
                         projects=[world["project"]["id"]])
    client, _ = sign_in(world["app"], "solo@example.com")
    token = csrf_of(client)
    client.post("/ui/project", data={"csrf_token": token, "project_id": str(other["id"])})
    assert client.get("/api/project").get_json()["name"] == "p1"
    admin, _ = sign_in(world["app"], "admin@example.com")
    admin.post("/ui/project", data={"csrf_token": csrf_of(admin), "project_id": str(other["id"])})
    assert admin.get("/api/project").get_json()["name"] == "p2"
    assert "p2" in admin.get("/ui/").get_data(as_text=True)


def test_a_signed_out_user_is_never_sent_off_site(world):
    client = world["app"].test_client()
    r = client.post("/ui/signin", data={"email": "admin@example.com", "password": PASSWORD,
                                        "next": "//evil.example.com/"})
    assert r.headers["Location"] == "/ui/"


def test_audit_diff_shows_the_changed_lines_of_each_changed_field():
    before = {"key": "f", "version": 1, "conditions": [{"rollout_percentage": 30,
                                                         "properties": []}], "name": "a"}
    after = {**before, "version": 2, "conditions": [{"rollout_percentage": 100,
                                                      "properties": []}]}
    (change,) = diff(before, after)  # name and the bookkeeping version are not changes
    assert change["field"] == "conditions"
    assert ("del", '  "rollout_percentage": 30') in change["lines"]
    assert ("add", '  "rollout_percentage": 100') in change["lines"]
    assert [f["field"] for f in diff(None, before)] == ["conditions", "key", "name"]


def test_settings_changes_and_rotations_are_audited_without_secrets(world):
    client, _ = sign_in(world["app"], "admin@example.com")
    headers = {"X-CSRF-Token": csrf_of(client)}
    assert client.patch("/api/project", headers=headers, json={
        "name": "renamed", "client_properties": "fill"}).status_code == 200
    r = client.post("/api/project/tokens", headers=headers, json={"kind": "secret"})
    secret = r.get_json()["token"]
    entries = client.get("/api/audit").get_json()["entries"]
    rotated, updated = entries[0], entries[1]
    assert updated["action"] == "settings_updated" and updated["actor"] == "user admin@example.com"
    assert updated["project"] == {"before": {"name": "p1", "client_properties": "override"},
                                  "after": {"name": "renamed", "client_properties": "fill"}}
    assert updated["before"] is None and updated["flag_key"] is None
    assert rotated["action"] == "secret_key_rotated"
    assert rotated["project"]["after"]["fingerprint"] == fingerprint(secret)
    page = client.get("/ui/audit").get_data(as_text=True)
    assert secret not in page and secret not in str(entries)
    assert "settings updated" in page and "+ &#34;renamed&#34;" in page


def test_admin_sets_a_users_projects(world):
    store = world["store"]
    other = store.create_project("p2")
    admin, _ = sign_in(world["app"], "admin@example.com")
    token = csrf_of(admin)
    r = admin.post("/ui/users", data={"csrf_token": token, "email": "new@example.com",
                                      "role": "viewer", "project": [str(other["id"])]})
    assert r.status_code == 200 and "one-time-password" in r.get_data(as_text=True)
    user = store.user_by_email("new@example.com")
    assert store.user_project_ids(user) == [other["id"]]
    viewer = store.user_by_email("viewer@example.com")
    r = admin.post(f"/ui/users/{viewer['id']}", data={
        "csrf_token": token, "action": "projects", "project": [str(world["project"]["id"])]})
    assert r.status_code == 303
    assert store.user_project_ids(store.get_user(viewer["id"])) == [world["project"]["id"]]
    admin.post(f"/ui/users/{viewer['id']}", data={"csrf_token": token, "action": "projects",
                                                  "all_projects": "1"})
    assert store.get_user(viewer["id"])["all_projects"] is True
