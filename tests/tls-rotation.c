/*
 * tls-rotation: rotation under load.  A TLS server built on the libcubeid
 * loader (file mode: the files cubeid-agent delivers) serves on loopback;
 * a client, built on the loader too, makes new mTLS handshakes
 * continuously and counts every one that fails, until it has seen the
 * server's certificate change ROTATIONS times.
 *
 *   tls-rotation DIR ALLOW_ID ROTATIONS TIMEOUT_S
 *
 * Prints the counts; exit 0 only if it saw ROTATIONS rotations and not one
 * handshake failed on either side.  Started by tests/tls-rotation.sh.
 */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdint.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/sha.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <cubeid/tls.h>

static volatile int stop;
static unsigned long served, server_fail, client_certs_changed;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static cubeid_tls *st, *ct;
static const char *certs_dir;
/* when each loader last installed a new state or failed to (wall ms) */
static int64_t last_reload[2], last_reload_err[2];
/* the least time a peer's certificate had left when a handshake with it
 * succeeded (ms): how close the rotation came to serving an expired one */
static int64_t server_min_left = INT64_MAX, client_min_left = INT64_MAX;

static int64_t
wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* notAfter - now in ms (INT64_MAX if x is NULL). */
static int64_t left_ms(X509 *x);

/* The write time of the ..data set in ms, from its name
 * (..2026_12_07_21_45_38.931290075.861b71); 0 if unknown. */
static int64_t
set_written_ms(void)
{
	char path[4096], set[256];
	struct tm tm = {0};
	long ns = 0;
	ssize_t n;
	char *p;

	snprintf(path, sizeof(path), "%s/..data", certs_dir);
	if ((n = readlink(path, set, sizeof(set) - 1)) <= 2)
		return 0;
	set[n] = '\0';
	if ((p = strptime(set + 2, "%Y_%m_%d_%H_%M_%S", &tm)) == NULL || *p != '.')
		return 0;
	ns = strtol(p + 1, NULL, 10);
	return (int64_t)timegm(&tm) * 1000 + ns / 1000000;
}

/* the least time the old certificate had left when a loader swapped in
 * the new one (the rotation's margin), and how long after the new set was
 * written that was; notAfter of each loader's current certificate */
static int64_t reload_min_left[2] = {INT64_MAX, INT64_MAX}, reload_lag[2], cur_end[2];

static void
on_reload(cubeid_tls *tls, int rc, void *arg)
{
	int i = (int)(intptr_t)arg;
	int64_t now = wall_ms(), left, written = set_written_ms();
	X509 *x = NULL;

	__atomic_store_n(rc == CUBEID_OK ? &last_reload[i] : &last_reload_err[i], now,
	                 __ATOMIC_RELAXED);
	if (rc != CUBEID_OK || cubeid_tls_own_cert(tls, &x) != CUBEID_OK)
		return;
	left = cur_end[i] - now;
	if (cur_end[i] != 0 && left < reload_min_left[i]) {
		reload_min_left[i] = left;
		reload_lag[i] = written > 0 ? now - written : -1;
	}
	cur_end[i] = now + left_ms(x);
	X509_free(x);
}

/* notAfter - now in ms (INT64_MAX if x is NULL). */
static int64_t
left_ms(X509 *x)
{
	struct tm tm;

	if (x == NULL || ASN1_TIME_to_tm(X509_get0_notAfter(x), &tm) != 1)
		return INT64_MAX;
	return (int64_t)timegm(&tm) * 1000 - wall_ms();
}

/* "serial notAfter-left" of x into buf. */
static const char *
describe(X509 *x, char *buf, size_t size)
{
	const ASN1_INTEGER *sn;
	BIGNUM *bn = NULL;
	char *hex = NULL;

	if (x == NULL) {
		snprintf(buf, size, "(none)");
		return buf;
	}
	sn = X509_get0_serialNumber(x);
	if ((bn = ASN1_INTEGER_to_BN(sn, NULL)) != NULL)
		hex = BN_bn2hex(bn);
	snprintf(buf, size, "serial %.12s.. expires in %lld ms", hex != NULL ? hex : "?",
	         (long long)left_ms(x));
	OPENSSL_free(hex);
	BN_free(bn);
	return buf;
}

/* On a failure: what each side was presenting and what the peer sent. */
static void
report(const char *side, SSL *ssl)
{
	X509 *s = NULL, *c = NULL, *f = NULL;
	char a[128], b[128], p[128], d[128], path[4096], set[256];
	ssize_t n;
	FILE *fp;

	cubeid_tls_own_cert(st, &s);
	cubeid_tls_own_cert(ct, &c);
	snprintf(path, sizeof(path), "%s/svid.pem", certs_dir);
	if ((fp = fopen(path, "r")) != NULL) {
		f = PEM_read_X509(fp, NULL, NULL, NULL);
		fclose(fp);
	}
	snprintf(path, sizeof(path), "%s/..data", certs_dir);
	n = readlink(path, set, sizeof(set) - 1);
	set[n > 0 ? n : 0] = '\0';
	fprintf(stderr,
	        "    %s at %lld ms: the set is %s; last reload (or failed one) at %lld (%lld) ms "
	        "on the server, %lld (%lld) ms on the client\n",
	        side, (long long)wall_ms(), set, (long long)last_reload[0],
	        (long long)last_reload_err[0], (long long)last_reload[1],
	        (long long)last_reload_err[1]);
	fprintf(stderr,
	        "    %s at %lld ms: peer sent %s; server loader (gen %lu) has %s; client "
	        "loader (gen %lu) has %s; the file now has %s\n",
	        side, (long long)wall_ms(), describe(SSL_get0_peer_certificate(ssl), p, sizeof(p)),
	        cubeid_tls_generation(st), describe(s, a, sizeof(a)), cubeid_tls_generation(ct),
	        describe(c, b, sizeof(b)), describe(f, d, sizeof(d)));
	X509_free(s);
	X509_free(c);
	X509_free(f);
}

struct srv {
	int lfd;
	SSL_CTX *ctx;
};

static void *
server_main(void *arg)
{
	struct srv *s = arg;
	unsigned char last[SHA256_DIGEST_LENGTH] = {0}, cur[SHA256_DIGEST_LENGTH];
	bool have = false;

	while (!stop) {
		int fd = accept(s->lfd, NULL, NULL), r;
		SSL *ssl;

		if (fd < 0)
			continue;
		if (stop) {
			close(fd);
			break;
		}
		ssl = SSL_new(s->ctx);
		SSL_set_fd(ssl, fd);
		if ((r = SSL_accept(ssl)) != 1) {
			const char *why = NULL;
			int e = cubeid_tls_handshake_error(ssl, r, &why);
			pthread_mutex_lock(&mu);
			server_fail++;
			pthread_mutex_unlock(&mu);
			fprintf(stderr, "server handshake failed: %s (%s)\n", why ? why : "?",
			        cubeid_strerror(e));
			report("server", ssl);
		} else {
			X509 *peer = SSL_get0_peer_certificate(ssl);
			unsigned int len = 0;
			char c = 'x';

			if (peer != NULL && left_ms(peer) < server_min_left)
				server_min_left = left_ms(peer);
			if (peer != NULL && X509_digest(peer, EVP_sha256(), cur, &len) == 1) {
				if (have && memcmp(cur, last, sizeof(cur)) != 0)
					client_certs_changed++;
				memcpy(last, cur, sizeof(cur));
				have = true;
			}
			SSL_write(ssl, &c, 1);
			SSL_shutdown(ssl);
			pthread_mutex_lock(&mu);
			served++;
			pthread_mutex_unlock(&mu);
		}
		SSL_free(ssl);
		close(fd);
	}
	return NULL;
}

static int
loader(const char *dir, const char *allow, int i, cubeid_tls **out)
{
	char cert[4096], key[4096], ca[4096];
	const char *al[1] = {allow};
	struct cubeid_tls_config c;

	memset(&c, 0, sizeof(c));
	snprintf(cert, sizeof(cert), "%s/svid.pem", dir);
	snprintf(key, sizeof(key), "%s/svid_key.pem", dir);
	snprintf(ca, sizeof(ca), "%s/svid_bundle.pem", dir);
	c.cert_file = cert;
	c.key_file = key;
	c.ca_file = ca;
	c.allow = al;
	c.n_allow = 1;
	c.on_reload = on_reload;
	c.on_reload_arg = (void *)(intptr_t)i;
	return cubeid_tls_new(&c, out);
}

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int
main(int argc, char **argv)
{
	struct sockaddr_in sa = {.sin_family = AF_INET};
	socklen_t slen = sizeof(sa);
	unsigned char last[SHA256_DIGEST_LENGTH] = {0}, cur[SHA256_DIGEST_LENGTH];
	unsigned long handshakes = 0, client_fail = 0, rotations = 0, want;
	SSL_CTX *cctx = NULL;
	struct srv s = {-1, NULL};
	pthread_t th;
	double deadline, t0;
	bool have = false;
	int one = 1, rc;

	if (argc != 5) {
		fprintf(stderr, "usage: tls-rotation DIR ALLOW_ID ROTATIONS TIMEOUT_S\n");
		return 2;
	}
	want = strtoul(argv[3], NULL, 10);
	certs_dir = argv[1];
	if ((rc = loader(argv[1], argv[2], 0, &st)) != CUBEID_OK ||
	    (rc = loader(argv[1], argv[2], 1, &ct)) != CUBEID_OK ||
	    (rc = cubeid_tls_server_ctx(st, &s.ctx)) != CUBEID_OK ||
	    (rc = cubeid_tls_client_ctx(ct, &cctx)) != CUBEID_OK) {
		fprintf(stderr, "tls-rotation: the loader: %s\n", cubeid_strerror(rc));
		return 1;
	}
	for (int i = 0; i < 2; i++) {
		X509 *x = NULL;

		if (cubeid_tls_own_cert(i == 0 ? st : ct, &x) == CUBEID_OK)
			cur_end[i] = wall_ms() + left_ms(x);
		X509_free(x);
	}
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if ((s.lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0 ||
	    setsockopt(s.lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
	    bind(s.lfd, (struct sockaddr *)&sa, sizeof(sa)) != 0 || listen(s.lfd, 64) != 0 ||
	    getsockname(s.lfd, (struct sockaddr *)&sa, &slen) != 0) {
		perror("tls-rotation: listen");
		return 1;
	}
	if (pthread_create(&th, NULL, server_main, &s) != 0)
		return 1;
	t0 = now_s();
	deadline = t0 + atof(argv[4]);
	while (rotations < want && now_s() < deadline) {
		int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), r;
		SSL *ssl;
		char c;

		if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
			perror("tls-rotation: connect");
			client_fail++;
			if (fd >= 0)
				close(fd);
			continue;
		}
		ssl = SSL_new(cctx);
		SSL_set_fd(ssl, fd);
		handshakes++;
		if ((r = SSL_connect(ssl)) != 1 || SSL_read(ssl, &c, 1) != 1) {
			const char *why = NULL;
			int e = cubeid_tls_handshake_error(ssl, r, &why);
			client_fail++;
			fprintf(stderr, "client handshake %lu failed after %.1f s: %s (%s)\n",
			        handshakes, now_s() - t0, why ? why : "?", cubeid_strerror(e));
			report("client", ssl);
		} else {
			X509 *peer = SSL_get0_peer_certificate(ssl);
			unsigned int len = 0;

			if (peer != NULL && left_ms(peer) < client_min_left)
				client_min_left = left_ms(peer);
			if (peer != NULL && X509_digest(peer, EVP_sha256(), cur, &len) == 1) {
				if (have && memcmp(cur, last, sizeof(cur)) != 0)
					rotations++;
				memcpy(last, cur, sizeof(cur));
				have = true;
			}
			SSL_shutdown(ssl);
		}
		SSL_free(ssl);
		close(fd);
	}
	stop = 1;
	{
		/* wake the accept() */
		int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd >= 0) {
			(void)connect(fd, (struct sockaddr *)&sa, sizeof(sa));
			close(fd);
		}
	}
	pthread_join(th, NULL);
	printf("handshakes=%lu client_failures=%lu server_failures=%lu rotations=%lu "
	       "client_cert_changes=%lu server_reloads=%lu client_reloads=%lu seconds=%.0f "
	       "least_ms_left_server_cert=%lld least_ms_left_client_cert=%lld "
	       "least_ms_left_at_reload=%lld/%lld (%lld/%lld ms after the write)\n",
	       handshakes, client_fail, server_fail, rotations, client_certs_changed,
	       cubeid_tls_generation(st), cubeid_tls_generation(ct), now_s() - t0,
	       (long long)client_min_left, (long long)server_min_left,
	       (long long)reload_min_left[0], (long long)reload_min_left[1],
	       (long long)reload_lag[0], (long long)reload_lag[1]);
	SSL_CTX_free(s.ctx);
	SSL_CTX_free(cctx);
	cubeid_tls_free(st);
	cubeid_tls_free(ct);
	close(s.lfd);
	return rotations >= want && client_fail == 0 && server_fail == 0 ? 0 : 1;
}
