/*
 * tests/mktoken: make a throwaway SoftHSM2 token for the shell tests and
 * print shell assignments describing it, for `eval "$(tests/mktoken)"`:
 *
 *   SOFTHSM2_CONF  the token's own SoftHSM2 configuration (exported)
 *   CUBEID_T_DIR   the temp dir holding it all: rm -rf it when done
 *   CUBEID_T_URI   "pkcs11:token=LABEL"
 *   CUBEID_T_LABEL the token label
 *   CUBEID_T_PIN_FILE  the file with the user PIN (mode 0600)
 *   CUBEID_T_MODULE    the SoftHSM2 module
 *
 * The PIN itself is never printed and never on any argv (tests/harness.c
 * initialises the token through the module).  Exits 77 (skip) when
 * SoftHSM2 is missing.
 */
#include "config.h"

#include "tests/harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Print NAME='value', refusing values that would need quoting. */
static int
assign(const char *name, const char *value, int export)
{
	if (value == NULL || strchr(value, '\'') != NULL || strchr(value, '\n') != NULL) {
		fprintf(stderr, "mktoken: cannot quote %s\n", name);
		return -1;
	}
	printf("%s%s='%s'\n", export ? "export " : "", name, value);
	return 0;
}

int
main(void)
{
	struct th_token t;
	int bad = 0;

	th_token_setup(&t);
	if (t.dir == NULL) {
		fprintf(stderr,
		        "mktoken: makes SoftHSM2 tokens only (CUBEID_TEST_TOKEN_URI is set)\n");
		th_token_teardown(&t);
		return TH_EXIT_SKIP;
	}
	bad |= assign("SOFTHSM2_CONF", getenv("SOFTHSM2_CONF"), 1);
	bad |= assign("CUBEID_T_DIR", t.dir, 0);
	bad |= assign("CUBEID_T_URI", t.uri, 0);
	bad |= assign("CUBEID_T_LABEL", t.label, 0);
	bad |= assign("CUBEID_T_PIN_FILE", t.pin_file, 0);
	bad |= assign("CUBEID_T_MODULE", t.module, 0);
	if (bad) {
		th_token_teardown(&t);
		return 1;
	}
	/* The token stays (the caller removes CUBEID_T_DIR): free the
	 * strings without th_token_teardown(), which would remove it. */
	free(t.dir);
	free(t.module);
	free(t.uri);
	free(t.pin_file);
	free(t.label);
	return fflush(stdout) == 0 ? 0 : 1;
}
