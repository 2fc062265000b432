/*
 * Router -> PicoD authentication modes (seed checkpoint 6), in libcubeid:
 * one call gives the client (the Router side) or the server (the PicoD
 * side) its auth from `--picod-auth-mode mtls|jwt`.
 *
 *   mtls (the default)  TLS 1.3 with SVIDs from the TLS loader
 *                       (<cubeid/tls.h>); the server accepts only the
 *                       Router's SPIFFE ID unless told otherwise.
 *   jwt                 plain TCP; the client sends "Authorization: Bearer"
 *                       with a token the node agent signs
 *                       (<cubeid/picod.h>); the server checks it with the
 *                       PicoD verifier (sandbox audience, session).
 *
 * A connection is opened on a connected socket with
 * cubeid_picod_conn_client() / cubeid_picod_conn_server(), then read and
 * written with cubeid_picod_conn_read() / _write() whatever the mode.
 * The two sides in different modes fail clearly, with
 * CUBEID_ERR_AUTH_MODE on both: an mtls server answers a plaintext request
 * with "HTTP/1.1 400" and "X-PicoD-Auth-Mode: mtls"; a jwt server answers
 * a TLS ClientHello the same way with "jwt"; the client recognises either
 * answer (and a TLS record where it expected HTTP).
 *
 * Conventions as everywhere: 0 or a negative CUBEID_ERR_* code, *out = NULL
 * on entry, *_free(NULL) is a no-op.
 */
#ifndef CUBEID_PICOD_AUTH_H
#define CUBEID_PICOD_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/ssl.h>

#include <cubeid/error.h>
#include <cubeid/picod.h>
#include <cubeid/tls.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
	CUBEID_PICOD_AUTH_MTLS = 0, /* the default */
	CUBEID_PICOD_AUTH_JWT = 1,
} cubeid_picod_auth_mode;

typedef enum {
	CUBEID_PICOD_CLIENT = 1, /* the Router */
	CUBEID_PICOD_SERVER = 2, /* PicoD */
} cubeid_picod_role;

#define CUBEID_PICOD_ROUTER_PATH "/ns/agentcube-system/sa/agentcube-router"
#define CUBEID_PICOD_MODE_HEADER "X-PicoD-Auth-Mode"
#define CUBEID_PICOD_HEAD_MAX    (16 * 1024) /* bytes of a request head */

/* "mtls" / "jwt" (exactly); CUBEID_ERR_CONFIG otherwise. */
int cubeid_picod_auth_mode_parse(const char *s, cubeid_picod_auth_mode *out);
const char *cubeid_picod_auth_mode_name(cubeid_picod_auth_mode m);
/* Take "--picod-auth-mode MODE" (or "=MODE") out of argv (*argc updated,
 * argv[*argc] NULL), leaving *mode as it was when the flag is absent.
 * CUBEID_ERR_CONFIG for a bad or repeated value (logged). */
int cubeid_picod_auth_flag_parse(int *argc, char **argv, cubeid_picod_auth_mode *mode);

struct cubeid_picod_auth_config {
	cubeid_picod_auth_mode mode;
	cubeid_picod_role role;
	/* mtls: the loader's configuration.  A server with no allow-list
	 * accepts only spiffe://<its trust domain>CUBEID_PICOD_ROUTER_PATH; a
	 * client with none accepts any ID of its trust domain. */
	const struct cubeid_tls_config *tls;
	/* jwt client: the agent's socket (NULL: $SPIFFE_ENDPOINT_SOCKET) */
	const char *socket;
	/* jwt server: this sandbox (aud and session checks, see
	 * <cubeid/picod.h>) and its key: a PEM (NULL: $PICOD_AUTH_PUBLIC_KEY)
	 * or a JWKS document (used instead of the PEM when not NULL). */
	struct cubeid_picod_verifier_opts verify;
	const char *public_key_pem;
	const char *jwks;
};

typedef struct cubeid_picod_auth cubeid_picod_auth;

/* The auth for cfg (copied).  mtls: loads the identity (cubeid_tls_new())
 * and makes the SSL_CTX; jwt server: parses the key. */
int cubeid_picod_auth_new(const struct cubeid_picod_auth_config *cfg, cubeid_picod_auth **out);
void cubeid_picod_auth_free(cubeid_picod_auth *a);
cubeid_picod_auth_mode cubeid_picod_auth_mode_of(const cubeid_picod_auth *a);
/* mtls: the SSL_CTX (borrowed); jwt: NULL. */
SSL_CTX *cubeid_picod_auth_ssl_ctx(cubeid_picod_auth *a);
/* jwt client: "Bearer <token>" for r, from the agent (which caches it).
 * mtls: *out NULL and CUBEID_OK (the TLS identity is the credential). */
int cubeid_picod_auth_authorization(cubeid_picod_auth *a, const struct cubeid_picod_token_req *r,
                                    char **out);

/* ---- connections ------------------------------------------------------ */

typedef struct cubeid_picod_conn cubeid_picod_conn;

/* The Router's end of connected socket fd (not closed by the conn).  mtls:
 * the TLS handshake (a server in jwt mode: CUBEID_ERR_AUTH_MODE; a refused
 * peer: the loader's codes).  jwt: nothing to do. */
int cubeid_picod_conn_client(cubeid_picod_auth *a, int fd, cubeid_picod_conn **out);
/* PicoD's end: looks at the first bytes; a client in the other mode is
 * answered (see above) and CUBEID_ERR_AUTH_MODE returned.  mtls: the
 * handshake, with the peer's SPIFFE ID authorized by the allow-list. */
int cubeid_picod_conn_server(cubeid_picod_auth *a, int fd, cubeid_picod_conn **out);
void cubeid_picod_conn_free(cubeid_picod_conn *c); /* SSL_shutdown in mtls mode */
/* Bytes read (0 at the end), or a negative code. */
long cubeid_picod_conn_read(cubeid_picod_conn *c, void *buf, size_t len);
/* All of buf, or a negative code. */
int cubeid_picod_conn_write(cubeid_picod_conn *c, const void *buf, size_t len);

/*
 * Server: read an HTTP/1.1 request head (up to CUBEID_PICOD_HEAD_MAX bytes,
 * CUBEID_ERR_TOO_LARGE beyond) into buf, and return its Authorization
 * value in *authorization (a copy, NULL when absent; caller frees).  Bytes
 * read past the head are left at buf + *head_len .. buf + *len.
 */
int cubeid_picod_conn_read_head(cubeid_picod_conn *c, char *buf, size_t size, size_t *head_len,
                                size_t *len, char **authorization);
/* The value of header name in a request or response head (a copy; caller
 * frees), CUBEID_ERR_NOT_FOUND when absent, CUBEID_ERR_PARSE for a head
 * that is not HTTP/1.x.  Exposed for the fuzzer. */
int cubeid_picod_http_header(const char *head, size_t len, const char *name, char **out);
/*
 * Server: authorize the request.  mtls: the peer's SPIFFE ID (already
 * checked in the handshake) goes to *peer.  jwt: authorization is checked
 * with the verifier and the claims go to *claims.  Both optional.
 */
int cubeid_picod_conn_authorize(cubeid_picod_conn *c, const char *authorization,
                                struct cubeid_picod_verified **claims, char **peer);
/* Client: classify a response head: CUBEID_ERR_AUTH_MODE when it is a TLS
 * record or says "X-PicoD-Auth-Mode" of another mode; CUBEID_OK else. */
int cubeid_picod_conn_check_reply(cubeid_picod_conn *c, const char *buf, size_t len);

#ifdef __cplusplus
}
#endif
#endif
