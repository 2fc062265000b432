/*
 * SPIFFE Workload API client, the typed calls: build each request, take the
 * response messages apart into the plain structs of
 * include/cubeid/workloadapi.h.  The transport is workloadapi-client.c.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/crypto.h>

#include <cubeid/error.h>
#include <cubeid/workloadapi.h>

#include "spiffe/workload.pb-c.h"
#include "common/grpc-frame.h"
#include "common/pb-depth.h"
#include "spiffe/workloadapi-internal.h"

#define WL_MAX_AUDIENCES    64
#define WL_MAX_STRUCT_DEPTH 32

static char *
xstrdup(const char *s)
{
	return strdup(s != NULL ? s : "");
}

static uint8_t *
xmemdup(const uint8_t *p, size_t n)
{
	uint8_t *d = malloc(n ? n : 1);

	if (d != NULL && n > 0)
		memcpy(d, p, n);
	return d;
}

static void
bundle_clear(struct cubeid_wl_bundle *b)
{
	free(b->trust_domain);
	free(b->data);
}

void
cubeid_wl_x509_free(struct cubeid_wl_x509 *x)
{
	size_t i;

	if (x == NULL)
		return;
	for (i = 0; i < x->n_svids; i++) {
		struct cubeid_wl_x509svid *s = &x->svids[i];

		free(s->spiffe_id);
		free(s->cert_chain);
		if (s->key != NULL)
			OPENSSL_cleanse(s->key, s->key_len);
		free(s->key);
		free(s->bundle);
		free(s->hint);
	}
	for (i = 0; i < x->n_federated; i++)
		bundle_clear(&x->federated[i]);
	free(x->svids);
	free(x->federated);
	free(x);
}

void
cubeid_wl_bundles_free(struct cubeid_wl_bundles *b)
{
	size_t i;

	if (b == NULL)
		return;
	for (i = 0; i < b->n; i++)
		bundle_clear(&b->v[i]);
	free(b->v);
	free(b);
}

void
cubeid_wl_jwt_free(struct cubeid_wl_jwt *j)
{
	size_t i;

	if (j == NULL)
		return;
	for (i = 0; i < j->n; i++) {
		free(j->svids[i].spiffe_id);
		free(j->svids[i].token);
		free(j->svids[i].hint);
	}
	free(j->svids);
	free(j);
}

void
cubeid_wl_validated_free(struct cubeid_wl_validated *v)
{
	if (v == NULL)
		return;
	free(v->spiffe_id);
	free(v->claims_json);
	free(v);
}

/* A map<string, bytes> as bundles; entries are the generated *Entry types,
 * which all share the layout {base, key, value}. */
struct map_entry {
	ProtobufCMessage base;
	char *key;
	ProtobufCBinaryData value;
};

static int
copy_bundles(struct map_entry **e, size_t n, struct cubeid_wl_bundle **out, size_t *n_out)
{
	struct cubeid_wl_bundle *v;
	size_t i;

	*out = NULL;
	*n_out = 0;
	if (n == 0)
		return 0;
	if ((v = calloc(n, sizeof(*v))) == NULL)
		return CUBEID_ERR_NOMEM;
	for (i = 0; i < n; i++) {
		v[i].trust_domain = xstrdup(e[i]->key);
		v[i].data = xmemdup(e[i]->value.data, e[i]->value.len);
		v[i].len = e[i]->value.len;
		if (v[i].trust_domain == NULL || v[i].data == NULL) {
			size_t j;

			for (j = 0; j <= i; j++)
				bundle_clear(&v[j]);
			free(v);
			return CUBEID_ERR_NOMEM;
		}
	}
	*out = v;
	*n_out = n;
	return 0;
}

static int
x509_from_pb(const X509SVIDResponse *m, struct cubeid_wl_x509 **out)
{
	struct cubeid_wl_x509 *x;
	size_t i;
	int r = CUBEID_ERR_NOMEM;

	*out = NULL;
	if ((x = calloc(1, sizeof(*x))) == NULL)
		return CUBEID_ERR_NOMEM;
	if (m->n_svids > 0 && (x->svids = calloc(m->n_svids, sizeof(*x->svids))) == NULL)
		goto out;
	for (i = 0; i < m->n_svids; i++) {
		const X509SVID *s = m->svids[i];
		struct cubeid_wl_x509svid *d = &x->svids[i];

		x->n_svids++;
		d->spiffe_id = xstrdup(s->spiffe_id);
		d->hint = xstrdup(s->hint);
		d->cert_chain = xmemdup(s->x509_svid.data, s->x509_svid.len);
		d->cert_chain_len = s->x509_svid.len;
		d->key = xmemdup(s->x509_svid_key.data, s->x509_svid_key.len);
		d->key_len = s->x509_svid_key.len;
		d->bundle = xmemdup(s->bundle.data, s->bundle.len);
		d->bundle_len = s->bundle.len;
		if (!d->spiffe_id || !d->hint || !d->cert_chain || !d->key || !d->bundle)
			goto out;
	}
	if ((r = copy_bundles((struct map_entry **)m->federated_bundles, m->n_federated_bundles,
	                      &x->federated, &x->n_federated)) < 0)
		goto out;
	*out = x;
	x = NULL;
	r = 0;
out:
	cubeid_wl_x509_free(x);
	return r;
}

struct first_msg {
	const ProtobufCMessageDescriptor *desc;
	ProtobufCMessage *msg;
	bool stream;
	bool nested; /* a ValidateJWTSVIDResponse: bound its nesting first */
};

/* Keep the first message.  A stream is cancelled after it (its status is
 * only known at its end, which may never come); a unary call reads on to
 * its trailers, so that a message followed by an error status fails. */
static int
first_msg_cb(const uint8_t *msg, size_t len, void *arg)
{
	struct first_msg *f = arg;

	if (f->msg != NULL)
		return CUBEID_ERR_PROTOCOL; /* a second message on a unary call */
	/* protobuf-c recurses into nested messages without a limit */
	if (f->nested && pb_validate_response_depth(msg, len, PB_STRUCT_MAX_DEPTH) != 0)
		return CUBEID_ERR_PROTOCOL;
	f->msg = protobuf_c_message_unpack(f->desc, NULL, len, msg);
	if (f->msg == NULL)
		return CUBEID_ERR_PROTOCOL;
	return f->stream ? 1 : 0;
}

static int
call_first(const struct cubeid_wl_opts *o, const char *path, bool stream,
           const ProtobufCMessage *req, const ProtobufCMessageDescriptor *desc,
           ProtobufCMessage **out, struct cubeid_wl_status *st)
{
	struct first_msg f = {.desc = desc,
	                      .stream = stream,
	                      .nested = desc == &validate_jwtsvidresponse__descriptor};
	size_t len = protobuf_c_message_get_packed_size(req);
	uint8_t *buf;
	int r;

	*out = NULL;
	if (len > GRPC_MAX_MESSAGE)
		return CUBEID_ERR_TOO_LARGE;
	if ((buf = malloc(len ? len : 1)) == NULL)
		return CUBEID_ERR_NOMEM;
	protobuf_c_message_pack(req, buf);
	r = cubeid_wl_call(o, path, buf, len, first_msg_cb, &f, NULL, st);
	free(buf);
	if (r == 0 && f.msg == NULL) {
		r = CUBEID_ERR_PROTOCOL;
		if (st != NULL)
			snprintf(st->message, sizeof(st->message), "the agent sent no message");
	}
	if (r < 0) {
		if (f.msg != NULL)
			protobuf_c_message_free_unpacked(f.msg, NULL);
		return r;
	}
	*out = f.msg;
	return 0;
}

int
cubeid_wl_fetch_x509(const struct cubeid_wl_opts *o, struct cubeid_wl_x509 **out,
                     struct cubeid_wl_status *st)
{
	X509SVIDRequest req = X509_SVIDREQUEST__INIT;
	ProtobufCMessage *m;
	int r;

	*out = NULL;
	if ((r = call_first(o, "/SpiffeWorkloadAPI/FetchX509SVID", true, &req.base,
	                    &x509_svidresponse__descriptor, &m, st)) < 0)
		return r;
	r = x509_from_pb((X509SVIDResponse *)m, out);
	protobuf_c_message_free_unpacked(m, NULL);
	return r;
}

struct watch_ctx {
	cubeid_wl_x509_fn fn;
	void *arg;
};

static int
watch_cb(const uint8_t *msg, size_t len, void *arg)
{
	struct watch_ctx *w = arg;
	X509SVIDResponse *m = x509_svidresponse__unpack(NULL, len, msg);
	struct cubeid_wl_x509 *x = NULL;
	int r;

	if (m == NULL)
		return CUBEID_ERR_PROTOCOL;
	r = x509_from_pb(m, &x);
	x509_svidresponse__free_unpacked(m, NULL);
	if (r < 0)
		return r;
	r = w->fn(x, w->arg) != 0 ? 1 : 0;
	cubeid_wl_x509_free(x);
	return r;
}

int
cubeid_wl_watch_x509(const struct cubeid_wl_opts *o, cubeid_wl_x509_fn fn, void *arg,
                     const volatile int *stop, struct cubeid_wl_status *st)
{
	X509SVIDRequest req = X509_SVIDREQUEST__INIT;
	struct watch_ctx w = {fn, arg};
	static const volatile int never = 0;
	uint8_t buf[16];
	size_t len = x509_svidrequest__pack(&req, buf);

	if (fn == NULL)
		return CUBEID_ERR_INVALID_ARG;
	/* A stop pointer makes a zero timeout mean "no limit". */
	return cubeid_wl_call(o, "/SpiffeWorkloadAPI/FetchX509SVID", buf, len, watch_cb, &w,
	                      stop != NULL ? stop : &never, st);
}

static int
fetch_bundles(const struct cubeid_wl_opts *o, bool jwt, struct cubeid_wl_bundles **out,
              struct cubeid_wl_status *st)
{
	X509BundlesRequest xreq = X509_BUNDLES_REQUEST__INIT;
	JWTBundlesRequest jreq = JWTBUNDLES_REQUEST__INIT;
	struct cubeid_wl_bundles *b = NULL;
	ProtobufCMessage *m;
	int r;

	*out = NULL;
	if (jwt)
		r = call_first(o, "/SpiffeWorkloadAPI/FetchJWTBundles", true, &jreq.base,
		               &jwtbundles_response__descriptor, &m, st);
	else
		r = call_first(o, "/SpiffeWorkloadAPI/FetchX509Bundles", true, &xreq.base,
		               &x509_bundles_response__descriptor, &m, st);
	if (r < 0)
		return r;
	if ((b = calloc(1, sizeof(*b))) == NULL) {
		r = CUBEID_ERR_NOMEM;
	} else if (jwt) {
		JWTBundlesResponse *j = (JWTBundlesResponse *)m;

		r = copy_bundles((struct map_entry **)j->bundles, j->n_bundles, &b->v, &b->n);
	} else {
		X509BundlesResponse *x = (X509BundlesResponse *)m;

		r = copy_bundles((struct map_entry **)x->bundles, x->n_bundles, &b->v, &b->n);
	}
	protobuf_c_message_free_unpacked(m, NULL);
	if (r < 0) {
		cubeid_wl_bundles_free(b);
		return r;
	}
	*out = b;
	return 0;
}

int
cubeid_wl_fetch_x509_bundles(const struct cubeid_wl_opts *o, struct cubeid_wl_bundles **out,
                             struct cubeid_wl_status *st)
{
	return fetch_bundles(o, false, out, st);
}

int
cubeid_wl_fetch_jwt_bundles(const struct cubeid_wl_opts *o, struct cubeid_wl_bundles **out,
                            struct cubeid_wl_status *st)
{
	return fetch_bundles(o, true, out, st);
}

int
cubeid_wl_fetch_jwt(const struct cubeid_wl_opts *o, const char *const *aud, size_t n_aud,
                    const char *spiffe_id, struct cubeid_wl_jwt **out, struct cubeid_wl_status *st)
{
	JWTSVIDRequest req = JWTSVIDREQUEST__INIT;
	JWTSVIDResponse *m;
	struct cubeid_wl_jwt *j = NULL;
	size_t i;
	int r;

	*out = NULL;
	if (aud == NULL || n_aud == 0 || n_aud > WL_MAX_AUDIENCES)
		return CUBEID_ERR_INVALID_ARG;
	for (i = 0; i < n_aud; i++)
		if (aud[i] == NULL)
			return CUBEID_ERR_INVALID_ARG;
	req.n_audience = n_aud;
	req.audience = (char **)aud;
	req.spiffe_id = (char *)(spiffe_id != NULL ? spiffe_id : "");
	if ((r = call_first(o, "/SpiffeWorkloadAPI/FetchJWTSVID", false, &req.base,
	                    &jwtsvidresponse__descriptor, (ProtobufCMessage **)&m, st)) < 0)
		return r;
	r = CUBEID_ERR_NOMEM;
	if ((j = calloc(1, sizeof(*j))) == NULL)
		goto out;
	if (m->n_svids > 0 && (j->svids = calloc(m->n_svids, sizeof(*j->svids))) == NULL)
		goto out;
	for (i = 0; i < m->n_svids; i++) {
		j->n++;
		j->svids[i].spiffe_id = xstrdup(m->svids[i]->spiffe_id);
		j->svids[i].token = xstrdup(m->svids[i]->svid);
		j->svids[i].hint = xstrdup(m->svids[i]->hint);
		if (!j->svids[i].spiffe_id || !j->svids[i].token || !j->svids[i].hint)
			goto out;
	}
	*out = j;
	j = NULL;
	r = 0;
out:
	jwtsvidresponse__free_unpacked(m, NULL);
	cubeid_wl_jwt_free(j);
	return r;
}

static json_t *value_to_json(const Google__Protobuf__Value *v, int depth);

static json_t *
struct_to_json(const Google__Protobuf__Struct *s, int depth)
{
	json_t *o = json_object();
	size_t i;

	if (o == NULL || depth > WL_MAX_STRUCT_DEPTH)
		goto fail;
	for (i = 0; s != NULL && i < s->n_fields; i++) {
		json_t *v = value_to_json(s->fields[i]->value, depth + 1);

		if (v == NULL || json_object_set_new(o, s->fields[i]->key, v) != 0)
			goto fail;
	}
	return o;
fail:
	json_decref(o);
	return NULL;
}

static json_t *
value_to_json(const Google__Protobuf__Value *v, int depth)
{
	json_t *a;
	size_t i;

	if (v == NULL || depth > WL_MAX_STRUCT_DEPTH)
		return NULL;
	switch (v->kind_case) {
	case GOOGLE__PROTOBUF__VALUE__KIND_NUMBER_VALUE:
		/* Integral values (exp, iat) stay integers in JSON. */
		if (v->number_value == (double)(json_int_t)v->number_value)
			return json_integer((json_int_t)v->number_value);
		return json_real(v->number_value);
	case GOOGLE__PROTOBUF__VALUE__KIND_STRING_VALUE:
		return json_string(v->string_value);
	case GOOGLE__PROTOBUF__VALUE__KIND_BOOL_VALUE:
		return json_boolean(v->bool_value);
	case GOOGLE__PROTOBUF__VALUE__KIND_STRUCT_VALUE:
		return struct_to_json(v->struct_value, depth + 1);
	case GOOGLE__PROTOBUF__VALUE__KIND_LIST_VALUE:
		if ((a = json_array()) == NULL)
			return NULL;
		for (i = 0; v->list_value != NULL && i < v->list_value->n_values; i++) {
			json_t *e = value_to_json(v->list_value->values[i], depth + 1);

			if (e == NULL || json_array_append_new(a, e) != 0) {
				json_decref(a);
				return NULL;
			}
		}
		return a;
	default:
		return json_null();
	}
}

int
cubeid_wl_validate_jwt(const struct cubeid_wl_opts *o, const char *token, const char *aud,
                       struct cubeid_wl_validated **out, struct cubeid_wl_status *st)
{
	ValidateJWTSVIDRequest req = VALIDATE_JWTSVIDREQUEST__INIT;
	ValidateJWTSVIDResponse *m;
	struct cubeid_wl_validated *v = NULL;
	json_t *claims = NULL;
	int r;

	*out = NULL;
	if (token == NULL || aud == NULL)
		return CUBEID_ERR_INVALID_ARG;
	req.svid = (char *)token;
	req.audience = (char *)aud;
	if ((r = call_first(o, "/SpiffeWorkloadAPI/ValidateJWTSVID", false, &req.base,
	                    &validate_jwtsvidresponse__descriptor, (ProtobufCMessage **)&m, st)) <
	    0)
		return r;
	r = CUBEID_ERR_NOMEM;
	if ((v = calloc(1, sizeof(*v))) == NULL || (v->spiffe_id = xstrdup(m->spiffe_id)) == NULL)
		goto out;
	if ((claims = struct_to_json(m->claims, 0)) == NULL) {
		r = CUBEID_ERR_PROTOCOL;
		goto out;
	}
	if ((v->claims_json = json_dumps(claims, JSON_COMPACT | JSON_SORT_KEYS)) == NULL)
		goto out;
	*out = v;
	v = NULL;
	r = 0;
out:
	json_decref(claims);
	validate_jwtsvidresponse__free_unpacked(m, NULL);
	cubeid_wl_validated_free(v);
	return r;
}

struct watch_bundles_ctx {
	cubeid_wl_bundles_fn fn;
	void *arg;
};

static int
watch_bundles_cb(const uint8_t *msg, size_t len, void *arg)
{
	struct watch_bundles_ctx *w = arg;
	JWTBundlesResponse *m = jwtbundles_response__unpack(NULL, len, msg);
	struct cubeid_wl_bundles b = {0};
	size_t i;
	int r = CUBEID_ERR_NOMEM;

	if (m == NULL)
		return CUBEID_ERR_PROTOCOL;
	if ((b.v = calloc(m->n_bundles + 1, sizeof(*b.v))) != NULL) {
		for (i = 0; i < m->n_bundles; i++, b.n++) {
			b.v[i].trust_domain = m->bundles[i]->key;
			b.v[i].data = m->bundles[i]->value.data;
			b.v[i].len = m->bundles[i]->value.len;
		}
		r = w->fn(&b, w->arg) != 0 ? 1 : 0;
		free(b.v);
	}
	jwtbundles_response__free_unpacked(m, NULL);
	return r;
}

int
cubeid_wl_watch_jwt_bundles(const struct cubeid_wl_opts *o, cubeid_wl_bundles_fn fn, void *arg,
                            const volatile int *stop, struct cubeid_wl_status *st)
{
	struct watch_bundles_ctx w = {fn, arg};
	static const volatile int never = 0;

	if (fn == NULL)
		return CUBEID_ERR_INVALID_ARG;
	return cubeid_wl_call(o, "/SpiffeWorkloadAPI/FetchJWTBundles", (const uint8_t *)"", 0,
	                      watch_bundles_cb, &w, stop != NULL ? stop : &never, st);
}

int
wl_unary_call(const struct cubeid_wl_opts *o, const char *path, const ProtobufCMessage *req,
              const ProtobufCMessageDescriptor *desc, ProtobufCMessage **out,
              struct cubeid_wl_status *st)
{
	return call_first(o, path, false, req, desc, out, st);
}
