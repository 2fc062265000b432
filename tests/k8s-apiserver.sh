#!/bin/bash
# deploy/kubernetes against a real kube-apiserver (tests/lib/kube-apiserver.sh:
# kube-apiserver, etcd and kubectl built from the Go module proxy, run on
# loopback with RBAC):
#   - every rendering of deploy/kubernetes (tests/lib/k8s-render.sh: base,
#     each overlay, each component, the examples) passes
#     `kubectl apply --dry-run=server --validate=strict`, the namespaces
#     applied first; a misspelt field is refused by the server;
#   - RBAC, on the softhsm-dev overlay with components/cluster-trust applied
#     for real, asked with `kubectl auth can-i --as` the agent's
#     ServiceAccount: the publication Role grants what the Kubernetes store's
#     requests need (cluster/cluster-k8s.c: list, watch, patch, and create
#     for the first server-side apply) and nothing more: no get, update, delete, no
#     ConfigMap outside the publications namespace (the agent's config, the
#     trust bundle), no Secrets; the pod-lister's ClusterRole reads pods and
#     nodes only;
#   - server-side apply of a new ConfigMap needs create as well as patch
#     (a ServiceAccount with patch only is refused), of an existing one patch.
# No kubelet, controller manager or scheduler runs: nothing is scheduled.
# Exit: 0 pass, 1 fail, 77 skip (no usable Go, outside CI).
set -u
srcdir=${CUBEID_SRCDIR:-${srcdir:-$(cd "$(dirname "$0")/.." && pwd)}}
K=$srcdir/deploy/kubernetes
peers=$srcdir/tests/lib/go-peers.sh
kapi=$srcdir/tests/lib/kube-apiserver.sh
# shellcheck source=lib/k8s-render.sh
. "$srcdir/tests/lib/k8s-render.sh"

for t in python3 openssl curl; do
	command -v $t >/dev/null || { echo "FAIL: $t not found"; exit 1; }
done
python3 -c 'import yaml' 2>/dev/null || { echo "SKIP: no python3 yaml (Debian: python3-yaml)"; exit 77; }
D=$(mktemp -d /tmp/cubeid-k8s-apiserver.XXXXXX) || exit 1
cleanup() {
	bash "$kapi" down "$D/api"
	rm -rf "$D"
}
trap cleanup EXIT
fails=0
n=0
ok() { n=$((n + 1)); echo "ok $n - $1"; }
notok() {
	n=$((n + 1))
	fails=$((fails + 1))
	echo "not ok $n - $1"
	[ -s "$D/err" ] && sed 's/^/    | /' "$D/err"
	: >"$D/err"
}
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
need kustomize "$peers" path kustomize
need kubectl "$kapi" path kubectl
if ! bash "$kapi" up "$D/api" 2>"$D/err"; then
	notok "a real kube-apiserver starts"
	finish
fi
ok "$(grep 'ready on' "$D/err" | sed 's/^kube-apiserver.sh: //')"
: >"$D/err"
# shellcheck disable=SC1091
. "$D/api/env"
k() { "$KUBECTL" "$@"; }

# --- every rendering, server-side, strict -----------------------------------
R=$D/rendered
mkdir -p "$R"
names=$(printf '%s\n' "$K8S_RENDERINGS" | cut -d= -f1)
for name in $names; do
	if k8s_render "$kustomize" "$K" "$name" "$R" 2>"$D/err"; then
		ok "kustomize build $name ($(grep -c '^kind:' "$R/$name.yaml") objects)"
	else
		notok "kustomize build $name"
	fi
done
# The namespaces first: a dry run creates nothing, so the namespaced
# objects of the same rendering would not find theirs.
python3 - "$R"/*.yaml >"$D/ns.yaml" <<'EOF'
import sys, yaml
seen = set()
for f in sys.argv[1:]:
    for d in yaml.safe_load_all(open(f)):
        if d and d["kind"] == "Namespace" and d["metadata"]["name"] not in seen:
            seen.add(d["metadata"]["name"])
            print("---\n" + yaml.safe_dump(d))
EOF
if k apply --server-side -f "$D/ns.yaml" >"$D/out" 2>"$D/err"; then
	ok "the manifests' namespaces: $(awk '{print $1}' "$D/out" | tr '\n' ' ')"
else
	notok "applying the manifests' namespaces"
fi
for name in $names; do
	if k apply --dry-run=server --validate=strict -f "$R/$name.yaml" >"$D/out" 2>"$D/err"; then
		ok "kubectl apply --dry-run=server --validate=strict $name ($(grep -c 'server dry run' "$D/out") objects)"
	else
		cat "$D/out" >>"$D/err"
		notok "kubectl apply --dry-run=server --validate=strict $name"
	fi
done
# the server must be able to say no
sed '0,/hostPath:/s//hostPathh:/' "$R/overlays-softhsm-dev.yaml" >"$D/bad.yaml"
if cmp -s "$D/bad.yaml" "$R/overlays-softhsm-dev.yaml"; then
	notok "the broken manifest differs from the good one"
elif ! k apply --dry-run=server --validate=strict -f "$D/bad.yaml" >"$D/out" 2>&1 &&
	grep -q 'unknown field "spec.template.spec.volumes\[[0-9]*\].hostPathh"' "$D/out"; then
	ok "the server refuses a misspelt field (hostPathh)"
else
	cp "$D/out" "$D/err"
	notok "the server refuses a misspelt field (hostPathh)"
fi

# --- RBAC -------------------------------------------------------------------
if k apply --server-side -f "$R/softhsm-dev-cluster.yaml" >"$D/out" 2>"$D/err"; then
	ok "softhsm-dev + cluster-trust applied ($(grep -c 'serverside-applied' "$D/out") objects)"
else
	notok "applying softhsm-dev + cluster-trust"
	finish
fi
# the publications' namespace, from the rendered config
PNS=$(sed -n 's/^ *k8s_namespace: *//p' "$R/softhsm-dev-cluster.yaml" | head -1)
SYS=agentcube-system
AGENT=system:serviceaccount:$SYS:cubeid-agent
can() { # can VERB RESOURCE[/NAME | :SUBRESOURCE] [NS]: prints yes or no
	local r=$2 a=()
	case $r in
	*:*)
		a=(--subresource="${r#*:}")
		r=${r%%:*}
		;;
	esac
	[ -n "${3:-}" ] && a+=(-n "$3")
	k auth can-i "$1" "$r" "${a[@]}" --as="$AGENT" 2>"$D/err"
}
may() { # may VERB RESOURCE [NS]
	local a
	a=$(can "$@")
	[ "$a" = yes ] && ok "the agent may $1 $2${3:+ in $3}" || notok "the agent may $1 $2${3:+ in $3} (says: $a)"
}
maynot() {
	local a
	a=$(can "$@")
	[ "$a" = no ] && ok "the agent may not $1 $2${3:+ in $3}" || notok "the agent may not $1 $2${3:+ in $3} (says: $a)"
}
[ -n "$PNS" ] && [ "$PNS" != "$SYS" ] && ok "the publications have their own namespace ($PNS)" ||
	notok "the publications have their own namespace (k8s_namespace: '$PNS')"
# what cluster/cluster-k8s.c asks for
may list configmaps "$PNS"
may watch configmaps "$PNS"
may patch configmaps/cubeid-pub-node1 "$PNS"
may create configmaps "$PNS"
# and nothing more there: leave (delete) is the operator's, get and update
# are never sent
maynot get configmaps/cubeid-pub-node1 "$PNS"
maynot update configmaps/cubeid-pub-node1 "$PNS"
maynot delete configmaps/cubeid-pub-node1 "$PNS"
maynot deletecollection configmaps "$PNS"
maynot list secrets "$PNS"
# nor elsewhere: its own config, the trust bundle, Secrets (the token PIN)
maynot patch configmaps/cubeid-agent "$SYS"
maynot delete configmaps/cubeid-agent "$SYS"
maynot patch configmaps/cubeid-trust-bundle "$SYS"
maynot create configmaps "$SYS"
maynot list configmaps "$SYS"
maynot get secrets/cubeid-token-pin "$SYS"
maynot list secrets "$SYS"
maynot patch configmaps/cubeid-pub-node1 default
maynot create configmaps default
# the pod-lister sidecar's read-only ClusterRole
may list pods
may watch pods
may get nodes
maynot create pods "$SYS"
maynot delete pods default
maynot get nodes:proxy
maynot patch nodes

# server-side apply of a new object needs create; of an existing one, patch
k -n "$PNS" create serviceaccount patch-only >/dev/null 2>&1
k -n "$PNS" create role patch-only --verb=patch --verb=list --resource=configmaps >/dev/null 2>&1
k -n "$PNS" create rolebinding patch-only --role=patch-only \
	--serviceaccount="$PNS:patch-only" >/dev/null 2>&1
cm() { # cm NAME VALUE: a publication-shaped ConfigMap
	printf '%s\n' 'apiVersion: v1' 'kind: ConfigMap' 'metadata:' "  name: $1" \
		"  namespace: $PNS" '  labels: {cubeid.io/publication: v1}' 'data:' "  publication: \"$2\""
}
PO=system:serviceaccount:$PNS:patch-only
cm cubeid-pub-ssa x | k apply --server-side --field-manager=cubeid-agent --force-conflicts \
	--as="$PO" -f - >"$D/out" 2>&1
if grep -q 'cannot create resource "configmaps"' "$D/out"; then
	ok "server-side apply of a new ConfigMap with patch but not create: 403 cannot create"
else
	cp "$D/out" "$D/err"
	notok "server-side apply of a new ConfigMap with patch but not create"
fi
cm cubeid-pub-ssa x | k apply --server-side --field-manager=cubeid-agent -f - >/dev/null 2>&1
if cm cubeid-pub-ssa y | k apply --server-side --field-manager=cubeid-agent --force-conflicts \
	--as="$PO" -f - >"$D/out" 2>"$D/err" &&
	[ "$(k -n "$PNS" get configmap cubeid-pub-ssa -o jsonpath='{.data.publication}')" = y ]; then
	ok "server-side apply of an existing ConfigMap with patch alone"
else
	notok "server-side apply of an existing ConfigMap with patch alone"
fi
finish
