#!/bin/bash
# Cloud federation (checkpoint 12): the identity-broker fragments in
# deploy/keycloak/brokers import into a real Keycloak (tests/lib/keycloak.sh)
# and read back as written.
#   - a realm with the agentcube roles (sandbox:invoke < sandbox:manage <
#     admin) is made through the admin REST API;
#   - each fragment's identity providers and mappers are created through the
#     admin REST API (the same representations a realm import reads);
#   - GET returns every provider with its providerId and every config key
#     and value of the fragment (a vault reference stays a reference), and
#     every mapper with its type, role and claims;
#   - Keycloak refuses a broken provider (an unknown providerId), so the
#     checks above can fail.
# There is no cloud account: the providers are configured, not logged into.
set -u
srcdir=${CUBEID_SRCDIR:-.}
B=$srcdir/deploy/keycloak/brokers

PY=
for p in python3 /usr/bin/python3; do
	command -v "$p" >/dev/null 2>&1 && PY=$p && break
done
[ -n "$PY" ] || {
	echo "SKIP: python3 not found"
	exit 77
}
# shellcheck source=tests/lib/keycloak.sh
. "$srcdir/tests/lib/keycloak.sh" || exit 1

D=$(mktemp -d /tmp/cubeid-kc-brokers.XXXXXX) || exit 1
cleanup() {
	kc_stop 2>/dev/null
	rm -rf "$D"
}
trap cleanup EXIT
mkdir -p "$D/import"
KC_IMPORT_DIR=$D/import
export KC_IMPORT_DIR
if ! kc_start "$D"; then
	echo "not ok - Keycloak did not start"
	exit 1
fi
echo "# Keycloak at $KC_URL"

"$PY" - "$KC_URL" "$B" <<'EOF'
import glob, json, os, subprocess, sys, urllib.error, urllib.request

url, bdir = sys.argv[1], sys.argv[2]
realm = "agentcube-brokers"
n = fails = 0

def ok(cond, what):
    global n, fails
    n += 1
    print(("ok %d - %s" if cond else "not ok %d - %s") % (n, what))
    if not cond:
        fails += 1

def token():
    return subprocess.run(["bash", "-c", ". \"$CUBEID_SRCDIR/tests/lib/keycloak.sh\" && kc_admin_token"],
                          check=True, capture_output=True, text=True).stdout.strip()

TOK = token()

def call(method, path, body=None):
    req = urllib.request.Request(url + path, method=method,
                                 data=None if body is None else json.dumps(body).encode(),
                                 headers={"Authorization": "Bearer " + TOK,
                                          "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            data = r.read()
            return r.status, json.loads(data) if data else None
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")

st, _ = call("POST", "/admin/realms", {"realm": realm, "enabled": True})
ok(st == 201, "realm %s created (%s)" % (realm, st))
for r in ["sandbox:invoke", "sandbox:manage", "admin"]:
    st, _ = call("POST", "/admin/realms/%s/roles" % realm, {"name": r})
    ok(st == 201, "role %s (%s)" % (r, st))

files = sorted(glob.glob(os.path.join(bdir, "*.json")))
ok(len(files) == 4, "four broker fragments (%d)" % len(files))
for f in files:
    frag = json.load(open(f))
    name = os.path.basename(f)
    for idp in frag["identityProviders"]:
        st, body = call("POST", "/admin/realms/%s/identity-provider/instances" % realm, idp)
        ok(st == 201, "%s: create identity provider %s (%s %s)" % (name, idp["alias"], st, body or ""))
        st, got = call("GET", "/admin/realms/%s/identity-provider/instances/%s" % (realm, idp["alias"]))
        ok(st == 200 and got["providerId"] == idp["providerId"],
           "%s: %s reads back as %s" % (name, idp["alias"], idp["providerId"]))
        if st == 200:
            diff = {k: (v, got["config"].get(k)) for k, v in idp["config"].items()
                    if got["config"].get(k) != v and not (k == "clientSecret" and got["config"].get(k) == "**********")}
            ok(not diff, "%s: %s config reads back unchanged %s" % (name, idp["alias"], diff or ""))
            if "clientSecret" in idp["config"]:
                ok(idp["config"]["clientSecret"].startswith("${vault."),
                   "%s: the client secret is a vault reference" % name)
    for m in frag["identityProviderMappers"]:
        alias = m["identityProviderAlias"]
        st, body = call("POST", "/admin/realms/%s/identity-provider/instances/%s/mappers" % (realm, alias), m)
        ok(st == 201, "%s: create mapper %s (%s %s)" % (name, m["name"], st, body or ""))
    st, got = call("GET", "/admin/realms/%s/identity-provider/instances/%s/mappers" % (realm, alias))
    want = {m["name"]: m for m in frag["identityProviderMappers"]}
    have = {m["name"]: m for m in (got if st == 200 else [])}
    ok(set(want) == set(have), "%s: mappers read back %s" % (name, sorted(have)))
    for k, m in want.items():
        h = have.get(k, {})
        ok(h.get("identityProviderMapper") == m["identityProviderMapper"] and
           all(h.get("config", {}).get(ck) == cv for ck, cv in m["config"].items()),
           "%s: mapper %s reads back with its type and config" % (name, k))

# the realm now brokers to all four
st, got = call("GET", "/admin/realms/%s/identity-provider/instances" % realm)
ok(st == 200 and sorted(i["alias"] for i in got) == ["aws", "azure-ad", "azure-ad-saml", "google"],
   "the realm lists aws, azure-ad, azure-ad-saml, google")
# and refuses what is not a provider
st, _ = call("POST", "/admin/realms/%s/identity-provider/instances" % realm,
             {"alias": "bogus", "providerId": "no-such-provider", "config": {}})
ok(st >= 400, "an unknown providerId is refused (%s)" % st)
print("1..%d" % n)
sys.exit(1 if fails else 0)
EOF
