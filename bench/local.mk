# bench/: benchmarks; they link libcubeid-internal.la and the test harness
# library libcubeid-test.la (tests/local.mk).  Built by `make` (so they do not rot) but run only by
# `make bench`; they are not part of `make check`, which has no timing in it.
# A smoke run (a handful of ops, no thresholds) is a test, so a broken bench
# shows up in `make check`.

# token-sign: the token layer against raw C_Sign (issue 2).
noinst_PROGRAMS += bench/token-sign
bench_token_sign_SOURCES = bench/token-sign.c bench/bench-util.c bench/bench-util.h
bench_token_sign_CFLAGS = $(AM_CFLAGS) $(OPENSSL_CFLAGS) $(P11KIT_CFLAGS)
bench_token_sign_LDADD = libcubeid-test.la libcubeid-internal.la $(OPENSSL_LIBS) $(P11KIT_LIBS) $(PTHREAD_LIBS) $(LIBS)

TESTS += bench/token-sign-smoke.sh
EXTRA_DIST += bench/run-token-sign.sh bench/token-sign-smoke.sh

# `make bench` runs every benchmark; others add theirs as prerequisites:
#   bench: bench-foo
# BENCH_ARGS passes options on, e.g. make bench BENCH_ARGS='--rsa --rounds 5'.
# make bench-token-sign-tpm runs it against a throwaway software TPM.
bench: bench-token-sign

bench-token-sign: bench/token-sign$(EXEEXT)
	CUBEID_SOFTHSM_MODULE='$(SOFTHSM_MODULE)' \
	bash '$(abs_top_srcdir)/bench/run-token-sign.sh' '$(abs_top_builddir)/bench/token-sign$(EXEEXT)' $(BENCH_ARGS)

bench-token-sign-tpm: bench/token-sign$(EXEEXT)
	bash '$(abs_top_srcdir)/bench/run-token-sign.sh' --tpm '$(abs_top_builddir)/bench/token-sign$(EXEEXT)' $(BENCH_ARGS)

.PHONY: bench bench-token-sign bench-token-sign-tpm

# svid: X.509-SVID and JWT-SVID minting against the raw token, JWT-SVID
# verification against raw OpenSSL and libjwt (issue 3).
noinst_PROGRAMS += bench/svid
bench_svid_SOURCES = bench/svid.c bench/bench-util.c bench/bench-util.h
bench_svid_CFLAGS = $(AM_CFLAGS) $(OPENSSL_CFLAGS) $(P11KIT_CFLAGS) $(JANSSON_CFLAGS) $(LIBJWT_CFLAGS)
bench_svid_LDADD = libcubeid-test.la libcubeid-internal.la $(OPENSSL_LIBS) $(P11KIT_LIBS) $(JANSSON_LIBS) $(LIBJWT_LIBS) $(LIBS)

TESTS += bench/svid-smoke.sh
EXTRA_DIST += bench/svid-smoke.sh

bench: bench-svid

bench-svid: bench/svid$(EXEEXT)
	@echo "svid: $$(date -u '+%Y-%m-%d %H:%M UTC') on $$(uname -n), $$(nproc) CPUs"
	CUBEID_SOFTHSM_MODULE='$(SOFTHSM_MODULE)' '$(abs_top_builddir)/bench/svid$(EXEEXT)' $(BENCH_SVID_ARGS)

.PHONY: bench-svid

# workload-api: the Workload API of a real cubeid-agent --dev (cold
# FetchX509SVID and cached FetchJWTSVID latency, JWT-SVID fetch throughput
# against raw C_Sign, RSS with 1,000 streams and 10,000 entries), and of
# SPIRE side by side when tests/lib/go-peers.sh has built it (issue 4).
# bench/run-workload-api.sh starts the agents; BENCH_WL_ARGS passes options
# on, e.g. make bench-workload-api BENCH_WL_ARGS='--rounds 5'.
noinst_PROGRAMS += bench/workload-api
bench_workload_api_SOURCES = bench/workload-api.c bench/bench-util.c bench/bench-util.h \
	tests/h2-test-util.h
bench_workload_api_CFLAGS = $(AM_CFLAGS) $(OPENSSL_CFLAGS) $(P11KIT_CFLAGS)
bench_workload_api_LDADD = libcubeid-test.la libcubeid-internal.la $(OPENSSL_LIBS) $(P11KIT_LIBS) $(PTHREAD_LIBS) $(LIBS)

TESTS += bench/workload-api-smoke.sh
EXTRA_DIST += bench/run-workload-api.sh bench/workload-api-smoke.sh

bench: bench-workload-api

bench-workload-api: bench/workload-api$(EXEEXT) agent/cubeid-agent$(EXEEXT) cli/cubeid$(EXEEXT)
	CUBEID_SOFTHSM_MODULE='$(SOFTHSM_MODULE)' CUBEID_BUILDDIR='$(abs_top_builddir)' \
	bash '$(abs_top_srcdir)/bench/run-workload-api.sh' $(BENCH_WL_ARGS)

.PHONY: bench-workload-api

# tls: a full mTLS handshake with the TLS loader against plain OpenSSL
# contexts from the same static files, and the cost of reloading one pair
# (issue 5).  BENCH_TLS_ARGS passes options on, e.g. --rounds 20.
noinst_PROGRAMS += bench/tls
bench_tls_SOURCES = bench/tls.c tests/tls-test-util.c tests/tls-test-util.h
bench_tls_CFLAGS = $(AM_CFLAGS) $(OPENSSL_CFLAGS) $(P11KIT_CFLAGS)
bench_tls_LDADD = libcubeid-test.la libcubeid-internal.la $(OPENSSL_LIBS) $(P11KIT_LIBS) $(PTHREAD_LIBS) $(LIBS)

TESTS += bench/tls-smoke.sh
EXTRA_DIST += bench/tls-smoke.sh

bench: bench-tls

bench-tls: bench/tls$(EXEEXT)
	@echo "tls: $$(date -u '+%Y-%m-%d %H:%M UTC') on $$(uname -n), $$(nproc) CPUs"
	CUBEID_SOFTHSM_MODULE='$(SOFTHSM_MODULE)' '$(abs_top_builddir)/bench/tls$(EXEEXT)' $(BENCH_TLS_ARGS)

.PHONY: bench-tls

# oidc-verify: Keycloak token verification with a warm JWKS cache against
# raw OpenSSL verify (issue 7; target ratio >= 0.9).
noinst_PROGRAMS += bench/oidc-verify
bench_oidc_verify_SOURCES = bench/oidc-verify.c
bench_oidc_verify_CFLAGS = $(AM_CFLAGS) $(OPENSSL_CFLAGS) $(JANSSON_CFLAGS)
bench_oidc_verify_LDADD = $(PUBLIC_LIBS) $(LIBS)
TESTS += bench/oidc-verify-smoke.sh
EXTRA_DIST += bench/oidc-verify-smoke.sh

bench: bench-oidc-verify
bench-oidc-verify: bench/oidc-verify$(EXEEXT)
	'$(abs_top_builddir)/bench/oidc-verify$(EXEEXT)' $(BENCH_ARGS)
.PHONY: bench-oidc-verify

# grpc-abuse: a normal client's latency on a real cubeid-agent --dev, alone
# and while other processes send HPACK bombs or rapid resets (hardening).
noinst_PROGRAMS += bench/grpc-abuse
bench_grpc_abuse_SOURCES = bench/grpc-abuse.c tests/h2-test-util.h
bench_grpc_abuse_LDADD = libcubeid.la $(LIBS)

TESTS += bench/grpc-abuse-smoke.sh
EXTRA_DIST += bench/run-grpc-abuse.sh bench/grpc-abuse-smoke.sh

bench: bench-grpc-abuse

bench-grpc-abuse: bench/grpc-abuse$(EXEEXT) agent/cubeid-agent$(EXEEXT) cli/cubeid$(EXEEXT)
	CUBEID_SOFTHSM_MODULE='$(SOFTHSM_MODULE)' CUBEID_BUILDDIR='$(abs_top_builddir)' \
	bash '$(abs_top_srcdir)/bench/run-grpc-abuse.sh' $(BENCH_ABUSE_ARGS)

.PHONY: bench-grpc-abuse

# The Kubernetes store against a real kube-apiserver: publish-to-serve
# latency and an idle agent's requests per minute (docs/cluster.md).  Run by
# hand: bench/run-cluster-k8s.sh BUILDDIR.
EXTRA_DIST += bench/run-cluster-k8s.sh

# compare-spire: cubeid-agent and SPIRE side by side, like for like (issue
# 19): equal entry counts and X.509 TTL, the same clients (bench/compare-c
# on libcubeid, bench/goclient on go-spiffe v2), driven in alternation.
# make bench-compare BENCH_CMP_ARGS='--entries 1,1000 --rounds 2'.
noinst_PROGRAMS += bench/compare-c
bench_compare_c_SOURCES = bench/compare-c.c
bench_compare_c_LDADD = libcubeid.la $(PTHREAD_LIBS) $(LIBS)

TESTS += bench/compare-spire-smoke.sh
# The committed results: the CSVs and the plots docs/performance.md shows.
EXTRA_DIST += bench/results docs/img
EXTRA_DIST += bench/compare-spire bench/compare-spire-smoke.sh bench/plot-compare.gp \
	bench/goclient/go.mod bench/goclient/go.sum bench/goclient/main.go

bench-compare: bench/compare-c$(EXEEXT) bench/token-sign$(EXEEXT) agent/cubeid-agent$(EXEEXT) cli/cubeid$(EXEEXT)
	CUBEID_SOFTHSM_MODULE='$(SOFTHSM_MODULE)' CUBEID_BUILDDIR='$(abs_top_builddir)' \
	bash '$(abs_top_srcdir)/bench/compare-spire' $(BENCH_CMP_ARGS)

.PHONY: bench-compare
