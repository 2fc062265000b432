#!/bin/bash
# cubeid-agent --check checks what start checks (issue 16, defect 4), on a
# throwaway SoftHSM2 token (tests/mktoken) with a root CA made by the CLI.
# Each of these is a failure with its own message, where --check said "ok"
# before:
#   - a CA for another trust domain;
#   - an expired CA;
#   - a token that cannot be reached: a module that does not load, a token
#     that is not there, a wrong PIN;
#   - zero registration entries.
# And a PIN file others can read is refused at start as by --check (also
# one named by $CUBEID_PIN_FILE); --check --offline checks the files only.
set -u
builddir=${CUBEID_BUILDDIR:-.}
cubeid=$builddir/cli/cubeid
agent=$builddir/agent/cubeid-agent
mktoken=$builddir/tests/mktoken

for tool in openssl grep; do
	if ! command -v "$tool" >/dev/null 2>&1; then
		echo "SKIP: $tool not found"
		exit 77
	fi
done
exports=$("$mktoken")
rc=$?
[ $rc -eq 77 ] && exit 77
[ $rc -eq 0 ] || { echo "FAIL: tests/mktoken failed ($rc)" >&2; exit 1; }
eval "$exports"
unset CUBEID_TOKEN CUBEID_PIN CUBEID_PIN_FILE CUBEID_PKCS11_MODULE CUBEID_STATE_DIR SPIFFE_ENDPOINT_SOCKET
D=$CUBEID_T_DIR
pid=
cleanup() {
	[ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
	rm -rf "$D"
}
trap cleanup EXIT
state=$D/state
. "$(dirname "$0")/lib/tap.sh"

check "ca init" 0 "$cubeid" ca init --trust-domain cluster.local --token "$CUBEID_T_URI" \
	--module "$CUBEID_T_MODULE" --pin-file "$CUBEID_T_PIN_FILE" --state-dir "$state"
printf 'entries:\n  - name: x\n    spiffe_id: spiffe://{td}/x\n    selectors: [unix:uid:1]\n' \
	>"$D/entries.yaml"
printf 'entries: []\n' >"$D/none.yaml"
chmod 0600 "$CUBEID_T_PIN_FILE"
# conf NAME KEY=VALUE...: a config file D/NAME.yaml from the good one with
# the keys given replaced
conf() {
	local name=$1 kv k v
	shift
	declare -A c=([trust_domain]=cluster.local [state_dir]=$state [token]=$CUBEID_T_URI
		[module]=$CUBEID_T_MODULE [pin_file]=$CUBEID_T_PIN_FILE
		[entries]=$D/entries.yaml [socket_path]=$D/run/agent.sock)
	for kv in "$@"; do
		k=${kv%%=*} v=${kv#*=}
		c[$k]=$v
	done
	: >"$D/$name.yaml"
	for k in "${!c[@]}"; do
		[ -n "${c[$k]}" ] && printf '%s: %s\n' "$k" "${c[$k]}" >>"$D/$name.yaml"
	done
}
# refused NAME TEXT: --check on D/NAME.yaml exits 1 and says TEXT
refused() {
	check "--check refuses $1" 1 "$agent" --config "$D/$1.yaml" --check
	assert "  saying: $2" grep -qF -- "$2" "$D/err"
}

conf good
check "--check accepts the good config" 0 "$agent" --config "$D/good.yaml" --check
assert "  and says ok, with the entries and the token" grep -q "ok (1 entries from .*; token " "$D/out"

conf other-td trust_domain=other.example
refused other-td "the CA in $state is for trust domain cluster.local, not other.example"

conf no-entries entries=$D/none.yaml
refused no-entries "no registration entries in $D/none.yaml"
conf missing-entries entries=$D/nowhere.yaml
refused missing-entries "no registration entries in $D/nowhere.yaml"

conf bad-module module=$D/no-such-module.so
refused bad-module "cannot open the token"
conf no-token token="pkcs11:token=no-such-token"
refused no-token "cannot open the token"
printf 'not-the-pin\n' >"$D/wrong.pin"
chmod 0600 "$D/wrong.pin"
conf wrong-pin pin_file=$D/wrong.pin
refused wrong-pin "cannot open the token"
check "--check --offline does not open the token" 0 "$agent" --config "$D/bad-module.yaml" \
	--check --offline
check "--offline without --check is a usage error" 2 "$agent" --config "$D/good.yaml" --offline

# an expired CA certificate: made by openssl with dates in the past
mkdir -p "$D/ossl"
: >"$D/ossl/index.txt"
echo 01 >"$D/ossl/serial"
cat >"$D/ossl/ca.cnf" <<EOF
[ca]
default_ca = d
[d]
database = $D/ossl/index.txt
new_certs_dir = $D/ossl
serial = $D/ossl/serial
default_md = sha256
policy = p
[p]
commonName = supplied
[ext]
basicConstraints = critical,CA:true
keyUsage = critical,keyCertSign,cRLSign
subjectAltName = URI:spiffe://cluster.local
EOF
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$D/ossl/key.pem" \
	-subj /CN=expired -out "$D/ossl/req.pem" 2>/dev/null
openssl ca -batch -notext -selfsign -config "$D/ossl/ca.cnf" -extensions ext \
	-keyfile "$D/ossl/key.pem" -in "$D/ossl/req.pem" -startdate 20200101000000Z \
	-enddate 20200102000000Z -out "$D/ossl/expired.pem" >/dev/null 2>&1
assert "openssl made an expired certificate" [ -s "$D/ossl/expired.pem" ]
cp "$state/ca.pem" "$D/ca.pem.good"
cp "$D/ossl/expired.pem" "$state/ca.pem"
refused good "the CA certificate in $state/ca.pem expired at 2020-01-02T00:00:00Z"
check "start refuses the expired CA too" 1 "$agent" --config "$D/good.yaml"
assert "  saying so" grep -qF "the CA certificate in $state/ca.pem expired at" "$D/err"
cp "$D/ca.pem.good" "$state/ca.pem"

# a PIN file others can read: refused by --check and at start
chmod 0644 "$CUBEID_T_PIN_FILE"
refused good "pin_file $CUBEID_T_PIN_FILE: readable or writable by others (mode 0644): refused"
check "start refuses it" 1 "$agent" --config "$D/good.yaml"
assert "  saying why" grep -qF "pin_file $CUBEID_T_PIN_FILE: readable or writable by others" "$D/err"
assert "  before it serves" [ ! -e "$D/run/agent.sock" ]
conf env-pin pin_file=
check "start refuses one named by \$CUBEID_PIN_FILE" 1 \
	env CUBEID_PIN_FILE="$CUBEID_T_PIN_FILE" "$agent" --config "$D/env-pin.yaml"
assert "  saying why" grep -qF "pin_file $CUBEID_T_PIN_FILE: readable or writable by others" "$D/err"
chmod 0600 "$CUBEID_T_PIN_FILE"

# and the good config starts
"$agent" --config "$D/good.yaml" >"$D/agent.out" 2>"$D/agent.err" &
pid=$!
up=no
for _ in $(seq 1 300); do
	kill -0 "$pid" 2>/dev/null || break
	if "$cubeid" status --socket "$D/run/agent.sock" >/dev/null 2>&1; then
		up=yes
		break
	fi
	sleep 0.1
done
assert "the config --check accepts starts" [ "$up" = yes ]
kill -TERM "$pid"
wait "$pid"
rc=$?
pid=
assert "and stops with 0" [ "$rc" -eq 0 ]

echo "1..$n"
if [ "$fails" -ne 0 ]; then
	echo "agent log:"
	sed 's/^/    | /' "$D/agent.err" 2>/dev/null | tail -20
	exit 1
fi
exit 0
