#!/bin/sh
# add-workload.sh: register a workload's SPIFFE ID as a Keycloak client in a
# realm file (stamp-realm.sh's output), so that the workload gets tokens
# with its JWT-SVID and no secret (Python: cubeid.WorkloadIdentityAuth).
#
#   stamp-realm.sh agentcube TD URL |
#       add-workload.sh [-r ROLE]... [-x AUDIENCE]... [-l SECONDS] CLIENT_ID SPIFFE_ID \
#       > agentcube-realm.json
#
# CLIENT_ID   the new client's clientId (letters, digits, '-', '_', '.', ':')
# SPIFFE_ID   the workload's SPIFFE ID, in the trust domain of the realm's
#             cubeid-spiffe identity provider
# -r ROLE     a realm role for the client's service account (repeatable)
# -x AUDIENCE let the client exchange its tokens for AUDIENCE (RFC 8693;
#             repeatable): standard token exchange on, an audience mapper
#             for AUDIENCE and one for the client itself
# -l SECONDS  the access token lifespan of this client (default the realm's)
#
# The client authenticates with federated-jwt: Keycloak takes a JWT-SVID
# whose sub is SPIFFE_ID (client_assertion_type ...:jwt-spiffe), checked
# with the keys from the identity provider's bundle endpoint (the agent's
# /spiffe/bundle).  Its tokens carry aud agentcube-router, as the SDK
# client's do.  Refused: an existing CLIENT_ID, a SPIFFE_ID already
# registered, a SPIFFE_ID outside the trust domain, an unknown role (exit
# 1, with the reason); a bad argument is exit 2.
set -eu
roles='[]'
auds='[]'
life=
usage() { echo "usage: $0 [-r ROLE]... [-x AUDIENCE]... [-l SECONDS] CLIENT_ID SPIFFE_ID < realm.json" >&2; exit 2; }
while getopts r:x:l: o; do
	case $o in
	r) roles=$(printf '%s' "$roles" | jq -c --arg v "$OPTARG" '. + [$v]') ;;
	x) auds=$(printf '%s' "$auds" | jq -c --arg v "$OPTARG" '. + [$v]') ;;
	l) printf '%s' "$OPTARG" | grep -Eq '^[1-9][0-9]{0,6}$' || { echo "add-workload.sh: bad lifespan '$OPTARG'" >&2; exit 2; }
		life=$OPTARG ;;
	*) usage ;;
	esac
done
shift $((OPTIND - 1))
[ $# -eq 2 ] || usage
id=$1
spiffe=$2
printf '%s' "$id" | grep -Eq '^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$' || { echo "add-workload.sh: bad CLIENT_ID '$id'" >&2; exit 2; }
printf '%s' "$spiffe" | grep -Eq '^spiffe://[a-z0-9._-]+(/[A-Za-z0-9._-]+)+$' ||
	{ echo "add-workload.sh: bad SPIFFE_ID '$spiffe' (spiffe://TRUST_DOMAIN/PATH)" >&2; exit 2; }
jq --arg id "$id" --arg spiffe "$spiffe" --argjson roles "$roles" --argjson auds "$auds" \
	--arg life "$life" '
def aud($c): {name: ("audience-" + $c), protocol: "openid-connect",
  protocolMapper: "oidc-audience-mapper",
  config: {"included.client.audience": $c, "access.token.claim": "true",
           "id.token.claim": "false", "introspection.token.claim": "true"}};
def fail($m): error("add-workload.sh: " + $m);
([.identityProviders[]? | select(.alias == "cubeid-spiffe") | .config.trustDomain] | first) as $td
| if $td == null then fail("the realm has no cubeid-spiffe identity provider (use stamp-realm.sh)")
  elif ($spiffe | startswith($td + "/") | not) then fail("\($spiffe) is not in the trust domain \($td)")
  elif any(.clients[]; .clientId == $id) then fail("client \($id) exists")
  elif any(.clients[]; .attributes["jwt.credential.sub"]? == $spiffe) then fail("\($spiffe) is registered already")
  else . end
| ([.roles.realm[].name]) as $known
| ($roles | map(select(. as $r | $known | index($r) | not))) as $bad
| if ($bad | length) > 0 then fail("unknown realm role(s) \($bad | join(", "))") else . end
| .clients += [{
    clientId: $id, name: $id,
    description: ("A workload: \($spiffe), authenticated by its JWT-SVID from cubeid (jwt-spiffe)"),
    enabled: true, publicClient: false, clientAuthenticatorType: "federated-jwt",
    serviceAccountsEnabled: true, standardFlowEnabled: false,
    directAccessGrantsEnabled: false, fullScopeAllowed: true,
    attributes: ({"jwt.credential.issuer": "cubeid-spiffe", "jwt.credential.sub": $spiffe}
      + (if ($auds | length) > 0 then {"standard.token.exchange.enabled": "true"} else {} end)
      + (if $life != "" then {"access.token.lifespan": $life} else {} end)),
    protocolMappers: (["agentcube-router"]
      + (if ($auds | length) > 0 then [$id] + $auds else [] end) | unique | map(aud(.)))}]
| .users = ((.users // []) + [{username: ("service-account-" + ($id | ascii_downcase)), enabled: true,
    serviceAccountClientId: $id, realmRoles: $roles}])' || exit 1
