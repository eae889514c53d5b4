"""bench/bench_client.py's smoke run (issue 18): correctness only, no timing. The embedded
and the remote FlagClient (a real `flagsvc serve`), properties given and stored, equal the
engine on the reference flag; the stock Unleash SDK (same hash) equals flagsvc; PostHog and
GrowthBook, through their public calls with bootstrapped definitions, say False wherever the
conditions exclude the organization; get_all_flags over 100 flags has every flag."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "bench" / "bench_client.py"


def test_bench_client_smoke_run_finds_no_mismatch():
    r = subprocess.run([sys.executable, str(BENCH), "--smoke"], capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "correctness: 0 mismatches over 300 orgs" in r.stdout, r.stdout
