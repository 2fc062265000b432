#!/bin/bash
# X.509-SVIDs on a TPM node (docs/tpm.md, "Workload keys"): the real daemon
# on tpm2-pkcs11 + tpm2-abrmd + swtpm, run by the TPM lane
# (tests/tpm/lane.sh, `make check-tpm`).  tpm2-pkcs11 cannot make an
# exportable session key, so the workload keys of X.509-SVIDs go to a
# SoftHSM2 token beside the TPM while the CA and JWT keys stay in the TPM:
#   1. no workload token and no $RUNTIME_DIRECTORY: the agent refuses to
#      start and says what to configure;
#   2. workload_token: a SoftHSM2 token URI: FetchX509SVID serves an SVID
#      that chains to the TPM-held CA, read and verified by go-spiffe (the
#      suite's tests/interop checker) and by openssl;
#   3. no workload token, $RUNTIME_DIRECTORY set (systemd's
#      RuntimeDirectory=): the agent makes a throwaway SoftHSM2 token there
#      and serves X.509-SVIDs from the same TPM CA.
set -u
builddir=${CUBEID_BUILDDIR:-.}
srcdir=${CUBEID_SRCDIR:-$(cd "$(dirname "$0")/.." && pwd)}
cubeid=$builddir/cli/cubeid
agent=$builddir/agent/cubeid-agent

if [ -z "${CUBEID_TEST_TOKEN_URI:-}" ] || [ "${CUBEID_TEST_TOKEN_KIND:-}" != tpm ]; then
	echo "SKIP: not in the TPM lane (make check-tpm runs this test on swtpm)"
	exit 77
fi
for tool in openssl python3; do
	if ! command -v "$tool" >/dev/null 2>&1; then
		echo "SKIP: $tool not found"
		exit 77
	fi
done
softhsm=${CUBEID_SOFTHSM_MODULE:-}
if [ -z "$softhsm" ]; then
	for m in /usr/lib/softhsm/libsofthsm2.so /usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so; do
		[ -f "$m" ] && softhsm=$m && break
	done
fi
if [ -z "$softhsm" ]; then
	echo "SKIP: no SoftHSM2 module for the workload token"
	exit 77
fi
unset CUBEID_TOKEN CUBEID_PIN CUBEID_PIN_FILE CUBEID_STATE_DIR SPIFFE_ENDPOINT_SOCKET \
	RUNTIME_DIRECTORY SOFTHSM2_CONF
D=$(mktemp -d "${TMPDIR:-/tmp}/cubeid-tpm-workload.XXXXXX") || exit 1
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

# go-spiffe, if it can be had (tests/lib/go-peers.sh); openssl always
checker=$(CUBEID_SRCDIR=$srcdir bash "$srcdir/tests/lib/go-peers.sh" path cubeid-interop 2>"$D/go.err")
if [ $? -ne 0 ] || [ ! -x "$checker" ]; then
	checker=
	echo "# NOTE: go-spiffe checker unavailable ($(tail -n 1 "$D/go.err")); openssl verifies alone"
	if [ "${CI:-}" = true ]; then
		bad "go-spiffe checker builds (CI=true)"
	fi
fi

printf 'entries: []\n' >"$D/entries.yaml"
base() {
	echo "trust_domain: cluster.local"
	echo "entries: $D/entries.yaml"
	echo "log_level: info"
	echo "token: \"$CUBEID_TEST_TOKEN_URI\""
	echo "pin_file: $CUBEID_TEST_PIN_FILE"
	echo "module: $CUBEID_TEST_MODULE"
}

# start NAME ENV...: the agent (--dev: the CA in the TPM, the caller
# registered) with config $D/NAME.yaml and extra environment
start() {
	local name=$1
	shift
	env "$@" "$agent" --dev --config "$D/$name.yaml" --socket "$S" --state-dir "$D/state" \
		>"$D/$name.out" 2>"$D/$name.err" &
	pid=$!
	for _ in $(seq 1 600); do
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

# svid NAME: fetch and verify an X.509-SVID; print the leaf's issuer
svid() {
	local name=$1 out=$D/svid-$1
	check "$name: cubeid svid fetch" 0 "$cubeid" svid fetch --socket "$S" --out "$out"
	check "$name: openssl verifies the SVID against the bundle" 0 \
		openssl verify -CAfile "$out/svid_bundle.pem" "$out/svid.pem"
	assert "$name: the SVID's key is the leaf's" bash -c "[ \"\$(openssl x509 -in '$out/svid.pem' \
		-pubkey -noout)\" = \"\$(openssl pkey -in '$out/svid_key.pem' -pubout)\" ]"
	if [ -n "$checker" ]; then
		check "$name: go-spiffe fetches the X.509-SVID" 0 \
			"$checker" workload x509 --socket "unix://$S" --out "$D/go-$name"
		check "$name: go-spiffe verifies it" 0 \
			"$checker" x509-verify --svid "$D/go-$name/svid.pem" --bundle "$out/svid_bundle.pem"
		assert "$name: it is the caller's ID" \
			[ "$(cat "$D/out")" = "spiffe://cluster.local/unix/uid/$(id -u)" ]
	fi
}

# 1. a TPM token alone, nowhere to make workload keys: refused, with advice
base >"$D/none.yaml"
start none
rc=$?
if [ $rc -eq 0 ]; then
	bad "without a workload token the agent refuses to start on a TPM"
	stop
else
	wait "$pid" 2>/dev/null
	pid=
	ok "without a workload token the agent refuses to start on a TPM"
fi
assert "it logged the probe's result" grep -q "cannot make an exportable session key" "$D/none.err"
assert "it says what to configure" \
	grep -q "set workload_token: (or --workload-token).*RuntimeDirectory=" "$D/none.err"

# 2. an explicit SoftHSM2 workload token
check "a SoftHSM2 token for the workload keys" 0 env CUBEID_PKCS11_MODULE="$softhsm" \
	"$cubeid" token dev-init --dir "$D/wl" --label workload
conf=$D/wl/softhsm2.conf
{
	base
	echo "workload_token: \"pkcs11:token=workload?module-path=$softhsm&pin-source=file:$D/wl/user.pin\""
} >"$D/explicit.yaml"
if start explicit SOFTHSM2_CONF="$conf"; then
	ok "the agent starts with a TPM token and a SoftHSM2 workload token"
else
	bad "the agent starts with a TPM token and a SoftHSM2 workload token"
	sed 's/^/    | /' "$D/explicit.err" | tail -40
	echo "1..$n"
	exit 1
fi
check "status" 0 "$cubeid" status --socket "$S" -o json
assert "the CA and JWT keys are in the TPM token" \
	[ "$(json "$D/out" "d['token']['label']")" = "$CUBEID_TEST_TOKEN_LABEL" ]
assert "the workload keys are in the SoftHSM2 token" \
	[ "$(json "$D/out" "d['workload_token']['label']")" = workload ]
assert "the log says where each key lives" \
	grep -q "workload keys: in the workload token workload; the CA and JWT keys in the token $CUBEID_TEST_TOKEN_LABEL" "$D/explicit.err"
svid explicit
ca1=$(openssl x509 -in "$D/svid-explicit/svid_bundle.pem" -noout -fingerprint -sha256)
check "the JWT-SVID is still signed in the TPM" 0 "$cubeid" jwt fetch --aud tpm --socket "$S"
check "SIGTERM: exit status 0" 0 stop
printf 'entries:\n  - spiffe_id: spiffe://cluster.local/x\n    selectors: [unix:uid:1]\n' \
	>"$D/check-entries.yaml"
check "--check opens both tokens" 0 env SOFTHSM2_CONF="$conf" "$agent" --check \
	--config "$D/explicit.yaml" --state-dir "$D/state" --entries "$D/check-entries.yaml"
assert "and says where the workload keys go" grep -q "workload keys: in the workload token workload" "$D/err"
check "--check on a TPM with no workload token explains what start needs" 0 "$agent" --check \
	--config "$D/none.yaml" --state-dir "$D/state" --entries "$D/check-entries.yaml"
assert "naming RuntimeDirectory= and workload_token:" \
	grep -q "RuntimeDirectory=.*workload_token:" "$D/err"

# 3. no workload token, a RuntimeDirectory: a throwaway SoftHSM2 token there
base >"$D/auto.yaml"
mkdir -m 0700 "$D/rt"
if start auto RUNTIME_DIRECTORY="$D/rt"; then
	ok "the agent starts with a throwaway workload token in \$RUNTIME_DIRECTORY"
else
	bad "the agent starts with a throwaway workload token in \$RUNTIME_DIRECTORY"
	sed 's/^/    | /' "$D/auto.err" | tail -40
fi
if [ -n "$pid" ]; then
	assert "the log names the throwaway token" \
		grep -q "workload keys: in a throwaway SoftHSM2 token in $D/rt/workload-token" "$D/auto.err"
	check "status" 0 "$cubeid" status --socket "$S" -o json
	assert "the workload keys are in the throwaway token" \
		[ "$(json "$D/out" "d['workload_token']['label']")" = cubeid-workload ]
	svid auto
	assert "the same TPM CA issues them" [ "$(openssl x509 -in "$D/svid-auto/svid_bundle.pem" \
		-noout -fingerprint -sha256)" = "$ca1" ]
	assert "the throwaway token's PIN file is 0600" \
		[ "$(stat -c %a "$D/rt/workload-token/user.pin")" = 600 ]
	check "SIGTERM: exit status 0" 0 stop
fi
pin=$(cat "$CUBEID_TEST_PIN_FILE" 2>/dev/null || true)
wpin=$(cat "$D/wl/user.pin" 2>/dev/null || true)
for f in "$D"/*.err; do
	[ -n "$pin" ] && assert "no TPM PIN in ${f##*/}" bash -c "! grep -qF -- '$pin' '$f'"
	[ -n "$wpin" ] && assert "no workload PIN in ${f##*/}" bash -c "! grep -qF -- '$wpin' '$f'"
done

echo "1..$n"
if [ "$fails" -ne 0 ]; then
	for f in "$D"/*.err; do
		echo "${f##*/}:"
		sed 's/^/    | /' "$f" | tail -30
	done
	exit 1
fi
exit 0
