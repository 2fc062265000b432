/*
 * Reading a key's CK_BBOOL attributes back from the token, for tests that
 * check what a key may be used for.  Header-only; needs the internal
 * pkcs11/p11-internal.h (the key's object handles).
 */
#ifndef CUBEID_TESTS_P11_ATTR_UTIL_H
#define CUBEID_TESTS_P11_ATTR_UTIL_H

#include <check.h>
#include <stdbool.h>

#include "pkcs11/p11-internal.h"

/* The attribute t of k's private (pub false) or public half: CK_TRUE,
 * CK_FALSE, or 0xff when the token does not have it. */
static inline int
pat_bool(cubeid_key *k, bool pub, CK_ATTRIBUTE_TYPE t)
{
	CK_BBOOL v = 0xff;
	CK_ATTRIBUTE a = {t, &v, sizeof(v)};
	CK_SESSION_HANDLE s;
	CK_OBJECT_HANDLE h = pub ? k->pub : p11_key_handle(k);
	CK_RV rv;

	ck_assert(h != CK_INVALID_HANDLE);
	ck_assert_int_eq(p11_session_get(k->tok, &s), CUBEID_OK);
	rv = k->tok->f->C_GetAttributeValue(s, h, &a, 1);
	p11_session_put(k->tok, s, false);
	return rv == CKR_OK ? v : 0xff;
}

/* A signing key: the private half signs and nothing else, the public half
 * verifies and nothing else.  strict false (the TPM lane) skips
 * CKA_DECRYPT/CKA_ENCRYPT and the recover forms, which tpm2-pkcs11 will not
 * set false at generation. */
static inline void
pat_assert_sign_only(cubeid_key *k, bool strict)
{
	ck_assert_int_eq(pat_bool(k, false, CKA_SIGN), CK_TRUE);
	ck_assert_int_ne(pat_bool(k, false, CKA_UNWRAP), CK_TRUE);
	ck_assert_int_ne(pat_bool(k, false, CKA_DERIVE), CK_TRUE);
	ck_assert(k->pub != CK_INVALID_HANDLE);
	ck_assert_int_eq(pat_bool(k, true, CKA_VERIFY), CK_TRUE);
	ck_assert_int_ne(pat_bool(k, true, CKA_WRAP), CK_TRUE);
	if (!strict)
		return;
	ck_assert_int_ne(pat_bool(k, false, CKA_DECRYPT), CK_TRUE);
	ck_assert_int_ne(pat_bool(k, false, CKA_SIGN_RECOVER), CK_TRUE);
	ck_assert_int_ne(pat_bool(k, true, CKA_ENCRYPT), CK_TRUE);
	ck_assert_int_ne(pat_bool(k, true, CKA_VERIFY_RECOVER), CK_TRUE);
}

#endif
