#!/bin/bash
# Run bench/picod-auth against a real cubeid-agent --dev on a temp state
# directory: the Router's entry (picod_signer) and the --dev user (the
# sandbox) for this uid.  The agent's PicoD key is rotated during the run.
#
#   run-picod-auth.sh [--smoke] [bench options]
#
# CUBEID_BUILDDIR names the build tree (default .); `make bench` sets it.
set -u
builddir=${CUBEID_BUILDDIR:-.}
bench=$builddir/bench/picod-auth
agent=$builddir/agent/cubeid-agent
cubeid=$builddir/cli/cubeid

[ -n "${CUBEID_SOFTHSM_MODULE:-}" ] && export CUBEID_PKCS11_MODULE=$CUBEID_SOFTHSM_MODULE
unset CUBEID_TOKEN CUBEID_PIN CUBEID_PIN_FILE CUBEID_STATE_DIR SPIFFE_ENDPOINT_SOCKET \
	PICOD_AUTH_PUBLIC_KEY
D=$(mktemp -d "${TMPDIR:-/tmp}/cubeid-bench-picod.XXXXXX") || exit 1
pid=
cleanup() {
	[ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
	if [ "${KEEP:-}" = 1 ]; then echo "kept $D"; else rm -rf "$D"; fi
}
trap cleanup EXIT
uid=$(id -u)
echo "picod-auth: $(date -u '+%Y-%m-%d %H:%M UTC') on $(uname -n), $(nproc) CPUs," \
	"load average $(cut -d' ' -f1-3 /proc/loadavg)"
mkdir -p "$D/entries"
cat >"$D/entries/router.yaml" <<EOF
entries:
  - name: router
    spiffe_id: spiffe://{td}/ns/agentcube-system/sa/agentcube-router
    selectors: [unix:uid:$uid]
    picod_signer: true
EOF
"$agent" --dev --state-dir "$D/state" --socket "$D/agent.sock" --entries "$D/entries" \
	--log-level warning >"$D/agent.out" 2>"$D/agent.err" &
pid=$!
for _ in $(seq 1 300); do
	[ -S "$D/agent.sock" ] && "$cubeid" status --socket "$D/agent.sock" >/dev/null 2>&1 && break
	kill -0 "$pid" 2>/dev/null || break
	sleep 0.1
done
if ! "$cubeid" status --socket "$D/agent.sock" >/dev/null 2>&1; then
	echo "picod-auth: the agent did not start:"
	cat "$D/agent.err"
	exit 1
fi
"$bench" --socket "$D/agent.sock" "$@"
rc=$?
kill -TERM "$pid"
wait "$pid"
arc=$?
pid=
if [ "$arc" -ne 0 ]; then
	echo "picod-auth: the agent exited with $arc"
	tail -20 "$D/agent.err"
	exit 1
fi
exit $rc
