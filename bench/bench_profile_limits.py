"""Issue 14, second attack run: a group's stored properties piled up through /batch/ (16
requests × 5 `$groupidentify` events × 1,000 fresh keys × 900 B), then a one-key $set and
decides naming that group; and a decide claiming a 4.9 MB `email`. In-process (Flask test
client, one SQLite file). Run against two checkouts side by side:

    PYTHONPATH=/work/main python bench/bench_profile_limits.py
    PYTHONPATH=.          python bench/bench_profile_limits.py
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
import time
import uuid

from flagsvc.app import create_app


def _post(client, path, body):
    return client.post(path, data=json.dumps(body), headers={"Content-Type": "application/json"})


def _group_set(traits):
    return {"event": "$groupidentify", "distinct_id": "u", "uuid": str(uuid.uuid4()),
            "properties": {"$group_type": "organization", "$group_key": "acme",
                           "$group_set": traits}}


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        app = create_app({"DATABASE": os.path.join(tmp, "b.db")})
        store = app.extensions["flagsvc"].store
        project = store.create_project("pile", ingestion_creates_group_types=True)
        token = project["api_token"]
        store.create_flag(project["id"], {"key": "f", "bucket_by": "organization",
                                          "conditions": [{"properties": [{
                                              "type": "group", "group_type": "organization",
                                              "key": "plan", "operator": "icontains",
                                              "value": "ent"}]}]})
        for i in range(20):  # string operators over a claimed email, as in the attack
            store.create_flag(project["id"], {"key": f"p{i}", "conditions": [{"properties": [{
                "type": "person", "key": "email", "operator": "regex",
                "value": f"@corp{i}\\.com$"}]}]})
        client = app.test_client()
        spans = []
        for b in range(16):
            batch = [_group_set({f"k{b}-{e}-{i}": "v" * 900 for i in range(1000)})
                     for e in range(5)]
            started = time.perf_counter()
            r = _post(client, "/batch/", {"api_key": token, "batch": batch})
            spans.append(time.perf_counter() - started)
            assert r.status_code == 200, r.data[:200]
        stored = store.get_group(project["id"], "organization", "acme")["properties"]
        print(f"batches: first {spans[0]:.2f} s, last {spans[-1]:.2f} s; stored "
              f"{len(stored)} keys, {len(json.dumps(stored)) / 1e6:.2f} MB")
        started = time.perf_counter()
        _post(client, "/batch/", {"api_key": token, "batch": [_group_set({"plan": "ent"})]})
        print(f"one-key $set after: {time.perf_counter() - started:.3f} s")
        times = []
        for i in range(20):
            app.extensions["flagsvc"].invalidate(project["id"]) if i % 5 == 0 else None
            started = time.perf_counter()
            _post(client, "/flags/?v=2", {"api_key": token, "groups": {"organization": "acme"}})
            times.append(time.perf_counter() - started)
        print(f"decide naming the group: p50 {statistics.median(times) * 1000:.1f} ms, "
              f"max {max(times) * 1000:.1f} ms")
        times, status = [], None
        for _ in range(5):
            started = time.perf_counter()
            r = _post(client, "/flags/?v=2", {"api_key": token, "distinct_id": "u",
                                              "person_properties": {"email": "e" * 4_900_000}})
            times.append(time.perf_counter() - started)
            status = r.status_code
        print(f"decide claiming a 4.9 MB email: HTTP {status}, p50 "
              f"{statistics.median(times) * 1000:.1f} ms")


if __name__ == "__main__":
    main()
