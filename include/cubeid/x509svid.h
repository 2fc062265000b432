/*
 * cubeid X.509-SVIDs and X.509 bundles (spiffe/spiffe standards/X509-SVID.md).
 *
 * - Certificate chains read from PEM or DER, with hard size and count limits
 *   (spiffe/x509-pem.c).
 * - The X.509 bundle of a trust domain: its set of CA certificates, emitted
 *   and parsed as PEM (spiffe/x509-pem.c).
 * - Verification of an X.509-SVID chain against a bundle, returning the
 *   SPIFFE ID (spiffe/x509-verify.c).
 * - Minting, signed in the token by a cubeid_ca (spiffe/x509svid.c), and the
 *   rotation time (half the lifetime, +-10% jitter).
 *
 * Conventions (docs/sdk.md, "Conventions"): functions return CUBEID_OK (0) or
 * a negative code; out parameters are set to NULL/0 on entry and filled only
 * on success; *_free(NULL) is a no-op.  "borrowed" results are owned by the
 * object they come from and live as long as it does.
 */
#ifndef CUBEID_X509SVID_H
#define CUBEID_X509SVID_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

#include <cubeid/error.h>
#include <cubeid/spiffe.h>
#include <cubeid/token.h>

#ifdef __cplusplus
extern "C" {
#endif

#define CUBEID_X509_CERT_MAX     (64 * 1024)  /* bytes of one DER certificate */
#define CUBEID_X509_CHAIN_MAX    (256 * 1024) /* bytes of a PEM/DER chain file */
#define CUBEID_X509_CHAIN_CERTS  16           /* certificates in one SVID chain */
#define CUBEID_X509_BUNDLE_MAX   (512 * 1024) /* bytes of a PEM bundle */
#define CUBEID_X509_BUNDLE_CERTS 64           /* certificates in one bundle */

#define CUBEID_SVID_TTL_DEFAULT 3600 /* seconds, as SPIRE */
#define CUBEID_SVID_BACKDATE    60   /* notBefore = now - this */

/* ---- certificate chains (spiffe/x509-pem.c) -------------------------- */

/*
 * Parse buf[0..len) as certificates: PEM "CERTIFICATE" blocks (any other
 * block type, PEM headers, or a block that is not exactly one DER
 * certificate is CUBEID_ERR_X509), or, when buf does not start with PEM,
 * concatenated DER certificates with nothing left over.  len over max_bytes
 * or more than max_certs certificates is CUBEID_ERR_TOO_LARGE; no
 * certificate at all is CUBEID_ERR_X509.  New stack in *out, in file
 * order; caller frees with OSSL_STACK_OF_X509_free() / sk_X509_pop_free().
 */
int cubeid_x509_chain_parse(const uint8_t *buf, size_t len, size_t max_bytes, size_t max_certs,
                            STACK_OF(X509) * *out);
/* Read a file (at most max_bytes) and parse it as above. */
int cubeid_x509_chain_read_file(const char *path, size_t max_bytes, size_t max_certs,
                                STACK_OF(X509) * *out);
/* PEM of certs[0..n) as one NUL-terminated string (caller frees); *len
 * (optional) gets strlen. */
int cubeid_x509_chain_to_pem(STACK_OF(X509) * certs, char **out, size_t *len);

/* ---- X.509 bundles --------------------------------------------------- */

typedef struct cubeid_x509_bundle cubeid_x509_bundle;

/* An empty bundle for trust domain td (a bare name, validated). */
int cubeid_x509_bundle_new(const char *td, cubeid_x509_bundle **out);
void cubeid_x509_bundle_free(cubeid_x509_bundle *b);
const char *cubeid_x509_bundle_trust_domain(const cubeid_x509_bundle *b); /* borrowed */
/* Add a CA certificate (the bundle takes its own reference).  A certificate
 * that is not a CA (basicConstraints cA=true) is CUBEID_ERR_X509, so that no
 * leaf becomes a trust anchor.  A certificate already present is skipped; CUBEID_ERR_TOO_LARGE past
 * CUBEID_X509_BUNDLE_CERTS. */
int cubeid_x509_bundle_add(cubeid_x509_bundle *b, X509 *cert);
size_t cubeid_x509_bundle_count(const cubeid_x509_bundle *b);
X509 *cubeid_x509_bundle_at(const cubeid_x509_bundle *b, size_t i); /* borrowed, NULL past end */
/* The certificates (borrowed). */
STACK_OF(X509) * cubeid_x509_bundle_certs(const cubeid_x509_bundle *b);
/* Parse a PEM (or DER) bundle for td: at most CUBEID_X509_BUNDLE_MAX bytes
 * and CUBEID_X509_BUNDLE_CERTS certificates. */
int cubeid_x509_bundle_parse(const char *td, const uint8_t *buf, size_t len,
                             cubeid_x509_bundle **out);
int cubeid_x509_bundle_read_file(const char *td, const char *path, cubeid_x509_bundle **out);
/* The bundle as PEM; new NUL-terminated string (caller frees). */
int cubeid_x509_bundle_to_pem(const cubeid_x509_bundle *b, char **out, size_t *len);

/* ---- verification (spiffe/x509-verify.c) ----------------------------- */

/*
 * Verify an X.509-SVID chain (leaf first, then intermediates) against
 * bundle, at time now (seconds since the epoch; 0 means the current time).
 *   CUBEID_ERR_X509_SVID: the leaf is a CA, has keyCertSign or cRLSign, lacks
 *     digitalSignature (or key usage), has zero or several URI SANs, a URI
 *     SAN that is not a SPIFFE ID, a SPIFFE ID with no path, or a trust
 *     domain other than the bundle's; an intermediate is not a CA, lacks
 *     keyCertSign, or has a URI SAN that is not a path-less SPIFFE ID.
 *   CUBEID_ERR_X509_EXPIRED: a certificate is outside its validity period.
 *   CUBEID_ERR_X509_VERIFY: the chain does not verify to a bundle authority.
 *   CUBEID_ERR_X509: malformed input; CUBEID_ERR_TOO_LARGE: over the limits.
 * *reason (optional) always gets a static message saying which rule broke
 * ("ok" on success).  On success *id (optional) gets the leaf's SPIFFE ID
 * (caller frees).
 */
int cubeid_x509_svid_verify(STACK_OF(X509) * chain, const cubeid_x509_bundle *bundle, int64_t now,
                            cubeid_spiffe_id **id, const char **reason);
/* The same on a PEM or DER chain buf[0..len). */
int cubeid_x509_svid_verify_buf(const uint8_t *buf, size_t len, const cubeid_x509_bundle *bundle,
                                int64_t now, cubeid_spiffe_id **id, const char **reason);

/* The single SPIFFE ID URI SAN of cert (CUBEID_ERR_X509_SVID with *reason
 * if there is not exactly one, or it is not a SPIFFE ID); caller frees. */
int cubeid_x509_spiffe_id(X509 *cert, cubeid_spiffe_id **id, const char **reason);

/* ---- minting (spiffe/x509svid.c) ------------------------------------- */

typedef struct cubeid_ca cubeid_ca; /* <cubeid/ca.h> */

typedef enum {
	/* A session object generated exportable: the PKCS#8 private key can be
	 * handed to the workload (Workload API, PEM files). */
	CUBEID_SVID_KEY_EXPORTABLE = 0,
	/* Generated non-extractable: the key never leaves the token; the SVID
	 * carries its PKCS#11 URI instead. */
	CUBEID_SVID_KEY_RESIDENT,
} cubeid_svid_key_policy;

struct cubeid_svid_req {
	const cubeid_spiffe_id *id;    /* required; must be in the CA's trust domain */
	const char *const *dns;        /* optional DNS SANs */
	size_t n_dns;                  /* at most 32 */
	int64_t ttl;                   /* seconds; 0 = CUBEID_SVID_TTL_DEFAULT */
	cubeid_key_type key_type;      /* 0 = CUBEID_KEY_EC_P256 */
	cubeid_svid_key_policy policy; /* exportable (default) or resident */
	bool persistent;               /* resident only: a token object, not a session one */
	cubeid_token *key_token;       /* token for the workload key; NULL = the CA's */
	/* Certify this public key instead of generating one (then the SVID has no
	 * private key); NULL normally. */
	EVP_PKEY *public_key;
	int64_t now; /* 0 = the current time (tests pass a fixed time) */
};

typedef struct cubeid_x509_svid cubeid_x509_svid;

/*
 * Mint an X.509-SVID: a workload key per req, then a leaf with exactly one
 * URI SAN (req->id) plus req->dns, keyUsage critical digitalSignature (and
 * keyEncipherment for RSA keys), EKU serverAuth+clientAuth, basicConstraints
 * critical cA=false, SKID/AKID, a 16-byte random positive serial, notBefore
 * now - CUBEID_SVID_BACKDATE, notAfter now + ttl (rounded up to the whole
 * second, so that the SVID lives at least ttl) clamped to the CA
 * certificate's notAfter; signed in the token by the CA key.  The chain is
 * the leaf, then the CA's intermediates (never a self-signed root).
 * CUBEID_ERR_SPIFFE_ID for an ID outside the CA's trust domain; CUBEID_ERR_CA
 * for a CA certificate that has expired.  New SVID in *out; caller frees.
 */
int cubeid_x509_svid_mint(cubeid_ca *ca, const struct cubeid_svid_req *req, cubeid_x509_svid **out);
void cubeid_x509_svid_free(cubeid_x509_svid *svid);

X509 *cubeid_x509_svid_leaf(const cubeid_x509_svid *svid);              /* borrowed */
STACK_OF(X509) * cubeid_x509_svid_chain(const cubeid_x509_svid *svid);  /* borrowed; leaf first */
const cubeid_spiffe_id *cubeid_x509_svid_id(const cubeid_x509_svid *s); /* borrowed */
int64_t cubeid_x509_svid_not_before(const cubeid_x509_svid *svid);
int64_t cubeid_x509_svid_not_after(const cubeid_x509_svid *svid);
/* The workload key in the token (borrowed; NULL when req->public_key was
 * given).  The caller may cubeid_key_delete() a persistent resident key
 * after rotation. */
cubeid_key *cubeid_x509_svid_key(const cubeid_x509_svid *svid);
/* The leaf then the intermediates as PEM (caller frees). */
int cubeid_x509_svid_chain_pem(const cubeid_x509_svid *svid, char **out, size_t *len);
/* The private key as unencrypted PKCS#8, DER or PEM (caller wipes and
 * frees).  CUBEID_ERR_P11_SENSITIVE for a resident key, CUBEID_ERR_NOT_FOUND
 * without a key. */
int cubeid_x509_svid_key_pkcs8_der(const cubeid_x509_svid *svid, uint8_t **out, size_t *len);
int cubeid_x509_svid_key_pkcs8_pem(const cubeid_x509_svid *svid, char **out, size_t *len);
/* The key's PKCS#11 URI (caller frees); CUBEID_ERR_NOT_FOUND without a key. */
int cubeid_x509_svid_key_uri(const cubeid_x509_svid *svid, char **out);

/*
 * Write svid.pem (leaf + intermediates, 0644), svid_key.pem (PKCS#8, 0600;
 * skipped for a resident key) and svid_bundle.pem (bundle, 0644) into dir,
 * each atomically (temp file, fsync, rename).  dir is created 0700 if
 * missing.
 */
int cubeid_x509_svid_write_files(const cubeid_x509_svid *svid, const cubeid_x509_bundle *bundle,
                                 const char *dir);

/*
 * When to renew a certificate valid over [not_before, not_after): at
 * not_before + lifetime * (0.5 + u), u uniform in [-0.1, 0.1] from a CSPRNG
 * (SPIRE's rule).  CUBEID_ERR_INVALID_ARG if not_after <= not_before.
 */
int cubeid_rotation_time(int64_t not_before, int64_t not_after, int64_t *out);

/*
 * Parse a duration strictly: digits then an optional unit s, m, h or d
 * ("90" is 90 s, "5m", "1h", "7d").  No sign, spaces, fractions or several
 * units; 1 second to 10 years.  CUBEID_ERR_PARSE otherwise.
 */
int cubeid_duration_parse(const char *s, int64_t *seconds);

#ifdef __cplusplus
}
#endif
#endif
