"""The console's second review of issue 17 with Flask's test client (both backends): where
sign-in leads back to after a form post found the session expired, links to ingested keys
that hold '/' or are '.' or '..', the Deleted filter's state, and a group's members paged.
The behaviour in the page is tests/test_browser_review.py."""

from __future__ import annotations

import re
import time

import pytest

from flagsvc import accounts
from flagsvc.app import create_app
from flagsvc.ingest.model import Call

pytestmark = pytest.mark.backends

PASSWORD = "correct horse battery"


@pytest.fixture
def world(db_path):
    app = create_app({"DATABASE": db_path, "LOG_LEVEL": "WARNING"})
    store = app.extensions["flagsvc"].store
    project = store.create_project("p1", ingestion_creates_group_types=True)
    accounts.create_user(store, "editor@example.com", "editor", PASSWORD)
    now = time.time()
    calls = [Call("group", f"m{i}", now, distinct_id=person, group_type="account",
                  group_key=key, group_set={"n": i})
             for i, (person, key) in enumerate((("../audit", ".."), (".", "."),
                                                ("a/b", "x/../y"), ("plain", "acme")))]
    store.ingest(project["id"], calls)
    return {"app": app, "store": store, "project": project}


def sign_in(app):
    client = app.test_client()
    r = client.post("/ui/signin", data={"email": "editor@example.com", "password": PASSWORD})
    assert r.status_code == 303
    return client


def hrefs(page):
    return re.findall(r'href="([^"]+)"', page)


# ---------------------------------------------------------------- next after expiry


def test_a_form_post_without_a_session_leads_back_to_a_page_not_to_the_post(world):
    client = world["app"].test_client()
    r = client.get("/ui/flags/f?x=1")  # a GET: back to it
    assert r.headers["Location"] == "/ui/signin?next=/ui/flags/f%3Fx%3D1"
    r = client.post("/ui/signout")  # no Referer: the flags list
    assert r.status_code == 303 and r.headers["Location"] == "/ui/signin?next=/ui/"
    r = client.post("/ui/signout", headers={"Referer": "http://localhost/ui/groups?type=account"})
    assert r.headers["Location"] == "/ui/signin?next=/ui/groups%3Ftype%3Daccount"
    for referer in ("http://evil.example/ui/users", "http://localhost/api/flags",
                    "javascript:alert(1)", "http://localhost/ui/signout"):
        r = client.post("/ui/users", headers={"Referer": referer})
        assert r.headers["Location"] == "/ui/signin?next=/ui/", referer


# ---------------------------------------------------------------- links to ingested keys


def test_links_to_keys_with_slashes_and_dots_open_their_own_page(world):
    client = sign_in(world["app"])
    persons = client.get("/ui/persons").get_data(as_text=True)
    links = hrefs(persons)
    assert "/ui/person?id=..%2Faudit" in links and "/ui/person?id=." in links
    assert "/ui/person?id=a%2Fb" in links and "/ui/persons/plain" in links
    assert not any(h.startswith("/ui/persons/..") for h in links)
    person = client.get("/ui/person?id=..%2Faudit")
    assert person.status_code == 200
    group_links = hrefs(person.get_data(as_text=True))
    assert "/ui/group?type=account&amp;key=.." in group_links
    for url, key in (("/ui/group?type=account&key=..", ".."), ("/ui/group?type=account&key=.", "."),
                     ("/ui/group?type=account&key=x%2F..%2Fy", "x/../y"),
                     ("/ui/groups/account/acme", "acme")):
        page = client.get(url)
        assert page.status_code == 200, url
        assert f'<span id="group-key">{key}</span>' in page.get_data(as_text=True)
    members = hrefs(client.get("/ui/group?type=account&key=..").get_data(as_text=True))
    assert "/ui/person?id=..%2Faudit" in members
    # the list of groups links each to its own profile
    listed = hrefs(client.get("/ui/groups?type=account").get_data(as_text=True))
    assert {"/ui/group?type=account&amp;key=..", "/ui/group?type=account&amp;key=.",
            "/ui/group?type=account&amp;key=x%2F..%2Fy", "/ui/groups/account/acme"} <= set(listed)


# ---------------------------------------------------------------- the Deleted filter


def test_the_deleted_filter_says_deleted_not_active(world):
    store, pid = world["store"], world["project"]["id"]
    flag = store.create_flag(pid, {"key": "gone", "active": True, "conditions": [{}]})
    store.set_flag_deleted(pid, flag["id"], True, None)
    store.create_flag(pid, {"key": "here", "active": True, "conditions": [{}]})
    client = sign_in(world["app"])
    deleted = client.get("/ui/?state=deleted").get_data(as_text=True)
    row = re.search(r'<a href="/ui/flags/gone">.*?</tr>', deleted, re.S).group(0)
    assert ">deleted</span>" in row and ">active</span>" not in row
    assert "/ui/flags/here" not in deleted
    listed = client.get("/ui/").get_data(as_text=True)
    row = re.search(r'<a href="/ui/flags/here">.*?</tr>', listed, re.S).group(0)
    assert ">active</span>" in row


# ---------------------------------------------------------------- members paged


def test_a_groups_members_are_paged_past_a_hundred_with_their_count(world):
    store, pid = world["store"], world["project"]["id"]
    now = time.time()
    store.ingest(pid, [Call("group", f"big{i}", now - 1000 + (i // 3), distinct_id=f"m{i:03d}",
                            group_type="account", group_key="big", group_set={})
                       for i in range(130)])  # (ties in last_seen: three by three)
    client = sign_in(world["app"])
    url, seen, pages = "/ui/groups/account/big", [], 0
    while url:
        page = client.get(url).get_data(as_text=True)
        pages += 1
        assert "130 members" in page
        members = re.search(r'<ul class="plain" id="members">(.*?)</ul>', page, re.S).group(1)
        seen += re.findall(r'<a href="/ui/persons/(m\d+)">', members)
        more = re.search(r'<a id="members-more" href="([^"#]+)', page)
        url = more.group(1).replace("&amp;", "&") if more else None
    assert pages == 3 and len(seen) == 130 and set(seen) == {f"m{i:03d}" for i in range(130)}
    assert seen[0] in {"m129", "m128", "m127"}  # most recently seen first
    assert client.get("/ui/groups/account/big?members_after=junk").status_code == 200
