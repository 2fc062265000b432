#!/bin/bash
# `cubeid jwt mint|verify`, `cubeid ca jwt-rotate|jwt-keys` and the JWT parts
# of `cubeid bundle show` end to end against a throwaway SoftHSM2 token made
# by tests/mktoken: the first key from `ca init`, minting (ES256, RS256,
# PS256), verification against the state, a JWKS and a SPIFFE bundle file,
# refusals with their exit codes, a rollover with --prepublish 0 (the old
# key's tokens still verify), and spiffe_sequence moving with the content.
set -u
builddir=${CUBEID_BUILDDIR:-.}
cubeid=$builddir/cli/cubeid
mktoken=$builddir/tests/mktoken

for tool in grep sed; do
	if ! command -v "$tool" >/dev/null 2>&1; then
		echo "SKIP: $tool not found (install the Debian package that provides it)"
		exit 77
	fi
done
exports=$("$mktoken")
rc=$?
[ $rc -eq 77 ] && exit 77
[ $rc -eq 0 ] || { echo "FAIL: tests/mktoken failed ($rc)" >&2; exit 1; }
eval "$exports"
trap 'rm -rf "$CUBEID_T_DIR"' EXIT
unset CUBEID_TOKEN CUBEID_PIN CUBEID_PIN_FILE CUBEID_PKCS11_MODULE CUBEID_STATE_DIR
T=(--token "$CUBEID_T_URI" --module "$CUBEID_T_MODULE" --pin-file "$CUBEID_T_PIN_FILE")
D=$CUBEID_T_DIR
S=$D/state
ID=spiffe://example.org/ns/a/sa/b
. "$(dirname "$0")/lib/tap.sh"
# header_of TOKEN: the decoded JOSE header
header_of() {
	local h=${1%%.*}
	h=$(printf '%s' "$h" | tr '_-' '/+')
	while [ $((${#h} % 4)) -ne 0 ]; do h="$h="; done
	printf '%s' "$h" | base64 -d 2>/dev/null
}
seq_of() { sed -n 's/.*"spiffe_sequence": *\([0-9]*\).*/\1/p' "$1"; }

check "ca init" 0 "$cubeid" ca init -d example.org "${T[@]}" --state-dir "$S"
assert "jwt.conf is 0600" [ "$(stat -c %a "$S/jwt.conf")" = 600 ]
check "ca jwt-keys" 0 "$cubeid" ca jwt-keys --state-dir "$S"
# the table's columns are padded: squeeze them to one space
assert "one active ec-p256 key" [ "$(tr -s ' ' <"$D/out" | grep -c ' ec-p256 active ')" = 1 ]
kid1=$(awk '/ active /{print $1}' "$D/out")

check "jwt mint" 0 "$cubeid" jwt mint --spiffe-id "$ID" --aud svc --aud other --jti "${T[@]}" --state-dir "$S"
tok1=$(cat "$D/out")
assert "ES256 with the active kid and typ JWT" grep -q "\"alg\":\"ES256\",\"kid\":\"$kid1\",\"typ\":\"JWT\"" <(header_of "$tok1")
check "jwt verify (state bundle)" 0 "$cubeid" jwt verify "$tok1" --aud other --state-dir "$S"
assert "verify prints the subject" [ "$(head -1 "$D/out")" = "$ID" ]
assert "verify prints the claims with jti" grep -q '"jti":"[0-9a-f]\{32\}"' "$D/out"
check "jwt verify: wrong audience" 7 "$cubeid" jwt verify "$tok1" --aud nope --state-dir "$S"
# Tamper with a character inside the signature, always changing it: the
# last character of an ES256 signature encodes only 2 bits (A, Q, g or w),
# so overwriting it with a fixed letter left the token intact 1 time in 4.
tampered=$(tok=$tok1 python3 -c 'import os; t = os.environ["tok"]; i = len(t) - 10; print(t[:i] + ("B" if t[i] == "A" else "A") + t[i + 1:])')
assert "the tampered token differs" [ "$tampered" != "$tok1" ]
check "jwt verify: tampered token" 7 "$cubeid" jwt verify "$tampered" --aud svc --state-dir "$S"
check "jwt verify: garbage" 7 "$cubeid" jwt verify not.a.jwt --aud svc --state-dir "$S"
check "jwt verify needs --aud" 2 "$cubeid" jwt verify "$tok1" --state-dir "$S"
# a lifetime over --max-lifetime (tok1 lives 5m, the default ttl)
check "jwt verify: --max-lifetime 4m refuses a 5m token" 7 "$cubeid" jwt verify "$tok1" --aud svc \
	--max-lifetime 4m --state-dir "$S"
check "jwt verify: --max-lifetime 5m accepts it" 0 "$cubeid" jwt verify "$tok1" --aud svc \
	--max-lifetime 5m --state-dir "$S"
check "jwt verify: a bad --max-lifetime" 2 "$cubeid" jwt verify "$tok1" --aud svc \
	--max-lifetime soon --state-dir "$S"
# the trust domain's own ID is not a workload's
check "jwt mint for the trust domain's own ID" 1 "$cubeid" jwt mint --spiffe-id spiffe://example.org \
	--aud svc "${T[@]}" --state-dir "$S"
check "jwt verify: no bundle file" 4 "$cubeid" jwt verify "$tok1" --aud svc --bundle "$D/none.json"
check "jwt mint needs --aud" 2 "$cubeid" jwt mint --spiffe-id "$ID" "${T[@]}" --state-dir "$S"
check "jwt mint: ttl past max_ttl" 2 "$cubeid" jwt mint --spiffe-id "$ID" --aud a --ttl 2h "${T[@]}" --state-dir "$S"
check "jwt mint: another trust domain" 1 "$cubeid" jwt mint --spiffe-id spiffe://other.org/x --aud a "${T[@]}" --state-dir "$S"
check "jwt mint: RS256 on an EC key" 1 "$cubeid" jwt mint --spiffe-id "$ID" --aud a --alg RS256 "${T[@]}" --state-dir "$S"
check "jwt mint: HS256 is no alg" 2 "$cubeid" jwt mint --spiffe-id "$ID" --aud a --alg HS256 "${T[@]}" --state-dir "$S"
check "jwt mint: no JWT keys" 4 "$cubeid" jwt mint --spiffe-id "$ID" --aud a "${T[@]}" --state-dir "$D/empty"

check "bundle show --format jwks" 0 "$cubeid" bundle show --format jwks --state-dir "$S" --out "$D/jwks.json"
assert "jwks has the kid with use jwt-svid" grep -q "\"kid\": *\"$kid1\", *\"use\": *\"jwt-svid\"" "$D/jwks.json"
check "jwt verify --bundle JWKS" 0 "$cubeid" jwt verify "$tok1" --aud svc --bundle "$D/jwks.json"
check "bundle show --format spiffe" 0 "$cubeid" bundle show --format spiffe --state-dir "$S" --out "$D/b1.json"
assert "spiffe bundle has x509-svid and jwt-svid keys" grep -q '"x509-svid".*"jwt-svid"' "$D/b1.json"
assert "spiffe bundle has spiffe_refresh_hint" grep -q '"spiffe_refresh_hint": *[0-9]' "$D/b1.json"
seq1=$(seq_of "$D/b1.json")
assert "spiffe_sequence is 1" [ "$seq1" = 1 ]
check "jwt verify --bundle SPIFFE" 0 "$cubeid" jwt verify "$tok1" --aud svc --bundle "$D/b1.json"
check "jwt verify --bundle, other trust domain" 7 "$cubeid" jwt verify "$tok1" --aud svc --bundle "$D/jwks.json" -d other.org
check "bundle show --format spiffe again" 0 "$cubeid" bundle show --format spiffe --state-dir "$S" --out "$D/b2.json"
assert "same content, same spiffe_sequence" [ "$(seq_of "$D/b2.json")" = 1 ]

# rollover to RSA, signing at once; the old key stays published
check "ca jwt-rotate --type rsa-2048 --prepublish 0" 0 "$cubeid" ca jwt-rotate -t rsa-2048 --prepublish 0 "${T[@]}" --state-dir "$S"
tr -s ' ' <"$D/out" >"$D/out1"
assert "old key retiring, new key active" grep -q "^$kid1 ec-p256 retiring " "$D/out1"
assert "the rsa key is active" grep -q " rsa-2048 active " "$D/out1"
kid2=$(awk '/ rsa-2048 active /{print $1}' "$D/out1")
check "jwt mint (RS256)" 0 "$cubeid" jwt mint --spiffe-id "$ID" --aud svc "${T[@]}" --state-dir "$S"
tok2=$(cat "$D/out")
assert "RS256 with the new kid" grep -q "\"alg\":\"RS256\",\"kid\":\"$kid2\"" <(header_of "$tok2")
check "jwt mint --alg PS256" 0 "$cubeid" jwt mint --spiffe-id "$ID" --aud svc --alg PS256 "${T[@]}" --state-dir "$S"
tok3=$(cat "$D/out")
check "jwt verify RS256" 0 "$cubeid" jwt verify "$tok2" --aud svc --state-dir "$S"
check "jwt verify PS256" 0 "$cubeid" jwt verify "$tok3" --aud svc --state-dir "$S"
check "the old key's token still verifies" 0 "$cubeid" jwt verify "$tok1" --aud svc --state-dir "$S"
check "bundle show --format spiffe after rotation" 0 "$cubeid" bundle show --format spiffe --state-dir "$S" --out "$D/b3.json"
assert "spiffe_sequence moved to 2" [ "$(seq_of "$D/b3.json")" = 2 ]
assert "the first kid is published" grep -qF -e "\"$kid1\"" "$D/b3.json"
assert "the second kid is published" grep -qF -e "\"$kid2\"" "$D/b3.json"
check "jwt verify RS256 --bundle SPIFFE" 0 "$cubeid" jwt verify "$tok2" --aud svc --bundle "$D/b3.json"

# a delayed rollover: published now, signs later, a second one is refused
check "ca jwt-rotate (default prepublish)" 0 "$cubeid" ca jwt-rotate "${T[@]}" --state-dir "$S"
assert "the new key is pending" [ "$(tr -s ' ' <"$D/out" | grep -c ' ec-p256 pending ')" = 1 ]
check "ca jwt-rotate while one is pending" 1 "$cubeid" ca jwt-rotate "${T[@]}" --state-dir "$S"
check "jwt mint still signs with the RSA key" 0 "$cubeid" jwt mint --spiffe-id "$ID" --aud svc "${T[@]}" --state-dir "$S"
assert "kid is still the RSA key's" grep -q "\"kid\":\"$kid2\"" <(header_of "$(cat "$D/out")")
check "ca jwt-rotate: bad key type" 2 "$cubeid" ca jwt-rotate -t dsa "${T[@]}" --state-dir "$S"

echo "1..$n"
[ $fails -eq 0 ]
