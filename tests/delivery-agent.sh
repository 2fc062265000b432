#!/bin/bash
# File delivery by the real agent (cubeid-agent --dev, a throwaway SoftHSM2
# token, an entry with a delivery and a 2 s X.509-SVID TTL):
#  - the set (svid.pem, svid_key.pem, svid_bundle.pem, a JWT-SVID file, the
#    JWT bundle) appears with its modes and owner, through ..data;
#  - the chain verifies against the bundle and the key is the cert's;
#  - each rotation rewrites the set (modes and owner again), signals the
#    process in the pid file and runs the command (no shell involved);
#  - a missing pid file is logged and retried with backoff, then works;
#  - the torn-read probe (tests/torn-probe) over many rotations: zero
#    mismatched pairs for a reader that resolves ..data once, zero torn
#    files for any reader; what a reader that opens the two stable names
#    one after the other sees is printed (see docs/delivery.md);
#  - SIGKILL of the agent at random moments, 10 times: the files left are
#    a whole set (key = cert's, bundle verifies the cert), and a restart
#    leaves one set and no temporary links;
#  - an entry whose dir goes through a symlink is refused and logged, and
#    the directory the symlink points at is left as it was
#    (tests/test-adir-symlink-attack has the attacks themselves).
set -u
builddir=${CUBEID_BUILDDIR:-.}
agent=$builddir/agent/cubeid-agent
probe=$builddir/tests/torn-probe
PROBE_SECONDS=${PROBE_SECONDS:-40}
KILLS=${KILLS:-10}

command -v openssl >/dev/null || { echo "FAIL: openssl not found"; exit 1; }
[ -n "${CUBEID_SOFTHSM_MODULE:-}" ] && export CUBEID_PKCS11_MODULE=$CUBEID_SOFTHSM_MODULE
unset CUBEID_TOKEN CUBEID_PIN CUBEID_PIN_FILE CUBEID_STATE_DIR
D=$(mktemp -d /tmp/cubeid-delivery.XXXXXX) || exit 1
chmod 0755 "$D"
pid=
app=
cleanup() {
	[ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
	[ -n "$app" ] && kill "$app" 2>/dev/null && wait "$app" 2>/dev/null
	rm -rf "$D"
}
trap cleanup EXIT
S=$D/agent.sock
C=$D/certs
. "$(dirname "$0")/lib/tap.sh"

# the process to signal: counts SIGHUPs
bash -c 'trap "echo hup >> '"$D"'/hups" HUP; echo $$ > '"$D"'/app.pid.real; while :; do sleep 0.1; done' &
app=$!
for _ in $(seq 1 50); do [ -s "$D/app.pid.real" ] && break; sleep 0.1; done
cp "$D/app.pid.real" "$D/app.pid"

owner=
want_uid=$(id -u)
want_gid=$(id -g)
if [ "$(id -u)" -eq 0 ]; then
	owner="      uid: 65534
      gid: 65534"
	want_uid=65534
	want_gid=65534
fi
cat >"$D/entries.yaml" <<EOF
entries:
  - name: router
    spiffe_id: spiffe://{td}/ns/agentcube-system/sa/agentcube-router
    selectors: [unix:uid:4242424]
    x509_svid_ttl: 2s
    delivery:
      dir: $C
      jwt_svids:
        - {audience: picod, file: picod.jwt}
      jwt_bundle_file: jwt_bundle.json
$owner
      signal: SIGHUP
      pid_file: $D/app.pid
      command: [/bin/sh, -c, "echo run >> $D/runs"]
  - name: trapped
    spiffe_id: spiffe://{td}/ns/agentcube-system/sa/trapped
    selectors: [unix:uid:4242425]
    delivery:
      dir: $D/link/certs
      x509: false
      jwt_bundle_file: jwt_bundle.json
EOF
# the trapped entry's dir goes through a symlink, to a stand-in victim
mkdir -p "$D/victim/certs"
echo "the victim's" >"$D/victim/certs/jwt_bundle.json"
ln -s victim "$D/link"

start_agent() {
	"$agent" --dev --state-dir "$D/state" --socket "$S" --entries "$D/entries.yaml" \
		--log-level info >>"$D/agent.out" 2>>"$D/agent.err" &
	pid=$!
}
serial() { openssl x509 -in "$C/..data/svid.pem" -noout -serial 2>/dev/null; }
wait_new_serial() { # wait_new_serial OLD: until the delivered serial differs
	local s
	for _ in $(seq 1 300); do
		s=$(serial)
		[ -n "$s" ] && [ "$s" != "$1" ] && return 0
		sleep 0.1
	done
	return 1
}
# a whole set: the key is the cert's, and the bundle verifies the cert
consistent() { # consistent DIR: through the stable names, agent stopped
	local d=$1
	[ "$(openssl x509 -in "$d/svid.pem" -noout -pubkey 2>/dev/null)" = \
		"$(openssl pkey -in "$d/svid_key.pem" -pubout 2>/dev/null)" ] &&
		[ -n "$(openssl pkey -in "$d/svid_key.pem" -pubout 2>/dev/null)" ] &&
		openssl verify -no_check_time -CAfile "$d/svid_bundle.pem" "$d/svid.pem" >/dev/null 2>&1
}
sets() { find "$C" -maxdepth 1 -name '..[0-9]*' -type d | wc -l; }
tmps() { find "$C" -maxdepth 1 \( -name '..data_tmp' -o -name '..link_tmp' \) | wc -l; }

start_agent
if wait_new_serial ""; then
	ok "the agent delivered the set to $C"
else
	bad "no delivery: $(tail -5 "$D/agent.err")"
fi

# modes and owner, through the stable names
m() { stat -L -c '%a %u %g' "$C/$1" 2>/dev/null; }
if [ "$(m svid.pem)" = "644 $want_uid $want_gid" ] && [ "$(m svid_key.pem)" = "600 $want_uid $want_gid" ] &&
	[ "$(m svid_bundle.pem)" = "644 $want_uid $want_gid" ] && [ "$(m picod.jwt)" = "600 $want_uid $want_gid" ] &&
	[ "$(m jwt_bundle.json)" = "644 $want_uid $want_gid" ]; then
	ok "modes 0644/0600 and owner $want_uid:$want_gid"
else
	bad "modes/owner: svid.pem '$(m svid.pem)' key '$(m svid_key.pem)' jwt '$(m picod.jwt)'"
fi
if [ "$(readlink "$C/svid.pem")" = "..data/svid.pem" ] && [ -L "$C/..data" ]; then
	ok "svid.pem -> ..data/svid.pem, ..data -> $(readlink "$C/..data")"
else
	bad "layout: $(ls -la "$C")"
fi
# Read one set through ..data once.  With a 2 s TTL a rotation comes
# about every second, and the writer removes a set once it is no longer
# ..data, so a slow reader (a loaded machine: several openssl runs) can
# find its set gone.  Copy the set in one go; a copy that lost a file to
# that removal is no verdict on the set, so take the next one (the copy
# itself must be whole and consistent, and the chain is checked at the
# time of the copy, not after the 2 s cert may have expired).
got_set=no
for _ in $(seq 1 20); do
	snap=$(readlink -f "$C/..data")
	rm -rf "$D/snap" && mkdir "$D/snap"
	if cp "$snap/svid.pem" "$snap/svid_key.pem" "$snap/svid_bundle.pem" "$D/snap/" 2>/dev/null; then
		got_set=yes
		break
	fi
done
if [ $got_set = yes ] &&
	[ "$(openssl x509 -in "$D/snap/svid.pem" -noout -pubkey)" = "$(openssl pkey -in "$D/snap/svid_key.pem" -pubout)" ] &&
	openssl verify -no_check_time -CAfile "$D/snap/svid_bundle.pem" "$D/snap/svid.pem" >/dev/null 2>&1 &&
	openssl x509 -in "$D/snap/svid.pem" -noout -ext subjectAltName 2>/dev/null |
	grep -q "URI:spiffe://cluster.local/ns/agentcube-system/sa/agentcube-router"; then
	ok "the chain verifies against svid_bundle.pem; the key is the cert's; the URI SAN is the entry's"
else
	bad "the delivered set does not verify"
fi
payload=$(cut -d. -f2 <"$C/picod.jwt" | tr '_-' '/+')
while [ $((${#payload} % 4)) -ne 0 ]; do payload="$payload="; done
claims=$(printf '%s' "$payload" | base64 -d 2>/dev/null)
if printf '%s' "$claims" | grep -q '"aud":\["picod"\]\|"aud":"picod"' &&
	printf '%s' "$claims" | grep -q '"sub":"spiffe://cluster.local/ns/agentcube-system/sa/agentcube-router"' &&
	grep -q '"keys"' "$C/jwt_bundle.json"; then
	ok "picod.jwt is a JWT-SVID for audience picod; jwt_bundle.json is a JWKS"
else
	bad "JWT files: $claims"
fi

for _ in $(seq 1 50); do
	grep -q "delivery trapped: writing" "$D/agent.err" && break
	sleep 0.1
done
if grep -q "delivery trapped: writing $D/link/certs failed: the directory or one of its parents is a symlink" "$D/agent.err" &&
	[ "$(ls -A "$D/victim/certs")" = jwt_bundle.json ] &&
	[ "$(cat "$D/victim/certs/jwt_bundle.json")" = "the victim's" ]; then
	ok "a dir through a symlink is refused and logged; the symlink's target is untouched"
else
	bad "trapped entry: $(grep trapped "$D/agent.err" | head -3); victim: $(ls -A "$D/victim/certs")"
fi

# every write sets modes and owner again: loosen the current key file
chmod 0666 "$C/..data/svid_key.pem"
chown "$(id -u):$(id -g)" "$C/..data/svid_key.pem" 2>/dev/null
s0=$(serial)
if wait_new_serial "$s0" && [ "$(m svid_key.pem)" = "600 $want_uid $want_gid" ]; then
	ok "the next rotation rewrote the set with mode 0600 and owner $want_uid:$want_gid again"
else
	bad "after a rotation the key is '$(m svid_key.pem)'"
fi

# the torn-read probe, by stable names and through ..data, during rotations
"$probe" --seconds "$PROBE_SECONDS" "$C" svid.pem svid_key.pem >"$D/probe.naive" 2>&1 &
p1=$!
"$probe" --snapshot --seconds "$PROBE_SECONDS" "$C" svid.pem svid_key.pem >"$D/probe.snap" 2>&1
wait $p1
naive=$(cat "$D/probe.naive")
snapr=$(cat "$D/probe.snap")
echo "# torn-read probe, cubeid-agent delivery, stable names: $naive"
echo "# torn-read probe, cubeid-agent delivery, through ..data: $snapr"
get() { sed -n "s/.*$2=\([0-9]*\).*/\1/p" <<<"$1"; }
if [ "$(get "$snapr" rotations)" -ge 5 ] && [ "$(get "$snapr" mismatches)" -eq 0 ] &&
	[ "$(get "$snapr" torn)" -eq 0 ]; then
	ok "probe through ..data: $(get "$snapr" iterations) reads over $(get "$snapr" rotations) rotations, 0 mismatched, 0 torn"
else
	bad "probe through ..data: $snapr"
fi
if [ "$(get "$naive" rotations)" -ge 5 ] && [ "$(get "$naive" torn)" -eq 0 ]; then
	ok "probe by stable names: 0 torn files; $(get "$naive" mismatches) mismatched pairs in $(get "$naive" iterations) reads (a swap between the two opens)"
else
	bad "probe by stable names: $naive"
fi

hups=$(wc -l <"$D/hups" 2>/dev/null || echo 0)
runs=$(wc -l <"$D/runs" 2>/dev/null || echo 0)
if [ "$hups" -ge 3 ] && [ "$runs" -ge 3 ]; then
	ok "after each update: SIGHUP to the pid file's process ($hups) and the command ($runs)"
else
	bad "signals $hups, commands $runs"
fi

# a failing action is logged and retried with backoff, then succeeds
rm -f "$D/app.pid"
for _ in $(seq 1 100); do grep -q "after the update: the pid file does not exist; retrying in" "$D/agent.err" && break; sleep 0.1; done
h0=$(wc -l <"$D/hups")
cp "$D/app.pid.real" "$D/app.pid"
got=
for _ in $(seq 1 300); do
	[ "$(wc -l <"$D/hups")" -gt "$h0" ] && got=1 && break
	sleep 0.1
done
if grep -q "after the update: the pid file does not exist; retrying in" "$D/agent.err" && [ -n "$got" ]; then
	ok "a missing pid file is logged and retried with backoff; the signal arrives once it is back"
else
	bad "retry: $(grep delivery "$D/agent.err" | tail -3)"
fi

# SIGKILL at random moments; the files left are a whole set; a restart cleans
crash_ok=0
for i in $(seq 1 "$KILLS"); do
	sleep "0.$((RANDOM % 10))$((RANDOM % 10))"
	sleep $((RANDOM % 2))
	kill -KILL "$pid"
	wait "$pid" 2>/dev/null
	pid=
	if ! consistent "$C"; then
		bad "after SIGKILL $i the stable names do not show a whole set"
		continue
	fi
	s0=$(serial)
	start_agent
	if ! wait_new_serial "$s0"; then
		bad "after SIGKILL $i the restarted agent delivered nothing"
		continue
	fi
	crash_ok=$((crash_ok + 1))
done
kill -TERM "$pid"
wait "$pid"
rc=$?
pid=
[ "$crash_ok" -eq "$KILLS" ] && ok "$KILLS SIGKILLs at random moments: each left a whole set (key = cert's, bundle verifies it); each restart delivered again"
if [ "$rc" -eq 0 ] && [ "$(sets)" -eq 1 ] && [ "$(tmps)" -eq 0 ] && consistent "$C"; then
	ok "SIGTERM: exit 0; one set, no temporary links left"
else
	bad "after SIGTERM: exit $rc, $(sets) sets, $(tmps) temporary links"
fi
grep -h "removed .* leftovers" "$D/agent.err" | sed 's/^/# /'

echo "1..$n"
if [ "$fails" -ne 0 ]; then
	echo "agent log:"
	grep -v "minted x509-svid\|wrote .* files" "$D/agent.err" | sed 's/^/    | /' | tail -40
	exit 1
fi
exit 0
