/*
 * Registration entries (docs/entries.md): loading and parsing the YAML
 * files.  Matching, templates and the index are in entries-match.c.
 */
#include "config.h"

#include "agent/agent.h"
#include "agent/entries-internal.h"
#include "agent/yaml-util.h"

#include <cubeid/log.h>
#include <cubeid/spiffe.h>

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define ENTRIES_FILE_MAX      (32u << 20) /* bytes per file */
#define ENTRIES_MAX           100000      /* entries in all files */
#define ENTRIES_DIR_FILES_MAX 10000
#define ENTRY_SELECTORS_MAX   64
#define ENTRY_DNS_MAX         32
#define ENTRY_NAME_MAX        253
#define ENTRY_HINT_MAX        1024
#define DNS_NAME_MAX          253

struct builder {
	struct reg_entry *e;
	size_t n, cap;
};

/* ------------------------------------------------------------ freeing */

static void
entry_clear(struct reg_entry *e)
{
	size_t i;

	free(e->name);
	free(e->spiffe_id);
	selector_set_clear(&e->selectors);
	if (e->dns != NULL)
		for (i = 0; e->dns[i] != NULL; i++)
			free(e->dns[i]);
	free(e->dns);
	free(e->hint);
	free(e->source);
	entry_delivery_free(e->delivery);
	memset(e, 0, sizeof(*e));
}

int
entries_check_trust_domain(const struct entry_set *s, const char *td, char **err)
{
	size_t i, tl = strlen(td);

	*err = NULL;
	for (i = 0; s != NULL && i < s->n; i++) {
		const char *id = s->e[i].spiffe_id, *d;

		if (id == NULL || strncmp(id, "spiffe://", 9) != 0)
			continue; /* not loaded from a file: checked when parsed */
		d = id + 9;
		if (strncmp(d, "{td}", 4) == 0 && (d[4] == '/' || d[4] == '\0'))
			continue;
		if (strncmp(d, td, tl) == 0 && (d[tl] == '/' || d[tl] == '\0'))
			continue;
		if (asprintf(err, "%s: entry %s: spiffe_id '%s' is not in the trust domain %s",
		             s->e[i].source != NULL ? s->e[i].source : "(entry)",
		             s->e[i].name != NULL ? s->e[i].name : "(unnamed)", id, td) < 0) {
			*err = NULL;
			return CUBEID_ERR_NOMEM;
		}
		return CUBEID_ERR_CONFIG;
	}
	return CUBEID_OK;
}

void
entries_free(struct entry_set *s)
{
	size_t i;

	if (s == NULL)
		return;
	for (i = 0; i < s->n; i++)
		entry_clear(&s->e[i]);
	free(s->e);
	entries_index_free(s->index);
	free(s);
}

/* ------------------------------------------------------------ parsing */

static bool
printable(const char *s, size_t max)
{
	size_t i;

	for (i = 0; s[i] != '\0'; i++)
		if (i >= max || (unsigned char)s[i] < 0x20 || s[i] == 0x7f)
			return false;
	return i > 0;
}

static bool
name_ok(const char *s)
{
	size_t i;

	for (i = 0; s[i] != '\0'; i++)
		if (i >= ENTRY_NAME_MAX ||
		    !(isalnum((unsigned char)s[i]) || strchr("._-:/@", s[i]) != NULL))
			return false;
	return i > 0;
}

static bool
dns_ok(const char *s)
{
	size_t i;

	for (i = 0; s[i] != '\0'; i++)
		if (i >= DNS_NAME_MAX || !(isalnum((unsigned char)s[i]) || strchr(".-*", s[i])))
			return false;
	return i > 0 && s[0] != '.' && s[0] != '-';
}

static int
get_str(struct entries_ctx *c, const yaml_node_t *v, const char *key, char **out)
{
	const char *s = yu_scalar(v);

	if (s == NULL || yu_null(v))
		return yu_err(c->err, c->name, v, "'%s' must be a non-empty string", key);
	if ((*out = strdup(s)) == NULL)
		return CUBEID_ERR_NOMEM;
	return CUBEID_OK;
}

int
entries_get_str(struct entries_ctx *c, yaml_node_t *v, const char *key, char **out)
{
	return get_str(c, v, key, out);
}

bool
entries_printable(const char *s, size_t max)
{
	return printable(s, max);
}

static int
parse_selectors(struct entries_ctx *c, yaml_node_t *v, struct reg_entry *e)
{
	yaml_node_item_t *it;

	if (v == NULL || v->type != YAML_SEQUENCE_NODE)
		return yu_err(c->err, c->name, v,
		              "'selectors' must be a list, e.g. [k8s:ns:default, k8s:sa:web]");
	if (v->data.sequence.items.top - v->data.sequence.items.start > ENTRY_SELECTORS_MAX)
		return yu_err(c->err, c->name, v, "more than %d selectors", ENTRY_SELECTORS_MAX);
	for (it = v->data.sequence.items.start; it < v->data.sequence.items.top; it++) {
		yaml_node_t *n = yaml_document_get_node(c->doc, *it);
		const char *s = yu_scalar(n);
		char type[SELECTOR_MAX_LEN + 1];
		size_t tl = 0;
		bool bare = false;
		int r;

		if (s == NULL || !printable(s, SELECTOR_MAX_LEN) ||
		    !entries_selector_split(s, &tl, &bare))
			return yu_err(
			        c->err, c->name, n,
			        "bad selector '%s' (TYPE:VALUE, e.g. unix:uid:1000, or a bare "
			        "TYPE such as k8s:sa)",
			        s != NULL ? s : "(not a string)");
		memcpy(type, s, tl);
		type[tl] = '\0';
		if (!selector_type_known(type))
			return yu_err(c->err, c->name, n, "unknown selector type '%s' in '%s'",
			              type, s);
		if (!bare && strcmp(type, "k8s:pod-label") == 0 && strchr(s + tl + 1, ':') == NULL)
			return yu_err(c->err, c->name, n,
			              "'%s': k8s:pod-label needs KEY:VALUE (k8s:pod-label:app:web)",
			              s);
		/* stored whole; selector_set_add(type, NULL) keeps it as given */
		if ((r = selector_set_add(&e->selectors, s, NULL)) == CUBEID_ERR_NOMEM)
			return r;
		if (r != CUBEID_OK)
			return yu_err(c->err, c->name, n, "bad selector '%s': %s", s,
			              cubeid_strerror(r));
	}
	if (e->selectors.n == 0)
		return yu_err(c->err, c->name, v,
		              "an entry needs at least one selector (none would match everyone)");
	return CUBEID_OK;
}

static int
parse_dns(struct entries_ctx *c, yaml_node_t *v, struct reg_entry *e)
{
	yaml_node_item_t *it;
	size_t n = 0, max;

	if (v == NULL || v->type != YAML_SEQUENCE_NODE)
		return yu_err(c->err, c->name, v, "'dns' must be a list of DNS names");
	max = (size_t)(v->data.sequence.items.top - v->data.sequence.items.start);
	if (max > ENTRY_DNS_MAX)
		return yu_err(c->err, c->name, v, "more than %d DNS names", ENTRY_DNS_MAX);
	if ((e->dns = calloc(max + 1, sizeof(*e->dns))) == NULL)
		return CUBEID_ERR_NOMEM;
	for (it = v->data.sequence.items.start; it < v->data.sequence.items.top; it++) {
		yaml_node_t *dn = yaml_document_get_node(c->doc, *it);
		const char *s = yu_scalar(dn);

		if (s == NULL || !dns_ok(s))
			return yu_err(c->err, c->name, dn, "bad DNS name '%s'",
			              s != NULL ? s : "(not a string)");
		if ((e->dns[n++] = strdup(s)) == NULL)
			return CUBEID_ERR_NOMEM;
	}
	return CUBEID_OK;
}

static const char *const entry_keys[] = {"name",         "spiffe_id", "selectors", "x509_svid_ttl",
                                         "jwt_svid_ttl", "dns",       "key",       "hint",
                                         "picod_signer", "delivery",  NULL};

const char *
entries_key_name(size_t i)
{
	return i < sizeof(entry_keys) / sizeof(entry_keys[0]) ? entry_keys[i] : NULL;
}

static int
parse_entry(struct entries_ctx *c, yaml_node_t *m, struct reg_entry *e)
{
	yaml_node_pair_t *p, *q;
	yaml_node_t *id_node = NULL;
	const char *why, *bad;
	char *tmp = NULL;
	int r;

	if (m == NULL || m->type != YAML_MAPPING_NODE)
		return yu_err(c->err, c->name, m,
		              "an entry must be a mapping (name, spiffe_id, selectors, ...)");
	if (asprintf(&e->source, "%s:%lu", c->name, yu_line(m)) < 0) {
		e->source = NULL;
		return CUBEID_ERR_NOMEM;
	}
	for (p = m->data.mapping.pairs.start; p < m->data.mapping.pairs.top; p++) {
		yaml_node_t *kn = yaml_document_get_node(c->doc, p->key);
		yaml_node_t *v = yaml_document_get_node(c->doc, p->value);
		const char *k = yu_scalar(kn);
		size_t i;

		if (k == NULL)
			return yu_err(c->err, c->name, kn, "entry keys must be plain names");
		for (i = 0; entry_keys[i] != NULL; i++)
			if (strcmp(entry_keys[i], k) == 0)
				break;
		if (entry_keys[i] == NULL)
			return yu_err(c->err, c->name, kn, "unknown key '%s' in an entry", k);
		for (q = m->data.mapping.pairs.start; q < p; q++) {
			const char *qs = yu_scalar(yaml_document_get_node(c->doc, q->key));
			if (qs != NULL && strcmp(qs, k) == 0)
				return yu_err(c->err, c->name, kn, "duplicate key '%s' in an entry",
				              k);
		}
		if (strcmp(k, "name") == 0) {
			if ((r = get_str(c, v, k, &e->name)) != CUBEID_OK)
				return r;
			if (!name_ok(e->name))
				return yu_err(c->err, c->name, v,
				              "bad entry name '%s' (letters, digits and ._-:/@, at "
				              "most %d)",
				              e->name, ENTRY_NAME_MAX);
		} else if (strcmp(k, "spiffe_id") == 0) {
			if ((r = get_str(c, v, k, &e->spiffe_id)) != CUBEID_OK)
				return r;
			id_node = v;
		} else if (strcmp(k, "selectors") == 0) {
			if ((r = parse_selectors(c, v, e)) != CUBEID_OK)
				return r;
		} else if (strcmp(k, "x509_svid_ttl") == 0 || strcmp(k, "jwt_svid_ttl") == 0) {
			long *ttl = k[0] == 'x' ? &e->x509_ttl : &e->jwt_ttl;
			if (yu_duration(v, ttl) != CUBEID_OK)
				return yu_err(
				        c->err, c->name, v,
				        "'%s': bad duration '%s' (digits and one unit s, m, h "
				        "or d: 90s, 5m, 1h)",
				        k, yu_scalar(v) != NULL ? yu_scalar(v) : "(not a string)");
		} else if (strcmp(k, "dns") == 0) {
			if ((r = parse_dns(c, v, e)) != CUBEID_OK)
				return r;
		} else if (strcmp(k, "key") == 0) {
			const char *s = yu_scalar(v);
			if (s != NULL && strcmp(s, "exportable") == 0)
				e->key = KEY_POLICY_EXPORTABLE;
			else if (s != NULL && strcmp(s, "resident") == 0)
				e->key = KEY_POLICY_RESIDENT;
			else
				return yu_err(c->err, c->name, v,
				              "'key' must be exportable or resident");
		} else if (strcmp(k, "hint") == 0) {
			if ((r = get_str(c, v, k, &e->hint)) != CUBEID_OK)
				return r;
			if (!printable(e->hint, ENTRY_HINT_MAX))
				return yu_err(c->err, c->name, v,
				              "bad hint (printable, at most %d)", ENTRY_HINT_MAX);
		} else if (strcmp(k, "picod_signer") == 0) {
			if (yu_bool(v, &e->picod_signer) != CUBEID_OK)
				return yu_err(c->err, c->name, v,
				              "'picod_signer' must be true or false");
		} else if (strcmp(k, "delivery") == 0) {
			if ((r = entries_parse_delivery(c, v, e)) != CUBEID_OK)
				return r;
		}
	}
	if (e->spiffe_id == NULL)
		return yu_err(c->err, c->name, m, "entry %s has no 'spiffe_id'",
		              e->name != NULL ? e->name : "(unnamed)");
	if (e->selectors.n == 0)
		return yu_err(c->err, c->name, m, "entry %s has no 'selectors'",
		              e->name != NULL ? e->name : "(unnamed)");
	/* The trust domain is {td} or fixed: a selector's value there would
	 * let a workload pick its own trust domain. */
	if (strncmp(e->spiffe_id, "spiffe://", 9) == 0) {
		size_t l = strcspn(e->spiffe_id + 9, "/");

		if (memchr(e->spiffe_id + 9, '{', l) != NULL &&
		    !(l == 4 && strncmp(e->spiffe_id + 9, "{td}", 4) == 0))
			return yu_err(c->err, c->name, id_node,
			              "bad spiffe_id '%s': the trust domain must be {td} or fixed, "
			              "with no placeholder",
			              e->spiffe_id);
	}
	/* The ID must be valid whatever the template values are. */
	r = entries_expand(e->spiffe_id, NULL, "example.org", &tmp, &why, &bad);
	if (r == CUBEID_ERR_NOMEM)
		return r;
	if (r == CUBEID_OK) {
		cubeid_spiffe_reason reason;
		cubeid_spiffe_id *sid = NULL;

		if (cubeid_spiffe_id_parse(tmp, strlen(tmp), &sid, &reason) != CUBEID_OK) {
			why = cubeid_spiffe_reason_str(reason);
			r = CUBEID_ERR_SPIFFE_ID;
		} else if (cubeid_spiffe_id_is_trust_domain_id(sid)) {
			/* X509-SVID.md 2, JWT-SVID.md 3: that ID names the
			 * trust domain (its CA), never a workload */
			why = "the trust domain's own ID is not a workload's; give it a path";
			r = CUBEID_ERR_SPIFFE_ID;
		}
		cubeid_spiffe_id_free(sid);
	}
	free(tmp);
	if (r != CUBEID_OK)
		return yu_err(c->err, c->name, id_node, "bad spiffe_id '%s': %s%s%.*s%s",
		              e->spiffe_id, why, bad != NULL ? " (" : "",
		              bad != NULL ? (int)strcspn(bad, "}") + 1 : 0, bad != NULL ? bad : "",
		              bad != NULL ? ")" : "");
	/* files are written for no caller: nothing can fill a selector
	 * placeholder */
	if (e->delivery != NULL) {
		const char *b;
		for (b = strchr(e->spiffe_id, '{'); b != NULL; b = strchr(b + 1, '{'))
			if (strncmp(b, "{td}", 4) != 0)
				return yu_err(c->err, c->name, id_node,
				              "an entry with a delivery needs a fixed spiffe_id "
				              "(only {td} may be used), not '%s'",
				              e->spiffe_id);
	}
	if (e->name == NULL && (e->name = strdup(e->source)) == NULL)
		return CUBEID_ERR_NOMEM;
	return CUBEID_OK;
}

static int
parse_into(struct builder *b, const char *buf, size_t len, const char *name, char **err)
{
	yaml_document_t doc;
	yaml_node_t *root, *list = NULL;
	yaml_node_pair_t *p;
	yaml_node_item_t *it;
	struct entries_ctx c = {&doc, name, err};
	int r;

	if (len > ENTRIES_FILE_MAX)
		return yu_err(err, name, NULL, "larger than the limit of %u bytes",
		              ENTRIES_FILE_MAX);
	if ((r = yu_load(buf, len, name, &doc, err)) != CUBEID_OK)
		return r;
	root = yaml_document_get_root_node(&doc);
	if (root == NULL || yu_null(root))
		goto out;
	if (root->type != YAML_MAPPING_NODE) {
		r = yu_err(err, name, root, "expected a mapping with the key 'entries'");
		goto out;
	}
	for (p = root->data.mapping.pairs.start; p < root->data.mapping.pairs.top; p++) {
		yaml_node_t *kn = yaml_document_get_node(&doc, p->key);
		const char *k = yu_scalar(kn);

		if (k == NULL || strcmp(k, "entries") != 0) {
			r = yu_err(err, name, kn, "unknown key '%s' (only 'entries')",
			           k != NULL ? k : "(not a string)");
			goto out;
		}
		if (list != NULL) {
			r = yu_err(err, name, kn, "duplicate key 'entries'");
			goto out;
		}
		list = yaml_document_get_node(&doc, p->value);
	}
	if (list == NULL || yu_null(list))
		goto out;
	if (list->type != YAML_SEQUENCE_NODE) {
		r = yu_err(err, name, list, "'entries' must be a list");
		goto out;
	}
	for (it = list->data.sequence.items.start; it < list->data.sequence.items.top; it++) {
		struct reg_entry e = {0};

		if (b->n >= ENTRIES_MAX) {
			r = yu_err(err, name, yaml_document_get_node(&doc, *it),
			           "more than %d entries", ENTRIES_MAX);
			goto out;
		}
		if (b->n == b->cap) {
			size_t ncap = b->cap == 0 ? 64 : b->cap * 2;
			struct reg_entry *ne = realloc(b->e, ncap * sizeof(*ne));
			if (ne == NULL) {
				r = CUBEID_ERR_NOMEM;
				goto out;
			}
			b->e = ne;
			b->cap = ncap;
		}
		if ((r = parse_entry(&c, yaml_document_get_node(&doc, *it), &e)) != CUBEID_OK) {
			entry_clear(&e);
			goto out;
		}
		b->e[b->n++] = e;
	}
out:
	yaml_document_delete(&doc);
	return r;
}

/* ------------------------------------------------------------ finishing */

static int
cmp_name_idx(const void *a, const void *b, void *arg)
{
	const struct reg_entry *base = arg;
	size_t x = *(const size_t *)a, y = *(const size_t *)b;
	int c = strcmp(base[x].name, base[y].name);

	if (c != 0)
		return c;
	return x < y ? -1 : x > y;
}

static int
check_names(const struct builder *b, char **err)
{
	size_t *ord, i;
	int r = CUBEID_OK;

	if (b->n < 2)
		return CUBEID_OK;
	if ((ord = malloc(b->n * sizeof(*ord))) == NULL)
		return CUBEID_ERR_NOMEM;
	for (i = 0; i < b->n; i++)
		ord[i] = i;
	qsort_r(ord, b->n, sizeof(*ord), cmp_name_idx, b->e);
	for (i = 1; i < b->n; i++)
		if (strcmp(b->e[ord[i]].name, b->e[ord[i - 1]].name) == 0) {
			r = yu_err(err, b->e[ord[i]].source, NULL,
			           "duplicate entry name '%s' (first at %s)", b->e[ord[i]].name,
			           b->e[ord[i - 1]].source);
			break;
		}
	free(ord);
	return r;
}

static int
finish(struct builder *b, struct entry_set **out, char **err)
{
	struct entry_set *s;
	int r;

	if ((r = check_names(b, err)) != CUBEID_OK)
		return r;
	if ((s = calloc(1, sizeof(*s))) == NULL)
		return CUBEID_ERR_NOMEM;
	s->e = b->e;
	s->n = b->n;
	if ((r = entries_index_build(s)) != CUBEID_OK) {
		free(s);
		return r;
	}
	b->e = NULL;
	b->n = b->cap = 0;
	*out = s;
	return CUBEID_OK;
}

static void
builder_clear(struct builder *b)
{
	size_t i;

	for (i = 0; i < b->n; i++)
		entry_clear(&b->e[i]);
	free(b->e);
	memset(b, 0, sizeof(*b));
}

int
entries_parse(const char *buf, size_t len, const char *name, struct entry_set **out, char **err)
{
	struct builder b = {0};
	int r;

	*out = NULL;
	if (err != NULL)
		*err = NULL;
	if (buf == NULL || name == NULL)
		return CUBEID_ERR_INVALID_ARG;
	if ((r = parse_into(&b, buf, len, name, err)) == CUBEID_OK)
		r = finish(&b, out, err);
	builder_clear(&b);
	return r;
}

static bool
yaml_name(const char *n)
{
	size_t l = strlen(n);

	if (n[0] == '.') /* hidden, and Kubernetes ConfigMap's ..data */
		return false;
	return (l > 5 && strcmp(n + l - 5, ".yaml") == 0) ||
	       (l > 4 && strcmp(n + l - 4, ".yml") == 0);
}

static int
cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static int
load_file(struct builder *b, const char *path, char **err)
{
	char *buf = NULL;
	size_t len = 0;
	int r;

	if ((r = yu_read_file(path, ENTRIES_FILE_MAX, &buf, &len, err)) != CUBEID_OK)
		return r;
	r = parse_into(b, buf, len, path, err);
	free(buf);
	return r;
}

int
entries_load(const char *path, struct entry_set **out, char **err)
{
	struct builder b = {0};
	struct stat st;
	char **names = NULL, *full = NULL;
	size_t n = 0, i;
	DIR *d = NULL;
	int r = CUBEID_OK;

	*out = NULL;
	if (err != NULL)
		*err = NULL;
	if (path == NULL)
		return CUBEID_ERR_INVALID_ARG;
	if (stat(path, &st) != 0) {
		r = errno == ENOENT ? CUBEID_ERR_NOT_FOUND : CUBEID_ERR_IO;
		yu_err(err, path, NULL, "%s", strerror(errno));
		return r;
	}
	if (!S_ISDIR(st.st_mode)) {
		if ((r = load_file(&b, path, err)) == CUBEID_OK)
			r = finish(&b, out, err);
		goto out;
	}
	if ((d = opendir(path)) == NULL) {
		yu_err(err, path, NULL, "%s", strerror(errno));
		r = CUBEID_ERR_IO;
		goto out;
	}
	for (;;) {
		struct dirent *de;
		char **nn;

		errno = 0;
		if ((de = readdir(d)) == NULL) {
			if (errno != 0) {
				yu_err(err, path, NULL, "%s", strerror(errno));
				r = CUBEID_ERR_IO;
				goto out;
			}
			break;
		}
		if (!yaml_name(de->d_name))
			continue;
		if (n >= ENTRIES_DIR_FILES_MAX) {
			r = yu_err(err, path, NULL, "more than %d entry files",
			           ENTRIES_DIR_FILES_MAX);
			goto out;
		}
		if ((nn = realloc(names, (n + 1) * sizeof(*nn))) == NULL) {
			r = CUBEID_ERR_NOMEM;
			goto out;
		}
		names = nn;
		if ((names[n] = strdup(de->d_name)) == NULL) {
			r = CUBEID_ERR_NOMEM;
			goto out;
		}
		n++;
	}
	if (n > 1)
		qsort(names, n, sizeof(*names), cmp_str);
	for (i = 0; i < n; i++) {
		free(full);
		if (asprintf(&full, "%s/%s", path, names[i]) < 0) {
			full = NULL;
			r = CUBEID_ERR_NOMEM;
			goto out;
		}
		if ((r = load_file(&b, full, err)) != CUBEID_OK)
			goto out;
	}
	r = finish(&b, out, err);
out:
	if (d != NULL)
		closedir(d);
	for (i = 0; i < n; i++)
		free(names[i]);
	free(names);
	free(full);
	builder_clear(&b);
	return r;
}
