/*
 * Keys on the token: generation, lookup, deletion and public export.
 *
 * A key's CKA_ID is SHA-1 over its subjectPublicKey bits, so it matches the
 * subjectKeyIdentifier OpenSSL puts in certificates for that key.
 */
#include "config.h"

#include "pkcs11/p11-internal.h"

#include <cubeid/log.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <openssl/x509.h>

/* DER OIDs of the curves, as CKA_EC_PARAMS holds them. */
static const uint8_t oid_p256[] = {0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07};
static const uint8_t oid_p384[] = {0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22};

static const struct {
	cubeid_key_type type;
	const char *name;
} key_type_names[] = {
        {CUBEID_KEY_EC_P256, "ec-p256"},
        {CUBEID_KEY_EC_P384, "ec-p384"},
        {CUBEID_KEY_RSA_2048, "rsa-2048"},
        {CUBEID_KEY_RSA_3072, "rsa-3072"},
};

const char *
cubeid_key_type_name(cubeid_key_type type)
{
	size_t i;

	for (i = 0; i < sizeof(key_type_names) / sizeof(key_type_names[0]); i++)
		if (key_type_names[i].type == type)
			return key_type_names[i].name;
	return NULL;
}

cubeid_key_type
cubeid_key_type_from_name(const char *name)
{
	size_t i;

	for (i = 0; name != NULL && i < sizeof(key_type_names) / sizeof(key_type_names[0]); i++)
		if (strcmp(key_type_names[i].name, name) == 0)
			return key_type_names[i].type;
	return CUBEID_KEY_NONE;
}

/* ---- building OpenSSL keys from token attributes ---- */

/* CKA_EC_POINT is a DER OCTET STRING around the point; some tokens give the
 * bare point.  Return a pointer to the bare point inside v. */
static const uint8_t *
ec_point_unwrap(const uint8_t *v, size_t len, size_t *plen)
{
	size_t hdr, n;

	if (len >= 2 && v[0] == 0x04 && (v[1] & 0x80) == 0 && (size_t)v[1] + 2 == len) {
		*plen = v[1];
		return v + 2;
	}
	if (len >= 3 && v[0] == 0x04 && v[1] == 0x81 && (size_t)v[2] + 3 == len) {
		*plen = v[2];
		return v + 3;
	}
	if (len >= 4 && v[0] == 0x04 && v[1] == 0x82) {
		n = ((size_t)v[2] << 8) | v[3];
		hdr = 4;
		if (n + hdr == len) {
			*plen = n;
			return v + hdr;
		}
	}
	*plen = len; /* bare uncompressed point: 0x04 || X || Y */
	return v;
}

static EVP_PKEY *
pkey_from_params(const char *type, OSSL_PARAM_BLD *bld, int selection)
{
	OSSL_PARAM *params = NULL;
	EVP_PKEY_CTX *ctx = NULL;
	EVP_PKEY *pk = NULL;

	if ((params = OSSL_PARAM_BLD_to_param(bld)) == NULL)
		goto out;
	if ((ctx = EVP_PKEY_CTX_new_from_name(NULL, type, NULL)) == NULL ||
	    EVP_PKEY_fromdata_init(ctx) <= 0 || EVP_PKEY_fromdata(ctx, &pk, selection, params) <= 0)
		pk = NULL;
out:
	OSSL_PARAM_free(params);
	EVP_PKEY_CTX_free(ctx);
	return pk;
}

static EVP_PKEY *
pkey_ec(const char *group, const uint8_t *point, size_t plen, const BIGNUM *priv)
{
	OSSL_PARAM_BLD *bld;
	EVP_PKEY *pk = NULL;

	if ((bld = OSSL_PARAM_BLD_new()) == NULL)
		return NULL;
	if (OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, group, 0) &&
	    OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, point, plen) &&
	    (priv == NULL || OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_PRIV_KEY, priv)))
		pk = pkey_from_params("EC", bld, priv ? EVP_PKEY_KEYPAIR : EVP_PKEY_PUBLIC_KEY);
	OSSL_PARAM_BLD_free(bld);
	return pk;
}

/* SHA-1 over the subjectPublicKey BIT STRING contents. */
static int
pkey_id(EVP_PKEY *pk, uint8_t id[SHA_DIGEST_LENGTH])
{
	X509_PUBKEY *xpk = NULL;
	const unsigned char *bits;
	int nbits;
	int r = CUBEID_ERR_CRYPTO;
	unsigned char pt[200];
	size_t ptlen = 0;

	/* EC: the BIT STRING holds the encoded point, so hash that directly:
	 * the SPKI round trip below costs ~2M instructions on OpenSSL 3.0. */
	if (EVP_PKEY_is_a(pk, "EC") &&
	    EVP_PKEY_get_octet_string_param(pk, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, pt, sizeof(pt),
	                                    &ptlen) == 1) {
		SHA1(pt, ptlen, id);
		return CUBEID_OK;
	}
	if (X509_PUBKEY_set(&xpk, pk) == 1 &&
	    X509_PUBKEY_get0_param(NULL, &bits, &nbits, NULL, xpk) == 1) {
		SHA1(bits, (size_t)nbits, id);
		r = CUBEID_OK;
	}
	X509_PUBKEY_free(xpk);
	return r;
}

/* ---- loading a key object ---- */

struct load_arg {
	CK_OBJECT_HANDLE priv;
	cubeid_key *key; /* out */
};

static CK_RV
find_objects(cubeid_token *tok, CK_SESSION_HANDLE s, CK_ATTRIBUTE *tmpl, CK_ULONG n,
             CK_OBJECT_HANDLE *found, CK_ULONG max, CK_ULONG *count)
{
	CK_RV rv;

	*count = 0;
	if ((rv = tok->f->C_FindObjectsInit(s, tmpl, n)) != CKR_OK)
		return rv;
	rv = tok->f->C_FindObjects(s, found, max, count);
	tok->f->C_FindObjectsFinal(s);
	return rv;
}

static CK_OBJECT_HANDLE
find_public(cubeid_token *tok, CK_SESSION_HANDLE s, const uint8_t *id, size_t id_len)
{
	CK_OBJECT_CLASS cls = CKO_PUBLIC_KEY;
	CK_ATTRIBUTE t[] = {{CKA_CLASS, &cls, sizeof(cls)}, {CKA_ID, (void *)id, id_len}};
	CK_OBJECT_HANDLE h[1];
	CK_ULONG n;

	if (find_objects(tok, s, t, 2, h, 1, &n) != CKR_OK || n == 0)
		return CK_INVALID_HANDLE;
	return h[0];
}

static int
load_fn(cubeid_token *tok, CK_SESSION_HANDLE s, void *argp, CK_RV *rvp)
{
	struct load_arg *a = argp;
	cubeid_key *k;
	CK_KEY_TYPE kt;
	CK_BBOOL is_token = 0, sensitive = 1, extractable = 0;
	CK_ATTRIBUTE t[] = {
	        {CKA_KEY_TYPE, &kt, sizeof(kt)},
	        {CKA_TOKEN, &is_token, sizeof(is_token)},
	        {CKA_SENSITIVE, &sensitive, sizeof(sensitive)},
	        {CKA_EXTRACTABLE, &extractable, sizeof(extractable)},
	};
	uint8_t *v = NULL, *v2 = NULL;
	size_t vlen, v2len, plen;
	const uint8_t *point;
	BIGNUM *n = NULL, *e = NULL;
	OSSL_PARAM_BLD *bld = NULL;
	CK_RV rv;
	int r = CUBEID_ERR_P11_GENERAL;

	a->key = NULL;
	if ((k = calloc(1, sizeof(*k))) == NULL)
		return CUBEID_ERR_NOMEM;
	k->refs = 1;
	k->priv = a->priv;
	k->handle_gen = __atomic_load_n(&tok->mod_gen, __ATOMIC_ACQUIRE);
	if ((rv = tok->f->C_GetAttributeValue(s, a->priv, t, 4)) != CKR_OK) {
		*rvp = rv;
		r = p11_err(rv);
		goto out;
	}
	k->ck_type = kt;
	k->persistent = is_token;
	k->exportable = extractable && !sensitive;
	if ((rv = p11_attr_get(tok, s, a->priv, CKA_ID, &v, &vlen)) == CKR_OK) {
		if (vlen > sizeof(k->id)) {
			r = CUBEID_ERR_P11_KEY;
			goto out;
		}
		memcpy(k->id, v, vlen);
		k->id_len = vlen;
	}
	free(v);
	v = NULL;
	if (p11_attr_get(tok, s, a->priv, CKA_LABEL, &v, &vlen) == CKR_OK) {
		k->label = (char *)v; /* NUL-terminated by p11_attr_get */
		v = NULL;
	} else if ((k->label = strdup("")) == NULL) {
		r = CUBEID_ERR_NOMEM;
		goto out;
	}
	k->pub = k->id_len > 0 ? find_public(tok, s, k->id, k->id_len) : CK_INVALID_HANDLE;

	if (kt == CKK_EC) {
		const char *group;
		if ((rv = p11_attr_get(tok, s, a->priv, CKA_EC_PARAMS, &v, &vlen)) != CKR_OK) {
			*rvp = rv;
			r = p11_err(rv);
			goto out;
		}
		if (vlen == sizeof(oid_p256) && memcmp(v, oid_p256, vlen) == 0) {
			k->type = CUBEID_KEY_EC_P256;
			k->field_len = 32;
			group = "P-256";
		} else if (vlen == sizeof(oid_p384) && memcmp(v, oid_p384, vlen) == 0) {
			k->type = CUBEID_KEY_EC_P384;
			k->field_len = 48;
			group = "P-384";
		} else {
			r = CUBEID_ERR_UNSUPPORTED; /* another curve: listed as unusable */
			goto out;
		}
		if (k->pub == CK_INVALID_HANDLE ||
		    p11_attr_get(tok, s, k->pub, CKA_EC_POINT, &v2, &v2len) != CKR_OK) {
			/* Some tokens keep the point on the private object too. */
			if ((rv = p11_attr_get(tok, s, a->priv, CKA_EC_POINT, &v2, &v2len)) !=
			    CKR_OK) {
				cubeid_error("EC key '%s' has no public point on the token",
				             k->label);
				r = CUBEID_ERR_P11_KEY;
				goto out;
			}
		}
		point = ec_point_unwrap(v2, v2len, &plen);
		if (plen != 1 + 2 * k->field_len || point[0] != 0x04) {
			r = CUBEID_ERR_P11_KEY;
			goto out;
		}
		if ((k->pub_pkey = pkey_ec(group, point, plen, NULL)) == NULL) {
			r = CUBEID_ERR_CRYPTO;
			goto out;
		}
	} else if (kt == CKK_RSA) {
		if ((rv = p11_attr_get(tok, s, a->priv, CKA_MODULUS, &v, &vlen)) != CKR_OK ||
		    (rv = p11_attr_get(tok, s, a->priv, CKA_PUBLIC_EXPONENT, &v2, &v2len)) !=
		            CKR_OK) {
			*rvp = rv;
			r = p11_err(rv);
			goto out;
		}
		n = BN_bin2bn(v, (int)vlen, NULL);
		e = BN_bin2bn(v2, (int)v2len, NULL);
		if (n == NULL || e == NULL || (bld = OSSL_PARAM_BLD_new()) == NULL ||
		    !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, n) ||
		    !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, e) ||
		    (k->pub_pkey = pkey_from_params("RSA", bld, EVP_PKEY_PUBLIC_KEY)) == NULL) {
			r = CUBEID_ERR_CRYPTO;
			goto out;
		}
		k->field_len = (size_t)BN_num_bytes(n);
		switch (BN_num_bits(n)) {
		case 2048:
			k->type = CUBEID_KEY_RSA_2048;
			break;
		case 3072:
			k->type = CUBEID_KEY_RSA_3072;
			break;
		default:
			/* Usable for signing, but not a size cubeid generates. */
			k->type = BN_num_bits(n) >= 2048 ? CUBEID_KEY_RSA_2048 : CUBEID_KEY_NONE;
			if (k->type == CUBEID_KEY_NONE) {
				r = CUBEID_ERR_UNSUPPORTED;
				goto out;
			}
		}
	} else {
		r = CUBEID_ERR_UNSUPPORTED; /* Ed25519 and friends are skipped, not fatal */
		goto out;
	}
	k->tok = p11_token_ref(tok);
	a->key = k;
	k = NULL;
	r = CUBEID_OK;
out:
	free(v);
	free(v2);
	BN_free(n);
	BN_free(e);
	OSSL_PARAM_BLD_free(bld);
	if (k != NULL) {
		EVP_PKEY_free(k->pub_pkey);
		free(k->label);
		free(k);
	}
	return r;
}

/* ---- find and list ---- */

struct find_arg {
	const char *label;
	const uint8_t *id;
	size_t id_len;
	bool all;
	CK_OBJECT_HANDLE *handles; /* out */
	CK_ULONG n;
};

#define P11_MAX_KEYS 4096

static int
find_fn(cubeid_token *tok, CK_SESSION_HANDLE s, void *argp, CK_RV *rvp)
{
	struct find_arg *a = argp;
	CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
	CK_ATTRIBUTE t[3];
	CK_ULONG nt = 0, got;
	CK_RV rv;

	t[nt++] = (CK_ATTRIBUTE){CKA_CLASS, &cls, sizeof(cls)};
	if (a->label != NULL)
		t[nt++] = (CK_ATTRIBUTE){CKA_LABEL, (void *)a->label, strlen(a->label)};
	if (a->id != NULL && a->id_len > 0)
		t[nt++] = (CK_ATTRIBUTE){CKA_ID, (void *)a->id, a->id_len};
	free(a->handles);
	a->n = 0;
	if ((a->handles = calloc(P11_MAX_KEYS, sizeof(*a->handles))) == NULL)
		return CUBEID_ERR_NOMEM;
	if ((rv = tok->f->C_FindObjectsInit(s, t, nt)) != CKR_OK) {
		*rvp = rv;
		return p11_err(rv);
	}
	while (a->n < P11_MAX_KEYS) {
		rv = tok->f->C_FindObjects(s, a->handles + a->n, P11_MAX_KEYS - a->n, &got);
		if (rv != CKR_OK) {
			tok->f->C_FindObjectsFinal(s);
			*rvp = rv;
			return p11_err(rv);
		}
		if (got == 0)
			break;
		a->n += got;
	}
	tok->f->C_FindObjectsFinal(s);
	return CUBEID_OK;
}

static int
key_load(cubeid_token *tok, CK_OBJECT_HANDLE h, cubeid_key **out)
{
	struct load_arg la = {h, NULL};
	int r;

	*out = NULL;
	if ((r = p11_run(tok, NULL, "reading key attributes", load_fn, &la)) == CUBEID_OK)
		*out = la.key;
	return r;
}

int
cubeid_key_find(cubeid_token *tok, const char *label, const uint8_t *id, size_t id_len,
                cubeid_key **out)
{
	struct find_arg fa = {0};
	int r;

	*out = NULL;
	if (tok == NULL || (label == NULL && (id == NULL || id_len == 0)))
		return CUBEID_ERR_INVALID_ARG;
	fa.label = label;
	fa.id = id;
	fa.id_len = id_len;
	if ((r = p11_run(tok, NULL, "finding key", find_fn, &fa)) != CUBEID_OK)
		goto out;
	if (fa.n == 0)
		r = CUBEID_ERR_NOT_FOUND;
	else if (fa.n > 1)
		r = CUBEID_ERR_AMBIGUOUS;
	else
		r = key_load(tok, fa.handles[0], out);
out:
	free(fa.handles);
	return r;
}

int
cubeid_key_find_uri(cubeid_token *tok, const char *uri_str, cubeid_key **out)
{
	P11KitUri *uri;
	CK_ATTRIBUTE *a;
	char *label = NULL;
	const uint8_t *id = NULL;
	size_t id_len = 0;
	int r;

	*out = NULL;
	if ((r = p11_uri_parse(uri_str, &uri)) != CUBEID_OK)
		return r;
	if (!p11_kit_uri_match_token_info(uri, &tok->ti)) {
		cubeid_error("key URI names another token than %s", tok->label);
		r = CUBEID_ERR_P11_NO_TOKEN;
		goto out;
	}
	if ((a = p11_kit_uri_get_attribute(uri, CKA_CLASS)) != NULL &&
	    (a->ulValueLen != sizeof(CK_OBJECT_CLASS) ||
	     (*(CK_OBJECT_CLASS *)a->pValue != CKO_PRIVATE_KEY &&
	      *(CK_OBJECT_CLASS *)a->pValue != CKO_PUBLIC_KEY))) {
		cubeid_error("key URI names an object that is not a key (type=)");
		r = CUBEID_ERR_P11_URI;
		goto out;
	}
	if ((a = p11_kit_uri_get_attribute(uri, CKA_LABEL)) != NULL) {
		if ((label = strndup(a->pValue, a->ulValueLen)) == NULL) {
			r = CUBEID_ERR_NOMEM;
			goto out;
		}
	}
	if ((a = p11_kit_uri_get_attribute(uri, CKA_ID)) != NULL) {
		id = a->pValue;
		id_len = a->ulValueLen;
	}
	if (label == NULL && id == NULL) {
		cubeid_error("key URI needs object= or id=");
		r = CUBEID_ERR_P11_URI;
		goto out;
	}
	r = cubeid_key_find(tok, label, id, id_len, out);
out:
	free(label);
	p11_kit_uri_free(uri);
	return r;
}

int
cubeid_key_list(cubeid_token *tok, cubeid_key ***out, size_t *n)
{
	struct find_arg fa = {0};
	cubeid_key **keys = NULL;
	size_t i, nk = 0;
	int r;

	*out = NULL;
	*n = 0;
	fa.all = true;
	if ((r = p11_run(tok, NULL, "listing keys", find_fn, &fa)) != CUBEID_OK)
		goto out;
	if (fa.n > 0 && (keys = calloc(fa.n, sizeof(*keys))) == NULL) {
		r = CUBEID_ERR_NOMEM;
		goto out;
	}
	for (i = 0; i < fa.n; i++) {
		r = key_load(tok, fa.handles[i], &keys[nk]);
		if (r == CUBEID_ERR_UNSUPPORTED)
			continue; /* another key type: not ours to use, not an error */
		if (r != CUBEID_OK) {
			cubeid_key_list_free(keys, nk);
			keys = NULL;
			goto out;
		}
		nk++;
	}
	*out = keys;
	*n = nk;
	keys = NULL;
	r = CUBEID_OK;
out:
	free(fa.handles);
	return r;
}

void
cubeid_key_list_free(cubeid_key **keys, size_t n)
{
	size_t i;

	if (keys == NULL)
		return;
	for (i = 0; i < n; i++)
		cubeid_key_free(keys[i]);
	free(keys);
}

int
p11_key_refind(const cubeid_key *key, CK_SESSION_HANDLE s)
{
	CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
	CK_ATTRIBUTE t[] = {{CKA_CLASS, &cls, sizeof(cls)}, {CKA_ID, (void *)key->id, key->id_len}};
	CK_OBJECT_HANDLE h[2];
	CK_ULONG n;
	CK_RV rv;

	if (key->id_len == 0)
		return CUBEID_ERR_P11_KEY;
	if ((rv = find_objects(key->tok, s, t, 2, h, 2, &n)) != CKR_OK)
		return p11_fail("finding key again", rv);
	if (n != 1) {
		/* A session object dies with its session, so after a re-init
		 * its absence is expected; a token object's is not. */
		if (key->persistent || n > 1)
			cubeid_error("key '%s' is gone from token %s", key->label, key->tok->label);
		else
			cubeid_debug("session key '%s' did not outlive its session on token %s",
			             key->label, key->tok->label);
		return n == 0 ? CUBEID_ERR_NOT_FOUND : CUBEID_ERR_AMBIGUOUS;
	}
	/* Called from inside the module (a borrowed session), so no re-init
	 * runs meanwhile and tok->mod_gen is the generation of h. */
	__atomic_store_n(&((cubeid_key *)key)->priv, h[0], __ATOMIC_RELEASE);
	if (p11_key_stale(key)) {
		__atomic_store_n(&((cubeid_key *)key)->pub,
		                 find_public(key->tok, s, key->id, key->id_len), __ATOMIC_RELEASE);
		__atomic_store_n(&((cubeid_key *)key)->handle_gen,
		                 __atomic_load_n(&key->tok->mod_gen, __ATOMIC_ACQUIRE),
		                 __ATOMIC_RELEASE);
		cubeid_notice("key '%s' found again on token %s", key->label, key->tok->label);
	}
	return CUBEID_OK;
}

bool
p11_key_stale(const cubeid_key *key)
{
	return __atomic_load_n(&key->handle_gen, __ATOMIC_ACQUIRE) !=
	       __atomic_load_n(&key->tok->mod_gen, __ATOMIC_ACQUIRE);
}

CK_OBJECT_HANDLE
p11_key_handle(const cubeid_key *key)
{
	if (p11_key_stale(key))
		return CK_INVALID_HANDLE;
	return __atomic_load_n(&key->priv, __ATOMIC_ACQUIRE);
}

CK_OBJECT_HANDLE
p11_key_pub_handle(const cubeid_key *key)
{
	if (p11_key_stale(key))
		return CK_INVALID_HANDLE;
	return __atomic_load_n(&key->pub, __ATOMIC_ACQUIRE);
}

/* ---- generation ---- */

/* Copy the n attributes of in to out, leaving out the usage flags that
 * are set false; returns how many were copied. */
static CK_ULONG
usage_true_only(const CK_ATTRIBUTE *in, CK_ULONG n, CK_ATTRIBUTE *out)
{
	CK_ULONG i, k = 0;

	for (i = 0; i < n; i++) {
		switch (in[i].type) {
		case CKA_ENCRYPT:
		case CKA_DECRYPT:
		case CKA_WRAP:
		case CKA_UNWRAP:
		case CKA_SIGN:
		case CKA_SIGN_RECOVER:
		case CKA_VERIFY:
		case CKA_VERIFY_RECOVER:
		case CKA_DERIVE:
			if (in[i].ulValueLen == sizeof(CK_BBOOL) && in[i].pValue != NULL &&
			    *(const CK_BBOOL *)in[i].pValue == CK_FALSE)
				continue;
			break;
		default:
			break;
		}
		out[k++] = in[i];
	}
	return k;
}

CK_RV
p11_generate_key_pair(cubeid_token *tok, CK_SESSION_HANDLE s, CK_MECHANISM *mech,
                      const CK_ATTRIBUTE *pub, CK_ULONG npub, const CK_ATTRIBUTE *priv,
                      CK_ULONG npriv, CK_OBJECT_HANDLE *hpub, CK_OBJECT_HANDLE *hpriv)
{
	CK_BBOOL no = CK_FALSE;
	CK_ATTRIBUTE pt[P11_GEN_TEMPLATE_MAX + 2], vt[P11_GEN_TEMPLATE_MAX + 2];
	CK_RV rv;

	if (npub > P11_GEN_TEMPLATE_MAX || npriv > P11_GEN_TEMPLATE_MAX)
		return CKR_ARGUMENTS_BAD;
	memcpy(pt, pub, npub * sizeof(*pub));
	memcpy(vt, priv, npriv * sizeof(*priv));
	pt[npub] = (CK_ATTRIBUTE){CKA_ENCRYPT, &no, sizeof(no)};
	pt[npub + 1] = (CK_ATTRIBUTE){CKA_VERIFY_RECOVER, &no, sizeof(no)};
	vt[npriv] = (CK_ATTRIBUTE){CKA_DECRYPT, &no, sizeof(no)};
	vt[npriv + 1] = (CK_ATTRIBUTE){CKA_SIGN_RECOVER, &no, sizeof(no)};
	rv = tok->f->C_GenerateKeyPair(s, mech, pt, npub + 2, vt, npriv + 2, hpub, hpriv);
	if (rv == CKR_GENERAL_ERROR || rv == CKR_ATTRIBUTE_VALUE_INVALID ||
	    rv == CKR_TEMPLATE_INCONSISTENT || rv == CKR_ATTRIBUTE_TYPE_INVALID) {
		/* tpm2-pkcs11 refuses any usage flag set false that its key type
		 * has (an RSA key there signs and decrypts): try once more with
		 * only what the key must do, and keep the token's defaults */
		cubeid_debug("token %s refuses usage flags set false at generation (%s): the "
		             "key keeps the token's defaults",
		             tok->label, p11_rv_name(rv));
		npub = usage_true_only(pub, npub, pt);
		npriv = usage_true_only(priv, npriv, vt);
		rv = tok->f->C_GenerateKeyPair(s, mech, pt, npub, vt, npriv, hpub, hpriv);
	}
	return rv;
}

struct gen_arg {
	const struct cubeid_keygen_opts *o;
	CK_OBJECT_HANDLE priv, pub;
};

static int
gen_fn(cubeid_token *tok, CK_SESSION_HANDLE s, void *argp, CK_RV *rvp)
{
	struct gen_arg *a = argp;
	const struct cubeid_keygen_opts *o = a->o;
	CK_BBOOL yes = CK_TRUE;
	CK_BBOOL persistent = o->persistent ? CK_TRUE : CK_FALSE;
	CK_BBOOL sensitive = o->exportable ? CK_FALSE : CK_TRUE;
	CK_BBOOL extractable = o->exportable ? CK_TRUE : CK_FALSE;
	CK_ULONG bits = 0;
	static CK_BYTE f4[] = {0x01, 0x00, 0x01};
	uint8_t tmp_id[20];
	CK_MECHANISM mech = {0, NULL, 0};
	/* A signing key signs and nothing else: CKA_DECRYPT and friends are
	 * refused here or in p11_generate_key_pair(), which also copes with
	 * tpm2-pkcs11 1.9 failing on CKA_DECRYPT=false (docs/pkcs11.md). */
	CK_BBOOL no = CK_FALSE;
	CK_ATTRIBUTE pub[P11_GEN_TEMPLATE_MAX], priv[P11_GEN_TEMPLATE_MAX];
	CK_ULONG npub = 0, npriv = 0;
	CK_RV rv;

	if (RAND_bytes(tmp_id, sizeof(tmp_id)) != 1)
		return CUBEID_ERR_CRYPTO;
	pub[npub++] = (CK_ATTRIBUTE){CKA_TOKEN, &persistent, sizeof(persistent)};
	pub[npub++] = (CK_ATTRIBUTE){CKA_VERIFY, &yes, sizeof(yes)};
	pub[npub++] = (CK_ATTRIBUTE){CKA_WRAP, &no, sizeof(no)};
	pub[npub++] = (CK_ATTRIBUTE){CKA_LABEL, (void *)o->label, strlen(o->label)};
	pub[npub++] = (CK_ATTRIBUTE){CKA_ID, tmp_id, sizeof(tmp_id)};
	priv[npriv++] = (CK_ATTRIBUTE){CKA_TOKEN, &persistent, sizeof(persistent)};
	priv[npriv++] = (CK_ATTRIBUTE){CKA_PRIVATE, &yes, sizeof(yes)};
	priv[npriv++] = (CK_ATTRIBUTE){CKA_SIGN, &yes, sizeof(yes)};
	priv[npriv++] = (CK_ATTRIBUTE){CKA_UNWRAP, &no, sizeof(no)};
	priv[npriv++] = (CK_ATTRIBUTE){CKA_DERIVE, &no, sizeof(no)};
	priv[npriv++] = (CK_ATTRIBUTE){CKA_SENSITIVE, &sensitive, sizeof(sensitive)};
	priv[npriv++] = (CK_ATTRIBUTE){CKA_EXTRACTABLE, &extractable, sizeof(extractable)};
	priv[npriv++] = (CK_ATTRIBUTE){CKA_LABEL, (void *)o->label, strlen(o->label)};
	priv[npriv++] = (CK_ATTRIBUTE){CKA_ID, tmp_id, sizeof(tmp_id)};

	switch (o->type) {
	case CUBEID_KEY_EC_P256:
	case CUBEID_KEY_EC_P384:
		mech.mechanism = CKM_EC_KEY_PAIR_GEN;
		if (o->type == CUBEID_KEY_EC_P256)
			pub[npub++] =
			        (CK_ATTRIBUTE){CKA_EC_PARAMS, (void *)oid_p256, sizeof(oid_p256)};
		else
			pub[npub++] =
			        (CK_ATTRIBUTE){CKA_EC_PARAMS, (void *)oid_p384, sizeof(oid_p384)};
		break;
	case CUBEID_KEY_RSA_2048:
	case CUBEID_KEY_RSA_3072:
		mech.mechanism = CKM_RSA_PKCS_KEY_PAIR_GEN;
		bits = o->type == CUBEID_KEY_RSA_2048 ? 2048 : 3072;
		pub[npub++] = (CK_ATTRIBUTE){CKA_MODULUS_BITS, &bits, sizeof(bits)};
		pub[npub++] = (CK_ATTRIBUTE){CKA_PUBLIC_EXPONENT, f4, sizeof(f4)};
		break;
	default:
		return CUBEID_ERR_INVALID_ARG;
	}
	if (!cubeid_token_has_mechanism(tok, mech.mechanism)) {
		cubeid_error("token %s cannot generate %s keys (no %s)", tok->label,
		             cubeid_key_type_name(o->type), p11_mech_name(mech.mechanism));
		return CUBEID_ERR_P11_MECHANISM;
	}
	rv = p11_generate_key_pair(tok, s, &mech, pub, npub, priv, npriv, &a->pub, &a->priv);
	if (rv != CKR_OK) {
		*rvp = rv;
		return p11_err(rv);
	}
	return CUBEID_OK;
}

struct setid_arg {
	CK_OBJECT_HANDLE priv, pub;
	const uint8_t *id;
	size_t id_len;
};

static int
setid_fn(cubeid_token *tok, CK_SESSION_HANDLE s, void *argp, CK_RV *rvp)
{
	struct setid_arg *a = argp;
	CK_ATTRIBUTE t = {CKA_ID, (void *)a->id, a->id_len};
	CK_RV rv;

	if ((rv = tok->f->C_SetAttributeValue(s, a->priv, &t, 1)) != CKR_OK ||
	    (rv = tok->f->C_SetAttributeValue(s, a->pub, &t, 1)) != CKR_OK) {
		*rvp = rv;
		return p11_err(rv);
	}
	return CUBEID_OK;
}

struct destroy_arg {
	CK_OBJECT_HANDLE h[2];
	const cubeid_key *key; /* if set, h comes from it, read in the session */
};

static int
destroy_fn(cubeid_token *tok, CK_SESSION_HANDLE s, void *argp, CK_RV *rvp)
{
	struct destroy_arg *a = argp;
	CK_RV rv;
	int i;

	if (a->key != NULL) { /* handles found again after a re-init, if one ran */
		a->h[0] = p11_key_handle(a->key);
		a->h[1] = p11_key_pub_handle(a->key);
		a->key = NULL;
	}
	for (i = 0; i < 2; i++) {
		if (a->h[i] == CK_INVALID_HANDLE)
			continue;
		rv = tok->f->C_DestroyObject(s, a->h[i]);
		if (rv != CKR_OK && rv != CKR_OBJECT_HANDLE_INVALID) {
			*rvp = rv;
			return p11_err(rv);
		}
		a->h[i] = CK_INVALID_HANDLE;
	}
	return CUBEID_OK;
}

int
cubeid_key_generate(cubeid_token *tok, const struct cubeid_keygen_opts *o, cubeid_key **out)
{
	struct gen_arg ga = {o, CK_INVALID_HANDLE, CK_INVALID_HANDLE};
	struct setid_arg sa;
	struct destroy_arg da = {0};
	uint8_t id[SHA_DIGEST_LENGTH];
	cubeid_key *k = NULL;
	uint64_t gen;
	int r;

	*out = NULL;
	if (tok == NULL || o == NULL || o->label == NULL || *o->label == '\0' ||
	    cubeid_key_type_name(o->type) == NULL)
		return CUBEID_ERR_INVALID_ARG;
	if (strlen(o->label) > 128)
		return CUBEID_ERR_TOO_LARGE;
	/* Session objects belong to the session that made them, so that
	 * session must stay in the pool: generation runs on a pool session,
	 * and the key dies if the token drops that session. */
	gen = p11_module_gen(tok->mod);
	if ((r = p11_run(tok, NULL, "generating key", gen_fn, &ga)) != CUBEID_OK)
		return r;
	if ((r = key_load(tok, ga.priv, &k)) != CUBEID_OK)
		goto fail;
	if (p11_module_gen(tok->mod) != gen) {
		/* The module was re-initialised under us: ga's handles may name
		 * other objects now, so neither use nor destroy them. */
		cubeid_key_free(k);
		return CUBEID_ERR_P11_DEVICE;
	}
	if ((r = pkey_id(k->pub_pkey, id)) != CUBEID_OK)
		goto fail;
	sa = (struct setid_arg){ga.priv, ga.pub, id, sizeof(id)};
	if (p11_run(tok, NULL, "setting key id", setid_fn, &sa) == CUBEID_OK) {
		memcpy(k->id, id, sizeof(id));
		k->id_len = sizeof(id);
	} else {
		/* Some tokens (tpm2-pkcs11) refuse to change CKA_ID: keep the
		 * random id given at generation, which is still unique. */
		cubeid_warn("token %s kept a random CKA_ID for key '%s'", tok->label, o->label);
	}
	k->pub = ga.pub;
	*out = k;
	return CUBEID_OK;
fail:
	cubeid_key_free(k);
	da.h[0] = ga.priv;
	da.h[1] = ga.pub;
	(void)p11_run(tok, NULL, "removing half-made key", destroy_fn, &da);
	return r;
}

int
cubeid_key_delete(cubeid_key *key)
{
	struct destroy_arg da = {0};

	if (key == NULL)
		return CUBEID_ERR_INVALID_ARG;
	da.key = key;
	return p11_run(key->tok, key, "deleting key", destroy_fn, &da);
}

/* ---- accessors ---- */

cubeid_key *
cubeid_key_ref(cubeid_key *key)
{
	if (key != NULL)
		__atomic_add_fetch(&key->refs, 1, __ATOMIC_RELAXED);
	return key;
}

void
cubeid_key_free(cubeid_key *key)
{
	if (key == NULL || __atomic_sub_fetch(&key->refs, 1, __ATOMIC_ACQ_REL) > 0)
		return;
	EVP_PKEY_free(key->pub_pkey);
	free(key->label);
	p11_token_unref(key->tok);
	free(key);
}

cubeid_key_type
cubeid_key_get_type(const cubeid_key *key)
{
	return key->type;
}

const char *
cubeid_key_label(const cubeid_key *key)
{
	return key->label;
}

const uint8_t *
cubeid_key_id(const cubeid_key *key, size_t *len)
{
	*len = key->id_len;
	return key->id;
}

bool
cubeid_key_is_persistent(const cubeid_key *key)
{
	return key->persistent;
}

bool
cubeid_key_is_exportable(const cubeid_key *key)
{
	return key->exportable;
}

cubeid_token *
cubeid_key_token(const cubeid_key *key)
{
	return key->tok;
}

int
cubeid_key_uri(const cubeid_key *key, char **out)
{
	P11KitUri *uri;
	CK_TOKEN_INFO *ti;
	CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
	CK_ATTRIBUTE a;
	int r = CUBEID_ERR_NOMEM;

	*out = NULL;
	if ((uri = p11_kit_uri_new()) == NULL)
		return CUBEID_ERR_NOMEM;
	ti = p11_kit_uri_get_token_info(uri);
	memcpy(ti->label, key->tok->ti.label, sizeof(ti->label));
	memcpy(ti->serialNumber, key->tok->ti.serialNumber, sizeof(ti->serialNumber));
	memcpy(ti->model, key->tok->ti.model, sizeof(ti->model));
	memcpy(ti->manufacturerID, key->tok->ti.manufacturerID, sizeof(ti->manufacturerID));
	a = (CK_ATTRIBUTE){CKA_LABEL, key->label, strlen(key->label)};
	if (p11_kit_uri_set_attribute(uri, &a) != P11_KIT_URI_OK)
		goto out;
	a = (CK_ATTRIBUTE){CKA_ID, (void *)key->id, key->id_len};
	if (key->id_len > 0 && p11_kit_uri_set_attribute(uri, &a) != P11_KIT_URI_OK)
		goto out;
	a = (CK_ATTRIBUTE){CKA_CLASS, &cls, sizeof(cls)};
	if (p11_kit_uri_set_attribute(uri, &a) != P11_KIT_URI_OK)
		goto out;
	if (p11_kit_uri_format(uri, P11_KIT_URI_FOR_OBJECT_ON_TOKEN, out) == P11_KIT_URI_OK)
		r = CUBEID_OK;
out:
	p11_kit_uri_free(uri);
	return r;
}

int
cubeid_key_public(const cubeid_key *key, EVP_PKEY **out)
{
	*out = NULL;
	if (key == NULL || key->pub_pkey == NULL)
		return CUBEID_ERR_INVALID_ARG;
	if (EVP_PKEY_up_ref(key->pub_pkey) != 1)
		return CUBEID_ERR_CRYPTO;
	*out = key->pub_pkey;
	return CUBEID_OK;
}
