# spiffe/: the identity model (SPIFFE IDs, JWS/JWT-SVIDs, JWKS and bundles).
libcubeid_la_SOURCES += \
	spiffe/spiffe-id.c \
	spiffe/b64url.c \
	spiffe/jws.c \
	spiffe/jwks.c \
	spiffe/bundle.c \
	spiffe/jwt-svid.c \
	spiffe/jwt-svid-mint.c \
	spiffe/jwt-internal.h
cubeidinclude_HEADERS += include/cubeid/spiffe.h include/cubeid/jwt.h

check_PROGRAMS += tests/test-spiffe-id
tests_test_spiffe_id_SOURCES = tests/test-spiffe-id.c
tests_test_spiffe_id_CFLAGS = $(TEST_CFLAGS)
tests_test_spiffe_id_LDADD = $(TEST_LIBS)
TESTS += tests/test-spiffe-id

check_PROGRAMS += tests/test-jws
tests_test_jws_SOURCES = tests/test-jws.c
tests_test_jws_CFLAGS = $(TEST_CFLAGS) $(LIBJWT_CFLAGS)
tests_test_jws_LDADD = $(TEST_LIBS) $(LIBJWT_LIBS)
TESTS += tests/test-jws

check_PROGRAMS += tests/test-jwks
tests_test_jwks_SOURCES = tests/test-jwks.c
tests_test_jwks_CFLAGS = $(TEST_CFLAGS)
tests_test_jwks_LDADD = $(TEST_LIBS)
TESTS += tests/test-jwks

# The CA chain in the token, X.509-SVIDs and X.509 bundles.
libcubeid_la_SOURCES += \
	spiffe/ca.c \
	spiffe/state.c \
	spiffe/x509-build.c \
	spiffe/x509-pem.c \
	spiffe/x509-verify.c \
	spiffe/x509svid.c \
	spiffe/x509-internal.h
cubeidinclude_HEADERS += include/cubeid/ca.h include/cubeid/x509svid.h

# JWT-SVID signing keys with rollover (STATE-DIR/jwt.conf).
libcubeid_la_SOURCES += spiffe/jwt-keys.c
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
tests_test_jwt_mint_SOURCES = tests/test-jwt-mint.c
tests_test_jwt_mint_CFLAGS = $(TEST_CFLAGS) $(LIBJWT_CFLAGS)
tests_test_jwt_mint_LDADD = $(TEST_LIBS) $(LIBJWT_LIBS)
TESTS += tests/test-jwt-mint

# Interop with real go-spiffe v2 and OpenSSL, both directions (CLI-level;
# needs cli/cubeid and tests/mktoken).  Skips (77) without Go, except
# with CI=true, where that fails.
TESTS += tests/interop-spiffe.sh
EXTRA_DIST += tests/interop-spiffe.sh

# PicoD tokens (issue 6): sandbox audiences, the claims, the verifier.
libcubeid_la_SOURCES += spiffe/picod-claims.c spiffe/picod-verify.c
cubeidinclude_HEADERS += include/cubeid/picod.h

check_PROGRAMS += tests/test-picod
tests_test_picod_SOURCES = tests/test-picod.c
tests_test_picod_CFLAGS = $(TEST_CFLAGS)
tests_test_picod_LDADD = $(TEST_LIBS)
TESTS += tests/test-picod
# Cluster trust: key publications, the cluster view, the publication stores
# (a shared directory, Kubernetes ConfigMaps).  docs/cluster.md.
libcubeid_la_SOURCES += \
	spiffe/cluster-pub.c \
	spiffe/cluster-view.c \
	spiffe/cluster-store.c \
	spiffe/cluster-store.h \
	spiffe/cluster-k8s.c \
	spiffe/picod-jwks-file.c
cubeidinclude_HEADERS += include/cubeid/cluster.h

check_PROGRAMS += tests/test-cluster
tests_test_cluster_SOURCES = tests/test-cluster.c
tests_test_cluster_CFLAGS = $(TEST_CFLAGS)
tests_test_cluster_LDADD = $(TEST_LIBS)
TESTS += tests/test-cluster
