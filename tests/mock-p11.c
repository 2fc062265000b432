/*
 * A fault-injecting PKCS#11 shim, for faults a real token cannot be made to
 * produce on demand (CKR_DEVICE_REMOVED in the middle of a signature, a
 * missing mechanism).  Everything else goes to the real module named by
 * $CUBEID_MOCK_REAL_MODULE (SoftHSM2 in the tests): this is a wrapper
 * around a real token, not a pretend token.
 *
 * Tests steer it through the exported mock_p11_* functions, reached with
 * dlopen() of this same file.
 */
#include "config.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <p11-kit/pkcs11.h>

static CK_FUNCTION_LIST real_copy;
static CK_FUNCTION_LIST_PTR real;
static CK_FUNCTION_LIST shim;

static int fail_sign_count;
static CK_RV fail_sign_rv;
static CK_MECHANISM_TYPE hidden_mech = (CK_MECHANISM_TYPE)-1;
static int login_calls;
static int sign_calls;
/* A token outage: while outage_rv is set, sessions, searches and
 * signatures fail with it.  Like SoftHSM2, which reads its token directory
 * in C_Initialize, a token that came back (token_back) is seen only after
 * the next C_Initialize. */
static CK_RV outage_rv;
static int token_back;
static int init_calls;

void mock_p11_fail_sign(int count, CK_RV rv);
void mock_p11_hide_mechanism(CK_MECHANISM_TYPE m);
int mock_p11_login_calls(void);
int mock_p11_sign_calls(void);
void mock_p11_reset(void);
void mock_p11_outage(CK_RV rv);
void mock_p11_token_back(void);
int mock_p11_init_calls(void);

void
mock_p11_outage(CK_RV rv)
{
	__atomic_store_n(&token_back, 0, __ATOMIC_SEQ_CST);
	__atomic_store_n(&outage_rv, rv, __ATOMIC_SEQ_CST);
}

void
mock_p11_token_back(void)
{
	__atomic_store_n(&token_back, 1, __ATOMIC_SEQ_CST);
}

int
mock_p11_init_calls(void)
{
	return __atomic_load_n(&init_calls, __ATOMIC_SEQ_CST);
}

void
mock_p11_fail_sign(int count, CK_RV rv)
{
	__atomic_store_n(&fail_sign_rv, rv, __ATOMIC_SEQ_CST);
	__atomic_store_n(&fail_sign_count, count, __ATOMIC_SEQ_CST);
}

void
mock_p11_hide_mechanism(CK_MECHANISM_TYPE m)
{
	hidden_mech = m;
}

int
mock_p11_login_calls(void)
{
	return __atomic_load_n(&login_calls, __ATOMIC_SEQ_CST);
}

int
mock_p11_sign_calls(void)
{
	return __atomic_load_n(&sign_calls, __ATOMIC_SEQ_CST);
}

void
mock_p11_reset(void)
{
	fail_sign_count = 0;
	hidden_mech = (CK_MECHANISM_TYPE)-1;
	login_calls = 0;
	sign_calls = 0;
	outage_rv = CKR_OK;
	token_back = 0;
	init_calls = 0;
}

static CK_RV
outage(void)
{
	return __atomic_load_n(&outage_rv, __ATOMIC_SEQ_CST);
}

static CK_RV
shim_Initialize(CK_VOID_PTR args)
{
	CK_RV rv = real->C_Initialize(args);

	__atomic_add_fetch(&init_calls, 1, __ATOMIC_SEQ_CST);
	if (rv == CKR_OK && __atomic_exchange_n(&token_back, 0, __ATOMIC_SEQ_CST))
		__atomic_store_n(&outage_rv, CKR_OK, __ATOMIC_SEQ_CST);
	return rv;
}

static CK_RV
shim_OpenSession(CK_SLOT_ID slot, CK_FLAGS fl, CK_VOID_PTR app, CK_NOTIFY n,
                 CK_SESSION_HANDLE_PTR s)
{
	if (outage() != CKR_OK)
		return outage();
	return real->C_OpenSession(slot, fl, app, n, s);
}

static CK_RV
shim_GetSessionInfo(CK_SESSION_HANDLE s, CK_SESSION_INFO_PTR info)
{
	if (outage() != CKR_OK)
		return outage();
	return real->C_GetSessionInfo(s, info);
}

static CK_RV
shim_FindObjectsInit(CK_SESSION_HANDLE s, CK_ATTRIBUTE_PTR t, CK_ULONG n)
{
	if (outage() != CKR_OK)
		return outage();
	return real->C_FindObjectsInit(s, t, n);
}

static CK_RV
shim_SignInit(CK_SESSION_HANDLE s, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE k)
{
	if (outage() != CKR_OK)
		return outage();
	return real->C_SignInit(s, m, k);
}

static CK_RV
shim_Login(CK_SESSION_HANDLE s, CK_USER_TYPE u, CK_UTF8CHAR_PTR pin, CK_ULONG len)
{
	__atomic_add_fetch(&login_calls, 1, __ATOMIC_SEQ_CST);
	return real->C_Login(s, u, pin, len);
}

static CK_RV
shim_Sign(CK_SESSION_HANDLE s, CK_BYTE_PTR d, CK_ULONG dl, CK_BYTE_PTR sig, CK_ULONG_PTR sl)
{
	__atomic_add_fetch(&sign_calls, 1, __ATOMIC_SEQ_CST);
	if (__atomic_load_n(&fail_sign_count, __ATOMIC_SEQ_CST) > 0 &&
	    __atomic_sub_fetch(&fail_sign_count, 1, __ATOMIC_SEQ_CST) >= 0) {
		CK_BYTE dummy[512];
		CK_ULONG dl2 = sizeof(dummy);
		/* End the operation the way a failing device would. */
		(void)real->C_Sign(s, d, dl, dummy, &dl2);
		if (fail_sign_rv == CKR_DEVICE_REMOVED ||
		    fail_sign_rv == CKR_SESSION_HANDLE_INVALID)
			(void)real->C_CloseSession(s);
		return fail_sign_rv;
	}
	return real->C_Sign(s, d, dl, sig, sl);
}

static CK_RV
shim_GetMechanismList(CK_SLOT_ID slot, CK_MECHANISM_TYPE_PTR list, CK_ULONG_PTR n)
{
	CK_RV rv = real->C_GetMechanismList(slot, list, n);
	CK_ULONG i, j;

	if (rv != CKR_OK || list == NULL)
		return rv;
	for (i = j = 0; i < *n; i++)
		if (list[i] != hidden_mech)
			list[j++] = list[i];
	*n = j;
	return rv;
}

/* A hidden mechanism is gone from the info call too, as on a token that
 * really lacks it. */
static CK_RV
shim_GetMechanismInfo(CK_SLOT_ID slot, CK_MECHANISM_TYPE m, CK_MECHANISM_INFO_PTR info)
{
	if (m == hidden_mech)
		return CKR_MECHANISM_INVALID;
	return real->C_GetMechanismInfo(slot, m, info);
}

CK_RV C_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR out);

CK_RV
C_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR out)
{
	const char *path = getenv("CUBEID_MOCK_REAL_MODULE");
	CK_C_GetFunctionList getfl;
	void *dl;

	if (real == NULL) {
		if (path == NULL || (dl = dlopen(path, RTLD_NOW | RTLD_LOCAL)) == NULL)
			return CKR_GENERAL_ERROR;
		if ((getfl = (CK_C_GetFunctionList)dlsym(dl, "C_GetFunctionList")) == NULL ||
		    getfl(&real) != CKR_OK)
			return CKR_GENERAL_ERROR;
		real_copy = *real;
		shim = real_copy;
		shim.C_Login = shim_Login;
		shim.C_Initialize = shim_Initialize;
		shim.C_OpenSession = shim_OpenSession;
		shim.C_GetSessionInfo = shim_GetSessionInfo;
		shim.C_FindObjectsInit = shim_FindObjectsInit;
		shim.C_SignInit = shim_SignInit;
		shim.C_Sign = shim_Sign;
		shim.C_GetMechanismList = shim_GetMechanismList;
		shim.C_GetMechanismInfo = shim_GetMechanismInfo;
	}
	*out = &shim;
	return CKR_OK;
}
