/*
 * Choosing a token by RFC 7512 URI (parsed by p11-kit), reading the PIN and
 * logging in.
 */
#include "config.h"

#include "pkcs11/p11-internal.h"

#include <cubeid/log.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

cubeid_token *
p11_token_ref(cubeid_token *tok)
{
	__atomic_add_fetch(&tok->refs, 1, __ATOMIC_RELAXED);
	return tok;
}

static void
pin_wipe(cubeid_token *tok)
{
	if (tok->pin == NULL)
		return;
	explicit_bzero(tok->pin, tok->pin_map_len);
	munlock(tok->pin, tok->pin_map_len);
	munmap(tok->pin, tok->pin_map_len);
	tok->pin = NULL;
	tok->pin_len = 0;
}

void
p11_token_unref(cubeid_token *tok)
{
	unsigned i;

	if (tok == NULL || __atomic_sub_fetch(&tok->refs, 1, __ATOMIC_ACQ_REL) > 0)
		return;
	if (tok->mod != NULL) {
		p11_module_remove_token(tok->mod, tok);
		/* Sessions from before a re-init are gone with it; while the
		 * module is down there is nothing to close. */
		if (p11_gate_enter(tok->mod) == CUBEID_OK) {
			if (__atomic_load_n(&tok->mod_gen, __ATOMIC_ACQUIRE) ==
			    p11_module_gen(tok->mod))
				for (i = 0; i < tok->pool_size; i++)
					if (tok->pool[i].open)
						tok->f->C_CloseSession(tok->pool[i].h);
			p11_gate_leave(tok->mod);
		}
	}
	free(tok->uri_str);
	free(tok->pool);
	free(tok->mechs);
	pin_wipe(tok);
	pthread_cond_destroy(&tok->cond);
	pthread_mutex_destroy(&tok->lock);
	p11_module_put(tok->mod);
	free(tok);
}

void
cubeid_token_free(cubeid_token *tok)
{
	if (tok != NULL)
		p11_token_unref(tok);
}

/* Keep the PIN in its own page: locked in RAM, left out of core dumps. */
static int
pin_store(cubeid_token *tok, const char *pin, size_t len)
{
	size_t pg = (size_t)sysconf(_SC_PAGESIZE);
	void *p;

	p = mmap(NULL, pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return CUBEID_ERR_NOMEM;
	(void)mlock(p, pg); /* best effort: RLIMIT_MEMLOCK may be 0 */
#ifdef MADV_DONTDUMP
	(void)madvise(p, pg, MADV_DONTDUMP);
#endif
	memcpy(p, pin, len);
	tok->pin = p;
	tok->pin_len = len;
	tok->pin_map_len = pg;
	return CUBEID_OK;
}

/* Read a PIN file: a regular file of at most CUBEID_PIN_MAX bytes; one
 * trailing newline (or CRLF) is dropped. */
static int
pin_read_file(cubeid_token *tok, const char *path)
{
	char buf[CUBEID_PIN_MAX + 2];
	struct stat st;
	ssize_t n;
	size_t len = 0;
	int fd, r = CUBEID_ERR_IO;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY)) < 0) {
		cubeid_error("cannot open PIN file %s: %s", path, strerror(errno));
		/* A PIN that cannot be read is a login problem, not a lookup. */
		return errno == ENOENT ? CUBEID_ERR_P11_PIN_MISSING : CUBEID_ERR_IO;
	}
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		cubeid_error("PIN file %s is not a regular file", path);
		goto out;
	}
	if (st.st_mode & S_IROTH)
		cubeid_warn("PIN file %s is readable by everyone (mode %04o); chmod 600 it", path,
		            (unsigned)(st.st_mode & 07777));
	while (len < sizeof(buf)) {
		n = read(fd, buf + len, sizeof(buf) - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			cubeid_error("cannot read PIN file %s: %s", path, strerror(errno));
			goto out;
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	if (len > 0 && buf[len - 1] == '\n')
		len--;
	if (len > 0 && buf[len - 1] == '\r')
		len--;
	if (len > CUBEID_PIN_MAX) {
		cubeid_error("PIN file %s is longer than %d bytes", path, CUBEID_PIN_MAX);
		r = CUBEID_ERR_TOO_LARGE;
		goto out;
	}
	if (len == 0) {
		cubeid_error("PIN file %s is empty", path);
		r = CUBEID_ERR_P11_PIN_MISSING;
		goto out;
	}
	r = pin_store(tok, buf, len);
out:
	explicit_bzero(buf, sizeof(buf));
	close(fd);
	return r;
}

int
p11_pin_source_path(const char *src, const char **path)
{
	*path = NULL;
	if (strncmp(src, "file:", 5) == 0) {
		src += 5;
		/* file:///path and file:/path are both absolute paths */
		if (strncmp(src, "//", 2) == 0)
			src += 2;
	}
	if (src[0] != '/') {
		cubeid_error("pin-source: only an absolute file path or a file: URI is supported");
		return CUBEID_ERR_P11_URI;
	}
	*path = src;
	return CUBEID_OK;
}

/* Log the attributes of URI s that RFC 7512 (as p11-kit parses it) does not
 * define, by name only (a value may be secret), so that a typo such as
 * "tokn" is found at once. */
static void
uri_name_unknown(const char *s)
{
	static const char *const known[] = {
	        "token",
	        "manufacturer",
	        "serial",
	        "model",
	        "library-description",
	        "library-manufacturer",
	        "library-version",
	        "object",
	        "type",
	        "id",
	        "slot-description",
	        "slot-manufacturer",
	        "slot-id",
	        "pin-source",
	        "pin-value",
	        "module-name",
	        "module-path",
	};
	char names[256] = "";
	const char *p = strchr(s, ':');
	size_t len, used = 0, i;

	for (p = p != NULL ? p + 1 : s; *p != '\0';) {
		len = strcspn(p, "=;?&");
		for (i = 0; i < sizeof(known) / sizeof(known[0]); i++)
			if (strlen(known[i]) == len && strncmp(known[i], p, len) == 0)
				break;
		if (len > 0 && i == sizeof(known) / sizeof(known[0]) && used < sizeof(names))
			used += (size_t)snprintf(names + used, sizeof(names) - used, "%s'%.*s'",
			                         used ? ", " : "", (int)(len > 64 ? 64 : len), p);
		p += strcspn(p, ";?&");
		if (*p != '\0')
			p++;
	}
	if (used > 0)
		cubeid_error("the PKCS#11 URI has attributes RFC 7512 does not define: %s", names);
	else
		cubeid_error("the PKCS#11 URI has attributes cubeid does not know");
}

int
p11_uri_parse(const char *s, P11KitUri **out)
{
	P11KitUri *uri;
	int ur;

	*out = NULL;
	if (s == NULL)
		return CUBEID_ERR_INVALID_ARG;
	if (strlen(s) > P11_URI_MAX) {
		cubeid_error("PKCS#11 URI longer than %d bytes", P11_URI_MAX);
		return CUBEID_ERR_P11_URI;
	}
	if ((uri = p11_kit_uri_new()) == NULL)
		return CUBEID_ERR_NOMEM;
	if ((ur = p11_kit_uri_parse(s, P11_KIT_URI_FOR_ANY, uri)) != P11_KIT_URI_OK) {
		cubeid_error("bad PKCS#11 URI: %s", p11_kit_uri_message(ur));
		goto fail;
	}
	if (p11_kit_uri_get_pin_value(uri) != NULL) {
		cubeid_error("the PKCS#11 URI carries pin-value: a PIN on the command line is "
		             "visible to every user; use pin-source=file:/path instead");
		goto fail;
	}
	if (p11_kit_uri_any_unrecognized(uri)) {
		uri_name_unknown(s);
		goto fail;
	}
	*out = uri;
	return CUBEID_OK;
fail:
	p11_kit_uri_free(uri);
	return CUBEID_ERR_P11_URI;
}

int
p11_pin_load(cubeid_token *tok, const struct cubeid_token_opts *opts, P11KitUri *uri)
{
	const char *src = NULL, *env;

	if (opts != NULL && opts->pin_file != NULL)
		src = opts->pin_file;
	else if (p11_kit_uri_get_pin_source(uri) != NULL) {
		if (p11_pin_source_path(p11_kit_uri_get_pin_source(uri), &src) != CUBEID_OK)
			return CUBEID_ERR_P11_URI;
	} else if ((env = getenv(CUBEID_ENV_PIN_FILE)) != NULL && *env != '\0')
		src = env;
	if (src != NULL)
		return pin_read_file(tok, src);
	if ((env = getenv(CUBEID_ENV_PIN)) != NULL && *env != '\0') {
		if (strlen(env) > CUBEID_PIN_MAX)
			return CUBEID_ERR_TOO_LARGE;
		return pin_store(tok, env, strlen(env));
	}
	return CUBEID_ERR_P11_PIN_MISSING;
}

/* Pick the module: the URI's module-path, opts, $CUBEID_PKCS11_MODULE, then
 * the SoftHSM2 module found at build time. */
static const char *
module_choose(P11KitUri *uri, const struct cubeid_token_opts *opts)
{
	const char *p;

	if ((p = p11_kit_uri_get_module_path(uri)) != NULL)
		return p;
	if (opts != NULL && opts->module_path != NULL)
		return opts->module_path;
	if ((p = getenv(CUBEID_ENV_MODULE)) != NULL && *p != '\0')
		return p;
	return CUBEID_SOFTHSM_MODULE;
}

/* Find the one initialised token matching uri: its slot and info. */
static int
slot_choose(cubeid_token *tok, P11KitUri *uri, const char *uri_str, CK_SLOT_ID *slot_out,
            CK_TOKEN_INFO *ti_out)
{
	CK_SLOT_ID *slots = NULL;
	CK_ULONG n = 0, i, matches = 0;
	CK_SLOT_INFO si;
	CK_TOKEN_INFO ti;
	CK_SLOT_ID want_slot = p11_kit_uri_get_slot_id(uri);
	CK_RV rv;
	int r;

	if ((rv = tok->f->C_GetSlotList(CK_TRUE, NULL, &n)) != CKR_OK)
		return p11_fail("C_GetSlotList", rv);
	if (n > 0 && (slots = calloc(n, sizeof(*slots))) == NULL)
		return CUBEID_ERR_NOMEM;
	if (n > 0 && (rv = tok->f->C_GetSlotList(CK_TRUE, slots, &n)) != CKR_OK) {
		r = p11_fail("C_GetSlotList", rv);
		goto out;
	}
	for (i = 0; i < n; i++) {
		if (want_slot != (CK_SLOT_ID)-1 && slots[i] != want_slot)
			continue;
		if (tok->f->C_GetSlotInfo(slots[i], &si) != CKR_OK ||
		    !p11_kit_uri_match_slot_info(uri, &si))
			continue;
		if (tok->f->C_GetTokenInfo(slots[i], &ti) != CKR_OK ||
		    !(ti.flags & CKF_TOKEN_INITIALIZED) || !p11_kit_uri_match_token_info(uri, &ti))
			continue;
		if (matches++ == 0) {
			*slot_out = slots[i];
			*ti_out = ti;
		}
	}
	if (matches == 0) {
		cubeid_error("no initialised token in %s matches %s", tok->mod->path, uri_str);
		r = CUBEID_ERR_P11_NO_TOKEN;
	} else if (matches > 1) {
		cubeid_error("%lu tokens in %s match %s: name one with token= or serial=",
		             (unsigned long)matches, tok->mod->path, uri_str);
		r = CUBEID_ERR_P11_AMBIGUOUS;
	} else {
		r = CUBEID_OK;
	}
out:
	free(slots);
	return r;
}

static int
mechs_load(cubeid_token *tok)
{
	CK_ULONG n = 0;
	CK_RV rv;

	if ((rv = tok->f->C_GetMechanismList(tok->slot, NULL, &n)) != CKR_OK)
		return p11_fail("C_GetMechanismList", rv);
	if (n == 0)
		return CUBEID_OK;
	if ((tok->mechs = calloc(n, sizeof(*tok->mechs))) == NULL)
		return CUBEID_ERR_NOMEM;
	if ((rv = tok->f->C_GetMechanismList(tok->slot, tok->mechs, &n)) != CKR_OK)
		return p11_fail("C_GetMechanismList", rv);
	tok->n_mechs = n;
	return CUBEID_OK;
}

int
p11_token_rebind_locked(cubeid_token *tok, uint64_t gen)
{
	P11KitUri *uri = NULL;
	CK_TOKEN_INFO ti;
	CK_SLOT_ID slot;
	unsigned i;
	int r;

	/* The re-init closed them (or C_Finalize did): forget the handles. */
	for (i = 0; i < tok->pool_size; i++)
		if (!tok->pool[i].busy)
			tok->pool[i].open = false;
	if ((r = p11_uri_parse(tok->uri_str, &uri)) != CUBEID_OK)
		return r;
	r = slot_choose(tok, uri, tok->uri_str, &slot, &ti);
	p11_kit_uri_free(uri);
	if (r != CUBEID_OK)
		return r;
	/* The same token, not another that happens to match a loose URI. */
	if (memcmp(ti.serialNumber, tok->ti.serialNumber, sizeof(ti.serialNumber)) != 0 ||
	    memcmp(ti.label, tok->ti.label, sizeof(ti.label)) != 0) {
		cubeid_error("token %s: the token matching %s after re-initialisation is another "
		             "one (serial changed); not using it",
		             tok->label, tok->uri_str);
		return CUBEID_ERR_P11_NO_TOKEN;
	}
	if (slot != tok->slot)
		cubeid_notice("token %s: now in slot %lu (was %lu)", tok->label,
		              (unsigned long)slot, (unsigned long)tok->slot);
	tok->slot = slot;
	__atomic_store_n(&tok->mod_gen, gen, __ATOMIC_RELEASE);
	return CUBEID_OK;
}

int
cubeid_token_open(const char *uri_str, const struct cubeid_token_opts *opts, cubeid_token **out)
{
	cubeid_token *tok = NULL;
	P11KitUri *uri = NULL;
	CK_SESSION_HANDLE s;
	long ncpu;
	int r;

	*out = NULL;
	if (uri_str == NULL || *uri_str == '\0')
		uri_str = "pkcs11:";
	if ((r = p11_uri_parse(uri_str, &uri)) != CUBEID_OK)
		goto out;
	if ((tok = calloc(1, sizeof(*tok))) == NULL) {
		r = CUBEID_ERR_NOMEM;
		goto out;
	}
	tok->refs = 1;
	pthread_mutex_init(&tok->lock, NULL);
	pthread_cond_init(&tok->cond, NULL);
	if ((r = p11_module_get(module_choose(uri, opts), opts ? opts->module_allow_dirs : NULL,
	                        &tok->mod)) != CUBEID_OK)
		goto out;
	tok->f = tok->mod->f;
	if ((tok->uri_str = strdup(uri_str)) == NULL) {
		r = CUBEID_ERR_NOMEM;
		goto out;
	}
	p11_module_add_token(tok->mod, tok);
	if ((r = p11_gate_enter(tok->mod)) != CUBEID_OK)
		goto out;
	tok->mod_gen = p11_module_gen(tok->mod);
	r = slot_choose(tok, uri, uri_str, &tok->slot, &tok->ti);
	if (r == CUBEID_OK)
		r = mechs_load(tok);
	p11_gate_leave(tok->mod);
	if (r != CUBEID_OK)
		goto out;
	p11_strfield(tok->label, sizeof(tok->label), tok->ti.label, sizeof(tok->ti.label));
	p11_strfield(tok->serial, sizeof(tok->serial), tok->ti.serialNumber,
	             sizeof(tok->ti.serialNumber));
	p11_strfield(tok->model, sizeof(tok->model), tok->ti.model, sizeof(tok->ti.model));
	p11_strfield(tok->manufacturer, sizeof(tok->manufacturer), tok->ti.manufacturerID,
	             sizeof(tok->ti.manufacturerID));

	tok->pool_size = opts != NULL ? opts->pool_size : 0;
	if (tok->pool_size == 0) {
		ncpu = sysconf(_SC_NPROCESSORS_ONLN);
		tok->pool_size = ncpu > 2 ? (unsigned)(2 * ncpu) : 4;
	}
	if (tok->pool_size > 256)
		tok->pool_size = 256;
	if ((tok->pool = calloc(tok->pool_size, sizeof(*tok->pool))) == NULL) {
		r = CUBEID_ERR_NOMEM;
		goto out;
	}
	tok->login_required =
	        (tok->ti.flags & CKF_LOGIN_REQUIRED) != 0 && !(opts != NULL && opts->no_login);
	if (tok->login_required) {
		if ((r = p11_pin_load(tok, opts, uri)) != CUBEID_OK) {
			if (r == CUBEID_ERR_P11_PIN_MISSING)
				cubeid_error("token %s needs a PIN: %s", tok->label,
				             cubeid_strerror(r));
			goto out;
		}
	}
	/* Open one session now: this logs in and proves the PIN. */
	if ((r = p11_session_get(tok, &s)) != CUBEID_OK)
		goto out;
	p11_session_put(tok, s, false);
	*out = tok;
	tok = NULL;
	r = CUBEID_OK;
out:
	if (tok != NULL)
		p11_token_unref(tok);
	p11_kit_uri_free(uri);
	return r;
}

const char *
cubeid_token_module_path(const cubeid_token *tok)
{
	return tok->mod->path;
}

const char *
cubeid_token_label(const cubeid_token *tok)
{
	return tok->label;
}

const char *
cubeid_token_serial(const cubeid_token *tok)
{
	return tok->serial;
}

unsigned long
cubeid_token_slot(const cubeid_token *tok)
{
	return (unsigned long)tok->slot;
}

bool
cubeid_token_has_mechanism(const cubeid_token *tok, unsigned long mech)
{
	CK_ULONG i;

	for (i = 0; i < tok->n_mechs; i++)
		if (tok->mechs[i] == mech)
			return true;
	return false;
}

int
cubeid_token_uri(const cubeid_token *tok, char **out)
{
	P11KitUri *uri;
	CK_TOKEN_INFO *ti;
	int r;

	*out = NULL;
	if ((uri = p11_kit_uri_new()) == NULL)
		return CUBEID_ERR_NOMEM;
	ti = p11_kit_uri_get_token_info(uri);
	memcpy(ti->label, tok->ti.label, sizeof(ti->label));
	memcpy(ti->serialNumber, tok->ti.serialNumber, sizeof(ti->serialNumber));
	memcpy(ti->model, tok->ti.model, sizeof(ti->model));
	memcpy(ti->manufacturerID, tok->ti.manufacturerID, sizeof(ti->manufacturerID));
	r = p11_kit_uri_format(uri, P11_KIT_URI_FOR_TOKEN, out) == P11_KIT_URI_OK
	            ? CUBEID_OK
	            : CUBEID_ERR_NOMEM;
	p11_kit_uri_free(uri);
	return r;
}
