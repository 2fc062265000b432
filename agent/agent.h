/*
 * cubeid-agent internals: the contracts between the agent's parts.
 *
 *   loop.c         event loop (epoll): fd events, monotonic timers, and
 *                  loop_post() so worker threads hand results back
 *   grpc-server.c  gRPC over HTTP/2 (nghttp2) on Unix sockets; framing,
 *                  metadata, status/trailers, server streaming, limits
 *   workload.proto the SPIFFE Workload API (compiled by protoc-c)
 *   attest.c       workload attestation from kernel facts -> selectors
 *   config.c       agent config (YAML, libyaml) with line-numbered errors
 *   entries.c      registration entries (YAML) and matching/templating
 *   svid-cache.c   per-identity X.509/JWT-SVID cache and rotation
 *   workload-api.c the RPC handlers, built on the above
 *   agent-main.c   cubeid-agent: flags, --dev, signals, sd_notify
 *
 * All of it runs on the loop thread except token work (key generation,
 * signing), which runs in worker threads that each use the token layer's
 * session pool and post their results back with loop_post().
 *
 * Conventions as everywhere: 0 or a negative CUBEID_ERR_* code, *out = NULL
 * on entry, *_free(NULL) is a no-op.
 */
#ifndef CUBEID_AGENT_H
#define CUBEID_AGENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <cubeid/error.h>
#include <cubeid/os.h>

/* ------------------------------------------------------------------ loop */
typedef struct cubeid_loop cubeid_loop;
#define LOOP_READABLE 1
#define LOOP_WRITABLE 2
typedef void (*loop_fd_fn)(cubeid_loop *l, int fd, int events, void *arg);
/* A timer returns the milliseconds until it runs again, or -1 to stop. */
typedef long (*loop_timer_fn)(cubeid_loop *l, void *arg);
typedef void (*loop_post_fn)(void *arg);

int loop_new(cubeid_loop **out);
void loop_free(cubeid_loop *l);
/* Watch fd for events (LOOP_READABLE|LOOP_WRITABLE); replaces a previous
 * watch of the same fd.  events == 0 removes it. */
int loop_watch(cubeid_loop *l, int fd, int events, loop_fd_fn fn, void *arg);
/* Run fn after ms milliseconds (monotonic clock); returns a timer id > 0. */
long loop_timer_add(cubeid_loop *l, long ms, loop_timer_fn fn, void *arg);
void loop_timer_del(cubeid_loop *l, long id);
/* Thread-safe: run fn(arg) on the loop thread soon. */
int loop_post(cubeid_loop *l, loop_post_fn fn, void *arg);
/* After loop_run() has returned: run now, on the calling thread, the posts
 * of fn still queued, so that results posted late are not dropped with
 * what they own (a worker pool's done callbacks at shutdown). */
void loop_run_posts_of(cubeid_loop *l, loop_post_fn fn);
/* A call that runs once on the loop thread after the current batch of fd
 * events and timers, before the loop waits again (and then the wait does
 * not block): work the caller splits into steps, so that the fds ready in
 * between are seen before the next step.  The caller owns s (fn and arg
 * set, the rest zeroed); loop_soon() of a queued s does nothing; calls run
 * in the order queued.  Loop thread only. */
struct loop_soon {
	struct loop_soon *next;
	loop_post_fn fn;
	void *arg;
	bool queued;
};
void loop_soon(cubeid_loop *l, struct loop_soon *s);
void loop_soon_cancel(cubeid_loop *l, struct loop_soon *s);
/* Run until loop_stop(); returns 0. */
int loop_run(cubeid_loop *l);
void loop_stop(cubeid_loop *l); /* thread- and signal-safe */

/* ------------------------------------------------------------ selectors */
/* A selector is "type:value", e.g. "unix:uid:1000", "k8s:ns:default",
 * "k8s:pod-label:app:web".  A set is sorted and has no duplicates.
 * selector_set_add() copies; value NULL adds the bare type (entries use it
 * for "has a selector of this type").  At most SELECTOR_SET_MAX selectors
 * of at most SELECTOR_MAX_LEN bytes: CUBEID_ERR_TOO_LARGE beyond. */
#define SELECTOR_SET_MAX 1024
#define SELECTOR_MAX_LEN 1024
struct selector_set {
	char **v;
	size_t n;
};
int selector_set_add(struct selector_set *s, const char *type, const char *value);
bool selector_set_has(const struct selector_set *s, const char *selector);
/* The value of the first selector of type ("k8s:ns" -> "default"), or NULL. */
const char *selector_set_get(const struct selector_set *s, const char *type);
void selector_set_clear(struct selector_set *s);

/* ------------------------------------------------------------ attestation */
struct peer_info {
	pid_t pid;
	uid_t uid;
	gid_t gid;
};
struct attest_opts {
	const char *proc_root;          /* "/proc"; tests point it at fixtures */
	const char *kubelet_pods_url;   /* read-only kubelet pod list, or NULL */
	const char *pod_info_file;      /* a pod list JSON file, or NULL */
	const char *kubelet_token_file; /* bearer token for the kubelet (https), or NULL */
	const char *kubelet_ca_file;    /* CA of the kubelet's certificate, or NULL */
	size_t sha256_max_bytes;        /* unix:sha256 only below this size */
	unsigned skip;                  /* ATTEST_SKIP_*: facts no entry needs */
};
/* Facts attestation may leave out, because no entry's selectors or
 * template use them (attest_skip_for()); 0 reads everything.  With all of
 * GROUPS, PATH and CGROUP skipped, SO_PEERCRED is all there is to read. */
#define ATTEST_SKIP_NAMES  0x01u /* unix:user, unix:group (NSS lookups) */
#define ATTEST_SKIP_GROUPS 0x02u /* unix:supplementary_gid (/proc/PID/status) */
#define ATTEST_SKIP_PATH   0x04u /* unix:path, unix:sha256 (/proc/PID/exe) */
#define ATTEST_SKIP_CGROUP 0x08u /* systemd:id, k8s:* (cgroup, pod metadata) */
#define ATTEST_SKIP_ALL    0x0fu
/* Attest the process at the other end of Unix socket fd: SO_PEERCRED, then
 * /proc (guarded against pid reuse), cgroups and pod metadata. */
int attest_peer_fd(int fd, const struct attest_opts *o, struct peer_info *peer,
                   struct selector_set *out);
/* The same from a pid (for `cubeid entry check --pid`). */
int attest_pid(pid_t pid, const struct attest_opts *o, struct peer_info *peer,
               struct selector_set *out);

/* ------------------------------------------------------------- entries */
typedef enum { KEY_POLICY_EXPORTABLE = 0, KEY_POLICY_RESIDENT } key_policy;

/* File delivery by the agent (an entry's "delivery:", docs/entries.md):
 * the files go into dir as one atomic set (<cubeid/atomic-dir.h>). */
struct entry_jwt_file {
	char *audience;
	char *file;
};
struct entry_delivery {
	char *dir;                                /* absolute */
	char *svid_file, *key_file, *bundle_file; /* NULL when x509 is off */
	struct entry_jwt_file *jwt;               /* JWT-SVID files, one per audience */
	size_t n_jwt;
	char *jwt_bundle_file; /* the JWT bundle (JWKS), or NULL */
	unsigned cert_mode, key_mode, jwt_svid_mode, jwt_bundle_mode;
	long uid, gid; /* owner of the files; -1 = the agent's */
	int signal;    /* sent after each update to pid or pid_file's pid; 0 = none */
	long pid;      /* 0 = none */
	char *pid_file;
	char **command;           /* run after each update (no shell); NULL-terminated, or NULL */
	bool allow_unsafe_parent; /* write even if another user could write a parent of dir */
};
void entry_delivery_free(struct entry_delivery *d);

struct reg_entry {
	char *name;                    /* unique; file:line if not given */
	char *spiffe_id;               /* may hold {td} {k8s:ns} {k8s:sa} {unix:uid} ... */
	struct selector_set selectors; /* all must match */
	long x509_ttl;                 /* seconds; 0 = agent default */
	long jwt_ttl;                  /* seconds; 0 = agent default */
	char **dns;                    /* NULL-terminated */
	key_policy key;
	char *hint;
	bool picod_signer;               /* may mint PicoD tokens (issue 6) */
	char *source;                    /* "file:line" it came from */
	struct entry_delivery *delivery; /* files the agent writes, or NULL */
};
struct entry_set {
	struct reg_entry *e;
	size_t n;
	void *index; /* private to entries.c; NULL (a set built by hand) = linear scan */
};
/* Load entries from a YAML file or a directory of *.yaml files.  On a
 * parse error, *err says file:line and why (caller frees). */
int entries_load(const char *path, struct entry_set **out, char **err);
void entries_free(struct entry_set *s);
/* CUBEID_ERR_CONFIG, with *err "FILE:LINE: entry NAME: ..." (caller
 * frees), if an entry's spiffe_id names a trust domain other than td
 * ({td} always fits). */
int entries_check_trust_domain(const struct entry_set *s, const char *td, char **err);
/* Every entry whose selectors all match, with its SPIFFE ID resolved for
 * trust domain td (templates filled from sel; an entry whose template needs
 * a selector the workload lacks does not match).  ids[i] belongs to
 * matched[i]; the caller frees ids (each and the array) and matched (the
 * array only). */
int entries_match(const struct entry_set *s, const struct selector_set *sel, const char *td,
                  const struct reg_entry ***matched, char ***ids, size_t *n);

/* ------------------------------------------- buffers for key material */
/* Page-backed memory, MADV_DONTDUMP and mlock'ed where allowed; wiped on
 * free (secbuf.c).  len must be the length given to secbuf_alloc(). */
void *secbuf_alloc(size_t len);
void secbuf_free(void *p, size_t len);

/* ------------------------------------------------------------- gRPC */
typedef struct grpc_server grpc_server;
typedef struct grpc_call grpc_call;

/* gRPC status codes used here */
#define GRPC_OK                 0
#define GRPC_CANCELLED          1
#define GRPC_INVALID_ARGUMENT   3
#define GRPC_NOT_FOUND          5
#define GRPC_PERMISSION_DENIED  7
#define GRPC_RESOURCE_EXHAUSTED 8
#define GRPC_UNIMPLEMENTED      12
#define GRPC_INTERNAL           13
#define GRPC_UNAVAILABLE        14

/* Called on the loop thread once the whole request message has arrived;
 * for a client-streaming method, once its request headers were accepted
 * (see grpc_call_set_stream()). */
typedef void (*grpc_handler)(grpc_call *call, void *ctx);
/* grpc_method.streams: which sides stream (0: unary; true is SERVER) */
#define GRPC_STREAM_SERVER 1u
#define GRPC_STREAM_CLIENT 2u
struct grpc_method {
	const char *path; /* "/SpiffeWorkloadAPI/FetchX509SVID" */
	unsigned streams; /* GRPC_STREAM_* */
	grpc_handler fn;
};
struct grpc_limits {
	size_t max_message;        /* request message bytes (default 4 MiB) */
	unsigned max_streams;      /* concurrent streams per connection (100) */
	unsigned max_connections;  /* connections per listener (4096) */
	size_t max_pending_output; /* bytes queued per connection before the
	                              slow client is dropped (8 MiB) */
	/* One local user's share (SO_PEERCRED uid at accept): connections
	 * (512) and concurrent streams over all of them (1024), so that one
	 * user cannot take the socket from everyone else. */
	unsigned max_connections_per_uid;
	unsigned max_streams_per_uid;
	/* A connection that has not sent one whole request by then is
	 * closed, seconds (10); after its first request the idle timeout
	 * (5 min) applies. */
	long first_request_timeout;
};
int grpc_server_new(cubeid_loop *l, const struct grpc_method *m, size_t n_methods,
                    const struct grpc_limits *lim, void *ctx, grpc_server **out);
void grpc_server_free(grpc_server *s);
/* Serve on an already listening Unix socket fd (ours or systemd's). */
int grpc_server_listen_fd(grpc_server *s, int fd);
unsigned grpc_server_connections(const grpc_server *s);
/* HTTP/2 errors since start (read on the loop thread). */
struct grpc_counters {
	unsigned long protocol_errors; /* HTTP/2 protocol errors by clients */
	unsigned long stream_resets;   /* RST_STREAM frames the server sent */
	unsigned long goaways;         /* GOAWAY frames with an error code */
	/* new connections whose first turn waited: their uid's connections
	 * were dropped for abuse lately (grpc-sched.c) */
	unsigned long held_connections;
};
void grpc_server_counters(const grpc_server *s, struct grpc_counters *out);

/* The call's request message (borrowed), metadata value (borrowed; NULL if
 * absent), the connected fd (for attestation), user data. */
const uint8_t *grpc_call_request(grpc_call *c, size_t *len);
const char *grpc_call_metadata(grpc_call *c, const char *key);
int grpc_call_fd(grpc_call *c);
void grpc_call_set_user(grpc_call *c, void *user, void (*on_close)(grpc_call *c, void *user));
void *grpc_call_user(grpc_call *c);
/* Queue one response message (copied).  For a unary call send once, then
 * finish.  For a stream send any number of times. */
int grpc_call_send(grpc_call *c, const uint8_t *msg, size_t len);
/* The call's messages carry secrets (x509_svid_key): from now on its
 * output is kept only in secbuf memory (MADV_DONTDUMP, wiped on free) and
 * goes to the socket without a copy in nghttp2's buffers.  Call it before
 * the first grpc_call_send(). */
void grpc_call_set_sensitive(grpc_call *c);
/* A client-streaming method's handler (it runs before any request
 * message) takes the request messages one by one: on_message runs for each
 * as it arrives (msg is borrowed for the callback only), on_end at the
 * client's half-close, and on_end must finish the call.  A stream takes at
 * most max_messages messages of at most max_bytes each (capped by
 * grpc_limits.max_message); past either the call ends with
 * RESOURCE_EXHAUSTED.  Once the call is finished nothing more runs. */
typedef void (*grpc_message_fn)(grpc_call *c, void *user, const uint8_t *msg, size_t len);
void grpc_call_set_stream(grpc_call *c, unsigned max_messages, size_t max_bytes,
                          grpc_message_fn on_message, void (*on_end)(grpc_call *c, void *user));
/* End the call with a status (trailers).  After this, or after on_close
 * runs (client cancelled or vanished), the call must not be used. */
int grpc_call_finish(grpc_call *c, int status, const char *message);

/* gRPC server reflection (grpc-reflection.c): the lines of a server's
 * method table that serve grpc.reflection.v1 and v1alpha.  The server then
 * describes, from the descriptors compiled into the agent, every service
 * that has a method in its table; it needs no attestation (the schema is
 * public). */
void grpc_reflection_handler(grpc_call *call, void *ctx);
// clang-format off
#define GRPC_REFLECTION_METHODS \
	{"/grpc.reflection.v1.ServerReflection/ServerReflectionInfo", \
	 GRPC_STREAM_SERVER | GRPC_STREAM_CLIENT, grpc_reflection_handler}, \
	{"/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", \
	 GRPC_STREAM_SERVER | GRPC_STREAM_CLIENT, grpc_reflection_handler}
// clang-format on
/* The answer to one ServerReflectionRequest (req, len bytes) from a server
 * whose table is m[0..n): a serialized ServerReflectionResponse in *out
 * (caller frees), or a negative code (CUBEID_ERR_PARSE: not a request). */
int grpc_reflection_answer(const struct grpc_method *m, size_t n, const uint8_t *req, size_t len,
                           uint8_t **out, size_t *out_len);
#define GRPC_REFLECTION_MAX_REQUEST  4096 /* bytes of one request */
#define GRPC_REFLECTION_MAX_REQUESTS 256  /* requests on one stream */

/* ------------------------------------------------- config (config.c) */
/* The agent's config file (YAML; docs/config.md).  Every field has a
 * default (config_default()); the daemon applies command-line overrides by
 * replacing fields (free the old string, strdup the new one). */
struct agent_config {
	char *trust_domain;       /* "cluster.local" */
	char *socket_path;        /* "/run/cubeid/agent.sock" */
	char *state_dir;          /* "/var/lib/cubeid" */
	char *token;              /* PKCS#11 URI, or NULL */
	char *workload_token;     /* PKCS#11 URI of the workload-key token, or NULL */
	char *pin_file;           /* or NULL */
	char *module;             /* PKCS#11 module path, or NULL */
	char *entries;            /* file or directory: "/etc/cubeid/entries.yaml" */
	long x509_svid_ttl;       /* seconds: 3600 */
	long jwt_svid_ttl;        /* seconds: 300 */
	int log_level;            /* cubeid_log_level: CUBEID_LOG_NOTICE */
	char *http_address;       /* HOST:PORT for HTTP, or NULL */
	char *kubelet_pods_url;   /* or NULL */
	char *pod_info_file;      /* or NULL */
	char *kubelet_token_file; /* or NULL: a ServiceAccount token for port 10250 */
	char *kubelet_ca_file;    /* or NULL: the kubelet's serving CA */
	size_t attest_sha256_max; /* bytes: 64 MiB; 0 = no unix:sha256 */
	struct grpc_limits grpc;  /* "grpc:" mapping; the defaults of grpc_limits */
	char *picod_issuer;       /* iss of PicoD tokens; NULL = "agentcube-router" */
	long picod_token_ttl;     /* seconds: 300 (at most 300) */
	/* "cluster:" mapping (docs/cluster.md): trust across nodes */
	struct cluster_config {
		char *store;           /* "file", "kubernetes", or NULL: off */
		char *dir;             /* file store: the shared directory */
		char *node;            /* this node's name; NULL = the host name */
		long refresh;          /* seconds between syncs: 30 */
		long max_stale;        /* seconds the last bundle outlives the store: 0 = none */
		long publication_ttl;  /* seconds; 0 = JWT max_ttl + 5 min */
		char *jwks_file;       /* write the cluster JWT-SVID JWKS here */
		char *picod_jwks_file; /* write the cluster PicoD JWKS here */
		char *k8s_api_server, *k8s_namespace, *k8s_token_file, *k8s_ca_file;
	} cluster;
	char *source; /* the file it was loaded from, or NULL */
};
/* The defaults, in a new struct (caller frees with config_free). */
int config_default(struct agent_config **out);
/* Load a config file over the defaults.  On error *err says "FILE:LINE:
 * why" (caller frees) and the result is CUBEID_ERR_CONFIG (or _TOO_LARGE,
 * _IO, _NOMEM).  *out is the caller's. */
int config_load(const char *path, struct agent_config **out, char **err);
/* The same from a buffer; name is used in messages. */
int config_parse(const char *buf, size_t len, const char *name, struct agent_config **out,
                 char **err);
void config_free(struct agent_config *c);
/* A file holding a secret (the PIN file): a regular file of the effective
 * user, with no group or other bits, as `cubeid oidc --secret-file` wants
 * it.  CUBEID_ERR_PERMISSION (owner, mode), _NOT_FOUND or _IO, with *err
 * "PATH: why" (caller frees). */
int config_secret_file_check(const char *path, char **err);

/* --------------------------------------- entries and selectors, more */
/* True if type ("k8s:ns") is a selector type attestation can produce. */
bool selector_type_known(const char *type);
/* The i-th known selector type, config key ("grpc.max_message" for nested
 * ones) and entry key; NULL past the last (for the docs' sync test). */
const char *selector_type_name(size_t i);
const char *config_key_name(size_t i); /* not thread-safe */
const char *entries_key_name(size_t i);
const char *entries_delivery_key_name(size_t i); /* "dir", "svid_file", ... */
/* entries_load() from a buffer (the fuzzer, --dev); name is used in
 * messages and in each entry's source. */
int entries_parse(const char *buf, size_t len, const char *name, struct entry_set **out,
                  char **err);
/* Why entry e does not match sel: the first selector missing (borrowed
 * from e), or NULL if all are there.  For `cubeid entry check`. */
const char *entries_first_missing(const struct reg_entry *e, const struct selector_set *sel);
/* *conflict: some workload could have every selector of both a and b and
 * get a different SPIFFE ID from each (so two identities).  Conservative:
 * only one value of a single-valued type, or of one pod label key, makes
 * two entries exclusive.  For `cubeid entry check`. */
int entries_conflict(const struct reg_entry *a, const struct reg_entry *b, bool *conflict);
/* Resolve e's SPIFFE ID for sel and td (as entries_match does).  *out is
 * the caller's; CUBEID_ERR_NOT_FOUND if a template selector is missing,
 * CUBEID_ERR_SPIFFE_ID if the result is not a valid ID in td (*why, if
 * not NULL, gets a static reason). */
int entries_resolve_id(const struct reg_entry *e, const struct selector_set *sel, const char *td,
                       char **out, const char **why);
/* Forget the cached kubelet/pod-info pod lists (tests, SIGHUP). */
void attest_pod_cache_clear(void);
/* Forget the cached user and group names (tests, SIGHUP).  Names looked up
 * for unix:user and unix:group are kept ATTEST_NAME_TTL_MS. */
void attest_name_cache_clear(void);
/* The ATTEST_SKIP_* bits for the facts no entry of s uses, in its
 * selectors or its SPIFFE ID template; s NULL or empty skips everything. */
unsigned attest_skip_for(const struct entry_set *s);

#endif
