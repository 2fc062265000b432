/*
 * The agent's endpoints for Keycloak's secretless client authentication, on
 * its HTTP server (agent/http.c):
 *
 *   /keycloak/jwks   the trust domain's published JWT keys as a JWKS with
 *                    use "sig", kid and alg: the jwks.url of a Keycloak
 *                    client that authenticates with private_key_jwt
 *                    (RFC 7523) signed by those keys in the token
 *   /spiffe/bundle   the SPIFFE bundle (X.509 roots and JWT keys, with
 *                    spiffe_sequence and spiffe_refresh_hint): the
 *                    bundleEndpoint of Keycloak's SPIFFE identity provider,
 *                    for jwt-spiffe client assertions (JWT-SVIDs)
 *
 * Both are public keys only.  Handlers run on the loop thread and read the
 * agent's JWT state under jwt_lock held for reading.
 */
#include "config.h"

#include "agent/daemon.h"
#include "agent/http.h"
#include "agent/oidc-http.h"

#include <cubeid/jwt-keys.h>
#include <cubeid/oidc.h>

#include <stdlib.h>
#include <string.h>

#include <openssl/x509.h>

/* The body of /keycloak/jwks for bundle (caller frees). */
int
agent_oidc_jwks_body(const cubeid_jwt_bundle *bundle, char **out, size_t *len)
{
	return cubeid_oidc_client_jwks(bundle, out, len);
}

/* The body of /spiffe/bundle: roots (concatenated DER certificates), the
 * JWT keys of k published at now and those of more (the cluster's; may be
 * NULL), k's sequence and refresh hint. */
int
agent_oidc_spiffe_bundle_body(const cubeid_jwt_keys *k, const cubeid_jwt_bundle *more,
                              const uint8_t *der, size_t der_len, int64_t now, char **out,
                              size_t *len)
{
	cubeid_spiffe_bundle *sb = NULL;
	cubeid_jwt_bundle *jb = NULL;
	const uint8_t *p = der, *end = der + der_len;
	size_t i;
	int rc;

	*out = NULL;
	if ((rc = cubeid_spiffe_bundle_new(cubeid_jwt_keys_trust_domain(k), &sb)) != CUBEID_OK)
		return rc;
	while (p < end) {
		const uint8_t *start = p;
		X509 *x = d2i_X509(NULL, &p, (long)(end - p));

		if (x == NULL) {
			rc = CUBEID_ERR_X509;
			goto out;
		}
		X509_free(x);
		if ((rc = cubeid_spiffe_bundle_add_x509_der(sb, start, (size_t)(p - start))) !=
		    CUBEID_OK)
			goto out;
	}
	if ((rc = cubeid_jwt_keys_bundle(k, now, &jb)) != CUBEID_OK)
		goto out;
	/* the other nodes' keys (docs/cluster.md): the trust domain's bundle */
	for (i = 0; more != NULL && i < cubeid_jwt_bundle_count(more); i++)
		if (cubeid_jwt_bundle_find(jb, cubeid_jwt_bundle_kid_at(more, i)) == NULL &&
		    (rc = cubeid_jwt_bundle_add(jb, cubeid_jwt_bundle_kid_at(more, i),
		                                cubeid_jwt_bundle_key_at(more, i))) != CUBEID_OK)
			goto out;
	for (i = 0; i < cubeid_jwt_bundle_count(jb); i++)
		if ((rc = cubeid_jwt_bundle_add(cubeid_spiffe_bundle_jwt(sb),
		                                cubeid_jwt_bundle_kid_at(jb, i),
		                                cubeid_jwt_bundle_key_at(jb, i))) != CUBEID_OK)
			goto out;
	cubeid_spiffe_bundle_set_sequence(sb, cubeid_jwt_keys_sequence(k));
	cubeid_spiffe_bundle_set_refresh_hint(sb, cubeid_jwt_keys_refresh_hint(k));
	rc = cubeid_spiffe_bundle_emit(sb, out, len);
out:
	cubeid_jwt_bundle_free(jb);
	cubeid_spiffe_bundle_free(sb);
	return rc;
}

static int
h_jwks(void *ctx, const char *path, struct http_reply *r)
{
	struct agent *a = ctx;
	int rc;

	(void)path;
	pthread_rwlock_rdlock(&a->jwt_lock);
	rc = a->jwt_bundle == NULL ? CUBEID_ERR_UNAVAILABLE
	                           : agent_oidc_jwks_body(a->jwt_bundle, &r->body, &r->len);
	pthread_rwlock_unlock(&a->jwt_lock);
	if (rc != CUBEID_OK)
		return rc;
	r->status = 200;
	r->content_type = "application/json";
	r->cache_control = "max-age=60";
	return CUBEID_OK;
}

static int
h_spiffe_bundle(void *ctx, const char *path, struct http_reply *r)
{
	struct agent *a = ctx;
	int rc;

	(void)path;
	pthread_rwlock_rdlock(&a->jwt_lock);
	rc = a->jwt_keys == NULL
	             ? CUBEID_ERR_UNAVAILABLE
	             : agent_oidc_spiffe_bundle_body(a->jwt_keys, a->jwt_bundle, a->bundle_der,
	                                             a->bundle_der_len, 0, &r->body, &r->len);
	pthread_rwlock_unlock(&a->jwt_lock);
	if (rc != CUBEID_OK)
		return rc;
	r->status = 200;
	r->content_type = "application/json";
	r->cache_control = "max-age=60";
	return CUBEID_OK;
}

int
agent_oidc_http_routes(struct agent *a)
{
	int rc;

	if ((rc = http_server_route(a->http, AGENT_OIDC_JWKS_PATH, h_jwks, a)) != CUBEID_OK)
		return rc;
	return http_server_route(a->http, AGENT_OIDC_SPIFFE_BUNDLE_PATH, h_spiffe_bundle, a);
}
