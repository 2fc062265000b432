#!/bin/bash
# A PicoD key rotated offline (docs/picod.md: `cubeid ca jwt-rotate
# --state-dir STATE-DIR/picod`, with the token and its PIN) is labelled as
# the agent labels its PicoD keys, cubeid-picod-TD-..., not as a JWT-SVID
# key (issue 16), and the agent publishes it on SIGHUP.  The real agent in
# --dev mode on a throwaway SoftHSM2 token.
set -u
builddir=${CUBEID_BUILDDIR:-.}
cubeid=$builddir/cli/cubeid
agent=$builddir/agent/cubeid-agent

[ -n "${CUBEID_SOFTHSM_MODULE:-}" ] && export CUBEID_PKCS11_MODULE=$CUBEID_SOFTHSM_MODULE
unset CUBEID_TOKEN CUBEID_PIN CUBEID_PIN_FILE CUBEID_STATE_DIR SPIFFE_ENDPOINT_SOCKET
D=$(mktemp -d /tmp/cubeid-picod-offline.XXXXXX) || exit 1
pid=
cleanup() {
	[ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
	rm -rf "$D"
}
trap cleanup EXIT
S=$D/agent.sock
state=$D/state
. "$(dirname "$0")/lib/tap.sh"
# tok CMD...: the CLI on the agent's --dev token
tok() {
	env SOFTHSM2_CONF="$state/softhsm/softhsm2.conf" "$cubeid" "$@" \
		--token "pkcs11:token=cubeid-dev" --pin-file "$state/softhsm/user.pin"
}
# labels PREFIX: how many keys on the token have labels starting PREFIX
labels() {
	tok token keys list >"$D/keys" 2>&1
	awk -v p="$1" 'index($1, p) == 1' "$D/keys" | wc -l
}

"$agent" --dev --state-dir "$state" --socket "$S" >"$D/agent.out" 2>"$D/agent.err" &
pid=$!
for _ in $(seq 1 300); do
	kill -0 "$pid" 2>/dev/null || break
	"$cubeid" status --socket "$S" >/dev/null 2>&1 && break
	sleep 0.1
done
check "picod public-key (the agent makes its first PicoD key)" 0 \
	"$cubeid" picod public-key --socket "$S" --format jwks
assert "one PicoD key published" [ "$(grep -o '"kid"' "$D/out" | wc -l)" -eq 1 ]
assert "the agent's PicoD state is there" [ -f "$state/picod/jwt.conf" ]
picod0=$(labels cubeid-picod-cluster.local-)
jwt0=$(labels cubeid-jwt-)
assert "one cubeid-picod-* key on the token" [ "$picod0" -eq 1 ]

check "ca jwt-rotate --state-dir STATE/picod (offline rotation)" 0 \
	tok ca jwt-rotate --state-dir "$state/picod" --type rsa-2048
assert "the new key is labelled cubeid-picod-cluster.local-*" \
	[ "$(labels cubeid-picod-cluster.local-)" -eq $((picod0 + 1)) ]
assert "and not cubeid-jwt-*" [ "$(labels cubeid-jwt-)" -eq "$jwt0" ]
check "ca jwt-rotate --state-dir STATE/picod/ (a trailing slash) while one waits" 1 \
	tok ca jwt-rotate --state-dir "$state/picod/" --type rsa-2048
assert "  says a new key is waiting, not that there is no CA" grep -q "still waiting" "$D/err"

n0=$(grep -c "reloaded" "$D/agent.err")
kill -HUP "$pid"
for _ in $(seq 1 300); do [ "$(grep -c "reloaded" "$D/agent.err")" -gt "$n0" ] && break; sleep 0.1; done
check "picod public-key --format jwks after SIGHUP" 0 \
	"$cubeid" picod public-key --socket "$S" --format jwks
assert "two PicoD keys published" [ "$(grep -o '"kid"' "$D/out" | wc -l)" -eq 2 ]

echo "1..$n"
if [ "$fails" -ne 0 ]; then
	echo "agent log:"
	sed 's/^/    | /' "$D/agent.err" | tail -20
	sed 's/^/    keys| /' "$D/keys"
	exit 1
fi
exit 0
