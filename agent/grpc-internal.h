/*
 * Internals of the agent's gRPC server, shared by grpc-server.c
 * (connections, I/O, the listener) and grpc-call.c (calls: request
 * headers and message, responses, status).  Everything here runs on the
 * loop thread.
 */
#ifndef CUBEID_GRPC_INTERNAL_H
#define CUBEID_GRPC_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include <nghttp2/nghttp2.h>

#include "agent/agent.h"
#include "common/grpc-frame.h"

#define GRPC_IDLE_MS         (5 * 60 * 1000) /* a connection with no streams */
#define GRPC_MAX_METADATA    (16 * 1024)     /* header bytes per call */
#define GRPC_MAX_LISTENERS   8
#define GRPC_READ_CHUNK      (16 * 1024)
#define GRPC_READS_PER_EVENT 4
#define GRPC_SENDBUF         (64 * 1024) /* frames gathered for one send() */
/* Connections accepted per readable event of a listener (fewer if EAGAIN
 * comes first), between turns.  Not more: the kernel's queue is first come
 * first served and knows no uid, and while it is full a flooder's connect()
 * sleeps.  Draining it whole (4096 here, or a SOMAXCONN backlog) let four
 * processes that connect, send an HPACK bomb and close in a loop spin
 * instead, and a normal client's p50 went from ~350x its baseline to
 * 3,900x (29,000x with a backlog of 4096), measured side by side
 * (docs/hardening.md).  Refusing a connection is no cheaper than
 * accepting it (8 against 7 microseconds: the close frees what the peer
 * queued). */
#define GRPC_ACCEPT_BATCH 64
/* Fairness on the one loop thread: a connection's turn ends after this many
 * request header fields (about 2 requests); the rest of its input waits
 * for another turn, and turns go first to the uids that cost the loop least
 * lately (grpc-sched.c).  A flood of HEADERS (rapid reset, HPACK
 * references) then costs its sender the wait, not the other clients. */
#define GRPC_TURN_FIELDS 16
/* A request whose header list passes this many bytes (RFC 7541 sizes:
 * name + value + 32 each) is not "too large" (431) but an attack: the
 * connection is dropped, before the decoder spends more on it. */
#define GRPC_MAX_HEADER_LIST_ABUSE (4 * GRPC_MAX_METADATA)
/* RST_STREAM token bucket per connection (nghttp2's defaults are 1000/33). */
#define GRPC_RESET_BURST 200
#define GRPC_RESET_RATE  50

struct conn;

/* grpc-http.c: a stream's HTTP/2 request rules (RFC 9113 8.1-8.3), which
 * nghttp2 no longer checks (its HTTP messaging is off: see grpc-http.c). */
struct grpc_http {
	unsigned flags;
	int64_t content_length; /* -1: none */
	int64_t received;       /* DATA payload bytes */
};
void grpc_http_init(struct grpc_http *h);
/* One header field of the request (trailer: of its trailers).  0: keep it;
 * -1: refuse the stream, *why says why (a static string). */
int grpc_http_field(struct grpc_http *h, const uint8_t *name, size_t nlen, const uint8_t *value,
                    size_t vlen, bool trailer, const char **why);
/* After the request's header block, DATA, and the stream's end: NULL, or
 * why the stream is refused. */
const char *grpc_http_request_end(const struct grpc_http *h);
const char *grpc_http_data(struct grpc_http *h, size_t n);
const char *grpc_http_end_stream(const struct grpc_http *h);

/* What one local user (uid) holds on the server: its share is capped by
 * grpc_limits.max_connections_per_uid and max_streams_per_uid.  Its cost
 * is the loop thread's CPU time spent on it (its turns and accepts), in
 * ns, halved every GRPC_COST_HALF_LIFE_MS: whose turn comes next is
 * decided by it (grpc-sched.c). */
struct grpc_peer {
	struct grpc_peer *next; /* hash chain */
	uid_t uid;
	unsigned conns, calls;
	double cost;      /* ns of loop CPU, decayed to cost_at */
	uint64_t cost_at; /* mono ns */
	unsigned busy;    /* being charged: not freed meanwhile */
	/* its connections waiting for a turn, in order */
	struct conn *ready_head, *ready_tail;
	struct grpc_peer *ready_next; /* the server's list of peers with turns waiting */
	bool ready;
	/* connections dropped for abuse (a GOAWAY with an error): the uid's
	 * new connections wait until hold_until for their first turn */
	unsigned strikes;
	uint64_t last_strike, hold_until; /* mono ns */
};
#define GRPC_PEER_BUCKETS      64
#define GRPC_COST_HALF_LIFE_MS 1000
/* A peer with no connection is kept until its cost decays below this
 * (ns): a flooder that reconnects keeps its history. */
#define GRPC_COST_FORGET 1000.0
/* After a uid's connection is dropped for abuse, its new connections wait
 * GRPC_HOLD_MIN_MS for their first turn, doubling with each drop up to
 * GRPC_HOLD_MAX_MS; forgotten GRPC_STRIKES_FORGET_MS after the last drop.
 * A bounded wait, never a refusal: uid 0 is every pod of a node. */
#define GRPC_HOLD_MIN_MS       10
#define GRPC_HOLD_MAX_MS       100
#define GRPC_STRIKES_FORGET_MS 10000

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
	/* reset for breaking the HTTP/2 rules (static string), after which
	 * its input is ignored; NULL: not refused */
	const char *refused;
	struct grpc_http http;
	bool sensitive; /* out is secbuf memory; DATA goes out without a copy */
	int status;
	char *status_msg; /* percent-encoded grpc-message, or NULL */
	/* metadata: "name\0value\0name\0value\0..." */
	char *md;
	size_t md_len, md_cap;
	struct grpc_deframer req;
	uint8_t *req_msg; /* points into req.buf once complete */
	size_t req_len;
	int req_err;      /* deframing error, answered at END_STREAM */
	size_t hdr_bytes; /* the request's header list, RFC 7541 sizes */
	/* output: framed messages not yet handed to nghttp2 */
	uint8_t *out;
	size_t out_off, out_len, out_cap;
	void *user;
	void (*on_close)(grpc_call *c, void *user);
	/* a client-streaming method (grpc_call_set_stream): its handler ran
	 * at the headers; each request message goes to on_message */
	bool streaming_in;
	unsigned in_count, in_max;
	grpc_message_fn on_message;
	void (*on_end)(grpc_call *c, void *user);
};

struct conn {
	grpc_server *srv;
	struct conn *prev, *next;
	int fd;
	struct grpc_peer *peer; /* the uid's share this connection counts in */
	bool got_request;       /* one whole request seen (first_request_ms) */
	nghttp2_session *h2;
	struct grpc_call *calls;
	unsigned n_calls;
	size_t pending; /* sum of the calls' unsent output + wbuf */
	uint8_t *wbuf;  /* bytes for the socket that it did not take yet */
	size_t wlen, woff, wcap;
	bool wbuf_secret; /* wbuf is secbuf memory (it held a sensitive call's bytes) */
	long idle_timer, drop_timer;
	uint64_t last_active, accepted;
	int in_h2;     /* inside nghttp2_session_mem_recv / callbacks */
	unsigned turn; /* header fields decoded in this turn */
	uint8_t *rbuf; /* input left when the turn ended (rlen bytes) */
	size_t rlen;
	struct conn *ready_next; /* in its peer's queue of turns */
	bool queued;             /* waiting for a turn (not read meanwhile) */
	bool struck;             /* dropped for abuse: its uid was told */
	bool peer_left;          /* it sent GOAWAY(NO_ERROR) that nghttp2 found invalid */
	long hold_timer;         /* a held new connection's first turn (not read meanwhile) */
	bool dead;               /* being torn down */
	bool doomed;             /* drop scheduled */
	int watching;
	pid_t pid; /* SO_PEERCRED at accept (-1: unknown), for the log */
	uid_t uid;
	/* why the next RST_STREAM / GOAWAY goes out: a static string or why_buf */
	const char *why;
	char why_buf[128];
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
	struct grpc_peer *peers[GRPC_PEER_BUCKETS];
	struct grpc_peer anon;         /* connections without SO_PEERCRED: scheduling only */
	struct grpc_peer *ready_peers; /* peers with connections waiting for a turn */
	struct loop_soon serve;        /* the next turn (grpc-sched.c) */
	unsigned long refused;         /* connections refused since the last log line */
	uint64_t refused_logged;       /* when that line was written (mono ms) */
	/* HTTP/2 errors: counted for /metrics, logged through a token bucket
	 * (a hostile client must not flood the log) */
	struct grpc_counters counters;
	double log_tokens;
	uint64_t log_refilled;        /* mono ms */
	unsigned long log_suppressed; /* lines dropped since the last one */
	/* One buffer (secbuf) where a flush gathers a connection's frames so
	 * that they go out in one send(); wiped after a sensitive call's
	 * bytes passed through it. */
	uint8_t *obuf;
	size_t olen;
	bool osecret;
};

static inline uint64_t
grpc_mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* grpc-sched.c: turns in order of the uid's recent cost.  A connection
 * with input waits in its peer's queue (FIFO); each turn goes to the first
 * connection of the ready peer with the lowest cost, and is charged to it,
 * so a uid that floods the loop waits behind the uids that do not.  Never
 * a ban: a flooder still gets every turn nobody cheaper wants. */
uint64_t grpc_cpu_ns(void); /* the loop thread's CPU time */
uint64_t grpc_mono_ns(void);
double grpc_peer_cost(struct grpc_peer *p, uint64_t now_ns);
void grpc_peer_charge(struct grpc_peer *p, uint64_t ns, uint64_t now_ns);
struct grpc_peer *grpc_conn_peer(struct conn *c);
void grpc_sched_queue(struct conn *c);
struct conn *grpc_sched_next(grpc_server *s);
void grpc_sched_remove(struct conn *c);
/* c is dropped for abuse: a strike for its uid (once per connection). */
void grpc_conn_strike(struct conn *c);
void grpc_peer_strike(struct grpc_peer *p, uint64_t now_ns);
/* How long a new connection of p waits for its first turn (ms; 0: none). */
long grpc_peer_hold_ms(struct grpc_peer *p, uint64_t now_ns);

/* grpc-errors.c: the callbacks that log and count HTTP/2 errors. */
void grpc_errors_set_callbacks(nghttp2_session_callbacks *cb);
/* A protocol error on c: counted, and why remembered for the log line of
 * the RST_STREAM or GOAWAY it causes. */
void grpc_conn_protocol_error(struct conn *c, const char *why);
/* Log an HTTP/2 error of c's peer (notice: seen at the default level),
 * rate-limited. */
void grpc_conn_log(struct conn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* grpc-call.c: the nghttp2 stream callbacks, and a call's end. */
void grpc_call_set_callbacks(nghttp2_session_callbacks *cb);
/* The stream is gone: on_close (unless finished), then free. */
void grpc_call_gone(struct grpc_call *call);

/* grpc-server.c: connection output and teardown. */
/* Whether the connection's uid may open one more stream; counts it if so
 * (grpc_peer_call_done() gives it back). */
bool grpc_peer_call_take(struct conn *c);
void grpc_peer_call_done(struct conn *c);
/* Push nghttp2's output to the socket; -1 (close scheduled) if dead.
 * Never frees the connection. */
int grpc_conn_flush(struct conn *c);
/* Close the connection from a 0 ms timer (safe inside handlers). */
void grpc_conn_doom(struct conn *c);
/* Queue n bytes for c's socket, after what is queued already (the send
 * buffer during a flush, or c->wbuf); secret: they belong to a sensitive
 * call.  -1 if the socket is dead. */
int grpc_conn_out(struct conn *c, const uint8_t *p, size_t n, bool secret);

#endif
