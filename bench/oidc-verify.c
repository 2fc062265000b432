/*
 * bench/oidc-verify: Keycloak access-token verification with a warm JWKS
 * cache (cubeid_oidc_verify: decode, kid lookup under the cache lock,
 * signature, iss/aud/exp/nbf/iat/azp, roles) against raw OpenSSL verifying
 * the same signature over the same bytes with a pre-parsed key.  Both run
 * side by side in one process, round after round; the result is the ratio
 * (target >= 0.9), never an absolute rate.
 *
 *   oidc-verify [--rounds N] [--seconds S] [--smoke]
 */
#include "config.h"

#include <cubeid/oidc.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>
#include <openssl/rsa.h>

#define ISS "https://kc.example.org/realms/agentcube"

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int
raw_verify(EVP_PKEY *pk, cubeid_sig_alg alg, const uint8_t *in, size_t in_len, const uint8_t *sig,
           size_t sig_len)
{
	EVP_MD_CTX *m = EVP_MD_CTX_new();
	EVP_PKEY_CTX *pc = NULL;
	uint8_t *der = NULL;
	size_t der_len = 0;
	int ok;

	if (alg == CUBEID_SIG_ECDSA_SHA256) {
		if (cubeid_ecdsa_raw_to_der(sig, sig_len, &der, &der_len) != CUBEID_OK)
			return 0;
		sig = der;
		sig_len = der_len;
	}
	ok = EVP_DigestVerifyInit(m, &pc, EVP_sha256(), NULL, pk) == 1;
	if (ok && alg == CUBEID_SIG_RSA_PSS_SHA256)
		ok = EVP_PKEY_CTX_set_rsa_padding(pc, RSA_PKCS1_PSS_PADDING) == 1 &&
		     EVP_PKEY_CTX_set_rsa_pss_saltlen(pc, RSA_PSS_SALTLEN_DIGEST) == 1;
	ok = ok && EVP_DigestVerify(m, sig, sig_len, in, in_len) == 1;
	EVP_MD_CTX_free(m);
	OPENSSL_free(der);
	return ok;
}

struct result {
	double ours, raw;
};

static int
bench_alg(const char *name, cubeid_sig_alg alg, EVP_PKEY *pk, int rounds, double seconds,
          struct result *res)
{
	struct cubeid_oidc_verifier_opts o = {0};
	cubeid_oidc_verifier *v = NULL;
	cubeid_jwt_bundle *b = NULL;
	cubeid_jws *jws = NULL;
	const char *aud = "agentcube-router";
	const uint8_t *in, *sig;
	size_t in_len, sig_len;
	char *tok = NULL, *jwks = NULL;
	json_t *cl;
	double best_ratio = 0, sum_ours = 0, sum_raw = 0;
	int64_t now = (int64_t)time(NULL);
	int r;

	cl = json_pack("{s:s, s:s, s:s, s:s, s:I, s:I, s:{s:[s,s,s]}}", "iss", ISS, "sub",
	               "96dc8a1f-d688-49f0-87ea-eeef986227ce", "aud", aud, "azp", "agentcube-sdk",
	               "iat", (json_int_t)now, "exp", (json_int_t)(now + 3600), "realm_access",
	               "roles", "sandbox:invoke", "offline_access", "default-roles-agentcube");
	if (cubeid_jws_encode(alg, "kid-1", "JWT", cl, cubeid_jws_sign_evp, pk, &tok) !=
	            CUBEID_OK ||
	    cubeid_jwt_bundle_new("oidc", &b) != CUBEID_OK ||
	    cubeid_jwt_bundle_add(b, "kid-1", pk) != CUBEID_OK ||
	    cubeid_oidc_client_jwks(b, &jwks, NULL) != CUBEID_OK)
		return 1;
	json_decref(cl);
	o.issuer = ISS;
	o.jwks_uri = "http://127.0.0.1:9/certs";
	o.audiences = &aud;
	o.n_audiences = 1;
	o.refresh_interval = 1000000;
	if (cubeid_oidc_verifier_new(&o, &v) != CUBEID_OK ||
	    cubeid_oidc_verifier_set_jwks(v, jwks, strlen(jwks), 0) != CUBEID_OK ||
	    cubeid_jws_decode(tok, strlen(tok), &jws) != CUBEID_OK)
		return 1;
	in = cubeid_jws_signing_input(jws, &in_len);
	sig = cubeid_jws_signature(jws, &sig_len);
	if (!raw_verify(pk, alg, in, in_len, sig, sig_len) ||
	    cubeid_oidc_verify(v, tok, strlen(tok), 0, NULL) != CUBEID_OK) {
		fprintf(stderr, "oidc-verify: %s: a verification failed\n", name);
		return 1;
	}
	for (r = 0; r < rounds; r++) {
		double t0, t1, ro, rr;
		long n;

		/* ours, then raw, each for `seconds` */
		t0 = now_s();
		for (n = 0; (t1 = now_s()) - t0 < seconds; n++)
			if (cubeid_oidc_verify(v, tok, strlen(tok), 0, NULL) != CUBEID_OK)
				return 1;
		ro = n / (t1 - t0);
		t0 = now_s();
		for (n = 0; (t1 = now_s()) - t0 < seconds; n++)
			if (!raw_verify(pk, alg, in, in_len, sig, sig_len))
				return 1;
		rr = n / (t1 - t0);
		sum_ours += ro;
		sum_raw += rr;
		if (ro / rr > best_ratio)
			best_ratio = ro / rr;
	}
	res->ours = sum_ours / rounds;
	res->raw = sum_raw / rounds;
	printf("%-6s  cubeid_oidc_verify %9.0f/s   raw OpenSSL verify %9.0f/s   ratio %.3f "
	       "(best round %.3f)  %s\n",
	       name, res->ours, res->raw, res->ours / res->raw, best_ratio,
	       res->ours / res->raw >= 0.9 ? "target 0.9 met" : "BELOW target 0.9");
	cubeid_jws_free(jws);
	cubeid_oidc_verifier_free(v);
	cubeid_jwt_bundle_free(b);
	free(jwks);
	free(tok);
	return 0;
}

int
main(int argc, char **argv)
{
	EVP_PKEY *rsa = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
	EVP_PKEY *ec = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	struct result res;
	double seconds = 1.0;
	int rounds = 5, i, rc = 0;

	for (i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--smoke") == 0) {
			rounds = 1;
			seconds = 0.02;
		} else if (strcmp(argv[i], "--rounds") == 0 && i + 1 < argc) {
			rounds = atoi(argv[++i]);
		} else if (strcmp(argv[i], "--seconds") == 0 && i + 1 < argc) {
			seconds = atof(argv[++i]);
		} else {
			fprintf(stderr,
			        "usage: oidc-verify [--rounds N] [--seconds S] [--smoke]\n");
			return 2;
		}
	}
	if (rsa == NULL || ec == NULL || rounds < 1 || seconds <= 0)
		return 2;
	printf("Keycloak access-token verification, warm JWKS cache, vs raw OpenSSL verify "
	       "(%d rounds of %.2f s each, side by side)\n",
	       rounds, seconds);
	rc |= bench_alg("RS256", CUBEID_SIG_RSA_PKCS1_SHA256, rsa, rounds, seconds, &res);
	rc |= bench_alg("PS256", CUBEID_SIG_RSA_PSS_SHA256, rsa, rounds, seconds, &res);
	rc |= bench_alg("ES256", CUBEID_SIG_ECDSA_SHA256, ec, rounds, seconds, &res);
	EVP_PKEY_free(rsa);
	EVP_PKEY_free(ec);
	return rc;
}
