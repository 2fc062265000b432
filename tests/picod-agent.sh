#!/bin/bash
# PicoD tokens from a real cubeid-agent --dev (issue 6), with the CLI as
# the Router:
#   - `cubeid picod token` works for the --dev user straight away; the
#     claims are today's (iss, iat, exp, session_id, user_sub, user_email)
#     plus aud picod:NS/SANDBOX, sub and jti; picod_issuer and
#     picod_token_ttl from the config file are used;
#   - a second request for the same (session, sandbox, user) is the cached
#     token; another session or sandbox gets a new one;
#   - an identity whose entry lacks picod_signer gets PermissionDenied;
#   - `cubeid picod public-key` prints a PKIX RSA PEM that verifies the
#     token (and `picod verify` refuses it for another sandbox or session);
#     the key is a persistent, non-extractable token key labelled
#     cubeid-picod-*;
#   - rotation: `picod rotate --prepublish 1h` publishes a second key and
#     the cached token stays; `--now` makes the next request re-sign with
#     the new key, which public-key then prints; ES256 with ec-p256;
#   - bad requests (sandbox name, lifetime) are refused.
set -u
builddir=${CUBEID_BUILDDIR:-.}
cubeid=$builddir/cli/cubeid
agent=$builddir/agent/cubeid-agent

for tool in openssl grep; do
	if ! command -v "$tool" >/dev/null 2>&1; then
		echo "SKIP: $tool not found"
		exit 77
	fi
done
[ -n "${CUBEID_SOFTHSM_MODULE:-}" ] && export CUBEID_PKCS11_MODULE=$CUBEID_SOFTHSM_MODULE
unset CUBEID_TOKEN CUBEID_PIN CUBEID_PIN_FILE CUBEID_STATE_DIR SPIFFE_ENDPOINT_SOCKET \
	PICOD_AUTH_PUBLIC_KEY
D=$(mktemp -d /tmp/cubeid-picod-agent.XXXXXX) || exit 1
pid=
cleanup() {
	[ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
	rm -rf "$D"
}
trap cleanup EXIT
S=$D/agent.sock
state=$D/state
uid=$(id -u)
. "$(dirname "$0")/lib/tap.sh"
# claims TOKEN: the claims JSON, decoded with nothing of ours
claims() {
	local p
	p=$(printf '%s' "$1" | cut -d. -f2 | tr '_-' '/+')
	while [ $((${#p} % 4)) -ne 0 ]; do p="$p="; done
	printf '%s' "$p" | openssl base64 -d -A
}
header() {
	local p
	p=$(printf '%s' "$1" | cut -d. -f1 | tr '_-' '/+')
	while [ $((${#p} % 4)) -ne 0 ]; do p="$p="; done
	printf '%s' "$p" | openssl base64 -d -A
}
json_field() { # json_field JSON NAME: a string or number member
	printf '%s' "$1" | grep -o "\"$2\":\(\"[^\"]*\"\|[0-9]*\)" | head -1 | cut -d: -f2- | tr -d '"'
}

cat >"$D/config.yaml" <<EOF
picod_issuer: router.test
picod_token_ttl: 2m
EOF
cat >"$D/entries.yaml" <<EOF
entries:
  - name: plain
    spiffe_id: spiffe://{td}/plain/{unix:uid}
    selectors: [unix:uid:$uid]
EOF
"$agent" --dev --config "$D/config.yaml" --state-dir "$state" --socket "$S" \
	--entries "$D/entries.yaml" --log-level info >"$D/agent.out" 2>"$D/agent.err" &
pid=$!
for _ in $(seq 1 300); do
	[ -S "$S" ] && "$cubeid" status --socket "$S" >/dev/null 2>&1 && break
	kill -0 "$pid" 2>/dev/null || break
	sleep 0.1
done
check "the agent is up" 0 "$cubeid" status --socket "$S"
export SPIFFE_ENDPOINT_SOCKET=unix://$S
dev_id=spiffe://cluster.local/unix/uid/$uid

# minting
check "picod token (the --dev user may mint)" 0 "$cubeid" picod token --session s-1 \
	--sandbox sb-a --user-sub alice --user-email alice@example.org -o json
j1=$(cat "$D/out")
t1=$(json_field "$j1" token)
c1=$(claims "$t1")
echo "# claims: $c1"
assert "header alg RS256, kid, typ JWT" bash -c "h='$(header "$t1")'; [[ \$h == *'\"alg\":\"RS256\"'* && \$h == *'\"kid\":\"'* && \$h == *'\"typ\":\"JWT\"'* ]]"
assert "iss from picod_issuer" grep -q '"iss":"router.test"' <<<"$c1"
assert "session_id" grep -q '"session_id":"s-1"' <<<"$c1"
assert "user_sub and user_email" bash -c "grep -q '\"user_sub\":\"alice\"' <<<'$c1' && grep -q '\"user_email\":\"alice@example.org\"' <<<'$c1'"
assert "aud binds the sandbox" grep -q '"aud":"picod:default/sb-a"' <<<"$c1"
assert "sub is the caller's SPIFFE ID" grep -q "\"sub\":\"$dev_id\"" <<<"$c1"
assert "a jti" grep -q '"jti":"[0-9a-f]\{32\}"' <<<"$c1"
iat=$(json_field "$c1" iat)
exp=$(json_field "$c1" exp)
assert "exp - iat is picod_token_ttl (120 s)" [ $((exp - iat)) -eq 120 ]
assert "not cached the first time" grep -q '"cached":false' <<<"$j1"
check "the same request again" 0 "$cubeid" picod token --session s-1 --sandbox sb-a \
	--user-sub alice --user-email alice@example.org -o json
assert "is the cached token" [ "$(json_field "$(cat "$D/out")" token)" = "$t1" ]
assert "and says so" grep -q '"cached":true' "$D/out"
check "another session" 0 "$cubeid" picod token --session s-2 --sandbox sb-a
assert "gets another token" [ "$(cat "$D/out")" != "$t1" ]
check "another sandbox" 0 "$cubeid" picod token --session s-1 --sandbox sb-b --namespace team-x
assert "gets another token, for picod:team-x/sb-b" grep -q '"aud":"picod:team-x/sb-b"' <<<"$(claims "$(cat "$D/out")")"
check "a shorter --ttl" 0 "$cubeid" picod token --session s-3 --sandbox sb-a --ttl 30s -o json
t3=$(json_field "$(cat "$D/out")" token)
c3=$(claims "$t3")
assert "lives 30 s" [ $(($(json_field "$c3" exp) - $(json_field "$c3" iat))) -eq 30 ]
check "a --ttl over the agent's is refused" 2 "$cubeid" picod token --session s --sandbox sb-a --ttl 5m
assert "as InvalidArgument" grep -q "code=InvalidArgument" "$D/err"
check "a bad sandbox name is a usage error" 2 "$cubeid" picod token --session s --sandbox ../x
check "an identity without picod_signer is refused" 1 "$cubeid" picod token --session s \
	--sandbox sb-a --spiffe-id "spiffe://cluster.local/plain/$uid"
assert "as PermissionDenied" grep -q "code=PermissionDenied" "$D/err"
check "status -o json counts PicoD tokens" 0 "$cubeid" status -o json --socket "$S"
assert "one cache hit, four mints so far" grep -q '"picod":{"cache_hits":1,"mints":4,"tokens_cached":4}' "$D/out"
assert "the log has the jti, never the token" bash -c "grep -q 'issued picod token.*jti=' '$D/agent.err' && ! grep -qF '$t1' '$D/agent.err'"

# the public key
check "picod public-key" 0 "$cubeid" picod public-key --out "$D/pk.pem"
assert "a PKIX PEM, nothing else" bash -c "[ \"\$(head -1 '$D/pk.pem')\" = '-----BEGIN PUBLIC KEY-----' ] && [ \"\$(tail -1 '$D/pk.pem')\" = '-----END PUBLIC KEY-----' ]"
check "openssl reads it as RSA 2048" 0 openssl pkey -pubin -in "$D/pk.pem" -noout -text
assert "2048 bits" grep -q "Public-Key: (2048 bit)" "$D/out"
check "picod verify accepts the token for sb-a, session s-1" 0 "$cubeid" picod verify "$t1" \
	--sandbox sb-a --session s-1 --issuer router.test --public-key "$D/pk.pem"
check "--sub: the caller's SPIFFE ID is accepted" 0 "$cubeid" picod verify "$t1" --sandbox sb-a \
	--sub "$dev_id" --public-key "$D/pk.pem"
check "--sub: a token minted for another workload is refused" 7 "$cubeid" picod verify "$t1" \
	--sandbox sb-a --sub spiffe://cluster.local/ns/x/sa/other --public-key "$D/pk.pem"
check "PICOD_AUTH_PUBLIC_KEY works as the key source" 0 env PICOD_AUTH_PUBLIC_KEY="$(cat "$D/pk.pem")" \
	"$cubeid" picod verify "Bearer $t1" --header --sandbox sb-a
check "sandbox sb-b refuses it (replay)" 7 "$cubeid" picod verify "$t1" --sandbox sb-b \
	--public-key "$D/pk.pem"
assert "for its audience" grep -q "audience" "$D/err"
check "another session refuses it" 7 "$cubeid" picod verify "$t1" --sandbox sb-a --session s-9 \
	--public-key "$D/pk.pem"
assert "for its session" grep -q "session" "$D/err"
check "the key is in the token" 0 env SOFTHSM2_CONF="$state/softhsm/softhsm2.conf" \
	"$cubeid" token keys list -o json --token pkcs11:token=cubeid-dev \
	--pin-file "$state/softhsm/user.pin"
assert "labelled cubeid-picod-*, rsa-2048, persistent, not exportable" bash -c \
	"tr -d ' \n' <'$D/out' | grep -q '\"label\":\"cubeid-picod-cluster.local-[^\"]*\",\"type\":\"rsa-2048\",\"id\":\"[0-9a-f]*\",\"storage\":\"token\",\"exportable\":false'"
assert "its state is in STATE/picod, mode 0600" [ "$(stat -c %a "$state/picod/jwt.conf")" = 600 ]

# rotation: --now makes the first request after it re-sign with the new key
kid1=$(json_field "$j1" kid)
check "rotate --type ec-p256 --now" 0 "$cubeid" picod rotate --type ec-p256 --now
kid2=$(cut -d' ' -f1 "$D/out")
assert "a new kid" bash -c "[ -n '$kid2' ] && [ '$kid2' != '$kid1' ]"
check "the first request after the rotation" 0 "$cubeid" picod token --session s-1 \
	--sandbox sb-a --user-sub alice --user-email alice@example.org -o json
t4=$(json_field "$(cat "$D/out")" token)
assert "re-signs (not cached)" grep -q '"cached":false' "$D/out"
assert "with the new key" grep -q "\"kid\":\"$kid2\"" "$D/out"
assert "as ES256" grep -q '"alg":"ES256"' <<<"$(header "$t4")"
check "public-key prints the new key" 0 "$cubeid" picod public-key --out "$D/pk2.pem"
assert "which differs" bash -c "! cmp -s '$D/pk.pem' '$D/pk2.pem'"
check "openssl: EC P-256" 0 openssl pkey -pubin -in "$D/pk2.pem" -noout -text
assert "prime256v1" grep -q "prime256v1" "$D/out"
check "the new token verifies with the new key" 0 "$cubeid" picod verify "$t4" --sandbox sb-a \
	--session s-1 --public-key "$D/pk2.pem"
check "and not with the old one" 7 "$cubeid" picod verify "$t4" --sandbox sb-a \
	--public-key "$D/pk.pem"

# --prepublish: published at once, signs later; the cache stays valid
check "rotate --prepublish 1h" 0 "$cubeid" picod rotate --prepublish 1h
kid3=$(cut -d' ' -f1 "$D/out")
check "public-key --format jwks" 0 "$cubeid" picod public-key --format jwks --out "$D/keys.jwks"
assert "publishes the old, the signing and the waiting key" bash -c \
	"grep -qF -e '$kid1' '$D/keys.jwks' && grep -qF -e '$kid2' '$D/keys.jwks' && grep -qF -e '$kid3' '$D/keys.jwks'"
check "public-key (pem) is still the signing key" 0 "$cubeid" picod public-key
assert "the same PEM" cmp -s "$D/out" "$D/pk2.pem"
check "the token is still the cached one" 0 "$cubeid" picod token --session s-1 \
	--sandbox sb-a --user-sub alice --user-email alice@example.org -o json
assert "(cached, same token)" bash -c "grep -q '\"cached\":true' '$D/out' && grep -qF '$t4' '$D/out'"
check "rotating again while a key waits is refused" 7 "$cubeid" picod rotate --now
check "the JWKS verifies tokens of both keys" 0 bash -c "
	'$cubeid' picod verify '$t4' --sandbox sb-a --jwks '$D/keys.jwks' &&
	'$cubeid' picod verify '$t1' --sandbox sb-a --jwks '$D/keys.jwks'"
nrel=$(grep -c reloaded "$D/agent.err")
kill -HUP "$pid"
for _ in $(seq 1 300); do [ "$(grep -c reloaded "$D/agent.err")" -gt "$nrel" ] && break; sleep 0.1; done
check "after SIGHUP the same key signs" 0 "$cubeid" picod public-key
assert "(the same PEM)" cmp -s "$D/out" "$D/pk2.pem"

kill -TERM "$pid"
wait "$pid"
rc=$?
pid=
assert "SIGTERM: exit status 0" [ "$rc" -eq 0 ]
echo "1..$n"
[ "$fails" -eq 0 ]
