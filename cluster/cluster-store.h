/*
 * The store interface's backends (cluster/cluster-store.c: the interface and
 * the file backend; cluster/cluster-k8s.c: Kubernetes).  Not installed.
 */
#ifndef CUBEID_CLUSTER_STORE_H
#define CUBEID_CLUSTER_STORE_H

#include <cubeid/cluster.h>

struct store_ops {
	const char *kind;
	int (*put)(cubeid_store *s, const char *node, const char *doc, size_t len);
	int (*list)(cubeid_store *s, struct cubeid_store_doc **docs, size_t *n);
	int (*remove)(cubeid_store *s, const char *node);
	void (*free)(cubeid_store *s); /* stops a watch first */
	/* optional (NULL: the backend cannot watch) */
	int (*watch)(cubeid_store *s, void (*changed)(void *arg), void *arg);
	void (*unwatch)(cubeid_store *s);
};

struct cubeid_store {
	const struct store_ops *ops;
	void *impl;
};

/* Append a copy of (node, data[0..len)) to *docs (*n entries). */
int store_docs_push(struct cubeid_store_doc **docs, size_t *n, const char *node, const char *data,
                    size_t len);

#endif
