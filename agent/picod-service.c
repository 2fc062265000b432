/*
 * cubeid.picod.v1.PicoD (picod/picod.proto): the agent signs the PicoD
 * tokens of AgentCube's JWT mode with a dedicated key in the node's token.
 *
 *   MintToken  attested callers whose entry has picod_signer: true; others
 *              get PermissionDenied.  Tokens are cached per (caller, sandbox
 *              audience, session, user, lifetime) and reused until half
 *              their lifetime has passed or the signing key changed.
 *   PublicKey  any attested caller: the signer's PKIX PEM and a JWKS.
 *   RotateKey  root and the agent's own uid.
 *
 * The keys are a JWT key state of their own (spiffe/jwt-keys.c) in
 * STATE-DIR/picod/ (jwt.conf there): RSA-2048 (RS256) by default, persistent,
 * non-extractable, labelled "cubeid-picod-<td>-...", created on first use,
 * rolled over with publish-before-sign.  Token work runs in the agent's
 * workers; the cache and the calls live on the loop thread.
 */
#include "config.h"

#include "agent/audit.h"
#include "agent/cluster.h"
#include "agent/daemon.h"
#include "picod/picod.pb-c.h"

#include <cubeid/ca.h>
#include <cubeid/log.h>
#include <cubeid/picod.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/pem.h>
#include <openssl/rand.h>

#define PICOD_CACHE_MAX     20000
#define PICOD_BUCKETS       4096
#define PICOD_KEYS_SUBDIR   "picod"
#define PICOD_KEY_TYPE_DEF  CUBEID_KEY_RSA_2048
#define PICOD_SPIFFE_ID_MAX 2048

struct pitem {
	char *key;
	uint32_t hash;
	char *token;
	char *sub, *aud;
	char kid[CUBEID_KID_LEN + 1];
	char jti[33];
	int64_t iat, exp;
	struct pitem *hnext;
	struct pitem *prev, *next; /* LRU, most recent first */
};

struct picod_service {
	struct agent *a;
	char *dir; /* STATE-DIR/picod */
	/* the key state: workers read it under lock held for reading; a
	 * creation, rotation or reload swaps it under lock held for writing.
	 * rot_mu serializes those (one writer of the state file at a time). */
	pthread_rwlock_t lock;
	pthread_mutex_t rot_mu;
	cubeid_jwt_keys *keys;
	bool announce; /* a key was created: tell the cluster (atomic) */
	/* the token cache (loop thread only) */
	struct pitem *buckets[PICOD_BUCKETS];
	struct pitem *head, *tail;
	size_t n;
	uint64_t hits, mints;
};

enum pkind { J_MINT = 1, J_PUBKEY, J_ROTATE };

struct pjob {
	struct picod_service *p;
	grpc_call *call; /* NULL once the client went away */
	enum pkind kind;
	pid_t pid;
	uid_t uid;
	/* MintToken */
	char *key;
	uint32_t hash;
	char *sub, *aud, *session, *user_sub, *user_email, *issuer;
	int64_t ttl;
	/* RotateKey */
	cubeid_key_type type;
	int64_t prepublish;
	/* results */
	int rc;
	char *token;
	char kid[CUBEID_KID_LEN + 1];
	char jti[33];
	const char *alg;
	int64_t iat, active_from;
	char *pem, *jwks;
};

/* ------------------------------------------------------------ life */

int
picod_service_new(struct agent *a, struct picod_service **out)
{
	struct picod_service *p;

	*out = NULL;
	if ((p = calloc(1, sizeof(*p))) == NULL)
		return CUBEID_ERR_NOMEM;
	p->a = a;
	if (asprintf(&p->dir, "%s/%s", a->cfg->state_dir, PICOD_KEYS_SUBDIR) < 0) {
		free(p);
		return CUBEID_ERR_NOMEM;
	}
	pthread_rwlock_init(&p->lock, NULL);
	pthread_mutex_init(&p->rot_mu, NULL);
	/* an existing state is used at once; a new one is made on first use */
	if (cubeid_jwt_keys_load(p->dir, &p->keys) != CUBEID_OK)
		p->keys = NULL;
	*out = p;
	return CUBEID_OK;
}

static void
pitem_free(struct pitem *it)
{
	if (it == NULL)
		return;
	if (it->token != NULL) {
		OPENSSL_cleanse(it->token, strlen(it->token));
		free(it->token);
	}
	free(it->key);
	free(it->sub);
	free(it->aud);
	free(it);
}

void
picod_service_free(struct picod_service *p)
{
	struct pitem *it, *next;

	if (p == NULL)
		return;
	for (it = p->head; it != NULL; it = next) {
		next = it->next;
		pitem_free(it);
	}
	cubeid_jwt_keys_free(p->keys);
	pthread_rwlock_destroy(&p->lock);
	pthread_mutex_destroy(&p->rot_mu);
	free(p->dir);
	free(p);
}

static void
swap_keys(struct picod_service *p, cubeid_jwt_keys *k)
{
	cubeid_jwt_keys *old;

	pthread_rwlock_wrlock(&p->lock);
	old = p->keys;
	p->keys = k;
	pthread_rwlock_unlock(&p->lock);
	cubeid_jwt_keys_free(old);
}

void
picod_service_reload(struct picod_service *p)
{
	cubeid_jwt_keys *k = NULL;
	int rc;

	if (p == NULL)
		return;
	pthread_mutex_lock(&p->rot_mu);
	rc = cubeid_jwt_keys_load(p->dir, &k);
	if (rc == CUBEID_OK)
		swap_keys(p, k);
	else if (rc != CUBEID_ERR_NOT_FOUND)
		cubeid_error("reload: keeping the PicoD keys: %s", cubeid_strerror(rc));
	pthread_mutex_unlock(&p->rot_mu);
}

int
picod_service_published(struct picod_service *p, int64_t now, cubeid_jwt_bundle **out)
{
	int rc;

	*out = NULL;
	pthread_rwlock_rdlock(&p->lock);
	if (p->keys != NULL)
		rc = cubeid_jwt_keys_bundle(p->keys, now, out);
	else
		rc = cubeid_jwt_bundle_new(p->a->td, out);
	pthread_rwlock_unlock(&p->lock);
	return rc;
}

void
picod_service_stats(struct picod_service *p, size_t *cached, uint64_t *hits, uint64_t *mints)
{
	*cached = p->n;
	*hits = p->hits;
	*mints = p->mints;
}

/* ------------------------------------------------- key state (workers) */

static int
key_opts(struct picod_service *p, cubeid_key_type type, int64_t prepublish,
         struct cubeid_jwt_keys_opts *o, char *label, size_t label_size)
{
	uint8_t rnd[4];

	memset(o, 0, sizeof(*o));
	o->key_type = type != CUBEID_KEY_NONE ? type : PICOD_KEY_TYPE_DEF;
	o->prepublish = prepublish;
	o->max_ttl = CUBEID_PICOD_TTL_MAX;
	if (RAND_bytes(rnd, sizeof(rnd)) != 1)
		return CUBEID_ERR_CRYPTO;
	snprintf(label, label_size, "cubeid-picod-%s-%lld-%02x%02x%02x%02x", p->a->td,
	         (long long)time(NULL), rnd[0], rnd[1], rnd[2], rnd[3]);
	o->label = label;
	return CUBEID_OK;
}

/* Make sure there is a key state: the one on disk, or a new one with its
 * first key, generated in the token and active at once. */
static int
ensure_keys(struct picod_service *p)
{
	struct cubeid_jwt_keys_opts o;
	cubeid_jwt_keys *k = NULL;
	char label[256];
	bool have;
	int rc;

	pthread_rwlock_rdlock(&p->lock);
	have = p->keys != NULL;
	pthread_rwlock_unlock(&p->lock);
	if (have)
		return CUBEID_OK;
	pthread_mutex_lock(&p->rot_mu);
	pthread_rwlock_rdlock(&p->lock);
	have = p->keys != NULL;
	pthread_rwlock_unlock(&p->lock);
	rc = CUBEID_OK;
	if (!have) {
		rc = cubeid_jwt_keys_load(p->dir, &k);
		if (rc == CUBEID_ERR_NOT_FOUND &&
		    (rc = key_opts(p, CUBEID_KEY_NONE, 0, &o, label, sizeof(label))) == CUBEID_OK) {
			rc = cubeid_jwt_keys_init(p->a->tok, p->dir, p->a->td, &o, &k);
			if (rc == CUBEID_OK)
				__atomic_store_n(&p->announce, true, __ATOMIC_RELEASE);
			if (rc == CUBEID_OK)
				cubeid_notice("created the PicoD signing key (%s) in the token; "
				              "its state is in %s",
				              cubeid_key_type_name(o.key_type), p->dir);
		}
		if (rc == CUBEID_OK)
			swap_keys(p, k);
		else
			cubeid_error("cannot set up the PicoD signing key: %s",
			             cubeid_strerror(rc));
	}
	pthread_mutex_unlock(&p->rot_mu);
	return rc;
}

static void
job_mint_run(struct pjob *j)
{
	struct picod_service *p = j->p;
	struct cubeid_jwt_key_info info;
	struct cubeid_picod_claims_in in = {0};
	cubeid_key *key = NULL;
	cubeid_sig_alg alg;
	uint8_t rnd[16];
	size_t i;
	int rc;

	if ((rc = ensure_keys(p)) != CUBEID_OK)
		goto out;
	if (RAND_bytes(rnd, sizeof(rnd)) != 1) {
		rc = CUBEID_ERR_CRYPTO;
		goto out;
	}
	for (i = 0; i < sizeof(rnd); i++)
		snprintf(j->jti + 2 * i, 3, "%02x", rnd[i]);
	j->iat = (int64_t)time(NULL);
	pthread_rwlock_rdlock(&p->lock);
	rc = cubeid_jwt_keys_signer(p->keys, j->iat, &info);
	if (rc == CUBEID_OK) {
		snprintf(j->kid, sizeof(j->kid), "%s", info.kid);
		alg = cubeid_jwt_keys_default_alg(info.type);
		rc = cubeid_jwt_keys_key(p->keys, p->a->tok, info.kid, &key);
	}
	pthread_rwlock_unlock(&p->lock);
	if (rc != CUBEID_OK)
		goto out;
	in.issuer = j->issuer;
	in.sub = j->sub;
	in.aud = j->aud;
	in.session_id = j->session;
	in.user_sub = j->user_sub;
	in.user_email = j->user_email;
	in.jti = j->jti;
	in.iat = j->iat;
	in.ttl = j->ttl;
	rc = cubeid_picod_token_encode(&in, alg, j->kid, cubeid_jws_sign_key, key, &j->token);
out:
	cubeid_key_free(key);
	j->rc = rc;
}

static void
job_pubkey_run(struct pjob *j)
{
	struct picod_service *p = j->p;
	struct cubeid_jwt_key_info info;
	cubeid_jwt_bundle *b = NULL;
	BIO *bio = NULL;
	char *data;
	long n;
	int rc;

	if ((rc = ensure_keys(p)) != CUBEID_OK)
		goto out;
	pthread_rwlock_rdlock(&p->lock);
	rc = cubeid_jwt_keys_signer(p->keys, 0, &info);
	if (rc == CUBEID_OK) {
		snprintf(j->kid, sizeof(j->kid), "%s", info.kid);
		j->alg = cubeid_jws_alg_name(cubeid_jwt_keys_default_alg(info.type));
		if ((bio = BIO_new(BIO_s_mem())) == NULL || !PEM_write_bio_PUBKEY(bio, info.pub))
			rc = CUBEID_ERR_CRYPTO;
	}
	if (rc == CUBEID_OK)
		rc = cubeid_jwt_keys_bundle(p->keys, 0, &b);
	pthread_rwlock_unlock(&p->lock);
	if (rc != CUBEID_OK)
		goto out;
	if ((rc = cubeid_jwt_bundle_to_jwks(b, &j->jwks, NULL)) != CUBEID_OK)
		goto out;
	n = BIO_get_mem_data(bio, &data);
	if (n <= 0 || (j->pem = strndup(data, (size_t)n)) == NULL)
		rc = CUBEID_ERR_NOMEM;
out:
	BIO_free(bio);
	cubeid_jwt_bundle_free(b);
	j->rc = rc;
}

static void
job_rotate_run(struct pjob *j)
{
	struct picod_service *p = j->p;
	struct cubeid_jwt_keys_opts o;
	struct cubeid_jwt_key_info info;
	cubeid_jwt_keys *k = NULL;
	char label[256];
	size_t n;
	int rc;

	if ((rc = key_opts(p, j->type, j->prepublish, &o, label, sizeof(label))) != CUBEID_OK)
		goto out;
	pthread_mutex_lock(&p->rot_mu);
	/* a fresh copy from disk, so that minting goes on with the current
	 * state while the new key is generated */
	rc = cubeid_jwt_keys_rotate_saved(p->a->tok, p->dir, p->a->td, &o, &k);
	if (rc == CUBEID_OK) {
		n = cubeid_jwt_keys_count(k);
		if (cubeid_jwt_keys_at(k, n - 1, &info) == CUBEID_OK) {
			snprintf(j->kid, sizeof(j->kid), "%s", info.kid);
			j->active_from = info.active_from;
		}
		swap_keys(p, k);
	}
	pthread_mutex_unlock(&p->rot_mu);
out:
	j->rc = rc;
}

static void
job_run(void *arg)
{
	struct pjob *j = arg;

	switch (j->kind) {
	case J_MINT:
		job_mint_run(j);
		break;
	case J_PUBKEY:
		job_pubkey_run(j);
		break;
	case J_ROTATE:
		job_rotate_run(j);
		break;
	}
}

static void
pjob_free(struct pjob *j)
{
	if (j == NULL)
		return;
	if (j->token != NULL) {
		OPENSSL_cleanse(j->token, strlen(j->token));
		free(j->token);
	}
	free(j->key);
	free(j->sub);
	free(j->aud);
	free(j->session);
	free(j->user_sub);
	free(j->user_email);
	free(j->issuer);
	free(j->pem);
	free(j->jwks);
	free(j);
}

/* ------------------------------------------------ the cache (loop thread) */

static uint32_t
fnv1a(const char *s)
{
	uint32_t h = 2166136261u;

	for (; *s != '\0'; s++)
		h = (h ^ (uint8_t)*s) * 16777619u;
	return h;
}

static void
lru_unlink(struct picod_service *p, struct pitem *it)
{
	if (it->prev != NULL)
		it->prev->next = it->next;
	else
		p->head = it->next;
	if (it->next != NULL)
		it->next->prev = it->prev;
	else
		p->tail = it->prev;
	it->prev = it->next = NULL;
}

static void
lru_push(struct picod_service *p, struct pitem *it)
{
	it->prev = NULL;
	it->next = p->head;
	if (p->head != NULL)
		p->head->prev = it;
	p->head = it;
	if (p->tail == NULL)
		p->tail = it;
}

static struct pitem *
cache_find(struct picod_service *p, const char *key, uint32_t hash)
{
	struct pitem *it;

	for (it = p->buckets[hash % PICOD_BUCKETS]; it != NULL; it = it->hnext)
		if (it->hash == hash && strcmp(it->key, key) == 0)
			return it;
	return NULL;
}

static void
cache_remove(struct picod_service *p, struct pitem *it)
{
	struct pitem **pp = &p->buckets[it->hash % PICOD_BUCKETS];

	while (*pp != NULL && *pp != it)
		pp = &(*pp)->hnext;
	if (*pp == it)
		*pp = it->hnext;
	lru_unlink(p, it);
	p->n--;
	pitem_free(it);
}

/* The kid that signs now, into kid ("" when there is none yet). */
static void
current_kid(struct picod_service *p, int64_t now, char kid[CUBEID_KID_LEN + 1])
{
	struct cubeid_jwt_key_info info;

	kid[0] = '\0';
	pthread_rwlock_rdlock(&p->lock);
	if (p->keys != NULL && cubeid_jwt_keys_signer(p->keys, now, &info) == CUBEID_OK)
		snprintf(kid, CUBEID_KID_LEN + 1, "%s", info.kid);
	pthread_rwlock_unlock(&p->lock);
}

/* A cached token still good to hand out: before half its lifetime, and
 * signed by the key that signs now (the first request after a rotation
 * re-signs). */
static bool
pitem_fresh(struct picod_service *p, const struct pitem *it, int64_t now)
{
	char kid[CUBEID_KID_LEN + 1];

	if (it->token == NULL || now >= it->iat + (it->exp - it->iat) / 2)
		return false;
	current_kid(p, now, kid);
	return strcmp(kid, it->kid) == 0;
}

static void
cache_store(struct picod_service *p, struct pjob *j)
{
	struct pitem *it, *prev;
	int64_t now = (int64_t)time(NULL);

	if ((it = cache_find(p, j->key, j->hash)) != NULL) {
		cache_remove(p, it);
	}
	if ((it = calloc(1, sizeof(*it))) == NULL)
		return;
	it->hash = j->hash;
	if ((it->key = strdup(j->key)) == NULL || (it->token = strdup(j->token)) == NULL ||
	    (it->sub = strdup(j->sub)) == NULL || (it->aud = strdup(j->aud)) == NULL) {
		pitem_free(it);
		return;
	}
	memcpy(it->kid, j->kid, sizeof(it->kid));
	memcpy(it->jti, j->jti, sizeof(it->jti));
	it->iat = j->iat;
	it->exp = j->iat + j->ttl;
	it->hnext = p->buckets[it->hash % PICOD_BUCKETS];
	p->buckets[it->hash % PICOD_BUCKETS] = it;
	lru_push(p, it);
	p->n++;
	/* bounded: expired items and the least recently used go */
	for (it = p->tail; it != NULL && (p->n > PICOD_CACHE_MAX || it->exp <= now); it = prev) {
		prev = it->prev;
		cache_remove(p, it);
	}
}

/* ------------------------------------------------------ handlers */

static void
job_on_close(grpc_call *call, void *user)
{
	struct pjob *j = user;

	(void)call;
	if (j != NULL)
		j->call = NULL;
}

static void
reply_mint(grpc_call *call, const struct pitem *it, const char *token, bool cached)
{
	Cubeid__Picod__V1__MintTokenResponse r = CUBEID__PICOD__V1__MINT_TOKEN_RESPONSE__INIT;
	uint8_t *buf;
	size_t len;

	r.token = (char *)token;
	r.kid = (char *)it->kid;
	r.audience = it->aud;
	r.jti = (char *)it->jti;
	r.issued_at = it->iat;
	r.expires_at = it->exp;
	r.cached = cached;
	r.spiffe_id = it->sub;
	len = cubeid__picod__v1__mint_token_response__get_packed_size(&r);
	if ((buf = malloc(len)) == NULL) {
		grpc_call_finish(call, GRPC_RESOURCE_EXHAUSTED, "out of memory");
		return;
	}
	cubeid__picod__v1__mint_token_response__pack(&r, buf);
	if (grpc_call_send(call, buf, len) != CUBEID_OK)
		grpc_call_finish(call, GRPC_RESOURCE_EXHAUSTED, "could not queue the response");
	else
		grpc_call_finish(call, GRPC_OK, NULL);
	OPENSSL_cleanse(buf, len);
	free(buf);
}

static void
log_issued(const struct pitem *it, const char *session, const struct pjob *j, pid_t pid, uid_t uid,
           bool cached)
{
	char what[4096];

	(void)j;
	/* a mint is always logged; a cached token only the first time this
	 * caller gets it, then counted (audit.h) */
	snprintf(what, sizeof(what), "sub=%s aud=%s session_id=%s", it->sub, it->aud, session);
	if (!audit_first("picod-token", uid, pid, "-", what, "jti", it->jti) && cached)
		return;
	cubeid_notice("issued picod token sub=%s aud=%s session_id=%s jti=%s kid=%s exp=%lld "
	              "pid=%ld uid=%ld cached=%s",
	              it->sub, it->aud, session, it->jti, it->kid, (long long)it->exp, (long)pid,
	              (long)uid, cached ? "yes" : "no");
}

static void
job_done(void *arg)
{
	struct pjob *j = arg;
	struct picod_service *p = j->p;
	grpc_call *call = j->call;
	struct pitem *it;
	uint8_t *buf = NULL;
	size_t len = 0;
	char msg[200];

	if (call != NULL)
		grpc_call_set_user(call, NULL, NULL);
	/* a new key is published to the other nodes before it signs */
	if ((j->kind == J_ROTATE && j->rc == CUBEID_OK) ||
	    __atomic_exchange_n(&p->announce, false, __ATOMIC_ACQ_REL))
		cluster_kick(p->a);
	if (j->rc != CUBEID_OK) {
		cubeid_warn("picod %s failed: %s",
		            j->kind == J_MINT ? "MintToken"
		                              : (j->kind == J_ROTATE ? "RotateKey" : "PublicKey"),
		            cubeid_strerror(j->rc));
		if (call != NULL) {
			snprintf(msg, sizeof(msg), "cannot %s now: %s",
			         j->kind == J_ROTATE ? "rotate the PicoD key" : "sign PicoD tokens",
			         cubeid_strerror(j->rc));
			grpc_call_finish(call,
			                 j->rc == CUBEID_ERR_EXISTS ? GRPC_INVALID_ARGUMENT
			                                            : GRPC_UNAVAILABLE,
			                 msg);
		}
		goto out;
	}
	if (j->kind == J_MINT) {
		p->mints++;
		if (!p->a->stopping)
			cache_store(p, j);
		if (call != NULL && (it = cache_find(p, j->key, j->hash)) != NULL &&
		    strcmp(it->jti, j->jti) == 0) {
			log_issued(it, j->session, j, j->pid, j->uid, false);
			reply_mint(call, it, j->token, false);
		} else if (call != NULL) {
			struct pitem tmp = {.sub = j->sub, .aud = j->aud, .iat = j->iat};

			tmp.exp = j->iat + j->ttl;
			memcpy(tmp.kid, j->kid, sizeof(tmp.kid));
			memcpy(tmp.jti, j->jti, sizeof(tmp.jti));
			log_issued(&tmp, j->session, j, j->pid, j->uid, false);
			reply_mint(call, &tmp, j->token, false);
		}
		goto out;
	}
	if (call == NULL)
		goto out;
	if (j->kind == J_PUBKEY) {
		Cubeid__Picod__V1__PublicKeyResponse r =
		        CUBEID__PICOD__V1__PUBLIC_KEY_RESPONSE__INIT;

		r.kid = j->kid;
		r.alg = (char *)(j->alg != NULL ? j->alg : "");
		r.pem = j->pem;
		r.jwks = j->jwks;
		len = cubeid__picod__v1__public_key_response__get_packed_size(&r);
		if ((buf = malloc(len)) != NULL)
			cubeid__picod__v1__public_key_response__pack(&r, buf);
	} else {
		Cubeid__Picod__V1__RotateKeyResponse r =
		        CUBEID__PICOD__V1__ROTATE_KEY_RESPONSE__INIT;

		cubeid_notice(
		        "rotated the PicoD key: %s signs from %lld (asked by pid=%ld uid=%ld)",
		        j->kid, (long long)j->active_from, (long)j->pid, (long)j->uid);
		r.kid = j->kid;
		r.active_from = j->active_from;
		len = cubeid__picod__v1__rotate_key_response__get_packed_size(&r);
		if ((buf = malloc(len ? len : 1)) != NULL)
			cubeid__picod__v1__rotate_key_response__pack(&r, buf);
	}
	if (buf == NULL)
		grpc_call_finish(call, GRPC_RESOURCE_EXHAUSTED, "out of memory");
	else if (grpc_call_send(call, buf, len) != CUBEID_OK)
		grpc_call_finish(call, GRPC_RESOURCE_EXHAUSTED, "could not queue the response");
	else
		grpc_call_finish(call, GRPC_OK, NULL);
out:
	free(buf);
	pjob_free(j);
}

static void
submit(struct agent *a, grpc_call *call, struct pjob *j)
{
	int rc;

	j->call = call;
	grpc_call_set_user(call, j, job_on_close);
	if ((rc = worker_submit(a->pool, job_run, job_done, j)) != CUBEID_OK) {
		grpc_call_set_user(call, NULL, NULL);
		grpc_call_finish(call, GRPC_UNAVAILABLE, "the agent is too busy");
		pjob_free(j);
	}
}

/* The security header and attestation; on failure the call is finished. */
static bool
begin(grpc_call *call, struct agent *a, struct peer_info *peer, struct selector_set *sel)
{
	const char *hdr = grpc_call_metadata(call, "workload.spiffe.io");
	int rc;

	if (hdr == NULL || strcmp(hdr, "true") != 0) {
		grpc_call_finish(call, GRPC_INVALID_ARGUMENT,
		                 "security header missing from request");
		return false;
	}
	if (a->stopping) {
		grpc_call_finish(call, GRPC_UNAVAILABLE, "agent is shutting down");
		return false;
	}
	rc = attest_peer_fd(grpc_call_fd(call), &a->attest, peer, sel);
	if (rc != CUBEID_OK) {
		selector_set_clear(sel);
		cubeid_notice("attestation of a caller failed: %s", cubeid_strerror(rc));
		if (rc == CUBEID_ERR_NOMEM || rc == CUBEID_ERR_IO || rc == CUBEID_ERR_UNAVAILABLE)
			grpc_call_finish(call, GRPC_UNAVAILABLE, "could not attest the caller");
		else
			grpc_call_finish(call, GRPC_PERMISSION_DENIED,
			                 "could not attest the caller");
		return false;
	}
	return true;
}

/* The caller's identity allowed to mint: the first entry with
 * picod_signer (or the one for want); new string in *out or NULL. */
static int
signer_identity(struct agent *a, const struct selector_set *sel, const char *want, char **out)
{
	const struct reg_entry **matched = NULL;
	char **ids = NULL;
	size_t n = 0, i;
	int rc;

	*out = NULL;
	if ((rc = a->ops->match(a, sel, &matched, &ids, &n)) != CUBEID_OK)
		return rc;
	for (i = 0; i < n && *out == NULL; i++) {
		if (!matched[i]->picod_signer)
			continue;
		if (want != NULL && want[0] != '\0' && strcmp(want, ids[i]) != 0)
			continue;
		*out = ids[i];
		ids[i] = NULL;
	}
	for (i = 0; i < n; i++)
		free(ids[i]);
	free(ids);
	free(matched);
	return CUBEID_OK;
}

static bool
field_ok(const char *s, size_t max)
{
	return s == NULL || strlen(s) <= max;
}

void
h_picod_mint(grpc_call *call, void *ctx)
{
	struct agent *a = ctx;
	struct picod_service *p = a->picod;
	Cubeid__Picod__V1__MintTokenRequest *m = NULL;
	struct peer_info peer = {0};
	struct selector_set sel = {0};
	struct pitem *it;
	struct pjob *j = NULL;
	char *sub = NULL, *aud = NULL, *key = NULL;
	const uint8_t *req;
	int64_t ttl, now;
	uint32_t hash;
	size_t len;
	int rc;

	req = grpc_call_request(call, &len);
	if ((m = cubeid__picod__v1__mint_token_request__unpack(NULL, len, req)) == NULL) {
		grpc_call_finish(call, GRPC_INVALID_ARGUMENT, "malformed MintTokenRequest");
		return;
	}
	if (m->session_id == NULL || m->session_id[0] == '\0' ||
	    strlen(m->session_id) > CUBEID_PICOD_SESSION_MAX) {
		grpc_call_finish(call, GRPC_INVALID_ARGUMENT, "session_id must be 1 to 256 bytes");
		goto out;
	}
	if (cubeid_picod_audience(m->namespace_, m->sandbox, &aud) != CUBEID_OK) {
		grpc_call_finish(call, GRPC_INVALID_ARGUMENT,
		                 "sandbox and namespace must be Kubernetes names");
		goto out;
	}
	if (!field_ok(m->user_sub, CUBEID_PICOD_USER_MAX) ||
	    !field_ok(m->user_email, CUBEID_PICOD_USER_MAX) ||
	    !field_ok(m->spiffe_id, PICOD_SPIFFE_ID_MAX)) {
		grpc_call_finish(call, GRPC_INVALID_ARGUMENT, "user_sub or user_email too long");
		goto out;
	}
	ttl = a->cfg->picod_token_ttl;
	if (m->ttl_seconds < 0 || m->ttl_seconds > ttl) {
		char msg[96];

		snprintf(msg, sizeof(msg), "ttl_seconds must be 0 to %lld", (long long)ttl);
		grpc_call_finish(call, GRPC_INVALID_ARGUMENT, msg);
		goto out;
	}
	if (m->ttl_seconds > 0)
		ttl = m->ttl_seconds;
	if (!begin(call, a, &peer, &sel))
		goto out;
	if ((rc = signer_identity(a, &sel, m->spiffe_id, &sub)) != CUBEID_OK) {
		grpc_call_finish(call, GRPC_UNAVAILABLE, "could not match the entries");
		goto out;
	}
	if (sub == NULL) {
		cubeid_info("picod token refused for pid=%ld uid=%ld: no picod_signer entry",
		            (long)peer.pid, (long)peer.uid);
		grpc_call_finish(call, GRPC_PERMISSION_DENIED,
		                 "this workload may not mint PicoD tokens (no entry with "
		                 "picod_signer: true)");
		goto out;
	}
	if (asprintf(&key, "%s\n%s\n%s\n%s\n%s\n%lld", sub, aud, m->session_id,
	             m->user_sub != NULL ? m->user_sub : "",
	             m->user_email != NULL ? m->user_email : "", (long long)ttl) < 0) {
		key = NULL;
		grpc_call_finish(call, GRPC_RESOURCE_EXHAUSTED, "out of memory");
		goto out;
	}
	hash = fnv1a(key);
	now = (int64_t)time(NULL);
	if ((it = cache_find(p, key, hash)) != NULL && pitem_fresh(p, it, now)) {
		p->hits++;
		lru_unlink(p, it);
		lru_push(p, it);
		log_issued(it, m->session_id, NULL, peer.pid, peer.uid, true);
		reply_mint(call, it, it->token, true);
		goto out;
	}
	if ((j = calloc(1, sizeof(*j))) == NULL) {
		grpc_call_finish(call, GRPC_RESOURCE_EXHAUSTED, "out of memory");
		goto out;
	}
	j->p = p;
	j->kind = J_MINT;
	j->pid = peer.pid;
	j->uid = peer.uid;
	j->key = key;
	key = NULL;
	j->hash = hash;
	j->sub = sub;
	sub = NULL;
	j->aud = aud;
	aud = NULL;
	j->ttl = ttl;
	if ((j->session = strdup(m->session_id)) == NULL ||
	    (m->user_sub != NULL && m->user_sub[0] != '\0' &&
	     (j->user_sub = strdup(m->user_sub)) == NULL) ||
	    (m->user_email != NULL && m->user_email[0] != '\0' &&
	     (j->user_email = strdup(m->user_email)) == NULL) ||
	    (a->cfg->picod_issuer != NULL && (j->issuer = strdup(a->cfg->picod_issuer)) == NULL)) {
		pjob_free(j);
		grpc_call_finish(call, GRPC_RESOURCE_EXHAUSTED, "out of memory");
		goto out;
	}
	submit(a, call, j);
out:
	selector_set_clear(&sel);
	free(sub);
	free(aud);
	free(key);
	cubeid__picod__v1__mint_token_request__free_unpacked(m, NULL);
}

void
h_picod_public_key(grpc_call *call, void *ctx)
{
	struct agent *a = ctx;
	Cubeid__Picod__V1__PublicKeyRequest *m;
	struct peer_info peer = {0};
	struct selector_set sel = {0};
	struct pjob *j;
	const uint8_t *req;
	size_t len;

	req = grpc_call_request(call, &len);
	if ((m = cubeid__picod__v1__public_key_request__unpack(NULL, len, req)) == NULL) {
		grpc_call_finish(call, GRPC_INVALID_ARGUMENT, "malformed PublicKeyRequest");
		return;
	}
	cubeid__picod__v1__public_key_request__free_unpacked(m, NULL);
	/* a public key: any attested caller may have it */
	if (!begin(call, a, &peer, &sel))
		return;
	selector_set_clear(&sel);
	if ((j = calloc(1, sizeof(*j))) == NULL) {
		grpc_call_finish(call, GRPC_RESOURCE_EXHAUSTED, "out of memory");
		return;
	}
	j->p = a->picod;
	j->kind = J_PUBKEY;
	j->pid = peer.pid;
	j->uid = peer.uid;
	submit(a, call, j);
}

void
h_picod_rotate(grpc_call *call, void *ctx)
{
	struct agent *a = ctx;
	Cubeid__Picod__V1__RotateKeyRequest *m;
	struct peer_info peer = {0};
	struct selector_set sel = {0};
	cubeid_key_type type = CUBEID_KEY_NONE;
	int64_t pre;
	struct pjob *j;
	const uint8_t *req;
	size_t len;

	req = grpc_call_request(call, &len);
	if ((m = cubeid__picod__v1__rotate_key_request__unpack(NULL, len, req)) == NULL) {
		grpc_call_finish(call, GRPC_INVALID_ARGUMENT, "malformed RotateKeyRequest");
		return;
	}
	if (m->key_type != NULL && m->key_type[0] != '\0')
		type = cubeid_key_type_from_name(m->key_type);
	pre = m->prepublish_seconds;
	if ((m->key_type != NULL && m->key_type[0] != '\0' && type == CUBEID_KEY_NONE) ||
	    type == CUBEID_KEY_EC_P384) {
		cubeid__picod__v1__rotate_key_request__free_unpacked(m, NULL);
		grpc_call_finish(call, GRPC_INVALID_ARGUMENT,
		                 "key_type must be rsa-2048, rsa-3072 or ec-p256");
		return;
	}
	cubeid__picod__v1__rotate_key_request__free_unpacked(m, NULL);
	if (pre < -1 || pre > 7 * 24 * 3600) {
		grpc_call_finish(call, GRPC_INVALID_ARGUMENT, "bad prepublish_seconds");
		return;
	}
	if (!begin(call, a, &peer, &sel))
		return;
	selector_set_clear(&sel);
	if (peer.uid != 0 && peer.uid != a->uid) {
		grpc_call_finish(call, GRPC_PERMISSION_DENIED,
		                 "key rotation is for root and the agent's user only");
		return;
	}
	if ((j = calloc(1, sizeof(*j))) == NULL) {
		grpc_call_finish(call, GRPC_RESOURCE_EXHAUSTED, "out of memory");
		return;
	}
	j->p = a->picod;
	j->kind = J_ROTATE;
	j->pid = peer.pid;
	j->uid = peer.uid;
	j->type = type;
	j->prepublish = pre < 0 ? CUBEID_JWT_PREPUBLISH_NONE : pre;
	submit(a, call, j);
}
