#!/bin/bash
# Interop with real go-spiffe v2 (tests/interop, built by tests/lib/go-peers.sh
# into its versioned cache) and OpenSSL, against a throwaway SoftHSM2 token:
#  (a) X.509-SVIDs from `cubeid svid mint` (EC and RSA root CAs, and an
#      enrolled intermediate) pass go-spiffe x509-verify and
#      `openssl verify -CAfile bundle -untrusted chain`;
#  (b) JWT-SVIDs from `cubeid jwt mint` (ES256, RS256, PS256) pass go-spiffe
#      jwt-verify with the JWKS and with the SPIFFE bundle from
#      `cubeid bundle show`;
#  (c) go-spiffe-minted X.509-SVIDs and JWT-SVIDs are accepted by
#      `cubeid svid verify` / `cubeid jwt verify`;
#  (d) a wrong audience and a wrong trust domain are rejected by both sides.
#
# Exit: 0 pass, 1 fail, 77 skip (no usable Go, or no SoftHSM2, outside CI;
# with CI=true a missing Go is a failure).
set -u
builddir=${CUBEID_BUILDDIR:-.}
srcdir=${CUBEID_SRCDIR:-${srcdir:-$(cd "$(dirname "$0")/.." && pwd)}}
cubeid=$builddir/cli/cubeid
mktoken=$builddir/tests/mktoken
peers=$srcdir/tests/lib/go-peers.sh

skip_or_fail() {
	echo "=================================================================="
	if [ "${CI:-}" = true ]; then
		echo "FAIL (CI=true): $*"
		echo "=================================================================="
		exit 1
	fi
	echo "SKIP: $* -- the go-spiffe interop tests did NOT run"
	echo "=================================================================="
	exit 77
}

command -v openssl >/dev/null || { echo "FAIL: openssl not found"; exit 1; }
checker=$(CUBEID_SRCDIR=$srcdir bash "$peers" path cubeid-interop)
rc=$?
if [ $rc -ne 0 ] || [ ! -x "$checker" ]; then
	[ $rc -eq 3 ] && skip_or_fail "no usable Go to build tests/interop (go-peers.sh exit 3)"
	echo "FAIL: could not build cubeid-interop (go-peers.sh exit $rc)"
	exit 1
fi
exports=$("$mktoken")
rc=$?
[ $rc -eq 77 ] && exit 77
[ $rc -eq 0 ] || { echo "FAIL: tests/mktoken failed ($rc)" >&2; exit 1; }
eval "$exports"
trap 'rm -rf "$CUBEID_T_DIR"' EXIT
unset CUBEID_TOKEN CUBEID_PIN CUBEID_PIN_FILE CUBEID_PKCS11_MODULE CUBEID_STATE_DIR
T=(--token "$CUBEID_T_URI" --module "$CUBEID_T_MODULE" --pin-file "$CUBEID_T_PIN_FILE")
D=$CUBEID_T_DIR
TD=example.org
ID=spiffe://$TD/ns/agentcube-system/sa/agentcube-router
. "$(dirname "$0")/lib/tap.sh"

# (a) X.509-SVIDs minted by cubeid: EC root, RSA root, enrolled intermediate
x509_case() { # x509_case NAME STATE-DIR
	local name=$1 st=$2 out=$D/svid-$1
	check "$name: svid mint" 0 "$cubeid" svid mint --spiffe-id "$ID" --dns router.example.org "${T[@]}" --state-dir "$st" --out "$out"
	check "$name: go-spiffe x509-verify" 0 "$checker" x509-verify --svid "$out/svid.pem" --bundle "$out/svid_bundle.pem"
	assert "$name: go-spiffe returns the ID" [ "$(cat "$D/out")" = "$ID" ]
	"$cubeid" bundle show --format spiffe --state-dir "$st" --out "$out/bundle.spiffe.json" 2>/dev/null
	check "$name: go-spiffe x509-verify (SPIFFE bundle)" 0 "$checker" x509-verify --svid "$out/svid.pem" --bundle-spiffe "$out/bundle.spiffe.json" --td $TD
	openssl x509 -in "$out/svid.pem" -out "$out/leaf.pem"
	awk 'n>=1{print} /END CERT/{n++}' "$out/svid.pem" >"$out/chain.pem"
	if [ -s "$out/chain.pem" ]; then
		check "$name: openssl verify -untrusted chain" 0 openssl verify -CAfile "$out/svid_bundle.pem" -untrusted "$out/chain.pem" "$out/leaf.pem"
	else
		check "$name: openssl verify" 0 openssl verify -CAfile "$out/svid_bundle.pem" "$out/leaf.pem"
	fi
	check "$name: go-spiffe rejects another trust domain" 1 "$checker" x509-verify --svid "$out/svid.pem" --bundle "$out/svid_bundle.pem" --td other.org
}
check "ca init (EC)" 0 "$cubeid" ca init -d $TD "${T[@]}" --state-dir "$D/ec"
x509_case ec-root "$D/ec"
check "ca init (RSA)" 0 "$cubeid" ca init -d $TD -t rsa-2048 "${T[@]}" --state-dir "$D/rsa"
x509_case rsa-root "$D/rsa"
check "ca csr (node)" 0 "$cubeid" ca csr -d $TD "${T[@]}" --state-dir "$D/node" --out "$D/node.csr"
check "ca sign (EC root)" 0 "$cubeid" ca sign --csr "$D/node.csr" "${T[@]}" --state-dir "$D/ec" --out "$D/node.pem"
check "ca install (node)" 0 "$cubeid" ca install --cert "$D/node.pem" --bundle "$D/ec/bundle.pem" "${T[@]}" --state-dir "$D/node"
# the node's SPIFFE bundle needs JWT keys of its own for --format spiffe to
# carry a sequence; the X.509 part is what is checked here
x509_case intermediate "$D/node"

# (b) JWT-SVIDs minted by cubeid: ES256 (first key), RS256 and PS256 (RSA key)
S=$D/ec
jwt_case() { # jwt_case NAME [jwt mint options]
	local name=$1 out=$D/jwt-$1
	shift
	mkdir -p "$out"
	check "$name: jwt mint" 0 "$cubeid" jwt mint --spiffe-id "$ID" --aud svc-a --aud svc-b "$@" "${T[@]}" --state-dir "$S"
	cp "$D/out" "$out/token.jwt"
	"$cubeid" bundle show --format jwks --state-dir "$S" --out "$out/jwks.json" 2>/dev/null
	"$cubeid" bundle show --format spiffe --state-dir "$S" --out "$out/bundle.spiffe.json" 2>/dev/null
	check "$name: go-spiffe jwt-verify (JWKS)" 0 "$checker" jwt-verify --token-file "$out/token.jwt" --bundle "$out/jwks.json" --aud svc-b --td $TD
	assert "$name: go-spiffe sees the sub" grep -q "\"sub\": \"$ID\"" "$D/out"
	check "$name: go-spiffe jwt-verify (SPIFFE bundle)" 0 "$checker" jwt-verify --token-file "$out/token.jwt" --bundle-spiffe "$out/bundle.spiffe.json" --aud svc-a --td $TD
	check "$name: go-spiffe rejects a wrong audience" 1 "$checker" jwt-verify --token-file "$out/token.jwt" --bundle "$out/jwks.json" --aud svc-c --td $TD
	check "$name: go-spiffe rejects a wrong trust domain" 1 "$checker" jwt-verify --token-file "$out/token.jwt" --bundle "$out/jwks.json" --aud svc-a --td other.org
	check "$name: cubeid rejects a wrong audience (7)" 7 "$cubeid" jwt verify --token-file "$out/token.jwt" --aud svc-c --bundle "$out/jwks.json"
}
jwt_case ES256
check "ca jwt-rotate to RSA (--prepublish 0)" 0 "$cubeid" ca jwt-rotate -t rsa-2048 --prepublish 0 "${T[@]}" --state-dir "$S"
jwt_case RS256
jwt_case PS256 --alg PS256
# the ES256 token of the retiring key still passes go-spiffe with today's JWKS
"$cubeid" bundle show --format jwks --state-dir "$S" --out "$D/jwks-now.json" 2>/dev/null
check "rollover: go-spiffe accepts the old key's token" 0 "$checker" jwt-verify --token-file "$D/jwt-ES256/token.jwt" --bundle "$D/jwks-now.json" --aud svc-a --td $TD

# (c) go-spiffe-minted SVIDs accepted by cubeid; (d) rejections
for key in ec256 ec384 rsa2048; do
	g=$D/go-x509-$key
	check "go x509-mint $key" 0 "$checker" x509-mint --td $TD --id "$ID" --key $key --out "$g"
	check "cubeid svid verify accepts go's $key SVID" 0 "$cubeid" svid verify "$g/svid.pem" --bundle "$g/bundle.pem"
	assert "cubeid svid verify prints the ID ($key)" [ "$(cat "$D/out")" = "$ID" ]
	check "cubeid svid verify rejects go's $key SVID for another trust domain (7)" 7 "$cubeid" svid verify "$g/svid.pem" --bundle "$g/bundle.pem" -d other.org
done
check "cubeid svid verify rejects go's SVID against cubeid's bundle (7)" 7 "$cubeid" svid verify "$D/go-x509-ec256/svid.pem" --bundle "$D/ec/bundle.pem"
for alg in ES256 ES384 RS256 PS256; do
	g=$D/go-jwt-$alg
	check "go jwt-mint $alg" 0 "$checker" jwt-mint --td $TD --id "$ID" --aud svc-a --alg $alg --out "$g"
	check "cubeid jwt verify accepts go's $alg (JWKS)" 0 "$cubeid" jwt verify --token-file "$g/token.jwt" --aud svc-a --bundle "$g/jwks.json"
	assert "cubeid jwt verify prints the sub ($alg)" [ "$(head -1 "$D/out")" = "$ID" ]
	check "cubeid jwt verify accepts go's $alg (SPIFFE bundle)" 0 "$cubeid" jwt verify --token-file "$g/token.jwt" --aud svc-a --bundle "$g/bundle.spiffe.json"
	check "cubeid jwt verify rejects go's $alg for a wrong audience (7)" 7 "$cubeid" jwt verify --token-file "$g/token.jwt" --aud svc-x --bundle "$g/jwks.json"
	check "cubeid jwt verify rejects go's $alg for a wrong trust domain (7)" 7 "$cubeid" jwt verify --token-file "$g/token.jwt" --aud svc-a --bundle "$g/jwks.json" -d other.org
done
check "cubeid jwt verify rejects go's token against cubeid's bundle (7)" 7 "$cubeid" jwt verify --token-file "$D/go-jwt-ES256/token.jwt" --aud svc-a --state-dir "$S"
g=$D/go-jwt-wrongtd
check "go jwt-mint --defect wrong-td-sub" 0 "$checker" jwt-mint --td $TD --id "$ID" --aud svc-a --defect wrong-td-sub --out "$g"
check "cubeid jwt verify rejects a sub of another trust domain (7)" 7 "$cubeid" jwt verify --token-file "$g/token.jwt" --aud svc-a --bundle "$g/jwks.json" -d $TD

echo "1..$n"
[ $fails -eq 0 ]
