/*
 * spiffe-helper's configuration files (cli/helper.h): an HCL subset
 * parsed into a small tree, then mapped onto struct helper_config with
 * hashicorp/hcl v1's decoding rules (string keys take strings or numbers,
 * integer keys take numbers or strings parsed like Go's
 * strconv.ParseInt(s, 0, 0), booleans only true or false).
 */
#include "config.h"

#include "cli/helper.h"

#include <cubeid/error.h>
#include <cubeid/os.h>

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------ mapping */

struct m {
	const char *name;
	char **err;
};

static int merr(struct m *m, unsigned line, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

static int
merr(struct m *m, unsigned line, const char *fmt, ...)
{
	char *s = NULL;
	va_list ap;
	int rc;

	va_start(ap, fmt);
	if (vasprintf(&s, fmt, ap) < 0)
		s = NULL;
	va_end(ap);
	if (s == NULL)
		return CUBEID_ERR_NOMEM;
	rc = hcl_error(m->err, m->name, line, "%s", s);
	free(s);
	return rc;
}

static int
get_string(struct m *m, const struct hkv *kv, char **out)
{
	if (*out != NULL)
		return merr(m, kv->line, "duplicate key '%s'", kv->key);
	if (kv->v.type != HV_STR && kv->v.type != HV_NUM)
		return merr(m, kv->line, "'%s' must be a string", kv->key);
	if ((*out = strdup(kv->v.s)) == NULL)
		return CUBEID_ERR_NOMEM;
	return CUBEID_OK;
}

static int
get_bool(struct m *m, const struct hkv *kv, bool *out, bool *seen)
{
	if (*seen)
		return merr(m, kv->line, "duplicate key '%s'", kv->key);
	if (kv->v.type != HV_BOOL)
		return merr(m, kv->line, "'%s' must be true or false", kv->key);
	*out = kv->v.b;
	*seen = true;
	return CUBEID_OK;
}

/* Go's strconv.ParseInt(s, 0, 0): sign, then 0x/0o/0b prefixes or a
 * leading 0 for octal, underscores only after a prefix. */
static bool
parse_go_int(const char *s, long *out)
{
	bool neg = false, prefix = false;
	unsigned base = 10;
	unsigned long long v = 0;
	size_t digits = 0;

	if (*s == '+' || *s == '-')
		neg = *s++ == '-';
	if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X'))
		base = 16, s += 2, prefix = true;
	else if (s[0] == '0' && (s[1] == 'o' || s[1] == 'O'))
		base = 8, s += 2, prefix = true;
	else if (s[0] == '0' && (s[1] == 'b' || s[1] == 'B'))
		base = 2, s += 2, prefix = true;
	else if (s[0] == '0' && s[1] != '\0')
		base = 8, s += 1, prefix = true;
	for (; *s != '\0'; s++) {
		unsigned d;

		if (*s == '_' && prefix)
			continue;
		if (isdigit((unsigned char)*s))
			d = (unsigned)(*s - '0');
		else if (isxdigit((unsigned char)*s))
			d = (unsigned)(tolower((unsigned char)*s) - 'a' + 10);
		else
			return false;
		if (d >= base)
			return false;
		v = v * base + d;
		if (v > (unsigned long long)LONG_MAX)
			return false;
		digits++;
	}
	if (digits == 0 && !(base == 8 && prefix))
		return false;
	*out = neg ? -(long)v : (long)v;
	return true;
}

static int
get_int(struct m *m, const struct hkv *kv, long *out, bool *seen)
{
	if (*seen)
		return merr(m, kv->line, "duplicate key '%s'", kv->key);
	if ((kv->v.type != HV_NUM && kv->v.type != HV_STR) || !parse_go_int(kv->v.s, out))
		return merr(m, kv->line, "'%s' must be an integer (decimal, 0644 octal, 0x hex)",
		            kv->key);
	*seen = true;
	return CUBEID_OK;
}

static int
map_jwt(struct m *m, const struct hv *o, struct helper_jwt *j)
{
	size_t i, k;
	int rc;

	if (o->type != HV_OBJ)
		return merr(m, o->line,
		            "a jwt_svids item must be an object {jwt_audience = \"...\", "
		            "jwt_svid_file_name = \"...\"}");
	for (i = 0; i < o->n; i++) {
		const struct hkv *kv = &o->kv[i];

		if (strcmp(kv->key, "jwt_audience") == 0) {
			rc = get_string(m, kv, &j->audience);
		} else if (strcmp(kv->key, "jwt_svid_file_name") == 0) {
			rc = get_string(m, kv, &j->file);
		} else if (strcmp(kv->key, "jwt_extra_audiences") == 0) {
			if (j->extra != NULL)
				return merr(m, kv->line, "duplicate key '%s'", kv->key);
			if (kv->v.type != HV_LIST)
				return merr(m, kv->line, "'%s' must be a list of strings", kv->key);
			if ((j->extra = calloc(kv->v.n + 1, sizeof(*j->extra))) == NULL)
				return CUBEID_ERR_NOMEM;
			for (k = 0; k < kv->v.n; k++) {
				if (kv->v.items[k].type != HV_STR)
					return merr(m, kv->v.items[k].line,
					            "'%s' must be a list of strings", kv->key);
				if ((j->extra[j->n_extra++] = strdup(kv->v.items[k].s)) == NULL)
					return CUBEID_ERR_NOMEM;
			}
			rc = CUBEID_OK;
		} else {
			return merr(m, kv->line, "unknown key '%s' in jwt_svids", kv->key);
		}
		if (rc != CUBEID_OK)
			return rc;
	}
	return CUBEID_OK;
}

static int
add_jwts(struct m *m, struct helper_config *c, const struct hkv *kv)
{
	const struct hv *items = &kv->v;
	size_t n = kv->v.type == HV_LIST ? kv->v.n : 1, i;
	struct helper_jwt *nj;
	int rc;

	if (kv->v.type != HV_LIST && kv->v.type != HV_OBJ)
		return merr(m, kv->line, "'jwt_svids' must be a list of objects");
	if (c->n_jwt + n > HELPER_JWT_SVIDS_MAX)
		return merr(m, kv->line, "more than %d jwt_svids", HELPER_JWT_SVIDS_MAX);
	if (n == 0)
		return CUBEID_OK;
	if ((nj = realloc(c->jwt, (c->n_jwt + n) * sizeof(*nj))) == NULL)
		return CUBEID_ERR_NOMEM;
	c->jwt = nj;
	for (i = 0; i < n; i++) {
		memset(&c->jwt[c->n_jwt], 0, sizeof(*nj));
		c->n_jwt++;
		rc = map_jwt(m, kv->v.type == HV_LIST ? &items->items[i] : items,
		             &c->jwt[c->n_jwt - 1]);
		if (rc != CUBEID_OK)
			return rc;
	}
	return CUBEID_OK;
}

static int
map_health(struct m *m, struct helper_config *c, const struct hkv *kv)
{
	bool seen[2] = {false, false};
	size_t i;
	int rc;

	if (kv->v.type != HV_OBJ)
		return merr(m, kv->line, "'health_checks' must be an object");
	for (i = 0; i < kv->v.n; i++) {
		const struct hkv *h = &kv->v.kv[i];

		if (strcmp(h->key, "listener_enabled") == 0)
			rc = get_bool(m, h, &c->health_listener_enabled, &seen[0]);
		else if (strcmp(h->key, "bind_port") == 0)
			rc = get_int(m, h, &c->health_bind_port, &seen[1]);
		else if (strcmp(h->key, "liveness_path") == 0)
			rc = get_string(m, h, &c->health_liveness_path);
		else if (strcmp(h->key, "readiness_path") == 0)
			rc = get_string(m, h, &c->health_readiness_path);
		else
			return merr(m, h->line, "unknown key '%s' in health_checks", h->key);
		if (rc != CUBEID_OK)
			return rc;
	}
	return CUBEID_OK;
}

static int
map_config(struct m *m, const struct hv *root, struct helper_config *c)
{
	bool seen_daemon = false, b, seen[8] = {false};
	size_t i;
	int rc;

	for (i = 0; i < root->n; i++) {
		const struct hkv *kv = &root->kv[i];
		const char *k = kv->key;

		if (strcmp(k, "agent_address") == 0)
			rc = get_string(m, kv, &c->agent_address);
		else if (strcmp(k, "cert_dir") == 0)
			rc = get_string(m, kv, &c->cert_dir);
		else if (strcmp(k, "svid_file_name") == 0)
			rc = get_string(m, kv, &c->svid_file_name);
		else if (strcmp(k, "svid_key_file_name") == 0)
			rc = get_string(m, kv, &c->svid_key_file_name);
		else if (strcmp(k, "svid_bundle_file_name") == 0)
			rc = get_string(m, kv, &c->svid_bundle_file_name);
		else if (strcmp(k, "jwt_bundle_file_name") == 0)
			rc = get_string(m, kv, &c->jwt_bundle_file_name);
		else if (strcmp(k, "cmd") == 0)
			rc = get_string(m, kv, &c->cmd);
		else if (strcmp(k, "cmd_args") == 0)
			rc = get_string(m, kv, &c->cmd_args);
		else if (strcmp(k, "renew_signal") == 0)
			rc = get_string(m, kv, &c->renew_signal);
		else if (strcmp(k, "pid_file_name") == 0)
			rc = get_string(m, kv, &c->pid_file_name);
		else if (strcmp(k, "hint") == 0)
			rc = get_string(m, kv, &c->hint);
		else if (strcmp(k, "daemon_mode") == 0) {
			if ((rc = get_bool(m, kv, &b, &seen_daemon)) == CUBEID_OK)
				c->daemon_mode = b;
		} else if (strcmp(k, "cert_file_mode") == 0)
			rc = get_int(m, kv, &c->cert_file_mode, &seen[0]);
		else if (strcmp(k, "key_file_mode") == 0)
			rc = get_int(m, kv, &c->key_file_mode, &seen[1]);
		else if (strcmp(k, "jwt_bundle_file_mode") == 0)
			rc = get_int(m, kv, &c->jwt_bundle_file_mode, &seen[2]);
		else if (strcmp(k, "jwt_svid_file_mode") == 0)
			rc = get_int(m, kv, &c->jwt_svid_file_mode, &seen[3]);
		else if (strcmp(k, "add_intermediates_to_bundle") == 0)
			rc = get_bool(m, kv, &c->add_intermediates_to_bundle, &seen[4]);
		else if (strcmp(k, "include_federated_domains") == 0)
			rc = get_bool(m, kv, &c->include_federated_domains, &seen[5]);
		else if (strcmp(k, "omit_expired") == 0)
			rc = get_bool(m, kv, &c->omit_expired, &seen[6]);
		else if (strcmp(k, "jwt_svids") == 0)
			rc = add_jwts(m, c, kv);
		else if (strcmp(k, "health_checks") == 0) {
			if (seen[7])
				return merr(m, kv->line, "duplicate key '%s'", k);
			seen[7] = true;
			rc = map_health(m, c, kv);
		} else
			return merr(m, kv->line, "unknown key '%s'", k);
		if (rc != CUBEID_OK)
			return rc;
	}
	return CUBEID_OK;
}

void
helper_config_free(struct helper_config *c)
{
	size_t i, k;

	if (c == NULL)
		return;
	free(c->agent_address);
	free(c->cert_dir);
	free(c->svid_file_name);
	free(c->svid_key_file_name);
	free(c->svid_bundle_file_name);
	for (i = 0; i < c->n_jwt; i++) {
		free(c->jwt[i].audience);
		free(c->jwt[i].file);
		for (k = 0; c->jwt[i].extra != NULL && k < c->jwt[i].n_extra; k++)
			free(c->jwt[i].extra[k]);
		free(c->jwt[i].extra);
	}
	free(c->jwt);
	free(c->jwt_bundle_file_name);
	free(c->cmd);
	free(c->cmd_args);
	free(c->renew_signal);
	free(c->pid_file_name);
	free(c->hint);
	free(c->health_liveness_path);
	free(c->health_readiness_path);
	free(c);
}

int
helper_config_parse(const char *buf, size_t len, const char *name, struct helper_config **out,
                    char **err)
{
	struct m m = {name, err};
	struct helper_config *c = NULL;
	struct hv root = {0};
	int rc;

	*out = NULL;
	if (err != NULL)
		*err = NULL;
	if (buf == NULL || name == NULL)
		return CUBEID_ERR_INVALID_ARG;
	if (len > HELPER_CONFIG_MAX) {
		hcl_error(err, name, 1, "larger than the limit of %u bytes", HELPER_CONFIG_MAX);
		return CUBEID_ERR_TOO_LARGE;
	}
	if ((rc = hcl_parse(buf, len, name, &root, err)) != CUBEID_OK)
		goto out;
	if ((c = calloc(1, sizeof(*c))) == NULL) {
		rc = CUBEID_ERR_NOMEM;
		goto out;
	}
	c->daemon_mode = -1;
	if ((rc = map_config(&m, &root, c)) != CUBEID_OK)
		goto out;
	*out = c;
	c = NULL;
out:
	helper_config_free(c);
	hcl_free(&root);
	return rc;
}

static bool
plain_name(const char *s)
{
	return s != NULL && *s != '\0' && strchr(s, '/') == NULL && strncmp(s, "..", 2) != 0 &&
	       strcmp(s, ".") != 0 && strlen(s) <= 255;
}

static int ferr(char **err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int
ferr(char **err, const char *fmt, ...)
{
	va_list ap;

	if (err == NULL)
		return CUBEID_ERR_CONFIG;
	va_start(ap, fmt);
	if (vasprintf(err, fmt, ap) < 0)
		*err = NULL;
	va_end(ap);
	return *err != NULL ? CUBEID_ERR_CONFIG : CUBEID_ERR_NOMEM;
}

static bool
default_path(char **p, const char *def)
{
	if (*p != NULL && **p != '\0')
		return true;
	free(*p);
	return (*p = strdup(def)) != NULL;
}

/* A path that Go's http.ServeMux takes as a plain pattern and a request
 * can reach: "/..." without spaces, controls, '{' '}' (wildcards since
 * Go 1.22), '?' '#' (never in a request's path) or '%' (escapes). */
#define HEALTH_PATH_RULE                                                                           \
	"must start with '/' and have no spaces, control characters, '{', '}', '?', '#' "          \
	"or '%'"

static bool
health_path_ok(const char *s)
{
	if (s[0] != '/' || strlen(s) > 1024)
		return false;
	for (; *s != '\0'; s++)
		if ((unsigned char)*s <= 0x20 || *s == 0x7f || strchr("{}?#%", *s) != NULL)
			return false;
	return true;
}

int
helper_config_finish(struct helper_config *c, char **err)
{
	const char *names[3 + 1 + HELPER_JWT_SVIDS_MAX];
	size_t i, j, nn = 0, empty;
	const char *env;

	if (err != NULL)
		*err = NULL;
	for (i = 0; i < c->n_jwt; i++) {
		if (c->jwt[i].file == NULL || *c->jwt[i].file == '\0')
			return ferr(err, "'jwt_svid_file_name' is required in 'jwt_svids'");
		if (c->jwt[i].audience == NULL || *c->jwt[i].audience == '\0')
			return ferr(err, "'jwt_audience' is required in 'jwt_svids'");
	}
	if (c->agent_address == NULL || *c->agent_address == '\0') {
		const char *spire = getenv("SPIRE_AGENT_ADDRESS");
		env = getenv("SPIFFE_ENDPOINT_SOCKET");
		if (spire != NULL && *spire != '\0' && env != NULL && *env != '\0')
			return ferr(err, "both SPIRE_AGENT_ADDRESS and SPIFFE_ENDPOINT_SOCKET "
			                 "are set; use SPIFFE_ENDPOINT_SOCKET only");
		if (env == NULL || *env == '\0')
			env = spire;
		if (env == NULL || *env == '\0')
			env = "/tmp/spire-agent/public/api.sock";
		free(c->agent_address);
		if ((c->agent_address = strdup(env)) == NULL)
			return CUBEID_ERR_NOMEM;
	}
	if (c->daemon_mode == 0 && c->pid_file_name != NULL && *c->pid_file_name != '\0')
		return ferr(err, "pid_file_name is set but daemon_mode is false; pid_file_name "
		                 "is only supported in daemon mode");
	if (c->pid_file_name != NULL && *c->pid_file_name != '\0' &&
	    (c->renew_signal == NULL || *c->renew_signal == '\0'))
		return ferr(err, "must specify renew_signal when using pid_file_name");
	if (c->renew_signal != NULL && *c->renew_signal != '\0' &&
	    cubeid_signal_parse(c->renew_signal) <= 0)
		return ferr(err, "renew_signal: unknown signal '%s'", c->renew_signal);
	empty = (c->svid_file_name == NULL || !*c->svid_file_name) +
	        (c->svid_key_file_name == NULL || !*c->svid_key_file_name) +
	        (c->svid_bundle_file_name == NULL || !*c->svid_bundle_file_name);
	if (empty != 0 && empty != 3)
		return ferr(err, "all or none of 'svid_file_name', 'svid_key_file_name', "
		                 "'svid_bundle_file_name' must be specified");
	if (empty == 0) {
		names[nn++] = c->svid_file_name;
		names[nn++] = c->svid_key_file_name;
		names[nn++] = c->svid_bundle_file_name;
	}
	if (c->jwt_bundle_file_name != NULL && *c->jwt_bundle_file_name != '\0')
		names[nn++] = c->jwt_bundle_file_name;
	for (i = 0; i < c->n_jwt; i++)
		names[nn++] = c->jwt[i].file;
	if (nn == 0)
		return ferr(err, "at least one of the sets ('svid_file_name', "
		                 "'svid_key_file_name', 'svid_bundle_file_name'), 'jwt_svids', "
		                 "or 'jwt_bundle_file_name' must be fully specified");
	for (i = 0; i < nn; i++) {
		if (!plain_name(names[i]))
			return ferr(err,
			            "'%s': cubeid helper writes plain file names inside cert_dir "
			            "(no '/', not starting with '..')",
			            names[i]);
		for (j = 0; j < i; j++)
			if (strcmp(names[i], names[j]) == 0)
				return ferr(err, "two outputs are both named '%s'", names[i]);
	}
	if (c->cert_file_mode < 0 || c->key_file_mode < 0 || c->jwt_bundle_file_mode < 0 ||
	    c->jwt_svid_file_mode < 0)
		return ferr(err, "file modes must be positive");
	if (c->cert_file_mode > 07777 || c->key_file_mode > 07777 ||
	    c->jwt_bundle_file_mode > 07777 || c->jwt_svid_file_mode > 07777)
		return ferr(err, "a file mode is larger than 07777");
	if (c->cert_file_mode == 0)
		c->cert_file_mode = 0644;
	if (c->key_file_mode == 0)
		c->key_file_mode = 0600;
	if (c->jwt_bundle_file_mode == 0)
		c->jwt_bundle_file_mode = 0600;
	if (c->jwt_svid_file_mode == 0)
		c->jwt_svid_file_mode = 0600;
	if (c->health_listener_enabled) {
		/* spiffe-helper checks and defaults these only when enabled */
		if (c->health_bind_port < 0)
			return ferr(err, "health_checks: bind port must be positive");
		if (c->health_bind_port > 65535)
			return ferr(err, "health_checks: bind_port %ld is larger than 65535",
			            c->health_bind_port);
		if (c->health_bind_port == 0)
			c->health_bind_port = HELPER_HEALTH_PORT;
		if (!default_path(&c->health_liveness_path, "/live") ||
		    !default_path(&c->health_readiness_path, "/ready"))
			return CUBEID_ERR_NOMEM;
		if (!health_path_ok(c->health_liveness_path))
			return ferr(err, "health_checks: liveness_path '%s' %s",
			            c->health_liveness_path, HEALTH_PATH_RULE);
		if (!health_path_ok(c->health_readiness_path))
			return ferr(err, "health_checks: readiness_path '%s' %s",
			            c->health_readiness_path, HEALTH_PATH_RULE);
		if (strcmp(c->health_liveness_path, c->health_readiness_path) == 0)
			return ferr(err,
			            "health_checks: liveness_path and readiness_path are both "
			            "'%s'",
			            c->health_liveness_path);
	}
	if (c->daemon_mode < 0)
		c->daemon_mode = 1;
	return CUBEID_OK;
}
