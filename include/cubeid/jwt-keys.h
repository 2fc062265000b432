/*
 * cubeid JWT-SVID signing keys of a trust domain, with rollover
 * (spiffe/jwt-keys.c, spiffe/jwt-keys-state.c).
 *
 * The keys are generated in the token (persistent, non-extractable; EC P-256
 * for ES256 by default, EC P-384 for ES384, RSA for RS256/PS256) and
 * recorded in STATE-DIR/jwt.conf with, for each key: its kid, key type,
 * PKCS#11 URI, public key (SubjectPublicKeyInfo, so that bundles and
 * verification need no token) and four times, in seconds since the epoch:
 *
 *   created_at     when it was generated
 *   publish_from   when it entered the published JWT bundle (= created_at)
 *   active_from    when it becomes the signer (publish_from + prepublish)
 *   retire_after   0 while it signs; once a successor takes over at time T,
 *                  T + max_ttl: every token it signed has expired by then,
 *                  and it leaves the bundle (and may leave the token)
 *
 * Rollover: cubeid_jwt_keys_rotate() publishes a new key at once but lets it
 * sign only after the prepublish delay, so that verifiers that refresh their
 * bundle within that delay never see a token whose kid they do not know; the
 * old key signs until then and stays published max_ttl longer.  The first
 * key (cubeid_jwt_keys_init(), called by cubeid_ca_init()) is active at
 * once, since nothing was published before it.  max_ttl is the longest
 * JWT-SVID lifetime the state's keys may sign (enforced by
 * cubeid_jwt_keys_mint()).
 *
 * The SPIFFE bundle's spiffe_sequence lives in jwt.conf too, with a digest of
 * the bundle content it numbers: cubeid_jwt_keys_spiffe_bundle() increments
 * it whenever the content (X.509 roots, published JWT keys, refresh hint)
 * differs from the last one numbered.
 *
 * Every time is given explicitly as `now` (0 = the current time), so that
 * tests drive the clock.  Conventions as in <cubeid/token.h>; a
 * cubeid_jwt_keys is a snapshot of the state, not locked.
 */
#ifndef CUBEID_JWT_KEYS_H
#define CUBEID_JWT_KEYS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cubeid/error.h>
#include <cubeid/jwt.h>
#include <cubeid/spiffe.h>
#include <cubeid/token.h>
#include <cubeid/x509svid.h>

#ifdef __cplusplus
extern "C" {
#endif

#define CUBEID_JWT_CONF                 "jwt.conf"
#define CUBEID_JWT_SVID_TTL_DEFAULT     300  /* seconds, as SPIRE */
#define CUBEID_JWT_MAX_TTL_DEFAULT      3600 /* the longest JWT-SVID lifetime */
#define CUBEID_JWT_REFRESH_HINT_DEFAULT 300  /* spiffe_refresh_hint, seconds */
#define CUBEID_JWT_KEYS_MAX             16   /* keys in jwt.conf */
#define CUBEID_JWT_PREPUBLISH_NONE      (-1) /* opts.prepublish: sign at once */

struct cubeid_jwt_keys_opts {
	cubeid_key_type key_type; /* 0 = CUBEID_KEY_EC_P256 */
	/* seconds between publishing a new key and signing with it;
	 * 0 = the state's max_ttl; CUBEID_JWT_PREPUBLISH_NONE = at once */
	int64_t prepublish;
	int64_t max_ttl;      /* cubeid_jwt_keys_init() only; 0 = the default */
	int64_t refresh_hint; /* cubeid_jwt_keys_init() only; 0 = the default */
	const char *label;    /* key label; NULL = "cubeid-jwt-<td>-<kid>" */
	int64_t now;          /* 0 = the current time */
	/* rotate to this key, already in the token (an imported cluster key,
	 * <cubeid/key-wrap.h>), instead of generating one; NULL normally */
	cubeid_key *adopt;
};

/* One key of the state; the strings and pub are borrowed from the state. */
struct cubeid_jwt_key_info {
	const char *kid;
	cubeid_key_type type;
	const char *uri; /* PKCS#11 URI of the private key */
	EVP_PKEY *pub;
	int64_t created_at, publish_from, active_from, retire_after;
};

typedef struct cubeid_jwt_keys cubeid_jwt_keys;

/* Read STATE-DIR/jwt.conf (state_dir as cubeid_state_dir()).
 * CUBEID_ERR_NOT_FOUND when there is none, CUBEID_ERR_CONFIG when it is
 * malformed.  New state in *out; caller frees. */
int cubeid_jwt_keys_load(const char *state_dir, cubeid_jwt_keys **out);
/* Write k to STATE-DIR/jwt.conf atomically (mode 0600). */
int cubeid_jwt_keys_save(const cubeid_jwt_keys *k, const char *state_dir);
void cubeid_jwt_keys_free(cubeid_jwt_keys *k);

/*
 * Create the state for trust domain td with its first key, generated in tok
 * and active at once, and save it.  CUBEID_ERR_EXISTS if state_dir already
 * has a jwt.conf.  New state in *out (optional); caller frees.
 */
int cubeid_jwt_keys_init(cubeid_token *tok, const char *state_dir, const char *td,
                         const struct cubeid_jwt_keys_opts *opts, cubeid_jwt_keys **out);
/*
 * Rollover, in memory: drop the keys retired at opts->now (deleting them from
 * tok when tok is not NULL; a key already gone is fine), then generate a new
 * key in tok, published at now and active at now + prepublish; the current
 * signer stops at that time and retires max_ttl later.  A state without keys
 * gets a key active at once.  CUBEID_ERR_EXISTS while an earlier new key is
 * still waiting to sign (rotating again would retire a key that never
 * signed while verifiers may not know its successor).  Save with
 * cubeid_jwt_keys_save(); cubeid_jwt_keys_rotate_saved() does both.
 */
int cubeid_jwt_keys_rotate(cubeid_jwt_keys *k, cubeid_token *tok,
                           const struct cubeid_jwt_keys_opts *opts);
/* Load state_dir's jwt.conf (or start an empty one for td when there is none;
 * td may be NULL otherwise), rotate, save.  New state in *out (optional). */
int cubeid_jwt_keys_rotate_saved(cubeid_token *tok, const char *state_dir, const char *td,
                                 const struct cubeid_jwt_keys_opts *opts, cubeid_jwt_keys **out);
/* Drop the keys retired at now (and delete them from tok if not NULL);
 * *dropped (optional) gets how many. */
int cubeid_jwt_keys_prune(cubeid_jwt_keys *k, cubeid_token *tok, int64_t now, size_t *dropped);

const char *cubeid_jwt_keys_trust_domain(const cubeid_jwt_keys *k); /* borrowed */
int64_t cubeid_jwt_keys_max_ttl(const cubeid_jwt_keys *k);
int64_t cubeid_jwt_keys_refresh_hint(const cubeid_jwt_keys *k);
uint64_t cubeid_jwt_keys_sequence(const cubeid_jwt_keys *k);
size_t cubeid_jwt_keys_count(const cubeid_jwt_keys *k);
/* The i-th key (oldest first); CUBEID_ERR_NOT_FOUND past the end. */
int cubeid_jwt_keys_at(const cubeid_jwt_keys *k, size_t i, struct cubeid_jwt_key_info *info);
/* Whether key i is in the bundle at now / is the signer at now. */
bool cubeid_jwt_keys_published(const cubeid_jwt_keys *k, size_t i, int64_t now);
bool cubeid_jwt_keys_active(const cubeid_jwt_keys *k, size_t i, int64_t now);
/* The signer at now; CUBEID_ERR_NOT_FOUND when there is none. */
int cubeid_jwt_keys_signer(const cubeid_jwt_keys *k, int64_t now, struct cubeid_jwt_key_info *info);

/* The JWT bundle at now: every published key under its kid.  New bundle in
 * *out; caller frees. */
int cubeid_jwt_keys_bundle(const cubeid_jwt_keys *k, int64_t now, cubeid_jwt_bundle **out);
/*
 * The SPIFFE bundle at now: x509's roots (may be NULL) and the published JWT
 * keys, with spiffe_refresh_hint and spiffe_sequence.  When the content
 * differs from the one last numbered, the sequence in k is incremented and
 * *changed (optional) set: save k to keep it.  New bundle in *out.
 */
int cubeid_jwt_keys_spiffe_bundle(cubeid_jwt_keys *k, const cubeid_x509_bundle *x509, int64_t now,
                                  cubeid_spiffe_bundle **out, bool *changed);

/* The JWS alg for a key type: ES256 (P-256), ES384 (P-384), RS256 (RSA). */
cubeid_sig_alg cubeid_jwt_keys_default_alg(cubeid_key_type type);

/*
 * Mint a JWT-SVID at now with the signer at now, found on tok by its URI.
 * alg CUBEID_SIG_NONE = cubeid_jwt_keys_default_alg(); another alg must fit
 * the key (CUBEID_ERR_JWT_ALG).  ttl 1..max_ttl (else
 * CUBEID_ERR_INVALID_ARG); sub must be in the state's trust domain
 * (CUBEID_ERR_SPIFFE_ID).  New token in *out; caller frees.
 */
int cubeid_jwt_keys_mint(const cubeid_jwt_keys *k, cubeid_token *tok, int64_t now,
                         cubeid_sig_alg alg, const cubeid_spiffe_id *sub, const char *const *aud,
                         size_t n_aud, int64_t ttl, const char *jti, char **out);

/*
 * The token key of the state's key kid (found on tok by its URI once, then
 * kept in the state; thread-safe), as a new reference for signing other
 * token formats with the same rollover (PicoD tokens, <cubeid/picod.h>).
 * CUBEID_ERR_NOT_FOUND for a kid the state does not have.
 */
int cubeid_jwt_keys_key(const cubeid_jwt_keys *k, cubeid_token *tok, const char *kid,
                        cubeid_key **out);

#ifdef __cplusplus
}
#endif
#endif
