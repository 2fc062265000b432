/*
 * The PicoD-side verifier of PicoD tokens (see <cubeid/picod.h>): the
 * Authorization header, the JWS with an alg allow-list, a pluggable key
 * source (one PEM key as in PICOD_AUTH_PUBLIC_KEY, a JWKS, or the caller's
 * own), and the claims, including the sandbox audience and the session
 * that stop cross-sandbox replay.
 */
#include "config.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <openssl/bio.h>
#include <openssl/pem.h>

#include <cubeid/picod.h>

struct keysrc {
	unsigned refs; /* atomic */
	cubeid_picod_key_fn fn;
	void *ctx;
	void (*free_ctx)(void *);
};

struct cubeid_picod_verifier {
	char *aud; /* NULL: not checked */
	char *session_id;
	char *issuer;
	char *sub; /* NULL: not checked */
	unsigned algs;
	int64_t leeway, max_lifetime;
	pthread_mutex_t mu;
	struct keysrc *src; /* under mu */
};

static void
keysrc_put(struct keysrc *s)
{
	if (s == NULL || __atomic_sub_fetch(&s->refs, 1, __ATOMIC_ACQ_REL) != 0)
		return;
	if (s->free_ctx != NULL)
		s->free_ctx(s->ctx);
	free(s);
}

static int
dup_opt(const char *s, char **out)
{
	*out = NULL;
	if (s == NULL)
		return CUBEID_OK;
	return (*out = strdup(s)) != NULL ? CUBEID_OK : CUBEID_ERR_NOMEM;
}

int
cubeid_picod_verifier_new(const struct cubeid_picod_verifier_opts *o, cubeid_picod_verifier **out)
{
	cubeid_picod_verifier *v;
	int rc;

	if (out == NULL)
		return CUBEID_ERR_INVALID_ARG;
	*out = NULL;
	if (o == NULL)
		return CUBEID_ERR_INVALID_ARG;
	if (o->session_id != NULL &&
	    (o->session_id[0] == '\0' || strlen(o->session_id) > CUBEID_PICOD_SESSION_MAX))
		return CUBEID_ERR_INVALID_ARG;
	if ((v = calloc(1, sizeof(*v))) == NULL)
		return CUBEID_ERR_NOMEM;
	pthread_mutex_init(&v->mu, NULL);
	v->algs = o->algs != 0 ? o->algs : CUBEID_PICOD_ALGS_DEFAULT;
	v->leeway = o->leeway >= 0 ? o->leeway : CUBEID_PICOD_LEEWAY_DEFAULT;
	v->max_lifetime = o->max_lifetime != 0 ? o->max_lifetime : CUBEID_PICOD_TTL_MAX;
	if (o->sandbox != NULL && (rc = cubeid_picod_audience(o->ns, o->sandbox, &v->aud)) != 0)
		goto fail;
	if ((rc = dup_opt(o->session_id, &v->session_id)) != CUBEID_OK ||
	    (rc = dup_opt(o->issuer, &v->issuer)) != CUBEID_OK ||
	    (rc = dup_opt(o->sub, &v->sub)) != CUBEID_OK)
		goto fail;
	*out = v;
	return CUBEID_OK;
fail:
	cubeid_picod_verifier_free(v);
	return rc;
}

void
cubeid_picod_verifier_free(cubeid_picod_verifier *v)
{
	if (v == NULL)
		return;
	keysrc_put(v->src);
	pthread_mutex_destroy(&v->mu);
	free(v->aud);
	free(v->session_id);
	free(v->issuer);
	free(v->sub);
	free(v);
}

int
cubeid_picod_verifier_set_source(cubeid_picod_verifier *v, cubeid_picod_key_fn fn, void *ctx,
                                 void (*free_ctx)(void *))
{
	struct keysrc *s, *old;

	if (v == NULL || fn == NULL)
		return CUBEID_ERR_INVALID_ARG;
	if ((s = calloc(1, sizeof(*s))) == NULL)
		return CUBEID_ERR_NOMEM;
	s->refs = 1;
	s->fn = fn;
	s->ctx = ctx;
	s->free_ctx = free_ctx;
	pthread_mutex_lock(&v->mu);
	old = v->src;
	v->src = s;
	pthread_mutex_unlock(&v->mu);
	keysrc_put(old);
	return CUBEID_OK;
}

/* ---- one PEM key ------------------------------------------------------ */

static int
pem_key_fn(void *ctx, const char *kid, cubeid_sig_alg alg, EVP_PKEY **out)
{
	(void)kid; /* PicoD uses its one key whatever the kid says */
	*out = NULL;
	if (cubeid_jws_key_fits(alg, ctx) != CUBEID_OK)
		return CUBEID_ERR_JWT_ALG;
	if (EVP_PKEY_up_ref(ctx) != 1)
		return CUBEID_ERR_CRYPTO;
	*out = ctx;
	return CUBEID_OK;
}

static void
pem_key_free(void *ctx)
{
	EVP_PKEY_free(ctx);
}

int
cubeid_picod_verifier_set_pem(cubeid_picod_verifier *v, const char *pem, size_t len)
{
	static const char begin[] = "-----BEGIN PUBLIC KEY-----";
	EVP_PKEY *pk = NULL;
	BIO *b = NULL;
	int rc;

	if (v == NULL || pem == NULL)
		return CUBEID_ERR_INVALID_ARG;
	if (len > CUBEID_PICOD_PEM_MAX)
		return CUBEID_ERR_TOO_LARGE;
	/* a PKIX public key only (what PICOD_AUTH_PUBLIC_KEY holds) */
	if (len < sizeof(begin) - 1 || memmem(pem, len, begin, sizeof(begin) - 1) == NULL)
		return CUBEID_ERR_PARSE;
	if ((b = BIO_new_mem_buf(pem, (int)len)) == NULL)
		return CUBEID_ERR_NOMEM;
	pk = PEM_read_bio_PUBKEY(b, NULL, NULL, NULL);
	BIO_free(b);
	if (pk == NULL)
		return CUBEID_ERR_PARSE;
	if (cubeid_jws_key_fits(CUBEID_SIG_RSA_PKCS1_SHA256, pk) != CUBEID_OK &&
	    cubeid_jws_key_fits(CUBEID_SIG_ECDSA_SHA256, pk) != CUBEID_OK) {
		EVP_PKEY_free(pk);
		return CUBEID_ERR_UNSUPPORTED; /* RSA 2048..8192 or EC P-256 only */
	}
	if ((rc = cubeid_picod_verifier_set_source(v, pem_key_fn, pk, pem_key_free)) != CUBEID_OK)
		EVP_PKEY_free(pk);
	return rc;
}

/* ---- a JWKS ----------------------------------------------------------- */

static int
jwks_key_fn(void *ctx, const char *kid, cubeid_sig_alg alg, EVP_PKEY **out)
{
	cubeid_jwt_bundle *b = ctx;
	EVP_PKEY *pk;

	(void)alg;
	*out = NULL;
	if (kid != NULL)
		pk = cubeid_jwt_bundle_find(b, kid);
	else
		pk = cubeid_jwt_bundle_count(b) == 1 ? cubeid_jwt_bundle_key_at(b, 0) : NULL;
	if (pk == NULL)
		return CUBEID_ERR_JWT_KID;
	if (EVP_PKEY_up_ref(pk) != 1)
		return CUBEID_ERR_CRYPTO;
	*out = pk;
	return CUBEID_OK;
}

static void
jwks_free(void *ctx)
{
	cubeid_jwt_bundle_free(ctx);
}

int
cubeid_picod_verifier_set_jwks(cubeid_picod_verifier *v, const char *json, size_t len)
{
	cubeid_jwt_bundle *b = NULL;
	int rc;

	if (v == NULL || json == NULL)
		return CUBEID_ERR_INVALID_ARG;
	/* the bundle API wants a trust domain; PicoD keys belong to none */
	if ((rc = cubeid_jwt_bundle_parse_jwks("picod", json, len, &b)) != CUBEID_OK)
		return rc;
	if (cubeid_jwt_bundle_count(b) == 0) {
		cubeid_jwt_bundle_free(b);
		return CUBEID_ERR_JWKS;
	}
	if ((rc = cubeid_picod_verifier_set_source(v, jwks_key_fn, b, jwks_free)) != CUBEID_OK)
		cubeid_jwt_bundle_free(b);
	return rc;
}

/* ---- verification ----------------------------------------------------- */

void
cubeid_picod_verified_free(struct cubeid_picod_verified *c)
{
	if (c == NULL)
		return;
	free(c->sub);
	free(c->session_id);
	free(c->user_sub);
	free(c->user_email);
	free(c->iss);
	free(c->jti);
	free(c->kid);
	free(c);
}

/* An optional string claim: absent (*s NULL, OK) or a string. */
static int
opt_str(json_t *claims, const char *name, const char **s)
{
	json_t *j = json_object_get(claims, name);

	*s = NULL;
	if (j == NULL)
		return CUBEID_OK;
	if (!json_is_string(j))
		return CUBEID_ERR_JWT_CLAIM;
	*s = json_string_value(j);
	return CUBEID_OK;
}

/* A NumericDate claim: absent (*present false) or a number that fits. */
static int
opt_time(json_t *claims, const char *name, int64_t *t, bool *present)
{
	json_t *j = json_object_get(claims, name);
	double d;

	*present = false;
	*t = 0;
	if (j == NULL)
		return CUBEID_OK;
	if (json_is_integer(j)) {
		*t = (int64_t)json_integer_value(j);
	} else if (json_is_real(j)) {
		d = json_real_value(j);
		if (!(d > -9.2e18 && d < 9.2e18))
			return CUBEID_ERR_JWT_CLAIM;
		*t = (int64_t)d;
	} else {
		return CUBEID_ERR_JWT_CLAIM;
	}
	if (*t < 0 || *t > (INT64_C(1) << 40))
		return CUBEID_ERR_JWT_CLAIM;
	*present = true;
	return CUBEID_OK;
}

static bool
aud_has(json_t *aud, const char *want)
{
	size_t i;

	if (json_is_string(aud))
		return strcmp(json_string_value(aud), want) == 0;
	if (!json_is_array(aud))
		return false;
	for (i = 0; i < json_array_size(aud); i++) {
		json_t *a = json_array_get(aud, i);

		if (json_is_string(a) && strcmp(json_string_value(a), want) == 0)
			return true;
	}
	return false;
}

static int
check_claims(const cubeid_picod_verifier *v, json_t *c, int64_t now)
{
	const char *iss, *sess, *sub, *s;
	int64_t exp, iat, nbf;
	bool has_exp, has_iat, has_nbf;
	int rc;

	if ((rc = opt_time(c, "exp", &exp, &has_exp)) != CUBEID_OK ||
	    (rc = opt_time(c, "iat", &iat, &has_iat)) != CUBEID_OK ||
	    (rc = opt_time(c, "nbf", &nbf, &has_nbf)) != CUBEID_OK)
		return rc;
	if (!has_exp || !has_iat)
		return CUBEID_ERR_JWT_CLAIM;
	/* golang-jwt's rules, which PicoD uses: expired when now >= exp +
	 * leeway; iat and nbf in the future by more than the leeway */
	if (now >= exp + v->leeway)
		return CUBEID_ERR_JWT_EXPIRED;
	if (iat > now + v->leeway || (has_nbf && nbf > now + v->leeway))
		return CUBEID_ERR_JWT_NOT_YET;
	if (v->max_lifetime > 0 && (exp < iat || exp - iat > v->max_lifetime))
		return CUBEID_ERR_JWT_CLAIM;
	if ((rc = opt_str(c, "iss", &iss)) != CUBEID_OK ||
	    (rc = opt_str(c, "session_id", &sess)) != CUBEID_OK ||
	    (rc = opt_str(c, "sub", &sub)) != CUBEID_OK ||
	    (rc = opt_str(c, "jti", &s)) != CUBEID_OK ||
	    (rc = opt_str(c, "user_sub", &s)) != CUBEID_OK ||
	    (rc = opt_str(c, "user_email", &s)) != CUBEID_OK)
		return rc;
	if (v->issuer != NULL && (iss == NULL || strcmp(iss, v->issuer) != 0))
		return CUBEID_ERR_JWT_ISSUER;
	if (v->aud != NULL && !aud_has(json_object_get(c, "aud"), v->aud))
		return CUBEID_ERR_JWT_AUDIENCE;
	if (v->session_id != NULL && (sess == NULL || strcmp(sess, v->session_id) != 0))
		return CUBEID_ERR_PICOD_SESSION;
	if (v->sub != NULL && (sub == NULL || strcmp(sub, v->sub) != 0))
		return CUBEID_ERR_FORBIDDEN;
	return CUBEID_OK;
}

static int
dup_claim(json_t *c, const char *name, char **out)
{
	const char *s = json_string_value(json_object_get(c, name));

	*out = NULL;
	if (s == NULL)
		return CUBEID_OK;
	return (*out = strdup(s)) != NULL ? CUBEID_OK : CUBEID_ERR_NOMEM;
}

static int
verified_new(const cubeid_jws *jws, struct cubeid_picod_verified **out)
{
	struct cubeid_picod_verified *r;
	json_t *c = cubeid_jws_claims(jws);
	const char *kid = cubeid_jws_kid(jws);
	bool p;

	if ((r = calloc(1, sizeof(*r))) == NULL)
		return CUBEID_ERR_NOMEM;
	opt_time(c, "iat", &r->iat, &p);
	opt_time(c, "exp", &r->exp, &p);
	if (dup_claim(c, "sub", &r->sub) != CUBEID_OK ||
	    dup_claim(c, "session_id", &r->session_id) != CUBEID_OK ||
	    dup_claim(c, "user_sub", &r->user_sub) != CUBEID_OK ||
	    dup_claim(c, "user_email", &r->user_email) != CUBEID_OK ||
	    dup_claim(c, "iss", &r->iss) != CUBEID_OK ||
	    dup_claim(c, "jti", &r->jti) != CUBEID_OK ||
	    (kid != NULL && (r->kid = strdup(kid)) == NULL)) {
		cubeid_picod_verified_free(r);
		return CUBEID_ERR_NOMEM;
	}
	*out = r;
	return CUBEID_OK;
}

int
cubeid_picod_verify_token(cubeid_picod_verifier *v, const char *token, size_t len, int64_t now,
                          struct cubeid_picod_verified **out)
{
	struct keysrc *src;
	cubeid_jws *jws = NULL;
	EVP_PKEY *pk = NULL;
	cubeid_sig_alg alg;
	int rc;

	if (out != NULL)
		*out = NULL;
	if (v == NULL || token == NULL)
		return CUBEID_ERR_INVALID_ARG;
	if ((rc = cubeid_jws_decode(token, len, &jws)) != CUBEID_OK)
		return rc;
	alg = cubeid_jws_alg(jws);
	if ((v->algs & CUBEID_PICOD_ALG_BIT(alg)) == 0) {
		rc = CUBEID_ERR_JWT_ALG;
		goto out;
	}
	pthread_mutex_lock(&v->mu);
	src = v->src;
	if (src != NULL)
		__atomic_add_fetch(&src->refs, 1, __ATOMIC_ACQ_REL);
	pthread_mutex_unlock(&v->mu);
	if (src == NULL) {
		rc = CUBEID_ERR_JWT_KID; /* no keys configured */
		goto out;
	}
	rc = src->fn(src->ctx, cubeid_jws_kid(jws), alg, &pk);
	keysrc_put(src);
	if (rc != CUBEID_OK)
		goto out;
	if ((rc = cubeid_jws_verify(jws, pk)) != CUBEID_OK)
		goto out;
	if (now == 0)
		now = (int64_t)time(NULL);
	if ((rc = check_claims(v, cubeid_jws_claims(jws), now)) != CUBEID_OK)
		goto out;
	if (out != NULL)
		rc = verified_new(jws, out);
out:
	EVP_PKEY_free(pk);
	cubeid_jws_free(jws);
	return rc;
}

int
cubeid_picod_verify_header(cubeid_picod_verifier *v, const char *authorization, int64_t now,
                           struct cubeid_picod_verified **out)
{
	const char *tok;
	size_t n;

	if (out != NULL)
		*out = NULL;
	if (v == NULL)
		return CUBEID_ERR_INVALID_ARG;
	/* PicoD: strings.Split(h, " ") must give exactly "Bearer" and the token */
	if (authorization == NULL || strncmp(authorization, "Bearer ", 7) != 0)
		return CUBEID_ERR_UNAUTHENTICATED;
	tok = authorization + 7;
	n = strlen(tok);
	if (n == 0 || strchr(tok, ' ') != NULL)
		return CUBEID_ERR_UNAUTHENTICATED;
	return cubeid_picod_verify_token(v, tok, n, now, out);
}
