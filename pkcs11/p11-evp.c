/*
 * The OpenSSL bridge: an EVP_PKEY whose private operations run in the
 * token, so OpenSSL can sign certificates, CSRs, digests and TLS handshakes
 * with a key it never sees.
 *
 * This is the approach of libp11's engine (an EC_KEY_METHOD and an
 * RSA_METHOD that call C_Sign) without libp11 itself: libp11 0.4.12 cannot
 * generate EC keys and its key enumeration fails on a token that holds an
 * Ed25519 object (see docs/pkcs11.md).  OpenSSL 3 marks these method APIs
 * deprecated but keeps them, and routes keys with a foreign method through
 * them; a provider would replace this file if they are ever removed.
 */
#define OPENSSL_SUPPRESS_DEPRECATED 1

#include "config.h"

#include "pkcs11/p11-internal.h"

#include <cubeid/log.h>

#include <stdlib.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>

int p11_sign_mech(const cubeid_key *key, CK_MECHANISM_TYPE mech, const uint8_t *in, size_t in_len,
                  uint8_t *sig, size_t *sig_len);

static pthread_once_t bridge_once = PTHREAD_ONCE_INIT;
static EC_KEY_METHOD *ec_method;
static RSA_METHOD *rsa_method;
static int ec_idx = -1, rsa_idx = -1;

static void
ex_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl, void *argp)
{
	cubeid_key_free(ptr);
}

static ECDSA_SIG *
ec_sign_sig(const unsigned char *dgst, int dlen, const BIGNUM *kinv, const BIGNUM *rp, EC_KEY *ec)
{
	cubeid_key *k = EC_KEY_get_ex_data(ec, ec_idx);
	uint8_t raw[2 * 66];
	size_t rlen = sizeof(raw);
	ECDSA_SIG *sig = NULL;
	BIGNUM *r = NULL, *s = NULL;
	int rc;

	if (k == NULL || dlen <= 0 || dlen > 64)
		return NULL;
	/* CKM_ECDSA signs whatever digest it is given (truncated to the
	 * order size, as ECDSA requires), so any hash works on any curve. */
	if ((rc = p11_sign_mech(k, CKM_ECDSA, dgst, (size_t)dlen, raw, &rlen)) != CUBEID_OK) {
		cubeid_error("token ECDSA signature failed: %s", cubeid_strerror(rc));
		return NULL;
	}
	if (rlen % 2 != 0 || (sig = ECDSA_SIG_new()) == NULL ||
	    (r = BN_bin2bn(raw, (int)(rlen / 2), NULL)) == NULL ||
	    (s = BN_bin2bn(raw + rlen / 2, (int)(rlen / 2), NULL)) == NULL ||
	    ECDSA_SIG_set0(sig, r, s) != 1) {
		BN_free(r);
		BN_free(s);
		ECDSA_SIG_free(sig);
		return NULL;
	}
	return sig;
}

static int
ec_sign(int type, const unsigned char *dgst, int dlen, unsigned char *out, unsigned int *outlen,
        const BIGNUM *kinv, const BIGNUM *r, EC_KEY *ec)
{
	ECDSA_SIG *sig = ec_sign_sig(dgst, dlen, kinv, r, ec);
	int n;

	*outlen = 0;
	if (sig == NULL)
		return 0;
	n = i2d_ECDSA_SIG(sig, &out);
	ECDSA_SIG_free(sig);
	if (n <= 0)
		return 0;
	*outlen = (unsigned int)n;
	return 1;
}

static int
ec_sign_setup(EC_KEY *ec, BN_CTX *ctx, BIGNUM **kinv, BIGNUM **r)
{
	return 1; /* the token picks its own nonce */
}

static int
rsa_priv_enc(int flen, const unsigned char *from, unsigned char *to, RSA *rsa, int padding)
{
	cubeid_key *k = RSA_get_ex_data(rsa, rsa_idx);
	size_t len = (size_t)RSA_size(rsa);
	CK_MECHANISM_TYPE mech;
	int rc;

	if (k == NULL || flen < 0)
		return -1;
	switch (padding) {
	case RSA_PKCS1_PADDING:
		mech = CKM_RSA_PKCS; /* from is a DigestInfo */
		break;
	case RSA_NO_PADDING:
		mech = CKM_RSA_X_509; /* OpenSSL did the (PSS) padding */
		break;
	default:
		cubeid_error("token RSA: padding mode %d is not supported", padding);
		return -1;
	}
	if ((rc = p11_sign_mech(k, mech, from, (size_t)flen, to, &len)) != CUBEID_OK) {
		cubeid_error("token RSA signature failed: %s", cubeid_strerror(rc));
		return -1;
	}
	return (int)len;
}

static void
bridge_init(void)
{
	int (*osign)(int, const unsigned char *, int, unsigned char *, unsigned int *,
	             const BIGNUM *, const BIGNUM *, EC_KEY *) = NULL;
	int (*osetup)(EC_KEY *, BN_CTX *, BIGNUM **, BIGNUM **) = NULL;
	ECDSA_SIG *(*osig)(const unsigned char *, int, const BIGNUM *, const BIGNUM *, EC_KEY *) =
	        NULL;

	ec_idx = EC_KEY_get_ex_new_index(0, "cubeid key", NULL, NULL, ex_free);
	rsa_idx = RSA_get_ex_new_index(0, "cubeid key", NULL, NULL, ex_free);
	if ((ec_method = EC_KEY_METHOD_new(EC_KEY_OpenSSL())) != NULL) {
		EC_KEY_METHOD_get_sign(EC_KEY_OpenSSL(), &osign, &osetup, &osig);
		EC_KEY_METHOD_set_sign(ec_method, ec_sign, ec_sign_setup, ec_sign_sig);
	}
	if ((rsa_method = RSA_meth_dup(RSA_PKCS1_OpenSSL())) != NULL) {
		RSA_meth_set1_name(rsa_method, "cubeid token RSA");
		RSA_meth_set_priv_enc(rsa_method, rsa_priv_enc);
		RSA_meth_set_priv_dec(rsa_method, NULL);
	}
}

int
cubeid_key_evp(cubeid_key *key, EVP_PKEY **out)
{
	EVP_PKEY *pk = NULL;
	EC_KEY *ec = NULL, *pub_ec = NULL;
	RSA *rsa = NULL;
	BIGNUM *n = NULL, *e = NULL;
	int r = CUBEID_ERR_CRYPTO;

	*out = NULL;
	if (key == NULL || key->pub_pkey == NULL)
		return CUBEID_ERR_INVALID_ARG;
	pthread_once(&bridge_once, bridge_init);
	if (ec_method == NULL || rsa_method == NULL || ec_idx < 0 || rsa_idx < 0)
		return CUBEID_ERR_CRYPTO;
	if ((pk = EVP_PKEY_new()) == NULL)
		return CUBEID_ERR_NOMEM;
	if (key->ck_type == CKK_EC) {
		if ((pub_ec = EVP_PKEY_get1_EC_KEY(key->pub_pkey)) == NULL ||
		    (ec = EC_KEY_new()) == NULL || EC_KEY_set_method(ec, ec_method) != 1 ||
		    EC_KEY_set_group(ec, EC_KEY_get0_group(pub_ec)) != 1 ||
		    EC_KEY_set_public_key(ec, EC_KEY_get0_public_key(pub_ec)) != 1)
			goto out;
		if (EC_KEY_set_ex_data(ec, ec_idx, cubeid_key_ref(key)) != 1) {
			cubeid_key_free(key);
			goto out;
		}
		if (EVP_PKEY_assign_EC_KEY(pk, ec) != 1)
			goto out;
		ec = NULL;
	} else {
		if (!EVP_PKEY_get_bn_param(key->pub_pkey, OSSL_PKEY_PARAM_RSA_N, &n) ||
		    !EVP_PKEY_get_bn_param(key->pub_pkey, OSSL_PKEY_PARAM_RSA_E, &e) ||
		    (rsa = RSA_new_method(NULL)) == NULL || RSA_set_method(rsa, rsa_method) != 1 ||
		    RSA_set0_key(rsa, n, e, NULL) != 1)
			goto out;
		n = e = NULL;
		if (RSA_set_ex_data(rsa, rsa_idx, cubeid_key_ref(key)) != 1) {
			cubeid_key_free(key);
			goto out;
		}
		if (EVP_PKEY_assign_RSA(pk, rsa) != 1)
			goto out;
		rsa = NULL;
	}
	*out = pk;
	pk = NULL;
	r = CUBEID_OK;
out:
	EC_KEY_free(pub_ec);
	EC_KEY_free(ec);
	RSA_free(rsa);
	BN_free(n);
	BN_free(e);
	EVP_PKEY_free(pk);
	return r;
}
