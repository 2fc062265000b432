/*
 * PicoD tokens: sandbox names, the audience that binds a token to one
 * sandbox, and the claims of a token (see <cubeid/picod.h>).
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include <cubeid/picod.h>

static bool
dns_label_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-';
}

static bool
alnum(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

/* A DNS-1123 label (dots == false) or subdomain (dots == true). */
static bool
dns_name_ok(const char *s, size_t max, bool dots)
{
	size_t i, n;

	if (s == NULL || (n = strlen(s)) == 0 || n > max)
		return false;
	for (i = 0; i < n; i++) {
		if (dots && s[i] == '.') {
			/* each label starts and ends alphanumeric */
			if (i == 0 || i + 1 == n || !alnum(s[i - 1]) || !alnum(s[i + 1]))
				return false;
			continue;
		}
		if (!dns_label_char(s[i]))
			return false;
	}
	return alnum(s[0]) && alnum(s[n - 1]);
}

bool
cubeid_picod_name_ok(const char *name)
{
	return dns_name_ok(name, 253, true);
}

bool
cubeid_picod_namespace_ok(const char *ns)
{
	return dns_name_ok(ns, 63, false);
}

int
cubeid_picod_audience(const char *ns, const char *sandbox, char **out)
{
	if (out == NULL)
		return CUBEID_ERR_INVALID_ARG;
	*out = NULL;
	if (ns == NULL || ns[0] == '\0')
		ns = CUBEID_PICOD_NAMESPACE_DEFAULT;
	if (!cubeid_picod_namespace_ok(ns) || !cubeid_picod_name_ok(sandbox))
		return CUBEID_ERR_INVALID_ARG;
	if (asprintf(out, CUBEID_PICOD_AUD_PREFIX "%s/%s", ns, sandbox) < 0) {
		*out = NULL;
		return CUBEID_ERR_NOMEM;
	}
	return CUBEID_OK;
}

/* A string claim value: valid UTF-8 (jansson checks), 1..max bytes. */
static bool
str_ok(const char *s, size_t max)
{
	size_t n;

	return s != NULL && (n = strlen(s)) > 0 && n <= max;
}

int
cubeid_picod_token_encode(const struct cubeid_picod_claims_in *in, cubeid_sig_alg alg,
                          const char *kid, cubeid_jws_sign_fn sign, void *ctx, char **out)
{
	const char *iss;
	json_t *c = NULL;
	int rc;

	if (out == NULL)
		return CUBEID_ERR_INVALID_ARG;
	*out = NULL;
	if (in == NULL || sign == NULL)
		return CUBEID_ERR_INVALID_ARG;
	iss = in->issuer != NULL ? in->issuer : CUBEID_PICOD_ISSUER_DEFAULT;
	if (!str_ok(iss, CUBEID_PICOD_USER_MAX) || !str_ok(in->sub, 2048) ||
	    !str_ok(in->aud, 512) || !str_ok(in->session_id, CUBEID_PICOD_SESSION_MAX) ||
	    !str_ok(in->jti, 128) || in->ttl < 1 || in->ttl > CUBEID_PICOD_TTL_MAX || in->iat <= 0)
		return CUBEID_ERR_INVALID_ARG;
	if ((in->user_sub != NULL && strlen(in->user_sub) > CUBEID_PICOD_USER_MAX) ||
	    (in->user_email != NULL && strlen(in->user_email) > CUBEID_PICOD_USER_MAX))
		return CUBEID_ERR_INVALID_ARG;
	/* today's claims first (AgentCube's Router: exp, iat, iss, session_id,
	 * user_sub, user_email), then the replay-safe ones */
	c = json_object();
	if (c == NULL)
		return CUBEID_ERR_NOMEM;
	rc = CUBEID_ERR_INVALID_ARG; /* json_string() refuses invalid UTF-8 */
	if (json_object_set_new(c, "iss", json_string(iss)) != 0 ||
	    json_object_set_new(c, "iat", json_integer(in->iat)) != 0 ||
	    json_object_set_new(c, "exp", json_integer(in->iat + in->ttl)) != 0 ||
	    json_object_set_new(c, "session_id", json_string(in->session_id)) != 0)
		goto out;
	if (in->user_sub != NULL && in->user_sub[0] != '\0' &&
	    json_object_set_new(c, "user_sub", json_string(in->user_sub)) != 0)
		goto out;
	if (in->user_email != NULL && in->user_email[0] != '\0' &&
	    json_object_set_new(c, "user_email", json_string(in->user_email)) != 0)
		goto out;
	if (json_object_set_new(c, "aud", json_string(in->aud)) != 0 ||
	    json_object_set_new(c, "sub", json_string(in->sub)) != 0 ||
	    json_object_set_new(c, "jti", json_string(in->jti)) != 0)
		goto out;
	rc = cubeid_jws_encode(alg, kid, "JWT", c, sign, ctx, out);
out:
	json_decref(c);
	return rc;
}
