/*
 * The Workload API client's endpoint: the socket string of the options (or
 * $SPIFFE_ENDPOINT_SOCKET) parsed by the SPIFFE Workload Endpoint spec,
 * section 4, and the connect() to it.
 *
 *   unix:///path  (also "unix:/path" and a bare "/path"): no authority,
 *                 no query, no fragment;
 *   tcp://IP:PORT an IPv4 literal or a bracketed IPv6 literal and a port
 *                 1..65535; a host name, a missing port, userinfo, a path
 *                 (even "/"), a query or a fragment is refused.
 */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cubeid/error.h>

#include "spiffe/workloadapi-internal.h"

static void
wl_ep_status(struct cubeid_wl_status *st, const char *msg, const char *arg)
{
	if (st == NULL)
		return;
	st->code = -1;
	snprintf(st->message, sizeof(st->message), "%s%s", msg, arg != NULL ? arg : "");
}

static int
parse_unix(const char *uri, const char *p, struct wl_endpoint *ep, struct cubeid_wl_status *st)
{
	if (*p != '/') {
		wl_ep_status(st, "not a unix socket path (a unix URI has no authority): ", uri);
		return CUBEID_ERR_INVALID_ARG;
	}
	if (p != uri && strpbrk(p, "?#") != NULL) {
		wl_ep_status(st, "a unix URI has no query or fragment: ", uri);
		return CUBEID_ERR_INVALID_ARG;
	}
	if (strlen(p) >= sizeof(ep->path)) {
		wl_ep_status(st, "socket path too long: ", p);
		return CUBEID_ERR_TOO_LARGE;
	}
	ep->tcp = false;
	strcpy(ep->path, p);
	snprintf(ep->authority, sizeof(ep->authority), "localhost");
	return 0;
}

/* "tcp://" already skipped: p is the authority and nothing else. */
static int
parse_tcp(const char *uri, const char *p, struct wl_endpoint *ep, struct cubeid_wl_status *st)
{
	char host[INET6_ADDRSTRLEN + 1];
	const char *h, *hend, *port;
	size_t hl;
	unsigned long n;
	char *end;

	if (strlen(uri) >= sizeof(ep->path)) {
		wl_ep_status(st, "a tcp URI is tcp://IP:PORT, and this one is too long: ", uri);
		return CUBEID_ERR_INVALID_ARG;
	}
	if (strpbrk(p, "/?#") != NULL) {
		wl_ep_status(st, "a tcp URI has no path, query or fragment: ", uri);
		return CUBEID_ERR_INVALID_ARG;
	}
	if (strchr(p, '@') != NULL) {
		wl_ep_status(st, "a tcp URI has no userinfo: ", uri);
		return CUBEID_ERR_INVALID_ARG;
	}
	if (*p == '[') {
		h = p + 1;
		if ((hend = strchr(h, ']')) == NULL) {
			wl_ep_status(st, "a tcp URI's IPv6 address lacks its ']': ", uri);
			return CUBEID_ERR_INVALID_ARG;
		}
		port = hend[1] == ':' ? hend + 2 : NULL;
		if (hend[1] != ':' && hend[1] != '\0') {
			wl_ep_status(st, "a tcp URI's host is followed by ':port' only: ", uri);
			return CUBEID_ERR_INVALID_ARG;
		}
	} else {
		h = p;
		hend = strrchr(p, ':');
		port = hend != NULL ? hend + 1 : NULL;
		if (hend == NULL)
			hend = p + strlen(p);
	}
	hl = (size_t)(hend - h);
	if (hl == 0 || hl >= sizeof(host)) {
		wl_ep_status(st, "a tcp URI needs an IP address as its host: ", uri);
		return CUBEID_ERR_INVALID_ARG;
	}
	memcpy(host, h, hl);
	host[hl] = '\0';
	memset(&ep->sa, 0, sizeof(ep->sa));
	if (*p == '[') {
		struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&ep->sa;

		if (inet_pton(AF_INET6, host, &a6->sin6_addr) != 1) {
			wl_ep_status(st, "a tcp URI's host must be an IP address: ", uri);
			return CUBEID_ERR_INVALID_ARG;
		}
		a6->sin6_family = AF_INET6;
		ep->salen = sizeof(*a6);
	} else {
		struct sockaddr_in *a4 = (struct sockaddr_in *)&ep->sa;

		if (inet_pton(AF_INET, host, &a4->sin_addr) != 1) {
			wl_ep_status(st,
			             strchr(host, ':') != NULL
			                     ? "a tcp URI's IPv6 address goes in brackets: "
			                     : "a tcp URI's host must be an IP address, not a host "
			                       "name: ",
			             uri);
			return CUBEID_ERR_INVALID_ARG;
		}
		a4->sin_family = AF_INET;
		ep->salen = sizeof(*a4);
	}
	if (port == NULL || *port == '\0') {
		wl_ep_status(st, "a tcp URI needs a port: ", uri);
		return CUBEID_ERR_INVALID_ARG;
	}
	errno = 0;
	n = strtoul(port, &end, 10);
	if (*port < '0' || *port > '9' || *end != '\0' || errno != 0 || n == 0 || n > 65535) {
		wl_ep_status(st, "a tcp URI's port must be a number from 1 to 65535: ", uri);
		return CUBEID_ERR_INVALID_ARG;
	}
	if (ep->sa.ss_family == AF_INET6)
		((struct sockaddr_in6 *)&ep->sa)->sin6_port = htons((uint16_t)n);
	else
		((struct sockaddr_in *)&ep->sa)->sin_port = htons((uint16_t)n);
	ep->tcp = true;
	snprintf(ep->path, sizeof(ep->path), "%s", uri);
	/* what grpc-go sends for a tcp target: host:port as written */
	snprintf(ep->authority, sizeof(ep->authority), "%s", p);
	return 0;
}

int
wl_endpoint_parse(const struct cubeid_wl_opts *o, struct wl_endpoint *ep,
                  struct cubeid_wl_status *st)
{
	const char *a = o != NULL ? o->socket : NULL;

	memset(ep, 0, sizeof(*ep));
	if (a == NULL)
		a = getenv("SPIFFE_ENDPOINT_SOCKET");
	if (a == NULL || *a == '\0') {
		wl_ep_status(st, "no socket: give one or set SPIFFE_ENDPOINT_SOCKET", NULL);
		return CUBEID_ERR_INVALID_ARG;
	}
	if (strncmp(a, "unix://", 7) == 0)
		return parse_unix(a, a + 7, ep, st);
	if (strncmp(a, "unix:", 5) == 0)
		return parse_unix(a, a + 5, ep, st);
	if (strncmp(a, "tcp://", 6) == 0)
		return parse_tcp(a, a + 6, ep, st);
	if (strncmp(a, "tcp:", 4) == 0) {
		wl_ep_status(st, "a tcp URI is tcp://IP:PORT: ", a);
		return CUBEID_ERR_INVALID_ARG;
	}
	return parse_unix(a, a, ep, st);
}

int
wl_endpoint_connect(const struct wl_endpoint *ep, struct cubeid_wl_status *st, int *out)
{
	struct sockaddr_un su = {.sun_family = AF_UNIX};
	const struct sockaddr *sa = (const struct sockaddr *)&su;
	socklen_t salen = sizeof(su);
	int fd, one = 1;

	*out = -1;
	if (ep->tcp) {
		sa = (const struct sockaddr *)&ep->sa;
		salen = ep->salen;
	} else {
		strcpy(su.sun_path, ep->path);
	}
	if ((fd = socket(sa->sa_family, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0)
		return CUBEID_ERR_IO;
	while (connect(fd, sa, salen) < 0) {
		int e = errno;

		if (e == EINTR)
			continue;
		close(fd);
		wl_ep_status(st, "cannot connect to ", ep->path);
		if (st != NULL) {
			size_t l = strlen(st->message);

			snprintf(st->message + l, sizeof(st->message) - l, ": %s", strerror(e));
		}
		return e == ENOENT || e == ECONNREFUSED || e == EAGAIN || e == ENETUNREACH ||
		                       e == EHOSTUNREACH || e == ETIMEDOUT
		               ? CUBEID_ERR_UNAVAILABLE
		               : CUBEID_ERR_IO;
	}
	/* small frames both ways: no Nagle delay on a request or its reply */
	if (ep->tcp)
		(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) < 0) {
		close(fd);
		return CUBEID_ERR_IO;
	}
	*out = fd;
	return 0;
}
