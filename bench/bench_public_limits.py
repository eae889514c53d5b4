"""Issue 14's public-surface attacks, timed in-process (Flask test client, one SQLite file):

1. decide with a 442,722-entry `groups` map (4.4 MB) for a flag bucketed by a type the
   request lacks (hierarchy inference walked from every entry);
2. one PostHog event naming 40,000 unknown group types (warnings de-duplicated in a list
   under the write lock);
3. decide with a 10,000-entry map (issue 14: 8 clients sending those raised everyone's p50
   from 2.6 ms to 1.8 s): the CPU one such request costs.

Run against any checkout: `PYTHONPATH=<checkout> python bench/bench_public_limits.py`, or
against a running server (`flagsvc serve`): `python bench/bench_public_limits.py --url
http://127.0.0.1:8000 --token phc_... --secret fsk_...` (before/after figures in
bench/RELIABILITY.md were measured side by side in one session).
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
import uuid

from flagsvc.app import create_app


def _project(store):
    try:
        return store.create_project("attack", ingestion_creates_group_types=True)
    except TypeError:  # before migration 0005
        return store.create_project("attack")


def _post(client, path, body):
    return client.post(path, data=json.dumps(body), headers={"Content-Type": "application/json"})


def over_http(url: str, token: str, secret: str) -> None:
    import requests

    admin = {"Authorization": f"Bearer {secret}"}
    requests.post(url + "/api/flags", headers=admin, timeout=30, json={
        "key": "org-flag", "bucket_by": "organization", "conditions": [{}]})
    alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-"
    groups = {a + b + c: "k" for a in alphabet for b in alphabet for c in alphabet}
    groups = dict(list(groups.items())[:442_722])
    for what, path, body in (
            ("decide, 442,722-entry groups map", "/flags/?v=2",
             {"api_key": token, "distinct_id": "u", "groups": groups}),
            ("ingest, one event naming 40,000 group types", "/batch/",
             {"api_key": token, "batch": [{"event": "e", "distinct_id": "u",
                                           "uuid": str(uuid.uuid4()), "properties": {
                                               "$groups": {f"junk{i}": "k"
                                                           for i in range(40_000)}}}]})):
        started = time.perf_counter()
        r = requests.post(url + path, data=json.dumps(body), timeout=120,
                          headers={"Content-Type": "application/json"})
        print(f"{what}: HTTP {r.status_code}, {time.perf_counter() - started:.2f} s, "
              f"{len(r.content)} bytes")
    _p50_beside_hostile(url, token)


def _p50_beside_hostile(url: str, token: str, seconds: float = 8.0) -> None:
    """Everyone's decide p50 alone, then while 8 clients send 10,000-entry maps."""
    import threading

    import requests

    small = json.dumps({"api_key": token, "distinct_id": "u",
                        "groups": {f"{i:x}": "k" for i in range(10_000)}})
    normal = json.dumps({"api_key": token, "distinct_id": "u", "groups": {"organization": "o"}})
    headers = {"Content-Type": "application/json"}
    stop = threading.Event()

    def hostile() -> None:
        with requests.Session() as s:
            while not stop.is_set():
                s.post(url + "/flags/?v=2", data=small, headers=headers, timeout=60)

    def p50() -> float:
        times, end = [], time.monotonic() + seconds
        with requests.Session() as s:
            while time.monotonic() < end:
                t = time.perf_counter()
                s.post(url + "/flags/?v=2", data=normal, headers=headers, timeout=60)
                times.append(time.perf_counter() - t)
        return statistics.median(times) * 1000

    alone = p50()
    threads = [threading.Thread(target=hostile, daemon=True) for _ in range(8)]
    for t in threads:
        t.start()
    loaded = p50()
    stop.set()
    for t in threads:
        t.join()
    print(f"decide p50: {alone:.1f} ms alone, {loaded:.1f} ms beside 8 clients sending "
          "10,000-entry maps")


def main() -> None:
    if "--url" in sys.argv:
        args = dict(zip(sys.argv[1::2], sys.argv[2::2], strict=False))
        over_http(args["--url"], args["--token"], args["--secret"])
        return
    with tempfile.TemporaryDirectory() as tmp:
        app = create_app({"DATABASE": f"{tmp}/a.db", "LOG_LEVEL": "ERROR"})
        store = app.extensions["flagsvc"].store
        project = _project(store)
        token = project["api_token"]
        store.create_flag(project["id"], {"key": "acct", "bucket_by": "account",
                                          "conditions": [{}]})
        store.create_flag(project["id"], {"key": "everyone", "conditions": [{}]})
        client = app.test_client()

        alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-"
        groups = {a + b + c: "k" for a in alphabet for b in alphabet for c in alphabet}
        groups = dict(list(groups.items())[:442_722])
        started = time.perf_counter()
        r = _post(client, "/flags/?v=2", {"api_key": token, "distinct_id": "u", "groups": groups})
        print(f"decide, 442,722-entry groups map: HTTP {r.status_code}, "
              f"{time.perf_counter() - started:.2f} s, {len(r.get_data())} bytes")

        event = {"event": "e", "distinct_id": "u", "uuid": str(uuid.uuid4()),
                 "properties": {"$groups": {f"junk{i}": "k" for i in range(40_000)}}}
        started = time.perf_counter()
        r = _post(client, "/batch/", {"api_key": token, "batch": [event]})
        print(f"ingest, one event naming 40,000 group types: HTTP {r.status_code}, "
              f"{time.perf_counter() - started:.2f} s, {len(r.get_data())} bytes")

        small = {f"{i:x}": "k" for i in range(10_000)}
        times = []
        for _ in range(20):
            t = time.perf_counter()
            r = _post(client, "/flags/?v=2", {"api_key": token, "distinct_id": "u",
                                              "groups": small})
            times.append(time.perf_counter() - t)
        print(f"decide, 10,000-entry groups map: HTTP {r.status_code}, median "
              f"{statistics.median(times) * 1000:.1f} ms of CPU per request")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
