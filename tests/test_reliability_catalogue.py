"""The catalogue of hostile and malformed input (issue #5 item 4): one readable table, each
case answered with a clear 4xx (JSON `code` + `message`) and NOTHING stored (row counts of
every data table unchanged). Cases with deeper coverage elsewhere say where.

Two cases are not 4xx by design and are checked for what matters instead: a catastrophic-
backtracking regex is accepted because regexes run on RE2 (linear time; evaluated here on a
long adversarial input), and a hierarchy cycle is data (ingested), so decide must answer
quickly and never hang on it.
"""

from __future__ import annotations

import base64
import gzip
import time

import pytest

from flagsvc.ingest.model import Call

pytestmark = pytest.mark.backends

T = "__TOKEN__"  # replaced by the project's api token
MiB = 1024 * 1024


def event(**over):
    return {"event": "e", "distinct_id": "u", "uuid": "00000000-0000-4000-8000-0000000000aa",
            **over}


def batch(*events):
    return {"api_key": T, "batch": list(events)}


def raw(text: str | bytes) -> bytes:
    data = text.encode() if isinstance(text, str) else text
    return data


DEEP = "[" * 10_000 + "]" * 10_000
FLAG = {"key": "f", "conditions": [{}]}


def flag_with(**prop):
    return {"key": "bad", "conditions": [{"properties": [
        {"type": "person", "key": "k", "operator": "exact", "value": "v", **prop}]}]}


# (case, method, path, body: dict | bytes, headers, expected status, also tested in)
CASES = [
    ("truncated JSON", "POST", "/batch/", raw('{"api_key": "__TOKEN__", "batch": [{"ev'), {},
     400, "test_capture::test_malformed_bodies_are_400_with_a_clear_message"),
    ("not JSON at all", "POST", "/v1/batch", raw("writeKey=x&batch=1"), {}, 400, ""),
    ("empty body", "POST", "/flags/?v=2", raw(""), {}, 400, "test_decide"),
    ("JSON array where an object is needed", "POST", "/flags/?v=2", raw("[1, 2]"), {}, 400, ""),
    ("wrong type: batch is a string", "POST", "/batch/", {"api_key": T, "batch": "x"}, {}, 400,
     "test_capture::test_wrong_body_shape_is_400"),
    ("wrong type: Segment traits is a list", "POST", "/v1/identify",
     {"writeKey": T, "userId": "u", "traits": [1]}, {}, 400, ""),
    ("wrong type: decide groups is a list", "POST", "/flags/?v=2",
     {"api_key": T, "groups": ["org"]}, {}, 400, "test_decide::test_wrong_field_types_are_400"),
    ("gzip bomb (64 MiB of zeros in 64 KiB)", "POST", "/batch/",
     gzip.compress(b"0" * (64 * MiB), 9), {"Content-Encoding": "gzip"}, 413,
     "test_capture::test_gzip_bomb_is_413"),
    ("truncated gzip", "POST", "/batch/", gzip.compress(b'{"api_key": 1}')[:-6],
     {"Content-Encoding": "gzip"}, 400, ""),
    ("oversize body (9 MiB)", "POST", "/v1/batch",
     raw('{"writeKey": "__TOKEN__", "pad": "' + "x" * (9 * MiB) + '"}'), {}, 413,
     "test_capture::test_oversize_body_is_413"),
    ("10,000-deep nesting", "POST", "/batch/",
     raw('{"api_key": "__TOKEN__", "batch": [{"event": "e", "distinct_id": "u", '
         '"properties": {"a": ' + DEEP + '}}]}'), {}, 400, ""),
    ("10,000-deep nesting on decide", "POST", "/flags/?v=2",
     raw('{"api_key": "__TOKEN__", "person_properties": {"a": ' + DEEP + '}}'), {}, 400, ""),
    ("NaN", "POST", "/batch/",
     raw('{"api_key": "__TOKEN__", "batch": [{"event": "e", "distinct_id": "u", '
         '"properties": {"x": NaN}}]}'), {}, 400, ""),
    ("Infinity", "POST", "/v1/track",
     raw('{"writeKey": "__TOKEN__", "userId": "u", "event": "e", "properties": {"x": Infinity}}'),
     {}, 400, ""),
    ("invalid UTF-8", "POST", "/batch/",
     raw(b'{"api_key": "__TOKEN__", "batch": [{"event": "\xff\xfe", "distinct_id": "u"}]}'), {},
     400, ""),
    ("lone surrogate escape", "POST", "/v1/identify",
     raw('{"writeKey": "__TOKEN__", "userId": "u", "traits": {"n": "\\ud800"}}'), {}, 400, ""),
    ("huge property value (2 MiB > 1 MiB per event)", "POST", "/batch/",
     batch(event(properties={"$set": {"bio": "x" * (2 * MiB)}})), {}, 400,
     "test_capture::test_oversize_event_is_rejected_alone"),
    ("timestamp far in the future (year 2999)", "POST", "/batch/",
     batch(event(timestamp="2999-01-01T00:00:00Z")), {}, 400, ""),
    ("timestamp far in the past (1900)", "POST", "/v1/track",
     {"writeKey": T, "userId": "u", "event": "e", "timestamp": "1900-01-01T00:00:00Z"}, {}, 400,
     ""),
    ("timestamp that is not a time", "POST", "/v1/track",
     {"writeKey": T, "userId": "u", "event": "e", "timestamp": "yesterday-ish"}, {}, 400, ""),
    ("6th group type (ingestion: dropped with a warning)", "POST", "/batch/",
     batch(event(event="$groupidentify", properties={
         "$group_type": "sixth", "$group_key": "k", "$group_set": {"a": 1}})), {}, 200,
     "test_capture::test_sixth_group_type_is_dropped_with_a_warning"),
    ("6th group type (admin flag)", "POST", "/api/flags",
     {"key": "g6", "bucket_by": "sixth", "conditions": [{}]}, "admin", 422,
     "test_admin_flags::test_a_sixth_group_type_is_refused_with_a_clear_message"),
    ("6th group type (admin group type)", "POST", "/api/group_types", {"name": "sixth"}, "admin",
     422, "test_admin_resources"),
    ("unknown operator", "POST", "/api/flags", flag_with(operator="resembles"), "admin", 422,
     "test_admin_flags::test_engine_problems_are_422_with_field_errors"),
    ("regex RE2 cannot run (backreference)", "POST", "/api/flags",
     flag_with(operator="regex", value=r"(a)\1"), "admin", 422, ""),
    ("flag key collision", "POST", "/api/flags", FLAG, "admin", 409,
     "test_admin_flags::test_duplicate_key_is_409"),
    ("flag key collision with a deleted flag", "POST", "/api/flags",
     {"key": "deleted-one", "conditions": [{}]}, "admin", 409, ""),
    ("flag key that is not a key", "POST", "/api/flags", {"key": "a b/../c", "conditions": [{}]},
     "admin", 422, ""),
    ("flag body 10,000 deep", "POST", "/api/flags",
     raw('{"key": "deep", "payloads": {"true": ' + DEEP + '}}'), "admin", 400, ""),
    ("flag with NaN rollout", "POST", "/api/flags",
     raw('{"key": "nan", "conditions": [{"rollout_percentage": NaN}]}'), "admin", 400, ""),
]


@pytest.fixture
def seeded(app, app_project):
    store = app.extensions["flagsvc"].store
    pid = app_project["id"]
    for name in ("organization", "workspace", "project", "account", "team"):
        store.create_group_type(pid, name)
    store.create_flag(pid, FLAG)
    store.create_flag(pid, {"key": "deleted-one", "conditions": [{}]})
    store.set_flag_deleted(pid, "deleted-one", True)
    return store


def counts(store):
    conn = store.conn()
    tables = ("events", "groups", "persons", "person_distinct_ids", "memberships", "flags",
              "audit_log", "group_types")
    return {t: conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in tables}


@pytest.mark.parametrize("name,method,path,body,headers,status,elsewhere", CASES,
                         ids=[c[0] for c in CASES])
def test_hostile_input_is_a_clear_4xx_and_stores_nothing(client, app_project, seeded, name,
                                                         method, path, body, headers, status,
                                                         elsewhere):
    token = app_project["api_token"]
    hdrs = {"Authorization": f"Bearer {app_project['secret_key']}"} if headers == "admin" \
        else dict(headers)
    if isinstance(body, dict):
        import json
        data = json.dumps(body).replace(T, token).encode()
        hdrs.setdefault("Content-Type", "application/json")
    else:
        data = body.replace(T.encode(), token.encode())
        hdrs.setdefault("Content-Type", "application/json")
    before = counts(seeded)
    r = client.open(path, method=method, data=data, headers=hdrs)
    assert r.status_code == status, (name, r.status_code, r.get_data()[:300])
    reply = r.get_json()
    if status >= 400:
        assert reply["code"] and reply["message"], reply
    else:
        assert reply.get("warnings"), reply  # the 6th group type: dropped, never silently
    after = counts(seeded)
    if status == 200:  # the event itself is kept; the 6th type and its group are not
        assert after["group_types"] == before["group_types"] == 5
        assert after["groups"] == before["groups"]
    else:
        assert after == before, name


def test_catastrophic_regex_is_accepted_and_evaluates_in_linear_time(client, app_project):
    h = {"Authorization": f"Bearer {app_project['secret_key']}"}
    r = client.post("/api/flags", headers=h, json={"key": "redos", "conditions": [{"properties": [
        {"type": "person", "key": "name", "operator": "regex", "value": "^(a+)+$"}]}]})
    assert r.status_code == 201
    evil = "a" * 8_000 + "!"  # under MAX_PROPERTY_VALUE_LENGTH; 30 would hang a backtracker
    started = time.perf_counter()
    r = client.post("/flags/?v=2", json={"api_key": app_project["api_token"], "distinct_id": "u",
                                         "person_properties": {"name": evil}})
    assert r.status_code == 200
    assert r.get_json()["flags"]["redos"]["enabled"] is False
    assert time.perf_counter() - started < 1.0  # backtracking engines take forever here


def test_hierarchy_cycles_and_deep_chains_do_not_hang_decide(app, client, app_project):
    store = app.extensions["flagsvc"].store
    pid, now = app_project["id"], time.time()
    calls = [Call("group", "c1", now, group_type="workspace", group_key="w1",
                  group_set={"parent_group_id": "w2", "parent_group_type": "workspace"}),
             Call("group", "c2", now, group_type="workspace", group_key="w2",
                  group_set={"parent_group_id": "w1", "parent_group_type": "workspace"})]
    calls += [Call("group", f"d{i}", now, group_type="project", group_key=f"p{i}",
                   group_set={"parent_group_id": f"p{i + 1}", "parent_group_type": "project"})
              for i in range(50)]
    store.ingest(pid, calls)
    store.create_flag(pid, {"key": "by-account", "bucket_by": "account", "conditions": [{}]})
    started = time.perf_counter()
    for groups in ({"workspace": "w1"}, {"project": "p0"}):
        r = client.post("/flags/?v=2", json={"api_key": app_project["api_token"],
                                             "groups": groups})
        assert r.status_code == 200
        assert r.get_json()["flags"]["by-account"]["reason"]["code"] == "no_group_type"
    assert time.perf_counter() - started < 2.0


# Amplitude and Mixpanel answer in their own shapes (the stock SDKs read them): Amplitude
# `{code, error}`, Mixpanel verbose `{status: 0, error}`; the same rule: 4xx, nothing stored.
def amp(*events, key=T):
    return {"api_key": key, "events": list(events)}


def mp_form(data: str, verbose: bool = True) -> bytes:
    from urllib.parse import urlencode
    return urlencode({"data": data, **({"verbose": 1} if verbose else {})}).encode()


FORM = {"Content-Type": "application/x-www-form-urlencoded"}
TOOL_CASES = [
    ("amplitude: events is a string", "/2/httpapi", {"api_key": T, "events": "x"}, {}, 400,
     "events"),
    ("amplitude: unknown api key", "/2/httpapi", amp({"event_type": "e", "user_id": "u"},
                                                      key="nope"), {}, 400,
     "Invalid API key: nope"),
    ("amplitude: no user_id nor device_id", "/2/httpapi", amp({"event_type": "e"}), {}, 400,
     "user_id"),
    ("amplitude: time is a string", "/batch", amp({"event_type": "e", "user_id": "u",
                                                   "time": "soon"}), {}, 400, "time"),
    ("amplitude: time before 2000", "/2/httpapi", amp({"event_type": "e", "user_id": "u",
                                                       "time": 1000}), {}, 400, "2000"),
    ("amplitude: unknown user property operation", "/2/httpapi",
     amp({"event_type": "$identify", "user_id": "u", "user_properties": {"$bogus": {}}}), {},
     400, "$bogus"),
    ("amplitude: $groupidentify without groups", "/2/httpapi",
     amp({"event_type": "$groupidentify", "group_properties": {"$set": {"a": 1}}}), {}, 400,
     "groups"),
    ("amplitude: identification not JSON", "/groupidentify",
     b"api_key=__TOKEN__&identification=%7Bnope", FORM, 400, "identification"),
    ("amplitude: 10,000-deep event", "/2/httpapi",
     raw('{"api_key": "__TOKEN__", "events": [{"event_type": "e", "user_id": "u", '
         '"event_properties": {"a": ' + DEEP + '}}]}'), {}, 400, "JSON"),
    ("mixpanel: data neither JSON nor base64", "/track", mp_form("%%%"), FORM, 400, "base64"),
    ("mixpanel: track without distinct_id", "/track",
     mp_form('{"event": "e", "properties": {"token": "__TOKEN__"}}'), FORM, 400, "distinct_id"),
    ("mixpanel: unknown token", "/engage",
     mp_form('{"$token": "nope", "$distinct_id": "u", "$set": {"a": 1}}'), FORM, 401, "token"),
    ("mixpanel: $unset is not a list", "/engage",
     mp_form('{"$token": "__TOKEN__", "$distinct_id": "u", "$unset": "a"}'), FORM, 400,
     "$unset"),
    ("mixpanel: group without $group_id", "/groups",
     mp_form('{"$token": "__TOKEN__", "$group_key": "account", "$set": {"a": 1}}'), FORM, 400,
     "$group_id"),
    ("mixpanel: $set is a list", "/groups",
     mp_form('{"$token": "__TOKEN__", "$group_key": "account", "$group_id": "a", '
             '"$set": [1]}'), FORM, 400, "$set"),
    ("mixpanel: time in the far future", "/track",
     mp_form('{"event": "e", "properties": {"token": "__TOKEN__", "distinct_id": "u", '
             '"time": 99999999999}}'), FORM, 400, "future"),
    # the paths and encodings the rows above do not reach
    ("amplitude: /identify form without user_id", "/identify",
     b'api_key=__TOKEN__&identification=%5B%7B%22user_properties%22%3A%7B%7D%7D%5D', FORM,
     400, "user_id"),
    ("amplitude: /groupidentify JSON without group_value", "/groupidentify",
     {"api_key": T, "identification": [{"group_type": "account",
                                        "group_properties": {"$set": {"a": 1}}}]}, {}, 400,
     "group_value"),
    ("amplitude: /identify unknown api key", "/identify",
     b'api_key=nope&identification=%7B%22user_id%22%3A%22u%22%7D', FORM, 400,
     "Invalid API key: nope"),
    ("amplitude: /batch events is an object", "/batch", {"api_key": T, "events": {"a": 1}},
     {}, 400, "events"),
    ("amplitude: truncated gzip", "/2/httpapi",
     gzip.compress(b'{"api_key": "__TOKEN__", "events": []}')[:-6],
     {"Content-Encoding": "gzip"}, 400, "gzip"),
    ("amplitude: body over the limit (9 MiB)", "/2/httpapi",
     raw('{"api_key": "__TOKEN__", "pad": "' + "x" * (9 * MiB) + '"}'), {}, 413, "limit"),
    ("amplitude: group types beyond the 6th are dropped, not created", "/2/httpapi",
     amp({"event_type": "$groupidentify", "groups": {"sixth": "k"},
          "group_properties": {"$set": {"a": 1}}}), {}, 200, "sixth"),
    ("mixpanel: engage without $distinct_id", "/engage",
     mp_form('{"$token": "__TOKEN__", "$set": {"a": 1}}'), FORM, 400, "$distinct_id"),
    ("mixpanel: form without a data field", "/track", b"verbose=1&ip=0", FORM, 400, "data"),
    ("mixpanel: data is a number", "/groups", mp_form("5"), FORM, 400, "JSON"),
    ("mixpanel: base64 of not JSON", "/track",
     mp_form(base64.b64encode(b"{nope").decode()), FORM, 400, "JSON"),
    ("mixpanel: the body is data, truncated gzip", "/track?verbose=1",
     gzip.compress(b'[{"event": "e", "properties": {}}]')[:-6],
     {"Content-Encoding": "gzip"}, 400, "gzip"),
    ("mixpanel: not verbose, still refused", "/track",
     mp_form('{"event": "e", "properties": {"token": "__TOKEN__"}}', verbose=False), FORM,
     400, "0"),
    ("mixpanel: $groups is a list", "/track",
     mp_form('{"event": "e", "properties": {"token": "__TOKEN__", "distinct_id": "u", '
             '"$groups": ["p1"]}}'), FORM, 400, "$groups"),
    ("mixpanel: group types beyond the 6th are dropped, not created", "/groups",
     mp_form('{"$token": "__TOKEN__", "$group_key": "sixth", "$group_id": "k", '
             '"$set": {"a": 1}}'), FORM, 200, "sixth"),
    ("segment: bare groupId is not a string", "/v1/track",
     {"writeKey": T, "userId": "u", "event": "e", "context": {"groupId": {"id": 1}}}, {}, 400,
     "groupId"),
]


@pytest.mark.parametrize("name,path,body,headers,status,says", TOOL_CASES,
                         ids=[c[0] for c in TOOL_CASES])
def test_amplitude_and_mixpanel_bad_input_is_4xx_naming_the_field_and_stores_nothing(
        client, app_project, seeded, name, path, body, headers, status, says):
    import json
    token = app_project["api_token"]
    if isinstance(body, dict):
        data = json.dumps(body).replace(T, token).encode()
    else:
        data = body.replace(T.encode(), token.encode())
    hdrs = {"Content-Type": "application/json", **headers}
    before = counts(seeded)
    r = client.post(path, data=data, headers=hdrs)
    assert r.status_code == status, (name, r.status_code, r.get_data()[:300])
    after = counts(seeded)
    if status == 200:  # a 6th group type: the type and its group are not created, and said
        reply = r.get_json()
        assert says in " ".join(reply["warnings"]) and reply["dropped"] == 1, reply
        assert after["group_types"] == before["group_types"] == 5
        assert after["groups"] == before["groups"], name
        return
    if path.startswith("/v1/"):
        reply = r.get_json()
        assert reply["code"] and says in reply["message"], reply
    elif path.split("?")[0] in ("/track", "/engage", "/groups"):
        if b"verbose=1" not in data and "verbose=1" not in path:
            assert r.get_data() == b"0"  # Mixpanel's non-verbose refusal
        else:
            reply = r.get_json()
            assert reply["status"] == 0 and says in reply["error"], reply
    else:
        reply = r.get_json()
        assert reply["code"] == status and says in reply["error"], reply
    assert after == before, name
