#!/bin/bash
# cubeid-agent against hostile input, with the real daemon (--dev) on a
# throwaway SoftHSM2 token:
#   - an entries file nested 20,000 levels deep, written while a client
#     fetches, is refused on reload with FILE:LINE; the old entries stay and
#     the fetches keep working (the parse runs on a worker, and the depth is
#     capped before libyaml builds the document);
#   - a client fetching in a loop adds one audit line per credential, not
#     one per call: repeats of a cached SVID are summed up in one line.
set -u
builddir=${CUBEID_BUILDDIR:-.}
cubeid=$builddir/cli/cubeid
agent=$builddir/agent/cubeid-agent

for tool in grep python3; do
	if ! command -v "$tool" >/dev/null 2>&1; then
		echo "SKIP: $tool not found"
		exit 77
	fi
done
[ -n "${CUBEID_SOFTHSM_MODULE:-}" ] && export CUBEID_PKCS11_MODULE=$CUBEID_SOFTHSM_MODULE
unset CUBEID_TOKEN CUBEID_PIN CUBEID_PIN_FILE CUBEID_STATE_DIR SPIFFE_ENDPOINT_SOCKET
D=$(mktemp -d /tmp/cubeid-agent-hostile.XXXXXX) || exit 1
pid=
loop_pid=
cleanup() {
	[ -n "$loop_pid" ] && kill "$loop_pid" 2>/dev/null && wait "$loop_pid" 2>/dev/null
	[ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
	rm -rf "$D"
}
trap cleanup EXIT
S=$D/run/agent.sock
uid=$(id -u)
. "$(dirname "$0")/lib/tap.sh"
# wait_log TEXT: until the agent's log has TEXT
wait_log() {
	for _ in $(seq 1 300); do grep -qF "$1" "$D/agent.err" && return 0; sleep 0.1; done
	return 1
}

cat >"$D/entries.yaml" <<EOF
entries:
  - name: app
    spiffe_id: spiffe://{td}/app
    selectors: [unix:uid:$uid]
EOF
"$agent" --dev --trust-domain cluster.local --entries "$D/entries.yaml" --socket "$S" \
	--state-dir "$D/state" >"$D/agent.out" 2>"$D/agent.err" &
pid=$!
for _ in $(seq 1 300); do
	[ -S "$S" ] && "$cubeid" status --socket "$S" >/dev/null 2>&1 && break
	kill -0 "$pid" 2>/dev/null || break
	sleep 0.1
done
check "the agent is up" 0 "$cubeid" status --socket "$S"
check "svid fetch" 0 "$cubeid" svid fetch --socket "$S" --out "$D/svid1"
assert "the file's entry is served" grep -qx "spiffe://cluster.local/app" "$D/out"

# The audit log: 40 cached fetches of each kind, one full line per credential.
n0=$(wc -l <"$D/agent.err")
done=0
for _ in $(seq 1 40); do
	"$cubeid" svid fetch --socket "$S" --out "$D/svidl" >/dev/null 2>&1 || break
	"$cubeid" jwt fetch --aud loop --socket "$S" >/dev/null 2>&1 || break
	done=$((done + 1))
done
n1=$(wc -l <"$D/agent.err")
assert "40 rounds of fetches ($done)" [ "$done" -eq 40 ]
assert "one x509-svid audit line for the entry" \
	[ "$(grep -c 'issued x509-svid spiffe_id=spiffe://cluster.local/app ' "$D/agent.err")" -eq 1 ]
assert "one jwt-svid audit line for the entry and audience" \
	[ "$(grep -c 'issued jwt-svid spiffe_id=spiffe://cluster.local/app .*aud=\[loop\]' "$D/agent.err")" -eq 1 ]
assert "the log grew by a few lines for 160 deliveries, not 160 ($((n1 - n0)))" [ $((n1 - n0)) -le 6 ]

# A client fetching in a loop while the deep file goes in.
(
	i=0
	while :; do
		i=$((i + 1))
		if "$cubeid" svid fetch --socket "$S" --out "$D/loop" >"$D/loop.out" 2>"$D/loop.err"; then
			echo ok >>"$D/loop.log"
		else
			echo "fail: $(head -1 "$D/loop.err")" >>"$D/loop.log"
		fi
		sleep 0.05
	done
) &
loop_pid=$!
python3 -c "import sys; sys.stdout.write('entries: []\nx:\n  ' + '[' * 20000 + '\n')" \
	>"$D/deep.yaml"
mv "$D/deep.yaml" "$D/entries.yaml"
kill -HUP "$pid"
assert "the reload is refused with FILE:LINE" \
	wait_log "$D/entries.yaml:3: nested deeper than 64 levels"
assert "and keeps the old entries" wait_log "reload: keeping the old config and entries"
sleep 0.5
kill "$loop_pid" 2>/dev/null
wait "$loop_pid" 2>/dev/null
loop_pid=
assert "the client fetched meanwhile" grep -q ok "$D/loop.log"
assert "and no fetch failed" bash -c "! grep -q fail '$D/loop.log'"
check "svid fetch after the refused reload" 0 "$cubeid" svid fetch --socket "$S" --out "$D/svid2"
assert "the old entry is still served" grep -qx "spiffe://cluster.local/app" "$D/out"
assert "no reload was applied" bash -c "! grep -q 'reloaded:' '$D/agent.err'"

kill "$pid"
wait "$pid" 2>/dev/null
rc=$?
pid=
assert "the agent stops cleanly (rc $rc)" [ "$rc" -eq 0 ]
assert "the cached x509 fetches are counted in one line" \
	grep -Eq "x509-svid spiffe_id=spiffe://cluster.local/app uid=$uid entry=app last_pid=[0-9]+ serial=[0-9A-Fa-f:]+: served [0-9]+ cached fetches in the last [0-9]+ s" "$D/agent.err"
assert "and the cached jwt fetches" \
	grep -Eq "jwt-svid spiffe_id=spiffe://cluster.local/app aud=\[loop\] uid=$uid entry=app last_pid=[0-9]+ jti=[0-9a-f]+: served 39 cached fetches" "$D/agent.err"
echo "1..$n"
[ "$fails" -eq 0 ]
