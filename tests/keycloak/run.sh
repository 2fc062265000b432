#!/bin/bash
# tests/keycloak/run.sh: every Keycloak check against ONE real Keycloak
# (tests/lib/keycloak.sh: the pinned keycloak-quarkus-dist from Maven
# Central, start-dev on 127.0.0.1 with the SPIFFE preview features).
#
#  1. A throwaway SoftHSM2 token and `cubeid ca init`: the node's JWT key.
#  2. The real cubeid-agent on that token and state, with its HTTP server on
#     a loopback port: /keycloak/jwks (private_key_jwt) and /spiffe/bundle
#     (jwt-spiffe), the URLs the stamped realm gives Keycloak.
#  3. Realms stamped from deploy/keycloak/realm-template.json: agentcube and
#     tenant-b, plus test users (alice, bob: sandbox:invoke; carol:
#     sandbox:manage; root: admin; nobody: no role) and two test clients.
#  4. tests/keycloak/kc-check suite: verification, roles, policy 401/403,
#     JWKS cache, realm isolation, RLAC.
#  5. The CLI: oidc token (secret file, private_key_jwt, jwt-spiffe),
#     oidc exchange (success and three refusals), downstream validation,
#     oidc verify.
#
# A failed download or a server that does not start is a failure, never a
# skip.  Set KC_KEEP=1 to keep the work directory.
set -u
builddir=${CUBEID_BUILDDIR:-.}
srcdir=${CUBEID_SRCDIR:-.}
cubeid=$builddir/cli/cubeid
kccheck=$builddir/tests/keycloak/kc-check
agent=$builddir/agent/cubeid-agent
. "$srcdir/tests/lib/keycloak.sh"

for tool in jq curl sha256sum; do
	if ! command -v "$tool" >/dev/null 2>&1; then
		if [ "${CI:-}" = true ]; then
			echo "FAIL: $tool not found (CI=true: no skipping)" >&2
			exit 1
		fi
		echo "SKIP: $tool not found (install the Debian package that provides it)"
		exit 77
	fi
done
exports=$("$builddir/tests/mktoken")
rc=$?
[ $rc -eq 77 ] && exit 77
[ $rc -eq 0 ] || { echo "FAIL: tests/mktoken failed ($rc)" >&2; exit 1; }
eval "$exports"
unset CUBEID_TOKEN CUBEID_PIN CUBEID_PIN_FILE CUBEID_PKCS11_MODULE CUBEID_STATE_DIR
W=$CUBEID_T_DIR
AGENT_PID=
cleanup() {
	kc_stop
	[ -n "$AGENT_PID" ] && kill "$AGENT_PID" 2>/dev/null && wait "$AGENT_PID" 2>/dev/null
	if [ "${KC_KEEP:-}" = 1 ]; then echo "# kept $W"; else rm -rf "$W"; fi
}
trap cleanup EXIT
T=(--token "$CUBEID_T_URI" --module "$CUBEID_T_MODULE" --pin-file "$CUBEID_T_PIN_FILE")
S=$W/state
TD=cluster.local
ROUTER_ID=spiffe://$TD/ns/agentcube-system/sa/agentcube-router
TAP_DIR=$W
. "$(dirname "$0")/../lib/tap.sh"
jqtest() { jq -e "$@" >/dev/null; }
claims_of() { # the decoded payload of a JWT
	local p=${1#*.}
	p=${p%%.*}
	p=$(printf '%s' "$p" | tr '_-' '/+')
	while [ $((${#p} % 4)) -ne 0 ]; do p="$p="; done
	printf '%s' "$p" | base64 -d 2>/dev/null
}

# 1. the node's keys
check "ca init (trust domain $TD)" 0 "$cubeid" ca init -d "$TD" "${T[@]}" --state-dir "$S"

# 2. the agent's JWKS and SPIFFE bundle endpoints
mkdir -p "$W/www/keycloak" "$W/www/spiffe" "$W/import" "$W/tok"
check "oidc jwks" 0 "$cubeid" oidc jwks --state-dir "$S" --out "$W/www/keycloak/jwks"
assert "the client JWKS has use sig, a kid and alg ES256" \
	jqtest '.keys | length == 1 and .[0].use == "sig" and .[0].alg == "ES256" and (.[0].kid | length > 0)' \
	"$W/www/keycloak/jwks"
check "bundle show --format spiffe" 0 "$cubeid" bundle show --format spiffe --state-dir "$S" \
	--out "$W/www/spiffe/bundle"
# The real cubeid-agent serves them on its HTTP server; Keycloak fetches
# them from there.
www_port=$(kc_free_port)
AGENT_URL=http://127.0.0.1:$www_port
: >"$W/entries.yaml"
CUBEID_PKCS11_MODULE=$CUBEID_T_MODULE "$agent" --state-dir "$S" --socket "$W/agent.sock" \
	--token "$CUBEID_T_URI" --pin-file "$CUBEID_T_PIN_FILE" --entries "$W/entries.yaml" \
	--http-address "127.0.0.1:$www_port" >"$W/agent.out" 2>"$W/agent.err" &
AGENT_PID=$!
for i in $(seq 1 300); do
	curl -sf "$AGENT_URL/keycloak/jwks" >"$W/agent-jwks.json" 2>/dev/null && break
	kill -0 "$AGENT_PID" 2>/dev/null || break
	sleep 0.5
done
assert "cubeid-agent serves /keycloak/jwks: the same JWKS as 'cubeid oidc jwks'" \
	jqtest --slurpfile a "$W/www/keycloak/jwks" '. == $a[0]' "$W/agent-jwks.json"
curl -sf "$AGENT_URL/spiffe/bundle" >"$W/agent-bundle.json"
assert "cubeid-agent serves /spiffe/bundle: the keys of 'cubeid bundle show --format spiffe'" \
	jqtest --slurpfile a "$W/www/spiffe/bundle" '.keys == $a[0].keys and .spiffe_refresh_hint == $a[0].spiffe_refresh_hint' \
	"$W/agent-bundle.json"
[ -s "$W/agent-jwks.json" ] || { sed 's/^/    | /' "$W/agent.err"; echo "FAIL: cubeid-agent did not serve its JWKS" >&2; exit 1; }

# 3. realms: stamped from the template, plus test users and clients
stamp=$srcdir/deploy/keycloak/stamp-realm.sh
check "the checked-in agentcube realm is the template stamped with the defaults" 0 \
	cmp "$srcdir/deploy/keycloak/agentcube-realm.json" <("$stamp" agentcube)
check "stamp-realm.sh refuses a bad realm name" 2 "$stamp" 'a/b'
(umask 077 && head -c 24 /dev/urandom | base64 | tr -d '/+=\n' >"$W/sdk.secret")
(umask 077 && head -c 24 /dev/urandom | base64 | tr -d '/+=\n' >"$W/users.pw")
(umask 077 && head -c 24 /dev/urandom | base64 | tr -d '/+=\n' >"$W/other.secret")
overlay='
def user($n; $roles): {username: $n, enabled: true, email: ($n + "@example.org"),
  emailVerified: true, firstName: $n, lastName: "Test",
  credentials: [{type: "password", value: $pw, temporary: false}], realmRoles: $roles};
def aud($c): {name: ("audience-" + $c), protocol: "openid-connect",
  protocolMapper: "oidc-audience-mapper",
  config: {"included.client.audience": $c, "access.token.claim": "true",
           "id.token.claim": "false", "introspection.token.claim": "true"}};
.clients |= map(if .clientId == "agentcube-sdk"
                then .secret = $secret | .directAccessGrantsEnabled = true else . end)
| .clients += [
    {clientId: "other-app", enabled: true, publicClient: false, secret: $other,
     directAccessGrantsEnabled: true, standardFlowEnabled: false},
    {clientId: "short-lived", enabled: true, publicClient: false, secret: $other,
     directAccessGrantsEnabled: true, standardFlowEnabled: false,
     attributes: {"access.token.lifespan": "5"}, protocolMappers: [aud("agentcube-router")]}]
| .users += [user("alice"; ["sandbox:invoke"]), user("bob"; ["sandbox:invoke"]),
             user("carol"; ["sandbox:manage"]), user("root"; ["admin"]), user("nobody"; [])]'
for realm in agentcube tenant-b; do
	"$stamp" "$realm" "$TD" "$AGENT_URL" |
		jq --arg secret "$(cat "$W/sdk.secret")" --arg pw "$(cat "$W/users.pw")" \
			--arg other "$(cat "$W/other.secret")" "$overlay" >"$W/import/$realm.json" ||
		{ echo "FAIL: cannot stamp realm $realm" >&2; exit 1; }
done

# 4. one Keycloak for everything below
if ! kc_start "$W"; then
	echo "FAIL: Keycloak did not start" >&2
	exit 1
fi
export KC_URL CUBEID_KEYCLOAK_URL=$KC_URL
TOKEN_URL=$KC_URL/realms/agentcube/protocol/openid-connect/token
user_token() { # user_token REALM USER [CLIENT SECRET-FILE]
	curl -s --max-time 60 "$KC_URL/realms/$1/protocol/openid-connect/token" \
		-d grant_type=password -d "client_id=${3:-agentcube-sdk}" \
		--data-urlencode "client_secret@${4:-$W/sdk.secret}" \
		-d "username=$2" --data-urlencode "password@$W/users.pw" | jq -r '.access_token // empty'
}
for u in alice bob carol root nobody; do
	user_token agentcube "$u" >"$W/tok/$u.tok"
	assert "password grant for $u" test -s "$W/tok/$u.tok"
done
user_token tenant-b alice >"$W/tok/tenant-b-alice.tok"
assert "password grant for alice in realm tenant-b" test -s "$W/tok/tenant-b-alice.tok"
curl -s "$TOKEN_URL" -d grant_type=client_credentials -d client_id=agentcube-sdk \
	--data-urlencode "client_secret@$W/sdk.secret" | jq -r '.access_token // empty' >"$W/tok/sdk-sa.tok"
assert "client_credentials for agentcube-sdk" test -s "$W/tok/sdk-sa.tok"

echo "# kc-check suite"
"$kccheck" suite "$W/tok" | sed 's/^\(not \)\{0,1\}ok [0-9]* - /&kc-check: /'
[ "${PIPESTATUS[0]}" -eq 0 ] || { fails=$((fails + 1)); echo "not ok - kc-check suite failed"; }

echo "# kc-check client"
"$kccheck" client "$W/sdk.secret" | sed 's/^\(not \)\{0,1\}ok [0-9]* - /&kc-check: /'
[ "${PIPESTATUS[0]}" -eq 0 ] || { fails=$((fails + 1)); echo "not ok - kc-check client failed"; }

# 5. the CLI
alice_sub=$(claims_of "$(cat "$W/tok/alice.tok")" | jq -r .sub)
check "oidc owner-hash" 0 "$cubeid" oidc owner-hash "$alice_sub"
assert "owner-hash is the first 63 hex of SHA-256(sub)" \
	test "$(cat "$W/out")" = "$(printf '%s' "$alice_sub" | sha256sum | cut -c1-63)"

check "oidc token --secret-file" 0 "$cubeid" oidc token --client agentcube-sdk \
	--secret-file "$W/sdk.secret" -r agentcube
cp "$W/out" "$W/tok/cli-sdk.tok"
check "oidc verify (the client_credentials token, role sandbox:invoke, aud agentcube-router)" 0 \
	"$cubeid" oidc verify "$(cat "$W/tok/cli-sdk.tok")" --keycloak-realm agentcube --aud agentcube-router \
	--role sandbox:invoke
assert "oidc verify prints sub and roles" grep -q '^roles:.*sandbox:invoke' "$W/out"
check "oidc verify --role admin: 403 (exit 6)" 6 "$cubeid" oidc verify "$(cat "$W/tok/cli-sdk.tok")" \
	--realm agentcube --role admin
check "oidc verify with realm tenant-b: 401 (exit 7)" 7 "$cubeid" oidc verify \
	"$(cat "$W/tok/cli-sdk.tok")" --realm tenant-b
check "oidc verify of tenant-b's token with --keycloak-realm tenant-b" 0 "$cubeid" oidc verify \
	"$(cat "$W/tok/tenant-b-alice.tok")" --keycloak-realm tenant-b --keycloak-url "$KC_URL"
chmod 0644 "$W/sdk.secret"
check "oidc token: a secret file others can read is refused" 1 "$cubeid" oidc token \
	--client agentcube-sdk --secret-file "$W/sdk.secret"
chmod 0600 "$W/sdk.secret"
head -c 20 /dev/urandom | base64 | tr -d '/+=\n' >"$W/bad.secret"
chmod 0600 "$W/bad.secret"
check "oidc token: a wrong secret gives Keycloak's OAuth error" 1 "$cubeid" oidc token \
	--client agentcube-sdk --secret-file "$W/bad.secret"
assert "... unauthorized_client / invalid_client" grep -Eq 'invalid_client|unauthorized_client' "$W/err"

check "oidc token --assertion private-key-jwt (key in the token, JWKS from the agent)" 0 \
	"$cubeid" oidc token --client agentcube-router --assertion private-key-jwt "${T[@]}" --state-dir "$S"
cp "$W/out" "$W/tok/router.tok"
assert "the router's token is for client agentcube-router" \
	test "$(claims_of "$(cat "$W/tok/router.tok")" | jq -r .azp)" = agentcube-router

check "oidc token --assertion spiffe (JWT-SVID, Keycloak federated client auth)" 0 \
	"$cubeid" oidc token --client agentcube-router-spiffe --assertion spiffe --spiffe-id "$ROUTER_ID" \
	"${T[@]}" --state-dir "$S"
if [ -s "$W/out" ]; then
	assert "the SPIFFE client's token is for agentcube-router-spiffe" \
		test "$(claims_of "$(cat "$W/out")" | jq -r .azp)" = agentcube-router-spiffe
else
	echo "# jwt-spiffe refused by Keycloak $KC_VERSION: $(cat "$W/err")"
	grep -i spiffe "$KC_LOG" | tail -5 | sed 's/^/#   keycloak: /'
fi
check "oidc token --assertion spiffe for a SPIFFE ID the client does not name" 1 \
	"$cubeid" oidc token --client agentcube-router-spiffe --assertion spiffe \
	--spiffe-id "spiffe://$TD/ns/x/sa/y" "${T[@]}" --state-dir "$S"

# token exchange, authenticated with private_key_jwt
X=(--client agentcube-router --assertion private-key-jwt "${T[@]}" --state-dir "$S")
check "oidc exchange alice's token for workloadmanager" 0 "$cubeid" oidc exchange \
	--subject-token "$(cat "$W/tok/alice.tok")" --aud workloadmanager "${X[@]}"
cp "$W/out" "$W/tok/wm.tok"
check "WorkloadManager stand-in (own JWKS cache, aud workloadmanager) accepts it" 0 \
	"$kccheck" downstream workloadmanager "$W/tok/wm.tok"
assert "... the end user is still alice (sub)" grep -qx "sub: $alice_sub" "$W/out"
assert "... with her role" grep -q '^roles:.*sandbox:invoke' "$W/out"
check "PicoD stand-in refuses the WorkloadManager token (aud)" 1 \
	"$kccheck" downstream picod "$W/tok/wm.tok"
check "oidc exchange for picod" 0 "$cubeid" oidc exchange \
	--subject-token "$(cat "$W/tok/alice.tok")" --aud picod "${X[@]}"
cp "$W/out" "$W/tok/picod.tok"
check "PicoD stand-in accepts the picod token" 0 "$kccheck" downstream picod "$W/tok/picod.tok"

curl -s "$TOKEN_URL" -d grant_type=password -d client_id=other-app \
	--data-urlencode "client_secret@$W/other.secret" -d username=alice \
	--data-urlencode "password@$W/users.pw" | jq -r '.access_token // empty' >"$W/tok/other.tok"
assert "a token of other-app (aud without agentcube-router)" test -s "$W/tok/other.tok"
check "exchange refused: the subject token's aud does not name the router" 1 "$cubeid" oidc exchange \
	--subject-token "$(cat "$W/tok/other.tok")" --aud workloadmanager "${X[@]}"
echo "#   $(cat "$W/err")"
assert "... with an OAuth error from Keycloak" grep -Eq 'refused \(HTTP 4[0-9][0-9]\): [a-z_]+' "$W/err"
check "exchange refused: audience agentcube-sdk is not permitted" 1 "$cubeid" oidc exchange \
	--subject-token "$(cat "$W/tok/alice.tok")" --aud agentcube-sdk "${X[@]}"
echo "#   $(cat "$W/err")"
assert "... with an OAuth error naming the audience" grep -q 'agentcube-sdk' "$W/err"
curl -s "$TOKEN_URL" -d grant_type=password -d client_id=short-lived \
	--data-urlencode "client_secret@$W/other.secret" -d username=alice \
	--data-urlencode "password@$W/users.pw" | jq -r '.access_token // empty' >"$W/tok/short.tok"
assert "a 5 s token from short-lived" test -s "$W/tok/short.tok"
check "the short token exchanges while it is fresh" 0 "$cubeid" oidc exchange \
	--subject-token "$(cat "$W/tok/short.tok")" --aud workloadmanager "${X[@]}"
exp=$(claims_of "$(cat "$W/tok/short.tok")" | jq -r .exp)
while [ "$(date +%s)" -le $((exp + 1)) ]; do sleep 1; done
check "exchange refused: the subject token has expired" 1 "$cubeid" oidc exchange \
	--subject-token "$(cat "$W/tok/short.tok")" --aud workloadmanager "${X[@]}"
echo "#   $(cat "$W/err")"
assert "... with an OAuth error" grep -Eq 'refused \(HTTP 4[0-9][0-9]\): [a-z_]+' "$W/err"
check "oidc exchange needs --subject-token" 2 "$cubeid" oidc exchange --aud picod "${X[@]}"
check "oidc token needs one auth method" 2 "$cubeid" oidc token --client c

echo "1..$n"
[ "$fails" -eq 0 ] || { echo "FAIL: $fails check(s) failed (Keycloak log: $KC_LOG)"; KC_KEEP=1; exit 1; }
exit 0
