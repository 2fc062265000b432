/*
 * A PicoD verifier key source that follows a JWKS file: the cluster's
 * PicoD keys as cubeid-agent writes them (cluster.picod_jwks_file), or a
 * ConfigMap mounted into the sandbox pod (docs/cluster.md).  The file is
 * re-read when it changes (checked at most once a second, and at once for
 * a kid not in the keys held), so the verifier follows rotations and nodes
 * that join or leave.  A file that becomes unreadable or malformed keeps
 * the last good keys (logged once per change).
 */
#include "config.h"

#include <cubeid/ca.h>
#include <cubeid/log.h>
#include <cubeid/picod.h>

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

struct jwks_file {
	char *path;
	pthread_mutex_t mu;
	cubeid_jwt_bundle *b;
	struct stat st; /* of the file last read */
	time_t checked;
	bool bad; /* the last change could not be read */
};

static bool
same_file(const struct stat *a, const struct stat *b)
{
	return a->st_ino == b->st_ino && a->st_dev == b->st_dev && a->st_size == b->st_size &&
	       a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec;
}

/* Re-read the file if it changed; with f->mu held. */
static int
reload_locked(struct jwks_file *f, bool first)
{
	cubeid_jwt_bundle *b = NULL;
	struct stat st;
	char *buf = NULL;
	size_t len = 0;
	int rc;

	f->checked = time(NULL);
	if (stat(f->path, &st) != 0)
		rc = CUBEID_ERR_NOT_FOUND;
	else if (!first && same_file(&st, &f->st))
		return CUBEID_OK;
	else if ((rc = cubeid_read_file(f->path, CUBEID_JWKS_MAX, &buf, &len)) == CUBEID_OK &&
	         (rc = cubeid_jwt_bundle_parse_jwks("picod", buf, len, &b)) == CUBEID_OK &&
	         cubeid_jwt_bundle_count(b) == 0)
		rc = CUBEID_ERR_JWKS;
	free(buf);
	if (rc != CUBEID_OK) {
		cubeid_jwt_bundle_free(b);
		if (!f->bad && !first)
			cubeid_error("picod: keeping the last PicoD keys: cannot read %s: %s",
			             f->path, cubeid_strerror(rc));
		f->bad = true;
		return rc;
	}
	cubeid_jwt_bundle_free(f->b);
	f->b = b;
	f->st = st;
	f->bad = false;
	return CUBEID_OK;
}

static int
file_key_fn(void *ctx, const char *kid, cubeid_sig_alg alg, EVP_PKEY **out)
{
	struct jwks_file *f = ctx;
	EVP_PKEY *pk = NULL;
	int rc = CUBEID_ERR_JWT_KID;

	(void)alg;
	*out = NULL;
	pthread_mutex_lock(&f->mu);
	if (time(NULL) != f->checked || (kid != NULL && cubeid_jwt_bundle_find(f->b, kid) == NULL))
		(void)reload_locked(f, false);
	if (kid != NULL)
		pk = cubeid_jwt_bundle_find(f->b, kid);
	else if (cubeid_jwt_bundle_count(f->b) == 1)
		pk = cubeid_jwt_bundle_key_at(f->b, 0);
	if (pk != NULL)
		rc = EVP_PKEY_up_ref(pk) == 1 ? CUBEID_OK : CUBEID_ERR_CRYPTO;
	pthread_mutex_unlock(&f->mu);
	if (rc == CUBEID_OK)
		*out = pk;
	return rc;
}

static void
file_free(void *ctx)
{
	struct jwks_file *f = ctx;

	if (f == NULL)
		return;
	cubeid_jwt_bundle_free(f->b);
	pthread_mutex_destroy(&f->mu);
	free(f->path);
	free(f);
}

int
cubeid_picod_verifier_set_jwks_file(cubeid_picod_verifier *v, const char *path)
{
	struct jwks_file *f;
	int rc;

	if (v == NULL || path == NULL)
		return CUBEID_ERR_INVALID_ARG;
	if ((f = calloc(1, sizeof(*f))) == NULL || (f->path = strdup(path)) == NULL) {
		free(f);
		return CUBEID_ERR_NOMEM;
	}
	pthread_mutex_init(&f->mu, NULL);
	if ((rc = reload_locked(f, true)) == CUBEID_OK)
		rc = cubeid_picod_verifier_set_source(v, file_key_fn, f, file_free);
	if (rc != CUBEID_OK)
		file_free(f);
	return rc;
}
