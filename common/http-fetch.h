/*
 * The one libcurl wrapper (common/http-fetch.c): one easy handle per
 * request, the protocols the caller names, no redirects, hard timeouts,
 * and a hard limit on the reply body, checked before anything past it is
 * buffered.  Used by the OIDC client (keycloak/), the Kubernetes store
 * (cluster/) and the kubelet attestor (agent/).  Not installed.
 */
#ifndef CUBEID_HTTP_FETCH_H
#define CUBEID_HTTP_FETCH_H

#include <stdbool.h>
#include <stddef.h>

struct http_req {
	const char *method; /* NULL: GET, or POST when body is set */
	const char *url;
	bool https_only;            /* else http and https */
	const char *const *headers; /* "Name: value" lines, NULL-terminated; may be NULL */
	const char *ca_file;        /* NULL: the system's trust store */
	const char *body;           /* NUL-terminated; NULL: none */
	size_t max;                 /* bytes of reply body at most */
	long timeout_ms;            /* connect and whole transfer */
	bool no_proxy;              /* ignore the proxy environment variables */
	const char *user_agent;     /* NULL: none */
	bool http1;                 /* HTTP/1.1 only (else HTTP/2 when TLS offers it) */
	/* Streaming (a Kubernetes watch): when on_data is set, the reply body
	 * goes to it as it arrives and is not kept (max does not apply; the
	 * reply's body is empty).  It returns false to end the transfer. */
	bool (*on_data)(const char *data, size_t len, void *arg);
	void *on_data_arg;
	/* Polled about once a second while the transfer runs (NULL: never);
	 * true ends it (http_fetch() then fails with CUBEID_ERR_HTTP). */
	bool (*stop)(void *arg);
};

struct http_reply {
	long status;
	char *body; /* NUL-terminated, never NULL on success (caller frees) */
	size_t len;
};

/* Perform q.  CUBEID_OK when an answer came, whatever its HTTP status;
 * CUBEID_ERR_TOO_LARGE if its body is over q->max; CUBEID_ERR_HTTP if the
 * transfer failed, with libcurl's reason in *why (static; optional);
 * CUBEID_ERR_NOMEM.  *r is cleared on entry and filled only on success. */
int http_fetch(const struct http_req *q, struct http_reply *r, const char **why);
void http_reply_clear(struct http_reply *r);

#endif
