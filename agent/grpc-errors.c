/*
 * The gRPC server's HTTP/2 errors: every RST_STREAM it sends and every
 * GOAWAY with an error code is logged, with the peer's pid and uid (from
 * SO_PEERCRED at accept) and the reason, and counted for /metrics.  The
 * reason comes from grpc-http.c's request rules, from nghttp2 (an invalid
 * frame, or its error callback), or from a stream or connection limit.
 * The log goes through a token bucket per server, so that a client that
 * sends nothing but errors costs a few lines, not a line each.
 */
#include "config.h"

#include <stdarg.h>
#include <stdio.h>

#include <cubeid/log.h>

#include "agent/grpc-internal.h"

#define GRPC_LOG_BURST 20
#define GRPC_LOG_RATE  2 /* lines per second, after the burst */

void
grpc_conn_log(struct conn *c, const char *fmt, ...)
{
	grpc_server *s = c->srv;
	uint64_t now = grpc_mono_ms();
	char msg[384];
	va_list ap;

	if (s->log_refilled == 0)
		s->log_tokens = GRPC_LOG_BURST;
	else
		s->log_tokens += (double)(now - s->log_refilled) * GRPC_LOG_RATE / 1000.0;
	if (s->log_tokens > GRPC_LOG_BURST)
		s->log_tokens = GRPC_LOG_BURST;
	s->log_refilled = now;
	if (s->log_tokens < 1) {
		s->log_suppressed++;
		return;
	}
	s->log_tokens -= 1;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (s->log_suppressed > 0)
		cubeid_notice("grpc: %s (peer pid %ld uid %ld; %lu more HTTP/2 errors not logged)",
		              msg, (long)c->pid, c->uid == (uid_t)-1 ? -1L : (long)c->uid,
		              s->log_suppressed);
	else
		cubeid_notice("grpc: %s (peer pid %ld uid %ld)", msg, (long)c->pid,
		              c->uid == (uid_t)-1 ? -1L : (long)c->uid);
	s->log_suppressed = 0;
}

void
grpc_conn_protocol_error(struct conn *c, const char *why)
{
	c->srv->counters.protocol_errors++;
	c->why = why;
}

/* Printable ASCII only: what a client made nghttp2 say goes to the log. */
static void
why_copy(struct conn *c, const char *p, size_t n)
{
	size_t i;

	if (n > sizeof(c->why_buf) - 1)
		n = sizeof(c->why_buf) - 1;
	for (i = 0; i < n; i++)
		c->why_buf[i] = p[i] >= 0x20 && p[i] < 0x7f ? p[i] : '?';
	c->why_buf[n] = '\0';
	c->why = c->why_buf;
}

/* nghttp2 found a frame that breaks HTTP/2: it resets the stream or ends
 * the connection next; say why when that frame goes out. */
static int
on_invalid_frame_recv_cb(nghttp2_session *h2, const nghttp2_frame *frame, int lib_error, void *user)
{
	struct conn *c = user;
	char m[128];
	int n;

	(void)h2;
	if (frame->hd.type == NGHTTP2_GOAWAY && frame->hd.stream_id == 0 &&
	    frame->goaway.error_code == NGHTTP2_NO_ERROR) {
		/* grpc-go says goodbye with GOAWAY(NO_ERROR) naming its own
		 * last stream, an odd id, which nghttp2 refuses as a server
		 * ("invalid last_stream_id") and answers with PROTOCOL_ERROR.
		 * The client is leaving cleanly: that is no abuse to charge
		 * its uid with, and no error worth a notice per connection. */
		c->peer_left = true;
		return 0;
	}
	n = snprintf(m, sizeof(m), "%s (a frame of type %u on stream %d)",
	             nghttp2_strerror(lib_error), (unsigned)frame->hd.type, frame->hd.stream_id);
	c->srv->counters.protocol_errors++;
	why_copy(c, m, n > 0 ? (size_t)n : 0);
	return 0;
}

static int
on_error_cb(nghttp2_session *h2, int lib_error, const char *msg, size_t len, void *user)
{
	struct conn *c = user;

	(void)h2;
	(void)lib_error;
	c->srv->counters.protocol_errors++;
	why_copy(c, msg, len);
	return 0;
}

/* Every RST_STREAM the server sends, and every GOAWAY with an error, is
 * logged with the peer and the reason, and counted. */
static int
on_frame_send_cb(nghttp2_session *h2, const nghttp2_frame *frame, void *user)
{
	struct conn *c = user;
	struct grpc_call *call;
	const char *why;

	if (frame->hd.type == NGHTTP2_RST_STREAM) {
		c->srv->counters.stream_resets++;
		call = nghttp2_session_get_stream_user_data(h2, frame->hd.stream_id);
		why = call != NULL && call->refused != NULL ? call->refused : c->why;
		grpc_conn_log(c, "reset stream %d with %s: %s", frame->hd.stream_id,
		              nghttp2_http2_strerror(frame->rst_stream.error_code),
		              why != NULL ? why : "(no detail)");
		if (why == c->why)
			c->why = NULL;
	} else if (frame->hd.type == NGHTTP2_GOAWAY &&
	           frame->goaway.error_code != NGHTTP2_NO_ERROR) {
		char reason[96];
		size_t i, n = frame->goaway.opaque_data_len;

		if (n > sizeof(reason) - 1)
			n = sizeof(reason) - 1;
		for (i = 0; i < n; i++) {
			uint8_t b = frame->goaway.opaque_data[i];

			reason[i] = b >= 0x20 && b < 0x7f ? (char)b : '?';
		}
		reason[n] = '\0';
		if (c->peer_left) {
			cubeid_debug("grpc: the peer said goodbye with GOAWAY(NO_ERROR) on its own "
			             "stream id, which nghttp2 refuses (peer pid %ld uid %ld)",
			             (long)c->pid, (long)c->uid);
			c->why = NULL;
			return 0;
		}
		c->srv->counters.goaways++;
		grpc_conn_strike(c); /* its uid's next connections wait a little */
		grpc_conn_log(c, "ending the connection (GOAWAY) with %s: %s%s%s",
		              nghttp2_http2_strerror(frame->goaway.error_code),
		              c->why != NULL ? c->why : (n > 0 ? reason : "(no detail)"),
		              c->why != NULL && n > 0 ? "; " : "",
		              c->why != NULL && n > 0 ? reason : "");
		c->why = NULL;
	}
	return 0;
}

void
grpc_server_counters(const grpc_server *s, struct grpc_counters *out)
{
	*out = s->counters;
}

void
grpc_errors_set_callbacks(nghttp2_session_callbacks *cb)
{
	nghttp2_session_callbacks_set_on_invalid_frame_recv_callback(cb, on_invalid_frame_recv_cb);
	nghttp2_session_callbacks_set_error_callback2(cb, on_error_cb);
	nghttp2_session_callbacks_set_on_frame_send_callback(cb, on_frame_send_cb);
}
