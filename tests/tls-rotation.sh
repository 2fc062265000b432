#!/bin/bash
# Rotation under load: cubeid-agent --dev delivers an entry's SVID as files
# (a 2 s TTL, so a rotation about every second), a TLS server and a client
# built on the libcubeid loader (file mode) use those files, and the client
# makes new mTLS handshakes continuously through ROTATIONS (default 100)
# rotations of the server's certificate.  Not one handshake may fail.
set -u
builddir=${CUBEID_BUILDDIR:-.}
agent=$builddir/agent/cubeid-agent
prog=$builddir/tests/tls-rotation
ROTATIONS=${ROTATIONS:-100}

[ -n "${CUBEID_SOFTHSM_MODULE:-}" ] && export CUBEID_PKCS11_MODULE=$CUBEID_SOFTHSM_MODULE
unset CUBEID_TOKEN CUBEID_PIN CUBEID_PIN_FILE CUBEID_STATE_DIR
D=$(mktemp -d /tmp/cubeid-tls-rot.XXXXXX) || exit 1
chmod 0755 "$D"
pid=
cleanup() {
	[ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
	rm -rf "$D"
}
trap cleanup EXIT
id=spiffe://cluster.local/ns/agentcube-system/sa/workloadmanager
cat >"$D/entries.yaml" <<EOF
entries:
  - name: wm
    spiffe_id: $id
    selectors: [unix:uid:4242424]
    x509_svid_ttl: 2s
    delivery:
      dir: $D/certs
EOF
"$agent" --dev --state-dir "$D/state" --socket "$D/agent.sock" --entries "$D/entries.yaml" \
	>"$D/agent.out" 2>"$D/agent.err" &
pid=$!
for _ in $(seq 1 300); do
	[ -e "$D/certs/svid_key.pem" ] && break
	sleep 0.1
done
if [ ! -e "$D/certs/svid_key.pem" ]; then
	echo "not ok 1 - the agent delivered nothing: $(tail -5 "$D/agent.err")"
	exit 1
fi
# a generous deadline: the loaded CI machine, not a speed target
"$prog" "$D/certs" "$id" "$ROTATIONS" $((ROTATIONS * 10 + 120)) >"$D/out" 2>"$D/err"
rc=$?
echo "# $(cat "$D/out")"
if [ $rc -eq 0 ]; then
	echo "ok 1 - $ROTATIONS rotations under continuous new mTLS handshakes (loader, file mode): no handshake failed"
else
	echo "not ok 1 - rotation under load: $(cat "$D/out")"
	sed 's/^/    | /' "$D/err" | tail -20
fi
echo "1..1"
exit $rc
