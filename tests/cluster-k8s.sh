#!/bin/bash
# The Kubernetes publication store (docs/cluster.md) against a loopback
# HTTPS stand-in for the API server (tests/k8s-api-server.py, answers shaped
# like the API server's from tests/fixtures/k8s).  No real API server runs
# here: what is tested is the requests cubeid makes (method, path, query,
# content type, bearer token, TLS verification against the given CA) and
# its handling of the answers (ConfigMapList, 401, 403, 404, an unreachable
# server).
#  - cubeid cluster publish / show / leave with --kubernetes;
#  - cubeid-agent with cluster.store kubernetes serves the other node's key,
#    keeps it while the API server is down, and drops it after max_stale.
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

# the API server's CA and serving certificate (127.0.0.1), a ServiceAccount
# token, and a token the server refuses (403)
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
	-subj "/CN=test kubernetes CA" -keyout "$D/ca.key" -out "$D/ca.crt" >/dev/null 2>&1
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=kube-apiserver" \
	-keyout "$D/api.key" -out "$D/api.csr" >/dev/null 2>&1
printf 'subjectAltName=IP:127.0.0.1\n' >"$D/ext"
openssl x509 -req -in "$D/api.csr" -CA "$D/ca.crt" -CAkey "$D/ca.key" -CAcreateserial \
	-days 1 -extfile "$D/ext" -out "$D/api.crt" >/dev/null 2>&1
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
	-subj "/CN=other CA" -keyout "$D/other.key" -out "$D/other.crt" >/dev/null 2>&1
openssl rand -hex 32 >"$D/sa-token"
openssl rand -hex 32 >"$D/forbidden-token"
openssl rand -hex 32 >"$D/unknown-token"
chmod 600 "$D"/*-token

start_server() {
	rm -f "$D/port"
	python3 "$srcdir/tests/k8s-api-server.py" --cert "$D/api.crt" --key "$D/api.key" \
		--token-file "$D/sa-token" --forbidden-token-file "$D/forbidden-token" \
		--fixtures "$srcdir/tests/fixtures/k8s" --port-file "$D/port" --log "$D/requests" \
		--extra-item "cubeid-pub-junk=not.a.publication" 2>"$D/server.err" &
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

for i in 1 2; do
	if cli $i "$D/n$i" cluster publish --node node$i "${K[@]}" >"$D/out" 2>&1; then
		ok "node $i publishes to the Kubernetes store"
	else
		bad "publish node $i: $(cat "$D/out")"
	fi
done
if req_has 'r["method"] == "PATCH" and r["path"] == "/api/v1/namespaces/cubeid/configmaps/cubeid-pub-node2" and r["query"] == {"fieldManager": ["cubeid-agent"], "force": ["true"]} and r["content_type"] == "application/apply-patch+yaml" and r["auth"] == "ok" and r["labels"] == {"cubeid.io/publication": "v1"} and r["data_keys"] == ["publication"]'; then
	ok "publish is a server-side apply PATCH of ConfigMap cubeid-pub-node2 with the bearer token"
else
	bad "the publish request: $(last_request)"
fi

cli 1 "$D/n1" cluster show "${K[@]}" --bundle "$D/root/bundle.pem" >"$D/out" 2>&1
rc=$?
if [ $rc -eq 1 ] && grep -q "node node1: valid" "$D/out" && grep -q "node node2: valid" "$D/out" &&
	grep -q "node junk: REFUSED" "$D/out" && ! grep -q "kube-root-ca" "$D/out"; then
	ok "show: both nodes valid from the ConfigMapList, the junk ConfigMap refused (exit 1)"
else
	bad "show (exit $rc): $(cat "$D/out")"
fi
if req_has 'r["method"] == "GET" and r["path"] == "/api/v1/namespaces/cubeid/configmaps" and r["query"] == {"labelSelector": ["cubeid.io/publication"]} and r["auth"] == "ok" and r["items"] == 3'; then
	ok "list is a GET with the label selector"
else
	bad "the list request: $(last_request)"
fi
cli 1 "$D/n1" cluster show "${K[@]}" --bundle "$D/root/bundle.pem" --format jwks >"$D/jwks" 2>/dev/null
if [ "$(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["keys"]))' "$D/jwks" 2>&1)" = 2 ]; then
	ok "the cluster JWKS from the Kubernetes store has both nodes' keys"
else
	bad "jwks: $(cat "$D/jwks")"
fi

# failures: an API server certificate from another CA, 403, 401
K2=(--kubernetes --k8s-api-server "$URL" --k8s-namespace cubeid --k8s-token-file "$D/sa-token"
	--k8s-ca-file "$D/other.crt")
if ! cli 1 "$D/n1" cluster show "${K2[@]}" --bundle "$D/root/bundle.pem" >"$D/out" 2>&1 &&
	grep -qi "certificate" "$D/out"; then
	ok "an API server whose certificate does not chain to the CA file is refused"
else
	bad "wrong CA: $(cat "$D/out")"
fi
K3=(--kubernetes --k8s-api-server "$URL" --k8s-namespace cubeid
	--k8s-token-file "$D/forbidden-token" --k8s-ca-file "$D/ca.crt")
if ! cli 1 "$D/n1" cluster show "${K3[@]}" --bundle "$D/root/bundle.pem" >"$D/out" 2>&1 &&
	grep -q "HTTP 403: configmaps is forbidden" "$D/out" && req_has 'r["auth"] == "forbidden"'; then
	ok "403 from RBAC: refused, with the API server's message"
else
	bad "403: $(cat "$D/out")"
fi
K4=(--kubernetes --k8s-api-server "$URL" --k8s-namespace cubeid
	--k8s-token-file "$D/unknown-token" --k8s-ca-file "$D/ca.crt")
if ! cli 1 "$D/n1" cluster publish --node node1 "${K4[@]}" >"$D/out" 2>&1 &&
	grep -q "HTTP 401: Unauthorized" "$D/out"; then
	ok "401 for an unknown token"
else
	bad "401: $(cat "$D/out")"
fi
if ! cli 1 "$D/n1" cluster show --kubernetes --k8s-api-server "http://127.0.0.1:1" \
	--k8s-namespace cubeid --bundle "$D/root/bundle.pem" >"$D/out" 2>&1 &&
	grep -q "https://" "$D/out"; then
	ok "an http:// API server is refused"
else
	bad "http://: $(cat "$D/out")"
fi

# leave: DELETE; again: 404 is fine
if cli 1 "$D/n1" cluster leave --node node2 "${K[@]}" >"$D/out" 2>&1 &&
	req_has 'r["method"] == "DELETE" and r["path"] == "/api/v1/namespaces/cubeid/configmaps/cubeid-pub-node2"' &&
	cli 1 "$D/n1" cluster leave --node node2 "${K[@]}" >"$D/out" 2>&1; then
	ok "leave deletes the ConfigMap; deleting it again (404) is fine"
else
	bad "leave: $(cat "$D/out") $(last_request)"
fi
cli 2 "$D/n2" cluster publish --node node2 "${K[@]}" -q >/dev/null 2>&1
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
  max_stale: 6s
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
# the API server goes away: the last bundle stays, then max_stale drops it
kill "$srv" && wait "$srv" 2>/dev/null
srv=
down=$(date +%s)
out_of_reach() { grep -q "out of reach; keeping the last known bundle" "$D/agent.err"; }
if wait_for 60 out_of_reach && has_k2; then
	ok "API server down: the agent keeps the last known bundle"
else
	bad "API server down: $(tail -3 "$D/agent.err")"
fi
gone() { ! has_k2; }
if wait_for 120 gone && grep -q "dropping the other nodes' keys" "$D/agent.err"; then
	ok "after max_stale (6s) without the store, node 2's key is dropped"
	[ $(($(date +%s) - down)) -ge 6 ] && ok "... not before max_stale" ||
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
