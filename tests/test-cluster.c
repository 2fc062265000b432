/*
 * Cluster trust (<cubeid/cluster.h>) with real CAs in a SoftHSM2 token: one
 * root with two enrolled node intermediates, and an impostor enrolled under
 * another root.  Publications signed by a node verify; forgeries do not
 * (another root, a payload changed under a valid signature, a kid that is
 * not the key's, another trust domain, expired, issued in the future); the
 * view keeps the newest publication per node, refuses roll-backs and kid
 * clashes, and drops a node's keys when its publication expires; the file
 * store writes atomically and ignores what is not a publication; the
 * Kubernetes ConfigMapList parser takes only our ConfigMaps.
 */
#include "config.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#include <cubeid/ca.h>
#include <cubeid/cluster.h>
#include <cubeid/jwt.h>
#include <cubeid/picod.h>

#include "tests/harness.h"

#define TD   "example.org"
#define S(s) s, strlen(s)

static struct th_token th;
static cubeid_token *tok;
static char *dir;
static cubeid_ca *root, *node_a, *node_b, *evil;
static EVP_PKEY *k1, *k2, *k3;
static char kid1[CUBEID_KID_LEN + 1], kid2[CUBEID_KID_LEN + 1], kid3[CUBEID_KID_LEN + 1];
static int64_t now;

static char *
sub(const char *name)
{
	char *p = NULL;

	ck_assert_int_ge(asprintf(&p, "%s/%s", dir, name), 0);
	return p;
}

/* Enrol an intermediate under r in state dir name. */
static cubeid_ca *
enrol(cubeid_ca *r, const char *name)
{
	struct cubeid_ca_opts o = {0};
	char *st = sub(name), *csr = NULL, *pem = NULL;
	cubeid_ca *ca = NULL;
	char label[64];

	snprintf(label, sizeof(label), "cubeid-test-%s", name);
	o.label = label;
	ck_assert_int_eq(cubeid_ca_csr_create(tok, st, TD, &o, &csr), CUBEID_OK);
	ck_assert_int_eq(cubeid_ca_sign_csr(r, csr, strlen(csr), NULL, &pem), CUBEID_OK);
	ck_assert_int_eq(cubeid_ca_install(tok, st, pem, strlen(pem), cubeid_ca_bundle(r), &ca),
	                 CUBEID_OK);
	free(csr);
	free(pem);
	free(st);
	return ca;
}

static EVP_PKEY *
swkey(char kid[CUBEID_KID_LEN + 1])
{
	EVP_PKEY *pk = EVP_EC_gen("P-256");

	ck_assert_ptr_nonnull(pk);
	ck_assert_int_eq(cubeid_kid_from_pkey(pk, kid), CUBEID_OK);
	return pk;
}

static void
setup(void)
{
	struct cubeid_ca_opts o = {0};
	char *st;

	th_token_setup(&th);
	tok = th_token_open(&th, 0);
	dir = th_mkdtemp("cubeid-cluster");
	now = (int64_t)time(NULL);
	st = sub("root");
	o.label = "cubeid-test-root";
	ck_assert_int_eq(cubeid_ca_init(tok, st, TD, &o, &root), CUBEID_OK);
	free(st);
	node_a = enrol(root, "a");
	node_b = enrol(root, "b");
	{
		cubeid_ca *other = NULL;

		st = sub("other");
		o.label = "cubeid-test-other";
		ck_assert_int_eq(cubeid_ca_init(tok, st, TD, &o, &other), CUBEID_OK);
		free(st);
		evil = enrol(other, "evil");
		cubeid_ca_free(other);
	}
	k1 = swkey(kid1);
	k2 = swkey(kid2);
	k3 = swkey(kid3);
}

static void
teardown(void)
{
	EVP_PKEY_free(k1);
	EVP_PKEY_free(k2);
	EVP_PKEY_free(k3);
	cubeid_ca_free(root);
	cubeid_ca_free(node_a);
	cubeid_ca_free(node_b);
	cubeid_ca_free(evil);
	cubeid_token_free(tok);
	th_rmtree(dir);
	free(dir);
	th_token_teardown(&th);
}

static char *
publish(cubeid_ca *ca, const char *node, EVP_PKEY *pk, const char *kid, cubeid_pub_use use,
        int64_t at, int64_t ttl)
{
	struct cubeid_pub_key k = {kid, use, pk};
	char *doc = NULL;
	int rc = cubeid_pub_sign(ca, node, &k, 1, at, ttl, &doc);

	ck_assert_msg(rc == CUBEID_OK, "pub_sign: %s", cubeid_strerror(rc));
	return doc;
}

static int
verify(const char *doc, int64_t at, const char **why)
{
	cubeid_publication *p = NULL;
	int rc = cubeid_pub_verify(doc, strlen(doc), cubeid_ca_bundle(root), at, CUBEID_PUB_LEEWAY,
	                           &p, why);

	ck_assert(rc == CUBEID_OK ? p != NULL : p == NULL);
	cubeid_publication_free(p);
	return rc;
}

START_TEST(test_node_publication_verifies)
{
	struct cubeid_pub_key keys[2] = {{kid1, CUBEID_PUB_USE_JWT_SVID, k1},
	                                 {kid2, CUBEID_PUB_USE_PICOD, k2}};
	cubeid_publication *p = NULL;
	struct cubeid_pub_key k;
	const char *why = NULL;
	char *doc = NULL;

	ck_assert_int_eq(cubeid_pub_sign(node_a, "node-a", keys, 2, now, 600, &doc), CUBEID_OK);
	ck_assert_int_eq(
	        cubeid_pub_verify(doc, strlen(doc), cubeid_ca_bundle(root), now, 0, &p, &why),
	        CUBEID_OK);
	ck_assert_str_eq(why, "ok");
	ck_assert_str_eq(cubeid_publication_node(p), "node-a");
	ck_assert_str_eq(cubeid_publication_td(p), TD);
	ck_assert_int_eq(cubeid_publication_iat(p), now);
	ck_assert_int_eq(cubeid_publication_exp(p), now + 600);
	ck_assert_uint_eq(cubeid_publication_count(p), 2);
	ck_assert_int_eq(cubeid_publication_key_at(p, 1, &k), CUBEID_OK);
	ck_assert_str_eq(k.kid, kid2);
	ck_assert_int_eq(k.use, CUBEID_PUB_USE_PICOD);
	ck_assert_int_eq(EVP_PKEY_eq(k.pub, k2), 1);
	ck_assert_int_eq(cubeid_publication_key_at(p, 2, &k), CUBEID_ERR_NOT_FOUND);
	ck_assert_int_eq(X509_cmp(cubeid_publication_signer(p), cubeid_ca_cert(node_a)), 0);
	cubeid_publication_free(p);
	/* a trailing newline (a file) is fine */
	{
		char *nl = NULL;

		ck_assert_int_ge(asprintf(&nl, "%s\n", doc), 0);
		ck_assert_int_eq(verify(nl, now, NULL), CUBEID_OK);
		free(nl);
	}
	/* the root itself may publish */
	free(doc);
	doc = publish(root, "root-node", k1, kid1, CUBEID_PUB_USE_JWT_SVID, now, 60);
	ck_assert_int_eq(verify(doc, now, NULL), CUBEID_OK);
	free(doc);
}
END_TEST

START_TEST(test_forgeries_are_refused)
{
	const char *why = NULL;
	char *doc, *forged = NULL, *p1, *p2;
	cubeid_x509_bundle *other_td = NULL;
	cubeid_publication *p = NULL;

	/* a node under another root */
	doc = publish(evil, "evil", k3, kid3, CUBEID_PUB_USE_JWT_SVID, now, 600);
	ck_assert_int_eq(verify(doc, now, &why), CUBEID_ERR_X509_VERIFY);
	free(doc);

	/* node A's valid signature over a payload carrying another key: take
	 * the payload of a publication of k3 and put it under A's signature */
	doc = publish(node_a, "node-a", k1, kid1, CUBEID_PUB_USE_JWT_SVID, now, 600);
	p1 = publish(node_b, "node-a", k3, kid3, CUBEID_PUB_USE_JWT_SVID, now, 600);
	{
		char *a_dot = strchr(doc, '.'), *a_sig = strrchr(doc, '.');
		char *b_dot = strchr(p1, '.'), *b_sig = strrchr(p1, '.');

		ck_assert_int_ge(asprintf(&forged, "%.*s%.*s%s", (int)(a_dot - doc), doc,
		                          (int)(b_sig - b_dot), b_dot, a_sig),
		                 0);
	}
	/* the payload names B's certificate: the signature does not verify
	 * with it */
	ck_assert_int_eq(verify(forged, now, &why), CUBEID_ERR_JWT_SIGNATURE);
	free(forged);
	free(p1);

	/* a payload whose x5c is A's but whose keys are k3: build it with A's
	 * certificate and sign it with B's key */
	{
		json_t *c = NULL;
		cubeid_jws *j = NULL;

		ck_assert_int_eq(cubeid_jws_decode(doc, strlen(doc), &j), CUBEID_OK);
		c = json_deep_copy(cubeid_jws_claims(j));
		cubeid_jws_free(j);
		p2 = publish(node_b, "node-a", k3, kid3, CUBEID_PUB_USE_JWT_SVID, now, 600);
		ck_assert_int_eq(cubeid_jws_decode(p2, strlen(p2), &j), CUBEID_OK);
		json_object_set(c, "keys", json_object_get(cubeid_jws_claims(j), "keys"));
		cubeid_jws_free(j);
		free(p2);
		ck_assert_int_eq(cubeid_jws_encode(CUBEID_SIG_ECDSA_SHA256, NULL, CUBEID_PUB_TYP, c,
		                                   cubeid_jws_sign_key, cubeid_ca_key(node_b),
		                                   &forged),
		                 CUBEID_OK);
		ck_assert_int_eq(verify(forged, now, &why), CUBEID_ERR_JWT_SIGNATURE);
		free(forged);
		/* signed by A itself, but the kid is not the key's hash */
		json_object_set_new(json_array_get(json_object_get(c, "keys"), 0), "kid",
		                    json_string(kid1));
		ck_assert_int_eq(cubeid_jws_encode(CUBEID_SIG_ECDSA_SHA256, NULL, CUBEID_PUB_TYP, c,
		                                   cubeid_jws_sign_key, cubeid_ca_key(node_a),
		                                   &forged),
		                 CUBEID_OK);
		ck_assert_int_eq(verify(forged, now, &why), CUBEID_ERR_PUBLICATION);
		ck_assert_str_eq(why, "a key's kid is not the hash of its public key");
		free(forged);
		/* a leaf (not a CA) as the signer: x5c = an X.509-SVID */
		json_decref(c);
	}
	/* cubeid_pub_sign refuses a kid that is not the key's */
	{
		struct cubeid_pub_key k = {kid1, CUBEID_PUB_USE_JWT_SVID, k2};

		ck_assert_int_eq(cubeid_pub_sign(node_a, "node-a", &k, 1, now, 60, &forged),
		                 CUBEID_ERR_INVALID_ARG);
		ck_assert_ptr_null(forged);
	}
	/* another trust domain's roots */
	ck_assert_int_eq(cubeid_x509_bundle_new("other.org", &other_td), CUBEID_OK);
	ck_assert_int_eq(cubeid_x509_bundle_add(other_td, cubeid_ca_cert(root)), CUBEID_OK);
	ck_assert_int_eq(cubeid_pub_verify(doc, strlen(doc), other_td, now, 0, &p, &why),
	                 CUBEID_ERR_PUBLICATION);
	ck_assert_str_eq(why, "published for another trust domain");
	cubeid_x509_bundle_free(other_td);
	/* time: expired (with leeway), and issued in the future */
	ck_assert_int_eq(verify(doc, now + 600 + CUBEID_PUB_LEEWAY, &why), CUBEID_ERR_PUBLICATION);
	ck_assert_str_eq(why, "expired");
	ck_assert_int_eq(verify(doc, now + 600 + CUBEID_PUB_LEEWAY - 1, &why), CUBEID_OK);
	ck_assert_int_eq(verify(doc, now - CUBEID_PUB_LEEWAY - 1, &why), CUBEID_ERR_PUBLICATION);
	ck_assert_str_eq(why, "issued in the future (clock skew?)");
	free(doc);
	/* not a publication at all */
	ck_assert_int_eq(verify("a.b.c", now, &why), CUBEID_ERR_JWT_MALFORMED);
	ck_assert_int_eq(verify("", now, &why), CUBEID_ERR_JWT_MALFORMED);
}
END_TEST

START_TEST(test_view_union_rollback_and_expiry)
{
	cubeid_cluster_view *v = NULL;
	cubeid_jwt_bundle *b = NULL;
	const cubeid_x509_bundle *r = cubeid_ca_bundle(root);
	const char *why = NULL;
	char *a1, *a0, *b1, *bc, *ev;
	size_t added, dropped;

	ck_assert_int_eq(cubeid_cluster_view_new(TD, &v), CUBEID_OK);
	a0 = publish(node_a, "node-a", k1, kid1, CUBEID_PUB_USE_JWT_SVID, now - 10, 600);
	a1 = publish(node_a, "node-a", k2, kid2, CUBEID_PUB_USE_JWT_SVID, now, 100);
	b1 = publish(node_b, "node-b", k3, kid3, CUBEID_PUB_USE_PICOD, now, 300);
	ev = publish(evil, "node-c", k1, kid1, CUBEID_PUB_USE_JWT_SVID, now, 300);

	ck_assert_int_eq(cubeid_cluster_view_offer(v, "node-a", a1, strlen(a1), r, now, &why),
	                 CUBEID_OK);
	ck_assert_int_eq(cubeid_cluster_view_offer(v, "node-b", b1, strlen(b1), r, now, &why),
	                 CUBEID_OK);
	/* an older publication of node-a cannot replace the newer one */
	ck_assert_int_eq(cubeid_cluster_view_offer(v, "node-a", a0, strlen(a0), r, now, &why),
	                 CUBEID_ERR_PUBLICATION);
	ck_assert_str_eq(why, "older than the one held for this node");
	/* the store's name must be the publication's */
	ck_assert_int_eq(cubeid_cluster_view_offer(v, "node-x", a1, strlen(a1), r, now, &why),
	                 CUBEID_ERR_PUBLICATION);
	/* an impostor is refused and changes nothing */
	ck_assert_int_eq(cubeid_cluster_view_offer(v, "node-c", ev, strlen(ev), r, now, &why),
	                 CUBEID_ERR_X509_VERIFY);
	/* node-b publishing node-a's kid for another use: a clash */
	bc = publish(node_b, "node-b", k2, kid2, CUBEID_PUB_USE_PICOD, now + 1, 300);
	ck_assert_int_eq(cubeid_cluster_view_offer(v, "node-b", bc, strlen(bc), r, now, &why),
	                 CUBEID_ERR_PUBLICATION);
	ck_assert_str_eq(why, "a kid another node publishes with a different key");
	ck_assert_uint_eq(cubeid_cluster_view_count(v), 2);

	/* the union, by use */
	ck_assert_int_eq(cubeid_jwt_bundle_new(TD, &b), CUBEID_OK);
	ck_assert_int_eq(
	        cubeid_cluster_view_add_keys(v, CUBEID_PUB_USE_JWT_SVID, now, NULL, b, &added),
	        CUBEID_OK);
	ck_assert_uint_eq(added, 1);
	ck_assert_ptr_nonnull(cubeid_jwt_bundle_find(b, kid2));
	ck_assert_ptr_null(cubeid_jwt_bundle_find(b, kid1));
	ck_assert_int_eq(
	        cubeid_cluster_view_add_keys(v, CUBEID_PUB_USE_PICOD, now, NULL, b, &added),
	        CUBEID_OK);
	ck_assert_uint_eq(added, 1);
	ck_assert_ptr_nonnull(cubeid_jwt_bundle_find(b, kid3));
	cubeid_jwt_bundle_free(b);
	/* skip: our own node's keys come from the local state */
	ck_assert_int_eq(cubeid_jwt_bundle_new(TD, &b), CUBEID_OK);
	ck_assert_int_eq(
	        cubeid_cluster_view_add_keys(v, CUBEID_PUB_USE_JWT_SVID, now, "node-a", b, &added),
	        CUBEID_OK);
	ck_assert_uint_eq(added, 0);
	cubeid_jwt_bundle_free(b);

	/* node-a's publication expires at now + 100: its keys go, node-b's stay */
	ck_assert_int_eq(cubeid_jwt_bundle_new(TD, &b), CUBEID_OK);
	ck_assert_int_eq(cubeid_cluster_view_add_keys(v, CUBEID_PUB_USE_JWT_SVID, now + 100, NULL,
	                                              b, &added),
	                 CUBEID_OK);
	ck_assert_uint_eq(added, 0);
	cubeid_jwt_bundle_free(b);
	cubeid_cluster_view_prune(v, now + 99, false, &dropped);
	ck_assert_uint_eq(dropped, 0);
	cubeid_cluster_view_prune(v, now + 100, false, &dropped);
	ck_assert_uint_eq(dropped, 1);
	ck_assert_uint_eq(cubeid_cluster_view_count(v), 1);
	ck_assert_str_eq(cubeid_publication_node(cubeid_cluster_view_at(v, 0)), "node-b");
	cubeid_cluster_view_prune(v, now, true, &dropped);
	ck_assert_uint_eq(dropped, 1);
	ck_assert_uint_eq(cubeid_cluster_view_count(v), 0);

	free(a0);
	free(a1);
	free(b1);
	free(bc);
	free(ev);
	cubeid_cluster_view_free(v);
}
END_TEST

START_TEST(test_file_store)
{
	char *sd = sub("store"), *junk;
	struct cubeid_store_doc *docs = NULL;
	cubeid_store *s = NULL;
	size_t n = 0, i;
	struct stat st;
	FILE *f;

	ck_assert_int_eq(cubeid_store_file_new(sd, &s), CUBEID_ERR_STORE); /* no dir */
	ck_assert_int_eq(mkdir(sd, 0755), 0);
	ck_assert_int_eq(cubeid_store_file_new(sd, &s), CUBEID_OK);
	ck_assert_str_eq(cubeid_store_kind(s), "file");
	ck_assert_int_eq(cubeid_store_put(s, "node-a", "AAA", 3), CUBEID_OK);
	ck_assert_int_eq(cubeid_store_put(s, "node-b", "BBB", 3), CUBEID_OK);
	ck_assert_int_eq(cubeid_store_put(s, "node-a", "A2", 2), CUBEID_OK); /* replaces */
	ck_assert_int_eq(cubeid_store_put(s, "Bad_Name", "x", 1), CUBEID_ERR_INVALID_ARG);
	ck_assert_int_eq(cubeid_store_put(s, "../x", "x", 1), CUBEID_ERR_INVALID_ARG);
	/* what is not NODE.jws is not ours */
	junk = sub("store/.node-c.jws.tmp");
	ck_assert_ptr_nonnull(f = fopen(junk, "w"));
	fclose(f);
	free(junk);
	junk = sub("store/UPPER.jws");
	ck_assert_ptr_nonnull(f = fopen(junk, "w"));
	fclose(f);
	free(junk);
	junk = sub("store/node-a.jws");
	ck_assert_int_eq(stat(junk, &st), 0);
	ck_assert_int_eq(st.st_mode & 0777, 0644);
	free(junk);
	ck_assert_int_eq(cubeid_store_list(s, &docs, &n), CUBEID_OK);
	ck_assert_uint_eq(n, 2);
	for (i = 0; i < n; i++) {
		if (strcmp(docs[i].node, "node-a") == 0)
			ck_assert_str_eq(docs[i].data, "A2");
		else
			ck_assert_str_eq(docs[i].data, "BBB");
	}
	cubeid_store_docs_free(docs, n);
	ck_assert_int_eq(cubeid_store_remove(s, "node-b"), CUBEID_OK);
	ck_assert_int_eq(cubeid_store_remove(s, "node-b"), CUBEID_OK); /* absent: fine */
	ck_assert_int_eq(cubeid_store_list(s, &docs, &n), CUBEID_OK);
	ck_assert_uint_eq(n, 1);
	cubeid_store_docs_free(docs, n);
	cubeid_store_free(s);
	th_rmtree(sd);
	/* the directory vanished: the store is out of reach */
	ck_assert_int_eq(mkdir(sd, 0755), 0);
	ck_assert_int_eq(cubeid_store_file_new(sd, &s), CUBEID_OK);
	th_rmtree(sd);
	ck_assert_int_eq(cubeid_store_list(s, &docs, &n), CUBEID_ERR_STORE);
	ck_assert_int_eq(cubeid_store_put(s, "node-a", "x", 1), CUBEID_ERR_STORE);
	cubeid_store_free(s);
	free(sd);
}
END_TEST

START_TEST(test_k8s_configmap_list)
{
	static const char list[] =
	        "{\"kind\":\"ConfigMapList\",\"apiVersion\":\"v1\",\"metadata\":"
	        "{\"resourceVersion\":\"4711\"},\"items\":["
	        "{\"metadata\":{\"name\":\"cubeid-pub-node-a\",\"namespace\":\"cubeid\"},"
	        "\"data\":{\"publication\":\"a.b.c\"}},"
	        "{\"metadata\":{\"name\":\"kube-root-ca.crt\"},\"data\":{\"ca.crt\":\"x\"}},"
	        "{\"metadata\":{\"name\":\"cubeid-pub-Node_B\"},\"data\":{\"publication\":\"x\"}},"
	        "{\"metadata\":{\"name\":\"cubeid-pub-node-c\"},\"data\":{\"other\":\"x\"}},"
	        "{\"metadata\":{\"name\":\"cubeid-pub-node-d\"},\"data\":{\"publication\":7}},"
	        "{\"metadata\":{\"name\":\"cubeid-pub-node-e\"},\"data\":{\"publication\":\"e\"}}"
	        "]}";
	struct cubeid_store_doc *docs = NULL;
	char *rv = NULL;
	size_t n = 0;

	ck_assert_int_eq(cubeid_k8s_parse_configmap_list(list, strlen(list), &docs, &n, &rv),
	                 CUBEID_OK);
	ck_assert_uint_eq(n, 2);
	ck_assert_str_eq(docs[0].node, "node-a");
	ck_assert_str_eq(docs[0].data, "a.b.c");
	ck_assert_str_eq(docs[1].node, "node-e");
	ck_assert_str_eq(rv, "4711");
	cubeid_store_docs_free(docs, n);
	free(rv);
	ck_assert_int_eq(cubeid_k8s_parse_configmap_list(S("{\"items\":null}"), &docs, &n, NULL),
	                 CUBEID_OK);
	ck_assert_uint_eq(n, 0);
	ck_assert_int_eq(cubeid_k8s_parse_configmap_list(S("[]"), &docs, &n, NULL),
	                 CUBEID_ERR_PARSE);
	ck_assert_int_eq(cubeid_k8s_parse_configmap_list(S("{\"items\":{}}"), &docs, &n, NULL),
	                 CUBEID_ERR_PARSE);
	ck_assert_int_eq(
	        cubeid_k8s_parse_configmap_list(S("{\"items\":[], \"items\":[]}"), &docs, &n, NULL),
	        CUBEID_ERR_PARSE);
	ck_assert_ptr_null(docs);
}
END_TEST

static char *
picod_token(EVP_PKEY *pk, const char *kid)
{
	struct cubeid_picod_claims_in in = {0};
	char *aud = NULL, *t = NULL;

	ck_assert_int_eq(cubeid_picod_audience("default", "sb1", &aud), CUBEID_OK);
	in.sub = "spiffe://example.org/router";
	in.aud = aud;
	in.session_id = "s1";
	in.jti = "j1";
	in.iat = now;
	in.ttl = 60;
	ck_assert_int_eq(cubeid_picod_token_encode(&in, CUBEID_SIG_ECDSA_SHA256, kid,
	                                           cubeid_jws_sign_evp, pk, &t),
	                 CUBEID_OK);
	free(aud);
	return t;
}

static void
write_jwks(const char *path, EVP_PKEY *pk, const char *kid)
{
	cubeid_jwt_bundle *b = NULL;
	char *j = NULL;
	size_t len;

	ck_assert_int_eq(cubeid_jwt_bundle_new("picod", &b), CUBEID_OK);
	ck_assert_int_eq(cubeid_jwt_bundle_add(b, kid, pk), CUBEID_OK);
	ck_assert_int_eq(cubeid_jwt_bundle_to_jwks(b, &j, &len), CUBEID_OK);
	ck_assert_int_eq(cubeid_atomic_write(path, j, len, 0644), CUBEID_OK);
	free(j);
	cubeid_jwt_bundle_free(b);
}

/* The JWKS-aware PicoD verifier follows the cluster's PicoD JWKS file. */
START_TEST(test_picod_verifier_follows_jwks_file)
{
	struct cubeid_picod_verifier_opts o = {0};
	cubeid_picod_verifier *v = NULL;
	char *path = sub("picod.jwks"), *t1 = picod_token(k1, kid1), *t2 = picod_token(k2, kid2);

	o.ns = "default";
	o.sandbox = "sb1";
	ck_assert_int_eq(cubeid_picod_verifier_new(&o, &v), CUBEID_OK);
	ck_assert_int_eq(cubeid_picod_verifier_set_jwks_file(v, path), CUBEID_ERR_NOT_FOUND);
	write_jwks(path, k1, kid1);
	ck_assert_int_eq(cubeid_picod_verifier_set_jwks_file(v, path), CUBEID_OK);
	ck_assert_int_eq(cubeid_picod_verify_token(v, t1, strlen(t1), now, NULL), CUBEID_OK);
	ck_assert_int_eq(cubeid_picod_verify_token(v, t2, strlen(t2), now, NULL),
	                 CUBEID_ERR_JWT_KID);
	/* a node joins / a key rotates in: the file changes, an unknown kid
	 * makes the verifier look at once */
	write_jwks(path, k2, kid2);
	ck_assert_int_eq(cubeid_picod_verify_token(v, t2, strlen(t2), now, NULL), CUBEID_OK);
	/* a broken file keeps the last good keys */
	ck_assert_int_eq(cubeid_atomic_write(path, "{oops", 5, 0644), CUBEID_OK);
	ck_assert_int_eq(cubeid_picod_verify_token(v, t2, strlen(t2), now, NULL), CUBEID_OK);
	/* k1 left: its tokens are refused */
	ck_assert_int_eq(cubeid_picod_verify_token(v, t1, strlen(t1), now, NULL),
	                 CUBEID_ERR_JWT_KID);
	cubeid_picod_verifier_free(v);
	free(t1);
	free(t2);
	free(path);
}
END_TEST

START_TEST(test_node_names)
{
	ck_assert(cubeid_node_name_valid("node-1"));
	ck_assert(cubeid_node_name_valid("a"));
	ck_assert(!cubeid_node_name_valid(""));
	ck_assert(!cubeid_node_name_valid("-a"));
	ck_assert(!cubeid_node_name_valid("a-"));
	ck_assert(!cubeid_node_name_valid("A"));
	ck_assert(cubeid_node_name_valid("ip-10-0-1-23.ec2.internal"));
	ck_assert(!cubeid_node_name_valid("a..b"));
	ck_assert(!cubeid_node_name_valid("a.-b"));
	ck_assert(!cubeid_node_name_valid("a-.b"));
	ck_assert(!cubeid_node_name_valid(".a"));
	ck_assert(!cubeid_node_name_valid("a."));
	ck_assert(!cubeid_node_name_valid("a/b"));
	{
		char longest[CUBEID_NODE_NAME_MAX + 2];

		memset(longest, 'a', sizeof(longest));
		longest[CUBEID_NODE_NAME_MAX] = '\0';
		ck_assert(cubeid_node_name_valid(longest));
		longest[CUBEID_NODE_NAME_MAX] = 'a';
		longest[CUBEID_NODE_NAME_MAX + 1] = '\0';
		ck_assert(!cubeid_node_name_valid(longest));
	}
}
END_TEST

static Suite *
suite(void)
{
	Suite *s = suite_create("cluster");
	TCase *tc = tcase_create("cluster");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_node_publication_verifies);
	tcase_add_test(tc, test_forgeries_are_refused);
	tcase_add_test(tc, test_view_union_rollback_and_expiry);
	tcase_add_test(tc, test_file_store);
	tcase_add_test(tc, test_k8s_configmap_list);
	tcase_add_test(tc, test_node_names);
	tcase_add_test(tc, test_picod_verifier_follows_jwks_file);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
