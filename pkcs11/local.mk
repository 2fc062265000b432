# pkcs11/: the token layer.
libcubeid_la_SOURCES += \
	pkcs11/p11-internal.h \
	pkcs11/p11-names.h \
	pkcs11/p11-module.c \
	pkcs11/p11-error.c \
	pkcs11/p11-token.c \
	pkcs11/p11-session.c \
	pkcs11/p11-key.c \
	pkcs11/p11-export.c \
	pkcs11/p11-sign.c \
	pkcs11/p11-evp.c
cubeidinclude_HEADERS += include/cubeid/token.h

# Tests: the layer against a real SoftHSM2 token (and the TPM lane).
check_PROGRAMS += tests/test-pkcs11
tests_test_pkcs11_SOURCES = tests/test-pkcs11.c
tests_test_pkcs11_CFLAGS = $(TEST_CFLAGS)
tests_test_pkcs11_LDADD = $(TEST_LIBS)
TESTS += tests/test-pkcs11
