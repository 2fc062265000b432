/* Every error code has its own message (OpenSSH's table once drifted). */
#include "config.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cubeid/error.h>

START_TEST(test_known_and_unknown_codes)
{
	ck_assert_str_eq(cubeid_strerror(CUBEID_OK), "success");
	ck_assert_str_eq(cubeid_strerror(1), "unknown error code");
	ck_assert_str_eq(cubeid_strerror(CUBEID_ERR_MIN - 1), "unknown error code");
	ck_assert_str_eq(cubeid_strerror(CUBEID_ERR_P11_PIN_INCORRECT),
	                 "the token rejected the PIN");
}
END_TEST

/* The codes in error.h, extracted at build time would be better; instead the
 * test parses the header itself so a new code cannot be forgotten. */
START_TEST(test_header_codes_all_have_messages)
{
	char path[4096];
	char line[512];
	FILE *f;
	int seen = 0;
	int used[128] = {0};

	snprintf(path, sizeof(path), "%s/include/cubeid/error.h", CUBEID_SRCDIR);
	f = fopen(path, "r");
	ck_assert_msg(f != NULL, "cannot open %s", path);
	while (fgets(line, sizeof(line), f) != NULL) {
		char name[128];
		int value;
		if (sscanf(line, "#define %127s %d", name, &value) != 2)
			continue;
		if (strcmp(name, "CUBEID_ERR_MIN") == 0) {
			ck_assert_int_le(value, -1);
			continue;
		}
		ck_assert_int_ge(value, CUBEID_ERR_MIN);
		ck_assert_int_le(value, 0);
		/* two names for one number would make their messages collide */
		ck_assert_msg(used[-value] == 0, "%s (%d) reuses another code's number", name,
		              value);
		used[-value] = 1;
		ck_assert_msg(strcmp(cubeid_strerror(value), "unknown error code") != 0,
		              "%s (%d) has no message in common/error.c", name, value);
		seen++;
	}
	fclose(f);
	ck_assert_int_gt(seen, 40);
}
END_TEST

START_TEST(test_messages_are_distinct)
{
	int a, b;

	for (a = 0; a >= CUBEID_ERR_MIN; a--)
		for (b = a - 1; b >= CUBEID_ERR_MIN; b--) {
			const char *ma = cubeid_strerror(a), *mb = cubeid_strerror(b);
			if (strcmp(ma, "unknown error code") == 0)
				continue;
			ck_assert_msg(strcmp(ma, mb) != 0, "codes %d and %d share a message", a, b);
		}
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("error");
	TCase *tc = tcase_create("messages");
	SRunner *sr;
	int failed;

	tcase_add_test(tc, test_known_and_unknown_codes);
	tcase_add_test(tc, test_header_codes_all_have_messages);
	tcase_add_test(tc, test_messages_are_distinct);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
