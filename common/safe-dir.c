/*
 * A directory opened one component at a time, with no symlink followed
 * (common/safe-dir.h).  The writer runs as root and writes files that a
 * workload owns; if any component of the path could be a symlink, or could
 * be swapped for one between two writes by a user who can write its parent,
 * root would write and delete wherever that user pointed it.
 *
 * Each step opens one name relative to the directory opened before, with
 * openat2(RESOLVE_NO_SYMLINKS) where the kernel has it, O_NOFOLLOW
 * otherwise: for a single name the two refuse the same thing.  The walk
 * itself is what makes it safe (a path resolved in one call could not be
 * checked directory by directory for the second layer below).
 */
#include "config.h"

#include "common/safe-dir.h"

#include <cubeid/error.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#if defined(__has_include)
#if __has_include(<linux/openat2.h>)
#include <linux/openat2.h>
#define HAVE_OPENAT2_H 1
#endif
#endif

#define UNSAFE                                                                                     \
	"a parent of the directory is writable by another user, who could swap the directory "     \
	"for a symlink (allow_unsafe_parent accepts that)"

static int
fail(const char **why, const char *reason, int rc)
{
	int e = errno;

	if (why != NULL)
		*why = reason;
	errno = e;
	return rc;
}

/* One name in dfd, as a directory, never through a symlink. */
static int
open_step(int dfd, const char *name)
{
	int flags = O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC;
#if defined(HAVE_OPENAT2_H) && defined(SYS_openat2)
	static int no_openat2; /* read and set atomically: writers run on threads */
	struct open_how how;
	long fd;

	if (!__atomic_load_n(&no_openat2, __ATOMIC_RELAXED)) {
		memset(&how, 0, sizeof(how));
		how.flags = (unsigned long long)flags;
		how.resolve = RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
		fd = syscall(SYS_openat2, dfd, name, &how, sizeof(how));
		if (fd >= 0 || (errno != ENOSYS && errno != EPERM && errno != E2BIG))
			return (int)fd;
		/* an old kernel, or a seccomp filter that refuses it */
		__atomic_store_n(&no_openat2, 1, __ATOMIC_RELAXED);
	}
#endif
	return openat(dfd, name, flags);
}

/* Could a user other than root and me replace the entry for child (cst)
 * in directory st? */
static bool
replaceable(const struct stat *st, const struct stat *cst, uid_t me)
{
	if (st->st_uid != 0 && st->st_uid != me)
		return true; /* its owner can rename anything in it */
	if ((st->st_mode & (S_IWGRP | S_IWOTH)) == 0)
		return false;
	if ((st->st_mode & S_ISVTX) == 0)
		return true;
	/* sticky (/tmp): only the entry's owner, the directory's and root
	 * may rename or remove an entry */
	return cst->st_uid != 0 && cst->st_uid != me;
}

int
safe_dir_open(const char *path, bool create, mode_t mode, bool allow_unsafe_parent, int *fd,
              const char **why)
{
	char buf[PATH_MAX], *p, *name, *next;
	struct stat st, cst;
	uid_t me = geteuid();
	int dfd, nfd, rc;

	*fd = -1;
	if (path == NULL || path[0] == '\0')
		return fail(why, "no directory", CUBEID_ERR_INVALID_ARG);
	if (strlen(path) >= sizeof(buf)) {
		errno = ENAMETOOLONG;
		return fail(why, "the directory's path is too long", CUBEID_ERR_INVALID_ARG);
	}
	strcpy(buf, path);
	if ((dfd = open(buf[0] == '/' ? "/" : ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0 ||
	    fstat(dfd, &st) != 0) {
		rc = fail(why, "cannot open the directory", CUBEID_ERR_IO);
		goto out;
	}
	for (p = buf; p != NULL; p = next) {
		bool last;

		name = p;
		next = strchr(p, '/');
		if (next != NULL)
			*next++ = '\0';
		if (name[0] == '\0' || strcmp(name, ".") == 0)
			continue;
		/* the last name: nothing but '/' and '.' after it */
		last = true;
		for (p = next; p != NULL && *p != '\0'; p++)
			if (*p != '/' && !(*p == '.' && (p[1] == '/' || p[1] == '\0'))) {
				last = false;
				break;
			}
		nfd = open_step(dfd, name);
		if (nfd < 0 && errno == ENOENT && create) {
			/* refuse before making anything: the new directory
			 * would be ours, its parent decides */
			cst.st_uid = me;
			if (!allow_unsafe_parent && replaceable(&st, &cst, me)) {
				errno = EPERM;
				rc = fail(why, UNSAFE, CUBEID_ERR_PERMISSION);
				goto out;
			}
			if (mkdirat(dfd, name, last ? mode & 0777 : 0755) != 0 && errno != EEXIST) {
				rc = fail(why, "cannot create the directory", CUBEID_ERR_IO);
				goto out;
			}
			/* the new entry is durable only once its parent is synced */
			(void)fsync(dfd);
			nfd = open_step(dfd, name);
		}
		if (nfd < 0) {
			int e = errno;

			if (e == ELOOP ||
			    (e == ENOTDIR && fstatat(dfd, name, &cst, AT_SYMLINK_NOFOLLOW) == 0 &&
			     S_ISLNK(cst.st_mode))) {
				errno = ELOOP;
				rc = fail(why,
				          "the directory or one of its parents is a symlink "
				          "(never followed: give the real path)",
				          CUBEID_ERR_PERMISSION);
			} else if (e == ENOENT) {
				errno = e;
				rc = fail(why, "the directory does not exist",
				          CUBEID_ERR_NOT_FOUND);
			} else {
				errno = e;
				rc = fail(why, "cannot open the directory", CUBEID_ERR_IO);
			}
			goto out;
		}
		if (fstat(nfd, &cst) != 0) {
			close(nfd);
			rc = fail(why, "cannot open the directory", CUBEID_ERR_IO);
			goto out;
		}
		/* ".." is always the real parent of the directory we hold */
		if (!allow_unsafe_parent && strcmp(name, "..") != 0 && replaceable(&st, &cst, me)) {
			close(nfd);
			errno = EPERM;
			rc = fail(why, UNSAFE, CUBEID_ERR_PERMISSION);
			goto out;
		}
		close(dfd);
		dfd = nfd;
		st = cst;
	}
	*fd = dfd;
	dfd = -1;
	rc = CUBEID_OK;
out:
	if (dfd >= 0) {
		int e = errno;
		close(dfd);
		errno = e;
	}
	return rc;
}
