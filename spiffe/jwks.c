/*
 * JWK (RFC 7517, RFC 7518 section 6) to and from EVP_PKEY, and JWT bundles:
 * a trust domain's set of kid -> verification key.
 *
 * Keys are built with OSSL_PARAM_BLD / EVP_PKEY_fromdata (OpenSSL 3, no
 * deprecated APIs) and checked once, when they are loaded (EC keys with
 * EVP_PKEY_public_check); the verify path only looks them up.
 */
#include "config.h"

#include <cubeid/jwt.h>

#include <stdlib.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/obj_mac.h>
#include <openssl/param_build.h>
#include <openssl/sha.h>
#include <openssl/x509.h>

#include "spiffe/jwt-internal.h"

struct jwt_entry {
	char *kid;
	EVP_PKEY *pk;
	jwt_key_class kc;
};

struct cubeid_jwt_bundle {
	char *td;
	size_t n;
	struct jwt_entry keys[CUBEID_JWKS_MAX_KEYS];
};

static const struct {
	const char *crv;   /* JWK name */
	const char *group; /* OpenSSL group name */
	size_t field;      /* coordinate bytes */
} curves[] = {
        {"P-256", SN_X9_62_prime256v1, 32},
        {"P-384", SN_secp384r1, 48},
        {"P-521", SN_secp521r1, 66},
};

/* ---- JWK -> EVP_PKEY ------------------------------------------------- */

/* Decode the base64url string member name of jwk into buf; exact length
 * `want` unless want is 0 (then 1..max bytes). */
static int
jwk_b64_member(const json_t *jwk, const char *name, uint8_t *buf, size_t max, size_t want,
               size_t *len)
{
	json_t *v = json_object_get(jwk, name);

	*len = 0;
	if (!json_is_string(v))
		return CUBEID_ERR_JWKS;
	if (cubeid_b64url_decode(json_string_value(v), json_string_length(v), buf, max, len) !=
	    CUBEID_OK)
		return CUBEID_ERR_JWKS;
	if (*len == 0 || (want != 0 && *len != want))
		return CUBEID_ERR_JWKS;
	return CUBEID_OK;
}

static int
pkey_from_params(const char *type, OSSL_PARAM_BLD *bld, EVP_PKEY **out)
{
	OSSL_PARAM *params = NULL;
	EVP_PKEY_CTX *ctx = NULL, *check = NULL;
	EVP_PKEY *pk = NULL;
	int rc = CUBEID_ERR_JWKS;

	if ((params = OSSL_PARAM_BLD_to_param(bld)) == NULL) {
		rc = CUBEID_ERR_NOMEM;
		goto out;
	}
	if ((ctx = EVP_PKEY_CTX_new_from_name(NULL, type, NULL)) == NULL) {
		rc = CUBEID_ERR_CRYPTO;
		goto out;
	}
	if (EVP_PKEY_fromdata_init(ctx) != 1 ||
	    EVP_PKEY_fromdata(ctx, &pk, EVP_PKEY_PUBLIC_KEY, params) != 1)
		goto out;
	/* EC: on the curve, in range, right order.  Not for RSA: OpenSSL's
	 * RSA public check tests n for primality with random witnesses, so a
	 * crafted n was accepted on one parse and refused on the next (found
	 * by fuzz/fuzz-jwks).  The RSA checks the caller makes (size, no
	 * leading zeros, odd e) are deterministic, and a bogus n only makes
	 * signatures fail to verify. */
	if (strcmp(type, "EC") == 0 &&
	    ((check = EVP_PKEY_CTX_new_from_pkey(NULL, pk, NULL)) == NULL ||
	     EVP_PKEY_public_check(check) != 1))
		goto out;
	*out = pk;
	pk = NULL;
	rc = CUBEID_OK;
out:
	ERR_clear_error();
	EVP_PKEY_free(pk);
	EVP_PKEY_CTX_free(check);
	EVP_PKEY_CTX_free(ctx);
	OSSL_PARAM_free(params);
	return rc;
}

static int
jwk_ec(const json_t *jwk, EVP_PKEY **out)
{
	json_t *crv_v = json_object_get(jwk, "crv");
	uint8_t pub[1 + 2 * 66], x[66], y[66];
	size_t i, xl, yl, field;
	OSSL_PARAM_BLD *bld = NULL;
	int rc;

	if (!json_is_string(crv_v))
		return CUBEID_ERR_JWKS;
	for (i = 0; i < sizeof(curves) / sizeof(curves[0]); i++)
		if (strcmp(json_string_value(crv_v), curves[i].crv) == 0)
			break;
	if (i == sizeof(curves) / sizeof(curves[0]))
		return CUBEID_ERR_UNSUPPORTED;
	field = curves[i].field;
	if ((rc = jwk_b64_member(jwk, "x", x, sizeof(x), field, &xl)) != CUBEID_OK ||
	    (rc = jwk_b64_member(jwk, "y", y, sizeof(y), field, &yl)) != CUBEID_OK)
		return rc;
	pub[0] = 0x04; /* uncompressed point */
	memcpy(pub + 1, x, field);
	memcpy(pub + 1 + field, y, field);
	if ((bld = OSSL_PARAM_BLD_new()) == NULL)
		return CUBEID_ERR_NOMEM;
	if (OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, curves[i].group, 0) !=
	            1 ||
	    OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, pub, 1 + 2 * field) !=
	            1) {
		rc = CUBEID_ERR_NOMEM;
		goto out;
	}
	rc = pkey_from_params("EC", bld, out);
out:
	OSSL_PARAM_BLD_free(bld);
	return rc;
}

static int
jwk_rsa(const json_t *jwk, EVP_PKEY **out)
{
	uint8_t n[CUBEID_RSA_MAX_BITS / 8], e[8];
	size_t nl, el;
	BIGNUM *bn_n = NULL, *bn_e = NULL;
	OSSL_PARAM_BLD *bld = NULL;
	int rc;

	if ((rc = jwk_b64_member(jwk, "n", n, sizeof(n), 0, &nl)) != CUBEID_OK ||
	    (rc = jwk_b64_member(jwk, "e", e, sizeof(e), 0, &el)) != CUBEID_OK)
		return CUBEID_ERR_JWKS; /* includes n over 8192 bits, e over 64 */
	/* Base64urlUInt: minimal octets (RFC 7518 2) */
	if (n[0] == 0 || e[0] == 0)
		return CUBEID_ERR_JWKS;
	if ((nl - 1) * 8 + (size_t)(32 - __builtin_clz(n[0])) < CUBEID_RSA_MIN_BITS)
		return CUBEID_ERR_JWKS;
	if ((e[el - 1] & 1) == 0 || (el == 1 && e[0] == 1))
		return CUBEID_ERR_JWKS;
	if ((n[nl - 1] & 1) == 0) /* an RSA modulus is odd */
		return CUBEID_ERR_JWKS;
	bn_n = BN_bin2bn(n, (int)nl, NULL);
	bn_e = BN_bin2bn(e, (int)el, NULL);
	bld = OSSL_PARAM_BLD_new();
	if (bn_n == NULL || bn_e == NULL || bld == NULL ||
	    OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, bn_n) != 1 ||
	    OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, bn_e) != 1) {
		rc = CUBEID_ERR_NOMEM;
		goto out;
	}
	rc = pkey_from_params("RSA", bld, out);
out:
	OSSL_PARAM_BLD_free(bld);
	BN_free(bn_n);
	BN_free(bn_e);
	return rc;
}

int
cubeid_jwk_to_pkey(const json_t *jwk, EVP_PKEY **out)
{
	json_t *kty;

	if (out == NULL)
		return CUBEID_ERR_INVALID_ARG;
	*out = NULL;
	if (!json_is_object(jwk))
		return CUBEID_ERR_JWKS;
	if (json_object_get(jwk, "d") != NULL)
		return CUBEID_ERR_JWKS; /* a private key has no place in a key set */
	kty = json_object_get(jwk, "kty");
	if (!json_is_string(kty))
		return CUBEID_ERR_JWKS;
	if (strcmp(json_string_value(kty), "EC") == 0)
		return jwk_ec(jwk, out);
	if (strcmp(json_string_value(kty), "RSA") == 0)
		return jwk_rsa(jwk, out);
	return CUBEID_ERR_UNSUPPORTED;
}

/* ---- EVP_PKEY -> JWK ------------------------------------------------- */

static json_t *
b64_bn(const BIGNUM *bn, size_t pad)
{
	uint8_t buf[CUBEID_RSA_MAX_BITS / 8];
	char s[sizeof(buf) / 3 * 4 + 8];
	int n;

	if (pad == 0) {
		if ((size_t)BN_num_bytes(bn) > sizeof(buf))
			return NULL;
		n = BN_bn2bin(bn, buf);
	} else {
		n = BN_bn2binpad(bn, buf, (int)pad);
	}
	if (n <= 0) {
		if (n == 0 && pad == 0) {
			buf[0] = 0;
			n = 1;
		} else {
			return NULL;
		}
	}
	if (cubeid_b64url_encode(buf, (size_t)n, s, sizeof(s), NULL) != CUBEID_OK)
		return NULL;
	return json_string(s);
}

int
cubeid_jwk_from_pkey(EVP_PKEY *pk, const char *kid, const char *use, json_t **out)
{
	json_t *jwk = NULL;
	BIGNUM *a = NULL, *b = NULL;
	char group[64];
	size_t i;
	int rc = CUBEID_ERR_NOMEM;

	if (out == NULL)
		return CUBEID_ERR_INVALID_ARG;
	*out = NULL;
	if (pk == NULL)
		return CUBEID_ERR_INVALID_ARG;
	switch (EVP_PKEY_get_base_id(pk)) {
	case EVP_PKEY_EC:
		if (EVP_PKEY_get_group_name(pk, group, sizeof(group), NULL) != 1) {
			rc = CUBEID_ERR_CRYPTO;
			goto out;
		}
		for (i = 0; i < sizeof(curves) / sizeof(curves[0]); i++)
			if (strcmp(group, curves[i].group) == 0)
				break;
		if (i == sizeof(curves) / sizeof(curves[0])) {
			rc = CUBEID_ERR_UNSUPPORTED;
			goto out;
		}
		if (EVP_PKEY_get_bn_param(pk, OSSL_PKEY_PARAM_EC_PUB_X, &a) != 1 ||
		    EVP_PKEY_get_bn_param(pk, OSSL_PKEY_PARAM_EC_PUB_Y, &b) != 1) {
			rc = CUBEID_ERR_CRYPTO;
			goto out;
		}
		jwk = json_pack("{ss ss so* so*}", "kty", "EC", "crv", curves[i].crv, "x",
		                b64_bn(a, curves[i].field), "y", b64_bn(b, curves[i].field));
		break;
	case EVP_PKEY_RSA:
		if (EVP_PKEY_get_bn_param(pk, OSSL_PKEY_PARAM_RSA_N, &a) != 1 ||
		    EVP_PKEY_get_bn_param(pk, OSSL_PKEY_PARAM_RSA_E, &b) != 1) {
			rc = CUBEID_ERR_CRYPTO;
			goto out;
		}
		jwk = json_pack("{ss so* so*}", "kty", "RSA", "n", b64_bn(a, 0), "e", b64_bn(b, 0));
		break;
	default:
		rc = CUBEID_ERR_UNSUPPORTED;
		goto out;
	}
	if (jwk == NULL ||
	    json_object_size(jwk) != (EVP_PKEY_get_base_id(pk) == EVP_PKEY_EC ? 4 : 3))
		goto out;
	if ((kid != NULL && json_object_set_new(jwk, "kid", json_string(kid)) != 0) ||
	    (use != NULL && json_object_set_new(jwk, "use", json_string(use)) != 0)) {
		rc = CUBEID_ERR_INVALID_ARG;
		goto out;
	}
	*out = jwk;
	jwk = NULL;
	rc = CUBEID_OK;
out:
	ERR_clear_error();
	json_decref(jwk);
	BN_free(a);
	BN_free(b);
	return rc;
}

int
cubeid_kid_from_pkey(EVP_PKEY *pk, char out[CUBEID_KID_LEN + 1])
{
	unsigned char *der = NULL;
	uint8_t md[SHA256_DIGEST_LENGTH];
	char s[64];
	int n;

	if (out == NULL)
		return CUBEID_ERR_INVALID_ARG;
	out[0] = '\0';
	if (pk == NULL)
		return CUBEID_ERR_INVALID_ARG;
	n = i2d_PUBKEY(pk, &der);
	if (n <= 0) {
		ERR_clear_error();
		return CUBEID_ERR_CRYPTO;
	}
	SHA256(der, (size_t)n, md);
	OPENSSL_free(der);
	cubeid_b64url_encode(md, sizeof(md), s, sizeof(s), NULL);
	memcpy(out, s, CUBEID_KID_LEN);
	out[CUBEID_KID_LEN] = '\0';
	return CUBEID_OK;
}

/* ---- JWT bundles ----------------------------------------------------- */

int
cubeid_jwt_bundle_new(const char *td, cubeid_jwt_bundle **out)
{
	cubeid_jwt_bundle *b;
	int rc;

	if (out == NULL)
		return CUBEID_ERR_INVALID_ARG;
	*out = NULL;
	if (td == NULL)
		return CUBEID_ERR_INVALID_ARG;
	rc = cubeid_trust_domain_validate(td, strnlen(td, CUBEID_TRUST_DOMAIN_MAX + 1), NULL);
	if (rc != CUBEID_OK)
		return rc;
	if ((b = calloc(1, sizeof(*b))) == NULL || (b->td = strdup(td)) == NULL) {
		free(b);
		return CUBEID_ERR_NOMEM;
	}
	*out = b;
	return CUBEID_OK;
}

void
cubeid_jwt_bundle_free(cubeid_jwt_bundle *b)
{
	size_t i;

	if (b == NULL)
		return;
	for (i = 0; i < b->n; i++) {
		free(b->keys[i].kid);
		EVP_PKEY_free(b->keys[i].pk);
	}
	free(b->td);
	free(b);
}

const char *
cubeid_jwt_bundle_trust_domain(const cubeid_jwt_bundle *b)
{
	return b != NULL ? b->td : NULL;
}

static struct jwt_entry *
bundle_lookup(const cubeid_jwt_bundle *b, const char *kid)
{
	size_t i;

	if (b == NULL || kid == NULL)
		return NULL;
	for (i = 0; i < b->n; i++)
		if (strcmp(b->keys[i].kid, kid) == 0)
			return (struct jwt_entry *)&b->keys[i];
	return NULL;
}

int
cubeid_jwt_bundle_add(cubeid_jwt_bundle *b, const char *kid, EVP_PKEY *pk)
{
	jwt_key_class kc;
	char *copy;

	if (b == NULL || kid == NULL || pk == NULL || kid[0] == '\0')
		return CUBEID_ERR_INVALID_ARG;
	if (bundle_lookup(b, kid) != NULL)
		return CUBEID_ERR_EXISTS;
	if (b->n >= CUBEID_JWKS_MAX_KEYS)
		return CUBEID_ERR_TOO_LARGE;
	if ((kc = jwt_key_class_of(pk)) == JWT_KEY_NONE)
		return CUBEID_ERR_JWKS;
	if ((copy = strdup(kid)) == NULL)
		return CUBEID_ERR_NOMEM;
	if (EVP_PKEY_up_ref(pk) != 1) {
		free(copy);
		return CUBEID_ERR_CRYPTO;
	}
	b->keys[b->n].kid = copy;
	b->keys[b->n].pk = pk;
	b->keys[b->n].kc = kc;
	b->n++;
	return CUBEID_OK;
}

int
cubeid_jwt_bundle_remove(cubeid_jwt_bundle *b, const char *kid)
{
	struct jwt_entry *e = bundle_lookup(b, kid);
	size_t i;

	if (e == NULL)
		return b == NULL || kid == NULL ? CUBEID_ERR_INVALID_ARG : CUBEID_ERR_NOT_FOUND;
	i = (size_t)(e - b->keys);
	free(e->kid);
	EVP_PKEY_free(e->pk);
	memmove(&b->keys[i], &b->keys[i + 1], (b->n - i - 1) * sizeof(b->keys[0]));
	b->n--;
	return CUBEID_OK;
}

EVP_PKEY *
cubeid_jwt_bundle_find(const cubeid_jwt_bundle *b, const char *kid)
{
	struct jwt_entry *e = bundle_lookup(b, kid);

	return e != NULL ? e->pk : NULL;
}

EVP_PKEY *
jwt_bundle_find_class(const cubeid_jwt_bundle *b, const char *kid, jwt_key_class *kc)
{
	struct jwt_entry *e = bundle_lookup(b, kid);

	*kc = e != NULL ? e->kc : JWT_KEY_NONE;
	return e != NULL ? e->pk : NULL;
}

size_t
cubeid_jwt_bundle_count(const cubeid_jwt_bundle *b)
{
	return b != NULL ? b->n : 0;
}

const char *
cubeid_jwt_bundle_kid_at(const cubeid_jwt_bundle *b, size_t i)
{
	return b != NULL && i < b->n ? b->keys[i].kid : NULL;
}

EVP_PKEY *
cubeid_jwt_bundle_key_at(const cubeid_jwt_bundle *b, size_t i)
{
	return b != NULL && i < b->n ? b->keys[i].pk : NULL;
}

int
jwt_load_keyset(const char *json, size_t len, json_t **root, json_t **keys)
{
	json_t *r;

	*root = *keys = NULL;
	if (json == NULL)
		return CUBEID_ERR_INVALID_ARG;
	if (len > CUBEID_JWKS_MAX)
		return CUBEID_ERR_TOO_LARGE;
	r = json_loadb(json, len, JSON_REJECT_DUPLICATES, NULL);
	if (r == NULL)
		return CUBEID_ERR_JWKS;
	*keys = json_object_get(r, "keys");
	if (!json_is_object(r) || !json_is_array(*keys)) {
		json_decref(r);
		*keys = NULL;
		return CUBEID_ERR_JWKS;
	}
	if (json_array_size(*keys) > CUBEID_JWKS_MAX_KEYS) {
		json_decref(r);
		*keys = NULL;
		return CUBEID_ERR_TOO_LARGE;
	}
	*root = r;
	return CUBEID_OK;
}

int
jwt_bundle_add_jwk(cubeid_jwt_bundle *b, const json_t *jwk)
{
	json_t *kid = json_object_get(jwk, "kid");
	EVP_PKEY *pk = NULL;
	int rc;

	rc = cubeid_jwk_to_pkey(jwk, &pk);
	if (rc == CUBEID_ERR_UNSUPPORTED)
		return 1; /* unknown kty or crv: ignored, per RFC 7517 5 */
	if (rc != CUBEID_OK)
		return rc;
	if (!json_is_string(kid) || json_string_length(kid) == 0 ||
	    strlen(json_string_value(kid)) != json_string_length(kid)) {
		rc = CUBEID_ERR_JWKS;
		goto out;
	}
	rc = cubeid_jwt_bundle_add(b, json_string_value(kid), pk);
	if (rc == CUBEID_ERR_EXISTS)
		rc = CUBEID_ERR_JWKS;
out:
	EVP_PKEY_free(pk);
	return rc;
}

int
cubeid_jwt_bundle_parse_jwks(const char *td, const char *json, size_t len, cubeid_jwt_bundle **out)
{
	cubeid_jwt_bundle *b = NULL;
	json_t *root = NULL, *keys, *jwk, *use;
	size_t i;
	int rc;

	if (out == NULL)
		return CUBEID_ERR_INVALID_ARG;
	*out = NULL;
	if ((rc = jwt_load_keyset(json, len, &root, &keys)) != CUBEID_OK)
		return rc;
	if ((rc = cubeid_jwt_bundle_new(td, &b)) != CUBEID_OK)
		goto out;
	json_array_foreach(keys, i, jwk)
	{
		if (!json_is_object(jwk)) {
			rc = CUBEID_ERR_JWKS;
			goto out;
		}
		use = json_object_get(jwk, "use");
		if (use != NULL &&
		    (!json_is_string(use) || (strcmp(json_string_value(use), "sig") != 0 &&
		                              strcmp(json_string_value(use), "jwt-svid") != 0)))
			continue; /* "enc", "x509-svid", unknown: not a JWT key */
		rc = jwt_bundle_add_jwk(b, jwk);
		if (rc < 0)
			goto out;
	}
	*out = b;
	b = NULL;
	rc = CUBEID_OK;
out:
	cubeid_jwt_bundle_free(b);
	json_decref(root);
	return rc;
}

int
jwt_bundle_append_jwks(const cubeid_jwt_bundle *b, json_t *keys)
{
	size_t i;
	json_t *jwk;
	int rc;

	for (i = 0; i < b->n; i++) {
		rc = cubeid_jwk_from_pkey(b->keys[i].pk, b->keys[i].kid, "jwt-svid", &jwk);
		if (rc != CUBEID_OK)
			return rc;
		if (json_array_append_new(keys, jwk) != 0)
			return CUBEID_ERR_NOMEM;
	}
	return CUBEID_OK;
}

int
jwt_dump(const json_t *doc, char **out, size_t *len)
{
	char *s = json_dumps(doc, JSON_COMPACT | JSON_PRESERVE_ORDER);

	if (s == NULL)
		return CUBEID_ERR_NOMEM;
	*out = s;
	if (len != NULL)
		*len = strlen(s);
	return CUBEID_OK;
}

int
cubeid_jwt_bundle_to_jwks(const cubeid_jwt_bundle *b, char **out, size_t *len)
{
	json_t *doc = NULL, *keys;
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
	if ((rc = jwt_bundle_append_jwks(b, keys)) == CUBEID_OK)
		rc = jwt_dump(doc, out, len);
	json_decref(doc);
	return rc;
}
