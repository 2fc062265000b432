/*
 * The commands that talk to a running cubeid-agent over its Workload API
 * socket (libcubeid's client, <cubeid/workloadapi.h>): `svid fetch`,
 * `jwt fetch`, `bundle fetch` (listed in the svid, jwt and bundle groups'
 * tables) and the `status` group.
 *
 * `cubeid status` calls cubeid.Agent/Status on the same socket: an empty
 * request, a response with one field (`string json = 1`) holding the
 * status document.  The agent answers only root and its own uid.
 */
#include "config.h"

#include "cli/tool.h"

#include <cubeid/ca.h>
#include <cubeid/workloadapi.h>
#include <cubeid/x509svid.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <jansson.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

TOOL_GROUP_DECLARE(status);

#define STATUS_PATH     "/cubeid.Agent/Status"
#define STATUS_JSON_MAX (64 * 1024)

const struct tool_opt tool_agent_svid_fetch_opts[] = {
        TOOL_SOCKET_OPT,
        {"out", 0, "DIR",
         "directory for svid.pem, svid_key.pem, svid_bundle.pem (default .; '-': print the "
         "PEM)"},
        {"no-security-header", 0, NULL, "omit the workload.spiffe.io header (for tests)"},
        TOOL_OUTPUT_OPT,
        {0},
};
const struct tool_opt tool_agent_svid_watch_opts[] = {
        TOOL_SOCKET_OPT,
        {"updates", 0, "N", "stop with status 0 after N messages (default: never)"},
        {"timeout", 0, "DURATION",
         "stop after this long: status 0 after a message, 1 (DeadlineExceeded) before one "
         "(default: never)"},
        {0},
};
const struct tool_opt tool_agent_jwt_fetch_opts[] = {
        TOOL_SOCKET_OPT,
        {"aud", 'a', "AUD", "the audience (required)"},
        {"spiffe-id", 'i', "ID", "only this identity of the caller"},
        TOOL_OUTPUT_OPT,
        {0},
};
const struct tool_opt tool_agent_jwt_validate_opts[] = {
        TOOL_SOCKET_OPT,
        {"aud", 'a', "AUD", "the audience the token must carry (required)"},
        TOOL_OUTPUT_OPT,
        {0},
};
const struct tool_opt tool_agent_bundle_fetch_opts[] = {
        TOOL_SOCKET_OPT,
        {"format", 'f', "FORMAT", "pem (X.509 authorities, the default) or jwks (JWT keys)"},
        {"out", 0, "FILE", "write to FILE instead of standard output ('-')"},
        TOOL_OUTPUT_OPT,
        {0},
};

/* DER certificates, concatenated, as PEM (caller frees). */
static int
der_certs_to_pem(const uint8_t *der, size_t len, char **out, size_t *out_len)
{
	STACK_OF(X509) *certs = NULL;
	int rc;

	*out = NULL;
	if ((rc = cubeid_x509_chain_parse(der, len, CUBEID_X509_BUNDLE_MAX,
	                                  CUBEID_X509_BUNDLE_CERTS, &certs)) != CUBEID_OK)
		return rc;
	rc = cubeid_x509_chain_to_pem(certs, out, out_len);
	sk_X509_pop_free(certs, X509_free);
	return rc;
}

/* PKCS#8 DER as "PRIVATE KEY" PEM (caller wipes and frees). */
static int
pkcs8_to_pem(const uint8_t *der, size_t len, char **out, size_t *out_len)
{
	const unsigned char *p = der;
	PKCS8_PRIV_KEY_INFO *p8;
	BIO *b = NULL;
	char *data, *s = NULL;
	long n;
	int rc = CUBEID_ERR_CRYPTO;

	*out = NULL;
	if ((p8 = d2i_PKCS8_PRIV_KEY_INFO(NULL, &p, (long)len)) == NULL || p != der + len)
		goto out;
	if ((b = BIO_new(BIO_s_secmem())) == NULL || !PEM_write_bio_PKCS8_PRIV_KEY_INFO(b, p8))
		goto out;
	if ((n = BIO_get_mem_data(b, &data)) <= 0 || (s = malloc((size_t)n + 1)) == NULL) {
		rc = CUBEID_ERR_NOMEM;
		goto out;
	}
	memcpy(s, data, (size_t)n);
	s[n] = '\0';
	*out = s;
	*out_len = (size_t)n;
	rc = CUBEID_OK;
out:
	BIO_free(b);
	PKCS8_PRIV_KEY_INFO_free(p8);
	return rc;
}

/* Write one SVID's three PEM files in dir: svid.pem, svid_key.pem and
 * svid_bundle.pem, or with index > 0 svid.N.pem, svid_key.N.pem and
 * svid_bundle.N.pem; the key first, so that a reader that sees the new
 * certificate finds its key. */
static int
write_svid(const char *dir, const struct cubeid_wl_x509svid *s, size_t index)
{
	static const char *const names[3] = {"svid_key", "svid", "svid_bundle"};
	static const mode_t modes[3] = {0600, 0644, 0644};
	char *pem[3] = {NULL, NULL, NULL}, *path = NULL;
	size_t len[3] = {0, 0, 0}, i;
	int rc;

	if ((rc = pkcs8_to_pem(s->key, s->key_len, &pem[0], &len[0])) != CUBEID_OK ||
	    (rc = der_certs_to_pem(s->cert_chain, s->cert_chain_len, &pem[1], &len[1])) !=
	            CUBEID_OK ||
	    (rc = der_certs_to_pem(s->bundle, s->bundle_len, &pem[2], &len[2])) != CUBEID_OK) {
		tool_err("FetchX509SVID: malformed SVID from the agent: %s", cubeid_strerror(rc));
		goto out;
	}
	for (i = 0; i < 3; i++) {
		int n = index == 0 ? asprintf(&path, "%s/%s.pem", dir, names[i])
		                   : asprintf(&path, "%s/%s.%zu.pem", dir, names[i], index);

		if (n < 0) {
			path = NULL;
			rc = CUBEID_ERR_NOMEM;
			goto out;
		}
		if ((rc = cubeid_atomic_write(path, pem[i], len[i], modes[i])) != CUBEID_OK) {
			tool_err("cannot write %s: %s", path, cubeid_strerror(rc));
			goto out;
		}
		free(path);
		path = NULL;
	}
out:
	free(path);
	if (pem[0] != NULL)
		OPENSSL_cleanse(pem[0], len[0]);
	for (i = 0; i < 3; i++)
		free(pem[i]);
	return rc;
}

/* The leaf's notAfter, RFC 3339. */
static const char *
leaf_not_after(const struct cubeid_wl_x509svid *s, char buf[TOOL_TIME_LEN])
{
	const unsigned char *p = s->cert_chain;
	X509 *leaf = d2i_X509(NULL, &p, (long)s->cert_chain_len);
	struct tm tm;
	int64_t t = 0;

	if (leaf != NULL && ASN1_TIME_to_tm(X509_get0_notAfter(leaf), &tm) == 1)
		t = (int64_t)timegm(&tm);
	X509_free(leaf);
	return tool_time(t, buf);
}

static json_t *
svid_json(const struct cubeid_wl_x509svid *s)
{
	char tbuf[TOOL_TIME_LEN];

	return json_pack("{s:s s:s}", "spiffe_id", s->spiffe_id, "not_after",
	                 leaf_not_after(s, tbuf));
}

/* Append to all the SVID's JSON with the files fetch wrote for it. */
static int
svid_files_json(json_t *all, const char *dir, const struct cubeid_wl_x509svid *s, size_t i)
{
	static const char *const keys[3] = {"svid_file", "key_file", "bundle_file"};
	static const char *const names[3] = {"svid", "svid_key", "svid_bundle"};
	json_t *so = svid_json(s);
	char *path = NULL;
	size_t k;
	int n;

	for (k = 0; so != NULL && k < 3; k++) {
		n = i == 0 ? asprintf(&path, "%s/%s.pem", dir, names[k])
		           : asprintf(&path, "%s/%s.%zu.pem", dir, names[k], i);
		if (n < 0 || json_object_set_new(so, keys[k], json_string(path)) != 0) {
			json_decref(so);
			so = NULL;
		}
		if (n >= 0)
			free(path);
		path = NULL;
	}
	if (so == NULL || json_array_append_new(all, so) != 0)
		return CUBEID_ERR_NOMEM;
	return CUBEID_OK;
}

/* svid fetch --out -: each SVID's chain, key and bundle as PEM on stdout
 * (json: with the PEM in "svid", "key" and "bundle"). */
static int
print_svids(const struct tool_ctx *c, const struct cubeid_wl_x509 *x)
{
	json_t *all = json_array(), *o;
	char *pem[3] = {NULL, NULL, NULL};
	size_t len[3] = {0, 0, 0}, i, k;
	int rc = CUBEID_OK;

	for (i = 0; rc == CUBEID_OK && i < x->n_svids; i++) {
		const struct cubeid_wl_x509svid *s = &x->svids[i];

		if ((rc = der_certs_to_pem(s->cert_chain, s->cert_chain_len, &pem[0], &len[0])) !=
		            CUBEID_OK ||
		    (rc = pkcs8_to_pem(s->key, s->key_len, &pem[1], &len[1])) != CUBEID_OK ||
		    (rc = der_certs_to_pem(s->bundle, s->bundle_len, &pem[2], &len[2])) !=
		            CUBEID_OK) {
			tool_err("FetchX509SVID: malformed SVID from the agent: %s",
			         cubeid_strerror(rc));
		} else if (c->json) {
			o = svid_json(s);
			if (o == NULL || json_object_set_new(o, "svid", json_string(pem[0])) != 0 ||
			    json_object_set_new(o, "key", json_string(pem[1])) != 0 ||
			    json_object_set_new(o, "bundle", json_string(pem[2])) != 0 ||
			    json_array_append_new(all, o) != 0)
				rc = CUBEID_ERR_NOMEM;
		} else {
			for (k = 0; k < 3 && rc == CUBEID_OK; k++)
				rc = tool_write_out("-", pem[k], len[k]);
		}
		if (pem[1] != NULL)
			OPENSSL_cleanse(pem[1], len[1]);
		for (k = 0; k < 3; k++) {
			free(pem[k]);
			pem[k] = NULL;
		}
	}
	if (rc != CUBEID_OK) {
		json_decref(all);
		return tool_exit_code(rc);
	}
	if (c->json)
		return tool_print_json(all);
	json_decref(all);
	return TOOL_EXIT_OK;
}

int
tool_agent_svid_fetch(struct tool_ctx *c)
{
	const char *dir = tool_opt(c, "out") != NULL ? tool_opt(c, "out") : ".";
	struct cubeid_wl_status st;
	struct cubeid_wl_opts o;
	struct cubeid_wl_x509 *x = NULL;
	json_t *all = c->json ? json_array() : NULL;
	size_t i;
	int rc;

	if (c->json && all == NULL)
		return tool_fail(CUBEID_ERR_NOMEM, "JSON output");
	tool_wl_opts(c, &o);
	if ((rc = cubeid_wl_fetch_x509(&o, &x, &st)) != CUBEID_OK) {
		json_decref(all);
		return tool_rpc_fail(rc, "FetchX509SVID", &st);
	}
	if (x->n_svids == 0) {
		tool_err("FetchX509SVID: the agent sent no SVID");
		rc = CUBEID_ERR_PROTOCOL;
		goto out;
	}
	if (strcmp(dir, "-") == 0) {
		json_decref(all);
		rc = print_svids(c, x);
		cubeid_wl_x509_free(x);
		return rc;
	}
	if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
		rc = CUBEID_ERR_IO;
		tool_err("cannot create %s: %s", dir, strerror(errno));
		goto out;
	}
	/* every identity of the caller: the first under the usual names */
	for (i = 0; i < x->n_svids; i++) {
		if ((rc = write_svid(dir, &x->svids[i], i)) != CUBEID_OK)
			goto out;
		if (c->json) {
			if ((rc = svid_files_json(all, dir, &x->svids[i], i)) != CUBEID_OK)
				goto out;
		} else if (!c->quiet) {
			printf("%s\n", x->svids[i].spiffe_id);
		}
	}
	if (c->json) {
		int r = tool_print_json(all);

		all = NULL;
		cubeid_wl_x509_free(x);
		return r;
	}
out:
	json_decref(all);
	cubeid_wl_x509_free(x);
	return tool_exit_code(rc);
}

struct watch_state {
	long seen, want;
};

static int
watch_msg(const struct cubeid_wl_x509 *x, void *arg)
{
	struct watch_state *w = arg;
	size_t i;

	w->seen++;
	for (i = 0; i < x->n_svids; i++) {
		const struct cubeid_wl_x509svid *s = &x->svids[i];
		const unsigned char *p = s->cert_chain;
		X509 *leaf = d2i_X509(NULL, &p, (long)s->cert_chain_len);
		BIGNUM *bn = leaf != NULL ? ASN1_INTEGER_to_BN(X509_get0_serialNumber(leaf), NULL)
		                          : NULL;
		char *hex = bn != NULL ? BN_bn2hex(bn) : NULL;

		printf("%ld %s serial=%s\n", w->seen, s->spiffe_id, hex != NULL ? hex : "?");
		OPENSSL_free(hex);
		BN_free(bn);
		X509_free(leaf);
	}
	fflush(stdout);
	return w->want > 0 && w->seen >= w->want ? 1 : 0;
}

int
tool_agent_svid_watch(struct tool_ctx *c)
{
	const char *n = tool_opt(c, "updates"), *t = tool_opt(c, "timeout");
	struct watch_state w = {0, 0};
	struct cubeid_wl_status st;
	struct cubeid_wl_opts o;
	int64_t secs = 0;
	char *end;
	int rc;

	if (n != NULL) {
		w.want = strtol(n, &end, 10);
		if (*n == '\0' || *end != '\0' || w.want < 1 || w.want > 1000000)
			return tool_usage_error(c, "--updates takes a count from 1");
	}
	if (t != NULL && cubeid_duration_parse(t, &secs) != CUBEID_OK)
		return tool_usage_error(c, "bad duration '%s' (e.g. 30s, 5m)", t);
	tool_wl_opts(c, &o);
	o.timeout_ms = (long)secs * 1000;
	rc = cubeid_wl_watch_x509(&o, watch_msg, &w, NULL, &st);
	if (rc == CUBEID_ERR_TIMEOUT && w.seen > 0) {
		/* the agent answered: the end of the window asked for, not a
		 * deadline the agent missed */
		if (!c->quiet)
			fprintf(stderr, "cubeid: watch: --timeout %s reached after %ld message%s\n",
			        t, w.seen, w.seen == 1 ? "" : "s");
		return TOOL_EXIT_OK;
	}
	if (rc != CUBEID_OK)
		return tool_rpc_fail(rc, "FetchX509SVID", &st);
	return TOOL_EXIT_OK;
}

int
tool_agent_jwt_fetch(struct tool_ctx *c)
{
	const char *aud = tool_opt(c, "aud");
	struct cubeid_wl_status st;
	struct cubeid_wl_opts o;
	struct cubeid_wl_jwt *j = NULL;
	size_t i;
	int rc;

	if (aud == NULL)
		return tool_usage_error(c, "--aud is required");
	tool_wl_opts(c, &o);
	if ((rc = cubeid_wl_fetch_jwt(&o, &aud, 1, tool_opt(c, "spiffe-id"), &j, &st)) != CUBEID_OK)
		return tool_rpc_fail(rc, "FetchJWTSVID", &st);
	if (c->json) {
		json_t *all = json_array();

		for (i = 0; all != NULL && i < j->n; i++)
			if (json_array_append_new(all, json_pack("{s:s s:s}", "spiffe_id",
			                                         j->svids[i].spiffe_id, "token",
			                                         j->svids[i].token)) != 0) {
				json_decref(all);
				all = NULL;
			}
		cubeid_wl_jwt_free(j);
		return tool_print_json(all);
	}
	for (i = 0; i < j->n; i++) {
		if (c->verbose > 0)
			fprintf(stderr, "%s\n", j->svids[i].spiffe_id);
		printf("%s\n", j->svids[i].token);
	}
	cubeid_wl_jwt_free(j);
	return TOOL_EXIT_OK;
}

int
tool_agent_jwt_validate(struct tool_ctx *c)
{
	const char *aud = tool_opt(c, "aud");
	struct cubeid_wl_status st;
	struct cubeid_wl_opts o;
	struct cubeid_wl_validated *v = NULL;
	int rc;

	if (aud == NULL || c->argc != 1)
		return tool_usage_error(c, "TOKEN and --aud are required");
	tool_wl_opts(c, &o);
	if ((rc = cubeid_wl_validate_jwt(&o, c->argv[0], aud, &v, &st)) != CUBEID_OK) {
		rc = tool_rpc_fail(rc, "ValidateJWTSVID", &st);
		/* InvalidArgument: the agent checked the token and refused it */
		return st.code == 3 ? TOOL_EXIT_REJECTED : rc;
	}
	if (c->json) {
		json_t *claims =
		        json_loads(v->claims_json != NULL ? v->claims_json : "{}", 0, NULL);

		rc = tool_print_json(
		        json_pack("{s:s s:o?}", "spiffe_id", v->spiffe_id, "claims", claims));
		cubeid_wl_validated_free(v);
		return rc;
	}
	printf("%s\n%s\n", v->spiffe_id, v->claims_json != NULL ? v->claims_json : "{}");
	cubeid_wl_validated_free(v);
	return TOOL_EXIT_OK;
}

int
tool_agent_bundle_fetch(struct tool_ctx *c)
{
	const char *fmt = tool_opt(c, "format") != NULL ? tool_opt(c, "format") : "pem";
	struct cubeid_wl_status st;
	struct cubeid_wl_opts o;
	struct cubeid_wl_bundles *b = NULL;
	char *pem = NULL;
	size_t i, len = 0;
	int rc;
	bool jwks;

	if (strcmp(fmt, "pem") == 0)
		jwks = false;
	else if (strcmp(fmt, "jwks") == 0)
		jwks = true;
	else
		return tool_usage_error(c, "--format is pem or jwks, not '%s'", fmt);
	tool_wl_opts(c, &o);
	rc = jwks ? cubeid_wl_fetch_jwt_bundles(&o, &b, &st)
	          : cubeid_wl_fetch_x509_bundles(&o, &b, &st);
	if (rc != CUBEID_OK)
		return tool_rpc_fail(rc, jwks ? "FetchJWTBundles" : "FetchX509Bundles", &st);
	for (i = 0; i < b->n; i++) {
		if (c->verbose > 0)
			fprintf(stderr, "%s\n", b->v[i].trust_domain);
		if (jwks) {
			rc = tool_bundle_out(c, fmt, (const char *)b->v[i].data, b->v[i].len);
		} else {
			if ((rc = der_certs_to_pem(b->v[i].data, b->v[i].len, &pem, &len)) !=
			    CUBEID_OK) {
				tool_err("malformed bundle for %s", b->v[i].trust_domain);
				rc = tool_exit_code(rc);
				break;
			}
			rc = tool_bundle_out(c, fmt, pem, len);
			free(pem);
			pem = NULL;
		}
		if (rc != TOOL_EXIT_OK)
			break;
	}
	cubeid_wl_bundles_free(b);
	return rc;
}

/* ------------------------------------------------------------ status */

struct status_buf {
	char *json;
};

static int
status_msg(const uint8_t *msg, size_t len, void *arg)
{
	struct status_buf *sb = arg;
	size_t i = 0, n = 0;
	unsigned shift = 0;

	/* field 1, wire type 2: a varint length, then the JSON */
	if (len < 2 || msg[i++] != 0x0a)
		return CUBEID_ERR_PROTOCOL;
	while (i < len && shift < 35) {
		n |= (size_t)(msg[i] & 0x7f) << shift;
		shift += 7;
		if ((msg[i++] & 0x80) == 0)
			break;
	}
	if (n > STATUS_JSON_MAX || n != len - i || sb->json != NULL)
		return CUBEID_ERR_PROTOCOL;
	if ((sb->json = malloc(n + 1)) == NULL)
		return CUBEID_ERR_NOMEM;
	memcpy(sb->json, msg + i, n);
	sb->json[n] = '\0';
	return 0;
}

static void
print_time(const char *label, json_t *v)
{
	time_t t = (time_t)json_integer_value(v);
	char buf[64];
	struct tm tm;

	if (t <= 0 || gmtime_r(&t, &tm) == NULL) {
		printf("%-16s -\n", label);
		return;
	}
	strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
	printf("%-16s %s\n", label, buf);
}

/* The facts /readyz and /metrics give (agent/metrics.c), for a person. */
static void
print_health(json_t *j)
{
	json_t *h = json_object_get(j, "health"), *m = json_object_get(j, "metrics");
	json_t *is = json_object_get(m, "issued"), *ro = json_object_get(m, "rotations");

	if (h == NULL || m == NULL)
		return;
	printf("%-16s %s%s%s\n", "ready", json_is_true(json_object_get(h, "ready")) ? "yes" : "NO",
	       json_is_string(json_object_get(h, "why")) ? ": " : "",
	       json_is_string(json_object_get(h, "why"))
	               ? json_string_value(json_object_get(h, "why"))
	               : "");
	printf("%-16s %lld x509, %lld jwt (%lld x509 and %lld jwt rotations)\n", "svids issued",
	       (long long)json_integer_value(json_object_get(is, "x509")),
	       (long long)json_integer_value(json_object_get(is, "jwt")),
	       (long long)json_integer_value(json_object_get(ro, "x509")),
	       (long long)json_integer_value(json_object_get(ro, "jwt")));
	printf("%-16s %lld\n", "token errors",
	       (long long)json_integer_value(json_object_get(m, "token_errors")));
	printf("%-16s %s\n", "http",
	       json_is_string(json_object_get(h, "http"))
	               ? json_string_value(json_object_get(h, "http"))
	               : "off");
}

static int
status_show(struct tool_ctx *c)
{
	struct cubeid_wl_status st;
	struct cubeid_wl_opts o;
	struct status_buf sb = {0};
	json_t *j;
	bool ready;
	int rc;

	tool_wl_opts(c, &o);
	rc = cubeid_wl_call(&o, STATUS_PATH, NULL, 0, status_msg, &sb, NULL, &st);
	if (rc != CUBEID_OK) {
		free(sb.json);
		return tool_rpc_fail(rc, "cubeid.Agent/Status", &st);
	}
	if (sb.json == NULL || (j = json_loads(sb.json, 0, NULL)) == NULL) {
		free(sb.json);
		tool_err("cubeid.Agent/Status: no status document in the answer");
		return TOOL_EXIT_FAILURE;
	}
	ready = json_is_true(json_object_get(json_object_get(j, "health"), "ready"));
	if (c->json) {
		printf("%s\n", sb.json);
	} else {
		json_t *tok = json_object_get(j, "token"), *ca = json_object_get(j, "ca");

		printf("%-16s %s%s\n", "agent", json_string_value(json_object_get(j, "version")),
		       json_is_true(json_object_get(j, "dev")) ? " (DEVELOPMENT MODE)" : "");
		printf("%-16s %s\n", "trust domain",
		       json_string_value(json_object_get(j, "trust_domain")));
		printf("%-16s %s (serial %s) %s%s%s%s\n", "token",
		       json_string_value(json_object_get(tok, "label")),
		       json_string_value(json_object_get(tok, "serial")),
		       json_is_true(json_object_get(tok, "healthy")) ? "healthy" : "UNHEALTHY",
		       json_is_string(json_object_get(tok, "why")) ? ": " : "",
		       json_is_string(json_object_get(tok, "why"))
		               ? json_string_value(json_object_get(tok, "why"))
		               : "",
		       json_integer_value(json_object_get(tok, "recoveries")) > 0 &&
		                       json_is_true(json_object_get(tok, "healthy"))
		               ? " (recovered from an outage)"
		               : "");
		printf("%-16s %s\n", "ca",
		       json_is_true(json_object_get(ca, "root")) ? "root" : "intermediate");
		print_time("ca expires", json_object_get(ca, "not_after"));
		printf("%-16s %lld\n", "entries",
		       (long long)json_integer_value(json_object_get(j, "entries")));
		printf("%-16s %lld (%lld streams)\n", "clients",
		       (long long)json_integer_value(json_object_get(j, "clients")),
		       (long long)json_integer_value(json_object_get(j, "streams")));
		printf("%-16s %lld x509, %lld jwt\n", "svids cached",
		       (long long)json_integer_value(json_object_get(j, "x509_svids_cached")),
		       (long long)json_integer_value(json_object_get(j, "jwt_svids_cached")));
		print_time("next rotation", json_object_get(j, "next_rotation"));
		print_health(j);
	}
	json_decref(j);
	free(sb.json);
	if (fflush(stdout) != 0)
		return tool_fail(CUBEID_ERR_IO, "standard output");
	/* as spire-agent healthcheck and vault status: a script can test it */
	return ready ? TOOL_EXIT_OK : TOOL_EXIT_NOT_READY;
}

static const struct tool_opt status_opts[] = {
        TOOL_SOCKET_OPT,
        TOOL_OUTPUT_OPT,
        {0},
};

const struct tool_cmd tool_status_cmds[] = {
        {"show", "[--socket S] [-o text|json]",
         "show a running agent's health (also plain 'cubeid status')",
         "Asks the agent on its socket (the cubeid.Agent/Status method): the token's\n"
         "label and health, the CA and its expiry, the number of entries, connected\n"
         "clients and open streams, cached SVIDs and the next rotation; whether it\n"
         "is ready (as /readyz), SVIDs issued and rotated, token errors, and the\n"
         "HTTP address of /metrics.  The agent answers only root and its own user.\n"
         "-o json prints the agent's status document.  Exit status 0 when the agent\n"
         "is ready, 8 when it answers but is not ready (as /readyz), 1 when it cannot\n"
         "be reached.",
         status_opts, 0, status_show},
        {0},
};

int
tool_status(int argc, char **argv)
{
	char *v[64];
	int i;

	/* `cubeid status [options]` is `cubeid status show [options]` */
	if (argc >= 2 && argv[1][0] != '-')
		return tool_dispatch("status", tool_status_cmds, argc, argv);
	if (argc > 62) {
		tool_err("too many arguments");
		return TOOL_EXIT_USAGE;
	}
	v[0] = argv[0];
	v[1] = (char *)"show";
	for (i = 1; i < argc; i++)
		v[i + 1] = argv[i];
	v[argc + 1] = NULL;
	return tool_dispatch("status", tool_status_cmds, argc + 1, v);
}
