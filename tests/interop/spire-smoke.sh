#!/bin/bash
# Opt-in smoke test of the Go peers against a real SPIRE (not part of make
# check: a cold SPIRE build takes many minutes).  It proves that the
# checker's workload mode and spiffe-helper work against the reference
# Workload API, so the same commands can be aimed at cubeid-agent:
#
#   tests/interop/spire-smoke.sh             (builds SPIRE on first use)
#
# It runs spire-server and spire-agent on loopback in a temporary directory,
# registers the current uid, then runs cubeid-interop workload x509 / jwt /
# validate / bundles / watch-x509 / probe, spiffe-helper once, and `cubeid
# helper` once (from $CUBEID_BUILDDIR, when built).
# Exit: 0 pass, 1 fail, 77 skip (no Go outside CI).
set -u

srcdir=${CUBEID_SRCDIR:-$(cd "$(dirname "$0")/../.." && pwd)}
peers=$srcdir/tests/lib/go-peers.sh

paths() {
	checker=$("$peers" path cubeid-interop) &&
		server=$("$peers" path spire-server) &&
		agent=$("$peers" path spire-agent) &&
		helper=$("$peers" path spiffe-helper)
}
paths
rc=$?
if [ $rc -ne 0 ]; then
	[ $rc -eq 3 ] && [ "${CI:-}" != true ] && exit 77
	echo "FAIL: could not build the Go peers (go-peers.sh exit $rc)"
	exit 1
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/cubeid-spire.XXXXXX") || exit 1
pids=()
cleanup() {
	local p
	for p in "${pids[@]}"; do
		kill "$p" 2>/dev/null
	done
	for p in "${pids[@]}"; do
		wait "$p" 2>/dev/null
	done
	if [ "${KEEP:-}" = 1 ]; then echo "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT

pass=0
fail=0
ok() {
	pass=$((pass + 1))
	echo "ok - $*"
}
bad() {
	fail=$((fail + 1))
	echo "not ok - $*"
}

TD=example.org
. "$srcdir/tests/lib/free-port.sh"
port=$(free_port) || { echo "no free port"; exit 1; }
ssock=$work/server.sock
asock=$work/agent/agent.sock
mkdir -p "$work/agent" "$work/certs"

cat >"$work/server.conf" <<EOF
server {
  bind_address = "127.0.0.1"
  bind_port = "$port"
  socket_path = "$ssock"
  trust_domain = "$TD"
  data_dir = "$work/server-data"
  log_level = "WARN"
}
plugins {
  DataStore "sql" {
    plugin_data {
      database_type = "sqlite3"
      connection_string = "$work/server-data/datastore.sqlite3"
    }
  }
  KeyManager "memory" { plugin_data {} }
  NodeAttestor "join_token" { plugin_data {} }
}
EOF
cat >"$work/agent.conf" <<EOF
agent {
  data_dir = "$work/agent-data"
  log_level = "WARN"
  server_address = "127.0.0.1"
  server_port = "$port"
  socket_path = "$asock"
  trust_domain = "$TD"
  insecure_bootstrap = true
}
plugins {
  KeyManager "memory" { plugin_data {} }
  NodeAttestor "join_token" { plugin_data {} }
  WorkloadAttestor "unix" { plugin_data {} }
}
EOF

"$server" run -config "$work/server.conf" >"$work/server.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 60); do
	"$server" healthcheck -socketPath "$ssock" >/dev/null 2>&1 && break
	sleep 0.5
done
"$server" healthcheck -socketPath "$ssock" >/dev/null 2>&1 || {
	cat "$work/server.log"
	echo "FAIL: spire-server did not come up"
	exit 1
}
token=$("$server" token generate -socketPath "$ssock" -spiffeID spiffe://$TD/host | awk '{print $2}')
"$server" entry create -socketPath "$ssock" -parentID spiffe://$TD/host \
	-spiffeID spiffe://$TD/smoke -selector "unix:uid:$(id -u)" -x509SVIDTTL 20 >/dev/null ||
	bad "entry create"
"$agent" run -config "$work/agent.conf" -joinToken "$token" >"$work/agent.log" 2>&1 &
pids+=($!)

export SPIFFE_ENDPOINT_SOCKET=unix://$asock
# The agent needs a sync or two before the entry is served.
for _ in $(seq 1 60); do
	"$checker" workload x509 --timeout 2s >/dev/null 2>&1 && break
	sleep 1
done

if "$checker" workload x509 --out "$work/fetched" >"$work/out" 2>&1 && grep -q "spiffe://$TD/smoke" "$work/out"; then
	ok "workload x509 (FetchX509SVID)"
else
	bad "workload x509: $(cat "$work/out")"
fi
if "$checker" x509-verify --svid "$work/fetched/svid.pem" --bundle "$work/fetched/bundle.pem" >/dev/null 2>&1 &&
	openssl verify -CAfile "$work/fetched/bundle.pem" "$work/fetched/svid.pem" >/dev/null 2>&1; then
	ok "fetched SVID verifies (go-spiffe, openssl)"
else
	bad "fetched SVID does not verify"
fi

tok=$("$checker" workload jwt --aud smoke-aud --token-only 2>"$work/err")
if [ -n "$tok" ]; then ok "workload jwt (FetchJWTSVID)"; else bad "workload jwt: $(cat "$work/err")"; fi
if "$checker" workload validate --token "$tok" --aud smoke-aud >"$work/out" 2>&1 && grep -q "spiffe://$TD/smoke" "$work/out"; then
	ok "workload validate (ValidateJWTSVID)"
else
	bad "workload validate: $(cat "$work/out")"
fi
if "$checker" workload validate --token "$tok" --aud other-aud >"$work/out" 2>&1; then
	bad "ValidateJWTSVID accepted the wrong audience"
else
	grep -q "code=InvalidArgument" "$work/out" && ok "validate, wrong audience: InvalidArgument" ||
		bad "validate, wrong audience: $(cat "$work/out")"
fi
if "$checker" workload bundles >"$work/out" 2>&1 && grep -q "\"$TD\"" "$work/out"; then
	ok "workload bundles (FetchJWTBundles, FetchX509Bundles)"
else
	bad "workload bundles: $(cat "$work/out")"
fi
code=$("$checker" workload probe --no-header 2>&1)
[ "$code" = InvalidArgument ] && ok "no security header: InvalidArgument" || bad "no header gave '$code'"
code=$("$checker" workload probe 2>&1)
[ "$code" = OK ] && ok "probe with the header: OK" || bad "probe with the header gave '$code'"

cat >"$work/helper.conf" <<EOF
agent_address = "$asock"
cert_dir = "$work/certs"
svid_file_name = "svid.pem"
svid_key_file_name = "svid_key.pem"
svid_bundle_file_name = "svid_bundle.pem"
daemon_mode = false
EOF
if "$helper" -config "$work/helper.conf" >"$work/helper.log" 2>&1 &&
	openssl verify -CAfile "$work/certs/svid_bundle.pem" "$work/certs/svid.pem" >/dev/null 2>&1; then
	ok "spiffe-helper wrote svid.pem/svid_key.pem/svid_bundle.pem; openssl verifies"
else
	bad "spiffe-helper: $(cat "$work/helper.log")"
fi

# `cubeid helper` (spiffe-helper's drop-in) against SPIRE's socket too, with
# JWT outputs: the same files, written as one atomic set.
cubeid=${CUBEID_BUILDDIR:-$srcdir}/cli/cubeid
if [ -x "$cubeid" ]; then
	cat >"$work/cubeid-helper.conf" <<EOF
agent_address = "$asock"
cert_dir = "$work/certs-cubeid"
svid_file_name = "svid.pem"
svid_key_file_name = "svid_key.pem"
svid_bundle_file_name = "svid_bundle.pem"
jwt_svids = [{jwt_audience = "smoke", jwt_svid_file_name = "smoke.jwt"}]
jwt_bundle_file_name = "jwt_bundle.json"
daemon_mode = false
EOF
	c=$work/certs-cubeid
	if "$cubeid" helper -config "$work/cubeid-helper.conf" >"$work/cubeid-helper.log" 2>&1 &&
		openssl verify -CAfile "$c/svid_bundle.pem" "$c/svid.pem" >/dev/null 2>&1 &&
		[ "$(openssl x509 -in "$c/svid.pem" -noout -pubkey)" = "$(openssl pkey -in "$c/svid_key.pem" -pubout)" ] &&
		[ "$(readlink "$c/svid.pem")" = "..data/svid.pem" ] &&
		grep -q "\"$TD\"" "$c/jwt_bundle.json" && [ -s "$c/smoke.jwt" ]; then
		ok "cubeid helper against SPIRE: svid.pem/svid_key.pem/svid_bundle.pem through ..data, smoke.jwt, jwt_bundle.json"
	else
		bad "cubeid helper against SPIRE: $(cat "$work/cubeid-helper.log")"
	fi
else
	echo "# $cubeid not built: cubeid helper not tried against SPIRE (set CUBEID_BUILDDIR)"
fi

# 20 s TTL: SPIRE rotates at half life.
if "$checker" workload watch-x509 --rotations 1 --timeout 60s >"$work/out" 2>&1; then
	ok "watch-x509 saw a rotation"
else
	bad "watch-x509: $(cat "$work/out")"
fi

echo "spire-smoke: $pass passed, $fail failed"
[ $fail -eq 0 ]
