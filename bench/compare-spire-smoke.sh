#!/bin/sh
# bench/compare-spire at tiny sizes (1 and 10 entries, a handful of calls,
# 5 streams), so that it cannot rot: every call is checked, no thresholds.
# It skips loudly (77) when SPIRE is not built: the suite never builds it
# (a cold SPIRE build does not fit CI's budget).  Its CSV and plots go to a
# temp dir, never to bench/results or docs/img.
out=$(mktemp -d "${TMPDIR:-/tmp}/cubeid-compare-smoke.XXXXXX") || exit 1
trap 'rm -rf "$out"' EXIT
bash "$(dirname "$0")/compare-spire" --smoke --out "$out" --img "$out"
