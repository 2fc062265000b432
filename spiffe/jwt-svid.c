/*
 * JWT-SVIDs (spiffe/spiffe standards/JWT-SVID.md): validation against a JWT
 * bundle, and encoding through a signer callback.
 */
#include "config.h"

#include <cubeid/jwt.h>

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "spiffe/jwt-internal.h"

/* A NumericDate member: CUBEID_OK and *present false when absent. */
static int
numeric_date(json_t *claims, const char *name, bool *present, double *v)
{
	json_t *j = json_object_get(claims, name);

	*present = j != NULL;
	*v = 0;
	if (j == NULL)
		return CUBEID_OK;
	if (!json_is_number(j))
		return CUBEID_ERR_JWT_CLAIM;
	*v = json_number_value(j);
	return CUBEID_OK;
}

static int
check_audience(json_t *claims, const char *audience)
{
	json_t *aud = json_object_get(claims, "aud"), *v;
	size_t i;

	if (json_is_string(aud))
		return strcmp(json_string_value(aud), audience) == 0 ? CUBEID_OK
		                                                     : CUBEID_ERR_JWT_AUDIENCE;
	if (!json_is_array(aud))
		return CUBEID_ERR_JWT_AUDIENCE; /* missing, or neither string nor array */
	json_array_foreach(aud, i, v)
	{
		if (!json_is_string(v))
			return CUBEID_ERR_JWT_AUDIENCE;
	}
	json_array_foreach(aud, i, v)
	{
		if (strcmp(json_string_value(v), audience) == 0)
			return CUBEID_OK;
	}
	return CUBEID_ERR_JWT_AUDIENCE;
}

int
cubeid_jwt_svid_validate(const char *token, size_t len, const cubeid_jwt_bundle *bundle,
                         const char *audience, int64_t now, unsigned leeway, cubeid_spiffe_id **id,
                         json_t **claims)
{
	struct cubeid_jwt_svid_opts o = {0};

	o.now = now;
	o.leeway = leeway;
	return cubeid_jwt_svid_validate_opts(token, len, bundle, audience, &o, id, claims);
}

int
cubeid_jwt_svid_validate_opts(const char *token, size_t len, const cubeid_jwt_bundle *bundle,
                              const char *audience, const struct cubeid_jwt_svid_opts *o,
                              cubeid_spiffe_id **id, json_t **claims)
{
	cubeid_jws *jws = NULL;
	cubeid_spiffe_id *sub_id = NULL;
	const char *typ, *kid;
	json_t *cl, *sub;
	EVP_PKEY *pk;
	jwt_key_class kc;
	bool present;
	double exp, nbf, iat, max_life;
	int64_t now;
	unsigned leeway;
	int rc;

	if (id != NULL)
		*id = NULL;
	if (claims != NULL)
		*claims = NULL;
	if (token == NULL || bundle == NULL || audience == NULL || o == NULL)
		return CUBEID_ERR_INVALID_ARG;
	now = o->now != 0 ? o->now : (int64_t)time(NULL);
	leeway = o->leeway;
	max_life = (double)(o->max_lifetime != 0 ? o->max_lifetime
	                                         : CUBEID_JWT_SVID_MAX_LIFETIME_DEFAULT);

	if ((rc = cubeid_jws_decode(token, len, &jws)) != CUBEID_OK)
		goto out;
	typ = cubeid_jws_typ(jws);
	if (typ != NULL && strcmp(typ, "JWT") != 0 && strcmp(typ, "JOSE") != 0) {
		rc = CUBEID_ERR_JWT_MALFORMED;
		goto out;
	}
	kid = cubeid_jws_kid(jws);
	if (kid == NULL || (pk = jwt_bundle_find_class(bundle, kid, &kc)) == NULL) {
		rc = CUBEID_ERR_JWT_KID;
		goto out;
	}
	/* high-S too unless asked: SPIRE and go-spiffe sign with Go's
	 * crypto/ecdsa, which does not normalise s (see <cubeid/jwt.h>) */
	if ((rc = jwt_jws_verify_class(jws, pk, kc, o->low_s_only ? 0 : CUBEID_JWS_ALLOW_HIGH_S)) !=
	    CUBEID_OK)
		goto out;

	cl = cubeid_jws_claims(jws);
	if ((rc = numeric_date(cl, "exp", &present, &exp)) != CUBEID_OK)
		goto out;
	if (!present) {
		rc = CUBEID_ERR_JWT_CLAIM;
		goto out;
	}
	if ((double)now >= exp + (double)leeway) {
		rc = CUBEID_ERR_JWT_EXPIRED;
		goto out;
	}
	if ((rc = numeric_date(cl, "nbf", &present, &nbf)) != CUBEID_OK)
		goto out;
	if (present && nbf > (double)now + (double)leeway) {
		rc = CUBEID_ERR_JWT_NOT_YET;
		goto out;
	}
	/* iat in the future is a clock gone wrong or a forged timeline */
	if ((rc = numeric_date(cl, "iat", &present, &iat)) != CUBEID_OK)
		goto out;
	if (present && iat > (double)now + (double)leeway) {
		rc = CUBEID_ERR_JWT_NOT_YET;
		goto out;
	}
	/* nor may it live longer than any issuer of ours would sign for:
	 * exp counted from iat, or from now (with the leeway) without one */
	if (present ? exp - iat > max_life : exp - (double)now > max_life + (double)leeway) {
		rc = CUBEID_ERR_JWT_CLAIM;
		goto out;
	}
	if ((rc = check_audience(cl, audience)) != CUBEID_OK)
		goto out;
	sub = json_object_get(cl, "sub");
	if (!json_is_string(sub) ||
	    cubeid_spiffe_id_parse(json_string_value(sub), json_string_length(sub), &sub_id,
	                           NULL) != CUBEID_OK ||
	    !cubeid_spiffe_id_member_of(sub_id, cubeid_jwt_bundle_trust_domain(bundle)) ||
	    cubeid_spiffe_id_is_trust_domain_id(sub_id)) {
		rc = CUBEID_ERR_JWT_CLAIM;
		goto out;
	}
	if (claims != NULL)
		*claims = json_incref(cl);
	if (id != NULL) {
		*id = sub_id;
		sub_id = NULL;
	}
	rc = CUBEID_OK;
out:
	cubeid_spiffe_id_free(sub_id);
	cubeid_jws_free(jws);
	return rc;
}

int
cubeid_jwt_svid_encode(cubeid_sig_alg alg, const char *kid, const cubeid_spiffe_id *sub,
                       const char *const *aud, size_t n_aud, int64_t now, unsigned ttl,
                       const char *jti, cubeid_jws_sign_fn sign, void *ctx, char **out)
{
	json_t *claims = NULL, *aud_j = NULL;
	size_t i;
	int rc;

	if (out == NULL)
		return CUBEID_ERR_INVALID_ARG;
	*out = NULL;
	if (sub == NULL || aud == NULL || n_aud == 0 || n_aud > CUBEID_JWKS_MAX_KEYS || ttl == 0 ||
	    sign == NULL)
		return CUBEID_ERR_INVALID_ARG;
	/* JWT-SVID.md 3: sub is a workload's ID, which has a path */
	if (cubeid_spiffe_id_is_trust_domain_id(sub))
		return CUBEID_ERR_SPIFFE_ID;
	for (i = 0; i < n_aud; i++)
		if (aud[i] == NULL || aud[i][0] == '\0')
			return CUBEID_ERR_INVALID_ARG;
	if (now == 0)
		now = (int64_t)time(NULL);

	if (n_aud == 1) {
		aud_j = json_string(aud[0]);
	} else if ((aud_j = json_array()) != NULL) {
		for (i = 0; i < n_aud; i++)
			if (json_array_append_new(aud_j, json_string(aud[i])) != 0) {
				rc = CUBEID_ERR_INVALID_ARG; /* not UTF-8 */
				goto out;
			}
	}
	if (aud_j == NULL) {
		rc = CUBEID_ERR_INVALID_ARG;
		goto out;
	}
	claims = json_pack("{ss sO sI sI}", "sub", cubeid_spiffe_id_string(sub), "aud", aud_j,
	                   "exp", (json_int_t)(now + (int64_t)ttl), "iat", (json_int_t)now);
	if (claims == NULL) {
		rc = CUBEID_ERR_NOMEM;
		goto out;
	}
	if (jti != NULL && json_object_set_new(claims, "jti", json_string(jti)) != 0) {
		rc = CUBEID_ERR_INVALID_ARG;
		goto out;
	}
	rc = cubeid_jws_encode(alg, kid, "JWT", claims, sign, ctx, out);
out:
	json_decref(aud_j);
	json_decref(claims);
	return rc;
}
