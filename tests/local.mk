# The test harness (a throwaway token per program) and the error table test.
check_LTLIBRARIES += libcubeid-test.la
libcubeid_test_la_SOURCES = tests/harness.c tests/harness.h
libcubeid_test_la_CFLAGS = $(TEST_CFLAGS)
libcubeid_test_la_LIBADD = libcubeid.la $(OPENSSL_LIBS) $(LIBS)

check_PROGRAMS += tests/test-error
tests_test_error_SOURCES = tests/test-error.c
tests_test_error_CFLAGS = $(TEST_CFLAGS)
tests_test_error_LDADD = $(TEST_LIBS)
TESTS += tests/test-error

EXTRA_DIST += tests/valgrind-wrap tests/lsan.supp tests/valgrind.supp
