/*
 * PicoD tokens: sandbox names and audiences, the claims we mint, and the
 * PicoD-side verifier: the replay fix (a token for sandbox A refused by
 * sandbox B, another session refused), expiry, alg=none, HS256 keyed with
 * the public key, bad signatures, the Authorization header, and the key
 * sources (one PEM key, a JWKS, a caller's own).
 */
#include "config.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/hmac.h>
#include <openssl/pem.h>

#include <cubeid/picod-auth.h>
#include <cubeid/picod.h>

#include "tests/ecdsa-test-util.h"

#define SUB "spiffe://cluster.local/ns/agentcube-system/sa/agentcube-router"

static EVP_PKEY *k_rsa, *k_rsa2, *k_p256;
static char *pem_rsa, *pem_p256;
static int64_t now;

static char *
pub_pem(EVP_PKEY *k)
{
	BIO *b = BIO_new(BIO_s_mem());
	char *data, *s;
	long n;

	if (b == NULL || PEM_write_bio_PUBKEY(b, k) != 1) {
		fprintf(stderr, "PEM_write_bio_PUBKEY failed\n");
		exit(EXIT_FAILURE);
	}
	n = BIO_get_mem_data(b, &data);
	s = strndup(data, (size_t)n);
	BIO_free(b);
	return s;
}

/* A token like the agent's, for sandbox ns/sb and session, at iat. */
static char *
mint_full(EVP_PKEY *k, cubeid_sig_alg alg, const char *kid, const char *ns, const char *sb,
          const char *session, int64_t iat, int64_t ttl)
{
	struct cubeid_picod_claims_in in = {0};
	char *aud = NULL, *tok = NULL;

	ck_assert_int_eq(cubeid_picod_audience(ns, sb, &aud), CUBEID_OK);
	in.sub = SUB;
	in.aud = aud;
	in.session_id = session;
	in.user_sub = "alice";
	in.user_email = "alice@example.org";
	in.jti = "0123456789abcdef";
	in.iat = iat;
	in.ttl = ttl;
	ck_assert_int_eq(cubeid_picod_token_encode(&in, alg, kid, cubeid_jws_sign_evp, k, &tok),
	                 CUBEID_OK);
	free(aud);
	return tok;
}

static char *
mint(const char *sb, const char *session)
{
	return mint_full(k_rsa, CUBEID_SIG_RSA_PKCS1_SHA256, "kid-rsa", NULL, sb, session, now,
	                 300);
}

/* Sign arbitrary header and claims JSON with k (alg from the header). */
static char *
mint_raw(const char *hdr, const char *claims, EVP_PKEY *k, cubeid_sig_alg alg)
{
	char *h = NULL, *c = NULL, *s = NULL, *out;
	uint8_t sig[1024];
	size_t sig_len = sizeof(sig), n;
	char *input;

	ck_assert_int_eq(cubeid_b64url_encode_alloc((const uint8_t *)hdr, strlen(hdr), &h), 0);
	ck_assert_int_eq(cubeid_b64url_encode_alloc((const uint8_t *)claims, strlen(claims), &c),
	                 0);
	n = strlen(h) + strlen(c) + 2;
	input = malloc(n);
	snprintf(input, n, "%s.%s", h, c);
	if (k != NULL)
		ck_assert_int_eq(cubeid_jws_sign_evp(k, alg, (const uint8_t *)input, strlen(input),
		                                     sig, &sig_len),
		                 0);
	else
		sig_len = 0;
	ck_assert_int_eq(cubeid_b64url_encode_alloc(sig, sig_len, &s), 0);
	out = malloc(strlen(input) + strlen(s) + 2);
	sprintf(out, "%s.%s", input, s);
	free(h);
	free(c);
	free(s);
	free(input);
	return out;
}

/* A verifier for sandbox default/sb (NULL: aud unchecked) with the RSA PEM. */
static cubeid_picod_verifier *
verifier(const char *sb, const char *session)
{
	struct cubeid_picod_verifier_opts o = {0};
	cubeid_picod_verifier *v = NULL;

	o.sandbox = sb;
	o.session_id = session;
	o.leeway = -1;
	ck_assert_int_eq(cubeid_picod_verifier_new(&o, &v), CUBEID_OK);
	ck_assert_int_eq(cubeid_picod_verifier_set_pem(v, pem_rsa, strlen(pem_rsa)), CUBEID_OK);
	return v;
}

static int
check(cubeid_picod_verifier *v, const char *tok)
{
	return cubeid_picod_verify_token(v, tok, strlen(tok), now, NULL);
}

START_TEST(test_names_and_audience)
{
	char *aud = NULL;

	ck_assert(cubeid_picod_name_ok("sb-1"));
	ck_assert(cubeid_picod_name_ok("a.b-c.d"));
	ck_assert(!cubeid_picod_name_ok(""));
	ck_assert(!cubeid_picod_name_ok("Upper"));
	ck_assert(!cubeid_picod_name_ok("-a"));
	ck_assert(!cubeid_picod_name_ok("a."));
	ck_assert(!cubeid_picod_name_ok("a..b"));
	ck_assert(!cubeid_picod_name_ok("a/b"));
	ck_assert(cubeid_picod_namespace_ok("agentcube-system"));
	ck_assert(!cubeid_picod_namespace_ok("a.b"));
	ck_assert_int_eq(cubeid_picod_audience(NULL, "sb", &aud), CUBEID_OK);
	ck_assert_str_eq(aud, "picod:default/sb");
	free(aud);
	ck_assert_int_eq(cubeid_picod_audience("team-a", "sb", &aud), CUBEID_OK);
	ck_assert_str_eq(aud, "picod:team-a/sb");
	free(aud);
	ck_assert_int_eq(cubeid_picod_audience("team-a", "../x", &aud), CUBEID_ERR_INVALID_ARG);
	ck_assert_ptr_null(aud);
}
END_TEST

/* The claims: today's PicoD claims, plus aud, sub and jti. */
START_TEST(test_encode_claims)
{
	char *tok = mint("sb-a", "sess-1");
	cubeid_jws *j = NULL;
	json_t *c;
	struct cubeid_picod_claims_in in = {0};
	char *bad = NULL;

	ck_assert_int_eq(cubeid_jws_decode(tok, strlen(tok), &j), CUBEID_OK);
	ck_assert_int_eq(cubeid_jws_alg(j), CUBEID_SIG_RSA_PKCS1_SHA256);
	ck_assert_str_eq(cubeid_jws_kid(j), "kid-rsa");
	ck_assert_str_eq(cubeid_jws_typ(j), "JWT");
	c = cubeid_jws_claims(j);
	ck_assert_str_eq(json_string_value(json_object_get(c, "iss")), "agentcube-router");
	ck_assert_int_eq(json_integer_value(json_object_get(c, "iat")), now);
	ck_assert_int_eq(json_integer_value(json_object_get(c, "exp")), now + 300);
	ck_assert_str_eq(json_string_value(json_object_get(c, "session_id")), "sess-1");
	ck_assert_str_eq(json_string_value(json_object_get(c, "user_sub")), "alice");
	ck_assert_str_eq(json_string_value(json_object_get(c, "user_email")), "alice@example.org");
	ck_assert_str_eq(json_string_value(json_object_get(c, "aud")), "picod:default/sb-a");
	ck_assert_str_eq(json_string_value(json_object_get(c, "sub")), SUB);
	ck_assert_str_eq(json_string_value(json_object_get(c, "jti")), "0123456789abcdef");
	cubeid_jws_free(j);
	free(tok);
	/* refused inputs: lifetime over 5 min, no session, no audience */
	in.sub = SUB;
	in.aud = "picod:default/sb";
	in.session_id = "s";
	in.jti = "j";
	in.iat = now;
	in.ttl = 301;
	ck_assert_int_eq(cubeid_picod_token_encode(&in, CUBEID_SIG_RSA_PKCS1_SHA256, NULL,
	                                           cubeid_jws_sign_evp, k_rsa, &bad),
	                 CUBEID_ERR_INVALID_ARG);
	in.ttl = 60;
	in.session_id = "";
	ck_assert_int_eq(cubeid_picod_token_encode(&in, CUBEID_SIG_RSA_PKCS1_SHA256, NULL,
	                                           cubeid_jws_sign_evp, k_rsa, &bad),
	                 CUBEID_ERR_INVALID_ARG);
	in.session_id = "s";
	in.aud = NULL;
	ck_assert_int_eq(cubeid_picod_token_encode(&in, CUBEID_SIG_RSA_PKCS1_SHA256, NULL,
	                                           cubeid_jws_sign_evp, k_rsa, &bad),
	                 CUBEID_ERR_INVALID_ARG);
	ck_assert_ptr_null(bad);
}
END_TEST

START_TEST(test_verify_accepts)
{
	cubeid_picod_verifier *v = verifier("sb-a", "sess-1");
	struct cubeid_picod_verified *r = NULL;
	char *tok = mint("sb-a", "sess-1"), hdr[4096];

	snprintf(hdr, sizeof(hdr), "Bearer %s", tok);
	ck_assert_int_eq(cubeid_picod_verify_header(v, hdr, now, &r), CUBEID_OK);
	ck_assert_str_eq(r->sub, SUB);
	ck_assert_str_eq(r->session_id, "sess-1");
	ck_assert_str_eq(r->user_sub, "alice");
	ck_assert_str_eq(r->user_email, "alice@example.org");
	ck_assert_str_eq(r->iss, "agentcube-router");
	ck_assert_str_eq(r->kid, "kid-rsa");
	ck_assert_int_eq(r->exp, now + 300);
	cubeid_picod_verified_free(r);
	/* inside the 60 s leeway after exp */
	ck_assert_int_eq(cubeid_picod_verify_token(v, tok, strlen(tok), now + 330, NULL),
	                 CUBEID_OK);
	free(tok);
	cubeid_picod_verifier_free(v);
}
END_TEST

/* The replay fix: a token for sandbox A is refused by sandbox B (and by a
 * same-named sandbox in another namespace), and by another session. */
START_TEST(test_replay_other_sandbox)
{
	cubeid_picod_verifier *a = verifier("sb-a", NULL), *b = verifier("sb-b", NULL);
	cubeid_picod_verifier *compat = verifier(NULL, NULL), *sess = verifier("sb-a", "sess-2");
	struct cubeid_picod_verifier_opts o = {.ns = "other", .sandbox = "sb-a", .leeway = -1};
	cubeid_picod_verifier *ns = NULL;
	char *tok = mint("sb-a", "sess-1");

	ck_assert_int_eq(check(a, tok), CUBEID_OK);
	ck_assert_int_eq(check(b, tok), CUBEID_ERR_JWT_AUDIENCE);
	ck_assert_int_eq(cubeid_picod_verifier_new(&o, &ns), CUBEID_OK);
	ck_assert_int_eq(cubeid_picod_verifier_set_pem(ns, pem_rsa, strlen(pem_rsa)), CUBEID_OK);
	ck_assert_int_eq(check(ns, tok), CUBEID_ERR_JWT_AUDIENCE);
	ck_assert_int_eq(check(sess, tok), CUBEID_ERR_PICOD_SESSION);
	/* today's PicoD (no aud check) accepts it anywhere: the replay */
	ck_assert_int_eq(check(compat, tok), CUBEID_OK);
	free(tok);
	/* a token without aud (today's Router) is refused by a checking PicoD */
	{
		char claims[256];

		snprintf(claims, sizeof(claims),
		         "{\"exp\":%lld,\"iat\":%lld,\"iss\":\"agentcube-router\","
		         "\"session_id\":\"sess-1\"}",
		         (long long)now + 300, (long long)now);
		tok = mint_raw("{\"alg\":\"RS256\",\"typ\":\"JWT\"}", claims, k_rsa,
		               CUBEID_SIG_RSA_PKCS1_SHA256);
		ck_assert_int_eq(check(compat, tok), CUBEID_OK);
		ck_assert_int_eq(check(a, tok), CUBEID_ERR_JWT_AUDIENCE);
		free(tok);
	}
	cubeid_picod_verifier_free(a);
	cubeid_picod_verifier_free(b);
	cubeid_picod_verifier_free(ns);
	cubeid_picod_verifier_free(compat);
	cubeid_picod_verifier_free(sess);
}
END_TEST

START_TEST(test_reject_expired_and_future)
{
	cubeid_picod_verifier *v = verifier("sb-a", NULL);
	char *tok;

	/* exp 10 s past the 60 s leeway */
	tok = mint_full(k_rsa, CUBEID_SIG_RSA_PKCS1_SHA256, "k", NULL, "sb-a", "s", now - 370, 300);
	ck_assert_int_eq(check(v, tok), CUBEID_ERR_JWT_EXPIRED);
	free(tok);
	/* issued 2 minutes in the future */
	tok = mint_full(k_rsa, CUBEID_SIG_RSA_PKCS1_SHA256, "k", NULL, "sb-a", "s", now + 120, 300);
	ck_assert_int_eq(check(v, tok), CUBEID_ERR_JWT_NOT_YET);
	free(tok);
	cubeid_picod_verifier_free(v);
}
END_TEST

START_TEST(test_reject_alg_none)
{
	cubeid_picod_verifier *v = verifier("sb-a", NULL);
	char claims[512], *tok;

	snprintf(claims, sizeof(claims),
	         "{\"exp\":%lld,\"iat\":%lld,\"aud\":\"picod:default/sb-a\",\"session_id\":\"s\"}",
	         (long long)now + 300, (long long)now);
	tok = mint_raw("{\"alg\":\"none\",\"typ\":\"JWT\"}", claims, NULL, CUBEID_SIG_NONE);
	ck_assert_int_eq(check(v, tok), CUBEID_ERR_JWT_ALG);
	free(tok);
	/* an allowed JWS alg that PicoD tokens do not use */
	tok = mint_raw("{\"alg\":\"RS384\",\"typ\":\"JWT\"}", claims, k_rsa,
	               CUBEID_SIG_RSA_PKCS1_SHA384);
	ck_assert_int_eq(check(v, tok), CUBEID_ERR_JWT_ALG);
	free(tok);
	tok = mint_raw("{\"alg\":\"PS256\",\"typ\":\"JWT\"}", claims, k_rsa,
	               CUBEID_SIG_RSA_PSS_SHA256);
	ck_assert_int_eq(check(v, tok), CUBEID_ERR_JWT_ALG);
	free(tok);
	cubeid_picod_verifier_free(v);
}
END_TEST

/* HS256 with the RSA public key PEM (the very PICOD_AUTH_PUBLIC_KEY value)
 * as the HMAC secret: the key-confusion attack. */
START_TEST(test_reject_hs256_public_key_secret)
{
	cubeid_picod_verifier *v = verifier("sb-a", NULL);
	char claims[512], *h = NULL, *c = NULL, *s = NULL, input[2048], tok[2200];
	const char *hdr = "{\"alg\":\"HS256\",\"typ\":\"JWT\"}";
	uint8_t mac[32];
	unsigned mac_len = sizeof(mac);

	snprintf(claims, sizeof(claims),
	         "{\"exp\":%lld,\"iat\":%lld,\"aud\":\"picod:default/sb-a\",\"session_id\":\"s\"}",
	         (long long)now + 300, (long long)now);
	ck_assert_int_eq(cubeid_b64url_encode_alloc((const uint8_t *)hdr, strlen(hdr), &h), 0);
	ck_assert_int_eq(cubeid_b64url_encode_alloc((const uint8_t *)claims, strlen(claims), &c),
	                 0);
	snprintf(input, sizeof(input), "%s.%s", h, c);
	ck_assert_ptr_nonnull(HMAC(EVP_sha256(), pem_rsa, (int)strlen(pem_rsa),
	                           (const uint8_t *)input, strlen(input), mac, &mac_len));
	ck_assert_int_eq(cubeid_b64url_encode_alloc(mac, mac_len, &s), 0);
	snprintf(tok, sizeof(tok), "%s.%s", input, s);
	ck_assert_int_eq(check(v, tok), CUBEID_ERR_JWT_ALG);
	free(h);
	free(c);
	free(s);
	cubeid_picod_verifier_free(v);
}
END_TEST

START_TEST(test_reject_bad_signature)
{
	cubeid_picod_verifier *v = verifier("sb-a", NULL);
	char *tok = mint("sb-a", "s"), *p;

	/* one flipped character in the middle of the signature */
	p = strrchr(tok, '.') + 20;
	*p = *p == 'A' ? 'B' : 'A';
	ck_assert_int_eq(check(v, tok), CUBEID_ERR_JWT_SIGNATURE);
	free(tok);
	/* signed by another RSA key */
	tok = mint_full(k_rsa2, CUBEID_SIG_RSA_PKCS1_SHA256, "k", NULL, "sb-a", "s", now, 300);
	ck_assert_int_eq(check(v, tok), CUBEID_ERR_JWT_SIGNATURE);
	free(tok);
	/* ES256 against an RSA key: alg/key confusion */
	tok = mint_full(k_p256, CUBEID_SIG_ECDSA_SHA256, "k", NULL, "sb-a", "s", now, 300);
	ck_assert_int_eq(check(v, tok), CUBEID_ERR_JWT_ALG);
	free(tok);
	cubeid_picod_verifier_free(v);
}
END_TEST

START_TEST(test_header)
{
	cubeid_picod_verifier *v = verifier("sb-a", NULL);
	char *tok = mint("sb-a", "s"), hdr[4096];

	ck_assert_int_eq(cubeid_picod_verify_header(v, NULL, now, NULL),
	                 CUBEID_ERR_UNAUTHENTICATED);
	ck_assert_int_eq(cubeid_picod_verify_header(v, tok, now, NULL), CUBEID_ERR_UNAUTHENTICATED);
	snprintf(hdr, sizeof(hdr), "bearer %s", tok);
	ck_assert_int_eq(cubeid_picod_verify_header(v, hdr, now, NULL), CUBEID_ERR_UNAUTHENTICATED);
	snprintf(hdr, sizeof(hdr), "Bearer %s x", tok);
	ck_assert_int_eq(cubeid_picod_verify_header(v, hdr, now, NULL), CUBEID_ERR_UNAUTHENTICATED);
	ck_assert_int_eq(cubeid_picod_verify_header(v, "Bearer ", now, NULL),
	                 CUBEID_ERR_UNAUTHENTICATED);
	ck_assert_int_eq(cubeid_picod_verify_header(v, "Bearer a.b.c", now, NULL),
	                 CUBEID_ERR_JWT_MALFORMED);
	snprintf(hdr, sizeof(hdr), "Bearer %s", tok);
	ck_assert_int_eq(cubeid_picod_verify_header(v, hdr, now, NULL), CUBEID_OK);
	free(tok);
	cubeid_picod_verifier_free(v);
}
END_TEST

START_TEST(test_claims_checked)
{
	struct cubeid_picod_verifier_opts o = {
	        .sandbox = "sb-a", .issuer = "agentcube-router", .leeway = -1};
	cubeid_picod_verifier *v = NULL, *iss = NULL;
	char claims[512], *tok;
	const char *hdr = "{\"alg\":\"RS256\",\"typ\":\"JWT\"}";

	v = verifier("sb-a", NULL);
	/* no exp, no iat */
	snprintf(claims, sizeof(claims), "{\"iat\":%lld,\"aud\":\"picod:default/sb-a\"}",
	         (long long)now);
	tok = mint_raw(hdr, claims, k_rsa, CUBEID_SIG_RSA_PKCS1_SHA256);
	ck_assert_int_eq(check(v, tok), CUBEID_ERR_JWT_CLAIM);
	free(tok);
	snprintf(claims, sizeof(claims), "{\"exp\":%lld,\"aud\":\"picod:default/sb-a\"}",
	         (long long)now + 60);
	tok = mint_raw(hdr, claims, k_rsa, CUBEID_SIG_RSA_PKCS1_SHA256);
	ck_assert_int_eq(check(v, tok), CUBEID_ERR_JWT_CLAIM);
	free(tok);
	/* exp a string; a lifetime of an hour; aud an array that holds ours */
	snprintf(claims, sizeof(claims),
	         "{\"exp\":\"%lld\",\"iat\":%lld,\"aud\":\"picod:default/sb-a\"}",
	         (long long)now + 60, (long long)now);
	tok = mint_raw(hdr, claims, k_rsa, CUBEID_SIG_RSA_PKCS1_SHA256);
	ck_assert_int_eq(check(v, tok), CUBEID_ERR_JWT_CLAIM);
	free(tok);
	snprintf(claims, sizeof(claims),
	         "{\"exp\":%lld,\"iat\":%lld,\"aud\":\"picod:default/sb-a\"}",
	         (long long)now + 3600, (long long)now);
	tok = mint_raw(hdr, claims, k_rsa, CUBEID_SIG_RSA_PKCS1_SHA256);
	ck_assert_int_eq(check(v, tok), CUBEID_ERR_JWT_CLAIM);
	free(tok);
	snprintf(claims, sizeof(claims),
	         "{\"exp\":%lld,\"iat\":%lld,\"aud\":[\"x\",\"picod:default/sb-a\"]}",
	         (long long)now + 60, (long long)now);
	tok = mint_raw(hdr, claims, k_rsa, CUBEID_SIG_RSA_PKCS1_SHA256);
	ck_assert_int_eq(check(v, tok), CUBEID_OK);
	/* the issuer, when configured */
	ck_assert_int_eq(cubeid_picod_verifier_new(&o, &iss), CUBEID_OK);
	ck_assert_int_eq(cubeid_picod_verifier_set_pem(iss, pem_rsa, strlen(pem_rsa)), CUBEID_OK);
	ck_assert_int_eq(check(iss, tok), CUBEID_ERR_JWT_ISSUER);
	free(tok);
	tok = mint("sb-a", "s");
	ck_assert_int_eq(check(iss, tok), CUBEID_OK);
	cubeid_picod_verifier_free(iss);
	/* sub, when configured: only the Router's tokens */
	o.issuer = NULL;
	o.sub = SUB;
	ck_assert_int_eq(cubeid_picod_verifier_new(&o, &iss), CUBEID_OK);
	ck_assert_int_eq(cubeid_picod_verifier_set_pem(iss, pem_rsa, strlen(pem_rsa)), CUBEID_OK);
	ck_assert_int_eq(check(iss, tok), CUBEID_OK);
	cubeid_picod_verifier_free(iss);
	o.sub = "spiffe://cluster.local/ns/default/sa/other";
	ck_assert_int_eq(cubeid_picod_verifier_new(&o, &iss), CUBEID_OK);
	ck_assert_int_eq(cubeid_picod_verifier_set_pem(iss, pem_rsa, strlen(pem_rsa)), CUBEID_OK);
	ck_assert_int_eq(check(iss, tok), CUBEID_ERR_FORBIDDEN);
	free(tok);
	cubeid_picod_verifier_free(iss);
	cubeid_picod_verifier_free(v);
}
END_TEST

static int calls;
static int
own_source(void *ctx, const char *kid, cubeid_sig_alg alg, EVP_PKEY **out)
{
	(void)alg;
	calls++;
	if (kid == NULL || strcmp(kid, "kid-p256") != 0)
		return CUBEID_ERR_JWT_KID;
	EVP_PKEY_up_ref(ctx);
	*out = ctx;
	return CUBEID_OK;
}

/* Key sources: ES256 with a PEM key, a JWKS by kid, a caller's own. */
START_TEST(test_key_sources)
{
	struct cubeid_picod_verifier_opts o = {.sandbox = "sb-a", .leeway = -1};
	cubeid_picod_verifier *v = NULL;
	cubeid_jwt_bundle *b = NULL;
	char *jwks = NULL, *es, *rs, *twin;

	es = mint_full(k_p256, CUBEID_SIG_ECDSA_SHA256, "kid-p256", NULL, "sb-a", "s", now, 300);
	rs = mint("sb-a", "s");
	ck_assert_int_eq(cubeid_picod_verifier_new(&o, &v), CUBEID_OK);
	ck_assert_int_eq(check(v, es), CUBEID_ERR_JWT_KID); /* no keys yet */
	ck_assert_int_eq(cubeid_picod_verifier_set_pem(v, pem_p256, strlen(pem_p256)), CUBEID_OK);
	ck_assert_int_eq(check(v, es), CUBEID_OK);
	ck_assert_int_eq(check(v, rs), CUBEID_ERR_JWT_ALG);
	/* a JWKS with both keys: each found by its kid; an unknown kid fails */
	ck_assert_int_eq(cubeid_jwt_bundle_new("picod", &b), CUBEID_OK);
	ck_assert_int_eq(cubeid_jwt_bundle_add(b, "kid-p256", k_p256), CUBEID_OK);
	ck_assert_int_eq(cubeid_jwt_bundle_add(b, "kid-rsa", k_rsa), CUBEID_OK);
	ck_assert_int_eq(cubeid_jwt_bundle_to_jwks(b, &jwks, NULL), CUBEID_OK);
	ck_assert_int_eq(cubeid_picod_verifier_set_jwks(v, jwks, strlen(jwks)), CUBEID_OK);
	ck_assert_int_eq(check(v, es), CUBEID_OK);
	ck_assert_int_eq(check(v, rs), CUBEID_OK);
	/* the high-S twin of the ES256 token (s -> n - s) is refused */
	twin = etu_flip_s(es);
	ck_assert(etu_low_s(es));
	ck_assert_int_eq(check(v, twin), CUBEID_ERR_JWT_SIGNATURE);
	free(twin);
	free(rs);
	rs = mint_full(k_rsa, CUBEID_SIG_RSA_PKCS1_SHA256, "other", NULL, "sb-a", "s", now, 300);
	ck_assert_int_eq(check(v, rs), CUBEID_ERR_JWT_KID);
	ck_assert_int_eq(cubeid_picod_verifier_set_jwks(v, "{\"keys\":[]}", 11), CUBEID_ERR_JWKS);
	/* a caller's own source (a cluster-wide key store) */
	calls = 0;
	ck_assert_int_eq(cubeid_picod_verifier_set_source(v, own_source, k_p256, NULL), CUBEID_OK);
	ck_assert_int_eq(check(v, es), CUBEID_OK);
	ck_assert_int_eq(check(v, rs), CUBEID_ERR_JWT_KID);
	ck_assert_int_eq(calls, 2);
	free(es);
	free(rs);
	free(jwks);
	cubeid_jwt_bundle_free(b);
	cubeid_picod_verifier_free(v);
}
END_TEST

START_TEST(test_pem_input)
{
	cubeid_picod_verifier *v = verifier("sb-a", NULL);
	EVP_PKEY *small = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)1024);
	char *pem_small = pub_pem(small);
	static const char priv[] = "-----BEGIN PRIVATE KEY-----\nMIIB\n-----END PRIVATE KEY-----\n";
	static const char junk[] = "-----BEGIN PUBLIC KEY-----\n!!!!\n-----END PUBLIC KEY-----\n";

	ck_assert_int_eq(cubeid_picod_verifier_set_pem(v, "", 0), CUBEID_ERR_PARSE);
	ck_assert_int_eq(cubeid_picod_verifier_set_pem(v, priv, strlen(priv)), CUBEID_ERR_PARSE);
	ck_assert_int_eq(cubeid_picod_verifier_set_pem(v, junk, strlen(junk)), CUBEID_ERR_PARSE);
	ck_assert_int_eq(cubeid_picod_verifier_set_pem(v, pem_small, strlen(pem_small)),
	                 CUBEID_ERR_UNSUPPORTED);
	free(pem_small);
	EVP_PKEY_free(small);
	cubeid_picod_verifier_free(v);
}
END_TEST

/* The request-head reader of the auth switch: headers found case-blind,
 * trimmed, a repeated one refused, folding and non-HTTP refused. */
START_TEST(test_http_header)
{
	static const char req[] = "POST /api/execute HTTP/1.1\r\nHost: p\r\n"
	                          "authorization:  Bearer abc \r\n\r\nbody: x\r\n";
	static const char twice[] =
	        "GET / HTTP/1.1\r\nAuthorization: a\r\nAuthorization: b\r\n\r\n";
	static const char fold[] = "GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n";
	static const char resp[] = "HTTP/1.1 400 Bad Request\r\nX-PicoD-Auth-Mode: mtls\r\n\r\n";
	char *v = NULL;

	ck_assert_int_eq(cubeid_picod_http_header(req, strlen(req), "Authorization", &v),
	                 CUBEID_OK);
	ck_assert_str_eq(v, "Bearer abc");
	free(v);
	ck_assert_int_eq(cubeid_picod_http_header(req, strlen(req), "body", &v),
	                 CUBEID_ERR_NOT_FOUND);
	ck_assert_int_eq(cubeid_picod_http_header(twice, strlen(twice), "Authorization", &v),
	                 CUBEID_ERR_PARSE);
	ck_assert_int_eq(cubeid_picod_http_header(fold, strlen(fold), "X", &v), CUBEID_ERR_PARSE);
	ck_assert_int_eq(cubeid_picod_http_header("\x16\x03\x01", 3, "X", &v), CUBEID_ERR_PARSE);
	ck_assert_int_eq(cubeid_picod_http_header(resp, strlen(resp), "x-picod-auth-mode", &v),
	                 CUBEID_OK);
	ck_assert_str_eq(v, "mtls");
	free(v);
}
END_TEST

START_TEST(test_mode_flag)
{
	char a0[] = "prog", a1[] = "--picod-auth-mode", a2[] = "jwt", a3[] = "x",
	     a4[] = "--picod-auth-mode=mtls", a5[] = "--picod-auth-mode=tls";
	char *argv[8] = {a0, a1, a2, a3, NULL};
	cubeid_picod_auth_mode m = CUBEID_PICOD_AUTH_MTLS;
	int argc = 4;

	ck_assert_int_eq(cubeid_picod_auth_flag_parse(&argc, argv, &m), CUBEID_OK);
	ck_assert_int_eq(m, CUBEID_PICOD_AUTH_JWT);
	ck_assert_int_eq(argc, 2);
	ck_assert_str_eq(argv[1], "x");
	ck_assert_ptr_null(argv[2]);
	argv[1] = a4;
	argc = 2;
	ck_assert_int_eq(cubeid_picod_auth_flag_parse(&argc, argv, &m), CUBEID_OK);
	ck_assert_int_eq(m, CUBEID_PICOD_AUTH_MTLS);
	ck_assert_int_eq(argc, 1);
	argv[1] = a5;
	argc = 2;
	ck_assert_int_eq(cubeid_picod_auth_flag_parse(&argc, argv, &m), CUBEID_ERR_CONFIG);
	ck_assert_str_eq(cubeid_picod_auth_mode_name(CUBEID_PICOD_AUTH_JWT), "jwt");
	ck_assert_str_eq(cubeid_picod_auth_mode_name(CUBEID_PICOD_AUTH_MTLS), "mtls");
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("picod");
	TCase *tc = tcase_create("picod");
	SRunner *sr;
	int failed;

	now = (int64_t)time(NULL);
	k_rsa = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
	k_rsa2 = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
	k_p256 = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	if (k_rsa == NULL || k_rsa2 == NULL || k_p256 == NULL) {
		fprintf(stderr, "key generation failed\n");
		return EXIT_FAILURE;
	}
	pem_rsa = pub_pem(k_rsa);
	pem_p256 = pub_pem(k_p256);
	tcase_add_test(tc, test_names_and_audience);
	tcase_add_test(tc, test_encode_claims);
	tcase_add_test(tc, test_verify_accepts);
	tcase_add_test(tc, test_replay_other_sandbox);
	tcase_add_test(tc, test_reject_expired_and_future);
	tcase_add_test(tc, test_reject_alg_none);
	tcase_add_test(tc, test_reject_hs256_public_key_secret);
	tcase_add_test(tc, test_reject_bad_signature);
	tcase_add_test(tc, test_header);
	tcase_add_test(tc, test_claims_checked);
	tcase_add_test(tc, test_key_sources);
	tcase_add_test(tc, test_pem_input);
	tcase_add_test(tc, test_http_header);
	tcase_add_test(tc, test_mode_flag);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	free(pem_rsa);
	free(pem_p256);
	EVP_PKEY_free(k_rsa);
	EVP_PKEY_free(k_rsa2);
	EVP_PKEY_free(k_p256);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
