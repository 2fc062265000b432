/*
 * bench/picod-auth: the cost of each Router -> PicoD auth mode, in one run
 * (issue 6), against a real cubeid-agent (bench/run-picod-auth.sh starts
 * it with the Router's entry and the --dev user as the sandbox).
 *
 * Cases, each an operation timed alone (p50 and p99 of every sample; the
 * cases are interleaved round by round so that load hits them alike):
 *   raw-rs256 / raw-es256   C_SignInit + C_Sign with a token key of a
 *                           throwaway SoftHSM2 token (RS256: CKM_SHA256_RSA_PKCS
 *                           over a 400-byte signing input; ES256: CKM_ECDSA
 *                           over its SHA-256)
 *   mint-cached-*           MintToken, the same request again (agent cache)
 *   mint-uncached-*         MintToken, a new session each time (a signature)
 *   verify-*                cubeid_picod_verify_header() alone
 *   mtls-handshake          TCP connect + TLS 1.3 handshake with SVIDs
 *   mtls-bootstrap          that + one HTTP request and its answer
 *   jwt-bootstrap-cached    MintToken (cached) + TCP connect + one HTTP
 *                           request with Bearer + PicoD's verification
 *   jwt-bootstrap-uncached  the same with a token signed for it
 * The PicoD side runs in threads of this process on loopback
 * (<cubeid/picod-auth.h> in each mode).  RS256 cases run first; then the
 * agent's PicoD key is rotated to ES256 (--now) for the ES256 cases.
 *
 *   picod-auth --socket S [--rounds N] [--ops N] [--smoke]
 */
#include "config.h"

#include "pkcs11/p11-internal.h"
#include "tests/harness.h"

#include <cubeid/picod-auth.h>
#include <cubeid/picod.h>

#include <arpa/inet.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/rand.h>

#define ROUTER_ID  "spiffe://cluster.local/ns/agentcube-system/sa/agentcube-router"
#define MAX_SAMPLE 200000
#define BUDGET_MS  100.0 /* the seed's JWT-mode bootstrap budget */

enum kase {
	C_RAW_RS,
	C_RAW_ES,
	C_MINT_CACHED_RS,
	C_MINT_UNCACHED_RS,
	C_MINT_CACHED_ES,
	C_MINT_UNCACHED_ES,
	C_VERIFY_RS,
	C_VERIFY_ES,
	C_MTLS_HS,
	C_MTLS_BOOT,
	C_JWT_BOOT_CACHED,
	C_JWT_BOOT_UNCACHED,
	N_CASES
};
static const char *const names[N_CASES] = {
        "raw C_Sign RS256",         "raw C_Sign ES256",       "MintToken cached RS256",
        "MintToken uncached RS256", "MintToken cached ES256", "MintToken uncached ES256",
        "verify (PicoD) RS256",     "verify (PicoD) ES256",   "mTLS handshake",
        "mTLS bootstrap (+HTTP)",   "JWT bootstrap, cached",  "JWT bootstrap, uncached",
};

struct samples {
	double *v;
	size_t n;
};
static struct samples S[N_CASES];

static const char *sock_path;
static unsigned long seq;

struct server {
	cubeid_picod_auth *auth;
	int lfd;
	int port;
	pthread_t t;
	unsigned long ok, bad;
};

static double
now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static void
add(enum kase k, double us)
{
	if (S[k].n < MAX_SAMPLE)
		S[k].v[S[k].n++] = us;
}

static int
cmpd(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static double
pct(enum kase k, double p)
{
	size_t i;

	if (S[k].n == 0)
		return 0;
	qsort(S[k].v, S[k].n, sizeof(double), cmpd);
	i = (size_t)(p * (double)(S[k].n - 1) + 0.5);
	return S[k].v[i];
}

/* ---- the PicoD side ------------------------------------------------- */

static void *
serve(void *arg)
{
	struct server *s = arg;
	static const char ok[] = "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n"
	                         "\r\n{}\n";
	static const char no[] = "HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n"
	                         "Connection: close\r\n\r\n";
	char buf[CUBEID_PICOD_HEAD_MAX], *auth;
	size_t hl, len;
	int fd;

	for (;;) {
		cubeid_picod_conn *c = NULL;

		if ((fd = accept(s->lfd, NULL, NULL)) < 0)
			return NULL;
		auth = NULL;
		if (cubeid_picod_conn_server(s->auth, fd, &c) == CUBEID_OK &&
		    cubeid_picod_conn_read_head(c, buf, sizeof(buf), &hl, &len, &auth) ==
		            CUBEID_OK) {
			if (cubeid_picod_conn_authorize(c, auth, NULL, NULL) == CUBEID_OK) {
				s->ok++;
				(void)cubeid_picod_conn_write(c, ok, sizeof(ok) - 1);
			} else {
				s->bad++;
				(void)cubeid_picod_conn_write(c, no, sizeof(no) - 1);
			}
		}
		free(auth);
		cubeid_picod_conn_free(c);
		close(fd);
	}
}

static int
server_start(struct server *s, const struct cubeid_picod_auth_config *cfg)
{
	struct sockaddr_in sa = {.sin_family = AF_INET};
	socklen_t sl = sizeof(sa);
	int rc;

	if ((rc = cubeid_picod_auth_new(cfg, &s->auth)) != CUBEID_OK) {
		fprintf(stderr, "picod-auth: server auth: %s\n", cubeid_strerror(rc));
		return 1;
	}
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if ((s->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0 ||
	    bind(s->lfd, (struct sockaddr *)&sa, sizeof(sa)) != 0 || listen(s->lfd, 128) != 0 ||
	    getsockname(s->lfd, (struct sockaddr *)&sa, &sl) != 0)
		return 1;
	if (pthread_create(&s->t, NULL, serve, s) != 0)
		return 1;
	s->port = ntohs(sa.sin_port); /* set once the thread runs */
	return 0;
}

/* Unblock accept() (shutdown of a listening socket makes it fail), join
 * the thread, free the auth. */
static void
server_stop(struct server *s)
{
	if (s->auth == NULL)
		return;
	if (s->lfd > 0) {
		(void)shutdown(s->lfd, SHUT_RDWR);
		if (s->port != 0)
			pthread_join(s->t, NULL);
		close(s->lfd);
	}
	cubeid_picod_auth_free(s->auth);
	s->auth = NULL;
}

/* ---- the Router side ------------------------------------------------- */

static int
tcp_connect(int port)
{
	struct sockaddr_in sa = {.sin_family = AF_INET};
	int fd, one = 1;

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	sa.sin_port = htons((uint16_t)port);
	if ((fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0)
		return -1;
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
		close(fd);
		return -1;
	}
	return fd;
}

/* One request on a fresh connection; 0 when PicoD answered 200. */
static int
request(cubeid_picod_auth *a, int port, const char *authorization, bool handshake_only)
{
	cubeid_picod_conn *c = NULL;
	char req[8192], resp[512];
	long n;
	int fd, m, rc = 1;

	if ((fd = tcp_connect(port)) < 0)
		return 1;
	if (cubeid_picod_conn_client(a, fd, &c) != CUBEID_OK)
		goto out;
	if (handshake_only) {
		rc = 0;
		goto out;
	}
	m = snprintf(req, sizeof(req),
	             "POST /api/execute HTTP/1.1\r\nHost: picod\r\n%s%s%sContent-Length: 2\r\n"
	             "Connection: close\r\n\r\n{}",
	             authorization ? "Authorization: " : "", authorization ? authorization : "",
	             authorization ? "\r\n" : "");
	if (cubeid_picod_conn_write(c, req, (size_t)m) != CUBEID_OK)
		goto out;
	if ((n = cubeid_picod_conn_read(c, resp, sizeof(resp) - 1)) <= 0)
		goto out;
	resp[n] = '\0';
	rc = strncmp(resp, "HTTP/1.1 200 ", 13) == 0 ? 0 : 1;
out:
	cubeid_picod_conn_free(c);
	close(fd);
	return rc;
}

static int
mint(bool cached, char **bearer)
{
	struct cubeid_wl_opts o = {.socket = sock_path};
	struct cubeid_wl_status st;
	struct cubeid_picod_token_req r = {.sandbox = "sb-bench"};
	struct cubeid_picod_token *t = NULL;
	char sess[64];
	int rc;

	if (cached) {
		r.session_id = "s-cached";
	} else {
		snprintf(sess, sizeof(sess), "s-%ld-%lu", (long)getpid(), ++seq);
		r.session_id = sess;
	}
	if ((rc = cubeid_picod_fetch_token(&o, &r, &t, &st)) != CUBEID_OK) {
		fprintf(stderr, "picod-auth: MintToken: %s: %s\n", cubeid_strerror(rc), st.message);
		return rc;
	}
	if (!cached && t->cached) { /* a new session must be signed for */
		fprintf(stderr, "picod-auth: a new session got a cached token\n");
		cubeid_picod_token_free(t);
		return CUBEID_ERR_INTERNAL;
	}
	if (bearer != NULL && asprintf(bearer, "Bearer %s", t->token) < 0)
		*bearer = NULL;
	cubeid_picod_token_free(t);
	return CUBEID_OK;
}

/* ---- raw C_Sign ------------------------------------------------------ */

struct raw {
	cubeid_token *tok;
	cubeid_key *rsa, *ec;
	uint8_t input[400], digest[32];
};

static int
raw_sign(const struct raw *r, bool rsa)
{
	CK_FUNCTION_LIST_PTR f = r->tok->f;
	CK_MECHANISM mech = {rsa ? CKM_SHA256_RSA_PKCS : CKM_ECDSA, NULL, 0};
	CK_SESSION_HANDLE s;
	CK_BYTE sig[512];
	CK_ULONG len = sizeof(sig);
	CK_RV rv;

	if ((rv = f->C_OpenSession(r->tok->slot, CKF_SERIAL_SESSION, NULL, NULL, &s)) != CKR_OK)
		return 1;
	rv = f->C_SignInit(s, &mech, p11_key_handle(rsa ? r->rsa : r->ec));
	if (rv == CKR_OK)
		rv = rsa ? f->C_Sign(s, (CK_BYTE_PTR)r->input, sizeof(r->input), sig, &len)
		         : f->C_Sign(s, (CK_BYTE_PTR)r->digest, sizeof(r->digest), sig, &len);
	f->C_CloseSession(s);
	return rv == CKR_OK ? 0 : 1;
}

static int
raw_setup(struct th_token *th, struct raw *r)
{
	struct cubeid_keygen_opts ko = {.persistent = true};
	unsigned dlen;

	th_token_setup(th);
	if ((r->tok = th_token_open(th, 0)) == NULL)
		return 1;
	ko.type = CUBEID_KEY_RSA_2048;
	ko.label = "bench-picod-rsa";
	if (cubeid_key_generate(r->tok, &ko, &r->rsa) != CUBEID_OK)
		return 1;
	ko.type = CUBEID_KEY_EC_P256;
	ko.label = "bench-picod-ec";
	if (cubeid_key_generate(r->tok, &ko, &r->ec) != CUBEID_OK)
		return 1;
	if (RAND_bytes(r->input, sizeof(r->input)) != 1 ||
	    EVP_Digest(r->input, sizeof(r->input), r->digest, &dlen, EVP_sha256(), NULL) != 1)
		return 1;
	return 0;
}

/* ---- the run ---------------------------------------------------------- */

static int
one(enum kase k, const struct raw *raw, struct server *ms, struct server *js, cubeid_picod_auth *mc,
    cubeid_picod_auth *jc, cubeid_picod_verifier *v, const char *tok_hdr)
{
	char *b = NULL;
	double t0 = now_us();
	int rc = 0;

	switch (k) {
	case C_RAW_RS:
	case C_RAW_ES:
		rc = raw_sign(raw, k == C_RAW_RS);
		break;
	case C_MINT_CACHED_RS:
	case C_MINT_CACHED_ES:
		rc = mint(true, NULL);
		break;
	case C_MINT_UNCACHED_RS:
	case C_MINT_UNCACHED_ES:
		rc = mint(false, NULL);
		break;
	case C_VERIFY_RS:
	case C_VERIFY_ES:
		rc = cubeid_picod_verify_header(v, tok_hdr, 0, NULL);
		break;
	case C_MTLS_HS:
		rc = request(mc, ms->port, NULL, true);
		break;
	case C_MTLS_BOOT:
		rc = request(mc, ms->port, NULL, false);
		break;
	case C_JWT_BOOT_CACHED:
	case C_JWT_BOOT_UNCACHED:
		if ((rc = mint(k == C_JWT_BOOT_CACHED, &b)) == 0)
			rc = request(jc, js->port, b, false);
		free(b);
		break;
	default:
		break;
	}
	if (rc != 0) {
		fprintf(stderr, "picod-auth: %s failed (%d)\n", names[k], rc);
		return 1;
	}
	add(k, now_us() - t0);
	return 0;
}

static int
run(const enum kase *ks, size_t nk, unsigned rounds, unsigned ops, const struct raw *raw,
    struct server *ms, struct server *js, cubeid_picod_auth *mc, cubeid_picod_auth *jc,
    cubeid_picod_verifier *v, const char *tok_hdr)
{
	unsigned r, i;
	size_t j;

	for (r = 0; r < rounds; r++)
		for (j = 0; j < nk; j++) /* rotate the order from round to round */
			for (i = 0; i < ops; i++)
				if (one(ks[(j + r) % nk], raw, ms, js, mc, jc, v, tok_hdr) != 0)
					return 1;
	return 0;
}

static void
row(enum kase k, double base)
{
	printf("  %-28s %9.3f %9.3f %8zu", names[k], pct(k, 0.5) / 1e3, pct(k, 0.99) / 1e3, S[k].n);
	if (base > 0)
		printf("   %7.3f", pct(k, 0.5) / base);
	printf("\n");
}

int
main(int argc, char **argv)
{
	static const struct option lo[] = {{"socket", 1, NULL, 's'},
	                                   {"rounds", 1, NULL, 'r'},
	                                   {"ops", 1, NULL, 'n'},
	                                   {"smoke", 0, NULL, 'S'},
	                                   {NULL, 0, NULL, 0}};
	struct cubeid_tls_config tr = {0}, ts = {0};
	struct cubeid_picod_auth_config mcfg = {0}, jcfg = {0}, mscfg = {0}, jscfg = {0};
	struct cubeid_picod_verifier_opts vo = {.sandbox = "sb-bench", .leeway = -1};
	struct cubeid_wl_opts o = {0};
	struct cubeid_wl_status st;
	struct cubeid_picod_pubkey *pk = NULL;
	struct server ms = {0}, js = {0};
	cubeid_picod_auth *mc = NULL, *jc = NULL;
	cubeid_picod_verifier *v = NULL;
	struct th_token th = {0};
	struct raw raw = {0};
	char *hdr = NULL, uid_id[128];
	unsigned rounds = 5, ops = 40, i;
	double hs, boot_m, boot_j, boot_ju;
	int c, rc;

	while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (c) {
		case 's':
			sock_path = optarg;
			break;
		case 'r':
			rounds = (unsigned)atoi(optarg);
			break;
		case 'n':
			ops = (unsigned)atoi(optarg);
			break;
		case 'S':
			rounds = 1;
			ops = 3;
			break;
		default:
			fprintf(stderr,
			        "usage: picod-auth --socket S [--rounds N] [--ops N] [--smoke]\n");
			return 2;
		}
	}
	if (sock_path == NULL || rounds == 0 || ops == 0 || rounds * ops > 20000) {
		fprintf(stderr, "picod-auth: --socket is required; rounds x ops <= 20000\n");
		return 2;
	}
	for (i = 0; i < N_CASES; i++)
		if ((S[i].v = calloc(MAX_SAMPLE, sizeof(double))) == NULL)
			return 1;
	o.socket = sock_path;
	if (raw_setup(&th, &raw) != 0) {
		fprintf(stderr, "picod-auth: cannot set up the raw token keys\n");
		return 1;
	}
	/* the sandbox (PicoD) is the --dev user; the Router has the entry */
	snprintf(uid_id, sizeof(uid_id), "spiffe://cluster.local/unix/uid/%lu",
	         (unsigned long)getuid());
	ts.socket = tr.socket = sock_path;
	ts.spiffe_id = uid_id;
	tr.spiffe_id = ROUTER_ID;
	mscfg.mode = CUBEID_PICOD_AUTH_MTLS;
	mscfg.role = CUBEID_PICOD_SERVER;
	mscfg.tls = &ts;
	mcfg.mode = CUBEID_PICOD_AUTH_MTLS;
	mcfg.role = CUBEID_PICOD_CLIENT;
	mcfg.tls = &tr;
	jcfg.mode = CUBEID_PICOD_AUTH_JWT;
	jcfg.role = CUBEID_PICOD_CLIENT;
	jcfg.socket = sock_path;
	rc = 1;
	if (cubeid_picod_fetch_public_key(&o, &pk, &st) != CUBEID_OK) {
		fprintf(stderr, "picod-auth: PublicKey: %s\n", st.message);
		goto out;
	}
	jscfg.mode = CUBEID_PICOD_AUTH_JWT;
	jscfg.role = CUBEID_PICOD_SERVER;
	jscfg.verify = vo;
	jscfg.jwks = pk->jwks; /* every published key: it survives the rotation */
	if (server_start(&ms, &mscfg) != 0 || server_start(&js, &jscfg) != 0 ||
	    cubeid_picod_auth_new(&mcfg, &mc) != CUBEID_OK ||
	    cubeid_picod_auth_new(&jcfg, &jc) != CUBEID_OK ||
	    cubeid_picod_verifier_new(&vo, &v) != CUBEID_OK ||
	    cubeid_picod_verifier_set_pem(v, pk->pem, strlen(pk->pem)) != CUBEID_OK)
		goto out;
	if (mint(true, &hdr) != 0 || hdr == NULL)
		goto out;
	{
		static const enum kase rs[] = {
		        C_RAW_RS,  C_RAW_ES,    C_MINT_CACHED_RS,  C_MINT_UNCACHED_RS, C_VERIFY_RS,
		        C_MTLS_HS, C_MTLS_BOOT, C_JWT_BOOT_CACHED, C_JWT_BOOT_UNCACHED};
		static const enum kase es[] = {C_RAW_RS,           C_RAW_ES,    C_MINT_CACHED_ES,
		                               C_MINT_UNCACHED_ES, C_VERIFY_ES, C_MTLS_HS};

		/* warm up: the loader's SVIDs, the agent's key and cache */
		if (run(rs, sizeof(rs) / sizeof(rs[0]), 1, 1, &raw, &ms, &js, mc, jc, v, hdr) != 0)
			goto out;
		for (i = 0; i < N_CASES; i++)
			S[i].n = 0;
		if (run(rs, sizeof(rs) / sizeof(rs[0]), rounds, ops, &raw, &ms, &js, mc, jc, v,
		        hdr) != 0)
			goto out;
		/* ES256: rotate the agent's PicoD key to EC P-256, at once */
		if ((rc = cubeid_picod_rotate_key(&o, "ec-p256", -1, NULL, NULL, &st)) !=
		    CUBEID_OK) {
			fprintf(stderr, "picod-auth: RotateKey: %s: %s\n", cubeid_strerror(rc),
			        st.message);
			rc = 1;
			goto out;
		}
		rc = 1;
		cubeid_picod_pubkey_free(pk);
		pk = NULL;
		free(hdr);
		hdr = NULL;
		if (cubeid_picod_fetch_public_key(&o, &pk, &st) != CUBEID_OK ||
		    cubeid_picod_verifier_set_pem(v, pk->pem, strlen(pk->pem)) != CUBEID_OK ||
		    mint(true, &hdr) != 0 || hdr == NULL)
			goto out;
		if (run(es, sizeof(es) / sizeof(es[0]), rounds, ops, &raw, &ms, &js, mc, jc, v,
		        hdr) != 0)
			goto out;
	}
	hs = pct(C_MTLS_HS, 0.5);
	boot_m = pct(C_MTLS_BOOT, 0.5);
	boot_j = pct(C_JWT_BOOT_CACHED, 0.5);
	boot_ju = pct(C_JWT_BOOT_UNCACHED, 0.5);
	printf("\nRouter -> PicoD auth, %u rounds x %u ops per case, one thread, loopback:\n",
	       rounds, ops);
	printf("  %-28s %9s %9s %8s   %7s\n", "case", "p50 ms", "p99 ms", "samples", "/ mTLS hs");
	for (i = 0; i < N_CASES; i++)
		row((enum kase)i, hs);
	printf("\nratios (by p50):\n");
	printf("  JWT bootstrap (cached token) / mTLS bootstrap      %7.3f\n", boot_j / boot_m);
	printf("  JWT bootstrap (uncached token) / mTLS bootstrap    %7.3f\n", boot_ju / boot_m);
	printf("  MintToken cached / raw C_Sign, RS256               %7.3f\n",
	       pct(C_MINT_CACHED_RS, 0.5) / pct(C_RAW_RS, 0.5));
	printf("  MintToken uncached / raw C_Sign, RS256             %7.3f\n",
	       pct(C_MINT_UNCACHED_RS, 0.5) / pct(C_RAW_RS, 0.5));
	printf("  MintToken cached / raw C_Sign, ES256               %7.3f\n",
	       pct(C_MINT_CACHED_ES, 0.5) / pct(C_RAW_ES, 0.5));
	printf("  MintToken uncached / raw C_Sign, ES256             %7.3f\n",
	       pct(C_MINT_UNCACHED_ES, 0.5) / pct(C_RAW_ES, 0.5));
	/* the budget is absolute (~100 ms); state it against the handshake
	 * measured here, since absolute times on this VM move with load */
	printf("\ntarget: the agent adds < 1/100 of the ~%.0f ms bootstrap budget = %.2f ms,\n"
	       "  which is %.3f x the mTLS handshake of this run (%.3f ms):\n",
	       BUDGET_MS, BUDGET_MS / 100, BUDGET_MS / 100 * 1e3 / hs, hs / 1e3);
	printf("  MintToken cached   RS256 %.3f ms = %.3f x mTLS handshake: %s\n",
	       pct(C_MINT_CACHED_RS, 0.5) / 1e3, pct(C_MINT_CACHED_RS, 0.5) / hs,
	       pct(C_MINT_CACHED_RS, 0.5) < BUDGET_MS * 10 ? "target met" : "target NOT met");
	printf("  MintToken uncached RS256 %.3f ms = %.3f x mTLS handshake: %s\n",
	       pct(C_MINT_UNCACHED_RS, 0.5) / 1e3, pct(C_MINT_UNCACHED_RS, 0.5) / hs,
	       pct(C_MINT_UNCACHED_RS, 0.5) < BUDGET_MS * 10 ? "target met" : "target NOT met");
	printf("  MintToken uncached ES256 %.3f ms = %.3f x mTLS handshake: %s\n",
	       pct(C_MINT_UNCACHED_ES, 0.5) / 1e3, pct(C_MINT_UNCACHED_ES, 0.5) / hs,
	       pct(C_MINT_UNCACHED_ES, 0.5) < BUDGET_MS * 10 ? "target met" : "target NOT met");
	printf("  PicoD accepted %lu and refused %lu requests (mTLS: %lu)\n", js.ok, js.bad, ms.ok);
	rc = js.bad == 0 ? 0 : 1;
out:
	server_stop(&ms);
	server_stop(&js);
	for (i = 0; i < N_CASES; i++)
		free(S[i].v);
	free(hdr);
	cubeid_picod_pubkey_free(pk);
	cubeid_picod_verifier_free(v);
	cubeid_picod_auth_free(mc);
	cubeid_picod_auth_free(jc);
	cubeid_key_free(raw.rsa);
	cubeid_key_free(raw.ec);
	cubeid_token_free(raw.tok);
	th_token_teardown(&th);
	return rc;
}
