/*
 * `cubeid token info`: the module, its slots, the chosen token and its
 * mechanisms.  The token layer collects the facts into one JSON object
 * (<cubeid/token-info.h>); this renders it either as JSON (--json) or as
 * text, so the two never disagree.  It never logs in.
 */
#include "config.h"

#include "cli/tool.h"

#include <cubeid/log.h>
#include <cubeid/token-info.h>

#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <p11-kit/uri.h>

/* ---- text rendering of the JSON ---- */

static void
print_kv(const char *key, const char *val)
{
	printf("  %-18s %s\n", key, val);
}

static const char *
jstr(const json_t *o, const char *key)
{
	const char *s = json_string_value(json_object_get(o, key));

	return s != NULL ? s : "";
}

static void
print_flags(const json_t *flags)
{
	size_t i;
	json_t *v;

	json_array_foreach(flags, i, v) printf("%s%s", i ? " " : "", json_string_value(v));
}

static void
render_text(const json_t *info)
{
	const json_t *m = json_object_get(info, "module");
	const json_t *slots = json_object_get(info, "slots");
	const json_t *t = json_object_get(info, "token");
	const json_t *s, *mech;
	json_int_t lo, hi;
	char buf[64];
	size_t i;

	printf("Module\n");
	print_kv("path:", jstr(m, "path"));
	print_kv("loaded with:", jstr(m, "interface"));
	print_kv("cryptoki version:", jstr(m, "cryptoki_version"));
	print_kv("manufacturer:", jstr(m, "manufacturer"));
	print_kv("library:", jstr(m, "library"));
	print_kv("library version:", jstr(m, "library_version"));

	printf("Slots (%zu)\n", json_array_size(slots));
	json_array_foreach(slots, i, s)
	{
		printf("  slot %lld: %s", (long long)json_integer_value(json_object_get(s, "id")),
		       jstr(s, "description"));
		if (!json_is_true(json_object_get(s, "token_present")))
			printf(" (no token)");
		else if (!json_is_true(json_object_get(s, "token_initialized")))
			printf(" (token not initialised)");
		else
			printf(" (token \"%s\")", jstr(s, "token_label"));
		if (json_is_true(json_object_get(s, "selected")))
			printf(" [selected]");
		printf("\n");
	}
	if (t == NULL)
		return;

	printf("Token\n");
	print_kv("label:", jstr(t, "label"));
	print_kv("serial:", jstr(t, "serial"));
	print_kv("model:", jstr(t, "model"));
	print_kv("manufacturer:", jstr(t, "manufacturer"));
	print_kv("uri:", jstr(t, "uri"));
	snprintf(buf, sizeof(buf), "%lld",
	         (long long)json_integer_value(json_object_get(t, "slot")));
	print_kv("slot:", buf);
	snprintf(buf, sizeof(buf), "%s / %s", jstr(t, "hardware_version"),
	         jstr(t, "firmware_version"));
	print_kv("hw / fw version:", buf);
	print_kv("login required:",
	         json_is_true(json_object_get(t, "login_required")) ? "yes" : "no");
	snprintf(buf, sizeof(buf), "%lld-%lld",
	         (long long)json_integer_value(json_object_get(t, "pin_min_len")),
	         (long long)json_integer_value(json_object_get(t, "pin_max_len")));
	print_kv("PIN length:", buf);
	printf("  %-18s ", "flags:");
	print_flags(json_object_get(t, "flags"));
	printf("\n");

	printf("Mechanisms (%zu)\n", json_array_size(json_object_get(t, "mechanisms")));
	json_array_foreach(json_object_get(t, "mechanisms"), i, mech)
	{
		lo = json_integer_value(json_object_get(mech, "min_key_size"));
		hi = json_integer_value(json_object_get(mech, "max_key_size"));
		if (lo == 0 && hi == 0)
			snprintf(buf, sizeof(buf), "-");
		else
			snprintf(buf, sizeof(buf), "%lld-%lld", (long long)lo, (long long)hi);
		printf("  %-30s %-14s ", jstr(mech, "name"), buf);
		print_flags(json_object_get(mech, "flags"));
		printf("\n");
	}
}

/* The module the layer will load for uri: module-path in the URI, then
 * --module, $CUBEID_PKCS11_MODULE, the build-time SoftHSM2 module (the
 * same order as the layer's).  NULL if the URI does not parse: then the
 * layer reports why. */
const char *
tool_module_for(const struct tool_ctx *c, const char *uri_str, char **owned)
{
	P11KitUri *uri;
	const char *p;

	*owned = NULL;
	if (uri_str == NULL || *uri_str == '\0')
		uri_str = "pkcs11:";
	if ((uri = p11_kit_uri_new()) == NULL)
		return NULL;
	if (p11_kit_uri_parse(uri_str, P11_KIT_URI_FOR_ANY, uri) != P11_KIT_URI_OK) {
		p11_kit_uri_free(uri);
		return NULL;
	}
	if ((p = p11_kit_uri_get_module_path(uri)) != NULL)
		*owned = strdup(p);
	p11_kit_uri_free(uri);
	if (*owned != NULL)
		return *owned;
	if (c->module != NULL)
		return c->module;
	if ((p = getenv(CUBEID_ENV_MODULE)) != NULL && *p != '\0')
		return p;
	return CUBEID_SOFTHSM_MODULE;
}

int
tool_token_info(struct tool_ctx *c)
{
	cubeid_token *tok = NULL;
	json_t *info = NULL;
	const char *path;
	char *owned = NULL, *dump;
	bool json = c->json;
	int r, rc;

	path = tool_module_for(c, c->token_uri, &owned);
	if (path == NULL) {
		/* A URI that does not parse: let the layer say why. */
		r = tool_token_open(c, false, NULL, &tok);
		rc = tool_exit_code(r);
		goto out;
	}
	if ((r = cubeid_token_info_module(path, &info)) != CUBEID_OK) {
		if (r == CUBEID_ERR_P11_MODULE || r == CUBEID_ERR_P11_MODULE_DENIED ||
		    r == CUBEID_ERR_NOMEM)
			rc = tool_fail(r, "cannot load PKCS#11 module %s", path);
		else
			rc = tool_fail(r, "cannot list the slots of %s", path);
		goto out;
	}
	/* The token: no login, info needs no PIN.  On failure, still show the
	 * module and slots, which is what one needs to fix the URI. */
	r = tool_token_open(c, false, NULL, &tok);
	if (tok != NULL && (rc = cubeid_token_info_add_token(info, tok)) != CUBEID_OK)
		r = rc;
	if (json) {
		dump = json_dumps(info, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
		if (dump != NULL)
			printf("%s\n", dump);
		free(dump);
	} else {
		render_text(info);
	}
	rc = tool_exit_code(r);
	if (fflush(stdout) != 0 && rc == TOOL_EXIT_OK)
		rc = tool_fail(CUBEID_ERR_IO, "cannot write the output");
out:
	json_decref(info);
	cubeid_token_free(tok);
	free(owned);
	return rc;
}
