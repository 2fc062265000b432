/*
 * CKR_* codes at the boundary: every PKCS#11 return value is translated
 * here into one cubeid error code, and its name logged.
 */
#include "config.h"

#include "pkcs11/p11-internal.h"

#include <cubeid/log.h>

#include <stdio.h>
#include <string.h>

#include "pkcs11/p11-names.h"

const char *
p11_rv_name(CK_RV rv)
{
	size_t i;

	for (i = 0; i < sizeof(ckr_names) / sizeof(ckr_names[0]); i++)
		if (ckr_names[i].rv == rv)
			return ckr_names[i].name;
	return (rv & CKR_VENDOR_DEFINED) ? "CKR_VENDOR_DEFINED" : "CKR_(unknown)";
}

const char *
p11_mech_name(CK_MECHANISM_TYPE m)
{
	size_t i;

	for (i = 0; i < sizeof(ckm_names) / sizeof(ckm_names[0]); i++)
		if (ckm_names[i].m == m)
			return ckm_names[i].name;
	return NULL;
}

int
p11_err(CK_RV rv)
{
	switch (rv) {
	case CKR_OK:
		return CUBEID_OK;
	case CKR_HOST_MEMORY:
	case CKR_DEVICE_MEMORY:
		return CUBEID_ERR_NOMEM;
	case CKR_ARGUMENTS_BAD:
		return CUBEID_ERR_INVALID_ARG;
	case CKR_BUFFER_TOO_SMALL:
		return CUBEID_ERR_BUFFER_TOO_SMALL;
	case CKR_PIN_INCORRECT:
	case CKR_PIN_INVALID:
	case CKR_PIN_LEN_RANGE:
		return CUBEID_ERR_P11_PIN_INCORRECT;
	case CKR_PIN_LOCKED:
	case CKR_PIN_EXPIRED:
		return CUBEID_ERR_P11_PIN_LOCKED;
	case CKR_USER_NOT_LOGGED_IN:
	case CKR_USER_PIN_NOT_INITIALIZED:
		return CUBEID_ERR_P11_NOT_LOGGED_IN;
	case CKR_SESSION_HANDLE_INVALID:
	case CKR_SESSION_CLOSED:
	case CKR_SESSION_COUNT:
		return CUBEID_ERR_P11_SESSION;
	case CKR_DEVICE_REMOVED:
	case CKR_DEVICE_ERROR:
	case CKR_TOKEN_NOT_PRESENT:
	case CKR_TOKEN_NOT_RECOGNIZED:
	case CKR_SLOT_ID_INVALID:
	case CKR_CRYPTOKI_NOT_INITIALIZED:
		return CUBEID_ERR_P11_DEVICE;
	case CKR_MECHANISM_INVALID:
	case CKR_MECHANISM_PARAM_INVALID:
	case CKR_DOMAIN_PARAMS_INVALID:
	case CKR_CURVE_NOT_SUPPORTED:
		return CUBEID_ERR_P11_MECHANISM;
	case CKR_KEY_HANDLE_INVALID:
	case CKR_OBJECT_HANDLE_INVALID:
	case CKR_KEY_TYPE_INCONSISTENT:
	case CKR_KEY_FUNCTION_NOT_PERMITTED:
	case CKR_KEY_SIZE_RANGE:
		return CUBEID_ERR_P11_KEY;
	case CKR_ATTRIBUTE_SENSITIVE:
	case CKR_KEY_UNEXTRACTABLE:
		return CUBEID_ERR_P11_SENSITIVE;
	case CKR_ATTRIBUTE_TYPE_INVALID:
	case CKR_ATTRIBUTE_VALUE_INVALID:
	case CKR_ATTRIBUTE_READ_ONLY:
	case CKR_TEMPLATE_INCOMPLETE:
	case CKR_TEMPLATE_INCONSISTENT:
		return CUBEID_ERR_P11_TEMPLATE;
	case CKR_TOKEN_WRITE_PROTECTED:
	case CKR_SESSION_READ_ONLY:
		return CUBEID_ERR_P11_READ_ONLY;
	case CKR_FUNCTION_NOT_SUPPORTED:
		return CUBEID_ERR_UNSUPPORTED;
	case CKR_FUNCTION_REJECTED:
	case CKR_OPERATION_ACTIVE:
	case CKR_SESSION_PARALLEL_NOT_SUPPORTED:
		return CUBEID_ERR_P11_BUSY;
	case CKR_DATA_LEN_RANGE:
	case CKR_DATA_INVALID:
		return CUBEID_ERR_INVALID_ARG;
	default:
		return CUBEID_ERR_P11_GENERAL;
	}
}

int
p11_fail(const char *what, CK_RV rv)
{
	cubeid_error("%s: %s (0x%lx)", what, p11_rv_name(rv), (unsigned long)rv);
	return p11_err(rv);
}

void
p11_strfield(char *dst, size_t dstlen, const CK_UTF8CHAR *src, size_t srclen)
{
	size_t n = srclen < dstlen - 1 ? srclen : dstlen - 1;

	memcpy(dst, src, n);
	while (n > 0 && (dst[n - 1] == ' ' || dst[n - 1] == '\0'))
		n--;
	dst[n] = '\0';
}
