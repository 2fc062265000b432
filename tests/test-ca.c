/*
 * The CA chain in real SoftHSM2 tokens: a root created in one token and
 * reloaded from the state directory; a node intermediate enrolled from a
 * second token (key generated there, CSR, signed by the root in the first
 * token, installed); what install and sign refuse.
 */
#include "config.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include <cubeid/ca.h>
#include <cubeid/x509svid.h>

#include "tests/harness.h"
#include "tests/x509-test-util.h"

#define TD "example.org"

static struct th_token th1, th2;
static cubeid_token *tok1, *tok2;
static char *dir;

static void
setup(void)
{
	tu_two_tokens_setup(&th1, &th2);
	tok1 = th_token_open(&th1, 0);
	tok2 = th_token_open(&th2, 0);
	dir = th_mkdtemp("cubeid-ca");
}

static void
teardown(void)
{
	cubeid_token_free(tok1);
	cubeid_token_free(tok2);
	tok1 = tok2 = NULL;
	th_rmtree(dir);
	free(dir);
	tu_two_tokens_teardown(&th1, &th2);
}

static char *
sub(const char *name)
{
	char *p;

	ck_assert_int_ge(asprintf(&p, "%s/%s", dir, name), 0);
	return p;
}

static unsigned
file_mode(const char *d, const char *name)
{
	char *p;
	struct stat st;

	ck_assert_int_ge(asprintf(&p, "%s/%s", d, name), 0);
	ck_assert_msg(stat(p, &st) == 0, "%s missing", p);
	free(p);
	return st.st_mode & 07777;
}

static char *
uri_san(X509 *x)
{
	GENERAL_NAMES *gens = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
	char *s = NULL;
	int i, n = 0;

	ck_assert_ptr_nonnull(gens);
	for (i = 0; i < sk_GENERAL_NAME_num(gens); i++) {
		GENERAL_NAME *gn = sk_GENERAL_NAME_value(gens, i);

		if (gn->type == GEN_URI) {
			n++;
			s = strndup((const char *)ASN1_STRING_get0_data(
			                    gn->d.uniformResourceIdentifier),
			            (size_t)ASN1_STRING_length(gn->d.uniformResourceIdentifier));
		}
	}
	GENERAL_NAMES_free(gens);
	ck_assert_int_eq(n, 1);
	return s;
}

static void
assert_ca_cert(X509 *x, long pathlen)
{
	int crit = 0;
	BASIC_CONSTRAINTS *bc = X509_get_ext_d2i(x, NID_basic_constraints, &crit, NULL);
	ASN1_BIT_STRING *ku;
	char *uri = uri_san(x);

	ck_assert_ptr_nonnull(bc);
	ck_assert_int_eq(crit, 1);
	ck_assert(bc->ca);
	if (pathlen >= 0) {
		ck_assert_ptr_nonnull(bc->pathlen);
		ck_assert_int_eq(ASN1_INTEGER_get(bc->pathlen), pathlen);
	}
	BASIC_CONSTRAINTS_free(bc);
	ku = X509_get_ext_d2i(x, NID_key_usage, &crit, NULL);
	ck_assert_ptr_nonnull(ku);
	ck_assert_int_eq(crit, 1);
	ASN1_BIT_STRING_free(ku);
	ck_assert_uint_eq(X509_get_key_usage(x), KU_KEY_CERT_SIGN | KU_CRL_SIGN);
	ck_assert_str_eq(uri, "spiffe://" TD);
	free(uri);
	ck_assert_ptr_nonnull(X509_get0_subject_key_id(x));
	ck_assert_ptr_nonnull(X509_get0_authority_key_id(x));
	ck_assert_int_eq(ASN1_STRING_length(X509_get0_serialNumber(x)), 16);
}

START_TEST(test_root_init_then_reload_from_state_dir)
{
	cubeid_ca *ca = NULL, *again = NULL, *ens = NULL;
	EVP_PKEY *priv = NULL;
	const ASN1_OCTET_STRING *skid;
	const uint8_t *id;
	size_t id_len;
	int64_t nb, na;
	struct stat st;

	ck_assert_int_eq(cubeid_ca_init(tok1, dir, TD, NULL, &ca), CUBEID_OK);
	ck_assert(cubeid_ca_is_root(ca));
	ck_assert_str_eq(cubeid_ca_trust_domain(ca), TD);
	assert_ca_cert(cubeid_ca_cert(ca), 1);
	ck_assert_int_eq(X509_check_issued(cubeid_ca_cert(ca), cubeid_ca_cert(ca)), X509_V_OK);
	ck_assert_int_eq(X509_verify(cubeid_ca_cert(ca), X509_get0_pubkey(cubeid_ca_cert(ca))), 1);
	/* the key: in the token, persistent, never extractable, CKA_ID = SKID */
	ck_assert(cubeid_key_is_persistent(cubeid_ca_key(ca)));
	ck_assert(!cubeid_key_is_exportable(cubeid_ca_key(ca)));
	ck_assert_int_eq(cubeid_key_export_private(cubeid_ca_key(ca), &priv),
	                 CUBEID_ERR_P11_SENSITIVE);
	ck_assert_str_eq(cubeid_key_label(cubeid_ca_key(ca)), "cubeid-root-" TD);
	skid = X509_get0_subject_key_id(cubeid_ca_cert(ca));
	id = cubeid_key_id(cubeid_ca_key(ca), &id_len);
	ck_assert_uint_eq(id_len, (size_t)ASN1_STRING_length(skid));
	ck_assert_mem_eq(id, ASN1_STRING_get0_data(skid), id_len);
	/* default lifetime: one year (plus the backdating) */
	{
		struct tm tm;

		ck_assert_int_eq(ASN1_TIME_to_tm(X509_get0_notBefore(cubeid_ca_cert(ca)), &tm), 1);
		nb = timegm(&tm);
		ck_assert_int_eq(ASN1_TIME_to_tm(X509_get0_notAfter(cubeid_ca_cert(ca)), &tm), 1);
		na = timegm(&tm);
		ck_assert_int_eq(na - nb, CUBEID_CA_ROOT_TTL_DEFAULT + 300);
	}
	/* files and modes */
	ck_assert_int_eq(stat(dir, &st), 0);
	ck_assert_uint_eq(st.st_mode & 0777, 0700);
	ck_assert_uint_eq(file_mode(dir, "ca.conf"), 0600);
	ck_assert_uint_eq(file_mode(dir, "ca.pem"), 0644);
	ck_assert_uint_eq(file_mode(dir, "bundle.pem"), 0644);

	/* a fresh token session reloads the same CA */
	cubeid_token_free(tok1);
	tok1 = th_token_open(&th1, 0);
	ck_assert_int_eq(cubeid_ca_load(tok1, dir, &again), CUBEID_OK);
	ck_assert(cubeid_ca_is_root(again));
	ck_assert_int_eq(X509_cmp(cubeid_ca_cert(ca), cubeid_ca_cert(again)), 0);
	ck_assert_uint_eq(cubeid_x509_bundle_count(cubeid_ca_bundle(again)), 1);
	ck_assert_int_eq(cubeid_ca_init(tok1, dir, TD, NULL, NULL), CUBEID_ERR_EXISTS);
	ck_assert_int_eq(cubeid_ca_ensure(tok1, dir, TD, NULL, &ens), CUBEID_OK);
	ck_assert_int_eq(X509_cmp(cubeid_ca_cert(ca), cubeid_ca_cert(ens)), 0);
	cubeid_ca_free(ens);
	ens = NULL;
	ck_assert_int_eq(cubeid_ca_ensure(tok1, dir, "other.org", NULL, &ens), CUBEID_ERR_CA);
	ck_assert_ptr_null(ens);
	/* the key cannot be found in a token that does not hold it */
	ck_assert_int_eq(cubeid_ca_load(tok2, dir, &ens), CUBEID_ERR_CA);
	cubeid_ca_free(ca);
	cubeid_ca_free(again);
}
END_TEST

START_TEST(test_ensure_creates_a_root_on_first_use)
{
	cubeid_ca *ca = NULL, *b = NULL;
	char *d = sub("fresh");

	ck_assert_int_eq(cubeid_ca_load(tok1, d, &ca), CUBEID_ERR_NOT_FOUND);
	ck_assert_int_eq(cubeid_ca_ensure(tok1, d, TD, NULL, &ca), CUBEID_OK);
	ck_assert(cubeid_ca_is_root(ca));
	ck_assert_int_eq(cubeid_ca_ensure(tok1, d, TD, NULL, &b), CUBEID_OK);
	ck_assert_int_eq(X509_cmp(cubeid_ca_cert(ca), cubeid_ca_cert(b)), 0);
	cubeid_ca_free(ca);
	cubeid_ca_free(b);
	free(d);
}
END_TEST

START_TEST(test_state_dir_from_environment)
{
	setenv(CUBEID_ENV_STATE_DIR, "/tmp/x-state", 1);
	ck_assert_str_eq(cubeid_state_dir(NULL), "/tmp/x-state");
	ck_assert_str_eq(cubeid_state_dir("/a"), "/a");
	unsetenv(CUBEID_ENV_STATE_DIR);
	ck_assert_str_eq(cubeid_state_dir(NULL), CUBEID_STATE_DIR_DEFAULT);
}
END_TEST

/* Enrol an intermediate: node state in node_dir on tok2, root in dir on tok1. */
static cubeid_ca *
enrol(cubeid_ca *root, const char *node_dir, const struct cubeid_ca_opts *sign_opts)
{
	char *csr = NULL, *cert = NULL;
	cubeid_ca *inter = NULL;

	ck_assert_int_eq(cubeid_ca_csr_create(tok2, node_dir, TD, NULL, &csr), CUBEID_OK);
	ck_assert_ptr_nonnull(strstr(csr, "BEGIN CERTIFICATE REQUEST"));
	/* nothing is a CA yet in the node's state */
	ck_assert_int_eq(cubeid_ca_load(tok2, node_dir, &inter), CUBEID_ERR_NOT_FOUND);
	ck_assert_int_eq(cubeid_ca_sign_csr(root, csr, strlen(csr), sign_opts, &cert), CUBEID_OK);
	ck_assert_int_eq(cubeid_ca_install(tok2, node_dir, cert, strlen(cert), NULL, &inter),
	                 CUBEID_OK);
	free(csr);
	free(cert);
	return inter;
}

START_TEST(test_intermediate_enrolled_in_second_token)
{
	cubeid_ca *root = NULL, *inter, *loaded = NULL;
	char *node = sub("node"), *root_pem = sub("root.pem"), *int_pem = sub("int.pem");
	X509 *ic, *rc_;
	EVP_PKEY *priv = NULL;
	struct tm tm;
	int64_t ina, rna;

	ck_assert_int_eq(cubeid_ca_init(tok1, dir, TD, NULL, &root), CUBEID_OK);
	inter = enrol(root, node, NULL);
	ck_assert(!cubeid_ca_is_root(inter));
	ic = cubeid_ca_cert(inter);
	rc_ = cubeid_ca_cert(root);
	assert_ca_cert(ic, 0);
	ck_assert_int_eq(X509_check_issued(rc_, ic), X509_V_OK);
	/* the intermediate key lives in the second token, non-extractable */
	ck_assert_ptr_eq(cubeid_key_token(cubeid_ca_key(inter)), tok2);
	ck_assert(cubeid_key_is_persistent(cubeid_ca_key(inter)));
	ck_assert_int_eq(cubeid_key_export_private(cubeid_ca_key(inter), &priv),
	                 CUBEID_ERR_P11_SENSITIVE);
	/* not past the root, and 30 days by default */
	ck_assert_int_eq(ASN1_TIME_to_tm(X509_get0_notAfter(ic), &tm), 1);
	ina = timegm(&tm);
	ck_assert_int_eq(ASN1_TIME_to_tm(X509_get0_notAfter(rc_), &tm), 1);
	rna = timegm(&tm);
	ck_assert_int_le(ina, rna);
	ck_assert_int_le(ina - time(NULL), CUBEID_CA_INTERMEDIATE_TTL_DEFAULT);
	ck_assert_int_gt(ina - time(NULL), CUBEID_CA_INTERMEDIATE_TTL_DEFAULT - 600);
	/* openssl agrees */
	tu_write_pem(root_pem, &rc_, 1);
	tu_write_pem(int_pem, &ic, 1);
	ck_assert_int_eq(tu_openssl_verify(root_pem, NULL, int_pem), 0);
	/* the node's state reloads as an intermediate, and its bundle is the root */
	ck_assert_int_eq(cubeid_ca_load(tok2, node, &loaded), CUBEID_OK);
	ck_assert(!cubeid_ca_is_root(loaded));
	ck_assert_int_eq(X509_cmp(cubeid_ca_cert(loaded), ic), 0);
	ck_assert_int_eq(X509_cmp(cubeid_x509_bundle_at(cubeid_ca_bundle(loaded), 0), rc_), 0);
	/* an intermediate (pathLen 0) signs no further CAs */
	{
		char *csr = NULL, *out = NULL, *n2 = sub("node2");

		ck_assert_int_eq(cubeid_ca_csr_create(tok2, n2, TD, NULL, &csr), CUBEID_OK);
		ck_assert_int_eq(cubeid_ca_sign_csr(loaded, csr, strlen(csr), NULL, &out),
		                 CUBEID_ERR_CA);
		ck_assert_ptr_null(out);
		free(csr);
		free(n2);
	}
	cubeid_ca_free(loaded);
	cubeid_ca_free(inter);
	cubeid_ca_free(root);
	free(node);
	free(root_pem);
	free(int_pem);
}
END_TEST

START_TEST(test_intermediate_never_outlives_root)
{
	struct cubeid_ca_opts ro = {0}, so = {0};
	cubeid_ca *root = NULL, *inter;
	char *node = sub("node");

	ro.ttl = 2 * 3600;
	so.ttl = 90 * 24 * 3600;
	ck_assert_int_eq(cubeid_ca_init(tok1, dir, TD, &ro, &root), CUBEID_OK);
	inter = enrol(root, node, &so);
	ck_assert_int_eq(ASN1_TIME_compare(X509_get0_notAfter(cubeid_ca_cert(inter)),
	                                   X509_get0_notAfter(cubeid_ca_cert(root))),
	                 0);
	cubeid_ca_free(inter);
	cubeid_ca_free(root);
	free(node);
}
END_TEST

START_TEST(test_install_refuses_wrong_key_and_wrong_root)
{
	cubeid_ca *root = NULL, *other = NULL, *ca = NULL;
	char *a = sub("node-a"), *b = sub("node-b"), *od = sub("other");
	char *csr_a = NULL, *csr_b = NULL, *cert = NULL, *cert_other = NULL;
	cubeid_x509_bundle *rb = NULL;

	ck_assert_int_eq(cubeid_ca_init(tok1, dir, TD, NULL, &root), CUBEID_OK);
	ck_assert_int_eq(cubeid_ca_init(tok1, od, TD, NULL, &other), CUBEID_OK);
	ck_assert_int_eq(cubeid_ca_csr_create(tok2, a, TD, NULL, &csr_a), CUBEID_OK);
	ck_assert_int_eq(cubeid_ca_csr_create(tok2, b, TD, NULL, &csr_b), CUBEID_OK);
	/* a certificate for node a's key cannot be installed at node b */
	ck_assert_int_eq(cubeid_ca_sign_csr(root, csr_a, strlen(csr_a), NULL, &cert), CUBEID_OK);
	ck_assert_int_eq(cubeid_ca_install(tok2, b, cert, strlen(cert), NULL, &ca), CUBEID_ERR_CA);
	ck_assert_ptr_null(ca);
	/* signed by another root of the same name: refused against our bundle */
	ck_assert_int_eq(cubeid_ca_sign_csr(other, csr_b, strlen(csr_b), NULL, &cert_other),
	                 CUBEID_OK);
	ck_assert_int_eq(cubeid_x509_bundle_new(TD, &rb), CUBEID_OK);
	ck_assert_int_eq(cubeid_x509_bundle_add(rb, cubeid_ca_cert(root)), CUBEID_OK);
	ck_assert_int_eq(cubeid_ca_install(tok2, b, cert_other, strlen(cert_other), rb, &ca),
	                 CUBEID_ERR_X509_VERIFY);
	/* an end-entity certificate is no CA */
	ck_assert_int_eq(cubeid_ca_install(tok2, b, "garbage", 7, rb, &ca), CUBEID_ERR_X509);
	/* the right one still installs */
	ck_assert_int_eq(cubeid_ca_install(tok2, a, cert, strlen(cert), rb, &ca), CUBEID_OK);
	ck_assert_ptr_nonnull(ca);
	cubeid_ca_free(ca);
	cubeid_x509_bundle_free(rb);
	cubeid_ca_free(root);
	cubeid_ca_free(other);
	free(csr_a);
	free(csr_b);
	free(cert);
	free(cert_other);
	free(a);
	free(b);
	free(od);
}
END_TEST

static char *
soft_csr(const char *san)
{
	EVP_PKEY *k = tu_ec_key();
	X509_REQ *req = X509_REQ_new();
	STACK_OF(X509_EXTENSION) *exts = sk_X509_EXTENSION_new_null();
	BIO *bio = BIO_new(BIO_s_mem());
	char *mem, *s;
	long n;

	X509_REQ_set_pubkey(req, k);
	if (san != NULL) {
		X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, NULL, NID_subject_alt_name, san);

		ck_assert_ptr_nonnull(e);
		sk_X509_EXTENSION_push(exts, e);
		X509_REQ_add_extensions(req, exts);
	}
	ck_assert_int_gt(X509_REQ_sign(req, k, EVP_sha256()), 0);
	PEM_write_bio_X509_REQ(bio, req);
	n = BIO_get_mem_data(bio, &mem);
	s = strndup(mem, (size_t)n);
	BIO_free(bio);
	sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
	X509_REQ_free(req);
	EVP_PKEY_free(k);
	return s;
}

START_TEST(test_sign_refuses_csr_for_other_names)
{
	cubeid_ca *root = NULL;
	char *bad = soft_csr("URI:spiffe://other.org"), *path = soft_csr("URI:spiffe://" TD "/x");
	char *dns = soft_csr("DNS:example.org"), *ok = soft_csr("URI:spiffe://" TD);
	char *out = NULL, *tampered;

	ck_assert_int_eq(cubeid_ca_init(tok1, dir, TD, NULL, &root), CUBEID_OK);
	ck_assert_int_eq(cubeid_ca_sign_csr(root, bad, strlen(bad), NULL, &out), CUBEID_ERR_X509);
	ck_assert_int_eq(cubeid_ca_sign_csr(root, path, strlen(path), NULL, &out), CUBEID_ERR_X509);
	ck_assert_int_eq(cubeid_ca_sign_csr(root, dns, strlen(dns), NULL, &out), CUBEID_ERR_X509);
	ck_assert_int_eq(cubeid_ca_sign_csr(root, "x", 1, NULL, &out), CUBEID_ERR_X509);
	ck_assert_ptr_null(out);
	/* a CSR whose signature does not verify */
	tampered = strdup(ok);
	tampered[strlen(tampered) / 2] = tampered[strlen(tampered) / 2] == 'A' ? 'B' : 'A';
	ck_assert_int_ne(cubeid_ca_sign_csr(root, tampered, strlen(tampered), NULL, &out),
	                 CUBEID_OK);
	ck_assert_int_eq(cubeid_ca_sign_csr(root, ok, strlen(ok), NULL, &out), CUBEID_OK);
	ck_assert_ptr_nonnull(out);
	free(out);
	free(tampered);
	free(bad);
	free(path);
	free(dns);
	free(ok);
	cubeid_ca_free(root);
}
END_TEST

START_TEST(test_rsa_root)
{
	struct cubeid_ca_opts o = {0};
	cubeid_ca *root = NULL, *again = NULL;

	o.key_type = CUBEID_KEY_RSA_2048;
	ck_assert_int_eq(cubeid_ca_init(tok1, dir, TD, &o, &root), CUBEID_OK);
	ck_assert_int_eq(EVP_PKEY_get_base_id(X509_get0_pubkey(cubeid_ca_cert(root))),
	                 EVP_PKEY_RSA);
	assert_ca_cert(cubeid_ca_cert(root), 1);
	ck_assert_int_eq(cubeid_ca_load(tok1, dir, &again), CUBEID_OK);
	cubeid_ca_free(again);
	cubeid_ca_free(root);
}
END_TEST

START_TEST(test_atomic_write_and_read_limits)
{
	char *p = sub("f"), *buf = NULL;
	size_t len = 0;

	ck_assert_int_eq(cubeid_atomic_write(p, "hello", 5, 0640), CUBEID_OK);
	ck_assert_uint_eq(file_mode(dir, "f"), 0640);
	ck_assert_int_eq(cubeid_read_file(p, 5, &buf, &len), CUBEID_OK);
	ck_assert_str_eq(buf, "hello");
	free(buf);
	buf = NULL;
	ck_assert_int_eq(cubeid_read_file(p, 4, &buf, &len), CUBEID_ERR_TOO_LARGE);
	ck_assert_ptr_null(buf);
	ck_assert_int_eq(cubeid_atomic_write(p, "bye", 3, 0600), CUBEID_OK);
	ck_assert_uint_eq(file_mode(dir, "f"), 0600);
	ck_assert_int_eq(cubeid_read_file(p, 100, &buf, &len), CUBEID_OK);
	ck_assert_str_eq(buf, "bye");
	free(buf);
	free(p);
	p = sub("missing");
	ck_assert_int_eq(cubeid_read_file(p, 100, &buf, &len), CUBEID_ERR_NOT_FOUND);
	free(p);
}
END_TEST

START_TEST(test_malformed_ca_conf_is_refused)
{
	char *p = sub("ca.conf");
	cubeid_ca *ca = NULL;

	tu_write_str(p, "version=1\ntrust_domain=" TD "\nrole=root\nkey_uri=pkcs11:x\nbogus=1\n");
	ck_assert_int_eq(cubeid_ca_load(tok1, dir, &ca), CUBEID_ERR_CONFIG);
	tu_write_str(p, "version=2\ntrust_domain=" TD "\n");
	ck_assert_int_eq(cubeid_ca_load(tok1, dir, &ca), CUBEID_ERR_CONFIG);
	tu_write_str(p, "version=1\ntrust_domain=Bad_TD!\n");
	ck_assert_int_eq(cubeid_ca_load(tok1, dir, &ca), CUBEID_ERR_CONFIG);
	ck_assert_ptr_null(ca);
	free(p);
}
END_TEST

static Suite *
suite(void)
{
	Suite *s = suite_create("ca");
	TCase *tc = tcase_create("ca");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_root_init_then_reload_from_state_dir);
	tcase_add_test(tc, test_ensure_creates_a_root_on_first_use);
	tcase_add_test(tc, test_state_dir_from_environment);
	tcase_add_test(tc, test_intermediate_enrolled_in_second_token);
	tcase_add_test(tc, test_intermediate_never_outlives_root);
	tcase_add_test(tc, test_install_refuses_wrong_key_and_wrong_root);
	tcase_add_test(tc, test_sign_refuses_csr_for_other_names);
	tcase_add_test(tc, test_rsa_root);
	tcase_add_test(tc, test_atomic_write_and_read_limits);
	tcase_add_test(tc, test_malformed_ca_conf_is_refused);
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
	return failed == 0 ? 0 : 1;
}
