/* The atomic directory writer (<cubeid/atomic-dir.h>): layout, modes and
 * owners on every write, stale names, crash leftovers, and bad input. */
#include "config.h"

#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cubeid/atomic-dir.h>
#include <cubeid/error.h>

static char base[256];
static char dir[512];

static void
setup(void)
{
	snprintf(base, sizeof(base), "/tmp/cubeid-adir.XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(base));
	snprintf(dir, sizeof(dir), "%s/a/b/certs", base);
}

static void
teardown(void)
{
	char cmd[PATH_MAX + 16];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", base);
	ck_assert_int_eq(system(cmd), 0);
}

static char *
slurp(const char *name)
{
	static char buf[4096];
	char p[PATH_MAX + 64];
	ssize_t n;
	int fd;

	snprintf(p, sizeof(p), "%s/%s", dir, name);
	if ((fd = open(p, O_RDONLY)) < 0)
		return NULL;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	buf[n > 0 ? n : 0] = '\0';
	return buf;
}

static int
count_sets(void)
{
	struct dirent *de;
	DIR *d = opendir(dir);
	int n = 0;

	ck_assert_ptr_nonnull(d);
	while ((de = readdir(d)) != NULL)
		if (de->d_name[0] == '.' && de->d_name[1] == '.' && de->d_name[2] >= '0' &&
		    de->d_name[2] <= '9')
			n++;
	closedir(d);
	return n;
}

static mode_t
mode_of(const char *name, uid_t *uid)
{
	char p[PATH_MAX + 64];
	struct stat st;

	snprintf(p, sizeof(p), "%s/%s", dir, name);
	ck_assert_int_eq(stat(p, &st), 0);
	if (uid != NULL)
		*uid = st.st_uid;
	return st.st_mode & 07777;
}

START_TEST(test_layout_and_update)
{
	struct cubeid_adir_file f[3] = {
	        {"svid.pem", "cert1", 5, 0644},
	        {"svid_key.pem", "key1", 4, 0600},
	        {"svid_bundle.pem", "bundle1", 7, 0644},
	};
	char p[PATH_MAX + 64], link[PATH_MAX];
	const char *why = NULL;
	ssize_t n;

	ck_assert_int_eq(cubeid_adir_write(dir, f, 3, NULL, &why), CUBEID_OK);
	ck_assert_str_eq(slurp("svid.pem"), "cert1");
	ck_assert_str_eq(slurp("svid_key.pem"), "key1");
	ck_assert_int_eq(mode_of("svid_key.pem", NULL), 0600);
	ck_assert_int_eq(mode_of("svid.pem", NULL), 0644);
	snprintf(p, sizeof(p), "%s/svid.pem", dir);
	n = readlink(p, link, sizeof(link) - 1);
	ck_assert_int_gt(n, 0);
	link[n] = '\0';
	ck_assert_str_eq(link, "..data/svid.pem");
	ck_assert_int_eq(count_sets(), 1);

	/* a second set: new content, new modes, one file gone, one new */
	f[0].data = "cert2";
	f[1].data = "key2";
	f[1].mode = 0400;
	f[2].name = "extra.jwt";
	f[2].data = "tok";
	f[2].len = 3;
	ck_assert_int_eq(cubeid_adir_write(dir, f, 3, NULL, &why), CUBEID_OK);
	ck_assert_str_eq(slurp("svid.pem"), "cert2");
	ck_assert_str_eq(slurp("svid_key.pem"), "key2");
	ck_assert_str_eq(slurp("extra.jwt"), "tok");
	ck_assert_int_eq(mode_of("svid_key.pem", NULL), 0400);
	snprintf(p, sizeof(p), "%s/svid_bundle.pem", dir);
	ck_assert_int_ne(access(p, F_OK), 0);
	ck_assert_int_eq(errno, ENOENT);
	snprintf(p, sizeof(p), "%s/svid_bundle.pem", dir);
	ck_assert_int_ne(lstat(p, &(struct stat){0}), 0); /* the dangling link went too */
	ck_assert_int_eq(count_sets(), 1);
}
END_TEST

START_TEST(test_owner_and_mode_every_write)
{
	struct cubeid_adir_file f = {"svid_key.pem", "k", 1, 0600};
	struct cubeid_adir_opts o = {(uid_t)-1, (gid_t)-1, 0750, false};
	char p[PATH_MAX + 64];
	uid_t uid;
	int i;

	if (geteuid() == 0) {
		o.uid = 65534;
		o.gid = 65534;
	}
	for (i = 0; i < 3; i++) {
		ck_assert_int_eq(cubeid_adir_write(dir, &f, 1, &o, NULL), CUBEID_OK);
		/* someone loosens the file: the next write puts the mode back */
		snprintf(p, sizeof(p), "%s/svid_key.pem", dir);
		ck_assert_int_eq(mode_of("svid_key.pem", &uid), 0600);
		if (geteuid() == 0)
			ck_assert_int_eq(uid, 65534);
		ck_assert_int_eq(chmod(p, 0666), 0);
	}
}
END_TEST

START_TEST(test_replaces_regular_files)
{
	struct cubeid_adir_file f = {"svid.pem", "new", 3, 0644};
	char p[PATH_MAX + 64];
	FILE *fp;

	snprintf(p, sizeof(p), "mkdir -p '%s'", dir);
	ck_assert_int_eq(system(p), 0);
	snprintf(p, sizeof(p), "%s/svid.pem", dir);
	fp = fopen(p, "w");
	ck_assert_ptr_nonnull(fp);
	fputs("old, written by spiffe-helper", fp);
	fclose(fp);
	ck_assert_int_eq(cubeid_adir_write(dir, &f, 1, NULL, NULL), CUBEID_OK);
	ck_assert_str_eq(slurp("svid.pem"), "new");
}
END_TEST

START_TEST(test_crash_leftovers_cleaned)
{
	struct cubeid_adir_file f = {"svid.pem", "one", 3, 0644};
	char p[PATH_MAX + 64];
	unsigned removed = 0;

	ck_assert_int_eq(cubeid_adir_write(dir, &f, 1, NULL, NULL), CUBEID_OK);
	/* what a crash can leave: a half-written set, the temp links */
	snprintf(p, sizeof(p), "%s/..2026_01_01_00_00_00.000000001.abcdef", dir);
	ck_assert_int_eq(mkdir(p, 0755), 0);
	snprintf(p, sizeof(p), "%s/..2026_01_01_00_00_00.000000001.abcdef/svid.pem", dir);
	ck_assert_int_eq(close(open(p, O_CREAT | O_WRONLY, 0600)), 0);
	snprintf(p, sizeof(p), "%s/..data_tmp", dir);
	ck_assert_int_eq(symlink("..2026_01_01_00_00_00.000000001.abcdef", p), 0);
	snprintf(p, sizeof(p), "%s/..link_tmp", dir);
	ck_assert_int_eq(symlink("..data/svid.pem", p), 0);
	ck_assert_int_eq(count_sets(), 2);
	ck_assert_int_eq(cubeid_adir_cleanup(dir, NULL, &removed, NULL), CUBEID_OK);
	ck_assert_uint_eq(removed, 3);
	ck_assert_int_eq(count_sets(), 1);
	ck_assert_str_eq(slurp("svid.pem"), "one");
	/* nothing to do on a clean directory, or a missing one */
	ck_assert_int_eq(cubeid_adir_cleanup(dir, NULL, &removed, NULL), CUBEID_OK);
	ck_assert_uint_eq(removed, 0);
	snprintf(p, sizeof(p), "%s/nope", base);
	ck_assert_int_eq(cubeid_adir_cleanup(p, NULL, &removed, NULL), CUBEID_OK);
}
END_TEST

START_TEST(test_bad_input)
{
	struct cubeid_adir_file f[2] = {{"a", "x", 1, 0644}, {"a", "y", 1, 0644}};
	const char *why = NULL;
	static const char *const bad[] = {"", ".", "..", "..data", "..x", "a/b", NULL};
	size_t i;

	ck_assert_int_eq(cubeid_adir_write(dir, f, 2, NULL, &why), CUBEID_ERR_INVALID_ARG);
	ck_assert_str_eq(why, "two files have the same name");
	ck_assert_int_eq(cubeid_adir_write(dir, f, 0, NULL, &why), CUBEID_ERR_INVALID_ARG);
	ck_assert_int_eq(cubeid_adir_write(NULL, f, 1, NULL, &why), CUBEID_ERR_INVALID_ARG);
	for (i = 0; bad[i] != NULL; i++) {
		f[0].name = bad[i];
		ck_assert_msg(!cubeid_adir_name_ok(bad[i]), "'%s' accepted", bad[i]);
		ck_assert_int_eq(cubeid_adir_write(dir, f, 1, NULL, &why), CUBEID_ERR_INVALID_ARG);
	}
	ck_assert(cubeid_adir_name_ok("svid.pem"));
	ck_assert(cubeid_adir_name_ok(".hidden"));
	/* a directory at a stable name is not replaced */
	f[0].name = "d";
	{
		char p[PATH_MAX + 8];
		snprintf(p, sizeof(p), "mkdir -p '%s/d'", dir);
		ck_assert_int_eq(system(p), 0);
	}
	ck_assert_int_eq(cubeid_adir_write(dir, f, 1, NULL, &why), CUBEID_ERR_IO);
	ck_assert_str_eq(why, "cannot create a stable name through ..data");
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("atomic-dir");
	TCase *tc = tcase_create("core");
	SRunner *sr;
	int failed;

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_layout_and_update);
	tcase_add_test(tc, test_owner_and_mode_every_write);
	tcase_add_test(tc, test_replaces_regular_files);
	tcase_add_test(tc, test_crash_leftovers_cleaned);
	tcase_add_test(tc, test_bad_input);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
