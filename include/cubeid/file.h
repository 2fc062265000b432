/*
 * File helpers (common/file.c): where the state directory is, its mode,
 * whole-file reads with a hard maximum, and atomic single-file writes.
 * Conventions: docs/sdk.md, "Conventions".
 */
#ifndef CUBEID_FILE_H
#define CUBEID_FILE_H

#include <stddef.h>

#include <cubeid/error.h>

#ifdef __cplusplus
extern "C" {
#endif

#define CUBEID_STATE_DIR_DEFAULT "/var/lib/cubeid"
#define CUBEID_ENV_STATE_DIR     "CUBEID_STATE_DIR"

/* state_dir if not NULL, else $CUBEID_STATE_DIR, else the default
 * (borrowed: a static string or the argument). */
const char *cubeid_state_dir(const char *state_dir);

/*
 * Write data[0..len) to path atomically: a temp file in the same directory
 * created with mode, written, fsync'd, renamed over path, then the
 * directory fsync'd.  A reader sees the old or the new file, never a mix.
 */
int cubeid_atomic_write(const char *path, const void *data, size_t len, unsigned mode);
/* Create dir (one level) with mode 0700 if missing; an existing dir is
 * chmod'ed to 0700 when it is looser. */
int cubeid_state_dir_prepare(const char *dir);
/* Read a whole file of at most max bytes; new NUL-terminated buffer
 * (caller frees), *len (optional) without the NUL.  CUBEID_ERR_NOT_FOUND if
 * absent, CUBEID_ERR_TOO_LARGE if bigger. */
int cubeid_read_file(const char *path, size_t max, char **out, size_t *len);

#ifdef __cplusplus
}
#endif

#endif
