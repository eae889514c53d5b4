"""Crash safety: SIGKILL the whole `flagsvc serve` process group (arbiter + workers) in the
middle of sustained ingestion and flag edits, restart, verify, repeat (20 times by default).
After every kill: every acknowledged event and flag change is in the file, the audit trail
is a gap-free version chain, `PRAGMA integrity_check` is ok. Exits 1 otherwise.

    python tests/stress/crash_kill9.py [--kills 20] [--workers 4]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from stress.harness import Server, Tally, check_acknowledged, create_flag, mixed_load  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--seed", type=int, default=5)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    failures = []
    with tempfile.TemporaryDirectory(prefix="flagsvc-crash-") as tmp:
        srv = Server(str(Path(tmp) / "flagsvc.db"), workers=args.workers)
        srv.start()
        create_flag(srv.url)
        tally = Tally()
        restart_seconds = []
        try:
            for n in range(args.kills):
                stop = threading.Event()
                threads = mixed_load(srv.url, 30.0, tally, stop, ingesters=3, editors=2,
                                     deciders=1)
                time.sleep(rng.uniform(0.5, 2.5))
                srv.kill()
                stop.set()
                for t in threads:
                    t.join(timeout=60)
                result = check_acknowledged(srv.db_path, tally)
                bad = (result["missing_events"] or result["missing_flag_changes"]
                       or not result["audit_chain_ok"] or result["integrity"] != "ok")
                if bad:
                    failures.append({"kill": n + 1, **result})
                started = time.monotonic()
                srv.start()
                restart_seconds.append(time.monotonic() - started)
                print(f"kill {n + 1}: acked events {result['acked_events']}, stored "
                      f"{result['stored_events']}, flag version {result['flag_version']}, "
                      f"integrity {result['integrity']}{'  FAILED' if bad else ''}", flush=True)
        finally:
            srv.stop()
    print(json.dumps({"kills": args.kills, "acked_events": len(tally.acked_events),
                      "acked_flag_changes": len(tally.acked_flag_versions),
                      "server_errors": tally.server_errors(),
                      "max_restart_seconds": round(max(restart_seconds), 2),
                      "failures": failures}, indent=2))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
