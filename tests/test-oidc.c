/*
 * keycloak/ offline: discovery documents, the verifier's claim checks
 * (RS256, ES256, PS256; iss, aud, azp, exp, nbf, iat with leeway), roles,
 * the JWKS cache's rate-limited refresh and bounded stale period (against a
 * port nobody listens on), the policy table and the 401/403 decision,
 * client assertions and JWKS, secret files, and the RLAC helpers.  The
 * same code against a real Keycloak: tests/keycloak/run.sh.
 */
#include "config.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/sha.h>

#include <cubeid/oidc.h>

#include "tests/ecdsa-test-util.h"

#define ISS  "https://kc.example.org/realms/agentcube"
#define DEAD "http://127.0.0.1:9/certs" /* discard port: nothing answers */
#define NOW  ((int64_t)1900000000)

static EVP_PKEY *k_ec, *k_rsa, *k_other;

static char *
jwks_of(EVP_PKEY *a, const char *kid_a, EVP_PKEY *b, const char *kid_b)
{
	cubeid_jwt_bundle *bu = NULL;
	char *out = NULL;

	ck_assert_int_eq(cubeid_jwt_bundle_new("oidc", &bu), 0);
	if (a)
		ck_assert_int_eq(cubeid_jwt_bundle_add(bu, kid_a, a), 0);
	if (b)
		ck_assert_int_eq(cubeid_jwt_bundle_add(bu, kid_b, b), 0);
	ck_assert_int_eq(cubeid_oidc_client_jwks(bu, &out, NULL), 0);
	cubeid_jwt_bundle_free(bu);
	return out;
}

/* A token with claims (a JSON object, stolen) signed by pk as kid. */
static char *
token(cubeid_sig_alg alg, EVP_PKEY *pk, const char *kid, json_t *claims)
{
	char *out = NULL;

	ck_assert_ptr_nonnull(claims);
	ck_assert_int_eq(cubeid_jws_encode(alg, kid, "JWT", claims, cubeid_jws_sign_evp, pk, &out),
	                 0);
	json_decref(claims);
	return out;
}

static json_t *
std_claims(void)
{
	return json_pack("{s:s, s:s, s:[s,s], s:s, s:I, s:I, s:{s:[s,s]}, s:{s:{s:[s]}}}", "iss",
	                 ISS, "sub", "user-1", "aud", "agentcube-router", "account", "azp",
	                 "agentcube-sdk", "iat", (json_int_t)NOW, "exp", (json_int_t)(NOW + 300),
	                 "realm_access", "roles", "sandbox:invoke", "offline_access",
	                 "resource_access", "agentcube-router", "roles", "router-client-role");
}

static cubeid_oidc_verifier *
verifier(const char *aud, const char *azp, const char *client_roles)
{
	struct cubeid_oidc_verifier_opts o = {0};
	cubeid_oidc_verifier *v = NULL;
	char *jwks = jwks_of(k_ec, "ec1", k_rsa, "rsa1");

	o.issuer = ISS;
	o.jwks_uri = DEAD;
	o.audiences = &aud;
	o.n_audiences = aud ? 1 : 0;
	o.azp = azp;
	o.client_roles = client_roles;
	o.http_timeout_ms = 2000;
	ck_assert_int_eq(cubeid_oidc_verifier_new(&o, &v), 0);
	ck_assert_int_eq(cubeid_oidc_verifier_set_jwks(v, jwks, strlen(jwks), NOW), 0);
	free(jwks);
	return v;
}

static int
verify_at(cubeid_oidc_verifier *v, const char *t, int64_t now)
{
	return cubeid_oidc_verify(v, t, strlen(t), now, NULL);
}

START_TEST(test_issuer_and_discovery)
{
	cubeid_oidc_discovery *d = NULL;
	char *s = NULL;
	const char *doc = "{\"issuer\":\"" ISS "\",\"jwks_uri\":\"" ISS
	                  "/protocol/openid-connect/certs\",\"token_endpoint\":\"" ISS
	                  "/protocol/openid-connect/token\",\"grant_types_supported\":[]}";

	ck_assert_int_eq(cubeid_oidc_keycloak_issuer("https://kc.example.org/", "agentcube", &s),
	                 0);
	ck_assert_str_eq(s, ISS);
	free(s);
	ck_assert_int_eq(cubeid_oidc_keycloak_issuer("https://kc", "a/b", &s),
	                 CUBEID_ERR_INVALID_ARG);
	ck_assert_int_eq(cubeid_oidc_keycloak_issuer("https://kc", "", &s), CUBEID_ERR_INVALID_ARG);
	ck_assert_int_eq(cubeid_oidc_keycloak_issuer("ftp://kc", "r", &s), CUBEID_ERR_INVALID_ARG);
	ck_assert_ptr_null(s);

	ck_assert_int_eq(cubeid_oidc_discovery_parse(doc, strlen(doc), ISS, &d), 0);
	ck_assert_str_eq(d->token_endpoint, ISS "/protocol/openid-connect/token");
	cubeid_oidc_discovery_free(d);
	ck_assert_int_eq(
	        cubeid_oidc_discovery_parse(doc, strlen(doc), "https://other/realms/x", &d),
	        CUBEID_ERR_JWT_ISSUER);
	ck_assert_ptr_null(d);
	ck_assert_int_eq(cubeid_oidc_discovery_parse("{\"issuer\":\"" ISS "\"}", 20, NULL, &d),
	                 CUBEID_ERR_PARSE);
	ck_assert_int_eq(cubeid_oidc_discovery_parse("[]", 2, NULL, &d), CUBEID_ERR_PARSE);
	s = "{\"issuer\":\"" ISS "\",\"issuer\":\"" ISS "\",\"jwks_uri\":\"https://a/\","
	    "\"token_endpoint\":\"https://a/t\"}";
	ck_assert_int_eq(cubeid_oidc_discovery_parse(s, strlen(s), NULL, &d), CUBEID_ERR_PARSE);
	s = "{\"issuer\":\"" ISS "\",\"jwks_uri\":\"file:///etc/passwd\","
	    "\"token_endpoint\":\"https://a/t\"}";
	ck_assert_int_eq(cubeid_oidc_discovery_parse(s, strlen(s), NULL, &d), CUBEID_ERR_PARSE);
	ck_assert_int_eq(cubeid_oidc_discovery_parse(doc, CUBEID_OIDC_DISCOVERY_MAX + 1, NULL, &d),
	                 CUBEID_ERR_TOO_LARGE);
}
END_TEST

START_TEST(test_verify_algs_and_roles)
{
	cubeid_oidc_verifier *v = verifier("agentcube-router", NULL, "agentcube-router");
	cubeid_oidc_claims *c = NULL;
	char *t;

	t = token(CUBEID_SIG_ECDSA_SHA256, k_ec, "ec1", std_claims());
	ck_assert_int_eq(cubeid_oidc_verify(v, t, strlen(t), NOW + 10, &c), 0);
	ck_assert_str_eq(cubeid_oidc_claims_sub(c), "user-1");
	ck_assert_str_eq(cubeid_oidc_claims_azp(c), "agentcube-sdk");
	ck_assert_uint_eq(cubeid_oidc_claims_role_count(c), 3);
	ck_assert(cubeid_oidc_claims_has_role(c, "sandbox:invoke"));
	ck_assert(cubeid_oidc_claims_has_role(c, "router-client-role"));
	ck_assert(!cubeid_oidc_claims_has_role(c, "admin"));
	cubeid_oidc_claims_free(c);
	free(t);
	t = token(CUBEID_SIG_RSA_PKCS1_SHA256, k_rsa, "rsa1", std_claims());
	ck_assert_int_eq(verify_at(v, t, NOW), 0);
	free(t);
	t = token(CUBEID_SIG_RSA_PSS_SHA256, k_rsa, "rsa1", std_claims());
	ck_assert_int_eq(verify_at(v, t, NOW), 0);
	/* one flipped signature byte */
	t[strlen(t) - 2] = t[strlen(t) - 2] == 'A' ? 'B' : 'A';
	ck_assert_int_eq(verify_at(v, t, NOW), CUBEID_ERR_JWT_SIGNATURE);
	free(t);
	/* RS256 header on the EC key's kid */
	t = token(CUBEID_SIG_RSA_PKCS1_SHA256, k_rsa, "ec1", std_claims());
	ck_assert_int_eq(verify_at(v, t, NOW), CUBEID_ERR_JWT_ALG);
	free(t);
	/* a key not in the JWKS under a known kid */
	t = token(CUBEID_SIG_ECDSA_SHA256, k_other, "ec1", std_claims());
	ck_assert_int_eq(verify_at(v, t, NOW), CUBEID_ERR_JWT_SIGNATURE);
	free(t);
	ck_assert_int_eq(verify_at(v, "eyJhbGciOiJub25lIn0.e30.", NOW), CUBEID_ERR_JWT_ALG);
	ck_assert_int_eq(verify_at(v, "garbage", NOW), CUBEID_ERR_JWT_MALFORMED);
	cubeid_oidc_verifier_free(v);
}
END_TEST

START_TEST(test_verify_claims)
{
	cubeid_oidc_verifier *v = verifier("agentcube-router", NULL, NULL), *vz;
	json_t *cl;
	char *t;

	/* exp: leeway 60 s */
	t = token(CUBEID_SIG_ECDSA_SHA256, k_ec, "ec1", std_claims());
	ck_assert_int_eq(verify_at(v, t, NOW + 300 + 59), 0);
	ck_assert_int_eq(verify_at(v, t, NOW + 300 + 60), CUBEID_ERR_JWT_EXPIRED);
	/* iat in the future beyond the leeway */
	ck_assert_int_eq(verify_at(v, t, NOW - 60), 0);
	ck_assert_int_eq(verify_at(v, t, NOW - 61), CUBEID_ERR_JWT_NOT_YET);
	free(t);
	cl = std_claims();
	json_object_set_new(cl, "nbf", json_integer(NOW + 100));
	t = token(CUBEID_SIG_ECDSA_SHA256, k_ec, "ec1", cl);
	ck_assert_int_eq(verify_at(v, t, NOW + 39), CUBEID_ERR_JWT_NOT_YET);
	ck_assert_int_eq(verify_at(v, t, NOW + 40), 0);
	free(t);
	cl = std_claims();
	json_object_del(cl, "exp");
	t = token(CUBEID_SIG_ECDSA_SHA256, k_ec, "ec1", cl);
	ck_assert_int_eq(verify_at(v, t, NOW), CUBEID_ERR_JWT_CLAIM);
	free(t);
	cl = std_claims();
	json_object_set_new(cl, "exp", json_string("soon"));
	t = token(CUBEID_SIG_ECDSA_SHA256, k_ec, "ec1", cl);
	ck_assert_int_eq(verify_at(v, t, NOW), CUBEID_ERR_JWT_CLAIM);
	free(t);
	cl = std_claims();
	json_object_set_new(cl, "iss", json_string(ISS "x"));
	t = token(CUBEID_SIG_ECDSA_SHA256, k_ec, "ec1", cl);
	ck_assert_int_eq(verify_at(v, t, NOW), CUBEID_ERR_JWT_ISSUER);
	free(t);
	cl = std_claims();
	json_object_set_new(cl, "aud", json_string("picod"));
	t = token(CUBEID_SIG_ECDSA_SHA256, k_ec, "ec1", cl);
	ck_assert_int_eq(verify_at(v, t, NOW), CUBEID_ERR_JWT_AUDIENCE);
	free(t);
	cl = std_claims();
	json_object_set_new(cl, "aud", json_string("agentcube-router"));
	t = token(CUBEID_SIG_ECDSA_SHA256, k_ec, "ec1", cl);
	ck_assert_int_eq(verify_at(v, t, NOW), 0);
	free(t);
	cl = std_claims();
	json_object_del(cl, "sub");
	t = token(CUBEID_SIG_ECDSA_SHA256, k_ec, "ec1", cl);
	ck_assert_int_eq(verify_at(v, t, NOW), CUBEID_ERR_JWT_CLAIM);
	free(t);
	cl = std_claims();
	json_object_set_new(cl, "realm_access", json_pack("{s:[i]}", "roles", 1));
	t = token(CUBEID_SIG_ECDSA_SHA256, k_ec, "ec1", cl);
	ck_assert_int_eq(verify_at(v, t, NOW), CUBEID_ERR_JWT_CLAIM);
	free(t);
	/* times at the ends of int64_t: no overflow (UBSan), the right answer */
	cl = std_claims();
	json_object_set_new(cl, "exp", json_integer(INT64_MAX));
	json_object_set_new(cl, "nbf", json_integer(INT64_MIN));
	json_object_set_new(cl, "iat", json_integer(INT64_MIN));
	t = token(CUBEID_SIG_ECDSA_SHA256, k_ec, "ec1", cl);
	ck_assert_int_eq(verify_at(v, t, NOW), 0);
	free(t);
	cl = std_claims();
	json_object_set_new(cl, "exp", json_integer(INT64_MIN));
	t = token(CUBEID_SIG_ECDSA_SHA256, k_ec, "ec1", cl);
	ck_assert_int_eq(verify_at(v, t, NOW), CUBEID_ERR_JWT_EXPIRED);
	free(t);
	cl = std_claims();
	json_object_set_new(cl, "iat", json_integer(INT64_MAX));
	t = token(CUBEID_SIG_ECDSA_SHA256, k_ec, "ec1", cl);
	ck_assert_int_eq(verify_at(v, t, NOW), CUBEID_ERR_JWT_NOT_YET);
	free(t);
	/* azp where configured */
	vz = verifier(NULL, "agentcube-router", NULL);
	t = token(CUBEID_SIG_ECDSA_SHA256, k_ec, "ec1", std_claims());
	ck_assert_int_eq(verify_at(vz, t, NOW), CUBEID_ERR_JWT_CLAIM);
	ck_assert_int_eq(verify_at(v, t, NOW), 0);
	free(t);
	cubeid_oidc_verifier_free(vz);
	cubeid_oidc_verifier_free(v);
}
END_TEST

START_TEST(test_cache_refresh_and_stale)
{
	cubeid_oidc_verifier *v = verifier(NULL, NULL, NULL);
	char *t, *t2;

	/* the default gap is 10 s, interval 300 s, max_stale 3600 s */
	t = token(CUBEID_SIG_ECDSA_SHA256, k_ec, "ec1", std_claims());
	t2 = token(CUBEID_SIG_ECDSA_SHA256, k_other, "unknown", std_claims());
	ck_assert_int_eq(verify_at(v, t, NOW), 0);
	ck_assert_uint_eq(cubeid_oidc_verifier_fetches(v), 0);
	/* unknown kid right after the install: no fetch (rate limit) */
	ck_assert_int_eq(verify_at(v, t2, NOW + 5), CUBEID_ERR_JWT_KID);
	ck_assert_uint_eq(cubeid_oidc_verifier_fetches(v), 0);
	/* after the gap: one fetch, which fails (server down); the kid stays unknown */
	ck_assert_int_eq(verify_at(v, t2, NOW + 11), CUBEID_ERR_JWT_KID);
	ck_assert_uint_eq(cubeid_oidc_verifier_fetches(v), 1);
	/* a flood of unknown kids within the gap fetches no more */
	ck_assert_int_eq(verify_at(v, t2, NOW + 12), CUBEID_ERR_JWT_KID);
	ck_assert_int_eq(verify_at(v, t2, NOW + 20), CUBEID_ERR_JWT_KID);
	ck_assert_uint_eq(cubeid_oidc_verifier_fetches(v), 1);
	/* the known key still verifies while stale (periodic refresh failing) */
	ck_assert_int_eq(verify_at(v, t, NOW + 250), 0);
	free(t);
	free(t2);
	{
		json_t *cl = std_claims();

		json_object_set_new(cl, "iat", json_integer(NOW + 3000));
		json_object_set_new(cl, "exp", json_integer(NOW + 4000));
		t = token(CUBEID_SIG_ECDSA_SHA256, k_ec, "ec1", cl);
	}
	ck_assert_int_eq(verify_at(v, t, NOW + 3000), 0);
	ck_assert_uint_ge(cubeid_oidc_verifier_fetches(v), 2);
	/* past max_stale: refused, not trusted forever */
	ck_assert_int_eq(verify_at(v, t, NOW + 3601), CUBEID_ERR_UNAVAILABLE);
	free(t);
	cubeid_oidc_verifier_free(v);
}
END_TEST

START_TEST(test_verified_token_cache)
{
	cubeid_oidc_verifier *v = verifier("agentcube-router", NULL, NULL);
	cubeid_oidc_claims *c = NULL;
	char *t, *other, *bad;

	t = token(CUBEID_SIG_ECDSA_SHA256, k_ec, "ec1", std_claims());
	ck_assert_int_eq(verify_at(v, t, NOW), 0);
	ck_assert_uint_eq(cubeid_oidc_verifier_cache_hits(v), 0);
	ck_assert_int_eq(cubeid_oidc_verify(v, t, strlen(t), NOW + 1, &c), 0);
	ck_assert_uint_eq(cubeid_oidc_verifier_cache_hits(v), 1);
	ck_assert_str_eq(cubeid_oidc_claims_sub(c), "user-1");
	ck_assert(cubeid_oidc_claims_has_role(c, "sandbox:invoke"));
	cubeid_oidc_claims_free(c);
	/* a hit still runs the time checks */
	ck_assert_int_eq(verify_at(v, t, NOW + 360), CUBEID_ERR_JWT_EXPIRED);
	ck_assert_int_eq(verify_at(v, t, NOW - 61), CUBEID_ERR_JWT_NOT_YET);
	ck_assert_uint_eq(cubeid_oidc_verifier_cache_hits(v), 3);
	/* a tampered copy is a different token: no hit, and refused */
	bad = strdup(t);
	bad[strlen(bad) - 3] = bad[strlen(bad) - 3] == 'A' ? 'B' : 'A';
	ck_assert_int_eq(verify_at(v, bad, NOW), CUBEID_ERR_JWT_SIGNATURE);
	ck_assert_uint_eq(cubeid_oidc_verifier_cache_hits(v), 3);
	free(bad);
	/* the high-S twin (r, n - s): Keycloak's Java ECDSA makes such tokens,
	 * so it is accepted, and it is the same cache entry (canonical key) */
	bad = etu_flip_s(t);
	ck_assert(etu_low_s(t) && !etu_low_s(bad));
	ck_assert_int_eq(verify_at(v, bad, NOW), 0);
	ck_assert_uint_eq(cubeid_oidc_verifier_cache_hits(v), 4);
	free(bad);
	/* the key leaves the JWKS: the cached token goes with it */
	other = jwks_of(k_rsa, "rsa1", NULL, NULL);
	ck_assert_int_eq(cubeid_oidc_verifier_set_jwks(v, other, strlen(other), NOW), 0);
	ck_assert_int_eq(verify_at(v, t, NOW + 1), CUBEID_ERR_JWT_KID);
	ck_assert_uint_eq(cubeid_oidc_verifier_cache_hits(v), 4);
	free(other);
	free(t);
	cubeid_oidc_verifier_free(v);
}
END_TEST

START_TEST(test_never_fetched)
{
	struct cubeid_oidc_verifier_opts o = {0};
	cubeid_oidc_verifier *v = NULL;
	char *t = token(CUBEID_SIG_ECDSA_SHA256, k_ec, "ec1", std_claims());

	o.issuer = ISS;
	o.jwks_uri = DEAD;
	o.http_timeout_ms = 2000;
	ck_assert_int_eq(cubeid_oidc_verifier_new(&o, &v), 0);
	ck_assert_int_eq(verify_at(v, t, NOW), CUBEID_ERR_UNAVAILABLE);
	ck_assert_int_eq(cubeid_oidc_verifier_refresh(v, NOW), CUBEID_ERR_HTTP);
	cubeid_oidc_verifier_free(v);
	o.jwks_uri = "file:///etc/passwd";
	ck_assert_int_eq(cubeid_oidc_verifier_new(&o, &v), CUBEID_ERR_INVALID_ARG);
	free(t);
}
END_TEST

static const char policy[] = "# comment\n"
                             "\n"
                             "GET /healthz -\n"
                             "POST /v1/sandboxes sandbox:manage   # trailing comment\n"
                             "DELETE /v1/sandboxes/* sandbox:manage\n"
                             "* /v1/sandboxes/*/invoke/** sandbox:invoke\n"
                             "\t*\t/admin/**\tadmin\r\n";

START_TEST(test_policy)
{
	cubeid_oidc_policy *p = NULL;
	size_t line = 0;

	ck_assert_int_eq(cubeid_oidc_policy_parse(policy, strlen(policy), &p, &line), 0);
	ck_assert_uint_eq(cubeid_oidc_policy_count(p), 5);
	ck_assert_str_eq(cubeid_oidc_policy_lookup(p, "GET", "/healthz"), "");
	ck_assert_ptr_null(cubeid_oidc_policy_lookup(p, "POST", "/healthz"));
	ck_assert_str_eq(cubeid_oidc_policy_lookup(p, "POST", "/v1/sandboxes?x=1"),
	                 "sandbox:manage");
	ck_assert_str_eq(cubeid_oidc_policy_lookup(p, "DELETE", "/v1/sandboxes/s1"),
	                 "sandbox:manage");
	ck_assert_ptr_null(cubeid_oidc_policy_lookup(p, "DELETE", "/v1/sandboxes/s1/x"));
	ck_assert_ptr_null(cubeid_oidc_policy_lookup(p, "DELETE", "/v1/sandboxes/"));
	ck_assert_str_eq(cubeid_oidc_policy_lookup(p, "POST", "/v1/sandboxes/s1/invoke"),
	                 "sandbox:invoke");
	ck_assert_str_eq(cubeid_oidc_policy_lookup(p, "PUT", "/v1/sandboxes/s1/invoke/a/b"),
	                 "sandbox:invoke");
	ck_assert_str_eq(cubeid_oidc_policy_lookup(p, "GET", "/admin"), "admin");
	ck_assert_str_eq(cubeid_oidc_policy_lookup(p, "GET", "/admin/x/y"), "admin");
	ck_assert_ptr_null(cubeid_oidc_policy_lookup(p, "GET", "/administrator"));
	ck_assert_ptr_null(cubeid_oidc_policy_lookup(p, "GET", "v1/sandboxes"));
	cubeid_oidc_policy_free(p);

#define BAD(s, l)                                                                                  \
	do {                                                                                       \
		p = NULL;                                                                          \
		ck_assert_int_eq(cubeid_oidc_policy_parse(s, strlen(s), &p, &line),                \
		                 CUBEID_ERR_PARSE);                                                \
		ck_assert_ptr_null(p);                                                             \
		ck_assert_uint_eq(line, l);                                                        \
	} while (0)
	BAD("GET /x", 1);
	BAD("GET /x a b", 1);
	BAD("\nget /x a", 2);
	BAD("GET x a", 1);
	BAD("GET /a/**/b a", 1);
	BAD("GET /a*b a", 1);
	BAD("GET /a/*** a", 1);
	ck_assert_int_eq(cubeid_oidc_policy_parse("GET /x a\0b", 10, &p, &line), CUBEID_ERR_PARSE);
	/* an empty table denies everything */
	ck_assert_int_eq(cubeid_oidc_policy_parse("", 0, &p, NULL), 0);
	ck_assert_ptr_null(cubeid_oidc_policy_lookup(p, "GET", "/"));
	cubeid_oidc_policy_free(p);
}
END_TEST

START_TEST(test_authorize)
{
	cubeid_oidc_verifier *v = verifier(NULL, NULL, NULL);
	struct cubeid_oidc_decision d;
	cubeid_oidc_policy *p = NULL;
	char hdr[4096], *t;

	ck_assert_int_eq(cubeid_oidc_policy_parse(policy, strlen(policy), &p, NULL), 0);
	ck_assert_int_eq(
	        cubeid_oidc_authorize(v, p, "agentcube", "POST", "/v1/sandboxes", NULL, NOW, &d),
	        0);
	ck_assert_int_eq(d.status, 401);
	ck_assert_str_eq(d.www_authenticate, "Bearer realm=\"agentcube\"");
	cubeid_oidc_decision_clear(&d);
	ck_assert_int_eq(cubeid_oidc_authorize(v, p, "agentcube", "POST", "/v1/sandboxes",
	                                       "Basic eA==", NOW, &d),
	                 0);
	ck_assert_int_eq(d.status, 401);
	cubeid_oidc_decision_clear(&d);
	ck_assert_int_eq(
	        cubeid_oidc_authorize(v, p, "a\"b", "GET", "/healthz", "Bearer x.y.z", NOW, &d), 0);
	ck_assert_int_eq(d.status, 401);
	ck_assert_int_eq(d.reason, CUBEID_ERR_JWT_MALFORMED);
	ck_assert_ptr_nonnull(strstr(d.www_authenticate, "realm=\"a'b\", error=\"invalid_token\""));
	cubeid_oidc_decision_clear(&d);
	t = token(CUBEID_SIG_ECDSA_SHA256, k_ec, "ec1", std_claims());
	snprintf(hdr, sizeof(hdr), "Bearer %s", t);
	ck_assert_int_eq(
	        cubeid_oidc_authorize(v, p, "agentcube", "POST", "/v1/sandboxes", hdr, NOW, &d), 0);
	ck_assert_int_eq(d.status, 403);
	ck_assert_int_eq(d.reason, CUBEID_ERR_FORBIDDEN);
	ck_assert_ptr_nonnull(strstr(d.www_authenticate, "error=\"insufficient_scope\""));
	ck_assert_ptr_nonnull(d.claims);
	cubeid_oidc_decision_clear(&d);
	ck_assert_int_eq(cubeid_oidc_authorize(v, p, "agentcube", "GET", "/v1/sandboxes/s/invoke",
	                                       hdr, NOW, &d),
	                 0);
	ck_assert_int_eq(d.status, 200);
	ck_assert_ptr_null(d.www_authenticate);
	ck_assert_str_eq(cubeid_oidc_claims_sub(d.claims), "user-1");
	cubeid_oidc_decision_clear(&d);
	ck_assert_int_eq(cubeid_oidc_authorize(v, p, "agentcube", "GET", "/healthz", hdr, NOW, &d),
	                 0);
	ck_assert_int_eq(d.status, 200);
	cubeid_oidc_decision_clear(&d);
	ck_assert_int_eq(cubeid_oidc_authorize(v, p, "agentcube", "GET", "/nothing", hdr, NOW, &d),
	                 0);
	ck_assert_int_eq(d.status, 403);
	cubeid_oidc_decision_clear(&d);
	/* expired: 401, not 403 */
	ck_assert_int_eq(
	        cubeid_oidc_authorize(v, p, "agentcube", "GET", "/healthz", hdr, NOW + 1000, &d),
	        0);
	ck_assert_int_eq(d.status, 401);
	ck_assert_int_eq(d.reason, CUBEID_ERR_JWT_EXPIRED);
	cubeid_oidc_decision_clear(&d);
	free(t);
	cubeid_oidc_policy_free(p);
	cubeid_oidc_verifier_free(v);
}
END_TEST

START_TEST(test_client_assertion_and_jwks)
{
	cubeid_jwt_bundle *b = NULL;
	cubeid_jws *j = NULL;
	json_t *cl;
	char *a = NULL, *jwks;

	ck_assert_int_eq(cubeid_oidc_private_key_jwt("agentcube-router", ISS,
	                                             CUBEID_SIG_ECDSA_SHA256, "ec1",
	                                             cubeid_jws_sign_evp, k_ec, NOW, 60, &a),
	                 0);
	ck_assert_int_eq(cubeid_jws_decode(a, strlen(a), &j), 0);
	ck_assert_int_eq(cubeid_jws_verify(j, k_ec), 0);
	ck_assert_str_eq(cubeid_jws_kid(j), "ec1");
	cl = cubeid_jws_claims(j);
	ck_assert_str_eq(json_string_value(json_object_get(cl, "iss")), "agentcube-router");
	ck_assert_str_eq(json_string_value(json_object_get(cl, "sub")), "agentcube-router");
	ck_assert_str_eq(json_string_value(json_object_get(cl, "aud")), ISS);
	ck_assert_int_eq(json_integer_value(json_object_get(cl, "exp")), NOW + 60);
	ck_assert_uint_eq(strlen(json_string_value(json_object_get(cl, "jti"))), 32);
	cubeid_jws_free(j);
	free(a);
	ck_assert_int_eq(cubeid_oidc_private_key_jwt("c", ISS, CUBEID_SIG_ECDSA_SHA256, "k",
	                                             cubeid_jws_sign_evp, k_ec, NOW, 0, &a),
	                 CUBEID_ERR_INVALID_ARG);

	jwks = jwks_of(k_ec, "ec1", k_rsa, "rsa1");
	ck_assert_ptr_nonnull(strstr(jwks, "\"use\":\"sig\""));
	ck_assert_ptr_nonnull(strstr(jwks, "\"alg\":\"ES256\""));
	ck_assert_ptr_nonnull(strstr(jwks, "\"alg\":\"RS256\""));
	ck_assert_int_eq(cubeid_jwt_bundle_parse_jwks("oidc", jwks, strlen(jwks), &b), 0);
	ck_assert_uint_eq(cubeid_jwt_bundle_count(b), 2);
	cubeid_jwt_bundle_free(b);
	free(jwks);
}
END_TEST

START_TEST(test_client_and_secret_file)
{
	struct cubeid_oidc_client_opts o = {0};
	struct cubeid_oidc_token err;
	cubeid_oidc_client *c = NULL;
	char path[] = "/tmp/cubeid-secret-XXXXXX", *s = NULL, *tok = NULL;
	int fd = mkstemp(path);

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, "s3cret\nignored\n", 15), 15);
	close(fd);
	chmod(path, 0600);
	ck_assert_int_eq(cubeid_oidc_read_secret_file(path, &s), 0);
	ck_assert_str_eq(s, "s3cret");
	free(s);
	chmod(path, 0640);
	ck_assert_int_eq(cubeid_oidc_read_secret_file(path, &s), CUBEID_ERR_PERMISSION);
	ck_assert_ptr_null(s);
	unlink(path);
	ck_assert_int_eq(cubeid_oidc_read_secret_file(path, &s), CUBEID_ERR_NOT_FOUND);

	o.token_endpoint = "http://127.0.0.1:9/token";
	o.client_id = "agentcube-sdk";
	o.method = CUBEID_OIDC_AUTH_SECRET;
	ck_assert_int_eq(cubeid_oidc_client_new(&o, &c), CUBEID_ERR_INVALID_ARG);
	o.secret = "s3cret";
	o.http_timeout_ms = 2000;
	ck_assert_int_eq(cubeid_oidc_client_new(&o, &c), 0);
	ck_assert_int_eq(cubeid_oidc_client_token(c, NOW, &tok, &err), CUBEID_ERR_HTTP);
	ck_assert_ptr_null(tok);
	ck_assert_uint_eq(cubeid_oidc_client_fetches(c), 1);
	cubeid_oidc_token_clear(&err);
	cubeid_oidc_client_free(c);
	o.method = CUBEID_OIDC_AUTH_SPIFFE;
	ck_assert_int_eq(cubeid_oidc_client_new(&o, &c), CUBEID_ERR_INVALID_ARG);
}
END_TEST

START_TEST(test_rlac)
{
	cubeid_oidc_verifier *v = verifier(NULL, NULL, NULL);
	cubeid_oidc_claims *user = NULL, *admin = NULL;
	char h[CUBEID_RLAC_HASH_LEN + 1], *t;
	json_t *cl;

	/* SHA-256("abc") = ba7816bf...15ad, cut to 63 */
	ck_assert_int_eq(cubeid_rlac_owner_hash("abc", h), 0);
	ck_assert_str_eq(h, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015a");
	ck_assert_int_eq(cubeid_rlac_owner_hash("", h), CUBEID_ERR_INVALID_ARG);
	t = token(CUBEID_SIG_ECDSA_SHA256, k_ec, "ec1", std_claims());
	ck_assert_int_eq(cubeid_oidc_verify(v, t, strlen(t), NOW, &user), 0);
	free(t);
	cl = std_claims();
	json_object_set_new(cl, "sub", json_string("admin-1"));
	json_object_set_new(
	        cl, "realm_access",
	        json_pack("{s:[s,s,s]}", "roles", "admin", "sandbox:manage", "sandbox:invoke"));
	t = token(CUBEID_SIG_ECDSA_SHA256, k_ec, "ec1", cl);
	ck_assert_int_eq(cubeid_oidc_verify(v, t, strlen(t), NOW, &admin), 0);
	free(t);
	ck_assert_str_eq(cubeid_rlac_owner(user), "user-1");
	ck_assert_int_eq(cubeid_rlac_check(user, "user-1"), 0);
	ck_assert_int_eq(cubeid_rlac_check(user, "user-2"), CUBEID_ERR_FORBIDDEN);
	ck_assert_int_eq(cubeid_rlac_check(user, ""), CUBEID_ERR_FORBIDDEN);
	ck_assert_int_eq(cubeid_rlac_check(user, NULL), CUBEID_ERR_FORBIDDEN);
	ck_assert_int_eq(cubeid_rlac_check(admin, "user-1"), 0);
	ck_assert_int_eq(cubeid_rlac_check(admin, ""), 0);
	ck_assert_int_eq(cubeid_rlac_check(NULL, "user-1"), CUBEID_ERR_FORBIDDEN);
	cubeid_oidc_claims_free(user);
	cubeid_oidc_claims_free(admin);
	cubeid_oidc_verifier_free(v);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("oidc");
	TCase *tc = tcase_create("oidc");
	SRunner *sr;
	int failed;

	k_ec = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	k_other = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	k_rsa = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
	if (!k_ec || !k_other || !k_rsa) {
		fprintf(stderr, "key generation failed\n");
		return EXIT_FAILURE;
	}
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_issuer_and_discovery);
	tcase_add_test(tc, test_verify_algs_and_roles);
	tcase_add_test(tc, test_verify_claims);
	tcase_add_test(tc, test_cache_refresh_and_stale);
	tcase_add_test(tc, test_verified_token_cache);
	tcase_add_test(tc, test_never_fetched);
	tcase_add_test(tc, test_policy);
	tcase_add_test(tc, test_authorize);
	tcase_add_test(tc, test_client_assertion_and_jwks);
	tcase_add_test(tc, test_client_and_secret_file);
	tcase_add_test(tc, test_rlac);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	EVP_PKEY_free(k_ec);
	EVP_PKEY_free(k_other);
	EVP_PKEY_free(k_rsa);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
