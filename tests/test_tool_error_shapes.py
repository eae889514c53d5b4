"""Every error answer of an ingestion route in the shape its tool's stock client reads, so
the client reports the failure instead of crashing on it (the Python `mixpanel` client used
to raise `KeyError: 'status'` on flagsvc's own error body): refused input (400), an unknown
token (401), a body over the limit (413), a database that cannot be reached (503) and an
unexpected failure (500), each through the stock clients — `mixpanel` (Python; npm, verbose
and not), `amplitude-analytics`, `posthog` — and on the wire."""

from __future__ import annotations

import json
import sqlite3
import time
from urllib.parse import urlparse

import pytest
import requests
from amplitude import Amplitude, BaseEvent, Config
from mixpanel import Consumer, Mixpanel, MixpanelException
from posthog.request import APIError, batch_post

from tests.capabilities import run_node
from tests.conftest import start_live_server

LIMIT = 64 * 1024


@pytest.fixture
def server(db_path):
    srv = start_live_server(db_path, MAX_BODY_BYTES=LIMIT, MAX_INGEST_BODY_BYTES=LIMIT)
    srv.project = srv.store.create_project("errors", ingestion_creates_group_types=True)
    yield srv
    srv.stop()


def _fault(server, monkeypatch, fault):
    """Arms one failure; returns (token, properties) for the request that meets it."""
    token, props = server.project["api_token"], {"n": 1}
    if fault == "unknown token":
        token = "nope"
    elif fault == "oversize":
        props = {"blob": "x" * (2 * LIMIT)}
    elif fault in ("database unavailable", "unexpected"):
        exc = (sqlite3.OperationalError("database is locked") if fault != "unexpected"
               else RuntimeError("boom"))

        def ingest(*args, **kwargs):
            raise exc
        monkeypatch.setattr(server.store, "ingest", ingest)
    return token, props


FAULTS = {"refused": 400, "unknown token": 401, "oversize": 413,
          "database unavailable": 503, "unexpected": 500}


@pytest.mark.parametrize("fault", FAULTS)
def test_python_mixpanel_client_reports_every_error(server, monkeypatch, fault):
    token, props = _fault(server, monkeypatch, fault)
    url = server.url
    mp = Mixpanel(token, consumer=Consumer(events_url=url + "/track",
                                           people_url=url + "/engage",
                                           groups_url=url + "/groups", retry_limit=0))
    distinct = "" if fault == "refused" else "u1"
    with pytest.raises(MixpanelException, match="Mixpanel error: .+"):
        mp.track(distinct, "e", props)
    with pytest.raises(MixpanelException, match="Mixpanel error: .+"):
        mp.group_set("account", "" if fault == "refused" else "a1", props)
    assert server.store.count_events(server.project["id"]) == 0


@pytest.mark.parametrize("fault", FAULTS)
@pytest.mark.parametrize("verbose", [False, True])
def test_node_mixpanel_client_reports_every_error(server, monkeypatch, fault, verbose):
    token, props = _fault(server, monkeypatch, fault)
    u = urlparse(server.url)
    out = run_node("""
const Mixpanel = require('mixpanel');
const cfg = JSON.parse(process.env.CFG);
const mp = Mixpanel.init(cfg.token, {host: cfg.host, port: cfg.port, protocol: 'http',
                                     verbose: cfg.verbose});
const p = (f) => new Promise((ok) => f((e) => ok(e ? String(e.message) : null)));
if (cfg.props.blob) cfg.props.blob = 'x'.repeat(cfg.props.blob);
(async () => {
  const track = await p(cb => mp.track('e', {distinct_id: cfg.distinct, ...cfg.props}, cb));
  const people = await p(cb => mp.people.set(cfg.distinct, cfg.props, cb));
  console.log(JSON.stringify({track, people}));
})();
""", env={"CFG": json.dumps({"token": token, "host": u.hostname, "port": u.port,
                             "verbose": verbose,
                             "props": {"blob": len(props["blob"])} if "blob" in props else props,
                             "distinct": "" if fault == "refused" else "u1"})})
    for call in ("track", "people"):
        # (the npm client sends single calls as GETs: over the HTTP server's request-line
        # limit the answer is the server's own, an error the client reports all the same)
        if fault != "oversize":
            assert out[call] and out[call].startswith("Mixpanel Server Error: "), out
        assert out[call] and "undefined" not in out[call], out
    assert server.store.count_events(server.project["id"]) == 0


@pytest.mark.parametrize("path", ["/track", "/engage", "/groups"])
@pytest.mark.parametrize("fault", FAULTS)
def test_mixpanel_wire_shapes(server, monkeypatch, fault, path):
    token, props = _fault(server, monkeypatch, fault)
    record = {"/track": {"event": "e", "properties": {"token": token, "distinct_id": "u1",
                                                      **props}},
              "/engage": {"$token": token, "$distinct_id": "u1", "$set": props},
              "/groups": {"$token": token, "$group_key": "account", "$group_id": "a1",
                          "$set": props}}[path]
    if fault == "refused":
        record.pop("properties", None) if path == "/track" else record.pop(
            "$distinct_id" if path == "/engage" else "$group_id")
        if path == "/track":
            record["properties"] = {"token": token}
    data = json.dumps(record)
    verbose = requests.post(server.url + path, data={"data": data, "verbose": "1"}, timeout=5)
    assert verbose.status_code == FAULTS[fault], verbose.text
    body = verbose.json()
    assert body["status"] == 0 and isinstance(body["error"], str) and body["error"]
    quiet = requests.post(server.url + path, data={"data": data}, timeout=5)
    assert quiet.status_code == FAULTS[fault]
    if fault == "oversize":  # an unread form does not say it is not verbose
        assert quiet.json()["status"] == 0
    else:
        assert quiet.text == "0"
    get = requests.get(server.url + path, params={"data": data, "verbose": "0"}, timeout=5)
    # (a GET's query is not the body: over the server's request-line limit, its own 414)
    assert get.text == "0" or get.status_code == 414


@pytest.mark.parametrize("fault", FAULTS)
def test_amplitude_errors_carry_a_numeric_code(server, monkeypatch, fault):
    token, props = _fault(server, monkeypatch, fault)
    event = {"event_type": "e", "user_id": "" if fault == "refused" else "u1",
             "event_properties": props}
    status = 400 if fault == "unknown token" else FAULTS[fault]  # Amplitude: 400 Invalid API key
    for path in ("/2/httpapi", "/batch"):
        r = requests.post(server.url + path, json={"api_key": token, "events": [event]},
                          timeout=5)
        assert r.status_code == status, r.text
        assert r.json()["code"] == status and r.json()["error"], r.text
        if fault == "unknown token":  # Amplitude's answer, the prefix both SDKs match
            assert r.json()["error"] == "Invalid API key: nope", r.text
    form = requests.post(server.url + "/identify", timeout=5, data={
        "api_key": token, "identification": json.dumps(
            [{"user_id": "" if fault == "refused" else "u1", "user_properties": {
                "$set": props}}])})
    assert form.status_code == status and form.json()["code"] == status


@pytest.mark.parametrize("fault", ["database unavailable", "unexpected"])
def test_python_amplitude_client_gets_the_code(server, monkeypatch, fault):
    token, props = _fault(server, monkeypatch, fault)
    results = []
    client = Amplitude(token, Config(server_url=server.url + "/2/httpapi", flush_max_retries=1,
                                     callback=lambda e, code, msg: results.append(code)))
    client.track(BaseEvent("e", user_id="u1", event_properties=props))
    client.shutdown()
    deadline = time.time() + 10
    while not results and time.time() < deadline:
        time.sleep(0.1)
    assert results == [FAULTS[fault]], results


@pytest.mark.parametrize("fault", FAULTS)
def test_posthog_client_reads_the_detail(server, monkeypatch, fault):
    token, props = _fault(server, monkeypatch, fault)
    distinct = "" if fault == "refused" else "u1"
    with pytest.raises(APIError) as info:
        batch_post(token, host=server.url, batch=[{
            "event": "e", "distinct_id": distinct, "properties": props,
            "uuid": "00000000-0000-4000-8000-000000000001"}])
    assert info.value.status == FAULTS[fault]
    assert not str(info.value.message).lstrip().startswith("{"), info.value.message
