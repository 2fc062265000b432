#!/bin/bash
# `cubeid helper` with spiffe-helper configuration files against the real
# agent (cubeid-agent --dev, a throwaway SoftHSM2 token, 2 s X.509-SVIDs):
#  - one-shot (daemon_mode = false, and the -daemon-mode=false flag): the
#    files, their modes (cert_file_mode, key/JWT defaults) and owner, the
#    chain, the key, the JWT-SVID and spiffe-helper's JWT bundle format;
#  - daemon mode: cmd started once with cmd_args split as spiffe-helper
#    splits them (no shell), renew_signal sent to it and to the pid in
#    pid_file_name after each rotation; the torn-read probe on its files;
#  - an unknown key fails with the file and line;
#  - health_checks: spiffe-helper's /live and /ready (status codes, JSON
#    bodies) before the agent is there, after a failed write, once the files
#    are written; the port is free again after SIGTERM;
#  - the agent restarts: the helper reopens its stream by itself (at once,
#    then with a backoff) and writes the new agent's SVID;
#  - SIGKILL of the helper at random moments: a whole set is left, and a
#    restart writes again with no debris.
set -u
builddir=${CUBEID_BUILDDIR:-.}
agent=$builddir/agent/cubeid-agent
cubeid=$builddir/cli/cubeid
probe=$builddir/tests/torn-probe
KILLS=${KILLS:-8}

command -v openssl >/dev/null || { echo "FAIL: openssl not found"; exit 1; }
[ -n "${CUBEID_SOFTHSM_MODULE:-}" ] && export CUBEID_PKCS11_MODULE=$CUBEID_SOFTHSM_MODULE
unset CUBEID_TOKEN CUBEID_PIN CUBEID_PIN_FILE CUBEID_STATE_DIR SPIFFE_ENDPOINT_SOCKET
D=$(mktemp -d /tmp/cubeid-helper.XXXXXX) || exit 1
chmod 0755 "$D"
pid=
hpid=
app=
cleanup() {
	[ -n "$hpid" ] && kill "$hpid" 2>/dev/null && wait "$hpid" 2>/dev/null
	[ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
	[ -n "$app" ] && kill "$app" 2>/dev/null && wait "$app" 2>/dev/null
	# the helper's cmd (one per helper started): each wrote its pid
	[ -s "$D/cmd.pids" ] && kill $(cat "$D/cmd.pids") 2>/dev/null
	rm -rf "$D"
}
trap cleanup EXIT
S=$D/agent.sock
. "$(dirname "$0")/lib/tap.sh"
m() { stat -L -c '%a %u' "$1" 2>/dev/null; }
me=$(id -u)
# a whole set: the key is the cert's, and the bundle verifies the cert.
# The set is read through ..data resolved once, and copied in one go, as a
# reader that must not mix two sets reads it: the helper may still be
# rotating (2 s TTL), and reading svid.pem then svid_key.pem by their
# stable names could straddle a swap (docs/delivery.md).  A copy that lost
# a file to the removal of a replaced set is retried on the next set.
consistent() {
	local d=$1 s i got=no
	for i in 1 2 3 4 5 6 7 8 9 10; do
		s=$(readlink -f "$d/..data" 2>/dev/null)
		[ -n "$s" ] || s=$d
		rm -rf "$D/cset" && mkdir "$D/cset" || return 1
		if cp "$s/svid.pem" "$s/svid_key.pem" "$s/svid_bundle.pem" "$D/cset/" 2>/dev/null; then
			got=yes
			break
		fi
	done
	[ $got = yes ] &&
		[ -n "$(openssl pkey -in "$D/cset/svid_key.pem" -pubout 2>/dev/null)" ] &&
		[ "$(openssl x509 -in "$D/cset/svid.pem" -noout -pubkey 2>/dev/null)" = \
			"$(openssl pkey -in "$D/cset/svid_key.pem" -pubout 2>/dev/null)" ] &&
		openssl verify -no_check_time -CAfile "$D/cset/svid_bundle.pem" "$D/cset/svid.pem" >/dev/null 2>&1
}
serial() { openssl x509 -in "$1/..data/svid.pem" -noout -serial 2>/dev/null; }
wait_new_serial() { # DIR OLD
	local s
	for _ in $(seq 1 300); do
		s=$(serial "$1")
		[ -n "$s" ] && [ "$s" != "$2" ] && return 0
		sleep 0.1
	done
	return 1
}

"$agent" --dev --state-dir "$D/state" --socket "$S" --x509-svid-ttl 2s \
	>"$D/agent.out" 2>"$D/agent.err" &
pid=$!
for _ in $(seq 1 300); do
	[ -S "$S" ] && "$cubeid" status --socket "$S" >/dev/null 2>&1 && break
	sleep 0.1
done

# ---- one-shot, spiffe-helper's own file format
cat >"$D/once.conf" <<EOF
# written for spiffe-helper v0.11.0
agent_address = "$S"
cert_dir = "$D/once"
svid_file_name = "svid.pem"
svid_key_file_name = "svid_key.pem"
svid_bundle_file_name = "svid_bundle.pem"
jwt_bundle_file_name = "jwt_bundle.json"   // spiffe-helper's JSON of base64 JWKS
jwt_svids = [{jwt_audience = "picod", jwt_svid_file_name = "picod.jwt"}]
cert_file_mode = 0444
daemon_mode = false
EOF
if "$cubeid" helper -config "$D/once.conf" >"$D/once.log" 2>&1; then
	ok "cubeid helper -config (daemon_mode = false) exits 0"
else
	bad "one-shot: $(cat "$D/once.log")"
fi
O=$D/once
if [ "$(m "$O/svid.pem")" = "444 $me" ] && [ "$(m "$O/svid_bundle.pem")" = "444 $me" ] &&
	[ "$(m "$O/svid_key.pem")" = "600 $me" ] && [ "$(m "$O/picod.jwt")" = "600 $me" ] &&
	[ "$(m "$O/jwt_bundle.json")" = "600 $me" ]; then
	ok "modes: cert_file_mode 0444; key, JWT-SVID and JWT bundle 0600 (spiffe-helper's defaults); owner $me"
else
	bad "modes: $(m "$O/svid.pem") $(m "$O/svid_key.pem") $(m "$O/picod.jwt") $(m "$O/jwt_bundle.json")"
fi
# (the agent runs with a 2 s TTL: on a loaded machine the one-shot set may
# have expired by now, so the chain is checked without the time, as in
# consistent)
if consistent "$O" && openssl verify -no_check_time -CAfile "$O/svid_bundle.pem" "$O/svid.pem" >/dev/null 2>&1 &&
	[ "$(readlink "$O/svid.pem")" = "..data/svid.pem" ]; then
	ok "svid.pem -> ..data/svid.pem verifies against svid_bundle.pem; the key is the cert's"
else
	bad "one-shot set: $(ls -la "$O")"
fi
jwks=$(sed -n 's/^{"cluster.local":"\([A-Za-z0-9+\/=]*\)"}$/\1/p' "$O/jwt_bundle.json" | base64 -d 2>/dev/null)
tok=$(cat "$O/picod.jwt")
if printf '%s' "$jwks" | grep -q '"keys"' && [ "$(printf '%s' "$tok" | tr -cd . | wc -c)" -eq 2 ]; then
	ok "jwt_bundle.json is {\"cluster.local\": base64(JWKS)}; picod.jwt holds a JWT"
else
	bad "JWT outputs: $(head -c 200 "$O/jwt_bundle.json")"
fi
sed 's/^daemon_mode = false/daemon_mode = true/; s|/once"|/once2"|' "$D/once.conf" >"$D/once2.conf"
if timeout 60 "$cubeid" helper -config="$D/once2.conf" -daemon-mode=false >"$D/once2.log" 2>&1 &&
	consistent "$D/once2"; then
	ok "-daemon-mode=false overrides daemon_mode = true (as spiffe-helper's flag does)"
else
	bad "-daemon-mode=false: $(cat "$D/once2.log")"
fi

# ---- an unknown key: the file and the line
printf 'agent_address = "%s"\ncert_dir = "%s/x"\n\n  svid_file_nam = "svid.pem"\n' "$S" "$D" >"$D/bad.conf"
"$cubeid" helper -config "$D/bad.conf" >"$D/bad.log" 2>&1
rc=$?
if [ $rc -eq 2 ] && grep -q "$D/bad.conf:4: unknown key 'svid_file_nam'" "$D/bad.log"; then
	ok "an unknown key: exit 2, '$(grep -o "bad.conf:4: unknown key '[a-z_]*'" "$D/bad.log")'"
else
	bad "unknown key: exit $rc: $(cat "$D/bad.log")"
fi

# ---- health_checks: spiffe-helper's liveness and readiness listener
command -v curl >/dev/null || { echo "FAIL: curl not found"; exit 1; }
. "$(dirname "$0")/lib/free-port.sh"
# hget PATH [curl args] -> "CODE CONTENT-TYPE", the body in $D/h.body
hget() {
	curl -s -o "$D/h.body" -w '%{http_code} %{content_type}' --max-time 30 "${@:2}" \
		"http://127.0.0.1:$hport$1"
}
# hwait PATH CODE TEXT: until PATH answers CODE with TEXT in its body (120 s)
hwait() {
	for _ in $(seq 1 1200); do
		[ "$(hget "$1")" = "$2 application/json" ] && grep -qF "$3" "$D/h.body" && return 0
		sleep 0.1
	done
	return 1
}
H=$D/health
mkdir -p "$H"
sed "s|/once\"|/once3\"|" "$D/once.conf" >"$D/once3.conf"
printf 'health_checks {\n  listener_enabled = true\n}\n' >>"$D/once3.conf"
if "$cubeid" helper -config "$D/once3.conf" >"$D/once3.log" 2>&1 && consistent "$D/once3" &&
	grep -q "no listener when daemon_mode is false" "$D/once3.log"; then
	ok "one-shot with listener_enabled: writes, exits 0, no listener (as spiffe-helper)"
else
	bad "one-shot with health_checks: $(cat "$D/once3.log")"
fi
for _ in 1 2 3 4 5; do
	hport=$(free_port) || break
	cat >"$D/health.conf" <<EOF
# spiffe-helper v0.11.0 with its health listener; the agent's socket comes later
agent_address = "$D/late.sock"
cert_dir = "$H"
svid_file_name = "svid.pem"
svid_key_file_name = "svid_key.pem"
svid_bundle_file_name = "svid_bundle.pem"
jwt_bundle_file_name = "jwt_bundle.json"
jwt_svids = [{jwt_audience = "picod", jwt_svid_file_name = "picod.jwt"}]
health_checks {
  listener_enabled = true
  bind_port = $hport
}
EOF
	"$cubeid" helper -config "$D/health.conf" --health-address 127.0.0.1 >"$D/health.log" 2>&1 &
	hpid=$!
	for _ in $(seq 1 300); do
		(exec 3<>"/dev/tcp/127.0.0.1/$hport") 2>/dev/null && break
		kill -0 "$hpid" 2>/dev/null || break
		sleep 0.1
	done
	kill -0 "$hpid" 2>/dev/null && break
	wait "$hpid"
	hpid=
	grep -q "cannot listen" "$D/health.log" || break # only a taken port is retried
done
if [ -z "$hpid" ]; then
	bad "health listener did not start: $(cat "$D/health.log")"
else
	# no agent yet: alive, not ready, everything "unwritten"
	unw='{"x509_write_status":"unwritten","jwt_write_status":{"'$H'/jwt_bundle.json":"unwritten","'$H'/picod.jwt":"unwritten"}}'
	if [ "$(hget /live)" = "200 application/json" ] &&
		[ "$(cat "$D/h.body")" = '{"status":"OK","health":{"file_write_statuses":'"$unw"'}}' ] &&
		[ "$(hget /ready)" = "503 application/json" ] &&
		[ "$(cat "$D/h.body")" = '{"status":"Service Unavailable","health":{"file_write_statuses":'"$unw"'}}' ]; then
		ok "before any write: /live 200, /ready 503, spiffe-helper's JSON, all \"unwritten\" (port $hport)"
	else
		bad "before any write: $(hget /live) $(cat "$D/h.body")"
	fi
	# the agent appears, but the write fails: not alive
	mkdir "$H/svid.pem"
	ln -s "$S" "$D/late.sock"
	if hwait /live 503 '"x509_write_status":"failed"' &&
		[ "$(hget /ready)" = "503 application/json" ]; then
		ok "a failed write: /live and /ready 503, x509_write_status \"failed\""
	else
		bad "failed write: $(hget /live) $(cat "$D/h.body") $(tail -3 "$D/health.log")"
	fi
	rmdir "$H/svid.pem"
	wr='{"x509_write_status":"written","jwt_write_status":{"'$H'/jwt_bundle.json":"written","'$H'/picod.jwt":"written"}}'
	if hwait /ready 200 '"status":"OK"' &&
		[ "$(cat "$D/h.body")" = '{"status":"OK","health":{"file_write_statuses":'"$wr"'}}' ] &&
		consistent "$H" && [ -s "$H/picod.jwt" ] && [ -s "$H/jwt_bundle.json" ] &&
		[ "$(hget /live)" = "200 application/json" ]; then
		ok "once the files are written: /ready and /live 200, every status \"written\""
	else
		bad "after the write: $(hget /ready) $(cat "$D/h.body")"
	fi
	if [ "$(hget /other)" = "404 text/plain; charset=utf-8" ] &&
		[ "$(cat "$D/h.body")" = "404 page not found" ] &&
		[ "$(hget /ready -d body)" = "405 text/plain; charset=utf-8" ] &&
		[ "$(hget /live -X GET -d body)" = "200 application/json" ] &&
		[ "$(hget /ready -I)" = "200 application/json" ]; then
		ok "other paths 404 (as Go's ServeMux); POST (with a body) 405; GET with a body and HEAD 200"
	else
		bad "other requests: $(hget /other) $(hget /ready -d body) $(hget /live -X GET -d body) $(hget /ready -I)"
	fi
	kill -TERM "$hpid"
	wait "$hpid"
	rc=$?
	hpid=
	if [ $rc -eq 0 ] && ! (exec 3<>"/dev/tcp/127.0.0.1/$hport") 2>/dev/null; then
		ok "SIGTERM: exit 0 and port $hport is released"
	else
		bad "after SIGTERM: exit $rc, port $hport still answers?"
	fi
fi

# ---- daemon mode: cmd, cmd_args, renew_signal, pid_file_name
cat >"$D/app.sh" <<EOF
#!/bin/bash
# the workload spiffe-helper would start: records its arguments and SIGUSR1s
echo \$\$ >> "$D/cmd.pids"
printf '%s\n' "\$@" > "$D/cmd.args"
echo start >> "$D/cmd.starts"
trap 'echo usr1 >> "$D/cmd.usr1"' USR1
while :; do sleep 0.1; done
EOF
chmod +x "$D/app.sh"
bash -c 'trap "echo usr1 >> '"$D"'/pf.usr1" USR1; echo $$ > '"$D"'/pf.pid; while :; do sleep 0.1; done' &
app=$!
cat >"$D/daemon.conf" <<EOF
agent_address = "$S"
cert_dir = "$D/daemon"
svid_file_name = "svid.pem"
svid_key_file_name = "svid_key.pem"
svid_bundle_file_name = "svid_bundle.pem"
cmd = "bash"
cmd_args = "$D/app.sh \"two words\" x"
renew_signal = "SIGUSR1"
pid_file_name = "$D/pf.pid"
EOF
"$cubeid" helper -config "$D/daemon.conf" >"$D/daemon.log" 2>&1 &
hpid=$!
if wait_new_serial "$D/daemon" ""; then
	ok "daemon mode wrote the set"
else
	bad "daemon mode: $(cat "$D/daemon.log")"
fi
"$probe" --seconds 20 "$D/daemon" svid.pem svid_key.pem >"$D/probe.naive" &
p1=$!
"$probe" --snapshot --seconds 20 "$D/daemon" svid.pem svid_key.pem >"$D/probe.snap"
wait $p1
echo "# torn-read probe, cubeid helper, stable names: $(cat "$D/probe.naive")"
echo "# torn-read probe, cubeid helper, through ..data: $(cat "$D/probe.snap")"
get() { sed -n "s/.*$2=\([0-9]*\).*/\1/p" "$1"; }
if [ "$(get "$D/probe.snap" rotations)" -ge 5 ] && [ "$(get "$D/probe.snap" mismatches)" -eq 0 ] &&
	[ "$(get "$D/probe.snap" torn)" -eq 0 ] && [ "$(get "$D/probe.naive" torn)" -eq 0 ]; then
	ok "probe on the helper's files: $(get "$D/probe.snap" rotations) rotations, 0 mismatched through ..data, 0 torn"
else
	bad "probe on the helper's files: $(cat "$D/probe.snap") / $(cat "$D/probe.naive")"
fi
starts=$(wc -l <"$D/cmd.starts" 2>/dev/null || echo 0)
usr1=$(wc -l <"$D/cmd.usr1" 2>/dev/null || echo 0)
pfusr1=$(wc -l <"$D/pf.usr1" 2>/dev/null || echo 0)
if [ "$starts" -eq 1 ] && [ "$usr1" -ge 3 ] &&
	[ "$(printf '%s|' $(cat "$D/cmd.args" | tr ' ' '_'))" = "two_words|x|" ]; then
	ok "cmd started once with cmd_args [\"two words\", \"x\"] (no shell); renew_signal SIGUSR1 to it $usr1 times"
else
	bad "cmd: starts $starts, USR1 $usr1, args $(tr '\n' '|' <"$D/cmd.args" 2>/dev/null)"
fi
if [ "$pfusr1" -ge 3 ]; then
	ok "renew_signal to the pid in pid_file_name after each update ($pfusr1)"
else
	bad "pid_file_name: $pfusr1 signals"
fi

# ---- the agent restarts (stopped by pid, started again on the same socket
# and state): the helper's streams reopen by themselves (Workload API 4.2):
# at once after a stream that worked, then with a backoff (capped at 30 s)
# while the agent is away; the new agent's SVID reaches the files.
ended() { grep -c "the X.509-SVID stream ended" "$D/daemon.log"; }
e0=$(ended)
kill -TERM "$pid"
wait "$pid"
pid=
s1=$(serial "$D/daemon") # the last SVID of the old agent
for _ in $(seq 1 1200); do [ "$(ended)" -ge $((e0 + 3)) ] && break; sleep 0.1; done
if [ "$(ended)" -ge $((e0 + 3)) ] &&
	grep -q "the X.509-SVID stream ended: .*; again in 0 ms" "$D/daemon.log" &&
	grep -q "the X.509-SVID stream ended: .*; again in 2000 ms" "$D/daemon.log"; then
	ok "agent stopped: the helper reopened its stream at once, then kept trying with a backoff"
else
	bad "agent stopped: $(grep "stream ended" "$D/daemon.log" | tail -4)"
fi
"$agent" --dev --state-dir "$D/state" --socket "$S" --x509-svid-ttl 2s \
	>>"$D/agent.out" 2>>"$D/agent.err" &
pid=$!
s2=
for _ in $(seq 1 1200); do
	s2=$(serial "$D/daemon")
	[ -n "$s2" ] && [ "$s2" != "$s1" ] && break
	sleep 0.1
done
if [ -n "$s2" ] && [ "$s2" != "$s1" ] && consistent "$D/daemon"; then
	ok "agent restarted: the helper reconnected by itself and wrote the new agent's SVID"
else
	bad "agent restarted: no new SVID in the helper's files ($s1 / $s2)"
fi

# ---- a write that fails is logged and retried with backoff
mkdir -p "$D/retry/svid.pem" # a directory where a stable name must go
sed "s|$D/daemon\"|$D/retry\"|; /^cmd/d; /^renew_signal/d; /^pid_file_name/d" \
	"$D/daemon.conf" >"$D/retry.conf"
"$cubeid" helper -config "$D/retry.conf" >"$D/retry.log" 2>&1 &
rpid=$!
for _ in $(seq 1 200); do grep -q "retrying in" "$D/retry.log" && break; sleep 0.1; done
rmdir "$D/retry/svid.pem"
for _ in $(seq 1 300); do [ -L "$D/retry/svid.pem" ] && consistent "$D/retry" && break; sleep 0.1; done
kill "$rpid"
wait "$rpid"
if grep -q "failed: cannot create a stable name through ..data .*retrying in 1000 ms" "$D/retry.log" &&
	[ -L "$D/retry/svid.pem" ] && consistent "$D/retry"; then
	ok "a failed write is logged ('retrying in 1000 ms') and the set arrives once the way is clear"
else
	bad "retry: $(tail -3 "$D/retry.log")"
fi

# ---- SIGKILL the helper at random moments
crash_ok=0
for i in $(seq 1 "$KILLS"); do
	sleep "0.$((RANDOM % 10))$((RANDOM % 10))"
	sleep $((RANDOM % 2))
	kill -KILL "$hpid"
	wait "$hpid" 2>/dev/null
	if ! consistent "$D/daemon"; then
		bad "after SIGKILL $i of the helper the stable names do not show a whole set"
		hpid=
		break
	fi
	s0=$(serial "$D/daemon")
	"$cubeid" helper -config "$D/daemon.conf" >>"$D/daemon.log" 2>&1 &
	hpid=$!
	wait_new_serial "$D/daemon" "$s0" && crash_ok=$((crash_ok + 1))
done
[ "$crash_ok" -eq "$KILLS" ] && ok "$KILLS SIGKILLs of cubeid helper: each left a whole set; each restart wrote again"
kill -TERM "$hpid"
wait "$hpid"
rc=$?
hpid=
nsets=$(find "$D/daemon" -maxdepth 1 -name '..[0-9]*' -type d | wc -l)
ntmp=$(find "$D/daemon" -maxdepth 1 -name '..*_tmp' | wc -l)
if [ $rc -eq 0 ] && [ "$nsets" -eq 1 ] && [ "$ntmp" -eq 0 ] && consistent "$D/daemon"; then
	ok "SIGTERM: exit 0; one set and no temporary links"
else
	bad "after SIGTERM: exit $rc, $nsets sets, $ntmp temporary links"
fi

echo "1..$n"
if [ "$fails" -ne 0 ]; then
	echo "helper log:"
	sed 's/^/    | /' "$D/daemon.log" | tail -30
	exit 1
fi
exit 0
