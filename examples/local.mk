# examples/: the reference Router and WorkloadManager of the end-to-end chain
# (docs/e2e.md, tests/e2e.sh).  They link the public libcubeid.la and include
# only <cubeid/*.h>, as a program outside this tree would; docs/sdk.md
# quotes them.  Built with the tree so they do not rot; never installed.
noinst_PROGRAMS += examples/router examples/workloadmanager examples/picod-front
examples_router_SOURCES = examples/router.c
examples_router_CFLAGS = $(AM_CFLAGS) $(OPENSSL_CFLAGS) $(JANSSON_CFLAGS) $(MHD_CFLAGS)
examples_router_LDADD = $(PUBLIC_LIBS) $(MHD_LIBS)
examples_workloadmanager_SOURCES = examples/workloadmanager.c
examples_workloadmanager_CFLAGS = $(AM_CFLAGS) $(OPENSSL_CFLAGS) $(JANSSON_CFLAGS)
examples_workloadmanager_LDADD = $(PUBLIC_LIBS)
examples_picod_front_SOURCES = examples/picod-front.c
examples_picod_front_CFLAGS = $(AM_CFLAGS) $(OPENSSL_CFLAGS)
examples_picod_front_LDADD = $(PUBLIC_LIBS)
