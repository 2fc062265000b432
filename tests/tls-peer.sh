#!/bin/bash
# The TLS loader in a real C program over real TCP (loopback): tests/tls-peer
# takes its mTLS flags with cubeid_tls_flags_parse(), with certificates
# minted by `cubeid svid mint` from a CA in a throwaway SoftHSM2 token.
#   - a WorkloadManager server that allows only the Router: the Router
#     connects, PicoD and a client without a certificate are refused, and
#     the server says why (the code and the peer's ID);
#   - the same server with its key in the token (a PKCS#11 URI);
#   - new files written under the running server are picked up by the next
#     handshake, and no handshake fails meanwhile;
#   - flag errors are reported by name.
set -u
builddir=${CUBEID_BUILDDIR:-.}
cubeid=$builddir/cli/cubeid
mktoken=$builddir/tests/mktoken
peer=$builddir/tests/tls-peer

for tool in openssl grep; do
	if ! command -v "$tool" >/dev/null 2>&1; then
		echo "SKIP: $tool not found (install the Debian package that provides it)"
		exit 77
	fi
done
exports=$("$mktoken")
rc=$?
[ $rc -eq 77 ] && exit 77
[ $rc -eq 0 ] || { echo "FAIL: tests/mktoken failed ($rc)" >&2; exit 1; }
eval "$exports"
unset CUBEID_TOKEN CUBEID_PIN CUBEID_PIN_FILE CUBEID_PKCS11_MODULE CUBEID_STATE_DIR
T=(--token "$CUBEID_T_URI" --module "$CUBEID_T_MODULE" --pin-file "$CUBEID_T_PIN_FILE")
D=$CUBEID_T_DIR
spid=
cleanup() {
	[ -n "$spid" ] && kill "$spid" 2>/dev/null && wait "$spid" 2>/dev/null
	rm -rf "$D"
}
trap cleanup EXIT
. "$(dirname "$0")/lib/tap.sh"

TD=cluster.local
ROUTER=spiffe://$TD/ns/agentcube-system/sa/agentcube-router
WM=spiffe://$TD/ns/agentcube-system/sa/workloadmanager
PICOD=spiffe://$TD/ns/agentcube-sandbox/sa/picod
check "ca init" 0 "$cubeid" ca init --trust-domain $TD "${T[@]}" --state-dir "$D/ca"
for who in router:$ROUTER wm:$WM picod:$PICOD; do
	check "svid mint ${who%%:*}" 0 "$cubeid" svid mint --spiffe-id "${who#*:}" "${T[@]}" \
		--state-dir "$D/ca" --out "$D/${who%%:*}"
done
files() { # files DIR: the three file flags
	echo "--mtls-cert-file=$1/svid.pem --mtls-key-file=$1/svid_key.pem --mtls-ca-file=$1/svid_bundle.pem"
}

start_server() { # start_server NAME FLAGS...
	local name=$1
	shift
	rm -f "$D/$name.port"
	"$peer" server --listen 127.0.0.1:0 --port-file "$D/$name.port" "$@" \
		>"$D/$name.out" 2>"$D/$name.err" &
	spid=$!
	for _ in $(seq 1 300); do
		[ -s "$D/$name.port" ] && break
		kill -0 "$spid" 2>/dev/null || break
		sleep 0.1
	done
	port=$(cat "$D/$name.port" 2>/dev/null)
}
stop_server() {
	kill -TERM "$spid"
	wait "$spid"
	src=$?
	spid=
}

# a WorkloadManager that allows only the Router
# shellcheck disable=SC2046
start_server wm --enable-mtls $(files "$D/wm") --mtls-allow-id "$ROUTER"
assert "the server listens" [ -n "$port" ]
# shellcheck disable=SC2046
check "the Router connects (3 handshakes)" 0 "$peer" client --connect "127.0.0.1:$port" --count 3 \
	--enable-mtls $(files "$D/router") --mtls-allow-id "$WM"
assert "three good handshakes" grep -q "handshakes=3 ok=3 failed=0 " "$D/out"
# shellcheck disable=SC2046
check "PicoD is refused" 1 "$peer" client --connect "127.0.0.1:$port" \
	--enable-mtls $(files "$D/picod") --mtls-allow-id "$WM"
assert "the client learns it was refused" grep -q "^failed -70 .*bad certificate" "$D/out"
assert "the server says PicoD's ID is not allowed (CUBEID_ERR_TLS_PEER_ID)" \
	grep -q "^refused -71 $PICOD is not on the allow-list" "$D/wm.out"
assert "and logs it" grep -q "handshake with the client failed: $PICOD is not on the allow-list" "$D/wm.err"
# shellcheck disable=SC2046
check "a Router that expects PicoD refuses the WorkloadManager" 1 "$peer" client \
	--connect "127.0.0.1:$port" --enable-mtls $(files "$D/router") --mtls-allow-id "$PICOD"
assert "with CUBEID_ERR_TLS_PEER_ID, naming the server's ID" grep -q "^failed -71 $WM is not on the allow-list" "$D/out"
check "openssl s_client without a certificate" 0 bash -c \
	"echo | openssl s_client -connect 127.0.0.1:$port -tls1_3 -CAfile '$D/wm/svid_bundle.pem' >/dev/null 2>&1; exit 0"
for _ in $(seq 1 50); do grep -q "^refused -72" "$D/wm.out" && break; sleep 0.1; done
assert "the server refuses a client with no certificate (CUBEID_ERR_TLS_NO_PEER_CERT)" \
	grep -q "^refused -72 the client presented no certificate" "$D/wm.out"
check "openssl s_client with TLS 1.2 only" 0 bash -c \
	"echo | openssl s_client -connect 127.0.0.1:$port -tls1_2 -cert '$D/router/svid.pem' -key '$D/router/svid_key.pem' >/dev/null 2>&1; exit 0"
for _ in $(seq 1 50); do grep -q "unsupported protocol" "$D/wm.out" && break; sleep 0.1; done
assert "TLS 1.2 is refused by default" grep -q "^refused -70 .*unsupported protocol" "$D/wm.out"

# new files under the running server: the next handshakes present them
old=$(openssl x509 -in "$D/wm/svid.pem" -noout -serial | cut -d= -f2)
check "svid mint over the server's files" 0 "$cubeid" svid mint --spiffe-id "$WM" "${T[@]}" \
	--state-dir "$D/ca" --out "$D/wm"
new=$(openssl x509 -in "$D/wm/svid.pem" -noout -serial | cut -d= -f2)
assert "a new serial on disk" [ "$old" != "$new" ]
# shellcheck disable=SC2046
check "handshakes while the server reloads (up to 30 s), none failing" 0 "$peer" client \
	--connect "127.0.0.1:$port" --duration-ms 1500 --interval-ms 20 \
	--enable-mtls $(files "$D/router") --mtls-allow-id "$WM"
seen=no
for _ in $(seq 1 60); do
	# shellcheck disable=SC2046
	"$peer" client --connect "127.0.0.1:$port" --enable-mtls $(files "$D/router") \
		--mtls-allow-id "$WM" >"$D/one" 2>&1 || { cat "$D/one"; break; }
	if grep -qi "last_serial=$new\$" "$D/one"; then
		seen=yes
		break
	fi
	sleep 0.5
done
assert "the server presents the new certificate" [ "$seen" = yes ]
stop_server
assert "SIGTERM: the server exits 0" [ "$src" -eq 0 ]
assert "and counts what it did" grep -q "^accepted=[0-9]* refused=[0-9]*" "$D/wm.out"

# the WorkloadManager's key in the token, named by a PKCS#11 URI
check "svid mint --resident" 0 "$cubeid" svid mint --spiffe-id "$WM" --resident "${T[@]}" \
	--state-dir "$D/ca" --out "$D/wm-p11"
uri=$(sed -n 's/^key: //p' "$D/out")
assert "it printed the key's URI" grep -q "^pkcs11:" <<<"$uri"
assert "and wrote no key file" [ ! -e "$D/wm-p11/svid_key.pem" ]
CUBEID_PKCS11_MODULE=$CUBEID_T_MODULE start_server wm-p11 --enable-mtls \
	--mtls-cert-file="$D/wm-p11/svid.pem" --mtls-key-file="$uri" \
	--mtls-pin-file="$CUBEID_T_PIN_FILE" --mtls-ca-file="$D/wm-p11/svid_bundle.pem" \
	--mtls-allow-id "$ROUTER"
assert "the token-key server listens" [ -n "$port" ]
# shellcheck disable=SC2046
check "the Router connects to it" 0 "$peer" client --connect "127.0.0.1:$port" --count 3 \
	--enable-mtls $(files "$D/router") --mtls-allow-id "$WM"
stop_server
assert "no PIN in its log" bash -c "! grep -qF \"\$(cat '$CUBEID_T_PIN_FILE')\" '$D/wm-p11.err' '$D/wm-p11.out'"

# flag errors
check "no allow-list" 1 "$peer" client --connect 127.0.0.1:1 --enable-mtls \
	--mtls-cert-file=/a --mtls-key-file=/b --mtls-ca-file=/c
assert "names the missing flag" grep -q "needs at least one --mtls-allow-id" "$D/err"
check "--mtls-* without --enable-mtls" 2 "$peer" client --connect 127.0.0.1:1 --mtls-cert-file=/a
check "a bad allow-list entry" 1 "$peer" client --connect 127.0.0.1:1 --enable-mtls \
	--mtls-socket=/x --mtls-allow-id "spiffe://TD/a"
assert "names the entry" grep -q 'mtls-allow-id "spiffe://TD/a"' "$D/err"
check "a flag without its value" 2 "$peer" client --connect 127.0.0.1:1 --enable-mtls --mtls-ca-file
assert "names the flag" grep -q "mtls-ca-file needs a value" "$D/err"
check "--help lists the mTLS flags" 0 "$peer" --help
assert "with --mtls-allow-id" grep -q -- "--mtls-allow-id ID" "$D/out"

echo "1..$n"
[ "$fails" -eq 0 ]
