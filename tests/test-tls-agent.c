/*
 * The TLS loader's Workload API source against the real cubeid-agent
 * --dev (its own throwaway SoftHSM2 token, a socket in a temp dir, an
 * X.509-SVID TTL of 30 s): the loader gets its SVID from the socket, its
 * server and client contexts authorize each other by that SPIFFE ID, and
 * it follows the agent's rotation (at about 15 s: long enough that an SVID
 * is still valid when a slow run, under valgrind, gets it) (a new certificate is presented by the
 * next handshake, with no handshake failing in between).  A socket where
 * nobody listens fails cubeid_tls_new() after its timeout.
 */
#include "config.h"

#include <check.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cubeid/tls.h>
#include <cubeid/workloadapi.h>

#include "tests/harness.h"
#include "tests/tls-test-util.h"

static char *dir, *sock, *own_id;
static pid_t agent = -1;
static const char *svid_ttl = "30s";

/* Write the agent's entries file (atomically: the agent watches it). */
static void
write_entries(const char *text)
{
	char *entries, *tmp;
	int fd;
	ssize_t len = (ssize_t)strlen(text);

	ck_assert_int_ge(asprintf(&entries, "%s/entries.yaml", dir), 0);
	ck_assert_int_ge(asprintf(&tmp, "%s/entries.yaml.tmp", dir), 0);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, text, (size_t)len), len);
	close(fd);
	ck_assert_int_eq(rename(tmp, entries), 0);
	free(entries);
	free(tmp);
}

/* Start cubeid-agent --dev on dir's state and socket (again after
 * stop_agent(): the same state, the same socket path), and wait until it
 * serves. */
static void
start_agent(void)
{
	const char *b = getenv("CUBEID_BUILDDIR"), *mod = getenv("CUBEID_SOFTHSM_MODULE");
	char *prog, *state, *entries, *log;
	struct cubeid_wl_opts o = {0};
	int i;

	ck_assert_int_ge(asprintf(&prog, "%s/agent/cubeid-agent", b != NULL ? b : "."), 0);
	if (access(prog, X_OK) != 0)
		th_skip("%s is not built", prog);
	ck_assert_int_ge(asprintf(&state, "%s/state", dir), 0);
	ck_assert_int_ge(asprintf(&entries, "%s/entries.yaml", dir), 0);
	ck_assert_int_ge(asprintf(&log, "%s/agent.log", dir), 0);
	if (sock == NULL)
		ck_assert_int_ge(asprintf(&sock, "%s/agent.sock", dir), 0);
	if (own_id == NULL)
		ck_assert_int_ge(
		        asprintf(&own_id, "spiffe://cluster.local/unix/uid/%u", (unsigned)getuid()),
		        0);
	if (access(entries, F_OK) != 0)
		write_entries("entries: []\n");
	if (mod != NULL && *mod != '\0')
		setenv("CUBEID_PKCS11_MODULE", mod, 1);
	unsetenv("CUBEID_TOKEN");
	unsetenv("CUBEID_PIN");
	unsetenv("CUBEID_PIN_FILE");
	unsetenv("CUBEID_STATE_DIR");
	unsetenv("SPIFFE_ENDPOINT_SOCKET");
	agent = fork();
	ck_assert_int_ge(agent, 0);
	if (agent == 0) {
		int lfd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0600);

		if (lfd >= 0) {
			dup2(lfd, 1);
			dup2(lfd, 2);
		}
		execl(prog, prog, "--dev", "--state-dir", state, "--socket", sock, "--entries",
		      entries, "--x509-svid-ttl", svid_ttl, "--log-level", "info", (char *)NULL);
		_exit(127);
	}
	/* generously: the agent makes its token and CA first */
	o.socket = sock;
	o.timeout_ms = 5000;
	for (i = 0; i < 1200; i++) {
		struct cubeid_wl_x509 *x = NULL;
		int status;

		if (waitpid(agent, &status, WNOHANG) == agent) {
			agent = -1;
			ck_abort_msg("cubeid-agent exited early (see %s)", log);
		}
		if (access(sock, F_OK) == 0 && cubeid_wl_fetch_x509(&o, &x, NULL) == CUBEID_OK) {
			cubeid_wl_x509_free(x);
			break;
		}
		poll(NULL, 0, 100);
	}
	ck_assert_msg(i < 1200, "cubeid-agent did not serve within 120 s");
	free(prog);
	free(state);
	free(entries);
	free(log);
}

static void
stop_agent(void)
{
	if (agent > 0) {
		kill(agent, SIGTERM);
		waitpid(agent, NULL, 0);
		agent = -1;
	}
}

static void
setup(void)
{
	dir = th_mkdtemp("cubeid-tls-agent");
	start_agent();
}

/* An SVID TTL of an hour: no rotation during the test, so a new SVID can
 * only come from the agent's restart. */
static void
setup_no_rotation(void)
{
	svid_ttl = "1h";
	setup();
}

#define EXTRA_ID "spiffe://cluster.local/extra/b"

static void
write_extra_entry(void)
{
	char *text;

	ck_assert_int_ge(asprintf(&text,
	                          "entries:\n"
	                          "  - name: extra\n"
	                          "    spiffe_id: " EXTRA_ID "\n"
	                          "    selectors: [unix:uid:%u]\n",
	                          (unsigned)getuid()),
	                 0);
	write_entries(text);
	free(text);
}

/* Our uid gets a second identity, EXTRA_ID, from an entry. */
static void
setup_extra_identity(void)
{
	svid_ttl = "1h";
	dir = th_mkdtemp("cubeid-tls-agent");
	write_extra_entry();
	start_agent();
}

static void
teardown(void)
{
	stop_agent();
	th_rmtree(dir);
	free(dir);
	free(sock);
	free(own_id);
	dir = sock = own_id = NULL;
}

static int reloads, failures;

static void
on_reload(cubeid_tls *tls, int rc, void *arg)
{
	if (rc == CUBEID_OK)
		__atomic_add_fetch(&reloads, 1, __ATOMIC_RELAXED);
	else
		__atomic_add_fetch(&failures, 1, __ATOMIC_RELAXED);
}

/* The loader's current leaf: its serial (hex) into serial, and notBefore. */
static ASN1_TIME *
own_leaf(cubeid_tls *tls, char *serial, size_t n)
{
	X509 *x = NULL;
	ASN1_TIME *nb;
	char *hex;

	ck_assert_int_eq(cubeid_tls_own_cert(tls, &x), CUBEID_OK);
	hex = ttu_serial_hex(x);
	snprintf(serial, n, "%s", hex);
	nb = ASN1_STRING_dup(X509_get0_notBefore(x));
	ck_assert_ptr_nonnull(nb);
	free(hex);
	X509_free(x);
	return nb;
}

START_TEST(test_workload_api_source_follows_rotation)
{
	const char *allow[1];
	struct cubeid_tls_config cfg = {0};
	cubeid_tls *tls = NULL;
	cubeid_spiffe_id *id = NULL;
	SSL_CTX *s = NULL, *c = NULL;
	struct ttu_hs r;
	char first[80];
	int i, handshakes = 0;
	time_t t0;
	bool rotated = false;

	allow[0] = own_id;
	cfg.socket = sock;
	cfg.allow = allow;
	cfg.n_allow = 1;
	cfg.on_reload = on_reload;
	ck_assert_int_eq(cubeid_tls_new(&cfg, &tls), CUBEID_OK);
	ck_assert_int_eq(cubeid_tls_own_id(tls, &id), CUBEID_OK);
	ck_assert_str_eq(cubeid_spiffe_id_string(id), own_id);
	ck_assert_int_eq(cubeid_tls_fd(tls), -1);
	ck_assert_int_eq(cubeid_tls_reload_check(tls), CUBEID_OK);
	ck_assert_int_eq(cubeid_tls_server_ctx(tls, &s), CUBEID_OK);
	ck_assert_int_eq(cubeid_tls_client_ctx(tls, &c), CUBEID_OK);
	ttu_handshake(c, s, &r);
	ck_assert_msg(r.connected, "%s / %s", r.client_why, r.server_why);
	ck_assert_str_eq(r.server_peer, own_id);
	ck_assert_str_eq(r.client_peer, own_id);
	snprintf(first, sizeof(first), "%s", r.server_serial);

	/* handshakes go on while the agent rotates (at about 15 s); every
	 * one succeeds, and a new certificate appears within 120 s */
	t0 = time(NULL);
	for (i = 0; !rotated && time(NULL) - t0 < 120; i++) {
		ttu_handshake(c, s, &r);
		handshakes++;
		ck_assert_msg(r.connected, "handshake %d failed: %s / %s", handshakes, r.client_why,
		              r.server_why);
		if (strcmp(r.server_serial, first) != 0)
			rotated = true;
		else
			poll(NULL, 0, 100);
	}
	ck_assert_msg(rotated, "no rotation reached the loader within 120 s (%d handshakes)", i);
	ck_assert_int_ge(cubeid_tls_generation(tls), 2);
	ck_assert_int_ge(__atomic_load_n(&reloads, __ATOMIC_RELAXED), 1);
	ck_assert_str_eq(r.server_peer, own_id);

	SSL_CTX_free(s);
	SSL_CTX_free(c);
	cubeid_spiffe_id_free(id);
	cubeid_tls_free(tls);
}
END_TEST

/* Workload API 4.2: the agent restarts (stopped by pid, started again on
 * the same socket and state); the source keeps serving its old SVID while
 * the agent is away, keeps trying (several failed attempts, with a backoff
 * that tls/tls-socket.c caps at 30 s), and reconnects by itself: it gets
 * the new agent's SVID (a new serial, a later notBefore), with no call
 * from us. */
START_TEST(test_workload_api_source_reconnects_after_agent_restart)
{
	const char *allow[1];
	struct cubeid_tls_config cfg = {0};
	cubeid_tls *tls = NULL;
	SSL_CTX *s = NULL, *c = NULL;
	struct ttu_hs r;
	char first[80], now[80];
	ASN1_TIME *nb1, *nb2 = NULL;
	const char *why = NULL;
	int i;

	allow[0] = own_id;
	cfg.socket = sock;
	cfg.allow = allow;
	cfg.n_allow = 1;
	cfg.on_reload = on_reload;
	ck_assert_int_eq(cubeid_tls_new(&cfg, &tls), CUBEID_OK);
	ck_assert_int_eq(cubeid_tls_server_ctx(tls, &s), CUBEID_OK);
	ck_assert_int_eq(cubeid_tls_client_ctx(tls, &c), CUBEID_OK);
	nb1 = own_leaf(tls, first, sizeof(first));
	ttu_handshake(c, s, &r);
	ck_assert_msg(r.connected, "%s / %s", r.client_why, r.server_why);

	stop_agent();
	/* the stream breaks and every attempt to reopen it fails: wait for
	 * five of them (at once, then after 0.5, 1, 2 s ...) */
	for (i = 0; i < 1200 && __atomic_load_n(&failures, __ATOMIC_RELAXED) < 5; i++)
		poll(NULL, 0, 100);
	ck_assert_msg(__atomic_load_n(&failures, __ATOMIC_RELAXED) >= 5,
	              "the source gave up after %d failed attempts",
	              __atomic_load_n(&failures, __ATOMIC_RELAXED));
	ck_assert_int_ne(cubeid_tls_last_error(tls, &why), CUBEID_OK);
	/* meanwhile the old SVID serves */
	ttu_handshake(c, s, &r);
	ck_assert_msg(r.connected, "with the agent away: %s / %s", r.client_why, r.server_why);
	ck_assert_str_eq(r.server_serial, first);

	start_agent();
	for (i = 0; i < 1200; i++) {
		ASN1_TIME_free(nb2);
		nb2 = own_leaf(tls, now, sizeof(now));
		if (strcmp(now, first) != 0)
			break;
		poll(NULL, 0, 100);
	}
	ck_assert_msg(strcmp(now, first) != 0,
	              "the source did not reconnect within 120 s of the agent's restart");
	ck_assert_int_gt(ASN1_TIME_compare(nb2, nb1), 0);
	ck_assert_int_eq(cubeid_tls_last_error(tls, &why), CUBEID_OK);
	ttu_handshake(c, s, &r);
	ck_assert_msg(r.connected, "after the restart: %s / %s", r.client_why, r.server_why);
	ck_assert_str_eq(r.server_serial, now);

	ASN1_TIME_free(nb1);
	ASN1_TIME_free(nb2);
	SSL_CTX_free(s);
	SSL_CTX_free(c);
	cubeid_tls_free(tls);
}
END_TEST

/* libcubeid's watch in a thread: how many SVIDs each message had, and
 * whether EXTRA_ID was among them. */
struct watch_log {
	pthread_mutex_t mu;
	int n;
	size_t n_svids[64];
	bool extra[64];
	int stop;
	int rc;
};

static int
on_watch(const struct cubeid_wl_x509 *x, void *arg)
{
	struct watch_log *w = arg;
	size_t i;

	pthread_mutex_lock(&w->mu);
	if (w->n < 64) {
		w->n_svids[w->n] = x->n_svids;
		w->extra[w->n] = false;
		for (i = 0; i < x->n_svids; i++)
			if (strcmp(x->svids[i].spiffe_id, EXTRA_ID) == 0)
				w->extra[w->n] = true;
		w->n++;
	}
	pthread_mutex_unlock(&w->mu);
	return 0;
}

static void *
watch_thread(void *arg)
{
	struct watch_log *w = arg;
	struct cubeid_wl_opts o = {.socket = sock};

	w->rc = cubeid_wl_watch_x509(&o, on_watch, w, &w->stop, NULL);
	return NULL;
}

/* True once the watch saw a message with (want) or without EXTRA_ID. */
static bool
watch_saw(struct watch_log *w, bool want, size_t *n_svids)
{
	bool seen = false;
	int i;

	pthread_mutex_lock(&w->mu);
	for (i = 0; i < w->n && !seen; i++)
		if (w->extra[i] == want) {
			seen = true;
			*n_svids = w->n_svids[i];
		}
	pthread_mutex_unlock(&w->mu);
	return seen;
}

/* Workload API 4.4 (and 5.2.1): the entry that gave us EXTRA_ID goes (the
 * entries file rewritten, SIGHUP), so the next message's svids no longer
 * hold it.  The TLS source that used it drops it -- no handshake presents
 * the withdrawn SVID -- instead of keeping the older value; libcubeid's
 * watch hands over the shorter list.  The entry comes back: so does the
 * identity. */
START_TEST(test_workload_api_source_drops_a_withdrawn_identity)
{
	const char *allow[] = {"spiffe://cluster.local"};
	struct cubeid_tls_config cfg = {0};
	struct watch_log w = {.mu = PTHREAD_MUTEX_INITIALIZER};
	cubeid_tls *tls = NULL;
	cubeid_spiffe_id *id = NULL;
	SSL_CTX *s = NULL, *c = NULL;
	struct ttu_hs r;
	const char *why = NULL;
	pthread_t t;
	size_t n1 = 0, n2 = 0;
	int i;

	cfg.socket = sock;
	cfg.spiffe_id = EXTRA_ID;
	cfg.allow = allow;
	cfg.n_allow = 1;
	cfg.on_reload = on_reload;
	ck_assert_int_eq(cubeid_tls_new(&cfg, &tls), CUBEID_OK);
	ck_assert_int_eq(cubeid_tls_own_id(tls, &id), CUBEID_OK);
	ck_assert_str_eq(cubeid_spiffe_id_string(id), EXTRA_ID);
	cubeid_spiffe_id_free(id);
	ck_assert_int_eq(cubeid_tls_server_ctx(tls, &s), CUBEID_OK);
	ck_assert_int_eq(cubeid_tls_client_ctx(tls, &c), CUBEID_OK);
	ttu_handshake(c, s, &r);
	ck_assert_msg(r.connected, "%s / %s", r.client_why, r.server_why);
	ck_assert_str_eq(r.server_peer, EXTRA_ID);

	ck_assert_int_eq(pthread_create(&t, NULL, watch_thread, &w), 0);
	for (i = 0; i < 1200 && !watch_saw(&w, true, &n1); i++)
		poll(NULL, 0, 100);
	ck_assert_msg(watch_saw(&w, true, &n1), "the watch never saw " EXTRA_ID);
	ck_assert_uint_ge(n1, 2); /* the dev identity and EXTRA_ID */

	write_entries("entries: []\n");
	ck_assert_int_eq(kill(agent, SIGHUP), 0);
	for (i = 0; i < 1200 && cubeid_tls_own_id(tls, &id) == CUBEID_OK; i++) {
		cubeid_spiffe_id_free(id);
		id = NULL;
		poll(NULL, 0, 100);
	}
	ck_assert_msg(id == NULL, "the source kept the withdrawn " EXTRA_ID " for 120 s");
	ck_assert_int_eq(cubeid_tls_last_error(tls, &why), CUBEID_ERR_NOT_FOUND);
	ttu_handshake(c, s, &r);
	ck_assert_msg(!r.connected, "a handshake presented the withdrawn SVID");
	for (i = 0; i < 1200 && !watch_saw(&w, false, &n2); i++)
		poll(NULL, 0, 100);
	ck_assert_msg(watch_saw(&w, false, &n2), "the watch kept a list with " EXTRA_ID);
	ck_assert_uint_eq(n2, n1 - 1);

	/* and back */
	write_extra_entry();
	ck_assert_int_eq(kill(agent, SIGHUP), 0);
	for (i = 0; i < 1200 && cubeid_tls_own_id(tls, &id) != CUBEID_OK; i++)
		poll(NULL, 0, 100);
	ck_assert_msg(id != NULL, EXTRA_ID " did not come back within 120 s");
	ck_assert_str_eq(cubeid_spiffe_id_string(id), EXTRA_ID);
	cubeid_spiffe_id_free(id);
	ttu_handshake(c, s, &r);
	ck_assert_msg(r.connected, "%s / %s", r.client_why, r.server_why);

	w.stop = 1;
	pthread_join(t, NULL);
	ck_assert_int_eq(w.rc, CUBEID_OK);
	SSL_CTX_free(s);
	SSL_CTX_free(c);
	cubeid_tls_free(tls);
}
END_TEST

START_TEST(test_workload_api_source_without_agent_times_out)
{
	const char *allow[] = {"spiffe://cluster.local"};
	struct cubeid_tls_config cfg = {0};
	cubeid_tls *tls = NULL;
	char *nowhere;
	int rc;

	ck_assert_int_ge(asprintf(&nowhere, "%s/nobody.sock", dir), 0);
	cfg.socket = nowhere;
	cfg.allow = allow;
	cfg.n_allow = 1;
	cfg.timeout_ms = 1500;
	rc = cubeid_tls_new(&cfg, &tls);
	ck_assert_msg(rc == CUBEID_ERR_UNAVAILABLE || rc == CUBEID_ERR_TIMEOUT, "rc %d", rc);
	ck_assert_ptr_null(tls);
	/* and one that asks for an identity the agent does not give us */
	cfg.socket = sock;
	cfg.spiffe_id = "spiffe://cluster.local/not/ours";
	rc = cubeid_tls_new(&cfg, &tls);
	ck_assert_int_eq(rc, CUBEID_ERR_NOT_FOUND);
	ck_assert_ptr_null(tls);
	free(nowhere);
}
END_TEST

static Suite *
suite(void)
{
	Suite *s = suite_create("tls-agent");
	TCase *tc = tcase_create("tls-agent");
	TCase *restart = tcase_create("restart");
	TCase *withdrawn = tcase_create("withdrawn");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 600);
	tcase_add_test(tc, test_workload_api_source_follows_rotation);
	tcase_add_test(tc, test_workload_api_source_without_agent_times_out);
	suite_add_tcase(s, tc);
	tcase_add_checked_fixture(restart, setup_no_rotation, teardown);
	tcase_set_timeout(restart, 600);
	tcase_add_test(restart, test_workload_api_source_reconnects_after_agent_restart);
	suite_add_tcase(s, restart);
	tcase_add_checked_fixture(withdrawn, setup_extra_identity, teardown);
	tcase_set_timeout(withdrawn, 600);
	tcase_add_test(withdrawn, test_workload_api_source_drops_a_withdrawn_identity);
	suite_add_tcase(s, withdrawn);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
