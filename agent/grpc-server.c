/*
 * gRPC over HTTP/2 (h2c, prior knowledge) on Unix sockets, on nghttp2,
 * driven by the agent's loop.  One nghttp2 server session per accepted
 * connection, non-blocking I/O, server streaming through a deferred data
 * provider.
 *
 * Lifetimes:
 *   - A grpc_call lives from the request's HEADERS to the stream's close.
 *     Its handler runs once, when the request ended (END_STREAM) with
 *     exactly one message.  The handler (or later code) answers with
 *     grpc_call_send() and grpc_call_finish().
 *   - If the stream goes away before grpc_call_finish() (RST_STREAM from
 *     the client, the connection closing or being dropped), on_close runs
 *     once and the call is freed at once.  After grpc_call_finish() the
 *     caller is done with the call; on_close never runs for it then.
 *   - A connection whose queued output exceeds max_pending_output is
 *     dropped from a 0 ms timer, never from inside grpc_call_send(), so a
 *     handler can always finish what it started.
 *
 * Memory per call: the request message (deframer buffer), the metadata
 * (one block) and an output buffer reused across messages.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <nghttp2/nghttp2.h>

#include <cubeid/log.h>

#include "agent/agent.h"
#include "common/grpc-frame.h"

#define GRPC_IDLE_MS         (5 * 60 * 1000) /* a connection with no streams */
#define GRPC_MAX_METADATA    (16 * 1024)     /* header bytes per call */
#define GRPC_MAX_LISTENERS   8
#define GRPC_READ_CHUNK      (16 * 1024)
#define GRPC_READS_PER_EVENT 4

struct conn;

struct grpc_call {
	struct conn *conn;
	struct grpc_call *prev, *next; /* conn->calls */
	int32_t stream_id;
	const struct grpc_method *method; /* NULL: unknown :path */
	bool post, grpc_ct, bad_header;
	bool dispatched;   /* handler called (or an error answered) */
	bool headers_sent; /* response HEADERS submitted */
	bool finished;     /* grpc_call_finish() called */
	bool deferred;     /* data provider is waiting for output */
	bool trailers_sent;
	int status;
	char *status_msg; /* percent-encoded grpc-message, or NULL */
	/* metadata: "name\0value\0name\0value\0..." */
	char *md;
	size_t md_len, md_cap;
	struct grpc_deframer req;
	uint8_t *req_msg; /* points into req.buf once complete */
	size_t req_len;
	int req_err; /* deframing error, answered at END_STREAM */
	/* output: framed messages not yet handed to nghttp2 */
	uint8_t *out;
	size_t out_off, out_len, out_cap;
	void *user;
	void (*on_close)(grpc_call *c, void *user);
};

struct conn {
	grpc_server *srv;
	struct conn *prev, *next;
	int fd;
	nghttp2_session *h2;
	struct grpc_call *calls;
	unsigned n_calls;
	size_t pending; /* sum of the calls' unsent output + wbuf */
	uint8_t *wbuf;  /* bytes nghttp2 produced that the socket did not take */
	size_t wlen, woff;
	long idle_timer, drop_timer;
	uint64_t last_active;
	int in_h2;   /* inside nghttp2_session_mem_recv / callbacks */
	bool dead;   /* being torn down */
	bool doomed; /* drop scheduled */
	int watching;
};

struct grpc_server {
	cubeid_loop *loop;
	const struct grpc_method *methods;
	size_t n_methods;
	struct grpc_limits lim;
	void *ctx;
	int listeners[GRPC_MAX_LISTENERS];
	size_t n_listeners;
	struct conn *conns;
	unsigned n_conns;
};

static uint64_t
mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void conn_close(struct conn *c);
static int conn_flush(struct conn *c);

/* ------------------------------------------------------------- calls */

static void
call_free(struct grpc_call *call)
{
	struct conn *c = call->conn;

	if (call->prev != NULL)
		call->prev->next = call->next;
	else
		c->calls = call->next;
	if (call->next != NULL)
		call->next->prev = call->prev;
	c->n_calls--;
	c->pending -= call->out_len - call->out_off;
	if (c->n_calls == 0)
		c->last_active = mono_ms();
	grpc_deframer_clear(&call->req);
	free(call->md);
	free(call->out);
	free(call->status_msg);
	free(call);
}

/* The stream is gone: tell the owner unless it already finished. */
static void
call_gone(struct grpc_call *call)
{
	if (!call->finished && call->on_close != NULL)
		call->on_close(call, call->user);
	call_free(call);
}

static int
md_add(struct grpc_call *call, const uint8_t *name, size_t nlen, const uint8_t *value, size_t vlen)
{
	size_t need = call->md_len + nlen + vlen + 2;

	if (need > GRPC_MAX_METADATA)
		return CUBEID_ERR_TOO_LARGE;
	if (need > call->md_cap) {
		size_t cap = call->md_cap ? call->md_cap : 256;
		char *p;

		while (cap < need)
			cap *= 2;
		if ((p = realloc(call->md, cap)) == NULL)
			return CUBEID_ERR_NOMEM;
		call->md = p;
		call->md_cap = cap;
	}
	memcpy(call->md + call->md_len, name, nlen);
	call->md[call->md_len + nlen] = '\0';
	memcpy(call->md + call->md_len + nlen + 1, value, vlen);
	call->md[call->md_len + nlen + 1 + vlen] = '\0';
	call->md_len = need;
	return 0;
}

const uint8_t *
grpc_call_request(grpc_call *c, size_t *len)
{
	*len = c->req_len;
	return c->req_msg;
}

const char *
grpc_call_metadata(grpc_call *c, const char *key)
{
	size_t off = 0;

	while (off < c->md_len) {
		const char *name = c->md + off, *value = name + strlen(name) + 1;

		if (strcmp(name, key) == 0)
			return value;
		off = (size_t)(value - c->md) + strlen(value) + 1;
	}
	return NULL;
}

int
grpc_call_fd(grpc_call *c)
{
	return c->conn->fd;
}

void
grpc_call_set_user(grpc_call *c, void *user, void (*on_close)(grpc_call *c, void *user))
{
	c->user = user;
	c->on_close = on_close;
}

void *
grpc_call_user(grpc_call *c)
{
	return c->user;
}

/* ------------------------------------------------------------- output */

static ssize_t
data_read_cb(nghttp2_session *h2, int32_t stream_id, uint8_t *buf, size_t length, uint32_t *flags,
             nghttp2_data_source *src, void *user)
{
	struct grpc_call *call = src->ptr;
	struct conn *c = user;
	size_t n = call->out_len - call->out_off;

	if (n > length)
		n = length;
	memcpy(buf, call->out + call->out_off, n);
	call->out_off += n;
	c->pending -= n;
	if (call->out_off == call->out_len)
		call->out_off = call->out_len = 0; /* reuse the buffer */
	if (n > 0)
		return (ssize_t)n;
	if (!call->finished) {
		call->deferred = true;
		return NGHTTP2_ERR_DEFERRED;
	}
	/* All data out and the call finished: end with trailers. */
	*flags |= NGHTTP2_DATA_FLAG_EOF | NGHTTP2_DATA_FLAG_NO_END_STREAM;
	if (!call->trailers_sent) {
		char st[12];
		nghttp2_nv nv[2];
		size_t nnv = 1;

		snprintf(st, sizeof(st), "%d", call->status);
		nv[0] = (nghttp2_nv){(uint8_t *)"grpc-status", (uint8_t *)st, 11, strlen(st),
		                     NGHTTP2_NV_FLAG_NONE};
		if (call->status_msg != NULL)
			nv[nnv++] =
			        (nghttp2_nv){(uint8_t *)"grpc-message", (uint8_t *)call->status_msg,
			                     12, strlen(call->status_msg), NGHTTP2_NV_FLAG_NONE};
		call->trailers_sent = true;
		if (nghttp2_submit_trailer(h2, stream_id, nv, nnv) != 0)
			return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
	}
	return 0;
}

static int
submit_headers(struct grpc_call *call)
{
	nghttp2_nv nv[] = {
	        {(uint8_t *)":status", (uint8_t *)"200", 7, 3, NGHTTP2_NV_FLAG_NONE},
	        {(uint8_t *)"content-type", (uint8_t *)"application/grpc", 12, 16,
	         NGHTTP2_NV_FLAG_NONE},
	};
	nghttp2_data_provider dp = {.source.ptr = call, .read_callback = data_read_cb};

	call->headers_sent = true;
	if (nghttp2_submit_response(call->conn->h2, call->stream_id, nv, 2, &dp) != 0)
		return CUBEID_ERR_INTERNAL;
	return 0;
}

/* Trailers-only response: one HEADERS frame with END_STREAM. */
static int
submit_trailers_only(struct grpc_call *call, int http_status, int status, const char *msg)
{
	char st[12], hs[8], enc[GRPC_MESSAGE_MAX];
	nghttp2_nv nv[4];
	size_t n = 0;

	snprintf(hs, sizeof(hs), "%d", http_status);
	snprintf(st, sizeof(st), "%d", status);
	nv[n++] = (nghttp2_nv){(uint8_t *)":status", (uint8_t *)hs, 7, strlen(hs),
	                       NGHTTP2_NV_FLAG_NONE};
	nv[n++] = (nghttp2_nv){(uint8_t *)"content-type", (uint8_t *)"application/grpc", 12, 16,
	                       NGHTTP2_NV_FLAG_NONE};
	nv[n++] = (nghttp2_nv){(uint8_t *)"grpc-status", (uint8_t *)st, 11, strlen(st),
	                       NGHTTP2_NV_FLAG_NONE};
	if (msg != NULL && *msg != '\0') {
		grpc_message_encode(msg, enc, sizeof(enc));
		nv[n++] = (nghttp2_nv){(uint8_t *)"grpc-message", (uint8_t *)enc, 12, strlen(enc),
		                       NGHTTP2_NV_FLAG_NONE};
	}
	call->headers_sent = call->trailers_sent = true;
	/* nghttp2 copies the name/value pairs. */
	if (nghttp2_submit_response(call->conn->h2, call->stream_id, nv, n, NULL) != 0)
		return CUBEID_ERR_INTERNAL;
	return 0;
}

static long
drop_timer_cb(cubeid_loop *l, void *arg)
{
	struct conn *c = arg;

	c->drop_timer = 0;
	if (c->pending > c->srv->lim.max_pending_output)
		cubeid_warn("grpc: dropping a client with %zu bytes of output backlog (fd %d)",
		            c->pending, c->fd);
	conn_close(c);
	return -1;
}

static void
conn_doom(struct conn *c)
{
	if (c->doomed)
		return;
	c->doomed = true;
	c->drop_timer = loop_timer_add(c->srv->loop, 0, drop_timer_cb, c);
	if (c->drop_timer < 0)
		c->drop_timer = 0;
}

/* After queueing output outside nghttp2's callbacks, push it out now. */
static void
call_kick(struct grpc_call *call)
{
	struct conn *c = call->conn;

	if (call->deferred) {
		call->deferred = false;
		nghttp2_session_resume_data(c->h2, call->stream_id);
	}
	if (c->in_h2 == 0)
		conn_flush(c);
}

int
grpc_call_send(grpc_call *call, const uint8_t *msg, size_t len)
{
	struct conn *c = call->conn;
	size_t need;
	int r;

	if (call->finished || call->trailers_sent)
		return CUBEID_ERR_INVALID_ARG;
	if (len > 0xffffffffu)
		return CUBEID_ERR_TOO_LARGE;
	if (c->doomed)
		return CUBEID_ERR_UNAVAILABLE;
	if (c->pending + len + GRPC_FRAME_HEADER > c->srv->lim.max_pending_output) {
		cubeid_warn("grpc: dropping a slow client: %zu bytes of output backlog (fd %d)",
		            c->pending, c->fd);
		conn_doom(c);
		return CUBEID_ERR_UNAVAILABLE;
	}
	if (!call->headers_sent && (r = submit_headers(call)) < 0)
		return r;
	/* Compact before growing. */
	if (call->out_off > 0 && call->out_len + GRPC_FRAME_HEADER + len > call->out_cap) {
		memmove(call->out, call->out + call->out_off, call->out_len - call->out_off);
		call->out_len -= call->out_off;
		call->out_off = 0;
	}
	need = call->out_len + GRPC_FRAME_HEADER + len;
	if (need > call->out_cap) {
		size_t cap = call->out_cap ? call->out_cap : 1024;
		uint8_t *p;

		while (cap < need)
			cap *= 2;
		if ((p = realloc(call->out, cap)) == NULL)
			return CUBEID_ERR_NOMEM;
		call->out = p;
		call->out_cap = cap;
	}
	grpc_frame_header(call->out + call->out_len, len);
	if (len > 0)
		memcpy(call->out + call->out_len + GRPC_FRAME_HEADER, msg, len);
	call->out_len = need;
	c->pending += GRPC_FRAME_HEADER + len;
	call_kick(call);
	return 0;
}

int
grpc_call_finish(grpc_call *call, int status, const char *message)
{
	char enc[GRPC_MESSAGE_MAX];
	int r = 0;

	if (call->finished)
		return CUBEID_ERR_INVALID_ARG;
	call->finished = true;
	call->status = status;
	if (!call->headers_sent) {
		r = submit_trailers_only(call, 200, status, message);
		if (call->conn->in_h2 == 0)
			conn_flush(call->conn);
		return r;
	}
	if (message != NULL && *message != '\0') {
		grpc_message_encode(message, enc, sizeof(enc));
		call->status_msg = strdup(enc); /* on failure the message is dropped */
	}
	call_kick(call);
	return r;
}

/* ------------------------------------------------------------- input */

static int
on_begin_headers_cb(nghttp2_session *h2, const nghttp2_frame *frame, void *user)
{
	struct conn *c = user;
	struct grpc_call *call;

	if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST)
		return 0;
	if (c->n_calls >= c->srv->lim.max_streams) {
		nghttp2_submit_rst_stream(h2, NGHTTP2_FLAG_NONE, frame->hd.stream_id,
		                          NGHTTP2_REFUSED_STREAM);
		return 0; /* no call: the rest of the stream is ignored */
	}
	if ((call = calloc(1, sizeof(*call))) == NULL)
		return NGHTTP2_ERR_CALLBACK_FAILURE;
	call->conn = c;
	call->stream_id = frame->hd.stream_id;
	grpc_deframer_init(&call->req, c->srv->lim.max_message);
	call->next = c->calls;
	if (c->calls != NULL)
		c->calls->prev = call;
	c->calls = call;
	c->n_calls++;
	nghttp2_session_set_stream_user_data(h2, frame->hd.stream_id, call);
	return 0;
}

static bool
str_eq(const uint8_t *a, size_t alen, const char *b)
{
	return alen == strlen(b) && memcmp(a, b, alen) == 0;
}

static int
on_header_cb(nghttp2_session *h2, const nghttp2_frame *frame, const uint8_t *name, size_t nlen,
             const uint8_t *value, size_t vlen, uint8_t flags, void *user)
{
	struct conn *c = user;
	struct grpc_call *call;
	size_t i;

	if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST)
		return 0; /* request trailers carry nothing we use */
	call = nghttp2_session_get_stream_user_data(h2, frame->hd.stream_id);
	if (call == NULL)
		return 0;
	if (nlen > 0 && name[0] == ':') {
		if (str_eq(name, nlen, ":method"))
			call->post = str_eq(value, vlen, "POST");
		else if (str_eq(name, nlen, ":path"))
			for (i = 0; i < c->srv->n_methods; i++)
				if (str_eq(value, vlen, c->srv->methods[i].path)) {
					call->method = &c->srv->methods[i];
					break;
				}
		return 0;
	}
	if (str_eq(name, nlen, "content-type"))
		/* "application/grpc" or "application/grpc+proto" ... */
		call->grpc_ct = vlen >= 16 && memcmp(value, "application/grpc", 16) == 0 &&
		                (vlen == 16 || value[16] == '+' || value[16] == ';');
	if (md_add(call, name, nlen, value, vlen) < 0)
		call->bad_header = true;
	return 0;
}

static int
on_data_chunk_cb(nghttp2_session *h2, uint8_t flags, int32_t stream_id, const uint8_t *data,
                 size_t len, void *user)
{
	struct grpc_call *call = nghttp2_session_get_stream_user_data(h2, stream_id);

	while (call != NULL && !call->dispatched && call->req_err == 0 && len > 0) {
		const uint8_t *msg;
		size_t used, mlen;
		int r = grpc_deframer_push(&call->req, data, len, &used, &msg, &mlen);

		data += used;
		len -= used;
		if (r < 0) {
			call->req_err = r;
			grpc_deframer_clear(&call->req); /* drop what we buffered */
		} else if (r == 1) {
			if (call->req.messages > 1) {
				call->req_err = CUBEID_ERR_PARSE;
			} else {
				call->req_msg = (uint8_t *)msg;
				call->req_len = mlen;
			}
		}
	}
	return 0;
}

/* Headers complete: a request we cannot serve is answered at once. */
static void
check_headers(struct grpc_call *call)
{
	if (call->dispatched)
		return;
	if (!call->post || call->bad_header) {
		call->dispatched = true;
		submit_trailers_only(call, call->bad_header ? 431 : 405, GRPC_INTERNAL,
		                     call->bad_header ? "request headers too large"
		                                      : "gRPC requires POST");
	} else if (!call->grpc_ct) {
		call->dispatched = true;
		submit_trailers_only(call, 415, GRPC_INTERNAL,
		                     "content-type must be application/grpc");
	} else if (call->method == NULL) {
		call->dispatched = true;
		submit_trailers_only(call, 200, GRPC_UNIMPLEMENTED, "unknown method");
	}
}

static void
dispatch(struct grpc_call *call)
{
	grpc_server *s = call->conn->srv;

	if (call->dispatched)
		return;
	call->dispatched = true;
	if (call->req_err == CUBEID_ERR_TOO_LARGE) {
		char m[96];

		snprintf(m, sizeof(m), "request message larger than %zu bytes", s->lim.max_message);
		submit_trailers_only(call, 200, GRPC_RESOURCE_EXHAUSTED, m);
	} else if (call->req_err == CUBEID_ERR_UNSUPPORTED) {
		submit_trailers_only(call, 200, GRPC_UNIMPLEMENTED,
		                     "compressed messages are not supported (no grpc-encoding)");
	} else if (call->req_err != 0 || !grpc_deframer_idle(&call->req) ||
	           call->req.messages != 1) {
		submit_trailers_only(call, 200, GRPC_INVALID_ARGUMENT,
		                     "expected exactly one request message");
	} else {
		call->method->fn(call, s->ctx);
	}
}

static int
on_frame_recv_cb(nghttp2_session *h2, const nghttp2_frame *frame, void *user)
{
	struct grpc_call *call;

	if (frame->hd.type != NGHTTP2_HEADERS && frame->hd.type != NGHTTP2_DATA)
		return 0;
	call = nghttp2_session_get_stream_user_data(h2, frame->hd.stream_id);
	if (call == NULL)
		return 0;
	if (frame->hd.type == NGHTTP2_HEADERS && frame->headers.cat == NGHTTP2_HCAT_REQUEST)
		check_headers(call);
	if (frame->hd.flags & NGHTTP2_FLAG_END_STREAM)
		dispatch(call);
	return 0;
}

static int
on_stream_close_cb(nghttp2_session *h2, int32_t stream_id, uint32_t error_code, void *user)
{
	struct conn *c = user;
	struct grpc_call *call;

	if (c->dead)
		return 0;
	call = nghttp2_session_get_stream_user_data(h2, stream_id);
	if (call == NULL)
		return 0;
	nghttp2_session_set_stream_user_data(h2, stream_id, NULL);
	call_gone(call);
	return 0;
}

/* ------------------------------------------------------------- connections */

static nghttp2_session_callbacks *callbacks;
static nghttp2_option *h2_option;

static pthread_once_t h2_once = PTHREAD_ONCE_INIT;
static int h2_setup_result;

static void
h2_setup_once(void)
{
	h2_setup_result = CUBEID_ERR_NOMEM;
	if (nghttp2_session_callbacks_new(&callbacks) != 0)
		return;
	nghttp2_session_callbacks_set_on_begin_headers_callback(callbacks, on_begin_headers_cb);
	nghttp2_session_callbacks_set_on_header_callback(callbacks, on_header_cb);
	nghttp2_session_callbacks_set_on_data_chunk_recv_callback(callbacks, on_data_chunk_cb);
	nghttp2_session_callbacks_set_on_frame_recv_callback(callbacks, on_frame_recv_cb);
	nghttp2_session_callbacks_set_on_stream_close_callback(callbacks, on_stream_close_cb);
	if (nghttp2_option_new(&h2_option) != 0)
		return;
	/* Don't let a client park unbounded reserved/closed stream state. */
	nghttp2_option_set_max_reserved_remote_streams(h2_option, 0);
	h2_setup_result = 0;
}

static int
h2_setup(void)
{
	pthread_once(&h2_once, h2_setup_once);
	return h2_setup_result;
}

static void conn_io_cb(cubeid_loop *l, int fd, int events, void *arg);

static void
conn_set_watch(struct conn *c, int events)
{
	if (c->watching == events)
		return;
	if (loop_watch(c->srv->loop, c->fd, events, conn_io_cb, c) == 0)
		c->watching = events;
}

static void
conn_close(struct conn *c)
{
	grpc_server *s = c->srv;

	if (c->dead)
		return;
	c->dead = true;
	loop_watch(s->loop, c->fd, 0, NULL, NULL);
	loop_timer_del(s->loop, c->idle_timer);
	loop_timer_del(s->loop, c->drop_timer);
	while (c->calls != NULL)
		call_gone(c->calls);
	nghttp2_session_del(c->h2);
	close(c->fd);
	if (c->prev != NULL)
		c->prev->next = c->next;
	else
		s->conns = c->next;
	if (c->next != NULL)
		c->next->prev = c->prev;
	s->n_conns--;
	free(c->wbuf);
	free(c);
}

/* Write what nghttp2 has, as long as the socket takes it.  Anything the
 * socket refuses waits in wbuf (one chunk at most), and the fd is watched
 * for writability; nghttp2 is not asked for more until wbuf is empty.
 * On a dead connection it returns -1 and schedules the close (conn_doom):
 * it never frees the connection itself, so callers' calls stay valid. */
static int
conn_flush(struct conn *c)
{
	if (c->doomed)
		return -1;
	for (;;) {
		const uint8_t *data;
		ssize_t n, w;

		if (c->wlen > c->woff) {
			w = send(c->fd, c->wbuf + c->woff, c->wlen - c->woff, MSG_NOSIGNAL);
			if (w < 0) {
				if (errno == EINTR)
					continue;
				if (errno == EAGAIN || errno == EWOULDBLOCK)
					break;
				goto dead;
			}
			c->woff += (size_t)w;
			c->pending -= (size_t)w;
			if (c->woff < c->wlen)
				continue;
			c->woff = c->wlen = 0;
		}
		n = nghttp2_session_mem_send(c->h2, &data);
		if (n < 0)
			goto dead;
		if (n == 0)
			break;
		do
			w = send(c->fd, data, (size_t)n, MSG_NOSIGNAL);
		while (w < 0 && errno == EINTR);
		if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
			goto dead;
		if (w < 0)
			w = 0;
		if (w < n) {
			/* nghttp2's buffer is only valid until the next call: keep the rest. */
			size_t rest = (size_t)(n - w);
			uint8_t *p = realloc(c->wbuf, rest);

			if (p == NULL)
				goto dead;
			c->wbuf = p;
			memcpy(c->wbuf, data + w, rest);
			c->woff = 0;
			c->wlen = rest;
			c->pending += rest;
		}
	}
	if (!nghttp2_session_want_read(c->h2) && !nghttp2_session_want_write(c->h2) &&
	    c->wlen == c->woff)
		goto dead; /* both sides are done (GOAWAY) */
	conn_set_watch(c, LOOP_READABLE | (c->wlen > c->woff ? LOOP_WRITABLE : 0));
	return 0;
dead:
	conn_set_watch(c, 0);
	conn_doom(c);
	return -1;
}

static void
conn_io_cb(cubeid_loop *l, int fd, int events, void *arg)
{
	struct conn *c = arg;
	uint8_t buf[GRPC_READ_CHUNK];
	int i;

	if (c->doomed) {
		conn_close(c);
		return;
	}
	if (events & LOOP_READABLE) {
		for (i = 0; i < GRPC_READS_PER_EVENT; i++) {
			ssize_t n = recv(fd, buf, sizeof(buf), 0), rv;

			if (n < 0 && errno == EINTR)
				continue;
			if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
				break;
			if (n <= 0) {
				conn_close(c);
				return;
			}
			c->last_active = mono_ms();
			c->in_h2++;
			rv = nghttp2_session_mem_recv(c->h2, buf, (size_t)n);
			c->in_h2--;
			if (rv < 0) {
				cubeid_debug("grpc: closing fd %d: %s", fd,
				             nghttp2_strerror((int)rv));
				/* Say GOAWAY if the socket takes it, then close. */
				nghttp2_session_terminate_session(c->h2, NGHTTP2_PROTOCOL_ERROR);
				conn_flush(c);
				conn_close(c);
				return;
			}
			if (c->doomed)
				break;
			if ((size_t)n < sizeof(buf))
				break;
		}
	}
	if (conn_flush(c) < 0)
		conn_close(c);
}

static long
idle_timer_cb(cubeid_loop *l, void *arg)
{
	struct conn *c = arg;
	uint64_t now = mono_ms();

	if (c->n_calls > 0)
		return GRPC_IDLE_MS;
	if (now - c->last_active >= GRPC_IDLE_MS) {
		c->idle_timer = 0;
		conn_close(c);
		return -1;
	}
	return (long)(GRPC_IDLE_MS - (now - c->last_active));
}

static void
accept_cb(cubeid_loop *l, int lfd, int events, void *arg)
{
	grpc_server *s = arg;
	int i;

	for (i = 0; i < 64; i++) {
		nghttp2_settings_entry iv[2];
		struct conn *c;
		int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				cubeid_warn("grpc: accept: %s", strerror(errno));
			return;
		}
		if (s->n_conns >= s->lim.max_connections) {
			cubeid_warn("grpc: refusing a connection: %u connections open", s->n_conns);
			close(fd);
			continue;
		}
		if ((c = calloc(1, sizeof(*c))) == NULL) {
			close(fd);
			continue;
		}
		c->srv = s;
		c->fd = fd;
		c->last_active = mono_ms();
		if (nghttp2_session_server_new2(&c->h2, callbacks, c, h2_option) != 0) {
			free(c);
			close(fd);
			continue;
		}
		c->next = s->conns;
		if (s->conns != NULL)
			s->conns->prev = c;
		s->conns = c;
		s->n_conns++;
		iv[0] = (nghttp2_settings_entry){NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS,
		                                 s->lim.max_streams};
		iv[1] = (nghttp2_settings_entry){NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE,
		                                 GRPC_MAX_METADATA};
		nghttp2_submit_settings(c->h2, NGHTTP2_FLAG_NONE, iv, 2);
		c->idle_timer = loop_timer_add(s->loop, GRPC_IDLE_MS, idle_timer_cb, c);
		if (c->idle_timer < 0)
			c->idle_timer = 0;
		conn_flush(c);
	}
}

/* ------------------------------------------------------------- server */

int
grpc_server_new(cubeid_loop *l, const struct grpc_method *m, size_t n_methods,
                const struct grpc_limits *lim, void *ctx, grpc_server **out)
{
	grpc_server *s;
	int r;

	*out = NULL;
	if (l == NULL || (m == NULL && n_methods > 0))
		return CUBEID_ERR_INVALID_ARG;
	if ((r = h2_setup()) < 0)
		return r;
	if ((s = calloc(1, sizeof(*s))) == NULL)
		return CUBEID_ERR_NOMEM;
	s->loop = l;
	s->methods = m;
	s->n_methods = n_methods;
	s->ctx = ctx;
	if (lim != NULL)
		s->lim = *lim;
	if (s->lim.max_message == 0)
		s->lim.max_message = GRPC_MAX_MESSAGE;
	if (s->lim.max_streams == 0)
		s->lim.max_streams = 100;
	if (s->lim.max_connections == 0)
		s->lim.max_connections = 4096;
	if (s->lim.max_pending_output == 0)
		s->lim.max_pending_output = 8u << 20;
	*out = s;
	return 0;
}

void
grpc_server_free(grpc_server *s)
{
	size_t i;

	if (s == NULL)
		return;
	for (i = 0; i < s->n_listeners; i++)
		loop_watch(s->loop, s->listeners[i], 0, NULL, NULL);
	while (s->conns != NULL)
		conn_close(s->conns);
	free(s);
}

/* The server watches fd but does not own it: the caller closes it after
 * grpc_server_free(). */
int
grpc_server_listen_fd(grpc_server *s, int fd)
{
	int r;

	int fl;

	if (s->n_listeners >= GRPC_MAX_LISTENERS)
		return CUBEID_ERR_TOO_LARGE;
	/* accept() in a loop until EAGAIN needs a non-blocking listener. */
	if ((fl = fcntl(fd, F_GETFL)) < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
		return CUBEID_ERR_IO;
	if ((r = loop_watch(s->loop, fd, LOOP_READABLE, accept_cb, s)) < 0)
		return r;
	s->listeners[s->n_listeners++] = fd;
	return 0;
}

unsigned
grpc_server_connections(const grpc_server *s)
{
	return s->n_conns;
}
