/*
 * bench/token-sign: what the token layer costs over raw PKCS#11.
 *
 * In one run, on one token and one key, it times
 *   raw        C_SignInit + C_Sign over a precomputed digest, each thread on
 *              a session it opened itself;
 *   raw+hash   the same with the SHA-256 (or DigestInfo) work done per op,
 *              which is what the layer does: this is the like-for-like
 *              baseline;
 *   layer      cubeid_key_sign(), which hashes, borrows a pooled session and
 *              signs;
 * with 1 and 2 threads, alternating the cases round after round (the machine
 * is noisy, so a ratio is only meaningful within one run) and reporting the
 * median of each.  The target is layer/raw >= 0.95; the bench reports
 * whether it was met and never fails on it.  It does fail if a signature it
 * made does not verify.
 *
 * The token is the harness's throwaway SoftHSM2 token, or the one named by
 * --uri/--module/--pin-file, or by $CUBEID_TEST_TOKEN_URI etc. (the TPM
 * lane's tests/tpm/tpm-env.sh writes those).  See bench/run-token-sign.sh.
 */
#include "config.h"

#include "bench/bench-util.h"
#include "pkcs11/p11-internal.h"
#include "tests/harness.h"

#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>

#define MAX_THREADS 16
#define MAX_ROUNDS  BU_MAX_ROUNDS
#define DATA_LEN    256 /* about a JWT signing input */

enum mode { MODE_RAW, MODE_RAW_HASH, MODE_LAYER, N_MODES };
static const char *const mode_names[N_MODES] = {"raw", "raw+hash", "layer"};

struct bench_cfg {
	double seconds;    /* per case, when ops == 0 */
	unsigned long ops; /* per thread per case; 0 = timed */
	unsigned rounds;
	unsigned threads[MAX_THREADS];
	unsigned n_threads;
	bool rsa;
	bool quiet;
	bool smoke; /* too few ops to mean anything: no verdict */
};

/* One algorithm under test. */
struct alg_case {
	const char *name; /* "ECDSA P-256" */
	cubeid_key *key;
	cubeid_sig_alg alg;
	CK_MECHANISM_TYPE raw_mech; /* CKM_ECDSA or CKM_RSA_PKCS */
	bool digest_info;           /* raw input is DigestInfo || hash */
};

struct worker {
	pthread_t th;
	const struct alg_case *ac;
	enum mode mode;
	cubeid_token *tok;
	pthread_barrier_t *barrier;
	const struct timespec *deadline; /* timed mode */
	unsigned long ops;               /* op-count mode */
	unsigned long done;
	struct timespec start, end;
	uint8_t data[DATA_LEN];
	uint8_t sig[512];
	size_t sig_len;
	int err; /* cubeid code of the first failure */
	CK_RV rv;
};

static const uint8_t di_sha256[] = {0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01,
                                    0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0x04, 0x20};

/* One raw signature: input is the digest (or DigestInfo) when hash is false,
 * else the data, hashed here as the layer would. */
static CK_RV
raw_sign_once(struct worker *w, CK_SESSION_HANDLE s, const uint8_t *pre, size_t pre_len, bool hash)
{
	uint8_t buf[sizeof(di_sha256) + EVP_MAX_MD_SIZE];
	const uint8_t *in = pre;
	CK_ULONG in_len = pre_len, len = sizeof(w->sig);
	unsigned int dlen;
	size_t off = 0;
	CK_RV rv;

	if (hash) {
		if (w->ac->digest_info) {
			memcpy(buf, di_sha256, sizeof(di_sha256));
			off = sizeof(di_sha256);
		}
		if (EVP_Digest(w->data, sizeof(w->data), buf + off, &dlen, EVP_sha256(), NULL) != 1)
			return CKR_GENERAL_ERROR;
		in = buf;
		in_len = off + dlen;
	}
	if ((rv = bu_raw_sign(w->tok, s, w->ac->raw_mech, w->ac->key, in, in_len, w->sig, &len)) !=
	    CKR_OK)
		return rv;
	w->sig_len = len;
	return CKR_OK;
}

static bool
worker_more(struct worker *w)
{
	struct timespec now;

	if (w->ops > 0)
		return w->done < w->ops;
	clock_gettime(CLOCK_MONOTONIC, &now);
	return bu_ts_before(&now, w->deadline);
}

static void *
worker_main(void *arg)
{
	struct worker *w = arg;
	CK_FUNCTION_LIST_PTR f = w->tok->f;
	CK_SESSION_HANDLE s = CK_INVALID_HANDLE;
	uint8_t pre[sizeof(di_sha256) + EVP_MAX_MD_SIZE];
	size_t pre_len = 0;
	unsigned int dlen = 0;
	CK_RV rv = CKR_OK;
	size_t len;
	int r;

	/* Raw modes: a session of the thread's own, opened before timing.
	 * The login is per token, so it is already logged in by the layer. */
	if (w->mode != MODE_LAYER) {
		rv = bu_raw_session(w->tok, &s);
		if (rv == CKR_OK && w->ac->digest_info) {
			memcpy(pre, di_sha256, sizeof(di_sha256));
			pre_len = sizeof(di_sha256);
		}
		if (rv == CKR_OK && EVP_Digest(w->data, sizeof(w->data), pre + pre_len, &dlen,
		                               EVP_sha256(), NULL) != 1)
			rv = CKR_GENERAL_ERROR;
		pre_len += dlen;
		if (rv != CKR_OK) {
			w->rv = rv;
			w->err = p11_err(rv);
		}
	}
	pthread_barrier_wait(w->barrier);
	clock_gettime(CLOCK_MONOTONIC, &w->start);
	while (w->err == CUBEID_OK && worker_more(w)) {
		switch (w->mode) {
		case MODE_RAW:
		case MODE_RAW_HASH:
			rv = raw_sign_once(w, s, pre, pre_len, w->mode == MODE_RAW_HASH);
			if (rv != CKR_OK) {
				w->rv = rv;
				w->err = p11_err(rv);
			}
			break;
		case MODE_LAYER:
			len = sizeof(w->sig);
			r = cubeid_key_sign(w->ac->key, w->ac->alg, w->data, sizeof(w->data),
			                    w->sig, &len);
			if (r != CUBEID_OK)
				w->err = r;
			w->sig_len = len;
			break;
		default:
			w->err = CUBEID_ERR_INTERNAL;
		}
		if (w->err == CUBEID_OK)
			w->done++;
	}
	clock_gettime(CLOCK_MONOTONIC, &w->end);
	if (s != CK_INVALID_HANDLE)
		f->C_CloseSession(s);
	return NULL;
}

/* Check the last signature of a worker with OpenSSL alone. */
static bool
verify_sig(const struct alg_case *ac, const uint8_t *data, size_t data_len, const uint8_t *sig,
           size_t sig_len)
{
	EVP_PKEY *pub = NULL;
	EVP_MD_CTX *m = NULL;
	uint8_t *der = NULL;
	size_t der_len = 0;
	bool ok = false;

	if (cubeid_key_public(ac->key, &pub) != CUBEID_OK)
		return false;
	if (ac->raw_mech == CKM_ECDSA) {
		if (cubeid_ecdsa_raw_to_der(sig, sig_len, &der, &der_len) != CUBEID_OK)
			goto out;
		sig = der;
		sig_len = der_len;
	}
	if ((m = EVP_MD_CTX_new()) == NULL ||
	    EVP_DigestVerifyInit(m, NULL, EVP_sha256(), NULL, pub) != 1)
		goto out;
	ok = EVP_DigestVerify(m, sig, sig_len, data, data_len) == 1;
out:
	OPENSSL_free(der);
	EVP_MD_CTX_free(m);
	EVP_PKEY_free(pub);
	return ok;
}

/* Run one case; returns ops/s, or a negative value on failure. */
static double
run_case(cubeid_token *tok, const struct alg_case *ac, enum mode mode, unsigned nthreads,
         const struct bench_cfg *cfg, const uint8_t *data)
{
	struct worker w[MAX_THREADS];
	pthread_barrier_t barrier;
	struct timespec t0 = {0, 0}, deadline, end = {0, 0};
	unsigned long total = 0;
	unsigned i, started = 0;
	double secs, rate = -1;

	memset(w, 0, sizeof(w));
	pthread_barrier_init(&barrier, NULL, nthreads + 1);
	for (i = 0; i < nthreads; i++) {
		w[i].ac = ac;
		w[i].mode = mode;
		w[i].tok = tok;
		w[i].barrier = &barrier;
		w[i].deadline = &deadline;
		w[i].ops = cfg->ops;
		memcpy(w[i].data, data, DATA_LEN);
		if (pthread_create(&w[i].th, NULL, worker_main, &w[i]) != 0) {
			fprintf(stderr, "token-sign: pthread_create: %s\n", strerror(errno));
			exit(1);
		}
		started++;
	}
	/* The deadline is set before the barrier opens, and read after it. */
	bu_deadline(&deadline, cfg->seconds);
	pthread_barrier_wait(&barrier);
	for (i = 0; i < started; i++)
		pthread_join(w[i].th, NULL);
	pthread_barrier_destroy(&barrier);
	for (i = 0; i < nthreads; i++) {
		if (w[i].err != CUBEID_OK) {
			fprintf(stderr, "token-sign: %s %s, thread %u: %s", ac->name,
			        mode_names[mode], i, cubeid_strerror(w[i].err));
			if (w[i].rv != CKR_OK)
				fprintf(stderr, " (%s)", p11_rv_name(w[i].rv));
			fprintf(stderr, "\n");
			return -1;
		}
		if (w[i].done > 0 && !verify_sig(ac, w[i].data, DATA_LEN, w[i].sig, w[i].sig_len)) {
			fprintf(stderr, "token-sign: %s %s: a signature does not verify\n",
			        ac->name, mode_names[mode]);
			return -1;
		}
		total += w[i].done;
		if (i == 0 || bu_ts_before(&w[i].start, &t0))
			t0 = w[i].start;
		if (bu_ts_before(&end, &w[i].end))
			end = w[i].end;
	}
	secs = bu_ts_diff(&t0, &end);
	if (secs > 0)
		rate = (double)total / secs;
	else
		fprintf(stderr, "token-sign: %s %s: no time elapsed\n", ac->name, mode_names[mode]);
	return rate;
}

/* All rounds of one algorithm; prints the table.  Returns 0 or 1. */
static int
bench_alg(cubeid_token *tok, const struct alg_case *ac, const struct bench_cfg *cfg)
{
	double rate[MAX_THREADS][N_MODES][MAX_ROUNDS];
	uint8_t data[DATA_LEN];
	unsigned round, ti, k;
	enum mode mode;

	if (RAND_bytes(data, sizeof(data)) != 1)
		return 1;
	/* Warm up: the first op of a fresh key pays for its setup. */
	for (mode = 0; mode < N_MODES; mode++) {
		struct bench_cfg warm = *cfg;
		warm.ops = cfg->ops > 0 ? 1 : 20;
		if (run_case(tok, ac, mode, 1, &warm, data) < 0)
			return 1;
	}
	/* Rounds alternate the order of the cases, so that a slow spell of
	 * the machine does not always land on the same one. */
	for (round = 0; round < cfg->rounds; round++) {
		for (ti = 0; ti < cfg->n_threads; ti++) {
			for (k = 0; k < N_MODES; k++) {
				mode = (enum mode)((k + round + ti) % N_MODES);
				rate[ti][mode][round] =
				        run_case(tok, ac, mode, cfg->threads[ti], cfg, data);
				if (rate[ti][mode][round] < 0)
					return 1;
			}
		}
		if (!cfg->quiet)
			fprintf(stderr, "  %s: round %u/%u done\n", ac->name, round + 1,
			        cfg->rounds);
	}
	printf("\n%s (%s), %u round%s of %s per case, median:\n", ac->name,
	       ac->raw_mech == CKM_ECDSA ? "CKM_ECDSA over SHA-256" : "CKM_RSA_PKCS, SHA-256",
	       cfg->rounds, cfg->rounds == 1 ? "" : "s",
	       cfg->ops > 0 ? "a fixed op count" : "a fixed time");
	printf("  %-8s %14s %14s %14s %10s %15s\n", "threads", "raw op/s", "raw+hash op/s",
	       "layer op/s", "layer/raw", "layer/raw+hash");
	for (ti = 0; ti < cfg->n_threads; ti++) {
		double m[N_MODES], rr, rh;
		for (mode = 0; mode < N_MODES; mode++)
			m[mode] = bu_median(rate[ti][mode], cfg->rounds);
		/* Ratios are paired within a round, then the median taken. */
		rr = bu_median_ratio(rate[ti][MODE_LAYER], rate[ti][MODE_RAW], cfg->rounds);
		rh = bu_median_ratio(rate[ti][MODE_LAYER], rate[ti][MODE_RAW_HASH], cfg->rounds);
		printf("  %-8u %14.0f %14.0f %14.0f %10.3f %15.3f\n", cfg->threads[ti], m[MODE_RAW],
		       m[MODE_RAW_HASH], m[MODE_LAYER], rr, rh);
		if (cfg->smoke)
			continue;
		printf("  target layer/raw >= 0.95 with %u thread%s: like for like (raw+hash) "
		       "%s (%.3f); against digest-only raw %s (%.3f)\n",
		       cfg->threads[ti], cfg->threads[ti] == 1 ? "" : "s",
		       rh >= 0.95 ? "MET" : "NOT MET", rh, rr >= 0.95 ? "MET" : "NOT MET", rr);
	}
	if (cfg->smoke)
		printf("  (smoke run: too few ops for these figures to mean anything)\n");
	fflush(stdout);
	return 0;
}

static int
key_make(cubeid_token *tok, cubeid_key_type type, bool session_ok, cubeid_key **out)
{
	struct cubeid_keygen_opts o = {0};
	char label[64];
	int r;

	snprintf(label, sizeof(label), "cubeid-bench-%s-%ld", cubeid_key_type_name(type),
	         (long)getpid());
	o.type = type;
	o.label = label;
	o.persistent = !session_ok;
	r = cubeid_key_generate(tok, &o, out);
	if (r != CUBEID_OK && session_ok) {
		/* tpm2-pkcs11 has no session-object keys: use a token object
		 * and delete it at the end. */
		o.persistent = true;
		r = cubeid_key_generate(tok, &o, out);
	}
	return r;
}

static void
usage(FILE *fp)
{
	fprintf(fp,
	        "usage: token-sign [options]\n"
	        "  --seconds S     time per case (default 2)\n"
	        "  --ops N         fixed op count per thread per case instead of a time\n"
	        "  --rounds N      rounds, alternating the cases (default 3, max %d)\n"
	        "  --threads LIST  comma-separated thread counts (default 1,2)\n"
	        "  --rsa           also RSA-2048 PKCS#1 v1.5 (RS256)\n"
	        "  --smoke         a tiny run that only checks the bench works\n"
	        "  --uri URI       token to use (default $CUBEID_TEST_TOKEN_URI, else a\n"
	        "                  throwaway SoftHSM2 token)\n"
	        "  --module PATH   its PKCS#11 module (default $CUBEID_TEST_MODULE)\n"
	        "  --pin-file F    its user PIN file (default $CUBEID_TEST_PIN_FILE)\n"
	        "  --quiet         no progress lines\n",
	        MAX_ROUNDS);
}

int
main(int argc, char **argv)
{
	static const struct option lo[] = {{"seconds", required_argument, NULL, 's'},
	                                   {"ops", required_argument, NULL, 'n'},
	                                   {"rounds", required_argument, NULL, 'r'},
	                                   {"threads", required_argument, NULL, 't'},
	                                   {"rsa", no_argument, NULL, 'R'},
	                                   {"smoke", no_argument, NULL, 'S'},
	                                   {"uri", required_argument, NULL, 'u'},
	                                   {"module", required_argument, NULL, 'm'},
	                                   {"pin-file", required_argument, NULL, 'p'},
	                                   {"quiet", no_argument, NULL, 'q'},
	                                   {"help", no_argument, NULL, 'h'},
	                                   {NULL, 0, NULL, 0}};
	struct bench_cfg cfg = {.seconds = 2, .rounds = 3, .threads = {1, 2}, .n_threads = 2};
	const char *uri = NULL, *module = NULL, *pin_file = NULL;
	struct th_token th;
	struct cubeid_token_opts o = {0};
	struct alg_case ec = {"ECDSA P-256", NULL, CUBEID_SIG_ECDSA_SHA256, CKM_ECDSA, false};
	struct alg_case rsa = {"RSA-2048", NULL, CUBEID_SIG_RSA_PKCS1_SHA256, CKM_RSA_PKCS, true};
	cubeid_token *tok = NULL;
	bool harness = false, session_ok;
	int c, r, rc = 1;

	while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
		switch (c) {
		case 's':
			if (!bu_opt_seconds("token-sign", optarg, &cfg.seconds))
				return 2;
			break;
		case 'n':
			if (!bu_opt_ops("token-sign", optarg, &cfg.ops))
				return 2;
			break;
		case 'r':
			if (!bu_opt_rounds("token-sign", optarg, &cfg.rounds))
				return 2;
			break;
		case 't':
			if (bu_parse_threads(optarg, MAX_THREADS, cfg.threads, MAX_THREADS,
			                     &cfg.n_threads) != 0) {
				fprintf(stderr,
				        "token-sign: bad --threads %s (1..%d, comma-separated)\n",
				        optarg, MAX_THREADS);
				return 2;
			}
			break;
		case 'R':
			cfg.rsa = true;
			break;
		case 'S':
			cfg.ops = 10;
			cfg.rounds = 1;
			cfg.rsa = true;
			cfg.quiet = true;
			cfg.smoke = true;
			break;
		case 'u':
			uri = optarg;
			break;
		case 'm':
			module = optarg;
			break;
		case 'p':
			pin_file = optarg;
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

	if (uri != NULL) {
		o.module_path = module != NULL ? module : getenv("CUBEID_TEST_MODULE");
		o.pin_file = pin_file != NULL ? pin_file : getenv("CUBEID_TEST_PIN_FILE");
		if ((r = cubeid_token_open(uri, &o, &tok)) != CUBEID_OK) {
			fprintf(stderr, "token-sign: cannot open %s: %s\n", uri,
			        cubeid_strerror(r));
			return 1;
		}
		session_ok = true;
	} else {
		/* The harness: $CUBEID_TEST_TOKEN_URI (the TPM lane) or a
		 * throwaway SoftHSM2 token; exits 77 if SoftHSM2 is missing. */
		th_token_setup(&th);
		harness = true;
		tok = th_token_open(&th, 0);
		session_ok = !th_is_tpm(&th);
		uri = th.uri;
	}
	printf("token-sign: token '%s' (%s), module %s\n", cubeid_token_label(tok), uri,
	       cubeid_token_module_path(tok));
	printf("token-sign: %u-byte messages; threads:", DATA_LEN);
	for (c = 0; c < (int)cfg.n_threads; c++)
		printf(" %u", cfg.threads[c]);
	if (cfg.ops > 0)
		printf("; %lu ops per thread per case", cfg.ops);
	else
		printf("; %.1f s per case", cfg.seconds);
	printf("; %u round%s\n", cfg.rounds, cfg.rounds == 1 ? "" : "s");
	printf("token-sign: raw = C_SignInit+C_Sign over a precomputed digest on the thread's "
	       "own session;\n"
	       "            raw+hash = the same, hashing the message per op (like for like);\n"
	       "            layer = cubeid_key_sign() (hashes, borrows a pooled session, "
	       "signs)\n");
	fflush(stdout);

	if ((r = key_make(tok, CUBEID_KEY_EC_P256, session_ok, &ec.key)) != CUBEID_OK) {
		fprintf(stderr, "token-sign: cannot generate an EC P-256 key: %s\n",
		        cubeid_strerror(r));
		goto out;
	}
	if (bench_alg(tok, &ec, &cfg) != 0)
		goto out;
	if (cfg.rsa) {
		if ((r = key_make(tok, CUBEID_KEY_RSA_2048, session_ok, &rsa.key)) != CUBEID_OK) {
			fprintf(stderr, "token-sign: cannot generate an RSA-2048 key: %s\n",
			        cubeid_strerror(r));
			goto out;
		}
		if (bench_alg(tok, &rsa, &cfg) != 0)
			goto out;
	}
	rc = 0;
out:
	if (ec.key != NULL && cubeid_key_is_persistent(ec.key))
		cubeid_key_delete(ec.key);
	if (rsa.key != NULL && cubeid_key_is_persistent(rsa.key))
		cubeid_key_delete(rsa.key);
	cubeid_key_free(ec.key);
	cubeid_key_free(rsa.key);
	cubeid_token_free(tok);
	if (harness)
		th_token_teardown(&th);
	return rc;
}
