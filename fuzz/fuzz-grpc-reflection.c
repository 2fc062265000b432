/*
 * libFuzzer target: gRPC server reflection's request parser and answers
 * (agent/grpc-reflection.c), as a stream's on_message runs them: any bytes
 * of at most GRPC_REFLECTION_MAX_REQUEST are a ServerReflectionRequest or
 * refused with CUBEID_ERR_PARSE; an answer must unpack as a
 * ServerReflectionResponse and say which request it answers.
 */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>

#include "agent/agent.h"
#include "agent/reflection.pb-c.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
h_none(grpc_call *call, void *ctx)
{
	(void)call;
	(void)ctx;
}

/* A table like the agent's: one Workload API method, the reflection lines. */
static const struct grpc_method methods[] = {
        {"/SpiffeWorkloadAPI/FetchJWTSVID", 0, h_none},
        GRPC_REFLECTION_METHODS,
};

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	Grpc__Reflection__V1__ServerReflectionResponse *r;
	uint8_t *out = NULL;
	size_t out_len = 0;
	int rc;

	if (size > GRPC_REFLECTION_MAX_REQUEST)
		return 0; /* grpc-call.c ends the stream before the parser */
	rc = grpc_reflection_answer(methods, sizeof(methods) / sizeof(methods[0]), data, size, &out,
	                            &out_len);
	if (rc < 0) {
		if (rc != CUBEID_ERR_PARSE && rc != CUBEID_ERR_NOMEM)
			abort();
		if (out != NULL)
			abort(); /* no half-built output */
		return 0;
	}
	r = grpc__reflection__v1__server_reflection_response__unpack(NULL, out_len, out);
	if (r == NULL || r->original_request == NULL ||
	    r->message_response_case ==
	            GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE__NOT_SET)
		abort();
	grpc__reflection__v1__server_reflection_response__free_unpacked(r, NULL);
	free(out);
	return 0;
}
