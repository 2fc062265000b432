/*
 * Loading PKCS#11 modules.
 *
 * Like p11-kit's modules.c: try C_GetInterface("PKCS 11") (PKCS#11 3.0)
 * first, fall back to C_GetFunctionList, and initialise with
 * CKF_OS_LOCKING_OK.  A module is loaded once per process however many
 * tokens use it, since C_Initialize/C_Finalize are process-wide.
 */
#include "config.h"

#include "pkcs11/p11-internal.h"

#include <cubeid/log.h>

#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* PKCS#11 3.0 names that p11-kit 0.24's 2.40 header lacks. */
struct p11_interface {
	CK_UTF8CHAR_PTR name;
	CK_VOID_PTR functions;
	CK_FLAGS flags;
};
typedef CK_RV (*p11_get_interface_fn)(CK_UTF8CHAR_PTR name, CK_VERSION_PTR version,
                                      struct p11_interface **iface, CK_FLAGS flags);

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static struct p11_module *registry;

/* True if real (a realpath) lies inside one of dirs. */
static bool
path_allowed(const char *real, const char *const *dirs)
{
	char dir[PATH_MAX];
	size_t n;

	for (; *dirs != NULL; dirs++) {
		if (realpath(*dirs, dir) == NULL)
			continue;
		n = strlen(dir);
		if (strncmp(real, dir, n) == 0 && (real[n] == '/' || dir[n - 1] == '/'))
			return true;
	}
	return false;
}

CK_RV
p11_module_initialize(struct p11_module *mod)
{
	CK_C_INITIALIZE_ARGS args;

	memset(&args, 0, sizeof(args));
	args.flags = CKF_OS_LOCKING_OK;
	return mod->f->C_Initialize(&args);
}

static int
module_load(const char *real, struct p11_module **out)
{
	struct p11_module *m;
	CK_C_GetFunctionList getfl;
	p11_get_interface_fn getif;
	struct p11_interface *iface = NULL;
	CK_RV rv;
	int r = CUBEID_ERR_P11_MODULE;

	*out = NULL;
	if ((m = calloc(1, sizeof(*m))) == NULL)
		return CUBEID_ERR_NOMEM;
	if ((m->path = strdup(real)) == NULL) {
		r = CUBEID_ERR_NOMEM;
		goto out;
	}
	if ((m->dl = dlopen(real, RTLD_NOW | RTLD_LOCAL)) == NULL) {
		cubeid_error("cannot load PKCS#11 module %s: %s", real, dlerror());
		goto out;
	}
	getif = (p11_get_interface_fn)dlsym(m->dl, "C_GetInterface");
	if (getif != NULL && getif((CK_UTF8CHAR_PTR) "PKCS 11", NULL, &iface, 0) == CKR_OK &&
	    iface != NULL && iface->functions != NULL) {
		m->f = iface->functions;
		m->via_interface = true;
	} else {
		getfl = (CK_C_GetFunctionList)dlsym(m->dl, "C_GetFunctionList");
		if (getfl == NULL) {
			cubeid_error("%s is not a PKCS#11 module: it has neither C_GetInterface "
			             "nor C_GetFunctionList",
			             real);
			goto out;
		}
		if ((rv = getfl(&m->f)) != CKR_OK || m->f == NULL) {
			p11_fail("C_GetFunctionList", rv);
			goto out;
		}
	}
	rv = p11_module_initialize(m);
	if (rv == CKR_CRYPTOKI_ALREADY_INITIALIZED) {
		/* Someone else in this process initialised it; leave it to them. */
		m->initialized_here = false;
	} else if (rv != CKR_OK) {
		p11_fail("C_Initialize", rv);
		goto out;
	} else {
		m->initialized_here = true;
	}
	if ((rv = m->f->C_GetInfo(&m->info)) != CKR_OK) {
		p11_fail("C_GetInfo", rv);
		if (m->initialized_here)
			m->f->C_Finalize(NULL);
		goto out;
	}
	m->refs = 1;
	m->initialized = true;
	m->delay_ms = P11_RECOVER_MIN_MS;
	pthread_mutex_init(&m->gate, NULL);
	pthread_cond_init(&m->gate_cond, NULL);
	*out = m;
	m = NULL;
	r = CUBEID_OK;
out:
	if (m != NULL) {
		if (m->dl != NULL)
			dlclose(m->dl);
		free(m->path);
		free(m);
	}
	return r;
}

int
p11_module_get(const char *path, const char *const *allow_dirs, struct p11_module **out)
{
	char real[PATH_MAX];
	struct stat st;
	struct p11_module *m;
	int r;

	*out = NULL;
	if (path == NULL || *path == '\0') {
		cubeid_error("no PKCS#11 module given: use module-path in the URI, "
		             "--module or $" CUBEID_ENV_MODULE);
		return CUBEID_ERR_P11_MODULE;
	}
	if (realpath(path, real) == NULL) {
		cubeid_error("PKCS#11 module %s: %s", path, strerror(errno));
		return CUBEID_ERR_P11_MODULE;
	}
	if (stat(real, &st) != 0 || !S_ISREG(st.st_mode)) {
		cubeid_error("PKCS#11 module %s is not a regular file", real);
		return CUBEID_ERR_P11_MODULE;
	}
	if (allow_dirs != NULL && !path_allowed(real, allow_dirs)) {
		cubeid_error("PKCS#11 module %s is outside the allowed module directories", real);
		return CUBEID_ERR_P11_MODULE_DENIED;
	}
	pthread_mutex_lock(&registry_lock);
	for (m = registry; m != NULL; m = m->next) {
		if (strcmp(m->path, real) == 0) {
			m->refs++;
			*out = m;
			pthread_mutex_unlock(&registry_lock);
			return CUBEID_OK;
		}
	}
	if ((r = module_load(real, &m)) == CUBEID_OK) {
		m->next = registry;
		registry = m;
		*out = m;
	}
	pthread_mutex_unlock(&registry_lock);
	return r;
}

void
p11_module_put(struct p11_module *mod)
{
	struct p11_module **pp;

	if (mod == NULL)
		return;
	pthread_mutex_lock(&registry_lock);
	if (--mod->refs > 0) {
		pthread_mutex_unlock(&registry_lock);
		return;
	}
	for (pp = &registry; *pp != NULL; pp = &(*pp)->next) {
		if (*pp == mod) {
			*pp = mod->next;
			break;
		}
	}
	pthread_mutex_unlock(&registry_lock);
	if (mod->initialized_here && mod->initialized)
		mod->f->C_Finalize(NULL);
	pthread_cond_destroy(&mod->gate_cond);
	pthread_mutex_destroy(&mod->gate);
	/* Modules are not unloaded: several (SoftHSM2 among them) register
	 * atexit handlers or keep threads, and dlclose under them crashes. */
	free(mod->path);
	free(mod);
}
