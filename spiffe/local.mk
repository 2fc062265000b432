# spiffe/: the identity model (SPIFFE IDs, JWS/JWT-SVIDs, JWKS and bundles).
libcubeid_la_SOURCES += \
	spiffe/spiffe-id.c
cubeidinclude_HEADERS += include/cubeid/spiffe.h

check_PROGRAMS += tests/test-spiffe-id
tests_test_spiffe_id_SOURCES = tests/test-spiffe-id.c
tests_test_spiffe_id_CFLAGS = $(TEST_CFLAGS)
tests_test_spiffe_id_LDADD = $(TEST_LIBS)
TESTS += tests/test-spiffe-id
