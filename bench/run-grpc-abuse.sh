#!/bin/bash
# Run bench/grpc-abuse against a real cubeid-agent --dev on a temp state
# dir and socket: a normal client's cached FetchJWTSVID latency alone, under
# an HPACK bomb and under rapid reset from K attacker processes, as ratios
# of one run.  Then SIGTERM (the agent must exit 0).
#
#   run-grpc-abuse.sh [--smoke] [bench options]
#
# CUBEID_BUILDDIR names the build tree (default .); `make bench` sets it.
set -u
builddir=${CUBEID_BUILDDIR:-.}
bench=$builddir/bench/grpc-abuse
agent=$builddir/agent/cubeid-agent
cubeid=$builddir/cli/cubeid
args=()
for a in "$@"; do
	case $a in
	--smoke) args+=(--seconds 0.5 --attackers 2) ;;
	*) args+=("$a") ;;
	esac
done
[ -n "${CUBEID_SOFTHSM_MODULE:-}" ] && export CUBEID_PKCS11_MODULE=$CUBEID_SOFTHSM_MODULE
unset CUBEID_TOKEN CUBEID_PIN CUBEID_PIN_FILE CUBEID_STATE_DIR SPIFFE_ENDPOINT_SOCKET

D=$(mktemp -d "${TMPDIR:-/tmp}/cubeid-bench-abuse.XXXXXX") || exit 1
# the attackers run as another uid (grpc-abuse --attacker-uid): they must
# reach the socket
chmod 0711 "$D"
apid=
cleanup() {
	[ -n "$apid" ] && kill -TERM "$apid" 2>/dev/null && wait "$apid" 2>/dev/null
	rm -rf "$D"
}
trap cleanup EXIT

echo "grpc-abuse: $(date -u '+%Y-%m-%d %H:%M UTC') on $(uname -n), $(nproc) CPUs," \
	"load average $(cut -d' ' -f1-3 /proc/loadavg)"
S=$D/run/agent.sock
printf 'entries: []\n' >"$D/entries.yaml"
"$agent" --dev --state-dir "$D/state" --socket "$S" --entries "$D/entries.yaml" \
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
"$bench" --socket "$S" "${args[@]}"
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
