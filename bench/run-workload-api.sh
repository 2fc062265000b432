#!/bin/bash
# Run bench/workload-api against real agents, in one run:
#   1. cubeid-agent --dev on a temp state dir and socket, with N registration
#      entries that match nobody (default 10,000) plus the dev entry for our
#      uid; the bench measures latency, RSS with 1,000 streams and JWT-SVID
#      throughput against raw C_Sign; then SIGTERM (it must exit 0).
#   2. SPIRE side by side, when tests/lib/go-peers.sh has already built it
#      (never builds it here): spire-server + spire-agent on loopback and
#      temp sockets, join token, unix workload attestor, one entry for our
#      uid; the same latency and RSS figures and the cached JWT rate.
#
#   run-workload-api.sh [--smoke] [--entries N] [--no-spire] [bench options]
#
# CUBEID_BUILDDIR names the build tree (default .); `make bench` sets it.
set -u
builddir=${CUBEID_BUILDDIR:-.}
srcdir=$(cd "$(dirname "$0")/.." && pwd)
bench=$builddir/bench/workload-api
agent=$builddir/agent/cubeid-agent
cubeid=$builddir/cli/cubeid
n_entries=10000
smoke=no
spire=yes
args=()
while [ $# -gt 0 ]; do
	case $1 in
	--smoke) smoke=yes; spire=no; n_entries=10; args+=(--smoke) ;;
	--entries) n_entries=$2; shift ;;
	--no-spire) spire=no ;;
	*) args+=("$1") ;;
	esac
	shift
done

[ -n "${CUBEID_SOFTHSM_MODULE:-}" ] && export CUBEID_PKCS11_MODULE=$CUBEID_SOFTHSM_MODULE
unset CUBEID_TOKEN CUBEID_PIN CUBEID_PIN_FILE CUBEID_STATE_DIR SPIFFE_ENDPOINT_SOCKET
# 1,000 streams are 1,000 fds in the agent and in the bench.
ulimit -n 8192 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

D=$(mktemp -d "${TMPDIR:-/tmp}/cubeid-bench-wl.XXXXXX") || exit 1
pids=()
cleanup() {
	local p
	for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
	if [ "${KEEP:-}" = 1 ]; then echo "kept $D"; else rm -rf "$D"; fi
}
trap cleanup EXIT
uid=$(id -u)

echo "workload-api: $(date -u '+%Y-%m-%d %H:%M UTC') on $(uname -n), $(nproc) CPUs," \
	"load average $(cut -d' ' -f1-3 /proc/loadavg)"

# Entries that match nobody: uids far above any real one.  They get a
# directory of their own: the agent may watch the entries file's directory,
# and the logs and status files written next to it must not look like edits.
mkdir -p "$D/entries"
awk -v n="$n_entries" 'BEGIN {
	print "entries:"
	for (i = 0; i < n; i++) {
		printf "  - name: bench-%d\n    spiffe_id: spiffe://{td}/bench/e%d\n", i, i
		printf "    selectors: [unix:uid:%d]\n", 3000000 + i
	}
}' >"$D/entries/entries.yaml"

S=$D/run/agent.sock
t0=$(date +%s.%N)
"$agent" --dev --state-dir "$D/state" --socket "$S" --entries "$D/entries/entries.yaml" \
	>"$D/agent.out" 2>"$D/agent.err" &
apid=$!
pids+=("$apid")
up=no
for _ in $(seq 1 600); do
	if [ -S "$S" ] && "$cubeid" status -o json --socket "$S" >"$D/status" 2>/dev/null; then
		up=yes
		break
	fi
	kill -0 "$apid" 2>/dev/null || break
	sleep 0.1
done
if [ "$up" != yes ]; then
	echo "workload-api: cubeid-agent did not come up"
	sed 's/^/    | /' "$D/agent.err" | tail -20
	exit 1
fi
t1=$(date +%s.%N)
echo "cubeid-agent --dev up in $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }') s (new token and CA)," \
	"$(grep -o '"entries": *[0-9]*' "$D/status" | grep -o '[0-9]*$') entries loaded" \
	"($n_entries that match nobody + the dev entry)"

"$bench" --socket "$S" --pid "$apid" --name cubeid-agent "${args[@]}"
rc=$?

kill -TERM "$apid"
wait "$apid"
arc=$?
pids=()
if [ "$arc" -ne 0 ]; then
	echo "workload-api: cubeid-agent exited with status $arc after SIGTERM"
	sed 's/^/    | /' "$D/agent.err" | tail -20
	rc=1
fi
[ "$rc" -ne 0 ] && exit "$rc"
[ "$spire" = yes ] || exit 0

# ---- SPIRE, only if it is already built -------------------------------
peers=$srcdir/tests/lib/go-peers.sh
ver=$(sed -n 's/^SPIRE_VERSION=//p' "$peers")
cache=${CUBEID_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/cubeid}
server=$cache/go/spire-server-$ver/bin/spire-server
sagent=$cache/go/spire-agent-$ver/bin/spire-agent
if [ ! -x "$server" ] || [ ! -x "$sagent" ]; then
	echo
	echo "=================================================================="
	echo "SPIRE comparison skipped: not built (run tests/lib/go-peers.sh build-all)"
	echo "=================================================================="
	exit 0
fi

TD=cluster.local
. "$srcdir/tests/lib/free-port.sh"
port=$(free_port) || { echo "no free port"; exit 1; }
ssock=$D/spire/server.sock
asock=$D/spire/agent/agent.sock
mkdir -p "$D/spire/agent"
cat >"$D/spire/server.conf" <<EOF
server {
  bind_address = "127.0.0.1"
  bind_port = "$port"
  socket_path = "$ssock"
  trust_domain = "$TD"
  data_dir = "$D/spire/server-data"
  log_level = "WARN"
}
plugins {
  DataStore "sql" {
    plugin_data {
      database_type = "sqlite3"
      connection_string = "$D/spire/server-data/datastore.sqlite3"
    }
  }
  KeyManager "memory" { plugin_data {} }
  NodeAttestor "join_token" { plugin_data {} }
}
EOF
cat >"$D/spire/agent.conf" <<EOF
agent {
  data_dir = "$D/spire/agent-data"
  log_level = "WARN"
  server_address = "127.0.0.1"
  server_port = "$port"
  socket_path = "$asock"
  trust_domain = "$TD"
  insecure_bootstrap = true
}
plugins {
  KeyManager "memory" { plugin_data {} }
  NodeAttestor "join_token" { plugin_data {} }
  WorkloadAttestor "unix" { plugin_data {} }
}
EOF
"$server" run -config "$D/spire/server.conf" >"$D/spire/server.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 120); do
	"$server" healthcheck -socketPath "$ssock" >/dev/null 2>&1 && break
	sleep 0.5
done
if ! "$server" healthcheck -socketPath "$ssock" >/dev/null 2>&1; then
	echo "SPIRE comparison skipped: spire-server did not come up"
	tail -5 "$D/spire/server.log"
	exit 0
fi
token=$("$server" token generate -socketPath "$ssock" -spiffeID "spiffe://$TD/host" | awk '{print $2}')
"$server" entry create -socketPath "$ssock" -parentID "spiffe://$TD/host" \
	-spiffeID "spiffe://$TD/unix/uid/$uid" -selector "unix:uid:$uid" >/dev/null
"$sagent" run -config "$D/spire/agent.conf" -joinToken "$token" >"$D/spire/agent.log" 2>&1 &
spid=$!
pids+=("$spid")
up=no
for _ in $(seq 1 120); do
	if "$cubeid" svid fetch --socket "$asock" --out "$D/spire/svid" >/dev/null 2>&1; then
		up=yes
		break
	fi
	sleep 0.5
done
if [ "$up" != yes ]; then
	echo "SPIRE comparison skipped: spire-agent served no SVID"
	tail -5 "$D/spire/agent.log"
	exit 0
fi
echo
echo "SPIRE $ver side by side: spire-server (sqlite, memory key manager) + spire-agent"
echo "(join token, unix attestor, 1 entry; SPIRE has no 10,000-entry load here)"
"$bench" --socket "$asock" --pid "$spid" --name spire-agent --no-raw --no-uncached \
	"${args[@]}"
rc=$?
exit "$rc"
