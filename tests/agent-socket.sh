#!/bin/bash
# Who owns the Workload API socket (issue 16, defect 2), with the real
# daemon in --dev mode on throwaway SoftHSM2 tokens:
#   - a second agent on the path of a live one refuses to start, naming the
#     path, and the first one goes on serving;
#   - a stale socket (its agent killed with SIGKILL) is replaced;
#   - at exit an agent removes the socket only if it is still the inode it
#     bound: a socket that replaced its own is left in place;
#   - --dev's own socket and state directory over a config file's
#     socket_path and state_dir are logged, not silent.
set -u
builddir=${CUBEID_BUILDDIR:-.}
cubeid=$builddir/cli/cubeid
agent=$builddir/agent/cubeid-agent

for tool in python3; do
	if ! command -v "$tool" >/dev/null 2>&1; then
		echo "SKIP: $tool not found"
		exit 77
	fi
done
[ -n "${CUBEID_SOFTHSM_MODULE:-}" ] && export CUBEID_PKCS11_MODULE=$CUBEID_SOFTHSM_MODULE
unset CUBEID_TOKEN CUBEID_PIN CUBEID_PIN_FILE CUBEID_STATE_DIR SPIFFE_ENDPOINT_SOCKET
D=$(mktemp -d /tmp/cubeid-agent-socket.XXXXXX) || exit 1
pids=()
cleanup() {
	local p
	for p in "${pids[@]}"; do
		kill "$p" 2>/dev/null && wait "$p" 2>/dev/null
	done
	rm -rf "$D"
}
trap cleanup EXIT
S=$D/run/agent.sock
. "$(dirname "$0")/lib/tap.sh"

# start NAME: an agent with its own state directory on $S, in the
# background; its pid in $pid, its log in $D/NAME.err
start() {
	"$agent" --dev --socket "$S" --state-dir "$D/$1" >"$D/$1.out" 2>"$D/$1.err" &
	pid=$!
	pids+=("$pid")
}
# up PID: until the agent answers on $S (false if it exited)
up() {
	for _ in $(seq 1 600); do
		kill -0 "$1" 2>/dev/null || return 1
		"$cubeid" status --socket "$S" >/dev/null 2>&1 && return 0
		sleep 0.1
	done
	return 1
}
# status_pid: the pid of the agent that answers on $S
status_pid() {
	"$cubeid" status --socket "$S" -o json 2>/dev/null |
		python3 -c 'import json,sys; print(json.load(sys.stdin)["pid"])'
}

start a
pa=$pid
assert "agent a is up" up "$pa"

# a second agent on the same path: refused, and a keeps the socket
"$agent" --dev --socket "$S" --state-dir "$D/b" >"$D/b.out" 2>"$D/b.err"
rc=$?
assert "a second agent on a live socket exits non-zero" [ "$rc" -ne 0 ]
assert "it says another agent serves on the path" \
	grep -qF "another agent is serving on $S" "$D/b.err"
assert "the socket is still there" [ -S "$S" ]
assert "agent a still answers on it" [ "$(status_pid)" = "$pa" ]
assert "agent a is still running" kill -0 "$pa"

# a stale socket: its agent gone without removing it
{ kill -KILL "$pa"; wait "$pa"; } 2>/dev/null
assert "SIGKILL leaves the socket behind" [ -S "$S" ]
start b
pb=$pid
assert "a new agent replaces a stale socket" up "$pb"
assert "and it is the one that answers" [ "$(status_pid)" = "$pb" ]

# another socket takes the path under b: b leaves it at exit
mv "$S" "$D/b.sock.moved"
python3 -c 'import socket,sys; s=socket.socket(socket.AF_UNIX); s.bind(sys.argv[1])' "$S"
ino=$(stat -c %i "$S")
kill -TERM "$pb"
wait "$pb"
rc=$?
assert "agent b exits 0 on SIGTERM" [ "$rc" -eq 0 ]
assert "the socket that replaced b's is left in place" \
	[ -S "$S" -a "$(stat -c %i "$S" 2>/dev/null)" = "$ino" ]
assert "b says it left it" grep -qF "$S is no longer the socket this agent bound" "$D/b.err"

# an agent that still owns its socket removes it
rm -f "$S"
start c
pc=$pid
assert "agent c is up" up "$pc"
kill -TERM "$pc"
wait "$pc"
assert "agent c removes its own socket at exit" [ ! -e "$S" ]

# --dev over a config file that names another socket and state directory
printf 'socket_path: %s\nstate_dir: %s\n' "$D/cfg.sock" "$D/cfg-state" >"$D/dev.yaml"
CUBEID_STATE_DIR=$D/e "$agent" --dev --config "$D/dev.yaml" >"$D/e.out" 2>"$D/e.err" &
pe=$!
pids+=("$pe")
S=$D/e/agent.sock
assert "--dev with a config file: serves on STATE/agent.sock" up "$pe"
assert "  and says it does not use the file's socket_path" grep -qF -e \
	"--dev: serving on $D/e/agent.sock, not on socket_path $D/cfg.sock from $D/dev.yaml" "$D/e.err"
assert "  nor its state_dir" grep -qF -e \
	"--dev: the state is in $D/e, not in state_dir $D/cfg-state from $D/dev.yaml" "$D/e.err"
kill -TERM "$pe"
wait "$pe"

echo "1..$n"
if [ "$fails" -ne 0 ]; then
	for f in a b c e; do
		echo "agent $f log:"
		sed 's/^/    | /' "$D/$f.err" 2>/dev/null | tail -20
	done
	exit 1
fi
exit 0
