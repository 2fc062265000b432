/*
 * Signing in the token.
 *
 * The layer hashes the data itself and asks the token to sign the digest:
 * CKM_ECDSA (SoftHSM2 2.6 has no CKM_ECDSA_SHA256), CKM_RSA_PKCS over a
 * DigestInfo, or CKM_RSA_PKCS_PSS.  ECDSA comes back as raw r||s, which is
 * the JWS encoding; DER conversion is offered for X.509.
 */
#include "config.h"

#include "pkcs11/p11-internal.h"

#include <cubeid/log.h>

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/evp.h>

/* DER DigestInfo prefixes (RFC 8017 9.2, note 1). */
static const uint8_t di_sha256[] = {0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01,
                                    0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0x04, 0x20};
static const uint8_t di_sha384[] = {0x30, 0x41, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01,
                                    0x65, 0x03, 0x04, 0x02, 0x02, 0x05, 0x00, 0x04, 0x30};
static const uint8_t di_sha512[] = {0x30, 0x51, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01,
                                    0x65, 0x03, 0x04, 0x02, 0x03, 0x05, 0x00, 0x04, 0x40};

const EVP_MD *
cubeid_sig_alg_md(cubeid_sig_alg alg)
{
	switch (alg) {
	case CUBEID_SIG_ECDSA_SHA256:
	case CUBEID_SIG_RSA_PKCS1_SHA256:
	case CUBEID_SIG_RSA_PSS_SHA256:
		return EVP_sha256();
	case CUBEID_SIG_ECDSA_SHA384:
	case CUBEID_SIG_RSA_PKCS1_SHA384:
	case CUBEID_SIG_RSA_PSS_SHA384:
		return EVP_sha384();
	case CUBEID_SIG_ECDSA_SHA512:
	case CUBEID_SIG_RSA_PKCS1_SHA512:
	case CUBEID_SIG_RSA_PSS_SHA512:
		return EVP_sha512();
	default:
		return NULL;
	}
}

size_t
cubeid_key_sig_size(const cubeid_key *key)
{
	return key->ck_type == CKK_EC ? 2 * key->field_len : key->field_len;
}

bool
cubeid_sig_alg_is_ec(cubeid_sig_alg alg)
{
	return alg == CUBEID_SIG_ECDSA_SHA256 || alg == CUBEID_SIG_ECDSA_SHA384 ||
	       alg == CUBEID_SIG_ECDSA_SHA512;
}

bool
cubeid_sig_alg_is_pss(cubeid_sig_alg alg)
{
	return alg == CUBEID_SIG_RSA_PSS_SHA256 || alg == CUBEID_SIG_RSA_PSS_SHA384 ||
	       alg == CUBEID_SIG_RSA_PSS_SHA512;
}

struct sign_arg {
	const cubeid_key *key;
	CK_MECHANISM *mech;
	const uint8_t *in;
	size_t in_len;
	uint8_t *sig;
	CK_ULONG sig_len;
};

static int
sign_fn(cubeid_token *tok, CK_SESSION_HANDLE s, void *argp, CK_RV *rvp)
{
	struct sign_arg *a = argp;
	CK_ULONG len = a->sig_len;
	CK_RV rv;

	if ((rv = tok->f->C_SignInit(s, a->mech, p11_key_handle(a->key))) != CKR_OK) {
		*rvp = rv;
		return p11_err(rv);
	}
	rv = tok->f->C_Sign(s, (CK_BYTE_PTR)a->in, a->in_len, a->sig, &len);
	if (rv != CKR_OK) {
		*rvp = rv;
		return p11_err(rv);
	}
	a->sig_len = len;
	return CUBEID_OK;
}

/* Sign in with a bare mechanism (no parameters): used by the OpenSSL bridge,
 * where OpenSSL has already built the DigestInfo or the padded block. */
int p11_sign_mech(const cubeid_key *key, CK_MECHANISM_TYPE m, const uint8_t *in, size_t in_len,
                  uint8_t *sig, size_t *sig_len);

int
p11_sign_mech(const cubeid_key *key, CK_MECHANISM_TYPE m, const uint8_t *in, size_t in_len,
              uint8_t *sig, size_t *sig_len)
{
	CK_MECHANISM mech = {m, NULL, 0};
	struct sign_arg a;
	int r;

	if (*sig_len < cubeid_key_sig_size(key))
		return CUBEID_ERR_BUFFER_TOO_SMALL;
	if (!cubeid_token_has_mechanism(key->tok, m)) {
		cubeid_error("token %s does not offer %s", key->tok->label, p11_mech_name(m));
		return CUBEID_ERR_P11_MECHANISM;
	}
	a.key = key;
	a.mech = &mech;
	a.in = in;
	a.in_len = in_len;
	a.sig = sig;
	a.sig_len = *sig_len;
	if ((r = p11_run(key->tok, key, "signing", sign_fn, &a)) == CUBEID_OK)
		*sig_len = a.sig_len;
	return r;
}

int
cubeid_key_sign_digest(const cubeid_key *key, cubeid_sig_alg alg, const uint8_t *digest,
                       size_t digest_len, uint8_t *sig, size_t *sig_len)
{
	const EVP_MD *md = cubeid_sig_alg_md(alg);
	CK_RSA_PKCS_PSS_PARAMS pss;
	CK_MECHANISM mech = {0, NULL, 0};
	struct sign_arg a;
	uint8_t di[19 + 64];
	const uint8_t *prefix = NULL;
	size_t need, plen = 0;
	int r;

	if (key == NULL || sig_len == NULL || md == NULL || digest == NULL)
		return CUBEID_ERR_INVALID_ARG;
	if (digest_len != (size_t)EVP_MD_get_size(md))
		return CUBEID_ERR_INVALID_ARG;
	if (cubeid_sig_alg_is_ec(alg) != (key->ck_type == CKK_EC)) {
		cubeid_error("key '%s' is %s and cannot make this signature", key->label,
		             key->ck_type == CKK_EC ? "EC" : "RSA");
		return CUBEID_ERR_P11_KEY;
	}
	need = cubeid_key_sig_size(key);
	if (sig == NULL) {
		*sig_len = need;
		return CUBEID_OK;
	}
	if (*sig_len < need) {
		*sig_len = need;
		return CUBEID_ERR_BUFFER_TOO_SMALL;
	}
	a.in = digest;
	a.in_len = digest_len;
	if (cubeid_sig_alg_is_ec(alg)) {
		mech.mechanism = CKM_ECDSA;
	} else if (cubeid_sig_alg_is_pss(alg)) {
		mech.mechanism = CKM_RSA_PKCS_PSS;
		pss.hashAlg = digest_len == 32   ? CKM_SHA256
		              : digest_len == 48 ? CKM_SHA384
		                                 : CKM_SHA512;
		pss.mgf = digest_len == 32   ? CKG_MGF1_SHA256
		          : digest_len == 48 ? CKG_MGF1_SHA384
		                             : CKG_MGF1_SHA512;
		pss.sLen = digest_len;
		mech.pParameter = &pss;
		mech.ulParameterLen = sizeof(pss);
	} else {
		mech.mechanism = CKM_RSA_PKCS;
		prefix = digest_len == 32 ? di_sha256 : digest_len == 48 ? di_sha384 : di_sha512;
		plen = sizeof(di_sha256);
		memcpy(di, prefix, plen);
		memcpy(di + plen, digest, digest_len);
		a.in = di;
		a.in_len = plen + digest_len;
	}
	if (!cubeid_token_has_mechanism(key->tok, mech.mechanism)) {
		cubeid_error("token %s does not offer %s", key->tok->label,
		             p11_mech_name(mech.mechanism));
		return CUBEID_ERR_P11_MECHANISM;
	}
	a.key = key;
	a.mech = &mech;
	a.sig = sig;
	a.sig_len = *sig_len;
	if ((r = p11_run(key->tok, key, "signing", sign_fn, &a)) != CUBEID_OK)
		return r;
	if (cubeid_sig_alg_is_ec(alg) && a.sig_len != need) {
		cubeid_error("token returned a %lu-byte ECDSA signature, expected %zu",
		             (unsigned long)a.sig_len, need);
		return CUBEID_ERR_P11_GENERAL;
	}
	*sig_len = a.sig_len;
	return CUBEID_OK;
}

/* The digests, fetched once: EVP_sha256() and friends make OpenSSL 3
 * fetch the implementation again on every EVP_Digest(), which cost more
 * than hashing a JWT's signing input (bench/workload-api, callgrind). */
static EVP_MD *md_fetched[3];
static pthread_once_t md_once = PTHREAD_ONCE_INIT;

static void
md_fetch(void)
{
	md_fetched[0] = EVP_MD_fetch(NULL, "SHA256", NULL);
	md_fetched[1] = EVP_MD_fetch(NULL, "SHA384", NULL);
	md_fetched[2] = EVP_MD_fetch(NULL, "SHA512", NULL);
}

/* cubeid_sig_alg_md(alg), prefetched when it could be. */
static const EVP_MD *
sig_alg_md_fetched(cubeid_sig_alg alg)
{
	const EVP_MD *md = cubeid_sig_alg_md(alg);
	int i = md == EVP_sha256() ? 0 : md == EVP_sha384() ? 1 : md == EVP_sha512() ? 2 : -1;

	pthread_once(&md_once, md_fetch);
	return i >= 0 && md_fetched[i] != NULL ? md_fetched[i] : md;
}

int
cubeid_key_sign(const cubeid_key *key, cubeid_sig_alg alg, const uint8_t *data, size_t data_len,
                uint8_t *sig, size_t *sig_len)
{
	const EVP_MD *md = sig_alg_md_fetched(alg);
	uint8_t digest[EVP_MAX_MD_SIZE];
	unsigned int dlen;

	if (key == NULL || sig_len == NULL || md == NULL || (data == NULL && data_len > 0))
		return CUBEID_ERR_INVALID_ARG;
	if (sig == NULL) {
		*sig_len = cubeid_key_sig_size(key);
		return CUBEID_OK;
	}
	if (EVP_Digest(data, data_len, digest, &dlen, md, NULL) != 1)
		return CUBEID_ERR_CRYPTO;
	return cubeid_key_sign_digest(key, alg, digest, dlen, sig, sig_len);
}

int
cubeid_ecdsa_raw_to_der(const uint8_t *raw, size_t raw_len, uint8_t **der, size_t *der_len)
{
	ECDSA_SIG *es = NULL;
	BIGNUM *r = NULL, *s = NULL;
	unsigned char *p = NULL;
	int n, ret = CUBEID_ERR_CRYPTO;

	*der = NULL;
	*der_len = 0;
	if (raw == NULL || raw_len == 0 || raw_len % 2 != 0 || raw_len > 132)
		return CUBEID_ERR_INVALID_ARG;
	if ((es = ECDSA_SIG_new()) == NULL ||
	    (r = BN_bin2bn(raw, (int)(raw_len / 2), NULL)) == NULL ||
	    (s = BN_bin2bn(raw + raw_len / 2, (int)(raw_len / 2), NULL)) == NULL ||
	    ECDSA_SIG_set0(es, r, s) != 1)
		goto out;
	r = s = NULL; /* owned by es */
	if ((n = i2d_ECDSA_SIG(es, &p)) <= 0)
		goto out;
	*der = p;
	*der_len = (size_t)n;
	ret = CUBEID_OK;
out:
	BN_free(r);
	BN_free(s);
	ECDSA_SIG_free(es);
	return ret;
}

int
cubeid_ecdsa_der_to_raw(const uint8_t *der, size_t der_len, size_t field_len, uint8_t *raw,
                        size_t *raw_len)
{
	const unsigned char *p = der;
	const BIGNUM *r, *s;
	ECDSA_SIG *es;
	int ret = CUBEID_ERR_PARSE;

	if (der == NULL || raw_len == NULL || field_len == 0 || field_len > 66)
		return CUBEID_ERR_INVALID_ARG;
	if (raw == NULL || *raw_len < 2 * field_len) {
		*raw_len = 2 * field_len;
		return raw == NULL ? CUBEID_OK : CUBEID_ERR_BUFFER_TOO_SMALL;
	}
	if (der_len > 256 || (es = d2i_ECDSA_SIG(NULL, &p, (long)der_len)) == NULL)
		return CUBEID_ERR_PARSE;
	if (p != der + der_len)
		goto out; /* trailing bytes */
	ECDSA_SIG_get0(es, &r, &s);
	if (BN_bn2binpad(r, raw, (int)field_len) < 0 ||
	    BN_bn2binpad(s, raw + field_len, (int)field_len) < 0)
		goto out;
	*raw_len = 2 * field_len;
	ret = CUBEID_OK;
out:
	ECDSA_SIG_free(es);
	return ret;
}
