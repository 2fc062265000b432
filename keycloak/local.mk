# keycloak/: the OIDC side (include/cubeid/oidc.h): discovery, a JWKS cache
# and token verification with roles and an endpoint policy, client
# credentials without shared secrets, token exchange, RLAC helpers.  In
# libcubeid; uses common/, pkcs11/ and spiffe/ (docs/design.md, "Layout").
libcubeid_internal_la_SOURCES += \
	keycloak/oidc-internal.h \
	keycloak/http.c \
	keycloak/discovery.c \
	keycloak/verifier.c \
	keycloak/policy.c \
	keycloak/client.c \
	keycloak/rlac.c
cubeidinclude_HEADERS += include/cubeid/oidc.h

# The realm files (deploy/keycloak) and the Keycloak harness.
EXTRA_DIST += deploy/keycloak/realm-template.json deploy/keycloak/agentcube-realm.json \
	deploy/keycloak/stamp-realm.sh deploy/keycloak/add-workload.sh tests/lib/keycloak.sh

# Against a real Keycloak: tests/keycloak/run.sh starts one server for all
# the Keycloak checks (kc-check and the CLI); see tests/lib/keycloak.sh.
check_PROGRAMS += tests/keycloak/kc-check
tests_keycloak_kc_check_SOURCES = tests/keycloak/kc-check.c
tests_keycloak_kc_check_CFLAGS = $(TEST_CFLAGS)
tests_keycloak_kc_check_LDADD = $(TEST_LIBS)
TESTS += tests/keycloak/run.sh
EXTRA_DIST += tests/keycloak/run.sh

check_PROGRAMS += tests/test-oidc
tests_test_oidc_SOURCES = tests/test-oidc.c tests/ecdsa-test-util.h
tests_test_oidc_CFLAGS = $(TEST_CFLAGS)
tests_test_oidc_LDADD = $(TEST_LIBS)
TESTS += tests/test-oidc
