/*
 * File delivery by the agent (docs/entries.md, "delivery"): for every entry
 * that names a directory, the agent holds the entry's X.509-SVID (and its
 * JWT-SVIDs) in the SVID cache, so that they rotate at half their lifetime,
 * and writes the files as one atomic set (<cubeid/atomic-dir.h>) whenever
 * the SVID, a JWT-SVID or a bundle changes.  After each write it signals a
 * process and/or runs a command (no shell).  A failed write or action is
 * logged and retried with exponential backoff (1 s to 60 s).
 *
 * The loop thread notices changes (at once for a new X.509-SVID, else by
 * a 200 ms poll) and encodes the PEM files; one delivery thread does the
 * writing (fsync can be slow), the signalling and the commands, and hands
 * results back with loop_post().
 */
#include "config.h"

#include "agent/daemon.h"

#include <cubeid/atomic-dir.h>
#include <cubeid/log.h>

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#define DELIVERY_POLL_MS        200
#define DELIVERY_BACKOFF_MIN_MS 1000
#define DELIVERY_BACKOFF_MAX_MS 60000
#define DELIVERY_CMD_TIMEOUT_MS 60000
#define DELIVERY_FILES_MAX      (4 + 16)

struct target {
	struct delivery *d;
	char *key; /* the configuration, canonical: an unchanged entry keeps its target */
	char *name;
	char *spiffe_id;
	struct entry_delivery *cfg; /* a copy */
	struct x509_item *x;        /* held and subscribed, when cfg has x509 files */
	struct jwt_item **jwt;      /* held, one per cfg->jwt */
	int64_t jwt_ttl;
	/* what the last successful write delivered */
	bool done_once;
	uint64_t x_version;
	uint64_t bundle_hash;
	char (*jti)[40];
	/* state */
	bool busy, removed, action_pending, stale;
	unsigned fails;
	int64_t next_ms;
	struct target *next;
};

struct djob {
	struct target *t;
	bool write;
	struct cubeid_adir_file files[DELIVERY_FILES_MAX];
	uint8_t *buf[DELIVERY_FILES_MAX];
	size_t n;
	size_t secret; /* index of the key file in buf (secbuf), or SIZE_MAX */
	uint64_t x_version, bundle_hash;
	char (*jti)[40];
	int64_t *jexp;   /* the JWT-SVIDs' exp, for the audit line */
	bool *jnew;      /* which JWT-SVIDs this write hands out first */
	bool xnew;       /* the same for the X.509-SVID */
	char serial[64]; /* the X.509-SVID's, for the audit line */
	int64_t not_after;
	/* results */
	int write_rc, write_errno, act_rc;
	const char *write_why, *act_why;
	struct djob *next;
};

struct delivery {
	struct agent *a;
	struct target *targets;
	long timer;
	pthread_t thread;
	bool thread_ok;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct djob *queue, *done; /* under mu */
	bool stop;                 /* under mu */
};

static int64_t
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static uint64_t
fnv(uint64_t h, const void *p, size_t n)
{
	const unsigned char *s = p;
	size_t i;

	for (i = 0; i < n; i++)
		h = (h ^ s[i]) * 1099511628211ULL;
	return h;
}

/* ------------------------------------------------------------ jobs */

static void
job_free(struct djob *j)
{
	size_t i;

	if (j == NULL)
		return;
	for (i = 0; i < j->n; i++) {
		if (i == j->secret)
			secbuf_free(j->buf[i], j->files[i].len);
		else
			free(j->buf[i]);
	}
	free(j->jti);
	free(j->jexp);
	free(j->jnew);
	free(j);
}

/* The actions after a write, in the delivery thread. */
static int
run_actions(const struct entry_delivery *c, const char **why)
{
	pid_t pid = (pid_t)c->pid;
	int rc;

	*why = "ok";
	if (c->signal != 0) {
		if (c->pid_file != NULL &&
		    (rc = cubeid_pid_file_read(c->pid_file, &pid)) != CUBEID_OK) {
			*why = rc == CUBEID_ERR_NOT_FOUND ? "the pid file does not exist"
			                                  : "the pid file holds no pid";
			return rc;
		}
		if (pid <= 1) { /* a pid file naming init: never signalled */
			*why = "the pid file names pid 1";
			return CUBEID_ERR_PERMISSION;
		}
		if (kill(pid, c->signal) != 0) {
			*why = errno == ESRCH ? "no process has the pid" : "kill() failed";
			return CUBEID_ERR_IO;
		}
	}
	if (c->command != NULL &&
	    (rc = cubeid_run(c->command, DELIVERY_CMD_TIMEOUT_MS, why)) != CUBEID_OK)
		return rc;
	return CUBEID_OK;
}

/*
 * The audit line of every credential a delivery hands out, once it is in
 * its directory, as the Workload API logs its issuances (cubeid-agent(8),
 * LOGGING AND AUDIT): at notice, one line per new X.509-SVID or JWT-SVID.
 * On the delivery thread; what is new was decided in build_write().
 */
static void
audit_delivered(const struct djob *j)
{
	const struct entry_delivery *c = j->t->cfg;
	size_t i;

	if (j->xnew)
		cubeid_notice("issued x509-svid spiffe_id=%s delivery=%s entry=%s serial=%s "
		              "not_after=%lld",
		              j->t->spiffe_id, c->dir, j->t->name, j->serial,
		              (long long)j->not_after);
	for (i = 0; i < c->n_jwt; i++)
		if (j->jnew[i])
			cubeid_notice("issued jwt-svid spiffe_id=%s delivery=%s entry=%s aud=[%s] "
			              "jti=%s exp=%lld",
			              j->t->spiffe_id, c->dir, j->t->name, c->jwt[i].audience,
			              j->jti[i], (long long)j->jexp[i]);
}

static void
job_run(struct djob *j)
{
	const struct entry_delivery *c = j->t->cfg;
	struct cubeid_adir_opts o = {(uid_t)c->uid, (gid_t)c->gid, 0755, c->allow_unsafe_parent};

	j->write_rc = CUBEID_OK;
	j->act_rc = CUBEID_OK;
	if (j->write) {
		j->write_rc = cubeid_adir_write(c->dir, j->files, j->n, &o, &j->write_why);
		j->write_errno = errno;
		if (j->write_rc != CUBEID_OK)
			return;
		audit_delivered(j);
	}
	if (c->signal != 0 || c->command != NULL)
		j->act_rc = run_actions(c, &j->act_why);
}

static void on_results(void *arg);

static void *
thread_main(void *arg)
{
	struct delivery *d = arg;
	struct djob *j;

	for (;;) {
		pthread_mutex_lock(&d->mu);
		while (d->queue == NULL && !d->stop)
			pthread_cond_wait(&d->cv, &d->mu);
		if (d->stop) {
			pthread_mutex_unlock(&d->mu);
			return NULL;
		}
		j = d->queue;
		d->queue = j->next;
		pthread_mutex_unlock(&d->mu);

		job_run(j);

		pthread_mutex_lock(&d->mu);
		j->next = d->done;
		d->done = j;
		pthread_mutex_unlock(&d->mu);
		/* if the post fails, the poll timer collects the result */
		(void)loop_post(d->a->loop, on_results, d);
	}
}

static void
submit(struct delivery *d, struct djob *j)
{
	j->t->busy = true;
	pthread_mutex_lock(&d->mu);
	j->next = d->queue;
	d->queue = j;
	pthread_cond_signal(&d->cv);
	pthread_mutex_unlock(&d->mu);
}

/* ------------------------------------------------------------ targets */

static void
target_free(struct target *t)
{
	struct svid_cache *c = t->d->a->cache;
	size_t i;

	if (t->x != NULL) {
		t->x->subscribers--;
		svid_cache_x509_put(c, t->x);
	}
	for (i = 0; t->jwt != NULL && i < t->cfg->n_jwt; i++)
		svid_cache_jwt_put(c, t->jwt[i]);
	free(t->jwt);
	free(t->jti);
	entry_delivery_free(t->cfg);
	free(t->key);
	free(t->name);
	free(t->spiffe_id);
	free(t);
}

static char *
xstrdup(const char *s, bool *fail)
{
	char *r;

	if (s == NULL)
		return NULL;
	if ((r = strdup(s)) == NULL)
		*fail = true;
	return r;
}

static struct entry_delivery *
delivery_dup(const struct entry_delivery *s)
{
	struct entry_delivery *d = calloc(1, sizeof(*d));
	bool fail = false;
	size_t i, n;

	if (d == NULL)
		return NULL;
	*d = *s;
	d->jwt = NULL;
	d->n_jwt = 0;
	d->command = NULL;
	d->dir = xstrdup(s->dir, &fail);
	d->svid_file = xstrdup(s->svid_file, &fail);
	d->key_file = xstrdup(s->key_file, &fail);
	d->bundle_file = xstrdup(s->bundle_file, &fail);
	d->jwt_bundle_file = xstrdup(s->jwt_bundle_file, &fail);
	d->pid_file = xstrdup(s->pid_file, &fail);
	if (s->n_jwt > 0 && (d->jwt = calloc(s->n_jwt, sizeof(*d->jwt))) == NULL)
		fail = true;
	for (i = 0; d->jwt != NULL && i < s->n_jwt; i++, d->n_jwt++) {
		d->jwt[i].audience = xstrdup(s->jwt[i].audience, &fail);
		d->jwt[i].file = xstrdup(s->jwt[i].file, &fail);
	}
	if (s->command != NULL) {
		for (n = 0; s->command[n] != NULL; n++)
			;
		if ((d->command = calloc(n + 1, sizeof(*d->command))) == NULL)
			fail = true;
		for (i = 0; d->command != NULL && i < n; i++)
			d->command[i] = xstrdup(s->command[i], &fail);
	}
	if (fail) {
		entry_delivery_free(d);
		return NULL;
	}
	return d;
}

/* Everything that, when it changes, needs a new target. */
static char *
canon_key(const struct reg_entry *e, const char *id)
{
	const struct entry_delivery *c = e->delivery;
	char *s = NULL, *t;
	size_t i;

	if (asprintf(&s, "%s\n%s\n%ld %ld\n%s\n%s %s %s %s\n%o %o %o %o %ld %ld %d %ld %s %d",
	             e->name, id, e->x509_ttl, e->jwt_ttl, c->dir,
	             c->svid_file ? c->svid_file : "-", c->key_file ? c->key_file : "-",
	             c->bundle_file ? c->bundle_file : "-",
	             c->jwt_bundle_file ? c->jwt_bundle_file : "-", c->cert_mode, c->key_mode,
	             c->jwt_svid_mode, c->jwt_bundle_mode, c->uid, c->gid, c->signal, c->pid,
	             c->pid_file ? c->pid_file : "-", c->allow_unsafe_parent) < 0)
		return NULL;
	for (i = 0; i < c->n_jwt; i++) {
		if (asprintf(&t, "%s\njwt %s %s", s, c->jwt[i].audience, c->jwt[i].file) < 0) {
			free(s);
			return NULL;
		}
		free(s);
		s = t;
	}
	for (i = 0; c->command != NULL && c->command[i] != NULL; i++) {
		if (asprintf(&t, "%s\ncmd %s", s, c->command[i]) < 0) {
			free(s);
			return NULL;
		}
		free(s);
		s = t;
	}
	return s;
}

static int
target_new(struct delivery *d, const struct reg_entry *e, const char *id, char *key,
           struct target **out)
{
	struct agent *a = d->a;
	struct target *t;
	struct cubeid_adir_opts o = {(uid_t)-1, (gid_t)-1, 0, false};
	unsigned removed = 0;
	const char *why = NULL;
	size_t i;
	int rc = CUBEID_ERR_NOMEM;

	*out = NULL;
	if ((t = calloc(1, sizeof(*t))) == NULL)
		return CUBEID_ERR_NOMEM;
	t->d = d;
	t->key = key;
	if ((t->cfg = delivery_dup(e->delivery)) == NULL || (t->name = strdup(e->name)) == NULL ||
	    (t->spiffe_id = strdup(id)) == NULL)
		goto fail;
	t->jwt_ttl = e->jwt_ttl > 0 ? e->jwt_ttl : a->cfg->jwt_svid_ttl;
	if (t->cfg->n_jwt > 0 && ((t->jwt = calloc(t->cfg->n_jwt, sizeof(*t->jwt))) == NULL ||
	                          (t->jti = calloc(t->cfg->n_jwt, sizeof(*t->jti))) == NULL))
		goto fail;
	if (t->cfg->svid_file != NULL) {
		if ((rc = svid_cache_x509_get(a->cache, e, id, &t->x)) != CUBEID_OK)
			goto fail;
		t->x->subscribers++; /* rotate it on time, like a stream's */
	}
	for (i = 0; i < t->cfg->n_jwt; i++) {
		const char *aud = t->cfg->jwt[i].audience;
		if ((rc = svid_cache_jwt_get(a->cache, id, &aud, 1, t->jwt_ttl, &t->jwt[i])) !=
		    CUBEID_OK)
			goto fail;
	}
	/* what a crash during an earlier delivery may have left */
	o.allow_unsafe_parent = t->cfg->allow_unsafe_parent;
	if (cubeid_adir_cleanup(t->cfg->dir, &o, &removed, &why) != CUBEID_OK)
		cubeid_warn("delivery %s: cleaning %s: %s: %s", t->name, t->cfg->dir, why,
		            strerror(errno));
	else if (removed > 0)
		cubeid_notice("delivery %s: removed %u leftovers of an interrupted update in %s",
		              t->name, removed, t->cfg->dir);
	cubeid_info("delivery %s: %s into %s", t->name, id, t->cfg->dir);
	*out = t;
	return CUBEID_OK;
fail:
	target_free(t);
	return rc;
}

/* ------------------------------------------------------------ encoding */

static int
bio_take(BIO *b, bool secret, uint8_t **out, size_t *len)
{
	char *p;
	long n = BIO_get_mem_data(b, &p);

	*out = NULL;
	*len = 0;
	if (n <= 0)
		return CUBEID_ERR_CRYPTO;
	*out = secret ? secbuf_alloc((size_t)n) : malloc((size_t)n);
	if (*out == NULL)
		return CUBEID_ERR_NOMEM;
	memcpy(*out, p, (size_t)n);
	*len = (size_t)n;
	return CUBEID_OK;
}

/* Concatenated DER certificates as PEM. */
static int
certs_pem(const uint8_t *der, size_t len, uint8_t **out, size_t *olen)
{
	const unsigned char *p = der, *end = der + len;
	BIO *b = BIO_new(BIO_s_mem());
	int rc = CUBEID_ERR_CRYPTO;

	if (b == NULL)
		return CUBEID_ERR_NOMEM;
	while (p < end) {
		X509 *x = d2i_X509(NULL, &p, (long)(end - p));
		if (x == NULL)
			goto out;
		if (PEM_write_bio_X509(b, x) != 1) {
			X509_free(x);
			goto out;
		}
		X509_free(x);
	}
	rc = bio_take(b, false, out, olen);
out:
	BIO_free(b);
	return rc;
}

static int
key_pem(const uint8_t *der, size_t len, uint8_t **out, size_t *olen)
{
	BIO *b = BIO_new(BIO_s_secmem()); /* wiped when freed */
	int rc = CUBEID_ERR_CRYPTO;

	if (b == NULL)
		return CUBEID_ERR_NOMEM;
	if (PEM_write_bio(b, "PRIVATE KEY", "", der, (long)len) > 0)
		rc = bio_take(b, true, out, olen);
	BIO_free(b);
	return rc;
}

static int
add_file(struct djob *j, const char *name, uint8_t *buf, size_t len, unsigned mode)
{
	if (buf == NULL)
		return CUBEID_ERR_NOMEM;
	j->buf[j->n] = buf;
	j->files[j->n].name = name;
	j->files[j->n].data = buf;
	j->files[j->n].len = len;
	j->files[j->n].mode = mode;
	j->n++;
	return CUBEID_OK;
}

static uint8_t *
copy(const void *p, size_t n)
{
	uint8_t *r = malloc(n > 0 ? n : 1);

	if (r != NULL && n > 0)
		memcpy(r, p, n);
	return r;
}

static int
build_write(struct target *t, uint64_t bundle_hash, struct djob **out)
{
	const struct entry_delivery *c = t->cfg;
	struct agent *a = t->d->a;
	struct djob *j;
	uint8_t *b;
	size_t i, len;
	int rc;

	*out = NULL;
	if ((j = calloc(1, sizeof(*j))) == NULL)
		return CUBEID_ERR_NOMEM;
	j->t = t;
	j->write = true;
	j->secret = SIZE_MAX;
	j->bundle_hash = bundle_hash;
	if (c->n_jwt > 0 && ((j->jti = calloc(c->n_jwt, sizeof(*j->jti))) == NULL ||
	                     (j->jexp = calloc(c->n_jwt, sizeof(*j->jexp))) == NULL ||
	                     (j->jnew = calloc(c->n_jwt, sizeof(*j->jnew))) == NULL)) {
		rc = CUBEID_ERR_NOMEM;
		goto fail;
	}
	if (c->svid_file != NULL) {
		j->x_version = t->x->version;
		memcpy(j->serial, t->x->serial, sizeof(j->serial));
		j->not_after = t->x->not_after;
		j->xnew = !t->done_once || j->x_version != t->x_version;
		if ((rc = certs_pem(t->x->chain_der, t->x->chain_der_len, &b, &len)) != CUBEID_OK ||
		    (rc = add_file(j, c->svid_file, b, len, c->cert_mode)) != CUBEID_OK)
			goto fail;
		if ((rc = key_pem(t->x->key_der, t->x->key_der_len, &b, &len)) != CUBEID_OK)
			goto fail;
		j->secret = j->n;
		if ((rc = add_file(j, c->key_file, b, len, c->key_mode)) != CUBEID_OK)
			goto fail;
		if ((rc = certs_pem(a->bundle_der, a->bundle_der_len, &b, &len)) != CUBEID_OK ||
		    (rc = add_file(j, c->bundle_file, b, len, c->cert_mode)) != CUBEID_OK)
			goto fail;
	}
	for (i = 0; i < c->n_jwt; i++) {
		const char *tok = t->jwt[i]->token;
		memcpy(j->jti[i], t->jwt[i]->jti, sizeof(j->jti[i]));
		j->jexp[i] = t->jwt[i]->exp;
		j->jnew[i] = !t->done_once || strcmp(t->jti[i], j->jti[i]) != 0;
		if ((rc = add_file(j, c->jwt[i].file, copy(tok, strlen(tok)), strlen(tok),
		                   c->jwt_svid_mode)) != CUBEID_OK)
			goto fail;
	}
	if (c->jwt_bundle_file != NULL &&
	    (rc = add_file(j, c->jwt_bundle_file, copy(a->jwks, a->jwks_len), a->jwks_len,
	                   c->jwt_bundle_mode)) != CUBEID_OK)
		goto fail;
	*out = j;
	return CUBEID_OK;
fail:
	job_free(j);
	return rc;
}

/* ------------------------------------------------------------ the loop side */

static int64_t
backoff_ms(unsigned fails)
{
	int64_t ms = DELIVERY_BACKOFF_MIN_MS;

	while (fails-- > 1 && ms < DELIVERY_BACKOFF_MAX_MS)
		ms *= 2;
	return ms < DELIVERY_BACKOFF_MAX_MS ? ms : DELIVERY_BACKOFF_MAX_MS;
}

static void
job_done(struct delivery *d, struct djob *j)
{
	struct target *t = j->t;
	int64_t now = now_ms();

	t->busy = false;
	if (t->removed) {
		job_free(j);
		target_free(t);
		return;
	}
	if (j->write && j->write_rc != CUBEID_OK) {
		t->fails++;
		t->next_ms = now + backoff_ms(t->fails);
		cubeid_error("delivery %s: writing %s failed: %s (%s); retrying in %lld ms",
		             t->name, t->cfg->dir, j->write_why, strerror(j->write_errno),
		             (long long)(t->next_ms - now));
		job_free(j);
		return;
	}
	if (j->write) {
		t->done_once = true;
		t->x_version = j->x_version;
		t->bundle_hash = j->bundle_hash;
		if (t->cfg->n_jwt > 0)
			memcpy(t->jti, j->jti, t->cfg->n_jwt * sizeof(*t->jti));
		cubeid_info("delivery %s: wrote %zu files to %s%s%s", t->name, j->n, t->cfg->dir,
		            t->x != NULL ? " serial=" : "", t->x != NULL ? t->x->serial : "");
	}
	if (j->act_rc != CUBEID_OK && d->a->stopping) {
		/* a command stopped at shutdown: deliver-exec.c said so */
	} else if (j->act_rc != CUBEID_OK) {
		t->action_pending = true;
		t->fails++;
		t->next_ms = now + backoff_ms(t->fails);
		cubeid_error("delivery %s: after the update: %s; retrying in %lld ms", t->name,
		             j->act_why, (long long)(t->next_ms - now));
	} else {
		t->action_pending = false;
		t->fails = 0;
		t->next_ms = 0;
	}
	job_free(j);
}

static void
collect(struct delivery *d)
{
	struct djob *list, *next;

	pthread_mutex_lock(&d->mu);
	list = d->done;
	d->done = NULL;
	pthread_mutex_unlock(&d->mu);
	for (; list != NULL; list = next) {
		next = list->next;
		job_done(d, list);
	}
}

static long poll_timer(cubeid_loop *l, void *arg);

/* Results, then the targets again: an SVID minted while its target's
 * previous write was still running (a slow fsync) is written now, not at
 * the next poll, up to 200 ms later (a quarter of a 2 s SVID's margin). */
static void
on_results(void *arg)
{
	(void)poll_timer(NULL, arg);
}

static uint64_t
bundles_hash(const struct agent *a)
{
	uint64_t h = 14695981039346656037ULL;

	if (a->bundle_der != NULL)
		h = fnv(h, a->bundle_der, a->bundle_der_len);
	if (a->jwks != NULL)
		h = fnv(h, a->jwks, a->jwks_len);
	return h;
}

static void
check_target(struct delivery *d, struct target *t, uint64_t bh, int64_t now)
{
	struct djob *j = NULL;
	bool ready = true, changed;
	size_t i;
	int rc;

	if (t->busy || now < t->next_ms)
		return;
	if (t->x != NULL && !x509_item_ready(t->x))
		ready = false;
	for (i = 0; i < t->cfg->n_jwt; i++) {
		struct jwt_item *it = t->jwt[i], *again = NULL;
		const char *aud = t->cfg->jwt[i].audience;

		/* past half its life: the cache mints a new one on a get */
		if (!jwt_item_ready(it) && !it->minting &&
		    svid_cache_jwt_get(d->a->cache, t->spiffe_id, &aud, 1, t->jwt_ttl, &again) ==
		            CUBEID_OK)
			svid_cache_jwt_put(d->a->cache, again);
		if (it->token == NULL)
			ready = false;
	}
	if (!ready)
		return;
	changed = !t->done_once || (t->x != NULL && t->x->version != t->x_version);
	if (!changed && (t->x != NULL || t->cfg->jwt_bundle_file != NULL))
		changed = bh != t->bundle_hash;
	for (i = 0; !changed && i < t->cfg->n_jwt; i++)
		changed = strcmp(t->jti[i], t->jwt[i]->jti) != 0;
	if (changed) {
		if ((rc = build_write(t, bh, &j)) != CUBEID_OK) {
			cubeid_error("delivery %s: %s", t->name, cubeid_strerror(rc));
			t->fails++;
			t->next_ms = now + backoff_ms(t->fails);
			return;
		}
	} else if (t->action_pending) {
		if ((j = calloc(1, sizeof(*j))) == NULL)
			return;
		j->t = t;
		j->secret = SIZE_MAX;
	} else {
		return;
	}
	submit(d, j);
}

static long
poll_timer(cubeid_loop *l, void *arg)
{
	struct delivery *d = arg;
	struct target *t;
	int64_t now = now_ms();
	uint64_t bh;

	(void)l;
	collect(d);
	if (d->a->stopping)
		return DELIVERY_POLL_MS;
	bh = bundles_hash(d->a);
	for (t = d->targets; t != NULL; t = t->next)
		check_target(d, t, bh, now);
	return DELIVERY_POLL_MS;
}

/* Check the targets now rather than at the next poll. */
static void
kick(void *arg)
{
	(void)poll_timer(NULL, arg);
}

/* ------------------------------------------------------------ API */

void
delivery_x509_changed(struct delivery *d)
{
	/* posted, not called: this runs inside the SVID cache's callback,
	 * and check_target() calls back into the cache */
	if (d != NULL)
		(void)loop_post(d->a->loop, kick, d);
}

int
delivery_new(struct agent *a, struct delivery **out)
{
	struct delivery *d;

	*out = NULL;
	if ((d = calloc(1, sizeof(*d))) == NULL)
		return CUBEID_ERR_NOMEM;
	d->a = a;
	pthread_mutex_init(&d->mu, NULL);
	pthread_cond_init(&d->cv, NULL);
	if (pthread_create(&d->thread, NULL, thread_main, d) != 0) {
		delivery_free(d);
		return CUBEID_ERR_IO;
	}
	d->thread_ok = true;
	if ((d->timer = loop_timer_add(a->loop, DELIVERY_POLL_MS, poll_timer, d)) <= 0) {
		delivery_free(d);
		return CUBEID_ERR_NOMEM;
	}
	*out = d;
	return CUBEID_OK;
}

static void
sync_set(struct delivery *d, const struct entry_set *s, const struct selector_set *none)
{
	struct target *t;
	const char *why = NULL;
	size_t i;
	int rc;

	for (i = 0; s != NULL && i < s->n; i++) {
		const struct reg_entry *e = &s->e[i];
		char *id = NULL, *key;

		if (e->delivery == NULL)
			continue;
		if ((rc = entries_resolve_id(e, none, d->a->td, &id, &why)) != CUBEID_OK) {
			cubeid_error("delivery %s: no SPIFFE ID: %s", e->name,
			             why != NULL ? why : cubeid_strerror(rc));
			continue;
		}
		if ((key = canon_key(e, id)) == NULL) {
			free(id);
			continue;
		}
		for (t = d->targets; t != NULL; t = t->next)
			if (!t->removed && t->stale && strcmp(t->key, key) == 0)
				break;
		if (t != NULL) {
			t->stale = false;
			free(key);
			free(id);
			continue;
		}
		for (t = d->targets; t != NULL; t = t->next)
			if (!t->removed && !t->stale && strcmp(t->cfg->dir, e->delivery->dir) == 0)
				break;
		if (t != NULL) {
			cubeid_error(
			        "delivery %s: %s is already the directory of entry %s; skipped",
			        e->name, e->delivery->dir, t->name);
			free(key);
			free(id);
			continue;
		}
		if ((rc = target_new(d, e, id, key, &t)) != CUBEID_OK) {
			cubeid_error("delivery %s: %s", e->name, cubeid_strerror(rc));
			free(id);
			continue;
		}
		free(id);
		t->next = d->targets;
		d->targets = t;
	}
}

void
delivery_sync(struct delivery *d)
{
	struct selector_set none = {0};
	struct target *t, **pp;

	if (d == NULL)
		return;
	for (t = d->targets; t != NULL; t = t->next)
		t->stale = true;
	sync_set(d, d->a->entries, &none);
	sync_set(d, &d->a->dev_entries, &none);
	for (pp = &d->targets; (t = *pp) != NULL;) {
		if (!t->stale) {
			pp = &t->next;
			continue;
		}
		*pp = t->next;
		cubeid_info("delivery %s: no longer delivered (the entry changed or went)",
		            t->name);
		if (t->busy)
			t->removed = true; /* freed when its job comes back */
		else
			target_free(t);
	}
}

void
delivery_free(struct delivery *d)
{
	struct djob *j, *next;
	struct target *t, *tn;

	if (d == NULL)
		return;
	if (d->thread_ok) {
		pthread_mutex_lock(&d->mu);
		d->stop = true;
		pthread_cond_broadcast(&d->cv);
		pthread_mutex_unlock(&d->mu);
		pthread_join(d->thread, NULL);
	}
	if (d->timer > 0)
		loop_timer_del(d->a->loop, d->timer);
	/* jobs still queued or done: their removed targets go with them */
	for (j = d->queue; j != NULL; j = next) {
		next = j->next;
		if (j->t->removed)
			target_free(j->t);
		job_free(j);
	}
	for (j = d->done; j != NULL; j = next) {
		next = j->next;
		if (j->t->removed)
			target_free(j->t);
		job_free(j);
	}
	for (t = d->targets; t != NULL; t = tn) {
		tn = t->next;
		target_free(t);
	}
	pthread_mutex_destroy(&d->mu);
	pthread_cond_destroy(&d->cv);
	free(d);
}
