/*
 * The session pool.
 *
 * PKCS#11 sessions must not be used by two threads at once, so each caller
 * borrows one for the length of an operation.  Sessions are opened lazily
 * up to pool_size; a caller that finds them all busy waits.  A session the
 * token has dropped (closed from outside, device removed) is put back as
 * broken: it is closed and forgotten, and the next borrower opens a fresh
 * one.  Login state is per token in PKCS#11, so it is lost when the last
 * session closes; a fresh session therefore logs in again when needed.
 */
#include "config.h"

#include "pkcs11/p11-internal.h"

#include <cubeid/log.h>

#include <errno.h>
#include <string.h>
#include <time.h>

bool
p11_rv_session_lost(CK_RV rv)
{
	switch (rv) {
	case CKR_SESSION_HANDLE_INVALID:
	case CKR_SESSION_CLOSED:
	case CKR_DEVICE_REMOVED:
	case CKR_DEVICE_ERROR:
	case CKR_TOKEN_NOT_PRESENT:
		return true;
	default:
		return false;
	}
}

void
p11_backoff(unsigned attempt)
{
	struct timespec ts;
	unsigned ms;

	if (attempt == 0)
		return;
	ms = 10u << (2 * (attempt - 1)); /* 10, 40, 160, 640 ms */
	if (ms > 1000)
		ms = 1000;
	ts.tv_sec = ms / 1000;
	ts.tv_nsec = (long)(ms % 1000) * 1000000L;
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

/* Log the user in on session s.  The token remembers the login for all our
 * sessions, so this runs once after the first open and after a loss.
 * Called with tok->lock held. */
static int
login_locked(cubeid_token *tok, CK_SESSION_HANDLE s)
{
	CK_RV rv;

	if (!tok->login_required)
		return CUBEID_OK;
	if (tok->pin == NULL)
		return CUBEID_ERR_P11_PIN_MISSING;
	rv = tok->f->C_Login(s, CKU_USER, (CK_UTF8CHAR_PTR)tok->pin, tok->pin_len);
	if (rv == CKR_OK || rv == CKR_USER_ALREADY_LOGGED_IN)
		return CUBEID_OK;
	if (rv == CKR_PIN_INCORRECT || rv == CKR_PIN_LOCKED || rv == CKR_PIN_INVALID ||
	    rv == CKR_PIN_LEN_RANGE || rv == CKR_PIN_EXPIRED) {
		/* Never try a rejected PIN again: tokens lock after a few. */
		cubeid_error("token %s rejected the PIN (%s); not retrying", tok->label,
		             p11_rv_name(rv));
		explicit_bzero(tok->pin, tok->pin_map_len);
		tok->pin_len = 0;
		return p11_err(rv);
	}
	return p11_fail("C_Login", rv);
}

int
p11_relogin(cubeid_token *tok, CK_SESSION_HANDLE s)
{
	int r;

	pthread_mutex_lock(&tok->lock);
	r = login_locked(tok, s);
	pthread_mutex_unlock(&tok->lock);
	return r;
}

static int
session_open_locked(cubeid_token *tok, struct p11_session *ps)
{
	CK_SESSION_INFO si;
	CK_RV rv;
	unsigned i, n_open = 0;
	int r;

	if (tok->login_required && tok->pin != NULL && tok->pin_len == 0)
		return CUBEID_ERR_P11_PIN_INCORRECT; /* rejected before: stay failed */
	rv = tok->f->C_OpenSession(tok->slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL,
	                           &ps->h);
	if (rv != CKR_OK)
		return p11_fail("C_OpenSession", rv);
	ps->open = true;
	for (i = 0; i < tok->pool_size; i++)
		n_open += tok->pool[i].open;
	/* First session, or the token forgot us: log in. */
	if (tok->login_required &&
	    (n_open == 1 ||
	     (tok->f->C_GetSessionInfo(ps->h, &si) == CKR_OK && si.state != CKS_RW_USER_FUNCTIONS &&
	      si.state != CKS_RO_USER_FUNCTIONS))) {
		if ((r = login_locked(tok, ps->h)) != CUBEID_OK) {
			tok->f->C_CloseSession(ps->h);
			ps->open = false;
			return r;
		}
	}
	return CUBEID_OK;
}

int
p11_session_get(cubeid_token *tok, CK_SESSION_HANDLE *out)
{
	struct p11_session *ps, *closed;
	uint64_t gen;
	unsigned i;
	int r;

	*out = CK_INVALID_HANDLE;
	if ((r = p11_gate_enter(tok->mod)) != CUBEID_OK)
		return r;
	pthread_mutex_lock(&tok->lock);
	gen = p11_module_gen(tok->mod);
	if (__atomic_load_n(&tok->mod_gen, __ATOMIC_ACQUIRE) != gen &&
	    (r = p11_token_rebind_locked(tok, gen)) != CUBEID_OK) {
		pthread_mutex_unlock(&tok->lock);
		p11_gate_leave(tok->mod);
		return r;
	}
	for (;;) {
		closed = NULL;
		for (i = 0; i < tok->pool_size; i++) {
			ps = &tok->pool[i];
			if (ps->busy)
				continue;
			if (ps->open) {
				ps->busy = true;
				tok->n_busy++;
				*out = ps->h;
				pthread_mutex_unlock(&tok->lock);
				return CUBEID_OK;
			}
			if (closed == NULL)
				closed = ps;
		}
		if (closed != NULL) {
			if ((r = session_open_locked(tok, closed)) != CUBEID_OK) {
				pthread_mutex_unlock(&tok->lock);
				p11_gate_leave(tok->mod);
				return r;
			}
			closed->busy = true;
			tok->n_busy++;
			*out = closed->h;
			pthread_mutex_unlock(&tok->lock);
			return CUBEID_OK;
		}
		pthread_cond_wait(&tok->cond, &tok->lock);
	}
}

/* After one session was lost, the others usually were too (C_CloseAllSessions,
 * a device reset): drop every idle session the token no longer knows, so the
 * next caller does not burn a retry on each of them. */
static void
prune_idle_locked(cubeid_token *tok)
{
	CK_SESSION_INFO si;
	unsigned i;

	for (i = 0; i < tok->pool_size; i++) {
		struct p11_session *ps = &tok->pool[i];
		if (ps->busy || !ps->open)
			continue;
		if (p11_rv_session_lost(tok->f->C_GetSessionInfo(ps->h, &si))) {
			(void)tok->f->C_CloseSession(ps->h);
			ps->open = false;
		}
	}
}

void
p11_session_put(cubeid_token *tok, CK_SESSION_HANDLE h, bool broken)
{
	unsigned i;

	pthread_mutex_lock(&tok->lock);
	for (i = 0; i < tok->pool_size; i++) {
		struct p11_session *ps = &tok->pool[i];
		if (!ps->busy || ps->h != h)
			continue;
		ps->busy = false;
		tok->n_busy--;
		if (broken) {
			(void)tok->f->C_CloseSession(h);
			ps->open = false;
		}
		break;
	}
	if (broken)
		prune_idle_locked(tok);
	pthread_cond_signal(&tok->cond);
	pthread_mutex_unlock(&tok->lock);
	p11_gate_leave(tok->mod);
}

/* Failures a fresh session cannot fix but a re-initialised module may:
 * the token gone from its slot, the device failing, the module down. */
static bool
outage_error(int r)
{
	return r == CUBEID_ERR_P11_DEVICE || r == CUBEID_ERR_P11_SESSION ||
	       r == CUBEID_ERR_P11_NO_TOKEN || r == CUBEID_ERR_P11_GENERAL;
}

/* A key the token no longer shows.  Persistent keys do not vanish on their
 * own: when one does, the token lost its objects (SoftHSM2's directory
 * went away), which a re-init may fix.  A session object is really gone
 * after a re-init, and re-initialising again would not bring it back. */
static bool
key_lost(const cubeid_key *key, int r)
{
	return key != NULL && key->persistent && r == CUBEID_ERR_NOT_FOUND;
}

int
p11_run(cubeid_token *tok, const cubeid_key *key, const char *what, p11_op_fn fn, void *arg)
{
	CK_SESSION_HANDLE s;
	CK_SESSION_INFO si;
	CK_RV rv;
	/* Three budgets: sessions the token dropped are reopened with
	 * backoff, and when fresh sessions do not help the module is
	 * re-initialised (p11-recover.c, itself rate-limited); repairs that
	 * need no waiting (log in again, find the key again) have their own
	 * small budget per session.  Bounded: at most P11_MAX_REOPENS +
	 * P11_MAX_RECOVERS + 1 sessions, each with P11_MAX_REPAIRS repairs. */
	unsigned attempt = 0, repairs = 0, recovers = 0;
	uint64_t gen = p11_module_gen(tok->mod);
	int r = CUBEID_ERR_P11_GENERAL;

	for (;;) {
		if ((r = p11_session_get(tok, &s)) != CUBEID_OK) {
			/* No session: the token is gone, or the module is down
			 * after a failed recovery (then this fails at once until
			 * the backoff has passed). */
			if (outage_error(r) && recovers++ < P11_MAX_RECOVERS &&
			    p11_recover(tok, gen, what, r) == CUBEID_OK) {
				gen = p11_module_gen(tok->mod);
				repairs = 0;
				continue;
			}
			return r;
		}
		if (key != NULL && p11_key_stale(key)) {
			/* The module was re-initialised since the key's handles
			 * were found: they may name other objects now. */
			r = p11_key_refind(key, s);
			p11_session_put(tok, s, false);
			if (r == CUBEID_OK)
				continue;
			if (key_lost(key, r) && recovers++ < P11_MAX_RECOVERS &&
			    p11_recover(tok, gen, what, r) == CUBEID_OK) {
				gen = p11_module_gen(tok->mod);
				continue;
			}
			return r;
		}
		rv = CKR_OK;
		r = fn(tok, s, arg, &rv);
		if (r == CUBEID_OK || rv == CKR_OK) {
			p11_session_put(tok, s, false);
			return r;
		}
		if (p11_rv_session_lost(rv) || rv == CKR_OPERATION_ACTIVE) {
			/* A session with a stuck operation (tpm2-pkcs11 leaves one
			 * after some failures) is as good as lost. */
			cubeid_warn("%s: %s; reopening the session", what, p11_rv_name(rv));
			p11_session_put(tok, s, true);
			repairs = 0; /* a new session may need its own repairs */
			if (attempt < P11_MAX_REOPENS) {
				p11_backoff(++attempt);
				continue;
			}
			if (recovers++ < P11_MAX_RECOVERS &&
			    p11_recover(tok, gen, what, r) == CUBEID_OK) {
				gen = p11_module_gen(tok->mod);
				continue;
			}
			break;
		}
		if (rv == CKR_GENERAL_ERROR && recovers < P11_MAX_RECOVERS) {
			/* How tpm2-pkcs11 reports a TPM stack that went away
			 * (tpm2-abrmd or the TPM restarted): no new session helps,
			 * a re-initialised module may.  Rate-limited there. */
			p11_session_put(tok, s, false);
			recovers++;
			if (p11_recover(tok, gen, what, r) == CUBEID_OK) {
				gen = p11_module_gen(tok->mod);
				repairs = 0;
				continue;
			}
			cubeid_error("%s: %s (0x%lx)", what, p11_rv_name(rv), (unsigned long)rv);
			return r;
		}
		if (repairs < P11_MAX_REPAIRS && rv == CKR_USER_NOT_LOGGED_IN) {
			repairs++;
			cubeid_notice("%s: token %s forgot the login; logging in again", what,
			              tok->label);
			r = p11_relogin(tok, s);
			p11_session_put(tok, s, false);
			if (r != CUBEID_OK)
				return r;
			continue;
		}
		if (repairs < P11_MAX_REPAIRS && key != NULL &&
		    (rv == CKR_OBJECT_HANDLE_INVALID || rv == CKR_KEY_HANDLE_INVALID)) {
			repairs++;
			/* Private objects vanish from view when the token logs
			 * us out: log in again before looking for the key; and a
			 * token may renumber objects once every session closed. */
			if (tok->login_required && tok->f->C_GetSessionInfo(s, &si) == CKR_OK &&
			    si.state != CKS_RW_USER_FUNCTIONS &&
			    si.state != CKS_RO_USER_FUNCTIONS) {
				cubeid_notice("%s: token %s logged us out; logging in again", what,
				              tok->label);
				r = p11_relogin(tok, s);
			} else {
				r = p11_key_refind(key, s);
			}
			p11_session_put(tok, s, false);
			if (key_lost(key, r) && recovers++ < P11_MAX_RECOVERS &&
			    p11_recover(tok, gen, what, r) == CUBEID_OK) {
				gen = p11_module_gen(tok->mod);
				repairs = 0;
				continue;
			}
			if (r != CUBEID_OK)
				return r;
			continue;
		}
		p11_session_put(tok, s, false);
		cubeid_error("%s: %s (0x%lx)", what, p11_rv_name(rv), (unsigned long)rv);
		return r;
	}
	cubeid_error("%s: token %s still failing after %u new session(s) and %u recovery "
	             "attempt(s)",
	             what, tok->label, attempt, recovers);
	return r;
}

CK_RV
p11_attr_get(cubeid_token *tok, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE o, CK_ATTRIBUTE_TYPE type,
             uint8_t **val, size_t *len)
{
	CK_ATTRIBUTE a = {type, NULL, 0};
	CK_RV rv;

	*val = NULL;
	*len = 0;
	if ((rv = tok->f->C_GetAttributeValue(s, o, &a, 1)) != CKR_OK)
		return rv;
	if (a.ulValueLen == CK_UNAVAILABLE_INFORMATION)
		return CKR_ATTRIBUTE_SENSITIVE;
	if (a.ulValueLen > 64 * 1024)
		return CKR_GENERAL_ERROR; /* no attribute we read is this big */
	if ((a.pValue = malloc(a.ulValueLen + 1)) == NULL)
		return CKR_HOST_MEMORY;
	if ((rv = tok->f->C_GetAttributeValue(s, o, &a, 1)) != CKR_OK) {
		free(a.pValue);
		return rv;
	}
	((uint8_t *)a.pValue)[a.ulValueLen] = 0;
	*val = a.pValue;
	*len = a.ulValueLen;
	return CKR_OK;
}
