/*
 * A throwaway SoftHSM2 token for development and tests: the embedded
 * default of the quick start (and later of `cubeid-agent --dev`), and the
 * per-program token of the test harness.
 *
 * Everything lives under one directory: softhsm2.conf, tokens/ and the
 * user PIN in a 0600 file.  The token is initialised through the module
 * itself (C_InitToken, C_InitPIN), so no PIN is ever on a command line.
 */
#include "config.h"

#include "pkcs11/p11-internal.h"

#include <cubeid/log.h>

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/rand.h>

static int
write_file_atomic(const char *path, const char *data, mode_t mode)
{
	char *tmp = NULL;
	size_t len = strlen(data);
	int fd = -1, r = CUBEID_ERR_IO;

	if (asprintf(&tmp, "%s.tmp.%ld", path, (long)getpid()) < 0)
		return CUBEID_ERR_NOMEM;
	if ((fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode)) < 0 ||
	    fchmod(fd, mode) != 0 || write(fd, data, len) != (ssize_t)len || fsync(fd) != 0) {
		cubeid_error("cannot write %s: %s", tmp, strerror(errno));
		goto out;
	}
	close(fd);
	fd = -1;
	if (rename(tmp, path) != 0) {
		cubeid_error("cannot rename %s: %s", tmp, strerror(errno));
		goto out;
	}
	r = CUBEID_OK;
out:
	if (fd >= 0)
		close(fd);
	if (r != CUBEID_OK)
		unlink(tmp);
	free(tmp);
	return r;
}

/* mkdir -p, the last component with mode 0700. */
static int
mkdir_p(const char *dir)
{
	char *p, *copy = strdup(dir);
	int r = CUBEID_OK;

	if (copy == NULL)
		return CUBEID_ERR_NOMEM;
	for (p = copy + 1; *p != '\0'; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(copy, 0755) != 0 && errno != EEXIST) {
			cubeid_error("cannot create %s: %s", copy, strerror(errno));
			r = CUBEID_ERR_IO;
			break;
		}
		*p = '/';
	}
	if (r == CUBEID_OK && mkdir(dir, 0700) != 0 && errno != EEXIST) {
		cubeid_error("cannot create %s: %s", dir, strerror(errno));
		r = CUBEID_ERR_IO;
	}
	free(copy);
	return r;
}

static void
hex(char *out, const unsigned char *b, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		snprintf(out + 2 * i, 3, "%02x", b[i]);
}

/* Initialise a token labelled label on SoftHSM2's free slot. */
static int
init_token(const char *module, const char *label, const char *so_pin, const char *pin)
{
	CK_C_GetFunctionList getfl;
	CK_FUNCTION_LIST_PTR f;
	CK_C_INITIALIZE_ARGS args = {0};
	CK_SLOT_ID slots[64], slot = (CK_SLOT_ID)-1;
	CK_ULONG n = 64, i;
	CK_TOKEN_INFO ti;
	CK_SESSION_HANDLE s;
	CK_UTF8CHAR lab[32];
	CK_RV rv;
	void *dl;
	int r = CUBEID_ERR_P11_GENERAL;

	if ((dl = dlopen(module, RTLD_NOW | RTLD_LOCAL)) == NULL) {
		cubeid_error("cannot load %s: %s", module, dlerror());
		return CUBEID_ERR_P11_MODULE;
	}
	if ((getfl = (CK_C_GetFunctionList)dlsym(dl, "C_GetFunctionList")) == NULL ||
	    getfl(&f) != CKR_OK)
		return CUBEID_ERR_P11_MODULE;
	args.flags = CKF_OS_LOCKING_OK;
	if ((rv = f->C_Initialize(&args)) != CKR_OK)
		return p11_fail("C_Initialize", rv);
	if ((rv = f->C_GetSlotList(CK_TRUE, slots, &n)) != CKR_OK) {
		r = p11_fail("C_GetSlotList", rv);
		goto out;
	}
	for (i = 0; i < n && slot == (CK_SLOT_ID)-1; i++)
		if (f->C_GetTokenInfo(slots[i], &ti) == CKR_OK &&
		    !(ti.flags & CKF_TOKEN_INITIALIZED))
			slot = slots[i];
	if (slot == (CK_SLOT_ID)-1) {
		cubeid_error("SoftHSM2 has no free slot");
		goto out;
	}
	memset(lab, ' ', sizeof(lab));
	memcpy(lab, label, strlen(label) < sizeof(lab) ? strlen(label) : sizeof(lab));
	if ((rv = f->C_InitToken(slot, (CK_UTF8CHAR_PTR)so_pin, strlen(so_pin), lab)) != CKR_OK) {
		r = p11_fail("C_InitToken", rv);
		goto out;
	}
	/* SoftHSM2 renumbers the slot once the token exists: find it by label. */
	n = 64;
	slot = (CK_SLOT_ID)-1;
	if (f->C_GetSlotList(CK_TRUE, slots, &n) == CKR_OK)
		for (i = 0; i < n; i++)
			if (f->C_GetTokenInfo(slots[i], &ti) == CKR_OK &&
			    memcmp(ti.label, lab, sizeof(lab)) == 0)
				slot = slots[i];
	if (slot == (CK_SLOT_ID)-1) {
		cubeid_error("new SoftHSM2 token %s not found", label);
		goto out;
	}
	if ((rv = f->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &s)) !=
	    CKR_OK) {
		r = p11_fail("C_OpenSession", rv);
		goto out;
	}
	if ((rv = f->C_Login(s, CKU_SO, (CK_UTF8CHAR_PTR)so_pin, strlen(so_pin))) != CKR_OK ||
	    (rv = f->C_InitPIN(s, (CK_UTF8CHAR_PTR)pin, strlen(pin))) != CKR_OK) {
		r = p11_fail("setting the user PIN", rv);
		f->C_CloseSession(s);
		goto out;
	}
	f->C_Logout(s);
	f->C_CloseSession(s);
	r = CUBEID_OK;
out:
	f->C_Finalize(NULL);
	/* SoftHSM2 stays mapped: unloading it under its atexit handlers crashes. */
	return r;
}

int
cubeid_softhsm_dev_token(const char *dir, const char *label, char **uri, char **pin_file)
{
	return cubeid_softhsm_token(NULL, dir, label, uri, pin_file);
}

int
cubeid_softhsm_token(const char *module, const char *dir, const char *label, char **uri,
                     char **pin_file)
{
	char *conf = NULL, *tokdir = NULL, *pinpath = NULL, *text = NULL;
	unsigned char rnd[16];
	char pin[33], so_pin[33], lab[33];
	struct stat st;
	bool exists;
	int r = CUBEID_ERR_NOMEM;

	*uri = NULL;
	*pin_file = NULL;
	if (dir == NULL || *dir == '\0')
		return CUBEID_ERR_INVALID_ARG;
	if (module == NULL || *module == '\0')
		module = getenv(CUBEID_ENV_MODULE);
	if (module == NULL || *module == '\0')
		module = CUBEID_SOFTHSM_MODULE;
	if (module == NULL || *module == '\0' || access(module, R_OK) != 0) {
		cubeid_error("SoftHSM2 module not found: install the Debian package 'softhsm2' "
		             "or set $" CUBEID_ENV_MODULE);
		return CUBEID_ERR_P11_MODULE;
	}
	if (label == NULL)
		label = "cubeid-dev";
	snprintf(lab, sizeof(lab), "%s", label);
	if (asprintf(&conf, "%s/softhsm2.conf", dir) < 0 ||
	    asprintf(&tokdir, "%s/tokens", dir) < 0 || asprintf(&pinpath, "%s/user.pin", dir) < 0)
		goto out;
	if ((r = mkdir_p(dir)) != CUBEID_OK)
		goto out;
	if (mkdir(tokdir, 0700) != 0 && errno != EEXIST) {
		cubeid_error("cannot create %s: %s", tokdir, strerror(errno));
		r = CUBEID_ERR_IO;
		goto out;
	}
	exists = stat(conf, &st) == 0 && stat(pinpath, &st) == 0;
	setenv("SOFTHSM2_CONF", conf, 1);
	if (!exists) {
		if (asprintf(&text,
		             "# SoftHSM2 token for cubeid development: throwaway, not for "
		             "production\n"
		             "directories.tokendir = %s\nobjectstore.backend = file\n"
		             "log.level = ERROR\n",
		             tokdir) < 0)
			goto out;
		if ((r = write_file_atomic(conf, text, 0600)) != CUBEID_OK)
			goto out;
		if (RAND_bytes(rnd, sizeof(rnd)) != 1) {
			r = CUBEID_ERR_CRYPTO;
			goto out;
		}
		hex(pin, rnd, sizeof(rnd));
		if (RAND_bytes(rnd, sizeof(rnd)) != 1) {
			r = CUBEID_ERR_CRYPTO;
			goto out;
		}
		hex(so_pin, rnd, sizeof(rnd));
		r = init_token(module, lab, so_pin, pin);
		if (r == CUBEID_OK)
			r = write_file_atomic(pinpath, pin, 0600);
		explicit_bzero(pin, sizeof(pin));
		explicit_bzero(so_pin, sizeof(so_pin));
		explicit_bzero(rnd, sizeof(rnd));
		if (r != CUBEID_OK)
			goto out;
	}
	if (asprintf(uri, "pkcs11:token=%s", lab) < 0) {
		*uri = NULL;
		r = CUBEID_ERR_NOMEM;
		goto out;
	}
	*pin_file = pinpath;
	pinpath = NULL;
	r = CUBEID_OK;
out:
	free(conf);
	free(tokdir);
	free(pinpath);
	free(text);
	return r;
}
