/*
 * The audit log's coalescing (agent/audit.c): a credential is logged in
 * full once per caller, repeats are counted and summed up in one line, a
 * new credential or an eviction logs the pending count first, and the
 * table stays bounded.
 */
#include "config.h"

#include "agent/audit.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char logpath[64];

/* stderr (where the log goes) into a fresh file; each test gets its own
 * (without fork, as under valgrind, the tests share the process) */
static void
capture(void)
{
	int fd;

	snprintf(logpath, sizeof(logpath), "/tmp/cubeid-test-audit-XXXXXX");
	fd = mkstemp(logpath);

	ck_assert_int_ge(fd, 0);
	fflush(stderr);
	ck_assert_int_eq(dup2(fd, 2), 2);
	close(fd);
}

/* The captured log (caller frees); the file is emptied. */
static char *
captured(void)
{
	FILE *f;
	char *s = calloc(1, 1 << 20);
	size_t n;

	fflush(stderr);
	ck_assert_ptr_nonnull(s);
	f = fopen(logpath, "r");
	ck_assert_ptr_nonnull(f);
	n = fread(s, 1, (1 << 20) - 1, f);
	s[n] = '\0';
	fclose(f);
	ck_assert_int_eq(ftruncate(2, 0), 0);
	lseek(2, 0, SEEK_SET);
	return s;
}

static size_t
count(const char *s, const char *what)
{
	size_t n = 0;

	for (s = strstr(s, what); s != NULL; s = strstr(s + 1, what))
		n++;
	return n;
}

START_TEST(test_repeats_are_counted)
{
	char *log;
	int i;

	capture();
	ck_assert(audit_first("x509-svid", 1000, 10, "web", "spiffe_id=spiffe://td/web", "serial",
	                      "AA"));
	for (i = 0; i < 9; i++)
		ck_assert(!audit_first("x509-svid", 1000, 11 + i, "web",
		                       "spiffe_id=spiffe://td/web", "serial", "AA"));
	/* another caller of the same SVID, another kind: logged in full */
	ck_assert(audit_first("x509-svid", 1001, 30, "web", "spiffe_id=spiffe://td/web", "serial",
	                      "AA"));
	ck_assert(audit_first("jwt-svid", 1000, 31, "web", "spiffe_id=spiffe://td/web aud=[a]",
	                      "jti", "j1"));
	log = captured();
	ck_assert_str_eq(log, ""); /* nothing yet: the minute is not over */
	free(log);
	/* a new SVID (a rotation): the repeats of the old one are logged first */
	ck_assert(audit_first("x509-svid", 1000, 40, "web", "spiffe_id=spiffe://td/web", "serial",
	                      "BB"));
	log = captured();
	ck_assert_msg(strstr(log,
	                     "x509-svid spiffe_id=spiffe://td/web uid=1000 entry=web "
	                     "last_pid=19 serial=AA: served 9 cached fetches in the last ") != NULL,
	              "%s", log);
	ck_assert_uint_eq(count(log, "served"), 1);
	free(log);
	ck_assert(!audit_first("x509-svid", 1000, 41, "web", "spiffe_id=spiffe://td/web", "serial",
	                       "BB"));
	ck_assert(!audit_first("jwt-svid", 1000, 42, "web", "spiffe_id=spiffe://td/web aud=[a]",
	                       "jti", "j1"));
	audit_flush();
	log = captured();
	ck_assert_uint_eq(count(log, "served 1 cached fetch in"), 2);
	ck_assert_ptr_nonnull(strstr(log, "jwt-svid spiffe_id=spiffe://td/web aud=[a] uid=1000"));
	free(log);
	/* after a flush every caller is new again */
	ck_assert(audit_first("x509-svid", 1000, 43, "web", "spiffe_id=spiffe://td/web", "serial",
	                      "BB"));
	audit_flush();
	unlink(logpath);
}
END_TEST

START_TEST(test_table_is_bounded)
{
	char what[64], *log;
	int i;

	capture();
	/* twice the table's callers, each fetching twice */
	for (i = 0; i < 2 * AUDIT_SLOTS; i++) {
		snprintf(what, sizeof(what), "spiffe_id=spiffe://td/w%d", i);
		ck_assert(audit_first("x509-svid", (uid_t)i, 1, "e", what, "serial", "S"));
		ck_assert(!audit_first("x509-svid", (uid_t)i, 2, "e", what, "serial", "S"));
	}
	log = captured();
	/* the first AUDIT_SLOTS were evicted, each count logged */
	ck_assert_uint_eq(count(log, "served 1 cached fetch in"), AUDIT_SLOTS);
	ck_assert_ptr_nonnull(strstr(log, "spiffe://td/w0 uid=0 entry=e last_pid=2 serial=S"));
	free(log);
	/* an evicted caller is new again; a kept one is still counted */
	snprintf(what, sizeof(what), "spiffe_id=spiffe://td/w%d", 2 * AUDIT_SLOTS - 1);
	ck_assert(!audit_first("x509-svid", (uid_t)(2 * AUDIT_SLOTS - 1), 3, "e", what, "serial",
	                       "S"));
	ck_assert(audit_first("x509-svid", 0, 3, "e", "spiffe_id=spiffe://td/w0", "serial", "S"));
	audit_flush();
	log = captured();
	/* w0 took w256's slot (the least recently used; its count went out
	 * then), the rest went out with the flush; w0 had none pending */
	ck_assert_uint_eq(count(log, "served"), AUDIT_SLOTS);
	ck_assert_uint_eq(count(log, "spiffe://td/w0 "), 0);
	free(log);
	unlink(logpath);
}
END_TEST

int
main(void)
{
	Suite *su = suite_create("audit");
	TCase *tc = tcase_create("audit");
	SRunner *sr;
	int failed;

	tcase_add_test(tc, test_repeats_are_counted);
	tcase_add_test(tc, test_table_is_bounded);
	suite_add_tcase(su, tc);
	sr = srunner_create(su);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
