/*
 * The audit log of credentials handed out, bounded in volume.  Each
 * credential (an X.509-SVID's serial, a JWT's jti) is logged in full the
 * first time a caller gets it, as before; the same credential fetched again
 * from the cache by the same caller (uid, entry, kind, ID) is only counted,
 * and the count goes out as one line a minute:
 *
 *   x509-svid spiffe_id=... uid=1000 entry=web last_pid=4242 serial=...:
 *   served 57 cached fetches in the last 60 s
 *
 * A client in a loop used to add one 230-byte notice per call.  The table
 * is small and fixed; the least recently used caller is evicted, its count
 * logged first, so no fetch goes uncounted.  Loop thread only.
 */
#ifndef CUBEID_AGENT_AUDIT_H
#define CUBEID_AGENT_AUDIT_H

#include <stdbool.h>
#include <sys/types.h>

#define AUDIT_SLOTS    256
#define AUDIT_WINDOW_S 60

/* True if the caller must log this delivery in full: cred is new for
 * (kind, uid, entry, what), or it cannot be tracked (out of memory).
 * False when it was counted as a cached fetch.  All strings are borrowed. */
bool audit_first(const char *kind, uid_t uid, pid_t pid, const char *entry, const char *what,
                 const char *cred_name, const char *cred);

/* Log every pending count and forget every caller (at shutdown). */
void audit_flush(void);

#endif
