/*
 * Selector sets: sorted arrays of "type:value" strings with no duplicates,
 * so that membership and "first of a type" are binary searches.
 */
#include "config.h"

#include "agent/agent.h"

#include <stdlib.h>
#include <string.h>

/* The selector types attestation (attest.c) produces. */
static const char *const known_types[] = {
        "unix:uid",
        "unix:gid",
        "unix:user",
        "unix:group",
        "unix:supplementary_gid",
        "unix:path",
        "unix:sha256",
        "unix:seclabel",
        "systemd:id",
        "k8s:ns",
        "k8s:sa",
        "k8s:pod-uid",
        "k8s:pod-name",
        "k8s:pod-label",
        "k8s:container-name",
        "k8s:container-image",
        "k8s:node-name",
        NULL,
};

const char *
selector_type_name(size_t i)
{
	return i < sizeof(known_types) / sizeof(known_types[0]) ? known_types[i] : NULL;
}

bool
selector_type_known(const char *type)
{
	size_t i;

	if (type == NULL)
		return false;
	for (i = 0; known_types[i] != NULL; i++)
		if (strcmp(known_types[i], type) == 0)
			return true;
	return false;
}

/* Index of the first element >= key (strcmp order). */
static size_t
lower_bound(const struct selector_set *s, const char *key)
{
	size_t lo = 0, hi = s->n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (strcmp(s->v[mid], key) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

int
selector_set_add(struct selector_set *s, const char *type, const char *value)
{
	size_t tlen, vlen, len, pos, i;
	char *sel, **nv;

	if (s == NULL || type == NULL || type[0] == '\0')
		return CUBEID_ERR_INVALID_ARG;
	tlen = strnlen(type, SELECTOR_MAX_LEN + 1);
	vlen = value != NULL ? strnlen(value, SELECTOR_MAX_LEN + 1) : 0;
	len = tlen + (value != NULL ? 1 + vlen : 0);
	if (len > SELECTOR_MAX_LEN)
		return CUBEID_ERR_TOO_LARGE;
	/* Control characters would make logs and CLI output ambiguous. */
	for (i = 0; i < tlen; i++)
		if ((unsigned char)type[i] < 0x20 || type[i] == 0x7f)
			return CUBEID_ERR_PARSE;
	for (i = 0; i < vlen; i++)
		if ((unsigned char)value[i] < 0x20 || value[i] == 0x7f)
			return CUBEID_ERR_PARSE;
	sel = malloc(len + 1);
	if (sel == NULL)
		return CUBEID_ERR_NOMEM;
	memcpy(sel, type, tlen);
	if (value != NULL) {
		sel[tlen] = ':';
		memcpy(sel + tlen + 1, value, vlen);
	}
	sel[len] = '\0';
	pos = lower_bound(s, sel);
	if (pos < s->n && strcmp(s->v[pos], sel) == 0) {
		free(sel); /* already there */
		return CUBEID_OK;
	}
	if (s->n >= SELECTOR_SET_MAX) {
		free(sel);
		return CUBEID_ERR_TOO_LARGE;
	}
	nv = realloc(s->v, (s->n + 1) * sizeof(*nv));
	if (nv == NULL) {
		free(sel);
		return CUBEID_ERR_NOMEM;
	}
	s->v = nv;
	memmove(s->v + pos + 1, s->v + pos, (s->n - pos) * sizeof(*nv));
	s->v[pos] = sel;
	s->n++;
	return CUBEID_OK;
}

bool
selector_set_has(const struct selector_set *s, const char *selector)
{
	size_t pos;

	if (s == NULL || selector == NULL || s->n == 0)
		return false;
	pos = lower_bound(s, selector);
	return pos < s->n && strcmp(s->v[pos], selector) == 0;
}

const char *
selector_set_get(const struct selector_set *s, const char *type)
{
	char key[SELECTOR_MAX_LEN + 2];
	size_t tlen, pos;

	if (s == NULL || type == NULL || s->n == 0)
		return NULL;
	tlen = strnlen(type, SELECTOR_MAX_LEN + 1);
	if (tlen > SELECTOR_MAX_LEN)
		return NULL;
	memcpy(key, type, tlen);
	key[tlen] = ':';
	key[tlen + 1] = '\0';
	/* "type:" sorts before every "type:value"; the first of them follows. */
	pos = lower_bound(s, key);
	if (pos < s->n && strncmp(s->v[pos], key, tlen + 1) == 0)
		return s->v[pos] + tlen + 1;
	return NULL;
}

void
selector_set_clear(struct selector_set *s)
{
	size_t i;

	if (s == NULL)
		return;
	for (i = 0; i < s->n; i++)
		free(s->v[i]);
	free(s->v);
	s->v = NULL;
	s->n = 0;
}
