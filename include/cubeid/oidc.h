/*
 * cubeid OIDC / Keycloak (keycloak/): verify Keycloak access tokens with a
 * JWKS cache and a role policy, get tokens without shared secrets, exchange
 * them (RFC 8693), and resource-level access control (RLAC) helpers.
 *
 * All HTTP goes through libcurl, all JSON through jansson.  Every document
 * read from the network has a hard size limit (CUBEID_OIDC_HTTP_MAX).
 *
 * Conventions as in <cubeid/jwt.h>: functions return CUBEID_OK (0) or a
 * negative code; out parameters are set to NULL/0 on entry and filled only
 * on success; *_free(NULL) is a no-op.  Times are seconds since the epoch;
 * `now` 0 means the current time.
 */
#ifndef CUBEID_OIDC_H
#define CUBEID_OIDC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include <cubeid/error.h>
#include <cubeid/jwt.h>

#ifdef __cplusplus
extern "C" {
#endif

#define CUBEID_OIDC_HTTP_MAX       (1024 * 1024) /* bytes of any HTTP reply body */
#define CUBEID_OIDC_DISCOVERY_MAX  (64 * 1024)   /* bytes of a discovery document */
#define CUBEID_OIDC_POLICY_MAX     (64 * 1024)   /* bytes of a policy table */
#define CUBEID_OIDC_POLICY_RULES   256           /* rules in a policy table */
#define CUBEID_OIDC_ROLES_MAX      256           /* roles read from one token */
#define CUBEID_OIDC_ASSERTION_TTL  60            /* client assertions, seconds */
#define CUBEID_OIDC_SPIFFE_TTL_MAX 300           /* Keycloak's limit for jwt-spiffe */

#define CUBEID_OIDC_GRANT_TOKEN_EXCHANGE "urn:ietf:params:oauth:grant-type:token-exchange"
#define CUBEID_OIDC_TOKEN_TYPE_ACCESS    "urn:ietf:params:oauth:token-type:access_token"
#define CUBEID_OIDC_ASSERTION_JWT_BEARER "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
#define CUBEID_OIDC_ASSERTION_SPIFFE     "urn:ietf:params:oauth:client-assertion-type:jwt-spiffe"

/* ---- issuer and discovery (keycloak/discovery.c) ------------------- */

/* BASE/realms/REALM (base without a trailing '/'); REALM must be a plain
 * name (letters, digits, '-', '_', '.').  New string; caller frees. */
int cubeid_oidc_keycloak_issuer(const char *base_url, const char *realm, char **out);

typedef struct cubeid_oidc_discovery {
	char *issuer;
	char *jwks_uri;
	char *token_endpoint;
} cubeid_oidc_discovery;

/*
 * Parse an OpenID Provider configuration (OIDC Discovery 1.0, section 3):
 * a JSON object with string members issuer, jwks_uri, token_endpoint, each
 * an http(s) URL.  If expected_issuer is not NULL, issuer must equal it
 * exactly (CUBEID_ERR_JWT_ISSUER).  CUBEID_ERR_TOO_LARGE past
 * CUBEID_OIDC_DISCOVERY_MAX, CUBEID_ERR_PARSE for anything else malformed.
 */
int cubeid_oidc_discovery_parse(const char *json, size_t len, const char *expected_issuer,
                                cubeid_oidc_discovery **out);
/* GET ISSUER/.well-known/openid-configuration and parse it. */
int cubeid_oidc_discover(const char *issuer, cubeid_oidc_discovery **out);
void cubeid_oidc_discovery_free(cubeid_oidc_discovery *d);

/* ---- verifying access tokens (keycloak/verifier.c) ----------------- */

struct cubeid_oidc_verifier_opts {
	const char *issuer;   /* required: iss must equal it */
	const char *jwks_uri; /* NULL: from discovery (at the first fetch) */
	/* aud must hold one of these; none given: aud is not checked */
	const char *const *audiences;
	size_t n_audiences;
	const char *azp;          /* NULL: azp is not checked */
	const char *client_roles; /* also read resource_access.<this>.roles */
	unsigned leeway;          /* for exp, nbf, iat; 0 = 60 s */
	int64_t refresh_interval; /* periodic JWKS refresh; 0 = 300 s */
	int64_t min_refresh_gap;  /* fetches at most this often (unknown kid);
	                             0 = 10 s */
	int64_t max_stale;        /* keys stay in use this long past the last
	                             successful fetch when the server is down;
	                             0 = 3600 s */
	long http_timeout_ms;     /* 0 = 10000 */
};

typedef struct cubeid_oidc_verifier cubeid_oidc_verifier;

/* A verifier (no network yet; keys are fetched on first use).  The strings
 * in opts are copied.  Thread-safe: verify from any number of threads. */
int cubeid_oidc_verifier_new(const struct cubeid_oidc_verifier_opts *opts,
                             cubeid_oidc_verifier **out);
void cubeid_oidc_verifier_free(cubeid_oidc_verifier *v);
/* Fetch the JWKS now (discovery first if needed). */
int cubeid_oidc_verifier_refresh(cubeid_oidc_verifier *v, int64_t now);
/* Install a JWKS document as if fetched at now (tests, bench, offline). */
int cubeid_oidc_verifier_set_jwks(cubeid_oidc_verifier *v, const char *json, size_t len,
                                  int64_t now);
/* Fetches attempted and keys in the cache (for tests and metrics). */
unsigned long cubeid_oidc_verifier_fetches(const cubeid_oidc_verifier *v);
/* Verifications answered from the verified-token cache (see below). */
unsigned long cubeid_oidc_verifier_cache_hits(const cubeid_oidc_verifier *v);
size_t cubeid_oidc_verifier_key_count(const cubeid_oidc_verifier *v);

typedef struct cubeid_oidc_claims cubeid_oidc_claims;

/*
 * Verify a compact JWS access token: alg in the JWS allow-list (RS, ES, PS;
 * CUBEID_ERR_JWT_ALG), kid known (CUBEID_ERR_JWT_KID; an unknown kid
 * triggers a rate-limited refresh), the signature (CUBEID_ERR_JWT_SIGNATURE),
 * iss (CUBEID_ERR_JWT_ISSUER), exp required and now < exp + leeway
 * (CUBEID_ERR_JWT_EXPIRED), nbf and iat not after now + leeway
 * (CUBEID_ERR_JWT_NOT_YET), aud (CUBEID_ERR_JWT_AUDIENCE), azp and a string
 * sub (CUBEID_ERR_JWT_CLAIM).  CUBEID_ERR_UNAVAILABLE when no keys can be had
 * (never fetched, or stale past max_stale).  New claims in *out (optional).
 *
 * A bearer comes back with the same token many times over its lifetime, so
 * the verifier remembers the last 256 tokens whose signature verified (by
 * SHA-256 of the token) with their claims: a repeat skips decoding and the
 * signature, but every claim check (exp, nbf, iat, iss, aud, azp, sub) and
 * the key-freshness rules run again.  Replacing the key set (a fetch or
 * cubeid_oidc_verifier_set_jwks) forgets them all, so a token whose key left
 * the JWKS is refused as it would be without the cache.
 */
int cubeid_oidc_verify(cubeid_oidc_verifier *v, const char *token, size_t len, int64_t now,
                       cubeid_oidc_claims **out);

void cubeid_oidc_claims_free(cubeid_oidc_claims *c);
const char *cubeid_oidc_claims_sub(const cubeid_oidc_claims *c); /* borrowed */
const char *cubeid_oidc_claims_azp(const cubeid_oidc_claims *c); /* borrowed; may be NULL */
json_t *cubeid_oidc_claims_json(const cubeid_oidc_claims *c);    /* borrowed */
/* realm_access.roles plus resource_access.<client_roles>.roles (Keycloak
 * expands composite roles into these lists). */
size_t cubeid_oidc_claims_role_count(const cubeid_oidc_claims *c);
const char *cubeid_oidc_claims_role_at(const cubeid_oidc_claims *c, size_t i);
bool cubeid_oidc_claims_has_role(const cubeid_oidc_claims *c, const char *role);

/* ---- endpoint policy (keycloak/policy.c) --------------------------- */

/*
 * A policy table maps (method, path pattern) to the role a request needs.
 * Text, one rule per line, '#' comments and blank lines ignored:
 *
 *     METHOD  PATTERN  ROLE
 *
 * METHOD is an HTTP method (upper-case letters) or '*'.  PATTERN starts
 * with '/'; a segment '*' matches one path segment, a final segment '**'
 * matches the rest (zero or more segments).  ROLE is a role name, or '-'
 * for "any valid token".  The first matching rule wins; a request no rule
 * matches is denied (403).  CUBEID_ERR_PARSE with the line number in *line
 * (optional) for a malformed table.
 */
typedef struct cubeid_oidc_policy cubeid_oidc_policy;

int cubeid_oidc_policy_parse(const char *text, size_t len, cubeid_oidc_policy **out, size_t *line);
void cubeid_oidc_policy_free(cubeid_oidc_policy *p);
size_t cubeid_oidc_policy_count(const cubeid_oidc_policy *p);
/* The role the first matching rule needs ("" for '-'), borrowed; NULL when
 * no rule matches. */
const char *cubeid_oidc_policy_lookup(const cubeid_oidc_policy *p, const char *method,
                                      const char *path);

/* What cubeid_oidc_authorize() decided. */
struct cubeid_oidc_decision {
	int status;                 /* 200, 401 or 403 */
	int reason;                 /* CUBEID_OK or the code behind a 401 / 403 */
	char *www_authenticate;     /* the WWW-Authenticate value for 401 and 403 */
	cubeid_oidc_claims *claims; /* the caller's claims when the token is valid */
};

/*
 * Authorize one request: authorization is the Authorization header value
 * (NULL when absent).  401 with `Bearer realm="REALM"` for a missing token,
 * with error="invalid_token" for a token that fails verification; 403 with
 * error="insufficient_scope" when the token lacks the rule's role (or no
 * rule matches).  realm_name names the realm in WWW-Authenticate.  Returns
 * CUBEID_OK when a decision was made (d filled; release it with
 * cubeid_oidc_decision_clear()), a negative code only on internal failure.
 */
int cubeid_oidc_authorize(cubeid_oidc_verifier *v, const cubeid_oidc_policy *p,
                          const char *realm_name, const char *method, const char *path,
                          const char *authorization, int64_t now, struct cubeid_oidc_decision *d);
void cubeid_oidc_decision_clear(struct cubeid_oidc_decision *d);

/* ---- getting tokens (keycloak/client.c) ---------------------------- */

typedef enum {
	CUBEID_OIDC_AUTH_SECRET = 1,      /* client_secret_post */
	CUBEID_OIDC_AUTH_PRIVATE_KEY_JWT, /* RFC 7523 client assertion */
	CUBEID_OIDC_AUTH_SPIFFE,          /* Keycloak's jwt-spiffe assertion */
} cubeid_oidc_auth_method;

/* Makes a fresh client assertion for audience aud at now (caller frees). */
typedef int (*cubeid_oidc_assertion_fn)(void *ctx, const char *aud, int64_t now, char **out);

struct cubeid_oidc_client_opts {
	const char *token_endpoint; /* required */
	const char *issuer;         /* the realm issuer: aud of assertions */
	const char *client_id;      /* required */
	cubeid_oidc_auth_method method;
	const char *secret;                 /* CUBEID_OIDC_AUTH_SECRET; copied, wiped on free */
	cubeid_oidc_assertion_fn assertion; /* the other methods */
	void *assertion_ctx;
	int64_t refresh_ahead; /* refresh a cached token this long before it
	                          expires; 0 = 30 s (at most half its life) */
	long http_timeout_ms;  /* 0 = 10000 */
};

/* What a token endpoint returned. */
struct cubeid_oidc_token {
	char *access_token;
	char *token_type;
	char *issued_token_type; /* token exchange only */
	int64_t expires_at;      /* now + expires_in; 0 if not given */
	/* on CUBEID_ERR_OAUTH: the OAuth error and its description */
	char *error;
	char *error_description;
	long http_status;
};
void cubeid_oidc_token_clear(struct cubeid_oidc_token *t);

typedef struct cubeid_oidc_client cubeid_oidc_client;

int cubeid_oidc_client_new(const struct cubeid_oidc_client_opts *opts, cubeid_oidc_client **out);
void cubeid_oidc_client_free(cubeid_oidc_client *c);
/* Read a client secret from a file (first line, at most 4 KiB; the file
 * must not be readable by others: CUBEID_ERR_PERMISSION).  Caller wipes and
 * frees. */
int cubeid_oidc_read_secret_file(const char *path, char **out);

/*
 * An access token for the client (client_credentials grant), from the cache
 * while it has more than refresh_ahead left, else fetched anew.  New copy in
 * *out; caller frees.  CUBEID_ERR_OAUTH when the server refused (details in
 * *err when not NULL: clear it with cubeid_oidc_token_clear()).
 */
int cubeid_oidc_client_token(cubeid_oidc_client *c, int64_t now, char **out,
                             struct cubeid_oidc_token *err);
/* Fetches made (for tests of the cache). */
unsigned long cubeid_oidc_client_fetches(const cubeid_oidc_client *c);

/*
 * RFC 8693 token exchange with the client's credentials: subject_token of
 * type access_token, audience (may be NULL), requested_token_type (NULL:
 * none sent).  On success *t holds the new token; on CUBEID_ERR_OAUTH its
 * error fields say why.  Clear *t with cubeid_oidc_token_clear() either way.
 */
int cubeid_oidc_client_exchange(cubeid_oidc_client *c, const char *subject_token,
                                const char *audience, const char *requested_token_type, int64_t now,
                                struct cubeid_oidc_token *t);

/*
 * An RFC 7523 client assertion: header {alg, kid, typ JWT}, claims {iss and
 * sub = client_id, aud, jti (random), iat = now, exp = now + ttl}, signed
 * by sign(ctx) (a token key: cubeid_jws_sign_key).  New token in *out.
 */
int cubeid_oidc_private_key_jwt(const char *client_id, const char *aud, cubeid_sig_alg alg,
                                const char *kid, cubeid_jws_sign_fn sign, void *ctx, int64_t now,
                                unsigned ttl, char **out);

/* The JWKS a Keycloak client with "use.jwks.url" fetches: bundle's keys
 * with use "sig", their kid and alg (ES256 for P-256, ES384 for P-384,
 * RS256 for RSA).  New NUL-terminated string; caller frees. */
int cubeid_oidc_client_jwks(const cubeid_jwt_bundle *bundle, char **out, size_t *len);

/* ---- RLAC (keycloak/rlac.c) ---------------------------------------- */

#define CUBEID_RLAC_OWNER_ANNOTATION "agentcube.io/owner"
#define CUBEID_RLAC_OWNER_HASH_LABEL "agentcube.io/owner-hash"
#define CUBEID_RLAC_ADMIN_ROLE       "admin"
#define CUBEID_RLAC_HASH_LEN         63 /* a Kubernetes label value's limit */

/* The owner of resources a caller creates: the validated token's sub
 * (borrowed; NULL when absent). */
const char *cubeid_rlac_owner(const cubeid_oidc_claims *c);
/* The owner-hash label value: the first 63 lower-case hex characters of
 * SHA-256(owner), NUL-terminated.  CUBEID_ERR_INVALID_ARG for an empty
 * owner. */
int cubeid_rlac_owner_hash(const char *owner, char out[CUBEID_RLAC_HASH_LEN + 1]);
/*
 * May the caller reach a resource owned by owner?  CUBEID_OK when the
 * caller's sub equals owner, or the caller has the admin role; otherwise
 * CUBEID_ERR_FORBIDDEN, always so when owner is NULL or empty (fail closed)
 * and the caller is not admin.
 */
int cubeid_rlac_check(const cubeid_oidc_claims *c, const char *owner);

#ifdef __cplusplus
}
#endif
#endif
