/*
 * HTTP for the OIDC code, over the one libcurl wrapper (common/http-fetch.h):
 * http and https only, no redirects, a hard limit on the reply body.
 */
#include "config.h"

#include "keycloak/oidc-internal.h"
#include "common/http-fetch.h"

#include <cubeid/error.h>
#include <cubeid/log.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>

int
oidc_http(const char *url, const char *form, size_t max, long timeout_ms, struct oidc_http_reply *r)
{
	static const char *const hdrs[] = {"Accept: application/json", NULL};
	struct http_req q = {.url = url,
	                     .headers = hdrs,
	                     .body = form,
	                     .max = max,
	                     .timeout_ms = timeout_ms > 0 ? timeout_ms : 10000L,
	                     .user_agent = "cubeid/" PACKAGE_VERSION};
	struct http_reply hr;
	const char *why;
	int rc;

	memset(r, 0, sizeof(*r));
	if (url == NULL || !oidc_url_ok(url))
		return CUBEID_ERR_INVALID_ARG;
	rc = http_fetch(&q, &hr, &why);
	if (rc == CUBEID_ERR_TOO_LARGE)
		cubeid_log(CUBEID_LOG_WARNING, "oidc: reply from %s is larger than %zu bytes", url,
		           max);
	else if (rc == CUBEID_ERR_HTTP)
		cubeid_log(CUBEID_LOG_WARNING, "oidc: %s %s: %s", form ? "POST" : "GET", url, why);
	if (rc != CUBEID_OK)
		return rc;
	r->status = hr.status;
	r->body = hr.body;
	r->len = hr.len;
	return CUBEID_OK;
}

void
oidc_http_reply_clear(struct oidc_http_reply *r)
{
	if (r == NULL)
		return;
	free(r->body);
	memset(r, 0, sizeof(*r));
}

int
oidc_form_add(char **form, const char *name, const char *value)
{
	char *ev, *nf;
	size_t old = *form ? strlen(*form) : 0, need;

	if ((ev = curl_easy_escape(NULL, value, 0)) == NULL)
		return CUBEID_ERR_NOMEM;
	need = old + 1 + strlen(name) + 1 + strlen(ev) + 1;
	if ((nf = realloc(*form, need)) == NULL) {
		curl_free(ev);
		return CUBEID_ERR_NOMEM;
	}
	snprintf(nf + old, need - old, "%s%s=%s", old ? "&" : "", name, ev);
	*form = nf;
	curl_free(ev);
	return CUBEID_OK;
}

int
oidc_url_ok(const char *s)
{
	const char *host;

	if (strncmp(s, "https://", 8) == 0)
		host = s + 8;
	else if (strncmp(s, "http://", 7) == 0)
		host = s + 7;
	else
		return 0;
	if (*host == '\0' || *host == '/')
		return 0;
	for (; *s; s++)
		if ((unsigned char)*s <= ' ' || *s == 0x7f)
			return 0;
	return 1;
}

long long
oidc_now(void)
{
	return (long long)time(NULL);
}
