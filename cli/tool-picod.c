/*
 * `cubeid picod ...`: PicoD tokens (AgentCube's JWT mode).  token,
 * public-key and rotate ask the agent on its socket (the
 * cubeid.picod.v1.PicoD service, <cubeid/picod.h>); verify checks a token
 * the way a PicoD with cubeid's verifier does, with no agent.
 */
#include "config.h"

#include "cli/tool-picod-key.h"
#include "cli/tool.h"

#include <cubeid/ca.h>
#include <cubeid/picod.h>
#include <cubeid/workloadapi.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

TOOL_GROUP_DECLARE(picod);

static int picod_token(struct tool_ctx *c);
static int picod_public_key(struct tool_ctx *c);
static int picod_rotate(struct tool_ctx *c);
static int picod_verify(struct tool_ctx *c);

static const struct tool_opt token_opts[] = {
        {"session", 0, "ID", "the session_id claim (required)"},
        {"sandbox", 0, "NAME", "the sandbox the token is for (required)"},
        {"namespace", 'n', "NS", "the sandbox's namespace (default: default)"},
        {"user-sub", 0, "S", "the user_sub claim"},
        {"user-email", 0, "E", "the user_email claim"},
        {"ttl", 0, "DURATION", "lifetime (default and most: the agent's, 5m)"},
        {"spiffe-id", 'i', "ID", "which identity of the caller signs (sub)"},
        TOOL_OUTPUT_OPT,
        TOOL_SOCKET_OPT,
        {0},
};
static const struct tool_opt pubkey_opts[] = {
        {"format", 'f', "FORMAT", "pem (the default: PICOD_AUTH_PUBLIC_KEY) or jwks"},
        {"out", 0, "FILE", "write to FILE instead of standard output ('-')"},
        TOOL_OUTPUT_OPT,
        TOOL_SOCKET_OPT,
        {0},
};
static const struct tool_opt rotate_opts[] = {
        {"type", 't', "TYPE", "key type: rsa-2048 (default, RS256), rsa-3072 or ec-p256 (ES256)"},
        {"prepublish", 0, "DURATION", "publish first, sign after this long (default 5m)"},
        {"now", 0, NULL, "sign with the new key at once"},
        TOOL_OUTPUT_OPT,
        TOOL_SOCKET_OPT,
        {0},
};
static const struct tool_opt verify_opts[] = {
        {"sandbox", 0, "NAME", "this sandbox: aud must be picod:NS/NAME (required)"},
        {"namespace", 'n', "NS", "this sandbox's namespace (default: default)"},
        {"session", 0, "ID", "session_id must be ID"},
        {"issuer", 0, "ISS", "iss must be ISS"},
        {"sub", 0, "ID", "sub must be ID (the Router's SPIFFE ID)"},
        {"public-key", 0, "FILE", "PKIX PEM key (default: $PICOD_AUTH_PUBLIC_KEY; '-': stdin)"},
        {"jwks", 0, "FILE", "a JWKS of PicoD keys instead of one PEM key"},
        {"header", 0, NULL, "the argument is an Authorization header value"},
        {"leeway", 0, "DURATION", "clock leeway for exp, iat and nbf (default 1m)"},
        TOOL_OUTPUT_OPT,
        {0},
};

const struct tool_cmd tool_picod_cmds[] = {
        {"token",
         "--session ID --sandbox NAME [--namespace NS] [--user-sub S --user-email E] [--ttl D] "
         "[--socket S]",
         "ask the agent for a PicoD token for a sandbox session and print it",
         "Calls cubeid.picod.v1.PicoD/MintToken on the agent's socket.  Only a caller\n"
         "whose registration entry has picod_signer: true gets one (the Router; in\n"
         "--dev mode the invoking user); others get PermissionDenied.  The token is\n"
         "RS256 (the key in the agent's token), with today's claims iss, iat, exp,\n"
         "session_id, user_sub and user_email, which an unchanged PicoD accepts, plus\n"
         "aud picod:NS/NAME, sub (the caller's SPIFFE ID) and jti, which bind it to\n"
         "one sandbox.  The agent reuses a token until half its lifetime has passed\n"
         "or its key rotated.  Send it as 'Authorization: Bearer TOKEN'.",
         token_opts, 0, picod_token},
        {"public-key", "[--format pem|jwks] [--out FILE] [-o text|json] [--socket S]",
         "print the PicoD signing key for PICOD_AUTH_PUBLIC_KEY",
         "Asks the agent (cubeid.picod.v1.PicoD/PublicKey): pem prints exactly the PKIX\n"
         "PEM of the key that signs now, the value of PicoD's PICOD_AUTH_PUBLIC_KEY;\n"
         "jwks prints every published PicoD key (the one signing and one waiting to\n"
         "sign after a rotation) for verifiers that take a JWKS.  The agent creates\n"
         "the key in its token on first use.  -o json: kid, alg and the pem or the\n"
         "jwks.",
         pubkey_opts, 0, picod_public_key},
        {"rotate", "[--type TYPE] [--prepublish DURATION | --now] [-o text|json] [--socket S]",
         "generate a new PicoD signing key in the agent's token",
         "The new key is published at once (public-key --format jwks) and signs\n"
         "after the prepublish delay, or at once with --now; the first token asked\n"
         "for after that is signed with it.  Today's PicoD knows one key only, so\n"
         "give sandboxes the new key (public-key) before it signs.  Root and the\n"
         "agent's own user only.  Prints the new kid and when it signs (RFC 3339).\n"
         "Exit status 7 when the agent refuses the rotation (a new key still waits\n"
         "to sign).",
         rotate_opts, 0, picod_rotate},
        {"verify", "TOKEN --sandbox NAME [--namespace NS] [--session ID] [--public-key FILE]",
         "check a PicoD token as a PicoD with cubeid's verifier does",
         "Checks the alg (RS256 or ES256), the signature with the PEM key (or a JWKS),\n"
         "exp and iat with a leeway, that aud is picod:NS/NAME (a token for another\n"
         "sandbox is refused) and, with --session, the session_id.  Prints the\n"
         "claims it read as JSON (also with -o text); exit status 7 with the reason\n"
         "when rejected.",
         verify_opts, 1, picod_verify},
        TOOL_PICOD_KEY_CMDS,
        {0},
};

int
tool_picod(int argc, char **argv)
{
	return tool_dispatch("picod", tool_picod_cmds, argc, argv);
}

static int
picod_token(struct tool_ctx *c)
{
	struct cubeid_picod_token_req r = {0};
	struct cubeid_picod_token *t = NULL;
	struct cubeid_wl_status st;
	struct cubeid_wl_opts o = {0};
	const char *ttls = tool_opt(c, "ttl");
	char *s;
	int rc;

	r.session_id = tool_opt(c, "session");
	r.sandbox = tool_opt(c, "sandbox");
	r.ns = tool_opt(c, "namespace");
	r.user_sub = tool_opt(c, "user-sub");
	r.user_email = tool_opt(c, "user-email");
	r.spiffe_id = tool_opt(c, "spiffe-id");
	if (r.session_id == NULL || r.sandbox == NULL)
		return tool_usage_error(c, "--session and --sandbox are required");
	if (!cubeid_picod_name_ok(r.sandbox))
		return tool_usage_error(c, "--sandbox '%s' is not a Kubernetes name", r.sandbox);
	if (r.ns != NULL && !cubeid_picod_namespace_ok(r.ns))
		return tool_usage_error(c, "--namespace '%s' is not a Kubernetes namespace", r.ns);
	if (ttls != NULL && (cubeid_duration_parse(ttls, &r.ttl) != CUBEID_OK || r.ttl < 1 ||
	                     r.ttl > CUBEID_PICOD_TTL_MAX))
		return tool_usage_error(c, "--ttl takes a duration of 1s to 5m");
	tool_wl_opts(c, &o);
	if ((rc = cubeid_picod_fetch_token(&o, &r, &t, &st)) != CUBEID_OK)
		return tool_rpc_fail(rc, "MintToken", &st);
	if (c->json) {
		s = NULL;
		json_t *j = json_pack("{ss ss ss ss ss sI sI sb}", "token", t->token, "kid", t->kid,
		                      "aud", t->aud, "jti", t->jti, "sub", t->spiffe_id, "iat",
		                      (json_int_t)t->iat, "exp", (json_int_t)t->exp, "cached",
		                      t->cached);
		if (j != NULL)
			s = json_dumps(j, JSON_COMPACT);
		json_decref(j);
		if (s == NULL) {
			cubeid_picod_token_free(t);
			return tool_fail(CUBEID_ERR_NOMEM, "json");
		}
		printf("%s\n", s);
		free(s);
	} else {
		if (c->verbose > 0)
			fprintf(stderr, "sub=%s aud=%s kid=%s exp=%lld%s\n", t->spiffe_id, t->aud,
			        t->kid, (long long)t->exp, t->cached ? " (cached)" : "");
		printf("%s\n", t->token);
	}
	cubeid_picod_token_free(t);
	return fflush(stdout) == 0 ? TOOL_EXIT_OK : TOOL_EXIT_FAILURE;
}

static int
picod_public_key(struct tool_ctx *c)
{
	const char *fmt = tool_opt(c, "format");
	struct cubeid_picod_pubkey *k = NULL;
	struct cubeid_wl_status st;
	struct cubeid_wl_opts o = {0};
	const char *data;
	char *jwks = NULL;
	int rc;

	if (fmt == NULL)
		fmt = "pem";
	if (strcmp(fmt, "pem") != 0 && strcmp(fmt, "jwks") != 0)
		return tool_usage_error(c, "--format is pem or jwks");
	tool_wl_opts(c, &o);
	if ((rc = cubeid_picod_fetch_public_key(&o, &k, &st)) != CUBEID_OK)
		return tool_rpc_fail(rc, "PublicKey", &st);
	if (c->json) {
		json_t *ks = strcmp(fmt, "pem") == 0 ? json_string(k->pem)
		                                     : json_loads(k->jwks, 0, NULL);
		json_t *doc = json_pack("{s:s s:s s:o?}", "kid", k->kid, "alg", k->alg, fmt, ks);
		char *s = doc != NULL ? json_dumps(doc, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;

		json_decref(doc);
		if (s == NULL) {
			cubeid_picod_pubkey_free(k);
			return tool_fail(CUBEID_ERR_NOMEM, "JSON output");
		}
		rc = asprintf(&jwks, "%s\n", s);
		free(s);
		if (rc < 0) {
			cubeid_picod_pubkey_free(k);
			return tool_fail(CUBEID_ERR_NOMEM, "JSON output");
		}
		data = jwks;
	} else if (strcmp(fmt, "pem") == 0) {
		data = k->pem;
	} else {
		if (asprintf(&jwks, "%s\n", k->jwks) < 0) {
			cubeid_picod_pubkey_free(k);
			return tool_fail(CUBEID_ERR_NOMEM, "jwks");
		}
		data = jwks;
	}
	rc = tool_write_out(tool_opt(c, "out"), data, strlen(data));
	if (c->verbose > 0)
		fprintf(stderr, "kid=%s alg=%s\n", k->kid, k->alg);
	free(jwks);
	cubeid_picod_pubkey_free(k);
	return rc == CUBEID_OK ? TOOL_EXIT_OK : tool_exit_code(rc);
}

static int
picod_rotate(struct tool_ctx *c)
{
	const char *type = tool_opt(c, "type"), *pre = tool_opt(c, "prepublish");
	char tbuf[TOOL_TIME_LEN];
	struct cubeid_wl_status st;
	struct cubeid_wl_opts o = {0};
	int64_t secs = 0, active = 0;
	char *kid = NULL;
	int rc;

	if (pre != NULL && tool_flag(c, "now"))
		return tool_usage_error(c, "--prepublish and --now exclude each other");
	if (pre != NULL && (cubeid_duration_parse(pre, &secs) != CUBEID_OK || secs < 1))
		return tool_usage_error(c, "bad duration '%s' (e.g. 5m, 1h)", pre);
	if (tool_flag(c, "now"))
		secs = -1;
	if (type != NULL && cubeid_key_type_from_name(type) == CUBEID_KEY_NONE)
		return tool_usage_error(c, "unknown key type '%s'", type);
	tool_wl_opts(c, &o);
	o.timeout_ms = 120000; /* RSA key generation on a slow token */
	if ((rc = cubeid_picod_rotate_key(&o, type, secs, &kid, &active, &st)) != CUBEID_OK) {
		rc = tool_rpc_fail(rc, "RotateKey", &st);
		/* InvalidArgument or FailedPrecondition: the agent's state
		 * refuses it, the command line was fine */
		return st.code == 3 || st.code == 9 ? TOOL_EXIT_REJECTED : rc;
	}
	if (c->json) {
		rc = tool_print_json(
		        json_pack("{s:s s:s}", "kid", kid, "active_from", tool_time(active, tbuf)));
		free(kid);
		return rc;
	}
	printf("%s %s\n", kid, tool_time(active, tbuf));
	free(kid);
	return fflush(stdout) == 0 ? TOOL_EXIT_OK : TOOL_EXIT_FAILURE;
}

static int
picod_verify(struct tool_ctx *c)
{
	struct cubeid_picod_verifier_opts vo = {0};
	struct cubeid_picod_verified *r = NULL;
	cubeid_picod_verifier *v = NULL;
	const char *pkfile = tool_opt(c, "public-key"), *jwksfile = tool_opt(c, "jwks");
	const char *lee = tool_opt(c, "leeway"), *env;
	int64_t secs;
	char *buf = NULL, *s = NULL;
	size_t len = 0;
	json_t *j;
	int rc;

	vo.sandbox = tool_opt(c, "sandbox");
	vo.ns = tool_opt(c, "namespace");
	vo.session_id = tool_opt(c, "session");
	vo.issuer = tool_opt(c, "issuer");
	vo.sub = tool_opt(c, "sub");
	vo.leeway = -1;
	if (vo.sandbox == NULL || c->argc != 1)
		return tool_usage_error(c, "TOKEN and --sandbox are required");
	if (pkfile != NULL && jwksfile != NULL)
		return tool_usage_error(c, "--public-key and --jwks exclude each other");
	if (lee != NULL) {
		if (cubeid_duration_parse(lee, &secs) != CUBEID_OK || secs > 3600)
			return tool_usage_error(c, "bad --leeway '%s'", lee);
		vo.leeway = (int)secs;
	}
	if ((rc = cubeid_picod_verifier_new(&vo, &v)) != CUBEID_OK)
		return tool_usage_error(c, "bad --sandbox, --namespace or --session");
	if (jwksfile != NULL) {
		/* the verifier a PicoD pod uses with the cluster's JWKS file */
		rc = cubeid_picod_verifier_set_jwks_file(v, jwksfile);
	} else if (pkfile != NULL) {
		if ((rc = tool_read_in(pkfile, CUBEID_JWKS_MAX, &buf, &len)) != CUBEID_OK) {
			rc = tool_fail(rc, "cannot read %s", pkfile);
			goto out;
		}
		rc = cubeid_picod_verifier_set_pem(v, buf, len);
	} else if ((env = getenv(CUBEID_PICOD_ENV_PUBLIC_KEY)) != NULL && env[0] != '\0') {
		rc = cubeid_picod_verifier_set_pem(v, env, strlen(env));
	} else {
		rc = tool_usage_error(c, "give --public-key, --jwks or $PICOD_AUTH_PUBLIC_KEY");
		goto out;
	}
	if (rc != CUBEID_OK) {
		rc = tool_fail(rc, "cannot use the verification key");
		goto out;
	}
	if (tool_flag(c, "header"))
		rc = cubeid_picod_verify_header(v, c->argv[0], 0, &r);
	else
		rc = cubeid_picod_verify_token(v, c->argv[0], strlen(c->argv[0]), 0, &r);
	if (rc != CUBEID_OK) {
		tool_err("rejected: %s", cubeid_strerror(rc));
		rc = TOOL_EXIT_REJECTED;
		goto out;
	}
	j = json_pack("{s:s? s:s? s:s? s:s? s:s? s:s? s:s? s:I s:I}", "sub", r->sub, "session_id",
	              r->session_id, "user_sub", r->user_sub, "user_email", r->user_email, "iss",
	              r->iss, "jti", r->jti, "kid", r->kid, "iat", (json_int_t)r->iat, "exp",
	              (json_int_t)r->exp);
	if (j != NULL)
		s = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
	json_decref(j);
	if (s == NULL) {
		rc = tool_fail(CUBEID_ERR_NOMEM, "claims");
		goto out;
	}
	printf("%s\n", s);
	rc = fflush(stdout) == 0 ? TOOL_EXIT_OK : TOOL_EXIT_FAILURE;
out:
	free(s);
	free(buf);
	cubeid_picod_verified_free(r);
	cubeid_picod_verifier_free(v);
	return rc;
}
