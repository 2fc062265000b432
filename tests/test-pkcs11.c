/*
 * The token layer against a real token: a throwaway SoftHSM2 token made by
 * the harness, or the software TPM on the TPM lane (tests/tpm/lane.sh).
 */
#include "config.h"

#include "tests/harness.h"
#include "pkcs11/p11-internal.h"
#include "tests/p11-attr-util.h"

#include <check.h>
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

static struct th_token th;
static cubeid_token *tok;

static void
setup(void)
{
	th_token_setup(&th);
	tok = th_token_open(&th, 0);
}

static void
teardown(void)
{
	cubeid_token_free(tok);
	tok = NULL;
	th_token_teardown(&th);
}

static char *
unique_label(const char *prefix)
{
	static int n;
	char *l;

	ck_assert_int_ge(asprintf(&l, "%s-%d-%d", prefix, (int)getpid(), ++n), 0);
	return l;
}

static cubeid_key *
gen(cubeid_key_type type, bool persistent, bool exportable)
{
	struct cubeid_keygen_opts o = {0};
	cubeid_key *k = NULL;
	char *label = unique_label(cubeid_key_type_name(type));
	int r;

	o.type = type;
	o.label = label;
	o.persistent = persistent;
	o.exportable = exportable;
	r = cubeid_key_generate(tok, &o, &k);
	ck_assert_msg(r == CUBEID_OK, "generate %s: %s", label, cubeid_strerror(r));
	ck_assert_ptr_nonnull(k);
	ck_assert_str_eq(cubeid_key_label(k), label);
	ck_assert_int_eq(cubeid_key_get_type(k), type);
	free(label);
	return k;
}

/* Verify sig with OpenSSL alone, independent of the layer. */
static bool
ossl_verify(EVP_PKEY *pub, cubeid_sig_alg alg, const uint8_t *data, size_t len, const uint8_t *sig,
            size_t sig_len)
{
	EVP_MD_CTX *mctx = EVP_MD_CTX_new();
	EVP_PKEY_CTX *pctx = NULL;
	uint8_t *der = NULL;
	size_t der_len = 0;
	bool ok = false;

	if (alg == CUBEID_SIG_ECDSA_SHA256 || alg == CUBEID_SIG_ECDSA_SHA384 ||
	    alg == CUBEID_SIG_ECDSA_SHA512) {
		if (cubeid_ecdsa_raw_to_der(sig, sig_len, &der, &der_len) != CUBEID_OK)
			goto out;
		sig = der;
		sig_len = der_len;
	}
	if (EVP_DigestVerifyInit(mctx, &pctx, cubeid_sig_alg_md(alg), NULL, pub) != 1)
		goto out;
	if (alg == CUBEID_SIG_RSA_PSS_SHA256 || alg == CUBEID_SIG_RSA_PSS_SHA384 ||
	    alg == CUBEID_SIG_RSA_PSS_SHA512) {
		EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING);
		EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST);
	}
	ok = EVP_DigestVerify(mctx, sig, sig_len, data, len) == 1;
out:
	OPENSSL_free(der);
	EVP_MD_CTX_free(mctx);
	return ok;
}

static void
sign_and_verify(cubeid_key *k, cubeid_sig_alg alg)
{
	uint8_t data[100], sig[512];
	size_t sig_len = sizeof(sig);
	EVP_PKEY *pub = NULL;
	int r;

	RAND_bytes(data, sizeof(data));
	r = cubeid_key_sign(k, alg, data, sizeof(data), sig, &sig_len);
	ck_assert_msg(r == CUBEID_OK, "sign alg %d: %s", alg, cubeid_strerror(r));
	ck_assert_int_eq(sig_len, cubeid_key_sig_size(k));
	ck_assert_int_eq(cubeid_key_public(k, &pub), CUBEID_OK);
	ck_assert_msg(ossl_verify(pub, alg, data, sizeof(data), sig, sig_len),
	              "OpenSSL rejected alg %d signature", alg);
	/* A flipped bit must not verify: the check above can fail. */
	data[0] ^= 1;
	ck_assert(!ossl_verify(pub, alg, data, sizeof(data), sig, sig_len));
	EVP_PKEY_free(pub);
}

/* A token outage in the TPM lane: $CUBEID_TEST_OUTAGE_CMD (tests/tpm/tpm-env.sh
 * outage DIR) kills swtpm and tpm2-abrmd ("down") and starts them again on
 * the same state ("up").  The layer re-initialises tpm2-pkcs11 and signs
 * again within 10 s of the TPM's return.  Elsewhere it is skipped. */
static void
outage_cmd(const char *cmd, const char *what)
{
	char *line = NULL;

	ck_assert_int_ge(asprintf(&line, "%s %s", cmd, what), 0);
	ck_assert_msg(system(line) == 0, "%s failed", line);
	free(line);
}

START_TEST(test_token_outage_recovers)
{
	const char *cmd = getenv("CUBEID_TEST_OUTAGE_CMD");
	cubeid_key *k;
	uint8_t sig[512];
	size_t len;
	double t0, t;
	int r = CUBEID_ERR_P11_GENERAL, i;

	if (cmd == NULL || *cmd == '\0') {
		/* SoftHSM2's outages: tests/agent-token-outage.sh, test-pkcs11-faults */
		fprintf(stderr, "SKIP part: no CUBEID_TEST_OUTAGE_CMD (the TPM lane sets it)\n");
		return;
	}
	k = gen(CUBEID_KEY_EC_P256, true, false);
	sign_and_verify(k, CUBEID_SIG_ECDSA_SHA256);
	outage_cmd(cmd, "down");
	len = sizeof(sig);
	r = cubeid_key_sign(k, CUBEID_SIG_ECDSA_SHA256, (const uint8_t *)"x", 1, sig, &len);
	fprintf(stderr, "# while down: %s\n", cubeid_strerror(r));
	ck_assert_int_ne(r, CUBEID_OK);
	outage_cmd(cmd, "up");
	t0 = p11_mono();
	for (i = 0, r = CUBEID_ERR_P11_GENERAL; i < 100 && r != CUBEID_OK; i++) {
		len = sizeof(sig);
		r = cubeid_key_sign(k, CUBEID_SIG_ECDSA_SHA256, (const uint8_t *)"x", 1, sig, &len);
		if (r != CUBEID_OK)
			usleep(100 * 1000);
	}
	t = p11_mono() - t0;
	fprintf(stderr, "# token outage: signing again %.2f s after the TPM came back\n", t);
	ck_assert_msg(r == CUBEID_OK, "still failing: %s", cubeid_strerror(r));
	ck_assert_msg(t <= 10, "recovered after %.2f s", t);
	sign_and_verify(k, CUBEID_SIG_ECDSA_SHA256);
	cubeid_key_delete(k);
	cubeid_key_free(k);
}
END_TEST

START_TEST(test_ec_p256_generate_sign_verify)
{
	cubeid_key *k = gen(CUBEID_KEY_EC_P256, true, false);

	ck_assert_int_eq(cubeid_key_sig_size(k), 64);
	sign_and_verify(k, CUBEID_SIG_ECDSA_SHA256);
	sign_and_verify(k, CUBEID_SIG_ECDSA_SHA384);
	ck_assert_int_eq(cubeid_key_delete(k), CUBEID_OK);
	cubeid_key_free(k);
}
END_TEST

START_TEST(test_ec_p384_generate_sign_verify)
{
	cubeid_key *k = gen(CUBEID_KEY_EC_P384, true, false);

	ck_assert_int_eq(cubeid_key_sig_size(k), 96);
	sign_and_verify(k, CUBEID_SIG_ECDSA_SHA384);
	ck_assert_int_eq(cubeid_key_delete(k), CUBEID_OK);
	cubeid_key_free(k);
}
END_TEST

static void
rsa_case(cubeid_key_type type, size_t bytes)
{
	cubeid_key *k = gen(type, true, false);

	ck_assert_int_eq(cubeid_key_sig_size(k), bytes);
	sign_and_verify(k, CUBEID_SIG_RSA_PKCS1_SHA256);
	sign_and_verify(k, CUBEID_SIG_RSA_PKCS1_SHA512);
	if (cubeid_token_has_mechanism(tok, CKM_RSA_PKCS_PSS))
		sign_and_verify(k, CUBEID_SIG_RSA_PSS_SHA256);
	else
		fprintf(stderr, "note: token %s has no CKM_RSA_PKCS_PSS; PS256 not tested\n",
		        th.kind);
	ck_assert_int_eq(cubeid_key_delete(k), CUBEID_OK);
	cubeid_key_free(k);
}

START_TEST(test_rsa_2048_generate_sign_verify)
{
	rsa_case(CUBEID_KEY_RSA_2048, 256);
}
END_TEST

START_TEST(test_rsa_3072_generate_sign_verify)
{
	rsa_case(CUBEID_KEY_RSA_3072, 384);
}
END_TEST

START_TEST(test_session_objects_sign_and_vanish)
{
	cubeid_key *k, *found = NULL;
	char label[128];

	if (th_is_tpm(&th)) {
		fprintf(stderr, "SKIP part: tpm2-pkcs11 rejects session-object keys\n");
		return;
	}
	k = gen(CUBEID_KEY_EC_P256, false, false);
	ck_assert(!cubeid_key_is_persistent(k));
	sign_and_verify(k, CUBEID_SIG_ECDSA_SHA256);
	snprintf(label, sizeof(label), "%s", cubeid_key_label(k));
	cubeid_key_free(k);
	/* Session objects are gone once the token (its sessions) closes. */
	cubeid_token_free(tok);
	tok = th_token_open(&th, 0);
	ck_assert_int_eq(cubeid_key_find(tok, label, NULL, 0, &found), CUBEID_ERR_NOT_FOUND);
}
END_TEST

START_TEST(test_private_key_is_sensitive_and_unextractable)
{
	cubeid_key *k = gen(CUBEID_KEY_EC_P256, true, false);
	CK_BBOOL sens = 0, extr = 1;
	CK_ATTRIBUTE t[] = {{CKA_SENSITIVE, &sens, sizeof(sens)},
	                    {CKA_EXTRACTABLE, &extr, sizeof(extr)}};
	CK_SESSION_HANDLE s;
	uint8_t *v = NULL;
	size_t vlen;
	EVP_PKEY *pk = NULL;

	ck_assert(!cubeid_key_is_exportable(k));
	ck_assert_int_eq(p11_session_get(tok, &s), CUBEID_OK);
	ck_assert_int_eq(tok->f->C_GetAttributeValue(s, p11_key_handle(k), t, 2), CKR_OK);
	ck_assert_int_eq(sens, CK_TRUE);
	ck_assert_int_eq(extr, CK_FALSE);
	/* Reading the private value straight from the token fails. */
	ck_assert_int_ne(p11_attr_get(tok, s, p11_key_handle(k), CKA_VALUE, &v, &vlen), CKR_OK);
	ck_assert_ptr_null(v);
	p11_session_put(tok, s, false);
	ck_assert_int_eq(cubeid_key_export_private(k, &pk), CUBEID_ERR_P11_SENSITIVE);
	ck_assert_ptr_null(pk);
	cubeid_key_delete(k);
	cubeid_key_free(k);
}
END_TEST

/* Signing keys sign: no decrypt, unwrap or derive on the private half, no
 * encrypt or wrap on the public one (SoftHSM2 would default them on). */
START_TEST(test_generated_keys_are_sign_only)
{
	static const cubeid_key_type types[] = {CUBEID_KEY_EC_P256, CUBEID_KEY_EC_P384,
	                                        CUBEID_KEY_RSA_2048};
	size_t i;

	for (i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
		cubeid_key *k = gen(types[i], true, false);

		pat_assert_sign_only(k, !th_is_tpm(&th));
		sign_and_verify(k, types[i] == CUBEID_KEY_RSA_2048 ? CUBEID_SIG_RSA_PKCS1_SHA256
		                                                   : CUBEID_SIG_ECDSA_SHA256);
		cubeid_key_delete(k);
		cubeid_key_free(k);
	}
	if (th_is_tpm(&th))
		return; /* workload keys are not made on the TPM */
	{
		cubeid_key *k = gen(CUBEID_KEY_EC_P256, false, true);

		pat_assert_sign_only(k, true);
		cubeid_key_free(k);
	}
}
END_TEST

START_TEST(test_exportable_key_exports_matching_private)
{
	cubeid_key *k;
	EVP_PKEY *priv = NULL, *pub = NULL;

	if (th_is_tpm(&th)) {
		fprintf(stderr, "SKIP part: workload keys are not made on the TPM\n");
		return;
	}
	k = gen(CUBEID_KEY_EC_P256, false, true);
	ck_assert(cubeid_key_is_exportable(k));
	ck_assert_int_eq(cubeid_key_export_private(k, &priv), CUBEID_OK);
	ck_assert_int_eq(cubeid_key_public(k, &pub), CUBEID_OK);
	ck_assert_int_eq(EVP_PKEY_eq(priv, pub), 1);
	EVP_PKEY_free(priv);
	EVP_PKEY_free(pub);
	cubeid_key_free(k);

	k = gen(CUBEID_KEY_RSA_2048, false, true);
	ck_assert_int_eq(cubeid_key_export_private(k, &priv), CUBEID_OK);
	ck_assert_int_eq(cubeid_key_public(k, &pub), CUBEID_OK);
	ck_assert_int_eq(EVP_PKEY_eq(priv, pub), 1);
	EVP_PKEY_free(priv);
	EVP_PKEY_free(pub);
	cubeid_key_free(k);
}
END_TEST

START_TEST(test_find_list_uri_and_delete)
{
	cubeid_key *k = gen(CUBEID_KEY_EC_P256, true, false), *f = NULL, **all = NULL;
	const uint8_t *id;
	size_t id_len, n = 0, i;
	char *uri = NULL;
	bool seen = false;

	id = cubeid_key_id(k, &id_len);
	ck_assert_int_eq(id_len, 20);
	ck_assert_int_eq(cubeid_key_find(tok, cubeid_key_label(k), NULL, 0, &f), CUBEID_OK);
	ck_assert_mem_eq(cubeid_key_id(f, &i), id, id_len);
	cubeid_key_free(f);
	ck_assert_int_eq(cubeid_key_find(tok, NULL, id, id_len, &f), CUBEID_OK);
	ck_assert_str_eq(cubeid_key_label(f), cubeid_key_label(k));
	cubeid_key_free(f);

	ck_assert_int_eq(cubeid_key_uri(k, &uri), CUBEID_OK);
	ck_assert_ptr_nonnull(strstr(uri, "type=private"));
	ck_assert_int_eq(cubeid_key_find_uri(tok, uri, &f), CUBEID_OK);
	ck_assert_str_eq(cubeid_key_label(f), cubeid_key_label(k));
	cubeid_key_free(f);
	free(uri);

	ck_assert_int_eq(cubeid_key_list(tok, &all, &n), CUBEID_OK);
	for (i = 0; i < n; i++)
		if (strcmp(cubeid_key_label(all[i]), cubeid_key_label(k)) == 0)
			seen = true;
	ck_assert(seen);
	cubeid_key_list_free(all, n);

	/* Two keys under one label: a lookup by label must not pick one. */
	{
		struct cubeid_keygen_opts o = {CUBEID_KEY_EC_P256, cubeid_key_label(k), true,
		                               false};
		cubeid_key *twin = NULL;
		ck_assert_int_eq(cubeid_key_generate(tok, &o, &twin), CUBEID_OK);
		ck_assert_int_eq(cubeid_key_find(tok, cubeid_key_label(k), NULL, 0, &f),
		                 CUBEID_ERR_AMBIGUOUS);
		ck_assert_ptr_null(f);
		ck_assert_int_eq(cubeid_key_delete(twin), CUBEID_OK);
		cubeid_key_free(twin);
	}

	ck_assert_int_eq(cubeid_key_delete(k), CUBEID_OK);
	ck_assert_int_eq(cubeid_key_find(tok, cubeid_key_label(k), NULL, 0, &f),
	                 CUBEID_ERR_NOT_FOUND);
	ck_assert_ptr_null(f);
	cubeid_key_free(k);
}
END_TEST

START_TEST(test_export_public_der_and_pem_match)
{
	cubeid_key *k = gen(CUBEID_KEY_EC_P256, true, false);
	uint8_t *der = NULL, *pem = NULL;
	size_t der_len, pem_len;
	const unsigned char *p;
	EVP_PKEY *a, *b, *pub = NULL;
	BIO *bio;

	ck_assert_int_eq(cubeid_key_export_public(k, CUBEID_PUB_DER, &der, &der_len), CUBEID_OK);
	ck_assert_int_eq(cubeid_key_export_public(k, CUBEID_PUB_PEM, &pem, &pem_len), CUBEID_OK);
	ck_assert_ptr_nonnull(strstr((char *)pem, "-----BEGIN PUBLIC KEY-----"));
	p = der;
	a = d2i_PUBKEY(NULL, &p, (long)der_len);
	bio = BIO_new_mem_buf(pem, (int)pem_len);
	b = PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL);
	ck_assert_ptr_nonnull(a);
	ck_assert_ptr_nonnull(b);
	ck_assert_int_eq(cubeid_key_public(k, &pub), CUBEID_OK);
	ck_assert_int_eq(EVP_PKEY_eq(a, pub), 1);
	ck_assert_int_eq(EVP_PKEY_eq(b, pub), 1);
	EVP_PKEY_free(a);
	EVP_PKEY_free(b);
	EVP_PKEY_free(pub);
	BIO_free(bio);
	free(der);
	free(pem);
	cubeid_key_delete(k);
	cubeid_key_free(k);
}
END_TEST

START_TEST(test_two_call_size_convention)
{
	cubeid_key *k = gen(CUBEID_KEY_EC_P256, true, false);
	uint8_t data[4] = {1, 2, 3, 4}, small[10], sig[64];
	size_t len = 0;

	ck_assert_int_eq(cubeid_key_sign(k, CUBEID_SIG_ECDSA_SHA256, data, 4, NULL, &len),
	                 CUBEID_OK);
	ck_assert_int_eq(len, 64);
	len = sizeof(small);
	ck_assert_int_eq(cubeid_key_sign(k, CUBEID_SIG_ECDSA_SHA256, data, 4, small, &len),
	                 CUBEID_ERR_BUFFER_TOO_SMALL);
	ck_assert_int_eq(len, 64);
	len = sizeof(sig);
	ck_assert_int_eq(cubeid_key_sign(k, CUBEID_SIG_ECDSA_SHA256, data, 4, sig, &len),
	                 CUBEID_OK);
	/* An RSA algorithm on an EC key is refused before the token sees it. */
	ck_assert_int_eq(cubeid_key_sign(k, CUBEID_SIG_RSA_PKCS1_SHA256, data, 4, sig, &len),
	                 CUBEID_ERR_P11_KEY);
	cubeid_key_delete(k);
	cubeid_key_free(k);
}
END_TEST

/* ---- X.509 through the OpenSSL bridge ---- */

static X509 *
make_cert(EVP_PKEY *subject_pub, EVP_PKEY *signer, X509 *issuer, const char *cn, bool ca)
{
	X509 *x = X509_new();
	X509_NAME *name = X509_NAME_new();
	X509V3_CTX v3;
	X509_EXTENSION *ext;
	int ok;

	X509_set_version(x, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(x), 1000 + (long)ca);
	X509_gmtime_adj(X509_getm_notBefore(x), -60);
	X509_gmtime_adj(X509_getm_notAfter(x), 3600);
	X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
	X509_set_subject_name(x, name);
	X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) : name);
	X509_set_pubkey(x, subject_pub);
	X509V3_set_ctx(&v3, issuer ? issuer : x, x, NULL, NULL, 0);
	ext = X509V3_EXT_conf_nid(NULL, &v3, NID_basic_constraints,
	                          ca ? "critical,CA:TRUE" : "critical,CA:FALSE");
	X509_add_ext(x, ext, -1);
	X509_EXTENSION_free(ext);
	ext = X509V3_EXT_conf_nid(NULL, &v3, NID_key_usage,
	                          ca ? "critical,keyCertSign,cRLSign"
	                             : "critical,digitalSignature");
	X509_add_ext(x, ext, -1);
	X509_EXTENSION_free(ext);
	ext = X509V3_EXT_conf_nid(NULL, &v3, NID_subject_key_identifier, "hash");
	X509_add_ext(x, ext, -1);
	X509_EXTENSION_free(ext);
	X509_NAME_free(name);
	ok = X509_sign(x, signer, EVP_sha256());
	ck_assert_msg(ok > 0, "X509_sign with the token key failed");
	return x;
}

static void
write_pem(const char *path, X509 *x)
{
	FILE *f = fopen(path, "w");

	ck_assert_ptr_nonnull(f);
	ck_assert_int_eq(PEM_write_X509(f, x), 1);
	fclose(f);
}

static void
cert_case(cubeid_key_type type)
{
	cubeid_key *k = gen(type, true, false);
	EVP_PKEY *ca_evp = NULL, *ca_pub = NULL, *leaf_key;
	X509 *ca, *leaf;
	X509_STORE *store = X509_STORE_new();
	X509_STORE_CTX *sctx = X509_STORE_CTX_new();
	const ASN1_OCTET_STRING *skid;
	const uint8_t *id;
	size_t id_len;
	char *dir = th_mkdtemp("cubeid-x509"), ca_path[512], leaf_path[512], *openssl;
	int rc;

	ck_assert_int_eq(cubeid_key_evp(k, &ca_evp), CUBEID_OK);
	ck_assert_int_eq(cubeid_key_public(k, &ca_pub), CUBEID_OK);
	ca = make_cert(ca_pub, ca_evp, NULL, "cubeid test CA", true);
	leaf_key = EVP_EC_gen("P-256");
	leaf = make_cert(leaf_key, ca_evp, ca, "leaf", false);

	/* The certificate's SKID is the key's CKA_ID. */
	skid = X509_get0_subject_key_id(ca);
	id = cubeid_key_id(k, &id_len);
	ck_assert_ptr_nonnull(skid);
	ck_assert_int_eq(ASN1_STRING_length(skid), id_len);
	ck_assert_mem_eq(ASN1_STRING_get0_data(skid), id, id_len);

	/* In-process verification ... */
	X509_STORE_add_cert(store, ca);
	X509_STORE_CTX_init(sctx, store, leaf, NULL);
	ck_assert_msg(X509_verify_cert(sctx) == 1, "verify: %s",
	              X509_verify_cert_error_string(X509_STORE_CTX_get_error(sctx)));
	/* ... and by the openssl command, as an operator would. */
	snprintf(ca_path, sizeof(ca_path), "%s/ca.pem", dir);
	snprintf(leaf_path, sizeof(leaf_path), "%s/leaf.pem", dir);
	write_pem(ca_path, ca);
	write_pem(leaf_path, leaf);
	if ((openssl = th_which("openssl")) != NULL) {
		char *argv[] = {openssl, "verify", "-CAfile", ca_path, leaf_path, NULL};
		rc = th_run(argv, NULL);
		ck_assert_int_eq(rc, 0);
		free(openssl);
	} else {
		fprintf(stderr, "\n*** openssl command missing (Debian package 'openssl'): "
		                "only in-process verification ran ***\n");
	}

	/* A CSR signed by the token key verifies with its public key. */
	{
		X509_REQ *req = X509_REQ_new();
		X509_REQ_set_pubkey(req, ca_pub);
		ck_assert_int_gt(X509_REQ_sign(req, ca_evp, EVP_sha256()), 0);
		ck_assert_int_eq(X509_REQ_verify(req, ca_pub), 1);
		X509_REQ_free(req);
	}
	th_rmtree(dir);
	free(dir);
	X509_STORE_CTX_free(sctx);
	X509_STORE_free(store);
	X509_free(ca);
	X509_free(leaf);
	EVP_PKEY_free(leaf_key);
	EVP_PKEY_free(ca_pub);
	EVP_PKEY_free(ca_evp);
	cubeid_key_delete(k);
	cubeid_key_free(k);
}

START_TEST(test_x509_signed_by_token_ec_key_verifies)
{
	cert_case(CUBEID_KEY_EC_P256);
}
END_TEST

START_TEST(test_x509_signed_by_token_rsa_key_verifies)
{
	cert_case(CUBEID_KEY_RSA_2048);
}
END_TEST

START_TEST(test_evp_digestsign_with_token_key)
{
	cubeid_key *k = gen(CUBEID_KEY_EC_P384, true, false);
	EVP_PKEY *evp = NULL, *pub = NULL;
	EVP_MD_CTX *m = EVP_MD_CTX_new();
	uint8_t sig[256], data[] = "digest me";
	size_t len = sizeof(sig);

	ck_assert_int_eq(cubeid_key_evp(k, &evp), CUBEID_OK);
	ck_assert_int_eq(EVP_DigestSignInit(m, NULL, EVP_sha384(), NULL, evp), 1);
	ck_assert_int_eq(EVP_DigestSign(m, sig, &len, data, sizeof(data)), 1);
	EVP_MD_CTX_free(m);
	ck_assert_int_eq(cubeid_key_public(k, &pub), CUBEID_OK);
	m = EVP_MD_CTX_new();
	ck_assert_int_eq(EVP_DigestVerifyInit(m, NULL, EVP_sha384(), NULL, pub), 1);
	ck_assert_int_eq(EVP_DigestVerify(m, sig, len, data, sizeof(data)), 1);
	EVP_MD_CTX_free(m);
	EVP_PKEY_free(pub);
	/* The bridge key outlives the caller's handle on the key. */
	cubeid_key_delete(k);
	cubeid_key_free(k);
	EVP_PKEY_free(evp);
}
END_TEST

/* ---- failures ---- */

START_TEST(test_wrong_pin_is_clear_error)
{
	struct cubeid_token_opts o = {0};
	cubeid_token *t2 = NULL;
	char *path;
	FILE *f;

	/* PKCS#11 login is per process: close our logged-in handle first, or
	 * the token would report the user as already logged in. */
	cubeid_token_free(tok);
	tok = NULL;
	ck_assert_int_ge(asprintf(&path, "%s.wrong", th.pin_file), 0);
	f = fopen(path, "w");
	fputs("not-the-pin\n", f);
	fclose(f);
	chmod(path, 0600);
	o.module_path = th.module;
	o.pin_file = path;
	ck_assert_int_eq(cubeid_token_open(th.uri, &o, &t2), CUBEID_ERR_P11_PIN_INCORRECT);
	ck_assert_ptr_null(t2);
	unlink(path);
	free(path);
}
END_TEST

START_TEST(test_missing_token_bad_uri_unknown_module)
{
	struct cubeid_token_opts o = {0};
	cubeid_token *t2 = NULL;
	const char *dirs[] = {"/nonexistent-dir", NULL};

	o.module_path = th.module;
	o.pin_file = th.pin_file;
	ck_assert_int_eq(cubeid_token_open("pkcs11:token=no-such-token", &o, &t2),
	                 CUBEID_ERR_P11_NO_TOKEN);
	ck_assert_int_eq(cubeid_token_open("pkcs11:token=%zz", &o, &t2), CUBEID_ERR_P11_URI);
	ck_assert_int_eq(cubeid_token_open("http://example/", &o, &t2), CUBEID_ERR_P11_URI);
	ck_assert_int_eq(cubeid_token_open("pkcs11:token=x?pin-value=1234", &o, &t2),
	                 CUBEID_ERR_P11_URI);
	o.module_path = "/nonexistent/libnothing.so";
	ck_assert_int_eq(cubeid_token_open(th.uri, &o, &t2), CUBEID_ERR_P11_MODULE);
	o.module_path = "/etc/passwd"; /* a file, but not a module */
	ck_assert_int_eq(cubeid_token_open(th.uri, &o, &t2), CUBEID_ERR_P11_MODULE);
	o.module_path = th.module;
	o.module_allow_dirs = dirs;
	ck_assert_int_eq(cubeid_token_open(th.uri, &o, &t2), CUBEID_ERR_P11_MODULE_DENIED);
	ck_assert_ptr_null(t2);
}
END_TEST

START_TEST(test_pin_sources)
{
	struct cubeid_token_opts o = {0};
	cubeid_token *t2 = NULL;
	char *uri;

	cubeid_token_free(tok); /* so that success proves the PIN was read */
	tok = NULL;
	o.module_path = th.module;
	unsetenv(CUBEID_ENV_PIN_FILE);
	unsetenv(CUBEID_ENV_PIN);
	ck_assert_int_eq(cubeid_token_open(th.uri, &o, &t2), CUBEID_ERR_P11_PIN_MISSING);
	o.pin_file = "/nonexistent/cubeid.pin";
	ck_assert_int_eq(cubeid_token_open(th.uri, &o, &t2), CUBEID_ERR_P11_PIN_MISSING);
	o.pin_file = NULL;
	/* pin-source in the URI */
	ck_assert_int_ge(asprintf(&uri, "%s?pin-source=file:%s", th.uri, th.pin_file), 0);
	ck_assert_int_eq(cubeid_token_open(uri, &o, &t2), CUBEID_OK);
	cubeid_token_free(t2);
	free(uri);
	/* the environment */
	setenv(CUBEID_ENV_PIN_FILE, th.pin_file, 1);
	ck_assert_int_eq(cubeid_token_open(th.uri, &o, &t2), CUBEID_OK);
	cubeid_token_free(t2);
	unsetenv(CUBEID_ENV_PIN_FILE);
}
END_TEST

START_TEST(test_unknown_mechanism_is_clear_error)
{
	/* SoftHSM2 2.6 has no CKM_ECDSA_SHA256: the layer must not need it. */
	ck_assert(cubeid_token_has_mechanism(tok, CKM_ECDSA));
	ck_assert(!cubeid_token_has_mechanism(tok, 0x7ffffff0UL));
}
END_TEST

START_TEST(test_token_facts)
{
	char *uri = NULL;

	ck_assert_str_eq(cubeid_token_label(tok), th.label);
	ck_assert_int_eq(cubeid_token_uri(tok, &uri), CUBEID_OK);
	ck_assert_ptr_nonnull(strstr(uri, "token="));
	free(uri);
	ck_assert_ptr_nonnull(cubeid_token_module_path(tok));
	ck_assert_int_eq(cubeid_key_type_from_name("ec-p384"), CUBEID_KEY_EC_P384);
	ck_assert_int_eq(cubeid_key_type_from_name("ec-p999"), CUBEID_KEY_NONE);
}
END_TEST

/* An Ed25519 object on the token (which breaks libp11's enumeration) is
 * skipped by the list, not fatal. */
START_TEST(test_foreign_key_type_does_not_break_listing)
{
	static const uint8_t ed_oid[] = {0x06, 0x03, 0x2b, 0x65, 0x70};
	CK_MECHANISM mech = {0x1055UL /* CKM_EC_EDWARDS_KEY_PAIR_GEN */, NULL, 0};
	CK_BBOOL yes = CK_TRUE;
	CK_ATTRIBUTE pub[] = {{CKA_TOKEN, &yes, 1},
	                      {CKA_EC_PARAMS, (void *)ed_oid, sizeof(ed_oid)}};
	CK_ATTRIBUTE priv[] = {{CKA_TOKEN, &yes, 1}, {CKA_PRIVATE, &yes, 1}, {CKA_SIGN, &yes, 1}};
	CK_OBJECT_HANDLE hpub, hpriv;
	CK_SESSION_HANDLE s;
	cubeid_key *k, **all = NULL;
	size_t n = 0;
	CK_RV rv;

	if (!cubeid_token_has_mechanism(tok, mech.mechanism)) {
		fprintf(stderr, "SKIP part: token %s cannot make Ed25519 keys\n", th.kind);
		return;
	}
	k = gen(CUBEID_KEY_EC_P256, true, false);
	ck_assert_int_eq(p11_session_get(tok, &s), CUBEID_OK);
	rv = tok->f->C_GenerateKeyPair(s, &mech, pub, 2, priv, 3, &hpub, &hpriv);
	p11_session_put(tok, s, false);
	ck_assert_int_eq(rv, CKR_OK);
	ck_assert_int_eq(cubeid_key_list(tok, &all, &n), CUBEID_OK);
	ck_assert_int_ge(n, 1);
	cubeid_key_list_free(all, n);
	cubeid_key_delete(k);
	cubeid_key_free(k);
}
END_TEST

/* ---- concurrency and recovery ---- */

struct thr {
	cubeid_key *key;
	int ok;
};

static void *
sign_thread(void *p)
{
	struct thr *t = p;
	EVP_PKEY *pub = NULL;
	uint8_t data[32], sig[64];
	size_t len;
	int i;

	cubeid_key_public(t->key, &pub);
	for (i = 0; i < 50; i++) {
		RAND_bytes(data, sizeof(data));
		len = sizeof(sig);
		if (cubeid_key_sign(t->key, CUBEID_SIG_ECDSA_SHA256, data, sizeof(data), sig,
		                    &len) == CUBEID_OK &&
		    ossl_verify(pub, CUBEID_SIG_ECDSA_SHA256, data, sizeof(data), sig, len))
			t->ok++;
	}
	EVP_PKEY_free(pub);
	return NULL;
}

START_TEST(test_eight_threads_sign_at_once)
{
	cubeid_key *k;
	pthread_t th8[8];
	struct thr t[8];
	int i;

	/* A pool smaller than the threads forces waiting for a session. */
	cubeid_token_free(tok);
	tok = th_token_open(&th, 3);
	k = gen(CUBEID_KEY_EC_P256, true, false);
	for (i = 0; i < 8; i++) {
		t[i].key = k;
		t[i].ok = 0;
		ck_assert_int_eq(pthread_create(&th8[i], NULL, sign_thread, &t[i]), 0);
	}
	for (i = 0; i < 8; i++) {
		pthread_join(th8[i], NULL);
		ck_assert_int_eq(t[i].ok, 50);
	}
	cubeid_key_delete(k);
	cubeid_key_free(k);
}
END_TEST

START_TEST(test_sessions_recover_after_closed_from_outside)
{
	cubeid_key *k = gen(CUBEID_KEY_EC_P256, true, false);
	uint8_t sig[64];
	size_t len = sizeof(sig);
	CK_SESSION_HANDLE s;

	ck_assert_int_eq(cubeid_key_sign(k, CUBEID_SIG_ECDSA_SHA256, (uint8_t *)"a", 1, sig, &len),
	                 CUBEID_OK);
	/* Another part of the process closes every session on the slot; this
	 * also logs the token out. */
	ck_assert_int_eq(tok->f->C_CloseAllSessions(tok->slot), CKR_OK);
	len = sizeof(sig);
	ck_assert_int_eq(cubeid_key_sign(k, CUBEID_SIG_ECDSA_SHA256, (uint8_t *)"b", 1, sig, &len),
	                 CUBEID_OK);
	/* A logout from outside: the layer logs in again by itself. */
	ck_assert_int_eq(p11_session_get(tok, &s), CUBEID_OK);
	ck_assert_int_eq(tok->f->C_Logout(s), CKR_OK);
	p11_session_put(tok, s, false);
	len = sizeof(sig);
	ck_assert_int_eq(cubeid_key_sign(k, CUBEID_SIG_ECDSA_SHA256, (uint8_t *)"c", 1, sig, &len),
	                 CUBEID_OK);
	cubeid_key_delete(k);
	cubeid_key_free(k);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("pkcs11");
	TCase *keys = tcase_create("keys"), *x509 = tcase_create("x509"),
	      *fail = tcase_create("failures"), *conc = tcase_create("concurrency");
	SRunner *sr;
	int failed;

	tcase_add_checked_fixture(keys, setup, teardown);
	tcase_add_checked_fixture(x509, setup, teardown);
	tcase_add_checked_fixture(fail, setup, teardown);
	tcase_add_checked_fixture(conc, setup, teardown);
	tcase_add_test(keys, test_ec_p256_generate_sign_verify);
	tcase_add_test(keys, test_ec_p384_generate_sign_verify);
	tcase_add_test(keys, test_rsa_2048_generate_sign_verify);
	tcase_add_test(keys, test_rsa_3072_generate_sign_verify);
	tcase_add_test(keys, test_session_objects_sign_and_vanish);
	tcase_add_test(keys, test_private_key_is_sensitive_and_unextractable);
	tcase_add_test(keys, test_generated_keys_are_sign_only);
	tcase_add_test(keys, test_exportable_key_exports_matching_private);
	tcase_add_test(keys, test_find_list_uri_and_delete);
	tcase_add_test(keys, test_export_public_der_and_pem_match);
	tcase_add_test(keys, test_two_call_size_convention);
	tcase_add_test(keys, test_token_facts);
	tcase_add_test(keys, test_foreign_key_type_does_not_break_listing);
	tcase_add_test(x509, test_x509_signed_by_token_ec_key_verifies);
	tcase_add_test(x509, test_x509_signed_by_token_rsa_key_verifies);
	tcase_add_test(x509, test_evp_digestsign_with_token_key);
	tcase_add_test(fail, test_wrong_pin_is_clear_error);
	tcase_add_test(fail, test_missing_token_bad_uri_unknown_module);
	tcase_add_test(fail, test_pin_sources);
	tcase_add_test(fail, test_unknown_mechanism_is_clear_error);
	tcase_add_test(conc, test_eight_threads_sign_at_once);
	tcase_add_test(conc, test_sessions_recover_after_closed_from_outside);
	tcase_add_test(conc, test_token_outage_recovers);
	suite_add_tcase(s, keys);
	suite_add_tcase(s, x509);
	suite_add_tcase(s, fail);
	suite_add_tcase(s, conc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
