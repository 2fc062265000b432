#!/bin/bash
# bench/run-cluster-k8s.sh: the Kubernetes publication store against a real
# kube-apiserver (tests/lib/kube-apiserver.sh), measured (docs/cluster.md,
# "Watch, measured"):
#   - latency: from `cubeid cluster publish` of node 2's new key returning
#     to node 1's agent serving it on its socket (polled every 10 ms), over
#     SAMPLES rotations;
#   - idle load: the requests node 1's agent sends in IDLE seconds while
#     nothing changes, from the API server's audit log, as requests/minute.
#
#   bench/run-cluster-k8s.sh [BUILDDIR]   (default: .)
#   REFRESH (cluster.refresh, default 1s), SAMPLES (default 5), IDLE (60)
# Prints one line per measure.  Not part of make check.
set -u
builddir=${1:-.}
srcdir=${CUBEID_SRCDIR:-$(cd "$(dirname "$0")/.." && pwd)}
REFRESH=${REFRESH:-1s}
SAMPLES=${SAMPLES:-5}
IDLE=${IDLE:-60}
agent=$builddir/agent/cubeid-agent
cubeid=$builddir/cli/cubeid
mktoken=$builddir/tests/mktoken
kapi=$srcdir/tests/lib/kube-apiserver.sh
# shellcheck source=../tests/lib/k8s-render.sh
. "$srcdir/tests/lib/k8s-render.sh"
unset CUBEID_TOKEN CUBEID_PIN CUBEID_PIN_FILE CUBEID_PKCS11_MODULE CUBEID_STATE_DIR
D=$(mktemp -d /tmp/cubeid-bench-k8s.XXXXXX) || exit 1
apid=
tokdirs=()
cleanup() {
	[ -n "$apid" ] && kill "$apid" 2>/dev/null && wait "$apid" 2>/dev/null
	bash "$kapi" down "$D/api"
	rm -rf "$D" "${tokdirs[@]}"
}
trap cleanup EXIT
die() { echo "run-cluster-k8s: $*" >&2; exit 1; }

declare -a TOK_CONF TOK_URI TOK_PIN
for i in 1 2; do
	exports=$("$mktoken") || die "tests/mktoken failed"
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
cli 1 "$D/root" ca init -d $TD -q >/dev/null 2>&1 || die "ca init"
for i in 1 2; do
	{ cli $i "$D/n$i" ca csr -d $TD --out "$D/n$i.csr" &&
		cli 1 "$D/root" ca sign --csr "$D/n$i.csr" --out "$D/n$i.pem" &&
		cli $i "$D/n$i" ca install --cert "$D/n$i.pem" --bundle "$D/root/bundle.pem" -q &&
		cli $i "$D/n$i" ca jwt-rotate --max-ttl 60s -q; } >/dev/null 2>&1 || die "enrolling node $i"
done
kustomize=$(bash "$srcdir/tests/lib/go-peers.sh" path kustomize) || die "no kustomize"
bash "$kapi" up "$D/api" 2>/dev/null || die "the API server did not start"
# shellcheck disable=SC1091
. "$D/api/env"
k() { "$KUBECTL" "$@"; }
mkdir -p "$D/r"
k8s_render "$kustomize" "$srcdir/deploy/kubernetes" softhsm-dev-cluster "$D/r" &&
	k apply --server-side -f "$D/r/softhsm-dev-cluster.yaml" >/dev/null || die "apply"
PNS=$(sed -n 's/^ *k8s_namespace: *//p' "$D/r/softhsm-dev-cluster.yaml" | head -1)
SA=system:serviceaccount:agentcube-system:cubeid-agent
(umask 077 && k -n agentcube-system create token cubeid-agent --duration=1h >"$D/sa-token")
# the Role of the version under test may lack watch: grant it, so that both
# versions run with the same rights
k -n "$PNS" create role bench-watch --verb=watch --resource=configmaps >/dev/null
k -n "$PNS" create rolebinding bench-watch --role=bench-watch \
	--serviceaccount=agentcube-system:cubeid-agent >/dev/null
KA=(--kubernetes --k8s-api-server "$KUBE_SERVER" --k8s-token-file "$KUBE_ADMIN_TOKEN_FILE"
	--k8s-ca-file "$KUBE_CA" --k8s-namespace "$PNS")
cli 2 "$D/n2" cluster publish --node node2 "${KA[@]}" -q >/dev/null 2>&1 || die "publish node2"
cat >"$D/entries.yaml" <<EOF
entries:
  - spiffe_id: spiffe://{td}/bench
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
log_level: notice
cluster:
  store: kubernetes
  node: node1
  refresh: $REFRESH
  max_stale: 1h
  k8s_api_server: $KUBE_SERVER
  k8s_namespace: $PNS
  k8s_token_file: $D/sa-token
  k8s_ca_file: $KUBE_CA
EOF
SOFTHSM2_CONF=${TOK_CONF[1]} "$agent" --config "$D/agent.yaml" >/dev/null 2>"$D/agent.err" &
apid=$!
kids() {
	"$cubeid" bundle fetch --format jwks --socket "$D/a1.sock" 2>/dev/null |
		python3 -c 'import json,sys; print("\n".join(k["kid"] for k in json.load(sys.stdin)["keys"]))' 2>/dev/null
}
k2=$(cli 2 "$D/n2" ca jwt-keys --no-headers | awk '{print $1}' | head -1)
for _ in $(seq 1 600); do kids | grep -qxF -- "$k2" && break; sleep 0.2; done
kids | grep -qxF -- "$k2" || die "the agent never served node 2's key"
sleep 3 # settle: the agent's own first publication, its watch

now() { date +%s.%N; }
lat=()
for s in $(seq 1 "$SAMPLES"); do
	before=$(cli 2 "$D/n2" ca jwt-keys --no-headers | awk '{print $1}')
	cli 2 "$D/n2" ca jwt-rotate --prepublish 0 -q >/dev/null 2>&1 || die "rotate"
	new=$(cli 2 "$D/n2" ca jwt-keys --no-headers | awk '{print $1}' | grep -vxF -- "$before" | head -1)
	cli 2 "$D/n2" cluster publish --node node2 "${KA[@]}" -q >/dev/null 2>&1 || die "publish"
	t0=$(now)
	until "$cubeid" bundle fetch --format jwks --socket "$D/a1.sock" 2>/dev/null | grep -qF -- "\"$new\""; do
		sleep 0.01
	done
	t1=$(now)
	lat+=("$(python3 -c "print('%.3f' % ($t1 - $t0))")")
	sleep 1
done
echo "publish -> served (s), refresh $REFRESH: ${lat[*]} (median $(printf '%s\n' "${lat[@]}" | sort -n | sed -n "$(((SAMPLES + 1) / 2))p"))"

count() { # requests by the agent received since $1 (epoch seconds)
	python3 - "$KUBE_AUDIT_LOG" "$SA" "$1" <<'EOF'
import datetime, json, sys
since = float(sys.argv[3])
seen = {}
for line in open(sys.argv[1]):
    e = json.loads(line)
    if e["user"]["username"] != sys.argv[2]:
        continue
    t = datetime.datetime.fromisoformat(e["requestReceivedTimestamp"].replace("Z", "+00:00")).timestamp()
    if t >= since:
        seen[e["auditID"]] = e["verb"]
verbs = {}
for v in seen.values():
    verbs[v] = verbs.get(v, 0) + 1
print(len(seen), " ".join("%s=%d" % kv for kv in sorted(verbs.items())))
EOF
}
t0=$(date +%s)
sleep "$IDLE"
read -r total detail <<<"$(count "$t0")"
echo "idle requests, refresh $REFRESH: $total in ${IDLE}s = $(python3 -c "print('%.1f' % ($total * 60 / $IDLE))")/min ($detail)"
