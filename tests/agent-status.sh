#!/bin/bash
# cubeid-agent's status and reload rules, with the real daemon (--dev, a
# config file) on a throwaway SoftHSM2 token:
#   - `cubeid status` reports the token's health from a real token operation
#     (a signature with the CA key) made on request when the last one is
#     older than a few seconds: with the token's files moved away under the
#     running agent, status turns to unhealthy with the error;
#   - SIGHUP with a changed trust_domain in the config is refused for that
#     key, with a log line saying a restart is needed, and the agent goes on
#     with the old one (SVIDs keep the old trust domain and CA); a
#     certificate on disk that is no CA for the CA key is refused, and the
#     running CA kept (a renewal: tests/agent-ca-renew.sh);
#   - the rest of the config still reloads (the log level here).
set -u
builddir=${CUBEID_BUILDDIR:-.}
cubeid=$builddir/cli/cubeid
agent=$builddir/agent/cubeid-agent

for tool in openssl grep python3; do
	if ! command -v "$tool" >/dev/null 2>&1; then
		echo "SKIP: $tool not found"
		exit 77
	fi
done
[ -n "${CUBEID_SOFTHSM_MODULE:-}" ] && export CUBEID_PKCS11_MODULE=$CUBEID_SOFTHSM_MODULE
unset CUBEID_TOKEN CUBEID_PIN CUBEID_PIN_FILE CUBEID_STATE_DIR SPIFFE_ENDPOINT_SOCKET
D=$(mktemp -d /tmp/cubeid-agent-status.XXXXXX) || exit 1
pid=
cleanup() {
	[ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
	rm -rf "$D"
}
trap cleanup EXIT
S=$D/run/agent.sock
state=$D/state
uid=$(id -u)
. "$(dirname "$0")/lib/tap.sh"
# json FILE EXPR: a value of a status document (a python3 expression on d)
json() { python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print($2)" "$1"; }
# wait_log TEXT: until the agent's log has TEXT
wait_log() {
	for _ in $(seq 1 300); do grep -qF "$1" "$D/agent.err" && return 0; sleep 0.1; done
	return 1
}

printf '%s\n' "trust_domain: cluster.local" "entries: $D/entries.yaml" "log_level: notice" \
	>"$D/agent.yaml"
printf 'entries: []\n' >"$D/entries.yaml"
"$agent" --dev --config "$D/agent.yaml" --socket "$S" --state-dir "$state" \
	>"$D/agent.out" 2>"$D/agent.err" &
pid=$!
for _ in $(seq 1 300); do
	[ -S "$S" ] && "$cubeid" status --socket "$S" >/dev/null 2>&1 && break
	kill -0 "$pid" 2>/dev/null || break
	sleep 0.1
done
check "the agent is up" 0 "$cubeid" status --socket "$S" -o json
cp "$D/out" "$D/status1"
assert "the token is healthy" [ "$(json "$D/status1" "d['token']['healthy']")" = True ]
assert "and was checked (a unix time)" [ "$(json "$D/status1" "d['token']['checked']")" -gt 1000000000 ]
check "svid fetch" 0 "$cubeid" svid fetch --socket "$S" --out "$D/svid1"
assert "the SVID is in cluster.local" grep -qx "spiffe://cluster.local/unix/uid/$uid" "$D/out"

# SIGHUP with a new trust domain: refused, the old one kept
sed -i -e 's/^trust_domain: .*/trust_domain: other.example/' -e 's/^log_level: .*/log_level: info/' \
	"$D/agent.yaml"
kill -HUP "$pid"
assert "the reload ends" wait_log "reloaded:"
assert "trust_domain: a restart is needed" grep -qF \
	"reload: trust_domain changed (cluster.local -> other.example): a restart is needed to apply it; keeping cluster.local" \
	"$D/agent.err"
check "status after the refused change" 0 "$cubeid" status --socket "$S" -o json
assert "status keeps trust domain cluster.local" [ "$(json "$D/out" "d['trust_domain']")" = cluster.local ]
check "svid fetch after it" 0 "$cubeid" svid fetch --socket "$S" --out "$D/svid2"
assert "the SVID is still in cluster.local" grep -qx "spiffe://cluster.local/unix/uid/$uid" "$D/out"
check "openssl: the new SVID verifies with the old bundle" 0 \
	openssl verify -CAfile "$D/svid1/svid_bundle.pem" "$D/svid2/svid.pem"
# the first start logged at notice: no info line before the reload
assert "the rest reloaded: log level info (the mint logs at info)" \
	bash -c "sed -n '/reloaded:/,\$p' '$D/agent.err' | grep -q 'cubeid-agent: info:' &&
		! sed -n '1,/reloaded:/p' '$D/agent.err' | grep -q 'cubeid-agent: info:'"

# a leaf in place of the CA on disk: refused, the running one kept
cp "$state/ca.pem" "$D/ca.pem.orig"
cp "$D/svid2/svid.pem" "$state/ca.pem"
kill -HUP "$pid"
assert "the leaf on disk is refused as a new CA" wait_log "reload: keeping the running CA"
check "svid fetch with the running CA" 0 "$cubeid" svid fetch --socket "$S" --out "$D/svid3"
check "openssl: it still chains to the old bundle" 0 \
	openssl verify -CAfile "$D/svid1/svid_bundle.pem" "$D/svid3/svid.pem"
cp "$D/ca.pem.orig" "$state/ca.pem"

# token health is live: move the token's files away under the agent
mv "$state/softhsm/tokens" "$state/softhsm/tokens.away"
healthy=True
for _ in $(seq 1 120); do
	# exit 8: the agent answers, not ready
	{ "$cubeid" status --socket "$S" -o json >"$D/status2" 2>/dev/null || [ $? -eq 8 ]; } || break
	healthy=$(json "$D/status2" "d['token']['healthy']")
	[ "$healthy" = False ] && break
	sleep 0.5
done
assert "status turns unhealthy once the token fails" [ "$healthy" = False ]
assert "with the token's error" [ -n "$(json "$D/status2" "d['token'].get('error', '')")" ]
check "cubeid status (text): 8, not ready" 8 "$cubeid" status --socket "$S"
assert "says UNHEALTHY" grep -q "UNHEALTHY" "$D/out"
mv "$state/softhsm/tokens.away" "$state/softhsm/tokens"

kill -TERM "$pid"
wait "$pid"
rc=$?
pid=
assert "SIGTERM: exit status 0" [ "$rc" -eq 0 ]

echo "1..$n"
if [ "$fails" -ne 0 ]; then
	echo "agent log:"
	sed 's/^/    | /' "$D/agent.err" | tail -40
	exit 1
fi
exit 0
