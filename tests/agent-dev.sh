#!/bin/bash
# cubeid-agent --dev end to end: the real daemon on a throwaway SoftHSM2
# token (made by the agent itself under a temp state directory) and the
# `cubeid` CLI as its Workload API client.
#   - --check accepts a good config and names the bad key of a bad one;
#   - svid fetch writes PEM files that openssl verifies against the bundle,
#     with the URI SAN spiffe://cluster.local/unix/uid/$(id -u), key 0600;
#   - jwt fetch --aud x: ValidateJWTSVID accepts it for x and refuses it for
#     y, and `cubeid jwt verify` accepts it with the state's JWT keys;
#   - bundle fetch (pem, jwks) and status;
#   - no security header: InvalidArgument; another uid (nobody, when we are
#     root): PermissionDenied and no SVID written;
#   - a short X.509-SVID TTL rotates: a later fetch gets a new serial;
#   - SIGHUP reloads the entries (a new identity appears) and keeps serving;
#     svid fetch then writes both SVIDs (the second to svid.1.pem etc.);
#   - so does replacing the entries file, with no signal (inotify);
#   - SIGTERM stops the agent with exit status 0 and removes the socket.
set -u
builddir=${CUBEID_BUILDDIR:-.}
cubeid=$builddir/cli/cubeid
agent=$builddir/agent/cubeid-agent

for tool in openssl grep; do
	if ! command -v "$tool" >/dev/null 2>&1; then
		echo "SKIP: $tool not found"
		exit 77
	fi
done
[ -n "${CUBEID_SOFTHSM_MODULE:-}" ] && export CUBEID_PKCS11_MODULE=$CUBEID_SOFTHSM_MODULE
unset CUBEID_TOKEN CUBEID_PIN CUBEID_PIN_FILE CUBEID_STATE_DIR SPIFFE_ENDPOINT_SOCKET
D=$(mktemp -d /tmp/cubeid-agent-dev.XXXXXX) || exit 1
chmod 0755 "$D" # another uid must reach the socket
pid=
cleanup() {
	[ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
	rm -rf "$D"
}
trap cleanup EXIT
S=$D/run/agent.sock
state=$D/state
uid=$(id -u)
. "$(dirname "$0")/lib/tap.sh"
serial_of() { openssl x509 -in "$1" -noout -serial | cut -d= -f2; }

# --check --offline
cat >"$D/good.yaml" <<EOF
# a good config
trust_domain: cluster.local
socket_path: $S
state_dir: $state
entries: $D/entries.yaml
x509_svid_ttl: 1h
EOF
printf 'trust_domain: cluster.local\nsocket_pth: /x\n' >"$D/bad.yaml"
# (the token and the CA: tests/agent-check.sh; here the files, --offline)
printf 'entries:\n  - spiffe_id: spiffe://{td}/x\n    selectors: [unix:uid:1]\n' >"$D/entries.yaml"
check "--check accepts a good config" 0 "$agent" --config "$D/good.yaml" --check --offline
check "--check refuses an unknown key" 1 "$agent" --config "$D/bad.yaml" --check --offline
assert "--check names the key and its line" grep -q "socket_pth" "$D/err"
printf 'entries:\n  - spiffe_id: spiffe://{td}\n    selectors: [unix:uid:0]\n' >"$D/root-entries.yaml"
check "--check refuses an entry for the trust domain's own ID" 1 "$agent" --config "$D/good.yaml" \
	--entries "$D/root-entries.yaml" --check --offline
assert "--check names the entry's file and line" grep -q "root-entries.yaml:2: bad spiffe_id" "$D/err"
# --check refuses what an entries file or a PIN file must not allow, with FILE:LINE
hostile() { # hostile NAME DELIVERY_LINES WANT [SPIFFE_ID]
	local id='spiffe://{td}/x'

	[ $# -gt 3 ] && id=$4
	printf 'entries:\n  - name: x\n    spiffe_id: %s\n    selectors: [unix:uid:1]\n%b' \
		"$id" "$2" >"$D/hostile.yaml"
	check "--check refuses $1" 1 "$agent" --config "$D/good.yaml" --entries "$D/hostile.yaml" --check --offline
	assert "naming $D/hostile.yaml:$3" grep -qF "$D/hostile.yaml:$3" "$D/err"
}
hostile "key_mode 0644" '    delivery:\n      dir: /tmp/x\n      key_mode: 0644\n' "7: 'key_mode' 0644"
hostile "key_mode 4755" '    delivery:\n      dir: /tmp/x\n      key_mode: 4755\n' "7: 'key_mode' 4755"
hostile "SIGKILL" '    delivery:\n      dir: /tmp/x\n      signal: SIGKILL\n      pid: 99\n' "7: 'signal'"
hostile "pid 1" '    delivery:\n      dir: /tmp/x\n      signal: SIGHUP\n      pid: 1\n' "8: 'pid': 1"
hostile "dir: /etc" '    delivery:\n      dir: /etc\n' "6: 'dir': /etc is a system directory"
hostile "dir: /" '    delivery:\n      dir: /\n' "6: 'dir': / is a system directory"
hostile "a foreign trust domain" '' "2: entry x: spiffe_id 'spiffe://other.org/x' is not in the trust domain cluster.local" \
	spiffe://other.org/x
hostile "a placeholder in the trust domain" '' "3: bad spiffe_id 'spiffe://{unix:user}/x'" \
	'spiffe://{unix:user}/x'
printf '1234\n' >"$D/pin"
chmod 0640 "$D/pin"
printf 'pin_file: %s\n' "$D/pin" | cat "$D/good.yaml" - >"$D/pin.yaml"
check "--check refuses a PIN file others can read" 1 "$agent" --config "$D/pin.yaml" --check --offline
assert "and says why" grep -qF "pin_file $D/pin: readable or writable by others (mode 0640): refused" "$D/err"
chmod 0600 "$D/pin"
check "--check accepts a 0600 PIN file" 0 "$agent" --config "$D/pin.yaml" --check --offline
if [ "$(id -u)" -eq 0 ]; then
	chown 65534 "$D/pin"
	check "--check refuses a PIN file of another user" 1 "$agent" --config "$D/pin.yaml" --check --offline
	assert "and says whose it is" grep -qF "owned by uid 65534" "$D/err"
fi
check "--help" 0 "$agent" --help
check "a bad flag value is a usage error" 2 "$agent" --dev --x509-svid-ttl 1y --check --offline

# start the agent
printf 'entries: []\n' >"$D/entries.yaml"
"$agent" --dev --state-dir "$state" --socket "$S" --entries "$D/entries.yaml" \
	--x509-svid-ttl 6s --log-level info >"$D/agent.out" 2>"$D/agent.err" &
pid=$!
for _ in $(seq 1 300); do
	[ -S "$S" ] && "$cubeid" status --socket "$S" >/dev/null 2>&1 && break
	kill -0 "$pid" 2>/dev/null || break
	sleep 0.1
done
check "the agent is up (cubeid status)" 0 "$cubeid" status --socket "$S"
assert "status shows the dev token" grep -q "cubeid-dev" "$D/out"
assert "the banner says DEVELOPMENT MODE" grep -q "DEVELOPMENT MODE: not for production" "$D/agent.err"
assert "stdout has the SPIFFE_ENDPOINT_SOCKET line" grep -qx "SPIFFE_ENDPOINT_SOCKET=unix://$S" "$D/agent.out"
assert "the socket directory is 0755" [ "$(stat -c %a "$D/run")" = 755 ]

# X.509-SVID
want="spiffe://cluster.local/unix/uid/$uid"
check "svid fetch" 0 "$cubeid" svid fetch --socket "$S" --out "$D/svid"
assert "svid fetch prints the SPIFFE ID" grep -qx "$want" "$D/out"
check "openssl verifies the SVID against the bundle" 0 \
	openssl verify -CAfile "$D/svid/svid_bundle.pem" "$D/svid/svid.pem"
check "URI SAN" 0 openssl x509 -in "$D/svid/svid.pem" -noout -ext subjectAltName
assert "the URI SAN is $want" grep -q "URI:$want\$" "$D/out"
assert "svid_key.pem is 0600" [ "$(stat -c %a "$D/svid/svid_key.pem")" = 600 ]
check "the key matches the certificate" 0 bash -c \
	"[ \"\$(openssl x509 -in '$D/svid/svid.pem' -noout -pubkey)\" = \"\$(openssl pkey -in '$D/svid/svid_key.pem' -pubout)\" ]"
assert "one audit line per issuance" grep -q "issued x509-svid spiffe_id=$want pid=[0-9]* uid=$uid entry=dev-user selectors=\[.*unix:uid:$uid.*\] serial=" "$D/agent.err"
assert "no private key in the log" bash -c "! grep -q 'PRIVATE KEY' '$D/agent.err'"

# JWT-SVID
check "jwt fetch --aud x" 0 "$cubeid" jwt fetch --aud x --socket "$S"
tok=$(head -1 "$D/out")
check "ValidateJWTSVID accepts it for x" 0 "$cubeid" jwt validate "$tok" --aud x --socket "$S"
assert "ValidateJWTSVID returns the SPIFFE ID" grep -qx "$want" "$D/out"
assert "ValidateJWTSVID returns the claims" grep -q '"aud":"x"' "$D/out"
check "ValidateJWTSVID refuses it for y (7: rejected)" 7 "$cubeid" jwt validate "$tok" --aud y --socket "$S"
assert "as InvalidArgument" grep -q "code=InvalidArgument" "$D/err"
check "cubeid jwt verify accepts it" 0 "$cubeid" jwt verify "$tok" --aud x --state-dir "$state"
check "a second fetch for x is the cached token" 0 "$cubeid" jwt fetch --aud x --socket "$S"
assert "same token (cached until half its lifetime)" [ "$(head -1 "$D/out")" = "$tok" ]
check "jwt fetch needs an audience" 2 "$cubeid" jwt fetch --socket "$S"
assert "the log names the jti, never the token" bash -c "grep -q 'issued jwt-svid.*jti=' '$D/agent.err' && ! grep -qF '$tok' '$D/agent.err'"

# bundles and status
check "bundle fetch (pem)" 0 "$cubeid" bundle fetch --socket "$S"
assert "the X.509 bundle is the SVID's" cmp -s "$D/out" "$D/svid/svid_bundle.pem"
check "bundle fetch --format jwks" 0 "$cubeid" bundle fetch --format jwks --socket "$S"
assert "the JWKS has use jwt-svid and a kid" grep -q '"use":"jwt-svid"' "$D/out"
check "status -o json" 0 "$cubeid" status -o json --socket "$S"
assert "status counts the dev entry" grep -q '"entries":1' "$D/out"

# refusals
check "no security header" 2 "$cubeid" svid fetch --no-security-header --socket "$S" --out "$D/nohdr"
assert "is InvalidArgument" grep -q "code=InvalidArgument" "$D/err"
assert "and writes nothing" [ ! -e "$D/nohdr/svid.pem" ]
if [ "$uid" -eq 0 ] && command -v setpriv >/dev/null && id nobody >/dev/null 2>&1; then
	mkdir -p "$D/nobody" && chown nobody "$D/nobody"
	as_nobody=(setpriv --reuid=nobody --regid="$(id -g nobody)" --clear-groups)
	check "another uid is refused" 1 "${as_nobody[@]}" "$cubeid" svid fetch --socket "$S" --out "$D/nobody"
	assert "as PermissionDenied" grep -q "code=PermissionDenied" "$D/err"
	assert "and gets no SVID" [ ! -e "$D/nobody/svid.pem" ]
	check "nor a JWT-SVID" 1 "${as_nobody[@]}" "$cubeid" jwt fetch --aud x --socket "$S"
	assert "as PermissionDenied" grep -q "code=PermissionDenied" "$D/err"
	check "nor the status" 1 "${as_nobody[@]}" "$cubeid" status --socket "$S"
else
	echo "# not root (or no setpriv): the other-uid checks did not run"
fi

# rotation: the 6 s SVID is renewed at about half its lifetime
s1=$(serial_of "$D/svid/svid.pem")
rotated=no
for _ in $(seq 1 100); do
	"$cubeid" svid fetch --socket "$S" --out "$D/svid2" >/dev/null 2>&1 || break
	if [ "$(serial_of "$D/svid2/svid.pem")" != "$s1" ]; then rotated=yes; break; fi
	sleep 0.2
done
assert "the short-lived SVID rotates (new serial)" [ "$rotated" = yes ]
check "the rotated SVID verifies" 0 openssl verify -CAfile "$D/svid2/svid_bundle.pem" "$D/svid2/svid.pem"

# SIGHUP: a new entry for this uid appears, the agent keeps serving
cat >"$D/entries.yaml" <<EOF
entries:
  - name: extra
    spiffe_id: spiffe://{td}/extra/{unix:uid}
    selectors: [unix:uid:$uid]
EOF
kill -HUP "$pid"
for _ in $(seq 1 100); do grep -q "reloaded" "$D/agent.err" && break; sleep 0.1; done
assert "SIGHUP reloads" grep -q "reloaded: 1 entries" "$D/agent.err"
check "still serving after SIGHUP" 0 "$cubeid" svid fetch --socket "$S" --out "$D/svid3"
# two identities: both written, the second to the indexed names
assert "svid fetch prints both SPIFFE IDs" [ "$(wc -l <"$D/out")" -eq 2 ]
assert "svid fetch names the extra identity" grep -qx "spiffe://cluster.local/extra/$uid" "$D/out"
for f in svid.pem svid_key.pem svid_bundle.pem svid.1.pem svid_key.1.pem svid_bundle.1.pem; do
	assert "svid fetch wrote $f" [ -s "$D/svid3/$f" ]
done
assert "svid_key.1.pem is 0600" [ "$(stat -c %a "$D/svid3/svid_key.1.pem")" = 600 ]
uris=$(for f in svid.pem svid.1.pem; do
	openssl x509 -in "$D/svid3/$f" -noout -ext subjectAltName 2>/dev/null | grep -o 'spiffe://[^, ]*'
done | sort | tr '\n' ' ')
assert "the two certificates carry the two SPIFFE IDs ($uris)" \
	[ "$uris" = "$(sort "$D/out" | tr '\n' ' ')" ]
check "the second SVID verifies" 0 openssl verify -CAfile "$D/svid3/svid_bundle.1.pem" "$D/svid3/svid.1.pem"
pub_of() { openssl pkey -in "$1" -pubout 2>/dev/null; }
pubc_of() { openssl x509 -in "$1" -noout -pubkey 2>/dev/null; }
assert "the second key matches the second certificate" \
	[ "$(pub_of "$D/svid3/svid_key.1.pem")" = "$(pubc_of "$D/svid3/svid.1.pem")" ]
assert "the two keys differ" \
	[ "$(pub_of "$D/svid3/svid_key.1.pem")" != "$(pub_of "$D/svid3/svid_key.pem")" ]
check "jwt fetch after SIGHUP" 0 "$cubeid" jwt fetch --aud z --socket "$S"
assert "two identities now (two tokens)" [ "$(wc -l <"$D/out")" -eq 2 ]
check "jwt fetch --spiffe-id picks one" 0 "$cubeid" jwt fetch --aud z --spiffe-id "spiffe://cluster.local/extra/$uid" --socket "$S"
assert "one token" [ "$(wc -l <"$D/out")" -eq 1 ]
printf 'entries: [\n' >"$D/entries.yaml"
kill -HUP "$pid"
for _ in $(seq 1 100); do grep -q "keeping the old" "$D/agent.err" && break; sleep 0.1; done
assert "a broken entries file keeps the old entries" grep -q "keeping the old" "$D/agent.err"
check "and the agent still serves" 0 "$cubeid" svid fetch --socket "$S" --out "$D/svid4"

# JWT key rollover in the state, then SIGHUP: the bundle has both keys
check "jwks before the rollover" 0 "$cubeid" bundle fetch --format jwks --socket "$S"
assert "one JWT key" [ "$(grep -o '"kid"' "$D/out" | wc -l)" -eq 1 ]
check "cubeid ca jwt-rotate on the agent's token" 0 env SOFTHSM2_CONF="$state/softhsm/softhsm2.conf" \
	"$cubeid" ca jwt-rotate --token "pkcs11:token=cubeid-dev" --pin-file "$state/softhsm/user.pin" \
	--state-dir "$state"
printf 'entries: []\n' >"$D/entries.yaml"
nreload=$(grep -c "reloaded" "$D/agent.err")
kill -HUP "$pid"
for _ in $(seq 1 100); do [ "$(grep -c "reloaded" "$D/agent.err")" -gt "$nreload" ] && break; sleep 0.1; done
check "jwks after the rollover and SIGHUP" 0 "$cubeid" bundle fetch --format jwks --socket "$S"
assert "two JWT keys published" [ "$(grep -o '"kid"' "$D/out" | wc -l)" -eq 2 ]
check "jwt fetch still works (the old key signs until the new one is due)" 0 \
	"$cubeid" jwt fetch --aud after-rotate --socket "$S"
tok2=$(head -1 "$D/out")
check "and it validates" 0 "$cubeid" jwt validate "$tok2" --aud after-rotate --socket "$S"

# No signal at all: replacing the entries file (by rename, as editors and
# ConfigMap updates do) reloads the entries within a second.
nchanged=$(grep -c "entries changed" "$D/agent.err" || true)
cat >"$D/entries.yaml.new" <<EOF
entries:
  - name: watched
    spiffe_id: spiffe://{td}/watched/{unix:uid}
    selectors: [unix:uid:$uid]
EOF
mv "$D/entries.yaml.new" "$D/entries.yaml"
for _ in $(seq 1 100); do
	[ "$(grep -c "entries changed" "$D/agent.err" || true)" -gt "$nchanged" ] && break
	sleep 0.1
done
for _ in $(seq 1 30); do
	"$cubeid" jwt fetch --aud w --spiffe-id "spiffe://cluster.local/watched/$uid" \
		--socket "$S" >/dev/null 2>&1 && break
	sleep 0.1
done
check "an entry written without SIGHUP is served" 0 "$cubeid" jwt fetch --aud w \
	--spiffe-id "spiffe://cluster.local/watched/$uid" --socket "$S"
# Other files in that directory (the agent's own log is one) cause no reload.
sleep 0.5
nchanged=$(grep -c "entries changed" "$D/agent.err" || true)
echo noise >"$D/unrelated.txt"
mv "$D/unrelated.txt" "$D/unrelated2.txt"
sleep 1
assert "an unrelated file in the entries directory causes no reload" \
	[ "$(grep -c "entries changed" "$D/agent.err" || true)" -eq "$nchanged" ]

# SIGTERM
kill -TERM "$pid"
wait "$pid"
rc=$?
pid=
assert "SIGTERM: exit status 0" [ "$rc" -eq 0 ]
assert "the socket is removed" [ ! -e "$S" ]
assert "the agent said it stopped" grep -q "stopped" "$D/agent.err"

# a second start reuses the token and the CA
"$agent" --dev --state-dir "$state" --socket "$S" >"$D/agent2.out" 2>"$D/agent2.err" &
pid=$!
for _ in $(seq 1 300); do
	[ -S "$S" ] && "$cubeid" status --socket "$S" >/dev/null 2>&1 && break
	kill -0 "$pid" 2>/dev/null || break
	sleep 0.1
done
check "restart: svid fetch" 0 "$cubeid" svid fetch --socket "$S" --out "$D/svid5"
assert "restart: same bundle (the CA was reused)" cmp -s "$D/svid/svid_bundle.pem" "$D/svid5/svid_bundle.pem"
assert "restart: no new CA" bash -c "! grep -q 'created root CA' '$D/agent2.err'"
kill -TERM "$pid"
wait "$pid"
pid=

# socket activation: the agent serves on the socket it is passed
if command -v systemd-socket-activate >/dev/null 2>&1; then
	A=$D/activated.sock
	systemd-socket-activate -l "$A" "$agent" --dev --state-dir "$state" \
		>"$D/agent3.out" 2>"$D/agent3.err" &
	pid=$!
	for _ in $(seq 1 300); do [ -S "$A" ] && break; sleep 0.1; done
	check "socket activation: svid fetch on the passed socket" 0 \
		"$cubeid" svid fetch --socket "$A" --out "$D/svid6"
	assert "the agent served the socket systemd passed" grep -q "socket systemd passed" "$D/agent3.err"
	assert "and created none of its own" [ ! -e "$state/agent.sock" ]
else
	echo "# systemd-socket-activate not found: the socket activation check did not run"
fi

[ -n "$pid" ] && kill -TERM "$pid" && wait "$pid"
pid=

# without --dev: the dev state's token and CA, entries from a file only; a
# FetchX509SVID watcher sees an entry added, then its identity withdrawn
S2=$D/prod.sock
cat >"$D/prod.yaml" <<EOF
entries:
  - name: me
    spiffe_id: spiffe://{td}/me/{unix:uid}
    selectors: [unix:uid:$uid]
EOF
SOFTHSM2_CONF=$state/softhsm/softhsm2.conf "$agent" --token "pkcs11:token=cubeid-dev" \
	--pin-file "$state/softhsm/user.pin" --state-dir "$state" --socket "$S2" \
	--entries "$D/prod.yaml" --log-level info >"$D/agent4.out" 2>"$D/agent4.err" &
pid=$!
for _ in $(seq 1 300); do
	[ -S "$S2" ] && "$cubeid" status --socket "$S2" >/dev/null 2>&1 && break
	kill -0 "$pid" 2>/dev/null || break
	sleep 0.1
done
check "without --dev: svid fetch" 0 "$cubeid" svid fetch --socket "$S2" --out "$D/svid7"
assert "the entry's identity" grep -qx "spiffe://cluster.local/me/$uid" "$D/out"
assert "no DEVELOPMENT MODE banner" bash -c "! grep -q 'DEVELOPMENT MODE' '$D/agent4.err'"
"$cubeid" svid watch --socket "$S2" >"$D/watch.out" 2>"$D/watch.err" &
wpid=$!
for _ in $(seq 1 100); do grep -q "^1 " "$D/watch.out" && break; sleep 0.1; done
assert "the watcher got the first message" grep -q "^1 spiffe://cluster.local/me/$uid serial=" "$D/watch.out"
cat >>"$D/prod.yaml" <<EOF
  - name: me-too
    spiffe_id: spiffe://{td}/too/{unix:uid}
    selectors: [unix:uid:$uid]
EOF
kill -HUP "$pid"
got=no
for _ in $(seq 1 100); do
	grep -q "spiffe://cluster.local/too/$uid" "$D/watch.out" && { got=yes; break; }
	sleep 0.1
done
assert "an entry added by SIGHUP reaches the open stream" [ "$got" = yes ]
msg=$(grep -m1 "spiffe://cluster.local/too/$uid" "$D/watch.out" | cut -d' ' -f1)
assert "the message that brings it carries the first identity too (full state)" \
	grep -q "^$msg spiffe://cluster.local/me/$uid serial=" "$D/watch.out"
printf 'entries: []\n' >"$D/prod.yaml"
kill -HUP "$pid"
for _ in $(seq 1 100); do kill -0 "$wpid" 2>/dev/null || break; sleep 0.1; done
wait "$wpid"
wrc=$?
assert "a withdrawn identity ends the stream (exit 1)" [ "$wrc" -eq 1 ]
assert "with PermissionDenied" grep -q "code=PermissionDenied" "$D/watch.err"
check "and a new fetch is refused" 1 "$cubeid" svid fetch --socket "$S2" --out "$D/svid8"

echo "1..$n"
if [ "$fails" -ne 0 ]; then
	echo "agent log:"
	sed 's/^/    | /' "$D/agent.err" | tail -40
	exit 1
fi
exit 0
