"""The console's accessibility, audited by axe-core (tests/js, pinned) injected into each main
page in headless Chromium, at a desktop's and a phone's width: any violation fails the test
with what axe says and where. And the group profile's lazy tree used by keyboard alone,
on a group with more children than one page."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
import requests
from segment.analytics import Client
from stress.harness import API_TOKEN, admin
from test_browser_console import browser as browser  # noqa: F401 (a fixture)
from test_browser_console import close, signed_in
from test_browser_console import console as console  # noqa: F401 (a fixture)

from tests.capabilities import node_modules

WIDTHS = {"desktop": {"width": 1280, "height": 800},
          "phone": {"width": 390, "height": 844}}
PAGES = {  # name: (address, what to wait for: the page's script has built it)
    "flags": ("/ui/", None),
    "flag editor": ("/ui/flags/audited", "#flag-form[data-ready]"),
    "new flag": ("/ui/new-flag", "#flag-form[data-ready]"),
    "groups": ("/ui/groups?type=account", None),
    "group profile": ("/ui/groups/account/acct-00", None),
    "persons": ("/ui/persons", None),
    "person": ("/ui/persons/user-42", None),
    "audit": ("/ui/audit", None),
    "settings": ("/ui/settings", None),
    "users": ("/ui/users", None),
}
MANY = 130  # workspaces under acct-00: more than one page of the tree
XSS_KEY = '<img src=x onerror="window.__xss = 1">'  # a project under ws-1, shown by tree.js


@pytest.fixture(scope="module")
def world(console):  # noqa: F811 (the fixture imported above)
    """The walk-through's console, with a flag to edit (and so an audit entry) and a
    group with more children than a page."""
    r = requests.post(console.url + "/api/flags", headers=admin(), timeout=10, json={
        "key": "audited", "bucket_by": "account", "conditions": [
            {"properties": [{"key": "plan", "value": ["enterprise"], "group_type": "account"}],
             "rollout_percentage": 30}]})
    assert r.status_code == 201, r.text
    segment = Client(API_TOKEN, host=console.url, sync_mode=False, upload_size=100)
    for i in range(MANY):
        segment.group("u1", f"ws-many-{i:03}", {"group_type": "workspace",
                                                "parent_group_id": "acct-00",
                                                "parent_group_type": "account"})
    segment.group("u1", XSS_KEY, {"group_type": "project", "parent_group_id": "ws-1",
                                  "parent_group_type": "workspace"})
    segment.flush()
    segment.join()
    return console


def axe(page) -> list[dict]:
    """axe-core's violations on the page as it is now (WCAG 2.x A and AA, and axe's best
    practices), each with the first few elements it names."""
    page.add_script_tag(path=str(node_modules("axe-core") / "axe-core" / "axe.min.js"))
    return page.evaluate("""async () => {
        const r = await axe.run(document, {resultTypes: ["violations"]});
        return r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,
            where: v.nodes.slice(0, 4).map(n => n.target.join(" ") + ": "
                + n.failureSummary.split("\\n").slice(1, 2).join(""))}));
    }""")


def report(found: dict[str, list[dict]]) -> str:
    lines = []
    for where, violations in found.items():
        for v in violations:
            lines.append(f"{where}: [{v['impact']}] {v['id']}: {v['help']}")
            lines += [f"    {w}" for w in v["where"]]
    return "\n".join(lines)


@pytest.mark.parametrize("width", WIDTHS)
def test_axe_finds_nothing_on_the_main_pages(browser, world, width):  # noqa: F811
    found: dict[str, list[dict]] = {}
    ctx = browser.new_context(bypass_csp=True, viewport=WIDTHS[width])  # (to inject axe)
    page = ctx.new_page()
    page.goto(world.url + "/ui/signin")
    found["sign-in"] = axe(page)
    page.fill("#email", "wrong@example.com")
    page.fill("#password", "not the password")
    page.click("button[type=submit]")
    found["sign-in refused"] = axe(page)
    for _ in range(5):  # that client held up: the 429 page
        page.fill("#email", "wrong@example.com")
        page.fill("#password", "not the password")
        page.click("button[type=submit]")
    assert "try again in" in page.text_content("[role=alert]")
    found["sign-in held up"] = axe(page)
    ctx.close()
    page = signed_in(browser, world, "admin@example.com", viewport=WIDTHS[width])
    for name, (address, ready) in PAGES.items():
        page.goto(world.url + address)
        if ready:
            page.wait_for_selector(ready)
        if name == "flag editor":
            page.wait_for_function(
                "document.getElementById('blast').dataset.state === 'ready'")
        found[name] = axe(page)
        if name == "group profile":  # and with a level opened by tree.js
            page.click("button.tree-toggle[data-key='ws-1']")
            page.wait_for_selector("#tree-root a:text-is('proj-1')")
            found["group profile, a level opened"] = axe(page)
    close(page)
    found = {k: v for k, v in found.items() if v}
    assert not found, "axe-core found:\n" + report(found)


def test_the_group_tree_by_keyboard(browser, world):  # noqa: F811
    page = signed_in(browser, world, "viewer@example.com")
    page.goto(world.url + "/ui/groups/account/acct-00")
    tree = page.locator("#tree-root")
    assert tree.locator(":scope > li:not(.tree-more) > a").count() == 50  # one page, not 131
    assert "proj-1" not in page.text_content("main")  # the next level: not yet
    assert page.get_by_role("button", name="Show children of ws-1").count() == 1
    toggle = page.locator("button.tree-toggle[data-key='ws-1']")
    toggle.focus()
    page.keyboard.press("Enter")
    page.wait_for_selector("#tree-root a:text-is('proj-1')")
    assert page.locator("#tree-root a", has_text=XSS_KEY).count() == 1  # as text
    assert page.locator("main img").count() == 0 and page.evaluate("window.__xss") is None
    assert toggle.get_attribute("aria-expanded") == "true"
    assert page.get_by_role("button", name="Hide children of ws-1").is_visible()
    page.keyboard.press("Space")  # closes again
    assert not page.is_visible("#tree-root a:text-is('proj-1')")
    assert toggle.get_attribute("aria-expanded") == "false"
    more = page.get_by_role("link", name="Show more children")
    more.focus()
    page.keyboard.press("Enter")
    page.wait_for_function(
        "document.querySelectorAll('#tree-root > li:not(.tree-more) > a').length >= 100")
    # focus went to the first new child, so the keyboard goes on from there
    first_new = page.evaluate("document.activeElement.textContent")
    children = page.locator("#tree-root > li:not(.tree-more) > a")
    assert first_new == children.nth(50).text_content()
    page.get_by_role("button", name="Show more children of acct-00").click()
    page.wait_for_function(
        "document.querySelectorAll('#tree-root > li:not(.tree-more) > a').length === "
        f"{MANY + 1}")
    assert page.locator("#tree-root li.tree-more").count() == 0  # the last page
    page.screenshot(path=str(Path(tempfile.gettempdir()) / "flagsvc-a11y-tree.png"))
    keys = [a.text_content() for a in children.all()]
    assert len(set(keys)) == MANY + 1 and "ws-1" in keys
    close(page)
