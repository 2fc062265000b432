/*
 * The `cubeid` tool: --help text and the man page, both rendered from the
 * same tables (the group table in cubeid.c, each group's tool_cmd table,
 * tool_common_opts and the tables below), so that they cannot drift.
 * docs/man/cubeid.1 is `cubeid --help-man`; tests/cli-man-sync.sh checks it.
 */
#include "config.h"

#include "cli/tool.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

static const char main_description[] =
        "cubeid is the command-line tool of the cubeid node identity agent.  It works with\n"
        "the PKCS#11 token that holds the node's private keys (SoftHSM2, or a TPM through\n"
        "tpm2-pkcs11): it inspects the token, manages the keys in it, and runs the CA\n"
        "chain and the SPIFFE identities made with those keys.\n"
        "\n"
        "Commands are grouped: `cubeid GROUP COMMAND [options]`.  Every command takes\n"
        "the common options below, --help and --version.  The common options, --socket,\n"
        "-o/--output and --no-headers may also come before the group, as in\n"
        "`cubeid -v status` or `cubeid --socket S svid fetch`; a command ignores one\n"
        "it does not take.  `cubeid help GROUP [COMMAND]` is `cubeid GROUP [COMMAND] --help`.\n"
        "\n"
        "On a node, cubeid reads the agent's config file (--config, else\n"
        "$CUBEID_CONFIG, else " TOOL_CONFIG_DEFAULT_DOC " when it exists and is\n"
        "readable; SYSCONFDIR is configure's, /etc on a distribution build)\n"
        "for its token, module, pin_file, state_dir and socket_path, so that no path\n"
        "needs typing; an option or environment variable given wins.  Commands that\n"
        "talk to the agent use --socket, else $SPIFFE_ENDPOINT_SOCKET, else the config's\n"
        "socket_path, else " TOOL_SOCKET_DEFAULT ".\n"
        "\n"
        "Every command that reads state takes -o/--output text|json (text is the\n"
        "default; json is one JSON document, for jq), and every table has a header\n"
        "line, which --no-headers leaves out.  Times are RFC 3339, in UTC.\n"
        "Where a command takes or writes a file, '-' is standard input or output.\n"
        "--format chooses an encoding (pem, der, jwk, jwks), not the output style.\n"
        "\n"
        "The token is chosen by an RFC 7512 PKCS#11 URI (--token, or $CUBEID_TOKEN),\n"
        "for example pkcs11:token=node1.  The user PIN is read from --pin-file, from the\n"
        "URI's pin-source, from the file named by $CUBEID_PIN_FILE or from $CUBEID_PIN,\n"
        "in that order; cubeid never takes a PIN on its command line, where every user\n"
        "of the machine could read it.";

struct doc_pair {
	const char *name;
	const char *text;
};

static const struct doc_pair env_docs[] = {
        {"CUBEID_TOKEN", "PKCS#11 URI of the token when --token is not given"},
        {"CUBEID_PKCS11_MODULE",
         "PKCS#11 module when neither the URI nor --module names one (default: the SoftHSM2 "
         "module found at build time)"},
        {"CUBEID_PIN_FILE", "file holding the user PIN"},
        {"CUBEID_PIN", "the user PIN itself (prefer CUBEID_PIN_FILE)"},
        {"CUBEID_STATE_DIR", "state directory when --state-dir is not given"},
        {"CUBEID_CONFIG", "the agent's config file when --config is not given"},
        {"SPIFFE_ENDPOINT_SOCKET", "the agent's socket when --socket is not given"},
        {"CUBEID_LOG_LEVEL", "error, warning, notice (default), info or debug"},
        {"SOFTHSM2_CONF", "SoftHSM2's configuration file, which names its token directory"},
        {NULL, NULL},
};

static const struct doc_pair exit_docs[] = {
        {"0", "success"},
        {"1", "failure"},
        {"2", "usage error: an unknown command or option, a bad argument, a malformed URI (and "
              "nothing else)"},
        {"3", "token error: the module cannot be loaded, no single token matches, the PIN is "
              "missing or rejected"},
        {"4", "not found: no key matches"},
        {"5", "unsupported: the token or this build cannot do it"},
        {"6", "forbidden: a valid credential lacks the role asked for (oidc verify --role)"},
        {"7", "rejected: a token, certificate or publication was checked and refused (jwt "
              "validate and verify, svid verify, picod verify, oidc verify, cluster verify), or "
              "the agent refused a change in its state (picod rotate)"},
        {"8", "not ready: the agent answers but is not ready (status)"},
        {NULL, NULL},
};

void
tool_print_version(FILE *f)
{
	fprintf(f, "cubeid %s\n", PACKAGE_VERSION);
}

/* ---- plain text (--help) ---- */

/* "  -v, --verbose ARG   help" with the help text in column 28. */
static void
print_opt(FILE *f, const struct tool_opt *o)
{
	char left[96];

	if (o->short_name)
		snprintf(left, sizeof(left), "-%c, --%s%s%s", o->short_name, o->name,
		         o->arg ? " " : "", o->arg ? o->arg : "");
	else
		snprintf(left, sizeof(left), "    --%s%s%s", o->name, o->arg ? " " : "",
		         o->arg ? o->arg : "");
	if (strlen(left) < 26)
		fprintf(f, "  %-26s%s\n", left, o->help);
	else
		fprintf(f, "  %s\n  %-26s%s\n", left, "", o->help);
}

static void
print_opts(FILE *f, const struct tool_opt *opts)
{
	for (; opts != NULL && opts->name != NULL; opts++)
		print_opt(f, opts);
}

/* "Text." from "text": first letter capitalised, full stop added. */
static void
print_sentence(FILE *f, const char *s)
{
	if (*s == '\0')
		return;
	fputc(toupper((unsigned char)*s), f);
	fprintf(f, "%s.\n", s + 1);
}

static void
print_pairs(FILE *f, const struct doc_pair *p, int width)
{
	for (; p->name != NULL; p++)
		fprintf(f, "  %-*s%s\n", width, p->name, p->text);
}

void
tool_print_main_help(FILE *f)
{
	const struct tool_group *g;

	fprintf(f,
	        "usage: cubeid [options] GROUP COMMAND [options]\n"
	        "       cubeid help [GROUP [COMMAND]] | version\n"
	        "       cubeid --help | --version | --help-man | --help-completion=bash|zsh\n\n");
	fprintf(f, "%s\n\nGroups:\n", main_description);
	for (g = tool_groups; g->name != NULL; g++)
		fprintf(f, "  %-12s%s\n", g->name, g->summary);
	fprintf(f, "\nCommon options:\n");
	print_opts(f, tool_common_opts);
	fprintf(f, "\nEnvironment:\n");
	print_pairs(f, env_docs, 22);
	fprintf(f, "\nExit status:\n");
	print_pairs(f, exit_docs, 4);
	fprintf(f, "\nRun 'cubeid GROUP --help' for a group's commands.\n");
}

static const char *
group_summary(const char *group)
{
	const struct tool_group *g;

	for (g = tool_groups; g->name != NULL; g++)
		if (strcmp(g->name, group) == 0)
			return g->summary;
	return NULL;
}

void
tool_print_group_help(FILE *f, const char *group, const struct tool_cmd *cmds, const char *prefix)
{
	const struct tool_cmd *c;
	const char *sum = group_summary(group);
	size_t plen = prefix ? strlen(prefix) : 0;

	fprintf(f, "usage: cubeid %s %s%sCOMMAND [options]\n\n", group, prefix ? prefix : "",
	        prefix ? " " : "");
	if (sum != NULL && prefix == NULL)
		print_sentence(f, sum);
	fprintf(f, "%sCommands:\n", sum != NULL && prefix == NULL ? "\n" : "");
	for (c = cmds; c->name != NULL; c++) {
		if (prefix != NULL && (strncmp(c->name, prefix, plen) != 0 || c->name[plen] != ' '))
			continue;
		if (strlen(c->name) < 24)
			fprintf(f, "  %-24s%s\n", c->name, c->summary);
		else
			fprintf(f, "  %s\n  %-24s%s\n", c->name, "", c->summary);
	}
	fprintf(f, "\nRun 'cubeid %s COMMAND --help' for the options of a command.\n", group);
}

void
tool_print_cmd_help(FILE *f, const char *group, const struct tool_cmd *cmd)
{
	fprintf(f, "usage: cubeid %s %s%s%s [options]\n\n", group, cmd->name,
	        cmd->usage && *cmd->usage ? " " : "", cmd->usage ? cmd->usage : "");
	print_sentence(f, cmd->summary);
	if (cmd->description != NULL)
		fprintf(f, "\n%s\n", cmd->description);
	if (cmd->opts != NULL && cmd->opts->name != NULL) {
		fprintf(f, "\nOptions:\n");
		print_opts(f, cmd->opts);
	}
	fprintf(f, "\nCommon options:\n");
	print_opts(f, tool_common_opts);
}

/* ---- troff (--help-man) ---- */

/* Text for troff: backslash and minus escaped, a control character at the
 * start of a line defused, `code` in bold, "\n\n" a new paragraph. */
static void
man_text(FILE *f, const char *s)
{
	bool bol = true, bold = false;

	for (; *s != '\0'; s++) {
		if (bol && (*s == '.' || *s == '\''))
			fputs("\\&", f);
		bol = false;
		switch (*s) {
		case '\\':
			fputs("\\e", f);
			break;
		case '-':
			fputs("\\-", f);
			break;
		case '`':
			fputs(bold ? "\\fR" : "\\fB", f);
			bold = !bold;
			break;
		case '\n':
			if (s[1] == '\n') {
				fputs("\n.PP", f);
				s++;
			}
			fputc('\n', f);
			bol = true;
			break;
		default:
			fputc(*s, f);
		}
	}
	if (bold)
		fputs("\\fR", f);
}

static void
man_sentence(FILE *f, const char *s)
{
	if (*s == '\0')
		return;
	fputc(toupper((unsigned char)*s), f);
	man_text(f, s + 1);
	fputs(".\n", f);
}

static void
man_opts(FILE *f, const struct tool_opt *o)
{
	for (; o != NULL && o->name != NULL; o++) {
		fputs(".TP\n", f);
		if (o->short_name)
			fprintf(f, "\\fB\\-%c\\fR, ", o->short_name);
		fputs("\\fB\\-\\-", f);
		man_text(f, o->name);
		fputs("\\fR", f);
		if (o->arg != NULL) {
			fputs(" \\fI", f);
			man_text(f, o->arg);
			fputs("\\fR", f);
		}
		fputc('\n', f);
		man_sentence(f, o->help);
	}
}

static void
man_pairs(FILE *f, const struct doc_pair *p, bool bold)
{
	for (; p->name != NULL; p++) {
		fprintf(f, ".TP\n%s", bold ? "\\fB" : "");
		man_text(f, p->name);
		fprintf(f, "%s\n", bold ? "\\fR" : "");
		man_sentence(f, p->text);
	}
}

void
tool_print_man(FILE *f)
{
	const struct tool_group *g;
	const struct tool_cmd *c;

	fputs(".\\\" Generated by 'cubeid --help-man' from the help tables in agent/;\n"
	      ".\\\" do not edit.  Regenerate with 'make update-man'.\n",
	      f);
	fputs(".TH CUBEID 1 \"\" \"cubeid\" \"User Commands\"\n", f);
	fputs(".SH NAME\ncubeid \\- command\\-line tool of the cubeid node identity agent\n", f);
	fputs(".SH SYNOPSIS\n.B cubeid\n.RI [ options ]\n.I GROUP COMMAND\n.RI [ options ]\n.br\n"
	      ".B cubeid help\n[\\fIGROUP\\fR [\\fICOMMAND\\fR]]\n.br\n.B cubeid version\n.br\n"
	      ".B cubeid\n.BR \\-\\-help \" | \" \\-\\-version \" | \" \\-\\-help\\-man \" | \" "
	      "\\-\\-help\\-completion=bash|zsh\n",
	      f);
	fputs(".SH DESCRIPTION\n", f);
	man_text(f, main_description);
	fputs("\n.PP\nThe groups are:\n", f);
	for (g = tool_groups; g->name != NULL; g++) {
		fprintf(f, ".TP\n\\fB%s\\fR\n", g->name);
		man_sentence(f, g->summary);
	}
	fputs(".SH COMMON OPTIONS\n", f);
	man_opts(f, tool_common_opts);
	fputs(".SH COMMANDS\n", f);
	for (g = tool_groups; g->name != NULL; g++) {
		for (c = g->cmds; c != NULL && c->name != NULL; c++) {
			fprintf(f, ".SS \"cubeid %s %s\"\n", g->name, c->name);
			fprintf(f, ".B cubeid %s %s\n", g->name, c->name);
			if (c->usage != NULL && *c->usage != '\0') {
				man_text(f, c->usage);
				fputc('\n', f);
			}
			fputs(".PP\n", f);
			man_sentence(f, c->summary);
			if (c->description != NULL) {
				fputs(".PP\n", f);
				man_text(f, c->description);
				fputc('\n', f);
			}
			if (c->opts != NULL && c->opts->name != NULL) {
				fputs(".PP\nOptions:\n.RS\n", f);
				man_opts(f, c->opts);
				fputs(".RE\n", f);
			}
		}
	}
	fputs(".SH ENVIRONMENT\n", f);
	man_pairs(f, env_docs, true);
	fputs(".SH EXIT STATUS\n", f);
	man_pairs(f, exit_docs, false);
	fputs(".SH SEE ALSO\n"
	      ".BR softhsm2\\-util (1),\n"
	      ".BR p11tool (1),\n"
	      ".BR pkcs11\\-tool (1),\n"
	      ".BR openssl\\-pkey (1)\n"
	      ".PP\nRFC 7512, The PKCS #11 URI Scheme.\n",
	      f);
}

/* ---- shell completion (--help-completion=bash|zsh) ---- */

/* Every long option of opts, " --a --b", appended to buf. */
static void
opt_words(char *buf, size_t size, const struct tool_opt *o)
{
	size_t len = strlen(buf);

	for (; o != NULL && o->name != NULL && len < size; o++)
		len += (size_t)snprintf(buf + len, size - len, " --%s", o->name);
}

/* The words that may follow "GROUP PREFIX" (prefix "" for the group). */
static void
next_words(char *buf, size_t size, const struct tool_cmd *cmds, const char *prefix)
{
	size_t plen = strlen(prefix), len = strlen(buf), wl;
	const struct tool_cmd *c, *d;
	const char *w;

	for (c = cmds; c->name != NULL; c++) {
		if (plen > 0 && (strncmp(c->name, prefix, plen) != 0 || c->name[plen] != ' '))
			continue;
		w = c->name + (plen > 0 ? plen + 1 : 0);
		wl = strcspn(w, " ");
		/* once per word */
		for (d = cmds; d < c; d++)
			if ((plen == 0 ||
			     (strncmp(d->name, prefix, plen) == 0 && d->name[plen] == ' ')) &&
			    strncmp(d->name + (plen > 0 ? plen + 1 : 0), w, wl) == 0 &&
			    (d->name[(plen > 0 ? plen + 1 : 0) + wl] == ' ' ||
			     d->name[(plen > 0 ? plen + 1 : 0) + wl] == '\0'))
				break;
		if (d == c && len < size)
			len += (size_t)snprintf(buf + len, size - len, " %.*s", (int)wl, w);
	}
}

/* One case branch: pattern, then the words to offer (a '-' list: options,
 * else commands). */
static void
comp_case(FILE *f, bool zsh, const char *pattern, const char *words, bool opts)
{
	fprintf(f, "\t%s)\n", pattern);
	if (opts)
		fprintf(f, "\t\topts=\"%s\"\n\t\t;;\n", words);
	else
		fprintf(f, "\t\tcmds=\"%s\"\n\t\t;;\n", words);
	(void)zsh;
}

int
tool_print_completion(FILE *f, const char *shell)
{
	const struct tool_group *g;
	const struct tool_cmd *c;
	const struct tool_opt *o;
	char words[4096], pat[256], prefix[128], common[1024] = "";
	bool zsh;
	size_t i, len;

	if (strcmp(shell, "bash") == 0)
		zsh = false;
	else if (strcmp(shell, "zsh") == 0)
		zsh = true;
	else
		return -1;
	opt_words(common, sizeof(common), tool_common_opts);
	if (zsh)
		fputs("#compdef cubeid\n", f);
	fprintf(f,
	        "# %s completion for cubeid, generated by 'cubeid --help-completion=%s'\n"
	        "# from the tables --help and the man page are made of.  Do not edit.\n",
	        shell, shell);
	fprintf(f, "_cubeid%s() {\n", zsh ? "" : "_complete");
	fputs("\tlocal cur i w cmd='' skip=0 cmds='' opts=''\n", f);
	if (zsh)
		fputs("\tlocal -a "
		      "ws\n\tws=(\"${(@)words[2,CURRENT-1]}\")\n\tcur=\"${words[CURRENT]}\"\n",
		      f);
	else
		fputs("\tlocal -a ws\n\tws=(\"${COMP_WORDS[@]:1:COMP_CWORD-1}\")\n"
		      "\tcur=\"${COMP_WORDS[COMP_CWORD]}\"\n",
		      f);
	/* the options that take a value: the word after one is not a command */
	words[0] = '\0';
	len = 0;
	for (o = tool_common_opts; o->name != NULL; o++)
		if (o->arg != NULL)
			len += (size_t)snprintf(words + len, sizeof(words) - len, " --%s", o->name);
	for (g = tool_groups; g->name != NULL; g++)
		for (c = g->cmds; c != NULL && c->name != NULL; c++)
			for (o = c->opts; o != NULL && o->name != NULL; o++)
				if (o->arg != NULL && len < sizeof(words))
					len += (size_t)snprintf(
					        words + len, sizeof(words) - len, " --%s%s%c",
					        o->name, o->short_name ? " -" : "",
					        o->short_name ? o->short_name : ' ');
	fprintf(f, "\tlocal argopts=\"%s \"\n", words);
	fputs("\tfor w in \"${ws[@]}\"; do\n"
	      "\t\tif [ \"$skip\" = 1 ]; then skip=0; continue; fi\n"
	      "\t\tcase \"$w\" in\n"
	      "\t\t--*=*) ;;\n"
	      "\t\t-*) case \"$argopts\" in *\" $w \"*) skip=1 ;; esac ;;\n"
	      "\t\t*) cmd=\"${cmd:+$cmd }$w\" ;;\n"
	      "\t\tesac\n"
	      "\tdone\n",
	      f);
	fprintf(f, "\topts=\"%s\"\n", common);
	fputs("\tcase \"$cmd\" in\n", f);
	/* the top level, help and the groups' command words */
	words[0] = '\0';
	len = (size_t)snprintf(words, sizeof(words), "help version");
	for (g = tool_groups; g->name != NULL; g++)
		len += (size_t)snprintf(words + len, sizeof(words) - len, " %s", g->name);
	comp_case(f, zsh, "''", words, false);
	comp_case(f, zsh, "help", words + strlen("help version "), false);
	for (g = tool_groups; g->name != NULL; g++) {
		/* the group's first words, then the prefixes of multi-word
		 * commands ("token keys"), each an exact pattern */
		words[0] = '\0';
		next_words(words, sizeof(words), g->cmds, "");
		comp_case(f, zsh, g->name, words, false);
		for (c = g->cmds; c != NULL && c->name != NULL; c++) {
			const char *sp = strchr(c->name, ' ');
			const struct tool_cmd *d;

			if (sp == NULL)
				continue;
			for (d = g->cmds; d < c; d++)
				if (strncmp(d->name, c->name, (size_t)(sp - c->name) + 1) == 0)
					break;
			if (d != c)
				continue;
			snprintf(pat, sizeof(pat), "'%s %.*s'", g->name, (int)(sp - c->name),
			         c->name);
			words[0] = '\0';
			snprintf(prefix, sizeof(prefix), "%.*s", (int)(sp - c->name), c->name);
			next_words(words, sizeof(words), g->cmds, prefix);
			comp_case(f, zsh, pat, words, false);
		}
	}
	/* a full command, and what follows it: its options */
	for (g = tool_groups; g->name != NULL; g++) {
		for (c = g->cmds; c != NULL && c->name != NULL; c++) {
			snprintf(pat, sizeof(pat), "'%s %s'|'%s %s '*", g->name, c->name, g->name,
			         c->name);
			words[0] = '\0';
			opt_words(words, sizeof(words), c->opts);
			i = strlen(words);
			snprintf(words + i, sizeof(words) - i, "%s", common);
			comp_case(f, zsh, pat, words, true);
		}
	}
	fputs("\tesac\n", f);
	if (zsh)
		fputs("\tif [[ \"$cur\" == -* ]]; then\n"
		      "\t\tcompadd -- ${=opts}\n"
		      "\telif [ -n \"$cmds\" ]; then\n"
		      "\t\tcompadd -- ${=cmds}\n"
		      "\telse\n"
		      "\t\t_files\n"
		      "\tfi\n"
		      "}\n"
		      "_cubeid \"$@\"\n",
		      f);
	else
		fputs("\tif [[ \"$cur\" == -* ]]; then\n"
		      "\t\tCOMPREPLY=($(compgen -W \"$opts\" -- \"$cur\"))\n"
		      "\telif [ -n \"$cmds\" ]; then\n"
		      "\t\tCOMPREPLY=($(compgen -W \"$cmds\" -- \"$cur\"))\n"
		      "\telse\n"
		      "\t\tCOMPREPLY=($(compgen -f -- \"$cur\"))\n"
		      "\tfi\n"
		      "}\n"
		      "complete -o filenames -F _cubeid_complete cubeid\n",
		      f);
	return 0;
}
