/*
 * Kubernetes pod metadata for attestation: the kubelet's read-only pod list
 * (GET kubelet_pods_url) or a pod-info file holding the same PodList JSON.
 * The pod is found by the UID from the process's cgroup, the container by
 * its ID (status.containerStatuses[].containerID, "runtime://ID").
 *
 * Lists are cached for ATTEST_CACHE_MS; a pod missing from a cached list
 * refetches it, at most once per ATTEST_REFRESH_MS, so a pod that just
 * started is found without letting callers hammer the kubelet.  The
 * kubelet is asked from a thread of its own and waited for at most
 * ATTEST_K8S_WAIT_MS (see "cache" below); its secure port (10250) takes a
 * bearer token (kubelet_token_file) and a CA file (kubelet_ca_file).
 */
#include "config.h"

#include "agent/attest-internal.h"
#include "common/http-fetch.h"

#include <cubeid/log.h>

#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

/* ------------------------------------------------------------ parsing */

static const char *
jstr(json_t *obj, const char *key)
{
	json_t *v = json_object_get(obj, key);

	return json_is_string(v) ? json_string_value(v) : NULL;
}

static int
add_if(struct selector_set *out, const char *type, const char *value)
{
	int r;

	if (value == NULL || value[0] == '\0')
		return CUBEID_OK;
	r = selector_set_add(out, type, value);
	if (r == CUBEID_ERR_NOMEM)
		return r;
	if (r != CUBEID_OK)
		cubeid_debug("attest: skipping %s selector: %s", type, cubeid_strerror(r));
	return CUBEID_OK;
}

/* "containerd://ID" (or a bare ID) equals cid? */
static bool
container_id_is(const char *v, const char *cid)
{
	const char *p;

	if (v == NULL || cid == NULL)
		return false;
	p = strstr(v, "://");
	p = p != NULL ? p + 3 : v;
	return strcmp(p, cid) == 0;
}

static int
pod_selectors(json_t *pod, const char *cid, struct selector_set *out)
{
	static const char *const lists[] = {"containerStatuses", "initContainerStatuses",
	                                    "ephemeralContainerStatuses", NULL};
	json_t *meta = json_object_get(pod, "metadata"), *spec = json_object_get(pod, "spec");
	json_t *status = json_object_get(pod, "status"), *labels, *v;
	const char *sa, *key;
	size_t i, n = 0;
	int r;

	sa = jstr(spec, "serviceAccountName");
	if (sa == NULL)
		sa = jstr(spec, "serviceAccount"); /* the deprecated spelling */
	if ((r = add_if(out, "k8s:ns", jstr(meta, "namespace"))) != 0 ||
	    (r = add_if(out, "k8s:sa", sa)) != 0 ||
	    (r = add_if(out, "k8s:pod-uid", jstr(meta, "uid"))) != 0 ||
	    (r = add_if(out, "k8s:pod-name", jstr(meta, "name"))) != 0 ||
	    (r = add_if(out, "k8s:node-name", jstr(spec, "nodeName"))) != 0)
		return r;
	labels = json_object_get(meta, "labels");
	json_object_foreach(labels, key, v)
	{
		char *kv;

		if (!json_is_string(v))
			continue;
		if (n++ >= ATTEST_MAX_LABELS) {
			cubeid_warn("attest: more than %u pod labels; the rest are ignored",
			            ATTEST_MAX_LABELS);
			break;
		}
		if (asprintf(&kv, "%s:%s", key, json_string_value(v)) < 0)
			return CUBEID_ERR_NOMEM;
		r = add_if(out, "k8s:pod-label", kv);
		free(kv);
		if (r != CUBEID_OK)
			return r;
	}
	if (cid == NULL)
		return CUBEID_OK;
	for (i = 0; lists[i] != NULL; i++) {
		json_t *arr = json_object_get(status, lists[i]), *cs;
		size_t j;

		json_array_foreach(arr, j, cs)
		{
			if (!container_id_is(jstr(cs, "containerID"), cid))
				continue;
			if ((r = add_if(out, "k8s:container-name", jstr(cs, "name"))) != 0 ||
			    (r = add_if(out, "k8s:container-image", jstr(cs, "image"))) != 0)
				return r;
			return CUBEID_OK;
		}
	}
	cubeid_debug("attest: container %.12s not in the pod's status", cid);
	return CUBEID_OK;
}

/* Find the pod; NULL if absent or the document is not a PodList. */
static json_t *
find_pod(json_t *list, const char *pod_uid)
{
	json_t *items = json_object_get(list, "items"), *pod;
	size_t i;

	json_array_foreach(items, i, pod)
	{
		const char *uid = jstr(json_object_get(pod, "metadata"), "uid");
		if (uid != NULL && strcmp(uid, pod_uid) == 0)
			return pod;
	}
	return NULL;
}

static int
parse_list(const char *buf, size_t len, json_t **out)
{
	json_error_t jerr;
	json_t *j;

	*out = NULL;
	if (len > ATTEST_PODLIST_MAX)
		return CUBEID_ERR_TOO_LARGE;
	j = json_loadb(buf, len, 0, &jerr);
	if (j == NULL) {
		cubeid_warn("attest: pod list: line %d: %s", jerr.line, jerr.text);
		return CUBEID_ERR_PARSE;
	}
	if (!json_is_array(json_object_get(j, "items"))) {
		json_decref(j);
		cubeid_warn("attest: pod list has no \"items\" array");
		return CUBEID_ERR_PARSE;
	}
	*out = j;
	return CUBEID_OK;
}

int
attest_k8s_from_json(const char *buf, size_t len, const char *pod_uid, const char *cid,
                     struct selector_set *out, bool *found)
{
	json_t *list = NULL, *pod;
	int r;

	if (found != NULL)
		*found = false;
	if (buf == NULL || pod_uid == NULL || out == NULL)
		return CUBEID_ERR_INVALID_ARG;
	if ((r = parse_list(buf, len, &list)) != CUBEID_OK)
		return r;
	if ((pod = find_pod(list, pod_uid)) != NULL) {
		if (found != NULL)
			*found = true;
		r = pod_selectors(pod, cid, out);
	}
	json_decref(list);
	return r;
}

/* ------------------------------------------------------------ fetching */

struct membuf {
	char *p;
	size_t len;
	bool too_large;
};

static size_t
on_body(char *data, size_t size, size_t nmemb, void *arg)
{
	struct membuf *m = arg;
	size_t n = size * nmemb;
	char *np;

	if (n > ATTEST_PODLIST_MAX - m->len) {
		m->too_large = true;
		return 0; /* aborts the transfer */
	}
	if ((np = realloc(m->p, m->len + n + 1)) == NULL)
		return 0;
	m->p = np;
	memcpy(m->p + m->len, data, n);
	m->len += n;
	m->p[m->len] = '\0';
	return n;
}

/* The bearer token from path (a ServiceAccount token file, which the
 * kubelet rewrites as it rotates): read on every fetch, trailing
 * whitespace cut, no line breaks inside.  *out is the caller's (wipe it). */
static int
read_token(const char *path, char **out)
{
	char buf[ATTEST_TOKEN_MAX + 1];
	size_t n;
	FILE *f;
	int r = CUBEID_OK;

	*out = NULL;
	if ((f = fopen(path, "re")) == NULL) {
		cubeid_warn("attest: kubelet token file %s: %s", path, strerror(errno));
		return CUBEID_ERR_IO;
	}
	n = fread(buf, 1, sizeof(buf), f);
	if (ferror(f))
		r = CUBEID_ERR_IO;
	fclose(f);
	if (r == CUBEID_OK && n > ATTEST_TOKEN_MAX)
		r = CUBEID_ERR_TOO_LARGE;
	while (r == CUBEID_OK && n > 0 &&
	       (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' ' ||
	        buf[n - 1] == '\t'))
		n--;
	if (r == CUBEID_OK && (n == 0 || memchr(buf, '\n', n) != NULL ||
	                       memchr(buf, '\r', n) != NULL || memchr(buf, '\0', n) != NULL))
		r = CUBEID_ERR_PARSE;
	if (r == CUBEID_OK && (*out = strndup(buf, n)) == NULL)
		r = CUBEID_ERR_NOMEM;
	if (r != CUBEID_OK)
		cubeid_warn("attest: kubelet token file %s: %s", path, cubeid_strerror(r));
	explicit_bzero(buf, sizeof(buf));
	return r;
}

/* GET url: the kubelet's pod list.  token_file: send its token as
 * "Authorization: Bearer" (https only; the secure port 10250 wants it);
 * ca_file: the CA that signed the kubelet's serving certificate. */
static int
fetch_url(const char *url, const char *token_file, const char *ca_file, char **out, size_t *out_len)
{
	struct http_reply m = {0};
	char *token = NULL, *auth = NULL;
	const char *hdrs[] = {NULL, NULL};
	const char *why;
	int r = CUBEID_ERR_IO;

	*out = NULL;
	*out_len = 0;
	if (token_file != NULL) {
		if (strncmp(url, "https://", 8) != 0) {
			cubeid_warn("attest: not sending the kubelet token over %s: use https",
			            url);
			goto out;
		}
		if ((r = read_token(token_file, &token)) != CUBEID_OK)
			goto out;
		r = CUBEID_ERR_NOMEM;
		if (asprintf(&auth, "Authorization: Bearer %s", token) < 0) {
			auth = NULL;
			goto out;
		}
		hdrs[0] = auth;
	}
	{
		struct http_req q = {.url = url,
		                     .headers = hdrs,
		                     .ca_file = ca_file,
		                     .max = ATTEST_PODLIST_MAX,
		                     .timeout_ms = ATTEST_HTTP_TIMEOUT_MS,
		                     .no_proxy = true};

		r = http_fetch(&q, &m, &why);
	}
	if (r == CUBEID_ERR_HTTP) {
		cubeid_warn("attest: kubelet pod list: %s", why);
		r = CUBEID_ERR_IO;
		goto out;
	}
	if (r != CUBEID_OK)
		goto out;
	if (m.status != 200) {
		cubeid_warn("attest: kubelet pod list: HTTP status %ld", m.status);
		r = CUBEID_ERR_IO;
		goto out;
	}
	*out = m.body;
	*out_len = m.len;
	m.body = NULL;
	r = CUBEID_OK;
out:
	http_reply_clear(&m);
	if (auth != NULL)
		explicit_bzero(auth, strlen(auth));
	free(auth);
	if (token != NULL)
		explicit_bzero(token, strlen(token));
	free(token);
	return r;
}

static int
read_file(const char *path, char **out, size_t *out_len)
{
	struct membuf m = {0};
	char buf[65536];
	FILE *f;
	size_t n;
	int r = CUBEID_OK;

	*out = NULL;
	*out_len = 0;
	if ((f = fopen(path, "re")) == NULL)
		return CUBEID_ERR_IO;
	while ((n = fread(buf, 1, sizeof(buf), f)) > 0) {
		if (on_body(buf, 1, n, &m) != n) {
			r = m.too_large ? CUBEID_ERR_TOO_LARGE : CUBEID_ERR_NOMEM;
			goto out;
		}
	}
	if (ferror(f)) {
		r = CUBEID_ERR_IO;
		goto out;
	}
	if (m.p == NULL && (m.p = calloc(1, 1)) == NULL) {
		r = CUBEID_ERR_NOMEM;
		goto out;
	}
	*out = m.p;
	*out_len = m.len;
	m.p = NULL;
out:
	free(m.p);
	fclose(f);
	return r;
}

/* ------------------------------------------------------------ cache */

/*
 * One slot per kind of source; a different path or URL replaces it.  The
 * lock guards the slots and is never held while a list is read or
 * fetched.  Attestation runs on the agent's loop thread, so the kubelet is
 * asked from a thread of its own: attestation starts a fetch (one at a
 * time) and waits for it at most ATTEST_K8S_WAIT_MS.  A fetch that takes
 * longer still fills the cache for the next caller; meanwhile the cached
 * list, if any, is used.
 */
struct pod_cache {
	char *source;
	json_t *list;
	int64_t fetched_ms; /* monotonic */
	struct timespec mtime;
	off_t size;
	/* the URL slot's fetch */
	bool fetching;
	uint64_t fetches; /* fetches ended */
	int64_t tried_ms; /* when the last one started */
	int last_err;
};
static pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;
static struct pod_cache cache_file_slot, cache_url_slot;

/* the fetcher thread's request (under cache_lock) */
static pthread_cond_t want_cv = PTHREAD_COND_INITIALIZER;
static pthread_cond_t done_cv; /* CLOCK_MONOTONIC */
static char *want_url, *want_token, *want_ca;
static bool want;
static pthread_once_t fetcher_once = PTHREAD_ONCE_INIT;
static bool fetcher_ok;

static int64_t
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void
slot_clear_locked(struct pod_cache *c)
{
	bool fetching = c->fetching;
	uint64_t fetches = c->fetches;

	free(c->source);
	json_decref(c->list);
	memset(c, 0, sizeof(*c));
	/* a fetch in flight ends all the same (its result is dropped if
	 * the source changed) */
	c->fetching = fetching;
	c->fetches = fetches;
}

void
attest_pod_cache_clear(void)
{
	pthread_mutex_lock(&cache_lock);
	slot_clear_locked(&cache_file_slot);
	slot_clear_locked(&cache_url_slot);
	pthread_mutex_unlock(&cache_lock);
}

/* Put a new list for source in c, unless c has moved on to another. */
static void
slot_install_locked(struct pod_cache *c, const char *source, json_t *list, int64_t now,
                    const struct stat *st)
{
	char *src;

	if (c->source != NULL && strcmp(c->source, source) != 0) {
		json_decref(list);
		return;
	}
	if ((src = strdup(source)) == NULL) {
		json_decref(list);
		return;
	}
	free(c->source);
	json_decref(c->list);
	c->source = src;
	c->list = list;
	c->fetched_ms = now;
	if (st != NULL) {
		c->mtime = st->st_mtim;
		c->size = st->st_size;
	}
}

static void *
fetcher_main(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&cache_lock);
	for (;;) {
		char *url, *token, *ca, *buf = NULL;
		json_t *list = NULL;
		size_t len = 0;
		int64_t t;
		int r;

		while (!want)
			pthread_cond_wait(&want_cv, &cache_lock);
		want = false;
		url = want_url;
		token = want_token;
		ca = want_ca;
		want_url = want_token = want_ca = NULL;
		t = now_ms();
		pthread_mutex_unlock(&cache_lock);

		r = fetch_url(url, token, ca, &buf, &len);
		if (r == CUBEID_OK)
			r = parse_list(buf, len, &list);
		free(buf);

		pthread_mutex_lock(&cache_lock);
		if (r == CUBEID_OK)
			slot_install_locked(&cache_url_slot, url, list, t, NULL);
		cache_url_slot.last_err = r;
		cache_url_slot.fetching = false;
		cache_url_slot.fetches++;
		pthread_cond_broadcast(&done_cv);
		free(url);
		free(token);
		free(ca);
	}
	return NULL;
}

static void
fetcher_start(void)
{
	pthread_condattr_t ca;
	pthread_attr_t ta;
	pthread_t t;

	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&done_cv, &ca);
	pthread_condattr_destroy(&ca);
	pthread_attr_init(&ta);
	pthread_attr_setdetachstate(&ta, PTHREAD_CREATE_DETACHED);
	fetcher_ok = pthread_create(&t, &ta, fetcher_main, NULL) == 0;
	pthread_attr_destroy(&ta);
	if (!fetcher_ok)
		cubeid_warn("attest: cannot start the kubelet fetcher thread");
}

/* Have the fetcher get the URL slot's list afresh and wait for it, at most
 * ATTEST_K8S_WAIT_MS, with the lock released meanwhile.  A fetch that
 * failed less than ATTEST_REFRESH_MS ago is not retried yet. */
static void
url_refresh_locked(const struct attest_opts *o, int64_t now)
{
	struct pod_cache *c = &cache_url_slot;
	struct timespec until;
	uint64_t seen;
	int64_t end;

	if (!c->fetching) {
		if (c->last_err != CUBEID_OK && now - c->tried_ms < ATTEST_REFRESH_MS)
			return;
		free(want_url);
		free(want_token);
		free(want_ca);
		want_url = strdup(o->kubelet_pods_url);
		want_token = o->kubelet_token_file != NULL ? strdup(o->kubelet_token_file) : NULL;
		want_ca = o->kubelet_ca_file != NULL ? strdup(o->kubelet_ca_file) : NULL;
		if (want_url == NULL || (o->kubelet_token_file != NULL && want_token == NULL) ||
		    (o->kubelet_ca_file != NULL && want_ca == NULL))
			return;
		if (c->source == NULL)
			c->source = strdup(o->kubelet_pods_url); /* the slot is for this URL */
		want = true;
		c->fetching = true;
		c->tried_ms = now;
		pthread_cond_signal(&want_cv);
	}
	seen = c->fetches;
	end = now + ATTEST_K8S_WAIT_MS;
	until.tv_sec = end / 1000;
	until.tv_nsec = (end % 1000) * 1000000;
	while (c->fetches == seen)
		if (pthread_cond_timedwait(&done_cv, &cache_lock, &until) == ETIMEDOUT)
			break;
	if (c->fetches == seen)
		cubeid_info("attest: the kubelet has not answered within %d ms; going on without",
		            ATTEST_K8S_WAIT_MS);
}

/* The file slot: read the file (not under the lock) when it changed or the
 * copy is old. */
static int
file_refresh(const char *path, bool force)
{
	struct pod_cache *c = &cache_file_slot;
	struct stat st = {0};
	int64_t now = now_ms();
	char *buf = NULL;
	size_t len = 0;
	json_t *list = NULL;
	bool fresh;
	int r;

	if (stat(path, &st) != 0) {
		pthread_mutex_lock(&cache_lock);
		slot_clear_locked(c);
		pthread_mutex_unlock(&cache_lock);
		return CUBEID_ERR_IO;
	}
	pthread_mutex_lock(&cache_lock);
	if (c->source != NULL && strcmp(c->source, path) != 0)
		slot_clear_locked(c);
	fresh = c->list != NULL && st.st_mtim.tv_sec == c->mtime.tv_sec &&
	        st.st_mtim.tv_nsec == c->mtime.tv_nsec && st.st_size == c->size &&
	        now - c->fetched_ms < (force ? ATTEST_REFRESH_MS : ATTEST_CACHE_MS);
	pthread_mutex_unlock(&cache_lock);
	if (fresh)
		return CUBEID_OK;
	if ((r = read_file(path, &buf, &len)) == CUBEID_OK)
		r = parse_list(buf, len, &list);
	free(buf);
	if (r != CUBEID_OK)
		return r;
	pthread_mutex_lock(&cache_lock);
	if (c->source == NULL)
		c->source = strdup(path); /* a clear may have raced: claim it */
	slot_install_locked(c, path, list, now, &st);
	pthread_mutex_unlock(&cache_lock);
	return CUBEID_OK;
}

/* Look pod_uid up in slot c's list (under the lock). */
static int
lookup_locked(struct pod_cache *c, const char *pod_uid, const char *cid, struct selector_set *out,
              bool *found)
{
	json_t *pod;

	*found = false;
	if (c->list == NULL || (pod = find_pod(c->list, pod_uid)) == NULL)
		return CUBEID_OK;
	*found = true;
	return pod_selectors(pod, cid, out);
}

static int
lookup_file(const char *path, const char *pod_uid, const char *cid, struct selector_set *out,
            bool *found)
{
	int r;

	*found = false;
	if ((r = file_refresh(path, false)) != CUBEID_OK)
		return r;
	pthread_mutex_lock(&cache_lock);
	r = lookup_locked(&cache_file_slot, pod_uid, cid, out, found);
	pthread_mutex_unlock(&cache_lock);
	if (r != CUBEID_OK || *found)
		return r;
	/* a pod that just started: read it again (at most once a second) */
	if ((r = file_refresh(path, true)) != CUBEID_OK)
		return r;
	pthread_mutex_lock(&cache_lock);
	r = lookup_locked(&cache_file_slot, pod_uid, cid, out, found);
	pthread_mutex_unlock(&cache_lock);
	return r;
}

static int
lookup_url(const struct attest_opts *o, const char *pod_uid, const char *cid,
           struct selector_set *out, bool *found)
{
	struct pod_cache *c = &cache_url_slot;
	int64_t now = now_ms();
	int r;

	*found = false;
	pthread_once(&fetcher_once, fetcher_start);
	if (!fetcher_ok)
		return CUBEID_ERR_IO;
	pthread_mutex_lock(&cache_lock);
	if (c->source != NULL && strcmp(c->source, o->kubelet_pods_url) != 0)
		slot_clear_locked(c);
	if (c->list == NULL || now - c->fetched_ms >= ATTEST_CACHE_MS)
		url_refresh_locked(o, now);
	r = lookup_locked(c, pod_uid, cid, out, found);
	if (r == CUBEID_OK && !*found && c->list != NULL &&
	    now_ms() - c->fetched_ms >= ATTEST_REFRESH_MS) {
		/* a pod that just started: ask again (at most once a second) */
		url_refresh_locked(o, now_ms());
		r = lookup_locked(c, pod_uid, cid, out, found);
	}
	if (r == CUBEID_OK && c->list == NULL)
		r = c->last_err != CUBEID_OK ? c->last_err : CUBEID_ERR_UNAVAILABLE;
	pthread_mutex_unlock(&cache_lock);
	return r;
}

int
attest_k8s(const struct attest_opts *o, const char *pod_uid, const char *cid,
           struct selector_set *out)
{
	bool found = false;
	int r = CUBEID_OK;

	if (o == NULL || pod_uid == NULL || out == NULL)
		return CUBEID_ERR_INVALID_ARG;
	if (o->pod_info_file != NULL) {
		r = lookup_file(o->pod_info_file, pod_uid, cid, out, &found);
		if (r != CUBEID_OK || found)
			return r;
	}
	if (o->kubelet_pods_url != NULL) {
		r = lookup_url(o, pod_uid, cid, out, &found);
		if (r != CUBEID_OK || found)
			return r;
	}
	cubeid_info("attest: pod %s is not in the pod list", pod_uid);
	return r;
}
