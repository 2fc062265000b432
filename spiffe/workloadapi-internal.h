/*
 * What the Workload API client (spiffe/workloadapi.c) lends to the other
 * clients of the agent's socket (picod/picod-client.c), and what its files
 * share (the endpoint, spiffe/workloadapi-endpoint.c).  Not installed.
 */
#ifndef CUBEID_WORKLOADAPI_INTERNAL_H
#define CUBEID_WORKLOADAPI_INTERNAL_H

#include <stdbool.h>
#include <sys/socket.h>

#include <protobuf-c/protobuf-c.h>

#include <cubeid/workloadapi.h>

/* One unary call: req packed and sent to path, the one reply message
 * unpacked as desc into *out (caller frees with
 * protobuf_c_message_free_unpacked()).  A second message, or none, is
 * CUBEID_ERR_PROTOCOL. */
int wl_unary_call(const struct cubeid_wl_opts *o, const char *path, const ProtobufCMessage *req,
                  const ProtobufCMessageDescriptor *desc, ProtobufCMessage **out,
                  struct cubeid_wl_status *st);

/* Where the client connects (Workload Endpoint spec, section 4). */
struct wl_endpoint {
	bool tcp;
	char path[108];             /* the socket path; for tcp, the URI (for messages) */
	struct sockaddr_storage sa; /* tcp: the address and port */
	socklen_t salen;
	char authority[72]; /* the :authority to send */
};

/* The endpoint of o->socket or, when o or it is NULL,
 * $SPIFFE_ENDPOINT_SOCKET: "unix:///path", "unix:/path", "/path" or
 * "tcp://IP:PORT".  A malformed one is CUBEID_ERR_INVALID_ARG with the
 * reason in st. */
int wl_endpoint_parse(const struct cubeid_wl_opts *o, struct wl_endpoint *ep,
                      struct cubeid_wl_status *st);
/* A connected, non-blocking socket to ep in *out; nobody listening is
 * CUBEID_ERR_UNAVAILABLE. */
int wl_endpoint_connect(const struct wl_endpoint *ep, struct cubeid_wl_status *st, int *out);

#endif
