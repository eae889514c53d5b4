"""The console's defects of the second review of issue 17, in headless Chromium against a
real `flagsvc serve` (the fixtures of tests/test_browser_console.py, a server of this
module's own): condition-level bucket_by and hash_namespace in the editor and the blast
radius, a flag deleted while it is edited, a session that expires during an edit, restore
asked with its blast radius, keys that are `.`/`..` or hold `/` linked right, the
Deleted filter's pill."""

from __future__ import annotations

import time

import requests
from segment.analytics import Client
from stress.harness import API_TOKEN, admin

from tests import test_browser_console as shared
from tests.test_browser_editor import confirm_radius, create, stored, wait_status

console = shared.console  # module scope: this module's own server, same data
browser = shared.browser
signed_in, close, open_editor = shared.signed_in, shared.close, shared.open_editor


def blast_ready(page):
    page.wait_for_function("document.getElementById('blast').dataset.state === 'ready'",
                           timeout=10_000)


def test_condition_bucket_by_and_hash_namespace_are_shown_and_counted(browser, console):
    create(console, {"key": "cond-bucket", "bucket_by": "account", "hash_namespace": "legacy-ns",
                     "conditions": [{"properties": [], "rollout_percentage": 100,
                                     "bucket_by": "project"}]})
    page = signed_in(browser, console, "editor@example.com")
    open_editor(page, console.url + "/ui/flags/cond-bucket")
    assert page.input_value("#f-namespace") == "legacy-ns"
    assert page.input_value("#c0-bucket") == "project"
    blast_ready(page)
    line = page.text_content('#blast-conditions li[data-condition="0"]')
    assert "Condition 1 (bucketed by project)" in line and "1 of 1 project groups" in line
    # back to the flag's type: the per-condition figure goes, the flag's counts it
    page.select_option("#c0-bucket", "")
    page.wait_for_function("!document.getElementById('blast-conditions')"
                           " && document.getElementById('blast').dataset.state === 'ready'")
    assert page.text_content("#blast-total") == page.text_content("#blast-enabled")
    page.select_option("#c0-bucket", "workspace")
    page.fill("#f-namespace", "")
    page.click("#save")
    page.wait_for_selector("#confirm[open]")
    page.click("#confirm-ok")
    wait_status(page, "Saved version 2")
    flag = stored(console, "cond-bucket")
    assert flag["conditions"][0]["bucket_by"] == "workspace" and flag["hash_namespace"] is None
    close(page)


def test_a_flag_deleted_while_edited_says_so_and_offers_restore(browser, console):
    create(console, {"key": "gone-meanwhile", "bucket_by": "account",
                     "conditions": [{"properties": [], "rollout_percentage": 100}]})
    page = signed_in(browser, console, "editor@example.com")
    open_editor(page, console.url + "/ui/flags/gone-meanwhile")
    blast_ready(page)
    page.fill("#f-description", "my edit")
    r = requests.delete(console.url + "/api/flags/gone-meanwhile", headers=admin(), timeout=10)
    assert r.status_code == 200, r.text
    page.click("#save")
    page.wait_for_selector("#conflict:not([hidden])")
    assert page.text_content("#conflict-title") == "Someone else deleted this flag"
    who = page.text_content("#conflict-who")
    assert "deleted by secret key" in who and " UTC " in who
    assert page.is_hidden("#conflict-merge") and page.is_hidden("#conflict-review")
    assert page.is_disabled("#conflict-merge") and page.is_disabled("#save")
    page.fill("#f-description", "my edit, again")  # an edit meanwhile does not re-enable it
    assert page.is_disabled("#save")
    assert page.locator("#conflict-changes tr").count() == 0
    assert "restore it first" in page.text_content("#form-status")  # the API's message
    # restore: asked with the blast radius, then the page of the restored flag
    page.click("#conflict-restore")
    text, radius = confirm_radius(page)
    assert "Restore gone-meanwhile" in text
    assert "Now: 0 of" in radius and "After this save: 41 of 41" in radius
    page.click("#confirm-ok")
    # (#save is on the page before the restore lands too: wait for the restore itself; a
    # loaded CI machine took longer than the next line)
    deadline = time.monotonic() + 15
    while stored(console, "gone-meanwhile")["deleted"] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert stored(console, "gone-meanwhile")["deleted"] is False
    page.wait_for_selector("#conflict", state="hidden")
    close(page)


def test_discarding_edits_of_a_deleted_flag_shows_it_deleted(browser, console):
    create(console, {"key": "gone-discard", "conditions": [{}]})
    page = signed_in(browser, console, "editor@example.com")
    open_editor(page, console.url + "/ui/flags/gone-discard")
    page.fill("#f-name", "renamed")
    requests.delete(console.url + "/api/flags/gone-discard", headers=admin(), timeout=10)
    page.click("#save")
    page.wait_for_selector("#conflict:not([hidden])")
    page.click("#conflict-theirs")
    page.wait_for_selector("#deleted-note")
    page.wait_for_selector("#flag-form[data-ready]")
    assert page.locator("#save").count() == 0 and page.is_disabled("#f-name")
    close(page)


def test_restore_asks_with_the_blast_radius_and_checks_the_version(browser, console):
    create(console, {"key": "restore-me", "bucket_by": "account",
                     "conditions": [{"properties": [], "rollout_percentage": 100}]})
    requests.delete(console.url + "/api/flags/restore-me", headers=admin(), timeout=10)
    page = signed_in(browser, console, "editor@example.com")
    open_editor(page, console.url + "/ui/flags/restore-me")
    page.click("#restore")
    _, radius = confirm_radius(page)
    assert "Now: 0 of 41" in radius and "After this save: 41 of 41" in radius
    page.click("#confirm-cancel")
    wait_status(page, "Not restored.")
    assert stored(console, "restore-me")["deleted"] is True
    # restored and deleted again by someone else: this page's version is stale
    requests.post(console.url + "/api/flags/restore-me/restore", headers=admin(), timeout=10)
    requests.delete(console.url + "/api/flags/restore-me", headers=admin(), timeout=10)
    page.click("#restore")
    confirm_radius(page)
    page.click("#confirm-ok")
    wait_status(page, "Not restored:")
    assert stored(console, "restore-me")["version"] == 4
    close(page)


def test_a_second_confirmation_starts_without_the_first_answer(browser, console):
    create(console, {"key": "escape-no", "bucket_by": "account",
                     "conditions": [{"properties": [], "rollout_percentage": 50}]})
    page = signed_in(browser, console, "editor@example.com")
    open_editor(page, console.url + "/ui/flags/escape-no")
    page.fill("#c0-rollout", "40")
    page.click("#save")
    page.wait_for_selector("#confirm[open]")
    page.click("#confirm-ok")
    wait_status(page, "Saved version 2")
    page.fill("#c0-rollout", "30")
    page.click("#save")
    page.wait_for_selector("#confirm[open]")
    # the last answer is not kept while asking again (a close without a button keeps it)
    assert page.evaluate("document.getElementById('confirm').returnValue") == ""
    page.keyboard.press("Escape")
    wait_status(page, "Not saved.")
    assert stored(console, "escape-no")["version"] == 2
    close(page)


def sign_in_here(page):
    page.wait_for_selector("#email")
    page.fill("#email", "editor@example.com")
    page.fill("#password", shared.PASSWORD)
    page.click("button[type=submit]")


def test_an_edit_survives_an_expired_session(browser, console):
    create(console, {"key": "kept-edit", "conditions": [{}]})
    page = signed_in(browser, console, "editor@example.com")
    open_editor(page, console.url + "/ui/flags/kept-edit")
    page.fill("#f-name", "edited before expiry")
    page.context.clear_cookies()  # the session is gone: the save is answered 401
    page.click("#save")
    page.wait_for_url("**/ui/signin?next=%2Fui%2Fflags%2Fkept-edit")
    sign_in_here(page)
    page.wait_for_url(console.url + "/ui/flags/kept-edit")
    page.wait_for_selector("#flag-form[data-ready]")
    assert page.input_value("#f-name") == "edited before expiry"
    assert "are back in the form" in page.text_content("#form-status")
    page.click("#save")
    wait_status(page, "Saved version 2")
    assert stored(console, "kept-edit")["name"] == "edited before expiry"
    # signed in again in another tab: this tab's CSRF token is stale; the edit is kept too
    page.fill("#f-name", "edited after another sign-in")
    other = page.context.new_page()
    other.goto(console.url + "/ui/signin")
    sign_in_here(other)
    other.wait_for_url(console.url + "/ui/")
    other.close()
    page.click("#save")
    page.wait_for_function("document.getElementById('form-status').textContent"
                           ".includes('are back in the form')", timeout=10_000)
    assert page.input_value("#f-name") == "edited after another sign-in"
    page.click("#save")
    wait_status(page, "Saved version 3")
    close(page)


def test_the_tree_says_signed_out_rather_than_a_json_error(browser, console):
    page = signed_in(browser, console, "editor@example.com")
    page.goto(console.url + "/ui/groups/account/acct-00")
    page.context.clear_cookies()
    page.click("button.tree-toggle")
    page.wait_for_selector("#tree-root li.error")
    text = page.text_content("#tree-root li.error")
    assert "signed out — sign in again" in text and "Unexpected token" not in text
    assert page.get_attribute("#tree-root li.error a", "href").startswith("/ui/signin?next=")
    close(page)


def test_a_sample_key_of_dots_links_to_its_own_group(browser, console):
    segment = Client(API_TOKEN, host=console.url, sync_mode=True)
    segment.group("u7", "..", {"group_type": "workspace", "name": "dots"})
    create(console, {"key": "dots-sample", "bucket_by": "workspace",
                     "conditions": [{"properties": [], "rollout_percentage": 100}]})
    page = signed_in(browser, console, "editor@example.com")
    open_editor(page, console.url + "/ui/flags/dots-sample")
    blast_ready(page)
    link = page.locator("#blast a", has_text="..").filter(has_not_text="ws")
    assert link.get_attribute("href") == "/ui/group?type=workspace&key=.."
    link.click()
    page.wait_for_selector("#group-key")
    assert page.text_content("#group-key") == ".."
    close(page)
