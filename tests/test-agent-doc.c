/*
 * cubeid-agent's docs (agent/agent-doc.c) against the parsers: every config
 * key, entry key and selector type the code accepts has its man page text,
 * and the docs name nothing the code does not accept.  The option table is
 * getopt's own, so options cannot drift; here every option has help text.
 */
#include "config.h"

#include "agent/agent-doc.h"
#include "agent/agent.h"

#include <check.h>
#include <stdlib.h>
#include <string.h>

typedef const char *(*lister)(size_t i);

static bool
listed(lister f, const char *name)
{
	size_t i;
	const char *s;

	for (i = 0; (s = f(i)) != NULL; i++)
		if (strcmp(s, name) == 0)
			return true;
	return false;
}

/* a ⊆ b and b ⊆ a */
static void
same_sets(lister code, lister docs, const char *what)
{
	size_t i, n = 0;
	const char *s;
	char copy[128];

	for (i = 0; (s = code(i)) != NULL; i++, n++) {
		snprintf(copy, sizeof(copy), "%s", s); /* config_key_name reuses a buffer */
		ck_assert_msg(listed(docs, copy), "%s '%s' is not documented (agent/agent-doc.c)",
		              what, copy);
	}
	ck_assert_uint_gt(n, 0);
	for (i = 0; (s = docs(i)) != NULL; i++)
		ck_assert_msg(listed(code, s),
		              "the docs name %s '%s', which the code does not know", what, s);
}

START_TEST(test_config_keys)
{
	same_sets(config_key_name, agent_doc_config_key, "config key");
}
END_TEST

START_TEST(test_entry_keys)
{
	same_sets(entries_key_name, agent_doc_entry_key, "entry key");
}
END_TEST

START_TEST(test_delivery_keys)
{
	same_sets(entries_delivery_key_name, agent_doc_delivery_key, "delivery key");
}
END_TEST

START_TEST(test_selector_types)
{
	same_sets(selector_type_name, agent_doc_selector_type, "selector type");
}
END_TEST

START_TEST(test_options)
{
	const struct agent_opt_doc *d;
	struct option o[AGENT_OPTS_MAX];
	char optstring[2 * AGENT_OPTS_MAX + 1];
	size_t n = 0;

	for (d = agent_opt_docs; d->name != NULL; d++, n++) {
		ck_assert_msg(d->help != NULL && d->help[0] != '\0', "--%s has no help", d->name);
		ck_assert_msg(d->man != NULL && strlen(d->man) >= strlen(d->help) / 2,
		              "--%s has no man text", d->name);
		ck_assert_msg((d->arg != NULL) == (d->has_arg == required_argument),
		              "--%s: argument name and has_arg disagree", d->name);
	}
	ck_assert_uint_lt(n, AGENT_OPTS_MAX);
	agent_doc_getopt(o, optstring);
	ck_assert_str_eq(optstring, "c:s:d:e:h");
	ck_assert_str_eq(o[n - 1].name, agent_opt_docs[n - 1].name);
	ck_assert_ptr_null(o[n].name);
}
END_TEST

START_TEST(test_unknown_page)
{
	FILE *f = fopen("/dev/null", "w");

	ck_assert_ptr_nonnull(f);
	ck_assert_int_eq(agent_doc_man(f, "cubeid.7"), -1);
	ck_assert_int_eq(agent_doc_man(f, "cubeid.conf.5"), 0);
	fclose(f);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("agent-doc");
	TCase *tc = tcase_create("core");
	SRunner *sr;
	int failed;

	tcase_add_test(tc, test_config_keys);
	tcase_add_test(tc, test_entry_keys);
	tcase_add_test(tc, test_delivery_keys);
	tcase_add_test(tc, test_selector_types);
	tcase_add_test(tc, test_options);
	tcase_add_test(tc, test_unknown_page);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
