/*
 * SPIFFE ID parsing against the rules of spiffe/spiffe standards/SPIFFE-ID.md.
 * Each invalid case names the section and rule it breaks.
 */
#include "config.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cubeid/spiffe.h>

struct idcase {
	const char *s;
	cubeid_spiffe_reason want; /* CUBEID_SPIFFE_OK for a valid ID */
	const char *td;            /* expected trust domain when valid */
	const char *path;          /* expected path when valid */
	const char *rule;          /* the spec rule this case exercises */
};

static const struct idcase cases[] = {
        /* valid IDs */
        {"spiffe://example.org", CUBEID_SPIFFE_OK, "example.org", "", "2: path is optional"},
        {"spiffe://example.org/workload", CUBEID_SPIFFE_OK, "example.org", "/workload", "2.2"},
        {"spiffe://staging.example.com/payments/mysql", CUBEID_SPIFFE_OK, "staging.example.com",
         "/payments/mysql", "2.2 example"},
        {"spiffe://k8s-west.example.com/ns/staging/sa/default", CUBEID_SPIFFE_OK,
         "k8s-west.example.com", "/ns/staging/sa/default", "2.2 example"},
        {"spiffe://example.com/9eebccd2-12bf-40a6-b262-65fe0487d453", CUBEID_SPIFFE_OK,
         "example.com", "/9eebccd2-12bf-40a6-b262-65fe0487d453", "2.2 opaque example"},
        {"spiffe://trust_domain_name.example.com", CUBEID_SPIFFE_OK,
         "trust_domain_name.example.com", "", "2.1.1: underscore in trust domain"},
        {"spiffe://cluster.local/ns/agentcube-system/sa/agentcube-router", CUBEID_SPIFFE_OK,
         "cluster.local", "/ns/agentcube-system/sa/agentcube-router", "AgentCube router"},
        {"spiffe://192.168.0.1/x", CUBEID_SPIFFE_OK, "192.168.0.1", "/x",
         "2.1: dotted quad is not excluded"},
        {"spiffe://a", CUBEID_SPIFFE_OK, "a", "", "2.1: one-char trust domain"},
        {"spiffe://-._/A-Z_a.z-0.9", CUBEID_SPIFFE_OK, "-._", "/A-Z_a.z-0.9",
         "2.1/2.2: every allowed character class"},
        {"spiffe://td/.../...a/a..", CUBEID_SPIFFE_OK, "td", "/.../...a/a..",
         "2.2: only exactly . and .. are dot segments"},
        {"spiffe://td/.a/a.", CUBEID_SPIFFE_OK, "td", "/.a/a.", "2.2: dots inside segments"},
        {"spiffe://td/UPPER/Case", CUBEID_SPIFFE_OK, "td", "/UPPER/Case",
         "2.4: path is case-sensitive, upper case allowed"},
        {"spiffe://td/a/b/c/d/e/f/g/h", CUBEID_SPIFFE_OK, "td", "/a/b/c/d/e/f/g/h",
         "2.2: deep path"},

        /* invalid: scheme (2) */
        {"", CUBEID_SPIFFE_EMPTY, NULL, NULL, "2: empty string"},
        {"example.org/workload", CUBEID_SPIFFE_BAD_SCHEME, NULL, NULL, "2: scheme missing"},
        {"http://example.org/workload", CUBEID_SPIFFE_BAD_SCHEME, NULL, NULL,
         "2: scheme not spiffe"},
        {"SPIFFE://example.org", CUBEID_SPIFFE_BAD_SCHEME, NULL, NULL, "scheme must be lowercase"},
        {"Spiffe://example.org", CUBEID_SPIFFE_BAD_SCHEME, NULL, NULL, "scheme must be lowercase"},
        {"spiffe:/example.org", CUBEID_SPIFFE_BAD_SCHEME, NULL, NULL, "2: authority needs //"},
        {"spiffe:example.org", CUBEID_SPIFFE_BAD_SCHEME, NULL, NULL, "2: authority needs //"},
        {"spiffe", CUBEID_SPIFFE_BAD_SCHEME, NULL, NULL, "2: scheme only"},
        {" spiffe://example.org", CUBEID_SPIFFE_BAD_SCHEME, NULL, NULL, "2: leading space"},

        /* invalid: trust domain (2.1) */
        {"spiffe://", CUBEID_SPIFFE_TD_MISSING, NULL, NULL, "2.1: host MUST NOT be empty"},
        {"spiffe:///path", CUBEID_SPIFFE_TD_MISSING, NULL, NULL, "2.1: host MUST NOT be empty"},
        {"spiffe://user@example.org", CUBEID_SPIFFE_USERINFO, NULL, NULL,
         "2.1: userinfo MUST be empty"},
        {"spiffe://user:pw@example.org/x", CUBEID_SPIFFE_USERINFO, NULL, NULL,
         "2.1: userinfo MUST be empty"},
        {"spiffe://example.org:8080", CUBEID_SPIFFE_PORT, NULL, NULL, "2.1: port MUST be empty"},
        {"spiffe://example.org:/x", CUBEID_SPIFFE_PORT, NULL, NULL, "2.1: empty port still a port"},
        {"spiffe://Example.org", CUBEID_SPIFFE_TD_UPPERCASE, NULL, NULL,
         "2.1: host MUST be lowercase"},
        {"spiffe://EXAMPLE.ORG/x", CUBEID_SPIFFE_TD_UPPERCASE, NULL, NULL,
         "2.1: host MUST be lowercase"},
        {"spiffe://exa%6dple.org", CUBEID_SPIFFE_PERCENT, NULL, NULL,
         "2.1: no percent-encoding in host"},
        {"spiffe://[::1]/x", CUBEID_SPIFFE_TD_CHAR, NULL, NULL, "2.1: IPv6 literals are excluded"},
        {"spiffe://exa mple.org", CUBEID_SPIFFE_TD_CHAR, NULL, NULL, "2.1: space not allowed"},
        {"spiffe://example.org+x", CUBEID_SPIFFE_TD_CHAR, NULL, NULL, "2.1: [a-z0-9.-_] only"},
        {"spiffe://ex\xc3\xa4mple.org", CUBEID_SPIFFE_TD_CHAR, NULL, NULL, "2.1: ASCII only"},
        {"spiffe://example.org?x=1", CUBEID_SPIFFE_QUERY, NULL, NULL, "2: no query"},
        {"spiffe://example.org#frag", CUBEID_SPIFFE_FRAGMENT, NULL, NULL, "2: no fragment"},

        /* invalid: path (2.2) */
        {"spiffe://example.org/", CUBEID_SPIFFE_TRAILING_SLASH, NULL, NULL,
         "2.2: no trailing slash"},
        {"spiffe://example.org/a/", CUBEID_SPIFFE_TRAILING_SLASH, NULL, NULL,
         "2.2: no trailing slash"},
        {"spiffe://example.org//a", CUBEID_SPIFFE_EMPTY_SEGMENT, NULL, NULL,
         "2.2: no empty segments"},
        {"spiffe://example.org/a//b", CUBEID_SPIFFE_EMPTY_SEGMENT, NULL, NULL,
         "2.2: no empty segments"},
        {"spiffe://example.org/.", CUBEID_SPIFFE_DOT_SEGMENT, NULL, NULL, "2.2: no . segment"},
        {"spiffe://example.org/./a", CUBEID_SPIFFE_DOT_SEGMENT, NULL, NULL, "2.2: no . segment"},
        {"spiffe://example.org/a/..", CUBEID_SPIFFE_DOT_SEGMENT, NULL, NULL, "2.2: no .. segment"},
        {"spiffe://example.org/../x", CUBEID_SPIFFE_DOT_SEGMENT, NULL, NULL, "2.2: no .. segment"},
        {"spiffe://example.org/a%20b", CUBEID_SPIFFE_PERCENT, NULL, NULL,
         "2.2: no percent-encoding in path"},
        {"spiffe://example.org/a b", CUBEID_SPIFFE_PATH_CHAR, NULL, NULL,
         "2.2: [a-zA-Z0-9.-_] only"},
        {"spiffe://example.org/a:b", CUBEID_SPIFFE_PATH_CHAR, NULL, NULL,
         "2.2: [a-zA-Z0-9.-_] only"},
        {"spiffe://example.org/a@b", CUBEID_SPIFFE_PATH_CHAR, NULL, NULL,
         "2.2: [a-zA-Z0-9.-_] only"},
        {"spiffe://example.org/a~b", CUBEID_SPIFFE_PATH_CHAR, NULL, NULL,
         "2.2: [a-zA-Z0-9.-_] only"},
        {"spiffe://example.org/caf\xc3\xa9", CUBEID_SPIFFE_PATH_CHAR, NULL, NULL,
         "2.2: ASCII only"},
        {"spiffe://example.org/a?x=1", CUBEID_SPIFFE_QUERY, NULL, NULL, "2: no query"},
        {"spiffe://example.org/a?", CUBEID_SPIFFE_QUERY, NULL, NULL, "2: no empty query"},
        {"spiffe://example.org/a#f", CUBEID_SPIFFE_FRAGMENT, NULL, NULL, "2: no fragment"},
        {"spiffe://example.org/a\\b", CUBEID_SPIFFE_PATH_CHAR, NULL, NULL,
         "2.2: backslash is not a separator"},
};

START_TEST(test_id_table)
{
	const struct idcase *c = &cases[_i];
	cubeid_spiffe_id *id = (cubeid_spiffe_id *)1;
	cubeid_spiffe_reason why = (cubeid_spiffe_reason)-1;
	int rc;

	rc = cubeid_spiffe_id_parse(c->s, strlen(c->s), &id, &why);
	ck_assert_msg(why == c->want, "%s (%s): reason %d (%s), want %d (%s)", c->s, c->rule, why,
	              cubeid_spiffe_reason_str(why), c->want, cubeid_spiffe_reason_str(c->want));
	/* the allocation-free validator agrees */
	ck_assert_int_eq(cubeid_spiffe_id_validate(c->s, strlen(c->s), NULL), rc);
	if (c->want != CUBEID_SPIFFE_OK) {
		ck_assert_int_eq(rc, CUBEID_ERR_SPIFFE_ID);
		ck_assert_ptr_null(id);
		return;
	}
	ck_assert_int_eq(rc, CUBEID_OK);
	ck_assert_ptr_nonnull(id);
	ck_assert_str_eq(cubeid_spiffe_id_string(id), c->s);
	ck_assert_uint_eq(cubeid_spiffe_id_len(id), strlen(c->s));
	ck_assert_str_eq(cubeid_spiffe_id_trust_domain(id), c->td);
	ck_assert_str_eq(cubeid_spiffe_id_path(id), c->path);
	ck_assert(cubeid_spiffe_id_member_of(id, c->td));
	ck_assert(!cubeid_spiffe_id_member_of(id, "other.td"));
	ck_assert(cubeid_spiffe_id_is_trust_domain_id(id) == (c->path[0] == '\0'));
	{
		/* from_parts rebuilds the same ID */
		cubeid_spiffe_id *again = NULL;
		ck_assert_int_eq(cubeid_spiffe_id_from_parts(c->td, c->path, &again, NULL),
		                 CUBEID_OK);
		ck_assert(cubeid_spiffe_id_equal(id, again));
		cubeid_spiffe_id_free(again);
	}
	cubeid_spiffe_id_free(id);
}
END_TEST

START_TEST(test_table_is_big_enough)
{
	size_t n = sizeof(cases) / sizeof(cases[0]), valid = 0, i;

	for (i = 0; i < n; i++)
		valid += cases[i].want == CUBEID_SPIFFE_OK;
	ck_assert_uint_ge(n, 40);
	ck_assert_uint_ge(valid, 10);
	ck_assert_uint_ge(n - valid, 30);
}
END_TEST

/* 2.3: up to 2048 bytes must work, 2049 is refused. */
START_TEST(test_max_length)
{
	char buf[CUBEID_SPIFFE_ID_MAX + 2];
	cubeid_spiffe_id *id = NULL;
	cubeid_spiffe_reason why;
	size_t i;

	memcpy(buf, "spiffe://td/", 12);
	for (i = 12; i < sizeof(buf); i++)
		buf[i] = 'a';
	ck_assert_int_eq(cubeid_spiffe_id_parse(buf, CUBEID_SPIFFE_ID_MAX, &id, &why), CUBEID_OK);
	ck_assert_uint_eq(cubeid_spiffe_id_len(id), CUBEID_SPIFFE_ID_MAX);
	cubeid_spiffe_id_free(id);
	ck_assert_int_eq(cubeid_spiffe_id_parse(buf, CUBEID_SPIFFE_ID_MAX + 1, &id, &why),
	                 CUBEID_ERR_SPIFFE_ID);
	ck_assert_int_eq(why, CUBEID_SPIFFE_TOO_LONG);
	ck_assert_ptr_null(id);
}
END_TEST

/* 2.3: the trust domain is a URI host, at most 255 bytes. */
START_TEST(test_trust_domain_length)
{
	char buf[9 + 256 + 1];
	cubeid_spiffe_reason why;

	memcpy(buf, "spiffe://", 9);
	memset(buf + 9, 'a', 256);
	ck_assert_int_eq(cubeid_spiffe_id_validate(buf, 9 + 255, &why), CUBEID_OK);
	ck_assert_int_eq(cubeid_spiffe_id_validate(buf, 9 + 256, &why), CUBEID_ERR_SPIFFE_ID);
	ck_assert_int_eq(why, CUBEID_SPIFFE_TD_TOO_LONG);
	ck_assert_int_eq(cubeid_trust_domain_validate(buf + 9, 255, &why), CUBEID_OK);
	ck_assert_int_eq(cubeid_trust_domain_validate(buf + 9, 256, &why), CUBEID_ERR_SPIFFE_ID);
	ck_assert_int_eq(why, CUBEID_SPIFFE_TD_TOO_LONG);
}
END_TEST

/* The length is explicit: a NUL inside, or bytes after len, do not count. */
START_TEST(test_embedded_nul_and_explicit_length)
{
	static const char s[] = "spiffe://td/a\0/b";
	cubeid_spiffe_id *id = NULL;
	cubeid_spiffe_reason why;

	ck_assert_int_eq(cubeid_spiffe_id_parse(s, sizeof(s) - 1, &id, &why), CUBEID_ERR_SPIFFE_ID);
	ck_assert_int_eq(why, CUBEID_SPIFFE_NUL);
	ck_assert_int_eq(cubeid_spiffe_id_parse("spiffe://td/a/", 13, &id, &why), CUBEID_OK);
	ck_assert_str_eq(cubeid_spiffe_id_string(id), "spiffe://td/a");
	cubeid_spiffe_id_free(id);
}
END_TEST

START_TEST(test_trust_domain_validator)
{
	cubeid_spiffe_reason why;

	ck_assert_int_eq(cubeid_trust_domain_validate("cluster.local", 13, &why), CUBEID_OK);
	ck_assert_int_eq(why, CUBEID_SPIFFE_OK);
	ck_assert_int_eq(cubeid_trust_domain_validate("", 0, &why), CUBEID_ERR_SPIFFE_ID);
	ck_assert_int_eq(why, CUBEID_SPIFFE_TD_MISSING);
	ck_assert_int_eq(cubeid_trust_domain_validate("a/b", 3, &why), CUBEID_ERR_SPIFFE_ID);
	ck_assert_int_eq(why, CUBEID_SPIFFE_TD_CHAR);
	ck_assert_int_eq(cubeid_trust_domain_validate("a:1", 3, &why), CUBEID_ERR_SPIFFE_ID);
	ck_assert_int_eq(why, CUBEID_SPIFFE_PORT);
	ck_assert_int_eq(cubeid_trust_domain_validate("spiffe://a", 10, &why),
	                 CUBEID_ERR_SPIFFE_ID);
	ck_assert_int_eq(cubeid_trust_domain_validate("A.b", 3, &why), CUBEID_ERR_SPIFFE_ID);
	ck_assert_int_eq(why, CUBEID_SPIFFE_TD_UPPERCASE);
	ck_assert_int_eq(cubeid_trust_domain_validate(NULL, 0, &why), CUBEID_ERR_INVALID_ARG);
}
END_TEST

START_TEST(test_from_parts_rejects)
{
	cubeid_spiffe_id *id = NULL;
	cubeid_spiffe_reason why;

	ck_assert_int_eq(cubeid_spiffe_id_from_parts("td", "a/b", &id, &why), CUBEID_ERR_SPIFFE_ID);
	ck_assert_int_eq(why, CUBEID_SPIFFE_PATH_NO_SLASH);
	ck_assert_int_eq(cubeid_spiffe_id_from_parts("td", "/a/", &id, &why), CUBEID_ERR_SPIFFE_ID);
	ck_assert_int_eq(why, CUBEID_SPIFFE_TRAILING_SLASH);
	ck_assert_int_eq(cubeid_spiffe_id_from_parts("TD", "/a", &id, &why), CUBEID_ERR_SPIFFE_ID);
	ck_assert_int_eq(why, CUBEID_SPIFFE_TD_UPPERCASE);
	ck_assert_ptr_null(id);
	ck_assert_int_eq(cubeid_spiffe_id_from_parts("td", NULL, &id, &why), CUBEID_OK);
	ck_assert_str_eq(cubeid_spiffe_id_string(id), "spiffe://td");
	cubeid_spiffe_id_free(id);
}
END_TEST

START_TEST(test_k8s_helper)
{
	cubeid_spiffe_id *id = NULL, *copy;
	cubeid_spiffe_reason why;

	ck_assert_int_eq(cubeid_spiffe_id_k8s("cluster.local", "agentcube-system",
	                                      "agentcube-router", &id, &why),
	                 CUBEID_OK);
	ck_assert_str_eq(cubeid_spiffe_id_string(id),
	                 "spiffe://cluster.local/ns/agentcube-system/sa/agentcube-router");
	ck_assert_str_eq(cubeid_spiffe_id_path(id), "/ns/agentcube-system/sa/agentcube-router");
	copy = cubeid_spiffe_id_dup(id);
	ck_assert(cubeid_spiffe_id_equal(id, copy));
	cubeid_spiffe_id_free(copy);
	cubeid_spiffe_id_free(id);

	/* service account names may be dotted subdomains */
	ck_assert_int_eq(cubeid_spiffe_id_k8s("td", "default", "a.b-c", &id, &why), CUBEID_OK);
	ck_assert_str_eq(cubeid_spiffe_id_string(id), "spiffe://td/ns/default/sa/a.b-c");
	cubeid_spiffe_id_free(id);

	static const char *const bad_ns[] = {
	        "",
	        "Default",
	        "a_b",
	        "-a",
	        "a-",
	        "a.b",
	        "..",
	        "a/b",
	        "1234567890123456789012345678901234567890123456789012345678901234"};
	for (size_t i = 0; i < sizeof(bad_ns) / sizeof(bad_ns[0]); i++) {
		id = (cubeid_spiffe_id *)1;
		ck_assert_int_eq(cubeid_spiffe_id_k8s("td", bad_ns[i], "sa", &id, &why),
		                 CUBEID_ERR_SPIFFE_ID);
		ck_assert_msg(why == CUBEID_SPIFFE_K8S_NAME, "ns %s", bad_ns[i]);
		ck_assert_ptr_null(id);
	}
	static const char *const bad_sa[] = {"", "SA", "a..b", ".a", "a.", "..", ".", "a/b", "a b"};
	for (size_t i = 0; i < sizeof(bad_sa) / sizeof(bad_sa[0]); i++) {
		ck_assert_int_eq(cubeid_spiffe_id_k8s("td", "ns", bad_sa[i], &id, &why),
		                 CUBEID_ERR_SPIFFE_ID);
		ck_assert_msg(why == CUBEID_SPIFFE_K8S_NAME, "sa %s", bad_sa[i]);
	}
	/* the trust domain is still checked */
	ck_assert_int_eq(cubeid_spiffe_id_k8s("bad td", "ns", "sa", &id, &why),
	                 CUBEID_ERR_SPIFFE_ID);
	ck_assert_int_eq(why, CUBEID_SPIFFE_TD_CHAR);
	ck_assert_int_eq(cubeid_spiffe_id_k8s("td", NULL, "sa", &id, &why), CUBEID_ERR_INVALID_ARG);
}
END_TEST

START_TEST(test_reason_messages)
{
	int r;

	for (r = CUBEID_SPIFFE_OK; r <= CUBEID_SPIFFE_K8S_NAME; r++)
		ck_assert_str_ne(cubeid_spiffe_reason_str((cubeid_spiffe_reason)r),
		                 "unknown SPIFFE ID rule");
	ck_assert_str_eq(cubeid_spiffe_reason_str((cubeid_spiffe_reason)999),
	                 "unknown SPIFFE ID rule");
	ck_assert_str_eq(cubeid_spiffe_reason_str(CUBEID_SPIFFE_TRAILING_SLASH),
	                 "path cannot have a trailing slash");
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("spiffe-id");
	TCase *tc = tcase_create("parse");
	SRunner *sr;
	int failed;

	tcase_add_loop_test(tc, test_id_table, 0, (int)(sizeof(cases) / sizeof(cases[0])));
	tcase_add_test(tc, test_table_is_big_enough);
	tcase_add_test(tc, test_max_length);
	tcase_add_test(tc, test_trust_domain_length);
	tcase_add_test(tc, test_embedded_nul_and_explicit_length);
	tcase_add_test(tc, test_trust_domain_validator);
	tcase_add_test(tc, test_from_parts_rejects);
	tcase_add_test(tc, test_k8s_helper);
	tcase_add_test(tc, test_reason_messages);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
