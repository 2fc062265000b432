/*
 * `cubeid ca ...`: the CA chain with its keys in the token.  A root is
 * created with `ca init`; a node intermediate is enrolled with `ca csr` (on
 * the node), `ca sign` (at the root), `ca install` (on the node).  The state
 * lives in --state-dir (see <cubeid/ca.h>).
 */
#include "config.h"

#include "cli/tool.h"

#include <cubeid/ca.h>
#include <cubeid/jwt-keys.h>
#include <cubeid/x509svid.h>

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include <openssl/bio.h>
#include <openssl/rand.h>
#include <openssl/x509.h>

TOOL_GROUP_DECLARE(ca);

/* A CA certificate's lifetime bounds, as spiffe/ca.c checks them. */
#define CA_TTL_MIN 60 /* seconds */
#define CA_TTL_MAX (20LL * 365 * 24 * 3600)

static int ca_init(struct tool_ctx *c);
static int ca_csr(struct tool_ctx *c);
static int ca_sign(struct tool_ctx *c);
static int ca_install(struct tool_ctx *c);
static int ca_show(struct tool_ctx *c);
static int ca_jwt_rotate(struct tool_ctx *c);
static int ca_jwt_keys(struct tool_ctx *c);

static const struct tool_opt init_opts[] = {
        {"trust-domain", 'd', "TD", "the trust domain (required), e.g. cluster.local"},
        {"type", 't', "TYPE", "key type: ec-p256 (the default), ec-p384, rsa-2048 or rsa-3072"},
        {"ttl", 0, "DURATION", "lifetime of the root certificate (default 365d)"},
        {0},
};
static const struct tool_opt csr_opts[] = {
        {"trust-domain", 'd', "TD", "the trust domain (required)"},
        {"type", 't', "TYPE", "key type: ec-p256 (the default), ec-p384, rsa-2048 or rsa-3072"},
        {"out", 0, "FILE", "write the CSR to FILE instead of standard output ('-')"},
        {0},
};
static const struct tool_opt sign_opts[] = {
        {"csr", 0, "FILE", "the node's certificate request (required; '-': standard input)"},
        {"out", 0, "FILE", "write the certificate to FILE instead of standard output ('-')"},
        {"ttl", 0, "DURATION",
         "lifetime of the intermediate (default 30d, at least 1m; never past the root)"},
        {0},
};
static const struct tool_opt install_opts[] = {
        {"cert", 0, "FILE",
         "the certificate from 'cubeid ca sign' (required; '-': standard input)"},
        {"bundle", 0, "FILE", "the root certificate(s) to check it against"},
        {0},
};
static const struct tool_opt show_opts[] = {
        TOOL_OUTPUT_OPT,
        {0},
};
static const struct tool_opt jwt_rotate_opts[] = {
        {"type", 't', "TYPE",
         "key type: ec-p256 (ES256, the default), ec-p384 (ES384), rsa-2048 or rsa-3072 "
         "(RS256/PS256)"},
        {"prepublish", 0, "DURATION",
         "publish the new key this long before it signs (default: max_ttl; 0 = at once)"},
        {"max-ttl", 0, "DURATION",
         "the longest JWT-SVID lifetime, when this creates jwt.conf (default 1h)"},
        {0},
};
static const struct tool_opt jwt_keys_opts[] = {
        TOOL_OUTPUT_OPT,
        TOOL_NO_HEADERS_OPT,
        {0},
};

const struct tool_cmd tool_ca_cmds[] = {
        {"init", "--trust-domain TD [--type TYPE] [--ttl DURATION]",
         "create a root CA whose key is generated in the token",
         "Generates the root key in the token as a persistent, non-extractable object\n"
         "labelled cubeid-root-TD, and a self-signed certificate whose only URI SAN is\n"
         "spiffe://TD (cA=true, keyCertSign and cRLSign).  The certificate, the bundle and\n"
         "the key's PKCS#11 URI are written to the state directory.  Fails if the state\n"
         "directory already holds a CA.\n\n"
         "Durations are a number with an optional unit s, m, h or d: 90, 30s, 5m, 1h, 365d.",
         init_opts, 0, ca_init},
        {"csr", "--trust-domain TD [--type TYPE] [--out FILE]",
         "start enrolling this node's intermediate CA: key in the token, then a CSR",
         "Generates the intermediate key in this node's token (persistent, never\n"
         "extractable), records it in the state directory as pending, and writes a\n"
         "certificate request signed by it.  Take the request to the root holder\n"
         "('cubeid ca sign'), then install the answer with 'cubeid ca install'.",
         csr_opts, 0, ca_csr},
        {"sign", "--csr FILE [--out FILE] [--ttl DURATION]",
         "sign a node's CSR with the root CA (at the root holder)",
         "Checks the request's signature and that it asks for no name but spiffe://TD,\n"
         "then issues an intermediate certificate: cA=true, pathLen 0, keyCertSign and\n"
         "cRLSign, URI SAN spiffe://TD, not valid past the root.  The output holds the\n"
         "new certificate followed by the root's.",
         sign_opts, 0, ca_sign},
        {"install", "--cert FILE [--bundle FILE]",
         "install the signed intermediate certificate on this node",
         "Checks that the certificate is a CA for this node's pending key and trust\n"
         "domain and that it chains to a root: the --bundle file, else the state\n"
         "directory's bundle.pem, else the root that came with the certificate (first\n"
         "enrolment).  Then this node's CA is the intermediate.",
         install_opts, 0, ca_install},
        {"show", "[-o text|json]", "show the CA in the state directory",
         "Loads the CA (its key must be on the token) and prints its trust domain, role,\n"
         "certificate and key URI.",
         show_opts, 0, ca_show},
        {"jwt-rotate", "[--type TYPE] [--prepublish DURATION] [--max-ttl DURATION]",
         "roll the trust domain's JWT-SVID signing key over to a new one",
         "Generates a new JWT signing key in the token (persistent, non-extractable)\n"
         "and adds it to the published JWT bundle at once; it becomes the signer only\n"
         "after the prepublish delay (default: the state's max_ttl, the longest\n"
         "JWT-SVID lifetime), so that verifiers can fetch it first.  The old key signs\n"
         "until then and stays in the bundle max_ttl longer, until every token it\n"
         "signed has expired; later runs drop such retired keys from the bundle and\n"
         "delete them from the token.  Refused while a new key still waits to sign.\n"
         "With no JWT keys yet, the first key signs at once, and --max-ttl sets the\n"
         "longest JWT-SVID lifetime the keys may sign ('cubeid ca init' makes\n"
         "one).  The keys and their times are in STATE-DIR/jwt.conf.",
         jwt_rotate_opts, 0, ca_jwt_rotate},
        {"jwt-keys", "[-o text|json] [--no-headers]",
         "list the JWT-SVID signing keys and their rollover times",
         "A line with the trust domain, max_ttl and bundle sequence, then one line per\n"
         "key in STATE-DIR/jwt.conf: kid, key type, state (active, pending: published\n"
         "but not signing yet, retiring: published, no longer signing, retired), and\n"
         "the created, active-from and retire-after times (RFC 3339; - = not set).\n"
         "Needs no token.",
         jwt_keys_opts, 0, ca_jwt_keys},
        {0},
};

int
tool_ca(int argc, char **argv)
{
	return tool_dispatch("ca", tool_ca_cmds, argc, argv);
}

/* Shared option parsing: --key-type and --ttl (when the command has them). */
static int
parse_ca_opts(struct tool_ctx *c, bool has_kt, bool has_ttl, struct cubeid_ca_opts *o)
{
	const char *kt = has_kt ? tool_opt(c, "type") : NULL;
	const char *ttl = has_ttl ? tool_opt(c, "ttl") : NULL;

	memset(o, 0, sizeof(*o));
	if (kt != NULL && (o->key_type = cubeid_key_type_from_name(kt)) == CUBEID_KEY_NONE)
		return tool_usage_error(c, "unknown key type '%s'", kt);
	if (ttl != NULL && cubeid_duration_parse(ttl, &o->ttl) != CUBEID_OK)
		return tool_usage_error(c, "bad duration '%s' (e.g. 90, 30s, 5m, 1h, 30d)", ttl);
	/* the CA layer's bounds (spiffe/ca.c), said here with the flag */
	if (ttl != NULL && (o->ttl < CA_TTL_MIN || o->ttl > CA_TTL_MAX))
		return tool_usage_error(c,
		                        "--ttl %s is out of range: a CA certificate lives at least "
		                        "1m and at most 7300d (20 years)",
		                        ttl);
	return TOOL_EXIT_OK;
}

static int
need_td(struct tool_ctx *c, const char **td)
{
	*td = tool_opt(c, "trust-domain");
	if (*td == NULL)
		return tool_usage_error(c, "--trust-domain is required");
	if (cubeid_trust_domain_validate(*td, strlen(*td), NULL) != CUBEID_OK)
		return tool_usage_error(c, "'%s' is not a valid trust domain name", *td);
	return TOOL_EXIT_OK;
}

/* The certificate's notAfter as seconds since the epoch (0 if unreadable). */
static int64_t
not_after_of(X509 *x)
{
	struct tm tm;

	if (ASN1_TIME_to_tm(X509_get0_notAfter(x), &tm) != 1)
		return 0;
	return (int64_t)timegm(&tm);
}

static int
print_ca(const struct tool_ctx *c, const cubeid_ca *ca)
{
	X509 *x = cubeid_ca_cert(ca);
	char *uri = NULL, *subj = X509_NAME_oneline(X509_get_subject_name(x), NULL, 0);
	char tbuf[TOOL_TIME_LEN];
	int64_t na = not_after_of(x);
	int rc = TOOL_EXIT_OK;

	(void)cubeid_key_uri(cubeid_ca_key(ca), &uri);
	if (c->json) {
		rc = tool_print_json(json_pack(
		        "{s:s s:s s:s s:s s:s s:s s:I}", "trust_domain", cubeid_ca_trust_domain(ca),
		        "role", cubeid_ca_is_root(ca) ? "root" : "intermediate", "subject",
		        subj ? subj : "", "not_after", tool_time(na, tbuf), "key", uri ? uri : "",
		        "key_type", cubeid_key_type_name(cubeid_key_get_type(cubeid_ca_key(ca))),
		        "roots", (json_int_t)cubeid_x509_bundle_count(cubeid_ca_bundle(ca))));
	} else {
		printf("trust domain: %s\n", cubeid_ca_trust_domain(ca));
		printf("role:         %s\n", cubeid_ca_is_root(ca) ? "root" : "intermediate");
		printf("subject:      %s\n", subj ? subj : "?");
		printf("not after:    %s\n", tool_time(na, tbuf));
		printf("key:          %s\n", uri ? uri : "?");
		printf("key type:     %s\n",
		       cubeid_key_type_name(cubeid_key_get_type(cubeid_ca_key(ca))));
		printf("roots:        %zu\n", cubeid_x509_bundle_count(cubeid_ca_bundle(ca)));
	}
	OPENSSL_free(subj);
	free(uri);
	return rc;
}

static int
ca_init(struct tool_ctx *c)
{
	struct cubeid_ca_opts o;
	cubeid_token *tok = NULL;
	cubeid_ca *ca = NULL;
	const char *td;
	int r, rc;

	if ((rc = need_td(c, &td)) != TOOL_EXIT_OK ||
	    (rc = parse_ca_opts(c, true, true, &o)) != TOOL_EXIT_OK)
		return rc;
	if ((r = tool_token_open(c, true, NULL, &tok)) != CUBEID_OK)
		return tool_exit_code(r);
	if ((r = cubeid_ca_init(tok, c->state_dir, td, &o, &ca)) != CUBEID_OK) {
		rc = r == CUBEID_ERR_EXISTS
		             ? tool_fail(r, "%s already holds a CA ('cubeid ca show')",
		                         c->state_dir)
		             : tool_fail(r, "cannot create the root CA");
		goto out;
	}
	rc = c->quiet ? TOOL_EXIT_OK : print_ca(c, ca);
out:
	cubeid_ca_free(ca);
	cubeid_token_free(tok);
	return rc;
}

static int
ca_csr(struct tool_ctx *c)
{
	struct cubeid_ca_opts o;
	cubeid_token *tok = NULL;
	char *csr = NULL;
	const char *td;
	int r, rc;

	if ((rc = need_td(c, &td)) != TOOL_EXIT_OK ||
	    (rc = parse_ca_opts(c, true, false, &o)) != TOOL_EXIT_OK)
		return rc;
	if ((r = tool_token_open(c, true, NULL, &tok)) != CUBEID_OK)
		return tool_exit_code(r);
	if ((r = cubeid_ca_csr_create(tok, c->state_dir, td, &o, &csr)) != CUBEID_OK) {
		rc = tool_fail(r, "cannot create the intermediate key and CSR");
		goto out;
	}
	rc = tool_exit_code(tool_write_out(tool_opt(c, "out"), csr, strlen(csr)));
out:
	free(csr);
	cubeid_token_free(tok);
	return rc;
}

static int
ca_sign(struct tool_ctx *c)
{
	struct cubeid_ca_opts o;
	const char *csr_path = tool_opt(c, "csr");
	cubeid_token *tok = NULL;
	cubeid_ca *ca = NULL;
	char *csr = NULL, *cert = NULL;
	size_t len = 0;
	int r, rc;

	if (csr_path == NULL)
		return tool_usage_error(c, "--csr is required");
	if ((rc = parse_ca_opts(c, false, true, &o)) != TOOL_EXIT_OK)
		return rc;
	if ((r = tool_read_in(csr_path, CUBEID_CSR_MAX, &csr, &len)) != CUBEID_OK)
		return tool_fail(r, "cannot read %s", csr_path);
	if ((r = tool_token_open(c, true, NULL, &tok)) != CUBEID_OK) {
		rc = tool_exit_code(r);
		goto out;
	}
	if ((r = cubeid_ca_load(tok, c->state_dir, &ca)) != CUBEID_OK) {
		rc = tool_fail(r, "no usable CA in %s", c->state_dir);
		goto out;
	}
	if ((r = cubeid_ca_sign_csr(ca, csr, len, &o, &cert)) != CUBEID_OK) {
		rc = tool_fail(r, "cannot sign %s", csr_path);
		goto out;
	}
	rc = tool_exit_code(tool_write_out(tool_opt(c, "out"), cert, strlen(cert)));
out:
	free(csr);
	free(cert);
	cubeid_ca_free(ca);
	cubeid_token_free(tok);
	return rc;
}

/* A bundle file for the trust domain named by the first certificate's
 * SPIFFE ID. */
static int
read_roots(const char *path, cubeid_x509_bundle **out)
{
	STACK_OF(X509) *sk = NULL;
	cubeid_spiffe_id *id = NULL;
	char *buf = NULL;
	size_t len = 0;
	int r;

	*out = NULL;
	if ((r = tool_read_in(path, CUBEID_X509_BUNDLE_MAX, &buf, &len)) != CUBEID_OK)
		return r;
	r = cubeid_x509_chain_parse((const uint8_t *)buf, len, CUBEID_X509_BUNDLE_MAX,
	                            CUBEID_X509_BUNDLE_CERTS, &sk);
	if (r == CUBEID_OK)
		r = cubeid_x509_spiffe_id(sk_X509_value(sk, 0), &id, NULL);
	if (r == CUBEID_OK)
		r = cubeid_x509_bundle_parse(cubeid_spiffe_id_trust_domain(id),
		                             (const uint8_t *)buf, len, out);
	cubeid_spiffe_id_free(id);
	sk_X509_pop_free(sk, X509_free);
	free(buf);
	return r;
}

static int
ca_install(struct tool_ctx *c)
{
	const char *cert_path = tool_opt(c, "cert"), *bundle_path = tool_opt(c, "bundle");
	cubeid_x509_bundle *roots = NULL;
	cubeid_token *tok = NULL;
	cubeid_ca *ca = NULL;
	char *cert = NULL;
	size_t len = 0;
	int r, rc;

	if (cert_path == NULL)
		return tool_usage_error(c, "--cert is required");
	if ((r = tool_read_in(cert_path, CUBEID_X509_CHAIN_MAX, &cert, &len)) != CUBEID_OK)
		return tool_fail(r, "cannot read %s", cert_path);
	if (bundle_path != NULL && (r = read_roots(bundle_path, &roots)) != CUBEID_OK) {
		rc = tool_fail(r, "cannot read the root bundle %s", bundle_path);
		goto out;
	}
	if ((r = tool_token_open(c, true, NULL, &tok)) != CUBEID_OK) {
		rc = tool_exit_code(r);
		goto out;
	}
	if ((r = cubeid_ca_install(tok, c->state_dir, cert, len, roots, &ca)) != CUBEID_OK) {
		rc = tool_fail(r, "cannot install %s", cert_path);
		goto out;
	}
	rc = c->quiet ? TOOL_EXIT_OK : print_ca(c, ca);
out:
	free(cert);
	cubeid_x509_bundle_free(roots);
	cubeid_ca_free(ca);
	cubeid_token_free(tok);
	return rc;
}

static int
ca_show(struct tool_ctx *c)
{
	cubeid_token *tok = NULL;
	cubeid_ca *ca = NULL;
	int r, rc;

	if ((r = tool_token_open(c, true, NULL, &tok)) != CUBEID_OK)
		return tool_exit_code(r);
	if ((r = cubeid_ca_load(tok, c->state_dir, &ca)) != CUBEID_OK) {
		rc = r == CUBEID_ERR_NOT_FOUND
		             ? tool_fail(r, "no CA in %s ('cubeid ca init')", c->state_dir)
		             : tool_fail(r, "cannot load the CA in %s", c->state_dir);
		goto out;
	}
	rc = print_ca(c, ca);
out:
	cubeid_ca_free(ca);
	cubeid_token_free(tok);
	return rc;
}

static const char *
jwt_key_state(const cubeid_jwt_keys *k, size_t i, const struct cubeid_jwt_key_info *ki)
{
	return cubeid_jwt_keys_active(k, i, 0)       ? "active"
	       : !cubeid_jwt_keys_published(k, i, 0) ? "retired"
	       : ki->retire_after != 0               ? "retiring"
	                                             : "pending";
}

static int
print_jwt_keys(const struct tool_ctx *c, const cubeid_jwt_keys *k)
{
	struct cubeid_jwt_key_info ki;
	char t1[TOOL_TIME_LEN], t2[TOOL_TIME_LEN], t3[TOOL_TIME_LEN];
	json_t *keys, *o;
	size_t i;

	if (c->json) {
		if ((keys = json_array()) == NULL)
			return tool_fail(CUBEID_ERR_NOMEM, "JSON output");
		for (i = 0; cubeid_jwt_keys_at(k, i, &ki) == CUBEID_OK; i++) {
			o = json_pack("{s:s s:s s:s s:s s:s? s:s?}", "kid", ki.kid, "type",
			              cubeid_key_type_name(ki.type), "state",
			              jwt_key_state(k, i, &ki), "created",
			              tool_time(ki.created_at, t1), "active_from",
			              ki.active_from > 0 ? tool_time(ki.active_from, t2) : NULL,
			              "retire_after",
			              ki.retire_after > 0 ? tool_time(ki.retire_after, t3) : NULL);
			if (o == NULL || json_array_append_new(keys, o) != 0) {
				json_decref(keys);
				return tool_fail(CUBEID_ERR_NOMEM, "JSON output");
			}
		}
		return tool_print_json(json_pack(
		        "{s:s s:I s:I s:o}", "trust_domain", cubeid_jwt_keys_trust_domain(k),
		        "max_ttl", (json_int_t)cubeid_jwt_keys_max_ttl(k), "sequence",
		        (json_int_t)cubeid_jwt_keys_sequence(k), "keys", keys));
	}
	if (!c->no_headers) {
		printf("trust domain: %s  max_ttl: %lld s  sequence: %llu\n",
		       cubeid_jwt_keys_trust_domain(k), (long long)cubeid_jwt_keys_max_ttl(k),
		       (unsigned long long)cubeid_jwt_keys_sequence(k));
		printf("%-43s  %-8s  %-8s  %-20s  %-20s  %s\n", "KID", "TYPE", "STATE", "CREATED",
		       "ACTIVE-FROM", "RETIRE-AFTER");
	}
	for (i = 0; cubeid_jwt_keys_at(k, i, &ki) == CUBEID_OK; i++)
		printf("%-43s  %-8s  %-8s  %-20s  %-20s  %s\n", ki.kid,
		       cubeid_key_type_name(ki.type), jwt_key_state(k, i, &ki),
		       tool_time(ki.created_at, t1), tool_time(ki.active_from, t2),
		       tool_time(ki.retire_after, t3));
	return TOOL_EXIT_OK;
}

/* Is dir the agent's PicoD key state (STATE-DIR/picod, a jwt.conf and no
 * CA)?  Its keys in *cur. */
static bool
picod_state(const char *dir, cubeid_jwt_keys **cur)
{
	const char *base;
	size_t n = strlen(dir);

	*cur = NULL;
	while (n > 1 && dir[n - 1] == '/')
		n--;
	for (base = dir + n; base > dir && base[-1] != '/'; base--)
		;
	if ((size_t)(dir + n - base) != 5 || strncmp(base, "picod", 5) != 0)
		return false;
	return cubeid_jwt_keys_load(dir, cur) == CUBEID_OK;
}

static int
ca_jwt_rotate(struct tool_ctx *c)
{
	struct cubeid_jwt_keys_opts o = {0};
	const char *kt = tool_opt(c, "type"), *pre = tool_opt(c, "prepublish"),
	           *mt = tool_opt(c, "max-ttl");
	cubeid_token *tok = NULL;
	cubeid_ca *ca = NULL;
	cubeid_jwt_keys *k = NULL, *cur = NULL;
	const char *td;
	char label[256];
	uint8_t rnd[4];
	int r, rc;

	if (kt != NULL && (o.key_type = cubeid_key_type_from_name(kt)) == CUBEID_KEY_NONE)
		return tool_usage_error(c, "unknown key type '%s'", kt);
	if (pre != NULL && strcmp(pre, "0") == 0)
		o.prepublish = CUBEID_JWT_PREPUBLISH_NONE;
	else if (pre != NULL && cubeid_duration_parse(pre, &o.prepublish) != CUBEID_OK)
		return tool_usage_error(c, "bad duration '%s' (e.g. 0, 30s, 5m, 1h)", pre);
	if (mt != NULL && cubeid_duration_parse(mt, &o.max_ttl) != CUBEID_OK)
		return tool_usage_error(c, "bad duration '%s' (e.g. 30s, 5m, 1h)", mt);
	if ((r = tool_token_open(c, true, NULL, &tok)) != CUBEID_OK)
		return tool_exit_code(r);
	if ((r = cubeid_ca_load(tok, c->state_dir, &ca)) == CUBEID_OK) {
		td = cubeid_ca_trust_domain(ca);
	} else if (r == CUBEID_ERR_NOT_FOUND && picod_state(c->state_dir, &cur)) {
		/* the agent's PicoD keys (STATE-DIR/picod): labelled as the agent
		 * labels them (agent/picod-service.c), not as JWT-SVID keys */
		td = cubeid_jwt_keys_trust_domain(cur);
		if (RAND_bytes(rnd, sizeof(rnd)) != 1) {
			rc = tool_fail(CUBEID_ERR_CRYPTO, "cannot roll the PicoD key over");
			goto out;
		}
		snprintf(label, sizeof(label), "cubeid-picod-%s-%lld-%02x%02x%02x%02x", td,
		         (long long)time(NULL), rnd[0], rnd[1], rnd[2], rnd[3]);
		o.label = label;
	} else {
		rc = tool_fail(r, "no usable CA in %s ('cubeid ca init')", c->state_dir);
		goto out;
	}
	if ((r = cubeid_jwt_keys_rotate_saved(tok, c->state_dir, td, &o, &k)) != CUBEID_OK) {
		rc = r == CUBEID_ERR_EXISTS
		             ? tool_fail(r, "a new JWT key is still waiting to sign ('cubeid ca "
		                            "jwt-keys')")
		             : tool_fail(r, "cannot roll the JWT key over");
		goto out;
	}
	rc = c->quiet ? TOOL_EXIT_OK : print_jwt_keys(c, k);
out:
	cubeid_jwt_keys_free(k);
	cubeid_jwt_keys_free(cur);
	cubeid_ca_free(ca);
	cubeid_token_free(tok);
	return rc;
}

static int
ca_jwt_keys(struct tool_ctx *c)
{
	cubeid_jwt_keys *k = NULL;
	int r;

	if ((r = cubeid_jwt_keys_load(c->state_dir, &k)) != CUBEID_OK)
		return tool_fail(r, "cannot read the JWT keys in %s", c->state_dir);
	r = print_jwt_keys(c, k);
	cubeid_jwt_keys_free(k);
	return r;
}
