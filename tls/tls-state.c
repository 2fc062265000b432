/*
 * TLS loader states: one complete identity (certificate chain, private
 * key, trust bundle, our SPIFFE ID), built in full and checked before the
 * loader swaps it in, then shared by reference and never changed; and the
 * swap itself (tls_install()), which the file and the socket sources use.
 */
#include "config.h"

#include <errno.h>
#include <string.h>
#include <sys/stat.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include <cubeid/ca.h>
#include <cubeid/log.h>

#include "tls/tls-internal.h"

void
tls_strlcpy(char *dst, const char *src, size_t size)
{
	size_t n = strlen(src);

	if (size == 0)
		return;
	if (n >= size)
		n = size - 1;
	memcpy(dst, src, n);
	dst[n] = '\0';
}

struct tls_state *
tls_state_ref(struct tls_state *s)
{
	if (s != NULL)
		__atomic_add_fetch(&s->refs, 1, __ATOMIC_RELAXED);
	return s;
}

void
tls_state_unref(struct tls_state *s)
{
	if (s == NULL || __atomic_sub_fetch(&s->refs, 1, __ATOMIC_ACQ_REL) != 0)
		return;
	X509_free(s->leaf);
	sk_X509_pop_free(s->inter, X509_free);
	EVP_PKEY_free(s->key);
	cubeid_x509_bundle_free(s->bundle);
	cubeid_spiffe_id_free(s->id);
	free(s);
}

static struct tls_state *
state_new(void)
{
	struct tls_state *s = calloc(1, sizeof(*s));

	if (s != NULL)
		s->refs = 1;
	return s;
}

void
tls_file_id_get(const char *path, struct tls_file_id *fid)
{
	struct stat st;

	memset(fid, 0, sizeof(*fid));
	if (path == NULL || stat(path, &st) != 0)
		return;
	fid->present = true;
	fid->dev = st.st_dev;
	fid->ino = st.st_ino;
	fid->size = st.st_size;
	fid->mtime_ns = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
	fid->ctime_ns = (int64_t)st.st_ctim.tv_sec * 1000000000 + st.st_ctim.tv_nsec;
}

bool
tls_file_id_equal(const struct tls_file_id *a, const struct tls_file_id *b)
{
	return a->present == b->present && a->dev == b->dev && a->ino == b->ino &&
	       a->size == b->size && a->mtime_ns == b->mtime_ns && a->ctime_ns == b->ctime_ns;
}

int
tls_state_check(struct tls_state *s, const char **why)
{
	STACK_OF(X509) *chain = NULL;
	int rc, i;

	*why = "ok";
	if ((rc = cubeid_x509_spiffe_id(s->leaf, &s->id, why)) != CUBEID_OK)
		return rc;
	if (X509_check_private_key(s->leaf, s->key) != 1) {
		ERR_clear_error();
		*why = "the certificate does not match the private key";
		return CUBEID_ERR_KEY_MISMATCH;
	}
	/* our own chain must verify to the bundle we check peers with: a CA
	 * file from another trust domain, or an expired certificate, is
	 * refused here rather than at every handshake */
	if ((chain = sk_X509_new_null()) == NULL || sk_X509_push(chain, s->leaf) <= 0) {
		sk_X509_free(chain);
		return CUBEID_ERR_NOMEM;
	}
	for (i = 0; i < sk_X509_num(s->inter); i++)
		if (sk_X509_push(chain, sk_X509_value(s->inter, i)) <= 0) {
			sk_X509_free(chain);
			return CUBEID_ERR_NOMEM;
		}
	rc = cubeid_x509_svid_verify(chain, s->bundle, 0, NULL, why);
	sk_X509_free(chain); /* borrowed certificates */
	return rc;
}

/* Split a PEM/DER chain into leaf and intermediates. */
static int
split_chain(STACK_OF(X509) * chain, struct tls_state *s)
{
	s->leaf = sk_X509_shift(chain);
	s->inter = chain;
	return s->leaf != NULL ? CUBEID_OK : CUBEID_ERR_X509;
}

static int
no_password(char *buf, int size, int rwflag, void *u)
{
	return -1; /* never prompt: an encrypted key file is an error */
}

static int
key_from_pem_file(const char *path, EVP_PKEY **out, const char **why)
{
	char *buf = NULL;
	size_t len = 0;
	BIO *bio = NULL;
	int rc;

	*out = NULL;
	if ((rc = cubeid_read_file(path, CUBEID_TLS_FILE_MAX, &buf, &len)) != CUBEID_OK) {
		*why = rc == CUBEID_ERR_NOT_FOUND   ? "the key file does not exist"
		       : rc == CUBEID_ERR_TOO_LARGE ? "the key file is too large"
		                                    : "the key file cannot be read";
		return rc;
	}
	rc = CUBEID_ERR_PARSE;
	*why = "the key file holds no usable private key";
	if ((bio = BIO_new_mem_buf(buf, (int)len)) == NULL) {
		rc = CUBEID_ERR_NOMEM;
		goto out;
	}
	if ((*out = PEM_read_bio_PrivateKey(bio, NULL, no_password, NULL)) != NULL)
		rc = CUBEID_OK;
out:
	BIO_free(bio);
	OPENSSL_cleanse(buf, len);
	free(buf);
	ERR_clear_error();
	return rc;
}

static int
key_from_token(cubeid_token *tok, const char *uri, EVP_PKEY **out, const char **why)
{
	cubeid_key *key = NULL;
	int rc;

	*out = NULL;
	if ((rc = cubeid_key_find_uri(tok, uri, &key)) != CUBEID_OK) {
		*why = "the PKCS#11 key was not found in the token";
		return rc;
	}
	rc = cubeid_key_evp(key, out);
	cubeid_key_free(key); /* the EVP_PKEY holds its own reference */
	if (rc != CUBEID_OK)
		*why = "the PKCS#11 key cannot be used by OpenSSL";
	return rc;
}

int
tls_state_from_files(const struct tls_file_src *src, struct tls_state **out, const char **why,
                     struct tls_file_id seen[TLS_F_N])
{
	struct tls_state *s = NULL;
	STACK_OF(X509) *chain = NULL;
	const char *td;
	int rc;

	*out = NULL;
	*why = "out of memory";
	/* stat before reading: a change after this is seen by the next check */
	memset(seen, 0, sizeof(struct tls_file_id) * TLS_F_N);
	tls_file_id_get(src->cert_file, &seen[TLS_F_CERT]);
	if (src->token == NULL)
		tls_file_id_get(src->key_file, &seen[TLS_F_KEY]);
	tls_file_id_get(src->ca_file, &seen[TLS_F_CA]);
	if ((s = state_new()) == NULL)
		return CUBEID_ERR_NOMEM;
	memcpy(s->files, seen, sizeof(s->files));

	rc = cubeid_x509_chain_read_file(src->cert_file, CUBEID_X509_CHAIN_MAX,
	                                 CUBEID_X509_CHAIN_CERTS, &chain);
	if (rc != CUBEID_OK) {
		*why = rc == CUBEID_ERR_NOT_FOUND
		               ? "the certificate file does not exist"
		               : "the certificate file holds no valid certificate";
		goto out;
	}
	if ((rc = split_chain(chain, s)) != CUBEID_OK) {
		*why = "the certificate file holds no valid certificate";
		goto out;
	}
	chain = NULL;
	if (src->token != NULL)
		rc = key_from_token(src->token, src->key_file, &s->key, why);
	else
		rc = key_from_pem_file(src->key_file, &s->key, why);
	if (rc != CUBEID_OK)
		goto out;
	/* the bundle belongs to the configured trust domain, else ours */
	td = src->trust_domain;
	if (td == NULL) {
		cubeid_spiffe_id *id = NULL;

		if ((rc = cubeid_x509_spiffe_id(s->leaf, &id, why)) != CUBEID_OK)
			goto out;
		rc = cubeid_x509_bundle_read_file(cubeid_spiffe_id_trust_domain(id), src->ca_file,
		                                  &s->bundle);
		cubeid_spiffe_id_free(id);
	} else {
		rc = cubeid_x509_bundle_read_file(td, src->ca_file, &s->bundle);
	}
	if (rc != CUBEID_OK) {
		*why = rc == CUBEID_ERR_NOT_FOUND ? "the CA file does not exist"
		                                  : "the CA file holds no valid CA certificates";
		goto out;
	}
	if ((rc = tls_state_check(s, why)) != CUBEID_OK)
		goto out;
	*out = s;
	s = NULL;
out:
	sk_X509_pop_free(chain, X509_free);
	tls_state_unref(s);
	ERR_clear_error();
	return rc;
}

int
tls_state_from_wl(const struct cubeid_wl_x509svid *svid, struct tls_state **out, const char **why)
{
	struct tls_state *s = NULL;
	STACK_OF(X509) *chain = NULL;
	const unsigned char *p;
	cubeid_spiffe_id *id = NULL;
	int rc;

	*out = NULL;
	*why = "out of memory";
	if ((s = state_new()) == NULL)
		return CUBEID_ERR_NOMEM;
	rc = cubeid_x509_chain_parse(svid->cert_chain, svid->cert_chain_len, CUBEID_X509_CHAIN_MAX,
	                             CUBEID_X509_CHAIN_CERTS, &chain);
	if (rc != CUBEID_OK || (rc = split_chain(chain, s)) != CUBEID_OK) {
		*why = "the SVID's certificate chain is malformed";
		goto out;
	}
	chain = NULL;
	p = svid->key;
	if (svid->key_len == 0 || svid->key_len > CUBEID_TLS_FILE_MAX ||
	    (s->key = d2i_AutoPrivateKey(NULL, &p, (long)svid->key_len)) == NULL ||
	    p != svid->key + svid->key_len) {
		*why = "the SVID's private key is malformed";
		rc = CUBEID_ERR_PARSE;
		goto out;
	}
	if ((rc = cubeid_spiffe_id_parse(svid->spiffe_id, strlen(svid->spiffe_id), &id, NULL)) !=
	    CUBEID_OK) {
		*why = "the SVID's SPIFFE ID is not valid";
		goto out;
	}
	rc = cubeid_x509_bundle_parse(cubeid_spiffe_id_trust_domain(id), svid->bundle,
	                              svid->bundle_len, &s->bundle);
	if (rc != CUBEID_OK) {
		*why = "the SVID's bundle is malformed";
		goto out;
	}
	if ((rc = tls_state_check(s, why)) != CUBEID_OK)
		goto out;
	if (!cubeid_spiffe_id_equal(id, s->id)) {
		*why = "the SVID's certificate is for another SPIFFE ID than the message says";
		rc = CUBEID_ERR_X509_SVID;
		goto out;
	}
	*out = s;
	s = NULL;
out:
	cubeid_spiffe_id_free(id);
	sk_X509_pop_free(chain, X509_free);
	tls_state_unref(s);
	ERR_clear_error();
	return rc;
}

/* ---- the current state of a cubeid_tls, and its swap ------------------ */

cubeid_tls *
tls_ref(cubeid_tls *tls)
{
	__atomic_add_fetch(&tls->refs, 1, __ATOMIC_RELAXED);
	return tls;
}

struct tls_state *
tls_current(cubeid_tls *tls)
{
	struct tls_state *s;

	pthread_mutex_lock(&tls->lock);
	s = tls_state_ref(tls->cur);
	pthread_mutex_unlock(&tls->lock);
	return s;
}

static const char *
source_name(const cubeid_tls *tls)
{
	return tls->socket_mode ? tls->socket : tls->files.cert_file;
}

void
tls_install(cubeid_tls *tls, struct tls_state *s, int rc, const char *why)
{
	struct tls_state *old = NULL;
	bool first;

	pthread_mutex_lock(&tls->lock);
	first = tls->cur == NULL;
	if (s != NULL) {
		old = tls->cur;
		tls->cur = s;
		tls->gen++;
		tls->err = CUBEID_OK;
		tls_strlcpy(tls->why, "ok", sizeof(tls->why));
	} else {
		tls->err = rc;
		tls_strlcpy(tls->why, why != NULL ? why : cubeid_strerror(rc), sizeof(tls->why));
	}
	pthread_cond_broadcast(&tls->first_cond);
	pthread_mutex_unlock(&tls->lock);
	if (s != NULL) {
		if (!first)
			cubeid_notice("tls: loaded a new certificate for %s from %s",
			              cubeid_spiffe_id_string(s->id), source_name(tls));
	} else {
		cubeid_error("tls: %s from %s: %s (%s)%s",
		             first ? "cannot load the identity" : "reload failed", source_name(tls),
		             why != NULL ? why : "", cubeid_strerror(rc),
		             first ? "" : "; keeping the current certificate");
	}
	tls_state_unref(old);
	if (tls->on_reload != NULL && (!first || s == NULL))
		tls->on_reload(tls, s != NULL ? CUBEID_OK : rc, tls->on_reload_arg);
}

void
tls_withdraw(cubeid_tls *tls, int rc, const char *why)
{
	struct tls_state *old;

	pthread_mutex_lock(&tls->lock);
	old = tls->cur;
	tls->cur = NULL;
	tls->err = rc;
	tls_strlcpy(tls->why, why != NULL ? why : cubeid_strerror(rc), sizeof(tls->why));
	pthread_cond_broadcast(&tls->first_cond);
	pthread_mutex_unlock(&tls->lock);
	if (old != NULL)
		cubeid_error("tls: %s from %s: %s; dropping the certificate of %s",
		             "identity withdrawn", source_name(tls),
		             why != NULL ? why : cubeid_strerror(rc),
		             cubeid_spiffe_id_string(old->id));
	tls_state_unref(old);
	if (old != NULL && tls->on_reload != NULL)
		tls->on_reload(tls, rc, tls->on_reload_arg);
}

unsigned long
cubeid_tls_generation(cubeid_tls *tls)
{
	unsigned long g;

	if (tls == NULL)
		return 0;
	pthread_mutex_lock(&tls->lock);
	g = tls->gen;
	pthread_mutex_unlock(&tls->lock);
	return g;
}
