/*
 * JWT-SVIDs signed in a real token (SoftHSM2 via tests/harness.h, or the TPM
 * lane): mint with cubeid_jwt_svid_mint(), then validate with our verifier,
 * with libjwt 1.10.2, and with a bundle built from the key's exported JWK.
 */
#include "config.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jwt.h>
#include <openssl/pem.h>

#include <cubeid/jwt.h>

#include "tests/ecdsa-test-util.h"
#include "tests/harness.h"

#define SUB "spiffe://cluster.local/ns/agentcube-system/sa/agentcube-router"

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

static cubeid_key *
gen(cubeid_key_type type)
{
	struct cubeid_keygen_opts o = {0};
	cubeid_key *k = NULL;
	char label[64];
	static int n;
	int r;

	snprintf(label, sizeof(label), "jwt-%s-%d-%d", cubeid_key_type_name(type), (int)getpid(),
	         ++n);
	o.type = type;
	o.label = label;
	o.persistent = th_is_tpm(&th); /* tpm2-pkcs11 rejects session objects */
	r = cubeid_key_generate(tok, &o, &k);
	ck_assert_msg(r == CUBEID_OK, "generate %s: %s", label, cubeid_strerror(r));
	return k;
}

/* Mint with key/alg, validate with our verifier (kid convention) and libjwt. */
static void
mint_and_verify(cubeid_key_type type, cubeid_sig_alg alg, bool libjwt_too)
{
	cubeid_key *key = gen(type);
	cubeid_spiffe_id *id = NULL, *got = NULL;
	cubeid_jwt_bundle *b = NULL;
	const char *aud[] = {"sandbox-1"};
	char kid[CUBEID_KID_LEN + 1], *t = NULL;
	EVP_PKEY *pub = NULL;
	json_t *claims = NULL;
	int r;

	ck_assert_int_eq(cubeid_key_public(key, &pub), CUBEID_OK);
	ck_assert_int_eq(cubeid_kid_from_pkey(pub, kid), CUBEID_OK);
	ck_assert_int_eq(cubeid_spiffe_id_parse(SUB, strlen(SUB), &id, NULL), CUBEID_OK);
	r = cubeid_jwt_svid_mint(key, alg, kid, id, aud, 1, 300, "session-42", &t);
	ck_assert_msg(r == CUBEID_OK, "mint %s: %s", cubeid_jws_alg_name(alg), cubeid_strerror(r));

	ck_assert_int_eq(cubeid_jwt_bundle_new("cluster.local", &b), CUBEID_OK);
	ck_assert_int_eq(cubeid_jwt_bundle_add(b, kid, pub), CUBEID_OK);
	ck_assert_int_eq(
	        cubeid_jwt_svid_validate(t, strlen(t), b, "sandbox-1", 0, 0, &got, &claims),
	        CUBEID_OK);
	ck_assert(cubeid_spiffe_id_equal(got, id));
	ck_assert_str_eq(json_string_value(json_object_get(claims, "jti")), "session-42");
	ck_assert_int_eq(cubeid_jwt_svid_validate(t, strlen(t), b, "sandbox-2", 0, 0, NULL, NULL),
	                 CUBEID_ERR_JWT_AUDIENCE);

	if (libjwt_too) {
		BIO *bio = BIO_new(BIO_s_mem());
		char *pem;
		long n;
		jwt_t *j = NULL;

		ck_assert_int_eq(PEM_write_bio_PUBKEY(bio, pub), 1);
		n = BIO_get_mem_data(bio, &pem);
		ck_assert_int_eq(jwt_decode(&j, t, (const unsigned char *)pem, (int)n), 0);
		ck_assert_str_eq(jwt_get_grant(j, "sub"), SUB);
		jwt_free(j);
		BIO_free(bio);
	}
	json_decref(claims);
	cubeid_spiffe_id_free(got);
	cubeid_spiffe_id_free(id);
	cubeid_jwt_bundle_free(b);
	EVP_PKEY_free(pub);
	free(t);
	if (th_is_tpm(&th))
		cubeid_key_delete(key);
	cubeid_key_free(key);
}

START_TEST(test_token_es256_mint_verifies)
{
	mint_and_verify(CUBEID_KEY_EC_P256, CUBEID_SIG_ECDSA_SHA256, true);
}
END_TEST

START_TEST(test_token_es384_mint_verifies)
{
	mint_and_verify(CUBEID_KEY_EC_P384, CUBEID_SIG_ECDSA_SHA384, true);
}
END_TEST

START_TEST(test_token_rs256_mint_verifies)
{
	mint_and_verify(CUBEID_KEY_RSA_2048, CUBEID_SIG_RSA_PKCS1_SHA256, true);
}
END_TEST

START_TEST(test_token_ps256_mint_verifies)
{
	cubeid_key *key = gen(CUBEID_KEY_RSA_2048);
	uint8_t sig[512];
	size_t sig_len = sizeof(sig);
	int r = cubeid_key_sign(key, CUBEID_SIG_RSA_PSS_SHA256, (const uint8_t *)"x", 1, sig,
	                        &sig_len);

	if (th_is_tpm(&th))
		cubeid_key_delete(key);
	cubeid_key_free(key);
	if (r == CUBEID_ERR_P11_MECHANISM)
		return; /* the token has no RSA-PSS; nothing to test here */
	ck_assert_int_eq(r, CUBEID_OK);
	mint_and_verify(CUBEID_KEY_RSA_2048, CUBEID_SIG_RSA_PSS_SHA256,
	                false); /* libjwt has no PS* */
}
END_TEST

/* The key cannot make an alg it does not fit, and the error says so. */
/* The token's raw r||s may be high-S; what we mint never is (verifiers
 * accept only low-S).  300 high-S-free tokens by chance: 2^-300. */
START_TEST(test_token_es_mints_are_low_s)
{
	cubeid_key *key = gen(CUBEID_KEY_EC_P256), *k384 = gen(CUBEID_KEY_EC_P384);
	cubeid_spiffe_id *id = NULL;
	const char *aud[] = {"sandbox-1"};
	char *t = NULL;
	int i;

	ck_assert_int_eq(cubeid_spiffe_id_parse(SUB, strlen(SUB), &id, NULL), CUBEID_OK);
	for (i = 0; i < 300; i++) {
		ck_assert_int_eq(cubeid_jwt_svid_mint(key, CUBEID_SIG_ECDSA_SHA256, "k", id, aud, 1,
		                                      60, NULL, &t),
		                 CUBEID_OK);
		ck_assert_msg(etu_low_s(t), "ES256 token %d is high-S", i);
		free(t);
	}
	for (i = 0; i < 50; i++) {
		ck_assert_int_eq(cubeid_jwt_svid_mint(k384, CUBEID_SIG_ECDSA_SHA384, "k", id, aud,
		                                      1, 60, NULL, &t),
		                 CUBEID_OK);
		ck_assert_msg(etu_low_s(t), "ES384 token %d is high-S", i);
		free(t);
	}
	cubeid_spiffe_id_free(id);
	if (th_is_tpm(&th)) {
		cubeid_key_delete(key);
		cubeid_key_delete(k384);
	}
	cubeid_key_free(key);
	cubeid_key_free(k384);
}
END_TEST

START_TEST(test_token_alg_mismatch_is_refused)
{
	cubeid_key *key = gen(CUBEID_KEY_EC_P256);
	cubeid_spiffe_id *id = NULL;
	const char *aud[] = {"a"};
	char *t = NULL;
	int r;

	ck_assert_int_eq(cubeid_spiffe_id_parse(SUB, strlen(SUB), &id, NULL), CUBEID_OK);
	r = cubeid_jwt_svid_mint(key, CUBEID_SIG_RSA_PKCS1_SHA256, "k", id, aud, 1, 60, NULL, &t);
	ck_assert_int_ne(r, CUBEID_OK);
	ck_assert_ptr_null(t);
	cubeid_spiffe_id_free(id);
	if (th_is_tpm(&th))
		cubeid_key_delete(key);
	cubeid_key_free(key);
}
END_TEST

/* cubeid_key_export_jwk() gives a JWK we can read back. */
START_TEST(test_token_export_jwk)
{
	cubeid_key *key = gen(CUBEID_KEY_EC_P256);
	EVP_PKEY *pub = NULL, *back = NULL;
	char kid[CUBEID_KID_LEN + 1];
	uint8_t *out = NULL;
	size_t len = 0;
	json_t *j;

	ck_assert_int_eq(cubeid_key_export_jwk(key, &out, &len), CUBEID_OK);
	ck_assert_uint_eq(strlen((char *)out), len);
	j = json_loadb((const char *)out, len, 0, NULL);
	ck_assert_ptr_nonnull(j);
	ck_assert_int_eq(cubeid_jwk_to_pkey(j, &back), CUBEID_OK);
	ck_assert_int_eq(cubeid_key_public(key, &pub), CUBEID_OK);
	ck_assert_int_eq(EVP_PKEY_eq(pub, back), 1);
	ck_assert_int_eq(cubeid_kid_from_pkey(pub, kid), CUBEID_OK);
	ck_assert_str_eq(json_string_value(json_object_get(j, "kid")), kid);
	json_decref(j);
	free(out);
	EVP_PKEY_free(pub);
	EVP_PKEY_free(back);
	if (th_is_tpm(&th))
		cubeid_key_delete(key);
	cubeid_key_free(key);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("jwt-mint");
	TCase *tc = tcase_create("token");
	SRunner *sr;
	int failed;

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_token_es256_mint_verifies);
	tcase_add_test(tc, test_token_es384_mint_verifies);
	tcase_add_test(tc, test_token_rs256_mint_verifies);
	tcase_add_test(tc, test_token_ps256_mint_verifies);
	tcase_add_test(tc, test_token_alg_mismatch_is_refused);
	tcase_add_test(tc, test_token_es_mints_are_low_s);
	tcase_add_test(tc, test_token_export_jwk);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
