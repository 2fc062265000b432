/*
 * "HOST:PORT" for a listener (the agent's HTTP server, `cubeid helper`'s
 * health listener): literals only, no name lookups (<cubeid/os.h>).
 */
#include "config.h"

#include <cubeid/os.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

int
cubeid_addr_parse(const char *s, struct sockaddr_storage *ss, socklen_t *len, const char **why)
{
	char host[INET6_ADDRSTRLEN + 1];
	const char *colon, *h, *p;
	size_t hl;
	unsigned long port;
	char *end;

	memset(ss, 0, sizeof(*ss));
	*len = 0;
	*why = NULL;
	if (s == NULL || *s == '\0' || strlen(s) > 128) {
		*why = "empty or too long";
		return CUBEID_ERR_CONFIG;
	}
	if (s[0] == '[') {
		if ((p = strchr(s, ']')) == NULL || p[1] != ':') {
			*why = "an IPv6 address is written [ADDR]:PORT";
			return CUBEID_ERR_CONFIG;
		}
		h = s + 1;
		hl = (size_t)(p - h);
		colon = p + 1;
	} else {
		if ((colon = strrchr(s, ':')) == NULL || memchr(s, ':', (size_t)(colon - s))) {
			*why = "expected HOST:PORT (an IPv6 address goes in brackets)";
			return CUBEID_ERR_CONFIG;
		}
		h = s;
		hl = (size_t)(colon - s);
	}
	if (hl == 0 || hl >= sizeof(host)) {
		*why = "missing or overlong host";
		return CUBEID_ERR_CONFIG;
	}
	memcpy(host, h, hl);
	host[hl] = '\0';
	p = colon + 1;
	if (*p < '0' || *p > '9' || strlen(p) > 5) {
		*why = "the port must be a number 0..65535";
		return CUBEID_ERR_CONFIG;
	}
	errno = 0;
	port = strtoul(p, &end, 10);
	if (errno != 0 || *end != '\0' || port > 65535) {
		*why = "the port must be a number 0..65535";
		return CUBEID_ERR_CONFIG;
	}
	if (strcmp(host, "localhost") == 0)
		strcpy(host, "127.0.0.1");
	if (s[0] == '[') {
		struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)ss;

		if (inet_pton(AF_INET6, host, &a6->sin6_addr) != 1) {
			*why = "not an IPv6 address";
			return CUBEID_ERR_CONFIG;
		}
		a6->sin6_family = AF_INET6;
		a6->sin6_port = htons((uint16_t)port);
		*len = sizeof(*a6);
	} else {
		struct sockaddr_in *a4 = (struct sockaddr_in *)ss;

		if (inet_pton(AF_INET, host, &a4->sin_addr) != 1) {
			*why = "not an IPv4 address (host names are not looked up)";
			return CUBEID_ERR_CONFIG;
		}
		a4->sin_family = AF_INET;
		a4->sin_port = htons((uint16_t)port);
		*len = sizeof(*a4);
	}
	return CUBEID_OK;
}
