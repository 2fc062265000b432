/*
 * One key in several tokens, never in clear outside a token
 * (pkcs11/p11-wrap.c; docs/cluster.md, "Single cluster PicoD key").
 *
 * Today's PicoD trusts exactly one public key, so in a cluster every node
 * must sign PicoD tokens with the same private key.  That key is generated
 * in an enrolment token and copied into each node's token with
 * C_WrapKey/C_UnwrapKey:
 *
 *   1. node:        cubeid_wrapping_key_generate(): an RSA-3072 key pair in
 *                   the node's token whose private half can only unwrap
 *                   (CKA_UNWRAP, sensitive, non-extractable); its public key
 *                   goes to the enrolment holder.
 *   2. enrolment:   cubeid_cluster_key_generate(): the cluster key (RSA-2048,
 *                   RS256) in the enrolment token, sensitive (never readable)
 *                   but extractable, so that it can be wrapped.
 *                   cubeid_key_wrap_for(): inside the enrolment token, a
 *                   fresh AES-256 session key wraps the cluster key
 *                   (CKM_AES_KEY_WRAP_PAD) and the node's RSA public key
 *                   wraps the AES key (CKM_RSA_PKCS_OAEP with SHA-1 and MGF1-SHA-1, the
 *                   only OAEP SoftHSM2 2.6 offers; OAEP needs no collision
 *                   resistance); the AES
 *                   key is destroyed.  Out comes a JSON document holding
 *                   both wrapped blobs and the cluster key's public key.
 *   3. node:        cubeid_key_unwrap_import(): inside the node's token, the
 *                   wrapping key unwraps the AES key (a session object) and
 *                   the AES key unwraps the cluster key as a persistent
 *                   private key, CKA_SENSITIVE=true, CKA_EXTRACTABLE=false;
 *                   the public object is created from the document; a test
 *                   signature checks that the two halves match.
 *
 * Tokens without C_WrapKey/C_UnwrapKey or the mechanisms (tpm2-pkcs11 1.9)
 * give CUBEID_ERR_UNSUPPORTED: such a node uses the JWKS-aware verifier.
 * The token work is pkcs11/p11-wrap.c; the document (kids, JSON) is
 * spiffe/key-wrap-doc.c.  Conventions as in <cubeid/token.h>.
 */
#ifndef CUBEID_KEY_WRAP_H
#define CUBEID_KEY_WRAP_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>

#include <cubeid/error.h>
#include <cubeid/token.h>

#ifdef __cplusplus
extern "C" {
#endif

#define CUBEID_WRAPPED_MAX (64 * 1024) /* bytes of a wrapped-key document */

/* Steps 1 and 2 generate their keys with cubeid_wrapping_key_generate()
 * and cubeid_cluster_key_generate() of <cubeid/token.h>. */
/* Step 2: wrap key (on its token) for the node whose wrapping public key is
 * wrap_pub (RSA, 2048..8192 bits).  New NUL-terminated JSON in *out. */
int cubeid_key_wrap_for(cubeid_key *key, EVP_PKEY *wrap_pub, char **out);
/* Step 3: unwrap doc[0..len) with wrapkey (on the node's token) into a
 * persistent, non-extractable, sensitive signing key labelled label.  The
 * document must be for wrapkey (its kid).  New key in *out. */
int cubeid_key_unwrap_import(cubeid_key *wrapkey, const char *doc, size_t len, const char *label,
                             cubeid_key **out);

/* The parsed document (for tools and fuzzing): the cluster key's public
 * key and kid, and the wrapping key's kid.  Strings and pub are the
 * caller's. */
struct cubeid_wrapped_info {
	char *kid;          /* the cluster key's */
	char *wrapping_kid; /* the node wrapping key's */
	EVP_PKEY *pub;
};
int cubeid_wrapped_parse(const char *doc, size_t len, struct cubeid_wrapped_info *info);
void cubeid_wrapped_info_clear(struct cubeid_wrapped_info *info);

#ifdef __cplusplus
}
#endif
#endif
