/*
 * Helpers for the TLS loader's tests and bench/tls: SVIDs minted into
 * files, an AtomicWriter-style directory (..data symlink swaps), plain
 * OpenSSL peers, and an in-process handshake over a BIO pair that reports
 * both sides' results.
 */
#ifndef CUBEID_TLS_TEST_UTIL_H
#define CUBEID_TLS_TEST_UTIL_H

#include <stdbool.h>

#include <openssl/ssl.h>

#include <cubeid/ca.h>
#include <cubeid/x509svid.h>

struct ttu_paths {
	char *cert, *key, *ca;
};

/* Mint an exportable SVID for id (the key in tok) and write svid.pem,
 * svid_key.pem and svid_bundle.pem into dir; p gets their paths. */
void ttu_mint_files(cubeid_ca *ca, cubeid_token *tok, const char *id, const char *dir,
                    struct ttu_paths *p);
void ttu_paths_free(struct ttu_paths *p);
/* Mint an exportable SVID for id (caller frees). */
cubeid_x509_svid *ttu_mint(cubeid_ca *ca, cubeid_token *tok, const char *id);

/*
 * Write svid's chain, key and bundle_pem into dir the way Kubernetes'
 * AtomicWriter does: a new timestamped directory, a "..data" symlink
 * swapped to it by rename, and svid.pem, svid_key.pem, svid_bundle.pem as
 * symlinks through ..data.  cert_pem / key_pem (optional) replace the
 * chain or the key (to write broken sets).
 */
void ttu_atomic_write(const char *dir, const cubeid_x509_svid *svid, const char *bundle_pem,
                      const char *cert_pem, const char *key_pem);

/* Write leaf and key (PKCS#8) to dir/cert.pem and dir/key.pem. */
void ttu_write_cert_key(const char *dir, X509 *leaf, EVP_PKEY *key, char **cert, char **keyp);
/* A plain OpenSSL client context (TLS 1.3) that presents cert/key when
 * given and does not verify the server. */
SSL_CTX *ttu_plain_client_ctx(const char *cert, const char *key, const char *ca);
/* The same as a server that requires and verifies a client certificate
 * against ca with OpenSSL's own chain verification (bench baseline). */
SSL_CTX *ttu_plain_server_ctx(const char *cert, const char *key, const char *ca);

struct ttu_hs {
	bool connected; /* both handshakes done and a message each way */
	int client_rc, server_rc;
	char client_why[400], server_why[400];
	char client_peer[256], server_peer[256]; /* SPIFFE IDs each side saw */
	char server_serial[80];                  /* the server's certificate */
	int version;
};

/* One full handshake from a client on c to a server on s. */
void ttu_handshake(SSL_CTX *c, SSL_CTX *s, struct ttu_hs *r);
/* The same, quickly and without the reports (bench): true if connected. */
bool ttu_handshake_quick(SSL_CTX *c, SSL_CTX *s);

/* A certificate's serial as hex (caller frees). */
char *ttu_serial_hex(X509 *x);

#endif
