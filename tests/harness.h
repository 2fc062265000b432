/*
 * Test harness: a throwaway token for each test program.
 *
 * th_token_setup() gives the calling program its own SoftHSM2 token: a temp
 * dir with its own softhsm2.conf (SOFTHSM2_CONF is set to it) and token
 * directory, initialised with a random user PIN kept in a 0600 file.
 * th_token_teardown() removes it all.
 *
 * When CUBEID_TEST_TOKEN_URI is set (the TPM lane, tests/tpm/lane.sh), the
 * harness uses that token instead: CUBEID_TEST_MODULE names the module and
 * CUBEID_TEST_PIN_FILE the PIN file, and th.kind is "tpm".
 */
#ifndef CUBEID_TEST_HARNESS_H
#define CUBEID_TEST_HARNESS_H

#include <stdbool.h>

#include <cubeid/token.h>

/* Exit code that makes Automake count a test program as skipped. */
#define TH_EXIT_SKIP 77

struct th_token {
	char *dir;        /* temp dir holding everything (NULL on the TPM lane) */
	char *module;     /* PKCS#11 module path */
	char *uri;        /* "pkcs11:token=LABEL" */
	char *pin_file;   /* file with the user PIN */
	char *label;      /* token label */
	const char *kind; /* "softhsm" or "tpm" */
};

/* Set up a token as described above.  On failure, prints why and exits with
 * TH_EXIT_SKIP if a tool is missing, or 1 otherwise. */
void th_token_setup(struct th_token *t);
void th_token_teardown(struct th_token *t);

/* Open the harness token through the layer (pool_size 0 = default). */
cubeid_token *th_token_open(const struct th_token *t, unsigned pool_size);

/* True on the TPM lane: tests skip what tpm2-pkcs11 cannot do. */
bool th_is_tpm(const struct th_token *t);

/* Print "SKIP: why" loudly and exit TH_EXIT_SKIP. */
void th_skip(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

/* Make a private temp dir (mode 0700) under $TMPDIR; caller frees. */
char *th_mkdtemp(const char *prefix);
/* rm -rf path (no shell). */
void th_rmtree(const char *path);
/* Run argv (no shell), return its exit status or -1; output to stdout
 * unless out_path is given. */
int th_run(char *const argv[], const char *out_path);
/* Find a program in PATH; NULL if absent. */
char *th_which(const char *prog);

#endif
