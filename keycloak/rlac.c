/*
 * Resource-level access control as AgentCube does it: the owner of a
 * sandbox is the sub of the creator's validated token (annotation
 * agentcube.io/owner), labelled by the first 63 hex characters of its
 * SHA-256 (agentcube.io/owner-hash); a caller reaches a sandbox when its sub
 * is the owner or it has the admin role; a sandbox without an owner is
 * reachable by admins only (fail closed).
 */
#include "config.h"

#include <cubeid/oidc.h>

#include <stdio.h>
#include <string.h>

#include <openssl/sha.h>

const char *
cubeid_rlac_owner(const cubeid_oidc_claims *c)
{
	return cubeid_oidc_claims_sub(c);
}

int
cubeid_rlac_owner_hash(const char *owner, char out[CUBEID_RLAC_HASH_LEN + 1])
{
	static const char hex[] = "0123456789abcdef";
	uint8_t md[SHA256_DIGEST_LENGTH];
	size_t i;

	out[0] = '\0';
	if (owner == NULL || owner[0] == '\0')
		return CUBEID_ERR_INVALID_ARG;
	SHA256((const uint8_t *)owner, strlen(owner), md);
	for (i = 0; i < SHA256_DIGEST_LENGTH; i++) {
		out[2 * i] = hex[md[i] >> 4];
		if (2 * i + 1 < CUBEID_RLAC_HASH_LEN)
			out[2 * i + 1] = hex[md[i] & 15];
		else
			break;
	}
	out[CUBEID_RLAC_HASH_LEN] = '\0';
	return CUBEID_OK;
}

int
cubeid_rlac_check(const cubeid_oidc_claims *c, const char *owner)
{
	const char *sub = cubeid_oidc_claims_sub(c);

	if (c == NULL)
		return CUBEID_ERR_FORBIDDEN;
	if (owner != NULL && owner[0] != '\0' && sub != NULL && strcmp(sub, owner) == 0)
		return CUBEID_OK;
	if (cubeid_oidc_claims_has_role(c, CUBEID_RLAC_ADMIN_ROLE))
		return CUBEID_OK;
	return CUBEID_ERR_FORBIDDEN;
}
