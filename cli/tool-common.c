/*
 * The `cubeid` tool: what every group shares.  Command lookup and option
 * parsing (tool_dispatch), exit codes, error messages, opening the token,
 * and small helpers.  Help and man rendering are in tool-help.c.
 */
#include "config.h"

#include "agent/agent.h"
#include "cli/tool.h"

#include <cubeid/file.h>
#include <cubeid/log.h>
#include <cubeid/token-info.h>

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#define DEFAULT_STATE_DIR "/var/lib/cubeid"
#define ENV_STATE_DIR     "CUBEID_STATE_DIR"
#define ENV_CONFIG        "CUBEID_CONFIG"
#define ENV_MODULE        "CUBEID_PKCS11_MODULE"
#define ENV_SOCKET        "SPIFFE_ENDPOINT_SOCKET"
#define GLOBAL_MAX        32

/* Keys getopt_long returns for the common options and for command
 * option i (COPT_CMD + i). */
enum {
	COPT_TOKEN = 0x100,
	COPT_MODULE,
	COPT_PIN_FILE,
	COPT_STATE_DIR,
	COPT_CONFIG,
	COPT_VERBOSE,
	COPT_QUIET,
	COPT_HELP,
	COPT_VERSION,
	COPT_CMD = 0x200,
	COPT_ALIAS = 0x300,
};

/* The common options, in the order of the help text.  Keep this table and
 * the switch in parse_options() in step. */
const struct tool_opt tool_common_opts[] = {
        {"token", 0, "URI", "PKCS#11 URI of the token (default: $CUBEID_TOKEN)"},
        {"module", 0, "PATH", "PKCS#11 module, when the URI has no module-path"},
        {"pin-file", 0, "FILE", "file holding the user PIN (never give a PIN on the command line)"},
        {"state-dir", 0, "DIR",
         "state directory (default: $CUBEID_STATE_DIR, the config's state_dir, " DEFAULT_STATE_DIR
         ")"},
        {"config", 0, "FILE",
         "the agent's config file, for the token, module, PIN file, state directory and "
         "socket (default: $CUBEID_CONFIG, " TOOL_CONFIG_DEFAULT_DOC " when it exists)"},
        {"verbose", 'v', NULL, "more log output; twice for debug"},
        {"quiet", 'q', NULL, "only errors and the data asked for"},
        {"help", 'h', NULL, "show this help and exit"},
        {"version", 0, NULL, "show the version and exit"},
        {0},
};
static const int common_keys[] = {COPT_TOKEN,     COPT_MODULE, COPT_PIN_FILE,
                                  COPT_STATE_DIR, COPT_CONFIG, COPT_VERBOSE,
                                  COPT_QUIET,     COPT_HELP,   COPT_VERSION};

/* Old spellings, accepted where the option they stand for is, and never
 * shown: the help, man page and completion list only the new names. */
const struct tool_alias tool_aliases[] = {
        {"key-type", "type", NULL},        /* ca init|csr|jwt-rotate, svid mint, picod */
        {"audience", "aud", NULL},         /* oidc exchange */
        {"realm", "keycloak-realm", NULL}, /* oidc verify */
        {"json", "output", "json"},        /* token info, keys list, ..., status */
        {NULL, NULL, NULL},
};

/* Options given before the group, in order (tool_parse_global). */
static struct global_opt {
	const char *name; /* long name */
	const char *value;
} globals[GLOBAL_MAX];
static size_t n_globals;
/* The config file read for the defaults (kept for the process's life: the
 * context points into it). */
static struct agent_config *loaded_config;

void
tool_err(const char *fmt, ...)
{
	va_list ap;

	fflush(stdout);
	fputs("cubeid: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

int
tool_exit_code(int err)
{
	switch (err) {
	case CUBEID_OK:
		return TOOL_EXIT_OK;
	case CUBEID_ERR_INVALID_ARG:
	case CUBEID_ERR_P11_URI:
		return TOOL_EXIT_USAGE;
	case CUBEID_ERR_P11_MODULE:
	case CUBEID_ERR_P11_MODULE_DENIED:
	case CUBEID_ERR_P11_NO_TOKEN:
	case CUBEID_ERR_P11_AMBIGUOUS:
	case CUBEID_ERR_P11_PIN_MISSING:
	case CUBEID_ERR_P11_PIN_INCORRECT:
	case CUBEID_ERR_P11_PIN_LOCKED:
	case CUBEID_ERR_P11_NOT_LOGGED_IN:
	case CUBEID_ERR_P11_SESSION:
	case CUBEID_ERR_P11_DEVICE:
		return TOOL_EXIT_TOKEN;
	case CUBEID_ERR_NOT_FOUND:
		return TOOL_EXIT_NOT_FOUND;
	case CUBEID_ERR_UNSUPPORTED:
	case CUBEID_ERR_P11_MECHANISM:
		return TOOL_EXIT_UNSUPPORTED;
	default:
		return TOOL_EXIT_FAILURE;
	}
}

int
tool_fail(int err, const char *fmt, ...)
{
	va_list ap;

	fflush(stdout);
	fputs("cubeid: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, ": %s\n", cubeid_strerror(err));
	return tool_exit_code(err);
}

static void
print_try(const char *group, const struct tool_cmd *cmd)
{
	if (group == NULL)
		fprintf(stderr, "try 'cubeid --help'\n");
	else if (cmd == NULL)
		fprintf(stderr, "try 'cubeid %s --help'\n", group);
	else
		fprintf(stderr, "try 'cubeid %s %s --help'\n", group, cmd->name);
}

int
tool_usage_error(const struct tool_ctx *c, const char *fmt, ...)
{
	va_list ap;

	fflush(stdout);
	fputs("cubeid: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	if (c != NULL && c->cmd != NULL)
		fprintf(stderr, "usage: cubeid %s %s%s%s\n", c->group, c->cmd->name,
		        c->cmd->usage && *c->cmd->usage ? " " : "",
		        c->cmd->usage ? c->cmd->usage : "");
	print_try(c ? c->group : NULL, c ? c->cmd : NULL);
	return TOOL_EXIT_USAGE;
}

static int
opt_index(const struct tool_cmd *cmd, const char *name)
{
	int i;

	for (i = 0; cmd->opts != NULL && cmd->opts[i].name != NULL; i++)
		if (strcmp(cmd->opts[i].name, name) == 0)
			return i;
	return -1;
}

const char *
tool_opt(const struct tool_ctx *c, const char *name)
{
	int i = opt_index(c->cmd, name);

	if (i < 0) {
		/* A bug in the command's code: it asked for an option it does
		 * not declare.  Say so rather than silently ignore it. */
		cubeid_error("internal: command '%s' has no option --%s", c->cmd->name, name);
		return NULL;
	}
	return c->val[i];
}

bool
tool_flag(const struct tool_ctx *c, const char *name)
{
	return tool_opt(c, name) != NULL;
}

/* Does cmd's name start with the words w[0..n)? */
static bool
cmd_has_prefix(const struct tool_cmd *cmd, char **w, int n)
{
	const char *p = cmd->name;
	size_t len;
	int i;

	for (i = 0; i < n; i++) {
		len = strlen(w[i]);
		if (strncmp(p, w[i], len) != 0 || (p[len] != ' ' && p[len] != '\0'))
			return false;
		p += len;
		if (*p == ' ')
			p++;
		else if (i + 1 < n)
			return false;
	}
	return true;
}

/* Does cmd's name consist of exactly the words w[0..n)? */
static bool
cmd_is(const struct tool_cmd *cmd, char **w, int n)
{
	size_t words = 1;
	const char *p;

	for (p = cmd->name; *p; p++)
		if (*p == ' ')
			words++;
	return (int)words == n && cmd_has_prefix(cmd, w, n);
}

static bool
is_help(const char *a)
{
	return strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0;
}

/* The index of name in tool_common_opts, or -1. */
static int
common_index(const char *name)
{
	int i;

	for (i = 0; tool_common_opts[i].name != NULL; i++)
		if (strcmp(tool_common_opts[i].name, name) == 0)
			return i;
	return -1;
}

/* Set common option key to value (NULL for a flag); help and version are
 * not set here. */
static void
set_common(struct tool_ctx *c, int key, const char *value)
{
	switch (key) {
	case COPT_TOKEN:
		c->token_uri = value;
		break;
	case COPT_MODULE:
		c->module = value;
		break;
	case COPT_PIN_FILE:
		c->pin_file = value;
		break;
	case COPT_STATE_DIR:
		c->state_dir = value;
		break;
	case COPT_CONFIG:
		c->config = value;
		break;
	case COPT_VERBOSE:
		c->verbose++;
		break;
	case COPT_QUIET:
		c->quiet = true;
		break;
	default:
		break;
	}
}

/* Apply the options given before the group: those the command (or every
 * command) takes, unless given again after it; the others are ignored, as
 * kubectl ignores a global flag a command does not use. */
static void
apply_globals(struct tool_ctx *c, bool given_after[])
{
	size_t g;
	int i, ci;

	for (g = 0; g < n_globals; g++) {
		ci = common_index(globals[g].name);
		i = opt_index(c->cmd, globals[g].name);
		if (ci >= 0 && i >= 0) {
			/* the command's own option of that name (helper run
			 * --config) is not the global one */
			cubeid_debug("'--%s' given before the group is not 'cubeid %s %s --%s'",
			             globals[g].name, c->group, c->cmd->name, globals[g].name);
		} else if (ci >= 0) {
			if (!given_after[ci] || common_keys[ci] == COPT_VERBOSE)
				set_common(c, common_keys[ci], globals[g].value);
		} else if (i >= 0) {
			if (c->val[i] == NULL)
				c->val[i] = globals[g].value != NULL ? globals[g].value : "";
		} else {
			cubeid_debug(
			        "'--%s' given before the group: 'cubeid %s %s' does not take it",
			        globals[g].name, c->group, c->cmd->name);
		}
	}
}

/* The agent's config file for the defaults: --config (must load), else
 * $CUBEID_CONFIG (must load), else TOOL_CONFIG_DEFAULT when it exists. */
static int
load_config(struct tool_ctx *c)
{
	const char *path = c->config, *env;
	bool must = true;
	char *err = NULL;
	int r;

	if (path == NULL && (env = getenv(ENV_CONFIG)) != NULL && *env != '\0')
		path = env;
	if (path == NULL) {
		path = TOOL_CONFIG_DEFAULT;
		must = false;
		if (access(path, F_OK) != 0)
			goto defaults;
	}
	if (loaded_config != NULL && loaded_config->source != NULL &&
	    strcmp(loaded_config->source, path) == 0)
		goto apply;
	config_free(loaded_config);
	loaded_config = NULL;
	if ((r = config_load(path, &loaded_config, &err)) != CUBEID_OK) {
		if (must) {
			tool_err("cannot read the config file %s: %s", err ? err : path,
			         cubeid_strerror(r));
			free(err);
			return tool_exit_code(r == CUBEID_ERR_NOT_FOUND ? r : CUBEID_ERR_CONFIG);
		}
		/* The default file of an agent installed here, which this user
		 * may not read (mode 0640): the defaults without it. */
		cubeid_info("not using %s: %s", err ? err : path, cubeid_strerror(r));
		free(err);
		goto defaults;
	}
	free(err);
apply:
	c->config = path;
	if (c->token_uri == NULL)
		c->token_uri = loaded_config->token;
	if (c->module == NULL && ((env = getenv(ENV_MODULE)) == NULL || *env == '\0'))
		c->module = loaded_config->module;
	if (c->pin_file == NULL && getenv("CUBEID_PIN_FILE") == NULL &&
	    getenv("CUBEID_PIN") == NULL)
		c->pin_file = loaded_config->pin_file;
	if (c->state_dir == NULL)
		c->state_dir = loaded_config->state_dir;
	c->socket = loaded_config->socket_path;
	return TOOL_EXIT_OK;
defaults:
	/* no file: the agent's own defaults (its socket) */
	config_free(loaded_config);
	loaded_config = NULL;
	if (config_default(&loaded_config) == CUBEID_OK)
		c->socket = loaded_config->socket_path;
	return TOOL_EXIT_OK;
}

const char *
tool_config_loaded(const struct tool_ctx *c)
{
	return loaded_config != NULL && loaded_config->source != NULL ? c->config : NULL;
}

/* Levenshtein distance, capped: enough for "did you mean". */
static size_t
edit_distance(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b), i, j, prev, cur, up;
	size_t row[64];

	if (la >= 64 || lb >= 64)
		return 64;
	for (j = 0; j <= lb; j++)
		row[j] = j;
	for (i = 1; i <= la; i++) {
		prev = row[0];
		row[0] = i;
		for (j = 1; j <= lb; j++) {
			up = row[j];
			cur = prev + (a[i - 1] != b[j - 1]);
			if (up + 1 < cur)
				cur = up + 1;
			if (row[j - 1] + 1 < cur)
				cur = row[j - 1] + 1;
			row[j] = cur;
			prev = up;
		}
	}
	return row[lb];
}

const char *
tool_closest(const char *word, const char *const *names, size_t n, size_t stride)
{
	const char *best = NULL, *name;
	size_t i, d, best_d = 3, wlen = strlen(word);

	for (i = 0; i < n; i++) {
		name = *(const char *const *)(const void *)((const char *)names + i * stride);
		if (name == NULL)
			continue;
		d = edit_distance(word, name);
		/* a prefix is a likely meaning too ("ent" for "entry") */
		if (wlen >= 2 && strncmp(word, name, wlen) == 0)
			d = 1;
		if (d < best_d && d * 3 <= strlen(name) + 2) {
			best = name;
			best_d = d;
		}
	}
	return best;
}

/* The long option name closest to the unknown argv[] option a. */
static void
suggest_option(const char *a, const struct option *lopts)
{
	char name[64];
	const char *best;
	size_t n = 0, len;

	if (strncmp(a, "--", 2) != 0)
		return;
	len = strcspn(a + 2, "=");
	if (len == 0 || len >= sizeof(name))
		return;
	memcpy(name, a + 2, len);
	name[len] = '\0';
	while (lopts[n].name != NULL)
		n++;
	if ((best = tool_closest(name, &lopts[0].name, n, sizeof(*lopts))) != NULL)
		fprintf(stderr, "cubeid: did you mean '--%s'?\n", best);
}

/* Parse options for c->cmd from argv (argv[0] is the last command word). */
static int
parse_options(struct tool_ctx *c, int argc, char **argv, bool *done)
{
	struct option lopts[3 * TOOL_MAX_OPTS + 16];
	char sopts[2 * (TOOL_MAX_OPTS + 16) + 4];
	bool given_after[sizeof(common_keys) / sizeof(common_keys[0])] = {false};
	const struct tool_opt *o;
	size_t nl = 0, ns = 0;
	const char *env, *out;
	int i, key, r;

	*done = false;
	ns += (size_t)snprintf(sopts, sizeof(sopts), ":");
	for (i = 0; tool_common_opts[i].name != NULL; i++) {
		o = &tool_common_opts[i];
		/* a command's own option of that name wins (helper run --config) */
		if (opt_index(c->cmd, o->name) >= 0)
			continue;
		lopts[nl++] = (struct option){o->name, o->arg ? required_argument : no_argument,
		                              NULL, common_keys[i]};
		if (o->short_name) {
			sopts[ns++] = (char)o->short_name;
			if (o->arg)
				sopts[ns++] = ':';
		}
	}
	for (i = 0; c->cmd->opts != NULL && c->cmd->opts[i].name != NULL; i++) {
		if (i >= TOOL_MAX_OPTS) {
			cubeid_error("internal: command '%s' has too many options", c->cmd->name);
			return TOOL_EXIT_FAILURE;
		}
		o = &c->cmd->opts[i];
		lopts[nl++] = (struct option){o->name, o->arg ? required_argument : no_argument,
		                              NULL, COPT_CMD + i};
		if (o->short_name) {
			sopts[ns++] = (char)o->short_name;
			if (o->arg)
				sopts[ns++] = ':';
		}
	}
	/* the old spellings of this command's options */
	for (i = 0; tool_aliases[i].old != NULL && nl + 1 < sizeof(lopts) / sizeof(lopts[0]); i++) {
		int t = opt_index(c->cmd, tool_aliases[i].name);

		if (t < 0 || opt_index(c->cmd, tool_aliases[i].old) >= 0)
			continue;
		lopts[nl++] = (struct option){tool_aliases[i].old,
		                              tool_aliases[i].value == NULL && c->cmd->opts[t].arg
		                                      ? required_argument
		                                      : no_argument,
		                              NULL, COPT_ALIAS + i};
	}
	lopts[nl] = (struct option){0};
	sopts[ns] = '\0';

	optind = 0; /* full reinitialisation (GNU) */
	opterr = 0;
	while ((key = getopt_long(argc, argv, sopts, lopts, NULL)) != -1) {
		/* A short option is reported as its character: map it back. */
		if (key < 0x100 && key != '?' && key != ':') {
			for (i = 0; tool_common_opts[i].name != NULL; i++)
				if (tool_common_opts[i].short_name == key)
					key = common_keys[i];
			for (i = 0; c->cmd->opts != NULL && c->cmd->opts[i].name != NULL; i++)
				if (c->cmd->opts[i].short_name == key)
					key = COPT_CMD + i;
		}
		for (i = 0; i < (int)(sizeof(common_keys) / sizeof(common_keys[0])); i++)
			if (common_keys[i] == key)
				given_after[i] = true;
		switch (key) {
		case COPT_TOKEN:
		case COPT_MODULE:
		case COPT_PIN_FILE:
		case COPT_STATE_DIR:
		case COPT_CONFIG:
		case COPT_VERBOSE:
		case COPT_QUIET:
			set_common(c, key, optarg);
			break;
		case COPT_HELP:
			tool_print_cmd_help(stdout, c->group, c->cmd);
			*done = true;
			return TOOL_EXIT_OK;
		case COPT_VERSION:
			tool_print_version(stdout);
			*done = true;
			return TOOL_EXIT_OK;
		case ':':
			return tool_usage_error(c, "option '%s' needs an argument",
			                        argv[optind - 1]);
		case '?':
			if (optopt > 0 && optopt < 0x100)
				return tool_usage_error(c, "unknown option '-%c'", optopt);
			if (optopt != 0)
				return tool_usage_error(c, "option '%s' takes no argument",
				                        argv[optind - 1]);
			suggest_option(argv[optind - 1], lopts);
			return tool_usage_error(c, "unknown option '%s'", argv[optind - 1]);
		default:
			if (key >= COPT_ALIAS) {
				const struct tool_alias *al = &tool_aliases[key - COPT_ALIAS];

				c->val[opt_index(c->cmd, al->name)] = al->value ? al->value
				                                      : optarg  ? optarg
				                                                : "";
			} else if (key >= COPT_CMD && key < COPT_CMD + TOOL_MAX_OPTS) {
				c->val[key - COPT_CMD] = optarg ? optarg : "";
			} else {
				return tool_usage_error(c, "unexpected option");
			}
		}
	}
	c->argc = argc - optind;
	c->argv = argv + optind;
	if (c->argc > c->cmd->max_args)
		return tool_usage_error(c, "unexpected argument '%s'", c->argv[c->cmd->max_args]);
	apply_globals(c, given_after);

	if (opt_index(c->cmd, "output") >= 0 &&
	    (out = c->val[opt_index(c->cmd, "output")]) != NULL) {
		if (strcmp(out, "json") == 0)
			c->json = true;
		else if (strcmp(out, "text") != 0)
			return tool_usage_error(c, "-o/--output is text or json, not '%s'", out);
	}
	if (opt_index(c->cmd, "no-headers") >= 0)
		c->no_headers = c->val[opt_index(c->cmd, "no-headers")] != NULL;

	if (c->quiet)
		cubeid_log_set_level(CUBEID_LOG_ERROR);
	else if (c->verbose == 1)
		cubeid_log_set_level(CUBEID_LOG_INFO);
	else if (c->verbose > 1)
		cubeid_log_set_level(CUBEID_LOG_DEBUG);

	if (c->token_uri == NULL && (env = getenv(CUBEID_ENV_TOKEN)) != NULL && *env != '\0')
		c->token_uri = env;
	if (c->state_dir == NULL && (env = getenv(ENV_STATE_DIR)) != NULL && *env != '\0')
		c->state_dir = env;
	if ((r = load_config(c)) != TOOL_EXIT_OK)
		return r;
	if (c->state_dir == NULL)
		c->state_dir = DEFAULT_STATE_DIR;
	return TOOL_EXIT_OK;
}

/* The long names tool_parse_global() knows, and whether each takes a
 * value: the common options and the agent and output options. */
static const struct {
	const char *name;
	int short_name;
	bool arg;
} global_names[] = {
        {"token", 0, true},       {"module", 0, true}, {"pin-file", 0, true},
        {"state-dir", 0, true},   {"config", 0, true}, {"verbose", 'v', false},
        {"quiet", 'q', false},    {"socket", 0, true}, {"output", 'o', true},
        {"no-headers", 0, false}, {"json", 0, false},
};

int
tool_parse_global(int argc, char **argv)
{
	size_t k, len, nk = sizeof(global_names) / sizeof(global_names[0]);
	const char *a, *eq;
	int i;

	n_globals = 0;
	for (i = 1; i < argc && argv[i][0] == '-' && argv[i][1] != '\0'; i++) {
		a = argv[i];
		if (strcmp(a, "--") == 0)
			return i + 1;
		if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0 ||
		    strcmp(a, "--version") == 0 || strcmp(a, "--help-man") == 0 ||
		    strncmp(a, "--help-completion", 17) == 0)
			return i;
		if (n_globals >= GLOBAL_MAX) {
			tool_err("too many options before the group");
			return -TOOL_EXIT_USAGE;
		}
		if (a[1] != '-') {
			/* -v, -vq, -o json, -ojson */
			for (const char *p = a + 1; *p != '\0'; p++) {
				for (k = 0; k < nk && global_names[k].short_name != *p; k++)
					;
				if (k == nk) {
					tool_err("unknown option '-%c' before the group", *p);
					return -TOOL_EXIT_USAGE;
				}
				globals[n_globals].name = global_names[k].name;
				globals[n_globals].value = NULL;
				if (global_names[k].arg) {
					if (p[1] != '\0')
						globals[n_globals].value = p + 1;
					else if (i + 1 < argc)
						globals[n_globals].value = argv[++i];
					else {
						tool_err("option '-%c' needs an argument", *p);
						return -TOOL_EXIT_USAGE;
					}
					n_globals++;
					break;
				}
				if (++n_globals >= GLOBAL_MAX) {
					tool_err("too many options before the group");
					return -TOOL_EXIT_USAGE;
				}
			}
			continue;
		}
		eq = strchr(a, '=');
		len = eq ? (size_t)(eq - a - 2) : strlen(a + 2);
		for (k = 0; k < nk; k++)
			if (strlen(global_names[k].name) == len &&
			    strncmp(global_names[k].name, a + 2, len) == 0)
				break;
		if (k == nk) {
			tool_err("unknown option '%s' before the group (a command's own options "
			         "go after it)",
			         a);
			return -TOOL_EXIT_USAGE;
		}
		globals[n_globals].name = global_names[k].name;
		globals[n_globals].value = NULL;
		if (strcmp(global_names[k].name, "json") == 0) {
			globals[n_globals].name = "output";
			globals[n_globals].value = "json";
		} else if (global_names[k].arg) {
			if (eq != NULL)
				globals[n_globals].value = eq + 1;
			else if (i + 1 < argc)
				globals[n_globals].value = argv[++i];
			else {
				tool_err("option '%s' needs an argument", a);
				return -TOOL_EXIT_USAGE;
			}
		} else if (eq != NULL) {
			tool_err("option '--%s' takes no argument", global_names[k].name);
			return -TOOL_EXIT_USAGE;
		}
		n_globals++;
	}
	return i;
}

int
tool_dispatch(const char *group, const struct tool_cmd *cmds, int argc, char **argv)
{
	struct tool_ctx c;
	const struct tool_cmd *cmd, *found = NULL;
	int nwords = 0, i, r;
	bool done, any;

	memset(&c, 0, sizeof(c));
	c.group = group;
	/* The leading words that are not options name the command. */
	while (1 + nwords < argc && argv[1 + nwords][0] != '-')
		nwords++;
	/* The longest command that the words start with wins. */
	for (i = nwords; i > 0 && found == NULL; i--)
		for (cmd = cmds; cmd->name != NULL; cmd++)
			if (cmd_is(cmd, argv + 1, i)) {
				found = cmd;
				nwords = i;
				break;
			}
	if (found == NULL) {
		const char *next = 1 + nwords < argc ? argv[1 + nwords] : NULL;
		char prefix[256] = "";
		size_t plen = 0;

		any = false;
		for (cmd = cmds; cmd->name != NULL; cmd++)
			any |= cmd_has_prefix(cmd, argv + 1, nwords);
		for (i = 0; i < nwords && plen < sizeof(prefix); i++)
			plen += (size_t)snprintf(prefix + plen, sizeof(prefix) - plen, "%s%s",
			                         i ? " " : "", argv[1 + i]);
		if (!any) {
			size_t ncmds = 0;
			const char *best;

			while (cmds[ncmds].name != NULL)
				ncmds++;
			tool_err("'%s' is not a 'cubeid %s' command", prefix, group);
			if ((best = tool_closest(prefix, &cmds[0].name, ncmds, sizeof(*cmds))) !=
			    NULL)
				fprintf(stderr, "cubeid: did you mean 'cubeid %s %s'?\n", group,
				        best);
			print_try(group, NULL);
			return TOOL_EXIT_USAGE;
		}
		if (next != NULL && is_help(next)) {
			tool_print_group_help(stdout, group, cmds, nwords ? prefix : NULL);
			return TOOL_EXIT_OK;
		}
		if (next != NULL && strcmp(next, "--version") == 0) {
			tool_print_version(stdout);
			return TOOL_EXIT_OK;
		}
		if (next != NULL)
			tool_err("'cubeid %s%s%s' needs a command before '%s'", group,
			         nwords ? " " : "", prefix, next);
		else
			tool_err("'cubeid %s%s%s' needs a command", group, nwords ? " " : "",
			         prefix);
		tool_print_group_help(stderr, group, cmds, nwords ? prefix : NULL);
		return TOOL_EXIT_USAGE;
	}
	c.cmd = found;
	r = parse_options(&c, argc - nwords, argv + nwords, &done);
	if (r != TOOL_EXIT_OK || done)
		return r;
	return found->run(&c);
}

/* No token matched uri: say which tokens the module does show, and where
 * SoftHSM2 looks for them. */
static void
hint_tokens(const struct tool_ctx *c, const char *uri)
{
	json_t *info = NULL, *slot, *label;
	const char *path, *conf = getenv("SOFTHSM2_CONF");
	char *owned = NULL;
	size_t i, n = 0;

	if ((path = tool_module_for(c, uri, &owned)) == NULL ||
	    cubeid_token_info_module(path, &info) != CUBEID_OK) {
		free(owned);
		return;
	}
	fflush(stdout);
	json_array_foreach(json_object_get(info, "slots"), i, slot)
	{
		if ((label = json_object_get(slot, "token_label")) == NULL)
			continue;
		fprintf(stderr, "%s'%s'", n++ == 0 ? "cubeid: the module shows the tokens " : ", ",
		        json_string_value(label));
	}
	if (n == 0)
		fprintf(stderr, "cubeid: the module %s shows no initialised token", path);
	fputc('\n', stderr);
	if (strstr(path, "softhsm") != NULL)
		fprintf(stderr, "cubeid: SoftHSM2 reads its token directory from %s%s\n",
		        conf != NULL ? "SOFTHSM2_CONF=" : "the default softhsm2.conf",
		        conf != NULL ? conf : " (set SOFTHSM2_CONF to use another)");
	json_decref(info);
	free(owned);
}

int
tool_token_open(const struct tool_ctx *c, bool login, const char *uri_fallback, cubeid_token **out)
{
	struct cubeid_token_opts o = {0};
	const char *uri = c->token_uri ? c->token_uri : uri_fallback;
	char *shown = NULL;
	int fd, r;

	*out = NULL;
	if (login && c->pin_file != NULL) {
		/* Say plainly that the PIN file is the problem (the layer would
		 * report a missing file as "not found"). */
		if ((fd = open(c->pin_file, O_RDONLY | O_CLOEXEC | O_NOCTTY)) < 0) {
			tool_err("cannot read PIN file %s: %s", c->pin_file, strerror(errno));
			return CUBEID_ERR_P11_PIN_MISSING;
		}
		close(fd);
	}
	o.module_path = c->module;
	o.pin_file = c->pin_file;
	o.no_login = !login;
	if ((r = cubeid_token_open(uri, &o, out)) != CUBEID_OK) {
		if (r == CUBEID_ERR_P11_NO_TOKEN)
			hint_tokens(c, uri);
		if (uri == NULL) {
			(void)tool_fail(r, "cannot open the token (no --token or $%s given)",
			                CUBEID_ENV_TOKEN);
		} else {
			shown = tool_uri_for_display(uri);
			(void)tool_fail(r, "cannot open token %s", shown ? shown : "(URI)");
			free(shown);
		}
	}
	return r;
}

char *
tool_uri_for_display(const char *uri)
{
	const char *q = strchr(uri, '?');

	return q ? strndup(uri, (size_t)(q - uri)) : strdup(uri);
}

char *
tool_hex(const uint8_t *buf, size_t len)
{
	static const char digits[] = "0123456789abcdef";
	char *s;
	size_t i;

	if ((s = malloc(2 * len + 1)) == NULL)
		return NULL;
	for (i = 0; i < len; i++) {
		s[2 * i] = digits[buf[i] >> 4];
		s[2 * i + 1] = digits[buf[i] & 15];
	}
	s[2 * len] = '\0';
	return s;
}

static int
hexval(char ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	if (ch >= 'A' && ch <= 'F')
		return ch - 'A' + 10;
	return -1;
}

int
tool_unhex(const char *hex, uint8_t *out, size_t out_max, size_t *out_len)
{
	size_t n = 0;
	int hi, lo;

	*out_len = 0;
	if (strncmp(hex, "0x", 2) == 0)
		hex += 2;
	while (*hex != '\0') {
		if (*hex == ':' && n > 0) {
			hex++;
			continue;
		}
		if ((hi = hexval(hex[0])) < 0 || (lo = hexval(hex[1])) < 0)
			return CUBEID_ERR_PARSE;
		if (n >= out_max)
			return CUBEID_ERR_TOO_LARGE;
		out[n++] = (uint8_t)(hi << 4 | lo);
		hex += 2;
	}
	if (n == 0)
		return CUBEID_ERR_PARSE;
	*out_len = n;
	return CUBEID_OK;
}

static int
write_all(int fd, const void *buf, size_t len)
{
	const uint8_t *p = buf;
	ssize_t n;

	while (len > 0) {
		n = write(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int
tool_write_out(const char *path, const void *buf, size_t len)
{
	char *tmp = NULL;
	int fd = -1, r = CUBEID_ERR_IO;

	if (path == NULL || strcmp(path, "-") == 0) {
		if (write_all(STDOUT_FILENO, buf, len) != 0) {
			tool_err("cannot write to standard output: %s", strerror(errno));
			return CUBEID_ERR_IO;
		}
		return CUBEID_OK;
	}
	/* A new file beside the old one, then rename: a reader sees the old
	 * content or the new, never half. */
	if (asprintf(&tmp, "%s.tmp.XXXXXX", path) < 0) {
		tmp = NULL;
		return CUBEID_ERR_NOMEM;
	}
	if ((fd = mkstemp(tmp)) < 0) {
		tool_err("cannot create %s: %s", tmp, strerror(errno));
		free(tmp);
		return CUBEID_ERR_IO;
	}
	if (fchmod(fd, 0644) != 0 || write_all(fd, buf, len) != 0 || fsync(fd) != 0) {
		tool_err("cannot write %s: %s", tmp, strerror(errno));
		goto out;
	}
	if (close(fd) != 0) {
		fd = -1;
		tool_err("cannot write %s: %s", tmp, strerror(errno));
		goto out;
	}
	fd = -1;
	if (rename(tmp, path) != 0) {
		tool_err("cannot rename %s to %s: %s", tmp, path, strerror(errno));
		goto out;
	}
	r = CUBEID_OK;
out:
	if (fd >= 0)
		close(fd);
	if (r != CUBEID_OK)
		unlink(tmp);
	free(tmp);
	return r;
}

int
tool_read_in(const char *path, size_t max, char **out, size_t *out_len)
{
	char *buf;
	size_t off = 0;
	ssize_t n;

	*out = NULL;
	if (out_len != NULL)
		*out_len = 0;
	if (path == NULL || strcmp(path, "-") != 0)
		return cubeid_read_file(path, max, out, out_len);
	if ((buf = malloc(max + 1)) == NULL)
		return CUBEID_ERR_NOMEM;
	for (;;) {
		n = read(STDIN_FILENO, buf + off, max + 1 - off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			free(buf);
			return CUBEID_ERR_IO;
		}
		if (n == 0)
			break;
		off += (size_t)n;
		if (off > max) {
			free(buf);
			return CUBEID_ERR_TOO_LARGE;
		}
	}
	buf[off] = '\0';
	*out = buf;
	if (out_len != NULL)
		*out_len = off;
	return CUBEID_OK;
}

const char *
tool_time(int64_t t, char buf[TOOL_TIME_LEN])
{
	time_t tt = (time_t)t;
	struct tm tm;

	if (t <= 0 || gmtime_r(&tt, &tm) == NULL ||
	    strftime(buf, TOOL_TIME_LEN, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
		snprintf(buf, TOOL_TIME_LEN, "-");
	return buf;
}

int
tool_print_json(json_t *j)
{
	char *s = j != NULL ? json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;

	json_decref(j);
	if (s == NULL)
		return tool_fail(CUBEID_ERR_NOMEM, "JSON output");
	printf("%s\n", s);
	free(s);
	if (fflush(stdout) != 0)
		return tool_fail(CUBEID_ERR_IO, "cannot write the output");
	return TOOL_EXIT_OK;
}

int
tool_bundle_out(const struct tool_ctx *c, const char *fmt, const char *text, size_t len)
{
	const char *out = tool_opt(c, "out");
	bool to_stdout = out == NULL || strcmp(out, "-") == 0;
	json_t *doc, *b;
	char *s;
	int r;

	if (!c->json) {
		if (strcmp(fmt, "pem") != 0 && to_stdout) {
			/* a JSON document: a line of its own */
			if (fwrite(text, 1, len, stdout) != len || fputc('\n', stdout) == EOF ||
			    fflush(stdout) != 0)
				return tool_fail(CUBEID_ERR_IO, "standard output");
			return TOOL_EXIT_OK;
		}
		return tool_exit_code(tool_write_out(out, text, len));
	}
	b = strcmp(fmt, "pem") == 0 ? json_stringn(text, len) : json_loadb(text, len, 0, NULL);
	if (b == NULL)
		return tool_fail(CUBEID_ERR_PARSE, "the %s bundle", fmt);
	doc = json_pack("{s:s s:o}", "format", fmt, "bundle", b);
	if (to_stdout)
		return tool_print_json(doc);
	s = doc != NULL ? json_dumps(doc, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
	json_decref(doc);
	if (s == NULL)
		return tool_fail(CUBEID_ERR_NOMEM, "JSON output");
	r = tool_write_out(out, s, strlen(s));
	free(s);
	return tool_exit_code(r);
}
