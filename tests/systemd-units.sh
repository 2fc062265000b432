#!/bin/bash
# contrib/systemd: the agent's units.
#   - `systemd-analyze verify` accepts the service and the socket (with
#     ExecStart pointed at the agent just built);
#   - `systemd-analyze security --offline=true` scores the service's
#     exposure at 2.0 or lower ("OK"), alone and with the TPM drop-in; the
#     score is printed;
#   - the socket unit listens where the agent serves by default, and the
#     service has the settings the docs promise (Type=notify, a watchdog,
#     RuntimeDirectory=cubeid, a dedicated user, one capability, a CPU
#     weight);
#   - the real agent under systemd-socket-activate (the same LISTEN_FDS
#     protocol as the socket unit) serves on the socket it is passed, and
#     tells NOTIFY_SOCKET READY=1, then WATCHDOG=1 pings at half of
#     WATCHDOG_USEC, then STOPPING=1 on SIGTERM;
#   - the agent as an unprivileged uid attests a root caller's executable
#     with CAP_SYS_PTRACE, and not without it or with CAP_DAC_READ_SEARCH;
#   - with the kernel's W^X switch (PR_SET_MDWE, what MemoryDenyWriteExecute
#     asks for) and no_new_privs set, the real agent still issues SVIDs.
set -u
srcdir=${CUBEID_SRCDIR:-.}
builddir=${CUBEID_BUILDDIR:-.}
agent=$builddir/agent/cubeid-agent
cubeid=$builddir/cli/cubeid
MAX_EXPOSURE=2.0

for tool in systemd-analyze systemd-socket-activate python3; do
	if ! command -v "$tool" >/dev/null 2>&1; then
		echo "SKIP: $tool not found (Debian: systemd)"
		exit 77
	fi
done
[ -n "${CUBEID_SOFTHSM_MODULE:-}" ] && export CUBEID_PKCS11_MODULE=$CUBEID_SOFTHSM_MODULE
unset CUBEID_TOKEN CUBEID_PIN CUBEID_PIN_FILE CUBEID_STATE_DIR SPIFFE_ENDPOINT_SOCKET NOTIFY_SOCKET
D=$(mktemp -d /tmp/cubeid-systemd.XXXXXX) || exit 1
pids=()
cleanup() {
	local p
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null && wait "$p" 2>/dev/null; done
	rm -rf "$D"
}
trap cleanup EXIT
fails=0
n=0
ok() { n=$((n + 1)); echo "ok $n - $1"; }
notok() {
	n=$((n + 1))
	fails=$((fails + 1))
	echo "not ok $n - $1"
	[ -s "$D/err" ] && sed 's/^/    | /' "$D/err"
}
assert() { if "${@:2}"; then ok "$1"; else notok "$1"; fi; }

# The units as they install, with the agent just built as ExecStart.
U=$D/units
mkdir -p "$U"
sed -e "s|@sbindir@|$(cd "$builddir/agent" && pwd)|g" \
	"$srcdir/contrib/systemd/cubeid-agent.service.in" >"$U/cubeid-agent.service"
cp "$srcdir/contrib/systemd/cubeid-agent.socket" "$U/"
unit=$U/cubeid-agent.service

# verify: unit syntax and the command (man pages are checked by
# tests/man-sync.sh, and `man` may not be installed)
if systemd-analyze verify --man=no "$unit" "$U/cubeid-agent.socket" >"$D/out" 2>"$D/err"; then
	ok "systemd-analyze verify accepts the units"
	sed 's/^/#   /' "$D/err"
else
	notok "systemd-analyze verify accepts the units"
fi

score() { # score DIR -> the exposure, printed
	(cd "$1" && systemd-analyze security --offline=true cubeid-agent.service) >"$D/sec" 2>"$D/err"
	sed -n 's/^.*Overall exposure level for cubeid-agent.service: \([0-9.]*\).*$/\1/p' "$D/sec"
}
le() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a != "" && a + 0 <= b + 0) }'; }

s=$(score "$U")
echo "# systemd-analyze security --offline=true cubeid-agent.service: exposure $s (max $MAX_EXPOSURE)"
grep '✗' "$D/sec" | sed 's/^/#   /'
assert "exposure $s <= $MAX_EXPOSURE" le "$s" "$MAX_EXPOSURE"

mkdir -p "$U/cubeid-agent.service.d"
cp "$srcdir/contrib/systemd/tpm.conf" "$U/cubeid-agent.service.d/"
st=$(score "$U")
echo "# with the TPM drop-in: exposure $st"
assert "with the TPM drop-in: exposure $st <= $MAX_EXPOSURE" le "$st" "$MAX_EXPOSURE"
assert "the TPM drop-in allows exactly /dev/tpmrm0" \
	grep -qx 'DeviceAllow=/dev/tpmrm0 rw' "$U/cubeid-agent.service.d/tpm.conf"
rm -rf "$U/cubeid-agent.service.d"

# what the docs promise
for kv in Type=notify WatchdogSec=30s RuntimeDirectory=cubeid User=cubeid ProtectSystem=strict \
	ProtectHome=yes PrivateTmp=yes NoNewPrivileges=yes MemoryDenyWriteExecute=yes \
	CapabilityBoundingSet=CAP_SYS_PTRACE SystemCallFilter=@system-service \
	"RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK" PrivateDevices=yes \
	CPUWeight=1000; do
	assert "service has $kv" grep -qx "$kv" "$unit"
done
assert "the PIN comes as a credential, not argv" grep -q -- '--pin-file %d/pin' "$unit"
sock=$(sed -n 's/^ListenStream=//p' "$U/cubeid-agent.socket")
def=$("$agent" --help | sed -n 's/.*the Workload API socket (default \([^;]*\);.*/\1/p')
assert "the socket unit listens on the agent's default socket ($sock = $def)" [ "$sock" = "$def" ]

# socket activation and sd_notify with the real agent
cat >"$D/notify.py" <<'EOF'
import os, socket, sys
path, out = sys.argv[1], sys.argv[2]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(path)
with open(out, "a", buffering=1) as f:
    while True:
        msg = s.recv(4096).decode(errors="replace")
        for line in msg.splitlines():
            f.write(line + "\n")
EOF
python3 "$D/notify.py" "$D/notify.sock" "$D/notify.log" &
pids+=($!)
for _ in $(seq 1 100); do [ -S "$D/notify.sock" ] && break; sleep 0.1; done
S=$D/activated.sock
systemd-socket-activate -l "$S" -E NOTIFY_SOCKET="$D/notify.sock" -E WATCHDOG_USEC=2000000 \
	-E CUBEID_PKCS11_MODULE="${CUBEID_PKCS11_MODULE:-}" \
	"$agent" --dev --state-dir "$D/state" >"$D/agent.out" 2>"$D/agent.err" &
apid=$!
pids+=($apid)
for _ in $(seq 1 100); do [ -S "$S" ] && break; sleep 0.1; done
# systemd-socket-activate starts the agent on the first connection
if SPIFFE_ENDPOINT_SOCKET=unix://$S "$cubeid" svid fetch --out "$D/svid" >"$D/out" 2>"$D/err"; then
	ok "an SVID over the activated socket"
else
	notok "an SVID over the activated socket"
	sed 's/^/    | /' "$D/agent.err"
fi
assert "the agent says it serves the passed socket" grep -q "serving on the socket systemd passed" "$D/agent.err"
assert "the agent did not bind its own socket" [ ! -e "$D/state/agent.sock" ]
for _ in $(seq 1 100); do grep -q '^READY=1' "$D/notify.log" 2>/dev/null && break; sleep 0.1; done
assert "sd_notify READY=1" grep -q '^READY=1' "$D/notify.log"
assert "sd_notify MAINPID is the agent ($apid)" grep -qx "MAINPID=$apid" "$D/notify.log"
for _ in $(seq 1 100); do
	[ "$(grep -c '^WATCHDOG=1' "$D/notify.log")" -ge 2 ] && break
	sleep 0.1
done
assert "watchdog pings (WATCHDOG=1, at least twice)" [ "$(grep -c '^WATCHDOG=1' "$D/notify.log")" -ge 2 ]
kill -TERM "$apid"
wait "$apid"
rc=$?
assert "SIGTERM: exit 0 (got $rc)" [ "$rc" = 0 ]
assert "sd_notify STOPPING=1" grep -q '^STOPPING=1' "$D/notify.log"
assert "the activated socket is left to its owner" [ -S "$S" ]

# MemoryDenyWriteExecute= and NoNewPrivileges= with the real agent: the
# kernel's own W^X switch (PR_SET_MDWE, Linux 6.3+) and no_new_privs,
# then --dev issues both kinds of SVID (OpenSSL, p11-kit and SoftHSM2
# included).  systemd enforces MemoryDenyWriteExecute with seccomp; MDWE
# refuses the same mappings.
cat >"$D/wx.py" <<'EOF'
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
PR_SET_NO_NEW_PRIVS, PR_SET_MDWE, PR_GET_MDWE = 38, 65, 66
if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
    sys.exit("no_new_privs: " + os.strerror(ctypes.get_errno()))
if libc.prctl(PR_SET_MDWE, 1, 0, 0, 0) != 0:
    print("MDWE-UNSUPPORTED", flush=True)
    sys.exit(3)
assert libc.prctl(PR_GET_MDWE, 0, 0, 0, 0) == 1
# the switch bites: a writable and executable mapping is refused
libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
if libc.mmap(None, 4096, 7, 0x22, -1, 0) != ctypes.c_void_p(-1).value:
    sys.exit("MDWE is set but a W+X mapping was allowed")
os.execv(sys.argv[1], sys.argv[1:])
EOF
S2=$D/wx/agent.sock
python3 "$D/wx.py" "$agent" --dev --state-dir "$D/wx" --socket "$S2" >"$D/wx.out" 2>"$D/wx.err" &
wpid=$!
pids+=($wpid)
for _ in $(seq 1 300); do
	[ -S "$S2" ] && break
	kill -0 "$wpid" 2>/dev/null || break
	sleep 0.1
done
if grep -q MDWE-UNSUPPORTED "$D/wx.out"; then
	echo "# this kernel has no PR_SET_MDWE: the W^X run is left out"
else
	if SPIFFE_ENDPOINT_SOCKET=unix://$S2 "$cubeid" svid fetch --out "$D/wx-svid" >"$D/out" 2>"$D/err" &&
		SPIFFE_ENDPOINT_SOCKET=unix://$S2 "$cubeid" jwt fetch --aud wx >>"$D/out" 2>>"$D/err"; then
		ok "under W^X (PR_SET_MDWE) and no_new_privs the agent issues X.509 and JWT SVIDs"
	else
		sed 's/^/    | /' "$D/wx.err"
		notok "under W^X (PR_SET_MDWE) and no_new_privs the agent issues X.509 and JWT SVIDs"
	fi
	kill -TERM "$wpid"
	wait "$wpid"
	rc=$?
	assert "under W^X: SIGTERM, exit 0 (got $rc)" [ "$rc" = 0 ]
fi

# The one capability: the agent as an unprivileged uid attests another
# uid's process by /proc/PID/exe only with CAP_SYS_PTRACE (ambient, as the
# unit gives it); without it, or with CAP_DAC_READ_SEARCH instead, the
# unix:path selector is missing and the entry that needs it does not match.
if command -v setpriv >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
	cap_run() { # cap_run NAME CAPS EXPECT(0|1)
		local dir=$D/cap-$1 apid rc
		mkdir -p "$dir"
		chmod 0755 "$D" "$dir"
		cat >"$dir/entries.yaml" <<EOF
entries:
  - name: root-by-exe
    spiffe_id: spiffe://{td}/exe-checked
    selectors: [unix:uid:0, unix:path]
EOF
		chown -R 65534:65534 "$dir"
		setpriv --reuid=65534 --regid=65534 --clear-groups --inh-caps="$2" \
			--ambient-caps="$2" "$agent" --dev --state-dir "$dir/state" \
			--socket "$dir/agent.sock" --entries "$dir/entries.yaml" \
			>"$dir/out" 2>"$dir/err" &
		apid=$!
		pids+=($apid)
		for _ in $(seq 1 300); do
			[ -S "$dir/agent.sock" ] && break
			kill -0 "$apid" 2>/dev/null || break
			sleep 0.1
		done
		"$cubeid" jwt fetch --aud cap --spiffe-id spiffe://cluster.local/exe-checked \
			--socket "$dir/agent.sock" >"$D/out" 2>"$D/err"
		rc=$?
		kill -TERM "$apid" 2>/dev/null
		wait "$apid" 2>/dev/null
		if [ "$3" = 0 ]; then
			[ $rc = 0 ]
		else
			# refused by a running agent, not a start-up failure
			[ $rc != 0 ] && grep -q PermissionDenied "$D/err"
		fi
	}
	assert "agent as nobody with CAP_SYS_PTRACE: a root caller matches unix:path" \
		cap_run ptrace +sys_ptrace 0
	assert "agent as nobody without capabilities: unix:path is missing, no identity" \
		cap_run none -all 1
	assert "agent as nobody with CAP_DAC_READ_SEARCH instead: still no identity" \
		cap_run dac +dac_read_search 1
else
	echo "# not root or no setpriv: the capability runs are left out"
fi

echo "1..$n"
[ "$fails" -eq 0 ]
