/*
 * `cubeid svid ...`: mint X.509-SVIDs with the CA in the state directory,
 * and verify them.  `cubeid bundle ...`: the trust domain's bundle.
 */
#include "config.h"

#include "cli/tool.h"

#include <cubeid/ca.h>
#include <cubeid/jwt-keys.h>
#include <cubeid/jwt.h>
#include <cubeid/x509svid.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <openssl/x509.h>

TOOL_GROUP_DECLARE(svid);
TOOL_GROUP_DECLARE(bundle);

#define MAX_DNS 32

static int svid_mint(struct tool_ctx *c);
static int svid_verify(struct tool_ctx *c);
static int bundle_show(struct tool_ctx *c);

static const struct tool_opt mint_opts[] = {
        {"spiffe-id", 'i', "ID", "the workload's SPIFFE ID (required)"},
        {"dns", 0, "NAME", "a DNS SAN (repeatable)"},
        {"ttl", 0, "DURATION", "lifetime (default 1h; never past the CA certificate)"},
        {"type", 't', "TYPE", "key type: ec-p256 (the default), ec-p384, rsa-2048 or rsa-3072"},
        {"resident", 0, NULL, "keep the private key in the token (prints its PKCS#11 URI)"},
        {"out", 0, "DIR", "directory for svid.pem, svid_key.pem, svid_bundle.pem (required)"},
        {0},
};
static const struct tool_opt verify_opts[] = {
        {"bundle", 0, "FILE", "the trust bundle (default: STATE-DIR/bundle.pem; '-': stdin)"},
        {"trust-domain", 'd', "TD", "the bundle's trust domain (default: the SVID's)"},
        TOOL_OUTPUT_OPT,
        {0},
};
static const struct tool_opt show_opts[] = {
        {"format", 'f', "FORMAT", "pem (the default), spiffe or jwks"},
        {"out", 0, "FILE", "write to FILE instead of standard output ('-')"},
        TOOL_OUTPUT_OPT,
        {0},
};

const struct tool_cmd tool_svid_cmds[] = {
        {"mint", "--spiffe-id ID [--dns NAME]... [--ttl 1h] [--type TYPE] --out DIR",
         "mint an X.509-SVID signed in the token by the CA",
         "Generates the workload key in the token, then a leaf certificate per the\n"
         "X.509-SVID spec: one URI SAN (the SPIFFE ID) plus the DNS names, key usage\n"
         "digitalSignature, EKU serverAuth and clientAuth, cA=false, a 128-bit random\n"
         "serial.  Writes DIR/svid.pem (leaf, then intermediates), DIR/svid_key.pem\n"
         "(PKCS#8, mode 0600) and DIR/svid_bundle.pem, each replaced atomically.\n"
         "With --resident the key stays in the token as a persistent object and no key\n"
         "file is written; its PKCS#11 URI is printed instead.",
         mint_opts, 0, svid_mint},
        {"verify", "FILE [--bundle FILE] [--trust-domain TD] [-o text|json]",
         "verify an X.509-SVID chain and print its SPIFFE ID",
         "FILE holds the leaf, then any intermediates (PEM or DER).  Checks the\n"
         "X.509-SVID rules (one SPIFFE ID URI SAN; leaf not a CA, with digitalSignature\n"
         "and without keyCertSign or cRLSign; signing certificates are CAs) and the chain\n"
         "to the bundle.  FILE '-' is standard input.  Prints the SPIFFE ID (json:\n"
         "spiffe_id and not_after).  Needs no token.  Exit status 7 with the reason\n"
         "when the SVID is rejected.",
         verify_opts, 1, svid_verify},
        TOOL_AGENT_SVID_FETCH_CMD,
        TOOL_AGENT_SVID_WATCH_CMD,
        {0},
};

const struct tool_cmd tool_bundle_cmds[] = {
        {"show", "[--format pem|spiffe|jwks] [--out FILE] [-o text|json]",
         "print the trust domain's bundle from the state directory",
         "pem: the X.509 authorities (root certificates).  jwks: the published JWT-SVID\n"
         "signing keys (use jwt-svid, with kid), from STATE-DIR/jwt.conf.  spiffe: the\n"
         "SPIFFE bundle document holding both, with spiffe_sequence (incremented, and\n"
         "recorded in jwt.conf, whenever the content changes) and spiffe_refresh_hint.\n"
         "-o json wraps it: {\"format\": F, \"bundle\": the PEM text, or the JSON\n"
         "document}.  Needs no token.",
         show_opts, 0, bundle_show},
        TOOL_AGENT_BUNDLE_FETCH_CMD,
        {0},
};

/* --dns may be given several times, but the dispatcher keeps the last one:
 * collect them all from argv before dispatching. */
static const char *dns_names[MAX_DNS];
static size_t n_dns;
static bool too_many_dns;

static void
collect_dns(int argc, char **argv)
{
	int i;

	n_dns = 0;
	for (i = 1; i < argc; i++) {
		const char *v = NULL;

		if (strcmp(argv[i], "--") == 0)
			break;
		if (strcmp(argv[i], "--dns") == 0 && i + 1 < argc)
			v = argv[++i];
		else if (strncmp(argv[i], "--dns=", 6) == 0)
			v = argv[i] + 6;
		if (v == NULL)
			continue;
		if (n_dns >= MAX_DNS)
			too_many_dns = true;
		else
			dns_names[n_dns++] = v;
	}
}

int
tool_svid(int argc, char **argv)
{
	collect_dns(argc, argv);
	return tool_dispatch("svid", tool_svid_cmds, argc, argv);
}

int
tool_bundle(int argc, char **argv)
{
	return tool_dispatch("bundle", tool_bundle_cmds, argc, argv);
}

static int
svid_mint(struct tool_ctx *c)
{
	const char *ids = tool_opt(c, "spiffe-id"), *out = tool_opt(c, "out");
	const char *ttl = tool_opt(c, "ttl"), *kt = tool_opt(c, "type");
	struct cubeid_svid_req req = {0};
	cubeid_spiffe_reason why = CUBEID_SPIFFE_OK;
	cubeid_spiffe_id *id = NULL;
	cubeid_token *tok = NULL;
	cubeid_ca *ca = NULL;
	cubeid_x509_svid *svid = NULL;
	char *uri = NULL;
	int r, rc;

	if (ids == NULL || out == NULL)
		return tool_usage_error(c, "--spiffe-id and --out are required");
	if (too_many_dns)
		return tool_usage_error(c, "at most %d --dns names", MAX_DNS);
	if (cubeid_spiffe_id_parse(ids, strlen(ids), &id, &why) != CUBEID_OK)
		return tool_usage_error(c, "'%s' is not a SPIFFE ID: %s", ids,
		                        cubeid_spiffe_reason_str(why));
	req.id = id;
	req.dns = dns_names;
	req.n_dns = n_dns;
	if (ttl != NULL && cubeid_duration_parse(ttl, &req.ttl) != CUBEID_OK) {
		rc = tool_usage_error(c, "bad duration '%s' (e.g. 90, 30s, 5m, 1h)", ttl);
		goto out;
	}
	if (kt != NULL && (req.key_type = cubeid_key_type_from_name(kt)) == CUBEID_KEY_NONE) {
		rc = tool_usage_error(c, "unknown key type '%s'", kt);
		goto out;
	}
	if (tool_flag(c, "resident")) {
		req.policy = CUBEID_SVID_KEY_RESIDENT;
		req.persistent = true; /* the URI must outlive this process */
	}
	if ((r = tool_token_open(c, true, NULL, &tok)) != CUBEID_OK) {
		rc = tool_exit_code(r);
		goto out;
	}
	if ((r = cubeid_ca_load(tok, c->state_dir, &ca)) != CUBEID_OK) {
		rc = tool_fail(r, "no usable CA in %s ('cubeid ca init')", c->state_dir);
		goto out;
	}
	if ((r = cubeid_x509_svid_mint(ca, &req, &svid)) != CUBEID_OK) {
		rc = tool_fail(r, "cannot mint an X.509-SVID for %s", ids);
		goto out;
	}
	if ((r = cubeid_x509_svid_write_files(svid, cubeid_ca_bundle(ca), out)) != CUBEID_OK) {
		rc = tool_fail(r, "cannot write the SVID files to %s", out);
		goto out;
	}
	if (req.policy == CUBEID_SVID_KEY_RESIDENT &&
	    cubeid_x509_svid_key_uri(svid, &uri) == CUBEID_OK)
		printf("key: %s\n", uri);
	if (!c->quiet)
		fprintf(stderr, "cubeid: wrote %s/svid.pem%s and svid_bundle.pem for %s\n", out,
		        req.policy == CUBEID_SVID_KEY_RESIDENT ? "" : ", svid_key.pem", ids);
	rc = TOOL_EXIT_OK;
out:
	free(uri);
	cubeid_x509_svid_free(svid);
	cubeid_ca_free(ca);
	cubeid_token_free(tok);
	cubeid_spiffe_id_free(id);
	return rc;
}

static int
state_file(const struct tool_ctx *c, const char *name, char **out)
{
	if (asprintf(out, "%s/%s", c->state_dir, name) < 0) {
		*out = NULL;
		return CUBEID_ERR_NOMEM;
	}
	return CUBEID_OK;
}

static int
svid_verify(struct tool_ctx *c)
{
	const char *bundle_opt = tool_opt(c, "bundle"), *td = tool_opt(c, "trust-domain");
	const char *reason = "?";
	STACK_OF(X509) *chain = NULL;
	cubeid_spiffe_id *leaf_id = NULL, *id = NULL;
	cubeid_x509_bundle *bundle = NULL;
	char *bundle_path = NULL, *buf = NULL;
	size_t len = 0;
	int r, rc;

	if (c->argc != 1)
		return tool_usage_error(c, "which SVID file?");
	if ((r = tool_read_in(c->argv[0], CUBEID_X509_CHAIN_MAX, &buf, &len)) != CUBEID_OK)
		return tool_fail(r, "cannot read %s", c->argv[0]);
	r = cubeid_x509_chain_parse((const uint8_t *)buf, len, CUBEID_X509_CHAIN_MAX,
	                            CUBEID_X509_CHAIN_CERTS, &chain);
	free(buf);
	buf = NULL;
	if (r != CUBEID_OK)
		return tool_fail(r, "cannot read %s", c->argv[0]);
	if (td == NULL) {
		if ((r = cubeid_x509_spiffe_id(sk_X509_value(chain, 0), &leaf_id, &reason)) !=
		    CUBEID_OK) {
			tool_err("%s: rejected: %s", c->argv[0], reason);
			rc = TOOL_EXIT_REJECTED;
			goto out;
		}
		td = cubeid_spiffe_id_trust_domain(leaf_id);
	}
	if (bundle_opt == NULL && (r = state_file(c, CUBEID_CA_BUNDLE_FILE, &bundle_path)) != 0) {
		rc = tool_fail(r, "bundle path");
		goto out;
	}
	if ((r = tool_read_in(bundle_opt ? bundle_opt : bundle_path, CUBEID_X509_BUNDLE_MAX, &buf,
	                      &len)) != CUBEID_OK ||
	    (r = cubeid_x509_bundle_parse(td, (const uint8_t *)buf, len, &bundle)) != CUBEID_OK) {
		rc = tool_fail(r, "cannot read the bundle %s",
		               bundle_opt ? bundle_opt : bundle_path);
		goto out;
	}
	if ((r = cubeid_x509_svid_verify(chain, bundle, 0, &id, &reason)) != CUBEID_OK) {
		tool_err("%s: rejected: %s (%s)", c->argv[0], reason, cubeid_strerror(r));
		rc = TOOL_EXIT_REJECTED;
		goto out;
	}
	if (c->json) {
		char tbuf[TOOL_TIME_LEN];
		struct tm tm;
		int64_t na = 0;

		if (ASN1_TIME_to_tm(X509_get0_notAfter(sk_X509_value(chain, 0)), &tm) == 1)
			na = (int64_t)timegm(&tm);
		rc = tool_print_json(json_pack("{s:s s:s}", "spiffe_id",
		                               cubeid_spiffe_id_string(id), "not_after",
		                               tool_time(na, tbuf)));
		goto out;
	}
	printf("%s\n", cubeid_spiffe_id_string(id));
	rc = TOOL_EXIT_OK;
out:
	sk_X509_pop_free(chain, X509_free);
	cubeid_spiffe_id_free(leaf_id);
	cubeid_spiffe_id_free(id);
	cubeid_x509_bundle_free(bundle);
	free(bundle_path);
	free(buf);
	return rc;
}

/* The SPIFFE bundle: the roots and, when the state has JWT keys, the
 * published ones with spiffe_sequence (persisted when it moves) and
 * spiffe_refresh_hint. */
static int
spiffe_bundle_text(const struct tool_ctx *c, STACK_OF(X509) * certs, cubeid_jwt_keys *k,
                   char **text, size_t *len)
{
	cubeid_spiffe_id *id = NULL;
	cubeid_spiffe_bundle *sb = NULL;
	cubeid_x509_bundle *xb = NULL;
	bool changed = false;
	int i, r;

	/* the trust domain is the roots' own SPIFFE ID */
	r = cubeid_x509_spiffe_id(sk_X509_value(certs, 0), &id, NULL);
	if (r == CUBEID_OK && k != NULL &&
	    strcmp(cubeid_spiffe_id_trust_domain(id), cubeid_jwt_keys_trust_domain(k)) != 0) {
		tool_err("%s: the JWT keys are for %s, the roots for %s", c->state_dir,
		         cubeid_jwt_keys_trust_domain(k), cubeid_spiffe_id_trust_domain(id));
		r = CUBEID_ERR_CONFIG;
	}
	if (r == CUBEID_OK)
		r = cubeid_x509_bundle_new(cubeid_spiffe_id_trust_domain(id), &xb);
	for (i = 0; r == CUBEID_OK && i < sk_X509_num(certs); i++)
		r = cubeid_x509_bundle_add(xb, sk_X509_value(certs, i));
	if (r == CUBEID_OK && k != NULL) {
		r = cubeid_jwt_keys_spiffe_bundle(k, xb, 0, &sb, &changed);
		if (r == CUBEID_OK && changed &&
		    (r = cubeid_jwt_keys_save(k, c->state_dir)) != CUBEID_OK)
			tool_err("cannot record the new spiffe_sequence in %s: %s", c->state_dir,
			         cubeid_strerror(r));
	} else if (r == CUBEID_OK) {
		r = cubeid_spiffe_bundle_new(cubeid_spiffe_id_trust_domain(id), &sb);
		for (i = 0; r == CUBEID_OK && i < sk_X509_num(certs); i++) {
			unsigned char *der = NULL;
			int n = i2d_X509(sk_X509_value(certs, i), &der);

			r = n > 0 ? cubeid_spiffe_bundle_add_x509_der(sb, der, (size_t)n)
			          : CUBEID_ERR_X509;
			OPENSSL_free(der);
		}
	}
	if (r == CUBEID_OK)
		r = cubeid_spiffe_bundle_emit(sb, text, len);
	cubeid_spiffe_id_free(id);
	cubeid_spiffe_bundle_free(sb);
	cubeid_x509_bundle_free(xb);
	return r;
}

static int
bundle_show(struct tool_ctx *c)
{
	const char *fmt = tool_opt(c, "format");
	STACK_OF(X509) *certs = NULL;
	cubeid_jwt_keys *k = NULL;
	cubeid_jwt_bundle *jb = NULL;
	char *path = NULL, *text = NULL;
	size_t len = 0;
	int r, rc;

	if (fmt == NULL)
		fmt = "pem";
	if (strcmp(fmt, "pem") != 0 && strcmp(fmt, "spiffe") != 0 && strcmp(fmt, "jwks") != 0)
		return tool_usage_error(c, "unknown format '%s' (pem, spiffe or jwks)", fmt);
	if (strcmp(fmt, "pem") != 0) {
		r = cubeid_jwt_keys_load(c->state_dir, &k);
		if (r == CUBEID_ERR_NOT_FOUND && strcmp(fmt, "jwks") == 0) {
			rc = tool_fail(r, "no JWT keys in %s ('cubeid ca jwt-rotate' makes one)",
			               c->state_dir);
			goto out;
		}
		if (r != CUBEID_OK && r != CUBEID_ERR_NOT_FOUND) {
			rc = tool_fail(r, "cannot read the JWT keys in %s", c->state_dir);
			goto out;
		}
	}
	if (strcmp(fmt, "jwks") == 0) {
		r = cubeid_jwt_keys_bundle(k, 0, &jb);
		if (r == CUBEID_OK)
			r = cubeid_jwt_bundle_to_jwks(jb, &text, &len);
	} else {
		if ((r = state_file(c, CUBEID_CA_BUNDLE_FILE, &path)) != CUBEID_OK) {
			rc = tool_fail(r, "bundle path");
			goto out;
		}
		if ((r = cubeid_x509_chain_read_file(path, CUBEID_X509_BUNDLE_MAX,
		                                     CUBEID_X509_BUNDLE_CERTS, &certs)) !=
		    CUBEID_OK) {
			rc = tool_fail(r, "cannot read %s ('cubeid ca init' makes it)", path);
			goto out;
		}
		if (strcmp(fmt, "pem") == 0)
			r = cubeid_x509_chain_to_pem(certs, &text, &len);
		else
			r = spiffe_bundle_text(c, certs, k, &text, &len);
	}
	if (r != CUBEID_OK) {
		rc = tool_fail(r, "cannot render the bundle");
		goto out;
	}
	rc = tool_bundle_out(c, fmt, text, len);
out:
	sk_X509_pop_free(certs, X509_free);
	cubeid_jwt_keys_free(k);
	cubeid_jwt_bundle_free(jb);
	free(path);
	free(text);
	return rc;
}
