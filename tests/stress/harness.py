"""A real `flagsvc serve` (gunicorn, several workers) in its own process group, and the load
loops the reliability tests and stress scripts drive against it.

Only loopback traffic; every loop is bounded by a deadline and a request count. Each loop
records what the server *acknowledged* (2xx) so a test can check that exactly that is in the
database afterwards.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

API_TOKEN = "phc_reliability_public_token"
SECRET_KEY = "fsk_reliability_secret_key_do_not_log"
FLAG_KEY = "load-flag"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def flagsvc_bin() -> str:
    candidate = Path(sys.executable).with_name("flagsvc")
    return str(candidate) if candidate.exists() else "flagsvc"


class Server:
    """`flagsvc serve --workers N` on a free loopback port, stdout/stderr captured to files."""

    def __init__(self, db_path: str, workers: int = 4, log_dir: str | None = None,
                 env: dict[str, str] | None = None, gunicorn_conf: bool = False,
                 preexec_fn: Any = None, args: list[str] | None = None) -> None:
        """`gunicorn_conf`: run `gunicorn -c python:flagsvc.gunicorn_conf wsgi:app` instead
        of `flagsvc serve` (a deployment's own gunicorn command). `preexec_fn`: run in the
        server process before it starts (say, resource.setrlimit). `args`: more options of
        the command line."""
        self.preexec_fn = preexec_fn
        self.db_path = db_path
        self.gunicorn_conf = gunicorn_conf
        self.workers = workers
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_dir = Path(log_dir or Path(db_path).parent)
        self.env = {**os.environ, "FLAGSVC_DATABASE": db_path, "FLAGSVC_API_TOKEN": API_TOKEN,
                    "FLAGSVC_SECRET_KEY": SECRET_KEY, "FLAGSVC_LOG_LEVEL": "INFO",
                    "FLAGSVC_CACHE_SECONDS": "0.2", **(env or {})}
        self.args = list(args or [])
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    @property
    def log_paths(self) -> list[Path]:
        return sorted(self.log_dir.glob("server-*.log"))

    def start(self, timeout: float = 30.0) -> Server:
        self.starts += 1
        with open(self.log_dir / f"server-{self.port}-{self.starts}.log", "wb") as log:
            bind = ["--bind", f"127.0.0.1:{self.port}", "--workers", str(self.workers),
                    *self.args]
            argv = ([str(Path(sys.executable).with_name("gunicorn")), "-c",
                     "python:flagsvc.gunicorn_conf", *bind, "wsgi:app"]
                    if self.gunicorn_conf else [flagsvc_bin(), "serve", *bind])
            self.proc = subprocess.Popen(
                argv, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True, preexec_fn=self.preexec_fn,
                cwd=Path(__file__).resolve().parents[2])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"flagsvc serve exited with {self.proc.returncode}:\n"
                                   + self.logs()[-3000:])
            try:
                if requests.get(self.url + "/readyz", timeout=1).status_code == 200:
                    self._wait_for_workers(deadline)
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.1)
        self.kill()
        raise RuntimeError("flagsvc serve did not become ready:\n" + self.logs()[-3000:])

    def _wait_for_workers(self, deadline: float) -> None:
        """Gunicorn answers as soon as one worker is up; wait until all have booted."""
        while time.monotonic() < deadline:
            if self.logs().count("Booting worker") >= self.workers * self.starts:
                return
            time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL the whole process group (arbiter and every worker), as a crash would."""
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)
        self._reap_group()

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            self._reap_group()
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        except ProcessLookupError:
            pass
        self._reap_group()

    def _reap_group(self) -> None:
        """Wait until no process of the group is left (workers die a moment after SIGKILL)."""
        if self.proc is None:
            return
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.killpg(self.proc.pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)

    def logs(self) -> str:
        return "".join(p.read_text(errors="replace") for p in self.log_paths)

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def admin(secret: str = SECRET_KEY) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def create_flag(url: str, key: str = FLAG_KEY) -> dict[str, Any]:
    r = requests.post(url + "/api/flags", headers=admin(), timeout=10, json={
        "key": key, "bucket_by": "organization",
        "conditions": [{"properties": [{"type": "group", "group_type": "organization",
                                        "key": "plan", "operator": "exact",
                                        "value": ["enterprise"]}],
                        "rollout_percentage": 50}]})
    r.raise_for_status()
    return r.json()


@dataclass
class Tally:
    """What the load loops saw, shared by their threads."""

    acked_events: set[str] = field(default_factory=set)
    acked_flag_versions: list[tuple[int, int]] = field(default_factory=list)  # (version, pct)
    status: dict[str, dict[int, int]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def count(self, kind: str, status: int) -> None:
        with self.lock:
            self.status.setdefault(kind, {})
            self.status[kind][status] = self.status[kind].get(status, 0) + 1

    def note(self, kind: str, r: requests.Response) -> None:
        self.count(kind, r.status_code)
        if r.status_code >= 500 or "locked" in r.text:
            with self.lock:
                self.errors.append(f"{kind} {r.status_code}: {r.text[:300]}")

    def total(self, kind: str | None = None) -> int:
        with self.lock:
            kinds = [kind] if kind else list(self.status)
            return sum(sum(self.status.get(k, {}).values()) for k in kinds)

    def server_errors(self) -> int:
        with self.lock:
            return sum(n for codes in self.status.values() for s, n in codes.items() if s >= 500)


def _posthog_batch(ids: list[str], org: str) -> dict[str, Any]:
    events = []
    for i, mid in enumerate(ids):
        if i % 3 == 0:
            events.append({"event": "$groupidentify", "distinct_id": "u-" + org, "uuid": mid,
                           "properties": {"$group_type": "organization", "$group_key": org,
                                          "$group_set": {"plan": "enterprise", "seq": i}}})
        else:
            events.append({"event": "clicked", "distinct_id": f"u-{org}-{i % 5}", "uuid": mid,
                           "properties": {"$groups": {"organization": org}, "n": i}})
    return {"api_key": API_TOKEN, "batch": events}


def _segment_batch(ids: list[str], org: str) -> dict[str, Any]:
    batch = []
    for i, mid in enumerate(ids):
        if i % 2 == 0:
            batch.append({"type": "group", "messageId": mid, "userId": "s-" + org, "groupId": org,
                          "traits": {"plan": "pro", "i": i}})
        else:
            batch.append({"type": "track", "messageId": mid, "userId": "s-" + org,
                          "event": "viewed", "context": {"groupId": org}})
    return {"writeKey": API_TOKEN, "batch": batch}


def ingest_loop(url: str, tally: Tally, stop: threading.Event, deadline: float,
                max_requests: int, batch_size: int = 20) -> None:
    """POST batches alternately to /batch/ (PostHog) and /v1/batch (Segment); record the
    message ids of every batch answered 2xx."""
    s = requests.Session()
    for n in range(max_requests):
        if stop.is_set() or time.monotonic() > deadline:
            return
        ids = [uuid.uuid4().hex for _ in range(batch_size)]
        org = f"org-{n % 50}"
        posthog = n % 2 == 0
        path, body = ("/batch/", _posthog_batch(ids, org)) if posthog else \
            ("/v1/batch", _segment_batch(ids, org))
        try:
            r = s.post(url + path, json=body, timeout=30)
        except requests.RequestException:
            continue  # not acknowledged: may or may not be stored (only during a crash)
        tally.note("ingest", r)
        if 200 <= r.status_code < 300:
            with tally.lock:
                tally.acked_events.update(ids)


def edit_loop(url: str, tally: Tally, stop: threading.Event, deadline: float,
              max_requests: int, key: str = FLAG_KEY) -> None:
    """GET the flag, PATCH its rollout with If-Match; 409 (another writer won) is expected."""
    s = requests.Session()
    for n in range(max_requests):
        if stop.is_set() or time.monotonic() > deadline:
            return
        try:
            got = s.get(f"{url}/api/flags/{key}", headers=admin(), timeout=30)
            tally.note("admin_get", got)
            if got.status_code != 200:
                continue
            version = got.json()["version"]
            pct = (version * 7 + n) % 101
            conditions = got.json()["conditions"]
            conditions[0]["rollout_percentage"] = pct
            r = s.patch(f"{url}/api/flags/{key}", json={"conditions": conditions},
                        headers={**admin(), "If-Match": str(version)}, timeout=30)
        except requests.RequestException:
            continue
        tally.note("admin_patch", r)
        if r.status_code == 200:
            with tally.lock:
                tally.acked_flag_versions.append((r.json()["version"], pct))


def decide_loop(url: str, tally: Tally, stop: threading.Event, deadline: float,
                max_requests: int, token: str = API_TOKEN) -> None:
    s = requests.Session()
    for n in range(max_requests):
        if stop.is_set() or time.monotonic() > deadline:
            return
        body = {"api_key": token, "distinct_id": f"u{n}",
                "groups": {"organization": f"org-{n % 50}"}}
        try:
            r = s.post(url + "/flags/?v=2", json=body, timeout=30)
        except requests.RequestException:
            continue
        tally.note("decide", r)
        if r.status_code == 200 and r.json().get("errorsWhileComputingFlags"):
            with tally.lock:
                tally.errors.append("decide: errorsWhileComputingFlags")


def run_threads(targets: list[tuple[Any, tuple]]) -> list[threading.Thread]:
    threads = [threading.Thread(target=fn, args=args, daemon=True) for fn, args in targets]
    for t in threads:
        t.start()
    return threads


def mixed_load(url: str, seconds: float, tally: Tally, stop: threading.Event | None = None,
               ingesters: int = 4, editors: int = 3, deciders: int = 4,
               max_requests: int = 100_000) -> list[threading.Thread]:
    """Start the three kinds of loops; returns the threads (join them)."""
    stop = stop or threading.Event()
    deadline = time.monotonic() + seconds
    args = (url, tally, stop, deadline, max_requests)
    return run_threads([(ingest_loop, args)] * ingesters + [(edit_loop, args)] * editors
                       + [(decide_loop, args)] * deciders)


# ------------------------------------------------------------ checks on the database file

def open_readonly(db_path: str) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=15)


def stored_message_ids(db_path: str) -> set[str]:
    with open_readonly(db_path) as conn:
        return {r[0] for r in conn.execute("SELECT message_id FROM events")}


def integrity(db_path: str) -> str:
    with open_readonly(db_path) as conn:
        return conn.execute("PRAGMA integrity_check").fetchone()[0]


def flag_state(db_path: str, key: str = FLAG_KEY) -> tuple[int, list[tuple[int, int]]]:
    """(current version, [(version, rollout) of each 'updated' audit entry])."""
    import json

    with open_readonly(db_path) as conn:
        version = conn.execute("SELECT version FROM flags WHERE key = ?", (key,)).fetchone()[0]
        audit = []
        for v, after in conn.execute("SELECT version, after FROM audit_log WHERE flag_key = ? "
                                     "AND action = 'updated' ORDER BY id", (key,)):
            audit.append((v, json.loads(after)["conditions"][0]["rollout_percentage"]))
    return version, audit


def check_acknowledged(db_path: str, tally: Tally) -> dict[str, Any]:
    """Every acknowledged event and flag change is in the file; the flag's audit trail is
    a gap-free chain of versions; the file passes integrity_check."""
    stored = stored_message_ids(db_path)
    missing = tally.acked_events - stored
    version, audit = flag_state(db_path)
    audit_versions = [v for v, _ in audit]
    missing_changes = [c for c in tally.acked_flag_versions if c not in audit]
    return {
        "acked_events": len(tally.acked_events), "stored_events": len(stored),
        "missing_events": len(missing), "acked_flag_changes": len(tally.acked_flag_versions),
        "missing_flag_changes": missing_changes, "flag_version": version,
        "audit_chain_ok": audit_versions == list(range(2, version + 1)),
        "integrity": integrity(db_path),
    }
