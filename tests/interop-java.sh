#!/bin/bash
# java-spiffe, unchanged, against cubeid-agent --dev (a throwaway SoftHSM2
# token under a temp state directory, a 6 s X.509-SVID TTL).  java-spiffe
# and its dependencies come from Maven, and tests/java/CubeidJavaInterop.java
# is compiled against them (tests/lib/java-peers.sh, cached by version).
# Two JVMs:
#  - the first runs fetchX509Context, fetchX509Bundles, fetchJwtSvid with one
#    and two audiences, fetchJwtBundles, validateJwtSvid (and a refusal),
#    DefaultX509Source and DefaultJwtSource, and a watchX509Context that,
#    with the source, sees two rotations; then it serves mTLS with
#    java-spiffe-provider, accepting only our SPIFFE ID;
#  - the second is the mTLS client: it refuses the server under a SPIFFE ID
#    it does not accept, then talks to it under the right one.
# grpc-java sends the socket's path as :authority: the agent must not reset
# a single stream (its log is checked).
#
# Exit: 0 pass, 1 fail, 77 skip (no JDK or mvn outside CI; with CI=true a
# missing peer is a failure).
set -u
builddir=${CUBEID_BUILDDIR:-.}
srcdir=${CUBEID_SRCDIR:-${srcdir:-$(cd "$(dirname "$0")/.." && pwd)}}
agent=$builddir/agent/cubeid-agent
cubeid=$builddir/cli/cubeid
peers=$srcdir/tests/lib/java-peers.sh

skip_or_fail() {
	echo "=================================================================="
	if [ "${CI:-}" = true ]; then
		echo "FAIL (CI=true): $*"
		echo "=================================================================="
		exit 1
	fi
	echo "SKIP: $* -- the java-spiffe interop tests did NOT run"
	echo "=================================================================="
	exit 77
}

t0=$(date +%s)
cp=$(CUBEID_SRCDIR=$srcdir bash "$peers" classpath)
rc=$?
[ $rc -eq 3 ] && skip_or_fail "no JDK or no mvn for java-spiffe (java-peers.sh exit 3)"
[ $rc -eq 0 ] || { echo "FAIL: could not fetch or compile java-spiffe (java-peers.sh exit $rc)"; exit 1; }
java=$(CUBEID_SRCDIR=$srcdir bash "$peers" java) || exit 1
echo "# java-spiffe ready in $(($(date +%s) - t0)) s"

[ -n "${CUBEID_SOFTHSM_MODULE:-}" ] && export CUBEID_PKCS11_MODULE=$CUBEID_SOFTHSM_MODULE
unset CUBEID_TOKEN CUBEID_PIN CUBEID_PIN_FILE CUBEID_STATE_DIR
D=$(mktemp -d /tmp/cubeid-java-interop.XXXXXX) || exit 1
pid=
jpid=
cleanup() {
	[ -n "$jpid" ] && kill "$jpid" 2>/dev/null && wait "$jpid" 2>/dev/null
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

# TAP lines from a JVM, renumbered into ours
tap_from() {
	local line
	while IFS= read -r line; do
		case $line in
		"ok - "*) ok "java-spiffe ${line#ok - }" ;;
		"not ok - "*) bad "java-spiffe ${line#not ok - }" ;;
		"#"*) echo "$line" ;;
		esac
	done <"$1"
}

# java.util.logging's INFO lines from java-spiffe go to the JVM's stderr
jopts=(-XX:TieredStopAtLevel=1 -Xshare:auto -cp "$cp")
"$java" "${jopts[@]}" CubeidJavaInterop all "$S" "$want" "$D/port" \
	>"$D/java-all.out" 2>"$D/java-all.err" &
jpid=$!
for _ in $(seq 1 1200); do
	[ -s "$D/port" ] && break
	kill -0 "$jpid" 2>/dev/null || break
	sleep 0.1
done
if [ -s "$D/port" ]; then
	timeout 300 "$java" "${jopts[@]}" CubeidJavaInterop client "$S" "$(cat "$D/port")" "$want" \
		>"$D/java-client.out" 2>"$D/java-client.err"
	crc=$?
else
	crc=1
	echo "# the first JVM never served mTLS"
fi
wait "$jpid"
arc=$?
jpid=
tap_from "$D/java-all.out"
tap_from "$D/java-client.out"
if [ $arc -ne 0 ] || [ $crc -ne 0 ]; then
	bad "the JVMs exited with $arc and $crc"
	echo "# the first JVM's stderr:"
	tail -20 "$D/java-all.err" | sed 's/^/#   /'
	echo "# the second JVM's stderr:"
	tail -20 "$D/java-client.err" | sed 's/^/#   /'
else
	ok "both JVMs exited 0"
fi
if grep -q "grpc: reset stream\|grpc: ending the connection" "$D/agent.err"; then
	bad "the agent reset a java-spiffe stream or connection"
	grep "grpc: " "$D/agent.err" | head -5 | sed 's/^/#   /'
else
	ok "the agent reset no java-spiffe stream (the socket path as :authority is served)"
fi
echo "# $(($(date +%s) - t0)) s in all"
echo "1..$n"
[ "$fails" -eq 0 ]
