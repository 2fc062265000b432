/*
 * The wrapped-key document of <cubeid/key-wrap.h>: the blobs of a key
 * wrapped in the enrolment token (pkcs11/p11-wrap.c), the key's public
 * half, and the kids (cubeid_kid_from_pkey()) that tie it to the cluster
 * key and to the node's wrapping key, as JSON.
 */
#include "config.h"

#include "pkcs11/p11-wrap.h"

#include <cubeid/b64url.h>
#include <cubeid/jwt.h>
#include <cubeid/key-wrap.h>
#include <cubeid/log.h>

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#define WRAP_ENC     "RSA-OAEP+AES-KWP" /* OAEP with SHA-1 and MGF1-SHA-1, as JWE RSA-OAEP */
#define WRAP_VERSION 1

static int
b64_member(json_t *o, const char *name, const uint8_t *buf, size_t len)
{
	char *b = NULL;
	int rc;

	if ((rc = cubeid_b64url_encode_alloc(buf, len, &b)) != CUBEID_OK)
		return rc;
	rc = json_object_set_new(o, name, json_string(b)) == 0 ? CUBEID_OK : CUBEID_ERR_NOMEM;
	free(b);
	return rc;
}

int
cubeid_key_wrap_for(cubeid_key *key, EVP_PKEY *wrap_pub, char **out)
{
	struct p11_wrapped w = {0};
	EVP_PKEY *pub = NULL;
	unsigned char *spki = NULL;
	char kid[CUBEID_KID_LEN + 1], wkid[CUBEID_KID_LEN + 1];
	json_t *doc = NULL;
	int n, rc;

	if (out != NULL)
		*out = NULL;
	if (key == NULL || wrap_pub == NULL || out == NULL)
		return CUBEID_ERR_INVALID_ARG;
	if ((rc = p11_key_wrap(key, wrap_pub, &w)) != CUBEID_OK)
		return rc;
	if ((rc = cubeid_key_public(key, &pub)) != CUBEID_OK ||
	    (rc = cubeid_kid_from_pkey(pub, kid)) != CUBEID_OK ||
	    (rc = cubeid_kid_from_pkey(wrap_pub, wkid)) != CUBEID_OK)
		goto out;
	if ((n = i2d_PUBKEY(pub, &spki)) <= 0) {
		rc = CUBEID_ERR_CRYPTO;
		goto out;
	}
	rc = CUBEID_ERR_NOMEM;
	if ((doc = json_pack("{s:i, s:s, s:s, s:s}", "v", WRAP_VERSION, "enc", WRAP_ENC, "kid", kid,
	                     "wrapping_kid", wkid)) == NULL)
		goto out;
	if ((rc = b64_member(doc, "public_key", spki, (size_t)n)) != CUBEID_OK ||
	    (rc = b64_member(doc, "wrapped_cek", w.cek, w.cek_len)) != CUBEID_OK ||
	    (rc = b64_member(doc, "wrapped_key", w.wk, w.wk_len)) != CUBEID_OK)
		goto out;
	if ((*out = json_dumps(doc, JSON_INDENT(2))) == NULL)
		rc = CUBEID_ERR_NOMEM;
out:
	json_decref(doc);
	OPENSSL_free(spki);
	EVP_PKEY_free(pub);
	p11_wrapped_clear(&w);
	return rc;
}

void
cubeid_wrapped_info_clear(struct cubeid_wrapped_info *info)
{
	if (info == NULL)
		return;
	free(info->kid);
	free(info->wrapping_kid);
	EVP_PKEY_free(info->pub);
	memset(info, 0, sizeof(*info));
}

static int
get_b64(json_t *o, const char *name, uint8_t **out, size_t *len)
{
	const char *s = json_string_value(json_object_get(o, name));

	if (s == NULL)
		return CUBEID_ERR_PARSE;
	if (cubeid_b64url_decode_alloc(s, strlen(s), out, len) != CUBEID_OK || *len == 0 ||
	    *len > P11_WRAP_BLOB_MAX) {
		free(*out);
		*out = NULL;
		return CUBEID_ERR_PARSE;
	}
	return CUBEID_OK;
}

/* Parse; *w (optional) gets the blobs. */
static int
parse_doc(const char *doc, size_t len, struct cubeid_wrapped_info *info, struct p11_wrapped *w)
{
	json_t *j = NULL;
	uint8_t *spki = NULL, *c = NULL, *k = NULL;
	const unsigned char *p;
	const char *kid, *wkid, *enc;
	char want[CUBEID_KID_LEN + 1];
	size_t sl = 0, cl = 0, kl = 0;
	int rc = CUBEID_ERR_PARSE;

	memset(info, 0, sizeof(*info));
	if (doc == NULL)
		return CUBEID_ERR_INVALID_ARG;
	if (len > CUBEID_WRAPPED_MAX)
		return CUBEID_ERR_TOO_LARGE;
	if ((j = json_loadb(doc, len, JSON_REJECT_DUPLICATES, NULL)) == NULL || !json_is_object(j))
		goto out;
	enc = json_string_value(json_object_get(j, "enc"));
	kid = json_string_value(json_object_get(j, "kid"));
	wkid = json_string_value(json_object_get(j, "wrapping_kid"));
	if (json_integer_value(json_object_get(j, "v")) != WRAP_VERSION || enc == NULL ||
	    strcmp(enc, WRAP_ENC) != 0 || kid == NULL || wkid == NULL)
		goto out;
	if (get_b64(j, "public_key", &spki, &sl) != CUBEID_OK ||
	    get_b64(j, "wrapped_cek", &c, &cl) != CUBEID_OK ||
	    get_b64(j, "wrapped_key", &k, &kl) != CUBEID_OK)
		goto out;
	p = spki;
	if ((info->pub = d2i_PUBKEY(NULL, &p, (long)sl)) == NULL || p != spki + sl ||
	    !EVP_PKEY_is_a(info->pub, "RSA") ||
	    cubeid_jws_key_fits(CUBEID_SIG_RSA_PKCS1_SHA256, info->pub) != CUBEID_OK ||
	    cubeid_kid_from_pkey(info->pub, want) != CUBEID_OK || strcmp(want, kid) != 0)
		goto out;
	if ((info->kid = strdup(kid)) == NULL || (info->wrapping_kid = strdup(wkid)) == NULL) {
		rc = CUBEID_ERR_NOMEM;
		goto out;
	}
	if (w != NULL) {
		w->cek = c;
		w->cek_len = cl;
		w->wk = k;
		w->wk_len = kl;
		c = k = NULL;
	}
	rc = CUBEID_OK;
out:
	if (rc != CUBEID_OK)
		cubeid_wrapped_info_clear(info);
	ERR_clear_error();
	json_decref(j);
	free(spki);
	free(c);
	free(k);
	return rc;
}

int
cubeid_wrapped_parse(const char *doc, size_t len, struct cubeid_wrapped_info *info)
{
	if (info == NULL)
		return CUBEID_ERR_INVALID_ARG;
	return parse_doc(doc, len, info, NULL);
}

int
cubeid_key_unwrap_import(cubeid_key *wrapkey, const char *doc, size_t len, const char *label,
                         cubeid_key **out)
{
	struct cubeid_wrapped_info info;
	struct p11_wrapped w = {0};
	EVP_PKEY *wpub = NULL;
	char wkid[CUBEID_KID_LEN + 1];
	int rc;

	if (out != NULL)
		*out = NULL;
	if (wrapkey == NULL || doc == NULL || label == NULL || label[0] == '\0' || out == NULL)
		return CUBEID_ERR_INVALID_ARG;
	if ((rc = parse_doc(doc, len, &info, &w)) != CUBEID_OK)
		return rc;
	if ((rc = cubeid_key_public(wrapkey, &wpub)) != CUBEID_OK ||
	    (rc = cubeid_kid_from_pkey(wpub, wkid)) != CUBEID_OK)
		goto out;
	if (strcmp(wkid, info.wrapping_kid) != 0) {
		cubeid_error("the wrapped key is for wrapping key %s, not this node's %s",
		             info.wrapping_kid, wkid);
		rc = CUBEID_ERR_P11_KEY;
		goto out;
	}
	rc = p11_key_unwrap(wrapkey, &w, info.pub, label, out);
out:
	cubeid_wrapped_info_clear(&info);
	EVP_PKEY_free(wpub);
	p11_wrapped_clear(&w);
	return rc;
}
