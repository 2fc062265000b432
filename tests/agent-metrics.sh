#!/bin/bash
# The agent's HTTP endpoints against a real `cubeid-agent --dev`:
#   - --http-address 127.0.0.1:0 binds a free loopback port, which
#     `cubeid status -o json` reports (health.http);
#   - /healthz answers 200, /readyz 200 "ready";
#   - /metrics parses with the real Prometheus text parser (the Python
#     prometheus_client package, Debian python3-prometheus-client) and has
#     every family the docs promise, with the right types; histogram
#     buckets are cumulative and end at +Inf = _count;
#   - the values move: after `cubeid svid fetch` the x509 issued counter and
#     the signing histogram count rise; after `cubeid jwt fetch` the jwt one;
#     a short TTL makes a rotation that cubeid_svid_rotations_total counts;
#   - an open FetchX509SVID stream shows in cubeid_connected_clients and
#     cubeid_workload_streams, and leaves them when it closes;
#   - `cubeid status` shows the same facts (ready, issued, token errors);
#   - POST is 405, an unknown path 404, a request with a body 413;
#   - an agent with no entries is live but not ready: /readyz 503 naming why,
#     cubeid_ready 0;
#   - a token that loses its keys (SoftHSM2's object files removed): the
#     next mint fails, the agent probes the token at once, /readyz says
#     the token does not answer, cubeid_token_errors_total and the mint
#     failures rise and cubeid_token_up drops to 0.
set -u
builddir=${CUBEID_BUILDDIR:-.}
cubeid=$builddir/cli/cubeid
agent=$builddir/agent/cubeid-agent

# The Python that has prometheus_client (pyenv shims may come first on PATH).
PY=
for p in python3 /usr/bin/python3; do
	if command -v "$p" >/dev/null 2>&1 && "$p" -c 'import prometheus_client.parser' 2>/dev/null; then
		PY=$p
		break
	fi
done
if [ -z "$PY" ]; then
	echo "SKIP: no python3 with prometheus_client (Debian: python3-prometheus-client)"
	exit 77
fi
[ -n "${CUBEID_SOFTHSM_MODULE:-}" ] && export CUBEID_PKCS11_MODULE=$CUBEID_SOFTHSM_MODULE
unset CUBEID_TOKEN CUBEID_PIN CUBEID_PIN_FILE CUBEID_STATE_DIR SPIFFE_ENDPOINT_SOCKET
D=$(mktemp -d /tmp/cubeid-agent-metrics.XXXXXX) || exit 1
pid=
cleanup() {
	[ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
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
	[ -f "$D/err" ] && sed 's/^/    | /' "$D/err"
}
assert() { # assert NAME TEST...
	if "${@:2}"; then ok "$1"; else notok "$1"; fi
}

# http GET|POST|BODY URL: prints "STATUS\nBODY"
http() {
	"$PY" - "$@" <<'EOF'
import sys, urllib.request, urllib.error
method, url = sys.argv[1], sys.argv[2]
data = None
if method == "BODY":
    method, data = "GET", b"x" * 100
elif method == "POST":
    data = b"a=1"
req = urllib.request.Request(url, data=data, method=method)
try:
    with urllib.request.urlopen(req, timeout=30) as r:
        print(r.status); print(r.read().decode())
except urllib.error.HTTPError as e:
    print(e.code); print(e.read().decode())
EOF
}

# scrape URL OUT: parse /metrics with prometheus_client and write
# "name{labels} value" lines (sorted labels) plus "TYPE family type".
scrape() {
	"$PY" - "$1" >"$2" 2>"$D/err" <<'EOF'
import sys, urllib.request
from prometheus_client.parser import text_string_to_metric_families
with urllib.request.urlopen(sys.argv[1], timeout=30) as r:
    ctype = r.headers.get("Content-Type", "")
    text = r.read().decode()
if not ctype.startswith("text/plain; version=0.0.4"):
    sys.exit("unexpected Content-Type: " + ctype)
fams = list(text_string_to_metric_families(text))
if not fams:
    sys.exit("no metric families")
for f in fams:
    print("TYPE", f.name, f.type)
    if f.type == "histogram":
        # cumulative buckets ending at +Inf == _count, per label set
        by = {}
        for s in f.samples:
            key = tuple(sorted((k, v) for k, v in s.labels.items() if k != "le"))
            by.setdefault(key, {"b": [], "count": None})
            if s.name.endswith("_bucket"):
                by[key]["b"].append((float(s.labels["le"]), s.value))
            elif s.name.endswith("_count"):
                by[key]["count"] = s.value
        for key, v in by.items():
            b = sorted(v["b"])
            vals = [x[1] for x in b]
            if not b or b[-1][0] != float("inf") or vals != sorted(vals) or vals[-1] != v["count"]:
                sys.exit("bad histogram %s %s" % (f.name, key))
    for s in f.samples:
        labels = ",".join('%s="%s"' % (k, s.labels[k]) for k in sorted(s.labels))
        print("%s{%s} %r" % (s.name, labels, s.value))
EOF
}
val() { # val FILE 'name{labels}' -> the value
	awk -v k="$2" '$1 == k { print $2 }' "$1"
}
gt() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a + 0 > b + 0) }'; }

state=$D/state
"$agent" --dev --state-dir "$state" --socket "$D/agent.sock" --x509-svid-ttl 4s \
	--http-address 127.0.0.1:0 >"$D/agent.out" 2>"$D/agent.err" &
pid=$!
export SPIFFE_ENDPOINT_SOCKET=unix://$D/agent.sock
for _ in $(seq 1 300); do
	[ -S "$D/agent.sock" ] && "$cubeid" status -o json >"$D/status.json" 2>/dev/null && break
	sleep 0.1
done
addr=$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["health"]["http"] or "")' \
	"$D/status.json" 2>/dev/null)
if [ -z "$addr" ]; then
	sed 's/^/    | /' "$D/agent.err"
	echo "not ok - the agent did not report its HTTP address"
	exit 1
fi
case $addr in 127.0.0.1:*) ok "the HTTP server is on loopback ($addr)" ;; *) notok "address $addr" ;; esac
base=http://$addr

# the token probe runs at start; wait until ready rather than sleep
for _ in $(seq 1 300); do
	http GET "$base/readyz" >"$D/ready"
	[ "$(head -1 "$D/ready")" = 200 ] && break
	sleep 0.1
done
http GET "$base/healthz" >"$D/h"
assert "/healthz is 200" [ "$(head -1 "$D/h")" = 200 ]
assert "/readyz is 200 ready" grep -qx ready "$D/ready"

if scrape "$base/metrics" "$D/m0"; then ok "/metrics parses with prometheus_client"; else notok "/metrics parses"; fi
for fam in "cubeid_svids_issued counter" "cubeid_svid_sign_duration_seconds histogram" \
	"cubeid_token_errors counter" "cubeid_connected_clients gauge" \
	"cubeid_ca_expiry_seconds gauge" "cubeid_svid_rotations counter" "cubeid_ready gauge" \
	"cubeid_token_up gauge" "cubeid_svid_mint_failures counter" \
	"cubeid_grpc_protocol_errors counter" "cubeid_grpc_stream_resets counter" \
	"cubeid_grpc_goaways counter"; do
	assert "family $fam" grep -qx "TYPE $fam" "$D/m0"
done
assert "cubeid_ready is 1" [ "$(val "$D/m0" 'cubeid_ready{}')" = 1.0 ]
assert "cubeid_token_up is 1" [ "$(val "$D/m0" 'cubeid_token_up{}')" = 1.0 ]
assert "no token errors" [ "$(val "$D/m0" 'cubeid_token_errors_total{}')" = 0.0 ]
exp0=$(val "$D/m0" 'cubeid_ca_expiry_seconds{}')
assert "CA expiry is ahead (about a year for --dev): $exp0 s" gt "$exp0" 86400
x0=$(val "$D/m0" 'cubeid_svids_issued_total{type="x509"}')
j0=$(val "$D/m0" 'cubeid_svids_issued_total{type="jwt"}')
c0=$(val "$D/m0" 'cubeid_svid_sign_duration_seconds_count{type="x509"}')

# issue an X.509-SVID: the counter and the histogram move
if "$cubeid" svid fetch --out "$D/svid" >"$D/out" 2>"$D/err"; then ok "svid fetch"; else notok "svid fetch"; fi
scrape "$base/metrics" "$D/m1" || notok "scrape after svid fetch"
x1=$(val "$D/m1" 'cubeid_svids_issued_total{type="x509"}')
c1=$(val "$D/m1" 'cubeid_svid_sign_duration_seconds_count{type="x509"}')
s1=$(val "$D/m1" 'cubeid_svid_sign_duration_seconds_sum{type="x509"}')
assert "x509 issued rises ($x0 -> $x1)" gt "$x1" "$x0"
assert "x509 signing histogram count rises ($c0 -> $c1)" gt "$c1" "$c0"
assert "x509 signing time sum is positive ($s1)" gt "$s1" 0
assert "the x509 cached gauge counts it" gt "$(val "$D/m1" 'cubeid_svids_cached{type="x509"}')" 0
assert "jwt issued unchanged" [ "$(val "$D/m1" 'cubeid_svids_issued_total{type="jwt"}')" = "$j0" ]

if "$cubeid" jwt fetch --aud metrics-test >"$D/out" 2>"$D/err"; then ok "jwt fetch"; else notok "jwt fetch"; fi
scrape "$base/metrics" "$D/m2" || notok "scrape after jwt fetch"
j2=$(val "$D/m2" 'cubeid_svids_issued_total{type="jwt"}')
assert "jwt issued rises ($j0 -> $j2)" gt "$j2" "$j0"

# the 4 s X.509-SVID rotates at about half its lifetime once a stream or
# fetch asks again; a later fetch gets a new one and the rotation counts
r0=$(val "$D/m2" 'cubeid_svid_rotations_total{type="x509"}')
for _ in $(seq 1 60); do
	sleep 1
	"$cubeid" svid fetch --out "$D/svid2" >/dev/null 2>&1
	scrape "$base/metrics" "$D/m3" || continue
	gt "$(val "$D/m3" 'cubeid_svid_rotations_total{type="x509"}')" "$r0" && break
done
r3=$(val "$D/m3" 'cubeid_svid_rotations_total{type="x509"}')
assert "x509 rotations rise ($r0 -> $r3)" gt "$r3" "$r0"

# an open stream: connected clients and streams count it, and not after
"$cubeid" svid watch >"$D/watch.out" 2>&1 &
wpid=$!
for _ in $(seq 1 300); do
	[ -s "$D/watch.out" ] && break
	sleep 0.1
done
scrape "$base/metrics" "$D/m6" || notok "scrape with a stream open"
assert "an open stream: cubeid_connected_clients >= 1" gt "$(val "$D/m6" 'cubeid_connected_clients{}')" 0
assert "an open stream: cubeid_workload_streams >= 1" gt "$(val "$D/m6" 'cubeid_workload_streams{}')" 0
kill "$wpid" 2>/dev/null
wait "$wpid" 2>/dev/null
for _ in $(seq 1 300); do
	scrape "$base/metrics" "$D/m7" && [ "$(val "$D/m7" 'cubeid_workload_streams{}')" = 0.0 ] && break
	sleep 0.1
done
assert "the stream closed: cubeid_workload_streams back to 0" \
	[ "$(val "$D/m7" 'cubeid_workload_streams{}')" = 0.0 ]

# an HTTP/2 protocol error (HTTP/1.1 instead of the preface): the GOAWAY is
# counted, and logged at the default level with the peer's pid and uid
e0=$(val "$D/m7" 'cubeid_grpc_protocol_errors_total{}')
g0=$(val "$D/m7" 'cubeid_grpc_goaways_total{}')
"$PY" - "$D/agent.sock" <<'EOF'
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
while s.recv(4096):
    pass
EOF
scrape "$base/metrics" "$D/m8" || notok "scrape after a protocol error"
e8=$(val "$D/m8" 'cubeid_grpc_protocol_errors_total{}')
assert "protocol errors rise ($e0 -> $e8)" gt "$e8" "$e0"
assert "GOAWAYs with an error rise" gt "$(val "$D/m8" 'cubeid_grpc_goaways_total{}')" "$g0"
assert "the GOAWAY is logged with the peer's pid and uid" \
	grep -Eq "notice: grpc: ending the connection \(GOAWAY\) with PROTOCOL_ERROR: .*\(peer pid [0-9]+ uid $(id -u)\)" "$D/agent.err"

# the person's view
if "$cubeid" status >"$D/status.txt" 2>"$D/err"; then ok "cubeid status"; else notok "cubeid status"; fi
assert "status says ready" grep -Eq '^ready +yes$' "$D/status.txt"
assert "status shows the HTTP address" grep -Eq "^http +$addr\$" "$D/status.txt"
xs=$(awk '/^svids issued/ { print $3 }' "$D/status.txt")
assert "status shows SVIDs issued ($xs >= $x1)" [ "${xs:-0}" -ge "${x1%.*}" ]
assert "status shows token errors" grep -Eq '^token errors +0$' "$D/status.txt"

# what the server refuses
http POST "$base/metrics" >"$D/p"
assert "POST is 405" [ "$(head -1 "$D/p")" = 405 ]
http GET "$base/no-such-path" >"$D/p"
assert "unknown path is 404" [ "$(head -1 "$D/p")" = 404 ]
http BODY "$base/metrics" >"$D/p"
assert "a GET with a body is 413" [ "$(head -1 "$D/p")" = 413 ]

kill "$pid"
wait "$pid"
rc=$?
pid=
assert "the agent stops cleanly (exit $rc)" [ "$rc" = 0 ]

# the same token and CA, no entries: live, not ready
: >"$D/empty.yaml"
SOFTHSM2_CONF=$state/softhsm/softhsm2.conf "$agent" --state-dir "$state" \
	--socket "$D/agent2.sock" --token "pkcs11:token=cubeid-dev" \
	--pin-file "$state/softhsm/user.pin" --entries "$D/empty.yaml" \
	--http-address 127.0.0.1:0 >"$D/agent.out" 2>"$D/agent.err" &
pid=$!
export SPIFFE_ENDPOINT_SOCKET=unix://$D/agent2.sock
addr=
for _ in $(seq 1 300); do
	# without entries the agent answers but is not ready: exit 8
	if [ -S "$D/agent2.sock" ] &&
		{ "$cubeid" status -o json >"$D/status.json" 2>/dev/null || [ $? -eq 8 ]; }; then
		addr=$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["health"]["http"])' "$D/status.json")
		break
	fi
	sleep 0.1
done
if [ -z "$addr" ]; then
	notok "the entry-less agent started"
	sed 's/^/    | /' "$D/agent.err"
else
	base=http://$addr
	http GET "$base/healthz" >"$D/h"
	assert "no entries: /healthz is still 200" [ "$(head -1 "$D/h")" = 200 ]
	for _ in $(seq 1 100); do
		http GET "$base/readyz" >"$D/r"
		grep -q "not probed" "$D/r" || break
		sleep 0.1
	done
	assert "no entries: /readyz is 503" [ "$(head -1 "$D/r")" = 503 ]
	assert "no entries: /readyz says why" grep -q "no registration entries" "$D/r"
	scrape "$base/metrics" "$D/m4" || notok "scrape the entry-less agent"
	assert "no entries: cubeid_ready is 0" [ "$(val "$D/m4" 'cubeid_ready{}')" = 0.0 ]
	assert "no entries: cubeid_registration_entries is 0" \
		[ "$(val "$D/m4" 'cubeid_registration_entries{}')" = 0.0 ]
fi

[ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
pid=

# a token that fails
state3=$D/state3
"$agent" --dev --state-dir "$state3" --socket "$D/agent3.sock" \
	--http-address 127.0.0.1:0 >"$D/agent.out" 2>"$D/agent.err" &
pid=$!
export SPIFFE_ENDPOINT_SOCKET=unix://$D/agent3.sock
addr=
for _ in $(seq 1 300); do
	if [ -S "$D/agent3.sock" ] && "$cubeid" status -o json >"$D/status.json" 2>/dev/null; then
		addr=$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["health"]["http"])' "$D/status.json")
		break
	fi
	sleep 0.1
done
base=http://$addr
for _ in $(seq 1 300); do
	http GET "$base/readyz" >"$D/r"
	[ "$(head -1 "$D/r")" = 200 ] && break
	sleep 0.1
done
assert "fresh token: ready" [ "$(head -1 "$D/r")" = 200 ]
find "$state3/softhsm/tokens" -name '*.object' ! -name token.object -delete
if "$cubeid" svid fetch --out "$D/svid3" >"$D/out" 2>"$D/err"; then
	notok "a mint with the keys gone fails"
else
	ok "a mint with the keys gone fails"
fi
for _ in $(seq 1 300); do
	http GET "$base/readyz" >"$D/r"
	[ "$(head -1 "$D/r")" = 503 ] && break
	sleep 0.1
done
assert "token broken: /readyz is 503" [ "$(head -1 "$D/r")" = 503 ]
assert "token broken: /readyz says the token does not answer" grep -q "token does not answer" "$D/r"
scrape "$base/metrics" "$D/m5" || notok "scrape the broken-token agent"
assert "token broken: cubeid_token_errors_total rises" gt "$(val "$D/m5" 'cubeid_token_errors_total{}')" 0
assert "token broken: cubeid_token_up is 0" [ "$(val "$D/m5" 'cubeid_token_up{}')" = 0.0 ]
assert "token broken: the x509 mint failure counts" \
	gt "$(val "$D/m5" 'cubeid_svid_mint_failures_total{type="x509"}')" 0
"$cubeid" status >"$D/status.txt" 2>/dev/null
assert "token broken: cubeid status says NO and why" \
	grep -Eq '^ready +NO: the token does not answer( \(.*\))?$' "$D/status.txt"
healthz=$(http GET "$base/healthz" | head -1)
assert "token broken: still live (/healthz $healthz)" [ "$healthz" = 200 ]

echo "1..$n"
[ "$fails" -eq 0 ]
