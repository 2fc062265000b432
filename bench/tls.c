/*
 * bench/tls: what the TLS loader costs over plain OpenSSL (issue 5).
 *
 * One run, one thread, one SoftHSM2 token holding the root CA that mints
 * a WorkloadManager server SVID and a Router client SVID (EC P-256) into
 * files.  Two cases, interleaved one handshake at a time with the first
 * alternating (the machine is noisy: a ratio only means something within
 * one run, between cases that met the same load):
 *
 *   loader   contexts from cubeid_tls_server_ctx()/cubeid_tls_client_ctx()
 *            over those files: the certificate callback presents the
 *            current pair, the peer is verified as an X.509-SVID and
 *            checked against the allow-list (each side allows the other).
 *   plain    SSL_CTX_use_certificate_chain_file/_PrivateKey_file and
 *            SSL_CTX_load_verify_locations from the same files, peer
 *            verification by OpenSSL (SSL_VERIFY_PEER both ways), no
 *            SPIFFE ID check, and SSL_MODE_NO_AUTO_CHAIN (the loader sets it
 *            too; --auto-chain leaves it off, OpenSSL's default, which
 *            rebuilds our own chain from the store at every handshake).
 *
 * Both are a full mTLS 1.3 handshake (no resumption) between a client and
 * a server in this process over a BIO pair, plus one message each way; so
 * a handshake's time is both sides' CPU.  Each is timed on its own; the
 * report gives p50 and p99 per case and the median of the per-round
 * ratios of handshake rates (loader / plain, each round's rate taken from
 * its median handshake, so that a few preempted handshakes on a shared
 * machine do not decide it; target >= 0.95).
 *
 * Then the cost of reloading one pair: cubeid_tls_reload() on the server
 * loader (read the three files, parse, check key against certificate,
 * verify the chain, swap), p50 and p99, also as a fraction of one
 * handshake.
 *
 * --smoke: a handful of handshakes and reloads, each checked, no verdict.
 */
#include "config.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/ssl.h>

#include <cubeid/ca.h>
#include <cubeid/log.h>
#include <cubeid/tls.h>

#include "tests/harness.h"
#include "tests/tls-test-util.h"

#define ROUTER "spiffe://cluster.local/ns/agentcube-system/sa/agentcube-router"
#define WM     "spiffe://cluster.local/ns/agentcube-system/sa/workloadmanager"

static double
now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static int
cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static double
pct(double *v, size_t n, double p)
{
	size_t i;

	qsort(v, n, sizeof(*v), cmp_double);
	i = (size_t)(p * (double)(n - 1) + 0.5);
	return v[i < n ? i : n - 1];
}

static bool auto_chain; /* --auto-chain: OpenSSL's default */

static SSL_CTX *
plain(bool server, const struct ttu_paths *p)
{
	SSL_CTX *ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());

	if (ctx == NULL || SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION) != 1 ||
	    SSL_CTX_use_certificate_chain_file(ctx, p->cert) != 1 ||
	    SSL_CTX_use_PrivateKey_file(ctx, p->key, SSL_FILETYPE_PEM) != 1 ||
	    SSL_CTX_load_verify_locations(ctx, p->ca, NULL) != 1) {
		fprintf(stderr, "bench/tls: cannot build a plain OpenSSL context\n");
		exit(1);
	}
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
	if (server)
		SSL_CTX_set_num_tickets(ctx, 0);
	/* tuned as a careful server would be: without this, OpenSSL builds
	 * our own chain from the verify store at every handshake, which made
	 * plain contexts about 4x slower here */
	if (!auto_chain)
		SSL_CTX_set_mode(ctx, SSL_MODE_NO_AUTO_CHAIN);
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
	return ctx;
}

static cubeid_tls *
loader(const struct ttu_paths *p, const char *allow)
{
	struct cubeid_tls_config cfg = {0};
	cubeid_tls *tls = NULL;

	cfg.cert_file = p->cert;
	cfg.key_file = p->key;
	cfg.ca_file = p->ca;
	cfg.allow = &allow;
	cfg.n_allow = 1;
	cfg.no_thread = true; /* the bench reloads by hand */
	if (cubeid_tls_new(&cfg, &tls) != CUBEID_OK) {
		fprintf(stderr, "bench/tls: cubeid_tls_new failed\n");
		exit(1);
	}
	return tls;
}

/* n handshakes; their times (us) go to t[0..n). */
static void
run(SSL_CTX *c, SSL_CTX *s, int n, double *t, const char *what)
{
	int i;

	for (i = 0; i < n; i++) {
		double t0 = now_us();

		if (!ttu_handshake_quick(c, s)) {
			fprintf(stderr, "bench/tls: a %s handshake failed\n", what);
			exit(1);
		}
		t[i] = now_us() - t0;
	}
}

static void
usage(FILE *f)
{
	fprintf(f, "usage: bench/tls [--rounds N] [--handshakes N] [--reloads N] [--smoke]\n"
	           "  --rounds N      rounds (handshakes interleaved, first case alternating) "
	           "(default 10)\n"
	           "  --handshakes N  handshakes per case per round (default 200)\n"
	           "  --reloads N     reloads of one pair (default 500)\n"
	           "  --smoke         a tiny run that only checks the bench works\n"
	           "  --auto-chain    leave OpenSSL's chain building on in the plain contexts\n");
}

int
main(int argc, char **argv)
{
	static const struct option opts[] = {{"rounds", required_argument, NULL, 'r'},
	                                     {"handshakes", required_argument, NULL, 'n'},
	                                     {"reloads", required_argument, NULL, 'l'},
	                                     {"smoke", no_argument, NULL, 'S'},
	                                     {"auto-chain", no_argument, NULL, 'A'},
	                                     {"help", no_argument, NULL, 'h'},
	                                     {NULL, 0, NULL, 0}};
	int rounds = 10, n = 200, reloads = 500, o, r, i;
	bool smoke = false;
	struct th_token th;
	cubeid_token *tok;
	cubeid_ca *root = NULL;
	char *dir, *rd, *sd, *cd;
	struct ttu_paths sp, cp;
	cubeid_tls *stls, *ctls;
	SSL_CTX *ls, *lc, *ps, *pc;
	double *tl, *tp, *all_l, *all_p, *ratio, *tr;
	size_t nl = 0, np = 0;

	while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (o) {
		case 'r':
			rounds = atoi(optarg);
			break;
		case 'n':
			n = atoi(optarg);
			break;
		case 'l':
			reloads = atoi(optarg);
			break;
		case 'S':
			smoke = true;
			break;
		case 'A':
			auto_chain = true;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (smoke) {
		rounds = 2;
		n = 5;
		reloads = 5;
	}
	if (rounds < 1 || n < 1 || reloads < 1) {
		usage(stderr);
		return 2;
	}
	cubeid_log_set_level(CUBEID_LOG_WARNING);
	th_token_setup(&th);
	tok = th_token_open(&th, 0);
	dir = th_mkdtemp("cubeid-bench-tls");
	if (asprintf(&rd, "%s/root", dir) < 0 || asprintf(&sd, "%s/wm", dir) < 0 ||
	    asprintf(&cd, "%s/router", dir) < 0)
		return 1;
	if (cubeid_ca_init(tok, rd, "cluster.local", NULL, &root) != CUBEID_OK) {
		fprintf(stderr, "bench/tls: cannot create the CA\n");
		return 1;
	}
	ttu_mint_files(root, tok, WM, sd, &sp);
	ttu_mint_files(root, tok, ROUTER, cd, &cp);
	stls = loader(&sp, ROUTER);
	ctls = loader(&cp, WM);
	if (cubeid_tls_server_ctx(stls, &ls) != CUBEID_OK ||
	    cubeid_tls_client_ctx(ctls, &lc) != CUBEID_OK)
		return 1;
	ps = plain(true, &sp);
	pc = plain(false, &cp);

	tl = calloc((size_t)n, sizeof(double));
	tp = calloc((size_t)n, sizeof(double));
	all_l = calloc((size_t)n * (size_t)rounds, sizeof(double));
	all_p = calloc((size_t)n * (size_t)rounds, sizeof(double));
	ratio = calloc((size_t)rounds, sizeof(double));
	tr = calloc((size_t)reloads, sizeof(double));
	if (tl == NULL || tp == NULL || all_l == NULL || all_p == NULL || ratio == NULL ||
	    tr == NULL)
		return 1;

	/* warm-up */
	run(lc, ls, n < 20 ? n : 20, tl, "loader");
	run(pc, ps, n < 20 ? n : 20, tp, "plain");
	for (r = 0; r < rounds; r++) {
		/* one handshake of each case in turn, the first alternating,
		 * so that both meet the same load on a shared machine */
		for (i = 0; i < n; i++) {
			if ((i + r) % 2 == 0) {
				run(lc, ls, 1, &tl[i], "loader");
				run(pc, ps, 1, &tp[i], "plain");
			} else {
				run(pc, ps, 1, &tp[i], "plain");
				run(lc, ls, 1, &tl[i], "loader");
			}
		}
		for (i = 0; i < n; i++) {
			all_l[nl++] = tl[i];
			all_p[np++] = tp[i];
		}
		/* rate(loader) / rate(plain) from the round's medians: on a
		 * shared machine a few preempted handshakes would swing means */
		ratio[r] = pct(tp, (size_t)n, 0.5) / pct(tl, (size_t)n, 0.5);
	}
	for (i = 0; i < reloads; i++) {
		double t0 = now_us();
		int rc = cubeid_tls_reload(stls);

		tr[i] = now_us() - t0;
		if (rc != 1) {
			fprintf(stderr, "bench/tls: a reload failed: %s\n", cubeid_strerror(rc));
			return 1;
		}
	}
	/* the server still works after all those swaps */
	if (!ttu_handshake_quick(lc, ls)) {
		fprintf(stderr, "bench/tls: handshake after the reloads failed\n");
		return 1;
	}

	{
		double l50 = pct(all_l, nl, 0.5), l99 = pct(all_l, nl, 0.99);
		double p50 = pct(all_p, np, 0.5), p99 = pct(all_p, np, 0.99);
		double rmed = pct(ratio, (size_t)rounds, 0.5);
		double r50 = pct(tr, (size_t)reloads, 0.5), r99 = pct(tr, (size_t)reloads, 0.99);

		printf("bench/tls: full mTLS 1.3 handshake, EC P-256, client and server in one "
		       "thread\n");
		printf("  %d rounds x %d handshakes per case, interleaved\n\n", rounds, n);
		printf("  %-28s %10s %10s %12s\n", "case", "p50 us", "p99 us", "handshakes/s");
		printf("  %-28s %10.0f %10.0f %12.0f\n", "loader (cubeid_tls)", l50, l99,
		       1e6 / l50);
		printf("  %-28s %10.0f %10.0f %12.0f\n", "plain OpenSSL, static files", p50, p99,
		       1e6 / p50);
		printf("\n  rate ratio loader/plain: median %.3f (min %.3f, max %.3f) over %d "
		       "rounds; target >= 0.95: %s\n",
		       rmed, ratio[0], ratio[rounds - 1], rounds,
		       smoke          ? "(smoke run, no verdict)"
		       : rmed >= 0.95 ? "met"
		                      : "NOT met");
		printf("\n  reload of one pair (cubeid_tls_reload, %d times): p50 %.0f us, p99 "
		       "%.0f "
		       "us; p50 = %.2f handshakes\n",
		       reloads, r50, r99, r50 / l50);
		if (smoke)
			printf("\n(smoke run: too few ops for these figures to mean anything)\n");
	}

	SSL_CTX_free(ls);
	SSL_CTX_free(lc);
	SSL_CTX_free(ps);
	SSL_CTX_free(pc);
	cubeid_tls_free(stls);
	cubeid_tls_free(ctls);
	cubeid_ca_free(root);
	cubeid_token_free(tok);
	ttu_paths_free(&sp);
	ttu_paths_free(&cp);
	th_rmtree(dir);
	th_token_teardown(&th);
	free(dir);
	free(rd);
	free(sd);
	free(cd);
	free(tl);
	free(tp);
	free(all_l);
	free(all_p);
	free(ratio);
	free(tr);
	return 0;
}
