"""Soak: `flagsvc serve --workers 4` on one SQLite file for 60 s (default) under concurrent
/batch/ + /v1/batch ingestion, If-Match flag edits and decide calls. Prints the figures and
exits 1 on any 5xx, any "database is locked", or any acknowledged event or flag change
missing from the file.

    python tests/stress/soak_load.py [--seconds 60] [--workers 4]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from stress.harness import Server, Tally, check_acknowledged, create_flag, mixed_load  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--workers", type=int, default=4)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="flagsvc-soak-") as tmp:
        srv = Server(str(Path(tmp) / "flagsvc.db"), workers=args.workers)
        with srv:
            create_flag(srv.url)
            tally = Tally()
            started = time.monotonic()
            for t in mixed_load(srv.url, args.seconds, tally):
                t.join(timeout=args.seconds + 60)
            elapsed = time.monotonic() - started
        result = check_acknowledged(srv.db_path, tally)
        locked = srv.logs().count("database is locked")
    report = {"seconds": round(elapsed, 1), "workers": args.workers, "status": tally.status,
              "requests_per_second": round(tally.total() / elapsed, 1),
              "server_errors": tally.server_errors(), "locked_in_logs": locked,
              **{k: v for k, v in result.items() if k != "missing_flag_changes"},
              "missing_flag_changes": len(result["missing_flag_changes"])}
    print(json.dumps(report, indent=2))
    ok = (report["server_errors"] == 0 and locked == 0 and not tally.errors
          and result["missing_events"] == 0 and not result["missing_flag_changes"]
          and result["audit_chain_ok"] and result["integrity"] == "ok")
    print("OK" if ok else "FAILED: " + "; ".join(tally.errors[:5]))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
