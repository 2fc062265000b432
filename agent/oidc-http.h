/*
 * The agent's Keycloak endpoints (agent/oidc-http.c): the JWKS for
 * private_key_jwt clients and the SPIFFE bundle for jwt-spiffe clients.
 */
#ifndef CUBEID_AGENT_OIDC_HTTP_H
#define CUBEID_AGENT_OIDC_HTTP_H

#include <stddef.h>
#include <stdint.h>

#include <cubeid/jwt-keys.h>

#define AGENT_OIDC_JWKS_PATH          "/keycloak/jwks"
#define AGENT_OIDC_SPIFFE_BUNDLE_PATH "/spiffe/bundle"

struct agent;

/* Register both paths on a->http (which must exist). */
int agent_oidc_http_routes(struct agent *a);

/* The bodies, for the handlers and the tests (caller frees *out). */
int agent_oidc_jwks_body(const cubeid_jwt_bundle *bundle, char **out, size_t *len);
int agent_oidc_spiffe_bundle_body(const cubeid_jwt_keys *k, const cubeid_jwt_bundle *more,
                                  const uint8_t *der, size_t der_len, int64_t now, char **out,
                                  size_t *len);

#endif
