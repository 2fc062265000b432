#!/bin/bash
# The Kubernetes publication store (docs/cluster.md) against a real
# kube-apiserver (tests/lib/kube-apiserver.sh), with the RBAC of
# deploy/kubernetes/components/cluster-trust applied and a ServiceAccount
# token for cubeid-agent from TokenRequest:
#  - cubeid cluster publish: a server-side apply that creates (201), then
#    updates (200) ConfigMap cubeid-pub-NODE, owned by field manager
#    cubeid-agent; show lists both nodes; leave deletes (404 again is fine);
#  - forged ConfigMaps (junk, another node's publication under a new name, a
#    tampered one) are refused, an unlabelled one is not read;
#  - field ownership: another manager's apply conflicts; after it forces,
#    publish takes data.publication back and the other's label stays;
#  - RBAC 403 (list, patch, delete), 401 (an unknown token), 404 (a namespace
#    that does not exist), a server certificate from another CA, http://;
#  - the agent's requests, from the server's audit log, use only verbs the
#    Role grants (list, watch, patch), and the Role grants only those and
#    create (the first apply);
#  - cubeid-agent with cluster.store kubernetes serves node 2's key, creates
#    its own publication, lists once and then watches: node 2's new key
#    arrives with no list and no write; after the API server restarts with
#    the agent's old token void (the ServiceAccount recreated: 401) it keeps
#    its bundle, reads the rotated token file, and watches again;
#    SIGTERM stops it cleanly.
# Faults a real server does not make on demand (a 500, a slow answer, the
# server going away) are tests/cluster-k8s.sh's, against a stand-in.
# Exit: 0 pass, 1 fail, 77 skip (no SoftHSM2, or no usable Go outside CI).
set -u
builddir=${CUBEID_BUILDDIR:-.}
srcdir=${CUBEID_SRCDIR:-${srcdir:-$(cd "$(dirname "$0")/.." && pwd)}}
agent=$builddir/agent/cubeid-agent
cubeid=$builddir/cli/cubeid
mktoken=$builddir/tests/mktoken
peers=$srcdir/tests/lib/go-peers.sh
kapi=$srcdir/tests/lib/kube-apiserver.sh
# shellcheck source=lib/k8s-render.sh
. "$srcdir/tests/lib/k8s-render.sh"

for t in python3 openssl curl; do
	command -v $t >/dev/null || { echo "FAIL: $t not found"; exit 1; }
done
unset CUBEID_TOKEN CUBEID_PIN CUBEID_PIN_FILE CUBEID_PKCS11_MODULE CUBEID_STATE_DIR
D=$(mktemp -d /tmp/cubeid-cluster-k8s-api.XXXXXX) || exit 1
apid=
tokdirs=()
cleanup() {
	[ -n "$apid" ] && kill "$apid" 2>/dev/null && wait "$apid" 2>/dev/null
	bash "$kapi" down "$D/api"
	rm -rf "$D" "${tokdirs[@]}"
}
trap cleanup EXIT
fails=0
n=0
ok() { n=$((n + 1)); echo "ok $n - $1"; }
bad() { n=$((n + 1)); fails=$((fails + 1)); echo "not ok $n - $1"; }
finish() { echo "1..$n"; [ $fails -eq 0 ] && exit 0; exit 1; }
need() { # need VAR SCRIPT ARGS...: a Go-built tool, or skip (a failure under CI=true)
	local out rc
	out=$(bash "${@:2}" 2>"$D/build.err")
	rc=$?
	if [ $rc -ne 0 ]; then
		cat "$D/build.err" >&2
		if [ "${CI:-}" = true ] || [ $rc -ne 3 ]; then
			echo "not ok - $(basename "$2") ${*:3} failed (exit $rc)"
			exit 1
		fi
		echo "SKIP: no usable Go for $(basename "$2") ${*:3}"
		exit 77
	fi
	printf -v "$1" '%s' "$out"
}

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
need kustomize "$peers" path kustomize
need kubectl "$kapi" path kubectl

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

if ! bash "$kapi" up "$D/api" 2>"$D/log"; then
	bad "a real kube-apiserver starts: $(cat "$D/log")"
	finish
fi
ok "$(grep 'ready on' "$D/log" | sed 's/^kube-apiserver.sh: //')"
# shellcheck disable=SC1091
. "$D/api/env"
k() { "$KUBECTL" "$@"; }
mkdir -p "$D/r"
if k8s_render "$kustomize" "$srcdir/deploy/kubernetes" softhsm-dev-cluster "$D/r" 2>"$D/log" &&
	k apply --server-side -f "$D/r/softhsm-dev-cluster.yaml" >"$D/log" 2>&1; then
	ok "softhsm-dev + components/cluster-trust applied (namespace, ServiceAccount, Role)"
else
	bad "applying softhsm-dev + cluster-trust: $(cat "$D/log")"
	finish
fi
PNS=$(sed -n 's/^ *k8s_namespace: *//p' "$D/r/softhsm-dev-cluster.yaml" | head -1)
SYS=agentcube-system
SA=system:serviceaccount:$SYS:cubeid-agent
sa_token() { # sa_token SA FILE: a TokenRequest token, written atomically, 0600
	(umask 077 && k -n $SYS create token "$1" --duration=1h >"$2.tmp") && mv -f "$2.tmp" "$2"
}
sa_token cubeid-agent "$D/sa-token" || { bad "TokenRequest for cubeid-agent"; finish; }
ok "a TokenRequest token for $SA"
K=(--kubernetes --k8s-api-server "$KUBE_SERVER" --k8s-namespace "$PNS"
	--k8s-token-file "$D/sa-token" --k8s-ca-file "$KUBE_CA")
cmjson() { k -n "$PNS" get configmap "$1" -o json --show-managed-fields 2>/dev/null; }
# audit: python over the server's audit log; EXPR sees the requests as E,
# one event each (the last stage logged: a watch that is still open is
# there from ResponseStarted); prints its value
# (from line AUDIT_FROM of the log on)
AUDIT_FROM=0
audit() {
	python3 - "$KUBE_AUDIT_LOG" "$1" "$AUDIT_FROM" <<'EOF'
import json, sys
last = {}
for i, line in enumerate(open(sys.argv[1])):
    if i < int(sys.argv[3]):
        continue
    e = json.loads(line)
    last[e["auditID"]] = e
E = list(last.values())
print(eval(sys.argv[2]))
EOF
}
wait_for() { # wait_for SECONDS CMD...: a bound against a hang, not a timing test
	local end=$(($(date +%s) + $1))
	shift
	while [ "$(date +%s)" -lt "$end" ]; do "$@" && return 0; sleep 0.3; done
	return 1
}

# --- publish / show ----------------------------------------------------------
for i in 1 2 2; do
	if cli $i "$D/n$i" cluster publish --node node$i "${K[@]}" -q >"$D/out" 2>&1; then
		ok "node $i publishes to the real API server"
	else
		bad "publish node $i: $(cat "$D/out")"
	fi
done
codes=$(audit "[e['responseStatus']['code'] for e in E if e['user'].get('username') == '$SA' and e['verb'] == 'patch' and e['objectRef'].get('name') == 'cubeid-pub-node2']")
[ "$codes" = "[201, 200]" ] && ok "publish is a server-side apply: created (201), then updated (200)" ||
	bad "publish answers for node2: $codes"
if cmjson cubeid-pub-node2 | python3 -c '
import json, sys
o = json.load(sys.stdin)
m = o["metadata"]
mf = [(f["manager"], f["operation"]) for f in m["managedFields"]]
assert m["labels"] == {"cubeid.io/publication": "v1"}, m["labels"]
assert list(o["data"]) == ["publication"], list(o["data"])
assert mf == [("cubeid-agent", "Apply")], mf
' 2>"$D/out"; then
	ok "the stored ConfigMap: the label, data.publication, managed by cubeid-agent (Apply)"
else
	bad "the stored ConfigMap: $(cat "$D/out")"
fi
if cli 1 "$D/n1" cluster show "${K[@]}" --bundle "$D/root/bundle.pem" >"$D/out" 2>&1 &&
	grep -q "node node1: valid" "$D/out" && grep -q "node node2: valid" "$D/out"; then
	ok "show: both nodes valid"
else
	bad "show: $(cat "$D/out")"
fi
cli 1 "$D/n1" cluster show "${K[@]}" --bundle "$D/root/bundle.pem" --format jwks >"$D/jwks" 2>/dev/null
if [ "$(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["keys"]))' "$D/jwks" 2>&1)" = 2 ]; then
	ok "the cluster JWKS from the real API server has both nodes' keys"
else
	bad "jwks: $(cat "$D/jwks")"
fi

# --- forged ConfigMaps -----------------------------------------------------------
pub2=$(cmjson cubeid-pub-node2 | python3 -c 'import json,sys; print(json.load(sys.stdin)["data"]["publication"])')
tampered=$(printf '%s' "$pub2" | python3 -c '
import sys
h, p, s = sys.stdin.read().split(".")
i = len(p) // 2
print(h + "." + p[:i] + ("A" if p[i] != "A" else "B") + p[i + 1:] + "." + s)')
mkcm() { # mkcm NAME DATA [unlabelled]
	python3 - "$PNS" "$@" <<'EOF' | k apply --server-side --field-manager=intruder -f - >/dev/null
import json, sys
ns, name, data = sys.argv[1:4]
md = {"name": name, "namespace": ns}
if len(sys.argv) < 5:
    md["labels"] = {"cubeid.io/publication": "v1"}
print(json.dumps({"apiVersion": "v1", "kind": "ConfigMap", "metadata": md,
                  "data": {"publication": data}}))
EOF
}
mkcm cubeid-pub-junk not.a.publication && mkcm cubeid-pub-node3 "$pub2" &&
	mkcm cubeid-pub-node4 "$tampered" && mkcm cubeid-pub-node5 "$pub2" unlabelled ||
	bad "making the forged ConfigMaps"
cli 1 "$D/n1" cluster show "${K[@]}" --bundle "$D/root/bundle.pem" >"$D/out" 2>&1
rc=$?
if [ $rc -eq 1 ] && grep -q "node node1: valid" "$D/out" && grep -q "node node2: valid" "$D/out" &&
	grep -q "node junk: REFUSED" "$D/out" &&
	grep -q "node node3: REFUSED: the publication names another node" "$D/out" &&
	grep -q "node node4: REFUSED" "$D/out" && ! grep -q "node5" "$D/out"; then
	ok "show: junk, a replayed and a tampered publication REFUSED (exit 1); unlabelled not read"
else
	bad "forged (exit $rc): $(cat "$D/out")"
fi
k -n "$PNS" delete configmap cubeid-pub-junk cubeid-pub-node3 cubeid-pub-node4 cubeid-pub-node5 \
	>/dev/null 2>&1

# --- field ownership ---------------------------------------------------------------
other() { # other [--force-conflicts]: manager "other" applies data.publication and a label
	printf '%s\n' 'apiVersion: v1' 'kind: ConfigMap' 'metadata:' '  name: cubeid-pub-node2' \
		"  namespace: $PNS" '  labels: {other.example/owner: other}' 'data:' '  publication: x' |
		k apply --server-side --field-manager=other "$@" -f - >"$D/out" 2>&1
}
if ! other && grep -qi 'conflict' "$D/out" && grep -q 'cubeid-agent' "$D/out"; then
	ok "another manager's apply of data.publication conflicts with cubeid-agent's"
else
	bad "no conflict: $(cat "$D/out")"
fi
if other --force-conflicts &&
	[ "$(k -n "$PNS" get cm cubeid-pub-node2 -o jsonpath='{.data.publication}')" = x ]; then
	ok "... and takes it with --force-conflicts"
else
	bad "force-conflicts: $(cat "$D/out")"
fi
if cli 2 "$D/n2" cluster publish --node node2 "${K[@]}" -q >"$D/out" 2>&1 &&
	cmjson cubeid-pub-node2 | python3 -c '
import json, sys
o = json.load(sys.stdin)
m = o["metadata"]
own = {f["manager"]: json.dumps(f["fieldsV1"]) for f in m["managedFields"]}
assert "f:publication" in own["cubeid-agent"], own
assert "f:publication" not in own.get("other", ""), own
assert m["labels"].get("other.example/owner") == "other", m["labels"]
assert o["data"]["publication"] != "x"
' 2>>"$D/out"; then
	ok "publish (force) takes data.publication back; the other manager's label stays"
else
	bad "taking it back: $(cat "$D/out")"
fi

# --- 403, 401, 404, TLS -------------------------------------------------------------
k -n $SYS create serviceaccount nobody >/dev/null 2>&1
sa_token nobody "$D/nobody-token"
KN=(--kubernetes --k8s-api-server "$KUBE_SERVER" --k8s-namespace "$PNS"
	--k8s-token-file "$D/nobody-token" --k8s-ca-file "$KUBE_CA")
if ! cli 1 "$D/n1" cluster show "${KN[@]}" --bundle "$D/root/bundle.pem" >"$D/out" 2>&1 &&
	grep -q "HTTP 403: configmaps is forbidden: User \"system:serviceaccount:$SYS:nobody\" cannot list resource \"configmaps\"" "$D/out"; then
	ok "403 from RBAC on list: refused, with the API server's message"
else
	bad "403 list: $(cat "$D/out")"
fi
if ! cli 1 "$D/n1" cluster publish --node node1 "${KN[@]}" >"$D/out" 2>&1 &&
	grep -q "HTTP 403: configmaps \"cubeid-pub-node1\" is forbidden: .* cannot patch resource" "$D/out"; then
	ok "403 from RBAC on publish (patch)"
else
	bad "403 patch: $(cat "$D/out")"
fi
if ! cli 1 "$D/n1" cluster leave --node node2 "${K[@]}" >"$D/out" 2>&1 &&
	grep -q "HTTP 403: .* cannot delete resource" "$D/out"; then
	ok "leave with the agent's token: 403 (delete is the operator's)"
else
	bad "leave as the agent: $(cat "$D/out")"
fi
(umask 077 && openssl rand -hex 32 >"$D/unknown-token")
KU=(--kubernetes --k8s-api-server "$KUBE_SERVER" --k8s-namespace "$PNS"
	--k8s-token-file "$D/unknown-token" --k8s-ca-file "$KUBE_CA")
if ! cli 1 "$D/n1" cluster publish --node node1 "${KU[@]}" >"$D/out" 2>&1 &&
	grep -q "HTTP 401: Unauthorized" "$D/out"; then
	ok "401 for an unknown token"
else
	bad "401: $(cat "$D/out")"
fi
KA=(--kubernetes --k8s-api-server "$KUBE_SERVER" --k8s-token-file "$KUBE_ADMIN_TOKEN_FILE"
	--k8s-ca-file "$KUBE_CA")
if ! cli 1 "$D/n1" cluster publish --node node1 "${KA[@]}" --k8s-namespace nosuch >"$D/out" 2>&1 &&
	grep -q 'HTTP 404: namespaces "nosuch" not found' "$D/out"; then
	ok "404: publishing into a namespace that does not exist"
else
	bad "404: $(cat "$D/out")"
fi
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
	-subj "/CN=other CA" -keyout "$D/other.key" -out "$D/other.crt" >/dev/null 2>&1
if ! cli 1 "$D/n1" cluster show --kubernetes --k8s-api-server "$KUBE_SERVER" \
	--k8s-namespace "$PNS" --k8s-token-file "$D/sa-token" --k8s-ca-file "$D/other.crt" \
	--bundle "$D/root/bundle.pem" >"$D/out" 2>&1 && grep -qi "certificate" "$D/out"; then
	ok "an API server whose certificate does not chain to the CA file is refused"
else
	bad "wrong CA: $(cat "$D/out")"
fi
if ! cli 1 "$D/n1" cluster show --kubernetes --k8s-api-server "http://${KUBE_SERVER#https://}" \
	--k8s-namespace "$PNS" --bundle "$D/root/bundle.pem" >"$D/out" 2>&1 &&
	grep -q "https://" "$D/out"; then
	ok "an http:// API server is refused"
else
	bad "http://: $(cat "$D/out")"
fi
# leave, by the operator: DELETE; again: 404 is fine
if cli 1 "$D/n1" cluster leave --node node2 "${KA[@]}" --k8s-namespace "$PNS" >"$D/out" 2>&1 &&
	! cmjson cubeid-pub-node2 >/dev/null &&
	cli 1 "$D/n1" cluster leave --node node2 "${KA[@]}" --k8s-namespace "$PNS" >"$D/out" 2>&1 &&
	[ "$(audit "[e['responseStatus']['code'] for e in E if e['verb'] == 'delete' and e['user'].get('username') == 'admin' and e['objectRef'].get('name') == 'cubeid-pub-node2']")" = "[200, 404]" ]; then
	ok "leave deletes the ConfigMap (200); deleting it again (404) is fine"
else
	bad "leave: $(cat "$D/out")"
fi
cli 2 "$D/n2" cluster publish --node node2 "${K[@]}" -q >/dev/null 2>&1
k2=$(cli 2 "$D/n2" ca jwt-keys --no-headers | awk '{print $1}')

# --- the agent -----------------------------------------------------------------------
cp "$D/sa-token" "$D/agent-token"
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
  max_stale: 1h
  k8s_api_server: $KUBE_SERVER
  k8s_namespace: $PNS
  k8s_token_file: $D/agent-token
  k8s_ca_file: $KUBE_CA
EOF
k -n "$PNS" delete configmap cubeid-pub-node1 >/dev/null 2>&1
# from here on, the agent's ServiceAccount is the agent's only
AUDIT_FROM=$(wc -l <"$KUBE_AUDIT_LOG")
SOFTHSM2_CONF=${TOK_CONF[1]} "$agent" --config "$D/agent.yaml" >"$D/agent.out" 2>"$D/agent.err" &
apid=$!
kids() {
	"$cubeid" bundle fetch --format jwks --socket "$D/a1.sock" 2>/dev/null |
		python3 -c 'import json,sys; print("\n".join(k["kid"] for k in json.load(sys.stdin)["keys"]))' 2>/dev/null
}
has_kid() { kids | grep -x -- "$1" >/dev/null; }
if wait_for 120 has_kid "$k2"; then
	ok "the agent serves node 2's key from the real API server"
else
	bad "agent: $(tail -5 "$D/agent.err")"
fi
has_own() { cmjson cubeid-pub-node1 >/dev/null; }
if wait_for 60 has_own; then
	ok "the agent created its own publication cubeid-pub-node1"
else
	bad "no cubeid-pub-node1: $(tail -3 "$D/agent.err")"
fi
# one list, then a watch
agent_req() { audit "len([e for e in E if e['user'].get('username') == '$SA' and e['verb'] == '$1'])"; }
watching() { [ "$(agent_req watch)" -ge 1 ]; }
if wait_for 60 watching; then
	ok "the agent watches the publications after listing them"
else
	bad "no watch: $(tail -3 "$D/agent.err")"
fi
# node 2's new key comes by the watch: no list, and the agent writes nothing
rv1=$(k -n "$PNS" get cm cubeid-pub-node1 -o jsonpath='{.metadata.resourceVersion}')
l0=$(agent_req list)
newkey() { # newkey: rotate node 2's JWT key, publish it; print the new kid
	local before
	before=$(cli 2 "$D/n2" ca jwt-keys --no-headers | awk '{print $1}')
	cli 2 "$D/n2" ca jwt-rotate --prepublish 0 -q >"$D/newkey.log" 2>&1 &&
		cli 2 "$D/n2" cluster publish --node node2 "${KA[@]}" --k8s-namespace "$PNS" -q \
			>>"$D/newkey.log" 2>&1 &&
		cli 2 "$D/n2" ca jwt-keys --no-headers | awk '{print $1}' | grep -vxF -- "$before" | head -1
}
k2b=$(newkey)
if [ -n "$k2b" ] && wait_for 60 has_kid "$k2b" && [ "$(agent_req list)" = "$l0" ] &&
	[ "$(k -n "$PNS" get cm cubeid-pub-node1 -o jsonpath='{.metadata.resourceVersion}')" = "$rv1" ]; then
	ok "node 2's new key is served from the watch: no new list, no write of its own"
else
	bad "by the watch: kid '$k2b', lists $l0 -> $(agent_req list), rv $rv1 -> $(k -n "$PNS" get cm cubeid-pub-node1 -o jsonpath='{.metadata.resourceVersion}')"
fi
# what the agent asked for, against what the Role grants
verbs=$(audit "sorted({e['verb'] for e in E if e['user'].get('username') == '$SA'})")
role=$(k -n "$PNS" get role cubeid-agent-publications -o jsonpath='{.rules[*].verbs}')
if [ "$verbs" = "['list', 'patch', 'watch']" ] && [ "$role" = '["list","watch","create","patch"]' ]; then
	ok "the agent's requests: list, watch, patch; the Role grants those and create (first apply)"
else
	bad "verbs used: $verbs; granted: $role"
fi
# The ServiceAccount recreated (its old tokens are void: 401) and the API
# server restarted (the open watch breaks): the agent keeps its bundle;
# then the token file is rotated, the agent lists and watches again, and a
# newer key of node 2 arrives.
k -n $SYS delete serviceaccount cubeid-agent >/dev/null 2>&1
k -n $SYS create serviceaccount cubeid-agent >/dev/null 2>&1
if bash "$kapi" restart "$D/api" 2>"$D/log"; then
	ok "the API server restarted"
else
	bad "restart: $(cat "$D/log")"
fi
got_401() { grep -q "HTTP 401: Unauthorized" "$D/agent.err"; }
if wait_for 60 got_401 && has_kid "$k2b" && kill -0 "$apid" 2>/dev/null; then
	ok "401 after the restart (the old token void): logged, the last bundle kept"
else
	bad "401 under the agent: $(tail -3 "$D/agent.err")"
fi
w0=$(agent_req watch)
sa_token cubeid-agent "$D/new-token" && mv -f "$D/new-token" "$D/agent-token"
rewatching() { [ "$(agent_req watch)" -gt "$w0" ]; }
k2c=$(newkey)
if [ -n "$k2c" ] && wait_for 120 rewatching && wait_for 60 has_kid "$k2c"; then
	ok "the rotated token file is read: the agent watches again, node 2's newest key served"
else
	bad "rotated token: kid '$k2c' ($(cat "$D/newkey.log")), watches $w0 -> $(agent_req watch): $(tail -3 "$D/agent.err")"
fi
kill -TERM "$apid"
wait "$apid"
rc=$?
apid=
[ $rc -eq 0 ] && ok "the agent stops cleanly" || bad "agent exit $rc"
finish
