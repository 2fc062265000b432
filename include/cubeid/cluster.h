/*
 * cubeid cluster trust: one trust domain over many node agents
 * (cluster/cluster-pub.c, cluster/cluster-view.c, cluster/cluster-store.c,
 * cluster/cluster-k8s.c; docs/cluster.md).
 *
 * Every node publishes the public halves of its JWT signing keys (JWT-SVID
 * and PicoD keys) in a *publication*: a compact JWS signed in the token by
 * the node's CA key (its intermediate), whose payload carries the node's CA
 * certificate chain, so that a verifier holding only the trust domain's
 * X.509 roots can check that the keys come from an enrolled node:
 *
 *   header  {"alg":"ES256","typ":"cubeid-publication+jwt","kid":<CA SKID>}
 *   payload {"v":1, "td":"<trust domain>", "node":"<node name>",
 *            "iat":N, "exp":N,
 *            "x5c":[<node CA cert, base64 DER>, <certs above it, not the root>],
 *            "keys":[<public JWK with "kid" and "use": "jwt-svid"|"picod">...]}
 *
 * A publication is valid when the signature verifies with x5c[0]'s key;
 * x5c[0] is a CA certificate (cA=true, keyCertSign) whose only URI SAN is
 * spiffe://<td> and that chains to a root of the X.509 bundle at the
 * verification time; td matches; iat <= now + leeway < exp + 2*leeway;
 * every key is a public key a JWT-SVID alg can use and its kid is
 * cubeid_kid_from_pkey() of it (so equal kids mean equal keys).
 *
 * Publications live in a *store*: a shared directory (one file per node,
 * written atomically) or Kubernetes ConfigMaps (one per node), behind one
 * interface.  A *view* keeps the newest valid publication of each node and
 * yields the union of their keys until each publication's exp.
 *
 * Conventions as in <cubeid/token.h>.
 */
#ifndef CUBEID_CLUSTER_H
#define CUBEID_CLUSTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>

#include <cubeid/ca.h>
#include <cubeid/error.h>
#include <cubeid/jwt-keys.h>
#include <cubeid/jwt.h>
#include <cubeid/x509svid.h>

#ifdef __cplusplus
extern "C" {
#endif

#define CUBEID_PUB_MAX        (64 * 1024) /* bytes of one publication */
#define CUBEID_PUB_KEYS_MAX   32          /* keys in one publication */
#define CUBEID_PUB_CERTS_MAX  4           /* certificates in x5c */
#define CUBEID_NODE_NAME_MAX  63          /* bytes of a node name */
#define CUBEID_CLUSTER_NODES  1024        /* publications in a store or view */
#define CUBEID_PUB_LEEWAY     60          /* seconds of clock skew allowed */
#define CUBEID_PUB_TYP        "cubeid-publication+jwt"
#define CUBEID_STORE_LIST_MAX (16 * 1024 * 1024) /* bytes of a store listing */

/* What a published key is for (the JWK's "use"). */
typedef enum {
	CUBEID_PUB_USE_NONE = 0,
	CUBEID_PUB_USE_JWT_SVID, /* "jwt-svid" */
	CUBEID_PUB_USE_PICOD,    /* "picod" */
} cubeid_pub_use;

const char *cubeid_pub_use_name(cubeid_pub_use use); /* NULL for NONE */
cubeid_pub_use cubeid_pub_use_from_name(const char *name);

/* A node name: a Kubernetes node name (an RFC 1123 subdomain: labels of
 * [a-z0-9-], alphanumeric at both ends, joined by dots) of 1..200 bytes, so
 * that NODE.jws and cubeid-pub-NODE are valid file and ConfigMap names. */
bool cubeid_node_name_valid(const char *name);

/* One published key (borrowed strings and key). */
struct cubeid_pub_key {
	const char *kid;
	cubeid_pub_use use;
	EVP_PKEY *pub;
};

/* ---- publications (cluster/cluster-pub.c) ----------------------------- */

/*
 * Sign a publication of keys[0..n) for node, issued at now (0 = the current
 * time) and valid for ttl seconds, with ca's key (in the token); x5c is ca's
 * certificate and its intermediates.  Each kid must be
 * cubeid_kid_from_pkey() of its key (CUBEID_ERR_INVALID_ARG otherwise).
 * New NUL-terminated compact JWS in *out; caller frees.
 */
int cubeid_pub_sign(cubeid_ca *ca, const char *node, const struct cubeid_pub_key *keys, size_t n,
                    int64_t now, int64_t ttl, char **out);

/*
 * The same for this node's JWT-SVID keys: every key of k published at now
 * (cubeid_jwt_keys_published()), then extra[0..n_extra) (PicoD keys; may
 * be 0).  ttl 0 = max_ttl of k + CUBEID_PUB_TTL_SLACK.
 */
#define CUBEID_PUB_TTL_SLACK 300 /* seconds beyond max_ttl, for refreshes */
int cubeid_pub_sign_jwt_keys(cubeid_ca *ca, const char *node, const cubeid_jwt_keys *k,
                             const struct cubeid_pub_key *extra, size_t n_extra, int64_t now,
                             int64_t ttl, char **out);

typedef struct cubeid_publication cubeid_publication;

/*
 * Parse doc[0..len) (CUBEID_PUB_MAX bytes at most) without checking its
 * proof: the shape of the JWS and of the payload.  CUBEID_ERR_TOO_LARGE,
 * CUBEID_ERR_JWT_MALFORMED / _ALG (the JWS), CUBEID_ERR_PUBLICATION (the
 * payload), with *why (optional) a static reason.  For tools and fuzzing;
 * trust nothing in it before cubeid_pub_verify().
 */
int cubeid_pub_parse(const char *doc, size_t len, cubeid_publication **out, const char **why);
/*
 * Parse and verify doc against the X.509 roots at now (0 = the current
 * time) with leeway seconds of clock skew: see the top of this file.
 * CUBEID_ERR_PUBLICATION for any rule broken (*why says which),
 * CUBEID_ERR_JWT_SIGNATURE for a bad signature, CUBEID_ERR_X509_VERIFY /
 * _EXPIRED for a certificate that does not chain to a root at now.
 */
int cubeid_pub_verify(const char *doc, size_t len, const cubeid_x509_bundle *roots, int64_t now,
                      unsigned leeway, cubeid_publication **out, const char **why);
void cubeid_publication_free(cubeid_publication *p);

const char *cubeid_publication_td(const cubeid_publication *p);   /* borrowed */
const char *cubeid_publication_node(const cubeid_publication *p); /* borrowed */
int64_t cubeid_publication_iat(const cubeid_publication *p);
int64_t cubeid_publication_exp(const cubeid_publication *p);
/* The signer's certificate (x5c[0]; borrowed). */
X509 *cubeid_publication_signer(const cubeid_publication *p);
size_t cubeid_publication_count(const cubeid_publication *p);
/* Key i (strings and key borrowed from p); CUBEID_ERR_NOT_FOUND past the end. */
int cubeid_publication_key_at(const cubeid_publication *p, size_t i, struct cubeid_pub_key *k);

/* ---- the cluster view (cluster/cluster-view.c) ------------------------ */

typedef struct cubeid_cluster_view cubeid_cluster_view;

int cubeid_cluster_view_new(const char *td, cubeid_cluster_view **out);
void cubeid_cluster_view_free(cubeid_cluster_view *v);
/*
 * Offer a publication read from the store under the name node: verify it
 * (cubeid_pub_verify with CUBEID_PUB_LEEWAY), check that it names node and
 * the view's trust domain (CUBEID_ERR_PUBLICATION), and keep it as node's
 * publication unless the view holds one issued later (then
 * CUBEID_ERR_PUBLICATION, "older than the one held": a store cannot roll a
 * node back).  A kid that another node already publishes with another key
 * is refused the same way.  *why (optional) gets a static reason.
 */
int cubeid_cluster_view_offer(cubeid_cluster_view *v, const char *node, const char *doc, size_t len,
                              const cubeid_x509_bundle *roots, int64_t now, const char **why);
/* Drop the publications whose exp has passed at now (and every one if
 * all is true); *dropped (optional) gets how many. */
void cubeid_cluster_view_prune(cubeid_cluster_view *v, int64_t now, bool all, size_t *dropped);
size_t cubeid_cluster_view_count(const cubeid_cluster_view *v);
/* The i-th node's publication (borrowed), NULL past the end. */
const cubeid_publication *cubeid_cluster_view_at(const cubeid_cluster_view *v, size_t i);
/*
 * Add to b every key of use held at now (publication not expired), except
 * those of the node named skip (may be NULL: ours, which the caller adds
 * itself).  A kid already in b is skipped.  *added (optional) gets how many.
 */
int cubeid_cluster_view_add_keys(const cubeid_cluster_view *v, cubeid_pub_use use, int64_t now,
                                 const char *skip, cubeid_jwt_bundle *b, size_t *added);

/* ---- stores (cluster/cluster-store.c, cluster/cluster-k8s.c) ---------- */

typedef struct cubeid_store cubeid_store;

/* One publication as the store holds it. */
struct cubeid_store_doc {
	char *node;
	char *data; /* NUL-terminated */
	size_t len;
};
void cubeid_store_docs_free(struct cubeid_store_doc *docs, size_t n);

/*
 * The file backend: dir holds NODE.jws, one per node, each written
 * atomically (temp file, fsync, rename, fsync of dir) with mode 0644.  dir
 * must exist.
 */
int cubeid_store_file_new(const char *dir, cubeid_store **out);

/* The Kubernetes backend: one ConfigMap "cubeid-pub-NODE" per node, labelled
 * cubeid.io/publication=v1, data key "publication", in one namespace. */
struct cubeid_k8s_opts {
	/* "https://HOST:PORT"; NULL = https://$KUBERNETES_SERVICE_HOST:
	 * $KUBERNETES_SERVICE_PORT */
	const char *api_server;
	/* NULL = the pod's ServiceAccount files under
	 * /var/run/secrets/kubernetes.io/serviceaccount/ */
	const char *token_file; /* re-read before every request (it rotates) */
	const char *ca_file;
	const char *namespace; /* NULL = the ServiceAccount's namespace file */
	long timeout_ms;       /* per request; 0 = 10000 */
};
#define CUBEID_K8S_SA_DIR      "/var/run/secrets/kubernetes.io/serviceaccount"
#define CUBEID_K8S_LABEL       "cubeid.io/publication"
#define CUBEID_K8S_NAME_PREFIX "cubeid-pub-"
#define CUBEID_K8S_DATA_KEY    "publication"
int cubeid_store_k8s_new(const struct cubeid_k8s_opts *o, cubeid_store **out);
/*
 * Parse a ConfigMapList (the API server's answer to the list request)
 * json[0..len): the items named CUBEID_K8S_NAME_PREFIX + a valid node name
 * with a string data.publication become docs; other items are skipped.
 * Not an object with an "items" array: CUBEID_ERR_PARSE.  *resource_version
 * (optional) gets the list's metadata.resourceVersion (caller frees; NULL
 * if absent).
 */
int cubeid_k8s_parse_configmap_list(const char *json, size_t len, struct cubeid_store_doc **docs,
                                    size_t *n, char **resource_version);

/* Write node's publication, replacing the previous one.  CUBEID_ERR_STORE
 * when the store cannot be reached or refuses. */
int cubeid_store_put(cubeid_store *s, const char *node, const char *doc, size_t len);
/* Every publication in the store (at most CUBEID_CLUSTER_NODES; the caller
 * frees with cubeid_store_docs_free()).  CUBEID_ERR_STORE when unreachable. */
int cubeid_store_list(cubeid_store *s, struct cubeid_store_doc **docs, size_t *n);
/* Remove node's publication (a node that leaves); absent is fine. */
int cubeid_store_remove(cubeid_store *s, const char *node);
/*
 * Keep the store's list current in the background where the backend can
 * (kubernetes: list, then watch, on a thread of its own), and call
 * changed(arg) on that thread after the list or a publication changed.
 * While the watch is current, cubeid_store_list() answers from memory;
 * while it is not (an error, backing off), cubeid_store_list() asks the
 * store as without a watch.  CUBEID_ERR_UNSUPPORTED for the file backend.
 * cubeid_store_unwatch() (and cubeid_store_free()) stop it and wait for the
 * thread: after they return, changed is not called again.
 */
int cubeid_store_watch(cubeid_store *s, void (*changed)(void *arg), void *arg);
void cubeid_store_unwatch(cubeid_store *s);
/* "file" or "kubernetes" (static). */
const char *cubeid_store_kind(const cubeid_store *s);
void cubeid_store_free(cubeid_store *s);

#ifdef __cplusplus
}
#endif
#endif
