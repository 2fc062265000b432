/*
 * cubeid token layer: keys that live in a PKCS#11 token.
 *
 * A cubeid_token is one token in one loaded module, chosen by an RFC 7512
 * PKCS#11 URI.  It owns a pool of sessions, so that concurrent callers never
 * share a session, and it logs in again by itself when the token forgets the
 * login.  A cubeid_key is one key pair on that token.
 *
 * Conventions (docs/sdk.md, "Conventions"): functions return CUBEID_OK (0) or
 * a negative code from <cubeid/error.h>; an out parameter is set to NULL/0 on
 * entry and only filled on success; *_free(NULL) is a no-op.  All functions
 * are safe to call from several threads at once on the same token and key.
 */
#ifndef CUBEID_TOKEN_H
#define CUBEID_TOKEN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>

#include <cubeid/error.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct cubeid_token cubeid_token;
typedef struct cubeid_key cubeid_key;

/* Environment variables the layer reads. */
#define CUBEID_ENV_TOKEN    "CUBEID_TOKEN"         /* default for --token */
#define CUBEID_ENV_PIN_FILE "CUBEID_PIN_FILE"      /* file holding the user PIN */
#define CUBEID_ENV_PIN      "CUBEID_PIN"           /* the user PIN itself */
#define CUBEID_ENV_MODULE   "CUBEID_PKCS11_MODULE" /* module when the URI has none */

/* Longest PIN read from a file or the environment. */
#define CUBEID_PIN_MAX 256

struct cubeid_token_opts {
	/* Module to load when the URI has no module-path; NULL means
	 * $CUBEID_PKCS11_MODULE, then the SoftHSM2 module found at build time. */
	const char *module_path;
	/* NULL-terminated list of directories a module must resolve (realpath)
	 * into; NULL allows any module. */
	const char *const *module_allow_dirs;
	/* File holding the user PIN; overrides pin-source in the URI.  When
	 * neither is given, $CUBEID_PIN_FILE, then $CUBEID_PIN are used. */
	const char *pin_file;
	/* Sessions in the pool; 0 means 2 x online CPUs, at least 4. */
	unsigned pool_size;
	/* Do not log in (read-only listing of public objects). */
	bool no_login;
};

/*
 * Load the module named by uri (or opts), pick the single token that matches
 * uri, open the session pool and log in.  uri may be NULL or "pkcs11:" to
 * mean "the only initialised token".  The PIN is read once, kept in locked
 * memory for automatic re-login, and wiped by cubeid_token_free().
 * A PIN rejected by the token is CUBEID_ERR_P11_PIN_INCORRECT and is never
 * retried.  Returns a new token in *out.
 */
int cubeid_token_open(const char *uri, const struct cubeid_token_opts *opts, cubeid_token **out);
void cubeid_token_free(cubeid_token *tok);

/* Facts about the open token.  The strings are owned by tok. */
const char *cubeid_token_module_path(const cubeid_token *tok); /* realpath */
const char *cubeid_token_label(const cubeid_token *tok);
const char *cubeid_token_serial(const cubeid_token *tok);
unsigned long cubeid_token_slot(const cubeid_token *tok);
/* A "pkcs11:token=...;serial=..." URI naming this token; caller frees. */
int cubeid_token_uri(const cubeid_token *tok, char **out);
/* True if the token offers mechanism mech (a CKM_* value). */
bool cubeid_token_has_mechanism(const cubeid_token *tok, unsigned long mech);

/*
 * Whether the token is in an outage the layer is recovering from.  An
 * operation that finds the token gone re-initialises the module (closes
 * every session, C_Finalize, C_Initialize, finds the slot again by the URI,
 * logs in again) with backoff; between tries operations fail at once.
 * docs/pkcs11.md, "Token outages".
 */
struct cubeid_token_health {
	bool down;           /* the last recovery failed; operations fail fast */
	double retry_in;     /* seconds until the next recovery may run (>= 0) */
	int last_err;        /* why the last recovery failed (when down) */
	unsigned recoveries; /* module re-inits that brought the token back */
};
void cubeid_token_health(const cubeid_token *tok, struct cubeid_token_health *out);

/* Key types the layer can generate. */
typedef enum {
	CUBEID_KEY_NONE = 0,
	CUBEID_KEY_EC_P256,
	CUBEID_KEY_EC_P384,
	CUBEID_KEY_RSA_2048,
	CUBEID_KEY_RSA_3072,
} cubeid_key_type;

/* "ec-p256", "ec-p384", "rsa-2048", "rsa-3072"; NULL for an unknown type. */
const char *cubeid_key_type_name(cubeid_key_type type);
/* The inverse; CUBEID_KEY_NONE for an unknown name. */
cubeid_key_type cubeid_key_type_from_name(const char *name);

struct cubeid_keygen_opts {
	cubeid_key_type type;
	const char *label; /* CKA_LABEL; required */
	/* true: a token object that persists; false: a session object that
	 * lives while the token is open (fast, and never written to disk). */
	bool persistent;
	/* false (the default): CKA_SENSITIVE=true, CKA_EXTRACTABLE=false, the
	 * private key never leaves the token.  true: the private key can be
	 * exported with cubeid_key_export_private() (workload keys only). */
	bool exportable;
};

/*
 * Generate a key pair.  Its CKA_ID is SHA-1 over the subjectPublicKey BIT
 * STRING (RFC 5280 4.2.1.2, method 1), which is what OpenSSL writes as a
 * certificate's subjectKeyIdentifier: a key can be matched to its
 * certificate by id.
 */
int cubeid_key_generate(cubeid_token *tok, const struct cubeid_keygen_opts *opts, cubeid_key **out);

/* The two keys of key wrapping (<cubeid/key-wrap.h>), persistent, labelled
 * label; CUBEID_ERR_EXISTS if the label is taken.  The node's wrapping key
 * pair: RSA-3072, its private half can only unwrap and never leaves the
 * token.  The cluster key: RSA-2048, signs, sensitive, extractable only by
 * wrapping.  New key in *out (caller frees). */
int cubeid_wrapping_key_generate(cubeid_token *tok, const char *label, cubeid_key **out);
int cubeid_cluster_key_generate(cubeid_token *tok, const char *label, cubeid_key **out);

/* Find the private key with this label and/or id (either may be NULL/0).
 * CUBEID_ERR_NOT_FOUND if none; CUBEID_ERR_AMBIGUOUS if several. */
int cubeid_key_find(cubeid_token *tok, const char *label, const uint8_t *id, size_t id_len,
                    cubeid_key **out);
/* Find the key named by an object URI (pkcs11:object=...;id=...). */
int cubeid_key_find_uri(cubeid_token *tok, const char *uri, cubeid_key **out);
/* All private keys on the token; *out is an array of *n keys, free each and
 * then the array with cubeid_key_list_free(). */
int cubeid_key_list(cubeid_token *tok, cubeid_key ***out, size_t *n);
void cubeid_key_list_free(cubeid_key **keys, size_t n);

/* Destroy the private and public objects of key on the token.  key must still
 * be freed afterwards. */
int cubeid_key_delete(cubeid_key *key);
/* Keys are reference counted; a key holds a reference on its token. */
cubeid_key *cubeid_key_ref(cubeid_key *key);
void cubeid_key_free(cubeid_key *key);

cubeid_key_type cubeid_key_get_type(const cubeid_key *key);
const char *cubeid_key_label(const cubeid_key *key);              /* owned by key */
const uint8_t *cubeid_key_id(const cubeid_key *key, size_t *len); /* owned by key */
bool cubeid_key_is_persistent(const cubeid_key *key);
bool cubeid_key_is_exportable(const cubeid_key *key);
cubeid_token *cubeid_key_token(const cubeid_key *key); /* borrowed */
/* "pkcs11:token=...;serial=...;object=...;id=...;type=private"; caller frees. */
int cubeid_key_uri(const cubeid_key *key, char **out);

/* The public half as an OpenSSL key (a new reference the caller frees). */
int cubeid_key_public(const cubeid_key *key, EVP_PKEY **out);

/* Public key formats; a JWK is cubeid_key_export_jwk() of <cubeid/jwt.h>. */
typedef enum {
	CUBEID_PUB_DER = 1, /* SubjectPublicKeyInfo DER */
	CUBEID_PUB_PEM,     /* "-----BEGIN PUBLIC KEY-----" (PKIX), NUL-terminated */
} cubeid_pub_format;
/* Export the public key; *out is malloc'd (*len bytes, not counting a NUL). */
int cubeid_key_export_public(const cubeid_key *key, cubeid_pub_format fmt, uint8_t **out,
                             size_t *len);
/* The private key of an exportable key as an OpenSSL key (caller frees).
 * CUBEID_ERR_P11_SENSITIVE for a key generated non-exportable. */
int cubeid_key_export_private(const cubeid_key *key, EVP_PKEY **out);

/* Signature algorithms.  The layer hashes the data itself (SoftHSM2 has no
 * CKM_ECDSA_SHA256) and signs the digest in the token. */
typedef enum {
	CUBEID_SIG_NONE = 0,
	CUBEID_SIG_ECDSA_SHA256,     /* ES256 */
	CUBEID_SIG_ECDSA_SHA384,     /* ES384 */
	CUBEID_SIG_ECDSA_SHA512,     /* ES512 (any curve) */
	CUBEID_SIG_RSA_PKCS1_SHA256, /* RS256 */
	CUBEID_SIG_RSA_PKCS1_SHA384,
	CUBEID_SIG_RSA_PKCS1_SHA512,
	CUBEID_SIG_RSA_PSS_SHA256, /* PS256: MGF1 with the same hash, salt = hash length */
	CUBEID_SIG_RSA_PSS_SHA384,
	CUBEID_SIG_RSA_PSS_SHA512,
} cubeid_sig_alg;

/* The digest an algorithm uses (EVP_sha256() ...), NULL for NONE. */
const EVP_MD *cubeid_sig_alg_md(cubeid_sig_alg alg);
/* True for the ECDSA algorithms (ES*), and for the RSA-PSS ones (PS*). */
bool cubeid_sig_alg_is_ec(cubeid_sig_alg alg);
bool cubeid_sig_alg_is_pss(cubeid_sig_alg alg);
/* The largest signature key can make, in bytes (ECDSA raw: 2 x field size). */
size_t cubeid_key_sig_size(const cubeid_key *key);

/*
 * Sign data (hashing it first) or a precomputed digest.  ECDSA signatures
 * are raw r||s, each half left-padded to the field size: exactly the JWS
 * format.  Two-call convention: with sig == NULL, *sig_len is set to the size
 * needed and CUBEID_OK returned; a too-small buffer gives
 * CUBEID_ERR_BUFFER_TOO_SMALL with *sig_len set to the size needed.
 * Errors: CUBEID_ERR_P11_MECHANISM when the token lacks what alg needs,
 * CUBEID_ERR_P11_KEY when alg does not fit the key type.
 * Sessions that the token dropped (closed from outside, device removed) are
 * reopened with backoff and the operation retried a bounded number of times.
 */
int cubeid_key_sign(const cubeid_key *key, cubeid_sig_alg alg, const uint8_t *data, size_t data_len,
                    uint8_t *sig, size_t *sig_len);
int cubeid_key_sign_digest(const cubeid_key *key, cubeid_sig_alg alg, const uint8_t *digest,
                           size_t digest_len, uint8_t *sig, size_t *sig_len);

/* Convert between raw r||s (JWS) and DER ECDSA-Sig-Value (X.509, OpenSSL).
 * field_len is the size of one half (32 for P-256, 48 for P-384). */
int cubeid_ecdsa_raw_to_der(const uint8_t *raw, size_t raw_len, uint8_t **der, size_t *der_len);
int cubeid_ecdsa_der_to_raw(const uint8_t *der, size_t der_len, size_t field_len, uint8_t *raw,
                            size_t *raw_len);

/*
 * The OpenSSL bridge: an EVP_PKEY whose private-key operations are done by
 * key in the token.  It can be passed to X509_sign(), X509_REQ_sign(),
 * EVP_DigestSignInit() and to SSL_CTX_use_PrivateKey().  The EVP_PKEY holds a
 * reference on key.  Caller frees with EVP_PKEY_free().
 */
int cubeid_key_evp(cubeid_key *key, EVP_PKEY **out);

/*
 * Development only: create (or reuse) a throwaway SoftHSM2 token under dir
 * (dir/softhsm2.conf, dir/tokens/, dir/user.pin with mode 0600), initialised
 * through the module with random PINs, and point $SOFTHSM2_CONF at it.
 * label defaults to "cubeid-dev".  Returns its URI and PIN file (caller
 * frees both).  The module is $CUBEID_PKCS11_MODULE or the SoftHSM2 found
 * at build time.
 */
int cubeid_softhsm_dev_token(const char *dir, const char *label, char **uri, char **pin_file);
/* The same with the SoftHSM2 module named (NULL: as above).  The agent's
 * throwaway workload token on a TPM node (docs/tpm.md) uses it with the
 * SoftHSM2 module found at build time, whatever $CUBEID_PKCS11_MODULE says. */
int cubeid_softhsm_token(const char *module, const char *dir, const char *label, char **uri,
                         char **pin_file);

#ifdef __cplusplus
}
#endif
#endif
