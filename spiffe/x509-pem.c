/*
 * Certificate chains from PEM or DER, and X.509 bundles (a trust domain's
 * CA certificates) as PEM.  This is the parser that files and the network
 * reach, so every size is checked before anything is decoded
 * (fuzz/fuzz-pem.c exercises it).
 */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <cubeid/ca.h>
#include <cubeid/log.h>
#include <cubeid/spiffe.h>
#include <cubeid/x509svid.h>

static const char pem_begin[] = "-----BEGIN ";

static bool
is_space(uint8_t c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* One DER certificate spanning exactly der[0..len). */
static int
parse_der_exact(const uint8_t *der, size_t len, X509 **out)
{
	const uint8_t *p = der;
	X509 *x;

	*out = NULL;
	if (len == 0)
		return CUBEID_ERR_X509;
	if (len > CUBEID_X509_CERT_MAX)
		return CUBEID_ERR_TOO_LARGE;
	x = d2i_X509(NULL, &p, (long)len);
	if (x == NULL || p != der + len) {
		X509_free(x);
		ERR_clear_error();
		return CUBEID_ERR_X509;
	}
	*out = x;
	return CUBEID_OK;
}

/* How many times "-----BEGIN " occurs in buf[0..len). */
static size_t
count_begin(const uint8_t *buf, size_t len)
{
	const size_t n = sizeof(pem_begin) - 1;
	size_t i, count = 0;

	for (i = 0; i + n <= len; i++)
		if (buf[i] == '-' && memcmp(buf + i, pem_begin, n) == 0)
			count++;
	return count;
}

static int
parse_pem(const uint8_t *buf, size_t len, size_t max_certs, STACK_OF(X509) * sk)
{
	BIO *bio = BIO_new_mem_buf(buf, (int)len);
	char *name = NULL, *header = NULL;
	unsigned char *data = NULL;
	long data_len = 0;
	X509 *x = NULL;
	int rc = CUBEID_OK;

	if (bio == NULL)
		return CUBEID_ERR_NOMEM;
	for (;;) {
		if (PEM_read_bio(bio, &name, &header, &data, &data_len) != 1) {
			unsigned long e = ERR_peek_last_error();

			/* the normal end: no further BEGIN line */
			if (ERR_GET_LIB(e) == ERR_LIB_PEM &&
			    ERR_GET_REASON(e) == PEM_R_NO_START_LINE && sk_X509_num(sk) > 0)
				rc = CUBEID_OK;
			else
				rc = CUBEID_ERR_X509;
			ERR_clear_error();
			break;
		}
		if (strcmp(name, PEM_STRING_X509) != 0 || header[0] != '\0') {
			rc = CUBEID_ERR_X509;
			break;
		}
		if ((size_t)sk_X509_num(sk) >= max_certs) {
			rc = CUBEID_ERR_TOO_LARGE;
			break;
		}
		if ((rc = parse_der_exact(data, (size_t)data_len, &x)) != CUBEID_OK)
			break;
		if (sk_X509_push(sk, x) <= 0) {
			rc = CUBEID_ERR_NOMEM;
			break;
		}
		x = NULL;
		OPENSSL_free(name);
		OPENSSL_free(header);
		OPENSSL_free(data);
		name = header = NULL;
		data = NULL;
	}
	/* OpenSSL skips lines it does not take for a BEGIN line: a mangled
	 * block must not hide the rest of the file */
	if (rc == CUBEID_OK && count_begin(buf, len) != (size_t)sk_X509_num(sk))
		rc = CUBEID_ERR_X509;
	X509_free(x);
	OPENSSL_free(name);
	OPENSSL_free(header);
	OPENSSL_free(data);
	BIO_free(bio);
	return rc;
}

/* Concatenated DER certificates (the Workload API's x509_svid form). */
static int
parse_der_concat(const uint8_t *buf, size_t len, size_t max_certs, STACK_OF(X509) * sk)
{
	size_t off = 0;

	while (off < len) {
		const uint8_t *p = buf + off;
		size_t left = len - off;
		X509 *x;

		if ((size_t)sk_X509_num(sk) >= max_certs)
			return CUBEID_ERR_TOO_LARGE;
		x = d2i_X509(NULL, &p,
		             (long)(left > CUBEID_X509_CERT_MAX ? CUBEID_X509_CERT_MAX : left));
		if (x == NULL) {
			ERR_clear_error();
			return CUBEID_ERR_X509;
		}
		if (sk_X509_push(sk, x) <= 0) {
			X509_free(x);
			return CUBEID_ERR_NOMEM;
		}
		off = (size_t)(p - buf);
	}
	return sk_X509_num(sk) > 0 ? CUBEID_OK : CUBEID_ERR_X509;
}

int
cubeid_x509_chain_parse(const uint8_t *buf, size_t len, size_t max_bytes, size_t max_certs,
                        STACK_OF(X509) * *out)
{
	STACK_OF(X509) *sk = NULL;
	size_t i = 0;
	int rc;

	if (out != NULL)
		*out = NULL;
	if (buf == NULL || out == NULL || max_certs == 0)
		return CUBEID_ERR_INVALID_ARG;
	if (len > max_bytes || len > INT32_MAX)
		return CUBEID_ERR_TOO_LARGE;
	if ((sk = sk_X509_new_null()) == NULL)
		return CUBEID_ERR_NOMEM;
	while (i < len && is_space(buf[i]))
		i++;
	if (len - i >= sizeof(pem_begin) - 1 &&
	    memcmp(buf + i, pem_begin, sizeof(pem_begin) - 1) == 0)
		rc = parse_pem(buf, len, max_certs, sk);
	else
		rc = parse_der_concat(buf, len, max_certs, sk);
	if (rc != CUBEID_OK) {
		sk_X509_pop_free(sk, X509_free);
		return rc;
	}
	*out = sk;
	return CUBEID_OK;
}

int
cubeid_x509_chain_read_file(const char *path, size_t max_bytes, size_t max_certs,
                            STACK_OF(X509) * *out)
{
	char *buf = NULL;
	size_t len = 0;
	int rc;

	if (out != NULL)
		*out = NULL;
	if (path == NULL || out == NULL)
		return CUBEID_ERR_INVALID_ARG;
	if ((rc = cubeid_read_file(path, max_bytes, &buf, &len)) != CUBEID_OK)
		return rc;
	rc = cubeid_x509_chain_parse((const uint8_t *)buf, len, max_bytes, max_certs, out);
	free(buf);
	return rc;
}

int
cubeid_x509_chain_to_pem(STACK_OF(X509) * certs, char **out, size_t *len)
{
	BIO *bio = NULL;
	char *mem, *s = NULL;
	long n;
	int i, rc = CUBEID_ERR_NOMEM;

	if (out != NULL)
		*out = NULL;
	if (len != NULL)
		*len = 0;
	if (certs == NULL || out == NULL)
		return CUBEID_ERR_INVALID_ARG;
	if ((bio = BIO_new(BIO_s_mem())) == NULL)
		goto out;
	for (i = 0; i < sk_X509_num(certs); i++) {
		if (PEM_write_bio_X509(bio, sk_X509_value(certs, i)) != 1) {
			rc = CUBEID_ERR_CRYPTO;
			goto out;
		}
	}
	n = BIO_get_mem_data(bio, &mem);
	if (n < 0 || (s = malloc((size_t)n + 1)) == NULL)
		goto out;
	memcpy(s, mem, (size_t)n);
	s[n] = '\0';
	*out = s;
	if (len != NULL)
		*len = (size_t)n;
	rc = CUBEID_OK;
out:
	BIO_free(bio);
	ERR_clear_error();
	return rc;
}

/* ---- bundles --------------------------------------------------------- */

struct cubeid_x509_bundle {
	char *td;
	STACK_OF(X509) * certs;
};

int
cubeid_x509_bundle_new(const char *td, cubeid_x509_bundle **out)
{
	cubeid_x509_bundle *b;

	if (out != NULL)
		*out = NULL;
	if (td == NULL || out == NULL)
		return CUBEID_ERR_INVALID_ARG;
	if (cubeid_trust_domain_validate(td, strlen(td), NULL) != CUBEID_OK)
		return CUBEID_ERR_SPIFFE_ID;
	if ((b = calloc(1, sizeof(*b))) == NULL)
		return CUBEID_ERR_NOMEM;
	b->td = strdup(td);
	b->certs = sk_X509_new_null();
	if (b->td == NULL || b->certs == NULL) {
		cubeid_x509_bundle_free(b);
		return CUBEID_ERR_NOMEM;
	}
	*out = b;
	return CUBEID_OK;
}

void
cubeid_x509_bundle_free(cubeid_x509_bundle *b)
{
	if (b == NULL)
		return;
	sk_X509_pop_free(b->certs, X509_free);
	free(b->td);
	free(b);
}

const char *
cubeid_x509_bundle_trust_domain(const cubeid_x509_bundle *b)
{
	return b != NULL ? b->td : NULL;
}

int
cubeid_x509_bundle_add(cubeid_x509_bundle *b, X509 *cert)
{
	int i;

	if (b == NULL || cert == NULL)
		return CUBEID_ERR_INVALID_ARG;
	/* authorities only: a leaf in a bundle would become a trust anchor */
	if (X509_check_ca(cert) != 1)
		return CUBEID_ERR_X509;
	for (i = 0; i < sk_X509_num(b->certs); i++)
		if (X509_cmp(sk_X509_value(b->certs, i), cert) == 0)
			return CUBEID_OK;
	if (sk_X509_num(b->certs) >= CUBEID_X509_BUNDLE_CERTS)
		return CUBEID_ERR_TOO_LARGE;
	if (X509_up_ref(cert) != 1)
		return CUBEID_ERR_INTERNAL;
	if (sk_X509_push(b->certs, cert) <= 0) {
		X509_free(cert);
		return CUBEID_ERR_NOMEM;
	}
	return CUBEID_OK;
}

size_t
cubeid_x509_bundle_count(const cubeid_x509_bundle *b)
{
	return b != NULL ? (size_t)sk_X509_num(b->certs) : 0;
}

X509 *
cubeid_x509_bundle_at(const cubeid_x509_bundle *b, size_t i)
{
	if (b == NULL || i >= (size_t)sk_X509_num(b->certs))
		return NULL;
	return sk_X509_value(b->certs, (int)i);
}

STACK_OF(X509) * cubeid_x509_bundle_certs(const cubeid_x509_bundle *b)
{
	return b != NULL ? b->certs : NULL;
}

int
cubeid_x509_bundle_parse(const char *td, const uint8_t *buf, size_t len, cubeid_x509_bundle **out)
{
	cubeid_x509_bundle *b = NULL;
	STACK_OF(X509) *sk = NULL;
	int i, rc;

	if (out != NULL)
		*out = NULL;
	if (td == NULL || buf == NULL || out == NULL)
		return CUBEID_ERR_INVALID_ARG;
	if ((rc = cubeid_x509_chain_parse(buf, len, CUBEID_X509_BUNDLE_MAX,
	                                  CUBEID_X509_BUNDLE_CERTS, &sk)) != CUBEID_OK)
		return rc;
	if ((rc = cubeid_x509_bundle_new(td, &b)) != CUBEID_OK)
		goto out;
	for (i = 0; i < sk_X509_num(sk); i++)
		if ((rc = cubeid_x509_bundle_add(b, sk_X509_value(sk, i))) != CUBEID_OK)
			goto out;
	*out = b;
	b = NULL;
out:
	cubeid_x509_bundle_free(b);
	sk_X509_pop_free(sk, X509_free);
	return rc;
}

int
cubeid_x509_bundle_read_file(const char *td, const char *path, cubeid_x509_bundle **out)
{
	char *buf = NULL;
	size_t len = 0;
	int rc;

	if (out != NULL)
		*out = NULL;
	if (path == NULL || out == NULL)
		return CUBEID_ERR_INVALID_ARG;
	if ((rc = cubeid_read_file(path, CUBEID_X509_BUNDLE_MAX, &buf, &len)) != CUBEID_OK)
		return rc;
	rc = cubeid_x509_bundle_parse(td, (const uint8_t *)buf, len, out);
	free(buf);
	return rc;
}

int
cubeid_x509_bundle_to_pem(const cubeid_x509_bundle *b, char **out, size_t *len)
{
	if (out != NULL)
		*out = NULL;
	if (b == NULL)
		return CUBEID_ERR_INVALID_ARG;
	return cubeid_x509_chain_to_pem(b->certs, out, len);
}
