/*
 * SPIFFE Workload API client, the transport (cubeid_wl_call): one nghttp2
 * client session on a Unix (or TCP) socket per call, driven by poll() with a
 * deadline.  The typed calls are in workloadapi.c; the API in
 * include/cubeid/workloadapi.h.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <nghttp2/nghttp2.h>

#include <cubeid/error.h>
#include <cubeid/workloadapi.h>

#include "common/grpc-frame.h"
#include "spiffe/workloadapi-internal.h"

#define WL_DEFAULT_TIMEOUT_MS 30000
#define WL_TICK_MS            100

/* One call's state; the connection's callbacks look at conn->cur. */
struct wl_call {
	int32_t sid;
	uint8_t *req; /* framed request */
	size_t req_len, req_off;
	struct grpc_deframer df;
	cubeid_wl_msg_fn fn;
	void *arg;
	int http_status;
	int grpc_status; /* -1 until seen */
	char grpc_message[512];
	uint32_t rst_code;
	bool ended, stopped;
	bool got_any; /* a frame of this stream arrived */
	int err;
};

struct cubeid_wl_conn {
	struct wl_endpoint ep;
	int fd;
	nghttp2_session *h2;
	bool goaway; /* the agent said it takes no new streams */
	uint8_t *wbuf;
	size_t wlen, woff;
	struct wl_call *cur;
};

static int64_t
mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void
set_status(struct cubeid_wl_status *st, int code, const char *msg, const char *arg)
{
	if (st == NULL)
		return;
	st->code = code;
	snprintf(st->message, sizeof(st->message), "%s%s", msg, arg ? arg : "");
}

/* ------------------------------------------------------------- socket */

/* The endpoint (its parsing and connect()) is in workloadapi-endpoint.c. */

/* ------------------------------------------------------------- nghttp2 */

static ssize_t
req_read_cb(nghttp2_session *h2, int32_t stream_id, uint8_t *buf, size_t length, uint32_t *flags,
            nghttp2_data_source *src, void *user)
{
	struct wl_call *c = src->ptr;
	size_t n = c->req_len - c->req_off;

	(void)h2;
	(void)stream_id;
	(void)user;
	if (n > length)
		n = length;
	memcpy(buf, c->req + c->req_off, n);
	c->req_off += n;
	if (c->req_off == c->req_len)
		*flags |= NGHTTP2_DATA_FLAG_EOF;
	return (ssize_t)n;
}

static bool
name_is(const uint8_t *n, size_t len, const char *s)
{
	return len == strlen(s) && memcmp(n, s, len) == 0;
}

/* The current call, if the frame belongs to it. */
static struct wl_call *
cur_call(void *user, int32_t stream_id)
{
	struct cubeid_wl_conn *conn = user;

	if (conn->cur == NULL || stream_id != conn->cur->sid)
		return NULL;
	conn->cur->got_any = true;
	return conn->cur;
}

static int
on_header_cb(nghttp2_session *h2, const nghttp2_frame *frame, const uint8_t *name, size_t nlen,
             const uint8_t *value, size_t vlen, uint8_t flags, void *user)
{
	struct wl_call *c = cur_call(user, frame->hd.stream_id);
	char v[16];

	if (c == NULL)
		return 0;
	if (name_is(name, nlen, ":status") || name_is(name, nlen, "grpc-status")) {
		int x = 0;
		size_t i;

		if (vlen == 0 || vlen >= sizeof(v))
			return 0;
		for (i = 0; i < vlen; i++) {
			if (value[i] < '0' || value[i] > '9')
				return 0;
			x = x * 10 + (value[i] - '0');
		}
		if (name[0] == ':')
			c->http_status = x;
		else
			c->grpc_status = x;
	} else if (name_is(name, nlen, "grpc-message")) {
		grpc_message_decode((const char *)value, vlen, c->grpc_message,
		                    sizeof(c->grpc_message));
	}
	return 0;
}

static int
on_data_cb(nghttp2_session *h2, uint8_t flags, int32_t stream_id, const uint8_t *data, size_t len,
           void *user)
{
	struct wl_call *c = cur_call(user, stream_id);

	while (c != NULL && len > 0 && !c->stopped && c->err == 0) {
		const uint8_t *msg;
		size_t used, mlen;
		int r = grpc_deframer_push(&c->df, data, len, &used, &msg, &mlen);

		data += used;
		len -= used;
		if (r < 0) {
			c->err = r == CUBEID_ERR_NOMEM ? r : CUBEID_ERR_PROTOCOL;
			snprintf(c->grpc_message, sizeof(c->grpc_message),
			         "bad response message: %s", cubeid_strerror(r));
		} else if (r == 1) {
			r = c->fn(msg, mlen, c->arg);
			if (r < 0)
				c->err = r;
			else if (r > 0)
				c->stopped = true;
		}
	}
	return 0;
}

static int
on_frame_recv_cb(nghttp2_session *h2, const nghttp2_frame *frame, void *user)
{
	struct cubeid_wl_conn *conn = user;
	struct wl_call *c;

	if (frame->hd.type == NGHTTP2_GOAWAY) {
		conn->goaway = true;
		return 0;
	}
	c = cur_call(user, frame->hd.stream_id);
	if (c != NULL && (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) &&
	    (frame->hd.type == NGHTTP2_HEADERS || frame->hd.type == NGHTTP2_DATA))
		c->ended = true;
	return 0;
}

static int
on_stream_close_cb(nghttp2_session *h2, int32_t stream_id, uint32_t error_code, void *user)
{
	struct cubeid_wl_conn *conn = user;

	/* Not cur_call(): a stream refused before anything came back (after
	 * a GOAWAY) got nothing, and a retry must still be allowed. */
	if (conn->cur != NULL && stream_id == conn->cur->sid) {
		conn->cur->ended = true;
		conn->cur->rst_code = error_code;
	}
	return 0;
}

/* Write what nghttp2 has; returns -1 on a dead socket. */
static int
wl_flush(struct cubeid_wl_conn *c)
{
	for (;;) {
		const uint8_t *data;
		ssize_t n, w;

		if (c->wlen > c->woff) {
			w = send(c->fd, c->wbuf + c->woff, c->wlen - c->woff, MSG_NOSIGNAL);
			if (w < 0) {
				if (errno == EINTR)
					continue;
				return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -1;
			}
			c->woff += (size_t)w;
			if (c->woff < c->wlen)
				continue;
			c->woff = c->wlen = 0;
		}
		if ((n = nghttp2_session_mem_send(c->h2, &data)) < 0)
			return -1;
		if (n == 0)
			return 0;
		do
			w = send(c->fd, data, (size_t)n, MSG_NOSIGNAL);
		while (w < 0 && errno == EINTR);
		if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
			return -1;
		if (w < 0)
			w = 0;
		if (w < n) {
			uint8_t *p = realloc(c->wbuf, (size_t)(n - w));

			if (p == NULL)
				return -1;
			c->wbuf = p;
			memcpy(c->wbuf, data + w, (size_t)(n - w));
			c->woff = 0;
			c->wlen = (size_t)(n - w);
		}
	}
}

/* ------------------------------------------------------------- connection */

static nghttp2_session_callbacks *wl_callbacks;
static pthread_once_t wl_cb_once = PTHREAD_ONCE_INIT;

static void
wl_callbacks_init(void)
{
	nghttp2_session_callbacks *cb;

	if (nghttp2_session_callbacks_new(&cb) != 0)
		return;
	nghttp2_session_callbacks_set_on_header_callback(cb, on_header_cb);
	nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, on_data_cb);
	nghttp2_session_callbacks_set_on_frame_recv_callback(cb, on_frame_recv_cb);
	nghttp2_session_callbacks_set_on_stream_close_callback(cb, on_stream_close_cb);
	wl_callbacks = cb;
}

static void
conn_drop(struct cubeid_wl_conn *c)
{
	nghttp2_session_del(c->h2);
	c->h2 = NULL;
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	free(c->wbuf);
	c->wbuf = NULL;
	c->wlen = c->woff = 0;
	c->goaway = false;
	c->cur = NULL;
}

/* Connect c to c->ep: the socket, an HTTP/2 client session, SETTINGS. */
static int
conn_start(struct cubeid_wl_conn *c, struct cubeid_wl_status *st)
{
	int r;

	conn_drop(c);
	pthread_once(&wl_cb_once, wl_callbacks_init);
	if (wl_callbacks == NULL)
		return CUBEID_ERR_NOMEM;
	if ((r = wl_endpoint_connect(&c->ep, st, &c->fd)) < 0)
		return r;
	if (nghttp2_session_client_new(&c->h2, wl_callbacks, c) != 0 ||
	    nghttp2_submit_settings(c->h2, NGHTTP2_FLAG_NONE, NULL, 0) != 0) {
		conn_drop(c);
		return CUBEID_ERR_NOMEM;
	}
	return 0;
}

/* Before reusing c: take in what the agent sent since (a GOAWAY, the
 * close of an idle connection).  False if c cannot take a new call. */
static bool
conn_usable(struct cubeid_wl_conn *c)
{
	uint8_t buf[4096];
	ssize_t n;

	if (c->h2 == NULL || c->fd < 0)
		return false;
	for (;;) {
		n = recv(c->fd, buf, sizeof(buf), MSG_DONTWAIT);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			break;
		if (n <= 0 || nghttp2_session_mem_recv(c->h2, buf, (size_t)n) < 0)
			return false;
	}
	return !c->goaway && nghttp2_session_want_read(c->h2) && wl_flush(c) == 0;
}

int
cubeid_wl_conn_open(const struct cubeid_wl_opts *o, cubeid_wl_conn **out,
                    struct cubeid_wl_status *st)
{
	struct cubeid_wl_conn *c;
	int r;

	*out = NULL;
	if (st != NULL) {
		st->code = -1;
		st->message[0] = '\0';
	}
	if ((c = calloc(1, sizeof(*c))) == NULL)
		return CUBEID_ERR_NOMEM;
	c->fd = -1;
	if ((r = wl_endpoint_parse(o, &c->ep, st)) < 0 || (r = conn_start(c, st)) < 0 ||
	    (wl_flush(c) < 0 && (r = CUBEID_ERR_UNAVAILABLE) < 0)) {
		cubeid_wl_conn_close(c);
		return r;
	}
	*out = c;
	return 0;
}

void
cubeid_wl_conn_close(cubeid_wl_conn *c)
{
	if (c == NULL)
		return;
	conn_drop(c);
	free(c);
}

static int
map_status(int code)
{
	switch (code) {
	case 0:
		return 0;
	case 3:
		return CUBEID_ERR_INVALID_ARG;
	case 4:
		return CUBEID_ERR_TIMEOUT;
	case 5:
		return CUBEID_ERR_NOT_FOUND;
	case 7:
		return CUBEID_ERR_PERMISSION;
	case 8:
		return CUBEID_ERR_TOO_LARGE;
	case 12:
		return CUBEID_ERR_UNSUPPORTED;
	case 14:
		return CUBEID_ERR_UNAVAILABLE;
	default:
		return CUBEID_ERR_RPC;
	}
}

/* gRPC's mapping of an HTTP status without grpc-status. */
static int
http_to_grpc(int http)
{
	switch (http) {
	case 400:
		return 13;
	case 401:
		return 16;
	case 403:
		return 7;
	case 404:
		return 12;
	case 429:
	case 502:
	case 503:
	case 504:
		return 14;
	default:
		return 2;
	}
}

/*
 * Run call c on connection conn until its end (or a stop).  *broken is set
 * when the connection cannot be used again (a transport failure, a
 * timeout with the stream still open).
 */
static int
conn_run(struct cubeid_wl_conn *conn, const struct cubeid_wl_opts *o, const char *path,
         struct wl_call *c, int64_t deadline, long timeout, const volatile int *stop,
         struct cubeid_wl_status *st, bool *broken)
{
	char tmo[16];
	nghttp2_nv nv[8];
	size_t nnv = 0;
	nghttp2_data_provider dp = {.source.ptr = c, .read_callback = req_read_cb};
	int r;

	*broken = false;
#define NV(n, v) (nghttp2_nv){(uint8_t *)(n), (uint8_t *)(v), strlen(n), strlen(v), 0}
	nv[nnv++] = NV(":method", "POST");
	nv[nnv++] = NV(":scheme", "http");
	nv[nnv++] = NV(":path", path);
	nv[nnv++] = NV(":authority", conn->ep.authority);
	nv[nnv++] = NV("content-type", "application/grpc");
	nv[nnv++] = NV("te", "trailers");
	if (o == NULL || !o->no_security_header)
		nv[nnv++] = NV("workload.spiffe.io", "true");
	if (timeout > 0) {
		grpc_timeout_format(timeout, tmo);
		nv[nnv++] = NV("grpc-timeout", tmo);
	}
#undef NV
	if ((c->sid = nghttp2_submit_request(conn->h2, NULL, nv, nnv, &dp, c)) < 0) {
		*broken = true;
		return CUBEID_ERR_UNAVAILABLE;
	}
	conn->cur = c;
	r = 0;
	while (!c->ended && !c->stopped && c->err == 0) {
		struct pollfd pfd = {.fd = conn->fd, .events = POLLIN};
		uint8_t buf[16384];
		int wait = -1, pr;
		ssize_t n;

		if (wl_flush(conn) < 0) {
			r = CUBEID_ERR_UNAVAILABLE;
			set_status(st, -1, "the connection to the agent broke", NULL);
			goto broke;
		}
		if (conn->wlen > conn->woff)
			pfd.events |= POLLOUT;
		if (deadline > 0) {
			int64_t left = deadline - mono_ms();

			if (left <= 0) {
				r = CUBEID_ERR_TIMEOUT;
				set_status(st, 4, "no answer from the agent in time", NULL);
				goto broke;
			}
			wait = left > 0x7fffffff ? 0x7fffffff : (int)left;
		}
		if (stop != NULL) {
			if (*stop)
				break;
			if (wait < 0 || wait > WL_TICK_MS)
				wait = WL_TICK_MS;
		}
		pr = poll(&pfd, 1, wait);
		if (pr < 0 && errno != EINTR) {
			r = CUBEID_ERR_IO;
			goto broke;
		}
		if (pr <= 0 || !(pfd.revents & (POLLIN | POLLHUP | POLLERR)))
			continue;
		n = recv(conn->fd, buf, sizeof(buf), 0);
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			continue;
		if (n <= 0) {
			r = CUBEID_ERR_UNAVAILABLE;
			set_status(st, -1, "the agent closed the connection", NULL);
			goto broke;
		}
		if (nghttp2_session_mem_recv(conn->h2, buf, (size_t)n) < 0) {
			r = CUBEID_ERR_PROTOCOL;
			set_status(st, -1, "HTTP/2 protocol error from the agent", NULL);
			goto broke;
		}
	}
	conn->cur = NULL;
	if (c->err != 0) {
		r = c->err;
		if (st != NULL && st->message[0] == '\0')
			snprintf(st->message, sizeof(st->message), "%s",
			         c->grpc_message[0] ? c->grpc_message : cubeid_strerror(r));
		/* the stream may still be open: cancel it */
		if (!c->ended)
			nghttp2_submit_rst_stream(conn->h2, NGHTTP2_FLAG_NONE, c->sid,
			                          NGHTTP2_CANCEL);
		*broken = wl_flush(conn) < 0;
		return r;
	}
	if (!c->ended) { /* stopped by the callback or by *stop: cancel */
		nghttp2_submit_rst_stream(conn->h2, NGHTTP2_FLAG_NONE, c->sid, NGHTTP2_CANCEL);
		*broken = wl_flush(conn) < 0;
		if (st != NULL)
			st->code = 0; /* healthy as far as we read */
		return 0;
	}
	if (c->grpc_status < 0) {
		if (c->http_status != 0 && c->http_status != 200) {
			c->grpc_status = http_to_grpc(c->http_status);
			snprintf(c->grpc_message, sizeof(c->grpc_message), "HTTP status %d",
			         c->http_status);
		} else {
			if (st != NULL)
				snprintf(st->message, sizeof(st->message),
				         "the stream ended without grpc-status (HTTP/2 error %u)",
				         c->rst_code);
			/* refused (after a GOAWAY) or reset: start afresh next time */
			*broken = true;
			return CUBEID_ERR_PROTOCOL;
		}
	}
	if (st != NULL) {
		st->code = c->grpc_status;
		snprintf(st->message, sizeof(st->message), "%s", c->grpc_message);
	}
	return map_status(c->grpc_status);
broke:
	conn->cur = NULL;
	*broken = true;
	return r;
}

int
cubeid_wl_call(const struct cubeid_wl_opts *o, const char *path, const uint8_t *req, size_t req_len,
               cubeid_wl_msg_fn fn, void *arg, const volatile int *stop,
               struct cubeid_wl_status *st)
{
	struct cubeid_wl_conn tmp = {.fd = -1}, *conn = &tmp;
	struct wl_call c = {.grpc_status = -1};
	int64_t deadline = 0;
	long timeout = o != NULL ? o->timeout_ms : 0;
	bool broken = false, reused = false;
	int r, attempt;

	if (st != NULL) {
		st->code = -1;
		st->message[0] = '\0';
	}
	if (path == NULL || fn == NULL || (req == NULL && req_len > 0) ||
	    req_len > GRPC_MAX_MESSAGE)
		return CUBEID_ERR_INVALID_ARG;
	if (timeout == 0 && stop == NULL)
		timeout = WL_DEFAULT_TIMEOUT_MS;
	if (timeout > 0)
		deadline = mono_ms() + timeout;
	c.fn = fn;
	c.arg = arg;
	if ((c.req = malloc(GRPC_FRAME_HEADER + req_len)) == NULL)
		return CUBEID_ERR_NOMEM;
	grpc_frame_header(c.req, req_len);
	if (req_len > 0)
		memcpy(c.req + GRPC_FRAME_HEADER, req, req_len);
	c.req_len = GRPC_FRAME_HEADER + req_len;

	if (o != NULL && o->conn != NULL) {
		conn = o->conn;
		reused = conn_usable(conn);
		if (!reused && (r = conn_start(conn, st)) < 0)
			goto out;
	} else if ((r = wl_endpoint_parse(o, &tmp.ep, st)) < 0 || (r = conn_start(&tmp, st)) < 0) {
		goto out;
	}
	for (attempt = 0;; attempt++) {
		grpc_deframer_init(&c.df, GRPC_MAX_MESSAGE);
		r = conn_run(conn, o, path, &c, deadline, timeout, stop, st, &broken);
		grpc_deframer_clear(&c.df);
		if (broken)
			conn_drop(conn);
		/* A reused connection the agent had closed meanwhile: once more
		 * on a new one, if nothing of the call came back. */
		if (!(broken && reused && attempt == 0 && !c.got_any && r != CUBEID_ERR_TIMEOUT))
			break;
		reused = false;
		c = (struct wl_call){.grpc_status = -1,
		                     .fn = fn,
		                     .arg = arg,
		                     .req = c.req,
		                     .req_len = c.req_len};
		if (st != NULL) {
			st->code = -1;
			st->message[0] = '\0';
		}
		if ((r = conn_start(conn, st)) < 0)
			break;
	}
out:
	if (conn == &tmp)
		conn_drop(&tmp);
	free(c.req);
	return r;
}
