/*
 * Kubernetes pod metadata for attestation: the kubelet's read-only pod list
 * (GET kubelet_pods_url) or a pod-info file holding the same PodList JSON.
 * The pod is found by the UID from the process's cgroup, the container by
 * its ID (status.containerStatuses[].containerID, "runtime://ID").
 *
 * Lists are cached for ATTEST_CACHE_MS; a pod missing from a cached list
 * refetches it, at most once per ATTEST_REFRESH_MS, so a pod that just
 * started is found without letting callers hammer the kubelet.
 */
#include "config.h"

#include "agent/attest-internal.h"

#include <cubeid/log.h>

#include <curl/curl.h>
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

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc = CURLE_FAILED_INIT;

static void
curl_init(void)
{
	curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

static int
fetch_url(const char *url, char **out, size_t *out_len)
{
	struct membuf m = {0};
	CURL *h = NULL;
	CURLcode cc;
	long code = 0;
	int r = CUBEID_ERR_IO;

	*out = NULL;
	*out_len = 0;
	pthread_once(&curl_once, curl_init);
	if (curl_init_rc != CURLE_OK || (h = curl_easy_init()) == NULL)
		return CUBEID_ERR_NOMEM;
	curl_easy_setopt(h, CURLOPT_URL, url);
#if LIBCURL_VERSION_NUM >= 0x075500
	curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
#endif
	curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(h, CURLOPT_NOPROXY, "*");
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, (long)ATTEST_HTTP_TIMEOUT_MS);
	curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)ATTEST_HTTP_TIMEOUT_MS);
	curl_easy_setopt(h, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)ATTEST_PODLIST_MAX);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, &m);
	cc = curl_easy_perform(h);
	if (m.too_large || cc == CURLE_FILESIZE_EXCEEDED) {
		r = CUBEID_ERR_TOO_LARGE;
		goto out;
	}
	if (cc != CURLE_OK) {
		cubeid_warn("attest: kubelet pod list: %s", curl_easy_strerror(cc));
		goto out;
	}
	curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
	if (code != 200) {
		cubeid_warn("attest: kubelet pod list: HTTP status %ld", code);
		goto out;
	}
	if (m.p == NULL && (m.p = calloc(1, 1)) == NULL) {
		r = CUBEID_ERR_NOMEM;
		goto out;
	}
	*out = m.p;
	*out_len = m.len;
	m.p = NULL;
	r = CUBEID_OK;
out:
	free(m.p);
	curl_easy_cleanup(h);
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

/* One slot per kind of source; a different path or URL replaces it. */
struct pod_cache {
	char *source;
	json_t *list;
	int64_t fetched_ms; /* monotonic */
	struct timespec mtime;
	off_t size;
};
static pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;
static struct pod_cache cache_file_slot, cache_url_slot;

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
	free(c->source);
	json_decref(c->list);
	memset(c, 0, sizeof(*c));
}

void
attest_pod_cache_clear(void)
{
	pthread_mutex_lock(&cache_lock);
	slot_clear_locked(&cache_file_slot);
	slot_clear_locked(&cache_url_slot);
	pthread_mutex_unlock(&cache_lock);
}

/* Make c hold a fresh enough list from source (force: refetch unless it
 * was fetched within ATTEST_REFRESH_MS). */
static int
slot_refresh_locked(struct pod_cache *c, const char *source, bool is_file, bool force)
{
	int64_t now = now_ms();
	struct stat st = {0};
	char *buf = NULL, *src = NULL;
	size_t len = 0;
	json_t *list = NULL;
	int r;

	if (c->source != NULL && strcmp(c->source, source) != 0)
		slot_clear_locked(c);
	if (is_file && stat(source, &st) != 0) {
		slot_clear_locked(c);
		return CUBEID_ERR_IO;
	}
	if (c->list != NULL) {
		int64_t age = now - c->fetched_ms;
		bool same_file = !is_file ||
		                 (st.st_mtim.tv_sec == c->mtime.tv_sec &&
		                  st.st_mtim.tv_nsec == c->mtime.tv_nsec && st.st_size == c->size);
		if (same_file && (force ? age < ATTEST_REFRESH_MS : age < ATTEST_CACHE_MS))
			return CUBEID_OK;
	}
	r = is_file ? read_file(source, &buf, &len) : fetch_url(source, &buf, &len);
	if (r != CUBEID_OK)
		goto out;
	if ((r = parse_list(buf, len, &list)) != CUBEID_OK)
		goto out;
	if ((src = strdup(source)) == NULL) {
		r = CUBEID_ERR_NOMEM;
		goto out;
	}
	slot_clear_locked(c);
	c->source = src;
	c->list = list;
	c->fetched_ms = now;
	c->mtime = st.st_mtim;
	c->size = st.st_size;
	src = NULL;
	list = NULL;
out:
	free(buf);
	free(src);
	json_decref(list);
	return r;
}

static int
lookup_in(struct pod_cache *c, const char *source, bool is_file, const char *pod_uid,
          const char *cid, struct selector_set *out, bool *found)
{
	json_t *pod;
	int r;

	*found = false;
	pthread_mutex_lock(&cache_lock);
	if ((r = slot_refresh_locked(c, source, is_file, false)) != CUBEID_OK)
		goto out;
	if ((pod = find_pod(c->list, pod_uid)) == NULL) {
		if ((r = slot_refresh_locked(c, source, is_file, true)) != CUBEID_OK)
			goto out;
		pod = find_pod(c->list, pod_uid);
	}
	if (pod != NULL) {
		*found = true;
		r = pod_selectors(pod, cid, out);
	}
out:
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
		r = lookup_in(&cache_file_slot, o->pod_info_file, true, pod_uid, cid, out, &found);
		if (r != CUBEID_OK || found)
			return r;
	}
	if (o->kubelet_pods_url != NULL) {
		r = lookup_in(&cache_url_slot, o->kubelet_pods_url, false, pod_uid, cid, out,
		              &found);
		if (r != CUBEID_OK || found)
			return r;
	}
	cubeid_info("attest: pod %s is not in the pod list", pod_uid);
	return r;
}
