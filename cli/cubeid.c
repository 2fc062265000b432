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

static const struct tool_group *
find_group(const char *name)
{
	const struct tool_group *g;

	for (g = tool_groups; g->name != NULL; g++)
		if (strcmp(g->name, name) == 0)
			return g;
	return NULL;
}

static int
usage(void)
{
	fprintf(stderr, "usage: cubeid [options] GROUP COMMAND [options]\n");
	fprintf(stderr, "try 'cubeid --help'\n");
	return TOOL_EXIT_USAGE;
}

/* `cubeid help [GROUP [COMMAND...]]`: as `cubeid GROUP [COMMAND...] --help`. */
static int
help(int argc, char **argv)
{
	const struct tool_group *g;
	char *v[16];
	int i;

	if (argc < 2) {
		tool_print_main_help(stdout);
		return TOOL_EXIT_OK;
	}
	if ((g = find_group(argv[1])) == NULL) {
		tool_err("'%s' is not a cubeid command group", argv[1]);
		return usage();
	}
	if (argc > 14) {
		tool_err("too many arguments");
		return TOOL_EXIT_USAGE;
	}
	for (i = 1; i < argc; i++)
		v[i - 1] = argv[i];
	v[argc - 1] = (char *)"--help";
	v[argc] = NULL;
	return g->main(argc, v);
}

int
main(int argc, char **argv)
{
	const struct tool_group *g;
	const char *a, *best;
	int first;

	/* Options before the group apply to the command (`cubeid -v status`). */
	if ((first = tool_parse_global(argc, argv)) < 0)
		return usage();
	a = first < argc ? argv[first] : NULL;
	if (a == NULL)
		return usage();
	if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0)
		return help(1, argv);
	if (strcmp(a, "help") == 0)
		return help(argc - first, argv + first);
	if (strcmp(a, "--version") == 0 || strcmp(a, "version") == 0) {
		tool_print_version(stdout);
		return TOOL_EXIT_OK;
	}
	if (strcmp(a, "--help-man") == 0) {
		tool_print_man(stdout);
		return fflush(stdout) == 0 ? TOOL_EXIT_OK : TOOL_EXIT_FAILURE;
	}
	if (strncmp(a, "--help-completion=", 18) == 0) {
		if (tool_print_completion(stdout, a + 18) != 0) {
			tool_err("--help-completion is bash or zsh, not '%s'", a + 18);
			return TOOL_EXIT_USAGE;
		}
		return fflush(stdout) == 0 ? TOOL_EXIT_OK : TOOL_EXIT_FAILURE;
	}
	if ((g = find_group(a)) != NULL)
		return g->main(argc - first, argv + first);
	if (a[0] == '-') {
		tool_err("unknown option '%s'", a);
		return usage();
	}
	tool_err("'%s' is not a cubeid command group", a);
	best = tool_closest(a, &tool_groups[0].name,
	                    sizeof(tool_groups) / sizeof(tool_groups[0]) - 1,
	                    sizeof(tool_groups[0]));
	if (best != NULL)
		fprintf(stderr, "cubeid: did you mean 'cubeid %s'?\n", best);
	return usage();
}
