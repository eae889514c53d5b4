"""bench/bench_pg_groups.py's smoke run (issue 19): 2,000 groups instead of 1M, no timing
checked — the script still loads with COPY, finds every search and the preview answered,
and reads no statement's plan as a sequential scan of `groups` (exit 1 if it does)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from conftest import PG_URL, pg_available

from tests.capabilities import need

BENCH = Path(__file__).resolve().parent.parent / "bench" / "bench_pg_groups.py"


def test_bench_pg_groups_smoke_run_uses_indexes():
    why = pg_available()
    need("postgresql", why is None, f"{why}: start it with `pg_ctlcluster 15 main start`")
    r = subprocess.run([sys.executable, str(BENCH), "--groups", "2000", "--repeat", "2",
                        "--no-record"], capture_output=True, text=True, timeout=300,
                       env={**os.environ, "FLAGSVC_BENCH_POSTGRES_URL": PG_URL})
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "SEQ SCAN" not in r.stdout and "groups_properties" in r.stdout
