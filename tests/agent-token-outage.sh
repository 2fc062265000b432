#!/bin/bash
# cubeid-agent recovers from a token outage by itself (docs/pkcs11.md,
# "Token outages"), with the real daemon (--dev) on a throwaway SoftHSM2
# token, in two rounds:
#   1. SoftHSM2's token directory moved away, then moved back;
#   2. the token's directory made unreadable (chmod 000), then restored.
# Each round waits until `cubeid status` reports the token unhealthy and
# says it is retrying, restores the token, and then asserts that the agent
# is healthy again AND mints: a JWT-SVID for an audience it never saw (the
# token signs it; the issued counter proves it is not a cached one), and an
# X.509-SVID that openssl verifies.  How fast is not a wall-clock assertion
# (this machine may be loaded): the agent's 1 s probe re-inits once the
# backoff allows, at most P11_RECOVER_MAX_MS (4 s), so the test asserts
# that the retry delay it reported while down never passed that cap, and
# that at most one re-init failed after the token was back (one may have
# been under way as it came back).  The recovery time (token restored ->
# fresh SVID) is printed.
#
# As root, chmod 000 does not keep root out (CAP_DAC_OVERRIDE), so the
# agent then runs without the DAC capabilities (setpriv), like a service
# user would; without setpriv round 2 is skipped.
set -u
builddir=${CUBEID_BUILDDIR:-.}
cubeid=$builddir/cli/cubeid
agent=$builddir/agent/cubeid-agent

for tool in openssl python3; do
	if ! command -v "$tool" >/dev/null 2>&1; then
		echo "SKIP: $tool not found"
		exit 77
	fi
done
[ -n "${CUBEID_SOFTHSM_MODULE:-}" ] && export CUBEID_PKCS11_MODULE=$CUBEID_SOFTHSM_MODULE
unset CUBEID_TOKEN CUBEID_PIN CUBEID_PIN_FILE CUBEID_STATE_DIR SPIFFE_ENDPOINT_SOCKET
D=$(mktemp -d /tmp/cubeid-token-outage.XXXXXX) || exit 1
pid=
tokdir=
cleanup() {
	[ -n "$tokdir" ] && chmod 700 "$tokdir" 2>/dev/null
	[ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
	rm -rf "$D"
}
trap cleanup EXIT
S=$D/run/agent.sock
state=$D/state
. "$(dirname "$0")/lib/tap.sh"
json() { python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print($2)" "$1"; }
now() { date +%s.%N; }

run=()
if [ "$(id -u)" -eq 0 ]; then
	if command -v setpriv >/dev/null 2>&1; then
		run=(setpriv --inh-caps=-dac_override,-dac_read_search
			--bounding-set=-dac_override,-dac_read_search --)
	else
		echo "# no setpriv: as root, chmod 000 cannot hide the token; round 2 skipped"
	fi
fi
printf 'entries: []\n' >"$D/entries.yaml"
printf '%s\n' "trust_domain: cluster.local" "entries: $D/entries.yaml" "log_level: info" \
	>"$D/agent.yaml"
"${run[@]}" "$agent" --dev --config "$D/agent.yaml" --socket "$S" --state-dir "$state" \
	>"$D/agent.out" 2>"$D/agent.err" &
pid=$!
for _ in $(seq 1 300); do
	[ -S "$S" ] && "$cubeid" status --socket "$S" >/dev/null 2>&1 && break
	kill -0 "$pid" 2>/dev/null || break
	sleep 0.1
done
check "the agent is up" 0 "$cubeid" status --socket "$S" -o json
assert "the token is healthy" [ "$(json "$D/out" "d['token']['healthy']")" = True ]
tokdir=$(ls -d "$state"/softhsm/tokens/*/ 2>/dev/null | head -1)
tokdir=${tokdir%/}
assert "the token's directory is there" [ -d "$tokdir" ]

# round NAME BREAK RESTORE: break the token, wait for unhealthy, restore, time
# the recovery to a minted JWT-SVID (a new audience) and X.509-SVID.
round() {
	local name=$1 brk=$2 fix=$3 healthy=True t0 t1 issued0 issued1 ok= lines retry worst=0
	local failed_after
	check "$name: jwt fetch before" 0 "$cubeid" jwt fetch --aud "before-$name" --socket "$S"
	eval "$brk"
	for _ in $(seq 1 120); do
		# exit 8: the agent answers, not ready
		{ "$cubeid" status --socket "$S" -o json >"$D/st" 2>/dev/null || [ $? -eq 8 ]; } || break
		healthy=$(json "$D/st" "d['token']['healthy']")
		[ "$healthy" = False ] && break
		sleep 0.25
	done
	assert "$name: status turns unhealthy" [ "$healthy" = False ]
	# Stay down for a few re-init attempts, so that the backoff grows to
	# its cap, and read what the agent says meanwhile.
	for _ in $(seq 1 12); do
		# exit 8 while not ready: what counts is the JSON it printed
		"$cubeid" status --socket "$S" -o json >"$D/st" 2>/dev/null
		[ -s "$D/st" ] || break
		retry=$(json "$D/st" "d['token'].get('retry_in', 0)")
		worst=$(python3 -c "print(max($worst, $retry))")
		sleep 0.5
	done
	assert "$name: the retry delay it reports never passed 4 s (the backoff cap) ($worst s)" \
		python3 -c "import sys; sys.exit(0 if $worst <= 4.0 else 1)"
	check "$name: cubeid status while down (8: not ready)" 8 "$cubeid" status --socket "$S"
	assert "$name: it says the token is unavailable and when it retries" \
		grep -Eq "UNHEALTHY: token unavailable .*retrying in [0-9]+s" "$D/out"
	check "$name: status -o json while down (8: not ready)" 8 "$cubeid" status --socket "$S" -o json
	assert "$name: token.unavailable is true" [ "$(json "$D/out" "d['token']['unavailable']")" = True ]
	assert "$name: ready says why" \
		[ "$(json "$D/out" "'token unavailable' in d['health']['why']")" = True ]
	assert "$name: a mint fails while down" \
		bash -c "! '$cubeid' jwt fetch --aud 'down-$name' --socket '$S' >/dev/null 2>'$D/down.err'"
	assert "$name: with Unavailable (Workload Endpoint 6)" grep -q "code=Unavailable" "$D/down.err"
	issued0=$(json "$D/st" "d['metrics']['issued']['jwt']")
	eval "$fix"
	t0=$(now)
	lines=$(wc -l <"$D/agent.err")
	for _ in $(seq 1 600); do
		if "$cubeid" jwt fetch --aud "after-$name" --socket "$S" >"$D/jwt" 2>/dev/null; then
			ok=1
			break
		fi
		sleep 0.1
	done
	t1=$(now)
	secs=$(python3 -c "print('%.2f' % ($t1 - $t0))")
	echo "# $name: recovered to a fresh JWT-SVID in ${secs}s after the token came back"
	assert "$name: a JWT-SVID for a new audience" [ -n "$ok" ]
	failed_after=$(tail -n +"$((lines + 1))" "$D/agent.err" | grep -c 'unavailable (.*); retrying in')
	assert "$name: at most one re-init failed after the token was back ($failed_after)" \
		[ "$failed_after" -le 1 ]
	check "$name: status after" 0 "$cubeid" status --socket "$S" -o json
	assert "$name: the token is healthy again" [ "$(json "$D/out" "d['token']['healthy']")" = True ]
	assert "$name: and ready" [ "$(json "$D/out" "d['health']['ready']")" = True ]
	issued1=$(json "$D/out" "d['metrics']['issued']['jwt']")
	assert "$name: the JWT-SVID was minted, not cached ($issued0 -> $issued1)" \
		[ "$issued1" -gt "$issued0" ]
	assert "$name: a recovery is counted" [ "$(json "$D/out" "d['token']['recoveries']")" -ge 1 ]
	rm -rf "$D/svid-$name"
	check "$name: svid fetch" 0 "$cubeid" svid fetch --socket "$S" --out "$D/svid-$name"
	check "$name: openssl verifies the X.509-SVID" 0 \
		openssl verify -CAfile "$D/svid-$name/svid_bundle.pem" "$D/svid-$name/svid.pem"
}

# SoftHSM2's token directory (tokendir, all its tokens) moved away.  (Moving
# only the one token's subdirectory went unnoticed for 30 s and more here:
# SoftHSM2 kept serving the objects it had read.)
tokens=$state/softhsm/tokens
round moved "mv '$tokens' '$tokens.away'" "mv '$tokens.away' '$tokens'"
assert "the log names each recovery step" bash -c "grep -q 're-initialising module' '$D/agent.err' &&
	grep -q 'C_Finalize: CKR_OK' '$D/agent.err' && grep -q 'C_Initialize: CKR_OK' '$D/agent.err' &&
	grep -q 'logged in again' '$D/agent.err' && grep -q 'recovered (module re-initialised' '$D/agent.err'"
if [ ${#run[@]} -gt 0 ] || [ "$(id -u)" -ne 0 ]; then
	round chmod "chmod 000 '$tokdir'" "chmod 700 '$tokdir'"
fi
pin=$(cat "$state/softhsm/pin" 2>/dev/null || true)
if [ -n "$pin" ]; then
	assert "no PIN in the log" bash -c "! grep -qF -- '$pin' '$D/agent.err'"
fi

kill -TERM "$pid"
wait "$pid"
rc=$?
pid=
assert "SIGTERM: exit status 0" [ "$rc" -eq 0 ]

echo "1..$n"
if [ "$fails" -ne 0 ]; then
	echo "agent log:"
	sed 's/^/    | /' "$D/agent.err" | tail -60
	exit 1
fi
exit 0
