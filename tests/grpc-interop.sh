#!/bin/bash
# The agent's gRPC server against a real gRPC client: go-spiffe's
# workloadapi (grpc-go) from tests/interop talks to tests/grpc-toy-server,
# which serves canned Workload API answers over agent/grpc-server.c.  This
# proves the HTTP/2 (h2c on a Unix socket) and gRPC framing interoperate:
# unary and streaming calls, trailers, status codes and grpc-message.
#
# Exit: 0 pass, 1 fail, 77 skip (no usable Go outside CI).
set -u

srcdir=${CUBEID_SRCDIR:-$(cd "$(dirname "$0")/.." && pwd)}
builddir=${CUBEID_BUILDDIR:-.}
toy=$builddir/tests/grpc-toy-server

checker=$("$srcdir/tests/lib/go-peers.sh" path cubeid-interop)
rc=$?
if [ $rc -ne 0 ]; then
	if [ $rc -eq 3 ] && [ "${CI:-}" != true ]; then
		echo "SKIP: no usable Go to build the checker (see the message above)"
		exit 77
	fi
	echo "FAIL: could not build cubeid-interop (go-peers.sh exit $rc)"
	exit 1
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/cubeid-grpc-interop.XXXXXX") || exit 1
sock=$work/agent.sock
"$toy" "$sock" >"$work/toy.out" 2>"$work/toy.err" &
toy_pid=$!
trap 'kill $toy_pid 2>/dev/null; wait $toy_pid 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 1 200); do
	grep -q '^ready' "$work/toy.out" 2>/dev/null && break
	kill -0 $toy_pid 2>/dev/null || break
	sleep 0.05
done
if ! grep -q '^ready' "$work/toy.out"; then
	echo "FAIL: grpc-toy-server did not start: $(cat "$work/toy.err")"
	exit 1
fi
export SPIFFE_ENDPOINT_SOCKET=unix://$sock

pass=0
fail=0
ok() {
	pass=$((pass + 1))
	echo "ok - $*"
}
bad() {
	fail=$((fail + 1))
	echo "not ok - $*"
}
# expect NAME WANT_RC PATTERN CMD...: exit status WANT_RC and PATTERN (a
# grep -E regex) in stdout+stderr.
expect() {
	local name=$1 want=$2 pat=$3 rc
	shift 3
	"$@" >"$work/out" 2>&1
	rc=$?
	if [ $rc -eq "$want" ] && grep -Eq -- "$pat" "$work/out"; then
		ok "$name"
	else
		bad "$name (exit $rc, want $want and /$pat/): $(cat "$work/out")"
	fi
}

expect "FetchX509SVID stream, first message (grpc-go stub)" 0 '^OK$' "$checker" workload probe
expect "no security header: InvalidArgument" 0 '^InvalidArgument$' "$checker" workload probe --no-header
expect "FetchJWTSVID (unary) for two audiences" 0 '"spiffe_id": "spiffe://example.org/toy"' \
	"$checker" workload jwt --aud svc-a --aud svc-b
grep -q '"svc-b"' "$work/out" && ok "JWT-SVID carries the second audience" || bad "JWT-SVID audiences: $(cat "$work/out")"
token=$("$checker" workload jwt --aud svc-a --token-only 2>/dev/null)
expect "FetchJWTBundles + FetchX509Bundles (streams)" 0 '"example.org": \[' "$checker" workload bundles
grep -q '"1"' "$work/out" && ok "JWT bundle has kid 1" || bad "JWT bundle: $(cat "$work/out")"
grep -Eq '"example.org": 1' "$work/out" && ok "X.509 bundle has one CA" || bad "X.509 bundle: $(cat "$work/out")"
expect "ValidateJWTSVID (unary, Struct claims)" 0 '"sub": "spiffe://example.org/toy"' \
	"$checker" workload validate --token "$token" --aud svc-a
expect "ValidateJWTSVID PermissionDenied with its message" 1 'PermissionDenied.*audience "deny" is refused' \
	"$checker" workload validate --token "$token" --aud deny

if kill -0 $toy_pid 2>/dev/null; then ok "server still running"; else bad "server died: $(cat "$work/toy.err")"; fi
kill -TERM $toy_pid
wait $toy_pid
rc=$?
[ $rc -eq 0 ] && ok "server stops cleanly on SIGTERM" || bad "server exit $rc: $(cat "$work/toy.err")"
trap 'rm -rf "$work"' EXIT

echo "grpc-interop: $pass passed, $fail failed"
[ $fail -eq 0 ]
