#!/bin/bash
# tests/tpm/lane.sh PROGRAM...: run token-layer test programs against a
# software TPM (swtpm + tpm2-abrmd + tpm2-pkcs11) instead of SoftHSM2.
#
# It starts a throwaway TPM environment (tests/tpm/tpm-env.sh) in a temp dir,
# runs each PROGRAM with that environment (tests/harness.c then uses the TPM
# token named by CUBEID_TEST_TOKEN_URI), and stops everything on exit.
#
# Exit status:
#   0   every program passed
#   1   a program failed, or (with CI=true) the lane could not run fully
#   77  outside CI only: the TPM stack could not start, or a program skipped
# The lane never passes silently: each skip is printed with its reason.
set -u

prog=${0##*/}
here=$(cd "$(dirname "$0")" && pwd)

if [ $# -eq 0 ]; then
	echo "usage: $prog PROGRAM..." >&2
	exit 2
fi

case ${CI:-} in
true | 1 | yes) in_ci=1 ;;
*) in_ci= ;;
esac

loud() {
	echo "" >&2
	echo "*** TPM lane: $* ***" >&2
	echo "" >&2
}

# Outside CI a lane that cannot run is a skip (77); in CI, which installs the
# whole TPM stack, it is a failure.
cannot_run() {
	if [ -n "$in_ci" ]; then
		loud "FAIL (CI=true): $*"
		exit 1
	fi
	loud "SKIPPED: $*"
	exit 77
}

dir=$(mktemp -d "${TMPDIR:-/tmp}/cubeid-tpm.XXXXXX") || cannot_run "mktemp failed"
cleanup() {
	bash "$here/tpm-env.sh" stop "$dir" || echo "$prog: stopping the TPM environment failed" >&2
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

bash "$here/tpm-env.sh" start "$dir"
rc=$?
case $rc in
0) ;;
77) cannot_run "a tool the TPM stack needs is missing (see above)" ;;
*) cannot_run "the TPM stack (swtpm, dbus-daemon, tpm2-abrmd, tpm2-pkcs11) did not start (see above)" ;;
esac

passed=()
skipped=()
failed=()
for p in "$@"; do
	name=${p##*/}
	if [ ! -x "$p" ]; then
		echo "$prog: $p: not an executable test program" >&2
		failed+=("$name (missing)")
		continue
	fi
	echo "==== TPM lane: $name ===="
	(
		# shellcheck disable=SC1091
		. "$dir/env" && exec "$p"
	)
	rc=$?
	case $rc in
	0)
		echo "PASS: $name (tpm)"
		passed+=("$name")
		;;
	77)
		loud "SKIP: $name exited 77 on the TPM token (see its message above)"
		skipped+=("$name")
		;;
	*)
		echo "FAIL: $name (tpm, exit $rc)"
		failed+=("$name")
		;;
	esac
done

echo "==== TPM lane summary: ${#passed[@]} passed, ${#skipped[@]} skipped, ${#failed[@]} failed ===="
[ ${#skipped[@]} -eq 0 ] || echo "     skipped: ${skipped[*]}"
[ ${#failed[@]} -eq 0 ] || echo "     failed:  ${failed[*]}"

[ ${#failed[@]} -eq 0 ] || exit 1
[ ${#skipped[@]} -eq 0 ] || cannot_run "${#skipped[@]} program(s) skipped: ${skipped[*]}"
exit 0
