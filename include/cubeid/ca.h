/*
 * cubeid CA chain with its keys in the token (spiffe/ca.c; enrolment in
 * spiffe/ca-enrol.c, the state directory in spiffe/state.c).
 *
 * A trust domain has a root CA whose key is generated inside a token as a
 * persistent, non-extractable object, with a self-signed certificate whose
 * only URI SAN is the trust domain's SPIFFE ID ("spiffe://<td>").  A node
 * can enrol an intermediate: it generates the key in its own token and
 * writes a CSR; the root holder signs it (cA=true, pathLen 0, keyCertSign,
 * the trust domain's SPIFFE ID, never outliving the root); the node installs
 * the certificate after checking that it matches the key and chains to the
 * root.  Either CA can then mint X.509-SVIDs (<cubeid/x509svid.h>).
 *
 * State directory (mode 0700; default /var/lib/cubeid, $CUBEID_STATE_DIR):
 *   ca.conf     key=value lines: version, trust_domain, role (root or
 *               intermediate), key_uri (PKCS#11 URI of the signing key),
 *               pending_key_uri (an enrolment key awaiting its certificate)
 *   ca.pem      the signing certificate, then any intermediates above it
 *               (not the root)
 *   bundle.pem  the trust domain's roots: the X.509 bundle
 * Every file is written atomically (temp file, fsync, rename, fsync of the
 * directory): certificates 0644, ca.conf 0600.
 *
 * Conventions as in <cubeid/token.h>.
 */
#ifndef CUBEID_CA_H
#define CUBEID_CA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/x509.h>

#include <cubeid/error.h>
#include <cubeid/file.h>
#include <cubeid/token.h>
#include <cubeid/x509svid.h>

#ifdef __cplusplus
extern "C" {
#endif

#define CUBEID_CA_ROOT_TTL_DEFAULT         (365 * 24 * 3600) /* 1 year */
#define CUBEID_CA_INTERMEDIATE_TTL_DEFAULT (30 * 24 * 3600)  /* 30 days */
#define CUBEID_CSR_MAX                     (64 * 1024)       /* bytes of a PEM CSR */

#define CUBEID_CA_CONF        "ca.conf"
#define CUBEID_CA_CERT_FILE   "ca.pem"
#define CUBEID_CA_BUNDLE_FILE "bundle.pem"

struct cubeid_ca_opts {
	cubeid_key_type key_type; /* 0 = CUBEID_KEY_EC_P256 */
	int64_t ttl;              /* seconds; 0 = the default for the CA kind */
	const char *label;        /* key label; NULL = "cubeid-root-<td>" /
	                           * "cubeid-intermediate-<td>-<time>-<random>" */
	int64_t now;              /* 0 = the current time */
};

/* The state directory and file helpers: <cubeid/file.h>. */

typedef struct cubeid_ca cubeid_ca;

/*
 * Create a root CA for td on tok: the key is generated in the token
 * (persistent, non-extractable), the certificate is self-signed with
 * URI SAN spiffe://<td>, cA=true, keyUsage keyCertSign+cRLSign (critical),
 * SKID/AKID, a 16-byte random serial.  Nothing is written to disk (see
 * cubeid_ca_init()).  New CA in *out; caller frees.
 */
int cubeid_ca_root_create(cubeid_token *tok, const char *td, const struct cubeid_ca_opts *opts,
                          cubeid_ca **out);
/* cubeid_ca_root_create() and save it to state_dir.  CUBEID_ERR_EXISTS if
 * state_dir already holds a CA. */
int cubeid_ca_init(cubeid_token *tok, const char *state_dir, const char *td,
                   const struct cubeid_ca_opts *opts, cubeid_ca **out);
/* Load the CA in state_dir: find its key on tok by URI, read its
 * certificates, and check that the key matches the certificate and that the
 * certificate chains to the bundle.  CUBEID_ERR_NOT_FOUND when there is no
 * CA (a pending enrolment alone counts as none). */
int cubeid_ca_load(cubeid_token *tok, const char *state_dir, cubeid_ca **out);
/*
 * The single-node default: load the CA in state_dir, or, when there is
 * none, create a root for td there.  A loaded CA of another trust domain
 * is CUBEID_ERR_CA.
 */
int cubeid_ca_ensure(cubeid_token *tok, const char *state_dir, const char *td,
                     const struct cubeid_ca_opts *opts, cubeid_ca **out);
/* Write ca (conf, certificates, bundle) to state_dir. */
int cubeid_ca_save(const cubeid_ca *ca, const char *state_dir);
void cubeid_ca_free(cubeid_ca *ca);

const char *cubeid_ca_trust_domain(const cubeid_ca *ca); /* borrowed */
bool cubeid_ca_is_root(const cubeid_ca *ca);
X509 *cubeid_ca_cert(const cubeid_ca *ca);                       /* borrowed */
STACK_OF(X509) * cubeid_ca_intermediates(const cubeid_ca *ca);   /* borrowed; may be empty */
const cubeid_x509_bundle *cubeid_ca_bundle(const cubeid_ca *ca); /* borrowed */
cubeid_key *cubeid_ca_key(const cubeid_ca *ca);                  /* borrowed */
/* The bridge EVP_PKEY that signs with the CA key (borrowed). */
EVP_PKEY *cubeid_ca_evp(const cubeid_ca *ca);

/*
 * Enrolment, node side: generate the intermediate key in tok (persistent,
 * non-extractable) and return a PEM CSR signed by it, with subject
 * "O=<td>, CN=cubeid intermediate <host>" and URI SAN spiffe://<td>.  The
 * key's URI is recorded in state_dir's ca.conf as pending_key_uri (the
 * directory may hold nothing else yet).  New PEM in *csr_pem; caller frees.
 */
int cubeid_ca_csr_create(cubeid_token *tok, const char *state_dir, const char *td,
                         const struct cubeid_ca_opts *opts, char **csr_pem);
/*
 * Root holder side: check csr (PEM, at most CUBEID_CSR_MAX bytes; its
 * signature must verify, and any URI SAN in it must be spiffe://<td>) and
 * issue an intermediate certificate: cA=true, pathLen 0, keyCertSign+cRLSign
 * critical, URI SAN spiffe://<td>, SKID/AKID, notAfter clamped to the
 * root's.  ca must be a root.  *out_pem gets the new certificate followed by
 * ca's certificate (so the file carries the root); caller frees.
 */
int cubeid_ca_sign_csr(cubeid_ca *ca, const char *csr, size_t csr_len,
                       const struct cubeid_ca_opts *opts, char **out_pem);
/*
 * Node side: install an intermediate certificate (PEM: the certificate,
 * then optionally the root).  The roots are taken from roots (if not NULL),
 * else from state_dir's bundle.pem, else from the self-signed certificates
 * in the file.  Checks: it is a CA certificate for the pending (or current)
 * key, of the trust domain in ca.conf, and it chains to a root.  Then
 * state_dir becomes an intermediate CA.  New CA in *out (optional).
 */
int cubeid_ca_install(cubeid_token *tok, const char *state_dir, const char *cert_pem,
                      size_t cert_len, const cubeid_x509_bundle *roots, cubeid_ca **out);

#ifdef __cplusplus
}
#endif
#endif
