#!/bin/bash
# The Kubernetes publication store (docs/cluster.md) under the faults a real
# API server does not make on demand, against a loopback HTTPS stand-in
# (tests/k8s-api-server.py, answers shaped like the API server's from
# tests/fixtures/k8s).  Everything else (publish, show, leave, forged
# ConfigMaps, field ownership, RBAC 403, 401, 404, TLS, token rotation) runs
# against a real kube-apiserver in tests/cluster-k8s-apiserver.sh.
#  - a 500 (an internal error): cubeid cluster show and publish fail with the
#    server's message; a running agent logs it and keeps its bundle;
#  - a slow answer (held past the 10 s request timeout): show fails with a
#    timeout; under a running agent the Workload API still answers while
#    the store request hangs, and the agent keeps its bundle;
#  - the API server gone: the agent keeps the last known bundle, then drops
#    the other nodes' keys after max_stale.
# The stand-in serves no watch (400), so the agent here reads the store every
# refresh, as it does whenever its watch is down; and a watch answered with
# 410 Gone makes it list again at once.
# Exit: 0 pass, 1 fail, 77 skip (no SoftHSM2).
set -u
builddir=${CUBEID_BUILDDIR:-.}
srcdir=${CUBEID_SRCDIR:-${srcdir:-$(cd "$(dirname "$0")/.." && pwd)}}
agent=$builddir/agent/cubeid-agent
cubeid=$builddir/cli/cubeid
mktoken=$builddir/tests/mktoken

for t in python3 openssl; do
	command -v $t >/dev/null || { echo "FAIL: $t not found"; exit 1; }
done
unset CUBEID_TOKEN CUBEID_PIN CUBEID_PIN_FILE CUBEID_PKCS11_MODULE CUBEID_STATE_DIR
D=$(mktemp -d /tmp/cubeid-cluster-k8s.XXXXXX) || exit 1
srv=
apid=
tokdirs=()
cleanup() {
	[ -n "$apid" ] && kill "$apid" 2>/dev/null && wait "$apid" 2>/dev/null
	[ -n "$srv" ] && kill "$srv" 2>/dev/null && wait "$srv" 2>/dev/null
	rm -rf "$D" "${tokdirs[@]}"
}
trap cleanup EXIT
fails=0
n=0
ok() { n=$((n + 1)); echo "ok $n - $1"; }
bad() { n=$((n + 1)); fails=$((fails + 1)); echo "not ok $n - $1"; }
finish() { echo "1..$n"; [ $fails -eq 0 ] && exit 0; exit 1; }

declare -a TOK_CONF TOK_URI TOK_PIN
for i in 1 2; do
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
cli() {
	local i=$1 st=$2
	shift 2
	SOFTHSM2_CONF=${TOK_CONF[i]} "$cubeid" "$@" --token "${TOK_URI[i]}" --module "$MODULE" \
		--pin-file "${TOK_PIN[i]}" --state-dir "$st"
}
TD=example.org
cli 1 "$D/root" ca init -d $TD -q >"$D/log" 2>&1 || { bad "root: $(cat "$D/log")"; finish; }
for i in 1 2; do
	if ! { cli $i "$D/n$i" ca csr -d $TD --out "$D/n$i.csr" &&
		cli 1 "$D/root" ca sign --csr "$D/n$i.csr" --out "$D/n$i.pem" &&
		cli $i "$D/n$i" ca install --cert "$D/n$i.pem" --bundle "$D/root/bundle.pem" -q &&
		cli $i "$D/n$i" ca jwt-rotate --max-ttl 60s -q; } >"$D/log" 2>&1; then
		bad "enrolling node $i: $(cat "$D/log")"
		finish
	fi
done
ok "a root and two enrolled nodes"

# the API server's CA and serving certificate (127.0.0.1) and a
# ServiceAccount token
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
	-subj "/CN=test kubernetes CA" -keyout "$D/ca.key" -out "$D/ca.crt" >/dev/null 2>&1
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=kube-apiserver" \
	-keyout "$D/api.key" -out "$D/api.csr" >/dev/null 2>&1
printf 'subjectAltName=IP:127.0.0.1\n' >"$D/ext"
openssl x509 -req -in "$D/api.csr" -CA "$D/ca.crt" -CAkey "$D/ca.key" -CAcreateserial \
	-days 1 -extfile "$D/ext" -out "$D/api.crt" >/dev/null 2>&1
openssl rand -hex 32 >"$D/sa-token"
chmod 600 "$D"/*-token

start_server() {
	rm -f "$D/port"
	python3 "$srcdir/tests/k8s-api-server.py" --cert "$D/api.crt" --key "$D/api.key" \
		--token-file "$D/sa-token" --fixtures "$srcdir/tests/fixtures/k8s" \
		--port-file "$D/port" --log "$D/requests" --fault-file "$D/fault" 2>"$D/server.err" &
	srv=$!
	for _ in $(seq 1 100); do [ -s "$D/port" ] && break; sleep 0.1; done
	[ -s "$D/port" ]
}
start_server || { bad "the stand-in API server did not start: $(cat "$D/server.err")"; finish; }
URL=https://127.0.0.1:$(cat "$D/port")
K=(--kubernetes --k8s-api-server "$URL" --k8s-namespace cubeid --k8s-token-file "$D/sa-token"
	--k8s-ca-file "$D/ca.crt")
last_request() { tail -1 "$D/requests"; }
req_has() { # req_has PYTHON-EXPR: true if the last logged request satisfies it
	last_request | python3 -c "import json,sys; r=json.load(sys.stdin); sys.exit(0 if ($1) else 1)"
}

fault() { # fault 500|hold|"": what the stand-in does from now on
	if [ -n "$1" ]; then
		printf '%s\n' "$1" >"$D/fault.tmp" && mv -f "$D/fault.tmp" "$D/fault"
	else
		rm -f "$D/fault"
	fi
}
for i in 1 2; do
	if cli $i "$D/n$i" cluster publish --node node$i "${K[@]}" >"$D/out" 2>&1; then
		ok "node $i publishes to the stand-in"
	else
		bad "publish node $i: $(cat "$D/out")"
	fi
done
if req_has 'r["method"] == "PATCH" and r["path"] == "/api/v1/namespaces/cubeid/configmaps/cubeid-pub-node2" and r["query"] == {"fieldManager": ["cubeid-agent"], "force": ["true"]} and r["content_type"] == "application/apply-patch+yaml" and r["auth"] == "ok"'; then
	ok "publish is a server-side apply PATCH with the bearer token"
else
	bad "the publish request: $(last_request)"
fi

# a 500
fault 500
if ! cli 1 "$D/n1" cluster show "${K[@]}" --bundle "$D/root/bundle.pem" >"$D/out" 2>&1 &&
	grep -q "HTTP 500: Internal error occurred: a test fault" "$D/out"; then
	ok "500 on list: show fails with the server's message"
else
	bad "500 on list: $(cat "$D/out")"
fi
if ! cli 1 "$D/n1" cluster publish --node node1 "${K[@]}" >"$D/out" 2>&1 &&
	grep -q "HTTP 500: Internal error occurred: a test fault" "$D/out"; then
	ok "500 on publish: fails with the server's message"
else
	bad "500 on publish: $(cat "$D/out")"
fi
# a slow answer: held past the client's 10 s timeout
fault hold
if ! cli 1 "$D/n1" cluster show "${K[@]}" --bundle "$D/root/bundle.pem" >"$D/out" 2>&1 &&
	grep -q "Timeout was reached" "$D/out"; then
	ok "an answer that does not come: show fails with a timeout"
else
	bad "slow answer: $(cat "$D/out")"
fi
fault ""
k2=$(cli 2 "$D/n2" ca jwt-keys --no-headers | awk '{print $1}')

# the agent with the Kubernetes store
cat >"$D/entries.yaml" <<EOF
entries:
  - spiffe_id: spiffe://{td}/k8s-test
    selectors: [unix:uid:$(id -u)]
EOF
cat >"$D/agent.yaml" <<EOF
trust_domain: $TD
socket_path: $D/a1.sock
state_dir: $D/n1
token: "${TOK_URI[1]}"
pin_file: ${TOK_PIN[1]}
module: $MODULE
entries: $D/entries.yaml
log_level: info
cluster:
  store: kubernetes
  node: node1
  refresh: 1s
  max_stale: 30s
  k8s_api_server: $URL
  k8s_namespace: cubeid
  k8s_token_file: $D/sa-token
  k8s_ca_file: $D/ca.crt
EOF
SOFTHSM2_CONF=${TOK_CONF[1]} "$agent" --config "$D/agent.yaml" >"$D/agent.out" 2>"$D/agent.err" &
apid=$!
kids() {
	"$cubeid" bundle fetch --format jwks --socket "$D/a1.sock" 2>/dev/null |
		python3 -c 'import json,sys; print("\n".join(k["kid"] for k in json.load(sys.stdin)["keys"]))' 2>/dev/null
}
has_k2() { kids | grep -x -- "$k2" >/dev/null; }
wait_for() {
	local end=$(($(date +%s) + $1))
	shift
	while [ "$(date +%s)" -lt "$end" ]; do "$@" && return 0; sleep 0.3; done
	return 1
}
if wait_for 120 has_k2; then
	ok "the agent serves node 2's key from the Kubernetes store"
else
	bad "agent: $(tail -5 "$D/agent.err")"
fi
if grep -q '"method": "PATCH", "path": "/api/v1/namespaces/cubeid/configmaps/cubeid-pub-node1"' "$D/requests"; then
	ok "the agent published node 1 through the API server"
else
	bad "no PATCH from the agent"
fi
if grep -q '"watch": true' "$D/requests" &&
	grep -q "the watch of cubeid failed: the stand-in does not serve watches" "$D/agent.err"; then
	ok "a server that refuses the watch: logged, and the agent reads the store every refresh"
else
	bad "no refused watch: $(grep -c watch "$D/requests") $(grep watch "$D/agent.err" | tail -2)"
fi
# 410 Gone on the watch: list again at once
fault gone
gone_seen() { grep -q "the watch's resourceVersion is gone (410): listing again" "$D/agent.err"; }
if wait_for 120 gone_seen &&
	python3 - "$D/requests" <<'EOF'; then
import json, sys
r = [json.loads(l) for l in open(sys.argv[1])]
i = next(i for i, e in enumerate(r) if e.get("fault") == "gone")
nxt = [e for e in r[i + 1:] if e.get("method")]
sys.exit(0 if nxt and nxt[0]["method"] == "GET" and "items" in nxt[0] else 1)
EOF
	ok "410 Gone on the watch: the agent lists again at once"
else
	bad "410: $(grep -c gone "$D/requests") $(tail -3 "$D/agent.err")"
fi
fault ""
# reads that the agent made with no fault (+2: a held request the client
# gave up on is answered when the fault ends)
reads() { grep -c '"items":' "$D/requests"; }
read_again() { local r0; r0=$(reads); wait_for 60 eval '[ "$(reads)" -ge $((r0 + 2)) ]'; }
# a 500 under the agent: logged, the bundle kept
fault 500
got_500() { grep -q "HTTP 500: Internal error occurred: a test fault" "$D/agent.err"; }
if wait_for 60 got_500 && has_k2; then
	ok "500 under the agent: logged, the last bundle kept"
else
	bad "500 under the agent: $(tail -3 "$D/agent.err")"
fi
fault ""
read_again || bad "no read after the 500s"
# a held answer: the Workload API still answers while the store hangs
holds() { grep -c '"event": "holding"' "$D/requests"; }
h0=$(holds)
more_holds() { [ "$(holds)" -gt "$h0" ]; }
fault hold
if wait_for 60 more_holds && has_k2 && has_k2; then
	ok "while a store request hangs, the Workload API answers (with node 2's key)"
else
	bad "held answer: $(tail -3 "$D/agent.err")"
fi
got_timeout() { grep -q "Timeout was reached" "$D/agent.err"; }
if wait_for 60 got_timeout && has_k2; then
	ok "the held request times out; the agent keeps the last bundle"
else
	bad "timeout under the agent: $(tail -3 "$D/agent.err")"
fi
fault ""
read_again || bad "no read after the held answers"
# the API server goes away: the last bundle stays, then max_stale drops it
kill "$srv" && wait "$srv" 2>/dev/null
srv=
down=$(date +%s)
seen=$(wc -l <"$D/agent.err")
out_of_reach() { tail -n +$((seen + 1)) "$D/agent.err" | grep -q "out of reach; keeping the last known bundle"; }
if wait_for 60 out_of_reach && has_k2; then
	ok "API server down: the agent keeps the last known bundle"
else
	bad "API server down: $(tail -3 "$D/agent.err")"
fi
gone() { ! has_k2; }
if wait_for 120 gone && grep -q "dropping the other nodes' keys" "$D/agent.err"; then
	ok "after max_stale (30s) without the store, node 2's key is dropped"
	[ $(($(date +%s) - down)) -ge 30 ] && ok "... not before max_stale" ||
		bad "dropped after $(($(date +%s) - down))s, before max_stale"
else
	bad "max_stale: $(tail -3 "$D/agent.err")"
fi
kill -TERM "$apid"
wait "$apid"
rc=$?
apid=
[ $rc -eq 0 ] && ok "the agent stops cleanly" || bad "agent exit $rc"
finish
