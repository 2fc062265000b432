/* Test harness: a throwaway SoftHSM2 token per test program (see harness.h). */
#include "config.h"

#include "tests/harness.h"

#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/rand.h>
#include <p11-kit/pkcs11.h>

void
th_skip(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "\n*** SKIP: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, " ***\n\n");
	exit(TH_EXIT_SKIP);
}

static void __attribute__((format(printf, 1, 2), noreturn)) th_fail(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "harness: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\n");
	exit(1);
}

char *
th_mkdtemp(const char *prefix)
{
	const char *tmp = getenv("TMPDIR");
	char *path;

	if (tmp == NULL || *tmp == '\0')
		tmp = "/tmp";
	if (asprintf(&path, "%s/%s.XXXXXX", tmp, prefix) < 0)
		th_fail("out of memory");
	if (mkdtemp(path) == NULL)
		th_fail("mkdtemp %s: %s", path, strerror(errno));
	return path;
}

void
th_rmtree(const char *path)
{
	DIR *d;
	struct dirent *de;
	struct stat st;
	char *p;

	if (path == NULL || lstat(path, &st) != 0)
		return;
	if (!S_ISDIR(st.st_mode)) {
		unlink(path);
		return;
	}
	if ((d = opendir(path)) != NULL) {
		while ((de = readdir(d)) != NULL) {
			if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
				continue;
			if (asprintf(&p, "%s/%s", path, de->d_name) < 0)
				continue;
			th_rmtree(p);
			free(p);
		}
		closedir(d);
	}
	rmdir(path);
}

int
th_run(char *const argv[], const char *out_path)
{
	pid_t pid;
	int status, fd;

	if ((pid = fork()) < 0)
		return -1;
	if (pid == 0) {
		if (out_path != NULL) {
			fd = open(out_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
			if (fd < 0)
				_exit(127);
			dup2(fd, 1);
			close(fd);
		}
		execvp(argv[0], argv);
		_exit(127);
	}
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return -1;
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

char *
th_which(const char *prog)
{
	const char *path = getenv("PATH");
	char *copy, *dir, *save = NULL, *p;

	if (path == NULL)
		path = "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin";
	copy = strdup(path);
	for (dir = strtok_r(copy, ":", &save); dir != NULL; dir = strtok_r(NULL, ":", &save)) {
		if (asprintf(&p, "%s/%s", dir, prog) < 0)
			break;
		if (access(p, X_OK) == 0) {
			free(copy);
			return p;
		}
		free(p);
	}
	free(copy);
	return NULL;
}

static void
write_file(const char *path, const char *data, mode_t mode)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
	size_t len = strlen(data);

	if (fd < 0 || write(fd, data, len) != (ssize_t)len)
		th_fail("write %s: %s", path, strerror(errno));
	close(fd);
}

/* Initialise a SoftHSM2 token on the free slot through the module itself,
 * so that no PIN ever passes through argv. */
static void
softhsm_init_token(const char *module, const char *label, const char *so_pin, const char *pin)
{
	CK_C_GetFunctionList getfl;
	CK_FUNCTION_LIST_PTR f;
	CK_SLOT_ID slots[64];
	CK_ULONG n = 64, i;
	CK_TOKEN_INFO ti;
	CK_SESSION_HANDLE s;
	CK_UTF8CHAR lab[32];
	CK_RV rv;
	CK_SLOT_ID slot = (CK_SLOT_ID)-1;
	void *dl;

	if ((dl = dlopen(module, RTLD_NOW | RTLD_LOCAL)) == NULL)
		th_fail("dlopen %s: %s", module, dlerror());
	if ((getfl = (CK_C_GetFunctionList)dlsym(dl, "C_GetFunctionList")) == NULL ||
	    getfl(&f) != CKR_OK)
		th_fail("%s: no C_GetFunctionList", module);
	if ((rv = f->C_Initialize(NULL)) != CKR_OK)
		th_fail("C_Initialize: 0x%lx", rv);
	if ((rv = f->C_GetSlotList(CK_TRUE, slots, &n)) != CKR_OK)
		th_fail("C_GetSlotList: 0x%lx", rv);
	for (i = 0; i < n; i++) {
		if (f->C_GetTokenInfo(slots[i], &ti) == CKR_OK &&
		    !(ti.flags & CKF_TOKEN_INITIALIZED)) {
			slot = slots[i];
			break;
		}
	}
	if (slot == (CK_SLOT_ID)-1)
		th_fail("SoftHSM2 has no free slot");
	memset(lab, ' ', sizeof(lab));
	memcpy(lab, label, strlen(label) < sizeof(lab) ? strlen(label) : sizeof(lab));
	if ((rv = f->C_InitToken(slot, (CK_UTF8CHAR_PTR)so_pin, strlen(so_pin), lab)) != CKR_OK)
		th_fail("C_InitToken: 0x%lx", rv);
	/* SoftHSM2 renumbers the slot once the token exists: find it by label. */
	n = 64;
	if ((rv = f->C_GetSlotList(CK_TRUE, slots, &n)) != CKR_OK)
		th_fail("C_GetSlotList: 0x%lx", rv);
	slot = (CK_SLOT_ID)-1;
	for (i = 0; i < n; i++)
		if (f->C_GetTokenInfo(slots[i], &ti) == CKR_OK &&
		    memcmp(ti.label, lab, sizeof(lab)) == 0)
			slot = slots[i];
	if (slot == (CK_SLOT_ID)-1)
		th_fail("new token %s not found", label);
	if ((rv = f->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &s)) !=
	    CKR_OK)
		th_fail("C_OpenSession: 0x%lx", rv);
	if ((rv = f->C_Login(s, CKU_SO, (CK_UTF8CHAR_PTR)so_pin, strlen(so_pin))) != CKR_OK)
		th_fail("C_Login(SO): 0x%lx", rv);
	if ((rv = f->C_InitPIN(s, (CK_UTF8CHAR_PTR)pin, strlen(pin))) != CKR_OK)
		th_fail("C_InitPIN: 0x%lx", rv);
	f->C_Logout(s);
	f->C_CloseSession(s);
	f->C_Finalize(NULL);
	/* The module stays mapped: unloading SoftHSM2 is not safe under ASan. */
}

static void
random_hex(char *out, size_t bytes)
{
	unsigned char b[64];
	size_t i;

	if (bytes > sizeof(b) || RAND_bytes(b, (int)bytes) != 1)
		th_fail("RAND_bytes");
	for (i = 0; i < bytes; i++)
		sprintf(out + 2 * i, "%02x", b[i]);
}

void
th_token_setup(struct th_token *t)
{
	const char *env_uri = getenv("CUBEID_TEST_TOKEN_URI");
	const char *module;
	char *conf, *tokdir, *s;
	char pin[33], so_pin[33], label[17];

	memset(t, 0, sizeof(*t));
	if (env_uri != NULL && *env_uri != '\0') {
		if (getenv("CUBEID_TEST_MODULE") == NULL || getenv("CUBEID_TEST_PIN_FILE") == NULL)
			th_fail("CUBEID_TEST_TOKEN_URI needs CUBEID_TEST_MODULE and "
			        "CUBEID_TEST_PIN_FILE");
		t->module = strdup(getenv("CUBEID_TEST_MODULE"));
		t->uri = strdup(env_uri);
		t->pin_file = strdup(getenv("CUBEID_TEST_PIN_FILE"));
		t->label = strdup(
		        getenv("CUBEID_TEST_TOKEN_LABEL") ? getenv("CUBEID_TEST_TOKEN_LABEL") : "");
		t->kind =
		        getenv("CUBEID_TEST_TOKEN_KIND") ? getenv("CUBEID_TEST_TOKEN_KIND") : "tpm";
		return;
	}

	module = getenv("CUBEID_SOFTHSM_MODULE");
	if (module == NULL || *module == '\0')
		module = CUBEID_SOFTHSM_MODULE;
	if (module == NULL || *module == '\0' || access(module, R_OK) != 0)
		th_skip("SoftHSM2 module not found (install the Debian package 'softhsm2')");

	t->kind = "softhsm";
	t->module = strdup(module);
	t->dir = th_mkdtemp("cubeid-test");
	if (asprintf(&tokdir, "%s/tokens", t->dir) < 0 || mkdir(tokdir, 0700) != 0)
		th_fail("mkdir tokens");
	if (asprintf(&conf, "%s/softhsm2.conf", t->dir) < 0)
		th_fail("out of memory");
	if (asprintf(&s,
	             "directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n",
	             tokdir) < 0)
		th_fail("out of memory");
	write_file(conf, s, 0600);
	free(s);
	setenv("SOFTHSM2_CONF", conf, 1);

	random_hex(pin, 16);
	random_hex(so_pin, 16);
	memcpy(label, "cubeid-", 7);
	random_hex(label + 7, 4);
	t->label = strdup(label);
	softhsm_init_token(module, label, so_pin, pin);
	explicit_bzero(so_pin, sizeof(so_pin));

	if (asprintf(&t->pin_file, "%s/user.pin", t->dir) < 0)
		th_fail("out of memory");
	write_file(t->pin_file, pin, 0600);
	explicit_bzero(pin, sizeof(pin));
	if (asprintf(&t->uri, "pkcs11:token=%s", label) < 0)
		th_fail("out of memory");
	free(conf);
	free(tokdir);
}

void
th_token_teardown(struct th_token *t)
{
	if (t->dir != NULL)
		th_rmtree(t->dir);
	free(t->dir);
	free(t->module);
	free(t->uri);
	free(t->pin_file);
	free(t->label);
	memset(t, 0, sizeof(*t));
}

cubeid_token *
th_token_open(const struct th_token *t, unsigned pool_size)
{
	struct cubeid_token_opts o = {0};
	cubeid_token *tok = NULL;
	int r;

	o.module_path = t->module;
	o.pin_file = t->pin_file;
	o.pool_size = pool_size;
	if ((r = cubeid_token_open(t->uri, &o, &tok)) != CUBEID_OK)
		th_fail("cubeid_token_open(%s): %s", t->uri, cubeid_strerror(r));
	return tok;
}

bool
th_is_tpm(const struct th_token *t)
{
	return t->kind != NULL && strcmp(t->kind, "tpm") == 0;
}
