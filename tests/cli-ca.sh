#!/bin/bash
# `cubeid ca|svid|bundle ...` end to end against a throwaway SoftHSM2 token
# made by tests/mktoken: root init, node enrolment (csr, sign, install),
# SVID minting into files that `openssl verify` and `cubeid svid verify`
# accept, file modes, bundle output, and refusals with their exit codes.
set -u
builddir=${CUBEID_BUILDDIR:-.}
cubeid=$builddir/cli/cubeid
mktoken=$builddir/tests/mktoken

for tool in openssl grep; do
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
root=$D/root
node=$D/node
. "$(dirname "$0")/lib/tap.sh"
mode_of() { stat -c %a "$1"; }

check "ca init" 0 "$cubeid" ca init --trust-domain example.org "${T[@]}" --state-dir "$root"
check "ca init twice is refused" 1 "$cubeid" ca init --trust-domain example.org "${T[@]}" --state-dir "$root"
check "ca init needs a trust domain" 2 "$cubeid" ca init "${T[@]}" --state-dir "$D/x"
check "ca init refuses a bad ttl" 2 "$cubeid" ca init -d example.org --ttl 1y "${T[@]}" --state-dir "$D/x"
assert "state dir is 0700" [ "$(mode_of "$root")" = 700 ]
assert "ca.conf is 0600" [ "$(mode_of "$root/ca.conf")" = 600 ]
check "ca show" 0 "$cubeid" ca show "${T[@]}" --state-dir "$root"
assert "ca show says root" grep -q "role: *root" "$D/out"
check "ca csr" 0 "$cubeid" ca csr -d example.org "${T[@]}" --state-dir "$node" --out "$D/node.csr"
check "ca sign" 0 "$cubeid" ca sign --csr "$D/node.csr" --ttl 7d "${T[@]}" --state-dir "$root" --out "$D/node.pem"
check "ca install" 0 "$cubeid" ca install --cert "$D/node.pem" --bundle "$root/bundle.pem" "${T[@]}" --state-dir "$node"
check "ca show (intermediate)" 0 "$cubeid" ca show "${T[@]}" --state-dir "$node"
assert "ca show says intermediate" grep -q "role: *intermediate" "$D/out"
check "an intermediate signs no CA" 1 "$cubeid" ca sign --csr "$D/node.csr" "${T[@]}" --state-dir "$node"

check "svid mint" 0 "$cubeid" svid mint --spiffe-id spiffe://example.org/ns/a/sa/b --dns a.example.org --dns b.example.org --ttl 5m "${T[@]}" --state-dir "$node" --out "$D/svid"
assert "svid_key.pem is 0600" [ "$(mode_of "$D/svid/svid_key.pem")" = 600 ]
assert "svid.pem holds leaf and intermediate" [ "$(grep -c BEGIN "$D/svid/svid.pem")" = 2 ]
openssl x509 -in "$D/svid/svid.pem" -noout -ext subjectAltName >"$D/san" 2>&1
assert "both --dns names are in the leaf" grep -q "DNS:a.example.org, DNS:b.example.org" "$D/san"
# openssl verify -CAfile root -untrusted intermediate leaf
openssl x509 -in "$D/svid/svid.pem" -out "$D/leaf.pem"
awk 'n>=1{print} /END CERT/{n++}' "$D/svid/svid.pem" >"$D/int.pem"
check "openssl verifies the minted SVID" 0 openssl verify -CAfile "$D/svid/svid_bundle.pem" -untrusted "$D/int.pem" "$D/leaf.pem"
check "openssl: the key matches" 0 sh -c "[ \"\$(openssl x509 -in '$D/leaf.pem' -noout -pubkey)\" = \"\$(openssl pkey -in '$D/svid/svid_key.pem' -pubout)\" ]"
check "svid verify" 0 "$cubeid" svid verify "$D/svid/svid.pem" --bundle "$root/bundle.pem"
assert "svid verify prints the ID" grep -qx "spiffe://example.org/ns/a/sa/b" "$D/out"
check "svid verify against another trust domain is rejected (7)" 7 "$cubeid" svid verify "$D/svid/svid.pem" --bundle "$root/bundle.pem" -d other.org
check "svid verify of the leaf alone is rejected (7)" 7 "$cubeid" svid verify "$D/leaf.pem" --bundle "$root/bundle.pem"
check "svid mint refuses 1.5h" 2 "$cubeid" svid mint --spiffe-id spiffe://example.org/x --ttl 1.5h "${T[@]}" --state-dir "$node" --out "$D/y"
check "svid mint refuses another trust domain" 1 "$cubeid" svid mint --spiffe-id spiffe://other.org/x "${T[@]}" --state-dir "$node" --out "$D/y"
check "svid mint --resident" 0 "$cubeid" svid mint --spiffe-id spiffe://example.org/r --resident "${T[@]}" --state-dir "$node" --out "$D/res"
assert "resident: no key file" [ ! -e "$D/res/svid_key.pem" ]
assert "resident: prints the key URI" grep -q "^key: pkcs11:" "$D/out"

check "bundle show" 0 "$cubeid" bundle show --state-dir "$node"
assert "bundle show is the root" cmp -s "$D/out" "$root/bundle.pem"
check "bundle show --format spiffe" 0 "$cubeid" bundle show --format spiffe --state-dir "$node"
assert "spiffe bundle has an x509-svid key" grep -q '"use": *"x509-svid"' "$D/out"
check "bundle show --format jwks (root: ca init made a JWT key)" 0 "$cubeid" bundle show --format jwks --state-dir "$root"
assert "jwks has a jwt-svid key" grep -q '"use": *"jwt-svid"' "$D/out"
check "bundle show --format jwks (node: no JWT keys)" 4 "$cubeid" bundle show --format jwks --state-dir "$node"

echo "1..$n"
[ $fails -eq 0 ]
