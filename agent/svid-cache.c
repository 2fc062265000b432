/*
 * The SVID cache: one X.509-SVID per (entry, SPIFFE ID), shared by every
 * caller with that identity and renewed at its rotation time, and JWT-SVIDs
 * per (SPIFFE ID, sorted audiences), reused until half their lifetime.
 * Minting runs in a small worker pool; results come back to the loop
 * thread through loop_post().  Both caches are bounded: items no one holds
 * are evicted least recently used first, and a sweep timer drops items
 * that have expired.
 */
#include "config.h"

#include "agent/daemon.h"

#include <cubeid/log.h>

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <openssl/x509.h>

/* ------------------------------------------------------------ workers */

struct job {
	void (*run)(void *);
	void (*done)(void *);
	void *arg;
	struct job *next;
};

struct worker_pool {
	cubeid_loop *loop;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct job *head, *tail;
	size_t queued;
	bool stop;
	pthread_t *threads;
	unsigned n;
};

static void
job_done_trampoline(void *arg)
{
	struct job *j = arg;

	j->done(j->arg);
	free(j);
}

static void *
worker_main(void *arg)
{
	struct worker_pool *p = arg;
	struct job *j;

	for (;;) {
		pthread_mutex_lock(&p->mu);
		while (p->head == NULL && !p->stop)
			pthread_cond_wait(&p->cv, &p->mu);
		if (p->head == NULL) {
			pthread_mutex_unlock(&p->mu);
			return NULL;
		}
		j = p->head;
		p->head = j->next;
		if (p->head == NULL)
			p->tail = NULL;
		p->queued--;
		pthread_mutex_unlock(&p->mu);

		j->run(j->arg);
		if (loop_post(p->loop, job_done_trampoline, j) != 0) {
			/* the loop is gone (shutdown): the result is dropped with
			 * the job, done() still frees what it owns */
			cubeid_warn("worker: could not post a result back to the loop");
			j->done(j->arg);
			free(j);
		}
	}
}

int
worker_pool_new(cubeid_loop *l, unsigned n, struct worker_pool **out)
{
	struct worker_pool *p;
	unsigned i;

	*out = NULL;
	if ((p = calloc(1, sizeof(*p))) == NULL)
		return CUBEID_ERR_NOMEM;
	if ((p->threads = calloc(n, sizeof(*p->threads))) == NULL) {
		free(p);
		return CUBEID_ERR_NOMEM;
	}
	p->loop = l;
	pthread_mutex_init(&p->mu, NULL);
	pthread_cond_init(&p->cv, NULL);
	for (i = 0; i < n; i++) {
		if (pthread_create(&p->threads[i], NULL, worker_main, p) != 0)
			break;
		p->n++;
	}
	if (p->n == 0) {
		worker_pool_free(p);
		return CUBEID_ERR_IO;
	}
	*out = p;
	return CUBEID_OK;
}

void
worker_pool_free(struct worker_pool *p)
{
	unsigned i;
	struct job *j;

	if (p == NULL)
		return;
	pthread_mutex_lock(&p->mu);
	p->stop = true;
	pthread_cond_broadcast(&p->cv);
	pthread_mutex_unlock(&p->mu);
	for (i = 0; i < p->n; i++)
		pthread_join(p->threads[i], NULL);
	/* jobs that finished after the loop stopped: their results wait in
	 * the loop's queue, and would be freed there without done() */
	loop_run_posts_of(p->loop, job_done_trampoline);
	/* jobs never started: let done() free their arguments */
	while ((j = p->head) != NULL) {
		p->head = j->next;
		j->done(j->arg);
		free(j);
	}
	pthread_mutex_destroy(&p->mu);
	pthread_cond_destroy(&p->cv);
	free(p->threads);
	free(p);
}

int
worker_submit(struct worker_pool *p, void (*run)(void *), void (*done)(void *), void *arg)
{
	struct job *j;

	pthread_mutex_lock(&p->mu);
	if (p->stop || p->queued >= AGENT_JOB_QUEUE_MAX) {
		pthread_mutex_unlock(&p->mu);
		return CUBEID_ERR_P11_BUSY;
	}
	pthread_mutex_unlock(&p->mu);
	if ((j = calloc(1, sizeof(*j))) == NULL)
		return CUBEID_ERR_NOMEM;
	j->run = run;
	j->done = done;
	j->arg = arg;
	pthread_mutex_lock(&p->mu);
	if (p->tail != NULL)
		p->tail->next = j;
	else
		p->head = j;
	p->tail = j;
	p->queued++;
	pthread_cond_signal(&p->cv);
	pthread_mutex_unlock(&p->mu);
	return CUBEID_OK;
}

/* ------------------------------------------------------------ cache */

struct svid_cache {
	struct agent *a;
	struct x509_item *x_head, *x_tail; /* LRU, most recent first */
	size_t n_x509;
	struct jwt_item *j_head, *j_tail;
	size_t n_jwt;
	long sweep_timer;
	bool closing;
	/* the items by key: lookups were a strcmp() walk of the LRU list,
	 * 20,000 long for JWT-SVIDs with many audiences */
	struct x509_item **x_index;
	struct jwt_item **j_index;
	uint64_t ca_gen; /* bumped when the CA is swapped (svid_cache_x509_reissue) */
};

/* FNV-1a, 64 bits */
static uint64_t
key_hash(const char *s)
{
	uint64_t h = 0xcbf29ce484222325ULL;

	for (; *s != '\0'; s++)
		h = (h ^ (uint8_t)*s) * 0x100000001b3ULL;
	return h;
}

#define INDEX_FNS(name, type, field)                                                               \
	static void name##_index_add(struct svid_cache *c, type *it)                               \
	{                                                                                          \
		type **b = &c->field[it->hash & (AGENT_CACHE_BUCKETS - 1)];                        \
		it->hnext = *b;                                                                    \
		*b = it;                                                                           \
	}                                                                                          \
	static void name##_index_del(struct svid_cache *c, type *it)                               \
	{                                                                                          \
		type **p = &c->field[it->hash & (AGENT_CACHE_BUCKETS - 1)];                        \
		while (*p != NULL && *p != it)                                                     \
			p = &(*p)->hnext;                                                          \
		if (*p == it)                                                                      \
			*p = it->hnext;                                                            \
		it->hnext = NULL;                                                                  \
	}
INDEX_FNS(x509, struct x509_item, x_index)
INDEX_FNS(jwt, struct jwt_item, j_index)

static int64_t
now_s(void)
{
	return (int64_t)time(NULL);
}

static int64_t
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

#define LRU_UNLINK(c, it, head, tail)                                                              \
	do {                                                                                       \
		if ((it)->prev != NULL)                                                            \
			(it)->prev->next = (it)->next;                                             \
		else                                                                               \
			(c)->head = (it)->next;                                                    \
		if ((it)->next != NULL)                                                            \
			(it)->next->prev = (it)->prev;                                             \
		else                                                                               \
			(c)->tail = (it)->prev;                                                    \
		(it)->next = (it)->prev = NULL;                                                    \
	} while (0)

#define LRU_PUSH(c, it, head, tail)                                                                \
	do {                                                                                       \
		(it)->prev = NULL;                                                                 \
		(it)->next = (c)->head;                                                            \
		if ((c)->head != NULL)                                                             \
			(c)->head->prev = (it);                                                    \
		(c)->head = (it);                                                                  \
		if ((c)->tail == NULL)                                                             \
			(c)->tail = (it);                                                          \
	} while (0)

static void
x509_item_clear_svid(struct x509_item *it)
{
	cubeid_x509_svid_free(it->svid);
	it->svid = NULL;
	free(it->chain_der);
	it->chain_der = NULL;
	it->chain_der_len = 0;
	secbuf_free(it->key_der, it->key_der_len);
	it->key_der = NULL;
	it->key_der_len = 0;
}

static void
x509_item_free(struct x509_item *it)
{
	size_t i;

	if (it == NULL)
		return;
	x509_item_clear_svid(it);
	for (i = 0; i < it->n_dns; i++)
		free(it->dns[i]);
	free(it->dns);
	free(it->key);
	free(it->spiffe_id);
	free(it->entry_name);
	free(it->hint);
	free(it);
}

static void
jwt_item_free(struct jwt_item *it)
{
	size_t i;

	if (it == NULL)
		return;
	for (i = 0; i < it->n_aud; i++)
		free(it->aud[i]);
	free(it->aud);
	free(it->key);
	free(it->spiffe_id);
	if (it->token != NULL) {
		OPENSSL_cleanse(it->token, strlen(it->token));
		free(it->token);
	}
	free(it);
}

bool
x509_item_ready(const struct x509_item *it)
{
	return it->svid != NULL && it->not_after > now_s();
}

bool
jwt_item_ready(const struct jwt_item *it)
{
	/* reusable until half its lifetime has passed */
	return it->token != NULL && now_s() < it->iat + (it->exp - it->iat) / 2;
}

/* ---- X.509 mint job ---- */

struct x509_job {
	struct svid_cache *c;
	struct x509_item *it;
	cubeid_ca *ca;
	cubeid_token *key_token; /* the workload token, or NULL: the CA's */
	/* results */
	int rc;
	cubeid_x509_svid *svid;
	uint8_t *chain_der;
	size_t chain_der_len;
	uint8_t *key_der;
	size_t key_der_len;
	char serial[64];
	double secs;       /* time in the worker, for the metrics */
	int64_t issued_ms; /* when the mint started */
	uint64_t ca_gen;   /* the cache's ca_gen when it started */
};

static int
chain_to_der(STACK_OF(X509) * chain, uint8_t **out, size_t *len)
{
	uint8_t *buf = NULL, *p;
	size_t total = 0;
	int i, n;

	*out = NULL;
	*len = 0;
	for (i = 0; i < sk_X509_num(chain); i++) {
		if ((n = i2d_X509(sk_X509_value(chain, i), NULL)) <= 0)
			return CUBEID_ERR_CRYPTO;
		total += (size_t)n;
	}
	if (total == 0 || (buf = malloc(total)) == NULL)
		return CUBEID_ERR_NOMEM;
	p = buf;
	for (i = 0; i < sk_X509_num(chain); i++)
		if (i2d_X509(sk_X509_value(chain, i), &p) <= 0) {
			free(buf);
			return CUBEID_ERR_CRYPTO;
		}
	*out = buf;
	*len = total;
	return CUBEID_OK;
}

static void
serial_hex(X509 *x, char *out, size_t size)
{
	BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL);
	char *h = bn != NULL ? BN_bn2hex(bn) : NULL;

	snprintf(out, size, "%s", h != NULL ? h : "?");
	OPENSSL_free(h);
	BN_free(bn);
}

static void
x509_job_run(void *arg)
{
	struct x509_job *j = arg;
	struct cubeid_svid_req req = {0};
	cubeid_spiffe_id *id = NULL;
	uint8_t *k = NULL;
	size_t klen = 0;
	int rc;
	double t0 = metrics_now();

	j->issued_ms = now_ms();
	if ((rc = cubeid_spiffe_id_parse(j->it->spiffe_id, strlen(j->it->spiffe_id), &id, NULL)) !=
	    CUBEID_OK)
		goto out;
	req.id = id;
	req.dns = (const char *const *)j->it->dns;
	req.n_dns = j->it->n_dns;
	req.ttl = j->it->ttl;
	req.policy = CUBEID_SVID_KEY_EXPORTABLE;
	req.key_token = j->key_token;
	if ((rc = cubeid_x509_svid_mint(j->ca, &req, &j->svid)) != CUBEID_OK)
		goto out;
	if ((rc = chain_to_der(cubeid_x509_svid_chain(j->svid), &j->chain_der,
	                       &j->chain_der_len)) != CUBEID_OK)
		goto out;
	if ((rc = cubeid_x509_svid_key_pkcs8_der(j->svid, &k, &klen)) != CUBEID_OK)
		goto out;
	if ((j->key_der = secbuf_alloc(klen)) == NULL) {
		rc = CUBEID_ERR_NOMEM;
		goto out;
	}
	memcpy(j->key_der, k, klen);
	j->key_der_len = klen;
	serial_hex(cubeid_x509_svid_leaf(j->svid), j->serial, sizeof(j->serial));
out:
	if (k != NULL) {
		OPENSSL_cleanse(k, klen);
		free(k);
	}
	cubeid_spiffe_id_free(id);
	j->rc = rc;
	j->secs = metrics_now() - t0;
}

static void
x509_job_done(void *arg)
{
	struct x509_job *j = arg;
	struct x509_item *it = j->it;
	struct svid_cache *c = j->c;
	int64_t base, rot;

	it->minting = false;
	it->last_err = j->rc;
	if (!c->closing)
		agent_metrics_mint(c->a, METRIC_X509, j->rc, j->secs, it->svid != NULL);
	if (j->rc == CUBEID_OK && !c->closing) {
		x509_item_clear_svid(it);
		it->svid = j->svid;
		it->chain_der = j->chain_der;
		it->chain_der_len = j->chain_der_len;
		it->key_der = j->key_der;
		it->key_der_len = j->key_der_len;
		j->svid = NULL;
		j->chain_der = NULL;
		j->key_der = NULL;
		memcpy(it->serial, j->serial, sizeof(it->serial));
		it->not_after = cubeid_x509_svid_not_after(it->svid);
		/* Half the lifetime from issue, not from notBefore: notBefore is
		 * backdated 60 s for clock skew, which made every SVID with a TTL
		 * under two minutes due for rotation at once.  In milliseconds, so
		 * that short TTLs keep their jitter. */
		base = cubeid_x509_svid_not_before(it->svid) * 1000;
		if (j->issued_ms > base)
			base = j->issued_ms;
		if (base >= it->not_after * 1000 ||
		    cubeid_rotation_time(base, it->not_after * 1000, &rot) != CUBEID_OK)
			rot = it->not_after * 1000;
		/* Leave the next one time to arrive: a mint, a delivery's
		 * fsyncs and the workload's reload took up to half a second
		 * on a busy machine, and at 40% of a 2 s life only 0.8 s
		 * would be left.  So renew at least AGENT_ROTATION_LEAD_MS
		 * (or half the life, if shorter) before notAfter: for short
		 * lives the jitter then only moves the renewal earlier. */
		else {
			int64_t life = it->not_after * 1000 - base;
			int64_t lead = life / 2 < AGENT_ROTATION_LEAD_MS ? life / 2
			                                                 : AGENT_ROTATION_LEAD_MS;

			if (rot > it->not_after * 1000 - lead)
				rot = it->not_after * 1000 - lead;
		}
		/* minted by a CA swapped out while it ran: due again now */
		if (j->ca_gen != c->ca_gen)
			rot = 0;
		it->rotate_at_ms = rot;
		it->rotate_at = rot / 1000;
		it->version++;
		cubeid_info("minted x509-svid spiffe_id=%s entry=%s serial=%s not_after=%lld "
		            "rotate_at=%lld",
		            it->spiffe_id, it->entry_name, it->serial, (long long)it->not_after,
		            (long long)it->rotate_at);
	} else if (j->rc != CUBEID_OK) {
		cubeid_warn("minting x509-svid for %s failed: %s", it->spiffe_id,
		            cubeid_strerror(j->rc));
	}
	cubeid_x509_svid_free(j->svid);
	free(j->chain_der);
	secbuf_free(j->key_der, j->key_der_len);
	if (!c->closing && c->a->wapi != NULL)
		wapi_x509_changed(c->a->wapi, it);
	if (!c->closing && j->rc == CUBEID_OK && c->a->delivery != NULL)
		delivery_x509_changed(c->a->delivery);
	svid_cache_x509_put(c, it);
	free(j);
}

static void
x509_start_mint(struct svid_cache *c, struct x509_item *it)
{
	struct x509_job *j;
	int rc;

	if (it->minting)
		return;
	if ((j = calloc(1, sizeof(*j))) == NULL) {
		it->last_err = CUBEID_ERR_NOMEM;
		return;
	}
	j->c = c;
	j->it = it;
	j->ca = c->a->ca;
	j->ca_gen = c->ca_gen;
	j->key_token = c->a->wtok;
	it->refs++;
	it->minting = true;
	if ((rc = worker_submit(c->a->pool, x509_job_run, x509_job_done, j)) != CUBEID_OK) {
		it->minting = false;
		it->refs--;
		it->last_err = rc;
		free(j);
	}
}

static void
x509_evict_locked_out(struct svid_cache *c)
{
	struct x509_item *it, *prev;

	/* least recently used first; only items no one holds */
	for (it = c->x_tail; it != NULL && c->n_x509 > AGENT_X509_CACHE_MAX; it = prev) {
		prev = it->prev;
		if (it->refs > 1 || it->minting)
			continue;
		LRU_UNLINK(c, it, x_head, x_tail);
		x509_index_del(c, it);
		c->n_x509--;
		x509_item_free(it);
	}
}

int
svid_cache_x509_get(struct svid_cache *c, const struct reg_entry *e, const char *id,
                    struct x509_item **out)
{
	struct x509_item *it;
	size_t klen, i;
	uint64_t h;
	char *key;

	*out = NULL;
	klen = strlen(e->name) + 1 + strlen(id) + 1;
	if ((key = malloc(klen)) == NULL)
		return CUBEID_ERR_NOMEM;
	snprintf(key, klen, "%s\n%s", e->name, id);
	h = key_hash(key);
	for (it = c->x_index[h & (AGENT_CACHE_BUCKETS - 1)]; it != NULL; it = it->hnext)
		if (it->hash == h && strcmp(it->key, key) == 0)
			break;
	if (it != NULL) {
		free(key);
		LRU_UNLINK(c, it, x_head, x_tail);
	} else {
		if ((it = calloc(1, sizeof(*it))) == NULL) {
			free(key);
			return CUBEID_ERR_NOMEM;
		}
		it->key = key;
		it->hash = h;
		it->refs = 1; /* the cache's */
		if ((it->spiffe_id = strdup(id)) == NULL ||
		    (it->entry_name = strdup(e->name)) == NULL)
			goto nomem;
		if (e->hint != NULL && (it->hint = strdup(e->hint)) == NULL)
			goto nomem;
		for (i = 0; e->dns != NULL && e->dns[i] != NULL; i++)
			;
		if (i > 0) {
			if ((it->dns = calloc(i, sizeof(*it->dns))) == NULL)
				goto nomem;
			for (it->n_dns = 0; it->n_dns < i; it->n_dns++)
				if ((it->dns[it->n_dns] = strdup(e->dns[it->n_dns])) == NULL)
					goto nomem;
		}
		it->ttl = e->x509_ttl > 0 ? e->x509_ttl : c->a->cfg->x509_svid_ttl;
		c->n_x509++;
		x509_index_add(c, it);
	}
	LRU_PUSH(c, it, x_head, x_tail);
	it->last_used = time(NULL);
	it->refs++;
	if (!x509_item_ready(it) || now_ms() >= it->rotate_at_ms)
		x509_start_mint(c, it);
	x509_evict_locked_out(c);
	*out = it;
	return CUBEID_OK;
nomem:
	x509_item_free(it);
	return CUBEID_ERR_NOMEM;
}

void
svid_cache_x509_put(struct svid_cache *c, struct x509_item *it)
{
	(void)c;
	if (it == NULL)
		return;
	if (--it->refs == 0)
		x509_item_free(it); /* already out of the cache */
}

/* ---- JWT ---- */

struct jwt_job {
	struct svid_cache *c;
	struct jwt_item *it;
	struct agent *a;
	int rc;
	char *token;
	char jti[40];
	int64_t iat;
	double secs; /* time in the worker, for the metrics */
};

/* 16 random bytes for a jti, from a per-thread pool: RAND_bytes() costs
 * about as much for 16 bytes as for 1 KiB (a jti is not a secret; it only
 * has to be unique). */
static int
jti_random(uint8_t out[16])
{
	static __thread uint8_t pool[1024];
	static __thread size_t left;

	if (left < 16) {
		if (RAND_bytes(pool, sizeof(pool)) != 1)
			return -1;
		left = sizeof(pool);
	}
	memcpy(out, pool + sizeof(pool) - left, 16);
	left -= 16;
	return 0;
}

static void
jwt_job_run(void *arg)
{
	struct jwt_job *j = arg;
	cubeid_spiffe_id *id = NULL;
	uint8_t rnd[16];
	size_t i;
	int rc;
	double t0 = metrics_now();

	if ((rc = cubeid_spiffe_id_parse(j->it->spiffe_id, strlen(j->it->spiffe_id), &id, NULL)) !=
	    CUBEID_OK)
		goto out;
	if (jti_random(rnd) != 0) {
		rc = CUBEID_ERR_CRYPTO;
		goto out;
	}
	for (i = 0; i < sizeof(rnd); i++)
		snprintf(j->jti + 2 * i, 3, "%02x", rnd[i]);
	j->iat = now_s();
	pthread_rwlock_rdlock(&j->a->jwt_lock);
	rc = cubeid_jwt_keys_mint(j->a->jwt_keys, j->a->tok, j->iat, CUBEID_SIG_NONE, id,
	                          (const char *const *)j->it->aud, j->it->n_aud, j->it->ttl, j->jti,
	                          &j->token);
	pthread_rwlock_unlock(&j->a->jwt_lock);
out:
	cubeid_spiffe_id_free(id);
	j->rc = rc;
	j->secs = metrics_now() - t0;
}

static void
jwt_job_done(void *arg)
{
	struct jwt_job *j = arg;
	struct jwt_item *it = j->it;
	struct svid_cache *c = j->c;

	it->minting = false;
	it->last_err = j->rc;
	if (!c->closing)
		agent_metrics_mint(c->a, METRIC_JWT, j->rc, j->secs, it->token != NULL);
	if (j->rc == CUBEID_OK && !c->closing) {
		if (it->token != NULL) {
			OPENSSL_cleanse(it->token, strlen(it->token));
			free(it->token);
		}
		it->token = j->token;
		j->token = NULL;
		memcpy(it->jti, j->jti, sizeof(it->jti));
		it->iat = j->iat;
		it->exp = j->iat + it->ttl;
	} else if (j->rc != CUBEID_OK) {
		cubeid_warn("minting jwt-svid for %s failed: %s", it->spiffe_id,
		            cubeid_strerror(j->rc));
	}
	free(j->token);
	if (!c->closing && c->a->wapi != NULL)
		wapi_jwt_changed(c->a->wapi, it);
	svid_cache_jwt_put(c, it);
	free(j);
}

static int
cmp_str(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

int
svid_cache_jwt_get(struct svid_cache *c, const char *id, const char *const *aud, size_t n_aud,
                   int64_t ttl, struct jwt_item **out)
{
	const char *sorted[AGENT_JWT_AUD_MAX];
	struct jwt_item *it, *prev;
	struct jwt_job *j;
	size_t i, n = 0, klen;
	uint64_t h;
	char *key = NULL, *p;
	int rc;

	*out = NULL;
	if (n_aud == 0 || n_aud > AGENT_JWT_AUD_MAX)
		return CUBEID_ERR_INVALID_ARG;
	for (i = 0; i < n_aud; i++)
		sorted[i] = aud[i];
	qsort(sorted, n_aud, sizeof(sorted[0]), cmp_str);
	klen = strlen(id) + 2;
	for (i = 0; i < n_aud; i++) {
		if (i > 0 && strcmp(sorted[i], sorted[n - 1]) == 0)
			continue;
		sorted[n++] = sorted[i];
		klen += strlen(sorted[i]) + 1;
	}
	if ((key = malloc(klen)) == NULL)
		return CUBEID_ERR_NOMEM;
	p = key + sprintf(key, "%s", id);
	for (i = 0; i < n; i++)
		p += sprintf(p, "\n%s", sorted[i]);
	h = key_hash(key);
	for (it = c->j_index[h & (AGENT_CACHE_BUCKETS - 1)]; it != NULL; it = it->hnext)
		if (it->hash == h && it->ttl == ttl && strcmp(it->key, key) == 0)
			break;
	if (it != NULL) {
		free(key);
		LRU_UNLINK(c, it, j_head, j_tail);
	} else {
		if ((it = calloc(1, sizeof(*it))) == NULL) {
			free(key);
			return CUBEID_ERR_NOMEM;
		}
		it->key = key;
		it->hash = h;
		it->refs = 1;
		it->ttl = ttl;
		if ((it->spiffe_id = strdup(id)) == NULL ||
		    (it->aud = calloc(n, sizeof(*it->aud))) == NULL) {
			jwt_item_free(it);
			return CUBEID_ERR_NOMEM;
		}
		for (it->n_aud = 0; it->n_aud < n; it->n_aud++)
			if ((it->aud[it->n_aud] = strdup(sorted[it->n_aud])) == NULL) {
				jwt_item_free(it);
				return CUBEID_ERR_NOMEM;
			}
		c->n_jwt++;
		jwt_index_add(c, it);
	}
	LRU_PUSH(c, it, j_head, j_tail);
	it->last_used = time(NULL);
	it->refs++;
	if (!jwt_item_ready(it) && !it->minting) {
		if ((j = calloc(1, sizeof(*j))) == NULL) {
			it->last_err = CUBEID_ERR_NOMEM;
		} else {
			j->c = c;
			j->it = it;
			j->a = c->a;
			it->refs++;
			it->minting = true;
			if ((rc = worker_submit(c->a->pool, jwt_job_run, jwt_job_done, j)) !=
			    CUBEID_OK) {
				it->minting = false;
				it->refs--;
				it->last_err = rc;
				free(j);
			}
		}
	}
	for (it = c->j_tail; it != NULL && c->n_jwt > AGENT_JWT_CACHE_MAX; it = prev) {
		prev = it->prev;
		if (it->refs > 1 || it->minting)
			continue;
		LRU_UNLINK(c, it, j_head, j_tail);
		jwt_index_del(c, it);
		c->n_jwt--;
		jwt_item_free(it);
	}
	*out = c->j_head;
	return CUBEID_OK;
}

void
svid_cache_jwt_put(struct svid_cache *c, struct jwt_item *it)
{
	(void)c;
	if (it == NULL)
		return;
	if (--it->refs == 0)
		jwt_item_free(it);
}

/* ---- sweep: rotation of watched SVIDs, expiry of the rest ---- */

static long
sweep(cubeid_loop *l, void *arg)
{
	struct svid_cache *c = arg;
	struct x509_item *it, *next;
	struct jwt_item *jt, *jnext;
	int64_t now = now_s(), nms = now_ms();
	long wait = AGENT_SWEEP_MS;

	(void)l;
	for (it = c->x_head; it != NULL; it = next) {
		next = it->next;
		if (it->subscribers > 0) {
			/* watched: renew on time, and retry a failed mint */
			if (!it->minting && (it->svid == NULL || nms >= it->rotate_at_ms))
				x509_start_mint(c, it);
			/* on time: run again at the next rotation rather than up
			 * to a whole period after it (a quarter of a 2 s TTL's
			 * margin) */
			else if (!it->minting && it->rotate_at_ms - nms < wait)
				wait = (long)(it->rotate_at_ms - nms);
			continue;
		}
		if (it->refs == 1 && !it->minting && (it->svid == NULL || now >= it->not_after)) {
			LRU_UNLINK(c, it, x_head, x_tail);
			x509_index_del(c, it);
			c->n_x509--;
			x509_item_free(it);
		}
	}
	for (jt = c->j_head; jt != NULL; jt = jnext) {
		jnext = jt->next;
		if (jt->refs == 1 && !jt->minting && (jt->token == NULL || now >= jt->exp)) {
			LRU_UNLINK(c, jt, j_head, j_tail);
			jwt_index_del(c, jt);
			c->n_jwt--;
			jwt_item_free(jt);
		}
	}
	return wait > 0 ? wait : 1;
}

int
svid_cache_new(struct agent *a, struct svid_cache **out)
{
	struct svid_cache *c;

	*out = NULL;
	if ((c = calloc(1, sizeof(*c))) == NULL)
		return CUBEID_ERR_NOMEM;
	c->a = a;
	if ((c->x_index = calloc(AGENT_CACHE_BUCKETS, sizeof(*c->x_index))) == NULL ||
	    (c->j_index = calloc(AGENT_CACHE_BUCKETS, sizeof(*c->j_index))) == NULL ||
	    (c->sweep_timer = loop_timer_add(a->loop, AGENT_SWEEP_MS, sweep, c)) <= 0) {
		free(c->x_index);
		free(c->j_index);
		free(c);
		return CUBEID_ERR_NOMEM;
	}
	*out = c;
	return CUBEID_OK;
}

void
svid_cache_flush_unused(struct svid_cache *c)
{
	struct x509_item *it, *next;
	struct jwt_item *jt, *jnext;

	for (it = c->x_head; it != NULL; it = next) {
		next = it->next;
		if (it->refs == 1 && !it->minting) {
			LRU_UNLINK(c, it, x_head, x_tail);
			x509_index_del(c, it);
			c->n_x509--;
			x509_item_free(it);
		}
	}
	for (jt = c->j_head; jt != NULL; jt = jnext) {
		jnext = jt->next;
		if (jt->refs == 1 && !jt->minting) {
			LRU_UNLINK(c, jt, j_head, j_tail);
			jwt_index_del(c, jt);
			c->n_jwt--;
			jwt_item_free(jt);
		}
	}
}

void
svid_cache_x509_reissue(struct svid_cache *c)
{
	struct x509_item *it;
	size_t n = 0;

	c->ca_gen++;
	svid_cache_flush_unused(c);
	for (it = c->x_head; it != NULL; it = it->next) {
		it->rotate_at_ms = 0;
		it->rotate_at = 0;
		if (it->subscribers > 0 && !it->minting) {
			x509_start_mint(c, it);
			n++;
		}
	}
	cubeid_notice("reissuing %zu watched X.509-SVIDs from the new CA", n);
}

void
svid_cache_shutdown(struct svid_cache *c)
{
	if (c != NULL)
		c->closing = true;
}

void
svid_cache_free(struct svid_cache *c)
{
	struct x509_item *it, *next;
	struct jwt_item *jt, *jnext;

	if (c == NULL)
		return;
	/* the worker pool is already joined: nothing is minting any more */
	c->closing = true;
	loop_timer_del(c->a->loop, c->sweep_timer);
	for (it = c->x_head; it != NULL; it = next) {
		next = it->next;
		it->next = it->prev = NULL;
		svid_cache_x509_put(c, it);
	}
	for (jt = c->j_head; jt != NULL; jt = jnext) {
		jnext = jt->next;
		jt->next = jt->prev = NULL;
		svid_cache_jwt_put(c, jt);
	}
	free(c->x_index);
	free(c->j_index);
	free(c);
}

void
svid_cache_stats(const struct svid_cache *c, size_t *n_x509, size_t *n_jwt, int64_t *next_rotation)
{
	const struct x509_item *it;
	int64_t next = 0;

	for (it = c->x_head; it != NULL; it = it->next)
		if (it->svid != NULL && (next == 0 || it->rotate_at < next))
			next = it->rotate_at;
	if (n_x509 != NULL)
		*n_x509 = c->n_x509;
	if (n_jwt != NULL)
		*n_jwt = c->n_jwt;
	if (next_rotation != NULL)
		*next_rotation = next;
}
