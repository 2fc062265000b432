/*
 * Recovering from a token outage.
 *
 * A token can go away under a running process and come back: SoftHSM2's
 * token directory moved away or made unreadable, a TPM's daemon restarted.
 * New sessions do not help then: SoftHSM2 reads its token directory in
 * C_Initialize, and a TPM stack keeps its connection from then.  So when
 * an operation finds the token gone, and a fresh session does not fix it,
 * the module is re-initialised: every thread is drained out of it, every
 * session closed, C_Finalize, C_Initialize, and each token on the module
 * finds its slot again by its URI and logs in again; keys find their
 * objects again by CKA_ID the next time they are used (p11-session.c).
 *
 * Locking contract: the gate (mod->gate) counts the threads inside the
 * module (those holding a borrowed session).  A re-init sets
 * mod->reiniting, which keeps new threads out, waits until nobody is
 * inside, and only then calls C_Finalize.  A thread already inside may
 * borrow a second session without waiting (gate_depth, per thread), and
 * cannot start a re-init itself.  Lock order: mod->gate, then tok->lock;
 * the re-init holds neither while it calls into the module.
 *
 * Re-inits are rate-limited: P11_RECOVER_MIN_MS doubling to
 * P11_RECOVER_MAX_MS; a re-init more than P11_RECOVER_RESET_S after the
 * last one starts again from the shortest delay.  (Not "an operation that
 * works": one that always fails with CKR_GENERAL_ERROR among others that
 * work must not re-initialise the module every half second.)  While a
 * recovery has failed (mod->down), operations fail at once without calling
 * the module, and a caller (the agent's probe) tries again once the
 * backoff has passed.
 */
#include "config.h"

#include "pkcs11/p11-internal.h"

#include <cubeid/log.h>

#include <errno.h>
#include <string.h>
#include <time.h>

/* How long a re-init waits for threads to leave the module. */
#define P11_DRAIN_MAX_S 10

static __thread unsigned gate_depth;

double
p11_mono(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

uint64_t
p11_module_gen(struct p11_module *mod)
{
	return __atomic_load_n(&mod->gen, __ATOMIC_ACQUIRE);
}

int
p11_gate_enter(struct p11_module *mod)
{
	int r = CUBEID_OK;

	if (gate_depth > 0) { /* already inside (or the re-init itself) */
		gate_depth++;
		return CUBEID_OK;
	}
	pthread_mutex_lock(&mod->gate);
	while (mod->reiniting)
		pthread_cond_wait(&mod->gate_cond, &mod->gate);
	if (mod->down) {
		r = mod->last_err != CUBEID_OK ? mod->last_err : CUBEID_ERR_P11_DEVICE;
	} else {
		mod->users++;
		gate_depth = 1;
	}
	pthread_mutex_unlock(&mod->gate);
	return r;
}

void
p11_gate_leave(struct p11_module *mod)
{
	if (gate_depth == 0 || --gate_depth > 0)
		return;
	pthread_mutex_lock(&mod->gate);
	if (mod->users > 0 && --mod->users == 0)
		pthread_cond_broadcast(&mod->gate_cond);
	pthread_mutex_unlock(&mod->gate);
}

void
p11_module_add_token(struct p11_module *mod, cubeid_token *tok)
{
	pthread_mutex_lock(&mod->gate);
	while (mod->reiniting)
		pthread_cond_wait(&mod->gate_cond, &mod->gate);
	tok->mod_next = mod->tokens;
	mod->tokens = tok;
	pthread_mutex_unlock(&mod->gate);
}

void
p11_module_remove_token(struct p11_module *mod, cubeid_token *tok)
{
	cubeid_token **pp;

	pthread_mutex_lock(&mod->gate);
	while (mod->reiniting)
		pthread_cond_wait(&mod->gate_cond, &mod->gate);
	for (pp = &mod->tokens; *pp != NULL; pp = &(*pp)->mod_next) {
		if (*pp == tok) {
			*pp = tok->mod_next;
			break;
		}
	}
	pthread_mutex_unlock(&mod->gate);
}

void
cubeid_token_health(const cubeid_token *tok, struct cubeid_token_health *out)
{
	struct p11_module *mod = tok->mod;
	double now = p11_mono();

	memset(out, 0, sizeof(*out));
	pthread_mutex_lock(&mod->gate);
	out->down = mod->down;
	out->retry_in = mod->next_try > now ? mod->next_try - now : 0;
	out->last_err = mod->down ? mod->last_err : CUBEID_OK;
	out->recoveries = mod->recoveries;
	pthread_mutex_unlock(&mod->gate);
}

/* Close every session of every token on mod; nobody is inside.  Returns
 * how many were open. */
static unsigned
close_all_sessions(struct p11_module *mod)
{
	cubeid_token *t;
	unsigned i, n = 0;

	for (t = mod->tokens; t != NULL; t = t->mod_next) {
		pthread_mutex_lock(&t->lock);
		for (i = 0; i < t->pool_size; i++) {
			struct p11_session *ps = &t->pool[i];
			if (!ps->open)
				continue;
			if (mod->initialized)
				(void)mod->f->C_CloseSession(ps->h);
			ps->open = false;
			n++;
		}
		pthread_mutex_unlock(&t->lock);
	}
	return n;
}

/* The re-init proper: nobody else is inside the module and mod->reiniting
 * keeps them out, so mod's fields below gate may be used without it
 * (cubeid_token_health reads them under it: written with it held). */
static int
reinit(struct p11_module *mod, cubeid_token *tok, const char *what, int cause)
{
	cubeid_token *t;
	CK_SESSION_HANDLE s;
	CK_RV rv;
	unsigned n;
	int r;

	n = close_all_sessions(mod);
	cubeid_notice("token %s: %s failed (%s): closed %u session(s); re-initialising module %s",
	              tok->label, what, cubeid_strerror(cause), n, mod->path);
	if (mod->initialized && mod->initialized_here) {
		rv = mod->f->C_Finalize(NULL);
		pthread_mutex_lock(&mod->gate);
		mod->initialized = false;
		pthread_mutex_unlock(&mod->gate);
		cubeid_notice("token %s: C_Finalize: %s", tok->label, p11_rv_name(rv));
	}
	if (!mod->initialized) {
		rv = p11_module_initialize(mod);
		if (rv != CKR_OK && rv != CKR_CRYPTOKI_ALREADY_INITIALIZED) {
			cubeid_notice("token %s: C_Initialize: %s", tok->label, p11_rv_name(rv));
			return p11_err(rv);
		}
		pthread_mutex_lock(&mod->gate);
		mod->initialized = true;
		if (rv == CKR_OK)
			mod->initialized_here = true;
		pthread_mutex_unlock(&mod->gate);
		cubeid_notice("token %s: C_Initialize: %s", tok->label, p11_rv_name(rv));
	}
	__atomic_add_fetch(&mod->gen, 1, __ATOMIC_ACQ_REL);
	/* Every token on the module: its slot again (p11_session_get finds
	 * the generation changed), and a session, which logs in. */
	for (t = mod->tokens; t != NULL; t = t->mod_next) {
		if ((r = p11_session_get(t, &s)) != CUBEID_OK) {
			cubeid_notice("token %s: not back yet: %s", t->label, cubeid_strerror(r));
			return r;
		}
		p11_session_put(t, s, false);
		cubeid_notice("token %s: slot %lu, session open%s", t->label,
		              (unsigned long)t->slot, t->login_required ? ", logged in again" : "");
	}
	return CUBEID_OK;
}

int
p11_recover(cubeid_token *tok, uint64_t seen_gen, const char *what, int cause)
{
	struct p11_module *mod = tok->mod;
	struct timespec until;
	double now;
	int r;

	if (gate_depth > 0)
		return cause; /* holding a session: cannot drain ourselves */
	pthread_mutex_lock(&mod->gate);
	if (p11_module_gen(mod) != seen_gen && !mod->down && !mod->reiniting) {
		pthread_mutex_unlock(&mod->gate);
		return CUBEID_OK; /* another thread re-initialised it: try again */
	}
	if (mod->reiniting) { /* another thread is at it: wait for its verdict */
		while (mod->reiniting)
			pthread_cond_wait(&mod->gate_cond, &mod->gate);
		r = mod->down ? mod->last_err : CUBEID_OK;
		pthread_mutex_unlock(&mod->gate);
		return r;
	}
	now = p11_mono();
	if (!mod->down && now - mod->last_reinit > P11_RECOVER_RESET_S)
		mod->delay_ms = P11_RECOVER_MIN_MS; /* a new outage */
	if (now < mod->next_try) {
		r = mod->down ? mod->last_err : cause;
		pthread_mutex_unlock(&mod->gate);
		return r;
	}
	mod->reiniting = true;
	if (mod->users > 0)
		cubeid_notice("token %s: waiting for %u thread(s) to leave the module", tok->label,
		              mod->users);
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += P11_DRAIN_MAX_S;
	r = 0;
	while (mod->users > 0 && r != ETIMEDOUT)
		r = pthread_cond_timedwait(&mod->gate_cond, &mod->gate, &until);
	if (mod->users > 0) {
		/* A thread is stuck in the module: finalising under it would
		 * crash.  Try again after the backoff. */
		cubeid_error("token %s: %u thread(s) still inside the module after %d s; "
		             "not re-initialising it now",
		             tok->label, mod->users, P11_DRAIN_MAX_S);
		r = CUBEID_ERR_P11_BUSY;
	} else {
		pthread_mutex_unlock(&mod->gate);
		gate_depth = 1; /* our own session borrows must not wait for us */
		r = reinit(mod, tok, what, cause);
		gate_depth = 0;
		pthread_mutex_lock(&mod->gate);
	}
	now = p11_mono();
	mod->last_reinit = now;
	mod->next_try = now + mod->delay_ms / 1000.0;
	if (r == CUBEID_OK) {
		mod->down = false;
		mod->last_err = CUBEID_OK;
		mod->recoveries++;
		cubeid_notice("token %s: recovered (module re-initialised, %u recoveries)",
		              tok->label, mod->recoveries);
	} else {
		mod->down = true;
		mod->last_err = r;
		cubeid_warn("token %s unavailable (%s); retrying in %.1f s", tok->label,
		            cubeid_strerror(r), mod->delay_ms / 1000.0);
	}
	mod->delay_ms =
	        mod->delay_ms * 2 > P11_RECOVER_MAX_MS ? P11_RECOVER_MAX_MS : mod->delay_ms * 2;
	mod->reiniting = false;
	pthread_cond_broadcast(&mod->gate_cond);
	pthread_mutex_unlock(&mod->gate);
	return r;
}
