/*
 * cubeid: the command-line tool.  `cubeid GROUP COMMAND [options]`.
 *
 * This file is only the group table and main(); each group lives in
 * cli/tool-GROUP.c, the shared parts in cli/tool-common.c and the help
 * and man page rendering in cli/tool-help.c.  See cli/tool.h.
 */
#include "config.h"

#include "cli/tool.h"

#include <stdio.h>
#include <string.h>

/*
 * THE GROUP TABLE.  To add a group `foo`:
 *   1. write cli/tool-foo.c defining tool_foo() and tool_foo_cmds[]
 *      (copy the shape of cli/tool-token.c) and list it in agent/local.mk;
 *   2. add ONE line below:  X(foo, "one-line summary for --help") \
 * The groups appear in --help and in the man page in this order.
 */
// clang-format off
#define TOOL_GROUP_TABLE(X) \
	X(token, "inspect the PKCS#11 token and manage its keys") \
	X(ca, "the CA chain: root, node intermediate enrolment, state") \
	X(svid, "mint, verify and fetch X.509-SVIDs") \
	X(bundle, "the trust domain's bundle") \
	X(jwt, "mint, verify and fetch JWT-SVIDs") \
	X(status, "a running agent's health, over its socket") \
	X(entry, "registration entries: list, show, and check a process against them") \
	X(picod, "PicoD tokens for AgentCube's JWT mode: mint, public key, rotate, verify") \
	X(helper, "a drop-in for spiffe-helper: SVIDs from a Workload API into files, atomically") \
	X(oidc, "Keycloak: tokens without shared secrets, token exchange, verification") \
	X(cluster, "trust across nodes: publish JWT keys, the cluster JWT bundle") \
	/* end of the group table */
// clang-format on

#define X_DECLARE(name, summary) TOOL_GROUP_DECLARE(name);
#define X_ENTRY(name, summary)   {#name, tool_##name, summary, tool_##name##_cmds},

TOOL_GROUP_TABLE(X_DECLARE)

const struct tool_group tool_groups[] = {TOOL_GROUP_TABLE(X_ENTRY){NULL, NULL, NULL, NULL}};

int
main(int argc, char **argv)
{
	const struct tool_group *g;
	const char *a = argc > 1 ? argv[1] : NULL;

	if (a == NULL) {
		fprintf(stderr, "usage: cubeid GROUP COMMAND [options]\n");
		fprintf(stderr, "try 'cubeid --help'\n");
		return TOOL_EXIT_USAGE;
	}
	if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0 || strcmp(a, "help") == 0) {
		tool_print_main_help(stdout);
		return TOOL_EXIT_OK;
	}
	if (strcmp(a, "--version") == 0) {
		tool_print_version(stdout);
		return TOOL_EXIT_OK;
	}
	if (strcmp(a, "--help-man") == 0) {
		tool_print_man(stdout);
		return fflush(stdout) == 0 ? TOOL_EXIT_OK : TOOL_EXIT_FAILURE;
	}
	for (g = tool_groups; g->name != NULL; g++)
		if (strcmp(g->name, a) == 0)
			return g->main(argc - 1, argv + 1);
	if (a[0] == '-')
		tool_err("unknown option '%s' (options go after GROUP COMMAND)", a);
	else
		tool_err("'%s' is not a cubeid command group", a);
	fprintf(stderr, "usage: cubeid GROUP COMMAND [options]\n");
	fprintf(stderr, "try 'cubeid --help'\n");
	return TOOL_EXIT_USAGE;
}
