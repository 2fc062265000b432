/*
 * JWT-SVIDs signed by a key in the token: the glue between the JWS encoder
 * and cubeid_key_sign(), which already returns JWS-format signatures (raw
 * r||s for ECDSA).
 */
#include "config.h"

#include <cubeid/jwt.h>
#include <cubeid/token.h>

int
cubeid_jws_sign_key(void *ctx, cubeid_sig_alg alg, const uint8_t *in, size_t in_len, uint8_t *sig,
                    size_t *sig_len)
{
	if (ctx == NULL)
		return CUBEID_ERR_INVALID_ARG;
	return cubeid_key_sign((const cubeid_key *)ctx, alg, in, in_len, sig, sig_len);
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
