/*
 * A wire-format walk of ValidateJWTSVIDResponse and the well-known types
 * in it (google/protobuf/struct.proto), to bound the nesting before
 * protobuf-c unpacks it.  Only the fields that hold messages are entered;
 * every other field is skipped by its wire type.
 */
#include "config.h"

#include "common/pb-depth.h"

#include <cubeid/error.h>

#include <stdbool.h>

enum kind { K_RESPONSE, K_STRUCT, K_ENTRY, K_VALUE, K_LIST, K_NONE };

/* The message kind field `field` of a `k` holds, or K_NONE. */
static enum kind
child_kind(enum kind k, uint64_t field)
{
	switch (k) {
	case K_RESPONSE: /* 1 spiffe_id, 2 claims */
		return field == 2 ? K_STRUCT : K_NONE;
	case K_STRUCT: /* 1 fields (map<string, Value>) */
		return field == 1 ? K_ENTRY : K_NONE;
	case K_ENTRY: /* 1 key, 2 value */
		return field == 2 ? K_VALUE : K_NONE;
	case K_VALUE: /* 5 struct_value, 6 list_value */
		return field == 5 ? K_STRUCT : field == 6 ? K_LIST : K_NONE;
	case K_LIST: /* 1 values */
		return field == 1 ? K_VALUE : K_NONE;
	default:
		return K_NONE;
	}
}

static bool
varint(const uint8_t **p, const uint8_t *end, uint64_t *v)
{
	unsigned shift;

	*v = 0;
	for (shift = 0; shift < 64 && *p < end; shift += 7) {
		uint8_t b = *(*p)++;

		*v |= (uint64_t)(b & 0x7f) << shift;
		if (!(b & 0x80))
			return true;
	}
	return false;
}

static int
walk(const uint8_t *p, size_t n, enum kind k, unsigned depth, unsigned max_depth)
{
	const uint8_t *end;
	uint64_t key, len;
	int r;

	if (depth > max_depth)
		return CUBEID_ERR_TOO_LARGE;
	/* An empty message may come as (NULL, 0): NULL + 0 is undefined. */
	if (n == 0)
		return 0;
	end = p + n;
	while (p < end) {
		if (!varint(&p, end, &key) || (key >> 3) == 0)
			return CUBEID_ERR_PARSE;
		switch (key & 7) {
		case 0: /* varint */
			if (!varint(&p, end, &len))
				return CUBEID_ERR_PARSE;
			break;
		case 1: /* fixed64 */
			if ((size_t)(end - p) < 8)
				return CUBEID_ERR_PARSE;
			p += 8;
			break;
		case 5: /* fixed32 */
			if ((size_t)(end - p) < 4)
				return CUBEID_ERR_PARSE;
			p += 4;
			break;
		case 2: /* length-delimited */
			if (!varint(&p, end, &len) || len > (uint64_t)(end - p))
				return CUBEID_ERR_PARSE;
			if (child_kind(k, key >> 3) != K_NONE &&
			    (r = walk(p, (size_t)len, child_kind(k, key >> 3), depth + 1,
			              max_depth)) != 0)
				return r;
			p += len;
			break;
		default: /* groups (3, 4) are not in these messages */
			return CUBEID_ERR_PARSE;
		}
	}
	return 0;
}

int
pb_validate_response_depth(const uint8_t *p, size_t n, unsigned max_depth)
{
	if (p == NULL && n > 0)
		return CUBEID_ERR_INVALID_ARG;
	return walk(p, n, K_RESPONSE, 0, max_depth);
}
