"""Shared pieces of the benchmarks: the reference scenario (issue 4) in three dialects,
the data set, a flagsvc server launcher, a wrk runner, and result reporting.

Reference scenario: a flag bucketed by `organization`, one condition
`plan exact [enterprise, pro]` AND `employees gt 50`, 30 % rollout, variants control/test
50/50; 20,000 distinct organizations with stored properties.

Every figure the benches report is a RATIO measured side by side in one run (the machine is
small and shared); absolute times are printed for context only.
"""

from __future__ import annotations

import atexit
import contextlib
import datetime as _dt
import json
import os
import platform
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
RESULTS = BENCH_DIR / "RESULTS.md"
PYTHON = sys.executable

FLAG_KEY = "ref-flag"
GROUP_TYPE = "organization"
N_ORGS = 20_000
PLANS = ("free", "starter", "pro", "enterprise")
API_TOKEN = "phc_bench_api_token_0123456789"
SECRET_KEY = "phs_bench_secret_key_0123456789"

# ------------------------------------------------------------------ the reference flag


def flagsvc_flag(key: str = FLAG_KEY, rollout: int = 30) -> dict[str, Any]:
    """The reference flag as a flagsvc definition (SPEC §4)."""
    return {
        "key": key,
        "name": "Reference flag (bench)",
        "description": "",
        "active": True,
        "bucket_by": GROUP_TYPE,
        "hash_namespace": None,
        "conditions": [{
            "properties": [
                {"type": "group", "group_type": GROUP_TYPE, "key": "plan", "operator": "exact",
                 "value": ["enterprise", "pro"]},
                {"type": "group", "group_type": GROUP_TYPE, "key": "employees", "operator": "gt",
                 "value": 50},
            ],
            "rollout_percentage": rollout,
            "variant": None,
        }],
        "variants": [{"key": "control", "weight": 50}, {"key": "test", "weight": 50}],
        "payloads": {},
    }


def flag_variations(n: int) -> list[dict[str, Any]]:
    """`n` variations of the reference flag (first one is the reference flag itself):
    different keys (so different buckets) and rollouts."""
    out = [flagsvc_flag()]
    for i in range(1, n):
        out.append(flagsvc_flag(f"{FLAG_KEY}-{i:04d}", rollout=(i * 7) % 101))
    return out


def posthog_flag(key: str = FLAG_KEY, rollout: int = 30) -> dict[str, Any]:
    """The equivalent PostHog local-evaluation flag (group type index 0 = organization)."""
    return {
        "id": 1,
        "name": "Reference flag (bench)",
        "key": key,
        "active": True,
        "deleted": False,
        "ensure_experience_continuity": False,
        "filters": {
            "aggregation_group_type_index": 0,
            "groups": [{
                "properties": [
                    {"key": "plan", "type": "group", "group_type_index": 0, "operator": "exact",
                     "value": ["enterprise", "pro"]},
                    {"key": "employees", "type": "group", "group_type_index": 0, "operator": "gt",
                     "value": 50},
                ],
                "rollout_percentage": rollout,
            }],
            "multivariate": {"variants": [
                {"key": "control", "name": "control", "rollout_percentage": 50},
                {"key": "test", "name": "test", "rollout_percentage": 50},
            ]},
            "payloads": {},
        },
    }


POSTHOG_GROUP_TYPE_MAPPING = {"0": GROUP_TYPE}


def unleash_state(key: str = FLAG_KEY, rollout: int = 30) -> dict[str, Any]:
    """The equivalent Unleash toggle (client API state for yggdrasil's `take_state`).

    flexibleRollout on `organization` with groupId = flag key hashes
    `mmh3("{key}:{org}", 0) % 100 + 1` exactly like flagsvc; strategy variants with
    stickiness organization hash `mmh3("{groupId}:{org}", 86028157) % total_weight + 1`,
    again like flagsvc (weights 50/50, total 100)."""
    variant = {"weightType": "variable", "stickiness": GROUP_TYPE, "payload": None}
    return {
        "version": 2,
        "features": [{
            "name": key,
            "type": "release",
            "enabled": True,
            "project": "default",
            "stale": False,
            "impressionData": False,
            "strategies": [{
                "name": "flexibleRollout",
                "parameters": {"rollout": str(rollout), "stickiness": GROUP_TYPE, "groupId": key},
                "constraints": [
                    {"contextName": "plan", "operator": "IN", "values": ["enterprise", "pro"],
                     "inverted": False, "caseInsensitive": False},
                    {"contextName": "employees", "operator": "NUM_GT", "value": "50",
                     "inverted": False, "caseInsensitive": False},
                ],
                "variants": [
                    {**variant, "name": "control", "weight": 50},
                    {**variant, "name": "test", "weight": 50},
                ],
            }],
            "variants": [],
        }],
    }


# ------------------------------------------------------------------ the data set


def org_key(i: int) -> str:
    return f"org-{i:05d}"


def make_orgs(n: int = N_ORGS, seed: int = 4) -> list[tuple[str, dict[str, Any]]]:
    """`n` organizations with deterministic random plans and employee counts."""
    rng = random.Random(seed)
    return [(org_key(i), {"plan": rng.choice(PLANS), "employees": rng.randint(1, 500)})
            for i in range(n)]


def group_calls(orgs: Iterable[tuple[str, dict[str, Any]]], ts: float | None = None) -> list:
    """Normalized `group` calls that store each org's properties (for Store.ingest)."""
    from flagsvc.ingest.model import Call

    ts = time.time() if ts is None else ts
    return [Call(kind="group", message_id=str(uuid.uuid4()), timestamp=ts, group_type=GROUP_TYPE,
                 group_key=key, group_set=dict(props)) for key, props in orgs]


def setup_database(path: str, flags: Sequence[dict[str, Any]],
                   orgs: Sequence[tuple[str, dict[str, Any]]],
                   api_token: str = API_TOKEN, secret_key: str = SECRET_KEY) -> dict[str, Any]:
    """A flagsvc database with one project, these flags, and these orgs' properties stored
    (through Store.ingest, 1,000 calls per batch). Returns the project."""
    from flagsvc.store import Store

    store = Store(path, synchronous="OFF")  # set-up only; the server reopens it
    try:
        project = store.create_project("bench", api_token=api_token, secret_key=secret_key)
        for f in flags:
            store.create_flag(project["id"], f)
        calls = group_calls(orgs)
        for i in range(0, len(calls), 1000):
            store.ingest(project["id"], calls[i:i + 1000])
    finally:
        store.close()
    return project


# ------------------------------------------------------------------ servers


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except Exception:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{url} did not come up within {timeout:g} s") from None
            time.sleep(0.1)


class Server:
    """A subprocess serving HTTP on 127.0.0.1:`port` (a process group, stopped as one)."""

    def __init__(self, argv: list[str], port: int, env: dict[str, str] | None = None,
                 health: str = "/healthz", log_path: str | None = None,
                 workers: int | None = None, cwd: str | None = None) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = log_path or tempfile.mktemp(prefix="flagsvc-bench-", suffix=".log")
        self._log = open(self.log_path, "wb")  # noqa: SIM115 (open until stop())
        self.proc = subprocess.Popen(argv, env={**os.environ, **(env or {})}, cwd=cwd or str(REPO),
                                     stdout=self._log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        try:
            wait_http(self.url + health)
            self.wait_workers(workers)
        except Exception:
            self.stop()
            sys.stderr.write(Path(self.log_path).read_text(errors="replace")[-3000:])
            raise

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait_workers(self, expected: int | None, timeout: float = 30.0) -> None:
        """Until gunicorn has booted all its workers (health answers after the first)."""
        if expected is None:
            from flagsvc.server import default_workers

            expected = default_workers()
        deadline = time.monotonic() + timeout
        while len(self.worker_pids()) < expected and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.5)  # let the last one finish importing the app

    def cpu_seconds(self) -> float:
        """user+system CPU seconds used so far by the master and its workers (from /proc)."""
        tick = os.sysconf("SC_CLK_TCK")
        total = 0.0
        for pid in [self.proc.pid, *self.worker_pids()]:
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += (int(fields[11]) + int(fields[12])) / tick
        return total

    def worker_pids(self) -> list[int]:
        out = subprocess.run(["pgrep", "-P", str(self.proc.pid)], capture_output=True, text=True)
        return [int(p) for p in out.stdout.split()]

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=15)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._log.close()


def flagsvc_server(db_path: str, port: int | None = None, workers: int | None = None,
                   extra_env: dict[str, str] | None = None,
                   checkout: str | None = None, cpus: str | None = None) -> Server:
    """`flagsvc serve` exactly as users run it (default workers unless given); `checkout`:
    another checkout's code (`python -m` puts the working directory first on sys.path, so
    the server runs there, with it on PYTHONPATH too, for the writer it starts); `cpus`:
    under `taskset -c CPUS` (its default workers are then those of that many CPUs)."""
    port = port or free_port()
    argv = [PYTHON, "-m", "flagsvc.cli", "serve", "--bind", f"127.0.0.1:{port}",
            "--no-access-log"]
    if workers:
        argv += ["--workers", str(workers)]
    if cpus:
        argv = ["taskset", "-c", cpus, *argv]
        count = sum(int(b) - int(a) + 1 if "-" in part else 1
                    for part in cpus.split(",") for a, _, b in [part.partition("-")])
        workers = workers or min(2 * count + 1, 8)
    env = {"FLAGSVC_DATABASE": db_path, "FLAGSVC_API_TOKEN": API_TOKEN,
           "FLAGSVC_SECRET_KEY": SECRET_KEY, "FLAGSVC_LOG_LEVEL": "WARNING",
           **(extra_env or {})}
    if checkout:
        env["PYTHONPATH"] = os.path.abspath(checkout)
    return Server(argv, port, env, workers=workers,
                  cwd=os.path.abspath(checkout) if checkout else None)


def minimal_server(port: int | None = None, workers: int | None = None) -> Server:
    """The minimal Flask JSON endpoint under the same gunicorn configuration as
    `flagsvc serve` (bench/minimal_app.py reuses flagsvc.server.run)."""
    port = port or free_port()
    argv = [PYTHON, str(BENCH_DIR / "minimal_app.py"), "--bind", f"127.0.0.1:{port}"]
    if workers:
        argv += ["--workers", str(workers)]
    return Server(argv, port, workers=workers)


@contextmanager
def running(*servers: Server) -> Iterator[None]:
    try:
        yield
    finally:
        for s in servers:
            s.stop()


def post_json(url: str, body: Any, headers: dict[str, str] | None = None,
              method: str = "POST", timeout: float = 10.0) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        raw = e.read()
        try:
            return e.code, json.loads(raw)
        except ValueError:
            return e.code, raw.decode(errors="replace")


# ------------------------------------------------------------------ wrk


def have_wrk() -> bool:
    return shutil.which("wrk") is not None


def wrk_threads_and_pin() -> tuple[int, list[str]]:
    """One wrk thread, pinned to the last CPU, so the load generator takes at most a
    fraction of one core and the server keeps the rest (2-core machine)."""
    cpus = os.cpu_count() or 1
    pin = ["taskset", "-c", str(cpus - 1)] if shutil.which("taskset") and cpus > 1 else []
    return 1, pin


_UNIT = {"us": 1e-3, "ms": 1.0, "s": 1000.0}


def _ms(text: str) -> float:
    m = re.match(r"([\d.]+)(us|ms|s)", text)
    if not m:
        return float("nan")
    return float(m.group(1)) * _UNIT[m.group(2)]


def run_wrk(url: str, script: str, duration: float, connections: int,
            env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run wrk with a Lua script; returns req/s, latency percentiles (ms) and errors."""
    threads, pin = wrk_threads_and_pin()
    argv = pin + ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{duration:g}s",
                  "--latency", "--timeout", "10s", "-s", script, url]
    out = subprocess.run(argv, capture_output=True, text=True, env={**os.environ, **(env or {})},
                         timeout=duration + 60)
    text = out.stdout
    res: dict[str, Any] = {"raw": text}
    m = re.search(r"Requests/sec:\s+([\d.]+)", text)
    res["rps"] = float(m.group(1)) if m else float("nan")
    m = re.search(r"(\d+) requests in", text)
    res["requests"] = int(m.group(1)) if m else 0
    for pct in ("50", "75", "90", "99"):
        m = re.search(rf"^\s+{pct}%\s+(\S+)", text, re.MULTILINE)
        res[f"p{pct}"] = _ms(m.group(1)) if m else float("nan")
    m = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    res["non2xx"] = int(m.group(1)) if m else 0
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    res["socket_errors"] = sum(int(x) for x in m.groups()) if m else 0
    if out.returncode != 0 or not m and res["requests"] == 0:
        res["stderr"] = out.stderr
    return res


# ------------------------------------------------------------------ reporting


def median(xs: Sequence[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def table(rows: Sequence[Sequence[Any]], header: Sequence[str] | None = None) -> str:
    """A GitHub-flavoured markdown table (also readable in a terminal)."""
    def fmt(v: Any) -> str:
        if isinstance(v, float):
            if v != v:
                return "n/a"
            return f"{v:,.3f}" if abs(v) < 10 else f"{v:,.1f}"
        return str(v)

    rows = [[fmt(v) for v in r] for r in rows]
    if header is None:
        header, rows = rows[0], rows[1:]
    header = [str(h) for h in header]
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows, strict=False)]

    def line(r: Sequence[Any]) -> str:
        return "| " + " | ".join(str(x).ljust(w) for x, w in zip(r, widths, strict=False)) + " |"

    return "\n".join([line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|",
                      *(line(r) for r in rows)])


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def machine() -> str:
    model = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=str(REPO),
                                capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "flagsvc"], cwd=str(REPO),
                               capture_output=True, text=True).stdout.strip()
    except OSError:
        commit, dirty = "?", ""
    return (f"{os.cpu_count()} CPU ({model}), Python {platform.python_version()}, "
            f"commit {commit}{' + uncommitted flagsvc changes' if dirty else ''}")


def record(title: str, body: str, argv: Sequence[str] | None = None) -> None:
    """Print a result section and append it to bench/RESULTS.md (under "Run log")
    unless --no-record was given."""
    argv = sys.argv if argv is None else argv
    stamp = _dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    section = f"\n### {title} — {stamp}\n\n_{machine()}_\n\n{body}\n"
    print(section)
    if "--no-record" in argv:
        return
    text = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
    if "\n## Run log" not in text:
        text = text.rstrip("\n") + "\n\n## Run log\n\nAppended by the bench scripts.\n"
    RESULTS.write_text(text.rstrip("\n") + "\n" + section)


def tmpdir(prefix: str) -> str:
    """A scratch directory removed when the bench exits (the growth bench's databases are
    over a GB each; a day of runs filled 50 GB of /tmp). FLAGSVC_BENCH_KEEP=1 keeps it."""
    path = tempfile.mkdtemp(prefix=f"flagsvc-{prefix}-")
    if not os.environ.get("FLAGSVC_BENCH_KEEP"):
        atexit.register(shutil.rmtree, path, True)
    return path
