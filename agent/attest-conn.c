/*
 * What the connection itself says about the process at its other end,
 * beyond SO_PEERCRED: whether that process still holds the connection
 * (exec after connect), and its LSM label (SO_PEERSEC).
 *
 * The label is the one other fact fixed before the agent looks: it is the
 * label of the caller's socket, which the LSM took from the process that
 * made it.  So it has no exec race: an LSM that gives a program its own
 * label on exec (an AppArmor profile, an SELinux domain transition) names
 * the program that made the connection, whatever the pid runs later.  It
 * is the unix:seclabel selector.
 *
 * Exec after connect.  SO_PEERCRED names the pid that connected, but what
 * that pid runs can change by exec before /proc/PID/exe is read: a
 * process connects, forks, the parent execs a trusted program and the
 * child talks over the connection.  The kernel closes close-on-exec
 * descriptors at exec, and nothing but the new program itself (or a
 * process that can ptrace it) can put a descriptor into its table
 * afterwards.  So attest.c gives unix:path and unix:sha256 only when the
 * attested process holds the other end of this very connection in a
 * descriptor marked close-on-exec: the program it runs now obtained the
 * connection itself.  A descriptor inherited across exec (never
 * close-on-exec at that moment) does not count, nor does no descriptor.
 * docs/design.md has what this guarantees and what it does not.
 */
#include "config.h"

#include "agent/attest-internal.h"

#include <cubeid/log.h>

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/sock_diag.h>
#include <linux/unix_diag.h>

/* The inode of the socket at the other end of Unix socket fd, from
 * sock_diag (UNIX_DIAG_PEER): 0, or CUBEID_ERR_NOT_FOUND when our end is in
 * another network namespace (the kernel makes the accepted socket in the
 * connector's, and sock_diag sees only ours), CUBEID_ERR_PEER_CHANGED when
 * the peer has closed, CUBEID_ERR_IO when sock_diag cannot answer (no
 * CONFIG_UNIX_DIAG, AF_NETLINK forbidden). */
static int
peer_ino_of(int fd, uint64_t *peer_ino)
{
	struct {
		struct nlmsghdr nlh;
		struct unix_diag_req req;
	} msg;
	struct sockaddr_nl sa = {.nl_family = AF_NETLINK};
	union {
		struct nlmsghdr nlh;
		char buf[8192];
	} rep;
	struct stat st;
	ssize_t n;
	int nl = -1, r = CUBEID_ERR_IO;

	*peer_ino = 0;
	if (fstat(fd, &st) != 0 || !S_ISSOCK(st.st_mode))
		return CUBEID_ERR_INVALID_ARG;
	memset(&msg, 0, sizeof(msg));
	msg.nlh.nlmsg_len = sizeof(msg);
	msg.nlh.nlmsg_type = SOCK_DIAG_BY_FAMILY;
	msg.nlh.nlmsg_flags = NLM_F_REQUEST;
	msg.nlh.nlmsg_seq = 1;
	msg.req.sdiag_family = AF_UNIX;
	msg.req.udiag_states = ~0u;
	msg.req.udiag_ino = (uint32_t)st.st_ino;
	msg.req.udiag_show = UDIAG_SHOW_PEER;
	msg.req.udiag_cookie[0] = msg.req.udiag_cookie[1] = ~0u; /* no cookie */
	if ((nl = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG)) < 0) {
		cubeid_warn("attest: sock_diag: %s", strerror(errno));
		goto out;
	}
	if (sendto(nl, &msg, sizeof(msg), 0, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		cubeid_warn("attest: sock_diag request: %s", strerror(errno));
		goto out;
	}
	do
		n = recv(nl, &rep, sizeof(rep), 0);
	while (n < 0 && errno == EINTR);
	if (n < 0 || !NLMSG_OK(&rep.nlh, (size_t)n)) {
		cubeid_warn("attest: sock_diag reply: %s", n < 0 ? strerror(errno) : "short");
		goto out;
	}
	if (rep.nlh.nlmsg_type == NLMSG_ERROR) {
		const struct nlmsgerr *e = NLMSG_DATA(&rep.nlh);

		if (e->error == -ENOENT) {
			r = CUBEID_ERR_NOT_FOUND;
		} else {
			cubeid_warn("attest: sock_diag: %s", strerror(-e->error));
		}
		goto out;
	}
	r = CUBEID_ERR_PEER_CHANGED; /* no peer: it closed */
	if (rep.nlh.nlmsg_type == SOCK_DIAG_BY_FAMILY &&
	    rep.nlh.nlmsg_len >= NLMSG_LENGTH(sizeof(struct unix_diag_msg))) {
		struct unix_diag_msg *m = NLMSG_DATA(&rep.nlh);
		struct rtattr *a = (struct rtattr *)(m + 1);
		int alen = (int)(rep.nlh.nlmsg_len - NLMSG_LENGTH(sizeof(*m)));

		for (; RTA_OK(a, alen); a = RTA_NEXT(a, alen))
			if (a->rta_type == UNIX_DIAG_PEER && RTA_PAYLOAD(a) >= sizeof(uint32_t)) {
				uint32_t v;

				memcpy(&v, RTA_DATA(a), sizeof(v));
				*peer_ino = v;
				if (v != 0)
					r = CUBEID_OK;
				break;
			}
	}
out:
	if (nl >= 0)
		close(nl);
	return r;
}

/* The value of "key:" in an fdinfo text, or -1. */
static long long
fdinfo_field(const char *text, const char *key, int base)
{
	size_t kl = strlen(key);
	const char *p = text;

	while (p != NULL && *p != '\0') {
		if (strncmp(p, key, kl) == 0 && p[kl] == ':')
			return strtoll(p + kl + 1, NULL, base);
		if ((p = strchr(p, '\n')) != NULL)
			p++;
	}
	return -1;
}

/* The fdinfo of descriptor name of the process of dir (at most
 * sizeof(buf) - 1 bytes: the fields we read come first). */
static int
read_fdinfo(int dir, const char *name, char *buf, size_t len)
{
	ssize_t n;
	int fd = openat(dir, name, O_RDONLY | O_CLOEXEC | O_NOCTTY);

	if (fd < 0)
		return -1;
	do
		n = read(fd, buf, len - 1);
	while (n < 0 && errno == EINTR);
	close(fd);
	if (n < 0)
		return -1;
	buf[n] = '\0';
	return 0;
}

/* The mount id of sockfs (every socket's), from our own descriptor fd. */
static long long
sockfs_mnt_id(int fd)
{
	static long long cached = -1;
	long long v = __atomic_load_n(&cached, __ATOMIC_RELAXED);
	char name[64], buf[512];
	int self;

	if (v >= 0)
		return v;
	snprintf(name, sizeof(name), "%d", fd);
	if ((self = open("/proc/self/fdinfo", O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
		return -1;
	if (read_fdinfo(self, name, buf, sizeof(buf)) == 0 &&
	    (v = fdinfo_field(buf, "mnt_id", 10)) >= 0)
		__atomic_store_n(&cached, v, __ATOMIC_RELAXED);
	close(self);
	return v;
}

/* Whether descriptor name of the process of proc_dir is the socket
 * peer_ino and marked close-on-exec.  With fd_dir (its open /proc/PID/fd)
 * the link says which file it is, and fdinfo is read only for a match;
 * without, fdinfo says (ino, and mnt_id for the file system). */
static bool
fd_is_cloexec_peer(int proc_dir, int fd_dir, int fdinfo_dir, const char *name, uint64_t peer_ino,
                   long long mnt_id)
{
	char buf[1024], link[64], want[64], path[300];
	long long ino, flags;
	ssize_t n;

	snprintf(want, sizeof(want), "socket:[%" PRIu64 "]", peer_ino);
	if (fd_dir >= 0) {
		n = readlinkat(fd_dir, name, link, sizeof(link) - 1);
		if (n <= 0)
			return false;
		link[n] = '\0';
		if (strcmp(link, want) != 0)
			return false;
		snprintf(path, sizeof(path), "fdinfo/%s", name);
		if (read_fdinfo(proc_dir, path, buf, sizeof(buf)) != 0)
			return false; /* closed meanwhile */
		/* not another file under a reused number since the link */
		if ((ino = fdinfo_field(buf, "ino", 10)) >= 0 && (uint64_t)ino != peer_ino)
			return false;
	} else {
		if (read_fdinfo(fdinfo_dir, name, buf, sizeof(buf)) != 0)
			return false;
		ino = fdinfo_field(buf, "ino", 10);
		if (ino < 0) {
			/* before Linux 5.14 fdinfo has no ino: the fd link */
			snprintf(path, sizeof(path), "fd/%s", name);
			n = readlinkat(proc_dir, path, link, sizeof(link) - 1);
			if (n <= 0)
				return false;
			link[n] = '\0';
			if (strcmp(link, want) != 0)
				return false;
		} else if ((uint64_t)ino != peer_ino || fdinfo_field(buf, "mnt_id", 10) != mnt_id) {
			return false;
		}
	}
	flags = fdinfo_field(buf, "flags", 8);
	return flags >= 0 && (flags & O_CLOEXEC) != 0;
}

/* Whether the process of proc_dir holds the socket peer_ino in a descriptor
 * marked close-on-exec: 1 yes, 0 no (or it cannot be told: fail closed),
 * CUBEID_ERR_PEER_CHANGED if it is gone.  /proc/PID/fd costs one readlink
 * a descriptor, but another uid's process lets us list it only with
 * CAP_DAC_READ_SEARCH; /proc/PID/fdinfo (an open, a read and a close a
 * descriptor) needs only CAP_SYS_PTRACE, the capability the units grant. */
static int
holds_cloexec(int proc_dir, uint64_t peer_ino, long long mnt_id)
{
	struct dirent *de;
	DIR *d;
	int fd, fd_dir = -1, r = 0;

	fd = openat(proc_dir, "fd", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd >= 0)
		fd_dir = fd;
	else if (errno == ENOENT || errno == ESRCH)
		return CUBEID_ERR_PEER_CHANGED;
	else
		fd = openat(proc_dir, "fdinfo", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0) {
		if (errno == ENOENT || errno == ESRCH)
			return CUBEID_ERR_PEER_CHANGED;
		cubeid_debug("attest: cannot list the descriptors: %s", strerror(errno));
		return 0;
	}
	if ((d = fdopendir(fd)) == NULL) {
		close(fd);
		return 0;
	}
	while ((de = readdir(d)) != NULL) {
		if (!isdigit((unsigned char)de->d_name[0]))
			continue;
		if (fd_is_cloexec_peer(proc_dir, fd_dir, fd, de->d_name, peer_ino, mnt_id)) {
			r = 1;
			break;
		}
	}
	closedir(d);
	return r;
}

int
attest_conn_held(int conn_fd, int proc_dir)
{
	uint64_t peer_ino = 0;
	long long mnt_id;
	int r;

	/* Whatever cannot be told is "not held": the exe selectors are left
	 * out, and nothing else. */
	if ((r = peer_ino_of(conn_fd, &peer_ino)) != CUBEID_OK) {
		if (r == CUBEID_ERR_NOT_FOUND)
			cubeid_notice("attest: the caller connected from another network "
			              "namespace; sock_diag cannot see its end of the connection");
		else if (r == CUBEID_ERR_PEER_CHANGED)
			cubeid_debug("attest: the caller has closed its end of the connection");
		else
			cubeid_warn("attest: the other end of the connection is unknown: %s",
			            cubeid_strerror(r));
		return 0;
	}
	if ((mnt_id = sockfs_mnt_id(conn_fd)) < 0) {
		cubeid_warn("attest: the sockets' mount id is unknown");
		return 0;
	}
	return holds_cloexec(proc_dir, peer_ino, mnt_id);
}

int
attest_conn_seclabel(int conn_fd, char **out)
{
	socklen_t len = 256;
	char *buf = NULL, *nb;

	*out = NULL;
	for (;;) {
		socklen_t got = len;

		if ((nb = realloc(buf, (size_t)len + 1)) == NULL) {
			free(buf);
			return CUBEID_ERR_NOMEM;
		}
		buf = nb;
		if (getsockopt(conn_fd, SOL_SOCKET, SO_PEERSEC, buf, &got) == 0) {
			buf[got < len ? got : len] = '\0';
			break;
		}
		if (errno == ERANGE && got > len && got <= ATTEST_SECLABEL_MAX) {
			len = got;
			continue;
		}
		/* ENOPROTOOPT: no LSM labels sockets; anything else: none */
		if (errno != ENOPROTOOPT)
			cubeid_debug("attest: SO_PEERSEC: %s", strerror(errno));
		free(buf);
		return CUBEID_OK;
	}
	if (buf[0] == '\0') {
		free(buf);
		return CUBEID_OK;
	}
	*out = buf;
	return CUBEID_OK;
}
