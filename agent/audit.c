/* Coalescing of repeated cached fetches in the audit log (audit.h). */
#include "config.h"

#include "agent/audit.h"

#include <cubeid/log.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct slot {
	char *key;  /* kind \n uid \n entry \n what: NULL if free */
	char *line; /* "KIND WHAT uid=U entry=E": the summary's subject */
	char *cred; /* "serial=..." or "jti=...": the last one logged in full */
	uint64_t hash;
	unsigned long count; /* cached fetches not yet logged */
	long last_pid;
	int64_t since;      /* monotonic seconds: the start of the count */
	uint64_t last_used; /* tick of the last call: the LRU order */
};

static struct slot slots[AUDIT_SLOTS];
static uint64_t ticks;

static int64_t
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec;
}

static uint64_t
fnv1a(const char *s)
{
	uint64_t h = 1469598103934665603ULL;

	for (; *s != '\0'; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ULL;
	return h;
}

static void
summary(struct slot *s, int64_t now)
{
	if (s->count > 0)
		cubeid_notice("%s last_pid=%ld %s: served %lu cached fetch%s in the last %lld s",
		              s->line, s->last_pid, s->cred, s->count, s->count == 1 ? "" : "es",
		              (long long)(now - s->since > 0 ? now - s->since : 0));
	s->count = 0;
	s->since = now;
}

static void
slot_clear(struct slot *s)
{
	free(s->key);
	free(s->line);
	free(s->cred);
	memset(s, 0, sizeof(*s));
}

bool
audit_first(const char *kind, uid_t uid, pid_t pid, const char *entry, const char *what,
            const char *cred_name, const char *cred)
{
	char *key = NULL, *c = NULL;
	struct slot *s = NULL, *lru = NULL;
	int64_t now = now_s();
	uint64_t h;
	size_t i;

	if (asprintf(&key, "%s\n%lu\n%s\n%s", kind, (unsigned long)uid, entry, what) < 0)
		return true;
	h = fnv1a(key);
	for (i = 0; i < AUDIT_SLOTS; i++) {
		struct slot *t = &slots[i];

		if (t->key == NULL) {
			if (lru == NULL || lru->key != NULL)
				lru = t; /* a free slot beats any used one */
			continue;
		}
		if (s == NULL && t->hash == h && strcmp(t->key, key) == 0) {
			s = t;
			continue;
		}
		/* other callers' minutes that ended meanwhile */
		if (t->count > 0 && now - t->since >= AUDIT_WINDOW_S)
			summary(t, now);
		if (lru == NULL || (lru->key != NULL && t->last_used < lru->last_used))
			lru = t;
	}
	if (asprintf(&c, "%s=%s", cred_name, cred) < 0) {
		free(key);
		return true;
	}
	if (s != NULL && strcmp(s->cred, c) == 0) { /* a repeat: count it */
		free(key);
		free(c);
		s->count++;
		s->last_pid = (long)pid;
		s->last_used = ++ticks;
		if (now - s->since >= AUDIT_WINDOW_S)
			summary(s, now);
		return false;
	}
	if (s != NULL) { /* a new credential for a known caller */
		summary(s, now);
		free(s->cred);
		s->cred = c;
		free(key);
	} else {
		s = lru; /* never NULL: AUDIT_SLOTS > 0 */
		if (s->key != NULL) {
			summary(s, now);
			slot_clear(s);
		}
		if (asprintf(&s->line, "%s %s uid=%lu entry=%s", kind, what, (unsigned long)uid,
		             entry) < 0) {
			s->line = NULL;
			free(key);
			free(c);
			return true;
		}
		s->key = key;
		s->hash = h;
		s->cred = c;
	}
	s->count = 0;
	s->since = now;
	s->last_used = ++ticks;
	s->last_pid = (long)pid;
	return true;
}

void
audit_flush(void)
{
	int64_t now = now_s();
	size_t i;

	for (i = 0; i < AUDIT_SLOTS; i++) {
		if (slots[i].key == NULL)
			continue;
		summary(&slots[i], now);
		slot_clear(&slots[i]);
	}
}
