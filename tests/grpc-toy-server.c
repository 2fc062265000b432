/*
 * grpc-toy-server SOCKET: the agent's gRPC server (agent/grpc-server.c) with
 * canned but well-formed Workload API answers, so that a real gRPC client
 * (go-spiffe's workloadapi on grpc-go, tests/grpc-interop.sh) proves the
 * HTTP/2 and gRPC framing interoperate.  Not the agent: no attestation, no
 * token; the JWT-SVID it hands out has a dummy signature.
 *
 *   FetchX509SVID     one message with no SVIDs, then the stream stays open
 *   FetchX509Bundles  a self-signed P-256 CA certificate for example.org
 *   FetchJWTBundles   a JWKS with one EC key (kid "1", RFC 7517 A.1)
 *   FetchJWTSVID      spiffe://example.org/toy for the requested audiences
 *   ValidateJWTSVID   the token's claims; PermissionDenied for audience "deny"
 *   anything else     Unimplemented (FetchWITSVID, FetchWITBundles)
 *
 * Every call needs "workload.spiffe.io: true" (else InvalidArgument).
 * SIGTERM/SIGINT stop it.
 */
#include "config.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "agent/agent.h"
#include "spiffe/workload.pb-c.h"

#define TD_ID   "spiffe://example.org"
#define SVID_ID "spiffe://example.org/toy"

static cubeid_loop *loop;
static uint8_t *ca_der;
static int ca_der_len;

static const char jwks[] =
        "{\"keys\":[{\"kty\":\"EC\",\"crv\":\"P-256\",\"use\":\"jwt-svid\",\"kid\":\"1\","
        "\"x\":\"MKBCTNIcKUSDii11ySs3526iDZ8AiTo7Tu6KPAqv7D4\","
        "\"y\":\"4Etl6SRW2YiLUrN5vfvVHuhp7x8PxltmWWlbbM4IFyM\"}]}";

static int
make_ca(void)
{
	EVP_PKEY *k = EVP_EC_gen("P-256");
	X509 *x = X509_new();
	X509_NAME *n;
	int ok = 0;

	if (k == NULL || x == NULL)
		goto out;
	X509_set_version(x, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
	X509_gmtime_adj(X509_getm_notBefore(x), -60);
	X509_gmtime_adj(X509_getm_notAfter(x), 24 * 3600);
	n = X509_get_subject_name(x);
	X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)"toy CA", -1, -1,
	                           0);
	X509_set_issuer_name(x, n);
	X509_set_pubkey(x, k);
	if (X509_sign(x, k, EVP_sha256()) <= 0)
		goto out;
	ca_der = NULL;
	ca_der_len = i2d_X509(x, &ca_der);
	ok = ca_der_len > 0;
out:
	X509_free(x);
	EVP_PKEY_free(k);
	return ok ? 0 : -1;
}

static bool
checked(grpc_call *c)
{
	const char *v = grpc_call_metadata(c, "workload.spiffe.io");

	if (v != NULL && strcmp(v, "true") == 0)
		return true;
	grpc_call_finish(c, GRPC_INVALID_ARGUMENT, "security header missing from request");
	return false;
}

static void
send_msg(grpc_call *c, const ProtobufCMessage *m)
{
	uint8_t buf[8192];
	size_t len = protobuf_c_message_get_packed_size(m);

	if (len > sizeof(buf)) {
		grpc_call_finish(c, GRPC_INTERNAL, "toy response too large");
		return;
	}
	protobuf_c_message_pack(m, buf);
	grpc_call_send(c, buf, len);
}

static void
h_x509(grpc_call *c, void *ctx)
{
	X509SVIDResponse resp = X509_SVIDRESPONSE__INIT;

	if (checked(c))
		send_msg(c, &resp.base); /* stream stays open until the client goes */
}

static void
h_x509_bundles(grpc_call *c, void *ctx)
{
	X509BundlesResponse resp = X509_BUNDLES_RESPONSE__INIT;
	X509BundlesResponse__BundlesEntry e = X509_BUNDLES_RESPONSE__BUNDLES_ENTRY__INIT,
	                                  *es[] = {&e};

	if (!checked(c))
		return;
	e.key = TD_ID;
	e.value = (ProtobufCBinaryData){(size_t)ca_der_len, ca_der};
	resp.n_bundles = 1;
	resp.bundles = es;
	send_msg(c, &resp.base);
}

static void
h_jwt_bundles(grpc_call *c, void *ctx)
{
	JWTBundlesResponse resp = JWTBUNDLES_RESPONSE__INIT;
	JWTBundlesResponse__BundlesEntry e = JWTBUNDLES_RESPONSE__BUNDLES_ENTRY__INIT, *es[] = {&e};

	if (!checked(c))
		return;
	e.key = TD_ID;
	e.value = (ProtobufCBinaryData){sizeof(jwks) - 1, (uint8_t *)jwks};
	resp.n_bundles = 1;
	resp.bundles = es;
	send_msg(c, &resp.base);
}

static void
b64url(const char *in, size_t len, char *out)
{
	int n = EVP_EncodeBlock((unsigned char *)out, (const unsigned char *)in, (int)len), i,
	    o = 0;

	for (i = 0; i < n; i++) {
		if (out[i] == '=')
			break;
		out[o++] = out[i] == '+' ? '-' : out[i] == '/' ? '_' : out[i];
	}
	out[o] = '\0';
}

static void
h_jwt(grpc_call *c, void *ctx)
{
	static const char hdr[] = "{\"alg\":\"ES256\",\"kid\":\"1\",\"typ\":\"JWT\"}";
	JWTSVIDResponse resp = JWTSVIDRESPONSE__INIT;
	JWTSVID svid = JWTSVID__INIT, *svids[] = {&svid};
	JWTSVIDRequest *req;
	const uint8_t *msg;
	char claims[1024], aud[512] = "", token[2048], sig[128], zero[64] = {0};
	size_t len, i, o;

	if (!checked(c))
		return;
	msg = grpc_call_request(c, &len);
	if ((req = jwtsvidrequest__unpack(NULL, len, msg)) == NULL || req->n_audience == 0) {
		grpc_call_finish(c, GRPC_INVALID_ARGUMENT, "audience required");
		goto out;
	}
	for (i = 0; i < req->n_audience; i++)
		snprintf(aud + strlen(aud), sizeof(aud) - strlen(aud), "%s\"%s\"", i ? "," : "",
		         req->audience[i]);
	snprintf(claims, sizeof(claims), "{\"sub\":\"%s\",\"aud\":[%s],\"exp\":%lld,\"iat\":%lld}",
	         SVID_ID, aud, (long long)time(NULL) + 3600, (long long)time(NULL));
	b64url(hdr, sizeof(hdr) - 1, token);
	o = strlen(token);
	token[o++] = '.';
	b64url(claims, strlen(claims), token + o);
	o = strlen(token);
	token[o++] = '.';
	b64url(zero, sizeof(zero), sig);
	snprintf(token + o, sizeof(token) - o, "%s", sig);
	svid.spiffe_id = SVID_ID;
	svid.svid = token;
	resp.n_svids = 1;
	resp.svids = svids;
	send_msg(c, &resp.base);
	grpc_call_finish(c, GRPC_OK, NULL);
out:
	jwtsvidrequest__free_unpacked(req, NULL);
}

static void
h_validate(grpc_call *c, void *ctx)
{
	ValidateJWTSVIDResponse resp = VALIDATE_JWTSVIDRESPONSE__INIT;
	Google__Protobuf__Struct st = GOOGLE__PROTOBUF__STRUCT__INIT;
	Google__Protobuf__Struct__FieldsEntry f = GOOGLE__PROTOBUF__STRUCT__FIELDS_ENTRY__INIT;
	Google__Protobuf__Struct__FieldsEntry *fs[] = {&f};
	Google__Protobuf__Value v = GOOGLE__PROTOBUF__VALUE__INIT;
	ValidateJWTSVIDRequest *req;
	const uint8_t *msg;
	size_t len;

	if (!checked(c))
		return;
	msg = grpc_call_request(c, &len);
	if ((req = validate_jwtsvidrequest__unpack(NULL, len, msg)) == NULL) {
		grpc_call_finish(c, GRPC_INVALID_ARGUMENT, "bad request");
		return;
	}
	if (strcmp(req->audience, "deny") == 0) {
		grpc_call_finish(c, GRPC_PERMISSION_DENIED, "audience \"deny\" is refused");
	} else {
		v.kind_case = GOOGLE__PROTOBUF__VALUE__KIND_STRING_VALUE;
		v.string_value = SVID_ID;
		f.key = "sub";
		f.value = &v;
		st.n_fields = 1;
		st.fields = fs;
		resp.spiffe_id = SVID_ID;
		resp.claims = &st;
		send_msg(c, &resp.base);
		grpc_call_finish(c, GRPC_OK, NULL);
	}
	validate_jwtsvidrequest__free_unpacked(req, NULL);
}

static const struct grpc_method methods[] = {
        {"/SpiffeWorkloadAPI/FetchX509SVID", true, h_x509},
        {"/SpiffeWorkloadAPI/FetchX509Bundles", true, h_x509_bundles},
        {"/SpiffeWorkloadAPI/FetchJWTBundles", true, h_jwt_bundles},
        {"/SpiffeWorkloadAPI/FetchJWTSVID", false, h_jwt},
        {"/SpiffeWorkloadAPI/ValidateJWTSVID", false, h_validate},
};

static void
on_signal(int sig)
{
	loop_stop(loop);
}

int
main(int argc, char **argv)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	struct sigaction act = {0};
	grpc_server *srv = NULL;
	int fd;

	if (argc != 2 || strlen(argv[1]) >= sizeof(sa.sun_path)) {
		fprintf(stderr, "usage: grpc-toy-server SOCKET\n");
		return 2;
	}
	if (make_ca() < 0) {
		fprintf(stderr, "grpc-toy-server: cannot make the CA certificate\n");
		return 1;
	}
	strcpy(sa.sun_path, argv[1]);
	unlink(argv[1]);
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0 ||
	    bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 128) < 0) {
		perror("grpc-toy-server: socket");
		return 1;
	}
	if (loop_new(&loop) < 0 ||
	    grpc_server_new(loop, methods, sizeof(methods) / sizeof(methods[0]), NULL, NULL, &srv) <
	            0 ||
	    grpc_server_listen_fd(srv, fd) < 0) {
		fprintf(stderr, "grpc-toy-server: cannot start the server\n");
		return 1;
	}
	act.sa_handler = on_signal;
	sigaction(SIGTERM, &act, NULL);
	sigaction(SIGINT, &act, NULL);
	signal(SIGPIPE, SIG_IGN);
	printf("ready %s\n", argv[1]);
	fflush(stdout);
	loop_run(loop);
	grpc_server_free(srv);
	loop_free(loop);
	close(fd);
	unlink(argv[1]);
	OPENSSL_free(ca_der);
	return 0;
}
