/* Helpers for tests/test-tls*.c and bench/tls (see tls-test-util.h). */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/pem.h>

#include <cubeid/tls.h>

#include "tests/harness.h"
#include "tests/tls-test-util.h"

/* The helpers run in Check tests and in the bench: fail loudly either way. */
#define TTU_CHECK(cond)                                                                            \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			fprintf(stderr, "%s:%d: %s failed\n", __FILE__, __LINE__, #cond);          \
			abort();                                                                   \
		}                                                                                  \
	} while (0)

static char *
join(const char *a, const char *b)
{
	char *p;

	TTU_CHECK(asprintf(&p, "%s/%s", a, b) >= 0);
	return p;
}

static void
write_str(const char *path, const char *s, mode_t mode)
{
	FILE *f;

	unlink(path);
	f = fopen(path, "w");
	TTU_CHECK(f != NULL);
	TTU_CHECK(fputs(s, f) >= 0);
	TTU_CHECK(fchmod(fileno(f), mode) == 0);
	TTU_CHECK(fclose(f) == 0);
}

cubeid_x509_svid *
ttu_mint(cubeid_ca *ca, cubeid_token *tok, const char *id)
{
	struct cubeid_svid_req req = {0};
	cubeid_spiffe_id *sid = NULL;
	cubeid_x509_svid *svid = NULL;

	TTU_CHECK(cubeid_spiffe_id_parse(id, strlen(id), &sid, NULL) == CUBEID_OK);
	req.id = sid;
	req.key_token = tok;
	TTU_CHECK(cubeid_x509_svid_mint(ca, &req, &svid) == CUBEID_OK);
	cubeid_spiffe_id_free(sid);
	return svid;
}

void
ttu_mint_files(cubeid_ca *ca, cubeid_token *tok, const char *id, const char *dir,
               struct ttu_paths *p)
{
	cubeid_x509_svid *svid = ttu_mint(ca, tok, id);

	TTU_CHECK(cubeid_x509_svid_write_files(svid, cubeid_ca_bundle(ca), dir) == CUBEID_OK);
	cubeid_x509_svid_free(svid);
	p->cert = join(dir, "svid.pem");
	p->key = join(dir, "svid_key.pem");
	p->ca = join(dir, "svid_bundle.pem");
}

void
ttu_paths_free(struct ttu_paths *p)
{
	free(p->cert);
	free(p->key);
	free(p->ca);
	memset(p, 0, sizeof(*p));
}

void
ttu_atomic_write(const char *dir, const cubeid_x509_svid *svid, const char *bundle_pem,
                 const char *cert_pem, const char *key_pem)
{
	static const char *const names[] = {"svid.pem", "svid_key.pem", "svid_bundle.pem"};
	static unsigned counter;
	char ts[96], old[256], *chain = NULL, *key = NULL, *d, *p, *data, *tmp;
	struct timespec now;
	ssize_t n;
	size_t i;

	mkdir(dir, 0755);
	clock_gettime(CLOCK_REALTIME, &now);
	snprintf(ts, sizeof(ts), "..%lld_%09ld_%u", (long long)now.tv_sec, now.tv_nsec, counter++);
	d = join(dir, ts);
	TTU_CHECK(mkdir(d, 0755) == 0);
	if (cert_pem == NULL) {
		TTU_CHECK(cubeid_x509_svid_chain_pem(svid, &chain, NULL) == CUBEID_OK);
		cert_pem = chain;
	}
	if (key_pem == NULL) {
		TTU_CHECK(cubeid_x509_svid_key_pkcs8_pem(svid, &key, NULL) == CUBEID_OK);
		key_pem = key;
	}
	p = join(d, names[0]);
	write_str(p, cert_pem, 0644);
	free(p);
	p = join(d, names[1]);
	write_str(p, key_pem, 0600);
	free(p);
	p = join(d, names[2]);
	write_str(p, bundle_pem, 0644);
	free(p);
	/* swap ..data */
	data = join(dir, "..data");
	tmp = join(dir, "..data_tmp");
	n = readlink(data, old, sizeof(old) - 1);
	old[n > 0 ? n : 0] = '\0';
	unlink(tmp);
	TTU_CHECK(symlink(ts, tmp) == 0);
	TTU_CHECK(rename(tmp, data) == 0);
	/* the stable names, once */
	for (i = 0; i < 3; i++) {
		char target[64];
		struct stat st;

		p = join(dir, names[i]);
		if (lstat(p, &st) != 0) {
			snprintf(target, sizeof(target), "..data/%s", names[i]);
			TTU_CHECK(symlink(target, p) == 0);
		}
		free(p);
	}
	if (old[0] != '\0') {
		p = join(dir, old);
		th_rmtree(p);
		free(p);
	}
	if (key != NULL)
		OPENSSL_cleanse(key, strlen(key));
	free(key);
	free(chain);
	free(data);
	free(tmp);
	free(d);
}

void
ttu_write_cert_key(const char *dir, X509 *leaf, EVP_PKEY *key, char **cert, char **keyp)
{
	FILE *f;

	*cert = join(dir, "cert.pem");
	*keyp = join(dir, "key.pem");
	f = fopen(*cert, "w");
	TTU_CHECK(f != NULL && PEM_write_X509(f, leaf) == 1);
	fclose(f);
	f = fopen(*keyp, "w");
	TTU_CHECK(f != NULL && PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL) == 1);
	fclose(f);
}

static SSL_CTX *
plain_ctx(bool server, const char *cert, const char *key, const char *ca)
{
	SSL_CTX *ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());

	TTU_CHECK(ctx != NULL);
	SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
	if (server)
		SSL_CTX_set_num_tickets(ctx, 0);
	if (cert != NULL) {
		TTU_CHECK(SSL_CTX_use_certificate_chain_file(ctx, cert) == 1);
		TTU_CHECK(SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) == 1);
	}
	if (server) {
		TTU_CHECK(SSL_CTX_load_verify_locations(ctx, ca, NULL) == 1);
		SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
	} else {
		SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
	}
	return ctx;
}

SSL_CTX *
ttu_plain_client_ctx(const char *cert, const char *key, const char *ca)
{
	return plain_ctx(false, cert, key, ca);
}

SSL_CTX *
ttu_plain_server_ctx(const char *cert, const char *key, const char *ca)
{
	return plain_ctx(true, cert, key, ca);
}

char *
ttu_serial_hex(X509 *x)
{
	BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL);
	char *hex = BN_bn2hex(bn), *out = strdup(hex);

	OPENSSL_free(hex);
	BN_free(bn);
	return out;
}

/* Drive one side; 0 in progress, 1 done, -1 failed. */
static int
step(SSL *ssl, int *rc, char *why, size_t why_size)
{
	const char *w = NULL;
	int ret = SSL_do_handshake(ssl), e;

	if (ret == 1)
		return 1;
	e = SSL_get_error(ssl, ret);
	if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
		return 0;
	*rc = cubeid_tls_handshake_error(ssl, ret, &w);
	snprintf(why, why_size, "%s", w != NULL ? w : "");
	return -1;
}

static void
peer_of(SSL *ssl, char *out, size_t size)
{
	cubeid_spiffe_id *id = NULL;

	out[0] = '\0';
	if (cubeid_tls_peer_id(ssl, &id) == CUBEID_OK) {
		snprintf(out, size, "%s", cubeid_spiffe_id_string(id));
		cubeid_spiffe_id_free(id);
	}
}

/* Read after the handshake: the peer's rejection arrives here in TLS 1.3. */
static bool
exchange(SSL *from, SSL *to, int *to_rc, char *why, size_t why_size)
{
	char buf[8];
	const char *w = NULL;
	int ret;

	if (SSL_write(from, "ping", 4) != 4)
		return false;
	ret = SSL_read(to, buf, sizeof(buf));
	if (ret == 4 && memcmp(buf, "ping", 4) == 0)
		return true;
	*to_rc = cubeid_tls_handshake_error(to, ret, &w);
	if (*to_rc == CUBEID_OK)
		*to_rc = CUBEID_ERR_TLS;
	snprintf(why, why_size, "%s", w != NULL ? w : "no data");
	return false;
}

void
ttu_handshake(SSL_CTX *cctx, SSL_CTX *sctx, struct ttu_hs *r)
{
	SSL *c = SSL_new(cctx), *s = SSL_new(sctx);
	BIO *bc = NULL, *bs = NULL;
	int cd = 0, sd = 0, i;
	X509 *peer;

	memset(r, 0, sizeof(*r));
	TTU_CHECK(c != NULL && s != NULL);
	TTU_CHECK(BIO_new_bio_pair(&bc, 0, &bs, 0) == 1);
	SSL_set_bio(c, bc, bc);
	SSL_set_bio(s, bs, bs);
	SSL_set_connect_state(c);
	SSL_set_accept_state(s);
	ERR_clear_error();
	for (i = 0; i < 100 && (cd == 0 || sd == 0); i++) {
		if (cd == 0)
			cd = step(c, &r->client_rc, r->client_why, sizeof(r->client_why));
		if (sd == 0)
			sd = step(s, &r->server_rc, r->server_why, sizeof(r->server_why));
	}
	if (cd == 0) {
		r->client_rc = CUBEID_ERR_TLS;
		snprintf(r->client_why, sizeof(r->client_why), "the handshake stalled");
	}
	if (sd == 0) {
		r->server_rc = CUBEID_ERR_TLS;
		snprintf(r->server_why, sizeof(r->server_why), "the handshake stalled");
	}
	if (cd == 1 && sd == 1) {
		r->connected =
		        exchange(c, s, &r->server_rc, r->server_why, sizeof(r->server_why)) &&
		        exchange(s, c, &r->client_rc, r->client_why, sizeof(r->client_why));
	} else if (cd == 1 && sd == -1) {
		/* TLS 1.3: the client finished first; the refusal comes next */
		char buf[8];
		const char *w = NULL;
		int ret = SSL_read(c, buf, sizeof(buf));

		r->client_rc = cubeid_tls_handshake_error(c, ret, &w);
		if (r->client_rc == CUBEID_OK)
			r->client_rc = CUBEID_ERR_TLS;
		snprintf(r->client_why, sizeof(r->client_why), "%s", w != NULL ? w : "");
	} else if (sd == 1 && cd == -1 && r->server_rc == CUBEID_OK) {
		r->server_rc = CUBEID_ERR_TLS;
		snprintf(r->server_why, sizeof(r->server_why), "the client gave up");
	}
	if (cd == 1 && r->client_rc == CUBEID_OK) {
		peer_of(c, r->client_peer, sizeof(r->client_peer));
		if ((peer = SSL_get0_peer_certificate(c)) != NULL) {
			char *hex = ttu_serial_hex(peer);

			snprintf(r->server_serial, sizeof(r->server_serial), "%s", hex);
			free(hex);
		}
		r->version = SSL_version(c);
	}
	if (sd == 1 && r->server_rc == CUBEID_OK)
		peer_of(s, r->server_peer, sizeof(r->server_peer));
	ERR_clear_error();
	SSL_free(c);
	SSL_free(s);
}

bool
ttu_handshake_quick(SSL_CTX *cctx, SSL_CTX *sctx)
{
	SSL *c = SSL_new(cctx), *s = SSL_new(sctx);
	BIO *bc = NULL, *bs = NULL;
	int cd = 0, sd = 0, i, ret;
	char buf[8];
	bool ok = false;

	TTU_CHECK(c != NULL && s != NULL);
	TTU_CHECK(BIO_new_bio_pair(&bc, 0, &bs, 0) == 1);
	SSL_set_bio(c, bc, bc);
	SSL_set_bio(s, bs, bs);
	SSL_set_connect_state(c);
	SSL_set_accept_state(s);
	for (i = 0; i < 100 && (cd == 0 || sd == 0); i++) {
		if (cd == 0 && (ret = SSL_do_handshake(c)) != 1) {
			int e = SSL_get_error(c, ret);
			cd = (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) ? 0 : -1;
		} else if (cd == 0) {
			cd = 1;
		}
		if (sd == 0 && (ret = SSL_do_handshake(s)) != 1) {
			int e = SSL_get_error(s, ret);
			sd = (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) ? 0 : -1;
		} else if (sd == 0) {
			sd = 1;
		}
	}
	if (cd == 1 && sd == 1 && SSL_write(c, "ping", 4) == 4 && SSL_read(s, buf, 8) == 4 &&
	    SSL_write(s, "pong", 4) == 4 && SSL_read(c, buf, 8) == 4)
		ok = true;
	ERR_clear_error();
	SSL_free(c);
	SSL_free(s);
	return ok;
}
