/*
 * The Kubernetes publication store: one ConfigMap per node, read and
 * written through the API server with the pod's ServiceAccount token and
 * CA, over libcurl (<cubeid/cluster.h>, docs/cluster.md).
 *
 *   put     PATCH  /api/v1/namespaces/NS/configmaps/cubeid-pub-NODE
 *                  ?fieldManager=cubeid-agent&force=true
 *                  Content-Type: application/apply-patch+yaml  (server-side
 *                  apply: creates or replaces in one request)
 *   list    GET    /api/v1/namespaces/NS/configmaps?labelSelector=cubeid.io/publication
 *   remove  DELETE /api/v1/namespaces/NS/configmaps/cubeid-pub-NODE
 *
 *   watch   GET    /api/v1/namespaces/NS/configmaps?labelSelector=cubeid.io/publication
 *                  &watch=1&resourceVersion=RV&allowWatchBookmarks=true
 *                  &timeoutSeconds=290
 *
 * Only https:// API servers, over HTTP/1.1: over HTTP/2 the API server
 * answers a request whose body it does not read (a PATCH with a bad token)
 * and resets the stream, and libcurl may lose the answer's body.  The token
 * file is read before every request because projected ServiceAccount
 * tokens rotate.
 *
 * cubeid_store_watch() keeps the list current on a thread of its own, as
 * client-go's informers do: list, then watch from the list's
 * resourceVersion (bookmarks move it on while nothing changes), watch again
 * from the last one when the server ends a watch, list again on 410 Gone,
 * and back off (1 s doubling to 30 s) after an error.  While that is
 * current, list answers from memory and sends nothing.
 */
#include "config.h"

#include "cluster/cluster-store.h"
#include "common/http-fetch.h"

#include <cubeid/ca.h>
#include <cubeid/log.h>

#include <jansson.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define K8S_TOKEN_MAX   (64 * 1024)
#define K8S_NS_MAX      253
#define K8S_TIMEOUT_MS  10000
#define K8S_FIELD_MGR   "cubeid-agent"
#define K8S_LABEL_VALUE "v1"
#define K8S_WATCH_S     290 /* the server ends a watch after this */
#define K8S_BACKOFF_MIN 1
#define K8S_BACKOFF_MAX 30

struct k8s {
	char *server; /* https://host:port, no trailing slash */
	char *token_file;
	char *ca_file;
	char *ns;
	long timeout_ms;
	/* the watch: the thread and the cache it keeps (under mu) */
	pthread_mutex_t mu;
	pthread_cond_t cv;
	pthread_t th;
	bool watching, stop, synced;
	struct cubeid_store_doc *cache;
	size_t ncache;
	void (*changed)(void *arg);
	void *changed_arg;
	/* the watch thread's own */
	char *rv;
	char *line;
	size_t line_len;
	int outcome;
	bool worked;   /* the last watches gave an event or ended cleanly */
	size_t events; /* of this watch, bookmarks included */
	char *why;
};

/* A stream for k8s_request: the body goes to on_data, not to *resp. */
struct k8s_stream {
	bool (*on_data)(const char *data, size_t len, void *arg);
	bool (*stop)(void *arg);
	void *arg;
	long timeout_ms;
};

/* What the status says when the answer has no Status object: over HTTP/2
 * the API server may reset the stream of a request whose body it did not
 * read (a 401) before its body arrives, and HTTP/2 has no reason phrase. */
static const char *
status_text(long code)
{
	switch (code) {
	case 400:
		return "Bad Request (no Status object)";
	case 401:
		return "Unauthorized (no Status object)";
	case 403:
		return "Forbidden (no Status object)";
	case 404:
		return "Not Found (no Status object)";
	case 409:
		return "Conflict (no Status object)";
	case 410:
		return "Gone (no Status object)";
	case 422:
		return "Unprocessable Entity (no Status object)";
	case 429:
		return "Too Many Requests (no Status object)";
	case 500:
		return "Internal Server Error (no Status object)";
	case 503:
		return "Service Unavailable (no Status object)";
	default:
		return "no Status object";
	}
}

static const char *
status_message(json_t *j)
{
	const char *s = json_string_value(json_object_get(j, "message"));

	return s != NULL ? s : "no message";
}

/*
 * One request.  body may be NULL.  *resp (optional) gets the body of a 2xx
 * answer (caller frees); *status the HTTP status.  CUBEID_ERR_STORE for a
 * transfer that failed or an unexpected status (logged), CUBEID_ERR_PERMISSION
 * for 401/403.  ok_404: a 404 is success (DELETE of an absent object).
 */
static int
k8s_request_ex(struct k8s *k, const char *method, const char *path, const char *ctype,
               const char *body, bool ok_404, char **resp, size_t *resp_len,
               const struct k8s_stream *st, long *status)
{
	struct http_reply m = {0};
	char *url = NULL, *tok = NULL, *auth = NULL, *ct = NULL;
	size_t tok_len = 0;
	const char *why;
	long code = 0;
	int rc = CUBEID_ERR_STORE;

	if (resp != NULL)
		*resp = NULL;
	if (resp_len != NULL)
		*resp_len = 0;
	if ((rc = cubeid_read_file(k->token_file, K8S_TOKEN_MAX, &tok, &tok_len)) != CUBEID_OK) {
		cubeid_error("cluster store: cannot read the ServiceAccount token %s: %s",
		             k->token_file, cubeid_strerror(rc));
		return CUBEID_ERR_STORE;
	}
	while (tok_len > 0 &&
	       (tok[tok_len - 1] == '\n' || tok[tok_len - 1] == '\r' || tok[tok_len - 1] == ' '))
		tok[--tok_len] = '\0';
	rc = CUBEID_ERR_NOMEM;
	if (tok_len == 0 || strpbrk(tok, "\r\n") != NULL) {
		cubeid_error("cluster store: the ServiceAccount token in %s is empty or malformed",
		             k->token_file);
		rc = CUBEID_ERR_STORE;
		goto out;
	}
	if (asprintf(&url, "%s%s", k->server, path) < 0 ||
	    asprintf(&auth, "Authorization: Bearer %s", tok) < 0) {
		url = auth = NULL;
		goto out;
	}
	if (ctype != NULL && asprintf(&ct, "Content-Type: %s", ctype) < 0) {
		ct = NULL;
		goto out;
	}
	{
		const char *hdrs[] = {auth, "Accept: application/json", ct, NULL};
		struct http_req q = {.method = method,
		                     .url = url,
		                     .https_only = true,
		                     .headers = hdrs,
		                     .ca_file = k->ca_file,
		                     .body = body,
		                     .max = CUBEID_STORE_LIST_MAX,
		                     .timeout_ms = st != NULL ? st->timeout_ms : k->timeout_ms,
		                     .no_proxy = true,
		                     .http1 = true,
		                     .on_data = st != NULL ? st->on_data : NULL,
		                     .stop = st != NULL ? st->stop : NULL,
		                     .on_data_arg = st != NULL ? st->arg : NULL};

		rc = http_fetch(&q, &m, &why);
	}
	if (rc == CUBEID_ERR_TOO_LARGE) {
		cubeid_error("cluster store: %s %s: the answer is larger than %d bytes", method,
		             path, CUBEID_STORE_LIST_MAX);
		rc = CUBEID_ERR_STORE;
		goto out;
	}
	if (rc == CUBEID_ERR_HTTP) {
		cubeid_error("cluster store: %s %s: %s", method, path, why);
		rc = CUBEID_ERR_STORE;
		goto out;
	}
	if (rc != CUBEID_OK)
		goto out;
	rc = CUBEID_ERR_STORE;
	code = m.status;
	if (status != NULL)
		*status = code;
	if (st != NULL) { /* the watch reads the body, a Status included */
		rc = code == 200                  ? CUBEID_OK
		     : code == 401 || code == 403 ? CUBEID_ERR_PERMISSION
		                                  : CUBEID_ERR_STORE;
		goto out;
	}
	if ((code < 200 || code > 299) && !(ok_404 && code == 404)) {
		json_t *j = json_loadb(m.body, m.len, 0, NULL);

		cubeid_error("cluster store: %s %s: HTTP %ld: %s", method, path, code,
		             j != NULL ? status_message(j) : status_text(code));
		json_decref(j);
		rc = code == 401 || code == 403 ? CUBEID_ERR_PERMISSION : CUBEID_ERR_STORE;
		goto out;
	}
	if (resp != NULL) {
		*resp = m.body;
		m.body = NULL;
		if (resp_len != NULL)
			*resp_len = m.len;
	}
	rc = CUBEID_OK;
out:
	if (auth != NULL)
		explicit_bzero(auth, strlen(auth));
	free(auth);
	if (tok != NULL)
		explicit_bzero(tok, tok_len);
	free(tok);
	free(url);
	free(ct);
	http_reply_clear(&m);
	return rc;
}

static int
k8s_request(struct k8s *k, const char *method, const char *path, const char *ctype,
            const char *body, bool ok_404, char **resp, size_t *resp_len)
{
	return k8s_request_ex(k, method, path, ctype, body, ok_404, resp, resp_len, NULL, NULL);
}

static int
k8s_put(cubeid_store *s, const char *node, const char *doc, size_t len)
{
	struct k8s *k = s->impl;
	json_t *cm = NULL;
	char *body = NULL, *path = NULL,
	     name[sizeof(CUBEID_K8S_NAME_PREFIX) + CUBEID_NODE_NAME_MAX];
	int rc = CUBEID_ERR_NOMEM;

	snprintf(name, sizeof(name), CUBEID_K8S_NAME_PREFIX "%s", node);
	cm = json_pack("{s:s, s:s, s:{s:s, s:s, s:{s:s}}, s:{s:s%}}", "apiVersion", "v1", "kind",
	               "ConfigMap", "metadata", "name", name, "namespace", k->ns, "labels",
	               CUBEID_K8S_LABEL, K8S_LABEL_VALUE, "data", CUBEID_K8S_DATA_KEY, doc, len);
	if (cm == NULL || (body = json_dumps(cm, JSON_COMPACT)) == NULL)
		goto out;
	if (asprintf(&path,
	             "/api/v1/namespaces/%s/configmaps/%s?fieldManager=" K8S_FIELD_MGR
	             "&force=true",
	             k->ns, name) < 0) {
		path = NULL;
		goto out;
	}
	rc = k8s_request(k, "PATCH", path, "application/apply-patch+yaml", body, false, NULL, NULL);
	if (rc == CUBEID_ERR_PERMISSION)
		rc = CUBEID_ERR_STORE;
out:
	json_decref(cm);
	free(body);
	free(path);
	return rc;
}

int
cubeid_k8s_parse_configmap_list(const char *json, size_t len, struct cubeid_store_doc **docs,
                                size_t *n, char **resource_version)
{
	json_t *j, *items, *it;
	const char *rv;
	size_t i;
	int rc = CUBEID_ERR_PARSE;

	if (docs != NULL)
		*docs = NULL;
	if (n != NULL)
		*n = 0;
	if (resource_version != NULL)
		*resource_version = NULL;
	if (json == NULL || docs == NULL || n == NULL)
		return CUBEID_ERR_INVALID_ARG;
	if (len > CUBEID_STORE_LIST_MAX)
		return CUBEID_ERR_TOO_LARGE;
	if ((j = json_loadb(json, len, JSON_REJECT_DUPLICATES, NULL)) == NULL)
		return CUBEID_ERR_PARSE;
	items = json_object_get(j, "items");
	if (!json_is_object(j) || !(json_is_array(items) || json_is_null(items)))
		goto out;
	rc = CUBEID_OK;
	json_array_foreach(items, i, it)
	{
		const char *name =
		        json_string_value(json_object_get(json_object_get(it, "metadata"), "name"));
		json_t *d = json_object_get(json_object_get(it, "data"), CUBEID_K8S_DATA_KEY);
		size_t pl = strlen(CUBEID_K8S_NAME_PREFIX);

		if (name == NULL || strncmp(name, CUBEID_K8S_NAME_PREFIX, pl) != 0 ||
		    !cubeid_node_name_valid(name + pl) || !json_is_string(d)) {
			cubeid_debug("cluster store: skipping ConfigMap %s",
			             name ? name : "(no name)");
			continue;
		}
		if ((rc = store_docs_push(docs, n, name + pl, json_string_value(d),
		                          json_string_length(d))) != CUBEID_OK)
			break;
	}
	if (rc == CUBEID_OK && resource_version != NULL &&
	    (rv = json_string_value(
	             json_object_get(json_object_get(j, "metadata"), "resourceVersion"))) != NULL &&
	    (*resource_version = strdup(rv)) == NULL)
		rc = CUBEID_ERR_NOMEM;
	if (rc != CUBEID_OK) {
		cubeid_store_docs_free(*docs, *n);
		*docs = NULL;
		*n = 0;
	}
out:
	json_decref(j);
	return rc;
}

static int
k8s_list_raw(struct k8s *k, struct cubeid_store_doc **docs, size_t *n, char **rv)
{
	char *path = NULL, *resp = NULL;
	size_t len = 0;
	int rc;

	if (asprintf(&path,
	             "/api/v1/namespaces/%s/configmaps?labelSelector=cubeid.io%%2Fpublication",
	             k->ns) < 0)
		return CUBEID_ERR_NOMEM;
	rc = k8s_request(k, "GET", path, NULL, NULL, false, &resp, &len);
	free(path);
	if (rc == CUBEID_ERR_PERMISSION)
		rc = CUBEID_ERR_STORE;
	if (rc != CUBEID_OK)
		return rc;
	rc = cubeid_k8s_parse_configmap_list(resp, len, docs, n, rv);
	if (rc != CUBEID_OK) {
		cubeid_error("cluster store: the ConfigMap list is not a ConfigMapList: %s",
		             cubeid_strerror(rc));
		rc = CUBEID_ERR_STORE;
	}
	free(resp);
	return rc;
}

static int
k8s_list(cubeid_store *s, struct cubeid_store_doc **docs, size_t *n)
{
	struct k8s *k = s->impl;
	size_t i;
	int rc = CUBEID_OK;

	*docs = NULL;
	*n = 0;
	pthread_mutex_lock(&k->mu);
	if (k->watching && k->synced) {
		/* the watch keeps it current: no request */
		for (i = 0; rc == CUBEID_OK && i < k->ncache; i++)
			rc = store_docs_push(docs, n, k->cache[i].node, k->cache[i].data,
			                     k->cache[i].len);
		pthread_mutex_unlock(&k->mu);
		if (rc != CUBEID_OK) {
			cubeid_store_docs_free(*docs, *n);
			*docs = NULL;
			*n = 0;
		}
		return rc;
	}
	pthread_mutex_unlock(&k->mu);
	return k8s_list_raw(k, docs, n, NULL);
}

/* ---- the watch ----------------------------------------------------------- */

static void
cache_remove(struct k8s *k, const char *node)
{
	size_t i;

	for (i = 0; i < k->ncache; i++) {
		if (strcmp(k->cache[i].node, node) == 0) {
			free(k->cache[i].node);
			free(k->cache[i].data);
			k->cache[i] = k->cache[--k->ncache];
			return;
		}
	}
}

/* Set node's publication (data NULL: remove it).  Under mu. */
static int
cache_set(struct k8s *k, const char *node, const char *data, size_t len)
{
	cache_remove(k, node);
	return data != NULL ? store_docs_push(&k->cache, &k->ncache, node, data, len) : CUBEID_OK;
}

static void
notify(struct k8s *k)
{
	if (k->changed != NULL)
		k->changed(k->changed_arg);
}

enum { W_GOING, W_ENDED, W_GONE, W_ERROR };

/* One watch event (a line of the stream).  false ends the watch. */
static bool
watch_event(struct k8s *k, const char *line, size_t len)
{
	json_t *j = json_loadb(line, len, JSON_REJECT_DUPLICATES, NULL), *o, *d;
	const char *type = json_string_value(json_object_get(j, "type")), *name, *rv;
	size_t pl = strlen(CUBEID_K8S_NAME_PREFIX);
	bool go = true;

	o = json_object_get(j, "object");
	rv = json_string_value(json_object_get(json_object_get(o, "metadata"), "resourceVersion"));
	if (type == NULL || !json_is_object(o)) {
		/* not an event: a Status answering the request itself */
		free(k->why);
		k->why = strdup(j != NULL ? status_message(j) : "not a watch event");
		k->outcome = W_ERROR;
		go = false;
	} else if (strcmp(type, "ERROR") == 0) {
		free(k->why);
		k->why = strdup(status_message(o));
		k->outcome =
		        json_integer_value(json_object_get(o, "code")) == 410 ? W_GONE : W_ERROR;
		go = false;
	} else if (strcmp(type, "BOOKMARK") == 0) {
		k->events++;
	} else if (strcmp(type, "ADDED") == 0 || strcmp(type, "MODIFIED") == 0 ||
	           strcmp(type, "DELETED") == 0) {
		name = json_string_value(json_object_get(json_object_get(o, "metadata"), "name"));
		d = json_object_get(json_object_get(o, "data"), CUBEID_K8S_DATA_KEY);
		k->events++;
		if (name != NULL && strncmp(name, CUBEID_K8S_NAME_PREFIX, pl) == 0 &&
		    cubeid_node_name_valid(name + pl)) {
			bool del = strcmp(type, "DELETED") == 0 || !json_is_string(d);
			int rc;

			pthread_mutex_lock(&k->mu);
			rc = cache_set(k, name + pl, del ? NULL : json_string_value(d),
			               del ? 0 : json_string_length(d));
			pthread_mutex_unlock(&k->mu);
			if (rc != CUBEID_OK) {
				k->outcome = W_ERROR;
				go = false;
			}
			cubeid_debug("cluster store: watch: %s %s", type, name);
			notify(k);
		}
	}
	if (go && rv != NULL) {
		char *nrv = strdup(rv);

		if (nrv != NULL) {
			free(k->rv);
			k->rv = nrv;
		}
	}
	json_decref(j);
	return go;
}

static bool
watch_data(const char *data, size_t len, void *arg)
{
	struct k8s *k = arg;
	const char *nl;
	char *np;

	while (len > 0) {
		size_t take = (nl = memchr(data, '\n', len)) != NULL ? (size_t)(nl - data) : len;

		if (k->line_len + take > CUBEID_STORE_LIST_MAX) {
			free(k->why);
			k->why = strdup("a watch event larger than the list limit");
			k->outcome = W_ERROR;
			return false;
		}
		if ((np = realloc(k->line, k->line_len + take + 1)) == NULL)
			return false;
		k->line = np;
		memcpy(k->line + k->line_len, data, take);
		k->line_len += take;
		k->line[k->line_len] = '\0';
		if (nl == NULL)
			break;
		if (k->line_len > 0 && !watch_event(k, k->line, k->line_len))
			return false;
		k->line_len = 0;
		data += take + 1;
		len -= take + 1;
	}
	return true;
}

static bool
watch_stop(void *arg)
{
	struct k8s *k = arg;
	bool stop;

	pthread_mutex_lock(&k->mu);
	stop = k->stop;
	pthread_mutex_unlock(&k->mu);
	return stop;
}

/* One watch from k->rv, until the server ends it or something goes wrong. */
static int
watch_once(struct k8s *k)
{
	struct k8s_stream st = {watch_data, watch_stop, k, (K8S_WATCH_S + 30) * 1000L};
	struct timespec t0, t1;
	char *path = NULL;
	long status = 0;
	int rc;

	if (asprintf(&path,
	             "/api/v1/namespaces/%s/configmaps?labelSelector=cubeid.io%%2Fpublication"
	             "&watch=1&resourceVersion=%s&allowWatchBookmarks=true&timeoutSeconds=%d",
	             k->ns, k->rv, K8S_WATCH_S) < 0)
		return W_ERROR;
	k->outcome = W_GOING;
	k->events = 0;
	k->line_len = 0;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	free(k->why);
	k->why = NULL;
	rc = k8s_request_ex(k, "GET", path, NULL, NULL, false, NULL, NULL, &st, &status);
	free(path);
	/* the last line, if the stream did not end with a newline */
	if (k->outcome == W_GOING && k->line_len > 0)
		watch_event(k, k->line, k->line_len);
	if (k->outcome == W_GOING && status != 200 && status != 0) {
		k->outcome = status == 410 ? W_GONE : W_ERROR;
		if (k->why == NULL && asprintf(&k->why, "HTTP %ld", status) < 0)
			k->why = NULL;
	}
	if (k->outcome == W_GOING)
		k->outcome = rc == CUBEID_OK ? W_ENDED : W_ERROR;
	/* as client-go: a watch that ends at once with nothing in it is an
	 * error (else a server that does that would be asked again and again) */
	clock_gettime(CLOCK_MONOTONIC, &t1);
	if (k->outcome == W_ENDED && k->events == 0 && t1.tv_sec - t0.tv_sec < 1) {
		k->outcome = W_ERROR;
		k->why = strdup("a very short watch with no events");
	}
	if (k->outcome != W_ENDED && k->outcome != W_GONE && !watch_stop(k))
		cubeid_warn("cluster store: the watch of %s failed: %s", k->ns,
		            k->why != NULL ? k->why
		            : status != 0  ? "the stream ended"
		                           : "no answer");
	return k->outcome;
}

/* Sleep s seconds, or until stopped.  false when stopped. */
static bool
watch_sleep(struct k8s *k, int s)
{
	struct timespec until;
	bool stop;

	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += s;
	pthread_mutex_lock(&k->mu);
	while (!k->stop && pthread_cond_timedwait(&k->cv, &k->mu, &until) == 0)
		;
	stop = k->stop;
	pthread_mutex_unlock(&k->mu);
	return !stop;
}

static int
backoff_next(int b)
{
	return b == 0 ? K8S_BACKOFF_MIN : b * 2 > K8S_BACKOFF_MAX ? K8S_BACKOFF_MAX : b * 2;
}

static void *
watch_main(void *arg)
{
	struct k8s *k = arg;
	int backoff = 0, w;
	bool gone_before = false;

	while (!watch_stop(k)) {
		struct cubeid_store_doc *docs = NULL;
		size_t n = 0;
		char *rv = NULL;

		if (backoff > 0 && !watch_sleep(k, backoff))
			break;
		if (k8s_list_raw(k, &docs, &n, &rv) != CUBEID_OK || rv == NULL) {
			cubeid_store_docs_free(docs, n);
			free(rv);
			pthread_mutex_lock(&k->mu);
			k->synced = false;
			pthread_mutex_unlock(&k->mu);
			backoff = backoff_next(backoff);
			continue;
		}
		pthread_mutex_lock(&k->mu);
		cubeid_store_docs_free(k->cache, k->ncache);
		k->cache = docs;
		k->ncache = n;
		k->synced = true;
		pthread_mutex_unlock(&k->mu);
		free(k->rv);
		k->rv = rv;
		notify(k);
		/* watch, and watch again from the last resourceVersion while the
		 * server ends them cleanly */
		k->worked = false;
		for (;;) {
			w = watch_once(k);
			if (w != W_ENDED || watch_stop(k))
				break;
			k->worked = true;
		}
		if (k->worked) { /* it was working: a new failure starts afresh */
			backoff = 0;
			gone_before = false;
		}
		if (w == W_GONE) {
			cubeid_info("cluster store: the watch's resourceVersion is gone (410): "
			            "listing again");
			/* at once; but a server that answers the fresh list's
			 * resourceVersion with 410 again gets the backoff */
			backoff = gone_before ? backoff_next(backoff) : 0;
			gone_before = true;
			continue;
		}
		/* an error: the cache is no longer known to be current */
		pthread_mutex_lock(&k->mu);
		k->synced = false;
		pthread_mutex_unlock(&k->mu);
		backoff = backoff_next(backoff);
		gone_before = false;
	}
	return NULL;
}

static int
k8s_watch(cubeid_store *s, void (*changed)(void *arg), void *arg)
{
	struct k8s *k = s->impl;

	if (k->watching)
		return CUBEID_ERR_INVALID_ARG;
	k->changed = changed;
	k->changed_arg = arg;
	k->stop = false;
	if (pthread_create(&k->th, NULL, watch_main, k) != 0)
		return CUBEID_ERR_NOMEM;
	k->watching = true;
	return CUBEID_OK;
}

static void
k8s_unwatch(cubeid_store *s)
{
	struct k8s *k = s->impl;

	if (!k->watching)
		return;
	pthread_mutex_lock(&k->mu);
	k->stop = true;
	pthread_cond_broadcast(&k->cv);
	pthread_mutex_unlock(&k->mu);
	pthread_join(k->th, NULL);
	pthread_mutex_lock(&k->mu);
	k->watching = false;
	k->synced = false;
	pthread_mutex_unlock(&k->mu);
}

static int
k8s_remove(cubeid_store *s, const char *node)
{
	struct k8s *k = s->impl;
	char *path = NULL;
	int rc;

	if (asprintf(&path, "/api/v1/namespaces/%s/configmaps/" CUBEID_K8S_NAME_PREFIX "%s", k->ns,
	             node) < 0)
		return CUBEID_ERR_NOMEM;
	rc = k8s_request(k, "DELETE", path, NULL, NULL, true, NULL, NULL);
	free(path);
	return rc == CUBEID_ERR_PERMISSION ? CUBEID_ERR_STORE : rc;
}

static void
k8s_free(cubeid_store *s)
{
	struct k8s *k = s->impl;

	if (k == NULL)
		return;
	k8s_unwatch(s);
	cubeid_store_docs_free(k->cache, k->ncache);
	free(k->rv);
	free(k->line);
	free(k->why);
	pthread_mutex_destroy(&k->mu);
	pthread_cond_destroy(&k->cv);
	free(k->server);
	free(k->token_file);
	free(k->ca_file);
	free(k->ns);
	free(k);
}

static const struct store_ops k8s_ops = {.kind = "kubernetes",
                                         .put = k8s_put,
                                         .list = k8s_list,
                                         .remove = k8s_remove,
                                         .free = k8s_free,
                                         .watch = k8s_watch,
                                         .unwatch = k8s_unwatch};

/* A namespace: an RFC 1123 label. */
static bool
ns_valid(const char *s)
{
	size_t i, n = strlen(s);

	if (n == 0 || n > 63)
		return false;
	for (i = 0; i < n; i++) {
		char c = s[i];
		bool alnum = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');

		if (!alnum && !(c == '-' && i > 0 && i + 1 < n))
			return false;
	}
	return true;
}

int
cubeid_store_k8s_new(const struct cubeid_k8s_opts *o, cubeid_store **out)
{
	struct cubeid_k8s_opts d = {0};
	cubeid_store *s = NULL;
	struct k8s *k = NULL;
	char *ns = NULL;
	size_t nl = 0;
	int rc = CUBEID_ERR_NOMEM;

	if (out != NULL)
		*out = NULL;
	if (out == NULL)
		return CUBEID_ERR_INVALID_ARG;
	if (o != NULL)
		d = *o;
	if ((k = calloc(1, sizeof(*k))) == NULL)
		return CUBEID_ERR_NOMEM;
	pthread_mutex_init(&k->mu, NULL);
	pthread_cond_init(&k->cv, NULL);
	k->timeout_ms = d.timeout_ms > 0 ? d.timeout_ms : K8S_TIMEOUT_MS;
	if (d.api_server != NULL) {
		k->server = strdup(d.api_server);
	} else {
		const char *host = getenv("KUBERNETES_SERVICE_HOST"),
		           *port = getenv("KUBERNETES_SERVICE_PORT");

		if (host == NULL || port == NULL) {
			cubeid_error("cluster store: no API server (KUBERNETES_SERVICE_HOST and "
			             "_PORT are not set; give one)");
			rc = CUBEID_ERR_CONFIG;
			goto out;
		}
		if (asprintf(&k->server, strchr(host, ':') ? "https://[%s]:%s" : "https://%s:%s",
		             host, port) < 0)
			k->server = NULL;
	}
	if (k->server == NULL)
		goto out;
	while (strlen(k->server) > 8 && k->server[strlen(k->server) - 1] == '/')
		k->server[strlen(k->server) - 1] = '\0';
	if (strncmp(k->server, "https://", 8) != 0 || strlen(k->server) <= 8) {
		cubeid_error("cluster store: the API server must be an https:// URL");
		rc = CUBEID_ERR_CONFIG;
		goto out;
	}
	k->token_file = strdup(d.token_file ? d.token_file : CUBEID_K8S_SA_DIR "/token");
	k->ca_file = strdup(d.ca_file ? d.ca_file : CUBEID_K8S_SA_DIR "/ca.crt");
	if (k->token_file == NULL || k->ca_file == NULL)
		goto out;
	if (d.namespace != NULL) {
		k->ns = strdup(d.namespace);
	} else if ((rc = cubeid_read_file(CUBEID_K8S_SA_DIR "/namespace", K8S_NS_MAX + 2, &ns,
	                                  &nl)) == CUBEID_OK) {
		while (nl > 0 && (ns[nl - 1] == '\n' || ns[nl - 1] == ' '))
			ns[--nl] = '\0';
		k->ns = ns;
		ns = NULL;
	} else {
		cubeid_error("cluster store: no namespace given and none in " CUBEID_K8S_SA_DIR
		             "/namespace");
		rc = CUBEID_ERR_CONFIG;
		goto out;
	}
	rc = CUBEID_ERR_NOMEM;
	if (k->ns == NULL)
		goto out;
	if (!ns_valid(k->ns)) {
		cubeid_error("cluster store: '%s' is not a namespace name", k->ns);
		rc = CUBEID_ERR_CONFIG;
		goto out;
	}
	if ((s = calloc(1, sizeof(*s))) == NULL)
		goto out;
	s->ops = &k8s_ops;
	s->impl = k;
	k = NULL;
	*out = s;
	rc = CUBEID_OK;
out:
	free(ns);
	if (k != NULL) {
		cubeid_store tmp = {&k8s_ops, k};
		k8s_free(&tmp);
	}
	return rc;
}
