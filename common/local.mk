# common/: the bottom layer of libcubeid, which uses nothing above it:
# errors, logging, base64url, file helpers, the libcurl wrapper, gRPC
# framing, the protobuf depth check, the atomic directory writer, and the
# operating-system helpers of <cubeid/os.h>.
# Clients of the agent live with their area (spiffe/, picod/, cluster/).
libcubeid_internal_la_SOURCES += common/error.c common/log.c
cubeidinclude_HEADERS += include/cubeid/error.h include/cubeid/log.h

# Strict base64 and base64url (include/cubeid/b64url.h), for JWS, JWK and
# the wrapped-key documents in spiffe/.
libcubeid_internal_la_SOURCES += common/b64url.c
cubeidinclude_HEADERS += include/cubeid/b64url.h

# gRPC framing shared by the agent's server and the Workload API client
# (spiffe/), and the nesting-depth check for protobuf input.
libcubeid_internal_la_SOURCES += common/grpc-frame.c common/pb-depth.c
noinst_HEADERS += common/grpc-frame.h common/pb-depth.h

# File helpers (include/cubeid/file.h): the state directory, bounded reads,
# atomic single-file writes.
libcubeid_internal_la_SOURCES += common/file.c
noinst_HEADERS += common/path.h
cubeidinclude_HEADERS += include/cubeid/file.h

# Signal names, pid files, commands without a shell and listener addresses
# (include/cubeid/os.h), shared by the agent's file delivery and `cubeid
# helper`.
libcubeid_internal_la_SOURCES += common/os-exec.c common/os-addr.c
cubeidinclude_HEADERS += include/cubeid/os.h

# The one libcurl wrapper (common/http-fetch.h) for the OIDC client, the
# Kubernetes store and the kubelet attestor.
libcubeid_internal_la_SOURCES += common/http-fetch.c
noinst_HEADERS += common/http-fetch.h

# The atomic directory writer (Kubernetes AtomicWriter pattern), shared by
# the agent's file delivery and `cubeid helper` (include/cubeid/atomic-dir.h).
libcubeid_internal_la_SOURCES += common/atomic-dir.c common/safe-dir.c
noinst_HEADERS += common/safe-dir.h
cubeidinclude_HEADERS += include/cubeid/atomic-dir.h
check_PROGRAMS += tests/test-atomic-dir
tests_test_atomic_dir_SOURCES = tests/test-atomic-dir.c
tests_test_atomic_dir_CFLAGS = $(TEST_CFLAGS)
tests_test_atomic_dir_LDADD = $(TEST_LIBS)
TESTS += tests/test-atomic-dir

# The writer as root against a workload that swaps its directory for a
# symlink (the attacker's steps run as nobody; skipped when not root).
check_PROGRAMS += tests/test-adir-symlink-attack
tests_test_adir_symlink_attack_SOURCES = tests/test-adir-symlink-attack.c
tests_test_adir_symlink_attack_CFLAGS = $(TEST_CFLAGS)
tests_test_adir_symlink_attack_LDADD = $(TEST_LIBS)
TESTS += tests/test-adir-symlink-attack

# Crash safety of the writer: SIGKILL during continuous writes, 200 times.
check_PROGRAMS += tests/test-adir-crash
tests_test_adir_crash_SOURCES = tests/test-adir-crash.c
tests_test_adir_crash_CFLAGS = $(TEST_CFLAGS)
tests_test_adir_crash_LDADD = $(TEST_LIBS)
TESTS += tests/test-adir-crash

# The torn-read probe: a reader of cert then key, counting mismatched and
# torn pairs (tests/delivery-*.sh run it against cubeid and spiffe-helper).
check_PROGRAMS += tests/torn-probe
tests_torn_probe_SOURCES = tests/torn-probe.c
tests_torn_probe_CFLAGS = $(TEST_CFLAGS)
tests_torn_probe_LDADD = $(OPENSSL_LIBS)
