"""Profile each hot path with py-spy (sampling, no instrumentation) and print where the
time goes: top functions by self time and by inclusive time.

    python bench/profile_paths.py engine     # engine.evaluate over the 20k orgs
    python bench/profile_paths.py client     # FlagClient.get_flag (embedded, default cache)
    python bench/profile_paths.py all100     # FlagClient.get_all_flags over 100 flags
    python bench/profile_paths.py decide     # gunicorn workers under wrk, /flags/?v=2
    python bench/profile_paths.py ingest     # gunicorn workers under /batch/ load
    python bench/profile_paths.py summary FILE   # summarise a py-spy raw (collapsed) file

Needs `pip install py-spy` (and root or ptrace permission). Raw profiles are kept in
bench/profiles/<path>.txt (collapsed stacks: load them in speedscope or flamegraph.pl).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common

OUT = common.BENCH_DIR / "profiles"
PY_SPY = os.path.join(os.path.dirname(sys.executable), "py-spy")
_FRAME = re.compile(r"^(?P<fn>.*?) \((?P<file>[^:()]*)(?::\d+)?\)$")


def frame_name(frame: str) -> str:
    m = _FRAME.match(frame.strip())
    if not m:
        return frame.strip()
    path = m.group("file")
    for marker in ("site-packages/", "/work/main/", "lib/python3.11/"):
        if marker in path:
            path = path.split(marker, 1)[1]
    return f"{m.group('fn')} ({path})"


def frame_line(frame: str) -> str:
    m = re.match(r"^(?P<fn>.*?) \((?P<file>[^()]*)\)$", frame.strip())
    if not m:
        return frame.strip()
    where = m.group("file")
    for marker in ("site-packages/", "/work/main/", "lib/python3.11/"):
        if marker in where:
            where = where.split(marker, 1)[1]
    return f"{m.group('fn')} ({where})"


# Only samples inside the measured work count: the hot loop of an in-process profile, a
# request being handled in a gunicorn worker (idle workers wait in select/accept).
_WORK = ("hot_loop (", "handle_request (")


def summarise(path: str, top: int = 18) -> str:
    self_c: Counter = Counter()
    line_c: Counter = Counter()
    incl: Counter = Counter()
    total = 0
    for line in Path(path).read_text().splitlines():
        if not line:
            continue
        stack, _, count = line.rpartition(" ")
        n = int(count)
        raw = stack.split(";")
        frames = [frame_name(f) for f in raw]
        if not any(w in f for f in frames for w in _WORK):
            continue
        total += n
        self_c[frames[-1]] += n
        line_c[frame_line(raw[-1])] += n
        for f in set(frames):
            incl[f] += n
    lines = [f"{total} samples in the measured work", "", "| self % | function |", "|---|---|"]
    lines += [f"| {c / total * 100:.1f} | `{f}` |" for f, c in self_c.most_common(top)]
    lines += ["", "| self % | line |", "|---|---|"]
    lines += [f"| {c / total * 100:.1f} | `{f}` |" for f, c in line_c.most_common(12)]
    lines += ["", "| inclusive % | function |", "|---|---|"]
    lines += [f"| {c / total * 100:.1f} | `{f}` |" for f, c in incl.most_common(top + 12)]
    return "\n".join(lines)


def record_command(name: str, argv: list[str]) -> str:
    OUT.mkdir(exist_ok=True)
    out = str(OUT / f"{name}.txt")
    subprocess.run([PY_SPY, "record", "-r", "500", "-f", "raw", "-o", out, "--"] + argv,
                   check=True, capture_output=True)
    return out


def record_pid(name: str, pid: int, seconds: float) -> subprocess.Popen:
    OUT.mkdir(exist_ok=True)
    out = str(OUT / f"{name}.txt")
    return subprocess.Popen([PY_SPY, "record", "-r", "250", "-f", "raw", "-o", out,
                             "--subprocesses", "-d", str(int(seconds)), "--pid", str(pid)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


# ------------------------------------------------------------------ in-process loops


def loop(which: str) -> None:
    from flagsvc.client import FlagClient
    from flagsvc.engine import Context, compile_flags, evaluate

    orgs = common.make_orgs()
    d = common.tmpdir("profile")
    key = common.FLAG_KEY
    if which == "engine":
        compiled = compile_flags([common.flagsvc_flag()])
        ctxs = [Context(groups={"organization": o}, group_properties={"organization": p})
                for o, p in orgs]
        def hot_loop() -> None:
            for _ in range(40):
                for c in ctxs:
                    evaluate(compiled, key, c)
        hot_loop()
    elif which == "client":
        db = os.path.join(d, "c.db")
        common.setup_database(db, [common.flagsvc_flag()], orgs)
        client = FlagClient.from_database(db, api_token=common.API_TOKEN)
        def hot_loop() -> None:
            for _ in range(8):
                for o, p in orgs:
                    client.get_flag(key, groups={"organization": o},
                                    group_properties={"organization": p})
        hot_loop()
    elif which == "all100":
        db = os.path.join(d, "a.db")
        common.setup_database(db, common.flag_variations(100), orgs[:2000])
        client = FlagClient.from_database(db, api_token=common.API_TOKEN)
        def hot_loop() -> None:
            for _ in range(15):
                for o, p in orgs[:2000]:
                    client.get_all_flags(groups={"organization": o},
                                         group_properties={"organization": p})
        hot_loop()


def profile_decide(seconds: float = 12) -> str:
    d = common.tmpdir("profile-decide")
    db = os.path.join(d, "flagsvc.db")
    common.setup_database(db, common.flag_variations(20), common.make_orgs())
    srv = common.flagsvc_server(db)
    env = {"BENCH_TOKEN": common.API_TOKEN, "BENCH_ORGS": str(common.N_ORGS)}
    lua = str(common.BENCH_DIR / "wrk_decide.lua")
    with common.running(srv):
        common.run_wrk(srv.url, lua, 2, 32, env)
        spy = record_pid("decide", srv.pid, seconds)
        time.sleep(0.5)
        r = common.run_wrk(srv.url, lua, seconds - 1, 32, env)
        spy.wait()
    print(f"(under profiling: {r['rps']:.0f} req/s)")
    return str(OUT / "decide.txt")


def profile_ingest(seconds: float = 12) -> str:
    import random

    import bench_ingest

    rng = random.Random(3)
    bodies = [bench_ingest.batch_body(bench_ingest.make_events(rng)) for _ in range(1500)]
    d = common.tmpdir("profile-ingest")
    db = os.path.join(d, "flagsvc.db")
    common.setup_database(db, common.flag_variations(20), common.make_orgs())
    srv = common.flagsvc_server(db)
    with common.running(srv):
        bench_ingest.post_batches(srv.port, bodies[:20], 4, 30)
        spy = record_pid("ingest", srv.pid, seconds)
        time.sleep(0.5)
        r = bench_ingest.post_batches(srv.port, bodies[20:], 4, seconds - 1)
        spy.wait()
    print(f"(under profiling: {r['ok'] * 100 / r['elapsed']:.0f} events/s)")
    return str(OUT / "ingest.txt")


def main() -> int:
    what = sys.argv[1]
    if what == "summary":
        print(summarise(sys.argv[2]))
    elif what == "_loop":
        loop(sys.argv[2])
    elif what in ("engine", "client", "all100"):
        path = record_command(what, [sys.executable, __file__, "_loop", what])
        print(summarise(path))
    elif what == "decide":
        print(summarise(profile_decide()))
    elif what == "ingest":
        print(summarise(profile_ingest()))
    else:
        raise SystemExit(__doc__)
    return 0


if __name__ == "__main__":
    threading.excepthook = lambda a: None
    sys.exit(main())
