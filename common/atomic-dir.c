/*
 * Atomic delivery of a set of files (see <cubeid/atomic-dir.h>): a new
 * timestamped directory, fsync, a ..data symlink swapped with rename(2),
 * stable names through ..data, then the old set removed.
 */
#include "config.h"

#include "common/safe-dir.h"

#include <cubeid/atomic-dir.h>
#include <cubeid/error.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define DATA_TMP "..data_tmp"
#define LINK_TMP "..link_tmp"

bool
cubeid_adir_name_ok(const char *name)
{
	size_t n;

	if (name == NULL || (n = strlen(name)) == 0 || n > NAME_MAX)
		return false;
	if (strchr(name, '/') != NULL || strcmp(name, ".") == 0 || strncmp(name, "..", 2) == 0)
		return false;
	return true;
}

static int
fail(const char **why, const char *reason, int rc)
{
	int e = errno;

	if (why != NULL)
		*why = reason;
	errno = e;
	return rc;
}

static int
write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;

	while (len > 0) {
		ssize_t w = write(fd, p, len);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += w;
		len -= (size_t)w;
	}
	return 0;
}

/* A set's directory name, exactly as new_set_dir() makes it:
 * "..2026_11_29_04_20_00.123456789.1a2b3c". */
static bool
is_set_name(const char *n)
{
	static const char pat[] = "..dddd_dd_dd_dd_dd_dd.ddddddddd.xxxxxx";
	size_t i;

	for (i = 0; pat[i] != '\0'; i++) {
		char c = n[i];

		if (pat[i] == 'd'   ? !(c >= '0' && c <= '9')
		    : pat[i] == 'x' ? !((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))
		                    : c != pat[i])
			return false;
	}
	return n[i] == '\0';
}

/* Is name in dfd a symlink this writer made (owned by its uid)?  errno is
 * ENOENT when there is nothing there. */
static bool
own_link(int dfd, const char *name)
{
	struct stat st;

	if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) != 0)
		return false;
	errno = 0;
	return S_ISLNK(st.st_mode) && st.st_uid == geteuid();
}

/* Remove the temporary link name if it is ours; one that is not stays,
 * and the symlinkat() that needs its place then fails. */
static int
clear_tmp_link(int dfd, const char *name)
{
	if (own_link(dfd, name))
		return unlinkat(dfd, name, 0) != 0 && errno != ENOENT ? -1 : 0;
	return errno == ENOENT ? 0 : (errno = EEXIST, -1);
}

/*
 * Remove set directory name (its regular files, then itself), but only
 * one this writer made: a real directory (not a symlink) with the exact
 * name pattern, owned by the writer's uid.  The uid holds across restarts
 * and no other user can create a directory owned by it; the files inside
 * belong to the workload (fchown), so they are recognized by being
 * regular files in that directory.  Anything else is left alone (and then
 * the directory stays too).
 */
static int
remove_set(int dfd, const char *name)
{
	struct dirent *de;
	struct stat st;
	DIR *d;
	int fd, rc = 0;

	if (!is_set_name(name))
		return 0;
	if ((fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) < 0)
		return errno == ENOENT || errno == ENOTDIR || errno == ELOOP ? 0 : -1;
	if (fstat(fd, &st) != 0 || st.st_uid != geteuid()) {
		close(fd);
		return 0;
	}
	if ((d = fdopendir(fd)) == NULL) {
		close(fd);
		return -1;
	}
	while ((de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 ||
		    !S_ISREG(st.st_mode))
			continue;
		if (unlinkat(dirfd(d), de->d_name, 0) != 0 && errno != ENOENT)
			rc = -1;
	}
	closedir(d);
	if (unlinkat(dfd, name, AT_REMOVEDIR) != 0 && errno != ENOENT)
		rc = -1;
	return rc;
}

/* ..data's target into buf ("" when absent). */
static void
current_set(int dfd, char *buf, size_t size)
{
	ssize_t n = readlinkat(dfd, CUBEID_ADIR_DATA, buf, size - 1);

	buf[n > 0 ? (size_t)n : 0] = '\0';
	if (n > 0 && strchr(buf, '/') != NULL)
		buf[0] = '\0'; /* not one of ours */
}

/* A stable name that points through ..data at nothing: left by an update
 * that did not reach its swap, or by a set that lost the name. */
static bool
dangling_link(int dfd, const char *name)
{
	char have[NAME_MAX + 16];
	ssize_t n;

	if (!cubeid_adir_name_ok(name) || !own_link(dfd, name))
		return false;
	n = readlinkat(dfd, name, have, sizeof(have) - 1);
	if (n <= 0)
		return false;
	have[n] = '\0';
	if (strncmp(have, CUBEID_ADIR_DATA "/", sizeof(CUBEID_ADIR_DATA)) != 0)
		return false;
	return faccessat(dfd, name, F_OK, 0) != 0 && errno == ENOENT;
}

/* Remove our temporary links, dangling stable names and every set of ours
 * but keep (and the current one). */
static int
sweep(int dfd, const char *keep, unsigned *removed)
{
	char cur[NAME_MAX + 1];
	struct dirent *de;
	struct stat st;
	DIR *d;
	int fd, rc = 0;

	current_set(dfd, cur, sizeof(cur));
	if ((fd = dup(dfd)) < 0)
		return -1;
	if ((d = fdopendir(fd)) == NULL) {
		close(fd);
		return -1;
	}
	rewinddir(d);
	while ((de = readdir(d)) != NULL) {
		const char *n = de->d_name;

		if (strcmp(n, DATA_TMP) == 0 || strcmp(n, LINK_TMP) == 0) {
			if (own_link(dfd, n) && unlinkat(dfd, n, 0) == 0 && removed != NULL)
				(*removed)++;
			continue;
		}
		if (dangling_link(dfd, n)) {
			if (unlinkat(dfd, n, 0) == 0 && removed != NULL)
				(*removed)++;
			continue;
		}
		if (!is_set_name(n) || strcmp(n, cur) == 0 ||
		    (keep != NULL && strcmp(n, keep) == 0))
			continue;
		if (remove_set(dfd, n) != 0)
			rc = -1;
		else if (removed != NULL && fstatat(dfd, n, &st, AT_SYMLINK_NOFOLLOW) != 0)
			(*removed)++; /* gone: it was ours (remove_set leaves others') */
	}
	closedir(d);
	return rc;
}

int
cubeid_adir_cleanup(const char *dir, const struct cubeid_adir_opts *opts, unsigned *removed,
                    const char **why)
{
	int dfd, rc = CUBEID_OK;

	if (why != NULL)
		*why = "ok";
	if (removed != NULL)
		*removed = 0;
	if (dir == NULL)
		return fail(why, "no directory", CUBEID_ERR_INVALID_ARG);
	rc = safe_dir_open(dir, false, 0, opts != NULL && opts->allow_unsafe_parent, &dfd, why);
	if (rc == CUBEID_ERR_NOT_FOUND)
		return CUBEID_OK;
	if (rc != CUBEID_OK)
		return rc;
	if (flock(dfd, LOCK_EX) != 0)
		rc = fail(why, "cannot lock the directory", CUBEID_ERR_IO);
	else if (sweep(dfd, NULL, removed) != 0)
		rc = fail(why, "cannot remove a leftover set", CUBEID_ERR_IO);
	else if (fsync(dfd) != 0)
		rc = fail(why, "cannot fsync the directory", CUBEID_ERR_IO);
	close(dfd);
	return rc;
}

/* Make a new set directory; its name into name. */
static int
new_set_dir(int dfd, mode_t mode, char *name, size_t size)
{
	struct timespec ts;
	struct tm tm;
	uint32_t r;
	int i;

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	for (i = 0; i < 100; i++) {
		if (getrandom(&r, sizeof(r), 0) != (ssize_t)sizeof(r))
			r = (uint32_t)getpid() ^ (uint32_t)ts.tv_nsec ^ (uint32_t)i;
		snprintf(name, size, "..%04d_%02d_%02d_%02d_%02d_%02d.%09ld.%06x",
		         tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
		         tm.tm_sec, (long)ts.tv_nsec, (unsigned)(r & 0xffffff));
		if (mkdirat(dfd, name, mode & 0777) == 0)
			return 0;
		if (errno != EEXIST)
			return -1;
	}
	return -1;
}

static int
write_file(int tfd, const struct cubeid_adir_file *f, const struct cubeid_adir_opts *o)
{
	int fd, rc = -1;

	if ((fd = openat(tfd, f->name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
	                 0600)) < 0)
		return -1;
	if (write_all(fd, f->data, f->len) != 0)
		goto out;
	if ((o->uid != (uid_t)-1 || o->gid != (gid_t)-1) && fchown(fd, o->uid, o->gid) != 0)
		goto out;
	if (fchmod(fd, f->mode & 07777) != 0 || fsync(fd) != 0)
		goto out;
	rc = 0;
out:
	if (close(fd) != 0)
		rc = -1;
	return rc;
}

/* Point name at ..data/name unless it already does. */
static int
stable_link(int dfd, const char *name)
{
	char want[NAME_MAX + 16], have[NAME_MAX + 16];
	ssize_t n;

	snprintf(want, sizeof(want), "%s/%s", CUBEID_ADIR_DATA, name);
	n = readlinkat(dfd, name, have, sizeof(have) - 1);
	if (n > 0) {
		have[n] = '\0';
		if (strcmp(have, want) == 0)
			return 0;
	}
	if (clear_tmp_link(dfd, LINK_TMP) != 0)
		return -1;
	if (symlinkat(want, dfd, LINK_TMP) != 0)
		return -1;
	return renameat(dfd, LINK_TMP, dfd, name);
}

/* Remove the stable names of old set old that the new set lacks. */
static void
drop_stale_links(int dfd, const char *old, const struct cubeid_adir_file *files, size_t n)
{
	char want[NAME_MAX + 16], have[NAME_MAX + 16];
	struct dirent *de;
	ssize_t len;
	size_t i;
	DIR *d;
	int fd;

	if (old[0] == '\0' ||
	    (fd = openat(dfd, old, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) < 0)
		return;
	if ((d = fdopendir(fd)) == NULL) {
		close(fd);
		return;
	}
	while ((de = readdir(d)) != NULL) {
		if (!cubeid_adir_name_ok(de->d_name))
			continue;
		for (i = 0; i < n; i++)
			if (strcmp(files[i].name, de->d_name) == 0)
				break;
		if (i < n)
			continue;
		snprintf(want, sizeof(want), "%s/%s", CUBEID_ADIR_DATA, de->d_name);
		if (!own_link(dfd, de->d_name))
			continue;
		len = readlinkat(dfd, de->d_name, have, sizeof(have) - 1);
		if (len > 0) {
			have[len] = '\0';
			if (strcmp(have, want) == 0)
				(void)unlinkat(dfd, de->d_name, 0);
		}
	}
	closedir(d);
}

int
cubeid_adir_write(const char *dir, const struct cubeid_adir_file *files, size_t n,
                  const struct cubeid_adir_opts *opts, const char **why)
{
	struct cubeid_adir_opts def = {(uid_t)-1, (gid_t)-1, 0755, false};
	char old[NAME_MAX + 1], set[NAME_MAX + 1] = "";
	mode_t dmode;
	size_t i, j;
	int dfd = -1, tfd = -1, rc = CUBEID_ERR_IO;

	if (why != NULL)
		*why = "ok";
	if (opts == NULL)
		opts = &def;
	dmode = opts->dir_mode != 0 ? opts->dir_mode : 0755;
	if (dir == NULL || dir[0] == '\0' || (n > 0 && files == NULL))
		return fail(why, "no directory or files", CUBEID_ERR_INVALID_ARG);
	if (n == 0 || n > CUBEID_ADIR_FILES_MAX)
		return fail(why, "a set has 1 to 64 files", CUBEID_ERR_INVALID_ARG);
	for (i = 0; i < n; i++) {
		if (!cubeid_adir_name_ok(files[i].name))
			return fail(why, "a file name is not a plain name", CUBEID_ERR_INVALID_ARG);
		if (files[i].len > CUBEID_ADIR_FILE_MAX || (files[i].len > 0 && !files[i].data))
			return fail(why, "a file is too large", CUBEID_ERR_TOO_LARGE);
		for (j = 0; j < i; j++)
			if (strcmp(files[i].name, files[j].name) == 0)
				return fail(why, "two files have the same name",
				            CUBEID_ERR_INVALID_ARG);
	}
	/* from here on, every operation is relative to dfd, never by path */
	if ((rc = safe_dir_open(dir, true, dmode, opts->allow_unsafe_parent, &dfd, why)) !=
	    CUBEID_OK)
		return rc;
	rc = CUBEID_ERR_IO;
	if (flock(dfd, LOCK_EX) != 0) {
		fail(why, "cannot lock the directory", 0);
		goto out;
	}
	current_set(dfd, old, sizeof(old));
	if (new_set_dir(dfd, dmode, set, sizeof(set)) != 0) {
		set[0] = '\0';
		fail(why, "cannot create a new set directory", 0);
		goto out;
	}
	if ((tfd = openat(dfd, set, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) < 0 ||
	    fchmod(tfd, dmode & 07777) != 0) {
		fail(why, "cannot open the new set directory", 0);
		goto out;
	}
	for (i = 0; i < n; i++)
		if (write_file(tfd, &files[i], opts) != 0) {
			fail(why,
			     errno == EPERM ? "cannot write a file (owner not permitted)"
			                    : "cannot write a file",
			     0);
			if (errno == EPERM)
				rc = CUBEID_ERR_PERMISSION;
			goto out;
		}
	if (fsync(tfd) != 0) {
		fail(why, "cannot fsync the new set directory", 0);
		goto out;
	}
	/* Stable names first: a name new in this set points into ..data
	 * before the swap (and resolves to nothing until then), so that no
	 * crash can leave some names of the new set visible and others not. */
	for (i = 0; i < n; i++)
		if (stable_link(dfd, files[i].name) != 0) {
			fail(why, "cannot create a stable name through ..data", 0);
			goto out;
		}
	/* the swap: one rename of a new ..data symlink over the old */
	if (clear_tmp_link(dfd, DATA_TMP) != 0 || symlinkat(set, dfd, DATA_TMP) != 0 ||
	    renameat(dfd, DATA_TMP, dfd, CUBEID_ADIR_DATA) != 0) {
		fail(why, "cannot swap the ..data link", 0);
		goto out;
	}
	set[0] = '\0'; /* it is the current set now: never remove it below */
	drop_stale_links(dfd, old, files, n);
	if (fsync(dfd) != 0) {
		fail(why, "cannot fsync the directory", 0);
		goto out;
	}
	/* the old set, and anything an interrupted update left */
	if (sweep(dfd, NULL, NULL) != 0 || fsync(dfd) != 0) {
		fail(why, "cannot remove the old set", 0);
		goto out;
	}
	rc = CUBEID_OK;
out:
	if (tfd >= 0)
		close(tfd);
	if (rc != CUBEID_OK && set[0] != '\0') {
		int e = errno;
		(void)remove_set(dfd, set);
		errno = e;
	}
	if (dfd >= 0)
		close(dfd); /* drops the lock */
	return rc;
}
