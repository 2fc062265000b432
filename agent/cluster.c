/*
 * cubeid-agent's part in cluster trust (docs/cluster.md): publish this
 * node's JWT public keys to the store, read every node's publication,
 * verify each against the X.509 roots, and serve the union as the trust
 * domain's JWT bundle (FetchJWTBundles, ValidateJWTSVID, the JWKS files).
 *
 * One sync job at a time runs on a worker thread (store I/O and the
 * signature in the token are slow); it owns the view while it runs.  The
 * loop thread only sees the job's results: the remote keys as JWT bundles,
 * swapped in by sync_done().
 */
#include "config.h"

#include "agent/cluster.h"
#include "agent/daemon.h"

#include <cubeid/cluster.h>
#include <cubeid/log.h>

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct cluster {
	struct agent *a;
	cubeid_store *store;
	cubeid_cluster_view *view; /* the sync job's */
	char *node;
	long timer;
	bool busy, again;
	bool stale_drop; /* the store was out of reach past max_stale */
	/* the worker's memory of what it last published */
	char *last_kids;
	int64_t last_pub;
	/* loop thread: the remote keys, and when the store last answered */
	cubeid_jwt_bundle *remote_jwt, *remote_picod;
	int64_t last_ok;
	size_t nodes;
	char *picod_jwks; /* what picod_jwks_file holds */
	char *warned_kid; /* the last key warned about a short prepublish */
	struct sync_job *inflight;
};

struct sync_job {
	struct cluster *c;
	/* in: what to publish (snapshots taken on the loop thread) */
	struct cubeid_pub_key keys[CUBEID_PUB_KEYS_MAX];
	char *kids; /* "use:kid,..." to tell a change */
	size_t n;
	int64_t now, ttl;
	bool drop_all;
	/* the CA as the job was made: a renewal (agent/ca-renew.c) swaps
	 * a->ca on the loop thread, and keeps the old one until exit */
	cubeid_ca *ca;
	cubeid_x509_bundle *roots; /* borrowed from that CA */
	/* out */
	int put_rc, list_rc;
	size_t refused, nodes;
	cubeid_jwt_bundle *jwt, *picod;
};

static void
job_free(struct sync_job *j)
{
	size_t i;

	if (j == NULL)
		return;
	for (i = 0; i < j->n; i++) {
		free((char *)j->keys[i].kid);
		EVP_PKEY_free(j->keys[i].pub);
	}
	free(j->kids);
	cubeid_jwt_bundle_free(j->jwt);
	cubeid_jwt_bundle_free(j->picod);
	free(j);
}

/* ---- worker side ------------------------------------------------------ */

static void
sync_run(void *arg)
{
	struct sync_job *j = arg;
	struct cluster *c = j->c;
	struct agent *a = c->a;
	struct cubeid_store_doc *docs = NULL;
	const char *why;
	char *doc = NULL;
	size_t i, n = 0;
	int rc;

	/* publish when the keys changed, or when half the publication's life
	 * has passed, so that it never expires while we run */
	j->put_rc = CUBEID_OK;
	if (c->last_kids == NULL || strcmp(c->last_kids, j->kids) != 0 ||
	    j->now - c->last_pub >= j->ttl / 2) {
		rc = cubeid_pub_sign(j->ca, c->node, j->keys, j->n, j->now, j->ttl, &doc);
		if (rc == CUBEID_OK)
			rc = cubeid_store_put(c->store, c->node, doc, strlen(doc));
		if (rc == CUBEID_OK) {
			free(c->last_kids);
			c->last_kids = strdup(j->kids);
			c->last_pub = j->now;
			cubeid_info("cluster: published %zu key(s) of node %s to the %s store",
			            j->n, c->node, cubeid_store_kind(c->store));
		} else {
			cubeid_error("cluster: cannot publish node %s's keys: %s", c->node,
			             cubeid_strerror(rc));
		}
		free(doc);
		j->put_rc = rc;
	}

	if (j->drop_all)
		cubeid_cluster_view_prune(c->view, j->now, true, NULL);
	j->list_rc = cubeid_store_list(c->store, &docs, &n);
	if (j->list_rc == CUBEID_OK) {
		for (i = 0; i < n; i++) {
			if (strcmp(docs[i].node, c->node) == 0)
				continue; /* ours: the local state is the authority */
			rc = cubeid_cluster_view_offer(c->view, docs[i].node, docs[i].data,
			                               docs[i].len, j->roots, j->now, &why);
			if (rc != CUBEID_OK) {
				j->refused++;
				cubeid_warn("cluster: refusing the publication of node %s: %s (%s)",
				            docs[i].node, why != NULL ? why : "?",
				            cubeid_strerror(rc));
			}
		}
		cubeid_store_docs_free(docs, n);
	}
	/* a node gone from the store keeps its keys until its publication
	 * expires: every token they signed has expired by then */
	cubeid_cluster_view_prune(c->view, j->now, false, NULL);
	j->nodes = cubeid_cluster_view_count(c->view);
	if (cubeid_jwt_bundle_new(a->td, &j->jwt) != CUBEID_OK ||
	    cubeid_jwt_bundle_new(a->td, &j->picod) != CUBEID_OK ||
	    cubeid_cluster_view_add_keys(c->view, CUBEID_PUB_USE_JWT_SVID, j->now, c->node, j->jwt,
	                                 NULL) != CUBEID_OK ||
	    cubeid_cluster_view_add_keys(c->view, CUBEID_PUB_USE_PICOD, j->now, c->node, j->picod,
	                                 NULL) != CUBEID_OK) {
		cubeid_jwt_bundle_free(j->jwt);
		cubeid_jwt_bundle_free(j->picod);
		j->jwt = j->picod = NULL;
	}
}

/* ---- loop side -------------------------------------------------------- */

static void sync_start(struct cluster *c);

/* cluster.picod_jwks_file: this node's PicoD keys and every other node's,
 * for PicoD pods (a JWKS-aware verifier; docs/cluster.md).  Rewritten when
 * it changes. */
static void
write_picod_jwks(struct cluster *c)
{
	struct agent *a = c->a;
	const char *path = a->cfg->cluster.picod_jwks_file;
	cubeid_jwt_bundle *b = NULL;
	char *jwks = NULL;
	size_t len = 0;
	int rc;

	if (path == NULL)
		return;
	if (a->picod != NULL)
		rc = picod_service_published(a->picod, 0, &b);
	else
		rc = cubeid_jwt_bundle_new(a->td, &b);
	if (rc == CUBEID_OK)
		rc = cluster_add_remote(a, CUBEID_PUB_USE_PICOD, b);
	if (rc == CUBEID_OK)
		rc = cubeid_jwt_bundle_to_jwks(b, &jwks, &len);
	if (rc == CUBEID_OK && (c->picod_jwks == NULL || strcmp(c->picod_jwks, jwks) != 0)) {
		rc = cubeid_atomic_write(path, jwks, len, 0644);
		if (rc == CUBEID_OK) {
			free(c->picod_jwks);
			c->picod_jwks = jwks;
			jwks = NULL;
			cubeid_info("cluster: wrote %zu PicoD key(s) to %s",
			            cubeid_jwt_bundle_count(b), path);
		}
	}
	if (rc != CUBEID_OK)
		cubeid_error("cluster: cannot write %s: %s", path, cubeid_strerror(rc));
	free(jwks);
	cubeid_jwt_bundle_free(b);
}

static void
sync_done(void *arg)
{
	struct sync_job *j = arg;
	struct cluster *c = j->c;
	struct agent *a = c->a;
	int64_t now = (int64_t)time(NULL);
	long stale = a->cfg->cluster.max_stale;

	c->inflight = NULL;
	c->busy = false;
	if (a->stopping) {
		job_free(j);
		return;
	}
	if (j->list_rc == CUBEID_OK) {
		if (c->last_ok == 0 || c->nodes != j->nodes || c->stale_drop)
			cubeid_notice("cluster: %zu other node(s) publish keys (%zu refused)",
			              j->nodes, j->refused);
		c->last_ok = now;
		c->nodes = j->nodes;
		c->stale_drop = false;
	} else if (stale > 0 && c->last_ok > 0 && now - c->last_ok > stale) {
		if (!c->stale_drop)
			cubeid_error("cluster: the %s store has been out of reach for %llds "
			             "(max_stale %lds): dropping the other nodes' keys",
			             cubeid_store_kind(c->store), (long long)(now - c->last_ok),
			             stale);
		cubeid_jwt_bundle_free(c->remote_jwt);
		cubeid_jwt_bundle_free(c->remote_picod);
		c->remote_jwt = c->remote_picod = NULL;
		c->stale_drop = true; /* the next sync empties the view first */
	} else {
		cubeid_warn("cluster: the %s store is out of reach; keeping the last known bundle "
		            "until the publications in it expire",
		            cubeid_store_kind(c->store));
	}
	/* the view as the worker left it: expired publications are gone from
	 * it whether or not the store answered */
	if (j->jwt != NULL && !c->stale_drop) {
		cubeid_jwt_bundle_free(c->remote_jwt);
		cubeid_jwt_bundle_free(c->remote_picod);
		c->remote_jwt = j->jwt;
		c->remote_picod = j->picod;
		j->jwt = j->picod = NULL;
	}
	job_free(j);
	a->ops->bundles_refresh(a);
	write_picod_jwks(c);
	if (c->again)
		sync_start(c);
}

static int
add_key(struct sync_job *j, const char *kid, cubeid_pub_use use, EVP_PKEY *pub)
{
	char *k, *nk;

	if (j->n >= CUBEID_PUB_KEYS_MAX)
		return CUBEID_ERR_TOO_LARGE;
	if ((k = strdup(kid)) == NULL || EVP_PKEY_up_ref(pub) != 1) {
		free(k);
		return CUBEID_ERR_NOMEM;
	}
	j->keys[j->n].kid = k;
	j->keys[j->n].use = use;
	j->keys[j->n].pub = pub;
	j->n++;
	if (asprintf(&nk, "%s%s:%s,", j->kids ? j->kids : "", cubeid_pub_use_name(use), kid) < 0)
		return CUBEID_ERR_NOMEM;
	free(j->kids);
	j->kids = nk;
	return CUBEID_OK;
}

static void
sync_start(struct cluster *c)
{
	struct agent *a = c->a;
	struct cubeid_jwt_key_info info;
	struct sync_job *j;
	size_t i;
	int rc = CUBEID_OK;

	if (c->busy) {
		c->again = true;
		return;
	}
	c->again = false;
	if ((j = calloc(1, sizeof(*j))) == NULL)
		return;
	j->c = c;
	j->now = (int64_t)time(NULL);
	j->ca = a->ca;
	j->roots = (cubeid_x509_bundle *)cubeid_ca_bundle(a->ca);
	j->drop_all = c->stale_drop;
	pthread_rwlock_rdlock(&a->jwt_lock);
	for (i = 0; rc == CUBEID_OK && cubeid_jwt_keys_at(a->jwt_keys, i, &info) == CUBEID_OK;
	     i++) {
		if (!cubeid_jwt_keys_published(a->jwt_keys, i, j->now))
			continue;
		rc = add_key(j, info.kid, CUBEID_PUB_USE_JWT_SVID, info.pub);
		/* a new key must reach every reader before it signs: one refresh
		 * to publish it, one for them to read it */
		if (info.active_from > j->now &&
		    info.active_from - info.publish_from < 2 * a->cfg->cluster.refresh &&
		    (c->warned_kid == NULL || strcmp(c->warned_kid, info.kid) != 0)) {
			cubeid_warn("cluster: JWT key %s signs %llds after it was published, less "
			            "than twice cluster.refresh (%lds): other nodes may see its "
			            "tokens before its key; rotate with a longer --prepublish",
			            info.kid, (long long)(info.active_from - info.publish_from),
			            a->cfg->cluster.refresh);
			free(c->warned_kid);
			c->warned_kid = strdup(info.kid);
		}
	}
	if (rc == CUBEID_OK && a->picod != NULL) {
		cubeid_jwt_bundle *pb = NULL;

		rc = picod_service_published(a->picod, j->now, &pb);
		for (i = 0; rc == CUBEID_OK && i < cubeid_jwt_bundle_count(pb); i++)
			rc = add_key(j, cubeid_jwt_bundle_kid_at(pb, i), CUBEID_PUB_USE_PICOD,
			             cubeid_jwt_bundle_key_at(pb, i));
		cubeid_jwt_bundle_free(pb);
	}
	j->ttl = a->cfg->cluster.publication_ttl > 0
	                 ? a->cfg->cluster.publication_ttl
	                 : cubeid_jwt_keys_max_ttl(a->jwt_keys) + CUBEID_PUB_TTL_SLACK;
	pthread_rwlock_unlock(&a->jwt_lock);
	if (rc == CUBEID_OK && j->kids == NULL && (j->kids = strdup("")) == NULL)
		rc = CUBEID_ERR_NOMEM;
	if (rc == CUBEID_OK)
		rc = worker_submit(a->pool, sync_run, sync_done, j);
	if (rc != CUBEID_OK) {
		cubeid_warn("cluster: cannot start a sync: %s", cubeid_strerror(rc));
		job_free(j);
		return;
	}
	c->busy = true;
	c->inflight = j;
}

static long
sync_timer(cubeid_loop *l, void *arg)
{
	struct cluster *c = arg;

	(void)l;
	if (!c->a->stopping)
		sync_start(c);
	return c->a->cfg->cluster.refresh * 1000;
}

void
cluster_kick(struct agent *a)
{
	if (a->cluster != NULL && !a->stopping)
		sync_start(a->cluster);
}

/* The store's watch saw a change (its thread): sync on the loop thread. */
static void
watch_kick(void *arg)
{
	cluster_kick(arg);
}

static void
store_changed(void *arg)
{
	struct agent *a = arg;

	loop_post(a->loop, watch_kick, a);
}

void
cluster_stop(struct agent *a)
{
	if (a->cluster != NULL)
		cubeid_store_unwatch(a->cluster->store);
}

/* The default node name: $CUBEID_NODE_NAME (a DaemonSet sets it from
 * spec.nodeName), else the host name's first label, lower case. */
static char *
default_node(void)
{
	const char *env = getenv("CUBEID_NODE_NAME");
	char host[256] = {0}, *p;

	if (env != NULL && env[0] != '\0')
		return strdup(env);
	if (gethostname(host, sizeof(host) - 1) != 0)
		return NULL;
	if ((p = strchr(host, '.')) != NULL)
		*p = '\0';
	for (p = host; *p != '\0'; p++) {
		*p = (char)tolower((unsigned char)*p);
		if (*p == '_')
			*p = '-';
	}
	return cubeid_node_name_valid(host) ? strdup(host) : NULL;
}

int
cluster_start(struct agent *a)
{
	const struct cluster_config *cc = &a->cfg->cluster;
	struct cubeid_k8s_opts ko = {0};
	struct cluster *c;
	int rc;

	if (cc->store == NULL)
		return CUBEID_OK;
	if ((c = calloc(1, sizeof(*c))) == NULL)
		return CUBEID_ERR_NOMEM;
	c->a = a;
	c->node = cc->node != NULL ? strdup(cc->node) : default_node();
	if (c->node == NULL || !cubeid_node_name_valid(c->node)) {
		cubeid_error("cluster: no usable node name: set cluster.node or CUBEID_NODE_NAME "
		             "(a Kubernetes node name: a-z, 0-9, '-' and '.')");
		rc = CUBEID_ERR_CONFIG;
		goto fail;
	}
	if (strcmp(cc->store, "file") == 0) {
		if (cc->dir == NULL) {
			cubeid_error("cluster: the file store needs cluster.dir");
			rc = CUBEID_ERR_CONFIG;
			goto fail;
		}
		rc = cubeid_store_file_new(cc->dir, &c->store);
	} else if (strcmp(cc->store, "kubernetes") == 0) {
		ko.api_server = cc->k8s_api_server;
		ko.namespace = cc->k8s_namespace;
		ko.token_file = cc->k8s_token_file;
		ko.ca_file = cc->k8s_ca_file;
		rc = cubeid_store_k8s_new(&ko, &c->store);
	} else {
		cubeid_error("cluster: unknown store '%s' (file or kubernetes)", cc->store);
		rc = CUBEID_ERR_CONFIG;
	}
	if (rc != CUBEID_OK)
		goto fail;
	if ((rc = cubeid_cluster_view_new(a->td, &c->view)) != CUBEID_OK)
		goto fail;
	a->cluster = c;
	/* kubernetes: list and watch; every refresh then reads memory, and a
	 * change syncs at once */
	rc = cubeid_store_watch(c->store, store_changed, a);
	if (rc != CUBEID_OK && rc != CUBEID_ERR_UNSUPPORTED)
		cubeid_warn("cluster: cannot watch the %s store (%s): reading it every refresh",
		            cubeid_store_kind(c->store), cubeid_strerror(rc));
	cubeid_notice("cluster: node %s, %s store, %s, refresh every %lds", c->node,
	              cubeid_store_kind(c->store), rc == CUBEID_OK ? "watched" : "polled",
	              cc->refresh);
	sync_start(c);
	c->timer = loop_timer_add(a->loop, cc->refresh * 1000, sync_timer, c);
	return CUBEID_OK;
fail:
	a->cluster = NULL;
	cubeid_store_free(c->store);
	free(c->node);
	free(c);
	return rc;
}

int
cluster_add_remote(struct agent *a, int use, cubeid_jwt_bundle *b)
{
	cubeid_jwt_bundle *r;
	size_t i;
	int rc;

	if (a->cluster == NULL)
		return CUBEID_OK;
	r = use == CUBEID_PUB_USE_PICOD ? a->cluster->remote_picod : a->cluster->remote_jwt;
	for (i = 0; i < cubeid_jwt_bundle_count(r); i++) {
		const char *kid = cubeid_jwt_bundle_kid_at(r, i);

		if (cubeid_jwt_bundle_find(b, kid) != NULL)
			continue;
		if ((rc = cubeid_jwt_bundle_add(b, kid, cubeid_jwt_bundle_key_at(r, i))) !=
		    CUBEID_OK)
			return rc;
	}
	return CUBEID_OK;
}

void
cluster_free(struct agent *a)
{
	struct cluster *c = a->cluster;

	if (c == NULL)
		return;
	job_free(c->inflight); /* its done() never ran (shutdown) */
	cubeid_store_free(c->store);
	cubeid_cluster_view_free(c->view);
	cubeid_jwt_bundle_free(c->remote_jwt);
	cubeid_jwt_bundle_free(c->remote_picod);
	free(c->last_kids);
	free(c->picod_jwks);
	free(c->warned_kid);
	free(c->node);
	free(c);
	a->cluster = NULL;
}

json_t *
cluster_status_json(const struct agent *a)
{
	const struct cluster *c = a->cluster;

	if (c == NULL)
		return NULL;
	return json_pack("{s:s, s:s, s:I, s:I, s:b, s:I, s:I}", "store",
	                 cubeid_store_kind(c->store), "node", c->node, "nodes",
	                 (json_int_t)c->nodes, "last_sync", (json_int_t)c->last_ok, "stale",
	                 c->stale_drop, "jwt_keys",
	                 (json_int_t)cubeid_jwt_bundle_count(c->remote_jwt), "picod_keys",
	                 (json_int_t)cubeid_jwt_bundle_count(c->remote_picod));
}

size_t
cluster_nodes(const struct agent *a)
{
	return a->cluster != NULL ? a->cluster->nodes : 0;
}
