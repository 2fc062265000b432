#!/bin/sh
# stamp-realm.sh: a realm file for one tenant from realm-template.json.
#
#   stamp-realm.sh REALM [TRUST_DOMAIN [AGENT_URL]] > REALM-realm.json
#
# REALM         the realm's name (letters, digits, '-', '_', '.')
# TRUST_DOMAIN  the SPIFFE trust domain of the nodes' cubeid agents
#               (default cluster.local)
# AGENT_URL     the base URL where Keycloak fetches the agent's JWKS
#               (AGENT_URL/keycloak/jwks) and SPIFFE bundle
#               (AGENT_URL/spiffe/bundle)
#               (default http://cubeid-agent.agentcube-system.svc:8181)
#
# Only ${REALM}, ${TRUST_DOMAIN} and ${AGENT_URL} are replaced; the result is
# imported with `kc.sh import --file` or `start --import-realm`.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
template=${REALM_TEMPLATE:-$here/realm-template.json}
[ $# -ge 1 ] && [ $# -le 3 ] || { echo "usage: $0 REALM [TRUST_DOMAIN [AGENT_URL]]" >&2; exit 2; }
realm=$1
td=${2:-cluster.local}
url=${3:-http://cubeid-agent.agentcube-system.svc:8181}
bad() { echo "stamp-realm.sh: bad $1 '$2'" >&2; exit 2; }
printf '%s' "$realm" | grep -Eq '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$' || bad REALM "$realm"
printf '%s' "$td" | grep -Eq '^[a-z0-9._-]{1,255}$' || bad TRUST_DOMAIN "$td"
printf '%s' "$url" | grep -Eq '^https?://[][A-Za-z0-9.:_-]+(/[A-Za-z0-9._~/-]*)?$' || bad AGENT_URL "$url"
url=${url%/}
sed -e "s|\${REALM}|$realm|g" -e "s|\${TRUST_DOMAIN}|$td|g" -e "s|\${AGENT_URL}|$url|g" "$template"
