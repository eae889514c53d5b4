"""The flag editor in headless Chromium against a real `flagsvc serve` (the fixtures of
tests/test_browser_console.py, a server of this module's own): a stale save merged three
ways (fields only one side changed keep that side's value, a field both changed is a
conflict the user chooses), the blast radius of a flag bucketed by person, and the
confirmation before a save that changes who gets what, compared by content."""

from __future__ import annotations

import tempfile
from pathlib import Path

import requests
from segment.analytics import Client
from stress.harness import API_TOKEN, admin

from flagsvc.engine import bucket
from tests import test_browser_console as shared

console = shared.console  # module scope: this module's own server, same data
browser = shared.browser
signed_in, close, open_editor, wait_blast = (shared.signed_in, shared.close, shared.open_editor,
                                             shared.wait_blast)
ENTERPRISE, ACCOUNTS = shared.ENTERPRISE, shared.ACCOUNTS


def plan(value, rollout=100):
    return {"properties": [{"type": "group", "group_type": "account", "key": "plan",
                            "operator": "exact", "value": [value]}], "rollout_percentage": rollout}


def create(console, flag):
    r = requests.post(console.url + "/api/flags", headers=admin(), timeout=10, json=flag)
    assert r.status_code == 201, r.text
    return r.json()


def stored(console, key):
    return requests.get(console.url + "/api/flags/" + key, headers=admin(), timeout=10).json()


def wait_status(page, text):
    page.wait_for_function("t => document.getElementById('form-status').textContent.includes(t)",
                           arg=text, timeout=10_000)


def save_confirmed(page, fills, then=None):
    """Fills the fields {selector: text}, saves and says yes to the confirmation of a change
    of who gets what; waits for `then` in the status, if given."""
    for selector, text in fills.items():
        page.fill(selector, text)
    page.click("#save")
    page.wait_for_selector("#confirm[open]")
    page.click("#confirm-ok")
    if then:
        wait_status(page, then)


def confirm_radius(page):
    page.wait_for_selector("#confirm[open]")
    page.wait_for_function("document.getElementById('confirm-radius').dataset.state === 'ready'",
                           timeout=10_000)
    return page.text_content("#confirm-text"), page.text_content("#confirm-radius")


def look(page, name):
    """A screenshot for a person to look at, never a README image: always the temporary
    folder."""
    target = Path(tempfile.gettempdir()) / "flagsvc-screenshots" / f"{name}.png"
    target.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(target), full_page=True)
    assert target.stat().st_size > 10_000


def both_open(browser, console, key):
    first = signed_in(browser, console, "editor@example.com")
    second = signed_in(browser, console, "admin@example.com")
    for page in (first, second):
        open_editor(page, console.url + "/ui/flags/" + key)
        page.wait_for_function("document.getElementById('blast').dataset.state === 'ready'")
    return first, second


def outcome(page, field):
    return page.get_attribute(f'#conflict-changes tr[data-field="{field}"]', "data-outcome")


def test_two_sessions_change_different_fields_and_the_merge_keeps_both(browser, console):
    create(console, {"key": "merge-both", "bucket_by": "account",
                     "conditions": [plan("enterprise", 30)],
                     "variants": [{"key": "control", "weight": 50}, {"key": "test", "weight": 50}]})
    first, second = both_open(browser, console, "merge-both")
    save_confirmed(first, {"#c0-rollout": "20", "#f-description": "rolled back to 20 %"},
                   "Saved version 2")
    # (the weights: asked against version 1)
    save_confirmed(second, {"#v0-weight": "70", "#v1-weight": "30",
                            "#f-name": "Weighted by the admin"})
    second.wait_for_selector("#conflict:not([hidden])")
    assert "by user editor@example.com" in second.text_content("#conflict-who")
    assert outcome(second, "conditions.0.rollout_percentage") == "theirs"
    assert outcome(second, "description") == "theirs"
    assert outcome(second, "variants") == "mine" and outcome(second, "name") == "mine"
    assert second.locator("#conflict-changes tr[data-outcome=conflict]").count() == 0
    summary = second.text_content("#conflict-summary")
    assert "They changed: Description, Rollout of condition 1" in summary
    assert "You changed: Name, Variants and weights" in summary
    assert second.is_enabled("#conflict-merge")
    second.click("#conflict-merge")
    # asked again, against their version: the weights change who gets which variant
    text, _ = confirm_radius(second)
    assert "Change the variants and weights from control 50 %, test 50 % to control 70 %" in text
    assert "rollout" not in text  # their rollout is kept, not undone
    second.click("#confirm-ok")
    wait_status(second, "Saved version 3")
    flag = stored(console, "merge-both")
    assert flag["conditions"][0]["rollout_percentage"] == 20
    assert flag["description"] == "rolled back to 20 %"
    assert flag["name"] == "Weighted by the admin"
    assert [v["weight"] for v in flag["variants"]] == [70, 30]
    assert second.input_value("#c0-rollout") == "20"  # the form shows the merge
    close(first)
    close(second)


def test_a_field_both_changed_is_a_conflict_to_choose(browser, console):
    create(console, {"key": "merge-conflict", "bucket_by": "account",
                     "conditions": [plan("enterprise", 30)]})
    first, second = both_open(browser, console, "merge-conflict")
    save_confirmed(first, {"#c0-rollout": "20", "#c0p0-value": "enterprise, pro"},
                   "Saved version 2")
    save_confirmed(second, {"#c0-rollout": "60", "#f-name": "Sixty"})
    second.wait_for_selector("#conflict:not([hidden])")
    row = '#conflict-changes tr[data-field="conditions.0.rollout_percentage"]'
    assert outcome(second, "conditions.0.rollout_percentage") == "conflict"
    cells = second.eval_on_selector_all(row + " td", "tds => tds.map(t => t.textContent)")
    assert cells[:3] == ["30 %", "20 %", "60 %"]  # opened, theirs, mine
    assert outcome(second, "conditions.0.properties") == "theirs"
    assert outcome(second, "name") == "mine"
    assert "Both changed differently — choose below: Rollout of condition 1" in second.text_content(
        "#conflict-summary")
    assert second.is_disabled("#conflict-merge") and second.is_disabled("#conflict-review")
    assert "1 conflict left to choose" in second.text_content("#conflict-left")
    # by keyboard: the choice is a labelled radio
    second.focus(row + " input[value=mine]")
    second.keyboard.press("Space")
    assert second.is_checked(row + " input[value=mine]")
    assert second.text_content("#conflict-left") == ""
    # an edit made while the conflict shows joins the merge (the choice made stays)
    second.fill("#f-description", "typed after the conflict")
    assert outcome(second, "description") == "mine"
    assert second.is_checked(row + " input[value=mine]")
    look(second, "flag-merge-conflict")
    second.click("#conflict-merge")
    text, radius = confirm_radius(second)
    assert "from 20 % to 60 %" in text  # against their version
    assert "Now:" in radius and "After this save:" in radius and "account groups" in radius
    second.click("#confirm-ok")
    wait_status(second, "Saved version 3")
    flag = stored(console, "merge-conflict")
    assert flag["conditions"][0]["rollout_percentage"] == 60
    assert flag["conditions"][0]["properties"][0]["value"] == ["enterprise", "pro"]
    assert flag["name"] == "Sixty" and flag["description"] == "typed after the conflict"
    close(first)
    close(second)


def test_a_stale_delete_shows_what_changed_and_loads_theirs(browser, console):
    create(console, {"key": "stale-delete", "bucket_by": "account", "conditions": [{}]})
    first, second = both_open(browser, console, "stale-delete")
    first.fill("#f-name", "Still needed")  # (who gets what is the same: no question)
    first.click("#save")
    wait_status(first, "Saved version 2")
    second.click("#delete")
    second.wait_for_selector("#confirm[open]")
    second.click("#confirm-ok")
    second.wait_for_selector("#conflict:not([hidden])")
    assert "The flag is not deleted" in second.text_content("#conflict-who")
    assert outcome(second, "name") == "theirs"
    assert second.is_hidden("#conflict-merge") and second.is_hidden("#conflict-review")
    second.click("#conflict-theirs")
    assert second.input_value("#f-name") == "Still needed"
    assert second.text_content("#version-label") == "version 2"
    assert stored(console, "stale-delete")["deleted"] is False
    close(first)
    close(second)


def test_a_person_bucketed_flag_shows_its_blast_radius_in_persons(browser, console):
    ids = [f"pm-{i:02d}" for i in range(30)]
    segment = Client(API_TOKEN, host=console.url, sync_mode=True)
    for d in ids:
        segment.identify(d, {"cohort": "beta"})
    create(console, {"key": "beta-search", "bucket_by": "$person", "conditions": [{
        "properties": [{"type": "person", "key": "cohort", "operator": "exact",
                        "value": ["beta"]}], "rollout_percentage": 100}]})
    page = signed_in(browser, console, "editor@example.com")
    open_editor(page, console.url + "/ui/flags/beta-search")
    wait_blast(page, len(ids))
    assert page.get_attribute("#blast", "data-unit") == "persons"
    assert " persons get it" in page.text_content("#blast")
    links = page.eval_on_selector_all("#blast tr[data-variant=true] a",
                                      "as => as.map(a => a.getAttribute('href'))")
    assert links and all(h.startswith("/ui/persons/pm-") for h in links)
    page.fill("#c0-rollout", "40")
    expected = [d for d in ids if bucket("beta-search", d) <= 40]
    assert 0 < len(expected) < len(ids)
    wait_blast(page, len(expected))
    samples = page.eval_on_selector_all("#blast tr[data-variant=true] a",
                                        "as => as.map(a => a.textContent)")
    assert samples and set(samples) <= set(expected)
    page.click("#save")
    text, radius = confirm_radius(page)
    assert "from 100 % to 40 %" in text
    assert f"Now: {len(ids)} of " in radius and f"After this save: {len(expected)} of " in radius
    assert "persons" in radius
    page.click("#confirm-ok")
    wait_status(page, "Saved version 2")
    close(page)


def test_removing_or_changing_a_condition_or_the_weights_asks_first(browser, console):
    create(console, {"key": "two-sets", "bucket_by": "account",
                     "conditions": [plan("enterprise"), plan("free")],
                     "variants": [{"key": "a", "weight": 50}, {"key": "b", "weight": 50}]})
    page = signed_in(browser, console, "editor@example.com")
    open_editor(page, console.url + "/ui/flags/two-sets")
    wait_blast(page, len(ACCOUNTS))
    # removing the first set: the second moves up with the same rollout, which a comparison
    # by position took for no change
    page.click("[aria-label='remove condition 1']")
    wait_blast(page, len(ACCOUNTS) - len(ENTERPRISE))
    page.click("#save")
    text, radius = confirm_radius(page)
    assert "Remove condition 1 (account.plan exact enterprise, rollout 100 %)" in text
    assert f"Now: {len(ACCOUNTS)} of {len(ACCOUNTS) + 1} account groups" in radius
    assert f"After this save: {len(ACCOUNTS) - len(ENTERPRISE)} of " in radius
    look(page, "flag-confirm")
    page.click("#confirm-cancel")
    assert stored(console, "two-sets")["version"] == 1

    open_editor(page, console.url + "/ui/flags/two-sets")  # a filter's value changed
    page.fill("#c1p0-value", "free, pro")
    page.click("#save")
    text, _ = confirm_radius(page)
    assert "Change condition 2 from account.plan exact free, rollout 100 % to " \
           "account.plan exact free, pro, rollout 100 %" in text
    page.keyboard.press("Escape")  # (the dialog's cancel, by keyboard)
    page.wait_for_selector("#confirm", state="hidden")
    assert stored(console, "two-sets")["version"] == 1

    open_editor(page, console.url + "/ui/flags/two-sets")  # the weights changed
    page.fill("#v0-weight", "90")
    page.fill("#v1-weight", "10")
    page.click("#save")
    text, _ = confirm_radius(page)
    assert "to a 90 %, b 10 %: some get another variant" in text
    page.click("#confirm-ok")
    wait_status(page, "Saved version 2")

    page.fill("#f-description", "only words")  # not who gets what: saved without asking
    page.click("#save")
    wait_status(page, "Saved version 3")
    assert not page.is_visible("#confirm")
    close(page)


def test_the_comparisons_read_content_not_positions_or_spelling(browser, console):
    """editor-merge.js's functions, run in the page: values the engine reads alike compare
    alike; a side that adds or removes a condition makes the list one field; a payload of a
    variant the merge no longer has is dropped; reordering, adding and rebucketing ask."""
    create(console, {"key": "compared"})
    page = signed_in(browser, console, "viewer@example.com")
    open_editor(page, console.url + "/ui/flags/compared")
    out = page.evaluate("""() => {
      const M = window.flagsvcMerge;
      const f = (o) => ({key: "k", name: "", description: "", active: true, bucket_by: "account",
        hash_namespace: null, conditions: [{properties: [], rollout_percentage: null}],
        variants: [], payloads: {}, ...o});
      const p = (v) => ({type: "person", key: "email", operator: "exact", value: [v]});
      const spelled = f({conditions: [{properties: [{...p("x"), negate: false, group_type: null}],
        rollout_percentage: null, variant: null}]});
      const plain = f({conditions: [{properties: [p("x")], rollout_percentage: 100}]});
      const added = f({conditions: [...plain.conditions, {properties: [p("y")]}]});
      const halved = f({conditions: [{properties: [p("x")], rollout_percentage: 50}]});
      const ab = {variants: [{key: "a", weight: 50}, {key: "b", weight: 50}]};
      const base = f({...ab, payloads: {a: 1, b: 2}});
      const theirs = f({variants: [{key: "a", weight: 100}], payloads: {a: 1}});
      const mine = f({...ab, payloads: {a: 1, b: 3}});
      const drop = M.merge3(base, theirs, mine);
      const two = f({conditions: [{properties: [p("x")]}, {properties: [p("y")]}]});
      const swapped = f({conditions: [two.conditions[1], two.conditions[0]]});
      const twoHalved = f({conditions: [{...two.conditions[0], rollout_percentage: 50},
        two.conditions[1]]});
      return {
        alike: M.merge3(spelled, spelled, plain).rows.length,
        alikeAsk: M.audienceChanges(spelled, plain),
        added: M.merge3(plain, added, halved).rows.map((r) => [r.field.name, r.outcome]),
        drop: drop.rows.map((r) => [r.field.name, r.outcome]),
        dropped: drop.build({"payloads.b": "mine"}).payloads,
        swapped: M.audienceChanges(two, swapped),
        moved: M.merge3(two, swapped, twoHalved).rows.map((r) => [r.field.name, r.outcome]),
        inPlace: M.merge3(two, two, twoHalved).rows.map((r) => [r.field.name, r.outcome]),
        removed: M.audienceChanges(two, f({conditions: [two.conditions[1]]})),
        addedAsk: M.audienceChanges(plain, added),
        rebucketed: M.audienceChanges(plain, {...plain, bucket_by: "$person"}),
      };
    }""")
    assert out["alike"] == 0 and out["alikeAsk"] == []
    assert out["added"] == [["conditions", "conflict"]]
    assert out["drop"] == [["variants", "theirs"], ["payloads.b", "conflict"]]
    assert out["dropped"] == {"a": 1}  # b is no variant of the merge: its payload would be refused
    # they moved the conditions, I halved one: merged by place, my rollout would land on
    # the other condition, so the list is one field
    assert out["moved"] == [["conditions", "conflict"]]
    assert out["inPlace"] == [["conditions.0.rollout_percentage", "mine"]]
    assert out["swapped"] == ["Reorder the conditions: the first that matches decides."]
    assert out["removed"] == ["Remove condition 1 (email exact x, rollout 100 %): what it "
                              "matched no longer gets the flag through it."]
    assert out["addedAsk"] == ["Add condition 2 (email exact y, rollout 100 %)."]
    assert out["rebucketed"][0].startswith("Bucket by $person instead of account")
    close(page)
