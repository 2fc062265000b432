/*
 * The agent's gRPC server, the calls: request headers (metadata, :path
 * dispatch), the request message, responses through a deferred data
 * provider, and status (trailers, or trailers-only for errors).  See the
 * lifetimes in grpc-server.c.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include <cubeid/log.h>

#include <openssl/crypto.h>

#include "agent/grpc-internal.h"

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
	grpc_peer_call_done(c);
	c->pending -= call->out_len - call->out_off;
	if (c->n_calls == 0)
		c->last_active = grpc_mono_ms();
	grpc_deframer_clear(&call->req);
	free(call->md);
	if (call->sensitive)
		secbuf_free(call->out, call->out_cap);
	else
		free(call->out);
	free(call->status_msg);
	free(call);
}

/* The stream is gone: tell the owner unless it already finished. */
void
grpc_call_gone(struct grpc_call *call)
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

void
grpc_call_set_stream(grpc_call *c, unsigned max_messages, size_t max_bytes,
                     grpc_message_fn on_message, void (*on_end)(grpc_call *c, void *user))
{
	c->in_max = max_messages;
	if (max_bytes < c->req.max)
		c->req.max = max_bytes; /* no message was buffered yet */
	c->on_message = on_message;
	c->on_end = on_end;
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
	if (n > 0 && call->sensitive) {
		/* send_data_cb() takes the bytes from call->out itself */
		*flags |= NGHTTP2_DATA_FLAG_NO_COPY;
		return (ssize_t)n;
	}
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

/* A sensitive call's DATA frame: from call->out straight to the
 * connection's output (secbuf memory), never through nghttp2's buffers. */
static int
send_data_cb(nghttp2_session *h2, nghttp2_frame *frame, const uint8_t *framehd, size_t length,
             nghttp2_data_source *src, void *user)
{
	struct grpc_call *call = src->ptr;
	struct conn *c = user;

	(void)h2;
	if (frame->data.padlen > 0 || length > call->out_len - call->out_off)
		return NGHTTP2_ERR_CALLBACK_FAILURE; /* we never ask for padding */
	if (grpc_conn_out(c, framehd, 9, false) < 0 ||
	    grpc_conn_out(c, call->out + call->out_off, length, true) < 0)
		return NGHTTP2_ERR_CALLBACK_FAILURE;
	call->out_off += length;
	c->pending -= length;
	if (call->out_off == call->out_len) {
		OPENSSL_cleanse(call->out, call->out_len);
		call->out_off = call->out_len = 0; /* reuse the buffer */
	}
	return 0;
}

void
grpc_call_set_sensitive(grpc_call *call)
{
	if (call->out != NULL && !call->sensitive) {
		/* move what is queued into secbuf memory */
		uint8_t *p = secbuf_alloc(call->out_cap);

		if (p == NULL)
			return; /* grpc_call_send() tries again */
		memcpy(p, call->out, call->out_len);
		OPENSSL_cleanse(call->out, call->out_cap);
		free(call->out);
		call->out = p;
	}
	call->sensitive = true;
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

static void
call_kick(struct grpc_call *call)
{
	struct conn *c = call->conn;

	if (call->deferred) {
		call->deferred = false;
		nghttp2_session_resume_data(c->h2, call->stream_id);
	}
	if (c->in_h2 == 0)
		grpc_conn_flush(c);
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
		grpc_conn_doom(c);
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
		if (call->sensitive) {
			/* secbuf memory: no realloc, and the old copy is wiped */
			if ((p = secbuf_alloc(cap)) == NULL)
				return CUBEID_ERR_NOMEM;
			if (call->out_len > 0)
				memcpy(p, call->out, call->out_len);
			secbuf_free(call->out, call->out_cap);
		} else if ((p = realloc(call->out, cap)) == NULL) {
			return CUBEID_ERR_NOMEM;
		}
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
			grpc_conn_flush(call->conn);
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
	if (c->n_calls >= c->srv->lim.max_streams || !grpc_peer_call_take(c)) {
		c->why = c->n_calls >= c->srv->lim.max_streams
		                 ? "the connection's stream limit is reached"
		                 : "this user's stream share is used up";
		nghttp2_submit_rst_stream(h2, NGHTTP2_FLAG_NONE, frame->hd.stream_id,
		                          NGHTTP2_REFUSED_STREAM);
		return 0; /* no call: the rest of the stream is ignored */
	}
	if ((call = calloc(1, sizeof(*call))) == NULL) {
		grpc_peer_call_done(c);
		return NGHTTP2_ERR_CALLBACK_FAILURE;
	}
	call->conn = c;
	call->stream_id = frame->hd.stream_id;
	grpc_deframer_init(&call->req, c->srv->lim.max_message);
	grpc_http_init(&call->http);
	call->next = c->calls;
	if (c->calls != NULL)
		c->calls->prev = call;
	c->calls = call;
	c->n_calls++;
	nghttp2_session_set_stream_user_data(h2, frame->hd.stream_id, call);
	return 0;
}

/* The stream broke the HTTP/2 request rules (grpc-http.c): reset it with
 * PROTOCOL_ERROR, as nghttp2 would, and ignore the rest of its input.  The
 * reset is logged when it goes out (grpc-server.c). */
static void
call_refuse(struct grpc_call *call, const char *why)
{
	struct conn *c = call->conn;

	if (call->refused != NULL)
		return;
	call->refused = why;
	call->dispatched = true; /* no handler, no answer but the reset */
	grpc_conn_protocol_error(c, why);
	if (nghttp2_submit_rst_stream(c->h2, NGHTTP2_FLAG_NONE, call->stream_id,
	                              NGHTTP2_PROTOCOL_ERROR) != 0)
		grpc_conn_doom(c);
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
	const char *why;
	bool trailer;
	size_t i;

	/* Every field counts toward the connection's turn, whatever it is. */
	c->turn++;
	if (frame->hd.type != NGHTTP2_HEADERS || (frame->headers.cat != NGHTTP2_HCAT_REQUEST &&
	                                          frame->headers.cat != NGHTTP2_HCAT_HEADERS))
		return c->turn >= GRPC_TURN_FIELDS ? NGHTTP2_ERR_PAUSE : 0;
	trailer = frame->headers.cat == NGHTTP2_HCAT_HEADERS;
	call = nghttp2_session_get_stream_user_data(h2, frame->hd.stream_id);
	if (call == NULL || call->refused != NULL)
		return c->turn >= GRPC_TURN_FIELDS ? NGHTTP2_ERR_PAUSE : 0;
	if (grpc_http_field(&call->http, name, nlen, value, vlen, trailer, &why) < 0) {
		call_refuse(call, why);
		return c->turn >= GRPC_TURN_FIELDS ? NGHTTP2_ERR_PAUSE : 0;
	}
	if (trailer) /* trailers carry no metadata for the handler */
		return c->turn >= GRPC_TURN_FIELDS ? NGHTTP2_ERR_PAUSE : 0;
	call->hdr_bytes += nlen + vlen + 32;
	if (call->hdr_bytes > GRPC_MAX_HEADER_LIST_ABUSE) {
		/* logged with the GOAWAY that ends the connection */
		grpc_conn_protocol_error(c, "a request's header list passed four times the "
		                            "advertised limit (an HPACK bomb?)");
		return NGHTTP2_ERR_CALLBACK_FAILURE;
	}
	if (call->hdr_bytes > GRPC_MAX_METADATA)
		call->bad_header = true;
	if (nlen > 0 && name[0] == ':') {
		if (str_eq(name, nlen, ":method"))
			call->post = str_eq(value, vlen, "POST");
		else if (str_eq(name, nlen, ":path"))
			for (i = 0; i < c->srv->n_methods; i++)
				if (str_eq(value, vlen, c->srv->methods[i].path)) {
					call->method = &c->srv->methods[i];
					break;
				}
		return c->turn >= GRPC_TURN_FIELDS ? NGHTTP2_ERR_PAUSE : 0;
	}
	if (str_eq(name, nlen, "content-type"))
		/* "application/grpc" or "application/grpc+proto" ... */
		call->grpc_ct = vlen >= 16 && memcmp(value, "application/grpc", 16) == 0 &&
		                (vlen == 16 || value[16] == '+' || value[16] == ';');
	if (md_add(call, name, nlen, value, vlen) < 0)
		call->bad_header = true;
	return c->turn >= GRPC_TURN_FIELDS ? NGHTTP2_ERR_PAUSE : 0;
}

/* The status for a request the deframer refused (req_err), or for a
 * request that is not one whole message. */
static void
request_error(struct grpc_call *call, int err)
{
	char m[96];

	if (err == CUBEID_ERR_TOO_LARGE) {
		snprintf(m, sizeof(m), "request message larger than %zu bytes", call->req.max);
		grpc_call_finish(call, GRPC_RESOURCE_EXHAUSTED, m);
	} else if (err == CUBEID_ERR_UNSUPPORTED) {
		grpc_call_finish(call, GRPC_UNIMPLEMENTED,
		                 "compressed messages are not supported (no grpc-encoding)");
	} else {
		grpc_call_finish(call, GRPC_INVALID_ARGUMENT, "malformed request message");
	}
}

/* DATA of a client-streaming call: each whole message goes to its handler
 * at once, up to in_max of them; a bad one ends the call. */
static void
stream_data(struct grpc_call *call, const uint8_t *data, size_t len)
{
	while (!call->finished && len > 0) {
		const uint8_t *msg;
		size_t used, mlen;
		int r = grpc_deframer_push(&call->req, data, len, &used, &msg, &mlen);

		data += used;
		len -= used;
		if (r < 0) {
			grpc_deframer_clear(&call->req);
			request_error(call, r);
		} else if (r == 1) {
			call->conn->got_request = true;
			if (++call->in_count > call->in_max || call->on_message == NULL)
				grpc_call_finish(call, GRPC_RESOURCE_EXHAUSTED,
				                 "too many request messages on one stream");
			else
				call->on_message(call, call->user, msg, mlen);
		}
	}
}

/* The client half-closed a client-streaming call. */
static void
stream_end(struct grpc_call *call)
{
	if (call->finished)
		return;
	if (!grpc_deframer_idle(&call->req))
		grpc_call_finish(call, GRPC_INVALID_ARGUMENT,
		                 "the last request message is cut short");
	else if (call->on_end != NULL)
		call->on_end(call, call->user);
	else
		grpc_call_finish(call, GRPC_OK, NULL);
}

static int
on_data_chunk_cb(nghttp2_session *h2, uint8_t flags, int32_t stream_id, const uint8_t *data,
                 size_t len, void *user)
{
	struct grpc_call *call = nghttp2_session_get_stream_user_data(h2, stream_id);
	const char *why;

	if (call == NULL || call->refused != NULL)
		return 0;
	if ((why = grpc_http_data(&call->http, len)) != NULL) {
		call_refuse(call, why);
		return 0;
	}
	if (call->streaming_in) {
		stream_data(call, data, len);
		return 0;
	}
	while (!call->dispatched && call->req_err == 0 && len > 0) {
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
	} else if (call->method->streams & GRPC_STREAM_CLIENT) {
		/* the handler runs now and takes the messages as they come */
		call->dispatched = call->streaming_in = true;
		call->method->fn(call, call->conn->srv->ctx);
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
	const char *why = NULL;

	if (frame->hd.type != NGHTTP2_HEADERS && frame->hd.type != NGHTTP2_DATA)
		return 0;
	call = nghttp2_session_get_stream_user_data(h2, frame->hd.stream_id);
	if (call == NULL || call->refused != NULL)
		return 0;
	if (frame->hd.type == NGHTTP2_HEADERS && frame->headers.cat == NGHTTP2_HCAT_REQUEST)
		why = grpc_http_request_end(&call->http);
	else if (frame->hd.type == NGHTTP2_HEADERS && !(frame->hd.flags & NGHTTP2_FLAG_END_STREAM))
		why = "trailers that do not end the stream";
	if (why == NULL && (frame->hd.flags & NGHTTP2_FLAG_END_STREAM))
		why = grpc_http_end_stream(&call->http);
	if (why != NULL) {
		call_refuse(call, why);
		return 0;
	}
	if (frame->hd.type == NGHTTP2_HEADERS && frame->headers.cat == NGHTTP2_HCAT_REQUEST)
		check_headers(call);
	if (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) {
		call->conn->got_request = true;
		if (call->streaming_in)
			stream_end(call);
		else
			dispatch(call);
	}
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
	grpc_call_gone(call);
	return 0;
}

void
grpc_call_set_callbacks(nghttp2_session_callbacks *cb)
{
	nghttp2_session_callbacks_set_on_begin_headers_callback(cb, on_begin_headers_cb);
	nghttp2_session_callbacks_set_on_header_callback(cb, on_header_cb);
	nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, on_data_chunk_cb);
	nghttp2_session_callbacks_set_on_frame_recv_callback(cb, on_frame_recv_cb);
	nghttp2_session_callbacks_set_on_stream_close_callback(cb, on_stream_close_cb);
	nghttp2_session_callbacks_set_send_data_callback(cb, send_data_cb);
}
