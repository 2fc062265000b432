#!/bin/bash
# Real SPIFFE clients against cubeid-agent --dev (a throwaway SoftHSM2 token
# under a temp state directory, a 6 s X.509-SVID TTL):
#  - go-spiffe v2 workloadapi (tests/interop's checker, built by
#    tests/lib/go-peers.sh): FetchX509SVID (each SVID verifies against the
#    served bundle), FetchJWTSVID, FetchJWTBundles + FetchX509Bundles,
#    ValidateJWTSVID, a WatchX509Context watcher that sees two rotations
#    pushed by the agent, and the raw stub without the security header
#    (InvalidArgument);
#  - another uid (nobody, when we are root): PermissionDenied;
#  - the real spiffe-helper pointed at our socket writes svid.pem,
#    svid_key.pem and svid_bundle.pem, which openssl verifies;
#  - its health listener and `cubeid helper`'s answer alike (codes, content
#    types, JSON bodies), side by side in a private network namespace.
#
# Exit: 0 pass, 1 fail, 77 skip (no usable Go outside CI; with CI=true a
# missing Go is a failure).
set -u
builddir=${CUBEID_BUILDDIR:-.}
srcdir=${CUBEID_SRCDIR:-${srcdir:-$(cd "$(dirname "$0")/.." && pwd)}}
agent=$builddir/agent/cubeid-agent
cubeid=$builddir/cli/cubeid
peers=$srcdir/tests/lib/go-peers.sh

skip_or_fail() {
	echo "=================================================================="
	if [ "${CI:-}" = true ]; then
		echo "FAIL (CI=true): $*"
		echo "=================================================================="
		exit 1
	fi
	echo "SKIP: $* -- the agent interop tests did NOT run"
	echo "=================================================================="
	exit 77
}

command -v openssl >/dev/null || { echo "FAIL: openssl not found"; exit 1; }
tool() { # tool NAME: the path of a Go peer, or skip/fail
	local p rc
	p=$(CUBEID_SRCDIR=$srcdir bash "$peers" path "$1")
	rc=$?
	if [ $rc -ne 0 ] || [ ! -x "$p" ]; then
		[ $rc -eq 3 ] && skip_or_fail "no usable Go to build $1 (go-peers.sh exit 3)"
		echo "FAIL: could not build $1 (go-peers.sh exit $rc)" >&2
		exit 1
	fi
	echo "$p"
}
checker=$(tool cubeid-interop) || exit $?
helper=$(tool spiffe-helper) || exit $?

[ -n "${CUBEID_SOFTHSM_MODULE:-}" ] && export CUBEID_PKCS11_MODULE=$CUBEID_SOFTHSM_MODULE
unset CUBEID_TOKEN CUBEID_PIN CUBEID_PIN_FILE CUBEID_STATE_DIR
D=$(mktemp -d /tmp/cubeid-agent-interop.XXXXXX) || exit 1
chmod 0755 "$D"
pid=
cleanup() {
	[ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
	rm -rf "$D"
}
trap cleanup EXIT
S=$D/agent.sock
export SPIFFE_ENDPOINT_SOCKET=unix://$S
uid=$(id -u)
want="spiffe://cluster.local/unix/uid/$uid"
. "$(dirname "$0")/lib/tap.sh"

"$agent" --dev --state-dir "$D/state" --socket "$S" --x509-svid-ttl 6s --log-level info \
	>"$D/agent.out" 2>"$D/agent.err" &
pid=$!
for _ in $(seq 1 300); do
	[ -S "$S" ] && "$cubeid" status --socket "$S" >/dev/null 2>&1 && break
	kill -0 "$pid" 2>/dev/null || break
	sleep 0.1
done
[ -S "$S" ] && ok "cubeid-agent --dev is up" || bad "cubeid-agent did not start: $(tail -5 "$D/agent.err")"

if "$checker" workload x509 --out "$D/go" >"$D/out" 2>&1 && grep -q "\"$want\"" "$D/out"; then
	ok "go-spiffe FetchX509SVID: $want, verifies against the served bundle"
else
	bad "go-spiffe FetchX509SVID: $(cat "$D/out")"
fi
if openssl verify -CAfile "$D/go/bundle.pem" "$D/go/svid.pem" >/dev/null 2>&1; then
	ok "openssl verifies the SVID go-spiffe received"
else
	bad "openssl verify of go-spiffe's files"
fi
if "$checker" workload jwt --aud x --aud y --token-only >"$D/tok" 2>"$D/out"; then
	ok "go-spiffe FetchJWTSVID (two audiences)"
else
	bad "go-spiffe FetchJWTSVID: $(cat "$D/out")"
fi
tok=$(cat "$D/tok")
if "$checker" workload validate --token "$tok" --aud y >"$D/out" 2>&1 && grep -q "$want" "$D/out"; then
	ok "go-spiffe ValidateJWTSVID"
else
	bad "go-spiffe ValidateJWTSVID: $(cat "$D/out")"
fi
if ! "$checker" workload validate --token "$tok" --aud other >"$D/out" 2>&1 &&
	grep -q "InvalidArgument" "$D/out"; then
	ok "go-spiffe ValidateJWTSVID with a wrong audience: InvalidArgument"
else
	bad "ValidateJWTSVID with a wrong audience: $(cat "$D/out")"
fi
if "$checker" workload bundles >"$D/out" 2>&1 && grep -q '"cluster.local"' "$D/out"; then
	ok "go-spiffe FetchJWTBundles and FetchX509Bundles"
else
	bad "go-spiffe bundles: $(cat "$D/out")"
fi
code=$("$checker" workload probe --no-header 2>&1)
[ "$code" = InvalidArgument ] && ok "no security header: InvalidArgument" || bad "no header gave '$code'"
code=$("$checker" workload probe 2>&1)
[ "$code" = OK ] && ok "with the header: OK" || bad "with the header gave '$code'"
if [ "$uid" -eq 0 ] && command -v setpriv >/dev/null && id nobody >/dev/null 2>&1; then
	code=$(setpriv --reuid=nobody --regid="$(id -g nobody)" --clear-groups \
		"$checker" workload probe 2>&1)
	[ "$code" = PermissionDenied ] && ok "another uid: PermissionDenied" ||
		bad "another uid gave '$code'"
fi

# 6 s TTL: the agent renews at about half life and pushes to the stream
if "$checker" workload watch-x509 --rotations 2 --timeout 60s >"$D/out" 2>&1; then
	ok "go-spiffe WatchX509Context saw two rotations pushed by the agent"
else
	bad "watch-x509: $(cat "$D/out")"
fi

cat >"$D/helper.conf" <<EOF
agent_address = "$S"
cert_dir = "$D/certs"
svid_file_name = "svid.pem"
svid_key_file_name = "svid_key.pem"
svid_bundle_file_name = "svid_bundle.pem"
daemon_mode = false
EOF
mkdir -p "$D/certs"
if timeout 60 "$helper" -config "$D/helper.conf" >"$D/helper.log" 2>&1 &&
	openssl verify -CAfile "$D/certs/svid_bundle.pem" "$D/certs/svid.pem" >/dev/null 2>&1 &&
	[ "$(openssl x509 -in "$D/certs/svid.pem" -noout -pubkey)" = \
		"$(openssl pkey -in "$D/certs/svid_key.pem" -pubout 2>/dev/null)" ]; then
	ok "spiffe-helper wrote svid.pem/svid_key.pem/svid_bundle.pem; openssl verifies; key matches"
else
	bad "spiffe-helper: $(cat "$D/helper.log")"
fi

# the health listener of the real spiffe-helper and of `cubeid helper`, side
# by side with the same configuration, in a private network namespace (both
# bind every address, as spiffe-helper's ":PORT" does; nothing leaves it)
cat >"$D/health.conf" <<EOF
agent_address = "$S"
cert_dir = "certs"
svid_file_name = "svid.pem"
svid_key_file_name = "svid_key.pem"
svid_bundle_file_name = "svid_bundle.pem"
jwt_bundle_file_name = "jwt_bundle.json"
jwt_svids = [{jwt_audience = "picod", jwt_svid_file_name = "picod.jwt"}]
health_checks {
  listener_enabled = true
  bind_port = PORT
}
EOF
if ! command -v curl >/dev/null || ! unshare -n true 2>/dev/null; then
	if [ "${CI:-}" = true ]; then
		bad "health listeners side by side: needs curl and unshare -n (a network namespace)"
	else
		echo "# SKIP: health listeners side by side: needs curl and unshare -n"
	fi
else
	mkdir -p "$D/sh/certs" "$D/ch/certs"
	sed 's/PORT/8081/' "$D/health.conf" >"$D/sh/helper.conf"
	sed 's/PORT/8082/' "$D/health.conf" >"$D/ch/helper.conf"
	# shellcheck disable=SC2016
	timeout 300 unshare -n bash -c '
		ip link set lo up || exit 1
		(cd "$1/sh" && exec "$2" -config helper.conf >"$1/sh/log" 2>&1) &
		a=$!
		(cd "$1/ch" && exec "$3" helper -config helper.conf >"$1/ch/log" 2>&1) &
		b=$!
		get() { curl -s -o "$1/$2.body" -w "%{http_code} %{content_type}" --max-time 30 \
			"http://127.0.0.1:$3$4" >"$1/$2.code"; }
		for _ in $(seq 1 1200); do
			get "$1/sh" ready 8081 /ready
			get "$1/ch" ready 8082 /ready
			[ "$(cat "$1/sh/ready.code")" = "200 application/json" ] &&
				[ "$(cat "$1/ch/ready.code")" = "200 application/json" ] && break
			sleep 0.1
		done
		for d in sh:8081 ch:8082; do
			get "$1/${d%:*}" live "${d#*:}" /live
			get "$1/${d%:*}" nope "${d#*:}" /nope
		done
		kill -TERM "$a" "$b"
		wait "$a" "$b"
	' sh "$D" "$helper" "$cubeid"
	same=1
	for f in ready.code ready.body live.code live.body nope.code nope.body; do
		cmp -s "$D/sh/$f" "$D/ch/$f" || same=0
	done
	if [ "$same" -eq 1 ] && [ "$(cat "$D/sh/ready.code")" = "200 application/json" ] &&
		grep -q '"x509_write_status":"written"' "$D/sh/ready.body"; then
		ok "health listeners side by side: /ready, /live, /nope answer as spiffe-helper's: $(cat "$D/ch/ready.body")"
	else
		bad "health listeners differ: spiffe-helper $(cat "$D/sh/"{ready.code,ready.body,live.code,live.body,nope.code,nope.body} 2>/dev/null | tr '\n' ' ')" \
			"/ cubeid $(cat "$D/ch/"{ready.code,ready.body,live.code,live.body,nope.code,nope.body} 2>/dev/null | tr '\n' ' ')"
		tail -5 "$D/sh/log" "$D/ch/log"
	fi
fi

kill -TERM "$pid"
wait "$pid"
rc=$?
pid=
[ "$rc" -eq 0 ] && ok "SIGTERM with open clients: exit 0" || bad "SIGTERM: exit $rc"

echo "1..$n"
if [ "$fails" -ne 0 ]; then
	echo "agent log:"
	sed 's/^/    | /' "$D/agent.err" | tail -40
	exit 1
fi
exit 0
