#!/bin/bash
# gRPC server reflection on the Workload API socket, with a real client:
# grpcurl, built from the Go module proxy into the cache by
# tests/lib/go-peers.sh, against cubeid-agent --dev (a throwaway SoftHSM2
# token).  grpcurl lists the services, describes SpiffeWorkloadAPI and a
# message, and calls FetchJWTSVID with the descriptors it read through
# reflection (and without the security header: InvalidArgument).  An
# unknown symbol is an error, and the agent resets no stream.  grpcio's
# reflection client (grpcio-reflection, pip, in the cached virtualenv of
# tests/lib/python-peers.sh) does the same over v1alpha.
# grpcurl v1.9.3 dials TCP even with -unix (its BlockingDial drops the
# network): the socket is given as a unix:// target, which grpc-go resolves.
#
# Exit: 0 pass, 1 fail, 77 skip (no usable Go outside CI; with CI=true a
# missing peer is a failure).
set -u
builddir=${CUBEID_BUILDDIR:-.}
srcdir=${CUBEID_SRCDIR:-${srcdir:-$(cd "$(dirname "$0")/.." && pwd)}}
agent=$builddir/agent/cubeid-agent
cubeid=$builddir/cli/cubeid

skip_or_fail() {
	echo "=================================================================="
	if [ "${CI:-}" = true ]; then
		echo "FAIL (CI=true): $*"
		echo "=================================================================="
		exit 1
	fi
	echo "SKIP: $* -- the grpcurl reflection tests did NOT run"
	echo "=================================================================="
	exit 77
}

t0=$(date +%s)
grpcurl=$(CUBEID_SRCDIR=$srcdir bash "$srcdir/tests/lib/go-peers.sh" path grpcurl)
rc=$?
[ $rc -eq 3 ] && skip_or_fail "no usable Go to build grpcurl (go-peers.sh exit 3)"
[ $rc -eq 0 ] && [ -x "$grpcurl" ] || { echo "FAIL: could not build grpcurl (go-peers.sh exit $rc)"; exit 1; }
echo "# grpcurl ready in $(($(date +%s) - t0)) s"

[ -n "${CUBEID_SOFTHSM_MODULE:-}" ] && export CUBEID_PKCS11_MODULE=$CUBEID_SOFTHSM_MODULE
unset CUBEID_TOKEN CUBEID_PIN CUBEID_PIN_FILE CUBEID_STATE_DIR
D=$(mktemp -d /tmp/cubeid-reflection.XXXXXX) || exit 1
pid=
cleanup() {
	[ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
	rm -rf "$D"
}
trap cleanup EXIT
S=$D/agent.sock
want="spiffe://cluster.local/unix/uid/$(id -u)"
. "$(dirname "$0")/lib/tap.sh"

"$agent" --dev --state-dir "$D/state" --socket "$S" >"$D/agent.out" 2>"$D/agent.err" &
pid=$!
for _ in $(seq 1 300); do
	[ -S "$S" ] && "$cubeid" status --socket "$S" >/dev/null 2>&1 && break
	kill -0 "$pid" 2>/dev/null || break
	sleep 0.1
done
[ -S "$S" ] && ok "cubeid-agent --dev is up" || bad "cubeid-agent did not start: $(tail -5 "$D/agent.err")"

g() { timeout 60 "$grpcurl" -plaintext "$@"; }

check "grpcurl list" 0 g "unix://$S" list
sort "$D/out" >"$D/list"
printf '%s\n' SpiffeWorkloadAPI cubeid.picod.v1.PicoD grpc.reflection.v1.ServerReflection \
	grpc.reflection.v1alpha.ServerReflection | sort >"$D/list.want"
assert "list names the Workload API, PicoD and reflection, and nothing else" \
	cmp -s "$D/list" "$D/list.want"

check "grpcurl describe SpiffeWorkloadAPI" 0 g "unix://$S" describe SpiffeWorkloadAPI
for m in "FetchX509SVID ( .X509SVIDRequest ) returns ( stream .X509SVIDResponse )" \
	"FetchX509Bundles ( .X509BundlesRequest ) returns ( stream .X509BundlesResponse )" \
	"FetchJWTSVID ( .JWTSVIDRequest ) returns ( .JWTSVIDResponse )" \
	"FetchJWTBundles ( .JWTBundlesRequest ) returns ( stream .JWTBundlesResponse )" \
	"ValidateJWTSVID ( .ValidateJWTSVIDRequest ) returns ( .ValidateJWTSVIDResponse )"; do
	assert "describe shows rpc ${m%% *}" grep -qF "rpc $m;" "$D/out"
done
assert "SpiffeWorkloadAPI has the spec's seven RPCs and no other" \
	test "$(grep -c '^  rpc ' "$D/out")" -eq 7

# A message in an imported file: ValidateJWTSVIDResponse.claims is a
# google.protobuf.Struct (struct.proto comes along as a dependency).
check "grpcurl describe ValidateJWTSVIDResponse" 0 g "unix://$S" describe ValidateJWTSVIDResponse
assert "its claims field is a google.protobuf.Struct" \
	grep -qF ".google.protobuf.Struct claims = 2;" "$D/out"
check "grpcurl describe google.protobuf.Struct" 0 g "unix://$S" describe google.protobuf.Struct

check "grpcurl FetchJWTSVID, from reflection's descriptors" 0 \
	g -H workload.spiffe.io:true -d '{"audience":["reflection-test"]}' "unix://$S" \
	SpiffeWorkloadAPI/FetchJWTSVID
assert "the JWT-SVID is for $want" grep -qF "\"spiffeId\": \"$want\"" "$D/out"
jwt=$(sed -n 's/.*"svid": "\([^"]*\)".*/\1/p' "$D/out")
assert "the JWT-SVID is a JWS" test "$(echo "$jwt" | tr -cd . | wc -c)" -eq 2

check "grpcurl ValidateJWTSVID of it" 0 \
	g -H workload.spiffe.io:true -d "{\"audience\":\"reflection-test\",\"svid\":\"$jwt\"}" \
	"unix://$S" SpiffeWorkloadAPI/ValidateJWTSVID
assert "validated for $want" grep -qF "\"spiffeId\": \"$want\"" "$D/out"

check "FetchJWTSVID without the security header fails (grpcurl: 64 + 3)" 67 \
	g -d '{"audience":["reflection-test"]}' "unix://$S" SpiffeWorkloadAPI/FetchJWTSVID
assert "with InvalidArgument" grep -q "Code: InvalidArgument" "$D/err"

check "grpcurl describe of an unknown symbol fails" 1 g "unix://$S" describe no.Such.Thing
assert "as not found" grep -qi "not found" "$D/err"

# grpcio's reflection client speaks v1alpha only (grpcurl asks v1 first)
py=$(CUBEID_SRCDIR=$srcdir bash "$srcdir/tests/lib/python-peers.sh" python)
prc=$?
if [ $prc -eq 3 ] && [ "${CI:-}" != true ]; then
	echo "# SKIP: no usable python3 with venv: the grpcio-reflection (v1alpha) checks did NOT run"
elif [ $prc -ne 0 ]; then
	bad "grpcio-reflection could not be installed (python-peers.sh exit $prc)"
else
	PYTHONWARNINGS=ignore timeout 300 "$py" "$srcdir/tests/python/reflection_v1alpha.py" \
		"$S" "$want" >"$D/py.out" 2>"$D/py.err"
	prc=$?
	while IFS= read -r line; do
		case $line in
		"ok - "*) ok "${line#ok - }" ;;
		"not ok - "*) bad "${line#not ok - }" ;;
		"#"*) echo "$line" ;;
		esac
	done <"$D/py.out"
	[ $prc -eq 0 ] && ok "the Python client exited 0" || {
		bad "the Python client exited $prc"
		tail -20 "$D/py.err" | sed 's/^/#   /'
	}
fi

if grep -q "grpc: reset stream\|grpc: ending the connection" "$D/agent.err"; then
	bad "the agent reset a grpcurl stream or connection"
	grep "grpc: " "$D/agent.err" | head -5 | sed 's/^/#   /'
else
	ok "the agent reset no grpcurl stream"
fi
echo "# $(($(date +%s) - t0)) s in all"
echo "1..$n"
[ "$fails" -eq 0 ]
