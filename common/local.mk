libcubeid_la_SOURCES += common/error.c common/log.c
cubeidinclude_HEADERS += include/cubeid/error.h include/cubeid/log.h

# gRPC framing shared by the agent's server and the Workload API client, and
# the client itself (include/cubeid/workloadapi.h).
libcubeid_la_SOURCES += common/grpc-frame.c common/workloadapi-client.c common/workloadapi.c \
	common/pb-depth.c
noinst_HEADERS += common/grpc-frame.h common/pb-depth.h
cubeidinclude_HEADERS += include/cubeid/workloadapi.h

# The atomic directory writer (Kubernetes AtomicWriter pattern), shared by
# the agent's file delivery and `cubeid helper` (include/cubeid/atomic-dir.h).
libcubeid_la_SOURCES += common/atomic-dir.c
cubeidinclude_HEADERS += include/cubeid/atomic-dir.h
check_PROGRAMS += tests/test-atomic-dir
tests_test_atomic_dir_SOURCES = tests/test-atomic-dir.c
tests_test_atomic_dir_CFLAGS = $(TEST_CFLAGS)
tests_test_atomic_dir_LDADD = $(TEST_LIBS)
TESTS += tests/test-atomic-dir

# PicoD tokens, the Router side: MintToken/PublicKey/RotateKey on the agent.
libcubeid_la_SOURCES += common/picod-client.c
