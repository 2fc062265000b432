# picod/: PicoD tokens (issue 6), the library side.  The claims and the
# sandbox verifier (PicoD's side), the Router's client for the agent's
# cubeid.picod.v1.PicoD service with its .proto file, the JWKS file key
# source, and the mtls|jwt auth-mode switch.  The service itself is in the
# agent (agent/picod.mk).  Uses common/, pkcs11/, spiffe/ and tls/.

# Sandbox audiences, the claims, the verifier; a JWKS file as a key source.
libcubeid_internal_la_SOURCES += picod/picod-claims.c picod/picod-verify.c picod/picod-jwks-file.c
cubeidinclude_HEADERS += include/cubeid/picod.h

check_PROGRAMS += tests/test-picod
tests_test_picod_SOURCES = tests/test-picod.c tests/ecdsa-test-util.h
tests_test_picod_CFLAGS = $(TEST_CFLAGS)
tests_test_picod_LDADD = $(TEST_LIBS)
TESTS += tests/test-picod

# PicoD tokens, the Router side: MintToken/PublicKey/RotateKey on the agent;
# the mtls|jwt auth-mode switch for both sides (include/cubeid/picod-auth.h).
libcubeid_internal_la_SOURCES += picod/picod-client.c picod/picod-auth.c
cubeidinclude_HEADERS += include/cubeid/picod-auth.h

# The cubeid.picod.v1.PicoD messages, compiled by protoc-c into libcubeid
# (picod/picod.pb-c.[ch] in the build tree); the agent serves them.
EXTRA_DIST += picod/picod.proto
PICOD_PROTO_GEN = picod/picod.pb-c.c picod/picod.pb-c.h
BUILT_SOURCES += $(PICOD_PROTO_GEN)
CLEANFILES += $(PICOD_PROTO_GEN)
nodist_libcubeid_internal_la_SOURCES += $(PICOD_PROTO_GEN)
picod/picod.pb-c.h: picod/picod.pb-c.c
picod/picod.pb-c.c: $(srcdir)/picod/picod.proto
	$(AM_V_GEN)$(MKDIR_P) picod && \
		$(PROTOC_C) -I$(srcdir)/picod --c_out=picod $(srcdir)/picod/picod.proto

# The mtls|jwt switch (include/cubeid/picod-auth.h) in a C Router and PicoD
# over TCP: each mode, the Router-only allow-list, and a mismatch.
check_PROGRAMS += tests/picod-auth-peer
tests_picod_auth_peer_SOURCES = tests/picod-auth-peer.c
tests_picod_auth_peer_CFLAGS = $(TEST_CFLAGS)
tests_picod_auth_peer_LDADD = $(PUBLIC_LIBS)
TESTS += tests/picod-auth.sh
EXTRA_DIST += tests/picod-auth.sh

