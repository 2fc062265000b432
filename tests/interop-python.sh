#!/bin/bash
# py-spiffe, unchanged, against cubeid-agent --dev (a throwaway SoftHSM2
# token under a temp state directory, a 6 s X.509-SVID TTL): py-spiffe comes
# from pip into a cached virtualenv (tests/lib/python-peers.sh), and
# tests/python/pyspiffe_interop.py runs WorkloadApiClient (every call),
# validate_jwt_svid (and a refusal), X509Source, JwtSource, and
# stream_x509_contexts across two rotations, in one Python process.
# Python's grpc sends a percent-encoded socket path as :authority: the agent
# must not reset a single stream (its log is checked).
#
# Exit: 0 pass, 1 fail, 77 skip (no python3/venv outside CI; with CI=true a
# missing peer is a failure).
set -u
builddir=${CUBEID_BUILDDIR:-.}
srcdir=${CUBEID_SRCDIR:-${srcdir:-$(cd "$(dirname "$0")/.." && pwd)}}
agent=$builddir/agent/cubeid-agent
cubeid=$builddir/cli/cubeid
peers=$srcdir/tests/lib/python-peers.sh

skip_or_fail() {
	echo "=================================================================="
	if [ "${CI:-}" = true ]; then
		echo "FAIL (CI=true): $*"
		echo "=================================================================="
		exit 1
	fi
	echo "SKIP: $* -- the py-spiffe interop tests did NOT run"
	echo "=================================================================="
	exit 77
}

t0=$(date +%s)
py=$(CUBEID_SRCDIR=$srcdir bash "$peers" python)
rc=$?
[ $rc -eq 3 ] && skip_or_fail "no usable python3 with venv for py-spiffe (python-peers.sh exit 3)"
[ $rc -eq 0 ] || { echo "FAIL: could not install py-spiffe (python-peers.sh exit $rc)"; exit 1; }
echo "# py-spiffe ready in $(($(date +%s) - t0)) s"

[ -n "${CUBEID_SOFTHSM_MODULE:-}" ] && export CUBEID_PKCS11_MODULE=$CUBEID_SOFTHSM_MODULE
unset CUBEID_TOKEN CUBEID_PIN CUBEID_PIN_FILE CUBEID_STATE_DIR
D=$(mktemp -d /tmp/cubeid-python-interop.XXXXXX) || exit 1
pid=
cleanup() {
	[ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
	rm -rf "$D"
}
trap cleanup EXIT
S=$D/agent.sock
export SPIFFE_ENDPOINT_SOCKET=unix://$S
want="spiffe://cluster.local/unix/uid/$(id -u)"
. "$(dirname "$0")/lib/tap.sh"

"$agent" --dev --state-dir "$D/state" --socket "$S" --x509-svid-ttl 6s \
	>"$D/agent.out" 2>"$D/agent.err" &
pid=$!
for _ in $(seq 1 300); do
	[ -S "$S" ] && "$cubeid" status --socket "$S" >/dev/null 2>&1 && break
	kill -0 "$pid" 2>/dev/null || break
	sleep 0.1
done
[ -S "$S" ] && ok "cubeid-agent --dev is up" || bad "cubeid-agent did not start: $(tail -5 "$D/agent.err")"

PYTHONWARNINGS=ignore timeout 300 "$py" "$srcdir/tests/python/pyspiffe_interop.py" "$S" "$want" \
	>"$D/py.out" 2>"$D/py.err"
prc=$?
while IFS= read -r line; do
	case $line in
	"ok - "*) ok "py-spiffe ${line#ok - }" ;;
	"not ok - "*) bad "py-spiffe ${line#not ok - }" ;;
	"#"*) echo "$line" ;;
	esac
done <"$D/py.out"
if [ $prc -eq 0 ]; then
	ok "the Python client exited 0"
else
	bad "the Python client exited $prc"
	tail -20 "$D/py.err" | sed 's/^/#   /'
fi
if grep -q "grpc: reset stream\|grpc: ending the connection" "$D/agent.err"; then
	bad "the agent reset a py-spiffe stream or connection"
	grep "grpc: " "$D/agent.err" | head -5 | sed 's/^/#   /'
else
	ok "the agent reset no py-spiffe stream"
fi
echo "# $(($(date +%s) - t0)) s in all"
echo "1..$n"
[ "$fails" -eq 0 ]
