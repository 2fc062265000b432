/*
 * The agent's event loop, in the spirit of Redis' ae.c: epoll for file
 * descriptors, a binary heap of timers on the monotonic clock (a timer's
 * callback returns its next delay), and an eventfd that wakes the loop for
 * loop_post() (worker threads handing results back) and loop_stop().
 *
 * Everything except loop_post() and loop_stop() must be called on the loop
 * thread.  The only shared state is the post queue (post_mu) and the stop
 * flag (an atomic), so the thread-safety audit is this struct.
 */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "agent/agent.h"

#define LOOP_MAX_EVENTS 128
#define LOOP_MAX_FD     (1 << 20) /* hard cap on the fd table */

struct watch {
	loop_fd_fn fn;
	void *arg;
	int events;
};

struct timer {
	long id;
	uint64_t when; /* monotonic ms */
	loop_timer_fn fn;
	void *arg;
};

struct post {
	struct post *next;
	loop_post_fn fn;
	void *arg;
};

struct cubeid_loop {
	int epfd;
	int evfd;
	struct watch *watches; /* indexed by fd */
	size_t n_watches;
	struct timer *heap; /* min-heap on when */
	size_t n_timers, cap_timers;
	long next_id;
	struct loop_soon *soon_head, *soon_tail; /* loop_soon(), in order */
	long firing;                             /* id of the timer being run, or 0 */
	bool firing_deleted;                     /* ... and it deleted itself */
	atomic_bool stop;
	/* Shared with other threads: the post queue, under post_mu. */
	pthread_mutex_t post_mu;
	struct post *post_head, *post_tail;
};

static uint64_t
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

int
loop_new(cubeid_loop **out)
{
	cubeid_loop *l;
	struct epoll_event ev = {.events = EPOLLIN};
	int r = CUBEID_ERR_IO;

	*out = NULL;
	if ((l = calloc(1, sizeof(*l))) == NULL)
		return CUBEID_ERR_NOMEM;
	l->epfd = l->evfd = -1;
	l->next_id = 1;
	atomic_init(&l->stop, false);
	pthread_mutex_init(&l->post_mu, NULL);
	if ((l->epfd = epoll_create1(EPOLL_CLOEXEC)) < 0)
		goto out;
	if ((l->evfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) < 0)
		goto out;
	ev.data.fd = l->evfd;
	if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, l->evfd, &ev) < 0)
		goto out;
	*out = l;
	l = NULL;
	r = 0;
out:
	loop_free(l);
	return r;
}

void
loop_free(cubeid_loop *l)
{
	struct post *p, *next;

	if (l == NULL)
		return;
	for (p = l->post_head; p != NULL; p = next) {
		next = p->next;
		free(p);
	}
	if (l->epfd >= 0)
		close(l->epfd);
	if (l->evfd >= 0)
		close(l->evfd);
	pthread_mutex_destroy(&l->post_mu);
	free(l->watches);
	free(l->heap);
	free(l);
}

int
loop_watch(cubeid_loop *l, int fd, int events, loop_fd_fn fn, void *arg)
{
	struct epoll_event ev = {0};
	struct watch *w;
	int op;

	if (fd < 0 || fd >= LOOP_MAX_FD || fd == l->evfd || (events != 0 && fn == NULL))
		return CUBEID_ERR_INVALID_ARG;
	if ((size_t)fd >= l->n_watches) {
		size_t n = l->n_watches ? l->n_watches : 64;

		if (events == 0)
			return 0;
		while (n <= (size_t)fd)
			n *= 2;
		if ((w = realloc(l->watches, n * sizeof(*w))) == NULL)
			return CUBEID_ERR_NOMEM;
		memset(w + l->n_watches, 0, (n - l->n_watches) * sizeof(*w));
		l->watches = w;
		l->n_watches = n;
	}
	w = &l->watches[fd];
	if (events == 0) {
		if (w->events != 0)
			epoll_ctl(l->epfd, EPOLL_CTL_DEL, fd, NULL); /* fd may be closed */
		memset(w, 0, sizeof(*w));
		return 0;
	}
	op = w->events != 0 ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
	if (events & LOOP_READABLE)
		ev.events |= EPOLLIN;
	if (events & LOOP_WRITABLE)
		ev.events |= EPOLLOUT;
	ev.data.fd = fd;
	if (epoll_ctl(l->epfd, op, fd, &ev) < 0)
		return CUBEID_ERR_IO;
	w->fn = fn;
	w->arg = arg;
	w->events = events;
	return 0;
}

/* ---- timers: a binary min-heap on (when, id) */

static bool
timer_before(const struct timer *a, const struct timer *b)
{
	return a->when < b->when || (a->when == b->when && a->id < b->id);
}

static void
heap_up(struct timer *h, size_t i)
{
	while (i > 0) {
		size_t p = (i - 1) / 2;
		struct timer t;

		if (!timer_before(&h[i], &h[p]))
			break;
		t = h[i];
		h[i] = h[p];
		h[p] = t;
		i = p;
	}
}

static void
heap_down(struct timer *h, size_t n, size_t i)
{
	for (;;) {
		size_t c = 2 * i + 1, m = i;
		struct timer t;

		if (c < n && timer_before(&h[c], &h[m]))
			m = c;
		if (c + 1 < n && timer_before(&h[c + 1], &h[m]))
			m = c + 1;
		if (m == i)
			break;
		t = h[i];
		h[i] = h[m];
		h[m] = t;
		i = m;
	}
}

static int
heap_push(cubeid_loop *l, const struct timer *t)
{
	if (l->n_timers == l->cap_timers) {
		size_t n = l->cap_timers ? l->cap_timers * 2 : 16;
		struct timer *h = realloc(l->heap, n * sizeof(*h));

		if (h == NULL)
			return CUBEID_ERR_NOMEM;
		l->heap = h;
		l->cap_timers = n;
	}
	l->heap[l->n_timers] = *t;
	heap_up(l->heap, l->n_timers++);
	return 0;
}

static void
heap_remove(cubeid_loop *l, size_t i)
{
	l->n_timers--;
	if (i == l->n_timers)
		return;
	l->heap[i] = l->heap[l->n_timers];
	heap_up(l->heap, i);
	heap_down(l->heap, l->n_timers, i);
}

long
loop_timer_add(cubeid_loop *l, long ms, loop_timer_fn fn, void *arg)
{
	struct timer t;

	if (fn == NULL || ms < 0)
		return CUBEID_ERR_INVALID_ARG;
	t.id = l->next_id++;
	t.when = now_ms() + (uint64_t)ms;
	t.fn = fn;
	t.arg = arg;
	if (heap_push(l, &t) < 0)
		return CUBEID_ERR_NOMEM;
	return t.id;
}

void
loop_timer_del(cubeid_loop *l, long id)
{
	size_t i;

	if (id <= 0)
		return;
	if (id == l->firing) {
		l->firing_deleted = true;
		return;
	}
	/* O(n) search; deletions are rare (a connection closing). */
	for (i = 0; i < l->n_timers; i++)
		if (l->heap[i].id == id) {
			heap_remove(l, i);
			return;
		}
}

static void
run_timers(cubeid_loop *l)
{
	uint64_t now = now_ms();
	/* At most as many runs as there are timers now, so that a timer that
	 * re-arms itself with 0 ms cannot starve the fds. */
	size_t budget = l->n_timers;

	while (budget-- > 0 && l->n_timers > 0 && l->heap[0].when <= now &&
	       !atomic_load(&l->stop)) {
		struct timer t = l->heap[0];
		long next;

		heap_remove(l, 0);
		l->firing = t.id;
		l->firing_deleted = false;
		next = t.fn(l, t.arg);
		l->firing = 0;
		if (next >= 0 && !l->firing_deleted) {
			/* Same id, so that loop_timer_del() still finds it. */
			t.when = now_ms() + (uint64_t)next;
			(void)heap_push(l, &t); /* cannot fail: we just popped one */
		}
	}
}

/* ---- after each batch: loop_soon() */

void
loop_soon(cubeid_loop *l, struct loop_soon *s)
{
	if (s->queued)
		return;
	s->queued = true;
	s->next = NULL;
	if (l->soon_tail != NULL)
		l->soon_tail->next = s;
	else
		l->soon_head = s;
	l->soon_tail = s;
}

void
loop_soon_cancel(cubeid_loop *l, struct loop_soon *s)
{
	struct loop_soon **pp, *prev = NULL;

	if (!s->queued)
		return;
	for (pp = &l->soon_head; *pp != NULL; prev = *pp, pp = &(*pp)->next)
		if (*pp == s) {
			*pp = s->next;
			if (l->soon_tail == s)
				l->soon_tail = prev;
			break;
		}
	s->queued = false;
	s->next = NULL;
}

/* The calls queued when it starts; those they queue wait for the next
 * batch, so that a call re-queueing itself cannot starve the fds. */
static void
run_soon(cubeid_loop *l)
{
	struct loop_soon *s;
	size_t n = 0;

	for (s = l->soon_head; s != NULL; s = s->next)
		n++;
	while (n-- > 0 && (s = l->soon_head) != NULL && !atomic_load(&l->stop)) {
		l->soon_head = s->next;
		if (l->soon_head == NULL)
			l->soon_tail = NULL;
		s->next = NULL;
		s->queued = false;
		s->fn(s->arg);
	}
}

/* ---- cross-thread: post and stop */

static void
wake(cubeid_loop *l)
{
	uint64_t one = 1;
	ssize_t n;

	/* async-signal-safe; EAGAIN means the counter is already non-zero */
	do
		n = write(l->evfd, &one, sizeof(one));
	while (n < 0 && errno == EINTR);
}

int
loop_post(cubeid_loop *l, loop_post_fn fn, void *arg)
{
	struct post *p;

	if (fn == NULL)
		return CUBEID_ERR_INVALID_ARG;
	if ((p = malloc(sizeof(*p))) == NULL)
		return CUBEID_ERR_NOMEM;
	p->next = NULL;
	p->fn = fn;
	p->arg = arg;
	pthread_mutex_lock(&l->post_mu);
	if (l->post_tail != NULL)
		l->post_tail->next = p;
	else
		l->post_head = p;
	l->post_tail = p;
	pthread_mutex_unlock(&l->post_mu);
	wake(l);
	return 0;
}

void
loop_stop(cubeid_loop *l)
{
	atomic_store(&l->stop, true);
	wake(l);
}

static void
run_posts(cubeid_loop *l)
{
	struct post *p, *next;
	uint64_t v;

	while (read(l->evfd, &v, sizeof(v)) < 0 && errno == EINTR)
		;
	pthread_mutex_lock(&l->post_mu);
	p = l->post_head;
	l->post_head = l->post_tail = NULL;
	pthread_mutex_unlock(&l->post_mu);
	for (; p != NULL; p = next) {
		next = p->next;
		p->fn(p->arg);
		free(p);
	}
}

void
loop_run_posts_of(cubeid_loop *l, loop_post_fn fn)
{
	struct post *p, **pp, *mine = NULL, **tail = &mine;

	if (l == NULL)
		return;
	pthread_mutex_lock(&l->post_mu);
	l->post_tail = NULL;
	for (pp = &l->post_head; (p = *pp) != NULL;) {
		if (p->fn == fn) {
			*pp = p->next;
			p->next = NULL;
			*tail = p;
			tail = &p->next;
		} else {
			l->post_tail = p;
			pp = &p->next;
		}
	}
	pthread_mutex_unlock(&l->post_mu);
	while ((p = mine) != NULL) {
		mine = p->next;
		p->fn(p->arg);
		free(p);
	}
}

int
loop_run(cubeid_loop *l)
{
	struct epoll_event evs[LOOP_MAX_EVENTS];

	while (!atomic_load(&l->stop)) {
		int timeout = -1, n, i;

		if (l->soon_head != NULL) {
			timeout = 0;
		} else if (l->n_timers > 0) {
			uint64_t now = now_ms(), when = l->heap[0].when;

			timeout =
			        when <= now ? 0 : (when - now > 60000 ? 60000 : (int)(when - now));
		}
		n = epoll_wait(l->epfd, evs, LOOP_MAX_EVENTS, timeout);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return CUBEID_ERR_IO;
		}
		for (i = 0; i < n && !atomic_load(&l->stop); i++) {
			int fd = evs[i].data.fd, ev = 0;
			struct watch *w;

			if (fd == l->evfd) {
				run_posts(l);
				continue;
			}
			/* A callback earlier in this batch may have removed it. */
			if ((size_t)fd >= l->n_watches || (w = &l->watches[fd])->fn == NULL)
				continue;
			if (evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP))
				ev |= LOOP_READABLE;
			if (evs[i].events & (EPOLLOUT | EPOLLERR | EPOLLHUP))
				ev |= LOOP_WRITABLE;
			ev &= w->events;
			if (ev == 0)
				ev = w->events & LOOP_READABLE ? LOOP_READABLE : LOOP_WRITABLE;
			w->fn(l, fd, ev, w->arg);
		}
		run_timers(l);
		run_soon(l);
	}
	atomic_store(&l->stop, false);
	return 0;
}
