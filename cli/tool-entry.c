/*
 * `cubeid entry ...`: the registration entries the agent would load, and
 * which of them a running process would get, and why.
 */
#include "config.h"

#include "agent/agent.h"
#include "cli/tool.h"

#include <cubeid/log.h>
#include <cubeid/spiffe.h>

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

TOOL_GROUP_DECLARE(entry);

#define DEFAULT_TD     CUBEID_TRUST_DOMAIN_DEFAULT
#define SHA256_MAX_CLI (256u << 20)

static int entry_list(struct tool_ctx *c);
static int entry_show(struct tool_ctx *c);
static int entry_check(struct tool_ctx *c);

static const struct tool_opt list_opts[] = {
        {"entries", 'e', "PATH", "entries file or directory (default: the config's entries)"},
        TOOL_OUTPUT_OPT,
        TOOL_NO_HEADERS_OPT,
        {0},
};
static const struct tool_opt show_opts[] = {
        {"entries", 'e', "PATH", "entries file or directory (default: the config's entries)"},
        TOOL_OUTPUT_OPT,
        {0},
};
static const struct tool_opt check_opts[] = {
        {"pid", 'p', "PID", "the process to attest (without it: check the entries only)"},
        {"entries", 'e', "PATH", "entries file or directory (default: the config's entries)"},
        {"trust-domain", 'd', "TD", "trust domain (default: the config's, or " DEFAULT_TD ")"},
        {"pod-info-file", 0, "FILE", "PodList JSON for the k8s:* selectors"},
        {"kubelet-pods-url", 0, "URL",
         "the kubelet's read-only pod list, e.g. "
         "http://127.0.0.1:10255/pods"},
        TOOL_OUTPUT_OPT,
        {0},
};

const struct tool_cmd tool_entry_cmds[] = {
        {"list", "[--entries PATH] [--config FILE] [-o text|json] [--no-headers]",
         "list the registration entries",
         "Loads the entries as the agent would (a YAML file, or every *.yaml and *.yml\n"
         "file of a directory in name order; see docs/entries.md) and prints a header\n"
         "and one line per entry, tab-separated: name, SPIFFE ID (templates\n"
         "unresolved), selectors, and where it was defined.  A file that does not parse is "
         "reported with its file and line.\n"
         "Without --entries: the config's 'entries', or /etc/cubeid/entries.yaml.",
         list_opts, 0, entry_list},
        {"show", "NAME [--entries PATH] [--config FILE] [-o text|json]", "show one entry in full",
         NULL, show_opts, 1, entry_show},
        {"check", "[--pid PID] [--entries PATH] [--trust-domain TD]",
         "warn of entries that overlap; attest a process and tell which entries it would get",
         "Warns, on standard error, of every two entries that one workload could match\n"
         "with a different SPIFFE ID from each, so it would get two identities (with the\n"
         "FILE:LINE of both).  Two entries are exclusive only when they need different\n"
         "values of a single-valued selector type (k8s:ns, k8s:sa, unix:uid, ...) or of\n"
         "one pod label key.  Without --pid: exit status 0 when there is no such warning,\n"
         "1 when there is.\n"
         "\n"
         "With --pid: attests PID the way the agent attests a caller (its /proc, cgroup\n"
         "and, with a pod list, its pod), prints its selectors, then each entry: 'match'\n"
         "with the SPIFFE ID it resolves to, or 'no' with the first selector the process\n"
         "lacks or why its templated ID cannot be made.  Exit status 0 when some entry\n"
         "matches, 1 when none does.  -o json: pid, uid, gid, selectors, trust_domain,\n"
         "entries (name, match, spiffe_id or why, source) and matched.",
         check_opts, 0, entry_check},
        {0},
};

int
tool_entry(int argc, char **argv)
{
	return tool_dispatch("entry", tool_entry_cmds, argc, argv);
}

/* The config (from --config, else the defaults) and the entries. */
static int
load_all(struct tool_ctx *c, struct agent_config **cfg, struct entry_set **set)
{
	const char *cpath = tool_config_loaded(c), *epath = tool_opt(c, "entries");
	char *err = NULL;
	int r;

	*cfg = NULL;
	*set = NULL;
	r = cpath != NULL ? config_load(cpath, cfg, &err) : config_default(cfg);
	if (r != CUBEID_OK) {
		if (err != NULL)
			tool_err("%s", err);
		else
			tool_err("%s: %s", cpath != NULL ? cpath : "config", cubeid_strerror(r));
		free(err);
		return tool_exit_code(r);
	}
	if (epath == NULL)
		epath = (*cfg)->entries;
	if ((r = entries_load(epath, set, &err)) != CUBEID_OK) {
		if (err != NULL)
			tool_err("%s", err);
		else
			tool_err("%s: %s", epath, cubeid_strerror(r));
		free(err);
		config_free(*cfg);
		*cfg = NULL;
		return tool_exit_code(r);
	}
	return TOOL_EXIT_OK;
}

static void
print_selectors(const struct selector_set *s, const char *sep)
{
	size_t i;

	for (i = 0; i < s->n; i++)
		printf("%s%s", i ? sep : "", s->v[i]);
}

static json_t *
strings_json(char *const *v, size_t n)
{
	json_t *a = json_array();
	size_t i;

	for (i = 0; a != NULL && (n == SIZE_MAX ? v != NULL && v[i] != NULL : i < n); i++)
		if (json_array_append_new(a, json_string(v[i])) != 0) {
			json_decref(a);
			return NULL;
		}
	return a;
}

/* An entry as JSON; with cfg, also its TTLs (the default when unset) and
 * its delivery. */
static json_t *
entry_json(const struct reg_entry *e, const struct agent_config *cfg)
{
	json_t *o = json_pack("{s:s s:s s:o s:s}", "name", e->name, "spiffe_id", e->spiffe_id,
	                      "selectors", strings_json(e->selectors.v, e->selectors.n), "source",
	                      e->source);
	const struct entry_delivery *d = e->delivery;

	if (o == NULL || cfg == NULL)
		return o;
	json_object_set_new(o, "x509_svid_ttl",
	                    json_integer(e->x509_ttl > 0 ? e->x509_ttl : cfg->x509_svid_ttl));
	json_object_set_new(o, "jwt_svid_ttl",
	                    json_integer(e->jwt_ttl > 0 ? e->jwt_ttl : cfg->jwt_svid_ttl));
	json_object_set_new(o, "dns", strings_json(e->dns, SIZE_MAX));
	json_object_set_new(o, "key",
	                    json_string(e->key == KEY_POLICY_RESIDENT ? "resident" : "exportable"));
	if (e->hint != NULL)
		json_object_set_new(o, "hint", json_string(e->hint));
	json_object_set_new(o, "picod_signer", json_boolean(e->picod_signer));
	if (d != NULL)
		json_object_set_new(o, "delivery",
		                    json_pack("{s:s s:s? s:s? s:s? s:o}", "dir", d->dir,
		                              "svid_file", d->svid_file, "key_file", d->key_file,
		                              "bundle_file", d->bundle_file, "command",
		                              strings_json(d->command, SIZE_MAX)));
	return o;
}

static int
entry_list(struct tool_ctx *c)
{
	struct agent_config *cfg;
	struct entry_set *set;
	size_t i;
	int rc;

	if ((rc = load_all(c, &cfg, &set)) != TOOL_EXIT_OK)
		return rc;
	if (c->json) {
		json_t *all = json_array();

		for (i = 0; all != NULL && i < set->n; i++)
			if (json_array_append_new(all, entry_json(&set->e[i], NULL)) != 0) {
				json_decref(all);
				all = NULL;
			}
		rc = tool_print_json(all);
		entries_free(set);
		config_free(cfg);
		return rc;
	}
	if (!c->no_headers)
		printf("NAME\tSPIFFE-ID\tSELECTORS\tSOURCE\n");
	for (i = 0; i < set->n; i++) {
		const struct reg_entry *e = &set->e[i];

		printf("%s\t%s\t", e->name, e->spiffe_id);
		print_selectors(&e->selectors, ",");
		printf("\t%s\n", e->source);
	}
	if (!c->quiet)
		fprintf(stderr, "%zu entries\n", set->n);
	entries_free(set);
	config_free(cfg);
	return TOOL_EXIT_OK;
}

static int
entry_show(struct tool_ctx *c)
{
	struct agent_config *cfg;
	struct entry_set *set;
	const struct reg_entry *e = NULL;
	size_t i;
	int rc;

	if (c->argc != 1)
		return tool_usage_error(c, "name the entry to show");
	if ((rc = load_all(c, &cfg, &set)) != TOOL_EXIT_OK)
		return rc;
	for (i = 0; i < set->n && e == NULL; i++)
		if (strcmp(set->e[i].name, c->argv[0]) == 0)
			e = &set->e[i];
	if (e == NULL) {
		tool_err("no entry named '%s'", c->argv[0]);
		rc = TOOL_EXIT_NOT_FOUND;
		goto out;
	}
	if (c->json) {
		rc = tool_print_json(entry_json(e, cfg));
		goto out;
	}
	printf("name:          %s\n", e->name);
	printf("spiffe_id:     %s\n", e->spiffe_id);
	printf("selectors:     ");
	print_selectors(&e->selectors, ", ");
	printf("\n");
	if (e->x509_ttl > 0)
		printf("x509_svid_ttl: %lds\n", e->x509_ttl);
	else
		printf("x509_svid_ttl: default (%lds)\n", cfg->x509_svid_ttl);
	if (e->jwt_ttl > 0)
		printf("jwt_svid_ttl:  %lds\n", e->jwt_ttl);
	else
		printf("jwt_svid_ttl:  default (%lds)\n", cfg->jwt_svid_ttl);
	if (e->dns != NULL)
		for (i = 0; e->dns[i] != NULL; i++)
			printf("dns:           %s\n", e->dns[i]);
	printf("key:           %s\n", e->key == KEY_POLICY_RESIDENT ? "resident" : "exportable");
	if (e->hint != NULL)
		printf("hint:          %s\n", e->hint);
	printf("picod_signer:  %s\n", e->picod_signer ? "true" : "false");
	if (e->delivery != NULL) {
		const struct entry_delivery *d = e->delivery;

		printf("delivery:      %s\n", d->dir);
		if (d->svid_file != NULL)
			printf("  files:       %s %s %s (modes %04o %04o)\n", d->svid_file,
			       d->key_file, d->bundle_file, d->cert_mode, d->key_mode);
		for (i = 0; i < d->n_jwt; i++)
			printf("  jwt_svid:    %s for audience %s (mode %04o)\n", d->jwt[i].file,
			       d->jwt[i].audience, d->jwt_svid_mode);
		if (d->jwt_bundle_file != NULL)
			printf("  jwt_bundle:  %s (mode %04o)\n", d->jwt_bundle_file,
			       d->jwt_bundle_mode);
		if (d->uid >= 0 || d->gid >= 0)
			printf("  owner:       %ld:%ld\n", d->uid, d->gid);
		if (d->signal != 0)
			printf("  signal:      %d to %s%.0ld\n", d->signal,
			       d->pid_file != NULL ? d->pid_file : "pid ",
			       d->pid_file != NULL ? 0L : d->pid);
		if (d->allow_unsafe_parent)
			printf("  unsafe:      allow_unsafe_parent: a parent of the dir is not "
			       "checked\n");
		if (d->command != NULL) {
			printf("  command:    ");
			for (i = 0; d->command[i] != NULL; i++)
				printf(" %s", d->command[i]);
			printf("\n");
		}
	}
	printf("source:        %s\n", e->source);
out:
	entries_free(set);
	config_free(cfg);
	return rc;
}

/* entry check -o json: the same facts as the text. */
static int
check_json(const struct tool_ctx *c, long pid, const struct peer_info *peer,
           const struct selector_set *sel, const struct entry_set *set, const char *td)
{
	json_t *all = json_array(), *o;
	size_t i, matched = 0;
	int r;

	for (i = 0; all != NULL && i < set->n; i++) {
		const struct reg_entry *e = &set->e[i];
		const char *missing = entries_first_missing(e, sel), *why = NULL;
		char *id = NULL;

		if (missing != NULL) {
			o = json_pack("{s:s s:b s:s s:s}", "name", e->name, "match", 0, "lacks",
			              missing, "source", e->source);
		} else if ((r = entries_resolve_id(e, sel, td, &id, &why)) != CUBEID_OK) {
			if (r == CUBEID_ERR_NOMEM) {
				json_decref(all);
				return tool_fail(r, "resolving %s", e->name);
			}
			o = json_pack("{s:s s:b s:s s:s}", "name", e->name, "match", 0, "why",
			              why != NULL ? why : cubeid_strerror(r), "source", e->source);
		} else {
			o = json_pack("{s:s s:b s:s s:s}", "name", e->name, "match", 1, "spiffe_id",
			              id, "source", e->source);
			matched++;
		}
		free(id);
		if (json_array_append_new(all, o) != 0) {
			json_decref(all);
			all = NULL;
		}
	}
	r = tool_print_json(json_pack("{s:I s:I s:I s:o s:s s:o s:I}", "pid", (json_int_t)pid,
	                              "uid", (json_int_t)peer->uid, "gid", (json_int_t)peer->gid,
	                              "selectors", strings_json(sel->v, sel->n), "trust_domain", td,
	                              "entries", all, "matched", (json_int_t)matched));
	(void)c;
	return r != TOOL_EXIT_OK ? r : matched > 0 ? TOOL_EXIT_OK : TOOL_EXIT_FAILURE;
}

/* Warn of every two entries that one workload could match with a different
 * SPIFFE ID from each; *n: how many.  Quadratic in the entries. */
static int
warn_overlaps(const struct entry_set *set, size_t *n)
{
	size_t i, j;
	bool conflict;
	int r;

	*n = 0;
	for (i = 0; i < set->n; i++)
		for (j = i + 1; j < set->n; j++) {
			const struct reg_entry *a = &set->e[i], *b = &set->e[j];

			if ((r = entries_conflict(a, b, &conflict)) != CUBEID_OK)
				return r;
			if (!conflict)
				continue;
			fprintf(stderr,
			        "warning: %s: entry '%s' and %s: entry '%s' can both match one "
			        "workload, with different SPIFFE IDs (%s, %s)\n",
			        a->source, a->name, b->source, b->name, a->spiffe_id, b->spiffe_id);
			(*n)++;
		}
	return CUBEID_OK;
}

static int
entry_check(struct tool_ctx *c)
{
	const char *pid_s = tool_opt(c, "pid"), *td = tool_opt(c, "trust-domain");
	struct agent_config *cfg = NULL;
	struct entry_set *set = NULL;
	struct attest_opts ao = {0};
	struct selector_set sel = {0};
	struct peer_info peer;
	size_t i, matched = 0;
	char *end;
	long pid;
	int r, rc;

	if (pid_s == NULL) {
		if ((rc = load_all(c, &cfg, &set)) != TOOL_EXIT_OK)
			return rc;
		if ((r = warn_overlaps(set, &matched)) != CUBEID_OK)
			rc = tool_fail(r, "checking the entries");
		else {
			printf("%zu entries, %zu overlaps\n", set->n, matched);
			rc = matched == 0 ? TOOL_EXIT_OK : TOOL_EXIT_FAILURE;
		}
		goto out;
	}
	errno = 0;
	pid = strtol(pid_s, &end, 10);
	if (errno != 0 || *end != '\0' || end == pid_s || pid <= 0 || pid > INT_MAX)
		return tool_usage_error(c, "bad --pid '%s'", pid_s);
	if ((rc = load_all(c, &cfg, &set)) != TOOL_EXIT_OK)
		return rc;
	if ((r = warn_overlaps(set, &matched)) != CUBEID_OK) {
		rc = tool_fail(r, "checking the entries");
		goto out;
	}
	matched = 0;
	if (td == NULL)
		td = cfg->trust_domain != NULL ? cfg->trust_domain : DEFAULT_TD;
	ao.proc_root = "/proc";
	ao.pod_info_file = tool_opt(c, "pod-info-file") != NULL ? tool_opt(c, "pod-info-file")
	                                                        : cfg->pod_info_file;
	ao.kubelet_pods_url = tool_opt(c, "kubelet-pods-url") != NULL
	                              ? tool_opt(c, "kubelet-pods-url")
	                              : cfg->kubelet_pods_url;
	ao.kubelet_token_file = cfg->kubelet_token_file;
	ao.kubelet_ca_file = cfg->kubelet_ca_file;
	ao.sha256_max_bytes =
	        cfg->attest_sha256_max < SHA256_MAX_CLI ? cfg->attest_sha256_max : SHA256_MAX_CLI;
	if ((r = attest_pid((pid_t)pid, &ao, &peer, &sel)) != CUBEID_OK) {
		rc = tool_fail(r, "attesting pid %ld", pid);
		goto out;
	}
	if (c->json) {
		rc = check_json(c, pid, &peer, &sel, set, td);
		goto out;
	}
	printf("pid %ld: uid %lu, gid %lu\n", pid, (unsigned long)peer.uid,
	       (unsigned long)peer.gid);
	printf("selectors:\n");
	for (i = 0; i < sel.n; i++)
		printf("  %s\n", sel.v[i]);
	printf("entries (trust domain %s):\n", td);
	for (i = 0; i < set->n; i++) {
		const struct reg_entry *e = &set->e[i];
		const char *missing = entries_first_missing(e, &sel), *why = NULL;
		char *id = NULL;

		if (missing != NULL) {
			printf("  no     %s: lacks %s%s (%s)\n", e->name, missing,
			       strchr(strchr(missing, ':') + 1, ':') == NULL ? " (any value)" : "",
			       e->source);
			continue;
		}
		r = entries_resolve_id(e, &sel, td, &id, &why);
		if (r == CUBEID_ERR_NOMEM) {
			rc = tool_fail(r, "resolving %s", e->name);
			goto out;
		}
		if (r != CUBEID_OK) {
			printf("  no     %s: selectors match, but %s: %s (%s)\n", e->name,
			       e->spiffe_id, why != NULL ? why : cubeid_strerror(r), e->source);
			continue;
		}
		printf("  match  %s: %s (%s)\n", e->name, id, e->source);
		free(id);
		matched++;
	}
	printf("%zu of %zu entries match\n", matched, set->n);
	rc = matched > 0 ? TOOL_EXIT_OK : TOOL_EXIT_FAILURE;
out:
	selector_set_clear(&sel);
	entries_free(set);
	config_free(cfg);
	return rc;
}
