/*
 * cubeid JWS / JWT-SVID / JWKS, on OpenSSL and jansson.
 *
 * - JWS compact serialization (RFC 7515) with the JWT-SVID algorithm
 *   allow-list: RS256/384/512, ES256/384/512, PS256/384/512.  Everything else
 *   (none, HS*, EdDSA, unknown) is CUBEID_ERR_JWT_ALG before any other work.
 * - JWT-SVID validation (spiffe/spiffe standards/JWT-SVID.md).
 * - JWK / JWKS (RFC 7517, RFC 7518 section 6) and the SPIFFE bundle format
 *   (SPIFFE_Trust_Domain_and_Bundle.md section 4).
 *
 * Verification keys are EVP_PKEYs the caller parses once and keeps: nothing
 * on the verify path parses PEM or JSON keys.
 *
 * Conventions (docs/sdk.md, "Conventions"): functions return CUBEID_OK (0) or
 * a negative code; out parameters are set to NULL/0 on entry and filled only
 * on success; *_free(NULL) is a no-op.  "borrowed" results are owned by the
 * object they come from and live as long as it does.
 */
#ifndef CUBEID_JWT_H
#define CUBEID_JWT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>
#include <openssl/evp.h>

#include <cubeid/b64url.h>
#include <cubeid/error.h>
#include <cubeid/spiffe.h>
#include <cubeid/token.h>

#ifdef __cplusplus
extern "C" {
#endif

#define CUBEID_JWT_MAX       16384        /* bytes of a compact JWS, checked first */
#define CUBEID_JWS_SIG_MAX   1024         /* bytes of a signature (RSA-8192) */
#define CUBEID_JWKS_MAX      (256 * 1024) /* bytes of a JWKS or bundle document */
#define CUBEID_JWKS_MAX_KEYS 64           /* JWKs in one document or bundle */
#define CUBEID_RSA_MIN_BITS  2048
#define CUBEID_RSA_MAX_BITS  8192
#define CUBEID_KID_LEN       32 /* length of cubeid_kid_from_pkey()'s kid */

/* ---- base64: <cubeid/b64url.h> (common/b64url.c) ----------------- */

/* ---- algorithms ------------------------------------------------------ */

/* "ES256" ... for an allowed alg; NULL for CUBEID_SIG_NONE or unknown. */
const char *cubeid_jws_alg_name(cubeid_sig_alg alg);
/* The allowed alg named name (NUL-terminated); CUBEID_SIG_NONE for anything
 * else, including "none" and "HS256". */
cubeid_sig_alg cubeid_jws_alg_from_name(const char *name);
/* CUBEID_OK if pk can make/verify alg signatures: RS and PS need an RSA key
 * of 2048..8192 bits, ES256 a P-256 key, ES384 P-384, ES512 P-521.
 * CUBEID_ERR_JWT_ALG otherwise. */
int cubeid_jws_key_fits(cubeid_sig_alg alg, EVP_PKEY *pk);

/* ---- decoding and verifying (spiffe/jws.c) --------------------------- */

typedef struct cubeid_jws cubeid_jws;

/*
 * Split and decode a compact JWS token[0..len) (exactly three parts).
 * Order of checks: size (CUBEID_ERR_TOO_LARGE over CUBEID_JWT_MAX), shape
 * and base64url (CUBEID_ERR_JWT_MALFORMED), header: a JSON object with a
 * string alg from the allow-list (CUBEID_ERR_JWT_ALG), optional string kid
 * and typ, no crit (MALFORMED); claims: a JSON object (MALFORMED).  JSON with
 * duplicate member names is refused.  The signature is not checked here.
 * New object in *out; caller frees with cubeid_jws_free().
 */
int cubeid_jws_decode(const char *token, size_t len, cubeid_jws **out);
void cubeid_jws_free(cubeid_jws *jws);

cubeid_sig_alg cubeid_jws_alg(const cubeid_jws *jws);
const char *cubeid_jws_kid(const cubeid_jws *jws); /* borrowed; NULL if absent */
const char *cubeid_jws_typ(const cubeid_jws *jws); /* borrowed; NULL if absent */
json_t *cubeid_jws_header(const cubeid_jws *jws);  /* borrowed */
json_t *cubeid_jws_claims(const cubeid_jws *jws);  /* borrowed */
/* The bytes the signature covers ("header.claims"), borrowed. */
const uint8_t *cubeid_jws_signing_input(const cubeid_jws *jws, size_t *len);
/* The decoded signature, borrowed. */
const uint8_t *cubeid_jws_signature(const cubeid_jws *jws, size_t *len);

/*
 * Verify the signature with pk.  CUBEID_ERR_JWT_ALG if pk does not fit the
 * token's alg (see cubeid_jws_key_fits), CUBEID_ERR_JWT_SIGNATURE if the
 * signature is wrong (including an ES signature that is not exactly r||s of
 * the curve's size, or whose s is above half the curve order: ECDSA's
 * (r, n - s) verifies as well as (r, s), so only the low-S one of the two
 * is accepted, and one signature has one encoding).
 */
int cubeid_jws_verify(const cubeid_jws *jws, EVP_PKEY *pk);

/*
 * The same with flags.  CUBEID_JWS_ALLOW_HIGH_S accepts a high-S ES
 * signature too: for issuers whose signer does not normalise s (Keycloak's
 * Java ECDSA, Go's crypto/ecdsa: SPIRE, go-spiffe), half of whose valid
 * tokens are high-S.  A
 * caller that remembers tokens must then key on cubeid_jws_ecdsa_low_s()'s
 * canonical form of the signature.
 */
#define CUBEID_JWS_ALLOW_HIGH_S 0x1u
int cubeid_jws_verify_flags(const cubeid_jws *jws, EVP_PKEY *pk, unsigned flags);

/*
 * Make the raw r||s ES signature sig (alg's size) low-S in place: when
 * s > n/2 it becomes n - s.  Returns 1 if it changed, 0 if it was already
 * low-S, CUBEID_ERR_INVALID_ARG for a non-ES alg or a wrong length.
 * cubeid_jws_encode() applies it to every ES signature it writes.
 */
int cubeid_jws_ecdsa_low_s(cubeid_sig_alg alg, uint8_t *sig, size_t sig_len);

/* ---- encoding -------------------------------------------------------- */

/*
 * A signer: sign in[0..in_len) with alg (hashing it itself), write the JWS
 * signature (raw r||s for ECDSA) to sig, whose size is *sig_len on entry;
 * set *sig_len to the signature length.  Return 0 or a negative code.  Same
 * contract as cubeid_key_sign(), which can be passed with a cubeid_key as ctx.
 */
typedef int (*cubeid_jws_sign_fn)(void *ctx, cubeid_sig_alg alg, const uint8_t *in, size_t in_len,
                                  uint8_t *sig, size_t *sig_len);

/* A cubeid_jws_sign_fn for a software key: ctx is an EVP_PKEY * holding a
 * private key.  ES signatures come out low-S. */
int cubeid_jws_sign_evp(void *ctx, cubeid_sig_alg alg, const uint8_t *in, size_t in_len,
                        uint8_t *sig, size_t *sig_len);
/* A cubeid_jws_sign_fn for a token key: ctx is a cubeid_key *. */
int cubeid_jws_sign_key(void *ctx, cubeid_sig_alg alg, const uint8_t *in, size_t in_len,
                        uint8_t *sig, size_t *sig_len);

/*
 * Encode header {"alg","kid"(if kid),"typ"(if typ)} and claims (a JSON
 * object, dumped compact), and sign them with sign(ctx, ...).  New
 * NUL-terminated token in *out; caller frees.
 */
int cubeid_jws_encode(cubeid_sig_alg alg, const char *kid, const char *typ, const json_t *claims,
                      cubeid_jws_sign_fn sign, void *ctx, char **out);

/* ---- JWT bundles: kid -> key (spiffe/jwks.c) ------------------------- */

typedef struct cubeid_jwt_bundle cubeid_jwt_bundle;

/* An empty bundle for trust domain td (a bare name, validated). */
int cubeid_jwt_bundle_new(const char *td, cubeid_jwt_bundle **out);
void cubeid_jwt_bundle_free(cubeid_jwt_bundle *b);
const char *cubeid_jwt_bundle_trust_domain(const cubeid_jwt_bundle *b); /* borrowed */
/*
 * Add pk under kid; the bundle takes its own reference on pk.
 * CUBEID_ERR_EXISTS for a kid already present, CUBEID_ERR_TOO_LARGE past
 * CUBEID_JWKS_MAX_KEYS, CUBEID_ERR_JWKS for a key no JWT-SVID alg can use.
 * A bundle is not locked: build it, then share it read-only between threads
 * (replace it as a whole to rotate keys).
 */
int cubeid_jwt_bundle_add(cubeid_jwt_bundle *b, const char *kid, EVP_PKEY *pk);
/* Remove kid; CUBEID_ERR_NOT_FOUND if absent. */
int cubeid_jwt_bundle_remove(cubeid_jwt_bundle *b, const char *kid);
/* The key for kid (borrowed), NULL if none. */
EVP_PKEY *cubeid_jwt_bundle_find(const cubeid_jwt_bundle *b, const char *kid);
size_t cubeid_jwt_bundle_count(const cubeid_jwt_bundle *b);
/* The i-th kid / key (borrowed), NULL past the end. */
const char *cubeid_jwt_bundle_kid_at(const cubeid_jwt_bundle *b, size_t i);
EVP_PKEY *cubeid_jwt_bundle_key_at(const cubeid_jwt_bundle *b, size_t i);

/*
 * Parse a JWKS document json[0..len) into a JWT bundle for td.  Keys whose
 * use is "enc", or any use other than "sig" / "jwt-svid" / absent, and keys
 * of unknown kty are skipped; a key of a known kty that is malformed, a
 * missing kid, or a duplicate kid fails the whole document (CUBEID_ERR_JWKS).
 * At most CUBEID_JWKS_MAX bytes (else CUBEID_ERR_TOO_LARGE) and
 * CUBEID_JWKS_MAX_KEYS keys.
 */
int cubeid_jwt_bundle_parse_jwks(const char *td, const char *json, size_t len,
                                 cubeid_jwt_bundle **out);
/* {"keys":[...]} with use "jwt-svid" and the kid on every key; new
 * NUL-terminated string (caller frees), *len optional. */
int cubeid_jwt_bundle_to_jwks(const cubeid_jwt_bundle *b, char **out, size_t *len);

/* ---- JWKs ------------------------------------------------------------ */

/*
 * One public JWK for pk: EC (P-256/P-384/P-521: kty, crv, x, y) or RSA (kty,
 * n, e), plus "kid" and "use" when they are not NULL.  New object in *out
 * (caller json_decref()s).  CUBEID_ERR_UNSUPPORTED for other key types.
 */
int cubeid_jwk_from_pkey(EVP_PKEY *pk, const char *kid, const char *use, json_t **out);
/*
 * The public key of one JWK object, strictly checked: EC coordinates exactly
 * the curve's size and the point on the curve; RSA n without leading zero
 * bytes and of CUBEID_RSA_MIN_BITS..CUBEID_RSA_MAX_BITS, e odd and > 1.
 * A JWK with "d" (a private key) is refused.  CUBEID_ERR_UNSUPPORTED for a
 * kty or crv we do not handle, CUBEID_ERR_JWKS for a malformed key.  New key
 * in *out; caller frees.
 */
int cubeid_jwk_to_pkey(const json_t *jwk, EVP_PKEY **out);
/* base64url(SHA-256(SubjectPublicKeyInfo DER)) cut to CUBEID_KID_LEN chars,
 * NUL-terminated in out. */
int cubeid_kid_from_pkey(EVP_PKEY *pk, char out[CUBEID_KID_LEN + 1]);
/* The public half of a token key as one JWK (kty, crv/x/y or n/e, and the
 * kid of cubeid_kid_from_pkey()): compact JSON, NUL-terminated, in *out
 * (caller frees), *len bytes not counting the NUL. */
int cubeid_key_export_jwk(const cubeid_key *key, uint8_t **out, size_t *len);

/* ---- SPIFFE bundles (spiffe/bundle.c) -------------------------------- */

typedef struct cubeid_spiffe_bundle cubeid_spiffe_bundle;

int cubeid_spiffe_bundle_new(const char *td, cubeid_spiffe_bundle **out);
void cubeid_spiffe_bundle_free(cubeid_spiffe_bundle *b);
const char *cubeid_spiffe_bundle_trust_domain(const cubeid_spiffe_bundle *b); /* borrowed */
/* Add an X.509 authority (a CA certificate, DER); the bytes are copied.
 * CUBEID_ERR_X509 if they are not exactly one certificate, or if its key is
 * not one a JWK here can carry (EC P-256/P-384/P-521, RSA 2048..8192). */
int cubeid_spiffe_bundle_add_x509_der(cubeid_spiffe_bundle *b, const uint8_t *der, size_t len);
size_t cubeid_spiffe_bundle_x509_count(const cubeid_spiffe_bundle *b);
/* The i-th authority's DER (borrowed), NULL past the end. */
const uint8_t *cubeid_spiffe_bundle_x509_at(const cubeid_spiffe_bundle *b, size_t i, size_t *len);
/* The JWT authorities (borrowed; add keys to it directly). */
cubeid_jwt_bundle *cubeid_spiffe_bundle_jwt(cubeid_spiffe_bundle *b);
void cubeid_spiffe_bundle_set_sequence(cubeid_spiffe_bundle *b, uint64_t seq);
void cubeid_spiffe_bundle_set_refresh_hint(cubeid_spiffe_bundle *b, int64_t seconds);
/* False when the bundle has no such member. */
bool cubeid_spiffe_bundle_sequence(const cubeid_spiffe_bundle *b, uint64_t *seq);
bool cubeid_spiffe_bundle_refresh_hint(const cubeid_spiffe_bundle *b, int64_t *seconds);
/*
 * The SPIFFE bundle document: {"keys":[x509-svid JWKs with x5c (no kid),
 * jwt-svid JWKs with kid], "spiffe_sequence":N, "spiffe_refresh_hint":N}.
 * New NUL-terminated string (caller frees), *len optional.
 */
int cubeid_spiffe_bundle_emit(const cubeid_spiffe_bundle *b, char **out, size_t *len);
/*
 * Parse a SPIFFE bundle document for td.  Per the spec, JWKs with a missing
 * or unknown use, or an unknown kty, are skipped, as are x509-svid entries
 * without x5c; a jwt-svid key without kid, a duplicate kid, a malformed key
 * or certificate fails the document (CUBEID_ERR_JWKS).  Size and key limits
 * as for cubeid_jwt_bundle_parse_jwks().
 */
int cubeid_spiffe_bundle_parse(const char *td, const char *json, size_t len,
                               cubeid_spiffe_bundle **out);

/* ---- JWT-SVIDs ------------------------------------------------------- */

/*
 * Validate a JWT-SVID (JWT-SVID.md): decode; typ, if present, is "JWT" or
 * "JOSE" (else CUBEID_ERR_JWT_MALFORMED); kid present and in bundle
 * (CUBEID_ERR_JWT_KID); the signature verifies; exp present
 * (CUBEID_ERR_JWT_CLAIM) and now < exp + leeway (CUBEID_ERR_JWT_EXPIRED);
 * nbf, if present, <= now + leeway (CUBEID_ERR_JWT_NOT_YET); aud present, a
 * string or an array of strings, containing audience
 * (CUBEID_ERR_JWT_AUDIENCE); sub a valid SPIFFE ID in the bundle's trust
 * domain, not the trust domain's own ID (CUBEID_ERR_JWT_CLAIM); iat and the
 * lifetime as in cubeid_jwt_svid_validate_opts(), at most 24 h.
 * now is seconds since the epoch, 0 for the current time.
 * On success *id (optional) gets the subject (caller frees) and *claims
 * (optional) a new reference to the claims (caller json_decref()s).
 */
int cubeid_jwt_svid_validate(const char *token, size_t len, const cubeid_jwt_bundle *bundle,
                             const char *audience, int64_t now, unsigned leeway,
                             cubeid_spiffe_id **id, json_t **claims);

/*
 * The same with options.  Beyond the checks above: iat, if present, a
 * number (CUBEID_ERR_JWT_CLAIM) and <= now + leeway (CUBEID_ERR_JWT_NOT_YET);
 * the lifetime exp - iat (exp - now - leeway without iat) at most
 * max_lifetime (CUBEID_ERR_JWT_CLAIM).  cubeid_jwt_svid_validate() is this
 * with max_lifetime 0 and low_s_only false.
 *
 * ES signatures: JWT-SVIDs come from other issuers too (SPIRE, go-spiffe),
 * which sign with Go's crypto/ecdsa and leave s high in half of their
 * tokens, so a high-S signature is accepted unless low_s_only is set.
 * Nothing here remembers tokens; a caller that does must key on the
 * canonical signature (cubeid_jws_ecdsa_low_s()).  What cubeid signs is
 * always low-S.
 */
#define CUBEID_JWT_SVID_MAX_LIFETIME_DEFAULT 86400 /* seconds: 24 h */
struct cubeid_jwt_svid_opts {
	int64_t now;           /* seconds since the epoch; 0: the current time */
	unsigned leeway;       /* clock skew allowed on exp, nbf and iat, seconds */
	unsigned max_lifetime; /* longest exp - iat accepted, seconds; 0: the default */
	bool low_s_only;       /* refuse high-S ES signatures (see below) */
};
int cubeid_jwt_svid_validate_opts(const char *token, size_t len, const cubeid_jwt_bundle *bundle,
                                  const char *audience, const struct cubeid_jwt_svid_opts *o,
                                  cubeid_spiffe_id **id, json_t **claims);

/*
 * Encode and sign a JWT-SVID: header {alg, kid, typ:"JWT"}, claims {sub,
 * aud (a string for one audience, else an array), iat: now, exp: now + ttl,
 * jti (if not NULL)}.  n_aud >= 1, ttl >= 1.  now 0 means the current time.
 * New token in *out; caller frees.
 */
int cubeid_jwt_svid_encode(cubeid_sig_alg alg, const char *kid, const cubeid_spiffe_id *sub,
                           const char *const *aud, size_t n_aud, int64_t now, unsigned ttl,
                           const char *jti, cubeid_jws_sign_fn sign, void *ctx, char **out);
/* The same, signed in the token by key (cubeid_key_sign()), at the current
 * time. */
int cubeid_jwt_svid_mint(cubeid_key *key, cubeid_sig_alg alg, const char *kid,
                         const cubeid_spiffe_id *sub, const char *const *aud, size_t n_aud,
                         unsigned ttl, const char *jti, char **out);

#ifdef __cplusplus
}
#endif
#endif
