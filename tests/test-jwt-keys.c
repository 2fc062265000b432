/*
 * JWT-SVID signing keys with rollover, in a real SoftHSM2 token, driven by
 * an injected clock (no sleeps): the first key signs at once; a new key is
 * published before it signs; the old key keeps signing until then, stays in
 * the bundle until every token it signed can have expired, and is then
 * dropped (and deleted from the token); tokens it signed validate against
 * the bundle during the overlap; spiffe_sequence moves with the content.
 */
#include "config.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cubeid/ca.h>
#include <cubeid/jwt-keys.h>

#include "tests/harness.h"

#define TD      "example.org"
#define SUB     "spiffe://example.org/ns/a/sa/b"
#define T0      1900000000LL
#define MAX_TTL 600
#define PRE     120

static struct th_token th;
static cubeid_token *tok;
static char *dir;
static cubeid_spiffe_id *sub;

static void
setup(void)
{
	th_token_setup(&th);
	tok = th_token_open(&th, 0);
	dir = th_mkdtemp("cubeid-jwtkeys");
	ck_assert_int_eq(cubeid_spiffe_id_parse(SUB, strlen(SUB), &sub, NULL), CUBEID_OK);
}

static void
teardown(void)
{
	cubeid_spiffe_id_free(sub);
	sub = NULL;
	cubeid_token_free(tok);
	tok = NULL;
	th_rmtree(dir);
	free(dir);
	th_token_teardown(&th);
}

static cubeid_jwt_keys *
init_at(int64_t now)
{
	struct cubeid_jwt_keys_opts o = {0};
	cubeid_jwt_keys *k = NULL;

	o.now = now;
	o.max_ttl = MAX_TTL;
	ck_assert_int_eq(cubeid_jwt_keys_init(tok, dir, TD, &o, &k), CUBEID_OK);
	return k;
}

static char *
mint_at(const cubeid_jwt_keys *k, int64_t now, int64_t ttl)
{
	const char *aud[] = {"svc"};
	char *t = NULL;
	int rc;

	rc = cubeid_jwt_keys_mint(k, tok, now, CUBEID_SIG_NONE, sub, aud, 1, ttl, NULL, &t);
	ck_assert_msg(rc == CUBEID_OK, "mint: %s", cubeid_strerror(rc));
	return t;
}

/* Validate token against k's bundle as published at now. */
static int
validate_at(const cubeid_jwt_keys *k, const char *t, int64_t now)
{
	cubeid_jwt_bundle *b = NULL;
	int rc;

	ck_assert_int_eq(cubeid_jwt_keys_bundle(k, now, &b), CUBEID_OK);
	rc = cubeid_jwt_svid_validate(t, strlen(t), b, "svc", now, 0, NULL, NULL);
	cubeid_jwt_bundle_free(b);
	return rc;
}

static char *
kid_of(const char *t)
{
	cubeid_jws *j = NULL;
	char *kid;

	ck_assert_int_eq(cubeid_jws_decode(t, strlen(t), &j), CUBEID_OK);
	kid = strdup(cubeid_jws_kid(j));
	cubeid_jws_free(j);
	return kid;
}

static bool
key_on_token(const char *uri)
{
	cubeid_key *key = NULL;
	int rc = cubeid_key_find_uri(tok, uri, &key);

	cubeid_key_free(key);
	return rc == CUBEID_OK;
}

START_TEST(test_first_key_signs_at_once)
{
	cubeid_jwt_keys *k = init_at(T0), *again = NULL;
	struct cubeid_jwt_key_info info;
	char *t, *kid, *path;
	struct stat st;

	ck_assert_uint_eq(cubeid_jwt_keys_count(k), 1);
	ck_assert_int_eq(cubeid_jwt_keys_signer(k, T0, &info), CUBEID_OK);
	ck_assert_int_eq(info.type, CUBEID_KEY_EC_P256);
	ck_assert_int_eq(info.active_from, T0);
	ck_assert_int_eq(info.retire_after, 0);
	ck_assert(cubeid_jwt_keys_published(k, 0, T0));
	t = mint_at(k, T0, 300);
	kid = kid_of(t);
	ck_assert_str_eq(kid, info.kid);
	ck_assert_int_eq(validate_at(k, t, T0 + 1), CUBEID_OK);
	/* ES256 for an EC P-256 key */
	ck_assert_ptr_nonnull(strstr(t, "eyJhbGciOiJFUzI1NiIs"));
	/* a lifetime past max_ttl is refused: the rollover depends on it */
	{
		const char *aud[] = {"svc"};
		char *t2 = NULL;

		ck_assert_int_eq(cubeid_jwt_keys_mint(k, tok, T0, CUBEID_SIG_NONE, sub, aud, 1,
		                                      MAX_TTL + 1, NULL, &t2),
		                 CUBEID_ERR_INVALID_ARG);
		ck_assert_ptr_null(t2);
	}
	/* saved, mode 0600, and it reads back the same */
	ck_assert_int_ge(asprintf(&path, "%s/%s", dir, CUBEID_JWT_CONF), 0);
	ck_assert_int_eq(stat(path, &st), 0);
	ck_assert_int_eq(st.st_mode & 0777, 0600);
	ck_assert_int_eq(cubeid_jwt_keys_load(dir, &again), CUBEID_OK);
	ck_assert_uint_eq(cubeid_jwt_keys_count(again), 1);
	ck_assert_int_eq(cubeid_jwt_keys_max_ttl(again), MAX_TTL);
	ck_assert_int_eq(validate_at(again, t, T0 + 1), CUBEID_OK);
	ck_assert_int_eq(cubeid_jwt_keys_init(tok, dir, TD, NULL, NULL), CUBEID_ERR_EXISTS);
	free(path);
	free(kid);
	free(t);
	cubeid_jwt_keys_free(again);
	cubeid_jwt_keys_free(k);
}
END_TEST

START_TEST(test_rollover_publish_before_sign_and_retire_after_expiry)
{
	struct cubeid_jwt_keys_opts o = {0};
	cubeid_jwt_keys *k = init_at(T0);
	struct cubeid_jwt_key_info old, nw, s;
	const int64_t R = T0 + 1000; /* the rotation */
	char *t_old, *t_late, *t_new, *kid;
	char *old_uri;
	size_t dropped = 9;

	ck_assert_int_eq(cubeid_jwt_keys_at(k, 0, &old), CUBEID_OK);
	old_uri = strdup(old.uri);
	o.now = R;
	o.prepublish = PRE;
	ck_assert_int_eq(cubeid_jwt_keys_rotate(k, tok, &o), CUBEID_OK);
	ck_assert_uint_eq(cubeid_jwt_keys_count(k), 2);
	ck_assert_int_eq(cubeid_jwt_keys_at(k, 0, &old), CUBEID_OK);
	ck_assert_int_eq(cubeid_jwt_keys_at(k, 1, &nw), CUBEID_OK);
	ck_assert_str_ne(old.kid, nw.kid);
	ck_assert_int_eq(nw.publish_from, R);
	ck_assert_int_eq(nw.active_from, R + PRE);
	ck_assert_int_eq(old.retire_after, R + PRE + MAX_TTL);

	/* publish before sign: the new key is in the bundle at once ... */
	ck_assert(cubeid_jwt_keys_published(k, 1, R));
	/* ... but the old key signs until R + PRE */
	ck_assert_int_eq(cubeid_jwt_keys_signer(k, R, &s), CUBEID_OK);
	ck_assert_str_eq(s.kid, old.kid);
	ck_assert_int_eq(cubeid_jwt_keys_signer(k, R + PRE - 1, &s), CUBEID_OK);
	ck_assert_str_eq(s.kid, old.kid);
	t_old = mint_at(k, R, 300);
	/* the last token the old key signs, with the longest lifetime */
	t_late = mint_at(k, R + PRE - 1, MAX_TTL);
	kid = kid_of(t_late);
	ck_assert_str_eq(kid, old.kid);
	free(kid);

	/* rotating again while a key waits to sign is refused */
	o.now = R + 1;
	ck_assert_int_eq(cubeid_jwt_keys_rotate(k, tok, &o), CUBEID_ERR_EXISTS);
	ck_assert_uint_eq(cubeid_jwt_keys_count(k), 2);

	/* from R + PRE the new key signs */
	ck_assert_int_eq(cubeid_jwt_keys_signer(k, R + PRE, &s), CUBEID_OK);
	ck_assert_str_eq(s.kid, nw.kid);
	ck_assert(cubeid_jwt_keys_active(k, 1, R + PRE));
	ck_assert(!cubeid_jwt_keys_active(k, 0, R + PRE));
	t_new = mint_at(k, R + PRE, 300);
	kid = kid_of(t_new);
	ck_assert_str_eq(kid, nw.kid);
	free(kid);

	/* the overlap: old tokens still validate against the bundle */
	ck_assert_int_eq(validate_at(k, t_old, R + 299), CUBEID_OK);
	ck_assert_int_eq(validate_at(k, t_late, R + PRE + MAX_TTL - 2), CUBEID_OK);
	ck_assert_int_eq(validate_at(k, t_new, R + PRE + 1), CUBEID_OK);
	ck_assert(cubeid_jwt_keys_published(k, 0, R + PRE + MAX_TTL - 1));

	/* once every token it signed has expired, the old key leaves the
	 * bundle: an unknown kid now */
	ck_assert(!cubeid_jwt_keys_published(k, 0, R + PRE + MAX_TTL));
	ck_assert_int_eq(validate_at(k, t_late, R + PRE + MAX_TTL), CUBEID_ERR_JWT_KID);
	ck_assert_int_eq(validate_at(k, t_new, R + PRE + 200), CUBEID_OK);

	/* pruning before the retire time keeps it; after, drops and deletes it */
	ck_assert_int_eq(cubeid_jwt_keys_prune(k, tok, R + PRE + MAX_TTL - 1, &dropped), CUBEID_OK);
	ck_assert_uint_eq(dropped, 0);
	ck_assert(key_on_token(old_uri));
	ck_assert_int_eq(cubeid_jwt_keys_prune(k, tok, R + PRE + MAX_TTL, &dropped), CUBEID_OK);
	ck_assert_uint_eq(dropped, 1);
	ck_assert_uint_eq(cubeid_jwt_keys_count(k), 1);
	ck_assert(!key_on_token(old_uri));
	ck_assert_int_eq(cubeid_jwt_keys_signer(k, R + PRE + MAX_TTL, &s), CUBEID_OK);
	ck_assert_str_eq(s.kid, nw.kid);

	free(old_uri);
	free(t_old);
	free(t_late);
	free(t_new);
	cubeid_jwt_keys_free(k);
}
END_TEST

START_TEST(test_rotate_saved_rsa_and_ps256)
{
	struct cubeid_jwt_keys_opts o = {0};
	cubeid_jwt_keys *k = init_at(T0), *k2 = NULL;
	struct cubeid_jwt_key_info s;
	const char *aud[] = {"svc", "other"};
	char *t = NULL;

	cubeid_jwt_keys_free(k);
	o.now = T0 + 10;
	o.key_type = CUBEID_KEY_RSA_2048;
	o.prepublish = CUBEID_JWT_PREPUBLISH_NONE;
	ck_assert_int_eq(cubeid_jwt_keys_rotate_saved(tok, dir, NULL, &o, NULL), CUBEID_OK);
	ck_assert_int_eq(cubeid_jwt_keys_load(dir, &k2), CUBEID_OK);
	ck_assert_uint_eq(cubeid_jwt_keys_count(k2), 2);
	ck_assert_int_eq(cubeid_jwt_keys_signer(k2, T0 + 10, &s), CUBEID_OK);
	ck_assert_int_eq(s.type, CUBEID_KEY_RSA_2048);
	ck_assert_int_eq(cubeid_jwt_keys_default_alg(s.type), CUBEID_SIG_RSA_PKCS1_SHA256);
	ck_assert_int_eq(cubeid_jwt_keys_mint(k2, tok, T0 + 10, CUBEID_SIG_RSA_PSS_SHA256, sub, aud,
	                                      2, 60, "jti-1", &t),
	                 CUBEID_OK);
	ck_assert_int_eq(validate_at(k2, t, T0 + 11), CUBEID_OK);
	free(t);
	t = NULL;
	/* ES256 does not fit an RSA key */
	ck_assert_int_eq(cubeid_jwt_keys_mint(k2, tok, T0 + 10, CUBEID_SIG_ECDSA_SHA256, sub, aud,
	                                      1, 60, NULL, &t),
	                 CUBEID_ERR_JWT_ALG);
	/* another trust domain's state is refused */
	ck_assert_int_eq(cubeid_jwt_keys_rotate_saved(tok, dir, "other.org", &o, NULL),
	                 CUBEID_ERR_CA);
	cubeid_jwt_keys_free(k2);
}
END_TEST

START_TEST(test_spiffe_sequence_follows_content)
{
	struct cubeid_jwt_keys_opts o = {0};
	cubeid_jwt_keys *k = init_at(T0);
	cubeid_spiffe_bundle *sb = NULL;
	uint64_t seq = 0;
	int64_t hint = 0;
	bool changed = false;
	char *json = NULL;

	ck_assert_int_eq(cubeid_jwt_keys_spiffe_bundle(k, NULL, T0, &sb, &changed), CUBEID_OK);
	ck_assert(changed);
	ck_assert(cubeid_spiffe_bundle_sequence(sb, &seq));
	ck_assert_uint_eq(seq, 1);
	ck_assert(cubeid_spiffe_bundle_refresh_hint(sb, &hint));
	ck_assert_int_eq(hint, CUBEID_JWT_REFRESH_HINT_DEFAULT);
	ck_assert_uint_eq(cubeid_jwt_bundle_count(cubeid_spiffe_bundle_jwt(sb)), 1);
	ck_assert_int_eq(cubeid_spiffe_bundle_emit(sb, &json, NULL), CUBEID_OK);
	ck_assert_ptr_nonnull(strstr(json, "\"jwt-svid\""));
	free(json);
	cubeid_spiffe_bundle_free(sb);
	sb = NULL;
	/* the same content keeps its number */
	ck_assert_int_eq(cubeid_jwt_keys_spiffe_bundle(k, NULL, T0 + 5, &sb, &changed), CUBEID_OK);
	ck_assert(!changed);
	ck_assert(cubeid_spiffe_bundle_sequence(sb, &seq));
	ck_assert_uint_eq(seq, 1);
	cubeid_spiffe_bundle_free(sb);
	sb = NULL;
	/* a new key: 2; its predecessor leaving the bundle: 3 */
	o.now = T0 + 10;
	o.prepublish = PRE;
	ck_assert_int_eq(cubeid_jwt_keys_rotate(k, tok, &o), CUBEID_OK);
	ck_assert_int_eq(cubeid_jwt_keys_spiffe_bundle(k, NULL, T0 + 10, &sb, &changed), CUBEID_OK);
	ck_assert(changed);
	ck_assert_uint_eq(cubeid_jwt_keys_sequence(k), 2);
	ck_assert_uint_eq(cubeid_jwt_bundle_count(cubeid_spiffe_bundle_jwt(sb)), 2);
	cubeid_spiffe_bundle_free(sb);
	sb = NULL;
	ck_assert_int_eq(
	        cubeid_jwt_keys_spiffe_bundle(k, NULL, T0 + 10 + PRE + MAX_TTL, &sb, &changed),
	        CUBEID_OK);
	ck_assert(changed);
	ck_assert_uint_eq(cubeid_jwt_keys_sequence(k), 3);
	ck_assert_uint_eq(cubeid_jwt_bundle_count(cubeid_spiffe_bundle_jwt(sb)), 1);
	cubeid_spiffe_bundle_free(sb);
	cubeid_jwt_keys_free(k);
}
END_TEST

START_TEST(test_ca_init_creates_the_first_jwt_key)
{
	struct cubeid_ca_opts co = {0};
	cubeid_ca *ca = NULL;
	cubeid_jwt_keys *k = NULL;
	struct cubeid_jwt_key_info s;

	co.now = T0;
	ck_assert_int_eq(cubeid_ca_init(tok, dir, TD, &co, &ca), CUBEID_OK);
	ck_assert_int_eq(cubeid_jwt_keys_load(dir, &k), CUBEID_OK);
	ck_assert_str_eq(cubeid_jwt_keys_trust_domain(k), TD);
	ck_assert_uint_eq(cubeid_jwt_keys_count(k), 1);
	ck_assert_int_eq(cubeid_jwt_keys_signer(k, T0, &s), CUBEID_OK);
	ck_assert(key_on_token(s.uri));
	cubeid_jwt_keys_free(k);
	cubeid_ca_free(ca);
}
END_TEST

static void
write_conf(const char *text)
{
	char *p;

	ck_assert_int_ge(asprintf(&p, "%s/%s", dir, CUBEID_JWT_CONF), 0);
	ck_assert_int_eq(cubeid_atomic_write(p, text, strlen(text), 0600), CUBEID_OK);
	free(p);
}

START_TEST(test_malformed_jwt_conf_is_refused)
{
	cubeid_jwt_keys *k = NULL;

	ck_assert_int_eq(cubeid_jwt_keys_load(dir, &k), CUBEID_ERR_NOT_FOUND);
	write_conf("version=1\ntrust_domain=" TD "\nmax_ttl=600\nrefresh_hint=60\nbogus=1\n");
	ck_assert_int_eq(cubeid_jwt_keys_load(dir, &k), CUBEID_ERR_CONFIG);
	write_conf("version=2\ntrust_domain=" TD "\nmax_ttl=600\nrefresh_hint=60\n");
	ck_assert_int_eq(cubeid_jwt_keys_load(dir, &k), CUBEID_ERR_CONFIG);
	write_conf("version=1\ntrust_domain=" TD "\nmax_ttl=0\nrefresh_hint=60\n");
	ck_assert_int_eq(cubeid_jwt_keys_load(dir, &k), CUBEID_ERR_CONFIG);
	/* a kid that does not name the key */
	write_conf("version=1\ntrust_domain=" TD "\nmax_ttl=600\nrefresh_hint=60\n"
	           "key=abc ec-p256 1 1 1 0 AAAA pkcs11:object=x\n");
	ck_assert_int_eq(cubeid_jwt_keys_load(dir, &k), CUBEID_ERR_CONFIG);
	ck_assert_ptr_null(k);
	/* no keys at all is a valid (empty) state */
	write_conf("version=1\ntrust_domain=" TD "\nmax_ttl=600\nrefresh_hint=60\n");
	ck_assert_int_eq(cubeid_jwt_keys_load(dir, &k), CUBEID_OK);
	ck_assert_uint_eq(cubeid_jwt_keys_count(k), 0);
	cubeid_jwt_keys_free(k);
}
END_TEST

static Suite *
suite(void)
{
	Suite *s = suite_create("jwt-keys");
	TCase *tc = tcase_create("jwt-keys");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_first_key_signs_at_once);
	tcase_add_test(tc, test_rollover_publish_before_sign_and_retire_after_expiry);
	tcase_add_test(tc, test_rotate_saved_rsa_and_ps256);
	tcase_add_test(tc, test_spiffe_sequence_follows_content);
	tcase_add_test(tc, test_ca_init_creates_the_first_jwt_key);
	tcase_add_test(tc, test_malformed_jwt_conf_is_refused);
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
