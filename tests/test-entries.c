/*
 * Registration entries: the documented example, strict parsing with
 * file:line errors, bare-type selectors, templates (a missing or unsafe
 * value means no match), directories, and 10,000 entries through the
 * index agreeing with a linear scan.
 */
#include "config.h"

#include "agent/agent.h"

#include <cubeid/error.h>

#include <check.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char fx[PATH_MAX];

static struct entry_set *
parse_ok(const char *yaml)
{
	struct entry_set *s = NULL;
	char *err = NULL;
	int r = entries_parse(yaml, strlen(yaml), "t.yaml", &s, &err);

	ck_assert_msg(r == 0, "entries_parse: %d: %s", r, err != NULL ? err : "");
	ck_assert_ptr_null(err);
	return s;
}

/* Parse must fail with an error message equal to want. */
static void
parse_fails(const char *yaml, const char *want)
{
	struct entry_set *s = (void *)1;
	char *err = NULL;
	int r = entries_parse(yaml, strlen(yaml), "t.yaml", &s, &err);

	ck_assert_int_ne(r, 0);
	ck_assert_ptr_null(s);
	ck_assert_ptr_nonnull(err);
	ck_assert_msg(strstr(err, want) != NULL, "error '%s' lacks '%s'", err, want);
	free(err);
}

static void
sel_add(struct selector_set *s, const char *t, const char *v)
{
	ck_assert_int_eq(selector_set_add(s, t, v), 0);
}

static size_t
match(const struct entry_set *s, const struct selector_set *sel, const char *td,
      const struct reg_entry ***m, char ***ids)
{
	size_t n = 99;

	ck_assert_int_eq(entries_match(s, sel, td, m, ids, &n), 0);
	return n;
}

static void
free_ids(char **ids, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		free(ids[i]);
	free(ids);
}

START_TEST(test_example_file)
{
	struct entry_set *s = NULL;
	char path[PATH_MAX + 32], *err = NULL;
	const struct reg_entry *e;

	snprintf(path, sizeof(path), "%s/example.yaml", fx);
	ck_assert_int_eq(entries_load(path, &s, &err), 0);
	ck_assert_uint_eq(s->n, 3);
	e = &s->e[0];
	ck_assert_str_eq(e->name, "router");
	ck_assert_str_eq(e->spiffe_id, "spiffe://{td}/ns/agentcube-system/sa/agentcube-router");
	ck_assert_uint_eq(e->selectors.n, 2);
	ck_assert(selector_set_has(&e->selectors, "k8s:ns:agentcube-system"));
	ck_assert_int_eq(e->x509_ttl, 3600);
	ck_assert_int_eq(e->jwt_ttl, 0);
	ck_assert_str_eq(e->dns[0], "router.agentcube-system.svc");
	ck_assert_ptr_null(e->dns[1]);
	ck_assert_int_eq(e->key, KEY_POLICY_EXPORTABLE);
	ck_assert_str_eq(e->hint, "internal");
	ck_assert(e->picod_signer);
	ck_assert_ptr_nonnull(strstr(e->source, "example.yaml:3"));
	e = &s->e[1];
	ck_assert_str_eq(e->name, "every-pod");
	ck_assert(!e->picod_signer);
	ck_assert_ptr_null(e->dns);
	e = &s->e[2];
	/* no name: file:line */
	ck_assert_str_eq(e->name, e->source);
	ck_assert_ptr_nonnull(strstr(e->name, "example.yaml:14"));
	ck_assert_int_eq(e->jwt_ttl, 300);
	ck_assert_int_eq(e->key, KEY_POLICY_RESIDENT);
	entries_free(s);
	entries_free(NULL);
}
END_TEST

START_TEST(test_match_router_and_every_pod)
{
	struct entry_set *s = NULL;
	struct selector_set sel = {0};
	const struct reg_entry **m = NULL;
	char path[PATH_MAX + 32], *err = NULL, **ids = NULL;
	size_t n;

	snprintf(path, sizeof(path), "%s/example.yaml", fx);
	ck_assert_int_eq(entries_load(path, &s, &err), 0);
	sel_add(&sel, "k8s:ns", "agentcube-system");
	sel_add(&sel, "k8s:sa", "agentcube-router");
	sel_add(&sel, "unix:uid", "0");
	n = match(s, &sel, "cluster.local", &m, &ids);
	ck_assert_uint_eq(n, 2);
	ck_assert_str_eq(m[0]->name, "router");
	ck_assert_str_eq(ids[0], "spiffe://cluster.local/ns/agentcube-system/sa/agentcube-router");
	ck_assert_str_eq(m[1]->name, "every-pod");
	ck_assert_str_eq(ids[1], "spiffe://cluster.local/ns/agentcube-system/sa/agentcube-router");
	free_ids(ids, n);
	free(m);
	selector_set_clear(&sel);

	/* another pod: only the template */
	sel_add(&sel, "k8s:ns", "default");
	sel_add(&sel, "k8s:sa", "web");
	n = match(s, &sel, "example.org", &m, &ids);
	ck_assert_uint_eq(n, 1);
	ck_assert_str_eq(ids[0], "spiffe://example.org/ns/default/sa/web");
	ck_assert_ptr_null(entries_first_missing(m[0], &sel));
	ck_assert_str_eq(entries_first_missing(&s->e[0], &sel), "k8s:ns:agentcube-system");
	free_ids(ids, n);
	free(m);
	selector_set_clear(&sel);

	/* the template needs k8s:ns, which this workload lacks: no match */
	sel_add(&sel, "k8s:sa", "web");
	n = match(s, &sel, "cluster.local", &m, &ids);
	ck_assert_uint_eq(n, 0);
	ck_assert_ptr_null(m);
	ck_assert_ptr_null(ids);
	{
		char *id = (char *)1;
		const char *why = NULL;
		ck_assert_int_eq(entries_resolve_id(&s->e[1], &sel, "cluster.local", &id, &why),
		                 CUBEID_ERR_NOT_FOUND);
		ck_assert_ptr_null(id);
		ck_assert_ptr_nonnull(why);
	}
	selector_set_clear(&sel);

	/* a value that is not one path segment never makes an ID */
	sel_add(&sel, "k8s:ns", "..");
	sel_add(&sel, "k8s:sa", "web");
	n = match(s, &sel, "cluster.local", &m, &ids);
	ck_assert_uint_eq(n, 0);
	selector_set_clear(&sel);

	/* nothing in common */
	sel_add(&sel, "unix:uid", "1000");
	ck_assert_uint_eq(match(s, &sel, "cluster.local", &m, &ids), 0);
	selector_set_clear(&sel);

	/* unix:uid template */
	sel_add(&sel, "unix:uid", "4242");
	n = match(s, &sel, "cluster.local", &m, &ids);
	ck_assert_uint_eq(n, 1);
	ck_assert_str_eq(ids[0], "spiffe://cluster.local/unix/uid/4242");
	free_ids(ids, n);
	free(m);
	selector_set_clear(&sel);
	entries_free(s);
}
END_TEST

START_TEST(test_trust_domain_is_enforced)
{
	struct entry_set *s = parse_ok("entries:\n"
	                               "  - name: other\n"
	                               "    spiffe_id: spiffe://other.org/x\n"
	                               "    selectors: [unix:uid:1]\n"
	                               "  - name: mine\n"
	                               "    spiffe_id: spiffe://cluster.local/x\n"
	                               "    selectors: [unix:uid:1]\n");
	struct selector_set sel = {0};
	const struct reg_entry **m;
	char **ids;
	size_t n;

	sel_add(&sel, "unix:uid", "1");
	n = match(s, &sel, "cluster.local", &m, &ids);
	ck_assert_uint_eq(n, 1);
	ck_assert_str_eq(m[0]->name, "mine");
	free_ids(ids, n);
	free(m);
	/* a trust domain that is a prefix of the ID's is not the same */
	ck_assert_uint_eq(match(s, &sel, "cluster.loc", &m, &ids), 0);
	selector_set_clear(&sel);
	/* the agent refuses such a file: FILE:LINE of the foreign entry */
	{
		char *err = NULL;

		ck_assert_int_eq(entries_check_trust_domain(s, "cluster.local", &err),
		                 CUBEID_ERR_CONFIG);
		ck_assert_msg(strstr(err, "t.yaml:2: entry other: spiffe_id "
		                          "'spiffe://other.org/x' is not in the trust domain "
		                          "cluster.local") != NULL,
		              "%s", err);
		free(err);
		ck_assert_int_eq(entries_check_trust_domain(s, "cluster.loc", &err),
		                 CUBEID_ERR_CONFIG);
		free(err);
	}
	entries_free(s);
	s = parse_ok("entries:\n"
	             "  - spiffe_id: spiffe://{td}/x\n"
	             "    selectors: [unix:uid:1]\n"
	             "  - spiffe_id: spiffe://cluster.local/y\n"
	             "    selectors: [unix:uid:1]\n");
	{
		char *err = (char *)1;

		ck_assert_int_eq(entries_check_trust_domain(s, "cluster.local", &err), 0);
		ck_assert_ptr_null(err);
	}
	entries_free(s);
	/* no placeholder but {td} in the trust domain */
	parse_fails(
	        "entries:\n  - spiffe_id: spiffe://{unix:user}/x\n    selectors: [unix:uid:1]\n",
	        "t.yaml:2: bad spiffe_id 'spiffe://{unix:user}/x': the trust domain must be "
	        "{td} or fixed");
	parse_fails("entries:\n  - spiffe_id: spiffe://a{td}/x\n    selectors: [unix:uid:1]\n",
	            "t.yaml:2: bad spiffe_id 'spiffe://a{td}/x': the trust domain");
}
END_TEST

START_TEST(test_errors_name_file_and_line)
{
	parse_fails("entries:\n"
	            "  - name: a\n"
	            "    spiffe_id: spiffe://{td}/a\n"
	            "    selectorz: [unix:uid:1]\n",
	            "t.yaml:4: unknown key 'selectorz' in an entry");
	parse_fails("entries:\n"
	            "  - name: a\n"
	            "    spiffe_id: spiffe://{td}/a\n"
	            "    selectors: [unix:uid:1]\n"
	            "    x509_svid_ttl: 1hour\n",
	            "t.yaml:5: 'x509_svid_ttl': bad duration '1hour'");
	parse_fails("entries:\n"
	            "  - name: a\n"
	            "    spiffe_id: spiffe://{td}/a\n"
	            "    selectors: [unix:uid:1]\n"
	            "  - name: a\n"
	            "    spiffe_id: spiffe://{td}/b\n"
	            "    selectors: [unix:uid:2]\n",
	            "t.yaml:5: duplicate entry name 'a' (first at t.yaml:2)");
	parse_fails("entries:\n"
	            "  - name: a\n"
	            "    spiffe_id: spiffe://{td}/a\n"
	            "    selectors: [k8s:namespace:x]\n",
	            "t.yaml:4: unknown selector type 'k8s:namespace'");
	parse_fails("entries:\n"
	            "  - spiffe_id: spiffe://{td}/a\n"
	            "    selectors: [k8s:pod-label:app]\n",
	            "t.yaml:3: 'k8s:pod-label:app': k8s:pod-label needs KEY:VALUE");
	parse_fails("entries:\n  - spiffe_id: spiffe://{td}/a\n    selectors: []\n",
	            "t.yaml:3: an entry needs at least one selector");
	parse_fails("entries:\n  - spiffe_id: spiffe://{td}/a\n", "t.yaml:2: entry (unnamed) has "
	                                                          "no 'selectors'");
	parse_fails("entries:\n  - name: x\n    selectors: [unix:uid:1]\n",
	            "t.yaml:2: entry x has no 'spiffe_id'");
	parse_fails("entries:\n  - spiffe_id: spiffe://Bad.Domain/a\n    selectors: [unix:uid:1]\n",
	            "t.yaml:2: bad spiffe_id");
	parse_fails("entries:\n  - spiffe_id: spiffe://{td}/a/{k8s:pod-label}\n"
	            "    selectors: [unix:uid:1]\n",
	            "placeholder is not {td} or a single-valued selector type");
	parse_fails(
	        "entries:\n  - spiffe_id: spiffe://{td}/a/{k8s:ns\n    selectors: [unix:uid:1]\n",
	        "unbalanced");
	parse_fails("entries:\n  - spiffe_id: spiffe://{td}/a//b\n    selectors: [unix:uid:1]\n",
	            "t.yaml:2: bad spiffe_id");
	/* the trust domain's own ID names its CA, never a workload */
	parse_fails("entries:\n  - spiffe_id: spiffe://{td}\n    selectors: [unix:uid:1]\n",
	            "t.yaml:2: bad spiffe_id 'spiffe://{td}': the trust domain's own ID");
	parse_fails("entries:\n  - spiffe_id: spiffe://example.org\n    selectors: [unix:uid:1]\n",
	            "t.yaml:2: bad spiffe_id");
	parse_fails("entries:\n  - spiffe_id: spiffe://{td}/a\n    selectors: [unix:uid:1]\n"
	            "    key: shared\n",
	            "t.yaml:4: 'key' must be exportable or resident");
	parse_fails("entries:\n  - spiffe_id: spiffe://{td}/a\n    selectors: [unix:uid:1]\n"
	            "    picod_signer: yes\n",
	            "t.yaml:4: 'picod_signer' must be true or false");
	parse_fails("entries:\n  - spiffe_id: spiffe://{td}/a\n    selectors: [unix:uid:1]\n"
	            "    dns: [\"bad name\"]\n",
	            "t.yaml:4: bad DNS name 'bad name'");
	{
		/* Workload API 8: a hint of at most 1024 bytes */
		char y[1400], h[1026];

		memset(h, 'h', 1025);
		h[1025] = '\0';
		snprintf(y, sizeof(y),
		         "entries:\n  - spiffe_id: spiffe://{td}/a\n    selectors: [unix:uid:1]\n"
		         "    hint: %s\n",
		         h);
		parse_fails(y, "t.yaml:4: bad hint (printable, at most 1024)");
		h[1024] = '\0';
		snprintf(y, sizeof(y),
		         "entries:\n  - spiffe_id: spiffe://{td}/a\n    selectors: [unix:uid:1]\n"
		         "    hint: %s\n",
		         h);
		entries_free(parse_ok(y));
	}
	parse_fails("entrys: []\n", "t.yaml:1: unknown key 'entrys'");
	parse_fails("entries: [a, b\n", "t.yaml:");
	parse_fails("entries: []\n---\nentries: []\n", "only one YAML document");
	parse_fails("- a\n", "t.yaml:1: expected a mapping");
	parse_fails("entries:\n  - spiffe_id: spiffe://{td}/a\n    spiffe_id: spiffe://{td}/b\n"
	            "    selectors: [unix:uid:1]\n",
	            "t.yaml:3: duplicate key 'spiffe_id'");
}
END_TEST

/* Deep nesting is refused before libyaml builds a document: its scanner
 * costs time in proportion to the flow depth on every token. */
START_TEST(test_deep_nesting_is_refused)
{
	static const char *const open[] = {"[", "{a: ", "- "};
	size_t i, j, n = 20000;

	for (i = 0; i < sizeof(open) / sizeof(open[0]); i++) {
		size_t w = strlen(open[i]);
		char *buf = malloc(16 + n * w + 70 * (2 * 70 + 1)), *q = buf;

		ck_assert_ptr_nonnull(buf);
		q += sprintf(q, "entries: []\nx: ");
		for (j = 0; j < (i == 2 ? 70 : n); j++) {
			if (i == 2) { /* block: one level per line, indented */
				*q++ = '\n';
				memset(q, ' ', 2 * (j + 1));
				q += 2 * (j + 1);
			}
			memcpy(q, open[i], w);
			q += w;
		}
		*q = '\0';
		parse_fails(buf, i == 2 ? "t.yaml:" : "t.yaml:2: nested deeper than 64 levels");
		parse_fails(buf, "nested deeper than 64 levels");
		free(buf);
	}
	/* 64 levels are fine */
	{
		char buf[512], *q = buf;

		q += sprintf(q, "entries: []\nx: ");
		for (j = 0; j < 63; j++)
			*q++ = '[';
		for (j = 0; j < 63; j++)
			*q++ = ']';
		*q++ = '\n';
		*q = '\0';
		parse_fails(buf, "t.yaml:2: unknown key 'x'");
	}
	/* a quote inside a plain scalar does not hide what follows */
	{
		char *buf = malloc(n + 64), *q = buf;

		q += sprintf(q, "entries: []\nx: it 's\ny: ");
		memset(q, '[', n);
		q[n] = '\0';
		parse_fails(buf, "t.yaml:3: nested deeper than 64 levels");
		free(buf);
	}
}
END_TEST

#define DELIVERY_ENTRY(extra)                                                                      \
	"entries:\n"                                                                               \
	"  - name: router\n"                                                                       \
	"    spiffe_id: spiffe://{td}/ns/a/sa/router\n"                                            \
	"    selectors: [unix:uid:1]\n"                                                            \
	"    delivery:\n" extra

START_TEST(test_delivery)
{
	struct entry_set *s = parse_ok(DELIVERY_ENTRY("      dir: /run/certs/router\n"
	                                              "      jwt_svids:\n"
	                                              "        - {audience: picod, file: p.jwt}\n"
	                                              "      jwt_bundle_file: jwks.json\n"
	                                              "      key_mode: 0400\n"
	                                              "      uid: 0\n"
	                                              "      gid: root\n"
	                                              "      signal: HUP\n"
	                                              "      pid_file: /run/router.pid\n"
	                                              "      command: [/bin/true, x]\n"));
	const struct entry_delivery *d = s->e[0].delivery;

	ck_assert_ptr_nonnull(d);
	ck_assert_str_eq(d->dir, "/run/certs/router");
	ck_assert_str_eq(d->svid_file, "svid.pem"); /* spiffe-helper's names by default */
	ck_assert_str_eq(d->key_file, "svid_key.pem");
	ck_assert_str_eq(d->bundle_file, "svid_bundle.pem");
	ck_assert_uint_eq(d->n_jwt, 1);
	ck_assert_str_eq(d->jwt[0].audience, "picod");
	ck_assert_uint_eq(d->cert_mode, 0644);
	ck_assert_uint_eq(d->key_mode, 0400);
	ck_assert_uint_eq(d->jwt_svid_mode, 0600);
	ck_assert_int_eq(d->uid, 0);
	ck_assert_int_eq(d->gid, 0);
	ck_assert_int_eq(d->signal, 1);
	ck_assert_str_eq(d->command[1], "x");
	ck_assert_ptr_null(d->command[2]);
	ck_assert(!d->allow_unsafe_parent); /* parents are checked by default */
	entries_free(s);
	s = parse_ok(DELIVERY_ENTRY("      dir: /home/app/certs\n"
	                            "      allow_unsafe_parent: true\n"));
	ck_assert(s->e[0].delivery->allow_unsafe_parent);
	entries_free(s);
	parse_fails(DELIVERY_ENTRY("      dir: /x\n      allow_unsafe_parent: maybe\n"),
	            "'allow_unsafe_parent' must be true or false");

	parse_fails(DELIVERY_ENTRY("      dirr: /x\n"),
	            "t.yaml:6: unknown key 'dirr' in a delivery");
	parse_fails(DELIVERY_ENTRY("      svid_file: a.pem\n"), "t.yaml:6: a delivery needs 'dir'");
	parse_fails(DELIVERY_ENTRY("      dir: rel/dir\n"), "t.yaml:6: 'dir' must be an absolute");
	parse_fails(DELIVERY_ENTRY("      dir: /x\n      svid_file: ../a\n"), "plain file name");
	parse_fails(DELIVERY_ENTRY("      dir: /x\n      key_mode: 0800\n"), "bad file mode");
	parse_fails(DELIVERY_ENTRY("      dir: /x\n      key_file: svid.pem\n"),
	            "two delivered files are both named 'svid.pem'");
	parse_fails(DELIVERY_ENTRY("      dir: /x\n      signal: SIGHUP\n"),
	            "'signal' needs 'pid' or 'pid_file'");
	parse_fails(DELIVERY_ENTRY("      dir: /x\n      pid: 12\n"), "need 'signal'");
	parse_fails(DELIVERY_ENTRY("      dir: /x\n      signal: SIGNOPE\n"), "unknown signal");
	parse_fails(DELIVERY_ENTRY("      dir: /x\n      command: [true]\n"),
	            "must be an absolute path");
	parse_fails(DELIVERY_ENTRY("      dir: /x\n      uid: no-such-user-here\n"),
	            "not a number or a known user");
	parse_fails(DELIVERY_ENTRY("      dir: /x\n      x509: false\n"),
	            "needs jwt_svids or jwt_bundle_file");
	/* key files: 0600 or stricter */
	parse_fails(DELIVERY_ENTRY("      dir: /x\n      key_mode: 0644\n"),
	            "t.yaml:7: 'key_mode' 0644: a key file must be 0600 or stricter");
	parse_fails(DELIVERY_ENTRY("      dir: /x\n      key_mode: 0777\n"),
	            "t.yaml:7: 'key_mode' 0777");
	parse_fails(DELIVERY_ENTRY("      dir: /x\n      key_mode: 4755\n"),
	            "t.yaml:7: 'key_mode' 4755");
	parse_fails(DELIVERY_ENTRY("      dir: /x\n      key_mode: 1600\n"),
	            "t.yaml:7: 'key_mode' 1600");
	parse_fails(DELIVERY_ENTRY("      dir: /x\n      key_mode: 0640\n"),
	            "t.yaml:7: 'key_mode' 0640");
	entries_free(parse_ok(DELIVERY_ENTRY("      dir: /x\n      key_mode: 0400\n")));
	/* no pid 1, no uncatchable signals */
	parse_fails(DELIVERY_ENTRY("      dir: /x\n      signal: SIGHUP\n      pid: 1\n"),
	            "t.yaml:8: 'pid': 1 is init; it is never signalled");
	parse_fails(DELIVERY_ENTRY("      dir: /x\n      signal: SIGKILL\n      pid: 12\n"),
	            "t.yaml:7: 'signal': SIGKILL may not be sent");
	parse_fails(DELIVERY_ENTRY("      dir: /x\n      signal: STOP\n      pid: 12\n"),
	            "t.yaml:7: 'signal': STOP may not be sent");
	parse_fails(DELIVERY_ENTRY("      dir: /x\n      signal: 9\n      pid: 12\n"),
	            "t.yaml:7: 'signal': 9 may not be sent");
	entries_free(
	        parse_ok(DELIVERY_ENTRY("      dir: /x\n      signal: SIGUSR2\n      pid: 12\n")));
	/* system directories themselves, however spelled; not what is under them */
	{
		static const char *const sys[] = {
		        "/",    "/etc", "/etc/",  "//etc",   "/./etc",   "/bin",     "/sbin",
		        "/usr", "/lib", "/lib64", "/libx32", "/boot",    "/dev",     "/proc",
		        "/sys", "/var", "/root",  "/run",    "/run/../", "/etc/x/.."};
		char y[256];
		size_t i;

		for (i = 0; i < sizeof(sys) / sizeof(sys[0]); i++) {
			snprintf(y, sizeof(y), DELIVERY_ENTRY("      dir: %s\n"), sys[i]);
			parse_fails(y, "t.yaml:6: 'dir");
		}
		parse_fails(DELIVERY_ENTRY("      dir: /etc\n"),
		            "t.yaml:6: 'dir': /etc is a system directory");
		parse_fails(DELIVERY_ENTRY("      dir: /etc/x/..\n"), "without '..'");
		entries_free(parse_ok(DELIVERY_ENTRY("      dir: /etc/myapp/certs\n")));
		entries_free(parse_ok(DELIVERY_ENTRY("      dir: /var/lib/app\n")));
		entries_free(parse_ok(DELIVERY_ENTRY("      dir: /library\n")));
		entries_free(parse_ok(DELIVERY_ENTRY("      dir: /a..b\n")));
	}
	parse_fails("entries:\n"
	            "  - spiffe_id: spiffe://{td}/ns/{k8s:ns}/sa/x\n"
	            "    selectors: [k8s:ns]\n"
	            "    delivery: {dir: /x}\n",
	            "t.yaml:2: an entry with a delivery needs a fixed spiffe_id");
}
END_TEST

START_TEST(test_empty_and_hand_built)
{
	struct entry_set *s = parse_ok("# nothing yet\n");
	struct entry_set hand = {0};
	struct reg_entry e = {0};
	struct selector_set sel = {0};
	const struct reg_entry **m;
	char **ids;
	size_t n;

	ck_assert_uint_eq(s->n, 0);
	entries_free(s);
	s = parse_ok("entries:\n");
	ck_assert_uint_eq(s->n, 0);
	sel_add(&sel, "unix:uid", "7");
	ck_assert_uint_eq(match(s, &sel, "td", &m, &ids), 0);
	entries_free(s);

	/* a set built by hand (the daemon's --dev user) has no index */
	e.name = "dev";
	e.spiffe_id = "spiffe://{td}/unix/uid/{unix:uid}";
	sel_add(&e.selectors, "unix:uid", "7");
	hand.e = &e;
	hand.n = 1;
	n = match(&hand, &sel, "example.org", &m, &ids);
	ck_assert_uint_eq(n, 1);
	ck_assert_str_eq(ids[0], "spiffe://example.org/unix/uid/7");
	free_ids(ids, n);
	free(m);
	selector_set_clear(&e.selectors);
	selector_set_clear(&sel);
}
END_TEST

START_TEST(test_directory)
{
	struct entry_set *s = NULL;
	char path[PATH_MAX + 32], *err = NULL;

	snprintf(path, sizeof(path), "%s/dir", fx);
	ck_assert_int_eq(entries_load(path, &s, &err), 0);
	ck_assert_uint_eq(s->n, 2); /* .hidden.yaml and README skipped */
	ck_assert_str_eq(s->e[0].name, "root");
	ck_assert_str_eq(s->e[1].name, "pods");
	ck_assert_ptr_nonnull(strstr(s->e[1].source, "20-pods.yml:2"));
	entries_free(s);

	snprintf(path, sizeof(path), "%s/dup", fx);
	ck_assert_int_eq(entries_load(path, &s, &err), CUBEID_ERR_CONFIG);
	ck_assert_ptr_null(s);
	ck_assert_ptr_nonnull(strstr(err, "b.yaml:3: duplicate entry name 'same'"));
	ck_assert_ptr_nonnull(strstr(err, "a.yaml:2"));
	free(err);

	ck_assert_int_eq(entries_load("/nonexistent/entries.yaml", &s, &err), CUBEID_ERR_NOT_FOUND);
	ck_assert_ptr_nonnull(err);
	free(err);
}
END_TEST

/* 10,000 entries: exact ones under their own ns/sa, some bare-type ones,
 * and matching through the index agrees with a linear scan. */
START_TEST(test_ten_thousand)
{
	const size_t N = 10000;
	size_t cap = N * 160 + 256, len = 0, i, n, n2;
	char *y = malloc(cap);
	struct entry_set *s, lin;
	struct selector_set sel = {0};
	const struct reg_entry **m, **m2;
	char **ids, **ids2;

	ck_assert_ptr_nonnull(y);
	len += (size_t)snprintf(y + len, cap - len, "entries:\n");
	for (i = 0; i < N; i++) {
		if (i % 1000 == 999)
			len += (size_t)snprintf(y + len, cap - len,
			                        "  - name: bare-%zu\n"
			                        "    spiffe_id: spiffe://{td}/bare/%zu/{k8s:sa}\n"
			                        "    selectors: [k8s:sa]\n",
			                        i, i);
		else
			len += (size_t)snprintf(y + len, cap - len,
			                        "  - name: e%zu\n"
			                        "    spiffe_id: spiffe://{td}/ns/ns-%zu/sa/sa-%zu\n"
			                        "    selectors: [k8s:ns:ns-%zu, k8s:sa:sa-%zu]\n",
			                        i, i % 5000, i, i % 5000, i);
		ck_assert_uint_lt(len, cap);
	}
	s = parse_ok(y);
	free(y);
	ck_assert_uint_eq(s->n, N);
	lin = *s;
	lin.index = NULL;
	for (i = 0; i < N; i += 97) {
		char ns[32], sa[32];

		snprintf(ns, sizeof(ns), "ns-%zu", i % 5000);
		snprintf(sa, sizeof(sa), "sa-%zu", i);
		sel_add(&sel, "k8s:ns", ns);
		sel_add(&sel, "k8s:sa", sa);
		sel_add(&sel, "unix:uid", "1000");
		n = match(s, &sel, "cluster.local", &m, &ids);
		n2 = match(&lin, &sel, "cluster.local", &m2, &ids2);
		ck_assert_uint_eq(n, n2);
		ck_assert_uint_eq(n, i % 1000 == 999 ? 10 : 11); /* its own + 10 bare */
		for (size_t k = 0; k < n; k++) {
			ck_assert_ptr_eq(m[k], m2[k]);
			ck_assert_str_eq(ids[k], ids2[k]);
		}
		free_ids(ids, n);
		free_ids(ids2, n2);
		free(m);
		free(m2);
		selector_set_clear(&sel);
	}
	entries_free(s);
}
END_TEST

int
main(void)
{
	Suite *su = suite_create("entries");
	TCase *tc = tcase_create("entries");
	SRunner *sr;
	int failed;

	snprintf(fx, sizeof(fx), "%s/tests/fixtures/entries", CUBEID_SRCDIR);
	tcase_add_test(tc, test_example_file);
	tcase_add_test(tc, test_match_router_and_every_pod);
	tcase_add_test(tc, test_trust_domain_is_enforced);
	tcase_add_test(tc, test_errors_name_file_and_line);
	tcase_add_test(tc, test_empty_and_hand_built);
	tcase_add_test(tc, test_directory);
	tcase_add_test(tc, test_ten_thousand);
	tcase_add_test(tc, test_delivery);
	tcase_add_test(tc, test_deep_nesting_is_refused);
	suite_add_tcase(su, tc);
	sr = srunner_create(su);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
