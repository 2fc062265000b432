/*
 * spiffe-helper's configuration files (agent/helper.h): an HCL subset
 * parsed into a small tree, then mapped onto struct helper_config with
 * hashicorp/hcl v1's decoding rules (string keys take strings or numbers,
 * integer keys take numbers or strings parsed like Go's
 * strconv.ParseInt(s, 0, 0), booleans only true or false).
 */
#include "config.h"

#include "agent/agent.h"
#include "agent/helper.h"

#include <cubeid/error.h>

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEPTH_MAX  4
#define ITEMS_MAX  256
#define STRING_MAX (64 * 1024)

/* ------------------------------------------------------------ the tree */

enum hv_type { HV_STR, HV_NUM, HV_BOOL, HV_LIST, HV_OBJ };

struct hkv;
struct hv {
	enum hv_type type;
	unsigned line;
	char *s; /* HV_STR, HV_NUM (its text) */
	bool b;
	struct hv *items; /* HV_LIST */
	struct hkv *kv;   /* HV_OBJ */
	size_t n;
};
struct hkv {
	char *key;
	unsigned line;
	struct hv v;
};

static void
hv_clear(struct hv *v)
{
	size_t i;

	free(v->s);
	if (v->type == HV_LIST)
		for (i = 0; i < v->n; i++)
			hv_clear(&v->items[i]);
	if (v->type == HV_OBJ)
		for (i = 0; i < v->n; i++) {
			free(v->kv[i].key);
			hv_clear(&v->kv[i].v);
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

/* ------------------------------------------------------------ mapping */

struct m {
	const char *name;
	char **err;
};

static int merr(struct m *m, unsigned line, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

static int
merr(struct m *m, unsigned line, const char *fmt, ...)
{
	struct p p = {.name = m->name, .err = m->err};
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

static int
get_string(struct m *m, const struct hkv *kv, char **out)
{
	if (*out != NULL)
		return merr(m, kv->line, "duplicate key '%s'", kv->key);
	if (kv->v.type != HV_STR && kv->v.type != HV_NUM)
		return merr(m, kv->line, "'%s' must be a string", kv->key);
	if ((*out = strdup(kv->v.s)) == NULL)
		return CUBEID_ERR_NOMEM;
	return CUBEID_OK;
}

static int
get_bool(struct m *m, const struct hkv *kv, bool *out, bool *seen)
{
	if (*seen)
		return merr(m, kv->line, "duplicate key '%s'", kv->key);
	if (kv->v.type != HV_BOOL)
		return merr(m, kv->line, "'%s' must be true or false", kv->key);
	*out = kv->v.b;
	*seen = true;
	return CUBEID_OK;
}

/* Go's strconv.ParseInt(s, 0, 0): sign, then 0x/0o/0b prefixes or a
 * leading 0 for octal, underscores only after a prefix. */
static bool
parse_go_int(const char *s, long *out)
{
	bool neg = false, prefix = false;
	unsigned base = 10;
	unsigned long long v = 0;
	size_t digits = 0;

	if (*s == '+' || *s == '-')
		neg = *s++ == '-';
	if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X'))
		base = 16, s += 2, prefix = true;
	else if (s[0] == '0' && (s[1] == 'o' || s[1] == 'O'))
		base = 8, s += 2, prefix = true;
	else if (s[0] == '0' && (s[1] == 'b' || s[1] == 'B'))
		base = 2, s += 2, prefix = true;
	else if (s[0] == '0' && s[1] != '\0')
		base = 8, s += 1, prefix = true;
	for (; *s != '\0'; s++) {
		unsigned d;

		if (*s == '_' && prefix)
			continue;
		if (isdigit((unsigned char)*s))
			d = (unsigned)(*s - '0');
		else if (isxdigit((unsigned char)*s))
			d = (unsigned)(tolower((unsigned char)*s) - 'a' + 10);
		else
			return false;
		if (d >= base)
			return false;
		v = v * base + d;
		if (v > (unsigned long long)LONG_MAX)
			return false;
		digits++;
	}
	if (digits == 0 && !(base == 8 && prefix))
		return false;
	*out = neg ? -(long)v : (long)v;
	return true;
}

static int
get_int(struct m *m, const struct hkv *kv, long *out, bool *seen)
{
	if (*seen)
		return merr(m, kv->line, "duplicate key '%s'", kv->key);
	if ((kv->v.type != HV_NUM && kv->v.type != HV_STR) || !parse_go_int(kv->v.s, out))
		return merr(m, kv->line, "'%s' must be an integer (decimal, 0644 octal, 0x hex)",
		            kv->key);
	*seen = true;
	return CUBEID_OK;
}

static int
map_jwt(struct m *m, const struct hv *o, struct helper_jwt *j)
{
	size_t i, k;
	int rc;

	if (o->type != HV_OBJ)
		return merr(m, o->line,
		            "a jwt_svids item must be an object {jwt_audience = \"...\", "
		            "jwt_svid_file_name = \"...\"}");
	for (i = 0; i < o->n; i++) {
		const struct hkv *kv = &o->kv[i];

		if (strcmp(kv->key, "jwt_audience") == 0) {
			rc = get_string(m, kv, &j->audience);
		} else if (strcmp(kv->key, "jwt_svid_file_name") == 0) {
			rc = get_string(m, kv, &j->file);
		} else if (strcmp(kv->key, "jwt_extra_audiences") == 0) {
			if (j->extra != NULL)
				return merr(m, kv->line, "duplicate key '%s'", kv->key);
			if (kv->v.type != HV_LIST)
				return merr(m, kv->line, "'%s' must be a list of strings", kv->key);
			if ((j->extra = calloc(kv->v.n + 1, sizeof(*j->extra))) == NULL)
				return CUBEID_ERR_NOMEM;
			for (k = 0; k < kv->v.n; k++) {
				if (kv->v.items[k].type != HV_STR)
					return merr(m, kv->v.items[k].line,
					            "'%s' must be a list of strings", kv->key);
				if ((j->extra[j->n_extra++] = strdup(kv->v.items[k].s)) == NULL)
					return CUBEID_ERR_NOMEM;
			}
			rc = CUBEID_OK;
		} else {
			return merr(m, kv->line, "unknown key '%s' in jwt_svids", kv->key);
		}
		if (rc != CUBEID_OK)
			return rc;
	}
	return CUBEID_OK;
}

static int
add_jwts(struct m *m, struct helper_config *c, const struct hkv *kv)
{
	const struct hv *items = &kv->v;
	size_t n = kv->v.type == HV_LIST ? kv->v.n : 1, i;
	struct helper_jwt *nj;
	int rc;

	if (kv->v.type != HV_LIST && kv->v.type != HV_OBJ)
		return merr(m, kv->line, "'jwt_svids' must be a list of objects");
	if (c->n_jwt + n > HELPER_JWT_SVIDS_MAX)
		return merr(m, kv->line, "more than %d jwt_svids", HELPER_JWT_SVIDS_MAX);
	if (n == 0)
		return CUBEID_OK;
	if ((nj = realloc(c->jwt, (c->n_jwt + n) * sizeof(*nj))) == NULL)
		return CUBEID_ERR_NOMEM;
	c->jwt = nj;
	for (i = 0; i < n; i++) {
		memset(&c->jwt[c->n_jwt], 0, sizeof(*nj));
		c->n_jwt++;
		rc = map_jwt(m, kv->v.type == HV_LIST ? &items->items[i] : items,
		             &c->jwt[c->n_jwt - 1]);
		if (rc != CUBEID_OK)
			return rc;
	}
	return CUBEID_OK;
}

static int
map_health(struct m *m, struct helper_config *c, const struct hkv *kv)
{
	bool seen[2] = {false, false};
	size_t i;
	int rc;

	if (kv->v.type != HV_OBJ)
		return merr(m, kv->line, "'health_checks' must be an object");
	for (i = 0; i < kv->v.n; i++) {
		const struct hkv *h = &kv->v.kv[i];

		if (strcmp(h->key, "listener_enabled") == 0)
			rc = get_bool(m, h, &c->health_listener_enabled, &seen[0]);
		else if (strcmp(h->key, "bind_port") == 0)
			rc = get_int(m, h, &c->health_bind_port, &seen[1]);
		else if (strcmp(h->key, "liveness_path") == 0)
			rc = get_string(m, h, &c->health_liveness_path);
		else if (strcmp(h->key, "readiness_path") == 0)
			rc = get_string(m, h, &c->health_readiness_path);
		else
			return merr(m, h->line, "unknown key '%s' in health_checks", h->key);
		if (rc != CUBEID_OK)
			return rc;
	}
	return CUBEID_OK;
}

static int
map_config(struct m *m, const struct hv *root, struct helper_config *c)
{
	bool seen_daemon = false, b, seen[8] = {false};
	size_t i;
	int rc;

	for (i = 0; i < root->n; i++) {
		const struct hkv *kv = &root->kv[i];
		const char *k = kv->key;

		if (strcmp(k, "agent_address") == 0)
			rc = get_string(m, kv, &c->agent_address);
		else if (strcmp(k, "cert_dir") == 0)
			rc = get_string(m, kv, &c->cert_dir);
		else if (strcmp(k, "svid_file_name") == 0)
			rc = get_string(m, kv, &c->svid_file_name);
		else if (strcmp(k, "svid_key_file_name") == 0)
			rc = get_string(m, kv, &c->svid_key_file_name);
		else if (strcmp(k, "svid_bundle_file_name") == 0)
			rc = get_string(m, kv, &c->svid_bundle_file_name);
		else if (strcmp(k, "jwt_bundle_file_name") == 0)
			rc = get_string(m, kv, &c->jwt_bundle_file_name);
		else if (strcmp(k, "cmd") == 0)
			rc = get_string(m, kv, &c->cmd);
		else if (strcmp(k, "cmd_args") == 0)
			rc = get_string(m, kv, &c->cmd_args);
		else if (strcmp(k, "renew_signal") == 0)
			rc = get_string(m, kv, &c->renew_signal);
		else if (strcmp(k, "pid_file_name") == 0)
			rc = get_string(m, kv, &c->pid_file_name);
		else if (strcmp(k, "hint") == 0)
			rc = get_string(m, kv, &c->hint);
		else if (strcmp(k, "daemon_mode") == 0) {
			if ((rc = get_bool(m, kv, &b, &seen_daemon)) == CUBEID_OK)
				c->daemon_mode = b;
		} else if (strcmp(k, "cert_file_mode") == 0)
			rc = get_int(m, kv, &c->cert_file_mode, &seen[0]);
		else if (strcmp(k, "key_file_mode") == 0)
			rc = get_int(m, kv, &c->key_file_mode, &seen[1]);
		else if (strcmp(k, "jwt_bundle_file_mode") == 0)
			rc = get_int(m, kv, &c->jwt_bundle_file_mode, &seen[2]);
		else if (strcmp(k, "jwt_svid_file_mode") == 0)
			rc = get_int(m, kv, &c->jwt_svid_file_mode, &seen[3]);
		else if (strcmp(k, "add_intermediates_to_bundle") == 0)
			rc = get_bool(m, kv, &c->add_intermediates_to_bundle, &seen[4]);
		else if (strcmp(k, "include_federated_domains") == 0)
			rc = get_bool(m, kv, &c->include_federated_domains, &seen[5]);
		else if (strcmp(k, "omit_expired") == 0)
			rc = get_bool(m, kv, &c->omit_expired, &seen[6]);
		else if (strcmp(k, "jwt_svids") == 0)
			rc = add_jwts(m, c, kv);
		else if (strcmp(k, "health_checks") == 0) {
			if (seen[7])
				return merr(m, kv->line, "duplicate key '%s'", k);
			seen[7] = true;
			rc = map_health(m, c, kv);
		} else
			return merr(m, kv->line, "unknown key '%s'", k);
		if (rc != CUBEID_OK)
			return rc;
	}
	return CUBEID_OK;
}

void
helper_config_free(struct helper_config *c)
{
	size_t i, k;

	if (c == NULL)
		return;
	free(c->agent_address);
	free(c->cert_dir);
	free(c->svid_file_name);
	free(c->svid_key_file_name);
	free(c->svid_bundle_file_name);
	for (i = 0; i < c->n_jwt; i++) {
		free(c->jwt[i].audience);
		free(c->jwt[i].file);
		for (k = 0; c->jwt[i].extra != NULL && k < c->jwt[i].n_extra; k++)
			free(c->jwt[i].extra[k]);
		free(c->jwt[i].extra);
	}
	free(c->jwt);
	free(c->jwt_bundle_file_name);
	free(c->cmd);
	free(c->cmd_args);
	free(c->renew_signal);
	free(c->pid_file_name);
	free(c->hint);
	free(c->health_liveness_path);
	free(c->health_readiness_path);
	free(c);
}

int
helper_config_parse(const char *buf, size_t len, const char *name, struct helper_config **out,
                    char **err)
{
	struct p p = {buf, buf + len, 1, name, err, 0};
	struct m m = {name, err};
	struct helper_config *c = NULL;
	struct hv root = {0};
	int rc;

	*out = NULL;
	if (err != NULL)
		*err = NULL;
	if (buf == NULL || name == NULL)
		return CUBEID_ERR_INVALID_ARG;
	if (len > HELPER_CONFIG_MAX) {
		perr(&p, 1, "larger than the limit of %u bytes", HELPER_CONFIG_MAX);
		return CUBEID_ERR_TOO_LARGE;
	}
	if (len >= 3 && memcmp(buf, "\xef\xbb\xbf", 3) == 0)
		p.s += 3; /* a UTF-8 byte order mark */
	if ((rc = parse_object_body(&p, &root, '\0')) != CUBEID_OK)
		goto out;
	if ((c = calloc(1, sizeof(*c))) == NULL) {
		rc = CUBEID_ERR_NOMEM;
		goto out;
	}
	c->daemon_mode = -1;
	if ((rc = map_config(&m, &root, c)) != CUBEID_OK)
		goto out;
	*out = c;
	c = NULL;
out:
	helper_config_free(c);
	hv_clear(&root);
	return rc;
}

static bool
plain_name(const char *s)
{
	return s != NULL && *s != '\0' && strchr(s, '/') == NULL && strncmp(s, "..", 2) != 0 &&
	       strcmp(s, ".") != 0 && strlen(s) <= 255;
}

static int ferr(char **err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int
ferr(char **err, const char *fmt, ...)
{
	va_list ap;

	if (err == NULL)
		return CUBEID_ERR_CONFIG;
	va_start(ap, fmt);
	if (vasprintf(err, fmt, ap) < 0)
		*err = NULL;
	va_end(ap);
	return *err != NULL ? CUBEID_ERR_CONFIG : CUBEID_ERR_NOMEM;
}

int
helper_config_finish(struct helper_config *c, char **err)
{
	const char *names[3 + 1 + HELPER_JWT_SVIDS_MAX];
	size_t i, j, nn = 0, empty;
	const char *env;

	if (err != NULL)
		*err = NULL;
	for (i = 0; i < c->n_jwt; i++) {
		if (c->jwt[i].file == NULL || *c->jwt[i].file == '\0')
			return ferr(err, "'jwt_svid_file_name' is required in 'jwt_svids'");
		if (c->jwt[i].audience == NULL || *c->jwt[i].audience == '\0')
			return ferr(err, "'jwt_audience' is required in 'jwt_svids'");
	}
	if (c->agent_address == NULL || *c->agent_address == '\0') {
		const char *spire = getenv("SPIRE_AGENT_ADDRESS");
		env = getenv("SPIFFE_ENDPOINT_SOCKET");
		if (spire != NULL && *spire != '\0' && env != NULL && *env != '\0')
			return ferr(err, "both SPIRE_AGENT_ADDRESS and SPIFFE_ENDPOINT_SOCKET "
			                 "are set; use SPIFFE_ENDPOINT_SOCKET only");
		if (env == NULL || *env == '\0')
			env = spire;
		if (env == NULL || *env == '\0')
			env = "/tmp/spire-agent/public/api.sock";
		free(c->agent_address);
		if ((c->agent_address = strdup(env)) == NULL)
			return CUBEID_ERR_NOMEM;
	}
	if (c->daemon_mode == 0 && c->pid_file_name != NULL && *c->pid_file_name != '\0')
		return ferr(err, "pid_file_name is set but daemon_mode is false; pid_file_name "
		                 "is only supported in daemon mode");
	if (c->pid_file_name != NULL && *c->pid_file_name != '\0' &&
	    (c->renew_signal == NULL || *c->renew_signal == '\0'))
		return ferr(err, "must specify renew_signal when using pid_file_name");
	if (c->renew_signal != NULL && *c->renew_signal != '\0' &&
	    deliver_signal_parse(c->renew_signal) <= 0)
		return ferr(err, "renew_signal: unknown signal '%s'", c->renew_signal);
	empty = (c->svid_file_name == NULL || !*c->svid_file_name) +
	        (c->svid_key_file_name == NULL || !*c->svid_key_file_name) +
	        (c->svid_bundle_file_name == NULL || !*c->svid_bundle_file_name);
	if (empty != 0 && empty != 3)
		return ferr(err, "all or none of 'svid_file_name', 'svid_key_file_name', "
		                 "'svid_bundle_file_name' must be specified");
	if (empty == 0) {
		names[nn++] = c->svid_file_name;
		names[nn++] = c->svid_key_file_name;
		names[nn++] = c->svid_bundle_file_name;
	}
	if (c->jwt_bundle_file_name != NULL && *c->jwt_bundle_file_name != '\0')
		names[nn++] = c->jwt_bundle_file_name;
	for (i = 0; i < c->n_jwt; i++)
		names[nn++] = c->jwt[i].file;
	if (nn == 0)
		return ferr(err, "at least one of the sets ('svid_file_name', "
		                 "'svid_key_file_name', 'svid_bundle_file_name'), 'jwt_svids', "
		                 "or 'jwt_bundle_file_name' must be fully specified");
	for (i = 0; i < nn; i++) {
		if (!plain_name(names[i]))
			return ferr(err,
			            "'%s': cubeid helper writes plain file names inside cert_dir "
			            "(no '/', not starting with '..')",
			            names[i]);
		for (j = 0; j < i; j++)
			if (strcmp(names[i], names[j]) == 0)
				return ferr(err, "two outputs are both named '%s'", names[i]);
	}
	if (c->cert_file_mode < 0 || c->key_file_mode < 0 || c->jwt_bundle_file_mode < 0 ||
	    c->jwt_svid_file_mode < 0)
		return ferr(err, "file modes must be positive");
	if (c->cert_file_mode > 07777 || c->key_file_mode > 07777 ||
	    c->jwt_bundle_file_mode > 07777 || c->jwt_svid_file_mode > 07777)
		return ferr(err, "a file mode is larger than 07777");
	if (c->cert_file_mode == 0)
		c->cert_file_mode = 0644;
	if (c->key_file_mode == 0)
		c->key_file_mode = 0600;
	if (c->jwt_bundle_file_mode == 0)
		c->jwt_bundle_file_mode = 0600;
	if (c->jwt_svid_file_mode == 0)
		c->jwt_svid_file_mode = 0600;
	if (c->health_listener_enabled)
		return ferr(err, "health_checks.listener_enabled = true: cubeid helper has no "
		                 "health listener (use the agent's /healthz and /readyz)");
	if (c->daemon_mode < 0)
		c->daemon_mode = 1;
	return CUBEID_OK;
}
