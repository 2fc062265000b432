/*
 * The atomic directory writer, run as root, against a workload that tries
 * to point it somewhere else (<cubeid/atomic-dir.h>, common/safe-dir.c).
 * The attacker's steps run in a child that has become an unprivileged user
 * (nobody, 65534); the writer runs as root, as the agent does.  Everything
 * happens in a scratch directory under /tmp, with a stand-in "victim"
 * directory (root's, never a real system one) holding files named like the
 * delivered ones and a directory named like a set.  Every test checks that
 * the victim is byte for byte what it was.
 *
 *  - the delivery dir is a symlink to the victim: refused, victim intact;
 *  - a workload that owns the delivery dir's parent swaps the dir for a
 *    symlink between two writes: the second write is refused;
 *  - a parent writable by another user is refused unless
 *    allow_unsafe_parent (a sticky /tmp-like parent only when the entry in
 *    it is another user's);
 *  - the writer never removes what it did not make: a set-named directory
 *    owned by someone else, a set-named symlink, a look-alike name.
 *
 * It needs root (to be the writer and to become nobody); without it, it
 * is skipped (exit 77).
 */
#include "config.h"

#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cubeid/atomic-dir.h>
#include <cubeid/error.h>

#define NOBODY ((uid_t)65534)
#define SET    "..2026_01_01_00_00_00.000000001.abcdef"

static char base[256], victim[512], snap0[8192];

static const struct cubeid_adir_file files[3] = {
        {"svid.pem", "cert", 4, 0644},
        {"svid_key.pem", "key", 3, 0600},
        {"svid_bundle.pem", "bundle", 6, 0644},
};

static void
path(char *buf, size_t size, const char *rel)
{
	int n = snprintf(buf, size, "%s/%s", base, rel);

	ck_assert(n > 0 && (size_t)n < size);
}

static void
put(const char *rel, const char *text)
{
	char p[PATH_MAX];
	FILE *f;

	path(p, sizeof(p), rel);
	ck_assert_ptr_nonnull(f = fopen(p, "w"));
	fputs(text, f);
	ck_assert_int_eq(fclose(f), 0);
}

static void
mk(const char *rel, mode_t mode, uid_t owner)
{
	char p[PATH_MAX];

	path(p, sizeof(p), rel);
	ck_assert_int_eq(mkdir(p, mode), 0);
	ck_assert_int_eq(chmod(p, mode), 0); /* whatever the umask */
	ck_assert_int_eq(chown(p, owner, owner), 0);
}

/* Every entry of dir and one level below, with types, owners and file
 * contents, appended to out. */
static void
snapshot_dir(const char *dir, int depth, char *out, size_t size)
{
	struct dirent **names;
	int i, n = scandir(dir, &names, NULL, alphasort);

	ck_assert_int_ge(n, 0);
	for (i = 0; i < n; i++) {
		char p[PATH_MAX], buf[256];
		const char *nm = names[i]->d_name;
		struct stat st;
		ssize_t len = 0;

		if (strcmp(nm, ".") != 0 && strcmp(nm, "..") != 0) {
			snprintf(p, sizeof(p), "%s/%s", dir, nm);
			ck_assert_int_eq(lstat(p, &st), 0);
			buf[0] = '\0';
			if (S_ISREG(st.st_mode)) {
				int fd = open(p, O_RDONLY);
				ck_assert_int_ge(fd, 0);
				len = read(fd, buf, sizeof(buf) - 1);
				close(fd);
			} else if (S_ISLNK(st.st_mode)) {
				len = readlink(p, buf, sizeof(buf) - 1);
			}
			buf[len > 0 ? len : 0] = '\0';
			snprintf(out + strlen(out), size - strlen(out), "%*s%s %o %u [%s]\n",
			         depth * 2, "", nm, (unsigned)st.st_mode, (unsigned)st.st_uid, buf);
			if (S_ISDIR(st.st_mode) && depth == 0)
				snapshot_dir(p, 1, out, size);
		}
		free(names[i]);
	}
	free(names);
}

static const char *
snapshot(void)
{
	static char s[8192];

	s[0] = '\0';
	snapshot_dir(victim, 0, s, sizeof(s));
	return s;
}

static void
setup(void)
{
	snprintf(base, sizeof(base), "/tmp/cubeid-adir-attack.XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(base));
	ck_assert_int_eq(chmod(base, 0755), 0);
	path(victim, sizeof(victim), "victim");
	/* the stand-in for a directory the workload must not reach */
	mk("victim", 0755, 0);
	put("victim/svid.pem", "victim's svid.pem");
	put("victim/svid_key.pem", "victim's svid_key.pem");
	put("victim/..data", "victim's ..data");
	mk("victim/" SET, 0755, 0);
	put("victim/" SET "/keep", "a file in a set-named directory");
	strcpy(snap0, snapshot());
	ck_assert_ptr_nonnull(strstr(snap0, "victim's svid.pem"));
	ck_assert_ptr_nonnull(strstr(snap0, "a file in a set-named directory"));
}

static void
teardown(void)
{
	char cmd[PATH_MAX + 16];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", base);
	ck_assert_int_eq(system(cmd), 0);
}

/* Run step(arg) as nobody in a child; true if it returned 0. */
static bool
as_nobody(int (*step)(const char *), const char *arg)
{
	pid_t pid = fork();
	int st;

	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		if (setgroups(0, NULL) != 0 || setgid(NOBODY) != 0 || setuid(NOBODY) != 0 ||
		    getuid() != NOBODY)
			_exit(2);
		_exit(step(arg) == 0 ? 0 : 1);
	}
	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	return WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

/* nobody: DIR -> the victim */
static int
plant_link(const char *dir)
{
	return symlink(victim, dir);
}

/* nobody, who owns DIR's parent: DIR aside, a symlink to the victim in
 * its place */
static int
swap_for_link(const char *dir)
{
	char aside[PATH_MAX];

	snprintf(aside, sizeof(aside), "%s.old", dir);
	if (rename(dir, aside) != 0)
		return -1;
	return symlink(victim, dir);
}

static struct cubeid_adir_opts
opts(bool allow_unsafe_parent)
{
	struct cubeid_adir_opts o = {NOBODY, NOBODY, 0755, allow_unsafe_parent};

	return o;
}

START_TEST(test_dir_is_a_symlink)
{
	struct cubeid_adir_opts o;
	char dir[PATH_MAX];
	const char *why = NULL;
	unsigned removed = 99;
	int allow;

	mk("wl", 0755, NOBODY);
	path(dir, sizeof(dir), "wl/certs");
	ck_assert(as_nobody(plant_link, dir));
	/* with or without the second layer: a symlink is never followed */
	for (allow = 0; allow <= 1; allow++) {
		o = opts(allow);
		ck_assert_int_eq(cubeid_adir_write(dir, files, 3, &o, &why), CUBEID_ERR_PERMISSION);
		ck_assert_msg(strstr(why, "symlink") != NULL, "why: %s", why);
		ck_assert_int_eq(cubeid_adir_cleanup(dir, &o, &removed, &why),
		                 CUBEID_ERR_PERMISSION);
		ck_assert_uint_eq(removed, 0);
		ck_assert_str_eq(snapshot(), snap0);
	}
	/* and one further up the path */
	path(dir, sizeof(dir), "wl/certs/deeper");
	o = opts(true);
	ck_assert_int_eq(cubeid_adir_write(dir, files, 3, &o, &why), CUBEID_ERR_PERMISSION);
	ck_assert_msg(strstr(why, "symlink") != NULL, "why: %s", why);
	ck_assert_str_eq(snapshot(), snap0);
}
END_TEST

START_TEST(test_swap_between_writes)
{
	struct cubeid_adir_opts o = opts(true); /* the operator accepted the parent */
	char dir[PATH_MAX], p[PATH_MAX];
	const char *why = NULL;
	unsigned removed = 99;

	mk("wl", 0755, NOBODY);
	path(dir, sizeof(dir), "wl/certs");
	ck_assert_int_eq(cubeid_adir_write(dir, files, 3, &o, &why), CUBEID_OK);
	path(p, sizeof(p), "wl/certs/svid_key.pem");
	ck_assert_int_eq(access(p, R_OK), 0);
	/* between two rotations, the workload swaps the directory */
	ck_assert(as_nobody(swap_for_link, dir));
	ck_assert_int_eq(cubeid_adir_write(dir, files, 3, &o, &why), CUBEID_ERR_PERMISSION);
	ck_assert_msg(strstr(why, "symlink") != NULL, "why: %s", why);
	ck_assert_int_eq(cubeid_adir_cleanup(dir, &o, &removed, &why), CUBEID_ERR_PERMISSION);
	ck_assert_str_eq(snapshot(), snap0);
	/* the default refuses the directory before any swap */
	o = opts(false);
	ck_assert_int_eq(cubeid_adir_write(dir, files, 3, &o, &why), CUBEID_ERR_PERMISSION);
	ck_assert_str_eq(snapshot(), snap0);
}
END_TEST

START_TEST(test_unsafe_parent_refused)
{
	struct cubeid_adir_opts o = opts(false);
	char dir[PATH_MAX], p[PATH_MAX];
	const char *why = NULL;

	/* a parent another user owns */
	mk("wl", 0755, NOBODY);
	path(dir, sizeof(dir), "wl/certs");
	ck_assert_int_eq(cubeid_adir_write(dir, files, 3, &o, &why), CUBEID_ERR_PERMISSION);
	ck_assert_msg(strstr(why, "writable by another user") != NULL, "why: %s", why);
	ck_assert_int_ne(access(dir, F_OK), 0); /* nothing was created */
	/* a parent, root's, that others may write (not sticky) */
	mk("open", 0777, 0);
	path(dir, sizeof(dir), "open/certs");
	ck_assert_int_eq(cubeid_adir_write(dir, files, 3, &o, &why), CUBEID_ERR_PERMISSION);
	mk("grp", 0775, 0);
	path(dir, sizeof(dir), "grp/certs");
	ck_assert_int_eq(cubeid_adir_write(dir, files, 3, &o, &why), CUBEID_ERR_PERMISSION);
	/* a sticky one, like /tmp: the entry in it decides */
	mk("sticky", 01777, 0);
	mk("sticky/theirs", 0755, NOBODY);
	path(dir, sizeof(dir), "sticky/theirs/certs");
	ck_assert_int_eq(cubeid_adir_write(dir, files, 3, &o, &why), CUBEID_ERR_PERMISSION);
	mk("sticky/ours", 0755, 0);
	path(dir, sizeof(dir), "sticky/ours/certs");
	ck_assert_int_eq(cubeid_adir_write(dir, files, 3, &o, &why), CUBEID_OK);
	/* a delivery dir that nobody else could have made, in a sticky one:
	 * created by the writer, so it is root's */
	path(dir, sizeof(dir), "sticky/made-here");
	ck_assert_int_eq(cubeid_adir_write(dir, files, 3, &o, &why), CUBEID_OK);
	/* ... but not one that another user made there first */
	mk("sticky/squatted", 0755, NOBODY);
	path(dir, sizeof(dir), "sticky/squatted/certs");
	ck_assert_int_eq(cubeid_adir_write(dir, files, 3, &o, &why), CUBEID_ERR_PERMISSION);
	/* the opt-out */
	o = opts(true);
	path(dir, sizeof(dir), "wl/certs");
	ck_assert_int_eq(cubeid_adir_write(dir, files, 3, &o, &why), CUBEID_OK);
	path(p, sizeof(p), "wl/certs/svid.pem");
	ck_assert_int_eq(access(p, R_OK), 0);
	ck_assert_str_eq(snapshot(), snap0);
}
END_TEST

START_TEST(test_removes_only_its_own)
{
	struct cubeid_adir_opts o = opts(false);
	char dir[PATH_MAX], p[PATH_MAX], t[PATH_MAX];
	const char *why = NULL;
	unsigned removed = 99;
	int i;

	path(dir, sizeof(dir), "certs");
	ck_assert_int_eq(cubeid_adir_write(dir, files, 3, &o, &why), CUBEID_OK);
	/* set-named things the writer did not make: another user's
	 * directory, a symlink to the victim, a look-alike (Kubernetes'
	 * AtomicWriter's own names), and a symlink at a temporary name */
	mk("certs/" SET, 0755, NOBODY);
	put("certs/" SET "/theirs", "another user's file");
	path(p, sizeof(p), "certs/..2026_01_01_00_00_00.000000002.abcdef");
	ck_assert_int_eq(symlink(victim, p), 0);
	mk("certs/..2026_01_01_00_00_00.1234567890", 0755, 0);
	put("certs/..2026_01_01_00_00_00.1234567890/k8s", "kubelet's");
	path(p, sizeof(p), "certs/..link_tmp");
	ck_assert_int_eq(symlink(victim, p), 0);
	ck_assert_int_eq(lchown(p, NOBODY, NOBODY), 0);
	path(p, sizeof(p), "certs/old.pem");
	ck_assert_int_eq(symlink("..data/old.pem", p), 0); /* dangling, but not ours */
	ck_assert_int_eq(lchown(p, NOBODY, NOBODY), 0);
	for (i = 0; i < 2; i++) {
		ck_assert_int_eq(cubeid_adir_cleanup(dir, &o, &removed, &why), CUBEID_OK);
		ck_assert_uint_eq(removed, 0);
		/* the write needs ..link_tmp only for a new stable name */
		ck_assert_int_eq(cubeid_adir_write(dir, files, 3, &o, &why), CUBEID_OK);
	}
	path(p, sizeof(p), "certs/" SET "/theirs");
	ck_assert_int_eq(access(p, F_OK), 0);
	path(p, sizeof(p), "certs/..2026_01_01_00_00_00.000000002.abcdef");
	ck_assert_int_eq(readlink(p, t, sizeof(t)), (ssize_t)strlen(victim));
	path(p, sizeof(p), "certs/..2026_01_01_00_00_00.1234567890/k8s");
	ck_assert_int_eq(access(p, F_OK), 0);
	path(p, sizeof(p), "certs/..link_tmp");
	ck_assert_int_eq(lstat(p, &(struct stat){0}), 0);
	path(p, sizeof(p), "certs/old.pem");
	ck_assert_int_eq(lstat(p, &(struct stat){0}), 0);
	ck_assert_str_eq(snapshot(), snap0);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("adir-symlink-attack");
	TCase *tc = tcase_create("core");
	SRunner *sr;
	int failed;

	if (geteuid() != 0) {
		printf("SKIP: needs root, to write as the agent does and to act as nobody\n");
		return 77;
	}
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_dir_is_a_symlink);
	tcase_add_test(tc, test_swap_between_writes);
	tcase_add_test(tc, test_unsafe_parent_refused);
	tcase_add_test(tc, test_removes_only_its_own);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
