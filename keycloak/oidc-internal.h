/*
 * keycloak/: what the files share (not installed).
 */
#ifndef CUBEID_OIDC_INTERNAL_H
#define CUBEID_OIDC_INTERNAL_H

#include <stddef.h>

/* One HTTP reply: the status and the body (NUL-terminated, caller frees). */
struct oidc_http_reply {
	long status;
	char *body;
	size_t len;
};

/*
 * GET url (http or https only, no redirects), or POST form (an
 * application/x-www-form-urlencoded body) when form is not NULL.  A body
 * larger than max is CUBEID_ERR_TOO_LARGE; a transfer failure
 * CUBEID_ERR_HTTP.  Any status is returned in r (the caller decides).
 */
int oidc_http(const char *url, const char *form, size_t max, long timeout_ms,
              struct oidc_http_reply *r);
void oidc_http_reply_clear(struct oidc_http_reply *r);

/* Append "&name=value" (URL-encoded; no '&' for the first) to *form. */
int oidc_form_add(char **form, const char *name, const char *value);

/* True for an http:// or https:// URL with a host. */
int oidc_url_ok(const char *s);

/* The current time in seconds since the epoch. */
long long oidc_now(void);

#endif
