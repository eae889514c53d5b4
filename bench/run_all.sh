#!/usr/bin/env bash
# Run every benchmark of issue 4 in sequence (about 6-8 minutes on 2 cores) and append each
# result to bench/RESULTS.md ("Run log"). Pass --no-record to only print.
#   bench/run_all.sh [--no-record]
# Needs: wrk (apt-get install -y wrk), the project installed with its bench extras (posthog,
# growthbook, UnleashClient, yggdrasil-engine). PYTHON defaults to the interpreter on PATH.
set -u
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python}"
status=0
for bench in bench_engine bench_client bench_decide bench_ingest bench_growth bench_freshness; do
    echo "=== $bench"
    start=$(date +%s)
    "$PYTHON" "bench/$bench.py" "$@" || { echo "!!! $bench exited with $?"; status=1; }
    echo "=== $bench took $(( $(date +%s) - start )) s"
done
exit $status
