/*
 * HTTP/2 frames written by hand, for tests and benchmarks that must say
 * exactly what goes over the wire (raw requests, HPACK bombs, rapid
 * resets) or keep no copy of an answer outside their own buffers.
 * Header-only: each program gets its own static copy.
 */
#ifndef CUBEID_TESTS_H2_TEST_UTIL_H
#define CUBEID_TESTS_H2_TEST_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define H2_PREFACE "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

/* A literal header field without indexing, new name; lengths < 127. */
static inline void
put_hdr(uint8_t *b, size_t *off, const char *name, const char *value)
{
	size_t nl = strlen(name), vl = strlen(value);

	b[(*off)++] = 0x00;
	b[(*off)++] = (uint8_t)nl;
	memcpy(b + *off, name, nl);
	*off += nl;
	b[(*off)++] = (uint8_t)vl;
	memcpy(b + *off, value, vl);
	*off += vl;
}

/* The 9-byte frame header at b. */
static inline void
put_frame_hdr(uint8_t *b, size_t len, uint8_t type, uint8_t flags, uint32_t stream)
{
	b[0] = (uint8_t)(len >> 16);
	b[1] = (uint8_t)(len >> 8);
	b[2] = (uint8_t)len;
	b[3] = type;
	b[4] = flags;
	b[5] = (uint8_t)(stream >> 24);
	b[6] = (uint8_t)(stream >> 16);
	b[7] = (uint8_t)(stream >> 8);
	b[8] = (uint8_t)stream;
}

/* HPACK integer with an n-bit prefix (RFC 7541 5.1), first byte ORed with
 * flags. */
static inline void
hpack_int(uint8_t *b, size_t *off, uint8_t flags, unsigned bits, size_t v)
{
	size_t max = (1u << bits) - 1;

	if (v < max) {
		b[(*off)++] = (uint8_t)(flags | v);
		return;
	}
	b[(*off)++] = (uint8_t)(flags | max);
	for (v -= max; v >= 128; v >>= 7)
		b[(*off)++] = (uint8_t)(0x80 | (v & 0x7f));
	b[(*off)++] = (uint8_t)v;
}

/* The client preface and an empty SETTINGS at b; *off is set past them. */
static inline void
put_h2_start(uint8_t *b, size_t *off)
{
	memcpy(b, H2_PREFACE, sizeof(H2_PREFACE) - 1);
	*off = sizeof(H2_PREFACE) - 1;
	put_frame_hdr(b + *off, 0, 0x4, 0, 0);
	*off += 9;
}

#endif
