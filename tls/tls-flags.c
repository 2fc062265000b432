/*
 * --enable-mtls and the --mtls-* flags, named as AgentCube's Go components
 * name them, so that a C program gains them with one call.
 */
#include "config.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include <cubeid/log.h>

#include "tls/tls-internal.h"

enum flag_kind { F_BOOL, F_STR, F_ALLOW, F_LONG };

struct flag {
	const char *name;
	enum flag_kind kind;
	size_t off; /* into struct cubeid_tls_flags */
	const char *arg, *help;
};

#define OFF(m) offsetof(struct cubeid_tls_flags, m)

static const struct flag flags[] = {
        {"--enable-mtls", F_BOOL, OFF(enable), NULL, "turn on mTLS (the other flags need it)"},
        {"--mtls-cert-file", F_STR, OFF(cert_file), "FILE", "certificate chain, leaf first (PEM)"},
        {"--mtls-key-file", F_STR, OFF(key_file), "FILE|URI",
         "private key (PEM), or a PKCS#11 URI of a key in a token"},
        {"--mtls-ca-file", F_STR, OFF(ca_file), "FILE",
         "CA certificates peers must chain to (PEM)"},
        {"--mtls-socket", F_STR, OFF(socket), "SOCKET",
         "Workload API socket instead of the files (env: $SPIFFE_ENDPOINT_SOCKET)"},
        {"--mtls-spiffe-id", F_STR, OFF(spiffe_id), "ID", "with --mtls-socket: which SVID to use"},
        {"--mtls-allow-id", F_ALLOW, 0, "ID",
         "accept this peer: spiffe://td/path, spiffe://td (trust domain) or spiffe://td/prefix/*; "
         "repeat it"},
        {"--mtls-pin-file", F_STR, OFF(pin_file), "FILE", "PIN file for a PKCS#11 key"},
        {"--mtls-tls12", F_BOOL, OFF(tls12), NULL, "also accept TLS 1.2 (default: TLS 1.3 only)"},
        {"--mtls-check-interval", F_LONG, OFF(check_interval_ms), "MS",
         "periodic check of the files, in ms (default 30000; -1: inotify only)"},
};
#define N_FLAGS (sizeof(flags) / sizeof(flags[0]))

void
cubeid_tls_flags_init(struct cubeid_tls_flags *f)
{
	if (f != NULL)
		memset(f, 0, sizeof(*f));
}

void
cubeid_tls_flags_usage(FILE *out)
{
	size_t i;

	for (i = 0; i < N_FLAGS; i++) {
		char left[64];

		snprintf(left, sizeof(left), "%s%s%s", flags[i].name, flags[i].arg ? " " : "",
		         flags[i].arg ? flags[i].arg : "");
		fprintf(out, "  %-32s %s\n", left, flags[i].help);
	}
}

static const struct flag *
find(const char *arg, const char **value)
{
	size_t i, n;

	*value = NULL;
	for (i = 0; i < N_FLAGS; i++) {
		n = strlen(flags[i].name);
		if (strncmp(arg, flags[i].name, n) != 0)
			continue;
		if (arg[n] == '\0')
			return &flags[i];
		if (arg[n] == '=') {
			*value = arg + n + 1;
			return &flags[i];
		}
	}
	return NULL;
}

static int
set(struct cubeid_tls_flags *f, const struct flag *fl, const char *value)
{
	char *end;
	long v;

	switch (fl->kind) {
	case F_BOOL:
		if (value != NULL) {
			cubeid_error("%s takes no value", fl->name);
			return CUBEID_ERR_CONFIG;
		}
		*(bool *)((char *)f + fl->off) = true;
		return CUBEID_OK;
	case F_STR:
		if (*(const char **)((char *)f + fl->off) != NULL) {
			cubeid_error("%s given twice", fl->name);
			return CUBEID_ERR_CONFIG;
		}
		if (*value == '\0') {
			cubeid_error("%s: empty value", fl->name);
			return CUBEID_ERR_CONFIG;
		}
		*(const char **)((char *)f + fl->off) = value;
		return CUBEID_OK;
	case F_ALLOW:
		if (f->n_allow >= CUBEID_TLS_ALLOW_MAX) {
			cubeid_error("%s: more than %d entries", fl->name, CUBEID_TLS_ALLOW_MAX);
			return CUBEID_ERR_CONFIG;
		}
		f->allow[f->n_allow++] = value;
		return CUBEID_OK;
	case F_LONG:
		errno = 0;
		v = strtol(value, &end, 10);
		if (errno != 0 || end == value || *end != '\0' || v < -1 || v > 86400000) {
			cubeid_error("%s: not a number of milliseconds: \"%s\"", fl->name, value);
			return CUBEID_ERR_CONFIG;
		}
		*(long *)((char *)f + fl->off) = v;
		return CUBEID_OK;
	}
	return CUBEID_ERR_INTERNAL;
}

int
cubeid_tls_flags_parse(struct cubeid_tls_flags *f, int *argc, char **argv)
{
	int i, o, n, rc = CUBEID_OK;

	if (f == NULL || argc == NULL || argv == NULL || *argc < 0)
		return CUBEID_ERR_INVALID_ARG;
	n = *argc;
	for (i = o = 0; i < n; i++) {
		const struct flag *fl;
		const char *value;

		if (i == 0 || argv[i] == NULL || strncmp(argv[i], "--", 2) != 0 ||
		    (fl = find(argv[i], &value)) == NULL) {
			if (argv[i] != NULL && strcmp(argv[i], "--") == 0 && i > 0) {
				while (i < n)
					argv[o++] = argv[i++];
				break;
			}
			argv[o++] = argv[i];
			continue;
		}
		if (fl->kind != F_BOOL && value == NULL) {
			if (i + 1 >= n || argv[i + 1] == NULL) {
				cubeid_error("%s needs a value", fl->name);
				rc = CUBEID_ERR_CONFIG;
				break;
			}
			value = argv[++i];
		}
		if ((rc = set(f, fl, value)) != CUBEID_OK)
			break;
	}
	if (rc != CUBEID_OK)
		return rc;
	*argc = o;
	argv[o] = NULL;
	return CUBEID_OK;
}

int
cubeid_tls_flags_config(const struct cubeid_tls_flags *f, struct cubeid_tls_config *cfg)
{
	bool files, any;
	const char *why;
	size_t i;

	if (f == NULL || cfg == NULL)
		return CUBEID_ERR_INVALID_ARG;
	memset(cfg, 0, sizeof(*cfg));
	files = f->cert_file != NULL || f->key_file != NULL || f->ca_file != NULL;
	any = files || f->socket != NULL || f->spiffe_id != NULL || f->pin_file != NULL ||
	      f->n_allow > 0 || f->tls12 || f->check_interval_ms != 0;
	if (!f->enable) {
		if (any) {
			cubeid_error("--mtls-* flags need --enable-mtls");
			return CUBEID_ERR_CONFIG;
		}
		return CUBEID_OK;
	}
	if (f->socket != NULL && files) {
		cubeid_error("--mtls-socket and the --mtls-*-file flags are exclusive");
		return CUBEID_ERR_CONFIG;
	}
	if (f->socket == NULL &&
	    (f->cert_file == NULL || f->key_file == NULL || f->ca_file == NULL)) {
		cubeid_error("--enable-mtls needs --mtls-cert-file, --mtls-key-file and "
		             "--mtls-ca-file, or --mtls-socket");
		return CUBEID_ERR_CONFIG;
	}
	if (f->spiffe_id != NULL && f->socket == NULL) {
		cubeid_error("--mtls-spiffe-id needs --mtls-socket");
		return CUBEID_ERR_CONFIG;
	}
	if (f->n_allow == 0) {
		cubeid_error("--enable-mtls needs at least one --mtls-allow-id");
		return CUBEID_ERR_CONFIG;
	}
	for (i = 0; i < f->n_allow; i++)
		if (cubeid_tls_allow_validate(f->allow[i], &why) != CUBEID_OK) {
			cubeid_error("--mtls-allow-id \"%s\": %s", f->allow[i], why);
			return CUBEID_ERR_CONFIG;
		}
	cfg->cert_file = f->cert_file;
	cfg->key_file = f->key_file;
	cfg->ca_file = f->ca_file;
	cfg->pin_file = f->pin_file;
	cfg->socket = f->socket;
	cfg->spiffe_id = f->spiffe_id;
	cfg->allow = f->allow;
	cfg->n_allow = f->n_allow;
	cfg->tls12 = f->tls12;
	cfg->check_interval_ms = f->check_interval_ms;
	return CUBEID_OK;
}

int
cubeid_tls_new_from_flags(const struct cubeid_tls_flags *f, cubeid_tls **out)
{
	struct cubeid_tls_config cfg;
	int rc;

	if (out != NULL)
		*out = NULL;
	if (f == NULL || out == NULL)
		return CUBEID_ERR_INVALID_ARG;
	if ((rc = cubeid_tls_flags_config(f, &cfg)) != CUBEID_OK || !f->enable)
		return rc;
	return cubeid_tls_new(&cfg, out);
}
