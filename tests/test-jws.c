/*
 * JWS and JWT-SVID: base64url strictness, round trips for every allowed alg
 * with software keys, the attacks and malformed tokens a validator must
 * refuse, and libjwt 1.10.2 as an independent verifier of what we mint.
 */
#include "config.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jwt.h>
#include <openssl/err.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>

#include <cubeid/jwt.h>

#include "tests/ecdsa-test-util.h"

#define TD  "example.org"
#define SUB "spiffe://example.org/ns/default/sa/web"
#define AUD "spiffe://example.org/reports"

static EVP_PKEY *k_p256, *k_p384, *k_p521, *k_rsa;

static const struct {
	cubeid_sig_alg alg;
	const char *name;
	EVP_PKEY **key;
} algs[] = {
        {CUBEID_SIG_ECDSA_SHA256, "ES256", &k_p256},
        {CUBEID_SIG_ECDSA_SHA384, "ES384", &k_p384},
        {CUBEID_SIG_ECDSA_SHA512, "ES512", &k_p521},
        {CUBEID_SIG_RSA_PKCS1_SHA256, "RS256", &k_rsa},
        {CUBEID_SIG_RSA_PKCS1_SHA384, "RS384", &k_rsa},
        {CUBEID_SIG_RSA_PKCS1_SHA512, "RS512", &k_rsa},
        {CUBEID_SIG_RSA_PSS_SHA256, "PS256", &k_rsa},
        {CUBEID_SIG_RSA_PSS_SHA384, "PS384", &k_rsa},
        {CUBEID_SIG_RSA_PSS_SHA512, "PS512", &k_rsa},
};

/* A bundle for TD with every test key under kid "k-<alg family>". */
static cubeid_jwt_bundle *
test_bundle(void)
{
	cubeid_jwt_bundle *b = NULL;

	ck_assert_int_eq(cubeid_jwt_bundle_new(TD, &b), CUBEID_OK);
	ck_assert_int_eq(cubeid_jwt_bundle_add(b, "k-p256", k_p256), CUBEID_OK);
	ck_assert_int_eq(cubeid_jwt_bundle_add(b, "k-p384", k_p384), CUBEID_OK);
	ck_assert_int_eq(cubeid_jwt_bundle_add(b, "k-p521", k_p521), CUBEID_OK);
	ck_assert_int_eq(cubeid_jwt_bundle_add(b, "k-rsa", k_rsa), CUBEID_OK);
	return b;
}

static const char *
kid_of(EVP_PKEY *k)
{
	return k == k_p256 ? "k-p256" : k == k_p384 ? "k-p384" : k == k_p521 ? "k-p521" : "k-rsa";
}

/* Mint a JWT-SVID for SUB/AUD with key, valid from now for ttl. */
static char *
mint(cubeid_sig_alg alg, EVP_PKEY *key, const char *kid, int64_t now, unsigned ttl)
{
	cubeid_spiffe_id *id = NULL;
	const char *aud[] = {AUD};
	char *tok = NULL;

	ck_assert_int_eq(cubeid_spiffe_id_parse(SUB, strlen(SUB), &id, NULL), CUBEID_OK);
	ck_assert_int_eq(cubeid_jwt_svid_encode(alg, kid, id, aud, 1, now, ttl, "jti-1",
	                                        cubeid_jws_sign_evp, key, &tok),
	                 CUBEID_OK);
	cubeid_spiffe_id_free(id);
	return tok;
}

/* header.claims.sig from JSON texts and raw signature bytes. */
static char *
raw_token(const char *header, const char *claims, const uint8_t *sig, size_t sig_len)
{
	char *h = NULL, *c = NULL, *s = NULL, *tok;

	ck_assert_int_eq(cubeid_b64url_encode_alloc((const uint8_t *)header, strlen(header), &h),
	                 CUBEID_OK);
	ck_assert_int_eq(cubeid_b64url_encode_alloc((const uint8_t *)claims, strlen(claims), &c),
	                 CUBEID_OK);
	ck_assert_int_eq(cubeid_b64url_encode_alloc(sig, sig_len, &s), CUBEID_OK);
	tok = malloc(strlen(h) + strlen(c) + strlen(s) + 3);
	sprintf(tok, "%s.%s.%s", h, c, s);
	free(h);
	free(c);
	free(s);
	return tok;
}

/* A correctly ES256-signed token over arbitrary header and claims texts. */
static char *
signed_token(const char *header, const char *claims)
{
	char *tok = raw_token(header, claims, (const uint8_t *)"x", 1), *dot;
	uint8_t sig[CUBEID_JWS_SIG_MAX];
	size_t sig_len = sizeof(sig);
	char *s = NULL, *out;

	dot = strrchr(tok, '.');
	ck_assert_int_eq(cubeid_jws_sign_evp(k_p256, CUBEID_SIG_ECDSA_SHA256, (const uint8_t *)tok,
	                                     (size_t)(dot - tok), sig, &sig_len),
	                 CUBEID_OK);
	ck_assert_int_eq(cubeid_b64url_encode_alloc(sig, sig_len, &s), CUBEID_OK);
	*dot = '\0';
	out = malloc(strlen(tok) + strlen(s) + 2);
	sprintf(out, "%s.%s", tok, s);
	free(tok);
	free(s);
	return out;
}

static int
validate(const char *tok, int64_t now)
{
	cubeid_jwt_bundle *b = test_bundle();
	int rc = cubeid_jwt_svid_validate(tok, strlen(tok), b, AUD, now, 0, NULL, NULL);
	cubeid_jwt_bundle_free(b);
	return rc;
}

static char claims_ok[256];

/* ---- base64url ------------------------------------------------------- */

START_TEST(test_b64url_vectors)
{
	/* RFC 4648 section 10, unpadded */
	static const char *const in[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
	static const char *const enc[] = {"", "Zg", "Zm8", "Zm9v", "Zm9vYg", "Zm9vYmE", "Zm9vYmFy"};
	uint8_t buf[16];
	size_t i, n;
	char *s;

	for (i = 0; i < 7; i++) {
		ck_assert_int_eq(
		        cubeid_b64url_encode_alloc((const uint8_t *)in[i], strlen(in[i]), &s),
		        CUBEID_OK);
		ck_assert_str_eq(s, enc[i]);
		ck_assert_uint_eq(cubeid_b64url_len(strlen(in[i])), strlen(enc[i]));
		free(s);
		ck_assert_int_eq(cubeid_b64url_decode(enc[i], strlen(enc[i]), buf, sizeof(buf), &n),
		                 CUBEID_OK);
		ck_assert_uint_eq(n, strlen(in[i]));
		ck_assert(memcmp(buf, in[i], n) == 0);
	}
	/* the URL alphabet */
	ck_assert_int_eq(cubeid_b64url_decode("-_8", 3, buf, sizeof(buf), &n), CUBEID_OK);
	ck_assert_uint_eq(n, 2);
	ck_assert_uint_eq(buf[0], 0xfb);
	ck_assert_uint_eq(buf[1], 0xff);
	ck_assert_int_eq(cubeid_b64url_decode("Zm9vYmFy", 8, buf, 5, &n),
	                 CUBEID_ERR_BUFFER_TOO_SMALL);
}
END_TEST

START_TEST(test_b64url_strict)
{
	static const char *const bad[] = {
	        "Zg==",   /* padding */
	        "Zm8=",   /* padding */
	        "Zm9v\n", /* whitespace */
	        "Zm 9v",  /* whitespace */
	        "Zm9v+",  /* standard alphabet */
	        "Zm9/",   /* standard alphabet */
	        "Z",      /* 4n+1 characters */
	        "Zh",     /* non-canonical: low bits of 'h' set */
	        "Zm9",    /* non-canonical: 'Zm9' has low 2 bits set */
	        "Zm*v",   /* outside the alphabet */
	};
	uint8_t buf[16];
	size_t i, n;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		ck_assert_msg(cubeid_b64url_decode(bad[i], strlen(bad[i]), buf, sizeof(buf), &n) ==
		                      CUBEID_ERR_PARSE,
		              "accepted %s", bad[i]);
}
END_TEST

START_TEST(test_b64_std_strict)
{
	uint8_t *out = NULL;
	size_t n;
	char *s = NULL;

	ck_assert_int_eq(cubeid_b64_std_decode_alloc("Zg==", 4, &out, &n), CUBEID_OK);
	ck_assert_uint_eq(n, 1);
	ck_assert_uint_eq(out[0], 'f');
	free(out);
	ck_assert_int_eq(cubeid_b64_std_decode_alloc("+/8=", 4, &out, &n), CUBEID_OK);
	ck_assert_uint_eq(out[0], 0xfb);
	free(out);
	ck_assert_int_eq(cubeid_b64_std_decode_alloc("Zg", 2, &out, &n), CUBEID_ERR_PARSE);
	ck_assert_int_eq(cubeid_b64_std_decode_alloc("Zg=", 3, &out, &n), CUBEID_ERR_PARSE);
	ck_assert_int_eq(cubeid_b64_std_decode_alloc("Z===", 4, &out, &n), CUBEID_ERR_PARSE);
	ck_assert_int_eq(cubeid_b64_std_decode_alloc("Zh==", 4, &out, &n), CUBEID_ERR_PARSE);
	ck_assert_int_eq(cubeid_b64_std_decode_alloc("-_8=", 4, &out, &n), CUBEID_ERR_PARSE);
	ck_assert_ptr_null(out);
	ck_assert_int_eq(cubeid_b64_std_encode_alloc((const uint8_t *)"fo", 2, &s), CUBEID_OK);
	ck_assert_str_eq(s, "Zm8=");
	free(s);
}
END_TEST

/* ---- algorithms ------------------------------------------------------ */

START_TEST(test_alg_names)
{
	size_t i;

	for (i = 0; i < sizeof(algs) / sizeof(algs[0]); i++) {
		ck_assert_str_eq(cubeid_jws_alg_name(algs[i].alg), algs[i].name);
		ck_assert_int_eq(cubeid_jws_alg_from_name(algs[i].name), algs[i].alg);
	}
	ck_assert_int_eq(cubeid_jws_alg_from_name("none"), CUBEID_SIG_NONE);
	ck_assert_int_eq(cubeid_jws_alg_from_name("HS256"), CUBEID_SIG_NONE);
	ck_assert_int_eq(cubeid_jws_alg_from_name("EdDSA"), CUBEID_SIG_NONE);
	ck_assert_int_eq(cubeid_jws_alg_from_name("es256"), CUBEID_SIG_NONE);
	ck_assert_ptr_null(cubeid_jws_alg_name(CUBEID_SIG_NONE));
}
END_TEST

START_TEST(test_key_fits_alg)
{
	ck_assert_int_eq(cubeid_jws_key_fits(CUBEID_SIG_ECDSA_SHA256, k_p256), CUBEID_OK);
	ck_assert_int_eq(cubeid_jws_key_fits(CUBEID_SIG_ECDSA_SHA256, k_p384), CUBEID_ERR_JWT_ALG);
	ck_assert_int_eq(cubeid_jws_key_fits(CUBEID_SIG_ECDSA_SHA512, k_p521), CUBEID_OK);
	ck_assert_int_eq(cubeid_jws_key_fits(CUBEID_SIG_ECDSA_SHA384, k_rsa), CUBEID_ERR_JWT_ALG);
	ck_assert_int_eq(cubeid_jws_key_fits(CUBEID_SIG_RSA_PKCS1_SHA256, k_p256),
	                 CUBEID_ERR_JWT_ALG);
	ck_assert_int_eq(cubeid_jws_key_fits(CUBEID_SIG_RSA_PSS_SHA256, k_rsa), CUBEID_OK);
}
END_TEST

/* Every allowed alg: mint, decode, verify, validate. */
START_TEST(test_round_trip_every_alg)
{
	cubeid_jwt_bundle *b = test_bundle();
	EVP_PKEY *key = *algs[_i].key;
	cubeid_spiffe_id *id = NULL;
	cubeid_jws *jws = NULL;
	json_t *claims = NULL;
	int64_t now = (int64_t)time(NULL);
	char *tok = mint(algs[_i].alg, key, kid_of(key), now, 300);

	ck_assert_int_eq(cubeid_jws_decode(tok, strlen(tok), &jws), CUBEID_OK);
	ck_assert_int_eq(cubeid_jws_alg(jws), algs[_i].alg);
	ck_assert_str_eq(cubeid_jws_kid(jws), kid_of(key));
	ck_assert_str_eq(cubeid_jws_typ(jws), "JWT");
	ck_assert_int_eq(cubeid_jws_verify(jws, key), CUBEID_OK);
	cubeid_jws_free(jws);

	ck_assert_int_eq(cubeid_jwt_svid_validate(tok, strlen(tok), b, AUD, 0, 0, &id, &claims),
	                 CUBEID_OK);
	ck_assert_str_eq(cubeid_spiffe_id_string(id), SUB);
	ck_assert_int_eq(json_integer_value(json_object_get(claims, "exp")), now + 300);
	ck_assert_int_eq(json_integer_value(json_object_get(claims, "iat")), now);
	ck_assert_str_eq(json_string_value(json_object_get(claims, "jti")), "jti-1");
	ck_assert_str_eq(json_string_value(json_object_get(claims, "aud")), AUD);
	cubeid_spiffe_id_free(id);
	json_decref(claims);

	/* a different key of the same kind does not verify it */
	{
		EVP_PKEY *other = NULL;
		cubeid_jwt_bundle *b2 = NULL;
		if (key == k_rsa)
			other = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
		else
			other = EVP_PKEY_Q_keygen(NULL, NULL, "EC",
			                          key == k_p256   ? "P-256"
			                          : key == k_p384 ? "P-384"
			                                          : "P-521");
		ck_assert_ptr_nonnull(other);
		ck_assert_int_eq(cubeid_jwt_bundle_new(TD, &b2), CUBEID_OK);
		ck_assert_int_eq(cubeid_jwt_bundle_add(b2, kid_of(key), other), CUBEID_OK);
		ck_assert_int_eq(
		        cubeid_jwt_svid_validate(tok, strlen(tok), b2, AUD, 0, 0, NULL, NULL),
		        CUBEID_ERR_JWT_SIGNATURE);
		cubeid_jwt_bundle_free(b2);
		EVP_PKEY_free(other);
	}
	free(tok);
	cubeid_jwt_bundle_free(b);
}
END_TEST

/* PS*: salt length must equal the hash length (RFC 7518 3.5). */
START_TEST(test_pss_salt_length)
{
	uint8_t sig[512];
	size_t sig_len = sizeof(sig);
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	EVP_PKEY_CTX *pctx = NULL;
	char *tok = mint(CUBEID_SIG_RSA_PSS_SHA256, k_rsa, "k-rsa", 0, 60), *bad, *dot;
	char *s = NULL;

	/* an independent verifier with salt length 32 accepts ours */
	{
		cubeid_jws *jws = NULL;
		const uint8_t *in, *sg;
		size_t in_len, sg_len;
		ck_assert_int_eq(cubeid_jws_decode(tok, strlen(tok), &jws), CUBEID_OK);
		in = cubeid_jws_signing_input(jws, &in_len);
		sg = cubeid_jws_signature(jws, &sg_len);
		ck_assert_int_eq(EVP_DigestVerifyInit(md, &pctx, EVP_sha256(), NULL, k_rsa), 1);
		ck_assert_int_eq(EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING), 1);
		ck_assert_int_eq(EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, 32), 1);
		ck_assert_int_eq(EVP_DigestVerify(md, sg, sg_len, in, in_len), 1);
		cubeid_jws_free(jws);
	}
	/* a PS256 signature with a 20-byte salt is refused */
	dot = strrchr(tok, '.');
	*dot = '\0';
	EVP_MD_CTX_reset(md);
	ck_assert_int_eq(EVP_DigestSignInit(md, &pctx, EVP_sha256(), NULL, k_rsa), 1);
	ck_assert_int_eq(EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING), 1);
	ck_assert_int_eq(EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, 20), 1);
	ck_assert_int_eq(EVP_DigestSign(md, sig, &sig_len, (const uint8_t *)tok, strlen(tok)), 1);
	ck_assert_int_eq(cubeid_b64url_encode_alloc(sig, sig_len, &s), CUBEID_OK);
	bad = malloc(strlen(tok) + strlen(s) + 2);
	sprintf(bad, "%s.%s", tok, s);
	ck_assert_int_eq(validate(bad, 0), CUBEID_ERR_JWT_SIGNATURE);
	free(bad);
	free(s);
	free(tok);
	EVP_MD_CTX_free(md);
}
END_TEST

/* ---- attacks and malformed tokens ------------------------------------ */

START_TEST(test_reject_alg_none)
{
	char *tok = raw_token("{\"alg\":\"none\",\"kid\":\"k-p256\"}", claims_ok,
	                      (const uint8_t *)"", 0);
	cubeid_jws *jws = NULL;
	size_t n = strlen(tok);

	/* alg is judged before anything else, even an empty (unsecured) signature */
	ck_assert_int_eq(cubeid_jws_decode(tok, n, &jws), CUBEID_ERR_JWT_ALG);
	ck_assert_int_eq(validate(tok, 0), CUBEID_ERR_JWT_ALG);
	free(tok);
	tok = raw_token("{\"alg\":\"none\",\"kid\":\"k-p256\"}", claims_ok, (const uint8_t *)"x",
	                1);
	ck_assert_int_eq(cubeid_jws_decode(tok, strlen(tok), &jws), CUBEID_ERR_JWT_ALG);
	ck_assert_ptr_null(jws);
	ck_assert_int_eq(validate(tok, 0), CUBEID_ERR_JWT_ALG);
	free(tok);
	/* no alg, alg not a string, alg in another case */
	tok = raw_token("{\"kid\":\"k-p256\"}", claims_ok, (const uint8_t *)"x", 1);
	ck_assert_int_eq(validate(tok, 0), CUBEID_ERR_JWT_ALG);
	free(tok);
	tok = raw_token("{\"alg\":256,\"kid\":\"k-p256\"}", claims_ok, (const uint8_t *)"x", 1);
	ck_assert_int_eq(validate(tok, 0), CUBEID_ERR_JWT_MALFORMED);
	free(tok);
	tok = raw_token("{\"alg\":\"es256\",\"kid\":\"k-p256\"}", claims_ok, (const uint8_t *)"x",
	                1);
	ck_assert_int_eq(validate(tok, 0), CUBEID_ERR_JWT_ALG);
	free(tok);
}
END_TEST

/* The classic confusion attack: HS256 keyed with the RSA public key PEM. */
START_TEST(test_reject_hs256_with_public_key_secret)
{
	BIO *bio = BIO_new(BIO_s_mem());
	char *pem, *tok, *dot, *s = NULL, *full;
	long pem_len;
	uint8_t mac[32];
	unsigned mac_len = sizeof(mac);

	ck_assert_int_eq(PEM_write_bio_PUBKEY(bio, k_rsa), 1);
	pem_len = BIO_get_mem_data(bio, &pem);
	tok = raw_token("{\"alg\":\"HS256\",\"kid\":\"k-rsa\",\"typ\":\"JWT\"}", claims_ok,
	                (const uint8_t *)"x", 1);
	dot = strrchr(tok, '.');
	*dot = '\0';
	ck_assert_ptr_nonnull(HMAC(EVP_sha256(), pem, (int)pem_len, (const uint8_t *)tok,
	                           strlen(tok), mac, &mac_len));
	ck_assert_int_eq(cubeid_b64url_encode_alloc(mac, mac_len, &s), CUBEID_OK);
	full = malloc(strlen(tok) + strlen(s) + 2);
	sprintf(full, "%s.%s", tok, s);
	ck_assert_int_eq(validate(full, 0), CUBEID_ERR_JWT_ALG);
	free(full);
	free(s);
	free(tok);
	BIO_free(bio);
	/* HS384/HS512 as well */
	tok = raw_token("{\"alg\":\"HS512\",\"kid\":\"k-rsa\"}", claims_ok, mac, sizeof(mac));
	ck_assert_int_eq(validate(tok, 0), CUBEID_ERR_JWT_ALG);
	free(tok);
}
END_TEST

START_TEST(test_reject_kid)
{
	char *tok = mint(CUBEID_SIG_ECDSA_SHA256, k_p256, "no-such-kid", 0, 60);

	ck_assert_int_eq(validate(tok, 0), CUBEID_ERR_JWT_KID);
	free(tok);
	tok = mint(CUBEID_SIG_ECDSA_SHA256, k_p256, NULL, 0, 60); /* no kid at all */
	ck_assert_int_eq(validate(tok, 0), CUBEID_ERR_JWT_KID);
	free(tok);
	/* kid that names a key of another type: alg/key confusion */
	tok = mint(CUBEID_SIG_ECDSA_SHA256, k_p256, "k-rsa", 0, 60);
	ck_assert_int_eq(validate(tok, 0), CUBEID_ERR_JWT_ALG);
	free(tok);
	tok = mint(CUBEID_SIG_ECDSA_SHA256, k_p256, "k-p384", 0, 60);
	ck_assert_int_eq(validate(tok, 0), CUBEID_ERR_JWT_ALG);
	free(tok);
	tok = mint(CUBEID_SIG_RSA_PKCS1_SHA256, k_rsa, "k-p256", 0, 60);
	ck_assert_int_eq(validate(tok, 0), CUBEID_ERR_JWT_ALG);
	free(tok);
}
END_TEST

START_TEST(test_reject_audience)
{
	int64_t exp = (int64_t)time(NULL) + 60;
	char cl[512], *tok;

	snprintf(cl, sizeof(cl), "{\"sub\":\"%s\",\"exp\":%lld}", SUB, (long long)exp);
	tok = signed_token("{\"alg\":\"ES256\",\"kid\":\"k-p256\"}", cl);
	ck_assert_int_eq(validate(tok, 0), CUBEID_ERR_JWT_AUDIENCE); /* missing */
	free(tok);
	snprintf(cl, sizeof(cl), "{\"sub\":\"%s\",\"exp\":%lld,\"aud\":\"other\"}", SUB,
	         (long long)exp);
	tok = signed_token("{\"alg\":\"ES256\",\"kid\":\"k-p256\"}", cl);
	ck_assert_int_eq(validate(tok, 0), CUBEID_ERR_JWT_AUDIENCE); /* wrong */
	free(tok);
	snprintf(cl, sizeof(cl), "{\"sub\":\"%s\",\"exp\":%lld,\"aud\":[]}", SUB, (long long)exp);
	tok = signed_token("{\"alg\":\"ES256\",\"kid\":\"k-p256\"}", cl);
	ck_assert_int_eq(validate(tok, 0), CUBEID_ERR_JWT_AUDIENCE); /* empty */
	free(tok);
	snprintf(cl, sizeof(cl), "{\"sub\":\"%s\",\"exp\":%lld,\"aud\":[\"a\",1,\"%s\"]}", SUB,
	         (long long)exp, AUD);
	tok = signed_token("{\"alg\":\"ES256\",\"kid\":\"k-p256\"}", cl);
	ck_assert_int_eq(validate(tok, 0), CUBEID_ERR_JWT_AUDIENCE); /* not strings */
	free(tok);
	snprintf(cl, sizeof(cl), "{\"sub\":\"%s\",\"exp\":%lld,\"aud\":[\"a\",\"%s\"]}", SUB,
	         (long long)exp, AUD);
	tok = signed_token("{\"alg\":\"ES256\",\"kid\":\"k-p256\"}", cl);
	ck_assert_int_eq(validate(tok, 0), CUBEID_OK); /* one of several */
	free(tok);
	/* several audiences are minted as an array */
	{
		cubeid_spiffe_id *id = NULL;
		cubeid_jwt_bundle *b = test_bundle();
		const char *auds[] = {"a", AUD};
		ck_assert_int_eq(cubeid_spiffe_id_parse(SUB, strlen(SUB), &id, NULL), CUBEID_OK);
		ck_assert_int_eq(cubeid_jwt_svid_encode(CUBEID_SIG_ECDSA_SHA256, "k-p256", id, auds,
		                                        2, 0, 60, NULL, cubeid_jws_sign_evp, k_p256,
		                                        &tok),
		                 CUBEID_OK);
		ck_assert_int_eq(
		        cubeid_jwt_svid_validate(tok, strlen(tok), b, "a", 0, 0, NULL, NULL),
		        CUBEID_OK);
		ck_assert_int_eq(
		        cubeid_jwt_svid_validate(tok, strlen(tok), b, "b", 0, 0, NULL, NULL),
		        CUBEID_ERR_JWT_AUDIENCE);
		free(tok);
		ck_assert_int_eq(cubeid_jwt_svid_encode(CUBEID_SIG_ECDSA_SHA256, "k-p256", id, auds,
		                                        0, 0, 60, NULL, cubeid_jws_sign_evp, k_p256,
		                                        &tok),
		                 CUBEID_ERR_INVALID_ARG);
		cubeid_spiffe_id_free(id);
		cubeid_jwt_bundle_free(b);
	}
}
END_TEST

START_TEST(test_reject_expired_and_not_yet)
{
	int64_t now = (int64_t)time(NULL);
	cubeid_jwt_bundle *b = test_bundle();
	char *tok = mint(CUBEID_SIG_ECDSA_SHA256, k_p256, "k-p256", now, 60), cl[512];

	ck_assert_int_eq(validate(tok, now + 59), CUBEID_OK);
	ck_assert_int_eq(validate(tok, now + 60), CUBEID_ERR_JWT_EXPIRED);
	ck_assert_int_eq(validate(tok, now + 3600), CUBEID_ERR_JWT_EXPIRED);
	/* leeway */
	ck_assert_int_eq(
	        cubeid_jwt_svid_validate(tok, strlen(tok), b, AUD, now + 70, 30, NULL, NULL),
	        CUBEID_OK);
	free(tok);
	/* exp missing / not a number */
	snprintf(cl, sizeof(cl), "{\"sub\":\"%s\",\"aud\":\"%s\"}", SUB, AUD);
	tok = signed_token("{\"alg\":\"ES256\",\"kid\":\"k-p256\"}", cl);
	ck_assert_int_eq(validate(tok, 0), CUBEID_ERR_JWT_CLAIM);
	free(tok);
	snprintf(cl, sizeof(cl), "{\"sub\":\"%s\",\"aud\":\"%s\",\"exp\":\"%lld\"}", SUB, AUD,
	         (long long)now + 60);
	tok = signed_token("{\"alg\":\"ES256\",\"kid\":\"k-p256\"}", cl);
	ck_assert_int_eq(validate(tok, 0), CUBEID_ERR_JWT_CLAIM);
	free(tok);
	/* nbf in the future */
	snprintf(cl, sizeof(cl), "{\"sub\":\"%s\",\"aud\":\"%s\",\"exp\":%lld,\"nbf\":%lld}", SUB,
	         AUD, (long long)now + 600, (long long)now + 300);
	tok = signed_token("{\"alg\":\"ES256\",\"kid\":\"k-p256\"}", cl);
	ck_assert_int_eq(validate(tok, now), CUBEID_ERR_JWT_NOT_YET);
	ck_assert_int_eq(validate(tok, now + 300), CUBEID_OK);
	free(tok);
	cubeid_jwt_bundle_free(b);
}
END_TEST

/* exp far in the future, iat in the future, a lifetime over the maximum */
START_TEST(test_reject_future_iat_and_long_lifetime)
{
	static const char hdr[] = "{\"alg\":\"ES256\",\"kid\":\"k-p256\"}";
	int64_t now = (int64_t)time(NULL);
	struct cubeid_jwt_svid_opts o = {0};
	cubeid_jwt_bundle *b = test_bundle();
	char cl[512], *tok;

	/* exp = INT64_MAX, with and without iat */
	snprintf(cl, sizeof(cl), "{\"sub\":\"%s\",\"aud\":\"%s\",\"exp\":%lld,\"iat\":%lld}", SUB,
	         AUD, (long long)INT64_MAX, (long long)now);
	tok = signed_token(hdr, cl);
	ck_assert_int_eq(validate(tok, now), CUBEID_ERR_JWT_CLAIM);
	free(tok);
	snprintf(cl, sizeof(cl), "{\"sub\":\"%s\",\"aud\":\"%s\",\"exp\":%lld}", SUB, AUD,
	         (long long)INT64_MAX);
	tok = signed_token(hdr, cl);
	ck_assert_int_eq(validate(tok, now), CUBEID_ERR_JWT_CLAIM);
	free(tok);
	/* iat in the future: beyond the leeway refused, within it accepted */
	snprintf(cl, sizeof(cl), "{\"sub\":\"%s\",\"aud\":\"%s\",\"exp\":%lld,\"iat\":%lld}", SUB,
	         AUD, (long long)now + 900, (long long)now + 600);
	tok = signed_token(hdr, cl);
	ck_assert_int_eq(validate(tok, now), CUBEID_ERR_JWT_NOT_YET);
	o.now = now + 570;
	o.leeway = 30;
	ck_assert_int_eq(cubeid_jwt_svid_validate_opts(tok, strlen(tok), b, AUD, &o, NULL, NULL),
	                 CUBEID_OK);
	o.now = now + 569;
	ck_assert_int_eq(cubeid_jwt_svid_validate_opts(tok, strlen(tok), b, AUD, &o, NULL, NULL),
	                 CUBEID_ERR_JWT_NOT_YET);
	free(tok);
	snprintf(cl, sizeof(cl), "{\"sub\":\"%s\",\"aud\":\"%s\",\"exp\":%lld,\"iat\":\"now\"}",
	         SUB, AUD, (long long)now + 60);
	tok = signed_token(hdr, cl);
	ck_assert_int_eq(validate(tok, now), CUBEID_ERR_JWT_CLAIM);
	free(tok);
	/* the default maximum is 24 h: exactly that passes, a second more not */
	snprintf(cl, sizeof(cl), "{\"sub\":\"%s\",\"aud\":\"%s\",\"exp\":%lld,\"iat\":%lld}", SUB,
	         AUD, (long long)now + 86400, (long long)now);
	tok = signed_token(hdr, cl);
	ck_assert_int_eq(validate(tok, now), CUBEID_OK);
	/* a configured maximum */
	o.now = now;
	o.leeway = 0;
	o.max_lifetime = 3600;
	ck_assert_int_eq(cubeid_jwt_svid_validate_opts(tok, strlen(tok), b, AUD, &o, NULL, NULL),
	                 CUBEID_ERR_JWT_CLAIM);
	free(tok);
	snprintf(cl, sizeof(cl), "{\"sub\":\"%s\",\"aud\":\"%s\",\"exp\":%lld,\"iat\":%lld}", SUB,
	         AUD, (long long)now + 86401, (long long)now);
	tok = signed_token(hdr, cl);
	ck_assert_int_eq(validate(tok, now), CUBEID_ERR_JWT_CLAIM);
	free(tok);
	/* without iat the lifetime counts from now */
	snprintf(cl, sizeof(cl), "{\"sub\":\"%s\",\"aud\":\"%s\",\"exp\":%lld}", SUB, AUD,
	         (long long)now + 3600);
	tok = signed_token(hdr, cl);
	ck_assert_int_eq(cubeid_jwt_svid_validate_opts(tok, strlen(tok), b, AUD, &o, NULL, NULL),
	                 CUBEID_OK);
	o.max_lifetime = 3599;
	ck_assert_int_eq(cubeid_jwt_svid_validate_opts(tok, strlen(tok), b, AUD, &o, NULL, NULL),
	                 CUBEID_ERR_JWT_CLAIM);
	ck_assert_int_eq(cubeid_jwt_svid_validate_opts(tok, strlen(tok), b, AUD, NULL, NULL, NULL),
	                 CUBEID_ERR_INVALID_ARG);
	free(tok);
	cubeid_jwt_bundle_free(b);
}
END_TEST

START_TEST(test_reject_typ)
{
	char *tok;

	tok = signed_token("{\"alg\":\"ES256\",\"kid\":\"k-p256\",\"typ\":\"at+jwt\"}", claims_ok);
	ck_assert_int_eq(validate(tok, 0), CUBEID_ERR_JWT_MALFORMED);
	free(tok);
	tok = signed_token("{\"alg\":\"ES256\",\"kid\":\"k-p256\",\"typ\":7}", claims_ok);
	ck_assert_int_eq(validate(tok, 0), CUBEID_ERR_JWT_MALFORMED);
	free(tok);
	tok = signed_token("{\"alg\":\"ES256\",\"kid\":\"k-p256\",\"typ\":\"JOSE\"}", claims_ok);
	ck_assert_int_eq(validate(tok, 0), CUBEID_OK);
	free(tok);
	tok = signed_token("{\"alg\":\"ES256\",\"kid\":\"k-p256\"}", claims_ok); /* typ optional */
	ck_assert_int_eq(validate(tok, 0), CUBEID_OK);
	free(tok);
	tok = signed_token("{\"alg\":\"ES256\",\"kid\":\"k-p256\",\"crit\":[\"exp\"]}", claims_ok);
	ck_assert_int_eq(validate(tok, 0), CUBEID_ERR_JWT_MALFORMED);
	free(tok);
}
END_TEST

START_TEST(test_reject_bad_signature)
{
	char *tok = mint(CUBEID_SIG_ECDSA_SHA256, k_p256, "k-p256", 0, 60), *dot, *s = NULL, *bad;
	uint8_t garbage[128];
	size_t i, lens[] = {64, 63, 65, 32, 1}; /* right length, then wrong lengths */

	dot = strrchr(tok, '.');
	*dot = '\0';
	for (i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
		ck_assert_int_eq(RAND_bytes(garbage, sizeof(garbage)), 1);
		ck_assert_int_eq(cubeid_b64url_encode_alloc(garbage, lens[i], &s), CUBEID_OK);
		bad = malloc(strlen(tok) + strlen(s) + 2);
		sprintf(bad, "%s.%s", tok, s);
		ck_assert_msg(validate(bad, 0) == CUBEID_ERR_JWT_SIGNATURE, "garbage length %zu",
		              lens[i]);
		free(bad);
		free(s);
	}
	free(tok);
	/* r = s = 0 */
	memset(garbage, 0, sizeof(garbage));
	tok = raw_token("{\"alg\":\"ES256\",\"kid\":\"k-p256\"}", claims_ok, garbage, 64);
	ck_assert_int_eq(validate(tok, 0), CUBEID_ERR_JWT_SIGNATURE);
	free(tok);
	/* an RSA signature of the wrong length */
	tok = raw_token("{\"alg\":\"RS256\",\"kid\":\"k-rsa\"}", claims_ok, garbage, 64);
	ck_assert_int_eq(validate(tok, 0), CUBEID_ERR_JWT_SIGNATURE);
	free(tok);
	/* a changed claim breaks a good signature */
	tok = mint(CUBEID_SIG_ECDSA_SHA256, k_p256, "k-p256", 0, 60);
	{
		char *p = strchr(tok, '.') + 1;
		p[3] = p[3] == 'A' ? 'B' : 'A';
		ck_assert_int_ne(validate(tok, 0), CUBEID_OK);
	}
	free(tok);
}
END_TEST

/* ECDSA malleability: (r, n - s) verifies under plain ECDSA; the JWS
 * verifier takes only the low-S form unless told otherwise, and every ES
 * token we encode is low-S. */
START_TEST(test_reject_high_s_twin)
{
	static const struct {
		cubeid_sig_alg alg;
		EVP_PKEY **key;
		const char *kid;
	} es[] = {
	        {CUBEID_SIG_ECDSA_SHA256, &k_p256, "k-p256"},
	        {CUBEID_SIG_ECDSA_SHA384, &k_p384, "k-p384"},
	        {CUBEID_SIG_ECDSA_SHA512, &k_p521, "k-p521"},
	};
	size_t i, n;

	for (i = 0; i < sizeof(es) / sizeof(es[0]); i++) {
		char *tok = mint(es[i].alg, *es[i].key, es[i].kid, 0, 60), *twin;
		cubeid_jws *j = NULL;
		uint8_t sig[CUBEID_JWS_SIG_MAX];
		const uint8_t *p;

		ck_assert(etu_low_s(tok));
		ck_assert_int_eq(validate(tok, 0), CUBEID_OK);
		twin = etu_flip_s(tok);
		ck_assert(!etu_low_s(twin));
		/* JWT-SVIDs from Go signers are high-S half of the time:
		 * accepted by default, refused when asked for low-S only */
		ck_assert_int_eq(validate(twin, 0), CUBEID_OK);
		{
			struct cubeid_jwt_svid_opts o = {.low_s_only = true};
			cubeid_jwt_bundle *b = test_bundle();

			ck_assert_int_eq(cubeid_jwt_svid_validate_opts(tok, strlen(tok), b, AUD, &o,
			                                               NULL, NULL),
			                 CUBEID_OK);
			ck_assert_int_eq(cubeid_jwt_svid_validate_opts(twin, strlen(twin), b, AUD,
			                                               &o, NULL, NULL),
			                 CUBEID_ERR_JWT_SIGNATURE);
			cubeid_jwt_bundle_free(b);
		}
		ck_assert_int_eq(cubeid_jws_decode(twin, strlen(twin), &j), CUBEID_OK);
		ck_assert_int_eq(cubeid_jws_verify(j, *es[i].key), CUBEID_ERR_JWT_SIGNATURE);
		/* the twin is a valid ECDSA signature: the opt-in accepts it */
		ck_assert_int_eq(cubeid_jws_verify_flags(j, *es[i].key, CUBEID_JWS_ALLOW_HIGH_S),
		                 CUBEID_OK);
		ck_assert_int_eq(cubeid_jws_verify_flags(j, *es[i].key, 0x80),
		                 CUBEID_ERR_INVALID_ARG);
		/* and canonicalises back to the original */
		p = cubeid_jws_signature(j, &n);
		memcpy(sig, p, n);
		ck_assert_int_eq(cubeid_jws_ecdsa_low_s(es[i].alg, sig, n), 1);
		ck_assert_int_eq(cubeid_jws_ecdsa_low_s(es[i].alg, sig, n), 0);
		ck_assert_int_eq(cubeid_jws_ecdsa_low_s(es[i].alg, sig, n - 1),
		                 CUBEID_ERR_INVALID_ARG);
		ck_assert_int_eq(cubeid_jws_ecdsa_low_s(CUBEID_SIG_RSA_PKCS1_SHA256, sig, n),
		                 CUBEID_ERR_INVALID_ARG);
		cubeid_jws_free(j);
		ck_assert_int_eq(cubeid_jws_decode(tok, strlen(tok), &j), CUBEID_OK);
		p = cubeid_jws_signature(j, &n);
		ck_assert_int_eq(memcmp(p, sig, n), 0);
		cubeid_jws_free(j);
		free(twin);
		free(tok);
	}
}
END_TEST

START_TEST(test_encoded_es_tokens_are_low_s)
{
	int i;

	/* OpenSSL leaves s high about half of the time: 300 tokens would all
	 * be low-S by chance with probability 2^-300 */
	for (i = 0; i < 300; i++) {
		char *tok = mint(CUBEID_SIG_ECDSA_SHA256, k_p256, "k-p256", 0, 60);

		ck_assert_msg(etu_low_s(tok), "token %d is high-S", i);
		free(tok);
	}
	for (i = 0; i < 50; i++) {
		char *a = mint(CUBEID_SIG_ECDSA_SHA384, k_p384, "k-p384", 0, 60);
		char *b = mint(CUBEID_SIG_ECDSA_SHA512, k_p521, "k-p521", 0, 60);

		ck_assert(etu_low_s(a));
		ck_assert(etu_low_s(b));
		free(a);
		free(b);
	}
}
END_TEST

START_TEST(test_reject_malformed_shape)
{
	char *tok = mint(CUBEID_SIG_ECDSA_SHA256, k_p256, "k-p256", 0, 60), buf[4096];
	const char *dot2 = strrchr(tok, '.');
	cubeid_jws *jws = NULL;

	ck_assert_int_eq(validate(tok, 0), CUBEID_OK);
	snprintf(buf, sizeof(buf), "%s.", tok); /* trailing dot */
	ck_assert_int_eq(validate(buf, 0), CUBEID_ERR_JWT_MALFORMED);
	snprintf(buf, sizeof(buf), "%s.%s", tok, dot2 + 1); /* four parts */
	ck_assert_int_eq(validate(buf, 0), CUBEID_ERR_JWT_MALFORMED);
	snprintf(buf, sizeof(buf), "%.*s", (int)(dot2 - tok), tok); /* two parts */
	ck_assert_int_eq(validate(buf, 0), CUBEID_ERR_JWT_MALFORMED);
	snprintf(buf, sizeof(buf), "%s=", tok); /* padding on the signature */
	ck_assert_int_eq(validate(buf, 0), CUBEID_ERR_JWT_MALFORMED);
	snprintf(buf, sizeof(buf), ".%s", strchr(tok, '.') + 1); /* empty header */
	ck_assert_int_eq(validate(buf, 0), CUBEID_ERR_JWT_MALFORMED);
	snprintf(buf, sizeof(buf), " %s", tok); /* whitespace */
	ck_assert_int_eq(validate(buf, 0), CUBEID_ERR_JWT_MALFORMED);
	ck_assert_int_eq(validate("", 0), CUBEID_ERR_JWT_MALFORMED);
	ck_assert_int_eq(validate("..", 0), CUBEID_ERR_JWT_MALFORMED);
	/* padding inside the header part */
	{
		char *t2 = raw_token("{\"alg\":\"ES256\",\"kid\":\"k-p256\"}", claims_ok,
		                     (const uint8_t *)"x", 1);
		char *d = strchr(t2, '.');
		snprintf(buf, sizeof(buf), "%.*s=%s", (int)(d - t2), t2, d);
		ck_assert_int_eq(cubeid_jws_decode(buf, strlen(buf), &jws),
		                 CUBEID_ERR_JWT_MALFORMED);
		free(t2);
	}
	/* a NUL inside the given length */
	memcpy(buf, tok, strlen(tok) + 1);
	buf[5] = '\0';
	ck_assert_int_eq(cubeid_jws_decode(buf, strlen(tok), &jws), CUBEID_ERR_JWT_MALFORMED);
	ck_assert_ptr_null(jws);
	free(tok);
	/* header / claims not objects, not JSON, duplicate members */
	tok = raw_token("[\"ES256\"]", claims_ok, (const uint8_t *)"x", 1);
	ck_assert_int_eq(validate(tok, 0), CUBEID_ERR_JWT_MALFORMED);
	free(tok);
	tok = signed_token("{\"alg\":\"ES256\",\"kid\":\"k-p256\"}", "\"just a string\"");
	ck_assert_int_eq(validate(tok, 0), CUBEID_ERR_JWT_MALFORMED);
	free(tok);
	tok = signed_token("{\"alg\":\"ES256\",\"kid\":\"k-p256\"}", "{\"sub\":");
	ck_assert_int_eq(validate(tok, 0), CUBEID_ERR_JWT_MALFORMED);
	free(tok);
	tok = signed_token("{\"alg\":\"ES256\",\"alg\":\"none\",\"kid\":\"k-p256\"}", claims_ok);
	ck_assert_int_eq(validate(tok, 0), CUBEID_ERR_JWT_MALFORMED);
	free(tok);
	snprintf(buf, sizeof(buf), "{\"sub\":\"%s\",\"sub\":\"spiffe://evil.org/x\",%s", SUB,
	         claims_ok + strlen("{\"sub\":\"" SUB "\","));
	tok = signed_token("{\"alg\":\"ES256\",\"kid\":\"k-p256\"}", buf);
	ck_assert_int_eq(validate(tok, 0), CUBEID_ERR_JWT_MALFORMED);
	free(tok);
}
END_TEST

START_TEST(test_reject_oversize)
{
	size_t n = CUBEID_JWT_MAX + 1;
	char *big = malloc(n + 1);
	cubeid_jws *jws = NULL;

	memset(big, 'A', n);
	big[10] = '.';
	big[20] = '.';
	big[n] = '\0';
	ck_assert_int_eq(cubeid_jws_decode(big, n, &jws), CUBEID_ERR_TOO_LARGE);
	ck_assert_int_eq(validate(big, 0), CUBEID_ERR_TOO_LARGE);
	free(big);
}
END_TEST

START_TEST(test_reject_sub)
{
	int64_t exp = (int64_t)time(NULL) + 60;
	char cl[512], *tok;

	snprintf(cl, sizeof(cl), "{\"sub\":\"spiffe://other.org/x\",\"aud\":\"%s\",\"exp\":%lld}",
	         AUD, (long long)exp);
	tok = signed_token("{\"alg\":\"ES256\",\"kid\":\"k-p256\"}", cl);
	ck_assert_int_eq(validate(tok, 0), CUBEID_ERR_JWT_CLAIM); /* foreign trust domain */
	free(tok);
	snprintf(cl, sizeof(cl),
	         "{\"sub\":\"spiffe://example.org/x/\",\"aud\":\"%s\",\"exp\":%lld}", AUD,
	         (long long)exp);
	tok = signed_token("{\"alg\":\"ES256\",\"kid\":\"k-p256\"}", cl);
	ck_assert_int_eq(validate(tok, 0), CUBEID_ERR_JWT_CLAIM); /* not a SPIFFE ID */
	free(tok);
	snprintf(cl, sizeof(cl), "{\"aud\":\"%s\",\"exp\":%lld}", AUD, (long long)exp);
	tok = signed_token("{\"alg\":\"ES256\",\"kid\":\"k-p256\"}", cl);
	ck_assert_int_eq(validate(tok, 0), CUBEID_ERR_JWT_CLAIM); /* missing */
	free(tok);
	snprintf(cl, sizeof(cl), "{\"sub\":\"spiffe://example.org\",\"aud\":\"%s\",\"exp\":%lld}",
	         AUD, (long long)exp);
	tok = signed_token("{\"alg\":\"ES256\",\"kid\":\"k-p256\"}", cl);
	ck_assert_int_eq(validate(tok, 0), CUBEID_ERR_JWT_CLAIM); /* the trust domain's own ID */
	free(tok);
}
END_TEST

START_TEST(test_encode_refuses_trust_domain_id)
{
	cubeid_spiffe_id *id = NULL;
	const char *aud[] = {AUD};
	char *tok = NULL;

	ck_assert_int_eq(cubeid_spiffe_id_parse("spiffe://" TD, strlen("spiffe://" TD), &id, NULL),
	                 CUBEID_OK);
	ck_assert_int_eq(cubeid_jwt_svid_encode(CUBEID_SIG_ECDSA_SHA256, "k-p256", id, aud, 1, 0,
	                                        60, NULL, cubeid_jws_sign_evp, k_p256, &tok),
	                 CUBEID_ERR_SPIFFE_ID);
	ck_assert_ptr_null(tok);
	cubeid_spiffe_id_free(id);
}
END_TEST

/* ---- libjwt 1.10.2 as an independent verifier ------------------------ */

static char *
pem_pub(EVP_PKEY *k)
{
	BIO *bio = BIO_new(BIO_s_mem());
	char *p, *copy;
	long n;

	ck_assert_int_eq(PEM_write_bio_PUBKEY(bio, k), 1);
	n = BIO_get_mem_data(bio, &p);
	copy = strndup(p, (size_t)n);
	BIO_free(bio);
	return copy;
}

START_TEST(test_libjwt_verifies_ours)
{
	static const struct {
		cubeid_sig_alg alg;
		EVP_PKEY **key;
		jwt_alg_t jalg;
	} c[] = {
	        {CUBEID_SIG_ECDSA_SHA256, &k_p256, JWT_ALG_ES256},
	        {CUBEID_SIG_ECDSA_SHA384, &k_p384, JWT_ALG_ES384},
	        {CUBEID_SIG_RSA_PKCS1_SHA256, &k_rsa, JWT_ALG_RS256},
	        {CUBEID_SIG_RSA_PKCS1_SHA512, &k_rsa, JWT_ALG_RS512},
	};
	size_t i;

	for (i = 0; i < sizeof(c) / sizeof(c[0]); i++) {
		char *pem = pem_pub(*c[i].key), *tok = mint(c[i].alg, *c[i].key, "kid", 0, 300);
		char *other_pem;
		EVP_PKEY *other;
		jwt_t *j = NULL;

		ck_assert_ptr_nonnull(pem);
		ck_assert_msg(jwt_decode(&j, tok, (const unsigned char *)pem, (int)strlen(pem)) ==
		                      0,
		              "libjwt refused %s", cubeid_jws_alg_name(c[i].alg));
		ck_assert_int_eq(jwt_get_alg(j), c[i].jalg);
		ck_assert_str_eq(jwt_get_grant(j, "sub"), SUB);
		jwt_free(j);
		j = NULL;
		/* and libjwt refuses it with another key: the check has teeth */
		other = c[i].alg == CUBEID_SIG_RSA_PKCS1_SHA256 ||
		                        c[i].alg == CUBEID_SIG_RSA_PKCS1_SHA512
		                ? EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048)
		                : EVP_PKEY_Q_keygen(NULL, NULL, "EC",
		                                    c[i].alg == CUBEID_SIG_ECDSA_SHA256 ? "P-256"
		                                                                        : "P-384");
		other_pem = pem_pub(other);
		ck_assert_int_ne(jwt_decode(&j, tok, (const unsigned char *)other_pem,
		                            (int)strlen(other_pem)),
		                 0);
		jwt_free(j);
		EVP_PKEY_free(other);
		free(other_pem);
		free(pem);
		free(tok);
	}
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("jws");
	TCase *tc = tcase_create("jws");
	SRunner *sr;
	int failed;

	k_p256 = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	k_p384 = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-384");
	k_p521 = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-521");
	k_rsa = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
	if (k_p256 == NULL || k_p384 == NULL || k_p521 == NULL || k_rsa == NULL) {
		fprintf(stderr, "key generation failed\n");
		return EXIT_FAILURE;
	}
	snprintf(claims_ok, sizeof(claims_ok), "{\"sub\":\"%s\",\"aud\":\"%s\",\"exp\":%lld}", SUB,
	         AUD, (long long)time(NULL) + 3600);

	tcase_add_test(tc, test_b64url_vectors);
	tcase_add_test(tc, test_b64url_strict);
	tcase_add_test(tc, test_b64_std_strict);
	tcase_add_test(tc, test_alg_names);
	tcase_add_test(tc, test_key_fits_alg);
	tcase_add_loop_test(tc, test_round_trip_every_alg, 0,
	                    (int)(sizeof(algs) / sizeof(algs[0])));
	tcase_add_test(tc, test_pss_salt_length);
	tcase_add_test(tc, test_reject_alg_none);
	tcase_add_test(tc, test_reject_hs256_with_public_key_secret);
	tcase_add_test(tc, test_reject_kid);
	tcase_add_test(tc, test_reject_audience);
	tcase_add_test(tc, test_reject_expired_and_not_yet);
	tcase_add_test(tc, test_reject_future_iat_and_long_lifetime);
	tcase_add_test(tc, test_reject_typ);
	tcase_add_test(tc, test_reject_bad_signature);
	tcase_add_test(tc, test_reject_high_s_twin);
	tcase_add_test(tc, test_encoded_es_tokens_are_low_s);
	tcase_add_test(tc, test_reject_malformed_shape);
	tcase_add_test(tc, test_reject_oversize);
	tcase_add_test(tc, test_reject_sub);
	tcase_add_test(tc, test_encode_refuses_trust_domain_id);
	tcase_add_test(tc, test_libjwt_verifies_ours);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	EVP_PKEY_free(k_p256);
	EVP_PKEY_free(k_p384);
	EVP_PKEY_free(k_p521);
	EVP_PKEY_free(k_rsa);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
