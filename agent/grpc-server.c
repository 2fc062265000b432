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

#include <openssl/crypto.h>

#include "agent/grpc-internal.h"

static void conn_close(struct conn *c);
static void wbuf_release(struct conn *c);

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
	grpc_errors_set_callbacks(callbacks);
	if (nghttp2_option_new(&h2_option) != 0)
		return;
	/* nghttp2's HTTP messaging checks :authority as a host name and
	 * resets the stream of grpc-java, which sends the socket's path: it is
	 * off, and grpc-http.c enforces the same request rules instead, with
	 * :authority taking any value. */
	nghttp2_option_set_no_http_messaging(h2_option, 1);
	/* Don't let a client park unbounded reserved/closed stream state. */
	nghttp2_option_set_max_reserved_remote_streams(h2_option, 0);
	/* Rapid reset: a connection that resets streams faster than this is
	 * torn down (GOAWAY); each turn is bounded besides (GRPC_TURN_FIELDS). */
	nghttp2_option_set_stream_reset_rate_limit(h2_option, GRPC_RESET_BURST, GRPC_RESET_RATE);
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

/* ------------------------------------------------------------- peers */

static unsigned
peer_bucket(uid_t uid)
{
	return (unsigned)((uint32_t)uid * 2654435761u >> 26) % GRPC_PEER_BUCKETS;
}

/* Nothing holds it, and its cost is forgotten. */
static bool
peer_idle(struct grpc_peer *p, uint64_t now_ns)
{
	return p->conns == 0 && p->calls == 0 && p->busy == 0 && !p->ready &&
	       grpc_peer_cost(p, now_ns) < GRPC_COST_FORGET;
}

/* The share of uid, made on first use; NULL without memory.  Peers kept
 * for their cost alone are dropped here once it has decayed. */
static struct grpc_peer *
peer_get(grpc_server *s, uid_t uid)
{
	struct grpc_peer **head = &s->peers[peer_bucket(uid)], **pp, *p;
	uint64_t now = grpc_mono_ns();

	for (pp = head; (p = *pp) != NULL;) {
		if (p->uid == uid)
			return p;
		if (peer_idle(p, now)) {
			*pp = p->next;
			free(p);
			continue;
		}
		pp = &p->next;
	}
	if ((p = calloc(1, sizeof(*p))) == NULL)
		return NULL;
	p->uid = uid;
	p->next = *head;
	*head = p;
	return p;
}

/* Drop uid's share once it holds nothing and its cost is forgotten (a
 * flooder that reconnects must find its cost again). */
static void
peer_put(grpc_server *s, struct grpc_peer *peer)
{
	struct grpc_peer **pp;

	if (peer == NULL || peer == &s->anon || !peer_idle(peer, grpc_mono_ns()))
		return;
	for (pp = &s->peers[peer_bucket(peer->uid)]; *pp != NULL; pp = &(*pp)->next)
		if (*pp == peer) {
			*pp = peer->next;
			free(peer);
			return;
		}
}

bool
grpc_peer_call_take(struct conn *c)
{
	if (c->peer == NULL)
		return true;
	if (c->peer->calls >= c->srv->lim.max_streams_per_uid)
		return false;
	c->peer->calls++;
	return true;
}

void
grpc_peer_call_done(struct conn *c)
{
	if (c->peer != NULL && c->peer->calls > 0)
		c->peer->calls--;
}

/* A refusal is logged at most once a second, with how many were refused
 * since: a flood must not also flood the log. */
static void
refusal_log(grpc_server *s, const char *why, uid_t uid)
{
	uint64_t now = grpc_mono_ms();

	s->refused++;
	if (now - s->refused_logged < 1000 && s->refused_logged != 0)
		return;
	cubeid_warn("grpc: refusing connections: %s (uid %u; %lu refused in the last second)", why,
	            (unsigned)uid, s->refused);
	s->refused_logged = now;
	s->refused = 0;
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
	loop_timer_del(s->loop, c->hold_timer);
	grpc_sched_remove(c);
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
	if (c->peer != NULL) {
		c->peer->conns--;
		peer_put(s, c->peer);
	}
	wbuf_release(c);
	free(c->rbuf);
	free(c);
}

/* ------------------------------------------------------------- output */

static void
wbuf_release(struct conn *c)
{
	if (c->wbuf_secret)
		secbuf_free(c->wbuf, c->wcap);
	else
		free(c->wbuf);
	c->wbuf = NULL;
	c->wlen = c->woff = c->wcap = 0;
	c->wbuf_secret = false;
}

/* Keep n bytes after what waits in c->wbuf (secret: in secbuf memory). */
static int
wbuf_append(struct conn *c, const uint8_t *p, size_t n, bool secret)
{
	size_t have = c->wlen - c->woff;

	if (c->woff > 0 && have + n > c->wcap - c->woff) {
		memmove(c->wbuf, c->wbuf + c->woff, have);
		c->woff = 0;
		c->wlen = have;
	}
	if (c->wlen + n > c->wcap || (secret && !c->wbuf_secret)) {
		size_t cap = c->wcap > 0 ? c->wcap : 4096;
		bool sec = secret || c->wbuf_secret;
		uint8_t *nb;

		while (cap < c->wlen + n)
			cap *= 2;
		if ((nb = sec ? secbuf_alloc(cap) : malloc(cap)) == NULL)
			return -1;
		if (have > 0)
			memcpy(nb, c->wbuf + c->woff, have);
		c->wlen = have;
		c->woff = 0;
		if (c->wbuf_secret)
			secbuf_free(c->wbuf, c->wcap);
		else
			free(c->wbuf);
		c->wbuf = nb;
		c->wcap = cap;
		c->wbuf_secret = sec;
	}
	memcpy(c->wbuf + c->wlen, p, n);
	c->wlen += n;
	c->pending += n;
	return 0;
}

/* send() as much of p as the socket takes; 0 or -1 (dead). */
static int
send_some(struct conn *c, const uint8_t *p, size_t n, size_t *sent)
{
	ssize_t w;

	*sent = 0;
	while (*sent < n) {
		w = send(c->fd, p + *sent, n - *sent, MSG_NOSIGNAL);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return 0;
			return -1;
		}
		*sent += (size_t)w;
	}
	return 0;
}

/* Send what the flush gathered; what the socket refuses goes to wbuf. */
static int
obuf_push(struct conn *c)
{
	grpc_server *s = c->srv;
	size_t sent = 0;
	int r = 0;

	if (s->olen == 0)
		return 0;
	if (c->wlen == c->woff && send_some(c, s->obuf, s->olen, &sent) < 0)
		r = -1;
	else if (sent < s->olen && wbuf_append(c, s->obuf + sent, s->olen - sent, s->osecret) < 0)
		r = -1;
	if (s->osecret)
		OPENSSL_cleanse(s->obuf, s->olen);
	s->olen = 0;
	s->osecret = false;
	return r;
}

int
grpc_conn_out(struct conn *c, const uint8_t *p, size_t n, bool secret)
{
	grpc_server *s = c->srv;
	size_t sent;

	if (c->wlen > c->woff) /* the socket is full: keep the order */
		return wbuf_append(c, p, n, secret);
	if (n > GRPC_SENDBUF - s->olen) {
		if (obuf_push(c) < 0)
			return -1;
		if (c->wlen > c->woff)
			return wbuf_append(c, p, n, secret);
		if (n > GRPC_SENDBUF) { /* bigger than the buffer: straight out */
			if (send_some(c, p, n, &sent) < 0)
				return -1;
			return sent < n ? wbuf_append(c, p + sent, n - sent, secret) : 0;
		}
	}
	memcpy(s->obuf + s->olen, p, n);
	s->olen += n;
	s->osecret |= secret;
	return 0;
}

/* Write what nghttp2 has, as long as the socket takes it: its frames are
 * gathered in the server's send buffer and go out in one send() (a reply
 * is HEADERS, DATA and trailers: three frames).  Anything the socket
 * refuses waits in wbuf, and the fd is watched for writability; nghttp2 is
 * not asked for more until wbuf is empty.  On a dead connection it returns
 * -1 and schedules the close (grpc_conn_doom): it never frees the
 * connection itself, so callers' calls stay valid. */
int
grpc_conn_flush(struct conn *c)
{
	size_t sent;

	if (c->doomed)
		return -1;
	if (c->wlen > c->woff) {
		if (send_some(c, c->wbuf + c->woff, c->wlen - c->woff, &sent) < 0)
			goto dead;
		c->woff += sent;
		c->pending -= sent;
	}
	if (c->wlen == c->woff && c->wbuf != NULL)
		wbuf_release(c);
	while (c->wlen == c->woff) {
		const uint8_t *data;
		ssize_t n = nghttp2_session_mem_send(c->h2, &data);

		if (n < 0)
			goto dead;
		if (n == 0)
			break;
		if (grpc_conn_out(c, data, (size_t)n, false) < 0)
			goto dead;
	}
	if (obuf_push(c) < 0)
		goto dead;
	if (!nghttp2_session_want_read(c->h2) && !nghttp2_session_want_write(c->h2) &&
	    c->wlen == c->woff)
		goto dead; /* both sides are done (GOAWAY) */
	/* a connection waiting for its turn (or with input left from its
	 * last one) is not read */
	conn_set_watch(c, (c->rlen > 0 || c->queued || c->hold_timer != 0 ? 0 : LOOP_READABLE) |
	                          (c->wlen > c->woff ? LOOP_WRITABLE : 0));
	return 0;
dead:
	c->srv->olen = 0;
	if (c->srv->osecret)
		OPENSSL_cleanse(c->srv->obuf, GRPC_SENDBUF);
	c->srv->osecret = false;
	conn_set_watch(c, 0);
	grpc_conn_doom(c);
	return -1;
}

/* Hand n bytes of input to nghttp2.  It stops early (NGHTTP2_ERR_PAUSE)
 * when the connection has used its turn (grpc-call.c counts header
 * fields); the rest waits in c->rbuf for the next turn, and the socket is
 * not read until it is gone.  0, or -1 if the connection must close. */
static int
conn_feed(struct conn *c, const uint8_t *p, size_t n)
{
	ssize_t rv;

	c->in_h2++;
	rv = nghttp2_session_mem_recv(c->h2, p, n);
	c->in_h2--;
	if (rv < 0) {
		const char *why = nghttp2_strerror((int)rv);

		/* Say GOAWAY if the socket takes it (it is logged as it goes
		 * out), then close. */
		if (c->why == NULL)
			grpc_conn_protocol_error(c, why);
		nghttp2_session_terminate_session(c->h2, NGHTTP2_PROTOCOL_ERROR);
		grpc_conn_flush(c);
		if (c->why != NULL) /* no GOAWAY went out */
			grpc_conn_log(c, "closing the connection: %s", c->why);
		grpc_conn_strike(c);
		return -1;
	}
	if ((size_t)rv < n && !c->doomed) {
		/* paused: keep the rest (at most one read's worth) */
		if (c->rbuf == NULL && (c->rbuf = malloc(GRPC_READ_CHUNK)) == NULL)
			return -1;
		memmove(c->rbuf, p + rv, n - (size_t)rv);
		c->rlen = n - (size_t)rv;
	}
	return 0;
}

/* One turn of c: what its last turn left first (and alone), else what the
 * socket has, up to GRPC_TURN_FIELDS header fields; then its output.  A
 * connection with input left waits for another turn.  May close c. */
static void
conn_turn(struct conn *c)
{
	uint8_t buf[GRPC_READ_CHUNK];
	int i;

	if (c->doomed) {
		conn_close(c);
		return;
	}
	c->turn = 0; /* a new turn: grpc-call.c counts this turn's work */
	if (c->rlen > 0) {
		size_t n = c->rlen;

		c->rlen = 0;
		if (conn_feed(c, c->rbuf, n) < 0) {
			conn_close(c);
			return;
		}
		if (c->rlen == 0) {
			free(c->rbuf);
			c->rbuf = NULL;
		}
	} else {
		for (i = 0; i < GRPC_READS_PER_EVENT && c->rlen == 0; i++) {
			ssize_t n = recv(c->fd, buf, sizeof(buf), 0);

			if (n < 0 && errno == EINTR)
				continue;
			if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
				break;
			if (n <= 0) {
				conn_close(c);
				return;
			}
			c->last_active = grpc_mono_ms();
			if (conn_feed(c, buf, (size_t)n) < 0) {
				conn_close(c);
				return;
			}
			if (c->doomed)
				break;
			if ((size_t)n < sizeof(buf))
				break;
		}
	}
	if (c->rlen > 0) /* its turn is used up: after the others' */
		grpc_sched_queue(c);
	if (grpc_conn_flush(c) < 0)
		conn_close(c);
}

/* The next turn (loop_soon): one per loop batch, so that a connection that
 * became ready meanwhile is counted before the choice after it. */
static void
serve_cb(void *arg)
{
	grpc_server *s = arg;
	struct conn *c = grpc_sched_next(s);
	struct grpc_peer *p;
	uint64_t t0;

	if (c == NULL)
		return;
	p = grpc_conn_peer(c);
	p->busy++;
	t0 = grpc_cpu_ns();
	conn_turn(c);
	grpc_peer_charge(p, grpc_cpu_ns() - t0, grpc_mono_ns());
	p->busy--;
	peer_put(s, p);
	if (s->ready_peers != NULL)
		loop_soon(s->loop, &s->serve);
}

/* Input waits for its turn (serve_cb); output goes out at once. */
static void
conn_io_cb(cubeid_loop *l, int fd, int events, void *arg)
{
	struct conn *c = arg;

	(void)l;
	(void)fd;
	if (c->doomed) {
		conn_close(c);
		return;
	}
	if ((events & LOOP_READABLE) && c->hold_timer == 0)
		grpc_sched_queue(c);
	if (grpc_conn_flush(c) < 0)
		conn_close(c);
}

/* A held connection's wait is over: its first turn. */
static long
hold_timer_cb(cubeid_loop *l, void *arg)
{
	struct conn *c = arg;

	(void)l;
	c->hold_timer = 0;
	grpc_sched_queue(c);
	return -1;
}

static long
idle_timer_cb(cubeid_loop *l, void *arg)
{
	struct conn *c = arg;
	uint64_t now = grpc_mono_ms();

	if (!c->got_request) {
		/* a connection that never sent a whole request holds a slot
		 * for nothing: it gets first_request_ms, not the idle time */
		uint64_t limit = (uint64_t)c->srv->lim.first_request_timeout * 1000;

		if (now - c->accepted >= limit) {
			cubeid_debug("grpc: closing fd %d: no request in %ld s", c->fd,
			             c->srv->lim.first_request_timeout);
			c->idle_timer = 0;
			conn_close(c);
			return -1;
		}
		return (long)(limit - (now - c->accepted));
	}
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

	for (i = 0; i < GRPC_ACCEPT_BATCH; i++) {
		nghttp2_settings_entry iv[2];
		struct conn *c;
		struct grpc_peer *peer = NULL;
		struct ucred cred;
		socklen_t cl = sizeof(cred);
		uint64_t t0 = grpc_cpu_ns();
		long hold;
		int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				cubeid_warn("grpc: accept: %s", strerror(errno));
			return;
		}
		if (s->n_conns >= s->lim.max_connections) {
			refusal_log(s, "the socket's connection limit is reached", (uid_t)-1);
			close(fd);
			continue;
		}
		/* The uid is the kernel's, fixed at connect(): a share keyed
		 * on it cannot be dodged by the caller. */
		cred.pid = -1;
		cred.uid = (uid_t)-1;
		if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &cl) == 0 &&
		    cl == sizeof(cred)) {
			if ((peer = peer_get(s, cred.uid)) == NULL) {
				close(fd);
				continue;
			}
			if (peer->conns >= s->lim.max_connections_per_uid) {
				refusal_log(s, "this user's connection share is used up", cred.uid);
				peer_put(s, peer);
				close(fd);
				continue;
			}
		}
		if ((c = calloc(1, sizeof(*c))) == NULL) {
			peer_put(s, peer);
			close(fd);
			continue;
		}
		c->srv = s;
		c->fd = fd;
		c->pid = cred.pid;
		c->uid = cred.uid;
		c->last_active = c->accepted = grpc_mono_ms();
		if (nghttp2_session_server_new2(&c->h2, callbacks, c, h2_option) != 0) {
			peer_put(s, peer);
			free(c);
			close(fd);
			continue;
		}
		c->peer = peer;
		if (peer != NULL)
			peer->conns++;
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
		c->idle_timer = loop_timer_add(s->loop, s->lim.first_request_timeout * 1000,
		                               idle_timer_cb, c);
		if (c->idle_timer < 0)
			c->idle_timer = 0;
		if (peer != NULL && (hold = grpc_peer_hold_ms(peer, grpc_mono_ns())) > 0) {
			/* its uid's connections were dropped for abuse lately */
			c->hold_timer = loop_timer_add(s->loop, hold, hold_timer_cb, c);
			if (c->hold_timer < 0)
				c->hold_timer = 0;
			else
				s->counters.held_connections++;
		}
		grpc_conn_flush(c);
		/* the accept is the uid's work too (a flooder reconnects) */
		grpc_peer_charge(grpc_conn_peer(c), grpc_cpu_ns() - t0, grpc_mono_ns());
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
	if ((s->obuf = secbuf_alloc(GRPC_SENDBUF)) == NULL) {
		free(s);
		return CUBEID_ERR_NOMEM;
	}
	s->loop = l;
	s->serve = (struct loop_soon){.fn = serve_cb, .arg = s};
	s->anon.uid = (uid_t)-1;
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
	if (s->lim.max_connections_per_uid == 0)
		s->lim.max_connections_per_uid = 512;
	if (s->lim.max_streams_per_uid == 0)
		s->lim.max_streams_per_uid = 1024;
	if (s->lim.first_request_timeout <= 0)
		s->lim.first_request_timeout = 10;
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
	loop_soon_cancel(s->loop, &s->serve);
	while (s->conns != NULL)
		conn_close(s->conns);
	for (i = 0; i < GRPC_PEER_BUCKETS; i++)
		while (s->peers[i] != NULL) { /* conn_close() dropped them all */
			struct grpc_peer *p = s->peers[i];

			s->peers[i] = p->next;
			free(p);
		}
	secbuf_free(s->obuf, GRPC_SENDBUF);
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
