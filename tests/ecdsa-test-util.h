/*
 * ECDSA JWS test helpers, header-only: the high-S twin of a token (s
 * replaced by n - s, which verifies just as well with plain ECDSA) and
 * whether a token's signature is low-S.  The curve follows from the raw
 * r||s length: 64 bytes P-256, 96 P-384, 132 P-521.
 */
#ifndef CUBEID_TESTS_ECDSA_TEST_UTIL_H
#define CUBEID_TESTS_ECDSA_TEST_UTIL_H

#include <check.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/obj_mac.h>

#include <cubeid/jwt.h>

/* The token's signature, decoded (caller frees), its curve's order (caller
 * frees) and field size. */
static inline uint8_t *
etu_sig(const char *tok, size_t *n, BIGNUM **order, size_t *field)
{
	const char *dot = strrchr(tok, '.');
	uint8_t *sig = NULL;
	EC_GROUP *g;
	int nid;

	ck_assert_ptr_nonnull(dot);
	ck_assert_int_eq(cubeid_b64url_decode_alloc(dot + 1, strlen(dot + 1), &sig, n), 0);
	nid = *n == 64 ? NID_X9_62_prime256v1 : *n == 96 ? NID_secp384r1 : NID_secp521r1;
	ck_assert(*n == 64 || *n == 96 || *n == 132);
	*field = *n / 2;
	g = EC_GROUP_new_by_curve_name(nid);
	ck_assert_ptr_nonnull(g);
	*order = BN_dup(EC_GROUP_get0_order(g));
	EC_GROUP_free(g);
	return sig;
}

/* tok with s replaced by n - s; caller frees. */
static inline char *
etu_flip_s(const char *tok)
{
	size_t n, field, head = (size_t)(strrchr(tok, '.') - tok);
	BIGNUM *order, *s;
	uint8_t *sig = etu_sig(tok, &n, &order, &field);
	char *enc = NULL, *out;

	s = BN_bin2bn(sig + field, (int)field, NULL);
	ck_assert(BN_sub(s, order, s) == 1);
	ck_assert_int_eq(BN_bn2binpad(s, sig + field, (int)field), (int)field);
	ck_assert_int_eq(cubeid_b64url_encode_alloc(sig, n, &enc), 0);
	out = malloc(head + 1 + strlen(enc) + 1);
	ck_assert_ptr_nonnull(out);
	sprintf(out, "%.*s.%s", (int)head, tok, enc);
	free(enc);
	free(sig);
	BN_free(s);
	BN_free(order);
	return out;
}

/* Whether tok's signature has s <= n/2. */
static inline bool
etu_low_s(const char *tok)
{
	size_t n, field;
	BIGNUM *order, *s;
	uint8_t *sig = etu_sig(tok, &n, &order, &field);
	bool low;

	s = BN_bin2bn(sig + field, (int)field, NULL);
	ck_assert(BN_rshift1(order, order) == 1);
	low = BN_cmp(s, order) <= 0;
	BN_free(s);
	BN_free(order);
	free(sig);
	return low;
}

#endif
