/* libFuzzer target: JWKS and SPIFFE bundle parsing, and emit/parse round trips. */
#include "config.h"

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cubeid/jwt.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *doc = (const char *)data;
	cubeid_jwt_bundle *jb = NULL, *jb2 = NULL;
	cubeid_spiffe_bundle *sb = NULL, *sb2 = NULL;
	char *out = NULL;
	size_t len;

	if (cubeid_jwt_bundle_parse_jwks("example.org", doc, size, &jb) == CUBEID_OK) {
		/* what we parsed, we can emit, and it parses back the same */
		if (cubeid_jwt_bundle_to_jwks(jb, &out, &len) != CUBEID_OK ||
		    cubeid_jwt_bundle_parse_jwks("example.org", out, len, &jb2) != CUBEID_OK ||
		    cubeid_jwt_bundle_count(jb) != cubeid_jwt_bundle_count(jb2))
			__builtin_trap();
		free(out);
		out = NULL;
	}
	if (cubeid_spiffe_bundle_parse("example.org", doc, size, &sb) == CUBEID_OK) {
		if (cubeid_spiffe_bundle_emit(sb, &out, &len) != CUBEID_OK ||
		    cubeid_spiffe_bundle_parse("example.org", out, len, &sb2) != CUBEID_OK ||
		    cubeid_spiffe_bundle_x509_count(sb) != cubeid_spiffe_bundle_x509_count(sb2))
			__builtin_trap();
		free(out);
	}
	cubeid_jwt_bundle_free(jb);
	cubeid_jwt_bundle_free(jb2);
	cubeid_spiffe_bundle_free(sb);
	cubeid_spiffe_bundle_free(sb2);
	return 0;
}
