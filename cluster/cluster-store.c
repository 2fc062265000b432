/*
 * The publication store interface and its file backend: a shared
 * directory with one NODE.jws per node (<cubeid/cluster.h>).
 */
#include "config.h"

#include "cluster/cluster-store.h"

#include <cubeid/ca.h>
#include <cubeid/log.h>

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define FILE_SUFFIX ".jws"

void
cubeid_store_docs_free(struct cubeid_store_doc *docs, size_t n)
{
	size_t i;

	if (docs == NULL)
		return;
	for (i = 0; i < n; i++) {
		free(docs[i].node);
		free(docs[i].data);
	}
	free(docs);
}

int
store_docs_push(struct cubeid_store_doc **docs, size_t *n, const char *node, const char *data,
                size_t len)
{
	struct cubeid_store_doc *nd, *d;

	if (*n >= CUBEID_CLUSTER_NODES)
		return CUBEID_ERR_TOO_LARGE;
	if ((nd = realloc(*docs, (*n + 1) * sizeof(*nd))) == NULL)
		return CUBEID_ERR_NOMEM;
	*docs = nd;
	d = &nd[*n];
	d->node = strdup(node);
	d->data = malloc(len + 1);
	if (d->node == NULL || d->data == NULL) {
		free(d->node);
		free(d->data);
		return CUBEID_ERR_NOMEM;
	}
	memcpy(d->data, data, len);
	d->data[len] = '\0';
	d->len = len;
	(*n)++;
	return CUBEID_OK;
}

int
cubeid_store_put(cubeid_store *s, const char *node, const char *doc, size_t len)
{
	if (s == NULL || doc == NULL || !cubeid_node_name_valid(node) || len > CUBEID_PUB_MAX)
		return CUBEID_ERR_INVALID_ARG;
	return s->ops->put(s, node, doc, len);
}

int
cubeid_store_list(cubeid_store *s, struct cubeid_store_doc **docs, size_t *n)
{
	if (docs != NULL)
		*docs = NULL;
	if (n != NULL)
		*n = 0;
	if (s == NULL || docs == NULL || n == NULL)
		return CUBEID_ERR_INVALID_ARG;
	return s->ops->list(s, docs, n);
}

int
cubeid_store_remove(cubeid_store *s, const char *node)
{
	if (s == NULL || !cubeid_node_name_valid(node))
		return CUBEID_ERR_INVALID_ARG;
	return s->ops->remove(s, node);
}

int
cubeid_store_watch(cubeid_store *s, void (*changed)(void *arg), void *arg)
{
	if (s == NULL || changed == NULL)
		return CUBEID_ERR_INVALID_ARG;
	if (s->ops->watch == NULL)
		return CUBEID_ERR_UNSUPPORTED;
	return s->ops->watch(s, changed, arg);
}

void
cubeid_store_unwatch(cubeid_store *s)
{
	if (s != NULL && s->ops->unwatch != NULL)
		s->ops->unwatch(s);
}

const char *
cubeid_store_kind(const cubeid_store *s)
{
	return s != NULL ? s->ops->kind : NULL;
}

void
cubeid_store_free(cubeid_store *s)
{
	if (s == NULL)
		return;
	s->ops->free(s);
	free(s);
}

/* ---- the file backend ------------------------------------------------- */

static int
file_path(cubeid_store *s, const char *node, char **out)
{
	return asprintf(out, "%s/%s" FILE_SUFFIX, (const char *)s->impl, node) < 0
	               ? CUBEID_ERR_NOMEM
	               : CUBEID_OK;
}

static int
file_put(cubeid_store *s, const char *node, const char *doc, size_t len)
{
	char *path = NULL;
	int rc;

	if ((rc = file_path(s, node, &path)) != CUBEID_OK)
		return rc;
	rc = cubeid_atomic_write(path, doc, len, 0644);
	if (rc != CUBEID_OK) {
		cubeid_error("cluster store: cannot write %s: %s", path, cubeid_strerror(rc));
		rc = CUBEID_ERR_STORE;
	}
	free(path);
	return rc;
}

static int
file_list(cubeid_store *s, struct cubeid_store_doc **docs, size_t *n)
{
	const char *dir = s->impl;
	struct dirent *de;
	size_t total = 0;
	DIR *d;
	int rc = CUBEID_OK;

	if ((d = opendir(dir)) == NULL) {
		cubeid_error("cluster store: cannot read %s: %s", dir, strerror(errno));
		return CUBEID_ERR_STORE;
	}
	while (rc == CUBEID_OK && (de = readdir(d)) != NULL) {
		size_t nl = strlen(de->d_name), sl = strlen(FILE_SUFFIX), len = 0;
		char node[CUBEID_NODE_NAME_MAX + 1], *path = NULL, *buf = NULL;
		int r;

		/* NODE.jws only: temp files, dot files and the rest are not ours */
		if (nl <= sl || nl - sl > CUBEID_NODE_NAME_MAX ||
		    strcmp(de->d_name + nl - sl, FILE_SUFFIX) != 0)
			continue;
		memcpy(node, de->d_name, nl - sl);
		node[nl - sl] = '\0';
		if (!cubeid_node_name_valid(node))
			continue;
		if (asprintf(&path, "%s/%s", dir, de->d_name) < 0) {
			rc = CUBEID_ERR_NOMEM;
			break;
		}
		r = cubeid_read_file(path, CUBEID_PUB_MAX + 2, &buf, &len);
		if (r == CUBEID_OK) {
			total += len;
			if (total > CUBEID_STORE_LIST_MAX)
				rc = CUBEID_ERR_TOO_LARGE;
			else
				rc = store_docs_push(docs, n, node, buf, len);
		} else if (r != CUBEID_ERR_NOT_FOUND) { /* gone since readdir: fine */
			cubeid_warn("cluster store: skipping %s: %s", path, cubeid_strerror(r));
		}
		free(buf);
		free(path);
	}
	closedir(d);
	if (rc != CUBEID_OK) {
		cubeid_store_docs_free(*docs, *n);
		*docs = NULL;
		*n = 0;
	}
	return rc;
}

static int
file_remove(cubeid_store *s, const char *node)
{
	char *path = NULL;
	int rc;

	if ((rc = file_path(s, node, &path)) != CUBEID_OK)
		return rc;
	if (unlink(path) != 0 && errno != ENOENT) {
		cubeid_error("cluster store: cannot remove %s: %s", path, strerror(errno));
		rc = CUBEID_ERR_STORE;
	}
	free(path);
	return rc;
}

static void
file_free(cubeid_store *s)
{
	free(s->impl);
}

static const struct store_ops file_ops = {.kind = "file",
                                          .put = file_put,
                                          .list = file_list,
                                          .remove = file_remove,
                                          .free = file_free}; /* no watch */

int
cubeid_store_file_new(const char *dir, cubeid_store **out)
{
	cubeid_store *s;
	struct stat st;

	if (out != NULL)
		*out = NULL;
	if (dir == NULL || out == NULL || dir[0] == '\0')
		return CUBEID_ERR_INVALID_ARG;
	if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
		cubeid_error("cluster store: %s is not a directory", dir);
		return CUBEID_ERR_STORE;
	}
	if ((s = calloc(1, sizeof(*s))) == NULL || (s->impl = strdup(dir)) == NULL) {
		free(s);
		return CUBEID_ERR_NOMEM;
	}
	s->ops = &file_ops;
	*out = s;
	return CUBEID_OK;
}
