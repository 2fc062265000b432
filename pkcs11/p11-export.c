/*
 * Exporting keys: public halves in DER or PEM (a JWK is spiffe/'s:
 * cubeid_key_export_jwk()); the private half only of
 * a key that was generated exportable (a workload key, see docs/pkcs11.md).
 */
#include "config.h"

#include "pkcs11/p11-internal.h"

#include <cubeid/log.h>

#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

int
cubeid_key_export_public(const cubeid_key *key, cubeid_pub_format fmt, uint8_t **out, size_t *len)
{
	unsigned char *der = NULL, *p;
	BIO *bio = NULL;
	BUF_MEM *bm;
	int n, r = CUBEID_ERR_CRYPTO;

	*out = NULL;
	*len = 0;
	if (key == NULL || key->pub_pkey == NULL)
		return CUBEID_ERR_INVALID_ARG;
	switch (fmt) {
	case CUBEID_PUB_DER:
		if ((n = i2d_PUBKEY(key->pub_pkey, NULL)) <= 0)
			return CUBEID_ERR_CRYPTO;
		if ((der = malloc((size_t)n)) == NULL)
			return CUBEID_ERR_NOMEM;
		p = der;
		if (i2d_PUBKEY(key->pub_pkey, &p) != n) {
			free(der);
			return CUBEID_ERR_CRYPTO;
		}
		*out = der;
		*len = (size_t)n;
		return CUBEID_OK;
	case CUBEID_PUB_PEM:
		if ((bio = BIO_new(BIO_s_mem())) == NULL)
			return CUBEID_ERR_NOMEM;
		if (PEM_write_bio_PUBKEY(bio, key->pub_pkey) != 1)
			goto out;
		BIO_get_mem_ptr(bio, &bm);
		if ((*out = malloc(bm->length + 1)) == NULL) {
			r = CUBEID_ERR_NOMEM;
			goto out;
		}
		memcpy(*out, bm->data, bm->length);
		(*out)[bm->length] = '\0';
		*len = bm->length;
		r = CUBEID_OK;
		break;
	default:
		return CUBEID_ERR_INVALID_ARG;
	}
out:
	BIO_free(bio);
	return r;
}

struct priv_arg {
	const cubeid_key *key;
	EVP_PKEY *pk; /* out */
};

static const CK_ATTRIBUTE_TYPE rsa_attrs[] = {
        CKA_PRIVATE_EXPONENT, CKA_PRIME_1,    CKA_PRIME_2,
        CKA_EXPONENT_1,       CKA_EXPONENT_2, CKA_COEFFICIENT,
};
static const char *const rsa_params[] = {
        OSSL_PKEY_PARAM_RSA_D,         OSSL_PKEY_PARAM_RSA_FACTOR1,
        OSSL_PKEY_PARAM_RSA_FACTOR2,   OSSL_PKEY_PARAM_RSA_EXPONENT1,
        OSSL_PKEY_PARAM_RSA_EXPONENT2, OSSL_PKEY_PARAM_RSA_COEFFICIENT1,
};

static int
priv_fn(cubeid_token *tok, CK_SESSION_HANDLE s, void *argp, CK_RV *rvp)
{
	struct priv_arg *a = argp;
	const cubeid_key *k = a->key;
	OSSL_PARAM_BLD *bld = NULL;
	OSSL_PARAM *params = NULL;
	EVP_PKEY_CTX *ctx = NULL;
	BIGNUM *bn[8] = {0};
	uint8_t *v = NULL;
	size_t vlen, i;
	CK_RV rv;
	int r = CUBEID_ERR_CRYPTO;

	a->pk = NULL;
	if ((bld = OSSL_PARAM_BLD_new()) == NULL)
		return CUBEID_ERR_NOMEM;
	/* OSSL_PARAM_BLD keeps pointers to group and point until
	 * OSSL_PARAM_BLD_to_param(), so they must live as long as bld. */
	char group[32];
	unsigned char point[133];
	size_t plen = 0;

	if (k->ck_type == CKK_EC) {
		if ((rv = p11_attr_get(tok, s, p11_key_handle(k), CKA_VALUE, &v, &vlen)) !=
		    CKR_OK) {
			*rvp = rv;
			r = p11_err(rv);
			goto out;
		}
		bn[0] = BN_bin2bn(v, (int)vlen, NULL);
		if (bn[0] == NULL ||
		    !EVP_PKEY_get_utf8_string_param(k->pub_pkey, OSSL_PKEY_PARAM_GROUP_NAME, group,
		                                    sizeof(group), NULL) ||
		    !EVP_PKEY_get_octet_string_param(k->pub_pkey, OSSL_PKEY_PARAM_PUB_KEY, point,
		                                     sizeof(point), &plen) ||
		    !OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, group, 0) ||
		    !OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, point, plen) ||
		    !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_PRIV_KEY, bn[0]))
			goto out;
		ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
	} else {
		if (!EVP_PKEY_get_bn_param(k->pub_pkey, OSSL_PKEY_PARAM_RSA_N, &bn[6]) ||
		    !EVP_PKEY_get_bn_param(k->pub_pkey, OSSL_PKEY_PARAM_RSA_E, &bn[7]) ||
		    !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, bn[6]) ||
		    !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, bn[7]))
			goto out;
		for (i = 0; i < 6; i++) {
			rv = p11_attr_get(tok, s, p11_key_handle(k), rsa_attrs[i], &v, &vlen);
			if (rv != CKR_OK) {
				*rvp = rv;
				r = p11_err(rv);
				goto out;
			}
			bn[i] = BN_bin2bn(v, (int)vlen, NULL);
			OPENSSL_cleanse(v, vlen);
			free(v);
			v = NULL;
			if (bn[i] == NULL || !OSSL_PARAM_BLD_push_BN(bld, rsa_params[i], bn[i]))
				goto out;
		}
		ctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL);
	}
	if (ctx == NULL || (params = OSSL_PARAM_BLD_to_param(bld)) == NULL ||
	    EVP_PKEY_fromdata_init(ctx) <= 0 ||
	    EVP_PKEY_fromdata(ctx, &a->pk, EVP_PKEY_KEYPAIR, params) <= 0) {
		a->pk = NULL;
		goto out;
	}
	r = CUBEID_OK;
out:
	if (v != NULL) {
		OPENSSL_cleanse(v, vlen);
		free(v);
	}
	for (i = 0; i < 8; i++)
		BN_clear_free(bn[i]);
	OSSL_PARAM_free(params) /* clears the secure block holding the private values */;
	OSSL_PARAM_BLD_free(bld);
	EVP_PKEY_CTX_free(ctx);
	return r;
}

int
cubeid_key_export_private(const cubeid_key *key, EVP_PKEY **out)
{
	struct priv_arg a = {key, NULL};
	int r;

	*out = NULL;
	if (key == NULL)
		return CUBEID_ERR_INVALID_ARG;
	if (!key->exportable) {
		cubeid_error("key '%s' was generated non-exportable; its private half never "
		             "leaves the token",
		             key->label);
		return CUBEID_ERR_P11_SENSITIVE;
	}
	if ((r = p11_run(key->tok, key, "exporting private key", priv_fn, &a)) == CUBEID_OK)
		*out = a.pk;
	return r;
}
