"""The web console in headless Chromium (Debian's, through Python playwright) against a real
`flagsvc serve` (gunicorn workers): sign in; create a group-bucketed flag with a
group-property condition through the form while the blast radius follows the rollout; save;
the stock `posthog` client gets the new answer; two sessions edit one flag and the second
sees the conflict; a viewer can change nothing (hidden in the page, refused by the server);
a forged cross-site form post is refused; markup ingested with the stock Segment client is
shown as text. Screenshots of the main pages go to docs/screenshots/ (README) only with
FLAGSVC_UPDATE_SCREENSHOTS=1, else to a temporary folder."""

from __future__ import annotations

import functools
import http.server
import os
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import quote

import pytest
import requests
from posthog import Posthog
from segment.analytics import Client
from stress.harness import API_TOKEN, Server, admin, flagsvc_bin

from flagsvc.engine import bucket
from flagsvc.store.projects import fingerprint
from tests.capabilities import chromium_browser

SHOTS = Path(__file__).resolve().parent.parent / "docs" / "screenshots"
PASSWORD = "a long console password"
USERS = {"admin@example.com": "admin", "editor@example.com": "editor",
         "viewer@example.com": "viewer"}
XSS = '<img src=x onerror="window.__xss = 1">'
ACCOUNTS = [f"acct-{i:02d}" for i in range(40)]  # even ones on the enterprise plan
ENTERPRISE = [a for i, a in enumerate(ACCOUNTS) if i % 2 == 0]


@pytest.fixture(scope="module")
def console(tmp_path_factory):
    """A served database with account > workspace > project groups sent by the stock
    Segment client (one account's name is markup), and three users made with the CLI."""
    srv = Server(str(tmp_path_factory.mktemp("console") / "flagsvc.db"), workers=2)
    srv.start()
    try:
        assert "flagsvc user create" in srv.logs()  # the first start says how to begin
        for gtype in ("account", "workspace", "project"):
            r = requests.post(srv.url + "/api/group_types", headers=admin(),
                              json={"name": gtype}, timeout=10)
            assert r.status_code in (200, 201), r.text
        segment = Client(API_TOKEN, host=srv.url, sync_mode=True)
        for i, key in enumerate(ACCOUNTS):
            segment.group(f"u{i}", key, {"group_type": "account", "name": f"Account {i}",
                                         "plan": "enterprise" if i % 2 == 0 else "free"})
        segment.group("u1", "acct-evil", {"group_type": "account", "name": XSS, "plan": XSS})
        segment.group("u1", "ws-1", {"group_type": "workspace", "parent_group_id": "acct-00"})
        segment.group("u2", "proj-1", {"group_type": "project", "parent_group_id": "ws-1",
                                       "parent_group_type": "workspace"})
        segment.identify("user-42", {"email": "jane@acme.io"})
        segment.track("user-42", "Report Viewed", {"report": "q1"},
                      context={"groupId": "proj-1", "groupType": "project"})
        for email, role in USERS.items():
            done = subprocess.run([flagsvc_bin(), "user", "create", email, "--role", role,
                                   "--password-stdin"], input=PASSWORD + "\n", env=srv.env,
                                  capture_output=True, text=True, timeout=30)
            assert done.returncode == 0, done.stderr
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def browser():
    with chromium_browser() as b:
        yield b


def signed_in(browser, console, email, **context):
    # bypass_csp: playwright's own waits evaluate strings, which the console's CSP refuses;
    # it also means the escaping tests below hold without the CSP's help
    ctx = browser.new_context(bypass_csp=True, **context)
    page = ctx.new_page()
    page.errors = []  # uncaught exceptions of the console's scripts
    page.on("pageerror", lambda e: page.errors.append(str(e)))
    page.goto(console.url + "/ui/")
    assert "/ui/signin" in page.url  # not signed in yet: the sign-in page
    page.fill("#email", email)
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(console.url + "/ui/")
    return page


def close(page):
    assert page.errors == [], page.errors
    page.context.close()


def updating_screenshots() -> bool:
    """FLAGSVC_UPDATE_SCREENSHOTS=1 (or the older FLAGSVC_SCREENSHOTS=1) renews the README's
    committed images; any other run writes its screenshots to a temporary folder, so the
    checkout stays clean (a missing image is tests/test_readme.py's failure, not made here)."""
    return any(os.environ.get(v) == "1" for v in ("FLAGSVC_UPDATE_SCREENSHOTS",
                                                    "FLAGSVC_SCREENSHOTS"))


def shot_path(name: str) -> Path:
    if updating_screenshots():
        return SHOTS / f"{name}.png"
    return Path(tempfile.gettempdir()) / "flagsvc-screenshots" / f"{name}.png"


def test_an_ordinary_run_leaves_the_committed_screenshots_alone(monkeypatch):
    for var in ("FLAGSVC_UPDATE_SCREENSHOTS", "FLAGSVC_SCREENSHOTS"):
        monkeypatch.delenv(var, raising=False)
    assert SHOTS not in shot_path("flags").parents
    monkeypatch.setenv("FLAGSVC_UPDATE_SCREENSHOTS", "1")
    assert shot_path("flags") == SHOTS / "flags.png"


def shot(page, name):
    """A full-page screenshot: into docs/screenshots/ only when renewing them, else into
    the temporary folder (still checked: a page, not a blank image)."""
    target = shot_path(name)
    target.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(target), full_page=True)
    assert target.stat().st_size > 10_000  # a page, not a blank image


def open_editor(page, url):
    page.goto(url)
    page.wait_for_selector("#flag-form[data-ready]")  # its script has built the form


def wait_blast(page, enabled):
    page.wait_for_function(
        "n => { const b = document.getElementById('blast');"
        " return b.dataset.state === 'ready' && b.dataset.enabled === String(n); }",
        arg=enabled, timeout=10_000)


def in_rollout(key, pct):
    return [a for a in ENTERPRISE if bucket(key, a) <= pct]


def eventually(check, seconds=5.0):
    deadline = time.monotonic() + seconds
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.1)


def test_editor_creates_a_group_flag_watching_the_blast_radius(browser, console):
    page = signed_in(browser, console, "editor@example.com")
    page.click("text=New flag")
    page.wait_for_url(console.url + "/ui/new-flag")
    page.wait_for_selector("#flag-form[data-ready]")
    page.fill("#f-key", "new-billing")
    page.fill("#f-name", "New billing page")
    page.select_option("#f-bucket", "account")
    assert "account (bucketed here)" in page.text_content("#hierarchy")
    page.click("text=Add property filter")
    assert page.input_value("#c0p0-type") == "group"
    assert page.input_value("#c0p0-gtype") == "account"
    # the key picker offers what ingestion stored for accounts
    options = page.eval_on_selector_all("#c0p0-keys option", "os => os.map(o => o.value)")
    assert {"plan", "name"} <= set(options)
    page.fill("#c0p0-key", "plan")
    page.fill("#c0p0-value", "enterprise")
    # each checkbox says which filter it is about (review item 16)
    assert page.get_by_label("not: negate filter 1 of condition 1").count() == 1
    assert page.get_by_label("ignore case in filter 1 of condition 1").count() == 1
    wait_blast(page, len(ENTERPRISE))  # rollout 100: every enterprise account
    page.fill("#c0-rollout", "30")
    expected = in_rollout("new-billing", 30)
    assert 0 < len(expected) < len(ENTERPRISE)
    wait_blast(page, len(expected))
    samples = page.eval_on_selector_all("#blast tr[data-variant=true] a",
                                        "as => as.map(a => a.textContent)")
    assert samples and set(samples) <= set(expected)
    # payloads are checked as JSON before the flag can be saved
    page.fill("#pl0", "{not json")
    assert page.is_disabled("#save")
    assert "not valid JSON" in page.text_content("#form-errors")
    page.fill("#pl0", '{"color": "green"}')
    assert page.is_enabled("#save")
    shot(page, "flag-editor")
    page.click("#save")
    page.wait_for_url(console.url + "/ui/flags/new-billing")

    posthog = Posthog(API_TOKEN, host=console.url)
    outside = next(a for a in ENTERPRISE if a not in expected)
    assert posthog.feature_enabled("new-billing", "anyone", groups={"account": expected[0]})
    assert not posthog.feature_enabled("new-billing", "anyone", groups={"account": outside})
    assert posthog.get_feature_flag_payload("new-billing", "anyone",
                                            groups={"account": expected[0]}) == {"color": "green"}

    # raising the rollout asks for confirmation, then the stock client sees it
    wait_blast(page, len(expected))
    page.fill("#c0-rollout", "100")
    wait_blast(page, len(ENTERPRISE))
    page.click("#save")
    page.wait_for_selector("#confirm[open]")
    assert "from 30 % to 100 %" in page.text_content("#confirm-text")
    page.click("#confirm-ok")
    page.wait_for_function("document.getElementById('form-status').textContent"
                           ".includes('Saved version 2')")
    assert eventually(lambda: posthog.feature_enabled("new-billing", "anyone",
                                                      groups={"account": outside}))
    # switching it off asks too; cancelling saves nothing
    page.uncheck("#f-active")
    page.click("#save")
    page.wait_for_selector("#confirm[open]")
    assert "Switch new-billing off" in page.text_content("#confirm-text")
    page.click("#confirm-cancel")
    assert requests.get(console.url + "/api/flags/new-billing", headers=admin(),
                        timeout=10).json()["version"] == 2
    page.check("#f-active")

    page.goto(console.url + "/ui/")
    assert "by user editor@example.com" in page.text_content("#flags-table")
    shot(page, "flags")
    page.goto(console.url + "/ui/audit")
    assert "user editor@example.com" in page.text_content("#audit")
    shot(page, "audit")
    entry = requests.get(console.url + "/api/audit?limit=1", headers=admin(),
                         timeout=10).json()["entries"][0]
    assert entry["actor"] == "user editor@example.com" and entry["flag_key"] == "new-billing"
    close(page)


def test_explain_says_why_a_user_of_a_project_gets_the_flag(browser, console):
    r = requests.post(console.url + "/api/flags", headers=admin(), timeout=10, json={
        "key": "explained", "bucket_by": "account", "conditions": [{"properties": [
            {"type": "group", "group_type": "account", "key": "plan", "operator": "exact",
             "value": ["enterprise"]}]}]})
    assert r.status_code == 201, r.text
    page = signed_in(browser, console, "viewer@example.com")
    open_editor(page, console.url + "/ui/flags/explained")
    page.fill("#x-distinct", "user-42")
    page.select_option("#x-type", "project")
    page.fill("#x-key", "proj-1")
    page.click("text=Why this answer?")
    page.wait_for_selector("#explain dl")
    text = page.text_content("#explain")
    assert "condition_match" in text and "acct-00" in text  # proj-1 > ws-1 > acct-00
    assert "project proj-1" in text
    close(page)


def test_delete_and_restore_from_the_editor(browser, console):
    r = requests.post(console.url + "/api/flags", headers=admin(), timeout=10,
                      json={"key": "to-delete", "conditions": [{}]})
    assert r.status_code == 201, r.text
    page = signed_in(browser, console, "editor@example.com")
    open_editor(page, console.url + "/ui/flags/to-delete")
    page.click("#delete")
    page.wait_for_selector("#confirm[open]")
    assert page.text_content("#confirm-ok") == "Yes, delete"
    page.click("#confirm-ok")
    page.wait_for_url(console.url + "/ui/?state=deleted")
    assert "to-delete" in page.text_content("#flags-table")
    assert requests.get(console.url + "/api/flags/to-delete", headers=admin(),
                        timeout=10).json()["deleted"] is True
    open_editor(page, console.url + "/ui/flags/to-delete")
    assert page.locator("#save").count() == 0  # a deleted flag is restored, not edited
    page.click("#restore")
    page.wait_for_selector("#confirm[open]")  # asked first, with the blast radius
    assert page.text_content("#confirm-ok") == "Yes, restore"
    page.click("#confirm-ok")
    page.wait_for_selector("#save")
    assert requests.get(console.url + "/api/flags/to-delete", headers=admin(),
                        timeout=10).json()["deleted"] is False
    close(page)


def test_second_editor_sees_the_conflict(browser, console):
    r = requests.post(console.url + "/api/flags", headers=admin(), timeout=10,
                      json={"key": "shared-edit", "bucket_by": "account", "conditions": [{}]})
    assert r.status_code == 201, r.text
    first = signed_in(browser, console, "editor@example.com")
    second = signed_in(browser, console, "admin@example.com")
    for page in (first, second):
        open_editor(page, console.url + "/ui/flags/shared-edit")
        wait_blast(page, len(ACCOUNTS) + 1)
    first.fill("#f-name", "Renamed by the editor")
    first.click("#save")
    first.wait_for_function("document.getElementById('form-status').textContent"
                            ".includes('Saved version 2')")
    second.fill("#f-description", "the admin's edit")
    second.click("#save")
    second.wait_for_selector("#conflict:not([hidden])")
    assert "by user editor@example.com" in second.text_content("#conflict-who")
    row = second.text_content("#conflict-changes tr[data-field=name]")
    assert "Renamed by the editor" in row
    shot(second, "flag-conflict")
    stored = requests.get(console.url + "/api/flags/shared-edit", headers=admin(), timeout=10)
    assert stored.json()["version"] == 2 and stored.json()["description"] == ""
    # different fields: the merge keeps their name and my description (tests/test_browser_editor.py
    # has the fields both changed)
    assert second.get_attribute("#conflict-changes tr[data-field=name]", "data-outcome") == "theirs"
    assert second.get_attribute("#conflict-changes tr[data-field=description]",
                                "data-outcome") == "mine"
    second.click("#conflict-merge")
    second.wait_for_function("document.getElementById('form-status').textContent"
                             ".includes('Saved version 3')")
    stored = requests.get(console.url + "/api/flags/shared-edit", headers=admin(), timeout=10)
    assert stored.json()["description"] == "the admin's edit"
    assert stored.json()["name"] == "Renamed by the editor"
    assert second.input_value("#f-name") == "Renamed by the editor"
    close(first)
    close(second)


def test_a_viewer_cannot_change_anything(browser, console):
    r = requests.post(console.url + "/api/flags", headers=admin(), timeout=10,
                      json={"key": "viewer-sees", "conditions": [{}]})
    assert r.status_code == 201, r.text
    page = signed_in(browser, console, "viewer@example.com")
    assert page.locator("text=New flag").count() == 0
    assert page.locator("nav >> text=Settings").count() == 0
    open_editor(page, console.url + "/ui/flags/viewer-sees")
    assert page.locator("#save").count() == 0
    assert page.is_disabled("#f-name") and page.is_disabled("#f-active")
    # the requests the page would make, made anyway with the session's own CSRF token
    statuses = page.evaluate("""async () => {
      const csrf = document.querySelector('meta[name="csrf-token"]').content;
      const h = {'Content-Type': 'application/json', 'X-CSRF-Token': csrf};
      const put = await fetch('/api/flags/viewer-sees', {method: 'PUT', headers: h,
        body: JSON.stringify({key: 'viewer-sees', version: 1, active: false})});
      const post = await fetch('/api/flags', {method: 'POST', headers: h,
        body: JSON.stringify({key: 'by-viewer'})});
      const del = await fetch('/api/flags/viewer-sees', {method: 'DELETE', headers: h});
      const rot = await fetch('/api/project/tokens', {method: 'POST', headers: h,
        body: JSON.stringify({kind: 'secret'})});
      const form = new FormData(); form.append('csrf_token', csrf);
      form.append('email', 'sneaky@example.com'); form.append('role', 'admin');
      const user = await fetch('/ui/users', {method: 'POST', body: form});
      return [put.status, post.status, del.status, rot.status, user.status];
    }""")
    assert statuses == [403, 403, 403, 403, 403]
    flag = requests.get(console.url + "/api/flags/viewer-sees", headers=admin(), timeout=10)
    assert flag.json()["version"] == 1 and flag.json()["active"] is True
    assert requests.get(console.url + "/api/flags/by-viewer", headers=admin(),
                        timeout=10).status_code == 404
    close(page)


def test_admin_rotates_the_api_token_and_manages_users(browser, console):
    page = signed_in(browser, console, "admin@example.com")
    page.click("nav >> text=Settings")
    page.wait_for_url(console.url + "/ui/settings")
    old = page.text_content("#api-token")
    assert old == API_TOKEN
    page.fill("#t-grace", "60")  # the old token keeps working a minute (other tests use it)
    page.once("dialog", lambda d: d.accept())
    page.click("#rotate-form button[type=submit]")
    page.wait_for_selector("#new-token")
    new = page.text_content("#new-token")
    assert new.startswith("phc_") and new != old and page.text_content("#api-token") == new
    r = requests.post(console.url + "/flags/?v=2", json={"api_key": new, "distinct_id": "u"},
                      timeout=10)
    assert r.status_code == 200
    shot(page, "settings")
    page.click("nav >> text=Users")
    page.fill("#u-email", "pm@example.com")
    page.select_option("#u-role", "viewer")
    page.click("text=Add user")
    page.wait_for_selector("#one-time-password")
    assert len(page.text_content("#one-time-password")) >= 12
    assert "pm@example.com" in page.text_content("#users-table")
    page.goto(console.url + "/ui/users")  # (the screenshot without the one-time password)
    shot(page, "users")
    entries = requests.get(console.url + "/api/audit?limit=5", headers=admin(),
                           timeout=10).json()["entries"]
    rotated = next(e for e in entries if e["action"] == "api_token_rotated")
    assert rotated["actor"] == "user admin@example.com"
    assert rotated["project"]["after"]["fingerprint"] == fingerprint(new)
    close(page)


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def evil_site(tmp_path):
    """Another origin (same host, so the browser sends the console's SameSite=Lax cookie
    along: only the CSRF token can stop its forms)."""
    handler = functools.partial(_Quiet, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield tmp_path, f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(timeout=5)


def test_a_forged_cross_site_form_post_is_refused(browser, console, evil_site):
    r = requests.post(console.url + "/api/flags", headers=admin(), timeout=10,
                      json={"key": "target", "conditions": [{}]})
    assert r.status_code == 201, r.text
    folder, origin = evil_site
    forms = {
        "api": f"""<form id="f" method="post" enctype="text/plain"
            action="{console.url}/api/flags/target/restore">
            <input name='{{"key": "target", "x": "' value='"}}'></form>""",
        "ui": f"""<form id="f" method="post" action="{console.url}/ui/users">
            <input name="email" value="attacker@evil.example"><input name="role" value="admin">
            </form>""",
    }
    page = signed_in(browser, console, "admin@example.com")
    for name, form in forms.items():
        (folder / f"{name}.html").write_text(
            f"<!doctype html><html><body>{form}<script>document.getElementById('f').submit()"
            "</script></body></html>")
        with page.expect_navigation(url=lambda u: u.startswith(console.url)):
            page.goto(f"{origin}/{name}.html")
        body = page.text_content("body")
        assert "CSRF" in body, (name, body)  # the cookie came along; the token did not
    users = subprocess.run([flagsvc_bin(), "user", "list"], env=console.env,
                           capture_output=True, text=True, timeout=30).stdout
    assert "attacker" not in users
    entries = requests.get(console.url + "/api/audit?flag_id=target", headers=admin(),
                           timeout=10).json()["entries"]
    assert [e["action"] for e in entries] == ["created"]
    close(page)


def test_ingested_markup_is_shown_as_text(browser, console):
    page = signed_in(browser, console, "viewer@example.com")
    page.goto(console.url + "/ui/groups?type=account&prop=plan&value=" + quote(XSS))
    assert page.locator("#groups-table >> text=acct-evil").count() == 1
    page.goto(console.url + "/ui/groups/account/acct-evil")
    assert XSS in page.text_content("main")  # shown as the characters it is
    assert page.locator("main img").count() == 0
    assert page.evaluate("window.__xss") is None
    # and in the editor's pickers and blast radius, built by script
    page.goto(console.url + "/ui/flags/explained")
    page.wait_for_function("document.getElementById('blast').dataset.state === 'ready'")
    assert page.locator("main img").count() == 0 and page.evaluate("window.__xss") is None
    page.goto(console.url + "/ui/groups/account/acct-00")
    page.click("button.tree-toggle[data-key='ws-1']")  # the next level, loaded on demand
    page.wait_for_selector("#tree-root a:text-is('proj-1')")
    assert "ws-1" in page.text_content("main") and "proj-1" in page.text_content("main")
    shot(page, "group-profile")
    close(page)


def test_works_at_a_phones_width(browser, console):
    page = signed_in(browser, console, "editor@example.com",
                     viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, width  # no sideways scrolling
    shot(page, "flags-phone")
    page.goto(console.url + "/ui/flags/new-billing")
    page.wait_for_function("document.getElementById('blast').dataset.state === 'ready'")
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    assert page.is_visible("#save")
    # keyboard: the skip link is the first stop, then the navigation
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    shot(page, "flag-editor-phone")
    close(page)
