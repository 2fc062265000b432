/*
 * File helpers (<cubeid/file.h>): the state directory's location and mode,
 * whole-file reads with a hard maximum, and atomic single-file writes.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include <cubeid/file.h>
#include <cubeid/log.h>

#include "common/path.h"

const char *
cubeid_state_dir(const char *state_dir)
{
	const char *env;

	if (state_dir != NULL && state_dir[0] != '\0')
		return state_dir;
	env = getenv(CUBEID_ENV_STATE_DIR);
	if (env != NULL && env[0] != '\0')
		return env;
	return CUBEID_STATE_DIR_DEFAULT;
}

int
path_join(const char *dir, const char *name, char **out)
{
	*out = NULL;
	if (strlen(dir) + strlen(name) + 2 > PATH_MAX)
		return CUBEID_ERR_TOO_LARGE;
	if (asprintf(out, "%s/%s", dir, name) < 0) {
		*out = NULL;
		return CUBEID_ERR_NOMEM;
	}
	return CUBEID_OK;
}

static int
fsync_dir_of(const char *path)
{
	char *dir = strdup(path), *slash;
	int fd, rc = CUBEID_OK;

	if (dir == NULL)
		return CUBEID_ERR_NOMEM;
	slash = strrchr(dir, '/');
	if (slash == NULL)
		strcpy(dir, ".");
	else if (slash == dir)
		slash[1] = '\0';
	else
		*slash = '\0';
	fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0 || fsync(fd) != 0)
		rc = CUBEID_ERR_IO;
	if (fd >= 0)
		close(fd);
	free(dir);
	return rc;
}

int
cubeid_atomic_write(const char *path, const void *data, size_t len, unsigned mode)
{
	char *tmp = NULL;
	uint8_t rnd[6];
	const uint8_t *p = data;
	size_t off = 0;
	int fd = -1, rc = CUBEID_ERR_IO;

	if (path == NULL || (data == NULL && len > 0) || (mode & ~0777u) != 0)
		return CUBEID_ERR_INVALID_ARG;
	if (RAND_bytes(rnd, sizeof(rnd)) != 1)
		return CUBEID_ERR_CRYPTO;
	if (asprintf(&tmp, "%s.tmp-%02x%02x%02x%02x%02x%02x", path, rnd[0], rnd[1], rnd[2], rnd[3],
	             rnd[4], rnd[5]) < 0)
		return CUBEID_ERR_NOMEM;
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode);
	if (fd < 0) {
		cubeid_error("cannot create %s: %s", tmp, strerror(errno));
		rc = errno == EACCES ? CUBEID_ERR_PERMISSION : CUBEID_ERR_IO;
		goto out;
	}
	/* the umask may have narrowed mode; set exactly what was asked */
	if (fchmod(fd, mode) != 0)
		goto out;
	while (off < len) {
		ssize_t n = write(fd, p + off, len - off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			goto out;
		off += (size_t)n;
	}
	if (fsync(fd) != 0)
		goto out;
	if (close(fd) != 0) {
		fd = -1;
		goto out;
	}
	fd = -1;
	if (rename(tmp, path) != 0) {
		cubeid_error("cannot rename %s to %s: %s", tmp, path, strerror(errno));
		goto out;
	}
	rc = fsync_dir_of(path);
out:
	if (fd >= 0)
		close(fd);
	if (rc != CUBEID_OK && tmp != NULL)
		unlink(tmp);
	free(tmp);
	return rc;
}

int
cubeid_state_dir_prepare(const char *dir)
{
	struct stat st;

	if (dir == NULL || dir[0] == '\0')
		return CUBEID_ERR_INVALID_ARG;
	if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
		cubeid_error("cannot create state directory %s: %s", dir, strerror(errno));
		return errno == EACCES ? CUBEID_ERR_PERMISSION : CUBEID_ERR_IO;
	}
	if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
		return CUBEID_ERR_IO;
	if ((st.st_mode & 077) != 0 && chmod(dir, 0700) != 0)
		return CUBEID_ERR_PERMISSION;
	return CUBEID_OK;
}

int
cubeid_read_file(const char *path, size_t max, char **out, size_t *len)
{
	struct stat st;
	char *buf = NULL;
	size_t off = 0;
	int fd, rc = CUBEID_ERR_IO;

	if (out != NULL)
		*out = NULL;
	if (len != NULL)
		*len = 0;
	if (path == NULL || out == NULL)
		return CUBEID_ERR_INVALID_ARG;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT   ? CUBEID_ERR_NOT_FOUND
		       : errno == EACCES ? CUBEID_ERR_PERMISSION
		                         : CUBEID_ERR_IO;
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))
		goto out;
	if ((size_t)st.st_size > max) {
		rc = CUBEID_ERR_TOO_LARGE;
		goto out;
	}
	if ((buf = malloc(max + 1)) == NULL) {
		rc = CUBEID_ERR_NOMEM;
		goto out;
	}
	/* read until EOF: the file may have changed since fstat */
	for (;;) {
		ssize_t n = read(fd, buf + off, max + 1 - off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			goto out;
		if (n == 0)
			break;
		off += (size_t)n;
		if (off > max) {
			rc = CUBEID_ERR_TOO_LARGE;
			goto out;
		}
	}
	buf[off] = '\0';
	*out = buf;
	buf = NULL;
	if (len != NULL)
		*len = off;
	rc = CUBEID_OK;
out:
	free(buf);
	close(fd);
	return rc;
}
