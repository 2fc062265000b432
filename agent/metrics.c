/*
 * Health and metrics: /healthz (the loop answers), /readyz (token reachable,
 * CA valid, entries loaded) and /metrics (Prometheus text format 0.0.4) on
 * the agent's HTTP server, and a periodic token probe that signs a fixed
 * digest with the CA key in a worker, so that "token reachable" is a fact
 * measured within the last METRICS_PROBE_MS and not an assumption.
 *
 * Everything here runs on the loop thread (HTTP handlers, worker done()
 * callbacks, timers), so struct agent_metrics needs no lock.  Nothing here
 * exposes a secret: counts, times, and the trust domain.
 */
#include "config.h"

#include "agent/daemon.h"
#include "agent/http.h"
#include "agent/metrics.h"
#include "agent/oidc-http.h"

#include <cubeid/log.h>
#include <cubeid/token.h>

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

const double metric_lat_bounds[METRIC_LAT_BUCKETS] = {
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
};

static const char *const type_names[METRIC_TYPES] = {"x509", "jwt"};

double
metrics_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

bool
metrics_is_token_error(int rc)
{
	return rc <= CUBEID_ERR_P11_MODULE && rc >= CUBEID_ERR_P11_GENERAL;
}

static void
token_result(struct agent_metrics *m, int rc)
{
	if (metrics_is_token_error(rc))
		m->token_errors++;
	/* only token verdicts move the token's state: a bad request is not
	 * an unreachable token */
	if (rc == CUBEID_OK || metrics_is_token_error(rc)) {
		m->token_rc = rc;
		m->token_checked = (int64_t)time(NULL);
	}
}

void
metrics_mint(struct agent_metrics *m, int type, int rc, double seconds, bool rotation)
{
	size_t i;

	if (type < 0 || type >= METRIC_TYPES)
		return;
	token_result(m, rc);
	if (rc != CUBEID_OK) {
		m->failed[type]++;
		return;
	}
	m->issued[type]++;
	if (rotation)
		m->rotations[type]++;
	if (seconds < 0)
		seconds = 0;
	for (i = 0; i < METRIC_LAT_BUCKETS; i++)
		if (seconds <= metric_lat_bounds[i]) {
			m->lat_bucket[type][i]++;
			break;
		}
	m->lat_count[type]++;
	m->lat_sum[type] += seconds;
}

/* ------------------------------------------------------------ probe */

/* Can tok make an exportable session key (what an X.509-SVID's workload key
 * is)?  Generate one, export it, destroy it.  tpm2-pkcs11 cannot: it refuses
 * CKA_TOKEN=false and CKA_EXTRACTABLE=true (docs/pkcs11.md). */
int
agent_probe_exportable(cubeid_token *tok)
{
	struct cubeid_keygen_opts ko = {0};
	cubeid_key *k = NULL;
	EVP_PKEY *priv = NULL;
	int rc;

	ko.type = CUBEID_KEY_EC_P256;
	ko.label = "cubeid-probe";
	ko.exportable = true;
	if ((rc = cubeid_key_generate(tok, &ko, &k)) == CUBEID_OK) {
		rc = cubeid_key_export_private(k, &priv);
		EVP_PKEY_free(priv);
		(void)cubeid_key_delete(k);
		cubeid_key_free(k);
	}
	return rc;
}

struct probe_job {
	struct agent *a;
	const cubeid_key *key;
	cubeid_token *wtok; /* the workload token, or NULL */
	int rc;
};

static void
probe_run(void *arg)
{
	struct probe_job *j = arg;
	static const uint8_t msg[] = "cubeid-agent token probe";
	uint8_t sig[1024];
	size_t sig_len = sizeof(sig);
	cubeid_sig_alg alg;

	switch (cubeid_key_get_type(j->key)) {
	case CUBEID_KEY_EC_P256:
	case CUBEID_KEY_EC_P384:
		alg = CUBEID_SIG_ECDSA_SHA256;
		break;
	default:
		alg = CUBEID_SIG_RSA_PKCS1_SHA256;
		break;
	}
	j->rc = cubeid_key_sign(j->key, alg, msg, sizeof(msg) - 1, sig, &sig_len);
	/* the workload token too: what X.509-SVIDs need of it, which also lets
	 * its layer recover it from an outage */
	if (j->rc == CUBEID_OK && j->wtok != NULL)
		j->rc = agent_probe_exportable(j->wtok);
}

/* While the token fails, probe it every second: each probe lets the token
 * layer re-initialise the module once its backoff has passed, so the agent
 * recovers within seconds of the token coming back, not at the next
 * METRICS_PROBE_MS tick. */
static long
probe_fast_tick(cubeid_loop *l, void *arg)
{
	struct agent *a = arg;

	(void)l;
	if (a->stopping || a->metrics.token_rc == CUBEID_OK) {
		a->metrics.fast_timer = 0;
		return -1;
	}
	(void)metrics_probe_start(a);
	return METRICS_PROBE_DOWN_MS;
}

static void
probe_done(void *arg)
{
	struct probe_job *j = arg;
	struct agent *a = j->a;

	a->metrics.probing = false;
	a->metrics.probes++;
	if (j->rc != CUBEID_OK && !metrics_is_token_error(j->rc))
		j->rc = CUBEID_ERR_P11_GENERAL; /* the probe only talks to the token */
	if (j->rc != CUBEID_OK && a->metrics.token_rc == CUBEID_OK)
		cubeid_warn("token probe failed: %s", cubeid_strerror(j->rc));
	else if (j->rc == CUBEID_OK && a->metrics.token_rc != CUBEID_OK &&
	         a->metrics.token_checked != 0)
		cubeid_notice("token probe: the token answers again");
	token_result(&a->metrics, j->rc);
	if (j->rc != CUBEID_OK && a->metrics.fast_timer == 0 && !a->stopping)
		a->metrics.fast_timer =
		        loop_timer_add(a->loop, METRICS_PROBE_DOWN_MS, probe_fast_tick, a);
	free(j);
	if (a->wapi != NULL)
		wapi_status_probed(a->wapi); /* status calls waiting for it */
}

bool
metrics_probe_start(struct agent *a)
{
	struct probe_job *j;

	if (a->stopping || a->pool == NULL || a->ca == NULL)
		return false;
	if (a->metrics.probing)
		return true;
	if ((j = calloc(1, sizeof(*j))) == NULL)
		return false;
	j->a = a;
	j->key = cubeid_ca_key(a->ca);
	j->wtok = a->wtok;
	a->metrics.probing = true;
	if (worker_submit(a->pool, probe_run, probe_done, j) != CUBEID_OK) {
		a->metrics.probing = false;
		free(j);
		return false;
	}
	return true;
}

static long
probe_tick(cubeid_loop *l, void *arg)
{
	(void)l;
	(void)metrics_probe_start(arg);
	return METRICS_PROBE_MS;
}

void
agent_metrics_mint(struct agent *a, int type, int rc, double seconds, bool rotation)
{
	metrics_mint(&a->metrics, type, rc, seconds, rotation);
	if (rc != CUBEID_OK && !a->stopping)
		(void)probe_tick(a->loop, a);
}

/* ------------------------------------------------------------ ready */

static size_t
n_entries(const struct agent *a)
{
	return (a->entries != NULL ? a->entries->n : 0) + a->dev_entries.n;
}

const char *
agent_token_why(const struct agent *a)
{
	static __thread char buf[160];
	struct cubeid_token_health h;

	if (a->tok == NULL)
		return "no token";
	cubeid_token_health(a->tok, &h);
	if (!h.down && a->wtok != NULL) {
		cubeid_token_health(a->wtok, &h);
		if (h.down) {
			snprintf(buf, sizeof(buf),
			         "workload token unavailable (%s), retrying in %.0fs",
			         cubeid_strerror(h.last_err),
			         h.retry_in < 1 ? 1 : h.retry_in + 0.5);
			return buf;
		}
	}
	if (h.down)
		snprintf(buf, sizeof(buf), "token unavailable (%s), retrying in %.0fs",
		         cubeid_strerror(h.last_err), h.retry_in < 1 ? 1 : h.retry_in + 0.5);
	else
		snprintf(buf, sizeof(buf), "the token does not answer (%s)",
		         cubeid_strerror(a->metrics.token_rc));
	return buf;
}

bool
agent_ready(const struct agent *a, const char **why)
{
	time_t now = time(NULL);
	X509 *ca = a->ca != NULL ? cubeid_ca_cert(a->ca) : NULL;

	*why = NULL;
	if (a->stopping)
		*why = "the agent is stopping";
	else if (a->tok == NULL)
		*why = "no token";
	else if (a->metrics.token_checked == 0)
		*why = "the token has not been probed yet";
	else if (a->metrics.token_rc != CUBEID_OK)
		*why = agent_token_why(a);
	else if (ca == NULL)
		*why = "no CA";
	else if (X509_cmp_time(X509_get0_notBefore(ca), &now) > 0)
		*why = "the CA certificate is not valid yet";
	else if (X509_cmp_time(X509_get0_notAfter(ca), &now) < 0)
		*why = "the CA certificate has expired";
	else if (n_entries(a) == 0)
		*why = "no registration entries loaded";
	return *why == NULL;
}

/* ------------------------------------------------------------ metrics */

struct buf {
	char *p;
	size_t len, cap;
	bool failed;
};

static void __attribute__((format(printf, 2, 3))) bprintf(struct buf *b, const char *fmt, ...)
{
	va_list ap;
	int n;
	char *np;

	if (b->failed)
		return;
	for (;;) {
		va_start(ap, fmt);
		n = vsnprintf(b->p != NULL ? b->p + b->len : NULL, b->cap - b->len, fmt, ap);
		va_end(ap);
		if (n < 0) {
			b->failed = true;
			return;
		}
		if ((size_t)n < b->cap - b->len) {
			b->len += (size_t)n;
			return;
		}
		if ((np = realloc(b->p, b->cap * 2 + (size_t)n + 1)) == NULL) {
			b->failed = true;
			return;
		}
		b->p = np;
		b->cap = b->cap * 2 + (size_t)n + 1;
	}
}

static void
family(struct buf *b, const char *name, const char *type, const char *help)
{
	bprintf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

int
agent_metrics_text(struct agent *a, char **out, size_t *len)
{
	struct agent_metrics *m = &a->metrics;
	struct grpc_counters gc = {0};
	struct buf b = {0};
	size_t nx = 0, nj = 0, i;
	int64_t next = 0;
	uint64_t cum;
	const char *why;
	int t;
	int64_t now = (int64_t)time(NULL);

	*out = NULL;
	*len = 0;
	if (a->cache != NULL)
		svid_cache_stats(a->cache, &nx, &nj, &next);

	family(&b, "cubeid_build_info", "gauge", "The agent's version; always 1.");
	bprintf(&b, "cubeid_build_info{version=\"%s\",trust_domain=\"%s\"} 1\n", PACKAGE_VERSION,
	        a->td != NULL ? a->td : "");
	family(&b, "cubeid_ready", "gauge",
	       "1 when the token answers, the CA is valid and entries are loaded (/readyz).");
	bprintf(&b, "cubeid_ready %d\n", agent_ready(a, &why) ? 1 : 0);
	family(&b, "cubeid_start_time_seconds", "gauge", "When the agent started (unix time).");
	bprintf(&b, "cubeid_start_time_seconds %lld\n", (long long)a->started);

	family(&b, "cubeid_svids_issued_total", "counter", "SVIDs minted, by type.");
	for (t = 0; t < METRIC_TYPES; t++)
		bprintf(&b, "cubeid_svids_issued_total{type=\"%s\"} %llu\n", type_names[t],
		        (unsigned long long)m->issued[t]);
	family(&b, "cubeid_svid_mint_failures_total", "counter",
	       "SVID mints that failed, by type.");
	for (t = 0; t < METRIC_TYPES; t++)
		bprintf(&b, "cubeid_svid_mint_failures_total{type=\"%s\"} %llu\n", type_names[t],
		        (unsigned long long)m->failed[t]);
	family(&b, "cubeid_svid_rotations_total", "counter",
	       "SVIDs minted to replace one the agent held (rotation), by type.");
	for (t = 0; t < METRIC_TYPES; t++)
		bprintf(&b, "cubeid_svid_rotations_total{type=\"%s\"} %llu\n", type_names[t],
		        (unsigned long long)m->rotations[t]);
	family(&b, "cubeid_svid_sign_duration_seconds", "histogram",
	       "Time to mint and sign one SVID in the token, by type.");
	for (t = 0; t < METRIC_TYPES; t++) {
		cum = 0;
		for (i = 0; i < METRIC_LAT_BUCKETS; i++) {
			cum += m->lat_bucket[t][i];
			bprintf(&b,
			        "cubeid_svid_sign_duration_seconds_bucket{type=\"%s\",le=\"%g\"} "
			        "%llu\n",
			        type_names[t], metric_lat_bounds[i], (unsigned long long)cum);
		}
		bprintf(&b,
		        "cubeid_svid_sign_duration_seconds_bucket{type=\"%s\",le=\"+Inf\"} %llu\n",
		        type_names[t], (unsigned long long)m->lat_count[t]);
		bprintf(&b, "cubeid_svid_sign_duration_seconds_sum{type=\"%s\"} %.9f\n",
		        type_names[t], m->lat_sum[t]);
		bprintf(&b, "cubeid_svid_sign_duration_seconds_count{type=\"%s\"} %llu\n",
		        type_names[t], (unsigned long long)m->lat_count[t]);
	}
	family(&b, "cubeid_svids_cached", "gauge", "SVIDs the agent holds, by type.");
	bprintf(&b, "cubeid_svids_cached{type=\"x509\"} %zu\n", nx);
	bprintf(&b, "cubeid_svids_cached{type=\"jwt\"} %zu\n", nj);

	family(&b, "cubeid_token_errors_total", "counter",
	       "PKCS#11 token failures (mints and probes).");
	bprintf(&b, "cubeid_token_errors_total %llu\n", (unsigned long long)m->token_errors);
	family(&b, "cubeid_token_up", "gauge",
	       "1 when the last token operation (mint or probe) worked.");
	bprintf(&b, "cubeid_token_up %d\n",
	        a->tok != NULL && m->token_checked != 0 && m->token_rc == CUBEID_OK ? 1 : 0);
	family(&b, "cubeid_token_probes_total", "counter", "Token probes run.");
	bprintf(&b, "cubeid_token_probes_total %llu\n", (unsigned long long)m->probes);

	family(&b, "cubeid_connected_clients", "gauge",
	       "Workload API connections open on the socket.");
	bprintf(&b, "cubeid_connected_clients %u\n",
	        a->grpc != NULL ? grpc_server_connections(a->grpc) : 0u);
	if (a->grpc != NULL)
		grpc_server_counters(a->grpc, &gc);
	family(&b, "cubeid_grpc_protocol_errors_total", "counter",
	       "HTTP/2 protocol errors by Workload API clients (each is logged, rate-limited).");
	bprintf(&b, "cubeid_grpc_protocol_errors_total %lu\n", gc.protocol_errors);
	family(&b, "cubeid_grpc_stream_resets_total", "counter",
	       "HTTP/2 streams the Workload API server reset (RST_STREAM sent).");
	bprintf(&b, "cubeid_grpc_stream_resets_total %lu\n", gc.stream_resets);
	family(&b, "cubeid_grpc_goaways_total", "counter",
	       "Workload API connections ended with an HTTP/2 error (GOAWAY sent).");
	bprintf(&b, "cubeid_grpc_goaways_total %lu\n", gc.goaways);
	family(&b, "cubeid_grpc_connections_held_total", "counter",
	       "New Workload API connections whose first turn waited because their uid's "
	       "connections were dropped for abuse lately.");
	bprintf(&b, "cubeid_grpc_connections_held_total %lu\n", gc.held_connections);
	family(&b, "cubeid_workload_streams", "gauge", "Open Workload API streams.");
	bprintf(&b, "cubeid_workload_streams %u\n", a->wapi != NULL ? wapi_streams(a->wapi) : 0u);
	family(&b, "cubeid_registration_entries", "gauge", "Registration entries loaded.");
	bprintf(&b, "cubeid_registration_entries %zu\n", n_entries(a));

	family(&b, "cubeid_ca_expiry_seconds", "gauge",
	       "Seconds until the signing CA certificate expires (negative: expired).");
	bprintf(&b, "cubeid_ca_expiry_seconds %lld\n", (long long)(a->ca_not_after - now));
	family(&b, "cubeid_ca_not_after_timestamp_seconds", "gauge",
	       "When the signing CA certificate expires (unix time).");
	bprintf(&b, "cubeid_ca_not_after_timestamp_seconds %lld\n", (long long)a->ca_not_after);
	family(&b, "cubeid_next_rotation_timestamp_seconds", "gauge",
	       "The earliest rotation due among cached X.509-SVIDs (unix time; 0: none).");
	bprintf(&b, "cubeid_next_rotation_timestamp_seconds %lld\n", (long long)next);
	family(&b, "cubeid_reloads_total", "counter",
	       "Config, entries and bundle reloads since start.");
	bprintf(&b, "cubeid_reloads_total %llu\n", (unsigned long long)a->generation);
	family(&b, "cubeid_http_requests_total", "counter", "HTTP requests answered.");
	bprintf(&b, "cubeid_http_requests_total %lu\n", http_server_requests(a->http));
	if (b.failed) {
		free(b.p);
		return CUBEID_ERR_NOMEM;
	}
	*out = b.p;
	*len = b.len;
	return CUBEID_OK;
}

void
agent_status_metrics(struct agent *a, json_t *o)
{
	struct agent_metrics *m = &a->metrics;
	const char *why;
	bool ready = agent_ready(a, &why);

	json_object_set_new(
	        o, "health",
	        json_pack("{s:b, s:s?, s:b, s:I, s:s?}", "ready", ready, "why", why, "token_up",
	                  a->tok != NULL && m->token_checked != 0 && m->token_rc == CUBEID_OK,
	                  "token_checked", (json_int_t)m->token_checked, "http",
	                  http_server_address(a->http)));
	json_object_set_new(o, "metrics",
	                    json_pack("{s:{s:I, s:I}, s:{s:I, s:I}, s:{s:I, s:I}, s:I, s:I}",
	                              "issued", "x509", (json_int_t)m->issued[METRIC_X509], "jwt",
	                              (json_int_t)m->issued[METRIC_JWT], "failed", "x509",
	                              (json_int_t)m->failed[METRIC_X509], "jwt",
	                              (json_int_t)m->failed[METRIC_JWT], "rotations", "x509",
	                              (json_int_t)m->rotations[METRIC_X509], "jwt",
	                              (json_int_t)m->rotations[METRIC_JWT], "token_errors",
	                              (json_int_t)m->token_errors, "ca_expiry_seconds",
	                              (json_int_t)(a->ca_not_after - (int64_t)time(NULL))));
}

/* ------------------------------------------------------------ handlers */

static int
h_healthz(void *ctx, const char *path, struct http_reply *r)
{
	(void)ctx;
	(void)path;
	/* the loop answered: the agent is alive */
	return http_reply_printf(r, 200, NULL, "ok\n");
}

static int
h_readyz(void *ctx, const char *path, struct http_reply *r)
{
	const char *why;

	(void)path;
	if (agent_ready(ctx, &why))
		return http_reply_printf(r, 200, NULL, "ready\n");
	return http_reply_printf(r, 503, NULL, "not ready: %s\n", why);
}

static int
h_metrics(void *ctx, const char *path, struct http_reply *r)
{
	int rc;

	(void)path;
	if ((rc = agent_metrics_text(ctx, &r->body, &r->len)) != CUBEID_OK)
		return rc;
	r->status = 200;
	r->content_type = "text/plain; version=0.0.4; charset=utf-8";
	return CUBEID_OK;
}

int
agent_http_start(struct agent *a)
{
	int rc;

	/* the probe runs with or without HTTP: status and metrics use it */
	probe_tick(a->loop, a);
	a->metrics.probe_timer = loop_timer_add(a->loop, METRICS_PROBE_MS, probe_tick, a);
	if (a->cfg->http_address == NULL || a->cfg->http_address[0] == '\0')
		return CUBEID_OK;
	if ((rc = http_server_new(a->loop, a->cfg->http_address, &a->http)) != CUBEID_OK)
		return rc;
	if ((rc = http_server_route(a->http, "/healthz", h_healthz, a)) != CUBEID_OK ||
	    (rc = http_server_route(a->http, "/readyz", h_readyz, a)) != CUBEID_OK ||
	    (rc = http_server_route(a->http, "/metrics", h_metrics, a)) != CUBEID_OK ||
	    (rc = agent_oidc_http_routes(a)) != CUBEID_OK) {
		http_server_free(a->http);
		a->http = NULL;
		return rc;
	}
	cubeid_notice("http: /healthz /readyz /metrics /keycloak/jwks /spiffe/bundle on http://%s",
	              http_server_address(a->http));
	return CUBEID_OK;
}

void
agent_http_stop(struct agent *a)
{
	if (a->metrics.probe_timer > 0 && a->loop != NULL)
		loop_timer_del(a->loop, a->metrics.probe_timer);
	a->metrics.probe_timer = 0;
	if (a->metrics.fast_timer > 0 && a->loop != NULL)
		loop_timer_del(a->loop, a->metrics.fast_timer);
	a->metrics.fast_timer = 0;
	http_server_free(a->http);
	a->http = NULL;
}
