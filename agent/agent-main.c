/*
 * cubeid-agent: the node identity daemon.  Flags over the config file, the
 * token and the CA, the Workload API on a Unix socket (ours or systemd's),
 * signals through a signalfd in the loop, sd_notify readiness, watchdog
 * and stopping, and --dev: a throwaway SoftHSM2 token, a root CA and the
 * invoking user registered, in one command.
 */
#include "config.h"

#include "agent/agent-doc.h"
#include "agent/audit.h"
#include "agent/cluster.h"
#include "agent/daemon.h"

#include <cubeid/cluster.h>
#include <cubeid/log.h>

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/asn1.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <systemd/sd-daemon.h>

#define EXIT_USAGE 2

/* The options, --help and the man pages come from agent/agent-doc.c. */
static void
usage(FILE *f)
{
	agent_doc_usage(f);
}

static int
parse_ttl(const char *flag, const char *s, long *out)
{
	int64_t v;

	if (cubeid_duration_parse(s, &v) != CUBEID_OK) {
		fprintf(stderr, "cubeid-agent: %s: bad duration '%s' (e.g. 90, 30s, 5m, 1h)\n",
		        flag, s);
		return -1;
	}
	*out = (long)v;
	return 0;
}

/* ---------------------------------------------------------- config */

static int
replace_str(char **dst, const char *src)
{
	char *s;

	if (src == NULL)
		return CUBEID_OK;
	if ((s = strdup(src)) == NULL)
		return CUBEID_ERR_NOMEM;
	free(*dst);
	*dst = s;
	return CUBEID_OK;
}

/* The config file (or the defaults) with the flags over it. */
static int
load_config(const struct agent_flags *f, struct agent_config **out)
{
	struct agent_config *cfg = NULL;
	char *err = NULL;
	int rc;

	*out = NULL;
	if (f->config_file != NULL)
		rc = config_load(f->config_file, &cfg, &err);
	else
		rc = config_default(&cfg);
	if (rc != CUBEID_OK) {
		cubeid_error("config: %s", err != NULL ? err : cubeid_strerror(rc));
		free(err);
		return rc;
	}
	if ((rc = replace_str(&cfg->socket_path, f->socket_path)) != CUBEID_OK ||
	    (rc = replace_str(&cfg->state_dir, f->state_dir)) != CUBEID_OK ||
	    (rc = replace_str(&cfg->token, f->token)) != CUBEID_OK ||
	    (rc = replace_str(&cfg->workload_token, f->workload_token)) != CUBEID_OK ||
	    (rc = replace_str(&cfg->pin_file, f->pin_file)) != CUBEID_OK ||
	    (rc = replace_str(&cfg->trust_domain, f->trust_domain)) != CUBEID_OK ||
	    (rc = replace_str(&cfg->entries, f->entries)) != CUBEID_OK ||
	    (rc = replace_str(&cfg->http_address, f->http_address)) != CUBEID_OK) {
		config_free(cfg);
		return rc;
	}
	if (cfg->workload_token != NULL && strncmp(cfg->workload_token, "pkcs11:", 7) != 0) {
		cubeid_error("workload_token: not a PKCS#11 URI (it must start with \"pkcs11:\")");
		config_free(cfg);
		return CUBEID_ERR_CONFIG;
	}
	if (f->x509_svid_ttl > 0)
		cfg->x509_svid_ttl = f->x509_svid_ttl;
	if (f->jwt_svid_ttl > 0)
		cfg->jwt_svid_ttl = f->jwt_svid_ttl;
	if (f->log_level >= 0)
		cfg->log_level = f->log_level;
	*out = cfg;
	return CUBEID_OK;
}

/* The PIN file the token will read (the config's or --pin-file, else
 * $CUBEID_PIN_FILE) must be the agent's own and closed to everyone else:
 * one readable by others is refused at start and by --check alike.  A
 * missing one is left to the token's login to report: --check runs where
 * the secrets are not. */
static int
pin_file_check(const struct agent_config *cfg)
{
	const char *path = cfg->pin_file, *env;
	char *err = NULL;
	int rc;

	/* --dev's own token (no token given) reads its own PIN file */
	if (path == NULL && (cfg->token != NULL || getenv(CUBEID_ENV_TOKEN) != NULL) &&
	    (env = getenv(CUBEID_ENV_PIN_FILE)) != NULL && env[0] != '\0')
		path = env;
	if (path == NULL)
		return CUBEID_OK;
	rc = config_secret_file_check(path, &err);
	if (rc == CUBEID_ERR_NOT_FOUND)
		rc = CUBEID_OK;
	else if (rc != CUBEID_OK)
		cubeid_error("pin_file %s", err != NULL ? err : cubeid_strerror(rc));
	free(err);
	return rc;
}

/* Load cfg->entries; a missing file is no entries when allow_missing.
 * Every entry must be in trust domain td. */
static int
load_entries(const char *path, bool allow_missing, const char *td, struct entry_set **out)
{
	struct stat st;
	char *err = NULL;
	int rc;

	*out = NULL;
	if (path == NULL || path[0] == '\0')
		return CUBEID_OK;
	if (stat(path, &st) != 0 && errno == ENOENT) {
		if (allow_missing) {
			cubeid_notice("entries: %s does not exist; no entries from files", path);
			return CUBEID_OK;
		}
		cubeid_error("entries: %s does not exist", path);
		return CUBEID_ERR_NOT_FOUND;
	}
	if ((rc = entries_load(path, out, &err)) != CUBEID_OK ||
	    (rc = entries_check_trust_domain(*out, td, &err)) != CUBEID_OK) {
		cubeid_error("entries: %s", err != NULL ? err : cubeid_strerror(rc));
		free(err);
		entries_free(*out);
		*out = NULL;
	}
	return rc;
}

/* --dev: the invoking user gets spiffe://<td>/unix/uid/<uid>. */
static int
dev_entry_add(struct agent *a)
{
	struct reg_entry *e;
	char id[512], sel[64];
	int rc;

	if ((e = calloc(1, sizeof(*e))) == NULL)
		return CUBEID_ERR_NOMEM;
	a->dev_entries.e = e;
	a->dev_entries.n = 1;
	snprintf(id, sizeof(id), "spiffe://%s/unix/uid/%lu", a->td, (unsigned long)a->uid);
	snprintf(sel, sizeof(sel), "%lu", (unsigned long)a->uid);
	if ((e->name = strdup("dev-user")) == NULL || (e->spiffe_id = strdup(id)) == NULL ||
	    (e->source = strdup("--dev")) == NULL)
		return CUBEID_ERR_NOMEM;
	if ((rc = selector_set_add(&e->selectors, "unix:uid", sel)) != CUBEID_OK)
		return rc;
	e->picod_signer = true; /* may mint PicoD tokens (picod-service.c) */
	return CUBEID_OK;
}

static void
dev_entries_clear(struct entry_set *s)
{
	size_t i;

	for (i = 0; i < s->n; i++) {
		free(s->e[i].name);
		free(s->e[i].spiffe_id);
		free(s->e[i].source);
		selector_set_clear(&s->e[i].selectors);
	}
	free(s->e);
	s->e = NULL;
	s->n = 0;
}

static int
agent_match(struct agent *a, const struct selector_set *sel, const struct reg_entry ***matched,
            char ***ids, size_t *n)
{
	const struct reg_entry **m1 = NULL, **m2 = NULL, **m;
	char **i1 = NULL, **i2 = NULL, **ii;
	size_t n1 = 0, n2 = 0, k;
	int rc;

	*matched = NULL;
	*ids = NULL;
	*n = 0;
	if (a->entries != NULL &&
	    (rc = entries_match(a->entries, sel, a->td, &m1, &i1, &n1)) != CUBEID_OK)
		return rc;
	if (a->dev_entries.n > 0 &&
	    (rc = entries_match(&a->dev_entries, sel, a->td, &m2, &i2, &n2)) != CUBEID_OK) {
		m2 = NULL, i2 = NULL, n2 = 0;
		goto fail;
	}
	if (n2 == 0) {
		free(m2);
		free(i2);
		*matched = m1;
		*ids = i1;
		*n = n1;
		return CUBEID_OK;
	}
	if ((m = realloc(m1, (n1 + n2) * sizeof(*m))) == NULL) {
		rc = CUBEID_ERR_NOMEM;
		goto fail;
	}
	m1 = m;
	if ((ii = realloc(i1, (n1 + n2) * sizeof(*ii))) == NULL) {
		rc = CUBEID_ERR_NOMEM;
		goto fail;
	}
	i1 = ii;
	for (k = 0; k < n2; k++) {
		m1[n1 + k] = m2[k];
		i1[n1 + k] = i2[k];
	}
	free(m2);
	free(i2);
	*matched = m1;
	*ids = i1;
	*n = n1 + n2;
	return CUBEID_OK;
fail:
	for (k = 0; k < n1; k++)
		free(i1[k]);
	for (k = 0; k < n2; k++)
		free(i2[k]);
	free(i1);
	free(i2);
	free(m1);
	free(m2);
	return rc;
}

/* ---------------------------------------------------------- status */

static int64_t
asn1_time_epoch(const ASN1_TIME *t)
{
	struct tm tm;

	if (t == NULL || ASN1_TIME_to_tm(t, &tm) != 1)
		return 0;
	return (int64_t)timegm(&tm);
}

static int
agent_status_json(struct agent *a, char **out)
{
	json_t *o;
	size_t nx = 0, nj = 0;
	int64_t next = 0;
	char *s;

	*out = NULL;
	svid_cache_stats(a->cache, &nx, &nj, &next);
	o = json_pack("{s:s, s:i, s:I, s:s, s:s, s:{s:s, s:s, s:b}, s:{s:b, s:I}, s:{s:I, s:I, "
	              "s:b}, s:i, s:i, s:i, s:i, s:I, s:b}",
	              "version", PACKAGE_VERSION, "pid", (int)getpid(), "uptime",
	              (json_int_t)(time(NULL) - a->started), "trust_domain", a->td, "socket",
	              a->cfg->socket_path, "token", "label", cubeid_token_label(a->tok), "serial",
	              cubeid_token_serial(a->tok), "healthy", a->tok != NULL, "ca", "root",
	              cubeid_ca_is_root(a->ca), "not_after", (json_int_t)a->ca_not_after, "jwt",
	              "keys", (json_int_t)cubeid_jwt_keys_count(a->jwt_keys), "max_ttl",
	              (json_int_t)cubeid_jwt_keys_max_ttl(a->jwt_keys), "ok", a->jwks != NULL,
	              "entries", (int)((a->entries != NULL ? a->entries->n : 0) + a->dev_entries.n),
	              "clients", (int)grpc_server_connections(a->grpc), "streams",
	              (int)wapi_streams(a->wapi), "x509_svids_cached", (int)nx, "next_rotation",
	              (json_int_t)next, "dev", a->flags.dev);
	if (o == NULL)
		return CUBEID_ERR_NOMEM;
	json_object_set_new(o, "jwt_svids_cached", json_integer((json_int_t)nj));
	if (a->picod != NULL) { /* PicoD tokens (picod-service.c) */
		size_t pc;
		uint64_t ph, pm;

		picod_service_stats(a->picod, &pc, &ph, &pm);
		json_object_set_new(o, "picod",
		                    json_pack("{s:I, s:I, s:I}", "tokens_cached", (json_int_t)pc,
		                              "cache_hits", (json_int_t)ph, "mints",
		                              (json_int_t)pm));
	}
	{
		/* the token's health: the last real token operation (a mint or
		 * a probe; h_status probes when it is older than a few seconds) */
		json_t *t = json_object_get(o, "token");
		const struct agent_metrics *m = &a->metrics;

		json_object_set_new(t, "healthy",
		                    json_boolean(a->tok != NULL && m->token_checked != 0 &&
		                                 m->token_rc == CUBEID_OK));
		json_object_set_new(t, "checked", json_integer((json_int_t)m->token_checked));
		if (m->token_checked != 0 && m->token_rc != CUBEID_OK) {
			json_object_set_new(t, "error", json_string(cubeid_strerror(m->token_rc)));
			json_object_set_new(t, "why", json_string(agent_token_why(a)));
		}
		if (a->tok != NULL) { /* outages the token layer recovers from */
			struct cubeid_token_health th;

			cubeid_token_health(a->tok, &th);
			json_object_set_new(t, "unavailable", json_boolean(th.down));
			if (th.down)
				json_object_set_new(
				        t, "retry_in",
				        json_real((double)(long)(th.retry_in * 10) / 10));
			json_object_set_new(t, "recoveries", json_integer(th.recoveries));
		}
		if (a->wtok != NULL) { /* the token of the workload keys, if another */
			struct cubeid_token_health th;

			cubeid_token_health(a->wtok, &th);
			json_object_set_new(o, "workload_token",
			                    json_pack("{s:s, s:s, s:b, s:I}", "label",
			                              cubeid_token_label(a->wtok), "serial",
			                              cubeid_token_serial(a->wtok), "unavailable",
			                              th.down, "recoveries",
			                              (json_int_t)th.recoveries));
		}
	}
	if (a->cluster != NULL) /* trust across nodes (cluster.c) */
		json_object_set_new(o, "cluster", cluster_status_json(a));
	agent_status_metrics(a, o);
	s = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
	json_decref(o);
	if (s == NULL)
		return CUBEID_ERR_NOMEM;
	*out = s;
	return CUBEID_OK;
}

/* ---------------------------------------------------------- bundles */

static int
load_bundles(struct agent *a, bool *changed)
{
	const cubeid_x509_bundle *b = cubeid_ca_bundle(a->ca);
	cubeid_jwt_bundle *jb = NULL;
	uint8_t *der = NULL, *p;
	size_t i, total = 0;
	char *jwks = NULL;
	size_t jwks_len = 0;
	int n, rc;

	for (i = 0; i < cubeid_x509_bundle_count(b); i++) {
		if ((n = i2d_X509(cubeid_x509_bundle_at(b, i), NULL)) <= 0)
			return CUBEID_ERR_CRYPTO;
		total += (size_t)n;
	}
	if (total == 0 || (der = malloc(total)) == NULL)
		return CUBEID_ERR_NOMEM;
	p = der;
	for (i = 0; i < cubeid_x509_bundle_count(b); i++)
		if (i2d_X509(cubeid_x509_bundle_at(b, i), &p) <= 0) {
			free(der);
			return CUBEID_ERR_CRYPTO;
		}
	if ((rc = cubeid_jwt_keys_bundle(a->jwt_keys, 0, &jb)) != CUBEID_OK ||
	    (rc = cluster_add_remote(a, CUBEID_PUB_USE_JWT_SVID, jb)) != CUBEID_OK ||
	    (rc = cubeid_jwt_bundle_to_jwks(jb, &jwks, &jwks_len)) != CUBEID_OK) {
		free(der);
		cubeid_jwt_bundle_free(jb);
		return rc;
	}
	if (changed != NULL)
		*changed = a->jwks == NULL || strcmp(a->jwks, jwks) != 0 ||
		           a->bundle_der_len != total || memcmp(a->bundle_der, der, total) != 0;
	free(a->bundle_der);
	a->bundle_der = der;
	a->bundle_der_len = total;
	cubeid_jwt_bundle_free(a->jwt_bundle);
	a->jwt_bundle = jb;
	free(a->jwks);
	a->jwks = jwks;
	a->jwks_len = jwks_len;
	a->ca_not_after = asn1_time_epoch(X509_get0_notAfter(cubeid_ca_cert(a->ca)));
	return CUBEID_OK;
}

/* ---------------------------------------------------------- socket */

/* mkdir -p with mode 0755 for the directories it creates. */
static int
mkdir_parents(const char *path)
{
	char buf[PATH_MAX], *p;

	if (strlen(path) >= sizeof(buf))
		return CUBEID_ERR_TOO_LARGE;
	strcpy(buf, path);
	if ((p = strrchr(buf, '/')) == NULL || p == buf)
		return CUBEID_OK;
	*p = '\0';
	for (p = buf + 1; *p != '\0'; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(buf, 0755) != 0 && errno != EEXIST)
			return CUBEID_ERR_IO;
		*p = '/';
	}
	if (mkdir(buf, 0755) != 0 && errno != EEXIST)
		return CUBEID_ERR_IO;
	return CUBEID_OK;
}

/*
 * Is an agent serving on path?  A connect that succeeds says yes; one
 * refused says the socket is stale (its agent is gone).
 */
static bool
socket_is_live(const char *path)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int fd, r;

	/* non-blocking: an agent whose backlog is full must not hang us */
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)) < 0)
		return false;
	strcpy(sa.sun_path, path);
	r = connect(fd, (struct sockaddr *)&sa, sizeof(sa));
	if (r != 0)
		r = errno == EAGAIN ? 0 : -1; /* a backlog full, but live */
	close(fd);
	return r == 0;
}

static int
listen_socket(const char *path, int *out, dev_t *dev, ino_t *ino)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	struct stat st;
	int fd = -1;

	*out = -1;
	if (strlen(path) >= sizeof(sa.sun_path)) {
		cubeid_error("socket path too long: %s", path);
		return CUBEID_ERR_TOO_LARGE;
	}
	if (mkdir_parents(path) != CUBEID_OK) {
		cubeid_error("cannot create the directory of %s: %s", path, strerror(errno));
		return CUBEID_ERR_IO;
	}
	/* A live agent's socket is refused; a stale socket (nobody listens)
	 * goes; anything else at that path is refused. */
	if (lstat(path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode)) {
			cubeid_error("%s exists and is not a socket; refusing to remove it", path);
			return CUBEID_ERR_EXISTS;
		}
		if (socket_is_live(path)) {
			cubeid_error("another agent is serving on %s; refusing to take its socket "
			             "(stop it first, or give another --socket)",
			             path);
			return CUBEID_ERR_EXISTS;
		}
		if (unlink(path) != 0) {
			cubeid_error("cannot remove the stale socket %s: %s", path,
			             strerror(errno));
			return CUBEID_ERR_IO;
		}
	}
	strcpy(sa.sun_path, path);
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)) < 0 ||
	    bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
		cubeid_error("cannot bind %s: %s", path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return CUBEID_ERR_IO;
	}
	/* Workloads of every uid connect; attestation decides what they get.
	 * The backlog is a trade: a connection waits in it behind every one
	 * queued before it, whatever their uid (an HPACK-bomb flood kept it
	 * full: a normal client waited ~350x its baseline at 512, ~80x at 64,
	 * ~24x at 16, docs/hardening.md), but a non-blocking connect() (Go's)
	 * fails with EAGAIN when it is full, and a node starting many pods at
	 * once fills a short one.  So 512, as the socket unit's Backlog=, and
	 * CPU weights do the rest (docs/systemd.md). */
	if (lstat(path, &st) != 0 || chmod(path, 0666) != 0 || listen(fd, 512) != 0) {
		cubeid_error("cannot listen on %s: %s", path, strerror(errno));
		close(fd);
		unlink(path);
		return CUBEID_ERR_IO;
	}
	*dev = st.st_dev;
	*ino = st.st_ino;
	*out = fd;
	return CUBEID_OK;
}

/* Remove the socket at path only if it is still the one this agent bound:
 * a second agent started since may have replaced a path it thought
 * stale, and its socket is not ours to remove. */
static void
unlink_own_socket(const char *path, dev_t dev, ino_t ino)
{
	struct stat st;

	if (lstat(path, &st) != 0)
		return;
	if (!S_ISSOCK(st.st_mode) || st.st_dev != dev || st.st_ino != ino) {
		cubeid_notice("%s is no longer the socket this agent bound; leaving it", path);
		return;
	}
	if (unlink(path) != 0)
		cubeid_warn("cannot remove %s: %s", path, strerror(errno));
}

/* ---------------------------------------------------------- signals */

static int sig_fd = -1;

static bool
streq_null(const char *x, const char *y)
{
	return (x == NULL || y == NULL) ? x == y : strcmp(x, y) == 0;
}

static bool reload_jwt_keys(struct agent *a);

static void entries_watch(struct agent *a);

/*
 * Hash the caller's executable (unix:sha256) only when some entry asks for
 * it: hashing it on every connection was the largest part of a cached
 * FetchJWTSVID (bench/workload-api).  Likewise read no /proc file and ask
 * NSS for no name that no entry uses (attest_skip_for()).  Runs after
 * every (re)load.
 */
static void
attest_tune(struct agent *a)
{
	size_t i, j;
	bool need = false;

	for (i = 0; a->entries != NULL && i < a->entries->n && !need; i++)
		for (j = 0; j < a->entries->e[i].selectors.n && !need; j++)
			need = strncmp(a->entries->e[i].selectors.v[j], "unix:sha256", 11) == 0;
	a->attest.sha256_max_bytes = need ? a->cfg->attest_sha256_max : 0;
	a->attest.skip = attest_skip_for(a->entries) & attest_skip_for(&a->dev_entries);
	/* a reload frees the old config: point at the new one */
	a->attest.kubelet_pods_url = a->cfg->kubelet_pods_url;
	a->attest.pod_info_file = a->cfg->pod_info_file;
	a->attest.kubelet_token_file = a->cfg->kubelet_token_file;
	a->attest.kubelet_ca_file = a->cfg->kubelet_ca_file;
}

/*
 * What only a restart can change (the trust domain, the CA's token and
 * state directory, the socket, the HTTP address) is refused on reload: one
 * error line per key, saying a restart is needed, and the running value is
 * kept in cfg.  A CA renewed in the state directory is not one of them: it
 * is checked and swapped in (ca-renew.c).
 */
static void
restart_bound_keep(struct agent *a, struct agent_config *cfg)
{
	static const struct {
		const char *key;
		size_t off;
		bool show; /* the value may be logged (the token URI may hold a PIN) */
	} keys[] = {
	        {"trust_domain", offsetof(struct agent_config, trust_domain), true},
	        {"state_dir", offsetof(struct agent_config, state_dir), true},
	        {"token", offsetof(struct agent_config, token), false},
	        {"workload_token", offsetof(struct agent_config, workload_token), false},
	        {"pin_file", offsetof(struct agent_config, pin_file), true},
	        {"module", offsetof(struct agent_config, module), true},
	        {"socket_path", offsetof(struct agent_config, socket_path), true},
	        {"http_address", offsetof(struct agent_config, http_address), true},
	};
	size_t i;

	for (i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
		char **now = (char **)(void *)((char *)a->cfg + keys[i].off);
		char **want = (char **)(void *)((char *)cfg + keys[i].off);

		if (streq_null(*now, *want))
			continue;
		if (keys[i].show)
			cubeid_error(
			        "reload: %s changed (%s -> %s): a restart is needed to apply it; "
			        "keeping %s",
			        keys[i].key, *now != NULL ? *now : "(none)",
			        *want != NULL ? *want : "(none)", *now != NULL ? *now : "(none)");
		else
			cubeid_error(
			        "reload: %s changed: a restart is needed to apply it; keeping the "
			        "running one",
			        keys[i].key);
		free(*want);
		*want = *now != NULL ? strdup(*now) : NULL;
	}
}

/*
 * A reload reads and parses the config and the entries on a worker (a big
 * or hostile file must not stall the Workload API), then applies them on
 * the loop thread in reload_done(), keeping the old state on any error.
 * Token work (the JWT keys, picod) stays where it was.  A reload asked for
 * while one is in flight is folded into one more after it.
 */
struct reload_job {
	struct agent *a;
	bool bundles_changed;
	int rc; /* of load_config, then of load_entries; -1 if run() never ran */
	bool config_ok;
	struct agent_config *cfg;
	struct entry_set *entries;
	cubeid_ca *new_ca; /* a renewed CA to swap in (ca-renew.c) */
	pthread_t loop_thread;
};

static atomic_bool reload_busy;  /* a worker clears it if the loop is out of reach */
static const char *reload_again; /* why, when one more is due */

static void reload(struct agent *a, const char *why);

static void
reload_run(void *arg)
{
	struct reload_job *j = arg;

	/* the state directory is the running one: it needs a restart */
	(void)ca_renew_load(j->a, &j->new_ca);
	if ((j->rc = load_config(&j->a->flags, &j->cfg)) != CUBEID_OK)
		return;
	j->config_ok = true;
	j->rc = load_entries(j->cfg->entries, j->a->flags.dev, j->a->td, &j->entries);
}

static void
reload_done(void *arg)
{
	struct reload_job *j = arg;
	struct agent *a = j->a;
	const char *again;

	/* The pool runs done() after the loop stopped (a->stopping), or on the
	 * worker when it could not post back (out of memory): drop the result. */
	if (a->stopping || !pthread_equal(pthread_self(), j->loop_thread)) {
		if (!a->stopping)
			cubeid_error("reload: the result could not reach the loop; keeping the old "
			             "config and entries");
		entries_free(j->entries);
		config_free(j->cfg);
		cubeid_ca_free(j->new_ca);
		free(j);
		atomic_store(&reload_busy, false);
		return;
	}
	atomic_store(&reload_busy, false);
	if (j->new_ca != NULL) {
		ca_renew_apply(a, j->new_ca);
		j->new_ca = NULL;
	}
	if (!j->config_ok) {
		cubeid_error("reload: keeping the old config");
		goto out;
	}
	restart_bound_keep(a, j->cfg);
	if (j->rc != CUBEID_OK) {
		cubeid_error("reload: keeping the old config and entries");
		config_free(j->cfg);
		goto out;
	}
	config_free(a->cfg);
	a->cfg = j->cfg;
	cubeid_log_set_level((cubeid_log_level)a->cfg->log_level);
	attest_name_cache_clear();
	entries_free(a->entries);
	a->entries = j->entries;
	attest_tune(a);
	a->generation++;
	delivery_sync(a->delivery);
	svid_cache_flush_unused(a->cache);
	wapi_refresh_all(a->wapi);
	cubeid_notice("reloaded: %zu entries from files%s",
	              a->entries != NULL ? a->entries->n : (size_t)0,
	              a->dev_entries.n > 0 ? " + the --dev user" : "");
	j->bundles_changed = false; /* the streams have it already */
out:
	if (j->bundles_changed) {
		a->generation++;
		wapi_refresh_all(a->wapi);
	}
	free(j);
	entries_watch(a); /* the entries path may have changed */
	sd_notify(0, "READY=1\nSTATUS=serving");
	if ((again = reload_again) != NULL) {
		reload_again = NULL;
		reload(a, again);
	}
}

static void
reload(struct agent *a, const char *why)
{
	struct reload_job *j;

	if (atomic_load(&reload_busy)) {
		reload_again = why;
		return;
	}
	if ((j = calloc(1, sizeof(*j))) == NULL) {
		cubeid_error("%s: cannot reload: %s", why, cubeid_strerror(CUBEID_ERR_NOMEM));
		return;
	}
	j->a = a;
	j->rc = -1;
	j->loop_thread = pthread_self();
	cubeid_notice("%s: reloading the config and the entries", why);
	sd_notify(0, "RELOADING=1\nSTATUS=reloading");
	j->bundles_changed = reload_jwt_keys(a); /* whatever becomes of the config */
	picod_service_reload(a->picod);
	atomic_store(&reload_busy, true);
	if (worker_submit(a->pool, reload_run, reload_done, j) != CUBEID_OK) {
		reload_run(j); /* no worker to be had: as before, on this thread */
		reload_done(j);
	}
}

/* ------------------------------------------------ entries change */

/*
 * Entries reload when their file or directory changes, as on SIGHUP.  The
 * watch is on the directory (a file is usually replaced by rename, which a
 * watch on the file itself would lose), and a burst of events is folded
 * into one reload 300 ms after the last.
 */
static int inotify_fd = -1;
static int inotify_wd = -1;
static long reload_timer;

static long
entries_changed_timer(cubeid_loop *l, void *arg)
{
	(void)l;
	reload_timer = 0;
	reload((struct agent *)arg, "entries changed");
	return -1;
}

/* The name within the watched directory that matters: the entries file's
 * own name, or "" when the entries path is a directory (then any *.yaml or
 * *.yml file counts).  Other files there (logs, editor swap files) do not
 * cause a reload. */
static char watched_name[NAME_MAX + 1];

static bool
event_matters(const struct inotify_event *ev)
{
	size_t n;

	if (ev->len == 0 || (ev->mask & IN_IGNORED))
		return false;
	/* a Kubernetes ConfigMap volume changes every file at once by
	 * renaming its ..data symlink */
	if (strcmp(ev->name, "..data") == 0)
		return true;
	if (watched_name[0] != '\0')
		return strcmp(ev->name, watched_name) == 0;
	n = strlen(ev->name);
	if (ev->name[0] == '.')
		return false;
	return (n > 5 && strcmp(ev->name + n - 5, ".yaml") == 0) ||
	       (n > 4 && strcmp(ev->name + n - 4, ".yml") == 0);
}

static void
on_inotify(cubeid_loop *l, int fd, int events, void *arg)
{
	char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
	const struct inotify_event *ev;
	bool any = false;
	ssize_t len;
	char *p;

	(void)events;
	while ((len = read(fd, buf, sizeof(buf))) > 0) {
		for (p = buf; p < buf + len; p += sizeof(*ev) + ev->len) {
			ev = (const struct inotify_event *)p;
			if (event_matters(ev))
				any = true;
		}
	}
	if (!any || ((struct agent *)arg)->stopping)
		return;
	if (reload_timer > 0)
		loop_timer_del(l, reload_timer);
	reload_timer = loop_timer_add(l, 300, entries_changed_timer, arg);
}

static void
entries_watch(struct agent *a)
{
	const char *path = a->cfg->entries;
	char dir[PATH_MAX];
	struct stat st;
	char *slash;

	if (inotify_fd < 0) {
		if ((inotify_fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC)) < 0) {
			cubeid_warn("inotify: %s; entries reload on SIGHUP only", strerror(errno));
			return;
		}
		if (loop_watch(a->loop, inotify_fd, LOOP_READABLE, on_inotify, a) != CUBEID_OK) {
			close(inotify_fd);
			inotify_fd = -1;
			return;
		}
	}
	if (inotify_wd >= 0) {
		inotify_rm_watch(inotify_fd, inotify_wd);
		inotify_wd = -1;
	}
	if (path == NULL || *path == '\0' || strlen(path) >= sizeof(dir))
		return;
	snprintf(dir, sizeof(dir), "%s", path);
	watched_name[0] = '\0';
	if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
		const char *base = (slash = strrchr(dir, '/')) == NULL ? dir : slash + 1;

		if (strlen(base) >= sizeof(watched_name))
			return;
		memcpy(watched_name, base, strlen(base) + 1);
		if (slash == NULL) {
			snprintf(dir, sizeof(dir), ".");
		} else {
			if (slash == dir)
				dir[1] = '\0';
			else
				*slash = '\0';
		}
	}
	inotify_wd = inotify_add_watch(inotify_fd, dir,
	                               IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_CREATE |
	                                       IN_DELETE | IN_ONLYDIR);
	if (inotify_wd < 0)
		cubeid_warn("cannot watch %s for entry changes: %s; reload with SIGHUP", dir,
		            strerror(errno));
}

/* Re-read jwt.conf (after `cubeid ca jwt-rotate`) and the bundles; true
 * when the bundles changed. */
static bool
reload_jwt_keys(struct agent *a)
{
	cubeid_jwt_keys *k = NULL, *old;
	bool changed = false;
	int rc;

	if ((rc = cubeid_jwt_keys_load(a->cfg->state_dir, &k)) != CUBEID_OK) {
		cubeid_error("reload: keeping the JWT keys: %s", cubeid_strerror(rc));
		return false;
	}
	if (strcmp(cubeid_jwt_keys_trust_domain(k), a->td) != 0) {
		cubeid_error("reload: jwt.conf is for another trust domain; keeping the JWT keys");
		cubeid_jwt_keys_free(k);
		return false;
	}
	pthread_rwlock_wrlock(&a->jwt_lock);
	old = a->jwt_keys;
	a->jwt_keys = k;
	pthread_rwlock_unlock(&a->jwt_lock);
	cubeid_jwt_keys_free(old);
	cluster_kick(a); /* publish a new key before it signs */
	if ((rc = load_bundles(a, &changed)) != CUBEID_OK)
		cubeid_error("reload: cannot rebuild the bundles: %s", cubeid_strerror(rc));
	return changed;
}

/* The cluster's JWKS files (docs/cluster.md), for verifiers that read
 * files: PicoD pods, proxies. */
static void
write_jwks_files(struct agent *a)
{
	int rc;

	if (a->cfg->cluster.jwks_file != NULL && a->jwks != NULL &&
	    (rc = cubeid_atomic_write(a->cfg->cluster.jwks_file, a->jwks, a->jwks_len, 0644)) !=
	            CUBEID_OK)
		cubeid_error("cannot write %s: %s", a->cfg->cluster.jwks_file, cubeid_strerror(rc));
}

static void
agent_bundles_refresh(struct agent *a)
{
	bool changed = false;

	if (!a->stopping && load_bundles(a, &changed) == CUBEID_OK && changed) {
		cubeid_notice("the trust bundle changed; pushing it to the streams");
		a->generation++;
		wapi_refresh_all(a->wapi);
		write_jwks_files(a);
	}
}

/* The published JWT keys change with time (a prepublished key, a retired
 * one): republish the bundle to the streams when it does. */
static long
bundle_check(cubeid_loop *l, void *arg)
{
	struct agent *a = arg;
	bool changed = false;

	(void)l;
	if (!a->stopping && load_bundles(a, &changed) == CUBEID_OK && changed) {
		cubeid_notice("the trust bundle changed; pushing it to the streams");
		a->generation++;
		wapi_refresh_all(a->wapi);
		write_jwks_files(a);
		cluster_kick(a); /* our published keys may have changed */
	}
	return AGENT_BUNDLE_CHECK_MS;
}

static long
stop_now(cubeid_loop *l, void *arg)
{
	(void)arg;
	loop_stop(l);
	return -1;
}

static void
on_signal(cubeid_loop *l, int fd, int events, void *arg)
{
	struct agent *a = arg;
	struct signalfd_siginfo si;

	(void)events;
	while (read(fd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
		switch (si.ssi_signo) {
		case SIGHUP:
			if (!a->stopping)
				reload(a, "SIGHUP");
			break;
		case SIGTERM:
		case SIGINT:
			if (a->stopping)
				break;
			cubeid_notice("%s: shutting down",
			              si.ssi_signo == SIGTERM ? "SIGTERM" : "SIGINT");
			sd_notify(0, "STOPPING=1\nSTATUS=stopping");
			a->stopping = true;
			cubeid_run_stop_all(); /* a delivery's command: SIGTERM, then SIGKILL */
			if (a->listen_fd >= 0)
				loop_watch(l, a->listen_fd, 0, NULL, NULL);
			wapi_finish_all(a->wapi, GRPC_UNAVAILABLE, "agent is shutting down");
			/* let the trailers go out, then stop */
			if (loop_timer_add(l, 200, stop_now, a) <= 0)
				loop_stop(l);
			break;
		default:
			break;
		}
	}
}

static long
watchdog_tick(cubeid_loop *l, void *arg)
{
	long ms = (long)(intptr_t)arg;

	(void)l;
	sd_notify(0, "WATCHDOG=1");
	return ms;
}

/* ---------------------------------------------------------- main */

/*
 * --dev's own socket and state directory (under $CUBEID_STATE_DIR or
 * ./cubeid-dev-state) are used unless --socket and --state-dir say
 * otherwise, also over socket_path and state_dir in a config file: say so
 * when the file names others, rather than ignore them silently.
 */
static void
dev_overrides_note(const struct agent_flags *f, bool dev_state, bool dev_sock)
{
	struct agent_config *fc = NULL, *def = NULL;
	char *err = NULL;

	if (!f->dev || f->config_file == NULL || (!dev_state && !dev_sock))
		return;
	if (config_load(f->config_file, &fc, &err) != CUBEID_OK ||
	    config_default(&def) != CUBEID_OK)
		goto out;
	if (dev_sock && !streq_null(fc->socket_path, def->socket_path) &&
	    !streq_null(fc->socket_path, f->socket_path))
		cubeid_notice("--dev: serving on %s, not on socket_path %s from %s (give --socket "
		              "to choose)",
		              f->socket_path, fc->socket_path, f->config_file);
	if (dev_state && !streq_null(fc->state_dir, def->state_dir) &&
	    !streq_null(fc->state_dir, f->state_dir))
		cubeid_notice("--dev: the state is in %s, not in state_dir %s from %s (give "
		              "--state-dir to choose)",
		              f->state_dir, fc->state_dir, f->config_file);
out:
	free(err);
	config_free(fc);
	config_free(def);
}

static void
harden(void)
{
	struct rlimit rl = {0, 0};

	if (setrlimit(RLIMIT_CORE, &rl) != 0)
		cubeid_warn("setrlimit(RLIMIT_CORE): %s", strerror(errno));
	if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0)
		cubeid_warn("prctl(PR_SET_DUMPABLE): %s", strerror(errno));
}

static void
dev_banner(struct agent *a)
{
	char abs[PATH_MAX];
	const char *sock = a->cfg->socket_path;

	if (sock[0] != '/' && realpath(sock, abs) != NULL)
		sock = abs;
	fprintf(stderr,
	        "\n"
	        "==================================================================\n"
	        "  cubeid-agent: DEVELOPMENT MODE: not for production\n"
	        "  A throwaway SoftHSM2 token and root CA under %s,\n"
	        "  its PIN in a file next to it.  uid %lu is registered as\n"
	        "  spiffe://%s/unix/uid/%lu\n"
	        "==================================================================\n"
	        "\n"
	        "  export SPIFFE_ENDPOINT_SOCKET=unix://%s\n"
	        "\n",
	        a->cfg->state_dir, (unsigned long)a->uid, a->td, (unsigned long)a->uid, sock);
	printf("SPIFFE_ENDPOINT_SOCKET=unix://%s\n", sock);
	fflush(stdout);
}

/* Where the workload keys of X.509-SVIDs are generated (docs/tpm.md):
 * workload_token if configured; else the token itself if it can make
 * exportable session keys; else a throwaway SoftHSM2 token under
 * $RUNTIME_DIRECTORY (a tmpfs under systemd: nothing of it outlives the
 * boot, and its keys are session objects that never reach even that). */
static int
open_workload_token(struct agent *a, bool check)
{
	struct cubeid_token_opts to = {0};
	const char *rt = getenv("RUNTIME_DIRECTORY");
	const char *module = CUBEID_SOFTHSM_MODULE;
	char *dir = NULL, *uri = NULL, *pin = NULL, real[PATH_MAX];
	size_t n;
	int rc;

	if (a->cfg->workload_token != NULL) {
		if ((rc = cubeid_token_open(a->cfg->workload_token, &to, &a->wtok)) != CUBEID_OK) {
			cubeid_error("cannot open the workload token: %s", cubeid_strerror(rc));
			return rc;
		}
		if ((rc = agent_probe_exportable(a->wtok)) != CUBEID_OK) {
			cubeid_error("the workload token %s cannot make an exportable session key: "
			             "%s",
			             cubeid_token_label(a->wtok), cubeid_strerror(rc));
			return rc;
		}
		cubeid_notice("workload keys: in the workload token %s; the CA and JWT keys in "
		              "the token %s",
		              cubeid_token_label(a->wtok), cubeid_token_label(a->tok));
		return CUBEID_OK;
	}
	if ((rc = agent_probe_exportable(a->tok)) == CUBEID_OK) {
		cubeid_info("workload keys: in the token %s (it makes exportable session keys)",
		            cubeid_token_label(a->tok));
		return CUBEID_OK;
	}
	cubeid_notice("the token %s cannot make an exportable session key (%s), so workload "
	              "keys need another token",
	              cubeid_token_label(a->tok), cubeid_strerror(rc));
	if (check) { /* --check runs outside the unit: it cannot see RuntimeDirectory= */
		cubeid_notice("at start the agent needs $RUNTIME_DIRECTORY (systemd's "
		              "RuntimeDirectory=) for a throwaway SoftHSM2 workload token, or "
		              "workload_token: (docs/tpm.md)");
		return CUBEID_OK;
	}
	if (rt == NULL || rt[0] != '/') {
		cubeid_error(
		        "no token for workload keys: set workload_token: (or --workload-token) "
		        "to the PKCS#11 URI of a SoftHSM2 token, or run under systemd with "
		        "RuntimeDirectory= so that the agent makes a throwaway one there "
		        "(docs/tpm.md)");
		return CUBEID_ERR_CONFIG;
	}
	/* SoftHSM2 reads $SOFTHSM2_CONF at every C_Initialize: the token's own
	 * recovery would then find the throwaway token's directory. */
	if (module[0] == '\0' || realpath(module, real) == NULL ||
	    strcmp(real, cubeid_token_module_path(a->tok)) == 0) {
		cubeid_error(
		        "no token for workload keys: set workload_token: (or --workload-token) "
		        "to the PKCS#11 URI of a SoftHSM2 token (docs/tpm.md)");
		return CUBEID_ERR_CONFIG;
	}
	n = strcspn(rt, ":"); /* systemd separates several directories with ':' */
	if (asprintf(&dir, "%.*s/workload-token", (int)n, rt) < 0)
		return CUBEID_ERR_NOMEM;
	rc = cubeid_softhsm_token(module, dir, "cubeid-workload", &uri, &pin);
	if (rc == CUBEID_OK) {
		to.module_path = module;
		to.pin_file = pin;
		rc = cubeid_token_open(uri, &to, &a->wtok);
	}
	if (rc == CUBEID_OK && (rc = agent_probe_exportable(a->wtok)) != CUBEID_OK)
		cubeid_error("the throwaway token in %s cannot make an exportable session key",
		             dir);
	if (rc == CUBEID_OK)
		cubeid_notice("workload keys: in a throwaway SoftHSM2 token in %s; the CA and JWT "
		              "keys in the token %s",
		              dir, cubeid_token_label(a->tok));
	else
		cubeid_error("cannot make the throwaway workload token in %s: %s", dir,
		             cubeid_strerror(rc));
	free(dir);
	free(uri);
	free(pin);
	return rc;
}

/* Open the token the config names (or --dev's own).  check: only look,
 * for --check (no state directory is created). */
static int
open_token(struct agent *a, bool check)
{
	struct cubeid_token_opts to = {0};
	char *dev_uri = NULL, *dev_pin = NULL, *dir = NULL;
	const char *uri = a->cfg->token;
	int rc;

	if (!check && (rc = cubeid_state_dir_prepare(a->cfg->state_dir)) != CUBEID_OK) {
		cubeid_error("state directory %s: %s", a->cfg->state_dir, cubeid_strerror(rc));
		return rc;
	}
	if (uri == NULL && a->flags.dev) {
		if (asprintf(&dir, "%s/softhsm", a->cfg->state_dir) < 0)
			return CUBEID_ERR_NOMEM;
		rc = cubeid_softhsm_dev_token(dir, NULL, &dev_uri, &dev_pin);
		free(dir);
		if (rc != CUBEID_OK) {
			cubeid_error("--dev: cannot create the SoftHSM2 token: %s",
			             cubeid_strerror(rc));
			return rc;
		}
		uri = dev_uri;
		to.pin_file = dev_pin;
	} else if (uri == NULL) {
		uri = getenv(CUBEID_ENV_TOKEN);
	}
	if (uri == NULL) {
		cubeid_error("no token: give --token URI (or token: in the config), or use --dev");
		return CUBEID_ERR_CONFIG;
	}
	if (a->cfg->pin_file != NULL)
		to.pin_file = a->cfg->pin_file;
	to.module_path = a->cfg->module;
	rc = cubeid_token_open(uri, &to, &a->tok);
	free(dev_uri);
	free(dev_pin);
	if (rc != CUBEID_OK) {
		cubeid_error("cannot open the token: %s", cubeid_strerror(rc));
		return rc;
	}
	return open_workload_token(a, check);
}

/* Load the CA (--dev: make one on first start) and check it against the
 * config's trust domain. */
static int
open_ca(struct agent *a, bool check)
{
	int rc;

	if ((rc = agent_ca_validity_check(a->cfg->state_dir)) != CUBEID_OK)
		return rc;
	if (a->flags.dev && !check)
		rc = cubeid_ca_ensure(a->tok, a->cfg->state_dir, a->cfg->trust_domain, NULL,
		                      &a->ca);
	else
		rc = cubeid_ca_load(a->tok, a->cfg->state_dir, &a->ca);
	if (rc != CUBEID_OK) {
		cubeid_error(
		        "cannot load the CA in %s: %s%s", a->cfg->state_dir, cubeid_strerror(rc),
		        rc == CUBEID_ERR_NOT_FOUND ? " (create one with 'cubeid ca init')" : "");
		return rc;
	}
	a->td = cubeid_ca_trust_domain(a->ca);
	if (strcmp(a->td, a->cfg->trust_domain) != 0) {
		if (a->flags.trust_domain != NULL || a->flags.config_file != NULL) {
			cubeid_error("the CA in %s is for trust domain %s, not %s",
			             a->cfg->state_dir, a->td, a->cfg->trust_domain);
			return CUBEID_ERR_CA;
		}
		replace_str(&a->cfg->trust_domain, a->td);
	}
	return CUBEID_OK;
}

static int
open_token_and_ca(struct agent *a)
{
	int rc;

	if ((rc = open_token(a, false)) != CUBEID_OK || (rc = open_ca(a, false)) != CUBEID_OK)
		return rc;
	rc = cubeid_jwt_keys_load(a->cfg->state_dir, &a->jwt_keys);
	if (rc == CUBEID_ERR_NOT_FOUND)
		rc = cubeid_jwt_keys_init(a->tok, a->cfg->state_dir, a->td, NULL, &a->jwt_keys);
	if (rc != CUBEID_OK) {
		cubeid_error("cannot load the JWT signing keys: %s", cubeid_strerror(rc));
		return rc;
	}
	if ((rc = load_bundles(a, NULL)) != CUBEID_OK)
		cubeid_error("cannot build the bundles: %s", cubeid_strerror(rc));
	return rc;
}

/*
 * --check: what start checks, without serving: the HTTP address, the PIN
 * file, the entries (at least one), the token (the module loads, the token
 * is there, the PIN logs in), the CA (valid now, its key on the token, of
 * the configured trust domain) and the JWT keys.  Every failure is one
 * error line; 0 when all pass.  --dev's token and CA are made at start, so
 * with --dev and no token only the files are checked.
 */
static int
check_config(struct agent *a)
{
	struct entry_set *e = NULL;
	struct sockaddr_storage ss;
	socklen_t sl;
	const char *why;
	cubeid_jwt_keys *jk = NULL;
	size_t n = 0;
	int rc, bad = 0;

	if (a->cfg->http_address != NULL &&
	    cubeid_addr_parse(a->cfg->http_address, &ss, &sl, &why) != CUBEID_OK) {
		cubeid_error("http_address '%s': %s", a->cfg->http_address, why);
		bad++;
	}
	if (pin_file_check(a->cfg) != CUBEID_OK)
		bad++;
	if (load_entries(a->cfg->entries, true, a->cfg->trust_domain, &e) != CUBEID_OK) {
		bad++;
	} else if ((n = e != NULL ? e->n : 0) == 0 && !a->flags.dev) {
		cubeid_error("no registration entries in %s: the agent would serve no workload",
		             a->cfg->entries != NULL ? a->cfg->entries : "(no entries path)");
		bad++;
	}
	entries_free(e);
	if (a->flags.offline) {
		/* the files only */
	} else if (a->flags.dev && a->cfg->token == NULL && getenv(CUBEID_ENV_TOKEN) == NULL) {
		cubeid_notice("--dev: the token and the CA are made at start; not checked");
	} else if (open_token(a, true) != CUBEID_OK) {
		bad++;
	} else if (open_ca(a, true) != CUBEID_OK) {
		bad++;
	} else {
		rc = cubeid_jwt_keys_load(a->cfg->state_dir, &jk);
		if (rc != CUBEID_OK && rc != CUBEID_ERR_NOT_FOUND) {
			cubeid_error("cannot load the JWT signing keys in %s: %s",
			             a->cfg->state_dir, cubeid_strerror(rc));
			bad++;
		}
		cubeid_jwt_keys_free(jk);
	}
	if (bad > 0)
		return CUBEID_ERR_CONFIG;
	printf("%s: ok (%zu entries from %s%s%s)\n",
	       a->flags.config_file != NULL ? a->flags.config_file : "defaults", n,
	       a->cfg->entries != NULL ? a->cfg->entries : "-", a->tok != NULL ? "; token " : "",
	       a->tok != NULL ? cubeid_token_label(a->tok) : "");
	return CUBEID_OK;
}

static void
agent_cleanup(struct agent *a)
{
	agent_http_stop(a);
	grpc_server_free(a->grpc);
	svid_cache_shutdown(a->cache);
	a->stopping = true;    /* a reload finishing now is dropped, not applied */
	cubeid_run_stop_all(); /* the workers may wait for a delivery's command */
	cluster_stop(a);       /* the store's watch thread posts to the loop */
	worker_pool_free(a->pool);
	audit_flush(); /* the cached fetches counted since the last summary */
	delivery_free(a->delivery);
	picod_service_free(a->picod);
	wapi_free(a->wapi);
	a->wapi = NULL;
	svid_cache_free(a->cache);
	if (a->listen_fd >= 0) {
		close(a->listen_fd);
		if (!a->socket_activated && a->cfg != NULL)
			unlink_own_socket(a->cfg->socket_path, a->sock_dev, a->sock_ino);
	}
	if (sig_fd >= 0)
		close(sig_fd);
	loop_free(a->loop);
	cluster_free(a);
	entries_free(a->entries);
	dev_entries_clear(&a->dev_entries);
	free(a->bundle_der);
	free(a->jwks);
	cubeid_jwt_bundle_free(a->jwt_bundle);
	cubeid_jwt_keys_free(a->jwt_keys);
	cubeid_ca_free(a->ca);
	ca_renew_free(a);
	cubeid_token_free(a->wtok);
	cubeid_token_free(a->tok);
	config_free(a->cfg);
}

/* What the services ask of the daemon (agent/daemon.h). */
static const struct agent_ops main_ops = {
        .match = agent_match,
        .bundles_refresh = agent_bundles_refresh,
        .status_json = agent_status_json,
};

int
main(int argc, char **argv)
{
	struct agent a = {0};
	struct agent_flags *f = &a.flags;
	bool check = false;
	char *dev_state = NULL, *dev_sock = NULL;
	const char *env;
	uint64_t wd_usec = 0;
	sigset_t mask;
	int c, rc, n, status = EXIT_FAILURE;
	struct option long_opts[AGENT_OPTS_MAX];
	char optstring[2 * AGENT_OPTS_MAX + 1];

	a.ops = &main_ops;
	a.listen_fd = -1;
	f->log_level = -1;
	pthread_rwlock_init(&a.jwt_lock, NULL);
	harden();
	if (getenv("JOURNAL_STREAM") != NULL)
		cubeid_log_set_journal(1);
	agent_doc_getopt(long_opts, optstring);
	while ((c = getopt_long(argc, argv, optstring, long_opts, NULL)) != -1) {
		switch (c) {
		case 'c':
			f->config_file = optarg;
			break;
		case 'C':
			check = true;
			break;
		case 'O':
			f->offline = true;
			break;
		case 's':
			f->socket_path = optarg;
			break;
		case 'S':
			f->state_dir = optarg;
			break;
		case 't':
			f->token = optarg;
			break;
		case 'W':
			f->workload_token = optarg;
			break;
		case 'p':
			f->pin_file = optarg;
			break;
		case 'd':
			f->trust_domain = optarg;
			break;
		case 'e':
			f->entries = optarg;
			break;
		case 'H':
			f->http_address = optarg;
			break;
		case 'X':
			if (parse_ttl("--x509-svid-ttl", optarg, &f->x509_svid_ttl) != 0)
				return EXIT_USAGE;
			break;
		case 'J':
			if (parse_ttl("--jwt-svid-ttl", optarg, &f->jwt_svid_ttl) != 0)
				return EXIT_USAGE;
			break;
		case 'l':
			if ((f->log_level = cubeid_log_level_from_name(optarg)) < 0) {
				fprintf(stderr, "cubeid-agent: unknown log level '%s'\n", optarg);
				return EXIT_USAGE;
			}
			break;
		case 'D':
			f->dev = true;
			break;
		case 'h':
			usage(stdout);
			return EXIT_SUCCESS;
		case 'V':
			printf("cubeid-agent %s\n", PACKAGE_VERSION);
			return EXIT_SUCCESS;
		case 'M':
			if (agent_doc_man(stdout, optarg) != 0) {
				fprintf(stderr, "cubeid-agent: no man page '%s'\n", optarg);
				return EXIT_USAGE;
			}
			return EXIT_SUCCESS;
		default:
			usage(stderr);
			return EXIT_USAGE;
		}
	}
	if (f->offline && !check) {
		fprintf(stderr, "cubeid-agent: --offline goes with --check\n");
		usage(stderr);
		return EXIT_USAGE;
	}
	if (optind < argc) {
		fprintf(stderr, "cubeid-agent: unexpected argument '%s'\n", argv[optind]);
		usage(stderr);
		return EXIT_USAGE;
	}
	if (f->dev && f->state_dir == NULL) {
		env = getenv(CUBEID_ENV_STATE_DIR);
		dev_state = strdup(env != NULL && env[0] != '\0' ? env : AGENT_DEV_STATE_DIR);
		f->state_dir = dev_state;
	}
	if (f->dev && f->socket_path == NULL && f->state_dir != NULL) {
		if (asprintf(&dev_sock, "%s/agent.sock", f->state_dir) < 0)
			dev_sock = NULL;
		f->socket_path = dev_sock;
	}
	if (load_config(f, &a.cfg) != CUBEID_OK)
		goto out;
	cubeid_log_set_level((cubeid_log_level)a.cfg->log_level);
	dev_overrides_note(f, dev_state != NULL, dev_sock != NULL);
	if (check) {
		if (check_config(&a) == CUBEID_OK)
			status = EXIT_SUCCESS;
		goto out;
	}
	a.uid = getuid();
	a.started = time(NULL);
	a.attest.proc_root = "/proc";
	a.attest.kubelet_pods_url = a.cfg->kubelet_pods_url;
	a.attest.pod_info_file = a.cfg->pod_info_file;
	a.attest.sha256_max_bytes = a.cfg->attest_sha256_max;

	/* signals first, so that a SIGTERM during start-up is not lost */
	sigemptyset(&mask);
	sigaddset(&mask, SIGHUP);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	signal(SIGPIPE, SIG_IGN);
	if (pthread_sigmask(SIG_BLOCK, &mask, NULL) != 0 ||
	    (sig_fd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC)) < 0) {
		cubeid_error("signalfd: %s", strerror(errno));
		goto out;
	}
	if (pin_file_check(a.cfg) != CUBEID_OK || open_token_and_ca(&a) != CUBEID_OK)
		goto out;
	if (load_entries(a.cfg->entries, true, a.td, &a.entries) != CUBEID_OK)
		goto out;
	if (f->dev && dev_entry_add(&a) != CUBEID_OK)
		goto out;
	attest_tune(&a);

	if ((rc = loop_new(&a.loop)) != CUBEID_OK ||
	    (rc = worker_pool_new(a.loop, AGENT_WORKERS, &a.pool)) != CUBEID_OK ||
	    (rc = svid_cache_new(&a, &a.cache)) != CUBEID_OK ||
	    (rc = wapi_new(&a, &a.wapi)) != CUBEID_OK ||
	    (rc = delivery_new(&a, &a.delivery)) != CUBEID_OK ||
	    (rc = picod_service_new(&a, &a.picod)) != CUBEID_OK ||
	    (rc = grpc_server_new(a.loop, wapi_methods, wapi_n_methods, &a.cfg->grpc, &a,
	                          &a.grpc)) != CUBEID_OK) {
		cubeid_error("cannot start: %s", cubeid_strerror(rc));
		goto out;
	}
	if ((rc = loop_watch(a.loop, sig_fd, LOOP_READABLE, on_signal, &a)) != CUBEID_OK)
		goto out;
	n = sd_listen_fds(1);
	if (n > 1) {
		cubeid_error("socket activation passed %d sockets; expected one", n);
		goto out;
	} else if (n == 1) {
		a.listen_fd = SD_LISTEN_FDS_START;
		a.socket_activated = true;
		(void)fcntl(a.listen_fd, F_SETFL, fcntl(a.listen_fd, F_GETFL) | O_NONBLOCK);
		cubeid_notice("serving on the socket systemd passed (fd %d)", a.listen_fd);
	} else if (listen_socket(a.cfg->socket_path, &a.listen_fd, &a.sock_dev, &a.sock_ino) !=
	           CUBEID_OK) {
		goto out;
	}
	if ((rc = grpc_server_listen_fd(a.grpc, a.listen_fd)) != CUBEID_OK) {
		cubeid_error("cannot serve: %s", cubeid_strerror(rc));
		goto out;
	}
	if (agent_http_start(&a) != CUBEID_OK)
		goto out;
	loop_timer_add(a.loop, AGENT_BUNDLE_CHECK_MS, bundle_check, &a);
	write_jwks_files(&a);
	if ((rc = cluster_start(&a)) != CUBEID_OK) {
		cubeid_error("cannot start cluster trust: %s", cubeid_strerror(rc));
		goto out;
	}
	entries_watch(&a);
	delivery_sync(a.delivery);
	if (sd_watchdog_enabled(0, &wd_usec) > 0 && wd_usec > 0) {
		long ms = (long)(wd_usec / 2000);

		if (ms < 1)
			ms = 1;
		loop_timer_add(a.loop, ms, watchdog_tick, (void *)(intptr_t)ms);
	}
	cubeid_notice("cubeid-agent %s serving trust domain %s on %s (token %s, %zu entries%s)",
	              PACKAGE_VERSION, a.td,
	              a.socket_activated ? "the activated socket" : a.cfg->socket_path,
	              cubeid_token_label(a.tok), a.entries != NULL ? a.entries->n : (size_t)0,
	              f->dev ? " + the --dev user" : "");
	if (f->dev)
		dev_banner(&a);
	sd_notifyf(0, "READY=1\nSTATUS=serving trust domain %s\nMAINPID=%lu", a.td,
	           (unsigned long)getpid());
	loop_run(a.loop);
	cubeid_notice("stopped");
	status = EXIT_SUCCESS;
out:
	agent_cleanup(&a);
	free(dev_state);
	free(dev_sock);
	return status;
}
