/*
 * The `cubeid` tool: what every group shares.  Command lookup and option
 * parsing (tool_dispatch), exit codes, error messages, opening the token,
 * and small helpers.  Help and man rendering are in tool-help.c.
 */
#include "config.h"

#include "cli/tool.h"

#include <cubeid/log.h>

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define DEFAULT_STATE_DIR "/var/lib/cubeid"
#define ENV_STATE_DIR     "CUBEID_STATE_DIR"

/* Keys getopt_long returns for the common options and for command
 * option i (COPT_CMD + i). */
enum {
	COPT_TOKEN = 0x100,
	COPT_MODULE,
	COPT_PIN_FILE,
	COPT_STATE_DIR,
	COPT_VERBOSE,
	COPT_QUIET,
	COPT_HELP,
	COPT_VERSION,
	COPT_CMD = 0x200,
};

/* The common options, in the order of the help text.  Keep this table and
 * the switch in parse_options() in step. */
const struct tool_opt tool_common_opts[] = {
        {"token", 0, "URI", "PKCS#11 URI of the token (default: $CUBEID_TOKEN)"},
        {"module", 0, "PATH", "PKCS#11 module, when the URI has no module-path"},
        {"pin-file", 0, "FILE", "file holding the user PIN (never give a PIN on the command line)"},
        {"state-dir", 0, "DIR",
         "state directory (default: $CUBEID_STATE_DIR, " DEFAULT_STATE_DIR ")"},
        {"verbose", 'v', NULL, "more log output; twice for debug"},
        {"quiet", 'q', NULL, "only errors and the data asked for"},
        {"help", 'h', NULL, "show this help and exit"},
        {"version", 0, NULL, "show the version and exit"},
        {0},
};
static const int common_keys[] = {COPT_TOKEN,   COPT_MODULE, COPT_PIN_FILE, COPT_STATE_DIR,
                                  COPT_VERBOSE, COPT_QUIET,  COPT_HELP,     COPT_VERSION};

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

/* Parse options for c->cmd from argv (argv[0] is the last command word). */
static int
parse_options(struct tool_ctx *c, int argc, char **argv, bool *done)
{
	struct option lopts[TOOL_MAX_OPTS + 16];
	char sopts[2 * (TOOL_MAX_OPTS + 16) + 4];
	const struct tool_opt *o;
	size_t nl = 0, ns = 0;
	const char *env;
	int i, key;

	*done = false;
	ns += (size_t)snprintf(sopts, sizeof(sopts), ":");
	for (i = 0; tool_common_opts[i].name != NULL; i++) {
		o = &tool_common_opts[i];
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
		switch (key) {
		case COPT_TOKEN:
			c->token_uri = optarg;
			break;
		case COPT_MODULE:
			c->module = optarg;
			break;
		case COPT_PIN_FILE:
			c->pin_file = optarg;
			break;
		case COPT_STATE_DIR:
			c->state_dir = optarg;
			break;
		case COPT_VERBOSE:
			c->verbose++;
			break;
		case COPT_QUIET:
			c->quiet = true;
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
			return tool_usage_error(c, "unknown option '%s'", argv[optind - 1]);
		default:
			if (key >= COPT_CMD && key < COPT_CMD + TOOL_MAX_OPTS)
				c->val[key - COPT_CMD] = optarg ? optarg : "";
			else
				return tool_usage_error(c, "unexpected option");
		}
	}
	c->argc = argc - optind;
	c->argv = argv + optind;
	if (c->argc > c->cmd->max_args)
		return tool_usage_error(c, "unexpected argument '%s'", c->argv[c->cmd->max_args]);

	if (c->token_uri == NULL && (env = getenv(CUBEID_ENV_TOKEN)) != NULL && *env != '\0')
		c->token_uri = env;
	if (c->state_dir == NULL) {
		env = getenv(ENV_STATE_DIR);
		c->state_dir = env != NULL && *env != '\0' ? env : DEFAULT_STATE_DIR;
	}
	if (c->quiet)
		cubeid_log_set_level(CUBEID_LOG_ERROR);
	else if (c->verbose == 1)
		cubeid_log_set_level(CUBEID_LOG_INFO);
	else if (c->verbose > 1)
		cubeid_log_set_level(CUBEID_LOG_DEBUG);
	return TOOL_EXIT_OK;
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
			tool_err("'%s' is not a 'cubeid %s' command", prefix, group);
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

	if (path == NULL) {
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
