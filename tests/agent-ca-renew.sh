#!/bin/bash
# CA renewal by SIGHUP (issue 16, defect 3), as docs/operations.md says:
# `cubeid ca csr`, `ca sign`, `ca install`, then a reload.  On a throwaway
# SoftHSM2 token (tests/mktoken), with a root and a node intermediate made
# by the CLI and the real agent serving the node:
#   - after the renewal and SIGHUP, an open FetchX509SVID stream (cubeid svid
#     watch) gets a new SVID at once, and SVIDs chain to the new
#     intermediate, which chains to the same root;
#   - each intermediate key has its own label, so the node's token does not
#     fill up with keys under one label;
#   - a bad new CA is refused and the running one kept, with the reason
#     logged: an intermediate under another root (slipped in with its
#     bundle.pem), a certificate that is not for the key in ca.conf, and a
#     certificate that is not a CA at all.
set -u
builddir=${CUBEID_BUILDDIR:-.}
cubeid=$builddir/cli/cubeid
agent=$builddir/agent/cubeid-agent
mktoken=$builddir/tests/mktoken

for tool in openssl grep awk; do
	if ! command -v "$tool" >/dev/null 2>&1; then
		echo "SKIP: $tool not found"
		exit 77
	fi
done
exports=$("$mktoken")
rc=$?
[ $rc -eq 77 ] && exit 77
[ $rc -eq 0 ] || { echo "FAIL: tests/mktoken failed ($rc)" >&2; exit 1; }
eval "$exports"
unset CUBEID_TOKEN CUBEID_PIN CUBEID_PIN_FILE CUBEID_PKCS11_MODULE CUBEID_STATE_DIR SPIFFE_ENDPOINT_SOCKET
D=$CUBEID_T_DIR
pid=
wpid=
cleanup() {
	[ -n "$wpid" ] && kill "$wpid" 2>/dev/null && wait "$wpid" 2>/dev/null
	[ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
	rm -rf "$D"
}
trap cleanup EXIT
T=(--token "$CUBEID_T_URI" --module "$CUBEID_T_MODULE" --pin-file "$CUBEID_T_PIN_FILE")
root=$D/root
node=$D/node
S=$D/run/agent.sock
uid=$(id -u)
chmod 0600 "$CUBEID_T_PIN_FILE"
. "$(dirname "$0")/lib/tap.sh"

# fingerprint FILE [N]: the SHA-256 fingerprint of the Nth (default 1st)
# certificate in FILE
fingerprint() {
	awk -v n="${2:-1}" '/BEGIN CERT/{i++} i==n{print} i==n&&/END CERT/{exit}' "$1" |
		openssl x509 -noout -fingerprint -sha256 2>/dev/null
}
# enrol NAME ROOTDIR: a new intermediate key on the node, signed by ROOTDIR,
# installed into the node's state (the operations.md steps)
enrol() {
	"$cubeid" ca csr -d cluster.local "${T[@]}" --state-dir "$node" --out "$D/$1.csr" \
		>/dev/null 2>"$D/enrol.err" &&
		"$cubeid" ca sign --csr "$D/$1.csr" --ttl 7d "${T[@]}" --state-dir "$2" \
			--out "$D/$1.pem" >/dev/null 2>>"$D/enrol.err" &&
		"$cubeid" ca install --cert "$D/$1.pem" --bundle "$2/bundle.pem" "${T[@]}" \
			--state-dir "$node" >/dev/null 2>>"$D/enrol.err"
}
# wait_log N TEXT: until the agent's log has at least N lines with TEXT
wait_log() {
	for _ in $(seq 1 600); do
		[ "$(grep -cF -- "$2" "$D/agent.err")" -ge "$1" ] && return 0
		kill -0 "$pid" 2>/dev/null || return 1
		sleep 0.1
	done
	return 1
}
# fetch NAME: the agent's SVID for this process into D/NAME
fetch() { "$cubeid" svid fetch --socket "$S" --out "$D/$1" >/dev/null 2>&1; }

check "ca init (the root)" 0 "$cubeid" ca init -d cluster.local "${T[@]}" --state-dir "$root"
assert "enrol the node (csr, sign, install)" enrol n1 "$root"
cat >"$D/agent.yaml" <<EOF
trust_domain: cluster.local
state_dir: $node
token: "$CUBEID_T_URI"
module: $CUBEID_T_MODULE
pin_file: $CUBEID_T_PIN_FILE
socket_path: $S
entries: $D/entries.yaml
EOF
printf 'entries:\n  - name: me\n    spiffe_id: spiffe://{td}/me\n    selectors: [unix:uid:%s]\n' \
	"$uid" >"$D/entries.yaml"
"$agent" --config "$D/agent.yaml" >"$D/agent.out" 2>"$D/agent.err" &
pid=$!
for _ in $(seq 1 300); do
	kill -0 "$pid" 2>/dev/null || break
	"$cubeid" status --socket "$S" >/dev/null 2>&1 && break
	sleep 0.1
done
check "the agent serves the node" 0 "$cubeid" status --socket "$S"
assert "svid fetch" fetch svid1
assert "the SVID is under the first intermediate" \
	[ "$(fingerprint "$D/svid1/svid.pem" 2)" = "$(fingerprint "$D/n1.pem")" ]
"$cubeid" svid watch --socket "$S" >"$D/watch.out" 2>"$D/watch.err" &
wpid=$!
for _ in $(seq 1 300); do grep -q "^1 " "$D/watch.out" && break; sleep 0.1; done
assert "the watcher has its first SVID" grep -q "^1 spiffe://cluster.local/me serial=" "$D/watch.out"

# the renewal: a new key and certificate, then SIGHUP
assert "renew: a new intermediate under the same root" enrol n2 "$root"
l1=$(openssl x509 -in "$D/n1.pem" -noout -ext subjectKeyIdentifier | tail -1)
l2=$(openssl x509 -in "$D/n2.pem" -noout -ext subjectKeyIdentifier | tail -1)
assert "  (another key: another SKID)" [ "$l1" != "$l2" ]
check "token keys list" 0 "$cubeid" token keys list "${T[@]}"
cp "$D/out" "$D/keys"
awk '$1 ~ /^cubeid-intermediate-/ {print $1}' "$D/keys" >"$D/labels"
assert "each intermediate key has a label of its own" [ -z "$(sort "$D/labels" | uniq -d)" ]
assert "  (and there are two)" [ "$(wc -l <"$D/labels")" -eq 2 ]
kill -HUP "$pid"
assert "SIGHUP: the agent issues from the new CA" wait_log 1 "now issues from the new CA"
serial1=$(sed -n 's/^1 .*serial=//p' "$D/watch.out")
got=no
for _ in $(seq 1 300); do
	grep "^[0-9]* spiffe://cluster.local/me serial=" "$D/watch.out" | grep -vq "serial=$serial1\$" &&
		{ got=yes; break; }
	sleep 0.1
done
assert "the open stream gets an SVID with a new serial" [ "$got" = yes ]
assert "svid fetch after the renewal" fetch svid2
assert "the SVID is under the new intermediate" \
	[ "$(fingerprint "$D/svid2/svid.pem" 2)" = "$(fingerprint "$D/n2.pem")" ]
openssl x509 -in "$D/svid2/svid.pem" -out "$D/leaf2.pem"
awk 'n>=1{print} /END CERT/{n++}' "$D/svid2/svid.pem" >"$D/int2.pem"
assert "it is the SVID the stream got" [ "$(openssl x509 -in "$D/leaf2.pem" -noout -serial | cut -d= -f2)" = \
	"$(tail -1 "$D/watch.out" | sed 's/.*serial=//')" ]
check "openssl: it chains to the same root" 0 openssl verify -CAfile "$root/bundle.pem" \
	-untrusted "$D/int2.pem" "$D/leaf2.pem"
assert "the bundle is the same root" cmp -s "$D/svid1/svid_bundle.pem" "$D/svid2/svid_bundle.pem"
check "ca show on the node: the new intermediate" 0 "$cubeid" ca show "${T[@]}" --state-dir "$node"
# the superseded key, pruned by its own label (operations.md)
old=$(grep -v -F "$(sed -n 's/^key_uri=.*object=\([^;]*\).*/\1/p' "$node/ca.conf")" "$D/labels")
assert "one superseded intermediate key" [ "$(printf '%s\n' "$old" | grep -c .)" -eq 1 ]
check "token keys delete --label: the superseded key" 0 "$cubeid" token keys delete --label "$old" \
	--yes "${T[@]}"
kill -HUP "$pid"
assert "a reload after the prune" wait_log 2 "reloaded:"
assert "svid fetch after the prune" fetch svid3

# a bad new CA is refused, and the running one kept
cp -a "$node" "$D/node.good"
bad_ca() { # bad_ca NAME TEXT: SIGHUP refuses the CA now in the state, saying TEXT
	local k
	k=$(grep -c "keeping the running CA" "$D/agent.err")
	kill -HUP "$pid"
	assert "$1: refused" wait_log $((k + 1)) "keeping the running CA"
	assert "  saying: $2" grep -qF -- "$2" "$D/agent.err"
	assert "  svid fetch still works" fetch "svid-$1"
	assert "  from the running intermediate" \
		[ "$(fingerprint "$D/svid-$1/svid.pem" 2)" = "$(fingerprint "$D/n2.pem")" ]
	rm -rf "$node"
	cp -a "$D/node.good" "$node"
}
# an intermediate under another root, with that root in bundle.pem
check "ca init (another root)" 0 "$cubeid" ca init -d cluster.local "${T[@]}" --state-dir "$D/root2"
cp "$D/root2/bundle.pem" "$node/bundle.pem"
assert "enrol under the other root" enrol other "$D/root2"
bad_ca "another root" "the new CA does not chain to the roots the agent runs with"
# the certificate of the first intermediate, for the key of the second
cp "$D/n1.pem" "$node/ca.pem"
bad_ca "the certificate of another key" "reload: cannot load the new CA"
# not a CA certificate: the leaf SVID
cp "$D/svid2/svid.pem" "$node/ca.pem"
bad_ca "a leaf" "reload: cannot load the new CA"

kill -TERM "$pid"
wait "$pid"
rc=$?
pid=
assert "SIGTERM: exit status 0" [ "$rc" -eq 0 ]

echo "1..$n"
if [ "$fails" -ne 0 ]; then
	echo "agent log:"
	sed 's/^/    | /' "$D/agent.err" | tail -40
	sed 's/^/    enrol| /' "$D/enrol.err" 2>/dev/null
	sed 's/^/    watch| /' "$D/watch.out" 2>/dev/null
	sed 's/^/    keys| /' "$D/keys" 2>/dev/null
	exit 1
fi
exit 0
