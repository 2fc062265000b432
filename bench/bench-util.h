/*
 * What the benchmarks in bench/ share: monotonic clocks, the medians of
 * rounds and of per-round ratios (the way every bench here reports, so
 * that a noisy machine moves the numbers as little as it can), quantiles
 * for latencies, thread-count lists, and the raw PKCS#11 signature that is
 * every bench's baseline (C_SignInit + C_Sign on a session of the
 * caller's own).
 */
#ifndef CUBEID_BENCH_UTIL_H
#define CUBEID_BENCH_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <cubeid/token.h>

#include "pkcs11/p11-internal.h"

#define BU_MAX_ROUNDS 31 /* rounds of a bench at most */

/* b - a, in seconds. */
double bu_ts_diff(const struct timespec *a, const struct timespec *b);
/* a is before b. */
bool bu_ts_before(const struct timespec *a, const struct timespec *b);
/* CLOCK_MONOTONIC, in seconds. */
double bu_now(void);

/* *t = now (CLOCK_MONOTONIC) + seconds: the end of a timed case. */
void bu_deadline(struct timespec *t, double seconds);

/* The common options' values, checked: --seconds (0 < S <= 600), --ops
 * (1..1e8), --rounds (1..BU_MAX_ROUNDS).  On a bad value they print
 * "PROG: bad --OPT VALUE" and return false. */
bool bu_opt_seconds(const char *prog, const char *s, double *out);
bool bu_opt_ops(const char *prog, const char *s, unsigned long *out);
bool bu_opt_rounds(const char *prog, const char *s, unsigned *out);

/* qsort() order of doubles. */
int bu_cmp_double(const void *a, const void *b);
/* The median of v[0..n), 1 <= n <= BU_MAX_ROUNDS (v is not changed). */
double bu_median(const double *v, unsigned n);
/* The median over the rounds of num[r] / den[r] (0 where den[r] is 0). */
double bu_median_ratio(const double *num, const double *den, unsigned n);
/* The q-quantile (nearest rank) of v[0..n), n >= 1; sorts v. */
double bu_quantile(double *v, unsigned n, double q);

/* "1,16" into threads[0..*n): at most max_n counts, each 1..max. */
int bu_parse_threads(const char *s, unsigned max, unsigned *threads, unsigned max_n, unsigned *n);

/* A read-write session of the caller's own on tok's slot (the token is
 * logged in already: the login is per token). */
CK_RV bu_raw_session(const cubeid_token *tok, CK_SESSION_HANDLE *s);
/* The raw baseline: C_SignInit(mech, key) + C_Sign over in[0..in_len)
 * (a digest, or a DigestInfo for CKM_RSA_PKCS) on session s.  *sig_len
 * is sig's size on entry, the signature's length on return. */
CK_RV bu_raw_sign(const cubeid_token *tok, CK_SESSION_HANDLE s, CK_MECHANISM_TYPE mech,
                  const cubeid_key *key, const uint8_t *in, size_t in_len, uint8_t *sig,
                  CK_ULONG *sig_len);

#endif
