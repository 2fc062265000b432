# agent/picod.mk (included by agent/local.mk).  PicoD tokens (issue 6): the
# cubeid.picod.v1.PicoD service on the agent's
# socket (picod/picod.proto) and its handlers in the agent; the library side
# is in picod/ and `cubeid picod` is in cli/.
libagent_la_SOURCES += agent/picod-service.c
TESTS += tests/picod-agent.sh
EXTRA_DIST += tests/picod-agent.sh

# A PicoD key rotated offline (cubeid ca jwt-rotate --state-dir STATE/picod)
# is labelled as a PicoD key, and published on SIGHUP.
TESTS += tests/picod-offline-rotate.sh
EXTRA_DIST += tests/picod-offline-rotate.sh

# Against AgentCube's real PicoD (tests/picod-peer, built from the Go module
# proxy by tests/lib/go-peers.sh), or the golang-jwt fallback verifier.
TESTS += tests/picod-real.sh
EXTRA_DIST += tests/picod-real.sh tests/picod-peer/go.mod tests/picod-peer/go.sum \
	tests/picod-peer/main.go tests/picod-jwtcheck/go.mod tests/picod-jwtcheck/go.sum \
	tests/picod-jwtcheck/main.go

# bench/picod-auth: JWT-mode against mTLS-mode bootstrap, agent minting
# (cached, uncached) against raw C_Sign for RS256 and ES256, p50/p99, in one
# run against a real agent.  `make bench-picod-auth`; the smoke run is a test.
noinst_PROGRAMS += bench/picod-auth
bench_picod_auth_SOURCES = bench/picod-auth.c
bench_picod_auth_CFLAGS = $(AM_CFLAGS) $(OPENSSL_CFLAGS) $(P11KIT_CFLAGS) $(JANSSON_CFLAGS)
bench_picod_auth_LDADD = libcubeid-test.la libcubeid-internal.la $(OPENSSL_LIBS) $(P11KIT_LIBS) $(JANSSON_LIBS) $(PTHREAD_LIBS) $(LIBS)
TESTS += bench/picod-auth-smoke.sh
EXTRA_DIST += bench/run-picod-auth.sh bench/picod-auth-smoke.sh
bench: bench-picod-auth
bench-picod-auth: bench/picod-auth$(EXEEXT) agent/cubeid-agent$(EXEEXT) cli/cubeid$(EXEEXT)
	CUBEID_SOFTHSM_MODULE='$(SOFTHSM_MODULE)' CUBEID_BUILDDIR='$(abs_top_builddir)' \
	bash '$(abs_top_srcdir)/bench/run-picod-auth.sh' $(BENCH_PICOD_ARGS)
.PHONY: bench-picod-auth
