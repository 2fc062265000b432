/*
 * `cubeid picod wrapping-key | cluster-key ...`: one PicoD key for every
 * node, for today's single-key PicoD, copied between tokens only wrapped
 * (<cubeid/key-wrap.h>, docs/cluster.md "Single cluster PicoD key").
 * Listed in cli/tool-picod.c's table.
 */
#include "config.h"

#include "cli/tool-picod-key.h"

#include <cubeid/ca.h>
#include <cubeid/jwt-keys.h>
#include <cubeid/key-wrap.h>
#include <cubeid/picod.h>
#include <cubeid/x509svid.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/pem.h>

#define WRAP_LABEL_DEFAULT    "cubeid-picod-wrap"
#define CLUSTER_LABEL_DEFAULT "cubeid-picod-cluster"
#define PICOD_SUBDIR          "picod"

const struct tool_opt tool_picod_wrapping_key_opts[] = {
        {"label", 0, "LABEL", "the key's label (default " WRAP_LABEL_DEFAULT ")"},
        {"out", 0, "FILE", "write the public key (PEM) to FILE instead of standard output"},
        {0},
};
const struct tool_opt tool_picod_cluster_create_opts[] = {
        {"label", 0, "LABEL", "the key's label (default " CLUSTER_LABEL_DEFAULT ")"},
        {"out", 0, "FILE", "write the public key (PEM) to FILE instead of standard output"},
        {0},
};
const struct tool_opt tool_picod_export_wrapped_opts[] = {
        {"label", 0, "LABEL", "the cluster key's label (default " CLUSTER_LABEL_DEFAULT ")"},
        {"to", 0, "FILE", "the node's wrapping public key, from 'picod wrapping-key' (required)"},
        {"out", 0, "FILE", "write the wrapped key to FILE instead of standard output"},
        {0},
};
const struct tool_opt tool_picod_import_wrapped_opts[] = {
        {"wrapping-label", 0, "LABEL", "this node's wrapping key (default " WRAP_LABEL_DEFAULT ")"},
        {"prepublish", 0, "DURATION", "publish first, sign after this long (default: sign now)"},
        {0},
};

static int
print_pub(struct tool_ctx *c, cubeid_key *k)
{
	uint8_t *pem = NULL;
	size_t len = 0;
	int r;

	if ((r = cubeid_key_export_public(k, CUBEID_PUB_PEM, &pem, &len)) != CUBEID_OK)
		return tool_fail(r, "public key");
	r = tool_write_out(tool_opt(c, "out"), pem, len) == CUBEID_OK ? TOOL_EXIT_OK
	                                                              : TOOL_EXIT_FAILURE;
	free(pem);
	return r;
}

static const char *
label_of(struct tool_ctx *c, const char *opt, const char *def)
{
	const char *l = tool_opt(c, opt);

	return l != NULL ? l : def;
}

int
tool_picod_wrapping_key(struct tool_ctx *c)
{
	const char *label = label_of(c, "label", WRAP_LABEL_DEFAULT);
	cubeid_token *tok = NULL;
	cubeid_key *k = NULL;
	int r, rc;

	if ((r = tool_token_open(c, true, NULL, &tok)) != CUBEID_OK)
		return tool_exit_code(r);
	r = cubeid_key_find(tok, label, NULL, 0, &k);
	if (r == CUBEID_ERR_NOT_FOUND)
		r = cubeid_wrapping_key_generate(tok, label, &k);
	if (r != CUBEID_OK) {
		rc = r == CUBEID_ERR_UNSUPPORTED
		             ? tool_fail(r, "this token cannot hold a wrapping key: use the "
		                            "JWKS-aware PicoD verifier (docs/cluster.md)")
		             : tool_fail(r, "wrapping key '%s'", label);
		goto out;
	}
	rc = print_pub(c, k);
out:
	cubeid_key_free(k);
	cubeid_token_free(tok);
	return rc;
}

int
tool_picod_cluster_create(struct tool_ctx *c)
{
	const char *label = label_of(c, "label", CLUSTER_LABEL_DEFAULT);
	cubeid_token *tok = NULL;
	cubeid_key *k = NULL;
	int r, rc;

	if ((r = tool_token_open(c, true, NULL, &tok)) != CUBEID_OK)
		return tool_exit_code(r);
	if ((r = cubeid_cluster_key_generate(tok, label, &k)) != CUBEID_OK) {
		rc = tool_fail(r, "cannot create the cluster PicoD key '%s'", label);
		goto out;
	}
	rc = print_pub(c, k);
out:
	cubeid_key_free(k);
	cubeid_token_free(tok);
	return rc;
}

int
tool_picod_export_wrapped(struct tool_ctx *c)
{
	const char *label = label_of(c, "label", CLUSTER_LABEL_DEFAULT), *to = tool_opt(c, "to");
	cubeid_token *tok = NULL;
	cubeid_key *k = NULL;
	EVP_PKEY *wpub = NULL;
	char *buf = NULL, *doc = NULL;
	size_t len = 0;
	BIO *bio = NULL;
	int r, rc;

	if (to == NULL)
		return tool_usage_error(c, "--to is required");
	if ((r = tool_read_in(to, CUBEID_PICOD_PEM_MAX, &buf, &len)) != CUBEID_OK)
		return tool_fail(r, "%s", to);
	if ((bio = BIO_new_mem_buf(buf, (int)len)) == NULL ||
	    (wpub = PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL)) == NULL) {
		rc = tool_fail(CUBEID_ERR_PARSE, "%s is not a PEM public key", to);
		goto out;
	}
	if ((r = tool_token_open(c, true, NULL, &tok)) != CUBEID_OK) {
		rc = tool_exit_code(r);
		goto out;
	}
	if ((r = cubeid_key_find(tok, label, NULL, 0, &k)) != CUBEID_OK) {
		rc = tool_fail(r, "cluster PicoD key '%s'", label);
		goto out;
	}
	if ((r = cubeid_key_wrap_for(k, wpub, &doc)) != CUBEID_OK) {
		rc = tool_fail(r, "cannot wrap the cluster PicoD key");
		goto out;
	}
	rc = tool_write_out(tool_opt(c, "out"), doc, strlen(doc)) == CUBEID_OK ? TOOL_EXIT_OK
	                                                                       : TOOL_EXIT_FAILURE;
out:
	BIO_free(bio);
	EVP_PKEY_free(wpub);
	free(buf);
	free(doc);
	cubeid_key_free(k);
	cubeid_token_free(tok);
	return rc;
}

int
tool_picod_import_wrapped(struct tool_ctx *c)
{
	const char *wlabel = label_of(c, "wrapping-label", WRAP_LABEL_DEFAULT),
	           *pre = tool_opt(c, "prepublish");
	struct cubeid_jwt_keys_opts o = {0};
	struct cubeid_wrapped_info info = {0};
	cubeid_token *tok = NULL;
	cubeid_key *wk = NULL, *k = NULL;
	cubeid_ca *ca = NULL;
	cubeid_jwt_keys *st = NULL;
	char *buf = NULL, *dir = NULL, label[128];
	size_t len = 0;
	int r, rc;

	if (c->argc != 1)
		return tool_usage_error(c, "give the wrapped key FILE");
	o.prepublish = CUBEID_JWT_PREPUBLISH_NONE;
	if (pre != NULL && cubeid_duration_parse(pre, &o.prepublish) != CUBEID_OK)
		return tool_usage_error(c, "bad duration '%s'", pre);
	if ((r = tool_read_in(c->argv[0], CUBEID_WRAPPED_MAX, &buf, &len)) != CUBEID_OK)
		return tool_fail(r, "%s", c->argv[0]);
	if ((r = cubeid_wrapped_parse(buf, len, &info)) != CUBEID_OK) {
		rc = tool_fail(r, "%s is not a wrapped key", c->argv[0]);
		goto out;
	}
	if ((r = tool_token_open(c, true, NULL, &tok)) != CUBEID_OK) {
		rc = tool_exit_code(r);
		goto out;
	}
	if ((r = cubeid_ca_load(tok, c->state_dir, &ca)) != CUBEID_OK) {
		rc = tool_fail(r, "no usable CA in %s", c->state_dir);
		goto out;
	}
	if ((r = cubeid_key_find(tok, wlabel, NULL, 0, &wk)) != CUBEID_OK) {
		rc = tool_fail(r, "this node's wrapping key '%s' ('cubeid picod wrapping-key')",
		               wlabel);
		goto out;
	}
	snprintf(label, sizeof(label), "cubeid-picod-cluster-%.16s", info.kid);
	if ((r = cubeid_key_unwrap_import(wk, buf, len, label, &k)) != CUBEID_OK) {
		rc = r == CUBEID_ERR_UNSUPPORTED
		             ? tool_fail(r, "this token cannot import a wrapped key: use the "
		                            "JWKS-aware PicoD verifier (docs/cluster.md)")
		             : tool_fail(r, "cannot import the cluster PicoD key");
		goto out;
	}
	/* the agent's PicoD key state: the cluster key becomes its signer */
	if (asprintf(&dir, "%s/" PICOD_SUBDIR, c->state_dir) < 0 ||
	    cubeid_state_dir_prepare(dir) != CUBEID_OK) {
		rc = tool_fail(CUBEID_ERR_IO, "%s", dir ? dir : "picod state");
		goto out;
	}
	o.adopt = k;
	o.max_ttl = CUBEID_PICOD_TTL_MAX;
	o.key_type = cubeid_key_get_type(k);
	if ((r = cubeid_jwt_keys_rotate_saved(tok, dir, cubeid_ca_trust_domain(ca), &o, &st)) !=
	    CUBEID_OK) {
		rc = tool_fail(r, "cannot record the key in %s", dir);
		cubeid_key_delete(k);
		goto out;
	}
	if (!c->quiet)
		printf("imported the cluster PicoD key %s (non-extractable) into token %s; it is "
		       "the PicoD signer in %s (reload the agent: SIGHUP)\n",
		       info.kid, cubeid_token_label(tok), dir);
	rc = TOOL_EXIT_OK;
out:
	cubeid_jwt_keys_free(st);
	cubeid_wrapped_info_clear(&info);
	cubeid_key_free(k);
	cubeid_key_free(wk);
	cubeid_ca_free(ca);
	cubeid_token_free(tok);
	free(buf);
	free(dir);
	return rc;
}
