/*
 * The cluster view: the newest valid publication of each node, and the
 * union of their keys (<cubeid/cluster.h>).  Not locked: one owner.
 */
#include "config.h"

#include <cubeid/cluster.h>
#include <cubeid/log.h>

#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <time.h>

#include <openssl/evp.h>

struct cubeid_cluster_view {
	char *td;
	cubeid_publication **pubs; /* one per node */
	size_t n, cap;
};

int
cubeid_cluster_view_new(const char *td, cubeid_cluster_view **out)
{
	cubeid_cluster_view *v;

	if (out != NULL)
		*out = NULL;
	if (td == NULL || out == NULL || cubeid_trust_domain_validate(td, strlen(td), NULL) != 0)
		return CUBEID_ERR_INVALID_ARG;
	if ((v = calloc(1, sizeof(*v))) == NULL || (v->td = strdup(td)) == NULL) {
		free(v);
		return CUBEID_ERR_NOMEM;
	}
	*out = v;
	return CUBEID_OK;
}

void
cubeid_cluster_view_free(cubeid_cluster_view *v)
{
	size_t i;

	if (v == NULL)
		return;
	for (i = 0; i < v->n; i++)
		cubeid_publication_free(v->pubs[i]);
	free(v->pubs);
	free(v->td);
	free(v);
}

size_t
cubeid_cluster_view_count(const cubeid_cluster_view *v)
{
	return v != NULL ? v->n : 0;
}

const cubeid_publication *
cubeid_cluster_view_at(const cubeid_cluster_view *v, size_t i)
{
	return v != NULL && i < v->n ? v->pubs[i] : NULL;
}

static ssize_t
find_node(const cubeid_cluster_view *v, const char *node)
{
	size_t i;

	for (i = 0; i < v->n; i++)
		if (strcmp(cubeid_publication_node(v->pubs[i]), node) == 0)
			return (ssize_t)i;
	return -1;
}

/* A kid that another node publishes with a different key. */
static bool
kid_conflict(const cubeid_cluster_view *v, const cubeid_publication *p)
{
	struct cubeid_pub_key a, b;
	size_t i, j, k;

	for (i = 0; i < v->n; i++) {
		if (strcmp(cubeid_publication_node(v->pubs[i]), cubeid_publication_node(p)) == 0)
			continue;
		for (j = 0; cubeid_publication_key_at(p, j, &a) == CUBEID_OK; j++)
			for (k = 0; cubeid_publication_key_at(v->pubs[i], k, &b) == CUBEID_OK; k++)
				if (strcmp(a.kid, b.kid) == 0 &&
				    (a.use != b.use || EVP_PKEY_eq(a.pub, b.pub) != 1))
					return true;
	}
	return false;
}

int
cubeid_cluster_view_offer(cubeid_cluster_view *v, const char *node, const char *doc, size_t len,
                          const cubeid_x509_bundle *roots, int64_t now, const char **why)
{
	cubeid_publication *p = NULL;
	ssize_t at;
	int rc;

	if (why != NULL)
		*why = "invalid argument";
	if (v == NULL || node == NULL || doc == NULL || roots == NULL)
		return CUBEID_ERR_INVALID_ARG;
	if (strcmp(cubeid_x509_bundle_trust_domain(roots), v->td) != 0)
		return CUBEID_ERR_INVALID_ARG;
	if ((rc = cubeid_pub_verify(doc, len, roots, now, CUBEID_PUB_LEEWAY, &p, why)) != CUBEID_OK)
		return rc;
	rc = CUBEID_ERR_PUBLICATION;
	if (strcmp(cubeid_publication_node(p), node) != 0) {
		if (why != NULL)
			*why = "the publication names another node than the store does";
		goto out;
	}
	if (kid_conflict(v, p)) {
		if (why != NULL)
			*why = "a kid another node publishes with a different key";
		goto out;
	}
	at = find_node(v, node);
	if (at >= 0) {
		cubeid_publication *old = v->pubs[at];

		if (cubeid_publication_iat(p) < cubeid_publication_iat(old)) {
			if (why != NULL)
				*why = "older than the one held for this node";
			goto out;
		}
		cubeid_publication_free(old);
		v->pubs[at] = p;
		p = NULL;
		rc = CUBEID_OK;
		goto out;
	}
	if (v->n >= CUBEID_CLUSTER_NODES) {
		if (why != NULL)
			*why = "too many nodes";
		rc = CUBEID_ERR_TOO_LARGE;
		goto out;
	}
	if (v->n == v->cap) {
		size_t cap = v->cap ? v->cap * 2 : 8;
		cubeid_publication **np = realloc(v->pubs, cap * sizeof(*np));

		if (np == NULL) {
			rc = CUBEID_ERR_NOMEM;
			goto out;
		}
		v->pubs = np;
		v->cap = cap;
	}
	v->pubs[v->n++] = p;
	p = NULL;
	rc = CUBEID_OK;
out:
	if (rc == CUBEID_OK && why != NULL)
		*why = "ok";
	cubeid_publication_free(p);
	return rc;
}

void
cubeid_cluster_view_prune(cubeid_cluster_view *v, int64_t now, bool all, size_t *dropped)
{
	size_t i, j = 0, d = 0;

	if (dropped != NULL)
		*dropped = 0;
	if (v == NULL)
		return;
	if (now == 0)
		now = (int64_t)time(NULL);
	for (i = 0; i < v->n; i++) {
		if (all || now >= cubeid_publication_exp(v->pubs[i])) {
			cubeid_notice("cluster: dropping the keys of node %s (%s)",
			              cubeid_publication_node(v->pubs[i]),
			              all ? "the store is out of reach for too long"
			                  : "its publication expired");
			cubeid_publication_free(v->pubs[i]);
			d++;
		} else {
			v->pubs[j++] = v->pubs[i];
		}
	}
	v->n = j;
	if (dropped != NULL)
		*dropped = d;
}

int
cubeid_cluster_view_add_keys(const cubeid_cluster_view *v, cubeid_pub_use use, int64_t now,
                             const char *skip, cubeid_jwt_bundle *b, size_t *added)
{
	struct cubeid_pub_key k;
	size_t i, j, a = 0;
	int rc;

	if (added != NULL)
		*added = 0;
	if (v == NULL || b == NULL)
		return CUBEID_ERR_INVALID_ARG;
	if (now == 0)
		now = (int64_t)time(NULL);
	for (i = 0; i < v->n; i++) {
		const cubeid_publication *p = v->pubs[i];

		if (now >= cubeid_publication_exp(p))
			continue;
		if (skip != NULL && strcmp(cubeid_publication_node(p), skip) == 0)
			continue;
		for (j = 0; cubeid_publication_key_at(p, j, &k) == CUBEID_OK; j++) {
			if (k.use != use || cubeid_jwt_bundle_find(b, k.kid) != NULL)
				continue;
			if ((rc = cubeid_jwt_bundle_add(b, k.kid, k.pub)) != CUBEID_OK)
				return rc;
			a++;
		}
	}
	if (added != NULL)
		*added = a;
	return CUBEID_OK;
}
