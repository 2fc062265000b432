/*
 * bench/oidc-verify: Keycloak access-token verification with a warm JWKS
 * cache (cubeid_oidc_verify: decode, kid lookup under the cache lock,
 * signature, iss/aud/exp/nbf/iat/azp, roles) against raw OpenSSL verifying
 * the same signature over the same bytes with a pre-parsed key.  Both run
 * side by side in one process, in interleaved slices; the result is the ratio
 * (target >= 0.9), never an absolute rate.
 *
 *   oidc-verify [--rounds N] [--seconds S] [--smoke]
 */
#include "config.h"

#include <cubeid/oidc.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>
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
	int ok;

	ok = EVP_DigestVerifyInit(m, &pc, EVP_sha256(), NULL, pk) == 1;
	if (ok && alg == CUBEID_SIG_RSA_PSS_SHA256)
		ok = EVP_PKEY_CTX_set_rsa_padding(pc, RSA_PKCS1_PSS_PADDING) == 1 &&
		     EVP_PKEY_CTX_set_rsa_pss_saltlen(pc, RSA_PSS_SALTLEN_DIGEST) == 1;
	ok = ok && EVP_DigestVerify(m, sig, sig_len, in, in_len) == 1;
	EVP_MD_CTX_free(m);
	return ok;
}

#define NTOK                                                                                       \
	4096 /* distinct tokens: 16 times the verifier's 256 slots, so that                        \
	      * almost no token is ever found there again */

static int n_fresh = NTOK; /* --smoke: fewer */

struct result {
	double ours, raw;
};

/* One algorithm, one mode: repeat (the same token every time, as a bearer
 * presents it: the verifier's verified-token cache answers) or fresh
 * (NTOK distinct tokens in turn: every verification decodes and checks the
 * signature).  Raw OpenSSL verifies the same signatures in the same order
 * with the same key object the verifier holds (the public key as parsed
 * from the JWKS). */
static int
bench_alg(const char *name, cubeid_sig_alg alg, EVP_PKEY *signer, bool repeat, int rounds,
          double seconds, struct result *res)
{
	struct cubeid_oidc_verifier_opts o = {0};
	cubeid_oidc_verifier *v = NULL;
	cubeid_jwt_bundle *b = NULL, *pb = NULL;
	EVP_PKEY *pk;
	cubeid_jws *jws[NTOK] = {0};
	char *tok[NTOK] = {0}, *jwks = NULL;
	size_t tlen[NTOK], slen[NTOK];
	uint8_t *sigs[NTOK] = {0}; /* the signatures as OpenSSL takes them (DER for ECDSA) */
	const char *aud = "agentcube-router";
	double best_ratio = 0, sum_ours = 0, sum_raw = 0;
	int64_t now = (int64_t)time(NULL);
	int r, i, ntok = repeat ? 1 : n_fresh, rc = 1;

	if (cubeid_jwt_bundle_new("oidc", &b) != CUBEID_OK ||
	    cubeid_jwt_bundle_add(b, "kid-1", signer) != CUBEID_OK ||
	    cubeid_oidc_client_jwks(b, &jwks, NULL) != CUBEID_OK ||
	    cubeid_jwt_bundle_parse_jwks("oidc", jwks, strlen(jwks), &pb) != CUBEID_OK ||
	    (pk = cubeid_jwt_bundle_find(pb, "kid-1")) == NULL)
		goto out;
	for (i = 0; i < ntok; i++) {
		json_t *cl =
		        json_pack("{s:s, s:s, s:s, s:s, s:I, s:I, s:i, s:{s:[s,s,s]}}", "iss", ISS,
		                  "sub", "96dc8a1f-d688-49f0-87ea-eeef986227ce", "aud", aud, "azp",
		                  "agentcube-sdk", "iat", (json_int_t)now, "exp",
		                  (json_int_t)(now + 3600), "n", i, "realm_access", "roles",
		                  "sandbox:invoke", "offline_access", "default-roles-agentcube");

		if (cubeid_jws_encode(alg, "kid-1", "JWT", cl, cubeid_jws_sign_evp, signer,
		                      &tok[i]) != CUBEID_OK ||
		    cubeid_jws_decode(tok[i], strlen(tok[i]), &jws[i]) != CUBEID_OK)
			goto out;
		json_decref(cl);
		tlen[i] = strlen(tok[i]);
		{
			size_t n;
			const uint8_t *sg = cubeid_jws_signature(jws[i], &n);

			if (alg == CUBEID_SIG_ECDSA_SHA256) {
				if (cubeid_ecdsa_raw_to_der(sg, n, &sigs[i], &slen[i]) != CUBEID_OK)
					goto out;
			} else if ((sigs[i] = OPENSSL_malloc(n)) != NULL) {
				memcpy(sigs[i], sg, n);
				slen[i] = n;
			} else {
				goto out;
			}
		}
	}
	o.issuer = ISS;
	o.jwks_uri = "http://127.0.0.1:9/certs";
	o.audiences = &aud;
	o.n_audiences = 1;
	o.refresh_interval = 1000000;
	if (cubeid_oidc_verifier_new(&o, &v) != CUBEID_OK ||
	    cubeid_oidc_verifier_set_jwks(v, jwks, strlen(jwks), 0) != CUBEID_OK)
		goto out;
	for (r = 0; r < rounds; r++) {
		double t0, t1, to = 0, tr = 0, ro, rr;
		long no = 0, nr = 0, k;
		int slice;

		/* each round interleaves 20 short slices of each side, so that
		 * the machine's noise falls on both alike */
		for (slice = 0; slice < 20; slice++) {
			t0 = now_s();
			for (k = 0; (t1 = now_s()) - t0 < seconds / 20; k++) {
				i = (int)(k % ntok);
				if (cubeid_oidc_verify(v, tok[i], tlen[i], 0, NULL) != CUBEID_OK)
					goto fail;
			}
			to += t1 - t0;
			no += k;
			t0 = now_s();
			for (k = 0; (t1 = now_s()) - t0 < seconds / 20; k++) {
				const uint8_t *in;
				size_t in_len;

				i = (int)(k % ntok);
				in = cubeid_jws_signing_input(jws[i], &in_len);
				if (!raw_verify(pk, alg, in, in_len, sigs[i], slen[i]))
					goto fail;
			}
			tr += t1 - t0;
			nr += k;
		}
		ro = no / to;
		rr = nr / tr;
		sum_ours += ro;
		sum_raw += rr;
		if (ro / rr > best_ratio)
			best_ratio = ro / rr;
	}
	res->ours = sum_ours / rounds;
	res->raw = sum_raw / rounds;
	printf("%-6s %-7s cubeid_oidc_verify %9.0f/s   raw OpenSSL verify %9.0f/s   ratio %.3f "
	       "(best round %.3f)%s\n",
	       name, repeat ? "repeat" : "fresh", res->ours, res->raw, res->ours / res->raw,
	       best_ratio, res->ours / res->raw >= 0.9 ? "" : "  below 0.9");
	rc = 0;
	goto out;
fail:
	fprintf(stderr, "oidc-verify: %s: a verification failed\n", name);
out:
	for (i = 0; i < ntok; i++) {
		cubeid_jws_free(jws[i]);
		free(tok[i]);
		OPENSSL_free(sigs[i]);
	}
	cubeid_oidc_verifier_free(v);
	cubeid_jwt_bundle_free(b);
	cubeid_jwt_bundle_free(pb);
	free(jwks);
	return rc;
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
			n_fresh = 32;
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
	printf("repeat: one token presented again and again (a bearer's normal life: the\n"
	       "verifier's verified-token cache answers; every claim is still checked)\n"
	       "fresh:  %d distinct tokens in turn (full decode and signature each time)\n",
	       n_fresh);
	for (i = 0; i < 2; i++) {
		bool repeat = i == 0;

		rc |= bench_alg("RS256", CUBEID_SIG_RSA_PKCS1_SHA256, rsa, repeat, rounds, seconds,
		                &res);
		rc |= bench_alg("PS256", CUBEID_SIG_RSA_PSS_SHA256, rsa, repeat, rounds, seconds,
		                &res);
		rc |= bench_alg("ES256", CUBEID_SIG_ECDSA_SHA256, ec, repeat, rounds, seconds,
		                &res);
	}
	EVP_PKEY_free(rsa);
	EVP_PKEY_free(ec);
	return rc;
}
