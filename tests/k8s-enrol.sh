#!/bin/bash
# The DaemonSet's node enrolment, for real: the enrol.sh of
# deploy/kubernetes/base/enrol-configmap.yaml runs here with its paths moved
# into a temp dir, against real SoftHSM2 tokens and the real CLI.
#   - intermediate mode: it makes the node key and a CSR, prints the CSR and
#     waits; the root holder (its own token) signs it; the answer is copied
#     in as `kubectl cp` would; the script installs it and exits 0; the
#     node's CA is then an intermediate;
#   - run again, it passes at once ("has its CA");
#   - the real agent on the enrolled node issues an X.509-SVID that openssl
#     verifies against the root holder's bundle;
#   - dev mode (the softhsm-dev overlay's environment): it makes the token
#     with `cubeid token dev-init` and a root CA of its own.
set -u
srcdir=${CUBEID_SRCDIR:-.}
builddir=${CUBEID_BUILDDIR:-.}
cubeid=$(cd "$builddir/cli" && pwd)/cubeid
agent=$(cd "$builddir/agent" && pwd)/cubeid-agent
cm=$srcdir/deploy/kubernetes/base/enrol-configmap.yaml

PY=
for p in python3 /usr/bin/python3; do
	if command -v "$p" >/dev/null 2>&1 && "$p" -c 'import yaml' 2>/dev/null; then
		PY=$p
		break
	fi
done
for tool in openssl; do
	command -v "$tool" >/dev/null 2>&1 || {
		echo "SKIP: $tool not found"
		exit 77
	}
done
[ -n "$PY" ] || {
	echo "SKIP: no python3 with yaml (Debian: python3-yaml)"
	exit 77
}
[ -n "${CUBEID_SOFTHSM_MODULE:-}" ] && export CUBEID_PKCS11_MODULE=$CUBEID_SOFTHSM_MODULE
unset CUBEID_TOKEN CUBEID_PIN CUBEID_PIN_FILE CUBEID_STATE_DIR SPIFFE_ENDPOINT_SOCKET SOFTHSM2_CONF
D=$(mktemp -d /tmp/cubeid-k8s-enrol.XXXXXX) || exit 1
pids=()
cleanup() {
	local p
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null && wait "$p" 2>/dev/null; done
	rm -rf "$D"
}
trap cleanup EXIT
fails=0
n=0
ok() { n=$((n + 1)); echo "ok $n - $1"; }
notok() {
	n=$((n + 1))
	fails=$((fails + 1))
	echo "not ok $n - $1"
	for f in "$D/err" "$D/enrol.log"; do [ -s "$f" ] && sed 's/^/    | /' "$f"; done
}
assert() { if "${@:2}"; then ok "$1"; else notok "$1"; fi; }

# the script and the config, out of the ConfigMaps
"$PY" - "$cm" "$srcdir/deploy/kubernetes/base/configmap.yaml" "$D" <<'EOF'
import sys, yaml
d = yaml.safe_load(open(sys.argv[1]))
open(sys.argv[3] + "/enrol.sh", "w").write(d["data"]["enrol.sh"])
c = yaml.safe_load(open(sys.argv[2]))
open(sys.argv[3] + "/config.yaml", "w").write(c["data"]["config.yaml"])
EOF
mkdir -p "$D/bin"
ln -s "$cubeid" "$D/bin/cubeid"
export PATH=$D/bin:$PATH

# the root holder: its own token and root CA
(
	eval "$("$cubeid" token dev-init --dir "$D/root/softhsm" --label root)"
	export CUBEID_STATE_DIR=$D/root/state
	"$cubeid" ca init --trust-domain cluster.local >"$D/out" 2>"$D/err"
) && ok "the root holder has a root CA" || notok "the root holder has a root CA"

# the node: a token, then enrol.sh in intermediate mode
node_env() {
	SOFTHSM2_CONF=$D/node/softhsm/softhsm2.conf CUBEID_TOKEN=pkcs11:token=cubeid \
		CUBEID_PIN_FILE=$D/node/softhsm/user.pin CUBEID_STATE_DIR=$D/node/state \
		CUBEID_CONFIG=$D/config.yaml CUBEID_ENROL_DIR=$D/node/enrol NODE_NAME=node-1 "$@"
}
"$cubeid" token dev-init --dir "$D/node/softhsm" --label cubeid >/dev/null 2>"$D/err" ||
	notok "the node's token"
node_env sh "$D/enrol.sh" >"$D/enrol.log" 2>&1 &
epid=$!
pids+=("$epid")
for _ in $(seq 1 600); do
	grep -q 'END CERTIFICATE REQUEST' "$D/enrol.log" 2>/dev/null && break
	sleep 0.1
done
assert "enrol prints the node's CSR and waits" grep -q 'BEGIN CERTIFICATE REQUEST' "$D/enrol.log"
assert "enrol is still waiting" kill -0 "$epid"
# the operator: the CSR from the log, signed at the root holder, copied in
sed -n '/BEGIN CERTIFICATE REQUEST/,/END CERTIFICATE REQUEST/p' "$D/enrol.log" >"$D/node.csr"
if (
	eval "$("$cubeid" token dev-init --dir "$D/root/softhsm" --label root)"
	CUBEID_STATE_DIR=$D/root/state "$cubeid" ca sign --csr "$D/node.csr" --out "$D/node.pem"
) >"$D/out" 2>"$D/err"; then
	ok "the root holder signs the CSR from the log"
else
	notok "the root holder signs the CSR from the log"
fi
cp "$D/node.pem" "$D/node/enrol/node.pem.tmp" && mv "$D/node/enrol/node.pem.tmp" "$D/node/enrol/node.pem"
rc=1
for _ in $(seq 1 600); do
	if ! kill -0 "$epid" 2>/dev/null; then
		wait "$epid"
		rc=$?
		break
	fi
	sleep 0.1
done
assert "enrol installs the certificate and exits 0 (exit $rc)" [ "$rc" = 0 ]
node_env "$cubeid" ca show >"$D/show" 2>"$D/err"
assert "the node's CA is an intermediate" grep -qi 'intermediate' "$D/show"
node_env sh "$D/enrol.sh" >"$D/enrol.log" 2>&1
rc=$?
assert "run again, enrol passes at once (exit $rc)" eval '[ "$rc" = 0 ] && grep -q "has its CA" "$D/enrol.log"'

# the enrolled node serves SVIDs that chain to the root holder's bundle
uid=$(id -u)
cat >"$D/entries.yaml" <<EOF
entries:
  - name: me
    spiffe_id: spiffe://{td}/unix/uid/{unix:uid}
    selectors: [unix:uid:$uid]
EOF
SOFTHSM2_CONF=$D/node/softhsm/softhsm2.conf "$agent" --state-dir "$D/node/state" \
	--token pkcs11:token=cubeid --pin-file "$D/node/softhsm/user.pin" \
	--entries "$D/entries.yaml" --socket "$D/agent.sock" >"$D/agent.out" 2>"$D/agent.err" &
pids+=($!)
for _ in $(seq 1 300); do [ -S "$D/agent.sock" ] && break; sleep 0.1; done
if "$cubeid" svid fetch --socket "$D/agent.sock" --out "$D/svid" >"$D/out" 2>"$D/err"; then
	ok "the enrolled node's agent issues an SVID"
else
	notok "the enrolled node's agent issues an SVID"
fi
# the leaf, then the node intermediate from the chain, against the root alone
awk '/BEGIN CERT/{n++} n==1' "$D/svid/svid.pem" >"$D/leaf.pem"
awk '/BEGIN CERT/{n++} n>=2' "$D/svid/svid.pem" >"$D/chain.pem"
if openssl verify -CAfile "$D/root/state/bundle.pem" -untrusted "$D/chain.pem" "$D/leaf.pem" \
	>"$D/out" 2>"$D/err"; then
	ok "openssl verifies the SVID against the root holder's bundle"
else
	cat "$D/out" >>"$D/err"
	notok "openssl verifies the SVID against the root holder's bundle"
fi

# dev mode: the softhsm-dev overlay's environment
SOFTHSM2_CONF=$D/dev/softhsm/softhsm2.conf CUBEID_TOKEN=pkcs11:token=cubeid \
	CUBEID_PIN_FILE=$D/dev/softhsm/user.pin CUBEID_STATE_DIR=$D/dev/state \
	CUBEID_CONFIG=$D/config.yaml CUBEID_ENROL_DIR=$D/dev/enrol NODE_NAME=dev-1 \
	CUBEID_ENROL_MODE=root \
	CUBEID_INIT_TOKEN="cubeid token dev-init --dir $D/dev/softhsm --label cubeid >/dev/null" \
	sh "$D/enrol.sh" >"$D/enrol.log" 2>&1
rc=$?
assert "dev mode: a token and a root CA of its own (exit $rc)" \
	eval '[ "$rc" = 0 ] && [ -f "$D/dev/state/ca.pem" ] && [ -f "$D/dev/softhsm/user.pin" ]'
assert "dev mode: the PIN file is 0600" [ "$(stat -c %a "$D/dev/softhsm/user.pin")" = 600 ]

echo "1..$n"
[ "$fails" -eq 0 ]
