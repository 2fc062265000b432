/*
 * SPIFFE ID parsing and validation (spiffe/spiffe standards/SPIFFE-ID.md,
 * sections 2.1 to 2.4).  See include/cubeid/spiffe.h for the rules.
 *
 * The parser is a single left-to-right scan with no allocation; the first
 * rule broken is the one reported.
 */
#include "config.h"

#include <cubeid/spiffe.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define SCHEME_LEN (sizeof(CUBEID_SPIFFE_SCHEME) - 1)

struct cubeid_spiffe_id {
	size_t len;    /* strlen(str) */
	size_t td_len; /* strlen(td) */
	char *str;     /* "spiffe://td/path", NUL-terminated */
	char *td;      /* "td", NUL-terminated copy */
	               /* str and td live in the same allocation, after the struct */
};

static const char *const reasons[] = {
        [CUBEID_SPIFFE_OK] = "valid",
        [CUBEID_SPIFFE_EMPTY] = "SPIFFE ID is empty",
        [CUBEID_SPIFFE_TOO_LONG] = "SPIFFE ID is longer than 2048 bytes",
        [CUBEID_SPIFFE_NUL] = "SPIFFE ID contains a NUL byte",
        [CUBEID_SPIFFE_BAD_SCHEME] = "scheme is missing or invalid (must be \"spiffe://\")",
        [CUBEID_SPIFFE_TD_MISSING] = "trust domain is missing",
        [CUBEID_SPIFFE_TD_TOO_LONG] = "trust domain is longer than 255 bytes",
        [CUBEID_SPIFFE_TD_CHAR] = "trust domain characters are limited to lowercase letters, "
                                  "numbers, dots, dashes, and underscores",
        [CUBEID_SPIFFE_TD_UPPERCASE] = "trust domain must be lowercase",
        [CUBEID_SPIFFE_USERINFO] = "trust domain must not contain userinfo",
        [CUBEID_SPIFFE_PORT] = "trust domain must not contain a port",
        [CUBEID_SPIFFE_PERCENT] = "SPIFFE ID must not contain percent-encoded characters",
        [CUBEID_SPIFFE_QUERY] = "SPIFFE ID must not contain a query",
        [CUBEID_SPIFFE_FRAGMENT] = "SPIFFE ID must not contain a fragment",
        [CUBEID_SPIFFE_EMPTY_SEGMENT] = "path cannot contain empty segments",
        [CUBEID_SPIFFE_DOT_SEGMENT] = "path cannot contain dot segments",
        [CUBEID_SPIFFE_TRAILING_SLASH] = "path cannot have a trailing slash",
        [CUBEID_SPIFFE_PATH_CHAR] = "path segment characters are limited to letters, numbers, "
                                    "dots, dashes, and underscores",
        [CUBEID_SPIFFE_PATH_NO_SLASH] = "path must be empty or start with a slash",
        [CUBEID_SPIFFE_K8S_NAME] = "not a valid Kubernetes namespace or service account name",
};

const char *
cubeid_spiffe_reason_str(cubeid_spiffe_reason reason)
{
	if ((unsigned)reason >= sizeof(reasons) / sizeof(reasons[0]) || reasons[reason] == NULL)
		return "unknown SPIFFE ID rule";
	return reasons[reason];
}

static int
fail(cubeid_spiffe_reason *why, cubeid_spiffe_reason r)
{
	if (why != NULL)
		*why = r;
	return r == CUBEID_SPIFFE_OK ? CUBEID_OK : CUBEID_ERR_SPIFFE_ID;
}

static inline int
is_td_char(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '-' || c == '_';
}

static inline int
is_path_char(unsigned char c)
{
	return is_td_char(c) || (c >= 'A' && c <= 'Z');
}

/* Authority a[0..n), already cut at the first '/', '?', '#' or the end. */
static cubeid_spiffe_reason
check_td(const char *a, size_t n)
{
	size_t i;

	if (n == 0)
		return CUBEID_SPIFFE_TD_MISSING;
	/* userinfo first: "user:pw@host" is userinfo, not a port */
	if (memchr(a, '@', n) != NULL)
		return CUBEID_SPIFFE_USERINFO;
	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)a[i];
		if (is_td_char(c))
			continue;
		if (c == ':')
			return CUBEID_SPIFFE_PORT;
		if (c == '%')
			return CUBEID_SPIFFE_PERCENT;
		if (c >= 'A' && c <= 'Z')
			return CUBEID_SPIFFE_TD_UPPERCASE;
		return CUBEID_SPIFFE_TD_CHAR;
	}
	if (n > CUBEID_TRUST_DOMAIN_MAX)
		return CUBEID_SPIFFE_TD_TOO_LONG;
	return CUBEID_SPIFFE_OK;
}

/* Path p[0..n): empty, or starting with '/'. */
static cubeid_spiffe_reason
check_path(const char *p, size_t n)
{
	size_t i, seg_start;

	if (n == 0)
		return CUBEID_SPIFFE_OK;
	if (p[0] == '?')
		return CUBEID_SPIFFE_QUERY;
	if (p[0] == '#')
		return CUBEID_SPIFFE_FRAGMENT;
	if (p[0] != '/')
		return CUBEID_SPIFFE_PATH_NO_SLASH;
	seg_start = 1;
	for (i = 1; i <= n; i++) {
		unsigned char c = i < n ? (unsigned char)p[i] : '/';
		size_t seg_len;

		if (c != '/') {
			if (is_path_char(c))
				continue;
			if (c == '?')
				return CUBEID_SPIFFE_QUERY;
			if (c == '#')
				return CUBEID_SPIFFE_FRAGMENT;
			if (c == '%')
				return CUBEID_SPIFFE_PERCENT;
			return CUBEID_SPIFFE_PATH_CHAR;
		}
		seg_len = i - seg_start;
		if (seg_len == 0)
			return i == n ? CUBEID_SPIFFE_TRAILING_SLASH : CUBEID_SPIFFE_EMPTY_SEGMENT;
		if ((seg_len == 1 && p[seg_start] == '.') ||
		    (seg_len == 2 && p[seg_start] == '.' && p[seg_start + 1] == '.'))
			return CUBEID_SPIFFE_DOT_SEGMENT;
		seg_start = i + 1;
	}
	return CUBEID_SPIFFE_OK;
}

/* Validate; on success the trust domain is s[SCHEME_LEN .. SCHEME_LEN+*td_len). */
static cubeid_spiffe_reason
check_id(const char *s, size_t len, size_t *td_len)
{
	size_t i;
	cubeid_spiffe_reason r;

	if (len == 0)
		return CUBEID_SPIFFE_EMPTY;
	if (len > CUBEID_SPIFFE_ID_MAX)
		return CUBEID_SPIFFE_TOO_LONG;
	if (memchr(s, '\0', len) != NULL)
		return CUBEID_SPIFFE_NUL;
	if (len < SCHEME_LEN || memcmp(s, CUBEID_SPIFFE_SCHEME, SCHEME_LEN) != 0)
		return CUBEID_SPIFFE_BAD_SCHEME;
	for (i = SCHEME_LEN; i < len; i++)
		if (s[i] == '/' || s[i] == '?' || s[i] == '#')
			break;
	r = check_td(s + SCHEME_LEN, i - SCHEME_LEN);
	if (r != CUBEID_SPIFFE_OK)
		return r;
	*td_len = i - SCHEME_LEN;
	return check_path(s + i, len - i);
}

int
cubeid_spiffe_id_validate(const char *s, size_t len, cubeid_spiffe_reason *why)
{
	size_t td_len;

	if (why != NULL)
		*why = CUBEID_SPIFFE_OK;
	if (s == NULL)
		return CUBEID_ERR_INVALID_ARG;
	return fail(why, check_id(s, len, &td_len));
}

int
cubeid_trust_domain_validate(const char *td, size_t len, cubeid_spiffe_reason *why)
{
	if (why != NULL)
		*why = CUBEID_SPIFFE_OK;
	if (td == NULL)
		return CUBEID_ERR_INVALID_ARG;
	if (memchr(td, '\0', len) != NULL)
		return fail(why, CUBEID_SPIFFE_NUL);
	/* a bare name: anything that would end the authority is a bad char */
	if (memchr(td, '/', len) != NULL)
		return fail(why, CUBEID_SPIFFE_TD_CHAR);
	if (memchr(td, '?', len) != NULL)
		return fail(why, CUBEID_SPIFFE_QUERY);
	if (memchr(td, '#', len) != NULL)
		return fail(why, CUBEID_SPIFFE_FRAGMENT);
	return fail(why, check_td(td, len));
}

int
cubeid_spiffe_path_validate(const char *path, size_t len, cubeid_spiffe_reason *why)
{
	if (why != NULL)
		*why = CUBEID_SPIFFE_OK;
	if (path == NULL)
		return CUBEID_ERR_INVALID_ARG;
	if (memchr(path, '\0', len) != NULL)
		return fail(why, CUBEID_SPIFFE_NUL);
	return fail(why, check_path(path, len));
}

/* Make an ID from a string already validated, td being s[9..9+td_len). */
static int
id_new(const char *s, size_t len, size_t td_len, cubeid_spiffe_id **out)
{
	cubeid_spiffe_id *id;
	char *buf;

	id = malloc(sizeof(*id) + len + 1 + td_len + 1);
	if (id == NULL)
		return CUBEID_ERR_NOMEM;
	buf = (char *)(id + 1);
	id->len = len;
	id->td_len = td_len;
	id->str = buf;
	memcpy(id->str, s, len);
	id->str[len] = '\0';
	id->td = buf + len + 1;
	memcpy(id->td, s + SCHEME_LEN, td_len);
	id->td[td_len] = '\0';
	*out = id;
	return CUBEID_OK;
}

int
cubeid_spiffe_id_parse(const char *s, size_t len, cubeid_spiffe_id **out, cubeid_spiffe_reason *why)
{
	size_t td_len = 0;
	cubeid_spiffe_reason r;

	if (why != NULL)
		*why = CUBEID_SPIFFE_OK;
	if (out == NULL)
		return CUBEID_ERR_INVALID_ARG;
	*out = NULL;
	if (s == NULL)
		return CUBEID_ERR_INVALID_ARG;
	r = check_id(s, len, &td_len);
	if (r != CUBEID_SPIFFE_OK)
		return fail(why, r);
	return id_new(s, len, td_len, out);
}

int
cubeid_spiffe_id_from_parts(const char *td, const char *path, cubeid_spiffe_id **out,
                            cubeid_spiffe_reason *why)
{
	char buf[CUBEID_SPIFFE_ID_MAX + 1];
	size_t td_len, path_len;
	int rc;

	if (why != NULL)
		*why = CUBEID_SPIFFE_OK;
	if (out == NULL)
		return CUBEID_ERR_INVALID_ARG;
	*out = NULL;
	if (td == NULL)
		return CUBEID_ERR_INVALID_ARG;
	if (path == NULL)
		path = "";
	td_len = strnlen(td, CUBEID_TRUST_DOMAIN_MAX + 1);
	rc = cubeid_trust_domain_validate(td, td_len, why);
	if (rc != CUBEID_OK)
		return rc;
	path_len = strnlen(path, CUBEID_SPIFFE_ID_MAX + 1);
	if (SCHEME_LEN + td_len + path_len > CUBEID_SPIFFE_ID_MAX)
		return fail(why, CUBEID_SPIFFE_TOO_LONG);
	rc = cubeid_spiffe_path_validate(path, path_len, why);
	if (rc != CUBEID_OK)
		return rc;
	memcpy(buf, CUBEID_SPIFFE_SCHEME, SCHEME_LEN);
	memcpy(buf + SCHEME_LEN, td, td_len);
	memcpy(buf + SCHEME_LEN + td_len, path, path_len);
	return id_new(buf, SCHEME_LEN + td_len + path_len, td_len, out);
}

/* RFC 1123 label: [a-z0-9]([-a-z0-9]*[a-z0-9])? */
static bool
is_dns_label(const char *s, size_t n)
{
	size_t i;

	if (n == 0 || n > 63)
		return false;
	for (i = 0; i < n; i++) {
		char c = s[i];
		bool alnum = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
		if (!alnum && !(c == '-' && i != 0 && i != n - 1))
			return false;
	}
	return true;
}

static bool
is_dns_subdomain(const char *s, size_t n)
{
	size_t start = 0, i;

	if (n == 0 || n > 253)
		return false;
	for (i = 0; i <= n; i++) {
		if (i < n && s[i] != '.')
			continue;
		if (!is_dns_label(s + start, i - start))
			return false;
		start = i + 1;
	}
	return true;
}

int
cubeid_spiffe_id_k8s(const char *td, const char *ns, const char *sa, cubeid_spiffe_id **out,
                     cubeid_spiffe_reason *why)
{
	char path[4 + 63 + 4 + 253 + 1];
	size_t ns_len, sa_len;

	if (why != NULL)
		*why = CUBEID_SPIFFE_OK;
	if (out == NULL)
		return CUBEID_ERR_INVALID_ARG;
	*out = NULL;
	if (td == NULL || ns == NULL || sa == NULL)
		return CUBEID_ERR_INVALID_ARG;
	ns_len = strnlen(ns, 64);
	sa_len = strnlen(sa, 254);
	if (!is_dns_label(ns, ns_len) || ns[ns_len] != '\0' || !is_dns_subdomain(sa, sa_len) ||
	    sa[sa_len] != '\0')
		return fail(why, CUBEID_SPIFFE_K8S_NAME);
	memcpy(path, "/ns/", 4);
	memcpy(path + 4, ns, ns_len);
	memcpy(path + 4 + ns_len, "/sa/", 4);
	memcpy(path + 8 + ns_len, sa, sa_len);
	path[8 + ns_len + sa_len] = '\0';
	return cubeid_spiffe_id_from_parts(td, path, out, why);
}

cubeid_spiffe_id *
cubeid_spiffe_id_dup(const cubeid_spiffe_id *id)
{
	cubeid_spiffe_id *copy = NULL;

	if (id == NULL)
		return NULL;
	if (id_new(id->str, id->len, id->td_len, &copy) != CUBEID_OK)
		return NULL;
	return copy;
}

void
cubeid_spiffe_id_free(cubeid_spiffe_id *id)
{
	free(id);
}

const char *
cubeid_spiffe_id_string(const cubeid_spiffe_id *id)
{
	return id != NULL ? id->str : NULL;
}

size_t
cubeid_spiffe_id_len(const cubeid_spiffe_id *id)
{
	return id != NULL ? id->len : 0;
}

const char *
cubeid_spiffe_id_trust_domain(const cubeid_spiffe_id *id)
{
	return id != NULL ? id->td : NULL;
}

const char *
cubeid_spiffe_id_path(const cubeid_spiffe_id *id)
{
	return id != NULL ? id->str + SCHEME_LEN + id->td_len : NULL;
}

bool
cubeid_spiffe_id_member_of(const cubeid_spiffe_id *id, const char *td)
{
	if (id == NULL || td == NULL)
		return false;
	return strcmp(id->td, td) == 0;
}

bool
cubeid_spiffe_id_equal(const cubeid_spiffe_id *a, const cubeid_spiffe_id *b)
{
	if (a == NULL || b == NULL)
		return false;
	return a->len == b->len && memcmp(a->str, b->str, a->len) == 0;
}

bool
cubeid_spiffe_id_is_trust_domain_id(const cubeid_spiffe_id *id)
{
	return id != NULL && id->len == SCHEME_LEN + id->td_len;
}
