/*
 * libFuzzer target: the gRPC server's HTTP/2 request rules (agent/grpc-
 * http.c) against nghttp2's own, differentially.  The input describes one
 * request on stream 1: header fields (names and values from a dictionary
 * or raw bytes), an optional DATA frame and optional trailers.  The same
 * bytes go to two nghttp2 server sessions:
 *   - nghttp2's HTTP messaging on (what the agent did before);
 *   - HTTP messaging off, with grpc-http.c in the callbacks exactly as
 *     agent/grpc-call.c calls it (what the agent does now).
 * Both must reset the stream (or end the connection) for the same inputs,
 * with the two deliberate differences:
 *   - :authority takes any value without control characters (a socket
 *     path, empty...): before nghttp2 sees it, each such value is made
 *     "x", which nghttp2 accepts;
 *   - CONNECT is refused (nghttp2 accepts it with :authority alone).
 * An input that the new rules accept and nghttp2's refused aborts: that
 * would be a loosened check.  FUZZ_GRPC_HTTP_DEBUG=1 prints both verdicts
 * (to replay one input: fuzz/fuzz-grpc-http FILE).
 */
#include "config.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/grpc-internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const names[] = {
        ":method",
        ":path",
        ":scheme",
        ":authority",
        "host",
        "te",
        "content-length",
        "connection",
        "content-type",
        ":status",
        ":protocol",
        "upgrade",
        "keep-alive",
        "transfer-encoding",
        "proxy-connection",
        "Content-Length",
};
static const char *const values[] = {
        "POST",       "/a", "http", "trailers", "5",         "CONNECT",
        "OPTIONS",    "*",  "",     "https",    "localhost", "/run/cubeid/agent.sock",
        "%2Frun%2Fx", "0",  "GET",  " x",
};

struct field {
	const uint8_t *name, *value;
	size_t nlen, vlen;
};

#define MAX_FIELDS 24

struct req {
	struct field hdr[MAX_FIELDS], trl[MAX_FIELDS];
	size_t nhdr, ntrl;
	bool body, trailers, trailers_end, headers_end;
	size_t dlen;
	bool connect;
};

/* Take n bytes from the input, or a dictionary entry when the length byte
 * has its top bit set. */
static bool
take(const uint8_t **p, const uint8_t *end, const char *const *dict, size_t ndict,
     const uint8_t **out, size_t *len)
{
	uint8_t b;

	if (*p >= end)
		return false;
	b = *(*p)++;
	if (b & 0x80) {
		*out = (const uint8_t *)dict[b % ndict];
		*len = strlen(dict[b % ndict]);
		return true;
	}
	*len = b % 40;
	if ((size_t)(end - *p) < *len)
		return false;
	*out = *p;
	*p += *len;
	return true;
}

static void
parse(const uint8_t *data, size_t size, struct req *r)
{
	const uint8_t *p = data + 2, *end = data + size;
	bool in_trailers = false;

	memset(r, 0, sizeof(*r));
	r->body = data[0] & 1;
	r->trailers = data[0] & 2;
	r->trailers_end = data[0] & 4;
	r->headers_end = data[0] & 8;
	r->dlen = data[1] % 24;
	while (p < end) {
		struct field f;

		if (*p == 0x7f) { /* switch to the trailers */
			p++;
			in_trailers = true;
			continue;
		}
		if (!take(&p, end, names, sizeof(names) / sizeof(names[0]), &f.name, &f.nlen) ||
		    !take(&p, end, values, sizeof(values) / sizeof(values[0]), &f.value, &f.vlen))
			break;
		if (f.nlen == 7 && memcmp(f.name, ":method", 7) == 0 && f.vlen == 7 &&
		    memcmp(f.value, "CONNECT", 7) == 0)
			r->connect = true;
		if (in_trailers && r->ntrl < MAX_FIELDS)
			r->trl[r->ntrl++] = f;
		else if (!in_trailers && r->nhdr < MAX_FIELDS)
			r->hdr[r->nhdr++] = f;
	}
}

/* ------------------------------------------------------------- wire */

struct out {
	uint8_t b[8192];
	size_t n;
};

static void
frame_hdr(struct out *o, size_t len, uint8_t type, uint8_t flags)
{
	uint8_t sid = type == 0x4 ? 0 : 1;
	uint8_t h[9] = {
	        (uint8_t)(len >> 16), (uint8_t)(len >> 8), (uint8_t)len, type, flags, 0, 0, 0, sid};

	memcpy(o->b + o->n, h, 9);
	o->n += 9;
}

/* A field's value as nghttp2 gets it in the "before" session. */
static void
before_value(const struct field *f, const uint8_t **v, size_t *vlen)
{
	const char *why;
	struct grpc_http h;
	bool authority = f->nlen == 10 && memcmp(f->name, ":authority", 10) == 0;

	*v = f->value;
	*vlen = f->vlen;
	grpc_http_init(&h);
	/* a value the new rules take as :authority is "x" for nghttp2 */
	if (authority &&
	    grpc_http_field(&h, f->name, f->nlen, f->value, f->vlen, false, &why) == 0) {
		*v = (const uint8_t *)"x";
		*vlen = 1;
	}
}

static void
put_fields(struct out *o, const struct field *f, size_t n, bool before)
{
	size_t i;

	for (i = 0; i < n; i++) {
		const uint8_t *v;
		size_t vlen;

		if (before)
			before_value(&f[i], &v, &vlen);
		else {
			v = f[i].value;
			vlen = f[i].vlen;
		}
		o->b[o->n++] = 0x00; /* literal without indexing, new name */
		o->b[o->n++] = (uint8_t)f[i].nlen;
		memcpy(o->b + o->n, f[i].name, f[i].nlen);
		o->n += f[i].nlen;
		o->b[o->n++] = (uint8_t)vlen;
		memcpy(o->b + o->n, v, vlen);
		o->n += vlen;
	}
}

static void
wire(const struct req *r, bool before, struct out *o)
{
	static const char preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
	size_t at;

	o->n = 0;
	memcpy(o->b, preface, sizeof(preface) - 1);
	o->n = sizeof(preface) - 1;
	frame_hdr(o, 0, 0x4, 0);
	at = o->n;
	o->n += 9;
	put_fields(o, r->hdr, r->nhdr, before);
	{
		size_t len = o->n - at - 9, save = o->n;

		o->n = at;
		frame_hdr(o, len, 0x1,
		          0x4 | (!r->body && !r->trailers && r->headers_end ? 0x1 : 0));
		o->n = save;
	}
	if (r->body) {
		frame_hdr(o, r->dlen, 0x0, r->trailers ? 0 : 0x1);
		memset(o->b + o->n, 0, r->dlen);
		o->n += r->dlen;
	}
	if (r->trailers) {
		at = o->n;
		o->n += 9;
		put_fields(o, r->trl, r->ntrl, before);
		{
			size_t len = o->n - at - 9, save = o->n;

			o->n = at;
			frame_hdr(o, len, 0x1, 0x4 | (r->trailers_end ? 0x1 : 0));
			o->n = save;
		}
	}
}

/* ------------------------------------------------------------- sessions */

struct run {
	bool after; /* the new rules in the callbacks */
	struct grpc_http http;
	bool refused; /* by grpc-http.c */
	bool reset;   /* RST_STREAM or GOAWAY went out */
};

static void
refuse(nghttp2_session *h2, struct run *run)
{
	if (run->refused)
		return;
	run->refused = true;
	nghttp2_submit_rst_stream(h2, NGHTTP2_FLAG_NONE, 1, NGHTTP2_PROTOCOL_ERROR);
}

static int
on_begin_headers(nghttp2_session *h2, const nghttp2_frame *frame, void *user)
{
	(void)h2;
	(void)frame;
	(void)user;
	return 0;
}

static int
on_header(nghttp2_session *h2, const nghttp2_frame *frame, const uint8_t *name, size_t nlen,
          const uint8_t *value, size_t vlen, uint8_t flags, void *user)
{
	struct run *run = user;
	const char *why;

	(void)flags;
	if (!run->after || run->refused || frame->hd.type != NGHTTP2_HEADERS ||
	    (frame->headers.cat != NGHTTP2_HCAT_REQUEST &&
	     frame->headers.cat != NGHTTP2_HCAT_HEADERS))
		return 0;
	if (grpc_http_field(&run->http, name, nlen, value, vlen,
	                    frame->headers.cat == NGHTTP2_HCAT_HEADERS, &why) < 0)
		refuse(h2, run);
	return 0;
}

static int
on_data_chunk(nghttp2_session *h2, uint8_t flags, int32_t stream_id, const uint8_t *data,
              size_t len, void *user)
{
	struct run *run = user;

	(void)flags;
	(void)stream_id;
	(void)data;
	if (run->after && !run->refused && grpc_http_data(&run->http, len) != NULL)
		refuse(h2, run);
	return 0;
}

static int
on_frame_recv(nghttp2_session *h2, const nghttp2_frame *frame, void *user)
{
	struct run *run = user;
	const char *why = NULL;

	if (!run->after || run->refused ||
	    (frame->hd.type != NGHTTP2_HEADERS && frame->hd.type != NGHTTP2_DATA))
		return 0;
	if (frame->hd.type == NGHTTP2_HEADERS && frame->headers.cat == NGHTTP2_HCAT_REQUEST)
		why = grpc_http_request_end(&run->http);
	else if (frame->hd.type == NGHTTP2_HEADERS && !(frame->hd.flags & NGHTTP2_FLAG_END_STREAM))
		why = "trailers that do not end the stream";
	if (why == NULL && (frame->hd.flags & NGHTTP2_FLAG_END_STREAM))
		why = grpc_http_end_stream(&run->http);
	if (why != NULL)
		refuse(h2, run);
	return 0;
}

static int
on_frame_send(nghttp2_session *h2, const nghttp2_frame *frame, void *user)
{
	struct run *run = user;

	(void)h2;
	if ((frame->hd.type == NGHTTP2_RST_STREAM && frame->hd.stream_id == 1) ||
	    frame->hd.type == NGHTTP2_GOAWAY)
		run->reset = true;
	return 0;
}

/* Feed the bytes; whether stream 1 was reset or the connection ended. */
static bool
session_resets(const struct out *o, bool after)
{
	static nghttp2_session_callbacks *cb;
	static nghttp2_option *opt_before, *opt_after;
	nghttp2_session *h2;
	struct run run = {.after = after};
	const uint8_t *p;
	ssize_t n;

	if (cb == NULL) {
		if (nghttp2_session_callbacks_new(&cb) != 0 ||
		    nghttp2_option_new(&opt_before) != 0 || nghttp2_option_new(&opt_after) != 0)
			abort();
		nghttp2_session_callbacks_set_on_begin_headers_callback(cb, on_begin_headers);
		nghttp2_session_callbacks_set_on_header_callback(cb, on_header);
		nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, on_data_chunk);
		nghttp2_session_callbacks_set_on_frame_recv_callback(cb, on_frame_recv);
		nghttp2_session_callbacks_set_on_frame_send_callback(cb, on_frame_send);
		nghttp2_option_set_no_http_messaging(opt_after, 1);
	}
	grpc_http_init(&run.http);
	if (nghttp2_session_server_new2(&h2, cb, &run, after ? opt_after : opt_before) != 0)
		abort();
	if (nghttp2_session_mem_recv(h2, o->b, o->n) < 0)
		run.reset = true;
	while ((n = nghttp2_session_mem_send(h2, &p)) > 0)
		;
	nghttp2_session_del(h2);
	return run.reset;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct req r;
	struct out before, after;
	bool reset_before, reset_after;

	if (size < 2 || size > 2048)
		return 0;
	parse(data, size, &r);
	wire(&r, true, &before);
	wire(&r, false, &after);
	reset_before = session_resets(&before, false);
	reset_after = session_resets(&after, true);
	if (getenv("FUZZ_GRPC_HTTP_DEBUG") != NULL)
		fprintf(stderr, "before %d after %d\n", reset_before, reset_after);
	if (reset_before && !reset_after) {
		fprintf(stderr, "grpc-http.c accepts a request that nghttp2 resets\n");
		abort();
	}
	if (!reset_before && reset_after && !r.connect) {
		fprintf(stderr, "grpc-http.c resets a request that nghttp2 accepts\n");
		abort();
	}
	return 0;
}
