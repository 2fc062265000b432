#!/bin/bash
# bench/run-token-sign.sh [--tpm] PROGRAM [OPTIONS...]
#
# Run bench/token-sign (PROGRAM) with OPTIONS.  Without --tpm it makes its own
# throwaway SoftHSM2 token through the test harness (tests/harness.c), in
# $TMPDIR, and removes it afterwards.  With --tpm it first brings up a
# throwaway software TPM with tests/tpm/tpm-env.sh (swtpm, a private D-Bus,
# tpm2-abrmd, tpm2-pkcs11), runs the bench against that token, and stops
# every process it started.  Exit: the bench's status; 77 if the token
# cannot be made here.
set -u

here=$(cd "$(dirname "$0")" && pwd)
tpm=
if [ "${1:-}" = --tpm ]; then
	tpm=1
	shift
fi
if [ $# -lt 1 ]; then
	echo "usage: ${0##*/} [--tpm] PROGRAM [OPTIONS...]" >&2
	exit 2
fi
prog=$1
shift

echo "token-sign: $(date -u '+%Y-%m-%d %H:%M UTC') on $(uname -n), $(nproc) CPUs," \
	"$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)"

if [ -z "$tpm" ]; then
	exec "$prog" "$@"
fi

dir=$(mktemp -d "${TMPDIR:-/tmp}/cubeid-bench-tpm.XXXXXX") || exit 1
trap 'bash "$here/../tests/tpm/tpm-env.sh" stop "$dir"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
bash "$here/../tests/tpm/tpm-env.sh" start "$dir"
rc=$?
if [ $rc -ne 0 ]; then
	echo "token-sign: the software TPM did not start (status $rc); see above" >&2
	exit $rc
fi
# shellcheck disable=SC1091
. "$dir/env"
"$prog" "$@"
