/* gRPC message framing, grpc-message and grpc-timeout; see grpc-frame.h. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cubeid/error.h>

#include "common/grpc-frame.h"

void
grpc_deframer_init(struct grpc_deframer *d, size_t max)
{
	memset(d, 0, sizeof(*d));
	d->max = max ? max : GRPC_MAX_MESSAGE;
}

void
grpc_deframer_reset(struct grpc_deframer *d)
{
	d->hdr_len = d->want = d->have = 0;
	d->messages = 0;
}

void
grpc_deframer_clear(struct grpc_deframer *d)
{
	free(d->buf);
	d->buf = NULL;
	d->cap = 0;
	grpc_deframer_reset(d);
}

bool
grpc_deframer_idle(const struct grpc_deframer *d)
{
	return d->hdr_len == 0;
}

int
grpc_deframer_push(struct grpc_deframer *d, const uint8_t *p, size_t len, size_t *used,
                   const uint8_t **msg, size_t *msg_len)
{
	size_t off = 0, n;

	*used = 0;
	*msg = NULL;
	*msg_len = 0;
	while (off < len || (d->hdr_len == GRPC_FRAME_HEADER && d->have == d->want)) {
		if (d->hdr_len < GRPC_FRAME_HEADER) {
			n = GRPC_FRAME_HEADER - d->hdr_len;
			if (n > len - off)
				n = len - off;
			memcpy(d->hdr + d->hdr_len, p + off, n);
			d->hdr_len += n;
			off += n;
			if (d->hdr_len < GRPC_FRAME_HEADER)
				break;
			if (d->hdr[0] == 1) {
				*used = off;
				return CUBEID_ERR_UNSUPPORTED; /* compressed */
			}
			if (d->hdr[0] != 0) {
				*used = off;
				return CUBEID_ERR_PARSE;
			}
			d->want = (size_t)d->hdr[1] << 24 | (size_t)d->hdr[2] << 16 |
			          (size_t)d->hdr[3] << 8 | d->hdr[4];
			d->have = 0;
			/* The hard limit, before anything is buffered. */
			if (d->want > d->max) {
				*used = off;
				return CUBEID_ERR_TOO_LARGE;
			}
			if (d->want > d->cap) {
				size_t cap = d->cap ? d->cap : 256;
				uint8_t *b;

				while (cap < d->want)
					cap *= 2;
				if (cap > d->max)
					cap = d->max;
				/* No copy needed: nothing of this body is here yet. */
				if ((b = malloc(cap)) == NULL) {
					*used = off;
					return CUBEID_ERR_NOMEM;
				}
				free(d->buf);
				d->buf = b;
				d->cap = cap;
			}
		}
		n = d->want - d->have;
		if (n > len - off)
			n = len - off;
		if (n > 0) {
			memcpy(d->buf + d->have, p + off, n);
			d->have += n;
			off += n;
		}
		if (d->have == d->want) {
			*msg = d->buf;
			*msg_len = d->want;
			d->hdr_len = d->want = d->have = 0;
			d->messages++;
			*used = off;
			return 1;
		}
	}
	*used = off;
	return 0;
}

void
grpc_frame_header(uint8_t hdr[GRPC_FRAME_HEADER], size_t len)
{
	hdr[0] = 0;
	hdr[1] = (uint8_t)(len >> 24);
	hdr[2] = (uint8_t)(len >> 16);
	hdr[3] = (uint8_t)(len >> 8);
	hdr[4] = (uint8_t)len;
}

size_t
grpc_message_encode(const char *msg, char *out, size_t outsz)
{
	static const char hex[] = "0123456789ABCDEF";
	const unsigned char *s = (const unsigned char *)msg;
	size_t o = 0;

	if (outsz == 0)
		return 0;
	for (; s != NULL && *s != '\0'; s++) {
		if (*s >= 0x20 && *s <= 0x7e && *s != '%') {
			if (o + 1 >= outsz)
				break;
			out[o++] = (char)*s;
		} else {
			if (o + 3 >= outsz)
				break;
			out[o++] = '%';
			out[o++] = hex[*s >> 4];
			out[o++] = hex[*s & 15];
		}
	}
	out[o] = '\0';
	return o;
}

static int
hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

void
grpc_message_decode(const char *in, size_t len, char *out, size_t outsz)
{
	size_t i, o = 0;

	if (outsz == 0)
		return;
	for (i = 0; i < len && o + 1 < outsz; i++) {
		int hi, lo;

		if (in[i] == '%' && i + 2 < len && (hi = hexval(in[i + 1])) >= 0 &&
		    (lo = hexval(in[i + 2])) >= 0) {
			out[o++] = (char)(hi << 4 | lo);
			i += 2;
		} else {
			out[o++] = in[i];
		}
	}
	out[o] = '\0';
}

int
grpc_timeout_parse(const char *in, size_t len, long *ms)
{
	long long v = 0;
	size_t i;

	*ms = 0;
	if (len < 2 || len > 9)
		return CUBEID_ERR_PARSE;
	for (i = 0; i + 1 < len; i++) {
		if (in[i] < '0' || in[i] > '9')
			return CUBEID_ERR_PARSE;
		v = v * 10 + (in[i] - '0');
	}
	switch (in[len - 1]) {
	case 'H':
		v *= 3600000LL;
		break;
	case 'M':
		v *= 60000LL;
		break;
	case 'S':
		v *= 1000LL;
		break;
	case 'm':
		break;
	case 'u':
		v = (v + 999) / 1000;
		break;
	case 'n':
		v = (v + 999999) / 1000000;
		break;
	default:
		return CUBEID_ERR_PARSE;
	}
	*ms = v > 0x7fffffffLL ? 0x7fffffffL : (long)v;
	return 0;
}

void
grpc_timeout_format(long ms, char out[16])
{
	if (ms < 0)
		ms = 0;
	if (ms <= 99999999L) { /* at most 8 digits */
		snprintf(out, 16, "%ldm", ms);
		return;
	}
	ms = ms / 1000 + (ms % 1000 != 0); /* seconds, rounded up */
	snprintf(out, 16, "%dS", (int)(ms > 99999999L ? 99999999L : ms));
}

const char *
grpc_status_name(int status)
{
	static const char *const names[] = {
	        "OK",
	        "CANCELLED",
	        "UNKNOWN",
	        "INVALID_ARGUMENT",
	        "DEADLINE_EXCEEDED",
	        "NOT_FOUND",
	        "ALREADY_EXISTS",
	        "PERMISSION_DENIED",
	        "RESOURCE_EXHAUSTED",
	        "FAILED_PRECONDITION",
	        "ABORTED",
	        "OUT_OF_RANGE",
	        "UNIMPLEMENTED",
	        "INTERNAL",
	        "UNAVAILABLE",
	        "DATA_LOSS",
	        "UNAUTHENTICATED",
	};

	if (status < 0 || (size_t)status >= sizeof(names) / sizeof(names[0]))
		return "UNKNOWN";
	return names[status];
}
