/*
 * libFuzzer target: the --token / key URI path (RFC 7512 via p11-kit, then
 * cubeid's own rules and the pin-source path).  A URI that parses must
 * format and parse again.
 */
#include "config.h"

#include "pkcs11/p11-internal.h"

#include <cubeid/log.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	P11KitUri *uri = NULL, *again = NULL;
	const char *path;
	char *s, *fmt = NULL;

	cubeid_log_set_level((cubeid_log_level)0); /* silence: errors are expected */
	if ((s = malloc(size + 1)) == NULL)
		return 0;
	memcpy(s, data, size);
	s[size] = '\0';
	if (p11_uri_parse(s, &uri) == CUBEID_OK) {
		if (p11_kit_uri_get_pin_source(uri) != NULL)
			(void)p11_pin_source_path(p11_kit_uri_get_pin_source(uri), &path);
		if (p11_kit_uri_format(uri, P11_KIT_URI_FOR_ANY, &fmt) == P11_KIT_URI_OK) {
			if (p11_uri_parse(fmt, &again) != CUBEID_OK && strlen(fmt) <= P11_URI_MAX)
				abort(); /* our own output must parse */
			p11_kit_uri_free(again);
			free(fmt);
		}
		p11_kit_uri_free(uri);
	}
	free(s);
	return 0;
}
