/*
 * tls-peer: a small mTLS server and client over TCP built on the libcubeid
 * TLS loader, with its flags taken by cubeid_tls_flags_parse() -- what a C
 * program of AgentCube's would do.  Tests use it for real sockets:
 *
 *   tls-peer server --listen 127.0.0.1:0 --port-file FILE MTLS-FLAGS
 *       Serves one connection at a time: after a good handshake it writes
 *       "OK <peer SPIFFE ID> <serial of the certificate it presented>\n";
 *       after a refused one it prints "refused <code> <why>" on stdout.
 *       SIGTERM stops it (exit 0) after printing "accepted=N refused=M".
 *   tls-peer client --connect HOST:PORT [--count N] [--duration-ms MS]
 *                   [--interval-ms MS] MTLS-FLAGS
 *       Makes N new connections (or as many as fit in MS), each a full
 *       handshake, and reads the server's line.  Prints
 *       "handshakes=N ok=N failed=N serial_changes=N last_serial=HEX" (the
 *       serial of the last certificate the server presented) and, for each
 *       failure, "failed <code> <why>".  Exit 0 when none failed.
 *
 * MTLS-FLAGS are cubeid_tls_flags_usage()'s: --enable-mtls,
 * --mtls-cert-file, --mtls-key-file, --mtls-ca-file, --mtls-allow-id, ...
 */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include <cubeid/log.h>
#include <cubeid/tls.h>

static volatile sig_atomic_t stop;
static int wake[2] = {-1, -1};

static void
on_term(int sig)
{
	(void)sig;
	stop = 1;
	if (wake[1] >= 0 && write(wake[1], "x", 1) < 0)
		stop = 1;
}

static void
usage(FILE *f)
{
	fprintf(f, "usage: tls-peer server --listen HOST:PORT [--port-file FILE] MTLS-FLAGS\n"
	           "       tls-peer client --connect HOST:PORT [--count N] [--duration-ms MS]\n"
	           "                       [--interval-ms MS] MTLS-FLAGS\n"
	           "MTLS-FLAGS:\n");
	cubeid_tls_flags_usage(f);
}

static int
split_hostport(const char *s, char *host, size_t hsize, char **port)
{
	const char *colon = strrchr(s, ':');

	if (colon == NULL || (size_t)(colon - s) >= hsize)
		return -1;
	memcpy(host, s, (size_t)(colon - s));
	host[colon - s] = '\0';
	*port = (char *)colon + 1;
	return 0;
}

static int
tcp_socket(const char *hostport, bool listen_it)
{
	struct addrinfo hints = {0}, *ai = NULL;
	char host[256], *port;
	int fd, one = 1;

	if (split_hostport(hostport, host, sizeof(host), &port) != 0) {
		fprintf(stderr, "tls-peer: bad address %s (HOST:PORT)\n", hostport);
		return -1;
	}
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = listen_it ? AI_PASSIVE : 0;
	if (getaddrinfo(host, port, &hints, &ai) != 0 || ai == NULL) {
		fprintf(stderr, "tls-peer: cannot resolve %s\n", hostport);
		return -1;
	}
	fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, 0);
	if (fd >= 0 && listen_it) {
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(fd, 64) != 0) {
			fprintf(stderr, "tls-peer: listen on %s: %s\n", hostport, strerror(errno));
			close(fd);
			fd = -1;
		}
	} else if (fd >= 0 && connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
		fprintf(stderr, "tls-peer: connect to %s: %s\n", hostport, strerror(errno));
		close(fd);
		fd = -1;
	}
	freeaddrinfo(ai);
	return fd;
}

static void
set_timeouts(int fd, int seconds)
{
	struct timeval tv = {.tv_sec = seconds};

	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

static int
write_port_file(const char *path, int fd)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	char tmp[4096];
	FILE *f;
	int port;

	if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0)
		return -1;
	port = ss.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
	                                : ntohs(((struct sockaddr_in *)&ss)->sin_port);
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	if ((f = fopen(tmp, "w")) == NULL)
		return -1;
	fprintf(f, "%d\n", port);
	if (fclose(f) != 0 || rename(tmp, path) != 0)
		return -1;
	return 0;
}

static char *
serial_hex(X509 *x)
{
	BIGNUM *bn;
	char *hex, *out;

	if (x == NULL)
		return strdup("-");
	bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL);
	hex = BN_bn2hex(bn);
	out = strdup(hex != NULL ? hex : "-");
	OPENSSL_free(hex);
	BN_free(bn);
	return out;
}

static int
serve(SSL_CTX *ctx, const char *listen_addr, const char *port_file)
{
	int lfd = tcp_socket(listen_addr, true);
	unsigned long accepted = 0, refused = 0;

	if (lfd < 0)
		return 1;
	if (port_file != NULL && write_port_file(port_file, lfd) != 0) {
		fprintf(stderr, "tls-peer: cannot write %s\n", port_file);
		return 1;
	}
	printf("listening\n");
	fflush(stdout);
	while (!stop) {
		struct pollfd p[2] = {{.fd = lfd, .events = POLLIN},
		                      {.fd = wake[0], .events = POLLIN}};
		cubeid_spiffe_id *peer = NULL;
		const char *why = NULL;
		char line[512], *serial;
		SSL *ssl;
		int fd, ret;

		if (poll(p, 2, -1) < 0 || p[1].revents != 0)
			continue;
		if ((fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC)) < 0)
			continue;
		set_timeouts(fd, 10);
		if ((ssl = SSL_new(ctx)) == NULL || SSL_set_fd(ssl, fd) != 1) {
			SSL_free(ssl);
			close(fd);
			continue;
		}
		ret = SSL_accept(ssl);
		if (ret != 1) {
			int rc = cubeid_tls_handshake_error(ssl, ret, &why);

			refused++;
			printf("refused %d %s\n", rc, why);
			fflush(stdout);
		} else if (cubeid_tls_peer_id(ssl, &peer) == CUBEID_OK) {
			serial = serial_hex(SSL_get_certificate(ssl));
			snprintf(line, sizeof(line), "OK %s %s\n", cubeid_spiffe_id_string(peer),
			         serial);
			if (SSL_write(ssl, line, (int)strlen(line)) > 0) {
				accepted++;
				SSL_shutdown(ssl);
			} else {
				/* TLS 1.3: a late refusal, or the client went away */
				ret = SSL_get_error(ssl, -1);
				refused++;
				printf("refused %d write failed (SSL error %d)\n", CUBEID_ERR_TLS,
				       ret);
				fflush(stdout);
			}
			free(serial);
			cubeid_spiffe_id_free(peer);
		}
		ERR_clear_error();
		SSL_free(ssl);
		close(fd);
	}
	printf("accepted=%lu refused=%lu\n", accepted, refused);
	close(lfd);
	return 0;
}

static int64_t
mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int
connect_loop(SSL_CTX *ctx, const char *addr, long count, long duration_ms, long interval_ms)
{
	unsigned long n = 0, ok = 0, failed = 0, changes = 0;
	int64_t end = duration_ms > 0 ? mono_ms() + duration_ms : 0;
	char last[128] = "";

	while (!stop && (duration_ms > 0 ? mono_ms() < end : (long)n < count)) {
		int fd = tcp_socket(addr, false), ret, rc;
		const char *why = NULL;
		char buf[512];
		SSL *ssl = NULL;

		n++;
		if (fd < 0) {
			failed++;
			printf("failed %d cannot connect\n", CUBEID_ERR_IO);
			goto next;
		}
		set_timeouts(fd, 10);
		if ((ssl = SSL_new(ctx)) == NULL || SSL_set_fd(ssl, fd) != 1) {
			failed++;
			goto next;
		}
		ret = SSL_connect(ssl);
		if (ret != 1) {
			rc = cubeid_tls_handshake_error(ssl, ret, &why);
			failed++;
			printf("failed %d %s\n", rc, why);
			goto next;
		}
		ret = SSL_read(ssl, buf, sizeof(buf) - 1);
		if (ret <= 0) {
			rc = cubeid_tls_handshake_error(ssl, ret, &why);
			failed++;
			printf("failed %d %s\n", rc != CUBEID_OK ? rc : CUBEID_ERR_TLS,
			       rc != CUBEID_OK ? why : "no answer");
			goto next;
		}
		buf[ret] = '\0';
		if (strncmp(buf, "OK ", 3) != 0) {
			failed++;
			printf("failed %d unexpected answer\n", CUBEID_ERR_PROTOCOL);
			goto next;
		} else {
			char *serial = serial_hex(SSL_get0_peer_certificate(ssl));

			ok++;
			if (last[0] != '\0' && strcmp(last, serial) != 0)
				changes++;
			snprintf(last, sizeof(last), "%s", serial);
			free(serial);
		}
		SSL_shutdown(ssl);
next:
		fflush(stdout);
		ERR_clear_error();
		SSL_free(ssl);
		if (fd >= 0)
			close(fd);
		if (interval_ms > 0)
			poll(NULL, 0, (int)interval_ms);
	}
	printf("handshakes=%lu ok=%lu failed=%lu serial_changes=%lu last_serial=%s\n", n, ok,
	       failed, changes, last[0] != '\0' ? last : "-");
	return failed == 0 && n > 0 ? 0 : 1;
}

int
main(int argc, char **argv)
{
	static const struct option opts[] = {{"listen", required_argument, NULL, 'l'},
	                                     {"port-file", required_argument, NULL, 'p'},
	                                     {"connect", required_argument, NULL, 'c'},
	                                     {"count", required_argument, NULL, 'n'},
	                                     {"duration-ms", required_argument, NULL, 'd'},
	                                     {"interval-ms", required_argument, NULL, 'i'},
	                                     {"help", no_argument, NULL, 'h'},
	                                     {NULL, 0, NULL, 0}};
	struct cubeid_tls_flags fl;
	const char *listen_addr = NULL, *port_file = NULL, *connect_addr = NULL, *mode;
	long count = 1, duration_ms = 0, interval_ms = 0;
	cubeid_tls *tls = NULL;
	SSL_CTX *ctx = NULL;
	int o, rc;

	cubeid_tls_flags_init(&fl);
	if (cubeid_tls_flags_parse(&fl, &argc, argv) != CUBEID_OK) {
		usage(stderr);
		return 2;
	}
	if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
		usage(stdout);
		return 0;
	}
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	mode = argv[1];
	optind = 2;
	while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (o) {
		case 'l':
			listen_addr = optarg;
			break;
		case 'p':
			port_file = optarg;
			break;
		case 'c':
			connect_addr = optarg;
			break;
		case 'n':
			count = atol(optarg);
			break;
		case 'd':
			duration_ms = atol(optarg);
			break;
		case 'i':
			interval_ms = atol(optarg);
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind != argc || !fl.enable ||
	    (strcmp(mode, "server") == 0 ? listen_addr == NULL
	                                 : strcmp(mode, "client") != 0 || connect_addr == NULL)) {
		usage(stderr);
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	if (pipe(wake) != 0)
		return 1;
	signal(SIGTERM, on_term);
	signal(SIGINT, on_term);
	if ((rc = cubeid_tls_new_from_flags(&fl, &tls)) != CUBEID_OK) {
		fprintf(stderr, "tls-peer: %s\n", cubeid_strerror(rc));
		return 1;
	}
	rc = strcmp(mode, "server") == 0 ? cubeid_tls_server_ctx(tls, &ctx)
	                                 : cubeid_tls_client_ctx(tls, &ctx);
	cubeid_tls_free(tls); /* the context keeps it */
	if (rc != CUBEID_OK) {
		fprintf(stderr, "tls-peer: %s\n", cubeid_strerror(rc));
		return 1;
	}
	rc = strcmp(mode, "server") == 0
	             ? serve(ctx, listen_addr, port_file)
	             : connect_loop(ctx, connect_addr, count, duration_ms, interval_ms);
	SSL_CTX_free(ctx);
	return rc;
}
