/*
 * Fair turns on the one loop thread, by uid.
 *
 * A connection's turn is bounded (GRPC_TURN_FIELDS header fields), but a
 * bound per turn is not enough when one user holds many connections: the
 * others wait for a turn of each.  So whose turn comes next depends on who
 * it is: each uid (SO_PEERCRED at accept) has a cost, the loop thread's CPU
 * time spent on its turns and accepts, halved every GRPC_COST_HALF_LIFE_MS;
 * of the connections waiting, the one whose uid cost least recently goes
 * first.  A uid that floods waits behind the uids that do not, and is
 * served whenever nobody cheaper waits: deprioritised, never banned (uid 0
 * is every pod of a cluster node).  The decay is a factor, so it keeps the
 * order of two costs: only new work changes it.
 *
 * A uid whose connection was dropped for abuse (a GOAWAY with an error:
 * an HPACK bomb, a reset flood) would reconnect at once, again and again,
 * and what that costs is mostly CPU outside the agent, which a turn order
 * cannot give back to the other clients.  So for a while its new
 * connections wait a little for their first turn (GRPC_HOLD_MIN_MS,
 * doubling per drop, at most GRPC_HOLD_MAX_MS): a flooder's reconnect loop
 * sleeps instead of spinning.  Every connection is still served.
 *
 * grpc-server.c queues a connection when its socket is readable (and stops
 * watching it for input until its turn), serves one turn per loop batch
 * (loop_soon), and queues it again while its input is left from the turn.
 * Everything here runs on the loop thread.
 */
#include "config.h"

#include <time.h>

#include "agent/grpc-internal.h"

uint64_t
grpc_cpu_ns(void)
{
	struct timespec ts;

	if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) != 0)
		return 0;
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t
grpc_mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* p's cost, decayed to now. */
double
grpc_peer_cost(struct grpc_peer *p, uint64_t now_ns)
{
	const uint64_t half = (uint64_t)GRPC_COST_HALF_LIFE_MS * 1000000u;
	uint64_t dt, halves;

	if (now_ns <= p->cost_at)
		return p->cost;
	dt = now_ns - p->cost_at;
	p->cost_at = now_ns;
	/* 2^-(dt/half): whole halvings, then 1 - f/2 for the fraction f (no
	 * libm; within 6% of 2^-f, and exact at each whole half-life) */
	halves = dt / half;
	if (halves >= 64)
		p->cost = 0;
	p->cost /= (double)((uint64_t)1 << (halves < 64 ? halves : 0));
	p->cost *= 1.0 - (double)(dt % half) / (double)half / 2;
	if (p->cost < GRPC_COST_FORGET / 2) /* nothing to remember */
		p->cost = 0;
	return p->cost;
}

void
grpc_peer_charge(struct grpc_peer *p, uint64_t ns, uint64_t now_ns)
{
	(void)grpc_peer_cost(p, now_ns);
	p->cost += (double)ns;
}

struct grpc_peer *
grpc_conn_peer(struct conn *c)
{
	return c->peer != NULL ? c->peer : &c->srv->anon;
}

void
grpc_sched_queue(struct conn *c)
{
	grpc_server *s = c->srv;
	struct grpc_peer *p = grpc_conn_peer(c);

	if (c->queued || c->dead)
		return;
	c->queued = true;
	c->ready_next = NULL;
	if (p->ready_tail != NULL)
		p->ready_tail->ready_next = c;
	else
		p->ready_head = c;
	p->ready_tail = c;
	if (!p->ready) {
		/* at the end: among equal costs, the peer waiting longest first */
		struct grpc_peer **pp = &s->ready_peers;

		while (*pp != NULL)
			pp = &(*pp)->ready_next;
		p->ready = true;
		p->ready_next = NULL;
		*pp = p;
	}
	loop_soon(s->loop, &s->serve);
}

static void
peer_unready(grpc_server *s, struct grpc_peer *p)
{
	struct grpc_peer **pp;

	for (pp = &s->ready_peers; *pp != NULL; pp = &(*pp)->ready_next)
		if (*pp == p) {
			*pp = p->ready_next;
			break;
		}
	p->ready = false;
	p->ready_next = NULL;
}

/* The next connection to have a turn, taken off its queue; NULL: none. */
struct conn *
grpc_sched_next(grpc_server *s)
{
	struct grpc_peer *p, *best = NULL;
	uint64_t now = grpc_mono_ns();
	double best_cost = 0;
	struct conn *c;

	for (p = s->ready_peers; p != NULL; p = p->ready_next) {
		double cost = grpc_peer_cost(p, now);

		if (best == NULL || cost < best_cost) {
			best = p;
			best_cost = cost;
		}
	}
	if (best == NULL)
		return NULL;
	c = best->ready_head;
	best->ready_head = c->ready_next;
	if (best->ready_head == NULL) {
		best->ready_tail = NULL;
		peer_unready(s, best);
	}
	c->ready_next = NULL;
	c->queued = false;
	return c;
}

void
grpc_sched_remove(struct conn *c)
{
	struct grpc_peer *p = grpc_conn_peer(c);
	struct conn **cp, *prev = NULL;

	if (!c->queued)
		return;
	for (cp = &p->ready_head; *cp != NULL; prev = *cp, cp = &(*cp)->ready_next)
		if (*cp == c) {
			*cp = c->ready_next;
			if (p->ready_tail == c)
				p->ready_tail = prev;
			break;
		}
	c->queued = false;
	c->ready_next = NULL;
	if (p->ready_head == NULL)
		peer_unready(c->srv, p);
}

void
grpc_peer_strike(struct grpc_peer *p, uint64_t now_ns)
{
	uint64_t hold;

	if (p->strikes > 0 && now_ns - p->last_strike > (uint64_t)GRPC_STRIKES_FORGET_MS * 1000000u)
		p->strikes = 0;
	if (p->strikes < 16)
		p->strikes++;
	p->last_strike = now_ns;
	hold = (uint64_t)GRPC_HOLD_MIN_MS << (p->strikes - 1);
	if (hold > GRPC_HOLD_MAX_MS)
		hold = GRPC_HOLD_MAX_MS;
	p->hold_until = now_ns + hold * 1000000u;
}

void
grpc_conn_strike(struct conn *c)
{
	if (c->struck)
		return;
	c->struck = true;
	grpc_peer_strike(grpc_conn_peer(c), grpc_mono_ns());
}

long
grpc_peer_hold_ms(struct grpc_peer *p, uint64_t now_ns)
{
	if (p->hold_until <= now_ns)
		return 0;
	return (long)((p->hold_until - now_ns + 999999u) / 1000000u);
}
