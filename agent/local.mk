# agent/: cubeid-agent, the daemon, and nothing else.  Its parts (the loop,
# the gRPC server, attestation, entries, delivery, the HTTP server, the
# Workload API and PicoD services) form libagent.la; agent/agent-main.c
# parses flags and signals.  The `cubeid` CLI and `cubeid helper` are in cli/.

# CLI tests: a throwaway SoftHSM2 token from tests/mktoken (no PIN on argv).
check_PROGRAMS += tests/mktoken
tests_mktoken_SOURCES = tests/mktoken.c
tests_mktoken_CFLAGS = $(TEST_CFLAGS)
tests_mktoken_LDADD = $(TEST_LIBS)

# The agent's parts (see agent/agent.h), as one convenience library that
# cubeid-agent and the tests link; the CLI links it for `cubeid entry` and
# `cubeid helper`, which load entries and deliver files as the agent does.  Each part adds its sources.
noinst_LTLIBRARIES += libagent.la
libagent_la_SOURCES = agent/agent.h
libagent_la_CFLAGS = $(AM_CFLAGS) $(OPENSSL_CFLAGS) $(P11KIT_CFLAGS) $(JANSSON_CFLAGS) \
	$(NGHTTP2_CFLAGS) $(PROTOBUFC_CFLAGS) $(YAML_CFLAGS) $(SYSTEMD_CFLAGS) $(MHD_CFLAGS)
libagent_la_LIBADD = $(NGHTTP2_LIBS) $(PROTOBUFC_LIBS) $(YAML_LIBS) $(SYSTEMD_LIBS) $(MHD_LIBS) \
	$(OPENSSL_LIBS) $(JANSSON_LIBS) $(PTHREAD_LIBS)

# The event loop and the gRPC server (issue 4).
libagent_la_SOURCES += agent/loop.c agent/grpc-server.c agent/grpc-call.c agent/grpc-http.c agent/grpc-errors.c agent/grpc-internal.h \
	agent/secbuf.c

# Unit tests of the loop and of the gRPC server driven by libcubeid's client.
check_PROGRAMS += tests/test-loop tests/test-grpc
tests_test_loop_SOURCES = tests/test-loop.c
tests_test_loop_CFLAGS = $(TEST_CFLAGS)
tests_test_loop_LDADD = libagent.la $(TEST_LIBS)
tests_test_grpc_SOURCES = tests/test-grpc.c tests/h2-test-util.h
tests_test_grpc_CFLAGS = $(TEST_CFLAGS)
tests_test_grpc_LDADD = libagent.la $(TEST_LIBS)
TESTS += tests/test-loop tests/test-grpc

# A small gRPC server with canned, well-formed Workload API answers, for the
# interop test with go-spiffe's client (grpc-go): tests/grpc-interop.sh.
check_PROGRAMS += tests/grpc-toy-server
tests_grpc_toy_server_SOURCES = tests/grpc-toy-server.c
tests_grpc_toy_server_CFLAGS = $(TEST_CFLAGS)
tests_grpc_toy_server_LDADD = libagent.la $(TEST_LIBS)
TESTS += tests/grpc-interop.sh
EXTRA_DIST += tests/grpc-interop.sh

# Workload attestation, the config file and registration entries (issue 4):
# selectors, kernel facts and pod metadata, YAML via libyaml.
libagent_la_SOURCES += agent/selectors.c agent/attest.c agent/attest-conn.c agent/attest-k8s.c \
	agent/attest-internal.h agent/config.c agent/entries.c agent/entries-match.c \
	agent/entries-internal.h agent/yaml-util.c \
	agent/yaml-util.h
libagent_la_CFLAGS += $(LIBCURL_CFLAGS)
libagent_la_LIBADD += $(LIBCURL_LIBS)

# cubeid-agent: the daemon (issue 4).  The SVID cache and worker pool, the
# Workload API handlers, and main (flags, --dev, signals, sd_notify).
libagent_la_SOURCES += agent/daemon.h agent/svid-cache.c agent/workload-api.c \
	agent/audit.h agent/audit.c
check_PROGRAMS += tests/test-audit
tests_test_audit_SOURCES = tests/test-audit.c
tests_test_audit_CFLAGS = $(TEST_CFLAGS)
tests_test_audit_LDADD = libagent.la $(TEST_LIBS)
TESTS += tests/test-audit
# The optional HTTP server (libmicrohttpd on the loop) and health/metrics
# (issue 8).
libagent_la_SOURCES += agent/http.h agent/http.c agent/metrics.h agent/metrics.c
# Keycloak: the JWKS and SPIFFE bundle endpoints on the HTTP server.
libagent_la_SOURCES += agent/oidc-http.h agent/oidc-http.c
# /healthz, /readyz and /metrics of a real --dev agent, parsed with the
# Python prometheus_client text parser.
TESTS += tests/agent-metrics.sh tests/agent-configmap.sh
check_PROGRAMS += tests/test-http
tests_test_http_SOURCES = tests/test-http.c
tests_test_http_CFLAGS = $(TEST_CFLAGS)
tests_test_http_LDADD = libagent.la $(TEST_LIBS)
TESTS += tests/test-http
EXTRA_DIST += tests/agent-metrics.sh tests/agent-configmap.sh

# File delivery by the agent (an entry's delivery:, issue 5) and what runs
# after it (signals, commands without a shell), shared with `cubeid helper`.
libagent_la_SOURCES += agent/delivery.c agent/deliver-exec.c agent/entries-delivery.c
# Cluster trust: publish and read JWT keys across nodes (docs/cluster.md).
libagent_la_SOURCES += agent/cluster.h agent/cluster.c
# Three agents, three SoftHSM2 tokens, one root, a file store; needs the
# go-spiffe checker (tests/interop).
TESTS += tests/cluster.sh
EXTRA_DIST += tests/cluster.sh
# The Kubernetes store against a loopback HTTPS stand-in for the API server
# with answers shaped like its own (no real API server runs here).
TESTS += tests/cluster-k8s.sh
EXTRA_DIST += tests/cluster-k8s.sh tests/k8s-api-server.py tests/fixtures/k8s
sbin_PROGRAMS += agent/cubeid-agent
agent_cubeid_agent_SOURCES = agent/agent-main.c agent/agent-doc.c agent/agent-doc.h
agent_cubeid_agent_CFLAGS = $(libagent_la_CFLAGS)
agent_cubeid_agent_LDADD = libagent.la libcubeid-internal.la $(libagent_la_LIBADD)
# Its man pages are rendered from agent/agent-doc.c, the source of --help:
# `make update-man` regenerates them; tests/agent-man-sync.sh checks them.
dist_man_MANS += docs/man/cubeid-agent.8 docs/man/cubeid.conf.5 docs/man/cubeid-entries.5
AGENT_MAN_PAGES = cubeid-agent.8 cubeid.conf.5 cubeid-entries.5
update-man-agent: agent/cubeid-agent$(EXEEXT)
	$(AM_V_GEN)for p in $(AGENT_MAN_PAGES); do \
		$(builddir)/agent/cubeid-agent --help-man=$$p > $(srcdir)/docs/man/$$p.tmp && \
		mv $(srcdir)/docs/man/$$p.tmp $(srcdir)/docs/man/$$p || exit 1; \
	done
update-man: update-man-agent
.PHONY: update-man-agent
# The pages against the binary, and every config key, entry key and
# selector type the parsers know against the docs (tests/test-agent-doc).
check_PROGRAMS += tests/test-agent-doc
tests_test_agent_doc_SOURCES = tests/test-agent-doc.c agent/agent-doc.c
tests_test_agent_doc_CFLAGS = $(TEST_CFLAGS)
tests_test_agent_doc_LDADD = libagent.la $(TEST_LIBS)
TESTS += tests/test-agent-doc tests/agent-man-sync.sh
EXTRA_DIST += tests/agent-man-sync.sh

# The real daemon in --dev mode with the CLI as its client; and real SPIFFE
# clients (go-spiffe, spiffe-helper) against it.
TESTS += tests/agent-dev.sh tests/interop-agent.sh tests/agent-status.sh tests/agent-token-outage.sh
EXTRA_DIST += tests/agent-dev.sh tests/interop-agent.sh tests/agent-status.sh \
	tests/agent-token-outage.sh

# Hostile input to the running agent: a deeply nested entries file.
TESTS += tests/agent-hostile-input.sh
EXTRA_DIST += tests/agent-hostile-input.sh

# Attestation, entries and config tests; fixture /proc trees and a pod list.
check_PROGRAMS += tests/test-attest tests/test-entries tests/test-config
tests_test_attest_SOURCES = tests/test-attest.c
tests_test_attest_CFLAGS = $(TEST_CFLAGS)
tests_test_attest_LDADD = libagent.la $(TEST_LIBS)
tests_test_entries_SOURCES = tests/test-entries.c
tests_test_entries_CFLAGS = $(TEST_CFLAGS)
tests_test_entries_LDADD = libagent.la $(TEST_LIBS)
tests_test_config_SOURCES = tests/test-config.c
tests_test_config_CFLAGS = $(TEST_CFLAGS)
tests_test_config_LDADD = libagent.la $(TEST_LIBS)
TESTS += tests/test-attest tests/test-entries tests/test-config
EXTRA_DIST += tests/fixtures/attest tests/fixtures/entries tests/kubelet-https.py

# PicoD tokens (issue 6): everything is in agent/picod.mk.
include $(srcdir)/agent/picod.mk

# File delivery by the real agent: modes, owners, signals, commands, the
# torn-read probe over rotations, SIGKILL at random moments.
TESTS += tests/delivery-agent.sh
EXTRA_DIST += tests/delivery-agent.sh
TESTS += tests/helper-agent.sh
EXTRA_DIST += tests/helper-agent.sh
# The torn-read probe against the real spiffe-helper, side by side.
TESTS += tests/torn-read.sh
EXTRA_DIST += tests/torn-read.sh

# Rotation under load: the TLS loader on the files the agent delivers,
# new mTLS handshakes through 100 rotations, not one failing.
check_PROGRAMS += tests/tls-rotation
tests_tls_rotation_SOURCES = tests/tls-rotation.c
tests_tls_rotation_CFLAGS = $(TEST_CFLAGS)
tests_tls_rotation_LDADD = $(PUBLIC_LIBS)
TESTS += tests/tls-rotation.sh
EXTRA_DIST += tests/tls-rotation.sh
