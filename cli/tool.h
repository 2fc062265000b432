/*
 * The `cubeid` command-line tool: shared declarations.
 *
 * cubeid is git/OpenSSH-style: `cubeid GROUP COMMAND [options]`.  A group
 * (token, ca, svid, ...) is one file cli/tool-GROUP.c exporting
 *
 *     int tool_GROUP(int argc, char **argv);        argv[0] is "GROUP"
 *     extern const struct tool_cmd tool_GROUP_cmds[];
 *
 * and one line in the table in cli/cubeid.c.  A group normally describes
 * its commands in a tool_cmd table and lets tool_dispatch() parse the
 * command line: that table is also the one source of the `--help` text and
 * of the man page (cubeid --help-man > docs/man/cubeid.1).
 *
 * Handlers return a TOOL_EXIT_* code.  A cubeid error code becomes one with
 * tool_exit_code(); tool_fail() prints it with context and returns it.
 */
#ifndef CUBEID_TOOL_H
#define CUBEID_TOOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <cubeid/token.h>

/*
 * Exit codes (documented in cubeid(1), EXIT STATUS; tool_exit_docs[]).
 * Keep them few and stable: scripts test them.
 */
#define TOOL_EXIT_OK          0 /* success */
#define TOOL_EXIT_FAILURE     1 /* anything else that failed */
#define TOOL_EXIT_USAGE       2 /* bad command line: option, argument, URI */
#define TOOL_EXIT_TOKEN       3 /* module, token selection, PIN or login */
#define TOOL_EXIT_NOT_FOUND   4 /* the named key (or file) does not exist */
#define TOOL_EXIT_UNSUPPORTED 5 /* the token or this build cannot do it */
#define TOOL_EXIT_FORBIDDEN   6 /* a valid credential lacks a required role */
#define TOOL_EXIT_REJECTED    7 /* a token, certificate or state checked and refused */
#define TOOL_EXIT_NOT_READY   8 /* the agent answers but is not ready (status) */

/* Longest option list a command may have (not counting common options). */
#define TOOL_MAX_OPTS 24

/* One command-line option of a command.  Terminate a table with {0}. */
struct tool_opt {
	const char *name; /* long name without "--" */
	int short_name;   /* 'x' for -x, or 0 */
	const char *arg;  /* metavariable ("LABEL"), or NULL for a flag */
	const char *help; /* one line */
};

struct tool_ctx;

/* One command of a group.  Terminate a table with {0} (name NULL). */
struct tool_cmd {
	const char *name;        /* the words after the group: "keys generate" */
	const char *usage;       /* what follows the command in a usage line */
	const char *summary;     /* one line, lower case, no full stop */
	const char *description; /* NULL, or paragraphs ("\n\n" between) */
	const struct tool_opt *opts;
	int max_args; /* positional arguments accepted */
	int (*run)(struct tool_ctx *c);
};

/* One group: a line of the table in cli/cubeid.c. */
struct tool_group {
	const char *name;
	int (*main)(int argc, char **argv);
	const char *summary;
	const struct tool_cmd *cmds; /* for --help and the man page; may be NULL */
};

/* What tool_dispatch() parsed for a command. */
struct tool_ctx {
	const char *group;
	const struct tool_cmd *cmd;
	/* common options (tool_common_opts) */
	const char *token_uri; /* --token, else $CUBEID_TOKEN, else NULL */
	const char *module;    /* --module, else NULL (the layer's default) */
	const char *pin_file;  /* --pin-file, else NULL (the layer's sources) */
	const char *state_dir; /* --state-dir, $CUBEID_STATE_DIR, the config's, /var/lib/cubeid */
	const char *config;    /* --config, else $CUBEID_CONFIG, else NULL (the default
	                        * TOOL_CONFIG_DEFAULT, read when it exists) */
	const char *socket;    /* the config's socket_path, or the agent's default */
	int verbose;           /* number of -v */
	bool quiet;            /* -q */
	bool json;             /* -o json (commands with TOOL_OUTPUT_OPT) */
	bool no_headers;       /* --no-headers (commands with TOOL_NO_HEADERS_OPT) */
	/* the command's options, by index into cmd->opts: NULL if absent, the
	 * argument if one was given, "" for a flag */
	const char *val[TOOL_MAX_OPTS];
	/* positional arguments left after the options */
	int argc;
	char **argv;
};

/* Options every command takes (--token, --module, ...), for the help. */
extern const struct tool_opt tool_common_opts[];

/* The agent's config file (under configure's sysconfdir), and its default
 * socket for the help text: the value used is the agent's own default
 * (config_default()), so the two cannot differ. */
#define TOOL_CONFIG_DEFAULT CUBEID_SYSCONFDIR "/cubeid/config.yaml"
/* ... as the help and the man page name it: the same for every prefix */
#define TOOL_CONFIG_DEFAULT_DOC "SYSCONFDIR/cubeid/config.yaml"
#define TOOL_SOCKET_DEFAULT     "/run/cubeid/agent.sock"

/* -o/--output on every command that reads state, and --no-headers on every
 * command that prints a table.  tool_dispatch() checks the value and sets
 * tool_ctx.json and .no_headers. */
#define TOOL_OUTPUT_OPT                                                                            \
	{                                                                                          \
		"output", 'o', "FORMAT", "text (the default) or json"                              \
	}
#define TOOL_NO_HEADERS_OPT                                                                        \
	{                                                                                          \
		"no-headers", 0, NULL, "print a table without its header line"                     \
	}

/* Old spellings of options, accepted and not shown (tool-common.c). */
struct tool_alias {
	const char *old;   /* "key-type" */
	const char *name;  /* the option it stands for: "type" */
	const char *value; /* for a flag standing for an option with a value
	                    * ("json" is "output json"), else NULL */
};
extern const struct tool_alias tool_aliases[];

/* Options given before the group (`cubeid -v --socket S status`): main()
 * records them, tool_dispatch() applies the ones the command knows. */
int tool_parse_global(int argc, char **argv);

/* "Did you mean"? The closest of names (n of them, each stride bytes apart
 * starting at the first name pointer) to word, or NULL if none is close. */
const char *tool_closest(const char *word, const char *const *names, size_t n, size_t stride);

/* The group table (cli/cubeid.c), terminated by a NULL name. */
extern const struct tool_group tool_groups[];

/*
 * Run argv ("GROUP WORDS... [options]") against a group's command table:
 * find the command, parse common and command options, handle --help and
 * --version, and call the command.  Returns a TOOL_EXIT_* code.
 */
int tool_dispatch(const char *group, const struct tool_cmd *cmds, int argc, char **argv);

/* The value of the current command's option name (see tool_ctx.val). */
const char *tool_opt(const struct tool_ctx *c, const char *name);
bool tool_flag(const struct tool_ctx *c, const char *name);

/* Map a cubeid error code (<cubeid/error.h>) to a TOOL_EXIT_* code. */
int tool_exit_code(int err);
/* Print "cubeid: CONTEXT: MESSAGE-FOR-err" to stderr; return
 * tool_exit_code(err). */
int tool_fail(int err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Print "cubeid: MESSAGE", the command's usage line and "try 'cubeid GROUP
 * COMMAND --help'" to stderr; return TOOL_EXIT_USAGE. */
int tool_usage_error(const struct tool_ctx *c, const char *fmt, ...)
        __attribute__((format(printf, 2, 3)));
/* Print "cubeid: MESSAGE" to stderr (no exit code implied). */
void tool_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* ---- the agent's socket (tool-rpc.c) ---- */
struct cubeid_wl_opts;
struct cubeid_wl_status;
/* The --socket option of every command that calls the agent. */
#define TOOL_SOCKET_OPT                                                                            \
	{                                                                                          \
		"socket", 0, "S",                                                                  \
		        "the agent's socket (default: $SPIFFE_ENDPOINT_SOCKET, the config's "      \
		        "socket_path, " TOOL_SOCKET_DEFAULT ")"                                    \
	}
/* The Workload API client's options from --socket (and
 * --no-security-header where the command has it). */
void tool_wl_opts(const struct tool_ctx *c, struct cubeid_wl_opts *o);
/* Print why a call to the agent failed, with the gRPC code by name
 * ("WHAT: code=NotFound: message"; scripts match it); return the exit code. */
int tool_rpc_fail(int rc, const char *what, const struct cubeid_wl_status *st);

/* Open the token named by the common options.  login false: do not ask for a
 * PIN (only public facts are read).  uri_fallback is used when neither
 * --token nor $CUBEID_TOKEN is given (may be NULL).  Prints why on failure.
 * Returns a cubeid code; *out is the caller's to free. */
int tool_token_open(const struct tool_ctx *c, bool login, const char *uri_fallback,
                    cubeid_token **out);

/* The module the token layer will load for uri (its module-path, --module,
 * $CUBEID_PKCS11_MODULE, the build's SoftHSM2); NULL if the URI does not
 * parse.  *owned is the caller's to free. */
const char *tool_module_for(const struct tool_ctx *c, const char *uri, char **owned);

/* The config file read for the defaults, or NULL. */
const char *tool_config_loaded(const struct tool_ctx *c);

/* The part of a URI before any '?': query attributes may carry secrets
 * (pin-value), so messages show only this.  Returns a malloc'd string or
 * NULL on allocation failure. */
char *tool_uri_for_display(const char *uri);

/* Lower-case hex of buf into a new string (caller frees); NULL on ENOMEM. */
char *tool_hex(const uint8_t *buf, size_t len);
/* Parse hex ("0a1b..", optional ':' between bytes) into out (at most
 * out_max bytes).  Returns 0 or CUBEID_ERR_PARSE / CUBEID_ERR_TOO_LARGE. */
int tool_unhex(const char *hex, uint8_t *out, size_t out_max, size_t *out_len);

/* Write len bytes to path (0644, replaced atomically) or, when path is NULL
 * or "-", to stdout.  Returns a cubeid code and prints why on failure. */
int tool_write_out(const char *path, const void *buf, size_t len);

/* cubeid_read_file(), or stdin when path is "-": at most max bytes, into a
 * NUL-terminated buffer (caller frees).  Returns a cubeid code. */
int tool_read_in(const char *path, size_t max, char **out, size_t *out_len);

/* The time t as RFC 3339 in UTC ("2026-12-08T00:05:00Z"), or "-" for t <= 0. */
#define TOOL_TIME_LEN 32
const char *tool_time(int64_t t, char buf[TOOL_TIME_LEN]);

/* Print j (compact, one line) to stdout and release it; a TOOL_EXIT code.
 * NULL (a failed json_pack) is an allocation failure. */
struct json_t;
int tool_print_json(struct json_t *j);

/* A bundle's text in encoding fmt (pem, jwks, spiffe) to --out or stdout;
 * with -o json as {"format": fmt, "bundle": the PEM string or the JSON
 * document}.  Returns a TOOL_EXIT code. */
int tool_bundle_out(const struct tool_ctx *c, const char *fmt, const char *text, size_t len);

/* Help and the man page, both rendered from the tables. */
void tool_print_version(FILE *f);
void tool_print_main_help(FILE *f);
void tool_print_group_help(FILE *f, const char *group, const struct tool_cmd *cmds,
                           const char *prefix);
void tool_print_cmd_help(FILE *f, const char *group, const struct tool_cmd *cmd);
void tool_print_man(FILE *f);
/* Shell completion for bash or zsh, from the same tables. */
int tool_print_completion(FILE *f, const char *shell);

/* A group's entry points.  cli/tool-GROUP.c starts with
 * TOOL_GROUP_DECLARE(GROUP); and cli/cubeid.c's table uses it too. */
#define TOOL_GROUP_DECLARE(name)                                                                   \
	int tool_##name(int argc, char **argv);                                                    \
	extern const struct tool_cmd tool_##name##_cmds[]

/* Commands of the token group that live in their own file. */
int tool_token_info(struct tool_ctx *c); /* cli/tool-token-info.c */

/* Commands that talk to a running cubeid-agent (cli/tool-agent.c), listed
 * in the svid, jwt and bundle groups' tables with these entries. */
extern const struct tool_opt tool_agent_svid_fetch_opts[];
extern const struct tool_opt tool_agent_svid_watch_opts[];
extern const struct tool_opt tool_agent_jwt_fetch_opts[];
extern const struct tool_opt tool_agent_jwt_validate_opts[];
extern const struct tool_opt tool_agent_bundle_fetch_opts[];
int tool_agent_svid_fetch(struct tool_ctx *c);
int tool_agent_svid_watch(struct tool_ctx *c);
int tool_agent_jwt_fetch(struct tool_ctx *c);
int tool_agent_jwt_validate(struct tool_ctx *c);
int tool_agent_bundle_fetch(struct tool_ctx *c);
#define TOOL_AGENT_SVID_FETCH_CMD                                                                  \
	{                                                                                          \
		"fetch", "[--socket S] [--out DIR]",                                               \
		        "fetch this process's X.509-SVID from the agent and write PEM files",      \
		        "Calls FetchX509SVID on the agent's socket and writes DIR/svid.pem "       \
		        "(leaf,\n"                                                                 \
		        "then intermediates), DIR/svid_key.pem (PKCS#8, mode 0600) and\n"          \
		        "DIR/svid_bundle.pem (the trust domain's roots), each replaced "           \
		        "atomically, the\n"                                                        \
		        "key first.  The identities are the ones the agent's entries give the "    \
		        "calling\n"                                                                \
		        "process.  When there are several, the first (in the agent's order) goes " \
		        "to\n"                                                                     \
		        "those names and the others to svid.N.pem, svid_key.N.pem and\n"           \
		        "svid_bundle.N.pem, N = 1, 2, ...  Prints each SPIFFE ID, one per line, "  \
		        "in\n"                                                                     \
		        "that order.",                                                             \
		        tool_agent_svid_fetch_opts, 0, tool_agent_svid_fetch                       \
	}
#define TOOL_AGENT_SVID_WATCH_CMD                                                                  \
	{                                                                                          \
		"watch", "[--socket S] [--updates N] [--timeout DURATION]",                        \
		        "follow this process's FetchX509SVID stream and print each update",        \
		        "Prints one line per SVID of every message the agent sends: the "          \
		        "message's\n"                                                              \
		        "number, the SPIFFE ID and the leaf's serial.  The agent sends a new "     \
		        "message\n"                                                                \
		        "on every rotation and entry change, and ends the stream with\n"           \
		        "PermissionDenied when the caller's identity is withdrawn.",               \
		        tool_agent_svid_watch_opts, 0, tool_agent_svid_watch                       \
	}
#define TOOL_AGENT_JWT_FETCH_CMD                                                                   \
	{                                                                                          \
		"fetch", "--aud AUD [--spiffe-id ID] [--socket S]",                                \
		        "fetch a JWT-SVID for this process from the agent and print it",           \
		        "Calls FetchJWTSVID on the agent's socket: one token per identity of "     \
		        "the\n"                                                                    \
		        "caller (or only ID), one per line.",                                      \
		        tool_agent_jwt_fetch_opts, 0, tool_agent_jwt_fetch                         \
	}
#define TOOL_AGENT_JWT_VALIDATE_CMD                                                                \
	{                                                                                          \
		"validate", "TOKEN --aud AUD [--socket S]",                                        \
		        "ask the agent to validate a JWT-SVID (ValidateJWTSVID)",                  \
		        "Prints the SPIFFE ID, then the claims as JSON.  Exit status 2 when the "  \
		        "agent\n"                                                                  \
		        "rejects the token (InvalidArgument).",                                    \
		        tool_agent_jwt_validate_opts, 1, tool_agent_jwt_validate                   \
	}
#define TOOL_AGENT_BUNDLE_FETCH_CMD                                                                \
	{                                                                                          \
		"fetch", "[--format pem|jwks] [--out FILE] [--socket S]",                          \
		        "fetch the trust bundle from the agent",                                   \
		        "pem: the X.509 authorities (FetchX509Bundles).  jwks: the JWT signing "   \
		        "keys\n"                                                                   \
		        "(FetchJWTBundles), a JWKS with use jwt-svid and a kid on every key.",     \
		        tool_agent_bundle_fetch_opts, 0, tool_agent_bundle_fetch                   \
	}

#endif
