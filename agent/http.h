/*
 * The agent's optional HTTP server (libmicrohttpd): /healthz, /readyz,
 * /metrics (agent/metrics.c) and whatever other parts register (a JWKS or
 * SPIFFE bundle endpoint).  Off unless http_address (config) or
 * --http-address is set; meant for loopback or a node-local address.
 *
 * Threading: libmicrohttpd runs in "external event loop" mode on its own
 * epoll fd, which the agent's loop watches, so every handler runs on the
 * loop thread and may read agent state as any loop callback does, without
 * locks (see agent/daemon.h).  A handler must not block: no token work.
 *
 * Limits: GET and HEAD only (405 otherwise), no request body (413), at most
 * HTTP_MAX_CONNECTIONS connections, HTTP_MEMORY_LIMIT bytes of request line
 * and headers per connection, idle connections closed after
 * HTTP_TIMEOUT_S seconds.
 *
 * Probes first: a liveness probe must be answered while others hold idle
 * connections, even from the probe's own address.  So there is no
 * per-address cap that a neighbour could fill; instead, once
 * HTTP_EVICT_AT connections are open, each new one evicts the connection
 * that has been idle longest (connected or answered earliest and silent
 * since).  A probe connects and asks at once, so it is never the oldest.
 */
#ifndef CUBEID_AGENT_HTTP_H
#define CUBEID_AGENT_HTTP_H

#include "agent/agent.h"

#include <stddef.h>
#include <sys/socket.h>

#define HTTP_MAX_CONNECTIONS 64
#define HTTP_EVICT_AT        (HTTP_MAX_CONNECTIONS - 8)
/* libmicrohttpd's own cap, above ours: one run may accept a batch before
 * the evicted connections are closed, and MHD stops accepting at its cap. */
#define HTTP_MHD_LIMIT    (2 * HTTP_MAX_CONNECTIONS)
#define HTTP_MEMORY_LIMIT (32u * 1024) /* request line + headers, per connection */
#define HTTP_TIMEOUT_S    5
#define HTTP_MAX_ROUTES   32
#define HTTP_PATH_MAX     256
#define HTTP_BODY_MAX     (16u * 1024 * 1024) /* a handler's reply */

typedef struct http_server http_server;

/* What a handler answers.  status defaults to 200 and content_type to
 * text/plain; body is malloc'ed and taken by the server (NULL: empty). */
struct http_reply {
	int status;
	const char *content_type;  /* static string */
	const char *cache_control; /* static string; NULL: "no-store" */
	char *body;
	size_t len;
};

/* Runs on the loop thread for a GET or HEAD of its path.  Returns 0 with
 * *r filled, or a negative CUBEID_ERR_* code (then 500, and *r is freed). */
typedef int (*http_handler)(void *ctx, const char *path, struct http_reply *r);

/* Listen on address and serve from loop l. */
int http_server_new(cubeid_loop *l, const char *address, http_server **out);
void http_server_free(http_server *s);
/* Serve path (exact match, query ignored) with fn.  Registering a path
 * again replaces its handler.  CUBEID_ERR_TOO_LARGE past HTTP_MAX_ROUTES. */
int http_server_route(http_server *s, const char *path, http_handler fn, void *ctx);
/* The address actually bound ("127.0.0.1:40123"; borrowed). */
const char *http_server_address(const http_server *s);
/* Requests answered since start (any status). */
unsigned long http_server_requests(const http_server *s);

/* Helpers for handlers: a body from a format (CUBEID_ERR_NOMEM). */
int http_reply_printf(struct http_reply *r, int status, const char *content_type, const char *fmt,
                      ...) __attribute__((format(printf, 4, 5)));

#endif
