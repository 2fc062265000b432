/*
 * `cubeid jwt ...`: mint JWT-SVIDs with the trust domain's active JWT key
 * (in the token, recorded in STATE-DIR/jwt.conf), and verify them against
 * the state's JWT bundle or a JWKS / SPIFFE bundle file.
 */
#include "config.h"

#include "cli/tool.h"

#include <cubeid/ca.h>
#include <cubeid/jwt-keys.h>
#include <cubeid/jwt.h>

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/rand.h>

TOOL_GROUP_DECLARE(jwt);

#define MAX_AUD 16

static int jwt_mint(struct tool_ctx *c);
static int jwt_verify(struct tool_ctx *c);

static const struct tool_opt mint_opts[] = {
        {"spiffe-id", 'i', "ID", "the subject's SPIFFE ID (required)"},
        {"aud", 'a', "AUD", "an audience (required; repeatable)"},
        {"ttl", 0, "DURATION", "lifetime (default 5m; at most the state's max_ttl, 1h)"},
        {"alg", 0, "ALG", "ES256, ES384, RS256 or PS256 (default: from the key type)"},
        {"jti", 0, NULL, "add a random jti (token ID) claim"},
        {0},
};
static const struct tool_opt verify_opts[] = {
        {"aud", 'a', "AUD", "the audience the token must carry (required)"},
        {"bundle", 0, "FILE", "a JWKS or SPIFFE bundle (default: the state's JWT bundle)"},
        {"trust-domain", 'd', "TD", "the bundle's trust domain (default: the token's subject's)"},
        {"token-file", 0, "FILE", "read the token from FILE ('-': stdin) instead of the argument"},
        {"max-lifetime", 0, "DURATION", "the longest exp - iat accepted (default 24h)"},
        TOOL_OUTPUT_OPT,
        {0},
};

const struct tool_cmd tool_jwt_cmds[] = {
        {"mint", "--spiffe-id ID --aud AUD [--aud AUD2]... [--ttl 5m] [--alg ALG] [--jti]",
         "mint a JWT-SVID signed in the token and print it",
         "Signs with the trust domain's active JWT key (see 'cubeid ca jwt-rotate'):\n"
         "header alg, kid and typ JWT; claims sub, aud (a string for one audience,\n"
         "else an array), iat, exp and, with --jti, a random jti.  The alg follows\n"
         "the key type: ES256 for EC P-256 (the default), ES384 for P-384, RS256 for\n"
         "RSA, or PS256 for RSA with --alg PS256.  The token goes to standard output.",
         mint_opts, 0, jwt_mint},
        {"verify",
         "TOKEN --aud AUD [--bundle FILE] [--trust-domain TD] [--max-lifetime 24h] [-o text|json]",
         "validate a JWT-SVID and print its subject and claims",
         "Checks alg against the allow-list, the kid against the bundle, the\n"
         "signature, typ, exp, nbf and iat (60 s leeway), a lifetime\n"
         "exp - iat of at most --max-lifetime, that aud holds AUD and that sub is a\n"
         "SPIFFE ID with a path in the bundle's trust domain.  The bundle is the\n"
         "state's published JWT keys, or FILE: a JWKS or a SPIFFE bundle document.\n"
         "Prints the subject, then the claims as JSON (-o json: one object with\n"
         "spiffe_id and claims).  TOKEN '-' is standard input.  Needs no token.  Exit\n"
         "status 7 with the reason when the token is rejected.",
         verify_opts, 1, jwt_verify},
        TOOL_AGENT_JWT_FETCH_CMD,
        TOOL_AGENT_JWT_VALIDATE_CMD,
        {0},
};

/* --aud may be given several times, but the dispatcher keeps the last one:
 * collect them all from argv first. */
static const char *auds[MAX_AUD];
static size_t n_aud;
static bool too_many_aud;

static void
collect_aud(int argc, char **argv)
{
	int i;

	n_aud = 0;
	for (i = 1; i < argc; i++) {
		const char *v = NULL;

		if (strcmp(argv[i], "--") == 0)
			break;
		if ((strcmp(argv[i], "--aud") == 0 || strcmp(argv[i], "-a") == 0) && i + 1 < argc)
			v = argv[++i];
		else if (strncmp(argv[i], "--aud=", 6) == 0)
			v = argv[i] + 6;
		if (v == NULL)
			continue;
		if (n_aud >= MAX_AUD)
			too_many_aud = true;
		else
			auds[n_aud++] = v;
	}
}

int
tool_jwt(int argc, char **argv)
{
	collect_aud(argc, argv);
	return tool_dispatch("jwt", tool_jwt_cmds, argc, argv);
}

static int
jwt_mint(struct tool_ctx *c)
{
	const char *ids = tool_opt(c, "spiffe-id"), *ttls = tool_opt(c, "ttl");
	const char *algs = tool_opt(c, "alg");
	cubeid_spiffe_reason why = CUBEID_SPIFFE_OK;
	cubeid_sig_alg alg = CUBEID_SIG_NONE;
	cubeid_spiffe_id *id = NULL;
	cubeid_jwt_keys *k = NULL;
	cubeid_token *tok = NULL;
	int64_t ttl = CUBEID_JWT_SVID_TTL_DEFAULT;
	char *token = NULL, *jti = NULL;
	uint8_t rnd[16];
	int r, rc;

	if (ids == NULL || n_aud == 0)
		return tool_usage_error(c, "--spiffe-id and --aud are required");
	if (too_many_aud)
		return tool_usage_error(c, "at most %d --aud", MAX_AUD);
	if (ttls != NULL && cubeid_duration_parse(ttls, &ttl) != CUBEID_OK)
		return tool_usage_error(c, "bad duration '%s' (e.g. 30s, 5m, 1h)", ttls);
	if (algs != NULL && (alg = cubeid_jws_alg_from_name(algs)) == CUBEID_SIG_NONE)
		return tool_usage_error(c, "unknown alg '%s' (ES256, ES384, RS256, PS256...)",
		                        algs);
	if (cubeid_spiffe_id_parse(ids, strlen(ids), &id, &why) != CUBEID_OK)
		return tool_usage_error(c, "'%s' is not a SPIFFE ID: %s", ids,
		                        cubeid_spiffe_reason_str(why));
	if (tool_flag(c, "jti")) {
		if (RAND_bytes(rnd, sizeof(rnd)) != 1 ||
		    (jti = tool_hex(rnd, sizeof(rnd))) == NULL) {
			rc = tool_fail(CUBEID_ERR_CRYPTO, "cannot make a jti");
			goto out;
		}
	}
	if ((r = cubeid_jwt_keys_load(c->state_dir, &k)) != CUBEID_OK) {
		rc = tool_fail(r, "no JWT keys in %s ('cubeid ca init' or 'cubeid ca jwt-rotate')",
		               c->state_dir);
		goto out;
	}
	if (ttl > cubeid_jwt_keys_max_ttl(k)) {
		rc = tool_usage_error(c, "--ttl %s is longer than the state's max_ttl (%lld s)",
		                      ttls, (long long)cubeid_jwt_keys_max_ttl(k));
		goto out;
	}
	if ((r = tool_token_open(c, true, NULL, &tok)) != CUBEID_OK) {
		rc = tool_exit_code(r);
		goto out;
	}
	if ((r = cubeid_jwt_keys_mint(k, tok, 0, alg, id, auds, n_aud, ttl, jti, &token)) !=
	    CUBEID_OK) {
		rc = tool_fail(r, "cannot mint a JWT-SVID for %s", ids);
		goto out;
	}
	printf("%s\n", token);
	rc = fflush(stdout) == 0 ? TOOL_EXIT_OK : TOOL_EXIT_FAILURE;
out:
	free(token);
	free(jti);
	cubeid_jwt_keys_free(k);
	cubeid_token_free(tok);
	cubeid_spiffe_id_free(id);
	return rc;
}

/* The trust domain of the token's sub, read before any check (only to pick
 * the bundle's trust domain; validation checks it again). */
static int
token_td(const char *token, char **out)
{
	cubeid_jws *j = NULL;
	cubeid_spiffe_id *id = NULL;
	const char *s;
	int r;

	*out = NULL;
	if ((r = cubeid_jws_decode(token, strlen(token), &j)) != CUBEID_OK)
		return r;
	s = json_string_value(json_object_get(cubeid_jws_claims(j), "sub"));
	r = s == NULL ? CUBEID_ERR_JWT_CLAIM : cubeid_spiffe_id_parse(s, strlen(s), &id, NULL);
	if (r == CUBEID_OK && (*out = strdup(cubeid_spiffe_id_trust_domain(id))) == NULL)
		r = CUBEID_ERR_NOMEM;
	cubeid_spiffe_id_free(id);
	cubeid_jws_free(j);
	return r;
}

/* A JWT bundle from a JWKS or a SPIFFE bundle document. */
static int
read_jwt_bundle(const char *path, const char *td, cubeid_jwt_bundle **out)
{
	cubeid_spiffe_bundle *sb = NULL;
	cubeid_jwt_bundle *jb = NULL;
	char *buf = NULL;
	size_t len = 0, i;
	int r;

	*out = NULL;
	if ((r = tool_read_in(path, CUBEID_JWKS_MAX, &buf, &len)) != CUBEID_OK)
		return r;
	/* a SPIFFE bundle's jwt-svid keys; else the document as a JWKS */
	r = cubeid_spiffe_bundle_parse(td, buf, len, &sb);
	if (r == CUBEID_OK && cubeid_jwt_bundle_count(cubeid_spiffe_bundle_jwt(sb)) > 0) {
		const cubeid_jwt_bundle *src = cubeid_spiffe_bundle_jwt(sb);

		r = cubeid_jwt_bundle_new(td, &jb);
		for (i = 0; r == CUBEID_OK && i < cubeid_jwt_bundle_count(src); i++)
			r = cubeid_jwt_bundle_add(jb, cubeid_jwt_bundle_kid_at(src, i),
			                          cubeid_jwt_bundle_key_at(src, i));
	} else {
		r = cubeid_jwt_bundle_parse_jwks(td, buf, len, &jb);
	}
	if (r == CUBEID_OK) {
		*out = jb;
		jb = NULL;
	}
	cubeid_jwt_bundle_free(jb);
	cubeid_spiffe_bundle_free(sb);
	free(buf);
	return r;
}

static int
jwt_verify(struct tool_ctx *c)
{
	const char *aud = tool_opt(c, "aud"), *bundle_path = tool_opt(c, "bundle");
	const char *td_opt = tool_opt(c, "trust-domain"), *tfile = tool_opt(c, "token-file");
	const char *life = tool_opt(c, "max-lifetime");
	struct cubeid_jwt_svid_opts vo = {.leeway = 60};
	int64_t secs;
	cubeid_jwt_bundle *b = NULL;
	cubeid_jwt_keys *k = NULL;
	cubeid_spiffe_id *id = NULL;
	json_t *claims = NULL;
	char *token = NULL, *td = NULL, *dump = NULL, *nl;
	size_t len = 0;
	int r, rc;

	if (aud == NULL)
		return tool_usage_error(c, "--aud is required");
	if (life != NULL) {
		if (cubeid_duration_parse(life, &secs) != CUBEID_OK || secs < 1 || secs > UINT_MAX)
			return tool_usage_error(c, "bad --max-lifetime '%s' (e.g. 1h, 24h)", life);
		vo.max_lifetime = (unsigned)secs;
	}
	if ((c->argc == 1) == (tfile != NULL))
		return tool_usage_error(c, "give the token as the argument or with --token-file");
	if (tfile != NULL) {
		if ((r = tool_read_in(tfile, CUBEID_JWT_MAX + 2, &token, &len)) != CUBEID_OK)
			return tool_fail(r, "cannot read %s", tfile);
		if ((nl = strpbrk(token, "\r\n")) != NULL)
			*nl = '\0';
	} else if (strcmp(c->argv[0], "-") == 0) {
		if ((r = tool_read_in("-", CUBEID_JWT_MAX + 2, &token, &len)) != CUBEID_OK)
			return tool_fail(r, "cannot read the token from standard input");
		if ((nl = strpbrk(token, "\r\n")) != NULL)
			*nl = '\0';
	} else if ((token = strdup(c->argv[0])) == NULL) {
		return tool_fail(CUBEID_ERR_NOMEM, "token");
	}
	if (bundle_path == NULL) {
		if ((r = cubeid_jwt_keys_load(c->state_dir, &k)) != CUBEID_OK) {
			rc = tool_fail(r, "no JWT bundle in %s (give --bundle)", c->state_dir);
			goto out;
		}
		if (td_opt != NULL && strcmp(td_opt, cubeid_jwt_keys_trust_domain(k)) != 0) {
			rc = tool_usage_error(c, "the state is for trust domain %s, not %s",
			                      cubeid_jwt_keys_trust_domain(k), td_opt);
			goto out;
		}
		r = cubeid_jwt_keys_bundle(k, 0, &b);
	} else {
		if (td_opt != NULL)
			td = strdup(td_opt);
		else if ((r = token_td(token, &td)) != CUBEID_OK) {
			tool_err("rejected: cannot read the token's subject: %s",
			         cubeid_strerror(r));
			rc = TOOL_EXIT_REJECTED;
			goto out;
		}
		if (td == NULL || cubeid_trust_domain_validate(td, strlen(td), NULL) != CUBEID_OK) {
			rc = tool_usage_error(c, "bad trust domain");
			goto out;
		}
		r = read_jwt_bundle(bundle_path, td, &b);
	}
	if (r != CUBEID_OK) {
		rc = tool_fail(r, "cannot read the JWT bundle %s", bundle_path ? bundle_path : "");
		goto out;
	}
	if ((r = cubeid_jwt_svid_validate_opts(token, strlen(token), b, aud, &vo, &id, &claims)) !=
	    CUBEID_OK) {
		tool_err("rejected: %s", cubeid_strerror(r));
		rc = TOOL_EXIT_REJECTED;
		goto out;
	}
	if (c->json) {
		rc = tool_print_json(json_pack("{s:s s:O}", "spiffe_id",
		                               cubeid_spiffe_id_string(id), "claims", claims));
		goto out;
	}
	if ((dump = json_dumps(claims, JSON_COMPACT | JSON_SORT_KEYS)) == NULL) {
		rc = tool_fail(CUBEID_ERR_NOMEM, "claims");
		goto out;
	}
	printf("%s\n%s\n", cubeid_spiffe_id_string(id), dump);
	rc = fflush(stdout) == 0 ? TOOL_EXIT_OK : TOOL_EXIT_FAILURE;
out:
	free(dump);
	json_decref(claims);
	cubeid_spiffe_id_free(id);
	cubeid_jwt_bundle_free(b);
	cubeid_jwt_keys_free(k);
	free(token);
	free(td);
	return rc;
}
