/*
 * cubeid-agent's documentation, one source for `cubeid-agent --help` and
 * the man pages cubeid-agent(8), cubeid.conf(5) and cubeid-entries(5)
 * (`cubeid-agent --help-man=PAGE`, `make update-man`).  The option table
 * also gives getopt_long its options, so an option cannot exist without
 * its help; tests/agent-man-sync.sh checks that every config key, entry
 * key and selector type the parsers know has its text here, and that the
 * committed pages are current.
 */
#ifndef CUBEID_AGENT_DOC_H
#define CUBEID_AGENT_DOC_H

#include <getopt.h>
#include <stdio.h>

struct agent_opt_doc {
	int val;          /* getopt_long's val */
	char short_name;  /* -c, or 0: long form only */
	const char *name; /* long name */
	int has_arg;      /* no_argument / required_argument */
	const char *arg;  /* "FILE", or NULL */
	const char *help; /* --help: short, may hold '\n' for continuation lines */
	const char *man;  /* the man page paragraph (`code` is bold; "\n\n" a new paragraph) */
};
extern const struct agent_opt_doc agent_opt_docs[];

/* Fill opts (at least AGENT_OPTS_MAX entries) and optstring (at least
 * 2 * AGENT_OPTS_MAX + 1 bytes) for getopt_long. */
#define AGENT_OPTS_MAX 32
void agent_doc_getopt(struct option *opts, char *optstring);

/* `cubeid-agent --help` */
void agent_doc_usage(FILE *f);

/* Write a man page: "cubeid-agent.8", "cubeid.conf.5" or
 * "cubeid-entries.5".  Returns 0, or -1 for an unknown page. */
int agent_doc_man(FILE *f, const char *page);

/* The documented config keys ("grpc.max_message" for nested ones), entry
 * keys and selector types, NULL-terminated (for the sync test). */
const char *agent_doc_config_key(size_t i);
const char *agent_doc_entry_key(size_t i);
const char *agent_doc_delivery_key(size_t i);
const char *agent_doc_selector_type(size_t i);

#endif
