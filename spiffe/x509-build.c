/*
 * Helpers for building certificates: random serials, validity, extensions
 * and subjectAltNames, signing through the token bridge.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/err.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include <cubeid/log.h>

#include "spiffe/x509-internal.h"

int
x509_ossl_error(const char *what)
{
	unsigned long e;
	char buf[256];

	while ((e = ERR_get_error()) != 0) {
		ERR_error_string_n(e, buf, sizeof(buf));
		cubeid_debug("%s: %s", what, buf);
	}
	return CUBEID_ERR_CRYPTO;
}

int64_t
x509_now(int64_t now)
{
	return now != 0 ? now : (int64_t)time(NULL);
}

int
x509_set_random_serial(X509 *x)
{
	uint8_t b[16];
	ASN1_INTEGER *ai = NULL;
	BIGNUM *bn = NULL;
	int rc = CUBEID_ERR_CRYPTO;

	/* 127 random bits, positive, first byte non-zero: always 16 DER
	 * content bytes (RFC 5280 4.1.2.2 allows up to 20). */
	do {
		if (RAND_bytes(b, sizeof(b)) != 1)
			return x509_ossl_error("RAND_bytes");
		b[0] &= 0x7f;
	} while (b[0] == 0);
	if ((bn = BN_bin2bn(b, sizeof(b), NULL)) == NULL)
		goto out;
	if ((ai = BN_to_ASN1_INTEGER(bn, NULL)) == NULL)
		goto out;
	if (X509_set_serialNumber(x, ai) != 1)
		goto out;
	rc = CUBEID_OK;
out:
	OPENSSL_cleanse(b, sizeof(b));
	ASN1_INTEGER_free(ai);
	BN_free(bn);
	if (rc != CUBEID_OK)
		x509_ossl_error("serial");
	return rc;
}

int
x509_set_validity(X509 *x, int64_t not_before, int64_t not_after)
{
	time_t nb = (time_t)not_before, na = (time_t)not_after;

	if (X509_time_adj_ex(X509_getm_notBefore(x), 0, 0, &nb) == NULL ||
	    X509_time_adj_ex(X509_getm_notAfter(x), 0, 0, &na) == NULL)
		return x509_ossl_error("validity");
	return CUBEID_OK;
}

int
x509_time_to_epoch(const ASN1_TIME *t, int64_t *out)
{
	struct tm tm;

	*out = 0;
	if (t == NULL || ASN1_TIME_to_tm(t, &tm) != 1)
		return CUBEID_ERR_X509;
	*out = (int64_t)timegm(&tm);
	return CUBEID_OK;
}

int
x509_add_ext_conf(X509 *x, X509V3_CTX *ctx, int nid, const char *value)
{
	X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, ctx, nid, value);
	int ok;

	if (ext == NULL)
		return x509_ossl_error("extension");
	ok = X509_add_ext(x, ext, -1);
	X509_EXTENSION_free(ext);
	return ok == 1 ? CUBEID_OK : x509_ossl_error("extension");
}

static int
push_name(GENERAL_NAMES *gens, int type, const char *value)
{
	GENERAL_NAME *gn = GENERAL_NAME_new();
	ASN1_IA5STRING *s = ASN1_IA5STRING_new();

	if (gn == NULL || s == NULL || ASN1_STRING_set(s, value, (int)strlen(value)) != 1) {
		GENERAL_NAME_free(gn);
		ASN1_IA5STRING_free(s);
		return CUBEID_ERR_NOMEM;
	}
	GENERAL_NAME_set0_value(gn, type, s);
	if (sk_GENERAL_NAME_push(gens, gn) <= 0) {
		GENERAL_NAME_free(gn);
		return CUBEID_ERR_NOMEM;
	}
	return CUBEID_OK;
}

int
x509_make_san(const char *uri, const char *const *dns, size_t n_dns, GENERAL_NAMES **out)
{
	GENERAL_NAMES *gens = sk_GENERAL_NAME_new_null();
	size_t i;
	int rc = CUBEID_OK;

	*out = NULL;
	if (gens == NULL)
		return CUBEID_ERR_NOMEM;
	if (uri != NULL)
		rc = push_name(gens, GEN_URI, uri);
	for (i = 0; rc == CUBEID_OK && i < n_dns; i++)
		rc = push_name(gens, GEN_DNS, dns[i]);
	if (rc != CUBEID_OK) {
		GENERAL_NAMES_free(gens);
		return rc;
	}
	*out = gens;
	return CUBEID_OK;
}

int
x509_add_san(X509 *x, const char *uri, const char *const *dns, size_t n_dns, bool critical)
{
	GENERAL_NAMES *gens = NULL;
	int rc;

	if ((rc = x509_make_san(uri, dns, n_dns, &gens)) != CUBEID_OK)
		return rc;
	if (X509_add1_ext_i2d(x, NID_subject_alt_name, gens, critical ? 1 : 0,
	                      X509V3_ADD_DEFAULT) != 1)
		rc = x509_ossl_error("subjectAltName");
	GENERAL_NAMES_free(gens);
	return rc;
}

const EVP_MD *
x509_sign_md(EVP_PKEY *pk)
{
	if (EVP_PKEY_get_base_id(pk) == EVP_PKEY_EC && EVP_PKEY_get_bits(pk) > 256)
		return EVP_sha384();
	return EVP_sha256();
}

int
x509_sign_with(X509 *x, EVP_PKEY *signer)
{
	if (X509_sign(x, signer, x509_sign_md(signer)) <= 0)
		return x509_ossl_error("X509_sign");
	return CUBEID_OK;
}

cubeid_ca *
ca_alloc(void)
{
	return calloc(1, sizeof(struct cubeid_ca));
}
