/*
 * libFuzzer target: spiffe-helper's configuration files (the HCL subset of
 * cli/helper-config.c), parsed and then checked as `cubeid helper` does,
 * the health listener's JSON body of what was read, and spiffe-helper's
 * cmd_args splitting.
 */
#include "config.h"

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cli/helper.h"

#include <cubeid/os.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct helper_config *c = NULL;
	char *err = NULL, *s, **argv = NULL;
	int r;

	r = helper_config_parse((const char *)data, size, "fuzz.conf", &c, &err);
	if (r == 0) {
		if (err != NULL)
			abort(); /* success never leaves an error */
		r = helper_config_finish(c, &err);
		if (r != 0 && err == NULL)
			abort();
		if (r == 0 && c->health_listener_enabled) {
			/* the health body, with cert_dir and the names as they came */
			enum helper_write_status st[HELPER_HS_JWT0 + HELPER_JWT_SVIDS_MAX];
			char *body = NULL;
			size_t len = 0;
			int code = 0;

			memset(st, 0, sizeof(st));
			st[HELPER_HS_X509] = HELPER_WS_FAILED;
			if (helper_health_reply(c, st, true, &code, &body, &len) == 0 &&
			    (code != 503 || body == NULL || strlen(body) != len))
				abort();
			free(body);
		}
	} else if (c != NULL) {
		abort(); /* failure never leaves a result */
	}
	free(err);
	helper_config_free(c);

	/* the same bytes as cmd_args */
	if ((s = malloc(size + 1)) == NULL)
		return 0;
	memcpy(s, data, size);
	s[size] = '\0';
	if (cubeid_split_args("cmd", s, &argv) == 0 && (argv == NULL || argv[0] == NULL))
		abort();
	cubeid_argv_free(argv);
	free(s);
	return 0;
}
