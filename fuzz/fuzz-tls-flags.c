/*
 * libFuzzer target: the TLS loader's flag parser and allow-list entries
 * (include/cubeid/tls.h).  The input is split at newlines into argv; the
 * parser must never read past it, and every allow-list entry it accepts
 * must behave as documented: an exact ID matches itself, a trust domain
 * matches IDs under it, "X/" + "*" matches X/a but not X itself.
 */
#include "config.h"

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cubeid/log.h>
#include <cubeid/tls.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static cubeid_spiffe_id *
id_of(const char *s)
{
	cubeid_spiffe_id *id = NULL;

	if (cubeid_spiffe_id_parse(s, strlen(s), &id, NULL) != CUBEID_OK)
		return NULL;
	return id;
}

static void
check_entry(const char *e)
{
	size_t len = strlen(e);
	char *x = NULL;
	cubeid_spiffe_id *id = NULL, *sub = NULL;

	if (cubeid_tls_allow_validate(e, NULL) != CUBEID_OK) {
		id = id_of("spiffe://cluster.local/ns/a/sa/b");
		if (cubeid_tls_allow_match(e, id)) /* an invalid entry matches nothing */
			__builtin_trap();
		cubeid_spiffe_id_free(id);
		return;
	}
	if (len >= 2 && strcmp(e + len - 2, "/*") == 0) {
		if (asprintf(&x, "%.*s/a", (int)(len - 2), e) < 0)
			return;
		if ((sub = id_of(x)) != NULL && !cubeid_tls_allow_match(e, sub))
			__builtin_trap();
		x[len - 2] = '\0';
		if ((id = id_of(x)) != NULL && cubeid_tls_allow_match(e, id))
			__builtin_trap();
	} else {
		if ((id = id_of(e)) == NULL) /* a valid entry is a valid ID */
			__builtin_trap();
		if (cubeid_spiffe_id_is_trust_domain_id(id)) {
			if (asprintf(&x, "%s/a", e) < 0)
				goto out;
			if ((sub = id_of(x)) != NULL && !cubeid_tls_allow_match(e, sub))
				__builtin_trap();
		} else if (!cubeid_tls_allow_match(e, id)) {
			__builtin_trap();
		}
	}
out:
	free(x);
	cubeid_spiffe_id_free(id);
	cubeid_spiffe_id_free(sub);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct cubeid_tls_flags f;
	struct cubeid_tls_config cfg;
	char *buf, *argv[66], *p;
	int argc = 0, i;

	if (size > 4096)
		return 0;
	cubeid_log_set_level(CUBEID_LOG_ERROR - 1); /* quiet */
	if ((buf = malloc(size + 1)) == NULL)
		return 0;
	memcpy(buf, data, size);
	buf[size] = '\0';
	check_entry(buf);
	argv[argc++] = "prog";
	for (p = buf; argc < 65;) {
		char *nl = strchr(p, '\n');

		argv[argc++] = p;
		if (nl == NULL)
			break;
		*nl = '\0';
		p = nl + 1;
	}
	argv[argc] = NULL;
	cubeid_tls_flags_init(&f);
	if (cubeid_tls_flags_parse(&f, &argc, argv) == CUBEID_OK) {
		if (argv[argc] != NULL)
			__builtin_trap();
		for (i = 0; i < (int)f.n_allow; i++)
			check_entry(f.allow[i]);
		(void)cubeid_tls_flags_config(&f, &cfg);
	}
	free(buf);
	return 0;
}
