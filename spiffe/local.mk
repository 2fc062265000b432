# spiffe/: the identity model (SPIFFE IDs, JWS/JWT-SVIDs, JWKS and bundles,
# the CA, X.509-SVIDs) and the Workload API client with its .proto file.
# In libcubeid; uses common/ and pkcs11/ (docs/design.md, "Layout").
libcubeid_internal_la_SOURCES += \
	spiffe/spiffe-id.c \
	spiffe/jws.c \
	spiffe/jwks.c \
	spiffe/bundle.c \
	spiffe/jwt-svid.c \
	spiffe/jwt-svid-mint.c \
	spiffe/jwt-internal.h
cubeidinclude_HEADERS += include/cubeid/spiffe.h include/cubeid/jwt.h

# The wrapped-key document (<cubeid/key-wrap.h>): kids and JSON around the
# blobs that pkcs11/p11-wrap.c wraps in the token.
libcubeid_internal_la_SOURCES += spiffe/key-wrap-doc.c
cubeidinclude_HEADERS += include/cubeid/key-wrap.h

check_PROGRAMS += tests/test-spiffe-id
tests_test_spiffe_id_SOURCES = tests/test-spiffe-id.c
tests_test_spiffe_id_CFLAGS = $(TEST_CFLAGS)
tests_test_spiffe_id_LDADD = $(TEST_LIBS)
TESTS += tests/test-spiffe-id

check_PROGRAMS += tests/test-jws
tests_test_jws_SOURCES = tests/test-jws.c tests/ecdsa-test-util.h
tests_test_jws_CFLAGS = $(TEST_CFLAGS) $(LIBJWT_CFLAGS)
tests_test_jws_LDADD = $(TEST_LIBS) $(LIBJWT_LIBS)
TESTS += tests/test-jws

check_PROGRAMS += tests/test-jwks
tests_test_jwks_SOURCES = tests/test-jwks.c
tests_test_jwks_CFLAGS = $(TEST_CFLAGS)
tests_test_jwks_LDADD = $(TEST_LIBS)
TESTS += tests/test-jwks

# The CA chain in the token, X.509-SVIDs and X.509 bundles.
libcubeid_internal_la_SOURCES += \
	spiffe/ca.c \
	spiffe/ca-enrol.c \
	spiffe/state.c \
	spiffe/x509-build.c \
	spiffe/x509-pem.c \
	spiffe/x509-verify.c \
	spiffe/x509svid.c \
	spiffe/x509-internal.h
cubeidinclude_HEADERS += include/cubeid/ca.h include/cubeid/x509svid.h

# JWT-SVID signing keys with rollover (STATE-DIR/jwt.conf).
libcubeid_internal_la_SOURCES += spiffe/jwt-keys.c
cubeidinclude_HEADERS += include/cubeid/jwt-keys.h

check_PROGRAMS += tests/test-jwt-keys
tests_test_jwt_keys_SOURCES = tests/test-jwt-keys.c
tests_test_jwt_keys_CFLAGS = $(TEST_CFLAGS)
tests_test_jwt_keys_LDADD = $(TEST_LIBS)
TESTS += tests/test-jwt-keys

check_PROGRAMS += tests/test-ca tests/test-x509svid
tests_test_ca_SOURCES = tests/test-ca.c tests/x509-test-util.c tests/x509-test-util.h
tests_test_ca_CFLAGS = $(TEST_CFLAGS)
tests_test_ca_LDADD = $(TEST_LIBS)
tests_test_x509svid_SOURCES = tests/test-x509svid.c tests/x509-test-util.c tests/x509-test-util.h
tests_test_x509svid_CFLAGS = $(TEST_CFLAGS)
tests_test_x509svid_LDADD = $(TEST_LIBS)
TESTS += tests/test-ca tests/test-x509svid

check_PROGRAMS += tests/test-jwt-mint
tests_test_jwt_mint_SOURCES = tests/test-jwt-mint.c tests/ecdsa-test-util.h
tests_test_jwt_mint_CFLAGS = $(TEST_CFLAGS) $(LIBJWT_CFLAGS)
tests_test_jwt_mint_LDADD = $(TEST_LIBS) $(LIBJWT_LIBS)
TESTS += tests/test-jwt-mint

# Interop with real go-spiffe v2 and OpenSSL, both directions (CLI-level;
# needs cli/cubeid and tests/mktoken).  Skips (77) without Go, except
# with CI=true, where that fails.
TESTS += tests/interop-spiffe.sh
EXTRA_DIST += tests/interop-spiffe.sh

# The Workload API client (include/cubeid/workloadapi.h) over the gRPC
# framing in common/.
libcubeid_internal_la_SOURCES += spiffe/workloadapi-client.c spiffe/workloadapi.c \
	spiffe/workloadapi-endpoint.c \
	spiffe/workloadapi-internal.h
cubeidinclude_HEADERS += include/cubeid/workloadapi.h

# The SPIFFE Workload API messages, compiled by protoc-c into the build tree:
# spiffe/workload.pb-c.[ch] and google/protobuf/struct.pb-c.[ch] (found
# through -I$(top_builddir)).  They go into libcubeid: the client
# below needs them, and the agent's server links them from there.
EXTRA_DIST += spiffe/workload.proto
PROTO_GEN = spiffe/workload.pb-c.c spiffe/workload.pb-c.h \
	google/protobuf/struct.pb-c.c google/protobuf/struct.pb-c.h
BUILT_SOURCES = $(PROTO_GEN)
CLEANFILES += $(PROTO_GEN)
nodist_libcubeid_internal_la_SOURCES = $(PROTO_GEN)

spiffe/workload.pb-c.h: spiffe/workload.pb-c.c
spiffe/workload.pb-c.c: $(srcdir)/spiffe/workload.proto
	$(AM_V_GEN)$(MKDIR_P) spiffe && \
		$(PROTOC_C) -I$(srcdir)/spiffe -I$(PROTO_INCLUDE) --c_out=spiffe $(srcdir)/spiffe/workload.proto
google/protobuf/struct.pb-c.h: google/protobuf/struct.pb-c.c
google/protobuf/struct.pb-c.c: $(PROTO_INCLUDE)/google/protobuf/struct.proto
	$(AM_V_GEN)$(MKDIR_P) google/protobuf && \
		$(PROTOC_C) -I$(PROTO_INCLUDE) --c_out=. google/protobuf/struct.proto
