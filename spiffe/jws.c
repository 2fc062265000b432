/*
 * JWS compact serialization (RFC 7515) with the JWT-SVID algorithm
 * allow-list (RFC 7518 sections 3.3-3.5): decoding, verifying with a cached
 * EVP_PKEY, and encoding through a signer callback.
 */
#include "config.h"

#include <cubeid/jwt.h>

#include <stdlib.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/obj_mac.h>
#include <openssl/rsa.h>

#include "spiffe/jwt-internal.h"

struct cubeid_jws {
	cubeid_sig_alg alg;
	const char *kid; /* borrowed from header */
	const char *typ; /* borrowed from header */
	json_t *header;
	json_t *claims;
	size_t input_len; /* token[0..input_len) is the signing input */
	size_t sig_len;
	uint8_t sig[CUBEID_JWS_SIG_MAX];
	char token[]; /* a copy of the token, NUL-terminated */
};

static const struct {
	cubeid_sig_alg alg;
	const char *name;
} alg_names[] = {
        {CUBEID_SIG_RSA_PKCS1_SHA256, "RS256"}, {CUBEID_SIG_RSA_PKCS1_SHA384, "RS384"},
        {CUBEID_SIG_RSA_PKCS1_SHA512, "RS512"}, {CUBEID_SIG_ECDSA_SHA256, "ES256"},
        {CUBEID_SIG_ECDSA_SHA384, "ES384"},     {CUBEID_SIG_ECDSA_SHA512, "ES512"},
        {CUBEID_SIG_RSA_PSS_SHA256, "PS256"},   {CUBEID_SIG_RSA_PSS_SHA384, "PS384"},
        {CUBEID_SIG_RSA_PSS_SHA512, "PS512"},
};

const char *
cubeid_jws_alg_name(cubeid_sig_alg alg)
{
	size_t i;

	for (i = 0; i < sizeof(alg_names) / sizeof(alg_names[0]); i++)
		if (alg_names[i].alg == alg)
			return alg_names[i].name;
	return NULL;
}

cubeid_sig_alg
cubeid_jws_alg_from_name(const char *name)
{
	size_t i;

	if (name == NULL)
		return CUBEID_SIG_NONE;
	for (i = 0; i < sizeof(alg_names) / sizeof(alg_names[0]); i++)
		if (strcmp(alg_names[i].name, name) == 0)
			return alg_names[i].alg;
	return CUBEID_SIG_NONE;
}

jwt_key_class
jwt_key_class_of(EVP_PKEY *pk)
{
	char group[64];
	int bits;

	if (pk == NULL)
		return JWT_KEY_NONE;
	switch (EVP_PKEY_get_base_id(pk)) {
	case EVP_PKEY_RSA:
		bits = EVP_PKEY_get_bits(pk);
		if (bits < CUBEID_RSA_MIN_BITS || bits > CUBEID_RSA_MAX_BITS)
			return JWT_KEY_NONE;
		return JWT_KEY_RSA;
	case EVP_PKEY_EC:
		if (EVP_PKEY_get_group_name(pk, group, sizeof(group), NULL) != 1) {
			ERR_clear_error();
			return JWT_KEY_NONE;
		}
		if (strcmp(group, SN_X9_62_prime256v1) == 0)
			return JWT_KEY_P256;
		if (strcmp(group, SN_secp384r1) == 0)
			return JWT_KEY_P384;
		if (strcmp(group, SN_secp521r1) == 0)
			return JWT_KEY_P521;
		return JWT_KEY_NONE;
	default:
		return JWT_KEY_NONE;
	}
}

static bool
class_fits(cubeid_sig_alg alg, jwt_key_class kc)
{
	switch (alg) {
	case CUBEID_SIG_ECDSA_SHA256:
		return kc == JWT_KEY_P256;
	case CUBEID_SIG_ECDSA_SHA384:
		return kc == JWT_KEY_P384;
	case CUBEID_SIG_ECDSA_SHA512:
		return kc == JWT_KEY_P521;
	case CUBEID_SIG_RSA_PKCS1_SHA256:
	case CUBEID_SIG_RSA_PKCS1_SHA384:
	case CUBEID_SIG_RSA_PKCS1_SHA512:
	case CUBEID_SIG_RSA_PSS_SHA256:
	case CUBEID_SIG_RSA_PSS_SHA384:
	case CUBEID_SIG_RSA_PSS_SHA512:
		return kc == JWT_KEY_RSA;
	default:
		return false;
	}
}

int
cubeid_jws_key_fits(cubeid_sig_alg alg, EVP_PKEY *pk)
{
	return class_fits(alg, jwt_key_class_of(pk)) ? CUBEID_OK : CUBEID_ERR_JWT_ALG;
}

static size_t
class_field_len(jwt_key_class kc)
{
	switch (kc) {
	case JWT_KEY_P256:
		return 32;
	case JWT_KEY_P384:
		return 48;
	case JWT_KEY_P521:
		return 66;
	default:
		return 0;
	}
}

/* The curve of an ES alg; NID_undef for anything else. */
static int
alg_curve(cubeid_sig_alg alg, size_t *field)
{
	switch (alg) {
	case CUBEID_SIG_ECDSA_SHA256:
		*field = 32;
		return NID_X9_62_prime256v1;
	case CUBEID_SIG_ECDSA_SHA384:
		*field = 48;
		return NID_secp384r1;
	case CUBEID_SIG_ECDSA_SHA512:
		*field = 66;
		return NID_secp521r1;
	default:
		*field = 0;
		return NID_undef;
	}
}

/*
 * s of the raw r||s sig against the curve order n: 1 if s > n/2 (the
 * malleable twin of (r, n - s)), 0 if not; with fix, a high s is replaced by
 * n - s in place.  < 0 on a bad argument or an allocation failure.
 */
static int
ecdsa_high_s(cubeid_sig_alg alg, uint8_t *sig, size_t sig_len, bool fix)
{
	EC_GROUP *g = NULL;
	BIGNUM *s = NULL, *half = NULL;
	size_t field;
	int nid = alg_curve(alg, &field), rc = CUBEID_ERR_NOMEM;

	if (nid == NID_undef || sig == NULL || sig_len != 2 * field)
		return CUBEID_ERR_INVALID_ARG;
	if ((g = EC_GROUP_new_by_curve_name(nid)) == NULL ||
	    (s = BN_bin2bn(sig + field, (int)field, NULL)) == NULL ||
	    (half = BN_dup(EC_GROUP_get0_order(g))) == NULL || BN_rshift1(half, half) != 1)
		goto out;
	rc = BN_cmp(s, half) > 0;
	if (rc == 1 && fix &&
	    (BN_sub(s, EC_GROUP_get0_order(g), s) != 1 ||
	     BN_bn2binpad(s, sig + field, (int)field) != (int)field))
		rc = CUBEID_ERR_CRYPTO;
out:
	BN_free(half);
	BN_free(s);
	EC_GROUP_free(g);
	ERR_clear_error();
	return rc;
}

int
cubeid_jws_ecdsa_low_s(cubeid_sig_alg alg, uint8_t *sig, size_t sig_len)
{
	return ecdsa_high_s(alg, sig, sig_len, true);
}

/* DER INTEGER for the unsigned big-endian v[0..n) at p; returns bytes written. */
static size_t
der_uint(const uint8_t *v, size_t n, uint8_t *p)
{
	size_t o = 0;

	while (n > 1 && v[0] == 0) {
		v++;
		n--;
	}
	p[o++] = 0x02;
	p[o++] = (uint8_t)(n + (v[0] & 0x80 ? 1 : 0));
	if (v[0] & 0x80)
		p[o++] = 0x00;
	memcpy(p + o, v, n);
	return o + n;
}

/* raw r||s (2 * field bytes, field <= 66) to DER ECDSA-Sig-Value in der
 * (room for 2 * (field + 3) + 3 bytes); returns the DER length. */
static size_t
ecdsa_raw_to_der(const uint8_t *raw, size_t field, uint8_t *der)
{
	uint8_t body[2 * (66 + 3)];
	size_t n = 0, o = 0;

	n += der_uint(raw, field, body + n);
	n += der_uint(raw + field, field, body + n);
	der[o++] = 0x30;
	if (n >= 0x80)
		der[o++] = 0x81;
	der[o++] = (uint8_t)n;
	memcpy(der + o, body, n);
	return o + n;
}

static int
verify_raw(cubeid_sig_alg alg, EVP_PKEY *pk, jwt_key_class kc, const uint8_t *in, size_t in_len,
           const uint8_t *sig, size_t sig_len, unsigned flags)
{
	uint8_t der[2 * (66 + 3) + 3], low[2 * 66];
	EVP_MD_CTX *md_ctx = NULL;
	EVP_PKEY_CTX *pctx = NULL;
	const EVP_MD *md = cubeid_sig_alg_md(alg);
	int rc = CUBEID_ERR_JWT_SIGNATURE;

	if (md == NULL || !class_fits(alg, kc))
		return CUBEID_ERR_JWT_ALG;
	if (cubeid_sig_alg_is_ec(alg)) {
		size_t field = class_field_len(kc);
		if (sig_len != 2 * field)
			return CUBEID_ERR_JWT_SIGNATURE;
		/* low-S only: (r, n - s) verifies too, and would be a second
		 * encoding of one signature */
		memcpy(low, sig, sig_len);
		rc = ecdsa_high_s(alg, low, sig_len, (flags & CUBEID_JWS_ALLOW_HIGH_S) != 0);
		if (rc < 0)
			return rc;
		if (rc == 1 && (flags & CUBEID_JWS_ALLOW_HIGH_S) == 0)
			return CUBEID_ERR_JWT_SIGNATURE;
		rc = CUBEID_ERR_JWT_SIGNATURE;
		sig_len = ecdsa_raw_to_der(low, field, der);
		sig = der;
	} else if (sig_len != (size_t)EVP_PKEY_get_size(pk)) {
		return CUBEID_ERR_JWT_SIGNATURE;
	}
	if ((md_ctx = EVP_MD_CTX_new()) == NULL)
		return CUBEID_ERR_NOMEM;
	if (EVP_DigestVerifyInit(md_ctx, &pctx, md, NULL, pk) != 1) {
		rc = CUBEID_ERR_CRYPTO;
		goto out;
	}
	if (cubeid_sig_alg_is_pss(alg) &&
	    (EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) != 1 ||
	     EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST) != 1 ||
	     EVP_PKEY_CTX_set_rsa_mgf1_md(pctx, md) != 1)) {
		rc = CUBEID_ERR_CRYPTO;
		goto out;
	}
	if (EVP_DigestVerify(md_ctx, sig, sig_len, in, in_len) == 1)
		rc = CUBEID_OK;
out:
	ERR_clear_error();
	EVP_MD_CTX_free(md_ctx);
	return rc;
}

int
jwt_verify_raw(cubeid_sig_alg alg, EVP_PKEY *pk, jwt_key_class kc, const uint8_t *in, size_t in_len,
               const uint8_t *sig, size_t sig_len)
{
	return verify_raw(alg, pk, kc, in, in_len, sig, sig_len, 0);
}

/* Parse b64url text[0..len) as a JSON object (duplicate names refused). */
static int
decode_json_part(const char *text, size_t len, json_t **out)
{
	uint8_t buf[CUBEID_JWT_MAX];
	size_t n;
	json_t *j;

	*out = NULL;
	if (len == 0 || cubeid_b64url_decode(text, len, buf, sizeof(buf), &n) != CUBEID_OK)
		return CUBEID_ERR_JWT_MALFORMED;
	j = json_loadb((const char *)buf, n, JSON_REJECT_DUPLICATES, NULL);
	if (j == NULL)
		return CUBEID_ERR_JWT_MALFORMED;
	if (!json_is_object(j)) {
		json_decref(j);
		return CUBEID_ERR_JWT_MALFORMED;
	}
	*out = j;
	return CUBEID_OK;
}

/* An optional string member: CUBEID_OK with *s NULL when absent. */
static int
opt_string(json_t *obj, const char *name, const char **s)
{
	json_t *v = json_object_get(obj, name);

	*s = NULL;
	if (v == NULL)
		return CUBEID_OK;
	if (!json_is_string(v))
		return CUBEID_ERR_JWT_MALFORMED;
	*s = json_string_value(v);
	return CUBEID_OK;
}

int
cubeid_jws_decode(const char *token, size_t len, cubeid_jws **out)
{
	cubeid_jws *jws = NULL;
	const char *dot1, *dot2, *alg_name;
	json_t *alg_v;
	int rc;

	if (out == NULL)
		return CUBEID_ERR_INVALID_ARG;
	*out = NULL;
	if (token == NULL)
		return CUBEID_ERR_INVALID_ARG;
	if (len > CUBEID_JWT_MAX)
		return CUBEID_ERR_TOO_LARGE;
	if (len == 0 || memchr(token, '\0', len) != NULL)
		return CUBEID_ERR_JWT_MALFORMED;
	dot1 = memchr(token, '.', len);
	if (dot1 == NULL)
		return CUBEID_ERR_JWT_MALFORMED;
	dot2 = memchr(dot1 + 1, '.', len - (size_t)(dot1 + 1 - token));
	if (dot2 == NULL || memchr(dot2 + 1, '.', len - (size_t)(dot2 + 1 - token)) != NULL)
		return CUBEID_ERR_JWT_MALFORMED; /* not exactly three parts */

	jws = calloc(1, sizeof(*jws) + len + 1);
	if (jws == NULL)
		return CUBEID_ERR_NOMEM;
	memcpy(jws->token, token, len);
	jws->token[len] = '\0';
	dot1 = jws->token + (dot1 - token);
	dot2 = jws->token + (dot2 - token);
	jws->input_len = (size_t)(dot2 - jws->token);

	rc = decode_json_part(jws->token, (size_t)(dot1 - jws->token), &jws->header);
	if (rc != CUBEID_OK)
		goto out;
	alg_v = json_object_get(jws->header, "alg");
	if (!json_is_string(alg_v)) {
		rc = json_is_null(alg_v) || alg_v == NULL ? CUBEID_ERR_JWT_ALG
		                                          : CUBEID_ERR_JWT_MALFORMED;
		goto out;
	}
	alg_name = json_string_value(alg_v);
	jws->alg = cubeid_jws_alg_from_name(alg_name);
	if (jws->alg == CUBEID_SIG_NONE) {
		rc = CUBEID_ERR_JWT_ALG;
		goto out;
	}
	if ((rc = opt_string(jws->header, "kid", &jws->kid)) != CUBEID_OK ||
	    (rc = opt_string(jws->header, "typ", &jws->typ)) != CUBEID_OK)
		goto out;
	/* RFC 7515 4.1.11: we understand no extension, so crit is refused */
	if (json_object_get(jws->header, "crit") != NULL) {
		rc = CUBEID_ERR_JWT_MALFORMED;
		goto out;
	}
	rc = decode_json_part(dot1 + 1, (size_t)(dot2 - dot1 - 1), &jws->claims);
	if (rc != CUBEID_OK)
		goto out;
	if (cubeid_b64url_decode(dot2 + 1, len - jws->input_len - 1, jws->sig, sizeof(jws->sig),
	                         &jws->sig_len) != CUBEID_OK ||
	    jws->sig_len == 0) {
		rc = CUBEID_ERR_JWT_MALFORMED;
		goto out;
	}
	*out = jws;
	jws = NULL;
	rc = CUBEID_OK;
out:
	cubeid_jws_free(jws);
	return rc;
}

void
cubeid_jws_free(cubeid_jws *jws)
{
	if (jws == NULL)
		return;
	json_decref(jws->header);
	json_decref(jws->claims);
	free(jws);
}

cubeid_sig_alg
cubeid_jws_alg(const cubeid_jws *jws)
{
	return jws != NULL ? jws->alg : CUBEID_SIG_NONE;
}

const char *
cubeid_jws_kid(const cubeid_jws *jws)
{
	return jws != NULL ? jws->kid : NULL;
}

const char *
cubeid_jws_typ(const cubeid_jws *jws)
{
	return jws != NULL ? jws->typ : NULL;
}

json_t *
cubeid_jws_header(const cubeid_jws *jws)
{
	return jws != NULL ? jws->header : NULL;
}

json_t *
cubeid_jws_claims(const cubeid_jws *jws)
{
	return jws != NULL ? jws->claims : NULL;
}

const uint8_t *
cubeid_jws_signing_input(const cubeid_jws *jws, size_t *len)
{
	if (len != NULL)
		*len = jws != NULL ? jws->input_len : 0;
	return jws != NULL ? (const uint8_t *)jws->token : NULL;
}

const uint8_t *
cubeid_jws_signature(const cubeid_jws *jws, size_t *len)
{
	if (len != NULL)
		*len = jws != NULL ? jws->sig_len : 0;
	return jws != NULL ? jws->sig : NULL;
}

int
jwt_jws_verify_class(const cubeid_jws *jws, EVP_PKEY *pk, jwt_key_class kc, unsigned flags)
{
	if (jws == NULL || pk == NULL)
		return CUBEID_ERR_INVALID_ARG;
	return verify_raw(jws->alg, pk, kc, (const uint8_t *)jws->token, jws->input_len, jws->sig,
	                  jws->sig_len, flags);
}

int
cubeid_jws_verify(const cubeid_jws *jws, EVP_PKEY *pk)
{
	if (jws == NULL || pk == NULL)
		return CUBEID_ERR_INVALID_ARG;
	return jwt_jws_verify_class(jws, pk, jwt_key_class_of(pk), 0);
}

int
cubeid_jws_verify_flags(const cubeid_jws *jws, EVP_PKEY *pk, unsigned flags)
{
	if (jws == NULL || pk == NULL || (flags & ~CUBEID_JWS_ALLOW_HIGH_S) != 0)
		return CUBEID_ERR_INVALID_ARG;
	return verify_raw(jws->alg, pk, jwt_key_class_of(pk), (const uint8_t *)jws->token,
	                  jws->input_len, jws->sig, jws->sig_len, flags);
}

/* DER ECDSA-Sig-Value to raw r||s of field bytes each. */
static int
ecdsa_der_to_raw(const uint8_t *der, size_t der_len, size_t field, uint8_t *raw)
{
	const uint8_t *p = der;
	ECDSA_SIG *es;
	const BIGNUM *r, *s;
	int rc = CUBEID_ERR_CRYPTO;

	es = d2i_ECDSA_SIG(NULL, &p, (long)der_len);
	if (es == NULL)
		return CUBEID_ERR_CRYPTO;
	ECDSA_SIG_get0(es, &r, &s);
	if (BN_bn2binpad(r, raw, (int)field) == (int)field &&
	    BN_bn2binpad(s, raw + field, (int)field) == (int)field)
		rc = CUBEID_OK;
	ECDSA_SIG_free(es);
	return rc;
}

int
cubeid_jws_sign_evp(void *ctx, cubeid_sig_alg alg, const uint8_t *in, size_t in_len, uint8_t *sig,
                    size_t *sig_len)
{
	EVP_PKEY *pk = ctx;
	EVP_MD_CTX *md_ctx = NULL;
	EVP_PKEY_CTX *pctx = NULL;
	const EVP_MD *md = cubeid_sig_alg_md(alg);
	jwt_key_class kc = jwt_key_class_of(pk);
	uint8_t buf[CUBEID_JWS_SIG_MAX + 16];
	size_t n = sizeof(buf), need;
	int rc = CUBEID_ERR_CRYPTO;

	if (pk == NULL || sig_len == NULL || (in == NULL && in_len != 0))
		return CUBEID_ERR_INVALID_ARG;
	if (md == NULL || !class_fits(alg, kc))
		return CUBEID_ERR_JWT_ALG;
	need = cubeid_sig_alg_is_ec(alg) ? 2 * class_field_len(kc) : (size_t)EVP_PKEY_get_size(pk);
	if (sig == NULL) {
		*sig_len = need;
		return CUBEID_OK;
	}
	if (*sig_len < need) {
		*sig_len = need;
		return CUBEID_ERR_BUFFER_TOO_SMALL;
	}
	if ((md_ctx = EVP_MD_CTX_new()) == NULL)
		return CUBEID_ERR_NOMEM;
	if (EVP_DigestSignInit(md_ctx, &pctx, md, NULL, pk) != 1)
		goto out;
	if (cubeid_sig_alg_is_pss(alg) &&
	    (EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) != 1 ||
	     EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST) != 1 ||
	     EVP_PKEY_CTX_set_rsa_mgf1_md(pctx, md) != 1))
		goto out;
	if (EVP_DigestSign(md_ctx, buf, &n, in, in_len) != 1)
		goto out;
	if (cubeid_sig_alg_is_ec(alg)) {
		if ((rc = ecdsa_der_to_raw(buf, n, class_field_len(kc), sig)) != CUBEID_OK ||
		    (rc = ecdsa_high_s(alg, sig, need, true)) < 0)
			goto out;
	} else {
		if (n != need)
			goto out;
		memcpy(sig, buf, n);
	}
	*sig_len = need;
	rc = CUBEID_OK;
out:
	ERR_clear_error();
	EVP_MD_CTX_free(md_ctx);
	return rc;
}

int
cubeid_jws_encode(cubeid_sig_alg alg, const char *kid, const char *typ, const json_t *claims,
                  cubeid_jws_sign_fn sign, void *ctx, char **out)
{
	const char *alg_name = cubeid_jws_alg_name(alg);
	json_t *hdr = NULL;
	char *hdr_s = NULL, *cl_s = NULL, *tok = NULL;
	size_t hdr_n, cl_n, size, o = 0, n, sig_len;
	uint8_t sig[CUBEID_JWS_SIG_MAX];
	int rc;

	if (out == NULL)
		return CUBEID_ERR_INVALID_ARG;
	*out = NULL;
	if (claims == NULL || !json_is_object(claims) || sign == NULL)
		return CUBEID_ERR_INVALID_ARG;
	if (alg_name == NULL)
		return CUBEID_ERR_JWT_ALG;
	/* json_string() refuses invalid UTF-8: such a kid/typ is a bad argument */
	hdr = json_pack("{ss}", "alg", alg_name);
	if (hdr == NULL) {
		rc = CUBEID_ERR_NOMEM;
		goto out;
	}
	if ((kid != NULL && json_object_set_new(hdr, "kid", json_string(kid)) != 0) ||
	    (typ != NULL && json_object_set_new(hdr, "typ", json_string(typ)) != 0)) {
		rc = CUBEID_ERR_INVALID_ARG;
		goto out;
	}
	hdr_s = json_dumps(hdr, JSON_COMPACT | JSON_PRESERVE_ORDER);
	cl_s = json_dumps(claims, JSON_COMPACT | JSON_PRESERVE_ORDER);
	if (hdr_s == NULL || cl_s == NULL) {
		rc = CUBEID_ERR_NOMEM;
		goto out;
	}
	hdr_n = strlen(hdr_s);
	cl_n = strlen(cl_s);
	size = cubeid_b64url_len(hdr_n) + 1 + cubeid_b64url_len(cl_n) + 1 +
	       cubeid_b64url_len(sizeof(sig)) + 1;
	if (size > CUBEID_JWT_MAX + cubeid_b64url_len(sizeof(sig))) {
		rc = CUBEID_ERR_TOO_LARGE;
		goto out;
	}
	if ((tok = malloc(size)) == NULL) {
		rc = CUBEID_ERR_NOMEM;
		goto out;
	}
	cubeid_b64url_encode((const uint8_t *)hdr_s, hdr_n, tok, size, &n);
	o = n;
	tok[o++] = '.';
	cubeid_b64url_encode((const uint8_t *)cl_s, cl_n, tok + o, size - o, &n);
	o += n;
	sig_len = sizeof(sig);
	rc = sign(ctx, alg, (const uint8_t *)tok, o, sig, &sig_len);
	if (rc != CUBEID_OK)
		goto out;
	if (sig_len == 0 || sig_len > sizeof(sig)) {
		rc = CUBEID_ERR_INTERNAL;
		goto out;
	}
	/* ours are low-S whatever the signer (a token's raw r||s, or
	 * OpenSSL) produced, so that verifiers insisting on it accept them */
	if (cubeid_sig_alg_is_ec(alg) && (rc = ecdsa_high_s(alg, sig, sig_len, true)) < 0) {
		if (rc == CUBEID_ERR_INVALID_ARG)
			rc = CUBEID_ERR_INTERNAL; /* a signer broke the length contract */
		goto out;
	}
	tok[o++] = '.';
	cubeid_b64url_encode(sig, sig_len, tok + o, size - o, &n);
	o += n;
	if (o > CUBEID_JWT_MAX) {
		rc = CUBEID_ERR_TOO_LARGE;
		goto out;
	}
	*out = tok;
	tok = NULL;
	rc = CUBEID_OK;
out:
	json_decref(hdr);
	free(hdr_s);
	free(cl_s);
	free(tok);
	return rc;
}
