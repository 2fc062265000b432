#!/bin/bash
# deploy/kubernetes: every manifest validates against the Kubernetes schemas.
#   - kustomize (sigs.k8s.io/kustomize, built from the Go module proxy)
#     renders base, overlays/tpm, overlays/softhsm-dev, examples, and the
#     overlays with the components (tests/lib/k8s-render.sh; the same
#     renderings go to a real API server in tests/k8s-apiserver.sh);
#   - the schemas are made offline from the OpenAPI v2 spec of
#     k8s.io/kubernetes (downloaded as a Go module; tests/lib/go-peers.sh
#     k8s-openapi) by tests/lib/k8s-schemas.py: standalone and strict, as
#     kubeconform's usual downloaded ones;
#   - kubeconform (built from the Go module proxy) validates every rendered
#     document with -strict against them;
#   - the validation can fail: a misspelt field, a wrong type and an
#     unknown kind are each rejected;
#   - the agent's config and entries in the ConfigMaps pass the agent's own
#     parsers (cubeid-agent --check, cubeid entry list), and the entries
#     include the templated default, Router, WorkloadManager and PicoD;
#   - the DaemonSet has the probes on /healthz and /readyz, the socket
#     directory /run/cubeid, and the namespace agentcube-system.
set -u
srcdir=${CUBEID_SRCDIR:-.}
builddir=${CUBEID_BUILDDIR:-.}
agent=$builddir/agent/cubeid-agent
cubeid=$builddir/cli/cubeid
K=$srcdir/deploy/kubernetes
peers=$srcdir/tests/lib/go-peers.sh
# shellcheck source=lib/k8s-render.sh
. "$srcdir/tests/lib/k8s-render.sh"

PY=
for p in python3 /usr/bin/python3; do
	if command -v "$p" >/dev/null 2>&1 && "$p" -c 'import yaml' 2>/dev/null; then
		PY=$p
		break
	fi
done
if [ -z "$PY" ]; then
	echo "SKIP: no python3 with yaml (Debian: python3-yaml)"
	exit 77
fi
need() { # need VAR TOOL...: a Go-built tool, or skip (a failure under CI=true)
	local out rc
	out=$(bash "$peers" "${@:2}" 2>"$D/peers.err")
	rc=$?
	if [ $rc -ne 0 ]; then
		cat "$D/peers.err" >&2
		if [ "${CI:-}" = true ] || [ $rc -ne 3 ]; then
			echo "not ok - go-peers.sh ${*:2} failed (exit $rc)"
			exit 1
		fi
		echo "SKIP: no usable Go for ${*:2}"
		exit 77
	fi
	printf -v "$1" '%s' "$out"
}
D=$(mktemp -d /tmp/cubeid-k8s.XXXXXX) || exit 1
trap 'rm -rf "$D"' EXIT
fails=0
n=0
ok() { n=$((n + 1)); echo "ok $n - $1"; }
notok() {
	n=$((n + 1))
	fails=$((fails + 1))
	echo "not ok $n - $1"
	[ -s "$D/err" ] && sed 's/^/    | /' "$D/err"
}
assert() { if "${@:2}"; then ok "$1"; else notok "$1"; fi; }

need kustomize path kustomize
need kubeconform path kubeconform
need swagger k8s-openapi
echo "# kustomize: $kustomize"
echo "# kubeconform: $kubeconform"
echo "# schemas from: $swagger"

# render: every rendering of tests/lib/k8s-render.sh
R=$D/rendered
mkdir -p "$R"
for name in $(printf '%s\n' "$K8S_RENDERINGS" | cut -d= -f1); do
	if k8s_render "$kustomize" "$K" "$name" "$R" 2>"$D/err"; then
		ok "kustomize build $name ($(grep -c '^kind:' "$R/$name.yaml") objects)"
	else
		notok "kustomize build $name"
	fi
done
rm -rf "$R"/.k-*
assert "kubelet-pods: hostNetwork, no pod-lister, the secure port" \
	eval 'grep -q "hostNetwork: true" "$R/tpm-kubelet.yaml" && ! grep -q "name: pod-lister" "$R/tpm-kubelet.yaml" && grep -q "https://127.0.0.1:10250/pods" "$R/tpm-kubelet.yaml"'
assert "cluster-trust: CUBEID_NODE_NAME from spec.nodeName, a Role for ConfigMaps, the store" \
	eval 'grep -q "name: CUBEID_NODE_NAME" "$R/tpm-cluster.yaml" && grep -q "fieldPath: spec.nodeName" "$R/tpm-cluster.yaml" && grep -q "name: cubeid-agent-publications" "$R/tpm-cluster.yaml" && grep -q "store: kubernetes" "$R/tpm-cluster.yaml"'

# schemas for what the manifests use
if "$PY" "$srcdir/tests/lib/k8s-schemas.py" "$swagger" "$D/schemas" "$R"/*.yaml >"$D/out" 2>"$D/err"; then
	ok "schemas made from the Kubernetes OpenAPI spec ($(wc -l <"$D/out") kinds)"
	sed 's/^/#   /' "$D/out"
else
	notok "schemas made from the Kubernetes OpenAPI spec"
fi
loc="$D/schemas/{{ .ResourceKind }}{{ .KindSuffix }}.json"
kc() { "$kubeconform" -strict -summary -schema-location "$loc" "$@"; }

for f in "$R"/*.yaml; do
	if kc "$f" >"$D/out" 2>"$D/err"; then
		ok "kubeconform -strict $(basename "$f"): $(tail -1 "$D/out")"
	else
		cat "$D/out" >>"$D/err"
		notok "kubeconform -strict $(basename "$f")"
	fi
done

# the validator must be able to say no
bad() { # bad NAME SED-EXPR: the softhsm-dev rendering, broken, must fail
	sed "$2" "$R/overlays-softhsm-dev.yaml" >"$D/bad.yaml"
	if cmp -s "$D/bad.yaml" "$R/overlays-softhsm-dev.yaml"; then
		notok "broken manifest ($1): the edit changed nothing"
	elif kc "$D/bad.yaml" >"$D/out" 2>&1; then
		notok "kubeconform rejects $1"
	else
		ok "kubeconform rejects $1"
	fi
}
bad "a misspelt field (contianers)" '0,/^      containers:/s//      contianers:/'
bad "a wrong type (terminationGracePeriodSeconds: ten)" 's/terminationGracePeriodSeconds: 10/terminationGracePeriodSeconds: ten/'
bad "an unknown kind (DaemonSett)" 's/^kind: DaemonSet$/kind: DaemonSett/'

# the config and the entries, through the agent's own parsers
"$PY" - "$R/overlays-tpm.yaml" "$D" <<'EOF'
import sys, yaml
for d in yaml.safe_load_all(open(sys.argv[1])):
    if d and d["kind"] == "ConfigMap" and d["metadata"]["name"] == "cubeid-agent":
        open(sys.argv[2] + "/config.yaml", "w").write(d["data"]["config.yaml"])
        open(sys.argv[2] + "/entries.yaml", "w").write(d["data"]["entries.yaml"])
EOF
if "$agent" --check --offline --config "$D/config.yaml" --entries "$D/entries.yaml" >"$D/out" 2>"$D/err"; then
	ok "cubeid-agent --check accepts the ConfigMap's config and entries: $(cat "$D/out")"
else
	notok "cubeid-agent --check accepts the ConfigMap's config and entries"
fi
"$cubeid" entry list --entries "$D/entries.yaml" >"$D/list" 2>"$D/err" || notok "cubeid entry list"
# the kubelet-pods component's config (the secure port's keys) too
"$PY" - "$R/tpm-kubelet.yaml" "$D" <<'EOF'
import sys, yaml
for d in yaml.safe_load_all(open(sys.argv[1])):
    if d and d["kind"] == "ConfigMap" and d["metadata"]["name"] == "cubeid-agent":
        open(sys.argv[2] + "/config-kubelet.yaml", "w").write(d["data"]["config.yaml"])
EOF
if "$agent" --check --offline --config "$D/config-kubelet.yaml" --entries "$D/entries.yaml" >"$D/out" 2>"$D/err"; then
	ok "cubeid-agent --check accepts the kubelet-pods config"
else
	notok "cubeid-agent --check accepts the kubelet-pods config"
fi
# the cluster-trust component's config too
"$PY" - "$R/tpm-cluster.yaml" "$D" <<'EOF'
import sys, yaml
for d in yaml.safe_load_all(open(sys.argv[1])):
    if d and d["kind"] == "ConfigMap" and d["metadata"]["name"] == "cubeid-agent":
        open(sys.argv[2] + "/config-cluster.yaml", "w").write(d["data"]["config.yaml"])
EOF
if "$agent" --check --offline --config "$D/config-cluster.yaml" --entries "$D/entries.yaml" >"$D/out" 2>"$D/err"; then
	ok "cubeid-agent --check accepts the cluster-trust config"
else
	notok "cubeid-agent --check accepts the cluster-trust config"
fi
for e in 'spiffe://{td}/ns/{k8s:ns}/sa/{k8s:sa}' \
	'spiffe://{td}/ns/agentcube-system/sa/agentcube-router' \
	'spiffe://{td}/ns/agentcube-system/sa/workloadmanager'; do
	assert "the entries have $e" grep -qF "$e" "$D/list"
done
# one identity per pod: no two entries can give one pod two SPIFFE IDs
if "$cubeid" entry check --entries "$D/entries.yaml" >"$D/out" 2>"$D/err" && ! [ -s "$D/err" ]; then
	ok "cubeid entry check: the ConfigMap's entries give each pod one identity: $(cat "$D/out")"
else
	notok "cubeid entry check: the ConfigMap's entries give each pod one identity: $(cat "$D/out" "$D/err")"
fi
# and the check sees the old sandbox entry, which gave PicoD a second ID
cat "$D/entries.yaml" - >"$D/entries-picod.yaml" <<'EOY'
  - name: picod
    spiffe_id: spiffe://{td}/ns/{k8s:ns}/sa/{k8s:sa}/picod
    selectors: [k8s:pod-label:app.kubernetes.io/component:picod, k8s:ns, k8s:sa]
EOY
"$cubeid" entry check --entries "$D/entries-picod.yaml" >"$D/out" 2>"$D/err"
assert "cubeid entry check warns of a sandbox entry beside the default" \
	grep -q "entry 'default' and $D/entries-picod.yaml:[0-9]*: entry 'picod' can both match" "$D/err"
assert "the DaemonSet probes /healthz" grep -q 'path: /healthz' "$R/overlays-tpm.yaml"
assert "the DaemonSet probes /readyz" grep -q 'path: /readyz' "$R/overlays-tpm.yaml"
assert "the socket directory is the host's /run/cubeid" grep -q 'path: /run/cubeid$' "$R/overlays-tpm.yaml"
assert "everything is in agentcube-system" \
	[ "$(grep -c '^  namespace: agentcube-system' "$R/overlays-tpm.yaml")" -ge 5 ]
assert "the TPM overlay mounts /dev/tpmrm0" grep -q 'path: /dev/tpmrm0' "$R/overlays-tpm.yaml"
assert "the dev overlay makes a SoftHSM2 token" grep -q 'cubeid token dev-init' "$R/overlays-softhsm-dev.yaml"

echo "1..$n"
[ "$fails" -eq 0 ]
