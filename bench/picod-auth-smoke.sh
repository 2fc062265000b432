#!/bin/bash
# A smoke run of bench/picod-auth: a handful of operations per case, no
# thresholds; it fails only when a case fails (or PicoD refuses a request).
here=$(cd "$(dirname "$0")" && pwd)
out=$(bash "$here/run-picod-auth.sh" --smoke 2>&1)
rc=$?
printf '%s\n' "$out"
[ $rc -eq 0 ] || exit 1
printf '%s\n' "$out" | grep -q "JWT bootstrap (cached token) / mTLS bootstrap" || exit 1
printf '%s\n' "$out" | grep -q "PicoD accepted [1-9][0-9]* and refused 0 requests" || exit 1
