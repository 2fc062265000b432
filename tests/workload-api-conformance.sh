#!/bin/bash
# The SPIFFE Workload API and Workload Endpoint rules that no client library
# checks for us, asked of cubeid-agent --dev with grpcurl (a generic gRPC
# client: it sends exactly what it is told, where go-spiffe and py-spiffe
# always add the security header and an audience).  docs/workload-api.md
# cites each check by its name here.
#   - the security header: missing or not exactly "true" is InvalidArgument,
#     on every RPC;
#   - FetchJWTSVID: an audience is required; a spiffe_id the caller does not
#     hold is PermissionDenied; the JWT-SVID's header and claims;
#   - ValidateJWTSVID: audience and svid are required; a wrong audience is
#     InvalidArgument; the claims come back;
#   - FetchWITSVID and FetchWITBundles are Unimplemented;
#   - a caller with no identity (nobody, when we are root) is
#     PermissionDenied on all four profile RPCs.
# grpcurl exits 64 + the gRPC status code on an error status.
#
# Exit: 0 pass, 1 fail, 77 skip (no usable Go outside CI; with CI=true a
# missing peer is a failure).
set -u
builddir=${CUBEID_BUILDDIR:-.}
srcdir=${CUBEID_SRCDIR:-${srcdir:-$(cd "$(dirname "$0")/.." && pwd)}}
agent=$builddir/agent/cubeid-agent
cubeid=$builddir/cli/cubeid

skip_or_fail() {
	echo "=================================================================="
	if [ "${CI:-}" = true ]; then
		echo "FAIL (CI=true): $*"
		echo "=================================================================="
		exit 1
	fi
	echo "SKIP: $* -- the Workload API conformance tests did NOT run"
	echo "=================================================================="
	exit 77
}

grpcurl=$(CUBEID_SRCDIR=$srcdir bash "$srcdir/tests/lib/go-peers.sh" path grpcurl)
rc=$?
[ $rc -eq 3 ] && skip_or_fail "no usable Go to build grpcurl (go-peers.sh exit 3)"
[ $rc -eq 0 ] && [ -x "$grpcurl" ] || { echo "FAIL: could not build grpcurl (go-peers.sh exit $rc)"; exit 1; }

[ -n "${CUBEID_SOFTHSM_MODULE:-}" ] && export CUBEID_PKCS11_MODULE=$CUBEID_SOFTHSM_MODULE
unset CUBEID_TOKEN CUBEID_PIN CUBEID_PIN_FILE CUBEID_STATE_DIR
D=$(mktemp -d /tmp/cubeid-wapi-conf.XXXXXX) || exit 1
chmod 0755 "$D" # another uid must reach the socket (and grpcurl's copy)
pid=
cleanup() {
	[ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
	rm -rf "$D"
}
trap cleanup EXIT
S=$D/agent.sock
want="spiffe://cluster.local/unix/uid/$(id -u)"
. "$(dirname "$0")/lib/tap.sh"

# beside the dev identity: two entries that share a hint, and one more
cat >"$D/entries.yaml" <<EOF
entries:
  - name: hint-a
    spiffe_id: spiffe://{td}/hint/a/{unix:uid}
    selectors: [unix:uid:$(id -u)]
    hint: same
  - name: hint-b
    spiffe_id: spiffe://{td}/hint/b/{unix:uid}
    selectors: [unix:uid:$(id -u)]
    hint: same
  - name: hint-c
    spiffe_id: spiffe://{td}/hint/c/{unix:uid}
    selectors: [unix:uid:$(id -u)]
    hint: other
EOF
"$agent" --dev --entries "$D/entries.yaml" --state-dir "$D/state" --socket "$S" \
	>"$D/agent.out" 2>"$D/agent.err" &
pid=$!
for _ in $(seq 1 300); do
	[ -S "$S" ] && "$cubeid" status --socket "$S" >/dev/null 2>&1 && break
	kill -0 "$pid" 2>/dev/null || break
	sleep 0.1
done
[ -S "$S" ] && ok "cubeid-agent --dev is up" || bad "cubeid-agent did not start: $(tail -5 "$D/agent.err")"

# g [grpcurl flags...] METHOD: call SpiffeWorkloadAPI/METHOD on the agent.
# Streams are answered or refused before grpcurl's deadline; an answered
# stream stays open, so only refusals are asked of streams here.
g() {
	local m=${*: -1}
	timeout 60 "$grpcurl" -plaintext -max-time 50 "${@:1:$#-1}" "unix://$S" "SpiffeWorkloadAPI/$m"
}
H=(-H workload.spiffe.io:true)

# --- the security header (Workload Endpoint 6) -----------------------------
for m in FetchX509SVID FetchX509Bundles FetchJWTSVID FetchJWTBundles ValidateJWTSVID; do
	d='{}'
	[ $m = FetchJWTSVID ] && d='{"audience":["x"]}'
	[ $m = ValidateJWTSVID ] && d='{"audience":"x","svid":"a.b.c"}'
	check "$m without the security header: InvalidArgument" 67 g -d "$d" $m
	check "$m with workload.spiffe.io: True (case matters): InvalidArgument" 67 \
		g -H workload.spiffe.io:True -d "$d" $m
	check "$m with workload.spiffe.io: 1: InvalidArgument" 67 g -H workload.spiffe.io:1 -d "$d" $m
done

# --- FetchJWTSVID (Workload API 6.2.1; JWT-SVID 2, 3) ----------------------
check "FetchJWTSVID without an audience: InvalidArgument" 67 g "${H[@]}" -d '{}' FetchJWTSVID
check "FetchJWTSVID with an empty audience: InvalidArgument" 67 \
	g "${H[@]}" -d '{"audience":[""]}' FetchJWTSVID
check "FetchJWTSVID for a spiffe_id the caller does not hold: PermissionDenied" 71 \
	g "${H[@]}" -d '{"audience":["x"],"spiffeId":"spiffe://cluster.local/not/mine"}' FetchJWTSVID
check "FetchJWTSVID for the caller's own spiffe_id" 0 \
	g "${H[@]}" -d "{\"audience\":[\"x\"],\"spiffeId\":\"$want\"}" FetchJWTSVID
assert "returns that identity" grep -qF "\"spiffeId\": \"$want\"" "$D/out"
check "FetchJWTSVID without spiffe_id: one JWT-SVID per identity" 0 \
	g "${H[@]}" -d '{"audience":["x"]}' FetchJWTSVID
assert "four identities, four tokens" test "$(grep -c '"svid":' "$D/out")" -eq 4
check "FetchJWTSVID with two audiences" 0 \
	g "${H[@]}" -d "{\"audience\":[\"aud-1\",\"aud-2\"],\"spiffeId\":\"$want\"}" FetchJWTSVID
jwt=$(sed -n 's/.*"svid": "\([^"]*\)".*/\1/p' "$D/out" | head -n1)
b64d() { # base64url without padding, decoded
	local s
	s=$(printf '%s' "$1" | tr '_-' '/+')
	while [ $((${#s} % 4)) -ne 0 ]; do s="$s="; done
	printf '%s' "$s" | base64 -d 2>/dev/null
}
hdr=$(b64d "${jwt%%.*}")
pl=$(b64d "$(echo "$jwt" | cut -d. -f2)")
echo "# header $hdr"
echo "# payload $pl"
assert "the JWT-SVID is compact JWS (three parts)" test "$(printf '%s' "$jwt" | tr -cd . | wc -c)" -eq 2
assert "its alg is ES256/384/512, RS* or PS* (RFC 7518 3.3-3.5)" \
	python3 -c 'import json,sys; h=json.loads(sys.argv[1]); sys.exit(h["alg"] not in ("RS256","RS384","RS512","ES256","ES384","ES512","PS256","PS384","PS512"))' "$hdr"
assert "its header has a kid and typ JWT, and nothing else" \
	python3 -c 'import json,sys; h=json.loads(sys.argv[1]); sys.exit(not (h.get("kid") and h.get("typ") == "JWT" and set(h) <= {"alg","kid","typ"}))' "$hdr"
assert "its sub is the caller's SPIFFE ID" \
	python3 -c 'import json,sys; p=json.loads(sys.argv[1]); sys.exit(p["sub"] != sys.argv[2])' "$pl" "$want"
assert "its aud holds both audiences" \
	python3 -c 'import json,sys; p=json.loads(sys.argv[1]); sys.exit(sorted(p["aud"]) != ["aud-1","aud-2"])' "$pl"
assert "it has exp" python3 -c 'import json,sys; p=json.loads(sys.argv[1]); sys.exit(not isinstance(p.get("exp"), int))' "$pl"

# --- ValidateJWTSVID (Workload API 6.2.3) ---------------------------------
check "ValidateJWTSVID without an audience: InvalidArgument" 67 \
	g "${H[@]}" -d "{\"svid\":\"$jwt\"}" ValidateJWTSVID
check "ValidateJWTSVID without an svid: InvalidArgument" 67 \
	g "${H[@]}" -d '{"audience":"aud-1"}' ValidateJWTSVID
check "ValidateJWTSVID for an audience not in aud: InvalidArgument" 67 \
	g "${H[@]}" -d "{\"audience\":\"aud-3\",\"svid\":\"$jwt\"}" ValidateJWTSVID
check "ValidateJWTSVID for aud-2" 0 g "${H[@]}" -d "{\"audience\":\"aud-2\",\"svid\":\"$jwt\"}" ValidateJWTSVID
assert "returns the SPIFFE ID" grep -qF "\"spiffeId\": \"$want\"" "$D/out"
assert "and the SPIFFE claims (sub, aud, exp)" \
	python3 -c 'import json,sys; c=json.load(open(sys.argv[1]))["claims"]; sys.exit(not {"sub","aud","exp"} <= set(c))' "$D/out"

# --- the first message of each stream (Workload API 4.3, 5.2, 6.2) --------
# first METHOD: the stream's first message (JSON) in $D/first.json; grpcurl
# is stopped once a whole message is out, or fails the check after 60 s.
first() {
	local gp
	: >"$D/first.json"
	"$grpcurl" -plaintext -H workload.spiffe.io:true -d '{}' "unix://$S" "SpiffeWorkloadAPI/$1" \
		>"$D/first.json" 2>"$D/first.err" &
	gp=$!
	for _ in $(seq 1 600); do
		grep -q '^}' "$D/first.json" && break
		kill -0 $gp 2>/dev/null || break
		sleep 0.1
	done
	kill $gp 2>/dev/null
	wait $gp 2>/dev/null
	sed -i '/^}/q' "$D/first.json"
	grep -q '^}' "$D/first.json"
}
# py FILE CODE: run CODE with m = the JSON message in FILE, b64 = base64 decode
py() {
	python3 -c "import base64,json,sys,subprocess
m=json.load(open(sys.argv[1])); b64=base64.b64decode
$2" "$1"
}
assert "FetchX509SVID sends a first message" first FetchX509SVID
assert "it holds the caller's four X.509-SVIDs" py "$D/first.json" \
	"sys.exit(len(m['svids']) != 4 or '$want' not in [s['spiffeId'] for s in m['svids']])"
assert "hints are unique among its SVIDs (two entries share one)" py "$D/first.json" \
	"h=[s.get('hint','') for s in m['svids'] if s.get('hint')]; sys.exit(len(h) != len(set(h)) or sorted(h) != ['other','same'])"
py "$D/first.json" "s=m['svids'][0]
open(sys.argv[1]+'.chain','wb').write(b64(s['x509Svid']))
open(sys.argv[1]+'.key','wb').write(b64(s['x509SvidKey']))
open(sys.argv[1]+'.bundle','wb').write(b64(s['bundle']))
open(sys.argv[1]+'.id','w').write(s['spiffeId'])"
assert "x509_svid_key is unencrypted PKCS#8 (DER)" \
	openssl pkey -inform DER -in "$D/first.json.key" -noout
assert "x509_svid starts with the leaf: its URI SAN is the SPIFFE ID" bash -c \
	'openssl x509 -inform DER -in "$1" -noout -ext subjectAltName | grep -qF "URI:$2"' _ \
	"$D/first.json.chain" "$(cat "$D/first.json.id")"
assert "the leaf's public key is the key's" bash -c \
	'[ "$(openssl x509 -inform DER -in "$1" -noout -pubkey)" = "$(openssl pkey -inform DER -in "$2" -pubout)" ]' \
	_ "$D/first.json.chain" "$D/first.json.key"
assert "its bundle is a CA certificate (DER)" bash -c \
	'openssl x509 -inform DER -in "$1" -noout -ext basicConstraints | grep -q "CA:TRUE"' _ \
	"$D/first.json.bundle"

assert "FetchX509Bundles sends a first message" first FetchX509Bundles
assert "it holds the bundle of the agent's trust domain" py "$D/first.json" \
	"sys.exit('spiffe://cluster.local' not in m['bundles'] and 'cluster.local' not in m['bundles'])"

assert "FetchJWTBundles sends a first message" first FetchJWTBundles
assert "it holds the JWKS of the agent's trust domain" py "$D/first.json" \
	"b=m['bundles']; k=[k for k in b if k in ('spiffe://cluster.local','cluster.local')]; sys.exit(not k)"
assert "every key in it has use jwt-svid and a kid" py "$D/first.json" \
	"ks=[k for v in m['bundles'].values() for k in json.loads(b64(v))['keys']]; sys.exit(not ks or any(k.get('use') != 'jwt-svid' or not k.get('kid') for k in ks))"

# --- the WIT-SVID profile (Workload API 7) --------------------------------
check "FetchWITSVID: Unimplemented" 76 g "${H[@]}" -d '{}' FetchWITSVID
check "FetchWITBundles: Unimplemented" 76 g "${H[@]}" -d '{}' FetchWITBundles

# --- a caller with no identity (Workload Endpoint 6) ----------------------
if [ "$(id -u)" -eq 0 ] && command -v setpriv >/dev/null && id nobody >/dev/null 2>&1; then
	cp "$grpcurl" "$D/grpcurl" && chmod 0755 "$D/grpcurl"
	grpcurl=$D/grpcurl
	nb() { HOME=/ setpriv --reuid=nobody --regid="$(id -g nobody)" --clear-groups "$@"; }
	for m in FetchX509SVID FetchX509Bundles FetchJWTBundles; do
		check "no identity: $m is PermissionDenied" 71 nb bash -c \
			'timeout 60 "$0" -plaintext -max-time 50 -H workload.spiffe.io:true -d "{}" "$1" "SpiffeWorkloadAPI/$2"' \
			"$grpcurl" "unix://$S" $m
	done
	check "no identity: FetchJWTSVID is PermissionDenied" 71 nb "$grpcurl" -plaintext \
		-H workload.spiffe.io:true -d '{"audience":["x"]}' "unix://$S" SpiffeWorkloadAPI/FetchJWTSVID
	check "no identity: ValidateJWTSVID still validates (no identity needed)" 0 nb "$grpcurl" \
		-plaintext -H workload.spiffe.io:true -d "{\"audience\":\"aud-1\",\"svid\":\"$jwt\"}" \
		"unix://$S" SpiffeWorkloadAPI/ValidateJWTSVID
	check "no identity: reflection still lists the services" 0 nb "$grpcurl" -plaintext \
		"unix://$S" list
else
	echo "# not root (or no setpriv): the no-identity checks did not run"
fi

if grep -q "grpc: reset stream\|grpc: ending the connection" "$D/agent.err"; then
	bad "the agent reset a stream or connection"
	grep "grpc: " "$D/agent.err" | head -5 | sed 's/^/#   /'
else
	ok "the agent reset no stream"
fi
echo "1..$n"
[ "$fails" -eq 0 ]
