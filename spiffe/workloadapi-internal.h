/*
 * What the Workload API client (spiffe/workloadapi.c) lends to the other
 * clients of the agent's socket (picod/picod-client.c).  Not installed.
 */
#ifndef CUBEID_WORKLOADAPI_INTERNAL_H
#define CUBEID_WORKLOADAPI_INTERNAL_H

#include <protobuf-c/protobuf-c.h>

#include <cubeid/workloadapi.h>

/* One unary call: req packed and sent to path, the one reply message
 * unpacked as desc into *out (caller frees with
 * protobuf_c_message_free_unpacked()).  A second message, or none, is
 * CUBEID_ERR_PROTOCOL. */
int wl_unary_call(const struct cubeid_wl_opts *o, const char *path, const ProtobufCMessage *req,
                  const ProtobufCMessageDescriptor *desc, ProtobufCMessage **out,
                  struct cubeid_wl_status *st);

#endif
