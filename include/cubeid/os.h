/*
 * Small operating-system helpers that the agent's file delivery and
 * `cubeid helper` share (common/os-exec.c, common/os-addr.c): signal
 * names, pid files, commands run with an argument vector (never through a
 * shell; posix_spawn, so no fork of a large multi-threaded process), and
 * listener addresses.  Conventions as in <cubeid/error.h>.
 */
#ifndef CUBEID_OS_H
#define CUBEID_OS_H

#include <sys/socket.h>
#include <sys/types.h>

#include <cubeid/error.h>

#ifdef __cplusplus
extern "C" {
#endif

/* "SIGHUP", "HUP", "hup" or "1" -> 1; -1 if unknown. */
int cubeid_signal_parse(const char *s);
/* A pid file's pid (decimal, surrounded by white space; > 0). */
int cubeid_pid_file_read(const char *path, pid_t *out);
/* Start argv[0] with argv (no shell, stdin /dev/null); *pid gets the child. */
int cubeid_spawn(char *const argv[], pid_t *pid);
/* cubeid_spawn() and wait up to timeout_ms (then SIGKILL): 0 if it exited
 * with status 0, CUBEID_ERR_IO otherwise (*why says how).  After
 * cubeid_run_stop_all(), a running command gets SIGTERM, then SIGKILL after
 * CUBEID_RUN_STOP_GRACE_MS (CUBEID_ERR_UNAVAILABLE), and none is started. */
int cubeid_run(char *const argv[], long timeout_ms, const char **why);
#define CUBEID_RUN_STOP_GRACE_MS 2000
/* The process is stopping: end the commands cubeid_run() waits for (any
 * thread; a shutdown must not wait for them, systemd's stop timeout is 90 s
 * and a command may take 60). */
void cubeid_run_stop_all(void);
/* Split a command line the way spiffe-helper splits cmd_args (Go's
 * encoding/csv with a space as the separator: fields split at single
 * spaces, a field may be "quoted" with "" for a quote).  New
 * NULL-terminated vector after prefix (may be NULL) in *out; free it with
 * cubeid_argv_free(). */
int cubeid_split_args(const char *prefix, const char *args, char ***out);
void cubeid_argv_free(char **v);

/* Parse "HOST:PORT": an IPv4 literal, "[IPv6]" or "localhost" (no name
 * lookups), and a port 0..65535 (0: any free port).  CUBEID_ERR_CONFIG with
 * *why (static) on bad input. */
int cubeid_addr_parse(const char *s, struct sockaddr_storage *ss, socklen_t *len, const char **why);

#ifdef __cplusplus
}
#endif
#endif
