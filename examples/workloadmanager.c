/*
 * workloadmanager: the reference WorkloadManager of the end-to-end chain
 * (docs/e2e.md), built only on libcubeid's public API.
 *
 *   workloadmanager --listen PORT --issuer URL [--picod PATH
 *                   --picod-key-file PEM --picod-dir DIR [--picod-front PATH]]
 *                   --enable-mtls --mtls-cert-file F --mtls-key-file F
 *                   --mtls-ca-file F --mtls-allow-id ROUTER-SPIFFE-ID
 *
 * It serves HTTP/1.1 over mTLS (cubeid's TLS loader: certificates reload
 * from the delivered files, and only the allow-listed SPIFFE ID, the
 * Router's, gets past the handshake).  Every request must carry a Keycloak
 * token for the audience "workloadmanager" (the Router's exchanged token),
 * checked with its own JWKS cache.  The API:
 *
 *   POST   /sandboxes       create one owned by the token's sub; with
 *                           --picod, start a real PicoD for it, and with
 *                           --picod-front the Router's way in to it
 *                           (examples/picod-front.c)
 *   GET    /sandboxes/ID    {"id", "owner", "owner_hash", "picod", "front"}
 *   DELETE /sandboxes/ID    stop it
 *
 * A sandbox records agentcube.io/owner and agentcube.io/owner-hash, as
 * AgentCube's WorkloadManager puts them on the Sandbox object.
 */
#define _GNU_SOURCE /* strcasestr */
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/ssl.h>

#include <cubeid/oidc.h>
#include <cubeid/tls.h>

#define REQ_MAX     (64 * 1024) /* bytes of one request, headers and body */
#define SANDBOX_MAX 64

struct sandbox {
	char id[32];
	char owner[256];
	char hash[CUBEID_RLAC_HASH_LEN + 1];
	pid_t picod, front;
	char addr[64];  /* where its PicoD listens, host:port */
	char faddr[64]; /* where its front listens */
};

static struct {
	cubeid_oidc_verifier *verifier;
	SSL_CTX *ctx;
	const char *picod, *picod_key, *picod_dir, *front;
	pthread_mutex_t lock;
	struct sandbox sb[SANDBOX_MAX];
	int n;
	unsigned long next_id;
} wm = {.lock = PTHREAD_MUTEX_INITIALIZER};

/* ---- HTTP/1.1 over one SSL connection ------------------------------- */

struct req {
	char method[8], path[256];
	char *auth; /* Authorization value, in buf */
	char buf[REQ_MAX + 1];
};

/* Read one request (headers and Content-Length body) from ssl. */
static int
read_req(SSL *ssl, struct req *r)
{
	size_t len = 0, want = 0;
	char *end = NULL;

	for (;;) {
		int n = SSL_read(ssl, r->buf + len, (int)(REQ_MAX - len));
		if (n <= 0)
			return -1;
		len += (size_t)n;
		r->buf[len] = '\0';
		if (!end && (end = strstr(r->buf, "\r\n\r\n")) != NULL) {
			char *cl = strcasestr(r->buf, "\r\nContent-Length:");
			want = (size_t)(end + 4 - r->buf) +
			       (cl && cl < end ? strtoul(cl + 17, NULL, 10) : 0);
			if (want > REQ_MAX)
				return -1;
		}
		if (end && len >= want)
			break;
		if (len == REQ_MAX)
			return -1;
	}
	*end = '\0';
	if (sscanf(r->buf, "%7s %255s", r->method, r->path) != 2)
		return -1;
	r->auth = strcasestr(r->buf, "\r\nAuthorization:");
	if (r->auth) {
		r->auth += 16;
		r->auth += strspn(r->auth, " ");
		r->auth[strcspn(r->auth, "\r")] = '\0';
	}
	return 0;
}

static void
reply(SSL *ssl, int status, json_t *body)
{
	char *text = json_dumps(body, JSON_COMPACT);
	char head[256];
	int n = snprintf(head, sizeof(head),
	                 "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\n"
	                 "Content-Length: %zu\r\nConnection: keep-alive\r\n\r\n",
	                 status, status < 300 ? "OK" : "Error", text ? strlen(text) : 0);
	SSL_write(ssl, head, n);
	if (text && *text)
		SSL_write(ssl, text, (int)strlen(text));
	free(text);
	json_decref(body);
}

static json_t *
error_body(const char *what)
{
	return json_pack("{ss}", "error", what);
}

/* ---- sandboxes ------------------------------------------------------- */

static struct sandbox *
find_locked(const char *id)
{
	for (int i = 0; i < wm.n; i++)
		if (strcmp(wm.sb[i].id, id) == 0)
			return &wm.sb[i];
	return NULL;
}

static json_t *
sandbox_json(const struct sandbox *s)
{
	return json_pack("{ss ss ss ss si ss}", "id", s->id, CUBEID_RLAC_OWNER_ANNOTATION, s->owner,
	                 CUBEID_RLAC_OWNER_HASH_LABEL, s->hash, "picod", s->addr, "picod_pid",
	                 (int)s->picod, "front", s->faddr);
}

/* Start a sandbox process (PicoD, or its front) with PICOD_AUTH_PUBLIC_KEY
 * from the agent; it writes the address it listens on to ADDRFILE, which
 * is waited for and read into addr. */
static pid_t
spawn(char *const argv[], const char *addrfile, const char *log, char addr[64])
{
	pid_t pid = fork();
	sigset_t none;

	if (pid == 0) {
		sigemptyset(&none); /* main() blocked SIGTERM: not for the sandbox */
		sigprocmask(SIG_SETMASK, &none, NULL);
		if (!freopen(log, "w", stderr))
			_exit(127);
		dup2(2, 1);
		setenv("PICOD_AUTH_PUBLIC_KEY", wm.picod_key, 1);
		execv(argv[0], argv);
		_exit(127);
	}
	for (int i = 0; pid > 0 && i < 600; i++) {
		FILE *f = fopen(addrfile, "r");
		if (!f && waitpid(pid, NULL, WNOHANG) == pid) {
			fprintf(stderr, "workloadmanager: %s exited, see %s\n", argv[0], log);
			return -1;
		}
		if (f) {
			int ok = fscanf(f, "%63s", addr) == 1;
			fclose(f);
			if (ok)
				break;
		}
		usleep(100 * 1000);
	}
	return pid;
}

/* A real PicoD for s in a workspace of its own, and its front. */
static void
start_picod(struct sandbox *s)
{
	char ws[512], addr[512], log[512];

	snprintf(ws, sizeof(ws), "%s/%s", wm.picod_dir, s->id);
	snprintf(addr, sizeof(addr), "%s/%s.addr", wm.picod_dir, s->id);
	snprintf(log, sizeof(log), "%s/%s.log", wm.picod_dir, s->id);
	if (mkdir(ws, 0700) != 0)
		return;
	s->picod = spawn((char *[]){(char *)wm.picod, ws, addr, NULL}, addr, log, s->addr);
	if (!wm.front || s->picod <= 0 || !*s->addr)
		return;
	snprintf(addr, sizeof(addr), "%s/%s.front", wm.picod_dir, s->id);
	snprintf(log, sizeof(log), "%s/%s.front.log", wm.picod_dir, s->id);
	s->front = spawn((char *[]){(char *)wm.front, "--sandbox", s->id, "--upstream", s->addr,
	                            "--addr-file", addr, NULL},
	                 addr, log, s->faddr);
}

static void
stop(pid_t pid)
{
	if (pid > 0) {
		kill(pid, SIGTERM);
		waitpid(pid, NULL, 0);
	}
}

static void
handle(SSL *ssl, struct req *r, const char *peer)
{
	cubeid_oidc_claims *claims = NULL;
	const char *auth = r->auth;
	int rc;

	if (!auth || strncasecmp(auth, "Bearer ", 7) != 0) {
		reply(ssl, 401, error_body("no bearer token"));
		return;
	}
	auth += 7;
	rc = cubeid_oidc_verify(wm.verifier, auth, strlen(auth), 0, &claims);
	if (rc != CUBEID_OK) {
		fprintf(stderr, "workloadmanager: %s %s from %s: token refused: %s\n", r->method,
		        r->path, peer, cubeid_strerror(rc));
		reply(ssl, 401,
		      json_pack("{ss ss}", "error", "invalid_token", "reason",
		                cubeid_strerror(rc)));
		return;
	}
	fprintf(stderr, "workloadmanager: %s %s from %s for %s\n", r->method, r->path, peer,
	        cubeid_rlac_owner(claims));
	pthread_mutex_lock(&wm.lock);
	if (strcmp(r->method, "POST") == 0 && strcmp(r->path, "/sandboxes") == 0) {
		struct sandbox *s = wm.n < SANDBOX_MAX ? &wm.sb[wm.n] : NULL;
		const char *owner = cubeid_rlac_owner(claims);
		if (!s || !owner || strlen(owner) >= sizeof(s->owner)) {
			reply(ssl, s ? 400 : 503, error_body(s ? "no owner" : "full"));
		} else {
			memset(s, 0, sizeof(*s));
			snprintf(s->id, sizeof(s->id), "sb-%lu", ++wm.next_id);
			strcpy(s->owner, owner);
			cubeid_rlac_owner_hash(owner, s->hash);
			if (wm.picod)
				start_picod(s);
			wm.n++;
			reply(ssl, 201, sandbox_json(s));
		}
	} else if (strncmp(r->path, "/sandboxes/", 11) == 0) {
		struct sandbox *s = find_locked(r->path + 11);
		if (!s) {
			reply(ssl, 404, error_body("no such sandbox"));
		} else if (strcmp(r->method, "GET") == 0) {
			reply(ssl, 200, sandbox_json(s));
		} else if (strcmp(r->method, "DELETE") == 0) {
			stop(s->front);
			stop(s->picod);
			*s = wm.sb[--wm.n];
			reply(ssl, 200, json_pack("{sb}", "deleted", 1));
		} else {
			reply(ssl, 405, error_body("method"));
		}
	} else {
		reply(ssl, 404, error_body("no such path"));
	}
	pthread_mutex_unlock(&wm.lock);
	cubeid_oidc_claims_free(claims);
}

/* One connection: the mTLS handshake, then requests until the peer closes. */
static void *
serve(void *arg)
{
	int fd = (int)(intptr_t)arg;
	SSL *ssl = SSL_new(wm.ctx);
	cubeid_spiffe_id *peer = NULL;
	struct req *r = malloc(sizeof(*r));
	const char *why = NULL;
	int ret;

	if (!ssl || !r)
		goto out;
	SSL_set_fd(ssl, fd);
	if ((ret = SSL_accept(ssl)) <= 0) {
		cubeid_tls_handshake_error(ssl, ret, &why);
		fprintf(stderr, "workloadmanager: handshake refused: %s\n", why ? why : "?");
		goto out;
	}
	if (cubeid_tls_peer_id(ssl, &peer) != CUBEID_OK)
		goto out;
	while (read_req(ssl, r) == 0)
		handle(ssl, r, cubeid_spiffe_id_string(peer));
	SSL_shutdown(ssl);
out:
	cubeid_spiffe_id_free(peer);
	free(r);
	SSL_free(ssl);
	close(fd);
	return NULL;
}

/* SIGTERM or SIGINT (blocked everywhere, taken here): stop every sandbox's
 * processes, which would outlive this one otherwise. */
static void *
on_stop(void *arg)
{
	sigset_t *set = arg;
	int sig;

	sigwait(set, &sig);
	pthread_mutex_lock(&wm.lock);
	for (int i = 0; i < wm.n; i++) {
		stop(wm.sb[i].front);
		stop(wm.sb[i].picod);
	}
	_exit(0);
}

static char *
read_file(const char *path)
{
	FILE *f = fopen(path, "r");
	char *buf = calloc(1, 16384);
	size_t n = f && buf ? fread(buf, 1, 16383, f) : 0;

	if (f)
		fclose(f);
	if (n == 0) {
		free(buf);
		return NULL;
	}
	return buf;
}

int
main(int argc, char **argv)
{
	struct cubeid_tls_flags fl;
	struct cubeid_oidc_verifier_opts vo = {0};
	const char *aud[] = {"workloadmanager"};
	cubeid_tls *tls = NULL;
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	int port = 0, lfd, one = 1;
	static sigset_t set;
	pthread_t st;

	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	pthread_sigmask(SIG_BLOCK, &set, NULL); /* before any thread starts */
	cubeid_tls_flags_init(&fl);
	if (cubeid_tls_flags_parse(&fl, &argc, argv) != 0)
		return 2;
	for (int i = 1; i + 1 < argc; i += 2) {
		if (strcmp(argv[i], "--listen") == 0)
			port = atoi(argv[i + 1]);
		else if (strcmp(argv[i], "--issuer") == 0)
			vo.issuer = argv[i + 1];
		else if (strcmp(argv[i], "--picod") == 0)
			wm.picod = argv[i + 1];
		else if (strcmp(argv[i], "--picod-key-file") == 0)
			wm.picod_key = read_file(argv[i + 1]);
		else if (strcmp(argv[i], "--picod-dir") == 0)
			wm.picod_dir = argv[i + 1];
		else if (strcmp(argv[i], "--picod-front") == 0)
			wm.front = argv[i + 1];
		else {
			fprintf(stderr, "workloadmanager: unknown argument %s\n", argv[i]);
			return 2;
		}
	}
	if (port <= 0 || !vo.issuer || !fl.enable ||
	    (wm.picod && (!wm.picod_key || !wm.picod_dir))) {
		fprintf(stderr, "usage: workloadmanager --listen PORT --issuer URL [--picod PATH "
		                "--picod-key-file PEM --picod-dir DIR [--picod-front PATH]] "
		                "--enable-mtls ...\n");
		cubeid_tls_flags_usage(stderr);
		return 2;
	}
	vo.audiences = aud;
	vo.n_audiences = 1;
	signal(SIGPIPE, SIG_IGN);
	if (cubeid_oidc_verifier_new(&vo, &wm.verifier) != 0 ||
	    cubeid_tls_new_from_flags(&fl, &tls) != 0 || cubeid_tls_server_ctx(tls, &wm.ctx) != 0)
		return 1;
	cubeid_tls_free(tls); /* the context holds its own reference */

	sa.sin_port = htons((uint16_t)port);
	lfd = socket(AF_INET, SOCK_STREAM, 0);
	setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (lfd < 0 || bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) != 0 || listen(lfd, 64) != 0) {
		perror("workloadmanager: listen");
		return 1;
	}
	if (pthread_create(&st, NULL, on_stop, &set) != 0)
		return 1;
	fprintf(stderr, "workloadmanager: listening on 127.0.0.1:%d\n", port);
	for (;;) {
		pthread_t t;
		int fd = accept(lfd, NULL, NULL);
		if (fd < 0) {
			if (errno == EINTR)
				continue;
			return 1;
		}
		if (pthread_create(&t, NULL, serve, (void *)(intptr_t)fd) != 0)
			close(fd);
		else
			pthread_detach(t);
	}
}
