/*
 * JWT-SVIDs signed by a key in the token: the glue between the JWS encoder
 * and cubeid_key_sign(), which already returns JWS-format signatures (raw
 * r||s for ECDSA).
 */
#include "config.h"

#include <cubeid/jwt.h>
#include <cubeid/token.h>

#include <stdlib.h>
#include <string.h>

#include "spiffe/jwt-internal.h"

int
cubeid_jws_sign_key(void *ctx, cubeid_sig_alg alg, const uint8_t *in, size_t in_len, uint8_t *sig,
                    size_t *sig_len)
{
	int rc;

	if (ctx == NULL)
		return CUBEID_ERR_INVALID_ARG;
	rc = cubeid_key_sign((const cubeid_key *)ctx, alg, in, in_len, sig, sig_len);
	/* the token's r||s is whatever its ECDSA made; verifiers take low-S
	 * only (cubeid_jws_verify) */
	if (rc == CUBEID_OK && sig != NULL &&
	    (alg == CUBEID_SIG_ECDSA_SHA256 || alg == CUBEID_SIG_ECDSA_SHA384 ||
	     alg == CUBEID_SIG_ECDSA_SHA512) &&
	    (rc = cubeid_jws_ecdsa_low_s(alg, sig, *sig_len)) > 0)
		rc = CUBEID_OK;
	return rc;
}

int
cubeid_jwt_svid_mint(cubeid_key *key, cubeid_sig_alg alg, const char *kid,
                     const cubeid_spiffe_id *sub, const char *const *aud, size_t n_aud,
                     unsigned ttl, const char *jti, char **out)
{
	if (out != NULL)
		*out = NULL;
	if (key == NULL)
		return CUBEID_ERR_INVALID_ARG;
	return cubeid_jwt_svid_encode(alg, kid, sub, aud, n_aud, 0, ttl, jti, cubeid_jws_sign_key,
	                              key, out);
}

/* One JWK with the kid convention of cubeid_kid_from_pkey(), as a
 * NUL-terminated malloc'd string. */
int
cubeid_key_export_jwk(const cubeid_key *key, uint8_t **out, size_t *len)
{
	char kid[CUBEID_KID_LEN + 1];
	EVP_PKEY *pk = NULL;
	json_t *jwk = NULL;
	char *s;
	int rc;

	if (out == NULL || len == NULL)
		return CUBEID_ERR_INVALID_ARG;
	*out = NULL;
	*len = 0;
	if (key == NULL)
		return CUBEID_ERR_INVALID_ARG;
	if ((rc = cubeid_key_public(key, &pk)) != CUBEID_OK)
		return rc;
	if ((rc = cubeid_kid_from_pkey(pk, kid)) != CUBEID_OK ||
	    (rc = cubeid_jwk_from_pkey(pk, kid, NULL, &jwk)) != CUBEID_OK)
		goto out;
	if ((s = json_dumps(jwk, JSON_COMPACT | JSON_PRESERVE_ORDER)) == NULL) {
		rc = CUBEID_ERR_NOMEM;
		goto out;
	}
	*out = (uint8_t *)s;
	*len = strlen(s);
out:
	json_decref(jwk);
	EVP_PKEY_free(pk);
	return rc;
}
