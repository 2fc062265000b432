/* libFuzzer target: SPIFFE ID parsing and the helpers built on it. */
#include "config.h"

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cubeid/spiffe.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *s = (const char *)data;
	cubeid_spiffe_id *id = NULL, *again = NULL;
	cubeid_spiffe_reason why, why2;
	int rc, rc2;

	rc = cubeid_spiffe_id_parse(s, size, &id, &why);
	rc2 = cubeid_spiffe_id_validate(s, size, &why2);
	if (rc != rc2 || why != why2)
		__builtin_trap();
	if (rc == CUBEID_OK) {
		/* a parsed ID round-trips through its parts, byte for byte */
		if (cubeid_spiffe_id_len(id) != size ||
		    memcmp(cubeid_spiffe_id_string(id), s, size) != 0)
			__builtin_trap();
		if (cubeid_spiffe_id_from_parts(cubeid_spiffe_id_trust_domain(id),
		                                cubeid_spiffe_id_path(id), &again,
		                                NULL) != CUBEID_OK)
			__builtin_trap();
		if (!cubeid_spiffe_id_equal(id, again))
			__builtin_trap();
	} else if (id != NULL) {
		__builtin_trap();
	}
	cubeid_spiffe_id_free(again);
	cubeid_spiffe_id_free(id);
	(void)cubeid_trust_domain_validate(s, size, NULL);
	(void)cubeid_spiffe_path_validate(s, size, NULL);
	return 0;
}
