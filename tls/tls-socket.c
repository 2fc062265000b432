/*
 * The Workload API source: a thread follows the FetchX509SVID stream of
 * cubeid-agent (or SPIRE), and every message that carries our SVID becomes
 * a new state.  The agent sends the full state in every message and a new
 * one at each rotation, so nothing needs polling.
 *
 * Each message replaces what the last one said (Workload API 4.4): when it
 * no longer carries our SVID, the agent has withdrawn it, and so do we
 * (handshakes fail until it comes back); so too when the stream ends with
 * PermissionDenied (5.2.1).  A message with no SVID at all breaks a
 * mandatory field and is discarded (4.5), as is one whose SVID is
 * malformed: the old state serves on.
 *
 * A stream that ends is reopened (4.2): at once when it had worked (it
 * brought a message and lasted a second or more), else after a backoff of
 * 0.5 s doubling to at most 30 s; the old state serves meanwhile.
 */
#include "config.h"

#include <errno.h>
#include <poll.h>
#include <string.h>
#include <time.h>

#include <cubeid/log.h>

#include "tls/tls-internal.h"

static const struct cubeid_wl_x509svid *
pick_svid(const cubeid_tls *tls, const struct cubeid_wl_x509 *x)
{
	size_t i;

	if (x->n_svids == 0)
		return NULL;
	if (tls->spiffe_id == NULL)
		return &x->svids[0];
	for (i = 0; i < x->n_svids; i++)
		if (x->svids[i].spiffe_id != NULL &&
		    strcmp(x->svids[i].spiffe_id, tls->spiffe_id) == 0)
			return &x->svids[i];
	return NULL;
}

static bool
same_as_current(cubeid_tls *tls, const struct tls_state *s)
{
	struct tls_state *cur = tls_current(tls);
	bool same = false;

	if (cur != NULL)
		same = X509_cmp(cur->leaf, s->leaf) == 0 && EVP_PKEY_eq(cur->key, s->key) == 1 &&
		       cubeid_x509_bundle_count(cur->bundle) == cubeid_x509_bundle_count(s->bundle);
	if (same) {
		size_t i;

		for (i = 0; same && i < cubeid_x509_bundle_count(s->bundle); i++)
			same = X509_cmp(cubeid_x509_bundle_at(cur->bundle, i),
			                cubeid_x509_bundle_at(s->bundle, i)) == 0;
	}
	tls_state_unref(cur);
	return same;
}

#define RECONNECT_MIN_MS 500
#define RECONNECT_MAX_MS 30000
#define WORKED_MS        1000 /* a stream this old that brought a message worked */

static int64_t
mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static bool
has_state(cubeid_tls *tls)
{
	struct tls_state *cur = tls_current(tls);

	tls_state_unref(cur);
	return cur != NULL;
}

static int
on_message(const struct cubeid_wl_x509 *x, void *arg)
{
	cubeid_tls *tls = arg;
	const struct cubeid_wl_x509svid *svid = pick_svid(tls, x);
	struct tls_state *s = NULL;
	const char *why = NULL;
	int rc;

	if (__atomic_load_n(&tls->stop, __ATOMIC_ACQUIRE))
		return 1;
	__atomic_add_fetch(&tls->stream_msgs, 1, __ATOMIC_RELAXED);
	if (x->n_svids == 0) {
		tls_install(tls, NULL, CUBEID_ERR_PROTOCOL,
		            "the agent sent a message with no SVID (discarded)");
		return 0;
	}
	if (svid == NULL) {
		why = tls->spiffe_id != NULL ? "the agent sent no SVID with the wanted SPIFFE ID"
		                             : "the agent sent no SVID";
		if (has_state(tls))
			tls_withdraw(tls, CUBEID_ERR_NOT_FOUND, why);
		else
			tls_install(tls, NULL, CUBEID_ERR_NOT_FOUND, why);
		return 0;
	}
	if ((rc = tls_state_from_wl(svid, &s, &why)) != CUBEID_OK) {
		tls_install(tls, NULL, rc, why);
		return 0;
	}
	if (same_as_current(tls, s)) {
		tls_state_unref(s);
		return 0;
	}
	tls_install(tls, s, CUBEID_OK, NULL);
	return 0;
}

static void *
socket_thread(void *arg)
{
	cubeid_tls *tls = arg;
	struct cubeid_wl_opts o = {0};
	long backoff = RECONNECT_MIN_MS;

	o.socket = strcmp(tls->socket, "env") == 0 ? NULL : tls->socket;
	o.timeout_ms = 0; /* a watch has no deadline */
	while (!__atomic_load_n(&tls->stop, __ATOMIC_ACQUIRE)) {
		struct cubeid_wl_status st = {0};
		unsigned long msgs = __atomic_load_n(&tls->stream_msgs, __ATOMIC_RELAXED);
		int64_t t0 = mono_ms();
		const char *why;
		long waited;
		int rc;

		rc = cubeid_wl_watch_x509(&o, on_message, tls, &tls->stop, &st);
		if (__atomic_load_n(&tls->stop, __ATOMIC_ACQUIRE))
			break;
		why = st.message[0] != '\0' ? st.message : "the X.509-SVID stream failed";
		if (rc == CUBEID_ERR_PERMISSION && has_state(tls))
			tls_withdraw(tls, rc, why); /* every identity withdrawn */
		else if (rc != CUBEID_OK)
			tls_install(tls, NULL, rc, why);
		else
			tls_install(tls, NULL, CUBEID_ERR_UNAVAILABLE,
			            "the agent ended the stream");
		if (__atomic_load_n(&tls->stream_msgs, __ATOMIC_RELAXED) != msgs &&
		    mono_ms() - t0 >= WORKED_MS) {
			backoff = RECONNECT_MIN_MS; /* it worked: again at once */
			continue;
		}
		for (waited = 0; waited < backoff && !__atomic_load_n(&tls->stop, __ATOMIC_ACQUIRE);
		     waited += 100)
			poll(NULL, 0, 100);
		backoff = backoff * 2 > RECONNECT_MAX_MS ? RECONNECT_MAX_MS : backoff * 2;
	}
	return NULL;
}

int
tls_socket_start(cubeid_tls *tls)
{
	struct timespec deadline;
	int rc = CUBEID_OK;

	if (pthread_create(&tls->thread, NULL, socket_thread, tls) != 0)
		return CUBEID_ERR_NOMEM;
	tls->thread_started = true;
	clock_gettime(CLOCK_REALTIME, &deadline);
	deadline.tv_sec += tls->timeout_ms / 1000;
	deadline.tv_nsec += (tls->timeout_ms % 1000) * 1000000;
	if (deadline.tv_nsec >= 1000000000) {
		deadline.tv_sec++;
		deadline.tv_nsec -= 1000000000;
	}
	pthread_mutex_lock(&tls->lock);
	while (tls->cur == NULL && rc != ETIMEDOUT)
		rc = pthread_cond_timedwait(&tls->first_cond, &tls->lock, &deadline);
	rc = tls->cur != NULL ? CUBEID_OK : tls->err != CUBEID_OK ? tls->err : CUBEID_ERR_TIMEOUT;
	pthread_mutex_unlock(&tls->lock);
	if (rc == CUBEID_OK)
		cubeid_info("tls: identity from the Workload API at %s", tls->socket);
	else
		cubeid_error("tls: no X.509-SVID from %s within %ld ms: %s", tls->socket,
		             tls->timeout_ms, cubeid_strerror(rc));
	return rc;
}
