/*
 * The agent config file: defaults, every key, and errors that name the file,
 * the line and the key.
 */
#include "config.h"

#include "agent/agent.h"
#include "agent/http.h"

#include <cubeid/log.h>

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>

static struct agent_config *
parse_ok(const char *yaml)
{
	struct agent_config *c = NULL;
	char *err = NULL;
	int r = config_parse(yaml, strlen(yaml), "config.yaml", &c, &err);

	ck_assert_msg(r == 0, "config_parse: %d: %s", r, err != NULL ? err : "");
	return c;
}

static void
parse_fails(const char *yaml, const char *want)
{
	struct agent_config *c = (void *)1;
	char *err = NULL;
	int r = config_parse(yaml, strlen(yaml), "config.yaml", &c, &err);

	ck_assert_int_eq(r, CUBEID_ERR_CONFIG);
	ck_assert_ptr_null(c);
	ck_assert_ptr_nonnull(err);
	ck_assert_msg(strcmp(err, want) == 0, "error '%s', want '%s'", err, want);
	free(err);
}

START_TEST(test_defaults)
{
	struct agent_config *c = parse_ok("");

	ck_assert_str_eq(c->trust_domain, "cluster.local");
	ck_assert_str_eq(c->socket_path, "/run/cubeid/agent.sock");
	ck_assert_str_eq(c->state_dir, "/var/lib/cubeid");
	ck_assert_str_eq(c->entries, CUBEID_SYSCONFDIR "/cubeid/entries.yaml");
	ck_assert_ptr_null(c->token);
	ck_assert_ptr_null(c->kubelet_pods_url);
	ck_assert_int_eq(c->x509_svid_ttl, 3600);
	ck_assert_int_eq(c->jwt_svid_ttl, 300);
	ck_assert_int_eq(c->log_level, CUBEID_LOG_NOTICE);
	ck_assert_uint_eq(c->grpc.max_message, 4u << 20);
	ck_assert_uint_eq(c->grpc.max_streams, 100);
	ck_assert_uint_eq(c->grpc.max_connections, 4096);
	ck_assert_uint_eq(c->grpc.max_pending_output, 8u << 20);
	ck_assert_str_eq(c->source, "config.yaml");
	config_free(c);
	config_free(NULL);
	c = parse_ok("# only a comment\n");
	ck_assert_str_eq(c->trust_domain, "cluster.local");
	config_free(c);
}
END_TEST

START_TEST(test_every_key)
{
	struct agent_config *c = parse_ok("# cubeid-agent\n"
	                                  "trust_domain: example.org\n"
	                                  "socket_path: /run/spire/sockets/agent.sock\n"
	                                  "state_dir: /var/lib/cubeid-test\n"
	                                  "token: \"pkcs11:token=cubeid\"\n"
	                                  "pin_file: /etc/cubeid/pin\n"
	                                  "module: /usr/lib/softhsm/libsofthsm2.so\n"
	                                  "entries: /etc/cubeid/entries.d\n"
	                                  "x509_svid_ttl: 30m\n"
	                                  "jwt_svid_ttl: 90s\n"
	                                  "log_level: debug\n"
	                                  "http_address: 127.0.0.1:8080\n"
	                                  "kubelet_pods_url: http://127.0.0.1:10255/pods\n"
	                                  "pod_info_file: /run/cubeid/pods.json\n"
	                                  "attest_sha256_max: 16MiB\n"
	                                  "grpc:\n"
	                                  "  max_message: 64KiB\n"
	                                  "  max_streams: 10\n"
	                                  "  max_connections: 50\n"
	                                  "  max_pending_output: 1048576\n");

	ck_assert_str_eq(c->trust_domain, "example.org");
	ck_assert_str_eq(c->socket_path, "/run/spire/sockets/agent.sock");
	ck_assert_str_eq(c->state_dir, "/var/lib/cubeid-test");
	ck_assert_str_eq(c->token, "pkcs11:token=cubeid");
	ck_assert_str_eq(c->pin_file, "/etc/cubeid/pin");
	ck_assert_str_eq(c->module, "/usr/lib/softhsm/libsofthsm2.so");
	ck_assert_str_eq(c->entries, "/etc/cubeid/entries.d");
	ck_assert_int_eq(c->x509_svid_ttl, 1800);
	ck_assert_int_eq(c->jwt_svid_ttl, 90);
	ck_assert_int_eq(c->log_level, CUBEID_LOG_DEBUG);
	ck_assert_str_eq(c->http_address, "127.0.0.1:8080");
	ck_assert_str_eq(c->kubelet_pods_url, "http://127.0.0.1:10255/pods");
	ck_assert_str_eq(c->pod_info_file, "/run/cubeid/pods.json");
	ck_assert_uint_eq(c->attest_sha256_max, 16u << 20);
	ck_assert_uint_eq(c->grpc.max_message, 64u << 10);
	ck_assert_uint_eq(c->grpc.max_streams, 10);
	ck_assert_uint_eq(c->grpc.max_connections, 50);
	ck_assert_uint_eq(c->grpc.max_pending_output, 1048576);
	config_free(c);

	/* a null value clears an optional string */
	c = parse_ok("pod_info_file: ~\nattest_sha256_max: 0\n");
	ck_assert_ptr_null(c->pod_info_file);
	ck_assert_uint_eq(c->attest_sha256_max, 0);
	config_free(c);
}
END_TEST

START_TEST(test_errors)
{
	parse_fails("trust_domain: example.org\n"
	            "state_dir: /var/lib/cubeid\n"
	            "\n"
	            "# the socket\n"
	            "\n"
	            "\n"
	            "sokcet_path: /run/x.sock\n",
	            "config.yaml:7: unknown key 'sokcet_path'");
	parse_fails("x509_svid_ttl: 1hour\n",
	            "config.yaml:1: 'x509_svid_ttl': bad duration '1hour' (digits and one unit "
	            "s, m, h or d: 90s, 5m, 1h)");
	parse_fails("jwt_svid_ttl: 0\n", "config.yaml:1: 'jwt_svid_ttl': bad duration '0' (digits "
	                                 "and one unit s, m, h or d: 90s, 5m, 1h)");
	parse_fails("jwt_svid_ttl: \"5m\"\n", "config.yaml:1: 'jwt_svid_ttl': bad duration '5m' "
	                                      "(digits and one unit s, m, h or d: 90s, 5m, 1h)");
	parse_fails("log_level: loud\n", "config.yaml:1: 'log_level': unknown level 'loud' (error, "
	                                 "warning, notice, info, debug)");
	parse_fails("socket_path: run/agent.sock\n",
	            "config.yaml:1: 'socket_path' must be an absolute path");
	parse_fails("trust_domain: Example.Org\n",
	            "config.yaml:1: 'trust_domain': 'Example.Org' is not a trust domain name: "
	            "trust domain must be lowercase");
	parse_fails("trust_domain:\n", "config.yaml:1: 'trust_domain' may not be empty");
	parse_fails("socket_path: [a, b]\n",
	            "config.yaml:1: 'socket_path' must be a single value (a scalar)");
	parse_fails("state_dir: /a\nstate_dir: /b\n", "config.yaml:2: duplicate key 'state_dir'");
	parse_fails("kubelet_pods_url: file:///etc/passwd\n",
	            "config.yaml:1: 'kubelet_pods_url' must be an http:// or https:// URL");
	parse_fails("grpc:\n  max_streams: 0\n",
	            "config.yaml:2: 'max_streams': bad number '0' (1 to 100000)");
	parse_fails("grpc:\n  max_mesage: 1\n", "config.yaml:2: unknown key 'grpc.max_mesage'");
	parse_fails("grpc: 5\n", "config.yaml:1: 'grpc' must be a mapping (max_message, "
	                         "max_streams, max_connections, max_pending_output, "
	                         "max_connections_per_uid, max_streams_per_uid, "
	                         "first_request_timeout)");
	parse_fails("grpc:\n  max_connections_per_uid: 0\n",
	            "config.yaml:2: 'max_connections_per_uid': bad number '0' (1 to 1000000)");
	parse_fails("attest_sha256_max: 5 MiB\n",
	            "config.yaml:1: 'attest_sha256_max': bad size '5 MiB' (bytes, or with KiB, "
	            "MiB, GiB; at most 4294967296)");
	parse_fails("http_address: 127.0.0.1\n",
	            "config.yaml:1: 'http_address': bad address '127.0.0.1': expected HOST:PORT "
	            "(an IPv6 address goes in brackets)");
	parse_fails("http_address: example.org:80\n",
	            "config.yaml:1: 'http_address': bad address 'example.org:80': not an IPv4 "
	            "address (host names are not looked up)");
	parse_fails("http_address: 127.0.0.1:65536\n",
	            "config.yaml:1: 'http_address': bad address '127.0.0.1:65536': the port must "
	            "be a number 0..65535");
	parse_fails("- a\n", "config.yaml:1: the config must be a mapping of keys");
	parse_fails("a: [\n",
	            "config.yaml:2: while parsing a flow node, did not find expected node content");
}
END_TEST

/* http_address: what the HTTP server (agent/http.c) accepts */
START_TEST(test_http_address)
{
	static const char *const good[] = {"127.0.0.1:9090", "0.0.0.0:0", "[::1]:80",
	                                   "localhost:65535", "[::]:1"};
	static const char *const bad[] = {"",
	                                  ":80",
	                                  "127.0.0.1:",
	                                  "127.0.0.1:-1",
	                                  "127.0.0.1:+80",
	                                  "127.0.0.1:080a",
	                                  "::1:80",
	                                  "[::1]80",
	                                  "[::1",
	                                  "[127.0.0.1]:80",
	                                  "1.2.3:80",
	                                  "1.2.3.4:123456",
	                                  "host.example:80",
	                                  "127.0.0.1:80 ",
	                                  " 127.0.0.1:80"};
	struct sockaddr_storage ss;
	socklen_t sl;
	const char *why;
	size_t i;

	for (i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		ck_assert_msg(cubeid_addr_parse(good[i], &ss, &sl, &why) == CUBEID_OK,
		              "'%s' refused: %s", good[i], why);
	ck_assert_int_eq(cubeid_addr_parse("[::1]:8080", &ss, &sl, &why), CUBEID_OK);
	ck_assert_int_eq(ss.ss_family, AF_INET6);
	ck_assert_int_eq(ntohs(((struct sockaddr_in6 *)&ss)->sin6_port), 8080);
	ck_assert_int_eq(cubeid_addr_parse("localhost:1", &ss, &sl, &why), CUBEID_OK);
	ck_assert_int_eq(ss.ss_family, AF_INET);
	ck_assert_uint_eq(ntohl(((struct sockaddr_in *)&ss)->sin_addr.s_addr), 0x7f000001u);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		why = NULL;
		ck_assert_msg(cubeid_addr_parse(bad[i], &ss, &sl, &why) == CUBEID_ERR_CONFIG,
		              "'%s' accepted", bad[i]);
		ck_assert_ptr_nonnull(why);
	}
	ck_assert_int_eq(cubeid_addr_parse(NULL, &ss, &sl, &why), CUBEID_ERR_CONFIG);
}
END_TEST

START_TEST(test_files)
{
	char dir[] = "/tmp/cubeid-config-XXXXXX", path[128], *err = NULL;
	struct agent_config *c = NULL;
	FILE *f;
	size_t i;

	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/config.yaml", dir);
	f = fopen(path, "w");
	ck_assert_ptr_nonnull(f);
	fputs("trust_domain: example.org\nlog_level: info\n", f);
	fclose(f);
	ck_assert_int_eq(config_load(path, &c, &err), 0);
	ck_assert_str_eq(c->trust_domain, "example.org");
	ck_assert_str_eq(c->source, path);
	config_free(c);

	f = fopen(path, "w");
	fputs("trust_domain: example.org\nbogus: 1\n", f);
	fclose(f);
	ck_assert_int_eq(config_load(path, &c, &err), CUBEID_ERR_CONFIG);
	ck_assert_ptr_nonnull(strstr(err, "config.yaml:2: unknown key 'bogus'"));
	ck_assert_ptr_nonnull(strstr(err, dir));
	free(err);

	/* over the 1 MiB limit: refused before parsing */
	f = fopen(path, "w");
	for (i = 0; i < (1u << 20) / 16 + 1; i++)
		fputs("# padding......\n", f);
	fclose(f);
	ck_assert_int_eq(config_load(path, &c, &err), CUBEID_ERR_TOO_LARGE);
	ck_assert_ptr_null(c);
	free(err);
	unlink(path);
	ck_assert_int_eq(config_load(path, &c, &err), CUBEID_ERR_NOT_FOUND);
	free(err);
	rmdir(dir);
}
END_TEST

/* The PIN file: the agent's own, no group or other bits. */
START_TEST(test_secret_file)
{
	char dir[] = "/tmp/cubeid-config-XXXXXX", path[128], *err = NULL;
	FILE *f;

	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/pin", dir);
	f = fopen(path, "w");
	ck_assert_ptr_nonnull(f);
	fputs("1234\n", f);
	fclose(f);
	ck_assert_int_eq(chmod(path, 0600), 0);
	ck_assert_int_eq(config_secret_file_check(path, &err), 0);
	ck_assert_ptr_null(err);
	ck_assert_int_eq(chmod(path, 0400), 0);
	ck_assert_int_eq(config_secret_file_check(path, &err), 0);
	ck_assert_int_eq(chmod(path, 0640), 0);
	ck_assert_int_eq(config_secret_file_check(path, &err), CUBEID_ERR_PERMISSION);
	ck_assert_msg(strstr(err, "(mode 0640): refused") != NULL, "%s", err);
	ck_assert_ptr_nonnull(strstr(err, path));
	free(err);
	ck_assert_int_eq(chmod(path, 0604), 0);
	ck_assert_int_eq(config_secret_file_check(path, &err), CUBEID_ERR_PERMISSION);
	free(err);
	ck_assert_int_eq(chmod(path, 0600), 0);
	if (geteuid() == 0) { /* another owner: only root can make one */
		ck_assert_int_eq(chown(path, 65534, 65534), 0);
		ck_assert_int_eq(config_secret_file_check(path, &err), CUBEID_ERR_PERMISSION);
		ck_assert_msg(strstr(err, "owned by uid 65534") != NULL, "%s", err);
		free(err);
	}
	unlink(path);
	ck_assert_int_eq(config_secret_file_check(path, &err), CUBEID_ERR_NOT_FOUND);
	free(err);
	ck_assert_int_eq(config_secret_file_check(dir, &err), CUBEID_ERR_IO);
	ck_assert_ptr_nonnull(strstr(err, "not a regular file"));
	free(err);
	rmdir(dir);
}
END_TEST

/* The config goes through yu_load() too: deep nesting is refused. */
START_TEST(test_deep_nesting)
{
	char dir[] = "/tmp/cubeid-config-XXXXXX", path[128], *err = NULL;
	struct agent_config *c = NULL;
	FILE *f;
	int i;

	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/config.yaml", dir);
	f = fopen(path, "w");
	ck_assert_ptr_nonnull(f);
	fputs("trust_domain: example.org\ngrpc: ", f);
	for (i = 0; i < 20000; i++)
		fputs("{a: ", f);
	fclose(f);
	ck_assert_int_eq(config_load(path, &c, &err), CUBEID_ERR_CONFIG);
	ck_assert_ptr_null(c);
	ck_assert_msg(strstr(err, "config.yaml:2: nested deeper than 64 levels") != NULL, "%s",
	              err);
	free(err);
	unlink(path);
	rmdir(dir);
}
END_TEST

int
main(void)
{
	Suite *su = suite_create("config");
	TCase *tc = tcase_create("config");
	SRunner *sr;
	int failed;

	tcase_add_test(tc, test_defaults);
	tcase_add_test(tc, test_every_key);
	tcase_add_test(tc, test_errors);
	tcase_add_test(tc, test_files);
	tcase_add_test(tc, test_http_address);
	tcase_add_test(tc, test_secret_file);
	tcase_add_test(tc, test_deep_nesting);
	suite_add_tcase(su, tc);
	sr = srunner_create(su);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
