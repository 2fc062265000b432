/*
 * The agent's HTTP server (agent/http.c) on a real loop and a real loopback
 * socket: handlers run on the loop thread and answer; GET and HEAD only;
 * no request bodies; unknown paths 404; a failing handler 500; oversized
 * request headers refused; route registration limits.  A client thread
 * speaks raw HTTP/1.1 so that what goes over the wire is what is checked.
 */
#include "config.h"

#include "agent/http.h"

#include <arpa/inet.h>
#include <check.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static pthread_t loop_thread;
static int handler_calls;
static pthread_t handler_thread;

static int
h_hello(void *ctx, const char *path, struct http_reply *r)
{
	(void)ctx;
	handler_calls++;
	handler_thread = pthread_self();
	return http_reply_printf(r, 200, "text/plain", "hello %s\n", path);
}

static int
h_fail(void *ctx, const char *path, struct http_reply *r)
{
	(void)ctx;
	(void)path;
	r->body = strdup("partial"); /* must be freed by the server */
	r->len = 7;
	return CUBEID_ERR_IO;
}

static int
h_teapot(void *ctx, const char *path, struct http_reply *r)
{
	(void)path;
	r->cache_control = "max-age=60";
	return http_reply_printf(r, 418, "application/json", "{\"n\":%d}", *(int *)ctx);
}

struct client {
	unsigned short port;
	const char *request;
	size_t request_len;
	char response[65536];
	size_t len;
	cubeid_loop *loop;
};

/* Send the request, read until the server closes, then stop the loop. */
static void *
client_run(void *arg)
{
	struct client *c = arg;
	struct sockaddr_in sa = {.sin_family = AF_INET};
	ssize_t n;
	size_t off = 0;
	int fd;

	sa.sin_port = htons(c->port);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	fd = socket(AF_INET, SOCK_STREAM, 0);
	if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
		while (off < c->request_len &&
		       (n = write(fd, c->request + off, c->request_len - off)) > 0)
			off += (size_t)n;
		shutdown(fd, SHUT_WR);
		while (c->len < sizeof(c->response) - 1 &&
		       (n = read(fd, c->response + c->len, sizeof(c->response) - 1 - c->len)) > 0)
			c->len += (size_t)n;
	}
	c->response[c->len] = '\0';
	if (fd >= 0)
		close(fd);
	loop_stop(c->loop);
	return NULL;
}

static int teapot_n = 7;

/* One request against a fresh server; returns the raw response. */
static void
roundtrip(const char *request, size_t len, struct client *c)
{
	cubeid_loop *l;
	http_server *s;
	pthread_t t;
	const char *addr;

	memset(c, 0, sizeof(*c));
	ck_assert_int_eq(loop_new(&l), 0);
	ck_assert_int_eq(http_server_new(l, "127.0.0.1:0", &s), 0);
	ck_assert_int_eq(http_server_route(s, "/hello", h_hello, NULL), 0);
	ck_assert_int_eq(http_server_route(s, "/fail", h_fail, NULL), 0);
	ck_assert_int_eq(http_server_route(s, "/teapot", h_teapot, &teapot_n), 0);
	addr = http_server_address(s);
	ck_assert_ptr_nonnull(addr);
	ck_assert_msg(strncmp(addr, "127.0.0.1:", 10) == 0, "address %s", addr);
	c->port = (unsigned short)atoi(addr + 10);
	ck_assert_int_gt(c->port, 0);
	c->request = request;
	c->request_len = len;
	c->loop = l;
	loop_thread = pthread_self();
	ck_assert_int_eq(pthread_create(&t, NULL, client_run, c), 0);
	loop_run(l);
	pthread_join(t, NULL);
	http_server_free(s);
	loop_free(l);
}

#define REQ(s) (s), sizeof(s) - 1

START_TEST(test_get_runs_the_handler_on_the_loop_thread)
{
	struct client c;

	handler_calls = 0;
	roundtrip(REQ("GET /hello?x=1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"), &c);
	ck_assert_msg(strncmp(c.response, "HTTP/1.1 200", 12) == 0, "%s", c.response);
	ck_assert_ptr_nonnull(strstr(c.response, "\r\n\r\nhello /hello\n"));
	ck_assert_ptr_nonnull(strstr(c.response, "Cache-Control: no-store"));
	ck_assert_ptr_nonnull(strstr(c.response, "X-Content-Type-Options: nosniff"));
	ck_assert_int_eq(handler_calls, 1);
	ck_assert(pthread_equal(handler_thread, loop_thread));
}
END_TEST

START_TEST(test_head_has_no_body)
{
	struct client c;

	roundtrip(REQ("HEAD /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"), &c);
	ck_assert_msg(strncmp(c.response, "HTTP/1.1 200", 12) == 0, "%s", c.response);
	ck_assert_ptr_null(strstr(c.response, "hello /hello"));
}
END_TEST

START_TEST(test_status_type_and_cache_control_from_the_handler)
{
	struct client c;

	roundtrip(REQ("GET /teapot HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"), &c);
	ck_assert_msg(strncmp(c.response, "HTTP/1.1 418", 12) == 0, "%s", c.response);
	ck_assert_ptr_nonnull(strstr(c.response, "Content-Type: application/json"));
	ck_assert_ptr_nonnull(strstr(c.response, "Cache-Control: max-age=60"));
	ck_assert_ptr_nonnull(strstr(c.response, "{\"n\":7}"));
}
END_TEST

START_TEST(test_post_is_405_with_allow)
{
	struct client c;

	handler_calls = 0;
	roundtrip(REQ("POST /hello HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nConnection: "
	              "close\r\n\r\nabc"),
	          &c);
	ck_assert_msg(strncmp(c.response, "HTTP/1.1 405", 12) == 0, "%s", c.response);
	ck_assert_ptr_nonnull(strstr(c.response, "Allow: GET, HEAD"));
	ck_assert_int_eq(handler_calls, 0);
}
END_TEST

START_TEST(test_a_body_is_413)
{
	struct client c;

	handler_calls = 0;
	roundtrip(REQ("GET /hello HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nConnection: "
	              "close\r\n\r\nhello"),
	          &c);
	ck_assert_msg(strncmp(c.response, "HTTP/1.1 413", 12) == 0, "%s", c.response);
	ck_assert_int_eq(handler_calls, 0);
}
END_TEST

START_TEST(test_unknown_path_is_404_and_failure_500)
{
	struct client c;

	roundtrip(REQ("GET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"), &c);
	ck_assert_msg(strncmp(c.response, "HTTP/1.1 404", 12) == 0, "%s", c.response);
	roundtrip(REQ("GET /fail HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"), &c);
	ck_assert_msg(strncmp(c.response, "HTTP/1.1 500", 12) == 0, "%s", c.response);
	ck_assert_ptr_null(strstr(c.response, "partial"));
}
END_TEST

START_TEST(test_oversized_headers_are_refused)
{
	struct client c;
	size_t n = HTTP_MEMORY_LIMIT * 2, off;
	char *req = malloc(n + 128);

	ck_assert_ptr_nonnull(req);
	handler_calls = 0;
	off = (size_t)sprintf(req, "GET /hello HTTP/1.1\r\nHost: x\r\nX-Big: ");
	memset(req + off, 'a', n);
	off += n;
	off += (size_t)sprintf(req + off, "\r\nConnection: close\r\n\r\n");
	roundtrip(req, off, &c);
	free(req);
	ck_assert_int_eq(handler_calls, 0);
	/* refused with a 4xx status line, or the connection closed unanswered */
	ck_assert_msg(c.len == 0 || strncmp(c.response, "HTTP/1.1 4", 10) == 0, "%s", c.response);
}
END_TEST

START_TEST(test_route_limits)
{
	cubeid_loop *l;
	http_server *s;
	char path[32];
	int i;

	ck_assert_int_eq(loop_new(&l), 0);
	ck_assert_int_eq(http_server_new(l, "127.0.0.1:0", &s), 0);
	ck_assert_int_eq(http_server_route(s, "no-slash", h_hello, NULL), CUBEID_ERR_INVALID_ARG);
	ck_assert_int_eq(http_server_route(s, "/x", NULL, NULL), CUBEID_ERR_INVALID_ARG);
	for (i = 0; i < HTTP_MAX_ROUTES; i++) {
		snprintf(path, sizeof(path), "/r%d", i);
		ck_assert_int_eq(http_server_route(s, path, h_hello, NULL), 0);
	}
	ck_assert_int_eq(http_server_route(s, "/one-too-many", h_hello, NULL),
	                 CUBEID_ERR_TOO_LARGE);
	/* replacing an existing route is always possible */
	ck_assert_int_eq(http_server_route(s, "/r0", h_teapot, &teapot_n), 0);
	/* the port is ours alone: a second server on it is refused */
	{
		char taken[64];
		http_server *s2 = (void *)1;

		snprintf(taken, sizeof(taken), "%s", http_server_address(s));
		ck_assert_int_eq(http_server_new(l, taken, &s2), CUBEID_ERR_IO);
		ck_assert_ptr_null(s2);
	}
	http_server_free(s);
	ck_assert_int_eq(http_server_new(l, "example.org:80", &s), CUBEID_ERR_CONFIG);
	ck_assert_ptr_null(s);
	http_server_free(NULL);
	loop_free(l);
}
END_TEST

static void *
loop_main(void *arg)
{
	loop_run(arg);
	return NULL;
}

/* GET path on a new connection; the status line's code, or -1. */
static int
get_status(unsigned short port, const char *path)
{
	struct sockaddr_in sa = {.sin_family = AF_INET};
	char req[128], resp[512];
	ssize_t n;
	size_t len = 0;
	int fd, code = -1;

	sa.sin_port = htons(port);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if ((fd = socket(AF_INET, SOCK_STREAM, 0)) < 0)
		return -1;
	snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", path);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
	    write(fd, req, strlen(req)) == (ssize_t)strlen(req))
		while (len < sizeof(resp) - 1 &&
		       (n = read(fd, resp + len, sizeof(resp) - 1 - len)) > 0)
			len += (size_t)n;
	resp[len] = '\0';
	close(fd);
	if (sscanf(resp, "HTTP/1.1 %d", &code) != 1)
		code = -1;
	return code;
}

START_TEST(test_probes_are_answered_while_idle_connections_fill_the_server)
{
	int idle[HTTP_MAX_CONNECTIONS + 16];
	const size_t n_idle = sizeof(idle) / sizeof(idle[0]);
	struct sockaddr_in sa = {.sin_family = AF_INET};
	cubeid_loop *l;
	http_server *s;
	pthread_t t;
	unsigned short port;
	size_t i;
	int ok = 0;

	ck_assert_int_eq(loop_new(&l), 0);
	ck_assert_int_eq(http_server_new(l, "127.0.0.1:0", &s), 0);
	ck_assert_int_eq(http_server_route(s, "/hello", h_hello, NULL), 0);
	port = (unsigned short)atoi(http_server_address(s) + 10);
	ck_assert_int_eq(pthread_create(&t, NULL, loop_main, l), 0);
	/* a neighbour on the probe's own address holds more idle connections
	 * than the server takes */
	sa.sin_port = htons(port);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	for (i = 0; i < n_idle; i++) {
		idle[i] = socket(AF_INET, SOCK_STREAM, 0);
		ck_assert_int_ge(idle[i], 0);
		ck_assert_int_eq(connect(idle[i], (struct sockaddr *)&sa, sizeof(sa)), 0);
	}
	/* every probe is still answered */
	for (i = 0; i < 60; i++)
		ok += get_status(port, "/hello") == 200;
	ck_assert_int_eq(ok, 60);
	for (i = 0; i < n_idle; i++)
		close(idle[i]);
	loop_stop(l);
	pthread_join(t, NULL);
	http_server_free(s);
	loop_free(l);
}
END_TEST

START_TEST(test_restart_on_the_same_port_after_serving)
{
	char addr[64];
	cubeid_loop *l;
	http_server *s;
	pthread_t t;
	unsigned short port;
	int fd;
	struct sockaddr_in sa = {.sin_family = AF_INET};

	ck_assert_int_eq(loop_new(&l), 0);
	ck_assert_int_eq(http_server_new(l, "127.0.0.1:0", &s), 0);
	ck_assert_int_eq(http_server_route(s, "/hello", h_hello, NULL), 0);
	snprintf(addr, sizeof(addr), "%s", http_server_address(s));
	port = (unsigned short)atoi(addr + 10);
	ck_assert_int_eq(pthread_create(&t, NULL, loop_main, l), 0);
	ck_assert_int_eq(get_status(port, "/hello"), 200);
	/* a probe's connection is still open as the server stops: the
	 * server's side closes first and sits in TIME-WAIT */
	sa.sin_port = htons(port);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	fd = socket(AF_INET, SOCK_STREAM, 0);
	ck_assert_int_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	ck_assert_int_eq(write(fd, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n", 32), 32);
	usleep(100 * 1000);
	loop_stop(l);
	pthread_join(t, NULL);
	http_server_free(s);
	/* restarted at once on the same port */
	ck_assert_int_eq(http_server_new(l, addr, &s), 0);
	http_server_free(s);
	close(fd);
	loop_free(l);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("http");
	TCase *tc = tcase_create("core");
	SRunner *sr;
	int failed;

	tcase_add_test(tc, test_get_runs_the_handler_on_the_loop_thread);
	tcase_add_test(tc, test_head_has_no_body);
	tcase_add_test(tc, test_status_type_and_cache_control_from_the_handler);
	tcase_add_test(tc, test_post_is_405_with_allow);
	tcase_add_test(tc, test_a_body_is_413);
	tcase_add_test(tc, test_unknown_path_is_404_and_failure_500);
	tcase_add_test(tc, test_oversized_headers_are_refused);
	tcase_add_test(tc, test_route_limits);
	tcase_add_test(tc, test_probes_are_answered_while_idle_connections_fill_the_server);
	tcase_add_test(tc, test_restart_on_the_same_port_after_serving);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
