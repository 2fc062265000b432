/*
 * Nesting depth of google.protobuf.Struct on the wire, checked before
 * protobuf-c unpacks a message (internal; not installed).  protobuf-c
 * recurses once per nested message with no limit of its own, so a peer
 * that sends a Struct nested a hundred thousand deep overflows the stack.
 */
#ifndef CUBEID_PB_DEPTH_H
#define CUBEID_PB_DEPTH_H

#include <stddef.h>
#include <stdint.h>

/* Messages nested in a ValidateJWTSVIDResponse at most.  Each level of
 * JSON in the claims is two or three messages (Struct, its FieldsEntry,
 * Value; or ListValue, Value), and the client's conversion to JSON stops
 * well before this anyway (WL_MAX_STRUCT_DEPTH in workloadapi.c). */
#define PB_STRUCT_MAX_DEPTH 100

/* Walk a serialized ValidateJWTSVIDResponse (wire format only, nothing
 * allocated, recursion bounded by max_depth).  0 if it is well formed and
 * no message in it is nested deeper than max_depth; CUBEID_ERR_TOO_LARGE
 * if one is; CUBEID_ERR_PARSE if the wire format is broken. */
int pb_validate_response_depth(const uint8_t *p, size_t n, unsigned max_depth);

#endif
