/*
 * Strict base64 codecs (RFC 4648; common/b64url.c): base64url without
 * padding, as JWS and JWK use it, and standard padded base64, as the JWK
 * x5c member uses it.  Conventions: docs/sdk.md, "Conventions".
 */
#ifndef CUBEID_B64URL_H
#define CUBEID_B64URL_H

#include <stddef.h>
#include <stdint.h>

#include <cubeid/error.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Input bytes the _alloc decoders accept: CUBEID_JWKS_MAX, the largest
 * document they are used on. */
#define CUBEID_B64_DECODE_MAX (256 * 1024)

/* Length of the unpadded base64url encoding of n bytes (no NUL). */
size_t cubeid_b64url_len(size_t n);
/* Encode into out (out_size must be >= cubeid_b64url_len(len) + 1, else
 * CUBEID_ERR_BUFFER_TOO_SMALL); NUL-terminates; *out_len (optional) gets
 * the length without the NUL. */
int cubeid_b64url_encode(const uint8_t *in, size_t len, char *out, size_t out_size,
                         size_t *out_len);
/* Encode into a new NUL-terminated string; caller frees. */
int cubeid_b64url_encode_alloc(const uint8_t *in, size_t len, char **out);
/* Strict decode of unpadded base64url: padding, whitespace, characters
 * outside the alphabet and non-zero trailing bits are CUBEID_ERR_PARSE.
 * CUBEID_ERR_BUFFER_TOO_SMALL if out_size is too small. */
int cubeid_b64url_decode(const char *in, size_t len, uint8_t *out, size_t out_size,
                         size_t *out_len);
/* The same into a new buffer (caller frees); at most CUBEID_B64_DECODE_MAX input. */
int cubeid_b64url_decode_alloc(const char *in, size_t len, uint8_t **out, size_t *out_len);
/* Standard padded base64 (RFC 4648 section 4), as in the JWK x5c member;
 * strict in the same way.  Caller frees. */
int cubeid_b64_std_encode_alloc(const uint8_t *in, size_t len, char **out);
int cubeid_b64_std_decode_alloc(const char *in, size_t len, uint8_t **out, size_t *out_len);

#ifdef __cplusplus
}
#endif

#endif
