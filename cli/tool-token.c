/*
 * `cubeid token ...`: the PKCS#11 token and the keys in it.  The command
 * table below is also the source of their --help text and man page
 * section.  `token info` lives in tool-token-info.c.
 */
#include "config.h"

#include "cli/tool.h"

#include <cubeid/jwt.h>
#include <cubeid/log.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

TOOL_GROUP_DECLARE(token);

static int keys_list(struct tool_ctx *c);
static int keys_generate(struct tool_ctx *c);
static int keys_delete(struct tool_ctx *c);
static int keys_export_public(struct tool_ctx *c);
static int dev_init(struct tool_ctx *c);

#define KEY_SELECT_OPTS                                                                            \
	{"label", 'l', "LABEL", "the key with this label (CKA_LABEL)"},                            \
	        {"id", 0, "HEX", "the key with this id (CKA_ID, hex)"},                            \
	{                                                                                          \
		"uri", 0, "URI", "the key named by this PKCS#11 object URI"                        \
	}

static const struct tool_opt info_opts[] = {
        TOOL_OUTPUT_OPT,
        {0},
};
static const struct tool_opt list_opts[] = {
        TOOL_OUTPUT_OPT,
        TOOL_NO_HEADERS_OPT,
        {0},
};
static const struct tool_opt generate_opts[] = {
        {"type", 't', "TYPE", "key type: ec-p256, ec-p384, rsa-2048 or rsa-3072"},
        {"label", 'l', "LABEL", "label of the new key (CKA_LABEL); must be unused"},
        {"exportable", 0, NULL, "allow the private key to leave the token (workload keys only)"},
        TOOL_OUTPUT_OPT,
        {0},
};
static const struct tool_opt delete_opts[] = {
        KEY_SELECT_OPTS,
        {"yes", 'y', NULL, "do not ask for confirmation"},
        {0},
};
static const struct tool_opt export_opts[] = {
        KEY_SELECT_OPTS,
        {"format", 'f', "FORMAT", "pem (the default), der or jwk"},
        {"out", 0, "FILE", "write to FILE (replaced atomically) instead of standard output ('-')"},
        {0},
};

static const struct tool_opt dev_init_opts[] = {
        {"dir", 0, "DIR", "where the token lives (default: STATE-DIR/softhsm)"},
        {"label", 'l', "LABEL", "token label (default: cubeid-dev)"},
        {0},
};

const struct tool_cmd tool_token_cmds[] = {
        {"info", "[-o text|json]", "show the module, its slots, the token and its mechanisms",
         "Loads the PKCS#11 module, lists its slots (with and without a token), then shows\n"
         "the token that --token selects: label, serial, model, manufacturer, flags, and\n"
         "every mechanism with its key sizes and flags.  It does not log in, so it needs\n"
         "no PIN.  When no single token matches, it still shows the module and the slots.",
         info_opts, 0, tool_token_info},
        {"keys list", "[-o text|json] [--no-headers]", "list the private keys on the token",
         "One line per key: label, type, id (hex), storage (token or session object),\n"
         "whether the private key is exportable, and the key's PKCS#11 URI.",
         list_opts, 0, keys_list},
        {"keys generate", "--type TYPE --label LABEL [--exportable]",
         "generate a key pair in the token",
         "The key pair is a persistent token object.  Its private key is sensitive and\n"
         "not extractable unless --exportable is given.  Its id is the SHA-1 of the\n"
         "public key (the subjectKeyIdentifier a certificate for it will carry).\n"
         "Prints the new key's label, type, id and URI.",
         generate_opts, 0, keys_generate},
        {"keys delete", "(--label LABEL | --id HEX | --uri URI) [--yes]",
         "delete a key pair from the token",
         "Destroys the private and the public key object.  Without --yes it asks for\n"
         "confirmation when standard input is a terminal, and refuses otherwise.",
         delete_opts, 0, keys_delete},
        {"keys export-public",
         "(--label LABEL | --id HEX | --uri URI) [--format FORMAT] [--out FILE]",
         "write a key's public half",
         "Formats: pem (SubjectPublicKeyInfo, \"BEGIN PUBLIC KEY\"), der (the same in\n"
         "binary; written to a terminal only with --out) and jwk (one JSON Web Key).",
         export_opts, 0, keys_export_public},
        {"dev-init", "[--dir DIR] [--label LABEL]",
         "make a throwaway SoftHSM2 token for development",
         "Creates (or reuses) a SoftHSM2 token under DIR: its own softhsm2.conf, token\n"
         "directory, and a random user PIN in DIR/user.pin (mode 0600).  The token is\n"
         "initialised through the module, so no PIN is ever on a command line.  Prints\n"
         "shell assignments of SOFTHSM2_CONF, CUBEID_TOKEN, CUBEID_PIN_FILE and\n"
         "CUBEID_STATE_DIR (the state directory the other commands then use), for\n"
         "`eval \"$(cubeid token dev-init --dir DIR)\"`.  Not for production.",
         dev_init_opts, 0, dev_init},
        {0},
};

int
tool_token(int argc, char **argv)
{
	return tool_dispatch("token", tool_token_cmds, argc, argv);
}

/* ---- shared by the keys commands ---- */

static const char *
type_name(const cubeid_key *k)
{
	const char *n = cubeid_key_type_name(cubeid_key_get_type(k));

	return n != NULL ? n : "unknown";
}

/* Exactly one of --label, --id, --uri: a usage error otherwise. */
static int
key_selector_check(const struct tool_ctx *c)
{
	int n = !!tool_opt(c, "label") + !!tool_opt(c, "id") + !!tool_opt(c, "uri");

	if (n == 0)
		return tool_usage_error(c, "name the key with --label, --id or --uri");
	if (n > 1)
		return tool_usage_error(c, "name the key with only one of --label, --id, --uri");
	if (tool_opt(c, "label") != NULL && *tool_opt(c, "label") == '\0')
		return tool_usage_error(c, "--label needs a non-empty label");
	return TOOL_EXIT_OK;
}

/* Open the token (logged in) and find the selected key.  Returns an exit
 * code; messages printed. */
static int
key_open(const struct tool_ctx *c, cubeid_token **tok, cubeid_key **key)
{
	const char *label = tool_opt(c, "label"), *idhex = tool_opt(c, "id");
	const char *uri = tool_opt(c, "uri");
	uint8_t id[64];
	size_t id_len = 0;
	char *shown;
	int r;

	*tok = NULL;
	*key = NULL;
	if (idhex != NULL && (r = tool_unhex(idhex, id, sizeof(id), &id_len)) != CUBEID_OK)
		return tool_usage_error(c, "--id %s is not a hex key id of at most %zu bytes",
		                        idhex, sizeof(id));
	/* A key URI names its token too: use it when --token is not given. */
	if ((r = tool_token_open(c, true, uri, tok)) != CUBEID_OK)
		return tool_exit_code(r);
	if (uri != NULL)
		r = cubeid_key_find_uri(*tok, uri, key);
	else
		r = cubeid_key_find(*tok, label, idhex ? id : NULL, id_len, key);
	if (r == CUBEID_OK)
		return TOOL_EXIT_OK;
	if (uri != NULL) {
		shown = tool_uri_for_display(uri);
		r = tool_fail(r, "key %s", shown ? shown : "(URI)");
		free(shown);
	} else if (label != NULL && r == CUBEID_ERR_AMBIGUOUS) {
		r = tool_fail(r, "several keys are labelled '%s' (name one with --id)", label);
	} else if (label != NULL) {
		r = tool_fail(r, "key labelled '%s' on token %s", label, cubeid_token_label(*tok));
	} else {
		r = tool_fail(r, "key with id %s on token %s", idhex, cubeid_token_label(*tok));
	}
	cubeid_token_free(*tok);
	*tok = NULL;
	return r;
}

/* A key as a JSON object (NULL on allocation failure). */
static json_t *
key_json(const cubeid_key *k)
{
	const uint8_t *id;
	size_t id_len;
	char *hex, *uri = NULL;
	json_t *o = json_object();

	id = cubeid_key_id(k, &id_len);
	hex = tool_hex(id, id_len);
	(void)cubeid_key_uri(k, &uri);
	json_object_set_new(o, "label", json_string(cubeid_key_label(k)));
	json_object_set_new(o, "type", json_string(type_name(k)));
	json_object_set_new(o, "id", json_string(hex ? hex : ""));
	json_object_set_new(o, "storage",
	                    json_string(cubeid_key_is_persistent(k) ? "token" : "session"));
	json_object_set_new(o, "exportable", json_boolean(cubeid_key_is_exportable(k)));
	json_object_set_new(o, "uri", json_string(uri ? uri : ""));
	free(hex);
	free(uri);
	return o;
}

static int
print_json(json_t *j)
{
	char *s = json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER);

	if (s == NULL)
		return tool_fail(CUBEID_ERR_NOMEM, "cannot format JSON");
	printf("%s\n", s);
	free(s);
	return TOOL_EXIT_OK;
}

static int
finish_stdout(int rc)
{
	if (fflush(stdout) != 0 && rc == TOOL_EXIT_OK)
		return tool_fail(CUBEID_ERR_IO, "cannot write to standard output");
	return rc;
}

/* ---- keys list ---- */

static int
key_cmp(const void *a, const void *b)
{
	const cubeid_key *x = *(cubeid_key *const *)a, *y = *(cubeid_key *const *)b;
	const uint8_t *ix, *iy;
	size_t lx, ly;
	int d = strcmp(cubeid_key_label(x), cubeid_key_label(y));

	if (d != 0)
		return d;
	ix = cubeid_key_id(x, &lx);
	iy = cubeid_key_id(y, &ly);
	d = memcmp(ix, iy, lx < ly ? lx : ly);
	return d != 0 ? d : (lx > ly) - (lx < ly);
}

static int
keys_list(struct tool_ctx *c)
{
	cubeid_token *tok = NULL;
	cubeid_key **keys = NULL;
	json_t *all = NULL, *o;
	size_t n = 0, i, wl = 5, wt = 4, wi = 2, len;
	int r, rc;

	if ((r = tool_token_open(c, true, NULL, &tok)) != CUBEID_OK)
		return tool_exit_code(r);
	if ((r = cubeid_key_list(tok, &keys, &n)) != CUBEID_OK) {
		rc = tool_fail(r, "cannot list the keys on token %s", cubeid_token_label(tok));
		goto out;
	}
	if (n > 1)
		qsort(keys, n, sizeof(*keys), key_cmp);
	all = json_array();
	for (i = 0; i < n; i++) {
		if ((o = key_json(keys[i])) == NULL) {
			rc = tool_fail(CUBEID_ERR_NOMEM, "listing keys");
			goto out;
		}
		json_array_append_new(all, o);
		if ((len = strlen(json_string_value(json_object_get(o, "label")))) > wl)
			wl = len;
		if ((len = strlen(json_string_value(json_object_get(o, "type")))) > wt)
			wt = len;
		if ((len = strlen(json_string_value(json_object_get(o, "id")))) > wi)
			wi = len;
	}
	if (c->json) {
		rc = finish_stdout(print_json(all));
		goto out;
	}
	if (n == 0) {
		if (!c->quiet)
			fprintf(stderr, "cubeid: token %s has no keys\n", cubeid_token_label(tok));
		rc = TOOL_EXIT_OK;
		goto out;
	}
	if (!c->no_headers)
		printf("%-*s  %-*s  %-*s  %-7s  %-10s  %s\n", (int)wl, "LABEL", (int)wt, "TYPE",
		       (int)wi, "ID", "STORAGE", "EXPORTABLE", "URI");
	json_array_foreach(all, i, o)
	{
		printf("%-*s  %-*s  %-*s  %-7s  %-10s  %s\n", (int)wl,
		       json_string_value(json_object_get(o, "label")), (int)wt,
		       json_string_value(json_object_get(o, "type")), (int)wi,
		       json_string_value(json_object_get(o, "id")),
		       json_string_value(json_object_get(o, "storage")),
		       json_is_true(json_object_get(o, "exportable")) ? "yes" : "no",
		       json_string_value(json_object_get(o, "uri")));
	}
	rc = finish_stdout(TOOL_EXIT_OK);
out:
	json_decref(all);
	cubeid_key_list_free(keys, n);
	cubeid_token_free(tok);
	return rc;
}

/* ---- keys generate ---- */

static int
keys_generate(struct tool_ctx *c)
{
	struct cubeid_keygen_opts o = {0};
	const char *type = tool_opt(c, "type"), *label = tool_opt(c, "label");
	cubeid_token *tok = NULL;
	cubeid_key *key = NULL, *old = NULL;
	json_t *j = NULL;
	int r, rc;

	if (type == NULL)
		return tool_usage_error(c, "--type is required");
	if ((o.type = cubeid_key_type_from_name(type)) == CUBEID_KEY_NONE)
		return tool_usage_error(
		        c, "unknown key type '%s' (use ec-p256, ec-p384, rsa-2048 or rsa-3072)",
		        type);
	if (label == NULL)
		return tool_usage_error(c, "--label is required");
	if (*label == '\0')
		return tool_usage_error(c, "--label needs a non-empty label");
	o.label = label;
	o.persistent = true;
	o.exportable = tool_flag(c, "exportable");

	if ((r = tool_token_open(c, true, NULL, &tok)) != CUBEID_OK)
		return tool_exit_code(r);
	/* Labels name keys in every other command: keep them unique. */
	r = cubeid_key_find(tok, label, NULL, 0, &old);
	if (r == CUBEID_OK || r == CUBEID_ERR_AMBIGUOUS) {
		rc = tool_fail(CUBEID_ERR_EXISTS,
		               "a key labelled '%s' is already on token %s (delete it or choose "
		               "another label)",
		               label, cubeid_token_label(tok));
		goto out;
	}
	if (r != CUBEID_ERR_NOT_FOUND) {
		rc = tool_fail(r, "cannot look for keys labelled '%s'", label);
		goto out;
	}
	if ((r = cubeid_key_generate(tok, &o, &key)) != CUBEID_OK) {
		rc = tool_fail(r, "cannot generate a %s key labelled '%s' on token %s", type, label,
		               cubeid_token_label(tok));
		goto out;
	}
	if ((j = key_json(key)) == NULL) {
		rc = tool_fail(CUBEID_ERR_NOMEM, "key generated, but cannot print it");
		goto out;
	}
	if (c->json) {
		rc = finish_stdout(print_json(j));
		goto out;
	}
	printf("label:      %s\n", json_string_value(json_object_get(j, "label")));
	printf("type:       %s\n", json_string_value(json_object_get(j, "type")));
	printf("id:         %s\n", json_string_value(json_object_get(j, "id")));
	printf("exportable: %s\n", o.exportable ? "yes" : "no");
	printf("uri:        %s\n", json_string_value(json_object_get(j, "uri")));
	rc = finish_stdout(TOOL_EXIT_OK);
out:
	json_decref(j);
	cubeid_key_free(old);
	cubeid_key_free(key);
	cubeid_token_free(tok);
	return rc;
}

/* ---- keys delete ---- */

/* Ask on the terminal; true for "y" or "yes". */
static bool
confirm(const char *what)
{
	char line[16];

	fprintf(stderr, "%s? [y/N] ", what);
	fflush(stderr);
	if (fgets(line, sizeof(line), stdin) == NULL)
		return false;
	line[strcspn(line, "\r\n")] = '\0';
	return strcasecmp(line, "y") == 0 || strcasecmp(line, "yes") == 0;
}

static int
keys_delete(struct tool_ctx *c)
{
	cubeid_token *tok = NULL;
	cubeid_key *key = NULL;
	const uint8_t *id;
	size_t id_len;
	char *hex = NULL, *q = NULL;
	int r, rc;

	if ((rc = key_selector_check(c)) != TOOL_EXIT_OK)
		return rc;
	if (!tool_flag(c, "yes") && !isatty(STDIN_FILENO))
		return tool_usage_error(c, "not deleting without --yes (standard input is not a "
		                           "terminal to confirm on)");
	if ((rc = key_open(c, &tok, &key)) != TOOL_EXIT_OK)
		return rc;
	id = cubeid_key_id(key, &id_len);
	if ((hex = tool_hex(id, id_len)) == NULL) {
		rc = tool_fail(CUBEID_ERR_NOMEM, "deleting key");
		goto out;
	}
	if (!tool_flag(c, "yes")) {
		if (asprintf(&q, "delete %s key '%s' (id %s) from token %s", type_name(key),
		             cubeid_key_label(key), hex, cubeid_token_label(tok)) < 0) {
			q = NULL;
			rc = tool_fail(CUBEID_ERR_NOMEM, "deleting key");
			goto out;
		}
		if (!confirm(q)) {
			tool_err("key '%s' not deleted", cubeid_key_label(key));
			rc = TOOL_EXIT_FAILURE;
			goto out;
		}
	}
	if ((r = cubeid_key_delete(key)) != CUBEID_OK) {
		rc = tool_fail(r, "cannot delete key '%s' (id %s)", cubeid_key_label(key), hex);
		goto out;
	}
	if (!c->quiet)
		printf("deleted %s key '%s' (id %s)\n", type_name(key), cubeid_key_label(key), hex);
	rc = finish_stdout(TOOL_EXIT_OK);
out:
	free(q);
	free(hex);
	cubeid_key_free(key);
	cubeid_token_free(tok);
	return rc;
}

/* ---- keys export-public ---- */

static int
keys_export_public(struct tool_ctx *c)
{
	const char *format = tool_opt(c, "format"), *outp = tool_opt(c, "out");
	cubeid_pub_format fmt = CUBEID_PUB_PEM;
	bool jwk = false;
	cubeid_token *tok = NULL;
	cubeid_key *key = NULL;
	uint8_t *buf = NULL;
	size_t len = 0;
	int r, rc;

	if ((rc = key_selector_check(c)) != TOOL_EXIT_OK)
		return rc;
	if (format == NULL || strcmp(format, "pem") == 0)
		fmt = CUBEID_PUB_PEM;
	else if (strcmp(format, "der") == 0)
		fmt = CUBEID_PUB_DER;
	else if (strcmp(format, "jwk") == 0)
		jwk = true;
	else
		return tool_usage_error(c, "unknown format '%s' (use pem, der or jwk)", format);
	if (outp != NULL && *outp == '\0')
		return tool_usage_error(c, "--out needs a file name");
	if (fmt == CUBEID_PUB_DER && outp == NULL && isatty(STDOUT_FILENO))
		return tool_usage_error(c, "not writing binary DER to a terminal: use --out FILE "
		                           "or redirect standard output");
	if ((rc = key_open(c, &tok, &key)) != TOOL_EXIT_OK)
		return rc;
	r = jwk ? cubeid_key_export_jwk(key, &buf, &len)
	        : cubeid_key_export_public(key, fmt, &buf, &len);
	if (r != CUBEID_OK) {
		rc = tool_fail(r, "cannot export the public key of '%s'", cubeid_key_label(key));
		goto out;
	}
	if ((r = tool_write_out(outp, buf, len)) != CUBEID_OK) {
		rc = tool_exit_code(r);
		goto out;
	}
	/* A JWK is one line of JSON without a newline: end it for the shell. */
	if (jwk && (outp == NULL || strcmp(outp, "-") == 0))
		fputc('\n', stdout);
	rc = finish_stdout(TOOL_EXIT_OK);
out:
	free(buf);
	cubeid_key_free(key);
	cubeid_token_free(tok);
	return rc;
}

/* ---- dev-init ---- */

/* Print NAME='VALUE' for the shell, quoting any ' in VALUE. */
static void
print_export(const char *name, const char *value)
{
	printf("export %s='", name);
	for (; *value != '\0'; value++) {
		if (*value == '\'')
			fputs("'\\''", stdout);
		else
			fputc(*value, stdout);
	}
	fputs("'\n", stdout);
}

/* mkdir -p of the directories above path (mode 0700 for new ones). */
static int
mkdir_parents(const char *path)
{
	char buf[4096];
	char *p;

	if (strlen(path) >= sizeof(buf))
		return CUBEID_ERR_TOO_LARGE;
	strcpy(buf, path);
	for (p = buf + 1; (p = strchr(p, '/')) != NULL; p++) {
		*p = '\0';
		if (mkdir(buf, 0700) != 0 && errno != EEXIST) {
			tool_err("cannot create %s: %s", buf, strerror(errno));
			return CUBEID_ERR_IO;
		}
		*p = '/';
	}
	return CUBEID_OK;
}

static int
dev_init(struct tool_ctx *c)
{
	const char *dir = tool_opt(c, "dir"), *label = tool_opt(c, "label"), *conf;
	char *abs = NULL, *uri = NULL, *pin_file = NULL, cwd[4096];
	int r, rc;

	if (label != NULL && (*label == '\0' || strlen(label) > 32))
		return tool_usage_error(c, "--label needs a token label of 1 to 32 bytes");
	if (dir != NULL && *dir == '\0')
		return tool_usage_error(c, "--dir needs a directory");
	/* The paths printed must work from any directory. */
	if (dir == NULL)
		r = asprintf(&abs, "%s/softhsm", c->state_dir);
	else if (dir[0] == '/')
		r = asprintf(&abs, "%s", dir);
	else if (getcwd(cwd, sizeof(cwd)) != NULL)
		r = asprintf(&abs, "%s/%s", cwd, dir);
	else
		return tool_fail(CUBEID_ERR_IO, "cannot find the current directory");
	if (r < 0)
		return tool_fail(CUBEID_ERR_NOMEM, "dev-init");
	if ((r = mkdir_parents(abs)) != CUBEID_OK) {
		rc = tool_fail(r, "cannot create the parent directories of %s", abs);
		goto out;
	}
	if (c->module != NULL)
		setenv(CUBEID_ENV_MODULE, c->module, 1);
	if ((r = cubeid_softhsm_dev_token(abs, label, &uri, &pin_file)) != CUBEID_OK) {
		rc = tool_fail(r, "cannot set up a development token in %s", abs);
		goto out;
	}
	if ((conf = getenv("SOFTHSM2_CONF")) == NULL) {
		rc = tool_fail(CUBEID_ERR_INTERNAL, "the development token set no SOFTHSM2_CONF");
		goto out;
	}
	print_export("SOFTHSM2_CONF", conf);
	print_export(CUBEID_ENV_TOKEN, uri);
	print_export(CUBEID_ENV_PIN_FILE, pin_file);
	/* the state directory the token is under, for the ca and svid commands */
	if (c->state_dir[0] == '/')
		print_export("CUBEID_STATE_DIR", c->state_dir);
	else if (getcwd(cwd, sizeof(cwd)) != NULL) {
		char *st = NULL;

		if (asprintf(&st, "%s/%s", cwd, c->state_dir) < 0) {
			rc = tool_fail(CUBEID_ERR_NOMEM, "dev-init");
			goto out;
		}
		print_export("CUBEID_STATE_DIR", st);
		free(st);
	}
	rc = finish_stdout(TOOL_EXIT_OK);
out:
	free(abs);
	free(uri);
	free(pin_file);
	return rc;
}
