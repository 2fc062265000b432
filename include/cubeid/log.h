/*
 * Logging.  One line per event to stderr (journald picks it up under
 * systemd), prefixed with the program's name and the level
 * ("cubeid-agent: error: ...").  Nothing secret is ever passed here:
 * no PINs, no private keys, no bearer tokens.
 */
#ifndef CUBEID_LOG_H
#define CUBEID_LOG_H

#include <stdarg.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
	CUBEID_LOG_ERROR = 3, /* syslog priorities, so "<3>" prefixes work */
	CUBEID_LOG_WARNING = 4,
	CUBEID_LOG_NOTICE = 5,
	CUBEID_LOG_INFO = 6,
	CUBEID_LOG_DEBUG = 7,
} cubeid_log_level;

/* Messages above level are dropped.  Default: NOTICE, or $CUBEID_LOG_LEVEL
 * (error|warning|notice|info|debug) read at the first message. */
void cubeid_log_set_level(cubeid_log_level level);
cubeid_log_level cubeid_log_get_level(void);
/* Parse "error".."debug"; returns -1 for an unknown name. */
int cubeid_log_level_from_name(const char *name);
/* Prefix lines with "<N>" for journald instead of a level word. */
void cubeid_log_set_journal(int on);

void cubeid_log(cubeid_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void cubeid_logv(cubeid_log_level level, const char *fmt, va_list ap)
        __attribute__((format(printf, 2, 0)));

#define cubeid_error(...)  cubeid_log(CUBEID_LOG_ERROR, __VA_ARGS__)
#define cubeid_warn(...)   cubeid_log(CUBEID_LOG_WARNING, __VA_ARGS__)
#define cubeid_notice(...) cubeid_log(CUBEID_LOG_NOTICE, __VA_ARGS__)
#define cubeid_info(...)   cubeid_log(CUBEID_LOG_INFO, __VA_ARGS__)
#define cubeid_debug(...)  cubeid_log(CUBEID_LOG_DEBUG, __VA_ARGS__)

#ifdef __cplusplus
}
#endif
#endif
