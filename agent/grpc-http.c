/*
 * The HTTP/2 request rules (RFC 9113 section 8) the gRPC server enforces
 * itself.  nghttp2 1.52 checks them when HTTP messaging is on, but it also
 * checks :authority against the characters of a host name, and grpc-java
 * over a Unix socket sends the socket's path there ("/run/cubeid/agent.sock"):
 * nghttp2 reset every such stream before any callback ran.  So the server
 * turns nghttp2's HTTP messaging off (nghttp2_option_set_no_http_messaging)
 * and this file puts back each server-side check of nghttp2_http.c (1.52),
 * in the same order, with one change: :authority takes any header value
 * without control characters, empty included (host keeps nghttp2's check).
 *
 * Rules, for a request's header block and its trailers:
 *   - a header name is not empty and has only lowercase token characters;
 *   - a value has no NUL, CR, LF or other control character but HTAB, and
 *     no leading or trailing blank (nghttp2 "ignores" a bad regular field
 *     only for a session with an invalid-header callback; the agent never
 *     had one, so a bad field has always reset the stream);
 *   - pseudo-headers come before regular fields and never in trailers;
 *     only :method, :scheme, :path and :authority are known, each at most
 *     once; :method, :scheme and :path are non-empty and valid (method
 *     token characters; path visible characters; scheme ALPHA *(ALPHA /
 *     DIGIT / "+" / "-" / ".")); CONNECT and :protocol are refused;
 *   - connection, keep-alive, proxy-connection, transfer-encoding and
 *     upgrade are refused; te is only "trailers"; host at most once,
 *     non-empty, of authority characters; content-length at most once,
 *     digits only;
 *   - the request has :method, :scheme, :path, and :authority or host; for
 *     an http(s) scheme the path starts with "/" ("*" only for OPTIONS);
 *   - trailers end the stream; the DATA received never passes
 *     content-length, and equals it when the stream ends.
 */
#include "config.h"

#include <string.h>

#include "agent/grpc-internal.h"

enum {
	F_METHOD = 1u << 0,
	F_PATH = 1u << 1,
	F_SCHEME = 1u << 2,
	F_AUTHORITY = 1u << 3,
	F_HOST = 1u << 4,
	F_REGULAR_SEEN = 1u << 5, /* no pseudo-header after this */
	F_SCHEME_HTTP = 1u << 6,
	F_PATH_REGULAR = 1u << 7,
	F_PATH_ASTERISK = 1u << 8,
	F_METH_OPTIONS = 1u << 9,
};

void
grpc_http_init(struct grpc_http *h)
{
	h->flags = 0;
	h->content_length = -1;
	h->received = 0;
}

static bool
eq(const uint8_t *a, size_t alen, const char *b)
{
	return alen == strlen(b) && memcmp(a, b, alen) == 0;
}

static bool
ieq(const uint8_t *a, size_t alen, const char *b)
{
	size_t i;

	if (alen != strlen(b))
		return false;
	for (i = 0; i < alen; i++) {
		uint8_t c = a[i];

		if (c >= 'A' && c <= 'Z')
			c = (uint8_t)(c - 'A' + 'a');
		if (c != (uint8_t)b[i])
			return false;
	}
	return true;
}

/* RFC 9113 8.2.1: field-content, and no leading or trailing SP / HTAB. */
static bool
value_ok(const uint8_t *v, size_t n)
{
	size_t i;

	if (n > 0 && (v[0] == ' ' || v[0] == '\t' || v[n - 1] == ' ' || v[n - 1] == '\t'))
		return false;
	for (i = 0; i < n; i++)
		if ((v[i] < 0x20 && v[i] != '\t') || v[i] == 0x7f)
			return false;
	return true;
}

/* tchar (RFC 9110 5.6.2), as nghttp2_check_method. */
static bool
method_ok(const uint8_t *v, size_t n)
{
	size_t i;

	if (n == 0)
		return false;
	for (i = 0; i < n; i++) {
		uint8_t c = v[i];

		if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		      strchr("!#$%&'*+-.^_`|~", c) != NULL) ||
		    c == '\0')
			return false;
	}
	return true;
}

/* As nghttp2_check_path: visible ASCII and obs-text, no SP or CTL. */
static bool
path_ok(const uint8_t *v, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (v[i] <= 0x20 || v[i] == 0x7f)
			return false;
	return true;
}

static bool
scheme_ok(const uint8_t *v, size_t n)
{
	size_t i;

	if (n == 0 || !((v[0] >= 'a' && v[0] <= 'z') || (v[0] >= 'A' && v[0] <= 'Z')))
		return false;
	for (i = 1; i < n; i++) {
		uint8_t c = v[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '+' || c == '-' || c == '.'))
			return false;
	}
	return true;
}

/* As nghttp2_check_authority: RFC 3986 authority characters.  host keeps
 * this check; only :authority is relaxed. */
static bool
host_ok(const uint8_t *v, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		uint8_t c = v[i];

		if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= '@' && c <= '[') ||
		      (c >= '$' && c <= '.') || c == '!' || c == ':' || c == ';' || c == '=' ||
		      c == ']' || c == '_' || c == '~'))
			return false;
	}
	return true;
}

/* Digits only, no overflow; -1 otherwise. */
static int64_t
parse_length(const uint8_t *v, size_t n)
{
	int64_t x = 0;
	size_t i;

	if (n == 0)
		return -1;
	for (i = 0; i < n; i++) {
		if (v[i] < '0' || v[i] > '9' || x > (INT64_MAX - (v[i] - '0')) / 10)
			return -1;
		x = x * 10 + (v[i] - '0');
	}
	return x;
}

/* A pseudo-header seen for the first time: flag it; false if it repeats. */
static bool
once(struct grpc_http *h, unsigned flag)
{
	if (h->flags & flag)
		return false;
	h->flags |= flag;
	return true;
}

int
grpc_http_field(struct grpc_http *h, const uint8_t *name, size_t nlen, const uint8_t *value,
                size_t vlen, bool trailer, const char **why)
{
	*why = NULL;
	if (!nghttp2_check_header_name(name, nlen)) { /* an empty one too */
		*why = "a malformed header name";
		return -1;
	}
	if (!value_ok(value, vlen)) {
		*why = "a control character or edge blank in a header value";
		return -1;
	}
	if (name[0] == ':') {
		if (trailer) {
			*why = "a pseudo-header in trailers";
			return -1;
		}
		if (h->flags & F_REGULAR_SEEN) {
			*why = "a pseudo-header after a regular header";
			return -1;
		}
		if (eq(name, nlen, ":authority")) {
			/* any value, empty too: a Unix socket's path, percent-
			 * encoded or not, or "localhost" */
			if (!once(h, F_AUTHORITY)) {
				*why = "a repeated :authority";
				return -1;
			}
		} else if (eq(name, nlen, ":method")) {
			if (!method_ok(value, vlen) || !once(h, F_METHOD)) {
				*why = "a repeated, empty or malformed :method";
				return -1;
			}
			if (eq(value, vlen, "CONNECT")) {
				*why = "CONNECT";
				return -1;
			}
			if (eq(value, vlen, "OPTIONS"))
				h->flags |= F_METH_OPTIONS;
		} else if (eq(name, nlen, ":path")) {
			if (vlen == 0 || !path_ok(value, vlen) || !once(h, F_PATH)) {
				*why = "a repeated, empty or malformed :path";
				return -1;
			}
			if (value[0] == '/')
				h->flags |= F_PATH_REGULAR;
			else if (vlen == 1 && value[0] == '*')
				h->flags |= F_PATH_ASTERISK;
		} else if (eq(name, nlen, ":scheme")) {
			if (!scheme_ok(value, vlen) || !once(h, F_SCHEME)) {
				*why = "a repeated, empty or malformed :scheme";
				return -1;
			}
			if (ieq(value, vlen, "http") || ieq(value, vlen, "https"))
				h->flags |= F_SCHEME_HTTP;
		} else {
			*why = "an unknown pseudo-header";
			return -1;
		}
		return 0;
	}
	h->flags |= F_REGULAR_SEEN;
	if (eq(name, nlen, "connection") || eq(name, nlen, "keep-alive") ||
	    eq(name, nlen, "proxy-connection") || eq(name, nlen, "transfer-encoding") ||
	    eq(name, nlen, "upgrade")) {
		*why = "a connection-specific header";
		return -1;
	}
	if (eq(name, nlen, "te") && !ieq(value, vlen, "trailers")) {
		*why = "te other than \"trailers\"";
		return -1;
	}
	if (eq(name, nlen, "host") && (vlen == 0 || !host_ok(value, vlen) || !once(h, F_HOST))) {
		*why = "a repeated, empty or malformed host";
		return -1;
	}
	if (eq(name, nlen, "content-length")) {
		if (h->content_length != -1 ||
		    (h->content_length = parse_length(value, vlen)) == -1) {
			*why = "a repeated or malformed content-length";
			return -1;
		}
	}
	return 0;
}

const char *
grpc_http_request_end(const struct grpc_http *h)
{
	if ((h->flags & (F_METHOD | F_PATH | F_SCHEME)) != (F_METHOD | F_PATH | F_SCHEME))
		return "a request without :method, :scheme or :path";
	if ((h->flags & (F_AUTHORITY | F_HOST)) == 0)
		return "a request without :authority or host";
	if ((h->flags & F_SCHEME_HTTP) && !(h->flags & F_PATH_REGULAR) &&
	    !((h->flags & F_METH_OPTIONS) && (h->flags & F_PATH_ASTERISK)))
		return "an http(s) :path that does not start with \"/\"";
	return NULL;
}

const char *
grpc_http_data(struct grpc_http *h, size_t n)
{
	h->received += (int64_t)n;
	if (h->content_length != -1 && h->received > h->content_length)
		return "more DATA than content-length";
	return NULL;
}

const char *
grpc_http_end_stream(const struct grpc_http *h)
{
	if (h->content_length != -1 && h->content_length != h->received)
		return "DATA shorter than content-length";
	return NULL;
}
