/*
 * The endpoint policy table: (method, path pattern) -> required role, and
 * the 401 / 403 decision for one request.
 */
#include "config.h"

#include "keycloak/oidc-internal.h"

#include <cubeid/oidc.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define FIELD_MAX 512

struct rule {
	char *method;  /* "GET" ... or "*" */
	char *pattern; /* e.g. "/v1/sandboxes/<star>" */
	char *role;    /* "" for '-' */
};

struct cubeid_oidc_policy {
	struct rule *rules;
	size_t n;
};

void
cubeid_oidc_policy_free(cubeid_oidc_policy *p)
{
	size_t i;

	if (p == NULL)
		return;
	for (i = 0; i < p->n; i++) {
		free(p->rules[i].method);
		free(p->rules[i].pattern);
		free(p->rules[i].role);
	}
	free(p->rules);
	free(p);
}

size_t
cubeid_oidc_policy_count(const cubeid_oidc_policy *p)
{
	return p ? p->n : 0;
}

static bool
method_ok(const char *s)
{
	if (strcmp(s, "*") == 0)
		return true;
	for (; *s; s++)
		if (*s < 'A' || *s > 'Z')
			return false;
	return true;
}

/* A pattern: '/' then segments of printable, non-space characters; '**'
 * only as the whole last segment; '*' only as a whole segment. */
static bool
pattern_ok(const char *s)
{
	const char *seg;

	if (s[0] != '/')
		return false;
	for (seg = s + 1;;) {
		const char *end = strchr(seg, '/');
		size_t n = end ? (size_t)(end - seg) : strlen(seg), i;

		for (i = 0; i < n; i++)
			if ((unsigned char)seg[i] <= ' ' || (unsigned char)seg[i] >= 0x7f ||
			    (seg[i] == '*' && !(n == 1 || (n == 2 && end == NULL))))
				return false;
		if (n == 2 && seg[0] == '*' && end != NULL)
			return false;
		if (end == NULL)
			return true;
		seg = end + 1;
	}
}

static bool
role_ok(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s <= ' ' || (unsigned char)*s >= 0x7f)
			return false;
	return true;
}

int
cubeid_oidc_policy_parse(const char *text, size_t len, cubeid_oidc_policy **out, size_t *line)
{
	cubeid_oidc_policy *p;
	size_t pos = 0, ln = 0;
	int r = CUBEID_OK;

	*out = NULL;
	if (line != NULL)
		*line = 0;
	if (text == NULL)
		return CUBEID_ERR_INVALID_ARG;
	if (len > CUBEID_OIDC_POLICY_MAX)
		return CUBEID_ERR_TOO_LARGE;
	if ((p = calloc(1, sizeof(*p))) == NULL)
		return CUBEID_ERR_NOMEM;
	while (pos < len) {
		char buf[3 * FIELD_MAX + 8], f[4][FIELD_MAX + 1], *hash;
		size_t e = pos, n;
		int nf = 0;
		struct rule *nr;
		char *save = NULL, *tok;

		ln++;
		while (e < len && text[e] != '\n')
			e++;
		n = e - pos;
		if (n >= sizeof(buf) || memchr(text + pos, '\0', n) != NULL) {
			r = CUBEID_ERR_PARSE;
			goto out;
		}
		memcpy(buf, text + pos, n);
		buf[n] = '\0';
		pos = e + 1;
		if ((hash = strchr(buf, '#')) != NULL)
			*hash = '\0';
		for (tok = strtok_r(buf, " \t\r", &save); tok != NULL;
		     tok = strtok_r(NULL, " \t\r", &save)) {
			if (nf >= 4 || strlen(tok) > FIELD_MAX) {
				r = CUBEID_ERR_PARSE;
				goto out;
			}
			strcpy(f[nf++], tok);
		}
		if (nf == 0)
			continue;
		if (nf != 3 || !method_ok(f[0]) || !pattern_ok(f[1]) || !role_ok(f[2])) {
			r = CUBEID_ERR_PARSE;
			goto out;
		}
		if (p->n >= CUBEID_OIDC_POLICY_RULES) {
			r = CUBEID_ERR_TOO_LARGE;
			goto out;
		}
		if ((nr = realloc(p->rules, (p->n + 1) * sizeof(*nr))) == NULL) {
			r = CUBEID_ERR_NOMEM;
			goto out;
		}
		p->rules = nr;
		nr = &p->rules[p->n];
		nr->method = strdup(f[0]);
		nr->pattern = strdup(f[1]);
		nr->role = strdup(strcmp(f[2], "-") == 0 ? "" : f[2]);
		p->n++;
		if (nr->method == NULL || nr->pattern == NULL || nr->role == NULL) {
			r = CUBEID_ERR_NOMEM;
			goto out;
		}
	}
out:
	if (r != CUBEID_OK) {
		if (line != NULL)
			*line = ln;
		cubeid_oidc_policy_free(p);
		return r;
	}
	*out = p;
	return CUBEID_OK;
}

/* Does path (query already cut) match pattern? */
static bool
path_match(const char *pat, const char *path)
{
	if (*path != '/')
		return false;
	pat++;
	path++;
	for (;;) {
		const char *pe = strchr(pat, '/'), *qe = strchr(path, '/');
		size_t pn = pe ? (size_t)(pe - pat) : strlen(pat);
		size_t qn = qe ? (size_t)(qe - path) : strlen(path);

		if (pe == NULL && pn == 2 && pat[0] == '*' && pat[1] == '*')
			return true; /* the rest, even nothing */
		if (pn == 1 && pat[0] == '*') {
			if (qn == 0)
				return false;
		} else if (pn != qn || memcmp(pat, path, pn) != 0) {
			return false;
		}
		if (pe == NULL || qe == NULL) {
			/* a final "**" also matches the bare prefix */
			if (pe != NULL && qe == NULL && strcmp(pe + 1, "**") == 0)
				return true;
			return pe == NULL && qe == NULL;
		}
		pat = pe + 1;
		path = qe + 1;
	}
}

const char *
cubeid_oidc_policy_lookup(const cubeid_oidc_policy *p, const char *method, const char *path)
{
	char buf[4096];
	size_t i, n;

	if (p == NULL || method == NULL || path == NULL)
		return NULL;
	n = strcspn(path, "?#");
	if (n >= sizeof(buf))
		return NULL;
	memcpy(buf, path, n);
	buf[n] = '\0';
	for (i = 0; i < p->n; i++) {
		const struct rule *r = &p->rules[i];

		if (strcmp(r->method, "*") != 0 && strcmp(r->method, method) != 0)
			continue;
		if (path_match(r->pattern, buf))
			return r->role;
	}
	return NULL;
}

void
cubeid_oidc_decision_clear(struct cubeid_oidc_decision *d)
{
	if (d == NULL)
		return;
	free(d->www_authenticate);
	cubeid_oidc_claims_free(d->claims);
	memset(d, 0, sizeof(*d));
}

/* RFC 6750 section 3 quoted-string content: no '"' or '\\' or controls. */
static void
clean_quoted(char *s)
{
	for (; *s; s++)
		if (*s == '"' || *s == '\\' || (unsigned char)*s < ' ' || (unsigned char)*s >= 0x7f)
			*s = '\'';
}

static int
set_www(struct cubeid_oidc_decision *d, const char *realm, const char *error, const char *desc)
{
	char r[256], e[256];
	int n;

	snprintf(r, sizeof(r), "%s", realm ? realm : "cubeid");
	clean_quoted(r);
	if (error == NULL)
		n = asprintf(&d->www_authenticate, "Bearer realm=\"%s\"", r);
	else {
		snprintf(e, sizeof(e), "%s", desc);
		clean_quoted(e);
		n = asprintf(&d->www_authenticate,
		             "Bearer realm=\"%s\", error=\"%s\", error_description=\"%s\"", r,
		             error, e);
	}
	if (n < 0) {
		d->www_authenticate = NULL;
		return CUBEID_ERR_NOMEM;
	}
	return CUBEID_OK;
}

int
cubeid_oidc_authorize(cubeid_oidc_verifier *v, const cubeid_oidc_policy *p, const char *realm_name,
                      const char *method, const char *path, const char *authorization, int64_t now,
                      struct cubeid_oidc_decision *d)
{
	const char *tok, *role;
	int r;

	if (d == NULL)
		return CUBEID_ERR_INVALID_ARG;
	memset(d, 0, sizeof(*d));
	if (v == NULL || p == NULL || method == NULL || path == NULL)
		return CUBEID_ERR_INVALID_ARG;
	if (authorization == NULL || strncasecmp(authorization, "Bearer ", 7) != 0) {
		d->status = 401;
		d->reason = CUBEID_ERR_UNAUTHENTICATED;
		return set_www(d, realm_name, NULL, NULL);
	}
	tok = authorization + 7;
	while (*tok == ' ')
		tok++;
	r = cubeid_oidc_verify(v, tok, strlen(tok), now, &d->claims);
	if (r != CUBEID_OK) {
		d->status = 401;
		d->reason = r;
		return set_www(d, realm_name, "invalid_token", cubeid_strerror(r));
	}
	role = cubeid_oidc_policy_lookup(p, method, path);
	if (role == NULL || (role[0] != '\0' && !cubeid_oidc_claims_has_role(d->claims, role))) {
		char desc[300];

		snprintf(desc, sizeof(desc), role ? "the role %s is required" : "no rule allows %s",
		         role ? role : method);
		d->status = 403;
		d->reason = CUBEID_ERR_FORBIDDEN;
		return set_www(d, realm_name, "insufficient_scope", desc);
	}
	d->status = 200;
	d->reason = CUBEID_OK;
	return CUBEID_OK;
}
