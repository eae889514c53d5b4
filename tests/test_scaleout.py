"""Several real `flagsvc serve` nodes on one PostgreSQL database (SPEC §10): what one node
acknowledges, another serves within a second; mixed load through both nodes loses nothing
and lets exactly one of competing edits win; a node killed mid-ingestion loses nothing it
acknowledged. (bench/bench_scaleout.py measures the same over many trials.)"""

from __future__ import annotations

import threading
import time

import psycopg
import pytest
import requests
from conftest import drop_pg_schema, pg_schema_url
from stress import scaleout
from stress.harness import FLAG_KEY, Server, Tally, create_flag, ingest_loop, mixed_load

FRESHNESS = 1.0  # seconds (SPEC §10)


@pytest.fixture
def pg_url():
    schema, url = pg_schema_url("fn")
    yield url
    drop_pg_schema(schema)


def _nodes(pg_url, tmp_path, workers):
    # the real default cache interval (the harness shortens it for its SQLite tests)
    env = {"FLAGSVC_CACHE_SECONDS": "0.5"}
    a = Server(pg_url, workers=workers, log_dir=str(tmp_path), env=env).start()
    try:
        b = Server(pg_url, workers=workers, log_dir=str(tmp_path), env=env).start()
    except BaseException:
        a.stop()
        raise
    yield a, b
    b.stop()
    a.stop()
    for log in (a.logs(), b.logs()):
        assert "Traceback" not in log, log[-3000:]


@pytest.fixture
def two_nodes(pg_url, tmp_path):
    yield from _nodes(pg_url, tmp_path, 2)


@pytest.fixture
def two_single_worker_nodes(pg_url, tmp_path):
    """One worker each: a test can then be sure every worker has warm caches."""
    yield from _nodes(pg_url, tmp_path, 1)


def _stored_ids(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        return {r[0] for r in conn.execute("SELECT message_id FROM events")}


def test_a_change_through_one_node_is_served_by_the_other_within_a_second(two_nodes):
    a, b = two_nodes
    s = requests.Session()
    scaleout.create_flag(a.url)
    times = []
    for i in range(3):
        org = f"org-{i}"
        times.append(("property", scaleout.property_trial(s, a.url, b.url, org, "enterprise")))
        times.append(("property", scaleout.property_trial(s, b.url, a.url, org, "free")))
        scaleout.set_plan(s, a.url, org, "enterprise")
        times.append(("edit", scaleout.edit_trial(s, b.url, a.url, org, False)))
        times.append(("edit", scaleout.edit_trial(s, a.url, b.url, org, True)))
    slow = [(kind, round(t, 3)) for kind, t in times if t > FRESHNESS]
    assert not slow, times


def test_mixed_load_through_two_nodes_loses_nothing_and_one_edit_wins(two_nodes, pg_url):
    a, b = two_nodes
    create_flag(a.url)
    tally = Tally()
    threads = (mixed_load(a.url, 4.0, tally, ingesters=2, editors=2, deciders=2)
               + mixed_load(b.url, 4.0, tally, ingesters=2, editors=2, deciders=2))
    for t in threads:
        t.join(60)
    assert tally.server_errors() == 0, tally.status
    assert tally.acked_events and tally.acked_events <= _stored_ids(pg_url)
    versions = [v for v, _ in tally.acked_flag_versions]
    assert len(versions) == len(set(versions))  # never two winners of one version
    final = requests.get(f"{b.url}/api/flags/{FLAG_KEY}", headers={
        "Authorization": "Bearer fsk_reliability_secret_key_do_not_log"}, timeout=10).json()
    assert final["version"] == 1 + len(versions)
    assert not tally.errors


def test_kill_9_of_one_node_mid_ingestion_loses_nothing_acknowledged(two_nodes, pg_url):
    a, b = two_nodes
    tally = Tally()
    stop = threading.Event()
    deadline = time.monotonic() + 20
    threads = [threading.Thread(target=ingest_loop, args=(url, tally, stop, deadline, 10_000),
                                daemon=True) for url in (a.url, a.url, b.url)]
    for t in threads:
        t.start()
    time.sleep(1.5)
    a.kill()
    time.sleep(1.0)
    stop.set()
    for t in threads:
        t.join(30)
    assert tally.acked_events and tally.acked_events <= _stored_ids(pg_url)
    # the surviving node kept ingesting
    assert requests.get(b.url + "/readyz", timeout=5).status_code == 200


def _pg_ctl(action: str) -> None:
    import shutil
    import subprocess

    from tests.capabilities import need

    need("pg_ctlcluster", shutil.which("pg_ctlcluster") is not None,
         "the Debian postgresql-common scripts (to restart the server under load)")
    subprocess.run(["pg_ctlcluster", "15", "main", action, *(["-m", "fast"] if action == "stop"
                                                            else [])],
                   check=True, timeout=60, capture_output=True)


def test_postgresql_restarted_under_load_decide_answers_writes_refuse_then_recover(
        two_single_worker_nodes, pg_url):
    """PostgreSQL stopped under load: decide keeps answering from the nodes' caches, every
    write answers 503 (never a 2xx for data not stored), /readyz says unavailable; once the
    server is back every node recovers by itself (no restart of flagsvc). (A worker that
    never answered a request has nothing cached: its decide is a 503, as on SQLite.)"""
    a, b = two_single_worker_nodes
    s = requests.Session()
    scaleout.create_flag(a.url)
    orgs = [f"org-{i}" for i in range(5)]
    for org in orgs:
        scaleout.set_plan(s, a.url, org, "enterprise")
    time.sleep(1.0)

    def warm(node):  # from 4 threads at once: every worker gets requests (a sync worker
        session = requests.Session()  # that just answered tends to take the next one)
        for _ in range(10):
            for org in orgs:
                assert scaleout.decide(session, node.url, org) is True

    # every worker of both nodes has the token, the flags and the groups cached
    warmers = [threading.Thread(target=warm, args=(node,)) for node in (a, b) * 4]
    for t in warmers:
        t.start()
    for t in warmers:
        t.join(60)
    tally = Tally()
    stop = threading.Event()
    deadline = time.monotonic() + 60
    loader = threading.Thread(target=ingest_loop, args=(a.url, tally, stop, deadline, 100_000),
                              daemon=True)
    loader.start()
    time.sleep(0.5)
    _pg_ctl("stop")
    try:
        time.sleep(0.5)
        down: dict[str, list[int]] = {"decide": [], "ingest": [], "admin": [], "readyz": []}
        for i in range(10):
            node = (a, b)[i % 2]
            r = s.post(node.url + "/flags/?v=2", timeout=10, json={
                "api_key": "phc_reliability_public_token", "distinct_id": "u",
                "groups": {"organization": orgs[i % 5]}})
            down["decide"].append(r.status_code if r.status_code == 200 else r.text)
            if r.status_code == 200:
                assert r.json()["flags"][scaleout.FLAG]["enabled"] is True
            down["ingest"].append(s.post(node.url + "/batch/", timeout=10, json={
                "api_key": "phc_reliability_public_token", "batch": [
                    {"event": "e", "distinct_id": "u", "uuid": f"down-{i}"}]}).status_code)
            down["admin"].append(s.post(node.url + "/api/flags", timeout=10, headers={
                "Authorization": "Bearer fsk_reliability_secret_key_do_not_log"},
                json={"key": f"down-{i}"}).status_code)
            down["readyz"].append(s.get(node.url + "/readyz", timeout=10).status_code)
        assert set(down["decide"]) == {200}, down
        assert set(down["ingest"]) == {503} and set(down["admin"]) == {503}, down
        assert set(down["readyz"]) == {503}, down
    finally:
        _pg_ctl("start")
    recovered = time.monotonic() + 20
    for node in (a, b):
        while requests.get(node.url + "/readyz", timeout=10).status_code != 200:
            assert time.monotonic() < recovered, "a node did not recover"
            time.sleep(0.2)
    time.sleep(1.0)
    stop.set()
    loader.join(30)
    for node in (a, b):
        r = s.post(node.url + "/batch/", timeout=10, json={
            "api_key": "phc_reliability_public_token", "batch": [
                {"event": "e", "distinct_id": "u", "uuid": f"after-{node.port}"}]})
        assert r.status_code == 200, r.text
    stored = _stored_ids(pg_url)
    assert tally.acked_events <= stored  # no 2xx for anything not stored
    assert not stored & {f"down-{i}" for i in range(10)}
    assert tally.server_errors() > 0  # the load did see the outage (as 503s)


def _within(seconds, check):
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_stock_clients_through_two_nodes(two_single_worker_nodes):
    """The analytics clients an app already has send through one node; the flag clients it
    already has ask the other, all stock (segment-analytics-python, posthog, the OFREP
    provider): each change is served by the other node within a second."""
    from openfeature import api
    from openfeature.contrib.provider.ofrep import OFREPProvider
    from openfeature.evaluation_context import EvaluationContext
    from posthog import Posthog
    from segment.analytics import Client

    a, b = two_single_worker_nodes
    token = scaleout.TOKENS["api"]
    scaleout.create_flag(a.url)
    ph_a = Posthog(token, host=a.url, sync_mode=True)
    ph_b = Posthog(token, host=b.url, sync_mode=True)
    api.set_provider_and_wait(OFREPProvider(
        b.url, headers_factory=lambda: {"Authorization": f"Bearer {token}"}))
    of_b = api.get_client()
    try:
        def posthog_b(org):
            return ph_b.get_feature_flag(scaleout.FLAG, f"u-{org}", groups={"organization": org},
                                         send_feature_flag_events=False)

        def ofrep_b(org):
            return of_b.get_boolean_value(scaleout.FLAG, False, EvaluationContext(
                f"u-{org}", {"groups": {"organization": org}}))

        # (the flag was created through node A: node B knows it within the second too)
        assert _within(FRESHNESS, lambda: posthog_b("acme") is False)
        assert ofrep_b("globex") is False
        Client(token, host=a.url, sync_mode=True).group(
            "u-acme", "acme", {"group_type": "organization", "plan": "enterprise"})
        assert _within(FRESHNESS, lambda: posthog_b("acme") is True)
        ph_a.group_identify("organization", "globex", {"plan": "enterprise"})
        assert _within(FRESHNESS, lambda: ofrep_b("globex") is True)
        # and back: a flag edit through node B, served by node A to the stock client
        current = scaleout.version(requests.Session(), b.url)
        scaleout.set_active(requests.Session(), b.url, False, current)
        assert _within(FRESHNESS, lambda: ph_a.get_feature_flag(
            scaleout.FLAG, "u-acme", groups={"organization": "acme"},
            send_feature_flag_events=False) is False)
    finally:
        api.clear_providers()
