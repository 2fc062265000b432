/*
 * JWT-SVID signing keys with rollover: STATE-DIR/jwt.conf, the signer and
 * the published set at a given time, rotation, pruning, the JWT and SPIFFE
 * bundles they make, and minting with the signer.  See <cubeid/jwt-keys.h>.
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/x509.h>

#include <cubeid/ca.h>
#include <cubeid/jwt-keys.h>
#include <cubeid/log.h>

#define JWT_CONF_MAX     (64 * 1024)
#define JWT_CONF_VERSION "1"
#define KID_MAX          64
#define SPKI_MAX         2048 /* bytes of DER: RSA-8192 fits */
#define TTL_LIMIT        (7LL * 24 * 3600)

struct jkey {
	char *kid;
	cubeid_key_type type;
	char *uri;
	EVP_PKEY *pub;
	int64_t created_at, publish_from, active_from, retire_after;
	/* The token key, found on first use and kept: finding it again per
	 * mint made SoftHSM2 re-read its token files (~2 ms a mint, see
	 * bench/workload-api).  Set once with a CAS; freed with the set. */
	cubeid_key *key;
};

struct cubeid_jwt_keys {
	char *td;
	int64_t max_ttl, refresh_hint;
	uint64_t sequence;
	char digest[2 * 32 + 1]; /* hex SHA-256 of the content last numbered */
	struct jkey keys[CUBEID_JWT_KEYS_MAX];
	size_t n;
};

static int64_t
clock_now(int64_t now)
{
	return now != 0 ? now : (int64_t)time(NULL);
}

static void
jkey_clear(struct jkey *j)
{
	free(j->kid);
	free(j->uri);
	EVP_PKEY_free(j->pub);
	cubeid_key_free(j->key);
	memset(j, 0, sizeof(*j));
}

void
cubeid_jwt_keys_free(cubeid_jwt_keys *k)
{
	size_t i;

	if (k == NULL)
		return;
	for (i = 0; i < k->n; i++)
		jkey_clear(&k->keys[i]);
	free(k->td);
	free(k);
}

static int
keys_new(const char *td, cubeid_jwt_keys **out)
{
	cubeid_jwt_keys *k;

	*out = NULL;
	if (td == NULL || cubeid_trust_domain_validate(td, strlen(td), NULL) != CUBEID_OK)
		return CUBEID_ERR_INVALID_ARG;
	if ((k = calloc(1, sizeof(*k))) == NULL || (k->td = strdup(td)) == NULL) {
		free(k);
		return CUBEID_ERR_NOMEM;
	}
	k->max_ttl = CUBEID_JWT_MAX_TTL_DEFAULT;
	k->refresh_hint = CUBEID_JWT_REFRESH_HINT_DEFAULT;
	*out = k;
	return CUBEID_OK;
}

/* ---- jwt.conf -------------------------------------------------------- */

static int
parse_i64(const char *s, int64_t min, int64_t max, int64_t *out)
{
	char *end;
	long long v;

	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || v < min || v > max)
		return CUBEID_ERR_CONFIG;
	*out = v;
	return CUBEID_OK;
}

static bool
kid_ok(const char *kid)
{
	size_t i, n = strlen(kid);

	if (n == 0 || n > KID_MAX)
		return false;
	for (i = 0; i < n; i++)
		if (!((kid[i] >= 'a' && kid[i] <= 'z') || (kid[i] >= 'A' && kid[i] <= 'Z') ||
		      (kid[i] >= '0' && kid[i] <= '9') || kid[i] == '-' || kid[i] == '_'))
			return false;
	return true;
}

static int
spki_decode(const char *b64, EVP_PKEY **out)
{
	uint8_t *der = NULL;
	const unsigned char *p;
	size_t len = 0;
	int rc;

	*out = NULL;
	if (strlen(b64) > 2 * SPKI_MAX)
		return CUBEID_ERR_CONFIG;
	if ((rc = cubeid_b64url_decode_alloc(b64, strlen(b64), &der, &len)) != CUBEID_OK)
		return CUBEID_ERR_CONFIG;
	p = der;
	*out = d2i_PUBKEY(NULL, &p, (long)len);
	rc = *out != NULL && p == der + len ? CUBEID_OK : CUBEID_ERR_CONFIG;
	if (rc != CUBEID_OK) {
		EVP_PKEY_free(*out);
		*out = NULL;
	}
	free(der);
	return rc;
}

static int
spki_encode(EVP_PKEY *pk, char **out)
{
	unsigned char *der = NULL;
	int n, rc;

	*out = NULL;
	if ((n = i2d_PUBKEY(pk, &der)) <= 0)
		return CUBEID_ERR_CRYPTO;
	rc = cubeid_b64url_encode_alloc(der, (size_t)n, out);
	OPENSSL_free(der);
	return rc;
}

/* "KID TYPE CREATED PUBLISH ACTIVE RETIRE SPKI URI" */
static int
parse_key_line(char *line, struct jkey *j)
{
	char *f[8], *save = NULL, *tok;
	char kid[CUBEID_KID_LEN + 1];
	size_t n = 0;
	int rc;

	memset(j, 0, sizeof(*j));
	for (tok = strtok_r(line, " ", &save); tok != NULL; tok = strtok_r(NULL, " ", &save)) {
		if (n == 8)
			return CUBEID_ERR_CONFIG;
		f[n++] = tok;
	}
	if (n != 8 || !kid_ok(f[0]) || strncmp(f[7], "pkcs11:", 7) != 0)
		return CUBEID_ERR_CONFIG;
	if ((j->type = cubeid_key_type_from_name(f[1])) == CUBEID_KEY_NONE)
		return CUBEID_ERR_CONFIG;
	if ((rc = parse_i64(f[2], 0, INT64_MAX / 2, &j->created_at)) != CUBEID_OK ||
	    (rc = parse_i64(f[3], 0, INT64_MAX / 2, &j->publish_from)) != CUBEID_OK ||
	    (rc = parse_i64(f[4], 0, INT64_MAX / 2, &j->active_from)) != CUBEID_OK ||
	    (rc = parse_i64(f[5], 0, INT64_MAX / 2, &j->retire_after)) != CUBEID_OK)
		return rc;
	if ((rc = spki_decode(f[6], &j->pub)) != CUBEID_OK)
		return rc;
	/* the kid names this public key, nothing else */
	if (cubeid_kid_from_pkey(j->pub, kid) != CUBEID_OK || strcmp(kid, f[0]) != 0) {
		rc = CUBEID_ERR_CONFIG;
		goto fail;
	}
	if ((j->kid = strdup(f[0])) == NULL || (j->uri = strdup(f[7])) == NULL) {
		rc = CUBEID_ERR_NOMEM;
		goto fail;
	}
	return CUBEID_OK;
fail:
	jkey_clear(j);
	return rc;
}

int
cubeid_jwt_keys_load(const char *state_dir, cubeid_jwt_keys **out)
{
	cubeid_jwt_keys *k = NULL;
	char *path = NULL, *buf = NULL, *line, *save = NULL, *td = NULL;
	int64_t v;
	bool version = false;
	size_t i, j;
	int rc;

	if (out != NULL)
		*out = NULL;
	if (out == NULL)
		return CUBEID_ERR_INVALID_ARG;
	state_dir = cubeid_state_dir(state_dir);
	if (asprintf(&path, "%s/%s", state_dir, CUBEID_JWT_CONF) < 0)
		return CUBEID_ERR_NOMEM;
	if ((rc = cubeid_read_file(path, JWT_CONF_MAX, &buf, NULL)) != CUBEID_OK)
		goto out;
	if ((k = calloc(1, sizeof(*k))) == NULL) {
		rc = CUBEID_ERR_NOMEM;
		goto out;
	}
	k->max_ttl = -1;
	k->refresh_hint = -1;
	rc = CUBEID_ERR_CONFIG;
	for (line = strtok_r(buf, "\n", &save); line != NULL; line = strtok_r(NULL, "\n", &save)) {
		char *eq;

		if (line[0] == '#' || line[0] == '\0')
			continue;
		if ((eq = strchr(line, '=')) == NULL)
			goto out;
		*eq++ = '\0';
		if (strcmp(line, "version") == 0) {
			if (strcmp(eq, JWT_CONF_VERSION) != 0)
				goto out;
			version = true;
		} else if (strcmp(line, "trust_domain") == 0) {
			if (td != NULL || cubeid_trust_domain_validate(eq, strlen(eq), NULL) != 0)
				goto out;
			td = eq;
		} else if (strcmp(line, "max_ttl") == 0) {
			if (k->max_ttl >= 0 || parse_i64(eq, 1, TTL_LIMIT, &k->max_ttl) != 0)
				goto out;
		} else if (strcmp(line, "refresh_hint") == 0) {
			if (k->refresh_hint >= 0 ||
			    parse_i64(eq, 1, TTL_LIMIT, &k->refresh_hint) != 0)
				goto out;
		} else if (strcmp(line, "sequence") == 0) {
			if (parse_i64(eq, 0, INT64_MAX, &v) != 0)
				goto out;
			k->sequence = (uint64_t)v;
		} else if (strcmp(line, "bundle_digest") == 0) {
			if (strlen(eq) >= sizeof(k->digest))
				goto out;
			snprintf(k->digest, sizeof(k->digest), "%s", eq);
		} else if (strcmp(line, "key") == 0) {
			if (k->n >= CUBEID_JWT_KEYS_MAX) {
				rc = CUBEID_ERR_TOO_LARGE;
				goto out;
			}
			if ((rc = parse_key_line(eq, &k->keys[k->n])) != CUBEID_OK)
				goto out;
			k->n++;
			rc = CUBEID_ERR_CONFIG;
		} else {
			goto out;
		}
	}
	if (!version || td == NULL || k->max_ttl < 0 || k->refresh_hint < 0)
		goto out;
	for (i = 0; i < k->n; i++)
		for (j = i + 1; j < k->n; j++)
			if (strcmp(k->keys[i].kid, k->keys[j].kid) == 0)
				goto out;
	if ((k->td = strdup(td)) == NULL) {
		rc = CUBEID_ERR_NOMEM;
		goto out;
	}
	*out = k;
	k = NULL;
	rc = CUBEID_OK;
out:
	if (rc == CUBEID_ERR_CONFIG || rc == CUBEID_ERR_TOO_LARGE)
		cubeid_error("%s is malformed", path);
	cubeid_jwt_keys_free(k);
	free(path);
	free(buf);
	return rc;
}

int
cubeid_jwt_keys_save(const cubeid_jwt_keys *k, const char *state_dir)
{
	char *path = NULL, *text = NULL, *spki = NULL;
	size_t len = 0, i;
	FILE *f = NULL;
	int rc;

	if (k == NULL)
		return CUBEID_ERR_INVALID_ARG;
	state_dir = cubeid_state_dir(state_dir);
	if ((rc = cubeid_state_dir_prepare(state_dir)) != CUBEID_OK)
		return rc;
	if ((f = open_memstream(&text, &len)) == NULL)
		return CUBEID_ERR_NOMEM;
	fprintf(f,
	        "# cubeid JWT-SVID signing keys (written by cubeid)\n"
	        "# key=KID TYPE CREATED PUBLISH_FROM ACTIVE_FROM RETIRE_AFTER SPKI URI\n"
	        "version=" JWT_CONF_VERSION "\ntrust_domain=%s\nmax_ttl=%" PRId64
	        "\nrefresh_hint=%" PRId64 "\nsequence=%" PRIu64 "\nbundle_digest=%s\n",
	        k->td, k->max_ttl, k->refresh_hint, k->sequence, k->digest);
	for (i = 0; i < k->n; i++) {
		const struct jkey *j = &k->keys[i];

		if (strchr(j->uri, ' ') != NULL || strchr(j->uri, '\n') != NULL) {
			rc = CUBEID_ERR_INVALID_ARG;
			goto out;
		}
		if ((rc = spki_encode(j->pub, &spki)) != CUBEID_OK)
			goto out;
		fprintf(f, "key=%s %s %" PRId64 " %" PRId64 " %" PRId64 " %" PRId64 " %s %s\n",
		        j->kid, cubeid_key_type_name(j->type), j->created_at, j->publish_from,
		        j->active_from, j->retire_after, spki, j->uri);
		free(spki);
		spki = NULL;
	}
	if (fclose(f) != 0) {
		f = NULL;
		rc = CUBEID_ERR_NOMEM;
		goto out;
	}
	f = NULL;
	if (asprintf(&path, "%s/%s", state_dir, CUBEID_JWT_CONF) < 0) {
		path = NULL;
		rc = CUBEID_ERR_NOMEM;
		goto out;
	}
	rc = cubeid_atomic_write(path, text, len, 0600);
out:
	if (f != NULL)
		fclose(f);
	free(spki);
	free(text);
	free(path);
	return rc;
}

/* ---- the keys at a time ---------------------------------------------- */

static bool
retired(const struct jkey *j, int64_t now)
{
	return j->retire_after != 0 && now >= j->retire_after;
}

bool
cubeid_jwt_keys_published(const cubeid_jwt_keys *k, size_t i, int64_t now)
{
	now = clock_now(now);
	return k != NULL && i < k->n && k->keys[i].publish_from <= now &&
	       !retired(&k->keys[i], now);
}

/* The signer's index at now, or -1. */
static ssize_t
signer_index(const cubeid_jwt_keys *k, int64_t now)
{
	ssize_t best = -1;
	size_t i;

	for (i = 0; i < k->n; i++) {
		const struct jkey *j = &k->keys[i];

		if (j->active_from > now || retired(j, now))
			continue;
		if (best < 0 || j->active_from >= k->keys[best].active_from)
			best = (ssize_t)i;
	}
	return best;
}

bool
cubeid_jwt_keys_active(const cubeid_jwt_keys *k, size_t i, int64_t now)
{
	return k != NULL && signer_index(k, clock_now(now)) == (ssize_t)i;
}

int
cubeid_jwt_keys_at(const cubeid_jwt_keys *k, size_t i, struct cubeid_jwt_key_info *info)
{
	const struct jkey *j;

	if (info != NULL)
		memset(info, 0, sizeof(*info));
	if (k == NULL || info == NULL)
		return CUBEID_ERR_INVALID_ARG;
	if (i >= k->n)
		return CUBEID_ERR_NOT_FOUND;
	j = &k->keys[i];
	info->kid = j->kid;
	info->type = j->type;
	info->uri = j->uri;
	info->pub = j->pub;
	info->created_at = j->created_at;
	info->publish_from = j->publish_from;
	info->active_from = j->active_from;
	info->retire_after = j->retire_after;
	return CUBEID_OK;
}

int
cubeid_jwt_keys_signer(const cubeid_jwt_keys *k, int64_t now, struct cubeid_jwt_key_info *info)
{
	ssize_t i;

	if (info != NULL)
		memset(info, 0, sizeof(*info));
	if (k == NULL || info == NULL)
		return CUBEID_ERR_INVALID_ARG;
	if ((i = signer_index(k, clock_now(now))) < 0)
		return CUBEID_ERR_NOT_FOUND;
	return cubeid_jwt_keys_at(k, (size_t)i, info);
}

const char *
cubeid_jwt_keys_trust_domain(const cubeid_jwt_keys *k)
{
	return k != NULL ? k->td : NULL;
}

int64_t
cubeid_jwt_keys_max_ttl(const cubeid_jwt_keys *k)
{
	return k != NULL ? k->max_ttl : 0;
}

int64_t
cubeid_jwt_keys_refresh_hint(const cubeid_jwt_keys *k)
{
	return k != NULL ? k->refresh_hint : 0;
}

uint64_t
cubeid_jwt_keys_sequence(const cubeid_jwt_keys *k)
{
	return k != NULL ? k->sequence : 0;
}

size_t
cubeid_jwt_keys_count(const cubeid_jwt_keys *k)
{
	return k != NULL ? k->n : 0;
}

/* ---- rollover -------------------------------------------------------- */

static void
delete_from_token(cubeid_token *tok, const char *uri)
{
	cubeid_key *key = NULL;
	int rc;

	if (tok == NULL)
		return;
	rc = cubeid_key_find_uri(tok, uri, &key);
	if (rc == CUBEID_OK)
		rc = cubeid_key_delete(key);
	if (rc != CUBEID_OK && rc != CUBEID_ERR_NOT_FOUND)
		cubeid_warn("cannot delete retired JWT key %s: %s", uri, cubeid_strerror(rc));
	cubeid_key_free(key);
}

int
cubeid_jwt_keys_prune(cubeid_jwt_keys *k, cubeid_token *tok, int64_t now, size_t *dropped)
{
	size_t i, w = 0, d = 0;

	if (dropped != NULL)
		*dropped = 0;
	if (k == NULL)
		return CUBEID_ERR_INVALID_ARG;
	now = clock_now(now);
	for (i = 0; i < k->n; i++) {
		if (retired(&k->keys[i], now)) {
			cubeid_info("JWT key %s retired; dropping it from the bundle",
			            k->keys[i].kid);
			delete_from_token(tok, k->keys[i].uri);
			jkey_clear(&k->keys[i]);
			d++;
			continue;
		}
		if (w != i) {
			k->keys[w] = k->keys[i];
			memset(&k->keys[i], 0, sizeof(k->keys[i]));
		}
		w++;
	}
	k->n = w;
	if (dropped != NULL)
		*dropped = d;
	return CUBEID_OK;
}

static int
gen_key(cubeid_jwt_keys *k, cubeid_token *tok, const struct cubeid_jwt_keys_opts *opts, int64_t now,
        struct jkey *j)
{
	struct cubeid_keygen_opts ko = {0};
	cubeid_key *key = NULL;
	char kid[CUBEID_KID_LEN + 1], *label = NULL;
	uint8_t rnd[4];
	int rc;

	memset(j, 0, sizeof(*j));
	if (opts != NULL && opts->adopt != NULL) {
		/* a key already in the token: recorded, never deleted here */
		key = cubeid_key_ref(opts->adopt);
		ko.type = cubeid_key_get_type(key);
	} else {
		ko.type = opts != NULL && opts->key_type != CUBEID_KEY_NONE ? opts->key_type
		                                                            : CUBEID_KEY_EC_P256;
		if (cubeid_key_type_name(ko.type) == NULL)
			return CUBEID_ERR_INVALID_ARG;
		if (RAND_bytes(rnd, sizeof(rnd)) != 1)
			return CUBEID_ERR_CRYPTO;
		if (opts != NULL && opts->label != NULL)
			label = strdup(opts->label);
		else if (asprintf(&label, "cubeid-jwt-%s-%" PRId64 "-%02x%02x%02x%02x", k->td, now,
		                  rnd[0], rnd[1], rnd[2], rnd[3]) < 0)
			label = NULL;
		if (label == NULL)
			return CUBEID_ERR_NOMEM;
		ko.label = label;
		ko.persistent = true;
		ko.exportable = false;
		if ((rc = cubeid_key_generate(tok, &ko, &key)) != CUBEID_OK)
			goto out;
	}
	if ((rc = cubeid_key_public(key, &j->pub)) != CUBEID_OK ||
	    (rc = cubeid_kid_from_pkey(j->pub, kid)) != CUBEID_OK ||
	    (rc = cubeid_key_uri(key, &j->uri)) != CUBEID_OK)
		goto out;
	if ((j->kid = strdup(kid)) == NULL) {
		rc = CUBEID_ERR_NOMEM;
		goto out;
	}
	j->type = ko.type;
	j->created_at = j->publish_from = j->active_from = now;
out:
	if (rc != CUBEID_OK) {
		if (key != NULL && (opts == NULL || opts->adopt == NULL))
			cubeid_key_delete(key);
		jkey_clear(j);
	}
	cubeid_key_free(key);
	free(label);
	return rc;
}

int
cubeid_jwt_keys_rotate(cubeid_jwt_keys *k, cubeid_token *tok,
                       const struct cubeid_jwt_keys_opts *opts)
{
	struct jkey nk;
	int64_t now, pre;
	size_t i;
	bool have_signer;
	int rc;

	if (k == NULL || tok == NULL)
		return CUBEID_ERR_INVALID_ARG;
	now = clock_now(opts != NULL ? opts->now : 0);
	pre = opts != NULL ? opts->prepublish : 0;
	if (pre == 0)
		pre = k->max_ttl;
	else if (pre == CUBEID_JWT_PREPUBLISH_NONE)
		pre = 0;
	else if (pre < 0 || pre > TTL_LIMIT)
		return CUBEID_ERR_INVALID_ARG;
	if ((rc = cubeid_jwt_keys_prune(k, tok, now, NULL)) != CUBEID_OK)
		return rc;
	for (i = 0; i < k->n; i++)
		if (k->keys[i].active_from > now) {
			cubeid_error("JWT key %s is published but signs only from %" PRId64
			             " (in %" PRId64 " s): rotate after that",
			             k->keys[i].kid, k->keys[i].active_from,
			             k->keys[i].active_from - now);
			return CUBEID_ERR_EXISTS;
		}
	if (k->n >= CUBEID_JWT_KEYS_MAX)
		return CUBEID_ERR_TOO_LARGE;
	have_signer = signer_index(k, now) >= 0;
	if ((rc = gen_key(k, tok, opts, now, &nk)) != CUBEID_OK)
		return rc;
	if (have_signer)
		nk.active_from = now + pre;
	/* every key still signing stops when the new one starts, and stays
	 * published until the tokens it signed have expired */
	for (i = 0; i < k->n; i++)
		if (k->keys[i].retire_after == 0)
			k->keys[i].retire_after = nk.active_from + k->max_ttl;
	k->keys[k->n++] = nk;
	cubeid_notice("new JWT key %s (%s) published; it signs from %" PRId64 "%s", nk.kid,
	              cubeid_key_type_name(nk.type), nk.active_from,
	              nk.active_from == now ? " (now)" : "");
	return CUBEID_OK;
}

static int
opt_limit(int64_t v, int64_t def, int64_t *out)
{
	*out = v == 0 ? def : v;
	return *out >= 1 && *out <= TTL_LIMIT ? CUBEID_OK : CUBEID_ERR_INVALID_ARG;
}

int
cubeid_jwt_keys_init(cubeid_token *tok, const char *state_dir, const char *td,
                     const struct cubeid_jwt_keys_opts *opts, cubeid_jwt_keys **out)
{
	cubeid_jwt_keys *k = NULL, *old = NULL;
	int rc;

	if (out != NULL)
		*out = NULL;
	if (tok == NULL || td == NULL)
		return CUBEID_ERR_INVALID_ARG;
	rc = cubeid_jwt_keys_load(state_dir, &old);
	cubeid_jwt_keys_free(old);
	if (rc == CUBEID_OK)
		return CUBEID_ERR_EXISTS;
	if (rc != CUBEID_ERR_NOT_FOUND)
		return rc;
	if ((rc = keys_new(td, &k)) != CUBEID_OK)
		return rc;
	if ((rc = opt_limit(opts ? opts->max_ttl : 0, CUBEID_JWT_MAX_TTL_DEFAULT, &k->max_ttl)) !=
	            CUBEID_OK ||
	    (rc = opt_limit(opts ? opts->refresh_hint : 0, CUBEID_JWT_REFRESH_HINT_DEFAULT,
	                    &k->refresh_hint)) != CUBEID_OK)
		goto out;
	if ((rc = cubeid_jwt_keys_rotate(k, tok, opts)) != CUBEID_OK)
		goto out;
	if ((rc = cubeid_jwt_keys_save(k, state_dir)) != CUBEID_OK) {
		delete_from_token(tok, k->keys[0].uri);
		goto out;
	}
	if (out != NULL) {
		*out = k;
		k = NULL;
	}
out:
	cubeid_jwt_keys_free(k);
	return rc;
}

int
cubeid_jwt_keys_rotate_saved(cubeid_token *tok, const char *state_dir, const char *td,
                             const struct cubeid_jwt_keys_opts *opts, cubeid_jwt_keys **out)
{
	cubeid_jwt_keys *k = NULL;
	int rc;

	if (out != NULL)
		*out = NULL;
	if (tok == NULL)
		return CUBEID_ERR_INVALID_ARG;
	rc = cubeid_jwt_keys_load(state_dir, &k);
	if (rc == CUBEID_ERR_NOT_FOUND && td != NULL)
		return cubeid_jwt_keys_init(tok, state_dir, td, opts, out);
	if (rc != CUBEID_OK)
		return rc;
	if (td != NULL && strcmp(td, k->td) != 0) {
		rc = CUBEID_ERR_CA;
		goto out;
	}
	if ((rc = cubeid_jwt_keys_rotate(k, tok, opts)) != CUBEID_OK)
		goto out;
	if ((rc = cubeid_jwt_keys_save(k, state_dir)) != CUBEID_OK) {
		/* the new key is not recorded: do not leave it on the token */
		delete_from_token(tok, k->keys[k->n - 1].uri);
		goto out;
	}
	if (out != NULL) {
		*out = k;
		k = NULL;
	}
out:
	cubeid_jwt_keys_free(k);
	return rc;
}

/* ---- bundles --------------------------------------------------------- */

int
cubeid_jwt_keys_bundle(const cubeid_jwt_keys *k, int64_t now, cubeid_jwt_bundle **out)
{
	cubeid_jwt_bundle *b = NULL;
	size_t i;
	int rc;

	if (out != NULL)
		*out = NULL;
	if (k == NULL || out == NULL)
		return CUBEID_ERR_INVALID_ARG;
	now = clock_now(now);
	if ((rc = cubeid_jwt_bundle_new(k->td, &b)) != CUBEID_OK)
		return rc;
	for (i = 0; i < k->n; i++)
		if (cubeid_jwt_keys_published(k, i, now) &&
		    (rc = cubeid_jwt_bundle_add(b, k->keys[i].kid, k->keys[i].pub)) != CUBEID_OK) {
			cubeid_jwt_bundle_free(b);
			return rc;
		}
	*out = b;
	return CUBEID_OK;
}

static int
digest_update_str(EVP_MD_CTX *md, const char *s)
{
	/* length-prefixed, so that no two contents hash alike */
	uint64_t n = strlen(s);

	return EVP_DigestUpdate(md, &n, sizeof(n)) == 1 && EVP_DigestUpdate(md, s, n) == 1
	               ? CUBEID_OK
	               : CUBEID_ERR_CRYPTO;
}

int
cubeid_jwt_keys_spiffe_bundle(cubeid_jwt_keys *k, const cubeid_x509_bundle *x509, int64_t now,
                              cubeid_spiffe_bundle **out, bool *changed)
{
	cubeid_spiffe_bundle *sb = NULL;
	EVP_MD_CTX *md = NULL;
	uint8_t h[32];
	char hex[sizeof(k->digest)], hint[32], *spki = NULL;
	unsigned hl = 0;
	size_t i;
	int rc;

	if (out != NULL)
		*out = NULL;
	if (changed != NULL)
		*changed = false;
	if (k == NULL || out == NULL)
		return CUBEID_ERR_INVALID_ARG;
	if (x509 != NULL && strcmp(cubeid_x509_bundle_trust_domain(x509), k->td) != 0)
		return CUBEID_ERR_INVALID_ARG;
	now = clock_now(now);
	if ((rc = cubeid_spiffe_bundle_new(k->td, &sb)) != CUBEID_OK)
		return rc;
	rc = CUBEID_ERR_NOMEM;
	if ((md = EVP_MD_CTX_new()) == NULL)
		goto out;
	rc = CUBEID_ERR_CRYPTO;
	if (EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1)
		goto out;
	snprintf(hint, sizeof(hint), "%" PRId64, k->refresh_hint);
	if ((rc = digest_update_str(md, k->td)) != CUBEID_OK ||
	    (rc = digest_update_str(md, hint)) != CUBEID_OK)
		goto out;
	for (i = 0; x509 != NULL && i < cubeid_x509_bundle_count(x509); i++) {
		unsigned char *der = NULL;
		int n = i2d_X509(cubeid_x509_bundle_at(x509, i), &der);

		rc = n > 0 ? cubeid_spiffe_bundle_add_x509_der(sb, der, (size_t)n)
		           : CUBEID_ERR_X509;
		if (rc == CUBEID_OK && EVP_DigestUpdate(md, der, (size_t)n) != 1)
			rc = CUBEID_ERR_CRYPTO;
		OPENSSL_free(der);
		if (rc != CUBEID_OK)
			goto out;
	}
	for (i = 0; i < k->n; i++) {
		if (!cubeid_jwt_keys_published(k, i, now))
			continue;
		if ((rc = cubeid_jwt_bundle_add(cubeid_spiffe_bundle_jwt(sb), k->keys[i].kid,
		                                k->keys[i].pub)) != CUBEID_OK ||
		    (rc = spki_encode(k->keys[i].pub, &spki)) != CUBEID_OK ||
		    (rc = digest_update_str(md, k->keys[i].kid)) != CUBEID_OK ||
		    (rc = digest_update_str(md, spki)) != CUBEID_OK)
			goto out;
		free(spki);
		spki = NULL;
	}
	rc = CUBEID_ERR_CRYPTO;
	if (EVP_DigestFinal_ex(md, h, &hl) != 1 || hl != sizeof(h))
		goto out;
	for (i = 0; i < sizeof(h); i++)
		snprintf(hex + 2 * i, 3, "%02x", h[i]);
	if (strcmp(hex, k->digest) != 0) {
		k->sequence++;
		memcpy(k->digest, hex, sizeof(hex));
		if (changed != NULL)
			*changed = true;
	}
	cubeid_spiffe_bundle_set_sequence(sb, k->sequence);
	cubeid_spiffe_bundle_set_refresh_hint(sb, k->refresh_hint);
	*out = sb;
	sb = NULL;
	rc = CUBEID_OK;
out:
	EVP_MD_CTX_free(md);
	cubeid_spiffe_bundle_free(sb);
	free(spki);
	return rc;
}

/* ---- minting --------------------------------------------------------- */

cubeid_sig_alg
cubeid_jwt_keys_default_alg(cubeid_key_type type)
{
	switch (type) {
	case CUBEID_KEY_EC_P256:
		return CUBEID_SIG_ECDSA_SHA256;
	case CUBEID_KEY_EC_P384:
		return CUBEID_SIG_ECDSA_SHA384;
	case CUBEID_KEY_RSA_2048:
	case CUBEID_KEY_RSA_3072:
		return CUBEID_SIG_RSA_PKCS1_SHA256;
	default:
		return CUBEID_SIG_NONE;
	}
}

/* The token key of the signer named kid, as a new reference: the one kept
 * in the set when it belongs to tok, else found now (and kept if the slot
 * is free).  Thread-safe: minting runs in several workers at once. */
static int
signer_key(const cubeid_jwt_keys *k, cubeid_token *tok, const char *kid, const char *uri,
           cubeid_key **out)
{
	struct jkey *j = NULL;
	cubeid_key *key, *expected = NULL;
	size_t i;
	int rc;

	*out = NULL;
	for (i = 0; i < k->n; i++)
		if (strcmp(k->keys[i].kid, kid) == 0)
			j = (struct jkey *)&k->keys[i]; /* the cache is the only mutable part */
	if (j != NULL && (key = __atomic_load_n(&j->key, __ATOMIC_ACQUIRE)) != NULL &&
	    cubeid_key_token(key) == tok) {
		*out = cubeid_key_ref(key);
		return CUBEID_OK;
	}
	if ((rc = cubeid_key_find_uri(tok, uri, &key)) != CUBEID_OK) {
		cubeid_error("JWT key %s is not on the token: %s", uri, cubeid_strerror(rc));
		return rc;
	}
	if (j != NULL && __atomic_compare_exchange_n(&j->key, &expected, key, false,
	                                             __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
		cubeid_key_ref(key); /* one reference for the set, one for the caller */
	*out = key;
	return CUBEID_OK;
}

int
cubeid_jwt_keys_mint(const cubeid_jwt_keys *k, cubeid_token *tok, int64_t now, cubeid_sig_alg alg,
                     const cubeid_spiffe_id *sub, const char *const *aud, size_t n_aud, int64_t ttl,
                     const char *jti, char **out)
{
	struct cubeid_jwt_key_info info;
	cubeid_key *key = NULL;
	int rc;

	if (out != NULL)
		*out = NULL;
	if (k == NULL || tok == NULL || sub == NULL || aud == NULL || n_aud == 0 || out == NULL)
		return CUBEID_ERR_INVALID_ARG;
	if (ttl < 1 || ttl > k->max_ttl) {
		cubeid_error("JWT-SVID lifetime %" PRId64 " s is outside 1..%" PRId64
		             " s (the state's max_ttl)",
		             ttl, k->max_ttl);
		return CUBEID_ERR_INVALID_ARG;
	}
	if (!cubeid_spiffe_id_member_of(sub, k->td)) {
		cubeid_error("%s is not in trust domain %s", cubeid_spiffe_id_string(sub), k->td);
		return CUBEID_ERR_SPIFFE_ID;
	}
	now = clock_now(now);
	if ((rc = cubeid_jwt_keys_signer(k, now, &info)) != CUBEID_OK) {
		cubeid_error("no JWT signing key is active ('cubeid ca jwt-rotate')");
		return rc;
	}
	if (alg == CUBEID_SIG_NONE)
		alg = cubeid_jwt_keys_default_alg(info.type);
	if ((rc = cubeid_jws_key_fits(alg, info.pub)) != CUBEID_OK)
		return rc;
	if ((rc = signer_key(k, tok, info.kid, info.uri, &key)) != CUBEID_OK)
		return rc;
	rc = cubeid_jwt_svid_encode(alg, info.kid, sub, aud, n_aud, now, (unsigned)ttl, jti,
	                            cubeid_jws_sign_key, key, out);
	cubeid_key_free(key);
	return rc;
}

int
cubeid_jwt_keys_key(const cubeid_jwt_keys *k, cubeid_token *tok, const char *kid, cubeid_key **out)
{
	size_t i;

	if (out != NULL)
		*out = NULL;
	if (k == NULL || tok == NULL || kid == NULL || out == NULL)
		return CUBEID_ERR_INVALID_ARG;
	for (i = 0; i < k->n; i++)
		if (strcmp(k->keys[i].kid, kid) == 0)
			return signer_key(k, tok, kid, k->keys[i].uri, out);
	return CUBEID_ERR_NOT_FOUND;
}
