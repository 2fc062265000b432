#!/bin/bash
# kube-apiserver.sh: a real Kubernetes API server for the tests.
# kube-apiserver, etcd and kubectl are built from the Go module proxy (as
# dependencies of a scratch module, the only way: both k8s.io/kubernetes and
# etcd's server module have replace directives that "go install" refuses)
# into a cache keyed by version, shared with tests/lib/go-peers.sh.  Then
# etcd and the API server are started on free loopback ports with client
# certificates, a static admin token, ServiceAccount tokens (TokenRequest)
# and RBAC.  No controller manager, scheduler or kubelet runs.
#
#   kube-apiserver.sh path TOOL   print the path of kube-apiserver, etcd or
#                                 kubectl, building all three first if needed
#   kube-apiserver.sh build       build (or find in the cache) all three
#   kube-apiserver.sh up DIR      start etcd and the API server with state in
#                                 DIR (a new or empty directory); wait for
#                                 /readyz; write DIR/env (see below)
#   kube-apiserver.sh restart DIR stop the API server and start it again
#                                 (etcd keeps the state; watches break)
#   kube-apiserver.sh down DIR    stop both, by the pids in DIR
#
# DIR/env, for tests to source: KUBE_SERVER (https://127.0.0.1:PORT),
# KUBE_CA (the CA file), KUBECONFIG (contexts "admin", token, the default;
# and "admin-cert", client certificate), KUBECTL, KUBE_ADMIN_TOKEN_FILE.
# Logs: DIR/etcd.log, DIR/apiserver.log.
#
# Cache layout (nothing is written outside it):
#   ${CUBEID_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/cubeid}/go/
#     kube-apiserver-<k8s version>-etcd-<etcd version>/bin/{kube-apiserver,etcd,kubectl}
#     kube-apiserver-<k8s version>-etcd-<etcd version>-module/  the scratch module
#     gopath/ gocache/ config/   as for go-peers.sh
#
# A cold build takes about 10 CPU-minutes and 3 GB of GOCACHE; afterwards
# the binaries come from the cache.  Builds go to a temporary directory that
# is renamed into place under a lock, so parallel tests build once.
#
# Exit status: 0 ok; 1 a build or start failed; 2 usage; 3 no usable Go.
set -eu

K8S_VERSION=v1.37.2
K8S_MINOR=37
# the k8s.io staging modules (api, apimachinery, client-go...) of K8S_VERSION
K8S_STAGING_VERSION=v0.37.2
# the etcd that k8s.io/kubernetes v1.37.2 pins
ETCD_VERSION=v3.7.0
# k8s.io/kubernetes v1.37.2's go.mod says "go 1.26.0"
K8S_MIN_GO=1.26.0

prog=kube-apiserver.sh
here=$(cd "$(dirname "$0")" && pwd)
cache=${CUBEID_CACHE_DIR:-${XDG_CACHE_HOME:-${HOME:?HOME is not set}/.cache}/cubeid}
godir=$cache/go
name=kube-apiserver-$K8S_VERSION-etcd-$ETCD_VERSION
bindir=$godir/$name/bin
moddir=$godir/$name-module

die() {
	local rc=$1
	shift
	{
		echo "=================================================================="
		echo "$prog: ERROR: $*"
		echo "=================================================================="
	} >&2
	exit "$rc"
}
note() { echo "$prog: $*" >&2; }

# The same go environment as go-peers.sh: everything under the cache.
export GOPATH=$godir/gopath
export GOMODCACHE=$godir/gopath/pkg/mod
export GOCACHE=$godir/gocache
export GOENV=${GOENV:-${XDG_CONFIG_HOME:-$HOME/.config}/go/env}
export XDG_CONFIG_HOME=$godir/config
export GOFLAGS="-modcacherw -buildvcs=false"
export GOTOOLCHAIN=local
export CGO_ENABLED=0
unset GOBIN GOROOT GOWORK GOOS GOARCH 2>/dev/null || true

# scratch_module GOCMD: the module whose tools are the three programs.  It
# carries k8s.io/kubernetes' staging replaces, each pointing at the
# published staging module of the same release.  One "go get" for all
# three, etcd pinned to what Kubernetes pins (a separate, unversioned one
# would take a newer etcd and upgrade grpc and x/net past what Kubernetes
# was tested with).
scratch_module() {
	local gocmd=$1 json kdir want
	want="$K8S_VERSION $ETCD_VERSION"
	if [ -f "$moddir/go.sum" ] && [ "$(cat "$moddir/.cubeid-tools" 2>/dev/null)" = "$want" ]; then
		return 0
	fi
	mkdir -p "$moddir"
	rm -f "$moddir/go.mod" "$moddir/go.sum" "$moddir/.cubeid-tools"
	printf 'module cubeid.invalid/kube-apiserver\n\ngo %s\n' "$K8S_MIN_GO" >"$moddir/go.mod"
	note "reading k8s.io/kubernetes@$K8S_VERSION's staging replaces"
	json=$(cd "$moddir" && "$gocmd" mod download -json "k8s.io/kubernetes@$K8S_VERSION") ||
		die 1 "could not download k8s.io/kubernetes@$K8S_VERSION"
	kdir=$(printf '%s\n' "$json" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p')
	[ -f "$kdir/go.mod" ] || die 1 "no go.mod in $kdir"
	{
		printf 'module cubeid.invalid/kube-apiserver\n\ngo %s\n\nreplace (\n' "$K8S_MIN_GO"
		sed -n "s|^[[:space:]]*\(k8s.io/[a-z0-9-]*\) => ./staging/src/k8s.io/.*|\t\1 => \1 $K8S_STAGING_VERSION|p" "$kdir/go.mod"
		printf ')\n'
	} >"$moddir/go.mod"
	grep -q "k8s.io/client-go => k8s.io/client-go $K8S_STAGING_VERSION" "$moddir/go.mod" ||
		die 1 "no staging replaces found in k8s.io/kubernetes@$K8S_VERSION's go.mod"
	note "resolving kube-apiserver, kubectl $K8S_VERSION and etcd $ETCD_VERSION in $moddir"
	(cd "$moddir" && "$gocmd" get -tool \
		"k8s.io/kubernetes/cmd/kube-apiserver@$K8S_VERSION" \
		"k8s.io/kubernetes/cmd/kubectl@$K8S_VERSION" \
		"go.etcd.io/etcd/server/v3@$ETCD_VERSION") || {
		rm -f "$moddir/go.mod"
		die 1 "go get -tool of kube-apiserver, kubectl, etcd failed"
	}
	echo "$want" >"$moddir/.cubeid-tools"
}

build_all() {
	local gocmd tmp start x p
	gocmd=$(bash "$here/go-peers.sh" go "$K8S_MIN_GO") || exit $?
	scratch_module "$gocmd"
	tmp=$godir/.tmp-$name-$$
	rm -rf "$tmp"
	mkdir -p "$tmp/bin"
	build_tmp=$tmp
	trap 'rm -rf "$build_tmp"' EXIT
	# Without the version stamps the server says v0.0.0-master+$Format:%H$
	# and kubectl cannot parse it.
	x=
	for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
		x="$x -X $p.gitVersion=$K8S_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$K8S_MINOR"
		x="$x -X $p.gitTreeState=clean -X $p.buildDate=2026-01-01T00:00:00Z"
	done
	start=$(date +%s)
	note "building etcd $ETCD_VERSION with $gocmd (cold: several minutes)"
	(cd "$moddir" && "$gocmd" build -trimpath -ldflags='-s -w' -o "$tmp/bin/etcd" \
		go.etcd.io/etcd/server/v3) || die 1 "go build of etcd failed"
	note "building kube-apiserver $K8S_VERSION (cold: about 10 CPU-minutes, 2.3 GB to link)"
	(cd "$moddir" && "$gocmd" build -trimpath -ldflags="-s -w$x" -o "$tmp/bin/kube-apiserver" \
		k8s.io/kubernetes/cmd/kube-apiserver) || die 1 "go build of kube-apiserver failed"
	note "building kubectl $K8S_VERSION"
	(cd "$moddir" && "$gocmd" build -trimpath -ldflags="-s -w$x" -o "$tmp/bin/kubectl" \
		k8s.io/kubernetes/cmd/kubectl) || die 1 "go build of kubectl failed"
	note "built etcd, kube-apiserver, kubectl in $(($(date +%s) - start)) s"
	rm -rf "$godir/$name"
	mv "$tmp" "$godir/$name"
	trap - EXIT
}

ensure_built() {
	local t ok=1
	for t in kube-apiserver etcd kubectl; do [ -x "$bindir/$t" ] || ok=0; done
	[ $ok = 1 ] && return 0
	mkdir -p "$godir"
	if command -v flock >/dev/null 2>&1; then
		exec 9>"$godir/.lock-$name"
		flock 9
	fi
	ok=1
	for t in kube-apiserver etcd kubectl; do [ -x "$bindir/$t" ] || ok=0; done
	[ $ok = 1 ] || build_all
	exec 9>&- 2>/dev/null || true
}

# --- starting and stopping -------------------------------------------------

# wait_up DESC PID CMD...: run CMD until it succeeds; fail at once if PID
# died.  The bound only keeps a wedged server from hanging the suite.
wait_up() {
	local desc=$1 pid=$2 i
	shift 2
	for i in $(seq 1 1200); do
		"$@" >/dev/null 2>&1 && return 0
		kill -0 "$pid" 2>/dev/null || return 1
		sleep 0.25
	done
	note "$desc: not ready after 300 s"
	return 1
}

make_pki() { # make_pki DIR
	local p=$1/pki
	mkdir -p "$p"
	(
		cd "$p" || exit 1
		umask 077
		openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
			-subj "/CN=cubeid test kubernetes CA" -keyout ca.key -out ca.crt &&
			openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
				-subj "/CN=kube-apiserver" -keyout apiserver.key -out apiserver.csr &&
			printf '%s\n' "subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local" \
				"extendedKeyUsage=serverAuth" >apiserver.ext &&
			openssl x509 -req -in apiserver.csr -CA ca.crt -CAkey ca.key -CAcreateserial \
				-days 2 -extfile apiserver.ext -out apiserver.crt &&
			openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
				-subj "/O=system:masters/CN=admin" -keyout admin.key -out admin.csr &&
			printf 'extendedKeyUsage=clientAuth\n' >admin.ext &&
			openssl x509 -req -in admin.csr -CA ca.crt -CAkey ca.key -CAcreateserial \
				-days 2 -extfile admin.ext -out admin.crt &&
			openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out sa.key &&
			openssl pkey -in sa.key -pubout -out sa.pub
	) >"$1/pki.log" 2>&1 || die 1 "making the test PKI failed: $(cat "$1/pki.log")"
	chmod 0644 "$p/ca.crt"
}

start_apiserver() { # start_apiserver DIR: run DIR/apiserver.sh in the background
	sh "$1/apiserver.sh" </dev/null >>"$1/apiserver.log" 2>&1 &
	echo $! >"$1/apiserver.pid"
}

# wait_ready DIR: until /readyz answers (or the server died)
wait_ready() {
	local port t0=$SECONDS
	port=$(sed -n 's|^KUBE_SERVER=https://127.0.0.1:||p' "$1/env")
	if ! wait_up kube-apiserver "$(cat "$1/apiserver.pid")" \
		curl -sf --noproxy '*' --cacert "$1/pki/ca.crt" -H @"$1/auth-header" \
		"https://127.0.0.1:$port/readyz"; then
		note "kube-apiserver did not become ready; the end of its log and etcd's:"
		tail -30 "$1/apiserver.log" >&2
		tail -10 "$1/etcd.log" >&2
		return 1
	fi
	note "kube-apiserver $K8S_VERSION ready on https://127.0.0.1:$port in $((SECONDS - t0)) s"
}

do_up() {
	local dir=$1 api etcdbin kubectl etcd_port peer_port port tok i
	mkdir -p "$dir"
	dir=$(cd "$dir" && pwd)
	[ ! -e "$dir/apiserver.pid" ] || die 2 "$dir already has a server (down it first)"
	ensure_built
	api=$bindir/kube-apiserver
	etcdbin=$bindir/etcd
	kubectl=$bindir/kubectl
	command -v openssl >/dev/null || die 1 "openssl is needed"
	command -v curl >/dev/null || die 1 "curl is needed"
	# shellcheck source=free-port.sh
	. "$here/free-port.sh"
	etcd_port=$(free_port) && peer_port=$(free_port) && port=$(free_port) ||
		die 1 "no free port"
	[ "$etcd_port" != "$peer_port" ] && [ "$port" != "$etcd_port" ] && [ "$port" != "$peer_port" ] ||
		die 1 "free_port gave the same port twice; try again"
	make_pki "$dir"
	(umask 077 && openssl rand -hex 32 >"$dir/admin-token")
	tok=$(cat "$dir/admin-token")
	(umask 077 && printf '%s,admin,admin-uid,system:masters\n' "$tok" >"$dir/pki/tokens.csv")
	(umask 077 && printf 'Authorization: Bearer %s\n' "$tok" >"$dir/auth-header")
	# An audit log of every ConfigMap request: tests read who did what.
	printf '%s\n' 'apiVersion: audit.k8s.io/v1' 'kind: Policy' 'omitStages: ["RequestReceived"]' \
		'rules:' '  - level: Metadata' '    resources:' '      - group: ""' \
		'        resources: ["configmaps"]' '  - level: None' >"$dir/audit-policy.yaml"
	# etcd: a test's data, so no fsync; loopback only
	"$etcdbin" --name cubeid-test --data-dir "$dir/etcd" \
		--listen-client-urls "http://127.0.0.1:$etcd_port" \
		--advertise-client-urls "http://127.0.0.1:$etcd_port" \
		--listen-peer-urls "http://127.0.0.1:$peer_port" \
		--initial-advertise-peer-urls "http://127.0.0.1:$peer_port" \
		--initial-cluster "cubeid-test=http://127.0.0.1:$peer_port" \
		--unsafe-no-fsync --log-level warn \
		</dev/null >"$dir/etcd.log" 2>&1 &
	echo $! >"$dir/etcd.pid"
	# --allow-privileged: the tpm overlay's DaemonSet is privileged (kubeadm
	# and kind allow it too).  --endpoint-reconciler-type=none: the
	# "kubernetes" Service's endpoint would be 127.0.0.1, which Endpoints
	# validation refuses.
	# kept in a script: "restart" runs it again
	{
		echo '#!/bin/sh'
		printf 'exec %q' "$api"
		printf ' %q' --etcd-servers="http://127.0.0.1:$etcd_port" \
			--bind-address=127.0.0.1 --advertise-address=127.0.0.1 --secure-port="$port" \
			--cert-dir="$dir/pki" \
			--tls-cert-file="$dir/pki/apiserver.crt" --tls-private-key-file="$dir/pki/apiserver.key" \
			--client-ca-file="$dir/pki/ca.crt" --token-auth-file="$dir/pki/tokens.csv" \
			--service-account-issuer=https://kubernetes.default.svc.cluster.local \
			--service-account-key-file="$dir/pki/sa.pub" \
			--service-account-signing-key-file="$dir/pki/sa.key" \
			--api-audiences=https://kubernetes.default.svc.cluster.local \
			--authorization-mode=RBAC --allow-privileged=true \
			--service-cluster-ip-range=10.96.0.0/16 --endpoint-reconciler-type=none \
			--enable-priority-and-fairness=false --profiling=false \
			--audit-policy-file="$dir/audit-policy.yaml" --audit-log-path="$dir/audit.log" \
			--audit-log-mode=blocking --audit-log-format=json --v=1
		echo
	} >"$dir/apiserver.sh"
	start_apiserver "$dir"
	{
		echo "apiVersion: v1"
		echo "kind: Config"
		echo "clusters:"
		echo "  - name: local"
		echo "    cluster:"
		echo "      server: https://127.0.0.1:$port"
		echo "      certificate-authority: $dir/pki/ca.crt"
		echo "users:"
		echo "  - name: admin"
		echo "    user:"
		echo "      tokenFile: $dir/admin-token"
		echo "  - name: admin-cert"
		echo "    user:"
		echo "      client-certificate: $dir/pki/admin.crt"
		echo "      client-key: $dir/pki/admin.key"
		echo "contexts:"
		echo "  - name: admin"
		echo "    context: {cluster: local, user: admin}"
		echo "  - name: admin-cert"
		echo "    context: {cluster: local, user: admin-cert}"
		echo "current-context: admin"
	} >"$dir/kubeconfig"
	chmod 0600 "$dir/kubeconfig"
	{
		echo "KUBE_SERVER=https://127.0.0.1:$port"
		echo "KUBE_CA=$dir/pki/ca.crt"
		echo "KUBECONFIG=$dir/kubeconfig"
		echo "KUBECTL=$kubectl"
		echo "KUBE_ADMIN_TOKEN_FILE=$dir/admin-token"
		echo "KUBE_AUDIT_LOG=$dir/audit.log"
		echo "export KUBECONFIG"
	} >"$dir/env"
	if ! wait_ready "$dir"; then
		do_down "$dir"
		exit 1
	fi
	# What kube-controller-manager would make: the default ServiceAccounts.
	for i in default kube-system; do
		KUBECONFIG=$dir/kubeconfig "$kubectl" -n "$i" create serviceaccount default \
			>/dev/null 2>>"$dir/apiserver.log" || true
	done
}

stop_pid() { # stop_pid PIDFILE: TERM, then KILL if it is still there
	local pid i
	[ -f "$1" ] || return 0
	pid=$(cat "$1")
	if [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null; then
		for i in $(seq 1 300); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		kill -KILL "$pid" 2>/dev/null || true
	fi
	rm -f "$1"
}

do_down() {
	stop_pid "$1/apiserver.pid"
	stop_pid "$1/etcd.pid"
}

usage() {
	cat >&2 <<EOF
usage: $prog path TOOL | build | up DIR | restart DIR | down DIR
  TOOL: kube-apiserver etcd kubectl
  versions: k8s.io/kubernetes $K8S_VERSION, etcd $ETCD_VERSION
  cache: $godir/$name
EOF
	exit 2
}

[ $# -ge 1 ] || usage
case $1 in
path)
	[ $# -eq 2 ] || usage
	case $2 in kube-apiserver | etcd | kubectl) ;; *) usage ;; esac
	ensure_built
	echo "$bindir/$2"
	;;
build)
	ensure_built
	echo "$bindir"
	;;
up)
	[ $# -eq 2 ] || usage
	do_up "$2"
	;;
down)
	[ $# -eq 2 ] || usage
	do_down "$2"
	;;
restart)
	# the API server only (etcd keeps the state): open watches break
	[ $# -eq 2 ] && [ -f "$2/apiserver.sh" ] || usage
	stop_pid "$2/apiserver.pid"
	start_apiserver "$2"
	wait_ready "$2" || exit 1
	;;
*) usage ;;
esac
