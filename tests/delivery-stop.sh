#!/bin/bash
# A delivery's command at shutdown, and the audit lines of deliveries
# (issue 16), with the real agent (--dev, a throwaway SoftHSM2 token):
#   - every credential a delivery writes is one notice-level "issued" line,
#     as the Workload API's issuances are (X.509-SVID and JWT-SVID);
#   - SIGTERM while a delivery's command runs: the command gets SIGTERM and
#     the agent exits 0 without waiting for the command's own timeout;
#   - a command that ignores SIGTERM is killed (SIGKILL) after the grace
#     period, and the agent exits 0.
set -u
builddir=${CUBEID_BUILDDIR:-.}
agent=$builddir/agent/cubeid-agent

[ -n "${CUBEID_SOFTHSM_MODULE:-}" ] && export CUBEID_PKCS11_MODULE=$CUBEID_SOFTHSM_MODULE
unset CUBEID_TOKEN CUBEID_PIN CUBEID_PIN_FILE CUBEID_STATE_DIR SPIFFE_ENDPOINT_SOCKET
D=$(mktemp -d /tmp/cubeid-delivery-stop.XXXXXX) || exit 1
pid=
cleanup() {
	local f
	[ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
	for f in "$D"/cmd-*.pid; do
		[ -s "$f" ] && kill -KILL "$(cat "$f")" 2>/dev/null
	done
	rm -rf "$D"
}
trap cleanup EXIT
. "$(dirname "$0")/lib/tap.sh"

# run NAME SCRIPT: an agent whose one entry delivers to D/NAME and then runs
# sh -c SCRIPT; until the command has written its pid to D/cmd-NAME.pid
run() {
	cat >"$D/$1.yaml" <<EOF
entries:
  - name: $1
    spiffe_id: spiffe://{td}/$1
    selectors: [unix:uid:4242424]
    delivery:
      dir: $D/$1
      jwt_svids:
        - {audience: picod, file: picod.jwt}
      command: [/bin/sh, -c, "$2"]
EOF
	"$agent" --dev --state-dir "$D/state" --socket "$D/agent.sock" --entries "$D/$1.yaml" \
		>"$D/$1.out" 2>"$D/$1.err" &
	pid=$!
	for _ in $(seq 1 600); do
		[ -s "$D/cmd-$1.pid" ] && return 0
		kill -0 "$pid" 2>/dev/null || return 1
		sleep 0.1
	done
	return 1
}
# stop NAME: SIGTERM to the agent; its exit status in $rc
stop() {
	kill -TERM "$pid"
	wait "$pid"
	rc=$?
	pid=
}
gone() { ! kill -0 "$(cat "$D/cmd-$1.pid")" 2>/dev/null; }

# a command that ends on SIGTERM (sleep's default)
assert "the delivery's command runs" run term "echo \$\$ >$D/cmd-term.pid; exec sleep 600"
assert "the delivery wrote the SVID" [ -s "$D/term/svid.pem" ]
serial=$(openssl x509 -in "$D/term/svid.pem" -noout -serial | cut -d= -f2)
assert "audit: the delivered X.509-SVID is one notice line" \
	[ "$(grep -c "notice: issued x509-svid spiffe_id=spiffe://cluster.local/term delivery=$D/term entry=term serial=$serial " "$D/term.err")" -eq 1 ]
assert "audit: the delivered JWT-SVID is one notice line" \
	[ "$(grep -c "notice: issued jwt-svid spiffe_id=spiffe://cluster.local/term delivery=$D/term entry=term aud=\[picod\] jti=" "$D/term.err")" -eq 1 ]
stop term
assert "SIGTERM during the command: the agent exits 0" [ "$rc" -eq 0 ]
assert "the command is gone" gone term
assert "the agent says it stopped it with SIGTERM" \
	grep -qF "stopping: the command was stopped with SIGTERM" "$D/term.err"

# a command that ignores SIGTERM
assert "a command that ignores SIGTERM runs" \
	run deaf "trap '' TERM; echo \$\$ >$D/cmd-deaf.pid; exec sleep 600"
stop deaf
assert "SIGTERM during it: the agent exits 0" [ "$rc" -eq 0 ]
assert "the command is gone" gone deaf
assert "the agent says it killed it" \
	grep -qF "stopping: the command did not end on SIGTERM and was killed" "$D/deaf.err"

echo "1..$n"
if [ "$fails" -ne 0 ]; then
	for f in term deaf; do
		echo "agent log ($f):"
		sed 's/^/    | /' "$D/$f.err" 2>/dev/null | tail -20
	done
	exit 1
fi
exit 0
