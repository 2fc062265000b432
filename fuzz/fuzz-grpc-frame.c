/*
 * libFuzzer target: the gRPC deframer (common/grpc-frame.c) fed arbitrary
 * bytes in arbitrary splits, every complete message run through the
 * protobuf-c unpackers of the Workload API requests the agent accepts (and
 * the responses the client reads, the Struct-bearing one after the wire
 * nesting check of common/pb-depth.c), plus grpc-message and grpc-timeout
 * decoding.  The first input byte picks the split size and the max length.
 */
#include "config.h"

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cubeid/error.h>

#include "spiffe/workload.pb-c.h"
#include "common/grpc-frame.h"
#include "common/pb-depth.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const ProtobufCMessageDescriptor *const descs[] = {
        &x509_svidrequest__descriptor,        &x509_bundles_request__descriptor,
        &jwtsvidrequest__descriptor,          &jwtbundles_request__descriptor,
        &validate_jwtsvidrequest__descriptor, &witsvidrequest__descriptor,
        &witbundles_request__descriptor,      &x509_svidresponse__descriptor,
        &x509_bundles_response__descriptor,   &jwtsvidresponse__descriptor,
        &jwtbundles_response__descriptor,
};

static void
unpack_all(const uint8_t *msg, size_t len)
{
	size_t i;
	int r;

	for (i = 0; i < sizeof(descs) / sizeof(descs[0]); i++) {
		ProtobufCMessage *m = protobuf_c_message_unpack(descs[i], NULL, len, msg);

		if (m != NULL) {
			/* What unpacks packs again to no more than it came from
			 * plus unknown-field slack: just exercise it. */
			uint8_t out[4096];

			if (protobuf_c_message_get_packed_size(m) <= sizeof(out))
				protobuf_c_message_pack(m, out);
			protobuf_c_message_free_unpacked(m, NULL);
		}
	}
	/* The Struct-bearing response only once its nesting is bounded, as
	 * the client does (protobuf-c recurses without a limit). */
	r = pb_validate_response_depth(msg, len, PB_STRUCT_MAX_DEPTH);
	if (r != 0 && r != CUBEID_ERR_TOO_LARGE && r != CUBEID_ERR_PARSE)
		__builtin_trap();
	if (r == 0) {
		ValidateJWTSVIDResponse *v = validate_jwtsvidresponse__unpack(NULL, len, msg);

		validate_jwtsvidresponse__free_unpacked(v, NULL);
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct grpc_deframer d;
	size_t off, chunk, max;
	char text[GRPC_MESSAGE_MAX];
	long ms;

	if (size < 1)
		return 0;
	chunk = (data[0] & 0x0f) + 1;
	max = (data[0] & 0x80) ? 64 : 1 << 16;
	data++;
	size--;

	grpc_deframer_init(&d, max);
	for (off = 0; off < size;) {
		size_t n = size - off < chunk ? size - off : chunk, used = 0;

		while (n > 0) {
			const uint8_t *msg;
			size_t mlen;
			int r = grpc_deframer_push(&d, data + off, n, &used, &msg, &mlen);

			if (used > n)
				__builtin_trap();
			off += used;
			n -= used;
			if (r < 0) {
				if (r != CUBEID_ERR_TOO_LARGE && r != CUBEID_ERR_UNSUPPORTED &&
				    r != CUBEID_ERR_PARSE && r != CUBEID_ERR_NOMEM)
					__builtin_trap();
				goto done;
			}
			if (r == 1) {
				if (mlen > max)
					__builtin_trap();
				unpack_all(msg, mlen);
			} else if (n != 0) {
				__builtin_trap(); /* 0 means all input was consumed */
			}
		}
	}
done:
	grpc_deframer_clear(&d);

	grpc_message_decode((const char *)data, size, text, sizeof(text));
	if (strlen(text) >= sizeof(text))
		__builtin_trap();
	(void)grpc_timeout_parse((const char *)data, size, &ms);
	if (ms < 0)
		__builtin_trap();
	return 0;
}
