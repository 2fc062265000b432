/*
 * cubeid-agent: the daemon's shared state, the SVID cache (svid-cache.c),
 * the worker pool (svid-cache.c) and the Workload API handlers
 * (workload-api.c).  agent-main.c owns the one struct agent.
 *
 * Thread safety: everything here is used on the loop thread only, except
 * what a worker job's run() function reads: the token and the CA (both
 * safe to share, see <cubeid/token.h>), the JWT signer (immutable while
 * the agent runs) and the job's own argument.
 */
#ifndef CUBEID_AGENT_DAEMON_H
#define CUBEID_AGENT_DAEMON_H

#include "agent/agent.h"
#include "agent/http.h"
#include "agent/metrics.h"

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <cubeid/ca.h>
#include <cubeid/jwt-keys.h>
#include <cubeid/jwt.h>
#include <cubeid/token.h>
#include <cubeid/x509svid.h>

#define AGENT_SOCKET_DEFAULT  "/run/cubeid/agent.sock"
#define AGENT_DEV_STATE_DIR   "cubeid-dev-state"
#define AGENT_WORKERS         3
#define AGENT_JOB_QUEUE_MAX   4096 /* queued token jobs before UNAVAILABLE */
#define AGENT_X509_CACHE_MAX  10000
#define AGENT_JWT_CACHE_MAX   20000
#define AGENT_CACHE_BUCKETS   16384 /* hash buckets of each cache */
#define AGENT_JWT_AUD_MAX     32    /* audiences in one JWTSVIDRequest */
#define AGENT_JWT_AUD_LEN_MAX 512   /* bytes of one audience */
#define AGENT_STATUS_PATH     "/cubeid.Agent/Status"
#define AGENT_STATUS_PROBE_S  5  /* a status probes the token if older than this */
#define AGENT_JWT_LEEWAY      30 /* seconds, ValidateJWTSVID */
#define AGENT_SWEEP_MS        250
/* an X.509-SVID is renewed at least this long (or half its life) before
 * notAfter: time for the mint, the delivery and the reload */
#define AGENT_ROTATION_LEAD_MS 1500
#define AGENT_BUNDLE_CHECK_MS  30000 /* republish the JWT bundle when it changes */

/* Command-line settings: applied over the config file at start and again
 * after every reload (NULL / -1 = not given). */
struct agent_flags {
	const char *config_file;
	const char *socket_path;
	const char *state_dir;
	const char *token;
	const char *workload_token;
	const char *pin_file;
	const char *trust_domain;
	const char *entries;
	const char *http_address;
	long x509_svid_ttl;
	long jwt_svid_ttl;
	int log_level;
	bool dev;
	bool offline; /* --check --offline: the files only */
};

struct svid_cache;
struct worker_pool;
struct wapi;
struct delivery;
struct picod_service;
struct cluster;
struct agent;
struct selector_set;
struct reg_entry;

/* What the agent's services ask of the daemon.  agent-main.c fills it in;
 * the services (workload-api.c, picod-service.c, cluster.c) call through
 * it and never into the main file, which a test can then replace. */
struct agent_ops {
	/* Matching entries of the file and of --dev, see entries_match(). */
	int (*match)(struct agent *a, const struct selector_set *sel,
	             const struct reg_entry ***matched, char ***ids, size_t *n);
	/* Rebuild the bundles (local and cluster keys); push them to the
	 * streams and rewrite the JWKS files when they changed. */
	void (*bundles_refresh)(struct agent *a);
	/* The status document served at AGENT_STATUS_PATH (caller frees). */
	int (*status_json)(struct agent *a, char **out);
};

struct agent {
	const struct agent_ops *ops;
	cubeid_loop *loop;
	grpc_server *grpc;
	struct agent_flags flags;
	struct agent_config *cfg; /* the config file with the flags over it */
	struct attest_opts attest;
	int listen_fd;
	bool socket_activated;
	dev_t sock_dev; /* the socket inode this agent bound: the only one */
	ino_t sock_ino; /* it removes at exit (another agent may own the path) */

	cubeid_token *tok;
	/* Where exportable workload keys are generated: a second token when tok
	 * cannot make exportable session keys (a TPM; docs/tpm.md), else NULL
	 * (they go to tok). */
	cubeid_token *wtok;
	cubeid_ca *ca;
	const char *td;         /* the CA's (borrowed) */
	cubeid_ca **ca_retired; /* swapped out by a renewal, freed at exit */
	size_t n_ca_retired;
	uint8_t *bundle_der; /* the X.509 bundle's certificates, DER, concatenated */
	size_t bundle_der_len;
	time_t ca_not_after;

	/* the JWT signing keys (jwt.conf) and the JWT bundle they publish.
	 * Workers mint under jwt_lock held for reading; a reload swaps
	 * jwt_keys under it held for writing. */
	pthread_rwlock_t jwt_lock;
	cubeid_jwt_keys *jwt_keys;
	char *jwks; /* the JWT bundle as JWKS JSON */
	size_t jwks_len;
	cubeid_jwt_bundle *jwt_bundle;

	struct entry_set *entries;    /* from set.entries_path (may be NULL) */
	struct entry_set dev_entries; /* --dev: the invoking user */
	uint64_t generation;          /* bumped on every reload */

	struct worker_pool *pool;
	struct svid_cache *cache;
	struct wapi *wapi;
	struct delivery *delivery; /* file delivery (delivery.c) */

	http_server *http;            /* NULL unless http_address is set */
	struct agent_metrics metrics; /* agent/metrics.h */
	struct picod_service *picod;  /* PicoD tokens (picod-service.c) */
	struct cluster *cluster;      /* agent/cluster.c; NULL without a store */

	time_t started;
	uid_t uid;
	bool stopping;
};

/* ---- worker pool (svid-cache.c) -------------------------------------- */
/* run(arg) on a worker thread, then done(arg) on the loop thread. */
int worker_pool_new(cubeid_loop *l, unsigned n, struct worker_pool **out);
void worker_pool_free(struct worker_pool *p); /* joins the threads */
int worker_submit(struct worker_pool *p, void (*run)(void *), void (*done)(void *), void *arg);

/* ---- SVID cache (svid-cache.c) --------------------------------------- */

/* One identity: an X.509-SVID for (entry name, SPIFFE ID). */
struct x509_item {
	char *key;     /* "entry\nspiffe-id" */
	uint64_t hash; /* of key */
	char *spiffe_id;
	char *entry_name;
	char *hint;
	char **dns;
	size_t n_dns;
	int64_t ttl;
	/* the current SVID (NULL until the first mint) */
	cubeid_x509_svid *svid;
	uint8_t *chain_der; /* leaf then intermediates */
	size_t chain_der_len;
	uint8_t *key_der; /* PKCS#8 (secbuf) */
	size_t key_der_len;
	char serial[64];              /* hex */
	int64_t not_after, rotate_at; /* seconds since the epoch */
	int64_t rotate_at_ms;         /* the same in milliseconds */
	uint64_t version;             /* bumped on each new SVID */
	int last_err;                 /* of the last mint, 0 if it worked */
	bool minting;
	unsigned refs;        /* holders (streams, pending calls) + the cache */
	unsigned subscribers; /* open FetchX509SVID streams */
	time_t last_used;
	struct x509_item *next, *prev; /* LRU list, most recent first */
	struct x509_item *hnext;       /* hash chain (svid-cache.c) */
};

/* One JWT-SVID for (SPIFFE ID, sorted audiences). */
struct jwt_item {
	char *key;
	char *spiffe_id;
	char **aud;
	size_t n_aud;
	int64_t ttl;
	char *token;
	char jti[40];
	int64_t iat, exp;
	int last_err;
	bool minting;
	unsigned refs;
	time_t last_used;
	struct jwt_item *next, *prev;
	struct jwt_item *hnext; /* hash chain (svid-cache.c) */
	uint64_t hash;          /* of key */
};

int svid_cache_new(struct agent *a, struct svid_cache **out);
/* Stop reporting mint results (before worker_pool_free()), then free. */
void svid_cache_shutdown(struct svid_cache *c);
void svid_cache_free(struct svid_cache *c);
/*
 * The item for (entry, id), created if new, with a reference for the
 * caller (drop it with svid_cache_x509_put()).  Starts a mint when the item
 * has no usable SVID or is due for rotation.  When it completes,
 * wapi_x509_changed() runs on the loop thread.
 */
int svid_cache_x509_get(struct svid_cache *c, const struct reg_entry *e, const char *id,
                        struct x509_item **out);
void svid_cache_x509_put(struct svid_cache *c, struct x509_item *it);
/* Whether it holds an SVID that is still valid now. */
bool x509_item_ready(const struct x509_item *it);
/* The same for JWT-SVIDs; aud is sorted and deduplicated by the cache.
 * wapi_jwt_changed() runs when a mint completes. */
int svid_cache_jwt_get(struct svid_cache *c, const char *id, const char *const *aud, size_t n_aud,
                       int64_t ttl, struct jwt_item **out);
void svid_cache_jwt_put(struct svid_cache *c, struct jwt_item *it);
bool jwt_item_ready(const struct jwt_item *it);
/* Counts and the earliest rotation among cached SVIDs (0 if none). */
void svid_cache_stats(const struct svid_cache *c, size_t *n_x509, size_t *n_jwt,
                      int64_t *next_rotation);
/* Drop every cached SVID no one holds (after a reload). */
void svid_cache_flush_unused(struct svid_cache *c);
/* The CA changed (a->ca is the new one): drop the SVIDs no one holds, and
 * mint the rest again from the new CA, the watched ones at once (their
 * streams and deliveries get the new chain).  A mint still running with
 * the old CA is due again when it ends. */
void svid_cache_x509_reissue(struct svid_cache *c);

/* ---- CA renewal on reload (ca-renew.c) ------------------------------- */
/* On a worker: a new CA in the state directory, checked against the
 * running one (*out NULL when ca.pem is the running CA).  A refusal is
 * logged with why, and that the running CA stays. */
int ca_renew_load(struct agent *a, cubeid_ca **out);
/* On the loop thread: issue from ca from now on (takes it). */
void ca_renew_apply(struct agent *a, cubeid_ca *ca);
/* At exit, after the workers stopped: the CAs swapped out. */
void ca_renew_free(struct agent *a);
/* state_dir/ca.pem is valid now; else logged with its dates. */
int agent_ca_validity_check(const char *state_dir);
/* RFC 3339 (UTC) for a certificate time into buf. */
void agent_asn1_time_rfc3339(const ASN1_TIME *t, char *buf, size_t size);

/* ---- Workload API (workload-api.c) ----------------------------------- */
extern const struct grpc_method wapi_methods[];
extern const size_t wapi_n_methods;
int wapi_new(struct agent *a, struct wapi **out);
void wapi_free(struct wapi *w);
/* Called by the cache on the loop thread. */
void wapi_x509_changed(struct wapi *w, struct x509_item *it);
void wapi_jwt_changed(struct wapi *w, struct jwt_item *it);
/* Entries or bundles changed: re-attest and resend every stream. */
void wapi_refresh_all(struct wapi *w);
/* End every stream with status (shutdown). */
void wapi_finish_all(struct wapi *w, int status, const char *msg);
unsigned wapi_streams(const struct wapi *w);
/* A token probe ended: answer the status calls that waited for it. */
void wapi_status_probed(struct wapi *w);

/* ---- file delivery (delivery.c) -------------------------------------- */
/* Needs the loop and the cache.  delivery_sync() (after every load of the
 * entries) starts delivering for new entries with a delivery and stops for
 * those that went; delivery_free() after worker_pool_free() and before
 * svid_cache_free(). */
int delivery_new(struct agent *a, struct delivery **out);
void delivery_sync(struct delivery *d);
/* The SVID cache minted a new X.509-SVID: write it out now, not at the
 * next poll (a fifth of a second of a short SVID's rotation margin).
 * Loop thread. */
void delivery_x509_changed(struct delivery *d);
void delivery_free(struct delivery *d);

/* ---- PicoD tokens (picod-service.c, picod/picod.proto) -------------- */
int picod_service_new(struct agent *a, struct picod_service **out);
void picod_service_free(struct picod_service *p); /* after worker_pool_free() */
/* Re-read STATE-DIR/picod/jwt.conf (SIGHUP, after an offline rotation). */
void picod_service_reload(struct picod_service *p);
/* The PicoD keys published at now (none yet: an empty bundle); any thread.
 * New bundle in *out. */
int picod_service_published(struct picod_service *p, int64_t now, cubeid_jwt_bundle **out);
void picod_service_stats(struct picod_service *p, size_t *cached, uint64_t *hits, uint64_t *mints);
void h_picod_mint(grpc_call *call, void *ctx);
void h_picod_public_key(grpc_call *call, void *ctx);
void h_picod_rotate(grpc_call *call, void *ctx);
/* The service's lines in the agent's method table (workload-api.c). */
// clang-format off
#define PICOD_METHODS \
	{"/cubeid.picod.v1.PicoD/MintToken", false, h_picod_mint}, \
	{"/cubeid.picod.v1.PicoD/PublicKey", false, h_picod_public_key}, \
	{"/cubeid.picod.v1.PicoD/RotateKey", false, h_picod_rotate}
// clang-format on

#endif
