/*
 * Strict base64 codecs (RFC 4648).
 *
 * base64url (section 5) without padding, as JWS compact serialization and
 * JWK members use it; and standard base64 (section 4) with padding, as the
 * JWK x5c member uses it.  Decoding is strict: no whitespace, no characters
 * outside the alphabet, padding only where the variant requires it, and the
 * unused bits of the last character must be zero, so that every byte string
 * has exactly one accepted encoding.
 */
#include "config.h"

#include <cubeid/b64url.h>

#include <stdlib.h>
#include <string.h>

static const char alpha_url[64] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
static const char alpha_std[64] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* Reverse tables: 0..63, or 0xff for a byte outside the alphabet. */
static const unsigned char *
rev_table(int url)
{
	static unsigned char rev_url[256], rev_std[256];
	static int ready; /* idempotent init; a benign race writes equal bytes */

	if (!__atomic_load_n(&ready, __ATOMIC_ACQUIRE)) {
		int i;
		memset(rev_url, 0xff, sizeof(rev_url));
		memset(rev_std, 0xff, sizeof(rev_std));
		for (i = 0; i < 64; i++) {
			rev_url[(unsigned char)alpha_url[i]] = (unsigned char)i;
			rev_std[(unsigned char)alpha_std[i]] = (unsigned char)i;
		}
		__atomic_store_n(&ready, 1, __ATOMIC_RELEASE);
	}
	return url ? rev_url : rev_std;
}

size_t
cubeid_b64url_len(size_t n)
{
	return n / 3 * 4 + (n % 3 == 0 ? 0 : n % 3 + 1);
}

static size_t
encode(const char *alpha, int pad, const uint8_t *in, size_t len, char *out)
{
	size_t i, o = 0;

	for (i = 0; i + 3 <= len; i += 3) {
		uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
		out[o++] = alpha[v >> 18];
		out[o++] = alpha[(v >> 12) & 63];
		out[o++] = alpha[(v >> 6) & 63];
		out[o++] = alpha[v & 63];
	}
	if (len - i == 1) {
		uint32_t v = (uint32_t)in[i] << 16;
		out[o++] = alpha[v >> 18];
		out[o++] = alpha[(v >> 12) & 63];
		if (pad) {
			out[o++] = '=';
			out[o++] = '=';
		}
	} else if (len - i == 2) {
		uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
		out[o++] = alpha[v >> 18];
		out[o++] = alpha[(v >> 12) & 63];
		out[o++] = alpha[(v >> 6) & 63];
		if (pad)
			out[o++] = '=';
	}
	out[o] = '\0';
	return o;
}

int
cubeid_b64url_encode(const uint8_t *in, size_t len, char *out, size_t out_size, size_t *out_len)
{
	size_t need;

	if (out_len != NULL)
		*out_len = 0;
	if ((in == NULL && len != 0) || out == NULL)
		return CUBEID_ERR_INVALID_ARG;
	if (len > SIZE_MAX / 2)
		return CUBEID_ERR_TOO_LARGE;
	need = cubeid_b64url_len(len) + 1;
	if (out_size < need)
		return CUBEID_ERR_BUFFER_TOO_SMALL;
	need = encode(alpha_url, 0, in, len, out);
	if (out_len != NULL)
		*out_len = need;
	return CUBEID_OK;
}

int
cubeid_b64url_encode_alloc(const uint8_t *in, size_t len, char **out)
{
	size_t size;

	if (out == NULL)
		return CUBEID_ERR_INVALID_ARG;
	*out = NULL;
	if (in == NULL && len != 0)
		return CUBEID_ERR_INVALID_ARG;
	if (len > SIZE_MAX / 2)
		return CUBEID_ERR_TOO_LARGE;
	size = cubeid_b64url_len(len) + 1;
	if ((*out = malloc(size)) == NULL)
		return CUBEID_ERR_NOMEM;
	encode(alpha_url, 0, in, len, *out);
	return CUBEID_OK;
}

int
cubeid_b64_std_encode_alloc(const uint8_t *in, size_t len, char **out)
{
	size_t size;

	if (out == NULL)
		return CUBEID_ERR_INVALID_ARG;
	*out = NULL;
	if ((in == NULL && len != 0) || len > SIZE_MAX / 2)
		return CUBEID_ERR_INVALID_ARG;
	size = (len + 2) / 3 * 4 + 1;
	if ((*out = malloc(size)) == NULL)
		return CUBEID_ERR_NOMEM;
	encode(alpha_std, 1, in, len, *out);
	return CUBEID_OK;
}

/*
 * Decode in[0..len) into out (room for out_size bytes).  url: base64url with
 * no padding allowed; otherwise standard base64 with padding required.
 */
static int
decode(int url, const char *in, size_t len, uint8_t *out, size_t out_size, size_t *out_len)
{
	const unsigned char *rev = rev_table(url);
	size_t i, o = 0, rem, need;
	uint32_t v;

	if (!url) {
		/* padded: a multiple of 4, with at most two '=' at the end */
		if (len % 4 != 0)
			return CUBEID_ERR_PARSE;
		if (len > 0 && in[len - 1] == '=')
			len--;
		if (len > 0 && in[len - 1] == '=')
			len--;
		if (len % 4 == 1)
			return CUBEID_ERR_PARSE;
	}
	rem = len % 4;
	if (rem == 1)
		return CUBEID_ERR_PARSE; /* no byte string encodes to 4n+1 chars */
	need = len / 4 * 3 + (rem == 0 ? 0 : rem - 1);
	if (need > out_size)
		return CUBEID_ERR_BUFFER_TOO_SMALL;
	for (i = 0; i + 4 <= len; i += 4) {
		unsigned char a = rev[(unsigned char)in[i]], b = rev[(unsigned char)in[i + 1]],
		              c = rev[(unsigned char)in[i + 2]], d = rev[(unsigned char)in[i + 3]];
		if ((a | b | c | d) & 0xc0)
			return CUBEID_ERR_PARSE;
		v = (uint32_t)a << 18 | (uint32_t)b << 12 | (uint32_t)c << 6 | d;
		out[o++] = (uint8_t)(v >> 16);
		out[o++] = (uint8_t)(v >> 8);
		out[o++] = (uint8_t)v;
	}
	if (rem == 2) {
		unsigned char a = rev[(unsigned char)in[i]], b = rev[(unsigned char)in[i + 1]];
		if ((a | b) & 0xc0 || (b & 0x0f) != 0)
			return CUBEID_ERR_PARSE; /* non-canonical trailing bits */
		out[o++] = (uint8_t)(a << 2 | b >> 4);
	} else if (rem == 3) {
		unsigned char a = rev[(unsigned char)in[i]], b = rev[(unsigned char)in[i + 1]],
		              c = rev[(unsigned char)in[i + 2]];
		if ((a | b | c) & 0xc0 || (c & 0x03) != 0)
			return CUBEID_ERR_PARSE;
		v = (uint32_t)a << 18 | (uint32_t)b << 12 | (uint32_t)c << 6;
		out[o++] = (uint8_t)(v >> 16);
		out[o++] = (uint8_t)(v >> 8);
	}
	*out_len = o;
	return CUBEID_OK;
}

int
cubeid_b64url_decode(const char *in, size_t len, uint8_t *out, size_t out_size, size_t *out_len)
{
	if (out_len == NULL)
		return CUBEID_ERR_INVALID_ARG;
	*out_len = 0;
	if ((in == NULL && len != 0) || (out == NULL && out_size != 0))
		return CUBEID_ERR_INVALID_ARG;
	return decode(1, in, len, out, out_size, out_len);
}

static int
decode_alloc(int url, const char *in, size_t len, size_t max, uint8_t **out, size_t *out_len)
{
	uint8_t *buf;
	size_t size;
	int rc;

	if (out == NULL || out_len == NULL)
		return CUBEID_ERR_INVALID_ARG;
	*out = NULL;
	*out_len = 0;
	if (in == NULL && len != 0)
		return CUBEID_ERR_INVALID_ARG;
	if (len > max)
		return CUBEID_ERR_TOO_LARGE;
	size = len / 4 * 3 + 3;
	if ((buf = malloc(size)) == NULL)
		return CUBEID_ERR_NOMEM;
	rc = decode(url, in, len, buf, size, out_len);
	if (rc != CUBEID_OK) {
		free(buf);
		*out_len = 0;
		return rc;
	}
	*out = buf;
	return CUBEID_OK;
}

int
cubeid_b64url_decode_alloc(const char *in, size_t len, uint8_t **out, size_t *out_len)
{
	return decode_alloc(1, in, len, CUBEID_B64_DECODE_MAX, out, out_len);
}

int
cubeid_b64_std_decode_alloc(const char *in, size_t len, uint8_t **out, size_t *out_len)
{
	return decode_alloc(0, in, len, CUBEID_B64_DECODE_MAX, out, out_len);
}
