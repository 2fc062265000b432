/*
 * `cubeid helper`: the files made from Workload API messages, as
 * spiffe-helper makes them (pkg/disk in spiffe-helper v0.11.0): the X.509
 * files with add_intermediates_to_bundle, include_federated_domains and
 * omit_expired, and the JWT bundle file's JSON of base64 JWKS.
 */
#include "config.h"

#include "cli/helper.h"

#include <cubeid/error.h>
#include <cubeid/log.h>
#include <cubeid/workloadapi.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

static int
bio_take(BIO *b, bool secret, uint8_t **out, size_t *len)
{
	char *p;
	long n = BIO_get_mem_data(b, &p);

	*out = NULL;
	*len = 0;
	if (n < 0)
		return CUBEID_ERR_CRYPTO;
	if ((*out = malloc((size_t)n + 1)) == NULL)
		return CUBEID_ERR_NOMEM;
	(void)secret; /* the key's copy is wiped when it is replaced or freed */
	memcpy(*out, p, (size_t)n);
	*len = (size_t)n;
	return CUBEID_OK;
}

/* Append the DER certificates in der[0..len) (skipping expired ones when
 * omit) to b; start..end select by index (end < 0: all). */
static int
pem_certs(BIO *b, const uint8_t *der, size_t len, int start, int end, bool omit)
{
	const unsigned char *p = der, *e = der + len;
	int i = 0;

	while (p < e) {
		X509 *x = d2i_X509(NULL, &p, (long)(e - p));
		bool skip;

		if (x == NULL)
			return CUBEID_ERR_X509;
		skip = i < start || (end >= 0 && i >= end) ||
		       (omit && X509_cmp_current_time(X509_get0_notAfter(x)) < 0);
		if (!skip && PEM_write_bio_X509(b, x) != 1) {
			X509_free(x);
			return CUBEID_ERR_CRYPTO;
		}
		X509_free(x);
		i++;
	}
	return CUBEID_OK;
}

static const char *
td_name(const char *id)
{
	return strncmp(id, "spiffe://", 9) == 0 ? id + 9 : id;
}

/* The X.509 files from a FetchX509SVID message, as spiffe-helper's
 * disk.WriteX509Context makes them. */
int
helper_x509_files(const struct helper_config *c, const struct cubeid_wl_x509 *x, uint8_t **svid,
                  size_t *svid_len, uint8_t **key, size_t *key_len, uint8_t **bundle,
                  size_t *bundle_len)
{
	const struct cubeid_wl_x509svid *s = NULL;
	BIO *bc = NULL, *bk = NULL, *bb = NULL;
	size_t i, tdlen;
	const char *td;
	int rc = CUBEID_ERR_NOMEM;

	for (i = 0; i < x->n_svids && s == NULL; i++)
		if (c->hint == NULL || *c->hint == '\0' || strcmp(x->svids[i].hint, c->hint) == 0)
			s = &x->svids[i];
	if (s == NULL) {
		cubeid_error("no X.509-SVID %s%s%s", c->hint ? "with the hint '" : "in the message",
		             c->hint ? c->hint : "", c->hint ? "'" : "");
		return CUBEID_ERR_NOT_FOUND;
	}
	td = td_name(s->spiffe_id);
	tdlen = strcspn(td, "/");
	if ((bc = BIO_new(BIO_s_mem())) == NULL || (bk = BIO_new(BIO_s_secmem())) == NULL ||
	    (bb = BIO_new(BIO_s_mem())) == NULL)
		goto out;
	if (c->add_intermediates_to_bundle) {
		if ((rc = pem_certs(bc, s->cert_chain, s->cert_chain_len, 0, 1, c->omit_expired)) !=
		            CUBEID_OK ||
		    (rc = pem_certs(bb, s->bundle, s->bundle_len, 0, -1, c->omit_expired)) !=
		            CUBEID_OK ||
		    (rc = pem_certs(bb, s->cert_chain, s->cert_chain_len, 1, -1,
		                    c->omit_expired)) != CUBEID_OK)
			goto out;
	} else if ((rc = pem_certs(bc, s->cert_chain, s->cert_chain_len, 0, -1, c->omit_expired)) !=
	                   CUBEID_OK ||
	           (rc = pem_certs(bb, s->bundle, s->bundle_len, 0, -1, c->omit_expired)) !=
	                   CUBEID_OK) {
		goto out;
	}
	for (i = 0; c->include_federated_domains && i < x->n_federated; i++) {
		const char *ftd = td_name(x->federated[i].trust_domain);
		if (strlen(ftd) == tdlen && strncmp(ftd, td, tdlen) == 0)
			continue;
		if ((rc = pem_certs(bb, x->federated[i].data, x->federated[i].len, 0, -1,
		                    c->omit_expired)) != CUBEID_OK)
			goto out;
	}
	rc = CUBEID_ERR_CRYPTO;
	if (PEM_write_bio(bk, "PRIVATE KEY", "", s->key, (long)s->key_len) <= 0)
		goto out;
	if ((rc = bio_take(bc, false, svid, svid_len)) != CUBEID_OK ||
	    (rc = bio_take(bk, true, key, key_len)) != CUBEID_OK ||
	    (rc = bio_take(bb, false, bundle, bundle_len)) != CUBEID_OK)
		goto out;
	cubeid_info("received X.509-SVID %s", s->spiffe_id);
out:
	BIO_free(bc);
	BIO_free(bk);
	BIO_free(bb);
	return rc;
}

/* spiffe-helper's JWT bundle file: {"td": "base64(JWKS)", ...}. */
int
helper_jwt_bundle_json(const struct cubeid_wl_bundle *v, size_t n, uint8_t **out, size_t *len)
{
	json_t *o = json_object();
	char *s, *b64;
	size_t i;

	*out = NULL;
	if (o == NULL)
		return CUBEID_ERR_NOMEM;
	for (i = 0; i < n; i++) {
		if (v[i].len > 4u << 20 || (b64 = malloc(4 * ((v[i].len + 2) / 3) + 1)) == NULL) {
			json_decref(o);
			return CUBEID_ERR_NOMEM;
		}
		EVP_EncodeBlock((unsigned char *)b64, v[i].data, (int)v[i].len);
		json_object_set_new(o, td_name(v[i].trust_domain), json_string(b64));
		free(b64);
	}
	s = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
	json_decref(o);
	if (s == NULL)
		return CUBEID_ERR_NOMEM;
	*out = (uint8_t *)s;
	*len = strlen(s);
	return CUBEID_OK;
}

/* The exp claim of a JWT (0 if it cannot be read). */
int64_t
helper_jwt_exp(const char *tok)
{
	const char *p = strchr(tok, '.'), *q;
	unsigned char *raw = NULL;
	char *b64 = NULL;
	size_t n, i, pad;
	int64_t exp = 0;
	json_t *j;
	int r;

	if (p == NULL || (q = strchr(++p, '.')) == NULL || (n = (size_t)(q - p)) > 65536)
		return 0;
	pad = (4 - n % 4) % 4;
	if ((b64 = malloc(n + pad + 1)) == NULL || (raw = malloc(n + 4)) == NULL)
		goto out;
	for (i = 0; i < n; i++)
		b64[i] = p[i] == '-' ? '+' : p[i] == '_' ? '/' : p[i];
	for (; i < n + pad; i++)
		b64[i] = '=';
	b64[i] = '\0';
	if ((r = EVP_DecodeBlock(raw, (unsigned char *)b64, (int)(n + pad))) < 0)
		goto out;
	if ((j = json_loadb((char *)raw, (size_t)r - pad, 0, NULL)) != NULL) {
		json_t *e = json_object_get(j, "exp");
		if (json_is_integer(e))
			exp = (int64_t)json_integer_value(e);
		json_decref(j);
	}
out:
	free(b64);
	free(raw);
	return exp;
}
