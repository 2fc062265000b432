/*
 * SPIFFE Workload API client (libcubeid): gRPC over HTTP/2 on a Unix socket
 * (or a TCP one), blocking; a new connection per call, or one connection
 * reused across calls (cubeid_wl_conn_open(), as go-spiffe's client does).
 * Workloads and the cubeid CLI use it to talk to cubeid-agent (or to any
 * SPIFFE agent, e.g. SPIRE's).
 *
 * The socket: opts->socket as "unix:///path", "unix:/path" or "/path", or
 * "tcp://IP:PORT" (an IPv4 address or a bracketed IPv6 one, and a port:
 * the SPIFFE Workload Endpoint spec, section 4, allows no host name, path,
 * query, fragment or userinfo, and such a URI is CUBEID_ERR_INVALID_ARG
 * with the reason in st); when opts or opts->socket is NULL,
 * $SPIFFE_ENDPOINT_SOCKET.  cubeid-agent itself serves Unix sockets only:
 * tcp is for other servers, or a bridge to the agent's socket.
 *
 * Every call returns 0 or a negative CUBEID_ERR_* code.  A gRPC status from
 * the agent maps to: INVALID_ARGUMENT -> CUBEID_ERR_INVALID_ARG,
 * NOT_FOUND -> CUBEID_ERR_NOT_FOUND, PERMISSION_DENIED ->
 * CUBEID_ERR_PERMISSION, RESOURCE_EXHAUSTED -> CUBEID_ERR_TOO_LARGE,
 * UNIMPLEMENTED -> CUBEID_ERR_UNSUPPORTED, UNAVAILABLE (and a socket nobody
 * listens on) -> CUBEID_ERR_UNAVAILABLE, DEADLINE_EXCEEDED (and our own
 * timeout) -> CUBEID_ERR_TIMEOUT, any other -> CUBEID_ERR_RPC; a peer that
 * breaks HTTP/2 or gRPC framing -> CUBEID_ERR_PROTOCOL.  When st is given it
 * receives the gRPC status and the agent's grpc-message text.
 *
 * Results are allocated by the call; free them with the matching *_free()
 * (NULL is a no-op).  Private keys are wiped when freed.
 */
#ifndef CUBEID_WORKLOADAPI_H
#define CUBEID_WORKLOADAPI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct cubeid_wl_conn cubeid_wl_conn;

struct cubeid_wl_opts {
	const char *socket;      /* NULL: $SPIFFE_ENDPOINT_SOCKET */
	long timeout_ms;         /* whole call; 0 = 30 s (watch: 0 = no limit) */
	bool no_security_header; /* omit "workload.spiffe.io: true" (tests) */
	cubeid_wl_conn *conn;    /* NULL: a new connection for each call */
};

struct cubeid_wl_status {
	int code;          /* gRPC status; -1 when the call never got one */
	char message[512]; /* grpc-message, decoded, or our own reason */
};

/*
 * A connection kept open across calls.  Open it with o (its socket), put it
 * in opts->conn, and every call with those opts goes over it, one at a
 * time: a connection is not for two threads at once.  A connection the
 * agent closed (idle timeout, restart) or that broke is reopened by the
 * next call.  *out is the caller's; close it with cubeid_wl_conn_close()
 * (NULL is a no-op).
 */
int cubeid_wl_conn_open(const struct cubeid_wl_opts *o, cubeid_wl_conn **out,
                        struct cubeid_wl_status *st);
void cubeid_wl_conn_close(cubeid_wl_conn *c);

struct cubeid_wl_x509svid {
	char *spiffe_id;
	uint8_t *cert_chain; /* DER certificates, leaf first, concatenated */
	size_t cert_chain_len;
	uint8_t *key; /* PKCS#8 DER, unencrypted (wiped on free) */
	size_t key_len;
	uint8_t *bundle; /* DER CA certificates of the SVID's trust domain */
	size_t bundle_len;
	char *hint; /* "" when unset */
};

/* A trust domain's bundle: DER certificates (X.509) or JWKS JSON (JWT). */
struct cubeid_wl_bundle {
	char *trust_domain; /* the map key: the trust domain's SPIFFE ID */
	uint8_t *data;
	size_t len;
};

struct cubeid_wl_x509 {
	struct cubeid_wl_x509svid *svids;
	size_t n_svids;
	struct cubeid_wl_bundle *federated; /* federated_bundles */
	size_t n_federated;
};

struct cubeid_wl_bundles {
	struct cubeid_wl_bundle *v;
	size_t n;
};

struct cubeid_wl_jwtsvid {
	char *spiffe_id;
	char *token;
	char *hint;
};

struct cubeid_wl_jwt {
	struct cubeid_wl_jwtsvid *svids;
	size_t n;
};

struct cubeid_wl_validated {
	char *spiffe_id;
	char *claims_json; /* the claims Struct as a JSON object */
};

/* FetchX509SVID: the first message of the stream.  *out is caller-owned. */
int cubeid_wl_fetch_x509(const struct cubeid_wl_opts *o, struct cubeid_wl_x509 **out,
                         struct cubeid_wl_status *st);
void cubeid_wl_x509_free(struct cubeid_wl_x509 *x);

/* Called for every FetchX509SVID message (x is borrowed: copy what you
 * keep).  Return 0 to go on, anything else to stop the watch. */
typedef int (*cubeid_wl_x509_fn)(const struct cubeid_wl_x509 *x, void *arg);
/* Watch FetchX509SVID until fn returns non-zero (returns 0), *stop becomes
 * non-zero (returns 0; checked at least every 100 ms; stop may be NULL),
 * the timeout passes (CUBEID_ERR_TIMEOUT) or the stream fails. */
int cubeid_wl_watch_x509(const struct cubeid_wl_opts *o, cubeid_wl_x509_fn fn, void *arg,
                         const volatile int *stop, struct cubeid_wl_status *st);

/* FetchX509Bundles / FetchJWTBundles: the first message. */
int cubeid_wl_fetch_x509_bundles(const struct cubeid_wl_opts *o, struct cubeid_wl_bundles **out,
                                 struct cubeid_wl_status *st);
/* Watch FetchJWTBundles: fn(b, arg) for every message, b borrowed for the
 * call; it ends as cubeid_wl_watch_x509() does. */
typedef int (*cubeid_wl_bundles_fn)(const struct cubeid_wl_bundles *b, void *arg);
int cubeid_wl_watch_jwt_bundles(const struct cubeid_wl_opts *o, cubeid_wl_bundles_fn fn, void *arg,
                                const volatile int *stop, struct cubeid_wl_status *st);
int cubeid_wl_fetch_jwt_bundles(const struct cubeid_wl_opts *o, struct cubeid_wl_bundles **out,
                                struct cubeid_wl_status *st);
void cubeid_wl_bundles_free(struct cubeid_wl_bundles *b);

/* FetchJWTSVID for n_aud audiences (1..64), for spiffe_id or (NULL) every
 * identity of the caller. */
int cubeid_wl_fetch_jwt(const struct cubeid_wl_opts *o, const char *const *aud, size_t n_aud,
                        const char *spiffe_id, struct cubeid_wl_jwt **out,
                        struct cubeid_wl_status *st);
void cubeid_wl_jwt_free(struct cubeid_wl_jwt *j);

/* ValidateJWTSVID: the agent checks token for audience. */
int cubeid_wl_validate_jwt(const struct cubeid_wl_opts *o, const char *token, const char *aud,
                           struct cubeid_wl_validated **out, struct cubeid_wl_status *st);
void cubeid_wl_validated_free(struct cubeid_wl_validated *v);

/* The lower layer, for tools and tests: call method path ("/Service/M")
 * with a serialized request; fn gets each response message (borrowed) and
 * returns 0 to go on, 1 to stop (the stream is cancelled; the call returns
 * 0) or a negative code to fail with.  stop/timeout as for the watch. */
typedef int (*cubeid_wl_msg_fn)(const uint8_t *msg, size_t len, void *arg);
int cubeid_wl_call(const struct cubeid_wl_opts *o, const char *path, const uint8_t *req,
                   size_t req_len, cubeid_wl_msg_fn fn, void *arg, const volatile int *stop,
                   struct cubeid_wl_status *st);

#ifdef __cplusplus
}
#endif
#endif
