/*
 * `cubeid helper`: a drop-in for spiffe-helper.  It reads spiffe-helper's
 * own configuration file (cli/helper-config.c) and its flags (-config
 * FILE, -daemon-mode=BOOL), talks to any Workload API socket (cubeid-agent
 * or SPIRE's agent), and writes the same files, but as one atomic set
 * (<cubeid/atomic-dir.h>): a reader never sees a certificate of one SVID
 * with the key of another, or a half-written file.
 *
 * Daemon mode: one thread follows the FetchX509SVID stream, one the
 * FetchJWTBundles stream, one renews the JWT-SVIDs at half their life (as
 * spiffe-helper does); every change rewrites the whole set.  After each
 * X.509 update it starts cmd (cmd_args split as spiffe-helper splits them,
 * no shell) the first time and sends renew_signal to it afterwards, and
 * signals the pid in pid_file_name, as spiffe-helper does.
 */
#include "config.h"

#include "cli/helper.h"
#include "cli/tool.h"

#include <cubeid/atomic-dir.h>
#include <cubeid/log.h>
#include <cubeid/os.h>
#include <cubeid/workloadapi.h>

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

TOOL_GROUP_DECLARE(helper);

static int helper_run(struct tool_ctx *c);

static const struct tool_opt run_opts[] = {
        {"config", 0, "FILE",
         "spiffe-helper's configuration file, unchanged (default helper.conf); also -config"},
        {"daemon-mode", 0, "BOOL",
         "true (the default): keep running and renew; false: write once and exit"},
        {"health-address", 0, "ADDR",
         "serve health_checks on this IPv4 or IPv6 address only (default: every\n"
         "address, as spiffe-helper)"},
        {"allow-unsafe-parent", 0, NULL,
         "write into cert_dir even when another user could write one of its\n"
         "parents (and so swap cert_dir for a symlink); refused by default"},
        {0},
};

const struct tool_cmd tool_helper_cmds[] = {
        {"run", "[-config FILE] [-daemon-mode=BOOL]",
         "a drop-in for spiffe-helper: SVIDs from a Workload API socket into files",
         "Reads spiffe-helper's configuration file as it is (the same HCL keys:\n"
         "agent_address, cert_dir, svid_file_name, svid_key_file_name,\n"
         "svid_bundle_file_name, jwt_svids, jwt_bundle_file_name, cmd, cmd_args,\n"
         "renew_signal, pid_file_name, daemon_mode, the *_file_mode keys,\n"
         "add_intermediates_to_bundle, include_federated_domains, omit_expired, hint,\n"
         "health_checks)\n"
         "and spiffe-helper's flags, so 'cubeid helper -config helper.conf' replaces\n"
         "'spiffe-helper -config helper.conf'.  An unknown key is an error with its line.\n"
         "It works with any Workload API socket: cubeid-agent's or SPIRE's.\n"
         "\n"
         "Unlike spiffe-helper it writes all its files as one atomic set: a new\n"
         "timestamped directory in cert_dir, fsynced, then a ..data symlink swapped\n"
         "with rename(2), with svid.pem and the other names pointing through ..data.\n"
         "File modes are applied on every write.  The JWT bundle file has\n"
         "spiffe-helper's format: a JSON object from trust domain to base64 JWKS.\n"
         "No symlink in cert_dir's path is followed (give the real path), and a\n"
         "cert_dir whose parents another user could write is refused unless\n"
         "--allow-unsafe-parent.\n"
         "\n"
         "With daemon_mode = false it writes once and exits (status 1 if it could\n"
         "not).  In daemon mode it follows the agent's streams and rewrites the set\n"
         "on every change; after each X.509 update it starts cmd with cmd_args (split\n"
         "at spaces with \"quotes\", as spiffe-helper does; no shell) the first time\n"
         "and sends it renew_signal afterwards, and sends renew_signal to the pid in\n"
         "pid_file_name.  SIGTERM or SIGINT stops it.\n"
         "\n"
         "health_checks { listener_enabled = true } serves, in daemon mode, HTTP GET\n"
         "on bind_port (8081) on every address (as spiffe-helper; --health-address\n"
         "ADDR for one): liveness_path (/live) answers 200 unless the last write\n"
         "of an output failed, readiness_path (/ready) 200 once every output has\n"
         "been written, otherwise 503, with spiffe-helper's JSON body\n"
         "{\"status\":\"OK\",\"health\":{\"file_write_statuses\":{...}}}.\n"
         "With daemon_mode = false there is no listener, as in spiffe-helper.\n"
         "\n"
         "'cubeid helper -config FILE' is the same as 'cubeid helper run --config FILE'.",
         run_opts, 0, helper_run},
        {0},
};

/* ------------------------------------------------------------ state */

enum { F_SVID, F_KEY, F_BUNDLE, F_JWT_BUNDLE, F_JWT0 };

struct helper {
	struct helper_config *c;
	struct cubeid_wl_opts wo;
	volatile int stop;
	pthread_mutex_t mu;
	/* the current outputs, by F_*: NULL until received */
	uint8_t *buf[F_JWT0 + HELPER_JWT_SVIDS_MAX];
	size_t len[F_JWT0 + HELPER_JWT_SVIDS_MAX];
	int renew_sig;
	pid_t child; /* cmd, 0 when not running */
	char **cmd_argv;
	unsigned writes;
	bool write_failed;    /* the last write failed: retried with backoff */
	bool actions_pending; /* an X.509 update is not written yet */
	/* spiffe-helper's write statuses for the health listener, by HELPER_HS_*
	 * (under ws_mu, not mu: a write may hold mu through pid file retries) */
	pthread_mutex_t ws_mu;
	enum helper_write_status ws[HELPER_HS_JWT0 + HELPER_JWT_SVIDS_MAX];
	const char *health_address;         /* --health-address, NULL: every address */
	struct cubeid_adir_opts wopts;      /* --allow-unsafe-parent */
	long retry_ms;                      /* the next backoff */
	struct timespec retry;              /* when (CLOCK_MONOTONIC) */
	unsigned long x509_msgs, jwtb_msgs; /* __atomic: stream messages received */
};

static void
set_buf(struct helper *h, int i, uint8_t *b, size_t len)
{
	if (h->buf[i] != NULL) {
		OPENSSL_cleanse(h->buf[i], h->len[i]);
		free(h->buf[i]);
	}
	h->buf[i] = b;
	h->len[i] = len;
}

static void after_update_locked(struct helper *h);

/* The outputs of a set written (or not), as spiffe-helper records them. */
static void
set_status(struct helper *h, const bool *in, enum helper_write_status w)
{
	size_t i;

	pthread_mutex_lock(&h->ws_mu);
	for (i = 0; i < HELPER_HS_JWT0 + h->c->n_jwt; i++)
		if (in[i])
			h->ws[i] = w;
	pthread_mutex_unlock(&h->ws_mu);
}

static void
health_snap(void *arg, enum helper_write_status *st)
{
	struct helper *h = arg;

	pthread_mutex_lock(&h->ws_mu);
	memcpy(st, h->ws, sizeof(h->ws));
	pthread_mutex_unlock(&h->ws_mu);
}

/* Write every output received so far as one set (under h->mu); after an
 * X.509 update, then signal and start as spiffe-helper does. */
static int
write_set_locked(struct helper *h)
{
	const struct helper_config *c = h->c;
	struct cubeid_adir_file f[F_JWT0 + HELPER_JWT_SVIDS_MAX];
	const char *why = NULL;
	bool in[HELPER_HS_JWT0 + HELPER_JWT_SVIDS_MAX] = {false};
	size_t n = 0, i;
	int rc;

	if (c->svid_file_name != NULL && h->buf[F_SVID] != NULL) {
		in[HELPER_HS_X509] = true;
		f[n++] = (struct cubeid_adir_file){c->svid_file_name, h->buf[F_SVID],
		                                   h->len[F_SVID], (mode_t)c->cert_file_mode};
		f[n++] = (struct cubeid_adir_file){c->svid_key_file_name, h->buf[F_KEY],
		                                   h->len[F_KEY], (mode_t)c->key_file_mode};
		f[n++] = (struct cubeid_adir_file){c->svid_bundle_file_name, h->buf[F_BUNDLE],
		                                   h->len[F_BUNDLE], (mode_t)c->cert_file_mode};
	}
	if (c->jwt_bundle_file_name != NULL && h->buf[F_JWT_BUNDLE] != NULL) {
		in[HELPER_HS_JWT_BUNDLE] = true;
		f[n++] = (struct cubeid_adir_file){c->jwt_bundle_file_name, h->buf[F_JWT_BUNDLE],
		                                   h->len[F_JWT_BUNDLE],
		                                   (mode_t)c->jwt_bundle_file_mode};
	}
	for (i = 0; i < c->n_jwt; i++)
		if (h->buf[F_JWT0 + i] != NULL) {
			in[HELPER_HS_JWT0 + i] = true;
			f[n++] = (struct cubeid_adir_file){c->jwt[i].file, h->buf[F_JWT0 + i],
			                                   h->len[F_JWT0 + i],
			                                   (mode_t)c->jwt_svid_file_mode};
		}
	if (n == 0)
		return CUBEID_OK;
	rc = cubeid_adir_write(c->cert_dir != NULL && *c->cert_dir ? c->cert_dir : ".", f, n,
	                       &h->wopts, &why);
	set_status(h, in, rc == CUBEID_OK ? HELPER_WS_WRITTEN : HELPER_WS_FAILED);
	if (rc != CUBEID_OK) {
		h->retry_ms = !h->write_failed      ? 1000
		              : h->retry_ms < 60000 ? h->retry_ms * 2
		                                    : 60000;
		cubeid_error("writing %zu files to %s failed: %s (%s); retrying in %ld ms", n,
		             c->cert_dir != NULL ? c->cert_dir : ".", why, strerror(errno),
		             h->retry_ms);
		h->write_failed = true;
		clock_gettime(CLOCK_MONOTONIC, &h->retry);
		h->retry.tv_sec += h->retry_ms / 1000;
		h->retry.tv_nsec += (h->retry_ms % 1000) * 1000000L;
		if (h->retry.tv_nsec >= 1000000000L) {
			h->retry.tv_sec++;
			h->retry.tv_nsec -= 1000000000L;
		}
		return rc;
	}
	h->write_failed = false;
	h->writes++;
	if (h->actions_pending) {
		h->actions_pending = false;
		after_update_locked(h);
	}
	cubeid_info("wrote %zu files to %s", n, c->cert_dir != NULL ? c->cert_dir : ".");
	return CUBEID_OK;
}

/* ------------------------------------------------------------ after an update */

/* cmd with no '/' is looked up in $PATH, as Go's exec.Command does. */
static char *
find_program(const char *cmd)
{
	const char *path = getenv("PATH"), *p, *e;
	char buf[PATH_MAX];

	if (strchr(cmd, '/') != NULL)
		return strdup(cmd);
	for (p = path != NULL ? path : "/usr/bin:/bin"; *p != '\0'; p = *e ? e + 1 : e) {
		e = strchr(p, ':');
		if (e == NULL)
			e = p + strlen(p);
		if (e > p &&
		    snprintf(buf, sizeof(buf), "%.*s/%s", (int)(e - p), p, cmd) <
		            (int)sizeof(buf) &&
		    access(buf, X_OK) == 0)
			return strdup(buf);
	}
	return NULL;
}

/* After an X.509 update (under h->mu). */
static void
after_update_locked(struct helper *h)
{
	const struct helper_config *c = h->c;
	struct timespec d;
	pid_t pid;
	int i, rc;

	if (!c->daemon_mode)
		return;
	if (c->cmd != NULL && *c->cmd != '\0') {
		if (h->child == 0) {
			char *prog = find_program(c->cmd);
			if (prog == NULL) {
				cubeid_error("cmd '%s' not found in PATH", c->cmd);
			} else {
				free(h->cmd_argv[0]);
				h->cmd_argv[0] = prog;
				if (cubeid_spawn(h->cmd_argv, &h->child) != CUBEID_OK)
					cubeid_error("cannot start cmd %s: %s", prog,
					             strerror(errno));
				else
					cubeid_notice("started cmd %s (pid %ld)", prog,
					              (long)h->child);
			}
		} else if (h->renew_sig > 0 && kill(h->child, h->renew_sig) != 0) {
			cubeid_error("cannot signal cmd (pid %ld): %s", (long)h->child,
			             strerror(errno));
		}
	}
	if (c->pid_file_name != NULL && *c->pid_file_name != '\0') {
		/* spiffe-helper's backoff: 100 ms, doubling, 10 tries */
		for (i = 0; i < 10; i++) {
			if ((rc = cubeid_pid_file_read(c->pid_file_name, &pid)) == CUBEID_OK &&
			    kill(pid, h->renew_sig) == 0) {
				cubeid_info("sent signal %d to pid %ld from %s", h->renew_sig,
				            (long)pid, c->pid_file_name);
				return;
			}
			d.tv_sec = (100L << i) / 1000;
			d.tv_nsec = ((100L << i) % 1000) * 1000000L;
			if (h->stop)
				break;
			nanosleep(&d, NULL);
		}
		cubeid_error("cannot signal the pid in %s: %s", c->pid_file_name,
		             rc != CUBEID_OK ? cubeid_strerror(rc) : strerror(errno));
	}
}

/* ------------------------------------------------------------ threads */

static void
sleep_ms(struct helper *h, long ms)
{
	struct timespec d = {0, 50 * 1000 * 1000};

	for (; ms > 0 && !h->stop; ms -= 50)
		nanosleep(&d, NULL);
}

#define STREAM_RETRY_MIN_MS 1000
#define STREAM_RETRY_MAX_MS 30000

static int64_t
stream_mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* After a stream ended: how long to wait before reopening it.  At once
 * when it had worked -- it brought a message (*msgs moved past seen) and
 * lasted a second or more -- as the Workload API (4.2) asks, and the
 * backoff starts over; else the backoff, doubling up to 30 s. */
static long
stream_retry_ms(const unsigned long *msgs, unsigned long seen, int64_t t0, long *backoff)
{
	long ms;

	if (__atomic_load_n(msgs, __ATOMIC_RELAXED) != seen && stream_mono_ms() - t0 >= 1000) {
		*backoff = STREAM_RETRY_MIN_MS;
		return 0;
	}
	ms = *backoff;
	*backoff = ms < STREAM_RETRY_MAX_MS / 2 ? ms * 2 : STREAM_RETRY_MAX_MS;
	return ms;
}

static int
on_x509(const struct cubeid_wl_x509 *x, void *arg)
{
	struct helper *h = arg;
	uint8_t *s = NULL, *k = NULL, *b = NULL;
	size_t sl = 0, kl = 0, bl = 0;

	__atomic_add_fetch(&h->x509_msgs, 1, __ATOMIC_RELAXED);
	if (helper_x509_files(h->c, x, &s, &sl, &k, &kl, &b, &bl) != CUBEID_OK)
		return 0; /* keep the old files; the next message may do */
	pthread_mutex_lock(&h->mu);
	set_buf(h, F_SVID, s, sl);
	set_buf(h, F_KEY, k, kl);
	set_buf(h, F_BUNDLE, b, bl);
	h->actions_pending = true; /* after the write, or the retried one */
	write_set_locked(h);
	pthread_mutex_unlock(&h->mu);
	return 0;
}

static void *
x509_thread(void *arg)
{
	struct helper *h = arg;
	struct cubeid_wl_status st;
	long backoff = STREAM_RETRY_MIN_MS, ms;
	int rc;

	while (!h->stop) {
		unsigned long seen = __atomic_load_n(&h->x509_msgs, __ATOMIC_RELAXED);
		int64_t t0 = stream_mono_ms();

		rc = cubeid_wl_watch_x509(&h->wo, on_x509, h, &h->stop, &st);
		if (h->stop)
			break;
		ms = stream_retry_ms(&h->x509_msgs, seen, t0, &backoff);
		cubeid_error("the X.509-SVID stream ended: %s%s%s; again in %ld ms",
		             cubeid_strerror(rc), st.message[0] ? ": " : "", st.message, ms);
		sleep_ms(h, ms);
	}
	return NULL;
}

static int
on_jwt_bundles(const struct cubeid_wl_bundles *b, void *arg)
{
	struct helper *h = arg;
	uint8_t *out = NULL;
	size_t olen = 0;

	__atomic_add_fetch(&h->jwtb_msgs, 1, __ATOMIC_RELAXED);
	if (helper_jwt_bundle_json(b->v, b->n, &out, &olen) == CUBEID_OK) {
		pthread_mutex_lock(&h->mu);
		set_buf(h, F_JWT_BUNDLE, out, olen);
		write_set_locked(h);
		pthread_mutex_unlock(&h->mu);
		cubeid_info("JWT bundle updated (%zu trust domains)", b->n);
	}
	return 0;
}

static void *
jwt_bundle_thread(void *arg)
{
	struct helper *h = arg;
	struct cubeid_wl_status st;
	long backoff = STREAM_RETRY_MIN_MS, ms;
	int rc;

	while (!h->stop) {
		unsigned long seen = __atomic_load_n(&h->jwtb_msgs, __ATOMIC_RELAXED);
		int64_t t0 = stream_mono_ms();

		rc = cubeid_wl_watch_jwt_bundles(&h->wo, on_jwt_bundles, h, &h->stop, &st);
		if (h->stop)
			break;
		ms = stream_retry_ms(&h->jwtb_msgs, seen, t0, &backoff);
		cubeid_error("the JWT bundle stream ended: %s%s%s; again in %ld ms",
		             cubeid_strerror(rc), st.message[0] ? ": " : "", st.message, ms);
		sleep_ms(h, ms);
	}
	return NULL;
}

/* Fetch JWT-SVID i into h (under no lock); *exp gets its expiry. */
static int
fetch_jwt(struct helper *h, size_t i, int64_t *exp)
{
	const struct helper_jwt *j = &h->c->jwt[i];
	const char *aud[1 + 64];
	struct cubeid_wl_status st;
	struct cubeid_wl_jwt *out = NULL;
	const char *tok = NULL;
	size_t k, na = 0;
	uint8_t *b;
	int rc;

	*exp = 0;
	aud[na++] = j->audience;
	for (k = 0; k < j->n_extra && na < 65; k++)
		aud[na++] = j->extra[k];
	if ((rc = cubeid_wl_fetch_jwt(&h->wo, aud, na, NULL, &out, &st)) != CUBEID_OK) {
		cubeid_error("FetchJWTSVID for %s: %s%s%s", j->audience, cubeid_strerror(rc),
		             st.message[0] ? ": " : "", st.message);
		return rc;
	}
	for (k = 0; k < out->n && tok == NULL; k++)
		if (h->c->hint == NULL || *h->c->hint == '\0' ||
		    strcmp(out->svids[k].hint, h->c->hint) == 0)
			tok = out->svids[k].token;
	if (tok == NULL || (b = (uint8_t *)strdup(tok)) == NULL) {
		cubeid_wl_jwt_free(out);
		return CUBEID_ERR_NOT_FOUND;
	}
	*exp = helper_jwt_exp(tok);
	pthread_mutex_lock(&h->mu);
	set_buf(h, F_JWT0 + (int)i, b, strlen(tok));
	pthread_mutex_unlock(&h->mu);
	cubeid_wl_jwt_free(out);
	return CUBEID_OK;
}

static void *
jwt_thread(void *arg)
{
	struct helper *h = arg;
	int64_t *due = calloc(h->c->n_jwt, sizeof(*due)), exp, now;
	long *backoff = calloc(h->c->n_jwt, sizeof(*backoff));
	size_t i;
	bool changed;

	if (due == NULL || backoff == NULL) {
		free(due);
		free(backoff);
		return NULL;
	}
	while (!h->stop) {
		changed = false;
		for (i = 0; i < h->c->n_jwt; i++) {
			now = (int64_t)time(NULL) * 1000;
			if (now < due[i])
				continue;
			if (fetch_jwt(h, i, &exp) == CUBEID_OK) {
				changed = true;
				backoff[i] = 0;
				/* spiffe-helper: half the remaining life, plus 1 s */
				due[i] = now + (exp > now / 1000 ? (exp - now / 1000) * 500 : 0) +
				         1000;
			} else {
				backoff[i] = backoff[i] == 0      ? 1000
				             : backoff[i] < 60000 ? backoff[i] * 2
				                                  : 60000;
				due[i] = now + backoff[i];
			}
		}
		if (changed) {
			pthread_mutex_lock(&h->mu);
			write_set_locked(h);
			pthread_mutex_unlock(&h->mu);
		}
		sleep_ms(h, 200);
	}
	free(due);
	free(backoff);
	return NULL;
}

/* ------------------------------------------------------------ modes */

static int
one_shot(struct helper *h)
{
	const struct helper_config *c = h->c;
	struct cubeid_wl_status st;
	struct cubeid_wl_x509 *x = NULL;
	struct cubeid_wl_bundles *jb = NULL;
	long wait = 10;
	int64_t exp;
	size_t i;
	int rc = CUBEID_OK, attempt;

	if (c->svid_file_name != NULL) {
		/* an agent may answer PermissionDenied until it has minted */
		for (attempt = 0;; attempt++) {
			rc = cubeid_wl_fetch_x509(&h->wo, &x, &st);
			if (rc == CUBEID_OK || attempt >= 6 ||
			    (rc != CUBEID_ERR_PERMISSION && rc != CUBEID_ERR_UNAVAILABLE))
				break;
			sleep_ms(h, wait);
			wait *= 5;
		}
		if (rc != CUBEID_OK) {
			cubeid_error("FetchX509SVID: %s%s%s", cubeid_strerror(rc),
			             st.message[0] ? ": " : "", st.message);
			return rc;
		}
		{
			uint8_t *s = NULL, *k = NULL, *b = NULL;
			size_t sl = 0, kl = 0, bl = 0;
			rc = helper_x509_files(c, x, &s, &sl, &k, &kl, &b, &bl);
			cubeid_wl_x509_free(x);
			if (rc != CUBEID_OK)
				return rc;
			set_buf(h, F_SVID, s, sl);
			set_buf(h, F_KEY, k, kl);
			set_buf(h, F_BUNDLE, b, bl);
		}
	}
	if (c->jwt_bundle_file_name != NULL) {
		uint8_t *out = NULL;
		size_t olen = 0;

		if ((rc = cubeid_wl_fetch_jwt_bundles(&h->wo, &jb, &st)) != CUBEID_OK) {
			cubeid_error("FetchJWTBundles: %s%s%s", cubeid_strerror(rc),
			             st.message[0] ? ": " : "", st.message);
			return rc;
		}
		rc = helper_jwt_bundle_json(jb->v, jb->n, &out, &olen);
		cubeid_wl_bundles_free(jb);
		if (rc != CUBEID_OK)
			return rc;
		set_buf(h, F_JWT_BUNDLE, out, olen);
	}
	for (i = 0; i < c->n_jwt; i++)
		if ((rc = fetch_jwt(h, i, &exp)) != CUBEID_OK)
			return rc;
	return write_set_locked(h);
}

static int
daemon_mode(struct helper *h)
{
	struct helper_health *health = NULL;
	pthread_t th[3];
	bool started[3] = {false, false, false};
	siginfo_t si;
	struct timespec tick = {0, 200 * 1000 * 1000};
	sigset_t mask;
	int i, st, rc;

	if (h->c->health_listener_enabled &&
	    (rc = helper_health_start(h->c, h->health_address, health_snap, h, &health)) !=
	            CUBEID_OK)
		return rc;
	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGCHLD);
	pthread_sigmask(SIG_BLOCK, &mask, NULL);
	if (h->c->svid_file_name != NULL)
		started[0] = pthread_create(&th[0], NULL, x509_thread, h) == 0;
	if (h->c->jwt_bundle_file_name != NULL)
		started[1] = pthread_create(&th[1], NULL, jwt_bundle_thread, h) == 0;
	if (h->c->n_jwt > 0)
		started[2] = pthread_create(&th[2], NULL, jwt_thread, h) == 0;
	cubeid_notice("cubeid helper: daemon mode, agent %s, files in %s", h->wo.socket,
	              h->c->cert_dir != NULL ? h->c->cert_dir : ".");
	while (!h->stop) {
		int sig = sigtimedwait(&mask, &si, &tick);
		if (sig == SIGTERM || sig == SIGINT) {
			cubeid_notice("%s: stopping", sig == SIGTERM ? "SIGTERM" : "SIGINT");
			h->stop = 1;
		}
		pthread_mutex_lock(&h->mu);
		if (h->write_failed && !h->stop) {
			struct timespec now;

			clock_gettime(CLOCK_MONOTONIC, &now);
			if (now.tv_sec > h->retry.tv_sec ||
			    (now.tv_sec == h->retry.tv_sec && now.tv_nsec >= h->retry.tv_nsec)) {
				write_set_locked(h);
			}
		}
		if (h->child > 0 && waitpid(h->child, &st, WNOHANG) == h->child) {
			cubeid_notice("cmd (pid %ld) exited with status %d; it starts again on "
			              "the next update",
			              (long)h->child, WIFEXITED(st) ? WEXITSTATUS(st) : -1);
			h->child = 0;
		}
		pthread_mutex_unlock(&h->mu);
	}
	for (i = 0; i < 3; i++)
		if (started[i])
			pthread_join(th[i], NULL);
	helper_health_stop(health);
	return CUBEID_OK;
}

static int
helper_run(struct tool_ctx *tc)
{
	const char *path = tool_opt(tc, "config"), *dm = tool_opt(tc, "daemon-mode");
	struct helper h;
	char *buf = NULL, *err = NULL;
	size_t len = 0;
	FILE *f;
	int rc, i;

	memset(&h, 0, sizeof(h));
	pthread_mutex_init(&h.mu, NULL);
	pthread_mutex_init(&h.ws_mu, NULL);
	h.health_address = tool_opt(tc, "health-address");
	h.wopts = (struct cubeid_adir_opts){(uid_t)-1, (gid_t)-1, 0755,
	                                    tool_flag(tc, "allow-unsafe-parent")};
	if (h.health_address != NULL) {
		struct in6_addr a;

		if (inet_pton(AF_INET, h.health_address, &a) != 1 &&
		    inet_pton(AF_INET6, h.health_address, &a) != 1)
			return tool_usage_error(tc,
			                        "--health-address takes an IPv4 or IPv6 address, "
			                        "not '%s'",
			                        h.health_address);
	}
	if (path == NULL)
		path = "helper.conf";
	if (dm != NULL && strcmp(dm, "true") != 0 && strcmp(dm, "false") != 0 &&
	    strcmp(dm, "1") != 0 && strcmp(dm, "0") != 0)
		return tool_usage_error(tc, "--daemon-mode takes true or false, not '%s'", dm);
	if ((f = fopen(path, "re")) == NULL)
		return tool_fail(errno == ENOENT ? CUBEID_ERR_NOT_FOUND : CUBEID_ERR_IO,
		                 "cannot read %s", path);
	if ((buf = malloc(HELPER_CONFIG_MAX + 1)) == NULL) {
		fclose(f);
		return tool_fail(CUBEID_ERR_NOMEM, "%s", path);
	}
	len = fread(buf, 1, HELPER_CONFIG_MAX + 1, f);
	fclose(f);
	rc = helper_config_parse(buf, len, path, &h.c, &err);
	free(buf);
	if (rc == CUBEID_OK && dm != NULL)
		h.c->daemon_mode = strcmp(dm, "true") == 0 || strcmp(dm, "1") == 0;
	if (rc == CUBEID_OK && (rc = helper_config_finish(h.c, &err)) != CUBEID_OK) {
		char *e2 = NULL;
		if (err != NULL && asprintf(&e2, "%s: %s", path, err) > 0) {
			free(err);
			err = e2;
		}
	}
	if (rc != CUBEID_OK) {
		tool_err("invalid configuration: %s", err != NULL ? err : cubeid_strerror(rc));
		free(err);
		helper_config_free(h.c);
		return TOOL_EXIT_USAGE;
	}
	if (cubeid_log_get_level() < CUBEID_LOG_INFO && !tc->quiet && tc->verbose > 0)
		cubeid_log_set_level(CUBEID_LOG_INFO);
	h.wo.socket = h.c->agent_address;
	h.renew_sig = h.c->renew_signal != NULL && *h.c->renew_signal
	                      ? cubeid_signal_parse(h.c->renew_signal)
	                      : 0;
	if (h.c->daemon_mode && h.c->cmd != NULL && *h.c->cmd != '\0' &&
	    (rc = cubeid_split_args(h.c->cmd, h.c->cmd_args, &h.cmd_argv)) != CUBEID_OK) {
		tool_err("invalid configuration: cmd_args: %s", cubeid_strerror(rc));
		helper_config_free(h.c);
		return TOOL_EXIT_USAGE;
	}
	if (!h.c->daemon_mode &&
	    ((h.c->cmd != NULL && *h.c->cmd) || (h.c->renew_signal != NULL && *h.c->renew_signal)))
		cubeid_warn("cmd and renew_signal are ignored when daemon_mode is false");
	if (!h.c->daemon_mode && h.c->health_listener_enabled)
		cubeid_notice("health_checks: no listener when daemon_mode is false (as "
		              "spiffe-helper: nothing to serve once the files are written)");
	{
		unsigned removed = 0;
		const char *why = NULL;
		const char *dir = h.c->cert_dir != NULL && *h.c->cert_dir ? h.c->cert_dir : ".";
		if (cubeid_adir_cleanup(dir, &h.wopts, &removed, &why) != CUBEID_OK)
			cubeid_warn("cleaning %s: %s", dir, why);
		else if (removed > 0)
			cubeid_notice("removed %u leftovers of an interrupted update in %s",
			              removed, dir);
	}
	rc = h.c->daemon_mode ? daemon_mode(&h) : one_shot(&h);
	for (i = 0; i < F_JWT0 + HELPER_JWT_SVIDS_MAX; i++)
		set_buf(&h, i, NULL, 0);
	cubeid_argv_free(h.cmd_argv);
	helper_config_free(h.c);
	pthread_mutex_destroy(&h.mu);
	pthread_mutex_destroy(&h.ws_mu);
	if (rc != CUBEID_OK)
		return tool_exit_code(rc);
	return TOOL_EXIT_OK;
}

/* spiffe-helper's Go flags (-config FILE, -config=FILE, -daemon-mode=false,
 * -version) become ours; `cubeid helper [flags]` is `cubeid helper run`. */
int
tool_helper(int argc, char **argv)
{
	char **v;
	int i, n = 0, r, start = 1;

	if (argc >= 2 && strcmp(argv[1], "run") == 0)
		start = 2;
	else if (argc >= 2 && argv[1][0] != '-')
		return tool_dispatch("helper", tool_helper_cmds, argc, argv);
	if ((v = calloc((size_t)argc * 2 + 3, sizeof(*v))) == NULL)
		return TOOL_EXIT_FAILURE;
	v[n++] = argv[0];
	v[n++] = (char *)"run";
	for (i = start; i < argc; i++) {
		const char *a = argv[i];
		const char *b = a[0] == '-' && a[1] == '-' ? a + 2 : a[0] == '-' ? a + 1 : NULL;

		if (b != NULL && strcmp(b, "config") == 0) {
			v[n++] = (char *)"--config";
		} else if (b != NULL && strncmp(b, "config=", 7) == 0) {
			v[n++] = (char *)"--config";
			v[n++] = (char *)b + 7;
		} else if (b != NULL && strcmp(b, "daemon-mode") == 0) {
			v[n++] = (char *)"--daemon-mode=true";
		} else if (b != NULL && strncmp(b, "daemon-mode=", 12) == 0) {
			v[n++] = (char *)"--daemon-mode";
			v[n++] = (char *)b + 12;
		} else if (b != NULL && (strcmp(b, "version") == 0)) {
			v[n++] = (char *)"--version";
		} else if (b != NULL && (strcmp(b, "help") == 0 || strcmp(b, "h") == 0)) {
			v[n++] = (char *)"--help";
		} else {
			v[n++] = argv[i];
		}
	}
	v[n] = NULL;
	r = tool_dispatch("helper", tool_helper_cmds, n, v);
	free(v);
	return r;
}
