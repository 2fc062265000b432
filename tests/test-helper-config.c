/* spiffe-helper's configuration files as `cubeid helper` reads them
 * (cli/helper-config.c), and cmd_args split as spiffe-helper splits it. */
#include "config.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/helper.h"

#include <cubeid/error.h>
#include <cubeid/os.h>

static struct helper_config *
parse_ok(const char *s)
{
	struct helper_config *c = NULL;
	char *err = NULL;
	int r = helper_config_parse(s, strlen(s), "t.conf", &c, &err);

	ck_assert_msg(r == CUBEID_OK, "parse failed: %s", err != NULL ? err : "?");
	ck_assert_ptr_null(err);
	return c;
}

static void
parse_err(const char *s, const char *want)
{
	struct helper_config *c = NULL;
	char *err = NULL;
	int r = helper_config_parse(s, strlen(s), "t.conf", &c, &err);

	if (r == CUBEID_OK) {
		r = helper_config_finish(c, &err);
		helper_config_free(c);
	}
	ck_assert_int_ne(r, CUBEID_OK);
	ck_assert_ptr_nonnull(err);
	ck_assert_msg(strstr(err, want) != NULL, "error '%s' lacks '%s'", err, want);
	free(err);
}

START_TEST(test_spiffe_helper_example)
{
	/* spiffe-helper's own README example, and its other keys */
	struct helper_config *c = parse_ok(
	        "agent_address = \"/tmp/spire-agent/public/api.sock\"\n"
	        "cmd = \"ghostunnel\"\n"
	        "cmd_args = \"server --listen localhost:8002 --keystore certs/svid_key.pem\"\n"
	        "cert_dir = \"certs\"\n"
	        "renew_signal = \"SIGUSR1\"\n"
	        "svid_file_name = \"svid.pem\"\n"
	        "svid_key_file_name = \"svid_key.pem\"\n"
	        "svid_bundle_file_name = \"svid_bundle.pem\"\n"
	        "# JWT\n"
	        "jwt_bundle_file_name = \"bundle.json\" // trailing comment\n"
	        "jwt_svids = [{jwt_audience = \"aud1\", jwt_svid_file_name = \"a.token\"},\n"
	        "  {jwt_audience=\"aud2\"\n jwt_extra_audiences = [\"x\", \"y\",]\n"
	        "   jwt_svid_file_name = \"b.token\"}]\n"
	        "cert_file_mode = 0444\nkey_file_mode = \"0400\"\njwt_svid_file_mode = 0x1a0\n"
	        "/* block */ daemon_mode = false\nadd_intermediates_to_bundle = true\n"
	        "include_federated_domains = true\nomit_expired = false\nhint = \"h\"\n"
	        "health_checks {\n listener_enabled = false\n bind_port = 8081\n}\n");
	char *err = NULL;

	ck_assert_str_eq(c->agent_address, "/tmp/spire-agent/public/api.sock");
	ck_assert_str_eq(c->cmd, "ghostunnel");
	ck_assert_str_eq(c->cert_dir, "certs");
	ck_assert_uint_eq(c->n_jwt, 2);
	ck_assert_str_eq(c->jwt[1].audience, "aud2");
	ck_assert_uint_eq(c->jwt[1].n_extra, 2);
	ck_assert_str_eq(c->jwt[1].extra[1], "y");
	ck_assert_str_eq(c->jwt[1].file, "b.token");
	ck_assert_int_eq(c->cert_file_mode, 0444);
	ck_assert_int_eq(c->key_file_mode, 0400);
	ck_assert_int_eq(c->jwt_svid_file_mode, 0640);
	ck_assert_int_eq(c->daemon_mode, 0);
	ck_assert(c->add_intermediates_to_bundle);
	ck_assert_int_eq(c->health_bind_port, 8081);
	ck_assert_int_eq(helper_config_finish(c, &err), CUBEID_OK);
	ck_assert_int_eq(c->jwt_bundle_file_mode, 0600); /* spiffe-helper's defaults */
	helper_config_free(c);
}
END_TEST

START_TEST(test_blocks_and_escapes)
{
	struct helper_config *c =
	        parse_ok("svid_file_name = \"a\\u00e9\\t\\\"q\\\"\"\n"
	                 "jwt_svids { jwt_audience = \"x\", jwt_svid_file_name = \"x.jwt\" }\n"
	                 "jwt_svids {\n jwt_audience = \"y\"\n jwt_svid_file_name = \"y.jwt\"\n}\n"
	                 "cert_dir = 123\n");

	ck_assert_str_eq(c->svid_file_name, "a\xc3\xa9\t\"q\"");
	ck_assert_uint_eq(c->n_jwt, 2);
	ck_assert_str_eq(c->jwt[1].file, "y.jwt");
	ck_assert_str_eq(c->cert_dir, "123"); /* a number is a string's text, as in HCL */
	helper_config_free(c);
}
END_TEST

START_TEST(test_errors_name_key_and_line)
{
	parse_err("cert_dir = \"c\"\n\n  bogus_key = 1\n", "t.conf:3: unknown key 'bogus_key'");
	parse_err("jwt_svids = [{jwt_audience = \"a\",\n jwt_file = \"x\"}]\n",
	          "t.conf:2: unknown key 'jwt_file' in jwt_svids");
	parse_err("health_checks { port = 1 }\n", "t.conf:1: unknown key 'port' in health_checks");
	parse_err("daemon_mode = \"false\"\n", "t.conf:1: 'daemon_mode' must be true or false");
	parse_err("cert_file_mode = 0999\n", "t.conf:1: 'cert_file_mode' must be an integer");
	parse_err("cert_dir = \"x\"\ncert_dir = \"y\"\n", "t.conf:2: duplicate key 'cert_dir'");
	parse_err("cert_dir = \"unterminated\n", "t.conf:1: a string is not closed");
	parse_err("a = [1, 2\n", "t.conf:1: a list '[' is not closed");
	parse_err("x = { y = 1\n", "t.conf:1: an object '{' is not closed");
	parse_err("cert_dir \"x\"\n", "t.conf:1: expected '=' after 'cert_dir'");
	parse_err("cert_dir = \"x\" junk\n", "unexpected text after the value of 'cert_dir'");
	parse_err("cert_dir = <<EOF\nx\nEOF\n", "heredoc");
	parse_err("a = [[[[[[1]]]]]]\n", "nested more than");
	parse_err("/* open\n", "t.conf:1: a /* comment is not closed");
	parse_err("cert_dir = \"\\q\"\n", "unknown escape");
	/* spiffe-helper's ValidateConfig rules */
	parse_err("svid_file_name = \"a\"\n", "all or none of 'svid_file_name'");
	parse_err("cert_dir = \"x\"\n", "at least one of the sets");
	parse_err("jwt_svids = [{jwt_audience = \"a\"}]\n", "'jwt_svid_file_name' is required");
	parse_err("jwt_bundle_file_name = \"b\"\npid_file_name = \"/p\"\n",
	          "must specify renew_signal when using pid_file_name");
	parse_err("jwt_bundle_file_name = \"b\"\npid_file_name = \"/p\"\nrenew_signal = "
	          "\"SIGHUP\"\ndaemon_mode = false\n",
	          "pid_file_name is only supported in daemon mode");
	parse_err("jwt_bundle_file_name = \"b\"\nrenew_signal = \"SIGNOPE\"\n", "unknown signal");
	parse_err("jwt_bundle_file_name = \"sub/b.json\"\n", "plain file names");
	parse_err("jwt_bundle_file_name = \"b\"\ncert_file_mode = -1\n", "must be positive");
}
END_TEST

static struct helper_config *
finish_ok(const char *s)
{
	struct helper_config *c = parse_ok(s);
	char *err = NULL;
	int r = helper_config_finish(c, &err);

	ck_assert_msg(r == CUBEID_OK, "finish failed: %s", err != NULL ? err : "?");
	return c;
}

START_TEST(test_health_checks_keys)
{
	struct helper_config *c;

	/* spiffe-helper's defaults when enabled: 8081, /live, /ready */
	c = finish_ok("jwt_bundle_file_name = \"b\"\nhealth_checks { listener_enabled = true }\n");
	ck_assert(c->health_listener_enabled);
	ck_assert_int_eq(c->health_bind_port, 8081);
	ck_assert_str_eq(c->health_liveness_path, "/live");
	ck_assert_str_eq(c->health_readiness_path, "/ready");
	helper_config_free(c);
	c = finish_ok("jwt_bundle_file_name = \"b\"\nhealth_checks {\n listener_enabled = true\n"
	              " bind_port = \"0x1f90\"\n liveness_path = \"/healthz/live\"\n"
	              " readiness_path = \"/\"\n}\n");
	ck_assert_int_eq(c->health_bind_port, 8080);
	ck_assert_str_eq(c->health_liveness_path, "/healthz/live");
	ck_assert_str_eq(c->health_readiness_path, "/");
	helper_config_free(c);
	/* disabled: spiffe-helper checks nothing in the block */
	c = finish_ok("jwt_bundle_file_name = \"b\"\nhealth_checks { bind_port = -1\n"
	              "liveness_path = \"x\" }\n");
	ck_assert(!c->health_listener_enabled);
	helper_config_free(c);
	/* bad ports, bad paths, bad types, unknown keys with their line */
	parse_err("jwt_bundle_file_name = \"b\"\nhealth_checks { listener_enabled = true\n"
	          "bind_port = -1 }\n",
	          "bind port must be positive");
	parse_err("jwt_bundle_file_name = \"b\"\nhealth_checks { listener_enabled = true\n"
	          "bind_port = 65536 }\n",
	          "bind_port 65536 is larger than 65535");
	parse_err("health_checks {\n bind_port = \"http\" }\n",
	          "t.conf:2: 'bind_port' must be an integer");
	parse_err("health_checks {\n listener_enabled = \"yes\" }\n",
	          "t.conf:2: 'listener_enabled' must be true or false");
	parse_err("health_checks {\n listener_enabled = true\n bind_address = \"0.0.0.0\" }\n",
	          "t.conf:3: unknown key 'bind_address' in health_checks");
	parse_err("health_checks {\n liveness_path = [\"/a\"] }\n",
	          "t.conf:2: 'liveness_path' must be a string");
	parse_err("health_checks { listener_enabled = true }\nhealth_checks { }\n",
	          "t.conf:2: duplicate key 'health_checks'");
	parse_err("jwt_bundle_file_name = \"b\"\nhealth_checks { listener_enabled = true\n"
	          "liveness_path = \"live\" }\n",
	          "liveness_path 'live' must start with '/'");
	parse_err("jwt_bundle_file_name = \"b\"\nhealth_checks { listener_enabled = true\n"
	          "readiness_path = \"/re ady\" }\n",
	          "readiness_path '/re ady' must start with '/'");
	parse_err("jwt_bundle_file_name = \"b\"\nhealth_checks { listener_enabled = true\n"
	          "readiness_path = \"/{x}\" }\n",
	          "readiness_path '/{x}'");
	parse_err("jwt_bundle_file_name = \"b\"\nhealth_checks { listener_enabled = true\n"
	          "readiness_path = \"/live\" }\n",
	          "liveness_path and readiness_path are both '/live'");
}
END_TEST

static void
join_eq(const char *dir, const char *name, const char *want)
{
	char *p = helper_path_join(dir, name);

	ck_assert_ptr_nonnull(p);
	ck_assert_str_eq(p, want);
	free(p);
}

START_TEST(test_health_reply_like_spiffe_helper)
{
	struct helper_config *c;
	enum helper_write_status st[HELPER_HS_JWT0 + 2] = {0};
	char *body = NULL;
	size_t len = 0;
	int code = 0;

	/* Go's path.Join, as spiffe-helper names the JWT files */
	join_eq(NULL, "a.jwt", "a.jwt");
	join_eq("", "a.jwt", "a.jwt");
	join_eq("certs/", "a.jwt", "certs/a.jwt");
	join_eq("./certs//x/..", "a.jwt", "certs/a.jwt");
	join_eq("/../tmp/", "a.jwt", "/tmp/a.jwt");
	join_eq("../../c", "a", "../../c/a");
	join_eq(".", "a", "a");

	c = finish_ok("cert_dir = \"/run/c<&>\"\nsvid_file_name = \"s\"\n"
	              "svid_key_file_name = \"k\"\nsvid_bundle_file_name = \"b\"\n"
	              "jwt_bundle_file_name = \"z.json\"\n"
	              "jwt_svids = [{jwt_audience = \"a\", jwt_svid_file_name = \"a.jwt\"}]\n"
	              "health_checks { listener_enabled = true }\n");
	/* nothing written yet: alive, not ready; Go's encoding/json of its Response */
	ck_assert_int_eq(helper_health_reply(c, st, false, &code, &body, &len), CUBEID_OK);
	ck_assert_int_eq(code, 200);
	ck_assert_str_eq(body, "{\"status\":\"OK\",\"health\":{\"file_write_statuses\":{"
	                       "\"x509_write_status\":\"unwritten\",\"jwt_write_status\":{"
	                       "\"/run/c\\u003c\\u0026\\u003e/a.jwt\":\"unwritten\","
	                       "\"/run/c\\u003c\\u0026\\u003e/z.json\":\"unwritten\"}}}}");
	ck_assert_uint_eq(len, strlen(body));
	free(body);
	ck_assert_int_eq(helper_health_reply(c, st, true, &code, &body, &len), CUBEID_OK);
	ck_assert_int_eq(code, 503);
	ck_assert_ptr_nonnull(strstr(body, "{\"status\":\"Service Unavailable\",\"health\""));
	free(body);
	/* all but one written: still not ready */
	st[HELPER_HS_X509] = st[HELPER_HS_JWT_BUNDLE] = HELPER_WS_WRITTEN;
	ck_assert_int_eq(helper_health_reply(c, st, true, &code, &body, &len), CUBEID_OK);
	ck_assert_int_eq(code, 503);
	free(body);
	st[HELPER_HS_JWT0] = HELPER_WS_WRITTEN;
	ck_assert_int_eq(helper_health_reply(c, st, true, &code, &body, &len), CUBEID_OK);
	ck_assert_int_eq(code, 200);
	ck_assert_ptr_nonnull(strstr(body, "\"x509_write_status\":\"written\""));
	free(body);
	/* a failed write: not alive, not ready */
	st[HELPER_HS_X509] = HELPER_WS_FAILED;
	ck_assert_int_eq(helper_health_reply(c, st, false, &code, &body, &len), CUBEID_OK);
	ck_assert_int_eq(code, 503);
	ck_assert_ptr_nonnull(strstr(body, "\"x509_write_status\":\"failed\""));
	free(body);
	helper_config_free(c);

	/* without X.509 files: no x509_write_status */
	memset(st, 0, sizeof(st));
	c = finish_ok("jwt_svids = [{jwt_audience = \"a\", jwt_svid_file_name = \"a.jwt\"}]\n"
	              "health_checks { listener_enabled = true }\n");
	ck_assert_int_eq(helper_health_reply(c, st, true, &code, &body, &len), CUBEID_OK);
	ck_assert_int_eq(code, 503);
	ck_assert_str_eq(body, "{\"status\":\"Service Unavailable\",\"health\":{"
	                       "\"file_write_statuses\":{\"jwt_write_status\":{\"a.jwt\":"
	                       "\"unwritten\"}}}}");
	free(body);
	helper_config_free(c);
	/* X.509 only: jwt_write_status is an empty object, as Go writes an empty map */
	st[HELPER_HS_X509] = HELPER_WS_WRITTEN;
	c = finish_ok("svid_file_name = \"s\"\nsvid_key_file_name = \"k\"\n"
	              "svid_bundle_file_name = \"b\"\nhealth_checks { listener_enabled = true }\n");
	ck_assert_int_eq(helper_health_reply(c, st, true, &code, &body, &len), CUBEID_OK);
	ck_assert_int_eq(code, 200);
	ck_assert_str_eq(body, "{\"status\":\"OK\",\"health\":{\"file_write_statuses\":{"
	                       "\"x509_write_status\":\"written\",\"jwt_write_status\":{}}}}");
	free(body);
	helper_config_free(c);
}
END_TEST

static void
split_eq(const char *args, const char *const *want)
{
	char **v = NULL;
	size_t i;

	ck_assert_int_eq(cubeid_split_args("cmd", args, &v), CUBEID_OK);
	ck_assert_str_eq(v[0], "cmd");
	for (i = 0; want[i] != NULL; i++) {
		ck_assert_ptr_nonnull(v[i + 1]);
		ck_assert_str_eq(v[i + 1], want[i]);
	}
	ck_assert_ptr_null(v[i + 1]);
	cubeid_argv_free(v);
}

START_TEST(test_cmd_args_split_like_spiffe_helper)
{
	char **v = (char **)1;

	/* Go's encoding/csv with Comma = ' ' */
	split_eq("", (const char *const[]){NULL});
	split_eq("a b c", (const char *const[]){"a", "b", "c", NULL});
	split_eq("a \"b c\" d", (const char *const[]){"a", "b c", "d", NULL});
	split_eq("a  b", (const char *const[]){"a", "", "b", NULL});
	split_eq("\"x \"\"y\"\"\"", (const char *const[]){"x \"y\"", NULL});
	split_eq("a b\nc d", (const char *const[]){"a", "b", NULL}); /* one record */
	split_eq("\n\na b", (const char *const[]){"a", "b", NULL});  /* empty lines skipped */
	split_eq("a ", (const char *const[]){"a", "", NULL});
	ck_assert_int_eq(cubeid_split_args("cmd", "a\"b", &v), CUBEID_ERR_PARSE);
	ck_assert_ptr_null(v);
	ck_assert_int_eq(cubeid_split_args("cmd", "\"ab", &v), CUBEID_ERR_PARSE);
	ck_assert_int_eq(cubeid_split_args("cmd", "\"a\"b", &v), CUBEID_ERR_PARSE);
	ck_assert_int_eq(cubeid_split_args("cmd", "\n", &v), CUBEID_ERR_PARSE);
}
END_TEST

START_TEST(test_signals_and_pid_files)
{
	char path[] = "/tmp/cubeid-pid.XXXXXX";
	pid_t pid = 0;
	FILE *f;
	int fd;

	ck_assert_int_eq(cubeid_signal_parse("SIGHUP"), 1);
	ck_assert_int_eq(cubeid_signal_parse("usr1"), 10);
	ck_assert_int_eq(cubeid_signal_parse("15"), 15);
	ck_assert_int_eq(cubeid_signal_parse("SIGFOO"), -1);
	ck_assert_int_eq(cubeid_signal_parse("0"), -1);
	ck_assert_int_eq(cubeid_signal_parse(""), -1);
	fd = mkstemp(path);
	ck_assert_int_ge(fd, 0);
	f = fdopen(fd, "w");
	fputs(" 1234\n", f);
	fclose(f);
	ck_assert_int_eq(cubeid_pid_file_read(path, &pid), CUBEID_OK);
	ck_assert_int_eq(pid, 1234);
	f = fopen(path, "w");
	fputs("-1\n", f);
	fclose(f);
	ck_assert_int_eq(cubeid_pid_file_read(path, &pid), CUBEID_ERR_PARSE);
	f = fopen(path, "w");
	fputs("12 13\n", f);
	fclose(f);
	ck_assert_int_eq(cubeid_pid_file_read(path, &pid), CUBEID_ERR_PARSE);
	unlink(path);
	ck_assert_int_eq(cubeid_pid_file_read(path, &pid), CUBEID_ERR_NOT_FOUND);
}
END_TEST

START_TEST(test_run_without_shell)
{
	char *ok[] = {(char *)"/bin/sh", (char *)"-c", (char *)"exit 0", NULL};
	char *bad[] = {(char *)"/bin/sh", (char *)"-c", (char *)"exit 3", NULL};
	char *none[] = {(char *)"/nonexistent/prog", NULL};
	char *slow[] = {(char *)"/bin/sleep", (char *)"10", NULL};
	const char *why = NULL;

	ck_assert_int_eq(cubeid_run(ok, 5000, &why), CUBEID_OK);
	ck_assert_int_eq(cubeid_run(bad, 5000, &why), CUBEID_ERR_IO);
	ck_assert_str_eq(why, "the command exited with a non-zero status");
	ck_assert_int_ne(cubeid_run(none, 5000, &why), CUBEID_OK);
	ck_assert_int_eq(cubeid_run(slow, 100, &why), CUBEID_ERR_TIMEOUT);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("helper-config");
	TCase *tc = tcase_create("core");
	SRunner *sr;
	int failed;

	tcase_add_test(tc, test_spiffe_helper_example);
	tcase_add_test(tc, test_blocks_and_escapes);
	tcase_add_test(tc, test_errors_name_key_and_line);
	tcase_add_test(tc, test_health_checks_keys);
	tcase_add_test(tc, test_health_reply_like_spiffe_helper);
	tcase_add_test(tc, test_cmd_args_split_like_spiffe_helper);
	tcase_add_test(tc, test_signals_and_pid_files);
	tcase_add_test(tc, test_run_without_shell);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
