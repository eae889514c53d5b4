"""Cross-node freshness: a change made through node A, timed until node B serves it.

Used by tests/test_scaleout.py (bounded trials) and bench/bench_scaleout.py (many trials,
max reported). Both nodes are real `flagsvc serve` processes (harness.Server) on one
PostgreSQL database.
"""

from __future__ import annotations

import time
import uuid

import requests

from .harness import API_TOKEN, SECRET_KEY, admin

FLAG = "scaleout-flag"
# The project's tokens, read at each call (bench/bench_scaleout.py sets its own)
TOKENS = {"api": API_TOKEN, "secret": SECRET_KEY}


def create_flag(url: str, key: str = FLAG) -> dict:
    """On for organizations on the enterprise plan (100 %)."""
    r = requests.post(url + "/api/flags", headers=admin(TOKENS["secret"]), timeout=10, json={
        "key": key, "bucket_by": "organization",
        "conditions": [{"properties": [{"type": "group", "group_type": "organization",
                                        "key": "plan", "operator": "exact",
                                        "value": ["enterprise"]}],
                        "rollout_percentage": 100}]})
    r.raise_for_status()
    return r.json()


def decide(session: requests.Session, url: str, org: str, key: str = FLAG) -> bool | None:
    r = session.post(url + "/flags/?v=2", timeout=10, json={
        "api_key": TOKENS["api"], "distinct_id": "u-" + org, "groups": {"organization": org}})
    r.raise_for_status()
    flag = r.json()["flags"].get(key)
    return None if flag is None else bool(flag["enabled"])


def set_plan(session: requests.Session, url: str, org: str, plan: str) -> None:
    r = session.post(url + "/batch/", timeout=10, json={"api_key": TOKENS["api"], "batch": [
        {"event": "$groupidentify", "distinct_id": "u-" + org, "uuid": str(uuid.uuid4()),
         "properties": {"$group_type": "organization", "$group_key": org,
                        "$group_set": {"plan": plan}}}]})
    r.raise_for_status()


def version(session: requests.Session, url: str, key: str = FLAG) -> int:
    r = session.get(f"{url}/api/flags/{key}", headers=admin(TOKENS["secret"]), timeout=10)
    r.raise_for_status()
    return r.json()["version"]


def set_active(session: requests.Session, url: str, active: bool, at_version: int,
               key: str = FLAG) -> None:
    r = session.patch(f"{url}/api/flags/{key}", json={"active": active}, timeout=10,
                      headers={**admin(TOKENS["secret"]), "If-Match": f'"{at_version}"'})
    r.raise_for_status()


def _until(session: requests.Session, url: str, org: str, want: bool, started: float,
           timeout: float) -> float:
    while True:
        if decide(session, url, org) is want:
            return time.perf_counter() - started
        if time.perf_counter() - started > timeout:
            raise AssertionError(f"node {url} still answers {not want} after {timeout} s")
        time.sleep(0.005)


def property_trial(session: requests.Session, a: str, b: str, org: str, plan: str,
                   timeout: float = 5.0) -> float:
    """Seconds from node A acknowledging a group property to node B deciding by it."""
    started = time.perf_counter()
    set_plan(session, a, org, plan)
    return _until(session, b, org, plan == "enterprise", started, timeout)


def edit_trial(session: requests.Session, a: str, b: str, org: str, active: bool,
               timeout: float = 5.0) -> float:
    """Seconds from node A acknowledging a flag edit to node B serving it (for `org`, whose
    plan is enterprise)."""
    current = version(session, a)
    started = time.perf_counter()
    set_active(session, a, active, current)
    return _until(session, b, org, active, started, timeout)
