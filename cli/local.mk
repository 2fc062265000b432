# cli/: the `cubeid` command-line tool, and `cubeid helper`, its drop-in for
# spiffe-helper.  Everything here ends up in the one binary cli/cubeid
# (installed as $(bindir)/cubeid).  It links three convenience libraries,
# last first: libhelper.la (below), libagent.la (for `cubeid entry` only, a
# debt that tests/layering.py names) and libcubeid-internal.la.
#
# cubeid: `cubeid GROUP COMMAND [options]`.  A new group is cli/tool-GROUP.c
# (add it to cli_cubeid_SOURCES) plus one line in the table in cli/cubeid.c.
bin_PROGRAMS += cli/cubeid
cli_cubeid_SOURCES = \
	cli/cubeid.c \
	cli/tool.h \
	cli/tool-common.c \
	cli/tool-help.c \
	cli/tool-token.c \
	cli/tool-token-info.c \
	cli/tool-ca.c \
	cli/tool-svid.c \
	cli/tool-jwt.c \
	cli/tool-agent.c \
	cli/tool-rpc.c \
	cli/tool-oidc.c \
	cli/tool-cluster.c \
	cli/tool-picod.c \
	cli/tool-picod-key.c \
	cli/tool-picod-key.h
# The agent's config file, the CLI's default, is under CUBEID_SYSCONFDIR
# (AM_CPPFLAGS), as the unit's --config is (cli/tool.h).
cli_cubeid_CFLAGS = $(AM_CFLAGS) $(OPENSSL_CFLAGS) $(P11KIT_CFLAGS) $(JANSSON_CFLAGS)
cli_cubeid_LDADD = libhelper.la libagent.la libcubeid-internal.la $(OPENSSL_LIBS) $(P11KIT_LIBS) $(JANSSON_LIBS) $(PTHREAD_LIBS)

# The man page is rendered from the same tables as --help: `make update-man`
# regenerates it and tests/cli-man-sync.sh fails when it is stale.
dist_man_MANS += docs/man/cubeid.1

# Shell completion, generated from the same tables at build time and
# installed where bash-completion and zsh look under the prefix.
bashcompletiondir = $(datadir)/bash-completion/completions
zshcompletiondir = $(datadir)/zsh/site-functions
nodist_bashcompletion_DATA = cli/completion/cubeid
nodist_zshcompletion_DATA = cli/completion/_cubeid
CLEANFILES += cli/completion/cubeid cli/completion/_cubeid
cli/completion/cubeid: cli/cubeid$(EXEEXT)
	$(AM_V_GEN)$(MKDIR_P) cli/completion && \
		$(builddir)/cli/cubeid --help-completion=bash > $@.tmp && mv $@.tmp $@
cli/completion/_cubeid: cli/cubeid$(EXEEXT)
	$(AM_V_GEN)$(MKDIR_P) cli/completion && \
		$(builddir)/cli/cubeid --help-completion=zsh > $@.tmp && mv $@.tmp $@

update-man: cli/cubeid$(EXEEXT)
	$(AM_V_GEN)$(builddir)/cli/cubeid --help-man > $(srcdir)/docs/man/cubeid.1.tmp && \
		mv $(srcdir)/docs/man/cubeid.1.tmp $(srcdir)/docs/man/cubeid.1
.PHONY: update-man

TESTS += tests/cli-man-sync.sh tests/cli-token.sh tests/cli-ca.sh tests/cli-jwt.sh
EXTRA_DIST += tests/cli-man-sync.sh tests/cli-token.sh tests/cli-ca.sh tests/cli-jwt.sh
# Exit codes, -o json and the operator's conveniences, one row per command
# line, against a --dev agent (it needs agent/cubeid-agent built).
TESTS += tests/cli-table.sh
EXTRA_DIST += tests/cli-table.sh

# `cubeid entry list|show|check` (cli/tool-entry.c) loads entries with the
# agent's own parser, so it links the agent's parts (libagent.la).
cli_cubeid_SOURCES += cli/tool-entry.c
cli_cubeid_LDADD += $(YAML_LIBS) $(LIBCURL_LIBS)
TESTS += tests/cli-entry.sh
EXTRA_DIST += tests/cli-entry.sh docs/entries.md docs/config.md

# `cubeid helper`, a drop-in for spiffe-helper (issue 5).  Its HCL-subset
# config parser and health listener are a convenience library of their own,
# libhelper.la, which the CLI, tests/test-helper-config and
# fuzz/fuzz-helper-config link.  It delivers files with libcubeid's atomic
# directory writer and runs commands with <cubeid/os.h>.
noinst_LTLIBRARIES += libhelper.la
libhelper_la_SOURCES = cli/helper.h cli/helper-config.c cli/helper-hcl.c cli/helper-health.c
libhelper_la_CFLAGS = $(AM_CFLAGS) $(OPENSSL_CFLAGS) $(JANSSON_CFLAGS) $(MHD_CFLAGS)
libhelper_la_LIBADD = $(MHD_LIBS) $(OPENSSL_LIBS) $(JANSSON_LIBS)
cli_cubeid_SOURCES += cli/tool-helper.c cli/helper-files.c
cli_cubeid_CFLAGS += $(PROTOBUFC_CFLAGS)
cli_cubeid_LDADD += $(PROTOBUFC_LIBS)
check_PROGRAMS += tests/test-helper-config
tests_test_helper_config_SOURCES = tests/test-helper-config.c
tests_test_helper_config_CFLAGS = $(TEST_CFLAGS)
tests_test_helper_config_LDADD = libhelper.la $(TEST_LIBS)
TESTS += tests/test-helper-config
