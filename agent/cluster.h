/*
 * cubeid-agent's cluster trust (agent/cluster.c, docs/cluster.md).  All on
 * the loop thread.
 */
#ifndef CUBEID_AGENT_CLUSTER_H
#define CUBEID_AGENT_CLUSTER_H

#include <stddef.h>

#include <jansson.h>

#include <cubeid/jwt.h>

struct agent;

/* Start publishing and reading when the config has a cluster store (else
 * nothing): opens the store, syncs at once and every cluster.refresh. */
int cluster_start(struct agent *a);
/* Sync soon: the local keys changed (a rotation). */
void cluster_kick(struct agent *a);
/* Add the other nodes' keys of use (a cubeid_pub_use) to b; kids already
 * in b are kept. */
int cluster_add_remote(struct agent *a, int use, cubeid_jwt_bundle *b);
/* Other nodes with a valid publication at the last sync. */
size_t cluster_nodes(const struct agent *a);
/* The "cluster" member of the status document (NULL without a store). */
json_t *cluster_status_json(const struct agent *a);
/* Stop the store's watch (its thread posts to the loop): before the loop
 * is freed. */
void cluster_stop(struct agent *a);
/* After the worker pool and the loop are gone. */
void cluster_free(struct agent *a);

#endif
