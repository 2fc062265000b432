/*
 * The one libcurl wrapper (common/http-fetch.h).
 */
#include "config.h"

#include "common/http-fetch.h"

#include <cubeid/error.h>

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc = CURLE_FAILED_INIT;

static void
curl_init(void)
{
	curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

struct sink {
	char *p;
	size_t len, max;
	bool too_large;
	const struct http_req *q;
};

static size_t
on_stream(char *data, size_t size, size_t nmemb, void *arg)
{
	struct sink *s = arg;
	size_t n = size * nmemb;

	return s->q->on_data(data, n, s->q->on_data_arg) ? n : 0;
}

static int
on_progress(void *arg, curl_off_t dt, curl_off_t dn, curl_off_t ut, curl_off_t un)
{
	struct sink *s = arg;

	(void)dt;
	(void)dn;
	(void)ut;
	(void)un;
	return s->q->stop(s->q->on_data_arg) ? 1 : 0;
}

static size_t
on_body(char *data, size_t size, size_t nmemb, void *arg)
{
	struct sink *s = arg;
	size_t n = size * nmemb;
	char *np;

	if (n > s->max - s->len) {
		s->too_large = true;
		return 0; /* aborts the transfer */
	}
	if ((np = realloc(s->p, s->len + n + 1)) == NULL)
		return 0;
	s->p = np;
	memcpy(s->p + s->len, data, n);
	s->len += n;
	s->p[s->len] = '\0';
	return n;
}

int
http_fetch(const struct http_req *q, struct http_reply *r, const char **why)
{
	struct sink s = {.max = q->max, .q = q};
	struct curl_slist *hdr = NULL, *n;
	const char *const *hl;
	CURLcode cc;
	CURL *h;
	int rc = CUBEID_ERR_NOMEM;

	memset(r, 0, sizeof(*r));
	if (why != NULL)
		*why = NULL;
	pthread_once(&curl_once, curl_init);
	if (curl_init_rc != CURLE_OK || (h = curl_easy_init()) == NULL)
		return CUBEID_ERR_NOMEM;
	for (hl = q->headers; hl != NULL && *hl != NULL; hl++) {
		if ((n = curl_slist_append(hdr, *hl)) == NULL)
			goto out;
		hdr = n;
	}
	curl_easy_setopt(h, CURLOPT_URL, q->url);
#if LIBCURL_VERSION_NUM >= 0x075500
	curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, q->https_only ? "https" : "http,https");
#else
	curl_easy_setopt(h, CURLOPT_PROTOCOLS,
	                 q->https_only ? (long)CURLPROTO_HTTPS
	                               : (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
	if (q->method != NULL)
		curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, q->method);
	if (hdr != NULL)
		curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdr);
	if (q->ca_file != NULL)
		curl_easy_setopt(h, CURLOPT_CAINFO, q->ca_file);
	curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L);
	curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L);
	curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
	if (q->no_proxy)
		curl_easy_setopt(h, CURLOPT_NOPROXY, "*");
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	/* a stream (a watch) is long, but still connects within 10 s */
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS,
	                 q->on_data != NULL && q->timeout_ms > 10000 ? 10000L : q->timeout_ms);
	curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, q->timeout_ms);
	if (q->on_data != NULL) {
		curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_stream);
	} else {
		curl_easy_setopt(h, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)q->max);
		curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
	}
	curl_easy_setopt(h, CURLOPT_WRITEDATA, &s);
	if (q->stop != NULL) {
		curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_progress);
		curl_easy_setopt(h, CURLOPT_XFERINFODATA, &s);
		curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
	}
	if (q->user_agent != NULL)
		curl_easy_setopt(h, CURLOPT_USERAGENT, q->user_agent);
	if (q->http1)
		curl_easy_setopt(h, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
	if (q->body != NULL) {
		curl_easy_setopt(h, CURLOPT_POSTFIELDS, q->body);
		curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(q->body));
	}
	cc = curl_easy_perform(h);
	if (s.too_large || cc == CURLE_FILESIZE_EXCEEDED) {
		rc = CUBEID_ERR_TOO_LARGE;
		goto out;
	}
	curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &r->status);
	/* A stream that its reader ended has answered.  So has a server that
	 * sent an error status and then cut the exchange short: over HTTP/2 the
	 * Kubernetes API server answers a PATCH with a bad token at once and
	 * resets the stream, which libcurl reports as a partial transfer. */
	if (cc != CURLE_OK && !(q->on_data != NULL && cc == CURLE_WRITE_ERROR && r->status != 0) &&
	    !(r->status >= 300 &&
	      (cc == CURLE_PARTIAL_FILE || cc == CURLE_HTTP2 || cc == CURLE_HTTP2_STREAM ||
	       cc == CURLE_SEND_ERROR || cc == CURLE_RECV_ERROR))) {
		if (why != NULL)
			*why = curl_easy_strerror(cc);
		r->status = 0;
		rc = CUBEID_ERR_HTTP;
		goto out;
	}
	if (s.p == NULL && (s.p = calloc(1, 1)) == NULL) {
		r->status = 0;
		goto out;
	}
	r->body = s.p;
	r->len = s.len;
	s.p = NULL;
	rc = CUBEID_OK;
out:
	free(s.p);
	curl_slist_free_all(hdr);
	curl_easy_cleanup(h);
	return rc;
}

void
http_reply_clear(struct http_reply *r)
{
	if (r == NULL)
		return;
	free(r->body);
	memset(r, 0, sizeof(*r));
}
