#!/bin/bash
# Run bench/grpc-abuse against a real cubeid-agent --dev on a temp state
# dir and socket: a normal client's cached FetchJWTSVID latency alone, under
# an HPACK bomb and under rapid reset from K attacker processes, as ratios
# of one run.  Then SIGTERM (the agent must exit 0).
#
#   run-grpc-abuse.sh [--smoke] [--cgroups] [--agent-weight W] [bench options]
#
# --cgroups puts the agent, the client and the attackers each in a cgroup
# of its own, as on a node (the agent a systemd service, each pod in its
# own cgroup), so that CPU is shared by cgroup weight and not per process:
# cgroup v2 (cpu.weight) or v1's cpu controller (cpu.shares), written
# directly (needs root).  Each gets the default weight (100, or 1024
# shares) unless --agent-weight W sets the agent's (1-10000, as systemd's
# CPUWeight=).  Without a usable cpu controller, --cgroups skips (77).
#
# CUBEID_BUILDDIR names the build tree (default .); `make bench` sets it.
set -u
builddir=${CUBEID_BUILDDIR:-.}
bench=$builddir/bench/grpc-abuse
agent=$builddir/agent/cubeid-agent
cubeid=$builddir/cli/cubeid
args=()
cgroups=
agent_weight=100
while [ $# -gt 0 ]; do
	case $1 in
	--smoke) args+=(--seconds 0.5 --attackers 2) ;;
	--cgroups) cgroups=1 ;;
	--agent-weight)
		agent_weight=$2
		shift
		;;
	*) args+=("$1") ;;
	esac
	shift
done
[ -n "${CUBEID_SOFTHSM_MODULE:-}" ] && export CUBEID_PKCS11_MODULE=$CUBEID_SOFTHSM_MODULE
unset CUBEID_TOKEN CUBEID_PIN CUBEID_PIN_FILE CUBEID_STATE_DIR SPIFFE_ENDPOINT_SOCKET

D=$(mktemp -d "${TMPDIR:-/tmp}/cubeid-bench-abuse.XXXXXX") || exit 1
# the attackers run as another uid (grpc-abuse --attacker-uid): they must
# reach the socket
chmod 0711 "$D"
apid=
CG=
cleanup() {
	[ -n "$apid" ] && kill -TERM "$apid" 2>/dev/null && wait "$apid" 2>/dev/null
	rm -rf "$D"
	if [ -n "$CG" ]; then
		# every process in them has exited: the groups are empty
		rmdir "$CG"/agent "$CG"/client "$CG"/attackers "$CG" 2>/dev/null
	fi
}
trap cleanup EXIT

# cg_weight DIR W: give the cgroup DIR the weight W (systemd's CPUWeight=)
cg_weight() {
	if [ -e "$1/cpu.weight" ]; then
		echo "$2" >"$1/cpu.weight"
	else
		echo $(($2 * 1024 / 100)) >"$1/cpu.shares"
	fi
}
if [ -n "$cgroups" ]; then
	if grep -qw cpu /sys/fs/cgroup/cgroup.subtree_control 2>/dev/null; then
		root=/sys/fs/cgroup
	elif [ -e /sys/fs/cgroup/cpu/cpu.shares ]; then
		root=/sys/fs/cgroup/cpu
	else
		echo "SKIP: --cgroups: no cgroup cpu controller to write here"
		exit 77
	fi
	CG=$root/cubeid-bench-abuse.$$
	if ! mkdir "$CG" "$CG/agent" "$CG/client" "$CG/attackers" 2>/dev/null; then
		echo "SKIP: --cgroups: cannot make cgroups under $root (not root?)"
		CG=
		exit 77
	fi
	cg_weight "$CG/agent" "$agent_weight" || exit 1
	args+=(--attacker-cgroup "$CG/attackers")
fi

echo "grpc-abuse: $(date -u '+%Y-%m-%d %H:%M UTC') on $(uname -n), $(nproc) CPUs," \
	"load average $(cut -d' ' -f1-3 /proc/loadavg)"
[ -n "$CG" ] && echo "grpc-abuse: the agent, the client and the attackers each in a cgroup" \
	"under $CG (the agent's weight $agent_weight, the others 100)"
S=$D/run/agent.sock
printf 'entries: []\n' >"$D/entries.yaml"
# in_cgroup NAME CMD...: run CMD in the bench's cgroup NAME, if any
in_cgroup() {
	local name=$1
	shift
	[ -n "$CG" ] && echo "$BASHPID" >"$CG/$name/cgroup.procs"
	exec "$@"
}
in_cgroup agent "$agent" --dev --state-dir "$D/state" --socket "$S" --entries "$D/entries.yaml" \
	>"$D/agent.out" 2>"$D/agent.err" &
apid=$!
for _ in $(seq 1 600); do
	[ -S "$S" ] && "$cubeid" status -o json --socket "$S" >/dev/null 2>&1 && break
	kill -0 "$apid" 2>/dev/null || break
	sleep 0.1
done
if ! [ -S "$S" ]; then
	echo "grpc-abuse: cubeid-agent did not come up"
	sed 's/^/    | /' "$D/agent.err" | tail -20
	exit 1
fi
(in_cgroup client "$bench" --socket "$S" "${args[@]}")
rc=$?
kill -TERM "$apid"
wait "$apid"
arc=$?
apid=
if [ "$arc" -ne 0 ]; then
	echo "grpc-abuse: cubeid-agent exited with status $arc after SIGTERM"
	sed 's/^/    | /' "$D/agent.err" | tail -20
	exit 1
fi
exit $rc
