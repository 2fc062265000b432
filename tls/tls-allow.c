/*
 * Allow-lists of SPIFFE IDs for the TLS loader (<cubeid/tls.h>): an entry
 * is an ID, a trust domain, or a path prefix of whole segments ending in
 * a slash and a star.
 */
#include "config.h"

#include <string.h>

#include "tls/tls-internal.h"

#define SCHEME_LEN (sizeof(CUBEID_SPIFFE_SCHEME) - 1)

int
cubeid_tls_allow_validate(const char *entry, const char **why)
{
	cubeid_spiffe_reason r = CUBEID_SPIFFE_OK;
	size_t len;

	if (why != NULL)
		*why = "ok";
	if (entry == NULL) {
		if (why != NULL)
			*why = "empty entry";
		return CUBEID_ERR_CONFIG;
	}
	len = strlen(entry);
	/* "spiffe://td/prefix/" then "*": a path prefix of whole segments */
	if (len >= 2 && strcmp(entry + len - 2, "/*") == 0)
		len -= 2;
	if (cubeid_spiffe_id_validate(entry, len, &r) != CUBEID_OK) {
		if (why != NULL)
			*why = cubeid_spiffe_reason_str(r);
		return CUBEID_ERR_CONFIG;
	}
	return CUBEID_OK;
}

bool
cubeid_tls_allow_match(const char *entry, const cubeid_spiffe_id *id)
{
	const char *s;
	size_t len, slen;

	if (entry == NULL || id == NULL || cubeid_tls_allow_validate(entry, NULL) != CUBEID_OK)
		return false;
	s = cubeid_spiffe_id_string(id);
	slen = cubeid_spiffe_id_len(id);
	len = strlen(entry);
	if (len >= 2 && strcmp(entry + len - 2, "/*") == 0) /* prefix, keeping the '/' */
		return slen > len - 1 && strncmp(s, entry, len - 1) == 0;
	if (strchr(entry + SCHEME_LEN, '/') == NULL) /* a trust domain: IDs are canonical */
		return slen > len && strncmp(s, entry, len) == 0 && s[len] == '/';
	return strcmp(s, entry) == 0;
}
