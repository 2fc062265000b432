/*
 * Small helpers over libyaml's document API shared by config.c and
 * entries.c: bounded file reads, one-document loading, "FILE:LINE: why"
 * errors and strict scalar conversions.
 *
 * Walkers over a loaded document only ever descend a fixed number of levels
 * and check each node's type, so aliases (even a node that contains
 * itself) cannot make them loop or blow up.
 */
#ifndef CUBEID_YAML_UTIL_H
#define CUBEID_YAML_UTIL_H

#include <stdbool.h>
#include <stddef.h>

#include <yaml.h>

/* Read path (a regular file, following symlinks) into a new NUL-terminated
 * buffer of at most max bytes: CUBEID_ERR_TOO_LARGE beyond, _NOT_FOUND,
 * _IO.  *err gets "PATH: why" on failure (caller frees). */
int yu_read_file(const char *path, size_t max, char **buf, size_t *len, char **err);

/* Deepest nesting of mappings and sequences (block or flow) yu_load()
 * accepts; our files need a handful of levels. */
#define YU_DEPTH_MAX 64

/* Parse exactly one YAML document from buf into *doc (the caller calls
 * yaml_document_delete on success).  An empty stream gives a document with
 * no root.  A stream nested deeper than YU_DEPTH_MAX is refused before it
 * is loaded.  On error *err is "NAME:LINE: problem" and the result is
 * CUBEID_ERR_CONFIG. */
int yu_load(const char *buf, size_t len, const char *name, yaml_document_t *doc, char **err);

/* Set *err to "NAME:LINE: message" (line of node n, 1-based; no line if n
 * is NULL) and return CUBEID_ERR_CONFIG, or CUBEID_ERR_NOMEM. */
int yu_err(char **err, const char *name, const yaml_node_t *n, const char *fmt, ...)
        __attribute__((format(printf, 4, 5)));

/* 1-based line of n. */
unsigned long yu_line(const yaml_node_t *n);

/* The scalar's text (borrowed), or NULL if n is not a scalar or holds a NUL
 * byte. */
const char *yu_scalar(const yaml_node_t *n);
/* True for a plain (unquoted) scalar. */
bool yu_plain(const yaml_node_t *n);
/* True for a plain "~", "null" or empty scalar. */
bool yu_null(const yaml_node_t *n);

/* Strict conversions; each returns 0 or CUBEID_ERR_PARSE. */
int yu_bool(const yaml_node_t *n, bool *v);                              /* plain true/false */
int yu_ulong(const yaml_node_t *n, unsigned long max, unsigned long *v); /* plain digits */
int yu_size(const yaml_node_t *n, size_t max, size_t *v); /* 123, 64KiB, 4MiB, 1GiB */
int yu_duration(const yaml_node_t *n, long *seconds);     /* cubeid_duration_parse */

#endif
