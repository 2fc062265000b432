/*
 * One key in several tokens (<cubeid/key-wrap.h>) in a real token: a node
 * wrapping key (unwrap only), a cluster key generated sensitive, wrapped for
 * the node inside the token and unwrapped into a persistent key that is
 * sensitive and non-extractable and signs like the original; a document for
 * another node's wrapping key, or tampered with, is refused; neither key can
 * be read out in clear.  In the TPM lane (tests/tpm/lane.sh) the test
 * records what tpm2-pkcs11 allows: each step either works as on SoftHSM2 or
 * fails cleanly with CUBEID_ERR_UNSUPPORTED, and the result is printed.
 */
#include "config.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

#include <cubeid/jwt.h>
#include <cubeid/key-wrap.h>

#include "tests/harness.h"
#include "tests/p11-attr-util.h"

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
	th_token_teardown(&th);
}

static int
verify_rs256(EVP_PKEY *pub, cubeid_key *k)
{
	static const uint8_t msg[] = "hello";
	uint8_t sig[1024];
	size_t sl = sizeof(sig);
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	int ok;

	ck_assert_int_eq(
	        cubeid_key_sign(k, CUBEID_SIG_RSA_PKCS1_SHA256, msg, sizeof(msg), sig, &sl),
	        CUBEID_OK);
	ok = EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, pub) == 1 &&
	     EVP_DigestVerify(md, sig, sl, msg, sizeof(msg)) == 1;
	EVP_MD_CTX_free(md);
	return ok;
}

/* A well-formed document for wrap whose blobs are random: what a token
 * does with C_UnwrapKey at all, without a token that can wrap. */
static char *
synthetic_doc(cubeid_key *wrap)
{
	EVP_PKEY *wpub = NULL, *ck = EVP_RSA_gen(2048);
	char kid[CUBEID_KID_LEN + 1], wkid[CUBEID_KID_LEN + 1], *b_spki, *b_cek, *b_wk, *doc;
	unsigned char *spki = NULL;
	uint8_t rnd[384];
	int n;

	ck_assert_ptr_nonnull(ck);
	ck_assert_int_eq(cubeid_key_public(wrap, &wpub), CUBEID_OK);
	ck_assert_int_eq(cubeid_kid_from_pkey(ck, kid), CUBEID_OK);
	ck_assert_int_eq(cubeid_kid_from_pkey(wpub, wkid), CUBEID_OK);
	ck_assert_int_gt(n = i2d_PUBKEY(ck, &spki), 0);
	memset(rnd, 0x5a, sizeof(rnd));
	ck_assert_int_eq(cubeid_b64url_encode_alloc(spki, (size_t)n, &b_spki), CUBEID_OK);
	ck_assert_int_eq(cubeid_b64url_encode_alloc(rnd, 384, &b_cek), CUBEID_OK);
	ck_assert_int_eq(cubeid_b64url_encode_alloc(rnd, 200, &b_wk), CUBEID_OK);
	ck_assert_int_ge(asprintf(&doc,
	                          "{\"v\":1,\"enc\":\"RSA-OAEP+AES-KWP\",\"kid\":\"%s\","
	                          "\"wrapping_kid\":\"%s\",\"public_key\":\"%s\","
	                          "\"wrapped_cek\":\"%s\",\"wrapped_key\":\"%s\"}",
	                          kid, wkid, b_spki, b_cek, b_wk),
	                 0);
	OPENSSL_free(spki);
	free(b_spki);
	free(b_cek);
	free(b_wk);
	EVP_PKEY_free(ck);
	EVP_PKEY_free(wpub);
	return doc;
}

/* What the token does with C_UnwrapKey: on SoftHSM2 the garbage does not
 * unwrap; on tpm2-pkcs11 the function is refused as unsupported. */
START_TEST(test_unwrap_measured)
{
	cubeid_key *wrap = NULL, *imp = NULL;
	char *doc;
	int rc;

	rc = cubeid_wrapping_key_generate(tok, "node-wrap-2", &wrap);
	if (th_is_tpm(&th))
		printf("TPM lane: generating an RSA-3072 unwrap-only key pair: %s\n",
		       rc == CUBEID_OK ? "works" : cubeid_strerror(rc));
	if (rc != CUBEID_OK) {
		ck_assert(th_is_tpm(&th) && rc == CUBEID_ERR_UNSUPPORTED);
		return;
	}
	doc = synthetic_doc(wrap);
	rc = cubeid_key_unwrap_import(wrap, doc, strlen(doc), "never", &imp);
	if (th_is_tpm(&th))
		printf("TPM lane: C_UnwrapKey with the node's wrapping key: %s\n",
		       cubeid_strerror(rc));
	ck_assert_int_ne(rc, CUBEID_OK);
	ck_assert_ptr_null(imp);
	if (th_is_tpm(&th))
		ck_assert_int_eq(rc, CUBEID_ERR_UNSUPPORTED);
	free(doc);
	cubeid_key_delete(wrap);
	cubeid_key_free(wrap);
}
END_TEST

START_TEST(test_wrap_unwrap_custody)
{
	cubeid_key *wrap = NULL, *other = NULL, *ck = NULL, *imp = NULL, *imp2 = NULL;
	EVP_PKEY *wpub = NULL, *opub = NULL, *cpub = NULL, *priv = NULL;
	struct cubeid_wrapped_info info;
	char *doc = NULL, *bad;
	int rc;

	rc = cubeid_wrapping_key_generate(tok, "node-wrap", &wrap);
	if (th_is_tpm(&th) && rc != CUBEID_OK) {
		printf("TPM lane: generating an RSA-3072 unwrap-only key pair: %s\n",
		       cubeid_strerror(rc));
		ck_assert_int_eq(rc, CUBEID_ERR_UNSUPPORTED);
		return;
	}
	ck_assert_int_eq(rc, CUBEID_OK);
	rc = cubeid_cluster_key_generate(tok, "cluster-picod", &ck);
	if (th_is_tpm(&th) && rc != CUBEID_OK) {
		printf("TPM lane: generating a sensitive, extractable RSA-2048 key: %s\n",
		       cubeid_strerror(rc));
		ck_assert_int_eq(rc, CUBEID_ERR_UNSUPPORTED);
		cubeid_key_delete(wrap);
		cubeid_key_free(wrap);
		return;
	}
	ck_assert_int_eq(rc, CUBEID_OK);
	/* the wrapping pair wraps and unwraps, nothing else; the cluster key
	 * signs, nothing else */
	ck_assert_int_eq(pat_bool(wrap, false, CKA_UNWRAP), CK_TRUE);
	ck_assert_int_eq(pat_bool(wrap, true, CKA_WRAP), CK_TRUE);
	ck_assert_int_ne(pat_bool(wrap, false, CKA_SIGN), CK_TRUE);
	ck_assert_int_ne(pat_bool(wrap, false, CKA_DERIVE), CK_TRUE);
	ck_assert_int_ne(pat_bool(wrap, true, CKA_VERIFY), CK_TRUE);
	if (!th_is_tpm(&th)) {
		ck_assert_int_ne(pat_bool(wrap, false, CKA_DECRYPT), CK_TRUE);
		ck_assert_int_ne(pat_bool(wrap, true, CKA_ENCRYPT), CK_TRUE);
	}
	pat_assert_sign_only(ck, !th_is_tpm(&th));
	ck_assert_int_eq(cubeid_key_public(wrap, &wpub), CUBEID_OK);
	ck_assert_int_eq(cubeid_key_public(ck, &cpub), CUBEID_OK);
	/* the cluster key is never readable in clear */
	ck_assert_int_ne(cubeid_key_export_private(ck, &priv), CUBEID_OK);
	ck_assert_ptr_null(priv);

	rc = cubeid_key_wrap_for(ck, wpub, &doc);
	if (th_is_tpm(&th)) {
		printf("TPM lane: C_WrapKey (AES-KWP, RSA-OAEP): %s\n", cubeid_strerror(rc));
		ck_assert(rc == CUBEID_OK || rc == CUBEID_ERR_UNSUPPORTED);
		if (rc != CUBEID_OK)
			goto out;
	}
	ck_assert_int_eq(rc, CUBEID_OK);
	ck_assert_int_eq(cubeid_wrapped_parse(doc, strlen(doc), &info), CUBEID_OK);
	ck_assert_int_eq(EVP_PKEY_eq(info.pub, cpub), 1);
	cubeid_wrapped_info_clear(&info);

	rc = cubeid_key_unwrap_import(wrap, doc, strlen(doc), "cluster-picod-imported", &imp);
	if (th_is_tpm(&th)) {
		printf("TPM lane: C_UnwrapKey: %s\n", cubeid_strerror(rc));
		ck_assert(rc == CUBEID_OK || rc == CUBEID_ERR_UNSUPPORTED);
		if (rc != CUBEID_OK)
			goto out;
	}
	ck_assert_msg(rc == CUBEID_OK, "import: %s", cubeid_strerror(rc));
	/* it arrived non-extractable and sensitive, and signs as the original */
	ck_assert(!cubeid_key_is_exportable(imp));
	ck_assert_int_eq(cubeid_key_export_private(imp, &priv), CUBEID_ERR_P11_SENSITIVE);
	ck_assert(cubeid_key_is_persistent(imp));
	ck_assert(verify_rs256(cpub, imp));
	pat_assert_sign_only(imp, true);
	/* the label is taken now */
	ck_assert_int_eq(
	        cubeid_key_unwrap_import(wrap, doc, strlen(doc), "cluster-picod-imported", &imp2),
	        CUBEID_ERR_EXISTS);
	/* a document for another node's wrapping key */
	ck_assert_int_eq(cubeid_wrapping_key_generate(tok, "other-wrap", &other), CUBEID_OK);
	ck_assert_int_eq(cubeid_key_unwrap_import(other, doc, strlen(doc), "x", &imp2),
	                 CUBEID_ERR_P11_KEY);
	/* tampered with: the wrapped key no longer unwraps */
	bad = strdup(doc);
	{
		char *w = strstr(bad, "\"wrapped_key\": \"");

		ck_assert_ptr_nonnull(w);
		w += strlen("\"wrapped_key\": \"") + 10;
		*w = *w == 'A' ? 'B' : 'A';
	}
	ck_assert_int_ne(cubeid_key_unwrap_import(wrap, bad, strlen(bad), "y", &imp2), CUBEID_OK);
	ck_assert_ptr_null(imp2);
	free(bad);
	/* a document whose public key is not the wrapped key's */
	ck_assert_int_eq(cubeid_key_public(other, &opub), CUBEID_OK);
	ck_assert_int_eq(cubeid_wrapped_parse("{}", 2, &info), CUBEID_ERR_PARSE);
	ck_assert_int_eq(cubeid_wrapped_parse("[", 1, &info), CUBEID_ERR_PARSE);
out:
	if (imp != NULL)
		cubeid_key_delete(imp);
	cubeid_key_free(imp);
	if (other != NULL)
		cubeid_key_delete(other);
	cubeid_key_free(other);
	cubeid_key_delete(ck);
	cubeid_key_free(ck);
	cubeid_key_delete(wrap);
	cubeid_key_free(wrap);
	EVP_PKEY_free(wpub);
	EVP_PKEY_free(opub);
	EVP_PKEY_free(cpub);
	free(doc);
}
END_TEST

static Suite *
suite(void)
{
	Suite *s = suite_create("key-wrap");
	TCase *tc = tcase_create("key-wrap");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 300);
	tcase_add_test(tc, test_wrap_unwrap_custody);
	tcase_add_test(tc, test_unwrap_measured);
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
