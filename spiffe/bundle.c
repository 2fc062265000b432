/*
 * SPIFFE bundles (SPIFFE_Trust_Domain_and_Bundle.md section 4): a JWK set
 * holding a trust domain's X.509 authorities (use "x509-svid", x5c, no kid;
 * X509-SVID.md 6.1) and JWT authorities (use "jwt-svid", kid; JWT-SVID.md
 * 6.1), with spiffe_sequence and spiffe_refresh_hint.
 *
 * Certificates are kept as DER; checking them as CAs is the X.509 layer's
 * job.  Here they are only parsed to make sure each is one certificate and
 * to publish its public key as the JWK's key members.
 */
#include "config.h"

#include <cubeid/jwt.h>

#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/x509.h>

#include "spiffe/jwt-internal.h"

#define X509_DER_MAX (64 * 1024)

struct der_blob {
	uint8_t *der;
	size_t len;
};

struct cubeid_spiffe_bundle {
	cubeid_jwt_bundle *jwt;
	size_t n_x509;
	struct der_blob x509[CUBEID_JWKS_MAX_KEYS];
	bool has_seq, has_hint;
	uint64_t seq;
	int64_t hint;
};

int
cubeid_spiffe_bundle_new(const char *td, cubeid_spiffe_bundle **out)
{
	cubeid_spiffe_bundle *b;
	int rc;

	if (out == NULL)
		return CUBEID_ERR_INVALID_ARG;
	*out = NULL;
	if ((b = calloc(1, sizeof(*b))) == NULL)
		return CUBEID_ERR_NOMEM;
	if ((rc = cubeid_jwt_bundle_new(td, &b->jwt)) != CUBEID_OK) {
		free(b);
		return rc;
	}
	*out = b;
	return CUBEID_OK;
}

void
cubeid_spiffe_bundle_free(cubeid_spiffe_bundle *b)
{
	size_t i;

	if (b == NULL)
		return;
	for (i = 0; i < b->n_x509; i++)
		free(b->x509[i].der);
	cubeid_jwt_bundle_free(b->jwt);
	free(b);
}

const char *
cubeid_spiffe_bundle_trust_domain(const cubeid_spiffe_bundle *b)
{
	return b != NULL ? cubeid_jwt_bundle_trust_domain(b->jwt) : NULL;
}

/* The certificate in der[0..len), which must be exactly one; caller frees. */
static X509 *
parse_cert(const uint8_t *der, size_t len)
{
	const unsigned char *p = der;
	X509 *x;

	if (len == 0 || len > X509_DER_MAX)
		return NULL;
	x = d2i_X509(NULL, &p, (long)len);
	if (x != NULL && p != der + len) {
		X509_free(x);
		x = NULL;
	}
	ERR_clear_error();
	return x;
}

int
cubeid_spiffe_bundle_add_x509_der(cubeid_spiffe_bundle *b, const uint8_t *der, size_t len)
{
	X509 *x;
	uint8_t *copy;

	if (b == NULL || der == NULL)
		return CUBEID_ERR_INVALID_ARG;
	if (b->n_x509 >= CUBEID_JWKS_MAX_KEYS)
		return CUBEID_ERR_TOO_LARGE;
	if ((x = parse_cert(der, len)) == NULL)
		return CUBEID_ERR_X509;
	/* its key must be one a JWK can carry: EC P-256/384/521 or RSA >= 2048 */
	if (jwt_key_class_of(X509_get0_pubkey(x)) == JWT_KEY_NONE) {
		ERR_clear_error();
		X509_free(x);
		return CUBEID_ERR_X509;
	}
	X509_free(x);
	if ((copy = malloc(len)) == NULL)
		return CUBEID_ERR_NOMEM;
	memcpy(copy, der, len);
	b->x509[b->n_x509].der = copy;
	b->x509[b->n_x509].len = len;
	b->n_x509++;
	return CUBEID_OK;
}

size_t
cubeid_spiffe_bundle_x509_count(const cubeid_spiffe_bundle *b)
{
	return b != NULL ? b->n_x509 : 0;
}

const uint8_t *
cubeid_spiffe_bundle_x509_at(const cubeid_spiffe_bundle *b, size_t i, size_t *len)
{
	if (len != NULL)
		*len = b != NULL && i < b->n_x509 ? b->x509[i].len : 0;
	return b != NULL && i < b->n_x509 ? b->x509[i].der : NULL;
}

cubeid_jwt_bundle *
cubeid_spiffe_bundle_jwt(cubeid_spiffe_bundle *b)
{
	return b != NULL ? b->jwt : NULL;
}

void
cubeid_spiffe_bundle_set_sequence(cubeid_spiffe_bundle *b, uint64_t seq)
{
	if (b == NULL)
		return;
	b->seq = seq;
	b->has_seq = true;
}

void
cubeid_spiffe_bundle_set_refresh_hint(cubeid_spiffe_bundle *b, int64_t seconds)
{
	if (b == NULL)
		return;
	b->hint = seconds;
	b->has_hint = true;
}

bool
cubeid_spiffe_bundle_sequence(const cubeid_spiffe_bundle *b, uint64_t *seq)
{
	if (b == NULL || !b->has_seq)
		return false;
	if (seq != NULL)
		*seq = b->seq;
	return true;
}

bool
cubeid_spiffe_bundle_refresh_hint(const cubeid_spiffe_bundle *b, int64_t *seconds)
{
	if (b == NULL || !b->has_hint)
		return false;
	if (seconds != NULL)
		*seconds = b->hint;
	return true;
}

static int
x509_jwk(const struct der_blob *blob, json_t **out)
{
	X509 *x = parse_cert(blob->der, blob->len);
	json_t *jwk = NULL;
	char *b64 = NULL;
	int rc;

	*out = NULL;
	if (x == NULL)
		return CUBEID_ERR_X509;
	rc = cubeid_jwk_from_pkey(X509_get0_pubkey(x), NULL, "x509-svid", &jwk);
	if (rc != CUBEID_OK)
		goto out;
	if ((rc = cubeid_b64_std_encode_alloc(blob->der, blob->len, &b64)) != CUBEID_OK)
		goto out;
	if (json_object_set_new(jwk, "x5c", json_pack("[s]", b64)) != 0) {
		rc = CUBEID_ERR_NOMEM;
		goto out;
	}
	*out = jwk;
	jwk = NULL;
out:
	free(b64);
	json_decref(jwk);
	X509_free(x);
	return rc;
}

int
cubeid_spiffe_bundle_emit(const cubeid_spiffe_bundle *b, char **out, size_t *len)
{
	json_t *doc = NULL, *keys, *jwk;
	size_t i;
	int rc;

	if (out == NULL)
		return CUBEID_ERR_INVALID_ARG;
	*out = NULL;
	if (len != NULL)
		*len = 0;
	if (b == NULL)
		return CUBEID_ERR_INVALID_ARG;
	if ((doc = json_pack("{s[]}", "keys")) == NULL)
		return CUBEID_ERR_NOMEM;
	keys = json_object_get(doc, "keys");
	for (i = 0; i < b->n_x509; i++) {
		if ((rc = x509_jwk(&b->x509[i], &jwk)) != CUBEID_OK)
			goto out;
		if (json_array_append_new(keys, jwk) != 0) {
			rc = CUBEID_ERR_NOMEM;
			goto out;
		}
	}
	if ((rc = jwt_bundle_append_jwks(b->jwt, keys)) != CUBEID_OK)
		goto out;
	if ((b->has_seq &&
	     json_object_set_new(doc, "spiffe_sequence", json_integer((json_int_t)b->seq)) != 0) ||
	    (b->has_hint && json_object_set_new(doc, "spiffe_refresh_hint",
	                                        json_integer((json_int_t)b->hint)) != 0)) {
		rc = CUBEID_ERR_NOMEM;
		goto out;
	}
	rc = jwt_dump(doc, out, len);
out:
	json_decref(doc);
	return rc;
}

/* One x509-svid JWK: 0 added, 1 skipped (no x5c), < 0 error. */
static int
add_x509_jwk(cubeid_spiffe_bundle *b, const json_t *jwk)
{
	json_t *x5c = json_object_get(jwk, "x5c"), *first;
	EVP_PKEY *jwk_pk = NULL;
	X509 *x = NULL;
	uint8_t *der = NULL;
	size_t der_len;
	int rc;

	/* X509-SVID.md 6.2: no x5c, or an empty one: ignore the entry */
	if (x5c == NULL || (json_is_array(x5c) && json_array_size(x5c) == 0))
		return 1;
	first = json_array_get(x5c, 0);
	if (!json_is_array(x5c) || !json_is_string(first))
		return CUBEID_ERR_JWKS;
	rc = cubeid_b64_std_decode_alloc(json_string_value(first), json_string_length(first), &der,
	                                 &der_len);
	if (rc != CUBEID_OK) {
		rc = CUBEID_ERR_JWKS;
		goto out;
	}
	if ((x = parse_cert(der, der_len)) == NULL) {
		rc = CUBEID_ERR_JWKS;
		goto out;
	}
	/* RFC 7517 4.7: the key members, when present, match the certificate */
	if (json_object_get(jwk, "kty") != NULL) {
		rc = cubeid_jwk_to_pkey(jwk, &jwk_pk);
		if (rc == CUBEID_OK && EVP_PKEY_eq(jwk_pk, X509_get0_pubkey(x)) != 1)
			rc = CUBEID_ERR_JWKS;
		ERR_clear_error();
		if (rc == CUBEID_ERR_UNSUPPORTED)
			rc = CUBEID_OK; /* a key type we cannot read; the cert is what counts */
		if (rc != CUBEID_OK)
			goto out;
	}
	rc = cubeid_spiffe_bundle_add_x509_der(b, der, der_len);
	if (rc == CUBEID_ERR_X509)
		rc = CUBEID_ERR_JWKS;
out:
	EVP_PKEY_free(jwk_pk);
	X509_free(x);
	free(der);
	return rc;
}

int
cubeid_spiffe_bundle_parse(const char *td, const char *json, size_t len, cubeid_spiffe_bundle **out)
{
	cubeid_spiffe_bundle *b = NULL;
	json_t *root = NULL, *keys, *jwk, *use, *v;
	size_t i;
	int rc;

	if (out == NULL)
		return CUBEID_ERR_INVALID_ARG;
	*out = NULL;
	if ((rc = jwt_load_keyset(json, len, &root, &keys)) != CUBEID_OK)
		return rc;
	if ((rc = cubeid_spiffe_bundle_new(td, &b)) != CUBEID_OK)
		goto out;
	if ((v = json_object_get(root, "spiffe_sequence")) != NULL) {
		if (!json_is_integer(v) || json_integer_value(v) < 0) {
			rc = CUBEID_ERR_JWKS;
			goto out;
		}
		cubeid_spiffe_bundle_set_sequence(b, (uint64_t)json_integer_value(v));
	}
	if ((v = json_object_get(root, "spiffe_refresh_hint")) != NULL) {
		if (!json_is_integer(v) || json_integer_value(v) < 0) {
			rc = CUBEID_ERR_JWKS;
			goto out;
		}
		cubeid_spiffe_bundle_set_refresh_hint(b, (int64_t)json_integer_value(v));
	}
	json_array_foreach(keys, i, jwk)
	{
		if (!json_is_object(jwk)) {
			rc = CUBEID_ERR_JWKS;
			goto out;
		}
		use = json_object_get(jwk, "use");
		if (!json_is_string(use))
			continue; /* 4.2.2: a missing use means ignore the entry */
		if (strcmp(json_string_value(use), "x509-svid") == 0)
			rc = add_x509_jwk(b, jwk);
		else if (strcmp(json_string_value(use), "jwt-svid") == 0)
			rc = jwt_bundle_add_jwk(b->jwt, jwk);
		else
			continue; /* unknown use: ignored */
		if (rc < 0)
			goto out;
	}
	*out = b;
	b = NULL;
	rc = CUBEID_OK;
out:
	cubeid_spiffe_bundle_free(b);
	json_decref(root);
	return rc;
}
