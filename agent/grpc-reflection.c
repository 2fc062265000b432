/*
 * gRPC server reflection (grpc.reflection.v1 and v1alpha, which share one
 * wire format): a bidirectional stream of ServerReflectionRequest /
 * ServerReflectionResponse, so that grpcurl and other generic clients can
 * list the services on the socket and read their schema.
 *
 * What it describes comes from one FileDescriptorSet that protoc-c made at
 * build time from the .proto files (agent/local.mk: agent/reflection-set.c):
 * the Workload API, PicoD, reflection itself, and their imports.  A service
 * is listed when the server's method table serves one of its methods.  The
 * set is split into its files and indexed once (symbol -> file); answers
 * are the files' bytes as protoc wrote them.
 *
 * The schema is public, so a request costs no attestation and needs no
 * security header; each stream takes at most GRPC_REFLECTION_MAX_REQUESTS
 * requests of at most GRPC_REFLECTION_MAX_REQUEST bytes (grpc-call.c ends
 * it past either), and the stream counts in its uid's share like any other.
 */
#include "config.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/agent.h"
#include "agent/descriptor.pb-c.h"
#include "agent/grpc-internal.h"
#include "agent/reflection.pb-c.h"

extern const uint8_t grpc_reflection_set[];
extern const size_t grpc_reflection_set_len;

#define REFL_MAX_FILES    32
#define REFL_MAX_SERVICES 32

struct refl_file {
	const char *name; /* borrowed from fd */
	ProtobufCBinaryData bytes;
	size_t deps[REFL_MAX_FILES];
	size_t n_deps;
	Google__Protobuf__FileDescriptorProto *fd;
};

struct refl_symbol {
	char *name; /* full name, no leading dot */
	size_t file;
	bool message; /* a message type (for all_extension_numbers_of_type) */
};

static struct {
	struct refl_file files[REFL_MAX_FILES];
	size_t n_files;
	struct refl_symbol *syms;
	size_t n_syms, cap_syms;
	size_t services[REFL_MAX_SERVICES]; /* the services' symbols */
	size_t n_services;
	int err;
} idx;
static pthread_once_t idx_once = PTHREAD_ONCE_INIT;

/* ------------------------------------------------------------- the index */

static int
sym_add(const char *scope, const char *name, size_t file, bool message)
{
	struct refl_symbol *s;
	size_t n;

	if (name == NULL)
		return CUBEID_ERR_PARSE;
	if (idx.n_syms == idx.cap_syms) {
		size_t cap = idx.cap_syms ? idx.cap_syms * 2 : 64;

		if ((s = realloc(idx.syms, cap * sizeof(*s))) == NULL)
			return CUBEID_ERR_NOMEM;
		idx.syms = s;
		idx.cap_syms = cap;
	}
	s = &idx.syms[idx.n_syms];
	n = strlen(scope) + strlen(name) + 2;
	if ((s->name = malloc(n)) == NULL)
		return CUBEID_ERR_NOMEM;
	snprintf(s->name, n, "%s%s%s", scope, *scope != '\0' ? "." : "", name);
	s->file = file;
	s->message = message;
	idx.n_syms++;
	return 0;
}

/* An enum and its values (which protobuf scopes beside the enum). */
static int
index_enum(const char *scope, const Google__Protobuf__EnumDescriptorProto *e, size_t file)
{
	size_t i;
	int r;

	if ((r = sym_add(scope, e->name, file, false)) < 0)
		return r;
	for (i = 0; i < e->n_value; i++)
		if ((r = sym_add(scope, e->value[i]->name, file, false)) < 0)
			return r;
	return 0;
}

static int
index_message(const char *scope, const Google__Protobuf__DescriptorProto *m, size_t file,
              unsigned depth)
{
	char *full;
	size_t i;
	int r;

	if (depth > 16)
		return CUBEID_ERR_TOO_LARGE;
	if ((r = sym_add(scope, m->name, file, true)) < 0)
		return r;
	/* a copy: the symbol table moves as it grows */
	if ((full = strdup(idx.syms[idx.n_syms - 1].name)) == NULL)
		return CUBEID_ERR_NOMEM;
	for (i = 0; r == 0 && i < m->n_field; i++)
		r = sym_add(full, m->field[i]->name, file, false);
	for (i = 0; r == 0 && i < m->n_oneof_decl; i++)
		r = sym_add(full, m->oneof_decl[i]->name, file, false);
	for (i = 0; r == 0 && i < m->n_enum_type; i++)
		r = index_enum(full, m->enum_type[i], file);
	for (i = 0; r == 0 && i < m->n_nested_type; i++)
		r = index_message(full, m->nested_type[i], file, depth + 1);
	free(full);
	return r;
}

static ssize_t
file_by_name(const char *name)
{
	size_t i;

	for (i = 0; i < idx.n_files; i++)
		if (strcmp(idx.files[i].name, name) == 0)
			return (ssize_t)i;
	return -1;
}

static int
index_file(size_t f)
{
	Google__Protobuf__FileDescriptorProto *fd = idx.files[f].fd;
	const char *pkg = fd->package != NULL ? fd->package : "";
	size_t i, j;
	int r;

	for (i = 0; i < fd->n_message_type; i++)
		if ((r = index_message(pkg, fd->message_type[i], f, 0)) < 0)
			return r;
	for (i = 0; i < fd->n_enum_type; i++)
		if ((r = index_enum(pkg, fd->enum_type[i], f)) < 0)
			return r;
	for (i = 0; i < fd->n_service; i++) {
		const Google__Protobuf__ServiceDescriptorProto *s = fd->service[i];
		size_t at;

		if ((r = sym_add(pkg, s->name, f, false)) < 0)
			return r;
		at = idx.n_syms - 1;
		if (idx.n_services >= REFL_MAX_SERVICES)
			return CUBEID_ERR_TOO_LARGE;
		idx.services[idx.n_services++] = at;
		for (j = 0; j < s->n_method; j++) {
			char *scope = strdup(idx.syms[at].name);

			if (scope == NULL)
				return CUBEID_ERR_NOMEM;
			r = sym_add(scope, s->method[j]->name, f, false);
			free(scope);
			if (r < 0)
				return r;
		}
	}
	/* its imports: files of the set (protoc-c --include_imports puts each
	 * file after what it imports) */
	for (i = 0; i < fd->n_dependency; i++) {
		ssize_t d = file_by_name(fd->dependency[i]);

		if (d < 0 || (size_t)d >= f || idx.files[f].n_deps >= REFL_MAX_FILES)
			return CUBEID_ERR_PARSE;
		idx.files[f].deps[idx.files[f].n_deps++] = (size_t)d;
	}
	return 0;
}

/* Split the FileDescriptorSet (field 1: repeated bytes) and index it. */
static void
idx_build(void)
{
	const uint8_t *p = grpc_reflection_set, *end = p + grpc_reflection_set_len;
	size_t f;

	idx.err = CUBEID_ERR_PARSE;
	while (p < end) {
		uint64_t len = 0;
		unsigned shift = 0;

		if (*p++ != 0x0a || idx.n_files >= REFL_MAX_FILES)
			return;
		do {
			if (p >= end || shift > 28)
				return;
			len |= (uint64_t)(*p & 0x7f) << shift;
			shift += 7;
		} while (*p++ & 0x80);
		if (len > (uint64_t)(end - p))
			return;
		f = idx.n_files;
		idx.files[f].bytes.data = (uint8_t *)p;
		idx.files[f].bytes.len = (size_t)len;
		idx.files[f].fd =
		        google__protobuf__file_descriptor_proto__unpack(NULL, (size_t)len, p);
		if (idx.files[f].fd == NULL || idx.files[f].fd->name == NULL)
			return;
		idx.files[f].name = idx.files[f].fd->name;
		idx.n_files++;
		if ((idx.err = index_file(f)) < 0)
			return;
		idx.err = CUBEID_ERR_PARSE;
		p += len;
	}
	idx.err = 0;
}

/* ------------------------------------------------------------- answers */

static const struct refl_symbol *
sym_find(const char *name)
{
	size_t i;

	if (*name == '.')
		name++;
	for (i = 0; i < idx.n_syms; i++)
		if (strcmp(idx.syms[i].name, name) == 0)
			return &idx.syms[i];
	return NULL;
}

/* Whether the server's table has a method of service svc ("pkg.Svc"). */
static bool
service_served(const struct grpc_method *m, size_t n, const char *svc)
{
	size_t i, len = strlen(svc);

	for (i = 0; i < n; i++)
		if (m[i].path != NULL && m[i].path[0] == '/' &&
		    strncmp(m[i].path + 1, svc, len) == 0 && m[i].path[len + 1] == '/')
			return true;
	return false;
}

/* Set bit f and its imports' bits in want (file f first in order[]). */
static void
files_closure(size_t f, bool *want, size_t *order, size_t *n)
{
	size_t i;

	if (want[f])
		return;
	want[f] = true;
	order[(*n)++] = f;
	for (i = 0; i < idx.files[f].n_deps; i++)
		files_closure(idx.files[f].deps[i], want, order, n);
}

int
grpc_reflection_answer(const struct grpc_method *m, size_t n, const uint8_t *req, size_t len,
                       uint8_t **out, size_t *out_len)
{
	Grpc__Reflection__V1__ServerReflectionRequest *rq;
	Grpc__Reflection__V1__ServerReflectionResponse rs =
	        GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__INIT;
	Grpc__Reflection__V1__FileDescriptorResponse fdr =
	        GRPC__REFLECTION__V1__FILE_DESCRIPTOR_RESPONSE__INIT;
	Grpc__Reflection__V1__ListServiceResponse lsr =
	        GRPC__REFLECTION__V1__LIST_SERVICE_RESPONSE__INIT;
	Grpc__Reflection__V1__ExtensionNumberResponse enr =
	        GRPC__REFLECTION__V1__EXTENSION_NUMBER_RESPONSE__INIT;
	Grpc__Reflection__V1__ErrorResponse err = GRPC__REFLECTION__V1__ERROR_RESPONSE__INIT;
	Grpc__Reflection__V1__ServerReflectionRequest orig =
	        GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__INIT;
	Grpc__Reflection__V1__ExtensionRequest ext = GRPC__REFLECTION__V1__EXTENSION_REQUEST__INIT;
	Grpc__Reflection__V1__ServiceResponse svc[REFL_MAX_SERVICES];
	Grpc__Reflection__V1__ServiceResponse *svcp[REFL_MAX_SERVICES];
	ProtobufCBinaryData blobs[REFL_MAX_FILES];
	bool want[REFL_MAX_FILES] = {false};
	size_t order[REFL_MAX_FILES], n_order = 0, i;
	const struct refl_symbol *sym;
	ssize_t f = -1;
	char msg[160];
	int r = 0;

	*out = NULL;
	*out_len = 0;
	pthread_once(&idx_once, idx_build);
	if (idx.err < 0)
		return idx.err;
	if ((rq = grpc__reflection__v1__server_reflection_request__unpack(NULL, len, req)) == NULL)
		return CUBEID_ERR_PARSE;
	/* the request as it is echoed: its known fields only (protobuf-c
	 * would pack unknown ones back, however malformed) */
	orig.host = rq->host;
	orig.message_request_case = rq->message_request_case;
	switch (rq->message_request_case) {
	case GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_CONTAINING_EXTENSION:
		if (rq->file_containing_extension != NULL) {
			ext.containing_type = rq->file_containing_extension->containing_type;
			ext.extension_number = rq->file_containing_extension->extension_number;
		}
		orig.file_containing_extension = &ext;
		break;
	case GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_BY_FILENAME:
		orig.file_by_filename = rq->file_by_filename;
		break;
	case GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_CONTAINING_SYMBOL:
		orig.file_containing_symbol = rq->file_containing_symbol;
		break;
	case GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_ALL_EXTENSION_NUMBERS_OF_TYPE:
		orig.all_extension_numbers_of_type = rq->all_extension_numbers_of_type;
		break;
	case GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_LIST_SERVICES:
		orig.list_services = rq->list_services;
		break;
	default:
		orig.message_request_case =
		        GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST__NOT_SET;
		break;
	}
	rs.valid_host = rq->host;
	rs.original_request = &orig;
	switch (rq->message_request_case) {
	case GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_LIST_SERVICES:
		for (i = 0; i < idx.n_services; i++) {
			const char *name = idx.syms[idx.services[i]].name;
			size_t k = lsr.n_service;

			if (!service_served(m, n, name))
				continue;
			svc[k] = (Grpc__Reflection__V1__ServiceResponse)
			        GRPC__REFLECTION__V1__SERVICE_RESPONSE__INIT;
			svc[k].name = (char *)name;
			svcp[k] = &svc[k];
			lsr.n_service++;
		}
		lsr.service = svcp;
		rs.message_response_case =
		        GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_LIST_SERVICES_RESPONSE;
		rs.list_services_response = &lsr;
		break;
	case GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_BY_FILENAME:
		f = file_by_name(rq->file_by_filename);
		if (f < 0)
			snprintf(msg, sizeof(msg), "file not found: %.128s", rq->file_by_filename);
		break;
	case GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_CONTAINING_SYMBOL:
		if ((sym = sym_find(rq->file_containing_symbol)) != NULL)
			f = (ssize_t)sym->file;
		else
			snprintf(msg, sizeof(msg), "symbol not found: %.128s",
			         rq->file_containing_symbol);
		break;
	case GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_ALL_EXTENSION_NUMBERS_OF_TYPE:
		/* no file here declares an extension: a known type has none */
		if ((sym = sym_find(rq->all_extension_numbers_of_type)) != NULL && sym->message) {
			enr.base_type_name = sym->name;
			rs.message_response_case =
			        GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_ALL_EXTENSION_NUMBERS_RESPONSE;
			rs.all_extension_numbers_response = &enr;
		} else {
			snprintf(msg, sizeof(msg), "type not found: %.128s",
			         rq->all_extension_numbers_of_type);
		}
		break;
	case GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_CONTAINING_EXTENSION:
		snprintf(msg, sizeof(msg), "extension not found: %.128s %d",
		         rq->file_containing_extension != NULL &&
		                         rq->file_containing_extension->containing_type != NULL
		                 ? rq->file_containing_extension->containing_type
		                 : "",
		         rq->file_containing_extension != NULL
		                 ? (int)rq->file_containing_extension->extension_number
		                 : 0);
		break;
	default:
		snprintf(msg, sizeof(msg), "no request in the message");
		err.error_code = GRPC_INVALID_ARGUMENT;
		break;
	}
	if (f >= 0) {
		/* the file, then everything it imports, each once */
		files_closure((size_t)f, want, order, &n_order);
		for (i = 0; i < n_order; i++)
			blobs[i] = idx.files[order[i]].bytes;
		fdr.n_file_descriptor_proto = n_order;
		fdr.file_descriptor_proto = blobs;
		rs.message_response_case =
		        GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_FILE_DESCRIPTOR_RESPONSE;
		rs.file_descriptor_response = &fdr;
	} else if (rs.message_response_case ==
	           GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE__NOT_SET) {
		if (err.error_code == 0)
			err.error_code = GRPC_NOT_FOUND;
		err.error_message = msg;
		rs.message_response_case =
		        GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_ERROR_RESPONSE;
		rs.error_response = &err;
	}
	*out_len = grpc__reflection__v1__server_reflection_response__get_packed_size(&rs);
	if ((*out = malloc(*out_len > 0 ? *out_len : 1)) == NULL) {
		*out_len = 0;
		r = CUBEID_ERR_NOMEM;
	} else {
		grpc__reflection__v1__server_reflection_response__pack(&rs, *out);
	}
	grpc__reflection__v1__server_reflection_request__free_unpacked(rq, NULL);
	return r;
}

/* ------------------------------------------------------------- the stream */

static void
on_message(grpc_call *call, void *user, const uint8_t *msg, size_t len)
{
	grpc_server *s = call->conn->srv;
	uint8_t *out;
	size_t out_len;
	int r;

	(void)user;
	r = grpc_reflection_answer(s->methods, s->n_methods, msg, len, &out, &out_len);
	if (r == CUBEID_ERR_PARSE)
		grpc_call_finish(call, GRPC_INVALID_ARGUMENT,
		                 "not a ServerReflectionRequest message");
	else if (r < 0)
		grpc_call_finish(call,
		                 r == CUBEID_ERR_NOMEM ? GRPC_RESOURCE_EXHAUSTED : GRPC_INTERNAL,
		                 "could not answer the reflection request");
	else if (grpc_call_send(call, out, out_len) < 0)
		grpc_call_finish(call, GRPC_RESOURCE_EXHAUSTED, "could not queue the response");
	free(out);
}

static void
on_end(grpc_call *call, void *user)
{
	(void)user;
	grpc_call_finish(call, GRPC_OK, NULL);
}

void
grpc_reflection_handler(grpc_call *call, void *ctx)
{
	(void)ctx;
	grpc_call_set_stream(call, GRPC_REFLECTION_MAX_REQUESTS, GRPC_REFLECTION_MAX_REQUEST,
	                     on_message, on_end);
}
