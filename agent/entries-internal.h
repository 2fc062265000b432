/* Shared by entries.c (loading) and entries-match.c (matching). */
#ifndef CUBEID_ENTRIES_INTERNAL_H
#define CUBEID_ENTRIES_INTERNAL_H

#include "agent/agent.h"

#include <yaml.h>

struct entry_index;

/* The parser's context: the document, its name for messages, the error. */
struct entries_ctx {
	yaml_document_t *doc;
	const char *name;
	char **err;
};
/* v as a non-empty string (a copy in *out) or a "NAME:LINE:" error. */
int entries_get_str(struct entries_ctx *c, yaml_node_t *v, const char *key, char **out);
/* s is non-empty, printable and at most max bytes. */
bool entries_printable(const char *s, size_t max);
/* An entry's delivery: mapping m into e->delivery (entries-delivery.c). */
int entries_parse_delivery(struct entries_ctx *c, yaml_node_t *m, struct reg_entry *e);

/* Split an entry selector "ns:name[:value]": *type_len is the length of
 * "ns:name", *bare true when no value follows.  False if malformed. */
bool entries_selector_split(const char *s, size_t *type_len, bool *bare);
bool entries_selector_is_bare(const char *s);

/* Fill id's placeholders ({td}, {TYPE}) from sel and td into a new string
 * (*out, caller frees).  sel NULL (load time): every {TYPE} becomes "x" so
 * the rest of the ID can be checked.  *why: a static reason on failure;
 * *bad_type (may be NULL): where an unusable placeholder starts.
 * CUBEID_ERR_NOT_FOUND when sel lacks a needed type, CUBEID_ERR_SPIFFE_ID
 * otherwise. */
int entries_expand(const char *id, const struct selector_set *sel, const char *td, char **out,
                   const char **why, const char **bad_type);

/* Build s->index (entries filed under one exact selector each). */
int entries_index_build(struct entry_set *s);
void entries_index_free(struct entry_index *ix);

#endif
