/*
 * Workload attestation: selector sets, cgroup parsing for each runtime and
 * cgroup version, fixture /proc trees with a pod-list file and with a tiny
 * loopback "kubelet", the pid-reuse guard (a stat that changes between
 * reads), and this very process attested through a real socketpair.
 */
#include "config.h"

#include "agent/agent.h"
#include "agent/attest-internal.h"
#include "tests/harness.h"

#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <pthread.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <stddef.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#define C1         "3f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0"
#define C2         "9a8b7c6d5e4f30211203f4e5d6c7b8a99a8b7c6d5e4f30211203f4e5d6c7b8a9"
#define C3         "abcdefabcdefabcdefabcdefabcdefabcdefabcdefabcdefabcdefabcdef0123"
#define C4         "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
#define APP_SHA256 "8c50d38f79a656f5b8de7da3bd3dcafeeeaf3d49bc0d26fe01912a75bd2f7aef"

static char fixtures[1024];
static char pods_json[1100];

/* The fixture /proc trees need /proc/PID/exe symlinks, several of them
 * dangling (they name programs of a container), and a release tarball
 * cannot carry dangling links.  So the trees are copied to a temp dir and
 * the links made there. */
static const struct {
	const char *link, *target;
} exe_links[] = {
        {"v2-containerd/4242/exe", "/usr/local/bin/router"},
        {"systemd/100/exe", "../../bin/app"},
        {"user-session/200/exe", "../../bin/app"},
        {"v1-docker/6006/exe", "/usr/sbin/nginx"},
        {"v2-crio/5005/exe", "/usr/local/bin/picod"},
        {"v1-cgroupfs/77/exe", "/app/web"},
};
static char *fixture_tmp;

static void
setup_paths(void)
{
	char src[1024], path[1200];
	char *argv[] = {"cp", "-R", src, NULL, NULL};
	size_t i;

	snprintf(src, sizeof(src), "%s/tests/fixtures/attest", CUBEID_SRCDIR);
	fixture_tmp = th_mkdtemp("cubeid-attest");
	argv[3] = fixture_tmp;
	if (th_run(argv, NULL) != 0) {
		fprintf(stderr, "cannot copy %s to %s\n", src, fixture_tmp);
		exit(1);
	}
	snprintf(fixtures, sizeof(fixtures), "%s/attest", fixture_tmp);
	/* A copy of a read-only source tree (make distcheck) is read-only. */
	{
		char *chmod_argv[] = {"chmod", "-R", "u+w", fixture_tmp, NULL};
		if (th_run(chmod_argv, NULL) != 0) {
			fprintf(stderr, "cannot make %s writable\n", fixture_tmp);
			exit(1);
		}
	}
	for (i = 0; i < sizeof(exe_links) / sizeof(exe_links[0]); i++) {
		snprintf(path, sizeof(path), "%s/%s", fixtures, exe_links[i].link);
		unlink(path);
		if (symlink(exe_links[i].target, path) != 0) {
			fprintf(stderr, "symlink %s: %s\n", path, strerror(errno));
			exit(1);
		}
	}
	snprintf(pods_json, sizeof(pods_json), "%s/pods.json", fixtures);
}

static void
dump(const struct selector_set *s)
{
	size_t i;

	for (i = 0; i < s->n; i++)
		fprintf(stderr, "  %s\n", s->v[i]);
}

#define ck_has(s, sel)   ck_assert_msg(selector_set_has(s, sel), "missing selector %s", sel)
#define ck_hasnt(s, sel) ck_assert_msg(!selector_set_has(s, sel), "unexpected selector %s", sel)

/* ------------------------------------------------------------ selectors */

START_TEST(test_selector_set_sorted_unique_bounded)
{
	struct selector_set s = {0};
	char big[SELECTOR_MAX_LEN + 8];
	size_t i;

	ck_assert_int_eq(selector_set_add(&s, "unix:uid", "1000"), 0);
	ck_assert_int_eq(selector_set_add(&s, "k8s:ns", "default"), 0);
	ck_assert_int_eq(selector_set_add(&s, "k8s:ns", "default"), 0);
	ck_assert_int_eq(selector_set_add(&s, "k8s:ns", "b"), 0);
	ck_assert_int_eq(selector_set_add(&s, "k8s:sa", NULL), 0);
	ck_assert_uint_eq(s.n, 4);
	for (i = 1; i < s.n; i++)
		ck_assert_int_lt(strcmp(s.v[i - 1], s.v[i]), 0);
	ck_assert(selector_set_has(&s, "k8s:ns:default"));
	ck_assert(selector_set_has(&s, "k8s:sa"));
	ck_assert(!selector_set_has(&s, "k8s:ns"));
	ck_assert_str_eq(selector_set_get(&s, "k8s:ns"), "b");
	ck_assert_str_eq(selector_set_get(&s, "unix:uid"), "1000");
	ck_assert_ptr_null(selector_set_get(&s, "unix:gid"));
	ck_assert_ptr_null(selector_set_get(&s, "k8s:n"));
	ck_assert_int_eq(selector_set_add(&s, "unix:path", "/a\nb"), CUBEID_ERR_PARSE);
	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	ck_assert_int_eq(selector_set_add(&s, "unix:path", big), CUBEID_ERR_TOO_LARGE);
	ck_assert_int_eq(selector_set_add(&s, "", "x"), CUBEID_ERR_INVALID_ARG);
	selector_set_clear(&s);
	ck_assert_uint_eq(s.n, 0);
	for (i = 0; i < SELECTOR_SET_MAX; i++) {
		char v[32];
		snprintf(v, sizeof(v), "%zu", i);
		ck_assert_int_eq(selector_set_add(&s, "unix:supplementary_gid", v), 0);
	}
	ck_assert_int_eq(selector_set_add(&s, "unix:gid", "1"), CUBEID_ERR_TOO_LARGE);
	selector_set_clear(&s);
	selector_set_clear(NULL);
	ck_assert(selector_type_known("k8s:pod-label"));
	ck_assert(!selector_type_known("k8s:namespace"));
}
END_TEST

/* ------------------------------------------------------------ cgroups */

static const struct {
	const char *cgroup, *unit, *pod, *cid;
} cgroup_cases[] = {
        /* cgroup v2, systemd driver, containerd */
        {"0::/kubepods.slice/kubepods-burstable.slice/"
         "kubepods-burstable-pod5f3c1a2b_7d4e_4f6a_9b8c_0d1e2f3a4b5c.slice/cri-containerd-" C1
         ".scope\n",
         "cri-containerd-" C1 ".scope", "5f3c1a2b-7d4e-4f6a-9b8c-0d1e2f3a4b5c", C1},
        /* guaranteed QoS has no QoS slice */
        {"0::/kubepods.slice/kubepods-pod11111111_2222_3333_4444_555555555555.slice/crio-" C3
         ".scope\n",
         "crio-" C3 ".scope", "11111111-2222-3333-4444-555555555555", C3},
        /* CRI-O's conmon is not the container */
        {"0::/kubepods.slice/kubepods-pod11111111_2222_3333_4444_555555555555.slice/"
         "crio-conmon-" C3 ".scope\n",
         "crio-conmon-" C3 ".scope", "11111111-2222-3333-4444-555555555555", NULL},
        /* cgroup v1, cgroupfs driver */
        {"12:memory:/kubepods/besteffort/pod0a1b2c3d-4e5f-6a7b-8c9d-0e1f2a3b4c5d/" C2
         "\n1:name=systemd:/kubepods/besteffort/pod0a1b2c3d-4e5f-6a7b-8c9d-0e1f2a3b4c5d/" C2
         "\n0::/\n",
         NULL, "0a1b2c3d-4e5f-6a7b-8c9d-0e1f2a3b4c5d", C2},
        {"5:cpu:/kubepods/pod0a1b2c3d-4e5f-6a7b-8c9d-0e1f2a3b4c5d/" C2 "\n", NULL,
         "0a1b2c3d-4e5f-6a7b-8c9d-0e1f2a3b4c5d", C2},
        /* cgroup v1, systemd driver, docker */
        {"12:pids:/kubepods.slice/kubepods-besteffort.slice/"
         "kubepods-besteffort-pod22222222_3333_4444_5555_666666666666.slice/docker-" C4 ".scope\n",
         "docker-" C4 ".scope", "22222222-3333-4444-5555-666666666666", C4},
        /* plain docker, no Kubernetes */
        {"0::/system.slice/docker-" C4 ".scope\n", "docker-" C4 ".scope", NULL, C4},
        {"4:devices:/docker/" C4 "\n", NULL, NULL, C4},
        /* podman */
        {"0::/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-" C4 ".scope/"
         "container\n",
         "libpod-" C4 ".scope", NULL, C4},
        /* systemd units */
        {"0::/system.slice/cubeid-agent.service\n", "cubeid-agent.service", NULL, NULL},
        {"0::/user.slice/user-1000.slice/session-3.scope\n", "session-3.scope", NULL, NULL},
        {"0::/system.slice/foo.service/sub/dir\n", "foo.service", NULL, NULL},
        /* v2 wins over v1 for the unit */
        {"1:name=systemd:/system.slice/old.service\n0::/system.slice/new.service\n", "new.service",
         NULL, NULL},
        /* nothing useful, and malformed lines */
        {"0::/\n", NULL, NULL, NULL},
        {"garbage\n::\n0:\n\n", NULL, NULL, NULL},
        {"0::/kubepods/podnot-a-uid/" C4 "\n", NULL, NULL, C4},
        {"0::/kubepods/pod0A1B2C3D-4E5F-6A7B-8C9D-0E1F2A3B4C5D/xyz\n", NULL, NULL, NULL},
        {"0::/.service\n", NULL, NULL, NULL},
};

START_TEST(test_cgroup_forms)
{
	size_t i;

	for (i = 0; i < sizeof(cgroup_cases) / sizeof(cgroup_cases[0]); i++) {
		char *unit = NULL, *pod = NULL, *cid = NULL;

		ck_assert_int_eq(attest_cgroup_parse(cgroup_cases[i].cgroup, &unit, &pod, &cid), 0);
#define CK_OPT(got, want)                                                                          \
	do {                                                                                       \
		if ((want) == NULL)                                                                \
			ck_assert_msg((got) == NULL, "case %zu: %s: got %s", i, #got, (got));      \
		else                                                                               \
			ck_assert_msg((got) != NULL && strcmp((got), (want)) == 0,                 \
			              "case %zu: %s: got %s want %s", i, #got,                     \
			              (got) ? (got) : "NULL", (want));                             \
	} while (0)
		CK_OPT(unit, cgroup_cases[i].unit);
		CK_OPT(pod, cgroup_cases[i].pod);
		CK_OPT(cid, cgroup_cases[i].cid);
		free(unit);
		free(pod);
		free(cid);
	}
}
END_TEST

/* ------------------------------------------------------------ fixtures */

static int
attest_fixture(const char *scenario, pid_t pid, const char *pod_file, const char *url,
               struct peer_info *peer, struct selector_set *out)
{
	char root[PATH_MAX];
	struct attest_opts o = {0};

	if (snprintf(root, sizeof(root), "%s/%s", fixtures, scenario) >= (int)sizeof(root))
		return CUBEID_ERR_INVALID_ARG;
	o.proc_root = root;
	o.pod_info_file = pod_file;
	o.kubelet_pods_url = url;
	o.sha256_max_bytes = 1024 * 1024;
	return attest_pid(pid, &o, peer, out);
}

START_TEST(test_fixture_v2_containerd_pod)
{
	struct selector_set s = {0};
	struct peer_info peer;

	attest_pod_cache_clear();
	ck_assert_int_eq(attest_fixture("v2-containerd", 4242, pods_json, NULL, &peer, &s), 0);
	dump(&s);
	ck_assert_int_eq(peer.pid, 4242);
	ck_assert_int_eq(peer.uid, 1001); /* effective, as SO_PEERCRED gives */
	ck_assert_int_eq(peer.gid, 2001);
	ck_has(&s, "unix:uid:1001");
	ck_has(&s, "unix:gid:2001");
	ck_hasnt(&s, "unix:uid:1000");
	ck_has(&s, "unix:supplementary_gid:10");
	ck_has(&s, "unix:supplementary_gid:30");
	ck_has(&s, "unix:path:/usr/local/bin/router");
	ck_assert_ptr_null(selector_set_get(&s, "unix:sha256")); /* exe dangles */
	ck_has(&s, "systemd:id:cri-containerd-" C1 ".scope");
	ck_has(&s, "k8s:ns:agentcube-system");
	ck_has(&s, "k8s:sa:agentcube-router");
	ck_has(&s, "k8s:pod-uid:5f3c1a2b-7d4e-4f6a-9b8c-0d1e2f3a4b5c");
	ck_has(&s, "k8s:pod-name:agentcube-router-7c9d8-abcde");
	ck_has(&s, "k8s:pod-label:app:agentcube-router");
	ck_has(&s, "k8s:pod-label:pod-template-hash:7c9d8");
	ck_has(&s, "k8s:node-name:node-1");
	ck_has(&s, "k8s:container-name:router");
	ck_hasnt(&s, "k8s:container-name:sidecar");
	ck_has(&s, "k8s:container-image:ghcr.io/volcano-sh/agentcube-router:v0.1.0");
	selector_set_clear(&s);
}
END_TEST

START_TEST(test_fixture_v1_cgroupfs_root)
{
	struct selector_set s = {0};
	struct peer_info peer;

	ck_assert_int_eq(attest_fixture("v1-cgroupfs", 77, pods_json, NULL, &peer, &s), 0);
	dump(&s);
	ck_has(&s, "unix:uid:0");
	ck_has(&s, "unix:user:root");
	ck_has(&s, "unix:group:root");
	ck_assert_ptr_null(selector_set_get(&s, "unix:supplementary_gid"));
	ck_assert_ptr_null(selector_set_get(&s, "systemd:id"));
	ck_has(&s, "k8s:ns:default");
	ck_has(&s, "k8s:sa:web");
	ck_has(&s, "k8s:container-name:web");
	ck_has(&s, "k8s:container-image:nginx:1.25");
	selector_set_clear(&s);
}
END_TEST

START_TEST(test_fixture_crio_init_container)
{
	struct selector_set s = {0};

	ck_assert_int_eq(attest_fixture("v2-crio", 5005, pods_json, NULL, NULL, &s), 0);
	dump(&s);
	ck_has(&s, "unix:uid:65532");
	ck_has(&s, "k8s:ns:sandbox");
	ck_has(&s, "k8s:sa:picod");
	ck_has(&s, "k8s:pod-label:agentcube.io/owner-hash:abc123");
	ck_has(&s, "k8s:container-name:setup");
	ck_hasnt(&s, "k8s:container-name:main");
	selector_set_clear(&s);
}
END_TEST

START_TEST(test_fixture_pod_not_listed)
{
	struct selector_set s = {0};

	/* docker on cgroup v1 with the systemd driver; the pod is not in the
	 * list: kernel facts only, no k8s selectors */
	ck_assert_int_eq(attest_fixture("v1-docker", 6006, pods_json, NULL, NULL, &s), 0);
	dump(&s);
	ck_has(&s, "unix:uid:0");
	ck_has(&s, "systemd:id:docker-" C4 ".scope");
	ck_assert_ptr_null(selector_set_get(&s, "k8s:ns"));
	ck_assert_ptr_null(selector_set_get(&s, "k8s:pod-uid"));
	selector_set_clear(&s);
	/* an unreadable pod list is not fatal either */
	ck_assert_int_eq(
	        attest_fixture("v2-containerd", 4242, "/nonexistent/pods.json", NULL, NULL, &s), 0);
	ck_has(&s, "unix:uid:1001");
	ck_assert_ptr_null(selector_set_get(&s, "k8s:ns"));
	selector_set_clear(&s);
}
END_TEST

START_TEST(test_fixture_systemd_and_sha256)
{
	struct selector_set s = {0};

	ck_assert_int_eq(attest_fixture("systemd", 100, NULL, NULL, NULL, &s), 0);
	dump(&s);
	ck_has(&s, "systemd:id:cubeid-demo.service");
	ck_has(&s, "unix:sha256:" APP_SHA256);
	ck_has(&s, "unix:path:../../bin/app");
	ck_has(&s, "unix:supplementary_gid:27");
	selector_set_clear(&s);
	ck_assert_int_eq(attest_fixture("user-session", 200, NULL, NULL, NULL, &s), 0);
	ck_has(&s, "systemd:id:app-gnome-foo-1234.scope");
	selector_set_clear(&s);
	/* no such pid */
	ck_assert_int_eq(attest_fixture("systemd", 101, NULL, NULL, NULL, &s),
	                 CUBEID_ERR_NOT_FOUND);
	ck_assert_uint_eq(s.n, 0);
}
END_TEST

START_TEST(test_sha256_size_limit)
{
	char root[PATH_MAX];
	struct attest_opts o = {0};
	struct selector_set s = {0};

	snprintf(root, sizeof(root), "%s/systemd", fixtures);
	o.proc_root = root;
	o.sha256_max_bytes = 20; /* bin/app is 21 bytes */
	ck_assert_int_eq(attest_pid(100, &o, NULL, &s), 0);
	ck_assert_ptr_null(selector_set_get(&s, "unix:sha256"));
	ck_has(&s, "unix:path:../../bin/app");
	selector_set_clear(&s);
	o.sha256_max_bytes = 21;
	ck_assert_int_eq(attest_pid(100, &o, NULL, &s), 0);
	ck_has(&s, "unix:sha256:" APP_SHA256);
	selector_set_clear(&s);
}
END_TEST

START_TEST(test_pod_list_json_bad)
{
	struct selector_set s = {0};
	bool found = true;

	ck_assert_int_eq(attest_k8s_from_json("{", 1, "x", NULL, &s, &found), CUBEID_ERR_PARSE);
	ck_assert_int_eq(attest_k8s_from_json("{\"items\":{}}", 12, "x", NULL, &s, &found),
	                 CUBEID_ERR_PARSE);
	ck_assert_int_eq(
	        attest_k8s_from_json("{\"items\":[1,{\"metadata\":7}]}", 28, "x", NULL, &s, &found),
	        0);
	ck_assert(!found);
	ck_assert_uint_eq(s.n, 0);
}
END_TEST

/* ------------------------------------------------ loopback "kubelet" */

struct kubelet {
	int fd;
	int port;
	int requests;
	int stop;
	int hold; /* answer only after a byte arrives on release[0] */
	int release[2];
	pthread_t th;
};

static void *
kubelet_main(void *arg)
{
	struct kubelet *k = arg;
	char *body = NULL, hdr[256], req[4096];
	size_t blen = 0;
	FILE *f = fopen(pods_json, "r");

	if (f != NULL) {
		fseek(f, 0, SEEK_END);
		blen = (size_t)ftell(f);
		fseek(f, 0, SEEK_SET);
		body = malloc(blen);
		if (body != NULL && fread(body, 1, blen, f) != blen)
			blen = 0;
		fclose(f);
	}
	for (;;) {
		int c = accept(k->fd, NULL, NULL);
		ssize_t n;

		if (c < 0 || __atomic_load_n(&k->stop, __ATOMIC_SEQ_CST))
			break;
		n = read(c, req, sizeof(req) - 1);
		if (n > 0 && __atomic_load_n(&k->hold, __ATOMIC_SEQ_CST)) {
			char x;

			if (read(k->release[0], &x, 1) != 1)
				perror("kubelet hold");
		}
		if (n > 0 && strncmp(req, "GET /pods", 9) == 0) {
			__atomic_add_fetch(&k->requests, 1, __ATOMIC_SEQ_CST);
			snprintf(hdr, sizeof(hdr),
			         "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
			         "Content-Length: %zu\r\nConnection: close\r\n\r\n",
			         blen);
			if (write(c, hdr, strlen(hdr)) < 0 || write(c, body, blen) < 0)
				perror("kubelet write");
		} else if (n > 0) {
			const char *nf = "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n"
			                 "Connection: close\r\n\r\n";
			if (write(c, nf, strlen(nf)) < 0)
				perror("kubelet write");
		}
		close(c);
	}
	free(body);
	return NULL;
}

static void
kubelet_start(struct kubelet *k)
{
	struct sockaddr_in a = {0};
	socklen_t al = sizeof(a);

	memset(k, 0, sizeof(*k));
	ck_assert_int_eq(pipe(k->release), 0);
	k->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ck_assert_int_ge(k->fd, 0);
	a.sin_family = AF_INET;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ck_assert_int_eq(bind(k->fd, (struct sockaddr *)&a, sizeof(a)), 0);
	ck_assert_int_eq(listen(k->fd, 8), 0);
	ck_assert_int_eq(getsockname(k->fd, (struct sockaddr *)&a, &al), 0);
	k->port = ntohs(a.sin_port);
	ck_assert_int_eq(pthread_create(&k->th, NULL, kubelet_main, k), 0);
}

static void
kubelet_stop(struct kubelet *k)
{
	struct sockaddr_in a = {0};
	int c;

	__atomic_store_n(&k->stop, 1, __ATOMIC_SEQ_CST);
	/* wake accept() */
	c = socket(AF_INET, SOCK_STREAM, 0);
	a.sin_family = AF_INET;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	a.sin_port = htons((uint16_t)k->port);
	if (connect(c, (struct sockaddr *)&a, sizeof(a)) != 0)
		perror("connect");
	close(c);
	pthread_join(k->th, NULL);
	close(k->fd);
	close(k->release[0]);
	close(k->release[1]);
}

/* attest_fixture() with a kubelet URL until selector want appears: the
 * kubelet is asked in the background, and a slow machine (valgrind) may
 * answer after attestation stopped waiting.  A bounded loop, no timing. */
static int
attest_fixture_until(const char *scenario, pid_t pid, const char *url, const char *want,
                     struct selector_set *out)
{
	int i, r = 0;

	for (i = 0; i < 600; i++) {
		if ((r = attest_fixture(scenario, pid, NULL, url, NULL, out)) != 0 ||
		    selector_set_has(out, want))
			return r;
		selector_set_clear(out);
		usleep(50 * 1000);
	}
	return attest_fixture(scenario, pid, NULL, url, NULL, out);
}

START_TEST(test_kubelet_url)
{
	struct kubelet k;
	struct selector_set s = {0};
	char url[128];
	int before;

	kubelet_start(&k);
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/pods", k.port);
	attest_pod_cache_clear();
	ck_assert_int_eq(
	        attest_fixture_until("v2-containerd", 4242, url, "k8s:sa:agentcube-router", &s), 0);
	dump(&s);
	ck_has(&s, "k8s:sa:agentcube-router");
	ck_has(&s, "k8s:container-name:router");
	ck_assert_int_ge(__atomic_load_n(&k.requests, __ATOMIC_SEQ_CST), 1);
	selector_set_clear(&s);
	/* a cleared cache must fetch again */
	before = __atomic_load_n(&k.requests, __ATOMIC_SEQ_CST);
	attest_pod_cache_clear();
	ck_assert_int_eq(attest_fixture_until("v1-cgroupfs", 77, url, "k8s:sa:web", &s), 0);
	ck_has(&s, "k8s:sa:web");
	ck_assert_int_gt(__atomic_load_n(&k.requests, __ATOMIC_SEQ_CST), before);
	selector_set_clear(&s);
	/* a wrong path gives 404: no k8s selectors, still attested */
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/nope", k.port);
	attest_pod_cache_clear();
	ck_assert_int_eq(attest_fixture("v2-containerd", 4242, NULL, url, NULL, &s), 0);
	ck_assert_ptr_null(selector_set_get(&s, "k8s:ns"));
	ck_has(&s, "unix:uid:1001");
	selector_set_clear(&s);
	kubelet_stop(&k);
	attest_pod_cache_clear();
}
END_TEST

/* A kubelet that does not answer: attestation goes on without it (the
 * loop thread is not held), other lookups are not blocked by the fetch
 * in flight, and once the kubelet answers the cache has the pod. */
START_TEST(test_kubelet_slow_does_not_block)
{
	struct kubelet k;
	struct selector_set s = {0};
	char url[128];
	int i;

	kubelet_start(&k);
	__atomic_store_n(&k.hold, 1, __ATOMIC_SEQ_CST);
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/pods", k.port);
	attest_pod_cache_clear();
	ck_assert_int_eq(attest_fixture("v2-containerd", 4242, NULL, url, NULL, &s), 0);
	ck_assert_ptr_null(selector_set_get(&s, "k8s:ns")); /* no answer yet */
	ck_has(&s, "unix:uid:1001");
	selector_set_clear(&s);
	/* the fetch is still held: the pod-info file is served meanwhile */
	ck_assert_int_eq(attest_fixture("v2-containerd", 4242, pods_json, NULL, NULL, &s), 0);
	ck_has(&s, "k8s:sa:agentcube-router");
	selector_set_clear(&s);
	/* the kubelet answers; the background fetch fills the cache */
	__atomic_store_n(&k.hold, 0, __ATOMIC_SEQ_CST);
	ck_assert_int_eq(write(k.release[1], "x", 1), 1);
	for (i = 0; i < 600; i++) {
		ck_assert_int_eq(attest_fixture("v2-containerd", 4242, NULL, url, NULL, &s), 0);
		if (selector_set_get(&s, "k8s:sa") != NULL)
			break;
		selector_set_clear(&s);
		usleep(50 * 1000);
	}
	ck_has(&s, "k8s:sa:agentcube-router");
	selector_set_clear(&s);
	kubelet_stop(&k);
	attest_pod_cache_clear();
}
END_TEST

/* ------------------------------------------------ kubelet secure port */

struct https_kubelet {
	char *dir;
	char cert[PATH_MAX], key[PATH_MAX], token[PATH_MAX], wrong[PATH_MAX], log[PATH_MAX];
	pid_t pid;
	int port;
};

static void
put_text(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	ck_assert_ptr_nonnull(f);
	ck_assert_int_ge(fputs(text, f), 0);
	ck_assert_int_eq(fclose(f), 0);
}

static void
https_kubelet_start(struct https_kubelet *k)
{
	char port_file[PATH_MAX], script[PATH_MAX], subj[] = "/CN=127.0.0.1";
	char *gen[] = {"openssl",
	               "req",
	               "-x509",
	               "-newkey",
	               "ec",
	               "-pkeyopt",
	               "ec_paramgen_curve:P-256",
	               "-nodes",
	               "-keyout",
	               k->key,
	               "-out",
	               k->cert,
	               "-days",
	               "1",
	               "-subj",
	               subj,
	               "-addext",
	               "subjectAltName=IP:127.0.0.1",
	               NULL};
	FILE *f;
	int i;

	k->dir = th_mkdtemp("cubeid-kubelet");
	ck_assert_ptr_nonnull(k->dir);
	snprintf(k->cert, sizeof(k->cert), "%s/cert.pem", k->dir);
	snprintf(k->key, sizeof(k->key), "%s/key.pem", k->dir);
	snprintf(k->token, sizeof(k->token), "%s/token", k->dir);
	snprintf(k->wrong, sizeof(k->wrong), "%s/wrong-token", k->dir);
	snprintf(k->log, sizeof(k->log), "%s/auth.log", k->dir);
	snprintf(port_file, sizeof(port_file), "%s/port", k->dir);
	snprintf(script, sizeof(script), "%s/tests/kubelet-https.py", CUBEID_SRCDIR);
	ck_assert_int_eq(th_run(gen, "/dev/null"), 0);
	put_text(k->token, "eyJhbGciOiJSUzI1NiJ9.sa-token-for-cubeid.c2ln\n");
	put_text(k->wrong, "not-the-token\n");
	k->pid = fork();
	ck_assert_int_ge(k->pid, 0);
	if (k->pid == 0) {
		execlp("python3", "python3", script, k->cert, k->key, k->token, pods_json,
		       port_file, k->log, (char *)NULL);
		_exit(127);
	}
	for (i = 0; i < 600 && (f = fopen(port_file, "r")) == NULL; i++)
		usleep(50 * 1000);
	ck_assert_msg(f != NULL, "the loopback kubelet (python3 %s) did not start", script);
	ck_assert_int_eq(fscanf(f, "%d", &k->port), 1);
	fclose(f);
}

static void
https_kubelet_stop(struct https_kubelet *k)
{
	int st;

	kill(k->pid, SIGTERM);
	waitpid(k->pid, &st, 0);
	th_rmtree(k->dir);
	free(k->dir);
}

/* How many lines of the server's log are exactly line. */
static int
log_count(const char *path, const char *line)
{
	char buf[512];
	FILE *f = fopen(path, "r");
	int n = 0;

	if (f == NULL)
		return 0;
	while (fgets(buf, sizeof(buf), f) != NULL) {
		buf[strcspn(buf, "\n")] = '\0';
		n += strcmp(buf, line) == 0;
	}
	fclose(f);
	return n;
}

static int
attest_https(const char *url, const char *token, const char *ca, struct selector_set *out)
{
	char root[PATH_MAX];
	struct attest_opts o = {0};

	snprintf(root, sizeof(root), "%s/v2-containerd", fixtures);
	o.proc_root = root;
	o.kubelet_pods_url = url;
	o.kubelet_token_file = token;
	o.kubelet_ca_file = ca;
	attest_pod_cache_clear();
	return attest_pid(4242, &o, NULL, out);
}

/* The kubelet's secure port: https with a bearer token and a CA file. */
START_TEST(test_kubelet_secure_port)
{
	static const char bearer[] = "Bearer eyJhbGciOiJSUzI1NiJ9.sa-token-for-cubeid.c2ln";
	struct https_kubelet k;
	struct selector_set s = {0};
	char url[128], plain[128];
	int i;

	https_kubelet_start(&k);
	snprintf(url, sizeof(url), "https://127.0.0.1:%d/pods", k.port);
	/* the right token and CA: the pod's selectors, and the token was sent
	 * (a first fetch may outlast the wait: ask until the cache has it) */
	for (i = 0; i < 600; i++) {
		ck_assert_int_eq(attest_https(url, k.token, k.cert, &s), 0);
		if (selector_set_get(&s, "k8s:sa") != NULL || log_count(k.log, bearer) > 0)
			break;
		selector_set_clear(&s);
		usleep(50 * 1000);
	}
	selector_set_clear(&s);
	{
		/* the cache now holds it, or the next ask gets it */
		struct attest_opts o = {0};
		char root[PATH_MAX];

		snprintf(root, sizeof(root), "%s/v2-containerd", fixtures);
		o.proc_root = root;
		o.kubelet_pods_url = url;
		o.kubelet_token_file = k.token;
		o.kubelet_ca_file = k.cert;
		for (i = 0; i < 600; i++) {
			ck_assert_int_eq(attest_pid(4242, &o, NULL, &s), 0);
			if (selector_set_get(&s, "k8s:sa") != NULL)
				break;
			selector_set_clear(&s);
			usleep(50 * 1000);
		}
	}
	dump(&s);
	ck_has(&s, "k8s:sa:agentcube-router");
	ck_has(&s, "k8s:container-name:router");
	selector_set_clear(&s);
	ck_assert_int_ge(log_count(k.log, bearer), 1);
	ck_assert_int_eq(log_count(k.log, ""), 0); /* never without the token */

	/* a wrong token: 401, no k8s selectors (the rest of the attestation
	 * stands) */
	for (i = 0; i < 600 && log_count(k.log, "Bearer not-the-token") == 0; i++) {
		ck_assert_int_eq(attest_https(url, k.wrong, k.cert, &s), 0);
		ck_assert_ptr_null(selector_set_get(&s, "k8s:sa"));
		ck_has(&s, "unix:uid:1001");
		selector_set_clear(&s);
		usleep(50 * 1000);
	}
	ck_assert_int_ge(log_count(k.log, "Bearer not-the-token"), 1);

	/* no CA file: the self-signed certificate is refused, nothing sent */
	i = log_count(k.log, bearer);
	ck_assert_int_eq(attest_https(url, k.token, NULL, &s), 0);
	ck_assert_ptr_null(selector_set_get(&s, "k8s:sa"));
	selector_set_clear(&s);
	usleep(500 * 1000); /* let a stray fetch reach the server, if any */
	ck_assert_int_eq(log_count(k.log, bearer), i);

	/* plain http with a token: the token is never sent */
	snprintf(plain, sizeof(plain), "http://127.0.0.1:%d/pods", k.port);
	ck_assert_int_eq(attest_https(plain, k.token, NULL, &s), 0);
	ck_assert_ptr_null(selector_set_get(&s, "k8s:sa"));
	selector_set_clear(&s);
	usleep(500 * 1000);
	ck_assert_int_eq(log_count(k.log, bearer), i);
	https_kubelet_stop(&k);
	attest_pod_cache_clear();
}
END_TEST

/* ------------------------------------------------ pid reuse (fixture) */

static void
write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	ck_assert_ptr_nonnull(f);
	ck_assert_int_ge(fputs(text, f), 0);
	ck_assert_int_eq(fclose(f), 0);
}

static void
copy_file(const char *from, const char *to)
{
	char buf[4096];
	FILE *a = fopen(from, "r"), *b = fopen(to, "w");
	size_t n;

	ck_assert_ptr_nonnull(a);
	ck_assert_ptr_nonnull(b);
	while ((n = fread(buf, 1, sizeof(buf), a)) > 0)
		ck_assert_uint_eq(fwrite(buf, 1, n, b), n);
	fclose(a);
	fclose(b);
}

static const char *reuse_stat; /* what the hook writes into stat */

static void
reuse_hook(const char *proc_dir)
{
	char p[1100];

	snprintf(p, sizeof(p), "%s/stat", proc_dir);
	write_file(p, reuse_stat);
}

/* /proc/PID/stat shows another start time when it is read again after
 * everything else: exactly what a pid reused during attestation looks like. */
START_TEST(test_pid_reuse_detected)
{
	char tmpl[] = "/tmp/cubeid-attest-XXXXXX", dir[64], p[128], from[1200];
	static const char st1[] = "300 (a) S 1 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 5000 0 0\n";
	static const char st2[] = "300 (b) S 1 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 7777 0 0\n";
	struct attest_opts o = {0};
	struct selector_set s = {0};
	char *root = mkdtemp(tmpl);

	ck_assert_ptr_nonnull(root);
	snprintf(dir, sizeof(dir), "%s/300", tmpl);
	ck_assert_int_eq(mkdir(dir, 0700), 0);
	snprintf(from, sizeof(from), "%s/systemd/100/status", fixtures);
	snprintf(p, sizeof(p), "%s/status", dir);
	copy_file(from, p);
	snprintf(from, sizeof(from), "%s/systemd/100/cgroup", fixtures);
	snprintf(p, sizeof(p), "%s/cgroup", dir);
	copy_file(from, p);
	snprintf(p, sizeof(p), "%s/stat", dir);
	write_file(p, st1);
	o.proc_root = root;
	attest_test_hook_before_recheck = reuse_hook;

	reuse_stat = st2;
	ck_assert_int_eq(attest_pid(300, &o, NULL, &s), CUBEID_ERR_PEER_CHANGED);
	ck_assert_uint_eq(s.n, 0);

	/* the same start time again is accepted */
	write_file(p, st1);
	reuse_stat = st1;
	ck_assert_int_eq(attest_pid(300, &o, NULL, &s), 0);
	ck_has(&s, "systemd:id:cubeid-demo.service");
	selector_set_clear(&s);

	/* stat gone (the process exited) between the reads */
	reuse_stat = "";
	ck_assert_int_eq(attest_pid(300, &o, NULL, &s), CUBEID_ERR_PARSE);
	ck_assert_uint_eq(s.n, 0);
	attest_test_hook_before_recheck = NULL;

	unlink(p);
	snprintf(p, sizeof(p), "%s/status", dir);
	unlink(p);
	snprintf(p, sizeof(p), "%s/cgroup", dir);
	unlink(p);
	rmdir(dir);
	rmdir(root);
}
END_TEST

/* comm may hold spaces and parentheses; an oversized cgroup file fails
 * closed rather than being read in part. */
START_TEST(test_proc_edge_cases)
{
	char tmpl[] = "/tmp/cubeid-attest-XXXXXX", dir[64], p[128], *big;
	struct attest_opts o = {0};
	struct selector_set s = {0};
	size_t i, len = 70 * 1024;

	ck_assert_ptr_nonnull(mkdtemp(tmpl));
	snprintf(dir, sizeof(dir), "%s/400", tmpl);
	ck_assert_int_eq(mkdir(dir, 0700), 0);
	snprintf(p, sizeof(p), "%s/stat", dir);
	write_file(p, "400 (a) S (b) 1 2) S 1 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 99 0 0\n");
	snprintf(p, sizeof(p), "%s/status", dir);
	write_file(p, "Name:\ta\nUid:\t5\t6\t6\t6\nGid:\t7\t8\t8\t8\nGroups:\t\n");
	snprintf(p, sizeof(p), "%s/cgroup", dir);
	write_file(p, "0::/system.slice/x.service\n");
	o.proc_root = tmpl;
	ck_assert_int_eq(attest_pid(400, &o, NULL, &s), 0);
	ck_has(&s, "unix:uid:6");
	ck_has(&s, "unix:gid:8");
	ck_has(&s, "systemd:id:x.service");
	ck_assert_ptr_null(selector_set_get(&s, "unix:supplementary_gid"));
	ck_assert_ptr_null(selector_set_get(&s, "unix:path")); /* no exe */
	selector_set_clear(&s);

	big = malloc(len + 1);
	ck_assert_ptr_nonnull(big);
	for (i = 0; i < len; i++)
		big[i] = i % 64 == 63 ? '\n' : 'x';
	big[len] = '\0';
	write_file(p, big);
	free(big);
	ck_assert_int_eq(attest_pid(400, &o, NULL, &s), CUBEID_ERR_TOO_LARGE);
	ck_assert_uint_eq(s.n, 0);

	/* a status without Uid: is malformed */
	snprintf(p, sizeof(p), "%s/status", dir);
	write_file(p, "Name:\ta\n");
	ck_assert_int_eq(attest_pid(400, &o, NULL, &s), CUBEID_ERR_PARSE);

	unlink(p);
	snprintf(p, sizeof(p), "%s/stat", dir);
	unlink(p);
	snprintf(p, sizeof(p), "%s/cgroup", dir);
	unlink(p);
	rmdir(dir);
	rmdir(tmpl);
}
END_TEST

/* ------------------------------------------------ real processes */

static void
sha256_fd_hex(int fd, char hex[65])
{
	unsigned char md[32], buf[65536];
	unsigned int mdlen = 0, i;
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	FILE *f = fd >= 0 ? fdopen(fd, "rb") : NULL;
	size_t n;

	ck_assert_ptr_nonnull(f);
	ck_assert_ptr_nonnull(ctx);
	ck_assert_int_eq(EVP_DigestInit_ex(ctx, EVP_sha256(), NULL), 1);
	while ((n = fread(buf, 1, sizeof(buf), f)) > 0)
		ck_assert_int_eq(EVP_DigestUpdate(ctx, buf, n), 1);
	ck_assert_int_eq(EVP_DigestFinal_ex(ctx, md, &mdlen), 1);
	for (i = 0; i < 32; i++)
		snprintf(hex + 2 * i, 3, "%02x", md[i]);
	EVP_MD_CTX_free(ctx);
	fclose(f);
}

START_TEST(test_self_through_socketpair)
{
	struct attest_opts o = {0};
	struct selector_set s = {0};
	struct peer_info peer;
	char exe[PATH_MAX], sel[PATH_MAX + 32], hex[65];
	ssize_t n;
	int sv[2], procfd;

	o.sha256_max_bytes = 256u << 20;
	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	ck_assert_int_eq(attest_peer_fd(sv[0], &o, &peer, &s), 0);
	dump(&s);
	ck_assert_int_eq(peer.pid, getpid());
	ck_assert_int_eq(peer.uid, geteuid());
	ck_assert_int_eq(peer.gid, getegid());
	snprintf(sel, sizeof(sel), "unix:uid:%u", (unsigned)geteuid());
	ck_has(&s, sel);
	snprintf(sel, sizeof(sel), "unix:gid:%u", (unsigned)getegid());
	ck_has(&s, sel);
	/* through a /proc/PID directory fd as attest.c reads it (valgrind
	 * rewrites only readlink("/proc/self/exe") to the client program) */
	snprintf(sel, sizeof(sel), "/proc/%ld", (long)getpid());
	procfd = open(sel, O_RDONLY | O_DIRECTORY);
	ck_assert_int_ge(procfd, 0);
	n = readlinkat(procfd, "exe", exe, sizeof(exe) - 1);
	ck_assert_int_gt(n, 0);
	exe[n] = '\0';
	snprintf(sel, sizeof(sel), "unix:path:%s", exe);
	ck_has(&s, sel);
	sha256_fd_hex(openat(procfd, "exe", O_RDONLY), hex);
	close(procfd);
	snprintf(sel, sizeof(sel), "unix:sha256:%s", hex);
	ck_has(&s, sel);
	{
		struct passwd *pw = getpwuid(geteuid());
		if (pw != NULL) {
			snprintf(sel, sizeof(sel), "unix:user:%s", pw->pw_name);
			ck_has(&s, sel);
		}
	}
	selector_set_clear(&s);
	/* attest_pid agrees */
	ck_assert_int_eq(attest_pid(getpid(), &o, &peer, &s), 0);
	snprintf(sel, sizeof(sel), "unix:path:%s", exe);
	ck_has(&s, sel);
	selector_set_clear(&s);
	close(sv[0]);
	close(sv[1]);
	/* not a socket */
	{
		int fd = open("/dev/null", O_RDONLY);
		ck_assert_int_ne(attest_peer_fd(fd, &o, NULL, &s), 0);
		close(fd);
	}
}
END_TEST

/* A child that connected and then exited: its pid is gone (or reused)
 * and attestation must not describe whatever holds it now. */
START_TEST(test_peer_gone)
{
	struct attest_opts o = {0};
	struct selector_set s = {0};
	struct sockaddr_un a = {0};
	socklen_t alen;
	int l, c, st, r;
	pid_t child;

	l = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	ck_assert_int_ge(l, 0);
	a.sun_family = AF_UNIX;
	/* abstract namespace: no file to clean up */
	alen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 +
	                   (size_t)snprintf(a.sun_path + 1, sizeof(a.sun_path) - 1,
	                                    "cubeid-test-attest-%ld", (long)getpid()));
	ck_assert_int_eq(bind(l, (struct sockaddr *)&a, alen), 0);
	ck_assert_int_eq(listen(l, 1), 0);
	child = fork();
	ck_assert_int_ge(child, 0);
	if (child == 0) {
		int cs = socket(AF_UNIX, SOCK_STREAM, 0);
		_exit(cs >= 0 && connect(cs, (struct sockaddr *)&a, alen) == 0 ? 0 : 1);
	}
	ck_assert_int_eq(waitpid(child, &st, 0), child);
	/* (under valgrind the exit status can carry its leak report) */
	ck_assert(WIFEXITED(st));
	c = accept(l, NULL, NULL);
	ck_assert_int_ge(c, 0);
	/* the peer connected, then exited and was reaped */
	r = attest_peer_fd(c, &o, NULL, &s);
	ck_assert_int_eq(r, CUBEID_ERR_PEER_CHANGED);
	ck_assert_uint_eq(s.n, 0);
	ck_assert_int_eq(attest_pid(child, &o, NULL, &s), CUBEID_ERR_NOT_FOUND);
	/* reading nothing of /proc still refuses a peer that is gone */
	o.skip = ATTEST_SKIP_ALL;
	ck_assert_int_eq(attest_peer_fd(c, &o, NULL, &s), CUBEID_ERR_PEER_CHANGED);
	ck_assert_uint_eq(s.n, 0);
	close(c);
	close(l);
}
END_TEST

/* What entries need decides what attestation reads. */
START_TEST(test_skip_for_entries)
{
	static const struct {
		const char *yaml;
		unsigned skip;
	} t[] = {
	        {"entries:\n- spiffe_id: spiffe://{td}/a\n  selectors: [unix:uid:1]\n",
	         ATTEST_SKIP_ALL},
	        {"entries:\n- spiffe_id: spiffe://{td}/a\n  selectors: [unix:gid:1, unix:user:x]\n",
	         ATTEST_SKIP_ALL & ~ATTEST_SKIP_NAMES},
	        {"entries:\n- spiffe_id: spiffe://{td}/a\n  selectors: [unix:group:wheel]\n",
	         ATTEST_SKIP_ALL & ~ATTEST_SKIP_NAMES},
	        {"entries:\n- spiffe_id: spiffe://{td}/a\n  selectors: "
	         "[unix:supplementary_gid:27]\n",
	         ATTEST_SKIP_ALL & ~ATTEST_SKIP_GROUPS},
	        {"entries:\n- spiffe_id: spiffe://{td}/a\n  selectors: [unix:uid:1]\n"
	         "- spiffe_id: spiffe://{td}/b\n  selectors: [unix:sha256:" APP_SHA256 "]\n",
	         ATTEST_SKIP_ALL & ~ATTEST_SKIP_PATH},
	        /* the LSM label comes with the connection: nothing to read */
	        {"entries:\n- spiffe_id: spiffe://{td}/a\n  selectors: "
	         "[unix:seclabel:system_u:system_r:app_t:s0]\n",
	         ATTEST_SKIP_ALL},
	        {"entries:\n- spiffe_id: spiffe://{td}/a\n  selectors: [systemd:id:x.service]\n",
	         ATTEST_SKIP_ALL & ~ATTEST_SKIP_CGROUP},
	        /* a template needs its selectors even when no selector names them */
	        {"entries:\n- spiffe_id: spiffe://{td}/ns/{k8s:ns}/sa/{k8s:sa}\n"
	         "  selectors: [unix:uid:1]\n",
	         ATTEST_SKIP_ALL & ~ATTEST_SKIP_CGROUP},
	        {"entries:\n- spiffe_id: spiffe://{td}/u/{unix:user}\n  selectors: [unix:uid:1]\n",
	         ATTEST_SKIP_ALL & ~ATTEST_SKIP_NAMES},
	        {"entries:\n- spiffe_id: spiffe://{td}/a\n  selectors: [unix:path:/bin/x, "
	         "k8s:ns:a, "
	         "unix:user:u, unix:supplementary_gid:2]\n",
	         0},
	};
	struct entry_set *es;
	char *err = NULL;
	size_t i;

	ck_assert_uint_eq(attest_skip_for(NULL), ATTEST_SKIP_ALL);
	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		es = NULL;
		ck_assert_msg(entries_parse(t[i].yaml, strlen(t[i].yaml), "t", &es, &err) == 0,
		              "%zu: %s", i, err != NULL ? err : "");
		ck_assert_msg(attest_skip_for(es) == t[i].skip, "%zu: skip %#x, want %#x", i,
		              attest_skip_for(es), t[i].skip);
		entries_free(es);
	}
}
END_TEST

/* Skipped facts are not read: fixture trees have each of them. */
START_TEST(test_skip_leaves_out_selectors)
{
	char root[PATH_MAX];
	struct attest_opts o = {0};
	struct selector_set s = {0};
	int sv[2];

	snprintf(root, sizeof(root), "%s/systemd", fixtures);
	o.proc_root = root;
	o.sha256_max_bytes = 1024;
	o.skip = ATTEST_SKIP_PATH;
	ck_assert_int_eq(attest_pid(100, &o, NULL, &s), 0);
	ck_assert_ptr_null(selector_set_get(&s, "unix:path"));
	ck_assert_ptr_null(selector_set_get(&s, "unix:sha256"));
	ck_has(&s, "systemd:id:cubeid-demo.service");
	ck_has(&s, "unix:supplementary_gid:27");
	selector_set_clear(&s);
	o.skip = ATTEST_SKIP_CGROUP | ATTEST_SKIP_GROUPS;
	ck_assert_int_eq(attest_pid(100, &o, NULL, &s), 0);
	ck_assert_ptr_null(selector_set_get(&s, "systemd:id"));
	ck_assert_ptr_null(selector_set_get(&s, "unix:supplementary_gid"));
	ck_has(&s, "unix:sha256:" APP_SHA256);
	ck_assert_ptr_nonnull(selector_set_get(&s, "unix:uid"));
	selector_set_clear(&s);
	/* everything skipped: SO_PEERCRED's uid and gid, and nothing else */
	o = (struct attest_opts){.skip = ATTEST_SKIP_ALL};
	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	ck_assert_int_eq(attest_peer_fd(sv[0], &o, NULL, &s), 0);
	ck_assert_uint_eq(s.n, 2);
	ck_assert_ptr_nonnull(selector_set_get(&s, "unix:uid"));
	ck_assert_ptr_nonnull(selector_set_get(&s, "unix:gid"));
	selector_set_clear(&s);
	/* ... and the names when asked for */
	o.skip = ATTEST_SKIP_ALL & ~ATTEST_SKIP_NAMES;
	ck_assert_int_eq(attest_peer_fd(sv[0], &o, NULL, &s), 0);
	if (getpwuid(geteuid()) != NULL)
		ck_assert_ptr_nonnull(selector_set_get(&s, "unix:user"));
	ck_assert_ptr_null(selector_set_get(&s, "unix:path"));
	selector_set_clear(&s);
	close(sv[0]);
	close(sv[1]);
}
END_TEST

/* unix:user and unix:group are looked up once, then served from the cache
 * until it is cleared (or the TTL passes). */
START_TEST(test_name_cache)
{
	struct attest_opts o = {.skip = ATTEST_SKIP_ALL & ~ATTEST_SKIP_NAMES};
	struct selector_set s1 = {0}, s2 = {0};
	unsigned long n0;
	size_t i;
	int sv[2];

	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	attest_name_cache_clear();
	n0 = attest_name_lookups;
	ck_assert_int_eq(attest_peer_fd(sv[0], &o, NULL, &s1), 0);
	ck_assert_uint_eq(attest_name_lookups, n0 + 2); /* the user and the group */
	for (i = 0; i < 10; i++) {
		ck_assert_int_eq(attest_peer_fd(sv[0], &o, NULL, &s2), 0);
		ck_assert_uint_eq(s1.n, s2.n);
		selector_set_clear(&s2);
	}
	ck_assert_uint_eq(attest_name_lookups, n0 + 2);
	attest_name_cache_clear();
	ck_assert_int_eq(attest_peer_fd(sv[0], &o, NULL, &s2), 0);
	ck_assert_uint_eq(attest_name_lookups, n0 + 4);
	ck_assert_uint_eq(s1.n, s2.n);
	for (i = 0; i < s1.n; i++)
		ck_assert_str_eq(s1.v[i], s2.v[i]);
	selector_set_clear(&s1);
	selector_set_clear(&s2);
	close(sv[0]);
	close(sv[1]);
}
END_TEST

/* ------------------------------------------------ exec after connect */

static bool
has_type(const struct selector_set *s, const char *type)
{
	return selector_set_get(s, type) != NULL;
}

/* unix:path and unix:sha256 only for a peer that holds the other end of
 * the connection close-on-exec; uid and gid regardless. */
START_TEST(test_exec_selectors_need_cloexec_holder)
{
	struct attest_opts o = {.sha256_max_bytes = 256u << 20};
	struct selector_set s = {0};
	char sel[64];
	int sv[2], go[2];
	pid_t child;

	snprintf(sel, sizeof(sel), "unix:uid:%u", (unsigned)geteuid());
	/* held, but not close-on-exec: as if inherited across exec */
	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	ck_assert_int_eq(attest_peer_fd(sv[0], &o, NULL, &s), 0);
	ck_has(&s, sel);
	ck_assert(!has_type(&s, "unix:path"));
	ck_assert(!has_type(&s, "unix:sha256"));
	selector_set_clear(&s);
	/* the same descriptor marked close-on-exec */
	ck_assert_int_eq(fcntl(sv[1], F_SETFD, FD_CLOEXEC), 0);
	ck_assert_int_eq(attest_peer_fd(sv[0], &o, NULL, &s), 0);
	ck_assert(has_type(&s, "unix:path"));
	ck_assert(has_type(&s, "unix:sha256"));
	selector_set_clear(&s);
	/* a copy close-on-exec among others that are not: held */
	{
		int extra = dup(sv[1]); /* dup() clears FD_CLOEXEC */

		ck_assert_int_ge(extra, 0);
		ck_assert_int_eq(attest_peer_fd(sv[0], &o, NULL, &s), 0);
		ck_assert(has_type(&s, "unix:path"));
		selector_set_clear(&s);
		close(extra);
	}
	/* held by another process only (SO_PEERCRED still names us) */
	ck_assert_int_eq(pipe(go), 0);
	child = fork();
	ck_assert_int_ge(child, 0);
	if (child == 0) {
		char c;

		close(go[1]);
		(void)read(go[0], &c, 1); /* until the parent is done */
		_exit(0);
	}
	close(go[0]);
	close(sv[1]);
	ck_assert_int_eq(attest_peer_fd(sv[0], &o, NULL, &s), 0);
	ck_has(&s, sel);
	ck_assert(!has_type(&s, "unix:path"));
	ck_assert(!has_type(&s, "unix:sha256"));
	selector_set_clear(&s);
	close(go[1]);
	waitpid(child, NULL, 0);
	/* nobody holds it any more: still not an error, just no exe */
	ck_assert_int_eq(attest_peer_fd(sv[0], &o, NULL, &s), 0);
	ck_assert(!has_type(&s, "unix:path"));
	selector_set_clear(&s);
	close(sv[0]);
}
END_TEST

/* unix:seclabel is SO_PEERSEC as the kernel gives it, or absent when no
 * LSM labels sockets (as here, most likely). */
START_TEST(test_seclabel_is_so_peersec)
{
	struct attest_opts o = {.skip = ATTEST_SKIP_ALL};
	struct selector_set s = {0};
	char want[ATTEST_SECLABEL_MAX + 1], *label = NULL, sel[ATTEST_SECLABEL_MAX + 32];
	socklen_t len = ATTEST_SECLABEL_MAX;
	int sv[2];
	bool have;

	ck_assert(selector_type_known("unix:seclabel"));
	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	have = getsockopt(sv[0], SOL_SOCKET, SO_PEERSEC, want, &len) == 0 && len > 0;
	if (have)
		want[len < ATTEST_SECLABEL_MAX ? len : ATTEST_SECLABEL_MAX] = '\0';
	have = have && want[0] != '\0';
	ck_assert_int_eq(attest_conn_seclabel(sv[0], &label), 0);
	ck_assert_int_eq(attest_peer_fd(sv[0], &o, NULL, &s), 0);
	if (have) {
		ck_assert_ptr_nonnull(label);
		ck_assert_str_eq(label, want);
		snprintf(sel, sizeof(sel), "unix:seclabel:%s", want);
		ck_has(&s, sel);
		printf("# SO_PEERSEC: %s\n", want);
	} else {
		ck_assert_ptr_null(label);
		ck_assert_ptr_null(selector_set_get(&s, "unix:seclabel"));
		printf("# SO_PEERSEC: no label here (%s)\n", strerror(errno));
	}
	free(label);
	selector_set_clear(&s);
	close(sv[0]);
	close(sv[1]);
}
END_TEST

static double
now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

/* Mean microseconds of attest_peer_fd(fd) with skip, over n calls. */
static double
time_attest(int fd, unsigned skip, int n)
{
	struct attest_opts o = {.skip = skip};
	struct selector_set s = {0};
	double t0 = now_us();
	int i;

	for (i = 0; i < n; i++) {
		ck_assert_int_eq(attest_peer_fd(fd, &o, NULL, &s), 0);
		selector_set_clear(&s);
	}
	return (now_us() - t0) / n;
}

/* The rejected alternative: every process's descriptors, looking for
 * other holders of inode ino.  Returns the holders found. */
static int
scan_all_holders(unsigned long ino, unsigned *procs, unsigned long *fds)
{
	char path[300], buf[512], want[64];
	struct dirent *de, *fe;
	DIR *proc, *fdi;
	int holders = 0;

	*procs = 0;
	*fds = 0;
	snprintf(want, sizeof(want), "ino:\t%lu\n", ino);
	if ((proc = opendir("/proc")) == NULL)
		return -1;
	while ((de = readdir(proc)) != NULL) {
		if (de->d_name[0] < '1' || de->d_name[0] > '9')
			continue;
		snprintf(path, sizeof(path), "/proc/%s/fdinfo", de->d_name);
		if ((fdi = opendir(path)) == NULL)
			continue;
		(*procs)++;
		while ((fe = readdir(fdi)) != NULL) {
			int fd;
			ssize_t n;

			if (fe->d_name[0] == '.')
				continue;
			(*fds)++;
			if ((fd = openat(dirfd(fdi), fe->d_name, O_RDONLY | O_CLOEXEC)) < 0)
				continue;
			n = read(fd, buf, sizeof(buf) - 1);
			close(fd);
			if (n > 0) {
				buf[n] = '\0';
				if (strstr(buf, want) != NULL)
					holders++;
			}
		}
		closedir(fdi);
	}
	closedir(proc);
	return holders;
}

/* Not assertions: what each check costs here, for docs/design.md. */
START_TEST(test_exec_check_cost)
{
	static const int counts[] = {0, 1000, 10000};
	struct rlimit rl;
	size_t k;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		(void)setrlimit(RLIMIT_NOFILE, &rl);
	}
	printf("# exec-after-connect check costs (mean us per call; the peer's descriptor\n"
	       "# is its highest, or missing: the worst case, a whole scan)\n");
	for (k = 0; k < sizeof(counts) / sizeof(counts[0]); k++) {
		int *extra = calloc((size_t)counts[k] + 1, sizeof(int));
		int sv[2], i, got = 0, procfd, n = counts[k] >= 10000 ? 20 : 200;
		double held, notheld, peercred, path;
		char dir[64];

		ck_assert_ptr_nonnull(extra);
		for (i = 0; i < counts[k]; i++, got++)
			if ((extra[i] = open("/dev/null", O_RDONLY | O_CLOEXEC)) < 0)
				break;
		if (got < counts[k]) {
			printf("# %d descriptors: only %d could be opened; skipped\n", counts[k],
			       got);
			for (i = 0; i < got; i++)
				close(extra[i]);
			free(extra);
			continue;
		}
		ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
		snprintf(dir, sizeof(dir), "/proc/%ld", (long)getpid());
		procfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		ck_assert_int_ge(procfd, 0);
		{
			double t0 = now_us();

			for (i = 0; i < n; i++)
				ck_assert_int_eq(attest_conn_held(sv[0], procfd), 1);
			held = (now_us() - t0) / n;
		}
		peercred = time_attest(sv[0], ATTEST_SKIP_ALL, n);
		path = time_attest(sv[0], ATTEST_SKIP_ALL & ~ATTEST_SKIP_PATH, n);
		ck_assert_int_eq(fcntl(sv[1], F_SETFD, 0), 0);
		{
			double t0 = now_us();

			for (i = 0; i < n; i++)
				ck_assert_int_eq(attest_conn_held(sv[0], procfd), 0);
			notheld = (now_us() - t0) / n;
		}
		printf("# %5d descriptors: holder check %8.1f (held), %8.1f (not held, full scan);"
		       " attestation: SO_PEERCRED only %6.1f, with unix:path %8.1f\n",
		       counts[k] + 5, held, notheld, peercred, path);
		close(procfd);
		close(sv[0]);
		close(sv[1]);
		for (i = 0; i < counts[k]; i++)
			close(extra[i]);
		free(extra);
	}
	/* the rejected alternative, once */
	{
		struct stat st;
		unsigned procs;
		unsigned long fds;
		int sv[2], holders;
		double t0;

		ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
		ck_assert_int_eq(fstat(sv[1], &st), 0);
		t0 = now_us();
		holders = scan_all_holders((unsigned long)st.st_ino, &procs, &fds);
		printf("# scanning every process for other holders: %.0f us for %u processes, %lu "
		       "descriptors (%.2f us each); %d holder(s)\n",
		       now_us() - t0, procs, fds, fds > 0 ? (now_us() - t0) / (double)fds : 0.0,
		       holders);
		close(sv[0]);
		close(sv[1]);
	}
}
END_TEST

int
main(void)
{
	Suite *su = suite_create("attest");
	TCase *tc = tcase_create("attest");
	SRunner *sr;
	int failed;

	setup_paths();
	tcase_add_test(tc, test_selector_set_sorted_unique_bounded);
	tcase_add_test(tc, test_cgroup_forms);
	tcase_add_test(tc, test_fixture_v2_containerd_pod);
	tcase_add_test(tc, test_fixture_v1_cgroupfs_root);
	tcase_add_test(tc, test_fixture_crio_init_container);
	tcase_add_test(tc, test_fixture_pod_not_listed);
	tcase_add_test(tc, test_fixture_systemd_and_sha256);
	tcase_add_test(tc, test_sha256_size_limit);
	tcase_add_test(tc, test_skip_for_entries);
	tcase_add_test(tc, test_skip_leaves_out_selectors);
	tcase_add_test(tc, test_name_cache);
	tcase_add_test(tc, test_pod_list_json_bad);
	tcase_add_test(tc, test_kubelet_url);
	tcase_add_test(tc, test_kubelet_slow_does_not_block);
	tcase_add_test(tc, test_kubelet_secure_port);
	tcase_add_test(tc, test_pid_reuse_detected);
	tcase_add_test(tc, test_proc_edge_cases);
	tcase_add_test(tc, test_self_through_socketpair);
	tcase_add_test(tc, test_peer_gone);
	tcase_add_test(tc, test_exec_selectors_need_cloexec_holder);
	tcase_add_test(tc, test_exec_check_cost);
	tcase_add_test(tc, test_seclabel_is_so_peersec);
	suite_add_tcase(su, tc);
	sr = srunner_create(su);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	th_rmtree(fixture_tmp);
	free(fixture_tmp);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
