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
	unsigned i;
	int r;

	*out = CK_INVALID_HANDLE;
	pthread_mutex_lock(&tok->lock);
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
}

int
p11_run(cubeid_token *tok, const cubeid_key *key, const char *what, p11_op_fn fn, void *arg)
{
	CK_SESSION_HANDLE s;
	CK_SESSION_INFO si;
	CK_RV rv;
	/* Two budgets: sessions the token dropped are retried with backoff;
	 * repairs that need no waiting (log in again, find the key again)
	 * have their own small budget per session and do not use up the
	 * backoff steps.  At most (MAX_RETRIES+1) x (MAX_REPAIRS+1) tries. */
	unsigned attempt = 0, repairs = 0;
	int r = CUBEID_ERR_P11_GENERAL;

	for (;;) {
		if ((r = p11_session_get(tok, &s)) != CUBEID_OK) {
			/* Opening failed: the device may be coming back. */
			if ((r == CUBEID_ERR_P11_DEVICE || r == CUBEID_ERR_P11_SESSION) &&
			    attempt < P11_MAX_RETRIES) {
				p11_backoff(++attempt);
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
			if (attempt >= P11_MAX_RETRIES)
				break;
			p11_backoff(++attempt);
			repairs = 0; /* a new session may need its own repairs */
			continue;
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
			if (r != CUBEID_OK)
				return r;
			continue;
		}
		p11_session_put(tok, s, false);
		cubeid_error("%s: %s (0x%lx)", what, p11_rv_name(rv), (unsigned long)rv);
		return r;
	}
	cubeid_error("%s: token %s still failing after %d retries", what, tok->label,
	             P11_MAX_RETRIES);
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
