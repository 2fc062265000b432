/* Shared between spiffe/jws.c, jwks.c, bundle.c and jwt-svid.c; not public. */
#ifndef CUBEID_SPIFFE_JWT_INTERNAL_H
#define CUBEID_SPIFFE_JWT_INTERNAL_H

#include <cubeid/jwt.h>

/* What a verification key can do, worked out once when it is loaded. */
typedef enum {
	JWT_KEY_NONE = 0, /* unusable for any JWT-SVID alg */
	JWT_KEY_RSA,      /* RSA 2048..8192 bits: RS*, PS* */
	JWT_KEY_P256,     /* ES256 */
	JWT_KEY_P384,     /* ES384 */
	JWT_KEY_P521,     /* ES512 */
} jwt_key_class;

jwt_key_class jwt_key_class_of(EVP_PKEY *pk);
/* Verify sig over in with pk of class kc (already known). */
int jwt_verify_raw(cubeid_sig_alg alg, EVP_PKEY *pk, jwt_key_class kc, const uint8_t *in,
                   size_t in_len, const uint8_t *sig, size_t sig_len);
/* flags: CUBEID_JWS_ALLOW_HIGH_S or 0 */
int jwt_jws_verify_class(const cubeid_jws *jws, EVP_PKEY *pk, jwt_key_class kc, unsigned flags);
/* The key for kid and its class, or NULL. */
EVP_PKEY *jwt_bundle_find_class(const cubeid_jwt_bundle *b, const char *kid, jwt_key_class *kc);

/* Load a key set document: size limit, JSON object with a "keys" array of at
 * most CUBEID_JWKS_MAX_KEYS.  *root is a new reference, *keys borrowed. */
int jwt_load_keyset(const char *json, size_t len, json_t **root, json_t **keys);
/* Add one JWK to b: 0 added, 1 skipped (unknown kty/crv), < 0 error
 * (CUBEID_ERR_JWKS for a bad key, missing or duplicate kid). */
int jwt_bundle_add_jwk(cubeid_jwt_bundle *b, const json_t *jwk);
/* Append b's keys as use=jwt-svid JWKs to the array keys. */
int jwt_bundle_append_jwks(const cubeid_jwt_bundle *b, json_t *keys);
/* Compact dump, new string. */
int jwt_dump(const json_t *doc, char **out, size_t *len);

#endif
