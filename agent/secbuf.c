/*
 * Buffers that hold private keys: page-backed, MADV_DONTDUMP (no core dump
 * or crash report carries them), mlock'ed where RLIMIT_MEMLOCK allows (no
 * swap), and wiped before they are unmapped.
 */
#include "config.h"

#include "agent/agent.h"

#include <stddef.h>
#include <sys/mman.h>

#include <openssl/crypto.h>

void *
secbuf_alloc(size_t len)
{
	void *p;

	if (len == 0)
		len = 1;
	p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return NULL;
	(void)madvise(p, len, MADV_DONTDUMP);
	(void)mlock(p, len); /* best effort: RLIMIT_MEMLOCK may forbid it */
	return p;
}

void
secbuf_free(void *p, size_t len)
{
	if (p == NULL)
		return;
	if (len == 0)
		len = 1;
	OPENSSL_cleanse(p, len);
	(void)munlock(p, len);
	munmap(p, len);
}
