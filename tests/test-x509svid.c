/*
 * X.509-SVIDs minted by a CA whose key is in a real SoftHSM2 token: every
 * one passes `openssl verify` and our verifier; the leaf follows the spec;
 * serials are 16 random bytes; the TTL is clamped to the CA; rotation
 * jitter stays in [0.4, 0.6] of the lifetime; RSA and EC CA keys;
 * exportable vs resident keys.  Our verifier rejects each kind of bad
 * certificate, crafted with OpenSSL software keys.  X.509 bundle PEM, the
 * chain parser's limits, strict durations.
 */
#include "config.h"

#include <check.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include <cubeid/ca.h>
#include <cubeid/x509svid.h>

#include "tests/harness.h"
#include "tests/x509-test-util.h"

#define TD "example.org"

static struct th_token th;
static cubeid_token *tok;
static char *dir;

static void
setup(void)
{
	th_token_setup(&th);
	tok = th_token_open(&th, 0);
	dir = th_mkdtemp("cubeid-svid");
}

static void
teardown(void)
{
	cubeid_token_free(tok);
	tok = NULL;
	th_rmtree(dir);
	free(dir);
	th_token_teardown(&th);
}

static char *
sub(const char *name)
{
	char *p;

	ck_assert_int_ge(asprintf(&p, "%s/%s", dir, name), 0);
	return p;
}

static cubeid_spiffe_id *
sid(const char *s)
{
	cubeid_spiffe_id *id = NULL;

	ck_assert_int_eq(cubeid_spiffe_id_parse(s, strlen(s), &id, NULL), CUBEID_OK);
	return id;
}

static cubeid_ca *
make_root(cubeid_key_type type, int64_t ttl, const char *d)
{
	struct cubeid_ca_opts o = {0};
	cubeid_ca *ca = NULL;

	o.key_type = type;
	o.ttl = ttl;
	ck_assert_int_eq(cubeid_ca_init(tok, d, TD, &o, &ca), CUBEID_OK);
	return ca;
}

/* A root in dir/root and an intermediate in dir/node, same token. */
static cubeid_ca *
make_intermediate(cubeid_ca *root, cubeid_key_type type)
{
	struct cubeid_ca_opts o = {0};
	char *node = sub("node"), *csr = NULL, *cert = NULL;
	cubeid_ca *inter = NULL;

	o.key_type = type;
	ck_assert_int_eq(cubeid_ca_csr_create(tok, node, TD, &o, &csr), CUBEID_OK);
	ck_assert_int_eq(cubeid_ca_sign_csr(root, csr, strlen(csr), NULL, &cert), CUBEID_OK);
	ck_assert_int_eq(cubeid_ca_install(tok, node, cert, strlen(cert), NULL, &inter), CUBEID_OK);
	free(node);
	free(csr);
	free(cert);
	return inter;
}

/* openssl verify -CAfile root.pem -untrusted intermediate.pem leaf.pem */
static void
assert_openssl_accepts(cubeid_ca *root, cubeid_x509_svid *svid)
{
	char *rp = sub("v-root.pem"), *ip = sub("v-int.pem"), *lp = sub("v-leaf.pem");
	STACK_OF(X509) *chain = cubeid_x509_svid_chain(svid);
	X509 *rc = cubeid_ca_cert(root), *leaf = sk_X509_value(chain, 0);
	int n = sk_X509_num(chain), i;
	X509 *inter[8];

	tu_write_pem(rp, &rc, 1);
	tu_write_pem(lp, &leaf, 1);
	for (i = 1; i < n; i++)
		inter[i - 1] = sk_X509_value(chain, i);
	if (n > 1)
		tu_write_pem(ip, inter, (size_t)n - 1);
	ck_assert_msg(tu_openssl_verify(rp, n > 1 ? ip : NULL, lp) == 0,
	              "openssl verify rejected the SVID");
	free(rp);
	free(ip);
	free(lp);
}

static void
assert_we_accept(cubeid_ca *ca, cubeid_x509_svid *svid, const char *want)
{
	cubeid_spiffe_id *id = NULL;
	const char *why = NULL;
	char *pem = NULL;
	size_t len = 0;

	ck_assert_int_eq(cubeid_x509_svid_chain_pem(svid, &pem, &len), CUBEID_OK);
	ck_assert_msg(cubeid_x509_svid_verify_buf((const uint8_t *)pem, len, cubeid_ca_bundle(ca),
	                                          0, &id, &why) == CUBEID_OK,
	              "our verifier: %s", why);
	ck_assert_str_eq(cubeid_spiffe_id_string(id), want);
	ck_assert_str_eq(why, "ok");
	cubeid_spiffe_id_free(id);
	free(pem);
}

static void
assert_leaf_follows_spec(X509 *leaf, bool rsa)
{
	int crit = -5;
	BASIC_CONSTRAINTS *bc = X509_get_ext_d2i(leaf, NID_basic_constraints, &crit, NULL);
	ASN1_BIT_STRING *ku;
	GENERAL_NAMES *gens;
	int i, uris = 0;

	ck_assert_ptr_nonnull(bc);
	ck_assert_int_eq(crit, 1);
	ck_assert(!bc->ca);
	BASIC_CONSTRAINTS_free(bc);
	ku = X509_get_ext_d2i(leaf, NID_key_usage, &crit, NULL);
	ck_assert_ptr_nonnull(ku);
	ck_assert_int_eq(crit, 1);
	ASN1_BIT_STRING_free(ku);
	ck_assert_uint_eq(X509_get_key_usage(leaf),
	                  rsa ? (KU_DIGITAL_SIGNATURE | KU_KEY_ENCIPHERMENT)
	                      : KU_DIGITAL_SIGNATURE);
	ck_assert_uint_eq(X509_get_extended_key_usage(leaf), XKU_SSL_SERVER | XKU_SSL_CLIENT);
	gens = X509_get_ext_d2i(leaf, NID_subject_alt_name, &crit, NULL);
	ck_assert_ptr_nonnull(gens);
	for (i = 0; i < sk_GENERAL_NAME_num(gens); i++)
		uris += sk_GENERAL_NAME_value(gens, i)->type == GEN_URI;
	GENERAL_NAMES_free(gens);
	ck_assert_int_eq(uris, 1);
	/* X509-SVID 2: without a Subject the URI SAN must be critical */
	ck_assert(X509_NAME_entry_count(X509_get_subject_name(leaf)) > 0 || crit == 1);
	ck_assert_int_eq(ASN1_STRING_length(X509_get0_serialNumber(leaf)), 16);
	ck_assert_int_eq(ASN1_STRING_type(X509_get0_serialNumber(leaf)), V_ASN1_INTEGER);
}

static cubeid_x509_svid *
mint(cubeid_ca *ca, const char *id, int64_t ttl, cubeid_key_type kt, cubeid_svid_key_policy pol)
{
	struct cubeid_svid_req r = {0};
	cubeid_x509_svid *s = NULL;
	const char *dns[] = {"web.example.org", "*.svc.example.org"};
	int rc;

	r.id = sid(id);
	r.dns = dns;
	r.n_dns = 2;
	r.ttl = ttl;
	r.key_type = kt;
	r.policy = pol;
	rc = cubeid_x509_svid_mint(ca, &r, &s);
	ck_assert_msg(rc == CUBEID_OK, "mint: %s", cubeid_strerror(rc));
	cubeid_spiffe_id_free((cubeid_spiffe_id *)r.id);
	return s;
}

START_TEST(test_minted_svid_passes_openssl_and_our_verifier)
{
	char *rd = sub("root");
	cubeid_ca *root = make_root(CUBEID_KEY_EC_P256, 0, rd), *inter = make_intermediate(root, 0);
	cubeid_x509_svid *s = mint(inter, "spiffe://" TD "/ns/a/sa/b", 0, 0, 0);
	X509 *leaf = cubeid_x509_svid_leaf(s);

	ck_assert_int_eq(sk_X509_num(cubeid_x509_svid_chain(s)), 2);
	ck_assert_int_eq(
	        X509_cmp(sk_X509_value(cubeid_x509_svid_chain(s), 1), cubeid_ca_cert(inter)), 0);
	assert_leaf_follows_spec(leaf, false);
	/* 1 h by default (the end rounded up to the second), backdated 60 s */
	ck_assert_int_ge(cubeid_x509_svid_not_after(s) - cubeid_x509_svid_not_before(s), 3600 + 60);
	ck_assert_int_le(cubeid_x509_svid_not_after(s) - cubeid_x509_svid_not_before(s), 3600 + 61);
	assert_openssl_accepts(root, s);
	assert_we_accept(inter, s, "spiffe://" TD "/ns/a/sa/b");
	cubeid_x509_svid_free(s);

	/* straight from the root: the chain is the leaf alone */
	s = mint(root, "spiffe://" TD "/w", 300, CUBEID_KEY_EC_P384, 0);
	ck_assert_int_eq(sk_X509_num(cubeid_x509_svid_chain(s)), 1);
	assert_openssl_accepts(root, s);
	assert_we_accept(root, s, "spiffe://" TD "/w");
	cubeid_x509_svid_free(s);
	cubeid_ca_free(inter);
	cubeid_ca_free(root);
	free(rd);
}
END_TEST

START_TEST(test_rsa_and_ec_ca_keys)
{
	static const cubeid_key_type types[] = {CUBEID_KEY_RSA_2048, CUBEID_KEY_EC_P384};
	size_t i;

	for (i = 0; i < 2; i++) {
		char *rd;
		cubeid_ca *root, *inter;
		cubeid_x509_svid *s;

		ck_assert_int_ge(asprintf(&rd, "%s/root-%zu", dir, i), 0);
		root = make_root(types[i], 0, rd);
		inter = make_intermediate(root, types[i]);
		s = mint(inter, "spiffe://" TD "/rsa-leaf", 0, CUBEID_KEY_RSA_2048, 0);
		assert_leaf_follows_spec(cubeid_x509_svid_leaf(s), true);
		assert_openssl_accepts(root, s);
		assert_we_accept(inter, s, "spiffe://" TD "/rsa-leaf");
		cubeid_x509_svid_free(s);
		s = mint(inter, "spiffe://" TD "/ec-leaf", 0, CUBEID_KEY_EC_P256, 0);
		assert_openssl_accepts(root, s);
		assert_we_accept(inter, s, "spiffe://" TD "/ec-leaf");
		cubeid_x509_svid_free(s);
		cubeid_ca_free(inter);
		cubeid_ca_free(root);
		/* a fresh node dir for the next round */
		{
			char *node = sub("node");

			th_rmtree(node);
			free(node);
		}
		free(rd);
	}
}
END_TEST

START_TEST(test_serial_is_16_random_bytes_and_differs)
{
	char *rd = sub("root");
	cubeid_ca *root = make_root(0, 0, rd);
	ASN1_INTEGER *seen[24];
	size_t i, j;

	for (i = 0; i < 24; i++) {
		cubeid_x509_svid *s = mint(root, "spiffe://" TD "/s", 60, 0, 0);
		const ASN1_INTEGER *sn = X509_get0_serialNumber(cubeid_x509_svid_leaf(s));

		ck_assert_int_eq(ASN1_STRING_length(sn), 16);
		ck_assert_int_eq(ASN1_STRING_type(sn), V_ASN1_INTEGER); /* positive */
		ck_assert_uint_ne(ASN1_STRING_get0_data(sn)[0], 0);
		seen[i] = ASN1_INTEGER_dup(sn);
		for (j = 0; j < i; j++)
			ck_assert_int_ne(ASN1_INTEGER_cmp(seen[i], seen[j]), 0);
		cubeid_x509_svid_free(s);
	}
	for (i = 0; i < 24; i++)
		ASN1_INTEGER_free(seen[i]);
	cubeid_ca_free(root);
	free(rd);
}
END_TEST

/* notAfter has whole seconds; truncated, a 2 s SVID minted at x.9 s lived
 * 1.1 s, and the agent's rotation at half of that left its delivery and
 * the TLS loaders under 0.1 s on a busy machine (tests/tls-rotation.sh saw
 * expired certificates).  An SVID lives at least its TTL from the mint. */
START_TEST(test_svid_lives_at_least_its_ttl)
{
	char *rd = sub("root");
	cubeid_ca *root = make_root(0, 0, rd);
	int i;

	for (i = 0; i < 5; i++) {
		struct timespec ts;
		int64_t before_ms;
		cubeid_x509_svid *s;

		clock_gettime(CLOCK_REALTIME, &ts);
		before_ms = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
		s = mint(root, "spiffe://" TD "/short", 2, 0, 0);
		ck_assert_msg(cubeid_x509_svid_not_after(s) * 1000 >= before_ms + 2000,
		              "a 2 s SVID minted at %lld ms ends at %lld s", (long long)before_ms,
		              (long long)cubeid_x509_svid_not_after(s));
		clock_gettime(CLOCK_REALTIME, &ts);
		/* and not a whole second more */
		ck_assert_int_le(cubeid_x509_svid_not_after(s) * 1000,
		                 (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000 + 3000);
		cubeid_x509_svid_free(s);
		poll(NULL, 0, 170); /* another fraction of a second */
	}
	cubeid_ca_free(root);
	free(rd);
}
END_TEST

START_TEST(test_ttl_is_clamped_to_the_ca)
{
	char *rd = sub("root");
	cubeid_ca *root = make_root(0, 2 * 3600, rd);
	struct cubeid_svid_req r = {0};
	cubeid_x509_svid *s = mint(root, "spiffe://" TD "/long", 10 * 3600, 0, 0);

	ck_assert_int_eq(ASN1_TIME_compare(X509_get0_notAfter(cubeid_x509_svid_leaf(s)),
	                                   X509_get0_notAfter(cubeid_ca_cert(root))),
	                 0);
	assert_openssl_accepts(root, s);
	cubeid_x509_svid_free(s);
	s = NULL;
	/* once the CA has expired nothing is minted */
	r.id = sid("spiffe://" TD "/late");
	r.now = time(NULL) + 3 * 3600;
	ck_assert_int_eq(cubeid_x509_svid_mint(root, &r, &s), CUBEID_ERR_CA);
	ck_assert_ptr_null(s);
	/* nor for another trust domain */
	cubeid_spiffe_id_free((cubeid_spiffe_id *)r.id);
	r.id = sid("spiffe://other.org/x");
	r.now = 0;
	ck_assert_int_eq(cubeid_x509_svid_mint(root, &r, &s), CUBEID_ERR_SPIFFE_ID);
	cubeid_spiffe_id_free((cubeid_spiffe_id *)r.id);
	/* nor for the trust domain's own ID, which names the CA */
	r.id = sid("spiffe://" TD);
	ck_assert_int_eq(cubeid_x509_svid_mint(root, &r, &s), CUBEID_ERR_SPIFFE_ID);
	ck_assert_ptr_null(s);
	cubeid_spiffe_id_free((cubeid_spiffe_id *)r.id);
	cubeid_ca_free(root);
	free(rd);
}
END_TEST

START_TEST(test_rotation_jitter_within_bounds)
{
	const int64_t nb = 1700000000, life = 3600 * 1000;
	int64_t t, lo = INT64_MAX, hi = INT64_MIN;
	int i, below = 0, above = 0;

	for (i = 0; i < 20000; i++) {
		ck_assert_int_eq(cubeid_rotation_time(nb, nb + life, &t), CUBEID_OK);
		ck_assert_int_ge(t - nb, life * 4 / 10);
		ck_assert_int_le(t - nb, life * 6 / 10);
		lo = t < lo ? t : lo;
		hi = t > hi ? t : hi;
		below += t - nb < life * 45 / 100;
		above += t - nb > life * 55 / 100;
	}
	/* the jitter is real: both tails are hit (each has p = 1/4 per draw) */
	ck_assert_int_gt(below, 0);
	ck_assert_int_gt(above, 0);
	ck_assert_int_lt(lo, hi);
	ck_assert_int_eq(cubeid_rotation_time(nb, nb, &t), CUBEID_ERR_INVALID_ARG);
}
END_TEST

START_TEST(test_exportable_key_policy)
{
	char *rd = sub("root"), *out = sub("out"), *p, *pem = NULL;
	cubeid_ca *root = make_root(0, 0, rd);
	cubeid_x509_svid *s = mint(root, "spiffe://" TD "/exp", 0, 0, CUBEID_SVID_KEY_EXPORTABLE);
	EVP_PKEY *k;
	BIO *bio;
	struct stat st;
	size_t len = 0;
	uint8_t *der = NULL;

	ck_assert(cubeid_key_is_exportable(cubeid_x509_svid_key(s)));
	ck_assert(!cubeid_key_is_persistent(cubeid_x509_svid_key(s)));
	ck_assert_int_eq(cubeid_x509_svid_key_pkcs8_pem(s, &pem, &len), CUBEID_OK);
	ck_assert_ptr_nonnull(strstr(pem, "-----BEGIN PRIVATE KEY-----"));
	bio = BIO_new_mem_buf(pem, (int)len);
	k = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
	ck_assert_ptr_nonnull(k);
	ck_assert_int_eq(X509_check_private_key(cubeid_x509_svid_leaf(s), k), 1);
	EVP_PKEY_free(k);
	BIO_free(bio);
	free(pem);
	ck_assert_int_eq(cubeid_x509_svid_key_pkcs8_der(s, &der, &len), CUBEID_OK);
	ck_assert_uint_gt(len, 0);
	free(der);
	/* the three files, atomically, with their modes */
	ck_assert_int_eq(cubeid_x509_svid_write_files(s, cubeid_ca_bundle(root), out), CUBEID_OK);
	p = sub("out/svid_key.pem");
	ck_assert_int_eq(stat(p, &st), 0);
	ck_assert_uint_eq(st.st_mode & 0777, 0600);
	free(p);
	p = sub("out/svid.pem");
	ck_assert_int_eq(stat(p, &st), 0);
	ck_assert_uint_eq(st.st_mode & 0777, 0644);
	{
		char *bp = sub("out/svid_bundle.pem");
		cubeid_x509_bundle *b = NULL;
		STACK_OF(X509) *chain = NULL;
		cubeid_spiffe_id *id = NULL;
		const char *why;

		ck_assert_int_eq(cubeid_x509_bundle_read_file(TD, bp, &b), CUBEID_OK);
		ck_assert_int_eq(cubeid_x509_chain_read_file(p, CUBEID_X509_CHAIN_MAX, 16, &chain),
		                 CUBEID_OK);
		ck_assert_int_eq(cubeid_x509_svid_verify(chain, b, 0, &id, &why), CUBEID_OK);
		cubeid_spiffe_id_free(id);
		sk_X509_pop_free(chain, X509_free);
		cubeid_x509_bundle_free(b);
		free(bp);
	}
	free(p);
	cubeid_x509_svid_free(s);
	cubeid_ca_free(root);
	free(rd);
	free(out);
}
END_TEST

START_TEST(test_resident_key_policy)
{
	char *rd = sub("root"), *pem = NULL, *uri = NULL;
	cubeid_ca *root = make_root(0, 0, rd);
	struct cubeid_svid_req r = {0};
	cubeid_x509_svid *s = NULL;
	cubeid_key *found = NULL;
	EVP_PKEY *evp = NULL, *priv = NULL;
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	unsigned char sig[128];
	size_t sig_len = sizeof(sig), len = 0;
	const unsigned char msg[] = "resident";

	r.id = sid("spiffe://" TD "/resident");
	r.policy = CUBEID_SVID_KEY_RESIDENT;
	r.persistent = true;
	ck_assert_int_eq(cubeid_x509_svid_mint(root, &r, &s), CUBEID_OK);
	ck_assert(!cubeid_key_is_exportable(cubeid_x509_svid_key(s)));
	ck_assert_int_eq(cubeid_x509_svid_key_pkcs8_pem(s, &pem, &len), CUBEID_ERR_P11_SENSITIVE);
	ck_assert_ptr_null(pem);
	ck_assert_int_eq(cubeid_key_export_private(cubeid_x509_svid_key(s), &priv),
	                 CUBEID_ERR_P11_SENSITIVE);
	ck_assert_int_eq(cubeid_x509_svid_key_uri(s, &uri), CUBEID_OK);
	ck_assert_int_eq(strncmp(uri, "pkcs11:", 7), 0);
	/* the URI finds the key, which signs for the leaf's public key */
	ck_assert_int_eq(cubeid_key_find_uri(tok, uri, &found), CUBEID_OK);
	ck_assert_int_eq(cubeid_key_evp(found, &evp), CUBEID_OK);
	ck_assert_int_eq(EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, evp), 1);
	ck_assert_int_eq(EVP_DigestSign(md, sig, &sig_len, msg, sizeof(msg)), 1);
	EVP_MD_CTX_reset(md);
	ck_assert_int_eq(EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL,
	                                      X509_get0_pubkey(cubeid_x509_svid_leaf(s))),
	                 1);
	ck_assert_int_eq(EVP_DigestVerify(md, sig, sig_len, msg, sizeof(msg)), 1);
	/* no key file is written for it */
	{
		char *out = sub("out"), *kp = sub("out/svid_key.pem");

		ck_assert_int_eq(cubeid_x509_svid_write_files(s, cubeid_ca_bundle(root), out),
		                 CUBEID_OK);
		ck_assert_int_ne(access(kp, F_OK), 0);
		free(out);
		free(kp);
	}
	ck_assert_int_eq(cubeid_key_delete(found), CUBEID_OK);
	EVP_MD_CTX_free(md);
	EVP_PKEY_free(evp);
	cubeid_key_free(found);
	cubeid_spiffe_id_free((cubeid_spiffe_id *)r.id);
	cubeid_x509_svid_free(s);
	cubeid_ca_free(root);
	free(uri);
	free(rd);
}
END_TEST

/* ---- rejections, with certificates made by OpenSSL software keys ----- */

static EVP_PKEY *rk, *ik, *lk;
static X509 *soft_root, *soft_int;
static cubeid_x509_bundle *soft_bundle;

static void
soft_setup(void)
{
	struct tu_spec r = {0}, i = {0};

	rk = tu_ec_key();
	ik = tu_ec_key();
	lk = tu_ec_key();
	r.key = r.signer = rk;
	r.bc = "critical,CA:TRUE";
	r.ku = "critical,keyCertSign,cRLSign";
	r.san = "URI:spiffe://" TD;
	r.cn = "soft root";
	r.nb = -3600;
	r.na = 86400;
	soft_root = tu_cert(&r);
	i = r;
	i.key = ik;
	i.signer = rk;
	i.issuer = soft_root;
	i.cn = "soft intermediate";
	soft_int = tu_cert(&i);
	ck_assert_int_eq(cubeid_x509_bundle_new(TD, &soft_bundle), CUBEID_OK);
	ck_assert_int_eq(cubeid_x509_bundle_add(soft_bundle, soft_root), CUBEID_OK);
}

static void
soft_teardown(void)
{
	cubeid_x509_bundle_free(soft_bundle);
	X509_free(soft_root);
	X509_free(soft_int);
	EVP_PKEY_free(rk);
	EVP_PKEY_free(ik);
	EVP_PKEY_free(lk);
}

static struct tu_spec
good_leaf(void)
{
	struct tu_spec s = {0};

	s.key = lk;
	s.signer = ik;
	s.issuer = soft_int;
	s.bc = "critical,CA:FALSE";
	s.ku = "critical,digitalSignature";
	s.eku = "serverAuth,clientAuth";
	s.san = "URI:spiffe://" TD "/w,DNS:w.example.org";
	s.nb = -60;
	s.na = 3600;
	return s;
}

static int
verify2(X509 *leaf, X509 *inter, const char **why)
{
	STACK_OF(X509) *chain = sk_X509_new_null();
	cubeid_spiffe_id *id = NULL;
	int rc;

	sk_X509_push(chain, leaf);
	if (inter != NULL)
		sk_X509_push(chain, inter);
	rc = cubeid_x509_svid_verify(chain, soft_bundle, 0, &id, why);
	ck_assert(rc == CUBEID_OK ? id != NULL : id == NULL);
	cubeid_spiffe_id_free(id);
	sk_X509_free(chain);
	return rc;
}

static void
expect_leaf(struct tu_spec s, int want, const char *reason_part)
{
	X509 *leaf = tu_cert(&s);
	const char *why = NULL;
	int rc = verify2(leaf, soft_int, &why);

	ck_assert_msg(rc == want, "want %d got %d (%s)", want, rc, why);
	ck_assert_ptr_nonnull(why);
	ck_assert_msg(strstr(why, reason_part) != NULL, "reason '%s' lacks '%s'", why, reason_part);
	X509_free(leaf);
}

START_TEST(test_crafted_good_leaf_is_accepted)
{
	expect_leaf(good_leaf(), CUBEID_OK, "ok");
}
END_TEST

START_TEST(test_reject_leaf_that_is_a_ca)
{
	struct tu_spec s = good_leaf();

	s.bc = "critical,CA:TRUE";
	expect_leaf(s, CUBEID_ERR_X509_SVID, "CA");
}
END_TEST

START_TEST(test_reject_leaf_with_keycertsign)
{
	struct tu_spec s = good_leaf();

	s.ku = "critical,digitalSignature,keyCertSign";
	expect_leaf(s, CUBEID_ERR_X509_SVID, "keyCertSign");
}
END_TEST

START_TEST(test_reject_leaf_with_crlsign)
{
	struct tu_spec s = good_leaf();

	s.ku = "critical,digitalSignature,cRLSign";
	expect_leaf(s, CUBEID_ERR_X509_SVID, "cRLSign");
}
END_TEST

START_TEST(test_reject_leaf_without_digital_signature)
{
	struct tu_spec s = good_leaf();

	s.ku = "critical,keyAgreement";
	expect_leaf(s, CUBEID_ERR_X509_SVID, "digitalSignature");
	s.ku = NULL;
	expect_leaf(s, CUBEID_ERR_X509_SVID, "key usage");
}
END_TEST

START_TEST(test_reject_leaf_without_uri_san)
{
	struct tu_spec s = good_leaf();

	s.san = "DNS:w.example.org";
	expect_leaf(s, CUBEID_ERR_X509_SVID, "no URI SAN");
	s.san = NULL;
	expect_leaf(s, CUBEID_ERR_X509_SVID, "no URI SAN");
}
END_TEST

START_TEST(test_reject_leaf_with_two_uri_sans)
{
	struct tu_spec s = good_leaf();

	s.san = "URI:spiffe://" TD "/a,URI:spiffe://" TD "/b";
	expect_leaf(s, CUBEID_ERR_X509_SVID, "more than one URI SAN");
}
END_TEST

START_TEST(test_reject_leaf_with_trust_domain_id)
{
	struct tu_spec s = good_leaf();

	s.san = "URI:spiffe://" TD;
	expect_leaf(s, CUBEID_ERR_X509_SVID, "no path");
}
END_TEST

START_TEST(test_reject_leaf_with_non_spiffe_uri)
{
	struct tu_spec s = good_leaf();

	s.san = "URI:https://" TD "/w";
	expect_leaf(s, CUBEID_ERR_X509_SVID, "not a SPIFFE ID");
	s.san = "URI:spiffe://" TD "/a/../b";
	expect_leaf(s, CUBEID_ERR_X509_SVID, "not a SPIFFE ID");
}
END_TEST

START_TEST(test_reject_leaf_outside_validity)
{
	struct tu_spec s = good_leaf();

	s.nb = -7200;
	s.na = -3600;
	expect_leaf(s, CUBEID_ERR_X509_EXPIRED, "expired");
	s.nb = 3600;
	s.na = 7200;
	expect_leaf(s, CUBEID_ERR_X509_EXPIRED, "not yet valid");
}
END_TEST

START_TEST(test_reject_leaf_of_other_trust_domain)
{
	struct tu_spec s = good_leaf();

	s.san = "URI:spiffe://other.org/w";
	expect_leaf(s, CUBEID_ERR_X509_SVID, "trust domain");
}
END_TEST

START_TEST(test_reject_bad_intermediates)
{
	struct tu_spec i = {0}, l = good_leaf();
	X509 *bad_int, *leaf;
	const char *why = NULL;

	i.key = ik;
	i.signer = rk;
	i.issuer = soft_root;
	i.nb = -3600;
	i.na = 86400;
	/* not a CA */
	i.bc = "critical,CA:FALSE";
	i.ku = "critical,digitalSignature,keyCertSign";
	i.san = "URI:spiffe://" TD;
	bad_int = tu_cert(&i);
	l.issuer = bad_int;
	leaf = tu_cert(&l);
	ck_assert_int_eq(verify2(leaf, bad_int, &why), CUBEID_ERR_X509_SVID);
	ck_assert_ptr_nonnull(strstr(why, "not a CA"));
	X509_free(leaf);
	X509_free(bad_int);
	/* a SPIFFE ID with a path */
	i.bc = "critical,CA:TRUE";
	i.san = "URI:spiffe://" TD "/intermediate";
	bad_int = tu_cert(&i);
	l.issuer = bad_int;
	leaf = tu_cert(&l);
	ck_assert_int_eq(verify2(leaf, bad_int, &why), CUBEID_ERR_X509_SVID);
	ck_assert_ptr_nonnull(strstr(why, "path"));
	X509_free(leaf);
	X509_free(bad_int);
	/* a URI that is no SPIFFE ID */
	i.san = "URI:https://example.org";
	bad_int = tu_cert(&i);
	l.issuer = bad_int;
	leaf = tu_cert(&l);
	ck_assert_int_eq(verify2(leaf, bad_int, &why), CUBEID_ERR_X509_SVID);
	X509_free(leaf);
	X509_free(bad_int);
	/* no URI at all is allowed */
	i.san = NULL;
	bad_int = tu_cert(&i);
	l.issuer = bad_int;
	leaf = tu_cert(&l);
	ck_assert_int_eq(verify2(leaf, bad_int, &why), CUBEID_OK);
	X509_free(leaf);
	X509_free(bad_int);
}
END_TEST

START_TEST(test_reject_chain_to_another_root)
{
	EVP_PKEY *ok = tu_ec_key();
	struct tu_spec r = {0}, l = good_leaf();
	X509 *other, *leaf;
	const char *why = NULL;

	r.key = r.signer = ok;
	r.bc = "critical,CA:TRUE";
	r.ku = "critical,keyCertSign,cRLSign";
	r.san = "URI:spiffe://" TD;
	r.cn = "soft intermediate"; /* same name as the real one */
	r.nb = -60;
	r.na = 3600;
	other = tu_cert(&r);
	l.signer = ok;
	l.issuer = other;
	leaf = tu_cert(&l);
	ck_assert_int_eq(verify2(leaf, other, &why), CUBEID_ERR_X509_VERIFY);
	ck_assert_int_eq(verify2(leaf, NULL, &why), CUBEID_ERR_X509_VERIFY);
	X509_free(leaf);
	X509_free(other);
	EVP_PKEY_free(ok);
}
END_TEST

/* ---- bundles and the chain parser ------------------------------------ */

START_TEST(test_bundle_pem_round_trip_and_limits)
{
	cubeid_x509_bundle *b = NULL, *back = NULL;
	char *pem = NULL, *big;
	size_t len = 0, i, one;
	STACK_OF(X509) *sk = NULL;
	unsigned char *der = NULL, *two;
	int dlen;

	ck_assert_int_eq(cubeid_x509_bundle_new(TD, &b), CUBEID_OK);
	ck_assert_int_eq(cubeid_x509_bundle_add(b, soft_root), CUBEID_OK);
	ck_assert_int_eq(cubeid_x509_bundle_add(b, soft_root), CUBEID_OK); /* deduplicated */
	ck_assert_int_eq(cubeid_x509_bundle_add(b, soft_int), CUBEID_OK);
	ck_assert_uint_eq(cubeid_x509_bundle_count(b), 2);
	{
		struct tu_spec ls = good_leaf();
		X509 *leaf = tu_cert(&ls);

		/* a leaf is no authority */
		ck_assert_int_eq(cubeid_x509_bundle_add(b, leaf), CUBEID_ERR_X509);
		X509_free(leaf);
	}
	ck_assert_int_eq(cubeid_x509_bundle_to_pem(b, &pem, &len), CUBEID_OK);
	ck_assert_int_eq(cubeid_x509_bundle_parse(TD, (uint8_t *)pem, len, &back), CUBEID_OK);
	ck_assert_uint_eq(cubeid_x509_bundle_count(back), 2);
	ck_assert_int_eq(X509_cmp(cubeid_x509_bundle_at(back, 1), soft_int), 0);
	ck_assert_str_eq(cubeid_x509_bundle_trust_domain(back), TD);
	cubeid_x509_bundle_free(back);
	back = NULL;
	ck_assert_int_eq(cubeid_x509_bundle_parse("Bad TD", (uint8_t *)pem, len, &back),
	                 CUBEID_ERR_SPIFFE_ID);
	/* a mangled block does not hide the rest */
	one = (size_t)(strstr(pem + 10, "-----BEGIN") - pem);
	ck_assert_int_ge(asprintf(&big, "%.*s-----B%s", (int)one, pem, pem + one), 0);
	ck_assert_int_eq(cubeid_x509_chain_parse((uint8_t *)big, strlen(big), 1 << 20, 4, &sk),
	                 CUBEID_ERR_X509);
	free(big);
	/* more than CUBEID_X509_BUNDLE_CERTS certificates */
	one = (size_t)(strstr(pem + 10, "-----BEGIN") - pem);
	big = malloc(one * (CUBEID_X509_BUNDLE_CERTS + 1) + 1);
	for (i = 0; i <= CUBEID_X509_BUNDLE_CERTS; i++)
		memcpy(big + i * one, pem, one);
	big[one * (CUBEID_X509_BUNDLE_CERTS + 1)] = '\0';
	ck_assert_int_eq(cubeid_x509_chain_parse((uint8_t *)big, strlen(big), 1 << 20,
	                                         CUBEID_X509_BUNDLE_CERTS, &sk),
	                 CUBEID_ERR_TOO_LARGE);
	/* more bytes than allowed, checked before parsing */
	ck_assert_int_eq(cubeid_x509_chain_parse((uint8_t *)big, strlen(big), 100, 4, &sk),
	                 CUBEID_ERR_TOO_LARGE);
	ck_assert_ptr_null(sk);
	free(big);
	/* junk, a private key block, PEM headers: refused */
	ck_assert_int_eq(cubeid_x509_chain_parse((uint8_t *)"junk", 4, 100, 4, &sk),
	                 CUBEID_ERR_X509);
	{
		const char *k = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";

		ck_assert_int_eq(cubeid_x509_chain_parse((uint8_t *)k, strlen(k), 1000, 4, &sk),
		                 CUBEID_ERR_X509);
	}
	/* concatenated DER (the Workload API form) */
	dlen = i2d_X509(soft_root, &der);
	two = malloc((size_t)dlen * 2);
	memcpy(two, der, (size_t)dlen);
	memcpy(two + dlen, der, (size_t)dlen);
	ck_assert_int_eq(cubeid_x509_chain_parse(two, (size_t)dlen * 2, 1 << 20, 4, &sk),
	                 CUBEID_OK);
	ck_assert_int_eq(sk_X509_num(sk), 2);
	sk_X509_pop_free(sk, X509_free);
	sk = NULL;
	ck_assert_int_eq(cubeid_x509_chain_parse(two, (size_t)dlen * 2 - 1, 1 << 20, 4, &sk),
	                 CUBEID_ERR_X509);
	free(two);
	OPENSSL_free(der);
	free(pem);
	cubeid_x509_bundle_free(b);
}
END_TEST

START_TEST(test_duration_parse_is_strict)
{
	static const struct {
		const char *s;
		int64_t want; /* -1: rejected */
	} t[] = {
	        {"1h", 3600},
	        {"5m", 300},
	        {"30s", 30},
	        {"90", 90},
	        {"7d", 604800},
	        {"", -1},
	        {"h", -1},
	        {"1.5h", -1},
	        {"-1h", -1},
	        {"+1h", -1},
	        {" 1h", -1},
	        {"1h ", -1},
	        {"1hh", -1},
	        {"1h30m", -1},
	        {"0", -1},
	        {"0s", -1},
	        {"1H", -1},
	        {"1w", -1},
	        {"99999999999999", -1},
	        {"3651d", -1},
	        {"3650d", 3650LL * 86400},
	};
	size_t i;

	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		int64_t v = 42;
		int rc = cubeid_duration_parse(t[i].s, &v);

		if (t[i].want < 0) {
			ck_assert_msg(rc == CUBEID_ERR_PARSE, "'%s' accepted", t[i].s);
			ck_assert_int_eq(v, 0);
		} else {
			ck_assert_msg(rc == CUBEID_OK, "'%s' refused", t[i].s);
			ck_assert_int_eq(v, t[i].want);
		}
	}
}
END_TEST

static Suite *
suite(void)
{
	Suite *s = suite_create("x509svid");
	TCase *tc = tcase_create("token");
	TCase *soft = tcase_create("verify");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 240);
	tcase_add_test(tc, test_minted_svid_passes_openssl_and_our_verifier);
	tcase_add_test(tc, test_rsa_and_ec_ca_keys);
	tcase_add_test(tc, test_serial_is_16_random_bytes_and_differs);
	tcase_add_test(tc, test_ttl_is_clamped_to_the_ca);
	tcase_add_test(tc, test_svid_lives_at_least_its_ttl);
	tcase_add_test(tc, test_exportable_key_policy);
	tcase_add_test(tc, test_resident_key_policy);
	suite_add_tcase(s, tc);

	tcase_add_checked_fixture(soft, soft_setup, soft_teardown);
	tcase_add_test(soft, test_crafted_good_leaf_is_accepted);
	tcase_add_test(soft, test_reject_leaf_that_is_a_ca);
	tcase_add_test(soft, test_reject_leaf_with_keycertsign);
	tcase_add_test(soft, test_reject_leaf_with_crlsign);
	tcase_add_test(soft, test_reject_leaf_without_digital_signature);
	tcase_add_test(soft, test_reject_leaf_without_uri_san);
	tcase_add_test(soft, test_reject_leaf_with_two_uri_sans);
	tcase_add_test(soft, test_reject_leaf_with_non_spiffe_uri);
	tcase_add_test(soft, test_reject_leaf_with_trust_domain_id);
	tcase_add_test(soft, test_reject_leaf_outside_validity);
	tcase_add_test(soft, test_reject_leaf_of_other_trust_domain);
	tcase_add_test(soft, test_reject_bad_intermediates);
	tcase_add_test(soft, test_reject_chain_to_another_root);
	tcase_add_test(soft, test_bundle_pem_round_trip_and_limits);
	tcase_add_test(soft, test_rotation_jitter_within_bounds);
	tcase_add_test(soft, test_duration_parse_is_strict);
	suite_add_tcase(s, soft);
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
	return failed == 0 ? 0 : 1;
}
