/*
 * picod-front: the Router->PicoD auth of the end-to-end chain (docs/e2e.md)
 * in front of a PicoD that has none of its own, built only on libcubeid's
 * public API.  AgentCube's PicoD v0.1.0 speaks plain HTTP and checks a JWT;
 * the WorkloadManager starts this front in the sandbox next to it, and the
 * Router talks to the front.
 *
 *   picod-front --sandbox ID [--namespace NS] --upstream HOST:PORT
 *               --addr-file F [--picod-auth-mode mtls|jwt]
 *               [--enable-mtls --mtls-cert-file F --mtls-key-file F
 *                --mtls-ca-file F --mtls-allow-id ROUTER-SPIFFE-ID]
 *
 * It listens on a free loopback port (written to F as host:port) and, per
 * connection, runs cubeid_picod_conn_server(): in mtls mode only the
 * allow-listed SPIFFE ID (the Router's) gets past the handshake; in jwt
 * mode the bearer token must be for picod:NS/ID ($PICOD_AUTH_PUBLIC_KEY).
 * A client in the other mode gets the documented mismatch answer
 * (CUBEID_ERR_AUTH_MODE, <cubeid/picod-auth.h>).  An authorized request is
 * passed to PicoD as it came, Authorization included (PicoD v0.1.0 always
 * checks its JWT), and PicoD's answer goes back.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cubeid/picod-auth.h>

static cubeid_picod_auth *auth;
static struct sockaddr_in upstream = {.sin_family = AF_INET};

static const char *
opt(int argc, char **argv, const char *name)
{
	for (int i = 1; i + 1 < argc; i++)
		if (strcmp(argv[i], name) == 0)
			return argv[i + 1];
	return NULL;
}

static int
parse_addr(const char *s, struct sockaddr_in *sa)
{
	char host[64], *colon;

	snprintf(host, sizeof(host), "%s", s ? s : "");
	if (!(colon = strrchr(host, ':')))
		return -1;
	*colon = '\0';
	sa->sin_port = htons((uint16_t)atoi(colon + 1));
	return inet_pton(AF_INET, host, &sa->sin_addr) == 1 ? 0 : -1;
}

/* Pass the request (head, and the body by its Content-Length) to PicoD and
 * its whole answer back (the Router asks for Connection: close). */
static void
relay(cubeid_picod_conn *c, char *buf, size_t size, size_t head_len, size_t len)
{
	char *cl = NULL;
	size_t want = head_len;
	long n;
	int up = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (cubeid_picod_http_header(buf, head_len, "Content-Length", &cl) == CUBEID_OK)
		want += strtoul(cl, NULL, 10);
	free(cl);
	if (up < 0 || connect(up, (struct sockaddr *)&upstream, sizeof(upstream)) != 0 ||
	    want > size) {
		static const char e[] = "HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n"
		                        "Connection: close\r\n\r\n";
		(void)cubeid_picod_conn_write(c, e, sizeof(e) - 1);
		goto out;
	}
	while (len < want && (n = cubeid_picod_conn_read(c, buf + len, want - len)) > 0)
		len += (size_t)n;
	if (write(up, buf, len) != (ssize_t)len)
		goto out;
	while ((n = read(up, buf, size)) > 0)
		if (cubeid_picod_conn_write(c, buf, (size_t)n) != CUBEID_OK)
			break;
out:
	if (up >= 0)
		close(up);
}

static void *
serve(void *arg)
{
	int fd = (int)(intptr_t)arg, rc;
	cubeid_picod_conn *c = NULL;
	struct cubeid_picod_verified *v = NULL;
	char *buf = malloc(CUBEID_PICOD_HEAD_MAX + 65536), *authz = NULL, *peer = NULL;
	size_t head_len, len;

	if (!buf || (rc = cubeid_picod_conn_server(auth, fd, &c)) != CUBEID_OK) {
		fprintf(stderr, "picod-front: refused: %s\n",
		        buf ? cubeid_strerror(rc) : "no memory");
		goto out;
	}
	if (cubeid_picod_conn_read_head(c, buf, CUBEID_PICOD_HEAD_MAX, &head_len, &len, &authz) !=
	    CUBEID_OK)
		goto out;
	if ((rc = cubeid_picod_conn_authorize(c, authz, &v, &peer)) != CUBEID_OK) {
		static const char e[] = "HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n"
		                        "Connection: close\r\n\r\n";
		fprintf(stderr, "picod-front: 401: %s\n", cubeid_strerror(rc));
		(void)cubeid_picod_conn_write(c, e, sizeof(e) - 1);
		goto out;
	}
	fprintf(stderr, "picod-front: %s in\n", peer ? peer : v && v->sub ? v->sub : "?");
	relay(c, buf, CUBEID_PICOD_HEAD_MAX + 65536, head_len, len);
out:
	free(authz);
	free(peer);
	cubeid_picod_verified_free(v);
	cubeid_picod_conn_free(c);
	free(buf);
	close(fd);
	return NULL;
}

int
main(int argc, char **argv)
{
	struct cubeid_picod_auth_config cfg = {.role = CUBEID_PICOD_SERVER};
	struct cubeid_tls_config tc = {0};
	struct cubeid_tls_flags fl;
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t sl = sizeof(sa);
	const char *addr_file;
	char tmp[512];
	FILE *f;
	int l, rc;

	cubeid_tls_flags_init(&fl);
	if (cubeid_picod_auth_flag_parse(&argc, argv, &cfg.mode) != CUBEID_OK ||
	    cubeid_tls_flags_parse(&fl, &argc, argv) != CUBEID_OK)
		return 2;
	addr_file = opt(argc, argv, "--addr-file");
	cfg.verify.sandbox = opt(argc, argv, "--sandbox");
	cfg.verify.ns = opt(argc, argv, "--namespace");
	if (!cfg.verify.ns)
		cfg.verify.ns = "agentcube";
	cfg.verify.leeway = -1;
	if (!addr_file || !cfg.verify.sandbox ||
	    parse_addr(opt(argc, argv, "--upstream"), &upstream) != 0 ||
	    (cfg.mode == CUBEID_PICOD_AUTH_MTLS &&
	     cubeid_tls_flags_config(&fl, &tc) != CUBEID_OK)) {
		fprintf(stderr, "usage: picod-front --sandbox ID [--namespace NS] --upstream "
		                "HOST:PORT --addr-file F [--picod-auth-mode mtls|jwt] "
		                "[--enable-mtls ...]\n");
		cubeid_tls_flags_usage(stderr);
		return 2;
	}
	if (cfg.mode == CUBEID_PICOD_AUTH_MTLS)
		cfg.tls = &tc;
	if ((rc = cubeid_picod_auth_new(&cfg, &auth)) != CUBEID_OK) {
		fprintf(stderr, "picod-front: %s\n", cubeid_strerror(rc));
		return 1;
	}
	signal(SIGPIPE, SIG_IGN);
	if ((l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0 ||
	    bind(l, (struct sockaddr *)&sa, sizeof(sa)) != 0 || listen(l, 64) != 0 ||
	    getsockname(l, (struct sockaddr *)&sa, &sl) != 0) {
		perror("picod-front: listen");
		return 1;
	}
	/* the address, atomically: whoever waits for the file reads it whole */
	snprintf(tmp, sizeof(tmp), "%s.tmp", addr_file);
	if (!(f = fopen(tmp, "w")) || fprintf(f, "127.0.0.1:%u\n", ntohs(sa.sin_port)) < 0 ||
	    fclose(f) != 0 || rename(tmp, addr_file) != 0) {
		perror(addr_file);
		return 1;
	}
	fprintf(stderr, "picod-front: %s mode, 127.0.0.1:%u -> PicoD\n",
	        cubeid_picod_auth_mode_name(cfg.mode), ntohs(sa.sin_port));
	for (;;) {
		pthread_t t;
		int fd = accept(l, NULL, NULL);
		if (fd < 0)
			continue;
		if (pthread_create(&t, NULL, serve, (void *)(intptr_t)fd) != 0)
			close(fd);
		else
			pthread_detach(t);
	}
}
