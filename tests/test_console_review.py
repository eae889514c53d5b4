"""The console's defects found by the independent review of issue 17
(/work/coord/review17.md), each with the behaviour that fixes it: a project-limited admin
manages only their projects' users, editors cannot create group types, sign-in does not
reveal which emails exist, a one-time password is forced out, control characters in
`next`, login CSRF, and the secret key's audit fingerprint. Flask's test client; the
browser walk-through is tests/test_browser_console.py."""

from __future__ import annotations

import re
import time

import pytest

from flagsvc import accounts
from flagsvc.app import create_app

PASSWORD = "correct horse battery"


@pytest.fixture
def world(db_path):
    app = create_app({"DATABASE": db_path, "LOG_LEVEL": "WARNING"})
    store = app.extensions["flagsvc"].store
    p1 = store.create_project("p1")
    p2 = store.create_project("p2")
    accounts.create_user(store, "root@example.com", "admin", PASSWORD)
    accounts.create_user(store, "p2admin@example.com", "admin", PASSWORD, projects=[p2["id"]])
    accounts.create_user(store, "p2editor@example.com", "editor", PASSWORD, projects=[p2["id"]])
    accounts.create_user(store, "p1viewer@example.com", "viewer", PASSWORD, projects=[p1["id"]])
    accounts.create_user(store, "wide@example.com", "editor", PASSWORD)
    return {"app": app, "store": store, "p1": p1, "p2": p2}


def sign_in(app, email, password=PASSWORD, **kw):
    client = app.test_client()
    r = client.post("/ui/signin", data={"email": email, "password": password}, **kw)
    return client, r


def csrf_of(client):
    page = client.get("/ui/").get_data(as_text=True)
    return re.search(r'name="csrf-token" content="([^"]+)"', page).group(1)


# ---------------------------------------------------------------- review item 1 (HIGH)


def test_a_project_admin_manages_only_the_users_of_their_projects(world):
    store, p1, p2 = world["store"], world["p1"], world["p2"]
    client, _ = sign_in(world["app"], "p2admin@example.com")
    token = csrf_of(client)
    page = client.get("/ui/users").get_data(as_text=True)
    assert "p2editor@example.com" in page
    for other in ("root@example.com", "p1viewer@example.com", "wide@example.com"):
        assert other not in page  # an every-project user or another project's user
    assert 'name="all_projects"' not in page and ">p1<" not in page.replace(" ", "")
    # Every other user is out of reach: no role, no disable, no one-time password.
    for email in ("root@example.com", "p1viewer@example.com", "wide@example.com"):
        target = store.user_by_email(email)
        for action in ({"action": "reset"}, {"action": "disable"},
                       {"action": "role", "role": "viewer"},
                       {"action": "projects", "project": str(p2["id"])}):
            r = client.post(f"/ui/users/{target['id']}", data={"csrf_token": token, **action})
            assert r.status_code == 404, (email, action)
        after = store.get_user(target["id"])
        assert after == target  # unchanged: same hash, role, projects, not disabled
    # A new user gets the admin's projects, never all of them, whatever the form says.
    r = client.post("/ui/users", data={"csrf_token": token, "email": "evil@example.com",
                                       "role": "admin", "all_projects": "1",
                                       "project": [str(p1["id"])]})
    assert r.status_code == 200 and "one-time-password" in r.get_data(as_text=True)
    evil = store.user_by_email("evil@example.com")
    assert evil["all_projects"] is False and store.user_project_ids(evil) == [p2["id"]]
    # Their own project's users: managed, within their projects only.
    editor = store.user_by_email("p2editor@example.com")
    r = client.post(f"/ui/users/{editor['id']}", data={
        "csrf_token": token, "action": "projects", "all_projects": "1",
        "project": [str(p1["id"]), str(p2["id"])]})
    assert r.status_code == 303
    editor = store.get_user(editor["id"])
    assert editor["all_projects"] is False and store.user_project_ids(editor) == [p2["id"]]
    r = client.post(f"/ui/users/{editor['id']}", data={"csrf_token": token, "action": "reset"})
    assert r.status_code == 200 and "one-time-password" in r.get_data(as_text=True)


def test_an_every_project_admin_still_manages_everyone(world):
    store = world["store"]
    client, _ = sign_in(world["app"], "root@example.com")
    page = client.get("/ui/users").get_data(as_text=True)
    for email in ("p2admin@example.com", "p1viewer@example.com", "wide@example.com"):
        assert email in page
    assert 'name="all_projects"' in page
    target = store.user_by_email("p2admin@example.com")
    r = client.post(f"/ui/users/{target['id']}", data={"csrf_token": csrf_of(client),
                                                       "action": "projects", "all_projects": "1"})
    assert r.status_code == 303 and store.get_user(target["id"])["all_projects"] is True


# ---------------------------------------------------------------- review item 2


@pytest.mark.parametrize("method", ["POST", "PUT"])
def test_an_editor_cannot_create_group_types_through_a_flag(world, method):
    store, p1 = world["store"], world["p1"]
    store.create_group_type(p1["id"], "account")
    store.create_flag(p1["id"], {"key": "g", "bucket_by": "account", "conditions": [{}]})
    client, _ = sign_in(world["app"], "wide@example.com")
    headers = {"X-CSRF-Token": csrf_of(client)}
    body = {"key": "g" if method == "PUT" else "new", "bucket_by": "newtype",
            "create_group_types": True, "conditions": [{}]}
    if method == "PUT":
        body["version"] = 1
    r = client.open("/api/flags" + ("/g" if method == "PUT" else ""), method=method,
                    headers=headers, json=body)
    assert r.status_code == 403 and "admin" in r.get_json()["message"]
    assert [t["name"] for t in store.group_types(p1["id"])] == ["account"]
    # An existing type is fine for an editor; an admin (or the secret key) may create one.
    body["bucket_by"] = "account"
    r = client.open("/api/flags" + ("/g" if method == "PUT" else ""), method=method,
                    headers=headers, json=body)
    assert r.status_code in (200, 201)
    admin, _ = sign_in(world["app"], "root@example.com")
    r = admin.post("/api/flags", headers={"X-CSRF-Token": csrf_of(admin)}, json={
        "key": "by-admin", "bucket_by": "newtype", "create_group_types": True,
        "conditions": [{}]})
    assert r.status_code == 201 and "newtype" in {t["name"] for t in store.group_types(p1["id"])}


# ---------------------------------------------------------------- review item 4


def test_sign_in_answers_alike_for_unknown_held_up_and_wrong(world):
    """A real and an unknown email get the same answers, held up or not (both counted by
    the email typed); the limits themselves: tests/test_signin_limits.py."""
    app = world["app"]
    answers = {}
    for email in ("root@example.com", "nobody@example.com"):
        for _ in range(accounts.LIMITS.lock_after + 2):  # past the lock of the client
            _, r = sign_in(app, email, "wrong password!")
            answers.setdefault(email, []).append((r.status_code, _error_of(r)))
    assert answers["root@example.com"] == answers["nobody@example.com"]
    assert answers["root@example.com"][0] == (401, accounts.REFUSED)
    assert answers["root@example.com"][-1][0] == 429


def _error_of(r):
    return re.search(r'role="alert">([^<]*)<', r.get_data(as_text=True)).group(1).replace(
        "&#39;", "'")


def test_one_address_is_slowed_whatever_emails_it_tries(world):
    app = world["app"]
    spray = {"REMOTE_ADDR": "10.9.9.9"}
    for i in range(20):
        _, r = sign_in(app, f"user{i}@example.com", "wrong password!", environ_base=spray)
        assert r.status_code == 401
    _, r = sign_in(app, "p1viewer@example.com", environ_base=spray)
    assert r.status_code == 429 and "your address" in _error_of(r)
    _, r = sign_in(app, "p1viewer@example.com", environ_base={"REMOTE_ADDR": "10.9.9.8"})
    assert r.status_code == 303  # another address, and the account was never locked


# ---------------------------------------------------------------- review item 5


def test_a_one_time_password_is_forced_out(world):
    store = world["store"]
    _, temporary = accounts.create_user(store, "new@example.com", "admin")
    client, _ = sign_in(world["app"], "new@example.com", temporary)
    page = client.get("/ui/password").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    store.create_flag(world["p1"]["id"], {"key": "x", "conditions": [{}]})
    r = client.put("/api/flags/x", headers={"X-CSRF-Token": token},
                   json={"conditions": [], "version": 1})
    assert r.status_code == 403 and "/ui/password" in r.get_json()["message"]
    r = client.post("/ui/password", data={"csrf_token": token, "current": temporary,
                                          "password": temporary, "confirm": temporary})
    assert r.status_code == 200 and "not the one you have now" in r.get_data(as_text=True)
    assert store.user_by_email("new@example.com")["must_change_password"] is True
    assert client.get("/ui/").headers["Location"] == "/ui/password"


# ---------------------------------------------------------------- review item 7


def test_serve_trusts_the_proxies_of_forwarded_allow_ips(tmp_path):
    """Through a real `flagsvc serve`: its X-Forwarded-Proto makes the cookie Secure and its
    X-Forwarded-For is the address the sign-in limit counts — only from a named proxy."""
    import requests
    from stress.harness import Server

    from flagsvc.store import Store

    db = str(tmp_path / "flagsvc.db")
    store = Store(db)
    accounts.create_user(store, "a@example.com", "admin", PASSWORD)
    store.close()

    def sign_in_via(srv, client, password=PASSWORD, email="a@example.com"):
        return requests.post(srv.url + "/ui/signin", allow_redirects=False, timeout=60,
                             data={"email": email, "password": password},
                             headers={"X-Forwarded-Proto": "https",
                                      "X-Forwarded-For": f"198.51.100.9, {client}"})

    secure = {}
    for proxy in ("10.0.0.1", "127.0.0.0/8"):  # our requests come from 127.0.0.1
        srv = Server(db, workers=1, args=["--forwarded-allow-ips", proxy]).start(timeout=90)
        try:
            r = sign_in_via(srv, "203.0.113.5")
            assert r.status_code == 303, r.text
            secure[proxy] = "Secure" in r.headers["Set-Cookie"]
            if proxy.startswith("127."):
                for i in range(20):  # one client behind the proxy sprays emails
                    assert sign_in_via(srv, "203.0.113.5", "wrong password!",
                                       f"u{i}@example.com").status_code == 401
                assert sign_in_via(srv, "203.0.113.5").status_code == 429
                assert sign_in_via(srv, "203.0.113.6").status_code == 303  # not the others
        finally:
            srv.stop()
    assert secure == {"10.0.0.1": False, "127.0.0.0/8": True}


# ---------------------------------------------------------------- review item 11


@pytest.mark.parametrize("bad", ["/ui/\r\nSet-Cookie: x=1", "/ui/flags\n", "/ui/\x00", "/ui/\x7f"])
def test_control_characters_in_next_go_to_the_console_home(world, bad):
    client = world["app"].test_client()
    r = client.post("/ui/signin", data={"email": "root@example.com", "password": PASSWORD,
                                        "next": bad})
    assert r.status_code == 303 and r.headers["Location"] == "/ui/"
    page = client.get("/ui/signin?next=" + bad.replace("\r", "%0D").replace("\n", "%0A"))
    assert page.status_code == 200


# ---------------------------------------------------------------- review item 12


@pytest.mark.parametrize("headers, status", [
    ({"Origin": "https://evil.example.com"}, 403),
    ({"Origin": "null"}, 403),
    ({"Sec-Fetch-Site": "cross-site"}, 403),
    ({"Sec-Fetch-Site": "same-site", "Origin": "http://sub.localhost"}, 403),
    ({"Sec-Fetch-Site": "same-origin", "Origin": "http://localhost"}, 303),
    ({"Origin": "http://localhost"}, 303),
    ({}, 303),  # no browser: curl, a script
])
def test_sign_in_from_another_site_is_refused(world, headers, status):
    client = world["app"].test_client()
    r = client.post("/ui/signin", headers=headers,
                    data={"email": "root@example.com", "password": PASSWORD})
    assert r.status_code == status
    assert ("flagsvc_session" in r.headers.get("Set-Cookie", "")) == (status == 303)


# ---------------------------------------------------------------- review item 17


def test_the_audit_never_shows_part_of_a_secret(world):
    from flagsvc.store.projects import fingerprint

    store, p1 = world["store"], world["p1"]
    secret = store.rotate_token(p1["id"], "secret")
    app = world["app"].test_client()
    r = app.post("/api/flags", headers={"Authorization": f"Bearer {secret}"},
                 json={"key": "k", "conditions": [{}]})
    assert r.status_code == 201
    r = app.post("/api/project/tokens", headers={"Authorization": f"Bearer {secret}"},
                 json={"kind": "secret"})
    newer = r.get_json()["token"]
    viewer, _ = sign_in(world["app"], "p1viewer@example.com")
    entries = viewer.get("/api/audit").get_json()["entries"]
    page = viewer.get("/ui/audit").get_data(as_text=True)
    assert entries[1]["actor"] == f"secret key {fingerprint(secret)}"
    assert entries[0]["project"]["after"]["fingerprint"] == fingerprint(newer)
    for key in (secret, newer):
        random_part = key[4:12]  # after the fsk_ kind prefix
        assert random_part[:4] not in str(entries) and random_part[:4] not in page
    assert fingerprint(secret) in page


# ---------------------------------------------------------------- review item 18


def test_the_switcher_never_stores_a_project_the_user_may_not_open(world):
    """The check in the switcher itself (not only session_project's fallback on reading)."""
    store = world["store"]
    client, _ = sign_in(world["app"], "p1viewer@example.com")
    client.post("/ui/project", data={"csrf_token": csrf_of(client),
                                     "project_id": str(world["p2"]["id"])})
    user = store.user_by_email("p1viewer@example.com")
    (stored,) = store.conn().execute("SELECT project_id FROM sessions WHERE user_id = ?",
                                     (user["id"],)).fetchone()
    assert stored == world["p1"]["id"]


def test_a_disabled_users_session_is_refused_even_if_it_was_not_deleted(world):
    """session_by_token checks the user (update_user also deletes the sessions: this is the
    check for a user disabled any other way, e.g. by another process mid-request)."""
    store = world["store"]
    client, _ = sign_in(world["app"], "wide@example.com")
    assert client.get("/api/flags").status_code == 200
    with store.conn() as conn:
        conn.execute("UPDATE users SET disabled_at = 1 WHERE email = 'wide@example.com'")
    assert store.conn().execute("SELECT COUNT(*) FROM sessions").fetchone()[0] == 1
    assert client.get("/api/flags").status_code == 401
    assert client.get("/ui/").status_code == 303


# ---------------------------------------------------------------- review item 3


def test_group_type_and_user_changes_are_audited_with_their_actor(world):
    store, p1, p2 = world["store"], world["p1"], world["p2"]
    admin, _ = sign_in(world["app"], "root@example.com")
    token = csrf_of(admin)
    headers = {"X-CSRF-Token": token}
    assert admin.post("/api/group_types", headers=headers, json={"name": "org"}).status_code == 201
    assert admin.patch("/api/group_types/org", headers=headers,
                       json={"name": "account"}).status_code == 200
    assert admin.delete("/api/group_types/account", headers=headers).status_code == 200
    admin.post("/ui/users", data={"csrf_token": token, "email": "n@example.com",
                                  "role": "viewer", "project": [str(p1["id"])]})
    new = store.user_by_email("n@example.com")
    for data in ({"action": "role", "role": "editor"}, {"action": "disable"},
                 {"action": "projects", "project": [str(p2["id"])]}, {"action": "reset"}):
        admin.post(f"/ui/users/{new['id']}", data={"csrf_token": token, **data})
    me = "user root@example.com"
    p1_log = [(e["action"], e["actor"], e["project"]) for e in
              admin.get("/api/audit?limit=100").get_json()["entries"]][::-1]
    assert p1_log == [
        ("group_type_created", me, {"before": None, "after": {"name": "org"}}),
        ("group_type_renamed", me, {"before": {"name": "org"}, "after": {"name": "account"}}),
        ("group_type_deleted", me, {"before": {"name": "account", "groups": 0},
                                    "after": None}),
        ("user_created", me, {"before": None, "after": {
            "email": "n@example.com", "role": "viewer", "projects": [p1["id"]]}}),
        ("user_updated", me, {"before": {"email": "n@example.com", "role": "viewer"},
                              "after": {"email": "n@example.com", "role": "editor"}}),
        ("user_updated", me, {"before": {"email": "n@example.com", "disabled": False},
                              "after": {"email": "n@example.com", "disabled": True}}),
        ("user_updated", me, {"before": {"email": "n@example.com", "projects": [p1["id"]]},
                              "after": {"email": "n@example.com", "projects": [p2["id"]]}}),
    ]  # the reset is p2's: the user no longer opens p1
    p2_actions = [e["action"] for e in store.audit_log(p2["id"])]
    assert p2_actions[:2] == ["user_password_reset", "user_updated"]
    page = admin.get("/ui/audit").get_data(as_text=True)
    assert "user updated" in page and "group type renamed" in page
    assert "n@example.com" in page and "$argon2" not in page


def test_cli_user_changes_are_audited_as_cli(world, db_path, monkeypatch, capsys):
    from flagsvc.cli import main

    monkeypatch.setenv("FLAGSVC_DATABASE", db_path)
    assert main(["user", "create", "c@example.com", "--role", "viewer"]) == 0
    assert main(["user", "reset", "c@example.com", "--role", "editor"]) == 0
    assert main(["user", "disable", "c@example.com"]) == 0
    entries = world["store"].audit_log(world["p1"]["id"])
    assert [(e["action"], e["actor"]) for e in entries[:4]] == [
        ("user_updated", "cli"), ("user_updated", "cli"), ("user_password_reset", "cli"),
        ("user_created", "cli")]


# ---------------------------------------------------------------- review item 9


def test_a_flag_keyed_new_opens_and_the_new_flag_form_lives_elsewhere(world):
    world["store"].create_flag(world["p1"]["id"], {"key": "new", "name": "Called new",
                                                   "conditions": [{}]})
    client, _ = sign_in(world["app"], "wide@example.com")
    page = client.get("/ui/flags/new").get_data(as_text=True)
    assert "Called new" in page and "readonly" in page.split('id="f-key"')[1][:80]
    form = client.get("/ui/new-flag")
    assert form.status_code == 200 and "Called new" not in form.get_data(as_text=True)
    assert 'href="/ui/new-flag"' in client.get("/ui/").get_data(as_text=True)


# ---------------------------------------------------------------- review item 10


def test_group_search_by_property_matches_numbers_and_booleans(world):
    from flagsvc.ingest.model import Call

    store, p1 = world["store"], world["p1"]
    store.create_group_type(p1["id"], "account")
    for key, props in (("a-num", {"seats": 5, "vip": True}), ("a-text", {"seats": "5"}),
                       ("a-other", {"seats": 6, "vip": False})):
        store.ingest(p1["id"], [Call("group", "m-" + key, time.time(), group_type="account",
                                     group_key=key, group_set=props)])
    client, _ = sign_in(world["app"], "p1viewer@example.com")

    def found(prop, value):
        page = client.get(f"/ui/groups?type=account&prop={prop}&value={value}")
        return sorted(re.findall(r">(a-[a-z]+)<", page.get_data(as_text=True)))

    assert found("seats", "5") == ["a-num", "a-text"]
    assert found("vip", "true") == ["a-num"]
    assert found("vip", "false") == ["a-other"]
    assert found("seats", "7") == []


# ---------------------------------------------------------------- review item 15


def test_cli_changes_a_users_projects(world, db_path, monkeypatch, capsys):
    from flagsvc.cli import main

    store, p1, p2 = world["store"], world["p1"], world["p2"]
    monkeypatch.setenv("FLAGSVC_DATABASE", db_path)
    assert main(["user", "projects", "wide@example.com", "--project", str(p2["id"])]) == 0
    user = store.user_by_email("wide@example.com")
    assert user["all_projects"] is False and store.user_project_ids(user) == [p2["id"]]
    assert main(["user", "projects", "wide@example.com", "--all"]) == 0
    assert store.user_by_email("wide@example.com")["all_projects"] is True
    assert main(["user", "projects", "wide@example.com", "--project", "999"]) == 1
    assert store.user_by_email("wide@example.com")["all_projects"] is True
    assert [e["actor"] for e in store.audit_log(p1["id"])][:2] == ["cli", "cli"]


def test_every_page_links_to_changing_ones_own_password(world):
    client, _ = sign_in(world["app"], "p1viewer@example.com")
    assert 'href="/ui/password"' in client.get("/ui/").get_data(as_text=True)
    page = client.get("/ui/password").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    r = client.post("/ui/password", data={"csrf_token": token, "current": PASSWORD,
                                          "password": "another long one", "confirm":
                                          "another long one"})
    assert r.status_code == 303
    assert accounts.verify(world["store"], "p1viewer@example.com", "another long one")


# ---------------------------------------------------------------- review item 16


def test_the_switcher_waits_for_its_button_and_operators_are_not_aliases(world):
    from flagsvc.console.data import editor_context
    from flagsvc.engine import ALIASES, OPERATORS

    client, _ = sign_in(world["app"], "p1viewer@example.com")
    page = client.get("/ui/").get_data(as_text=True)
    switcher = page.split('id="project-switch"')[1].split(">")[0]
    assert "autosubmit" not in switcher  # an arrow key must not switch project (WCAG 3.2.2)
    with world["app"].test_request_context():
        operators = editor_context(world["p1"]["id"])["operators"]
    assert sorted(operators) == sorted(OPERATORS)
    assert not set(operators) & (set(ALIASES) - set(OPERATORS))


# ---------------------------------------------------------------- review item 8


def test_group_tree_is_paged_and_loaded_a_level_at_a_time(world):
    """A group with thousands of children: its profile shows one page of them (each
    marked when it has children of its own), never the whole tree; /ui/tree gives the
    rest a page at a time, every child once, and the next level only when asked."""
    from flagsvc.console import data
    from flagsvc.ingest.model import Call

    store, p1 = world["store"], world["p1"]
    for t in ("account", "workspace", "project"):
        store.create_group_type(p1["id"], t)
    n = 3000
    calls = [Call("group", "m-a", time.time(), group_type="account", group_key="acct")]
    for w in range(n):
        calls.append(Call("group", f"m-w{w}", time.time(), group_type="workspace",
                          group_key=f"ws-{w:04}", parent_key="acct", parent_type="account"))
    for p in range(n):  # under ws-0000, typeless parent
        calls.append(Call("group", f"m-p{p}", time.time(), group_type="project",
                          group_key=f"pr-{p:04}", parent_key="ws-0000"))
    calls.append(Call("group", "m-x", time.time(), group_type="project", group_key="pr-ws1",
                      parent_key="ws-0001", parent_type="workspace"))
    for i in range(0, len(calls), 1000):
        store.ingest(p1["id"], calls[i:i + 1000])
    client, _ = sign_in(world["app"], "p1viewer@example.com")
    r = client.get("/ui/groups/account/acct")
    page = r.get_data(as_text=True)
    assert len(r.data) < 40_000  # was 262 KB for a tree of this kind
    assert "ws-0049" in page and "ws-0050" not in page and "pr-0000" not in page
    assert page.count("tree-toggle") == 2  # ws-0000 and ws-0001 have children
    assert "3,000 child groups, 50 at a time" in page
    assert 'after_type=workspace&amp;after_key=ws-0049' in page  # the next page, without JS
    assert "ws-0050" in client.get("/ui/groups/account/acct?after_type=workspace&"
                                   "after_key=ws-0049").get_data(as_text=True)

    def walk(type_, key):
        seen, after = [], {}
        while True:
            got = client.get("/ui/tree", query_string={"type": type_, "key": key, **after})
            body = got.get_json()
            assert got.status_code == 200 and len(body["children"]) <= data.TREE_PAGE
            seen += [c["group_key"] for c in body["children"]]
            if body["next"] is None:
                return seen, body
            after = body["next"]

    workspaces, _ = walk("account", "acct")
    assert workspaces == [f"ws-{w:04}" for w in range(n)]
    projects, _ = walk("workspace", "ws-0000")
    assert projects == [f"pr-{p:04}" for p in range(n)]
    first = client.get("/ui/tree?type=workspace&key=ws-0001").get_json()["children"]
    assert first == [{"group_type": "project", "group_key": "pr-ws1", "has_children": False,
                      "url": "/ui/groups/project/pr-ws1"}]
    assert client.get("/ui/tree?type=project&key=pr-0001").get_json() == {
        "children": [], "next": None}


# ------------------------------------------- a user with no project (wt/3's report)


def test_a_user_with_no_project_gets_a_403_page_that_still_offers_sign_out(world):
    store = world["store"]
    accounts.create_user(store, "nowhere@example.com", "viewer", PASSWORD, projects=[])
    client, _ = sign_in(world["app"], "nowhere@example.com")
    for path in ("/ui/", "/ui/groups", "/ui/flags/anything"):
        r = client.get(path)
        page = r.get_data(as_text=True)
        assert r.status_code == 403, (path, r.status_code)
        assert "you have no project" in page
        assert 'action="/ui/signout"' in page and 'name="csrf_token"' in page
