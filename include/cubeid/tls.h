/*
 * cubeid TLS loader (libcubeid): OpenSSL contexts for mTLS between SPIFFE
 * workloads, with certificates that reload without downtime and peers
 * authorized by SPIFFE ID.
 *
 * A cubeid_tls holds the current identity -- certificate chain, private key
 * and the trust bundle used to verify peers -- taken from one source:
 *   - files: --mtls-cert-file, --mtls-key-file, --mtls-ca-file (PEM), as
 *     spiffe-helper or cubeid-agent's delivery write them;
 *   - a certificate file with the key in a PKCS#11 token: key_file is a
 *     PKCS#11 URI ("pkcs11:token=...;object=..."), and every handshake
 *     signature is made in the token (the key never leaves it);
 *   - a Workload API socket (cubeid-agent or SPIRE): the X.509-SVID stream
 *     of FetchX509SVID, followed as the agent rotates.
 *
 * Reload.  Contexts made by cubeid_tls_server_ctx() / cubeid_tls_client_ctx()
 * present the identity through OpenSSL's certificate callback
 * (SSL_CTX_set_cert_cb: the counterpart of Go's GetCertificate and
 * GetClientCertificate), so every new handshake gets the pair current at
 * that moment, and connections already open are untouched.  A reload builds
 * the whole new state, checks that the certificate matches the key and that
 * the certificate is a valid SVID for the bundle, and swaps it in
 * atomically (the state is reference counted; a handshake in progress keeps
 * the state it started with).  A reload that fails keeps the old state,
 * logs why, and is reported by cubeid_tls_last_error().
 *
 * In file mode a change is noticed by inotify on the directories holding
 * the files (not on the files themselves: Kubernetes' AtomicWriter and
 * cubeid's delivery swap a "..data" symlink, and a watch on the old file
 * would never fire again), and by a periodic check of the files' identity
 * (device, inode, size, mtime, ctime) as a safety net.  Either a background
 * thread does this (the default), or an event-loop program polls
 * cubeid_tls_fd() and calls cubeid_tls_reload_check() when it is readable
 * and on a timer.  In socket mode a background thread always follows the
 * stream; cubeid_tls_reload_check() then only reports the last error.  A
 * stream that ends is reopened by itself: at once when it had worked, else
 * with a backoff of 0.5 s doubling to 30 s, the old state serving
 * meanwhile.  But a message that no longer carries our SVID (the agent
 * withdrew it), or a stream ended with PermissionDenied, drops the state
 * (SPIFFE Workload API 4.4, 5.2.1): handshakes fail, and
 * cubeid_tls_own_id() is CUBEID_ERR_UNAVAILABLE, until the SVID is back.
 *
 * Peer authorization.  Both context kinds require a peer certificate,
 * verify the peer's chain against the current bundle as an X.509-SVID
 * (<cubeid/x509svid.h>), extract its SPIFFE ID and accept it only if the
 * allow-list matches.  Allow-list entries are strings:
 *   "spiffe://td/path"      exactly this ID;
 *   "spiffe://td"           any ID in trust domain td;
 *   "spiffe://td/prefix/ *" (no space) any ID whose path starts with
 *                           /prefix/ (whole segments).
 * An empty allow-list is a configuration error: nothing is accepted by
 * default.  TLS 1.3 only, unless tls12 is set (then TLS 1.2 and 1.3).
 *
 * Why a handshake failed.  A rejected peer is recorded on the SSL object
 * and logged: cubeid_tls_handshake_error() (call it after SSL_accept /
 * SSL_connect / SSL_do_handshake fails) returns
 *   CUBEID_ERR_TLS_PEER_ID       the peer's SPIFFE ID is not allowed;
 *   CUBEID_ERR_TLS_UNKNOWN_CA    its chain leads to no CA of the bundle (or
 *                                it is in another trust domain);
 *   CUBEID_ERR_TLS_PEER_EXPIRED  a certificate is expired or not yet valid;
 *   CUBEID_ERR_TLS_NO_PEER_CERT  it presented no certificate;
 *   CUBEID_ERR_X509_SVID         its certificate breaks X.509-SVID rules;
 *   CUBEID_ERR_TLS               anything else (the OpenSSL reason, or the
 *                                alert the peer sent, is in *why).
 *
 * Conventions (docs/sdk.md, "Conventions"): functions return CUBEID_OK (0) or
 * a negative code; out parameters are set to NULL on entry and filled only on
 * success; *_free(NULL) is a no-op.  All functions are thread-safe.
 *
 * A minimal server:
 *
 *     struct cubeid_tls_flags fl;
 *     cubeid_tls *tls = NULL;
 *     SSL_CTX *ctx = NULL;
 *
 *     cubeid_tls_flags_init(&fl);
 *     if (cubeid_tls_flags_parse(&fl, &argc, argv) != 0)   // removes them
 *             usage();
 *     if (fl.enable) {
 *             if (cubeid_tls_new_from_flags(&fl, &tls) != 0 ||
 *                 cubeid_tls_server_ctx(tls, &ctx) != 0)
 *                     exit(1);
 *     }
 *     ... SSL_new(ctx); SSL_accept(ssl) ...
 *     if (SSL_accept(ssl) <= 0)
 *             cubeid_tls_handshake_error(ssl, ret, &why);   // logs why
 */
#ifndef CUBEID_TLS_H
#define CUBEID_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include <openssl/ssl.h>

#include <cubeid/error.h>
#include <cubeid/spiffe.h>

#ifdef __cplusplus
extern "C" {
#endif

#define CUBEID_TLS_ALLOW_MAX              64           /* allow-list entries */
#define CUBEID_TLS_CHECK_INTERVAL_DEFAULT 30000        /* ms between periodic checks */
#define CUBEID_TLS_FILE_MAX               (256 * 1024) /* bytes of a cert/key/CA file */

typedef struct cubeid_tls cubeid_tls;

/* Called after every reload attempt that changed something or failed
 * (rc = CUBEID_OK or the error; the old state is kept on error), from the
 * thread that did the reload.  It must not free tls or the last context
 * made from it (that would join the thread it runs on). */
typedef void (*cubeid_tls_reload_fn)(cubeid_tls *tls, int rc, void *arg);

struct cubeid_tls_config {
	/* File source: PEM files.  cert_file holds the leaf then any
	 * intermediates; key_file a private key (PKCS#8 or traditional PEM),
	 * or a PKCS#11 URI naming a key in a token; ca_file the CA
	 * certificates peers must chain to (the trust bundle). */
	const char *cert_file;
	const char *key_file;
	const char *ca_file;
	/* For a PKCS#11 key: the PIN file (else pin-source in the URI, else
	 * $CUBEID_PIN_FILE, then $CUBEID_PIN) and the module (else
	 * module-path in the URI, $CUBEID_PKCS11_MODULE, the SoftHSM2 one). */
	const char *pin_file;
	const char *module_path;

	/* Socket source (instead of files): the Workload API endpoint,
	 * "unix:///path", "/path" or "tcp://IP:PORT" (<cubeid/workloadapi.h>).
	 * The string "env" means $SPIFFE_ENDPOINT_SOCKET. */
	const char *socket;
	/* Socket source: which of the caller's SVIDs to use; NULL = the first
	 * (the default identity). */
	const char *spiffe_id;
	/* Socket source: how long cubeid_tls_new() waits for the first SVID;
	 * 0 = 30 s. */
	long timeout_ms;

	/* Trust domain whose bundle ca_file is; NULL = the trust domain of
	 * our own certificate. */
	const char *trust_domain;

	/* Allow-list (see above); at least one entry. */
	const char *const *allow;
	size_t n_allow;

	bool tls12; /* also accept TLS 1.2 (default: TLS 1.3 only) */

	/* Files: the periodic check, in ms; 0 = the default, < 0 = none. */
	long check_interval_ms;
	/* Files: no background thread; the caller polls cubeid_tls_fd() and
	 * calls cubeid_tls_reload_check(). */
	bool no_thread;
	/* Files: no inotify (file systems without it); the periodic check
	 * alone notices changes. */
	bool no_inotify;

	cubeid_tls_reload_fn on_reload; /* optional */
	void *on_reload_arg;
};

/*
 * Load the first state from cfg's source (a failure here is returned: a
 * program should not start without an identity), start watching it, and
 * return the loader in *out.  Bad allow-list entries are CUBEID_ERR_CONFIG
 * (logged with the entry); a certificate that does not match its key is
 * CUBEID_ERR_KEY_MISMATCH.  The strings in cfg are copied.
 */
int cubeid_tls_new(const struct cubeid_tls_config *cfg, cubeid_tls **out);
/* Drop the caller's reference.  Contexts made from tls hold their own
 * reference, so tls lives (and keeps reloading) until the last of them is
 * freed too; then the thread is stopped and joined. */
void cubeid_tls_free(cubeid_tls *tls);

/*
 * A new SSL_CTX (caller frees with SSL_CTX_free) that presents tls's
 * current identity, requires and verifies the peer's certificate, and
 * accepts only allow-listed SPIFFE IDs.  A server context asks every
 * client for a certificate and refuses a client without one; a client
 * context checks the server's SPIFFE ID (not its host name: SPIFFE
 * authorization replaces host-name checks).
 */
int cubeid_tls_server_ctx(cubeid_tls *tls, SSL_CTX **out);
int cubeid_tls_client_ctx(cubeid_tls *tls, SSL_CTX **out);

/*
 * Event-loop mode.  cubeid_tls_fd() is an inotify descriptor that becomes
 * readable when a watched directory changes (-1 in socket mode).
 * cubeid_tls_reload_check() drains it, compares the files with those of
 * the current state and reloads when they differ.  Returns 1 if a new state
 * was swapped in, 0 if nothing changed, or the error of a failed reload
 * (the old state is kept).  A reload that failed is retried only when the
 * files change again.  Safe to call from any thread, also in thread mode.
 */
int cubeid_tls_fd(const cubeid_tls *tls);
int cubeid_tls_reload_check(cubeid_tls *tls);
/* Reload now, whatever the files look like (1 = swapped, or an error);
 * CUBEID_ERR_UNSUPPORTED in socket mode, where the agent pushes changes. */
int cubeid_tls_reload(cubeid_tls *tls);

/* The error of the last reload attempt (CUBEID_OK if it succeeded) and,
 * in *why (optional), a message for it that lives until the next reload. */
int cubeid_tls_last_error(cubeid_tls *tls, const char **why);
/* How many times a new state was swapped in (the first load counts 1). */
unsigned long cubeid_tls_generation(cubeid_tls *tls);
/* Our current SPIFFE ID (a copy; caller frees). */
int cubeid_tls_own_id(cubeid_tls *tls, cubeid_spiffe_id **out);
/* Our current leaf certificate (a new reference; caller frees). */
int cubeid_tls_own_cert(cubeid_tls *tls, X509 **out);

/* ---- per connection -------------------------------------------------- */

/*
 * After a failed handshake (ret is what SSL_accept/SSL_connect/
 * SSL_do_handshake returned): classify the failure as listed at the top,
 * record it on ssl, log it once at warning level, and return the code.
 * *why (optional) gets a message that lives as long as ssl.  For a
 * handshake that only wants more I/O (SSL_ERROR_WANT_*) it returns
 * CUBEID_OK and records nothing.
 */
int cubeid_tls_handshake_error(SSL *ssl, int ret, const char **why);
/* The failure recorded on ssl so far (by the verification callback or
 * cubeid_tls_handshake_error()), or CUBEID_OK; *why as above. */
int cubeid_tls_peer_error(const SSL *ssl, const char **why);
/* The authorized peer's SPIFFE ID after a successful handshake (a copy;
 * caller frees).  CUBEID_ERR_TLS_NO_PEER_CERT without a peer certificate. */
int cubeid_tls_peer_id(const SSL *ssl, cubeid_spiffe_id **out);

/* ---- allow-lists ------------------------------------------------------ */

/* Check one allow-list entry's syntax; *why (optional) says what is
 * wrong.  CUBEID_ERR_CONFIG for a bad entry. */
int cubeid_tls_allow_validate(const char *entry, const char **why);
/* True if id matches entry (a valid entry; false for an invalid one). */
bool cubeid_tls_allow_match(const char *entry, const cubeid_spiffe_id *id);

/* ---- flags for C programs --------------------------------------------- */

/*
 * The flags, as AgentCube's Go components name them:
 *   --enable-mtls               turn mTLS on (all other flags need it)
 *   --mtls-cert-file FILE       certificate chain (PEM)
 *   --mtls-key-file FILE|URI    private key (PEM) or a PKCS#11 URI
 *   --mtls-ca-file FILE         CA bundle peers must chain to (PEM)
 *   --mtls-socket SOCKET        Workload API socket instead of the files
 *                               ("env" = $SPIFFE_ENDPOINT_SOCKET)
 *   --mtls-spiffe-id ID         with --mtls-socket: which SVID to use
 *   --mtls-allow-id ENTRY       allow-list entry; repeat it
 *   --mtls-pin-file FILE        PIN for a PKCS#11 key (never on argv)
 *   --mtls-tls12                also accept TLS 1.2
 *   --mtls-check-interval MS    periodic file check (0 = default)
 * Each value may follow as the next argument or after "=".  The strings
 * point into argv.
 */
struct cubeid_tls_flags {
	bool enable;
	const char *cert_file, *key_file, *ca_file;
	const char *socket, *spiffe_id, *pin_file;
	const char *allow[CUBEID_TLS_ALLOW_MAX];
	size_t n_allow;
	bool tls12;
	long check_interval_ms;
};

void cubeid_tls_flags_init(struct cubeid_tls_flags *f);
/*
 * Take the flags above out of argv (the others keep their order; *argc is
 * updated and argv[*argc] is NULL) and store them in f.  Stops at "--".
 * A flag missing its value, a bad number, too many --mtls-allow-id and a
 * repeated single flag are CUBEID_ERR_CONFIG, with the reason logged.
 */
int cubeid_tls_flags_parse(struct cubeid_tls_flags *f, int *argc, char **argv);
/*
 * Check that the flags make sense together (--enable-mtls with either all
 * three files or --mtls-socket, and at least one --mtls-allow-id; no
 * --mtls-* without --enable-mtls) and fill cfg from them (the strings are
 * borrowed from f).  CUBEID_ERR_CONFIG with the reason logged.
 */
int cubeid_tls_flags_config(const struct cubeid_tls_flags *f, struct cubeid_tls_config *cfg);
/* cubeid_tls_flags_config() then cubeid_tls_new().  *out stays NULL (and
 * CUBEID_OK is returned) when --enable-mtls was not given. */
int cubeid_tls_new_from_flags(const struct cubeid_tls_flags *f, cubeid_tls **out);
/* The flags' --help text, for a program's own usage message. */
void cubeid_tls_flags_usage(FILE *out);

#ifdef __cplusplus
}
#endif
#endif
