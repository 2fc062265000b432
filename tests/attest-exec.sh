#!/bin/bash
# "Exec after connect" against the real cubeid-agent --dev (docs/design.md,
# "What attestation guarantees").  An unprivileged attacker (nobody)
# connects to the Workload API socket and forks; the parent execs a
# trusted program, the child asks for an X.509-SVID over the parent's
# connection, so that SO_PEERCRED names a pid that now runs the trusted
# program.  tests/exec-peer plays both parts.
#   - a legitimate run of the trusted program gets the unix:path and the
#     unix:sha256 identities;
#   - the attack gets neither, whether the attacker's socket is
#     close-on-exec (the trusted program no longer holds it) or not (it
#     inherits it: an fd inherited across exec does not count);
#   - the agent logs why;
#   - from another network namespace the exe selectors cannot be checked
#     and are left out (fail closed); a unix:uid identity still works.
# Run as root (the agent runs as root, the attacker as nobody); skipped
# otherwise.
set -u
builddir=${CUBEID_BUILDDIR:-.}
agent=$builddir/agent/cubeid-agent
cubeid=$builddir/cli/cubeid
peer=$builddir/tests/exec-peer

if [ "$(id -u)" -ne 0 ] || ! command -v setpriv >/dev/null || ! id nobody >/dev/null 2>&1; then
	echo "SKIP: needs root, setpriv and the user nobody"
	exit 77
fi
[ -n "${CUBEID_SOFTHSM_MODULE:-}" ] && export CUBEID_PKCS11_MODULE=$CUBEID_SOFTHSM_MODULE
unset CUBEID_TOKEN CUBEID_PIN CUBEID_PIN_FILE CUBEID_STATE_DIR SPIFFE_ENDPOINT_SOCKET
D=$(mktemp -d /tmp/cubeid-attest-exec.XXXXXX) || exit 1
chmod 0755 "$D" # nobody must reach the socket and the programs
pid=
cleanup() {
	[ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
	rm -rf "$D"
}
trap cleanup EXIT
S=$D/run/agent.sock
. "$(dirname "$0")/lib/tap.sh"
as_nobody=(setpriv --reuid=nobody --regid="$(id -g nobody)" --clear-groups)

# The attacker and two trusted programs, all the same code at different
# paths; trusted-sha differs by a trailing byte so that its hash is its own.
mkdir -p "$D/bin"
cp "$peer" "$D/bin/attacker"
cp "$peer" "$D/bin/trusted"
cp "$peer" "$D/bin/trusted-sha"
printf 'x' >>"$D/bin/trusted-sha"
chmod 0755 "$D/bin"/*
sha=$(sha256sum "$D/bin/trusted-sha" | cut -d' ' -f1)
cat >"$D/entries.yaml" <<EOF
entries:
  - spiffe_id: spiffe://cluster.local/trusted-path
    selectors: [unix:path:$D/bin/trusted]
  - spiffe_id: spiffe://cluster.local/trusted-sha
    selectors: [unix:sha256:$sha]
EOF

"$agent" --dev --state-dir "$D/state" --socket "$S" --entries "$D/entries.yaml" \
	--log-level info >"$D/agent.out" 2>"$D/agent.err" &
pid=$!
for _ in $(seq 1 300); do
	[ -S "$S" ] && "$cubeid" status --socket "$S" >/dev/null 2>&1 && break
	kill -0 "$pid" 2>/dev/null || break
	sleep 0.1
done
check "the agent is up" 0 "$cubeid" status --socket "$S"

# the legitimate workloads
check "trusted (by path), run by nobody, gets its SVID" 0 \
	"${as_nobody[@]}" "$D/bin/trusted" fetch "$S"
assert "the unix:path identity" grep -q "^GOT spiffe://cluster.local/trusted-path" "$D/out"
check "trusted-sha (by hash), run by nobody, gets its SVID" 0 \
	"${as_nobody[@]}" "$D/bin/trusted-sha" fetch "$S"
assert "the unix:sha256 identity" grep -q "^GOT spiffe://cluster.local/trusted-sha" "$D/out"
check "the attacker's own program gets nothing" 1 \
	"${as_nobody[@]}" "$D/bin/attacker" fetch "$S"

# the attacks: the outcome is what the child prints (the parent's exit
# status is the trusted program's)
for variant in cloexec inherit; do
	for target in trusted trusted-sha; do
		# (in a subshell that keeps bash's "Terminated" to itself)
		(
			"${as_nobody[@]}" "$D/bin/attacker" attack "$variant" "$S" "$D/bin/$target" \
				>"$D/out" 2>"$D/err"
			true
		) 2>/dev/null
		for _ in $(seq 1 100); do
			grep -q "^GOT\|^REFUSED\|did not exec" "$D/out" && break
			sleep 0.1
		done
		if grep -q "^REFUSED code=7 " "$D/out" && ! grep -q "^GOT" "$D/out"; then
			ok "exec after connect ($variant socket, $target) is refused"
		else
			bad "exec after connect ($variant socket, $target) is refused"
			tap_show
		fi
	done
done
assert "the agent says why" grep -q "does not hold its connection" "$D/agent.err"

# A caller in another network namespace (a container): the kernel makes
# the agent's end of the connection in the caller's namespace, where
# sock_diag does not reach, so whether it holds the connection cannot be
# told and the exe selectors are left out; the rest of attestation stands.
if unshare -n true 2>/dev/null; then
	check "trusted, from another network namespace, gets no unix:path identity" 1 \
		unshare -n "${as_nobody[@]}" "$D/bin/trusted" fetch "$S"
	assert "the agent says why (another network namespace)" \
		grep -q "another network namespace" "$D/agent.err"
	check "a unix:uid identity from another network namespace still works" 0 \
		unshare -n "$cubeid" svid fetch --socket "$S" --out "$D/netns"
else
	echo "# unshare -n not permitted: the network namespace checks did not run"
fi

# still serving
check "trusted still gets its SVID afterwards" 0 "${as_nobody[@]}" "$D/bin/trusted" fetch "$S"

echo "1..$n"
[ "$fails" -eq 0 ]
