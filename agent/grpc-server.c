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
#include <unistd.h>

#include <cubeid/log.h>

#include "agent/grpc-internal.h"

static void conn_close(struct conn *c);

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

void
grpc_conn_doom(struct conn *c)
{
	if (c->doomed)
		return;
	c->doomed = true;
	c->drop_timer = loop_timer_add(c->srv->loop, 0, drop_timer_cb, c);
	if (c->drop_timer < 0)
		c->drop_timer = 0;
}

/* After queueing output outside nghttp2's callbacks, push it out now. */
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
	grpc_call_set_callbacks(callbacks);
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
		grpc_call_gone(c->calls);
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
 * On a dead connection it returns -1 and schedules the close (grpc_conn_doom):
 * it never frees the connection itself, so callers' calls stay valid. */
int
grpc_conn_flush(struct conn *c)
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
	grpc_conn_doom(c);
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
			c->last_active = grpc_mono_ms();
			c->in_h2++;
			rv = nghttp2_session_mem_recv(c->h2, buf, (size_t)n);
			c->in_h2--;
			if (rv < 0) {
				cubeid_debug("grpc: closing fd %d: %s", fd,
				             nghttp2_strerror((int)rv));
				/* Say GOAWAY if the socket takes it, then close. */
				nghttp2_session_terminate_session(c->h2, NGHTTP2_PROTOCOL_ERROR);
				grpc_conn_flush(c);
				conn_close(c);
				return;
			}
			if (c->doomed)
				break;
			if ((size_t)n < sizeof(buf))
				break;
		}
	}
	if (grpc_conn_flush(c) < 0)
		conn_close(c);
}

static long
idle_timer_cb(cubeid_loop *l, void *arg)
{
	struct conn *c = arg;
	uint64_t now = grpc_mono_ms();

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
		c->last_active = grpc_mono_ms();
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
		grpc_conn_flush(c);
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
