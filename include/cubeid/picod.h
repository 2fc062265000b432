/*
 * PicoD tokens (AgentCube's JWT mode), in libcubeid.
 *
 * The Router side asks the node's cubeid-agent to sign a token
 * (cubeid_picod_fetch_token(): the cubeid.picod.v1.PicoD/MintToken method
 * on the agent's socket) and sends it as "Authorization: Bearer <jwt>".
 * The PicoD side checks it with a cubeid_picod_verifier.
 *
 * A token (docs/picod.md):
 *   header  {"alg":"RS256"|"ES256","kid":KID,"typ":"JWT"}
 *   claims  iss (default "agentcube-router"), iat, exp (iat + at most 300 s),
 *           session_id, user_sub and user_email when given — today's
 *           claims, so an unchanged PicoD accepts it — plus
 *           aud "picod:<namespace>/<sandbox>", sub (the Router's SPIFFE
 *           ID) and jti, which a verifier that checks them uses to stop
 *           cross-sandbox replay.
 *
 * Conventions as everywhere: 0 or a negative CUBEID_ERR_* code, *out = NULL
 * on entry, *_free(NULL) is a no-op.
 */
#ifndef CUBEID_PICOD_H
#define CUBEID_PICOD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>

#include <cubeid/error.h>
#include <cubeid/jwt.h>
#include <cubeid/token.h>
#include <cubeid/workloadapi.h>

#ifdef __cplusplus
extern "C" {
#endif

#define CUBEID_PICOD_ISSUER_DEFAULT    "agentcube-router"
#define CUBEID_PICOD_TTL_MAX           300 /* seconds: today's PicoD tokens live 5 min */
#define CUBEID_PICOD_LEEWAY_DEFAULT    60  /* seconds: PicoD's jwt.WithLeeway(time.Minute) */
#define CUBEID_PICOD_AUD_PREFIX        "picod:"
#define CUBEID_PICOD_NAMESPACE_DEFAULT "default"
#define CUBEID_PICOD_SESSION_MAX       256 /* bytes of session_id */
#define CUBEID_PICOD_USER_MAX          512 /* bytes of user_sub / user_email */
#define CUBEID_PICOD_PEM_MAX           (16 * 1024)
#define CUBEID_PICOD_ENV_PUBLIC_KEY    "PICOD_AUTH_PUBLIC_KEY"

/* gRPC paths on the agent's socket */
#define CUBEID_PICOD_MINT_PATH   "/cubeid.picod.v1.PicoD/MintToken"
#define CUBEID_PICOD_PUBKEY_PATH "/cubeid.picod.v1.PicoD/PublicKey"
#define CUBEID_PICOD_ROTATE_PATH "/cubeid.picod.v1.PicoD/RotateKey"

/* ---- names (picod/picod-claims.c) ----------------------------------- */

/* True for a Kubernetes object name: a DNS-1123 subdomain (lower-case
 * alphanumerics, '-' and '.', starting and ending alphanumeric, 1..253). */
bool cubeid_picod_name_ok(const char *name);
/* True for a namespace: a DNS-1123 label (1..63, no '.'). */
bool cubeid_picod_namespace_ok(const char *ns);
/* "picod:<ns>/<sandbox>" (ns NULL or "" = "default"); CUBEID_ERR_INVALID_ARG
 * for a bad name.  New string in *out; caller frees. */
int cubeid_picod_audience(const char *ns, const char *sandbox, char **out);

/* ---- minting (picod/picod-claims.c) --------------------------------- */

struct cubeid_picod_claims_in {
	const char *issuer;     /* NULL: CUBEID_PICOD_ISSUER_DEFAULT */
	const char *sub;        /* the caller's SPIFFE ID (required) */
	const char *aud;        /* from cubeid_picod_audience() (required) */
	const char *session_id; /* required, 1..CUBEID_PICOD_SESSION_MAX bytes */
	const char *user_sub;   /* NULL or "": left out */
	const char *user_email; /* NULL or "": left out */
	const char *jti;        /* required */
	int64_t iat;            /* seconds since the epoch */
	int64_t ttl;            /* 1..CUBEID_PICOD_TTL_MAX */
};
/* Check the inputs and sign the token with sign(ctx) (see
 * cubeid_jws_encode()).  CUBEID_ERR_INVALID_ARG for a missing or
 * oversized field.  New token in *out; caller frees. */
int cubeid_picod_token_encode(const struct cubeid_picod_claims_in *in, cubeid_sig_alg alg,
                              const char *kid, cubeid_jws_sign_fn sign, void *ctx, char **out);

/* ---- the Router side: ask the agent (picod/picod-client.c) ---------- */

struct cubeid_picod_token_req {
	const char *session_id; /* required */
	const char *sandbox;    /* required */
	const char *ns;         /* NULL: "default" */
	const char *user_sub;   /* optional */
	const char *user_email; /* optional */
	int64_t ttl;            /* 0: the agent's lifetime */
	const char *spiffe_id;  /* NULL: the caller's first identity allowed to mint */
};
struct cubeid_picod_token {
	char *token;
	char *kid;
	char *aud;
	char *jti;
	char *spiffe_id;
	int64_t iat, exp;
	bool cached; /* the agent served it from its cache */
};
/* MintToken on the agent's socket (o as for the Workload API client).
 * PermissionDenied (the caller may not mint PicoD tokens) is
 * CUBEID_ERR_PERMISSION.  *out is the caller's (token wiped when freed). */
int cubeid_picod_fetch_token(const struct cubeid_wl_opts *o, const struct cubeid_picod_token_req *r,
                             struct cubeid_picod_token **out, struct cubeid_wl_status *st);
void cubeid_picod_token_free(struct cubeid_picod_token *t);

struct cubeid_picod_pubkey {
	char *kid;
	char *alg;
	char *pem;  /* exactly what goes into PICOD_AUTH_PUBLIC_KEY */
	char *jwks; /* every published PicoD key */
};
int cubeid_picod_fetch_public_key(const struct cubeid_wl_opts *o, struct cubeid_picod_pubkey **out,
                                  struct cubeid_wl_status *st);
void cubeid_picod_pubkey_free(struct cubeid_picod_pubkey *k);
/* RotateKey: key_type NULL = rsa-2048; prepublish 0 = the lifetime cap,
 * -1 = sign with the new key at once.  *kid and *active_from optional. */
int cubeid_picod_rotate_key(const struct cubeid_wl_opts *o, const char *key_type,
                            int64_t prepublish, char **kid, int64_t *active_from,
                            struct cubeid_wl_status *st);

/* ---- the PicoD side: the verifier (picod/picod-verify.c) ------------ */

/*
 * Where the verifier's keys come from: return a new reference to the key
 * for (kid, alg) in *out (kid NULL when the token has none), or
 * CUBEID_ERR_JWT_KID.  Called on every verification, from any thread.
 * Built-in sources: one PEM key (PICOD_AUTH_PUBLIC_KEY) and a JWKS; a
 * cluster-wide store can plug in its own.
 */
typedef int (*cubeid_picod_key_fn)(void *ctx, const char *kid, cubeid_sig_alg alg, EVP_PKEY **out);

/* Allowed algs, as a bit mask of (1u << cubeid_sig_alg). */
#define CUBEID_PICOD_ALG_BIT(a) (1u << (unsigned)(a))
#define CUBEID_PICOD_ALGS_DEFAULT                                                                  \
	(CUBEID_PICOD_ALG_BIT(CUBEID_SIG_RSA_PKCS1_SHA256) |                                       \
	 CUBEID_PICOD_ALG_BIT(CUBEID_SIG_ECDSA_SHA256))

struct cubeid_picod_verifier_opts {
	/* this sandbox: the token's aud must be "picod:<ns>/<sandbox>"; with
	 * sandbox NULL aud is not checked (today's PicoD; NOT replay-safe) */
	const char *ns;
	const char *sandbox;
	const char *session_id; /* when not NULL, session_id must equal it */
	const char *issuer;     /* when not NULL, iss must equal it */
	unsigned algs;          /* 0: CUBEID_PICOD_ALGS_DEFAULT (RS256, ES256) */
	int leeway;             /* seconds for exp/iat/nbf; < 0: the default 60 */
	int64_t max_lifetime; /* exp - iat at most this; 0: CUBEID_PICOD_TTL_MAX; < 0: unchecked */
	/* when not NULL, sub must be this SPIFFE ID (the Router's): a token
	 * the agent signed for another workload is CUBEID_ERR_FORBIDDEN */
	const char *sub;
};

typedef struct cubeid_picod_verifier cubeid_picod_verifier;

int cubeid_picod_verifier_new(const struct cubeid_picod_verifier_opts *o,
                              cubeid_picod_verifier **out);
void cubeid_picod_verifier_free(cubeid_picod_verifier *v);
/* Key sources; each replaces the previous one (thread-safe: verifications
 * in flight finish with the old keys).  PEM: one SubjectPublicKeyInfo
 * ("PUBLIC KEY", RSA 2048..8192 or EC P-256), tried whatever the token's
 * kid, as PicoD does.  JWKS: keys looked up by kid (a token without kid
 * works only when the set holds one key). */
int cubeid_picod_verifier_set_pem(cubeid_picod_verifier *v, const char *pem, size_t len);
int cubeid_picod_verifier_set_jwks(cubeid_picod_verifier *v, const char *json, size_t len);
/* The cluster's PicoD keys from a JWKS file (cubeid-agent's
 * cluster.picod_jwks_file, or a mounted ConfigMap; docs/cluster.md): any
 * current PicoD key of any node.  The file is re-read when it changes
 * (checked at most once a second, and at once for an unknown kid); when it
 * becomes unreadable or malformed the last good keys stay.  The first read
 * must succeed (picod/picod-jwks-file.c). */
int cubeid_picod_verifier_set_jwks_file(cubeid_picod_verifier *v, const char *path);
/* fn/ctx stay the caller's; free_ctx (may be NULL) runs when replaced. */
int cubeid_picod_verifier_set_source(cubeid_picod_verifier *v, cubeid_picod_key_fn fn, void *ctx,
                                     void (*free_ctx)(void *));

/* What a verified token says (strings owned by the struct). */
struct cubeid_picod_verified {
	char *sub; /* NULL when absent */
	char *session_id;
	char *user_sub;   /* NULL when absent */
	char *user_email; /* NULL when absent */
	char *iss;
	char *jti; /* NULL when absent */
	char *kid; /* NULL when absent */
	int64_t iat, exp;
};
void cubeid_picod_verified_free(struct cubeid_picod_verified *c);

/*
 * Check an Authorization header value ("Bearer <jwt>"; the scheme is
 * matched case-sensitively, as PicoD does) or a bare token.  Order: the
 * header shape (CUBEID_ERR_UNAUTHENTICATED), the JWS and its alg against
 * the allow-list (CUBEID_ERR_JWT_MALFORMED / CUBEID_ERR_JWT_ALG: none, HS*
 * and everything not allowed), the key (CUBEID_ERR_JWT_KID), the signature
 * (CUBEID_ERR_JWT_SIGNATURE), exp required and now <= exp + leeway
 * (CUBEID_ERR_JWT_EXPIRED), iat required and <= now + leeway
 * (CUBEID_ERR_JWT_NOT_YET), nbf, the lifetime, iss (CUBEID_ERR_JWT_ISSUER),
 * aud (CUBEID_ERR_JWT_AUDIENCE: the token is for another sandbox),
 * session_id (CUBEID_ERR_PICOD_SESSION), sub when configured
 * (CUBEID_ERR_FORBIDDEN).  Claims of the wrong type are
 * CUBEID_ERR_JWT_CLAIM.  now 0 = the current time.  *out optional.
 */
int cubeid_picod_verify_header(cubeid_picod_verifier *v, const char *authorization, int64_t now,
                               struct cubeid_picod_verified **out);
int cubeid_picod_verify_token(cubeid_picod_verifier *v, const char *token, size_t len, int64_t now,
                              struct cubeid_picod_verified **out);

#ifdef __cplusplus
}
#endif
#endif
