/*
 * Crash safety of the atomic directory writer, by brute force: a child
 * rewrites a set of three files (each holding the set's generation) as
 * fast as it can, and the parent SIGKILLs it at a random moment, many
 * times.  After every kill the stable names must resolve to one whole set
 * (all three files of one generation, complete), and cubeid_adir_cleanup()
 * must leave exactly one set and no temporary links.  The test also counts
 * the kills that left debris, to show that they landed inside updates.
 */
#include "config.h"

#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cubeid/atomic-dir.h>
#include <cubeid/error.h>

#define KILLS     200
#define FILE_SIZE 3000

static const char *const names[3] = {"svid.pem", "svid_key.pem", "svid_bundle.pem"};

static void
writer(const char *dir, unsigned long gen)
{
	static char buf[3][FILE_SIZE];
	struct cubeid_adir_file f[3];
	int i;

	for (;; gen++) {
		for (i = 0; i < 3; i++) {
			memset(buf[i], 'a' + i, sizeof(buf[i]));
			snprintf(buf[i], 32, "%020lu\n", gen);
			buf[i][FILE_SIZE - 1] = '\n';
			f[i] = (struct cubeid_adir_file){names[i], buf[i], sizeof(buf[i]),
			                                 i == 1 ? 0600 : 0644};
		}
		if (cubeid_adir_write(dir, f, 3, NULL, NULL) != CUBEID_OK)
			_exit(3);
	}
}

/* The generation the three stable names show, or -1 if they disagree, are
 * incomplete or missing (-2 for no set at all yet). */
static long
set_generation(const char *dir)
{
	char p[PATH_MAX + 64], buf[FILE_SIZE + 1];
	long gen = -2, g;
	ssize_t n;
	int i, fd;

	for (i = 0; i < 3; i++) {
		snprintf(p, sizeof(p), "%s/%s", dir, names[i]);
		if ((fd = open(p, O_RDONLY)) < 0)
			return i == 0 && gen == -2 ? -2 : -1;
		n = read(fd, buf, sizeof(buf));
		close(fd);
		if (n != FILE_SIZE || buf[FILE_SIZE - 1] != '\n')
			return -1;
		g = strtol(buf, NULL, 10);
		if (gen >= 0 && g != gen)
			return -1;
		gen = g;
	}
	return gen;
}

static void
count(const char *dir, int *sets, int *tmp)
{
	struct dirent *de;
	DIR *d = opendir(dir);

	*sets = *tmp = 0;
	ck_assert_ptr_nonnull(d);
	while ((de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, "..data_tmp") == 0 || strcmp(de->d_name, "..link_tmp") == 0)
			(*tmp)++;
		else if (de->d_name[0] == '.' && de->d_name[1] == '.' && de->d_name[2] >= '0' &&
		         de->d_name[2] <= '9')
			(*sets)++;
	}
	closedir(d);
}

START_TEST(test_sigkill_during_writes)
{
	char base[] = "/tmp/cubeid-adir-crash.XXXXXX", dir[PATH_MAX];
	unsigned long gen = 1;
	long span_us;
	int k, debris = 0, sets, tmp, st;
	long last = 0, g;

	ck_assert_ptr_nonnull(mkdtemp(base));
	snprintf(dir, sizeof(dir), "%s/certs", base);
	/* how long one update takes here (valgrind, a slow disk): kills land
	 * anywhere in the first few updates of each writer */
	{
		char scratch[PATH_MAX + 16];
		struct cubeid_adir_file f = {"svid.pem", "x", 1, 0644};
		struct timespec a, b;
		int w;

		snprintf(scratch, sizeof(scratch), "%s/scratch", base);
		clock_gettime(CLOCK_MONOTONIC, &a);
		for (w = 0; w < 5; w++)
			ck_assert_int_eq(cubeid_adir_write(scratch, &f, 1, NULL, NULL), CUBEID_OK);
		clock_gettime(CLOCK_MONOTONIC, &b);
		span_us = ((b.tv_sec - a.tv_sec) * 1000000L + (b.tv_nsec - a.tv_nsec) / 1000) / 5 *
		          3 * 4;
		if (span_us < 20000)
			span_us = 20000;
	}
	for (k = 0; k < KILLS; k++) {
		struct timespec d;
		uint32_t r = 0;
		pid_t pid;
		unsigned removed = 0;

		if ((pid = fork()) == 0)
			writer(dir, gen);
		ck_assert_int_gt(pid, 0);
		(void)getrandom(&r, sizeof(r), 0);
		d.tv_sec = (long)(r % (uint32_t)span_us) / 1000000;
		d.tv_nsec = (long)(r % (uint32_t)span_us) % 1000000 * 1000;
		nanosleep(&d, NULL);
		kill(pid, SIGKILL);
		ck_assert_int_eq(waitpid(pid, &st, 0), pid);
		ck_assert_msg(WIFSIGNALED(st), "the writer failed (status %d)", st);

		g = set_generation(dir);
		ck_assert_msg(g != -1, "kill %d: the stable names do not show one whole set", k);
		if (g >= 0) {
			ck_assert_int_ge(g, last); /* never an older set than before */
			last = g;
			gen = (unsigned long)g + 1000000;
		}
		if (access(dir, F_OK) != 0) {
			/* killed before it made the directory (a slow start:
			 * valgrind, ASan, a loaded machine): nothing to see yet */
			ck_assert_int_eq(errno, ENOENT);
			ck_assert_int_eq(g, -2);
			continue;
		}
		count(dir, &sets, &tmp);
		if (sets > 1 || tmp > 0 || (g == -2 && sets > 0))
			debris++;
		ck_assert_int_eq(cubeid_adir_cleanup(dir, NULL, &removed, NULL), CUBEID_OK);
		count(dir, &sets, &tmp);
		ck_assert_int_eq(tmp, 0);
		ck_assert_int_eq(sets, g >= 0 ? 1 : 0);
		ck_assert_int_eq(set_generation(dir), g); /* cleaning changed nothing visible */
	}
	printf("%d SIGKILLs during continuous writes: %d left debris (cleaned), every one left "
	       "a whole set\n",
	       KILLS, debris);
	/* the kills must have landed inside updates, or this proved nothing */
	ck_assert_int_gt(debris, 0);
	{
		char cmd[PATH_MAX + 16];
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", base);
		ck_assert_int_eq(system(cmd), 0);
	}
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("adir-crash");
	TCase *tc = tcase_create("core");
	SRunner *sr;
	int failed;

	tcase_set_timeout(tc, 600);
	tcase_add_test(tc, test_sigkill_during_writes);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_set_fork_status(sr, CK_NOFORK);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
