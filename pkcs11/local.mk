# pkcs11/: the token layer, in libcubeid (libcubeid-internal.la, see
# Makefile.am).  Uses common/ only (docs/design.md, "Layout").
libcubeid_internal_la_SOURCES += \
	pkcs11/p11-internal.h \
	pkcs11/p11-names.h \
	pkcs11/p11-module.c \
	pkcs11/p11-error.c \
	pkcs11/p11-token.c \
	pkcs11/p11-session.c \
	pkcs11/p11-key.c \
	pkcs11/p11-export.c \
	pkcs11/p11-sign.c \
	pkcs11/p11-evp.c \
	pkcs11/p11-softhsm.c \
	pkcs11/p11-recover.c
cubeidinclude_HEADERS += include/cubeid/token.h

# Tests: the layer against a real SoftHSM2 token (and the TPM lane).
check_PROGRAMS += tests/test-pkcs11
tests_test_pkcs11_SOURCES = tests/test-pkcs11.c tests/p11-attr-util.h
tests_test_pkcs11_CFLAGS = $(TEST_CFLAGS)
tests_test_pkcs11_LDADD = $(TEST_LIBS)
TESTS += tests/test-pkcs11

# Fault injection (issue 2): tests/mock-p11.c is a PKCS#11 shim over the
# real SoftHSM2 module that fails C_Sign, hides mechanisms and counts logins
# on request; tests/test-pkcs11-faults loads it as the token's module.  It is
# a libtool module only so that it is built as a .so (tests/.libs/mock-p11.so).
check_LTLIBRARIES += tests/mock-p11.la
tests_mock_p11_la_SOURCES = tests/mock-p11.c
tests_mock_p11_la_CFLAGS = $(AM_CFLAGS) $(P11KIT_CFLAGS)
tests_mock_p11_la_LDFLAGS = -module -avoid-version -shared -rpath /nowhere
tests_mock_p11_la_LIBADD = $(LIBS)

check_PROGRAMS += tests/test-pkcs11-faults
tests_test_pkcs11_faults_SOURCES = tests/test-pkcs11-faults.c
tests_test_pkcs11_faults_CFLAGS = $(TEST_CFLAGS)
tests_test_pkcs11_faults_LDADD = $(TEST_LIBS)
TESTS += tests/test-pkcs11-faults

# The token layer's documentation, and the probe that measured the libp11
# facts in it (built and run by hand, as its header says).
EXTRA_DIST += docs/pkcs11.md tests/probes/libp11-probe.c tests/probes/p11-close-race.c

# One key in several tokens: C_WrapKey / C_UnwrapKey on raw blobs (the
# single cluster PicoD key, docs/cluster.md); the document around them,
# <cubeid/key-wrap.h>, is spiffe/key-wrap-doc.c.  tests/test-key-wrap also
# runs in the TPM lane, where it records what tpm2-pkcs11 refuses.
libcubeid_internal_la_SOURCES += pkcs11/p11-wrap.c pkcs11/p11-wrap.h
check_PROGRAMS += tests/test-key-wrap
tests_test_key_wrap_SOURCES = tests/test-key-wrap.c tests/p11-attr-util.h
tests_test_key_wrap_CFLAGS = $(TEST_CFLAGS)
tests_test_key_wrap_LDADD = $(TEST_LIBS)
TESTS += tests/test-key-wrap

# What `cubeid token info` shows, as JSON (include/cubeid/token-info.h), so
# that the CLI needs nothing internal.
libcubeid_internal_la_SOURCES += pkcs11/p11-info.c
cubeidinclude_HEADERS += include/cubeid/token-info.h
