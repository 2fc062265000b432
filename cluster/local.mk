# cluster/: cluster trust, the library side: key publications, the
# cluster view, the publication stores (a shared directory, Kubernetes
# ConfigMaps).  docs/cluster.md.  In libcubeid; uses common/, pkcs11/ and
# spiffe/ (docs/design.md, "Layout").
libcubeid_internal_la_SOURCES += \
	cluster/cluster-pub.c \
	cluster/cluster-view.c \
	cluster/cluster-store.c \
	cluster/cluster-store.h \
	cluster/cluster-k8s.c
cubeidinclude_HEADERS += include/cubeid/cluster.h

check_PROGRAMS += tests/test-cluster
tests_test_cluster_SOURCES = tests/test-cluster.c
tests_test_cluster_CFLAGS = $(TEST_CFLAGS)
tests_test_cluster_LDADD = $(TEST_LIBS)
TESTS += tests/test-cluster
