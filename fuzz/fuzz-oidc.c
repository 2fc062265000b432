/* libFuzzer target: the OIDC inputs that come from outside: discovery
 * documents, policy tables (then a lookup against each), and access tokens
 * through a verifier with a fixed key set (claim checks, roles). */
#include "config.h"

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cubeid/oidc.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static cubeid_oidc_verifier *v;

static void
setup(void)
{
	struct cubeid_oidc_verifier_opts o = {0};
	static const char jwks[] =
	        "{\"keys\":[{\"kty\":\"EC\",\"crv\":\"P-256\",\"kid\":\"k1\",\"use\":\"sig\","
	        "\"x\":\"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU\","
	        "\"y\":\"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0\"}]}";
	const char *aud = "agentcube-router";

	o.issuer = "https://kc.example.org/realms/agentcube";
	o.jwks_uri = "http://127.0.0.1:9/certs";
	o.audiences = &aud;
	o.n_audiences = 1;
	o.client_roles = "agentcube-router";
	o.min_refresh_gap = 1000000000; /* never fetch */
	o.refresh_interval = 1000000000;
	o.max_stale = 1000000000;
	if (cubeid_oidc_verifier_new(&o, &v) != CUBEID_OK ||
	    cubeid_oidc_verifier_set_jwks(v, jwks, strlen(jwks), 1900000000) != CUBEID_OK)
		__builtin_trap();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *doc = (const char *)data;
	cubeid_oidc_discovery *d = NULL;
	cubeid_oidc_policy *p = NULL;
	cubeid_oidc_claims *c = NULL;
	size_t line, i;

	if (v == NULL)
		setup();
	if (cubeid_oidc_discovery_parse(doc, size, NULL, &d) == CUBEID_OK &&
	    (d->issuer == NULL || d->jwks_uri == NULL || d->token_endpoint == NULL))
		__builtin_trap();
	cubeid_oidc_discovery_free(d);
	if (cubeid_oidc_policy_parse(doc, size, &p, &line) == CUBEID_OK) {
		(void)cubeid_oidc_policy_lookup(p, "GET", "/v1/sandboxes/a/b");
		(void)cubeid_oidc_policy_lookup(p, "POST", "/");
	}
	cubeid_oidc_policy_free(p);
	if (cubeid_oidc_verify(v, doc, size, 1900000000, &c) == CUBEID_OK) {
		for (i = 0; i < cubeid_oidc_claims_role_count(c); i++)
			if (cubeid_oidc_claims_role_at(c, i) == NULL)
				__builtin_trap();
		if (cubeid_oidc_claims_sub(c) == NULL)
			__builtin_trap();
	}
	cubeid_oidc_claims_free(c);
	return 0;
}
