"""Ingestion batches of several processes written in parallel on PostgreSQL (no writers'
lock between them: store/concurrent.py): the result is what one writer would have stored.

Per-key last-write-wins is order-independent (store/merge.py), so the oracle is the same
batches written one after the other into a SQLite store: groups, persons, memberships and
events must come out equal, whatever interleaving the processes had."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import textwrap
from dataclasses import asdict
from pathlib import Path

import pytest
from conftest import drop_pg_schema, pg_schema_url

from flagsvc.ingest.model import Call
from flagsvc.store import Store

ROOT = Path(__file__).resolve().parent.parent

# A process writing its share of batches, each as soon as the previous one returns; all the
# processes start writing together (they wait for the file `go`).
WORKER = textwrap.dedent("""
    import json, sys, time
    from pathlib import Path
    from flagsvc.ingest.model import Call
    from flagsvc.store import Store

    url, pid, batches_file, go, out = sys.argv[1:6]
    batches = [[Call(**c) for c in b] for b in json.loads(Path(batches_file).read_text())]
    store = Store(url, migrate_now=False)
    while not Path(go).exists():
        time.sleep(0.005)
    results = []
    for b in batches:
        r = store.ingest(int(pid), b)
        results.append([r.stored, r.duplicates])
    store.close()
    Path(out).write_text(json.dumps(results))
""")


@pytest.fixture
def pg_url():
    schema, url = pg_schema_url()
    yield url
    drop_pg_schema(schema)


def _batches(rng: random.Random, n_batches: int, tag: str) -> list[list[Call]]:
    """Batches that all write the same few groups and persons, every key from every batch,
    with event times that interleave across batches ($set, $set_once, $unset, activity)."""
    out = []
    for b in range(n_batches):
        calls = []
        for j in range(40):
            ts = 1000.0 + rng.randrange(200) + rng.random()
            mid = f"{tag}-{b}-{j}"
            org = f"org-{rng.randrange(3)}"
            user = f"user-{rng.randrange(4)}"
            kind = rng.randrange(4)
            if kind == 0:
                calls.append(Call("group", mid, ts, distinct_id=user, group_type="organization",
                                  group_key=org, group_set={f"k{rng.randrange(6)}": mid},
                                  group_unset=[f"k{rng.randrange(6)}"] if j % 5 == 0 else []))
            elif kind == 1:
                calls.append(Call("identify", mid, ts, distinct_id=user,
                                  person_set={f"p{rng.randrange(5)}": mid},
                                  person_set_once={f"o{rng.randrange(3)}": mid},
                                  person_unset=[f"p{rng.randrange(5)}"] if j % 7 == 0 else []))
            else:
                calls.append(Call("track", mid, ts, distinct_id=user, event="e",
                                  groups={"organization": org}))
        out.append(calls)
    return out


def _run_processes(url: str, pid: int, shares: list[list[list[Call]]], tmp: Path) -> list:
    go = tmp / "go"
    procs, outs = [], []
    for i, share in enumerate(shares):
        f = tmp / f"batches{i}.json"
        f.write_text(json.dumps([[asdict(c) for c in b] for b in share]))
        outs.append(tmp / f"out{i}.json")
        procs.append(subprocess.Popen([sys.executable, "-c", WORKER, url, str(pid), str(f),
                                       str(go), str(outs[-1])], cwd=ROOT))
    go.write_text("")
    for p in procs:
        assert p.wait(240) == 0
    return [json.loads(o.read_text()) for o in outs]


def _state(store: Store, pid: int) -> dict:
    conn = store.conn()
    groups = {k: json.loads(p) if isinstance(p, str) else p for k, p in conn.execute(
        "SELECT group_key, properties FROM groups WHERE project_id = ?", (pid,))}
    persons = {d: json.loads(p) for d, p in conn.execute(
        "SELECT d.distinct_id, p.properties FROM person_distinct_ids d JOIN persons p "
        "ON p.id = d.person_id WHERE d.project_id = ?", (pid,))}
    members = sorted(conn.execute(
        "SELECT d.distinct_id, g.group_key FROM memberships m JOIN groups g ON g.id = "
        "m.group_id JOIN person_distinct_ids d ON d.person_id = m.person_id WHERE "
        "g.project_id = ?", (pid,)).fetchall())
    return {"groups": groups, "persons": persons, "memberships": [tuple(m) for m in members],
            "events": store.count_events(pid), "person_rows": conn.execute(
                "SELECT count(*) FROM persons WHERE project_id = ?", (pid,)).fetchone()[0]}


def _project(store: Store) -> int:
    pid = store.create_project("p", ingestion_creates_group_types=True)["id"]
    store.create_group_type(pid, "organization")
    return pid


def test_processes_writing_the_same_groups_and_persons_end_at_the_newest_values(
        pg_url, tmp_path):
    rng = random.Random(19)
    shares = [_batches(rng, 12, f"w{i}") for i in range(3)]
    pg = Store(pg_url)
    lite = Store(str(tmp_path / "oracle.db"))
    try:
        pid, lpid = _project(pg), _project(lite)
        results = _run_processes(pg_url, pid, shares, tmp_path)
        assert sum(s for r in results for s, _ in r) == 3 * 12 * 40
        for share in shares:  # the oracle: one writer, one batch after the other
            for b in share:
                lite.ingest(lpid, b)
        got, expected = _state(pg, pid), _state(lite, lpid)
        assert got == expected
        assert got["person_rows"] == 4 and len(got["groups"]) == 3
    finally:
        pg.close()
        lite.close()


def test_processes_sending_the_same_batches_store_each_event_once(pg_url, tmp_path):
    """Retries of the same batches through three processes at once, each in its own order
    (so that they meet on the same batch): every event stored once, counted once."""
    rng = random.Random(5)
    batches = _batches(rng, 12, "same")
    orders = [list(batches), batches[::-1], batches[6:] + batches[:6]]
    pg = Store(pg_url)
    try:
        pid = _project(pg)
        results = _run_processes(pg_url, pid, orders, tmp_path)
        stored = sum(s for r in results for s, _ in r)
        duplicates = sum(d for r in results for _, d in r)
        assert (stored, duplicates) == (12 * 40, 2 * 12 * 40)
        assert pg.count_events(pid) == 12 * 40
    finally:
        pg.close()


def test_installations_in_two_schemas_do_not_wait_for_each_other(pg_url):
    """Advisory locks belong to the database: the keys are mixed with the search_path."""
    import threading

    from flagsvc.store import db

    other_schema, other_url = pg_schema_url()
    a, b = Store(pg_url), Store(other_url)
    try:
        pb = b.create_project("p")["id"]
        held, release = threading.Event(), threading.Event()

        def hold():
            with db.transaction(a.conn()):
                held.set()
                release.wait(10)

        t = threading.Thread(target=hold)
        t.start()
        assert held.wait(10)
        done = threading.Event()
        threading.Thread(target=lambda: (b.update_project(pb, name="q"), done.set())).start()
        try:
            assert done.wait(5), "a write in another schema waited for this one's lock"
        finally:
            release.set()
            t.join()
    finally:
        a.close()
        b.close()
        drop_pg_schema(other_schema)
