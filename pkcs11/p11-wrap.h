/*
 * Key wrapping in the token, on raw blobs (pkcs11/p11-wrap.c): the layer
 * below the wrapped-key document of <cubeid/key-wrap.h>
 * (spiffe/key-wrap-doc.c), which adds the kids and the JSON.  Token work
 * only: nothing here knows JWK or JSON.
 */
#ifndef CUBEID_P11_WRAP_H
#define CUBEID_P11_WRAP_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>

#include <cubeid/token.h>

#define P11_WRAP_BLOB_MAX 8192 /* bytes of one wrapped blob */

/* The two blobs: the AES-256 transport key wrapped by the node's RSA key
 * (CKM_RSA_PKCS_OAEP), and the key wrapped by the AES key
 * (CKM_AES_KEY_WRAP_PAD).  Owned by the struct. */
struct p11_wrapped {
	uint8_t *cek, *wk;
	size_t cek_len, wk_len;
};
void p11_wrapped_clear(struct p11_wrapped *w);

/* Wrap key (RSA, on its token) for the node whose wrapping public key is
 * wrap_pub (RSA, 2048..8192 bits); the AES key is destroyed.  *out is
 * filled on success and zeroed on failure. */
int p11_key_wrap(cubeid_key *key, EVP_PKEY *wrap_pub, struct p11_wrapped *out);
/* Unwrap w with wrapkey (on the node's token) into a persistent,
 * non-extractable, sensitive signing key labelled label, with pub (RSA) as
 * its public object; a test signature checks that the halves match.
 * CUBEID_ERR_EXISTS if label is taken.  New key in *out. */
int p11_key_unwrap(cubeid_key *wrapkey, const struct p11_wrapped *w, EVP_PKEY *pub,
                   const char *label, cubeid_key **out);

#endif
