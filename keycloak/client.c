/*
 * Getting tokens from an OIDC token endpoint: client_credentials with a
 * client secret, an RFC 7523 private_key_jwt assertion or Keycloak's
 * jwt-spiffe assertion; a cache that refreshes ahead of expiry; and RFC 8693
 * token exchange.
 */
#include "config.h"

#include "keycloak/oidc-internal.h"

#include <cubeid/log.h>
#include <cubeid/oidc.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#define SECRET_MAX 4096

struct cubeid_oidc_client {
	char *token_endpoint, *issuer, *client_id, *secret;
	cubeid_oidc_auth_method method;
	cubeid_oidc_assertion_fn assertion;
	void *assertion_ctx;
	int64_t refresh_ahead;
	long timeout_ms;

	pthread_mutex_t lock;
	char *cached;       /* access token */
	int64_t cached_exp; /* its expiry */
	int64_t cached_at;
	unsigned long fetches;
};

static void
free_secret(char *s)
{
	if (s != NULL) {
		OPENSSL_cleanse(s, strlen(s));
		free(s);
	}
}

void
cubeid_oidc_token_clear(struct cubeid_oidc_token *t)
{
	if (t == NULL)
		return;
	free_secret(t->access_token);
	free(t->token_type);
	free(t->issued_token_type);
	free(t->error);
	free(t->error_description);
	memset(t, 0, sizeof(*t));
}

void
cubeid_oidc_client_free(cubeid_oidc_client *c)
{
	if (c == NULL)
		return;
	free(c->token_endpoint);
	free(c->issuer);
	free(c->client_id);
	free_secret(c->secret);
	free_secret(c->cached);
	pthread_mutex_destroy(&c->lock);
	free(c);
}

int
cubeid_oidc_client_new(const struct cubeid_oidc_client_opts *o, cubeid_oidc_client **out)
{
	cubeid_oidc_client *c;

	*out = NULL;
	if (o == NULL || o->token_endpoint == NULL || !oidc_url_ok(o->token_endpoint) ||
	    o->client_id == NULL || o->client_id[0] == '\0' || o->refresh_ahead < 0)
		return CUBEID_ERR_INVALID_ARG;
	switch (o->method) {
	case CUBEID_OIDC_AUTH_SECRET:
		if (o->secret == NULL || o->secret[0] == '\0')
			return CUBEID_ERR_INVALID_ARG;
		break;
	case CUBEID_OIDC_AUTH_PRIVATE_KEY_JWT:
	case CUBEID_OIDC_AUTH_SPIFFE:
		if (o->assertion == NULL || o->issuer == NULL)
			return CUBEID_ERR_INVALID_ARG;
		break;
	default:
		return CUBEID_ERR_INVALID_ARG;
	}
	if ((c = calloc(1, sizeof(*c))) == NULL)
		return CUBEID_ERR_NOMEM;
	pthread_mutex_init(&c->lock, NULL);
	c->method = o->method;
	c->assertion = o->assertion;
	c->assertion_ctx = o->assertion_ctx;
	c->refresh_ahead = o->refresh_ahead ? o->refresh_ahead : 30;
	c->timeout_ms = o->http_timeout_ms ? o->http_timeout_ms : 10000;
	if ((c->token_endpoint = strdup(o->token_endpoint)) == NULL ||
	    (c->client_id = strdup(o->client_id)) == NULL ||
	    (o->issuer != NULL && (c->issuer = strdup(o->issuer)) == NULL) ||
	    (o->secret != NULL && (c->secret = strdup(o->secret)) == NULL)) {
		cubeid_oidc_client_free(c);
		return CUBEID_ERR_NOMEM;
	}
	*out = c;
	return CUBEID_OK;
}

int
cubeid_oidc_read_secret_file(const char *path, char **out)
{
	char buf[SECRET_MAX + 2];
	struct stat st;
	ssize_t n;
	size_t len;
	int fd, r = CUBEID_OK;

	*out = NULL;
	if (path == NULL)
		return CUBEID_ERR_INVALID_ARG;
	if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY)) < 0)
		return errno == ENOENT ? CUBEID_ERR_NOT_FOUND : CUBEID_ERR_IO;
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		r = CUBEID_ERR_IO;
		goto out;
	}
	if (st.st_mode & (S_IRWXG | S_IRWXO)) {
		cubeid_log(CUBEID_LOG_ERROR, "oidc: %s is readable by others (mode %03o): refused",
		           path, (unsigned)(st.st_mode & 0777));
		r = CUBEID_ERR_PERMISSION;
		goto out;
	}
	n = read(fd, buf, sizeof(buf) - 1);
	if (n < 0) {
		r = CUBEID_ERR_IO;
		goto out;
	}
	if ((size_t)n > SECRET_MAX) {
		r = CUBEID_ERR_TOO_LARGE;
		goto out;
	}
	buf[n] = '\0';
	len = strcspn(buf, "\r\n");
	buf[len] = '\0';
	if (len == 0 || memchr(buf, '\0', len) != NULL)
		r = CUBEID_ERR_PARSE;
	else if ((*out = strdup(buf)) == NULL)
		r = CUBEID_ERR_NOMEM;
out:
	OPENSSL_cleanse(buf, sizeof(buf));
	close(fd);
	return r;
}

static int
dup_str(json_t *o, const char *name, char **out)
{
	const char *s = json_string_value(json_object_get(o, name));

	*out = NULL;
	if (s == NULL)
		return CUBEID_OK;
	return (*out = strdup(s)) == NULL ? CUBEID_ERR_NOMEM : CUBEID_OK;
}

/* Parse a token endpoint reply into t. */
static int
parse_token_reply(const struct oidc_http_reply *rep, int64_t now, struct cubeid_oidc_token *t)
{
	json_t *o, *ei;
	int r;

	t->http_status = rep->status;
	o = json_loadb(rep->body, rep->len, JSON_REJECT_DUPLICATES, NULL);
	if (o == NULL || !json_is_object(o)) {
		json_decref(o);
		return rep->status == 200 ? CUBEID_ERR_PARSE : CUBEID_ERR_HTTP_STATUS;
	}
	if (rep->status != 200) {
		r = dup_str(o, "error", &t->error);
		if (r == CUBEID_OK)
			r = dup_str(o, "error_description", &t->error_description);
		json_decref(o);
		if (r != CUBEID_OK)
			return r;
		return t->error != NULL ? CUBEID_ERR_OAUTH : CUBEID_ERR_HTTP_STATUS;
	}
	if ((r = dup_str(o, "access_token", &t->access_token)) != CUBEID_OK ||
	    (r = dup_str(o, "token_type", &t->token_type)) != CUBEID_OK ||
	    (r = dup_str(o, "issued_token_type", &t->issued_token_type)) != CUBEID_OK)
		goto out;
	if (t->access_token == NULL || t->access_token[0] == '\0' ||
	    strlen(t->access_token) > CUBEID_JWT_MAX) {
		r = CUBEID_ERR_PARSE;
		goto out;
	}
	ei = json_object_get(o, "expires_in");
	if (json_is_integer(ei) && json_integer_value(ei) > 0 &&
	    json_integer_value(ei) < 10 * 365 * 86400)
		t->expires_at = now + (int64_t)json_integer_value(ei);
	r = CUBEID_OK;
out:
	json_decref(o);
	return r;
}

/* client_id plus the client's credentials, appended to *form. */
static int
add_client_auth(cubeid_oidc_client *c, int64_t now, char **form)
{
	char *a = NULL;
	int r;

	/* Keycloak finds a jwt-spiffe client by the assertion's sub (a SPIFFE
	 * ID) and refuses a client_id that differs from it: send none. */
	if (c->method != CUBEID_OIDC_AUTH_SPIFFE &&
	    (r = oidc_form_add(form, "client_id", c->client_id)) != CUBEID_OK)
		return r;
	if (c->method == CUBEID_OIDC_AUTH_SECRET)
		return oidc_form_add(form, "client_secret", c->secret);
	/* Keycloak accepts the realm issuer as the aud of both assertions; the
	 * jwt-spiffe one requires exactly it. */
	if ((r = c->assertion(c->assertion_ctx, c->issuer, now, &a)) != CUBEID_OK) {
		cubeid_log(CUBEID_LOG_ERROR, "oidc: cannot make a client assertion: %s",
		           cubeid_strerror(r));
		return r;
	}
	r = oidc_form_add(form, "client_assertion_type",
	                  c->method == CUBEID_OIDC_AUTH_SPIFFE ? CUBEID_OIDC_ASSERTION_SPIFFE
	                                                       : CUBEID_OIDC_ASSERTION_JWT_BEARER);
	if (r == CUBEID_OK)
		r = oidc_form_add(form, "client_assertion", a);
	free(a);
	return r;
}

static int
post(cubeid_oidc_client *c, char *form, int64_t now, struct cubeid_oidc_token *t)
{
	struct oidc_http_reply rep;
	int r;

	r = oidc_http(c->token_endpoint, form, CUBEID_OIDC_HTTP_MAX, c->timeout_ms, &rep);
	OPENSSL_cleanse(form, strlen(form));
	if (r != CUBEID_OK)
		return r;
	r = parse_token_reply(&rep, now, t);
	if (r == CUBEID_ERR_OAUTH)
		cubeid_log(CUBEID_LOG_WARNING, "oidc: %s: HTTP %ld, %s: %s", c->token_endpoint,
		           rep.status, t->error, t->error_description ? t->error_description : "");
	OPENSSL_cleanse(rep.body, rep.len);
	oidc_http_reply_clear(&rep);
	return r;
}

int
cubeid_oidc_client_token(cubeid_oidc_client *c, int64_t now, char **out,
                         struct cubeid_oidc_token *err)
{
	struct cubeid_oidc_token t = {0};
	char *form = NULL;
	int64_t ahead;
	int r;

	*out = NULL;
	if (err != NULL)
		memset(err, 0, sizeof(*err));
	if (c == NULL)
		return CUBEID_ERR_INVALID_ARG;
	now = now ? now : (int64_t)oidc_now();
	pthread_mutex_lock(&c->lock);
	if (c->cached != NULL) {
		/* refresh_ahead, but at most half the token's life */
		ahead = c->refresh_ahead;
		if (ahead > (c->cached_exp - c->cached_at) / 2)
			ahead = (c->cached_exp - c->cached_at) / 2;
		if (now < c->cached_exp - ahead && now >= c->cached_at) {
			r = (*out = strdup(c->cached)) == NULL ? CUBEID_ERR_NOMEM : CUBEID_OK;
			goto out;
		}
	}
	if ((r = oidc_form_add(&form, "grant_type", "client_credentials")) != CUBEID_OK ||
	    (r = add_client_auth(c, now, &form)) != CUBEID_OK)
		goto out;
	c->fetches++;
	if ((r = post(c, form, now, &t)) != CUBEID_OK)
		goto out;
	if ((*out = strdup(t.access_token)) == NULL) {
		r = CUBEID_ERR_NOMEM;
		goto out;
	}
	free_secret(c->cached);
	c->cached = NULL;
	if (t.expires_at > now) {
		c->cached = t.access_token;
		t.access_token = NULL;
		c->cached_exp = t.expires_at;
		c->cached_at = now;
	}
out:
	pthread_mutex_unlock(&c->lock);
	if (form != NULL)
		free(form);
	if (r != CUBEID_OK && err != NULL) {
		*err = t;
		memset(&t, 0, sizeof(t));
	}
	cubeid_oidc_token_clear(&t);
	return r;
}

unsigned long
cubeid_oidc_client_fetches(const cubeid_oidc_client *c)
{
	unsigned long n;

	pthread_mutex_lock((pthread_mutex_t *)&c->lock);
	n = c->fetches;
	pthread_mutex_unlock((pthread_mutex_t *)&c->lock);
	return n;
}

int
cubeid_oidc_client_exchange(cubeid_oidc_client *c, const char *subject_token, const char *audience,
                            const char *requested_token_type, int64_t now,
                            struct cubeid_oidc_token *t)
{
	char *form = NULL;
	int r;

	if (t == NULL)
		return CUBEID_ERR_INVALID_ARG;
	memset(t, 0, sizeof(*t));
	if (c == NULL || subject_token == NULL || subject_token[0] == '\0')
		return CUBEID_ERR_INVALID_ARG;
	now = now ? now : (int64_t)oidc_now();
	if ((r = oidc_form_add(&form, "grant_type", CUBEID_OIDC_GRANT_TOKEN_EXCHANGE)) !=
	            CUBEID_OK ||
	    (r = oidc_form_add(&form, "subject_token", subject_token)) != CUBEID_OK ||
	    (r = oidc_form_add(&form, "subject_token_type", CUBEID_OIDC_TOKEN_TYPE_ACCESS)) !=
	            CUBEID_OK ||
	    (audience != NULL && (r = oidc_form_add(&form, "audience", audience)) != CUBEID_OK) ||
	    (requested_token_type != NULL &&
	     (r = oidc_form_add(&form, "requested_token_type", requested_token_type)) != CUBEID_OK))
		goto out;
	pthread_mutex_lock(&c->lock);
	r = add_client_auth(c, now, &form);
	pthread_mutex_unlock(&c->lock);
	if (r != CUBEID_OK)
		goto out;
	r = post(c, form, now, t);
out:
	free(form);
	return r;
}

int
cubeid_oidc_private_key_jwt(const char *client_id, const char *aud, cubeid_sig_alg alg,
                            const char *kid, cubeid_jws_sign_fn sign, void *ctx, int64_t now,
                            unsigned ttl, char **out)
{
	uint8_t rnd[16];
	char jti[33];
	json_t *cl;
	size_t i;
	int r;

	*out = NULL;
	if (client_id == NULL || aud == NULL || sign == NULL || ttl == 0 || ttl > 3600)
		return CUBEID_ERR_INVALID_ARG;
	now = now ? now : (int64_t)oidc_now();
	if (RAND_bytes(rnd, sizeof(rnd)) != 1)
		return CUBEID_ERR_CRYPTO;
	for (i = 0; i < sizeof(rnd); i++)
		snprintf(jti + 2 * i, 3, "%02x", rnd[i]);
	cl = json_pack("{s:s, s:s, s:s, s:s, s:I, s:I}", "iss", client_id, "sub", client_id, "aud",
	               aud, "jti", jti, "iat", (json_int_t)now, "exp", (json_int_t)(now + ttl));
	if (cl == NULL)
		return CUBEID_ERR_NOMEM;
	r = cubeid_jws_encode(alg, kid, "JWT", cl, sign, ctx, out);
	json_decref(cl);
	return r;
}

int
cubeid_oidc_client_jwks(const cubeid_jwt_bundle *bundle, char **out, size_t *len)
{
	json_t *doc = NULL, *keys, *jwk = NULL;
	size_t i;
	int r;

	*out = NULL;
	if (len != NULL)
		*len = 0;
	if (bundle == NULL)
		return CUBEID_ERR_INVALID_ARG;
	if ((doc = json_object()) == NULL || (keys = json_array()) == NULL ||
	    json_object_set_new(doc, "keys", keys) != 0) {
		r = CUBEID_ERR_NOMEM;
		goto out;
	}
	for (i = 0; i < cubeid_jwt_bundle_count(bundle); i++) {
		EVP_PKEY *pk = cubeid_jwt_bundle_key_at(bundle, i);
		const char *alg;

		switch (EVP_PKEY_get_base_id(pk)) {
		case EVP_PKEY_RSA:
			alg = "RS256";
			break;
		case EVP_PKEY_EC:
			alg = EVP_PKEY_get_bits(pk) == 384   ? "ES384"
			      : EVP_PKEY_get_bits(pk) == 521 ? "ES512"
			                                     : "ES256";
			break;
		default:
			continue;
		}
		if ((r = cubeid_jwk_from_pkey(pk, cubeid_jwt_bundle_kid_at(bundle, i), "sig",
		                              &jwk)) != CUBEID_OK)
			goto out;
		if (json_object_set_new(jwk, "alg", json_string(alg)) != 0 ||
		    json_array_append_new(keys, jwk) != 0) {
			json_decref(jwk);
			r = CUBEID_ERR_NOMEM;
			goto out;
		}
	}
	if ((*out = json_dumps(doc, JSON_COMPACT)) == NULL) {
		r = CUBEID_ERR_NOMEM;
		goto out;
	}
	if (len != NULL)
		*len = strlen(*out);
	r = CUBEID_OK;
out:
	json_decref(doc);
	return r;
}
