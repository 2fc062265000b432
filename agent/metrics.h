/*
 * The agent's health and metrics (agent/metrics.c): counters the SVID cache
 * and the token probe feed, and the /healthz, /readyz and /metrics handlers
 * on the HTTP server (agent/http.h).  Loop thread only, like the rest of
 * struct agent: workers measure, their done() callbacks record.
 */
#ifndef CUBEID_AGENT_METRICS_H
#define CUBEID_AGENT_METRICS_H

#include <stdbool.h>
#include <stdint.h>

struct agent;
struct cubeid_token;

enum { METRIC_X509 = 0, METRIC_JWT = 1, METRIC_TYPES };

/* Upper bounds (seconds) of the signing latency histogram's buckets. */
#define METRIC_LAT_BUCKETS 14
extern const double metric_lat_bounds[METRIC_LAT_BUCKETS];

#define METRICS_PROBE_MS      30000 /* how often the token is probed */
#define METRICS_PROBE_DOWN_MS 1000  /* and while it fails: recovery runs then */

struct agent_metrics {
	uint64_t issued[METRIC_TYPES];    /* SVIDs minted */
	uint64_t failed[METRIC_TYPES];    /* mints that failed (any reason) */
	uint64_t rotations[METRIC_TYPES]; /* mints that replaced a previous SVID */
	uint64_t lat_bucket[METRIC_TYPES][METRIC_LAT_BUCKETS]; /* not cumulative */
	uint64_t lat_count[METRIC_TYPES];
	double lat_sum[METRIC_TYPES];
	uint64_t token_errors; /* PKCS#11 failures: mints and probes */
	uint64_t probes;       /* token probes run */
	int token_rc;          /* the last token operation's result */
	int64_t token_checked; /* when (unix time), 0: never */
	bool probing;
	long probe_timer;
	long fast_timer; /* re-probes every METRICS_PROBE_DOWN_MS while down */
};

/* Record a finished mint (loop thread).  seconds is the time spent in the
 * worker; rotation: it replaced an SVID the cache held. */
void metrics_mint(struct agent_metrics *m, int type, int rc, double seconds, bool rotation);
/* The same for the agent, and a failed mint probes the token at once: a
 * signature through OpenSSL reports a lost key as a crypto error, while
 * the probe asks the token directly. */
void agent_metrics_mint(struct agent *a, int type, int rc, double seconds, bool rotation);
/* Whether rc is a token (PKCS#11) failure. */
bool metrics_is_token_error(int rc);
/* Monotonic seconds, for workers that time their work. */
double metrics_now(void);

/* Start the HTTP server on a->cfg->http_address (if set) with /healthz,
 * /readyz and /metrics, and the periodic token probe.  Logs and returns an
 * error if the address cannot be served. */
int agent_http_start(struct agent *a);
void agent_http_stop(struct agent *a);
/* Probe the token now (sign with the CA key in a worker) unless a probe
 * is running; true if one is.  When it ends, wapi_status_probed() runs. */
bool metrics_probe_start(struct agent *a);
/* Can tok make an exportable session key (an X.509-SVID's workload key)?
 * Generates one, exports it, destroys it.  CUBEID_OK if so. */
int agent_probe_exportable(struct cubeid_token *tok);
/* Ready: token reachable, CA valid now, entries loaded.  *why says what is
 * not (static), NULL when ready. */
bool agent_ready(const struct agent *a, const char **why);
/* What is wrong with the token, for a person: "token unavailable (...),
 * retrying in 2s" while the token layer recovers (cubeid_token_health).
 * Valid until the next call on this thread. */
const char *agent_token_why(const struct agent *a);
/* Add "health" (ready, why, token_up, http) and "metrics" (the counters)
 * objects to the status document o (a jansson json_t object). */
struct json_t;
void agent_status_metrics(struct agent *a, struct json_t *o);
/* The Prometheus text exposition (caller frees). */
int agent_metrics_text(struct agent *a, char **out, size_t *len);

#endif
