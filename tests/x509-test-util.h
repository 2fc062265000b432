/*
 * Helpers for the CA and X.509-SVID tests: certificates made with OpenSSL
 * software keys (to craft ones that break the rules), PEM files, the
 * openssl command as an independent verifier, and a second SoftHSM2 token
 * in the same module.
 */
#ifndef CUBEID_X509_TEST_UTIL_H
#define CUBEID_X509_TEST_UTIL_H

#include <stdbool.h>
#include <stddef.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "tests/harness.h"

struct tu_spec {
	EVP_PKEY *key;    /* subject public key */
	EVP_PKEY *signer; /* signing key (software) */
	X509 *issuer;     /* NULL: self-signed */
	const char *bc;   /* basicConstraints in openssl config syntax, NULL: none */
	const char *ku;   /* keyUsage, NULL: none */
	const char *eku;  /* extendedKeyUsage, NULL: none */
	const char *san;  /* subjectAltName ("URI:spiffe://td/x,DNS:a"), NULL: none */
	const char *cn;   /* subject CN, NULL: "test" */
	long nb, na;      /* validity, seconds from now */
};

/* A software EC P-256 key (caller frees). */
EVP_PKEY *tu_ec_key(void);
/* A certificate per spec (caller frees); fails the test on error. */
X509 *tu_cert(const struct tu_spec *s);
/* Write certs[0..n) to path as PEM. */
void tu_write_pem(const char *path, X509 *const *certs, size_t n);
/* Write a NUL-terminated string to path. */
void tu_write_str(const char *path, const char *s);
/* openssl verify -CAfile root [-untrusted untrusted] leaf: its exit status
 * (0 = verified).  Skips the test program when openssl is missing. */
int tu_openssl_verify(const char *root, const char *untrusted, const char *leaf);
/* Set up two tokens in one SoftHSM2 token directory, so that one process
 * can open both (SoftHSM2 reads its config once).  Call before opening any
 * token.  On the TPM lane both name the one token. */
void tu_two_tokens_setup(struct th_token *a, struct th_token *b);
void tu_two_tokens_teardown(struct th_token *a, struct th_token *b);

#endif
