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
        "the common options below, --help and --version.\n"
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
        {"CUBEID_LOG_LEVEL", "error, warning, notice (default), info or debug"},
        {"SOFTHSM2_CONF", "SoftHSM2's configuration file, which names its token directory"},
        {NULL, NULL},
};

static const struct doc_pair exit_docs[] = {
        {"0", "success"},
        {"1", "failure"},
        {"2", "usage error: an unknown command or option, a bad argument, a malformed URI"},
        {"3", "token error: the module cannot be loaded, no single token matches, the PIN is "
              "missing or rejected"},
        {"4", "not found: no key matches"},
        {"5", "unsupported: the token or this build cannot do it"},
        {"6", "forbidden: a valid credential lacks the role asked for (oidc verify --role)"},
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

	fprintf(f, "usage: cubeid GROUP COMMAND [options]\n"
	           "       cubeid --help | --version | --help-man\n\n");
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
	fputs(".SH SYNOPSIS\n.B cubeid\n.I GROUP COMMAND\n.RI [ options ]\n.br\n"
	      ".B cubeid\n.BR \\-\\-help \" | \" \\-\\-version \" | \" \\-\\-help\\-man\n",
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
