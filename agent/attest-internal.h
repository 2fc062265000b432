/*
 * Workload attestation internals shared by attest.c (kernel facts) and
 * attest-k8s.c (pod metadata), and exposed to tests/test-attest.c.
 */
#ifndef CUBEID_ATTEST_INTERNAL_H
#define CUBEID_ATTEST_INTERNAL_H

#include "agent/agent.h"

/* Hard limits on what is read. */
#define ATTEST_STAT_MAX    4096          /* /proc/PID/stat */
#define ATTEST_STATUS_MAX  (1024 * 1024) /* /proc/PID/status (Groups: can be long) */
#define ATTEST_CGROUP_MAX  (64 * 1024)   /* /proc/PID/cgroup */
#define ATTEST_PODLIST_MAX (32u << 20)   /* kubelet pod list / pod-info file */
#define ATTEST_MAX_GROUPS  256           /* unix:supplementary_gid selectors */
#define ATTEST_MAX_LABELS  256           /* k8s:pod-label selectors */
#define ATTEST_CACHE_MS    5000          /* pod list reused for this long */
#define ATTEST_REFRESH_MS                                                                          \
	1000 /* a pod missing from the list refetches                                              \
	        at most this often */
#define ATTEST_HTTP_TIMEOUT_MS 2000
#define ATTEST_K8S_WAIT_MS     250         /* attestation waits this long for the kubelet */
#define ATTEST_TOKEN_MAX       (64 * 1024) /* kubelet bearer token file */
#define ATTEST_NAME_TTL_MS     5000        /* user/group names reused for this long */
#define ATTEST_NAME_CACHE      64          /* names kept (uids and gids together) */
#define ATTEST_SECLABEL_MAX    4096        /* SO_PEERSEC label */

/*
 * What /proc/PID/cgroup says about a process (text is the file's contents,
 * NUL-terminated).  Each output is a new string or NULL when absent:
 *   unit    the systemd unit: the last path component ending in .service,
 *           .scope, .socket, .mount or .swap (from the v2 or name=systemd
 *           hierarchy when there is one);
 *   pod_uid the Kubernetes pod UID, dashes restored ("kubepods-burstable-
 *           pod1234_5678...slice" and ".../pod1234-5678.../..." forms);
 *   cid     the container ID (64 hex: "cri-containerd-ID.scope",
 *           "docker-ID.scope", "crio-ID.scope", "libpod-ID.scope" or a bare
 *           "ID" component).
 * Returns 0 or CUBEID_ERR_NOMEM.
 */
int attest_cgroup_parse(const char *text, char **unit, char **pod_uid, char **cid);

/* Add the k8s:* selectors of the pod pod_uid (and of its container cid,
 * may be NULL) from o's pod-info file or kubelet URL.  A pod that is not in
 * the list adds nothing and returns 0; a source that cannot be read or
 * parsed returns an error. */
int attest_k8s(const struct attest_opts *o, const char *pod_uid, const char *cid,
               struct selector_set *out);

/* The k8s:* selectors for pod_uid/cid from a PodList JSON document held in
 * buf (no cache; for tests and the fuzzer).  *found says if the pod was
 * there. */
int attest_k8s_from_json(const char *buf, size_t len, const char *pod_uid, const char *cid,
                         struct selector_set *out, bool *found);

/* Whether the process of proc_dir (its /proc/PID directory fd) holds the
 * other end of Unix socket conn_fd in a descriptor marked close-on-exec
 * (attest-conn.c, exec after connect): 1 yes; 0 no, or it cannot be told
 * (fail closed: another network namespace, no sock_diag, the connection
 * closed, the descriptors unreadable); CUBEID_ERR_PEER_CHANGED when the
 * process is gone. */
int attest_conn_held(int conn_fd, int proc_dir);

/* The LSM label of the other end of conn_fd (SO_PEERSEC): its socket's,
 * taken from the process that made it, before connect.  *out a new string,
 * or NULL when there is none (no LSM labels sockets).  0 or
 * CUBEID_ERR_NOMEM. */
int attest_conn_seclabel(int conn_fd, char **out);

/* Tests only: how many user/group name lookups went to NSS (not cached). */
extern unsigned long attest_name_lookups;

/* Tests only: called (when set) after everything has been read and before
 * the start time is read again, to simulate a pid reused meanwhile. */
extern void (*attest_test_hook_before_recheck)(const char *proc_dir);

#endif
