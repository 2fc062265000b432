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

	/* Outage recovery (p11-recover.c).  Everything below is guarded by
	 * gate, except gen, which is read atomically.  A thread is "inside"
	 * the module while it holds a borrowed session (p11_session_get to
	 * p11_session_put); C_Finalize runs only with nobody inside. */
	pthread_mutex_t gate;
	pthread_cond_t gate_cond;
	unsigned users;              /* threads inside the module */
	bool reiniting;              /* a re-init is draining or running: nobody enters */
	bool initialized;            /* C_Initialize worked and no C_Finalize since */
	bool down;                   /* the last recovery failed: fail fast until next_try */
	double next_try;             /* monotonic seconds: no re-init before this */
	unsigned delay_ms;           /* the backoff before the next re-init */
	double last_reinit;          /* monotonic s of the last re-init (0: none) */
	unsigned recoveries;         /* re-inits that brought every token back */
	int last_err;                /* why the last recovery failed (cubeid code) */
	uint64_t gen;                /* atomic: bumped by each re-init */
	struct cubeid_token *tokens; /* tokens open on this module (mod_next) */
};

/* Initialise the module (CKF_OS_LOCKING_OK); returns the CK_RV. */
CK_RV p11_module_initialize(struct p11_module *mod);
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

	char *uri_str;                 /* the URI it was opened with: to find the slot again */
	uint64_t mod_gen;              /* atomic: mod->gen the slot and sessions belong to */
	struct cubeid_token *mod_next; /* guarded by mod->gate */

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
#define P11_MAX_REOPENS  2 /* lost sessions: fresh ones, with backoff */
#define P11_MAX_RECOVERS 2 /* then module re-inits (p11_recover) per operation */
#define P11_MAX_RETRIES  (P11_MAX_REOPENS + P11_MAX_RECOVERS)
#define P11_MAX_REPAIRS  3 /* re-login / re-find, no backoff */

/* ---- p11-recover.c: outages (docs/pkcs11.md, "Token outages") ---- */
/* Monotonic seconds. */
double p11_mono(void);
/* Enter the module (p11_session_get does): waits while a re-init runs;
 * fails fast (the last recovery's error) while the module is down.
 * Re-entrant in one thread.  Leave with p11_gate_leave. */
int p11_gate_enter(struct p11_module *mod);
void p11_gate_leave(struct p11_module *mod);
uint64_t p11_module_gen(struct p11_module *mod);
/* Track the tokens open on a module (a re-init finds their slots again);
 * remove waits for a running re-init to end. */
void p11_module_add_token(struct p11_module *mod, cubeid_token *tok);
void p11_module_remove_token(struct p11_module *mod, cubeid_token *tok);
/*
 * The token failed in a way that new sessions did not fix (cause, a cubeid
 * code).  Unless another thread re-initialised the module since seen_gen,
 * re-initialise it: drain every thread out of the module, close every
 * session, C_Finalize, C_Initialize, find each token's slot again by its
 * URI and log in again.  Rate-limited with backoff (P11_RECOVER_MIN_MS
 * doubling to P11_RECOVER_MAX_MS): inside the backoff it fails at once.
 * Must be called with no session borrowed.  Returns CUBEID_OK when the
 * caller should try again, else an error.
 */
#define P11_RECOVER_MIN_MS  500
#define P11_RECOVER_MAX_MS  4000
#define P11_RECOVER_RESET_S 60 /* a re-init this long after the last: new outage */
int p11_recover(cubeid_token *tok, uint64_t seen_gen, const char *what, int cause);
/* After a re-init (gen != tok->mod_gen): forget the sessions (the module
 * closed them), find the slot again by tok->uri_str, and record gen.
 * Called with tok->lock held and from inside the module. */
int p11_token_rebind_locked(cubeid_token *tok, uint64_t gen);

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
	uint64_t handle_gen;   /* atomic: tok->mod_gen when priv and pub were found */
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
 * CKA_DECRYPT=false at generation, and CKA_VERIFY=false on an RSA key
 * (docs/pkcs11-tpm-notes.md): a token that fails with those attributes
 * gets one more try without any usage flag set false, and keeps its own
 * defaults (logged at debug level).
 */
#define P11_GEN_TEMPLATE_MAX 12
CK_RV p11_generate_key_pair(cubeid_token *tok, CK_SESSION_HANDLE s, CK_MECHANISM *mech,
                            const CK_ATTRIBUTE *pub, CK_ULONG npub, const CK_ATTRIBUTE *priv,
                            CK_ULONG npriv, CK_OBJECT_HANDLE *hpub, CK_OBJECT_HANDLE *hpriv);

/* Object handle of the private key, re-found by CKA_ID when stale;
 * CK_INVALID_HANDLE if it was found before the module's last re-init (a
 * handle from then may name another object now). */
CK_OBJECT_HANDLE p11_key_handle(const cubeid_key *key);
/* The same for the public object. */
CK_OBJECT_HANDLE p11_key_pub_handle(const cubeid_key *key);
/* True if the key's handles predate the module's last re-init. */
bool p11_key_stale(const cubeid_key *key);
int p11_key_refind(const cubeid_key *key, CK_SESSION_HANDLE s);

/* ---- helpers ---- */
/* Copy a blank-padded PKCS#11 string field into a NUL-terminated string. */
void p11_strfield(char *dst, size_t dstlen, const CK_UTF8CHAR *src, size_t srclen);
/* Name of a CKM_* value ("CKM_ECDSA") or NULL. */
const char *p11_mech_name(CK_MECHANISM_TYPE m);

#endif
