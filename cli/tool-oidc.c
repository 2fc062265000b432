/*
 * `cubeid oidc ...`: tokens from Keycloak without shared secrets
 * (private_key_jwt signed in the token, the jwt-spiffe JWT-SVID assertion, or
 * a client secret read from a file), RFC 8693 token exchange, and
 * verification of Keycloak access tokens against the realm's JWKS.
 */
#include "config.h"

#include "cli/tool.h"

#include <cubeid/ca.h>
#include <cubeid/jwt-keys.h>
#include <cubeid/oidc.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

TOOL_GROUP_DECLARE(oidc);

#define ENV_KEYCLOAK_URL   "CUBEID_KEYCLOAK_URL"
#define ENV_KEYCLOAK_REALM "CUBEID_KEYCLOAK_REALM"
#define DEFAULT_REALM      "agentcube"
#define SPIFFE_TTL         240 /* under Keycloak's 300 s limit, with room for skew */

static int oidc_token(struct tool_ctx *c);
static int oidc_exchange(struct tool_ctx *c);
static int oidc_verify(struct tool_ctx *c);
static int oidc_jwks(struct tool_ctx *c);
static int oidc_owner_hash(struct tool_ctx *c);

#define REALM_OPTS                                                                                 \
	{"keycloak-url", 'u', "URL", "Keycloak's base URL (default $" ENV_KEYCLOAK_URL ")"},       \
	{                                                                                          \
		"keycloak-realm", 'r', "REALM",                                                    \
		        "the realm (default $" ENV_KEYCLOAK_REALM ", else " DEFAULT_REALM ")"      \
	}
#define CLIENT_OPTS                                                                                \
	{"client", 'c', "ID", "the client ID (required)"},                                         \
	        {"assertion", 0, "KIND",                                                           \
	         "spiffe or private-key-jwt: authenticate with a JWT signed in the token"},        \
	        {"secret-file", 0, "FILE",                                                         \
	         "authenticate with the client secret in FILE (mode 0600)"},                       \
	{                                                                                          \
		"spiffe-id", 'i', "ID", "the JWT-SVID's subject (with --assertion spiffe)"         \
	}

static const struct tool_opt token_opts[] = {
        CLIENT_OPTS,
        REALM_OPTS,
        {0},
};
static const struct tool_opt exchange_opts[] = {
        {"subject-token", 0, "TOKEN", "the access token to exchange (required; '-': stdin)"},
        {"aud", 'a', "AUD", "the client the new token is for (workloadmanager, picod)"},
        {"requested-token-type", 0, "URN", "the token type to ask for (default: none sent)"},
        CLIENT_OPTS,
        REALM_OPTS,
        {0},
};
static const struct tool_opt verify_opts[] = {
        REALM_OPTS,
        {"aud", 'a', "AUD", "the audience the token must carry"},
        {"azp", 0, "CLIENT", "the authorized party (azp) the token must name"},
        {"role", 0, "ROLE", "a role the token must carry (exit 6 without it)"},
        {"client-roles", 0, "CLIENT", "also read resource_access.CLIENT.roles"},
        {0},
};
static const struct tool_opt jwks_opts[] = {
        {"out", 0, "FILE", "write to FILE (replaced atomically) instead of stdout ('-')"},
        {0},
};

const struct tool_cmd tool_oidc_cmds[] = {
        {"token",
         "--client ID [--assertion spiffe|private-key-jwt | --secret-file F] [-u URL] [-r REALM]",
         "get an access token with client_credentials and print it",
         "Authenticates as client ID at the realm's token endpoint (found by OIDC\n"
         "discovery) and prints the access token.  No shared secret is needed:\n"
         "--assertion private-key-jwt signs an RFC 7523 client assertion with the\n"
         "trust domain's active JWT key in the token (Keycloak fetches the public key\n"
         "from the agent's JWKS endpoint, see 'cubeid oidc jwks'); --assertion spiffe\n"
         "sends a JWT-SVID for --spiffe-id with aud the realm issuer and a 240 s\n"
         "lifetime (Keycloak's jwt-spiffe client authentication, a preview feature).\n"
         "--secret-file reads a client secret from a file that only its owner can\n"
         "read.  Exit status 1 with Keycloak's OAuth error when it refuses.",
         token_opts, 0, oidc_token},
        {"exchange", "--subject-token T --aud A --client ID [auth options] [-u URL] [-r REALM]",
         "exchange an access token for one scoped to another audience (RFC 8693)",
         "Sends grant_type token-exchange with subject_token T of type access_token\n"
         "and audience A, authenticated as client ID (options as for 'oidc token'),\n"
         "and prints the new access token, which goes on as Authorization: Bearer.\n"
         "Exit status 1 with Keycloak's OAuth error (invalid_request,\n"
         "access_denied, ...) when the exchange is refused.",
         exchange_opts, 0, oidc_exchange},
        {"verify", "TOKEN [-r REALM] [-u URL] [--aud AUD] [--azp C] [--role ROLE]",
         "verify a realm's access token and print its subject, roles and claims",
         "Fetches the realm's JWKS (OIDC discovery) and checks the signature (RS256,\n"
         "ES256, PS256 ...), iss, exp, nbf and iat (60 s leeway), and aud and azp when\n"
         "asked.  Prints 'sub: S', 'roles: R1 R2 ...' (realm_access.roles, composite\n"
         "roles expanded by Keycloak) and the claims as JSON.  Exit status 7 (HTTP\n"
         "401) when the token is invalid, 6 (HTTP 403) when --role is missing.",
         verify_opts, 1, oidc_verify},
        {"jwks", "[--out FILE]", "print the JWKS a Keycloak client with private_key_jwt fetches",
         "The trust domain's published JWT keys (STATE-DIR/jwt.conf) as a JWKS with\n"
         "use sig, kid and alg, for the client's jwks.url.  The SPIFFE bundle for\n"
         "jwt-spiffe is 'cubeid bundle show --format spiffe'.  Needs no token.",
         jwks_opts, 0, oidc_jwks},
        {"owner-hash", "SUB", "print the agentcube.io/owner-hash label value for an owner",
         "The first 63 hex characters of SHA-256(SUB), as AgentCube's WorkloadManager\n"
         "labels the sandboxes of the user SUB.",
         NULL, 1, oidc_owner_hash},
        {0},
};

int
tool_oidc(int argc, char **argv)
{
	return tool_dispatch("oidc", tool_oidc_cmds, argc, argv);
}

/* The realm issuer from the options and environment; caller frees. */
static int
issuer_of(struct tool_ctx *c, const char *realm_opt, char **out)
{
	const char *url = tool_opt(c, "keycloak-url"), *realm = realm_opt;
	int r;

	*out = NULL;
	if (realm == NULL)
		realm = tool_opt(c, "keycloak-realm");
	if (url == NULL)
		url = getenv(ENV_KEYCLOAK_URL);
	if (realm == NULL)
		realm = getenv(ENV_KEYCLOAK_REALM);
	if (realm == NULL)
		realm = DEFAULT_REALM;
	if (url == NULL)
		return tool_usage_error(c, "--keycloak-url (or $%s) is required", ENV_KEYCLOAK_URL);
	if ((r = cubeid_oidc_keycloak_issuer(url, realm, out)) != CUBEID_OK)
		return tool_usage_error(c, "bad Keycloak URL '%s' or realm '%s'", url, realm);
	return TOOL_EXIT_OK;
}

/* What an assertion callback needs: the signer in the token. */
struct signer {
	struct tool_ctx *c;
	cubeid_jwt_keys *keys;
	cubeid_token *tok;
	cubeid_key *key; /* private-key-jwt */
	struct cubeid_jwt_key_info info;
	const char *client_id;
	cubeid_spiffe_id *spiffe_id;
};

static int
assert_pkjwt(void *ctx, const char *aud, int64_t now, char **out)
{
	struct signer *s = ctx;

	return cubeid_oidc_private_key_jwt(
	        s->client_id, aud, cubeid_jwt_keys_default_alg(s->info.type), s->info.kid,
	        cubeid_jws_sign_key, s->key, now, CUBEID_OIDC_ASSERTION_TTL, out);
}

static int
assert_spiffe(void *ctx, const char *aud, int64_t now, char **out)
{
	struct signer *s = ctx;
	const char *auds[1] = {aud};

	return cubeid_jwt_keys_mint(s->keys, s->tok, now, CUBEID_SIG_NONE, s->spiffe_id, auds, 1,
	                            SPIFFE_TTL, NULL, out);
}

static void
signer_clear(struct signer *s)
{
	cubeid_key_free(s->key);
	cubeid_token_free(s->tok);
	cubeid_jwt_keys_free(s->keys);
	cubeid_spiffe_id_free(s->spiffe_id);
	memset(s, 0, sizeof(*s));
}

/* A client for the command's options; *s holds the signer it uses. */
static int
make_client(struct tool_ctx *c, const char *issuer, struct signer *s, cubeid_oidc_client **out)
{
	struct cubeid_oidc_client_opts o = {0};
	const char *id = tool_opt(c, "client"), *kind = tool_opt(c, "assertion");
	const char *sf = tool_opt(c, "secret-file"), *sid = tool_opt(c, "spiffe-id");
	cubeid_oidc_discovery *d = NULL;
	cubeid_spiffe_reason why;
	char *secret = NULL;
	int r, rc = TOOL_EXIT_FAILURE;

	*out = NULL;
	memset(s, 0, sizeof(*s));
	s->c = c;
	if (id == NULL)
		return tool_usage_error(c, "--client is required");
	if ((kind != NULL) == (sf != NULL))
		return tool_usage_error(c, "give one of --assertion and --secret-file");
	if (kind != NULL && strcmp(kind, "spiffe") != 0 && strcmp(kind, "private-key-jwt") != 0)
		return tool_usage_error(c, "--assertion is spiffe or private-key-jwt, not '%s'",
		                        kind);
	if (kind != NULL && strcmp(kind, "spiffe") == 0) {
		if (sid == NULL)
			return tool_usage_error(c, "--assertion spiffe needs --spiffe-id");
		if (cubeid_spiffe_id_parse(sid, strlen(sid), &s->spiffe_id, &why) != CUBEID_OK)
			return tool_usage_error(c, "'%s' is not a SPIFFE ID: %s", sid,
			                        cubeid_spiffe_reason_str(why));
	}
	if ((r = cubeid_oidc_discover(issuer, &d)) != CUBEID_OK) {
		rc = tool_fail(r, "OIDC discovery for %s failed", issuer);
		goto out;
	}
	o.token_endpoint = d->token_endpoint;
	o.issuer = issuer;
	o.client_id = id;
	s->client_id = id;
	if (sf != NULL) {
		if ((r = cubeid_oidc_read_secret_file(sf, &secret)) != CUBEID_OK) {
			rc = tool_fail(r, "cannot read the client secret from %s", sf);
			goto out;
		}
		o.method = CUBEID_OIDC_AUTH_SECRET;
		o.secret = secret;
	} else {
		if ((r = cubeid_jwt_keys_load(c->state_dir, &s->keys)) != CUBEID_OK) {
			rc = tool_fail(r, "no JWT keys in %s ('cubeid ca init')", c->state_dir);
			goto out;
		}
		if ((r = cubeid_jwt_keys_signer(s->keys, 0, &s->info)) != CUBEID_OK) {
			rc = tool_fail(r, "no active JWT key in %s", c->state_dir);
			goto out;
		}
		if ((r = tool_token_open(c, true, NULL, &s->tok)) != CUBEID_OK) {
			rc = tool_exit_code(r);
			goto out;
		}
		if (strcmp(kind, "spiffe") == 0) {
			o.method = CUBEID_OIDC_AUTH_SPIFFE;
			o.assertion = assert_spiffe;
		} else {
			if ((r = cubeid_key_find_uri(s->tok, s->info.uri, &s->key)) != CUBEID_OK) {
				rc = tool_fail(r, "the JWT key %s is not in the token",
				               s->info.kid);
				goto out;
			}
			o.method = CUBEID_OIDC_AUTH_PRIVATE_KEY_JWT;
			o.assertion = assert_pkjwt;
		}
		o.assertion_ctx = s;
	}
	if ((r = cubeid_oidc_client_new(&o, out)) != CUBEID_OK) {
		rc = tool_fail(r, "cannot set up the client");
		goto out;
	}
	rc = TOOL_EXIT_OK;
out:
	if (secret != NULL) {
		memset(secret, 0, strlen(secret));
		free(secret);
	}
	cubeid_oidc_discovery_free(d);
	if (rc != TOOL_EXIT_OK)
		signer_clear(s);
	return rc;
}

static int
oauth_fail(int r, const struct cubeid_oidc_token *t, const char *what)
{
	if (r == CUBEID_ERR_OAUTH)
		tool_err("%s refused (HTTP %ld): %s: %s", what, t->http_status,
		         t->error ? t->error : "?",
		         t->error_description ? t->error_description : "");
	else if (r == CUBEID_ERR_HTTP_STATUS)
		tool_err("%s failed: HTTP %ld", what, t->http_status);
	else
		tool_err("%s failed: %s", what, cubeid_strerror(r));
	return tool_exit_code(r);
}

static int
oidc_token(struct tool_ctx *c)
{
	struct cubeid_oidc_token err = {0};
	cubeid_oidc_client *cl = NULL;
	struct signer s;
	char *issuer = NULL, *tok = NULL;
	int r, rc;

	if ((rc = issuer_of(c, NULL, &issuer)) != TOOL_EXIT_OK)
		return rc;
	if ((rc = make_client(c, issuer, &s, &cl)) != TOOL_EXIT_OK)
		goto out;
	if ((r = cubeid_oidc_client_token(cl, 0, &tok, &err)) != CUBEID_OK) {
		rc = oauth_fail(r, &err, "the token request");
		goto out;
	}
	printf("%s\n", tok);
	rc = fflush(stdout) == 0 ? TOOL_EXIT_OK : TOOL_EXIT_FAILURE;
out:
	cubeid_oidc_token_clear(&err);
	free(tok);
	cubeid_oidc_client_free(cl);
	signer_clear(&s);
	free(issuer);
	return rc;
}

/* The token from the argument, or stdin for "-". */
static char *
read_token_arg(const char *v)
{
	char buf[CUBEID_JWT_MAX + 2];
	size_t n;

	if (strcmp(v, "-") != 0)
		return strdup(v);
	n = fread(buf, 1, sizeof(buf) - 1, stdin);
	buf[n] = '\0';
	buf[strcspn(buf, "\r\n")] = '\0';
	return strdup(buf);
}

static int
oidc_exchange(struct tool_ctx *c)
{
	struct cubeid_oidc_token t = {0};
	cubeid_oidc_client *cl = NULL;
	const char *st = tool_opt(c, "subject-token");
	struct signer s;
	char *issuer = NULL, *subject = NULL;
	int r, rc;

	memset(&s, 0, sizeof(s));
	if (st == NULL)
		return tool_usage_error(c, "--subject-token is required");
	if ((rc = issuer_of(c, NULL, &issuer)) != TOOL_EXIT_OK)
		return rc;
	if ((subject = read_token_arg(st)) == NULL) {
		rc = tool_fail(CUBEID_ERR_NOMEM, "reading the subject token");
		goto out;
	}
	if ((rc = make_client(c, issuer, &s, &cl)) != TOOL_EXIT_OK)
		goto out;
	r = cubeid_oidc_client_exchange(cl, subject, tool_opt(c, "aud"),
	                                tool_opt(c, "requested-token-type"), 0, &t);
	if (r != CUBEID_OK) {
		rc = oauth_fail(r, &t, "the token exchange");
		goto out;
	}
	printf("%s\n", t.access_token);
	rc = fflush(stdout) == 0 ? TOOL_EXIT_OK : TOOL_EXIT_FAILURE;
out:
	cubeid_oidc_token_clear(&t);
	cubeid_oidc_client_free(cl);
	signer_clear(&s);
	free(subject);
	free(issuer);
	return rc;
}

static int
oidc_verify(struct tool_ctx *c)
{
	struct cubeid_oidc_verifier_opts o = {0};
	cubeid_oidc_verifier *v = NULL;
	cubeid_oidc_claims *cl = NULL;
	const char *aud = tool_opt(c, "aud"), *role = tool_opt(c, "role");
	char *issuer = NULL, *token = NULL, *js = NULL;
	size_t i;
	int r, rc;

	if (c->argc != 1)
		return tool_usage_error(c, "one TOKEN is required ('-' reads it from stdin)");
	if ((rc = issuer_of(c, NULL, &issuer)) != TOOL_EXIT_OK)
		return rc;
	if ((token = read_token_arg(c->argv[0])) == NULL) {
		rc = tool_fail(CUBEID_ERR_NOMEM, "reading the token");
		goto out;
	}
	o.issuer = issuer;
	o.audiences = &aud;
	o.n_audiences = aud ? 1 : 0;
	o.azp = tool_opt(c, "azp");
	o.client_roles = tool_opt(c, "client-roles");
	if ((r = cubeid_oidc_verifier_new(&o, &v)) != CUBEID_OK) {
		rc = tool_fail(r, "cannot set up the verifier");
		goto out;
	}
	if ((r = cubeid_oidc_verify(v, token, strlen(token), 0, &cl)) != CUBEID_OK) {
		tool_err("401: the token is not valid for %s: %s", issuer, cubeid_strerror(r));
		rc = TOOL_EXIT_REJECTED;
		goto out;
	}
	printf("sub: %s\nroles:", cubeid_oidc_claims_sub(cl));
	for (i = 0; i < cubeid_oidc_claims_role_count(cl); i++)
		printf(" %s", cubeid_oidc_claims_role_at(cl, i));
	printf("\n");
	if ((js = json_dumps(cubeid_oidc_claims_json(cl), JSON_INDENT(2) | JSON_SORT_KEYS)) != NULL)
		printf("%s\n", js);
	if (role != NULL && !cubeid_oidc_claims_has_role(cl, role)) {
		tool_err("403: the token lacks the role %s", role);
		rc = TOOL_EXIT_FORBIDDEN;
		goto out;
	}
	rc = fflush(stdout) == 0 ? TOOL_EXIT_OK : TOOL_EXIT_FAILURE;
out:
	free(js);
	cubeid_oidc_claims_free(cl);
	cubeid_oidc_verifier_free(v);
	free(token);
	free(issuer);
	return rc;
}

static int
oidc_jwks(struct tool_ctx *c)
{
	cubeid_jwt_keys *k = NULL;
	cubeid_jwt_bundle *b = NULL;
	char *doc = NULL;
	size_t len = 0;
	int r, rc;

	if ((r = cubeid_jwt_keys_load(c->state_dir, &k)) != CUBEID_OK)
		return tool_fail(r, "no JWT keys in %s ('cubeid ca init')", c->state_dir);
	if ((r = cubeid_jwt_keys_bundle(k, 0, &b)) != CUBEID_OK ||
	    (r = cubeid_oidc_client_jwks(b, &doc, &len)) != CUBEID_OK) {
		rc = tool_fail(r, "cannot make the JWKS");
		goto out;
	}
	r = tool_write_out(tool_opt(c, "out"), doc, len);
	if (r == CUBEID_OK && tool_opt(c, "out") == NULL)
		r = fputc('\n', stdout) == EOF ? CUBEID_ERR_IO : CUBEID_OK;
	rc = tool_exit_code(r);
out:
	free(doc);
	cubeid_jwt_bundle_free(b);
	cubeid_jwt_keys_free(k);
	return rc;
}

static int
oidc_owner_hash(struct tool_ctx *c)
{
	char h[CUBEID_RLAC_HASH_LEN + 1];

	if (c->argc != 1 || cubeid_rlac_owner_hash(c->argv[0], h) != CUBEID_OK)
		return tool_usage_error(c, "one non-empty SUB is required");
	printf("%s\n", h);
	return fflush(stdout) == 0 ? TOOL_EXIT_OK : TOOL_EXIT_FAILURE;
}
