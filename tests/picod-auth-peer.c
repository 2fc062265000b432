/*
 * picod-auth-peer: a Router-like client and a PicoD-like server over TCP,
 * both built on <cubeid/picod-auth.h> with --picod-auth-mode and the TLS
 * loader's --mtls-* flags, as an AgentCube component written in C would
 * be.  tests/picod-auth.sh drives it.
 *
 *   picod-auth-peer server [--picod-auth-mode M] [MTLS-FLAGS] --port-file F
 *       [--sandbox NAME [--namespace NS]] [--session ID] [--count N]
 *     Listens on 127.0.0.1 (a free port, written to F) and serves N
 *     connections (default: until killed).  Per connection it prints one
 *     line: "200 peer=ID" (mtls) or "200 sub=ID session_id=S" (jwt),
 *     "401 REASON", or "refused REASON" (handshake or mode mismatch).
 *   picod-auth-peer client [--picod-auth-mode M] [MTLS-FLAGS] --connect HOST:PORT
 *       --session ID --sandbox NAME [--namespace NS] [--socket S]
 *     One POST /api/execute.  Prints the status line and the body.  Exit
 *     0 for 200, 1 for another status, 3 for CUBEID_ERR_AUTH_MODE (the
 *     sides are in different modes), 2 for anything else.
 *
 * Without --mtls-allow-id, the server accepts only the Router's ID
 * (spiffe://cluster.local/ns/agentcube-system/sa/agentcube-router).
 */
#include "config.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cubeid/picod-auth.h>

/* SIGTERM keeps its default action: the server is blocked in accept(). */
static volatile sig_atomic_t stop;

static const char *
opt(int argc, char **argv, const char *name)
{
	int i;

	for (i = 2; i + 1 < argc; i++)
		if (strcmp(argv[i], name) == 0)
			return argv[i + 1];
	return NULL;
}

static int
serve_one(cubeid_picod_auth *a, int fd)
{
	struct cubeid_picod_verified *v = NULL;
	cubeid_picod_conn *c = NULL;
	char buf[CUBEID_PICOD_HEAD_MAX], resp[1024], body[512], *auth = NULL, *peer = NULL;
	size_t head_len, len;
	int rc, n, m;

	if ((rc = cubeid_picod_conn_server(a, fd, &c)) != CUBEID_OK) {
		printf("refused %s\n", cubeid_strerror(rc));
		fflush(stdout);
		return rc;
	}
	if ((rc = cubeid_picod_conn_read_head(c, buf, sizeof(buf), &head_len, &len, &auth)) !=
	    CUBEID_OK) {
		printf("refused bad request: %s\n", cubeid_strerror(rc));
		goto out;
	}
	rc = cubeid_picod_conn_authorize(c, auth, &v, &peer);
	if (rc == CUBEID_OK) {
		if (peer != NULL)
			n = snprintf(body, sizeof(body), "{\"peer\":\"%s\"}\n", peer);
		else
			n = snprintf(body, sizeof(body), "{\"sub\":\"%s\",\"session_id\":\"%s\"}\n",
			             v->sub != NULL ? v->sub : "", v->session_id);
		m = snprintf(resp, sizeof(resp),
		             "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
		             "Content-Length: %d\r\nConnection: close\r\n\r\n%s",
		             n, body);
		if (peer != NULL)
			printf("200 peer=%s\n", peer);
		else
			printf("200 sub=%s session_id=%s\n", v->sub != NULL ? v->sub : "-",
			       v->session_id);
	} else {
		n = snprintf(body, sizeof(body),
		             "{\"error\":\"Invalid token\",\"detail\":\"%s\"}\n",
		             cubeid_strerror(rc));
		m = snprintf(resp, sizeof(resp),
		             "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer "
		             "error=\"invalid_token\"\r\nContent-Type: application/json\r\n"
		             "Content-Length: %d\r\nConnection: close\r\n\r\n%s",
		             n, body);
		printf("401 %s\n", cubeid_strerror(rc));
	}
	(void)cubeid_picod_conn_write(c, resp, (size_t)m);
out:
	fflush(stdout);
	free(auth);
	free(peer);
	cubeid_picod_verified_free(v);
	cubeid_picod_conn_free(c);
	return rc;
}

static int
server(cubeid_picod_auth *a, const char *port_file, long count)
{
	struct sockaddr_in sa = {.sin_family = AF_INET};
	socklen_t sl = sizeof(sa);
	FILE *f;
	int l, fd, one = 1;
	long served = 0;

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if ((l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0 ||
	    setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
	    bind(l, (struct sockaddr *)&sa, sizeof(sa)) != 0 || listen(l, 64) != 0 ||
	    getsockname(l, (struct sockaddr *)&sa, &sl) != 0) {
		perror("picod-auth-peer: listen");
		return 2;
	}
	if ((f = fopen(port_file, "w")) == NULL) {
		perror(port_file);
		return 2;
	}
	fprintf(f, "%u\n", ntohs(sa.sin_port));
	fclose(f);
	while (!stop && (count == 0 || served < count)) {
		if ((fd = accept(l, NULL, NULL)) < 0)
			continue;
		(void)serve_one(a, fd);
		close(fd);
		served++;
	}
	close(l);
	return 0;
}

static int
client(cubeid_picod_auth *a, const char *connect_to, const struct cubeid_picod_token_req *r)
{
	struct sockaddr_in sa = {.sin_family = AF_INET};
	cubeid_picod_conn *c = NULL;
	char host[64], req[20000], resp[8192], *auth = NULL, *colon;
	const char *body = "{\"command\":[\"echo\",\"hello\"]}";
	size_t have = 0;
	long n;
	int fd = -1, rc, m, status = 2;

	snprintf(host, sizeof(host), "%s", connect_to);
	if ((colon = strrchr(host, ':')) == NULL) {
		fprintf(stderr, "picod-auth-peer: --connect HOST:PORT\n");
		return 2;
	}
	*colon = '\0';
	sa.sin_port = htons((uint16_t)atoi(colon + 1));
	if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
		fprintf(stderr, "picod-auth-peer: bad address %s\n", host);
		return 2;
	}
	if ((rc = cubeid_picod_auth_authorization(a, r, &auth)) != CUBEID_OK) {
		fprintf(stderr, "picod-auth-peer: no token: %s\n", cubeid_strerror(rc));
		return 2;
	}
	if ((fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0 ||
	    connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
		perror("picod-auth-peer: connect");
		goto out;
	}
	if ((rc = cubeid_picod_conn_client(a, fd, &c)) != CUBEID_OK) {
		fprintf(stderr, "picod-auth-peer: %s\n", cubeid_strerror(rc));
		status = rc == CUBEID_ERR_AUTH_MODE ? 3 : 2;
		goto out;
	}
	m = snprintf(req, sizeof(req),
	             "POST /api/execute HTTP/1.1\r\nHost: picod\r\n%s%s%s"
	             "Content-Type: application/json\r\nContent-Length: %zu\r\n"
	             "Connection: close\r\n\r\n%s",
	             auth != NULL ? "Authorization: " : "", auth != NULL ? auth : "",
	             auth != NULL ? "\r\n" : "", strlen(body), body);
	if ((rc = cubeid_picod_conn_write(c, req, (size_t)m)) != CUBEID_OK) {
		fprintf(stderr, "picod-auth-peer: write: %s\n", cubeid_strerror(rc));
		goto out;
	}
	while (have < sizeof(resp) - 1 &&
	       (n = cubeid_picod_conn_read(c, resp + have, sizeof(resp) - 1 - have)) > 0)
		have += (size_t)n;
	if (have == 0) {
		fprintf(stderr, "picod-auth-peer: no answer: %s\n",
		        n < 0 ? cubeid_strerror((int)n) : "closed");
		goto out;
	}
	resp[have] = '\0';
	if ((rc = cubeid_picod_conn_check_reply(c, resp, have)) != CUBEID_OK) {
		fprintf(stderr, "picod-auth-peer: %s\n", cubeid_strerror(rc));
		status = rc == CUBEID_ERR_AUTH_MODE ? 3 : 2;
		goto out;
	}
	printf("%s\n", resp);
	status = strncmp(resp, "HTTP/1.1 200 ", 13) == 0 ? 0 : 1;
out:
	cubeid_picod_conn_free(c);
	if (fd >= 0)
		close(fd);
	if (auth != NULL) {
		memset(auth, 0, strlen(auth));
		free(auth);
	}
	return status;
}

int
main(int argc, char **argv)
{
	struct cubeid_picod_auth_config cfg = {0};
	struct cubeid_picod_token_req r = {0};
	struct cubeid_tls_config tc = {0};
	struct cubeid_tls_flags fl;
	cubeid_picod_auth *a = NULL;
	const char *role, *count;
	int rc, status;

	cfg.mode = CUBEID_PICOD_AUTH_MTLS;
	cubeid_tls_flags_init(&fl);
	if (cubeid_picod_auth_flag_parse(&argc, argv, &cfg.mode) != CUBEID_OK ||
	    cubeid_tls_flags_parse(&fl, &argc, argv) != CUBEID_OK || argc < 2) {
		fprintf(stderr, "usage: picod-auth-peer server|client [--picod-auth-mode mtls|jwt] "
		                "[--mtls-* flags] ...\n");
		return 2;
	}
	role = argv[1];
	cfg.role = strcmp(role, "server") == 0 ? CUBEID_PICOD_SERVER : CUBEID_PICOD_CLIENT;
	if (cfg.mode == CUBEID_PICOD_AUTH_MTLS) {
		tc.cert_file = fl.cert_file;
		tc.key_file = fl.key_file;
		tc.ca_file = fl.ca_file;
		tc.socket = fl.socket;
		tc.spiffe_id = fl.spiffe_id;
		tc.pin_file = fl.pin_file;
		tc.allow = fl.allow;
		tc.n_allow = fl.n_allow;
		tc.tls12 = fl.tls12;
		cfg.tls = &tc;
	}
	cfg.socket = opt(argc, argv, "--socket");
	cfg.verify.sandbox = opt(argc, argv, "--sandbox");
	cfg.verify.ns = opt(argc, argv, "--namespace");
	cfg.verify.session_id =
	        cfg.role == CUBEID_PICOD_SERVER ? opt(argc, argv, "--session") : NULL;
	cfg.verify.leeway = -1;
	if ((rc = cubeid_picod_auth_new(&cfg, &a)) != CUBEID_OK) {
		fprintf(stderr, "picod-auth-peer: %s\n", cubeid_strerror(rc));
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	if (cfg.role == CUBEID_PICOD_SERVER) {
		count = opt(argc, argv, "--count");
		if (opt(argc, argv, "--port-file") == NULL) {
			fprintf(stderr, "picod-auth-peer: server needs --port-file\n");
			status = 2;
		} else {
			status = server(a, opt(argc, argv, "--port-file"),
			                count != NULL ? atol(count) : 0);
		}
	} else {
		r.session_id = opt(argc, argv, "--session");
		r.sandbox = opt(argc, argv, "--sandbox");
		r.ns = opt(argc, argv, "--namespace");
		if (opt(argc, argv, "--connect") == NULL || r.session_id == NULL ||
		    r.sandbox == NULL) {
			fprintf(stderr,
			        "picod-auth-peer: client needs --connect, --session, --sandbox\n");
			status = 2;
		} else {
			status = client(a, opt(argc, argv, "--connect"), &r);
		}
	}
	cubeid_picod_auth_free(a);
	return status;
}
