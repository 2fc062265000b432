/* Test harness: a throwaway SoftHSM2 token per test program (see harness.h). */
#include "config.h"

#include "tests/harness.h"

#include <dirent.h>
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
random_hex(char *out, size_t bytes)
{
	unsigned char b[32];
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
	char label[17];
	int r;

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
	setenv(CUBEID_ENV_MODULE, module, 1);

	t->kind = "softhsm";
	t->module = strdup(module);
	t->dir = th_mkdtemp("cubeid-test");
	random_hex(label + 7, 4);
	memcpy(label, "cubeid-", 7);
	if ((r = cubeid_softhsm_dev_token(t->dir, label, &t->uri, &t->pin_file)) != CUBEID_OK)
		th_fail("cannot make a SoftHSM2 token in %s: %s", t->dir, cubeid_strerror(r));
	t->label = strdup(label);
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
