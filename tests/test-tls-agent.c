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

static void
start_agent(void)
{
	const char *b = getenv("CUBEID_BUILDDIR"), *mod = getenv("CUBEID_SOFTHSM_MODULE");
	char *prog, *state, *entries, *log;
	struct cubeid_wl_opts o = {0};
	int i, fd;

	ck_assert_int_ge(asprintf(&prog, "%s/agent/cubeid-agent", b != NULL ? b : "."), 0);
	if (access(prog, X_OK) != 0)
		th_skip("%s is not built", prog);
	ck_assert_int_ge(asprintf(&state, "%s/state", dir), 0);
	ck_assert_int_ge(asprintf(&entries, "%s/entries.yaml", dir), 0);
	ck_assert_int_ge(asprintf(&log, "%s/agent.log", dir), 0);
	ck_assert_int_ge(asprintf(&sock, "%s/agent.sock", dir), 0);
	ck_assert_int_ge(
	        asprintf(&own_id, "spiffe://cluster.local/unix/uid/%u", (unsigned)getuid()), 0);
	fd = open(entries, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, "entries: []\n", 12), 12);
	close(fd);
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
		int lfd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0600);

		if (lfd >= 0) {
			dup2(lfd, 1);
			dup2(lfd, 2);
		}
		execl(prog, prog, "--dev", "--state-dir", state, "--socket", sock, "--entries",
		      entries, "--x509-svid-ttl", "30s", "--log-level", "info", (char *)NULL);
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
setup(void)
{
	dir = th_mkdtemp("cubeid-tls-agent");
	start_agent();
}

static void
teardown(void)
{
	if (agent > 0) {
		kill(agent, SIGTERM);
		waitpid(agent, NULL, 0);
		agent = -1;
	}
	th_rmtree(dir);
	free(dir);
	free(sock);
	free(own_id);
	dir = sock = own_id = NULL;
}

static int reloads;

static void
on_reload(cubeid_tls *tls, int rc, void *arg)
{
	if (rc == CUBEID_OK)
		__atomic_add_fetch(&reloads, 1, __ATOMIC_RELAXED);
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

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 600);
	tcase_add_test(tc, test_workload_api_source_follows_rotation);
	tcase_add_test(tc, test_workload_api_source_without_agent_times_out);
	suite_add_tcase(s, tc);
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
