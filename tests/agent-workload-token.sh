#!/bin/bash
# The two-token configuration (docs/tpm.md, "Workload keys") on SoftHSM2
# alone, for the normal suite: the CA and JWT keys in one token, the
# exportable workload keys of X.509-SVIDs in workload_token.  (On a real
# TPM: tests/agent-tpm-workload.sh in the TPM lane.)
#   - --check refuses what is not a PKCS#11 URI, opens the workload token
#     and refuses one it cannot log in to;
#   - the agent serves X.509-SVIDs that openssl verifies, and reports the
#     workload token in `cubeid status`;
#   - after an outage of their module both tokens are found again and the
#     workload token makes keys again;
#   - a workload token it cannot log in to stops the start;
#   - without workload_token, a token that can make exportable session keys
#     holds the workload keys itself, and status names no second token.
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
unset CUBEID_TOKEN CUBEID_PIN CUBEID_PIN_FILE CUBEID_STATE_DIR SPIFFE_ENDPOINT_SOCKET \
	RUNTIME_DIRECTORY SOFTHSM2_CONF
D=$(mktemp -d "${TMPDIR:-/tmp}/cubeid-workload-token.XXXXXX") || exit 1
pid=
cleanup() {
	[ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
	rm -rf "$D"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
S=$D/run/agent.sock
. "$(dirname "$0")/lib/tap.sh"
json() { python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print($2)" "$1"; }

# Two tokens in one SoftHSM2 token directory (SoftHSM2 reads one config per
# process): each made by `cubeid token dev-init` (PINs through the module,
# never on argv), the second one's directory moved beside the first.
if ! "$cubeid" token dev-init --dir "$D/main" --label main >"$D/init.out" 2>&1 ||
	! "$cubeid" token dev-init --dir "$D/wl" --label workload >>"$D/init.out" 2>&1; then
	if grep -q "SoftHSM2 module not found" "$D/init.out"; then
		echo "SKIP: no SoftHSM2"
		exit 77
	fi
	sed 's/^/    | /' "$D/init.out"
	bad "two SoftHSM2 tokens"
	echo "1..$n"
	exit 1
fi
mv "$D"/wl/tokens/* "$D/main/tokens/"
export SOFTHSM2_CONF=$D/main/softhsm2.conf
ok "two SoftHSM2 tokens in one token directory"

printf 'entries: []\n' >"$D/entries.yaml"
base() {
	echo "trust_domain: cluster.local"
	echo "entries: $D/entries.yaml"
	echo "log_level: info"
	echo "token: \"pkcs11:token=main\""
	echo "pin_file: $D/main/user.pin"
}
start() {
	local name=$1
	"$agent" --dev --config "$D/$name.yaml" --socket "$S" --state-dir "$D/state" \
		>"$D/$name.out" 2>"$D/$name.err" &
	pid=$!
	for _ in $(seq 1 300); do
		[ -S "$S" ] && "$cubeid" status --socket "$S" >/dev/null 2>&1 && return 0
		kill -0 "$pid" 2>/dev/null || return 1
		sleep 0.1
	done
	return 1
}
stop() {
	local rc
	kill -TERM "$pid"
	wait "$pid"
	rc=$?
	pid=
	rm -f "$S"
	return $rc
}
svid() {
	local out=$D/svid-$1
	check "$1: svid fetch" 0 "$cubeid" svid fetch --socket "$S" --out "$out"
	check "$1: openssl verifies the X.509-SVID" 0 \
		openssl verify -CAfile "$out/svid_bundle.pem" "$out/svid.pem"
	assert "$1: the key is the leaf's" bash -c "[ \"\$(openssl x509 -in '$out/svid.pem' \
		-pubkey -noout)\" = \"\$(openssl pkey -in '$out/svid_key.pem' -pubout)\" ]"
}

# An outage of the module both tokens are on (SoftHSM2's token directory
# moved away, then back): the module's re-init must find both tokens again,
# and the workload token must make keys again: the probe (which makes an
# exportable key there) says healthy, and a new entry's X.509-SVID is minted.
outage() {
	local healthy=True issued0 issued1 ok=
	mv "$D/main/tokens" "$D/tokens-away"
	# status exits non-zero while unhealthy: read its JSON all the same
	for _ in $(seq 1 120); do
		"$cubeid" status --socket "$S" -o json >"$D/st" 2>"$D/st.err"
		healthy=$(json "$D/st" "d['token']['healthy']" 2>/dev/null || echo "$healthy")
		[ "$healthy" = False ] && break
		sleep 0.25
	done
	assert "outage: status turns unhealthy" [ "$healthy" = False ]
	issued0=$(json "$D/st" "d['metrics']['issued']['x509']")
	mv "$D/tokens-away" "$D/main/tokens"
	for _ in $(seq 1 300); do
		"$cubeid" status --socket "$S" -o json >"$D/st" 2>"$D/st.err"
		healthy=$(json "$D/st" "d['token']['healthy']" 2>/dev/null || echo "$healthy")
		[ "$healthy" = True ] && break
		sleep 0.1
	done
	assert "outage: healthy again, the workload token's probe included" [ "$healthy" = True ]
	assert "outage: the workload token was re-initialised with the module" \
		[ "$(json "$D/st" "d['workload_token']['recoveries']")" -ge 1 ]
	printf 'entries:\n  - name: after\n    spiffe_id: spiffe://cluster.local/after\n    selectors: [unix:uid:%s]\n' \
		"$(id -u)" >"$D/entries.yaml.tmp"
	mv "$D/entries.yaml.tmp" "$D/entries.yaml"
	for _ in $(seq 1 300); do
		if "$cubeid" svid fetch --socket "$S" --out "$D/svid-after" >/dev/null 2>&1 &&
			"$cubeid" status --socket "$S" -o json >"$D/st" 2>/dev/null &&
			[ "$(json "$D/st" "d['metrics']['issued']['x509']")" -gt "$issued0" ] &&
			grep -q "minted x509-svid spiffe_id=spiffe://cluster.local/after" "$D/two.err"; then
			ok=1
			break
		fi
		sleep 0.1
	done
	assert "outage: a new X.509-SVID is minted after it" [ -n "$ok" ]
	check "outage: openssl verifies it" 0 \
		openssl verify -CAfile "$D/svid-after/svid_bundle.pem" "$D/svid-after/svid.pem"
	printf 'entries: []\n' >"$D/entries.yaml.tmp"
	mv "$D/entries.yaml.tmp" "$D/entries.yaml"
}

# --check
{
	base
	echo "workload_token: /etc/cubeid/workload"
} >"$D/bad.yaml"
check "--check refuses a workload_token that is not a PKCS#11 URI" 1 \
	"$agent" --check --config "$D/bad.yaml"
assert "and says so" grep -q "workload_token: not a PKCS#11 URI" "$D/err"
{
	base
	echo "workload_token: \"pkcs11:token=workload?pin-source=file:$D/wl/user.pin\""
} >"$D/two.yaml"
check "--workload-token on the command line is checked too" 1 \
	"$agent" --check --config "$D/two.yaml" --workload-token workload

# two tokens
if start two; then ok "the agent starts with a workload token"; else bad "the agent starts with a workload token"; fi
if [ -n "$pid" ]; then
	check "status" 0 "$cubeid" status --socket "$S" -o json
	assert "the CA and JWT keys' token is main" [ "$(json "$D/out" "d['token']['label']")" = main ]
	assert "the workload token is reported" \
		[ "$(json "$D/out" "d['workload_token']['label']")" = workload ]
	assert "the log says where each key lives" \
		grep -q "workload keys: in the workload token workload; the CA and JWT keys in the token main" "$D/two.err"
	svid two
	check "a JWT-SVID too" 0 "$cubeid" jwt fetch --aud two --socket "$S"
	outage
	check "SIGTERM: exit status 0" 0 stop
	# --check opens the tokens and finds the CA the start made
	printf 'entries:\n  - spiffe_id: spiffe://cluster.local/x\n    selectors: [unix:uid:1]\n' \
		>"$D/check-entries.yaml"
	check "--check opens the workload token" 0 "$agent" --check --config "$D/two.yaml" \
		--state-dir "$D/state" --entries "$D/check-entries.yaml"
	assert "and says it holds the workload keys" \
		grep -q "workload keys: in the workload token workload" "$D/err"
else
	sed 's/^/    | /' "$D/two.err" | tail -30
fi

# a workload token the agent cannot log in to
printf '%s' 0000wrong >"$D/wrong.pin"
chmod 600 "$D/wrong.pin"
{
	base
	echo "workload_token: \"pkcs11:token=workload?pin-source=file:$D/wrong.pin\""
} >"$D/wrong.yaml"
if start wrong; then
	bad "a workload token with a wrong PIN stops the start"
	stop
else
	wait "$pid" 2>/dev/null
	pid=
	ok "a workload token with a wrong PIN stops the start"
fi
assert "it names the workload token" grep -q "cannot open the workload token" "$D/wrong.err"
if [ -f "$D/check-entries.yaml" ]; then
	check "--check refuses it too" 1 "$agent" --check --config "$D/wrong.yaml" \
		--state-dir "$D/state" --entries "$D/check-entries.yaml"
	assert "naming the workload token" grep -q "cannot open the workload token" "$D/err"
fi

# one token that can make exportable session keys
base >"$D/one.yaml"
if start one; then ok "the agent starts with one token"; else bad "the agent starts with one token"; fi
if [ -n "$pid" ]; then
	assert "the probe found the token can hold workload keys" \
		grep -q "workload keys: in the token main (it makes exportable session keys)" "$D/one.err"
	check "status" 0 "$cubeid" status --socket "$S" -o json
	assert "no second token is reported" [ "$(json "$D/out" "'workload_token' in d")" = False ]
	svid one
	check "SIGTERM: exit status 0" 0 stop
fi
for p in "$D/main/user.pin" "$D/wl/user.pin"; do
	pin=$(cat "$p")
	assert "no PIN of ${p#"$D"/} in the logs" bash -c "! grep -qF -- '$pin' '$D'/*.err"
done

echo "1..$n"
if [ "$fails" -ne 0 ]; then
	for f in "$D"/*.err; do
		echo "${f##*/}:"
		sed 's/^/    | /' "$f" | tail -20
	done
	exit 1
fi
exit 0
