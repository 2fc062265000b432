/*
 * Helpers shared by the benchmarks (bench-util.h).
 */
#include "config.h"

#include "bench/bench-util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

double
bu_ts_diff(const struct timespec *a, const struct timespec *b)
{
	return (double)(b->tv_sec - a->tv_sec) + (double)(b->tv_nsec - a->tv_nsec) / 1e9;
}

bool
bu_ts_before(const struct timespec *a, const struct timespec *b)
{
	return a->tv_sec < b->tv_sec || (a->tv_sec == b->tv_sec && a->tv_nsec < b->tv_nsec);
}

double
bu_now(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

void
bu_deadline(struct timespec *t, double seconds)
{
	long ns = (long)(seconds * 1e9);

	clock_gettime(CLOCK_MONOTONIC, t);
	t->tv_sec += ns / 1000000000L;
	t->tv_nsec += ns % 1000000000L;
	if (t->tv_nsec >= 1000000000L) {
		t->tv_sec++;
		t->tv_nsec -= 1000000000L;
	}
}

static bool
bad(const char *prog, const char *opt, const char *s)
{
	fprintf(stderr, "%s: bad --%s %s\n", prog, opt, s);
	return false;
}

bool
bu_opt_seconds(const char *prog, const char *s, double *out)
{
	char *end;

	*out = strtod(s, &end);
	if (end == s || *end != '\0' || !(*out > 0 && *out <= 600))
		return bad(prog, "seconds", s);
	return true;
}

bool
bu_opt_ops(const char *prog, const char *s, unsigned long *out)
{
	char *end;

	errno = 0;
	*out = strtoul(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || *out == 0 || *out > 100000000UL)
		return bad(prog, "ops", s);
	return true;
}

bool
bu_opt_rounds(const char *prog, const char *s, unsigned *out)
{
	unsigned long v;
	char *end;

	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || v == 0 || v > BU_MAX_ROUNDS)
		return bad(prog, "rounds", s);
	*out = (unsigned)v;
	return true;
}

int
bu_cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

double
bu_median(const double *v, unsigned n)
{
	double s[BU_MAX_ROUNDS];

	if (n == 0 || n > BU_MAX_ROUNDS)
		return 0;
	memcpy(s, v, n * sizeof(*v));
	qsort(s, n, sizeof(*s), bu_cmp_double);
	return n % 2 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
}

double
bu_median_ratio(const double *num, const double *den, unsigned n)
{
	double r[BU_MAX_ROUNDS];
	unsigned i;

	if (n == 0 || n > BU_MAX_ROUNDS)
		return 0;
	for (i = 0; i < n; i++)
		r[i] = den[i] > 0 ? num[i] / den[i] : 0;
	return bu_median(r, n);
}

double
bu_quantile(double *v, unsigned n, double q)
{
	unsigned k;

	qsort(v, n, sizeof(*v), bu_cmp_double);
	k = (unsigned)(q * n + 0.999999);
	if (k < 1)
		k = 1;
	if (k > n)
		k = n;
	return v[k - 1];
}

int
bu_parse_threads(const char *s, unsigned max, unsigned *threads, unsigned max_n, unsigned *n)
{
	char *end;
	unsigned long v;

	*n = 0;
	while (*s != '\0') {
		errno = 0;
		v = strtoul(s, &end, 10);
		if (errno != 0 || end == s || v == 0 || v > max || *n == max_n)
			return -1;
		threads[(*n)++] = (unsigned)v;
		s = end;
		if (*s == ',')
			s++;
		else if (*s != '\0')
			return -1;
	}
	return *n > 0 ? 0 : -1;
}

CK_RV
bu_raw_session(const cubeid_token *tok, CK_SESSION_HANDLE *s)
{
	*s = CK_INVALID_HANDLE;
	return tok->f->C_OpenSession(tok->slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, s);
}

CK_RV
bu_raw_sign(const cubeid_token *tok, CK_SESSION_HANDLE s, CK_MECHANISM_TYPE mech,
            const cubeid_key *key, const uint8_t *in, size_t in_len, uint8_t *sig,
            CK_ULONG *sig_len)
{
	CK_MECHANISM m = {mech, NULL, 0};
	CK_RV rv;

	if ((rv = tok->f->C_SignInit(s, &m, p11_key_handle(key))) != CKR_OK)
		return rv;
	return tok->f->C_Sign(s, (CK_BYTE_PTR)in, (CK_ULONG)in_len, sig, sig_len);
}
