/* The agent's event loop: fds, timers, loop_post() from threads, stop. */
#include "config.h"

#include <check.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent/agent.h"

/* ---- timers run in deadline order; a timer repeats by returning a delay */

struct order {
	int seen[8];
	int n;
	int repeats;
};

static long
rec_timer(cubeid_loop *l, void *arg)
{
	struct order *o = arg;

	(void)l;
	o->seen[o->n++] = 1;
	return -1;
}

static struct order ord;

#define TIMER_FN(N)                                                                                \
	static long timer_##N(cubeid_loop *l, void *arg)                                           \
	{                                                                                          \
		(void)arg;                                                                         \
		ord.seen[ord.n++] = N;                                                             \
		if (ord.n == 3)                                                                    \
			loop_stop(l);                                                              \
		return -1;                                                                         \
	}
TIMER_FN(1)
TIMER_FN(2)
TIMER_FN(3)

START_TEST(test_timers_run_in_deadline_order)
{
	cubeid_loop *l;

	memset(&ord, 0, sizeof(ord));
	ck_assert_int_eq(loop_new(&l), 0);
	ck_assert_int_gt(loop_timer_add(l, 30, timer_3, NULL), 0);
	ck_assert_int_gt(loop_timer_add(l, 0, timer_1, NULL), 0);
	ck_assert_int_gt(loop_timer_add(l, 10, timer_2, NULL), 0);
	ck_assert_int_eq(loop_run(l), 0);
	ck_assert_int_eq(ord.n, 3);
	ck_assert_int_eq(ord.seen[0], 1);
	ck_assert_int_eq(ord.seen[1], 2);
	ck_assert_int_eq(ord.seen[2], 3);
	loop_free(l);
}
END_TEST

static long
repeat_timer(cubeid_loop *l, void *arg)
{
	struct order *o = arg;

	if (++o->repeats == 5) {
		loop_stop(l);
		return -1;
	}
	return 1;
}

START_TEST(test_timer_repeats_until_it_returns_minus_one)
{
	cubeid_loop *l;
	struct order o = {0};

	ck_assert_int_eq(loop_new(&l), 0);
	ck_assert_int_gt(loop_timer_add(l, 0, repeat_timer, &o), 0);
	ck_assert_int_eq(loop_run(l), 0);
	ck_assert_int_eq(o.repeats, 5);
	loop_free(l);
}
END_TEST

static long
stop_timer(cubeid_loop *l, void *arg)
{
	(void)arg;
	loop_stop(l);
	return -1;
}

START_TEST(test_deleted_timer_never_runs)
{
	cubeid_loop *l;
	struct order o = {0};
	long id, id2;

	ck_assert_int_eq(loop_new(&l), 0);
	id = loop_timer_add(l, 0, rec_timer, &o);
	id2 = loop_timer_add(l, 1, rec_timer, &o);
	ck_assert_int_gt(id, 0);
	ck_assert_int_ne(id, id2);
	loop_timer_del(l, id);
	loop_timer_del(l, id2);
	loop_timer_del(l, 12345); /* unknown ids are ignored */
	ck_assert_int_gt(loop_timer_add(l, 20, stop_timer, NULL), 0);
	ck_assert_int_eq(loop_run(l), 0);
	ck_assert_int_eq(o.n, 0);
	loop_free(l);
}
END_TEST

/* A timer deleting itself while it runs, even though it asks to repeat. */
static long self_id;
static int self_runs;

static long
self_deleting_timer(cubeid_loop *l, void *arg)
{
	(void)arg;
	self_runs++;
	loop_timer_del(l, self_id);
	return 0;
}

START_TEST(test_timer_can_delete_itself)
{
	cubeid_loop *l;

	self_runs = 0;
	ck_assert_int_eq(loop_new(&l), 0);
	self_id = loop_timer_add(l, 0, self_deleting_timer, NULL);
	ck_assert_int_gt(loop_timer_add(l, 20, stop_timer, NULL), 0);
	ck_assert_int_eq(loop_run(l), 0);
	ck_assert_int_eq(self_runs, 1);
	loop_free(l);
}
END_TEST

/* ---- fd watches */

struct fdctx {
	int reads;
	char got[16];
};

static void
on_readable(cubeid_loop *l, int fd, int events, void *arg)
{
	struct fdctx *c = arg;
	ssize_t n;

	ck_assert(events & LOOP_READABLE);
	n = read(fd, c->got, sizeof(c->got) - 1);
	ck_assert_int_gt(n, 0);
	c->got[n] = '\0';
	c->reads++;
	loop_watch(l, fd, 0, NULL, NULL);
	loop_stop(l);
}

START_TEST(test_fd_readable_calls_back)
{
	cubeid_loop *l;
	struct fdctx c = {0};
	int p[2];

	ck_assert_int_eq(pipe(p), 0);
	ck_assert_int_eq(loop_new(&l), 0);
	ck_assert_int_eq(loop_watch(l, p[0], LOOP_READABLE, on_readable, &c), 0);
	ck_assert_int_eq(write(p[1], "hello", 5), 5);
	ck_assert_int_eq(loop_run(l), 0);
	ck_assert_int_eq(c.reads, 1);
	ck_assert_str_eq(c.got, "hello");
	ck_assert_int_eq(loop_watch(l, -1, LOOP_READABLE, on_readable, &c), CUBEID_ERR_INVALID_ARG);
	loop_free(l);
	close(p[0]);
	close(p[1]);
}
END_TEST

static void
on_writable(cubeid_loop *l, int fd, int events, void *arg)
{
	int *n = arg;

	ck_assert(events & LOOP_WRITABLE);
	(*n)++;
	loop_watch(l, fd, 0, NULL, NULL);
	loop_stop(l);
}

START_TEST(test_fd_writable_and_replace)
{
	cubeid_loop *l;
	struct fdctx c = {0};
	int p[2], w = 0;

	ck_assert_int_eq(pipe(p), 0);
	ck_assert_int_eq(loop_new(&l), 0);
	/* The second watch of the same fd replaces the first. */
	ck_assert_int_eq(loop_watch(l, p[1], LOOP_READABLE, on_readable, &c), 0);
	ck_assert_int_eq(loop_watch(l, p[1], LOOP_WRITABLE, on_writable, &w), 0);
	ck_assert_int_eq(loop_run(l), 0);
	ck_assert_int_eq(w, 1);
	ck_assert_int_eq(c.reads, 0);
	loop_free(l);
	close(p[0]);
	close(p[1]);
}
END_TEST

/* ---- loop_post from many threads */

#define POST_THREADS 8
#define POST_EACH    1000

static atomic_int posted_runs;
static pthread_t loop_thread;

static void
post_fn(void *arg)
{
	cubeid_loop *l = arg;

	/* Runs on the loop thread. */
	ck_assert(pthread_equal(pthread_self(), loop_thread));
	if (atomic_fetch_add(&posted_runs, 1) + 1 == POST_THREADS * POST_EACH)
		loop_stop(l);
}

static void *
poster(void *arg)
{
	cubeid_loop *l = arg;
	int i;

	for (i = 0; i < POST_EACH; i++)
		ck_assert_int_eq(loop_post(l, post_fn, l), 0);
	return NULL;
}

START_TEST(test_post_from_threads_runs_every_one_on_the_loop)
{
	cubeid_loop *l;
	pthread_t t[POST_THREADS];
	int i;

	atomic_store(&posted_runs, 0);
	loop_thread = pthread_self();
	ck_assert_int_eq(loop_new(&l), 0);
	for (i = 0; i < POST_THREADS; i++)
		ck_assert_int_eq(pthread_create(&t[i], NULL, poster, l), 0);
	ck_assert_int_eq(loop_run(l), 0);
	for (i = 0; i < POST_THREADS; i++)
		pthread_join(t[i], NULL);
	ck_assert_int_eq(atomic_load(&posted_runs), POST_THREADS * POST_EACH);
	loop_free(l);
}
END_TEST

/* ---- loop_stop from another thread and from a signal handler */

static void *
run_thread(void *arg)
{
	loop_run(arg);
	return NULL;
}

/* ---- loop_run_posts_of: results posted after the loop stopped */
static int late_a, late_b;

static void
late_a_fn(void *arg)
{
	late_a += *(int *)arg;
	free(arg);
}

static void
late_b_fn(void *arg)
{
	late_b++;
	(void)arg;
}

START_TEST(test_run_posts_of_runs_only_that_fn_in_order)
{
	cubeid_loop *l = NULL;
	int *x;
	int i;

	late_a = late_b = 0;
	ck_assert_int_eq(loop_new(&l), 0);
	for (i = 1; i <= 3; i++) {
		x = malloc(sizeof(*x));
		ck_assert_ptr_nonnull(x);
		*x = i * 10;
		ck_assert_int_eq(loop_post(l, late_a_fn, x), 0);
		ck_assert_int_eq(loop_post(l, late_b_fn, NULL), 0);
	}
	loop_run_posts_of(l, late_a_fn);
	/* every A ran (and freed its argument: LSan checks); no B ran */
	ck_assert_int_eq(late_a, 60);
	ck_assert_int_eq(late_b, 0);
	/* the Bs are still queued, and a new post after them still works */
	ck_assert_int_eq(loop_post(l, late_b_fn, NULL), 0);
	loop_run_posts_of(l, late_b_fn);
	ck_assert_int_eq(late_b, 4);
	loop_run_posts_of(l, late_a_fn);
	ck_assert_int_eq(late_a, 60);
	loop_free(l);
}
END_TEST

/* ---- loop_soon(): steps of split work see the fds ready in between */

struct soon_case {
	cubeid_loop *l;
	struct loop_soon step, other;
	int pipefd[2];
	char seen[16];
	int n;
};

static void
soon_step(void *arg)
{
	struct soon_case *c = arg;

	c->seen[c->n++] = 'S';
	if (c->n == 1) /* the fd is ready before the next step */
		ck_assert_int_eq(write(c->pipefd[1], "x", 1), 1);
	if (c->n < 6)
		loop_soon(c->l, &c->step); /* again, after the next batch */
	else
		loop_stop(c->l);
}

static void
soon_other(void *arg)
{
	struct soon_case *c = arg;

	c->seen[c->n++] = 'O';
}

static void
soon_fd(cubeid_loop *l, int fd, int events, void *arg)
{
	struct soon_case *c = arg;
	char b;

	(void)events;
	ck_assert_int_eq(read(fd, &b, 1), 1);
	c->seen[c->n++] = 'F';
	loop_watch(l, fd, 0, NULL, NULL);
}

START_TEST(test_soon_runs_after_each_batch_and_can_be_cancelled)
{
	struct soon_case c;

	memset(&c, 0, sizeof(c));
	ck_assert_int_eq(loop_new(&c.l), 0);
	ck_assert_int_eq(pipe(c.pipefd), 0);
	c.step = (struct loop_soon){.fn = soon_step, .arg = &c};
	c.other = (struct loop_soon){.fn = soon_other, .arg = &c};
	ck_assert_int_eq(loop_watch(c.l, c.pipefd[0], LOOP_READABLE, soon_fd, &c), 0);
	loop_soon(c.l, &c.other);
	loop_soon(c.l, &c.step);
	loop_soon(c.l, &c.step); /* queued already: once */
	loop_soon_cancel(c.l, &c.other);
	loop_soon_cancel(c.l, &c.other); /* not queued: nothing */
	ck_assert_int_eq(loop_run(c.l), 0);
	/* the cancelled call never ran; the fd made ready by the first step
	 * was served before the second: one step per batch, and the wait
	 * between steps did not block */
	ck_assert_str_eq(c.seen, "SFSSSS");
	close(c.pipefd[0]);
	close(c.pipefd[1]);
	loop_free(c.l);
}
END_TEST

START_TEST(test_stop_from_another_thread)
{
	cubeid_loop *l;
	pthread_t t;

	ck_assert_int_eq(loop_new(&l), 0);
	ck_assert_int_eq(pthread_create(&t, NULL, run_thread, l), 0);
	loop_stop(l);
	ck_assert_int_eq(pthread_join(t, NULL), 0);
	loop_free(l);
}
END_TEST

static cubeid_loop *sig_loop;

static void
on_sigusr1(int sig)
{
	(void)sig;
	loop_stop(sig_loop);
}

static long
raise_timer(cubeid_loop *l, void *arg)
{
	(void)l;
	(void)arg;
	raise(SIGUSR1);
	return -1;
}

START_TEST(test_stop_from_a_signal_handler)
{
	struct sigaction sa = {0};

	sa.sa_handler = on_sigusr1;
	ck_assert_int_eq(sigaction(SIGUSR1, &sa, NULL), 0);
	ck_assert_int_eq(loop_new(&sig_loop), 0);
	ck_assert_int_gt(loop_timer_add(sig_loop, 1, raise_timer, NULL), 0);
	ck_assert_int_eq(loop_run(sig_loop), 0);
	/* The stop was consumed: the loop can run again. */
	ck_assert_int_gt(loop_timer_add(sig_loop, 0, stop_timer, NULL), 0);
	ck_assert_int_eq(loop_run(sig_loop), 0);
	loop_free(sig_loop);
	loop_free(NULL);
}
END_TEST

static Suite *
loop_suite(void)
{
	Suite *s = suite_create("loop");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, test_timers_run_in_deadline_order);
	tcase_add_test(tc, test_timer_repeats_until_it_returns_minus_one);
	tcase_add_test(tc, test_deleted_timer_never_runs);
	tcase_add_test(tc, test_timer_can_delete_itself);
	tcase_add_test(tc, test_fd_readable_calls_back);
	tcase_add_test(tc, test_fd_writable_and_replace);
	tcase_add_test(tc, test_post_from_threads_runs_every_one_on_the_loop);
	tcase_add_test(tc, test_run_posts_of_runs_only_that_fn_in_order);
	tcase_add_test(tc, test_soon_runs_after_each_batch_and_can_be_cancelled);
	tcase_add_test(tc, test_stop_from_another_thread);
	tcase_add_test(tc, test_stop_from_a_signal_handler);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(loop_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
