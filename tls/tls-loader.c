/*
 * cubeid_tls: the current identity of a TLS endpoint and how it is kept
 * current.  File mode watches the directories of the three files with
 * inotify (AtomicWriter swaps a "..data" symlink, so the files themselves
 * are never written in place) and checks the files' identity periodically;
 * a change builds a whole new state, and only a state that passed every
 * check replaces the current one.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <time.h>
#include <unistd.h>

#include <cubeid/log.h>

#include "tls/tls-internal.h"

/* Build a state from the files and install it or the error.  1 = swapped. */
static int
reload_files_locked(cubeid_tls *tls)
{
	struct tls_state *s = NULL;
	const char *why = NULL;
	int rc;

	/* remember what we tried (as it was before reading), so that the
	 * same broken files are not retried and logged at every check, while
	 * a file replaced during the attempt is */
	rc = tls_state_from_files(&tls->files, &s, &why, tls->tried);
	/* A writer that swaps whole sets (AtomicWriter) can swap between our
	 * reading the certificate and reading the key: both files are then
	 * good, only from different sets.  Read again shortly rather than
	 * keep the old pair until the next change (which, with short TTLs,
	 * can come after the old certificate has expired). */
	for (int i = 0; rc == CUBEID_ERR_KEY_MISMATCH && i < 3; i++) {
		const struct timespec ts = {0, 20 * 1000 * 1000};
		nanosleep(&ts, NULL);
		rc = tls_state_from_files(&tls->files, &s, &why, tls->tried);
	}
	if (rc != CUBEID_OK) {
		tls_install(tls, NULL, rc, why);
		return rc;
	}
	tls_install(tls, s, CUBEID_OK, NULL);
	return 1;
}

static void
drain_inotify(cubeid_tls *tls)
{
	char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));

	if (tls->inotify_fd < 0)
		return;
	while (read(tls->inotify_fd, buf, sizeof(buf)) > 0)
		;
}

static bool
files_changed(cubeid_tls *tls)
{
	struct tls_file_id now;

	tls_file_id_get(tls->files.cert_file, &now);
	if (!tls_file_id_equal(&now, &tls->tried[TLS_F_CERT]))
		return true;
	if (tls->files.token == NULL) {
		tls_file_id_get(tls->files.key_file, &now);
		if (!tls_file_id_equal(&now, &tls->tried[TLS_F_KEY]))
			return true;
	}
	tls_file_id_get(tls->files.ca_file, &now);
	return !tls_file_id_equal(&now, &tls->tried[TLS_F_CA]);
}

int
cubeid_tls_reload_check(cubeid_tls *tls)
{
	int rc = 0;

	if (tls == NULL)
		return CUBEID_ERR_INVALID_ARG;
	if (tls->socket_mode) {
		pthread_mutex_lock(&tls->lock);
		rc = tls->err;
		pthread_mutex_unlock(&tls->lock);
		return rc;
	}
	pthread_mutex_lock(&tls->reload_lock);
	drain_inotify(tls);
	if (files_changed(tls))
		rc = reload_files_locked(tls);
	pthread_mutex_unlock(&tls->reload_lock);
	return rc;
}

int
cubeid_tls_reload(cubeid_tls *tls)
{
	int rc;

	if (tls == NULL)
		return CUBEID_ERR_INVALID_ARG;
	if (tls->socket_mode)
		return CUBEID_ERR_UNSUPPORTED;
	pthread_mutex_lock(&tls->reload_lock);
	drain_inotify(tls);
	rc = reload_files_locked(tls);
	pthread_mutex_unlock(&tls->reload_lock);
	return rc;
}

int
cubeid_tls_fd(const cubeid_tls *tls)
{
	return tls != NULL ? tls->inotify_fd : -1;
}

int
cubeid_tls_last_error(cubeid_tls *tls, const char **why)
{
	int rc;

	if (why != NULL)
		*why = "invalid argument";
	if (tls == NULL)
		return CUBEID_ERR_INVALID_ARG;
	pthread_mutex_lock(&tls->lock);
	rc = tls->err;
	if (why != NULL)
		*why = tls->why;
	pthread_mutex_unlock(&tls->lock);
	return rc;
}

int
cubeid_tls_own_id(cubeid_tls *tls, cubeid_spiffe_id **out)
{
	struct tls_state *s;

	if (out != NULL)
		*out = NULL;
	if (tls == NULL || out == NULL)
		return CUBEID_ERR_INVALID_ARG;
	if ((s = tls_current(tls)) == NULL)
		return CUBEID_ERR_UNAVAILABLE;
	*out = cubeid_spiffe_id_dup(s->id);
	tls_state_unref(s);
	return *out != NULL ? CUBEID_OK : CUBEID_ERR_NOMEM;
}

int
cubeid_tls_own_cert(cubeid_tls *tls, X509 **out)
{
	struct tls_state *s;

	if (out != NULL)
		*out = NULL;
	if (tls == NULL || out == NULL)
		return CUBEID_ERR_INVALID_ARG;
	if ((s = tls_current(tls)) == NULL)
		return CUBEID_ERR_UNAVAILABLE;
	if (X509_up_ref(s->leaf) == 1)
		*out = s->leaf;
	tls_state_unref(s);
	return *out != NULL ? CUBEID_OK : CUBEID_ERR_NOMEM;
}

/* ---- watching files ---------------------------------------------------- */

/* Watch the directory holding path (once per directory). */
static int
watch_dir_of(cubeid_tls *tls, const char *path)
{
	char *copy = strdup(path), *dir;
	int wd;

	if (copy == NULL)
		return CUBEID_ERR_NOMEM;
	dir = dirname(copy);
	wd = inotify_add_watch(tls->inotify_fd, dir,
	                       IN_CREATE | IN_MOVED_TO | IN_MOVED_FROM | IN_CLOSE_WRITE |
	                               IN_DELETE | IN_ATTRIB | IN_DELETE_SELF | IN_MOVE_SELF);
	if (wd < 0)
		cubeid_warn("tls: cannot watch %s (%s); relying on the periodic check", dir,
		            strerror(errno));
	free(copy);
	return CUBEID_OK;
}

static int64_t
mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void *
file_thread(void *arg)
{
	cubeid_tls *tls = arg;
	int64_t next = mono_ms() + tls->check_interval_ms;

	while (!__atomic_load_n(&tls->stop, __ATOMIC_ACQUIRE)) {
		struct pollfd p[2] = {{.fd = tls->inotify_fd, .events = POLLIN},
		                      {.fd = tls->wake[0], .events = POLLIN}};
		int64_t wait = tls->check_interval_ms > 0 ? next - mono_ms() : -1;
		int n;

		if (wait < 0 && tls->check_interval_ms > 0)
			wait = 0;
		n = poll(p, 2, wait > INT32_MAX ? INT32_MAX : (int)wait);
		if (n < 0 && errno != EINTR)
			break;
		if (p[1].revents != 0)
			break;
		if (n > 0 && p[0].revents != 0) {
			/* let a burst of events (a symlink swap is several)
			 * settle before reading the files */
			poll(NULL, 0, 20);
			cubeid_tls_reload_check(tls);
		} else if (tls->check_interval_ms > 0 && mono_ms() >= next) {
			cubeid_tls_reload_check(tls);
			next = mono_ms() + tls->check_interval_ms;
		}
	}
	return NULL;
}

/* ---- life cycle ------------------------------------------------------- */

static char *
dup_opt(const char *s, bool *bad)
{
	char *d;

	if (s == NULL)
		return NULL;
	if ((d = strdup(s)) == NULL)
		*bad = true;
	return d;
}

static void
tls_destroy(cubeid_tls *tls)
{
	size_t i;

	if (tls->thread_started) {
		__atomic_store_n(&tls->stop, 1, __ATOMIC_RELEASE);
		if (tls->wake[1] >= 0 && write(tls->wake[1], "x", 1) < 0)
			cubeid_debug("tls: wake-up write failed");
		pthread_join(tls->thread, NULL);
	}
	if (tls->inotify_fd >= 0)
		close(tls->inotify_fd);
	if (tls->wake[0] >= 0)
		close(tls->wake[0]);
	if (tls->wake[1] >= 0)
		close(tls->wake[1]);
	tls_state_unref(tls->cur);
	free(tls->files.cert_file);
	free(tls->files.key_file);
	free(tls->files.ca_file);
	free(tls->files.trust_domain);
	cubeid_token_free(tls->files.token);
	free(tls->socket);
	free(tls->spiffe_id);
	for (i = 0; i < tls->n_allow; i++)
		free(tls->allow[i]);
	free(tls->allow);
	pthread_mutex_destroy(&tls->lock);
	pthread_mutex_destroy(&tls->reload_lock);
	pthread_cond_destroy(&tls->first_cond);
	free(tls);
}

void
cubeid_tls_free(cubeid_tls *tls)
{
	if (tls == NULL || __atomic_sub_fetch(&tls->refs, 1, __ATOMIC_ACQ_REL) != 0)
		return;
	tls_destroy(tls);
}

static bool
is_pkcs11_uri(const char *s)
{
	return s != NULL && strncmp(s, "pkcs11:", 7) == 0;
}

static int
open_token(cubeid_tls *tls, const struct cubeid_tls_config *cfg)
{
	struct cubeid_token_opts o = {0};
	int rc;

	o.pin_file = cfg->pin_file;
	o.module_path = cfg->module_path;
	o.pool_size = 4;
	if ((rc = cubeid_token_open(cfg->key_file, &o, &tls->files.token)) != CUBEID_OK)
		cubeid_error("tls: cannot open the token of the key %s: %s", cfg->key_file,
		             cubeid_strerror(rc));
	return rc;
}

int
cubeid_tls_new(const struct cubeid_tls_config *cfg, cubeid_tls **out)
{
	cubeid_tls *tls = NULL;
	bool bad = false;
	const char *why;
	size_t i;
	int rc;

	if (out != NULL)
		*out = NULL;
	if (cfg == NULL || out == NULL)
		return CUBEID_ERR_INVALID_ARG;
	if (cfg->socket == NULL &&
	    (cfg->cert_file == NULL || cfg->key_file == NULL || cfg->ca_file == NULL)) {
		cubeid_error(
		        "tls: give a certificate, a key and a CA file, or a Workload API socket");
		return CUBEID_ERR_CONFIG;
	}
	if (cfg->socket != NULL &&
	    (cfg->cert_file != NULL || cfg->key_file != NULL || cfg->ca_file != NULL)) {
		cubeid_error("tls: a Workload API socket and files are exclusive");
		return CUBEID_ERR_CONFIG;
	}
	if (cfg->n_allow == 0 || cfg->allow == NULL) {
		cubeid_error("tls: the allow-list is empty: no peer could connect");
		return CUBEID_ERR_CONFIG;
	}
	if (cfg->n_allow > CUBEID_TLS_ALLOW_MAX) {
		cubeid_error("tls: more than %d allow-list entries", CUBEID_TLS_ALLOW_MAX);
		return CUBEID_ERR_CONFIG;
	}
	for (i = 0; i < cfg->n_allow; i++)
		if (cubeid_tls_allow_validate(cfg->allow[i], &why) != CUBEID_OK) {
			cubeid_error("tls: bad allow-list entry \"%s\": %s",
			             cfg->allow[i] != NULL ? cfg->allow[i] : "(null)", why);
			return CUBEID_ERR_CONFIG;
		}
	if (cfg->trust_domain != NULL &&
	    cubeid_trust_domain_validate(cfg->trust_domain, strlen(cfg->trust_domain), NULL) !=
	            CUBEID_OK) {
		cubeid_error("tls: bad trust domain \"%s\"", cfg->trust_domain);
		return CUBEID_ERR_CONFIG;
	}
	if ((tls = calloc(1, sizeof(*tls))) == NULL)
		return CUBEID_ERR_NOMEM;
	tls->refs = 1;
	tls->inotify_fd = tls->wake[0] = tls->wake[1] = -1;
	pthread_mutex_init(&tls->lock, NULL);
	pthread_mutex_init(&tls->reload_lock, NULL);
	pthread_cond_init(&tls->first_cond, NULL);
	tls->socket_mode = cfg->socket != NULL;
	tls->files.cert_file = dup_opt(cfg->cert_file, &bad);
	tls->files.key_file = dup_opt(cfg->key_file, &bad);
	tls->files.ca_file = dup_opt(cfg->ca_file, &bad);
	tls->files.trust_domain = dup_opt(cfg->trust_domain, &bad);
	tls->socket = dup_opt(cfg->socket, &bad);
	tls->spiffe_id = dup_opt(cfg->spiffe_id, &bad);
	tls->timeout_ms = cfg->timeout_ms > 0 ? cfg->timeout_ms : 30000;
	tls->tls12 = cfg->tls12;
	tls->check_interval_ms = cfg->check_interval_ms == 0 ? CUBEID_TLS_CHECK_INTERVAL_DEFAULT
	                                                     : cfg->check_interval_ms;
	tls->on_reload = cfg->on_reload;
	tls->on_reload_arg = cfg->on_reload_arg;
	if ((tls->allow = calloc(cfg->n_allow, sizeof(char *))) == NULL)
		bad = true;
	for (i = 0; !bad && i < cfg->n_allow; i++, tls->n_allow++)
		if ((tls->allow[i] = strdup(cfg->allow[i])) == NULL)
			bad = true;
	if (bad) {
		rc = CUBEID_ERR_NOMEM;
		goto fail;
	}

	if (tls->socket_mode) {
		if ((rc = tls_socket_start(tls)) != CUBEID_OK)
			goto fail;
		*out = tls;
		return CUBEID_OK;
	}

	if (is_pkcs11_uri(cfg->key_file) && (rc = open_token(tls, cfg)) != CUBEID_OK)
		goto fail;
	/* watch first, then load: a change in between is not lost */
	if (cfg->no_inotify) {
		cubeid_debug("tls: inotify off; the periodic check alone notices changes");
	} else if ((tls->inotify_fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC)) < 0) {
		cubeid_warn("tls: inotify: %s; relying on the periodic check", strerror(errno));
	} else {
		watch_dir_of(tls, tls->files.cert_file);
		if (tls->files.token == NULL)
			watch_dir_of(tls, tls->files.key_file);
		watch_dir_of(tls, tls->files.ca_file);
	}
	pthread_mutex_lock(&tls->reload_lock);
	rc = reload_files_locked(tls);
	pthread_mutex_unlock(&tls->reload_lock);
	if (rc < 0)
		goto fail;
	if (!cfg->no_thread) {
		if (pipe2(tls->wake, O_CLOEXEC) != 0) {
			rc = CUBEID_ERR_IO;
			goto fail;
		}
		if (pthread_create(&tls->thread, NULL, file_thread, tls) != 0) {
			rc = CUBEID_ERR_NOMEM;
			goto fail;
		}
		tls->thread_started = true;
	}
	cubeid_info("tls: identity %s from %s", cubeid_spiffe_id_string(tls->cur->id),
	            tls->files.cert_file);
	*out = tls;
	return CUBEID_OK;
fail:
	tls_destroy(tls);
	return rc;
}
