# fuzz/: libFuzzer targets for the parsers, linked with libcubeid-internal.la
# (and libagent.la, libhelper.la for the agent's and the helper's parsers),
# built only with
#   CC=clang ./configure --enable-fuzzing
# Run one with its seed corpus, e.g.
#   fuzz/fuzz-spiffe-id -max_total_time=60 $(srcdir)/fuzz/corpus/spiffe-id
FUZZ_COMPILE_FLAGS = $(AM_CFLAGS) $(OPENSSL_CFLAGS) $(JANSSON_CFLAGS)
FUZZ_LINK_FLAGS = $(AM_LDFLAGS) -fsanitize=fuzzer -no-install
FUZZ_LIBS = libcubeid-internal.la $(OPENSSL_LIBS) $(JANSSON_LIBS)

if ENABLE_FUZZING
noinst_PROGRAMS += fuzz/fuzz-spiffe-id fuzz/fuzz-jws fuzz/fuzz-jwks fuzz/fuzz-p11-uri
endif
fuzz_fuzz_spiffe_id_SOURCES = fuzz/fuzz-spiffe-id.c
fuzz_fuzz_spiffe_id_CFLAGS = $(FUZZ_COMPILE_FLAGS)
fuzz_fuzz_spiffe_id_LDFLAGS = $(FUZZ_LINK_FLAGS)
fuzz_fuzz_spiffe_id_LDADD = $(FUZZ_LIBS)

fuzz_fuzz_jws_SOURCES = fuzz/fuzz-jws.c
fuzz_fuzz_jws_CFLAGS = $(FUZZ_COMPILE_FLAGS)
fuzz_fuzz_jws_LDFLAGS = $(FUZZ_LINK_FLAGS)
fuzz_fuzz_jws_LDADD = $(FUZZ_LIBS)

fuzz_fuzz_jwks_SOURCES = fuzz/fuzz-jwks.c
fuzz_fuzz_jwks_CFLAGS = $(FUZZ_COMPILE_FLAGS)
fuzz_fuzz_jwks_LDFLAGS = $(FUZZ_LINK_FLAGS)
fuzz_fuzz_jwks_LDADD = $(FUZZ_LIBS)

fuzz_fuzz_p11_uri_SOURCES = fuzz/fuzz-p11-uri.c
fuzz_fuzz_p11_uri_CFLAGS = $(FUZZ_COMPILE_FLAGS) $(P11KIT_CFLAGS)
fuzz_fuzz_p11_uri_LDFLAGS = $(FUZZ_LINK_FLAGS)
fuzz_fuzz_p11_uri_LDADD = $(FUZZ_LIBS) $(P11KIT_LIBS)

EXTRA_DIST += fuzz/corpus

# The certificate-chain / X.509 bundle parser and the X.509-SVID verifier.
if ENABLE_FUZZING
noinst_PROGRAMS += fuzz/fuzz-pem
endif
fuzz_fuzz_pem_SOURCES = fuzz/fuzz-pem.c
fuzz_fuzz_pem_CFLAGS = $(FUZZ_COMPILE_FLAGS)
fuzz_fuzz_pem_LDFLAGS = $(FUZZ_LINK_FLAGS)
fuzz_fuzz_pem_LDADD = $(FUZZ_LIBS)

# gRPC framing and the Workload API message unpackers (protobuf-c).
if ENABLE_FUZZING
noinst_PROGRAMS += fuzz/fuzz-grpc-frame
endif
fuzz_fuzz_grpc_frame_SOURCES = fuzz/fuzz-grpc-frame.c
fuzz_fuzz_grpc_frame_CFLAGS = $(FUZZ_COMPILE_FLAGS) $(PROTOBUFC_CFLAGS)
fuzz_fuzz_grpc_frame_LDFLAGS = $(FUZZ_LINK_FLAGS)
fuzz_fuzz_grpc_frame_LDADD = $(FUZZ_LIBS) $(PROTOBUFC_LIBS)

# The gRPC server's HTTP/2 request rules (agent/grpc-http.c), differentially
# against nghttp2's HTTP messaging, which they replace.
if ENABLE_FUZZING
noinst_PROGRAMS += fuzz/fuzz-grpc-http
endif
fuzz_fuzz_grpc_http_SOURCES = fuzz/fuzz-grpc-http.c agent/grpc-http.c
fuzz_fuzz_grpc_http_CFLAGS = $(FUZZ_COMPILE_FLAGS) $(NGHTTP2_CFLAGS)
fuzz_fuzz_grpc_http_LDFLAGS = $(FUZZ_LINK_FLAGS)
fuzz_fuzz_grpc_http_LDADD = $(FUZZ_LIBS) $(NGHTTP2_LIBS)

# gRPC server reflection: its request parser and answers
# (agent/grpc-reflection.c).
if ENABLE_FUZZING
noinst_PROGRAMS += fuzz/fuzz-grpc-reflection
endif
fuzz_fuzz_grpc_reflection_SOURCES = fuzz/fuzz-grpc-reflection.c
fuzz_fuzz_grpc_reflection_CFLAGS = $(FUZZ_COMPILE_FLAGS) $(PROTOBUFC_CFLAGS)
fuzz_fuzz_grpc_reflection_LDFLAGS = $(FUZZ_LINK_FLAGS)
fuzz_fuzz_grpc_reflection_LDADD = libagent.la $(FUZZ_LIBS) $(PROTOBUFC_LIBS)

# Registration entries and the agent config (YAML via libyaml), and the
# attestation pod-list JSON.
if ENABLE_FUZZING
noinst_PROGRAMS += fuzz/fuzz-entries
endif
fuzz_fuzz_entries_SOURCES = fuzz/fuzz-entries.c
fuzz_fuzz_entries_CFLAGS = $(FUZZ_COMPILE_FLAGS) $(YAML_CFLAGS)
fuzz_fuzz_entries_LDFLAGS = $(FUZZ_LINK_FLAGS)
fuzz_fuzz_entries_LDADD = libagent.la $(FUZZ_LIBS) $(YAML_LIBS) $(LIBCURL_LIBS)

# The TLS loader's flags and allow-list entries (include/cubeid/tls.h).
if ENABLE_FUZZING
noinst_PROGRAMS += fuzz/fuzz-tls-flags
endif
fuzz_fuzz_tls_flags_SOURCES = fuzz/fuzz-tls-flags.c
fuzz_fuzz_tls_flags_CFLAGS = $(FUZZ_COMPILE_FLAGS)
fuzz_fuzz_tls_flags_LDFLAGS = $(FUZZ_LINK_FLAGS)
fuzz_fuzz_tls_flags_LDADD = $(FUZZ_LIBS)

# Long, random fuzzing (the suite only runs a short, fixed-seed pass):
#   CC=clang ./configure --enable-fuzzing && make fuzz FUZZ_SECONDS=600
FUZZ_SECONDS = 300
fuzz: all
	@set -e; for f in fuzz/fuzz-*; do \
		case "$$f" in *.o) continue ;; esac; \
		test -x "$$f" || continue; \
		name=$${f#fuzz/fuzz-}; corpus="fuzz-corpus-$$name"; mkdir -p "$$corpus"; \
		if test -d "$(srcdir)/fuzz/corpus/$$name"; then cp -R "$(srcdir)/fuzz/corpus/$$name/." "$$corpus/"; fi; \
		echo "== $$f for $(FUZZ_SECONDS) s (corpus $$corpus)"; \
		"$$f" -max_total_time=$(FUZZ_SECONDS) -timeout=10 -artifact_prefix="crash-$$name-" "$$corpus"; \
	done
.PHONY: fuzz

# The PicoD verifier: Authorization header, claims (signed in the target so
# that the checks are reached), PICOD_AUTH_PUBLIC_KEY PEM.
if ENABLE_FUZZING
noinst_PROGRAMS += fuzz/fuzz-picod
endif
fuzz_fuzz_picod_SOURCES = fuzz/fuzz-picod.c
fuzz_fuzz_picod_CFLAGS = $(FUZZ_COMPILE_FLAGS)
fuzz_fuzz_picod_LDFLAGS = $(FUZZ_LINK_FLAGS)
fuzz_fuzz_picod_LDADD = $(FUZZ_LIBS)

# spiffe-helper's configuration files (HCL subset) for `cubeid helper`.
if ENABLE_FUZZING
noinst_PROGRAMS += fuzz/fuzz-helper-config
endif
fuzz_fuzz_helper_config_SOURCES = fuzz/fuzz-helper-config.c
fuzz_fuzz_helper_config_CFLAGS = $(FUZZ_COMPILE_FLAGS) $(YAML_CFLAGS)
fuzz_fuzz_helper_config_LDFLAGS = $(FUZZ_LINK_FLAGS)
fuzz_fuzz_helper_config_LDADD = libhelper.la $(FUZZ_LIBS)

# OIDC: discovery documents, policy tables and access tokens (keycloak/).
if ENABLE_FUZZING
noinst_PROGRAMS += fuzz/fuzz-oidc
endif
fuzz_fuzz_oidc_SOURCES = fuzz/fuzz-oidc.c
fuzz_fuzz_oidc_CFLAGS = $(FUZZ_COMPILE_FLAGS)
fuzz_fuzz_oidc_LDFLAGS = $(FUZZ_LINK_FLAGS)
fuzz_fuzz_oidc_LDADD = $(FUZZ_LIBS) $(LIBCURL_LIBS)

# Cluster trust: key publications and the Kubernetes ConfigMapList
# (what a publication store hands the agent).
if ENABLE_FUZZING
noinst_PROGRAMS += fuzz/fuzz-cluster
endif
fuzz_fuzz_cluster_SOURCES = fuzz/fuzz-cluster.c
fuzz_fuzz_cluster_CFLAGS = $(FUZZ_COMPILE_FLAGS)
fuzz_fuzz_cluster_LDFLAGS = $(FUZZ_LINK_FLAGS)
fuzz_fuzz_cluster_LDADD = $(FUZZ_LIBS)

# make fuzz-long: every target for FUZZ_SECONDS (default 600) from its seed
# corpus with a random seed, printing executions per target (CI's fuzz pass
# is short and repeatable instead: a fixed seed and run count).
EXTRA_DIST += fuzz/run-long.sh
fuzz-long: all
	@CUBEID_SRCDIR='$(abs_top_srcdir)' CUBEID_BUILDDIR='$(abs_top_builddir)' \
	FUZZ_SECONDS='$(FUZZ_SECONDS)' FUZZ_TARGETS='$(FUZZ_TARGETS)' \
	bash '$(abs_top_srcdir)/fuzz/run-long.sh'
.PHONY: fuzz-long
