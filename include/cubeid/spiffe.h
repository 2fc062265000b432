/*
 * cubeid SPIFFE IDs (spiffe/spiffe standards/SPIFFE-ID.md).
 *
 * A SPIFFE ID is "spiffe://" + trust domain + optional path:
 *   - the scheme is exactly "spiffe" in lowercase;
 *   - the trust domain is 1..255 bytes of [a-z0-9.-_]: no userinfo, no port,
 *     no percent-encoding, no upper case;
 *   - the path is empty or a sequence of "/" + segment, each segment made of
 *     [a-zA-Z0-9.-_], never empty, never "." or "..", with no trailing "/";
 *   - no query, no fragment;
 *   - at most 2048 bytes in all.
 *
 * Every validating function returns CUBEID_ERR_SPIFFE_ID for input that breaks
 * a rule and, when why is not NULL, stores the rule in *why
 * (cubeid_spiffe_reason_str() turns it into a message).  On success *why is
 * CUBEID_SPIFFE_OK.  A NULL input pointer is CUBEID_ERR_INVALID_ARG.
 */
#ifndef CUBEID_SPIFFE_H
#define CUBEID_SPIFFE_H

#include <stdbool.h>
#include <stddef.h>

#include <cubeid/error.h>

#ifdef __cplusplus
extern "C" {
#endif

#define CUBEID_SPIFFE_ID_MAX    2048 /* bytes, the whole URI */
#define CUBEID_TRUST_DOMAIN_MAX 255  /* bytes, the host part */
#define CUBEID_SPIFFE_SCHEME    "spiffe://"
/* The default trust domain, as AgentCube's AGENTCUBE_SPIFFE_TRUST_DOMAIN. */
#define CUBEID_TRUST_DOMAIN_DEFAULT "cluster.local"

/* Which rule a string broke. */
typedef enum {
	CUBEID_SPIFFE_OK = 0,
	CUBEID_SPIFFE_EMPTY,          /* the string is empty */
	CUBEID_SPIFFE_TOO_LONG,       /* longer than 2048 bytes */
	CUBEID_SPIFFE_NUL,            /* contains a NUL byte */
	CUBEID_SPIFFE_BAD_SCHEME,     /* does not start with "spiffe://" */
	CUBEID_SPIFFE_TD_MISSING,     /* empty trust domain */
	CUBEID_SPIFFE_TD_TOO_LONG,    /* trust domain longer than 255 bytes */
	CUBEID_SPIFFE_TD_CHAR,        /* trust domain char not in [a-z0-9.-_] */
	CUBEID_SPIFFE_TD_UPPERCASE,   /* trust domain has an upper-case letter */
	CUBEID_SPIFFE_USERINFO,       /* "user@" in the authority */
	CUBEID_SPIFFE_PORT,           /* ":port" in the authority */
	CUBEID_SPIFFE_PERCENT,        /* percent-encoded character */
	CUBEID_SPIFFE_QUERY,          /* "?query" */
	CUBEID_SPIFFE_FRAGMENT,       /* "#fragment" */
	CUBEID_SPIFFE_EMPTY_SEGMENT,  /* "//" in the path */
	CUBEID_SPIFFE_DOT_SEGMENT,    /* "/." or "/.." segment */
	CUBEID_SPIFFE_TRAILING_SLASH, /* path ends with "/" */
	CUBEID_SPIFFE_PATH_CHAR,      /* path char not in [a-zA-Z0-9.-_] */
	CUBEID_SPIFFE_PATH_NO_SLASH,  /* a path given alone does not start with "/" */
	CUBEID_SPIFFE_K8S_NAME,       /* not a valid Kubernetes namespace / SA name */
} cubeid_spiffe_reason;

/* A static message for reason; never NULL. */
const char *cubeid_spiffe_reason_str(cubeid_spiffe_reason reason);

typedef struct cubeid_spiffe_id cubeid_spiffe_id;

/*
 * Check s[0..len) without allocating.  s need not be NUL-terminated.
 */
int cubeid_spiffe_id_validate(const char *s, size_t len, cubeid_spiffe_reason *why);

/* Check a bare trust domain name ("example.org", not "spiffe://..."). */
int cubeid_trust_domain_validate(const char *td, size_t len, cubeid_spiffe_reason *why);

/* Check a path ("" or "/a/b"). */
int cubeid_spiffe_path_validate(const char *path, size_t len, cubeid_spiffe_reason *why);

/*
 * Parse s[0..len) into a new ID; the caller frees *out with
 * cubeid_spiffe_id_free().  s need not be NUL-terminated.
 */
int cubeid_spiffe_id_parse(const char *s, size_t len, cubeid_spiffe_id **out,
                           cubeid_spiffe_reason *why);

/* Build "spiffe://" td path.  path is "" / NULL (no path) or "/seg/seg".
 * New ID in *out, caller frees. */
int cubeid_spiffe_id_from_parts(const char *td, const char *path, cubeid_spiffe_id **out,
                                cubeid_spiffe_reason *why);

/*
 * Build "spiffe://<td>/ns/<ns>/sa/<sa>".  ns must be a Kubernetes namespace
 * name (RFC 1123 label: [a-z0-9-], 1..63, alphanumeric at both ends) and sa
 * a service account name (RFC 1123 subdomain: labels joined by ".", 1..253);
 * anything else is CUBEID_ERR_SPIFFE_ID with CUBEID_SPIFFE_K8S_NAME.
 * New ID in *out, caller frees.
 */
int cubeid_spiffe_id_k8s(const char *td, const char *ns, const char *sa, cubeid_spiffe_id **out,
                         cubeid_spiffe_reason *why);

/* A copy of id (caller frees), or NULL when out of memory. */
cubeid_spiffe_id *cubeid_spiffe_id_dup(const cubeid_spiffe_id *id);
void cubeid_spiffe_id_free(cubeid_spiffe_id *id);

/* Borrowed, NUL-terminated strings owned by id, valid until it is freed. */
const char *cubeid_spiffe_id_string(const cubeid_spiffe_id *id);       /* whole ID */
size_t cubeid_spiffe_id_len(const cubeid_spiffe_id *id);               /* strlen of it */
const char *cubeid_spiffe_id_trust_domain(const cubeid_spiffe_id *id); /* "example.org" */
const char *cubeid_spiffe_id_path(const cubeid_spiffe_id *id);         /* "" or "/a/b" */

/* True if id's trust domain is exactly td (a bare name).  NULLs give false. */
bool cubeid_spiffe_id_member_of(const cubeid_spiffe_id *id, const char *td);
/* True if both are the same ID (byte for byte; IDs are canonical). */
bool cubeid_spiffe_id_equal(const cubeid_spiffe_id *a, const cubeid_spiffe_id *b);
/* True if the ID has no path (a trust domain's own ID, e.g. a CA's). */
bool cubeid_spiffe_id_is_trust_domain_id(const cubeid_spiffe_id *id);

#ifdef __cplusplus
}
#endif
#endif
