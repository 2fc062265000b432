#!/bin/bash
# cubeid-agent recovers from a TPM outage by itself (docs/pkcs11.md, "Token
# outages"): the real daemon on tpm2-pkcs11 + tpm2-abrmd + swtpm, run by the
# TPM lane (tests/tpm/lane.sh, `make check-tpm`), which sources the lane's
# environment and CUBEID_TEST_OUTAGE_CMD (tests/tpm/tpm-env.sh outage DIR).
#
# The agent mints a JWT-SVID, then swtpm and tpm2-abrmd are killed (as a
# crash: SIGKILL); `cubeid status` must turn unhealthy and a mint must fail.
# swtpm is started again on the same state and port, and tpm2-abrmd on the
# same bus (what a node's systemd does), and the agent must serve a fresh
# JWT-SVID (an audience it never saw: the issued counter proves a mint, not
# the cache) and an X.509-SVID that openssl verifies: its workload key is
# in the throwaway SoftHSM2 token the agent makes under $RUNTIME_DIRECTORY
# (docs/tpm.md), its CA key in the TPM.
#
# The 10 s of the hardening issue is a contract on the design, not a
# wall-clock assertion on a loaded machine: after the TPM is back, the
# agent's 1 s probe tries a re-init once the backoff allows (at most
# P11_RECOVER_MAX_MS, 4 s), and that re-init must succeed.  So this test
# asserts that recovery happens, that the backoff it reported while down
# never exceeded 4 s, and that at most one re-init failed after the TPM was
# back (one may have been under way when it came); it prints the time from
# the TPM's return to a fresh SVID.  Two rounds: the second starts from the
# backoff the first left behind.
set -u
builddir=${CUBEID_BUILDDIR:-.}
cubeid=$builddir/cli/cubeid
agent=$builddir/agent/cubeid-agent

if [ -z "${CUBEID_TEST_OUTAGE_CMD:-}" ] || [ "${CUBEID_TEST_TOKEN_KIND:-}" != tpm ]; then
	echo "SKIP: not in the TPM lane (make check-tpm runs this test on swtpm)"
	exit 77
fi
for tool in openssl python3; do
	if ! command -v "$tool" >/dev/null 2>&1; then
		echo "SKIP: $tool not found"
		exit 77
	fi
done
unset CUBEID_TOKEN CUBEID_PIN CUBEID_PIN_FILE CUBEID_STATE_DIR SPIFFE_ENDPOINT_SOCKET
D=$(mktemp -d "${TMPDIR:-/tmp}/cubeid-tpm-outage.XXXXXX") || exit 1
pid=
down=
cleanup() {
	# never leave the lane's TPM down for the programs after this one
	[ -n "$down" ] && $CUBEID_TEST_OUTAGE_CMD up >/dev/null 2>&1
	[ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
	rm -rf "$D"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
S=$D/run/agent.sock
. "$(dirname "$0")/lib/tap.sh"
json() { python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print($2)" "$1"; }
now() { date +%s.%N; }

printf 'entries: []\n' >"$D/entries.yaml"
{
	echo "trust_domain: cluster.local"
	echo "entries: $D/entries.yaml"
	echo "log_level: info"
	echo "token: \"$CUBEID_TEST_TOKEN_URI\""
	echo "pin_file: $CUBEID_TEST_PIN_FILE"
	echo "module: $CUBEID_TEST_MODULE"
} >"$D/agent.yaml"
# --dev with a token: the root CA is made in the TPM on first start, and the
# invoking user is registered (spiffe://cluster.local/unix/uid/U).
# RuntimeDirectory= as systemd would give it: the workload token's place
mkdir -m 0700 "$D/rt"
RUNTIME_DIRECTORY=$D/rt "$agent" --dev --config "$D/agent.yaml" --socket "$S" \
	--state-dir "$D/state" >"$D/agent.out" 2>"$D/agent.err" &
pid=$!
for _ in $(seq 1 600); do
	[ -S "$S" ] && "$cubeid" status --socket "$S" >/dev/null 2>&1 && break
	kill -0 "$pid" 2>/dev/null || break
	sleep 0.1
done
check "the agent is up on the TPM token" 0 "$cubeid" status --socket "$S" -o json
assert "the token is healthy" [ "$(json "$D/out" "d['token']['healthy']")" = True ]
if [ "$fails" -ne 0 ]; then
	sed 's/^/    | /' "$D/agent.err" | tail -40
	echo "1..$n"
	exit 1
fi

round() {
	local name=$1 healthy=True t0 t1 issued0 issued1 ok= lines retry worst=0 failed_after
	check "$name: jwt fetch before" 0 "$cubeid" jwt fetch --aud "before-$name" --socket "$S"
	down=1
	check "$name: swtpm and tpm2-abrmd killed" 0 $CUBEID_TEST_OUTAGE_CMD down
	# a mint tells the agent at once; the status follows the probe
	assert "$name: a mint fails while the TPM is down" \
		bash -c "! '$cubeid' jwt fetch --aud 'down-$name' --socket '$S' >/dev/null 2>&1"
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
		# exit 8: the agent answers, not ready
		{ "$cubeid" status --socket "$S" -o json >"$D/st" 2>/dev/null || [ $? -eq 8 ]; } || break
		retry=$(json "$D/st" "d['token'].get('retry_in', 0)")
		worst=$(python3 -c "print(max($worst, $retry))")
		sleep 0.5
	done
	check "$name: cubeid status while down (8: not ready)" 8 "$cubeid" status --socket "$S"
	assert "$name: it says the token is unavailable and when it retries" \
		grep -Eq "UNHEALTHY: token unavailable .*retrying in [0-9]+s" "$D/out"
	assert "$name: the retry delay it reports never passed 4 s (the backoff cap) ($worst s)" \
		python3 -c "import sys; sys.exit(0 if $worst <= 4.0 else 1)"
	issued0=$(json "$D/st" "d['metrics']['issued']['jwt']")
	check "$name: swtpm and tpm2-abrmd back on the same state" 0 $CUBEID_TEST_OUTAGE_CMD up
	down=
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
	echo "# $name: a fresh JWT-SVID ${secs}s after the TPM came back"
	assert "$name: the agent mints again" [ -n "$ok" ]
	failed_after=$(tail -n +"$((lines + 1))" "$D/agent.err" | grep -c 'unavailable (.*); retrying in')
	assert "$name: at most one re-init failed after the TPM was back ($failed_after)" \
		[ "$failed_after" -le 1 ]
	check "$name: status after" 0 "$cubeid" status --socket "$S" -o json
	assert "$name: the token is healthy again" [ "$(json "$D/out" "d['token']['healthy']")" = True ]
	assert "$name: and ready" [ "$(json "$D/out" "d['health']['ready']")" = True ]
	issued1=$(json "$D/out" "d['metrics']['issued']['jwt']")
	assert "$name: the JWT-SVID was minted, not cached ($issued0 -> $issued1)" \
		[ "$issued1" -gt "$issued0" ]
	assert "$name: a recovery is counted" [ "$(json "$D/out" "d['token']['recoveries']")" -ge 1 ]
	[ -n "$x509" ] || return 0
	rm -rf "$D/svid-$name"
	check "$name: svid fetch" 0 "$cubeid" svid fetch --socket "$S" --out "$D/svid-$name"
	check "$name: openssl verifies the X.509-SVID" 0 \
		openssl verify -CAfile "$D/svid-$name/svid_bundle.pem" "$D/svid-$name/svid.pem"
}

# X.509-SVIDs hand the workload its private key, which tpm2-pkcs11 cannot
# make exportable: the agent generates it in its throwaway workload token.
check "an X.509-SVID before the outage" 0 "$cubeid" svid fetch --socket "$S" --out "$D/svid-start"
assert "its workload key is in the throwaway SoftHSM2 token" \
	grep -q "workload keys: in a throwaway SoftHSM2 token in $D/rt/workload-token" "$D/agent.err"
x509=1

round first
round second
assert "the log names each recovery step" bash -c "grep -q 're-initialising module' '$D/agent.err' &&
	grep -q 'C_Finalize: CKR_OK' '$D/agent.err' && grep -q 'C_Initialize: CKR_OK' '$D/agent.err' &&
	grep -q 'logged in again' '$D/agent.err' && grep -q 'recovered (module re-initialised' '$D/agent.err'"
pin=$(cat "$CUBEID_TEST_PIN_FILE" 2>/dev/null || true)
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
