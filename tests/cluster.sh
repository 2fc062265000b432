#!/bin/bash
# Trust across nodes (docs/cluster.md): three cubeid-agents on this machine,
# each with its own SoftHSM2 token and node intermediate enrolled from one
# root, sharing a file store:
#  - a JWT-SVID from agent 1 validates through agent 2's ValidateJWTSVID and
#    through go-spiffe (jwtsvid.ParseAndValidate) with agent 3's bundle
#    (FetchJWTBundles), and agent 2's JWKS file holds agent 1's key;
#  - a JWT key rotated on agent 1 is in agent 2's bundle while agent 1 still
#    signs with the old key, and tokens of the new key validate on agent 2;
#  - a node that leaves: its keys stay until its last publication expires,
#    then disappear;
#  - forged publications are refused: a node enrolled under another root,
#    and a valid node's signature over a payload with another key.
#
# Short lifetimes: JWT max_ttl 20 s, publications 30 s, refresh 1 s.
# Exit: 0 pass, 1 fail, 77 skip (no SoftHSM2; no Go outside CI).
set -u
builddir=${CUBEID_BUILDDIR:-.}
srcdir=${CUBEID_SRCDIR:-${srcdir:-$(cd "$(dirname "$0")/.." && pwd)}}
agent=$builddir/agent/cubeid-agent
cubeid=$builddir/cli/cubeid
mktoken=$builddir/tests/mktoken
peers=$srcdir/tests/lib/go-peers.sh

for t in python3 openssl; do
	command -v $t >/dev/null || { echo "FAIL: $t not found"; exit 1; }
done
checker=$(CUBEID_SRCDIR=$srcdir bash "$peers" path cubeid-interop)
rc=$?
if [ $rc -ne 0 ] || [ ! -x "$checker" ]; then
	if [ $rc -eq 3 ] && [ "${CI:-}" != true ]; then
		echo "SKIP: no usable Go to build the go-spiffe checker -- the cluster test did NOT run"
		exit 77
	fi
	echo "FAIL: could not build cubeid-interop (go-peers.sh exit $rc)"
	exit 1
fi

unset CUBEID_TOKEN CUBEID_PIN CUBEID_PIN_FILE CUBEID_PKCS11_MODULE CUBEID_STATE_DIR
D=$(mktemp -d /tmp/cubeid-cluster.XXXXXX) || exit 1
chmod 0755 "$D"
pids=()
tokdirs=()
cleanup() {
	local p
	for p in "${pids[@]}"; do
		[ -n "$p" ] && kill "$p" 2>/dev/null && wait "$p" 2>/dev/null
	done
	rm -rf "$D" "${tokdirs[@]}"
}
trap cleanup EXIT

fails=0
n=0
ok() { n=$((n + 1)); echo "ok $n - $1"; }
bad() { n=$((n + 1)); fails=$((fails + 1)); echo "not ok $n - $1"; }
finish() { echo "1..$n"; [ $fails -eq 0 ] && exit 0; exit 1; }

# three tokens: TOK_CONF[i], TOK_ARGS_i
declare -a TOK_CONF TOK_URI TOK_PIN
for i in 1 2 3 4; do # 4: the enrolment token of the single cluster PicoD key
	exports=$("$mktoken")
	rc=$?
	[ $rc -eq 77 ] && exit 77
	[ $rc -eq 0 ] || { echo "FAIL: tests/mktoken failed ($rc)"; exit 1; }
	eval "$exports"
	tokdirs+=("$CUBEID_T_DIR")
	TOK_CONF[i]=$SOFTHSM2_CONF
	TOK_URI[i]=$CUBEID_T_URI
	TOK_PIN[i]=$CUBEID_T_PIN_FILE
	MODULE=$CUBEID_T_MODULE
done
# cli I STATE ARGS...: cubeid on token I with state dir STATE
cli() {
	local i=$1 st=$2
	shift 2
	SOFTHSM2_CONF=${TOK_CONF[i]} "$cubeid" "$@" --token "${TOK_URI[i]}" --module "$MODULE" \
		--pin-file "${TOK_PIN[i]}" --state-dir "$st"
}
TD=example.org
S=$D/store
mkdir -p "$S"

# one root (in token 1), three node intermediates, one per token
if cli 1 "$D/root" ca init -d $TD -q >"$D/log" 2>&1; then ok "root CA"; else
	bad "root CA: $(cat "$D/log")"; finish; fi
for i in 1 2 3; do
	if cli $i "$D/n$i" ca csr -d $TD --out "$D/n$i.csr" >"$D/log" 2>&1 &&
		cli 1 "$D/root" ca sign --csr "$D/n$i.csr" --out "$D/n$i.pem" >>"$D/log" 2>&1 &&
		cli $i "$D/n$i" ca install --cert "$D/n$i.pem" --bundle "$D/root/bundle.pem" -q \
			>>"$D/log" 2>&1 &&
		cli $i "$D/n$i" ca jwt-rotate --max-ttl 20s -q >>"$D/log" 2>&1; then
		ok "node $i enrolled (intermediate in token $i, JWT key with max_ttl 20s)"
	else
		bad "enrolling node $i: $(cat "$D/log")"
		finish
	fi
done

cat >"$D/entries.yaml" <<EOF
entries:
  - name: me
    spiffe_id: spiffe://{td}/cluster-test
    selectors: [unix:uid:$(id -u)]
    picod_signer: true
EOF
start_agent() { # start_agent I
	local i=$1
	cat >"$D/agent$i.yaml" <<EOF
trust_domain: $TD
socket_path: $D/a$i.sock
state_dir: $D/n$i
token: "${TOK_URI[i]}"
pin_file: ${TOK_PIN[i]}
module: $MODULE
entries: $D/entries.yaml
jwt_svid_ttl: 15s
log_level: info
cluster:
  store: file
  dir: $S
  node: node$i
  refresh: 1s
  publication_ttl: 30s
  jwks_file: $D/n$i.jwks
  picod_jwks_file: $D/n$i.picod.jwks
EOF
	[ "$i" = 2 ] && echo "http_address: 127.0.0.1:0" >>"$D/agent$i.yaml"
	SOFTHSM2_CONF=${TOK_CONF[i]} "$agent" --config "$D/agent$i.yaml" \
		>"$D/agent$i.out" 2>"$D/agent$i.err" &
	pids[i]=$!
}
for i in 1 2 3; do start_agent $i; done

kid_of_token() { # the kid in a JWT's header
	python3 - "$1" <<'EOF'
import base64, json, sys
h = sys.argv[1].split(".")[0]
print(json.loads(base64.urlsafe_b64decode(h + "=" * (-len(h) % 4)))["kid"])
EOF
}
bundle_kids() { # bundle_kids I: the kids agent I serves (FetchJWTBundles); fails if it cannot
	"$cubeid" bundle fetch --format jwks --socket "$D/a$1.sock" >"$D/bundle$1.json" 2>"$D/bundle$1.err" ||
		return 1
	python3 -c 'import json,sys; print("\n".join(sorted(k["kid"] for k in json.load(open(sys.argv[1]))["keys"])))' \
		"$D/bundle$1.json" 2>>"$D/bundle$1.err"
}
local_kids() { # local_kids I: node I's own published JWT keys
	cli $1 "$D/n$1" ca jwt-keys --no-headers 2>/dev/null | awk '$3 != "retired" {print $1}' | sort
}
wait_for() { # wait_for SECONDS CMD...: poll until CMD succeeds
	local end=$(($(date +%s) + $1))
	shift
	while [ "$(date +%s)" -lt "$end" ]; do
		"$@" && return 0
		sleep 0.3
	done
	return 1
}
all_kids() { local_kids 1; local_kids 2; local_kids 3; }
has_all() { [ "$(bundle_kids "$1")" = "$(all_kids | sort)" ]; }

for i in 1 2 3; do
	if wait_for 120 has_all $i; then
		ok "agent $i serves the keys of all three nodes"
	else
		bad "agent $i serves [$(bundle_kids $i | tr '\n' ' ')], want [$(all_kids | tr '\n' ' ')]: $(tail -5 "$D/agent$i.err")"
	fi
done
k1=$(local_kids 1)
if "$cubeid" status show -o json --socket "$D/a1.sock" >"$D/status.json" 2>"$D/log" &&
	python3 -c 'import json,sys; c=json.load(open(sys.argv[1]))["cluster"]; sys.exit(0 if c["store"] == "file" and c["node"] == "node1" and c["nodes"] == 2 and c["jwt_keys"] == 2 else 1)' "$D/status.json"; then
	ok "cubeid status: agent 1 reads 2 other nodes from the file store"
else
	bad "status: $(cat "$D/status.json" "$D/log")"
fi
# agent 2's SPIFFE bundle endpoint (the one Keycloak reads) and its JWKS
url=$(sed -n 's|.* on http://\([0-9.:]*\).*|\1|p' "$D/agent2.err" | head -1)
endpoint_has() { # endpoint_has PATH USE: node 1's key is in the document at PATH
	python3 - "http://$url$1" "$k1" "$2" <<'EOF'
import json, sys, urllib.request
doc = json.load(urllib.request.urlopen(sys.argv[1], timeout=30))
keys = [k for k in doc["keys"] if k.get("kid") == sys.argv[2] and k.get("use") == sys.argv[3]]
sys.exit(0 if keys else 1)
EOF
}
if [ -n "$url" ] && endpoint_has /spiffe/bundle jwt-svid 2>"$D/log" && endpoint_has /keycloak/jwks sig 2>>"$D/log"; then
	ok "agent 2's /spiffe/bundle and /keycloak/jwks carry node 1's key"
else
	bad "agent 2's HTTP endpoints ($url): $(cat "$D/log")"
fi
if ! local_kids 2 | grep -qx -- "$k1" && grep -q -- "\"$k1\"" "$D/n2.jwks"; then
	ok "agent 2's JWKS file holds node 1's key, which is not in node 2's own jwt.conf"
else
	bad "n2.jwks: $(cat "$D/n2.jwks" 2>&1)"
fi

# a JWT-SVID from agent 1, validated by agent 2 and by go-spiffe with agent 3's bundle
tok=$("$cubeid" jwt fetch --aud svc-a --socket "$D/a1.sock" 2>"$D/log")
if [ -n "$tok" ] && [ "$(kid_of_token "$tok")" = "$k1" ]; then
	ok "agent 1 issues a JWT-SVID signed with node 1's key"
else
	bad "jwt fetch from agent 1: $(cat "$D/log")"
fi
if "$cubeid" jwt validate "$tok" --aud svc-a --socket "$D/a2.sock" >"$D/out" 2>&1 &&
	grep -q "spiffe://$TD/cluster-test" "$D/out"; then
	ok "agent 2's ValidateJWTSVID accepts agent 1's JWT-SVID"
else
	bad "agent 2 ValidateJWTSVID: $(cat "$D/out")"
fi
if "$checker" workload validate-local --socket "unix://$D/a3.sock" --token "$tok" --aud svc-a \
	>"$D/out" 2>&1 && grep -q "spiffe://$TD/cluster-test" "$D/out"; then
	ok "go-spiffe validates agent 1's JWT-SVID with agent 3's FetchJWTBundles"
else
	bad "go-spiffe with agent 3's bundle: $(cat "$D/out")"
fi
if ! "$cubeid" jwt validate "$tok" --aud other --socket "$D/a2.sock" >"$D/out" 2>&1; then
	ok "agent 2 still checks the audience"
else
	bad "agent 2 accepted a wrong audience"
fi

# PicoD, the JWKS-aware path: a token minted on agent 1 is accepted by
# libcubeid's PicoD verifier fed agent 3's cluster PicoD JWKS file
ptok=$("$cubeid" picod token --session s1 --sandbox sb1 --socket "$D/a1.sock" 2>"$D/log")
pkid=$([ -n "$ptok" ] && kid_of_token "$ptok")
if [ -n "$pkid" ]; then ok "agent 1 mints a PicoD token (kid $pkid)"; else
	bad "picod token from agent 1: $(cat "$D/log")"; fi
picod_seen() { grep -q -- "\"$pkid\"" "$D/n3.picod.jwks" 2>/dev/null; }
if [ -n "$pkid" ] && wait_for 60 picod_seen; then
	ok "agent 1's PicoD key reaches agent 3's picod_jwks_file"
else
	bad "agent 3's PicoD JWKS: $(cat "$D/n3.picod.jwks" 2>&1)"
fi
if "$cubeid" picod verify "$ptok" --sandbox sb1 --session s1 --jwks "$D/n3.picod.jwks" \
	>"$D/out" 2>&1 && grep -q '"session_id": *"s1"' "$D/out"; then
	ok "the JWKS-aware PicoD verifier with agent 3's view accepts agent 1's token"
else
	bad "picod verify with agent 3's JWKS: $(cat "$D/out")"
fi
"$cubeid" picod public-key --format jwks --socket "$D/a3.sock" >"$D/a3-own.jwks" 2>/dev/null
if [ -s "$D/a3-own.jwks" ] &&
	! "$cubeid" picod verify "$ptok" --sandbox sb1 --jwks "$D/a3-own.jwks" >"$D/out" 2>&1 &&
	grep -q "key id missing or unknown" "$D/out"; then
	ok "agent 3's own PicoD key alone does not verify it (the cluster view is what does)"
else
	bad "agent 3's own key: $(cat "$D/out")"
fi
if ! "$cubeid" picod verify "$ptok" --sandbox sb2 --jwks "$D/n3.picod.jwks" >"$D/out" 2>&1; then
	ok "a token for sandbox sb1 is refused by sandbox sb2"
else
	bad "cross-sandbox replay was accepted"
fi

# PicoD, the single-key path (today's PicoD): one cluster key generated in
# the enrolment token, wrapped inside it for each node's wrapping key, and
# unwrapped inside each node's token, non-extractable
if cli 4 "$D/enrol" picod cluster-key create --out "$D/cluster-picod.pem" >"$D/log" 2>&1; then
	ok "the cluster PicoD key is generated in the enrolment token"
else
	bad "cluster-key create: $(cat "$D/log")"
fi
for i in 1 2 3; do
	if cli $i "$D/n$i" picod wrapping-key --out "$D/wrap$i.pem" >"$D/log" 2>&1 &&
		cli 4 "$D/enrol" picod cluster-key export-wrapped --to "$D/wrap$i.pem" \
			--out "$D/wrapped$i.json" >>"$D/log" 2>&1 &&
		cli $i "$D/n$i" picod cluster-key import-wrapped "$D/wrapped$i.json" -q >>"$D/log" 2>&1; then
		ok "node $i: wrapping key in its token, the cluster key wrapped for it and unwrapped into it"
	else
		bad "node $i single-key import: $(cat "$D/log")"
	fi
	kill -HUP "${pids[i]}"
done
ckid=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["kid"])' "$D/wrapped1.json" 2>/dev/null)
if ! cli 3 "$D/n3" picod cluster-key import-wrapped "$D/wrapped1.json" >"$D/log" 2>&1 &&
	grep -q "not this node's" "$D/log"; then
	ok "node 1's wrapped key does not open in node 3's token"
else
	bad "cross import: $(cat "$D/log")"
fi
for i in 1 3; do
	signs_cluster() {
		local t
		t=$("$cubeid" picod token --session "s$i-$RANDOM" --sandbox sb1 --socket "$D/a$i.sock" 2>/dev/null) &&
			[ "$(kid_of_token "$t")" = "$ckid" ] && printf '%s' "$t" >"$D/ctok$i"
	}
	if [ -n "$ckid" ] && wait_for 60 signs_cluster &&
		"$cubeid" picod verify "$(cat "$D/ctok$i")" --sandbox sb1 \
			--public-key "$D/cluster-picod.pem" >"$D/out" 2>&1; then
		ok "agent $i signs with the cluster key; one PEM (PICOD_AUTH_PUBLIC_KEY) verifies it"
	else
		bad "agent $i with the cluster key: $(cat "$D/out" 2>&1; tail -3 "$D/agent$i.err")"
	fi
done

# forged publications
#  (a) a node enrolled under another root (token 2, its own root)
if cli 2 "$D/evilroot" ca init -d $TD -q >"$D/log" 2>&1 &&
	cli 2 "$D/evil" ca csr -d $TD --out "$D/evil.csr" >>"$D/log" 2>&1 &&
	cli 2 "$D/evilroot" ca sign --csr "$D/evil.csr" --out "$D/evil.pem" >>"$D/log" 2>&1 &&
	cli 2 "$D/evil" ca install --cert "$D/evil.pem" --bundle "$D/evilroot/bundle.pem" -q \
		>>"$D/log" 2>&1 &&
	cli 2 "$D/evil" ca jwt-rotate --max-ttl 20s -q >>"$D/log" 2>&1 &&
	cli 2 "$D/evil" cluster publish --node evil --store-dir "$S" -q >>"$D/log" 2>&1; then
	ok "an impostor under another root writes a publication to the store"
else
	bad "impostor set-up: $(cat "$D/log")"
fi
kevil=$(cli 2 "$D/evil" ca jwt-keys --no-headers 2>/dev/null | awk '{print $1}')
#  (b) node 2's valid signature over a payload that carries the impostor's key
python3 - "$S/node2.jws" "$S/evil.jws" "$S/node9.jws" <<'EOF'
import base64, json, sys
def dec(s): return json.loads(base64.urlsafe_b64decode(s + "=" * (-len(s) % 4)))
def enc(o): return base64.urlsafe_b64encode(json.dumps(o, separators=(",", ":")).encode()).rstrip(b"=").decode()
h, p, s = open(sys.argv[1]).read().strip().split(".")
evil = dec(open(sys.argv[2]).read().strip().split(".")[1])
body = dec(p)
body["keys"] = evil["keys"]
body["node"] = "node9"
open(sys.argv[3], "w").write(h + "." + enc(body) + "." + s + "\n")
EOF
sleep 3 # several syncs
for i in 1 2 3; do
	if [ -n "$kevil" ] && k=$(bundle_kids $i) && ! printf '%s\n' "$k" | grep -x -- "$kevil" >/dev/null; then
		ok "agent $i refuses the forged keys"
	else
		bad "agent $i serves the impostor's kid $kevil"
	fi
done
if grep -q "refusing the publication of node evil" "$D/agent1.err" &&
	grep -q "refusing the publication of node node9: the signature does not verify" "$D/agent1.err"; then
	ok "agent 1 logs both refusals, with why"
else
	bad "agent 1's log: $(grep -i refus "$D/agent1.err" | head -5)"
fi
cli 1 "$D/n1" cluster show --store-dir "$S" --bundle "$D/root/bundle.pem" >"$D/out" 2>&1
rc=$?
if [ $rc -eq 1 ] && grep -q "node evil: REFUSED" "$D/out" && grep -q "node node9: REFUSED" "$D/out" &&
	grep -q "node node1: valid" "$D/out"; then
	ok "cubeid cluster show: the three nodes valid, both forgeries refused (exit 1)"
else
	bad "cluster show (exit $rc): $(cat "$D/out")"
fi
evtok=$(cli 2 "$D/evil" jwt mint --spiffe-id spiffe://$TD/cluster-test --aud svc-a --ttl 10s 2>"$D/log")
if [ -n "$evtok" ] && ! "$cubeid" jwt validate "$evtok" --aud svc-a --socket "$D/a1.sock" >"$D/out" 2>&1; then
	ok "agent 1 rejects a JWT-SVID signed by the impostor's key"
else
	bad "impostor's token: $(cat "$D/log" "$D/out")"
fi
rm -f "$S/evil.jws" "$S/node9.jws"

# rotation: the new key reaches agent 2 before agent 1 signs with it
if cli 1 "$D/n1" ca jwt-rotate --prepublish 40s -q >"$D/log" 2>&1; then
	ok "node 1 rotates its JWT key (prepublish 40s)"
else
	bad "jwt-rotate: $(cat "$D/log")"
fi
knew=$(cli 1 "$D/n1" ca jwt-keys --no-headers | awk '$3 == "pending" {print $1}')
active_from=$(cli 1 "$D/n1" ca jwt-keys -o json | jq -r '.keys[] | select(.state == "pending") | .active_from')
[ -n "$active_from" ] && active_from=$(date -d "$active_from" +%s)
kill -HUP "${pids[1]}"
has_new() { bundle_kids 2 | grep -x -- "$knew" >/dev/null; }
if [ -n "$knew" ] && wait_for 60 has_new; then
	seen=$(date +%s)
	ok "agent 2 serves node 1's new key $knew"
	if [ "$seen" -lt "$active_from" ]; then
		ok "... before it signs anything (seen at $seen, signs from $active_from)"
	else
		bad "agent 2 saw the new key only at $seen, after it began signing at $active_from"
	fi
	t2=$("$cubeid" jwt fetch --aud svc-b --socket "$D/a1.sock" 2>/dev/null)
	if [ "$(date +%s)" -lt "$active_from" ] && [ "$(kid_of_token "$t2")" = "$k1" ]; then
		ok "meanwhile agent 1 still signs with the old key"
	elif [ "$(date +%s)" -ge "$active_from" ]; then
		ok "# SKIP the old-key check: the machine was too slow to look before $active_from"
	else
		bad "agent 1 signed with $(kid_of_token "$t2") before the new key's time"
	fi
else
	bad "agent 2 never served the new key '$knew': $(tail -5 "$D/agent2.err")"
fi
now=$(date +%s)
[ "$now" -lt "$active_from" ] && sleep $((active_from - now + 1))
t3=$("$cubeid" jwt fetch --aud svc-c --socket "$D/a1.sock" 2>/dev/null)
if [ "$(kid_of_token "$t3")" = "$knew" ] &&
	"$cubeid" jwt validate "$t3" --aud svc-c --socket "$D/a2.sock" >"$D/out" 2>&1; then
	ok "after its prepublish time the new key signs, and agent 2 accepts its tokens"
else
	bad "new key token ($(kid_of_token "$t3")): $(cat "$D/out")"
fi

# a node that leaves: its keys stay until its publication expires, then go.
# Agent 1 can only keep what it has read: node 3 is stopped first (so that
# it publishes no more), its last publication's expiry is read, and agent
# 1 must have synced after that before node 3 leaves the store.  (Reading
# the expiry while node 3 still ran let it republish just before the
# kill, under ASan faster than agent 1 read it: agent 1 then rightly
# dropped the keys when the publication it had seen expired, 15 s before
# the file's.)
k3=$(local_kids 3)
kill "${pids[3]}" && wait "${pids[3]}" 2>/dev/null
pids[3]=
exp3=$(cli 1 "$D/n1" cluster verify "$S/node3.jws" --bundle "$D/root/bundle.pem" -o json \
	2>/dev/null | jq -r '.expires // empty')
[ -n "$exp3" ] && exp3=$(date -d "$exp3" +%s)
seen3=$(date +%s)
synced1() { # agent 1 finished a sync well after node 3 stopped (whole seconds;
	# a sync takes far less than the 2 s margin, so this one began after it)
	local t
	t=$("$cubeid" status -o json --socket "$D/a1.sock" 2>/dev/null | jq -r '.cluster.last_sync // 0')
	[ "${t:-0}" -gt $((seen3 + 2)) ]
}
wait_for 60 synced1 || bad "agent 1 did not sync after node 3 stopped"
if cli 1 "$D/n1" cluster leave --node node3 --store-dir "$S" -q >"$D/log" 2>&1 &&
	[ ! -e "$S/node3.jws" ]; then
	ok "node 3 stops and leaves the store"
else
	bad "cluster leave: $(cat "$D/log")"
fi
gone3() { local k; k=$(bundle_kids 1) && ! printf '%s\n' "$k" | grep -x -- "$k3" >/dev/null; }
if [ -n "$exp3" ] && wait_for $((exp3 - $(date +%s) + 90)) gone3; then
	gone_at=$(date +%s)
	ok "node 3's key left agent 1's bundle"
	if [ "$gone_at" -ge "$exp3" ]; then
		ok "... not before its last publication expired ($gone_at >= $exp3)"
	else
		bad "node 3's key was dropped at $gone_at, before its publication expired at $exp3"
	fi
else
	bad "node 3's key $k3 is still served by agent 1 (publication expiry '$exp3')"
fi
if wait_for 30 bundle_kids 1 >/dev/null && bundle_kids 1 | grep -x -- "$(local_kids 2 | head -1)" >/dev/null; then
	ok "node 2's key is still there"
else
	bad "node 2's key vanished from agent 1: $(cat "$D/bundle1.err"; tail -5 "$D/agent1.err")"
fi

for i in 1 2; do
	kill -TERM "${pids[i]}"
	wait "${pids[i]}"
	rc=$?
	pids[i]=
	[ $rc -eq 0 ] && ok "agent $i stops cleanly" || bad "agent $i exit $rc: $(tail -3 "$D/agent$i.err")"
done
finish
