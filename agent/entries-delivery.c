/*
 * Registration entries: an entry's "delivery:" (docs/entries.md), the files
 * the agent itself writes for it (agent/delivery.c).
 */
#include "config.h"

#include "agent/agent.h"
#include "agent/entries-internal.h"
#include "agent/yaml-util.h"

#include <cubeid/atomic-dir.h>

#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define DELIVERY_JWT_MAX  16
#define DELIVERY_ARGV_MAX 64

void
entry_delivery_free(struct entry_delivery *d)
{
	size_t i;

	if (d == NULL)
		return;
	free(d->dir);
	free(d->svid_file);
	free(d->key_file);
	free(d->bundle_file);
	for (i = 0; i < d->n_jwt; i++) {
		free(d->jwt[i].audience);
		free(d->jwt[i].file);
	}
	free(d->jwt);
	free(d->jwt_bundle_file);
	free(d->pid_file);
	cubeid_argv_free(d->command);
	free(d);
}

static int
get_file_name(struct entries_ctx *c, yaml_node_t *v, const char *key, char **out)
{
	int r;

	if ((r = entries_get_str(c, v, key, out)) != CUBEID_OK)
		return r;
	if (!cubeid_adir_name_ok(*out))
		return yu_err(c->err, c->name, v,
		              "'%s': '%s' must be a plain file name (no '/', not starting with "
		              "'..')",
		              key, *out);
	return CUBEID_OK;
}

static int
get_mode(struct entries_ctx *c, yaml_node_t *v, const char *key, unsigned *out)
{
	const char *s = yu_scalar(v);
	size_t i;
	unsigned m = 0;

	/* octal, as chmod takes it: 0644, 644, 0600 */
	for (i = 0; s != NULL && s[i] != '\0' && i < 5; i++) {
		if (s[i] < '0' || s[i] > '7')
			break;
		m = m * 8 + (unsigned)(s[i] - '0');
	}
	if (s == NULL || i == 0 || s[i] != '\0' || m > 07777)
		return yu_err(c->err, c->name, v, "'%s': bad file mode '%s' (octal, e.g. 0644)",
		              key, s != NULL ? s : "(not a string)");
	*out = m;
	return CUBEID_OK;
}

static int
get_id(struct entries_ctx *c, yaml_node_t *v, const char *key, long *out)
{
	const char *s = yu_scalar(v);
	unsigned long u;

	if (yu_ulong(v, 2147483646UL, &u) == CUBEID_OK) {
		*out = (long)u;
		return CUBEID_OK;
	}
	/* the _r forms: a reload parses on a worker thread */
	if (s != NULL && *s != '\0' && strcmp(key, "uid") == 0) {
		struct passwd pw, *pwp = NULL;
		char buf[16384];

		if (getpwnam_r(s, &pw, buf, sizeof(buf), &pwp) == 0 && pwp != NULL) {
			*out = (long)pw.pw_uid;
			return CUBEID_OK;
		}
	} else if (s != NULL && *s != '\0') {
		struct group gr, *grp = NULL;
		char buf[16384];

		if (getgrnam_r(s, &gr, buf, sizeof(buf), &grp) == 0 && grp != NULL) {
			*out = (long)gr.gr_gid;
			return CUBEID_OK;
		}
	}
	return yu_err(c->err, c->name, v, "'%s': '%s' is not a number or a known %s name", key,
	              s != NULL ? s : "(not a string)", strcmp(key, "uid") == 0 ? "user" : "group");
}

static int
parse_delivery_jwt(struct entries_ctx *c, yaml_node_t *v, struct entry_delivery *d)
{
	yaml_node_item_t *it;
	size_t max;

	if (v == NULL || v->type != YAML_SEQUENCE_NODE)
		return yu_err(c->err, c->name, v,
		              "'jwt_svids' must be a list of {audience: AUD, file: NAME}");
	max = (size_t)(v->data.sequence.items.top - v->data.sequence.items.start);
	if (max > DELIVERY_JWT_MAX)
		return yu_err(c->err, c->name, v, "more than %d jwt_svids", DELIVERY_JWT_MAX);
	if ((d->jwt = calloc(max + 1, sizeof(*d->jwt))) == NULL)
		return CUBEID_ERR_NOMEM;
	for (it = v->data.sequence.items.start; it < v->data.sequence.items.top; it++) {
		yaml_node_t *m = yaml_document_get_node(c->doc, *it);
		struct entry_jwt_file *f = &d->jwt[d->n_jwt++];
		yaml_node_pair_t *p;
		int r;

		if (m == NULL || m->type != YAML_MAPPING_NODE)
			return yu_err(c->err, c->name, m,
			              "a jwt_svids item must be a mapping {audience: AUD, file: "
			              "NAME}");
		for (p = m->data.mapping.pairs.start; p < m->data.mapping.pairs.top; p++) {
			yaml_node_t *kn = yaml_document_get_node(c->doc, p->key);
			yaml_node_t *vn = yaml_document_get_node(c->doc, p->value);
			const char *k = yu_scalar(kn);

			if (k != NULL && strcmp(k, "audience") == 0 && f->audience == NULL) {
				if ((r = entries_get_str(c, vn, k, &f->audience)) != CUBEID_OK)
					return r;
				if (!entries_printable(f->audience, 512))
					return yu_err(c->err, c->name, vn, "bad audience");
			} else if (k != NULL && strcmp(k, "file") == 0 && f->file == NULL) {
				if ((r = get_file_name(c, vn, k, &f->file)) != CUBEID_OK)
					return r;
			} else {
				return yu_err(c->err, c->name, kn,
				              "unknown or duplicate key '%s' in a jwt_svids item "
				              "(audience, file)",
				              k != NULL ? k : "(not a string)");
			}
		}
		if (f->audience == NULL || f->file == NULL)
			return yu_err(c->err, c->name, m,
			              "a jwt_svids item needs both 'audience' and 'file'");
	}
	return CUBEID_OK;
}

static int
parse_delivery_command(struct entries_ctx *c, yaml_node_t *v, struct entry_delivery *d)
{
	yaml_node_item_t *it;
	size_t max, n = 0;

	if (v == NULL || v->type != YAML_SEQUENCE_NODE ||
	    v->data.sequence.items.top == v->data.sequence.items.start)
		return yu_err(c->err, c->name, v,
		              "'command' must be a list: the program (an absolute path), then "
		              "its arguments; no shell runs it");
	max = (size_t)(v->data.sequence.items.top - v->data.sequence.items.start);
	if (max > DELIVERY_ARGV_MAX)
		return yu_err(c->err, c->name, v, "more than %d command arguments",
		              DELIVERY_ARGV_MAX);
	if ((d->command = calloc(max + 1, sizeof(*d->command))) == NULL)
		return CUBEID_ERR_NOMEM;
	for (it = v->data.sequence.items.start; it < v->data.sequence.items.top; it++) {
		yaml_node_t *a = yaml_document_get_node(c->doc, *it);
		const char *s = yu_scalar(a);

		if (s == NULL)
			return yu_err(c->err, c->name, a, "command arguments must be strings");
		if (n == 0 && s[0] != '/')
			return yu_err(c->err, c->name, a,
			              "the command '%s' must be an absolute path (no shell, no "
			              "PATH search)",
			              s);
		if ((d->command[n++] = strdup(s)) == NULL)
			return CUBEID_ERR_NOMEM;
	}
	return CUBEID_OK;
}

/*
 * Signals a delivery may send: the ones programs take as "reload" or "stop
 * cleanly".  SIGKILL and SIGSTOP cannot be caught (a certificate update
 * would kill or freeze the service), and the rest mean faults.
 */
static const int signal_allowed[] = {SIGHUP, SIGUSR1, SIGUSR2, SIGTERM, SIGINT, SIGWINCH};

static bool
signal_ok(int sig)
{
	size_t i;

	for (i = 0; i < sizeof(signal_allowed) / sizeof(signal_allowed[0]); i++)
		if (signal_allowed[i] == sig)
			return true;
	return false;
}

/*
 * System directories a delivery must not replace: the root, /etc, the
 * binaries and libraries, and the kernel's and the system's state.  Only the
 * directory itself: /etc/myapp/certs is fine.  dir is absolute, with no
 * '..' component; "//" and "/./" and a trailing '/' do not hide one.
 */
static bool
dir_is_system(const char *dir)
{
	static const char *const sys[] = {"",       "/etc",   "/bin",    "/sbin", "/usr", "/lib",
	                                  "/lib32", "/lib64", "/libx32", "/boot", "/dev", "/proc",
	                                  "/sys",   "/var",   "/root",   "/run"};
	char norm[4096];
	size_t n = 0, i;
	const char *p = dir;

	while (*p != '\0') {
		size_t l;

		while (*p == '/')
			p++;
		l = strcspn(p, "/");
		if (l == 0 || (l == 1 && p[0] == '.')) {
			p += l;
			continue;
		}
		if (n + 1 + l >= sizeof(norm))
			return false;
		norm[n++] = '/';
		memcpy(norm + n, p, l);
		n += l;
		p += l;
	}
	norm[n] = '\0';
	for (i = 0; i < sizeof(sys) / sizeof(sys[0]); i++)
		if (strcmp(norm, sys[i]) == 0)
			return true;
	return false;
}

/* True if a path component of s is "..". */
static bool
has_dotdot(const char *s)
{
	const char *p;

	for (p = strstr(s, ".."); p != NULL; p = strstr(p + 1, ".."))
		if ((p == s || p[-1] == '/') && (p[2] == '\0' || p[2] == '/'))
			return true;
	return false;
}

static const char *const delivery_keys[] = {"dir",
                                            "x509",
                                            "svid_file",
                                            "key_file",
                                            "bundle_file",
                                            "jwt_svids",
                                            "jwt_bundle_file",
                                            "cert_mode",
                                            "key_mode",
                                            "jwt_svid_mode",
                                            "jwt_bundle_mode",
                                            "uid",
                                            "gid",
                                            "signal",
                                            "pid",
                                            "pid_file",
                                            "command",
                                            "allow_unsafe_parent",
                                            NULL};

const char *
entries_delivery_key_name(size_t i)
{
	return i < sizeof(delivery_keys) / sizeof(delivery_keys[0]) ? delivery_keys[i] : NULL;
}

int
entries_parse_delivery(struct entries_ctx *c, yaml_node_t *m, struct reg_entry *e)
{
	struct entry_delivery *d;
	yaml_node_pair_t *p, *q;
	bool x509 = true;
	const char *names[4 + DELIVERY_JWT_MAX];
	size_t nn = 0, i, j;
	unsigned long ul;
	int r;

	if (m == NULL || m->type != YAML_MAPPING_NODE)
		return yu_err(c->err, c->name, m,
		              "'delivery' must be a mapping (dir, svid_file, jwt_svids, ...)");
	if ((d = e->delivery = calloc(1, sizeof(*d))) == NULL)
		return CUBEID_ERR_NOMEM;
	d->cert_mode = 0644;
	d->key_mode = 0600;
	d->jwt_svid_mode = 0600;
	d->jwt_bundle_mode = 0644;
	d->uid = d->gid = -1;
	for (p = m->data.mapping.pairs.start; p < m->data.mapping.pairs.top; p++) {
		yaml_node_t *kn = yaml_document_get_node(c->doc, p->key);
		yaml_node_t *v = yaml_document_get_node(c->doc, p->value);
		const char *k = yu_scalar(kn);

		if (k == NULL)
			return yu_err(c->err, c->name, kn, "delivery keys must be plain names");
		for (i = 0; delivery_keys[i] != NULL; i++)
			if (strcmp(delivery_keys[i], k) == 0)
				break;
		if (delivery_keys[i] == NULL)
			return yu_err(c->err, c->name, kn, "unknown key '%s' in a delivery", k);
		for (q = m->data.mapping.pairs.start; q < p; q++) {
			const char *qs = yu_scalar(yaml_document_get_node(c->doc, q->key));
			if (qs != NULL && strcmp(qs, k) == 0)
				return yu_err(c->err, c->name, kn,
				              "duplicate key '%s' in a delivery", k);
		}
		if (strcmp(k, "dir") == 0) {
			if ((r = entries_get_str(c, v, k, &d->dir)) != CUBEID_OK)
				return r;
			if (d->dir[0] != '/' || !entries_printable(d->dir, 4000) ||
			    has_dotdot(d->dir))
				return yu_err(c->err, c->name, v,
				              "'dir' must be an absolute path without '..'");
			if (dir_is_system(d->dir))
				return yu_err(c->err, c->name, v,
				              "'dir': %s is a system directory; deliver into a "
				              "directory of its own (e.g. /etc/myapp/certs)",
				              d->dir);
		} else if (strcmp(k, "x509") == 0) {
			if (yu_bool(v, &x509) != CUBEID_OK)
				return yu_err(c->err, c->name, v, "'x509' must be true or false");
		} else if (strcmp(k, "svid_file") == 0) {
			if ((r = get_file_name(c, v, k, &d->svid_file)) != CUBEID_OK)
				return r;
		} else if (strcmp(k, "key_file") == 0) {
			if ((r = get_file_name(c, v, k, &d->key_file)) != CUBEID_OK)
				return r;
		} else if (strcmp(k, "bundle_file") == 0) {
			if ((r = get_file_name(c, v, k, &d->bundle_file)) != CUBEID_OK)
				return r;
		} else if (strcmp(k, "jwt_bundle_file") == 0) {
			if ((r = get_file_name(c, v, k, &d->jwt_bundle_file)) != CUBEID_OK)
				return r;
		} else if (strcmp(k, "jwt_svids") == 0) {
			if ((r = parse_delivery_jwt(c, v, d)) != CUBEID_OK)
				return r;
		} else if (strcmp(k, "cert_mode") == 0) {
			if ((r = get_mode(c, v, k, &d->cert_mode)) != CUBEID_OK)
				return r;
		} else if (strcmp(k, "key_mode") == 0) {
			if ((r = get_mode(c, v, k, &d->key_mode)) != CUBEID_OK)
				return r;
			if (d->key_mode & (S_ISUID | S_ISGID | S_ISVTX | S_IRWXG | S_IRWXO))
				return yu_err(
				        c->err, c->name, v,
				        "'key_mode' %04o: a key file must be 0600 or stricter "
				        "(no group or other bits, no setuid, setgid or sticky)",
				        d->key_mode);
		} else if (strcmp(k, "jwt_svid_mode") == 0) {
			if ((r = get_mode(c, v, k, &d->jwt_svid_mode)) != CUBEID_OK)
				return r;
		} else if (strcmp(k, "jwt_bundle_mode") == 0) {
			if ((r = get_mode(c, v, k, &d->jwt_bundle_mode)) != CUBEID_OK)
				return r;
		} else if (strcmp(k, "uid") == 0) {
			if ((r = get_id(c, v, k, &d->uid)) != CUBEID_OK)
				return r;
		} else if (strcmp(k, "gid") == 0) {
			if ((r = get_id(c, v, k, &d->gid)) != CUBEID_OK)
				return r;
		} else if (strcmp(k, "signal") == 0) {
			if ((d->signal = cubeid_signal_parse(yu_scalar(v))) <= 0)
				return yu_err(
				        c->err, c->name, v,
				        "'signal': unknown signal '%s' (SIGHUP, SIGUSR1, ...)",
				        yu_scalar(v) != NULL ? yu_scalar(v) : "(not a string)");
			if (!signal_ok(d->signal))
				return yu_err(
				        c->err, c->name, v,
				        "'signal': %s may not be sent (SIGHUP, SIGUSR1, SIGUSR2, "
				        "SIGTERM, SIGINT or SIGWINCH)",
				        yu_scalar(v));
		} else if (strcmp(k, "pid") == 0) {
			if (yu_ulong(v, 4194304, &ul) != CUBEID_OK || ul == 0)
				return yu_err(c->err, c->name, v, "'pid' must be a process id > 0");
			if (ul == 1)
				return yu_err(c->err, c->name, v,
				              "'pid': 1 is init; it is never signalled");
			d->pid = (long)ul;
		} else if (strcmp(k, "pid_file") == 0) {
			if ((r = entries_get_str(c, v, k, &d->pid_file)) != CUBEID_OK)
				return r;
			if (d->pid_file[0] != '/')
				return yu_err(c->err, c->name, v,
				              "'pid_file' must be an absolute path");
		} else if (strcmp(k, "command") == 0) {
			if ((r = parse_delivery_command(c, v, d)) != CUBEID_OK)
				return r;
		} else if (strcmp(k, "allow_unsafe_parent") == 0) {
			if (yu_bool(v, &d->allow_unsafe_parent) != CUBEID_OK)
				return yu_err(c->err, c->name, v,
				              "'allow_unsafe_parent' must be true or false");
		}
	}
	if (d->dir == NULL)
		return yu_err(c->err, c->name, m, "a delivery needs 'dir'");
	if (x509) {
		if ((d->svid_file == NULL && (d->svid_file = strdup("svid.pem")) == NULL) ||
		    (d->key_file == NULL && (d->key_file = strdup("svid_key.pem")) == NULL) ||
		    (d->bundle_file == NULL &&
		     (d->bundle_file = strdup("svid_bundle.pem")) == NULL))
			return CUBEID_ERR_NOMEM;
		names[nn++] = d->svid_file;
		names[nn++] = d->key_file;
		names[nn++] = d->bundle_file;
	} else if (d->svid_file != NULL || d->key_file != NULL || d->bundle_file != NULL) {
		return yu_err(c->err, c->name, m,
		              "svid_file, key_file and bundle_file need x509: true");
	}
	if (d->jwt_bundle_file != NULL)
		names[nn++] = d->jwt_bundle_file;
	for (i = 0; i < d->n_jwt; i++)
		names[nn++] = d->jwt[i].file;
	if (nn == 0)
		return yu_err(c->err, c->name, m,
		              "a delivery with x509: false needs jwt_svids "
		              "or jwt_bundle_file");
	for (i = 0; i < nn; i++)
		for (j = 0; j < i; j++)
			if (strcmp(names[i], names[j]) == 0)
				return yu_err(c->err, c->name, m,
				              "two delivered files are both named '%s'", names[i]);
	if ((d->pid != 0 || d->pid_file != NULL) && d->signal == 0)
		return yu_err(c->err, c->name, m, "'pid' and 'pid_file' need 'signal'");
	if (d->signal != 0 && d->pid == 0 && d->pid_file == NULL)
		return yu_err(c->err, c->name, m, "'signal' needs 'pid' or 'pid_file'");
	if (d->pid != 0 && d->pid_file != NULL)
		return yu_err(c->err, c->name, m, "give 'pid' or 'pid_file', not both");
	if (e->key == KEY_POLICY_RESIDENT && x509)
		return yu_err(c->err, c->name, m,
		              "a resident key never leaves the token: no key file can be "
		              "delivered (x509: false)");
	return CUBEID_OK;
}
