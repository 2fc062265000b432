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
