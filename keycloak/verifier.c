/*
 * Verifying OIDC access tokens (Keycloak's) with a JWKS cache.
 *
 * The cache: one JWT bundle (kid -> key) guarded by a mutex.  It is
 * refetched every refresh_interval, and at once when a token names a kid it
 * lacks, but never more often than min_refresh_gap (so a flood of tokens
 * with random kids cannot flood the server).  When fetches fail the old
 * keys stay in use for max_stale after the last good fetch, then verifying
 * fails with CUBEID_ERR_UNAVAILABLE.  The fetch runs under the lock: other
 * verifiers wait for it rather than racing to fetch too.  The signature is
 * checked outside the lock, on a reference to the key.
 */
#include "config.h"

#include "keycloak/oidc-internal.h"

#include <cubeid/log.h>
#include <cubeid/oidc.h>

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/sha.h>

#define JWKS_TD      "oidc" /* the bundles' nominal trust domain */
#define VCACHE_SLOTS 256    /* verified tokens remembered */

/* A token whose signature verified: SHA-256 of its signing input and its
 * canonical (low-S) signature, its claims, and the key set it verified
 * against (keys_gen).  A hit skips decoding and the signature, never the
 * claim checks. */
struct vcache_ent {
	uint8_t h[SHA256_DIGEST_LENGTH];
	json_t *claims;
	uint64_t gen;
};

struct cubeid_oidc_verifier {
	char *issuer, *jwks_uri, *azp, *client_roles;
	char **auds;
	size_t n_auds;
	unsigned leeway;
	int64_t refresh_interval, min_refresh_gap, max_stale;
	long timeout_ms;

	pthread_mutex_t lock;
	cubeid_jwt_bundle *keys; /* NULL until the first good fetch */
	int64_t fetched_at;      /* last good fetch */
	int64_t attempted_at;    /* last attempt, good or not; 0 = never */
	unsigned long fetches;
	uint64_t keys_gen; /* bumped whenever the key set is replaced */
	struct vcache_ent cache[VCACHE_SLOTS];
	unsigned long cache_hits;
};

struct cubeid_oidc_claims {
	json_t *json;
	const char *sub, *azp;
	const char **roles;
	size_t n_roles;
};

static void
vcache_clear_locked(cubeid_oidc_verifier *v)
{
	size_t i;

	for (i = 0; i < VCACHE_SLOTS; i++) {
		json_decref(v->cache[i].claims);
		v->cache[i].claims = NULL;
	}
}

void
cubeid_oidc_verifier_free(cubeid_oidc_verifier *v)
{
	size_t i;

	if (v == NULL)
		return;
	free(v->issuer);
	free(v->jwks_uri);
	free(v->azp);
	free(v->client_roles);
	for (i = 0; i < v->n_auds; i++)
		free(v->auds[i]);
	free(v->auds);
	cubeid_jwt_bundle_free(v->keys);
	vcache_clear_locked(v);
	pthread_mutex_destroy(&v->lock);
	free(v);
}

static int
dup_opt(const char *s, char **out)
{
	*out = NULL;
	if (s == NULL)
		return CUBEID_OK;
	return (*out = strdup(s)) == NULL ? CUBEID_ERR_NOMEM : CUBEID_OK;
}

int
cubeid_oidc_verifier_new(const struct cubeid_oidc_verifier_opts *opts, cubeid_oidc_verifier **out)
{
	cubeid_oidc_verifier *v;
	size_t i;

	*out = NULL;
	if (opts == NULL || opts->issuer == NULL || !oidc_url_ok(opts->issuer) ||
	    (opts->jwks_uri != NULL && !oidc_url_ok(opts->jwks_uri)) ||
	    (opts->n_audiences > 0 && opts->audiences == NULL) || opts->refresh_interval < 0 ||
	    opts->min_refresh_gap < 0 || opts->max_stale < 0)
		return CUBEID_ERR_INVALID_ARG;
	if ((v = calloc(1, sizeof(*v))) == NULL)
		return CUBEID_ERR_NOMEM;
	pthread_mutex_init(&v->lock, NULL);
	v->leeway = opts->leeway ? opts->leeway : 60;
	v->refresh_interval = opts->refresh_interval ? opts->refresh_interval : 300;
	v->min_refresh_gap = opts->min_refresh_gap ? opts->min_refresh_gap : 10;
	v->max_stale = opts->max_stale ? opts->max_stale : 3600;
	v->timeout_ms = opts->http_timeout_ms ? opts->http_timeout_ms : 10000;
	if (dup_opt(opts->issuer, &v->issuer) != CUBEID_OK ||
	    dup_opt(opts->jwks_uri, &v->jwks_uri) != CUBEID_OK ||
	    dup_opt(opts->azp, &v->azp) != CUBEID_OK ||
	    dup_opt(opts->client_roles, &v->client_roles) != CUBEID_OK)
		goto nomem;
	if (opts->n_audiences > 0) {
		if ((v->auds = calloc(opts->n_audiences, sizeof(char *))) == NULL)
			goto nomem;
		for (i = 0; i < opts->n_audiences; i++, v->n_auds++)
			if (opts->audiences[i] == NULL ||
			    (v->auds[i] = strdup(opts->audiences[i])) == NULL)
				goto nomem;
	}
	*out = v;
	return CUBEID_OK;
nomem:
	cubeid_oidc_verifier_free(v);
	return CUBEID_ERR_NOMEM;
}

static int
install_jwks_locked(cubeid_oidc_verifier *v, const char *json, size_t len, int64_t now)
{
	cubeid_jwt_bundle *b = NULL;
	int r;

	if ((r = cubeid_jwt_bundle_parse_jwks(JWKS_TD, json, len, &b)) != CUBEID_OK)
		return r;
	cubeid_jwt_bundle_free(v->keys);
	v->keys = b;
	v->fetched_at = now;
	v->keys_gen++;
	vcache_clear_locked(v); /* a removed key takes its tokens with it */
	return CUBEID_OK;
}

static int
fetch_locked(cubeid_oidc_verifier *v, int64_t now)
{
	struct oidc_http_reply rep;
	cubeid_oidc_discovery *d = NULL;
	int r;

	v->attempted_at = now;
	v->fetches++;
	if (v->jwks_uri == NULL) {
		if ((r = cubeid_oidc_discover(v->issuer, &d)) != CUBEID_OK) {
			cubeid_log(CUBEID_LOG_WARNING, "oidc: discovery for %s failed: %s",
			           v->issuer, cubeid_strerror(r));
			return r;
		}
		v->jwks_uri = d->jwks_uri;
		d->jwks_uri = NULL;
		cubeid_oidc_discovery_free(d);
	}
	if ((r = oidc_http(v->jwks_uri, NULL, CUBEID_JWKS_MAX, v->timeout_ms, &rep)) != CUBEID_OK)
		return r;
	if (rep.status != 200) {
		cubeid_log(CUBEID_LOG_WARNING, "oidc: GET %s: HTTP %ld", v->jwks_uri, rep.status);
		r = CUBEID_ERR_HTTP_STATUS;
	} else if ((r = install_jwks_locked(v, rep.body, rep.len, now)) != CUBEID_OK) {
		cubeid_log(CUBEID_LOG_WARNING, "oidc: JWKS from %s refused: %s", v->jwks_uri,
		           cubeid_strerror(r));
	}
	oidc_http_reply_clear(&rep);
	return r;
}

static int64_t
now_or(int64_t now)
{
	return now ? now : (int64_t)oidc_now();
}

int
cubeid_oidc_verifier_refresh(cubeid_oidc_verifier *v, int64_t now)
{
	int r;

	if (v == NULL)
		return CUBEID_ERR_INVALID_ARG;
	pthread_mutex_lock(&v->lock);
	r = fetch_locked(v, now_or(now));
	pthread_mutex_unlock(&v->lock);
	return r;
}

int
cubeid_oidc_verifier_set_jwks(cubeid_oidc_verifier *v, const char *json, size_t len, int64_t now)
{
	int r;

	if (v == NULL || json == NULL)
		return CUBEID_ERR_INVALID_ARG;
	pthread_mutex_lock(&v->lock);
	r = install_jwks_locked(v, json, len, now_or(now));
	if (r == CUBEID_OK)
		v->attempted_at = v->fetched_at;
	pthread_mutex_unlock(&v->lock);
	return r;
}

unsigned long
cubeid_oidc_verifier_fetches(const cubeid_oidc_verifier *v)
{
	unsigned long n;

	pthread_mutex_lock((pthread_mutex_t *)&v->lock);
	n = v->fetches;
	pthread_mutex_unlock((pthread_mutex_t *)&v->lock);
	return n;
}

size_t
cubeid_oidc_verifier_key_count(const cubeid_oidc_verifier *v)
{
	size_t n;

	pthread_mutex_lock((pthread_mutex_t *)&v->lock);
	n = v->keys ? cubeid_jwt_bundle_count(v->keys) : 0;
	pthread_mutex_unlock((pthread_mutex_t *)&v->lock);
	return n;
}

unsigned long
cubeid_oidc_verifier_cache_hits(const cubeid_oidc_verifier *v)
{
	unsigned long n;

	pthread_mutex_lock((pthread_mutex_t *)&v->lock);
	n = v->cache_hits;
	pthread_mutex_unlock((pthread_mutex_t *)&v->lock);
	return n;
}

static bool
may_fetch_locked(const cubeid_oidc_verifier *v, int64_t now)
{
	return v->attempted_at == 0 || now - v->attempted_at >= v->min_refresh_gap ||
	       now < v->attempted_at;
}

/* Periodic refresh, then: are there keys young enough to use? */
static int
keys_usable_locked(cubeid_oidc_verifier *v, int64_t now)
{
	if (may_fetch_locked(v, now) &&
	    (v->keys == NULL || now - v->fetched_at >= v->refresh_interval))
		(void)fetch_locked(v, now);
	if (v->keys == NULL)
		return CUBEID_ERR_UNAVAILABLE;
	if (now - v->fetched_at > v->max_stale) {
		cubeid_log(CUBEID_LOG_WARNING,
		           "oidc: keys for %s are %lld s old (limit %lld): refusing tokens",
		           v->issuer, (long long)(now - v->fetched_at), (long long)v->max_stale);
		return CUBEID_ERR_UNAVAILABLE;
	}
	return CUBEID_OK;
}

/* The key for kid, refreshing as the rules above say; a new reference, and
 * the key set's generation in *gen. */
static int
key_for(cubeid_oidc_verifier *v, const char *kid, int64_t now, EVP_PKEY **out, uint64_t *gen)
{
	EVP_PKEY *pk = NULL;
	int r;

	*out = NULL;
	pthread_mutex_lock(&v->lock);
	if ((r = keys_usable_locked(v, now)) != CUBEID_OK)
		goto out;
	pk = cubeid_jwt_bundle_find(v->keys, kid);
	/* An unknown kid: the server may have rotated; fetch if allowed. */
	if (pk == NULL && may_fetch_locked(v, now) && fetch_locked(v, now) == CUBEID_OK)
		pk = cubeid_jwt_bundle_find(v->keys, kid);
	if (pk == NULL) {
		r = CUBEID_ERR_JWT_KID;
		goto out;
	}
	EVP_PKEY_up_ref(pk);
	*out = pk;
	*gen = v->keys_gen;
	r = CUBEID_OK;
out:
	pthread_mutex_unlock(&v->lock);
	return r;
}

void
cubeid_oidc_claims_free(cubeid_oidc_claims *c)
{
	if (c == NULL)
		return;
	free(c->roles);
	json_decref(c->json);
	free(c);
}

const char *
cubeid_oidc_claims_sub(const cubeid_oidc_claims *c)
{
	return c ? c->sub : NULL;
}

const char *
cubeid_oidc_claims_azp(const cubeid_oidc_claims *c)
{
	return c ? c->azp : NULL;
}

json_t *
cubeid_oidc_claims_json(const cubeid_oidc_claims *c)
{
	return c ? c->json : NULL;
}

size_t
cubeid_oidc_claims_role_count(const cubeid_oidc_claims *c)
{
	return c ? c->n_roles : 0;
}

const char *
cubeid_oidc_claims_role_at(const cubeid_oidc_claims *c, size_t i)
{
	return c && i < c->n_roles ? c->roles[i] : NULL;
}

bool
cubeid_oidc_claims_has_role(const cubeid_oidc_claims *c, const char *role)
{
	size_t i;

	if (c == NULL || role == NULL)
		return false;
	for (i = 0; i < c->n_roles; i++)
		if (strcmp(c->roles[i], role) == 0)
			return true;
	return false;
}

/* Append the strings of o.roles (if an array) to c->roles. */
static int
add_roles(cubeid_oidc_claims *c, json_t *o)
{
	json_t *arr = json_object_get(o, "roles"), *e;
	size_t i;

	if (o == NULL)
		return CUBEID_OK;
	if (!json_is_object(o) || (arr != NULL && !json_is_array(arr)))
		return CUBEID_ERR_JWT_CLAIM;
	json_array_foreach(arr, i, e)
	{
		const char *s = json_string_value(e);
		const char **nr;

		if (s == NULL)
			return CUBEID_ERR_JWT_CLAIM;
		if (c->n_roles >= CUBEID_OIDC_ROLES_MAX)
			return CUBEID_ERR_TOO_LARGE;
		if ((nr = realloc(c->roles, (c->n_roles + 1) * sizeof(*nr))) == NULL)
			return CUBEID_ERR_NOMEM;
		c->roles = nr;
		c->roles[c->n_roles++] = s;
	}
	return CUBEID_OK;
}

/* exp/nbf/iat: a JSON number (integer or real). */
static int
time_claim(json_t *claims, const char *name, bool required, int64_t *t)
{
	json_t *j = json_object_get(claims, name);

	*t = 0;
	if (j == NULL)
		return required ? CUBEID_ERR_JWT_CLAIM : CUBEID_OK;
	if (json_is_integer(j))
		*t = (int64_t)json_integer_value(j);
	else if (json_is_real(j) && json_real_value(j) > -1e15 && json_real_value(j) < 1e15)
		*t = (int64_t)json_real_value(j);
	else
		return CUBEID_ERR_JWT_CLAIM;
	return CUBEID_OK;
}

static bool
aud_ok(const cubeid_oidc_verifier *v, json_t *aud)
{
	size_t i, j;
	json_t *e;

	if (v->n_auds == 0)
		return true;
	for (i = 0; i < v->n_auds; i++) {
		if (json_is_string(aud) && strcmp(json_string_value(aud), v->auds[i]) == 0)
			return true;
		if (json_is_array(aud))
			json_array_foreach(aud, j, e) if (json_is_string(e) &&
			                                  strcmp(json_string_value(e),
			                                         v->auds[i]) == 0) return true;
	}
	return false;
}

/*
 * Whether a > b + slack, without computing b + slack: a token's times are
 * attacker-chosen and may sit at either end of int64_t.
 */
static bool
later_than(int64_t a, int64_t b, unsigned slack)
{
	return a > b && (uint64_t)a - (uint64_t)b > slack;
}

/* The claim checks, on a hit as on a miss; a new claims object in *out. */
static int
check_claims(const cubeid_oidc_verifier *v, json_t *cl, int64_t now, cubeid_oidc_claims **out)
{
	cubeid_oidc_claims *c = NULL;
	const char *iss, *sub, *azp;
	int64_t exp, nbf, iat;
	json_t *ra;
	int r;

	*out = NULL;
	iss = json_string_value(json_object_get(cl, "iss"));
	if (iss == NULL || strcmp(iss, v->issuer) != 0)
		return CUBEID_ERR_JWT_ISSUER;
	if ((r = time_claim(cl, "exp", true, &exp)) != CUBEID_OK ||
	    (r = time_claim(cl, "nbf", false, &nbf)) != CUBEID_OK ||
	    (r = time_claim(cl, "iat", false, &iat)) != CUBEID_OK)
		return r;
	/* now >= exp + leeway, without the sum */
	if (now >= exp && (uint64_t)now - (uint64_t)exp >= v->leeway)
		return CUBEID_ERR_JWT_EXPIRED;
	if (later_than(nbf, now, v->leeway) || later_than(iat, now, v->leeway))
		return CUBEID_ERR_JWT_NOT_YET;
	if (!aud_ok(v, json_object_get(cl, "aud")))
		return CUBEID_ERR_JWT_AUDIENCE;
	azp = json_string_value(json_object_get(cl, "azp"));
	if (v->azp != NULL && (azp == NULL || strcmp(azp, v->azp) != 0))
		return CUBEID_ERR_JWT_CLAIM;
	sub = json_string_value(json_object_get(cl, "sub"));
	if (sub == NULL || sub[0] == '\0')
		return CUBEID_ERR_JWT_CLAIM;
	if ((c = calloc(1, sizeof(*c))) == NULL)
		return CUBEID_ERR_NOMEM;
	c->json = json_incref(cl);
	c->sub = sub;
	c->azp = azp;
	if ((r = add_roles(c, json_object_get(cl, "realm_access"))) != CUBEID_OK)
		goto out;
	if (v->client_roles != NULL) {
		ra = json_object_get(cl, "resource_access");
		if (ra != NULL && !json_is_object(ra)) {
			r = CUBEID_ERR_JWT_CLAIM;
			goto out;
		}
		if ((r = add_roles(c, json_object_get(ra, v->client_roles))) != CUBEID_OK)
			goto out;
	}
	*out = c;
	c = NULL;
	r = CUBEID_OK;
out:
	cubeid_oidc_claims_free(c);
	return r;
}

/*
 * The cache key: SHA-256 over "header.claims" and the signature, with an
 * ECDSA signature's s made low.  Keycloak signs with Java's ECDSA, which
 * leaves s high half of the time, so both forms verify (see below); keyed
 * on the token's bytes, the twin (r, n - s) of a remembered token would be
 * a second entry.  The signature length says the curve (RSA signatures are
 * 256 bytes or more); a token whose signature does not decode gets the
 * hash of its bytes, and can never have been remembered.
 */
static void
cache_key(const char *token, size_t len, uint8_t h[SHA256_DIGEST_LENGTH])
{
	const char *dot = memrchr(token, '.', len);
	uint8_t sig[CUBEID_JWS_SIG_MAX];
	size_t n = 0, in_len;
	cubeid_sig_alg alg;
	EVP_MD_CTX *c = NULL;

	in_len = dot != NULL ? (size_t)(dot - token) : len;
	if (dot == NULL ||
	    cubeid_b64url_decode(dot + 1, len - in_len - 1, sig, sizeof(sig), &n) != CUBEID_OK) {
		SHA256((const uint8_t *)token, len, h);
		return;
	}
	alg = n == 64    ? CUBEID_SIG_ECDSA_SHA256
	      : n == 96  ? CUBEID_SIG_ECDSA_SHA384
	      : n == 132 ? CUBEID_SIG_ECDSA_SHA512
	                 : CUBEID_SIG_NONE;
	if (alg != CUBEID_SIG_NONE)
		(void)cubeid_jws_ecdsa_low_s(alg, sig, n);
	if ((c = EVP_MD_CTX_new()) == NULL || EVP_DigestInit_ex(c, EVP_sha256(), NULL) != 1 ||
	    EVP_DigestUpdate(c, token, in_len) != 1 || EVP_DigestUpdate(c, ".", 1) != 1 ||
	    EVP_DigestUpdate(c, sig, n) != 1 || EVP_DigestFinal_ex(c, h, NULL) != 1)
		SHA256((const uint8_t *)token, len, h); /* no memory: as before */
	EVP_MD_CTX_free(c);
}

int
cubeid_oidc_verify(cubeid_oidc_verifier *v, const char *token, size_t len, int64_t now,
                   cubeid_oidc_claims **out)
{
	uint8_t h[SHA256_DIGEST_LENGTH];
	struct vcache_ent *slot;
	cubeid_oidc_claims *c = NULL;
	cubeid_jws *jws = NULL;
	EVP_PKEY *pk = NULL;
	json_t *cl = NULL;
	const char *kid;
	uint64_t gen = 0;
	bool hit = false;
	int r;

	if (out != NULL)
		*out = NULL;
	if (v == NULL || token == NULL)
		return CUBEID_ERR_INVALID_ARG;
	if (len > CUBEID_JWT_MAX)
		return CUBEID_ERR_TOO_LARGE;
	now = now_or(now);
	cache_key(token, len, h);
	slot = &v->cache[(h[0] | (unsigned)h[1] << 8) % VCACHE_SLOTS];
	pthread_mutex_lock(&v->lock);
	r = keys_usable_locked(v, now);
	if (r == CUBEID_OK && slot->claims != NULL && slot->gen == v->keys_gen &&
	    memcmp(slot->h, h, sizeof(h)) == 0) {
		cl = json_incref(slot->claims);
		v->cache_hits++;
		hit = true;
	}
	pthread_mutex_unlock(&v->lock);
	if (r != CUBEID_OK)
		return r;
	if (!hit) {
		if ((r = cubeid_jws_decode(token, len, &jws)) != CUBEID_OK)
			goto out;
		if ((kid = cubeid_jws_kid(jws)) == NULL) {
			r = CUBEID_ERR_JWT_KID;
			goto out;
		}
		if ((r = key_for(v, kid, now, &pk, &gen)) != CUBEID_OK)
			goto out;
		/* Keycloak's ECDSA signatures may be high-S: see cache_key() */
		if ((r = cubeid_jws_verify_flags(jws, pk, CUBEID_JWS_ALLOW_HIGH_S)) != CUBEID_OK)
			goto out;
		cl = json_incref(cubeid_jws_claims(jws));
	}
	if ((r = check_claims(v, cl, now, &c)) != CUBEID_OK)
		goto out;
	if (!hit) {
		/* remember it, unless the key set changed meanwhile */
		pthread_mutex_lock(&v->lock);
		if (gen == v->keys_gen) {
			json_decref(slot->claims);
			memcpy(slot->h, h, sizeof(h));
			slot->claims = json_incref(cl);
			slot->gen = gen;
		}
		pthread_mutex_unlock(&v->lock);
	}
	if (out != NULL) {
		*out = c;
		c = NULL;
	}
	r = CUBEID_OK;
out:
	cubeid_oidc_claims_free(c);
	json_decref(cl);
	EVP_PKEY_free(pk);
	cubeid_jws_free(jws);
	return r;
}
