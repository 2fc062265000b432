/*
 * The TLS loader's internals (tls/): one state per identity, the loader
 * that owns the current state and its source, and the OpenSSL glue.
 *
 *   tls-state.c   build a state from files, a PKCS#11 key or a Workload API
 *                 message; reference counting
 *   tls-loader.c  cubeid_tls: the current state, reloads, inotify, the
 *                 periodic check and the background thread
 *   tls-socket.c  the Workload API source (a thread on the X.509 stream)
 *   tls-ctx.c     SSL_CTX set-up, the certificate and verification
 *                 callbacks, allow-lists, per-connection errors
 *   tls-flags.c   --enable-mtls and the --mtls-* flags
 */
#ifndef CUBEID_TLS_INTERNAL_H
#define CUBEID_TLS_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <cubeid/tls.h>
#include <cubeid/token.h>
#include <cubeid/workloadapi.h>
#include <cubeid/x509svid.h>

/* What a file was when it was read: a change in any field means the file
 * was replaced or rewritten. */
struct tls_file_id {
	bool present;
	dev_t dev;
	ino_t ino;
	off_t size;
	int64_t mtime_ns, ctime_ns;
};

enum { TLS_F_CERT, TLS_F_KEY, TLS_F_CA, TLS_F_N };

/* One complete identity: immutable once built, shared by reference. */
struct tls_state {
	int refs; /* __atomic */
	X509 *leaf;
	STACK_OF(X509) * inter; /* intermediates (may be empty) */
	EVP_PKEY *key;
	cubeid_x509_bundle *bundle;
	cubeid_spiffe_id *id;
	struct tls_file_id files[TLS_F_N]; /* file source: what was read */
};

struct tls_state *tls_state_ref(struct tls_state *s);
void tls_state_unref(struct tls_state *s);

/* Check and finish a state whose leaf, inter, key and bundle are set:
 * the leaf's SPIFFE ID, the key matching it, the chain verifying to the
 * bundle.  *why gets a static reason on failure. */
int tls_state_check(struct tls_state *s, const char **why);

/* Stat path (following symlinks); absent files give present = false. */
void tls_file_id_get(const char *path, struct tls_file_id *fid);
bool tls_file_id_equal(const struct tls_file_id *a, const struct tls_file_id *b);

struct tls_file_src {
	char *cert_file, *key_file, *ca_file;
	char *trust_domain;  /* NULL: our own */
	cubeid_token *token; /* key_file is a PKCS#11 URI */
};

/* Build a state from the files (and the token for a PKCS#11 key).  seen
 * gets what the files were just before they were read, also on failure:
 * a change after that point must trigger another attempt. */
int tls_state_from_files(const struct tls_file_src *src, struct tls_state **out, const char **why,
                         struct tls_file_id seen[TLS_F_N]);
/* Build a state from one Workload API X.509-SVID (DER chain, PKCS#8 key,
 * DER bundle). */
int tls_state_from_wl(const struct cubeid_wl_x509svid *svid, struct tls_state **out,
                      const char **why);

struct cubeid_tls {
	int refs; /* __atomic: the caller's plus one per SSL_CTX */

	pthread_mutex_t lock; /* guards cur, err, why, gen */
	struct tls_state *cur;
	int err;
	char why[256];
	unsigned long gen;

	/* source */
	bool socket_mode;
	struct tls_file_src files;
	char *socket, *spiffe_id;
	long timeout_ms;

	/* policy */
	char **allow;
	size_t n_allow;
	bool tls12;

	/* watching */
	int inotify_fd;
	long check_interval_ms;
	struct tls_file_id tried[TLS_F_N]; /* files of the last attempt */
	pthread_mutex_t reload_lock;       /* one reload at a time */
	bool thread_started;
	pthread_t thread;
	volatile int stop;
	int wake[2];               /* pipe: stops the file thread's poll() */
	pthread_cond_t first_cond; /* socket mode: the first SVID arrived */
	unsigned long stream_msgs; /* __atomic: socket mode, messages received */

	cubeid_tls_reload_fn on_reload;
	void *on_reload_arg;
};

cubeid_tls *tls_ref(cubeid_tls *tls);
/* The current state, referenced (caller unrefs); NULL if none. */
struct tls_state *tls_current(cubeid_tls *tls);
/* Swap in s (takes the reference) or record an error (s NULL). */
void tls_install(cubeid_tls *tls, struct tls_state *s, int rc, const char *why);

/* Drop the current state (the source redacted it: Workload API 4.4,
 * 5.2.1) and record why; handshakes fail until a new state arrives. */
void tls_withdraw(cubeid_tls *tls, int rc, const char *why);

/* Socket source: start the thread and wait for the first SVID. */
int tls_socket_start(cubeid_tls *tls);

/* Copy a string into a buffer, always terminated. */
void tls_strlcpy(char *dst, const char *src, size_t size);

#endif
