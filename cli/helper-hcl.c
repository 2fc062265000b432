/*
 * The HCL subset of spiffe-helper's configuration files (cli/helper.h),
 * parsed into a small tree: strings, numbers (their text), booleans, lists
 * and objects, with the line of every value.  Hard limits: 4 levels of
 * nesting, 256 items per list or object, 64 KiB per string.
 */
#include "config.h"

#include "cli/helper.h"

#include <cubeid/error.h>

#include <ctype.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEPTH_MAX  4
#define ITEMS_MAX  256
#define STRING_MAX (64 * 1024)

/* ------------------------------------------------------------ the tree */

void
hcl_free(struct hv *v)
{
	size_t i;

	free(v->s);
	if (v->type == HV_LIST)
		for (i = 0; i < v->n; i++)
			hcl_free(&v->items[i]);
	if (v->type == HV_OBJ)
		for (i = 0; i < v->n; i++) {
			free(v->kv[i].key);
			hcl_free(&v->kv[i].v);
		}
	free(v->items);
	free(v->kv);
	memset(v, 0, sizeof(*v));
}

/* ------------------------------------------------------------ parsing */

struct p {
	const char *s, *end;
	unsigned line;
	const char *name;
	char **err;
	int depth;
};

static int perr(struct p *p, unsigned line, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

static int
perr(struct p *p, unsigned line, const char *fmt, ...)
{
	char *m = NULL;
	va_list ap;

	if (p->err == NULL || *p->err != NULL)
		return CUBEID_ERR_CONFIG;
	va_start(ap, fmt);
	if (vasprintf(&m, fmt, ap) < 0)
		m = NULL;
	va_end(ap);
	if (m == NULL || asprintf(p->err, "%s:%u: %s", p->name, line, m) < 0) {
		*p->err = NULL;
		free(m);
		return CUBEID_ERR_NOMEM;
	}
	free(m);
	return CUBEID_ERR_CONFIG;
}

/* Skip blanks and comments; newlines too when nl. */
static int
skip(struct p *p, bool nl)
{
	while (p->s < p->end) {
		char c = *p->s;

		if (c == ' ' || c == '\t' || c == '\r') {
			p->s++;
		} else if (c == '\n') {
			if (!nl)
				return CUBEID_OK;
			p->line++;
			p->s++;
		} else if (c == '#' || (c == '/' && p->s + 1 < p->end && p->s[1] == '/')) {
			while (p->s < p->end && *p->s != '\n')
				p->s++;
		} else if (c == '/' && p->s + 1 < p->end && p->s[1] == '*') {
			unsigned start = p->line;
			for (p->s += 2;; p->s++) {
				if (p->s + 1 >= p->end)
					return perr(p, start, "a /* comment is not closed");
				if (*p->s == '\n')
					p->line++;
				if (p->s[0] == '*' && p->s[1] == '/') {
					p->s += 2;
					break;
				}
			}
		} else {
			return CUBEID_OK;
		}
	}
	return CUBEID_OK;
}

static bool
ident_char(char c, bool first)
{
	return isalpha((unsigned char)c) || c == '_' ||
	       (!first && (isdigit((unsigned char)c) || c == '-' || c == '.'));
}

static int
put_utf8(char *out, size_t *n, unsigned long cp)
{
	if (cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff) || cp == 0)
		return -1;
	if (cp < 0x80) {
		out[(*n)++] = (char)cp;
	} else if (cp < 0x800) {
		out[(*n)++] = (char)(0xc0 | (cp >> 6));
		out[(*n)++] = (char)(0x80 | (cp & 0x3f));
	} else if (cp < 0x10000) {
		out[(*n)++] = (char)(0xe0 | (cp >> 12));
		out[(*n)++] = (char)(0x80 | ((cp >> 6) & 0x3f));
		out[(*n)++] = (char)(0x80 | (cp & 0x3f));
	} else {
		out[(*n)++] = (char)(0xf0 | (cp >> 18));
		out[(*n)++] = (char)(0x80 | ((cp >> 12) & 0x3f));
		out[(*n)++] = (char)(0x80 | ((cp >> 6) & 0x3f));
		out[(*n)++] = (char)(0x80 | (cp & 0x3f));
	}
	return 0;
}

/* A "double-quoted string" at p->s. */
static int
parse_string(struct p *p, char **out)
{
	const char *q;
	char *buf;
	size_t n = 0, max;
	unsigned line = p->line;

	*out = NULL;
	p->s++; /* the quote */
	for (q = p->s; q < p->end && *q != '"' && *q != '\n'; q++)
		if (*q == '\\' && q + 1 < p->end && q[1] != '\n')
			q++;
	if (q >= p->end || *q != '"')
		return perr(p, line, "a string is not closed on its line");
	max = (size_t)(q - p->s);
	if (max > STRING_MAX)
		return perr(p, line, "a string longer than %d bytes", STRING_MAX);
	if ((buf = malloc(max + 1)) == NULL)
		return CUBEID_ERR_NOMEM;
	while (p->s < q) {
		char c = *p->s++;
		unsigned long cp = 0;
		int k, digits;

		if (c == '\0') {
			free(buf);
			return perr(p, line, "a NUL byte in a string");
		}
		if (c != '\\') {
			buf[n++] = c;
			continue;
		}
		c = *p->s++;
		switch (c) {
		case 'n':
			buf[n++] = '\n';
			break;
		case 't':
			buf[n++] = '\t';
			break;
		case 'r':
			buf[n++] = '\r';
			break;
		case '"':
		case '\\':
			buf[n++] = c;
			break;
		case 'u':
		case 'U':
			digits = c == 'u' ? 4 : 8;
			for (k = 0; k < digits; k++) {
				if (p->s >= q || !isxdigit((unsigned char)*p->s)) {
					free(buf);
					return perr(p, line, "a bad \\%c escape in a string", c);
				}
				cp = cp * 16 +
				     (unsigned long)(isdigit((unsigned char)*p->s)
				                             ? *p->s - '0'
				                             : tolower((unsigned char)*p->s) - 'a' +
				                                       10);
				p->s++;
			}
			/* \uXXXX takes at most 3 bytes of UTF-8 for its 6 of text,
			 * \UXXXXXXXX at most 4 for 10: the buffer is large enough */
			if (put_utf8(buf, &n, cp) != 0) {
				free(buf);
				return perr(p, line, "a \\%c escape that is not a character", c);
			}
			break;
		default:
			free(buf);
			return perr(p, line, "an unknown escape '\\%c' in a string",
			            isprint((unsigned char)c) ? c : '?');
		}
	}
	p->s = q + 1;
	buf[n] = '\0';
	*out = buf;
	return CUBEID_OK;
}

static int parse_value(struct p *p, struct hv *v);
static int parse_object_body(struct p *p, struct hv *v, char close);

static int
parse_key(struct p *p, char **key)
{
	const char *k = p->s;

	*key = NULL;
	if (p->s < p->end && *p->s == '"')
		return parse_string(p, key);
	if (p->s >= p->end || !ident_char(*p->s, true))
		return perr(p, p->line, "expected a key, found %s",
		            p->s >= p->end ? "the end of the file" : "something else");
	while (p->s < p->end && ident_char(*p->s, false))
		p->s++;
	if ((*key = strndup(k, (size_t)(p->s - k))) == NULL)
		return CUBEID_ERR_NOMEM;
	return CUBEID_OK;
}

static int
parse_list(struct p *p, struct hv *v)
{
	unsigned line = p->line;
	int rc;

	v->type = HV_LIST;
	p->s++; /* [ */
	for (;;) {
		struct hv *ni;

		if ((rc = skip(p, true)) != CUBEID_OK)
			return rc;
		if (p->s >= p->end)
			return perr(p, line, "a list '[' is not closed");
		if (*p->s == ']') {
			p->s++;
			return CUBEID_OK;
		}
		if (v->n >= ITEMS_MAX)
			return perr(p, p->line, "more than %d items in a list", ITEMS_MAX);
		if ((ni = realloc(v->items, (v->n + 1) * sizeof(*ni))) == NULL)
			return CUBEID_ERR_NOMEM;
		v->items = ni;
		memset(&v->items[v->n], 0, sizeof(*ni));
		if ((rc = parse_value(p, &v->items[v->n++])) != CUBEID_OK)
			return rc;
		if ((rc = skip(p, true)) != CUBEID_OK)
			return rc;
		if (p->s < p->end && *p->s == ',')
			p->s++;
		else if (p->s < p->end && *p->s != ']')
			return perr(p, p->line, "expected ',' or ']' in a list");
	}
}

static int
parse_number(struct p *p, struct hv *v)
{
	const char *st = p->s;

	v->type = HV_NUM;
	if (p->s < p->end && (*p->s == '-' || *p->s == '+'))
		p->s++;
	while (p->s < p->end &&
	       (isalnum((unsigned char)*p->s) || *p->s == '.' || *p->s == '_' ||
	        ((*p->s == '-' || *p->s == '+') && (p->s[-1] == 'e' || p->s[-1] == 'E'))))
		p->s++;
	if ((v->s = strndup(st, (size_t)(p->s - st))) == NULL)
		return CUBEID_ERR_NOMEM;
	return CUBEID_OK;
}

static int
parse_value(struct p *p, struct hv *v)
{
	int rc;

	v->line = p->line;
	if (p->s >= p->end)
		return perr(p, p->line, "expected a value, found the end of the file");
	if (++p->depth > DEPTH_MAX)
		return perr(p, p->line, "values nested more than %d deep", DEPTH_MAX);
	switch (*p->s) {
	case '"':
		v->type = HV_STR;
		rc = parse_string(p, &v->s);
		break;
	case '[':
		rc = parse_list(p, v);
		break;
	case '{':
		p->s++;
		rc = parse_object_body(p, v, '}');
		break;
	case '<':
		rc = perr(p, p->line, "heredoc strings (<<) are not supported; use \"...\"");
		break;
	default:
		if (isdigit((unsigned char)*p->s) || *p->s == '-' || *p->s == '+' || *p->s == '.') {
			rc = parse_number(p, v);
		} else if (p->end - p->s >= 4 && strncmp(p->s, "true", 4) == 0 &&
		           (p->end - p->s == 4 || !ident_char(p->s[4], false))) {
			v->type = HV_BOOL;
			v->b = true;
			p->s += 4;
			rc = CUBEID_OK;
		} else if (p->end - p->s >= 5 && strncmp(p->s, "false", 5) == 0 &&
		           (p->end - p->s == 5 || !ident_char(p->s[5], false))) {
			v->type = HV_BOOL;
			p->s += 5;
			rc = CUBEID_OK;
		} else {
			rc = perr(p, p->line,
			          "expected a value (\"string\", number, true, false, [list] or "
			          "{object})");
		}
	}
	p->depth--;
	return rc;
}

/* key = value | key { ... } items until close ('}' or '\0' for the file). */
static int
parse_object_body(struct p *p, struct hv *v, char close)
{
	unsigned line = p->line;
	int rc;

	v->type = HV_OBJ;
	for (;;) {
		struct hkv *nkv, *kv;

		if ((rc = skip(p, true)) != CUBEID_OK)
			return rc;
		if (p->s >= p->end) {
			if (close == '\0')
				return CUBEID_OK;
			return perr(p, line, "an object '{' is not closed");
		}
		if (close != '\0' && *p->s == close) {
			p->s++;
			return CUBEID_OK;
		}
		if (v->n >= ITEMS_MAX)
			return perr(p, p->line, "more than %d keys in an object", ITEMS_MAX);
		if ((nkv = realloc(v->kv, (v->n + 1) * sizeof(*nkv))) == NULL)
			return CUBEID_ERR_NOMEM;
		v->kv = nkv;
		kv = &v->kv[v->n++];
		memset(kv, 0, sizeof(*kv));
		kv->line = p->line;
		if ((rc = parse_key(p, &kv->key)) != CUBEID_OK)
			return rc;
		if ((rc = skip(p, false)) != CUBEID_OK)
			return rc;
		if (p->s < p->end && *p->s == '=') {
			p->s++;
			if ((rc = skip(p, true)) != CUBEID_OK)
				return rc;
			if ((rc = parse_value(p, &kv->v)) != CUBEID_OK)
				return rc;
		} else if (p->s < p->end && *p->s == '{') {
			/* a block: key { ... } */
			if (++p->depth > DEPTH_MAX)
				return perr(p, p->line, "values nested more than %d deep",
				            DEPTH_MAX);
			kv->v.line = p->line;
			p->s++;
			rc = parse_object_body(p, &kv->v, '}');
			p->depth--;
			if (rc != CUBEID_OK)
				return rc;
		} else {
			return perr(p, kv->line, "expected '=' after '%s'", kv->key);
		}
		/* then a comma, a newline, a comment or the end */
		if ((rc = skip(p, false)) != CUBEID_OK)
			return rc;
		if (p->s < p->end && *p->s == ',') {
			p->s++;
		} else if (p->s < p->end && *p->s != '\n' && *p->s != close) {
			return perr(p, p->line, "unexpected text after the value of '%s'", kv->key);
		}
	}
}

int
hcl_error(char **err, const char *name, unsigned line, const char *fmt, ...)
{
	struct p p = {.name = name, .err = err};
	char *s = NULL;
	va_list ap;
	int rc;

	va_start(ap, fmt);
	if (vasprintf(&s, fmt, ap) < 0)
		s = NULL;
	va_end(ap);
	if (s == NULL)
		return CUBEID_ERR_NOMEM;
	rc = perr(&p, line, "%s", s);
	free(s);
	return rc;
}

int
hcl_parse(const char *buf, size_t len, const char *name, struct hv *root, char **err)
{
	struct p p = {buf, buf + len, 1, name, err, 0};

	memset(root, 0, sizeof(*root));
	if (len >= 3 && memcmp(buf, "\xef\xbb\xbf", 3) == 0)
		p.s += 3; /* a UTF-8 byte order mark */
	return parse_object_body(&p, root, '\0');
}
