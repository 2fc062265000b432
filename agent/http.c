/*
 * The agent's HTTP server on libmicrohttpd, driven by the agent's own loop:
 * MHD_USE_EPOLL without an internal thread gives one epoll fd that the loop
 * watches; MHD_run() then does the I/O and calls the handlers on the loop
 * thread, and a loop timer follows MHD_get_timeout() for idle connections.
 * See agent/http.h for the contract and the limits.
 */
#include "config.h"

#include "agent/http.h"

#include <cubeid/os.h>

#include <cubeid/log.h>

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include <microhttpd.h>

struct route {
	char *path;
	http_handler fn;
	void *ctx;
};

/* An open connection, for eviction: its socket and when it last started
 * or finished a request. */
struct http_conn {
	struct MHD_Connection *c;
	int fd;
	uint64_t last_ms;
};

struct http_server {
	cubeid_loop *loop;
	struct http_conn conns[HTTP_MAX_CONNECTIONS];
	size_t n_conns;
	unsigned long evicted;
	bool kick; /* run MHD again at once (see http_drive) */
	struct MHD_Daemon *d;
	int epfd;
	long timer;
	struct route routes[HTTP_MAX_ROUTES];
	size_t n_routes;
	char address[INET6_ADDRSTRLEN + 16];
	unsigned long requests;
};

/* ------------------------------------------------------------ replies */

int
http_reply_printf(struct http_reply *r, int status, const char *content_type, const char *fmt, ...)
{
	va_list ap;
	char *s = NULL;
	int n;

	va_start(ap, fmt);
	n = vasprintf(&s, fmt, ap);
	va_end(ap);
	if (n < 0)
		return CUBEID_ERR_NOMEM;
	free(r->body);
	r->body = s;
	r->len = (size_t)n;
	r->status = status;
	r->content_type = content_type;
	return CUBEID_OK;
}

static enum MHD_Result
send_reply(struct MHD_Connection *conn, struct http_reply *r, const char *allow)
{
	struct MHD_Response *resp;
	enum MHD_Result ret;

	if (r->body == NULL)
		resp = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
	else
		resp = MHD_create_response_from_buffer(r->len, r->body, MHD_RESPMEM_MUST_FREE);
	if (resp == NULL) {
		free(r->body);
		r->body = NULL;
		return MHD_NO;
	}
	r->body = NULL; /* the response owns it now */
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE,
	                        r->content_type != NULL ? r->content_type
	                                                : "text/plain; charset=utf-8");
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL,
	                        r->cache_control != NULL ? r->cache_control : "no-store");
	MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
	if (allow != NULL)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, allow);
	ret = MHD_queue_response(conn, (unsigned)(r->status != 0 ? r->status : 200), resp);
	MHD_destroy_response(resp);
	return ret;
}

static enum MHD_Result
send_text(struct MHD_Connection *conn, int status, const char *text, const char *allow)
{
	struct http_reply r = {0};

	if (http_reply_printf(&r, status, NULL, "%s\n", text) != CUBEID_OK)
		return MHD_NO;
	return send_reply(conn, &r, allow);
}

static bool
has_body(struct MHD_Connection *conn)
{
	const char *cl =
	        MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
	const char *te = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
	                                             MHD_HTTP_HEADER_TRANSFER_ENCODING);

	return te != NULL || (cl != NULL && strspn(cl, "0") != strlen(cl));
}

static uint64_t
mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static struct http_conn *
conn_find(http_server *s, struct MHD_Connection *c)
{
	size_t i;

	for (i = 0; i < s->n_conns; i++)
		if (s->conns[i].c == c)
			return &s->conns[i];
	return NULL;
}

/* Make room for a new connection: the longest-idle one is shut down (MHD
 * then sees EOF and closes it on its next run). */
static void
conn_evict_one(http_server *s)
{
	struct http_conn *old = NULL;
	size_t i;

	for (i = 0; i < s->n_conns; i++)
		if (s->conns[i].fd >= 0 && (old == NULL || s->conns[i].last_ms < old->last_ms))
			old = &s->conns[i];
	if (old == NULL)
		return;
	if (s->evicted++ % 1000 == 0)
		cubeid_info("http: %u connections open: closing the longest idle (%lu so far)",
		            (unsigned)s->n_conns, s->evicted);
	(void)shutdown(old->fd, SHUT_RDWR);
	old->fd = -1; /* evicted once; MHD reports the close */
	s->kick = true;
}

static void
on_connection(void *cls, struct MHD_Connection *c, void **socket_context,
              enum MHD_ConnectionNotificationCode toe)
{
	http_server *s = cls;
	struct http_conn *hc;
	const union MHD_ConnectionInfo *ci;

	(void)socket_context;
	if (toe == MHD_CONNECTION_NOTIFY_CLOSED) {
		if ((hc = conn_find(s, c)) != NULL)
			*hc = s->conns[--s->n_conns];
		/* MHD takes new connections again (after it stopped at its
		 * limit) only at the start of its next run */
		s->kick = true;
		return;
	}
	if (toe != MHD_CONNECTION_NOTIFY_STARTED || s->n_conns >= HTTP_MAX_CONNECTIONS) {
		if (toe == MHD_CONNECTION_NOTIFY_STARTED) /* untracked: cannot be kept */
			(void)MHD_set_connection_option(c, MHD_CONNECTION_OPTION_TIMEOUT,
			                                (unsigned int)1);
		return;
	}
	if (s->n_conns >= HTTP_EVICT_AT)
		conn_evict_one(s);
	ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
	s->conns[s->n_conns++] = (struct http_conn){
	        .c = c, .fd = ci != NULL ? ci->connect_fd : -1, .last_ms = mono_ms()};
}

static enum MHD_Result
on_request(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
           const char *version, const char *upload_data, size_t *upload_data_size, void **con_cls)
{
	http_server *s = cls;
	struct http_reply r = {0};
	const struct route *rt = NULL;
	size_t i;
	int rc;

	(void)version;
	(void)upload_data;
	(void)con_cls;
	/* The first call comes once the headers are in: answer it, and any body
	 * the client sends after is refused with it (never buffered). */
	if (*upload_data_size != 0) {
		*upload_data_size = 0;
		return MHD_YES;
	}
	s->requests++;
	{
		struct http_conn *hc = conn_find(s, conn);

		if (hc != NULL)
			hc->last_ms = mono_ms();
	}
	if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 && strcmp(method, MHD_HTTP_METHOD_HEAD) != 0)
		return send_text(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "method not allowed",
		                 "GET, HEAD");
	if (has_body(conn))
		return send_text(conn, MHD_HTTP_CONTENT_TOO_LARGE, "no request body accepted here",
		                 NULL);
	for (i = 0; i < s->n_routes; i++)
		if (strcmp(s->routes[i].path, url) == 0) {
			rt = &s->routes[i];
			break;
		}
	if (rt == NULL)
		return send_text(conn, MHD_HTTP_NOT_FOUND, "not found", NULL);
	r.status = 200;
	rc = rt->fn(rt->ctx, url, &r);
	if (rc == CUBEID_OK && r.len > HTTP_BODY_MAX)
		rc = CUBEID_ERR_TOO_LARGE;
	if (rc != CUBEID_OK) {
		free(r.body);
		cubeid_warn("http: %s: %s", url, cubeid_strerror(rc));
		return send_text(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, "internal error", NULL);
	}
	return send_reply(conn, &r, NULL);
}

/* ------------------------------------------------------------ driving */

static void http_drive(http_server *s);

static long
on_timer(cubeid_loop *l, void *arg)
{
	http_server *s = arg;

	(void)l;
	s->timer = 0;
	http_drive(s);
	return -1;
}

/* Run MHD, then arm the timer it asks for (connection timeouts, or work
 * that is ready without the epoll fd becoming readable again). */
static void
http_drive(http_server *s)
{
	MHD_UNSIGNED_LONG_LONG ms = 0;

	(void)MHD_run(s->d);
	if (s->timer > 0) {
		loop_timer_del(s->loop, s->timer);
		s->timer = 0;
	}
	if (s->kick) {
		/* connections were evicted or closed in this run: MHD closes
		 * the evicted ones, and takes the connections waiting behind
		 * them, only when it runs again, and no socket event may come
		 * to say so.  A run that closes nothing ends the chain. */
		s->kick = false;
		s->timer = loop_timer_add(s->loop, 0, on_timer, s);
	} else if (MHD_get_timeout(s->d, &ms) == MHD_YES) {
		s->timer = loop_timer_add(s->loop, ms > 60000 ? 60000 : (long)ms, on_timer, s);
	}
}

static void
on_epoll(cubeid_loop *l, int fd, int events, void *arg)
{
	(void)l;
	(void)fd;
	(void)events;
	http_drive(arg);
}

/* libmicrohttpd passes its own format strings */
static void mhd_log(void *cls, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));

static void
mhd_log(void *cls, const char *fmt, va_list ap)
{
	(void)cls;
	cubeid_logv(CUBEID_LOG_INFO, fmt, ap);
}

int
http_server_new(cubeid_loop *l, const char *address, http_server **out)
{
	struct sockaddr_storage ss;
	socklen_t sl;
	const union MHD_DaemonInfo *info;
	const char *why;
	char host[INET6_ADDRSTRLEN];
	unsigned int flags = MHD_USE_EPOLL | MHD_USE_ERROR_LOG;
	http_server *s;
	int rc;

	*out = NULL;
	if ((rc = cubeid_addr_parse(address, &ss, &sl, &why)) != CUBEID_OK) {
		cubeid_error("http address '%s': %s", address != NULL ? address : "", why);
		return rc;
	}
	if ((s = calloc(1, sizeof(*s))) == NULL)
		return CUBEID_ERR_NOMEM;
	s->loop = l;
	s->epfd = -1;
	if (ss.ss_family == AF_INET6)
		flags |= MHD_USE_IPv6;
	s->d = MHD_start_daemon(flags, 0, NULL, NULL, on_request, s, MHD_OPTION_SOCK_ADDR,
	                        (struct sockaddr *)&ss, MHD_OPTION_CONNECTION_LIMIT,
	                        (unsigned int)HTTP_MHD_LIMIT, MHD_OPTION_NOTIFY_CONNECTION,
	                        on_connection, s, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
	                        (size_t)HTTP_MEMORY_LIMIT, MHD_OPTION_CONNECTION_TIMEOUT,
	                        (unsigned int)HTTP_TIMEOUT_S,
	                        /* no MHD_OPTION_LISTENING_ADDRESS_REUSE: its default is
	                         * SO_REUSEADDR without SO_REUSEPORT, so a restart binds
	                         * past the last run's TIME-WAIT, and a second live server
	                         * on the port is still refused; 0 would turn SO_REUSEADDR
	                         * off too */
	                        MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL, MHD_OPTION_END);
	if (s->d == NULL) {
		cubeid_error("http: cannot listen on %s (in use, or not an address of this host?)",
		             address);
		free(s);
		return CUBEID_ERR_IO;
	}
	if ((info = MHD_get_daemon_info(s->d, MHD_DAEMON_INFO_EPOLL_FD)) == NULL ||
	    (s->epfd = info->epoll_fd) < 0) {
		rc = CUBEID_ERR_INTERNAL;
		goto fail;
	}
	if ((info = MHD_get_daemon_info(s->d, MHD_DAEMON_INFO_BIND_PORT)) == NULL) {
		rc = CUBEID_ERR_INTERNAL;
		goto fail;
	}
	if (ss.ss_family == AF_INET6) {
		inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, host, sizeof(host));
		snprintf(s->address, sizeof(s->address), "[%s]:%u", host, info->port);
	} else {
		inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, host, sizeof(host));
		snprintf(s->address, sizeof(s->address), "%s:%u", host, info->port);
	}
	if ((rc = loop_watch(l, s->epfd, LOOP_READABLE, on_epoll, s)) != CUBEID_OK)
		goto fail;
	http_drive(s);
	*out = s;
	return CUBEID_OK;
fail:
	MHD_stop_daemon(s->d);
	free(s);
	return rc;
}

void
http_server_free(http_server *s)
{
	size_t i;

	if (s == NULL)
		return;
	if (s->timer > 0)
		loop_timer_del(s->loop, s->timer);
	if (s->epfd >= 0)
		loop_watch(s->loop, s->epfd, 0, NULL, NULL);
	MHD_stop_daemon(s->d);
	for (i = 0; i < s->n_routes; i++)
		free(s->routes[i].path);
	free(s);
}

int
http_server_route(http_server *s, const char *path, http_handler fn, void *ctx)
{
	size_t i;

	if (s == NULL || path == NULL || path[0] != '/' || strlen(path) > HTTP_PATH_MAX ||
	    fn == NULL)
		return CUBEID_ERR_INVALID_ARG;
	for (i = 0; i < s->n_routes; i++)
		if (strcmp(s->routes[i].path, path) == 0) {
			s->routes[i].fn = fn;
			s->routes[i].ctx = ctx;
			return CUBEID_OK;
		}
	if (s->n_routes == HTTP_MAX_ROUTES)
		return CUBEID_ERR_TOO_LARGE;
	if ((s->routes[s->n_routes].path = strdup(path)) == NULL)
		return CUBEID_ERR_NOMEM;
	s->routes[s->n_routes].fn = fn;
	s->routes[s->n_routes].ctx = ctx;
	s->n_routes++;
	return CUBEID_OK;
}

const char *
http_server_address(const http_server *s)
{
	return s != NULL ? s->address : NULL;
}

unsigned long
http_server_requests(const http_server *s)
{
	return s != NULL ? s->requests : 0;
}
