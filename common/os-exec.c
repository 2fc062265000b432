/*
 * What happens after a set of files is delivered, shared by the agent's
 * file delivery (agent/delivery.c) and `cubeid helper` (<cubeid/os.h>):
 * signal names, pid files, and commands run with an argument vector, never
 * through a shell (posix_spawn, so no fork of a large multi-threaded
 * process either).
 */
#include "config.h"

#include <cubeid/log.h>
#include <cubeid/os.h>

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

static const struct {
	const char *name;
	int sig;
} signals[] = {
        {"HUP", SIGHUP},   {"INT", SIGINT},     {"QUIT", SIGQUIT}, {"USR1", SIGUSR1},
        {"USR2", SIGUSR2}, {"TERM", SIGTERM},   {"KILL", SIGKILL}, {"ALRM", SIGALRM},
        {"CONT", SIGCONT}, {"WINCH", SIGWINCH}, {"STOP", SIGSTOP}, {"PIPE", SIGPIPE},
};

int
cubeid_signal_parse(const char *s)
{
	size_t i;
	char *end;
	long v;

	if (s == NULL || *s == '\0')
		return -1;
	if (isdigit((unsigned char)s[0])) {
		errno = 0;
		v = strtol(s, &end, 10);
		if (errno != 0 || *end != '\0' || v < 1 || v > 64)
			return -1;
		return (int)v;
	}
	if (strncasecmp(s, "SIG", 3) == 0)
		s += 3;
	for (i = 0; i < sizeof(signals) / sizeof(signals[0]); i++)
		if (strcasecmp(s, signals[i].name) == 0)
			return signals[i].sig;
	return -1;
}

int
cubeid_pid_file_read(const char *path, pid_t *out)
{
	char buf[64];
	ssize_t n;
	char *p, *end;
	long v;
	int fd;

	*out = 0;
	if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY)) < 0)
		return errno == ENOENT ? CUBEID_ERR_NOT_FOUND : CUBEID_ERR_IO;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return CUBEID_ERR_PARSE;
	buf[n] = '\0';
	for (p = buf; isspace((unsigned char)*p); p++)
		;
	errno = 0;
	v = strtol(p, &end, 10);
	if (end == p || errno != 0 || v <= 0 || v > 4194304)
		return CUBEID_ERR_PARSE;
	for (; isspace((unsigned char)*end); end++)
		;
	if (*end != '\0')
		return CUBEID_ERR_PARSE;
	*out = (pid_t)v;
	return CUBEID_OK;
}

int
cubeid_spawn(char *const argv[], pid_t *pid)
{
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t at;
	sigset_t none;
	int rc;

	*pid = 0;
	if (argv == NULL || argv[0] == NULL)
		return CUBEID_ERR_INVALID_ARG;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	posix_spawnattr_init(&at);
	/* the child starts with no signal blocked and default handlers
	 * (the agent blocks SIGHUP/SIGTERM for its signalfd) */
	sigemptyset(&none);
	posix_spawnattr_setsigmask(&at, &none);
	{
		sigset_t def;
		sigemptyset(&def);
		sigaddset(&def, SIGPIPE);
		sigaddset(&def, SIGHUP);
		sigaddset(&def, SIGTERM);
		sigaddset(&def, SIGINT);
		posix_spawnattr_setsigdefault(&at, &def);
	}
	posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
	rc = posix_spawn(pid, argv[0], &fa, &at, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&at);
	if (rc != 0) {
		errno = rc;
		*pid = 0;
		return CUBEID_ERR_IO;
	}
	return CUBEID_OK;
}

/* Set once by cubeid_run_stop_all(): the process is stopping. */
static atomic_bool stopping;

void
cubeid_run_stop_all(void)
{
	atomic_store(&stopping, true);
}

int
cubeid_run(char *const argv[], long timeout_ms, const char **why)
{
	struct timespec d = {0, 10 * 1000 * 1000};
	long waited = 0, termed = -1;
	pid_t pid, r;
	int st = 0, rc;

	*why = "ok";
	if (atomic_load(&stopping)) {
		*why = "not run: stopping";
		return CUBEID_ERR_UNAVAILABLE;
	}
	if ((rc = cubeid_spawn(argv, &pid)) != CUBEID_OK) {
		*why = "cannot start the command";
		return rc;
	}
	for (;;) {
		r = waitpid(pid, &st, WNOHANG);
		if (r == pid)
			break;
		if (r < 0 && errno != EINTR) {
			*why = "cannot wait for the command";
			return CUBEID_ERR_IO;
		}
		/* stopping: SIGTERM, then SIGKILL after a grace period */
		if (termed < 0 && atomic_load(&stopping)) {
			kill(pid, SIGTERM);
			termed = waited;
		}
		if (termed >= 0 && waited - termed >= CUBEID_RUN_STOP_GRACE_MS) {
			kill(pid, SIGKILL);
			(void)waitpid(pid, &st, 0);
			*why = "stopping: the command did not end on SIGTERM and was killed";
			cubeid_notice("%s (%s, pid %ld)", *why, argv[0], (long)pid);
			return CUBEID_ERR_UNAVAILABLE;
		}
		if (waited >= timeout_ms) {
			kill(pid, SIGKILL);
			(void)waitpid(pid, &st, 0);
			*why = "the command timed out and was killed";
			return CUBEID_ERR_TIMEOUT;
		}
		nanosleep(&d, NULL);
		waited += 10;
	}
	if (termed >= 0) {
		*why = "stopping: the command was stopped with SIGTERM";
		cubeid_notice("%s (%s, pid %ld)", *why, argv[0], (long)pid);
		return CUBEID_ERR_UNAVAILABLE;
	}
	if (WIFEXITED(st) && WEXITSTATUS(st) == 0)
		return CUBEID_OK;
	if (WIFEXITED(st) && WEXITSTATUS(st) == 127)
		*why = "the command exited with status 127 (not found?)";
	else if (WIFEXITED(st))
		*why = "the command exited with a non-zero status";
	else
		*why = "the command was killed by a signal";
	return CUBEID_ERR_IO;
}

void
cubeid_argv_free(char **v)
{
	size_t i;

	if (v == NULL)
		return;
	for (i = 0; v[i] != NULL; i++)
		free(v[i]);
	free(v);
}

static int
argv_push(char ***v, size_t *n, char *s)
{
	char **nv;

	if (s == NULL)
		return CUBEID_ERR_NOMEM;
	if ((nv = realloc(*v, (*n + 2) * sizeof(*nv))) == NULL) {
		free(s);
		return CUBEID_ERR_NOMEM;
	}
	*v = nv;
	nv[(*n)++] = s;
	nv[*n] = NULL;
	return CUBEID_OK;
}

int
cubeid_split_args(const char *prefix, const char *args, char ***out)
{
	char **v = NULL, *f = NULL;
	const char *p;
	size_t n = 0, flen;
	int rc = CUBEID_OK;

	*out = NULL;
	if ((v = calloc(1, sizeof(*v))) == NULL)
		return CUBEID_ERR_NOMEM;
	if (prefix != NULL && (rc = argv_push(&v, &n, strdup(prefix))) != CUBEID_OK)
		goto out;
	if (args == NULL || *args == '\0')
		goto out;
	/* encoding/csv skips empty lines and reads one record */
	for (p = args; *p == '\n' || (*p == '\r' && p[1] == '\n');)
		p += *p == '\n' ? 1 : 2;
	if (*p == '\0') {
		rc = CUBEID_ERR_PARSE;
		goto out;
	}
	if ((f = malloc(strlen(p) + 1)) == NULL) {
		rc = CUBEID_ERR_NOMEM;
		goto out;
	}
	for (;;) {
		flen = 0;
		if (*p == '"') {
			for (p++;; p++) {
				if (*p == '\0') {
					rc = CUBEID_ERR_PARSE; /* no closing quote */
					goto out;
				}
				if (*p == '"') {
					if (p[1] == '"') {
						f[flen++] = '"';
						p++;
						continue;
					}
					p++;
					break;
				}
				if (*p == '\r' && p[1] == '\n')
					continue;
				f[flen++] = *p;
			}
			if (*p != ' ' && *p != '\0' && *p != '\n' &&
			    !(*p == '\r' && p[1] == '\n')) {
				rc = CUBEID_ERR_PARSE; /* text after a closing quote */
				goto out;
			}
		} else {
			for (;
			     *p != ' ' && *p != '\0' && *p != '\n' && !(*p == '\r' && p[1] == '\n');
			     p++) {
				if (*p == '"') {
					rc = CUBEID_ERR_PARSE; /* a bare quote */
					goto out;
				}
				f[flen++] = *p;
			}
		}
		f[flen] = '\0';
		if ((rc = argv_push(&v, &n, strdup(f))) != CUBEID_OK)
			goto out;
		if (*p != ' ')
			break; /* end of the line or of the text */
		p++;
	}
out:
	free(f);
	if (rc != CUBEID_OK) {
		cubeid_argv_free(v);
		return rc;
	}
	*out = v;
	return CUBEID_OK;
}
