/*
 * Internals of the token layer, shared by the pkcs11/ files, the CLI's
 * `token info` and the benchmarks.  Not installed.
 *
 * Locking contract: everything mutable in a cubeid_token lives in that
 * struct and is guarded by tok->lock; functions named *_locked expect the
 * caller to hold it.  A cubeid_key is immutable after creation except its
 * object handles, which are read and written atomically.
 */
#ifndef CUBEID_P11_INTERNAL_H
#define CUBEID_P11_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <p11-kit/pkcs11.h>
#include <p11-kit/uri.h>

#include <cubeid/token.h>

/* ---- p11-module.c: one loaded module, shared by every token on it ---- */
struct p11_module {
	char *path; /* realpath */
	void *dl;
	CK_FUNCTION_LIST_PTR f; /* 2.40 layout; a 3.0 list starts the same */
	bool via_interface;     /* found through C_GetInterface */
	bool initialized_here;  /* we called C_Initialize and must finalize */
	CK_INFO info;
	unsigned refs; /* guarded by the module registry lock */
	struct p11_module *next;
};

/* Load (or share) the module at path; allow_dirs as in cubeid_token_opts. */
int p11_module_get(const char *path, const char *const *allow_dirs, struct p11_module **out);
void p11_module_put(struct p11_module *mod);

/* ---- p11-error.c ---- */
/* Translate a CK_RV to a cubeid error code. */
int p11_err(CK_RV rv);
/* Name of a CK_RV ("CKR_PIN_INCORRECT"), for log lines. */
const char *p11_rv_name(CK_RV rv);
/* Log "what: CKR_NAME (0x..)" at error level and return p11_err(rv). */
int p11_fail(const char *what, CK_RV rv);

/* ---- p11-token.c / p11-session.c ---- */
struct p11_session {
	CK_SESSION_HANDLE h;
	bool open;
	bool busy;
};

struct cubeid_token {
	struct p11_module *mod;
	CK_FUNCTION_LIST_PTR f; /* == mod->f */
	CK_SLOT_ID slot;
	CK_TOKEN_INFO ti;
	char label[33], serial[17], model[17], manufacturer[33];
	CK_MECHANISM_TYPE *mechs;
	CK_ULONG n_mechs;
	bool login_required;

	pthread_mutex_t lock; /* guards everything below */
	pthread_cond_t cond;
	char *pin; /* locked, not dumped; NULL when no_login */
	size_t pin_len;
	size_t pin_map_len;
	struct p11_session *pool;
	unsigned pool_size;
	unsigned n_busy;
	unsigned refs;
};

/* Borrow a session from the pool, opening (and logging in) as needed;
 * blocks while all are busy. */
int p11_session_get(cubeid_token *tok, CK_SESSION_HANDLE *out);
/* Return a session.  broken: the token said it is gone; close and forget. */
void p11_session_put(cubeid_token *tok, CK_SESSION_HANDLE h, bool broken);
/* Log in again after CKR_USER_NOT_LOGGED_IN (uses session h). */
int p11_relogin(cubeid_token *tok, CK_SESSION_HANDLE h);
/* True if rv means the session (or device) is gone and a fresh session and
 * a retry may succeed. */
bool p11_rv_session_lost(CK_RV rv);
/* Sleep before retry number attempt (0-based): 0, 10, 40, 160 ms... */
void p11_backoff(unsigned attempt);
#define P11_MAX_RETRIES 4 /* lost sessions, with backoff */
#define P11_MAX_REPAIRS 3 /* re-login / re-find, no backoff */

cubeid_token *p11_token_ref(cubeid_token *tok);
void p11_token_unref(cubeid_token *tok);
/* Parse a --token URI: p11-kit's parser, then cubeid's rules (no
 * pin-value, nothing unrecognised, at most P11_URI_MAX bytes). */
#define P11_URI_MAX 4096
int p11_uri_parse(const char *s, P11KitUri **out);
/* The file path a pin-source names ("file:/p", "file:///p" or "/p"). */
int p11_pin_source_path(const char *src, const char **path);
/* Read the PIN per opts/uri/environment into tok (see token.h). */
int p11_pin_load(cubeid_token *tok, const struct cubeid_token_opts *opts, P11KitUri *uri);

/*
 * Run fn on a borrowed session, retrying what a retry can fix: a session
 * the token dropped (reopened with backoff), a lost login (logged in
 * again), a stale object handle of key (re-found by CKA_ID; key may be
 * NULL).  fn returns a cubeid code and sets *rv to the CK_RV that caused a
 * failure (CKR_OK if the failure was not the token's).  what names the
 * operation in log lines.
 */
typedef int (*p11_op_fn)(cubeid_token *tok, CK_SESSION_HANDLE s, void *arg, CK_RV *rv);
int p11_run(cubeid_token *tok, const cubeid_key *key, const char *what, p11_op_fn fn, void *arg);

/* Read one attribute (two-call); *val is malloc'd, *len its size. */
CK_RV p11_attr_get(cubeid_token *tok, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE o,
                   CK_ATTRIBUTE_TYPE type, uint8_t **val, size_t *len);

/* ---- p11-key.c ---- */
struct cubeid_key {
	unsigned refs; /* atomic */
	cubeid_token *tok;
	CK_OBJECT_HANDLE priv; /* atomic; re-found by id if invalid */
	CK_OBJECT_HANDLE pub;  /* atomic; 0 if no public object */
	cubeid_key_type type;
	CK_KEY_TYPE ck_type;
	size_t field_len; /* EC: bytes per coordinate; RSA: modulus bytes */
	char *label;
	uint8_t id[64];
	size_t id_len;
	bool persistent;
	bool exportable;
	EVP_PKEY *pub_pkey; /* public half, built once at load */
};

/*
 * C_GenerateKeyPair for a key that must do one thing.  The templates carry
 * what the key does (CKA_SIGN / CKA_VERIFY, or CKA_UNWRAP / CKA_WRAP) and may
 * carry usage flags set false that every token we know accepts; at most
 * P11_GEN_TEMPLATE_MAX attributes each.  This adds CKA_DECRYPT and
 * CKA_SIGN_RECOVER false to the private half and CKA_ENCRYPT and
 * CKA_VERIFY_RECOVER false to the public one, since SoftHSM2 (as the
 * standard's defaults allow) would set them.  tpm2-pkcs11 refuses
 * CKA_DECRYPT=false at generation (docs/pkcs11-tpm-notes.md): a token that
 * fails with those attributes gets one more try without them, and keeps its
 * own defaults (logged at debug level).
 */
#define P11_GEN_TEMPLATE_MAX 12
CK_RV p11_generate_key_pair(cubeid_token *tok, CK_SESSION_HANDLE s, CK_MECHANISM *mech,
                            const CK_ATTRIBUTE *pub, CK_ULONG npub, const CK_ATTRIBUTE *priv,
                            CK_ULONG npriv, CK_OBJECT_HANDLE *hpub, CK_OBJECT_HANDLE *hpriv);

/* Object handle of the private key, re-found by CKA_ID when stale. */
CK_OBJECT_HANDLE p11_key_handle(const cubeid_key *key);
int p11_key_refind(const cubeid_key *key, CK_SESSION_HANDLE s);

/* ---- helpers ---- */
/* Copy a blank-padded PKCS#11 string field into a NUL-terminated string. */
void p11_strfield(char *dst, size_t dstlen, const CK_UTF8CHAR *src, size_t srclen);
/* Name of a CKM_* value ("CKM_ECDSA") or NULL. */
const char *p11_mech_name(CK_MECHANISM_TYPE m);

#endif
