/*
 * bench/svid: what minting and verifying SVIDs costs over the raw token and
 * raw OpenSSL (issue 3).
 *
 * In one run, on one token, single-threaded, it times three pairs (or
 * triples) of cases, alternating their order round after round (the machine
 * is noisy, so a ratio only means something within one run), and reports
 * the median rate of each case and the median of the per-round ratios:
 *
 *   X.509-SVID mint   cubeid_x509_svid_mint() + cubeid_x509_svid_free():
 *                     an exportable EC P-256 session-object workload key
 *                     (generated, its id set, its private key exported) and
 *                     a leaf certificate signed in the token by the CA key;
 *                     freeing it destroys the key objects.
 *     raw             on a session of its own, through the raw function
 *                     list: C_GenerateKeyPair (the same template: session
 *                     object, exportable, EC P-256) + C_SignInit/C_Sign with
 *                     the CA key over a precomputed SHA-256 digest.  The
 *                     clock stops for the C_DestroyObject of the two new
 *                     objects ("raw"); "raw+destroy" counts them too, which
 *                     is what the mint's free does.
 *     raw+read        the same plus C_GetAttributeValue of the new key's
 *                     CKA_EC_POINT and CKA_VALUE: the two reads no
 *                     exportable SVID can do without (the point to certify,
 *                     the private key to hand over).  Like for like.
 *   JWT-SVID mint     cubeid_jwt_svid_mint() (ES256, token key).
 *     raw             C_SignInit/C_Sign (CKM_ECDSA) over a precomputed
 *                     digest with the same key.
 *   JWT verification  cubeid_jwt_svid_validate() with a warm JWT bundle:
 *                     decode, alg allow-list, kid lookup, signature, exp,
 *                     aud, sub.
 *     raw OpenSSL     EVP_DigestVerifyInit + EVP_DigestVerify with the same
 *                     EVP_PKEY over the signing input, with the DER
 *                     signature prepared in advance (no base64url, no JSON).
 *     libjwt          jwt_decode() with the PEM public key (never a NULL
 *                     key: libjwt 1.10.2 then accepts any signature).
 *
 * Targets (issue 3): mint >= 0.85 of raw, verify >= 0.9 of raw OpenSSL and
 * >= 5x libjwt.  The bench prints whether each was met and never fails on
 * it; it does fail if anything it made does not verify.
 *
 * The token is the harness's throwaway SoftHSM2 token (or the TPM lane's
 * token from $CUBEID_TEST_TOKEN_URI; tpm2-pkcs11 has no session-object keys,
 * so the X.509 case is skipped there).
 */
#include "config.h"

#include "bench/bench-util.h"
#include "pkcs11/p11-internal.h"
#include "tests/harness.h"

#include <cubeid/ca.h>
#include <cubeid/jwt.h>
#include <cubeid/spiffe.h>
#include <cubeid/x509svid.h>

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jwt.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>

#define MAX_ROUNDS BU_MAX_ROUNDS
#define TD         "cluster.local"
#define SUB        "spiffe://cluster.local/ns/agentcube-system/sa/agentcube-router"
#define AUD        "sandbox-1"

enum case_id {
	C_X509_RAW,
	C_X509_RAW_READ,
	C_X509_MINT,
	C_JWT_RAW,
	C_JWT_MINT,
	C_VER_RAW,
	C_VER_LIB,
	C_VER_LIBJWT,
	N_CASES
};
static const char *const case_names[N_CASES] = {"x509 raw",   "x509 raw+read", "x509 mint",
                                                "jwt raw",    "jwt mint",      "verify raw",
                                                "verify lib", "verify libjwt"};

/* The groups whose cases alternate within a round. */
static const enum case_id group_x509[] = {C_X509_RAW, C_X509_RAW_READ, C_X509_MINT};
static const enum case_id group_jwt[] = {C_JWT_RAW, C_JWT_MINT};
static const enum case_id group_ver[] = {C_VER_RAW, C_VER_LIB, C_VER_LIBJWT};

/* Every case is timed on two clocks.  Wall time is what a caller sees; the
 * thread's CPU time leaves out the time the scheduler gave to other
 * processes, which on a loaded build machine is most of the noise.  Every
 * case runs entirely in this thread (SoftHSM2 is in-process, and session
 * objects never touch the disk), so on a quiet machine the two agree. */
enum { CLK_WALL, CLK_CPU, N_CLOCKS };
static const clockid_t clock_ids[N_CLOCKS] = {CLOCK_MONOTONIC, CLOCK_THREAD_CPUTIME_ID};

struct bench_cfg {
	double seconds;    /* per case, when ops == 0 */
	unsigned long ops; /* per case; 0 = timed */
	unsigned rounds;
	bool quiet;
	bool smoke;       /* too few ops to mean anything: no verdict */
	bool jwt, verify; /* groups to run (x509: bench.x509) */
};

struct bench {
	cubeid_token *tok;
	CK_SESSION_HANDLE s; /* the raw cases' own session */
	bool x509;           /* run the X.509 case (needs session-object keys) */
	bool tpm;            /* the TPM lane: no session-object keys */
	/* X.509 */
	cubeid_ca *ca;
	cubeid_spiffe_id *id;
	uint8_t digest[32]; /* a SHA-256 digest, as of a TBSCertificate */
	/* JWT */
	cubeid_key *jwt_key;
	EVP_PKEY *jwt_pub;
	char kid[CUBEID_KID_LEN + 1];
	cubeid_jwt_bundle *bundle;
	char *token;           /* a minted JWT-SVID */
	const uint8_t *sinput; /* its signing input (in jws) */
	size_t sinput_len;
	cubeid_jws *jws;
	uint8_t *der_sig; /* its signature as DER */
	size_t der_sig_len;
	EVP_MD_CTX *mdctx;
	char *pem; /* jwt_pub as PKIX PEM, for libjwt */
	size_t pem_len;
	/* the X.509 raw case's split: seconds without the destroys */
	double nd_secs[N_CLOCKS];
	/* results */
	double rate[N_CLOCKS][N_CASES][MAX_ROUNDS];
	double rate_raw_nd[N_CLOCKS][MAX_ROUNDS]; /* x509 raw without destroys */
};

static void
fail(const char *what, int r)
{
	fprintf(stderr, "svid: %s: %s\n", what, cubeid_strerror(r));
}

static void
fail_rv(const char *what, CK_RV rv)
{
	fprintf(stderr, "svid: %s: %s\n", what, p11_rv_name(rv));
}

/* P-256 as CKA_EC_PARAMS holds it. */
static const CK_BYTE oid_p256[] = {0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07};

/* One raw X.509 op: keygen with the layer's template, (read: read the
 * public point and the private value, which an exportable SVID cannot do
 * without,) sign with the CA key; then the destroys, timed apart.  Adds to
 * t_nd[clock] the time without them. */
static CK_RV
raw_x509_once(struct bench *b, bool read, double t_nd[N_CLOCKS])
{
	CK_FUNCTION_LIST_PTR f = b->tok->f;
	CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
	CK_MECHANISM gen = {CKM_EC_KEY_PAIR_GEN, NULL, 0}, sign = {CKM_ECDSA, NULL, 0};
	static const char label[] = "cubeid-svid";
	uint8_t id[20], sig[128];
	CK_ATTRIBUTE pub[] = {{CKA_TOKEN, &no, sizeof(no)},
	                      {CKA_VERIFY, &yes, sizeof(yes)},
	                      {CKA_LABEL, (void *)label, sizeof(label) - 1},
	                      {CKA_ID, id, sizeof(id)},
	                      {CKA_EC_PARAMS, (void *)oid_p256, sizeof(oid_p256)}};
	CK_ATTRIBUTE priv[] = {{CKA_TOKEN, &no, sizeof(no)},
	                       {CKA_PRIVATE, &yes, sizeof(yes)},
	                       {CKA_SIGN, &yes, sizeof(yes)},
	                       {CKA_SENSITIVE, &no, sizeof(no)},
	                       {CKA_EXTRACTABLE, &yes, sizeof(yes)},
	                       {CKA_LABEL, (void *)label, sizeof(label) - 1},
	                       {CKA_ID, id, sizeof(id)}};
	CK_OBJECT_HANDLE hpub = CK_INVALID_HANDLE, hpriv = CK_INVALID_HANDLE;
	CK_ULONG len = sizeof(sig);
	uint8_t point[160], value[80];
	CK_ATTRIBUTE a_point = {CKA_EC_POINT, point, sizeof(point)};
	CK_ATTRIBUTE a_value = {CKA_VALUE, value, sizeof(value)};
	struct timespec t0[N_CLOCKS], t1[N_CLOCKS];
	CK_RV rv;
	int k;

	for (k = 0; k < N_CLOCKS; k++)
		clock_gettime(clock_ids[k], &t0[k]);
	if (RAND_bytes(id, sizeof(id)) != 1)
		return CKR_GENERAL_ERROR;
	rv = f->C_GenerateKeyPair(b->s, &gen, pub, sizeof(pub) / sizeof(pub[0]), priv,
	                          sizeof(priv) / sizeof(priv[0]), &hpub, &hpriv);
	if (rv == CKR_OK && read)
		rv = f->C_GetAttributeValue(b->s, hpub, &a_point, 1);
	if (rv == CKR_OK && read)
		rv = f->C_GetAttributeValue(b->s, hpriv, &a_value, 1);
	if (rv == CKR_OK)
		rv = f->C_SignInit(b->s, &sign, p11_key_handle(cubeid_ca_key(b->ca)));
	if (rv == CKR_OK)
		rv = f->C_Sign(b->s, b->digest, sizeof(b->digest), sig, &len);
	for (k = N_CLOCKS - 1; k >= 0; k--)
		clock_gettime(clock_ids[k], &t1[k]);
	for (k = 0; k < N_CLOCKS; k++)
		t_nd[k] += bu_ts_diff(&t0[k], &t1[k]);
	OPENSSL_cleanse(value, sizeof(value));
	if (hpriv != CK_INVALID_HANDLE)
		f->C_DestroyObject(b->s, hpriv);
	if (hpub != CK_INVALID_HANDLE)
		f->C_DestroyObject(b->s, hpub);
	return rv;
}

static int
mint_x509_once(struct bench *b)
{
	struct cubeid_svid_req req = {0};
	cubeid_x509_svid *svid = NULL;
	int r;

	req.id = b->id;
	req.key_type = CUBEID_KEY_EC_P256;
	req.policy = CUBEID_SVID_KEY_EXPORTABLE;
	r = cubeid_x509_svid_mint(b->ca, &req, &svid);
	cubeid_x509_svid_free(svid);
	return r;
}

static CK_RV
raw_jwt_once(struct bench *b)
{
	uint8_t sig[128];
	CK_ULONG len = sizeof(sig);

	return bu_raw_sign(b->tok, b->s, CKM_ECDSA, b->jwt_key, b->digest, sizeof(b->digest), sig,
	                   &len);
}

static int
mint_jwt_once(struct bench *b)
{
	const char *aud[] = {AUD};
	char *t = NULL;
	int r;

	r = cubeid_jwt_svid_mint(b->jwt_key, CUBEID_SIG_ECDSA_SHA256, b->kid, b->id, aud, 1, 300,
	                         NULL, &t);
	free(t);
	return r;
}

static bool
raw_verify_once(struct bench *b)
{
	return EVP_DigestVerifyInit(b->mdctx, NULL, EVP_sha256(), NULL, b->jwt_pub) == 1 &&
	       EVP_DigestVerify(b->mdctx, b->der_sig, b->der_sig_len, b->sinput, b->sinput_len) ==
	               1;
}

static int
lib_verify_once(struct bench *b)
{
	return cubeid_jwt_svid_validate(b->token, strlen(b->token), b->bundle, AUD, 0, 0, NULL,
	                                NULL);
}

static bool
libjwt_verify_once(struct bench *b)
{
	jwt_t *j = NULL;
	int r = jwt_decode(&j, b->token, (const unsigned char *)b->pem, (int)b->pem_len);

	jwt_free(j);
	return r == 0;
}

/* One op of case c; 0 or -1 (after printing why). */
static int
one_op(struct bench *b, enum case_id c)
{
	CK_RV rv;
	int r;

	switch (c) {
	case C_X509_RAW:
	case C_X509_RAW_READ:
		if ((rv = raw_x509_once(b, c == C_X509_RAW_READ, b->nd_secs)) != CKR_OK) {
			fail_rv("raw keygen+sign", rv);
			return -1;
		}
		return 0;
	case C_X509_MINT:
		if ((r = mint_x509_once(b)) != CUBEID_OK) {
			fail("cubeid_x509_svid_mint", r);
			return -1;
		}
		return 0;
	case C_JWT_RAW:
		if ((rv = raw_jwt_once(b)) != CKR_OK) {
			fail_rv("raw C_Sign", rv);
			return -1;
		}
		return 0;
	case C_JWT_MINT:
		if ((r = mint_jwt_once(b)) != CUBEID_OK) {
			fail("cubeid_jwt_svid_mint", r);
			return -1;
		}
		return 0;
	case C_VER_RAW:
		if (!raw_verify_once(b)) {
			fprintf(stderr, "svid: EVP_DigestVerify refused the token's signature\n");
			return -1;
		}
		return 0;
	case C_VER_LIB:
		if ((r = lib_verify_once(b)) != CUBEID_OK) {
			fail("cubeid_jwt_svid_validate", r);
			return -1;
		}
		return 0;
	case C_VER_LIBJWT:
		if (!libjwt_verify_once(b)) {
			fprintf(stderr, "svid: libjwt jwt_decode refused the token\n");
			return -1;
		}
		return 0;
	default:
		return -1;
	}
}

/* Run case c for cfg's time or op count; ops/s in *rate. */
static int
run_case(struct bench *b, enum case_id c, const struct bench_cfg *cfg, unsigned round)
{
	struct timespec t0[N_CLOCKS], now, end[N_CLOCKS];
	unsigned long done = 0;
	double secs;
	int k;

	for (k = 0; k < N_CLOCKS; k++) {
		b->nd_secs[k] = 0;
		clock_gettime(clock_ids[k], &t0[k]);
	}
	for (;;) {
		if (one_op(b, c) != 0)
			return -1;
		done++;
		if (cfg->ops > 0) {
			if (done >= cfg->ops)
				break;
		} else {
			/* the clock is read each op; against >= 10 us ops that is
			 * noise */
			clock_gettime(CLOCK_MONOTONIC, &now);
			if (bu_ts_diff(&t0[CLK_WALL], &now) >= cfg->seconds)
				break;
		}
	}
	for (k = N_CLOCKS - 1; k >= 0; k--)
		clock_gettime(clock_ids[k], &end[k]);
	for (k = 0; k < N_CLOCKS; k++) {
		secs = bu_ts_diff(&t0[k], &end[k]);
		if (secs <= 0) {
			fprintf(stderr, "svid: %s: no time elapsed\n", case_names[c]);
			return -1;
		}
		b->rate[k][c][round] = (double)done / secs;
		if (c == C_X509_RAW)
			b->rate_raw_nd[k][round] =
			        b->nd_secs[k] > 0 ? (double)done / b->nd_secs[k] : 0;
	}
	return 0;
}

static int
run_group(struct bench *b, const enum case_id *g, unsigned n, const struct bench_cfg *cfg,
          unsigned round)
{
	unsigned k;

	for (k = 0; k < n; k++)
		if (run_case(b, g[(k + round) % n], cfg, round) != 0)
			return -1;
	return 0;
}

/* One rate line: the median wall and CPU rates of case c (or of the x509
 * raw split when c is N_CASES). */
static void
rate_line(const struct bench *b, const char *what, int c, unsigned n)
{
	double w = c == N_CASES ? bu_median(b->rate_raw_nd[CLK_WALL], n)
	                        : bu_median(b->rate[CLK_WALL][c], n);
	double u = c == N_CASES ? bu_median(b->rate_raw_nd[CLK_CPU], n)
	                        : bu_median(b->rate[CLK_CPU][c], n);

	printf("  %-46s %9.0f %9.0f\n", what, w, u);
}

/* A ratio line; returns the CPU-time ratio, on which the verdict is. */
static double
ratio_line(const struct bench *b, const char *what, int num, int den, unsigned n)
{
	const double *dw = den == N_CASES ? b->rate_raw_nd[CLK_WALL] : b->rate[CLK_WALL][den];
	const double *du = den == N_CASES ? b->rate_raw_nd[CLK_CPU] : b->rate[CLK_CPU][den];
	double w = bu_median_ratio(b->rate[CLK_WALL][num], dw, n);
	double u = bu_median_ratio(b->rate[CLK_CPU][num], du, n);

	printf("  %-46s %9.3f %9.3f\n", what, w, u);
	return u;
}

static void
verdict(const struct bench_cfg *cfg, const char *what, double v, double target)
{
	if (cfg->smoke)
		return;
	printf("  target %s >= %.2f (CPU time): %s (%.3f)\n", what, target,
	       v >= target ? "target met" : "target NOT met", v);
}

static void
report(struct bench *b, const struct bench_cfg *cfg)
{
	unsigned n = cfg->rounds;
	double r;

	printf("\n%u round%s of %s per case; median rates and median of per-round ratios,\n"
	       "by wall time and by this thread's CPU time (see bench/svid.c)\n",
	       n, n == 1 ? "" : "s", cfg->ops > 0 ? "a fixed op count" : "a fixed time");
	if (b->x509) {
		printf("\nX.509-SVID mint (EC P-256 exportable session key + leaf signed by the "
		       "token CA key, EC P-256):\n");
		printf("  %-46s %9s %9s\n", "", "wall /s", "cpu /s");
		rate_line(b, "raw C_GenerateKeyPair + C_Sign", N_CASES, n);
		rate_line(b, "raw ... + C_DestroyObject x2", C_X509_RAW, n);
		rate_line(b, "raw ... + C_GetAttributeValue x2 + destroy", C_X509_RAW_READ, n);
		rate_line(b, "cubeid_x509_svid_mint + _free", C_X509_MINT, n);
		r = ratio_line(b, "mint / raw (keygen+sign)", C_X509_MINT, N_CASES, n);
		ratio_line(b, "mint / raw+destroy", C_X509_MINT, C_X509_RAW, n);
		ratio_line(b, "mint / raw+read+destroy (like for like)", C_X509_MINT,
		           C_X509_RAW_READ, n);
		verdict(cfg, "X.509 mint / raw keygen+sign", r, 0.85);
	}
	if (cfg->jwt) {
		printf("\nJWT-SVID mint (ES256, token key, 1 audience, 300 s):\n");
		printf("  %-46s %9s %9s\n", "", "wall /s", "cpu /s");
		rate_line(b, "raw C_SignInit + C_Sign (CKM_ECDSA, digest)", C_JWT_RAW, n);
		rate_line(b, "cubeid_jwt_svid_mint", C_JWT_MINT, n);
		r = ratio_line(b, "mint / raw", C_JWT_MINT, C_JWT_RAW, n);
		verdict(cfg, "JWT mint / raw C_Sign", r, 0.85);
	}
	if (cfg->verify) {
		printf("\nJWT-SVID verification (ES256, %zu-byte token):\n", strlen(b->token));
		printf("  %-46s %9s %9s\n", "", "wall /s", "cpu /s");
		rate_line(b, "raw OpenSSL EVP_DigestVerify (DER sig ready)", C_VER_RAW, n);
		rate_line(b, "cubeid_jwt_svid_validate (warm bundle)", C_VER_LIB, n);
		rate_line(b, "libjwt 1.10.2 jwt_decode (PEM key)", C_VER_LIBJWT, n);
		r = ratio_line(b, "cubeid / raw OpenSSL", C_VER_LIB, C_VER_RAW, n);
		verdict(cfg, "verify cubeid / raw OpenSSL", r, 0.9);
		r = ratio_line(b, "cubeid / libjwt", C_VER_LIB, C_VER_LIBJWT, n);
		verdict(cfg, "verify cubeid / libjwt", r, 5.0);
	}
	if (cfg->smoke)
		printf("\n(smoke run: too few ops for these figures to mean anything)\n");
	fflush(stdout);
}

/* True if the SVID's exported PKCS#8 key is the leaf's public key. */
static bool
leaf_matches_key(const cubeid_x509_svid *svid)
{
	const unsigned char *p;
	EVP_PKEY *pk = NULL;
	uint8_t *der = NULL;
	size_t len = 0;
	bool ok = false;

	if (cubeid_x509_svid_key_pkcs8_der(svid, &der, &len) != CUBEID_OK)
		return false;
	p = der;
	if ((pk = d2i_AutoPrivateKey(NULL, &p, (long)len)) != NULL)
		ok = X509_check_private_key(cubeid_x509_svid_leaf(svid), pk) == 1;
	EVP_PKEY_free(pk);
	OPENSSL_cleanse(der, len);
	free(der);
	return ok;
}

/* Everything the cases need, made and checked before any timing. */
static int
setup(struct bench *b)
{
	struct cubeid_keygen_opts ko = {0};
	struct cubeid_svid_req req = {0};
	cubeid_x509_svid *svid = NULL;
	cubeid_spiffe_id *got = NULL;
	const char *aud[] = {AUD}, *reason = NULL;
	const uint8_t *sig;
	size_t sig_len;
	BIO *bio = NULL;
	char *p;
	long n;
	jwt_t *j = NULL;
	CK_RV rv;
	int r;

	if (RAND_bytes(b->digest, sizeof(b->digest)) != 1)
		return -1;
	if ((r = cubeid_spiffe_id_parse(SUB, strlen(SUB), &b->id, NULL)) != CUBEID_OK) {
		fail("cubeid_spiffe_id_parse", r);
		return -1;
	}
	rv = bu_raw_session(b->tok, &b->s);
	if (rv != CKR_OK) {
		fail_rv("C_OpenSession", rv);
		return -1;
	}

	/* The JWT signing key: non-extractable, as the agent's. */
	ko.type = CUBEID_KEY_EC_P256;
	ko.label = "cubeid-bench-jwt";
	ko.persistent = b->tpm; /* the TPM has no session-object keys */
	if ((r = cubeid_key_generate(b->tok, &ko, &b->jwt_key)) != CUBEID_OK) {
		fail("generating the JWT key", r);
		return -1;
	}
	if ((r = cubeid_key_public(b->jwt_key, &b->jwt_pub)) != CUBEID_OK ||
	    (r = cubeid_kid_from_pkey(b->jwt_pub, b->kid)) != CUBEID_OK ||
	    (r = cubeid_jwt_bundle_new(TD, &b->bundle)) != CUBEID_OK ||
	    (r = cubeid_jwt_bundle_add(b->bundle, b->kid, b->jwt_pub)) != CUBEID_OK) {
		fail("JWT bundle", r);
		return -1;
	}
	if ((r = cubeid_jwt_svid_mint(b->jwt_key, CUBEID_SIG_ECDSA_SHA256, b->kid, b->id, aud, 1,
	                              300, NULL, &b->token)) != CUBEID_OK) {
		fail("cubeid_jwt_svid_mint", r);
		return -1;
	}
	if ((r = cubeid_jwt_svid_validate(b->token, strlen(b->token), b->bundle, AUD, 0, 0, &got,
	                                  NULL)) != CUBEID_OK ||
	    !cubeid_spiffe_id_equal(got, b->id)) {
		fail("validating the minted JWT-SVID", r != CUBEID_OK ? r : CUBEID_ERR_INTERNAL);
		cubeid_spiffe_id_free(got);
		return -1;
	}
	cubeid_spiffe_id_free(got);
	got = NULL;
	if ((r = cubeid_jws_decode(b->token, strlen(b->token), &b->jws)) != CUBEID_OK) {
		fail("cubeid_jws_decode", r);
		return -1;
	}
	b->sinput = cubeid_jws_signing_input(b->jws, &b->sinput_len);
	sig = cubeid_jws_signature(b->jws, &sig_len);
	if ((r = cubeid_ecdsa_raw_to_der(sig, sig_len, &b->der_sig, &b->der_sig_len)) !=
	    CUBEID_OK) {
		fail("cubeid_ecdsa_raw_to_der", r);
		return -1;
	}
	if ((b->mdctx = EVP_MD_CTX_new()) == NULL || !raw_verify_once(b)) {
		fprintf(stderr, "svid: raw OpenSSL does not verify the minted token\n");
		return -1;
	}
	/* libjwt gets the PKIX PEM, as PicoD's PICOD_AUTH_PUBLIC_KEY. */
	if ((bio = BIO_new(BIO_s_mem())) == NULL || PEM_write_bio_PUBKEY(bio, b->jwt_pub) != 1 ||
	    (n = BIO_get_mem_data(bio, &p)) <= 0 || (b->pem = malloc((size_t)n + 1)) == NULL) {
		BIO_free(bio);
		fprintf(stderr, "svid: cannot make the PEM public key\n");
		return -1;
	}
	memcpy(b->pem, p, (size_t)n);
	b->pem[n] = '\0';
	b->pem_len = (size_t)n;
	BIO_free(bio);
	if (jwt_decode(&j, b->token, (const unsigned char *)b->pem, (int)b->pem_len) != 0 ||
	    jwt_get_grant(j, "sub") == NULL || strcmp(jwt_get_grant(j, "sub"), SUB) != 0) {
		jwt_free(j);
		fprintf(stderr, "svid: libjwt does not accept the minted token\n");
		return -1;
	}
	jwt_free(j);

	if (!b->x509)
		return 0;
	/* The CA: a root in the token (persistent, non-extractable). */
	if ((r = cubeid_ca_root_create(b->tok, TD, NULL, &b->ca)) != CUBEID_OK) {
		fail("cubeid_ca_root_create", r);
		return -1;
	}
	req.id = b->id;
	if ((r = cubeid_x509_svid_mint(b->ca, &req, &svid)) != CUBEID_OK) {
		fail("cubeid_x509_svid_mint", r);
		return -1;
	}
	r = cubeid_x509_svid_verify(cubeid_x509_svid_chain(svid), cubeid_ca_bundle(b->ca), 0, &got,
	                            &reason);
	/* the leaf certifies the workload key, and the exported key is it */
	if (r == CUBEID_OK && !leaf_matches_key(svid)) {
		r = CUBEID_ERR_X509;
		reason = "the leaf's public key is not the exported workload key";
	}
	if (r == CUBEID_OK && !cubeid_spiffe_id_equal(got, b->id))
		r = CUBEID_ERR_INTERNAL;
	cubeid_spiffe_id_free(got);
	cubeid_x509_svid_free(svid);
	if (r != CUBEID_OK) {
		fprintf(stderr, "svid: a minted X.509-SVID does not verify: %s (%s)\n",
		        cubeid_strerror(r), reason != NULL ? reason : "?");
		return -1;
	}
	return 0;
}

static void
teardown(struct bench *b)
{
	if (b->s != CK_INVALID_HANDLE)
		b->tok->f->C_CloseSession(b->s);
	if (b->jwt_key != NULL && cubeid_key_is_persistent(b->jwt_key))
		cubeid_key_delete(b->jwt_key);
	if (b->ca != NULL)
		cubeid_key_delete(cubeid_ca_key(b->ca));
	cubeid_ca_free(b->ca);
	cubeid_key_free(b->jwt_key);
	EVP_PKEY_free(b->jwt_pub);
	cubeid_jwt_bundle_free(b->bundle);
	cubeid_jws_free(b->jws);
	OPENSSL_free(b->der_sig);
	EVP_MD_CTX_free(b->mdctx);
	cubeid_spiffe_id_free(b->id);
	free(b->token);
	free(b->pem);
}

static void
usage(FILE *fp)
{
	fprintf(fp,
	        "usage: svid [options]\n"
	        "  --seconds S   time per case per round (default 1)\n"
	        "  --ops N       a fixed op count per case instead of a time\n"
	        "  --rounds N    rounds, alternating the cases (default 5, max %d)\n"
	        "  --only WHAT   x509, jwt or verify: run one group alone\n"
	        "  --smoke       a tiny run that only checks the bench works\n"
	        "  --quiet       no progress lines\n"
	        "The token is a throwaway SoftHSM2 token, or $CUBEID_TEST_TOKEN_URI.\n",
	        MAX_ROUNDS);
}

int
main(int argc, char **argv)
{
	static const struct option lo[] = {
	        {"seconds", required_argument, NULL, 's'}, {"ops", required_argument, NULL, 'n'},
	        {"rounds", required_argument, NULL, 'r'},  {"only", required_argument, NULL, 'o'},
	        {"smoke", no_argument, NULL, 'S'},         {"quiet", no_argument, NULL, 'q'},
	        {"help", no_argument, NULL, 'h'},          {NULL, 0, NULL, 0}};
	struct bench_cfg cfg = {.seconds = 1, .rounds = 5, .jwt = true, .verify = true};
	bool x509 = true;
	struct bench *b = NULL;
	struct th_token th;
	unsigned round;
	int c, rc = 1;

	while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
		switch (c) {
		case 's':
			if (!bu_opt_seconds("svid", optarg, &cfg.seconds))
				return 2;
			break;
		case 'n':
			if (!bu_opt_ops("svid", optarg, &cfg.ops))
				return 2;
			break;
		case 'r':
			if (!bu_opt_rounds("svid", optarg, &cfg.rounds))
				return 2;
			break;
		case 'o':
			if (strcmp(optarg, "x509") != 0 && strcmp(optarg, "jwt") != 0 &&
			    strcmp(optarg, "verify") != 0) {
				fprintf(stderr, "svid: bad --only %s\n", optarg);
				return 2;
			}
			x509 = strcmp(optarg, "x509") == 0;
			cfg.jwt = strcmp(optarg, "jwt") == 0;
			cfg.verify = strcmp(optarg, "verify") == 0;
			break;
		case 'S':
			cfg.ops = 5;
			cfg.rounds = 1;
			cfg.quiet = true;
			cfg.smoke = true;
			break;
		case 'q':
			cfg.quiet = true;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind != argc) {
		usage(stderr);
		return 2;
	}
	if ((b = calloc(1, sizeof(*b))) == NULL)
		return 1;
	b->s = CK_INVALID_HANDLE;

	/* A throwaway SoftHSM2 token, or the TPM lane's; exits 77 if
	 * SoftHSM2 is missing. */
	th_token_setup(&th);
	b->tok = th_token_open(&th, 0);
	b->tpm = th_is_tpm(&th);
	b->x509 = x509 && !b->tpm;
	if (!b->x509 && x509)
		printf("svid: X.509-SVID mint skipped: this token has no session-object keys\n");
	printf("svid: token '%s' (%s), module %s\n", cubeid_token_label(b->tok), th.uri,
	       cubeid_token_module_path(b->tok));
	if (cfg.ops > 0)
		printf("svid: %lu ops per case", cfg.ops);
	else
		printf("svid: %.1f s per case", cfg.seconds);
	printf("; %u round%s; one thread\n", cfg.rounds, cfg.rounds == 1 ? "" : "s");
	fflush(stdout);

	if (setup(b) != 0)
		goto out;
	/* Warm up: each case once, so that no first-call setup is timed. */
	for (c = 0; c < N_CASES; c++)
		if ((c > C_X509_MINT || b->x509) && one_op(b, (enum case_id)c) != 0)
			goto out;
	for (round = 0; round < cfg.rounds; round++) {
		if (b->x509 && run_group(b, group_x509, 3, &cfg, round) != 0)
			goto out;
		if (cfg.jwt && run_group(b, group_jwt, 2, &cfg, round) != 0)
			goto out;
		if (cfg.verify && run_group(b, group_ver, 3, &cfg, round) != 0)
			goto out;
		if (!cfg.quiet)
			fprintf(stderr, "  round %u/%u done\n", round + 1, cfg.rounds);
	}
	report(b, &cfg);
	rc = 0;
out:
	teardown(b);
	cubeid_token_free(b->tok);
	th_token_teardown(&th);
	free(b);
	return rc;
}
