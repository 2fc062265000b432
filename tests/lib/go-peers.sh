#!/bin/bash
# go-peers.sh: build the Go test peers (spiffe-helper, spire-server,
# spire-agent) and our go-spiffe checker (tests/interop) from the Go module
# proxy into a cache keyed by version, so that a rerun is instant.
#
#   go-peers.sh path TOOL          print the binary's path, building it first
#   go-peers.sh build-all [--skip-spire]
#   go-peers.sh go                 print the go command that would be used
#
# Cache layout (nothing is written outside it):
#   ${CUBEID_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/cubeid}/go/
#     <tool>-<version>/bin/<tool>     the binaries
#     gopath/  (GOPATH, GOMODCACHE)   gocache/ (GOCACHE)   config/ (go's
#     telemetry and env file)         toolchain/ (the fallback Go, if any)
#
# Exit status: 0 ok; 1 a download or build failed; 2 usage; 3 no usable Go.
# Callers decide whether that is a skip or a failure (in CI it is a failure).
set -eu

SPIFFE_HELPER_VERSION=v0.11.0
SPIRE_VERSION=v1.13.3
# Kubernetes manifests (tests/k8s-manifests.sh): kubeconform validates them
# against schemas made from the Kubernetes OpenAPI spec of
# k8s.io/kubernetes@K8S_VERSION; kustomize renders the overlays.
KUBECONFORM_VERSION=v0.7.0
KUSTOMIZE_VERSION=v5.5.0
K8S_VERSION=v1.32.4
# grpcurl: a gRPC client that finds services through server reflection
# (tests/grpc-reflection.sh).
GRPCURL_VERSION=v1.9.3
# SPIRE v1.13.3 and spiffe-helper v0.11.0 declare "go 1.25.3".
PEERS_MIN_GO=1.25.3
# Fallback for machines whose Go is too old (Debian 12 ships 1.19): fetch
# this Go toolchain as a module through the module proxy with the old go.
FALLBACK_GO=1.27.3
FALLBACK_OLDEST_BOOTSTRAP=1.19

prog=go-peers.sh
here=$(cd "$(dirname "$0")" && pwd)
srcdir=${CUBEID_SRCDIR:-$(cd "$here/../.." && pwd)}
interop_dir=$srcdir/tests/interop

cache=${CUBEID_CACHE_DIR:-${XDG_CACHE_HOME:-${HOME:?HOME is not set}/.cache}/cubeid}
godir=$cache/go

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

# Keep every file the go command writes under the cache directory.
export GOPATH=$godir/gopath
export GOMODCACHE=$godir/gopath/pkg/mod
export GOCACHE=$godir/gocache
# The user's "go env -w" settings (GOPROXY...) are still read, from where
# they were; go's telemetry counters go to the cache's config/ directory.
export GOENV=${GOENV:-${XDG_CONFIG_HOME:-$HOME/.config}/go/env}
export XDG_CONFIG_HOME=$godir/config
export GOFLAGS="-modcacherw -buildvcs=false"
export GOTOOLCHAIN=local
export CGO_ENABLED=0 # static test tools; SPIRE overrides it below
unset GOBIN GOROOT GOWORK GOOS GOARCH 2>/dev/null || true

# version_ge A B: true when Go version A >= B (forms 1.19, 1.25.3, 1.26rc1).
version_ge() {
	local a b i x y
	IFS=. read -r -a a <<<"${1%%[a-z]*}"
	IFS=. read -r -a b <<<"${2%%[a-z]*}"
	for i in 0 1 2; do
		x=${a[$i]:-0}
		y=${b[$i]:-0}
		((10#$x > 10#$y)) && return 0
		((10#$x < 10#$y)) && return 1
	done
	return 0
}

go_version_of() { # prints 1.26.8 for a working go binary, else fails
	local v
	v=$("$1" env GOVERSION 2>/dev/null) || return 1
	v=${v#go}
	[ -n "$v" ] || return 1
	echo "$v"
}

# Fetch golang.org/toolchain@v0.0.1-go$FALLBACK_GO.linux-$arch with an older
# go (>= 1.19) and print the path of its bin/go.
fetch_toolchain() {
	local oldgo=$1 arch mod dir scratch json
	case $(uname -m) in
	x86_64) arch=amd64 ;;
	aarch64) arch=arm64 ;;
	*) die 3 "no fallback Go toolchain for machine $(uname -m)" ;;
	esac
	mod=golang.org/toolchain@v0.0.1-go$FALLBACK_GO.linux-$arch
	dir=$GOMODCACHE/$mod
	if [ -x "$dir/bin/go" ] && [ -f "$dir/.cubeid-ready" ]; then
		echo "$dir/bin/go"
		return 0
	fi
	note "fetching Go $FALLBACK_GO ($mod) through the module proxy with $oldgo"
	scratch=$godir/toolchain/scratch
	mkdir -p "$scratch"
	[ -f "$scratch/go.mod" ] || printf 'module cubeid.invalid/toolchain\n\ngo 1.19\n' >"$scratch/go.mod"
	json=$(cd "$scratch" && GOFLAGS=-modcacherw "$oldgo" mod download -json "$mod") ||
		die 1 "could not download the Go toolchain module $mod with $oldgo"
	dir=$(printf '%s\n' "$json" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p')
	[ -n "$dir" ] && [ -f "$dir/bin/go" ] || die 1 "toolchain module $mod has no bin/go"
	# Module zips carry no file modes: make the tools executable, as the go
	# command itself does when it switches toolchains.
	find "$dir/bin" "$dir/pkg/tool" -type f -exec chmod 0755 {} + ||
		die 1 "could not mark the toolchain in $dir executable"
	"$dir/bin/go" version >/dev/null || die 1 "the fetched toolchain in $dir does not run"
	touch "$dir/.cubeid-ready"
	echo "$dir/bin/go"
}

# select_go MIN: print a go command of at least version MIN.
select_go() {
	local min=$1 cand v best="" bestv="" oldgo="" cands
	# CUBEID_GO names the one go command to start from (tests use it to try
	# the fallback with an old go).
	if [ -n "${CUBEID_GO:-}" ]; then
		cands=$CUBEID_GO
	else
		cands="$(command -v go 2>/dev/null || true) /usr/local/go/bin/go"
	fi
	for cand in $cands; do
		[ -n "$cand" ] && [ -x "$cand" ] || continue
		v=$(go_version_of "$cand") || continue
		if version_ge "$v" "$min"; then
			echo "$cand"
			return 0
		fi
		if [ -z "$bestv" ] || ! version_ge "$bestv" "$v"; then
			best=$cand
			bestv=$v
		fi
	done
	# Too old or missing: bootstrap a newer toolchain with any go >= 1.19.
	[ -n "${CUBEID_GO:-}" ] && cands=$CUBEID_GO || cands="$best $(echo /usr/lib/go-1.*/bin/go)"
	for cand in $cands; do
		[ -n "$cand" ] && [ -x "$cand" ] || continue
		v=$(go_version_of "$cand") || continue
		if version_ge "$v" "$FALLBACK_OLDEST_BOOTSTRAP"; then
			oldgo=$cand
			break
		fi
	done
	if [ -n "$oldgo" ] && version_ge "$FALLBACK_GO" "$min"; then
		note "Go $min or newer is needed; $oldgo is go$(go_version_of "$oldgo"), so using the fallback toolchain"
		fetch_toolchain "$oldgo"
		return 0
	fi
	die 3 "Go $min or newer is needed to build the Go test peers.
  Found: ${best:-no go command}${bestv:+ (go$bestv)}.
  Install Go $min+ (go in PATH or /usr/local/go/bin/go), or on Debian 12
  install the package golang-1.19-go, from which this script fetches Go
  $FALLBACK_GO through the Go module proxy."
}

# The go line of a go.mod.
gomod_go() { sed -n 's/^go \([0-9][0-9.a-z]*\).*/\1/p' "$1" | head -n1; }

# Builds write to a temporary directory and rename into place, under a lock,
# so parallel callers never see a half-written binary.
# One lock per tool (one for both SPIRE programs, which share a module).
with_lock() {
	mkdir -p "$godir"
	if command -v flock >/dev/null 2>&1; then
		exec 9>"$godir/.lock-$1"
		flock 9
	fi
}

install_bin() { # install_bin TOOL VERSION BUILT_FILE
	local dest=$godir/$1-$2/bin
	mkdir -p "$dest"
	mv -f "$3" "$dest/$1"
	echo "$dest/$1"
}

interop_version() {
	[ -f "$interop_dir/go.mod" ] || die 1 "checker source not found in $interop_dir (set CUBEID_SRCDIR)"
	# Key the cache on the checker's sources: any edit rebuilds it.
	(cd "$interop_dir" && cat go.mod go.sum *.go) | sha256sum | cut -c1-16
}

# The PicoD peers (tests/picod-peer: AgentCube's pkg/picod; tests/picod-jwtcheck:
# the golang-jwt fallback) are keyed like the checker, by their sources.
src_version() {
	[ -f "$1/go.mod" ] || die 1 "peer source not found in $1 (set CUBEID_SRCDIR)"
	(cd "$1" && cat go.mod go.sum *.go 2>/dev/null) | sha256sum | cut -c1-16
}

tool_version() {
	case $1 in
	spiffe-helper) echo "$SPIFFE_HELPER_VERSION" ;;
	spire-server | spire-agent) echo "$SPIRE_VERSION" ;;
	cubeid-interop) interop_version ;;
	kubeconform) echo "$KUBECONFORM_VERSION" ;;
	kustomize) echo "$KUSTOMIZE_VERSION" ;;
	grpcurl) echo "$GRPCURL_VERSION" ;;
	picod-peer | picod-jwtcheck) src_version "$srcdir/tests/$1" ;;
	bench-goclient) src_version "$srcdir/bench/goclient" ;;
	*) die 2 "unknown tool '$1' (spiffe-helper, spire-server, spire-agent, cubeid-interop, kubeconform, kustomize, grpcurl, picod-peer, picod-jwtcheck, bench-goclient)" ;;
	esac
}

# tool_module GOCMD DIR PKG@VERSION...: a scratch module in DIR that tracks
# the packages as tools.  "go install PKG@VERSION" is not usable here: it
# asks the proxy for the module's version list (refused for some modules),
# and SPIRE's go.mod has directives that go install rejects.
tool_module() {
	local gocmd=$1 dir=$2 want
	shift 2
	want="$*"
	mkdir -p "$dir"
	if [ -f "$dir/go.mod" ] && [ "$(cat "$dir/.cubeid-tools" 2>/dev/null)" = "$want" ]; then
		return 0
	fi
	printf 'module cubeid.invalid/go-peers\n\ngo %s\n' "$PEERS_MIN_GO" >"$dir/go.mod"
	rm -f "$dir/go.sum" "$dir/.cubeid-tools"
	note "resolving $want in $dir"
	(cd "$dir" && "$gocmd" get -tool "$@") || {
		rm -f "$dir/go.mod"
		die 1 "go get -tool $want failed"
	}
	echo "$want" >"$dir/.cubeid-tools"
}

build_tool() { # build_tool TOOL VERSION
	local tool=$1 ver=$2 gocmd tmp start end mod pkg
	tmp=$godir/.tmp-$tool-$$
	rm -rf "$tmp"
	mkdir -p "$tmp"
	build_tmp=$tmp
	trap 'rm -rf "$build_tmp"' EXIT
	start=$(date +%s)
	case $tool in
	spiffe-helper | spire-server | spire-agent)
		gocmd=$(select_go "$PEERS_MIN_GO")
		if [ "$tool" = spiffe-helper ]; then
			pkg=github.com/spiffe/spiffe-helper/cmd/spiffe-helper
			mod=$godir/spiffe-helper-$ver-module
			tool_module "$gocmd" "$mod" "$pkg@$ver"
		else
			# One module for both SPIRE programs.
			pkg=github.com/spiffe/spire/cmd/$tool
			mod=$godir/spire-$ver-module
			tool_module "$gocmd" "$mod" \
				"github.com/spiffe/spire/cmd/spire-agent@$ver" \
				"github.com/spiffe/spire/cmd/spire-server@$ver"
		fi
		# spire-server's sqlite3 datastore (the only one that needs no
		# database server) is cgo: SPIRE is built with cgo, as upstream does.
		cgo=0
		if [ "$tool" != spiffe-helper ]; then
			cgo=1
			command -v "${CC:-cc}" >/dev/null 2>&1 ||
				die 1 "building $tool needs a C compiler (${CC:-cc}) for SPIRE's sqlite3 datastore: install build-essential"
		fi
		note "building $tool $ver with $gocmd (CGO_ENABLED=$cgo)"
		(cd "$mod" && CGO_ENABLED=$cgo "$gocmd" build -trimpath -o "$tmp/$tool" "$pkg") ||
			die 1 "go build of $tool $ver failed"
		;;
	kubeconform | kustomize | grpcurl)
		gocmd=$(select_go "$PEERS_MIN_GO")
		case $tool in
		kubeconform) pkg=github.com/yannh/kubeconform/cmd/kubeconform ;;
		kustomize) pkg=sigs.k8s.io/kustomize/kustomize/v5 ;;
		grpcurl) pkg=github.com/fullstorydev/grpcurl/cmd/grpcurl ;;
		esac
		mod=$godir/$tool-$ver-module
		tool_module "$gocmd" "$mod" "$pkg@$ver"
		note "building $tool $ver with $gocmd"
		(cd "$mod" && "$gocmd" build -trimpath -o "$tmp/$tool" "$pkg") ||
			die 1 "go build of $tool $ver failed"
		;;
	cubeid-interop)
		gocmd=$(select_go "$(gomod_go "$interop_dir/go.mod")")
		note "building cubeid-interop ($ver) from $interop_dir with $gocmd"
		(cd "$interop_dir" && "$gocmd" build -mod=readonly -trimpath \
			-o "$tmp/$tool" .) ||
			die 1 "go build of the checker in $interop_dir failed"
		;;
	picod-peer | picod-jwtcheck)
		gocmd=$(select_go "$(gomod_go "$srcdir/tests/$tool/go.mod")")
		note "building $tool ($ver) from $srcdir/tests/$tool with $gocmd"
		(cd "$srcdir/tests/$tool" && "$gocmd" build -mod=readonly -trimpath \
			-o "$tmp/$tool" .) ||
			die 1 "go build of $tool in $srcdir/tests/$tool failed"
		;;
	bench-goclient)
		# bench/compare-spire's go-spiffe client, keyed by its sources.
		gocmd=$(select_go "$(gomod_go "$srcdir/bench/goclient/go.mod")")
		note "building $tool ($ver) from $srcdir/bench/goclient with $gocmd"
		(cd "$srcdir/bench/goclient" && "$gocmd" build -mod=readonly -trimpath \
			-o "$tmp/$tool" .) ||
			die 1 "go build of $tool in $srcdir/bench/goclient failed"
		;;
	esac
	[ -x "$tmp/$tool" ] || die 1 "$tool was not produced"
	end=$(date +%s)
	note "built $tool $ver in $((end - start)) s"
	install_bin "$tool" "$ver" "$tmp/$tool" >/dev/null
	rm -rf "$tmp"
	# The checker is keyed by a source hash: drop the builds of old sources.
	if [ "$tool" = cubeid-interop ] || [ "$tool" = picod-peer ] || [ "$tool" = picod-jwtcheck ] || [ "$tool" = bench-goclient ]; then
		find "$godir" -maxdepth 1 -name "$tool-*" ! -name "$tool-$ver" \
			-mmin +60 -exec rm -rf {} + 2>/dev/null || true
	fi
}

tool_path() {
	local tool=$1 ver bin
	ver=$(tool_version "$tool")
	bin=$godir/$tool-$ver/bin/$tool
	if [ ! -x "$bin" ]; then
		case $tool in
		spire-*) with_lock spire ;;
		*) with_lock "$tool" ;;
		esac
		[ -x "$bin" ] || build_tool "$tool" "$ver"
	fi
	echo "$bin"
}

usage() {
	cat >&2 <<EOF
usage: $prog path TOOL | build-all [--skip-spire] | go | k8s-openapi
  TOOL: cubeid-interop spiffe-helper spire-server spire-agent kubeconform kustomize grpcurl
        picod-peer picod-jwtcheck
  k8s-openapi: print the path of the Kubernetes OpenAPI v2 spec (swagger.json)
  of k8s.io/kubernetes@$K8S_VERSION, downloaded as a module
  cache: $godir
EOF
	exit 2
}

[ $# -ge 1 ] || usage
case $1 in
path)
	[ $# -eq 2 ] || usage
	tool_path "$2"
	;;
build-all)
	tools="cubeid-interop spiffe-helper spire-server spire-agent"
	[ "${2:-}" = --skip-spire ] && tools="cubeid-interop spiffe-helper"
	for t in $tools; do
		tool_path "$t"
	done
	;;
go)
	select_go "${2:-$PEERS_MIN_GO}"
	;;
k8s-openapi)
	# The module zip is only unpacked, never built (its go.mod has replace
	# directives): "go mod download" of one module needs none of them.
	gocmd=$(select_go 1.19)
	with_lock k8s-openapi
	scratch=$godir/k8s-openapi
	mkdir -p "$scratch"
	[ -f "$scratch/go.mod" ] || printf 'module cubeid.invalid/k8s-openapi\n\ngo 1.19\n' >"$scratch/go.mod"
	json=$(cd "$scratch" && "$gocmd" mod download -json "k8s.io/kubernetes@$K8S_VERSION") ||
		die 1 "could not download k8s.io/kubernetes@$K8S_VERSION"
	dir=$(printf '%s\n' "$json" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p')
	[ -f "$dir/api/openapi-spec/swagger.json" ] || die 1 "no api/openapi-spec/swagger.json in $dir"
	echo "$dir/api/openapi-spec/swagger.json"
	;;
*) usage ;;
esac
