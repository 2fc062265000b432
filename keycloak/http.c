/*
 * HTTP for the OIDC code: one libcurl easy handle per request, http and
 * https only, no redirects, a hard limit on the reply body.
 */
#include "config.h"

#include "keycloak/oidc-internal.h"

#include <cubeid/error.h>
#include <cubeid/log.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc = CURLE_FAILED_INIT;

static void
curl_init(void)
{
	curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

struct sink {
	char *buf;
	size_t len, max;
	int too_large;
};

static size_t
sink_write(char *p, size_t size, size_t n, void *ud)
{
	struct sink *s = ud;
	size_t add = size * n;
	char *nb;

	if (add > s->max - s->len) {
		s->too_large = 1;
		return 0;
	}
	if ((nb = realloc(s->buf, s->len + add + 1)) == NULL)
		return 0;
	s->buf = nb;
	memcpy(s->buf + s->len, p, add);
	s->len += add;
	s->buf[s->len] = '\0';
	return add;
}

int
oidc_http(const char *url, const char *form, size_t max, long timeout_ms, struct oidc_http_reply *r)
{
	struct sink s = {NULL, 0, max, 0};
	struct curl_slist *hdr = NULL;
	CURLcode cr;
	CURL *h;
	int rc = CUBEID_ERR_HTTP;

	memset(r, 0, sizeof(*r));
	if (url == NULL || !oidc_url_ok(url))
		return CUBEID_ERR_INVALID_ARG;
	pthread_once(&curl_once, curl_init);
	if (curl_init_rc != CURLE_OK || (h = curl_easy_init()) == NULL)
		return CUBEID_ERR_NOMEM;
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, timeout_ms > 0 ? timeout_ms : 10000L);
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, timeout_ms > 0 ? timeout_ms : 10000L);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, sink_write);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, &s);
	curl_easy_setopt(h, CURLOPT_USERAGENT, "cubeid/" PACKAGE_VERSION);
	if ((hdr = curl_slist_append(hdr, "Accept: application/json")) == NULL) {
		rc = CUBEID_ERR_NOMEM;
		goto out;
	}
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdr);
	if (form != NULL) {
		curl_easy_setopt(h, CURLOPT_POST, 1L);
		curl_easy_setopt(h, CURLOPT_POSTFIELDS, form);
		curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)strlen(form));
	}
	cr = curl_easy_perform(h);
	if (s.too_large) {
		cubeid_log(CUBEID_LOG_WARNING, "oidc: reply from %s is larger than %zu bytes", url,
		           max);
		rc = CUBEID_ERR_TOO_LARGE;
		goto out;
	}
	if (cr != CURLE_OK) {
		cubeid_log(CUBEID_LOG_WARNING, "oidc: %s %s: %s", form ? "POST" : "GET", url,
		           curl_easy_strerror(cr));
		rc = CUBEID_ERR_HTTP;
		goto out;
	}
	curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &r->status);
	if (s.buf == NULL && (s.buf = calloc(1, 1)) == NULL) {
		rc = CUBEID_ERR_NOMEM;
		goto out;
	}
	r->body = s.buf;
	r->len = s.len;
	s.buf = NULL;
	rc = CUBEID_OK;
out:
	free(s.buf);
	curl_slist_free_all(hdr);
	curl_easy_cleanup(h);
	return rc;
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
