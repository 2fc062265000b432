/*
 * `cubeid helper`'s health listener (cli/helper.h): spiffe-helper
 * v0.11.0's health_checks.  With listener_enabled, in daemon mode, it
 * serves on bind_port (8081), on every address as spiffe-helper's ":PORT"
 * does unless --health-address says which:
 *
 *   liveness_path (/live):   200 unless the last write of an output failed
 *   readiness_path (/ready): 200 once every output has been written
 *
 * otherwise 503; the body is spiffe-helper's JSON (Go's encoding/json of its
 * Response) in both cases, e.g.
 *
 *   {"status":"OK","health":{"file_write_statuses":{
 *    "x509_write_status":"written","jwt_write_status":{"certs/a.token":"written"}}}}
 *
 * x509_write_status only when the X.509 files are configured; the keys of
 * jwt_write_status are path.Join(cert_dir, name) of the JWT bundle and
 * JWT-SVID files, sorted.  Other paths: 404 "404 page not found" as Go's
 * ServeMux answers.  Only GET and HEAD (spiffe-helper takes any method).
 */
#include "config.h"

#include "cli/helper.h"
#include <cubeid/os.h>

#include <cubeid/error.h>
#include <cubeid/log.h>

#include <microhttpd.h>

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------ the body */

struct sbuf {
	char *p;
	size_t len, cap;
	bool oom;
};

static void
sb_add(struct sbuf *b, const char *s, size_t n)
{
	char *np;
	size_t cap;

	if (b->oom)
		return;
	if (b->len + n + 1 > b->cap) {
		cap = b->cap ? b->cap : 256;
		while (cap < b->len + n + 1)
			cap *= 2;
		if ((np = realloc(b->p, cap)) == NULL) {
			b->oom = true;
			return;
		}
		b->p = np;
		b->cap = cap;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

static void
sb_str(struct sbuf *b, const char *s)
{
	sb_add(b, s, strlen(s));
}

/* A JSON string as Go's encoding/json writes it: \" \\ \n \r \t, other
 * controls and < > & as \u00XX, U+2028 and U+2029 escaped.  (Invalid
 * UTF-8, which Go turns into U+FFFD, cannot be in our paths' output:
 * it is copied as it is.) */
static void
sb_json(struct sbuf *b, const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	char e[8];

	sb_add(b, "\"", 1);
	for (; *p != '\0'; p++) {
		if (*p == '"' || *p == '\\') {
			e[0] = '\\';
			e[1] = (char)*p;
			sb_add(b, e, 2);
		} else if (*p == '\n') {
			sb_str(b, "\\n");
		} else if (*p == '\r') {
			sb_str(b, "\\r");
		} else if (*p == '\t') {
			sb_str(b, "\\t");
		} else if (*p < 0x20 || *p == '<' || *p == '>' || *p == '&') {
			snprintf(e, sizeof(e), "\\u%04x", *p);
			sb_str(b, e);
		} else if (p[0] == 0xe2 && p[1] == 0x80 && (p[2] == 0xa8 || p[2] == 0xa9)) {
			sb_str(b, p[2] == 0xa8 ? "\\u2028" : "\\u2029");
			p += 2;
		} else {
			sb_add(b, (const char *)p, 1);
		}
	}
	sb_add(b, "\"", 1);
}

/* Go's path.Join(dir, name): path.Clean of "dir/name" (or of name). */
char *
helper_path_join(const char *dir, const char *name)
{
	char *in = NULL, *out, *seg, *save = NULL, **stack;
	size_t n = 0, i, o = 0;
	bool rooted;

	if (asprintf(&in, "%s/%s", dir != NULL ? dir : "", name) < 0)
		return NULL;
	rooted = dir != NULL && dir[0] == '/';
	out = calloc(1, strlen(in) + 2);
	stack = calloc(strlen(in) + 1, sizeof(*stack));
	if (out == NULL || stack == NULL) {
		free(in);
		free(out);
		free(stack);
		return NULL;
	}
	for (seg = strtok_r(in, "/", &save); seg != NULL; seg = strtok_r(NULL, "/", &save)) {
		if (strcmp(seg, ".") == 0)
			continue;
		if (strcmp(seg, "..") == 0) {
			if (n > 0 && strcmp(stack[n - 1], "..") != 0)
				n--;
			else if (!rooted)
				stack[n++] = seg;
			continue;
		}
		stack[n++] = seg;
	}
	if (rooted)
		out[o++] = '/';
	for (i = 0; i < n; i++) {
		if (i > 0)
			out[o++] = '/';
		memcpy(out + o, stack[i], strlen(stack[i]));
		o += strlen(stack[i]);
	}
	if (o == 0)
		out[o++] = '.';
	out[o] = '\0';
	free(stack);
	free(in);
	return out;
}

static const char *const status_names[] = {"unwritten", "failed", "written"};

struct jkey {
	char *path;
	enum helper_write_status st;
};

static int
jkey_cmp(const void *a, const void *b)
{
	return strcmp(((const struct jkey *)a)->path, ((const struct jkey *)b)->path);
}

int
helper_health_reply(const struct helper_config *c, const enum helper_write_status *st,
                    bool readiness, int *http_status, char **body, size_t *len)
{
	struct jkey k[1 + HELPER_JWT_SVIDS_MAX];
	bool x509 = c->svid_file_name != NULL && *c->svid_file_name != '\0';
	bool live = true, ready = true, good;
	struct sbuf b = {0};
	size_t n = 0, i;
	int rc = CUBEID_OK;

	*body = NULL;
	*len = 0;
	if (c->jwt_bundle_file_name != NULL && *c->jwt_bundle_file_name != '\0')
		k[n++] = (struct jkey){helper_path_join(c->cert_dir, c->jwt_bundle_file_name),
		                       st[HELPER_HS_JWT_BUNDLE]};
	for (i = 0; i < c->n_jwt && i < HELPER_JWT_SVIDS_MAX; i++)
		k[n++] = (struct jkey){helper_path_join(c->cert_dir, c->jwt[i].file),
		                       st[HELPER_HS_JWT0 + i]};
	for (i = 0; i < n; i++)
		if (k[i].path == NULL)
			rc = CUBEID_ERR_NOMEM;
	if (rc != CUBEID_OK)
		goto out;
	qsort(k, n, sizeof(k[0]), jkey_cmp);
	for (i = 0; i < n; i++) {
		live = live && k[i].st != HELPER_WS_FAILED;
		ready = ready && k[i].st == HELPER_WS_WRITTEN;
	}
	if (x509) {
		live = live && st[HELPER_HS_X509] != HELPER_WS_FAILED;
		ready = ready && st[HELPER_HS_X509] == HELPER_WS_WRITTEN;
	}
	good = readiness ? ready : live;
	*http_status = good ? MHD_HTTP_OK : MHD_HTTP_SERVICE_UNAVAILABLE;
	sb_str(&b, good ? "{\"status\":\"OK\"" : "{\"status\":\"Service Unavailable\"");
	sb_str(&b, ",\"health\":{\"file_write_statuses\":{");
	if (x509) {
		sb_str(&b, "\"x509_write_status\":");
		sb_json(&b, status_names[st[HELPER_HS_X509]]);
		sb_str(&b, ",");
	}
	sb_str(&b, "\"jwt_write_status\":{");
	for (i = 0; i < n; i++) {
		if (i > 0)
			sb_str(&b, ",");
		sb_json(&b, k[i].path);
		sb_str(&b, ":");
		sb_json(&b, status_names[k[i].st]);
	}
	sb_str(&b, "}}}}");
	if (b.oom) {
		free(b.p);
		rc = CUBEID_ERR_NOMEM;
		goto out;
	}
	*body = b.p;
	*len = b.len;
out:
	for (i = 0; i < n; i++)
		free(k[i].path);
	return rc;
}

/* ------------------------------------------------------------ the server */

struct helper_health {
	struct MHD_Daemon *d;
	const struct helper_config *c;
	helper_health_fn snap;
	void *arg;
	unsigned port;
};

static enum MHD_Result
reply(struct MHD_Connection *conn, unsigned status, const char *type, char *body, size_t len,
      bool must_free)
{
	struct MHD_Response *r;
	enum MHD_Result ret;

	r = MHD_create_response_from_buffer(
	        len, body, must_free ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
	if (r == NULL) {
		if (must_free)
			free(body);
		return MHD_NO;
	}
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
	MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
	if (status == MHD_HTTP_METHOD_NOT_ALLOWED)
		MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
	ret = MHD_queue_response(conn, status, r);
	MHD_destroy_response(r);
	return ret;
}

static enum MHD_Result
on_request(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
           const char *version, const char *upload, size_t *upload_len, void **state)
{
	struct helper_health *h = cls;
	enum helper_write_status st[HELPER_HS_JWT0 + HELPER_JWT_SVIDS_MAX];
	char *body = NULL;
	size_t len = 0;
	int code = 0;
	bool ready;

	(void)version;
	(void)upload;
	(void)state;
	/* Answered on the first call, once the headers are in (as agent/http.c
	 * does); a body the client sends after is read and dropped. */
	if (*upload_len != 0) {
		*upload_len = 0;
		return MHD_YES;
	}
	if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 && strcmp(method, MHD_HTTP_METHOD_HEAD) != 0)
		return reply(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "text/plain; charset=utf-8",
		             (char *)"method not allowed\n", 19, false);
	if (strcmp(url, h->c->health_readiness_path) == 0)
		ready = true;
	else if (strcmp(url, h->c->health_liveness_path) == 0)
		ready = false;
	else
		return reply(conn, MHD_HTTP_NOT_FOUND, "text/plain; charset=utf-8",
		             (char *)"404 page not found\n", 19, false);
	memset(st, 0, sizeof(st));
	h->snap(h->arg, st);
	if (helper_health_reply(h->c, st, ready, &code, &body, &len) != CUBEID_OK)
		return reply(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, "text/plain; charset=utf-8",
		             (char *)"internal error\n", 15, false);
	return reply(conn, (unsigned)code, "application/json", body, len, true);
}

/* libmicrohttpd passes its own format strings */
static void mhd_log(void *cls, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));

static void
mhd_log(void *cls, const char *fmt, va_list ap)
{
	(void)cls;
	cubeid_logv(CUBEID_LOG_INFO, fmt, ap);
}

static struct MHD_Daemon *
start(struct helper_health *h, unsigned flags, const struct sockaddr *sa)
{
	/* MHD's default address reuse is SO_REUSEADDR only (agent/http.c):
	 * a restart binds past TIME-WAIT, a second live helper is refused */
	if (sa != NULL)
		return MHD_start_daemon(flags, (uint16_t)h->c->health_bind_port, NULL, NULL,
		                        on_request, h, MHD_OPTION_SOCK_ADDR, sa,
		                        MHD_OPTION_CONNECTION_LIMIT, (unsigned)16,
		                        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)5,
		                        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)16384,
		                        MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL, MHD_OPTION_END);
	return MHD_start_daemon(flags, (uint16_t)h->c->health_bind_port, NULL, NULL, on_request, h,
	                        MHD_OPTION_CONNECTION_LIMIT, (unsigned)16,
	                        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)5,
	                        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)16384,
	                        MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL, MHD_OPTION_END);
}

int
helper_health_start(const struct helper_config *c, const char *address, helper_health_fn snap,
                    void *arg, struct helper_health **out)
{
	unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG;
	struct sockaddr_storage ss;
	socklen_t sl;
	const union MHD_DaemonInfo *info;
	const char *why = NULL;
	struct helper_health *h;
	char *hp = NULL;
	int rc;

	*out = NULL;
	if ((h = calloc(1, sizeof(*h))) == NULL)
		return CUBEID_ERR_NOMEM;
	h->c = c;
	h->snap = snap;
	h->arg = arg;
	if (address != NULL) {
		if (asprintf(&hp, strchr(address, ':') != NULL ? "[%s]:%ld" : "%s:%ld", address,
		             c->health_bind_port) < 0) {
			free(h);
			return CUBEID_ERR_NOMEM;
		}
		rc = cubeid_addr_parse(hp, &ss, &sl, &why);
		free(hp);
		if (rc != CUBEID_OK) {
			cubeid_error("--health-address '%s': %s", address, why);
			free(h);
			return CUBEID_ERR_CONFIG;
		}
		h->d = start(h, flags | (ss.ss_family == AF_INET6 ? MHD_USE_IPv6 : 0),
		             (const struct sockaddr *)&ss);
	} else {
		/* ":PORT" in Go: every IPv6 and IPv4 address; IPv4 only without IPv6 */
		h->d = start(h, flags | MHD_USE_DUAL_STACK, NULL);
		if (h->d == NULL)
			h->d = start(h, flags, NULL);
	}
	if (h->d == NULL) {
		cubeid_error("health_checks: cannot listen on %s port %ld (in use?)",
		             address != NULL ? address : "every address", c->health_bind_port);
		free(h);
		return CUBEID_ERR_IO;
	}
	if ((info = MHD_get_daemon_info(h->d, MHD_DAEMON_INFO_BIND_PORT)) != NULL)
		h->port = info->port;
	cubeid_notice("health_checks: %s and %s on %s port %u", c->health_liveness_path,
	              c->health_readiness_path, address != NULL ? address : "every address",
	              h->port);
	*out = h;
	return CUBEID_OK;
}

void
helper_health_stop(struct helper_health *h)
{
	if (h == NULL)
		return;
	MHD_stop_daemon(h->d);
	free(h);
}
