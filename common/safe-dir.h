/*
 * Opening a directory to write into, as root, without trusting its path
 * (common/safe-dir.c): the path is walked one component at a time from "/"
 * (or ".") and no symlink is followed anywhere in it, so that a directory
 * swapped for a symlink is refused, never written through.  Every later
 * operation is done relative to the descriptor it returns.
 */
#ifndef CUBEID_SAFE_DIR_H
#define CUBEID_SAFE_DIR_H

#include <stdbool.h>
#include <sys/types.h>

/*
 * Open path as a directory (O_RDONLY) into *fd; *fd = -1 on entry.  With
 * create, missing components are made (0755, the last one mode).  Unless
 * allow_unsafe_parent, refuses (CUBEID_ERR_PERMISSION) a path where a user
 * other than root and the caller's euid could replace a component: a
 * directory on the way owned by another user, or writable by group or
 * others (a sticky one, like /tmp, only when the entry in it is another
 * user's).  A symlink anywhere is CUBEID_ERR_PERMISSION; a missing
 * component without create is CUBEID_ERR_NOT_FOUND; other failures
 * CUBEID_ERR_IO, with errno set.  *why gets a static reason.
 */
int safe_dir_open(const char *path, bool create, mode_t mode, bool allow_unsafe_parent, int *fd,
                  const char **why);

#endif
