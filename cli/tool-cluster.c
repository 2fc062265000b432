/*
 * `cubeid cluster ...`: this node's key publication and the trust domain's
 * cluster JWT bundle, in a publication store (a shared directory or
 * Kubernetes ConfigMaps).  See <cubeid/cluster.h> and docs/cluster.md.
 */
#include "config.h"

#include "cli/tool.h"

#include <cubeid/ca.h>
#include <cubeid/cluster.h>
#include <cubeid/jwt-keys.h>
#include <cubeid/x509svid.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <unistd.h>

TOOL_GROUP_DECLARE(cluster);

static int cl_publish(struct tool_ctx *c);
static int cl_show(struct tool_ctx *c);
static int cl_verify(struct tool_ctx *c);
static int cl_leave(struct tool_ctx *c);

#define STORE_OPTS                                                                                 \
	{"store-dir", 0, "DIR", "the file store: a shared directory, one NODE.jws per node"},      \
	        {"kubernetes", 0, NULL,                                                            \
	         "the Kubernetes store: ConfigMaps through the API server"},                       \
	        {"k8s-api-server", 0, "URL",                                                       \
	         "https:// URL of the API server (default: from KUBERNETES_SERVICE_HOST/_PORT)"},  \
	        {"k8s-namespace", 0, "NS", "namespace of the ConfigMaps (default: the pod's)"},    \
	        {"k8s-token-file", 0, "FILE", "ServiceAccount token (default: the pod's)"},        \
	{                                                                                          \
		"k8s-ca-file", 0, "FILE", "CA certificate of the API server (default: the pod's)"  \
	}

static const struct tool_opt publish_opts[] = {
        {"node", 0, "NAME", "this node's name in the store (required)"},
        {"ttl", 0, "DURATION", "how long the publication is valid (default: max_ttl + 5m)"},
        {"out", 0, "FILE", "also write the publication to FILE ('-': standard output)"},
        STORE_OPTS,
        {0},
};
static const struct tool_opt show_opts[] = {
        {"bundle", 0, "FILE", "the trust domain's roots (default: STATE-DIR/bundle.pem)"},
        {"format", 'f', "FORMAT", "text (the default) or jwks (the valid keys of --use)"},
        {"use", 0, "USE", "jwt-svid (the default) or picod, for --format jwks"},
        TOOL_OUTPUT_OPT,
        STORE_OPTS,
        {0},
};
static const struct tool_opt verify_opts[] = {
        {"bundle", 0, "FILE", "the trust domain's roots (default: STATE-DIR/bundle.pem)"},
        TOOL_OUTPUT_OPT,
        {0},
};
static const struct tool_opt leave_opts[] = {
        {"node", 0, "NAME", "the node whose publication to remove (required)"},
        STORE_OPTS,
        {0},
};

const struct tool_cmd tool_cluster_cmds[] = {
        {"publish", "--node NAME (--store-dir DIR | --kubernetes ...) [--ttl DURATION]",
         "publish this node's JWT public keys, signed by its CA key",
         "Signs a publication of the JWT-SVID keys in STATE-DIR/jwt.conf that are\n"
         "published now (with their kids) in the token with this node's CA key, with\n"
         "the CA's certificate chain, and writes it to the store as NAME's.  Readers\n"
         "accept it only if the certificate chains to the trust domain's root.  The\n"
         "running agent does this by itself when its config has a cluster section.",
         publish_opts, 0, cl_publish},
        {"show",
         "(--store-dir DIR | --kubernetes ...) [--format text|jwks] [--use USE] [-o text|json]",
         "verify every publication in the store and show the cluster's keys",
         "Reads every publication in the store and verifies it against the roots.\n"
         "text: one line per node (valid or refused, with why) and per key.  jwks: the\n"
         "union of the valid keys of --use as a JWKS, the cluster JWT bundle.  -o json\n"
         "(with --format text): {\"nodes\": [{node, issued, expires, keys}], \"refused\":\n"
         "[{node, why}]}.  Times are RFC 3339.  Exit status 1 when a publication was\n"
         "refused (the JWKS is still printed).",
         show_opts, 0, cl_show},
        {"verify", "FILE [--bundle FILE] [-o text|json]", "verify one publication document",
         "Prints the node, its validity (issued and expires, RFC 3339) and its keys, or\n"
         "why the publication is refused (exit status 7).  FILE '-' is standard input.",
         verify_opts, 1, cl_verify},
        {"leave", "--node NAME (--store-dir DIR | --kubernetes ...)",
         "remove a node's publication from the store",
         "Readers keep the node's keys until its last publication expires (by then every\n"
         "token they signed has expired), then drop them.",
         leave_opts, 0, cl_leave},
        {0},
};

int
tool_cluster(int argc, char **argv)
{
	return tool_dispatch("cluster", tool_cluster_cmds, argc, argv);
}

static int
open_store(struct tool_ctx *c, cubeid_store **out)
{
	const char *dir = tool_opt(c, "store-dir");
	struct cubeid_k8s_opts o = {0};
	int r;

	*out = NULL;
	if ((dir != NULL) == tool_flag(c, "kubernetes"))
		return tool_usage_error(c, "give exactly one of --store-dir and --kubernetes");
	if (dir != NULL)
		r = cubeid_store_file_new(dir, out);
	else {
		o.api_server = tool_opt(c, "k8s-api-server");
		o.namespace = tool_opt(c, "k8s-namespace");
		o.token_file = tool_opt(c, "k8s-token-file");
		o.ca_file = tool_opt(c, "k8s-ca-file");
		r = cubeid_store_k8s_new(&o, out);
	}
	if (r != CUBEID_OK)
		return tool_fail(r, "cannot open the store");
	return TOOL_EXIT_OK;
}

static int
need_node(struct tool_ctx *c, const char **node)
{
	*node = tool_opt(c, "node");
	if (*node == NULL)
		return tool_usage_error(c, "--node is required");
	if (!cubeid_node_name_valid(*node))
		return tool_usage_error(
		        c, "'%s' is not a node name (a Kubernetes node name: a-z, 0-9, '-', '.')",
		        *node);
	return TOOL_EXIT_OK;
}

static int
cl_publish(struct tool_ctx *c)
{
	const char *node, *ttl_s = tool_opt(c, "ttl"), *outf = tool_opt(c, "out");
	cubeid_store *st = NULL;
	cubeid_token *tok = NULL;
	cubeid_ca *ca = NULL;
	cubeid_jwt_keys *k = NULL;
	char *doc = NULL;
	int64_t ttl = 0;
	int r, rc;

	if ((rc = need_node(c, &node)) != TOOL_EXIT_OK)
		return rc;
	if (ttl_s != NULL && cubeid_duration_parse(ttl_s, &ttl) != CUBEID_OK)
		return tool_usage_error(c, "bad duration '%s'", ttl_s);
	if ((rc = open_store(c, &st)) != TOOL_EXIT_OK)
		return rc;
	if ((r = tool_token_open(c, true, NULL, &tok)) != CUBEID_OK) {
		rc = tool_exit_code(r);
		goto out;
	}
	if ((r = cubeid_ca_load(tok, c->state_dir, &ca)) != CUBEID_OK) {
		rc = tool_fail(r, "no usable CA in %s", c->state_dir);
		goto out;
	}
	if ((r = cubeid_jwt_keys_load(c->state_dir, &k)) != CUBEID_OK) {
		rc = tool_fail(r, "no JWT keys in %s ('cubeid ca jwt-rotate')", c->state_dir);
		goto out;
	}
	if ((r = cubeid_pub_sign_jwt_keys(ca, node, k, NULL, 0, 0, ttl, &doc)) != CUBEID_OK) {
		rc = tool_fail(r, "cannot sign the publication");
		goto out;
	}
	if (outf != NULL && tool_write_out(outf, doc, strlen(doc)) != CUBEID_OK) {
		rc = TOOL_EXIT_FAILURE;
		goto out;
	}
	if ((r = cubeid_store_put(st, node, doc, strlen(doc))) != CUBEID_OK) {
		rc = tool_fail(r, "cannot write to the %s store", cubeid_store_kind(st));
		goto out;
	}
	if (!c->quiet)
		printf("published %zu key(s) for node %s to the %s store\n",
		       cubeid_jwt_keys_count(k), node, cubeid_store_kind(st));
	rc = TOOL_EXIT_OK;
out:
	free(doc);
	cubeid_jwt_keys_free(k);
	cubeid_ca_free(ca);
	cubeid_token_free(tok);
	cubeid_store_free(st);
	return rc;
}

/* The roots: --bundle FILE, else STATE-DIR/bundle.pem; the trust domain is
 * the one in the root certificate's URI SAN. */
static int
load_roots(struct tool_ctx *c, cubeid_x509_bundle **out)
{
	const char *path = tool_opt(c, "bundle");
	STACK_OF(X509) *sk = NULL;
	cubeid_spiffe_id *id = NULL;
	char *def = NULL, *buf = NULL;
	size_t len = 0;
	int r;

	*out = NULL;
	if (path == NULL) {
		if (asprintf(&def, "%s/" CUBEID_CA_BUNDLE_FILE, c->state_dir) < 0)
			return tool_fail(CUBEID_ERR_NOMEM, "bundle");
		path = def;
	}
	r = tool_read_in(path, CUBEID_X509_BUNDLE_MAX, &buf, &len);
	if (r == CUBEID_OK)
		r = cubeid_x509_chain_parse((const uint8_t *)buf, len, CUBEID_X509_BUNDLE_MAX,
		                            CUBEID_X509_BUNDLE_CERTS, &sk);
	if (r == CUBEID_OK)
		r = cubeid_x509_spiffe_id(sk_X509_value(sk, 0), &id, NULL);
	if (r == CUBEID_OK)
		r = cubeid_x509_bundle_parse(cubeid_spiffe_id_trust_domain(id),
		                             (const uint8_t *)buf, len, out);
	if (r != CUBEID_OK)
		r = tool_fail(r, "cannot read the roots from %s", path);
	else
		r = TOOL_EXIT_OK;
	cubeid_spiffe_id_free(id);
	sk_X509_pop_free(sk, X509_free);
	free(buf);
	free(def);
	return r;
}

static json_t *
pub_json(const cubeid_publication *p)
{
	struct cubeid_pub_key k;
	char t1[TOOL_TIME_LEN], t2[TOOL_TIME_LEN];
	json_t *keys = json_array();
	size_t i;

	for (i = 0; keys != NULL && cubeid_publication_key_at(p, i, &k) == CUBEID_OK; i++)
		if (json_array_append_new(keys,
		                          json_pack("{s:s s:s}", "use", cubeid_pub_use_name(k.use),
		                                    "kid", k.kid)) != 0) {
			json_decref(keys);
			keys = NULL;
		}
	return json_pack("{s:s s:s s:s s:o}", "node", cubeid_publication_node(p), "issued",
	                 tool_time(cubeid_publication_iat(p), t1), "expires",
	                 tool_time(cubeid_publication_exp(p), t2), "keys", keys);
}

static void
print_pub(const cubeid_publication *p)
{
	struct cubeid_pub_key k;
	char t1[TOOL_TIME_LEN], t2[TOOL_TIME_LEN];
	size_t i;

	printf("node %s: valid, issued %s, expires %s, %zu key(s)\n", cubeid_publication_node(p),
	       tool_time(cubeid_publication_iat(p), t1), tool_time(cubeid_publication_exp(p), t2),
	       cubeid_publication_count(p));
	for (i = 0; cubeid_publication_key_at(p, i, &k) == CUBEID_OK; i++)
		printf("  %s %s\n", cubeid_pub_use_name(k.use), k.kid);
}

static int
cl_show(struct tool_ctx *c)
{
	const char *fmt = tool_opt(c, "format"), *use_s = tool_opt(c, "use");
	struct cubeid_store_doc *docs = NULL;
	cubeid_x509_bundle *roots = NULL;
	cubeid_cluster_view *v = NULL;
	cubeid_jwt_bundle *b = NULL;
	cubeid_store *st = NULL;
	cubeid_pub_use use = CUBEID_PUB_USE_JWT_SVID;
	bool jwks = false;
	size_t i, n = 0, refused = 0;
	char *out = NULL;
	json_t *jnodes = NULL, *jrefused = NULL;
	int r, rc;

	if (fmt != NULL && strcmp(fmt, "jwks") == 0)
		jwks = true;
	else if (fmt != NULL && strcmp(fmt, "text") != 0)
		return tool_usage_error(c, "--format is text or jwks");
	if (use_s != NULL && (use = cubeid_pub_use_from_name(use_s)) == CUBEID_PUB_USE_NONE)
		return tool_usage_error(c, "--use is jwt-svid or picod");
	if ((rc = load_roots(c, &roots)) != TOOL_EXIT_OK)
		return rc;
	if ((rc = open_store(c, &st)) != TOOL_EXIT_OK)
		goto out;
	if ((r = cubeid_store_list(st, &docs, &n)) != CUBEID_OK) {
		rc = tool_fail(r, "cannot read the %s store", cubeid_store_kind(st));
		goto out;
	}
	if ((r = cubeid_cluster_view_new(cubeid_x509_bundle_trust_domain(roots), &v)) !=
	    CUBEID_OK) {
		rc = tool_fail(r, "view");
		goto out;
	}
	for (i = 0; i < n; i++) {
		const char *why = NULL;

		r = cubeid_cluster_view_offer(v, docs[i].node, docs[i].data, docs[i].len, roots, 0,
		                              &why);
		if (r != CUBEID_OK) {
			refused++;
			if (c->json && !jwks) {
				if ((jrefused == NULL && (jrefused = json_array()) == NULL) ||
				    json_array_append_new(
				            jrefused,
				            json_pack("{s:s s:s}", "node", docs[i].node, "why",
				                      why != NULL ? why : cubeid_strerror(r))) !=
				            0) {
					rc = tool_fail(CUBEID_ERR_NOMEM, "JSON output");
					goto out;
				}
				continue;
			}
			fprintf(jwks ? stderr : stdout, "node %s: REFUSED: %s (%s)\n", docs[i].node,
			        why != NULL ? why : "?", cubeid_strerror(r));
		}
	}
	if (jwks) {
		if ((r = cubeid_jwt_bundle_new(cubeid_x509_bundle_trust_domain(roots), &b)) !=
		            CUBEID_OK ||
		    (r = cubeid_cluster_view_add_keys(v, use, 0, NULL, b, NULL)) != CUBEID_OK ||
		    (r = cubeid_jwt_bundle_to_jwks(b, &out, NULL)) != CUBEID_OK) {
			rc = tool_fail(r, "cannot build the JWKS");
			goto out;
		}
		printf("%s\n", out);
	} else if (c->json) {
		if ((jnodes = json_array()) == NULL) {
			rc = tool_fail(CUBEID_ERR_NOMEM, "JSON output");
			goto out;
		}
		for (i = 0; i < cubeid_cluster_view_count(v); i++)
			if (json_array_append_new(jnodes, pub_json(cubeid_cluster_view_at(v, i))) !=
			    0) {
				rc = tool_fail(CUBEID_ERR_NOMEM, "JSON output");
				goto out;
			}
		rc = tool_print_json(json_pack("{s:o s:o}", "nodes", jnodes, "refused",
		                               jrefused != NULL ? jrefused : json_array()));
		jnodes = jrefused = NULL;
		if (rc != TOOL_EXIT_OK)
			goto out;
	} else {
		for (i = 0; i < cubeid_cluster_view_count(v); i++)
			print_pub(cubeid_cluster_view_at(v, i));
	}
	rc = refused > 0 ? TOOL_EXIT_FAILURE : TOOL_EXIT_OK;
out:
	json_decref(jnodes);
	json_decref(jrefused);
	free(out);
	cubeid_jwt_bundle_free(b);
	cubeid_cluster_view_free(v);
	cubeid_store_docs_free(docs, n);
	cubeid_store_free(st);
	cubeid_x509_bundle_free(roots);
	return rc;
}

static int
cl_verify(struct tool_ctx *c)
{
	cubeid_x509_bundle *roots = NULL;
	cubeid_publication *p = NULL;
	const char *why = NULL;
	char *buf = NULL;
	size_t len = 0;
	int r, rc;

	if (c->argc != 1)
		return tool_usage_error(c, "give the publication FILE");
	if ((r = tool_read_in(c->argv[0], CUBEID_PUB_MAX + 2, &buf, &len)) != CUBEID_OK)
		return tool_fail(r, "%s", c->argv[0]);
	if ((rc = load_roots(c, &roots)) != TOOL_EXIT_OK)
		goto out;
	if ((r = cubeid_pub_verify(buf, len, roots, 0, CUBEID_PUB_LEEWAY, &p, &why)) != CUBEID_OK) {
		printf("REFUSED: %s\n", why != NULL ? why : "?");
		(void)tool_fail(r, "%s", c->argv[0]);
		rc = TOOL_EXIT_REJECTED;
		goto out;
	}
	if (c->json) {
		rc = tool_print_json(pub_json(p));
		goto out;
	}
	print_pub(p);
	rc = TOOL_EXIT_OK;
out:
	cubeid_publication_free(p);
	cubeid_x509_bundle_free(roots);
	free(buf);
	return rc;
}

static int
cl_leave(struct tool_ctx *c)
{
	cubeid_store *st = NULL;
	const char *node;
	int r, rc;

	if ((rc = need_node(c, &node)) != TOOL_EXIT_OK)
		return rc;
	if ((rc = open_store(c, &st)) != TOOL_EXIT_OK)
		return rc;
	if ((r = cubeid_store_remove(st, node)) != CUBEID_OK)
		rc = tool_fail(r, "cannot remove %s's publication", node);
	else if (!c->quiet)
		printf("removed node %s's publication from the %s store\n", node,
		       cubeid_store_kind(st));
	cubeid_store_free(st);
	return rc;
}
