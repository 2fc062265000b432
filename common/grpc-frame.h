/*
 * gRPC over HTTP/2, the parts shared by the agent's server and libcubeid's
 * client (internal; not installed):
 *
 *   - the length-prefixed message framing: 1 byte compressed flag, 4 bytes
 *     big-endian length, then the message.  We never negotiate compression,
 *     so a compressed message is an error.  The length is checked against a
 *     hard maximum before a byte of the body is buffered.
 *   - grpc-message percent-encoding (the spec's "Percent-Encoded" rule) and
 *     grpc-timeout values.
 */
#ifndef CUBEID_GRPC_FRAME_H
#define CUBEID_GRPC_FRAME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define GRPC_FRAME_HEADER 5
#define GRPC_MAX_MESSAGE  (4u << 20) /* default both ways, as gRPC's */
#define GRPC_MESSAGE_MAX  1024       /* grpc-message text we keep */

/* An incremental deframer.  Feed bytes in any split; it reuses one buffer
 * for every message (grown on demand, never past max). */
struct grpc_deframer {
	size_t max; /* hard limit on one message's length */
	uint8_t hdr[GRPC_FRAME_HEADER];
	size_t hdr_len; /* header bytes seen of the current message */
	size_t want;    /* body length of the current message */
	size_t have;    /* body bytes seen */
	uint8_t *buf;   /* owned; the body */
	size_t cap;
	unsigned messages; /* complete messages so far */
};

void grpc_deframer_init(struct grpc_deframer *d, size_t max);
void grpc_deframer_reset(struct grpc_deframer *d); /* keeps the buffer */
void grpc_deframer_clear(struct grpc_deframer *d); /* frees the buffer */

/* Consume bytes from p[0..len).  Returns 1 when a whole message is ready
 * (*msg, *msg_len borrow the deframer's buffer until the next call), 0 when
 * all input was consumed without completing one, or a negative code:
 * CUBEID_ERR_TOO_LARGE (length over max, seen in the header),
 * CUBEID_ERR_UNSUPPORTED (compressed flag set), CUBEID_ERR_PARSE (flag
 * neither 0 nor 1), CUBEID_ERR_NOMEM.  *used says how much of p was
 * consumed; call again with the rest after a 1. */
int grpc_deframer_push(struct grpc_deframer *d, const uint8_t *p, size_t len, size_t *used,
                       const uint8_t **msg, size_t *msg_len);
/* True between messages (no partial header or body buffered). */
bool grpc_deframer_idle(const struct grpc_deframer *d);

/* Write the 5-byte header for an uncompressed message of len bytes. */
void grpc_frame_header(uint8_t hdr[GRPC_FRAME_HEADER], size_t len);

/* Percent-encode msg for the grpc-message trailer (bytes outside 0x20-0x7e
 * and '%' become %XX) into out (NUL-terminated; truncated at a character
 * boundary to fit outsz).  Returns the length written. */
size_t grpc_message_encode(const char *msg, char *out, size_t outsz);
/* Decode a grpc-message value (len bytes) into out (NUL-terminated,
 * truncated to outsz).  Malformed escapes are kept as they are, as the spec
 * asks. */
void grpc_message_decode(const char *in, size_t len, char *out, size_t outsz);

/* grpc-timeout: "<1-8 digits><H|M|S|m|u|n>".  Parse to milliseconds
 * (rounded up; saturates) or format from milliseconds. */
int grpc_timeout_parse(const char *in, size_t len, long *ms);
void grpc_timeout_format(long ms, char out[16]);

/* gRPC status code names ("PERMISSION_DENIED"), for messages. */
const char *grpc_status_name(int status);

#endif
