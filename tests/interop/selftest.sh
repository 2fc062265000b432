#!/bin/bash
# Self-test of the go-spiffe interop checker (tests/interop): what it mints
# must pass go-spiffe's validators and OpenSSL, and every deliberate defect
# must be rejected.  This proves the checker before cubeid's own SVIDs are
# run through it.
#
# Exit: 0 pass, 1 fail, 77 skip (no usable Go outside CI; in CI, CI=true,
# a missing Go is a failure).
set -u

srcdir=${CUBEID_SRCDIR:-$(cd "$(dirname "$0")/../.." && pwd)}
peers=$srcdir/tests/lib/go-peers.sh

checker=$("$peers" path cubeid-interop)
rc=$?
if [ $rc -ne 0 ]; then
	if [ $rc -eq 3 ] && [ "${CI:-}" != true ]; then
		echo "SKIP: no usable Go to build the checker (see the message above)"
		exit 77
	fi
	echo "FAIL: could not build cubeid-interop (go-peers.sh exit $rc)"
	exit 1
fi
command -v openssl >/dev/null || {
	echo "FAIL: openssl not found"
	exit 1
}

work=$(mktemp -d "${TMPDIR:-/tmp}/cubeid-interop.XXXXXX") || exit 1
trap 'rm -rf "$work"' EXIT

pass=0
fail=0
ok() {
	pass=$((pass + 1))
	echo "ok - $*"
}
bad() {
	fail=$((fail + 1))
	echo "not ok - $*"
}

# expect_ok NAME CMD...: CMD must exit 0.
expect_ok() {
	local name=$1
	shift
	if "$@" >"$work/out" 2>"$work/err"; then
		ok "$name"
	else
		bad "$name (exit $?): $(cat "$work/err")"
	fi
}

# expect_reject NAME CMD...: CMD must exit 1 (a rejection, not a usage error).
expect_reject() {
	local name=$1 rc
	shift
	"$@" >"$work/out" 2>"$work/err"
	rc=$?
	if [ $rc -eq 1 ]; then
		ok "$name rejected: $(tail -n1 "$work/err")"
	else
		bad "$name: expected exit 1, got $rc: $(cat "$work/out" "$work/err")"
	fi
}

TD=example.org
ID=spiffe://$TD/ns/default/sa/web

# --- X.509-SVID: minted chain is accepted by go-spiffe and OpenSSL ----------
for key in ec256 ec384 rsa2048; do
	d=$work/x509-$key
	expect_ok "x509-mint $key" "$checker" x509-mint --td $TD --id $ID --key $key --dns web.example.org --out "$d"
	expect_ok "x509-verify $key (PEM bundle)" "$checker" x509-verify --svid "$d/svid.pem" --bundle "$d/bundle.pem"
	if [ "$(cat "$work/out")" = "$ID" ]; then ok "x509-verify $key prints $ID"; else bad "x509-verify $key printed '$(cat "$work/out")'"; fi
	expect_ok "x509-verify $key (SPIFFE bundle, --td)" "$checker" x509-verify --svid "$d/svid.pem" --bundle-spiffe "$d/bundle.spiffe.json" --td $TD
	for purpose in sslserver sslclient; do
		expect_ok "openssl verify -purpose $purpose $key" openssl verify -purpose $purpose -CAfile "$d/bundle.pem" -untrusted "$d/intermediate.pem" "$d/leaf.pem"
	done
	# The key file holds the leaf's private key.
	if [ "$(openssl pkey -in "$d/svid_key.pem" -pubout 2>/dev/null)" = "$(openssl x509 -in "$d/leaf.pem" -noout -pubkey 2>/dev/null)" ] &&
		[ -n "$(openssl x509 -in "$d/leaf.pem" -noout -pubkey 2>/dev/null)" ]; then
		ok "svid_key.pem matches the leaf ($key)"
	else
		bad "svid_key.pem does not match the leaf ($key)"
	fi
done

d=$work/x509-ec256
# Spec shape of the minted leaf, read back by OpenSSL.
text=$(openssl x509 -in "$d/leaf.pem" -noout -text)
for want in "CA:FALSE" "Digital Signature" "TLS Web Server Authentication, TLS Web Client Authentication" "URI:$ID"; do
	case $text in
	*"$want"*) ok "leaf has '$want'" ;;
	*) bad "leaf lacks '$want'" ;;
	esac
done
case $text in
*"Certificate Sign"* | *"CRL Sign"*) bad "leaf has a CA key usage" ;;
*) ok "leaf has no keyCertSign/cRLSign" ;;
esac
if [ "$(grep -c 'BEGIN CERTIFICATE' "$d/svid.pem")" -eq 2 ]; then ok "svid.pem holds leaf + intermediate"; else bad "svid.pem chain length"; fi

# --- X.509 negatives ----------------------------------------------------------
expect_reject "x509-verify with the wrong trust domain" "$checker" x509-verify --svid "$d/svid.pem" --bundle "$d/bundle.pem" --td other.org
other=$work/x509-other
"$checker" x509-mint --td $TD --id $ID --out "$other" >/dev/null || bad "x509-mint (second CA)"
expect_reject "x509-verify against another CA's bundle" "$checker" x509-verify --svid "$d/svid.pem" --bundle "$other/bundle.pem"
expect_reject "x509-verify after expiry (--time)" "$checker" x509-verify --svid "$d/svid.pem" --bundle "$d/bundle.pem" --time 2099-01-01T00:00:00Z

for defect in leaf-ca leaf-keycertsign leaf-crlsign two-uris no-uri expired not-yet-valid wrong-td untrusted-root intermediate-not-ca; do
	dd=$work/x509-defect-$defect
	if "$checker" x509-mint --td $TD --id $ID --defect $defect --out "$dd" >/dev/null 2>"$work/err"; then
		expect_reject "x509 defect $defect" "$checker" x509-verify --svid "$dd/svid.pem" --bundle "$dd/bundle.pem" --td $TD
	else
		bad "x509-mint --defect $defect: $(cat "$work/err")"
	fi
done
# OpenSSL agrees on the chain-level defects.
for defect in expired untrusted-root intermediate-not-ca; do
	dd=$work/x509-defect-$defect
	if openssl verify -CAfile "$dd/bundle.pem" -untrusted "$dd/intermediate.pem" "$dd/leaf.pem" >/dev/null 2>&1; then
		bad "openssl accepted x509 defect $defect"
	else
		ok "openssl rejects x509 defect $defect"
	fi
done

# --- JWT-SVID -------------------------------------------------------------------
for alg in ES256 ES384 RS256 PS256; do
	j=$work/jwt-$alg
	expect_ok "jwt-mint $alg" "$checker" jwt-mint --td $TD --id $ID --aud svc-a --aud svc-b --alg $alg --out "$j"
	expect_ok "jwt-verify $alg (JWKS)" "$checker" jwt-verify --token-file "$j/token.jwt" --bundle "$j/jwks.json" --aud svc-b --td $TD
	if grep -q "\"sub\": \"$ID\"" "$work/out"; then ok "jwt-verify $alg prints sub"; else bad "jwt-verify $alg output: $(cat "$work/out")"; fi
	expect_ok "jwt-verify $alg (SPIFFE bundle)" "$checker" jwt-verify --token "$(cat "$j/token.jwt")" --bundle-spiffe "$j/bundle.spiffe.json" --aud svc-a --td $TD
	expect_reject "jwt-verify $alg with the wrong audience" "$checker" jwt-verify --token-file "$j/token.jwt" --bundle "$j/jwks.json" --aud svc-c --td $TD
	expect_reject "jwt-verify $alg with the wrong trust domain" "$checker" jwt-verify --token-file "$j/token.jwt" --bundle "$j/jwks.json" --aud svc-a --td other.org
done
j=$work/jwt-string-aud
expect_ok "jwt-mint with aud as a string" "$checker" jwt-mint --td $TD --id $ID --aud svc-a --aud-form string --out "$j"
expect_ok "jwt-verify aud as a string" "$checker" jwt-verify --token-file "$j/token.jwt" --bundle "$j/jwks.json" --aud svc-a --td $TD
if grep -q '"use": "jwt-svid"' "$j/jwks.json" && grep -q '"kid"' "$j/jwks.json"; then ok "jwks.json keys have kid and use=jwt-svid"; else bad "jwks.json lacks kid/use"; fi
expect_reject "jwt-verify against another key's JWKS" "$checker" jwt-verify --token-file "$j/token.jwt" --bundle "$work/jwt-ES256/jwks.json" --aud svc-a --td $TD
# Same kid, different key: only the signature check can catch it.
for n in 1 2; do
	"$checker" jwt-mint --td $TD --id $ID --aud svc-a --kid same-kid --out "$work/jwt-kid$n" >/dev/null || bad "jwt-mint --kid same-kid"
done
expect_reject "jwt-verify with a same-kid foreign key" "$checker" jwt-verify --token-file "$work/jwt-kid1/token.jwt" --bundle "$work/jwt-kid2/jwks.json" --aud svc-a --td $TD

for defect in alg-none hs256 no-kid unknown-kid no-aud no-exp expired bad-typ bad-sig wrong-td-sub; do
	jd=$work/jwt-defect-$defect
	if "$checker" jwt-mint --td $TD --id $ID --aud svc-a --defect $defect --out "$jd" >/dev/null 2>"$work/err"; then
		expect_reject "jwt defect $defect" "$checker" jwt-verify --token-file "$jd/token.jwt" --bundle "$jd/jwks.json" --aud svc-a --td $TD
	else
		bad "jwt-mint --defect $defect: $(cat "$work/err")"
	fi
done

# Usage errors exit 2, not 1, so that a broken call never counts as a rejection.
"$checker" x509-verify --bundle x >/dev/null 2>&1
rc=$?
if [ $rc -eq 2 ]; then ok "usage error exits 2"; else bad "usage error exited $rc"; fi

echo "interop: $pass passed, $fail failed"
[ $fail -eq 0 ]
