#!/bin/bash
# The end-to-end chain (issue 21, docs/e2e.md): AgentCube's auth flows as
# one request travels them, from the Python SDK through the reference Router
# and WorkloadManager (examples/) to the sandbox, with the real cubeid-agent
# on SoftHSM2 and ONE real Keycloak (realms agentcube and tenant-b).
#
# Every flow is one function that prints one line, PASS|FAIL NAME
# OBSERVATION; the suite ends with "N passed, N failed".  No flow depends on
# another's order: each creates the sandboxes it needs.  Logs of every
# process are under the work directory, which is kept (and named) when a
# flow fails.  Ports are free ones; every process is stopped by its pid on
# exit, also on failure.
#
# Exit: 0 all passed, 1 a flow failed, 77 skip (no python3 with venv, no
# Java >= 21, no jq/curl/SoftHSM2; with CI=true each is a failure).
# E2E_KEEP=1 keeps the work directory also on success.
set -u
builddir=${CUBEID_BUILDDIR:-.}
srcdir=${CUBEID_SRCDIR:-${srcdir:-$(cd "$(dirname "$0")/.." && pwd)}}
cubeid=$builddir/cli/cubeid
agent=$builddir/agent/cubeid-agent
router=$builddir/examples/router
wmbin=$builddir/examples/workloadmanager
export CUBEID_SRCDIR=$srcdir

skip_or_fail() {
	echo "=================================================================="
	if [ "${CI:-}" = true ]; then
		echo "FAIL (CI=true): $*"
		echo "=================================================================="
		exit 1
	fi
	echo "SKIP: $* -- the end-to-end chain did NOT run"
	echo "=================================================================="
	exit 77
}
die() {
	echo "FAIL: $*" >&2
	exit 1
}

for tool in jq curl; do
	command -v "$tool" >/dev/null 2>&1 || skip_or_fail "$tool not found (install the Debian package $tool)"
done
. "$srcdir/tests/lib/keycloak.sh"
kc_find_java 2>/dev/null || skip_or_fail "Keycloak $KC_VERSION needs Java 21 or later (set KC_JAVA_HOME)"
t0=$(date +%s)
py=$(bash "$srcdir/tests/lib/python-peers.sh" python)
rc=$?
[ $rc -eq 3 ] && skip_or_fail "no usable python3 with venv (python-peers.sh exit 3)"
[ $rc -eq 0 ] || die "could not install the Python test packages (python-peers.sh exit $rc)"

exports=$("$builddir/tests/mktoken")
rc=$?
[ $rc -eq 77 ] && skip_or_fail "no SoftHSM2 (tests/mktoken)"
[ $rc -eq 0 ] || die "tests/mktoken failed ($rc)"
eval "$exports"
unset CUBEID_TOKEN CUBEID_PIN CUBEID_PIN_FILE CUBEID_PKCS11_MODULE CUBEID_STATE_DIR
W=$CUBEID_T_DIR
AGENT_PID= ROUTER_PID= WM_PID=
passed=0 failed=0
stop_pid() { # stop_pid PID: TERM, then wait for it
	[ -n "$1" ] || return 0
	kill "$1" 2>/dev/null && wait "$1" 2>/dev/null
	return 0
}
cleanup() {
	stop_pid "$ROUTER_PID"
	stop_pid "$WM_PID"
	stop_pid "$AGENT_PID"
	kc_stop
	if [ "$failed" -gt 0 ] || [ "${E2E_KEEP:-}" = 1 ]; then
		echo "# logs kept in $W (node/agent.err, router.err, wm.err, idp/keycloak.log, flows/)"
	else
		rm -rf "$W"
	fi
}
trap cleanup EXIT
trap 'exit 1' INT TERM
N=$W/node
mkdir -p "$N" "$W/idp/import" "$W/secrets" "$W/flows" "$W/router" "$W/wm" "$W/sandbox" \
	"$W/workload/home"
TD=cluster.local
NS=${AGENTCUBE_NAMESPACE:-agentcube}
ROUTER_ID=spiffe://$TD/ns/$NS/sa/agentcube-router
WM_ID=spiffe://$TD/ns/$NS/sa/workloadmanager
SANDBOX_ID=spiffe://$TD/ns/$NS/sa/sandbox
WORKLOAD_ID=spiffe://$TD/ns/agents/sa/code-runner
# Router and WorkloadManager run as uids of their own (setpriv), so that
# attestation, not configuration, gives each its identity.  Without root
# the whole cast runs as this uid and the delivered files tell them apart.
ROUTER_UID=4210001 WM_UID=4210002 SANDBOX_UID=4210003
as_uid() { "$@"; }
if [ "$(id -u)" = 0 ] && command -v setpriv >/dev/null 2>&1; then
	as_uid() { # as_uid UID CMD...
		local u=$1
		shift
		setpriv --reuid="$u" --regid="$u" --clear-groups "$@"
	}
	chmod 755 "$W"
else
	ROUTER_UID=$(id -u) WM_UID=$(id -u) SANDBOX_UID=$(id -u)
	echo "# not root: Router and WorkloadManager run as this uid"
fi

# ---- the cast ---------------------------------------------------------

# The realms: agentcube and tenant-b, stamped from deploy/keycloak, plus the
# users of the flows as service accounts with secrets (ServiceAccountAuth)
# and the secretless workload (add-workload.sh).  The Router authenticates
# with its JWT-SVID (agentcube-router-spiffe) and may exchange the users'
# tokens for workloadmanager, so their tokens name it as an audience.
www_port=$(free_port) || die "no free port"
AGENT_URL=http://127.0.0.1:$www_port
for u in user-a user-b invoker manager root-admin; do
	(umask 077 && head -c 24 /dev/urandom | base64 | tr -d '/+=\n' >"$W/secrets/$u.secret")
done
overlay='
def aud($c): {name: ("audience-" + $c), protocol: "openid-connect",
  protocolMapper: "oidc-audience-mapper",
  config: {"included.client.audience": $c, "access.token.claim": "true",
           "id.token.claim": "false", "introspection.token.claim": "true"}};
def user($id; $role; $secret): {
  client: {clientId: $id, enabled: true, publicClient: false, secret: $secret,
           serviceAccountsEnabled: true, standardFlowEnabled: false,
           directAccessGrantsEnabled: false, fullScopeAllowed: true,
           protocolMappers: [aud("agentcube-router"), aud("agentcube-router-spiffe")]},
  user: {username: ("service-account-" + $id), enabled: true,
         serviceAccountClientId: $id, realmRoles: [$role]}};
[user("user-a"; "sandbox:manage"; $a), user("user-b"; "sandbox:manage"; $b),
 user("invoker"; "sandbox:invoke"; $i), user("manager"; "sandbox:manage"; $m),
 user("root-admin"; "admin"; $r)] as $u
| .clients |= map(if .clientId == "agentcube-router-spiffe"
    then .attributes["jwt.credential.sub"] = $router
       | .protocolMappers = [aud("workloadmanager"), aud("picod")]
    elif .clientId == "code-runner"
    then .protocolMappers += [aud("agentcube-router-spiffe")] else . end)
| .clients += [$u[].client] | .users += [$u[].user]'
kcd=$srcdir/deploy/keycloak
for realm in agentcube tenant-b; do
	"$kcd/stamp-realm.sh" "$realm" "$TD" "$AGENT_URL" |
		"$kcd/add-workload.sh" -r sandbox:manage code-runner "$WORKLOAD_ID" |
		jq --arg router "$ROUTER_ID" --arg a "$(cat "$W/secrets/user-a.secret")" \
			--arg b "$(cat "$W/secrets/user-b.secret")" --arg i "$(cat "$W/secrets/invoker.secret")" \
			--arg m "$(cat "$W/secrets/manager.secret")" \
			--arg r "$(cat "$W/secrets/root-admin.secret")" "$overlay" \
			>"$W/idp/import/$realm.json" || die "cannot stamp realm $realm"
done
kc_start "$W/idp" || die "Keycloak did not start"
ISSUER=$KC_URL/realms/agentcube
TOKEN_URL=$ISSUER/protocol/openid-connect/token
OTHER_TOKEN_URL=$KC_URL/realms/tenant-b/protocol/openid-connect/token
echo "# Keycloak $KC_VERSION up at $KC_URL after $(($(date +%s) - t0)) s"

# The node: cubeid-agent on SoftHSM2.  Router, WorkloadManager and sandbox
# get their files by delivery (the Router also its JWT-SVID for Keycloak);
# the Python workload is attested by its uid over the socket.  Router and
# WorkloadManager certificates live 8 s, so flow 1 sees rotations.
"$cubeid" ca init -d "$TD" --token "$CUBEID_T_URI" --module "$CUBEID_T_MODULE" \
	--pin-file "$CUBEID_T_PIN_FILE" --state-dir "$N/state" >"$N/ca-init.out" 2>&1 ||
	die "cubeid ca init failed: $(tail -3 "$N/ca-init.out")"
cat >"$N/entries.yaml" <<EOF
entries:
  - name: agentcube-router
    spiffe_id: $ROUTER_ID
    selectors: [unix:uid:$ROUTER_UID]
    x509_svid_ttl: 8s
    jwt_svid_ttl: 4m
    picod_signer: true
    delivery:
      dir: $W/router/certs
      uid: $ROUTER_UID
      gid: $ROUTER_UID
      jwt_svids:
        - {audience: "$ISSUER", file: keycloak.jwt}
  - name: workloadmanager
    spiffe_id: $WM_ID
    selectors: [unix:uid:$WM_UID]
    x509_svid_ttl: 8s
    delivery:
      dir: $W/wm/certs
      uid: $WM_UID
      gid: $WM_UID
  - name: sandbox
    spiffe_id: $SANDBOX_ID
    selectors: [unix:uid:$SANDBOX_UID]
    delivery:
      dir: $W/sandbox/certs
  - name: code-runner
    spiffe_id: $WORKLOAD_ID
    selectors: [unix:uid:$(id -u)]
    jwt_svid_ttl: 4m
EOF
S=$N/agent.sock
start_agent() {
	CUBEID_PKCS11_MODULE=$CUBEID_T_MODULE "$agent" --state-dir "$N/state" --socket "$S" \
		--token "$CUBEID_T_URI" --pin-file "$CUBEID_T_PIN_FILE" --entries "$N/entries.yaml" \
		-d "$TD" --http-address "127.0.0.1:$www_port" >>"$N/agent.out" 2>>"$N/agent.err" &
	AGENT_PID=$!
	for _ in $(seq 1 600); do
		[ -S "$S" ] && curl -sf "$AGENT_URL/spiffe/bundle" >/dev/null 2>&1 &&
			[ -s "$W/router/certs/keycloak.jwt" ] && [ -s "$W/wm/certs/svid.pem" ] &&
			[ -s "$W/sandbox/certs/svid.pem" ] && return 0
		kill -0 "$AGENT_PID" 2>/dev/null || break
		sleep 0.2
	done
	tail -20 "$N/agent.err" >&2
	return 1
}
start_agent || die "cubeid-agent did not start or deliver"

# The sandbox: AgentCube's real PicoD (v0.1.0, tests/picod-peer, as
# picod-real.sh builds it), which the WorkloadManager starts per sandbox with
# the agent's PicoD public key in PICOD_AUTH_PUBLIC_KEY.
PICOD_ARGS=()
if picod=$(bash "$srcdir/tests/lib/go-peers.sh" path picod-peer 2>"$W/picod-build.err"); then
	mkdir -p "$W/bin" "$W/sandboxes" && cp "$picod" "$W/bin/picod" &&
		chown "$WM_UID" "$W/sandboxes" || die "cannot set up PicoD"
	as_uid "$ROUTER_UID" env SPIFFE_ENDPOINT_SOCKET="unix://$S" "$cubeid" picod public-key \
		>"$W/picod.pem" 2>"$W/picod-key.err" || die "no PicoD key: $(cat "$W/picod-key.err")"
	chmod 644 "$W/picod.pem"
	PICOD_ARGS=(--picod "$W/bin/picod" --picod-key-file "$W/picod.pem" --picod-dir "$W/sandboxes")
else
	echo "# AgentCube's PicoD could not be built: flow 3 will say so"
	tail -5 "$W/picod-build.err" | sed 's/^/#   /'
fi

WM_PORT=$(free_port) || die "no free port"
as_uid "$WM_UID" "$wmbin" --listen "$WM_PORT" --issuer "$ISSUER" "${PICOD_ARGS[@]}" --enable-mtls \
	--mtls-cert-file "$W/wm/certs/svid.pem" --mtls-key-file "$W/wm/certs/svid_key.pem" \
	--mtls-ca-file "$W/wm/certs/svid_bundle.pem" --mtls-allow-id "$ROUTER_ID" \
	>"$W/wm.out" 2>"$W/wm.err" &
WM_PID=$!
ROUTER_PORT=$(free_port) || die "no free port"
ROUTER_PICOD=()
[ ${#PICOD_ARGS[@]} -gt 0 ] && ROUTER_PICOD=(--picod-auth-mode jwt --agent-socket "$S" --namespace "$NS")
as_uid "$ROUTER_UID" "$router" --listen "$ROUTER_PORT" --issuer "$ISSUER" --token-url "$TOKEN_URL" \
	--client-id agentcube-router-spiffe --assertion-file "$W/router/certs/keycloak.jwt" \
	--wm "127.0.0.1:$WM_PORT" --enable-mtls --mtls-cert-file "$W/router/certs/svid.pem" \
	--mtls-key-file "$W/router/certs/svid_key.pem" \
	--mtls-ca-file "$W/router/certs/svid_bundle.pem" --mtls-allow-id "$WM_ID" "${ROUTER_PICOD[@]}" \
	>"$W/router.out" 2>"$W/router.err" &
ROUTER_PID=$!
R=http://127.0.0.1:$ROUTER_PORT
for _ in $(seq 1 300); do
	grep -q listening "$W/wm.err" && grep -q listening "$W/router.err" && break
	kill -0 "$WM_PID" 2>/dev/null && kill -0 "$ROUTER_PID" 2>/dev/null || break
	sleep 0.1
done
grep -q listening "$W/wm.err" || die "the WorkloadManager did not start: $(tail -3 "$W/wm.err")"
grep -q listening "$W/router.err" || die "the Router did not start: $(tail -3 "$W/router.err")"
echo "# the chain is up after $(($(date +%s) - t0)) s"

# ---- helpers ----------------------------------------------------------

client() { # client ARGS...: the SDK client, as the workload (its HOME, cwd)
	(cd "$W/workload" && HOME=$W/workload/home PYTHONPATH=$SITE PYTHONDONTWRITEBYTECODE=1 PYTHONWARNINGS=ignore \
		SPIFFE_ENDPOINT_SOCKET=unix://$S "$py" "$srcdir/tests/e2e/client.py" "$@")
}
as() { echo "sa:$TOKEN_URL:$1:$W/secrets/$1.secret"; }
# call WHO METHOD PATH: prints "STATUS BODY" (the body is JSON)
call() { client call "$1" "$2" "$R$3" 2>>"$W/flows/client.err"; }
status_of() { echo "${1%% *}"; }
json_of() { echo "${1#* }"; }
create() { # create WHO: a new sandbox's id, or nothing
	local out
	out=$(call "$1" POST /v1/sandboxes)
	[ "$(status_of "$out")" = 201 ] && json_of "$out" | jq -r .id
}
result() { # result NAME OK OBSERVATION
	if [ "$2" = 0 ]; then
		passed=$((passed + 1))
		echo "PASS $1 $3"
	else
		failed=$((failed + 1))
		echo "FAIL $1 $3"
	fi
}

# The SDK package, installed like a user's pip install (no network)
cp -R "$srcdir/python" "$W/workload/pkg-src" && chmod -R u+w "$W/workload/pkg-src"
SITE=$W/workload/site
PIP_DISABLE_PIP_VERSION_CHECK=1 "$py" -m pip install --no-deps --no-build-isolation --no-index \
	--target "$SITE" "$W/workload/pkg-src" >"$W/pip.out" 2>&1 || die "pip install failed"

# ---- the flows (docs/e2e.md) -------------------------------------------

# 1. mTLS Router->WorkloadManager: the sandbox's identity is refused at the
# handshake; one connection with the Router's identity survives three
# rotations of the WorkloadManager's certificate.
flow_1_mtls_router_wm() {
	local imp keep ok=0 rot refused
	client token "$TOKEN_URL" user-a "$W/secrets/user-a.secret" >"$W/flows/1.tok"
	refused=$(grep -c "handshake refused" "$W/wm.err")
	imp=$(client wm 127.0.0.1 "$WM_PORT" "$W/sandbox/certs" "$W/flows/1.tok" /sandboxes/none 2>>"$W/flows/client.err")
	echo "$imp" >"$W/flows/1.impostor"
	case $imp in HANDSHAKE-REFUSED*) ;; *) ok=1 ;; esac
	# the WorkloadManager logged why (the peer's SPIFFE ID is not allowed)
	[ "$(grep -c "handshake refused" "$W/wm.err")" -gt "$refused" ] || ok=1
	keep=$(client wm 127.0.0.1 "$WM_PORT" "$W/router/certs" "$W/flows/1.tok" /sandboxes/none 3 \
		"$W/wm/certs/svid.pem" 2>>"$W/flows/client.err")
	echo "$keep" >"$W/flows/1.out"
	rot=$(grep -c '^SAME-CONNECTION True' <<<"$keep")
	[ "$rot" = 3 ] || ok=1
	# the token is the user's own, not exchanged: the WorkloadManager answers
	# (401) on the same connection after each rotation
	[ "$(grep -c '^401 ' <<<"$keep")" = 4 ] || ok=1
	result mtls-router-wm $ok "impostor ${imp%% *}; one connection answered after $rot rotations"
}

# 3. JWT mode Router->PicoD: the Router mints a PicoD token at the agent
# (aud picod:NS/SANDBOX) and the real PicoD runs the command.  A token for
# sandbox B replayed at sandbox A: cubeid's verifier (which checks aud)
# refuses it; today's PicoD takes it, printed as the known gap.
flow_3_jwt_picod() {
	local ok=0 a b out addr tok st verify
	if [ ${#PICOD_ARGS[@]} -eq 0 ]; then
		echo "SKIP jwt-picod AgentCube's PicoD could not be built (see $W/picod-build.err)"
		return
	fi
	a=$(create "$(as user-a)")
	b=$(create "$(as user-a)")
	out=$(call "$(as user-a)" POST "/v1/sandboxes/$a/invoke")
	[ "$(status_of "$out")" = 200 ] && json_of "$out" | grep -q 'hello from the sandbox' || ok=1
	addr=$(json_of "$(call "$(as user-a)" GET "/v1/sandboxes/$a")" | jq -r .picod)
	tok=$(as_uid "$ROUTER_UID" env SPIFFE_ENDPOINT_SOCKET="unix://$S" "$cubeid" picod token \
		--session "$b" --sandbox "$b" --namespace "$NS" 2>>"$W/flows/3.err")
	st=$(curl -s -o "$W/flows/3.replay" -w '%{http_code}' --max-time 30 -X POST \
		-H "Authorization: Bearer $tok" -H 'Content-Type: application/json' \
		--data '{"command":["echo","replayed"]}' "http://$addr/api/execute")
	# cubeid's verifier: B's token is good at B, and refused at A for its aud
	"$cubeid" picod verify "Bearer $tok" --header --sandbox "$b" --namespace "$NS" \
		--public-key "$W/picod.pem" >"$W/flows/3.verify-b" 2>&1 || ok=1
	if "$cubeid" picod verify "Bearer $tok" --header --sandbox "$a" --namespace "$NS" \
		--public-key "$W/picod.pem" >"$W/flows/3.verify-a" 2>&1; then
		verify=accepted
		ok=1
	else
		verify=refused
		grep -qi audience "$W/flows/3.verify-a" || ok=1
	fi
	[ -n "$tok" ] || ok=1
	echo "# known gap (AgentCube PR #352): today's PicoD answers $st to sandbox $b's token at sandbox $a"
	result jwt-picod $ok "invoke $(status_of "$out") through the real PicoD; replay $b->$a: cubeid verifier $verify"
}

# 4. Keycloak issuance and Router validation
flow_4_keycloak_validation() {
	local none other ok=0
	none=$(call none GET /v1/sandboxes/x)
	other=$(call "sa:$OTHER_TOKEN_URL:user-a:$W/secrets/user-a.secret" GET /v1/sandboxes/x)
	[ "$(status_of "$none")" = 401 ] || ok=1
	[ "$(status_of "$other")" = 401 ] || ok=1
	result keycloak-validation $ok "$(status_of "$none") with no token, $(status_of "$other") for tenant-b's token"
}

# 5. Roles: invoke may invoke (the policy passes it on: 404 for a sandbox
# that does not exist, not 403) but not manage; manage inherits invoke;
# admin gets everything, on a sandbox it does not own too.
flow_5_roles() {
	local ok=0 inv_create inv_invoke sb mgr_invoke adm_get adm_del
	inv_create=$(status_of "$(call "$(as invoker)" POST /v1/sandboxes)")
	inv_invoke=$(status_of "$(call "$(as invoker)" POST /v1/sandboxes/sb-none/invoke)")
	sb=$(create "$(as manager)")
	mgr_invoke=$(status_of "$(call "$(as manager)" POST "/v1/sandboxes/$sb/invoke")")
	adm_get=$(status_of "$(call "$(as root-admin)" POST "/v1/sandboxes/$sb/invoke")")
	adm_del=$(status_of "$(call "$(as root-admin)" DELETE "/v1/sandboxes/$sb")")
	[ "$inv_create" = 403 ] && [ "$inv_invoke" = 404 ] && [ -n "$sb" ] &&
		[ "$mgr_invoke" = 200 ] && [ "$adm_get" = 200 ] && [ "$adm_del" = 200 ] || ok=1
	result roles $ok "invoke: manage $inv_create, invoke $inv_invoke; manage: create ${sb:+201}, invoke $mgr_invoke; admin: invoke $adm_get, delete $adm_del"
}

# 6. Token exchange: the WorkloadManager takes the Router's exchanged token
# (a create through the Router) and refuses the SDK token itself, even over
# the Router's own mTLS identity.
flow_6_token_exchange() {
	local ok=0 sb direct why
	sb=$(create "$(as user-a)")
	client token "$TOKEN_URL" user-a "$W/secrets/user-a.secret" >"$W/flows/6.tok"
	direct=$(client wm 127.0.0.1 "$WM_PORT" "$W/router/certs" "$W/flows/6.tok" "/sandboxes/$sb" 2>>"$W/flows/client.err")
	why=$(json_of "$direct" | jq -r .reason 2>/dev/null)
	[ -n "$sb" ] && [ "$(status_of "$direct")" = 401 ] || ok=1
	grep -q "POST /sandboxes from $ROUTER_ID for" "$W/wm.err" || ok=1
	result token-exchange $ok "exchanged token: created ${sb:-nothing}; SDK token: $(status_of "$direct") ($why)"
}

# 7. RLAC: user A's sandbox is A's and admin's only.
flow_7_rlac() {
	local ok=0 sb a b adm owner
	sb=$(create "$(as user-a)")
	a=$(call "$(as user-a)" GET "/v1/sandboxes/$sb")
	b=$(status_of "$(call "$(as user-b)" GET "/v1/sandboxes/$sb")")
	adm=$(status_of "$(call "$(as root-admin)" GET "/v1/sandboxes/$sb")")
	owner=$(json_of "$a" | jq -r '.["agentcube.io/owner-hash"]' 2>/dev/null)
	[ -n "$sb" ] && [ "$(status_of "$a")" = 200 ] && [ "$b" = 403 ] && [ "$adm" = 200 ] &&
		[ ${#owner} = 63 ] || ok=1
	result rlac $ok "A $(status_of "$a"), $b for user B, admin $adm; owner-hash ${owner:0:12}..."
}

# 8. Secretless: the workload's token comes from its JWT-SVID, and no client
# secret of the realm is in its files.
flow_8_secretless() {
	local ok=0 out leaks=0 s
	out=$(call "workload:$TOKEN_URL" POST /v1/sandboxes)
	[ "$(status_of "$out")" = 201 ] || ok=1
	for s in "$W"/secrets/*.secret; do
		grep -rqF "$(cat "$s")" "$W/workload" && leaks=$((leaks + 1))
	done
	[ "$leaks" = 0 ] || ok=1
	result secretless $ok "WorkloadIdentityAuth create $(status_of "$out"), $leaks secrets in the workload's files"
}

# 10. Restart under traffic: user A's requests keep flowing while the agent
# is SIGKILLed and restarted.  Every request succeeds (the Router and the
# WorkloadManager work from the delivered files meanwhile), the restarted
# agent delivers new certificates, and neither loader ever saw a
# certificate that did not match its key (a torn file).
flow_10_restart_under_traffic() {
	local ok=0 sb before after i traffic total good torn
	sb=$(create "$(as user-a)")
	: >"$W/flows/10.status"
	(
		for i in $(seq 1 12); do
			status_of "$(call "$(as user-a)" GET "/v1/sandboxes/$sb")" >>"$W/flows/10.status"
		done
	) &
	traffic=$!
	while [ "$(wc -l <"$W/flows/10.status")" -lt 3 ]; do
		kill -0 "$traffic" 2>/dev/null || break
		sleep 0.2
	done
	kill -KILL "$AGENT_PID" 2>/dev/null
	wait "$AGENT_PID" 2>/dev/null
	AGENT_PID=
	start_agent || ok=1
	before=$(sha256sum <"$W/router/certs/svid.pem")
	wait "$traffic"
	# the next rotation after the restart
	for i in $(seq 1 150); do
		after=$(sha256sum <"$W/router/certs/svid.pem")
		[ "$after" != "$before" ] && [ "$(wc -l <"$W/flows/10.status")" -ge 12 ] && break
		sleep 0.2
	done
	total=$(wc -l <"$W/flows/10.status")
	good=$(grep -cx 200 "$W/flows/10.status")
	torn=$(grep -ci "mismatch\|does not match" "$W/router.err" "$W/wm.err" | awk -F: '{s += $2} END {print s + 0}')
	[ -n "$sb" ] && [ "$total" = 12 ] && [ "$good" = 12 ] && [ "$after" != "$before" ] &&
		[ "$torn" = 0 ] || ok=1
	result restart-under-traffic $ok "$good/$total requests 200 across SIGKILL+restart; new SVID $([ "$after" != "$before" ] && echo yes || echo no); $torn torn reads"
}

for f in flow_1_mtls_router_wm flow_3_jwt_picod flow_4_keycloak_validation flow_5_roles flow_6_token_exchange \
	flow_7_rlac flow_8_secretless flow_10_restart_under_traffic; do
	"$f"
done
echo "# not yet in the chain: 2 mtls-router-picod, 9 hybrid-modes"
echo "# $(($(date +%s) - t0)) s in all"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
