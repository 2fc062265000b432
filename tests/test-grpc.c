/*
 * The agent's gRPC server (agent/grpc-server.c), driven by libcubeid's
 * Workload API client: unary and streaming calls, status and grpc-message,
 * unknown methods, size limits, cancellation freeing the server's call,
 * 100 concurrent streams, a slow client's backlog, and garbage on the
 * socket.  The server runs its loop in a thread on a socket in a temp dir.
 */
#include "config.h"

#include <check.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cubeid/workloadapi.h>

#include <openssl/rand.h>

#include <nghttp2/nghttp2.h>

#include "agent/agent.h"
#include "agent/descriptor.pb-c.h"
#include "agent/grpc-internal.h"
#include "agent/reflection.pb-c.h"
#include "spiffe/workload.pb-c.h"
#include "common/grpc-frame.h"
#include "common/pb-depth.h"
#include "tests/h2-test-util.h"
#include "tests/harness.h"

/* ------------------------------------------------------------- toy handlers */

static atomic_int live_calls;   /* stream calls the server holds */
static atomic_int closed_calls; /* on_close runs */
static size_t flood_size;       /* FetchX509SVID message padding (slow-client test) */

static bool
has_security_header(grpc_call *c)
{
	const char *v = grpc_call_metadata(c, "workload.spiffe.io");

	if (v != NULL && strcmp(v, "true") == 0)
		return true;
	grpc_call_finish(c, GRPC_INVALID_ARGUMENT, "security header missing from request");
	return false;
}

static void
send_packed(grpc_call *c, const ProtobufCMessage *m)
{
	size_t len = protobuf_c_message_get_packed_size(m);
	uint8_t *buf = malloc(len + 1);

	ck_assert_ptr_nonnull(buf);
	protobuf_c_message_pack(m, buf);
	grpc_call_send(c, buf, len);
	free(buf);
}

/* The audiences h_fetch_jwt answered, in order, each followed by ';'. */
static pthread_mutex_t served_mu = PTHREAD_MUTEX_INITIALIZER;
static char served[256];

static void
served_add(const char *token)
{
	pthread_mutex_lock(&served_mu);
	if (strlen(served) + strlen(token) + 2 <= sizeof(served)) {
		strcat(served, token);
		strcat(served, ";");
	}
	pthread_mutex_unlock(&served_mu);
}

/* FetchJWTSVID: echo the audiences, comma-joined, as the token. */
static void
h_fetch_jwt(grpc_call *c, void *ctx)
{
	JWTSVIDResponse resp = JWTSVIDRESPONSE__INIT;
	JWTSVID svid = JWTSVID__INIT, *svids[1] = {&svid};
	JWTSVIDRequest *req;
	const uint8_t *msg;
	char token[256] = "";
	size_t len, i;

	if (!has_security_header(c))
		return;
	msg = grpc_call_request(c, &len);
	if ((req = jwtsvidrequest__unpack(NULL, len, msg)) == NULL) {
		grpc_call_finish(c, GRPC_INVALID_ARGUMENT, "bad request");
		return;
	}
	for (i = 0; i < req->n_audience; i++) {
		if (i > 0)
			strncat(token, ",", sizeof(token) - strlen(token) - 1);
		strncat(token, req->audience[i], sizeof(token) - strlen(token) - 1);
	}
	served_add(token);
	svid.spiffe_id = "spiffe://example.org/echo";
	svid.svid = token;
	svid.hint = req->spiffe_id;
	resp.n_svids = 1;
	resp.svids = svids;
	send_packed(c, &resp.base);
	grpc_call_finish(c, GRPC_OK, NULL);
	jwtsvidrequest__free_unpacked(req, NULL);
}

static void
on_stream_close(grpc_call *c, void *user)
{
	atomic_fetch_sub(&live_calls, 1);
	atomic_fetch_add(&closed_calls, 1);
}

/* When set, FetchX509SVID's second and third messages carry no federated
 * bundle and the third no hint: fields emptied after a first message. */
static atomic_int x509_empties;

/* FetchX509SVID: three messages, then the stream stays open. */
static void
h_fetch_x509(grpc_call *c, void *ctx)
{
	char *pad = NULL;
	int i;

	if (!has_security_header(c))
		return;
	atomic_fetch_add(&live_calls, 1);
	grpc_call_set_user(c, NULL, on_stream_close);
	if (flood_size > 0) {
		pad = malloc(flood_size);
		ck_assert_ptr_nonnull(pad);
		memset(pad, 'x', flood_size);
	}
	for (i = 0; i < 3; i++) {
		X509SVIDResponse resp = X509_SVIDRESPONSE__INIT;
		X509SVIDResponse__FederatedBundlesEntry fed =
		        X509_SVIDRESPONSE__FEDERATED_BUNDLES_ENTRY__INIT;
		X509SVIDResponse__FederatedBundlesEntry *feds[1] = {&fed};
		X509SVID svid = X509_SVID__INIT, *svids[1] = {&svid};
		char id[64], chain[16], key[16];

		snprintf(id, sizeof(id), "spiffe://example.org/n/%d", i);
		snprintf(chain, sizeof(chain), "chain-%d", i);
		snprintf(key, sizeof(key), "key-%d", i);
		svid.spiffe_id = id;
		svid.x509_svid = (ProtobufCBinaryData){strlen(chain), (uint8_t *)chain};
		svid.x509_svid_key = (ProtobufCBinaryData){strlen(key), (uint8_t *)key};
		svid.bundle = (ProtobufCBinaryData){6, (uint8_t *)"bundle"};
		svid.hint = pad != NULL ? pad : "internal";
		if (pad != NULL)
			pad[flood_size - 1] = '\0';
		fed.key = "spiffe://other.org";
		fed.value = (ProtobufCBinaryData){3, (uint8_t *)"fed"};
		resp.n_svids = 1;
		resp.svids = svids;
		resp.n_federated_bundles = 1;
		resp.federated_bundles = feds;
		if (atomic_load(&x509_empties) && i > 0)
			resp.n_federated_bundles = 0;
		if (atomic_load(&x509_empties) && i == 2)
			svid.hint = "";
		send_packed(c, &resp.base);
	}
	free(pad);
}

/* FetchJWTBundles: one message, stream stays open. */
static void
h_fetch_jwt_bundles(grpc_call *c, void *ctx)
{
	JWTBundlesResponse resp = JWTBUNDLES_RESPONSE__INIT;
	JWTBundlesResponse__BundlesEntry e = JWTBUNDLES_RESPONSE__BUNDLES_ENTRY__INIT,
	                                 *es[1] = {&e};

	if (!has_security_header(c))
		return;
	atomic_fetch_add(&live_calls, 1);
	grpc_call_set_user(c, NULL, on_stream_close);
	e.key = "spiffe://example.org";
	e.value = (ProtobufCBinaryData){11, (uint8_t *)"{\"keys\":[]}"};
	resp.n_bundles = 1;
	resp.bundles = es;
	send_packed(c, &resp.base);
}

/* ValidateJWTSVID: always PermissionDenied, with a message that needs
 * percent-encoding (non-ASCII, '%', a newline). */
#define DENY_MSG "no entry for caller \xc3\xa9 (100% sure)\n"

/* Prepend bytes to a buffer filled from its end. */
static void
prepend(uint8_t *buf, size_t *pos, const void *p, size_t n)
{
	ck_assert_uint_ge(*pos, n);
	*pos -= n;
	memcpy(buf + *pos, p, n);
}

static void
prepend_tag_len(uint8_t *buf, size_t *pos, uint8_t tag, size_t len)
{
	uint8_t v[11];
	size_t n = 0;

	v[n++] = tag;
	do {
		v[n++] = (uint8_t)((len & 0x7f) | (len >= 0x80 ? 0x80 : 0));
		len >>= 7;
	} while (len > 0);
	prepend(buf, pos, v, n);
}

/* A serialized ValidateJWTSVIDResponse whose claims are {"a": ... {"a":
 * true}} with `levels` objects, built on the wire from the inside out.
 * *len gets its size; *pos where it starts in the returned buffer. */
static uint8_t *
nested_response(size_t levels, size_t *pos, size_t *len)
{
	static const char id[] = "spiffe://example.org/deep";
	size_t cap = levels * 24 + 128, end, mark;
	uint8_t *buf = malloc(cap);
	size_t i;

	ck_assert_ptr_nonnull(buf);
	*pos = end = cap;
	prepend(buf, pos, "\x20\x01", 2); /* Value{bool_value: true} */
	for (i = 0; i < levels; i++) {
		mark = *pos;
		/* FieldsEntry{key: "a", value: V} */
		prepend_tag_len(buf, pos, 0x12, end - mark);
		prepend(buf, pos,
		        "\x0a\x01"
		        "a",
		        3);
		/* Struct{fields: [entry]} */
		prepend_tag_len(buf, pos, 0x0a, end - *pos);
		if (i + 1 < levels) /* Value{struct_value: S} */
			prepend_tag_len(buf, pos, 0x2a, end - *pos);
	}
	prepend_tag_len(buf, pos, 0x12, end - *pos); /* claims */
	prepend(buf, pos, id, sizeof(id) - 1);
	prepend_tag_len(buf, pos, 0x0a, sizeof(id) - 1);
	*len = end - *pos;
	return buf;
}

/* ValidateJWTSVID: audience "deep" or "shallow" gets nested claims, any
 * other PermissionDenied. */
static void
h_validate(grpc_call *c, void *ctx)
{
	ValidateJWTSVIDRequest *req;
	const uint8_t *msg;
	size_t len, pos, n = 0;
	uint8_t *buf;

	if (!has_security_header(c))
		return;
	msg = grpc_call_request(c, &len);
	if ((req = validate_jwtsvidrequest__unpack(NULL, len, msg)) != NULL) {
		if (strcmp(req->audience, "deep") == 0)
			n = 100000;
		else if (strcmp(req->audience, "shallow") == 0)
			n = 3;
		validate_jwtsvidrequest__free_unpacked(req, NULL);
	}
	if (n == 0) {
		grpc_call_finish(c, GRPC_PERMISSION_DENIED, DENY_MSG);
		return;
	}
	buf = nested_response(n, &pos, &len);
	grpc_call_send(c, buf + pos, len);
	grpc_call_finish(c, GRPC_OK, NULL);
	free(buf);
}

/* A stream whose one message carries a secret (as x509_svid_key): 32
 * random bytes in secbuf memory, inside a message built in secbuf memory
 * too, so that any other copy in the process is the server's. */
#define SECRET_LEN 32
static uint8_t *secret;
static bool secret_sensitive;

static void
h_secret(grpc_call *c, void *ctx)
{
	X509SVIDResponse resp = X509_SVIDRESPONSE__INIT;
	X509SVID svid = X509_SVID__INIT, *svids[1] = {&svid};
	uint8_t *buf;
	size_t len;

	if (secret_sensitive)
		grpc_call_set_sensitive(c);
	atomic_fetch_add(&live_calls, 1);
	grpc_call_set_user(c, NULL, on_stream_close);
	svid.spiffe_id = "spiffe://example.org/secret";
	svid.x509_svid_key = (ProtobufCBinaryData){SECRET_LEN, secret};
	resp.n_svids = 1;
	resp.svids = svids;
	len = x509_svidresponse__get_packed_size(&resp);
	buf = secbuf_alloc(len);
	ck_assert_ptr_nonnull(buf);
	x509_svidresponse__pack(&resp, buf);
	ck_assert_int_eq(grpc_call_send(c, buf, len), 0);
	secbuf_free(buf, len);
}

/* FetchX509Bundles is deliberately missing: Unimplemented. */
static const struct grpc_method methods[] = {
        {"/SpiffeWorkloadAPI/FetchJWTSVID", false, h_fetch_jwt},
        {"/SpiffeWorkloadAPI/FetchX509SVID", true, h_fetch_x509},
        {"/SpiffeWorkloadAPI/FetchJWTBundles", true, h_fetch_jwt_bundles},
        {"/SpiffeWorkloadAPI/ValidateJWTSVID", false, h_validate},
        {"/test.Secret/Fetch", true, h_secret},
        GRPC_REFLECTION_METHODS,
};

/* ------------------------------------------------------------- fixture */

struct fixture {
	char *dir;
	char path[108];
	int lfd;
	cubeid_loop *l;
	grpc_server *s;
	pthread_t t;
	struct cubeid_wl_opts opts;
};

static struct fixture fx;

static void *
loop_thread(void *arg)
{
	loop_run(arg);
	return NULL;
}

static void
server_start(const struct grpc_limits *lim)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};

	atomic_store(&live_calls, 0);
	atomic_store(&closed_calls, 0);
	fx.dir = th_mkdtemp("cubeid-grpc");
	ck_assert_ptr_nonnull(fx.dir);
	snprintf(fx.path, sizeof(fx.path), "%s/agent.sock", fx.dir);
	strcpy(sa.sun_path, fx.path);
	fx.lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ck_assert_int_ge(fx.lfd, 0);
	ck_assert_int_eq(bind(fx.lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	ck_assert_int_eq(listen(fx.lfd, 256), 0);
	ck_assert_int_eq(loop_new(&fx.l), 0);
	ck_assert_int_eq(grpc_server_new(fx.l, methods, sizeof(methods) / sizeof(methods[0]), lim,
	                                 NULL, &fx.s),
	                 0);
	ck_assert_int_eq(grpc_server_listen_fd(fx.s, fx.lfd), 0);
	ck_assert_int_eq(pthread_create(&fx.t, NULL, loop_thread, fx.l), 0);
	memset(&fx.opts, 0, sizeof(fx.opts));
	fx.opts.socket = fx.path;
}

static void
setup(void)
{
	struct grpc_limits lim = {.max_message = 64 * 1024};

	flood_size = 0;
	server_start(&lim);
}

static void
teardown(void)
{
	loop_stop(fx.l);
	pthread_join(fx.t, NULL);
	grpc_server_free(fx.s);
	loop_free(fx.l);
	close(fx.lfd);
	th_rmtree(fx.dir);
	free(fx.dir);
}

/* grpc_server_connections(), read on the loop thread. */
struct conn_query {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool done;
	unsigned n;
};

static void
conn_query_fn(void *arg)
{
	struct conn_query *q = arg;

	pthread_mutex_lock(&q->mu);
	q->n = grpc_server_connections(fx.s);
	q->done = true;
	pthread_cond_signal(&q->cv);
	pthread_mutex_unlock(&q->mu);
}

static unsigned
server_connections(void)
{
	struct conn_query q = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, false, 0};

	ck_assert_int_eq(loop_post(fx.l, conn_query_fn, &q), 0);
	pthread_mutex_lock(&q.mu);
	while (!q.done)
		pthread_cond_wait(&q.cv, &q.mu);
	pthread_mutex_unlock(&q.mu);
	return q.n;
}

/* Wait (no time limit but Check's) until the server holds no calls and
 * no connections. */
static void
wait_server_idle(void)
{
	while (atomic_load(&live_calls) != 0 || server_connections() != 0)
		usleep(1000);
}

/* ------------------------------------------------------------- tests */

START_TEST(test_unary_fetch_jwt_echoes_audiences)
{
	const char *aud[] = {"svc-a", "svc-b"};
	struct cubeid_wl_status st;
	struct cubeid_wl_jwt *j = NULL;

	ck_assert_int_eq(
	        cubeid_wl_fetch_jwt(&fx.opts, aud, 2, "spiffe://example.org/want", &j, &st), 0);
	ck_assert_int_eq(st.code, 0);
	ck_assert_uint_eq(j->n, 1);
	ck_assert_str_eq(j->svids[0].spiffe_id, "spiffe://example.org/echo");
	ck_assert_str_eq(j->svids[0].token, "svc-a,svc-b");
	ck_assert_str_eq(j->svids[0].hint, "spiffe://example.org/want");
	cubeid_wl_jwt_free(j);
	cubeid_wl_jwt_free(NULL);
}
END_TEST

START_TEST(test_socket_from_environment)
{
	char env[160];
	const char *aud[] = {"x"};
	struct cubeid_wl_jwt *j = NULL;

	snprintf(env, sizeof(env), "unix://%s", fx.path);
	setenv("SPIFFE_ENDPOINT_SOCKET", env, 1);
	ck_assert_int_eq(cubeid_wl_fetch_jwt(NULL, aud, 1, NULL, &j, NULL), 0);
	ck_assert_str_eq(j->svids[0].token, "x");
	ck_assert_str_eq(j->svids[0].hint, "");
	cubeid_wl_jwt_free(j);
	unsetenv("SPIFFE_ENDPOINT_SOCKET");
	ck_assert_int_eq(cubeid_wl_fetch_jwt(NULL, aud, 1, NULL, &j, NULL), CUBEID_ERR_INVALID_ARG);
	ck_assert_ptr_null(j);
}
END_TEST

START_TEST(test_missing_security_header_is_invalid_argument)
{
	const char *aud[] = {"svc-a"};
	struct cubeid_wl_status st;
	struct cubeid_wl_jwt *j = NULL;

	fx.opts.no_security_header = true;
	ck_assert_int_eq(cubeid_wl_fetch_jwt(&fx.opts, aud, 1, NULL, &j, &st),
	                 CUBEID_ERR_INVALID_ARG);
	ck_assert_ptr_null(j);
	ck_assert_int_eq(st.code, GRPC_INVALID_ARGUMENT);
	ck_assert_str_eq(st.message, "security header missing from request");
}
END_TEST

START_TEST(test_status_and_encoded_message_reach_the_client)
{
	struct cubeid_wl_status st;
	struct cubeid_wl_validated *v = NULL;

	ck_assert_int_eq(cubeid_wl_validate_jwt(&fx.opts, "a.b.c", "aud", &v, &st),
	                 CUBEID_ERR_PERMISSION);
	ck_assert_ptr_null(v);
	ck_assert_int_eq(st.code, GRPC_PERMISSION_DENIED);
	ck_assert_str_eq(st.message, DENY_MSG);
}
END_TEST

/* protobuf-c would recurse 300,000 deep unpacking this: the client
 * refuses it from the wire bytes first, and takes a shallow one. */
START_TEST(test_deeply_nested_claims_are_refused)
{
	struct cubeid_wl_status st;
	struct cubeid_wl_validated *v = NULL;
	size_t pos, len;
	uint8_t *buf;

	ck_assert_int_eq(cubeid_wl_validate_jwt(&fx.opts, "a.b.c", "deep", &v, &st),
	                 CUBEID_ERR_PROTOCOL);
	ck_assert_ptr_null(v);
	ck_assert_int_eq(cubeid_wl_validate_jwt(&fx.opts, "a.b.c", "shallow", &v, &st), 0);
	ck_assert_str_eq(v->spiffe_id, "spiffe://example.org/deep");
	ck_assert_str_eq(v->claims_json, "{\"a\":{\"a\":{\"a\":true}}}");
	cubeid_wl_validated_free(v);

	/* the wire check itself: at the limit, one past it, broken input */
	buf = nested_response(1, &pos, &len);
	ck_assert_int_eq(pb_validate_response_depth(buf + pos, len, 3), 0);
	ck_assert_int_eq(pb_validate_response_depth(buf + pos, len, 2), CUBEID_ERR_TOO_LARGE);
	ck_assert_int_eq(pb_validate_response_depth(buf + pos, len - 1, 3), CUBEID_ERR_PARSE);
	free(buf);
	buf = nested_response(33, &pos, &len); /* 1 + 3 * 33 messages deep */
	ck_assert_int_eq(pb_validate_response_depth(buf + pos, len, 99), 0);
	ck_assert_int_eq(pb_validate_response_depth(buf + pos, len, 98), CUBEID_ERR_TOO_LARGE);
	ck_assert_int_eq(pb_validate_response_depth(buf + pos, len, PB_STRUCT_MAX_DEPTH), 0);
	free(buf);
	ck_assert_int_eq(pb_validate_response_depth((const uint8_t *)"\x0b", 1, 10),
	                 CUBEID_ERR_PARSE); /* a group */
	ck_assert_int_eq(pb_validate_response_depth(NULL, 0, 10), 0);
}
END_TEST

START_TEST(test_unknown_method_is_unimplemented)
{
	struct cubeid_wl_status st;
	struct cubeid_wl_bundles *b = NULL;

	ck_assert_int_eq(cubeid_wl_fetch_x509_bundles(&fx.opts, &b, &st), CUBEID_ERR_UNSUPPORTED);
	ck_assert_ptr_null(b);
	ck_assert_int_eq(st.code, GRPC_UNIMPLEMENTED);
	/* The connection was not harmed: the server still serves. */
	ck_assert_int_eq(cubeid_wl_fetch_jwt_bundles(&fx.opts, &b, &st), 0);
	ck_assert_uint_eq(b->n, 1);
	ck_assert_str_eq(b->v[0].trust_domain, "spiffe://example.org");
	ck_assert_uint_eq(b->v[0].len, 11);
	ck_assert_mem_eq(b->v[0].data, "{\"keys\":[]}", 11);
	cubeid_wl_bundles_free(b);
	wait_server_idle();
	ck_assert_int_eq(atomic_load(&closed_calls), 1);
}
END_TEST

struct seen {
	int n;
	char ids[8][64];
	char chains[8][16];
};

static int
collect_three(const struct cubeid_wl_x509 *x, void *arg)
{
	struct seen *s = arg;

	ck_assert_uint_eq(x->n_svids, 1);
	ck_assert_uint_eq(x->n_federated, 1);
	ck_assert_str_eq(x->federated[0].trust_domain, "spiffe://other.org");
	snprintf(s->ids[s->n], sizeof(s->ids[0]), "%s", x->svids[0].spiffe_id);
	snprintf(s->chains[s->n], sizeof(s->chains[0]), "%.*s", (int)x->svids[0].cert_chain_len,
	         (const char *)x->svids[0].cert_chain);
	return ++s->n == 3;
}

START_TEST(test_stream_delivers_three_messages_in_order_and_cancel_frees_the_call)
{
	struct seen s = {0};
	struct cubeid_wl_status st;

	ck_assert_int_eq(cubeid_wl_watch_x509(&fx.opts, collect_three, &s, NULL, &st), 0);
	ck_assert_int_eq(s.n, 3);
	ck_assert_str_eq(s.ids[0], "spiffe://example.org/n/0");
	ck_assert_str_eq(s.ids[1], "spiffe://example.org/n/1");
	ck_assert_str_eq(s.ids[2], "spiffe://example.org/n/2");
	ck_assert_str_eq(s.chains[2], "chain-2");
	/* The client cancelled: the server's call is gone, on_close ran once. */
	wait_server_idle();
	ck_assert_int_eq(atomic_load(&closed_calls), 1);
}
END_TEST

struct emptied {
	int n;
	size_t n_federated[3];
	char hint[3][16];
};

static int
collect_emptied(const struct cubeid_wl_x509 *x, void *arg)
{
	struct emptied *e = arg;

	ck_assert_uint_eq(x->n_svids, 1);
	e->n_federated[e->n] = x->n_federated;
	ck_assert(x->n_federated == 0 || x->federated != NULL);
	snprintf(e->hint[e->n], sizeof(e->hint[0]), "%s", x->svids[0].hint);
	return ++e->n == 3;
}

/* Workload API 4.4: a field a later message leaves empty is empty for the
 * client (libcubeid's watch), not the value an earlier message had. */
START_TEST(test_watch_takes_an_emptied_field_as_empty)
{
	struct emptied e = {0};
	struct cubeid_wl_status st;

	atomic_store(&x509_empties, 1);
	ck_assert_int_eq(cubeid_wl_watch_x509(&fx.opts, collect_emptied, &e, NULL, &st), 0);
	atomic_store(&x509_empties, 0);
	ck_assert_int_eq(e.n, 3);
	ck_assert_uint_eq(e.n_federated[0], 1);
	ck_assert_uint_eq(e.n_federated[1], 0); /* federated_bundles emptied */
	ck_assert_uint_eq(e.n_federated[2], 0);
	ck_assert_str_eq(e.hint[0], "internal");
	ck_assert_str_eq(e.hint[1], "internal");
	ck_assert_str_eq(e.hint[2], ""); /* hint emptied */
}
END_TEST

START_TEST(test_fetch_x509_returns_the_first_message)
{
	struct cubeid_wl_x509 *x = NULL;

	ck_assert_int_eq(cubeid_wl_fetch_x509(&fx.opts, &x, NULL), 0);
	ck_assert_uint_eq(x->n_svids, 1);
	ck_assert_str_eq(x->svids[0].spiffe_id, "spiffe://example.org/n/0");
	ck_assert_uint_eq(x->svids[0].key_len, 5);
	ck_assert_mem_eq(x->svids[0].key, "key-0", 5);
	ck_assert_mem_eq(x->svids[0].bundle, "bundle", 6);
	ck_assert_str_eq(x->svids[0].hint, "internal");
	cubeid_wl_x509_free(x);
	wait_server_idle();
}
END_TEST

static volatile int stop_flag;

static int
set_stop(const struct cubeid_wl_x509 *x, void *arg)
{
	int *n = arg;

	if (++*n == 3)
		stop_flag = 1; /* as another thread would */
	return 0;
}

START_TEST(test_watch_stops_on_the_stop_flag)
{
	int n = 0;

	stop_flag = 0;
	ck_assert_int_eq(cubeid_wl_watch_x509(&fx.opts, set_stop, &n, &stop_flag, NULL), 0);
	ck_assert_int_eq(n, 3);
	wait_server_idle();
	ck_assert_int_eq(atomic_load(&closed_calls), 1);
}
END_TEST

START_TEST(test_oversize_request_is_resource_exhausted)
{
	char *big = malloc(100 * 1024 + 1);
	const char *aud[1];
	struct cubeid_wl_status st;
	struct cubeid_wl_jwt *j = NULL;

	ck_assert_ptr_nonnull(big);
	memset(big, 'a', 100 * 1024);
	big[100 * 1024] = '\0';
	aud[0] = big;
	ck_assert_int_eq(cubeid_wl_fetch_jwt(&fx.opts, aud, 1, NULL, &j, &st),
	                 CUBEID_ERR_TOO_LARGE);
	ck_assert_int_eq(st.code, GRPC_RESOURCE_EXHAUSTED);
	ck_assert_ptr_nonnull(strstr(st.message, "larger than 65536"));
	free(big);
	/* Still serving. */
	aud[0] = "ok";
	ck_assert_int_eq(cubeid_wl_fetch_jwt(&fx.opts, aud, 1, NULL, &j, &st), 0);
	cubeid_wl_jwt_free(j);
}
END_TEST

#define N_CLIENTS 100
static pthread_barrier_t all_streaming;

static int
hold_until_all(const struct cubeid_wl_x509 *x, void *arg)
{
	int *n = arg;

	if (++*n < 3)
		return 0;
	pthread_barrier_wait(&all_streaming); /* everyone has a live stream */
	pthread_barrier_wait(&all_streaming); /* main has counted them */
	return 1;
}

static void *
stream_client(void *arg)
{
	int n = 0;

	(void)arg;
	ck_assert_int_eq(cubeid_wl_watch_x509(&fx.opts, hold_until_all, &n, NULL, NULL), 0);
	ck_assert_int_eq(n, 3);
	return NULL;
}

START_TEST(test_hundred_concurrent_streams_then_all_disconnect)
{
	pthread_t t[N_CLIENTS];
	int i;

	ck_assert_int_eq(pthread_barrier_init(&all_streaming, NULL, N_CLIENTS + 1), 0);
	for (i = 0; i < N_CLIENTS; i++)
		ck_assert_int_eq(pthread_create(&t[i], NULL, stream_client, NULL), 0);
	pthread_barrier_wait(&all_streaming);
	ck_assert_int_eq(atomic_load(&live_calls), N_CLIENTS);
	ck_assert_uint_eq(server_connections(), N_CLIENTS);
	pthread_barrier_wait(&all_streaming);
	for (i = 0; i < N_CLIENTS; i++)
		pthread_join(t[i], NULL);
	wait_server_idle();
	ck_assert_int_eq(atomic_load(&closed_calls), N_CLIENTS);
	pthread_barrier_destroy(&all_streaming);
}
END_TEST

static int
raw_connect(void)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	ck_assert_int_ge(fd, 0);
	strcpy(sa.sun_path, fx.path);
	ck_assert_int_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	return fd;
}

/* Read until the server closes the connection. */
static void
drain_until_eof(int fd)
{
	char buf[4096];

	while (read(fd, buf, sizeof(buf)) > 0)
		;
}

START_TEST(test_garbage_on_the_socket_is_refused_and_server_survives)
{
	static const char preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
	unsigned char junk[4096];
	const char *aud[] = {"after"};
	struct cubeid_wl_jwt *j = NULL;
	size_t i;
	int fd;

	for (i = 0; i < sizeof(junk); i++)
		junk[i] = (unsigned char)(i * 131 + 7);
	/* Not HTTP/2 at all. */
	fd = raw_connect();
	ck_assert_int_eq(write(fd, "GET / HTTP/1.1\r\n\r\n", 18), 18);
	drain_until_eof(fd);
	close(fd);
	/* The preface, then frames that make no sense. */
	fd = raw_connect();
	ck_assert_int_eq(write(fd, preface, sizeof(preface) - 1), (ssize_t)sizeof(preface) - 1);
	ck_assert_int_eq(write(fd, junk, sizeof(junk)), (ssize_t)sizeof(junk));
	drain_until_eof(fd);
	close(fd);
	/* A client that vanishes mid-frame. */
	fd = raw_connect();
	ck_assert_int_eq(write(fd, preface, 10), 10);
	close(fd);
	wait_server_idle();
	ck_assert_int_eq(cubeid_wl_fetch_jwt(&fx.opts, aud, 1, NULL, &j, NULL), 0);
	ck_assert_str_eq(j->svids[0].token, "after");
	cubeid_wl_jwt_free(j);
}
END_TEST

START_TEST(test_no_listener_is_unavailable)
{
	struct cubeid_wl_opts o = {.socket = "unix:///nonexistent/cubeid/agent.sock"};
	struct cubeid_wl_status st;
	struct cubeid_wl_x509 *x = NULL;

	ck_assert_int_eq(cubeid_wl_fetch_x509(&o, &x, &st), CUBEID_ERR_UNAVAILABLE);
	ck_assert_ptr_null(x);
	ck_assert_ptr_nonnull(strstr(st.message, "/nonexistent/cubeid/agent.sock"));
	/* Workload Endpoint 4: a unix URI has no authority */
	o.socket = "unix://host/run/cubeid/agent.sock";
	ck_assert_int_eq(cubeid_wl_fetch_x509(&o, &x, &st), CUBEID_ERR_INVALID_ARG);
}
END_TEST

/* Workload Endpoint 4: malformed tcp URIs are refused before any connect,
 * each with a message that says what is wrong. */
START_TEST(test_malformed_tcp_endpoints_are_refused_with_a_reason)
{
	static const struct {
		const char *uri, *why;
	} bad[] = {
	        {"tcp://localhost:8000", "not a host name"},
	        {"tcp://agent.example:8000", "not a host name"},
	        {"tcp://127.0.0.1", "needs a port"},
	        {"tcp://127.0.0.1:", "needs a port"},
	        {"tcp://[::1]", "needs a port"},
	        {"tcp://127.0.0.1:8000/foo", "no path"},
	        {"tcp://127.0.0.1:8000/", "no path"},
	        {"tcp://127.0.0.1:8000?a=b", "no path, query or fragment"},
	        {"tcp://127.0.0.1:8000#f", "no path, query or fragment"},
	        {"tcp://user@127.0.0.1:8000", "no userinfo"},
	        {"tcp://user:pw@127.0.0.1:8000", "no userinfo"},
	        {"tcp://127.0.0.1:0", "from 1 to 65535"},
	        {"tcp://127.0.0.1:65536", "from 1 to 65535"},
	        {"tcp://127.0.0.1:80a", "from 1 to 65535"},
	        {"tcp://127.0.0.1:+80", "from 1 to 65535"},
	        {"tcp://::1:8000", "in brackets"},
	        {"tcp://[::1:8000", "lacks its ']'"},
	        {"tcp://[::1]x:8000", "':port' only"},
	        {"tcp://[127.0.0.1]:8000", "must be an IP address"},
	        {"tcp://:8000", "needs an IP address"},
	        {"tcp://", "needs an IP address"},
	        {"tcp:127.0.0.1:8000", "tcp://IP:PORT"},
	        {"unix://host/run/agent.sock", "no authority"},
	        {"unix:///run/agent.sock?x=1", "no query or fragment"},
	        {"unix:///run/agent.sock#f", "no query or fragment"},
	};
	struct cubeid_wl_opts o = {0};
	struct cubeid_wl_status st;
	struct cubeid_wl_x509 *x = NULL;
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		o.socket = bad[i].uri;
		ck_assert_msg(cubeid_wl_fetch_x509(&o, &x, &st) == CUBEID_ERR_INVALID_ARG,
		              "%s was not refused", bad[i].uri);
		ck_assert_ptr_null(x);
		ck_assert_msg(strstr(st.message, bad[i].why) != NULL, "%s: \"%s\" lacks \"%s\"",
		              bad[i].uri, st.message, bad[i].why);
		ck_assert_ptr_nonnull(strstr(st.message, bad[i].uri));
	}
	/* and through SPIFFE_ENDPOINT_SOCKET */
	setenv("SPIFFE_ENDPOINT_SOCKET", "tcp://localhost:8000", 1);
	ck_assert_int_eq(cubeid_wl_fetch_x509(NULL, &x, &st), CUBEID_ERR_INVALID_ARG);
	ck_assert_ptr_nonnull(strstr(st.message, "not a host name"));
	unsetenv("SPIFFE_ENDPOINT_SOCKET");
}
END_TEST

/* A TCP-to-Unix relay in front of the fixture's server, as socat would be:
 * it accepts on a loopback TCP socket and copies bytes both ways to a new
 * connection to fx.path, one client connection at a time, until stop. */
struct relay {
	int lfd;
	atomic_int stop;
	atomic_int served;
	pthread_t t;
};

static void
relay_pipe(int a, int b)
{
	struct pollfd p[2] = {{.fd = a, .events = POLLIN}, {.fd = b, .events = POLLIN}};
	char buf[16384];

	for (;;) {
		int i;

		if (poll(p, 2, -1) < 0)
			return;
		for (i = 0; i < 2; i++) {
			ssize_t n, off = 0;

			if ((p[i].revents & (POLLIN | POLLHUP | POLLERR)) == 0)
				continue;
			n = read(p[i].fd, buf, sizeof(buf));
			if (n <= 0)
				return;
			while (off < n) {
				ssize_t w = write(p[1 - i].fd, buf + off, (size_t)(n - off));

				if (w <= 0)
					return;
				off += w;
			}
		}
	}
}

static void *
relay_thread(void *arg)
{
	struct relay *r = arg;

	while (!atomic_load(&r->stop)) {
		struct pollfd p = {.fd = r->lfd, .events = POLLIN};
		struct sockaddr_un sa = {.sun_family = AF_UNIX};
		int cfd, ufd;

		if (poll(&p, 1, 100) <= 0)
			continue;
		if ((cfd = accept(r->lfd, NULL, NULL)) < 0)
			continue;
		strcpy(sa.sun_path, fx.path);
		ufd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (ufd >= 0 && connect(ufd, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
			atomic_fetch_add(&r->served, 1);
			relay_pipe(cfd, ufd);
		}
		if (ufd >= 0)
			close(ufd);
		close(cfd);
	}
	return NULL;
}

/* Listen on the loopback of family af (port chosen by the kernel) and
 * start the relay; the tcp URI of it into uri.  False when the host has no
 * such loopback (IPv6 switched off). */
static bool
relay_start(struct relay *r, int af, char *uri, size_t urisz)
{
	struct sockaddr_storage ss = {0};
	socklen_t sl;

	r->lfd = socket(af, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (r->lfd < 0)
		return false;
	if (af == AF_INET6) {
		struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;

		a->sin6_family = AF_INET6;
		a->sin6_addr = in6addr_loopback;
		sl = sizeof(*a);
	} else {
		struct sockaddr_in *a = (struct sockaddr_in *)&ss;

		a->sin_family = AF_INET;
		a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		sl = sizeof(*a);
	}
	if (bind(r->lfd, (struct sockaddr *)&ss, sl) != 0) {
		close(r->lfd);
		return false;
	}
	ck_assert_int_eq(listen(r->lfd, 16), 0);
	ck_assert_int_eq(getsockname(r->lfd, (struct sockaddr *)&ss, &sl), 0);
	if (af == AF_INET6)
		snprintf(uri, urisz, "tcp://[::1]:%u",
		         ntohs(((struct sockaddr_in6 *)&ss)->sin6_port));
	else
		snprintf(uri, urisz, "tcp://127.0.0.1:%u",
		         ntohs(((struct sockaddr_in *)&ss)->sin_port));
	atomic_store(&r->stop, 0);
	atomic_store(&r->served, 0);
	ck_assert_int_eq(pthread_create(&r->t, NULL, relay_thread, r), 0);
	return true;
}

static void
relay_stop(struct relay *r)
{
	atomic_store(&r->stop, 1);
	pthread_join(r->t, NULL);
	close(r->lfd);
}

/* Workload Endpoint 4: tcp://IP:PORT, IPv4 and bracketed IPv6, as an
 * option and as SPIFFE_ENDPOINT_SOCKET, a unary call and a stream. */
START_TEST(test_tcp_endpoint_reaches_the_server)
{
	const int fams[] = {AF_INET, AF_INET6};
	const char *aud[] = {"tcp"};
	size_t i;

	for (i = 0; i < 2; i++) {
		struct relay r;
		char uri[64];
		struct cubeid_wl_opts o = {0};
		struct cubeid_wl_status st;
		struct cubeid_wl_jwt *j = NULL;
		struct cubeid_wl_x509 *x = NULL;

		if (!relay_start(&r, fams[i], uri, sizeof(uri))) {
			ck_assert_int_eq(fams[i], AF_INET6); /* IPv4 loopback is a must */
			fprintf(stderr, "no IPv6 loopback here: tcp://[::1] not tried\n");
			continue;
		}
		o.socket = uri;
		ck_assert_msg(cubeid_wl_fetch_jwt(&o, aud, 1, NULL, &j, &st) == 0, "%s: %s", uri,
		              st.message);
		ck_assert_str_eq(j->svids[0].token, "tcp");
		cubeid_wl_jwt_free(j);
		ck_assert_msg(cubeid_wl_fetch_x509(&o, &x, &st) == 0, "%s: %s", uri, st.message);
		ck_assert_uint_ge(x->n_svids, 1);
		cubeid_wl_x509_free(x);
		setenv("SPIFFE_ENDPOINT_SOCKET", uri, 1);
		j = NULL;
		ck_assert_int_eq(cubeid_wl_fetch_jwt(NULL, aud, 1, NULL, &j, &st), 0);
		cubeid_wl_jwt_free(j);
		unsetenv("SPIFFE_ENDPOINT_SOCKET");
		ck_assert_int_eq(atomic_load(&r.served), 3);
		relay_stop(&r);
		/* nobody on that port now: unavailable, as for a Unix socket */
		ck_assert_int_eq(cubeid_wl_fetch_jwt(&o, aud, 1, NULL, &j, &st),
		                 CUBEID_ERR_UNAVAILABLE);
		ck_assert_ptr_nonnull(strstr(st.message, uri));
	}
}
END_TEST

/* A slow-client server: max_pending_output of 64 KiB; the stream handler
 * queues three 40 KiB messages at once, so the connection is dropped. */
static void
setup_small_backlog(void)
{
	struct grpc_limits lim = {.max_pending_output = 64 * 1024};

	flood_size = 40 * 1024;
	server_start(&lim);
}

START_TEST(test_output_backlog_over_the_limit_drops_the_client)
{
	struct seen s = {0};
	struct cubeid_wl_status st;
	int r;

	r = cubeid_wl_watch_x509(&fx.opts, collect_three, &s, NULL, &st);
	ck_assert_int_eq(r, CUBEID_ERR_UNAVAILABLE);
	ck_assert_int_lt(s.n, 3);
	wait_server_idle();
	ck_assert_int_eq(atomic_load(&closed_calls), 1);
}
END_TEST

/* Drop every connection the server holds (as its idle timer or a restart
 * would), keeping the listening socket. */
static void
server_restart(void)
{
	loop_stop(fx.l);
	pthread_join(fx.t, NULL);
	grpc_server_free(fx.s);
	loop_free(fx.l);
	ck_assert_int_eq(loop_new(&fx.l), 0);
	ck_assert_int_eq(grpc_server_new(fx.l, methods, sizeof(methods) / sizeof(methods[0]), NULL,
	                                 NULL, &fx.s),
	                 0);
	ck_assert_int_eq(grpc_server_listen_fd(fx.s, fx.lfd), 0);
	ck_assert_int_eq(pthread_create(&fx.t, NULL, loop_thread, fx.l), 0);
}

START_TEST(test_reused_connection_serves_every_call_and_reconnects)
{
	struct cubeid_wl_opts o = fx.opts;
	struct cubeid_wl_status st;
	struct cubeid_wl_x509 *x = NULL;
	struct cubeid_wl_jwt *j = NULL;
	struct cubeid_wl_validated *v = NULL;
	char aud[32];
	const char *auds[1] = {aud};
	int i;

	ck_assert_int_eq(cubeid_wl_conn_open(&fx.opts, &o.conn, &st), 0);
	for (i = 0; i < 50; i++) {
		snprintf(aud, sizeof(aud), "aud-%d", i);
		ck_assert_int_eq(cubeid_wl_fetch_jwt(&o, auds, 1, NULL, &j, &st), 0);
		ck_assert_str_eq(j->svids[0].token, aud);
		cubeid_wl_jwt_free(j);
		/* a stream cancelled after its first message, and an error
		 * status, leave the connection usable */
		if (i % 10 == 0) {
			ck_assert_int_eq(cubeid_wl_fetch_x509(&o, &x, &st), 0);
			ck_assert_str_eq(x->svids[0].spiffe_id, "spiffe://example.org/n/0");
			cubeid_wl_x509_free(x);
			ck_assert_int_eq(cubeid_wl_validate_jwt(&o, "t", "a", &v, &st),
			                 CUBEID_ERR_PERMISSION);
			ck_assert_ptr_null(v);
		}
		ck_assert_uint_eq(server_connections(), 1);
	}
	/* The server drops the connection: the next call opens a new one. */
	server_restart();
	ck_assert_int_eq(cubeid_wl_fetch_jwt(&o, auds, 1, NULL, &j, &st), 0);
	ck_assert_str_eq(j->svids[0].token, aud);
	cubeid_wl_jwt_free(j);
	ck_assert_uint_eq(server_connections(), 1);
	cubeid_wl_conn_close(o.conn);
	cubeid_wl_conn_close(NULL);
	wait_server_idle();
}
END_TEST

/* ---- key material: where copies of it live ---- */

/* Send HTTP/2 frames for one request on stream 1 by hand (HPACK literals
 * without indexing), so that this client keeps no copy of the answer
 * outside secbuf memory. */
static bool
has_secret(const uint8_t *p, size_t n)
{
	size_t i;

	for (i = 0; i + SECRET_LEN <= n; i++)
		if (p[i] == secret[0] && memcmp(p + i, secret, SECRET_LEN) == 0)
			return true;
	return false;
}

/* Connect and send the preface and an empty SETTINGS; the caller appends
 * frames to b from *off. */
static int
raw_h2_start(uint8_t *b, size_t *off)
{
	put_h2_start(b, off);
	return raw_connect();
}

/* Read frames until EOF; whether a GOAWAY came first.  Fails the test if
 * the server neither answers nor closes in 30 s. */
static bool
read_until_eof_saw_goaway(int fd)
{
	uint8_t buf[65536];
	size_t have = 0, pos = 0;
	bool goaway = false;

	for (;;) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		ssize_t n;

		ck_assert_msg(poll(&p, 1, 30 * 1000) == 1, "the server kept the connection open");
		n = read(fd, buf + have, sizeof(buf) - have);
		if (n <= 0)
			return goaway;
		have += (size_t)n;
		while (have - pos >= 9) {
			size_t len = ((size_t)buf[pos] << 16) | ((size_t)buf[pos + 1] << 8) |
			             buf[pos + 2];

			if (have - pos < 9 + len)
				break;
			if (buf[pos + 3] == 0x7)
				goaway = true;
			pos += 9 + len;
		}
		memmove(buf, buf + pos, have - pos);
		have -= pos;
		pos = 0;
	}
}

START_TEST(test_hpack_bomb_drops_the_connection)
{
	static uint8_t req[32 * 1024];
	const char *aud[] = {"after-the-bomb"};
	struct cubeid_wl_status st;
	struct cubeid_wl_jwt *j = NULL;
	size_t off, hb, end, i;
	int fd = raw_h2_start(req, &off);

	/* one request: a 4,000-byte field put in the dynamic table, then
	 * referenced 10,000 times (1 byte each): 40 MB of header list for
	 * 14 KB on the wire */
	hb = off + 9;
	end = hb;
	put_hdr(req, &end, ":method", "POST");
	put_hdr(req, &end, ":scheme", "http");
	put_hdr(req, &end, ":path", "/SpiffeWorkloadAPI/FetchJWTSVID");
	put_hdr(req, &end, "content-type", "application/grpc");
	hpack_int(req, &end, 0x40, 6, 0); /* literal, incremental indexing */
	hpack_int(req, &end, 0x00, 7, 1);
	req[end++] = 'x';
	hpack_int(req, &end, 0x00, 7, 4000);
	memset(req + end, 'b', 4000);
	end += 4000;
	for (i = 0; i < 10000; i++)
		req[end++] = 0x80 | 62; /* indexed: the field above */
	put_frame_hdr(req + off, end - hb, 0x1, 0x4 | 0x1, 1);
	off = end;
	ck_assert_int_eq(write(fd, req, off), (ssize_t)off);
	/* the connection is dropped, not answered 431 and kept */
	read_until_eof_saw_goaway(fd);
	close(fd);
	/* and the server still serves */
	ck_assert_int_eq(cubeid_wl_fetch_jwt(&fx.opts, aud, 1, NULL, &j, &st), 0);
	cubeid_wl_jwt_free(j);
}
END_TEST

START_TEST(test_rapid_reset_gets_goaway)
{
	static uint8_t req[256 * 1024];
	const char *aud[] = {"after-the-resets"};
	struct cubeid_wl_status st;
	struct cubeid_wl_jwt *j = NULL;
	size_t off;
	uint32_t sid;
	int fd = raw_h2_start(req, &off);

	/* 400 requests, each reset at once (CVE-2023-44487): more resets
	 * than the connection's bucket holds (nghttp2's default holds 1000) */
	for (sid = 1; sid < 800; sid += 2) {
		size_t hb = off + 9, end = hb;

		put_hdr(req, &end, ":method", "POST");
		put_hdr(req, &end, ":scheme", "http");
		put_hdr(req, &end, ":path", "/SpiffeWorkloadAPI/FetchJWTSVID");
		put_hdr(req, &end, "content-type", "application/grpc");
		put_frame_hdr(req + off, end - hb, 0x1, 0x4, sid);
		off = end;
		put_frame_hdr(req + off, 4, 0x3, 0, sid);
		memset(req + off + 9, 0, 3);
		req[off + 12] = 0x8; /* CANCEL */
		off += 13;
	}
	ck_assert_uint_lt(off, sizeof(req));
	/* the server may close before it read everything */
	(void)!write(fd, req, off);
	ck_assert(read_until_eof_saw_goaway(fd));
	close(fd);
	ck_assert_int_eq(cubeid_wl_fetch_jwt(&fx.opts, aud, 1, NULL, &j, &st), 0);
	cubeid_wl_jwt_free(j);
}
END_TEST

/* ---- HTTP/2 request rules (agent/grpc-http.c) ---- */

/* How the server answered stream 1 of one raw request. */
enum h2_outcome {
	H2_ANSWERED = 'D', /* a response message (DATA) */
	H2_RESET = 'R',    /* RST_STREAM PROTOCOL_ERROR */
	H2_OTHER = '?',    /* anything else (another error, GOAWAY, EOF) */
};

struct h2_case {
	const char *name;
	const char *hdrs[24]; /* name, value, ..., NULL; NULL values skip */
	int body;             /* 0: END_STREAM on HEADERS; 1: one empty message */
	const char *trailers[6];
	bool trailers_end; /* trailers carry END_STREAM */
	char expect;
};

#define REQ_OK                                                                                     \
	":method", "POST", ":scheme", "http", ":path", "/SpiffeWorkloadAPI/FetchJWTSVID",          \
	        ":authority", "localhost", "content-type", "application/grpc",                     \
	        "workload.spiffe.io", "true"
#define REQ_NOAUTH                                                                                 \
	":method", "POST", ":scheme", "http", ":path", "/SpiffeWorkloadAPI/FetchJWTSVID",          \
	        "content-type", "application/grpc", "workload.spiffe.io", "true"

static const struct h2_case h2_cases[] = {
        /* what gRPC clients send as :authority over a Unix socket */
        {"grpc-java: the socket path",
         {":method", "POST", ":scheme", "http", ":path", "/SpiffeWorkloadAPI/FetchJWTSVID",
          ":authority", "/run/cubeid/agent.sock", "content-type", "application/grpc",
          "workload.spiffe.io", "true", "te", "trailers", NULL},
         1,
         {NULL},
         false,
         H2_ANSWERED},
        {"python grpc: a percent-encoded path",
         {":method", "POST", ":scheme", "http", ":path", "/SpiffeWorkloadAPI/FetchJWTSVID",
          ":authority", "%2Frun%2Fcubeid%2Fagent.sock", "content-type", "application/grpc",
          "workload.spiffe.io", "true", NULL},
         1,
         {NULL},
         false,
         H2_ANSWERED},
        {"grpc-go: localhost", {REQ_OK, NULL}, 1, {NULL}, false, H2_ANSWERED},
        {"an empty :authority",
         {":method", "POST", ":scheme", "http", ":path", "/SpiffeWorkloadAPI/FetchJWTSVID",
          ":authority", "", "content-type", "application/grpc", "workload.spiffe.io", "true", NULL},
         1,
         {NULL},
         false,
         H2_ANSWERED},
        {"host instead of :authority",
         {REQ_NOAUTH, "host", "localhost", NULL},
         1,
         {NULL},
         false,
         H2_ANSWERED},
        {"content-length that matches",
         {REQ_OK, "content-length", "5", NULL},
         1,
         {NULL},
         false,
         H2_ANSWERED},
        {"trailers that end the stream",
         {REQ_OK, NULL},
         1,
         {"x-trailer", "1", NULL},
         true,
         H2_ANSWERED},
        /* malformed requests are still refused */
        {"a regular value with LF", {REQ_OK, "x-bad", "a\nb", NULL}, 1, {NULL}, false, H2_RESET},
        {"no :authority and no host", {REQ_NOAUTH, NULL}, 1, {NULL}, false, H2_RESET},
        {"an :authority with CR",
         {REQ_NOAUTH, ":authority", "a\rb", NULL},
         1,
         {NULL},
         false,
         H2_RESET},
        {"two :authority", {":authority", "a", REQ_OK, NULL}, 1, {NULL}, false, H2_RESET},
        {"no :method",
         {":scheme", "http", ":path", "/SpiffeWorkloadAPI/FetchJWTSVID", ":authority", "x",
          "content-type", "application/grpc", NULL},
         1,
         {NULL},
         false,
         H2_RESET},
        {"no :scheme",
         {":method", "POST", ":path", "/SpiffeWorkloadAPI/FetchJWTSVID", ":authority", "x",
          "content-type", "application/grpc", NULL},
         1,
         {NULL},
         false,
         H2_RESET},
        {"no :path",
         {":method", "POST", ":scheme", "http", ":authority", "x", "content-type",
          "application/grpc", NULL},
         1,
         {NULL},
         false,
         H2_RESET},
        {"two :path", {":path", "/a", REQ_OK, NULL}, 1, {NULL}, false, H2_RESET},
        {"two :method", {":method", "POST", REQ_OK, NULL}, 1, {NULL}, false, H2_RESET},
        {"two :scheme", {":scheme", "http", REQ_OK, NULL}, 1, {NULL}, false, H2_RESET},
        {"an empty :method",
         {":method", "", ":scheme", "http", ":path", "/SpiffeWorkloadAPI/FetchJWTSVID",
          ":authority", "x", NULL},
         1,
         {NULL},
         false,
         H2_RESET},
        {"an empty :path",
         {":method", "POST", ":scheme", "http", ":path", "", ":authority", "x", NULL},
         1,
         {NULL},
         false,
         H2_RESET},
        {"a :path with a space",
         {":method", "POST", ":scheme", "http", ":path", "/a b", ":authority", "x", NULL},
         1,
         {NULL},
         false,
         H2_RESET},
        {"an http :path without /",
         {":method", "POST", ":scheme", "http", ":path", "SpiffeWorkloadAPI/FetchJWTSVID",
          ":authority", "x", NULL},
         1,
         {NULL},
         false,
         H2_RESET},
        {"a malformed :scheme",
         {":method", "POST", ":scheme", "1http", ":path", "/a", ":authority", "x", NULL},
         1,
         {NULL},
         false,
         H2_RESET},
        {"a :method with a space",
         {":method", "PO ST", ":scheme", "http", ":path", "/a", ":authority", "x", NULL},
         1,
         {NULL},
         false,
         H2_RESET},
        {"CONNECT", {":method", "CONNECT", ":authority", "x", NULL}, 1, {NULL}, false, H2_RESET},
        {"an unknown pseudo-header", {":foo", "x", REQ_OK, NULL}, 1, {NULL}, false, H2_RESET},
        {":status in a request", {":status", "200", REQ_OK, NULL}, 1, {NULL}, false, H2_RESET},
        {":protocol", {":protocol", "websocket", REQ_OK, NULL}, 1, {NULL}, false, H2_RESET},
        {"a pseudo-header after a regular one",
         {":method", "POST", ":scheme", "http", "content-type", "application/grpc", ":path",
          "/SpiffeWorkloadAPI/FetchJWTSVID", ":authority", "x", NULL},
         1,
         {NULL},
         false,
         H2_RESET},
        {"a header name with a control character",
         {REQ_OK, "x\001", "1", NULL},
         1,
         {NULL},
         false,
         H2_RESET},
        {"an empty header name", {REQ_OK, "", "1", NULL}, 1, {NULL}, false, H2_RESET},
        {"an uppercase header name",
         {REQ_OK, "Content-Length", "5", NULL},
         1,
         {NULL},
         false,
         H2_RESET},
        {"a malformed pseudo-header name",
         {":Path", "/a", REQ_OK, NULL},
         1,
         {NULL},
         false,
         H2_RESET},
        {"connection", {REQ_OK, "connection", "close", NULL}, 1, {NULL}, false, H2_RESET},
        {"keep-alive", {REQ_OK, "keep-alive", "1", NULL}, 1, {NULL}, false, H2_RESET},
        {"proxy-connection", {REQ_OK, "proxy-connection", "x", NULL}, 1, {NULL}, false, H2_RESET},
        {"transfer-encoding",
         {REQ_OK, "transfer-encoding", "chunked", NULL},
         1,
         {NULL},
         false,
         H2_RESET},
        {"upgrade", {REQ_OK, "upgrade", "h2c", NULL}, 1, {NULL}, false, H2_RESET},
        {"te other than trailers", {REQ_OK, "te", "gzip", NULL}, 1, {NULL}, false, H2_RESET},
        {"an empty host", {REQ_OK, "host", "", NULL}, 1, {NULL}, false, H2_RESET},
        {"two host", {REQ_OK, "host", "a", "host", "a", NULL}, 1, {NULL}, false, H2_RESET},
        {"a malformed content-length",
         {REQ_OK, "content-length", "5x", NULL},
         1,
         {NULL},
         false,
         H2_RESET},
        {"two content-length",
         {REQ_OK, "content-length", "5", "content-length", "5", NULL},
         1,
         {NULL},
         false,
         H2_RESET},
        {"less DATA than content-length",
         {REQ_OK, "content-length", "6", NULL},
         1,
         {NULL},
         false,
         H2_RESET},
        {"more DATA than content-length",
         {REQ_OK, "content-length", "4", NULL},
         1,
         {NULL},
         false,
         H2_RESET},
        {"content-length without DATA",
         {REQ_OK, "content-length", "5", NULL},
         0,
         {NULL},
         false,
         H2_RESET},
        {"a pseudo-header in trailers", {REQ_OK, NULL}, 1, {":path", "/a", NULL}, true, H2_RESET},
        {"trailers that do not end the stream",
         {REQ_OK, NULL},
         1,
         {"x-trailer", "1", NULL},
         false,
         H2_RESET},
        {"a connection header in trailers",
         {REQ_OK, NULL},
         1,
         {"connection", "close", NULL},
         true,
         H2_RESET},
};

/* Append a HEADERS frame on stream 1 with fields (name, value, ..., NULL). */
static void
put_headers_frame(uint8_t *b, size_t *off, const char *const *f, uint8_t flags)
{
	size_t hb = *off + 9, end = hb, i;

	for (i = 0; f[i] != NULL; i += 2)
		put_hdr(b, &end, f[i], f[i + 1]);
	put_frame_hdr(b + *off, end - hb, 0x1, 0x4 | flags, 1);
	*off = end;
}

/* Send one request on a fresh connection; how stream 1 ended. */
static char
h2_try(const struct h2_case *tc)
{
	uint8_t req[4096], buf[16384];
	size_t off, have = 0, pos;
	int fd = raw_h2_start(req, &off);
	char got = H2_OTHER;

	put_headers_frame(req, &off, tc->hdrs, tc->body == 0 ? 0x1 : 0);
	if (tc->body == 1) {
		bool end = tc->trailers[0] == NULL;

		put_frame_hdr(req + off, 5, 0x0, end ? 0x1 : 0, 1);
		memset(req + off + 9, 0, 5);
		off += 14;
		if (!end)
			put_headers_frame(req, &off, tc->trailers, tc->trailers_end ? 0x1 : 0);
	}
	ck_assert_int_eq(write(fd, req, off), (ssize_t)off);
	for (;;) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		ssize_t n;

		ck_assert_msg(poll(&p, 1, 30 * 1000) == 1, "%s: no answer", tc->name);
		n = read(fd, buf + have, sizeof(buf) - have);
		if (n <= 0)
			break;
		have += (size_t)n;
		for (pos = 0; have - pos >= 9;) {
			size_t len = ((size_t)buf[pos] << 16) | ((size_t)buf[pos + 1] << 8) |
			             buf[pos + 2];
			uint8_t type = buf[pos + 3];
			uint32_t sid = ((uint32_t)(buf[pos + 5] & 0x7f) << 24) |
			               ((uint32_t)buf[pos + 6] << 16) |
			               ((uint32_t)buf[pos + 7] << 8) | buf[pos + 8];

			if (have - pos < 9 + len)
				break;
			if (type == 0x0 && sid == 1 && len > 0)
				got = H2_ANSWERED;
			else if (type == 0x3 && sid == 1 && len == 4 && buf[pos + 12] == 0x1 &&
			         buf[pos + 9] == 0 && buf[pos + 10] == 0 && buf[pos + 11] == 0)
				got = H2_RESET;
			else if (type == 0x3 || type == 0x7)
				got = H2_OTHER;
			if (got != H2_OTHER || type == 0x3 || type == 0x7) {
				close(fd);
				return got;
			}
			pos += 9 + len;
		}
		memmove(buf, buf + pos, have - pos);
		have -= pos;
	}
	close(fd);
	return got;
}

START_TEST(test_every_unix_socket_authority_is_served_and_malformed_requests_are_reset)
{
	const char *aud[] = {"after-the-cases"};
	struct cubeid_wl_status st;
	struct cubeid_wl_jwt *j = NULL;
	size_t i;

	for (i = 0; i < sizeof(h2_cases) / sizeof(h2_cases[0]); i++) {
		char got = h2_try(&h2_cases[i]);

		ck_assert_msg(got == h2_cases[i].expect, "%s: got %c, expected %c",
		              h2_cases[i].name, got, h2_cases[i].expect);
	}
	/* and the server still serves a real client */
	ck_assert_int_eq(cubeid_wl_fetch_jwt(&fx.opts, aud, 1, NULL, &j, &st), 0);
	cubeid_wl_jwt_free(j);
}
END_TEST

/* grpc_server_counters(), read on the loop thread. */
struct counters_query {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool done;
	struct grpc_counters c;
};

static void
counters_query_fn(void *arg)
{
	struct counters_query *q = arg;

	pthread_mutex_lock(&q->mu);
	grpc_server_counters(fx.s, &q->c);
	q->done = true;
	pthread_cond_signal(&q->cv);
	pthread_mutex_unlock(&q->mu);
}

static struct grpc_counters
server_counters(void)
{
	struct counters_query q = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, false, {0}};

	ck_assert_int_eq(loop_post(fx.l, counters_query_fn, &q), 0);
	pthread_mutex_lock(&q.mu);
	while (!q.done)
		pthread_cond_wait(&q.cv, &q.mu);
	pthread_mutex_unlock(&q.mu);
	return q.c;
}

/* grpc-go ends a connection with GOAWAY(NO_ERROR) naming its own last
 * stream (an odd id), which nghttp2 refuses from a client and answers with
 * GOAWAY(PROTOCOL_ERROR).  That is a clean goodbye, not abuse: the uid's
 * next connection must not be held, or every go-spiffe call that opens a
 * connection waits 10-100 ms (measured: a 100 ms p50 before this). */
START_TEST(test_a_grpc_go_goodbye_is_not_charged_as_abuse)
{
	static uint8_t req[1024];
	const char *aud[] = {"after-the-goodbye"};
	struct cubeid_wl_status st;
	struct cubeid_wl_jwt *j = NULL;
	struct grpc_counters before, after;
	size_t off;
	int fd;

	before = server_counters();
	fd = raw_h2_start(req, &off);
	put_frame_hdr(req + off, 8, 0x7, 0, 0);
	memset(req + off + 9, 0, 8);
	req[off + 12] = 1; /* last stream 1, error NO_ERROR */
	off += 17;
	ck_assert_int_eq(write(fd, req, off), (ssize_t)off);
	(void)read_until_eof_saw_goaway(fd);
	close(fd);
	ck_assert_int_eq(cubeid_wl_fetch_jwt(&fx.opts, aud, 1, NULL, &j, &st), 0);
	cubeid_wl_jwt_free(j);
	after = server_counters();
	ck_assert_uint_eq(after.goaways, before.goaways);
	ck_assert_uint_eq(after.held_connections, before.held_connections);
	ck_assert_uint_eq(after.protocol_errors, before.protocol_errors);
}
END_TEST

START_TEST(test_resets_and_protocol_errors_are_logged_rate_limited_and_counted)
{
	static uint8_t req[64 * 1024];
	char path[160], line[512], want[64];
	const struct h2_case *bad = NULL;
	struct grpc_counters before, after;
	struct timespec t0, t1;
	long secs;
	size_t off, i;
	int fd, logfd, saved, lines = 0, resets = 0, with_peer = 0, suppressed = 0;
	FILE *f;

	for (i = 0; i < sizeof(h2_cases) / sizeof(h2_cases[0]); i++)
		if (strcmp(h2_cases[i].name, "connection") == 0)
			bad = &h2_cases[i];
	ck_assert_ptr_nonnull(bad);
	snprintf(path, sizeof(path), "%s/log", fx.dir);
	logfd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	ck_assert_int_ge(logfd, 0);
	saved = dup(2);
	dup2(logfd, 2);
	before = server_counters();
	clock_gettime(CLOCK_MONOTONIC, &t0);

	/* one malformed stream: logged with the peer and the reason */
	ck_assert_int_eq(h2_try(bad), H2_RESET);
	/* 200 more on one connection: the log takes a burst, then a few */
	fd = raw_h2_start(req, &off);
	for (i = 0; i < 200; i++) {
		size_t hb = off + 9, end = hb, k;

		for (k = 0; bad->hdrs[k] != NULL; k += 2)
			put_hdr(req, &end, bad->hdrs[k], bad->hdrs[k + 1]);
		put_frame_hdr(req + off, end - hb, 0x1, 0x4 | 0x1, (uint32_t)(2 * i + 1));
		off = end;
	}
	ck_assert_uint_lt(off, sizeof(req));
	ck_assert_int_eq(write(fd, req, off), (ssize_t)off);
	shutdown(fd, SHUT_WR);
	drain_until_eof(fd);
	close(fd);
	/* garbage instead of the preface: a connection-level error, logged
	 * once the bucket has a token again, with the count of lines dropped */
	usleep(600 * 1000);
	fd = raw_connect();
	ck_assert_int_eq(write(fd, "GET / HTTP/1.1\r\n\r\n", 18), 18);
	drain_until_eof(fd);
	close(fd);
	after = server_counters();
	clock_gettime(CLOCK_MONOTONIC, &t1);
	secs = (long)(t1.tv_sec - t0.tv_sec) + 1;

	fflush(stderr);
	dup2(saved, 2);
	close(saved);
	close(logfd);
	ck_assert_uint_ge(after.stream_resets - before.stream_resets, 201);
	ck_assert_uint_ge(after.protocol_errors - before.protocol_errors, 202);
	f = fopen(path, "r");
	ck_assert_ptr_nonnull(f);
	snprintf(want, sizeof(want), "peer pid %ld uid %ld", (long)getpid(), (long)getuid());
	while (fgets(line, sizeof(line), f) != NULL) {
		if (strstr(line, "grpc: ") == NULL)
			continue;
		lines++;
		if (strstr(line,
		           "reset stream 1 with PROTOCOL_ERROR: a connection-specific header") !=
		    NULL)
			resets++;
		if (strstr(line, want) != NULL)
			with_peer++;
		if (strstr(line, "more HTTP/2 errors not logged") != NULL)
			suppressed++;
	}
	fclose(f);
	ck_assert_int_ge(resets, 1);
	ck_assert_int_eq(with_peer, lines);
	/* 202 errors: a burst of 20 lines, and 2 a second after it (however
	 * slow this machine is) */
	ck_assert_int_ge(lines, 2);
	ck_assert_int_le(lines, 20 + 2 * secs);
	ck_assert_int_lt(lines, 202);
	ck_assert_int_ge(suppressed, 1);
}
END_TEST

/* Fetch the secret over a raw connection; true if it arrived. */
static bool
fetch_secret_raw(void)
{
	static const char preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	size_t cap = 64 * 1024, have = 0, off;
	uint8_t req[512], *in = secbuf_alloc(cap);
	bool got = false;
	int fd;

	ck_assert_ptr_nonnull(in);
	strcpy(sa.sun_path, fx.path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ck_assert_int_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	memcpy(req, preface, sizeof(preface) - 1);
	off = sizeof(preface) - 1;
	put_frame_hdr(req + off, 0, 0x4, 0, 0);
	off += 9;
	{
		size_t hb = off + 9;
		size_t end = hb;

		put_hdr(req, &end, ":method", "POST");
		put_hdr(req, &end, ":scheme", "http");
		put_hdr(req, &end, ":path", "/test.Secret/Fetch");
		put_hdr(req, &end, ":authority", "localhost");
		put_hdr(req, &end, "content-type", "application/grpc");
		put_hdr(req, &end, "te", "trailers");
		put_frame_hdr(req + off, end - hb, 0x1, 0x4, 1);
		off = end;
	}
	put_frame_hdr(req + off, 5, 0x0, 0x1, 1);
	off += 9;
	memset(req + off, 0, 5);
	off += 5;
	ck_assert_int_eq(write(fd, req, off), (ssize_t)off);
	/* read until the secret shows up (or the server closes) */
	while (!got && have < cap) {
		ssize_t n = read(fd, in + have, cap - have);

		if (n <= 0)
			break;
		have += (size_t)n;
		got = has_secret(in, have);
	}
	close(fd);
	secbuf_free(in, cap);
	return got;
}

/* Copies of the secret in this process's memory outside MADV_DONTDUMP
 * mappings (VmFlags "dd" in /proc/self/smaps), read through
 * /proc/self/mem; -1 if the scan could not run. */
static int
secret_copies_outside_dontdump(void)
{
	FILE *f = fopen("/proc/self/smaps", "r");
	char line[512];
	unsigned long lo = 0, hi = 0;
	bool readable = false, skip = true;
	int mem = open("/proc/self/mem", O_RDONLY | O_CLOEXEC), found = 0;
	static uint8_t chunk[65536 + SECRET_LEN];

	if (f == NULL || mem < 0) {
		if (f != NULL)
			fclose(f);
		if (mem >= 0)
			close(mem);
		return -1;
	}
	while (fgets(line, sizeof(line), f) != NULL) {
		unsigned long a, b;
		char perms[8];

		if (sscanf(line, "%lx-%lx %7s", &a, &b, perms) == 3 && strchr(line, '-') != NULL &&
		    strncmp(line, "VmFlags", 7) != 0) {
			lo = a;
			hi = b;
			readable = perms[0] == 'r';
			skip = !readable || strstr(line, "[vvar]") != NULL ||
			       strstr(line, "[vsyscall]") != NULL || hi - lo > (1ul << 30);
			continue;
		}
		if (strncmp(line, "VmFlags:", 8) != 0 || skip || strstr(line, " dd") != NULL)
			continue;
		/* scan [lo, hi), chunks overlapping by SECRET_LEN */
		for (unsigned long p = lo; p < hi; p += 65536) {
			size_t want = hi - p > 65536 + SECRET_LEN ? 65536 + SECRET_LEN : hi - p;
			ssize_t n = pread(mem, chunk, want, (off_t)p);

			if (n > 0 && has_secret(chunk, (size_t)n))
				found++;
		}
	}
	fclose(f);
	close(mem);
	memset(chunk, 0, sizeof(chunk));
	return found;
}

static bool
memory_scan_possible(void)
{
	const char *pre = getenv("LD_PRELOAD");

#if defined(__SANITIZE_ADDRESS__)
	return false; /* the shadow and quarantine are not the server's */
#endif
#if defined(__has_feature)
#if __has_feature(address_sanitizer)
	return false;
#endif
#endif
	return pre == NULL || strstr(pre, "vgpreload") == NULL; /* valgrind */
}

START_TEST(test_sensitive_output_stays_in_dontdump_memory)
{
	int copies;

	secret = secbuf_alloc(SECRET_LEN);
	ck_assert_ptr_nonnull(secret);
	ck_assert_int_eq(RAND_bytes(secret, SECRET_LEN), 1);
	/* a sensitive call: its answer arrives, and no copy of the key is left
	 * anywhere but in MADV_DONTDUMP memory.  This needs BIND_NOW (see
	 * configure.ac and tests/hardening-flags.sh): with lazy binding, the
	 * first call of a function after the key went through memcpy() saves
	 * the vector registers, key bytes included, on the loop thread's
	 * stack. */
	secret_sensitive = true;
	ck_assert(fetch_secret_raw());
	wait_server_idle();
	if (!memory_scan_possible()) {
		fprintf(stderr, "test-grpc: memory scan skipped under valgrind/ASan\n");
		secbuf_free(secret, SECRET_LEN);
		return;
	}
	copies = secret_copies_outside_dontdump();
	ck_assert_int_eq(copies, 0);
	/* the same without grpc_call_set_sensitive() leaves copies: the scan
	 * does find them */
	secret_sensitive = false;
	ck_assert(fetch_secret_raw());
	wait_server_idle();
	copies = secret_copies_outside_dontdump();
	ck_assert_int_gt(copies, 0);
	secbuf_free(secret, SECRET_LEN);
}
END_TEST

/* ------------------------------------------------------- one user's share */

static void
shares_start(long first_request_timeout)
{
	/* a small socket (8 connections) so that the flood below would take
	 * all of it without a per-user share */
	struct grpc_limits lim = {.max_message = 64 * 1024,
	                          .max_connections = 8,
	                          .max_connections_per_uid = 4,
	                          .max_streams_per_uid = 3,
	                          .first_request_timeout = first_request_timeout};

	flood_size = 0;
	server_start(&lim);
	/* the flooding user must reach the socket */
	ck_assert_int_eq(chmod(fx.dir, 0755), 0);
	ck_assert_int_eq(chmod(fx.path, 0777), 0);
}

static void
setup_shares(void)
{
	shares_start(600);
}

static void
setup_first_request(void)
{
	shares_start(1);
}

/* As uid 65534, hold up to n connections open; report on res how many the
 * server kept (it closes the rest at once), then wait for a byte on go. */
static void
flood_as_nobody(int n, int res, int go)
{
	int fds[64], kept = 0, i;
	char b;

	if (setgroups(0, NULL) != 0 || setgid(65534) != 0 || setuid(65534) != 0)
		_exit(3);
	for (i = 0; i < n && i < 64; i++) {
		struct sockaddr_un sa = {.sun_family = AF_UNIX};

		fds[i] = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		strcpy(sa.sun_path, fx.path);
		if (fds[i] < 0 || connect(fds[i], (struct sockaddr *)&sa, sizeof(sa)) != 0)
			_exit(4);
	}
	/* a kept connection reads the server's SETTINGS; a refused one reads
	 * EOF: the server answers each at once */
	for (i = 0; i < n; i++) {
		struct pollfd p = {.fd = fds[i], .events = POLLIN};
		char buf[256];

		if (poll(&p, 1, 30 * 1000) == 1 && read(fds[i], buf, sizeof(buf)) > 0)
			kept++;
	}
	b = (char)kept;
	if (write(res, &b, 1) != 1 || read(go, &b, 1) < 0)
		_exit(5);
	_exit(0);
}

START_TEST(test_one_user_flooding_the_socket_leaves_room_for_others)
{
	const char *aud[] = {"root-still-served"};
	struct cubeid_wl_status st;
	struct cubeid_wl_jwt *j = NULL;
	int res[2], go[2], wst;
	char kept;
	pid_t pid;

	if (geteuid() != 0) {
		fprintf(stderr, "test-grpc: SKIP one-user flood: needs root to become uid 65534\n");
		return;
	}
	ck_assert_int_eq(pipe(res), 0);
	ck_assert_int_eq(pipe(go), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0)
		flood_as_nobody(20, res[1], go[0]);
	ck_assert_int_eq(read(res[0], &kept, 1), 1);
	/* the flooder got its share and no more ... */
	ck_assert_int_eq(kept, 4);
	ck_assert_uint_eq(server_connections(), 4);
	/* ... and another user is still served while it holds that */
	ck_assert_int_eq(cubeid_wl_fetch_jwt(&fx.opts, aud, 1, NULL, &j, &st), 0);
	ck_assert_str_eq(j->svids[0].token, "root-still-served");
	cubeid_wl_jwt_free(j);
	ck_assert_int_eq(write(go[1], "x", 1), 1);
	ck_assert_int_eq(waitpid(pid, &wst, 0), pid);
	ck_assert(WIFEXITED(wst) && WEXITSTATUS(wst) == 0);
	close(res[0]);
	close(res[1]);
	close(go[0]);
	close(go[1]);
}
END_TEST

START_TEST(test_connection_without_a_request_is_closed_early)
{
	int fd = raw_connect();
	struct pollfd p = {.fd = fd, .events = POLLIN};
	char buf[256];
	ssize_t n = 1;

	/* the server's SETTINGS come first; then, with no request sent, EOF
	 * after first_request_timeout (1 s), not after the idle timeout */
	while (n > 0) {
		ck_assert_int_eq(poll(&p, 1, 30 * 1000), 1);
		n = read(fd, buf, sizeof(buf));
	}
	ck_assert_int_eq(n, 0);
	close(fd);
	wait_server_idle();
}
END_TEST

static pthread_barrier_t share_barrier;

static int
hold_stream(const struct cubeid_wl_x509 *x, void *arg)
{
	int *n = arg;

	if (++*n < 3)
		return 0;
	pthread_barrier_wait(&share_barrier); /* streaming */
	pthread_barrier_wait(&share_barrier); /* main is done */
	return 1;
}

static void *
holder(void *arg)
{
	int n = 0;

	(void)arg;
	ck_assert_int_eq(cubeid_wl_watch_x509(&fx.opts, hold_stream, &n, NULL, NULL), 0);
	return NULL;
}

START_TEST(test_streams_over_the_users_share_are_refused)
{
	const char *aud[] = {"fourth"};
	struct cubeid_wl_status st;
	struct cubeid_wl_jwt *j = NULL;
	pthread_t t[3];
	int i;

	/* three streams on three connections: the user's whole share */
	ck_assert_int_eq(pthread_barrier_init(&share_barrier, NULL, 4), 0);
	for (i = 0; i < 3; i++)
		ck_assert_int_eq(pthread_create(&t[i], NULL, holder, NULL), 0);
	pthread_barrier_wait(&share_barrier);
	ck_assert_int_eq(atomic_load(&live_calls), 3);
	/* a fourth call by the same user is refused, on a fourth connection */
	ck_assert_int_lt(cubeid_wl_fetch_jwt(&fx.opts, aud, 1, NULL, &j, &st), 0);
	ck_assert_ptr_null(j);
	pthread_barrier_wait(&share_barrier);
	for (i = 0; i < 3; i++)
		pthread_join(t[i], NULL);
	wait_server_idle();
	/* the share is given back */
	ck_assert_int_eq(cubeid_wl_fetch_jwt(&fx.opts, aud, 1, NULL, &j, &st), 0);
	cubeid_wl_jwt_free(j);
	pthread_barrier_destroy(&share_barrier);
}
END_TEST

/* ------------------------------------------------------------- reflection */

/* A raw HTTP/2 client for one bidirectional stream at a time: requests go
 * out as they are written, answers are read frame by frame (HPACK decoded
 * by nghttp2's inflater, since the server's header blocks are compressed). */
struct rconn {
	int fd;
	nghttp2_hd_inflater *inf;
	uint8_t in[256 * 1024];
	size_t have;
	uint8_t msg[64 * 1024]; /* the stream's DATA payload, not yet framed */
	size_t mlen;
};

static void
rconn_open(struct rconn *rc)
{
	uint8_t b[64];
	size_t off;

	memset(rc, 0, sizeof(*rc));
	rc->fd = raw_h2_start(b, &off);
	ck_assert_int_ge(rc->fd, 0);
	ck_assert_int_eq(write(rc->fd, b, off), (ssize_t)off);
	ck_assert_int_eq(nghttp2_hd_inflate_new(&rc->inf), 0);
}

static void
rconn_close(struct rconn *rc)
{
	close(rc->fd);
	nghttp2_hd_inflate_del(rc->inf);
}

static void
rconn_headers(struct rconn *rc, uint32_t sid, const char *path)
{
	uint8_t b[512];
	size_t hb = 9, end = hb;

	put_hdr(b, &end, ":method", "POST");
	put_hdr(b, &end, ":scheme", "http");
	put_hdr(b, &end, ":path", path);
	put_hdr(b, &end, ":authority", "localhost");
	put_hdr(b, &end, "content-type", "application/grpc");
	put_hdr(b, &end, "te", "trailers");
	put_frame_hdr(b, end - hb, 0x1, 0x4, sid);
	ck_assert_int_eq(write(rc->fd, b, end), (ssize_t)end);
}

/* One gRPC message of n bytes on stream sid (end: with END_STREAM). */
static void
rconn_data(struct rconn *rc, uint32_t sid, const uint8_t *p, size_t n, bool end)
{
	uint8_t *b = malloc(9 + 5 + n);

	ck_assert_ptr_nonnull(b);
	put_frame_hdr(b, 5 + n, 0x0, end ? 0x1 : 0, sid);
	grpc_frame_header(b + 9, n);
	if (n > 0)
		memcpy(b + 14, p, n);
	ck_assert_int_eq(write(rc->fd, b, 14 + n), (ssize_t)(14 + n));
	free(b);
}

/* END_STREAM alone: the client half-closes stream sid. */
static void
rconn_end(struct rconn *rc, uint32_t sid)
{
	uint8_t b[9];

	put_frame_hdr(b, 0, 0x0, 0x1, sid);
	ck_assert_int_eq(write(rc->fd, b, 9), 9);
}

static void
rconn_request(struct rconn *rc, uint32_t sid,
              const Grpc__Reflection__V1__ServerReflectionRequest *rq, bool end)
{
	size_t n = grpc__reflection__v1__server_reflection_request__get_packed_size(rq);
	uint8_t *p = malloc(n + 1);

	ck_assert_ptr_nonnull(p);
	grpc__reflection__v1__server_reflection_request__pack(rq, p);
	rconn_data(rc, sid, p, n, end);
	free(p);
}

/* Whether a whole gRPC message is buffered. */
static bool
rconn_whole(const struct rconn *rc)
{
	return rc->mlen >= 5 &&
	       rc->mlen - 5 >= (((size_t)rc->msg[1] << 24) | ((size_t)rc->msg[2] << 16) |
	                        ((size_t)rc->msg[3] << 8) | rc->msg[4]);
}

/* The next thing on stream sid: a response message (returned, caller
 * frees), or NULL with *status set from the trailers (-1: the stream was
 * reset or the connection ended). */
static Grpc__Reflection__V1__ServerReflectionResponse *
rconn_next(struct rconn *rc, uint32_t sid, int *status)
{
	*status = -1;
	for (;;) {
		size_t pos = 0;

		/* a whole message buffered already? */
		if (rc->mlen >= 5) {
			size_t len = ((size_t)rc->msg[1] << 24) | ((size_t)rc->msg[2] << 16) |
			             ((size_t)rc->msg[3] << 8) | rc->msg[4];

			if (rc->mlen >= 5 + len) {
				Grpc__Reflection__V1__ServerReflectionResponse *r =
				        grpc__reflection__v1__server_reflection_response__unpack(
				                NULL, len, rc->msg + 5);

				ck_assert_ptr_nonnull(r);
				memmove(rc->msg, rc->msg + 5 + len, rc->mlen - 5 - len);
				rc->mlen -= 5 + len;
				return r;
			}
		}
		while (rc->have - pos >= 9) {
			const uint8_t *f = rc->in + pos;
			size_t len = ((size_t)f[0] << 16) | ((size_t)f[1] << 8) | f[2];
			uint8_t type = f[3], flags = f[4];
			uint32_t fsid = ((uint32_t)(f[5] & 0x7f) << 24) | ((uint32_t)f[6] << 16) |
			                ((uint32_t)f[7] << 8) | f[8];
			int st = -2;

			if (rc->have - pos < 9 + len)
				break;
			pos += 9 + len;
			if (type == 0x1) { /* HEADERS: decode, always (HPACK state) */
				const uint8_t *in = f + 9;
				size_t inlen = len;

				ck_assert_msg(flags & 0x4, "CONTINUATION is not expected here");
				if (flags & 0x8) { /* PADDED */
					inlen -= 1 + in[0];
					in++;
				}
				if (flags & 0x20) { /* PRIORITY */
					in += 5;
					inlen -= 5;
				}
				for (;;) {
					nghttp2_nv nv;
					int fl = 0;
					ssize_t used = nghttp2_hd_inflate_hd2(rc->inf, &nv, &fl, in,
					                                      inlen, 1);

					ck_assert_int_ge(used, 0);
					in += used;
					inlen -= (size_t)used;
					if (fl & NGHTTP2_HD_INFLATE_EMIT) {
						if (nv.namelen == 11 &&
						    memcmp(nv.name, "grpc-status", 11) == 0)
							st = atoi((const char *)nv.value);
					}
					if (fl & NGHTTP2_HD_INFLATE_FINAL) {
						nghttp2_hd_inflate_end_headers(rc->inf);
						break;
					}
					if (inlen == 0 && !(fl & NGHTTP2_HD_INFLATE_EMIT))
						break;
				}
				if (fsid == sid && st >= 0) {
					memmove(rc->in, rc->in + pos, rc->have - pos);
					rc->have -= pos;
					*status = st;
					return NULL;
				}
			} else if (type == 0x0 && fsid == sid) {
				ck_assert_uint_le(rc->mlen + len, sizeof(rc->msg));
				memcpy(rc->msg + rc->mlen, f + 9, len);
				rc->mlen += len;
				if (rconn_whole(rc))
					break; /* answer it before what follows */
			} else if ((type == 0x3 && fsid == sid) || type == 0x7) {
				memmove(rc->in, rc->in + pos, rc->have - pos);
				rc->have -= pos;
				return NULL; /* reset, or GOAWAY */
			}
		}
		memmove(rc->in, rc->in + pos, rc->have - pos);
		rc->have -= pos;
		if (rconn_whole(rc))
			continue;
		{
			struct pollfd p = {.fd = rc->fd, .events = POLLIN};
			ssize_t n;

			ck_assert_msg(poll(&p, 1, 30 * 1000) == 1, "no answer from the server");
			n = read(rc->fd, rc->in + rc->have, sizeof(rc->in) - rc->have);
			if (n <= 0)
				return NULL;
			rc->have += (size_t)n;
		}
	}
}

static bool
lists(const Grpc__Reflection__V1__ListServiceResponse *l, const char *name)
{
	size_t i;

	for (i = 0; i < l->n_service; i++)
		if (strcmp(l->service[i]->name, name) == 0)
			return true;
	return false;
}

/* list_services on path: the services of the table, reflection's own. */
static void
expect_list(struct rconn *rc, uint32_t sid)
{
	Grpc__Reflection__V1__ServerReflectionRequest rq =
	        GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__INIT;
	Grpc__Reflection__V1__ServerReflectionResponse *r;
	int st;

	rq.host = "localhost";
	rq.message_request_case =
	        GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_LIST_SERVICES;
	rq.list_services = "*";
	rconn_request(rc, sid, &rq, false);
	r = rconn_next(rc, sid, &st);
	ck_assert_msg(r != NULL, "no list_services answer (status %d)", st);
	ck_assert_int_eq(
	        r->message_response_case,
	        GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_LIST_SERVICES_RESPONSE);
	ck_assert_str_eq(r->valid_host, "localhost");
	ck_assert_ptr_nonnull(r->original_request);
	ck_assert_int_eq(r->original_request->message_request_case, rq.message_request_case);
	ck_assert_uint_eq(r->list_services_response->n_service, 3);
	ck_assert(lists(r->list_services_response, "SpiffeWorkloadAPI"));
	ck_assert(lists(r->list_services_response, "grpc.reflection.v1.ServerReflection"));
	ck_assert(lists(r->list_services_response, "grpc.reflection.v1alpha.ServerReflection"));
	/* PicoD's descriptors are there, but this server has none of its methods */
	ck_assert(!lists(r->list_services_response, "cubeid.picod.v1.PicoD"));
	grpc__reflection__v1__server_reflection_response__free_unpacked(r, NULL);
}

START_TEST(test_reflection_lists_describes_and_refuses_unknown_symbols_on_one_stream)
{
	Grpc__Reflection__V1__ServerReflectionRequest rq =
	        GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__INIT;
	Grpc__Reflection__V1__ServerReflectionResponse *r;
	Google__Protobuf__FileDescriptorProto *fd;
	struct rconn *rc = malloc(sizeof(*rc));
	bool svc = false;
	size_t i;
	int st;

	ck_assert_ptr_nonnull(rc);
	rconn_open(rc);
	/* v1: three requests on one stream, each answered before the next */
	rconn_headers(rc, 1, "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo");
	expect_list(rc, 1);

	rq.message_request_case =
	        GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_CONTAINING_SYMBOL;
	rq.file_containing_symbol = "SpiffeWorkloadAPI.FetchJWTSVID";
	rconn_request(rc, 1, &rq, false);
	r = rconn_next(rc, 1, &st);
	ck_assert_msg(r != NULL, "no file_containing_symbol answer (status %d)", st);
	ck_assert_int_eq(
	        r->message_response_case,
	        GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_FILE_DESCRIPTOR_RESPONSE);
	/* the file first, then its import */
	ck_assert_uint_eq(r->file_descriptor_response->n_file_descriptor_proto, 2);
	fd = google__protobuf__file_descriptor_proto__unpack(
	        NULL, r->file_descriptor_response->file_descriptor_proto[0].len,
	        r->file_descriptor_response->file_descriptor_proto[0].data);
	ck_assert_ptr_nonnull(fd);
	ck_assert_str_eq(fd->name, "workload.proto");
	for (i = 0; i < fd->n_service; i++)
		svc |= strcmp(fd->service[i]->name, "SpiffeWorkloadAPI") == 0;
	ck_assert(svc);
	google__protobuf__file_descriptor_proto__free_unpacked(fd, NULL);
	fd = google__protobuf__file_descriptor_proto__unpack(
	        NULL, r->file_descriptor_response->file_descriptor_proto[1].len,
	        r->file_descriptor_response->file_descriptor_proto[1].data);
	ck_assert_ptr_nonnull(fd);
	ck_assert_str_eq(fd->name, "google/protobuf/struct.proto");
	google__protobuf__file_descriptor_proto__free_unpacked(fd, NULL);
	grpc__reflection__v1__server_reflection_response__free_unpacked(r, NULL);

	rq.file_containing_symbol = "no.Such.Symbol";
	rconn_request(rc, 1, &rq, false);
	r = rconn_next(rc, 1, &st);
	ck_assert_msg(r != NULL, "no answer to an unknown symbol (status %d)", st);
	ck_assert_int_eq(
	        r->message_response_case,
	        GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_ERROR_RESPONSE);
	ck_assert_int_eq(r->error_response->error_code, GRPC_NOT_FOUND);
	ck_assert_ptr_nonnull(strstr(r->error_response->error_message, "no.Such.Symbol"));
	grpc__reflection__v1__server_reflection_response__free_unpacked(r, NULL);

	/* the client half-closes: the stream ends OK */
	rconn_end(rc, 1);
	ck_assert_ptr_null(rconn_next(rc, 1, &st));
	ck_assert_int_eq(st, GRPC_OK);

	/* v1alpha on the next stream, same wire format */
	rconn_headers(rc, 3, "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo");
	expect_list(rc, 3);
	rconn_end(rc, 3);
	ck_assert_ptr_null(rconn_next(rc, 3, &st));
	ck_assert_int_eq(st, GRPC_OK);
	rconn_close(rc);
	free(rc);
}
END_TEST

START_TEST(test_reflection_stream_is_bounded_in_requests_and_size)
{
	Grpc__Reflection__V1__ServerReflectionRequest rq =
	        GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__INIT;
	Grpc__Reflection__V1__ServerReflectionResponse *r;
	struct rconn *rc = malloc(sizeof(*rc));
	char *big = malloc(GRPC_REFLECTION_MAX_REQUEST + 1);
	unsigned i, answered = 0;
	int st;

	ck_assert_ptr_nonnull(rc);
	ck_assert_ptr_nonnull(big);
	rconn_open(rc);
	rconn_headers(rc, 1, "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo");
	rq.message_request_case =
	        GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_LIST_SERVICES;
	rq.list_services = "";
	for (i = 0; i <= GRPC_REFLECTION_MAX_REQUESTS; i++)
		rconn_request(rc, 1, &rq, false);
	while ((r = rconn_next(rc, 1, &st)) != NULL) {
		answered++;
		grpc__reflection__v1__server_reflection_response__free_unpacked(r, NULL);
	}
	ck_assert_msg(answered == GRPC_REFLECTION_MAX_REQUESTS, "answered %u, status %d", answered,
	              st);
	ck_assert_int_eq(st, GRPC_RESOURCE_EXHAUSTED);

	/* one request over the size limit ends its stream at once */
	memset(big, 'a', GRPC_REFLECTION_MAX_REQUEST);
	big[GRPC_REFLECTION_MAX_REQUEST] = '\0';
	rq.message_request_case =
	        GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_CONTAINING_SYMBOL;
	rq.file_containing_symbol = big;
	rconn_headers(rc, 3, "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo");
	rconn_request(rc, 3, &rq, false);
	ck_assert_ptr_null(rconn_next(rc, 3, &st));
	ck_assert_int_eq(st, GRPC_RESOURCE_EXHAUSTED);

	/* and a message that is not a request */
	rconn_headers(rc, 5, "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo");
	rconn_data(rc, 5, (const uint8_t *)"\xff\xff\xff", 3, false);
	ck_assert_ptr_null(rconn_next(rc, 5, &st));
	ck_assert_int_eq(st, GRPC_INVALID_ARGUMENT);
	rconn_close(rc);
	free(rc);
	free(big);
}
END_TEST

/* ---- fair turns by uid (agent/grpc-sched.c) ---- */

/* One FetchJWTSVID request for audience aud on stream sid, appended at *off. */
static void
put_jwt_request(uint8_t *b, size_t *off, uint32_t sid, const char *aud)
{
	static const char *const hdrs[] = {REQ_OK, NULL};
	size_t hb = *off + 9, end = hb, i, alen = strlen(aud);

	for (i = 0; hdrs[i] != NULL; i += 2)
		put_hdr(b, &end, hdrs[i], hdrs[i + 1]);
	put_frame_hdr(b + *off, end - hb, 0x1, 0x4, sid);
	*off = end;
	/* DATA: the gRPC prefix and JWTSVIDRequest{audience: aud} */
	put_frame_hdr(b + *off, 5 + 2 + alen, 0x0, 0x1, sid);
	end = *off + 9;
	b[end++] = 0;
	b[end++] = 0;
	b[end++] = 0;
	b[end++] = 0;
	b[end++] = (uint8_t)(2 + alen);
	b[end++] = 0x0a;
	b[end++] = (uint8_t)alen;
	memcpy(b + end, aud, alen);
	*off = end + alen;
}

/* Read fd until n responses ended (trailers: HEADERS with END_STREAM). */
static void
read_responses(int fd, int n)
{
	static uint8_t buf[1 << 16];
	size_t have = 0, pos;

	while (n > 0) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		ssize_t r;

		ck_assert_msg(poll(&p, 1, 60 * 1000) == 1, "no answer (%d to come)", n);
		r = read(fd, buf + have, sizeof(buf) - have);
		ck_assert_int_gt(r, 0);
		have += (size_t)r;
		for (pos = 0; have - pos >= 9;) {
			size_t len = ((size_t)buf[pos] << 16) | ((size_t)buf[pos + 1] << 8) |
			             buf[pos + 2];

			if (have - pos < 9 + len)
				break;
			if (buf[pos + 3] == 0x1 && (buf[pos + 4] & 0x1))
				n--;
			ck_assert_msg(buf[pos + 3] != 0x7 && buf[pos + 3] != 0x3,
			              "reset or GOAWAY");
			pos += 9 + len;
		}
		memmove(buf, buf + pos, have - pos);
		have -= pos;
	}
}

/* A connection made by uid 65534 (then handed over: SO_PEERCRED is fixed
 * at connect). */
static int
connect_as_nobody(void)
{
	int sv[2], fd = -1, wst;
	char cbuf[CMSG_SPACE(sizeof(int))], b = 'x';
	struct iovec iov = {.iov_base = &b, .iov_len = 1};
	struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
	struct cmsghdr *cm;
	pid_t pid;

	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		struct sockaddr_un sa = {.sun_family = AF_UNIX};

		if (setgroups(0, NULL) != 0 || setgid(65534) != 0 || setuid(65534) != 0)
			_exit(3);
		strcpy(sa.sun_path, fx.path);
		fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0)
			_exit(4);
		memset(cbuf, 0, sizeof(cbuf));
		mh.msg_control = cbuf;
		mh.msg_controllen = sizeof(cbuf);
		cm = CMSG_FIRSTHDR(&mh);
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(cm), &fd, sizeof(int));
		_exit(sendmsg(sv[1], &mh, 0) == 1 ? 0 : 5);
	}
	mh.msg_control = cbuf;
	mh.msg_controllen = sizeof(cbuf);
	ck_assert_int_eq(recvmsg(sv[0], &mh, 0), 1);
	cm = CMSG_FIRSTHDR(&mh);
	ck_assert_ptr_nonnull(cm);
	ck_assert_int_eq(cm->cmsg_type, SCM_RIGHTS);
	memcpy(&fd, CMSG_DATA(cm), sizeof(int));
	ck_assert_int_eq(waitpid(pid, &wst, 0), pid);
	ck_assert(WIFEXITED(wst) && WEXITSTATUS(wst) == 0);
	close(sv[0]);
	close(sv[1]);
	return fd;
}

/* Holds the loop thread (posted to it) until released. */
struct loop_hold {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool held, released;
};

static void
loop_hold_fn(void *arg)
{
	struct loop_hold *h = arg;

	pthread_mutex_lock(&h->mu);
	h->held = true;
	pthread_cond_broadcast(&h->cv);
	while (!h->released)
		pthread_cond_wait(&h->cv, &h->mu);
	pthread_mutex_unlock(&h->mu);
}

START_TEST(test_a_flooding_uid_is_served_after_other_uids)
{
	static uint8_t b[1 << 16];
	struct loop_hold h = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, false, false};
	size_t off = 0;
	uint32_t sid;
	int nob, rt;

	if (geteuid() != 0) {
		fprintf(stderr, "test-grpc: SKIP fair turns: needs root to become uid 65534\n");
		return;
	}
	nob = connect_as_nobody();
	rt = raw_connect();
	/* root only opens its connection; uid 65534 floods the loop with 200
	 * requests first (all answered: the flood was served, and charged) */
	put_h2_start(b, &off);
	ck_assert_int_eq(write(rt, b, off), (ssize_t)off);
	off = 0;
	put_h2_start(b, &off);
	for (sid = 1; sid <= 399; sid += 2)
		put_jwt_request(b, &off, sid, "flood");
	ck_assert_int_eq(write(nob, b, off), (ssize_t)off);
	read_responses(nob, 200);
	/* With the loop held, uid 65534's request is written first and
	 * root's second: both are ready when the loop looks again, and the
	 * uid that cost the loop less (root) must be served first. */
	ck_assert_int_eq(loop_post(fx.l, loop_hold_fn, &h), 0);
	pthread_mutex_lock(&h.mu);
	while (!h.held)
		pthread_cond_wait(&h.cv, &h.mu);
	pthread_mutex_unlock(&h.mu);
	pthread_mutex_lock(&served_mu);
	served[0] = '\0';
	pthread_mutex_unlock(&served_mu);
	off = 0;
	put_jwt_request(b, &off, 401, "nobody");
	ck_assert_int_eq(write(nob, b, off), (ssize_t)off);
	off = 0;
	put_jwt_request(b, &off, 1, "root");
	ck_assert_int_eq(write(rt, b, off), (ssize_t)off);
	pthread_mutex_lock(&h.mu);
	h.released = true;
	pthread_cond_broadcast(&h.cv);
	pthread_mutex_unlock(&h.mu);
	/* both are served: the flooder waits, it is not refused */
	read_responses(rt, 1);
	read_responses(nob, 1);
	pthread_mutex_lock(&served_mu);
	ck_assert_str_eq(served, "root;nobody;");
	pthread_mutex_unlock(&served_mu);
	close(nob);
	close(rt);
	wait_server_idle();
}
END_TEST

/* The turn order's arithmetic, with the clock given: a cost halves every
 * GRPC_COST_HALF_LIFE_MS, so two costs keep their order; a uid dropped for
 * abuse holds its new connections 10, 20, 40, 80, then 100 ms, and is
 * forgiven GRPC_STRIKES_FORGET_MS after its last drop. */
START_TEST(test_uid_costs_decay_and_abuse_holds_are_bounded)
{
	const uint64_t ms = 1000000u, t0 = 5000 * ms;
	struct grpc_peer a, b;
	static const long want[] = {10, 20, 40, 80, 100, 100, 100};
	size_t i;

	memset(&a, 0, sizeof(a));
	memset(&b, 0, sizeof(b));
	grpc_peer_charge(&a, 8000000, t0);
	grpc_peer_charge(&b, 2000000, t0);
	ck_assert(grpc_peer_cost(&a, t0 + GRPC_COST_HALF_LIFE_MS * ms) == 4000000.0);
	ck_assert(grpc_peer_cost(&b, t0 + 2 * GRPC_COST_HALF_LIFE_MS * ms) == 500000.0);
	ck_assert(grpc_peer_cost(&a, t0 + 2 * GRPC_COST_HALF_LIFE_MS * ms) >
	          grpc_peer_cost(&b, t0 + 2 * GRPC_COST_HALF_LIFE_MS * ms));
	/* forgotten after enough half-lives */
	ck_assert(grpc_peer_cost(&a, t0 + 64 * GRPC_COST_HALF_LIFE_MS * ms) == 0.0);

	ck_assert_int_eq(grpc_peer_hold_ms(&a, t0), 0);
	for (i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		grpc_peer_strike(&a, t0 + i * ms);
		ck_assert_int_eq(grpc_peer_hold_ms(&a, t0 + i * ms), want[i]);
	}
	ck_assert_int_eq(grpc_peer_hold_ms(&a, t0 + (i + 100) * ms), 0);
	/* a drop long after the last starts from the shortest hold again */
	grpc_peer_strike(&a, t0 + (GRPC_STRIKES_FORGET_MS + 100) * ms);
	ck_assert_int_eq(grpc_peer_hold_ms(&a, t0 + (GRPC_STRIKES_FORGET_MS + 100) * ms), 10);
}
END_TEST

static void
setup_fair(void)
{
	struct grpc_limits lim = {.max_message = 64 * 1024};

	flood_size = 0;
	server_start(&lim);
	/* uid 65534 must reach the socket */
	ck_assert_int_eq(chmod(fx.dir, 0755), 0);
	ck_assert_int_eq(chmod(fx.path, 0777), 0);
}

static Suite *
grpc_suite(void)
{
	Suite *s = suite_create("grpc");
	TCase *tc = tcase_create("server");
	TCase *slow = tcase_create("slow-client");
	TCase *shares = tcase_create("shares");
	TCase *first = tcase_create("first-request");
	TCase *fair = tcase_create("fair-turns");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_unary_fetch_jwt_echoes_audiences);
	tcase_add_test(tc, test_socket_from_environment);
	tcase_add_test(tc, test_malformed_tcp_endpoints_are_refused_with_a_reason);
	tcase_add_test(tc, test_tcp_endpoint_reaches_the_server);
	tcase_add_test(tc, test_watch_takes_an_emptied_field_as_empty);
	tcase_add_test(tc, test_missing_security_header_is_invalid_argument);
	tcase_add_test(tc, test_status_and_encoded_message_reach_the_client);
	tcase_add_test(tc, test_deeply_nested_claims_are_refused);
	tcase_add_test(tc, test_unknown_method_is_unimplemented);
	tcase_add_test(tc, test_stream_delivers_three_messages_in_order_and_cancel_frees_the_call);
	tcase_add_test(tc, test_fetch_x509_returns_the_first_message);
	tcase_add_test(tc, test_watch_stops_on_the_stop_flag);
	tcase_add_test(tc, test_oversize_request_is_resource_exhausted);
	tcase_add_test(tc, test_hundred_concurrent_streams_then_all_disconnect);
	tcase_add_test(tc, test_garbage_on_the_socket_is_refused_and_server_survives);
	tcase_add_test(tc, test_no_listener_is_unavailable);
	tcase_add_test(tc, test_reused_connection_serves_every_call_and_reconnects);
	tcase_add_test(tc, test_sensitive_output_stays_in_dontdump_memory);
	tcase_add_test(tc, test_hpack_bomb_drops_the_connection);
	tcase_add_test(tc, test_rapid_reset_gets_goaway);
	tcase_add_test(tc, test_a_grpc_go_goodbye_is_not_charged_as_abuse);
	tcase_add_test(tc,
	               test_every_unix_socket_authority_is_served_and_malformed_requests_are_reset);
	tcase_add_test(tc, test_resets_and_protocol_errors_are_logged_rate_limited_and_counted);
	tcase_add_test(tc,
	               test_reflection_lists_describes_and_refuses_unknown_symbols_on_one_stream);
	tcase_add_test(tc, test_reflection_stream_is_bounded_in_requests_and_size);
	suite_add_tcase(s, tc);
	tcase_add_checked_fixture(slow, setup_small_backlog, teardown);
	tcase_add_test(slow, test_output_backlog_over_the_limit_drops_the_client);
	suite_add_tcase(s, slow);
	tcase_add_checked_fixture(shares, setup_shares, teardown);
	tcase_add_test(shares, test_one_user_flooding_the_socket_leaves_room_for_others);
	tcase_add_test(shares, test_streams_over_the_users_share_are_refused);
	suite_add_tcase(s, shares);
	tcase_add_checked_fixture(first, setup_first_request, teardown);
	tcase_add_test(first, test_connection_without_a_request_is_closed_early);
	suite_add_tcase(s, first);
	tcase_add_checked_fixture(fair, setup_fair, teardown);
	tcase_add_test(fair, test_a_flooding_uid_is_served_after_other_uids);
	tcase_add_test(fair, test_uid_costs_decay_and_abuse_holds_are_bounded);
	suite_add_tcase(s, fair);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(grpc_suite());
	int failed;

	signal(SIGPIPE, SIG_IGN);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
