"""The console's defects of the second review of issue 17, in headless Chromium against a
real `flagsvc serve` (the fixtures of tests/test_browser_console.py, a server of this
module's own): condition-level bucket_by and hash_namespace in the editor and the blast
radius, a flag deleted while it is edited, a session that expires during an edit, restore
asked with its blast radius, keys that are `.`/`..` or hold `/` linked right, the
Deleted filter's pill."""

from __future__ import annotations

import requests
from stress.harness import admin

from tests import test_browser_console as shared

console = shared.console  # module scope: this module's own server, same data
browser = shared.browser
signed_in, close, open_editor = shared.signed_in, shared.close, shared.open_editor


def create(console, flag):
    r = requests.post(console.url + "/api/flags", headers=admin(), timeout=10, json=flag)
    assert r.status_code == 201, r.text
    return r.json()


def stored(console, key):
    return requests.get(console.url + "/api/flags/" + key, headers=admin(), timeout=10).json()


def blast_ready(page):
    page.wait_for_function("document.getElementById('blast').dataset.state === 'ready'",
                           timeout=10_000)


def wait_status(page, text):
    page.wait_for_function("t => document.getElementById('form-status').textContent.includes(t)",
                           arg=text, timeout=10_000)


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
