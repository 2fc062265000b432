/*
 * What `cubeid token info` shows (pkcs11/p11-info.c): a PKCS#11 module, its
 * slots and one token, as JSON, read without logging in.  Conventions:
 * docs/sdk.md, "Conventions".
 */
#ifndef CUBEID_TOKEN_INFO_H
#define CUBEID_TOKEN_INFO_H

#include <jansson.h>

#include <cubeid/error.h>
#include <cubeid/token.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The module at module_path, loaded as the token layer loads it, and every
 * slot, present token or not: {"module": {...}, "slots": [...]}.  New object
 * in *out (caller decrefs).  CUBEID_ERR_P11_MODULE or
 * CUBEID_ERR_P11_MODULE_DENIED if the module does not load; the PKCS#11
 * error if it cannot list its slots. */
int cubeid_token_info_module(const char *module_path, json_t **out);

/* Add "token" (tok's details and mechanisms) to info, and mark each slot
 * "selected" if it holds tok. */
int cubeid_token_info_add_token(json_t *info, const cubeid_token *tok);

#ifdef __cplusplus
}
#endif

#endif
