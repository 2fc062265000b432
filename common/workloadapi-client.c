/*
 * SPIFFE Workload API client: one nghttp2 client session on a Unix socket
 * per call, driven by poll() with a deadline.  See
 * include/cubeid/workloadapi.h.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <nghttp2/nghttp2.h>
#include <openssl/crypto.h>

#include <cubeid/error.h>
#include <cubeid/workloadapi.h>

#include "agent/workload.pb-c.h"
#include "common/grpc-frame.h"

#define WL_DEFAULT_TIMEOUT_MS 30000
#define WL_TICK_MS            100
#define WL_MAX_AUDIENCES      64
#define WL_MAX_STRUCT_DEPTH   32

struct wl_call {
	int fd;
	nghttp2_session *h2;
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
	int err;
	uint8_t *wbuf;
	size_t wlen, woff;
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

static int
wl_connect(const struct cubeid_wl_opts *o, struct cubeid_wl_status *st, int *out)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	const char *a = o != NULL ? o->socket : NULL;
	int fd;

	*out = -1;
	if (a == NULL)
		a = getenv("SPIFFE_ENDPOINT_SOCKET");
	if (a == NULL || *a == '\0') {
		set_status(st, -1, "no socket: give one or set SPIFFE_ENDPOINT_SOCKET", NULL);
		return CUBEID_ERR_INVALID_ARG;
	}
	if (strncmp(a, "unix://", 7) == 0)
		a += 7;
	else if (strncmp(a, "unix:", 5) == 0)
		a += 5;
	if (*a != '/') {
		set_status(st, -1, "not a unix socket path: ", a);
		return CUBEID_ERR_INVALID_ARG;
	}
	if (strlen(a) >= sizeof(sa.sun_path)) {
		set_status(st, -1, "socket path too long: ", a);
		return CUBEID_ERR_TOO_LARGE;
	}
	strcpy(sa.sun_path, a);
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0)
		return CUBEID_ERR_IO;
	while (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		int e = errno;

		if (e == EINTR)
			continue;
		close(fd);
		set_status(st, -1, "cannot connect to ", a);
		if (st != NULL) {
			size_t l = strlen(st->message);

			snprintf(st->message + l, sizeof(st->message) - l, ": %s", strerror(e));
		}
		return e == ENOENT || e == ECONNREFUSED || e == EAGAIN ? CUBEID_ERR_UNAVAILABLE
		                                                       : CUBEID_ERR_IO;
	}
	if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) < 0) {
		close(fd);
		return CUBEID_ERR_IO;
	}
	*out = fd;
	return 0;
}

/* ------------------------------------------------------------- nghttp2 */

static ssize_t
req_read_cb(nghttp2_session *h2, int32_t stream_id, uint8_t *buf, size_t length, uint32_t *flags,
            nghttp2_data_source *src, void *user)
{
	struct wl_call *c = user;
	size_t n = c->req_len - c->req_off;

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

static int
on_header_cb(nghttp2_session *h2, const nghttp2_frame *frame, const uint8_t *name, size_t nlen,
             const uint8_t *value, size_t vlen, uint8_t flags, void *user)
{
	struct wl_call *c = user;
	char v[16];

	if (frame->hd.stream_id != c->sid)
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
	struct wl_call *c = user;

	if (stream_id != c->sid)
		return 0;
	while (len > 0 && !c->stopped && c->err == 0) {
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
	struct wl_call *c = user;

	if (frame->hd.stream_id == c->sid && (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) &&
	    (frame->hd.type == NGHTTP2_HEADERS || frame->hd.type == NGHTTP2_DATA))
		c->ended = true;
	return 0;
}

static int
on_stream_close_cb(nghttp2_session *h2, int32_t stream_id, uint32_t error_code, void *user)
{
	struct wl_call *c = user;

	if (stream_id == c->sid) {
		c->ended = true;
		c->rst_code = error_code;
	}
	return 0;
}

/* Write what nghttp2 has; returns -1 on a dead socket. */
static int
wl_flush(struct wl_call *c)
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

int
cubeid_wl_call(const struct cubeid_wl_opts *o, const char *path, const uint8_t *req, size_t req_len,
               cubeid_wl_msg_fn fn, void *arg, const volatile int *stop,
               struct cubeid_wl_status *st)
{
	nghttp2_session_callbacks *cb = NULL;
	struct wl_call c = {.fd = -1, .grpc_status = -1};
	char tmo[16];
	nghttp2_nv nv[8];
	size_t nnv = 0;
	nghttp2_data_provider dp = {.read_callback = req_read_cb};
	int64_t deadline = 0;
	long timeout = o != NULL ? o->timeout_ms : 0;
	int r;

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
	grpc_deframer_init(&c.df, GRPC_MAX_MESSAGE);
	if ((c.req = malloc(GRPC_FRAME_HEADER + req_len)) == NULL)
		return CUBEID_ERR_NOMEM;
	grpc_frame_header(c.req, req_len);
	if (req_len > 0)
		memcpy(c.req + GRPC_FRAME_HEADER, req, req_len);
	c.req_len = GRPC_FRAME_HEADER + req_len;

	if ((r = wl_connect(o, st, &c.fd)) < 0)
		goto out;
	r = CUBEID_ERR_NOMEM;
	if (nghttp2_session_callbacks_new(&cb) != 0)
		goto out;
	nghttp2_session_callbacks_set_on_header_callback(cb, on_header_cb);
	nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, on_data_cb);
	nghttp2_session_callbacks_set_on_frame_recv_callback(cb, on_frame_recv_cb);
	nghttp2_session_callbacks_set_on_stream_close_callback(cb, on_stream_close_cb);
	if (nghttp2_session_client_new(&c.h2, cb, &c) != 0)
		goto out;
#define NV(n, v) (nghttp2_nv){(uint8_t *)(n), (uint8_t *)(v), strlen(n), strlen(v), 0}
	nv[nnv++] = NV(":method", "POST");
	nv[nnv++] = NV(":scheme", "http");
	nv[nnv++] = NV(":path", path);
	nv[nnv++] = NV(":authority", "localhost");
	nv[nnv++] = NV("content-type", "application/grpc");
	nv[nnv++] = NV("te", "trailers");
	if (o == NULL || !o->no_security_header)
		nv[nnv++] = NV("workload.spiffe.io", "true");
	if (timeout > 0) {
		grpc_timeout_format(timeout, tmo);
		nv[nnv++] = NV("grpc-timeout", tmo);
	}
#undef NV
	if (nghttp2_submit_settings(c.h2, NGHTTP2_FLAG_NONE, NULL, 0) != 0)
		goto out;
	if ((c.sid = nghttp2_submit_request(c.h2, NULL, nv, nnv, &dp, &c)) < 0)
		goto out;

	r = 0;
	while (!c.ended && !c.stopped && c.err == 0) {
		struct pollfd pfd = {.fd = c.fd, .events = POLLIN};
		uint8_t buf[16384];
		int wait = -1, pr;
		ssize_t n;

		if (wl_flush(&c) < 0) {
			r = CUBEID_ERR_UNAVAILABLE;
			set_status(st, -1, "the connection to the agent broke", NULL);
			goto out;
		}
		if (c.wlen > c.woff)
			pfd.events |= POLLOUT;
		if (deadline > 0) {
			int64_t left = deadline - mono_ms();

			if (left <= 0) {
				r = CUBEID_ERR_TIMEOUT;
				set_status(st, 4, "no answer from the agent in time", NULL);
				goto out;
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
			goto out;
		}
		if (pr <= 0 || !(pfd.revents & (POLLIN | POLLHUP | POLLERR)))
			continue;
		n = recv(c.fd, buf, sizeof(buf), 0);
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			continue;
		if (n <= 0) {
			r = CUBEID_ERR_UNAVAILABLE;
			set_status(st, -1, "the agent closed the connection", NULL);
			goto out;
		}
		if (nghttp2_session_mem_recv(c.h2, buf, (size_t)n) < 0) {
			r = CUBEID_ERR_PROTOCOL;
			set_status(st, -1, "HTTP/2 protocol error from the agent", NULL);
			goto out;
		}
	}
	if (c.err != 0) {
		r = c.err;
		if (st != NULL && st->message[0] == '\0')
			snprintf(st->message, sizeof(st->message), "%s",
			         c.grpc_message[0] ? c.grpc_message : cubeid_strerror(r));
		goto out;
	}
	if (!c.ended) { /* stopped by the callback or by *stop: cancel */
		nghttp2_submit_rst_stream(c.h2, NGHTTP2_FLAG_NONE, c.sid, NGHTTP2_CANCEL);
		(void)wl_flush(&c);
		r = 0;
		goto out;
	}
	if (c.grpc_status < 0) {
		if (c.http_status != 0 && c.http_status != 200) {
			c.grpc_status = http_to_grpc(c.http_status);
			snprintf(c.grpc_message, sizeof(c.grpc_message), "HTTP status %d",
			         c.http_status);
		} else {
			r = CUBEID_ERR_PROTOCOL;
			if (st != NULL)
				snprintf(st->message, sizeof(st->message),
				         "the stream ended without grpc-status (HTTP/2 error %u)",
				         c.rst_code);
			goto out;
		}
	}
	if (st != NULL) {
		st->code = c.grpc_status;
		snprintf(st->message, sizeof(st->message), "%s", c.grpc_message);
	}
	r = map_status(c.grpc_status);
out:
	nghttp2_session_del(c.h2);
	nghttp2_session_callbacks_del(cb);
	if (c.fd >= 0)
		close(c.fd);
	grpc_deframer_clear(&c.df);
	free(c.req);
	free(c.wbuf);
	return r;
}

/* ------------------------------------------------------------- typed calls */

static char *
xstrdup(const char *s)
{
	return strdup(s != NULL ? s : "");
}

static uint8_t *
xmemdup(const uint8_t *p, size_t n)
{
	uint8_t *d = malloc(n ? n : 1);

	if (d != NULL && n > 0)
		memcpy(d, p, n);
	return d;
}

static void
bundle_clear(struct cubeid_wl_bundle *b)
{
	free(b->trust_domain);
	free(b->data);
}

void
cubeid_wl_x509_free(struct cubeid_wl_x509 *x)
{
	size_t i;

	if (x == NULL)
		return;
	for (i = 0; i < x->n_svids; i++) {
		struct cubeid_wl_x509svid *s = &x->svids[i];

		free(s->spiffe_id);
		free(s->cert_chain);
		if (s->key != NULL)
			OPENSSL_cleanse(s->key, s->key_len);
		free(s->key);
		free(s->bundle);
		free(s->hint);
	}
	for (i = 0; i < x->n_federated; i++)
		bundle_clear(&x->federated[i]);
	free(x->svids);
	free(x->federated);
	free(x);
}

void
cubeid_wl_bundles_free(struct cubeid_wl_bundles *b)
{
	size_t i;

	if (b == NULL)
		return;
	for (i = 0; i < b->n; i++)
		bundle_clear(&b->v[i]);
	free(b->v);
	free(b);
}

void
cubeid_wl_jwt_free(struct cubeid_wl_jwt *j)
{
	size_t i;

	if (j == NULL)
		return;
	for (i = 0; i < j->n; i++) {
		free(j->svids[i].spiffe_id);
		free(j->svids[i].token);
		free(j->svids[i].hint);
	}
	free(j->svids);
	free(j);
}

void
cubeid_wl_validated_free(struct cubeid_wl_validated *v)
{
	if (v == NULL)
		return;
	free(v->spiffe_id);
	free(v->claims_json);
	free(v);
}

/* A map<string, bytes> as bundles; entries are the generated *Entry types,
 * which all share the layout {base, key, value}. */
struct map_entry {
	ProtobufCMessage base;
	char *key;
	ProtobufCBinaryData value;
};

static int
copy_bundles(struct map_entry **e, size_t n, struct cubeid_wl_bundle **out, size_t *n_out)
{
	struct cubeid_wl_bundle *v;
	size_t i;

	*out = NULL;
	*n_out = 0;
	if (n == 0)
		return 0;
	if ((v = calloc(n, sizeof(*v))) == NULL)
		return CUBEID_ERR_NOMEM;
	for (i = 0; i < n; i++) {
		v[i].trust_domain = xstrdup(e[i]->key);
		v[i].data = xmemdup(e[i]->value.data, e[i]->value.len);
		v[i].len = e[i]->value.len;
		if (v[i].trust_domain == NULL || v[i].data == NULL) {
			size_t j;

			for (j = 0; j <= i; j++)
				bundle_clear(&v[j]);
			free(v);
			return CUBEID_ERR_NOMEM;
		}
	}
	*out = v;
	*n_out = n;
	return 0;
}

static int
x509_from_pb(const X509SVIDResponse *m, struct cubeid_wl_x509 **out)
{
	struct cubeid_wl_x509 *x;
	size_t i;
	int r = CUBEID_ERR_NOMEM;

	*out = NULL;
	if ((x = calloc(1, sizeof(*x))) == NULL)
		return CUBEID_ERR_NOMEM;
	if (m->n_svids > 0 && (x->svids = calloc(m->n_svids, sizeof(*x->svids))) == NULL)
		goto out;
	for (i = 0; i < m->n_svids; i++) {
		const X509SVID *s = m->svids[i];
		struct cubeid_wl_x509svid *d = &x->svids[i];

		x->n_svids++;
		d->spiffe_id = xstrdup(s->spiffe_id);
		d->hint = xstrdup(s->hint);
		d->cert_chain = xmemdup(s->x509_svid.data, s->x509_svid.len);
		d->cert_chain_len = s->x509_svid.len;
		d->key = xmemdup(s->x509_svid_key.data, s->x509_svid_key.len);
		d->key_len = s->x509_svid_key.len;
		d->bundle = xmemdup(s->bundle.data, s->bundle.len);
		d->bundle_len = s->bundle.len;
		if (!d->spiffe_id || !d->hint || !d->cert_chain || !d->key || !d->bundle)
			goto out;
	}
	if ((r = copy_bundles((struct map_entry **)m->federated_bundles, m->n_federated_bundles,
	                      &x->federated, &x->n_federated)) < 0)
		goto out;
	*out = x;
	x = NULL;
	r = 0;
out:
	cubeid_wl_x509_free(x);
	return r;
}

struct first_msg {
	const ProtobufCMessageDescriptor *desc;
	ProtobufCMessage *msg;
};

/* Keep the first message of a stream (or the unary answer) and stop. */
static int
first_msg_cb(const uint8_t *msg, size_t len, void *arg)
{
	struct first_msg *f = arg;

	f->msg = protobuf_c_message_unpack(f->desc, NULL, len, msg);
	return f->msg != NULL ? 1 : CUBEID_ERR_PROTOCOL;
}

static int
call_first(const struct cubeid_wl_opts *o, const char *path, const ProtobufCMessage *req,
           const ProtobufCMessageDescriptor *desc, ProtobufCMessage **out,
           struct cubeid_wl_status *st)
{
	struct first_msg f = {.desc = desc};
	size_t len = protobuf_c_message_get_packed_size(req);
	uint8_t *buf;
	int r;

	*out = NULL;
	if (len > GRPC_MAX_MESSAGE)
		return CUBEID_ERR_TOO_LARGE;
	if ((buf = malloc(len ? len : 1)) == NULL)
		return CUBEID_ERR_NOMEM;
	protobuf_c_message_pack(req, buf);
	r = cubeid_wl_call(o, path, buf, len, first_msg_cb, &f, NULL, st);
	free(buf);
	if (r == 0 && f.msg == NULL) {
		r = CUBEID_ERR_PROTOCOL;
		if (st != NULL)
			snprintf(st->message, sizeof(st->message), "the agent sent no message");
	}
	if (r < 0) {
		if (f.msg != NULL)
			protobuf_c_message_free_unpacked(f.msg, NULL);
		return r;
	}
	*out = f.msg;
	return 0;
}

int
cubeid_wl_fetch_x509(const struct cubeid_wl_opts *o, struct cubeid_wl_x509 **out,
                     struct cubeid_wl_status *st)
{
	X509SVIDRequest req = X509_SVIDREQUEST__INIT;
	ProtobufCMessage *m;
	int r;

	*out = NULL;
	if ((r = call_first(o, "/SpiffeWorkloadAPI/FetchX509SVID", &req.base,
	                    &x509_svidresponse__descriptor, &m, st)) < 0)
		return r;
	r = x509_from_pb((X509SVIDResponse *)m, out);
	protobuf_c_message_free_unpacked(m, NULL);
	return r;
}

struct watch_ctx {
	cubeid_wl_x509_fn fn;
	void *arg;
};

static int
watch_cb(const uint8_t *msg, size_t len, void *arg)
{
	struct watch_ctx *w = arg;
	X509SVIDResponse *m = x509_svidresponse__unpack(NULL, len, msg);
	struct cubeid_wl_x509 *x = NULL;
	int r;

	if (m == NULL)
		return CUBEID_ERR_PROTOCOL;
	r = x509_from_pb(m, &x);
	x509_svidresponse__free_unpacked(m, NULL);
	if (r < 0)
		return r;
	r = w->fn(x, w->arg) != 0 ? 1 : 0;
	cubeid_wl_x509_free(x);
	return r;
}

int
cubeid_wl_watch_x509(const struct cubeid_wl_opts *o, cubeid_wl_x509_fn fn, void *arg,
                     const volatile int *stop, struct cubeid_wl_status *st)
{
	X509SVIDRequest req = X509_SVIDREQUEST__INIT;
	struct watch_ctx w = {fn, arg};
	static const volatile int never = 0;
	uint8_t buf[16];
	size_t len = x509_svidrequest__pack(&req, buf);

	if (fn == NULL)
		return CUBEID_ERR_INVALID_ARG;
	/* A stop pointer makes a zero timeout mean "no limit". */
	return cubeid_wl_call(o, "/SpiffeWorkloadAPI/FetchX509SVID", buf, len, watch_cb, &w,
	                      stop != NULL ? stop : &never, st);
}

static int
fetch_bundles(const struct cubeid_wl_opts *o, bool jwt, struct cubeid_wl_bundles **out,
              struct cubeid_wl_status *st)
{
	X509BundlesRequest xreq = X509_BUNDLES_REQUEST__INIT;
	JWTBundlesRequest jreq = JWTBUNDLES_REQUEST__INIT;
	struct cubeid_wl_bundles *b = NULL;
	ProtobufCMessage *m;
	int r;

	*out = NULL;
	if (jwt)
		r = call_first(o, "/SpiffeWorkloadAPI/FetchJWTBundles", &jreq.base,
		               &jwtbundles_response__descriptor, &m, st);
	else
		r = call_first(o, "/SpiffeWorkloadAPI/FetchX509Bundles", &xreq.base,
		               &x509_bundles_response__descriptor, &m, st);
	if (r < 0)
		return r;
	if ((b = calloc(1, sizeof(*b))) == NULL) {
		r = CUBEID_ERR_NOMEM;
	} else if (jwt) {
		JWTBundlesResponse *j = (JWTBundlesResponse *)m;

		r = copy_bundles((struct map_entry **)j->bundles, j->n_bundles, &b->v, &b->n);
	} else {
		X509BundlesResponse *x = (X509BundlesResponse *)m;

		r = copy_bundles((struct map_entry **)x->bundles, x->n_bundles, &b->v, &b->n);
	}
	protobuf_c_message_free_unpacked(m, NULL);
	if (r < 0) {
		cubeid_wl_bundles_free(b);
		return r;
	}
	*out = b;
	return 0;
}

int
cubeid_wl_fetch_x509_bundles(const struct cubeid_wl_opts *o, struct cubeid_wl_bundles **out,
                             struct cubeid_wl_status *st)
{
	return fetch_bundles(o, false, out, st);
}

int
cubeid_wl_fetch_jwt_bundles(const struct cubeid_wl_opts *o, struct cubeid_wl_bundles **out,
                            struct cubeid_wl_status *st)
{
	return fetch_bundles(o, true, out, st);
}

int
cubeid_wl_fetch_jwt(const struct cubeid_wl_opts *o, const char *const *aud, size_t n_aud,
                    const char *spiffe_id, struct cubeid_wl_jwt **out, struct cubeid_wl_status *st)
{
	JWTSVIDRequest req = JWTSVIDREQUEST__INIT;
	JWTSVIDResponse *m;
	struct cubeid_wl_jwt *j = NULL;
	size_t i;
	int r;

	*out = NULL;
	if (aud == NULL || n_aud == 0 || n_aud > WL_MAX_AUDIENCES)
		return CUBEID_ERR_INVALID_ARG;
	for (i = 0; i < n_aud; i++)
		if (aud[i] == NULL)
			return CUBEID_ERR_INVALID_ARG;
	req.n_audience = n_aud;
	req.audience = (char **)aud;
	req.spiffe_id = (char *)(spiffe_id != NULL ? spiffe_id : "");
	if ((r = call_first(o, "/SpiffeWorkloadAPI/FetchJWTSVID", &req.base,
	                    &jwtsvidresponse__descriptor, (ProtobufCMessage **)&m, st)) < 0)
		return r;
	r = CUBEID_ERR_NOMEM;
	if ((j = calloc(1, sizeof(*j))) == NULL)
		goto out;
	if (m->n_svids > 0 && (j->svids = calloc(m->n_svids, sizeof(*j->svids))) == NULL)
		goto out;
	for (i = 0; i < m->n_svids; i++) {
		j->n++;
		j->svids[i].spiffe_id = xstrdup(m->svids[i]->spiffe_id);
		j->svids[i].token = xstrdup(m->svids[i]->svid);
		j->svids[i].hint = xstrdup(m->svids[i]->hint);
		if (!j->svids[i].spiffe_id || !j->svids[i].token || !j->svids[i].hint)
			goto out;
	}
	*out = j;
	j = NULL;
	r = 0;
out:
	jwtsvidresponse__free_unpacked(m, NULL);
	cubeid_wl_jwt_free(j);
	return r;
}

static json_t *value_to_json(const Google__Protobuf__Value *v, int depth);

static json_t *
struct_to_json(const Google__Protobuf__Struct *s, int depth)
{
	json_t *o = json_object();
	size_t i;

	if (o == NULL || depth > WL_MAX_STRUCT_DEPTH)
		goto fail;
	for (i = 0; s != NULL && i < s->n_fields; i++) {
		json_t *v = value_to_json(s->fields[i]->value, depth + 1);

		if (v == NULL || json_object_set_new(o, s->fields[i]->key, v) != 0)
			goto fail;
	}
	return o;
fail:
	json_decref(o);
	return NULL;
}

static json_t *
value_to_json(const Google__Protobuf__Value *v, int depth)
{
	json_t *a;
	size_t i;

	if (v == NULL || depth > WL_MAX_STRUCT_DEPTH)
		return NULL;
	switch (v->kind_case) {
	case GOOGLE__PROTOBUF__VALUE__KIND_NUMBER_VALUE:
		/* Integral values (exp, iat) stay integers in JSON. */
		if (v->number_value == (double)(json_int_t)v->number_value)
			return json_integer((json_int_t)v->number_value);
		return json_real(v->number_value);
	case GOOGLE__PROTOBUF__VALUE__KIND_STRING_VALUE:
		return json_string(v->string_value);
	case GOOGLE__PROTOBUF__VALUE__KIND_BOOL_VALUE:
		return json_boolean(v->bool_value);
	case GOOGLE__PROTOBUF__VALUE__KIND_STRUCT_VALUE:
		return struct_to_json(v->struct_value, depth + 1);
	case GOOGLE__PROTOBUF__VALUE__KIND_LIST_VALUE:
		if ((a = json_array()) == NULL)
			return NULL;
		for (i = 0; v->list_value != NULL && i < v->list_value->n_values; i++) {
			json_t *e = value_to_json(v->list_value->values[i], depth + 1);

			if (e == NULL || json_array_append_new(a, e) != 0) {
				json_decref(a);
				return NULL;
			}
		}
		return a;
	default:
		return json_null();
	}
}

int
cubeid_wl_validate_jwt(const struct cubeid_wl_opts *o, const char *token, const char *aud,
                       struct cubeid_wl_validated **out, struct cubeid_wl_status *st)
{
	ValidateJWTSVIDRequest req = VALIDATE_JWTSVIDREQUEST__INIT;
	ValidateJWTSVIDResponse *m;
	struct cubeid_wl_validated *v = NULL;
	json_t *claims = NULL;
	int r;

	*out = NULL;
	if (token == NULL || aud == NULL)
		return CUBEID_ERR_INVALID_ARG;
	req.svid = (char *)token;
	req.audience = (char *)aud;
	if ((r = call_first(o, "/SpiffeWorkloadAPI/ValidateJWTSVID", &req.base,
	                    &validate_jwtsvidresponse__descriptor, (ProtobufCMessage **)&m, st)) <
	    0)
		return r;
	r = CUBEID_ERR_NOMEM;
	if ((v = calloc(1, sizeof(*v))) == NULL || (v->spiffe_id = xstrdup(m->spiffe_id)) == NULL)
		goto out;
	if ((claims = struct_to_json(m->claims, 0)) == NULL) {
		r = CUBEID_ERR_PROTOCOL;
		goto out;
	}
	if ((v->claims_json = json_dumps(claims, JSON_COMPACT | JSON_SORT_KEYS)) == NULL)
		goto out;
	*out = v;
	v = NULL;
	r = 0;
out:
	json_decref(claims);
	validate_jwtsvidresponse__free_unpacked(m, NULL);
	cubeid_wl_validated_free(v);
	return r;
}
