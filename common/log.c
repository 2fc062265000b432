/* Leveled logging to stderr (see include/cubeid/log.h). */
#include "config.h"

#include <cubeid/log.h>

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static int log_level = -1; /* -1: not yet read from the environment */
static int log_journal;
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;

static const char *const level_names[] = {
        [CUBEID_LOG_ERROR] = "error",   [CUBEID_LOG_WARNING] = "warning",
        [CUBEID_LOG_NOTICE] = "notice", [CUBEID_LOG_INFO] = "info",
        [CUBEID_LOG_DEBUG] = "debug",
};

int
cubeid_log_level_from_name(const char *name)
{
	int i;

	if (name == NULL)
		return -1;
	for (i = CUBEID_LOG_ERROR; i <= CUBEID_LOG_DEBUG; i++)
		if (strcasecmp(name, level_names[i]) == 0)
			return i;
	return -1;
}

void
cubeid_log_set_level(cubeid_log_level level)
{
	__atomic_store_n(&log_level, (int)level, __ATOMIC_RELAXED);
}

cubeid_log_level
cubeid_log_get_level(void)
{
	int l = __atomic_load_n(&log_level, __ATOMIC_RELAXED);

	if (l < 0) {
		l = cubeid_log_level_from_name(getenv("CUBEID_LOG_LEVEL"));
		if (l < 0)
			l = CUBEID_LOG_NOTICE;
		__atomic_store_n(&log_level, l, __ATOMIC_RELAXED);
	}
	return (cubeid_log_level)l;
}

void
cubeid_log_set_journal(int on)
{
	log_journal = on;
}

/* The program's name, as err(3) prints it: cubeid-agent logs as
 * "cubeid-agent: error: ...", the CLI as "cubeid: ...".  A libtool wrapper
 * runs the build tree's programs as lt-NAME. */
static const char *
log_ident(void)
{
	const char *n = program_invocation_short_name;

	if (n == NULL || *n == '\0')
		return "cubeid";
	return strncmp(n, "lt-", 3) == 0 ? n + 3 : n;
}

void
cubeid_logv(cubeid_log_level level, const char *fmt, va_list ap)
{
	char buf[2048];
	int n;

	if ((int)level > (int)cubeid_log_get_level())
		return;
	if (level < CUBEID_LOG_ERROR)
		level = CUBEID_LOG_ERROR;
	if (level > CUBEID_LOG_DEBUG)
		level = CUBEID_LOG_DEBUG;
	if (log_journal)
		n = snprintf(buf, sizeof(buf), "<%d>", (int)level);
	else
		n = snprintf(buf, sizeof(buf), "%s: %s: ", log_ident(), level_names[level]);
	if (n < 0)
		return;
	vsnprintf(buf + n, sizeof(buf) - (size_t)n, fmt, ap);
	/* One write per line so that threads never interleave. */
	pthread_mutex_lock(&log_lock);
	fprintf(stderr, "%s\n", buf);
	pthread_mutex_unlock(&log_lock);
}

void
cubeid_log(cubeid_log_level level, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	cubeid_logv(level, fmt, ap);
	va_end(ap);
}
