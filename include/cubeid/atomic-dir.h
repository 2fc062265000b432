/*
 * Atomic delivery of a set of files into a directory, in the pattern of
 * Kubernetes' AtomicWriter (pkg/volume/util/atomic_writer.go):
 *
 *   DIR/..2026_11_29_04_20_00.123456789.XXXXXX/   a timestamped directory
 *       svid.pem svid_key.pem svid_bundle.pem      holding one whole set
 *   DIR/..data -> ..2026_11_29_04_20_00.123456789.XXXXXX
 *   DIR/svid.pem -> ..data/svid.pem                stable names
 *
 * An update writes every file of the new set into a new timestamped
 * directory (each file created 0600, then given its owner and mode with
 * fchown/fchmod, whatever existed before), fsyncs the files and the
 * directory, creates the stable names that are missing (symlinks through
 * ..data, renamed into place; a new name resolves to nothing until the
 * swap), then swaps ..data to the new set with one rename(2) of a new
 * symlink over the old one, fsyncs DIR and removes the old set.  A crash
 * at any point leaves the stable names showing the old set or the new one,
 * never a mix; cubeid_adir_cleanup() removes what a crash left behind.
 *
 * Readers that resolve ..data once (open DIR/..data/ as a directory, or
 * realpath() one file and open the others beside it) always see one whole
 * set.  A reader that opens DIR/svid.pem and later DIR/svid_key.pem through
 * the stable names resolves ..data twice, and can pair a certificate of one
 * set with the key of the next if a swap falls between its two opens
 * (docs/delivery.md measures how often).
 *
 * Writers of one directory are serialized with flock(2) on DIR, so the
 * agent and `cubeid helper` pointed at the same directory cannot interleave.
 *
 * The writer is often root writing files that a workload owns, so DIR's
 * path is not trusted (common/safe-dir.c): it is walked one component at a
 * time, a symlink anywhere in it is refused (CUBEID_ERR_PERMISSION; give
 * the real path), and everything after is done relative to DIR's
 * descriptor.  Unless opts->allow_unsafe_parent, a DIR with a parent that
 * a user other than root and the writer could write is refused too: that
 * user could swap DIR for a symlink between two writes.  Only what the
 * writer made is ever removed: sets with the exact name pattern that are
 * real directories owned by the writer's uid, and symlinks owned by it.
 *
 * Conventions: 0 or a negative CUBEID_ERR_* code; on failure *why (when not
 * NULL) gets a static reason and errno is left as the failing call set it.
 */
#ifndef CUBEID_ATOMIC_DIR_H
#define CUBEID_ATOMIC_DIR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

#define CUBEID_ADIR_FILES_MAX 64         /* files in one set */
#define CUBEID_ADIR_FILE_MAX  (4u << 20) /* bytes of one file */
#define CUBEID_ADIR_DATA      "..data"

struct cubeid_adir_file {
	const char *name; /* a plain name: no '/', not "." or "..", not starting with ".." */
	const void *data;
	size_t len;
	mode_t mode; /* applied with fchmod on every write (0644, 0600, ...) */
};

struct cubeid_adir_opts {
	uid_t uid;       /* owner of the files; (uid_t)-1 keeps the writer's */
	gid_t gid;       /* group of the files; (gid_t)-1 keeps the writer's */
	mode_t dir_mode; /* of DIR when it is created and of each set; 0 = 0755 */
	/* accept a DIR whose parents another user could write (see below) */
	bool allow_unsafe_parent;
};

/* True if name may be a file of a set. */
bool cubeid_adir_name_ok(const char *name);

/*
 * Replace the set in dir (created with dir_mode, parents 0755, when
 * missing) with files[0..n).  Names must be distinct; stable names of the
 * old set that the new set lacks are removed.  A regular file at a stable
 * name (say from spiffe-helper) is replaced by the symlink.  opts may be
 * NULL (the writer's owner, 0755).
 */
int cubeid_adir_write(const char *dir, const struct cubeid_adir_file *files, size_t n,
                      const struct cubeid_adir_opts *opts, const char **why);

/*
 * Remove what an interrupted update left in dir: the temporary symlinks,
 * stable names that point through ..data at nothing, and every
 * timestamped set that ..data does not name (only those the writer made,
 * as above).  The path is checked as cubeid_adir_write() checks it; opts
 * may be NULL (only allow_unsafe_parent is used).  A missing dir is not
 * an error.  *removed (optional) gets the number of entries removed.
 */
int cubeid_adir_cleanup(const char *dir, const struct cubeid_adir_opts *opts, unsigned *removed,
                        const char **why);

#ifdef __cplusplus
}
#endif
#endif
