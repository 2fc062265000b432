/* Helpers over libyaml shared by config.c and entries.c (yaml-util.h). */
#include "config.h"

#include "agent/yaml-util.h"

#include <cubeid/error.h>
#include <cubeid/x509svid.h>

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int set_err(char **err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int
set_err(char **err, const char *fmt, ...)
{
	va_list ap;
	char *m = NULL;

	if (err == NULL)
		return CUBEID_OK;
	free(*err);
	*err = NULL;
	va_start(ap, fmt);
	if (vasprintf(&m, fmt, ap) < 0)
		m = NULL;
	va_end(ap);
	*err = m;
	return m != NULL ? CUBEID_OK : CUBEID_ERR_NOMEM;
}

int
yu_read_file(const char *path, size_t max, char **out, size_t *out_len, char **err)
{
	struct stat st;
	char *buf = NULL;
	size_t len = 0;
	int fd, r = CUBEID_OK;

	*out = NULL;
	*out_len = 0;
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0) {
		r = errno == ENOENT ? CUBEID_ERR_NOT_FOUND : CUBEID_ERR_IO;
		set_err(err, "%s: %s", path, strerror(errno));
		return r;
	}
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		set_err(err, "%s: not a regular file", path);
		r = CUBEID_ERR_IO;
		goto out;
	}
	if ((uint64_t)st.st_size > max) {
		set_err(err, "%s: larger than the limit of %zu bytes", path, max);
		r = CUBEID_ERR_TOO_LARGE;
		goto out;
	}
	/* One byte more than the limit tells us if the file grew meanwhile. */
	if ((buf = malloc((size_t)st.st_size + 2)) == NULL) {
		r = CUBEID_ERR_NOMEM;
		goto out;
	}
	for (;;) {
		ssize_t n = read(fd, buf + len, (size_t)st.st_size + 1 - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			set_err(err, "%s: %s", path, strerror(errno));
			r = CUBEID_ERR_IO;
			goto out;
		}
		if (n == 0)
			break;
		len += (size_t)n;
		if (len > (size_t)st.st_size) {
			set_err(err, "%s: changed while being read", path);
			r = CUBEID_ERR_IO;
			goto out;
		}
	}
	buf[len] = '\0';
	*out = buf;
	*out_len = len;
	buf = NULL;
out:
	free(buf);
	close(fd);
	return r;
}

unsigned long
yu_line(const yaml_node_t *n)
{
	return n != NULL ? (unsigned long)n->start_mark.line + 1 : 0;
}

int
yu_err(char **err, const char *name, const yaml_node_t *n, const char *fmt, ...)
{
	va_list ap;
	char *m = NULL;
	int r;

	va_start(ap, fmt);
	if (vasprintf(&m, fmt, ap) < 0)
		m = NULL;
	va_end(ap);
	if (m == NULL)
		return CUBEID_ERR_NOMEM;
	if (n != NULL)
		r = set_err(err, "%s:%lu: %s", name, yu_line(n), m);
	else
		r = set_err(err, "%s: %s", name, m);
	free(m);
	return r == CUBEID_OK ? CUBEID_ERR_CONFIG : r;
}

/*
 * Refuse a stream nested deeper than YU_DEPTH_MAX before building a
 * document from it.  libyaml's scanner spends time in proportion to the
 * flow depth on every token, so 40,000 levels of "[[[[" took 10 s on the
 * loop thread.  The check walks libyaml's own events and stops at the
 * first level too deep, which costs at most YU_DEPTH_MAX times the tokens
 * read so far: a textual scan for '[' and '{' would have to guess where
 * quoted scalars start, and a quote inside a plain scalar (a: it 's) would
 * hide the brackets after it.  Mappings and sequences count alike, block
 * or flow, in every document of the stream; an alias is a leaf.  A syntax
 * error ends the check: yaml_parser_load() reports it.
 */
static int
depth_check(const char *buf, size_t len, const char *name, char **err)
{
	yaml_parser_t p;
	yaml_event_t ev;
	unsigned depth = 0;
	int r = CUBEID_OK;

	if (!yaml_parser_initialize(&p))
		return CUBEID_ERR_NOMEM;
	yaml_parser_set_input_string(&p, (const unsigned char *)buf, len);
	for (;;) {
		yaml_event_type_t t;
		unsigned long line;

		if (!yaml_parser_parse(&p, &ev)) {
			r = p.error == YAML_MEMORY_ERROR ? CUBEID_ERR_NOMEM : CUBEID_OK;
			break;
		}
		t = ev.type;
		line = (unsigned long)ev.start_mark.line + 1;
		yaml_event_delete(&ev);
		if (t == YAML_STREAM_END_EVENT)
			break;
		if (t == YAML_SEQUENCE_START_EVENT || t == YAML_MAPPING_START_EVENT) {
			if (++depth > YU_DEPTH_MAX) {
				r = set_err(err, "%s:%lu: nested deeper than %d levels", name, line,
				            YU_DEPTH_MAX);
				r = r == CUBEID_OK ? CUBEID_ERR_CONFIG : r;
				break;
			}
		} else if ((t == YAML_SEQUENCE_END_EVENT || t == YAML_MAPPING_END_EVENT) &&
		           depth > 0)
			depth--;
	}
	yaml_parser_delete(&p);
	return r;
}

int
yu_load(const char *buf, size_t len, const char *name, yaml_document_t *doc, char **err)
{
	yaml_parser_t p;
	yaml_document_t extra;
	int r = CUBEID_OK;

	memset(doc, 0, sizeof(*doc));
	if ((r = depth_check(buf, len, name, err)) != CUBEID_OK)
		return r;
	if (!yaml_parser_initialize(&p))
		return CUBEID_ERR_NOMEM;
	yaml_parser_set_input_string(&p, (const unsigned char *)buf, len);
	if (!yaml_parser_load(&p, doc)) {
		if (p.error == YAML_MEMORY_ERROR)
			r = CUBEID_ERR_NOMEM;
		else if (set_err(err, "%s:%lu: %s%s%s", name,
		                 (unsigned long)p.problem_mark.line + 1,
		                 p.context != NULL ? p.context : "", p.context != NULL ? ", " : "",
		                 p.problem != NULL ? p.problem : "YAML syntax error") != 0)
			r = CUBEID_ERR_NOMEM;
		else
			r = CUBEID_ERR_CONFIG;
		memset(doc, 0, sizeof(*doc));
		goto out;
	}
	/* A second document would be silently ignored: refuse it. */
	if (yaml_document_get_root_node(doc) != NULL) {
		if (!yaml_parser_load(&p, &extra)) {
			r = set_err(err, "%s:%lu: %s", name, (unsigned long)p.problem_mark.line + 1,
			            p.problem != NULL ? p.problem : "YAML syntax error");
			r = r == 0 ? CUBEID_ERR_CONFIG : r;
		} else {
			if (yaml_document_get_root_node(&extra) != NULL)
				r = yu_err(err, name, yaml_document_get_root_node(&extra),
				           "only one YAML document is allowed");
			yaml_document_delete(&extra);
		}
		if (r != CUBEID_OK)
			yaml_document_delete(doc);
	}
out:
	yaml_parser_delete(&p);
	return r;
}

const char *
yu_scalar(const yaml_node_t *n)
{
	if (n == NULL || n->type != YAML_SCALAR_NODE)
		return NULL;
	if (memchr(n->data.scalar.value, '\0', n->data.scalar.length) != NULL)
		return NULL;
	return (const char *)n->data.scalar.value;
}

bool
yu_plain(const yaml_node_t *n)
{
	return n != NULL && n->type == YAML_SCALAR_NODE &&
	       n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
}

bool
yu_null(const yaml_node_t *n)
{
	const char *s = yu_scalar(n);

	return s != NULL && yu_plain(n) &&
	       (s[0] == '\0' || strcmp(s, "~") == 0 || strcmp(s, "null") == 0);
}

int
yu_bool(const yaml_node_t *n, bool *v)
{
	const char *s = yu_scalar(n);

	*v = false;
	if (s == NULL || !yu_plain(n))
		return CUBEID_ERR_PARSE;
	if (strcmp(s, "true") == 0)
		*v = true;
	else if (strcmp(s, "false") != 0)
		return CUBEID_ERR_PARSE;
	return CUBEID_OK;
}

int
yu_ulong(const yaml_node_t *n, unsigned long max, unsigned long *v)
{
	const char *s = yu_scalar(n);
	unsigned long x = 0;
	size_t i;

	*v = 0;
	if (s == NULL || !yu_plain(n) || s[0] == '\0')
		return CUBEID_ERR_PARSE;
	for (i = 0; s[i] != '\0'; i++) {
		if (!isdigit((unsigned char)s[i]) || i >= 19)
			return CUBEID_ERR_PARSE;
		x = x * 10 + (unsigned long)(s[i] - '0');
	}
	if (x > max)
		return CUBEID_ERR_PARSE;
	*v = x;
	return CUBEID_OK;
}

int
yu_size(const yaml_node_t *n, size_t max, size_t *v)
{
	static const struct {
		const char *suffix;
		unsigned shift;
	} units[] = {{"", 0},   {"KiB", 10}, {"MiB", 20}, {"GiB", 30},
	             {"K", 10}, {"M", 20},   {"G", 30},   {NULL, 0}};
	const char *s = yu_scalar(n);
	unsigned long x = 0;
	size_t i, u;

	*v = 0;
	if (s == NULL || !yu_plain(n) || !isdigit((unsigned char)s[0]))
		return CUBEID_ERR_PARSE;
	for (i = 0; isdigit((unsigned char)s[i]); i++) {
		if (i >= 12)
			return CUBEID_ERR_PARSE;
		x = x * 10 + (unsigned long)(s[i] - '0');
	}
	for (u = 0; units[u].suffix != NULL; u++)
		if (strcmp(s + i, units[u].suffix) == 0)
			break;
	if (units[u].suffix == NULL)
		return CUBEID_ERR_PARSE;
	if (x > (max >> units[u].shift))
		return CUBEID_ERR_PARSE;
	*v = (size_t)x << units[u].shift;
	return CUBEID_OK;
}

int
yu_duration(const yaml_node_t *n, long *seconds)
{
	const char *s = yu_scalar(n);
	int64_t v = 0;

	*seconds = 0;
	if (s == NULL || !yu_plain(n) || cubeid_duration_parse(s, &v) != CUBEID_OK)
		return CUBEID_ERR_PARSE;
	*seconds = (long)v;
	return CUBEID_OK;
}
