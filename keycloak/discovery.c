/*
 * The Keycloak realm issuer URL and OIDC discovery documents.
 */
#include "config.h"

#include "keycloak/oidc-internal.h"

#include <cubeid/oidc.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int
cubeid_oidc_keycloak_issuer(const char *base_url, const char *realm, char **out)
{
	size_t bl, i, rl;
	char *s;

	*out = NULL;
	if (base_url == NULL || realm == NULL || !oidc_url_ok(base_url))
		return CUBEID_ERR_INVALID_ARG;
	rl = strlen(realm);
	if (rl == 0 || rl > 255 || realm[0] == '.')
		return CUBEID_ERR_INVALID_ARG;
	for (i = 0; i < rl; i++) {
		char ch = realm[i];
		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		      (ch >= '0' && ch <= '9') || ch == '-' || ch == '_' || ch == '.'))
			return CUBEID_ERR_INVALID_ARG;
	}
	bl = strlen(base_url);
	while (bl > 0 && base_url[bl - 1] == '/')
		bl--;
	if ((s = malloc(bl + sizeof("/realms/") + rl)) == NULL)
		return CUBEID_ERR_NOMEM;
	memcpy(s, base_url, bl);
	memcpy(s + bl, "/realms/", 8);
	memcpy(s + bl + 8, realm, rl + 1);
	*out = s;
	return CUBEID_OK;
}

void
cubeid_oidc_discovery_free(cubeid_oidc_discovery *d)
{
	if (d == NULL)
		return;
	free(d->issuer);
	free(d->jwks_uri);
	free(d->token_endpoint);
	free(d);
}

static int
url_member(json_t *o, const char *name, char **out)
{
	const char *s = json_string_value(json_object_get(o, name));

	if (s == NULL || strlen(s) > 2048 || !oidc_url_ok(s))
		return CUBEID_ERR_PARSE;
	return (*out = strdup(s)) == NULL ? CUBEID_ERR_NOMEM : CUBEID_OK;
}

int
cubeid_oidc_discovery_parse(const char *json, size_t len, const char *expected_issuer,
                            cubeid_oidc_discovery **out)
{
	cubeid_oidc_discovery *d = NULL;
	json_error_t e;
	json_t *o = NULL;
	int r;

	*out = NULL;
	if (json == NULL)
		return CUBEID_ERR_INVALID_ARG;
	if (len > CUBEID_OIDC_DISCOVERY_MAX)
		return CUBEID_ERR_TOO_LARGE;
	o = json_loadb(json, len, JSON_REJECT_DUPLICATES, &e);
	if (o == NULL || !json_is_object(o)) {
		r = CUBEID_ERR_PARSE;
		goto out;
	}
	if ((d = calloc(1, sizeof(*d))) == NULL) {
		r = CUBEID_ERR_NOMEM;
		goto out;
	}
	if ((r = url_member(o, "issuer", &d->issuer)) != CUBEID_OK ||
	    (r = url_member(o, "jwks_uri", &d->jwks_uri)) != CUBEID_OK ||
	    (r = url_member(o, "token_endpoint", &d->token_endpoint)) != CUBEID_OK)
		goto out;
	if (expected_issuer != NULL && strcmp(d->issuer, expected_issuer) != 0) {
		r = CUBEID_ERR_JWT_ISSUER;
		goto out;
	}
	*out = d;
	d = NULL;
	r = CUBEID_OK;
out:
	cubeid_oidc_discovery_free(d);
	json_decref(o);
	return r;
}

int
cubeid_oidc_discover(const char *issuer, cubeid_oidc_discovery **out)
{
	struct oidc_http_reply rep;
	size_t il;
	char *url;
	int r;

	*out = NULL;
	if (issuer == NULL || !oidc_url_ok(issuer))
		return CUBEID_ERR_INVALID_ARG;
	il = strlen(issuer);
	while (il > 0 && issuer[il - 1] == '/')
		il--;
	if ((url = malloc(il + sizeof("/.well-known/openid-configuration"))) == NULL)
		return CUBEID_ERR_NOMEM;
	memcpy(url, issuer, il);
	strcpy(url + il, "/.well-known/openid-configuration");
	r = oidc_http(url, NULL, CUBEID_OIDC_DISCOVERY_MAX, 0, &rep);
	free(url);
	if (r != CUBEID_OK)
		return r;
	if (rep.status != 200)
		r = CUBEID_ERR_HTTP_STATUS;
	else
		r = cubeid_oidc_discovery_parse(rep.body, rep.len, issuer, out);
	oidc_http_reply_clear(&rep);
	return r;
}
