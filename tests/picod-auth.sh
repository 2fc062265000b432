#!/bin/bash
# --picod-auth-mode mtls|jwt (<cubeid/picod-auth.h>) between a C Router and
# a C PicoD (tests/picod-auth-peer) over TCP, with a real cubeid-agent
# --dev for the SVIDs (mtls, through the Workload API socket) and the
# tokens (jwt):
#   - mtls (the default): the Router's SVID reaches PicoD, which accepts
#     only spiffe://cluster.local/ns/agentcube-system/sa/agentcube-router
#     and refuses any other SPIFFE ID;
#   - jwt: an agent-signed Bearer token for this sandbox and session is
#     accepted; one for another sandbox gets 401;
#   - a mismatch fails clearly on both sides (CUBEID_ERR_AUTH_MODE): a jwt
#     Router against an mtls PicoD, and an mtls Router against a jwt PicoD.
set -u
builddir=${CUBEID_BUILDDIR:-.}
cubeid=$builddir/cli/cubeid
agent=$builddir/agent/cubeid-agent
peer=$builddir/tests/picod-auth-peer

[ -n "${CUBEID_SOFTHSM_MODULE:-}" ] && export CUBEID_PKCS11_MODULE=$CUBEID_SOFTHSM_MODULE
unset CUBEID_TOKEN CUBEID_PIN CUBEID_PIN_FILE CUBEID_STATE_DIR SPIFFE_ENDPOINT_SOCKET \
	PICOD_AUTH_PUBLIC_KEY
D=$(mktemp -d /tmp/cubeid-picod-auth.XXXXXX) || exit 1
pids=()
cleanup() {
	local i
	for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
		kill "${pids[$i]}" 2>/dev/null && wait "${pids[$i]}" 2>/dev/null
	done
	[ -n "${KEEP:-}" ] || rm -rf "$D"
}
trap cleanup EXIT
S=$D/agent.sock
uid=$(id -u)
fails=0
n=0
check() { # check NAME WANT_RC CMD...
	local name=$1 want=$2 got
	shift 2
	"$@" >"$D/out" 2>"$D/err"
	got=$?
	n=$((n + 1))
	if [ "$got" -eq "$want" ]; then
		echo "ok $n - $name"
	else
		fails=$((fails + 1))
		echo "not ok $n - $name (exit $got, want $want)"
		sed 's/^/    | /' "$D/err" "$D/out" | head -20
	fi
}
assert() { # assert NAME TEST...
	n=$((n + 1))
	if "${@:2}"; then echo "ok $n - $1"; else
		fails=$((fails + 1))
		echo "not ok $n - $1"
	fi
}
# last_line FILE: wait for a new line in a server's output, print it
wait_line() {
	local f=$1 before=$2
	for _ in $(seq 1 300); do
		[ "$(wc -l <"$f")" -gt "$before" ] && break
		sleep 0.1
	done
	tail -1 "$f"
}

router=spiffe://cluster.local/ns/agentcube-system/sa/agentcube-router
sandbox_id=spiffe://cluster.local/unix/uid/$uid
cat >"$D/entries.yaml" <<EOF
entries:
  - name: router
    spiffe_id: $router
    selectors: [unix:uid:$uid]
    picod_signer: true
EOF
"$agent" --dev --state-dir "$D/state" --socket "$S" --entries "$D/entries.yaml" \
	>"$D/agent.out" 2>"$D/agent.err" &
pids+=($!)
for _ in $(seq 1 300); do
	[ -S "$S" ] && "$cubeid" status --socket "$S" >/dev/null 2>&1 && break
	sleep 0.1
done
check "the agent is up" 0 "$cubeid" status --socket "$S"
check "the PicoD key" 0 "$cubeid" picod public-key --socket "$S" --out "$D/key.pem"

# PicoD in mtls mode (the default: no --picod-auth-mode) with the sandbox's
# SVID, accepting only the Router
"$peer" server --enable-mtls --mtls-socket "$S" --mtls-spiffe-id "$sandbox_id" \
	--port-file "$D/mtls.port" >"$D/mtls.log" 2>"$D/mtls.err" &
pids+=($!)
# PicoD in jwt mode for sandbox sb-a, session s-1
PICOD_AUTH_PUBLIC_KEY="$(cat "$D/key.pem")" "$peer" server --picod-auth-mode jwt \
	--sandbox sb-a --session s-1 --port-file "$D/jwt.port" >"$D/jwt.log" 2>"$D/jwt.err" &
pids+=($!)
for _ in $(seq 1 300); do
	[ -s "$D/mtls.port" ] && [ -s "$D/jwt.port" ] && break
	sleep 0.1
done
mtls=127.0.0.1:$(cat "$D/mtls.port")
jwt=127.0.0.1:$(cat "$D/jwt.port")
assert "both PicoDs listen" bash -c "[ -s '$D/mtls.port' ] && [ -s '$D/jwt.port' ]"
: >"$D/mtls.log.seen"

# mtls
l=$(wc -l <"$D/mtls.log")
check "mtls: the Router reaches PicoD" 0 "$peer" client --enable-mtls --mtls-socket "$S" \
	--mtls-spiffe-id "$router" --connect "$mtls" --session s-1 --sandbox sb-a
assert "HTTP 200" grep -q "^HTTP/1.1 200 OK" "$D/out"
assert "PicoD saw the Router's SPIFFE ID" [ "$(wait_line "$D/mtls.log" "$l")" = "200 peer=$router" ]
l=$(wc -l <"$D/mtls.log")
check "mtls: --picod-auth-mode mtls said explicitly" 0 "$peer" client --picod-auth-mode mtls \
	--enable-mtls --mtls-socket "$S" --mtls-spiffe-id "$router" --connect "$mtls" \
	--session s-1 --sandbox sb-a
wait_line "$D/mtls.log" "$l" >/dev/null
l=$(wc -l <"$D/mtls.log")
check "mtls: another SPIFFE ID is refused" 2 "$peer" client --enable-mtls --mtls-socket "$S" \
	--mtls-spiffe-id "$sandbox_id" --connect "$mtls" --session s-1 --sandbox sb-a
got=$(wait_line "$D/mtls.log" "$l")
assert "PicoD refused it: not on the allow-list" grep -q 'refused.*SPIFFE ID is not allowed' <<<"$got"

# jwt
l=$(wc -l <"$D/jwt.log")
check "jwt: the Router's Bearer token reaches PicoD" 0 "$peer" client --picod-auth-mode jwt \
	--socket "$S" --connect "$jwt" --session s-1 --sandbox sb-a
assert "HTTP 200" grep -q "^HTTP/1.1 200 OK" "$D/out"
assert "PicoD verified sub and session" [ "$(wait_line "$D/jwt.log" "$l")" = "200 sub=$router session_id=s-1" ]
l=$(wc -l <"$D/jwt.log")
check "jwt: a token for sandbox sb-b gets 401" 1 "$peer" client --picod-auth-mode jwt \
	--socket "$S" --connect "$jwt" --session s-1 --sandbox sb-b
assert "HTTP 401 with WWW-Authenticate" bash -c "grep -q '^HTTP/1.1 401' '$D/out' && grep -q 'WWW-Authenticate: Bearer' '$D/out'"
got=$(wait_line "$D/jwt.log" "$l")
assert "PicoD: audience" grep -q '^401 JWT audience' <<<"$got"
l=$(wc -l <"$D/jwt.log")
check "jwt: another session gets 401" 1 "$peer" client --picod-auth-mode jwt \
	--socket "$S" --connect "$jwt" --session s-2 --sandbox sb-a
got=$(wait_line "$D/jwt.log" "$l")
assert "PicoD: session" grep -q "^401 the token's session_id" <<<"$got"

# mismatches
l=$(wc -l <"$D/mtls.log")
check "a jwt Router against an mtls PicoD fails clearly" 3 "$peer" client --picod-auth-mode jwt \
	--socket "$S" --connect "$mtls" --session s-1 --sandbox sb-a
assert "the Router says: different auth modes" grep -q "different auth modes" "$D/err"
assert "and names them" grep -q "PicoD is in --picod-auth-mode mtls, this Router in jwt" "$D/err"
got=$(wait_line "$D/mtls.log" "$l")
assert "PicoD refused it for its mode" grep -q 'refused the client and the server use different auth modes' <<<"$got"
l=$(wc -l <"$D/jwt.log")
check "an mtls Router against a jwt PicoD fails clearly" 3 "$peer" client --enable-mtls \
	--mtls-socket "$S" --mtls-spiffe-id "$router" --connect "$jwt" --session s-1 --sandbox sb-a
assert "the Router says: different auth modes" grep -q "different auth modes" "$D/err"
got=$(wait_line "$D/jwt.log" "$l")
assert "PicoD refused it for its mode" grep -q 'refused the client and the server use different auth modes' <<<"$got"
check "a bad --picod-auth-mode is refused" 2 "$peer" client --picod-auth-mode tls \
	--connect "$jwt" --session s --sandbox sb-a
assert "naming the flag" grep -q "picod-auth-mode" "$D/err"
check "jwt mode without a key is refused at start" 2 env -u PICOD_AUTH_PUBLIC_KEY "$peer" server \
	--picod-auth-mode jwt --sandbox sb-a --port-file "$D/x.port"
check "mtls mode without the loader's flags is refused at start" 2 "$peer" server \
	--port-file "$D/y.port"

echo "1..$n"
[ "$fails" -eq 0 ]
