/*
 * The SPIFFE Workload API handlers (and cubeid.Agent/Status), on the loop
 * thread.  Every call: the security header, then attestation of the peer
 * from kernel facts, then the registration entries.  Streams stay in one
 * list so that rotations, reloads and bundle changes reach them; each
 * message carries the full state.
 */
#include "config.h"

#include "agent/audit.h"
#include "agent/daemon.h"
#include "spiffe/workload.pb-c.h"

#include <cubeid/log.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#define CLAIMS_DEPTH_MAX 16
#define SEL_LOG_MAX      1024

enum wkind { W_X509SVID = 1, W_X509BUNDLES, W_JWTBUNDLES, W_JWTSVID };

struct wcall {
	struct wapi *w;
	grpc_call *call;
	enum wkind kind;
	struct peer_info peer;
	struct selector_set sel;
	char sel_str[SEL_LOG_MAX];
	/* FetchX509SVID: the identities, with the version last sent */
	struct x509_item **items;
	uint64_t *sent;
	size_t n_items;
	bool sent_once;
	bool set_changed; /* identities added or removed since the last send */
	/* FetchJWTSVID: the SVIDs being waited for */
	struct jwt_item **jitems;
	char **jentry; /* the entry name of each (borrowed from the call) */
	size_t n_j;
	char **aud; /* for the audit line */
	size_t n_aud;
	uint64_t generation; /* of the bundles last sent */
	struct wcall *next, *prev;
};

/* A status call waiting for a token probe. */
struct status_wait {
	struct wapi *w;
	grpc_call *call;
	struct status_wait *next, *prev;
};

struct wapi {
	struct agent *a;
	struct wcall *calls;
	unsigned n_streams;
	struct status_wait *status_waits;
};

/* ------------------------------------------------------------ calls */

static void
wcall_link(struct wapi *w, struct wcall *wc)
{
	wc->next = w->calls;
	if (w->calls != NULL)
		w->calls->prev = wc;
	w->calls = wc;
	if (wc->kind != W_JWTSVID)
		w->n_streams++;
}

static void
wcall_release_items(struct wcall *wc)
{
	struct svid_cache *c = wc->w->a->cache;
	size_t i;

	for (i = 0; i < wc->n_items; i++) {
		wc->items[i]->subscribers--;
		svid_cache_x509_put(c, wc->items[i]);
	}
	free(wc->items);
	free(wc->sent);
	wc->items = NULL;
	wc->sent = NULL;
	wc->n_items = 0;
	for (i = 0; i < wc->n_j; i++) {
		svid_cache_jwt_put(c, wc->jitems[i]);
		free(wc->jentry[i]);
	}
	free(wc->jitems);
	free(wc->jentry);
	wc->jitems = NULL;
	wc->jentry = NULL;
	wc->n_j = 0;
}

static void
wcall_free(struct wcall *wc)
{
	struct wapi *w;
	size_t i;

	if (wc == NULL)
		return;
	w = wc->w;
	if (wc->prev != NULL)
		wc->prev->next = wc->next;
	else if (w->calls == wc)
		w->calls = wc->next;
	if (wc->next != NULL)
		wc->next->prev = wc->prev;
	wcall_release_items(wc);
	selector_set_clear(&wc->sel);
	for (i = 0; i < wc->n_aud; i++)
		free(wc->aud[i]);
	free(wc->aud);
	free(wc);
}

/* The client went away (or the server is closing the connection). */
static void
on_close(grpc_call *call, void *user)
{
	struct wcall *wc = user;

	(void)call;
	if (wc == NULL)
		return;
	if (wc->kind != W_JWTSVID && wc->w->n_streams > 0)
		wc->w->n_streams--;
	wc->call = NULL;
	wcall_free(wc);
}

/* End a call with a status and forget it. */
static void
wcall_finish(struct wcall *wc, int status, const char *msg)
{
	grpc_call *call = wc->call;

	if (wc->kind != W_JWTSVID && wc->w->n_streams > 0)
		wc->w->n_streams--;
	wc->call = NULL;
	if (call != NULL) {
		grpc_call_set_user(call, NULL, NULL);
		grpc_call_finish(call, status, msg);
	}
	wcall_free(wc);
}

static int
status_for(int err)
{
	/* the token, the CA or the worker queue failed: try again later */
	return err == CUBEID_ERR_NOMEM ? GRPC_RESOURCE_EXHAUSTED : GRPC_UNAVAILABLE;
}

/* "[a,b,c]" of the selectors, cut to fit. */
static void
selectors_str(const struct selector_set *s, char *out, size_t size)
{
	size_t i, len = 0;
	int n;

	n = snprintf(out, size, "[");
	len = n > 0 ? (size_t)n : 0;
	for (i = 0; i < s->n && len < size; i++) {
		n = snprintf(out + len, size - len, "%s%s", i > 0 ? "," : "", s->v[i]);
		if (n < 0)
			break;
		len += (size_t)n;
	}
	if (len < size)
		snprintf(out + len, size - len, "]");
	else if (size > 4)
		memcpy(out + size - 5, "...]", 5);
}

/*
 * The common prologue: the security header, attestation, entries.  On
 * failure the call has been finished and NULL is returned.  On success a
 * new wcall (not yet linked) holds the peer and its selectors, and
 * *matched / *ids / *n the entries (caller frees as entries_match() says).
 */
static struct wcall *
wcall_begin(grpc_call *call, void *ctx, enum wkind kind, bool need_identity,
            const struct reg_entry ***matched, char ***ids, size_t *n)
{
	struct wapi *w = ((struct agent *)ctx)->wapi;
	struct agent *a = ctx;
	const char *hdr = grpc_call_metadata(call, "workload.spiffe.io");
	struct wcall *wc;
	int rc;

	*matched = NULL;
	*ids = NULL;
	*n = 0;
	if (hdr == NULL || strcmp(hdr, "true") != 0) {
		grpc_call_finish(call, GRPC_INVALID_ARGUMENT,
		                 "security header missing from request");
		return NULL;
	}
	if (a->stopping) {
		grpc_call_finish(call, GRPC_UNAVAILABLE, "agent is shutting down");
		return NULL;
	}
	if ((wc = calloc(1, sizeof(*wc))) == NULL) {
		grpc_call_finish(call, GRPC_RESOURCE_EXHAUSTED, "out of memory");
		return NULL;
	}
	wc->w = w;
	wc->call = call;
	wc->kind = kind;
	rc = attest_peer_fd(grpc_call_fd(call), &a->attest, &wc->peer, &wc->sel);
	if (rc != CUBEID_OK) {
		cubeid_notice("attestation of a caller failed: %s", cubeid_strerror(rc));
		/* the agent's own trouble is worth a retry; anything else (the
		 * process vanished or changed) is a refusal */
		if (rc == CUBEID_ERR_NOMEM || rc == CUBEID_ERR_IO || rc == CUBEID_ERR_UNAVAILABLE)
			grpc_call_finish(call, GRPC_UNAVAILABLE, "could not attest the caller");
		else
			grpc_call_finish(call, GRPC_PERMISSION_DENIED,
			                 "could not attest the caller");
		selector_set_clear(&wc->sel);
		free(wc);
		return NULL;
	}
	selectors_str(&wc->sel, wc->sel_str, sizeof(wc->sel_str));
	if (!need_identity)
		return wc;
	rc = a->ops->match(a, &wc->sel, matched, ids, n);
	if (rc != CUBEID_OK || *n == 0) {
		if (rc != CUBEID_OK)
			cubeid_warn("matching entries failed: %s", cubeid_strerror(rc));
		cubeid_info("no identity for pid=%ld uid=%ld selectors=%s", (long)wc->peer.pid,
		            (long)wc->peer.uid, wc->sel_str);
		grpc_call_finish(call, GRPC_PERMISSION_DENIED, "no identity issued");
		selector_set_clear(&wc->sel);
		free(wc);
		return NULL;
	}
	return wc;
}

static void
free_matches(const struct reg_entry **matched, char **ids, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		free(ids[i]);
	free(ids);
	free(matched);
}

/* ------------------------------------------------------ X.509-SVIDs */

/* Attach the identities the entries give; drop those no longer given. */
static int
x509_set_items(struct wcall *wc, const struct reg_entry **matched, char **ids, size_t n)
{
	struct svid_cache *c = wc->w->a->cache;
	struct x509_item **items = NULL;
	uint64_t *sent = NULL;
	size_t i, k = 0, j;
	int rc = CUBEID_OK;

	if ((items = calloc(n, sizeof(*items))) == NULL ||
	    (sent = calloc(n, sizeof(*sent))) == NULL) {
		free(items);
		return CUBEID_ERR_NOMEM;
	}
	for (i = 0; i < n; i++) {
		if (matched[i]->key == KEY_POLICY_RESIDENT)
			continue; /* its key never leaves the token */
		if ((rc = svid_cache_x509_get(c, matched[i], ids[i], &items[k])) != CUBEID_OK)
			break;
		items[k]->subscribers++;
		/* keep what was sent for an identity the stream already had */
		for (j = 0; j < wc->n_items; j++)
			if (wc->items[j] == items[k])
				sent[k] = wc->sent[j];
		k++;
	}
	if (rc != CUBEID_OK) {
		for (i = 0; i < k; i++) {
			items[i]->subscribers--;
			svid_cache_x509_put(c, items[i]);
		}
		free(items);
		free(sent);
		return rc;
	}
	for (j = 0; j < wc->n_items; j++) {
		wc->items[j]->subscribers--;
		svid_cache_x509_put(c, wc->items[j]);
	}
	if (k != wc->n_items)
		wc->set_changed = true;
	for (i = 0; i < k; i++)
		if (sent[i] == 0)
			wc->set_changed = true;
	free(wc->items);
	free(wc->sent);
	wc->items = items;
	wc->sent = sent;
	wc->n_items = k;
	return CUBEID_OK;
}

/* True if this delivery goes into the audit log in full: the first time
 * this caller gets this SVID; repeats are counted (audit.h). */
static bool
audit_x509(const struct wcall *wc, const struct x509_item *it)
{
	char what[2304];

	snprintf(what, sizeof(what), "spiffe_id=%s", it->spiffe_id);
	return audit_first("x509-svid", wc->peer.uid, wc->peer.pid, it->entry_name, what, "serial",
	                   it->serial);
}

static bool
audit_jwt(const struct wcall *wc, size_t i, const char *audlog)
{
	char what[4096];

	snprintf(what, sizeof(what), "spiffe_id=%s aud=[%s]", wc->jitems[i]->spiffe_id, audlog);
	return audit_first("jwt-svid", wc->peer.uid, wc->peer.pid, wc->jentry[i], what, "jti",
	                   wc->jitems[i]->jti);
}

/* Send the full state if every identity is ready and something changed.
 * Finishes the call when it cannot be served. */
static void
x509_maybe_send(struct wcall *wc, bool force)
{
	struct agent *a = wc->w->a;
	X509SVIDResponse resp = X509_SVIDRESPONSE__INIT;
	X509SVID *svids = NULL, **pv = NULL;
	uint8_t *buf = NULL;
	size_t i, j, len = 0;
	bool changed = force || !wc->sent_once || wc->set_changed;
	int rc;

	if (wc->n_items == 0) {
		wcall_finish(wc, GRPC_PERMISSION_DENIED, "no identity issued");
		return;
	}
	for (i = 0; i < wc->n_items; i++) {
		struct x509_item *it = wc->items[i];

		if (!x509_item_ready(it)) {
			if (!it->minting && it->last_err != CUBEID_OK && !wc->sent_once) {
				wcall_finish(wc, status_for(it->last_err),
				             "cannot issue an X.509-SVID now");
			}
			return; /* wait for the mint */
		}
		if (it->version != wc->sent[i])
			changed = true;
	}
	if (!changed)
		return;
	if ((svids = calloc(wc->n_items, sizeof(*svids))) == NULL ||
	    (pv = calloc(wc->n_items, sizeof(*pv))) == NULL)
		goto nomem;
	for (i = 0; i < wc->n_items; i++) {
		struct x509_item *it = wc->items[i];

		x509_svid__init(&svids[i]);
		svids[i].spiffe_id = it->spiffe_id;
		svids[i].x509_svid.data = it->chain_der;
		svids[i].x509_svid.len = it->chain_der_len;
		svids[i].x509_svid_key.data = it->key_der;
		svids[i].x509_svid_key.len = it->key_der_len;
		svids[i].bundle.data = a->bundle_der;
		svids[i].bundle.len = a->bundle_der_len;
		svids[i].hint = it->hint != NULL ? it->hint : (char *)"";
		/* Workload API 5.2.1: a hint is unique in a response; two
		 * entries with one hint keep it on the first SVID only */
		for (j = 0; svids[i].hint[0] != '\0' && j < i; j++)
			if (strcmp(svids[j].hint, svids[i].hint) == 0) {
				cubeid_info("%s and %s have the same hint '%s' for pid=%ld: "
				            "sent with the first only",
				            svids[j].spiffe_id, svids[i].spiffe_id, svids[i].hint,
				            (long)wc->peer.pid);
				svids[i].hint = (char *)"";
			}
		pv[i] = &svids[i];
	}
	resp.n_svids = wc->n_items;
	resp.svids = pv;
	len = x509_svidresponse__get_packed_size(&resp);
	if ((buf = secbuf_alloc(len)) == NULL)
		goto nomem;
	x509_svidresponse__pack(&resp, buf);
	rc = grpc_call_send(wc->call, buf, len);
	secbuf_free(buf, len);
	free(svids);
	free(pv);
	if (rc != CUBEID_OK) {
		wcall_finish(wc, GRPC_RESOURCE_EXHAUSTED, "could not queue the response");
		return;
	}
	for (i = 0; i < wc->n_items; i++) {
		struct x509_item *it = wc->items[i];

		if (wc->sent[i] != it->version && audit_x509(wc, it))
			cubeid_notice("issued x509-svid spiffe_id=%s pid=%ld uid=%ld entry=%s "
			              "selectors=%s serial=%s",
			              it->spiffe_id, (long)wc->peer.pid, (long)wc->peer.uid,
			              it->entry_name, wc->sel_str, it->serial);
		wc->sent[i] = it->version;
	}
	wc->sent_once = true;
	wc->set_changed = false;
	wc->generation = a->generation;
	return;
nomem:
	free(svids);
	free(pv);
	wcall_finish(wc, GRPC_RESOURCE_EXHAUSTED, "out of memory");
}

static void
h_fetch_x509_svid(grpc_call *call, void *ctx)
{
	struct agent *a = ctx;
	const struct reg_entry **matched;
	const uint8_t *req;
	X509SVIDRequest *m;
	struct wcall *wc;
	char **ids;
	size_t n, len;
	int rc;

	req = grpc_call_request(call, &len);
	if ((m = x509_svidrequest__unpack(NULL, len, req)) == NULL) {
		grpc_call_finish(call, GRPC_INVALID_ARGUMENT, "malformed X509SVIDRequest");
		return;
	}
	x509_svidrequest__free_unpacked(m, NULL);
	/* its messages carry x509_svid_key */
	grpc_call_set_sensitive(call);
	if ((wc = wcall_begin(call, ctx, W_X509SVID, true, &matched, &ids, &n)) == NULL)
		return;
	wcall_link(a->wapi, wc);
	grpc_call_set_user(call, wc, on_close);
	rc = x509_set_items(wc, matched, ids, n);
	free_matches(matched, ids, n);
	if (rc != CUBEID_OK) {
		wcall_finish(wc, status_for(rc), "cannot issue an X.509-SVID now");
		return;
	}
	x509_maybe_send(wc, false);
}

void
wapi_x509_changed(struct wapi *w, struct x509_item *it)
{
	struct wcall *wc, *next;
	size_t i;

	for (wc = w->calls; wc != NULL; wc = next) {
		next = wc->next;
		if (wc->kind != W_X509SVID)
			continue;
		for (i = 0; i < wc->n_items; i++)
			if (wc->items[i] == it)
				break;
		if (i < wc->n_items)
			x509_maybe_send(wc, false);
	}
}

/* ------------------------------------------------------------ bundles */

static void
bundles_send(struct wcall *wc)
{
	struct agent *a = wc->w->a;
	uint8_t *buf = NULL;
	size_t len;
	int rc;

	if (wc->kind == W_X509BUNDLES) {
		X509BundlesResponse resp = X509_BUNDLES_RESPONSE__INIT;
		X509BundlesResponse__BundlesEntry e = X509_BUNDLES_RESPONSE__BUNDLES_ENTRY__INIT,
		                                  *pe;
		char td[300];

		snprintf(td, sizeof(td), "spiffe://%s", a->td);
		e.key = td;
		e.value.data = a->bundle_der;
		e.value.len = a->bundle_der_len;
		pe = &e;
		resp.n_bundles = 1;
		resp.bundles = &pe;
		len = x509_bundles_response__get_packed_size(&resp);
		if ((buf = malloc(len)) != NULL)
			x509_bundles_response__pack(&resp, buf);
	} else {
		JWTBundlesResponse resp = JWTBUNDLES_RESPONSE__INIT;
		JWTBundlesResponse__BundlesEntry e = JWTBUNDLES_RESPONSE__BUNDLES_ENTRY__INIT, *pe;
		char td[300];

		snprintf(td, sizeof(td), "spiffe://%s", a->td);
		e.key = td;
		e.value.data = (uint8_t *)a->jwks;
		e.value.len = a->jwks_len;
		pe = &e;
		resp.n_bundles = 1;
		resp.bundles = &pe;
		len = jwtbundles_response__get_packed_size(&resp);
		if ((buf = malloc(len)) != NULL)
			jwtbundles_response__pack(&resp, buf);
	}
	if (buf == NULL) {
		wcall_finish(wc, GRPC_RESOURCE_EXHAUSTED, "out of memory");
		return;
	}
	rc = grpc_call_send(wc->call, buf, len);
	free(buf);
	if (rc != CUBEID_OK) {
		wcall_finish(wc, GRPC_RESOURCE_EXHAUSTED, "could not queue the response");
		return;
	}
	wc->generation = a->generation;
	wc->sent_once = true;
}

static void
h_fetch_bundles(grpc_call *call, void *ctx, enum wkind kind)
{
	struct agent *a = ctx;
	const struct reg_entry **matched;
	const uint8_t *req;
	struct wcall *wc;
	char **ids;
	size_t n, len;
	bool ok;

	req = grpc_call_request(call, &len);
	if (kind == W_X509BUNDLES) {
		X509BundlesRequest *m = x509_bundles_request__unpack(NULL, len, req);

		ok = m != NULL;
		x509_bundles_request__free_unpacked(m, NULL);
	} else {
		JWTBundlesRequest *m = jwtbundles_request__unpack(NULL, len, req);

		ok = m != NULL;
		jwtbundles_request__free_unpacked(m, NULL);
	}
	if (!ok) {
		grpc_call_finish(call, GRPC_INVALID_ARGUMENT, "malformed request");
		return;
	}
	if ((wc = wcall_begin(call, ctx, kind, true, &matched, &ids, &n)) == NULL)
		return;
	free_matches(matched, ids, n);
	wcall_link(a->wapi, wc);
	grpc_call_set_user(call, wc, on_close);
	bundles_send(wc);
}

static void
h_fetch_x509_bundles(grpc_call *call, void *ctx)
{
	h_fetch_bundles(call, ctx, W_X509BUNDLES);
}

static void
h_fetch_jwt_bundles(grpc_call *call, void *ctx)
{
	h_fetch_bundles(call, ctx, W_JWTBUNDLES);
}

/* ------------------------------------------------------- JWT-SVIDs */

/* Reply once every SVID is ready (or finish with the first failure). */
static void
jwt_maybe_reply(struct wcall *wc)
{
	JWTSVIDResponse resp = JWTSVIDRESPONSE__INIT;
	JWTSVID *svids = NULL, **pv = NULL;
	uint8_t *buf = NULL;
	char audlog[SEL_LOG_MAX];
	size_t i, len, off = 0;

	for (i = 0; i < wc->n_j; i++) {
		struct jwt_item *it = wc->jitems[i];

		if (it->token != NULL && (int64_t)time(NULL) < it->exp)
			continue;
		if (!it->minting) {
			wcall_finish(wc, status_for(it->last_err), "cannot issue a JWT-SVID now");
			return;
		}
		return;
	}
	if ((svids = calloc(wc->n_j, sizeof(*svids))) == NULL ||
	    (pv = calloc(wc->n_j, sizeof(*pv))) == NULL)
		goto nomem;
	for (i = 0; i < wc->n_j; i++) {
		jwtsvid__init(&svids[i]);
		svids[i].spiffe_id = wc->jitems[i]->spiffe_id;
		svids[i].svid = wc->jitems[i]->token;
		svids[i].hint = (char *)"";
		pv[i] = &svids[i];
	}
	resp.n_svids = wc->n_j;
	resp.svids = pv;
	len = jwtsvidresponse__get_packed_size(&resp);
	if ((buf = malloc(len)) == NULL)
		goto nomem;
	jwtsvidresponse__pack(&resp, buf);
	audlog[0] = '\0';
	for (i = 0; i < wc->n_aud && off < sizeof(audlog); i++) {
		int k = snprintf(audlog + off, sizeof(audlog) - off, "%s%s", i > 0 ? "," : "",
		                 wc->aud[i]);
		if (k < 0)
			break;
		off += (size_t)k;
	}
	for (i = 0; i < wc->n_j; i++)
		if (audit_jwt(wc, i, audlog))
			cubeid_notice("issued jwt-svid spiffe_id=%s pid=%ld uid=%ld entry=%s "
			              "selectors=%s aud=[%s] jti=%s exp=%lld",
			              wc->jitems[i]->spiffe_id, (long)wc->peer.pid,
			              (long)wc->peer.uid, wc->jentry[i], wc->sel_str, audlog,
			              wc->jitems[i]->jti, (long long)wc->jitems[i]->exp);
	if (grpc_call_send(wc->call, buf, len) != CUBEID_OK) {
		free(buf);
		free(svids);
		free(pv);
		wcall_finish(wc, GRPC_RESOURCE_EXHAUSTED, "could not queue the response");
		return;
	}
	free(buf);
	free(svids);
	free(pv);
	wcall_finish(wc, GRPC_OK, NULL);
	return;
nomem:
	free(svids);
	free(pv);
	wcall_finish(wc, GRPC_RESOURCE_EXHAUSTED, "out of memory");
}

static void
h_fetch_jwt_svid(grpc_call *call, void *ctx)
{
	struct agent *a = ctx;
	const struct reg_entry **matched = NULL;
	JWTSVIDRequest *m = NULL;
	const uint8_t *req;
	struct wcall *wc = NULL;
	char **ids = NULL;
	size_t n = 0, len, i, k;
	int rc;

	req = grpc_call_request(call, &len);
	if ((m = jwtsvidrequest__unpack(NULL, len, req)) == NULL) {
		grpc_call_finish(call, GRPC_INVALID_ARGUMENT, "malformed JWTSVIDRequest");
		return;
	}
	if (m->n_audience == 0) {
		grpc_call_finish(call, GRPC_INVALID_ARGUMENT, "audience must be specified");
		goto out;
	}
	if (m->n_audience > AGENT_JWT_AUD_MAX) {
		grpc_call_finish(call, GRPC_INVALID_ARGUMENT, "too many audiences");
		goto out;
	}
	for (i = 0; i < m->n_audience; i++)
		if (m->audience[i][0] == '\0' || strlen(m->audience[i]) > AGENT_JWT_AUD_LEN_MAX) {
			grpc_call_finish(call, GRPC_INVALID_ARGUMENT, "bad audience");
			goto out;
		}
	if ((wc = wcall_begin(call, ctx, W_JWTSVID, true, &matched, &ids, &n)) == NULL)
		goto out;
	wcall_link(a->wapi, wc);
	grpc_call_set_user(call, wc, on_close);
	if ((wc->jitems = calloc(n, sizeof(*wc->jitems))) == NULL ||
	    (wc->jentry = calloc(n, sizeof(*wc->jentry))) == NULL ||
	    (wc->aud = calloc(m->n_audience, sizeof(*wc->aud))) == NULL) {
		wcall_finish(wc, GRPC_RESOURCE_EXHAUSTED, "out of memory");
		goto out;
	}
	for (i = 0; i < m->n_audience; i++) {
		if ((wc->aud[i] = strdup(m->audience[i])) == NULL) {
			wcall_finish(wc, GRPC_RESOURCE_EXHAUSTED, "out of memory");
			goto out;
		}
		wc->n_aud++;
	}
	for (i = 0; i < n; i++) {
		int64_t ttl = matched[i]->jwt_ttl > 0 ? matched[i]->jwt_ttl : a->cfg->jwt_svid_ttl;

		if (m->spiffe_id != NULL && m->spiffe_id[0] != '\0' &&
		    strcmp(m->spiffe_id, ids[i]) != 0)
			continue;
		for (k = 0; k < wc->n_j; k++) /* one SVID per identity */
			if (strcmp(wc->jitems[k]->spiffe_id, ids[i]) == 0)
				break;
		if (k < wc->n_j)
			continue;
		if (ttl > cubeid_jwt_keys_max_ttl(a->jwt_keys))
			ttl = cubeid_jwt_keys_max_ttl(a->jwt_keys);
		if ((wc->jentry[wc->n_j] = strdup(matched[i]->name)) == NULL) {
			wcall_finish(wc, GRPC_RESOURCE_EXHAUSTED, "out of memory");
			goto out;
		}
		rc = svid_cache_jwt_get(a->cache, ids[i], (const char *const *)m->audience,
		                        m->n_audience, ttl, &wc->jitems[wc->n_j]);
		if (rc != CUBEID_OK) {
			free(wc->jentry[wc->n_j]);
			wcall_finish(wc, status_for(rc), "cannot issue a JWT-SVID now");
			goto out;
		}
		wc->n_j++;
	}
	if (wc->n_j == 0) {
		wcall_finish(wc, GRPC_PERMISSION_DENIED, "no identity issued");
		goto out;
	}
	jwt_maybe_reply(wc);
out:
	free_matches(matched, ids, n);
	jwtsvidrequest__free_unpacked(m, NULL);
}

void
wapi_jwt_changed(struct wapi *w, struct jwt_item *it)
{
	struct wcall *wc, *next;
	size_t i;

	for (wc = w->calls; wc != NULL; wc = next) {
		next = wc->next;
		if (wc->kind != W_JWTSVID)
			continue;
		for (i = 0; i < wc->n_j; i++)
			if (wc->jitems[i] == it)
				break;
		if (i < wc->n_j)
			jwt_maybe_reply(wc);
	}
}

/* ------------------------------------------------- ValidateJWTSVID */

static void value_free(Google__Protobuf__Value *v);

static void
struct_free(Google__Protobuf__Struct *s)
{
	size_t i;

	if (s == NULL)
		return;
	for (i = 0; i < s->n_fields; i++) {
		if (s->fields[i] == NULL)
			continue;
		free(s->fields[i]->key);
		value_free(s->fields[i]->value);
		free(s->fields[i]);
	}
	free(s->fields);
	free(s);
}

static void
value_free(Google__Protobuf__Value *v)
{
	size_t i;

	if (v == NULL)
		return;
	switch (v->kind_case) {
	case GOOGLE__PROTOBUF__VALUE__KIND_STRING_VALUE:
		free(v->string_value);
		break;
	case GOOGLE__PROTOBUF__VALUE__KIND_STRUCT_VALUE:
		struct_free(v->struct_value);
		break;
	case GOOGLE__PROTOBUF__VALUE__KIND_LIST_VALUE:
		if (v->list_value != NULL) {
			for (i = 0; i < v->list_value->n_values; i++)
				value_free(v->list_value->values[i]);
			free(v->list_value->values);
			free(v->list_value);
		}
		break;
	default:
		break;
	}
	free(v);
}

static Google__Protobuf__Struct *json_to_struct(json_t *o, int depth);

static Google__Protobuf__Value *
json_to_value(json_t *j, int depth)
{
	Google__Protobuf__Value *v;
	size_t i;

	if (depth > CLAIMS_DEPTH_MAX || (v = calloc(1, sizeof(*v))) == NULL)
		return NULL;
	google__protobuf__value__init(v);
	switch (json_typeof(j)) {
	case JSON_OBJECT:
		v->kind_case = GOOGLE__PROTOBUF__VALUE__KIND_STRUCT_VALUE;
		if ((v->struct_value = json_to_struct(j, depth + 1)) == NULL)
			goto fail;
		break;
	case JSON_ARRAY:
		v->kind_case = GOOGLE__PROTOBUF__VALUE__KIND_LIST_VALUE;
		if ((v->list_value = calloc(1, sizeof(*v->list_value))) == NULL)
			goto fail;
		google__protobuf__list_value__init(v->list_value);
		if (json_array_size(j) > 0 &&
		    (v->list_value->values = calloc(json_array_size(j), sizeof(void *))) == NULL)
			goto fail;
		for (i = 0; i < json_array_size(j); i++) {
			if ((v->list_value->values[i] =
			             json_to_value(json_array_get(j, i), depth + 1)) == NULL)
				goto fail;
			v->list_value->n_values++;
		}
		break;
	case JSON_STRING:
		v->kind_case = GOOGLE__PROTOBUF__VALUE__KIND_STRING_VALUE;
		if ((v->string_value = strdup(json_string_value(j))) == NULL)
			goto fail;
		break;
	case JSON_INTEGER:
	case JSON_REAL:
		v->kind_case = GOOGLE__PROTOBUF__VALUE__KIND_NUMBER_VALUE;
		v->number_value = json_number_value(j);
		break;
	case JSON_TRUE:
	case JSON_FALSE:
		v->kind_case = GOOGLE__PROTOBUF__VALUE__KIND_BOOL_VALUE;
		v->bool_value = json_is_true(j);
		break;
	default:
		v->kind_case = GOOGLE__PROTOBUF__VALUE__KIND_NULL_VALUE;
		v->null_value = GOOGLE__PROTOBUF__NULL_VALUE__NULL_VALUE;
		break;
	}
	return v;
fail:
	value_free(v);
	return NULL;
}

static Google__Protobuf__Struct *
json_to_struct(json_t *o, int depth)
{
	Google__Protobuf__Struct *s;
	const char *k;
	json_t *val;
	size_t n = json_object_size(o);

	if (depth > CLAIMS_DEPTH_MAX || (s = calloc(1, sizeof(*s))) == NULL)
		return NULL;
	google__protobuf__struct__init(s);
	if (n > 0 && (s->fields = calloc(n, sizeof(*s->fields))) == NULL)
		goto fail;
	json_object_foreach(o, k, val)
	{
		Google__Protobuf__Struct__FieldsEntry *e;

		if (s->n_fields >= n || (e = calloc(1, sizeof(*e))) == NULL)
			goto fail;
		google__protobuf__struct__fields_entry__init(e);
		s->fields[s->n_fields++] = e;
		if ((e->key = strdup(k)) == NULL || (e->value = json_to_value(val, depth)) == NULL)
			goto fail;
	}
	return s;
fail:
	struct_free(s);
	return NULL;
}

static void
h_validate_jwt_svid(grpc_call *call, void *ctx)
{
	struct agent *a = ctx;
	ValidateJWTSVIDRequest *m = NULL;
	ValidateJWTSVIDResponse resp = VALIDATE_JWTSVIDRESPONSE__INIT;
	const struct reg_entry **matched;
	cubeid_spiffe_id *id = NULL;
	json_t *claims = NULL;
	const uint8_t *req;
	struct wcall *wc = NULL;
	uint8_t *buf = NULL;
	char **ids, msg[160];
	size_t n, len;
	int rc;

	req = grpc_call_request(call, &len);
	if ((m = validate_jwtsvidrequest__unpack(NULL, len, req)) == NULL) {
		grpc_call_finish(call, GRPC_INVALID_ARGUMENT, "malformed ValidateJWTSVIDRequest");
		return;
	}
	if (m->audience == NULL || m->audience[0] == '\0') {
		grpc_call_finish(call, GRPC_INVALID_ARGUMENT, "audience must be specified");
		goto out;
	}
	if (m->svid == NULL || m->svid[0] == '\0') {
		grpc_call_finish(call, GRPC_INVALID_ARGUMENT, "svid must be specified");
		goto out;
	}
	/* any attested caller may validate; no identity is needed */
	if ((wc = wcall_begin(call, ctx, W_JWTSVID, false, &matched, &ids, &n)) == NULL)
		goto out;
	rc = cubeid_jwt_svid_validate(m->svid, strlen(m->svid), a->jwt_bundle, m->audience, 0,
	                              AGENT_JWT_LEEWAY, &id, &claims);
	if (rc != CUBEID_OK) {
		snprintf(msg, sizeof(msg), "invalid JWT-SVID: %s", cubeid_strerror(rc));
		grpc_call_finish(call, GRPC_INVALID_ARGUMENT, msg);
		goto out;
	}
	resp.spiffe_id = (char *)cubeid_spiffe_id_string(id);
	if ((resp.claims = json_to_struct(claims, 0)) == NULL) {
		grpc_call_finish(call, GRPC_INTERNAL, "could not convert the claims");
		goto out;
	}
	len = validate_jwtsvidresponse__get_packed_size(&resp);
	if ((buf = malloc(len)) == NULL) {
		grpc_call_finish(call, GRPC_RESOURCE_EXHAUSTED, "out of memory");
		goto out;
	}
	validate_jwtsvidresponse__pack(&resp, buf);
	cubeid_info("validated jwt-svid spiffe_id=%s for pid=%ld uid=%ld aud=%s", resp.spiffe_id,
	            (long)wc->peer.pid, (long)wc->peer.uid, m->audience);
	if (grpc_call_send(call, buf, len) != CUBEID_OK)
		grpc_call_finish(call, GRPC_RESOURCE_EXHAUSTED, "could not queue the response");
	else
		grpc_call_finish(call, GRPC_OK, NULL);
out:
	if (wc != NULL) {
		selector_set_clear(&wc->sel);
		free(wc);
	}
	free(buf);
	struct_free(resp.claims);
	json_decref(claims);
	cubeid_spiffe_id_free(id);
	validate_jwtsvidrequest__free_unpacked(m, NULL);
}

/* ------------------------------------------------------- WIT, status */

static void
h_unimplemented(grpc_call *call, void *ctx)
{
	(void)ctx;
	grpc_call_finish(call, GRPC_UNIMPLEMENTED, "WIT-SVIDs are not supported");
}

/* Answer a status call with the status document. */
static void
status_reply(struct agent *a, grpc_call *call)
{
	char *json = NULL;
	uint8_t *buf = NULL;
	size_t jlen, n, i;

	if (a->ops->status_json(a, &json) != CUBEID_OK) {
		grpc_call_finish(call, GRPC_INTERNAL, "could not build the status");
		return;
	}
	jlen = strlen(json);
	if ((buf = malloc(jlen + 11)) == NULL) {
		free(json);
		grpc_call_finish(call, GRPC_RESOURCE_EXHAUSTED, "out of memory");
		return;
	}
	n = 0;
	buf[n++] = 0x0a; /* field 1, length-delimited */
	for (i = jlen; i >= 0x80; i >>= 7)
		buf[n++] = (uint8_t)(i | 0x80);
	buf[n++] = (uint8_t)i;
	memcpy(buf + n, json, jlen);
	n += jlen;
	if (grpc_call_send(call, buf, n) != CUBEID_OK)
		grpc_call_finish(call, GRPC_RESOURCE_EXHAUSTED, "could not queue the response");
	else
		grpc_call_finish(call, GRPC_OK, NULL);
	free(buf);
	free(json);
}

static void
status_wait_unlink(struct status_wait *sw)
{
	if (sw->prev != NULL)
		sw->prev->next = sw->next;
	else
		sw->w->status_waits = sw->next;
	if (sw->next != NULL)
		sw->next->prev = sw->prev;
}

static void
status_wait_close(grpc_call *call, void *user)
{
	struct status_wait *sw = user;

	(void)call;
	status_wait_unlink(sw);
	free(sw);
}

void
wapi_status_probed(struct wapi *w)
{
	struct status_wait *sw;

	while ((sw = w->status_waits) != NULL) {
		status_wait_unlink(sw);
		grpc_call_set_user(sw->call, NULL, NULL);
		status_reply(w->a, sw->call);
		free(sw);
	}
}

/*
 * cubeid.Agent/Status: request ignored; the response is a protobuf message
 * with one field, `string json = 1`, the status document.  Only root and
 * the agent's own uid may ask.  The token's health in it is live: when
 * the last token operation (a mint or a probe) is older than
 * AGENT_STATUS_PROBE_S, the call waits for a probe (a signature with the
 * CA key, in a worker) and is answered when it ends.
 */
static void
h_status(grpc_call *call, void *ctx)
{
	struct agent *a = ctx;
	struct peer_info peer = {0};
	struct selector_set sel = {0};
	struct status_wait *sw;
	int64_t checked = a->metrics.token_checked;
	int rc;

	rc = attest_peer_fd(grpc_call_fd(call), &a->attest, &peer, &sel);
	selector_set_clear(&sel);
	if (rc != CUBEID_OK || (peer.uid != 0 && peer.uid != a->uid)) {
		grpc_call_finish(call, GRPC_PERMISSION_DENIED,
		                 "status is for root and the agent's user only");
		return;
	}
	if ((checked == 0 || (int64_t)time(NULL) - checked >= AGENT_STATUS_PROBE_S) &&
	    metrics_probe_start(a) && (sw = calloc(1, sizeof(*sw))) != NULL) {
		sw->w = a->wapi;
		sw->call = call;
		sw->next = a->wapi->status_waits;
		if (sw->next != NULL)
			sw->next->prev = sw;
		a->wapi->status_waits = sw;
		grpc_call_set_user(call, sw, status_wait_close);
		return;
	}
	status_reply(a, call);
}

const struct grpc_method wapi_methods[] = {
        {"/SpiffeWorkloadAPI/FetchX509SVID", true, h_fetch_x509_svid},
        {"/SpiffeWorkloadAPI/FetchX509Bundles", true, h_fetch_x509_bundles},
        {"/SpiffeWorkloadAPI/FetchJWTSVID", false, h_fetch_jwt_svid},
        {"/SpiffeWorkloadAPI/FetchJWTBundles", true, h_fetch_jwt_bundles},
        {"/SpiffeWorkloadAPI/ValidateJWTSVID", false, h_validate_jwt_svid},
        {"/SpiffeWorkloadAPI/FetchWITSVID", true, h_unimplemented},
        {"/SpiffeWorkloadAPI/FetchWITBundles", true, h_unimplemented},
        {AGENT_STATUS_PATH, false, h_status},
        PICOD_METHODS,
        GRPC_REFLECTION_METHODS,
};
const size_t wapi_n_methods = sizeof(wapi_methods) / sizeof(wapi_methods[0]);

/* ------------------------------------------------------------ life */

int
wapi_new(struct agent *a, struct wapi **out)
{
	struct wapi *w;

	*out = NULL;
	if ((w = calloc(1, sizeof(*w))) == NULL)
		return CUBEID_ERR_NOMEM;
	w->a = a;
	*out = w;
	return CUBEID_OK;
}

void
wapi_free(struct wapi *w)
{
	if (w == NULL)
		return;
	wapi_finish_all(w, GRPC_UNAVAILABLE, "agent is shutting down");
	free(w);
}

void
wapi_finish_all(struct wapi *w, int status, const char *msg)
{
	struct status_wait *sw;

	while (w->calls != NULL)
		wcall_finish(w->calls, status, msg);
	while ((sw = w->status_waits) != NULL) {
		status_wait_unlink(sw);
		grpc_call_set_user(sw->call, NULL, NULL);
		grpc_call_finish(sw->call, status, msg);
		free(sw);
	}
}

unsigned
wapi_streams(const struct wapi *w)
{
	return w->n_streams;
}

/* Entries or bundles changed: every stream gets the state it should now
 * have; a stream whose identity is gone is ended with PERMISSION_DENIED. */
void
wapi_refresh_all(struct wapi *w)
{
	struct agent *a = w->a;
	struct wcall *wc, *next;
	const struct reg_entry **matched;
	char **ids;
	size_t n;
	int rc;

	for (wc = w->calls; wc != NULL; wc = next) {
		next = wc->next;
		if (wc->kind == W_JWTSVID)
			continue; /* unary calls in flight finish as they are */
		rc = a->ops->match(a, &wc->sel, &matched, &ids, &n);
		if (rc != CUBEID_OK || n == 0) {
			if (rc == CUBEID_OK)
				cubeid_notice("identity withdrawn for pid=%ld uid=%ld selectors=%s",
				              (long)wc->peer.pid, (long)wc->peer.uid, wc->sel_str);
			free_matches(matched, ids, n);
			wcall_finish(wc,
			             rc == CUBEID_OK ? GRPC_PERMISSION_DENIED : GRPC_UNAVAILABLE,
			             "no identity issued");
			continue;
		}
		if (wc->kind == W_X509SVID) {
			rc = x509_set_items(wc, matched, ids, n);
			free_matches(matched, ids, n);
			if (rc != CUBEID_OK) {
				wcall_finish(wc, status_for(rc), "cannot issue an X.509-SVID now");
				continue;
			}
			/* the set of identities or the bundle may have changed */
			x509_maybe_send(wc, wc->generation != a->generation);
		} else {
			free_matches(matched, ids, n);
			if (wc->generation != a->generation)
				bundles_send(wc);
		}
	}
}
