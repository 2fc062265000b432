/*
 * Registration entries: matching a workload's selectors against them, and
 * filling templated SPIFFE IDs.
 *
 * Matching is per connection, so it is indexed: every entry with at least
 * one exact selector ("k8s:ns:default") is filed under one of them, and a
 * workload's selectors (a few dozen) look up their candidates by binary
 * search.  Entries made only of bare types ("k8s:sa": "has a selector of
 * this type") are checked every time.
 */
#include "config.h"

#include "agent/agent.h"
#include "agent/entries-internal.h"

#include <cubeid/log.h>
#include <cubeid/spiffe.h>

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

struct index_pair {
	const char *key; /* borrowed from the entry's selectors */
	size_t entry;
};
struct entry_index {
	struct index_pair *pairs; /* sorted by key, then entry */
	size_t n_pairs;
	size_t *bare; /* entries with bare-type selectors only */
	size_t n_bare;
};

void
entries_index_free(struct entry_index *ix)
{
	if (ix == NULL)
		return;
	free(ix->pairs);
	free(ix->bare);
	free(ix);
}

/* ------------------------------------------------------------ selectors */

/* Split an entry selector: *type_len is the length of "ns:name"; bare when
 * nothing follows.  False if it is not "ns:name[:value]". */
bool
entries_selector_split(const char *s, size_t *type_len, bool *bare)
{
	const char *c1 = strchr(s, ':'), *c2;

	if (c1 == NULL || c1 == s)
		return false;
	c2 = strchr(c1 + 1, ':');
	if (c2 == NULL) {
		if (c1[1] == '\0')
			return false;
		*type_len = strlen(s);
		*bare = true;
		return true;
	}
	if (c2 == c1 + 1)
		return false;
	*type_len = (size_t)(c2 - s);
	*bare = false;
	return true;
}

bool
entries_selector_is_bare(const char *s)
{
	size_t tl;
	bool bare = false;

	return entries_selector_split(s, &tl, &bare) && bare;
}

const char *
entries_first_missing(const struct reg_entry *e, const struct selector_set *sel)
{
	size_t i;

	if (e == NULL)
		return NULL;
	for (i = 0; i < e->selectors.n; i++) {
		const char *s = e->selectors.v[i];
		bool ok = entries_selector_is_bare(s) ? selector_set_get(sel, s) != NULL
		                                      : selector_set_has(sel, s);
		if (!ok)
			return s;
	}
	return NULL;
}

/* ------------------------------------------------------------ templates */

/* Types with several values per workload cannot fill a template. */
static bool
single_valued(const char *type)
{
	return strcmp(type, "unix:supplementary_gid") != 0 && strcmp(type, "k8s:pod-label") != 0;
}

/* A substituted value must be one path segment: no "/", not "." or "..",
 * only [a-zA-Z0-9.-_], so a value can never add path segments. */
static bool
segment_ok(const char *v)
{
	size_t i;

	if (v[0] == '\0' || strcmp(v, ".") == 0 || strcmp(v, "..") == 0)
		return false;
	for (i = 0; v[i] != '\0'; i++)
		if (!isalnum((unsigned char)v[i]) && v[i] != '.' && v[i] != '-' && v[i] != '_')
			return false;
	return true;
}

/*
 * Expand id's placeholders: {td} becomes td, {TYPE} the workload's value of
 * TYPE (sel; NULL at load time, when every placeholder becomes "x" so that
 * the rest of the ID can be checked).  *why gets a static reason.
 */
int
entries_expand(const char *id, const struct selector_set *sel, const char *td, char **out,
               const char **why, const char **bad_type)
{
	size_t cap = strlen(id) + 1, len = 0;
	char *buf = NULL, *nb;
	const char *p = id;
	int r = CUBEID_OK;

	*out = NULL;
	*why = NULL;
	if (bad_type != NULL)
		*bad_type = NULL;
	for (;;) {
		const char *open = strchr(p, '{'), *close = strchr(p, '}'), *val;
		char name[128];
		size_t chunk, nlen, vlen;

		if (close != NULL && (open == NULL || close < open)) {
			*why = "unbalanced '}'";
			r = CUBEID_ERR_SPIFFE_ID;
			goto out;
		}
		chunk = open != NULL ? (size_t)(open - p) : strlen(p);
		val = NULL;
		vlen = 0;
		if (open != NULL) {
			if (close == NULL) {
				*why = "unbalanced '{'";
				r = CUBEID_ERR_SPIFFE_ID;
				goto out;
			}
			nlen = (size_t)(close - open - 1);
			if (nlen == 0 || nlen >= sizeof(name) || memchr(open + 1, '{', nlen)) {
				*why = "bad placeholder";
				r = CUBEID_ERR_SPIFFE_ID;
				goto out;
			}
			memcpy(name, open + 1, nlen);
			name[nlen] = '\0';
			if (strcmp(name, "td") == 0) {
				val = td;
			} else if (!selector_type_known(name) || !single_valued(name)) {
				*why = "placeholder is not {td} or a single-valued selector type";
				if (bad_type != NULL)
					*bad_type = open;
				r = CUBEID_ERR_SPIFFE_ID;
				goto out;
			} else if (sel == NULL) {
				val = "x";
			} else if ((val = selector_set_get(sel, name)) == NULL) {
				*why = "the workload has no selector of a type the template needs";
				r = CUBEID_ERR_NOT_FOUND;
				goto out;
			} else if (!segment_ok(val)) {
				*why = "a selector value is not a valid SPIFFE ID path segment";
				r = CUBEID_ERR_SPIFFE_ID;
				goto out;
			}
			vlen = strlen(val);
		}
		if (len + chunk + vlen + 1 > CUBEID_SPIFFE_ID_MAX + 1) {
			*why = "longer than 2048 bytes";
			r = CUBEID_ERR_SPIFFE_ID;
			goto out;
		}
		if (len + chunk + vlen + 1 > cap || buf == NULL) {
			cap = len + chunk + vlen + 1 > cap ? len + chunk + vlen + 1 : cap;
			if ((nb = realloc(buf, cap)) == NULL) {
				r = CUBEID_ERR_NOMEM;
				goto out;
			}
			buf = nb;
		}
		memcpy(buf + len, p, chunk);
		len += chunk;
		if (val != NULL) {
			memcpy(buf + len, val, vlen);
			len += vlen;
		}
		buf[len] = '\0';
		if (open == NULL)
			break;
		p = close + 1;
	}
	*out = buf;
	buf = NULL;
out:
	free(buf);
	return r;
}

int
entries_resolve_id(const struct reg_entry *e, const struct selector_set *sel, const char *td,
                   char **out, const char **why)
{
	const char *w = NULL;
	cubeid_spiffe_reason reason;
	char *id = NULL;
	size_t tdl;
	int r;

	*out = NULL;
	if (why != NULL)
		*why = NULL;
	if (e == NULL || sel == NULL || td == NULL)
		return CUBEID_ERR_INVALID_ARG;
	if ((r = entries_expand(e->spiffe_id, sel, td, &id, &w, NULL)) != CUBEID_OK)
		goto out;
	if (cubeid_spiffe_id_validate(id, strlen(id), &reason) != CUBEID_OK) {
		w = cubeid_spiffe_reason_str(reason);
		r = CUBEID_ERR_SPIFFE_ID;
		goto out;
	}
	tdl = strlen(td);
	if (strncmp(id, CUBEID_SPIFFE_SCHEME, 9) != 0 || strncmp(id + 9, td, tdl) != 0 ||
	    (id[9 + tdl] != '/' && id[9 + tdl] != '\0')) {
		w = "the ID is not in the agent's trust domain";
		r = CUBEID_ERR_SPIFFE_ID;
		goto out;
	}
	*out = id;
	id = NULL;
out:
	if (why != NULL)
		*why = w;
	free(id);
	return r;
}

/* ------------------------------------------------------------ overlaps */

/* The value of e's exact selector of type t (tl bytes), or NULL. */
static const char *
exact_value(const struct reg_entry *e, const char *t, size_t tl)
{
	size_t i, l;
	bool bare;

	for (i = 0; i < e->selectors.n; i++) {
		const char *s = e->selectors.v[i];

		if (entries_selector_split(s, &l, &bare) && !bare && l == tl &&
		    strncmp(s, t, tl) == 0)
			return s + tl + 1;
	}
	return NULL;
}

/* Two exact selectors no workload can have both of: the same single-valued
 * type with different values, or one pod label key with two values. */
static bool
exclusive(const char *x, const char *y)
{
	size_t xl, yl;
	bool xb, yb;
	const char *xv, *yv, *xk, *yk;

	if (!entries_selector_split(x, &xl, &xb) || !entries_selector_split(y, &yl, &yb) || xb ||
	    yb || xl != yl || strncmp(x, y, xl) != 0 || strcmp(x + xl, y + yl) == 0)
		return false;
	xv = x + xl + 1;
	yv = y + yl + 1;
	if (xl == strlen("k8s:pod-label") && strncmp(x, "k8s:pod-label", xl) == 0) {
		/* "KEY:VALUE": label keys and values hold no ':' */
		xk = strchr(xv, ':');
		yk = strchr(yv, ':');
		return xk != NULL && yk != NULL && xk - xv == yk - yv &&
		       strncmp(xv, yv, (size_t)(xk - xv)) == 0;
	}
	if (xl == strlen("unix:supplementary_gid") && strncmp(x, "unix:supplementary_gid", xl) == 0)
		return false;
	return true;
}

/* id with every {TYPE} that a or b pins to one exact value filled in; the
 * others ({td} among them) stay as they are. */
static char *
fill_pinned(const char *id, const struct reg_entry *a, const struct reg_entry *b)
{
	size_t cap = strlen(id) + 1, len = 0, vl;
	const char *p = id, *close, *v;
	char *out = malloc(cap), *nb;

	if (out == NULL)
		return NULL;
	while (*p != '\0') {
		v = NULL;
		if (*p == '{' && (close = strchr(p, '}')) != NULL) {
			v = exact_value(a, p + 1, (size_t)(close - p - 1));
			if (v == NULL)
				v = exact_value(b, p + 1, (size_t)(close - p - 1));
		}
		if (v == NULL) {
			out[len++] = *p++;
			continue;
		}
		vl = strlen(v);
		if (len + vl + strlen(close + 1) + 1 > cap) {
			cap = len + vl + strlen(close + 1) + 1;
			if ((nb = realloc(out, cap)) == NULL) {
				free(out);
				return NULL;
			}
			out = nb;
		}
		memcpy(out + len, v, vl);
		len += vl;
		p = close + 1;
	}
	out[len] = '\0';
	return out;
}

int
entries_conflict(const struct reg_entry *a, const struct reg_entry *b, bool *conflict)
{
	char *ia = NULL, *ib = NULL;
	size_t i, j;

	*conflict = false;
	if (a == NULL || b == NULL)
		return CUBEID_ERR_INVALID_ARG;
	/* can one workload have every selector of both? */
	for (i = 0; i < a->selectors.n + b->selectors.n; i++)
		for (j = i + 1; j < a->selectors.n + b->selectors.n; j++) {
			const char *x = i < a->selectors.n ? a->selectors.v[i]
			                                   : b->selectors.v[i - a->selectors.n];
			const char *y = j < a->selectors.n ? a->selectors.v[j]
			                                   : b->selectors.v[j - a->selectors.n];
			if (exclusive(x, y))
				return CUBEID_OK;
		}
	/* then would it get two different IDs?  Placeholders that neither entry
	 * pins stay symbolic: equal templates give equal IDs for every value. */
	if ((ia = fill_pinned(a->spiffe_id, a, b)) == NULL ||
	    (ib = fill_pinned(b->spiffe_id, a, b)) == NULL) {
		free(ia);
		return CUBEID_ERR_NOMEM;
	}
	*conflict = strcmp(ia, ib) != 0;
	free(ia);
	free(ib);
	return CUBEID_OK;
}

/* ------------------------------------------------------------ index */

static int
cmp_pair(const void *a, const void *b)
{
	const struct index_pair *x = a, *y = b;
	int c = strcmp(x->key, y->key);

	if (c != 0)
		return c;
	return x->entry < y->entry ? -1 : x->entry > y->entry;
}

int
entries_index_build(struct entry_set *s)
{
	struct entry_index *ix;
	size_t i, j;

	if ((ix = calloc(1, sizeof(*ix))) == NULL)
		return CUBEID_ERR_NOMEM;
	if (s->n > 0 && ((ix->pairs = malloc(s->n * sizeof(*ix->pairs))) == NULL ||
	                 (ix->bare = malloc(s->n * sizeof(*ix->bare))) == NULL)) {
		entries_index_free(ix);
		return CUBEID_ERR_NOMEM;
	}
	for (i = 0; i < s->n; i++) {
		const struct reg_entry *e = &s->e[i];
		const char *key = NULL;

		for (j = 0; j < e->selectors.n && key == NULL; j++)
			if (!entries_selector_is_bare(e->selectors.v[j]))
				key = e->selectors.v[j];
		if (key != NULL) {
			ix->pairs[ix->n_pairs].key = key;
			ix->pairs[ix->n_pairs++].entry = i;
		} else {
			ix->bare[ix->n_bare++] = i;
		}
	}
	if (ix->n_pairs > 1)
		qsort(ix->pairs, ix->n_pairs, sizeof(*ix->pairs), cmp_pair);
	s->index = ix;
	return CUBEID_OK;
}

/* ------------------------------------------------------------ matching */

static int
cmp_size(const void *a, const void *b)
{
	size_t x = *(const size_t *)a, y = *(const size_t *)b;

	return x < y ? -1 : x > y;
}

/* Candidate entries for sel (sorted, file order): by index, or all. */
static int
candidates(const struct entry_set *s, const struct selector_set *sel, size_t **out, size_t *n_out)
{
	const struct entry_index *ix = s->index;
	size_t *c = NULL, n = 0, cap, i;

	*out = NULL;
	*n_out = 0;
	if (ix == NULL) {
		if (s->n == 0)
			return CUBEID_OK;
		if ((c = malloc(s->n * sizeof(*c))) == NULL)
			return CUBEID_ERR_NOMEM;
		for (i = 0; i < s->n; i++)
			c[i] = i;
		*out = c;
		*n_out = s->n;
		return CUBEID_OK;
	}
	cap = ix->n_bare + 16;
	if ((c = malloc(cap * sizeof(*c))) == NULL)
		return CUBEID_ERR_NOMEM;
	if (ix->n_bare > 0) /* memcpy from NULL is undefined even for 0 bytes */
		memcpy(c, ix->bare, ix->n_bare * sizeof(*c));
	n = ix->n_bare;
	for (i = 0; i < sel->n; i++) {
		size_t lo = 0, hi = ix->n_pairs;

		while (lo < hi) {
			size_t mid = lo + (hi - lo) / 2;
			if (strcmp(ix->pairs[mid].key, sel->v[i]) < 0)
				lo = mid + 1;
			else
				hi = mid;
		}
		for (; lo < ix->n_pairs && strcmp(ix->pairs[lo].key, sel->v[i]) == 0; lo++) {
			if (n == cap) {
				size_t *nc = realloc(c, cap * 2 * sizeof(*c));
				if (nc == NULL) {
					free(c);
					return CUBEID_ERR_NOMEM;
				}
				c = nc;
				cap *= 2;
			}
			c[n++] = ix->pairs[lo].entry;
		}
	}
	/* each entry sits under one key and sel has no duplicates, so the
	 * candidates are distinct; put them back in file order */
	if (n > 1)
		qsort(c, n, sizeof(*c), cmp_size);
	*out = c;
	*n_out = n;
	return CUBEID_OK;
}

int
entries_match(const struct entry_set *s, const struct selector_set *sel, const char *td,
              const struct reg_entry ***matched, char ***ids, size_t *n)
{
	const struct reg_entry **m = NULL;
	char **idv = NULL;
	size_t *cand = NULL, n_cand = 0, k = 0, i;
	int r;

	if (matched != NULL)
		*matched = NULL;
	if (ids != NULL)
		*ids = NULL;
	if (n != NULL)
		*n = 0;
	if (s == NULL || sel == NULL || td == NULL || matched == NULL || ids == NULL || n == NULL)
		return CUBEID_ERR_INVALID_ARG;
	if ((r = candidates(s, sel, &cand, &n_cand)) != CUBEID_OK)
		return r;
	if (n_cand == 0)
		goto out;
	if ((m = calloc(n_cand, sizeof(*m))) == NULL ||
	    (idv = calloc(n_cand, sizeof(*idv))) == NULL) {
		r = CUBEID_ERR_NOMEM;
		goto out;
	}
	for (i = 0; i < n_cand; i++) {
		const struct reg_entry *e = &s->e[cand[i]];
		const char *why = NULL;
		char *id = NULL;

		if (entries_first_missing(e, sel) != NULL)
			continue;
		r = entries_resolve_id(e, sel, td, &id, &why);
		if (r == CUBEID_ERR_NOMEM)
			goto out;
		if (r != CUBEID_OK) {
			cubeid_info("entry %s (%s): selectors match but no ID: %s", e->name,
			            e->source, why != NULL ? why : cubeid_strerror(r));
			r = CUBEID_OK;
			continue;
		}
		m[k] = e;
		idv[k++] = id;
	}
out:
	free(cand);
	if (r != CUBEID_OK || k == 0) {
		for (i = 0; i < k; i++)
			free(idv[i]);
		free(idv);
		free(m);
		return r;
	}
	*matched = m;
	*ids = idv;
	*n = k;
	return CUBEID_OK;
}
