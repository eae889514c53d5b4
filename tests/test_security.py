"""Isolation and auth (issue #5 item 5): every route of the app's url_map refuses unknown,
revoked and wrong-kind tokens; a project's flags, groups and persons are invisible to another
project on every admin route; the secret key is compared in constant time, never logged;
token rotation with a grace period needs no downtime."""

from __future__ import annotations

import base64
import hmac
import json
import re
import subprocess
import threading
import time

import pytest
import requests
from stress.harness import (
    API_TOKEN,
    SECRET_KEY,
    Server,
    Tally,
    admin,
    create_flag,
    decide_loop,
    flagsvc_bin,
    run_threads,
)

from flagsvc.app import create_app
from flagsvc.ingest.model import Call

# Routes that need no token and show nothing of any project.
OPEN = {"/static/<path:name>", "/healthz", "/readyz", "/metrics", "/api/openapi.json",
        "/ui/static/<path:filename>", "/ui/signin", "/"}
TOKEN_IN_PATH = "__token__"
MARK = "alpha"  # every name of project A contains it; B's responses must not
DATA = "s3cr3t"  # in every stored value of project A (answers may echo a requested name)


@pytest.fixture
def world(db_path):
    """Project A with a flag, a group, a person and an audit trail; project B with a flag of
    the same key; project C whose tokens were rotated with no grace (revoked)."""
    app = create_app({"DATABASE": db_path, "LOG_LEVEL": "WARNING"})
    store = app.extensions["flagsvc"].store
    a, b, c = (store.create_project(n) for n in ("A", "B", "C"))
    now = time.time()
    store.ingest(a["id"], [
        Call("group", "a1", now, group_type="organization", group_key=f"{MARK}-org",
             group_set={"plan": f"{DATA}-plan"}),
        Call("identify", "a2", now, distinct_id=f"{MARK}-user", person_set={"email": f"{DATA}@a"}),
    ])
    store.ingest(b["id"], [Call("group", "b1", now, group_type="organization", group_key="b-org",
                                group_set={"plan": "b-plan"})])
    flag_a = store.create_flag(a["id"], {"key": f"{MARK}-flag", "bucket_by": "organization",
                                         "conditions": [{}]})
    store.create_flag(a["id"], {"key": "shared", "description": f"{DATA} description",
                                "conditions": [{}]})
    store.create_flag(b["id"], {"key": "shared", "description": "b", "conditions": [{}]})
    store.update_flag(a["id"], f"{MARK}-flag", {"description": f"{DATA} edit"}, None)
    revoked_api, revoked_secret = c["api_token"], c["secret_key"]
    store.rotate_token(c["id"], "api", grace_seconds=0)
    store.rotate_token(c["id"], "secret", grace_seconds=0)
    return {"app": app, "client": app.test_client(), "store": store, "a": a, "b": b,
            "flag_a": flag_a, "revoked_api": revoked_api, "revoked_secret": revoked_secret}


def concrete_paths(app, world):
    """(rule, method, path) for every rule and method, path parameters filled with A's ids."""
    values = {"ref": str(world["flag_a"]["id"]), "group_type": "organization",
              "group_key": f"{MARK}-org", "distinct_id": f"{MARK}-user", "key": f"{MARK}-flag",
              "token": TOKEN_IN_PATH, "user_id": "1"}
    out = []
    for rule in app.url_map.iter_rules():
        if rule.rule in OPEN:
            continue
        paths = [rule.rule]
        if m := re.search(r"<any\(([^)]*)\):\w+>", rule.rule):
            paths = [rule.rule.replace(m.group(0), opt) for opt in m.group(1).split(",")]
        for name, value in values.items():
            paths = [re.sub(rf"<(?:\w+:)?{name}>", value, p) for p in paths]
        assert all("<" not in p for p in paths), paths
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            out.extend((rule.rule, method, p) for p in paths)
    return out


def public_request(client, method, path, token):
    """A well-formed ingestion / decide request whose only problem can be its token (in
    every place a client may put it: body fields, Basic auth, ?token=)."""
    event = {"event": "e", "distinct_id": "u", "type": "track", "userId": "u", "messageId": "m",
             "uuid": "00000000-0000-4000-8000-000000000001"}
    body = {"api_key": token, "token": token, "writeKey": token, **event, "batch": [event]}
    basic = base64.b64encode(f"{token}:".encode()).decode()
    return client.open(path, method=method, json=body, query_string={"token": token},
                       headers={"Authorization": f"Basic {basic}"})


def admin_request(client, method, path, token):
    kwargs = {"json": {}} if method in ("POST", "PUT", "PATCH") else {}
    return client.open(path, method=method, headers={"Authorization": f"Bearer {token}"},
                       **kwargs)


def test_every_route_is_classified(world):
    routes = concrete_paths(world["app"], world)
    assert len(routes) > 60
    assert {r for r, _, _ in routes if r.startswith("/api/")}  # admin
    assert {r for r, _, _ in routes if not r.startswith("/api/")}  # public


AMPLITUDE_ROUTES = ("/2/httpapi", "/identify", "/groupidentify")


@pytest.mark.parametrize("who", ["unknown", "revoked", "wrong_kind", "missing"])
def test_every_route_refuses_bad_tokens_and_stores_nothing(world, who):
    client, a = world["client"], world["a"]
    before = _counts(world["store"])
    for rule, method, path in concrete_paths(world["app"], world):
        if rule.startswith("/ui/"):  # the console: no session, so the sign-in page
            r = client.open(path, method=method, headers={"Authorization": f"Bearer {token}"}
                            if (token := a["secret_key"]) and who == "wrong_kind" else {})
            assert r.status_code == 303, (who, method, path, r.status_code)
            assert r.headers["Location"].startswith("/ui/signin"), r.headers["Location"]
            assert DATA not in r.get_data(as_text=True)  # (the path it was asked is echoed)
            continue
        is_admin = rule.startswith("/api/")
        token = {"unknown": "fsk_unknown" if is_admin else "phc_unknown",
                 "revoked": world["revoked_secret"] if is_admin else world["revoked_api"],
                 # the public token on admin routes, the secret key on public ones
                 "wrong_kind": a["api_token"] if is_admin else a["secret_key"],
                 "missing": ""}[who]
        if TOKEN_IN_PATH in path:  # posthog-js's /array/<token>/config: the token is the path
            if not token:
                continue  # no such URL (a 404 of the router)
            path = path.replace(TOKEN_IN_PATH, token)
        r = (admin_request if is_admin else public_request)(client, method, path, token)
        expected = {403} if (who == "wrong_kind" and is_admin) else {401}
        if rule.rstrip("/") in AMPLITUDE_ROUTES:  # as Amplitude answers: its SDKs then drop
            expected = {400}  # the events (Invalid API key / missing_field api_key)
        assert r.status_code in expected, (who, method, path, r.status_code, r.get_data()[:200])
        body = r.get_json()
        # each tool answers in its own shape: flagsvc's {code, message}, Amplitude's
        # {code, error}, Mixpanel's bare 0 (its SDKs send verbose=1 to read a reason)
        if body is None or not isinstance(body, dict):
            assert r.get_data() == b"0", (path, r.get_data()[:200])
        else:
            assert body["code"] and (body.get("message") or body.get("error")), body
            if rule.rstrip("/") in AMPLITUDE_ROUTES:
                assert (body["error"].startswith("Invalid API key: ") if token
                        else body["missing_field"] == "api_key"), body
        assert MARK not in r.get_data(as_text=True)
    assert _counts(world["store"]) == before


def _counts(store):
    conn = store.conn()
    return {t: conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]
            for t in ("events", "groups", "persons", "flags", "audit_log", "group_types")}


def test_another_projects_secret_sees_and_changes_nothing_on_any_admin_route(world):
    """B's secret key on every admin route, with A's flag id / group / person in the path:
    404 where a path names A's data, and nothing of A in any answer or in A's rows after."""
    client, b, store, a = world["client"], world["b"], world["store"], world["a"]
    before = (store.list_flags(a["id"], include_deleted=True), _counts(store))
    bodies = {"/api/flags/explain": {"flag": {"key": "x", "bucket_by": "organization",
                                              "conditions": [{"properties": [
                                                  {"type": "group", "group_type": "organization",
                                                   "key": "plan", "operator": "is_set"}]}]},
                                     "groups": {"organization": f"{MARK}-org"},
                                     "distinct_id": f"{MARK}-user"},
              "/api/flags/preview": {"key": "x", "bucket_by": "organization", "conditions": [{}]}}
    seen = 0
    for rule, method, path in concrete_paths(world["app"], world):
        if not rule.startswith("/api/"):
            continue
        kwargs = {"json": bodies.get(path, {"description": "hijack", "version": 1,
                                            "distinct_id": f"{MARK}-user",
                                            "groups": {"organization": f"{MARK}-org"}})} \
            if method in ("POST", "PUT", "PATCH") else {}
        r = client.open(path, method=method, headers=admin(b["secret_key"]), **kwargs)
        text = r.get_data(as_text=True)
        assert r.status_code < 500, (method, path, text[:300])
        assert DATA not in text, (method, path, text[:300])
        if "<" not in rule and method == "GET":  # lists name nothing of A's
            assert MARK not in text, (method, path, text[:300])
        # (B has an `organization` group type of its own: that path names B's data.)
        if ("<" in rule and rule != "/api/flags/<ref>/explain" or rule.endswith("<ref>/explain")
                ) and rule != "/api/group_types/<group_type>":
            assert r.status_code == 404, (method, path, r.status_code, text[:200])
        seen += 1
    assert seen > 20
    # Same key in both projects: each sees its own.
    got = client.get("/api/flags/shared", headers=admin(b["secret_key"])).get_json()
    assert got["description"] == "b"
    after_flags = store.list_flags(a["id"], include_deleted=True)
    assert after_flags == before[0]
    counts = _counts(store)
    assert counts["flags"] == before[1]["flags"] and counts["audit_log"] == before[1]["audit_log"]
    # And the public side: B's api token decides on B's flags only.
    r = client.post("/flags/?v=2", json={"api_key": b["api_token"], "distinct_id": "u",
                                         "groups": {"organization": f"{MARK}-org"}})
    assert set(r.get_json()["flags"]) == {"shared"}


def test_secret_key_comparison_uses_hmac_compare_digest(world, monkeypatch):
    """Tokens are looked up by SHA-256 digest and the digests compared with
    hmac.compare_digest, so timing reveals nothing about the key."""
    import flagsvc.store.projects as projects

    calls = []
    real = hmac.compare_digest

    def spy(x, y):
        calls.append((x, y))
        return real(x, y)

    monkeypatch.setattr(projects.hmac, "compare_digest", spy)
    a = world["a"]
    assert world["store"].project_for_token(a["secret_key"], "secret")["id"] == a["id"]
    assert calls == [(projects.token_hash(a["secret_key"]),) * 2]
    calls.clear()
    r = world["client"].get("/api/project", headers=admin(a["secret_key"]))
    assert r.status_code == 200 and len(calls) == 1
    assert a["secret_key"] not in r.get_data(as_text=True)


def test_secret_key_never_logged_nor_stored_in_clear_by_a_real_server(tmp_path):
    """A gunicorn server (access log on) serves admin calls, refused public calls carrying
    the secret key, errors and a rotation: the key appears in no log line and no db byte."""
    srv = Server(str(tmp_path / "flagsvc.db"), workers=2)
    with srv:
        create_flag(srv.url)
        for path in ("/api/flags", "/api/flags/load-flag", "/api/audit", "/api/project",
                     "/api/flags/definitions", "/api/flags/nope"):
            requests.get(srv.url + path, headers=admin(), timeout=10)
        requests.patch(srv.url + "/api/flags/load-flag", headers=admin(), json={"bad": 1},
                       timeout=10)
        r = requests.post(srv.url + "/flags/?v=2", json={"api_key": SECRET_KEY}, timeout=10)
        assert r.status_code == 401
        r = requests.post(srv.url + "/batch/", json={"api_key": SECRET_KEY, "batch": [
            {"event": "e", "distinct_id": "u"}]}, timeout=10)
        assert r.status_code == 401
        r = requests.post(srv.url + f"/flags/?v=2&token={SECRET_KEY}", json={}, timeout=10)
        assert r.status_code == 401
        r = requests.post(srv.url + "/v1/track", auth=(SECRET_KEY, ""), timeout=10,
                          json={"userId": "u", "event": "e"})
        assert r.status_code == 401
        out = subprocess.run([flagsvc_bin(), "project", "rotate-secret-key", "1", "--grace", "5",
                              "--json"], env=srv.env, capture_output=True, text=True, timeout=30)
        new_secret = json.loads(out.stdout)["secret_key"]
        assert requests.get(srv.url + "/api/project", headers=admin(new_secret),
                            timeout=10).status_code == 200
        # While the server runs, its WAL holds the recent writes (a clean shutdown folds it
        # into the database file and removes it): read both now, and the database after.
        running = db_bytes(tmp_path)
        assert {"flagsvc.db", "flagsvc.db-wal"} <= running.keys()
    logs = srv.logs()
    assert "/api/flags/definitions" in logs  # the access log was captured
    assert SECRET_KEY not in logs and new_secret not in logs
    stopped = db_bytes(tmp_path)
    assert "flagsvc.db" in stopped
    for data in [*running.values(), *stopped.values()]:
        assert SECRET_KEY.encode() not in data and new_secret.encode() not in data


def db_bytes(folder) -> dict[str, bytes]:
    """The bytes of the database and its journal and lock files."""
    return {p.name: p.read_bytes() for p in folder.glob("flagsvc.db*") if p.is_file()}


def test_token_rotation_under_load_needs_no_downtime(tmp_path):
    """Decide keeps running with the old api token while `flagsvc project rotate-api-token`
    runs with a grace period: zero failures, and the new token works at once. Then a rotation
    with --grace 0 revokes the old one within the token cache time."""
    srv = Server(str(tmp_path / "flagsvc.db"), workers=4)
    with srv:
        create_flag(srv.url)
        tally = Tally()
        stop = threading.Event()
        threads = run_threads([(decide_loop, (srv.url, tally, stop, time.monotonic() + 20,
                                              5000, API_TOKEN)) for _ in range(4)])
        time.sleep(1.0)
        out = subprocess.run([flagsvc_bin(), "project", "rotate-api-token", "1", "--grace",
                              "60", "--json"], env=srv.env, capture_output=True, text=True,
                             timeout=30)
        assert out.returncode == 0, out.stderr
        new = json.loads(out.stdout)["api_token"]
        r = requests.post(srv.url + "/flags/?v=2", json={"api_key": new, "distinct_id": "u"},
                          timeout=10)
        assert r.status_code == 200 and "load-flag" in r.json()["flags"]
        sent = tally.total("decide")
        time.sleep(2.0)
        stop.set()
        for t in threads:
            t.join(timeout=30)
        assert tally.total("decide") > sent > 0
        assert tally.status["decide"] == {200: tally.total("decide")}, tally.status

        out = subprocess.run([flagsvc_bin(), "project", "rotate-api-token", "1", "--grace", "0",
                              "--json"], env=srv.env, capture_output=True, text=True, timeout=30)
        newest = json.loads(out.stdout)["api_token"]
        time.sleep(1.2)  # the workers' token cache (at most 1 s)
        for old in (API_TOKEN, new):
            r = requests.post(srv.url + "/flags/?v=2", json={"api_key": old}, timeout=10)
            assert r.status_code == 401
        assert requests.post(srv.url + "/flags/?v=2", json={"api_key": newest},
                             timeout=10).status_code == 200


def test_method_not_allowed_keeps_its_allow_header(client):
    r = client.delete("/healthz")
    assert r.status_code == 405 and r.is_json
    assert "GET" in r.headers["Allow"]
