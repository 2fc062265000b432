/*
 * router: the reference Router of the end-to-end chain (docs/e2e.md), built
 * only on libcubeid's public API.
 *
 *   router --listen PORT --issuer URL --token-url URL --client-id ID
 *          --assertion-file JWT-SVID-FILE --wm HOST:PORT
 *          --enable-mtls --mtls-cert-file F --mtls-key-file F
 *          --mtls-ca-file F --mtls-allow-id WORKLOADMANAGER-SPIFFE-ID
 *          [--agent-socket S [--namespace NS] [--picod-auth-mode mtls|jwt]
 *           [--picod-allow-id SANDBOX-SPIFFE-ID]]
 *
 * Plain HTTP/1.1 towards the SDK (libmicrohttpd); mTLS towards the
 * WorkloadManager with cubeid's TLS loader.  For each request it
 *   1. verifies the caller's Keycloak token (aud agentcube-router) and the
 *      role the endpoint needs (the policy table below): 401 or 403;
 *   2. exchanges the token (RFC 8693) for the audience "workloadmanager",
 *      authenticating to Keycloak with its JWT-SVID (jwt-spiffe: the agent
 *      delivers it to --assertion-file, no secret anywhere);
 *   3. calls the WorkloadManager over mTLS with the exchanged token;
 *   4. for a sandbox, enforces RLAC on the owner the WorkloadManager
 *      recorded: the owner and admin only (403);
 *   5. with --agent-socket, an invoke goes to the sandbox's PicoD (through
 *      the front the WorkloadManager started, examples/picod-front.c) in
 *      --picod-auth-mode: mtls (its own SVID; the sandbox's ID allowed)
 *      or jwt; a sandbox in the other mode is a 502 with the documented
 *      mismatch error (CUBEID_ERR_AUTH_MODE, <cubeid/picod-auth.h>).
 */
#define _GNU_SOURCE /* strcasestr */
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <jansson.h>
#include <microhttpd.h>
#include <openssl/ssl.h>

#include <cubeid/oidc.h>
#include <cubeid/picod-auth.h>
#include <cubeid/picod.h>
#include <cubeid/tls.h>

#define BODY_MAX (64 * 1024)

/* Which role each endpoint needs; sandbox:manage and admin are Keycloak
 * composites, so they carry sandbox:invoke too. */
static const char POLICY[] = "POST   /v1/sandboxes           sandbox:manage\n"
                             "DELETE /v1/sandboxes/*         sandbox:manage\n"
                             "GET    /v1/sandboxes/*         sandbox:invoke\n"
                             "POST   /v1/sandboxes/*/invoke  sandbox:invoke\n";

static struct {
	cubeid_oidc_verifier *verifier;
	cubeid_oidc_policy *policy;
	cubeid_oidc_client *client;
	SSL_CTX *wm_ctx;
	const char *wm_host, *wm_port, *assertion_file;
	const char *agent_socket, *ns; /* towards PicoD */
	cubeid_picod_auth *picod;
} rt = {.ns = "agentcube"};

/* The jwt-spiffe client assertion: the JWT-SVID the agent delivered (and
 * keeps fresh) for the audience of the realm issuer. */
static int
assertion(void *ctx, const char *aud, int64_t now, char **out)
{
	FILE *f = fopen(rt.assertion_file, "r");
	char buf[8192];
	size_t n = f ? fread(buf, 1, sizeof(buf) - 1, f) : 0;

	(void)ctx, (void)aud, (void)now;
	if (f)
		fclose(f);
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
		n--;
	buf[n] = '\0';
	*out = n ? strdup(buf) : NULL;
	return *out ? CUBEID_OK : CUBEID_ERR_UNAVAILABLE;
}

/* One HTTP/1.1 request to host:port, over mTLS with ctx (the
 * WorkloadManager) or plain (ctx NULL: PicoD in jwt mode), with a bearer
 * token and an optional JSON body.  Returns the status (or -1) and the JSON
 * reply in *reply. */
static int
http_call(SSL_CTX *ctx, const char *host, const char *port, const char *method, const char *path,
          const char *token, const char *body, json_t **reply)
{
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai = NULL;
	char *buf = malloc(BODY_MAX + 1), *p;
	SSL *ssl = NULL;
	int fd = -1, status = -1, n, len = 0, ret;
	const char *why = NULL;

	*reply = NULL;
	if (!buf || getaddrinfo(host, port, &hints, &ai) != 0)
		goto out;
	fd = socket(ai->ai_family, SOCK_STREAM, 0);
	if (fd < 0 || connect(fd, ai->ai_addr, ai->ai_addrlen) != 0)
		goto out;
	if (ctx) {
		ssl = SSL_new(ctx);
		SSL_set_fd(ssl, fd);
		if ((ret = SSL_connect(ssl)) <= 0) {
			cubeid_tls_handshake_error(ssl, ret, &why);
			fprintf(stderr, "router: %s:%s refused: %s\n", host, port, why ? why : "?");
			goto out;
		}
	}
	n = snprintf(buf, BODY_MAX,
	             "%s %s HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\n"
	             "Content-Type: application/json\r\nContent-Length: %zu\r\n"
	             "Connection: close\r\n\r\n%s",
	             method, path, host, token, body ? strlen(body) : 0, body ? body : "");
	if (n >= BODY_MAX || (ssl ? SSL_write(ssl, buf, n) : write(fd, buf, (size_t)n)) != n)
		goto out;
	while (len < BODY_MAX &&
	       (n = ssl ? SSL_read(ssl, buf + len, BODY_MAX - len)
	                : (int)read(fd, buf + len, (size_t)(BODY_MAX - len))) > 0) {
		len += n;
		buf[len] = '\0';
		/* the WorkloadManager keeps connections open: stop at the body's end */
		if ((p = strstr(buf, "\r\n\r\n")) != NULL) {
			char *cl = strcasestr(buf, "\r\nContent-Length:");
			if (cl && cl < p && (p + 4 - buf) + atol(cl + 17) <= len)
				break;
		}
	}
	buf[len] = '\0';
	if (sscanf(buf, "HTTP/1.1 %d", &status) != 1 || !(p = strstr(buf, "\r\n\r\n"))) {
		status = -1;
		goto out;
	}
	*reply = json_loads(p + 4, 0, NULL);
out:
	if (ssl)
		SSL_shutdown(ssl);
	SSL_free(ssl);
	if (fd >= 0)
		close(fd);
	if (ai)
		freeaddrinfo(ai);
	free(buf);
	return status;
}

static int
wm_call(const char *method, const char *path, const char *token, json_t **reply)
{
	return http_call(rt.wm_ctx, rt.wm_host, rt.wm_port, method, path, token, NULL, reply);
}

/* An invoke at the sandbox's PicoD (addr: its front, or PicoD itself), with
 * a PicoD token from the agent (aud picod:NS/ID, the session, the user):
 * PicoD v0.1.0 checks it whatever the mode.  The connection is the
 * --picod-auth-mode's (mtls: the handshake first).  Returns the status (-1,
 * or CUBEID_ERR_AUTH_MODE in *rc for a sandbox in the other mode). */
static int
picod_invoke(const char *id, const char *addr, const char *user, json_t **reply, int *rc)
{
	struct cubeid_wl_opts o = {.socket = rt.agent_socket};
	struct cubeid_picod_token_req req = {
	        .session_id = id, .sandbox = id, .ns = rt.ns, .user_sub = user};
	static const char body[] = "{\"command\":[\"echo\",\"hello from the sandbox\"]}";
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai = NULL;
	struct cubeid_picod_token *t = NULL;
	struct cubeid_picod_conn *c = NULL;
	struct cubeid_wl_status st;
	char host[64], *colon, *buf = malloc(BODY_MAX + 1), *p;
	int status = -1, fd = -1, n;
	size_t len = 0;
	long got;

	*reply = NULL;
	*rc = CUBEID_OK;
	snprintf(host, sizeof(host), "%s", addr ? addr : "");
	if (!buf || !(colon = strrchr(host, ':')))
		goto out;
	*colon = '\0';
	if (cubeid_picod_fetch_token(&o, &req, &t, &st) != CUBEID_OK) {
		fprintf(stderr, "router: no PicoD token from the agent: %s\n", st.message);
		goto out;
	}
	if (getaddrinfo(host, colon + 1, &hints, &ai) != 0 ||
	    (fd = socket(ai->ai_family, SOCK_STREAM, 0)) < 0 ||
	    connect(fd, ai->ai_addr, ai->ai_addrlen) != 0)
		goto out;
	if ((*rc = cubeid_picod_conn_client(rt.picod, fd, &c)) != CUBEID_OK)
		goto out;
	n = snprintf(buf, BODY_MAX,
	             "POST /api/execute HTTP/1.1\r\nHost: picod\r\nAuthorization: Bearer %s\r\n"
	             "Content-Type: application/json\r\nContent-Length: %zu\r\n"
	             "Connection: close\r\n\r\n%s",
	             t->token, strlen(body), body);
	if (n >= BODY_MAX || (*rc = cubeid_picod_conn_write(c, buf, (size_t)n)) != CUBEID_OK)
		goto out;
	while (len < BODY_MAX && (got = cubeid_picod_conn_read(c, buf + len, BODY_MAX - len)) > 0)
		len += (size_t)got;
	buf[len] = '\0';
	if (len == 0 || (*rc = cubeid_picod_conn_check_reply(c, buf, len)) != CUBEID_OK)
		goto out;
	if (sscanf(buf, "HTTP/1.%*d %d", &status) == 1 && (p = strstr(buf, "\r\n\r\n")))
		*reply = json_loads(p + 4, 0, NULL);
out:
	if (*rc != CUBEID_OK)
		fprintf(stderr, "router: PicoD of %s at %s: %s\n", id, addr ? addr : "?",
		        cubeid_strerror(*rc));
	cubeid_picod_conn_free(c);
	if (fd >= 0)
		close(fd);
	if (ai)
		freeaddrinfo(ai);
	cubeid_picod_token_free(t);
	free(buf);
	return *rc != CUBEID_OK ? -1 : status;
}

static enum MHD_Result
send_json(struct MHD_Connection *c, int status, json_t *body, const char *www_auth)
{
	char *text = json_dumps(body ? body : json_object(), JSON_COMPACT);
	struct MHD_Response *r =
	        MHD_create_response_from_buffer(strlen(text), text, MHD_RESPMEM_MUST_FREE);
	enum MHD_Result ret;

	MHD_add_response_header(r, "Content-Type", "application/json");
	if (www_auth)
		MHD_add_response_header(r, "WWW-Authenticate", www_auth);
	ret = MHD_queue_response(c, (unsigned)status, r);
	MHD_destroy_response(r);
	json_decref(body);
	return ret;
}

static json_t *
err(const char *what, const char *detail)
{
	return json_pack("{ss ss}", "error", what, "detail", detail ? detail : "");
}

static enum MHD_Result
on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
           const char *version, const char *data, size_t *data_len, void **state)
{
	struct cubeid_oidc_decision d = {0};
	struct cubeid_oidc_token x = {0};
	const char *authz = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
	char id[128] = "", path[192];
	json_t *body = NULL;
	int status, rc;
	enum MHD_Result ret;

	(void)cls, (void)version, (void)data;
	if (*state == NULL) { /* first call: headers only */
		*state = (void *)1;
		return MHD_YES;
	}
	if (*data_len) { /* the SDK sends no bodies we need: drop them */
		*data_len = 0;
		return MHD_YES;
	}
	/* 1. the caller's token and role */
	if (cubeid_oidc_authorize(rt.verifier, rt.policy, "agentcube", method, url, authz, 0, &d) !=
	    0)
		return send_json(c, 500, err("internal", NULL), NULL);
	if (d.status != 200) {
		ret = send_json(c, d.status,
		                err(d.status == 401 ? "unauthorized" : "forbidden",
		                    cubeid_strerror(d.reason)),
		                d.www_authenticate);
		cubeid_oidc_decision_clear(&d);
		return ret;
	}
	/* 2. the token for the WorkloadManager */
	rc = cubeid_oidc_client_exchange(rt.client, authz + 7, "workloadmanager", NULL, 0, &x);
	if (rc != CUBEID_OK) {
		fprintf(stderr, "router: token exchange failed: %s: %s\n", cubeid_strerror(rc),
		        x.error_description ? x.error_description : "");
		ret = send_json(c, 502, err("token exchange failed", x.error), NULL);
		goto out;
	}
	/* 3 and 4: the WorkloadManager, and RLAC for an existing sandbox */
	if (strcmp(method, "POST") == 0 && strcmp(url, "/v1/sandboxes") == 0) {
		status = wm_call("POST", "/sandboxes", x.access_token, &body);
		ret = status < 0 ? send_json(c, 502, err("workloadmanager unreachable", NULL), NULL)
		                 : send_json(c, status, body, NULL);
		goto out;
	}
	sscanf(url, "/v1/sandboxes/%127[A-Za-z0-9-]", id);
	snprintf(path, sizeof(path), "/sandboxes/%s", id);
	status = wm_call("GET", path, x.access_token, &body);
	if (status != 200) {
		ret = send_json(c, status < 0 ? 502 : status, body, NULL);
		goto out;
	}
	rc = cubeid_rlac_check(
	        d.claims, json_string_value(json_object_get(body, CUBEID_RLAC_OWNER_ANNOTATION)));
	if (rc != CUBEID_OK) {
		json_decref(body);
		ret = send_json(c, 403, err("forbidden", "not the sandbox owner"), NULL);
		goto out;
	}
	if (strcmp(method, "DELETE") == 0) {
		json_decref(body);
		status = wm_call("DELETE", path, x.access_token, &body);
		ret = send_json(c, status < 0 ? 502 : status, body, NULL);
	} else if (strcmp(method, "POST") == 0 && rt.agent_socket) { /* invoke: PicoD */
		json_t *out = NULL, *front = json_object_get(body, "front");
		int prc;
		status = picod_invoke(id,
		                      json_string_value(json_string_length(front)
		                                                ? front
		                                                : json_object_get(body, "picod")),
		                      cubeid_rlac_owner(d.claims), &out, &prc);
		json_decref(body);
		if (status < 0)
			out = err("picod unreachable", cubeid_strerror(prc));
		ret = send_json(c, status < 0 ? 502 : status, out, NULL);
	} else if (strcmp(method, "POST") == 0) { /* invoke, no PicoD configured */
		json_decref(body);
		ret = send_json(
		        c, 200,
		        json_pack("{ss ss}", "invoked", id, "by", cubeid_rlac_owner(d.claims)),
		        NULL);
	} else {
		ret = send_json(c, 200, body, NULL);
	}
out:
	cubeid_oidc_token_clear(&x);
	cubeid_oidc_decision_clear(&d);
	return ret;
}

int
main(int argc, char **argv)
{
	struct cubeid_tls_flags fl;
	struct cubeid_oidc_verifier_opts vo = {0};
	struct cubeid_oidc_client_opts co = {.method = CUBEID_OIDC_AUTH_SPIFFE,
	                                     .assertion = assertion};
	const char *aud[] = {"agentcube-router"}, *picod_allow[1] = {NULL};
	struct cubeid_picod_auth_config pc = {.role = CUBEID_PICOD_CLIENT};
	struct cubeid_tls_config ptc;
	cubeid_tls *tls = NULL;
	struct MHD_Daemon *d;
	char *wm = NULL, *colon;
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	int port = 0;
	sigset_t set;

	cubeid_tls_flags_init(&fl);
	if (cubeid_picod_auth_flag_parse(&argc, argv, &pc.mode) != 0 ||
	    cubeid_tls_flags_parse(&fl, &argc, argv) != 0)
		return 2;
	for (int i = 1; i + 1 < argc; i += 2) {
		const char *k = argv[i], *v = argv[i + 1];
		if (strcmp(k, "--listen") == 0)
			port = atoi(v);
		else if (strcmp(k, "--issuer") == 0)
			vo.issuer = co.issuer = v;
		else if (strcmp(k, "--token-url") == 0)
			co.token_endpoint = v;
		else if (strcmp(k, "--client-id") == 0)
			co.client_id = v;
		else if (strcmp(k, "--assertion-file") == 0)
			rt.assertion_file = v;
		else if (strcmp(k, "--picod-allow-id") == 0)
			picod_allow[0] = v;
		else if (strcmp(k, "--agent-socket") == 0)
			rt.agent_socket = v;
		else if (strcmp(k, "--namespace") == 0)
			rt.ns = v;
		else if (strcmp(k, "--wm") == 0)
			wm = strdup(v);
		else {
			fprintf(stderr, "router: unknown argument %s\n", k);
			return 2;
		}
	}
	if (port <= 0 || !vo.issuer || !co.token_endpoint || !co.client_id || !rt.assertion_file ||
	    !wm || !(colon = strrchr(wm, ':')) || !fl.enable) {
		fprintf(stderr,
		        "usage: router --listen PORT --issuer URL --token-url URL --client-id ID "
		        "--assertion-file FILE --wm HOST:PORT --enable-mtls ...\n");
		cubeid_tls_flags_usage(stderr);
		return 2;
	}
	*colon = '\0';
	rt.wm_host = wm;
	rt.wm_port = colon + 1;
	vo.audiences = aud;
	vo.n_audiences = 1;
	signal(SIGPIPE, SIG_IGN);
	if (cubeid_oidc_verifier_new(&vo, &rt.verifier) != 0 ||
	    cubeid_oidc_policy_parse(POLICY, strlen(POLICY), &rt.policy, NULL) != 0 ||
	    cubeid_oidc_client_new(&co, &rt.client) != 0 ||
	    cubeid_tls_new_from_flags(&fl, &tls) != 0 ||
	    cubeid_tls_client_ctx(tls, &rt.wm_ctx) != 0)
		return 1;
	cubeid_tls_free(tls); /* the context holds its own reference */
	/* towards PicoD: the same SVID, and the sandbox's ID (with none, any ID
	 * of the trust domain) instead of the WorkloadManager's */
	if (rt.agent_socket) {
		if (cubeid_tls_flags_config(&fl, &ptc) != 0)
			return 1;
		ptc.allow = picod_allow;
		ptc.n_allow = picod_allow[0] ? 1 : 0;
		pc.tls = pc.mode == CUBEID_PICOD_AUTH_MTLS ? &ptc : NULL;
		pc.socket = rt.agent_socket;
		if (cubeid_picod_auth_new(&pc, &rt.picod) != 0)
			return 1;
		fprintf(stderr, "router: PicoD in %s mode\n", cubeid_picod_auth_mode_name(pc.mode));
	}

	/* block the stop signals before MHD's threads start, so they inherit it */
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	sa.sin_port = htons((uint16_t)port);
	d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION,
	                     (uint16_t)port, NULL, NULL, on_request, NULL, MHD_OPTION_SOCK_ADDR,
	                     (struct sockaddr *)&sa, MHD_OPTION_LISTENING_ADDRESS_REUSE, 1,
	                     MHD_OPTION_END);
	if (!d) {
		fprintf(stderr, "router: cannot listen on port %d\n", port);
		return 1;
	}
	fprintf(stderr, "router: listening on 127.0.0.1:%d\n", port);
	sigwait(&set, &port);
	MHD_stop_daemon(d);
	return 0;
}
