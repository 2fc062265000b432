/*
 * Workload attestation from kernel facts: SO_PEERCRED (and the peer's
 * pidfd), then /proc/PID read through one directory fd, then the cgroup
 * (systemd unit, pod UID, container ID), then pod metadata (attest-k8s.c).
 *
 * Pid reuse: the pid from SO_PEERCRED may belong to another process by the
 * time /proc is read.  We hold a pidfd for the peer (SO_PEERPIDFD, else
 * pidfd_open() right after SO_PEERCRED), open /proc/PID as a directory fd
 * (which stays bound to that process: reads fail once it is gone), check
 * the pidfd's process is still alive after that open, and compare the start
 * time in /proc/PID/stat before and after everything else is read.  Any
 * mismatch fails closed with CUBEID_ERR_PEER_CHANGED.
 *
 * Exec after connect: the pid may also run another program than the one
 * that connected.  unix:path and unix:sha256 of a connection's peer need
 * the peer to hold the connection close-on-exec (attest-conn.c).
 */
#include "config.h"

#include "agent/attest-internal.h"

#include <cubeid/log.h>

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#ifndef SO_PEERPIDFD
#define SO_PEERPIDFD 77
#endif

#define NAME_BUF_MAX (1024 * 1024) /* getpwuid_r/getgrgid_r buffer ceiling */

/* ------------------------------------------------------------ helpers */

/* Read the whole of dirfd/name (at most max bytes, else TOO_LARGE) into a
 * new NUL-terminated buffer.  /proc files report size 0, so read to EOF. */
static int
read_at(int dirfd, const char *name, size_t max, char **out, size_t *out_len)
{
	char *buf = NULL, *nb;
	size_t len = 0, cap = 0;
	int fd, r = CUBEID_OK;

	*out = NULL;
	if (out_len != NULL)
		*out_len = 0;
	fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0)
		return errno == ENOENT || errno == ESRCH ? CUBEID_ERR_NOT_FOUND : CUBEID_ERR_IO;
	for (;;) {
		ssize_t n;

		if (len + 1 >= cap) {
			size_t ncap = cap == 0 ? 4096 : cap * 2;
			if (ncap > max + 1)
				ncap = max + 1;
			if (len + 1 >= ncap) {
				r = CUBEID_ERR_TOO_LARGE;
				goto out;
			}
			if ((nb = realloc(buf, ncap)) == NULL) {
				r = CUBEID_ERR_NOMEM;
				goto out;
			}
			buf = nb;
			cap = ncap;
		}
		n = read(fd, buf + len, cap - len - 1);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			r = errno == ESRCH ? CUBEID_ERR_PEER_CHANGED : CUBEID_ERR_IO;
			goto out;
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	if (buf == NULL && (buf = malloc(1)) == NULL) {
		r = CUBEID_ERR_NOMEM;
		goto out;
	}
	buf[len] = '\0';
	*out = buf;
	buf = NULL;
	if (out_len != NULL)
		*out_len = len;
out:
	free(buf);
	close(fd);
	return r;
}

/* Field 22 (starttime) of /proc/PID/stat; comm (field 2) may hold spaces
 * and parentheses, so count from the last ')'. */
static int
read_starttime(int dirfd, unsigned long long *start)
{
	char *buf = NULL, *p, *end;
	int r, field;

	*start = 0;
	if ((r = read_at(dirfd, "stat", ATTEST_STAT_MAX, &buf, NULL)) != CUBEID_OK)
		return r == CUBEID_ERR_NOT_FOUND ? CUBEID_ERR_PEER_CHANGED : r;
	r = CUBEID_ERR_PARSE;
	if ((p = strrchr(buf, ')')) == NULL)
		goto out;
	p++;
	/* after ')' comes field 3 (state) */
	for (field = 3; field < 22; field++) {
		while (*p == ' ')
			p++;
		if (*p == '\0')
			goto out;
		while (*p != ' ' && *p != '\0')
			p++;
	}
	while (*p == ' ')
		p++;
	if (!isdigit((unsigned char)*p))
		goto out;
	errno = 0;
	*start = strtoull(p, &end, 10);
	if (errno != 0 || (*end != ' ' && *end != '\n' && *end != '\0'))
		goto out;
	r = CUBEID_OK;
out:
	free(buf);
	return r;
}

/* The value of "Key:" in /proc/PID/status (points into buf), or NULL. */
static char *
status_field(char *buf, const char *key)
{
	size_t klen = strlen(key);
	char *p = buf;

	while (p != NULL && *p != '\0') {
		if (strncmp(p, key, klen) == 0 && p[klen] == ':') {
			p += klen + 1;
			while (*p == '\t' || *p == ' ')
				p++;
			return p;
		}
		p = strchr(p, '\n');
		if (p != NULL)
			p++;
	}
	return NULL;
}

/* The n-th (0-based) unsigned number of a whitespace-separated line. */
static int
nth_number(const char *line, int n, unsigned long *v)
{
	const char *p = line;
	char *end;
	int i;

	for (i = 0;; i++) {
		while (*p == ' ' || *p == '\t')
			p++;
		if (!isdigit((unsigned char)*p))
			return CUBEID_ERR_PARSE;
		errno = 0;
		*v = strtoul(p, &end, 10);
		if (errno != 0 || *v > UINT32_MAX)
			return CUBEID_ERR_PARSE;
		if (i == n)
			return CUBEID_OK;
		p = end;
	}
}

static int
add_num(struct selector_set *out, const char *type, unsigned long v)
{
	char num[32];

	snprintf(num, sizeof(num), "%lu", v);
	return selector_set_add(out, type, num);
}

/* Add a selector whose value comes from outside (a path, a label): values
 * that break the set's rules are skipped with a note, not fatal. */
static int
add_soft(struct selector_set *out, const char *type, const char *value)
{
	int r = selector_set_add(out, type, value);

	if (r == CUBEID_ERR_NOMEM)
		return r;
	if (r != CUBEID_OK)
		cubeid_debug("attest: skipping %s selector: %s", type, cubeid_strerror(r));
	return CUBEID_OK;
}

/* ------------------------------------------------------------ names */

/*
 * unix:user and unix:group come from NSS (getpwuid_r/getgrgid_r), which
 * opens and parses /etc/passwd and /etc/group (or asks a directory
 * service) every time.  The names are kept ATTEST_NAME_TTL_MS, so a renamed
 * user is seen within seconds; SIGHUP forgets them at once.  Lookups that
 * fail are not kept; "no such id" is.
 */
#define NAME_LEN 256

struct name_slot {
	bool used, group, found;
	uint32_t id;
	int64_t at_ms;
	char name[NAME_LEN];
};
static pthread_mutex_t names_lock = PTHREAD_MUTEX_INITIALIZER;
static struct name_slot names[ATTEST_NAME_CACHE];
unsigned long attest_name_lookups;

static int64_t
mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void
attest_name_cache_clear(void)
{
	pthread_mutex_lock(&names_lock);
	memset(names, 0, sizeof(names));
	pthread_mutex_unlock(&names_lock);
}

/* The name of uid or gid id from NSS: 1 found, 0 not found, < 0 on
 * failure. */
static int
name_from_nss(bool group, uint32_t id, char out[NAME_LEN])
{
	size_t cap = 16384;
	char *buf = NULL, *nb;
	const char *name = NULL;
	int r = 0, e;

	__atomic_add_fetch(&attest_name_lookups, 1, __ATOMIC_RELAXED);
	for (;;) {
		struct passwd pw, *pwp = NULL;
		struct group gr, *grp = NULL;

		if ((nb = realloc(buf, cap)) == NULL) {
			r = CUBEID_ERR_NOMEM;
			break;
		}
		buf = nb;
		if (group) {
			e = getgrgid_r((gid_t)id, &gr, buf, cap, &grp);
			name = e == 0 && grp != NULL ? gr.gr_name : NULL;
		} else {
			e = getpwuid_r((uid_t)id, &pw, buf, cap, &pwp);
			name = e == 0 && pwp != NULL ? pw.pw_name : NULL;
		}
		if (e == ERANGE && cap < NAME_BUF_MAX) {
			cap *= 2;
			continue;
		}
		if (e != 0) {
			cubeid_debug("attest: %s of %lu: %s", group ? "getgrgid_r" : "getpwuid_r",
			             (unsigned long)id, strerror(e));
			r = CUBEID_ERR_IO;
		} else if (name != NULL && strlen(name) < NAME_LEN) {
			strcpy(out, name);
			r = 1;
		}
		break;
	}
	free(buf);
	return r;
}

/* The name of uid or gid id, from the cache or NSS: as name_from_nss(). */
static int
name_of(bool group, uint32_t id, char out[NAME_LEN])
{
	int64_t now = mono_ms();
	struct name_slot *slot = NULL;
	size_t i;
	int r;

	pthread_mutex_lock(&names_lock);
	for (i = 0; i < ATTEST_NAME_CACHE; i++) {
		struct name_slot *n = &names[i];

		if (n->used && n->group == group && n->id == id &&
		    now - n->at_ms < ATTEST_NAME_TTL_MS) {
			if (n->found)
				strcpy(out, n->name);
			r = n->found ? 1 : 0;
			pthread_mutex_unlock(&names_lock);
			return r;
		}
	}
	pthread_mutex_unlock(&names_lock);
	/* NSS may be slow (a directory service): not under the lock. */
	if ((r = name_from_nss(group, id, out)) < 0)
		return r;
	pthread_mutex_lock(&names_lock);
	for (i = 0; i < ATTEST_NAME_CACHE; i++) {
		struct name_slot *n = &names[i];

		if (!n->used || (n->group == group && n->id == id)) {
			slot = n;
			break;
		}
		if (slot == NULL || n->at_ms < slot->at_ms)
			slot = n; /* the oldest goes */
	}
	slot->used = true;
	slot->group = group;
	slot->id = id;
	slot->at_ms = now;
	slot->found = r == 1;
	if (r == 1)
		strcpy(slot->name, out);
	pthread_mutex_unlock(&names_lock);
	return r;
}

static int
add_user_group(struct selector_set *out, uid_t uid, gid_t gid)
{
	char name[NAME_LEN];
	int r;

	if ((r = name_of(false, (uint32_t)uid, name)) == CUBEID_ERR_NOMEM)
		return r;
	if (r == 1 && (r = add_soft(out, "unix:user", name)) != CUBEID_OK)
		return r;
	if ((r = name_of(true, (uint32_t)gid, name)) == CUBEID_ERR_NOMEM)
		return r;
	if (r == 1 && (r = add_soft(out, "unix:group", name)) != CUBEID_OK)
		return r;
	return CUBEID_OK;
}

static int
add_supplementary(struct selector_set *out, char *status)
{
	char *p = status_field(status, "Groups");
	unsigned n = 0;

	if (p == NULL)
		return CUBEID_OK;
	while (*p != '\n' && *p != '\0') {
		unsigned long g;
		char *end;
		int r;

		while (*p == ' ' || *p == '\t')
			p++;
		if (!isdigit((unsigned char)*p))
			break;
		errno = 0;
		g = strtoul(p, &end, 10);
		p = end;
		if (errno != 0 || g > UINT32_MAX)
			return CUBEID_ERR_PARSE;
		if (n++ >= ATTEST_MAX_GROUPS) {
			cubeid_warn(
			        "attest: more than %u supplementary groups; the rest are ignored",
			        ATTEST_MAX_GROUPS);
			break;
		}
		if ((r = add_num(out, "unix:supplementary_gid", g)) != CUBEID_OK)
			return r;
	}
	return CUBEID_OK;
}

static int
add_exe(struct selector_set *out, int dirfd, size_t sha256_max)
{
	char path[PATH_MAX + 1];
	unsigned char md[EVP_MAX_MD_SIZE], buf[65536];
	char hex[2 * 32 + 1];
	unsigned int mdlen = 0, i;
	EVP_MD_CTX *ctx = NULL;
	struct stat st;
	ssize_t n;
	int fd = -1, r = CUBEID_OK;

	n = readlinkat(dirfd, "exe", path, sizeof(path) - 1);
	if (n < 0) {
		/* kernel threads have no exe; others may be unreadable to us */
		cubeid_debug("attest: no exe: %s", strerror(errno));
		return errno == ESRCH ? CUBEID_ERR_PEER_CHANGED : CUBEID_OK;
	}
	path[n] = '\0';
	if ((r = add_soft(out, "unix:path", path)) != CUBEID_OK)
		return r;
	if (sha256_max == 0)
		return CUBEID_OK;
	/* Opening exe opens the very file the process runs, even if it has
	 * been replaced or deleted since. */
	fd = openat(dirfd, "exe", O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0) {
		cubeid_debug("attest: cannot open exe for unix:sha256: %s", strerror(errno));
		return CUBEID_OK;
	}
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size < 0 ||
	    (uint64_t)st.st_size > sha256_max) {
		cubeid_debug("attest: exe not hashed (not a regular file, or over %zu bytes)",
		             sha256_max);
		goto out;
	}
	if ((ctx = EVP_MD_CTX_new()) == NULL || EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1) {
		r = CUBEID_ERR_CRYPTO;
		goto out;
	}
	{
		uint64_t total = 0;

		while ((n = read(fd, buf, sizeof(buf))) != 0) {
			if (n < 0) {
				if (errno == EINTR)
					continue;
				cubeid_debug("attest: reading exe: %s", strerror(errno));
				goto out;
			}
			total += (uint64_t)n;
			if (total > sha256_max) /* grew while we read */
				goto out;
			if (EVP_DigestUpdate(ctx, buf, (size_t)n) != 1) {
				r = CUBEID_ERR_CRYPTO;
				goto out;
			}
		}
	}
	if (EVP_DigestFinal_ex(ctx, md, &mdlen) != 1 || mdlen != 32) {
		r = CUBEID_ERR_CRYPTO;
		goto out;
	}
	for (i = 0; i < mdlen; i++)
		snprintf(hex + 2 * i, 3, "%02x", md[i]);
	r = selector_set_add(out, "unix:sha256", hex);
out:
	EVP_MD_CTX_free(ctx);
	if (fd >= 0)
		close(fd);
	return r;
}

/* add_exe() for the process at the other end of connection conn_fd (exec
 * after connect, attest-conn.c): the exe is read first, then the process
 * must hold the connection close-on-exec, then the exe must still be the
 * same file. */
static int
add_exe_held(struct selector_set *out, int dirfd, size_t sha256_max, int conn_fd, pid_t pid)
{
	struct selector_set tmp = {0};
	struct stat st1, st2;
	const char *v;
	int r, held;

	if (fstatat(dirfd, "exe", &st1, 0) != 0) {
		/* kernel threads have no exe; others may be unreadable to us */
		cubeid_debug("attest: no exe: %s", strerror(errno));
		return errno == ESRCH ? CUBEID_ERR_PEER_CHANGED : CUBEID_OK;
	}
	if ((r = add_exe(&tmp, dirfd, sha256_max)) != CUBEID_OK)
		goto out;
	if ((held = attest_conn_held(conn_fd, dirfd)) < 0) {
		r = held;
		goto out;
	}
	if (fstatat(dirfd, "exe", &st2, 0) != 0 || st1.st_dev != st2.st_dev ||
	    st1.st_ino != st2.st_ino)
		held = 0; /* it execed while we looked */
	if (!held) {
		cubeid_notice("attest: pid %ld does not hold its connection in a close-on-exec "
		              "descriptor (exec after connect?): no unix:path or unix:sha256 "
		              "selectors",
		              (long)pid);
		goto out;
	}
	if ((v = selector_set_get(&tmp, "unix:path")) != NULL &&
	    (r = selector_set_add(out, "unix:path", v)) != CUBEID_OK)
		goto out;
	if ((v = selector_set_get(&tmp, "unix:sha256")) != NULL &&
	    (r = selector_set_add(out, "unix:sha256", v)) != CUBEID_OK)
		goto out;
out:
	selector_set_clear(&tmp);
	return r;
}

/* ------------------------------------------------------------ cgroups */

static bool
is_hex_n(const char *s, size_t len, size_t want)
{
	size_t i;

	if (len != want)
		return false;
	for (i = 0; i < len; i++)
		if (!isdigit((unsigned char)s[i]) && !(s[i] >= 'a' && s[i] <= 'f'))
			return false;
	return true;
}

static bool
ends_with(const char *s, size_t len, const char *suffix)
{
	size_t sl = strlen(suffix);

	return len >= sl && memcmp(s + len - sl, suffix, sl) == 0;
}

/* A pod UID as found in a cgroup name: 8-4-4-4-12 hex with '-' or '_'. */
static bool
uid_from(const char *s, size_t len, char out[37])
{
	static const int dash[] = {8, 13, 18, 23};
	size_t i;
	int d = 0;

	if (len != 36)
		return false;
	for (i = 0; i < 36; i++) {
		if (d < 4 && (int)i == dash[d]) {
			if (s[i] != '-' && s[i] != '_')
				return false;
			out[i] = '-';
			d++;
		} else if (isdigit((unsigned char)s[i]) || (s[i] >= 'a' && s[i] <= 'f')) {
			out[i] = s[i];
		} else {
			return false;
		}
	}
	out[36] = '\0';
	return true;
}

/* One path component: note a unit, pod UID or container ID in it. */
static void
scan_component(const char *c, size_t len, const char **unit, size_t *unit_len, char pod[37],
               bool *have_pod, char cid[65], bool *have_cid)
{
	static const char *const unit_suffixes[] = {".service", ".scope", ".socket",
	                                            ".mount",   ".swap",  NULL};
	static const char *const cid_prefixes[] = {"cri-containerd-", "docker-",     "crio-",
	                                           "libpod-",         "containerd-", NULL};
	const char *p;
	size_t i, l;

	for (i = 0; unit_suffixes[i] != NULL; i++)
		if (ends_with(c, len, unit_suffixes[i]) && len > strlen(unit_suffixes[i])) {
			*unit = c;
			*unit_len = len;
			break;
		}

	/* pod: "pod<uid>" (cgroupfs) or "...-pod<uid_with_underscores>.slice" */
	l = len;
	if (ends_with(c, l, ".slice"))
		l -= 6;
	if (l == 3 + 36 && memcmp(c, "pod", 3) == 0 && uid_from(c + 3, 36, pod))
		*have_pod = true;
	else if (l > 4 + 36 && memcmp(c + l - 36 - 4, "-pod", 4) == 0 &&
	         strncmp(c, "kubepods", 8) == 0 && uid_from(c + l - 36, 36, pod))
		*have_pod = true;

	/* container: "<runtime>-<64 hex>.scope" or a bare 64-hex component */
	l = len;
	p = c;
	if (ends_with(p, l, ".scope"))
		l -= 6;
	if (l > 12 && strncmp(p, "crio-conmon-", 12) == 0)
		return; /* CRI-O's monitor, not the container */
	for (i = 0; cid_prefixes[i] != NULL; i++) {
		size_t pl = strlen(cid_prefixes[i]);
		if (l > pl && strncmp(p, cid_prefixes[i], pl) == 0) {
			p += pl;
			l -= pl;
			break;
		}
	}
	if (is_hex_n(p, l, 64)) {
		memcpy(cid, p, 64);
		cid[64] = '\0';
		*have_cid = true;
	}
}

int
attest_cgroup_parse(const char *text, char **unit_out, char **pod_out, char **cid_out)
{
	const char *line = text, *best_unit = NULL;
	size_t best_unit_len = 0;
	int best_rank = -1, r = CUBEID_OK;
	char pod[37] = "", cid[65] = "";
	bool have_pod = false, have_cid = false;

	*unit_out = *pod_out = *cid_out = NULL;
	if (text == NULL)
		return CUBEID_ERR_INVALID_ARG;
	while (*line != '\0') {
		const char *eol = strchr(line, '\n'), *c1, *c2, *path, *p;
		const char *unit = NULL;
		size_t unit_len = 0, llen;
		char lpod[37] = "", lcid[65] = "";
		bool lhave_pod = false, lhave_cid = false;
		int rank;

		llen = eol != NULL ? (size_t)(eol - line) : strlen(line);
		c1 = memchr(line, ':', llen);
		c2 = c1 != NULL ? memchr(c1 + 1, ':', llen - (size_t)(c1 + 1 - line)) : NULL;
		if (c2 == NULL)
			goto next;
		path = c2 + 1;
		/* v2 ("0::") is authoritative for the unit, then name=systemd */
		if (c1 == line + 1 && line[0] == '0' && c2 == c1 + 1)
			rank = 2;
		else if ((size_t)(c2 - c1 - 1) == 12 && memcmp(c1 + 1, "name=systemd", 12) == 0)
			rank = 1;
		else
			rank = 0;
		for (p = path; p < line + llen;) {
			const char *slash = memchr(p, '/', (size_t)(line + llen - p));
			const char *ce = slash != NULL ? slash : line + llen;
			if (ce > p)
				scan_component(p, (size_t)(ce - p), &unit, &unit_len, lpod,
				               &lhave_pod, lcid, &lhave_cid);
			p = ce + 1;
		}
		if (unit != NULL && rank > best_rank) {
			best_unit = unit;
			best_unit_len = unit_len;
			best_rank = rank;
		}
		/* pod and container from the same line */
		if (lhave_pod && !have_pod) {
			memcpy(pod, lpod, sizeof(pod));
			have_pod = true;
			if (lhave_cid) {
				memcpy(cid, lcid, sizeof(cid));
				have_cid = true;
			}
		} else if (lhave_cid && !have_cid && !have_pod) {
			memcpy(cid, lcid, sizeof(cid));
			have_cid = true;
		}
next:
		if (eol == NULL)
			break;
		line = eol + 1;
	}
	if (best_unit != NULL && (*unit_out = strndup(best_unit, best_unit_len)) == NULL)
		r = CUBEID_ERR_NOMEM;
	if (r == 0 && have_pod && (*pod_out = strdup(pod)) == NULL)
		r = CUBEID_ERR_NOMEM;
	if (r == 0 && have_cid && (*cid_out = strdup(cid)) == NULL)
		r = CUBEID_ERR_NOMEM;
	if (r != CUBEID_OK) {
		free(*unit_out);
		free(*pod_out);
		free(*cid_out);
		*unit_out = *pod_out = *cid_out = NULL;
	}
	return r;
}

/* ------------------------------------------------------------ pidfd */

static int
sys_pidfd_open(pid_t pid)
{
#ifdef SYS_pidfd_open
	return (int)syscall(SYS_pidfd_open, pid, 0);
#else
	(void)pid;
	errno = ENOSYS;
	return -1;
#endif
}

/* Whether the pidfd's process has not been reaped (so its pid cannot have
 * been reused): 1 alive, 0 gone, -1 unknown (no pidfd_send_signal: old
 * kernels, valgrind).  Signal 0 only checks. */
static int
pidfd_state(int pidfd)
{
#ifdef SYS_pidfd_send_signal
	if (pidfd < 0)
		return -1;
	if (syscall(SYS_pidfd_send_signal, pidfd, 0, NULL, 0) == 0)
		return 1;
	/* EPERM: alive but not ours to signal */
	return errno == EPERM ? 1 : errno == ENOSYS ? -1 : 0;
#else
	(void)pidfd;
	return -1;
#endif
}

/* Not known to be gone; where it is unknown, the start-time comparison
 * still guards. */
static bool
pidfd_alive(int pidfd)
{
	return pidfd_state(pidfd) != 0;
}

/* ------------------------------------------------------------ attest */

void (*attest_test_hook_before_recheck)(const char *proc_dir);

static bool
real_proc(const struct attest_opts *o)
{
	return o == NULL || o->proc_root == NULL || strcmp(o->proc_root, "/proc") == 0;
}

/* The /proc facts skip leaves nothing of. */
#define SKIP_PROC (ATTEST_SKIP_GROUPS | ATTEST_SKIP_PATH | ATTEST_SKIP_CGROUP)

/* Attest pid, whose pidfd (or -1) the caller holds; cred gives uid/gid
 * from SO_PEERCRED, or NULL to take the effective ids from /proc. */
static int
attest_common(pid_t pid, int pidfd, const struct ucred *cred, int conn_fd,
              const struct attest_opts *o, struct peer_info *peer, struct selector_set *out)
{
	const char *root = o != NULL && o->proc_root != NULL ? o->proc_root : "/proc";
	unsigned skip = o != NULL ? o->skip : 0;
	struct selector_set sel = {0};
	char dir[PATH_MAX];
	char *status = NULL, *cgroup = NULL, *unit = NULL, *pod = NULL, *cid = NULL, *f;
	unsigned long long start1 = 0, start2 = 0;
	unsigned long uid, gid;
	int dirfd = -1, r, ps;

	if (peer != NULL)
		memset(peer, 0, sizeof(*peer));
	if (pid <= 0)
		return CUBEID_ERR_INVALID_ARG;
	if (cred != NULL && (skip & SKIP_PROC) == SKIP_PROC && (ps = pidfd_state(pidfd)) >= 0) {
		/* No entry needs anything of /proc: SO_PEERCRED has it all.
		 * A peer that is gone already is still refused (when its
		 * pidfd cannot tell, the /proc path below does). */
		uid = cred->uid;
		gid = cred->gid;
		if (ps == 0) {
			r = CUBEID_ERR_PEER_CHANGED;
			goto out;
		}
		if ((r = add_num(&sel, "unix:uid", uid)) != 0 ||
		    (r = add_num(&sel, "unix:gid", gid)) != 0 ||
		    (!(skip & ATTEST_SKIP_NAMES) &&
		     (r = add_user_group(&sel, (uid_t)uid, (gid_t)gid)) != 0))
			goto out;
		goto done;
	}
	if ((size_t)snprintf(dir, sizeof(dir), "%s/%ld", root, (long)pid) >= sizeof(dir))
		return CUBEID_ERR_INVALID_ARG;
	dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dirfd < 0) {
		r = errno == ENOENT
		            ? (cred != NULL ? CUBEID_ERR_PEER_CHANGED : CUBEID_ERR_NOT_FOUND)
		            : CUBEID_ERR_IO;
		goto out;
	}
	/* The directory fd is bound to the process that had pid when it was
	 * opened; the pidfd's process was alive then if it is alive now. */
	if (pidfd >= 0 && !pidfd_alive(pidfd)) {
		r = CUBEID_ERR_PEER_CHANGED;
		goto out;
	}
	if ((r = read_starttime(dirfd, &start1)) != CUBEID_OK)
		goto out;
	/* status: the ids when there is no SO_PEERCRED, and the groups */
	if (cred == NULL || !(skip & ATTEST_SKIP_GROUPS)) {
		r = read_at(dirfd, "status", ATTEST_STATUS_MAX, &status, NULL);
		if (r != CUBEID_OK) {
			if (r == CUBEID_ERR_NOT_FOUND)
				r = CUBEID_ERR_PEER_CHANGED;
			goto out;
		}
	}
	if (cred != NULL) {
		uid = cred->uid;
		gid = cred->gid;
	} else {
		/* Uid:/Gid: real, effective, saved, fs; SO_PEERCRED has the
		 * effective ids, so use those here too. */
		if ((f = status_field(status, "Uid")) == NULL || nth_number(f, 1, &uid) != 0 ||
		    (f = status_field(status, "Gid")) == NULL || nth_number(f, 1, &gid) != 0) {
			r = CUBEID_ERR_PARSE;
			goto out;
		}
	}
	if ((r = add_num(&sel, "unix:uid", uid)) != 0 || (r = add_num(&sel, "unix:gid", gid)) != 0)
		goto out;
	if (!(skip & ATTEST_SKIP_NAMES) && (r = add_user_group(&sel, (uid_t)uid, (gid_t)gid)) != 0)
		goto out;
	if (!(skip & ATTEST_SKIP_GROUPS) && (r = add_supplementary(&sel, status)) != 0)
		goto out;
	if (!(skip & ATTEST_SKIP_PATH)) {
		size_t max = o != NULL ? o->sha256_max_bytes : 0;

		/* a connection's peer must hold it (exec after connect); a
		 * bare pid (cubeid entry check --pid) and fixtures have none */
		r = conn_fd >= 0 && real_proc(o) ? add_exe_held(&sel, dirfd, max, conn_fd, pid)
		                                 : add_exe(&sel, dirfd, max);
		if (r != CUBEID_OK)
			goto out;
	}
	r = skip & ATTEST_SKIP_CGROUP ? CUBEID_ERR_NOT_FOUND
	                              : read_at(dirfd, "cgroup", ATTEST_CGROUP_MAX, &cgroup, NULL);
	if (r == CUBEID_OK) {
		if ((r = attest_cgroup_parse(cgroup, &unit, &pod, &cid)) != CUBEID_OK)
			goto out;
		if (unit != NULL && (r = add_soft(&sel, "systemd:id", unit)) != CUBEID_OK)
			goto out;
		if (pod != NULL && o != NULL &&
		    (o->pod_info_file != NULL || o->kubelet_pods_url != NULL)) {
			if ((r = attest_k8s(o, pod, cid, &sel)) != CUBEID_OK) {
				cubeid_warn("attest: pid %ld: pod %s: no pod metadata: %s",
				            (long)pid, pod, cubeid_strerror(r));
				r = CUBEID_OK; /* the k8s selectors are simply absent */
			}
		}
	} else if (r == CUBEID_ERR_NOT_FOUND) {
		r = CUBEID_OK; /* no cgroup support: no systemd/k8s selectors */
	} else {
		goto out;
	}
	/* Everything read must have come from one process. */
	if (attest_test_hook_before_recheck != NULL)
		attest_test_hook_before_recheck(dir);
	if ((r = read_starttime(dirfd, &start2)) != CUBEID_OK)
		goto out;
	if (start1 != start2 || (pidfd >= 0 && !pidfd_alive(pidfd))) {
		r = CUBEID_ERR_PEER_CHANGED;
		goto out;
	}
done:
	if (peer != NULL) {
		peer->pid = pid;
		peer->uid = (uid_t)uid;
		peer->gid = (gid_t)gid;
	}
	selector_set_clear(out);
	*out = sel;
	sel.v = NULL;
	sel.n = 0;
out:
	if (r == CUBEID_ERR_PEER_CHANGED)
		cubeid_warn("attest: pid %ld exited or was reused during attestation", (long)pid);
	selector_set_clear(&sel);
	free(status);
	free(cgroup);
	free(unit);
	free(pod);
	free(cid);
	if (dirfd >= 0)
		close(dirfd);
	return r;
}

/* ------------------------------------------------------------ skip */

/* The skip bits a selector type (at the start of s) needs cleared. */
static unsigned
needs_of(const char *s)
{
	static const struct {
		const char *prefix;
		unsigned bit;
	} t[] = {
	        {"unix:user", ATTEST_SKIP_NAMES},
	        {"unix:group", ATTEST_SKIP_NAMES},
	        {"unix:supplementary_gid", ATTEST_SKIP_GROUPS},
	        {"unix:path", ATTEST_SKIP_PATH},
	        {"unix:sha256", ATTEST_SKIP_PATH},
	        {"systemd:", ATTEST_SKIP_CGROUP},
	        {"k8s:", ATTEST_SKIP_CGROUP},
	};
	size_t i, l;

	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		l = strlen(t[i].prefix);
		/* a whole type: "unix:group" but not "unix:groupX" */
		if (strncmp(s, t[i].prefix, l) == 0 &&
		    (t[i].prefix[l - 1] == ':' || s[l] == ':' || s[l] == '\0' || s[l] == '}'))
			return t[i].bit;
	}
	/* a type attestation does not know reads everything, to be safe */
	return strncmp(s, "unix:uid", 8) == 0 || strncmp(s, "unix:gid", 8) == 0 ||
	                       strncmp(s, "unix:seclabel", 13) == 0 || strncmp(s, "td}", 3) == 0
	               ? 0
	               : ATTEST_SKIP_ALL;
}

unsigned
attest_skip_for(const struct entry_set *s)
{
	unsigned need = 0;
	size_t i, j;
	const char *p;

	for (i = 0; s != NULL && i < s->n; i++) {
		const struct reg_entry *e = &s->e[i];

		for (j = 0; j < e->selectors.n; j++)
			need |= needs_of(e->selectors.v[j]);
		for (p = e->spiffe_id; p != NULL && (p = strchr(p, '{')) != NULL; p++)
			need |= needs_of(p + 1);
	}
	return ATTEST_SKIP_ALL & ~need;
}

int
attest_pid(pid_t pid, const struct attest_opts *o, struct peer_info *peer, struct selector_set *out)
{
	int pidfd = -1, r;

	if (out == NULL)
		return CUBEID_ERR_INVALID_ARG;
	if (pid <= 0) {
		if (peer != NULL)
			memset(peer, 0, sizeof(*peer));
		return CUBEID_ERR_INVALID_ARG;
	}
	if (real_proc(o)) {
		pidfd = sys_pidfd_open(pid);
		if (pidfd < 0 && errno == ESRCH)
			return CUBEID_ERR_NOT_FOUND;
		if (pidfd < 0 && errno != ENOSYS)
			cubeid_debug("attest: pidfd_open(%ld): %s", (long)pid, strerror(errno));
	}
	r = attest_common(pid, pidfd, NULL, -1, o, peer, out);
	if (pidfd >= 0)
		close(pidfd);
	return r;
}

int
attest_peer_fd(int fd, const struct attest_opts *o, struct peer_info *peer,
               struct selector_set *out)
{
	struct ucred cred;
	socklen_t len = sizeof(cred);
	char *label = NULL;
	int pidfd = -1, r;

	if (peer != NULL)
		memset(peer, 0, sizeof(*peer));
	if (out == NULL || fd < 0)
		return CUBEID_ERR_INVALID_ARG;
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0 || len != sizeof(cred)) {
		cubeid_warn("attest: SO_PEERCRED: %s", strerror(errno));
		return CUBEID_ERR_IO;
	}
	if (cred.pid <= 0) /* a peer in another pid namespace, or no peer */
		return CUBEID_ERR_PERMISSION;
	if (real_proc(o)) {
		/* The kernel's own pidfd for the peer (Linux 6.5) has no
		 * window at all; pidfd_open() right away is the fallback. */
		len = sizeof(pidfd);
		if (getsockopt(fd, SOL_SOCKET, SO_PEERPIDFD, &pidfd, &len) != 0)
			pidfd = -1;
		if (pidfd < 0) {
			pidfd = sys_pidfd_open(cred.pid);
			if (pidfd < 0 && errno == ESRCH)
				return CUBEID_ERR_PEER_CHANGED;
		}
	}
	r = attest_common(cred.pid, pidfd, &cred, fd, o, peer, out);
	if (pidfd >= 0)
		close(pidfd);
	if (r != CUBEID_OK)
		return r;
	/* unix:seclabel: fixed before connect, like SO_PEERCRED */
	if ((r = attest_conn_seclabel(fd, &label)) == CUBEID_OK && label != NULL)
		r = add_soft(out, "unix:seclabel", label);
	free(label);
	if (r != CUBEID_OK)
		selector_set_clear(out);
	return r;
}
