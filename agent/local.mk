# agent/: the daemon (later) and the `cubeid` command-line tool.
#
# cubeid: `cubeid GROUP COMMAND [options]`.  A new group is agent/tool-GROUP.c
# (add it to cubeid_SOURCES) plus one line in the table in agent/cubeid.c.
bin_PROGRAMS += agent/cubeid
agent_cubeid_SOURCES = \
	agent/cubeid.c \
	agent/tool.h \
	agent/tool-common.c \
	agent/tool-help.c \
	agent/tool-token.c \
	agent/tool-token-info.c \
	agent/tool-ca.c \
	agent/tool-svid.c \
	agent/tool-jwt.c
agent_cubeid_CFLAGS = $(AM_CFLAGS) $(OPENSSL_CFLAGS) $(P11KIT_CFLAGS) $(JANSSON_CFLAGS)
agent_cubeid_LDADD = libcubeid.la $(OPENSSL_LIBS) $(P11KIT_LIBS) $(JANSSON_LIBS) $(PTHREAD_LIBS)

# The man page is rendered from the same tables as --help: `make update-man`
# regenerates it and tests/cli-man-sync.sh fails when it is stale.
dist_man_MANS += docs/man/cubeid.1

update-man: agent/cubeid$(EXEEXT)
	$(AM_V_GEN)$(builddir)/agent/cubeid --help-man > $(srcdir)/docs/man/cubeid.1.tmp && \
		mv $(srcdir)/docs/man/cubeid.1.tmp $(srcdir)/docs/man/cubeid.1
.PHONY: update-man

# CLI tests: a throwaway SoftHSM2 token from tests/mktoken (no PIN on argv).
check_PROGRAMS += tests/mktoken
tests_mktoken_SOURCES = tests/mktoken.c
tests_mktoken_CFLAGS = $(TEST_CFLAGS)
tests_mktoken_LDADD = $(TEST_LIBS)

TESTS += tests/cli-man-sync.sh tests/cli-token.sh tests/cli-ca.sh tests/cli-jwt.sh
EXTRA_DIST += tests/cli-man-sync.sh tests/cli-token.sh tests/cli-ca.sh tests/cli-jwt.sh

# The agent's parts (see agent/agent.h), as one convenience library that
# cubeid-agent, the CLI and the tests link.  Each part adds its sources.
noinst_LTLIBRARIES += libagent.la
libagent_la_SOURCES = agent/agent.h
libagent_la_CFLAGS = $(AM_CFLAGS) $(OPENSSL_CFLAGS) $(P11KIT_CFLAGS) $(JANSSON_CFLAGS) \
	$(NGHTTP2_CFLAGS) $(PROTOBUFC_CFLAGS) $(YAML_CFLAGS) $(SYSTEMD_CFLAGS)
libagent_la_LIBADD = libcubeid.la $(NGHTTP2_LIBS) $(PROTOBUFC_LIBS) $(YAML_LIBS) $(SYSTEMD_LIBS) \
	$(OPENSSL_LIBS) $(JANSSON_LIBS) $(PTHREAD_LIBS)

# Workload attestation, the config file and registration entries (issue 4):
# selectors, kernel facts and pod metadata, YAML via libyaml.
libagent_la_SOURCES += agent/selectors.c agent/attest.c agent/attest-k8s.c \
	agent/attest-internal.h agent/config.c agent/entries.c agent/yaml-util.c \
	agent/yaml-util.h
libagent_la_CFLAGS += $(LIBCURL_CFLAGS)
libagent_la_LIBADD += $(LIBCURL_LIBS)
