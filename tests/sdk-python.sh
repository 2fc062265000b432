#!/bin/bash
# The Python SDK auth package (python/, issue 20) against the real
# cubeid-agent on SoftHSM2 and ONE real Keycloak (tests/lib/keycloak.sh),
# with pytest (python/tests/test_keycloak.py) in the cached virtualenv of
# tests/lib/python-peers.sh (spiffe, requests, pytest, setuptools, pinned in
# tests/python/requirements.txt).
#
#  1. A throwaway SoftHSM2 token, `cubeid ca init`, and cubeid-agent with
#     entries giving this uid three SPIFFE IDs (py/workload, py/short,
#     py/unregistered) and its HTTP server on loopback (/spiffe/bundle, which
#     Keycloak's SPIFFE identity provider reads).
#  2. The agentcube realm stamped from deploy/keycloak, plus the workloads'
#     clients added by deploy/keycloak/add-workload.sh, as docs/sdk-python.md
#     shows: py-workload (sandbox:manage, token exchange to workloadmanager)
#     and py-short (sandbox:invoke, 5 s tokens).  py/unregistered is in no
#     client.
#  3. The package is built and installed (pip, no network) from a copy of
#     python/ into the workload's directory; pytest runs every case there.
#
# The directories, all under one temp dir: node/ (agent state and socket;
# the SoftHSM2 token beside it), workload/ (the Python workload's HOME,
# TMPDIR, cwd, the installed package), idp/ (Keycloak and its realm import)
# and other-client/ (the secret file of the ServiceAccountAuth case).  All
# but idp/ and other-client/, the places a client secret does live, are
# scanned for every client secret of the realm.
#
# Exit: 0 pass, 1 fail, 77 skip (no python3 with venv, no Java >= 21 for
# Keycloak, no jq/curl; with CI=true each of these is a failure).  pytest's
# exit status 5 (no tests collected) is a failure.  KC_KEEP=1 keeps the
# work directory.
set -u
builddir=${CUBEID_BUILDDIR:-.}
srcdir=${CUBEID_SRCDIR:-${srcdir:-$(cd "$(dirname "$0")/.." && pwd)}}
cubeid=$builddir/cli/cubeid
agent=$builddir/agent/cubeid-agent
export CUBEID_SRCDIR=$srcdir

skip_or_fail() {
	echo "=================================================================="
	if [ "${CI:-}" = true ]; then
		echo "FAIL (CI=true): $*"
		echo "=================================================================="
		exit 1
	fi
	echo "SKIP: $* -- the Python SDK tests did NOT run"
	echo "=================================================================="
	exit 77
}

for tool in jq curl; do
	command -v "$tool" >/dev/null 2>&1 || skip_or_fail "$tool not found (install the Debian package $tool)"
done
# shellcheck source=tests/lib/keycloak.sh
. "$srcdir/tests/lib/keycloak.sh"
kc_find_java 2>/dev/null || skip_or_fail "Keycloak $KC_VERSION needs Java 21 or later; none in \$JAVA_HOME or /usr/lib/jvm (set KC_JAVA_HOME)"

t0=$(date +%s)
py=$(bash "$srcdir/tests/lib/python-peers.sh" python)
rc=$?
[ $rc -eq 3 ] && skip_or_fail "no usable python3 with venv (python-peers.sh exit 3)"
[ $rc -eq 0 ] || { echo "FAIL: could not install the Python test packages (python-peers.sh exit $rc)"; exit 1; }
echo "# Python packages ready in $(($(date +%s) - t0)) s"

exports=$("$builddir/tests/mktoken")
rc=$?
[ $rc -eq 77 ] && skip_or_fail "no SoftHSM2 (tests/mktoken)"
[ $rc -eq 0 ] || { echo "FAIL: tests/mktoken failed ($rc)" >&2; exit 1; }
eval "$exports"
unset CUBEID_TOKEN CUBEID_PIN CUBEID_PIN_FILE CUBEID_PKCS11_MODULE CUBEID_STATE_DIR
W=$CUBEID_T_DIR
AGENT_PID=
cleanup() {
	kc_stop
	[ -n "$AGENT_PID" ] && kill "$AGENT_PID" 2>/dev/null && wait "$AGENT_PID" 2>/dev/null
	if [ "${KC_KEEP:-}" = 1 ]; then echo "# kept $W"; else rm -rf "$W"; fi
}
trap cleanup EXIT
N=$W/node
WL=$W/workload
mkdir -p "$N" "$WL/home" "$WL/tmp" "$W/idp/import" "$W/other-client"
TAP_DIR=$W
. "$srcdir/tests/lib/tap.sh"
TD=cluster.local

# 1. the node: keys, entries, the agent with its HTTP server
check "ca init (trust domain $TD)" 0 "$cubeid" ca init -d "$TD" --token "$CUBEID_T_URI" \
	--module "$CUBEID_T_MODULE" --pin-file "$CUBEID_T_PIN_FILE" --state-dir "$N/state"
uid=$(id -u)
# Keycloak takes a jwt-spiffe assertion whose exp is at most 300 s ahead:
# the workloads' JWT-SVIDs live 4 minutes.
cat >"$N/entries.yaml" <<EOF
entries:
  - name: py-workload
    spiffe_id: spiffe://{td}/py/workload
    selectors: [unix:uid:$uid]
    jwt_svid_ttl: 4m
  - name: py-short
    spiffe_id: spiffe://{td}/py/short
    selectors: [unix:uid:$uid]
    jwt_svid_ttl: 4m
  - name: py-unregistered
    spiffe_id: spiffe://{td}/py/unregistered
    selectors: [unix:uid:$uid]
    jwt_svid_ttl: 4m
EOF
www_port=$(free_port)
AGENT_URL=http://127.0.0.1:$www_port
S=$N/agent.sock
CUBEID_PKCS11_MODULE=$CUBEID_T_MODULE "$agent" --state-dir "$N/state" --socket "$S" \
	--token "$CUBEID_T_URI" --pin-file "$CUBEID_T_PIN_FILE" --entries "$N/entries.yaml" \
	-d "$TD" --http-address "127.0.0.1:$www_port" >"$N/agent.out" 2>"$N/agent.err" &
AGENT_PID=$!
for _ in $(seq 1 600); do
	[ -S "$S" ] && curl -sf "$AGENT_URL/spiffe/bundle" >/dev/null 2>&1 && break
	kill -0 "$AGENT_PID" 2>/dev/null || break
	sleep 0.2
done
if [ -S "$S" ] && curl -sf "$AGENT_URL/spiffe/bundle" >/dev/null 2>&1; then
	ok "cubeid-agent is up, serving /spiffe/bundle"
else
	bad "cubeid-agent did not start"
	sed 's/^/    | /' "$N/agent.err" | tail -20
	echo "1..$n"
	exit 1
fi

# 2. the realm, and the workloads' clients (as docs/sdk-python.md shows)
(umask 077 && head -c 24 /dev/urandom | base64 | tr -d '/+=\n' >"$W/other-client/sdk.secret")
kcd=$srcdir/deploy/keycloak
"$kcd/stamp-realm.sh" agentcube "$TD" "$AGENT_URL" >"$W/idp/stamped.json"
check "add-workload.sh refuses a SPIFFE ID of another trust domain" 1 \
	"$kcd/add-workload.sh" py-x spiffe://elsewhere/py/x <"$W/idp/stamped.json"
check "add-workload.sh refuses a SPIFFE ID registered already" 1 "$kcd/add-workload.sh" py-x \
	"spiffe://$TD/ns/agentcube-system/sa/agentcube-router" <"$W/idp/stamped.json"
check "add-workload.sh refuses an unknown role" 1 "$kcd/add-workload.sh" -r root py-x \
	"spiffe://$TD/py/x" <"$W/idp/stamped.json"
if ! "$kcd/add-workload.sh" -r sandbox:manage -x workloadmanager py-workload \
	"spiffe://$TD/py/workload" <"$W/idp/stamped.json" |
	"$kcd/add-workload.sh" -r sandbox:invoke -l 5 py-short "spiffe://$TD/py/short" |
	jq --arg secret "$(cat "$W/other-client/sdk.secret")" \
		'.clients |= map(if .clientId == "agentcube-sdk" then .secret = $secret else . end)' \
		>"$W/idp/import/agentcube.json"; then
	echo "FAIL: cannot stamp the realm" >&2
	exit 1
fi

# 3. one Keycloak for every case
if ! kc_start "$W/idp"; then
	echo "FAIL: Keycloak did not start" >&2
	exit 1
fi
ok "Keycloak $KC_VERSION is up at $KC_URL"

# 4. the package, built and installed like a user's pip install (no network:
# setuptools is in the virtualenv), from a copy: the source tree stays clean
cp -R "$srcdir/python" "$WL/pkg-src" && chmod -R u+w "$WL/pkg-src"
check "pip installs the cubeid package" 0 env PIP_DISABLE_PIP_VERSION_CHECK=1 "$py" -m pip install \
	--no-deps --no-build-isolation --no-index --target "$WL/site" "$WL/pkg-src"
[ -f "$WL/site/cubeid/__init__.py" ] || tap_show

# 5. pytest, as the workload: its HOME, TMPDIR and cwd are under workload/
export SPIFFE_ENDPOINT_SOCKET=unix://$S
export CUBEID_T_KC_URL=$KC_URL CUBEID_T_REALM=agentcube CUBEID_T_TD=$TD
export CUBEID_T_ADMIN_PASSWORD_FILE=$KC_ADMIN_PASSWORD_FILE
export CUBEID_T_SA_SECRET_FILE=$W/other-client/sdk.secret
export CUBEID_T_SCAN_DIR=$W CUBEID_T_SCAN_EXCLUDE=$W/idp:$W/other-client CUBEID_T_SECRET_DIR=$W/idp
export CUBEID_T_SITE=$WL/site CUBEID_T_AGENT_URL=$AGENT_URL CUBEID_T_CLOSED_PORT=$(free_port)
(
	cd "$WL" &&
		HOME=$WL/home TMPDIR=$WL/tmp PYTHONPATH=$WL/site PYTHONDONTWRITEBYTECODE=1 \
			PYTHONWARNINGS=ignore timeout 900 "$py" -m pytest -p no:cacheprovider -rA -v \
			--basetemp "$WL/tmp/pytest" "$srcdir/python/tests"
) >"$W/pytest.out" 2>&1
prc=$?
sed 's/^/# /' "$W/pytest.out" | grep -v '^# *$'
passed=$(grep -c '^PASSED ' "$W/pytest.out")
case $prc in
0) ok "pytest: all $passed cases passed" ;;
5) bad "pytest collected no tests (exit 5)" ;;
*) bad "pytest failed (exit $prc)" ;;
esac
if [ "$passed" -ge 1 ]; then
	ok "pytest ran $passed cases"
else
	bad "pytest ran no case"
fi
if grep -Eq '^(SKIPPED|XFAIL|XPASS) ' "$W/pytest.out"; then
	bad "pytest skipped a case: $(grep -Ec '^(SKIPPED|XFAIL|XPASS) ' "$W/pytest.out")"
else
	ok "pytest skipped no case"
fi
if grep -q "grpc: reset stream\|grpc: ending the connection" "$N/agent.err"; then
	bad "the agent reset a py-spiffe stream or connection"
else
	ok "the agent reset no py-spiffe stream"
fi
echo "# $(($(date +%s) - t0)) s in all"
echo "1..$n"
[ "$fails" -eq 0 ] || { echo "FAIL: $fails check(s) failed (Keycloak log: $KC_LOG)"; exit 1; }
exit 0
