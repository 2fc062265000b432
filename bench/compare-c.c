/*
 * bench/compare-c: the libcubeid client that bench/compare-spire drives
 * against cubeid-agent and spire-agent alike (the go-spiffe one is
 * bench/goclient).  Usage:
 *
 *   compare-c SOCKET cold N                 N x FetchX509SVID, a new
 *                                           connection each: p50/p99
 *   compare-c SOCKET jwt T SECS FRESH REUSE T threads of FetchJWTSVID;
 *                                           FRESH=1 a new audience per call,
 *                                           REUSE=1 one connection per thread;
 *                                           for $BENCH_SUBJECT alone if set
 *   compare-c SOCKET cycles N               N x (connect, FetchX509SVID,
 *                                           disconnect), no figures
 *
 * Output: "key value" lines.  Exit status 1 if any call fails.
 */
#include "config.h"

#include <cubeid/error.h>
#include <cubeid/workloadapi.h>

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char *sock;
static const char *subject; /* $BENCH_SUBJECT: the JWT-SVID's one SPIFFE ID */

static double
now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int
cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static int
fetch_x509(const struct cubeid_wl_opts *o)
{
	struct cubeid_wl_x509 *x = NULL;
	struct cubeid_wl_status st;
	int r = cubeid_wl_fetch_x509(o, &x, &st);

	if (r == 0 && (x == NULL || x->n_svids == 0))
		r = -1;
	if (r != 0)
		fprintf(stderr, "compare-c: FetchX509SVID: %s (%s)\n", cubeid_strerror(r),
		        st.message);
	cubeid_wl_x509_free(x);
	return r;
}

static int
cold(unsigned long n, int stats)
{
	struct cubeid_wl_opts o = {.socket = sock};
	double *lat = calloc(n ? n : 1, sizeof(*lat));
	unsigned long i;

	if (lat == NULL)
		return 1;
	for (i = 0; i < n; i++) {
		double t0 = now();

		if (fetch_x509(&o) != 0) {
			free(lat);
			return 1;
		}
		lat[i] = (now() - t0) * 1e3;
	}
	if (stats && n > 0) {
		qsort(lat, n, sizeof(*lat), cmp_double);
		printf("p50_ms %.3f\np99_ms %.3f\n", lat[(size_t)(0.5 * (double)(n - 1) + 0.5)],
		       lat[(size_t)(0.99 * (double)(n - 1) + 0.5)]);
	}
	free(lat);
	return 0;
}

struct worker {
	pthread_t th;
	unsigned id;
	int fresh, reuse;
	double end;
	unsigned long calls;
	int failed;
};

static void *
jwt_worker(void *arg)
{
	struct worker *w = arg;
	struct cubeid_wl_opts o = {.socket = sock};
	struct cubeid_wl_status st;
	char aud[96];
	const char *auds[1] = {aud};
	int r;

	if (w->reuse && (r = cubeid_wl_conn_open(&o, &o.conn, &st)) != 0) {
		fprintf(stderr, "compare-c: connect: %s (%s)\n", cubeid_strerror(r), st.message);
		w->failed = 1;
		return NULL;
	}
	while (now() < w->end) {
		struct cubeid_wl_jwt *j = NULL;

		if (w->fresh)
			snprintf(aud, sizeof(aud), "bench-c-%ld-%u-%lu", (long)getpid(), w->id,
			         w->calls);
		else
			snprintf(aud, sizeof(aud), "bench-aud");
		r = cubeid_wl_fetch_jwt(&o, auds, 1, subject, &j, &st);
		if (r == 0 && (j == NULL || j->n == 0))
			r = -1;
		cubeid_wl_jwt_free(j);
		if (r != 0) {
			fprintf(stderr, "compare-c: FetchJWTSVID: %s (%s)\n", cubeid_strerror(r),
			        st.message);
			w->failed = 1;
			break;
		}
		w->calls++;
	}
	cubeid_wl_conn_close(o.conn);
	return NULL;
}

static int
jwt(unsigned t, double secs, int fresh, int reuse)
{
	struct worker *w = calloc(t, sizeof(*w));
	unsigned long total = 0;
	double t0, el;
	unsigned i;
	int failed = 0;

	if (w == NULL)
		return 1;
	t0 = now();
	for (i = 0; i < t; i++) {
		w[i] = (struct worker){.id = i, .fresh = fresh, .reuse = reuse, .end = t0 + secs};
		if (pthread_create(&w[i].th, NULL, jwt_worker, &w[i]) != 0) {
			fprintf(stderr, "compare-c: pthread_create: %s\n", strerror(errno));
			return 1;
		}
	}
	for (i = 0; i < t; i++) {
		pthread_join(w[i].th, NULL);
		total += w[i].calls;
		failed |= w[i].failed;
	}
	el = now() - t0;
	free(w);
	if (failed)
		return 1;
	printf("rate %.1f\ncalls %lu\n", (double)total / el, total);
	return 0;
}

int
main(int argc, char **argv)
{
	if (argc < 4) {
		fprintf(stderr,
		        "usage: compare-c SOCKET cold N | jwt T SECS FRESH REUSE | cycles N\n");
		return 2;
	}
	sock = argv[1];
	subject = getenv("BENCH_SUBJECT");
	if (subject != NULL && *subject == '\0')
		subject = NULL;
	if (strcmp(argv[2], "cold") == 0)
		return cold(strtoul(argv[3], NULL, 10), 1);
	if (strcmp(argv[2], "cycles") == 0)
		return cold(strtoul(argv[3], NULL, 10), 0);
	if (strcmp(argv[2], "jwt") == 0 && argc >= 7)
		return jwt((unsigned)strtoul(argv[3], NULL, 10), strtod(argv[4], NULL),
		           atoi(argv[5]), atoi(argv[6]));
	fprintf(stderr, "compare-c: bad arguments\n");
	return 2;
}
