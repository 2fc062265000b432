#!/bin/bash
# libcubeid's Workload API client on a tcp:// endpoint (SPIFFE Workload
# Endpoint, section 4: "tcp://IP:PORT").  cubeid-agent serves Unix sockets
# only, so socat (Debian) bridges a loopback TCP port to the agent's socket:
# the gRPC server at the other end is the real agent.  The agent attests
# the peer of its Unix socket, which is socat, running as our uid: the
# --dev identity spiffe://cluster.local/unix/uid/$(id -u) is socat's, and
# so ours.
#   - svid fetch, jwt fetch and bundle fetch over tcp://127.0.0.1:PORT get
#     what they get over the Unix socket;
#   - SPIFFE_ENDPOINT_SOCKET=tcp://... is followed too;
#   - a tcp URI with a host name, no port, a path, userinfo, a query or a
#     port out of range is refused with a message that says which, and
#     nothing is fetched;
#   - a tcp port where nobody listens is "unavailable".
#
# Exit: 0 pass, 1 fail, 77 skip (no socat outside CI; with CI=true a
# missing socat is a failure).
set -u
builddir=${CUBEID_BUILDDIR:-.}
agent=$builddir/agent/cubeid-agent
cubeid=$builddir/cli/cubeid

for tool in socat openssl; do
	if ! command -v "$tool" >/dev/null 2>&1; then
		if [ "${CI:-}" = true ]; then
			echo "FAIL (CI=true): $tool not found (scripts/install-deps installs it)"
			exit 1
		fi
		echo "SKIP: $tool not found -- the tcp:// endpoint tests did NOT run"
		exit 77
	fi
done
[ -n "${CUBEID_SOFTHSM_MODULE:-}" ] && export CUBEID_PKCS11_MODULE=$CUBEID_SOFTHSM_MODULE
unset CUBEID_TOKEN CUBEID_PIN CUBEID_PIN_FILE CUBEID_STATE_DIR SPIFFE_ENDPOINT_SOCKET
D=$(mktemp -d /tmp/cubeid-wapi-tcp.XXXXXX) || exit 1
pid=
spid=
cleanup() {
	[ -n "$spid" ] && kill "$spid" 2>/dev/null && wait "$spid" 2>/dev/null
	[ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
	rm -rf "$D"
}
trap cleanup EXIT
S=$D/agent.sock
want="spiffe://cluster.local/unix/uid/$(id -u)"
. "$(dirname "$0")/lib/tap.sh"
. "$(dirname "$0")/lib/free-port.sh"

printf 'entries: []\n' >"$D/entries.yaml"
"$agent" --dev --entries "$D/entries.yaml" --state-dir "$D/state" --socket "$S" \
	>"$D/agent.out" 2>"$D/agent.err" &
pid=$!
for _ in $(seq 1 1200); do
	[ -S "$S" ] && "$cubeid" status --socket "$S" >/dev/null 2>&1 && break
	kill -0 "$pid" 2>/dev/null || break
	sleep 0.1
done
if ! "$cubeid" status --socket "$S" >/dev/null 2>&1; then
	echo "Bail out! the agent did not come up"
	sed 's/^/    | /' "$D/agent.err" | tail -20
	exit 1
fi

# socat on a free loopback port; another process may take the port between
# free_port and the bind, so try a few
port=
for _ in 1 2 3 4 5; do
	p=$(free_port) || break
	socat "TCP-LISTEN:$p,bind=127.0.0.1,reuseaddr,fork" "UNIX-CONNECT:$S" 2>"$D/socat.err" &
	spid=$!
	for _ in $(seq 1 100); do
		(exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null && { port=$p; break; }
		kill -0 "$spid" 2>/dev/null || break
		sleep 0.1
	done
	[ -n "$port" ] && break
	kill "$spid" 2>/dev/null
	wait "$spid" 2>/dev/null
	spid=
done
if [ -z "$port" ]; then
	echo "Bail out! socat did not listen on loopback"
	sed 's/^/    | /' "$D/socat.err"
	exit 1
fi
T=tcp://127.0.0.1:$port

mkdir -p "$D/tcp" "$D/unix"
check "svid fetch over $T" 0 "$cubeid" svid fetch --socket "$T" --out "$D/tcp"
assert "it prints the dev identity" grep -qx "$want" "$D/out"
assert "the SVID's URI SAN is the dev identity" \
	sh -c "openssl x509 -in '$D/tcp/svid.pem' -noout -ext subjectAltName | grep -qF 'URI:$want'"
check "svid fetch over the Unix socket" 0 "$cubeid" svid fetch --socket "unix://$S" --out "$D/unix"
assert "the bundle over tcp is the bundle over the Unix socket" \
	cmp -s "$D/tcp/svid_bundle.pem" "$D/unix/svid_bundle.pem"
assert "the SVID over tcp verifies against that bundle" \
	openssl verify -CAfile "$D/unix/svid_bundle.pem" "$D/tcp/svid.pem"
check "jwt fetch over $T" 0 "$cubeid" jwt fetch --aud tcp-test --socket "$T"
cp "$D/out" "$D/jwt"
check "ValidateJWTSVID over $T accepts it" 0 "$cubeid" jwt validate --aud tcp-test \
	--socket "$T" "$(head -1 "$D/jwt")"
check "bundle fetch over $T" 0 "$cubeid" bundle fetch --socket "$T"
check "SPIFFE_ENDPOINT_SOCKET=$T is followed (jwt fetch)" 0 \
	env SPIFFE_ENDPOINT_SOCKET="$T" "$cubeid" jwt fetch --aud tcp-env

# malformed tcp URIs (Workload Endpoint 4): refused before any connection
refused() { # refused NAME URI WORDS
	check "$1 is refused (usage error)" 2 "$cubeid" svid fetch --socket "$2" --out "$D/bad"
	assert "... saying so ($3)" grep -qF "$3" "$D/err"
}
mkdir -p "$D/bad"
refused "a host name (tcp://localhost:$port)" "tcp://localhost:$port" "not a host name"
refused "no port (tcp://127.0.0.1)" "tcp://127.0.0.1" "needs a port"
refused "an empty port (tcp://127.0.0.1:)" "tcp://127.0.0.1:" "needs a port"
refused "a path ($T/agent)" "$T/agent" "no path"
refused "an empty path ($T/)" "$T/" "no path"
refused "userinfo (tcp://me@127.0.0.1:$port)" "tcp://me@127.0.0.1:$port" "no userinfo"
refused "a query ($T?x=1)" "$T?x=1" "no path, query or fragment"
refused "port 70000" "tcp://127.0.0.1:70000" "from 1 to 65535"
refused "an IPv6 address without brackets" "tcp://::1:$port" "in brackets"
refused "tcp:127.0.0.1:$port (no //)" "tcp:127.0.0.1:$port" "tcp://IP:PORT"
assert "nothing was written for them" test -z "$(ls -A "$D/bad")"

# nobody on the port: unavailable, like a Unix socket nobody serves
kill "$spid" 2>/dev/null
wait "$spid" 2>/dev/null
spid=
check "a tcp port nobody listens on fails" 1 "$cubeid" svid fetch --socket "$T" --out "$D/bad"
assert "... as unavailable (cannot connect)" grep -qF "cannot connect to $T" "$D/err"

echo "1..$n"
[ "$fails" -eq 0 ]
