/*
 * Router -> PicoD auth modes: mtls (the TLS loader) or jwt (agent-signed
 * Bearer tokens and the PicoD verifier), behind one configuration and one
 * connection type, with a clear CUBEID_ERR_AUTH_MODE when the two sides
 * disagree.  See <cubeid/picod-auth.h>.
 */
#include "config.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/err.h>

#include <cubeid/log.h>
#include <cubeid/picod-auth.h>

#define DRAIN_MS 2000 /* how long a refused peer may take to go away */

struct cubeid_picod_auth {
	cubeid_picod_auth_mode mode;
	cubeid_picod_role role;
	cubeid_tls *tls;
	SSL_CTX *ctx;
	char *socket;
	cubeid_picod_verifier *v;
};

struct cubeid_picod_conn {
	cubeid_picod_auth *a;
	int fd;
	SSL *ssl;
	uint8_t first[5]; /* the first record header the client read (mtls) */
	size_t n_first;
};

int
cubeid_picod_auth_mode_parse(const char *s, cubeid_picod_auth_mode *out)
{
	if (s != NULL && strcmp(s, "mtls") == 0)
		*out = CUBEID_PICOD_AUTH_MTLS;
	else if (s != NULL && strcmp(s, "jwt") == 0)
		*out = CUBEID_PICOD_AUTH_JWT;
	else
		return CUBEID_ERR_CONFIG;
	return CUBEID_OK;
}

const char *
cubeid_picod_auth_mode_name(cubeid_picod_auth_mode m)
{
	return m == CUBEID_PICOD_AUTH_JWT ? "jwt" : "mtls";
}

int
cubeid_picod_auth_flag_parse(int *argc, char **argv, cubeid_picod_auth_mode *mode)
{
	static const char flag[] = "--picod-auth-mode";
	const char *v;
	bool seen = false;
	int i, w = 0, n = *argc;

	for (i = 0; i < n; i++) {
		if (strcmp(argv[i], "--") == 0) {
			while (i < n)
				argv[w++] = argv[i++];
			break;
		}
		v = NULL;
		if (strcmp(argv[i], flag) == 0) {
			if (i + 1 >= n) {
				cubeid_error("%s needs a value (mtls or jwt)", flag);
				return CUBEID_ERR_CONFIG;
			}
			v = argv[++i];
		} else if (strncmp(argv[i], flag, sizeof(flag) - 1) == 0 &&
		           argv[i][sizeof(flag) - 1] == '=') {
			v = argv[i] + sizeof(flag);
		} else {
			argv[w++] = argv[i];
			continue;
		}
		if (seen || cubeid_picod_auth_mode_parse(v, mode) != CUBEID_OK) {
			cubeid_error("%s: '%s': give mtls or jwt, once", flag, v);
			return CUBEID_ERR_CONFIG;
		}
		seen = true;
	}
	*argc = w;
	argv[w] = NULL;
	return CUBEID_OK;
}

/* ---- the auth --------------------------------------------------------- */

void
cubeid_picod_auth_free(cubeid_picod_auth *a)
{
	if (a == NULL)
		return;
	SSL_CTX_free(a->ctx);
	cubeid_tls_free(a->tls);
	cubeid_picod_verifier_free(a->v);
	free(a->socket);
	free(a);
}

static int
auth_mtls(cubeid_picod_auth *a, const struct cubeid_picod_auth_config *cfg)
{
	struct cubeid_tls_config tc;
	const char *allow[1];
	char def[300];
	int rc;

	if (cfg->tls == NULL) {
		cubeid_error("--picod-auth-mode mtls needs the TLS loader's configuration "
		             "(--enable-mtls and --mtls-* flags)");
		return CUBEID_ERR_CONFIG;
	}
	tc = *cfg->tls;
	if (tc.n_allow == 0) {
		/* PicoD accepts only the Router; the Router any ID of its domain */
		snprintf(def, sizeof(def), "spiffe://%s%s",
		         tc.trust_domain != NULL ? tc.trust_domain : CUBEID_TRUST_DOMAIN_DEFAULT,
		         cfg->role == CUBEID_PICOD_SERVER ? CUBEID_PICOD_ROUTER_PATH : "");
		allow[0] = def;
		tc.allow = allow;
		tc.n_allow = 1;
	}
	if ((rc = cubeid_tls_new(&tc, &a->tls)) != CUBEID_OK)
		return rc;
	return cfg->role == CUBEID_PICOD_SERVER ? cubeid_tls_server_ctx(a->tls, &a->ctx)
	                                        : cubeid_tls_client_ctx(a->tls, &a->ctx);
}

static int
auth_jwt_server(cubeid_picod_auth *a, const struct cubeid_picod_auth_config *cfg)
{
	const char *pem = cfg->public_key_pem;
	int rc;

	if ((rc = cubeid_picod_verifier_new(&cfg->verify, &a->v)) != CUBEID_OK)
		return rc;
	if (cfg->jwks != NULL)
		return cubeid_picod_verifier_set_jwks(a->v, cfg->jwks, strlen(cfg->jwks));
	if (pem == NULL)
		pem = getenv(CUBEID_PICOD_ENV_PUBLIC_KEY);
	if (pem == NULL || pem[0] == '\0') {
		cubeid_error("--picod-auth-mode jwt needs the key: %s or a JWKS",
		             CUBEID_PICOD_ENV_PUBLIC_KEY);
		return CUBEID_ERR_CONFIG;
	}
	if ((rc = cubeid_picod_verifier_set_pem(a->v, pem, strlen(pem))) != CUBEID_OK)
		cubeid_error("%s: not a usable PKIX public key PEM: %s",
		             CUBEID_PICOD_ENV_PUBLIC_KEY, cubeid_strerror(rc));
	return rc;
}

int
cubeid_picod_auth_new(const struct cubeid_picod_auth_config *cfg, cubeid_picod_auth **out)
{
	cubeid_picod_auth *a;
	int rc;

	if (out == NULL)
		return CUBEID_ERR_INVALID_ARG;
	*out = NULL;
	if (cfg == NULL || (cfg->role != CUBEID_PICOD_CLIENT && cfg->role != CUBEID_PICOD_SERVER) ||
	    (cfg->mode != CUBEID_PICOD_AUTH_MTLS && cfg->mode != CUBEID_PICOD_AUTH_JWT))
		return CUBEID_ERR_INVALID_ARG;
	if ((a = calloc(1, sizeof(*a))) == NULL)
		return CUBEID_ERR_NOMEM;
	a->mode = cfg->mode;
	a->role = cfg->role;
	if (cfg->mode == CUBEID_PICOD_AUTH_MTLS)
		rc = auth_mtls(a, cfg);
	else if (cfg->role == CUBEID_PICOD_SERVER)
		rc = auth_jwt_server(a, cfg);
	else
		rc = (cfg->socket != NULL && (a->socket = strdup(cfg->socket)) == NULL)
		             ? CUBEID_ERR_NOMEM
		             : CUBEID_OK;
	if (rc != CUBEID_OK) {
		cubeid_picod_auth_free(a);
		return rc;
	}
	*out = a;
	return CUBEID_OK;
}

cubeid_picod_auth_mode
cubeid_picod_auth_mode_of(const cubeid_picod_auth *a)
{
	return a->mode;
}

SSL_CTX *
cubeid_picod_auth_ssl_ctx(cubeid_picod_auth *a)
{
	return a != NULL ? a->ctx : NULL;
}

int
cubeid_picod_auth_authorization(cubeid_picod_auth *a, const struct cubeid_picod_token_req *r,
                                char **out)
{
	struct cubeid_wl_opts o = {0};
	struct cubeid_wl_status st;
	struct cubeid_picod_token *t = NULL;
	int rc;

	if (out == NULL)
		return CUBEID_ERR_INVALID_ARG;
	*out = NULL;
	if (a == NULL || a->role != CUBEID_PICOD_CLIENT)
		return CUBEID_ERR_INVALID_ARG;
	if (a->mode == CUBEID_PICOD_AUTH_MTLS)
		return CUBEID_OK;
	o.socket = a->socket;
	if ((rc = cubeid_picod_fetch_token(&o, r, &t, &st)) != CUBEID_OK) {
		cubeid_warn("PicoD token from the agent: %s%s%s", cubeid_strerror(rc),
		            st.message[0] != '\0' ? ": " : "", st.message);
		return rc;
	}
	if (asprintf(out, "Bearer %s", t->token) < 0) {
		*out = NULL;
		rc = CUBEID_ERR_NOMEM;
	}
	cubeid_picod_token_free(t);
	return rc;
}

/* ---- connections ------------------------------------------------------ */

static int
conn_new(cubeid_picod_auth *a, int fd, cubeid_picod_conn **out)
{
	cubeid_picod_conn *c;

	if ((c = calloc(1, sizeof(*c))) == NULL)
		return CUBEID_ERR_NOMEM;
	c->a = a;
	c->fd = fd;
	*out = c;
	return CUBEID_OK;
}

void
cubeid_picod_conn_free(cubeid_picod_conn *c)
{
	if (c == NULL)
		return;
	if (c->ssl != NULL) {
		(void)SSL_shutdown(c->ssl);
		SSL_free(c->ssl);
	}
	free(c);
}

/* Keep the header of the first record the server sent (a TLS record, or
 * "HTTP/" from a server that does not speak TLS). */
static void
msg_cb(int write_p, int version, int content_type, const void *buf, size_t len, SSL *ssl, void *arg)
{
	cubeid_picod_conn *c = arg;

	(void)version;
	(void)ssl;
	if (write_p || content_type != SSL3_RT_HEADER || c->n_first > 0 || len == 0)
		return;
	c->n_first = len < sizeof(c->first) ? len : sizeof(c->first);
	memcpy(c->first, buf, c->n_first);
}

int
cubeid_picod_conn_client(cubeid_picod_auth *a, int fd, cubeid_picod_conn **out)
{
	cubeid_picod_conn *c = NULL;
	const char *why = NULL;
	int rc, ret;

	if (out == NULL)
		return CUBEID_ERR_INVALID_ARG;
	*out = NULL;
	if (a == NULL || fd < 0 || a->role != CUBEID_PICOD_CLIENT)
		return CUBEID_ERR_INVALID_ARG;
	if ((rc = conn_new(a, fd, &c)) != CUBEID_OK)
		return rc;
	if (a->mode == CUBEID_PICOD_AUTH_MTLS) {
		if ((c->ssl = SSL_new(a->ctx)) == NULL || SSL_set_fd(c->ssl, fd) != 1) {
			cubeid_picod_conn_free(c);
			return CUBEID_ERR_TLS;
		}
		SSL_set_msg_callback(c->ssl, msg_cb);
		SSL_set_msg_callback_arg(c->ssl, c);
		if ((ret = SSL_connect(c->ssl)) != 1) {
			if (c->n_first >= 5 && memcmp(c->first, "HTTP/", 5) == 0) {
				cubeid_error(
				        "PicoD answered the TLS handshake in plain HTTP: it is "
				        "in --picod-auth-mode jwt, this Router in mtls");
				rc = CUBEID_ERR_AUTH_MODE;
			} else {
				rc = cubeid_tls_handshake_error(c->ssl, ret, &why);
			}
			ERR_clear_error();
			SSL_free(c->ssl);
			c->ssl = NULL;
			cubeid_picod_conn_free(c);
			return rc != CUBEID_OK ? rc : CUBEID_ERR_TLS;
		}
		SSL_set_msg_callback(c->ssl, NULL);
	}
	*out = c;
	return CUBEID_OK;
}

/* Answer a client in the other mode in plain HTTP, after reading what it
 * sent so far (so that closing does not reset the connection under the
 * answer), then let it go. */
static void
refuse_mode(int fd, cubeid_picod_auth_mode mode)
{
	char body[160], resp[512], junk[4096];
	struct pollfd p = {.fd = fd, .events = POLLIN};
	int n, m;

	(void)recv(fd, junk, sizeof(junk), MSG_DONTWAIT);
	n = snprintf(body, sizeof(body), "this PicoD uses --picod-auth-mode %s%s\n",
	             cubeid_picod_auth_mode_name(mode),
	             mode == CUBEID_PICOD_AUTH_MTLS
	                     ? ": connect with TLS and an SVID"
	                     : ": send Authorization: Bearer over plain TCP");
	m = snprintf(resp, sizeof(resp),
	             "HTTP/1.1 400 Bad Request\r\n" CUBEID_PICOD_MODE_HEADER ": %s\r\n"
	             "Content-Type: text/plain\r\nContent-Length: %d\r\n"
	             "Connection: close\r\n\r\n%s",
	             cubeid_picod_auth_mode_name(mode), n, body);
	(void)send(fd, resp, (size_t)m, MSG_NOSIGNAL);
	(void)shutdown(fd, SHUT_WR);
	while (poll(&p, 1, DRAIN_MS) == 1 && recv(fd, junk, sizeof(junk), 0) > 0)
		;
}

int
cubeid_picod_conn_server(cubeid_picod_auth *a, int fd, cubeid_picod_conn **out)
{
	cubeid_picod_conn *c = NULL;
	const char *why = NULL;
	uint8_t b;
	ssize_t n;
	bool tls;
	int rc, ret;

	if (out == NULL)
		return CUBEID_ERR_INVALID_ARG;
	*out = NULL;
	if (a == NULL || fd < 0 || a->role != CUBEID_PICOD_SERVER)
		return CUBEID_ERR_INVALID_ARG;
	do
		n = recv(fd, &b, 1, MSG_PEEK);
	while (n < 0 && errno == EINTR);
	if (n <= 0)
		return n == 0 ? CUBEID_ERR_PROTOCOL : CUBEID_ERR_IO;
	tls = b == 0x16; /* a TLS handshake record */
	if (tls != (a->mode == CUBEID_PICOD_AUTH_MTLS)) {
		cubeid_warn("a client in --picod-auth-mode %s reached this PicoD in %s mode",
		            tls ? "mtls" : "jwt", cubeid_picod_auth_mode_name(a->mode));
		refuse_mode(fd, a->mode);
		return CUBEID_ERR_AUTH_MODE;
	}
	if ((rc = conn_new(a, fd, &c)) != CUBEID_OK)
		return rc;
	if (tls) {
		if ((c->ssl = SSL_new(a->ctx)) == NULL || SSL_set_fd(c->ssl, fd) != 1) {
			cubeid_picod_conn_free(c);
			return CUBEID_ERR_TLS;
		}
		if ((ret = SSL_accept(c->ssl)) != 1) {
			rc = cubeid_tls_handshake_error(c->ssl, ret, &why);
			ERR_clear_error();
			SSL_free(c->ssl);
			c->ssl = NULL;
			cubeid_picod_conn_free(c);
			return rc != CUBEID_OK ? rc : CUBEID_ERR_TLS;
		}
	}
	*out = c;
	return CUBEID_OK;
}

long
cubeid_picod_conn_read(cubeid_picod_conn *c, void *buf, size_t len)
{
	ssize_t n;
	int r, e;

	if (c == NULL || buf == NULL)
		return CUBEID_ERR_INVALID_ARG;
	if (c->ssl != NULL) {
		if ((r = SSL_read(c->ssl, buf, len > INT32_MAX ? INT32_MAX : (int)len)) > 0)
			return r;
		e = SSL_get_error(c->ssl, r);
		if (e == SSL_ERROR_ZERO_RETURN)
			return 0;
		/* TLS 1.3: a server that refuses our certificate says so now */
		r = cubeid_tls_handshake_error(c->ssl, r, NULL);
		ERR_clear_error();
		return r != CUBEID_OK ? r : CUBEID_ERR_TLS;
	}
	do
		n = recv(c->fd, buf, len, 0);
	while (n < 0 && errno == EINTR);
	return n >= 0 ? (long)n : CUBEID_ERR_IO;
}

int
cubeid_picod_conn_write(cubeid_picod_conn *c, const void *buf, size_t len)
{
	const uint8_t *p = buf;
	ssize_t n;
	int r;

	if (c == NULL || (buf == NULL && len > 0))
		return CUBEID_ERR_INVALID_ARG;
	while (len > 0) {
		if (c->ssl != NULL) {
			r = SSL_write(c->ssl, p, len > INT32_MAX ? INT32_MAX : (int)len);
			if (r <= 0) {
				ERR_clear_error();
				return CUBEID_ERR_TLS;
			}
			n = r;
		} else {
			n = send(c->fd, p, len, MSG_NOSIGNAL);
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0)
				return CUBEID_ERR_IO;
		}
		p += n;
		len -= (size_t)n;
	}
	return CUBEID_OK;
}

/* ---- HTTP heads ------------------------------------------------------- */

int
cubeid_picod_http_header(const char *head, size_t len, const char *name, char **out)
{
	const char *p = head, *end = head + len, *eol, *colon, *v, *ve;
	size_t nlen;
	bool first = true;
	int rc = CUBEID_ERR_PARSE;

	if (out == NULL)
		return CUBEID_ERR_INVALID_ARG;
	*out = NULL;
	if (head == NULL || name == NULL || (nlen = strlen(name)) == 0)
		return CUBEID_ERR_INVALID_ARG;
	if (len > CUBEID_PICOD_HEAD_MAX)
		return CUBEID_ERR_TOO_LARGE;
	if (memchr(head, '\0', len) != NULL)
		return CUBEID_ERR_PARSE;
	while (p < end) {
		if ((eol = memmem(p, (size_t)(end - p), "\r\n", 2)) == NULL)
			eol = end;
		if (eol == p) /* the empty line ends the head */
			break;
		if (first) {
			/* "HTTP/1.x NNN ..." or "METHOD TARGET HTTP/1.x" */
			if (!((eol - p >= 8 && memcmp(p, "HTTP/1.", 7) == 0) ||
			      (eol - p >= 12 && memcmp(eol - 9, " HTTP/1.", 8) == 0)))
				goto fail;
			first = false;
		} else {
			if (*p == ' ' || *p == '\t') /* obsolete line folding */
				goto fail;
			if ((colon = memchr(p, ':', (size_t)(eol - p))) == NULL)
				goto fail;
			if ((size_t)(colon - p) == nlen && strncasecmp(p, name, nlen) == 0) {
				for (v = colon + 1; v < eol && (*v == ' ' || *v == '\t'); v++)
					;
				for (ve = eol; ve > v && (ve[-1] == ' ' || ve[-1] == '\t'); ve--)
					;
				if (*out != NULL) /* a repeated header is ambiguous */
					goto fail;
				if ((*out = strndup(v, (size_t)(ve - v))) == NULL) {
					rc = CUBEID_ERR_NOMEM;
					goto fail;
				}
			}
		}
		p = eol + 2;
	}
	if (first)
		goto fail;
	return *out != NULL ? CUBEID_OK : CUBEID_ERR_NOT_FOUND;
fail:
	free(*out);
	*out = NULL;
	return rc;
}

int
cubeid_picod_conn_read_head(cubeid_picod_conn *c, char *buf, size_t size, size_t *head_len,
                            size_t *len, char **authorization)
{
	const char *e;
	size_t have = 0, max;
	long n;
	int rc;

	*authorization = NULL;
	*head_len = *len = 0;
	if (c == NULL || buf == NULL || size < 4)
		return CUBEID_ERR_INVALID_ARG;
	max = size < CUBEID_PICOD_HEAD_MAX ? size : CUBEID_PICOD_HEAD_MAX;
	for (;;) {
		if (have >= max)
			return CUBEID_ERR_TOO_LARGE;
		if ((n = cubeid_picod_conn_read(c, buf + have, max - have)) < 0)
			return (int)n;
		if (n == 0)
			return CUBEID_ERR_PROTOCOL; /* closed before the head ended */
		have += (size_t)n;
		if ((e = memmem(buf, have, "\r\n\r\n", 4)) != NULL)
			break;
	}
	*head_len = (size_t)(e - buf) + 4;
	*len = have;
	rc = cubeid_picod_http_header(buf, *head_len - 2, "Authorization", authorization);
	return rc == CUBEID_ERR_NOT_FOUND ? CUBEID_OK : rc;
}

int
cubeid_picod_conn_authorize(cubeid_picod_conn *c, const char *authorization,
                            struct cubeid_picod_verified **claims, char **peer)
{
	cubeid_spiffe_id *id = NULL;
	int rc;

	if (claims != NULL)
		*claims = NULL;
	if (peer != NULL)
		*peer = NULL;
	if (c == NULL || c->a->role != CUBEID_PICOD_SERVER)
		return CUBEID_ERR_INVALID_ARG;
	if (c->a->mode == CUBEID_PICOD_AUTH_JWT)
		return cubeid_picod_verify_header(c->a->v, authorization, 0, claims);
	if (c->ssl == NULL)
		return CUBEID_ERR_AUTH_MODE;
	if ((rc = cubeid_tls_peer_id(c->ssl, &id)) != CUBEID_OK)
		return rc;
	if (peer != NULL && (*peer = strdup(cubeid_spiffe_id_string(id))) == NULL)
		rc = CUBEID_ERR_NOMEM;
	cubeid_spiffe_id_free(id);
	return rc;
}

int
cubeid_picod_conn_check_reply(cubeid_picod_conn *c, const char *buf, size_t len)
{
	char *mode = NULL;
	int rc = CUBEID_OK;

	if (c == NULL || buf == NULL)
		return CUBEID_ERR_INVALID_ARG;
	/* a TLS record (alert, handshake) where a plain HTTP answer was due */
	if (c->ssl == NULL && len >= 2 && (buf[0] == 0x15 || buf[0] == 0x16) && buf[1] == 0x03) {
		cubeid_error("PicoD answered in TLS: it is in --picod-auth-mode mtls, this Router "
		             "in jwt");
		return CUBEID_ERR_AUTH_MODE;
	}
	if (cubeid_picod_http_header(buf, len, CUBEID_PICOD_MODE_HEADER, &mode) == CUBEID_OK &&
	    strcmp(mode, cubeid_picod_auth_mode_name(c->a->mode)) != 0) {
		cubeid_error("PicoD is in --picod-auth-mode %s, this Router in %s", mode,
		             cubeid_picod_auth_mode_name(c->a->mode));
		rc = CUBEID_ERR_AUTH_MODE;
	}
	free(mode);
	return rc;
}
