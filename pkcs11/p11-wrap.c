/*
 * One key in several tokens, never in clear outside one: C_WrapKey in the
 * enrolment token, C_UnwrapKey in each node's.  Only the token work is
 * here, on raw blobs (pkcs11/p11-wrap.h); the document that carries them,
 * with its kids, is spiffe/key-wrap-doc.c (<cubeid/key-wrap.h>).
 */
#include "config.h"

#include "pkcs11/p11-internal.h"
#include "pkcs11/p11-wrap.h"

#include <cubeid/log.h>

#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/x509.h>

#define BLOB_MAX P11_WRAP_BLOB_MAX

static const CK_BYTE f4[] = {0x01, 0x00, 0x01};

/* Unsupported function or mechanism: the token cannot do this at all. */
static int
wrap_err(const char *what, CK_RV rv)
{
	if (rv == CKR_FUNCTION_NOT_SUPPORTED || rv == CKR_MECHANISM_INVALID ||
	    rv == CKR_MECHANISM_PARAM_INVALID || rv == CKR_KEY_FUNCTION_NOT_PERMITTED ||
	    rv == CKR_KEY_NOT_WRAPPABLE || rv == CKR_ATTRIBUTE_VALUE_INVALID) {
		cubeid_error("%s: the token cannot do it (%s)", what, p11_rv_name(rv));
		return CUBEID_ERR_UNSUPPORTED;
	}
	return p11_fail(what, rv);
}

/* n and e of an RSA key, big-endian (caller frees both). */
static int
rsa_parts(EVP_PKEY *pk, uint8_t **n, size_t *nl, uint8_t **e, size_t *el)
{
	BIGNUM *bn = NULL, *be = NULL;
	int rc = CUBEID_ERR_CRYPTO;

	*n = *e = NULL;
	if (pk == NULL || !EVP_PKEY_is_a(pk, "RSA") || EVP_PKEY_get_bits(pk) < 2048 ||
	    EVP_PKEY_get_bits(pk) > 8192)
		return CUBEID_ERR_INVALID_ARG;
	if (EVP_PKEY_get_bn_param(pk, OSSL_PKEY_PARAM_RSA_N, &bn) != 1 ||
	    EVP_PKEY_get_bn_param(pk, OSSL_PKEY_PARAM_RSA_E, &be) != 1)
		goto out;
	*nl = (size_t)BN_num_bytes(bn);
	*el = (size_t)BN_num_bytes(be);
	if ((*n = malloc(*nl)) == NULL || (*e = malloc(*el)) == NULL) {
		free(*n);
		*n = NULL;
		rc = CUBEID_ERR_NOMEM;
		goto out;
	}
	BN_bn2bin(bn, *n);
	BN_bn2bin(be, *e);
	rc = CUBEID_OK;
out:
	BN_free(bn);
	BN_free(be);
	ERR_clear_error();
	return rc;
}

/* ---- generation ------------------------------------------------------- */

struct gen_arg {
	const char *label;
	bool wrapping; /* the node's unwrap-only pair, else the cluster signing key */
	uint8_t id[20];
};

static int
gen_fn(cubeid_token *tok, CK_SESSION_HANDLE s, void *argp, CK_RV *rvp)
{
	struct gen_arg *a = argp;
	CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
	CK_ULONG bits = a->wrapping ? 3072 : 2048;
	CK_MECHANISM mech = {CKM_RSA_PKCS_KEY_PAIR_GEN, NULL, 0};
	CK_ATTRIBUTE pub[P11_GEN_TEMPLATE_MAX], priv[P11_GEN_TEMPLATE_MAX];
	CK_ULONG np = 0, nv = 0;
	CK_OBJECT_HANDLE hpub, hpriv;
	CK_RV rv;

	/* one use each: the wrapping pair wraps and unwraps, the cluster key
	 * signs (p11_generate_key_pair() adds no encrypt/decrypt) */
	pub[np++] = (CK_ATTRIBUTE){CKA_TOKEN, &yes, sizeof(yes)};
	pub[np++] = (CK_ATTRIBUTE){a->wrapping ? CKA_WRAP : CKA_VERIFY, &yes, sizeof(yes)};
	pub[np++] = (CK_ATTRIBUTE){a->wrapping ? CKA_VERIFY : CKA_WRAP, &no, sizeof(no)};
	pub[np++] = (CK_ATTRIBUTE){CKA_LABEL, (void *)a->label, strlen(a->label)};
	pub[np++] = (CK_ATTRIBUTE){CKA_ID, a->id, sizeof(a->id)};
	pub[np++] = (CK_ATTRIBUTE){CKA_MODULUS_BITS, &bits, sizeof(bits)};
	pub[np++] = (CK_ATTRIBUTE){CKA_PUBLIC_EXPONENT, (void *)f4, sizeof(f4)};
	priv[nv++] = (CK_ATTRIBUTE){CKA_TOKEN, &yes, sizeof(yes)};
	priv[nv++] = (CK_ATTRIBUTE){CKA_PRIVATE, &yes, sizeof(yes)};
	priv[nv++] = (CK_ATTRIBUTE){a->wrapping ? CKA_UNWRAP : CKA_SIGN, &yes, sizeof(yes)};
	priv[nv++] = (CK_ATTRIBUTE){a->wrapping ? CKA_SIGN : CKA_UNWRAP, &no, sizeof(no)};
	priv[nv++] = (CK_ATTRIBUTE){CKA_DERIVE, &no, sizeof(no)};
	priv[nv++] = (CK_ATTRIBUTE){CKA_SENSITIVE, &yes, sizeof(yes)};
	/* the cluster key leaves its token only wrapped (it is sensitive);
	 * the node's wrapping key never leaves */
	priv[nv++] = (CK_ATTRIBUTE){CKA_EXTRACTABLE, a->wrapping ? &no : &yes, sizeof(yes)};
	priv[nv++] = (CK_ATTRIBUTE){CKA_LABEL, (void *)a->label, strlen(a->label)};
	priv[nv++] = (CK_ATTRIBUTE){CKA_ID, a->id, sizeof(a->id)};
	rv = p11_generate_key_pair(tok, s, &mech, pub, np, priv, nv, &hpub, &hpriv);
	if (rv != CKR_OK) {
		*rvp = rv;
		return wrap_err(a->wrapping ? "generating the wrapping key"
		                            : "generating the cluster key",
		                rv);
	}
	return CUBEID_OK;
}

static int
generate(cubeid_token *tok, const char *label, bool wrapping, cubeid_key **out)
{
	struct gen_arg a = {label, wrapping, {0}};
	int rc;

	*out = NULL;
	if (tok == NULL || label == NULL || label[0] == '\0')
		return CUBEID_ERR_INVALID_ARG;
	if (cubeid_key_find(tok, label, NULL, 0, out) == CUBEID_OK) {
		cubeid_key_free(*out);
		*out = NULL;
		return CUBEID_ERR_EXISTS;
	}
	if (RAND_bytes(a.id, sizeof(a.id)) != 1)
		return CUBEID_ERR_CRYPTO;
	if ((rc = p11_run(tok, NULL, "generating a key", gen_fn, &a)) != CUBEID_OK)
		return rc;
	return cubeid_key_find(tok, label, a.id, sizeof(a.id), out);
}

int
cubeid_wrapping_key_generate(cubeid_token *tok, const char *label, cubeid_key **out)
{
	return generate(tok, label, true, out);
}

int
cubeid_cluster_key_generate(cubeid_token *tok, const char *label, cubeid_key **out)
{
	return generate(tok, label, false, out);
}

/* ---- wrapping (enrolment token) --------------------------------------- */

struct wrap_arg {
	const cubeid_key *k; /* its handle is read in the session (p11_key_handle) */
	CK_OBJECT_HANDLE key;
	uint8_t *n, *e;
	size_t nl, el;
	uint8_t *wk, *cek; /* out */
	CK_ULONG wk_len, cek_len;
};

static int
wrap_twice(CK_FUNCTION_LIST_PTR f, CK_SESSION_HANDLE s, CK_MECHANISM *m, CK_OBJECT_HANDLE wrapping,
           CK_OBJECT_HANDLE key, uint8_t **out, CK_ULONG *len, CK_RV *rvp)
{
	CK_RV rv;

	*len = 0;
	if ((rv = f->C_WrapKey(s, m, wrapping, key, NULL, len)) != CKR_OK)
		goto fail;
	if (*len == 0 || *len > BLOB_MAX || (*out = malloc(*len)) == NULL)
		return CUBEID_ERR_NOMEM;
	if ((rv = f->C_WrapKey(s, m, wrapping, key, *out, len)) != CKR_OK)
		goto fail;
	return CUBEID_OK;
fail:
	*rvp = rv;
	return wrap_err("C_WrapKey", rv);
}

static int
wrap_fn(cubeid_token *tok, CK_SESSION_HANDLE s, void *argp, CK_RV *rvp)
{
	struct wrap_arg *a = argp;
	CK_FUNCTION_LIST_PTR f = tok->f;
	CK_OBJECT_CLASS pubc = CKO_PUBLIC_KEY, secc = CKO_SECRET_KEY;
	CK_KEY_TYPE rsa = CKK_RSA, aes = CKK_AES;
	CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
	CK_ULONG aes_len = 32;
	CK_ATTRIBUTE pt[] = {
	        {CKA_CLASS, &pubc, sizeof(pubc)}, {CKA_KEY_TYPE, &rsa, sizeof(rsa)},
	        {CKA_TOKEN, &no, sizeof(no)},     {CKA_WRAP, &yes, sizeof(yes)},
	        {CKA_ENCRYPT, &no, sizeof(no)},   {CKA_VERIFY, &no, sizeof(no)},
	        {CKA_MODULUS, a->n, a->nl},       {CKA_PUBLIC_EXPONENT, a->e, a->el},
	};
	CK_ATTRIBUTE at[] = {
	        {CKA_CLASS, &secc, sizeof(secc)},     {CKA_KEY_TYPE, &aes, sizeof(aes)},
	        {CKA_TOKEN, &no, sizeof(no)},         {CKA_VALUE_LEN, &aes_len, sizeof(aes_len)},
	        {CKA_WRAP, &yes, sizeof(yes)},        {CKA_SENSITIVE, &yes, sizeof(yes)},
	        {CKA_EXTRACTABLE, &yes, sizeof(yes)}, {CKA_ENCRYPT, &no, sizeof(no)},
	        {CKA_DECRYPT, &no, sizeof(no)},       {CKA_SIGN, &no, sizeof(no)},
	        {CKA_VERIFY, &no, sizeof(no)},        {CKA_UNWRAP, &no, sizeof(no)},
	};
	CK_MECHANISM gen = {CKM_AES_KEY_GEN, NULL, 0}, kwp = {CKM_AES_KEY_WRAP_PAD, NULL, 0};
	CK_RSA_PKCS_OAEP_PARAMS op = {CKM_SHA_1, CKG_MGF1_SHA1, CKZ_DATA_SPECIFIED, NULL, 0};
	CK_MECHANISM oaep = {CKM_RSA_PKCS_OAEP, &op, sizeof(op)};
	CK_OBJECT_HANDLE hpub = CK_INVALID_HANDLE, haes = CK_INVALID_HANDLE;
	CK_RV rv;
	int rc;

	a->key = p11_key_handle(a->k);
	if ((rv = f->C_CreateObject(s, pt, sizeof(pt) / sizeof(pt[0]), &hpub)) != CKR_OK) {
		*rvp = rv;
		return wrap_err("importing the node's wrapping key", rv);
	}
	if ((rv = f->C_GenerateKey(s, &gen, at, sizeof(at) / sizeof(at[0]), &haes)) != CKR_OK) {
		*rvp = rv;
		rc = wrap_err("generating the AES transport key", rv);
		goto out;
	}
	if ((rc = wrap_twice(f, s, &kwp, haes, a->key, &a->wk, &a->wk_len, rvp)) != CUBEID_OK ||
	    (rc = wrap_twice(f, s, &oaep, hpub, haes, &a->cek, &a->cek_len, rvp)) != CUBEID_OK)
		goto out;
	rc = CUBEID_OK;
out:
	if (haes != CK_INVALID_HANDLE)
		(void)f->C_DestroyObject(s, haes);
	(void)f->C_DestroyObject(s, hpub);
	return rc;
}

int
p11_key_wrap(cubeid_key *key, EVP_PKEY *wrap_pub, struct p11_wrapped *out)
{
	struct wrap_arg a = {0};
	int rc;

	if (out != NULL)
		memset(out, 0, sizeof(*out));
	if (key == NULL || wrap_pub == NULL || out == NULL)
		return CUBEID_ERR_INVALID_ARG;
	if (key->ck_type != CKK_RSA)
		return CUBEID_ERR_INVALID_ARG;
	if ((rc = rsa_parts(wrap_pub, &a.n, &a.nl, &a.e, &a.el)) != CUBEID_OK)
		return rc;
	a.k = key;
	if ((rc = p11_run(key->tok, key, "wrapping a key", wrap_fn, &a)) != CUBEID_OK)
		goto out;
	out->cek = a.cek;
	out->cek_len = a.cek_len;
	out->wk = a.wk;
	out->wk_len = a.wk_len;
	a.cek = a.wk = NULL;
out:
	free(a.n);
	free(a.e);
	free(a.wk);
	free(a.cek);
	return rc;
}

void
p11_wrapped_clear(struct p11_wrapped *w)
{
	if (w == NULL)
		return;
	free(w->cek);
	free(w->wk);
	memset(w, 0, sizeof(*w));
}

/* ---- unwrapping (node token) ------------------------------------------ */

struct unwrap_arg {
	const cubeid_key *wk_key; /* its handle is read in the session */
	CK_OBJECT_HANDLE wrapkey;
	const char *label;
	uint8_t id[20];
	const uint8_t *cek, *wk; /* borrowed */
	uint8_t *n, *e;
	size_t cek_len, wk_len, nl, el;
};

static int
unwrap_fn(cubeid_token *tok, CK_SESSION_HANDLE s, void *argp, CK_RV *rvp)
{
	struct unwrap_arg *a = argp;
	CK_FUNCTION_LIST_PTR f = tok->f;
	CK_OBJECT_CLASS secc = CKO_SECRET_KEY, privc = CKO_PRIVATE_KEY, pubc = CKO_PUBLIC_KEY;
	CK_KEY_TYPE aes = CKK_AES, rsa = CKK_RSA;
	CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
	CK_ATTRIBUTE at[] = {
	        {CKA_CLASS, &secc, sizeof(secc)},   {CKA_KEY_TYPE, &aes, sizeof(aes)},
	        {CKA_TOKEN, &no, sizeof(no)},       {CKA_UNWRAP, &yes, sizeof(yes)},
	        {CKA_SENSITIVE, &yes, sizeof(yes)}, {CKA_EXTRACTABLE, &no, sizeof(no)},
	        {CKA_ENCRYPT, &no, sizeof(no)},     {CKA_DECRYPT, &no, sizeof(no)},
	        {CKA_SIGN, &no, sizeof(no)},        {CKA_VERIFY, &no, sizeof(no)},
	        {CKA_WRAP, &no, sizeof(no)},
	};
	CK_ATTRIBUTE kt[] = {
	        {CKA_CLASS, &privc, sizeof(privc)}, {CKA_KEY_TYPE, &rsa, sizeof(rsa)},
	        {CKA_TOKEN, &yes, sizeof(yes)},     {CKA_PRIVATE, &yes, sizeof(yes)},
	        {CKA_SIGN, &yes, sizeof(yes)},      {CKA_SENSITIVE, &yes, sizeof(yes)},
	        {CKA_EXTRACTABLE, &no, sizeof(no)}, {CKA_LABEL, (void *)a->label, strlen(a->label)},
	        {CKA_ID, a->id, sizeof(a->id)},     {CKA_DECRYPT, &no, sizeof(no)},
	        {CKA_UNWRAP, &no, sizeof(no)},      {CKA_SIGN_RECOVER, &no, sizeof(no)},
	        {CKA_DERIVE, &no, sizeof(no)},
	};
	CK_ATTRIBUTE pt[] = {
	        {CKA_CLASS, &pubc, sizeof(pubc)},
	        {CKA_KEY_TYPE, &rsa, sizeof(rsa)},
	        {CKA_TOKEN, &yes, sizeof(yes)},
	        {CKA_VERIFY, &yes, sizeof(yes)},
	        {CKA_ENCRYPT, &no, sizeof(no)},
	        {CKA_WRAP, &no, sizeof(no)},
	        {CKA_VERIFY_RECOVER, &no, sizeof(no)},
	        {CKA_LABEL, (void *)a->label, strlen(a->label)},
	        {CKA_ID, a->id, sizeof(a->id)},
	        {CKA_MODULUS, a->n, a->nl},
	        {CKA_PUBLIC_EXPONENT, a->e, a->el},
	};
	CK_RSA_PKCS_OAEP_PARAMS op = {CKM_SHA_1, CKG_MGF1_SHA1, CKZ_DATA_SPECIFIED, NULL, 0};
	CK_MECHANISM oaep = {CKM_RSA_PKCS_OAEP, &op, sizeof(op)},
	             kwp = {CKM_AES_KEY_WRAP_PAD, NULL, 0};
	CK_OBJECT_HANDLE haes = CK_INVALID_HANDLE, hpriv = CK_INVALID_HANDLE, hpub;
	CK_RV rv;
	int rc;

	a->wrapkey = p11_key_handle(a->wk_key);
	rv = f->C_UnwrapKey(s, &oaep, a->wrapkey, (CK_BYTE_PTR)a->cek, a->cek_len, at,
	                    sizeof(at) / sizeof(at[0]), &haes);
	if (rv != CKR_OK) {
		*rvp = rv;
		return wrap_err("unwrapping the AES transport key", rv);
	}
	rv = f->C_UnwrapKey(s, &kwp, haes, (CK_BYTE_PTR)a->wk, a->wk_len, kt,
	                    sizeof(kt) / sizeof(kt[0]), &hpriv);
	if (rv != CKR_OK) {
		rc = wrap_err("unwrapping the key", rv);
		goto out;
	}
	if ((rv = f->C_CreateObject(s, pt, sizeof(pt) / sizeof(pt[0]), &hpub)) != CKR_OK) {
		rc = wrap_err("creating the public key object", rv);
		(void)f->C_DestroyObject(s, hpriv);
		goto out;
	}
	rc = CUBEID_OK;
out:
	(void)f->C_DestroyObject(s, haes);
	if (rc != CUBEID_OK)
		*rvp = rv;
	return rc;
}

/* The token key and pub must be the two halves of one key pair. */
static int
halves_match(cubeid_key *key, EVP_PKEY *pub)
{
	static const uint8_t probe[] = "cubeid key-wrap probe";
	uint8_t sig[1024];
	size_t sl = sizeof(sig);
	EVP_MD_CTX *md = NULL;
	int rc;

	if ((rc = cubeid_key_sign(key, CUBEID_SIG_RSA_PKCS1_SHA256, probe, sizeof(probe), sig,
	                          &sl)) != CUBEID_OK)
		return rc;
	rc = CUBEID_ERR_P11_KEY;
	if ((md = EVP_MD_CTX_new()) != NULL &&
	    EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, pub) == 1 &&
	    EVP_DigestVerify(md, sig, sl, probe, sizeof(probe)) == 1)
		rc = CUBEID_OK;
	EVP_MD_CTX_free(md);
	ERR_clear_error();
	return rc;
}

int
p11_key_unwrap(cubeid_key *wrapkey, const struct p11_wrapped *w, EVP_PKEY *pub, const char *label,
               cubeid_key **out)
{
	struct unwrap_arg a = {0};
	cubeid_key *k = NULL;
	int rc;

	if (out != NULL)
		*out = NULL;
	if (wrapkey == NULL || w == NULL || pub == NULL || label == NULL || label[0] == '\0' ||
	    out == NULL)
		return CUBEID_ERR_INVALID_ARG;
	if (cubeid_key_find(wrapkey->tok, label, NULL, 0, &k) == CUBEID_OK) {
		rc = CUBEID_ERR_EXISTS;
		goto out;
	}
	if ((rc = rsa_parts(pub, &a.n, &a.nl, &a.e, &a.el)) != CUBEID_OK)
		goto out;
	if (RAND_bytes(a.id, sizeof(a.id)) != 1) {
		rc = CUBEID_ERR_CRYPTO;
		goto out;
	}
	a.wk_key = wrapkey;
	a.label = label;
	a.cek = w->cek;
	a.cek_len = w->cek_len;
	a.wk = w->wk;
	a.wk_len = w->wk_len;
	if ((rc = p11_run(wrapkey->tok, wrapkey, "importing a wrapped key", unwrap_fn, &a)) !=
	    CUBEID_OK)
		goto out;
	if ((rc = cubeid_key_find(wrapkey->tok, label, a.id, sizeof(a.id), &k)) != CUBEID_OK)
		goto out;
	if ((rc = halves_match(k, pub)) != CUBEID_OK) {
		cubeid_error("the unwrapped key does not match the public key it came with");
		cubeid_key_delete(k);
		cubeid_key_free(k);
		k = NULL;
		goto out;
	}
	*out = k;
	k = NULL;
out:
	cubeid_key_free(k);
	free(a.n);
	free(a.e);
	return rc;
}
