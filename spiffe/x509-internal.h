/*
 * Internals shared by the CA and X.509-SVID code (spiffe/ca.c, state.c,
 * x509svid.c, x509-build.c): the cubeid_ca object and certificate-building
 * helpers.  Not installed.
 */
#ifndef CUBEID_X509_INTERNAL_H
#define CUBEID_X509_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <cubeid/ca.h>
#include <cubeid/x509svid.h>

#include "common/path.h"

struct cubeid_ca {
	char *td;                       /* trust domain name */
	cubeid_key *key;                /* the signing key in the token */
	EVP_PKEY *evp;                  /* bridge over key */
	X509 *cert;                     /* the signing certificate */
	STACK_OF(X509) * intermediates; /* above cert, below the root; may be empty */
	cubeid_x509_bundle *bundle;     /* the roots */
	bool is_root;                   /* cert is self-signed and in bundle */
};

/* Set a 16-byte random positive serial whose first byte is non-zero. */
int x509_set_random_serial(X509 *x);
/* Set notBefore/notAfter to seconds since the epoch. */
int x509_set_validity(X509 *x, int64_t not_before, int64_t not_after);
/* A certificate time as seconds since the epoch. */
int x509_time_to_epoch(const ASN1_TIME *t, int64_t *out);
/* Add an extension given as an OpenSSL config value (fixed strings only,
 * never input). */
int x509_add_ext_conf(X509 *x, X509V3_CTX *ctx, int nid, const char *value);
/* Add a subjectAltName with one URI and n_dns DNS names; critical when the
 * subject is empty. */
int x509_add_san(X509 *x, const char *uri, const char *const *dns, size_t n_dns, bool critical);
/* Build the same GENERAL_NAMES as x509_add_san (for a CSR). */
int x509_make_san(const char *uri, const char *const *dns, size_t n_dns, GENERAL_NAMES **out);
/* The digest to sign with for key pk (SHA-384 for P-384, else SHA-256). */
const EVP_MD *x509_sign_md(EVP_PKEY *pk);
/* Sign x with ca's token key. */
int x509_sign_with(X509 *x, EVP_PKEY *signer);
/* Current time, or now if non-zero. */
int64_t x509_now(int64_t now);
/* Log OpenSSL's error queue at debug level under what, and clear it; returns
 * CUBEID_ERR_CRYPTO. */
int x509_ossl_error(const char *what);
/* A new empty cubeid_ca (fields zero). */
cubeid_ca *ca_alloc(void);

/* ca.conf (spiffe/state.c) */
struct ca_conf {
	char *td;              /* trust_domain */
	char *role;            /* "root" or "intermediate"; NULL if no CA yet */
	char *key_uri;         /* signing key */
	char *pending_key_uri; /* enrolment key awaiting its certificate */
};
void ca_conf_clear(struct ca_conf *c);
/* CUBEID_ERR_NOT_FOUND when dir has no ca.conf; CUBEID_ERR_CONFIG when it is
 * malformed. */
int ca_conf_read(const char *dir, struct ca_conf *c);
int ca_conf_write(const char *dir, const struct ca_conf *c);

/* spiffe/ca.c, for the enrolment (spiffe/ca-enrol.c): the trust domain's
 * SPIFFE ID as a URI, a name with CN cn, and a new CA key in the token. */
int ca_td_uri(const char *td, char **out);
X509_NAME *ca_make_name(const char *cn);
int ca_gen_key(cubeid_token *tok, const struct cubeid_ca_opts *opts, const char *kind,
               const char *td, cubeid_key **key);

/* Check that cert chains to bundle through intermediates at now (0 = the
 * current time): CUBEID_OK, CUBEID_ERR_X509_EXPIRED or
 * CUBEID_ERR_X509_VERIFY, with *reason set. */
int ca_verify_chain(X509 *cert, STACK_OF(X509) * intermediates, const cubeid_x509_bundle *bundle,
                    int64_t now, const char **reason);
/* OK if key's public half is cert's public key, else CUBEID_ERR_CA. */
int ca_key_matches(cubeid_key *key, X509 *cert);
/* Build a cubeid_ca from its parts; takes over key, cert, intermediates
 * and bundle whether it succeeds or fails. */
int ca_assemble(const char *td, cubeid_key *key, X509 *cert, STACK_OF(X509) * intermediates,
                cubeid_x509_bundle *bundle, bool is_root, cubeid_ca **out);

#endif
