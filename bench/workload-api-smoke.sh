#!/bin/sh
# A smoke run of bench/workload-api against a real cubeid-agent --dev with
# 10 extra entries: a handful of fetches, 20 streams, a few throughput ops,
# each checked, and no thresholds.  It proves the bench still builds and
# runs; the numbers it prints mean nothing.  Run `make bench` for those.
srcdir=$(cd "$(dirname "$0")/.." && pwd)
exec bash "$srcdir/bench/run-workload-api.sh" --smoke
